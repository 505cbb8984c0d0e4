"""Alembic environment: migrations run against DATABASE_URL (or the URL passed in the config).

After every upgrade the code lists are synchronised from `datamodel/codelists/*.json`, so the
register's code-list tables always hold the values the project ships (codes are upserted and
never deleted: old data may still use a code that is no longer active).
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool

from datamodel.db import sqlalchemy_url
from datamodel.store import sync_checklists, sync_codelists

config = context.config


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get(
        "DATABASE_URL", "postgresql://ly:ly@127.0.0.1:5432/ly")
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=None, version_table_schema="public")
        with context.begin_transaction():
            context.run_migrations()
            sync_codelists(connection.connection.driver_connection)
            sync_checklists(connection.connection.driver_connection)


if context.is_offline_mode():
    raise SystemExit("Ly's migrations run online only (they load code lists from the project).")
run_migrations_online()
