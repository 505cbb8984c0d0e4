"""Vector tiles (OGC API - Tiles, Mapbox Vector Tiles): a decoded tile holds exactly the
shelters the viewer may see inside the tile, with the viewer's attributes.

The expected sets are computed here from the database, independently of the service: the
tile envelope by PostGIS (`ST_TileEnvelope` for WebMercatorQuad) or from SDFI's published
UTM32 grid (origin 120000/6500000, 1638.4 m cells at level 0, halving), and the visibility
as the access rules state it for each viewer (tests/test_access.py has the full matrix).
"""

from __future__ import annotations

import mapbox_vector_tile
import morecantile
import pytest

from tests.conftest import COLLECTION, bearer, query

pytest.importorskip("mapbox_vector_tile")

TILES = COLLECTION + "/tiles"
MVT = "application/vnd.mapbox-vector-tile"
KBH = 101
WMQ = morecantile.tms.get("WebMercatorQuad")
# Copenhagen: a tile spanning several municipalities, so every viewer sees another set.
LON, LAT = 12.55, 55.69


def _kbh_cvr(url: str) -> int:
    return query(url, "SELECT cvr_kode FROM ly.kommune WHERE kommunekode = %s", [KBH])[0][0]


#: Visibility as the access rules state it (activation off in the demo register).
VISIBLE = {
    "public": ("off_kode = 1", []),
    "municipal_editor": ("(off_kode IN (1, 3) OR cvr_kode = %s "
                         "OR (beliggenhedskommune = %s AND off_kode <> 2))", None),
    "national_admin": ("TRUE", []),
}


def _viewer(name: str, url: str):
    """(headers, visibility SQL, its params) for a viewer; `ro_client` is the admin."""
    if name == "public":
        return {}, *VISIBLE["public"]
    if name == "municipal_editor":
        cvr = _kbh_cvr(url)
        h = bearer(["municipal_editor"], subject="kbh-redaktoer", cvr=cvr, kommuner=[KBH])
        return h, VISIBLE[name][0], [cvr, KBH]
    return {}, *VISIBLE["national_admin"]


def _expected(url: str, envelope_sql: str, env_params: list, tile_srid: int, visible: str,
              vis_params: list) -> set[str]:
    rows = query(url, f"SELECT objekt_id::text FROM ly.t_6101_beskyt_rum WHERE "
                      f"ST_Intersects(ST_Transform(geometri, {tile_srid}), {envelope_sql}) "
                      f"AND {visible}", env_params + vis_params)
    return {r[0] for r in rows}


def _decode(content: bytes) -> list[dict]:
    layers = mapbox_vector_tile.decode(content, default_options={"y_coord_down": True})
    assert set(layers) == {"beskyttelsesrum"}
    layer = layers["beskyttelsesrum"]
    assert layer["extent"] == 4096
    return layer["features"]


def _get(client, path, headers, **params):
    return client.get(path, headers=headers, params=params)


@pytest.fixture
def client_for(ro_client, anon_client):
    """The admin is `ro_client`; the others sign in (or not) on `anon_client`."""
    def pick(viewer: str):
        return ro_client if viewer == "national_admin" else anon_client
    return pick


