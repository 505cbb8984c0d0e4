"""Exports leave nothing behind: the temporary files of XLSX, GeoPackage and Shapefile
exports (ours, openpyxl's sheet stream, GDAL's) are gone on every way an export ends: when
it is done, when the client goes away while it is written or streamed, and when its database
connection is killed half-way (a problem response or an aborted stream, never a 500). An
XLSX export of more objects than a sheet holds is refused before anything is written.

The system temporary directory is a test-private one (`tempfile.tempdir`); the live servers
run in a thread of this process, so they use it too.
"""

from __future__ import annotations

import errno
import os
import tempfile
import threading
import time

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.conftest import ADMIN_HEADERS, ITEMS, make_settings, query

FILE_FORMATS = ["xlsx", "gpkg", "shp"]
#: The shelters of one municipality (some 300 of the demo's): exports of many batches, quick.
PARAMS = {"beliggenhedskommune": "101"}


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    d = tmp_path / "systmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


@pytest.fixture
def small_batches(monkeypatch):
    """An export of the demo's shelters runs for many batches."""
    from loaders import exports as writers
    from service import exports

    monkeypatch.setattr(writers, "BATCH", 20)
    monkeypatch.setattr(exports, "FIRST_BATCH", 5)


def _left(d) -> list[str]:
    """Every file and directory under `d`, and every file this process still holds open
    there (an unlinked file still takes its space on disk until it is closed)."""
    found = [os.path.relpath(os.path.join(root, n), d)
             for root, dirs, files in os.walk(d) for n in dirs + files]
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(f"{d}{os.sep}"):
            found.append(f"open: {os.path.relpath(target, d)}")
    return sorted(found)


