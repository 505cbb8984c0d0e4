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


#: The most bytes a Link header takes. A reverse proxy holds a response's whole header in
#: one buffer (nginx's proxy_buffer_size: 4 KiB on most systems, or 8), and answers 502 when
#: it does not fit; the policy and the rest take some 1.5 KiB. Ly's resources' links take
#: about 1 KiB; an items page with a long filter repeats it in every link, and then the
#: header carries those that fit, by `LINK_PRIORITY` (the document has all of them).
LINK_HEADER_MAX_BYTES = 2048
#: Which links a full Link header keeps first (then the rest, in the document's order): the
#: paging links before `self`, so a client paging by the header never stops early.
LINK_PRIORITY = ("next", "prev", "self", "first", "alternate", "collection")


def _link_value(lk: dict) -> str:
    part = f"<{lk['href']}>; rel={_quoted(lk['rel'])}"
    if lk.get("type"):
        part += f"; type={_quoted(lk['type'])}"
    title = lk.get("title")
    if title:
        if title.isascii():
            part += f"; title={_quoted(title)}"
        else:
            part += f"; title*=UTF-8''{quote(title, safe='')}"
    return part


def link_header(links: list[dict] | None,
                max_bytes: int = LINK_HEADER_MAX_BYTES) -> str | None:
    """The `Link` header (RFC 8288) mirroring a resource's links: `<href>; rel=…; type=…;
    title=…`, with a non-ASCII title as `title*` (RFC 8187), since a header is Latin-1; in
    the document's order, at most `max_bytes` (those that fit, by LINK_PRIORITY)."""
    if not links:
        return None
    parts = [_link_value(lk) for lk in links]
    rank = {rel: n for n, rel in enumerate(LINK_PRIORITY)}
    order = sorted(range(len(parts)),
                   key=lambda i: (rank.get(links[i].get("rel"), len(rank)), i))
    chosen, size = set(), 0
    for i in order:
        cost = len(parts[i].encode("latin-1", "replace")) + (2 if chosen else 0)
        if size + cost <= max_bytes:
            chosen.add(i)
            size += cost
    return ", ".join(parts[i] for i in sorted(chosen)) or None


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
