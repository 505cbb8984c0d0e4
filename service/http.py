"""Small HTTP helpers: base URLs, links, JSON and HTML responses."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlencode

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


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def link_header(links: list[dict] | None) -> str | None:
    """The `Link` header (RFC 8288) mirroring a resource's links: `<href>; rel=…; type=…;
    title=…`, with a non-ASCII title as `title*` (RFC 8187), since a header is Latin-1."""
    if not links:
        return None
    parts = []
    for lk in links:
        part = f"<{lk['href']}>; rel={_quoted(lk['rel'])}"
        if lk.get("type"):
            part += f"; type={_quoted(lk['type'])}"
        title = lk.get("title")
        if title:
            if title.isascii():
                part += f"; title={_quoted(title)}"
            else:
                part += f"; title*=UTF-8''{quote(title, safe='')}"
        parts.append(part)
    return ", ".join(parts)


def with_links(headers: dict | None, links: list[dict] | None) -> dict | None:
    """`headers` with the Link header of `links` added (a copy; None stays None without links)."""
    value = link_header(links)
    if value is None:
        return headers
    return {**(headers or {}), "Link": value}


def _links_of(data) -> list[dict] | None:
    if isinstance(data, dict) and isinstance(data.get("links"), list):
        return data["links"]
    return None


def json_response(data, status: int = 200, media_type: str = JSON, headers=None) -> Response:
    """JSON; a document with `links` also gets them as a Link header."""
    return Response(orjson.dumps(data), status_code=status, media_type=media_type,
                    headers=with_links(headers, _links_of(data)))


def html_response(request: Request, template: str, status: int = 200, headers=None,
                  **context) -> Response:
    context.setdefault("settings", request.app.state.settings)
    context.setdefault("actor", getattr(request.state, "actor", None))
    # The response's Content-Security-Policy nonce (service/edge.py), for inline scripts.
    context.setdefault("csp_nonce", getattr(request.state, "csp_nonce", ""))
    # The page's links (its own, or the document's it shows) as a Link header too.
    links = context.get("links") if isinstance(context.get("links"), list) \
        else _links_of(context.get("data"))
    return templates.TemplateResponse(request, template, context, status_code=status,
                                      headers=with_links(headers, links))
