"""Vector tiles of every theme (datamodel/tiles.py, service/tiles.py), parametrized over the
registry: a point theme's tile holds its points (clusters when dense), an area theme's tile
the visible polygons clipped to the tile; no tile carries personal data, for any audience.

One module database: the demo register plus, for every theme, objects this module writes
through the theme's current view (as the database owner, acting as a test subject), placed
relative to one WebMercatorQuad tile `T` over Copenhagen: for each visibility (off_kode 1, 3,
2) objects inside T, one outside, and for area themes a polygon much larger than T crossing
into it, a tiny one, a MultiPolygon half in T and one valid only in 2020. Every personal
attribute holds a marker value, searched for in every decoded tile.

The expected sets are computed here with SQL on the current views under the access rules'
visibility for each viewer (the same statement of the rules as tests/test_tiles.py), the
tile envelope by `ST_TileEnvelope`, independently of the service's SQL.
"""

from __future__ import annotations

import dataclasses
from datetime import date

import mapbox_vector_tile
import morecantile
import psycopg
import pytest
from fastapi.testclient import TestClient
from shapely.geometry import shape

from datamodel import query as itemsquery
from datamodel import themes
from datamodel import tiles as tilesmod
from datamodel.codelists import load_codelists
from service.app import create_app
from tests.conftest import ADMIN_HEADERS, bearer, fresh_database, make_settings

WMQ = morecantile.tms.get("WebMercatorQuad")
Z = 12
T = WMQ.tile(12.55, 55.69, Z)
B = WMQ.xy_bounds(T)
W = B.right - B.left  # the tile's width (and height) in EPSG:3857 metres
EXTENT, BUFFER = 4096, 64
PERSON, PHONE = "Hemmelig Kontaktperson", 87654321
OPEN_FROM, PAST = date(2025, 1, 1), (date(2020, 1, 1), date(2020, 12, 31))

ALL = themes.all_themes()
POINT_THEMES = [t for t in ALL if not t.is_area]
AREA_THEMES = [t for t in ALL if t.is_area]
VIEWERS = ["public", "planner", "municipal_editor", "national_admin"]


def _ids(ts):
    return [t.collection_id for t in ts]


# --- the module's objects -------------------------------------------------------------------


def _box(x0: float, y0: float, size: float) -> str:
    """A square in EPSG:3857 with its top left corner at a fraction (x0, y0) of T (y down)."""
    left, top = B.left + x0 * W, B.top - y0 * W
    right, bottom = left + size * W, top - size * W
    return f"(({left} {top}, {right} {top}, {right} {bottom}, {left} {bottom}, {left} {top}))"


def _point(x: float, y: float) -> str:
    return f"POINT({B.left + x * W} {B.top - y * W})"


#: (marker, off_kode, geometry WKT in EPSG:3857, validity) per object of an area theme. The
#: big square's top left corner is T's centre; it reaches three tile widths right and down.
AREAS = [
    ("lille", 1, f"MULTIPOLYGON({_box(0.2, 0.2, 0.1)})", None),
    ("stor", 1, f"MULTIPOLYGON({_box(0.5, 0.5, 3.0)})", None),
    ("multi", 1, f"MULTIPOLYGON({_box(0.1, 0.7, 0.1)}, {_box(-0.5, 0.7, 0.1)})", None),
    ("bitte", 1, f"MULTIPOLYGON({_box(0.6, 0.2, 0.002)})", None),
    ("fortid", 1, f"MULTIPOLYGON({_box(0.3, 0.6, 0.1)})", PAST),
    ("udenfor", 1, f"MULTIPOLYGON({_box(-0.6, 0.3, 0.2)})", None),
    ("myndighed", 3, f"MULTIPOLYGON({_box(0.7, 0.1, 0.1)})", None),
    ("ejer", 2, f"MULTIPOLYGON({_box(0.1, 0.4, 0.1)})", None),
]
POINTS = [
    ("p1", 1, _point(0.31, 0.42)), ("p2", 1, _point(0.62, 0.71)),
    ("p3", 3, _point(0.45, 0.23)), ("p4", 2, _point(0.27, 0.83)),
    ("p5", 1, _point(-0.3, 0.5)),  # outside T
]


