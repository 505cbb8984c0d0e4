"""The municipality of a point: one SQL statement, and a form that does not raise.

`ly.kommune_for(g)` (0001) is PL/pgSQL: each call starts the PL/pgSQL executor and runs a
query to see whether any municipality is loaded before the point-in-polygon query. It runs
for every new version (the write trigger) and for points a loader checks. As plain SQL the
same rule costs 19-24 µs a point instead of 30 µs (20,000 points of the bench set, quiet
machine). More important for the loaders:

- `ly.kommune_ved(g)`: the municipality containing the point (the lowest code on a border),
  else the nearest within 5 km (DAGI 1:500 000's coastline is generalised), else NULL.
  Loaders use it to reject a point at sea with a reason instead of failing the whole import.
- `ly.kommune_for(g)`: the same, and for a point farther out the error it always raised
  (`ly.uden_for_danmark`), unless no municipalities are loaded (NULL), as before.

(Cutting the boundaries into parts of 64 vertices with ST_Subdivide did not make a single
lookup faster here: the index probe, not the point-in-polygon test, is the cost.)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_INSIDE_OR_NEAR = """
        SELECT coalesce(
            (SELECT kommunekode FROM ly.kommune
             WHERE ST_Intersects(geometri, g) ORDER BY kommunekode LIMIT 1),
            (SELECT kommunekode FROM ly.kommune
             WHERE ST_DWithin(geometri, g, 5000) ORDER BY geometri <-> g LIMIT 1))"""

_AT = f"""
    CREATE FUNCTION ly.kommune_ved(g geometry) RETURNS integer LANGUAGE sql STABLE AS $$
        {_INSIDE_OR_NEAR}
    $$"""

_OUTSIDE = """
    CREATE FUNCTION ly.uden_for_danmark(g geometry) RETURNS integer LANGUAGE plpgsql STABLE AS $$
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM ly.kommune) THEN
            RETURN NULL;
        END IF;
        RAISE EXCEPTION 'punktet ligger uden for Danmark' USING ERRCODE = 'LY422',
            COLUMN = 'geometri';
    END $$"""

_LOOKUP = """
    CREATE OR REPLACE FUNCTION ly.kommune_for(g geometry) RETURNS integer
    LANGUAGE sql STABLE AS $$
        SELECT coalesce(ly.kommune_ved(g), ly.uden_for_danmark(g))
    $$"""

# 0001's function, for the downgrade.
_OLD = """
    CREATE OR REPLACE FUNCTION ly.kommune_for(g geometry) RETURNS integer
    LANGUAGE plpgsql STABLE AS $$
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


def upgrade() -> None:
    op.execute(_AT)
    op.execute(_OUTSIDE)
    op.execute(_LOOKUP)
    op.execute("GRANT EXECUTE ON FUNCTION ly.kommune_ved(geometry), "
               "ly.uden_for_danmark(geometry) TO ly_anon, ly_user")


def downgrade() -> None:
    op.execute(_OLD)
    op.execute("DROP FUNCTION ly.kommune_ved(geometry)")
    op.execute("DROP FUNCTION ly.uden_for_danmark(geometry)")
