"""Reading a theme's objects: items, one item, its history (OGC API - Features Parts 1-3).

Every collection is a registered theme (`datamodel.themes`); the statements, attributes,
links and titles come from its descriptor (`params.theme_of`), and the read runs in the
actor's transaction, so row-level security and the public's views decide what is seen.
"""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from datamodel import crs as crsmod
from datamodel import query
from datamodel.fields import AENDRINGSAARSAG, BELIGGENHEDSKOMMUNE, generic_fields
from datamodel.themes import Theme
from service import collection, exports, params
from service.auth import current_actor
from service.db import acting
from service.errors import not_found
from service.http import GEOJSON, HTML, JSON, html_response, link, url

router = APIRouter(tags=["Objekter"])

ITEMS_PARAMS = {"f", "limit", "bbox", "bbox-crs", "crs", "datetime", "filter", "filter-lang",
                "filter-crs", "cursor", "asof"}
ITEM_PARAMS = {"f", "crs", "asof"}
#: Attributes every theme shares (FKG generic ones and Ly's): not a theme's own summary.
_SHARED = frozenset({f.name for f in generic_fields()}
                    | {BELIGGENHEDSKOMMUNE.name, AENDRINGSAARSAG.name})
_SUMMARY_COLUMNS = 6


def _page_links(request: Request, theme: Theme, next_cursor) -> list[dict]:
    path = collection.path(theme, "items")
    keep = {k: v for k, v in request.query_params.items() if k not in ("f", "cursor")}
    current = request.query_params.get("cursor")
    links = [
        link(url(request, path, **keep, cursor=current, f="json"), "self", GEOJSON, "Denne side"),
        link(url(request, path, **keep, cursor=current, f="html"), "alternate", HTML, "Som HTML"),
        link(url(request, collection.path(theme)), "collection", JSON, theme.title),
    ]
    if next_cursor is not None:
        links.append(link(url(request, path, **keep, cursor=str(next_cursor), f="json"),
                          "next", GEOJSON, "Næste side"))
    if current is not None:
        links.append(link(url(request, path, **keep, f="json"), "first", GEOJSON, "Første side"))
    return links


def summary_columns(theme: Theme, public: bool) -> list[dict]:
    """The columns of an HTML list of a theme's objects: its own coded attributes (as text),
    its report figures and its validity period, then where it lies; `key` is the property
    shown, `name` the attribute, `title` its Danish title."""
    readable = {f.name: f for f in theme.audience_fields(public)}
    own = [f for f in theme.fields if f.name in readable and f.name not in _SHARED
           and f.name != theme.label and not f.personal]
    chosen = [f for f in own if f.codelist][:2]
    chosen += [readable[fig.field] for fig in theme.figures if fig.field in readable]
    chosen += [readable[n] for n in (theme.validity or ()) if n in readable]
    chosen += [f for f in own if f.public and f.type in ("integer", "number", "string")]
    columns, seen = [], set()
    for f in chosen:
        if f.name in seen:
            continue
        seen.add(f.name)
        columns.append({"key": f.twin or f.name, "name": f.name, "title": f.title,
                        "numeric": f.type in ("integer", "number") and not f.codelist})
        if len(columns) == _SUMMARY_COLUMNS - 1:
            break
    kommune = readable.get(BELIGGENHEDSKOMMUNE.name)
    if kommune is not None:
        columns.append({"key": kommune.name, "name": kommune.name, "title": "Kommune",
                        "numeric": False})
    return columns


def filter_example(theme: Theme, public: bool) -> str:
    """A CQL2 example for the search form, from the theme's own attributes."""
    for fig in theme.figures:
        f = theme.fields_by_name.get(fig.field)
        if f is not None and f in theme.audience_fields(public):
            return f"{f.name} > {int(f.minimum or 0) + 99}"
    return f"{theme.label} LIKE 'A%'"


@router.head("/collections/{collection_id}/items", include_in_schema=False)
@router.get(
    "/collections/{collection_id}/items",
    summary="En samlings objekter (features)",
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
                                  description="Instant or interval: for a theme with a "
                                  "validity period the objects valid then; otherwise "
                                  "the versions valid then (system time)"),
    filter_: str | None = Query(None, alias="filter", description="CQL2 filter"),
    filter_lang: str | None = Query(None, alias="filter-lang",
                                    description="cql2-text (default) or cql2-json"),
    filter_crs: str | None = Query(None, alias="filter-crs"),
    cursor: str | None = Query(None, description="Keyset cursor from a next link"),
    asof: str | None = Query(None, description="Read the register as it was at this instant"),
) -> Response:
    theme = params.theme_of(collection_id)
    settings = request.app.state.settings
    actor = await current_actor(request)
    params.drop_blank_for_html(request)
    params.check_known(request,
                       ITEMS_PARAMS | set(params.queryables(theme, actor.public)) - {"geometri"})
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
        asof=params.asof(request),
        equals=params.equals_filters(request, theme, actor.public, ITEMS_PARAMS),
        cql=params.cql_filter(request, theme, actor.public),
        public=actor.public,
        theme=theme,
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
    links = _page_links(request, theme, next_cursor)
    headers = {"Content-Crs": crsmod.header(out)}
    if fmt == params.FORMAT_HTML:
        features = [orjson.loads(r[0]) for r in page]
        return html_response(request, "items.html", headers=headers, features=features,
                             links=links, matched=matched, crs=out, q=q, theme=theme,
                             columns=summary_columns(theme, actor.public),
                             filter_example=filter_example(theme, actor.public))
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    head = b'{"type":"FeatureCollection","features":['
    tail = {"numberReturned": len(page), "timeStamp": stamp, "links": links}
    if matched is not None:
        tail["numberMatched"] = matched
    body = head + ",".join(r[0] for r in page).encode() + b"]," + orjson.dumps(tail)[1:]
    return Response(body, media_type=GEOJSON, headers=headers)


def _missing(theme: Theme, feature_id: str):
    return not_found(f"{theme.singular.capitalize()} {feature_id}")


async def _read_feature(request: Request, theme: Theme, featureId: str, out: crsmod.Crs,
                        asof: datetime | None):
    objekt_id = params.parse_uuid(featureId, "featureId")
    actor = await current_actor(request)
    stmt, args = query.feature_sql(objekt_id, out, asof, public=actor.public, theme=theme)
    async with acting(request) as conn:
        row = await (await conn.execute(stmt, args)).fetchone()
    if row is None:
        raise _missing(theme, featureId)
    return row


def etag(versions_id) -> str:
    return f'"{versions_id}"'


def _field_titles(theme: Theme) -> dict[str, str]:
    """Danish titles of every property an object may have: attributes and text twins."""
    out = {}
    for f in theme.fields:
        out[f.name] = f.title
        if f.twin:
            out[f.twin] = f"{f.title} (tekst)"
    return out


@router.head("/collections/{collection_id}/items/{featureId}", include_in_schema=False)
@router.get(
    "/collections/{collection_id}/items/{featureId}",
    summary="Et objekt",
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
    theme = params.theme_of(collection_id)
    params.check_known(request, ITEM_PARAMS)
    fmt = params.output_format(request)
    out = params.parse_crs(crs, "crs")
    feature_json, versions_id = await _read_feature(request, theme, featureId, out,
                                                    params.asof(request))
    path = collection.path(theme, "items", featureId)
    links = [
        link(url(request, path, f="json"), "self", GEOJSON, theme.singular.capitalize()),
        link(url(request, path, f="html"), "alternate", HTML, "Som HTML"),
        link(url(request, collection.path(theme)), "collection", JSON, theme.title),
        link(url(request, path + "/history"), "version-history", GEOJSON, "Historik"),
    ]
    headers = {"Content-Crs": crsmod.header(out), "ETag": etag(versions_id)}
    feature = orjson.loads(feature_json)
    if fmt == params.FORMAT_HTML:
        return html_response(request, "item.html", headers=headers, feature=feature,
                             links=links, theme=theme, titles=_field_titles(theme))
    feature["links"] = links
    return Response(orjson.dumps(feature), media_type=GEOJSON, headers=headers)


@router.head("/collections/{collection_id}/items/{featureId}/history", include_in_schema=False)
@router.get(
    "/collections/{collection_id}/items/{featureId}/history",
    summary="Alle versioner af et objekt",
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}, HTML: {}}, "description": "Every version"},
               404: {"description": "Never existed"}},
)
async def history(request: Request, collection_id: str, featureId: str,
                  f: str | None = Query(None), crs: str | None = Query(None)) -> Response:
    theme = params.theme_of(collection_id)
    params.check_known(request, {"f", "crs"})
    fmt = params.output_format(request)
    out = params.parse_crs(crs, "crs")
    objekt_id = params.parse_uuid(featureId, "featureId")
    actor = await current_actor(request)
    stmt, args = query.history_sql(objekt_id, out, public=actor.public, theme=theme)
    async with acting(request) as conn:
        rows = await (await conn.execute(stmt, args)).fetchall()
    if not rows:
        raise _missing(theme, featureId)
    versions = [orjson.loads(r[0]) for r in rows]
    for v in versions:
        v["id"] = v["properties"]["versions_id"]
    path = collection.path(theme, "items", featureId)
    links = [
        link(url(request, path + "/history", f="json"), "self", GEOJSON, "Historik"),
        link(url(request, path + "/history", f="html"), "alternate", HTML, "Som HTML"),
        link(url(request, path), "about", GEOJSON, f"Det gældende: {theme.singular}"),
        link(url(request, collection.path(theme)), "collection", JSON, theme.title),
    ]
    headers = {"Content-Crs": crsmod.header(out)}
    if fmt == params.FORMAT_HTML:
        return html_response(request, "history.html", headers=headers, versions=versions,
                             objekt_id=featureId, links=links, theme=theme,
                             columns=summary_columns(theme, actor.public))
    body = {"type": "FeatureCollection", "objekt_id": featureId, "features": versions,
            "numberReturned": len(versions), "numberMatched": len(versions), "links": links}
    return Response(orjson.dumps(body), media_type=GEOJSON, headers=headers)
