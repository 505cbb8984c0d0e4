"""Vector tiles (OGC API - Tiles Part 1, Mapbox Vector Tiles) of every theme's collection.

- `/tileMatrixSets`, `/tileMatrixSets/{tileMatrixSetId}`: the tiling schemes (TMS 2.0 JSON):
  WebMercatorQuad and UTM32ETRS89 (SDFI's Danish UTM32 cache; see datamodel/tiles.py).
- `/collections/{collectionId}/tiles`: a theme's tilesets; `…/tiles/{tileMatrixSetId}`: one
  tileset's metadata (OGC tileset metadata, and TileJSON 3.0 fields for map libraries), with
  the theme's layer(s) and the attributes the asking audience gets.
- `…/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/{tileCol}`: one tile,
  `application/vnd.mapbox-vector-tile` (datamodel/tiles.py). A point theme's tile is layer
  `theme.tile_layer`, a point per object with the audience's attributes, or, when the tile
  holds more than `LY_TILE_MAX_POINTS` objects (10 000), layer `theme.cluster_layer`
  instead: clusters on a 64 x 64 grid per tile with `antal` and the sum of the theme's first
  figure. An area theme's tile is layer `theme.tile_layer`: the polygons clipped to the tile.
  No tile carries personal data (a theme's `personal_fields`), for any audience. Built by
  PostGIS in the actor's transaction, so row-level security decides what is in it (and what
  a cluster counts), as for items. The items filters apply (`filter`, `filter-lang`,
  `filter-crs`, `?<queryable>=value`, `datetime` — for a theme with a validity period, the
  objects valid then —, `asof`).

An empty tile answers 204. A tile outside the set answers 404, a malformed row or column 400,
an unknown collection 404. Tiles carry `Cache-Control` (`public` for the public's tiles,
`private` once signed in), `Vary` on the credentials, and a strong `ETag` (a hash of the
tile); `If-None-Match` with it answers 304.
"""

from __future__ import annotations

import hashlib
import time
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from datamodel import crs as crsmod
from datamodel import query, tiles
from datamodel.themes import Theme
from service import params
from service.auth import current_actor
from service.db import acting, acting_as
from service.errors import Problem, bad_request
from service.http import JSON, json_response, link, url, with_links

router = APIRouter(tags=["Vektorfliser"])

MVT = "application/vnd.mapbox-vector-tile"
REL_TILING_SCHEME = "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme"
REL_GEODATA = "http://www.opengis.net/def/rel/ogc/1.0/geodata"
#: Seconds a tile may be reused. Short: edits and the national activation switch change
#: what a tile shows, and during an activation the public must see the change soon.
PUBLIC_MAX_AGE = 60
PRIVATE_MAX_AGE = 60
#: Responses differ by who asks; a shared cache must key on the credentials.
VARY = "Authorization, X-API-Key, Cookie"
#: Query parameters of a tile request besides the queryables (the items filters).
TILE_PARAMS = {"f", "filter", "filter-lang", "filter-crs", "datetime", "asof"}
#: For the tile's transaction only (service/db.py plans every other statement per request).
GENERIC_PLAN = "SET LOCAL plan_cache_mode = force_generic_plan"
OGC_TEMPLATE = "/{tileMatrix}/{tileRow}/{tileCol}"


def tile_path(theme: Theme) -> str:
    """The path of a theme's tilesets (`/collections/{collectionId}/tiles`)."""
    return f"/collections/{theme.collection_id}/tiles"


def _json_only(request: Request) -> None:
    f = request.query_params.get("f")
    if f is not None and f.lower() != "json":
        raise bad_request("f", "must be json")


def _tms(tms_id: str):
    found = tiles.TILE_MATRIX_SETS.get(tms_id)
    if found is None:
        known = ", ".join(tiles.TILE_MATRIX_SETS)
        raise Problem(404, f"Tile matrix set {tms_id!r} findes ikke (kendte: {known})",
                      kind="not-found", errors=[{"field": "tileMatrixSetId",
                                                 "detail": f"use one of {known}"}])
    return found


def _tms_summary(request: Request, tms_id: str) -> dict:
    tms = tiles.TILE_MATRIX_SETS[tms_id]
    out = {"id": tms_id, "title": tms.title, "crs": str(tms.crs.root),
           "links": [link(url(request, f"/tileMatrixSets/{tms_id}"), REL_TILING_SCHEME, JSON,
                          tms.title)]}
    if tms.uri:
        out["uri"] = tms.uri
    return out


@router.get("/tileMatrixSets", summary="Flisesæt-skemaer (tile matrix sets)",
            response_class=Response,
            responses={200: {"content": {JSON: {}}, "description": "The tiling schemes"}})
