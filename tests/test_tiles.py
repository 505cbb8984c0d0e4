"""Vector tiles (OGC API - Tiles, Mapbox Vector Tiles): a decoded tile holds exactly the
shelters the viewer may see inside the tile, with the viewer's attributes.

The expected sets are computed here from the database, independently of the service: the
tile envelope by PostGIS (`ST_TileEnvelope` for WebMercatorQuad) or from SDFI's published
UTM32 grid (origin 120000/6500000, 1638.4 m cells at level 0, halving), and the visibility
as the access rules state it for each viewer (tests/test_access.py has the full matrix).

A tile with more shelters than the service's threshold is clusters (layer
`beskyttelsesrum_klynger`, 64 x 64 cells per tile, `antal` and `pladser`); the tests lower
the threshold (`app.state.tile_max_points`) so the demo register has dense tiles, and
compute the expected clusters from the visible shelters' coordinates.
"""

from __future__ import annotations

import json

import mapbox_vector_tile
import morecantile
import orjson
import pytest

from datamodel import query as itemsquery
from datamodel import tiles as tilesmod
from tests.conftest import COLLECTION, ITEMS, bearer, query

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
    "national_reader": ("TRUE", []),
}
CLUSTERS = "beskyttelsesrum_klynger"
GRID, CELL = 64, 4096 // 64


def _viewer(name: str, url: str):
    """(headers, visibility SQL, its params) for a viewer; `ro_client` is the admin."""
    if name == "public":
        return {}, *VISIBLE["public"]
    if name == "municipal_editor":
        cvr = _kbh_cvr(url)
        h = bearer(["municipal_editor"], subject="kbh-redaktoer", cvr=cvr, kommuner=[KBH])
        return h, VISIBLE[name][0], [cvr, KBH]
    if name == "national_reader":
        return bearer(["national_reader"], subject="sams-laeser"), *VISIBLE[name]
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


def _layers(content: bytes) -> dict:
    return mapbox_vector_tile.decode(content, default_options={"y_coord_down": True})


def _in_tile(url: str, envelope_sql: str, env_params: list, tile_srid: int, visible: str,
             vis_params: list) -> list[tuple[float, float, int]]:
    """(x, y in the tile's CRS, pladser) of each visible shelter in the tile."""
    return query(url, f"SELECT ST_X(p), ST_Y(p), pladser FROM (SELECT ST_Transform(geometri, "
                      f"{tile_srid}) p, pladser FROM ly.t_6101_beskyt_rum WHERE {visible}) s "
                      f"WHERE ST_Intersects(p, {envelope_sql})", vis_params + env_params)


