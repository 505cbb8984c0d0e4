"""What a run is: sizes, durations, ports and paths, from the command line."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from datamodel.db import psycopg_url, with_database

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
VENVS = BENCH_DIR / ".venvs"  # the peers' virtual environments (gitignored)
CACHE = BENCH_DIR / ".cache"  # GeoPackages, generated configs, keys, logs (gitignored)
RESULTS = BENCH_DIR / "results"

FULL_COUNT = 1_000_000
QUICK_COUNT = 100_000
#: Areas of the area theme (`area_theme`) beside the shelters: a tenth of them.
FULL_AREAS = 100_000
QUICK_AREAS = 10_000
SEED = 6101

#: The peers, pinned so a rerun measures the same software (the newest our registry offers).
TIPG_REQUIREMENTS = ["tipg==1.6.1", "uvicorn[standard]"]
PYGEOAPI_REQUIREMENTS = ["pygeoapi==0.21.0", "uvicorn[standard]", "starlette", "psycopg2-binary",
                         "geoalchemy2"]

PORTS = {"ly": 18100, "tipg": 18101, "pygeoapi": 18102}


@dataclass
class Config:
    count: int = FULL_COUNT
    seed: int = SEED
    duration: int = 15  # seconds per timed wrk run
    warmup: int = 3  # seconds of wrk before each timed run
    connections: int = 32
    workers: int = 2
    quick: bool = False
    rebuild: bool = False
    servers: tuple[str, ...] = ("ly", "tipg", "pygeoapi")
    scenarios: tuple[str, ...] = ()  # empty: all
    deep_page: int = 5000
    page_limit: int = 100
    update_readme: bool = False
    database_name: str | None = None  # another copy of the set (what-if runs)
    areas: int = FULL_AREAS  # areas of the area theme in the set
    #: Collection id of the area theme of the area scenarios; None: the register's first
    #: area theme (`bench.config.area_theme`).
    area_theme_id: str | None = None
    repeat: int = 1  # passes over the repeatable scenarios (medians reported)
    base_url: str = field(default_factory=lambda: psycopg_url(
        os.environ.get("DATABASE_URL", "postgresql://ly:ly@127.0.0.1:5432/ly")))

    @property
    def database(self) -> str:
        if self.database_name:
            return self.database_name
        return "ly_bench_quick" if self.quick else "ly_bench"

    @property
    def shelter_theme(self):
        return shelter_theme()

    @property
    def area_theme(self):
        return area_theme(self.area_theme_id)

    @property
    def db_url(self) -> str:
        return with_database(self.base_url, self.database)

    @property
    def maintenance_url(self) -> str:
        return with_database(self.base_url, "postgres")

    @property
    def deep_limit(self) -> int:
        """Page size for the deep-paging scenario: page `deep_page` must exist in the set."""
        if self.deep_page * self.page_limit <= 0.9 * self.count:
            return self.page_limit
        return max(1, int(0.9 * self.count) // self.deep_page // 10 * 10)


def shelter_theme():
    """The theme of the shelter scenarios and of the 1,000,000-row set: the register's first
    theme (`datamodel.themes.default()`), the one the bench has measured from the start."""
    from datamodel import themes

    return themes.default()


def area_theme(collection_id: str | None = None):
    """The theme of the area scenarios: `collection_id`, or the register's first area theme
    (MultiPolygon)."""
    from datamodel import themes

    if collection_id:
        theme = themes.get(collection_id)
        if not theme.is_area:
            raise SystemExit(f"{collection_id} is not an area theme")
        return theme
    return next(t for t in themes.all_themes() if t.is_area)
