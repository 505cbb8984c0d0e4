"""Test fixtures: a real PostGIS, one fresh database per test.

A template database is built once per session (migrated, municipalities, postal areas and
the demo data of every theme loaded by `loaders.demo.load_demo`); each test that may write
gets its own copy (`CREATE DATABASE … TEMPLATE`), so tests are isolated and need no cleanup.
Read-only tests share one copy. Black-box tests talk to a real uvicorn server on a loopback port.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import uvicorn
from fastapi.testclient import TestClient

from cli.main import migrate
from datamodel import themes
from datamodel.db import psycopg_url, with_database
from loaders.demo import DEMO_BRUGER, REFERENCE_DATE, load_demo
from loaders.reference import load_municipalities, load_postal_codes
from service.app import create_app
from service.devtokens import ensure_key, issue
from service.settings import Settings
from tests import pgcluster

# The server the suite creates its databases on: LY_TEST_DATABASE_URL when given, else a
# throw-away cluster of the session's own (tests/pgcluster.py), else the local ly_test.
if "LY_TEST_DATABASE_URL" not in os.environ:
    _CLUSTER = pgcluster.start_if_possible()
    if _CLUSTER is not None:
        atexit.register(_CLUSTER.stop)
        # Subprocesses (the CLI under test) and modules that read it find the same server.
        os.environ["LY_TEST_DATABASE_URL"] = _CLUSTER.url
BASE_URL = psycopg_url(os.environ.get("LY_TEST_DATABASE_URL",
                                      "postgresql://ly:ly@127.0.0.1:5432/ly_test"))
DEMO_COUNT = 3000
OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
COLLECTION = "/collections/beskyttelsesrum"
ITEMS = COLLECTION + "/items"
KEY_FILE = OUTPUT / "keys" / f"dev-key-{os.getpid()}.pem"
SAMS_CVR = 41575727  # Styrelsen for Samfundssikkerhed

#: Every registered theme's collection id, in temakode order (the template holds demo data of
#: each); for tests parametrised over the themes: `@pytest.mark.parametrize("cid", THEME_IDS)`.
THEME_IDS = [t.collection_id for t in themes.all_themes()]
POINT_THEME_IDS = [t.collection_id for t in themes.all_themes() if not t.is_area]
AREA_THEME_IDS = [t.collection_id for t in themes.all_themes() if t.is_area]
#: Themes with a validity period (gyldig_fra/gyldig_til).
VALIDITY_THEME_IDS = [t.collection_id for t in themes.all_themes() if t.validity]
#: The demo's fixed "today": its validity periods are past, current and future relative to it.
DEMO_REFERENCE_DATE = REFERENCE_DATE
#: The bruger_id of every demo object.
DEMO_USER = DEMO_BRUGER


def collection_path(collection_id: str) -> str:
    return f"/collections/{collection_id}"


def items_path(collection_id: str) -> str:
    return f"/collections/{collection_id}/items"


def demo_counts(url: str) -> dict[str, int]:
    """Current demo objects per theme (collection id) in a database."""
    return {t.collection_id: query(url, f"SELECT count(*) FROM ly.{t.current_view} "
                                        "WHERE bruger_id = %s", [DEMO_BRUGER])[0][0]
            for t in themes.all_themes()}


def token(roles, *, subject: str = "tester", cvr: int | None = None,
          kommuner: list[int] | None = None, level: str | None = "substantial", **kw) -> str:
    """A development token signed by the test session's key."""
    return issue(ensure_key(KEY_FILE), subject=subject, roles=list(roles), cvr=cvr,
                 kommuner=kommuner, level=level, **kw)


def bearer(roles, **kw) -> dict:
    return {"Authorization": "Bearer " + token(roles, **kw)}


#: The national administrator: sees and may change everything. The general API tests act as
#: this role; tests/test_access.py covers every role.
ADMIN_HEADERS = bearer(["national_admin"], subject="sams-admin", cvr=SAMS_CVR,
                       ttl_seconds=24 * 3600)


def _admin():
    return psycopg.connect(BASE_URL, autocommit=True)


def _drop(name: str) -> None:
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Dropping a database can take seconds (it waits for a checkpoint); per-test databases are
# dropped by a background worker so tests do not wait, and the session waits for them at its end.
_dropper = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dropdb")
_pending_drops: list[concurrent.futures.Future] = []