@pytest.mark.parametrize("viewer", ["public", "municipal_editor", "national_admin"])
@pytest.mark.parametrize("z", [11, 12])
def test_webmercator_tile_holds_exactly_what_the_viewer_may_see(shared_db_url, client_for,
                                                                viewer, z):
    t = WMQ.tile(LON, LAT, z)
    headers, visible, vis_params = _viewer(viewer, shared_db_url)
    expected = _expected(shared_db_url, "ST_TileEnvelope(%s, %s, %s)", [z, t.x, t.y], 3857,
                         visible, vis_params)
    assert expected, "the test tile must hold shelters"
    r = _get(client_for(viewer), f"{TILES}/WebMercatorQuad/{z}/{t.y}/{t.x}", headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == MVT
    features = _decode(r.content)
    ids = [f["properties"]["objekt_id"] for f in features]
    assert len(ids) == len(set(ids))
    assert set(ids) == expected
    # the public's tile has the public attributes only; signed in, all of them
    props = set().union(*(f["properties"] for f in features))
    if viewer == "public":
        assert not props & {"note", "cvr_kode", "off_kode", "noegle", "bruger_id"}
        assert r.headers["cache-control"].startswith("public")
    else:
        assert {"cvr_kode", "off_kode"} <= props
        assert r.headers["cache-control"].startswith("private")
    assert "Authorization" in r.headers["vary"]


def test_the_three_viewers_see_different_tiles(shared_db_url):
    t = WMQ.tile(LON, LAT, 11)
    sets = []
    for viewer in VISIBLE:
        _, visible, vis_params = _viewer(viewer, shared_db_url)
        sets.append(_expected(shared_db_url, "ST_TileEnvelope(%s, %s, %s)", [11, t.x, t.y],
                              3857, visible, vis_params))
    assert sets[0] < sets[1] < sets[2]  # public < København's editor < national admin


def test_points_sit_where_the_shelters_are(ro_client, shared_db_url):
    z = 12
    t = WMQ.tile(LON, LAT, z)
    b = WMQ.xy_bounds(t)
    r = ro_client.get(f"{TILES}/WebMercatorQuad/{z}/{t.y}/{t.x}")
    features = _decode(r.content)
    where = {row[0]: (row[1], row[2]) for row in query(
        shared_db_url, "SELECT objekt_id::text, ST_X(p), ST_Y(p) FROM (SELECT objekt_id, "
                       "ST_Transform(geometri, 3857) p FROM ly.t_6101_beskyt_rum) s")}
    for f in features[:25]:
        x, y = where[f["properties"]["objekt_id"]]
        px = (x - b.left) / (b.right - b.left) * 4096
        py = (b.top - y) / (b.top - b.bottom) * 4096
        assert f["geometry"]["type"] == "Point"
        gx, gy = f["geometry"]["coordinates"]
        assert abs(gx - px) <= 1 and abs(gy - py) <= 1


@pytest.mark.parametrize("viewer", ["public", "municipal_editor", "national_admin"])
def test_utm32_tile_holds_exactly_what_the_viewer_may_see(shared_db_url, client_for, viewer):
    level = 5
    span = 1638.4 / 2 ** level * 256  # SDFI's View1 grid, independent of the service's code
    col, row = int((724000 - 120000) // span), int((6500000 - 6176000) // span)
    env = [120000 + col * span, 6500000 - (row + 1) * span, 120000 + (col + 1) * span,
           6500000 - row * span]
    headers, visible, vis_params = _viewer(viewer, shared_db_url)
    expected = _expected(shared_db_url, "ST_MakeEnvelope(%s, %s, %s, %s, 25832)", env, 25832,
                         visible, vis_params)
    assert expected
    r = _get(client_for(viewer), f"{TILES}/UTM32ETRS89/{level}/{row}/{col}", headers)
    assert r.status_code == 200, r.text
    assert {f["properties"]["objekt_id"] for f in _decode(r.content)} == expected


def test_a_filtered_tile(ro_client, anon_client, shared_db_url):
    t = WMQ.tile(LON, LAT, 11)
    expected = _expected(shared_db_url, "ST_TileEnvelope(%s, %s, %s)", [11, t.x, t.y], 3857,
                         "pladser > 100 AND beskyt_rum_kode = 2", [])
    path = f"{TILES}/WebMercatorQuad/11/{t.y}/{t.x}"
    r = ro_client.get(path, params={"filter": "pladser > 100", "beskyt_rum_kode": 2})
    assert r.status_code == 200, r.text
    assert {f["properties"]["objekt_id"] for f in _decode(r.content)} == expected
    # the public may not filter on what it may not read
    r = anon_client.get(path, params={"filter": "note = 'x'"})
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"


def test_empty_tile_answers_204(ro_client, anon_client):
    t = WMQ.tile(5.0, 56.0, 10)  # the North Sea
    for c in (ro_client, anon_client):
        r = c.get(f"{TILES}/WebMercatorQuad/10/{t.y}/{t.x}")
        assert r.status_code == 204
        assert r.content == b""
        assert "max-age" in r.headers["cache-control"]
    # far from Denmark, where EPSG:25832 is not even defined
    r = ro_client.get(f"{TILES}/WebMercatorQuad/3/6/1")
    assert r.status_code == 204


def test_level_zero_holds_the_whole_register(ro_client, shared_db_url):
    n = query(shared_db_url, "SELECT count(*) FROM ly.t_6101_beskyt_rum")[0][0]
    r = ro_client.get(f"{TILES}/WebMercatorQuad/0/0/0")
    assert len(_decode(r.content)) == n


@pytest.mark.parametrize("path, status, field", [
    ("WebMercatorQuad/25/0/0", 404, "tileMatrix"),
    ("WebMercatorQuad/3/8/0", 404, "tileRow"),
    ("WebMercatorQuad/3/0/8", 404, "tileCol"),
    ("UTM32ETRS89/0/0/3", 404, "tileCol"),
    ("UTM32ETRS89/0/2/0", 404, "tileRow"),
    ("UTM32ETRS89/15/0/0", 404, "tileMatrix"),
    ("WebMercatorQuad/3/99999999999999999999/0", 404, "tileRow"),
    ("WebMercatorQuad/3/x/0", 400, "tileRow"),
    ("WebMercatorQuad/3/0/-1", 400, "tileCol"),
    ("NoSuchSet/3/0/0", 404, "tileMatrixSetId"),
])
def test_out_of_range_tiles_are_problems(ro_client, path, status, field):
    r = ro_client.get(f"{TILES}/{path}")
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["field"] == field


def test_bad_tile_parameters_are_400(ro_client):
    base = f"{TILES}/WebMercatorQuad/10/320/547"
    for params, field in [({"f": "png"}, "f"), ({"nonsense": "1"}, "nonsense"),
                          ({"filter": "pladser >"}, None), ({"asof": "yesterday"}, "asof"),
                          ({"datetime": "2020-13-01"}, "datetime")]:
        r = ro_client.get(base, params=params)
        assert r.status_code == 400, (params, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        if field:
            assert r.json()["errors"][0]["field"] == field
    assert ro_client.get("/collections/nope/tiles/WebMercatorQuad/0/0/0").status_code == 404


def test_if_none_match_answers_304(ro_client, anon_client):
    t = WMQ.tile(LON, LAT, 12)
    path = f"{TILES}/WebMercatorQuad/12/{t.y}/{t.x}"
    for c in (ro_client, anon_client):
        r = c.get(path)
        etag = r.headers["etag"]
        assert etag.startswith('"') and etag.endswith('"')
        again = c.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert c.get(path, headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
        assert c.get(path, headers={"If-None-Match": '"other"'}).status_code == 200
    # the public's tile and the admin's differ, and so do their tags
    assert ro_client.get(path).headers["etag"] != anon_client.get(path).headers["etag"]


def test_asof_before_the_register_is_an_empty_tile(ro_client):
    r = ro_client.get(f"{TILES}/WebMercatorQuad/0/0/0", params={"asof": "2001-01-01T00:00:00Z"})
    assert r.status_code == 204


def test_tile_matrix_sets(ro_client):
    r = ro_client.get("/tileMatrixSets")
    assert r.status_code == 200
    ids = {s["id"] for s in r.json()["tileMatrixSets"]}
    assert ids == {"WebMercatorQuad", "UTM32ETRS89"}
    for tms_id in ids:
        doc = ro_client.get(f"/tileMatrixSets/{tms_id}").json()
        tms = morecantile.TileMatrixSet.model_validate(doc)  # valid TMS 2.0 JSON
        assert tms.id == tms_id
    utm = ro_client.get("/tileMatrixSets/UTM32ETRS89").json()
    assert utm["crs"].endswith("/EPSG/0/25832")
    first, last = utm["tileMatrices"][0], utm["tileMatrices"][-1]
    assert first["cellSize"] == 1638.4 and last["cellSize"] == pytest.approx(0.1)
    assert first["pointOfOrigin"] == [120000.0, 6500000.0]
    assert (first["matrixWidth"], first["matrixHeight"]) == (3, 2)
    r = ro_client.get("/tileMatrixSets/Nope")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


def test_tilesets_and_tileset_metadata(ro_client, anon_client):
    coll = ro_client.get(COLLECTION).json()
    rels = {x["rel"]: x["href"] for x in coll["links"]}
    tilesets_url = rels["http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector"]
    r = ro_client.get(tilesets_url)
    assert r.status_code == 200
    sets = r.json()["tilesets"]
    assert {s["dataType"] for s in sets} == {"vector"}
    assert len(sets) == 2
    meta = ro_client.get(f"{TILES}/WebMercatorQuad", params={"filter": "pladser > 100"}).json()
    assert meta["tileMatrixSetURI"].endswith("/WebMercatorQuad")
    template = next(x for x in meta["links"] if x["rel"] == "item")
    assert template["templated"] and template["type"] == MVT
    assert "filter=pladser" in template["href"]
    assert meta["tiles"][0].count("{z}") == 1 and meta["minzoom"] == 0
    assert meta["vector_layers"][0]["id"] == "beskyttelsesrum"
    assert "note" in meta["vector_layers"][0]["fields"]
    t = WMQ.tile(LON, LAT, 11)
    href = (template["href"].replace("{tileMatrix}", "11").replace("{tileRow}", str(t.y))
            .replace("{tileCol}", str(t.x)))
    assert ro_client.get(href.replace("http://testserver", "")).status_code == 200
    public = anon_client.get(f"{TILES}/UTM32ETRS89").json()
    assert "note" not in public["vector_layers"][0]["fields"]
    assert anon_client.get(f"{TILES}/Nope").status_code == 404


def test_conformance_and_landing_page_name_tiles(ro_client):
    conf = ro_client.get("/conformance").json()["conformsTo"]
    for c in ("core", "tileset", "tilesets-list", "geodata-tilesets", "mvt", "oas30"):
        assert f"http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/{c}" in conf
    rels = {x["rel"] for x in ro_client.get("/").json()["links"]}
    assert "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes" in rels
    paths = ro_client.get("/openapi.json").json()["paths"]
    assert "/collections/{collection_id}/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/" \
           "{tileCol}" in paths
