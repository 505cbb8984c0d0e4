"""The servers under test: Ly and its peers, each on a loopback port with the same number of
worker processes against the same database and the same relation.

Ly serves each theme's current view (`ly.` + the descriptor's `current_view`: the shelters'
and the area theme's) through its own views and row-level security; tipg and pygeoapi are
pointed at those same views (current versions with the text twins; id `objekt_id`, geometry
`geometri` in EPSG:25832) and connect as their owner, so they read the whole register, as
Ly's national reader does. tipg serves both views (`TIPG_DB_TABLES`); pygeoapi serves the
shelters only (the area scenarios are Ly against tipg). `Server.on(theme)` is the same
running server asked for another theme's collection. Each peer lives in its own virtual
environment under bench/.venvs, created on first use.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import httpx

from bench.config import (CACHE, PORTS, PYGEOAPI_REQUIREMENTS, ROOT, TIPG_REQUIREMENTS, VENVS,
                          Config)
from bench.dataset import log

VIEW_SCHEMA = "ly"


def _base_python() -> str:
    """The interpreter Ly's own venv was made from (so every venv has the same Python)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def ensure_venv(name: str, requirements: list[str]) -> Path:
    venv = VENVS / name
    stamp = venv / ".bench-installed"
    wanted = "\n".join(requirements)
    if stamp.exists() and stamp.read_text() == wanted:
        return venv
    log(f"setting up {name} in {venv.relative_to(ROOT)}")
    VENVS.mkdir(parents=True, exist_ok=True)
    if not (venv / "bin" / "python").exists():
        subprocess.run([_base_python(), "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--upgrade", "pip"], check=True)
    subprocess.run(pip + requirements, check=True)
    stamp.write_text(wanted)
    return venv


def package_version(python: str | Path, dist: str) -> str:
    out = subprocess.run([str(python), "-c", "import importlib.metadata as m, sys; "
                          "print(m.version(sys.argv[1]))", dist],
                         capture_output=True, text=True)
    return out.stdout.strip() or "?"


class Server:
    """One server process (uvicorn with N workers) and how to ask it for each scenario."""

    name = ""
    label = ""
    collection = ""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.port = PORTS[self.name]
        self.proc: subprocess.Popen | None = None
        self.logfile = CACHE / "logs" / f"{self.name}.log"
        self.theme = cfg.shelter_theme
        self.collection = self.collection_of(self.theme)

    def collection_of(self, theme) -> str | None:
        """The id of `theme`'s collection on this server (None: not served)."""
        return theme.collection_id

    def on(self, theme) -> "Server | None":
        """This server (the same process) asked for `theme`'s collection; None when this
        server does not serve it."""
        collection = self.collection_of(theme)
        if collection is None:
            return None
        other = copy.copy(self)
        other.theme, other.collection = theme, collection
        return other

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- life cycle ---
    def prepare(self) -> None:
        """Install and configure (idempotent)."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def versions(self) -> dict[str, str]:
        return {}

    def start(self) -> None:
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        log(f"starting {self.label} on {self.base} ({self.cfg.workers} workers)")
        with self.logfile.open("ab") as out:
            self.proc = subprocess.Popen(self.command(), cwd=self.cwd(), env=self.env(),
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 120
        probe = self.base + self.ready_path()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited at start; see {self.logfile}")
            try:
                if httpx.get(probe, timeout=30).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{self.label} did not answer {probe}; see {self.logfile}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own process group only
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def pids(self) -> list[int]:
        """The server's processes (master and workers), for memory sampling."""
        if self.proc is None:
            return []
        pgid = self.proc.pid
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.getpgid(int(entry.name)) == pgid:
                        found.append(int(entry.name))
                except (ProcessLookupError, PermissionError):
                    pass
        return found

    def cwd(self) -> Path:
        return CACHE

    def ready_path(self) -> str:
        return f"/collections/{self.collection}/items?limit=1"

    # --- requests ---
    def token_file(self) -> Path | None:
        return None

    def headers(self) -> dict[str, str]:
        token = self.token_file()
        return {"Authorization": "Bearer " + token.read_text().strip()} if token else {}

    def items_path(self, bbox=None, limit=100, cql: str | None = None) -> str:
        params: dict[str, str] = {"limit": str(limit)}
        if bbox is not None:
            params["bbox"] = ",".join(f"{v:g}" for v in bbox)
        if cql is not None:
            params.update(self.cql_params(cql))
        params.update(self.format_params())
        return f"/collections/{self.collection}/items?" + urlencode(params, quote_via=quote,
                                                                     safe=",")

    def format_params(self) -> dict[str, str]:
        return {}

    def cql_params(self, cql: str) -> dict[str, str]:
        return {"filter": cql, "filter-lang": "cql2-text"}

    def item_path(self, objekt_id: str) -> str:
        return f"/collections/{self.collection}/items/{objekt_id}"

    def tile_path(self, z: int, x: int, y: int) -> str | None:
        return None

    def next_href(self, body: dict) -> str | None:
        for link in body.get("links", []):
            if link.get("rel") == "next":
                return link["href"]
        return None

    def deep_page_path(self, limit: int, page: int) -> str | None:
        """Page `page` without walking there, when the server pages by offset."""
        return None


