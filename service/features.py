"""Reading shelters: items, one item, its history (OGC API - Features Parts 1, 2 and 3)."""

from __future__ import annotations

from datetime import date, datetime, timezone

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from datamodel import crs as crsmod
from datamodel import query
from datamodel.cql2sql import FilterError, parse_filter, to_sql
from datamodel.fields import FIELDS_BY_NAME
from service import collection, exports, params
from service.auth import current_actor
from service.db import acting
from service.errors import bad_request, not_found
from service.http import GEOJSON, HTML, JSON, html_response, link, url

router = APIRouter(tags=["Beskyttelsesrum"])

ITEMS_PARAMS = {"f", "limit", "bbox", "bbox-crs", "crs", "datetime", "filter", "filter-lang",
                "filter-crs", "cursor", "asof"}
ITEM_PARAMS = {"f", "crs", "asof"}


def _require_collection(collection_id: str) -> None:
    params.theme_of(collection_id)


def _equals_filters(request: Request, public: bool) -> dict[str, object]:
    return params.equals_filters(request, params.theme_of("beskyttelsesrum"), public,
                                 ITEMS_PARAMS)


def _cql(request: Request, public: bool) -> tuple | None:
    return params.cql_filter(request, params.theme_of("beskyttelsesrum"), public)


_asof = params.asof


def _page_links(request: Request, next_cursor) -> list[dict]:
    path = f"/collections/{collection.COLLECTION_ID}/items"
    keep = {k: v for k, v in request.query_params.items() if k not in ("f", "cursor")}
    current = request.query_params.get("cursor")
    links = [
        link(url(request, path, **keep, cursor=current, f="json"), "self", GEOJSON, "Denne side"),
        link(url(request, path, **keep, cursor=current, f="html"), "alternate", HTML, "Som HTML"),
        link(url(request, f"/collections/{collection.COLLECTION_ID}"), "collection", JSON,
             collection.TITLE),
    ]
    if next_cursor is not None:
        links.append(link(url(request, path, **keep, cursor=str(next_cursor), f="json"),
                          "next", GEOJSON, "Næste side"))
    if current is not None:
        links.append(link(url(request, path, **keep, f="json"), "first", GEOJSON, "Første side"))
    return links


@router.head("/collections/{collection_id}/items", include_in_schema=False)
@router.get(
    "/collections/{collection_id}/items",
    summary="Beskyttelsesrum (features)",
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}, HTML: {}}, "description": "A FeatureCollection"},
               400: {"description": "Invalid parameter"}, 404: {"description": "No collection"}},
)
async def items(
    request: Request,
    collection_id: str,
    f: str | None = Query(None, description="json or html (a page); geojson, gpkg, csv, xlsx "
                          "or shp: an export of the whole filtered result (no limit, cursor)"),
    limit: int | None = Query(None, ge=1, description="Page size; values above the maximum "
                              "(10000) are clamped to it", json_schema_extra={"maximum": 10000}),
    bbox: str | None = Query(None, description="minx,miny,maxx,maxy in bbox-crs (CRS84)"),
    bbox_crs: str | None = Query(None, alias="bbox-crs"),
    crs: str | None = Query(None, description="Output CRS URI"),
    datetime_: str | None = Query(None, alias="datetime",
                                  description="Instant or interval; matches versions valid then"),
    filter_: str | None = Query(None, alias="filter", description="CQL2 filter"),
    filter_lang: str | None = Query(None, alias="filter-lang",
                                    description="cql2-text (default) or cql2-json"),
    filter_crs: str | None = Query(None, alias="filter-crs"),
    cursor: str | None = Query(None, description="Keyset cursor from a next link"),
    asof: str | None = Query(None, description="Read the register as it was at this instant"),
) -> Response:
    _require_collection(collection_id)
    settings = request.app.state.settings
    actor = await current_actor(request)
    params.drop_blank_for_html(request)
    params.check_known(request,
                       ITEMS_PARAMS | set(collection.queryables(actor.public)) - {"geometri"})
    fmt = params.output_format(request, exports=True)
    qp = request.query_params  # read here, not from the arguments: blank form fields dropped
    out = params.parse_crs(qp.get("crs"), "crs")
    q = query.ItemsQuery(
        out=out,
        limit=params.parse_limit(qp.get("limit"), settings.default_limit, settings.max_limit),
        after=params.parse_uuid(qp.get("cursor"), "cursor"),
        bbox=params.parse_bbox(qp.get("bbox")),
        bbox_crs=params.parse_crs(qp.get("bbox-crs"), "bbox-crs"),
        datetime_range=params.parse_datetime(qp.get("datetime")),
        asof=_asof(request),
        equals=_equals_filters(request, actor.public),
        cql=_cql(request, actor.public),
        public=actor.public,
    )
    if fmt in params.EXPORT_FORMATS:  # the whole filtered result as a file
        return await exports.export(request, q, fmt)
    stmt, args = query.items_sql(q)
    async with acting(request) as conn:
        rows = await (await conn.execute(stmt, args)).fetchall()
        matched = None
        if q.after is None:
            if len(rows) <= q.limit:
                matched = len(rows)
            else:
                count_stmt, count_args = query.count_sql(q, settings.count_cap)
                n = (await (await conn.execute(count_stmt, count_args)).fetchone())[0]
                matched = n if n <= settings.count_cap else None
    page, more = rows[: q.limit], len(rows) > q.limit
    next_cursor = page[-1][1] if more else None
    links = _page_links(request, next_cursor)
    headers = {"Content-Crs": crsmod.header(out)}
    if fmt == params.FORMAT_HTML:
        features = [orjson.loads(r[0]) for r in page]
        return html_response(request, "items.html", headers=headers, features=features,
                             links=links, matched=matched, crs=out, q=q)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    head = b'{"type":"FeatureCollection","features":['
    tail = {"numberReturned": len(page), "timeStamp": stamp, "links": links}
    if matched is not None:
        tail["numberMatched"] = matched
    body = head + ",".join(r[0] for r in page).encode() + b"]," + orjson.dumps(tail)[1:]
    return Response(body, media_type=GEOJSON, headers=headers)


