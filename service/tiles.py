"""Vector tiles (OGC API - Tiles Part 1, Mapbox Vector Tiles) of the shelter collection.

- `/tileMatrixSets`, `/tileMatrixSets/{tileMatrixSetId}`: the tiling schemes (TMS 2.0 JSON):
  WebMercatorQuad and UTM32ETRS89 (SDFI's Danish UTM32 cache; see datamodel/tiles.py).
- `/collections/beskyttelsesrum/tiles`: the tilesets; `…/tiles/{tileMatrixSetId}`: one
  tileset's metadata (OGC tileset metadata, and TileJSON 3.0 fields for map libraries).
- `…/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/{tileCol}`: one tile,
  `application/vnd.mapbox-vector-tile`: layer `beskyttelsesrum`, a point per shelter with the
  audience's attributes, or, when the tile holds more than `LY_TILE_MAX_POINTS` shelters
  (10 000), layer `beskyttelsesrum_klynger` instead: clusters on
  a 64 x 64 grid per tile with `antal` and `pladser` (datamodel/tiles.py). Built by PostGIS in
  the actor's transaction, so row-level security decides what is in it (and what a cluster
  counts), as for items. The items filters apply (`filter`, `filter-lang`, `filter-crs`,
  `?<queryable>=value`, `datetime`, `asof`).

An empty tile answers 204. A tile outside the set answers 404, a malformed row or column 400.
Tiles carry `Cache-Control` (`public` for the public's tiles, `private` once signed in),
`Vary` on the credentials, and a strong `ETag` (a hash of the tile); `If-None-Match` with
it answers 304.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from datamodel import crs as crsmod
from datamodel import query, tiles
from datamodel.fields import PUBLIC_FIELDS, SHELTER_FIELDS
from service import collection, params
from service.auth import current_actor
from service.db import acting
from service.errors import Problem, bad_request
from service.features import _asof, _cql, _equals_filters, _require_collection
from service.http import JSON, json_response, link, url

router = APIRouter(tags=["Vector tiles"])

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
TILE_PATH = "/collections/" + collection.COLLECTION_ID + "/tiles"
#: For the tile's transaction only (service/db.py plans every other statement per request).
GENERIC_PLAN = "SET LOCAL plan_cache_mode = force_generic_plan"
OGC_TEMPLATE = "/{tileMatrix}/{tileRow}/{tileCol}"


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


@router.get("/tileMatrixSets", summary="Tile matrix sets (tiling schemes)",
            response_class=Response,
            responses={200: {"content": {JSON: {}}, "description": "The tiling schemes"}})
async def tile_matrix_sets(request: Request, f: str | None = Query(None)) -> Response:
    params.check_known(request, {"f"})
    _json_only(request)
    body = {"tileMatrixSets": [_tms_summary(request, i) for i in tiles.TILE_MATRIX_SETS],
            "links": [link(url(request, "/tileMatrixSets"), "self", JSON, "Tiling schemes")]}
    return json_response(body)


@router.get("/tileMatrixSets/{tileMatrixSetId}", summary="A tile matrix set (TMS 2.0 JSON)",
            response_class=Response,
            responses={200: {"content": {JSON: {}}, "description": "The tile matrix set"},
                       404: {"description": "Unknown tile matrix set"}})
async def tile_matrix_set(request: Request, tileMatrixSetId: str,
                          f: str | None = Query(None)) -> Response:
    params.check_known(request, {"f"})
    _json_only(request)
    body = _tms(tileMatrixSetId).model_dump(mode="json", exclude_none=True)
    return json_response(body)


def _filters(request: Request, public: bool) -> query.ItemsQuery:
    """The items filters of a tile or tileset request (the same parameters as items)."""
    qp = request.query_params
    return query.ItemsQuery(
        datetime_range=params.parse_datetime(qp.get("datetime")),
        asof=_asof(request),
        equals=_equals_filters(request, public),
        cql=_cql(request, public),
        public=public,
    )


def _filter_query(request: Request) -> str:
    """The filter parameters of this request, to carry into tile URL templates."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "f"]
    return "&" + urlencode(kept) if kept else ""