async def tile_matrix_sets(request: Request, f: str | None = Query(None)) -> Response:
    params.check_known(request, {"f"})
    _json_only(request)
    body = {"tileMatrixSets": [_tms_summary(request, i) for i in tiles.TILE_MATRIX_SETS],
            "links": [link(url(request, "/tileMatrixSets"), "self", JSON, "Tiling schemes")]}
    return json_response(body)


@router.get("/tileMatrixSets/{tileMatrixSetId}", summary="Et flisesæt-skema (TMS 2.0 JSON)",
            response_class=Response,
            responses={200: {"content": {JSON: {}}, "description": "The tile matrix set"},
                       404: {"description": "Unknown tile matrix set"}})
async def tile_matrix_set(request: Request, tileMatrixSetId: str,
                          f: str | None = Query(None)) -> Response:
    params.check_known(request, {"f"})
    _json_only(request)
    tms = _tms(tileMatrixSetId)
    body = tms.model_dump(mode="json", exclude_none=True)
    # TMS 2.0 JSON has no links of its own: the Link header says what it is (RFC 8288).
    self_link = link(url(request, f"/tileMatrixSets/{tileMatrixSetId}"), "self", JSON,
                     tms.title)
    return json_response(body, headers=with_links(None, [self_link]))


def _filters(request: Request, theme: Theme, public: bool) -> query.ItemsQuery:
    """The items filters of a tile or tileset request (the same parameters as items)."""
    qp = request.query_params
    return query.ItemsQuery(
        datetime_range=params.parse_datetime(qp.get("datetime")),
        asof=params.asof(request),
        equals=params.equals_filters(request, theme, public, TILE_PARAMS),
        cql=params.cql_filter(request, theme, public),
        public=public,
        theme=theme,
    )


def _check_params(request: Request, theme: Theme, public: bool) -> None:
    params.check_known(request, TILE_PARAMS | set(params.queryables(theme, public))
                       - {"geometri"})


def _filter_query(request: Request) -> str:
    """The filter parameters of this request, to carry into tile URL templates."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "f"]
    return "&" + urlencode(kept) if kept else ""


def _tileset_summary(request: Request, theme: Theme, tms_id: str) -> dict:
    tms = tiles.TILE_MATRIX_SETS[tms_id]
    path = f"{tile_path(theme)}/{tms_id}"
    out = {
        "title": f"{theme.title} ({tms_id})",
        "dataType": "vector",
        "crs": str(tms.crs.root),
        "links": [
            link(url(request, path), "self", JSON, f"Tileset {tms_id}"),
            link(url(request, f"/tileMatrixSets/{tms_id}"), REL_TILING_SCHEME, JSON, tms.title),
        ],
    }
    if tms.uri:
        out["tileMatrixSetURI"] = tms.uri
    return out


@router.get("/collections/{collection_id}/tiles", summary="Samlingens vektorflisesæt",
            response_class=Response,
            responses={200: {"content": {JSON: {}}, "description": "The tilesets"},
                       404: {"description": "No such collection"}})
async def tilesets(request: Request, collection_id: str, f: str | None = Query(None)) -> Response:
    theme = params.theme_of(collection_id)
    params.check_known(request, {"f"})
    _json_only(request)
    body = {"links": [
        link(url(request, tile_path(theme)), "self", JSON, "Tilesets"),
        link(url(request, f"/collections/{theme.collection_id}"), "collection", JSON,
             theme.title),
    ], "tilesets": [_tileset_summary(request, theme, i) for i in tiles.TILE_MATRIX_SETS]}
    return json_response(body)


def _mvt_type(field_type: str) -> str:
    return "Number" if field_type in ("integer", "number") else \
        "Boolean" if field_type == "boolean" else "String"


def _layer_fields(theme: Theme, public: bool) -> dict[str, str]:
    """The attributes of the theme's tile layer for an audience (never personal data), with
    their MVT value types; text twins are strings."""
    out: dict[str, str] = {}
    for name in tiles.tile_properties(theme, public):
        f = theme.fields_by_name.get(name)
        out[name] = _mvt_type(f.type) if f is not None else "String"
    return out


def _cluster_fields(theme: Theme) -> dict[str, str]:
    """The attributes of a cluster (layer `theme.cluster_layer`), the same for every
    audience: `antal` and the sum of the theme's figure."""
    return {name: "Number" for name in tiles.cluster_properties(theme)}


def _cluster_descriptions(theme: Theme) -> dict[str, str]:
    out = {tiles.COUNT: f"Antal objekter ({theme.title.lower()}) i klyngen"}
    figure = tiles.cluster_figure(theme)
    if figure:
        title = next((x.title for x in theme.figures if x.field == figure),
                     theme.fields_by_name[figure].title)
        out[figure] = f"{title} i alt i klyngens objekter"
    return out


