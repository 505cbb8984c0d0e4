"""The demo register is deterministic and realistic; the package layout keeps its import
direction (service -> datamodel <- loaders)."""

from __future__ import annotations

import ast
from pathlib import Path

import psycopg

from loaders.demo import load_demo
from tests.conftest import DEMO_COUNT, query

ROOT = Path(__file__).resolve().parent.parent


def test_demo_covers_every_municipality_and_type_with_plausible_capacities(shared_db_url):
    rows = query(shared_db_url, """
        SELECT count(*), count(DISTINCT beliggenhedskommune), count(DISTINCT beskyt_rum_kode),
               min(pladser), max(pladser), count(*) FILTER (WHERE postnr IS NULL),
               count(DISTINCT cvr_kode)
        FROM ly.t_6101_beskyt_rum""")[0]
    count, municipalities, types, low, high, no_postnr, cvrs = rows
    assert count == DEMO_COUNT
    assert municipalities == 99  # 98 municipalities and Christiansø
    assert types == 5 and 1 <= low and high <= 1000
    assert no_postnr == 0 and cvrs == 99
    per_type = dict(query(shared_db_url, "SELECT beskyt_rum_kode, avg(pladser) FROM "
                                         "ly.t_6101_beskyt_rum GROUP BY 1"))
    assert per_type[1] > per_type[3]  # public shelters are larger than trench shelters
    sub = query(shared_db_url, "SELECT count(*) FILTER (WHERE undertype_kode IS NOT NULL AND "
                               "beskyt_rum_kode <> 3) FROM ly.t_6101_beskyt_rum")[0][0]
    assert sub == 0  # only betondækningsgrave have a sub-type


def test_demo_is_denser_where_people_live(shared_db_url):
    (cph,) = query(shared_db_url, "SELECT count(*) FROM ly.t_6101_beskyt_rum "
                                  "WHERE beliggenhedskommune = 101")[0]
    (laesoe,) = query(shared_db_url, "SELECT count(*) FROM ly.t_6101_beskyt_rum "
                                     "WHERE beliggenhedskommune = 825")[0]
    assert cph > 20 * laesoe


def test_demo_is_deterministic_and_not_loaded_twice(db_url):
    first = query(db_url, "SELECT objekt_id, pladser, beskyt_rum_kode, ST_AsText(geometri) "
                          "FROM ly.t_6101_beskyt_rum ORDER BY objekt_id")
    with psycopg.connect(db_url) as conn:
        assert load_demo(conn, count=DEMO_COUNT) == 0  # already there: nothing written
        assert load_demo(conn, count=DEMO_COUNT, replace=True) == DEMO_COUNT
    again = query(db_url, "SELECT objekt_id, pladser, beskyt_rum_kode, ST_AsText(geometri) "
                          "FROM ly.t_6101_beskyt_rum ORDER BY objekt_id")
    assert again == first
    # the replaced set left its history behind: two versions per demo shelter
    assert query(db_url, "SELECT count(*) FROM ly.beskyttelsesrum")[0][0] == 2 * DEMO_COUNT


def _imports(package: str) -> set[str]:
    names: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def test_imports_flow_one_way():
    assert not {"service", "fastapi", "starlette", "loaders", "cli"} & _imports("datamodel")
    assert not {"service", "fastapi", "starlette", "cli"} & _imports("loaders")
