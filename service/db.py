"""The connection pool (psycopg 3, async) and a small query helper."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from datamodel.db import psycopg_url


def make_pool(url: str, min_size: int, max_size: int) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        psycopg_url(url),
        min_size=min_size,
        max_size=max_size,
        open=False,
        kwargs={"autocommit": False, "prepare_threshold": 5},
        check=AsyncConnectionPool.check_connection,
    )


@asynccontextmanager
async def transaction(pool: AsyncConnectionPool) -> AsyncIterator[AsyncConnection]:
    """A connection in one transaction: committed on success, rolled back on any error."""
    async with pool.connection() as conn:
        async with conn.transaction():
            yield conn