def max_points(request: Request) -> int:
    """The most objects a tile shows as points; above it a point tile is clusters (an area
    tile simplified): the setting `LY_TILE_MAX_POINTS`, unless the app sets
    `app.state.tile_max_points` (the tests do)."""
    value = getattr(request.app.state, "tile_max_points", None)
    if value is None:
        value = request.app.state.settings.tile_max_points
    return int(value)


def _properties_schema(fields: dict[str, str],
                       descriptions: dict[str, str] | None = None) -> dict:
    props = {}
    for name, t in fields.items():
        props[name] = {"type": "number" if t == "Number" else t.lower()}
        if descriptions and name in descriptions:
            props[name]["description"] = descriptions[name]
    return {"type": "object", "properties": props}


#: Seconds the extent of a tileset's metadata is reused (it scans the current register).
_EXTENT_TTL = 60.0
#: Denmark (CRS84), the extent of an empty register.
_DENMARK = [7.7, 54.4, 15.4, 57.9]


async def _bbox(request: Request, actor, theme: Theme) -> list[float]:
    """The CRS84 extent of what the actor sees of a theme, cached for a minute per theme and
    scope."""
    state = request.app.state
    cache = getattr(state, "tile_extent_cache", None)
    if cache is None:
        cache = state.tile_extent_cache = {}
    key = (theme.collection_id, actor.scope_key)
    cached = cache.get(key)
    if cached and time.monotonic() - cached[0] < _EXTENT_TTL:
        return cached[1]
    async with acting_as(state.pool, actor) as conn:
        row = await (await conn.execute(query.extent_sql(actor.public, theme))).fetchone()
    xmin, ymin, xmax, ymax, _ = row
    bbox = [round(xmin, 5), round(ymin, 5), round(xmax, 5), round(ymax, 5)] \
        if xmin is not None else list(_DENMARK)
    if len(cache) > 1000:
        cache.clear()
    cache[key] = (time.monotonic(), bbox)
    return bbox


def _layers(theme: Theme, fields: dict[str, str], limit: int,
            ids: list[str]) -> tuple[list[dict], list[dict]]:
    """(OGC tileset `layers`, TileJSON `vector_layers`) of a theme's tiles."""
    lo, hi = ids[0], ids[-1]
    if theme.is_area:
        text = (f"{theme.title}: områderne, beskåret til flisen; i fliser med mere end {limit} "
                f"områder forenklet til en pixel ({tiles.DENSE_AREA_PIXELS} pr. flisebredde)")
        return ([{
            "id": theme.tile_layer, "title": theme.title, "dataType": "vector",
            "description": text, "geometryDimension": 2,
            "featureType": theme.collection_id, "minTileMatrix": lo, "maxTileMatrix": hi,
            "propertiesSchema": _properties_schema(fields),
        }], [{"id": theme.tile_layer, "description": text, "minzoom": int(lo),
              "maxzoom": int(hi), "fields": fields}])
    cluster_fields = _cluster_fields(theme)
    figure = tiles.cluster_figure(theme)
    point_text = f"{theme.title}: et punkt pr. objekt, i fliser med højst {limit} objekter"
    cluster_text = (f"{theme.title}, klynger i fliser med mere end {limit} objekter: et punkt "
                    f"pr. optaget celle i et gitter på {tiles.GRID} x {tiles.GRID} celler pr. "
                    "flise, i objekternes middelposition, med antal"
                    + (f" og {figure} i alt" if figure else ""))
    # A tile carries one of the two layers: points, or clusters when it holds more than
    # max_points objects (any tile matrix may, depending on the data and the filters).
    return ([{
        "id": theme.tile_layer, "title": theme.title, "dataType": "vector",
        "description": point_text, "geometryDimension": 0,
        "featureType": theme.collection_id, "minTileMatrix": lo, "maxTileMatrix": hi,
        "propertiesSchema": _properties_schema(fields),
    }, {
        "id": theme.cluster_layer, "title": f"{theme.title}, klynger", "dataType": "vector",
        "description": cluster_text, "geometryDimension": 0,
        "minTileMatrix": lo, "maxTileMatrix": hi,
        "propertiesSchema": _properties_schema(cluster_fields, _cluster_descriptions(theme)),
    }], [
        {"id": theme.tile_layer, "description": point_text, "minzoom": int(lo),
         "maxzoom": int(hi), "fields": fields},
        {"id": theme.cluster_layer, "description": cluster_text, "minzoom": int(lo),
         "maxzoom": int(hi), "fields": cluster_fields},
    ])


@router.get("/collections/{collection_id}/tiles/{tileMatrixSetId}",
            summary="Flisesættets metadata (med TileJSON-felter)", response_class=Response,
            responses={200: {"content": {JSON: {}}, "description": "Tileset metadata"},
                       400: {"description": "Invalid parameter"},
                       404: {"description": "No such collection or tile matrix set"}})