def _tileset_summary(request: Request, tms_id: str) -> dict:
    tms = tiles.TILE_MATRIX_SETS[tms_id]
    path = f"{TILE_PATH}/{tms_id}"
    out = {
        "title": f"{collection.TITLE} ({tms_id})",
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


@router.get("/collections/{collection_id}/tiles", summary="Vector tilesets of the collection",
            response_class=Response,
            responses={200: {"content": {JSON: {}}, "description": "The tilesets"},
                       404: {"description": "No such collection"}})
async def tilesets(request: Request, collection_id: str, f: str | None = Query(None)) -> Response:
    _require_collection(collection_id)
    params.check_known(request, {"f"})
    _json_only(request)
    body = {"links": [
        link(url(request, TILE_PATH), "self", JSON, "Tilesets"),
        link(url(request, f"/collections/{collection.COLLECTION_ID}"), "collection", JSON,
             collection.TITLE),
    ], "tilesets": [_tileset_summary(request, i) for i in tiles.TILE_MATRIX_SETS]}
    return json_response(body)


def _mvt_type(field_type: str) -> str:
    return "Number" if field_type in ("integer", "number") else \
        "Boolean" if field_type == "boolean" else "String"


def _layer_fields(public: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in PUBLIC_FIELDS if public else SHELTER_FIELDS:
        out[f.name] = _mvt_type(f.type)
        if f.twin:
            out[f.twin] = "String"
    return out


#: The attributes of a cluster (layer `beskyttelsesrum_klynger`), the same for every audience.
CLUSTER_FIELDS = {"antal": "Number", "pladser": "Number"}
CLUSTER_FIELD_DESCRIPTIONS = {
    "antal": "Antal beskyttelsesrum i klyngen",
    "pladser": "Pladser i alt i klyngens beskyttelsesrum",
}
CLUSTER_TITLE = "Beskyttelsesrum, klynger"


def max_points(request: Request) -> int:
    """The most shelters a tile shows as points; above it the tile is clusters: the setting
    `LY_TILE_MAX_POINTS`, unless the app sets `app.state.tile_max_points` (the tests do)."""
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


@router.get("/collections/{collection_id}/tiles/{tileMatrixSetId}",
            summary="Tileset metadata (with TileJSON fields)", response_class=Response,
            responses={200: {"content": {JSON: {}}, "description": "Tileset metadata"},
                       400: {"description": "Invalid parameter"},
                       404: {"description": "No such collection or tile matrix set"}})
async def tileset(request: Request, collection_id: str, tileMatrixSetId: str,
                  f: str | None = Query(None)) -> Response:
    _require_collection(collection_id)
    tms = _tms(tileMatrixSetId)
    actor = await current_actor(request)
    params.check_known(request, TILE_PARAMS | set(collection.queryables(actor.public))
                       - {"geometri"})
    _json_only(request)
    _filters(request, actor.public)  # the filters of the template are checked here already
    extra = _filter_query(request)
    base = url(request, f"{TILE_PATH}/{tileMatrixSetId}")
    ogc_template = f"{base}{OGC_TEMPLATE}?f=mvt{extra}"
    bbox = (await collection.extent(request, actor))["spatial"]["bbox"][0]
    ids = [m.id for m in tms.tileMatrices]
    fields = _layer_fields(actor.public)
    limit = max_points(request)
    cluster_text = (f"Klynger i fliser med mere end {limit} beskyttelsesrum: et punkt pr. "
                    f"optaget celle i et gitter på {tiles.GRID} x {tiles.GRID} celler pr. "
                    "flise, i beskyttelsesrummenes middelposition, med antal og pladser")
    body = {
        **_tileset_summary(request, tileMatrixSetId),
        "description": collection.DESCRIPTION,
        "boundingBox": {"lowerLeft": bbox[:2], "upperRight": bbox[2:], "crs": crsmod.CRS84},
        # A tile carries one of the two layers: points, or clusters when it holds more than
        # max_points shelters (any tile matrix may, depending on the data and the filters).
        "layers": [{
            "id": tiles.LAYER, "title": collection.TITLE, "dataType": "vector",
            "description": f"Et punkt pr. beskyttelsesrum, i fliser med højst {limit} "
                           "beskyttelsesrum",
            "geometryDimension": 0, "featureType": collection.COLLECTION_ID,
            "minTileMatrix": ids[0], "maxTileMatrix": ids[-1],
            "propertiesSchema": _properties_schema(fields),
        }, {
            "id": tiles.CLUSTER_LAYER, "title": CLUSTER_TITLE, "dataType": "vector",
            "description": cluster_text,
            "geometryDimension": 0,
            "minTileMatrix": ids[0], "maxTileMatrix": ids[-1],
            "propertiesSchema": _properties_schema(CLUSTER_FIELDS, CLUSTER_FIELD_DESCRIPTIONS),
        }],
        # TileJSON 3.0 (MapLibre, OpenLayers): the same tiles, z/y/x named as usual there.
        "tilejson": "3.0.0",
        "name": collection.TITLE,
        "scheme": "xyz",
        "tiles": [f"{base}/{{z}}/{{y}}/{{x}}?f=mvt{extra}"],
        "minzoom": int(ids[0]),
        "maxzoom": int(ids[-1]),
        "bounds": bbox,
        "center": [round((bbox[0] + bbox[2]) / 2, 5), round((bbox[1] + bbox[3]) / 2, 5),
                   min(7, int(ids[-1]))],
        "vector_layers": [
            {"id": tiles.LAYER, "description": collection.TITLE,
             "minzoom": int(ids[0]), "maxzoom": int(ids[-1]), "fields": fields},
            {"id": tiles.CLUSTER_LAYER, "description": cluster_text,
             "minzoom": int(ids[0]), "maxzoom": int(ids[-1]), "fields": CLUSTER_FIELDS},
        ],
    }
    body["links"] += [
        {**link(ogc_template, "item", MVT, "Tiles (Mapbox Vector Tiles)"), "templated": True},
        link(url(request, f"/collections/{collection.COLLECTION_ID}"), REL_GEODATA, JSON,
             collection.TITLE),
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
            "/{tileCol}", summary="A vector tile (Mapbox Vector Tile)", response_class=Response,
            responses={200: {"content": {MVT: {}}, "description": "The tile"},
                       204: {"description": "No shelter in the tile"},
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
    _require_collection(collection_id)
    _tms(tileMatrixSetId)
    actor = await current_actor(request)
    params.check_known(request, TILE_PARAMS | set(collection.queryables(actor.public))
                       - {"geometri"})
    if f is not None and f.lower() not in ("mvt", "pbf"):
        raise bad_request("f", "must be mvt")
    row, col = _tile_index(tileRow, "tileRow"), _tile_index(tileCol, "tileCol")
    try:
        t = tiles.tile(tileMatrixSetId, tileMatrix, row, col)
    except tiles.OutOfRange as exc:
        raise Problem(404, f"{exc.field}: {exc.detail}", kind="tile-out-of-range",
                      errors=[{"field": exc.field, "detail": exc.detail}]) from None
    stmt, args = tiles.tile_sql(t, _filters(request, actor.public),
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
