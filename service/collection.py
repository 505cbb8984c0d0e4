"""A theme's collection: its description, queryables and schema (Parts 1, 2, 3 and 5).

Every registered theme (`datamodel.themes`) is one collection; everything here is read from
its descriptor: id, Danish title and description, attributes (titles, types, ranges, code
lists, which are public and which personal), the primary geometry's type, and the temporal
extent (a validity period, or system time).
"""

from __future__ import annotations

import time
from datetime import date, datetime
from datetime import time as clock
from zoneinfo import ZoneInfo

from fastapi import Request
from psycopg import sql

from datamodel import crs as crsmod
from datamodel import query
from datamodel.access import Actor
from datamodel.codelists import load_codelists
from datamodel.fields import Field
from datamodel.themes import Theme
from service.db import acting_as
from service.http import GEOJSON, HTML, JSON, SCHEMA_JSON, link, self_links, url

REL_QUERYABLES = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
REL_SCHEMA = "http://www.opengis.net/def/rel/ogc/1.0/schema"
REL_TILESETS_VECTOR = "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector"
TRS = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"
#: Denmark (CRS84): the spatial extent of a collection with nothing the caller may see.
DENMARK_CRS84 = [7.7, 54.4, 15.4, 57.9]

_EXTENT_TTL = 60.0


def path(theme: Theme, *parts: str) -> str:
    """The collection's path, e.g. `/collections/<id>/items`."""
    return "/".join((f"/collections/{theme.collection_id}", *parts))


def _json_type(f: Field) -> dict:
    if f.type in ("integer", "number", "string", "boolean"):
        schema: dict = {"type": f.type}
    elif f.type == "uuid":
        schema = {"type": "string", "format": "uuid"}
    else:
        schema = {"type": "string", "format": f.type}
    return schema


def property_schema(f: Field, *, with_codes: bool = True) -> dict:
    schema = {"title": f.title, **_json_type(f)}
    if f.description:
        schema["description"] = f.description
    if f.max_length:
        schema["maxLength"] = f.max_length
    if f.minimum is not None:
        schema["minimum"] = f.minimum
    if f.maximum is not None:
        schema["maximum"] = f.maximum
    if f.codelist and with_codes:
        codes = load_codelists()[f.codelist]
        schema["enum"] = sorted(c.kode for c in codes.values if c.aktiv)
        schema["x-ly-codelist"] = f.codelist
    if not f.writable:
        schema["readOnly"] = True
    if f.personal:
        # Personal data: never public; masked (null) for planners and inspectors.
        schema["x-ly-personal"] = True
    return schema


def geometry_schema(theme: Theme) -> dict:
    return {"title": "Geometri", "format": theme.geometry_format,
            "x-ogc-role": "primary-geometry"}


def queryables_document(request: Request, theme: Theme, public: bool = False) -> dict:
    props = {f.name: property_schema(f) for f in theme.audience_fields(public)}
    props["geometri"] = geometry_schema(theme)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": url(request, path(theme, "queryables")),
        "type": "object",
        "title": theme.title,
        "properties": props,
        "additionalProperties": False,
    }


def schema_document(request: Request, theme: Theme, public: bool = False) -> dict:
    """Part 5 schema: returnables and receivables, with text twins as read-only strings."""
    props: dict = {}
    for f in theme.audience_fields(public):
        props[f.name] = property_schema(f)
        if f.twin:
            props[f.twin] = {"title": f"{f.title} (tekst)", "type": "string", "readOnly": True}
    props["objekt_id"]["x-ogc-role"] = "id"
    props["geometri"] = geometry_schema(theme)
    if theme.validity:
        start, end = theme.validity
        for name, role in ((start, "primary-interval-start"), (end, "primary-interval-end")):
            if name in props:
                props[name]["x-ogc-role"] = role
    required = [f.name for f in theme.fields
                if f.required and f.default is None and f.writable]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": url(request, path(theme, "schema")),
        "type": "object",
        "title": theme.title,
        "properties": props,
        "required": required,
    }


