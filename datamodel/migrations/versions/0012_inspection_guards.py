"""Inspection guards: no photo lands on an inspection approved meanwhile, and whoever may
change a shelter (as an administrator) may assign an inspector to it.

- `ly.eftersyn_foto` gets a BEFORE INSERT trigger, `ly.eftersyn_foto_guard()`, that locks
  the photo's inspection FOR SHARE and refuses the photo when the inspection is approved or
  reported. The insert policy (0003) reads the inspection's status from the statement's
  snapshot without a lock, and the foreign key's check takes FOR KEY SHARE, which does not
  conflict with an approval's `UPDATE … SET status = 'godkendt'` (FOR NO KEY UPDATE): a
  photo inserted while an approval was under way, or an approval made while a photo's
  transaction was open, left a photo on an approved inspection. FOR SHARE conflicts with
  both the approval's `SELECT … FOR UPDATE` and its UPDATE: a photo either commits before
  the approval locks the inspection (and the approval then sees it), or waits for the
  approval and sees its outcome (READ COMMITTED locks the newest version of the row).
  The function is SECURITY DEFINER, owned by the table's owner: a share lock needs the
  UPDATE policy, which municipal editors and an inspector of a submitted inspection do not
  pass. It refuses with the SQLSTATE the insert policy itself raises (42501,
  insufficient_privilege) had it seen the approval, so a refusal reads the same whichever
  of the two catches it (the service answers 409 when the inspection is approved); it
  tells nothing of an inspection the actor may not see (the policy refuses that alike), and
  leaves an inspection that does not exist to the policy and the foreign key.
- `ly.tildeling`'s insert policy `skriv` (0002) asked for the assignment's CVR to be the
  administrator's, while changing a shelter needs its CVR *or* its municipality
  (`afslut` on ly.beskyttelsesrum, 0006/0009). It now asks what `afslut` asks, of the
  object's current version: a writer who is a national administrator, or a municipal
  administrator of the object's CVR or municipality, and the object is one the actor sees
  (the subquery runs under the actor's row-level security on ly.beskyttelsesrum, whose
  `laes` policy is `afslut`'s second half). Assigning stays an administrator's task
  (municipal editors may change a shelter but not assign it), as before. Its read and
  update policies (`laes`, `ret`) follow: a municipal administrator reads and changes the
  assignments of the objects in its CVR or municipalities too, so an administrator sees the
  assignments it may make.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

#: The statuses of an inspection that takes no more photos; frozen for this revision.
CLOSED = ("godkendt", "indberettet")
#: The tables of the themes whose objects are assigned to inspectors at this revision.
ASSIGNABLE_TABLES = ("beskyttelsesrum",)

# `afslut`'s first half (datamodel.storage.EDITS at this revision) for the version `o`.
_EDITS = """(SELECT ly.actor_may_write()) AND (
                (SELECT ly.actor_has('national_admin'))
                OR ((SELECT ly.actor_has('municipal_editor', 'municipal_admin'))
                    AND (o.cvr_kode = (SELECT ly.actor_cvr())
                         OR o.beliggenhedskommune = ANY ((SELECT ly.actor_kommuner())::int[]))))"""

_MAY_ASSIGN = " OR ".join(
    f"""EXISTS (SELECT 1 FROM ly.{table} o
            WHERE o.objekt_id = tildeling.objekt_id AND o.systid_til IS NULL
              AND {_EDITS})""" for table in ASSIGNABLE_TABLES)

SKRIV = f"""ly.actor_may_write() AND tildelt_af = ly.actor_subject()
        AND ly.actor_has('national_admin', 'municipal_admin')
        AND ({_MAY_ASSIGN})"""

# Whose assignments an administrator reads and changes: those of the objects in the
# administrator's CVR or municipalities (the scope `_EDITS` writes in), besides those made
# under the administrator's own CVR, so an administrator who assigns an object sees and
# may end the assignment. Reading needs no write assurance.
_IN_SCOPE = " OR ".join(
    f"""EXISTS (SELECT 1 FROM ly.{table} o
            WHERE o.objekt_id = tildeling.objekt_id AND o.systid_til IS NULL
              AND (o.cvr_kode = (SELECT ly.actor_cvr())
                   OR o.beliggenhedskommune = ANY ((SELECT ly.actor_kommuner())::int[])))"""
    for table in ASSIGNABLE_TABLES)
_ADMIN_SCOPE = f"""(ly.actor_has('municipal_admin') AND (cvr_kode = ly.actor_cvr()
                                                   OR {_IN_SCOPE}))"""
LAES = f"""subjekt = ly.actor_subject() OR ly.actor_has('national_admin')
        OR {_ADMIN_SCOPE}"""
RET = f"""ly.actor_may_write() AND (ly.actor_has('national_admin') OR {_ADMIN_SCOPE})"""

#: 0002's policies, restored by the downgrade.
LAES_0002 = """subjekt = ly.actor_subject() OR ly.actor_has('national_admin')
        OR (ly.actor_has('municipal_admin') AND cvr_kode = ly.actor_cvr())"""
RET_0002 = """ly.actor_may_write() AND (ly.actor_has('national_admin')
             OR (ly.actor_has('municipal_admin') AND cvr_kode = ly.actor_cvr()))"""

SKRIV_0002 = """ly.actor_may_write() AND tildelt_af = ly.actor_subject()
        AND (ly.actor_has('national_admin')
             OR (ly.actor_has('municipal_admin') AND cvr_kode = ly.actor_cvr()))"""


def upgrade() -> None:
    closed = ", ".join(f"'{s}'" for s in CLOSED)
    op.execute(f"""
    CREATE FUNCTION ly.eftersyn_foto_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, ly, pg_temp AS $$
    DECLARE
        current_status text;
    BEGIN
        -- FOR SHARE, not FOR KEY SHARE: only a share lock waits for an approval's UPDATE
        -- (FOR NO KEY UPDATE), and makes the approval's FOR UPDATE wait for this photo.
        SELECT e.status INTO current_status FROM ly.eftersyn e
            WHERE e.id = NEW.eftersyn_id FOR SHARE;
        IF current_status IN ({closed}) THEN
            RAISE EXCEPTION 'et godkendt eftersyn får ikke nye fotos'
                USING ERRCODE = 'insufficient_privilege', COLUMN = 'eftersyn_id';
        END IF;
        RETURN NEW;
    END $$""")
    # Owned by the inspections' owner (who is not subject to their row-level security),
    # whoever runs the migration; no one else calls it.
    op.execute("""
    DO $$BEGIN
        EXECUTE format('ALTER FUNCTION ly.eftersyn_foto_guard() OWNER TO %I',
                       (SELECT tableowner FROM pg_tables
                        WHERE schemaname = 'ly' AND tablename = 'eftersyn'));
    END$$""")
    op.execute("REVOKE ALL ON FUNCTION ly.eftersyn_foto_guard() FROM PUBLIC")
    op.execute("""CREATE TRIGGER guard BEFORE INSERT ON ly.eftersyn_foto
        FOR EACH ROW EXECUTE FUNCTION ly.eftersyn_foto_guard()""")

    op.execute(f"ALTER POLICY skriv ON ly.tildeling WITH CHECK ({SKRIV})")
    op.execute(f"ALTER POLICY laes ON ly.tildeling USING ({LAES})")
    op.execute(f"ALTER POLICY ret ON ly.tildeling USING ({RET})")


def downgrade() -> None:
    op.execute(f"ALTER POLICY ret ON ly.tildeling USING ({RET_0002})")
    op.execute(f"ALTER POLICY laes ON ly.tildeling USING ({LAES_0002})")
    op.execute(f"ALTER POLICY skriv ON ly.tildeling WITH CHECK ({SKRIV_0002})")
    op.execute("DROP TRIGGER guard ON ly.eftersyn_foto")
    op.execute("DROP FUNCTION ly.eftersyn_foto_guard()")
