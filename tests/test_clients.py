"""Independent clients against the real server: GDAL's OAPIF driver (through pyogrio) and
OWSLib's OGC API - Features client.

GDAL runs in a child process. pyogrio (0.13) holds the GIL while GDAL reads features, and
the OAPIF driver fetches the item pages over HTTP inside that read; the test server is a
uvicorn thread of this very process, so an in-process `pyogrio.raw.read` deadlocks (the
server can never answer). `read_info` alone happens to work in-process, the read does not.

GDAL is signed in as the national administrator with `GDAL_HTTP_AUTH=BEARER` and
`GDAL_HTTP_BEARER`. (`GDAL_HTTP_HEADERS` is *not* sent by the OAPIF driver of GDAL 3.12: the
driver passes its own `Accept` header, which replaces the configured extra headers.)
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import pytest

from datamodel import themes
from tests.conftest import ADMIN_HEADERS, DEMO_COUNT, query

pytest.importorskip("pyogrio")

LAYER = "beskyttelsesrum"
CRS_URI = "http://www.opengis.net/def/crs/"
COPENHAGEN = (12.45, 55.6, 12.65, 55.75)  # lon/lat
TRIANGLE_ISLAND = (700000.0, 6170000.0, 730000.0, 6190000.0)  # metres, EPSG:25832

# Runs in the child: open the API with GDAL, read one layer, print what was read as JSON.
_GDAL_CHILD = r"""
import json, sys
import pyogrio, shapely
from pyogrio import raw

url, opts = sys.argv[1], json.loads(sys.argv[2])
bbox = tuple(opts.pop("bbox")) if opts.get("bbox") else None
opts.pop("bbox", None)
src = "OAPIF:" + url
try:
    info = pyogrio.read_info(src, layer="beskyttelsesrum", **opts)
    meta, _fids, geoms, fields = raw.read(src, layer="beskyttelsesrum", bbox=bbox, **opts)
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
    sys.exit(0)
names = list(meta["fields"])
coords = shapely.get_coordinates(shapely.from_wkb(geoms)).tolist()
print(json.dumps({
    "layer_crs": info["crs"], "read_crs": meta["crs"], "info_features": int(info["features"]),
    "fields": names, "ids": [str(v) for v in fields[names.index("id")]],
    "coords": coords,
}))
"""


def _gdal(url: str, *, signed_in: bool = True, **options) -> dict:
    """Read the shelter layer with GDAL in a child process.

    `options` are dataset open options (PAGE_SIZE, CRS, ...) and `bbox` (pyogrio's spatial
    filter, in the layer CRS). The result has what GDAL read and `fetches`, the URLs GDAL
    requested (from its debug log).
    """
    env = dict(os.environ, CPL_DEBUG="ON", GDAL_HTTP_TIMEOUT="30")
    for name in ("GDAL_HTTP_AUTH", "GDAL_HTTP_BEARER", "GDAL_HTTP_HEADERS",
                 "GDAL_HTTP_HEADER_FILE"):
        env.pop(name, None)
    if signed_in:
        env["GDAL_HTTP_AUTH"] = "BEARER"
        env["GDAL_HTTP_BEARER"] = ADMIN_HEADERS["Authorization"].split(" ", 1)[1]
    proc = subprocess.run([sys.executable, "-c", _GDAL_CHILD, url, json.dumps(options)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["fetches"] = [line.split("Fetch(", 1)[1].rstrip(")")
                      for line in proc.stderr.splitlines() if "HTTP: Fetch(" in line]
    out["stderr"] = proc.stderr
    return out


def _item_fetches(result: dict) -> list[dict]:
    """Query parameters of GDAL's requests for items pages, except its 20-item probes."""
    out = []
    for href in result["fetches"]:
        parts = urlsplit(href)
        if not parts.path.endswith(f"/collections/{LAYER}/items"):
            continue
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if q.get("limit") == "20" and "cursor" not in q and "crs" not in q:
            continue  # the driver's schema probe (first page of 20)
        out.append(q)
    return out


def _ids(db: str, sql: str, params=None) -> set[str]:
    return {str(r[0]) for r in query(db, sql, params)}


# --- GDAL (OAPIF driver) ---------------------------------------------------------------


def test_gdal_reads_every_shelter_following_next_links(live_ro, shared_db_url):
    got = _gdal(live_ro.url, PAGE_SIZE=500)
    assert "error" not in got, got
    (count,) = query(shared_db_url, "SELECT count(*) FROM ly.t_6101_beskyt_rum")[0]
    assert count == DEMO_COUNT
    assert got["info_features"] == count  # from numberMatched
    assert len(got["ids"]) == len(set(got["ids"])) == count
    assert set(got["ids"]) == _ids(shared_db_url, "SELECT objekt_id FROM ly.t_6101_beskyt_rum")
    pages = _item_fetches(got)
    assert len(pages) == math.ceil(count / 500), [p.get("cursor") for p in pages]
    assert all(p["limit"] == "500" for p in pages)
    assert "cursor" not in pages[0] and all("cursor" in p for p in pages[1:])
    # Without a CRS option GDAL uses the collection's storageCrs, and asks for it.
    assert got["layer_crs"] == "EPSG:25832"
    assert all(p["crs"] == CRS_URI + "EPSG/0/25832" for p in pages)
    assert {"navn", "pladser", "beskyt_rum_kode", "noegle"} <= set(got["fields"])