def _code(codelist: str) -> int:
    return min(c.kode for c in load_codelists()[codelist].values if c.aktiv)


def _record(theme, marker: str, off_kode: int, validity) -> dict:
    """A valid record for `theme`: every required attribute (its default, the first active
    code, its minimum), the label and figures set, personal data as the markers."""
    figures = {f.field for f in theme.figures}
    out: dict = {}
    for f in theme.writable_fields:
        if f.personal:
            out[f.name] = PHONE if f.type in ("integer", "number") else PERSON
        elif f.name == theme.label:
            out[f.name] = f"{theme.collection_id} {marker}"[:f.max_length or 200]
        elif f.name in figures:
            lo = f.minimum if f.minimum is not None else 0
            out[f.name] = min(lo + 17, f.maximum) if f.maximum is not None else lo + 17
        elif f.default is not None:
            out[f.name] = f.default
        elif not f.required:
            continue
        elif f.codelist:
            out[f.name] = _code(f.codelist)
        elif f.type in ("integer", "number"):
            out[f.name] = f.minimum if f.minimum is not None else 1
        elif f.type == "date":
            out[f.name] = OPEN_FROM
        elif f.type == "boolean":
            out[f.name] = False
        else:
            out[f.name] = marker
    out["off_kode"] = off_kode
    out["noegle"] = f"flise-{marker}"
    if theme.validity:
        start, end = theme.validity
        out[start], out[end] = validity or (OPEN_FROM, None)
    return out


def _insert(url: str, theme, marker: str, off_kode: int, wkt: str, validity=None) -> str:
    rec = _record(theme, marker, off_kode, validity)
    cols = ", ".join(rec)
    holes = ", ".join(["%s"] * len(rec))
    with psycopg.connect(url) as conn:
        conn.execute("SELECT set_config('ly.subjekt', 'flise-test', true)")
        row = conn.execute(
            f"INSERT INTO ly.{theme.current_view} ({cols}, geometri) VALUES ({holes}, "
            f"ST_Transform(ST_GeomFromText(%s, 3857), 25832)) RETURNING objekt_id::text",
            [*rec.values(), wkt]).fetchone()
    return row[0]


#: One connection per module database for the tests' own reads (as the owner: no row-level
#: security; each test states the visibility it expects).
_READERS: dict[str, psycopg.Connection] = {}


def query(url: str, stmt: str, params=None) -> list[tuple]:
    conn = _READERS.get(url)
    if conn is None:
        conn = _READERS[url] = psycopg.connect(url, autocommit=True)
    return conn.execute(stmt, params).fetchall()


@pytest.fixture(scope="module")
def url(template_db):
    for db in fresh_database(template_db, "ly_tt_"):
        for theme in ALL:
            if theme.is_area:
                for marker, off, wkt, validity in AREAS:
                    _insert(db, theme, marker, off, wkt, validity)
            else:
                for marker, off, wkt in POINTS:
                    _insert(db, theme, marker, off, wkt)
        yield db
        reader = _READERS.pop(db, None)
        if reader is not None:
            reader.close()


@pytest.fixture(scope="module")
def app_client(url):
    """The service on the module's database; signed in per request (no headers: public)."""
    with TestClient(create_app(make_settings(url))) as c:
        yield c


@pytest.fixture
def tile_limit(app_client):
    def set_limit(n: int) -> None:
        app_client.app.state.tile_max_points = n
    yield set_limit
    app_client.app.state.tile_max_points = None


