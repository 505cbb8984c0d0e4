"""CQL2 -> SQL: every filter is executed against PostGIS and the matching rows are checked."""

from __future__ import annotations

import json
import math
import os

import psycopg
import pytest
from psycopg import sql

from datamodel.cql2sql import (
    MAX_COORDINATES,
    TEXT_COLLATION,
    MAX_DEPTH,
    FilterError,
    Queryable,
    geometry_sql,
    parse_filter,
    to_sql,
)

from tests.conftest import BASE_URL as DB_URL  # noqa: E402  (the suite's server)

QUERYABLES = {
    q.name: q
    for q in [
        Queryable("pladser", "c_int", "integer"),
        Queryable("areal", "c_num", "number"),
        Queryable("navn", 'the "name"', "string"),  # a column name that needs quoting
        Queryable("aktiv", "c_bool", "boolean"),
        Queryable("opdateret", "c_ts", "date-time"),
        Queryable("dato", "c_date", "date"),
        Queryable("objekt_id", "c_uuid", "uuid"),
        Queryable("geometri", "c_geom", "geometry"),
        Queryable("kode", "c_int", "integer", frozenset({5, 11, 20, 50, 100})),
    ]
}

# id, pladser, areal, navn, aktiv, opdateret, dato, objekt_id, lon, lat
ROWS = [
    (1, 100, "12.5", "København", True, "2020-01-01T10:00:00Z", "2020-01-01", 1, 12.5683, 55.6761),
    (2, 50, "7.25", "Aarhus", False, "2021-06-15T12:00:00Z", "2021-06-15", 2, 10.2039, 56.1629),
    (3, 20, None, "Odense", True, "2019-03-01T00:00:00Z", "2019-03-01", 3, 10.3883, 55.3959),
    (4, 5, "0.5", "ærø 100%_", None, None, None, None, None, None),
    (5, 11, "3.0", "Rønne", False, "2020-01-01T00:00:00Z", "2020-01-02", 5, 14.7, 55.1),
]
ALL = {1, 2, 3, 4, 5}
WITH_GEOM = {1, 2, 3, 5}


