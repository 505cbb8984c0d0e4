"""Text search without accents: the `unaccent` and `pg_trgm` extensions.

CQL2's ACCENTI() (accent-insensitive comparison, datamodel/cql2sql.py) and the items' free
text search `q` compare text with its accents removed. PostgreSQL's `unaccent()` is only
STABLE (its dictionary could change), which keeps it out of index expressions, so
`ly.unaccent(text)` fixes the dictionary and is IMMUTABLE (the usual wrapper). `pg_trgm`
gives trigram indexes for substring search. Both extensions are trusted (PostgreSQL 13+): the
database owner creates them, no superuser needed.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent SCHEMA public")
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
    op.execute("""
        CREATE FUNCTION ly.unaccent(text) RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
        RETURN public.unaccent('public.unaccent'::regdictionary, $1)""")
    op.execute("COMMENT ON FUNCTION ly.unaccent(text) IS "
               "'unaccent() with its dictionary fixed: IMMUTABLE, for indexes (CQL2 ACCENTI, q)'")


def downgrade() -> None:
    op.execute("DROP FUNCTION ly.unaccent(text)")
    op.execute("DROP EXTENSION IF EXISTS pg_trgm")
    op.execute("DROP EXTENSION IF EXISTS unaccent")