def _owner(url: str, theme) -> tuple[int, int]:
    """(municipality, its CVR) of the module's off_kode 2 object of a theme: the municipal
    editor below is that municipality's."""
    return query(url, f"SELECT b.beliggenhedskommune, k.cvr_kode FROM ly.{theme.table} b "
                      f"JOIN ly.kommune k ON k.kommunekode = b.beliggenhedskommune "
                      f"WHERE b.noegle IN ('flise-p4', 'flise-ejer')")[0]


def _viewer(name: str, url: str, theme) -> tuple[dict, str, list]:
    """(headers, visibility SQL on the current view, its params), activation off."""
    if name == "public":
        return {}, "off_kode = 1", []
    if name == "planner":
        return bearer(["planner"], subject="planlaegger"), "off_kode IN (1, 3)", []
    if name == "municipal_editor":
        kommune, cvr = _owner(url, theme)
        return (bearer(["municipal_editor"], subject=f"redaktoer-{kommune}", cvr=cvr,
                       kommuner=[kommune]),
                "(off_kode IN (1, 3) OR cvr_kode = %s "
                "OR (beliggenhedskommune = %s AND off_kode <> 2))", [cvr, kommune])
    return ADMIN_HEADERS, "TRUE", []


def _expected(url: str, theme, visible: str, vis_params: list, extra: str = "TRUE",
              extra_params: list | None = None) -> dict[str, str]:
    """objekt_id -> noegle of the visible objects intersecting T."""
    rows = query(url, f"SELECT objekt_id::text, coalesce(noegle, '') FROM ly.{theme.current_view} "
                      f"WHERE ST_Intersects(ST_Transform(geometri, 3857), "
                      f"ST_TileEnvelope(%s, %s, %s)) AND {visible} AND {extra}",
                 [Z, T.x, T.y, *vis_params, *(extra_params or [])])
    return dict(rows)


def _tile(client, theme, headers=None, level=Z, row=None, col=None, **params):
    path = (f"/collections/{theme.collection_id}/tiles/WebMercatorQuad/{level}/"
            f"{T.y if row is None else row}/{T.x if col is None else col}")
    return client.get(path, headers=headers or {}, params=params)


def _decode(content: bytes) -> dict:
    return mapbox_vector_tile.decode(content, default_options={"y_coord_down": True})


def _no_personal_data(theme, layers: dict) -> None:
    personal = {f.name for f in theme.personal_fields} | \
        {f.twin for f in theme.personal_fields if f.twin}
    for layer in layers.values():
        for f in layer["features"]:
            assert not set(f["properties"]) & personal, f["properties"]
            for v in f["properties"].values():
                assert v != PHONE and PERSON not in str(v), f["properties"]


def _features(theme, r, layer: str | None = None) -> list[dict]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    layers = _decode(r.content)
    layer = layer or theme.tile_layer
    assert set(layers) == {layer}
    assert layers[layer]["extent"] == EXTENT
    _no_personal_data(theme, layers)
    return layers[layer]["features"]


# --- every theme ----------------------------------------------------------------------------


@pytest.mark.parametrize("viewer", VIEWERS)
@pytest.mark.parametrize("theme", ALL, ids=_ids(ALL))
def test_a_tile_holds_exactly_what_the_viewer_may_see(url, app_client, theme, viewer):
    headers, visible, vis_params = _viewer(viewer, url, theme)
    expected = _expected(url, theme, visible, vis_params)
    mine = {k for k, v in expected.items() if v.startswith("flise-")}
    assert mine, "the module's objects must be in the tile"
    r = _tile(app_client, theme, headers)
    features = _features(theme, r)
    ids = [f["properties"]["objekt_id"] for f in features]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(expected)
    kind = "Polygon" if theme.is_area else "Point"
    assert {f["geometry"]["type"].removeprefix("Multi") for f in features} == {kind}
    # the audience's attributes, without personal data: the public's subset for the public
    props = set().union(*(f["properties"] for f in features))
    allowed = set(theme.property_columns(viewer == "public"))
    assert props <= allowed
    assert "objekt_id" in props
    if viewer == "public":
        assert r.headers["cache-control"].startswith("public")
        assert "off_kode" not in props
    else:
        assert r.headers["cache-control"].startswith("private")
        assert {"off_kode", "cvr_kode"} <= props