def test_gdal_without_credentials_reads_the_public_register(live_ro, shared_db_url):
    got = _gdal(live_ro.url, signed_in=False, PAGE_SIZE=100)
    assert "error" not in got, got
    # The public sees the shelters marked public (off_kode 1) while the national activation
    # is off (migration 0002); the demo register is not activated.
    assert query(shared_db_url, "SELECT ly.activation_in_force()") == [(False,)]
    public = _ids(shared_db_url,
                  "SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE off_kode = 1")
    assert 0 < len(public) < DEMO_COUNT
    assert got["info_features"] == len(public)
    assert len(got["ids"]) == len(public) and set(got["ids"]) == public
    assert len(_item_fetches(got)) == math.ceil(len(public) / 100)
    assert "pladser" in got["fields"] and "noegle" not in got["fields"]


def test_gdal_bbox_in_crs84_is_filtered_by_the_server_across_pages(live_ro, shared_db_url):
    got = _gdal(live_ro.url, PAGE_SIZE=100, CRS="OGC:CRS84", bbox=list(COPENHAGEN))
    assert "error" not in got, got
    expected = _ids(shared_db_url,
                    "SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE ST_Intersects("
                    "ST_Transform(geometri, 4326), ST_MakeEnvelope(%s, %s, %s, %s, 4326))",
                    COPENHAGEN)
    assert len(expected) > 100  # so the bbox query pages
    assert len(got["ids"]) == len(set(got["ids"])) == len(expected)
    assert set(got["ids"]) == expected
    pages = _item_fetches(got)
    assert len(pages) == math.ceil(len(expected) / 100)
    for p in pages:  # the server filtered (and its next links kept the filter)
        assert [float(v) for v in p["bbox"].split(",")] == pytest.approx(COPENHAGEN)
        assert p["bbox-crs"] == CRS_URI + "OGC/1.3/CRS84"
        assert p["crs"] == CRS_URI + "OGC/1.3/CRS84"
    for lon, lat in got["coords"]:
        assert COPENHAGEN[0] <= lon <= COPENHAGEN[2] and COPENHAGEN[1] <= lat <= COPENHAGEN[3]


def test_gdal_bbox_in_the_storage_crs_uses_bbox_crs(live_ro, shared_db_url):
    got = _gdal(live_ro.url, PAGE_SIZE=500, bbox=list(TRIANGLE_ISLAND))
    assert "error" not in got, got
    expected = _ids(shared_db_url,
                    "SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE ST_Intersects("
                    "geometri, ST_MakeEnvelope(%s, %s, %s, %s, 25832))", TRIANGLE_ISLAND)
    assert expected and set(got["ids"]) == expected and len(got["ids"]) == len(expected)
    pages = _item_fetches(got)
    assert all(p["bbox-crs"] == CRS_URI + "EPSG/0/25832" for p in pages)


@pytest.mark.parametrize("option, srid, layer_crs, tolerance", [
    ("EPSG:25832", 25832, "EPSG:25832", 0.01),  # metres
    ("EPSG:3857", 3857, "EPSG:3857", 0.01),  # metres
    ("OGC:CRS84", 4326, "CRS84", 1e-6),  # degrees, lon/lat
])
def test_gdal_crs_option_returns_the_databases_coordinates(live_ro, shared_db_url, option,
                                                           srid, layer_crs, tolerance):
    got = _gdal(live_ro.url, PAGE_SIZE=1000, CRS=option)
    assert "error" not in got, got
    assert layer_crs in got["layer_crs"] and layer_crs in got["read_crs"]
    pages = _item_fetches(got)
    uri = CRS_URI + ("OGC/1.3/CRS84" if srid == 4326 else f"EPSG/0/{srid}")
    assert pages and all(p["crs"] == uri for p in pages)
    stored = {str(oid): (x, y) for oid, x, y in query(
        shared_db_url,
        "SELECT objekt_id, ST_X(g), ST_Y(g) FROM (SELECT objekt_id, "
        "ST_Transform(geometri, %s) g FROM ly.t_6101_beskyt_rum) t", [srid])}
    assert len(got["ids"]) == len(stored)
    for oid, (x, y) in zip(got["ids"], got["coords"]):
        sx, sy = stored[oid]
        assert abs(x - sx) <= tolerance and abs(y - sy) <= tolerance, (oid, x, y, sx, sy)


