"""The base table's append-only guard, compared as binary images instead of as JSON.

`ly.beskyttelsesrum_append_only()` (0001) lets an UPDATE of a version do one thing: close it
(set `systid_til` on a version that has none). It checked that nothing else changed by
turning both rows into jsonb, geometry included, for every row: 47 µs a row, two thirds of
what closing a version costs (50,000 versions of the bench set closed in one statement:
3.5 s with it, 1.2 s without a guard). Now the new row, with the old `systid_til` put back,
is compared with the old one by the binary-image operator `*<>` (every column, byte for
byte, whatever its type): 1.4 s. Editing through the view, publishing changes, rolling back
and syncing all close versions this way.

Stricter than before, not looser: jsonb compared numbers by value (1.0 equal to 1.00), the
image compares bytes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_GUARD = """
    CREATE OR REPLACE FUNCTION ly.beskyttelsesrum_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        closed ly.beskyttelsesrum;
    BEGIN
        IF TG_OP = 'DELETE' OR TG_OP = 'TRUNCATE' THEN
            RAISE EXCEPTION 'versioner af beskyttelsesrum slettes aldrig fysisk'
                USING ERRCODE = 'LY403';
        END IF;
        closed := NEW;
        closed.systid_til := OLD.systid_til;
        IF OLD.systid_til IS NOT NULL OR closed *<> OLD THEN
            RAISE EXCEPTION 'en version af beskyttelsesrum kan kun afsluttes, ikke ændres'
                USING ERRCODE = 'LY403';
        END IF;
        RETURN NEW;
    END $$"""

# 0001's guard, as it was.
_JSON_GUARD = """
    CREATE OR REPLACE FUNCTION ly.beskyttelsesrum_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' OR TG_OP = 'TRUNCATE' THEN
            RAISE EXCEPTION 'versioner af beskyttelsesrum slettes aldrig fysisk'
                USING ERRCODE = 'LY403';
        END IF;
        IF OLD.systid_til IS NOT NULL
           OR (to_jsonb(NEW) - 'systid_til') IS DISTINCT FROM (to_jsonb(OLD) - 'systid_til') THEN
            RAISE EXCEPTION 'en version af beskyttelsesrum kan kun afsluttes, ikke ændres'
                USING ERRCODE = 'LY403';
        END IF;
        RETURN NEW;
    END $$"""


def upgrade() -> None:
    op.execute(_GUARD)


def downgrade() -> None:
    op.execute(_JSON_GUARD)
