"""Exports of any filtered items request of any collection:
`/collections/{collectionId}/items?f=geojson|csv|xlsx|gpkg|shp`.

An export is the whole filtered result of the query's theme (`q.theme`): every object the
actor sees that matches `bbox`,
`bbox-crs`, `datetime`, `filter`, `filter-lang`, `filter-crs`, `?<queryable>=value` and
`asof`, in the output `crs` (default CRS84 for GeoJSON, CSV and XLSX; EPSG:25832, the
storage CRS, for GeoPackage and Shapefile, whose files carry their CRS). Paging does not
apply, so `limit` and `cursor` are refused (400) rather than silently ignored: an export
never looks like a page. Columns, geometry type (Point, or MultiPolygon for an area theme),
layer and file name (`<collectionId>-<UTC time>.<ext>`) follow the theme's descriptor
(`loaders.exports`).

The read runs in the actor's transaction (`acting`), so row-level security and the
public's column privileges decide what is exported, as for items: the public's views hold
no personal attribute, and the authorities' views mask them for planners and inspectors. Rows come from a
server-side cursor in batches (`loaders.exports.BATCH`), so memory stays constant:
- GeoJSON and CSV are streamed while they are read; the first small batch is read before
  the response starts, so a bad filter the database refuses is still a problem response,
  and the first bytes go out after that batch.
- XLSX, GeoPackage and Shapefile (zipped) are written batch by batch to a temporary file
  (GDAL and openpyxl in a worker thread), the connection is returned to the pool, and the
  file is streamed and deleted (it is unlinked before streaming starts, so nothing is left
  behind if the client goes away).
"""

from __future__ import annotations

import os
import sys
from contextlib import AsyncExitStack

import anyio
import anyio.lowlevel
from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from datamodel import crs as crsmod
from datamodel.query import ItemsQuery
from loaders import exports as writers
from service import params
from service.db import acting
from service.errors import Problem, bad_request

assert set(params.EXPORT_FORMATS) == set(writers.FORMATS)
#: The first fetch is small, so the first bytes of a streamed export go out soon.
FIRST_BATCH = 500
CHUNK = 1 << 20  # bytes per read when streaming a finished file


class _ExportResponse(StreamingResponse):
    """A streaming response that always closes its iterator, also when the client goes away
    mid-stream (Starlette then abandons the iterator, which would hold the transaction, and
    its pooled connection, until the garbage collector finalises it)."""

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()


def _headers(fmt: writers.Format, q: ItemsQuery) -> dict[str, str]:
    return {
        "Content-Disposition": f'attachment; filename="{writers.file_name(fmt, q.theme)}"',
        "Content-Crs": crsmod.header(q.out),
        "Cache-Control": "private, no-store" if not q.public else "public, max-age=60",
        "Vary": "Authorization, X-API-Key, Cookie",
    }


async def _open(request: Request, stmt, args):
    """The actor's transaction with a server-side cursor on `stmt` and its first rows."""
    stack = AsyncExitStack()
    try:
        conn = await stack.enter_async_context(acting(request))
        cur = conn.cursor(name="ly_export")
        await cur.execute(stmt, args)
        first = await cur.fetchmany(FIRST_BATCH)
    except BaseException:
        await stack.__aexit__(*sys.exc_info())
        raise
    return stack, cur, first


async def export(request: Request, q: ItemsQuery, fmt_name: str) -> Response:
    fmt = writers.FORMATS[fmt_name]
    for name in ("limit", "cursor"):
        if name in request.query_params:
            raise bad_request(name, f"an export (f={fmt_name}) is the whole filtered result; "
                                    f"{name} does not apply")
    if "crs" not in request.query_params:
        q.out = fmt.default_crs
    stmt, args = writers.export_sql(q, fmt)
    headers = _headers(fmt, q)
    if request.method == "HEAD":
        return _head(fmt, headers)
    stack, cur, first = await _open(request, stmt, args)
    if fmt.streamed:
        return _ExportResponse(_stream(stack, cur, first, writers.writer(fmt, q)),
                               media_type=fmt.media_type, headers=headers)
    try:
        path, w = await _write_file(cur, first, fmt, q)
    except BaseException:
        await stack.__aexit__(*sys.exc_info())
        raise
    await stack.aclose()  # the connection goes back to the pool before the download
    try:
        f = open(path, "rb")
        size = os.fstat(f.fileno()).st_size
    finally:
        w.close()  # the directory and file are gone; the open file lives until streamed
    headers["Content-Length"] = str(size)
    return _ExportResponse(_file_chunks(f), media_type=fmt.media_type, headers=headers)


def _head(fmt: writers.Format, headers: dict[str, str]) -> Response:
    """What a GET would answer, without its body, and without running the export (its
    length is not known before it is made, so no Content-Length)."""
    response = Response(status_code=200, media_type=fmt.media_type, headers=headers)
    del response.headers["content-length"]
    return response


async def _stream(stack: AsyncExitStack, cur, first: list, w):
    """The export's bytes as they are read. A fetch, and the end of the transaction, are
    shielded from cancellation: when the client goes away, the fetch under way completes
    and the transaction ends cleanly, so the connection goes back to the pool intact
    (a cancelled FETCH would make psycopg close the connection); the cancellation is taken
    at the checkpoint after it."""
    try:
        yield w.start()
        rows = first
        while rows:
            yield w.write(rows)
            with anyio.CancelScope(shield=True):
                rows = await cur.fetchmany(writers.BATCH)
            await anyio.lowlevel.checkpoint()  # where a disconnect cancels the export
        yield w.finish()
    finally:
        with anyio.CancelScope(shield=True):
            await stack.aclose()


async def _write_file(cur, first: list, fmt: writers.Format, q: ItemsQuery):
    w = await run_in_threadpool(writers.writer, fmt, q)
    try:
        rows = first
        while rows:
            await run_in_threadpool(w.write, rows)
            rows = await cur.fetchmany(writers.BATCH)
        path = await run_in_threadpool(w.finish)
    except writers.TooManyRows as exc:
        w.close()
        raise Problem(400, f"f: {exc}", kind="too-many-rows",
                      errors=[{"field": "f", "detail": str(exc)}]) from None
    except BaseException:
        w.close()
        raise
    return path, w


async def _file_chunks(f):
    try:
        while True:
            chunk = await run_in_threadpool(f.read, CHUNK)
            if not chunk:
                break
            yield chunk
    finally:
        f.close()
