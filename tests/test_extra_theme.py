"""Adding a theme takes a descriptor and its storage, and nothing else.

The theme here is defined in this test alone and is not a copy of the shelter: an area theme
(MultiPolygon) with a code list, a personal-data attribute and a validity period. It is
registered, its storage is made by `datamodel.storage.theme_storage` in a fresh database,
and then the API serves it: items, CRUD with ETag/If-Match, history and `asof`, `datetime`
on its validity, vector tiles, and an export that GDAL opens; the public sees neither its
hidden objects nor its personal data. No other module is edited for it.
"""

from __future__ import annotations

import io

import mapbox_vector_tile
import psycopg
import pyogrio
import pytest
from fastapi.testclient import TestClient

from datamodel import storage, themes
from datamodel.fields import AENDRINGSAARSAG, BELIGGENHEDSKOMMUNE, Field, generic_fields
from datamodel.themes import MULTIPOLYGON, Figure, Theme
from service.app import create_app
from tests.conftest import ADMIN_HEADERS, bearer, make_settings, query

EXTRA = Theme(
    temakode=9901,
    collection_id="hedebolge_koeleomraade",
    title="Køleområder ved hedebølge (test)",
    singular="køleområdet",
    description="Et testtema: skyggefulde områder med vand, åbne under en hedebølge.",
    geofa_view="t_9901_koeleomr",
    table="koeleomraade_test",
    geometry_type=MULTIPOLYGON,
    fields=(
        *generic_fields(),
        Field("omraadenavn", "string", "Område", max_length=80, required=True, public=True),
        Field("drikkevand_kode", "integer", "Drikkevand", codelist="d_basis_ja_nej",
              twin="drikkevand", required=True, public=True, feltnavn10="drikkevand"),
        Field("kapacitet", "integer", "Kapacitet", minimum=1, maximum=50_000, public=True),
        Field("ansvarlig_tlfnr", "integer", "Ansvarliges telefon", minimum=10_000_000,
              maximum=99_999_999, personal=True, feltnavn10="tlfnr"),
        Field("gyldig_fra", "date", "Gyldig fra", required=True, public=True),
        Field("gyldig_til", "date", "Gyldig til", public=True),
        BELIGGENHEDSKOMMUNE,
        AENDRINGSAARSAG,
    ),
    validity=("gyldig_fra", "gyldig_til"),
    label="omraadenavn",
    figures=(Figure("kapacitet", "Kapacitet"),),
)
ITEMS = f"/collections/{EXTRA.collection_id}/items"
PHONE = 99887766


def _square(lon: float, lat: float, d: float = 0.002) -> dict:
    return {"type": "Polygon", "coordinates": [[[lon, lat], [lon + d, lat], [lon + d, lat + d],
                                                [lon, lat + d], [lon, lat]]]}


def _feature(name: str, lon: float, lat: float, *, fra: str, til: str | None,
             off: int = 1) -> dict:
    return {"type": "Feature", "geometry": _square(lon, lat),
            "properties": {"omraadenavn": name, "drikkevand_kode": 1, "kapacitet": 400,
                           "ansvarlig_tlfnr": PHONE, "gyldig_fra": fra, "gyldig_til": til,
                           "off_kode": off}}


@pytest.fixture
def extra_db(db_url):
    themes.register(EXTRA)
    try:
        with psycopg.connect(db_url) as conn:
            for stmt in storage.theme_storage(EXTRA):
                conn.execute(stmt)
        yield db_url
    finally:
        themes.unregister(EXTRA.collection_id)