def test_gdal_refuses_a_crs_the_collection_does_not_list(live_ro):
    got = _gdal(live_ro.url, CRS="EPSG:3067")
    assert got.get("error") == "DataSourceError"
    # GDAL read the collection's crs list: exactly the four CRS the API offers.
    assert "OGC:CRS84, EPSG:4326, EPSG:25832, EPSG:3857" in got["message"]


# --- OWSLib ----------------------------------------------------------------------------

FEATURE = {"type": "Feature",
           "geometry": {"type": "Point", "coordinates": [12.5683, 55.6761]},
           "properties": {"beskyt_rum_kode": 1, "pladser": 120, "navn": "Test",
                          "noegle": "owslib-1"}}


@pytest.fixture
def owslib_features(monkeypatch):
    """OWSLib's Features client class, with its module-wide request headers isolated.

    OWSLib's `API.__init__` does `self.headers = REQUEST_HEADERS` and then updates it in
    place, so the Authorization (and Content-Type) of one client leak into every later
    client in the process. Give each test its own copy.
    """
    ogcapi = pytest.importorskip("owslib.ogcapi")
    from owslib.ogcapi.features import Features

    monkeypatch.setattr(ogcapi, "REQUEST_HEADERS", dict(ogcapi.REQUEST_HEADERS))
    return Features


def test_owslib_reads_conformance_collection_and_items(live_ro, owslib_features):
    api = owslib_features(live_ro.url, headers=dict(ADMIN_HEADERS))
    classes = api.conformance()["conformsTo"]
    for suffix in ("ogcapi-features-1/1.0/conf/core",
                   "ogcapi-features-4/1.0/conf/create-replace-delete"):
        assert any(c.endswith(suffix) for c in classes), suffix
    listed = [c["id"] for c in api.collections()["collections"]]
    assert listed == [t.collection_id for t in themes.all_themes()] and listed[0] == LAYER
    coll = api.collection(LAYER)
    assert coll["id"] == LAYER and coll["storageCrs"] == CRS_URI + "EPSG/0/25832"
    assert "pladser" in api.collection_queryables(LAYER)["properties"]
    page = api.collection_items(LAYER, limit=7, bbox=list(COPENHAGEN))
    assert page["numberReturned"] == 7 and len(page["features"]) == 7
    one = api.collection_item(LAYER, page["features"][0]["id"])
    assert one["id"] == page["features"][0]["id"]


def test_owslib_creates_replaces_and_deletes_a_shelter(live_rw, db_url, owslib_features):
    api = owslib_features(live_rw.url, headers=dict(ADMIN_HEADERS))

    assert api.collection_item_create(LAYER, json.loads(json.dumps(FEATURE))) is True
    location = api.response_headers["Location"]
    rows = query(db_url, "SELECT objekt_id, versions_id, pladser, navn, bruger_id "
                         "FROM ly.t_6101_beskyt_rum WHERE noegle = 'owslib-1'")
    assert len(rows) == 1
    objekt_id, first_version, pladser, navn, bruger_id = rows[0]
    assert (pladser, navn) == (120, "Test")
    assert location.endswith(f"/collections/{LAYER}/items/{objekt_id}")
    assert bruger_id == "sams-admin"  # the token's subject
    assert api.collection_item(LAYER, str(objekt_id))["properties"]["navn"] == "Test"

    replacement = json.loads(json.dumps(FEATURE))
    replacement["properties"].update(pladser=150, navn="Test opdateret")
    assert api.collection_item_update(LAYER, str(objekt_id), replacement) is True
    ((versions_id, pladser, navn),) = query(
        db_url, "SELECT versions_id, pladser, navn FROM ly.t_6101_beskyt_rum "
                "WHERE objekt_id = %s", [objekt_id])
    assert versions_id != first_version and (pladser, navn) == (150, "Test opdateret")
    assert api.response_headers["ETag"] == f'"{versions_id}"'
    history = query(db_url, "SELECT versions_id, systid_til FROM ly.beskyttelsesrum "
                            "WHERE objekt_id = %s ORDER BY systid_fra", [objekt_id])
    assert [h[0] for h in history] == [first_version, versions_id]
    assert history[0][1] is not None and history[1][1] is None

    assert api.collection_item_delete(LAYER, str(objekt_id)) is True
    assert query(db_url, "SELECT 1 FROM ly.t_6101_beskyt_rum WHERE objekt_id = %s",
                 [objekt_id]) == []
    kept = query(db_url, "SELECT versions_id, systid_til FROM ly.beskyttelsesrum "
                         "WHERE objekt_id = %s ORDER BY systid_fra", [objekt_id])
    assert [k[0] for k in kept] == [first_version, versions_id]
    assert all(k[1] is not None for k in kept)
    with pytest.raises(RuntimeError):  # OWSLib raises on the 404
        api.collection_item(LAYER, str(objekt_id))
