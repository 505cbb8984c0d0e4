"""`GET /naermeste` (service/nearest.py, datamodel/nearest.py): the k nearest objects, exactly.

The answer is compared with the test's own SQL: the k nearest by `ST_Distance` on the base
table (a full scan, no index, no KNN), ties by objekt_id, under the same visibility (the
public: off_kode 1 while activation is off, off_kode 1 or the theme's activation predicate
while it is on; the national administrator: everything current), for 200 seeded random
points over Denmark, on the demo data and on 100,000 generated shelters (bench/dataset.py's
statement, in a fresh copy of the template). Ties (objects at the same place) are ordered by
objekt_id; area themes (distance 0 inside an area) too.
"""

from __future__ import annotations

import random
import uuid

import psycopg
import pytest
from fastapi.testclient import TestClient

from bench.dataset import _GENERATE, BRUGER
from datamodel import crs as crsmod
from datamodel import themes
from loaders.demo import STREETS, _allocate, _municipalities
from service.app import create_app
from tests.conftest import ADMIN_HEADERS, fresh_database, make_settings, query

POINTS = 200
GENERATED = 100_000
SEED = 17
SHELTERS = themes.default()


def _points(seed: int = SEED, n: int = POINTS) -> list[tuple[float, float, int]]:
    """(lon, lat, k): seeded random points over Denmark's box (land and sea), k 1-20 (and
    sometimes the maximum, 100)."""
    rng = random.Random(seed)
    x1, y1, x2, y2 = crsmod.DENMARK_LONLAT_BOX
    return [(rng.uniform(x1, x2), rng.uniform(y1, y2),
             100 if rng.random() < 0.05 else rng.randint(1, 20)) for _ in range(n)]


def _expected(url: str, theme, visible: str, points) -> list[list[tuple[str, float]]]:
    """The test's own answer: for each point the k nearest (objekt_id, distance) by exact
    distance (ST_Distance) over the base table's current rows that satisfy `visible`, ties
    by objekt_id. No index serves this order (it is not `<->`): every row is measured."""
    # For a point theme the scan orders by the planar distance of the coordinates, the very
    # arithmetic of PostGIS's point-to-point distance (sqrt(dx * dx + dy * dy), IEEE doubles
    # both), 3-4 times faster than ST_Distance on 100,000 rows per point; the rows chosen
    # also carry ST_Distance, which must be the same number. For an area theme: ST_Distance.
    if theme.is_area:
        cols, order = "", "ST_Distance(b.geometri, q.g)"
    else:
        cols = ", ST_X(geometri) AS x, ST_Y(geometri) AS y"
        order = "sqrt((b.x - q.x) * (b.x - q.x) + (b.y - q.y) * (b.y - q.y))"
    with psycopg.connect(url) as conn:
        # The visible current rows' ids and geometries in a narrow table: every point's scan
        # reads 100,000 small rows, not the base table's wide ones.
        conn.execute(f"CREATE TEMP TABLE visible ON COMMIT DROP AS SELECT objekt_id, "
                     f"geometri{cols} FROM ly.{theme.table} "
                     f"WHERE systid_til IS NULL AND ({visible})")
        rows = conn.execute(f"""
        SELECT p.i, n.objekt_id::text, n.d, ST_Distance(n.geometri, q.g)
        FROM unnest(%s::float8[], %s::float8[], %s::int[]) WITH ORDINALITY p(lon, lat, k, i)
        CROSS JOIN LATERAL (SELECT g, ST_X(g) AS x, ST_Y(g) AS y FROM ST_Transform(
            ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326), 25832) g) q
        CROSS JOIN LATERAL (
            SELECT b.objekt_id, b.geometri, {order} AS d
            FROM visible b
            ORDER BY d, b.objekt_id LIMIT p.k) n
        ORDER BY p.i, n.d, n.objekt_id""",
                            [[p[0] for p in points], [p[1] for p in points],
                             [p[2] for p in points]]).fetchall()
    assert all(d == exact for _, _, d, exact in rows)
    rows = [r[:3] for r in rows]
    out: list[list[tuple[str, float]]] = [[] for _ in points]
    for i, oid, d in rows:
        out[i - 1].append((oid, d))
    return out


def _answered(client: TestClient, theme, points, headers=None) -> list[list[tuple[str, float]]]:
    out = []
    for lon, lat, k in points:
        r = client.get("/naermeste", params={"punkt": f"{lon!r},{lat!r}", "antal": k,
                                             "tema": theme.collection_id}, headers=headers)
        assert r.status_code == 200, r.text
        out.append([(f["id"], f["properties"]["afstand_m"]) for f in r.json()["features"]])
    return out