def test_an_extra_theme_is_served_without_editing_any_module(extra_db):
    settings = make_settings(extra_db)
    with TestClient(create_app(settings), headers=ADMIN_HEADERS) as admin, \
            TestClient(create_app(settings)) as public:
        listed = admin.get("/collections").json()["collections"]
        assert EXTRA.collection_id in [c["id"] for c in listed]

        # --- create, read, replace with If-Match, stale If-Match, delete ---
        r = admin.post(ITEMS, json=_feature("Fælledparken", 12.565, 55.700, fra="2026-06-01",
                                            til="2026-08-31"),
                       headers={"Content-Type": "application/geo+json"})
        assert r.status_code == 201, r.text
        oid = r.json()["id"]
        first_etag = r.headers["ETag"]
        assert r.json()["geometry"]["type"] == "MultiPolygon"
        assert r.json()["properties"]["drikkevand"] == "Ja"
        assert r.json()["properties"]["beliggenhedskommune"] == 101

        changed = _feature("Fælledparken nord", 12.565, 55.700, fra="2026-06-01",
                           til="2026-08-31")
        r = admin.put(f"{ITEMS}/{oid}", json=changed,
                      headers={"If-Match": first_etag, "Content-Type": "application/geo+json"})
        assert r.status_code == 200, r.text
        second_etag = r.headers["ETag"]
        r = admin.put(f"{ITEMS}/{oid}", json=_feature("Forkert", 12.565, 55.700,
                                                       fra="2026-06-01", til=None),
                      headers={"If-Match": first_etag, "Content-Type": "application/geo+json"})
        assert r.status_code == 412
        assert r.headers["ETag"] == second_etag  # the 412 says which version is current
        assert admin.get(f"{ITEMS}/{oid}").json()["properties"]["omraadenavn"] == \
            "Fælledparken nord"

        # --- history and asof ---
        versions = admin.get(f"{ITEMS}/{oid}/history").json()["features"]
        assert [v["properties"]["omraadenavn"] for v in versions] == \
            ["Fælledparken", "Fælledparken nord"]
        then = versions[0]["properties"]["systid_fra"]
        r = admin.get(f"{ITEMS}/{oid}", params={"asof": then})
        assert r.json()["properties"]["omraadenavn"] == "Fælledparken"

        # --- validity: datetime picks the objects valid then ---
        admin.post(ITEMS, json=_feature("Amager Strandpark", 12.645, 55.655, fra="2026-09-01",
                                        til=None), headers={"Content-Type": "application/geo+json"})
        summer = {f["properties"]["omraadenavn"] for f in
                  admin.get(ITEMS, params={"datetime": "2026-07-15T12:00:00Z"}).json()["features"]}
        autumn = {f["properties"]["omraadenavn"] for f in
                  admin.get(ITEMS, params={"datetime": "2026-10-01T12:00:00Z"}).json()["features"]}
        assert summer == {"Fælledparken nord"} and autumn == {"Amager Strandpark"}

        # --- bad input: a self-intersecting area is refused naming the field, nothing stored
        before = query(extra_db, f"SELECT count(*) FROM ly.{EXTRA.table}")
        bow = _feature("Sløjfe", 12.5, 55.7, fra="2026-06-01", til=None)
        bow["geometry"]["coordinates"] = [[[12.5, 55.7], [12.51, 55.71], [12.51, 55.7],
                                           [12.5, 55.71], [12.5, 55.7]]]
        r = admin.post(ITEMS, json=bow, headers={"Content-Type": "application/geo+json"})
        assert r.status_code == 422
        assert any(e["field"] == "geometry.coordinates" and "Self-intersection" in e["detail"]
                   for e in r.json()["errors"])
        bad_code = _feature("Kode", 12.5, 55.7, fra="2026-06-01", til=None)
        bad_code["properties"]["drikkevand_kode"] = 7
        r = admin.post(ITEMS, json=bad_code, headers={"Content-Type": "application/geo+json"})
        assert r.status_code == 422
        assert [e["field"] for e in r.json()["errors"]] == ["properties.drikkevand_kode"]
        assert query(extra_db, f"SELECT count(*) FROM ly.{EXTRA.table}") == before

        # --- the public: public attributes only, never the phone number ---
        seen = public.get(ITEMS).json()["features"]
        assert {f["properties"]["omraadenavn"] for f in seen} == \
            {"Fælledparken nord", "Amager Strandpark"}
        assert all("ansvarlig_tlfnr" not in f["properties"] for f in seen)
        planner = bearer(["planner"], subject="planlaegger")
        as_planner = admin.get(f"{ITEMS}/{oid}", headers=planner).json()["properties"]
        assert as_planner.get("ansvarlig_tlfnr") is None
        assert admin.get(f"{ITEMS}/{oid}").json()["properties"]["ansvarlig_tlfnr"] == PHONE

        # --- vector tiles: the area, clipped to the tile, without personal data ---
        r = public.get(f"/collections/{EXTRA.collection_id}/tiles/WebMercatorQuad/14/5126/8763")
        assert r.status_code == 200, r.status_code
        layers = mapbox_vector_tile.decode(r.content)
        features = layers[EXTRA.tile_layer]["features"]
        assert {f["properties"]["omraadenavn"] for f in features} == {"Fælledparken nord"}
        assert features[0]["geometry"]["type"] in ("Polygon", "MultiPolygon")
        assert "ansvarlig_tlfnr" not in features[0]["properties"]

        # --- an export GDAL opens: the right count and geometry type ---
        r = admin.get(ITEMS, params={"f": "gpkg"})
        assert r.status_code == 200
        info = pyogrio.read_info(io.BytesIO(r.content))
        assert info["features"] == 2 and info["geometry_type"] == "MultiPolygon"

        # --- delete ends the object; its history stays ---
        etag = admin.get(f"{ITEMS}/{oid}").headers["ETag"]
        assert admin.delete(f"{ITEMS}/{oid}", headers={"If-Match": etag}).status_code == 204
        assert admin.get(f"{ITEMS}/{oid}").status_code == 404
        assert len(admin.get(f"{ITEMS}/{oid}/history").json()["features"]) == 2
