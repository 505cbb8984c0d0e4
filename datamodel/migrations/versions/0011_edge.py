"""The edge's rate-limit counters (service/edge.py).

`ly.rate_limit` holds one row per client key (an address, a hash of a credential, or an
address's refused credentials) with its count in its current minute, which began at
`started` (the key's first request after the previous minute ended). Every worker of the
service counts in it, so a limit holds for the service, not per process. UNLOGGED: the
counters need no crash safety or replication and cost no WAL; a fill factor of 50 leaves
room for HOT updates of the counts. Only the service's login role uses it (outside any
actor's transaction); ly_anon and ly_user get no grant.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE UNLOGGED TABLE ly.rate_limit (
            key text PRIMARY KEY,
            started timestamptz NOT NULL,
            hits integer NOT NULL
        ) WITH (fillfactor = 50)""")
    op.execute("COMMENT ON TABLE ly.rate_limit IS "
               "'Requests per client key in the current minute (service/edge.py)'")


def downgrade() -> None:
    op.execute("DROP TABLE ly.rate_limit")
