"""The shelter collection: its description, queryables and schema (Parts 1, 2, 3 and 5)."""

from __future__ import annotations

import time

from fastapi import Request

from datamodel import crs as crsmod
from datamodel import query
from datamodel.codelists import load_codelists
from datamodel.cql2sql import Queryable
from datamodel.access import Actor
from datamodel.fields import PUBLIC_FIELDS, SHELTER_FIELDS, Field
from service.db import acting_as
from service.http import GEOJSON, HTML, JSON, SCHEMA_JSON, link, self_links, url

COLLECTION_ID = "beskyttelsesrum"
TITLE = "Beskyttelsesrum"
DESCRIPTION = (
    "Offentlige beskyttelsesrum, sikringsrum og betondækningsgrave (GeoFA tema 6101 med Lys "
    "udvidelser). Hver ændring er en ny version; intet slettes fysisk."
)
REL_QUERYABLES = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
REL_SCHEMA = "http://www.opengis.net/def/rel/ogc/1.0/schema"
REL_TILESETS_VECTOR = "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector"
ITEM_ID_PATH = "/collections/" + COLLECTION_ID + "/items/{featureId}"

_EXTENT_TTL = 60.0


def audience_fields(public: bool) -> tuple[Field, ...]:
    return PUBLIC_FIELDS if public else SHELTER_FIELDS


def queryables(public: bool = False) -> dict[str, Queryable]:
    """What an audience may filter on: the attributes it may read, and the geometry."""
    out = {f.name: Queryable(f.name, f.name, f.type) for f in audience_fields(public)}
    out["geometri"] = Queryable("geometri", "geometri", "geometry")
    return out


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
    return schema


def queryables_document(request: Request, public: bool = False) -> dict:
    props = {f.name: property_schema(f) for f in audience_fields(public)}
    props["geometri"] = {"title": "Geometri", "format": "geometry-point",
                         "x-ogc-role": "primary-geometry"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": url(request, f"/collections/{COLLECTION_ID}/queryables"),
        "type": "object",
        "title": TITLE,
        "properties": props,
        "additionalProperties": False,
    }


def schema_document(request: Request, public: bool = False) -> dict:
    """Part 5 schema: returnables and receivables, with text twins as read-only strings."""
    props: dict = {}
    for f in audience_fields(public):
        props[f.name] = property_schema(f)
        if f.twin:
            props[f.twin] = {"title": f"{f.title} (tekst)", "type": "string", "readOnly": True}
    props["objekt_id"]["x-ogc-role"] = "id"
    props["geometri"] = {"title": "Geometri", "format": "geometry-point",
                         "x-ogc-role": "primary-geometry"}
    required = [f.name for f in SHELTER_FIELDS if f.required and f.default is None]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": url(request, f"/collections/{COLLECTION_ID}/schema"),
        "type": "object",
        "title": TITLE,
        "properties": props,
        "required": required,
    }


async def extent(request: Request, actor: Actor) -> dict:
    """The extent of what the actor sees, cached for a minute per scope (it scans the
    current register)."""
    state = request.app.state
    cache = state.extent_cache
    cached = cache.get(actor.scope_key)
    if cached and time.monotonic() - cached[0] < _EXTENT_TTL:
        return cached[1]
    async with acting_as(state.pool, actor) as conn:
        cur = await conn.execute(query.extent_sql(actor.public))
        row = await cur.fetchone()
    xmin, ymin, xmax, ymax, first = row
    spatial_bbox = [[round(xmin, 5), round(ymin, 5), round(xmax, 5), round(ymax, 5)]] \
        if xmin is not None else [[7.7, 54.4, 15.4, 57.9]]
    out = {
        "spatial": {"bbox": spatial_bbox, "crs": crsmod.CRS84},
        "temporal": {
            "interval": [[first.isoformat() if first else None, None]],
            "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian",
        },
    }
    if len(cache) > 1000:
        cache.clear()
    cache[actor.scope_key] = (time.monotonic(), out)
    return out


async def description(request: Request, actor: Actor) -> dict:
    path = f"/collections/{COLLECTION_ID}"
    return {
        "id": COLLECTION_ID,
        "title": TITLE,
        "description": DESCRIPTION,
        "itemType": "feature",
        "links": [
            *self_links(request, path),
            link(url(request, path + "/items", f="json"), "items", GEOJSON, "Beskyttelsesrum"),
            link(url(request, path + "/items", f="html"), "items", HTML, "Beskyttelsesrum (HTML)"),
            link(url(request, path + "/queryables"), REL_QUERYABLES, SCHEMA_JSON, "Queryables"),
            link(url(request, path + "/schema"), REL_SCHEMA, SCHEMA_JSON, "Skema"),
            link(url(request, path + "/tiles"), REL_TILESETS_VECTOR, JSON, "Vector tiles"),
            link(url(request, "/kodelister"), "describedby", JSON, "Kodelister"),
        ],
        "extent": await extent(request, actor),
        "crs": list(crsmod.SUPPORTED),
        "storageCrs": crsmod.STORAGE.uri,
        "x-ly-temakode": 6101,
    }