def test_every_audience_differs(url):
    """The viewers above see different sets (so the test above can tell them apart)."""
    for theme in ALL:
        sets = [frozenset(_expected(url, theme, *_viewer(v, url, theme)[1:])) for v in VIEWERS]
        assert sets[0] < sets[1] < sets[2] <= sets[3] and sets[0] < sets[3], theme


@pytest.mark.parametrize("theme", ALL, ids=_ids(ALL))
def test_personal_data_is_in_the_view_but_in_no_tile(url, app_client, theme, tile_limit):
    """Where the authorities' view shows the contact data (signed in as the national
    administrator), the tile still has none of it, as points, clusters or polygons."""
    if theme.personal_fields:
        name = theme.personal_fields[0].name
        with psycopg.connect(url) as conn:
            conn.execute("SELECT set_config('ly.roller', 'national_admin', true)")
            shown = conn.execute(f"SELECT count(*) FROM ly.{theme.current_view} WHERE {name} "
                                 f"IS NOT NULL AND noegle LIKE 'flise-%%'").fetchone()[0]
        assert shown == len(AREAS if theme.is_area else POINTS)
    for limit in (None, 0):
        tile_limit(limit)
        r = _tile(app_client, theme, ADMIN_HEADERS)
        assert r.status_code == 200
        _no_personal_data(theme, _decode(r.content))
    meta = app_client.get(f"/collections/{theme.collection_id}/tiles/WebMercatorQuad",
                          headers=ADMIN_HEADERS).json()
    names = set().union(*(x["fields"] for x in meta["vector_layers"]))
    assert not names & {f.name for f in theme.personal_fields}
    # a signed-in authority may filter on what it may read; the public may not
    if theme.personal_fields:
        f = theme.personal_fields[0]
        value = PHONE if f.type in ("integer", "number") else PERSON
        r = _tile(app_client, theme, ADMIN_HEADERS, **{f.name: value})
        assert r.status_code == 200
        assert _tile(app_client, theme, **{f.name: value}).status_code == 400


@pytest.mark.parametrize("theme", ALL, ids=_ids(ALL))
def test_tileset_metadata_names_the_themes_layers(app_client, theme):
    base = f"/collections/{theme.collection_id}/tiles"
    sets = app_client.get(base).json()["tilesets"]
    assert len(sets) == 2 and all(s["title"].startswith(theme.title) for s in sets)
    for viewer_headers, public in (({}, True), (ADMIN_HEADERS, False)):
        meta = app_client.get(f"{base}/UTM32ETRS89", headers=viewer_headers).json()
        assert meta["name"] == theme.title
        expected_layers = [theme.tile_layer] if theme.is_area else \
            [theme.tile_layer, theme.cluster_layer]
        assert [x["id"] for x in meta["vector_layers"]] == expected_layers
        assert [x["id"] for x in meta["layers"]] == expected_layers
        fields = meta["vector_layers"][0]["fields"]
        assert set(fields) == set(theme.property_columns(public)) - \
            {f.name for f in theme.personal_fields}
        assert meta["layers"][0]["geometryDimension"] == (2 if theme.is_area else 0)
        if not theme.is_area:
            clusters = meta["vector_layers"][1]["fields"]
            figure = [f.field for f in theme.figures if theme.fields_by_name[f.field].public]
            assert clusters == {"antal": "Number", **({figure[0]: "Number"} if figure else {})}
        template = next(x for x in meta["links"] if x["rel"] == "item")["href"]
        assert template.startswith(f"http://testserver{base}/UTM32ETRS89/")


@pytest.mark.parametrize("theme", ALL, ids=_ids(ALL))
def test_an_unreadable_or_unknown_filter_is_400_and_asof_before_is_empty(app_client, theme):
    r = _tile(app_client, theme, filter="no_such_attribute = 1")
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    r = _tile(app_client, theme, ADMIN_HEADERS, no_such_attribute="1")
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "no_such_attribute"
    r = _tile(app_client, theme, ADMIN_HEADERS, asof="2001-01-01T00:00:00Z")
    assert r.status_code == 204


