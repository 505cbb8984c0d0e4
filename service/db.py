"""The connection pool (psycopg 3, async), and transactions that act for an actor."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from datamodel.access import Actor, transaction_settings
from datamodel.db import psycopg_url
from service.auth import current_actor


#: The request connections' session settings. Plans are made with each request's actual
#: values (generic plans cannot tell a small bbox from a large one, nor use the spatial index
#: for an envelope built from parameters); prepared statements still save parsing. No JIT
#: compilation: a page of a dense area with a filter is estimated dear enough for PostgreSQL
#: to compile it, which took 0.6 s for a statement that runs in 0.07 s (bench/README.md).
SESSION_OPTIONS = "-c plan_cache_mode=force_custom_plan -c jit=off"


def make_pool(url: str, min_size: int, max_size: int) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        psycopg_url(url),
        min_size=min_size,
        max_size=max_size,
        open=False,
        kwargs={"autocommit": False, "prepare_threshold": 5, "options": SESSION_OPTIONS},
        check=AsyncConnectionPool.check_connection,
    )


def _set_actor_sql(settings: dict[str, str]) -> tuple[str, list]:
    parts = ["set_config(%s, %s, true)" for _ in settings]
    # Activation is read from its table by the database, never taken from the request.
    parts.append("set_config('ly.aktiveret', ly.activation_in_force()::text, true)")
    params: list = []
    for name, value in settings.items():
        params += [name, value]
    return "SELECT " + ", ".join(parts), params


@asynccontextmanager
async def acting_as(pool: AsyncConnectionPool, actor: Actor) -> AsyncIterator[AsyncConnection]:
    """A transaction in which PostgreSQL acts for `actor`: its database role and scope are
    set for this transaction only, so row-level security decides what it sees and changes."""
    stmt, params = _set_actor_sql(transaction_settings(actor))
    async with pool.connection() as conn:
        async with conn.transaction():
            await conn.execute(stmt, params)
            yield conn


@asynccontextmanager
async def acting(request: Request) -> AsyncIterator[AsyncConnection]:
    """`acting_as` for the actor of the request."""
    actor = await current_actor(request)
    async with acting_as(request.app.state.pool, actor) as conn:
        yield conn


async def lock_object(conn: AsyncConnection, theme, objekt_id) -> None:
    """Serialise this transaction's write of an object with every other write of it through
    this API (a transaction-level advisory lock, held to commit): a write without If-Match
    then applies to the version the previous one made, instead of losing to it. Keyed by the
    theme's temakode and the first 32 bits of the objekt_id (a rare collision only makes two
    writers of different objects wait for each other)."""
    key = int.from_bytes(objekt_id.bytes[:4], "big", signed=True)
    await conn.execute("SELECT pg_advisory_xact_lock(%s::int, %s::int)", [theme.temakode, key])


def equality_filters(**given) -> tuple[str, list]:
    """`column = %s AND …` for the filters a request gave (None: not given), with their
    parameters. Column names come from the caller's code, never from the request."""
    clauses = [f"{column} = %s" for column, value in given.items() if value is not None]
    return " AND ".join(clauses) or "TRUE", [v for v in given.values() if v is not None]
