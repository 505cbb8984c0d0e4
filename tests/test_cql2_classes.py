"""The CQL2 classes of issue 15 through the items endpoint, each against SQL of its own.

Accent-insensitive comparison, arithmetic, boolean ordering, text ordering in code point
order whatever the database's collation, a BBOX crossing the antimeridian, Ly's S_DWITHIN and
the refusals (400 problems naming `filter` or the property), and /conformance. The demo
register is read (not written) through `ro_client`; the expectations are computed by SQL (or
Python) that does not use the translator.
"""

from __future__ import annotations

import json
import os
import unicodedata

import psycopg
import pytest
from fastapi.testclient import TestClient

from cli.main import migrate
from datamodel.db import with_database
from loaders.demo import load_demo
from loaders.reference import load_municipalities, load_postal_codes
from service.app import create_app
from service.conformance import CONFORMANCE, LY_CQL2_S_DWITHIN
from tests.conftest import ADMIN_HEADERS, BASE_URL, ITEMS, make_settings, query

CQL2 = "http://www.opengis.net/spec/cql2/1.0/conf/"
PROBLEM = "application/problem+json"


def api_ids(client, cql, lang=None, **params) -> set[str]:
    p = {"filter": cql if isinstance(cql, str) else json.dumps(cql), "limit": 10000, **params}
    if lang:
        p["filter-lang"] = lang
    r = client.get(ITEMS, params=p)
    assert r.status_code == 200, r.text[:500]
    body = r.json()
    assert not any(link["rel"] == "next" for link in body["links"])  # all on one page
    return {f["id"] for f in body["features"]}


def api_count(client, cql, **params) -> int:
    """numberMatched of a filter (exact below LY_COUNT_CAP): for results too large to list."""
    r = client.get(ITEMS, params={"filter": cql, "limit": 1, **params})
    assert r.status_code == 200, r.text[:500]
    return r.json()["numberMatched"]


def db_ids(url, where, params=()) -> set[str]:
    return {str(r[0]) for r in query(
        url, f"SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE {where}", params)}


def both(client, text) -> set[str]:
    """The ids of a filter in CQL2 text, checked to be those of its CQL2 JSON (by `cql2`)."""
    import cql2

    as_text = api_ids(client, text, "cql2-text")
    assert api_ids(client, cql2.parse_text(text).to_json(), "cql2-json") == as_text
    return as_text


def assert_filter_problem(r, field="filter", fragment="") -> dict:
    assert r.status_code == 400, (r.status_code, r.text[:500])
    assert r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert [e["field"] for e in problem["errors"]] == [field], problem
    assert fragment in problem["errors"][0]["detail"], problem
    return problem


# -- /conformance --------------------------------------------------------------------------

def test_conformance_lists_the_cql2_classes_ly_implements(ro_client):
    declared = ro_client.get("/conformance").json()["conformsTo"]
    assert declared == CONFORMANCE
    for name in ("basic-cql2", "advanced-comparison-operators", "case-insensitive-comparison",
                 "accent-insensitive-comparison", "basic-spatial-functions",
                 "basic-spatial-functions-plus", "spatial-functions", "temporal-functions",
                 "property-property", "arithmetic", "cql2-text", "cql2-json"):
        assert CQL2 + name in declared
    # no queryable is array-valued; custom functions would need a /functions resource
    assert CQL2 + "array-functions" not in declared and CQL2 + "functions" not in declared
    assert LY_CQL2_S_DWITHIN == "https://ly.beredskab.dk/spec/cql2/1.0/conf/s-dwithin"
    assert LY_CQL2_S_DWITHIN in declared
    assert len(set(declared)) == len(declared)


# -- the antimeridian ----------------------------------------------------------------------

LONLAT = "ST_X(ST_Transform(geometri, 4326)) {} AND ST_Y(ST_Transform(geometri, 4326)) " \
         "BETWEEN 54 AND 58"


