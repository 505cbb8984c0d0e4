"""Exports of any filtered items request of any collection:
`/collections/{collectionId}/items?f=geojson|csv|xlsx|gpkg|shp`.

An export is the whole filtered result of the query's theme (`q.theme`): every object the
actor sees that matches `bbox`,
`bbox-crs`, `datetime`, `filter`, `filter-lang`, `filter-crs`, `?<queryable>=value` and
`asof`, in the output `crs` (default CRS84 for GeoJSON, CSV and XLSX; EPSG:25832, the
storage CRS, for GeoPackage and Shapefile, whose files carry their CRS). Paging does not
apply, so `limit` and `cursor` are refused (400) rather than silently ignored: an export
never looks like a page. Columns, geometry type (Point, or MultiPolygon for an area theme),
layer and file name follow the theme's descriptor (`loaders.exports`). The file name says
what the file holds: `<collectionId>[-<municipality>-<code>]-<date>.<ext>`, the municipality
when the filters limit the export to one (`beliggenhedskommune=` or a CQL2 filter on it),
the (Danish) date of the register read (today, or `asof`).

`csv-dialect` (`PARAMS`; CSV only) chooses the CSV dialect: `da` (default: what Danish Excel
and LibreOffice open as they are: UTF-8 with BOM, `;`, decimal comma) or `rfc4180` (for
programs). The items router lists it among its parameters (`params.check_known`).

The read runs in the actor's transaction (`acting`), so row-level security and the
public's column privileges decide what is exported, as for items: the public's views hold
no personal attribute, and the authorities' views mask them for planners and inspectors.
Rows come from a server-side cursor in batches (`loaders.exports.BATCH`), so memory stays
constant:
- GeoJSON and CSV are streamed while they are read; the first small batch is read before
  the response starts, so a bad filter the database refuses is still a problem response,
  and the first bytes go out after that batch.
- XLSX, GeoPackage and Shapefile (zipped) are written batch by batch to a file in a
  temporary directory of the export's own (GDAL and openpyxl in a worker thread; openpyxl's
  stream of the sheet's rows is in it too), the connection is returned to the pool, and the
  file is opened, its directory removed, and the open file streamed: nothing is on disk
  once the download starts, whether or not the client stays to its end.

The temporary directory has one owner, `_write_file`, which removes it however the writing
ends: finished, refused (`loaders.exports.DoesNotFit`), a database error (a killed
connection: a 503 problem), a failed write (a full disk), cancelled, or the client gone.
Between batches the export stops when the client has gone away (nobody would receive the
file, and it would hold a connection to the end). An XLSX export is counted first (a
bounded count, up to one object more than a sheet holds) and refused (422, naming `f`)
before anything is written when it would not fit.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from contextlib import AsyncExitStack

import anyio
import anyio.lowlevel
from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from datamodel import crs as crsmod
from datamodel.cql2sql import FilterError, parse_filter
from datamodel.query import ItemsQuery
from loaders import exports as writers
from service import params
from service.db import acting
from service.errors import Problem, bad_request

assert set(params.EXPORT_FORMATS) == set(writers.FORMATS)
#: The first fetch is small, so the first bytes of a streamed export go out soon.
FIRST_BATCH = 500
log = logging.getLogger(__name__)
CHUNK = 1 << 20  # bytes per read when streaming a finished file
#: The status of an export whose client went away before its response began (nginx's
#: "client closed request"; nobody receives it, the access log shows it).
CLIENT_GONE = 499
#: Parameters of an export beyond those of an items page (the items router takes them too).
CSV_DIALECT = "csv-dialect"
PARAMS = frozenset({CSV_DIALECT})


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


def _municipality(request: Request, q: ItemsQuery) -> int | None:
    """The one municipality the request's filters limit the export to (for the file name)."""
    cql = None
    text = request.query_params.get("filter")
    if text is not None:
        try:  # the router has parsed it already: this cannot fail where it did not
            cql = parse_filter(text, request.query_params.get("filter-lang"))
        except FilterError:
            cql = None
    return writers.filter_municipality(q.equals, cql)


def _csv_dialect(request: Request, fmt: writers.Format) -> str:
    value = request.query_params.get(CSV_DIALECT)
    if value is None:
        return writers.DEFAULT_CSV_DIALECT
    if fmt.name != "csv":
        raise bad_request(CSV_DIALECT, f"applies to f=csv only, not f={fmt.name}")
    if value not in writers.CSV_DIALECTS:
        raise bad_request(CSV_DIALECT, f"{value!r} is not a CSV dialect: "
                          + "; ".join(f"{d.name} ({d.description})"
                                      for d in writers.CSV_DIALECTS.values()))
    return value


def _headers(fmt: writers.Format, q: ItemsQuery, request: Request) -> dict[str, str]:
    name = writers.file_name(fmt, q.theme, q.asof, _municipality(request, q))
    return {
        "Content-Disposition": f'attachment; filename="{name}"',
        "Content-Crs": crsmod.header(q.out),
        "Cache-Control": "private, no-store" if not q.public else "public, max-age=60",
        "Vary": "Authorization, X-API-Key, Cookie",
    }