def test_an_unknown_collection_is_404(app_client):
    for path in ("/collections/ingen/tiles", "/collections/ingen/tiles/WebMercatorQuad",
                 "/collections/ingen/tiles/WebMercatorQuad/0/0/0"):
        r = app_client.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"] == "application/problem+json"


# --- point themes ---------------------------------------------------------------------------


@pytest.mark.parametrize("theme", POINT_THEMES, ids=_ids(POINT_THEMES))
def test_points_sit_where_the_objects_are(url, app_client, theme):
    r = _tile(app_client, theme, ADMIN_HEADERS)
    at = {f["properties"]["objekt_id"]: f["geometry"]["coordinates"]
          for f in _features(theme, r)}
    rows = query(url, f"SELECT objekt_id::text, ST_X(p), ST_Y(p) FROM (SELECT objekt_id, "
                      f"ST_Transform(geometri, 3857) p FROM ly.{theme.current_view} "
                      f"WHERE noegle LIKE 'flise-p%%') s")
    inside = [r for r in rows if B.left <= r[1] <= B.right and B.bottom <= r[2] <= B.top]
    assert len(inside) == 4
    for oid, x, y in inside:
        gx, gy = at[oid]
        assert abs(gx - (x - B.left) / W * EXTENT) <= 1
        assert abs(gy - (B.top - y) / W * EXTENT) <= 1


@pytest.mark.parametrize("viewer", ["public", "national_admin"])
@pytest.mark.parametrize("theme", POINT_THEMES, ids=_ids(POINT_THEMES))
def test_a_dense_point_tile_is_clusters_with_the_themes_figure(url, app_client, tile_limit,
                                                               theme, viewer):
    headers, visible, vis_params = _viewer(viewer, url, theme)
    figure = next((f.field for f in theme.figures if theme.fields_by_name[f.field].public),
                  None)
    total = f"coalesce(sum({figure}), 0)" if figure else "0"
    n, s = query(url, f"SELECT count(*), {total} FROM ly.{theme.current_view} "
                      f"WHERE ST_Intersects(ST_Transform(geometri, 3857), "
                      f"ST_TileEnvelope(%s, %s, %s)) AND {visible}",
                 [Z, T.x, T.y, *vis_params])[0]
    tile_limit(n - 1)
    features = _features(theme, _tile(app_client, theme, headers), theme.cluster_layer)
    assert all(set(f["properties"]) <= {"antal", figure} for f in features)
    assert sum(f["properties"]["antal"] for f in features) == n
    assert sum(f["properties"].get(figure, 0) for f in features) == s
    assert all(f["geometry"]["type"] == "Point" for f in features)
    tile_limit(n)  # inclusive: exactly n objects are still points
    assert len(_features(theme, _tile(app_client, theme, headers))) == n


# --- area themes ----------------------------------------------------------------------------


def _area_geometries(url: str, theme) -> dict[str, str]:
    """noegle -> objekt_id of the module's objects."""
    return dict(query(url, f"SELECT noegle, objekt_id::text FROM ly.{theme.current_view} "
                           f"WHERE noegle LIKE 'flise-%%'"))


def _label(url: str, theme, marker: str) -> str:
    return query(url, f"SELECT {theme.label} FROM ly.{theme.current_view} WHERE noegle = %s",
                 [f"flise-{marker}"])[0][0]


