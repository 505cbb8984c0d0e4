"""The API definition as an OpenAPI 3.0 document, self-contained (no remote `$ref`).

FastAPI emits OpenAPI 3.1; OGC API - Features `oas30` asks for 3.0, so nullable unions are
rewritten to `nullable: true`, 3.1-only keywords are folded, and the queryable filter
parameters are declared on the items operation. Every registered theme is a collection: the
`collection_id` path parameter enumerates them, the queryables are every theme's attributes,
and the bodies of create and replace are one Feature schema per theme.

The routers read their bodies and most parameters themselves (`read_json`, `check_known`), so
FastAPI sees little of them; the document is completed here, per operation:

- every parameter a resource accepts, with what it accepts (code lists, CRS URIs, UUIDs);
- a request body schema for every operation that reads one;
- every status an operation answers, each with its schema: the resource's JSON (the features
  of a theme generated from its descriptor: types, ranges, code lists, which attributes the
  public reads), HTML, PDF, CSV, spreadsheets, images and vector tiles as opaque bodies, and
  for every 4xx and 5xx the problem details (RFC 9457) of `service.errors`. A 500 is never
  documented: no input may cause one (tests/test_fuzz.py holds the API to the document).

Nothing here names a theme: the feature schemas come from `datamodel.themes.all_themes()`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from datamodel import checklist, tiles
from datamodel import crs as crsmod
from datamodel import themes
from datamodel.codelists import load_codelists
from datamodel.themes import Theme
from loaders import exports as export_formats
from service import maps
from service.collection import path as collection_path
from service.collection import property_schema
from service.errors import PROBLEM_MEDIA_TYPE
from service.http import GEOJSON, HTML, JSON, SCHEMA_JSON

PDF = "application/pdf"
CSV = "text/csv"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MVT = "application/vnd.mapbox-vector-tile"
PHOTO_TYPES = ("image/jpeg", "image/png")
#: Paths of the collection resources, as the document names them.
COL = "/collections/{collection_id}"
ITEMS = COL + "/items"
ITEM = ITEMS + "/{featureId}"
TILE = COL + "/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/{tileCol}"


def _to_30(node: Any) -> Any:
    if isinstance(node, list):
        return [_to_30(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = {k: _to_30(v) for k, v in node.items()}
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [o for o in options if o != {"type": "null"}]
            node.pop(key)
            if len(rest) == 1:
                node.update(rest[0])
            else:
                node[key] = rest
            node["nullable"] = True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if isinstance(node.get("examples"), list) and "schema" not in node:
        examples = node.pop("examples")
        if examples:
            node["example"] = examples[0]
    for k in ("exclusiveMinimum", "exclusiveMaximum"):
        if isinstance(node.get(k), (int, float)) and not isinstance(node.get(k), bool):
            node["minimum" if k == "exclusiveMinimum" else "maximum"] = node.pop(k)
            node[k] = True
    node.pop("contentMediaType", None)
    return node


# --- schema building blocks ------------------------------------------------------------------

def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _null(schema: dict) -> dict:
    """`schema` or null (OpenAPI 3.0: an enum lists null itself)."""
    out = {**schema, "nullable": True}
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


STR = {"type": "string"}
INT = {"type": "integer"}
NUM = {"type": "number"}
BOOL = {"type": "boolean"}
UUID_ = {"type": "string", "format": "uuid"}
DATE = {"type": "string", "format": "date"}
INSTANT = {"type": "string", "format": "date-time"}
OBJ = {"type": "object"}
BINARY = {"type": "string", "format": "binary"}


def _obj(members: dict[str, dict], *, closed: bool = False, **extra) -> dict:
    """An object schema; a member whose name ends in `?` is optional, the others required."""
    props = {k.rstrip("?"): v for k, v in members.items()}
    required = [k for k in members if not k.endswith("?")]
    out: dict = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    if closed:
        out["additionalProperties"] = False
    out.update(extra)
    return out


def _arr(items: dict, **extra) -> dict:
    return {"type": "array", "items": items, **extra}


LINKS = _arr(_ref("Link"))
#: The schema builders for routes that declare their own answers (service/nearest.py).
object_schema, array_schema = _obj, _arr


def _problem_schema() -> dict:
    """RFC 9457 problem details, as `service.errors.problem_response` writes them."""
    return _obj({
        "type": {"type": "string", "description": "A URI naming the kind of problem "
                                                  "(about:blank when it has none)"},
        "title": {"type": "string", "description": "The status in Danish (one language with the operations' summaries)"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "What was wrong, in words"},
        "instance?": {"type": "string", "description": "The path of the request"},
        "errors?": _arr(_obj({"field": STR, "detail": STR}),
                        description="What was wrong, per parameter, header or member"),
    }, title="Problem", description="Problem details (RFC 9457)")


def _codes(codelist: str) -> list[int]:
    return sorted(load_codelists()[codelist].all_codes())


def _value_schema(field) -> dict:
    """A stored attribute as returned: its type and range, any code of its code list (an
    inactive one too: it stays valid for old data), or null."""
    schema = property_schema(field, with_codes=False)
    for key in ("x-ly-codelist", "x-ly-personal", "description"):
        schema.pop(key, None)
    if field.codelist:
        schema["enum"] = _codes(field.codelist)
    return _null(schema)


def _returned_geometry(theme: Theme) -> dict:
    kinds = ["Polygon", "MultiPolygon"] if theme.is_area else ["Point", "MultiPoint"]
    return _obj({"type": {"type": "string", "enum": kinds},
                 "coordinates": _arr({"type": "array"} if theme.is_area else {},
                                     minItems=1)})


def _returned_feature(theme: Theme) -> dict:
    """An object of a theme as the API returns it: every attribute and text twin the
    authorities read (the public's are always present), nothing else."""
    props: dict[str, dict] = {}
    for f in theme.fields:
        props[f.name] = _value_schema(f)
        if f.twin:
            props[f.twin] = _null(dict(STR))
    members = {
        "type": {"type": "string", "enum": ["Feature"]},
        "id": STR,
        "geometry": _returned_geometry(theme),
        "properties": {"type": "object", "properties": props,
                       "required": theme.property_columns(public=True),
                       "additionalProperties": False},
        "links?": LINKS,
    }
    return _obj(members, title=f"{theme.title} (returned)")


def _returned_name(theme: Theme) -> str:
    return f"Returned_{theme.collection_id}"


def _any_feature() -> dict:
    refs = [_ref(_returned_name(t)) for t in themes.all_themes()]
    return {"anyOf": refs} if len(refs) > 1 else refs[0]


def _feature_collection() -> dict:
    return _obj({
        "type": {"type": "string", "enum": ["FeatureCollection"]},
        "features": _arr(_any_feature()),
        "numberReturned?": {"type": "integer", "minimum": 0},
        "numberMatched?": {"type": "integer", "minimum": 0},
        "timeStamp?": INSTANT,
        "links?": LINKS,
    }, description="A page of a collection's objects (an export with f=geojson: all of them, "
                   "without paging members)")


def _history() -> dict:
    return _obj({
        "type": {"type": "string", "enum": ["FeatureCollection"]},
        "objekt_id": STR,
        "features": _arr(_any_feature(), minItems=1),
        "numberReturned": INT, "numberMatched": INT, "links": LINKS,
    }, description="Every version of an object, oldest first; each version's id is its "
                   "versions_id")


def _collection() -> dict:
    ids = [t.collection_id for t in themes.all_themes()]
    return _obj({
        "id": {"type": "string", "enum": ids}, "title": STR, "description": STR,
        "itemType": {"type": "string", "enum": ["feature"]}, "links": LINKS,
        "extent": _obj({
            "spatial": _obj({"bbox": _arr(_arr(NUM, minItems=4, maxItems=6), minItems=1),
                             "crs": STR}),
            "temporal": _obj({"interval": _arr(_arr(_null(dict(STR)), minItems=2,
                                                    maxItems=2), minItems=1),
                              "trs": STR}),
        }),
        "crs": _arr(STR), "storageCrs": STR,
        "x-ly-temakode": {"type": "integer", "enum": [t.temakode for t in themes.all_themes()]},
        "x-ly-geometritype": STR,
    })


def _json_schema_document() -> dict:
    return _obj({"$schema": STR, "$id": STR, "type": {"type": "string", "enum": ["object"]},
                 "title": STR, "properties": {"type": "object",
                                              "additionalProperties": OBJ},
                 "required?": _arr(STR), "additionalProperties?": BOOL},
                description="A JSON Schema (draft 2020-12) of the collection's objects")


def _codelist(with_links: bool) -> dict:
    members = {"name": STR, "description": _null(dict(STR)), "source": _null(dict(STR)),
               "values": _arr(_obj({"kode": INT, "tekst": STR,
                                    "aktiv": {"type": "integer", "enum": [0, 1]},
                                    "begrebsdefinition": _null(dict(STR))}))}
    if with_links:
        members["links"] = LINKS
    return _obj(members)


def _tms() -> dict:
    return _obj({
        "id": STR, "title?": STR, "uri?": STR, "crs": {}, "orderedAxes?": _arr(STR),
        "wellKnownScaleSet?": STR,
        "tileMatrices": _arr(_obj({
            "id": STR, "scaleDenominator": NUM, "cellSize": NUM, "cornerOfOrigin?": STR,
            "pointOfOrigin": _arr(NUM, minItems=2, maxItems=2), "tileWidth": INT,
            "tileHeight": INT, "matrixWidth": INT, "matrixHeight": INT}), minItems=1),
    }, description="A tile matrix set (OGC TMS 2.0 JSON)")


def _tileset_summary() -> dict:
    return _obj({"title": STR, "dataType": {"type": "string", "enum": ["vector"]}, "crs": STR,
                 "links": LINKS, "tileMatrixSetURI?": STR})


def _tileset() -> dict:
    layer = _obj({"id": STR, "title": STR, "dataType": STR, "description": STR,
                  "geometryDimension": INT, "featureType?": STR, "minTileMatrix": STR,
                  "maxTileMatrix": STR, "propertiesSchema": OBJ})
    vector_layer = _obj({"id": STR, "description": STR, "minzoom": INT, "maxzoom": INT,
                         "fields": {"type": "object", "additionalProperties": STR}})
    summary = _tileset_summary()
    return _obj({
        **{(k if k in summary["required"] else k + "?"): v
           for k, v in summary["properties"].items()},
        "description": STR,
        "boundingBox": _obj({"lowerLeft": _arr(NUM, minItems=2, maxItems=2),
                             "upperRight": _arr(NUM, minItems=2, maxItems=2), "crs": STR}),
        "layers": _arr(layer, minItems=1),
        "tilejson": STR, "name": STR, "scheme": STR, "tiles": _arr(STR, minItems=1),
        "minzoom": INT, "maxzoom": INT, "bounds": _arr(NUM, minItems=4, maxItems=4),
        "center": _arr(NUM, minItems=3, maxItems=3), "vector_layers": _arr(vector_layer),
    }, description="Tileset metadata (OGC API - Tiles) with TileJSON 3.0 members")


def _actor() -> dict:
    return _obj({"subjekt": STR, "navn": _null(dict(STR)), "roller": _arr(STR),
                 "cvr_kode": _null(dict(INT)), "kommuner": _arr(INT),
                 "niveau": _null(dict(STR)), "klient": STR, "logget_ind": BOOL,
                 "roller_forklaret": {"type": "object", "additionalProperties": STR}})


def _activation() -> dict:
    return _obj({"aktiv": BOOL, "begrundelse": _null(dict(STR)), "tid": INSTANT,
                 "af": _null(dict(STR))})


def _audit() -> dict:
    nstr = _null(dict(STR))
    entry = _obj({"id": INT, "tid": INSTANT, "subjekt": nstr, "cvr_kode": _null(dict(INT)),
                  "roller": _null(_arr(STR)), "klient": nstr, "handling": STR, "tabel": nstr,
                  "objekt_id": nstr, "foer_versions_id": nstr, "efter_versions_id": nstr,
                  "detaljer": {"nullable": True}})
    return _obj({"revision": _arr(entry), "links": LINKS})


_RUN_ARTER = ["kommunal_liste", "bbr", "geofa_pull", "geofa_sync"]
_RUN_STATUSSER = ["indlaeser", "klar", "afvist", "publiceret", "tilbagerullet", "fejlet"]


def _run(full: bool) -> dict:
    nstr, nint = _null(dict(STR)), _null(dict(INT))
    members = {"id": INT, "art": {"type": "string", "enum": _RUN_ARTER},
               "status": {"type": "string", "enum": _RUN_STATUSSER}, "kilde": nstr,
               "kommunekode": nint, "cvr_kode": nint, "subjekt": nstr, "startet": nstr,
               "opdateret": nstr, "staget": nstr, "publiceret": nstr, "tilbagerullet": nstr,
               "naeste_raekke": nint, "taellere": {"nullable": True},
               "kvalitet": {"nullable": True}, "fejl": {"nullable": True}, "links": LINKS}
    if full:
        members.update({"parametre": {"nullable": True}, "afviste": _arr(OBJ),
                        "konflikter": _arr(OBJ), "kandidater": _arr(OBJ)})
    return _obj(members)


def _report(national: bool) -> dict:
    section = _obj({"collection_id": {"type": "string",
                                      "enum": [t.collection_id for t in themes.all_themes()]},
                    "temakode": INT, "titel": STR, "antal": INT, "summer": _arr(OBJ)})
    members: dict = {"genereret": INSTANT, "temaer": _arr(section), "links": LINKS}
    if national:
        members["kommuner"] = _arr(_obj({"kommunekode": INT, "navn": STR}))
    else:
        members.update({"kommunekode": INT, "navn": STR})
    return _obj(members, description="The report's figures per theme (the themes' own figures "
                                     "as members of their own)")


def _components() -> dict[str, dict]:
    out = {
        "Problem": _problem_schema(),
        "Link": _obj({"href": STR, "rel": STR, "type?": STR, "title?": STR,
                      "templated?": BOOL}),
        "FeatureCollection": _feature_collection(),
        "History": _history(),
        "Collection": _collection(),
    }
    for theme in themes.all_themes():
        out[_returned_name(theme)] = _returned_feature(theme)
    return out


# --- request bodies ----------------------------------------------------------------------

def _query_schema(schema: dict) -> dict:
    return {k: v for k, v in schema.items()
            if k not in ("title", "readOnly", "x-ly-codelist", "x-ly-personal", "description")}


def _queryable_parameters() -> list[dict]:
    """`?<queryable>=value` on the items operation: every theme's attributes, once each (an
    attribute several themes share is declared with what they agree on)."""
    by_name: dict[str, list[tuple[Theme, dict]]] = {}
    for theme in themes.all_themes():
        for f in theme.fields:
            by_name.setdefault(f.name, []).append((theme, _query_schema(property_schema(f))))
    out = []
    for name, uses in by_name.items():
        schemas = [s for _, s in uses]
        schema = schemas[0]
        if any(s != schema for s in schemas[1:]):
            types = {s.get("type") for s in schemas}
            schema = {"type": types.pop() if len(types) == 1 else "string"}
        ids = [t.collection_id for t, _ in uses]
        where = "every collection" if len(ids) == len(themes.all_themes()) else ", ".join(ids)
        out.append({"name": name, "in": "query", "required": False, "style": "form",
                    "explode": False,
                    "description": f"Only objects whose {name} equals this ({where})",
                    "schema": schema})
    return out


def _geometry_schema(theme: Theme) -> dict:
    if not theme.is_area:
        return {"type": "object", "required": ["type", "coordinates"],
                "properties": {"type": {"type": "string", "enum": ["Point", "MultiPoint"]},
                               "coordinates": {"type": "array", "items": {}}},
                "description": "A Point (or GeoFA's MultiPoint with one point)",
                "example": {"type": "Point", "coordinates": [12.5683, 55.6761]}}
    return {"type": "object", "required": ["type", "coordinates"],
            "properties": {"type": {"type": "string", "enum": ["Polygon", "MultiPolygon"]},
                           "coordinates": {"type": "array", "items": {"type": "array"}}},
            "description": "A valid Polygon or MultiPolygon in Denmark"}


#: Where the examples lie (København, municipality 101).
EXAMPLE_LON_LAT = (12.5683, 55.6761)


def _example_value(f):
    """A valid value of an attribute: an active code, the middle of its range, its title."""
    if f.codelist:
        return min(load_codelists()[f.codelist].codes())
    if f.type in ("integer", "number"):
        lo = f.minimum if f.minimum is not None else 1
        hi = f.maximum if f.maximum is not None else lo + 100
        mid = (lo + hi) / 2
        return int(mid) if f.type == "integer" else float(mid)
    return {"date": "2026-06-01", "date-time": "2026-06-01T12:00:00+02:00", "boolean": True,
            "uuid": "6b1e7c1a-2f5d-4f3e-9a57-3c0f5d2a0001"}.get(
        f.type, f.title[: f.max_length or 80])


def example_feature(theme: Theme) -> dict:
    """A Feature of a theme the register accepts: its required attributes and its label, at
    `EXAMPLE_LON_LAT` (an area: a small square there)."""
    lon, lat = EXAMPLE_LON_LAT
    if theme.is_area:
        east, north = round(lon + 0.002, 6), round(lat + 0.002, 6)
        geometry = {"type": "Polygon", "coordinates": [[[lon, lat], [east, lat], [east, north],
                                                        [lon, north], [lon, lat]]]}
    else:
        geometry = {"type": "Point", "coordinates": [lon, lat]}
    props = {f.name: _example_value(f) for f in theme.writable_fields
             if (f.required and f.default is None) or f.name == theme.label}
    return {"type": "Feature", "geometry": geometry, "properties": props}


def _feature_schema(theme: Theme) -> dict:
    """What a client sends to create or replace an object of a theme (its receivables)."""
    props = {}
    for f in theme.writable_fields:
        schema = property_schema(f)
        schema.pop("x-ly-codelist", None)
        props[f.name] = schema
    required = [f.name for f in theme.writable_fields if f.required and f.default is None]
    return {
        "title": theme.title,
        "description": f"A GeoJSON Feature of {collection_path(theme)}; its full schema "
                       f"(returnables too) is {collection_path(theme, 'schema')}",
        "type": "object",
        "required": ["type", "geometry", "properties"],
        "properties": {
            "type": {"type": "string", "enum": ["Feature"]},
            "geometry": _geometry_schema(theme),
            "properties": {"type": "object", "properties": props,
                           **({"required": required} if required else {}),
                           "additionalProperties": True},
        },
        "example": example_feature(theme),
    }


def _schema_name(theme: Theme) -> str:
    return f"Feature_{theme.collection_id}"


def _json_body(schema: dict, description: str, types: tuple[str, ...] = (JSON,),
               example: dict | None = None) -> dict:
    medium = {"schema": schema, **({"example": example} if example is not None else {})}
    return {"required": True, "description": description,
            "content": {t: dict(medium) for t in types}}


def _point_body() -> dict:
    return _obj({"type": {"type": "string", "enum": ["Point"]},
                 "coordinates": _arr(NUM, minItems=2, maxItems=2)},
                description="Where the inspector stood (CRS84)")


def _bodies() -> dict[tuple[str, str], dict]:
    """The request body of every operation that reads one, but the feature writes (see
    `_feature_bodies`)."""
    nonblank = {"type": "string", "minLength": 1, "pattern": r"\S"}
    return {
        ("/aktivering", "put"): _json_body(_obj({
            "aktiv": BOOL,
            "begrundelse": {"type": "string", "minLength": 3, "maxLength": 500,
                            "pattern": r"\S.*\S|\S{3}", "description": "Why (3-500 characters)"},
        }), "The national activation switch as it is to be",
            example={"aktiv": True, "begrundelse": "Øvelse i Region Hovedstaden"}),
        ("/tildelinger", "post"): _json_body(_obj({
            "objekt_id": {**UUID_, "description": "An object to inspect"},
            "subjekt": {**nonblank, "description": "The inspector's subject"},
        }), "The object and the inspector"),
    }


def _feature_bodies(spec: dict) -> None:
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    refs = []
    for theme in themes.all_themes():
        schemas[_schema_name(theme)] = _feature_schema(theme)
        refs.append({"$ref": f"#/components/schemas/{_schema_name(theme)}"})
    feature = {"anyOf": refs} if len(refs) > 1 else refs[0]
    body = {"required": True, "description": "A GeoJSON Feature of the collection's theme",
            "content": {"application/geo+json": {"schema": feature},
                        "application/json": {"schema": feature}}}
    patch = {"required": True,
             "description": "A JSON merge patch (RFC 7396) of a Feature: the members given "
                            "replace the current version's",
             "content": {t: {"schema": {"type": "object"}}
                         for t in ("application/merge-patch+json", "application/json",
                                   "application/geo+json")}}
    items = spec["paths"].get(ITEMS, {})
    item = spec["paths"].get(ITEM, {})
    for op, value in ((items.get("post"), body), (item.get("put"), body),
                      (item.get("patch"), patch)):
        if op is not None:
            op["requestBody"] = value


# --- parameters ------------------------------------------------------------------------------

def _param(name: str, schema: dict, description: str = "", where: str = "query") -> dict:
    out = {"name": name, "in": where, "required": where == "path", "schema": schema}
    if description:
        out["description"] = description
    return out


CRS_URIS = list(crsmod.SUPPORTED)
F_JSON_HTML = {"type": "string", "enum": ["json", "html"]}
F_JSON = {"type": "string", "enum": ["json"]}
DIGITS = {"type": "string", "pattern": "^[0-9]+$"}


def _map_parameters() -> list[dict]:
    """The map page's: a municipality, and per theme code filters and the colouring (what
    `service.maps.choices` reads)."""
    out = [_param("kommune", {"type": "integer", "minimum": 100, "maximum": 999},
                  "Only this municipality's objects")]
    colours = sorted({maps.THEME_COLOUR} | {f.name for t in themes.all_themes()
                                            for f in maps.filter_fields(t, public=False)})
    out.append(_param(maps.COLOUR_PARAM, {"type": "string", "enum": colours},
                      "Colour every theme by this attribute (or the theme's colour)"))
    unqualified: dict[str, list[int]] = {}
    for t in themes.all_themes():
        fields = maps.filter_fields(t, public=False)
        own = sorted({maps.THEME_COLOUR} | {f.name for f in fields})
        out.append(_param(f"{t.collection_id}.{maps.COLOUR_PARAM}",
                          {"type": "string", "enum": own}, f"Colour {t.title.lower()} by this"))
        for f in fields:
            codes = _codes(f.codelist)
            out.append(_param(f"{t.collection_id}.{f.name}", {"type": "integer", "enum": codes},
                              f"Only {t.title.lower()} with this {f.name}"))
            unqualified.setdefault(f.name, []).extend(codes)
    for name, codes in sorted(unqualified.items()):
        out.append(_param(name, {"type": "integer", "enum": sorted(set(codes))},
                          f"Only objects with this {name}, in every theme that has it"))
    return out


_TILE_FILTERS = [
    _param("filter", STR, "CQL2 filter"),
    _param("filter-lang", {"type": "string", "enum": ["cql2-text", "cql2-json"]}),
    _param("filter-crs", {"type": "string", "enum": CRS_URIS}),
    _param("datetime", STR, "Instant or interval (as items)"),
    _param("asof", STR, "The register as it was at this instant"),
]


def _extra_parameters() -> dict[tuple[str, str], list[dict]]:
    """Parameters the routers read themselves: declared here so the document lists them."""
    content_crs = _param("Content-Crs", {"type": "string",
                                         "enum": [f"<{u}>" for u in CRS_URIS]},
                         "The CRS of the body's coordinates (default CRS84)", "header")
    if_match = _param("If-Match", STR, "The ETag of the version last read: the write is "
                                       "refused (412) if it is no longer current", "header")
    items, item, tile = ITEMS, ITEM, TILE
    return {
        (items, "post"): [content_crs],
        (item, "put"): [content_crs, if_match],
        (item, "patch"): [content_crs, if_match],
        (item, "delete"): [if_match],
        ("/mig", "get"): [_param("f", F_JSON)],
        ("/aktivering", "get"): [_param("f", F_JSON)],
        ("/koersler", "get"): [
            _param("art", {"type": "string", "enum": _RUN_ARTER}),
            _param("status", {"type": "string", "enum": _RUN_STATUSSER}),
            _param("kommunekode", DIGITS),
            _param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
            _param("f", F_JSON)],
        ("/koersler/{run_id}", "get"): [_param("f", F_JSON)],
        ("/kort", "get"): _map_parameters(),
        ("/rapporter/kommune/{kommunekode}", "get"): [
            _param("f", {"type": "string", "enum": ["html", "pdf", "json"]})],
        ("/rapporter/national", "get"): [
            _param("f", {"type": "string", "enum": ["html", "pdf", "json"]})],
        (COL + "/tiles/{tileMatrixSetId}", "get"): [
            *_TILE_FILTERS, *_queryable_parameters()],
        (tile, "get"): [*_queryable_parameters(),
                        _param("If-None-Match", STR, "An ETag of the tile (304 if it is "
                                                     "unchanged)", "header")],
    }


_UUID_PARAMS = {"featureId", "eftersyn_id", "foto_id", "mangel_id", "kampagne_id", "cursor",
                "objekt_id", "kampagne"}


def _parameter_schemas() -> dict[str, dict]:
    """Schemas of the parameters FastAPI declares as bare strings, by name (each name means
    the same wherever it is used)."""
    kodes = sorted({k for k, _ in checklist.load_templates()})
    return {
        "crs": {"type": "string", "enum": CRS_URIS},
        "bbox-crs": {"type": "string", "enum": CRS_URIS},
        "filter-crs": {"type": "string", "enum": CRS_URIS},
        "filter-lang": {"type": "string", "enum": ["cql2-text", "cql2-json"]},
        "tileMatrixSetId": {"type": "string", "enum": list(tiles.TILE_MATRIX_SETS)},
        "tileMatrix": DIGITS, "tileRow": DIGITS, "tileCol": DIGITS, "run_id": DIGITS,
        "kommunekode": {"type": "string", "pattern": "^[0-9]{3}$"},
        "name": {"type": "string", "enum": sorted(load_codelists())},
        "kode": {"type": "string", "enum": kodes},
        "bbox": {"type": "string",
                 "pattern": r"^[-+0-9.eE]+(,[-+0-9.eE]+){3}(,[-+0-9.eE]+){0,2}$",
                 "description": "minx,miny,maxx,maxy in bbox-crs (CRS84)"},
    }


def _f_schema(path: str, method: str) -> dict:
    """What `f` accepts on a resource."""
    if path.endswith("/items") and method == "get":
        return {"type": "string", "enum": ["json", "html", *export_formats.FORMATS]}
    if path.startswith("/rapporter/kampagner"):
        return {"type": "string", "enum": ["html", "csv", "xlsx"]}
    if path.endswith("{tileCol}"):
        return {"type": "string", "enum": ["mvt", "pbf"]}
    if path.startswith(("/tileMatrixSets", COL + "/tiles")):
        return F_JSON
    return F_JSON_HTML


def _complete_parameters(spec: dict) -> None:
    extra = _extra_parameters()
    by_name = _parameter_schemas()
    from service import openapi_eftersyn as workflow

    status_enums = workflow.STATUS_PARAMETERS
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            params = op.setdefault("parameters", [])
            params.extend(extra.get((path, method), []))
            for p in params:
                name, schema = p["name"], dict(p.get("schema", {}))
                if p["in"] == "query":  # a parameter is given or not; never null
                    schema.pop("nullable", None)
                schema.pop("title", None)
                bare = schema.get("type") == "string" and not (
                    {"enum", "format", "pattern"} & set(schema))
                if bare and name == "f":
                    schema = {**schema, **_f_schema(path, method)}
                elif bare and name in _UUID_PARAMS:
                    schema["format"] = "uuid"
                elif bare and name == "status" and path in status_enums:
                    schema["enum"] = status_enums[path]
                elif bare and name == "siden":
                    schema["format"] = "date-time"
                elif bare and name in by_name:
                    schema.update(by_name[name])
                p["schema"] = schema


# --- responses -------------------------------------------------------------------------------

def _content(*pairs: tuple[str, dict]) -> dict:
    return {media: {"schema": schema} for media, schema in pairs}


def _page(json_schema: dict, json_type: str = JSON) -> dict:
    """A resource offered as JSON and as an HTML page."""
    return _content((json_type, json_schema), (HTML, STR))


_R = tuple[str, dict | None]  # (description, content or None for an empty body)


def _success() -> dict[tuple[str, str], dict[int, _R]]:
    """The successful answers of each operation: description and content."""
    items, item, col, tile = ITEMS, ITEM, COL, TILE
    feature = _any_feature()
    exports = [(GEOJSON, _ref("FeatureCollection")), (HTML, STR)]
    exports += [(fmt.media_type.split(";")[0], BINARY)
                for name, fmt in export_formats.FORMATS.items() if name != "geojson"]
    written = ("The new version (absent, 204, when the writer may not read it back)",
               _content((GEOJSON, feature)))
    return {
        ("/", "get"): {200: ("Landing page", _page(_obj({"title": STR, "description": STR,
                                                         "links": LINKS})))},
        ("/conformance", "get"): {200: ("conformsTo", _page(_obj({"conformsTo": _arr(STR),
                                                                  "links": LINKS})))},
        ("/collections", "get"): {200: ("Collections", _page(_obj({
            "links": LINKS, "collections": _arr(_ref("Collection"))})))},
        (col, "get"): {200: ("The collection", _page(_ref("Collection")))},
        (f"{col}/queryables", "get"): {200: ("Queryables", _page(_json_schema_document(),
                                                                 SCHEMA_JSON))},
        (f"{col}/schema", "get"): {200: ("Schema", _page(_json_schema_document(),
                                                         SCHEMA_JSON))},
        ("/begreber", "get"): {200: ("Glossary", _page(_obj({
            "concepts": _arr(_obj({"term": STR, "gloss": _null(dict(STR)),
                                   "definition": STR, "source": _null(dict(STR))})),
            "links": LINKS})))},
        ("/kodelister", "get"): {200: ("Code lists", _page(_obj({
            "codelists": _arr(_codelist(with_links=False)), "links": LINKS})))},
        ("/kodelister/{name}", "get"): {200: ("A code list", _page(_codelist(True)))},
        ("/healthz", "get"): {200: ("Up", _content((JSON, _obj({"status": {
            "type": "string", "enum": ["ok"]}}))))},
        (items, "get"): {200: ("A page of objects (json, html); or an export of every "
                               "object that matches (geojson, csv, xlsx, gpkg, shp)",
                               _content(*exports))},
        (items, "post"): {201: ("Created; Location names the new object (no body when the "
                                "writer may not read it back)", _content((GEOJSON, feature)))},
        (items, "options"): {200: ("The Allow header", None)},
        (item, "get"): {200: ("The object", _page(feature, GEOJSON))},
        (item, "put"): {200: written, 204: ("Replaced; the writer may not read it back", None)},
        (item, "patch"): {200: written, 204: ("Updated; the writer may not read it back",
                                              None)},
        (item, "delete"): {204: ("Ended (its history stays)", None)},
        (item, "options"): {200: ("The Allow header", None)},
        (f"{item}/history", "get"): {200: ("Every version", _page(_ref("History"), GEOJSON))},
        ("/tileMatrixSets", "get"): {200: ("The tiling schemes", _content((JSON, _obj({
            "tileMatrixSets": _arr(_obj({"id": STR, "title": STR, "crs": STR, "uri?": STR,
                                         "links": LINKS})),
            "links": LINKS}))))},
        ("/tileMatrixSets/{tileMatrixSetId}", "get"): {
            200: ("The tile matrix set", _content((JSON, _tms())))},
        (f"{col}/tiles", "get"): {200: ("The tilesets", _content((JSON, _obj({
            "links": LINKS, "tilesets": _arr(_tileset_summary())}))))},
        (f"{col}/tiles/{{tileMatrixSetId}}", "get"): {
            200: ("Tileset metadata", _content((JSON, _tileset())))},
        (tile, "get"): {200: ("The tile", _content((MVT, BINARY))),
                        204: ("Nothing in the tile", None),
                        304: ("Not modified (If-None-Match)", None)},
        ("/mig", "get"): {200: ("The actor", _content((JSON, _actor())))},
        ("/aktivering", "get"): {200: ("Whether public shelter locations are public",
                                       _content((JSON, _activation())))},
        ("/aktivering", "put"): {200: ("The switch as now set",
                                       _content((JSON, _activation())))},
        ("/revision", "get"): {200: ("Audit entries, newest first", _page(_audit()))},
        ("/tildelinger", "get"): {200: ("Assignments", _content((JSON, _obj({
            "tildelinger": _arr(_obj({"objekt_id": UUID_, "subjekt": STR,
                                      "cvr_kode": _null(dict(INT)), "aktiv": BOOL,
                                      "tid": INSTANT, "tildelt_af": _null(dict(STR))}))}))))},
        ("/tildelinger", "post"): {201: ("Assigned", _content((JSON, _obj({
            "objekt_id": UUID_, "subjekt": STR}))))},
        ("/koersler", "get"): {200: ("Runs, newest first", _content((JSON, _obj({
            "koersler": _arr(_run(full=False)), "links": LINKS}))))},
        ("/koersler/{run_id}", "get"): {200: ("The run", _content((JSON, _run(full=True))))},
        ("/kort", "get"): {200: ("The map page", _content((HTML, STR)))},
        ("/rapporter/kommune/{kommunekode}", "get"): {200: ("The report", _content(
            (HTML, STR), (PDF, BINARY), (JSON, _report(national=False))))},
        ("/rapporter/national", "get"): {200: ("The report", _content(
            (HTML, STR), (PDF, BINARY), (JSON, _report(national=True))))},
    }


#: What a 4xx or 5xx means on any operation that answers it.
_PROBLEMS = {
    400: "A malformed or unknown query parameter, header or body; the problem names it",
    401: "Credentials that do not verify, or none where signing in is required",
    403: "Signed in, but the role, assurance level or scope does not allow it",
    404: "No such resource (or none the caller may see)",
    409: "The resource's state does not allow it",
    412: "If-Match does not name the current version",
    413: "The body is too large",
    415: "The body's Content-Type is not one the operation reads",
    414: "The URL is too long",
    422: "The body breaks a rule; the problem names the member",
    429: "Too many requests from this client this minute; Retry-After says when to try again",
    431: "The request's header fields are too large",
    503: "The database did not answer as expected; try again",
}
#: Statuses every operation may answer: unknown or malformed parameters, or a Host the service
#: does not answer to (400), credentials that do not verify (401, checked on every request),
#: the request's size (414, 431) and rate (429) at the edge, and the database failing (503).
_ALWAYS = (400, 401, 414, 429, 431, 503)
_BODY = (400, 413, 415, 422)


def _errors() -> dict[tuple[str, str], tuple[int, ...]]:
    """The problems each operation may answer besides `_ALWAYS`."""
    items, item, col, tile = ITEMS, ITEM, COL, TILE
    return {
        (col, "get"): (404,), (f"{col}/queryables", "get"): (404,),
        (f"{col}/schema", "get"): (404,), ("/kodelister/{name}", "get"): (404,),
        # 422: more objects match than an XLSX sheet holds
        (items, "get"): (404, 422), (items, "post"): (*_BODY, 403, 404, 412),
        (items, "options"): (404,), (item, "get"): (404,),
        (item, "put"): (*_BODY, 403, 404, 412), (item, "patch"): (*_BODY, 403, 404, 412),
        (item, "delete"): (403, 404, 412), (item, "options"): (404,),
        (f"{item}/history", "get"): (404,),
        ("/tileMatrixSets/{tileMatrixSetId}", "get"): (404,), (f"{col}/tiles", "get"): (404,),
        (f"{col}/tiles/{{tileMatrixSetId}}", "get"): (404,), (tile, "get"): (404,),
        ("/aktivering", "put"): (*_BODY, 403), ("/revision", "get"): (403,),
        ("/tildelinger", "post"): (*_BODY, 403, 404),
        ("/koersler", "get"): (403,), ("/koersler/{run_id}", "get"): (403, 404),
        ("/kort", "get"): (404,), ("/rapporter/kommune/{kommunekode}", "get"): (404,),
    }


def _complete_responses(spec: dict, success: dict, errors: dict) -> None:
    """Each operation's answers: its successes (`_success`; an operation missing there keeps
    what FastAPI says, which tests/test_fuzz.py refuses as undocumented) and its problems."""
    problem = {PROBLEM_MEDIA_TYPE: {"schema": _ref("Problem")}}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            declared = op.get("responses", {})
            ok = success.get((path, method))
            out: dict[str, dict] = {}
            if ok is None:
                out.update({k: v for k, v in declared.items() if k.startswith(("1", "2", "3"))})
            for status, (description, content) in sorted((ok or {}).items()):
                response = {"description": description}
                if content is not None:
                    response["content"] = content
                out[str(status)] = response
            for status in sorted({*_ALWAYS, *errors.get((path, method), ())}):
                mine = declared.get(str(status), {}).get("description")
                generic = mine in (None, "Validation Error", "Successful Response")
                out[str(status)] = {"description": _PROBLEMS[status] if generic else mine,
                                    "content": problem}
            op["responses"] = out


def build(app: FastAPI) -> dict:
    spec = get_openapi(title=app.title, version=app.version, description=app.description,
                       routes=app.routes, tags=app.openapi_tags)
    spec = _to_30(spec)
    spec["openapi"] = "3.0.3"
    components = spec.setdefault("components", {})
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                   "description": "OIDC access token from the identity broker (claims: sub, "
                                  "cvr, kommunekode, roles, loa). Writes need NSIS "
                                  "substantial or high."},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                   "description": "API key of a machine client (ly api-key create)."},
    }
    # Reading works without credentials (as the public); signing in widens what is seen.
    spec["security"] = [{}, {"bearer": []}, {"apiKey": []}]
    items = spec["paths"].get(ITEMS, {}).get("get")
    if items is not None:
        items.setdefault("parameters", []).extend(_queryable_parameters())
    schemas = components.setdefault("schemas", {})
    # FastAPI's parameter validation errors are answered as 400 problems (service.errors).
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    # The shelters' inspection workflow and the planner keep their parts of the document
    # themselves (the planner declares its parameters, body and answers on its routes).
    from service import openapi_eftersyn as workflow
    from service import openapi_planlaegning as planning_part

    schemas.update(_components())
    schemas.update(workflow.components())
    _feature_bodies(spec)
    bodies = {**_bodies(), **workflow.bodies()}
    for (path, method), body in bodies.items():
        op = spec["paths"].get(path, {}).get(method)
        if op is not None:
            op["requestBody"] = body
    _complete_parameters(spec)
    _complete_responses(spec, {**_success(), **workflow.success(), **planning_part.success()},
                        {**_errors(), **workflow.errors(), **planning_part.errors()})
    ids = [t.collection_id for t in themes.all_themes()]
    for path in spec["paths"].values():
        for op in path.values():
            for p in op.get("parameters", []):
                if p.get("name") == "collection_id":
                    p["description"] = "The collection: one per theme (GeoFA temakode)"
                    p["schema"] = {"type": "string", "enum": ids}
    return spec