def test_a_bbox_crossing_the_antimeridian_holds_denmark_west_of_its_east_edge(
        ro_client, shared_db_url):
    west_of_13 = db_ids(shared_db_url, LONLAT.format("<= 13"))
    east_of_13 = db_ids(shared_db_url, LONLAT.format("> 13"))
    assert len(west_of_13) > 1000 and east_of_13  # Bornholm lies east of 13°
    crossing = "S_INTERSECTS(geometri, BBOX(170, 54, 13, 58))"
    assert api_count(ro_client, crossing) == len(west_of_13)  # thousands: counted, and
    assert both(ro_client, f"NOT {crossing}") == east_of_13  # the few others listed
    assert both(ro_client, "S_DISJOINT(geometri, BBOX(170, 54, 13, 58))") == east_of_13
    assert both(ro_client, "S_INTERSECTS(geometri, BBOX(13, 54, 170, 58))") == east_of_13
    assert both(ro_client, "S_INTERSECTS(geometri, BBOX(170, 54, 13, 58)) AND pladser > 900") \
        == west_of_13 & db_ids(shared_db_url, "pladser > 900")
    # EPSG:4326 as filter-crs: latitude first
    assert api_ids(ro_client, "NOT S_INTERSECTS(geometri, BBOX(54, 170, 58, 13))",
                   **{"filter-crs": "http://www.opengis.net/def/crs/EPSG/0/4326"}) == east_of_13


# -- basic CQL2: booleans are ordered ------------------------------------------------------

def test_booleans_are_ordered_false_before_true(ro_client, shared_db_url):
    big = db_ids(shared_db_url, "pladser > 500")
    assert 0 < len(big) < 3000
    assert both(ro_client, "true > false AND pladser > 500") == big
    assert both(ro_client, "false < true AND pladser > 500") == big
    assert both(ro_client, "true >= true AND pladser > 500") == big
    assert both(ro_client, "false > true OR true < false") == set()
    assert both(ro_client, "NOT (true <= false) AND pladser > 500") == big


# -- text ordering: code point order, whatever the database's collation ----------------------