def _expected_clusters(rows, bounds) -> dict[tuple[int, int], tuple[int, int, float, float]]:
    """cell -> (antal, pladser, mean x, mean y in tile coordinates), computed here: a 64 x 64
    grid over the tile, y down, the right and bottom edges in the last cell."""
    left, bottom, right, top = bounds
    cells: dict[tuple[int, int], list] = {}
    for x, y, pladser in rows:
        px = (x - left) / (right - left) * 4096
        py = (top - y) / (top - bottom) * 4096
        cell = (min(int(px // CELL), GRID - 1), min(int(py // CELL), GRID - 1))
        cells.setdefault(cell, []).append((px, py, pladser))
    return {c: (len(v), sum(p for _, _, p in v), sum(px for px, _, _ in v) / len(v),
                sum(py for _, py, _ in v) / len(v)) for c, v in cells.items()}


def _check_clusters(content: bytes, rows, bounds) -> list[dict]:
    """The tile is clusters, and exactly the clusters of `rows`."""
    layers = _layers(content)
    assert set(layers) == {CLUSTERS}
    assert layers[CLUSTERS]["extent"] == 4096
    features = layers[CLUSTERS]["features"]
    assert sum(f["properties"]["antal"] for f in features) == len(rows)
    assert sum(f["properties"]["pladser"] for f in features) == sum(r[2] for r in rows)
    expected = _expected_clusters(rows, bounds)
    assert len(features) == len(expected) <= GRID * GRID
    left = dict(expected)
    for f in features:
        assert set(f["properties"]) == {"antal", "pladser"}
        assert f["geometry"]["type"] == "Point"
        gx, gy = f["geometry"]["coordinates"]
        assert 0 <= gx <= 4096 and 0 <= gy <= 4096
        p = f["properties"]
        match = [c for c, (n, pl, mx, my) in left.items()
                 if (n, pl) == (p["antal"], p["pladser"]) and abs(gx - mx) <= 1
                 and abs(gy - my) <= 1]
        assert match, f"cluster {f} is not one of the expected cells"
        del left[match[0]]
    return features


@pytest.fixture
def tile_limit(ro_client, anon_client):
    """Sets the point threshold of both shared clients, for this test only."""
    clients = (ro_client, anon_client)

    def set_limit(n: int) -> None:
        for c in clients:
            c.app.state.tile_max_points = n
    yield set_limit
    for c in clients:
        c.app.state.tile_max_points = None  # the default again


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
    # a dense tile carries the clusters instead: both layers are described
    klynger = meta["vector_layers"][1]
    assert klynger["id"] == "beskyttelsesrum_klynger"
    assert klynger["fields"] == {"antal": "Number", "pladser": "Number"}
    assert [x["id"] for x in meta["layers"]] == ["beskyttelsesrum", "beskyttelsesrum_klynger"]
    assert set(meta["layers"][1]["propertiesSchema"]["properties"]) == {"antal", "pladser"}
    t = WMQ.tile(LON, LAT, 11)
    href = (template["href"].replace("{tileMatrix}", "11").replace("{tileRow}", str(t.y))
            .replace("{tileCol}", str(t.x)))
    assert ro_client.get(href.replace("http://testserver", "")).status_code == 200
    public = anon_client.get(f"{TILES}/UTM32ETRS89").json()
    assert "note" not in public["vector_layers"][0]["fields"]
    assert public["vector_layers"][1]["fields"] == {"antal": "Number", "pladser": "Number"}
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


# --- dense tiles: clusters ---


def _wmq_tile(z: int):
    t = WMQ.tile(LON, LAT, z)
    b = WMQ.xy_bounds(t)
    return t, (b.left, b.bottom, b.right, b.top)


@pytest.mark.parametrize("viewer", ["public", "municipal_editor", "national_reader",
                                    "national_admin"])
def test_a_dense_tile_is_clusters_of_exactly_what_the_viewer_may_see(shared_db_url, client_for,
                                                                     tile_limit, viewer):
    z = 9
    t, bounds = _wmq_tile(z)
    headers, visible, vis_params = _viewer(viewer, shared_db_url)
    rows = _in_tile(shared_db_url, "ST_TileEnvelope(%s, %s, %s)", [z, t.x, t.y], 3857, visible,
                    vis_params)
    assert len(rows) > 10, "the test tile must be dense for the lowered threshold"
    tile_limit(10)
    r = _get(client_for(viewer), f"{TILES}/WebMercatorQuad/{z}/{t.y}/{t.x}", headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == MVT
    features = _check_clusters(r.content, rows, bounds)
    assert len(features) < len(rows)  # grouped, not one cluster per shelter
    cache = "public" if viewer == "public" else "private"
    assert r.headers["cache-control"].startswith(cache)


def test_clusters_never_count_what_the_viewer_may_not_see(shared_db_url, anon_client,
                                                          tile_limit):
    """The public and a national reader get different clusters of the same tile: each sums to
    the shelters that viewer may see (row-level security decides, as for points)."""
    z = 10
    t, _ = _wmq_tile(z)
    tile_limit(5)
    sums = {}
    for viewer in ("public", "national_reader"):
        headers, visible, vis_params = _viewer(viewer, shared_db_url)
        n = query(shared_db_url, f"SELECT count(*), sum(pladser) FROM ly.t_6101_beskyt_rum "
                                 f"WHERE ST_Intersects(ST_Transform(geometri, 3857), "
                                 f"ST_TileEnvelope(%s, %s, %s)) AND {visible}",
                  [z, t.x, t.y] + vis_params)[0]
        r = anon_client.get(f"{TILES}/WebMercatorQuad/{z}/{t.y}/{t.x}", headers=headers)
        assert r.status_code == 200, r.text
        features = _layers(r.content)[CLUSTERS]["features"]
        sums[viewer] = (sum(f["properties"]["antal"] for f in features),
                        sum(f["properties"]["pladser"] for f in features))
        assert sums[viewer] == tuple(n)
    assert sums["public"][0] < sums["national_reader"][0]


def test_the_threshold_is_inclusive(shared_db_url, ro_client, tile_limit):
    """A tile with exactly max_points shelters is points, unchanged; one more is clusters."""
    z = 12
    t, bounds = _wmq_tile(z)
    path = f"{TILES}/WebMercatorQuad/{z}/{t.y}/{t.x}"
    expected = _expected(shared_db_url, "ST_TileEnvelope(%s, %s, %s)", [z, t.x, t.y], 3857,
                         "TRUE", [])
    n = len(expected)
    assert n > 1
    default = ro_client.get(path)
    assert {f["properties"]["objekt_id"] for f in _decode(default.content)} == expected
    tile_limit(n)
    at = ro_client.get(path)
    assert at.status_code == 200
    assert at.content == default.content  # the same point tile as under the default threshold
    assert at.headers["etag"] == default.headers["etag"]
    tile_limit(n - 1)
    over = ro_client.get(path)
    assert over.status_code == 200
    rows = _in_tile(shared_db_url, "ST_TileEnvelope(%s, %s, %s)", [z, t.x, t.y], 3857, "TRUE",
                    [])
    _check_clusters(over.content, rows, bounds)
    assert over.headers["etag"] != default.headers["etag"]


def test_a_dense_utm32_tile_is_clusters(shared_db_url, ro_client, tile_limit):
    level = 5
    span = 1638.4 / 2 ** level * 256
    col, row = int((724000 - 120000) // span), int((6500000 - 6176000) // span)
    env = [120000 + col * span, 6500000 - (row + 1) * span, 120000 + (col + 1) * span,
           6500000 - row * span]
    rows = _in_tile(shared_db_url, "ST_MakeEnvelope(%s, %s, %s, %s, 25832)", env, 25832, "TRUE",
                    [])
    assert len(rows) > 3
    tile_limit(3)
    r = ro_client.get(f"{TILES}/UTM32ETRS89/{level}/{row}/{col}")
    assert r.status_code == 200, r.text
    _check_clusters(r.content, rows, tuple(env))


def test_a_filtered_dense_tile_clusters_only_the_matches(shared_db_url, ro_client, anon_client,
                                                         tile_limit):
    z = 8
    t, bounds = _wmq_tile(z)
    path = f"{TILES}/WebMercatorQuad/{z}/{t.y}/{t.x}"
    for client, visible in ((ro_client, "TRUE"), (anon_client, VISIBLE["public"][0])):
        rows = _in_tile(shared_db_url, "ST_TileEnvelope(%s, %s, %s)", [z, t.x, t.y], 3857,
                        f"{visible} AND pladser > 100 AND beskyt_rum_kode = 1", [])
        assert len(rows) > 2
        tile_limit(2)
        r = client.get(path, params={"filter": "pladser > 100", "beskyt_rum_kode": 1})
        assert r.status_code == 200, r.text
        _check_clusters(r.content, rows, bounds)


def test_an_empty_tile_stays_204_with_clusters_on(shared_db_url, ro_client, tile_limit):
    tile_limit(0)  # every tile with a shelter is clusters
    t = WMQ.tile(5.0, 56.0, 10)  # the North Sea
    assert ro_client.get(f"{TILES}/WebMercatorQuad/10/{t.y}/{t.x}").status_code == 204
    r = ro_client.get(f"{TILES}/WebMercatorQuad/0/0/0")
    assert r.status_code == 200
    n = query(shared_db_url, "SELECT count(*) FROM ly.t_6101_beskyt_rum")[0][0]
    features = _layers(r.content)[CLUSTERS]["features"]
    assert sum(f["properties"]["antal"] for f in features) == n


def test_a_shelter_on_a_tile_edge_counts_in_both_tiles(client, db_url):
    """Tiles include their edges, clusters too: a shelter exactly on the edge between two
    UTM32 tiles (a coordinate the grid states exactly) is counted once in each, in the last
    cell of the left tile and the first of the right."""
    level, col = 5, 45  # west of Copenhagen, where the grid's edge is a whole metre
    span = 1638.4 / 2 ** level * 256
    row = int((6500000 - 6176000) // span)
    edge = 120000 + col * span  # the left edge of tile `col`, the right edge of `col - 1`
    north = 6500000 - (row + 0.5) * span
    assert edge == 709824.0
    # and a neighbour 10 m inside the left tile, in the same cell there
    for x, pladser, noegle in ((edge, 4321, "flisekant"), (edge - 10, 1234, "ved-kanten")):
        body = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [x, north]},
                "properties": {"beskyt_rum_kode": 1, "pladser": pladser, "noegle": noegle}}
        r = client.post(ITEMS, content=orjson.dumps(body),
                        headers={"Content-Type": "application/geo+json",
                                 "Content-Crs": "<http://www.opengis.net/def/crs/EPSG/0/25832>"})
        assert r.status_code == 201, r.text
    stored = query(db_url, "SELECT ST_X(geometri), ST_Y(geometri) FROM ly.t_6101_beskyt_rum "
                           "WHERE noegle = 'flisekant'")
    assert stored == [(edge, north)], "the shelter must lie exactly on the tile edge"
    client.app.state.tile_max_points = 0
    for c in (col - 1, col):
        env = [120000 + c * span, 6500000 - (row + 1) * span, 120000 + (c + 1) * span,
               6500000 - row * span]
        rows = _in_tile(db_url, "ST_MakeEnvelope(%s, %s, %s, %s, 25832)", env, 25832, "TRUE",
                        [])
        assert (edge, north, 4321) in rows
        tile = client.get(f"{TILES}/UTM32ETRS89/{level}/{row}/{c}")
        assert tile.status_code == 200, tile.text
        # the expected clusters put it in the last column of the left tile (x = 4096, with
        # its neighbour) and the first of the right one (x = 0)
        features = _check_clusters(tile.content, rows, tuple(env))
        if c == col - 1:
            assert any(f["properties"]["pladser"] >= 4321 + 1234
                       and f["properties"]["antal"] >= 2 for f in features)


def _plan_nodes(node):
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


@pytest.mark.parametrize("public", [False, True])
def test_clusters_read_no_code_list(shared_db_url, public):
    """The count and the clusters read the view for the geometry and pladser only, so
    PostgreSQL removes the view's code-list joins there (the points keep them)."""
    import psycopg

    w = WMQ.tile(LON, LAT, 10)
    t = tilesmod.tile("WebMercatorQuad", "10", w.y, w.x)
    stmt, args = tilesmod.tile_sql(t, itemsquery.ItemsQuery(public=public), max_points=5)
    with psycopg.connect(shared_db_url) as conn:
        plan = conn.execute(b"EXPLAIN (FORMAT JSON) " + stmt.as_bytes(conn), args).fetchone()[0]
    plan = plan if isinstance(plan, list) else json.loads(plan)
    nodes = list(_plan_nodes(plan[0]["Plan"]))
    shelters = next(n for n in nodes if n.get("Subplan Name") == "CTE s")
    relations = {n["Relation Name"] for n in _plan_nodes(shelters) if "Relation Name" in n}
    assert relations == {"beskyttelsesrum"}
    everywhere = {n["Relation Name"] for n in nodes if "Relation Name" in n}
    assert any(r.startswith("d_") for r in everywhere)  # the points still join the code lists
