"""Reading a theme's objects: items, one item, its history (OGC API - Features Parts 1-3).

Every collection is a registered theme (`datamodel.themes`); the statements, attributes,
links and titles come from its descriptor (`params.theme_of`), and the read runs in the
actor's transaction, so row-level security and the public's views decide what is seen.

Beyond Parts 1-3 the items take `sortby` (Part 8 draft / STAC: `+navn,-pladser`, on what the
caller may read), `properties` (a subset of the readable properties), `skipGeometry` and
`q` (free text over the theme's name and address, `Theme.search_fields`); one item takes
`properties` and `skipGeometry`. Pages are keyset pages in both directions: `next` and `prev`
links carry an opaque cursor (the boundary row's sort key values and objekt_id, and the
direction), and `first` starts again. Every response's links are mirrored in its `Link`
header.
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
from service.errors import bad_request, not_found
from service.http import GEOJSON, HTML, JSON, html_response, link, url, with_links

router = APIRouter(tags=["Objekter"])

ITEMS_PARAMS = {"f", "limit", "bbox", "bbox-crs", "crs", "datetime", "filter", "filter-lang",
                "filter-crs", "cursor", "asof", "sortby", "properties", "skipGeometry", "q",
                *exports.PARAMS}
ITEM_PARAMS = {"f", "crs", "asof", "properties", "skipGeometry"}
_SORTBY_PATTERN = r"^\s*[+-]?\s*[A-Za-z_][A-Za-z0-9_]*(\s*,\s*[+-]?\s*[A-Za-z_][A-Za-z0-9_]*)*\s*$"
#: Attributes every theme shares (FKG generic ones and Ly's): not a theme's own summary.
_SHARED = frozenset({f.name for f in generic_fields()}
                    | {BELIGGENHEDSKOMMUNE.name, AENDRINGSAARSAG.name})
_SUMMARY_COLUMNS = 6


def _page_links(request: Request, theme: Theme, next_cursor: str | None,
                prev_cursor: str | None = None) -> list[dict]:
    path = collection.path(theme, "items")
    keep = {k: v for k, v in request.query_params.items() if k not in ("f", "cursor")}
    current = request.query_params.get("cursor")
    links = [
        link(url(request, path, **keep, cursor=current, f="json"), "self", GEOJSON, "Denne side"),
        link(url(request, path, **keep, cursor=current, f="html"), "alternate", HTML, "Som HTML"),
        link(url(request, collection.path(theme)), "collection", JSON, theme.title),
    ]
    if next_cursor is not None:
        links.append(link(url(request, path, **keep, cursor=next_cursor, f="json"),
                          "next", GEOJSON, "Næste side"))
    if prev_cursor is not None:
        links.append(link(url(request, path, **keep, cursor=prev_cursor, f="json"),
                          "prev", GEOJSON, "Forrige side"))
    if current is not None:
        links.append(link(url(request, path, **keep, f="json"), "first", GEOJSON, "Første side"))
    return links


def _page(q: query.ItemsQuery, rows: list) -> tuple[list, str | None, str | None]:
    """The page of `items_sql`'s rows and its next and prev cursors. A forward page's extra
    row is its last (a next page exists); a backward page's is its first (a page before it
    exists). Every page reached by a cursor has one before it, and a backward page has the
    page it was reached from after it."""
    boundary = q.boundary
    if boundary is not None and boundary.backward:
        more = len(rows) > q.limit
        page = rows[1:] if more else rows
        after, before = bool(page), more
    else:
        page = rows[: q.limit]
        after, before = len(rows) > q.limit, boundary is not None and bool(page)
    next_cursor = params.encode_cursor(q.sortby, page[-1]) if after else None
    prev_cursor = params.encode_cursor(q.sortby, page[0], backward=True) if before else None
    return page, next_cursor, prev_cursor


async def _collation(request: Request, conn) -> str:
    """The collation of text sort keys: Danish ICU where this PostgreSQL has it, else C (asked
    once per application)."""
    known = getattr(request.app.state, "ly_sort_collation", None)
    if known is None:
        row = await (await conn.execute("SELECT 1 FROM pg_collation WHERE collname = %s",
                                        [query.SORT_COLLATION])).fetchone()
        known = query.SORT_COLLATION if row else query.FALLBACK_SORT_COLLATION
        request.app.state.ly_sort_collation = known
    return known


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
    cursor: str | None = Query(None, description="Keyset cursor from a next or prev link "
                               "(opaque; a bare objekt_id still means the page after it in the "
                               "default order)"),
    asof: str | None = Query(None, description="Read the register as it was at this instant"),
    sortby: str | None = Query(None, description="Sort keys, e.g. +navn,-systid_fra: attributes "
                               "the caller may read, - descending, + (or none) ascending; "
                               "NULLs last ascending, first descending; text in Danish order "
                               "(ICU da); objekt_id breaks ties. Not for exports",
                               json_schema_extra={"pattern": _SORTBY_PATTERN}),
    properties: str | None = Query(None, description="Only these properties (comma-separated, "
                                   "of those the caller may read); the id stays"),
    skipGeometry: bool | None = Query(None, description="true: features without geometry "
                                      "(null); not for exports"),
    q: str | None = Query(None, description="Free text: every term (separated by spaces or "
                          "commas) occurs in the object's name or address, ignoring case and "
                          "accents"),
    csv_dialect: str | None = Query(None, alias=exports.CSV_DIALECT,
                                    description="f=csv only: da (default) or rfc4180",
                                    json_schema_extra={"enum": list(
                                        exports.writers.CSV_DIALECTS)}),
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
    keys = params.parse_sortby(qp.get("sortby"), theme, actor)
    bbox_crs = params.parse_crs(qp.get("bbox-crs"), "bbox-crs")
    items_query = query.ItemsQuery(
        out=out,
        limit=params.parse_limit(qp.get("limit"), settings.default_limit, settings.max_limit),
        keyset=params.parse_cursor(qp.get("cursor"), theme, keys),
        sortby=keys,
        select=params.parse_properties(qp.get("properties"), theme, actor.public),
        skip_geometry=bool(skipGeometry),
        text=params.parse_q(qp.get("q")),
        bbox=params.parse_bbox(qp.get("bbox"), crs=bbox_crs),
        bbox_crs=bbox_crs,
        datetime_range=params.parse_datetime(qp.get("datetime")),
        asof=params.asof(request),
        equals=params.equals_filters(request, theme, actor.public, ITEMS_PARAMS),
        cql=params.cql_filter(request, theme, actor.public),
        public=actor.public,
        theme=theme,
    )
    q = items_query
    if fmt in params.EXPORT_FORMATS:  # the whole filtered result as a file
        _check_export(fmt, q)
        return await exports.export(request, q, fmt)
    async with acting(request) as conn:
        if any(theme.fields_by_name[k.name].type == "string" for k in keys):
            q.collation = await _collation(request, conn)
        stmt, args = query.items_sql(q)
        rows = await (await conn.execute(stmt, args)).fetchall()
        matched = None
        if q.boundary is None:
            if len(rows) <= q.limit:
                matched = len(rows)
            else:
                count_stmt, count_args = query.count_sql(q, settings.count_cap)
                n = (await (await conn.execute(count_stmt, count_args)).fetchone())[0]
                matched = n if n <= settings.count_cap else None
    page, next_cursor, prev_cursor = _page(q, rows)
    links = _page_links(request, theme, next_cursor, prev_cursor)
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
    return Response(body, media_type=GEOJSON, headers=with_links(headers, links))


def _check_export(fmt: str, q: query.ItemsQuery) -> None:
    """What an export (loaders.exports) does not follow is refused rather than ignored: its
    order is objekt_id, it always has its geometry, and only GeoJSON's columns follow
    `properties` (the other writers' columns are the audience's)."""
    if q.sortby:
        raise bad_request("sortby", f"an export (f={fmt}) is ordered by objekt_id")
    if q.skip_geometry:
        raise bad_request("skipGeometry", f"an export (f={fmt}) has its geometry")
    if q.select is not None and fmt != "geojson":
        raise bad_request("properties", f"an export (f={fmt}) has every readable property; "
                                        "f=geojson takes properties")


def _missing(theme: Theme, feature_id: str):
    return not_found(f"{theme.singular.capitalize()} {feature_id}")


async def _read_feature(request: Request, theme: Theme, featureId: str, out: crsmod.Crs,
                        asof: datetime | None, select: str | None = None,
                        skip_geometry: bool = False):
    objekt_id = params.parse_uuid(featureId, "featureId")
    actor = await current_actor(request)
    chosen = params.parse_properties(select, theme, actor.public)
    stmt, args = query.feature_sql(objekt_id, out, asof, public=actor.public, theme=theme,
                                   select=chosen, skip_geometry=skip_geometry)
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
    properties: str | None = Query(None, description="Only these properties (comma-separated, "
                                   "of those the caller may read)"),
    skipGeometry: bool | None = Query(None, description="true: the feature without geometry"),
) -> Response:
    theme = params.theme_of(collection_id)
    params.check_known(request, ITEM_PARAMS)
    fmt = params.output_format(request)
    out = params.parse_crs(crs, "crs")
    feature_json, versions_id = await _read_feature(
        request, theme, featureId, out, params.asof(request),
        request.query_params.get("properties"), bool(skipGeometry))
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
    return Response(orjson.dumps(feature), media_type=GEOJSON,
                    headers=with_links(headers, links))


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
    return Response(orjson.dumps(body), media_type=GEOJSON, headers=with_links(headers, links))