async def _shielded(fn, *args):
    """`fn(*args)` run to its end even when the export is cancelled (the cancellation is
    taken at the next checkpoint): a fetch, or the end of a transaction, is never cut
    half-way (psycopg would close the connection). A worker thread's call needs no shield:
    `run_in_threadpool` waits for the thread also when cancelled, so the directory is never
    removed under a write still running."""
    with anyio.CancelScope(shield=True):
        return await fn(*args)


async def _open(request: Request, q: ItemsQuery, stmt, args, fmt: writers.Format):
    """The actor's transaction with a server-side cursor on `stmt` and its first rows; an
    XLSX export is counted first, and refused when it would not fit a sheet."""
    stack = AsyncExitStack()
    try:
        conn = await stack.enter_async_context(acting(request))
        if fmt.name == "xlsx":
            count_stmt, count_args = writers.count_sql(q, writers.XLSX_MAX_ROWS + 1)
            (n,) = await (await conn.execute(count_stmt, count_args)).fetchone()
            if n > writers.XLSX_MAX_ROWS:
                raise _does_not_fit(writers.TooManyRows.xlsx())
        cur = conn.cursor(name="ly_export")
        await cur.execute(stmt, args)
        first = await cur.fetchmany(FIRST_BATCH)
    except BaseException:
        await _shielded(stack.__aexit__, *sys.exc_info())
        raise
    return stack, cur, first


def _does_not_fit(exc: writers.DoesNotFit) -> Problem:
    """More objects than an XLSX sheet holds: 422; a value longer than a cell: 400."""
    status, kind = (422, "too-many-rows") if isinstance(exc, writers.TooManyRows) else \
        (400, "cell-too-long")
    return Problem(status, f"f: {exc}", kind=kind, errors=[{"field": "f", "detail": str(exc)}])


async def export(request: Request, q: ItemsQuery, fmt_name: str) -> Response:
    fmt = writers.FORMATS[fmt_name]
    for name in ("limit", "cursor"):
        if name in request.query_params:
            raise bad_request(name, f"an export (f={fmt_name}) is the whole filtered result; "
                                    f"{name} does not apply")
    dialect = _csv_dialect(request, fmt)
    if "crs" not in request.query_params:
        q.out = fmt.default_crs
    stmt, args = writers.export_sql(q, fmt)
    headers = _headers(fmt, q, request)
    if request.method == "HEAD":
        return _head(fmt, headers)
    if fmt.streamed:
        stack, cur, first = await _open(request, q, stmt, args, fmt)
        return _ExportResponse(
            _stream(stack, cur, first, writers.writer(fmt, q, csv_dialect=dialect)),
            media_type=fmt.media_type, headers=headers)
    f = await _write_file(request, q, fmt, stmt, args)
    if f is None:
        return Response(status_code=CLIENT_GONE)
    headers["Content-Length"] = str(os.fstat(f.fileno()).st_size)
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


async def _write_file(request: Request, q: ItemsQuery, fmt: writers.Format, stmt, args):
    """The finished file of a file format, open for reading and already removed from disk
    (with the temporary directory it was written in); None when the client went away."""
    with tempfile.TemporaryDirectory(prefix="ly-export-", ignore_cleanup_errors=True) as tmp:
        path = await _write(request, q, fmt, stmt, args, tmp)
        return None if path is None else open(path, "rb")


async def _write(request: Request, q: ItemsQuery, fmt: writers.Format, stmt, args,
                 directory: str) -> str | None:
    """Write the export in `directory`: the finished file's path, or None when the client
    went away (the export stops at the next batch)."""
    stack, cur, rows = await _open(request, q, stmt, args, fmt)
    w, path = None, None
    try:
        w = await run_in_threadpool(writers.writer, fmt, q, directory)
        while rows:
            await run_in_threadpool(w.write, rows)
            await anyio.lowlevel.checkpoint()  # where a cancellation stops the export
            if await request.is_disconnected():
                break
            rows = await _shielded(cur.fetchmany, writers.BATCH)
        else:
            path = await run_in_threadpool(w.finish)
    except BaseException as exc:
        if w is not None:
            w.close()
        await _shielded(stack.__aexit__, type(exc), exc, exc.__traceback__)
        if isinstance(exc, writers.DoesNotFit):
            raise _does_not_fit(exc) from None
        if isinstance(exc, OSError):  # the server's disk (full, failing): not the client's
            log.error("export to %s failed: %s", directory, exc)
            raise Problem(503, "Eksporten kunne ikke skrives på serveren; prøv igen senere.",
                          kind="export-storage", headers={"Retry-After": "60"}) from None
        raise
    w.close()
    await _shielded(stack.aclose)  # the connection goes back to the pool before the download
    return path


async def _file_chunks(f):
    try:
        while True:
            chunk = await run_in_threadpool(f.read, CHUNK)
            if not chunk:
                break
            yield chunk
    finally:
        f.close()
