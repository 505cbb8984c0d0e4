"""Evaluate the actor's side of the shelter policies once per statement, not once per row.

The policies of 0002 call `ly.may_see(...)` and `ly.may_edit(...)` for every row, and with
them the actor checks (`current_setting('ly.roller')` split into an array, the CVR, the
municipalities, the activation flag) run again for each row a page or a count touches. The
rule is the same here, written so that everything that depends only on the actor is a scalar
subquery: PostgreSQL computes those once per statement (as init plans) and compares the
row's columns with the results. Measured on the 1,000,000-shelter bench set (bench/README.md):
page + count for a town box as the national reader 82 -> 42 ms, as the public 93 -> 27 ms.

`ly.may_see` and `ly.may_edit` stay for other callers; this is the same rule inlined.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# The same rule as ly.may_see(off_kode, cvr_kode, beliggenhedskommune, beskyt_rum_kode,
# objekt_id), with the actor's side as scalar subqueries.
SEES = """
    off_kode = 1
    OR (SELECT ly.actor_has('national_reader', 'national_admin'))
    OR (cvr_kode = (SELECT ly.actor_cvr())
        AND (SELECT ly.actor_has('municipal_editor', 'municipal_admin', 'machine')))
    OR (beliggenhedskommune = ANY ((SELECT ly.actor_kommuner())::int[])
        AND (SELECT ly.actor_has('municipal_editor', 'municipal_admin')) AND off_kode <> 2)
    OR (off_kode = 3 AND (SELECT ly.actor_has('municipal_editor', 'municipal_admin', 'planner')))
    OR ((SELECT ly.activated()) AND beskyt_rum_kode IN (1, 3))
    OR ((SELECT ly.actor_has('inspector')) AND ly.assigned(objekt_id))"""

# The same rule as ly.may_edit(cvr_kode, beliggenhedskommune).
EDITS = """
    (SELECT ly.actor_may_write()) AND (
        (SELECT ly.actor_has('national_admin'))
        OR ((SELECT ly.actor_has('municipal_editor', 'municipal_admin'))
            AND (cvr_kode = (SELECT ly.actor_cvr())
                 OR beliggenhedskommune = ANY ((SELECT ly.actor_kommuner())::int[]))))"""


def upgrade() -> None:
    op.execute(f"ALTER POLICY laes ON ly.beskyttelsesrum USING ({SEES})")
    op.execute(f"ALTER POLICY afslut ON ly.beskyttelsesrum USING (({EDITS}) AND ({SEES}))")


def downgrade() -> None:
    op.execute("""ALTER POLICY laes ON ly.beskyttelsesrum USING (
        ly.may_see(off_kode, cvr_kode, beliggenhedskommune, beskyt_rum_kode, objekt_id))""")
    op.execute("""ALTER POLICY afslut ON ly.beskyttelsesrum USING (
        ly.may_edit(cvr_kode, beliggenhedskommune)
        AND ly.may_see(off_kode, cvr_kode, beliggenhedskommune, beskyt_rum_kode, objekt_id))""")