async def tileset(request: Request, collection_id: str, tileMatrixSetId: str,
                  f: str | None = Query(None)) -> Response:
    theme = params.theme_of(collection_id)
    tms = _tms(tileMatrixSetId)
    actor = await current_actor(request)
    _check_params(request, theme, actor.public)
    _json_only(request)
    _filters(request, theme, actor.public)  # the filters of the template are checked here
    extra = _filter_query(request)
    base = url(request, f"{tile_path(theme)}/{tileMatrixSetId}")
    ogc_template = f"{base}{OGC_TEMPLATE}?f=mvt{extra}"
    bbox = await _bbox(request, actor, theme)
    ids = [m.id for m in tms.tileMatrices]
    layers, vector_layers = _layers(theme, _layer_fields(theme, actor.public),
                                    max_points(request), ids)
    body = {
        **_tileset_summary(request, theme, tileMatrixSetId),
        "description": theme.description,
        "boundingBox": {"lowerLeft": bbox[:2], "upperRight": bbox[2:], "crs": crsmod.CRS84},
        "layers": layers,
        # TileJSON 3.0 (MapLibre, OpenLayers): the same tiles, z/y/x named as usual there.
        "tilejson": "3.0.0",
        "name": theme.title,
        "scheme": "xyz",
        "tiles": [f"{base}/{{z}}/{{y}}/{{x}}?f=mvt{extra}"],
        "minzoom": int(ids[0]),
        "maxzoom": int(ids[-1]),
        "bounds": bbox,
        "center": [round((bbox[0] + bbox[2]) / 2, 5), round((bbox[1] + bbox[3]) / 2, 5),
                   min(7, int(ids[-1]))],
        "vector_layers": vector_layers,
    }
    body["links"] += [
        {**link(ogc_template, "item", MVT, "Tiles (Mapbox Vector Tiles)"), "templated": True},
        link(url(request, f"/collections/{theme.collection_id}"), REL_GEODATA, JSON,
             theme.title),
    ]
    return json_response(body)


def _tile_index(value: str, name: str) -> int:
    if not (value.isascii() and value.isdigit()):
        raise bad_request(name, f"{value!r} is not a non-negative integer")
    return int(value)


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


@router.head("/collections/{collection_id}/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}"
             "/{tileCol}", include_in_schema=False)
@router.get("/collections/{collection_id}/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}"
            "/{tileCol}", summary="En vektorflise (Mapbox Vector Tile)", response_class=Response,
            responses={200: {"content": {MVT: {}}, "description": "The tile"},
                       204: {"description": "Nothing in the tile"},
                       304: {"description": "Not modified (If-None-Match)"},
                       400: {"description": "Invalid parameter"},
                       404: {"description": "No such tile matrix set or tile"}})
async def tile(
    request: Request,
    collection_id: str,
    tileMatrixSetId: str,
    tileMatrix: str,
    tileRow: str,
    tileCol: str,
    f: str | None = Query(None, description="mvt"),
    filter_: str | None = Query(None, alias="filter", description="CQL2 filter"),
    filter_lang: str | None = Query(None, alias="filter-lang"),
    filter_crs: str | None = Query(None, alias="filter-crs"),
    datetime_: str | None = Query(None, alias="datetime"),
    asof: str | None = Query(None, description="The register as it was at this instant"),
) -> Response:
    theme = params.theme_of(collection_id)
    _tms(tileMatrixSetId)
    actor = await current_actor(request)
    _check_params(request, theme, actor.public)
    if f is not None and f.lower() not in ("mvt", "pbf"):
        raise bad_request("f", "must be mvt")
    row, col = _tile_index(tileRow, "tileRow"), _tile_index(tileCol, "tileCol")
    try:
        t = tiles.tile(tileMatrixSetId, tileMatrix, row, col)
    except tiles.OutOfRange as exc:
        raise Problem(404, f"{exc.field}: {exc.detail}", kind="tile-out-of-range",
                      errors=[{"field": exc.field, "detail": exc.detail}]) from None
    stmt, args = tiles.tile_sql(t, _filters(request, theme, actor.public),
                                max_points=max_points(request))
    async with acting(request) as conn:
        # The tile statement needs no plan made for its values (the envelope, the box and
        # the count are init plans, computed when it runs), so it is planned once per
        # connection (the pool prepares statements it sees often) instead of per tile:
        # planning the view's code-list joins costs more than a small tile itself.
        await conn.execute(GENERIC_PLAN)
        data = (await (await conn.execute(stmt, args)).fetchone())[0]
    cache = (f"public, max-age={PUBLIC_MAX_AGE}" if actor.public
             else f"private, max-age={PRIVATE_MAX_AGE}")
    headers = {"Cache-Control": cache, "Vary": VARY}
    if not data:
        return Response(status_code=204, headers=headers)
    data = bytes(data)
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    headers["ETag"] = etag
    if _etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=MVT, headers=headers)