def _drop_later(name: str) -> None:
    _pending_drops.append(_dropper.submit(_drop, name))


def _clone(template: str, name: str) -> str:
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return with_database(BASE_URL, name)


def _template(name: str, demo: bool):
    """A template database: migrated, municipalities and postal areas, and (`demo`) the demo
    data of every theme (DEMO_COUNT shelters); dropped after the session's per-test copies."""
    _drop(name)
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(BASE_URL, name)
    migrate(url)
    with psycopg.connect(url) as conn:
        load_municipalities(conn)
        load_postal_codes(conn)
        if demo:
            load_demo(conn, count=DEMO_COUNT)
    yield name
    for future in _pending_drops:
        future.result()
    _drop(name)


@pytest.fixture(scope="session")
def template_db():
    """Name of the session's template database."""
    yield from _template(f"ly_tmpl_{os.getpid()}", demo=True)


def fresh_database(template: str, prefix: str = "ly_t_"):
    """A copy of a template database for one test, dropped after it."""
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    yield _clone(template, name)
    _drop_later(name)


@pytest.fixture
def db_url(template_db):
    """A fresh database with the demo register, for this test alone."""
    yield from fresh_database(template_db)


@pytest.fixture(scope="session")
def empty_template_db():
    """Name of the session's template database without shelters or any other theme's objects
    (a register before its first load)."""
    yield from _template(f"ly_tmpl0_{os.getpid()}", demo=False)


@pytest.fixture
def empty_db_url(empty_template_db):
    """A fresh database with an empty register, for this test alone."""
    yield from fresh_database(empty_template_db, "ly_t0_")


@pytest.fixture(scope="session")
def shared_db_url(template_db):
    """A database shared by read-only tests (they must not write)."""
    name = f"ly_ro_{os.getpid()}"
    url = _clone(template_db, name)
    yield url
    _drop(name)


def make_settings(url: str, **overrides) -> Settings:
    overrides.setdefault("dev_key_file", str(ensure_key(KEY_FILE)))
    overrides.setdefault("pool_min_size", 1)
    overrides.setdefault("pool_max_size", 4)
    # The suite is one client making thousands of requests: no rate limits unless a test
    # sets them (tests/test_edge.py).
    for limit in ("rate_limit_anonymous", "rate_limit_signed_in", "rate_limit_bad_token"):
        overrides.setdefault(limit, 0)
    return Settings(database_url=url, **overrides)


@pytest.fixture
def client(db_url):
    """A client signed in as the national administrator, on a fresh database."""
    with TestClient(create_app(make_settings(db_url)), headers=ADMIN_HEADERS) as c:
        yield c


@pytest.fixture(scope="session")
def ro_client(shared_db_url):
    """A client signed in as the national administrator, on the shared read-only database."""
    with TestClient(create_app(make_settings(shared_db_url)), headers=ADMIN_HEADERS) as c:
        yield c


@pytest.fixture(scope="session")
def anon_client(shared_db_url):
    """A client without credentials (the public), on the shared read-only database."""
    with TestClient(create_app(make_settings(shared_db_url))) as c:
        yield c


class LiveServer:
    """The app under uvicorn on a free loopback port, in a thread."""

    def __init__(self, url: str | None = None, *, app=None, uvicorn_options: dict | None = None,
                 **overrides):
        """The app on database `url` with the settings `overrides`, or `app` as given; uvicorn
        with its defaults, or `uvicorn_options` (e.g. `service.edge.uvicorn_options`)."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        app = app if app is not None else create_app(make_settings(url, **overrides))
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on", **(uvicorn_options or {}))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def live_ro(shared_db_url):
    with LiveServer(shared_db_url) as server:
        yield server


@pytest.fixture
def live_rw(db_url):
    with LiveServer(db_url) as server:
        yield server


def query(url: str, sql: str, params=None) -> list[tuple]:
    """Run one statement in its own committed transaction; its rows, if it returns any."""
    with psycopg.connect(url) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def snapshot(url: str) -> tuple:
    """Everything stored about shelters, to prove a refused request changed nothing."""
    return tuple(query(url, "SELECT count(*), md5(string_agg(b::text, '|' ORDER BY versions_id))"
                            " FROM ly.beskyttelsesrum b")[0])


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT
