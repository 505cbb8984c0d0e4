"""Small HTTP helpers: base URLs, links, JSON and HTML responses."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import orjson
from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from datamodel import themes

GEOJSON = "application/geo+json"
JSON = "application/json"
HTML = "text/html"
OPENAPI_JSON = "application/vnd.oai.openapi+json;version=3.0"
SCHEMA_JSON = "application/schema+json"

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
#: Every page's navigation lists the registered themes.
templates.env.globals["all_themes"] = themes.all_themes


def base_url(request: Request) -> str:
    public = request.app.state.settings.public_url
    return (public or str(request.base_url)).rstrip("/")


def url(request: Request, path: str, **params) -> str:
    query = {k: v for k, v in params.items() if v is not None}
    return base_url(request) + path + ("?" + urlencode(query) if query else "")


def link(href: str, rel: str, type_: str, title: str | None = None) -> dict:
    out = {"href": href, "rel": rel, "type": type_}
    if title:
        out["title"] = title
    return out


def self_links(request: Request, path: str, json_type: str = JSON, **params) -> list[dict]:
    """`self` and `alternate` links for a resource offered as JSON and HTML."""
    return [
        link(url(request, path, f="json", **params), "self", json_type, "Dette dokument"),
        link(url(request, path, f="html", **params), "alternate", HTML, "Som HTML"),
    ]


def json_response(data, status: int = 200, media_type: str = JSON, headers=None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=media_type,
                    headers=headers)


def html_response(request: Request, template: str, status: int = 200, headers=None,
                  **context) -> Response:
    context.setdefault("settings", request.app.state.settings)
    context.setdefault("actor", getattr(request.state, "actor", None))
    # The response's Content-Security-Policy nonce (service/edge.py), for inline scripts.
    context.setdefault("csp_nonce", getattr(request.state, "csp_nonce", ""))
    return templates.TemplateResponse(request, template, context, status_code=status,
                                      headers=headers)
