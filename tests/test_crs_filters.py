"""Part 2 (CRS) and Part 3 (queryables, property filters, CQL2 text and JSON) through the API."""

from __future__ import annotations

import json

import pytest

from tests.conftest import COLLECTION, ITEMS, query

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG = "http://www.opengis.net/def/crs/EPSG/0/{}"


@pytest.fixture(scope="module")
def sample(ro_client, shared_db_url):
    """One demo shelter with its stored coordinates in several CRSs, computed by PostGIS."""
    oid, x, y, lon, lat, mx, my = query(shared_db_url, """
        SELECT objekt_id, ST_X(geometri), ST_Y(geometri),
               ST_X(ST_Transform(geometri, 4326)), ST_Y(ST_Transform(geometri, 4326)),
               ST_X(ST_Transform(geometri, 3857)), ST_Y(ST_Transform(geometri, 3857))
        FROM ly.t_6101_beskyt_rum ORDER BY objekt_id LIMIT 1""")[0]
    return {"id": str(oid), 25832: (x, y), "crs84": (lon, lat), 4326: (lat, lon), 3857: (mx, my)}


@pytest.mark.parametrize("crs,key,tol", [
    (None, "crs84", 1e-6), (CRS84, "crs84", 1e-6), (EPSG.format(4326), 4326, 1e-6),
    (EPSG.format(25832), 25832, 1e-3), (EPSG.format(3857), 3857, 1e-2)])
def test_output_crs_with_its_axis_order_and_content_crs(ro_client, sample, crs, key, tol):
    params = {"crs": crs} if crs else {}
    r = ro_client.get(f"{ITEMS}/{sample['id']}", params=params)
    assert r.status_code == 200
    assert r.headers["content-crs"] == f"<{crs or CRS84}>"
    got = r.json()["geometry"]["coordinates"]
    assert got == pytest.approx(list(sample[key]), abs=tol)
    page = ro_client.get(ITEMS, params={**params, "limit": 1})
    assert page.headers["content-crs"] == f"<{crs or CRS84}>"
    assert page.json()["features"][0]["geometry"]["coordinates"] == pytest.approx(
        list(sample[key]), abs=tol)


def test_unsupported_crs_is_400(ro_client):
    for name in ("crs", "bbox-crs"):
        r = ro_client.get(ITEMS, params={name: EPSG.format(2154), "bbox": "1,2,3,4"})
        assert r.status_code == 400
        assert r.json()["errors"][0]["field"] == name


def test_bbox_crs_gives_the_same_shelters_in_every_crs(ro_client):
    lon1, lat1, lon2, lat2 = 9.8, 56.0, 10.4, 56.3  # around Aarhus
    crs84 = ro_client.get(ITEMS, params={"bbox": f"{lon1},{lat1},{lon2},{lat2}",
                                         "limit": 10000}).json()
    ids = {f["id"] for f in crs84["features"]}
    assert len(ids) > 20
    lat_lon = ro_client.get(ITEMS, params={"bbox": f"{lat1},{lon1},{lat2},{lon2}",
                                           "bbox-crs": EPSG.format(4326),
                                           "limit": 10000}).json()
    assert {f["id"] for f in lat_lon["features"]} == ids
    # The same box in UTM: every CRS84 hit, expressed in metres, lies inside the UTM query box.
    utm = ro_client.get(ITEMS, params={"bbox": "540000,6200000,580000,6240000",
                                       "bbox-crs": EPSG.format(25832), "crs": EPSG.format(25832),
                                       "limit": 10000}).json()
    for f in utm["features"]:
        x, y = f["geometry"]["coordinates"]
        assert 540000 <= x <= 580000 and 6200000 <= y <= 6240000


def test_collection_lists_crs_and_storage_crs(ro_client):
    doc = ro_client.get(COLLECTION).json()
    assert set(doc["crs"]) == {CRS84, EPSG.format(4326), EPSG.format(25832), EPSG.format(3857)}
    assert doc["storageCrs"] == EPSG.format(25832)


def test_queryables_document_is_json_schema(ro_client):
    r = ro_client.get(f"{COLLECTION}/queryables")
    assert r.headers["content-type"] == "application/schema+json"
    doc = r.json()
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"].endswith("/collections/beskyttelsesrum/queryables")
    props = doc["properties"]
    assert props["pladser"]["type"] == "integer" and props["pladser"]["maximum"] == 9999
    assert props["beskyt_rum_kode"]["enum"] == [1, 2, 3, 8, 9]
    assert props["geometri"]["format"] == "geometry-point"


def _ids(client, **params):
    r = client.get(ITEMS, params={"limit": 10000, **params})
    assert r.status_code == 200, r.text
    return {f["id"] for f in r.json()["features"]}