def _compare(client, url, theme, points, *, public: bool, activation: bool = False) -> int:
    """The service's answers are the test's own, object for object and in order; distances
    to the millimetre. The number of features compared."""
    if not public:
        visible = "TRUE"
    elif activation and theme.activation_public:
        visible = f"off_kode = 1 OR ({theme.activation_public})"
    else:
        visible = "off_kode = 1"
    expected = _expected(url, theme, visible, points)
    got = _answered(client, theme, points, None if public else ADMIN_HEADERS)
    for point, want, have in zip(points, expected, got):
        assert [oid for oid, _ in have] == [oid for oid, _ in want], point
        for (_, shown), (_, exact) in zip(have, want):
            assert shown == pytest.approx(round(exact, 3), abs=1e-9), point
    return sum(len(w) for w in expected)


@pytest.fixture(scope="module")
def demo(shared_db_url):
    with TestClient(create_app(make_settings(shared_db_url))) as c:
        yield c, shared_db_url


@pytest.mark.parametrize("public", [True, False], ids=["public", "admin"])
def test_demo_shelters_are_the_exact_nearest(demo, public):
    client, url = demo
    assert _compare(client, url, SHELTERS, _points(), public=public) > POINTS


@pytest.mark.parametrize("cid", [t.collection_id for t in themes.all_themes()
                                 if t is not SHELTERS])
def test_every_other_theme_too(demo, cid):
    """Points and areas (0 inside an area; overlapping areas tie), 50 points each."""
    client, url = demo
    theme = themes.get(cid)
    for public in (True, False):
        assert _compare(client, url, theme, _points(SEED + theme.temakode, 50), public=public)


# --- 100,000 generated shelters --------------------------------------------------------------

def _generate(url: str, count: int) -> None:
    """`count` shelters in the base table, by bench/dataset.py's statement (per municipality
    in proportion to population, ST_GeneratePoints, attributes like the demo's), as the
    table's owner: FK and other triggers off for the bulk insert, as the bench does."""
    with psycopg.connect(url) as conn:
        per = _allocate(_municipalities(conn), count)
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("SET LOCAL jit = off")
        conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        conn.execute("CREATE TEMP TABLE bench_alloc (kommunekode int, n int) ON COMMIT DROP")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO bench_alloc VALUES (%s, %s)", sorted(per.items()))
        conn.execute("SELECT setseed(0.17)")
        conn.execute(_GENERATE.format(table=SHELTERS.table),
                     {"seed": SEED, "streets": list(STREETS), "nstreets": len(STREETS),
                      "bruger": BRUGER})
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ANALYZE ly.{SHELTERS.table}")


@pytest.fixture(scope="module")
def generated(template_db):
    for url in fresh_database(template_db, "ly_nn_"):
        _generate(url, GENERATED)
        with TestClient(create_app(make_settings(url))) as c:
            yield c, url


def test_generated_set_is_there(generated):
    _, url = generated
    (n,) = query(url, f"SELECT count(*) FROM ly.{SHELTERS.table} WHERE bruger_id = %s",
                 [BRUGER])[0]
    assert n == GENERATED


@pytest.mark.parametrize("public", [True, False], ids=["public", "admin"])
def test_generated_shelters_are_the_exact_nearest(generated, public):
    client, url = generated
    assert _compare(client, url, SHELTERS, _points(SEED + 1), public=public) > POINTS


def test_during_activation_the_public_sees_every_public_shelter(generated):
    """The register's switch decides, not the endpoint: with it on, the public's nearest
    include the shelters the theme's activation predicate makes public."""
    client, url = generated
    points = _points(SEED + 2, 50)
    before = _answered(client, SHELTERS, points)
    r = client.put("/aktivering", json={"aktiv": True, "begrundelse": "test"},
                   headers=ADMIN_HEADERS)
    assert r.status_code == 200, r.text
    try:
        _compare(client, url, SHELTERS, points, public=True, activation=True)
        assert _answered(client, SHELTERS, points) != before
    finally:
        r = client.put("/aktivering", json={"aktiv": False, "begrundelse": "test slut"},
                       headers=ADMIN_HEADERS)
        assert r.status_code == 200, r.text