def _validity_sql(theme: Theme, public: bool) -> sql.Composed | None:
    """(first day, last day or NULL when some object is open-ended) of the validity periods of
    the current objects the caller sees; None when the theme has none the audience reads."""
    if not theme.validity:
        return None
    audience = {f.name for f in theme.audience_fields(public)}
    if not set(theme.validity) <= audience:
        return None
    start, end = (sql.Identifier(n) for n in theme.validity)
    return sql.SQL(
        "SELECT min({s}), CASE WHEN bool_or({e} IS NULL) THEN NULL ELSE max({e}) END "
        "FROM {v}").format(s=start, e=end, v=query.views(public, theme)[0])


def _day_bound(day: date | None, at: clock) -> str | None:
    """A validity day's first or last second as an RFC 3339 instant (Danish calendar days)."""
    if day is None:
        return None
    return datetime.combine(day, at, ZoneInfo(query.VALIDITY_TIME_ZONE)).isoformat()


async def extent(request: Request, actor: Actor, theme: Theme) -> dict:
    """The extent of what the actor sees of a theme, cached for a minute per theme and scope
    (it scans the current register).

    Temporal: the validity period of the objects (the start of the first day an object is
    valid from to the end of the last day one is valid to, Copenhagen time; open when some
    object is open-ended) for a theme with one; else system time, from the first version to
    now (open).
    """
    state = request.app.state
    cache = state.extent_cache
    key = (theme.collection_id, actor.scope_key)
    cached = cache.get(key)
    if cached and time.monotonic() - cached[0] < _EXTENT_TTL:
        return cached[1]
    validity = _validity_sql(theme, actor.public)
    async with acting_as(state.pool, actor) as conn:
        row = await (await conn.execute(query.extent_sql(actor.public, theme))).fetchone()
        period = None
        if validity is not None:
            period = await (await conn.execute(validity)).fetchone()
    xmin, ymin, xmax, ymax, first = row
    spatial_bbox = [[round(xmin, 5), round(ymin, 5), round(xmax, 5), round(ymax, 5)]] \
        if xmin is not None else [list(DENMARK_CRS84)]
    if period is not None:
        start, end = period
        interval = [_day_bound(start, clock.min), _day_bound(end, clock(23, 59, 59))]
    else:
        interval = [first.isoformat() if first else None, None]
    out = {
        "spatial": {"bbox": spatial_bbox, "crs": crsmod.CRS84},
        "temporal": {"interval": [interval], "trs": TRS},
    }
    if len(cache) > 1000:
        cache.clear()
    cache[key] = (time.monotonic(), out)
    return out


async def description(request: Request, actor: Actor, theme: Theme) -> dict:
    here = path(theme)
    return {
        "id": theme.collection_id,
        "title": theme.title,
        "description": theme.description,
        "itemType": "feature",
        "links": [
            *self_links(request, here),
            link(url(request, here + "/items", f="json"), "items", GEOJSON, theme.title),
            link(url(request, here + "/items", f="html"), "items", HTML,
                 f"{theme.title} (HTML)"),
            link(url(request, here + "/queryables"), REL_QUERYABLES, SCHEMA_JSON, "Queryables"),
            link(url(request, here + "/schema"), REL_SCHEMA, SCHEMA_JSON, "Skema"),
            link(url(request, here + "/tiles"), REL_TILESETS_VECTOR, JSON, "Vektorfliser"),
            link(url(request, "/kodelister"), "describedby", JSON, "Kodelister"),
        ],
        "extent": await extent(request, actor, theme),
        "crs": list(crsmod.SUPPORTED),
        "storageCrs": crsmod.STORAGE.uri,
        "x-ly-temakode": theme.temakode,
        "x-ly-geometritype": theme.geometry_type,
    }