def _db_ids(url, where, params=()):
    return {str(r[0]) for r in query(
        url, f"SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE {where}", params)}


def test_property_query_parameters_filter(ro_client, shared_db_url):
    assert _ids(ro_client, beskyt_rum_kode=3, beliggenhedskommune=751) == _db_ids(
        shared_db_url, "beskyt_rum_kode = 3 AND beliggenhedskommune = 751")
    r = ro_client.get(ITEMS, params={"pladser": "many"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "pladser"


@pytest.mark.parametrize("cql,where", [
    ("pladser > 500 AND beskyt_rum_kode = 1", "pladser > 500 AND beskyt_rum_kode = 1"),
    ("beskyt_rum_kode IN (3, 8) AND undertype_kode = 2",
     "beskyt_rum_kode IN (3, 8) AND undertype_kode = 2"),
    ("navn LIKE 'Betondækningsgrav Aarhus%'", "navn LIKE 'Betondækningsgrav Aarhus%%'"),
    ("pladser BETWEEN 100 AND 120 OR egnethed_kode = 3",
     "pladser BETWEEN 100 AND 120 OR egnethed_kode = 3"),
    ("S_INTERSECTS(geometri, BBOX(12.45, 55.6, 12.65, 55.75)) AND beskyt_rum_kode = 2",
     "ST_Intersects(ST_Transform(geometri, 4326), ST_MakeEnvelope(12.45, 55.6, 12.65, 55.75, "
     "4326)) AND beskyt_rum_kode = 2"),
    ("S_INTERSECTS(geometri, POLYGON((9.9 56.1, 10.3 56.1, 10.3 56.2, 9.9 56.2, 9.9 56.1)))",
     "ST_Intersects(ST_Transform(geometri, 4326), ST_GeomFromText('POLYGON((9.9 56.1, 10.3 "
     "56.1, 10.3 56.2, 9.9 56.2, 9.9 56.1))', 4326))"),
    ("note IS NULL AND pladser >= 990", "note IS NULL AND pladser >= 990"),
])
def test_cql2_text_filters_match_the_database(ro_client, shared_db_url, cql, where):
    expected = _db_ids(shared_db_url, where)
    assert expected, "choose a filter that matches something"
    assert _ids(ro_client, filter=cql) == expected


def test_cql2_json_filter_with_bbox_and_filter_crs(ro_client, shared_db_url):
    expr = {"op": "and", "args": [
        {"op": "=", "args": [{"property": "beskyt_rum_kode"}, 1]},
        {"op": "s_intersects", "args": [{"property": "geometri"},
                                        {"bbox": [55.6, 12.45, 55.75, 12.65]}]}]}
    got = _ids(ro_client, filter=json.dumps(expr), **{"filter-lang": "cql2-json",
                                                     "filter-crs": EPSG.format(4326)})
    expected = _db_ids(shared_db_url, "beskyt_rum_kode = 1 AND ST_Intersects(ST_Transform("
                       "geometri, 4326), ST_MakeEnvelope(12.45, 55.6, 12.65, 55.75, 4326))")
    assert got == expected and expected
    both = _ids(ro_client, filter="beskyt_rum_kode = 1", bbox="12.45,55.6,12.65,55.75")
    assert both == expected


@pytest.mark.parametrize("params,field", [
    ({"filter": "colour = 'red'"}, "colour"),
    ({"filter": "pladser = 'many'"}, "pladser"),
    ({"filter": "pladser >>> 3"}, "filter"),
    ({"filter": "pladser = 3", "filter-lang": "sql"}, "filter-lang"),
    ({"filter": "{\"op\": \"=\"", "filter-lang": "cql2-json"}, "filter"),
    ({"filter-lang": "cql2-text"}, "filter"),
    ({"filter": "S_INTERSECTS(pladser, BBOX(1,2,3,4))"}, "pladser"),
    ({"filter": "(" * 60 + "pladser = 1" + ")" * 60}, "filter"),
])
def test_bad_filters_are_400_naming_the_problem(ro_client, params, field):
    r = ro_client.get(ITEMS, params=params)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["field"] == field


def test_filters_cannot_inject_sql(ro_client, shared_db_url):
    before = query(shared_db_url, "SELECT count(*) FROM ly.beskyttelsesrum")
    r = ro_client.get(ITEMS, params={
        "filter": "navn = 'x'' OR 1=1; DELETE FROM ly.beskyttelsesrum; --'"})
    assert r.status_code == 200 and r.json()["features"] == []
    assert query(shared_db_url, "SELECT count(*) FROM ly.beskyttelsesrum") == before