@pytest.mark.parametrize("theme", AREA_THEMES, ids=_ids(AREA_THEMES))
def test_area_tiles_clip_polygons_to_the_tile(url, app_client, theme):
    """Every polygon is clipped to the tile and its buffer, and a polygon larger than the tile
    keeps the area of its intersection with the buffered tile envelope."""
    ids = _area_geometries(url, theme)
    features = _features(theme, _tile(app_client, theme, ADMIN_HEADERS))
    by_id = {f["properties"]["objekt_id"]: f for f in features}
    assert ids["flise-stor"] in by_id and ids["flise-udenfor"] not in by_id
    lo, hi = -BUFFER, EXTENT + BUFFER
    for f in features:
        g = shape(f["geometry"])
        assert g.is_valid, f["properties"]["objekt_id"]
        x0, y0, x1, y1 = g.bounds
        assert lo <= x0 and x1 <= hi and lo <= y0 and y1 <= hi
    # the big square: clipped at the buffer (its own corner is T's centre)
    big = shape(by_id[ids["flise-stor"]]["geometry"])
    assert big.bounds == pytest.approx((EXTENT / 2, EXTENT / 2, hi, hi), abs=1)
    unit = W / EXTENT  # EPSG:3857 metres per tile unit
    for margin, tile_area in ((BUFFER * unit, big.area), (0.0, big.intersection(
            shape({"type": "Polygon", "coordinates": [[(0, 0), (EXTENT, 0), (EXTENT, EXTENT),
                                                       (0, EXTENT), (0, 0)]]})).area)):
        expected = query(url, f"SELECT ST_Area(ST_Intersection(ST_Transform(geometri, 3857), "
                              f"ST_Expand(ST_TileEnvelope(%s, %s, %s), %s))) "
                              f"FROM ly.{theme.current_view} WHERE objekt_id = %s",
                         [Z, T.x, T.y, margin, ids["flise-stor"]])[0][0]
        assert tile_area * unit ** 2 == pytest.approx(expected, rel=0.01)
        assert expected < query(url, f"SELECT ST_Area(ST_Transform(geometri, 3857)) FROM "
                                     f"ly.{theme.current_view} WHERE objekt_id = %s",
                                [ids["flise-stor"]])[0][0] / 4
    # the MultiPolygon: only its part in the tile is drawn
    multi = shape(by_id[ids["flise-multi"]]["geometry"])
    assert multi.bounds[0] >= 0 and multi.area == pytest.approx((0.1 * EXTENT) ** 2, rel=0.02)
    # a small square inside the tile is drawn whole, where it is
    small = shape(by_id[ids["flise-lille"]]["geometry"])
    assert small.bounds == pytest.approx((0.2 * EXTENT, 0.2 * EXTENT, 0.3 * EXTENT,
                                          0.3 * EXTENT), abs=1)


