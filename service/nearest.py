"""The nearest objects to a point: `GET /naermeste` (Ly issue 17).

`punkt` is two numbers in `crs`'s axis order (CRS84 lon,lat by default; EPSG:4326 lat,lon;
EPSG:25832 and EPSG:3857 x,y), which is also the output CRS (`Content-Crs`), as for items.
The answer is a FeatureCollection of the `antal` (1-100, default 5) objects of `tema` (a
collection id, default the shelters) nearest to it, nearest first, each with `afstand_m`
(metres, planar in EPSG:25832, to the millimetre) in its properties; ties are broken by
objekt_id. The statement is `datamodel.nearest`'s; it runs in the actor's transaction on
the audience's view, so the register's views and row-level security decide what is seen
(the public: off_kode 1, and during activation every public shelter).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

import orjson
from fastapi import APIRouter, Query, Request
from pyproj import Transformer
from starlette.responses import Response

from datamodel import crs as crsmod
from datamodel import nearest, themes
from service import collection, params
from service.auth import current_actor
from service.db import acting
from service.errors import bad_request
from service.http import GEOJSON, JSON, link, url, with_links
from service.openapi import INSTANT, LINKS, NUM, OBJ, STR, array_schema, object_schema

router = APIRouter(tags=["Objekter"])

PATH = "/naermeste"
PARAMS = {"punkt", "antal", "tema", "crs", "f"}
DEFAULT_K = 5
_NUMBER = r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?"
_PUNKT_PATTERN = rf"^\s*{_NUMBER}\s*,\s*{_NUMBER}\s*$"

#: The answer's schema: features of any theme (their properties are the audience's, plus
#: afstand_m), so the properties are open but afstand_m is required.
_FEATURE = object_schema({
    "type": {"type": "string", "enum": ["Feature"]},
    "id": STR,
    "geometry": OBJ,
    "properties": {"type": "object", "properties": {
        nearest.DISTANCE_PROPERTY: {**NUM, "minimum": 0}},
        "required": [nearest.DISTANCE_PROPERTY]},
})
_COLLECTION = object_schema({
    "type": {"type": "string", "enum": ["FeatureCollection"]},
    "features": array_schema(_FEATURE, maxItems=nearest.MAX_K),
    "numberReturned": {"type": "integer", "minimum": 0},
    "timeStamp": INSTANT,
    "links": LINKS,
}, description="The nearest objects, nearest first (ties: objekt_id)")


def _to_lonlat(srid: int) -> Transformer:
    return Transformer.from_crs(srid, 4326, always_xy=True)


_TRANSFORMERS = {srid: _to_lonlat(srid) for srid in
                 {c.srid for c in crsmod.SUPPORTED.values()} - {4326}}


def parse_punkt(value: str, in_crs: crsmod.Crs) -> tuple[float, float]:
    """(x, y) in `in_crs`'s x/y order (lon/lat for a geographic CRS), from two numbers in its
    axis order. Refused (400 naming punkt) unless both are finite and the point lies where
    ETRS89 is defined (`crs.ETRS89_LONLAT_BOX`: where storage's EPSG:25832 has a meaning)."""
    parts = value.split(",")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) != 2 or not all(math.isfinite(n) for n in numbers):
        raise bad_request("punkt", "must be two comma-separated finite numbers in the axis "
                                   "order of crs (CRS84: lon,lat)")
    x, y = (numbers[1], numbers[0]) if in_crs.lat_first else (numbers[0], numbers[1])
    lon, lat = (x, y) if in_crs.srid == 4326 else _TRANSFORMERS[in_crs.srid].transform(x, y)
    x1, y1, x2, y2 = crsmod.ETRS89_LONLAT_BOX
    if not (math.isfinite(lon) and math.isfinite(lat) and x1 <= lon <= x2 and y1 <= lat <= y2):
        raise bad_request("punkt", f"lies outside the area of ETRS89 (lon {x1:g} to {x2:g}, "
                                   f"lat {y1:g} to {y2:g})")
    return x, y


def _theme(value: str | None):
    if value is None:
        return themes.default()
    try:
        return themes.get(value)
    except KeyError:
        known = ", ".join(t.collection_id for t in themes.all_themes())
        raise bad_request("tema", f"{value!r} is not a collection (known: {known})") from None


@router.head(PATH, include_in_schema=False)
@router.get(
    PATH,
    summary="De nærmeste objekter til et punkt",
    description="The `antal` objects of `tema` nearest to `punkt`, nearest first, each with "
                "`afstand_m`: the planar distance in EPSG:25832 (metres, rounded to the "
                "millimetre; the order is by the exact distance, ties by objekt_id). Only "
                "objects the caller may see.",
    response_class=Response,
    responses={200: {"description": "The nearest objects",
                     "content": {GEOJSON: {"schema": _COLLECTION}}}},
)
async def nearest_objects(
    request: Request,
    punkt: str = Query(..., description="The point: two numbers in the axis order of crs "
                       "(CRS84: lon,lat; EPSG:4326: lat,lon)",
                       json_schema_extra={"pattern": _PUNKT_PATTERN}),
    antal: int | None = Query(None, ge=1, le=nearest.MAX_K,
                              description=f"How many (default {DEFAULT_K})"),
    tema: str | None = Query(None, description="The collection (theme); default the shelters",
                             json_schema_extra={"enum": [t.collection_id
                                                         for t in themes.all_themes()]}),
    crs: str | None = Query(None, description="CRS of punkt and of the output (CRS84)"),
    f: str | None = Query(None, description="json (the only format)",
                          json_schema_extra={"enum": ["json", "geojson"]}),
) -> Response:
    params.check_known(request, PARAMS)
    if f is not None and f.lower() not in ("json", "geojson"):
        raise bad_request("f", "must be json")
    theme = _theme(tema)
    the_crs = params.parse_crs(crs, "crs")
    x, y = parse_punkt(punkt, the_crs)
    actor = await current_actor(request)
    q = nearest.NearestQuery(x=x, y=y, in_crs=the_crs, k=antal or DEFAULT_K, out=the_crs,
                             public=actor.public, theme=theme)
    candidates = nearest.initial_candidates(q.k)
    async with acting(request) as conn:
        while True:  # more candidates while objects tied at the k-th distance may be missed
            stmt, args = nearest.nearest_sql(q, candidates)
            rows = await (await conn.execute(stmt, args)).fetchall()
            if not rows or rows[0][3]:
                break
            candidates *= 4
    keep = {k: v for k, v in request.query_params.items() if k != "f"}
    links = [link(url(request, PATH, **keep, f="json"), "self", GEOJSON, "Dette dokument"),
             link(url(request, collection.path(theme)), "collection", JSON, theme.title)]
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    head = b'{"type":"FeatureCollection","features":['
    tail = {"numberReturned": len(rows), "timeStamp": stamp, "links": links}
    body = head + ",".join(r[0] for r in rows).encode() + b"]," + orjson.dumps(tail)[1:]
    headers = {"Content-Crs": crsmod.header(the_crs)}
    return Response(body, media_type=GEOJSON, headers=with_links(headers, links))