class Ly(Server):
    name = "ly"
    label = "Ly"

    def __init__(self, cfg: Config, public: bool = False):
        super().__init__(cfg)
        self.public = public
        self.key_file = CACHE / "dev-key.pem"

    def prepare(self) -> None:
        from service.devtokens import ensure_key, issue

        ensure_key(self.key_file)
        # A national reader sees the whole register through row-level security.
        token = issue(self.key_file, subject="bench@ly.local", roles=["national_reader"],
                      level="substantial", ttl_seconds=24 * 3600, issuer="ly-dev",
                      audience="ly")
        (CACHE / "ly-token.txt").write_text(token + "\n")

    def cwd(self) -> Path:
        return ROOT

    def command(self) -> list[str]:
        # As `ly serve` runs it (service.edge.uvicorn_options: h11 and its head limit, no
        # uvicorn proxy headers).
        from service.edge import uvicorn_options
        from service.settings import Settings

        opts = uvicorn_options(Settings())
        return [sys.executable, "-m", "uvicorn", "service.main:app", "--host", "127.0.0.1",
                "--port", str(self.port), "--workers", str(self.cfg.workers),
                "--no-access-log", "--log-level", "warning", "--http", opts["http"],
                "--h11-max-incomplete-event-size", str(opts["h11_max_incomplete_event_size"]),
                "--no-proxy-headers"]

    def env(self) -> dict[str, str]:
        env = super().env()
        # wrk is one client address: limits far above any run, so the counters' cost is in
        # the measurement and no request is ever refused.
        env.update(DATABASE_URL=self.cfg.db_url, LY_DEV_KEY_FILE=str(self.key_file),
                   LY_ENVIRONMENT="development", LY_RATE_LIMIT_ANONYMOUS="1000000000",
                   LY_RATE_LIMIT_SIGNED_IN="1000000000")
        return env

    def versions(self) -> dict[str, str]:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                                "service", "datamodel"], capture_output=True,
                               text=True).stdout.strip()
        return {"ly": f"{package_version(sys.executable, 'ly')} ({commit}"
                      f"{', uncommitted changes' if dirty else ''})",
                "uvicorn": package_version(sys.executable, "uvicorn"),
                "fastapi": package_version(sys.executable, "fastapi"),
                "psycopg": package_version(sys.executable, "psycopg")}

    def token_file(self) -> Path | None:
        return None if self.public else CACHE / "ly-token.txt"

    def format_params(self) -> dict[str, str]:
        return {"f": "json"}

    def tile_path(self, z: int, x: int, y: int) -> str | None:
        return f"/collections/{self.collection}/tiles/WebMercatorQuad/{z}/{y}/{x}"


class LyPublic(Ly):
    """The same Ly process, asked without credentials (the public's rows and attributes)."""

    label = "Ly (public)"

    def __init__(self, cfg: Config):
        super().__init__(cfg, public=True)


class Tipg(Server):
    name = "tipg"
    label = "tipg"

    def collection_of(self, theme) -> str | None:
        return f"{VIEW_SCHEMA}.{theme.current_view}"

    @property
    def views(self) -> list[str]:
        """The current views tipg serves: the shelters' and the area theme's."""
        return list(dict.fromkeys(t.current_view for t in (self.cfg.shelter_theme,
                                                           self.cfg.area_theme)))

    @property
    def venv(self) -> Path:
        return VENVS / "tipg"

    def prepare(self) -> None:
        ensure_venv("tipg", TIPG_REQUIREMENTS)

    def command(self) -> list[str]:
        return [str(self.venv / "bin" / "python"), "-m", "uvicorn", "tipg.main:app",
                "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", str(self.cfg.workers), "--no-access-log", "--log-level", "warning"]

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update({
            "DATABASE_URL": self.cfg.db_url,
            "TIPG_DB_SCHEMAS": json.dumps([VIEW_SCHEMA]),
            "TIPG_DB_TABLES": json.dumps([f"{VIEW_SCHEMA}.{v}" for v in self.views]),
            # the catalogue is read once at start and kept for the run
            "TIPG_CATALOG_TTL": "86400",
        })
        for view in self.views:  # views have no primary key: say which column is the id
            env[f"TIPG_TABLE_CONFIG__{VIEW_SCHEMA}_{view}__PK"] = "objekt_id"
            env[f"TIPG_TABLE_CONFIG__{VIEW_SCHEMA}_{view}__GEOMCOL"] = "geometri"
        return env

    def versions(self) -> dict[str, str]:
        py = self.venv / "bin" / "python"
        return {"tipg": package_version(py, "tipg"), "asyncpg": package_version(py, "asyncpg")}

    def format_params(self) -> dict[str, str]:
        return {"f": "geojson"}

    def tile_path(self, z: int, x: int, y: int) -> str | None:
        return f"/collections/{self.collection}/tiles/WebMercatorQuad/{z}/{x}/{y}"

    def deep_page_path(self, limit: int, page: int) -> str | None:
        return self.items_path(limit=limit) + f"&offset={(page - 1) * limit}"


