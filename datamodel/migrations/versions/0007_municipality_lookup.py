"""The municipality of a point, as one SQL statement for the common case.

`ly.kommune_for(g)` (0001) is PL/pgSQL: each call starts the PL/pgSQL executor and runs a
query to see whether any municipality is loaded before the point-in-polygon query, about
75 µs a point here. It runs for every new version (the write trigger) and every candidate of
an import (the quality gate), so a national list of 1,000,000 shelters spends minutes in it.
The same rule is now a SQL function whose common case, the municipality containing the
point, is the one indexed query (about 40 µs here); the rare rest (no municipalities loaded,
a point in the sea within 5 km of the generalised coastline, a point outside Denmark) is the
old PL/pgSQL rule, unchanged, as `ly.kommune_naer(g)`. (Cutting the boundaries into parts of
64 vertices with ST_Subdivide did not make the test faster here: the index probe, not the
point-in-polygon test, is the cost.)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_NEAR = """
    CREATE FUNCTION ly.kommune_naer(g geometry) RETURNS integer LANGUAGE plpgsql STABLE AS $$
    DECLARE k integer;
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM ly.kommune) THEN
            RETURN NULL;
        END IF;
        SELECT kommunekode INTO k FROM ly.kommune
            WHERE ST_Intersects(geometri, g) ORDER BY kommunekode LIMIT 1;
        IF k IS NULL THEN
            SELECT kommunekode INTO k FROM ly.kommune
                WHERE ST_DWithin(geometri, g, 5000) ORDER BY geometri <-> g LIMIT 1;
        END IF;
        IF k IS NULL THEN
            RAISE EXCEPTION 'punktet ligger uden for Danmark' USING ERRCODE = 'LY422',
                COLUMN = 'geometri';
        END IF;
        RETURN k;
    END $$"""

_LOOKUP = """
    CREATE OR REPLACE FUNCTION ly.kommune_for(g geometry) RETURNS integer
    LANGUAGE sql STABLE AS $$
        SELECT coalesce(
            (SELECT kommunekode FROM ly.kommune
             WHERE ST_Intersects(geometri, g) ORDER BY kommunekode LIMIT 1),
            ly.kommune_naer(g))
    $$"""

_OLD = _NEAR.replace("CREATE FUNCTION ly.kommune_naer", "CREATE OR REPLACE FUNCTION ly.kommune_for")


def upgrade() -> None:
    op.execute(_NEAR)
    op.execute(_LOOKUP)
    op.execute("GRANT EXECUTE ON FUNCTION ly.kommune_naer(geometry) TO ly_anon, ly_user")


def downgrade() -> None:
    op.execute(_OLD)
    op.execute("DROP FUNCTION ly.kommune_naer(geometry)")
