"""Let S_DWITHIN use the spatial index under row-level security, as 0005 does for the
bounding-box and intersection predicates.

`ST_DWithin` finds its index condition through its support function only when PostgreSQL may
evaluate it before the policies, that is when it is LEAKPROOF; otherwise a CQL2 S_DWITHIN
filter (or any distance search) scans the register in objekt_id order under the caller's
row-level security (measured on 100,000 shelters: about 2 s instead of milliseconds). Like
the predicates of 0005, it reveals nothing about a row but whether it lies within the
(client-given) distance of the (client-given) geometry, and raises only on invalid input or
mixed SRIDs, so marking it LEAKPROOF is safe for Ly. Only a superuser may: without one the
migration notes it and goes on (answers stay correct, distance filters stay slow).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08
"""

from alembic import op

from datamodel import storage

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

FUNCTIONS = (
    "st_dwithin(geometry, geometry, double precision)",
    "_st_dwithin(geometry, geometry, double precision)",
)


def _set(leakproof: bool) -> None:
    for statement in storage.leakproof_sql(FUNCTIONS, leakproof):
        op.execute(statement)


def upgrade() -> None:
    _set(True)


def downgrade() -> None:
    _set(False)