@pytest.fixture(scope="module")
def conn():
    with psycopg.connect(DB_URL, autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        c.execute(
            'CREATE TEMP TABLE cql_test (id int PRIMARY KEY, c_int int, c_num numeric, '
            '"the ""name""" text, c_bool boolean, c_ts timestamptz, c_date date, c_uuid uuid, '
            'c_geom geometry(Point, 25832))'
        )
        for (i, n, a, name, b, ts, d, u, lon, lat) in ROWS:
            c.execute(
                """INSERT INTO cql_test VALUES (%s, %s, %s::numeric, %s, %s, %s::timestamptz,
                     %s::date, %s::uuid,
                     ST_Transform(ST_SetSRID(ST_MakePoint(%s, %s), 4326), 25832))""",
                (i, n, a, name, b, ts, d,
                 None if u is None else f"00000000-0000-0000-0000-{u:012d}", lon, lat),
            )
        yield c


def run(conn, expr, **kw) -> set[int]:
    clause, params = to_sql(expr, QUERYABLES, **kw)
    stmt = sql.SQL("SELECT id FROM cql_test WHERE {} ORDER BY id").format(clause)
    assert stmt.as_string(conn).count("%s") == len(params)
    return {r[0] for r in conn.execute(stmt, params)}


def ids(conn, text: str, lang: str | None = None, **kw) -> set[int]:
    return run(conn, parse_filter(text, lang), **kw)


JUTLAND_CRS84 = "BBOX(8.0, 55.6, 11.0, 57.8)"

CASES = [
    # basic-cql2
    ("pladser > 10", {1, 2, 3, 5}),
    ("pladser >= 50 AND aktiv = true", {1}),
    ("pladser = 20 OR navn = 'Aarhus'", {2, 3}),
    ("NOT (pladser < 50)", {1, 2}),
    ("pladser <> 100", {2, 3, 4, 5}),
    ("5 < pladser AND 50 >= pladser", {2, 3, 5}),
    ("pladser = 20.0", {3}),
    ("pladser = 20.5", set()),
    ("pladser > 10.5 AND pladser < 20.5", {3, 5}),
    ("pladser = -1", set()),
    ("kode = 11", {5}),
    ("areal > 7", {1, 2}),
    ("areal = 7.25", {2}),
    ("areal IS NULL", {3}),
    ("geometri IS NULL", {4}),
    ("aktiv IS NOT NULL", {1, 2, 3, 5}),
    ("aktiv", {1, 3}),
    ("NOT aktiv", {2, 5}),
    ("aktiv = false", {2, 5}),
    ("navn = 'København'", {1}),
    ("navn > 'P'", {5, 4}),
    ("objekt_id = '00000000-0000-0000-0000-000000000002'", {2}),
    ("objekt_id <> '00000000-0000-0000-0000-000000000002'", {1, 3, 5}),
    ("pladser > areal", {1, 2, 4, 5}),
    ("areal < pladser AND navn <> 'Rønne'", {1, 2, 4}),
    ("true", ALL),
    ("false", set()),
    ("pladser > 10 AND (navn = 'Odense' OR navn = 'Rønne') AND NOT aktiv", {5}),
    # advanced comparison
    ("navn LIKE 'O%'", {3}),
    ("navn LIKE '_arhus'", {2}),
    ("navn LIKE '%\\%%'", {4}),  # escaped %: names containing a percent sign
    ("navn NOT LIKE '%e%'", {2, 4}),
    ("navn IN ('Aarhus', 'Odense')", {2, 3}),
    ("navn NOT IN ('Aarhus', 'Odense')", {1, 4, 5}),
    ("pladser IN (20, 20.5, 100)", {1, 3}),
    ("pladser BETWEEN 11 AND 50", {2, 3, 5}),
    ("pladser NOT BETWEEN 11 AND 50", {1, 4}),
    ("areal BETWEEN 0.5 AND 7.25", {2, 4, 5}),
    ("objekt_id IN ('00000000-0000-0000-0000-000000000001', "
     "'00000000-0000-0000-0000-000000000003')", {1, 3}),
    # case-insensitive
    ("CASEI(navn) = CASEI('AARHUS')", {2}),
    ("CASEI('aarhus') = CASEI(navn)", {2}),
    ("CASEI(navn) = 'ODENSE'", {3}),
    ("CASEI(navn) LIKE CASEI('KØB%')", {1}),
    ("CASEI(navn) IN (CASEI('RØNNE'), 'aarhus')", {2, 5}),
    ("navn = 'AARHUS'", set()),
    # temporal
    ("opdateret > TIMESTAMP('2020-06-01T00:00:00Z')", {2}),
    ("opdateret = TIMESTAMP('2020-01-01T12:00:00+02:00')", {1}),
    ("T_AFTER(opdateret, TIMESTAMP('2020-06-01T00:00:00Z'))", {2}),
    ("T_BEFORE(opdateret, TIMESTAMP('2020-01-01T00:00:00Z'))", {3}),
    ("T_INTERSECTS(opdateret, INTERVAL('2020-01-01T00:00:00Z', '2020-12-31T23:59:59Z'))", {1, 5}),
    ("T_DURING(opdateret, INTERVAL('2020-01-01', '..'))", {1, 2}),
    ("T_INTERSECTS(opdateret, INTERVAL('..', '2019-12-31'))", {3}),
    ("T_EQUALS(dato, DATE('2019-03-01'))", {3}),
    ("T_INTERSECTS(dato, INTERVAL('2020-01-01', '2020-01-02'))", {1, 5}),
    ("T_DISJOINT(dato, INTERVAL('2019-01-01', '2020-12-31'))", {2}),
    ("T_AFTER(dato, opdateret)", {5}),
    ("T_STARTS(INTERVAL(opdateret, '..'), INTERVAL('2020-01-01T10:00:00Z', '..'))", set()),
    ("T_STARTEDBY(INTERVAL(opdateret, '2030-01-01'), INTERVAL('2020-01-01T10:00:00Z', "
     "'2025-01-01'))", {1}),
    ("T_METBY(opdateret, INTERVAL('2021-01-01', '2021-06-15T12:00:00Z'))", {2}),
    ("dato = DATE('2021-06-15')", {2}),
    ("dato < DATE('2020-01-02')", {1, 3}),
    ("opdateret = DATE('2020-01-01')", {5}),  # a date is midnight UTC against date-times
    ("opdateret BETWEEN TIMESTAMP('2019-01-01T00:00:00Z') AND TIMESTAMP('2020-01-01T00:00:00Z')",
     {3, 5}),
    ("dato IN (DATE('2019-03-01'), DATE('2021-06-15'))", {2, 3}),
    ("opdateret IS NULL", {4}),
    # spatial
    (f"S_INTERSECTS(geometri, {JUTLAND_CRS84})", {2}),
    (f"INTERSECTS(geometri, {JUTLAND_CRS84})", {2}),
    (f"S_DISJOINT(geometri, {JUTLAND_CRS84})", {1, 3, 5}),
    ("S_INTERSECTS(geometri, BBOX(8.0, 55.6, 0, 11.0, 57.8, 100))", {2}),
    ("S_INTERSECTS(geometri, BBOX(-180, -90, 180, 90))", WITH_GEOM),
    ("S_WITHIN(geometri, POLYGON((12.0 55.4, 12.8 55.4, 12.8 56.1, 12.0 56.1, 12.0 55.4)))", {1}),
    ("S_CONTAINS(POLYGON((12.0 55.4, 12.8 55.4, 12.8 56.1, 12.0 56.1, 12.0 55.4)), geometri)", {1}),
    ("S_INTERSECTS(geometri, MULTIPOLYGON(((12.0 55.4, 12.8 55.4, 12.8 56.1, 12.0 55.4)),"
     "((10.0 55.0, 11.0 55.0, 11.0 55.6, 10.0 55.6, 10.0 55.0))))", {1, 3}),
    ("S_INTERSECTS(geometri, GEOMETRYCOLLECTION(POLYGON((10.0 55.0, 11.0 55.0, 11.0 55.6, "
     "10.0 55.0)), POLYGON((14 54.5, 15.5 54.5, 15.5 55.5, 14 55.5, 14 54.5))))", {5}),
    ("S_EQUALS(geometri, POINT(10.2039 56.1629))", {2}),
    ("S_INTERSECTS(geometri, BBOX(10.2039, 56.1629, 10.2039, 56.1629))", {2}),  # a point bbox
    ("S_TOUCHES(geometri, LINESTRING(10.0 56.1629, 10.2039 56.1629))", {2}),
    ("S_CROSSES(geometri, LINESTRING(10.0 56.0, 10.2039 56.1629, 10.5 56.2))", set()),
    ("S_OVERLAPS(geometri, POLYGON((0 0, 1 0, 1 1, 0 0)))", set()),
    ("S_INTERSECTS(geometri, POINT Z(10.2039 56.1629 12.0))", {2}),
    (f"S_INTERSECTS(geometri, {JUTLAND_CRS84}) OR pladser < 10", {2, 4}),
]


@pytest.mark.parametrize("text,expected", CASES, ids=[c[0][:60] for c in CASES])
def test_cql2_text(conn, text, expected):
    assert ids(conn, text) == expected


# The classes added in issue 15: boolean ordering, arithmetic, the antimeridian, S_DWITHIN.
# Each runs as CQL2 text and, converted by the cql2 library, as CQL2 JSON.
NEW_CASES = [
    # booleans are ordered: false < true
    ("aktiv < true", {2, 5}),
    ("aktiv > false", {1, 3}),
    ("aktiv >= false", {1, 2, 3, 5}),
    ("false < aktiv", {1, 3}),
    ("true > false", ALL),
    ("false >= true", set()),
    ("true <= true AND false < true", ALL),
    # arithmetic (numeric: / is not integer division)
    ("pladser + 1 = 21", {3}),
    ("pladser - 1 = 4", {4}),
    ("pladser * 2 = 100", {2}),
    ("pladser / 2 = 2.5", {4}),
    ("pladser div 2 = 2", {4}),
    ("pladser DIV 3 = 3", {5}),
    ("pladser % 3 = 2", {2, 3, 4, 5}),
    ("pladser ^ 2 = 400", {3}),
    ("pladser ^ 0.5 > 7", {1, 2}),
    ("2 ^ 3 = 8", ALL),
    ("-pladser < -50", {1}),
    ("pladser + 1 * 2 = 22", {3}),  # precedence
    ("(pladser + 1) * 2 = 42", {3}),
    ("10 * 10 = pladser", {1}),
    ("pladser > areal * 4", {1, 2, 4}),
    ("areal + 1 IS NULL", {3}),
    ("pladser BETWEEN 4000 / 400 AND 3 * (10 + 10)", {2, 3, 5}),
    ("pladser IN (10 * 10, 4 + 1)", {1, 4}),
    ("kode * 1 = 11", {5}),
    # a divisor that is 0 in a row makes the value NULL there: the row matches neither way
    ("pladser / (areal - 0.5) < 10", {1, 2, 5}),
    ("NOT (pladser / (areal - 0.5) < 10)", set()),
    ("pladser % (pladser - 5) = 5", {1, 2, 3, 5}),
    ("pladser div (pladser - pladser) IS NULL", ALL),
    ("pladser / (1 - 1) IS NULL", ALL),
    # powers numeric cannot compute are NULL, not errors
    ("(-8) ^ 0.5 IS NULL", ALL),
    ("0 ^ (-1) IS NULL", ALL),
    ("10 ^ 5000 IS NULL", ALL),
    ("(pladser - 5) ^ (-1) IS NULL", {4}),
    ("(-2) ^ 3 = -8 AND 0 ^ 0 = 1", ALL),
    # a BBOX whose west edge lies east of its east edge crosses the antimeridian (CQL2 7.5.1)
    ("S_INTERSECTS(geometri, BBOX(170, 54, 13, 58))", {1, 2, 3}),  # lon < 13: not Rønne
    ("S_INTERSECTS(geometri, BBOX(170, 54, 15, 58))", WITH_GEOM),
    ("S_DISJOINT(geometri, BBOX(170, 54, 13, 58))", {5}),
    ("S_WITHIN(geometri, BBOX(170, 54, 11, 58))", {2, 3}),
    ("S_INTERSECTS(geometri, BBOX(13, 54, 170, 58))", {5}),  # the complement, not crossing
    ("S_INTERSECTS(geometri, BBOX(180, 54, 13, 58))", {1, 2, 3}),
    ("S_INTERSECTS(geometri, BBOX(170, 54, -180, 58))", set()),
    ("S_INTERSECTS(geometri, BBOX(170, 54, 0, 13, 58, 100))", {1, 2, 3}),
    # S_DWITHIN: metres in EPSG:25832
    ("S_DWITHIN(geometri, POINT(12.5683 55.6761), 0)", {1}),
    ("S_DWITHIN(POINT(12.5683 55.6761), geometri, 1)", {1}),
    ("S_DWITHIN(geometri, geometri, 0)", WITH_GEOM),
    ("S_DWITHIN(geometri, POINT(12.5683 55.6761), 1e9)", WITH_GEOM),
    ("NOT S_DWITHIN(geometri, POINT(12.5683 55.6761), 1e9)", set()),
    ("S_DWITHIN(geometri, BBOX(170, 54, 13, 58), 0)", {1, 2, 3}),
]


@pytest.mark.parametrize("text,expected", NEW_CASES, ids=[c[0][:60] for c in NEW_CASES])
def test_new_classes_text_and_json(conn, text, expected):
    assert ids(conn, text) == expected
    as_json = json.dumps(parse_filter(text, "cql2-text"))
    assert ids(conn, as_json, "cql2-json") == expected


def test_antimeridian_bbox_in_each_geographic_crs(conn):
    # EPSG:4326 is latitude first; Web Mercator's antimeridian is at x = ±pi * R
    assert ids(conn, "S_INTERSECTS(geometri, BBOX(54, 170, 58, 13))", flip_axes=True) == {1, 2, 3}
    x170, x13 = 170 / 180 * 20037508.342789244, 13 / 180 * 20037508.342789244
    y54, y58 = 7170156.29, 7967317.54
    assert ids(conn, f"S_INTERSECTS(geometri, BBOX({x170}, {y54}, {x13}, {y58}))",
               filter_srid=3857) == {1, 2, 3}
    expr = {"op": "s_intersects", "args": [{"property": "geometri"}, {"bbox": [170, 54, 13, 58]}]}
    assert run(conn, expr) == {1, 2, 3}
    with pytest.raises(FilterError) as e:  # a projected CRS has no antimeridian
        ids(conn, "S_INTERSECTS(geometri, BBOX(650000, 6165000, 440000, 6410000))",
            filter_srid=25832)
    assert "antimeridian" in e.value.detail and e.value.field == "filter"


def test_dwithin_is_planar_metres_in_25832(conn):
    here = "ST_Transform(ST_SetSRID(ST_MakePoint(12.5683, 55.6761), 4326), 25832)"
    dist = dict(conn.execute(f"SELECT id, ST_Distance(c_geom, {here}) FROM cql_test "
                             "WHERE c_geom IS NOT NULL").fetchall())
    for metres in sorted(dist.values()) + [1000.0, 150_000.0, 200_000.0]:
        for d in (metres - 0.5, metres + 0.5):
            if d < 0:
                continue
            expected = {i for i, m in dist.items() if m <= d}
            assert ids(conn, f"S_DWITHIN(geometri, POINT(12.5683 55.6761), {d!r})") == expected
    # the literal in the filter CRS: UTM, and latitude first
    x, y = conn.execute(f"SELECT ST_X({here}), ST_Y({here})").fetchone()
    assert ids(conn, f"S_DWITHIN(geometri, POINT({x} {y}), 160000)", filter_srid=25832) \
        == {i for i, m in dist.items() if m <= 160000}
    assert ids(conn, "S_DWITHIN(geometri, POINT(55.6761 12.5683), 1)", flip_axes=True) == {1}
    clause, params = to_sql(parse_filter("S_DWITHIN(geometri, POINT(12 55), 25)", None),
                            QUERYABLES, alias="t")
    assert clause.as_string(conn).startswith('ST_DWithin("t"."c_geom", ST_Transform(')
    assert params[-1] == 25.0


def test_geometry_sql_is_the_filters_literal(conn):
    """geometry_sql builds a literal as the filter does (for ORDER BY distance beside it)."""
    g, params = geometry_sql({"type": "Point", "coordinates": [12.5683, 55.6761]})
    clause, fparams = to_sql(parse_filter("S_DWITHIN(geometri, POINT(12.5683 55.6761), 5)",
                                          None), QUERYABLES)
    assert clause.as_string(conn) == f"ST_DWithin(\"c_geom\", {g.as_string(conn)}, %s::float8)"
    assert fparams == params + [5.0]
    stmt = sql.SQL("SELECT id FROM cql_test WHERE c_geom IS NOT NULL ORDER BY c_geom <-> {}"
                   ).format(g)
    assert [r[0] for r in conn.execute(stmt, params)] == [1, 3, 5, 2]  # Odense, Rønne, Aarhus
    g, params = geometry_sql({"bbox": [54, 170, 58, 13]}, flip_axes=True)
    stmt = sql.SQL("SELECT id FROM cql_test WHERE ST_Intersects(c_geom, {})").format(g)
    assert {r[0] for r in conn.execute(stmt, params)} == {1, 2, 3}
    with pytest.raises(FilterError):
        geometry_sql({"property": "geometri"})


def test_text_ordering_is_code_point_order_whatever_the_column_collation(conn):
    """'B' < 'Z' < 'a' < 'b' < 'å' by code point; an ICU collation sorts a < å < b < B < Z."""
    if not conn.execute("SELECT 1 FROM pg_collation WHERE collname = 'en-x-icu'").fetchone():
        pytest.skip("this PostgreSQL has no ICU collations")
    conn.execute('CREATE TEMP TABLE cql_icu (id int, c_text text COLLATE "en-x-icu")')
    conn.execute("INSERT INTO cql_icu VALUES (1, 'a'), (2, 'B'), (3, 'å'), (4, 'Z'), (5, 'b'), "
                 "(6, NULL)")
    q = {"tekst": Queryable("tekst", "c_text", "string")}

    def icu_ids(text):
        clause, params = to_sql(parse_filter(text, None), q)
        return {r[0] for r in conn.execute(
            sql.SQL("SELECT id FROM cql_icu WHERE {}").format(clause), params)}

    # the column's own collation disagrees, so these fail without the explicit collation
    assert conn.execute("SELECT 'a' < 'B'::text COLLATE \"en-x-icu\"").fetchone()[0] is True
    assert icu_ids("tekst < 'a'") == {2, 4}
    assert icu_ids("tekst <= 'Z'") == {2, 4}
    assert icu_ids("tekst > 'Z'") == {1, 3, 5}
    assert icu_ids("'b' < tekst") == {3}
    assert icu_ids("tekst BETWEEN 'B' AND 'a'") == {1, 2, 4}
    assert icu_ids("CASEI(tekst) < 'b'") == {1}  # lower() keeps the database's case mapping
    assert icu_ids("tekst = 'a'") == {1}  # equality unchanged
    assert icu_ids("tekst IN ('b', 'å')") == {3, 5}
    clause, _ = to_sql(parse_filter("tekst < 'a'", None), q)
    assert 'COLLATE "C"' in clause.as_string(conn)
    assert TEXT_COLLATION == "C"


def test_accenti_and_casei_compose_in_sql():
    """ACCENTI is ly.unaccent (revision 0013); a bare literal gets the property's folds."""
    def text(f):
        return to_sql(parse_filter(f, None), QUERYABLES)[0].as_string(None)

    assert text("ACCENTI(navn) = ACCENTI('Ærø')") == \
        '(ly.unaccent("the ""name""") = ly.unaccent(%s::text))'
    assert text("ACCENTI(navn) = 'Ærø'") == text("ACCENTI(navn) = ACCENTI('Ærø')")
    assert text("CASEI(ACCENTI(navn)) = 'ærø'") == \
        '(lower(ly.unaccent("the ""name""")) = lower(ly.unaccent(%s::text)))'
    assert text("ACCENTI(CASEI(navn)) LIKE ACCENTI(CASEI('ær%'))") == \
        '(ly.unaccent(lower("the ""name""")) LIKE ly.unaccent(lower(%s::text)))'
    assert "ly.unaccent" in text("ACCENTI(navn) IN ('Ærø', 'Aarhus')")
    assert 'COLLATE "C"' in text("ACCENTI(navn) < 'b'")


@pytest.mark.parametrize("text,expected", CASES[::4], ids=[c[0][:60] for c in CASES[::4]])
def test_cql2_json_gives_the_same(conn, text, expected):
    as_json = json.dumps(parse_filter(text, "cql2-text"))
    assert ids(conn, as_json, "cql2-json") == expected
    assert ids(conn, as_json, None) == expected  # detected by the leading "{"


def test_hand_written_json(conn):
    f = {
        "op": "and",
        "args": [
            {"op": ">=", "args": [{"property": "pladser"}, 11]},
            {"op": "in", "args": [{"property": "navn"}, ["Aarhus", "Rønne", "Odense"]]},
            {"op": "s_intersects", "args": [{"property": "geometri"},
                                            {"type": "Point", "coordinates": [10.2039, 56.1629]}]},
            {"op": "t_after", "args": [{"property": "opdateret"},
                                       {"timestamp": "2020-01-01T00:00:00.5+01:00"}]},
            {"op": "t_intersects", "args": [{"property": "dato"},
                                            {"interval": [{"date": "2021-01-01"}, ".."]}]},
        ],
    }
    assert ids(conn, json.dumps(f), "cql2-json") == {2}


# -- coordinate reference systems --------------------------------------------------------

@pytest.mark.parametrize(
    "bbox,srid,flip",
    [
        ("BBOX(8.0, 55.6, 11.0, 57.8)", 4326, False),  # CRS84
        ("BBOX(55.6, 8.0, 57.8, 11.0)", 4326, True),  # EPSG:4326, lat/lon
        ("BBOX(440000, 6165000, 650000, 6410000)", 25832, False),
        ("BBOX(890555.93, 7479195.60, 1224514.40, 7925420.61)", 3857, False),
    ],
)
def test_jutland_bbox_in_each_crs(conn, bbox, srid, flip):
    assert ids(conn, f"S_INTERSECTS(geometri, {bbox})", filter_srid=srid, flip_axes=flip) == {2}
    assert ids(conn, f"S_DISJOINT(geometri, {bbox})", filter_srid=srid, flip_axes=flip) == {1, 3, 5}


def test_polygon_in_lat_lon_order(conn):
    zealand_latlon = "POLYGON((55.4 12.0, 55.4 12.8, 56.1 12.8, 56.1 12.0, 55.4 12.0))"
    assert ids(conn, f"S_WITHIN(geometri, {zealand_latlon})", flip_axes=True) == {1}
    assert ids(conn, f"S_WITHIN(geometri, {zealand_latlon})") == set()  # read as lon/lat
    assert ids(conn, "S_EQUALS(geometri, POINT(56.1629 10.2039))", flip_axes=True) == {2}


def test_world_envelopes_are_clipped_before_transforming(conn):
    # a transverse Mercator projection of the whole world collapses onto its central meridian
    assert ids(conn, "S_INTERSECTS(geometri, BBOX(-180, -90, 180, 90))") == WITH_GEOM
    assert ids(conn, "S_INTERSECTS(geometri, BBOX(-90, -180, 90, 180))", flip_axes=True) \
        == WITH_GEOM
    world_3857 = "BBOX(-20037508.34, -20048966.1, 20037508.34, 20048966.1)"
    assert ids(conn, f"S_INTERSECTS(geometri, {world_3857})", filter_srid=3857) == WITH_GEOM
    assert ids(conn, "S_WITHIN(geometri, POLYGON((-170 -80, 170 -80, 170 80, -170 80, -170 -80)))"
               ) == WITH_GEOM
    assert ids(conn, "S_INTERSECTS(geometri, POINT(150 -30))") == set()
    assert ids(conn, "S_DISJOINT(geometri, POINT(150 -30))") == WITH_GEOM


def test_geometry_sql_shape():
    clause, params = to_sql(parse_filter(f"S_INTERSECTS(geometri, {JUTLAND_CRS84})", None),
                            QUERYABLES)
    text = clause.as_string(None)
    assert "ST_Transform(" in text and "ST_MakeEnvelope(" in text and "25832" not in text
    assert 25832 in params and 4326 in params
    clause, params = to_sql(parse_filter("S_INTERSECTS(geometri, POINT(55 10))", None),
                            QUERYABLES, flip_axes=True)
    text = clause.as_string(None)
    assert "ST_FlipCoordinates(ST_Force2D(ST_SetSRID(ST_GeomFromGeoJSON(%s::text), %s::int)))" \
        in text
    clause, params = to_sql(parse_filter("S_INTERSECTS(geometri, BBOX(1, 2, 3, 4))", None),
                            QUERYABLES, filter_srid=25832)
    assert "ST_Transform" not in clause.as_string(None)
    assert params == [1.0, 2.0, 3.0, 4.0, 25832]


def test_table_alias(conn):
    clause, params = to_sql(parse_filter("pladser > 10 AND navn LIKE '%e%'", None), QUERYABLES,
                            alias="t")
    assert '"t"."c_int"' in clause.as_string(conn)
    stmt = sql.SQL("SELECT id FROM cql_test t WHERE {} ORDER BY id").format(clause)
    assert [r[0] for r in conn.execute(stmt, params)] == [1, 3, 5]


# -- safety ------------------------------------------------------------------------------

def test_injection_in_a_string_literal_is_a_parameter(conn):
    text = "navn = 'x'' OR 1=1 --'"
    clause, params = to_sql(parse_filter(text, None), QUERYABLES)
    rendered = clause.as_string(conn)
    assert "1=1" not in rendered and "OR" not in rendered
    assert params == ["x' OR 1=1 --"]
    assert ids(conn, text) == set()
    assert ids(conn, "navn LIKE '%'' OR ''1''=''1'") == set()


def test_every_literal_is_a_parameter(conn):
    text = ("pladser = 4711 AND navn = 'Ærø' AND opdateret = TIMESTAMP('2031-02-03T04:05:06Z') "
            "AND S_INTERSECTS(geometri, POINT(9.87654 55.4321))")
    rendered = to_sql(parse_filter(text, None), QUERYABLES)[0].as_string(conn)
    for literal in ("4711", "Ærø", "2031", "9.87654", "55.4321"):
        assert literal not in rendered


def test_property_names_are_whitelisted():
    with pytest.raises(FilterError) as e:
        to_sql(parse_filter('"x"" OR 1=1 --" = 1', None), QUERYABLES)
    assert e.value.field == 'x" OR 1=1 --'
    assert "unknown queryable" in e.value.detail


def _product(n: int, factor: str) -> str:
    """A balanced product of n factors (a chain would hit MAX_DEPTH first)."""
    if n == 1:
        return factor
    return f"({_product(n // 2, factor)} * {_product(n - n // 2, factor)})"


@pytest.mark.parametrize(
    "text,field,fragment",
    [
        ("nope = 1", "nope", "unknown queryable 'nope'"),
        ("pladser > 1 AND NOT (Pladser = 2)", "Pladser", "unknown queryable"),
        ("pladser = 'ti'", "pladser", "integer"),
        ("areal < 'x'", "areal", "number"),
        ("navn > 5", "navn", "string"),
        ("aktiv = 1", "aktiv", "boolean"),
        ("objekt_id = 'not-a-uuid'", "objekt_id", "UUID"),
        ("objekt_id = 7", "objekt_id", "UUID"),
        ("objekt_id < '00000000-0000-0000-0000-000000000002'", "objekt_id", "<"),
        ("opdateret > '2020-01-01'", "opdateret", "TIMESTAMP("),
        ("dato = 2020", "dato", "DATE("),
        ("geometri = POINT(1 2)", "geometri", "spatial function"),
        ("pladser LIKE '1%'", "pladser", "LIKE"),
        ("CASEI(pladser) = 'a'", "pladser", "CASEI"),
        ("S_INTERSECTS(navn, POINT(10 56))", "navn", "geometries"),
        ("S_INTERSECTS(geometri, pladser)", "pladser", "geometries"),
        ("T_AFTER(pladser, TIMESTAMP('2020-01-01T00:00:00Z'))", "pladser", "temporal"),
        ("pladser BETWEEN 'a' AND 'b'", "pladser", "integer"),
        ("aktiv BETWEEN false AND true", "aktiv", "BETWEEN"),
        ("pladser IN (1, 'to')", "pladser", "integer"),
        ("pladser = navn", "navn", "cannot compare"),
        ("pladser", "pladser", "not a boolean"),
        ("pladser = NULL", "pladser", "IS NULL"),
        ("ACCENTI(pladser) = 'a'", "pladser", "ACCENTI needs a string"),
        ("CASEI(ACCENTI(pladser)) = 'a'", "pladser", "ACCENTI needs a string"),
        ("navn + 1 = 3", "navn", "arithmetic (+) needs numbers"),
        ("pladser * aktiv = 3", "aktiv", "arithmetic (*) needs numbers"),
        ("pladser + 'to' = 3", "filter", "arithmetic (+) needs numbers"),
        ("pladser - 1 = 'x'", "filter", "is a number"),
        ("pladser + 1", "filter", "not a condition"),
        ("ACCENTI(navn)", "filter", "not a condition"),
        ("pladser / 0 > 1", "filter", "division by zero"),
        ("pladser % 0.0 > 1", "filter", "division by zero"),
        ("pladser div 0 > 1", "filter", "division by zero"),
        (f"pladser * {_product(450, '1e300')} > 1", "filter", "too large"),  # > 131,072 digits
        ("pladser" + " / (areal - 1)" * 7 + " > 1", "filter", "too large"),
        ("S_DWITHIN(geometri, POINT(10 56), -1)", "filter", "must not be negative"),
        ("S_DWITHIN(geometri, POINT(10 56), 'far')", "filter", "must be a number"),
        ("S_DWITHIN(geometri, POINT(10 56), true)", "filter", "must be a number"),
        ("S_DWITHIN(geometri, POINT(10 56), pladser)", "filter", "must be a number"),
        ("S_DWITHIN(geometri, POINT(10 56), 10 * 100)", "filter", "must be a number"),
        ("S_DWITHIN(geometri, POINT(10 56))", "filter", "takes 3 arguments"),
        ("S_DWITHIN(geometri, POINT(10 56), 1, 2)", "filter", "takes 3 arguments"),
        ("S_DWITHIN(navn, POINT(10 56), 1)", "navn", "geometries"),
        ("A_CONTAINS(pladser, (1, 2))", "filter", "not supported"),
        ("FOO(pladser) = 1", "filter", "unknown function"),
        ("S_INTERSECTS(geometri, BBOX(8, 57.8, 11, 55.6))", "filter", "southern edge"),
        ("S_INTERSECTS(geometri, BBOX(190, 54, 13, 58))", "filter", "antimeridian"),
        ("S_INTERSECTS(geometri, BBOX(170, 54, -200, 58))", "filter", "antimeridian"),
        ("aktiv < 1", "aktiv", "boolean"),
        ("S_INTERSECTS(geometri, POINT(10 95))", "filter", "out of range"),
        ("opdateret > TIMESTAMP('2020-02-30T00:00:00Z')", "filter", "invalid timestamp"),
        ("dato > DATE('2020-13-01')", "filter", "invalid date"),
        ("pladser = 1e999", "filter", "finite"),
    ],
)
def test_refused_filters(text, field, fragment):
    with pytest.raises(FilterError) as e:
        to_sql(parse_filter(text, None), QUERYABLES)
    assert e.value.field == field
    assert fragment in e.value.detail


@pytest.mark.parametrize(
    "expr,fragment",
    [
        ({"op": "s_intersects", "args": [{"property": "geometri"},
                                         {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}]},
         "ring"),
        ({"op": "s_intersects", "args": [{"property": "geometri"}, {"bbox": [1, 2, 3]}]}, "BBOX"),
        ({"op": "=", "args": [{"property": "opdateret"}, {"timestamp": "yesterday"}]},
         "invalid timestamp"),
        ({"op": "=", "args": [{"property": "pladser"}]}, "2 arguments"),
        ({"op": "and", "args": [{"op": "=", "args": [{"property": "pladser"}, 1]}]}, "at least 2"),
        ({"op": "in", "args": [{"property": "pladser"}, []]}, "at least one"),
        ({"op": "in", "args": [{"property": "pladser"}, [1, [2]]]}, "list"),
        ({"op": "=", "args": [{"property": "navn"}, "a\x00b"]}, "NUL"),
    ],
)
def test_refused_json(expr, fragment):
    with pytest.raises(FilterError) as e:
        to_sql(expr, QUERYABLES)
    assert fragment in e.value.detail


def test_parse_error_is_short_and_readable():
    with pytest.raises(FilterError) as e:
        parse_filter("pladser > 10 AND", "cql2-text")
    assert e.value.field == "filter"
    assert "line 1, column 17" in e.value.detail and "\n" not in e.value.detail
    with pytest.raises(FilterError) as e:
        parse_filter("navn = 'a' || 'b'", None)
    assert "column 12" in e.value.detail and "near '|| 'b''" in e.value.detail
    with pytest.raises(FilterError) as e:
        parse_filter('{"op": "=", "args": [', None)
    assert e.value.detail.startswith("invalid CQL2 JSON")
    with pytest.raises(FilterError) as e:
        parse_filter('{"op": "=", "args": [{"property": "x"}, {"foo": 1}]}', "cql2-json")
    assert e.value.detail == "invalid CQL2 JSON: not a valid CQL2 expression"
    with pytest.raises(FilterError):
        parse_filter("   ", None)


@pytest.mark.parametrize("lang", ["cql-text", "ecql", "CQL2-JSONB"])
def test_unknown_filter_lang(lang):
    with pytest.raises(FilterError) as e:
        parse_filter("pladser > 1", lang)
    assert e.value.field == "filter-lang"


def test_filter_lang_is_case_insensitive_and_explicit():
    assert parse_filter("pladser > 1", "CQL2-Text") == parse_filter("pladser > 1", None)
    with pytest.raises(FilterError):  # JSON text read as CQL2 text
        parse_filter('{"op": ">", "args": [{"property": "pladser"}, 1]}', "cql2-text")


def test_depth_limit():
    ok = "NOT (" * (MAX_DEPTH - 2) + "aktiv" + ")" * (MAX_DEPTH - 2)
    to_sql(parse_filter(ok, None), QUERYABLES)
    for n in (MAX_DEPTH + 1, 5000, 100_000):  # the cql2 parser itself dies (SIGSEGV) on ~2000
        with pytest.raises(FilterError) as e:
            parse_filter("NOT (" * n + "aktiv" + ")" * n, None)
        assert "nested too deeply" in e.value.detail
    deep: dict = {"property": "aktiv"}
    for _ in range(MAX_DEPTH + 5):
        deep = {"op": "not", "args": [deep]}
    with pytest.raises(FilterError) as e:
        to_sql(deep, QUERYABLES)
    assert "nested too deeply" in e.value.detail
    with pytest.raises(FilterError) as e:
        parse_filter(json.dumps(deep), None)
    assert "nested too deeply" in e.value.detail
    with pytest.raises(FilterError) as e:
        parse_filter("[" * 100_000 + "]" * 100_000, "cql2-json")
    assert "nested too deeply" in e.value.detail


@pytest.mark.parametrize(
    "text",
    [
        "NOT " * 20_000 + "aktiv",
        " AND ".join(["aktiv"] * 30_000),
        "pladser = " + "+".join(["1"] * 20_000),
        "pladser = " + "-" * 20_000 + "1",
        "pladser IN (" + ", ".join(str(i) for i in range(2000)) + ")",
        "S_INTERSECTS(geometri, BBOX(1, 2, 3, " + "NOT " * 20_000 + "4))",
        "S_INTERSECTS(geometri, BBOX(" + "-" * 20_000 + "1, 2, 3, 4))",
        "S_INTERSECTS(geometri, POINT(" + "-" * 20_000 + "1 2))",
        "S_INTERSECTS(geometri, POINT(1 " + "1+" * 20_000 + "2))",
        "navn" + " LIKE 'a'" * 20_000,
        "navn" + " NOT LIKE 'a'" * 20_000,
        "pladser" + " IN (1)" * 20_000,
        "pladser = 1" + " div 1" * 20_000,
        "S_DWITHIN(geometri, POINT(1 2), " + "1 DIV " * 20_000 + "1)",
    ],
    ids=["not-chain", "and-chain", "plus-chain", "minus-chain", "long-in-list", "bbox-not-chain",
         "bbox-minus-chain", "wkt-minus-chain", "wkt-plus-chain", "like-chain", "not-like-chain",
         "in-chain", "div-chain", "dwithin-div-chain"],
)
def test_node_limit(text):
    # each of these, some 20,000 levels deep, kills the process (SIGSEGV) inside the cql2 parser
    with pytest.raises(FilterError) as e:
        parse_filter(text, None)
    assert "too complex" in e.value.detail


def test_geometry_size_limit(conn):
    def ring(n):  # a closed ring of n positions: a small circle south-west of Aarhus
        pts = [f"{10 + 0.01 * math.cos(2 * math.pi * i / (n - 1)):.7f} "
               f"{56 + 0.01 * math.sin(2 * math.pi * i / (n - 1)):.7f}" for i in range(n - 1)]
        return "POLYGON((" + ", ".join(pts + pts[:1]) + "))"

    assert ids(conn, f"S_INTERSECTS(geometri, {ring(MAX_COORDINATES - 10)})") == set()
    assert ids(conn, f"S_DISJOINT(geometri, {ring(MAX_COORDINATES - 10)})") == WITH_GEOM
    with pytest.raises(FilterError) as e:
        parse_filter(f"S_INTERSECTS(geometri, {ring(MAX_COORDINATES + 1)})", None)
    assert "geometry too large" in e.value.detail
    many = {"op": "or", "args": [
        {"op": "s_intersects", "args": [{"property": "geometri"}, {
            "type": "LineString", "coordinates": [[10, 56 + i * 1e-4] for i in range(3000)]}]}
        for _ in range(4)]}
    with pytest.raises(FilterError):
        to_sql(many, QUERYABLES)  # 12,000 coordinates in all


def test_negative_coordinates_do_not_count_as_operators(conn):
    pts = ", ".join(f"{-5 - i * 1e-3} {-10 - i * 1e-3}" for i in range(3000))
    assert ids(conn, f"S_INTERSECTS(geometri, LINESTRING({pts}))") == set()