@pytest.fixture(scope="module")
def icu_client():
    """A register in a database whose default collation is ICU's English (a < B), unlike the
    suite's C.UTF-8: the filter's answers must not change."""
    with psycopg.connect(BASE_URL, autocommit=True) as admin:
        if admin.info.server_version < 150000 or not admin.execute(
                "SELECT 1 FROM pg_collation WHERE collname = 'en-x-icu'").fetchone():
            pytest.skip("needs PostgreSQL 15 with ICU")
        name = f"ly_icu_{os.getpid()}"
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f"CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu "
                      "ICU_LOCALE 'en' LOCALE 'C.UTF-8'")
    url = with_database(BASE_URL, name)
    try:
        migrate(url)
        with psycopg.connect(url) as conn:
            load_municipalities(conn)
            load_postal_codes(conn)
            load_demo(conn, count=200, themes=["beskyttelsesrum"])
        with TestClient(create_app(make_settings(url)), headers=ADMIN_HEADERS) as c:
            yield c, url
    finally:
        with psycopg.connect(BASE_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("cql,where", [
    ("vejnavn < 'a'", "vejnavn < 'a' COLLATE \"C\""),
    ("vejnavn >= 'a'", "vejnavn >= 'a' COLLATE \"C\""),
    ("'a' > vejnavn", "vejnavn < 'a' COLLATE \"C\""),
    ("navn > 'Sikringsrum, Z'", "navn > 'Sikringsrum, Z' COLLATE \"C\""),
    ("vejnavn BETWEEN 'Nørregade' AND 'Søndergade'",
     "vejnavn BETWEEN ('Nørregade' COLLATE \"C\") AND ('Søndergade' COLLATE \"C\")"),
    ("CASEI(vejnavn) < 'ø'", "lower(vejnavn) < 'ø' COLLATE \"C\""),
])
def test_text_ordering_is_code_point_order_in_any_database(icu_client, ro_client, shared_db_url,
                                                           cql, where):
    client, url = icu_client
    assert query(url, "SELECT 'a' < 'B', datlocprovider FROM pg_database "
                      "WHERE datname = current_database()")[0] == (True, "i")
    expected = db_ids(url, where)
    default = db_ids(url, where.replace(' COLLATE "C"', ""))
    assert expected != default  # the database's own collation would answer otherwise
    assert both(client, cql) == expected
    # and the suite's C.UTF-8 database gives the code point answer too
    assert api_count(ro_client, cql) == len(db_ids(shared_db_url, where))


# -- accent-insensitive comparison ---------------------------------------------------------

_DANISH = str.maketrans({"Æ": "AE", "æ": "ae", "Ø": "O", "ø": "o"})  # no decomposition


def unaccented(s: str) -> str:
    """What PostgreSQL's unaccent dictionary does to Danish text, modelled independently:
    Æ→AE, Ø→O (neither decomposes), Å→A, é→e (drop the combining marks of NFD)."""
    nfd = unicodedata.normalize("NFD", s.translate(_DANISH))
    return "".join(c for c in nfd if unicodedata.category(c) != "Mn")


@pytest.fixture(scope="module")
def names(shared_db_url):
    return {str(i): (v, by, n) for i, v, by, n in query(
        shared_db_url, "SELECT objekt_id, vejnavn, postnr_by, navn FROM ly.t_6101_beskyt_rum")}


def test_accenti_folds_accents_as_unaccent_does(ro_client, names):
    assert unaccented("Æblegård Ørsted Åbenrå æøå") == "AEblegard Orsted Abenra aeoa"

    def where(test):
        return {i for i, row in names.items() if test(*row)}

    soender = where(lambda v, by, n: v is not None and unaccented(v) == "Sondergade")
    assert soender == where(lambda v, by, n: v == "Søndergade") and soender
    assert both(ro_client, "ACCENTI(vejnavn) = ACCENTI('Søndergade')") == soender
    assert both(ro_client, "ACCENTI(vejnavn) = ACCENTI('Sondergade')") == soender
    assert both(ro_client, "ACCENTI(vejnavn) = 'Sondergade'") == soender  # literal folded too
    assert both(ro_client, "ACCENTI(vejnavn) = ACCENTI('SONDERGADE')") == set()  # not CASEI
    # with CASEI, in either order (CQL2 7.4's examples)
    oester = where(lambda v, by, n: v is not None and unaccented(v).lower() == "ostergade")
    assert oester and oester == where(lambda v, by, n: v == "Østergade")
    assert both(ro_client, "CASEI(ACCENTI(vejnavn)) = CASEI(ACCENTI('OSTERGADE'))") == oester
    assert both(ro_client, "ACCENTI(CASEI(vejnavn)) = ACCENTI(CASEI('ØSTERGADE'))") == oester
    kbh = where(lambda v, by, n: by is not None and unaccented(by).lower().startswith("kobenhavn"))
    assert kbh == where(lambda v, by, n: by is not None and by.startswith("København")) and kbh
    assert both(ro_client, "ACCENTI(CASEI(postnr_by)) LIKE ACCENTI(CASEI('KOBENHAVN%'))") == kbh
    assert both(ro_client, "ACCENTI(postnr_by) LIKE 'Kobenhavn%'") == kbh
    in_list = where(lambda v, by, n: v is not None
                    and unaccented(v).lower() in ("bogevej", "tvaergade", "radhusstraede"))
    assert in_list and both(ro_client, "ACCENTI(CASEI(vejnavn)) IN ('bogevej', 'TVAERGADE', "
                                       "ACCENTI(CASEI('Rådhusstræde')))") == in_list
    grave = where(lambda v, by, n: n is not None and "AEKNINGSGRAV" in unaccented(n).upper())
    assert grave and both(ro_client, "CASEI(ACCENTI(navn)) LIKE '%aekningsgrav%'") == grave


# -- arithmetic ----------------------------------------------------------------------------

@pytest.mark.parametrize("cql,where", [
    ("pladser + 8 = 108", "pladser = 100"),
    ("pladser - 2 * 2 ^ 0 >= 998", "pladser >= 1000"),
    ("pladser * 3 > 2400", "pladser > 800"),
    ("pladser / 4 = 12.5", "pladser = 50"),
    ("pladser div 7 = 2", "pladser / 7 = 2"),  # SQL's integer division
    ("pladser % 7 = 3", "pladser %% 7 = 3"),
    ("pladser ^ 2 > 250000", "pladser > 500"),
    ("-pladser < -500", "pladser > 500"),
    ("pladser - areal_m2 * 1.7 > 0", "pladser > areal_m2 * 1.7"),
    ("pladser / areal_m2 > 1.7", "pladser > 1.7 * areal_m2"),
    ("pladser BETWEEN 4000 / 40 AND 3 * (50 - 10)", "pladser BETWEEN 100 AND 120"),
    ("pladser IN (10 * 10, 4 + 1)", "pladser IN (100, 5)"),
    ("1000 + 0 = pladser", "pladser = 1000"),
    ("pladser + pladser_verificeret < 2 * pladser", "pladser_verificeret < pladser"),
    ("pladser / (pladser - 100) > 3", "pladser > 100 AND pladser < 150"),  # NULL at 100
    ("NOT (pladser_verificeret + 1 IS NULL)", "pladser_verificeret IS NOT NULL"),
])
def test_arithmetic_matches_the_database(ro_client, shared_db_url, cql, where):
    expected = db_ids(shared_db_url, where)
    assert expected, where  # each filter picks something from the demo register
    assert both(ro_client, cql) == expected


def test_a_divisor_that_is_zero_in_a_row_is_null_not_an_error(ro_client, shared_db_url):
    hundred = db_ids(shared_db_url, "pladser = 100")
    assert hundred
    assert both(ro_client, "pladser / (pladser - 100) IS NULL") == hundred
    assert both(ro_client, "pladser % (pladser - 100) IS NULL") == hundred
    assert both(ro_client, "pladser div (pladser - 100) IS NULL") == hundred
    assert both(ro_client, "pladser / (1 - 1) > 0 OR NOT pladser / (1 - 1) > 0") == set()
    assert both(ro_client, "(pladser - 100) ^ (-1) IS NULL") == hundred
    assert both(ro_client, "10 ^ 100000 > pladser") == set()  # beyond 10^1000: NULL


# -- S_DWITHIN -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def aarhus(shared_db_url):
    """A demo shelter near Aarhus: its lon/lat and x/y, and every shelter's distance to it."""
    lon, lat, x, y = query(shared_db_url, """
        SELECT ST_X(ST_Transform(geometri, 4326)), ST_Y(ST_Transform(geometri, 4326)),
               ST_X(geometri), ST_Y(geometri)
        FROM ly.t_6101_beskyt_rum
        ORDER BY geometri <-> ST_Transform(ST_SetSRID(ST_MakePoint(10.2039, 56.1629), 4326),
                                           25832) LIMIT 1""")[0]
    dist = {str(i): d for i, d in query(shared_db_url, """
        SELECT objekt_id, ST_Distance(geometri, ST_SetSRID(ST_MakePoint(%s, %s), 25832))
        FROM ly.t_6101_beskyt_rum""", [x, y])}
    return lon, lat, x, y, dist


@pytest.mark.parametrize("metres", [0, 250, 1000, 5000, 25_000])
def test_s_dwithin_is_planar_metres_in_25832(ro_client, aarhus, metres):
    lon, lat, x, y, dist = aarhus
    # the literal goes through CRS84 -> 25832 in PostGIS: allow a millimetre either way
    inside = {i for i, d in dist.items() if d <= metres - 0.001}
    outside = {i for i, d in dist.items() if d > metres + 0.001}
    got = both(ro_client, f"S_DWITHIN(geometri, POINT({lon!r} {lat!r}), {metres})")
    assert inside <= got and not got & outside
    assert len(got) >= {0: 0, 250: 1, 1000: 1, 5000: 2, 25_000: 10}[metres]
    # the same point given in UTM (filter-crs) and as hand-written CQL2 JSON
    utm = api_ids(ro_client, {"op": "s_dwithin", "args": [
        {"property": "geometri"}, {"type": "Point", "coordinates": [x, y]}, metres]},
        "cql2-json", **{"filter-crs": "http://www.opengis.net/def/crs/EPSG/0/25832"})
    assert utm == {i for i, d in dist.items() if d <= metres}


# -- bad input: 400 problems naming the field ----------------------------------------------

@pytest.mark.parametrize("cql,field,fragment", [
    ("S_DWITHIN(geometri, POINT(10.2 56.1), -1)", "filter", "must not be negative"),
    ("S_DWITHIN(geometri, POINT(10.2 56.1), 'ti meter')", "filter", "must be a number"),
    ("S_DWITHIN(geometri, POINT(10.2 56.1), pladser)", "filter", "must be a number"),
    ("S_DWITHIN(geometri, POINT(10.2 56.1))", "filter", "takes 3 arguments"),
    ("S_DWITHIN(geometri, POINT(10.2 56.1), 1, 2)", "filter", "takes 3 arguments"),
    ("S_DWITHIN(vejnavn, POINT(10.2 56.1), 1)", "vejnavn", "geometries"),
    ("pladser / 0 > 1", "filter", "division by zero"),
    ("pladser div 0.0 = 1", "filter", "division by zero"),
    ("pladser % 0 = 1", "filter", "division by zero"),
    ("vejnavn * 2 > 1", "vejnavn", "arithmetic"),
    ("pladser + 1", "filter", "not a condition"),
    ("ACCENTI(pladser) = 'x'", "pladser", "ACCENTI needs a string"),
    ("ACCENTI(vejnavn, 'x') = 'x'", "filter", "takes 1 argument"),
    ("CASEI(vejnavn) < 5", "vejnavn", "string"),
    ("S_INTERSECTS(geometri, BBOX(170, 58, 13, 54))", "filter", "southern edge"),
    ("A_CONTAINS(vejnavn, ('a'))", "filter", "array"),
])
def test_bad_filters_are_400_naming_the_field(ro_client, cql, field, fragment):
    import cql2

    assert_filter_problem(ro_client.get(ITEMS, params={"filter": cql}), field, fragment)
    as_json = json.dumps(cql2.parse_text(cql).to_json())
    assert_filter_problem(ro_client.get(ITEMS, params={"filter": as_json,
                                                       "filter-lang": "cql2-json"}),
                          field, fragment)


def test_a_bbox_crossing_the_antimeridian_needs_a_geographic_filter_crs(ro_client):
    r = ro_client.get(ITEMS, params={
        "filter": "S_INTERSECTS(geometri, BBOX(650000, 6165000, 440000, 6410000))",
        "filter-crs": "http://www.opengis.net/def/crs/EPSG/0/25832"})
    assert_filter_problem(r, "filter", "antimeridian")


@pytest.mark.parametrize("public", [True, False])
def test_s_dwithin_uses_the_spatial_index_under_row_level_security(shared_db_url, public):
    """Migration 0015 makes ST_DWithin LEAKPROOF, so PostgreSQL may take its index condition
    before the policies: the caller's plan reads the GiST index, not the whole register."""
    from psycopg import sql

    from datamodel import access, query as itemsquery, themes
    from datamodel.cql2sql import parse_filter, to_sql
    from service.params import queryables

    theme = themes.default()
    expr = parse_filter("S_DWITHIN(geometri, POINT(12.5683 55.6761), 300)", None)
    q = itemsquery.ItemsQuery(limit=10, public=public, theme=theme,
                              cql=to_sql(expr, queryables(theme, public), alias="t"))
    stmt, args = itemsquery.items_sql(q)
    actor = access.ANONYMOUS if public else access.Actor(
        subject="t", roles=frozenset({access.NATIONAL_ADMIN}), level="substantial")
    with psycopg.connect(shared_db_url) as conn:
        for name, value in access.transaction_settings(actor).items():
            if name == "role":
                conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(value)))
            else:
                conn.execute("SELECT set_config(%s, %s, true)", (name, value))
        conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        plan = "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN ") + stmt, args))
    assert f"{theme.table}_gist" in plan or "Bitmap Index Scan" in plan, plan