def test_ties_are_broken_by_objekt_id(generated):
    """Thirty shelters at one place (and none nearer): any 5 of them are equally near; the
    answer is the 5 with the smallest objekt_id, in that order, whichever the index yields
    first (more than the first statement's 2k + 10 candidates: the service asks again)."""
    client, url = generated
    ids = sorted(str(uuid.uuid4()) for _ in range(30))
    with psycopg.connect(url) as conn:
        # Copies of a public shelter (its attributes valid), moved there, new ids, inserted
        # in a random order.
        t = f"ly.{SHELTERS.table}"
        conn.execute(f"CREATE TEMP TABLE tie ON COMMIT DROP AS SELECT b.*, o FROM {t} b "
                     f"CROSS JOIN unnest(%s::text[]) o WHERE b.versions_id = (SELECT "
                     f"versions_id FROM {t} WHERE systid_til IS NULL AND off_kode = 1 "
                     f"ORDER BY versions_id LIMIT 1)", [ids])
        conn.execute("UPDATE tie SET versions_id = gen_random_uuid(), objekt_id = o::uuid, "
                     "geometri = ST_SetSRID(ST_MakePoint(725000, 6175000), 25832)")
        conn.execute("ALTER TABLE tie DROP COLUMN o")
        conn.execute(f"INSERT INTO {t} SELECT * FROM tie ORDER BY random()")
    r = client.get("/naermeste", params={"punkt": "725000,6175000", "antal": 5,
                                         "crs": crsmod.STORAGE.uri})
    assert r.status_code == 200, r.text
    features = r.json()["features"]
    assert [f["id"] for f in features] == ids[:5]
    assert {f["properties"]["afstand_m"] for f in features} == {0}


# --- the resource's conventions ----------------------------------------------------------------

def test_every_crs_gives_the_same_objects_and_says_its_crs(demo):
    client, url = demo
    lon, lat = 12.5683, 55.6761
    (x, y), (mx, my) = query(url, "SELECT ST_X(a), ST_Y(a) FROM (SELECT ST_Transform("
                                  "ST_SetSRID(ST_MakePoint(%s, %s), 4326), s) a "
                                  "FROM unnest(ARRAY[25832, 3857]) WITH ORDINALITY u(s, i) "
                                  "ORDER BY i) t", [lon, lat])
    given = {crsmod.CRS84: f"{lon},{lat}", crsmod.EPSG_URI.format(4326): f"{lat},{lon}",
             crsmod.STORAGE.uri: f"{x!r},{y!r}", crsmod.EPSG_URI.format(3857): f"{mx!r},{my!r}"}
    answers = {}
    for uri, punkt in given.items():
        r = client.get("/naermeste", params={"punkt": punkt, "crs": uri, "antal": 7})
        assert r.status_code == 200, r.text
        assert r.headers["content-crs"] == f"<{uri}>"
        assert r.headers["content-type"].startswith("application/geo+json")
        assert 'rel="self"' in r.headers["link"]
        body = r.json()
        assert body["numberReturned"] == 7
        answers[uri] = [f["id"] for f in body["features"]]
        first = body["features"][0]["geometry"]["coordinates"]
        if uri == crsmod.EPSG_URI.format(4326):
            assert 54 < first[0] < 58 and 8 < first[1] < 16  # lat, lon
    assert len({tuple(a) for a in answers.values()}) == 1
    default = client.get("/naermeste", params={"punkt": f"{lon},{lat}"}).json()
    assert [f["id"] for f in default["features"]] == answers[crsmod.CRS84][:5]


@pytest.mark.parametrize("params,field", [
    ({"punkt": "12.5"}, "punkt"),
    ({"punkt": "12.5,55.6,3"}, "punkt"),
    ({"punkt": "abc,55"}, "punkt"),
    ({"punkt": "nan,55"}, "punkt"),
    ({"punkt": "inf,55"}, "punkt"),
    ({"punkt": "12.5,95"}, "punkt"),
    ({"punkt": "-120,40"}, "punkt"),
    ({"punkt": "1e300,6e6", "crs": crsmod.STORAGE.uri}, "punkt"),
    ({}, "punkt"),
    ({"punkt": "12.5,55.6", "antal": "0"}, "antal"),
    ({"punkt": "12.5,55.6", "antal": "101"}, "antal"),
    ({"punkt": "12.5,55.6", "antal": "fem"}, "antal"),
    ({"punkt": "12.5,55.6", "tema": "ukendt"}, "tema"),
    ({"punkt": "12.5,55.6", "crs": "EPSG:2197"}, "crs"),
    ({"punkt": "12.5,55.6", "f": "html"}, "f"),
    ({"punkt": "12.5,55.6", "limit": "3"}, "limit"),
])
def test_bad_input_is_a_400_naming_the_parameter(demo, params, field):
    r = demo[0].get("/naermeste", params=params)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in r.json().get("errors", [])], r.json()


def test_it_is_in_the_openapi_document(demo):
    doc = demo[0].get("/openapi.json").json()
    op = doc["paths"]["/naermeste"]["get"]
    assert {p["name"] for p in op["parameters"]} == {"punkt", "antal", "tema", "crs", "f"}
    assert "application/geo+json" in op["responses"]["200"]["content"]
