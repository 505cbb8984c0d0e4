"""The API definition as an OpenAPI 3.0 document, self-contained (no remote `$ref`).

FastAPI emits OpenAPI 3.1; OGC API - Features `oas30` asks for 3.0, so nullable unions are
rewritten to `nullable: true`, 3.1-only keywords are folded, and the queryable filter
parameters are declared on the items operation. Every registered theme is a collection: the
`collection_id` path parameter enumerates them, the queryables are every theme's attributes,
and the bodies of create and replace are one Feature schema per theme.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from datamodel import themes
from datamodel.themes import Theme
from service.collection import path as collection_path
from service.collection import property_schema


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
            "properties": {"type": "object", "properties": props, "required": required,
                           "additionalProperties": True},
        },
    }


def _schema_name(theme: Theme) -> str:
    return f"Feature_{theme.collection_id}"


def _request_bodies(spec: dict) -> None:
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
    items = spec["paths"].get("/collections/{collection_id}/items", {})
    item = spec["paths"].get("/collections/{collection_id}/items/{featureId}", {})
    for op, value in ((items.get("post"), body), (item.get("put"), body),
                      (item.get("patch"), patch)):
        if op is not None:
            op["requestBody"] = value


def build(app: FastAPI) -> dict:
    spec = get_openapi(title=app.title, version=app.version, description=app.description,
                       routes=app.routes, tags=app.openapi_tags)
    spec = _to_30(spec)
    spec["openapi"] = "3.0.3"
    spec.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                   "description": "OIDC access token from the identity broker (claims: sub, "
                                  "cvr, kommunekode, roles, loa). Writes need NSIS "
                                  "substantial or high."},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                   "description": "API key of a machine client (ly api-key create)."},
    }
    # Reading works without credentials (as the public); signing in widens what is seen.
    spec["security"] = [{}, {"bearer": []}, {"apiKey": []}]
    items = spec["paths"].get("/collections/{collection_id}/items", {}).get("get")
    if items is not None:
        items.setdefault("parameters", []).extend(_queryable_parameters())
    _request_bodies(spec)
    ids = [t.collection_id for t in themes.all_themes()]
    for path in spec["paths"].values():
        for op in path.values():
            for p in op.get("parameters", []):
                if p.get("name") == "collection_id":
                    p["description"] = "The collection: one per theme (GeoFA temakode)"
                    p["schema"] = {"type": "string", "enum": ids}
    return spec