def _settled(d, seconds: float = 5.0) -> list[str]:
    """What is left under `d` once the server has finished (polled, up to `seconds`)."""
    deadline = time.monotonic() + seconds
    while (left := _left(d)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _spy_writes(monkeypatch, fmt: str, hook=None) -> list[int]:
    """The batch sizes the file writer of `fmt` receives; `hook(n)` runs before batch n."""
    from loaders import exports as writers

    cls = writers.WRITERS[fmt]
    original, sizes = cls.write, []

    def write(self, rows):
        if hook is not None:
            hook(len(sizes))
        sizes.append(len(rows))
        return original(self, rows)

    monkeypatch.setattr(cls, "write", write)
    return sizes


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_a_finished_export_leaves_nothing(ro_client, private_tmp, monkeypatch, small_batches,
                                          fmt):
    seen: list[list[str]] = []
    sizes = _spy_writes(monkeypatch, fmt, lambda n: seen.append(_left(private_tmp)))
    r = ro_client.get(ITEMS, params={"f": fmt, **PARAMS})
    assert r.status_code == 200, r.text
    assert len(r.content) == int(r.headers["content-length"]) > 1000
    assert len(sizes) > 10
    # the export's files, all of them (openpyxl's sheet stream too), are written in one
    # directory of the export's under the (private) temporary directory, so the check below
    # looks where they are
    assert seen[-1], "the export wrote nothing under tempfile.gettempdir()"
    assert all(p.removeprefix("open: ").startswith("ly-export-") for p in seen[-1]), seen[-1]
    assert _left(private_tmp) == []


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_a_client_leaving_mid_download_leaves_nothing(live_ro, private_tmp, monkeypatch, fmt):
    from service import exports

    monkeypatch.setattr(exports, "CHUNK", 1024)  # many chunks: the client leaves after one
    with httpx.Client(headers=ADMIN_HEADERS, timeout=30) as http:
        with http.stream("GET", live_ro.url + ITEMS, params={"f": fmt, **PARAMS}) as r:
            assert r.status_code == 200
            assert int(r.headers["content-length"]) > 10 * 1024
            next(r.iter_raw())
    assert _settled(private_tmp) == []


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_a_client_leaving_while_the_file_is_written_stops_the_export(
        live_ro, shared_db_url, private_tmp, monkeypatch, small_batches, fmt):
    """The client goes away before the file is finished: the export stops (it does not
    write the rest for no one, holding a connection), and leaves nothing."""
    gone = threading.Event()

    def hook(n):
        if n == 1:  # the second batch waits until the client has gone
            assert gone.wait(10)

    sizes = _spy_writes(monkeypatch, fmt, hook)
    total = query(shared_db_url, "SELECT count(*) FROM ly.t_6101_beskyt_rum "
                                 "WHERE beliggenhedskommune = 101")[0][0]
    http = httpx.Client(headers=ADMIN_HEADERS, timeout=httpx.Timeout(30, read=0.5))
    with pytest.raises(httpx.ReadTimeout):
        http.get(live_ro.url + ITEMS, params={"f": fmt, **PARAMS})
    http.close()  # the connection is closed: the client has gone
    gone.set()
    assert _settled(private_tmp) == []
    assert sum(sizes) < total, "the export ran to its end without a client"


def _kill_export(url: str) -> None:
    """Terminate the backend that runs the export's cursor, and wait until it is gone."""
    with psycopg.connect(url, autocommit=True) as conn:
        (n,) = conn.execute(
            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND query LIKE %s", ["%ly_export%"]).fetchone()
    assert n == 1


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_a_killed_database_connection_is_a_problem_and_leaves_nothing(
        ro_client, shared_db_url, private_tmp, monkeypatch, small_batches, fmt):
    def hook(n):
        if n == 1:
            _kill_export(shared_db_url)

    sizes = _spy_writes(monkeypatch, fmt, hook)
    r = ro_client.get(ITEMS, params={"f": fmt, **PARAMS})
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert "terminat" not in r.text  # no database error text in a response
    assert len(sizes) == 2
    assert _left(private_tmp) == []
    assert ro_client.get(ITEMS, params={"f": fmt, **PARAMS}).status_code == 200


@pytest.mark.parametrize("fmt", ["xlsx", "shp"])
def test_a_write_failing_at_the_end_leaves_nothing(shared_db_url, private_tmp, monkeypatch,
                                                   fmt):
    """The disk is full when the rows are in and the file is being finished (openpyxl's
    save of the workbook, the Shapefile's zip): a 503 problem (the server's fault, not the
    client's; never a 500), and nothing left (openpyxl's stream of the sheet's rows used to
    stay, with every row, in the system temporary directory)."""
    import zipfile

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "write", full)
    app = create_app(make_settings(shared_db_url))
    with TestClient(app, headers=ADMIN_HEADERS, raise_server_exceptions=False) as c:
        r = c.get(ITEMS, params={"f": fmt, **PARAMS})
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "60"
    assert r.headers["content-type"] == "application/problem+json"
    assert "space" not in r.text
    assert _left(private_tmp) == []


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_killed_connection_through_a_real_server(live_ro, shared_db_url, private_tmp,
                                                   monkeypatch, small_batches, fmt):
    """Through uvicorn: a file export answers a 503 problem; a streamed one, whose 200 has
    gone out, ends its stream short (the client sees an incomplete body), never a 500."""
    from loaders import exports as writers

    cls = writers.WRITERS[fmt]
    original, calls = cls.write, []

    def write(self, rows):
        calls.append(len(rows))
        if len(calls) == 2:
            _kill_export(shared_db_url)
        return original(self, rows)

    monkeypatch.setattr(cls, "write", write)
    with httpx.Client(headers=ADMIN_HEADERS, timeout=30) as http:
        if fmt == "csv":
            with http.stream("GET", live_ro.url + ITEMS, params={"f": fmt, **PARAMS}) as r:
                assert r.status_code == 200
                with pytest.raises(httpx.RemoteProtocolError):
                    r.read()
        else:
            r = http.get(live_ro.url + ITEMS, params={"f": fmt, **PARAMS})
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == "application/problem+json"
        assert http.get(live_ro.url + ITEMS, params={"f": fmt, **PARAMS}).status_code == 200
    assert _settled(private_tmp) == []


def test_xlsx_over_the_row_limit_is_refused_before_anything_is_written(
        ro_client, shared_db_url, private_tmp, monkeypatch):
    from loaders import exports as writers

    made = []
    original = writers.XLSXWriter.__init__

    def init(self, *args):
        made.append(1)
        original(self, *args)

    monkeypatch.setattr(writers.XLSXWriter, "__init__", init)
    n = query(shared_db_url, "SELECT count(*) FROM ly.t_6101_beskyt_rum "
                             "WHERE beliggenhedskommune = 101")[0][0]
    assert n > 2
    monkeypatch.setattr(writers, "XLSX_MAX_ROWS", n - 1)
    r = ro_client.get(ITEMS, params={"f": "xlsx", "beliggenhedskommune": "101"})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["errors"][0]["field"] == "f"
    assert "csv" in body["detail"].lower() and "geopackage" in body["detail"].lower()
    assert made == [] and _left(private_tmp) == []
    # the limit itself fits
    monkeypatch.setattr(writers, "XLSX_MAX_ROWS", n)
    r = ro_client.get(ITEMS, params={"f": "xlsx", "beliggenhedskommune": "101"})
    assert r.status_code == 200, r.text
    assert made == [1] and _left(private_tmp) == []
    # other formats have no such limit
    monkeypatch.setattr(writers, "XLSX_MAX_ROWS", 1)
    r = ro_client.get(ITEMS, params={"f": "gpkg", "beliggenhedskommune": "101"})
    assert r.status_code == 200, r.text
