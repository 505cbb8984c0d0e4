"""Let PostgreSQL use the spatial index under row-level security.

PostgreSQL evaluates a query's own conditions after the row-level security policies unless
their functions are LEAKPROOF, so without this a bbox or S_INTERSECTS filter cannot use the
GiST index and a small area means scanning the whole register in objekt_id order. PostGIS'
bounding-box and intersection predicates reveal nothing about rows but whether they
intersect the (client-given) geometry, and raise only on invalid input or mixed SRIDs, so
marking them LEAKPROOF is safe for Ly. Only a superuser may do it: without one the migration
notes it and goes on (queries stay correct, small areas stay slow).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from alembic import op

from datamodel import storage

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

FUNCTIONS = (
    "geometry_overlaps(geometry, geometry)",  # the && operator
    "st_intersects(geometry, geometry)",
    "_st_intersects(geometry, geometry)",
    "st_contains(geometry, geometry)",
    "_st_contains(geometry, geometry)",
    "st_within(geometry, geometry)",
    "_st_within(geometry, geometry)",
)


def _set(leakproof: bool) -> None:
    for statement in storage.leakproof_sql(FUNCTIONS, leakproof):
        op.execute(statement)


def upgrade() -> None:
    _set(True)


def downgrade() -> None:
    _set(False)