@pytest.mark.parametrize("theme", AREA_THEMES, ids=_ids(AREA_THEMES))
def test_area_tiles_in_utm32_hold_the_visible_polygons(url, app_client, theme):
    level = 6
    span = 1638.4 / 2 ** level * 256  # SDFI's View1 grid, independent of the service's code
    x, y = query(url, f"SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_Centroid(geometri) c FROM "
                      f"ly.{theme.current_view} WHERE noegle = 'flise-lille') s")[0]
    col, row = int((x - 120000) // span), int((6500000 - y) // span)
    env = [120000 + col * span, 6500000 - (row + 1) * span, 120000 + (col + 1) * span,
           6500000 - row * span]
    expected = {r[0] for r in query(
        url, f"SELECT objekt_id::text FROM ly.{theme.current_view} WHERE off_kode = 1 AND "
             f"ST_Intersects(geometri, ST_MakeEnvelope(%s, %s, %s, %s, 25832))", env)}
    assert _area_geometries(url, theme)["flise-lille"] in expected
    r = app_client.get(f"/collections/{theme.collection_id}/tiles/UTM32ETRS89/{level}/{row}/"
                       f"{col}")
    assert {f["properties"]["objekt_id"] for f in _features(theme, r)} == expected


@pytest.mark.parametrize("theme", AREA_THEMES, ids=_ids(AREA_THEMES))
def test_area_tiles_filter_on_validity_and_attributes(url, app_client, theme):
    ids = _area_geometries(url, theme)

    def tile_ids(**params):
        r = _tile(app_client, theme, **params)
        return set() if r.status_code == 204 else \
            {f["properties"]["objekt_id"] for f in _features(theme, r)}

    assert ids["flise-fortid"] in tile_ids()  # no datetime: every current object
    now = tile_ids(datetime="2026-06-01T12:00:00Z")
    assert ids["flise-fortid"] not in now and ids["flise-stor"] in now
    start, end = theme.validity
    assert now == set(_expected(url, theme, "off_kode = 1", [],
                                f"({end} IS NULL OR {end} >= DATE '2026-06-01') AND "
                                f"({start} IS NULL OR {start} <= DATE '2026-06-01')"))
    then = tile_ids(datetime="2020-06-01T12:00:00Z")
    assert ids["flise-fortid"] in then and ids["flise-stor"] not in then
    label = theme.label
    assert tile_ids(filter=f"{label} = '{_label(url, theme, 'lille')}'") == {ids["flise-lille"]}
    assert tile_ids(**{label: _label(url, theme, "stor")}) == {ids["flise-stor"]}
    # the public reads the public attributes only, and may filter on nothing else
    assert _tile(app_client, theme, filter="off_kode = 3").status_code == 400
    figure = next((f.field for f in theme.figures if theme.fields_by_name[f.field].public),
                  None)
    if figure:
        assert tile_ids(filter=f"{figure} > 100000000") == set()
        some = tile_ids(filter=f"{figure} >= 0")
        assert some == set(_expected(url, theme, "off_kode = 1", [], f"{figure} >= 0"))
        assert ids["flise-lille"] in some


@pytest.mark.parametrize("theme", AREA_THEMES, ids=_ids(AREA_THEMES))
def test_a_dense_area_tile_is_simplified_not_clustered(url, app_client, tile_limit, theme):
    """Above the threshold an area tile still draws its polygons, simplified to a pixel of
    a 256-pixel rendering: the sub-pixel square vanishes, the others stay, the big one keeps
    its area."""
    ids = _area_geometries(url, theme)
    normal = {f["properties"]["objekt_id"]: f
              for f in _features(theme, _tile(app_client, theme, ADMIN_HEADERS))}
    assert ids["flise-bitte"] in normal  # 8 tile units wide: drawn at full resolution
    tile_limit(0)
    dense = {f["properties"]["objekt_id"]: f
             for f in _features(theme, _tile(app_client, theme, ADMIN_HEADERS))}
    assert ids["flise-bitte"] not in dense
    assert set(dense) <= set(normal)
    assert {ids[k] for k in ("flise-stor", "flise-lille", "flise-multi", "flise-fortid")} \
        <= set(dense)
    for oid in (ids["flise-stor"], ids["flise-lille"]):
        assert shape(dense[oid]["geometry"]).area == pytest.approx(
            shape(normal[oid]["geometry"]).area, rel=0.02)


@pytest.mark.parametrize("theme", POINT_THEMES, ids=_ids(POINT_THEMES))
def test_clusters_of_a_theme_without_figures_only_count(url, theme):
    """A point theme without figures clusters with `antal` alone (the statement run here
    directly, as the owner: every object in the tile)."""
    bare = dataclasses.replace(theme, figures=())
    assert tilesmod.cluster_properties(bare) == ["antal"]
    t = tilesmod.tile("WebMercatorQuad", str(Z), T.y, T.x)
    stmt, args = tilesmod.tile_sql(t, itemsquery.ItemsQuery(theme=bare), max_points=0)
    with psycopg.connect(url) as conn:
        data = conn.execute(stmt, args).fetchone()[0]
    layers = _decode(bytes(data))
    assert set(layers) == {theme.cluster_layer}
    features = layers[theme.cluster_layer]["features"]
    assert all(set(f["properties"]) == {"antal"} for f in features)
    assert sum(f["properties"]["antal"] for f in features) == len(
        _expected(url, theme, "TRUE", []))