async def _read_feature(request: Request, featureId: str, out: crsmod.Crs,
                        asof: datetime | None):
    objekt_id = params.parse_uuid(featureId, "featureId")
    actor = await current_actor(request)
    stmt, args = query.feature_sql(objekt_id, out, asof, public=actor.public)
    async with acting(request) as conn:
        row = await (await conn.execute(stmt, args)).fetchone()
    if row is None:
        raise not_found(f"Beskyttelsesrummet {featureId}")
    return row


def etag(versions_id) -> str:
    return f'"{versions_id}"'


@router.head("/collections/{collection_id}/items/{featureId}", include_in_schema=False)
@router.get(
    "/collections/{collection_id}/items/{featureId}",
    summary="Et beskyttelsesrum",
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}, HTML: {}}, "description": "A Feature"},
               400: {"description": "Invalid parameter"}, 404: {"description": "Not found"}},
)
async def item(
    request: Request,
    collection_id: str,
    featureId: str,
    f: str | None = Query(None),
    crs: str | None = Query(None),
    asof: str | None = Query(None, description="The version valid at this instant"),
) -> Response:
    _require_collection(collection_id)
    params.check_known(request, ITEM_PARAMS)
    fmt = params.output_format(request)
    out = params.parse_crs(crs, "crs")
    feature_json, versions_id = await _read_feature(request, featureId, out, _asof(request))
    path = f"/collections/{collection.COLLECTION_ID}/items/{featureId}"
    links = [
        link(url(request, path, f="json"), "self", GEOJSON, "Dette beskyttelsesrum"),
        link(url(request, path, f="html"), "alternate", HTML, "Som HTML"),
        link(url(request, f"/collections/{collection.COLLECTION_ID}"), "collection", JSON,
             collection.TITLE),
        link(url(request, path + "/history"), "version-history", GEOJSON, "Historik"),
    ]
    headers = {"Content-Crs": crsmod.header(out), "ETag": etag(versions_id)}
    feature = orjson.loads(feature_json)
    if fmt == params.FORMAT_HTML:
        return html_response(request, "item.html", headers=headers, feature=feature,
                             links=links, fields=FIELDS_BY_NAME)
    feature["links"] = links
    return Response(orjson.dumps(feature), media_type=GEOJSON, headers=headers)


@router.head("/collections/{collection_id}/items/{featureId}/history", include_in_schema=False)
@router.get(
    "/collections/{collection_id}/items/{featureId}/history",
    summary="Alle versioner af et beskyttelsesrum",
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}, HTML: {}}, "description": "Every version"},
               404: {"description": "Never existed"}},
)
async def history(request: Request, collection_id: str, featureId: str,
                  f: str | None = Query(None), crs: str | None = Query(None)) -> Response:
    _require_collection(collection_id)
    params.check_known(request, {"f", "crs"})
    fmt = params.output_format(request)
    out = params.parse_crs(crs, "crs")
    objekt_id = params.parse_uuid(featureId, "featureId")
    actor = await current_actor(request)
    stmt, args = query.history_sql(objekt_id, out, public=actor.public)
    async with acting(request) as conn:
        rows = await (await conn.execute(stmt, args)).fetchall()
    if not rows:
        raise not_found(f"Beskyttelsesrummet {featureId}")
    versions = [orjson.loads(r[0]) for r in rows]
    for v in versions:
        v["id"] = v["properties"]["versions_id"]
    path = f"/collections/{collection.COLLECTION_ID}/items/{featureId}"
    links = [
        link(url(request, path + "/history", f="json"), "self", GEOJSON, "Historik"),
        link(url(request, path + "/history", f="html"), "alternate", HTML, "Som HTML"),
        link(url(request, path), "about", GEOJSON, "Det gældende beskyttelsesrum"),
    ]
    headers = {"Content-Crs": crsmod.header(out)}
    if fmt == params.FORMAT_HTML:
        return html_response(request, "history.html", headers=headers, versions=versions,
                             objekt_id=featureId, links=links)
    body = {"type": "FeatureCollection", "objekt_id": featureId, "features": versions,
            "numberReturned": len(versions), "numberMatched": len(versions), "links": links}
    return Response(orjson.dumps(body), media_type=GEOJSON, headers=headers)
