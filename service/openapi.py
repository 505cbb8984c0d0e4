"""The API definition as an OpenAPI 3.0 document, self-contained (no remote `$ref`).

FastAPI emits OpenAPI 3.1; OGC API - Features `oas30` asks for 3.0, so nullable unions are
rewritten to `nullable: true`, 3.1-only keywords are folded, and the queryable filter
parameters are declared on the items operation.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from datamodel.fields import SHELTER_FIELDS
from service.collection import COLLECTION_ID, property_schema


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


def _queryable_parameters() -> list[dict]:
    out = []
    for f in SHELTER_FIELDS:
        schema = property_schema(f)
        schema.pop("readOnly", None)
        schema.pop("x-ly-codelist", None)
        out.append({"name": f.name, "in": "query", "required": False, "style": "form",
                    "explode": False, "description": f"Only shelters whose {f.name} equals this",
                    "schema": {k: v for k, v in schema.items() if k != "title"}})
    return out


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
    for path in spec["paths"].values():
        for op in path.values():
            for p in op.get("parameters", []):
                if p.get("name") == "collection_id":
                    p["schema"] = {"type": "string", "enum": [COLLECTION_ID]}
    return spec