class Pygeoapi(Server):
    name = "pygeoapi"
    label = "pygeoapi"

    def collection_of(self, theme) -> str | None:
        return theme.collection_id if theme is self.cfg.shelter_theme else None

    @property
    def venv(self) -> Path:
        return VENVS / "pygeoapi"

    @property
    def config_file(self) -> Path:
        return CACHE / "pygeoapi-config.yml"

    @property
    def openapi_file(self) -> Path:
        return CACHE / "pygeoapi-openapi.yml"

    def prepare(self) -> None:
        ensure_venv("pygeoapi", PYGEOAPI_REQUIREMENTS)
        db = urlsplit(self.cfg.db_url)
        theme = self.theme
        config = {
            "server": {
                "bind": {"host": "127.0.0.1", "port": self.port},
                "url": self.base,
                "mimetype": "application/json; charset=UTF-8",
                "encoding": "utf-8",
                "languages": ["en-US"],
                "limits": {"default_items": 10, "max_items": 10000},
                "map": {"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
                        "attribution": "OpenStreetMap"},
                "admin": False,
            },
            "logging": {"level": "ERROR"},
            "metadata": {
                "identification": {"title": "Ly bench", "description": "bench",
                                   "keywords": ["bench"], "keywords_type": "theme",
                                   "terms_of_service": "https://example.org",
                                   "url": "https://example.org"},
                "license": {"name": "CC-BY 4.0", "url": "https://example.org"},
                "provider": {"name": "bench", "url": "https://example.org"},
                "contact": {"name": "bench", "email": "bench@example.org"},
            },
            "resources": {
                theme.collection_id: {
                    "type": "collection",
                    "title": theme.title,
                    "description": f"{VIEW_SCHEMA}.{theme.current_view}",
                    "keywords": [theme.collection_id],
                    "links": [],
                    "extents": {"spatial": {
                        "bbox": [7.7, 54.4, 15.4, 57.9],
                        "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}},
                    "providers": [{
                        "type": "feature",
                        "name": "PostgreSQL",
                        "data": {"host": db.hostname, "port": db.port or 5432,
                                 "dbname": db.path.lstrip("/"), "user": db.username,
                                 "password": db.password or "",
                                 "search_path": [VIEW_SCHEMA, "public"]},
                        "id_field": "objekt_id",
                        "table": theme.current_view,
                        "geom_field": "geometri",
                        "storage_crs": "http://www.opengis.net/def/crs/EPSG/0/25832",
                        "crs": ["http://www.opengis.net/def/crs/OGC/1.3/CRS84",
                                "http://www.opengis.net/def/crs/EPSG/0/4326",
                                "http://www.opengis.net/def/crs/EPSG/0/25832"],
                    }],
                },
            },
        }
        CACHE.mkdir(parents=True, exist_ok=True)
        # JSON is YAML; pygeoapi reads it with its YAML loader.
        self.config_file.write_text(json.dumps(config, indent=2))
        subprocess.run([str(self.venv / "bin" / "pygeoapi"), "openapi", "generate",
                        str(self.config_file), "--output-file", str(self.openapi_file)],
                       check=True, capture_output=True, env=self.env())

    def command(self) -> list[str]:
        return [str(self.venv / "bin" / "python"), "-m", "uvicorn", "pygeoapi.starlette_app:APP",
                "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", str(self.cfg.workers), "--no-access-log", "--log-level", "warning"]

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(PYGEOAPI_CONFIG=str(self.config_file),
                   PYGEOAPI_OPENAPI=str(self.openapi_file))
        return env

    def versions(self) -> dict[str, str]:
        py = self.venv / "bin" / "python"
        return {"pygeoapi": package_version(py, "pygeoapi"),
                "sqlalchemy": package_version(py, "sqlalchemy")}

    def format_params(self) -> dict[str, str]:
        return {"f": "json"}

    def cql_params(self, cql: str) -> dict[str, str]:
        # pygeoapi reads `filter` as CQL text (filter-lang accepts only cql-text/cql-json)
        return {"filter": cql}

    def deep_page_path(self, limit: int, page: int) -> str | None:
        return self.items_path(limit=limit) + f"&offset={(page - 1) * limit}"


def make(cfg: Config, name: str) -> Server:
    return {"ly": Ly, "tipg": Tipg, "pygeoapi": Pygeoapi}[name](cfg)
