"""The HTTP edge: what every request meets before a route and every response gets after it.

Five ASGI layers wrap the whole application, FastAPI's error handling included, so that
every response has them, errors, static files and tiles as much as pages (`wrap`):

1. `Edge` (outermost): the request's size (a URL longer than `max_url_bytes` is a 414
   problem, header fields over `MAX_HEADER_BYTES` a 431 one, instead of the HTTP server's
   text/plain 400); the client, scheme and host behind a trusted proxy (X-Forwarded-For,
   -Proto and -Host honoured only from `LY_TRUSTED_PROXIES`); the host checked against
   `LY_ALLOWED_HOSTS` (400 problem), so that no Host header puts another name into links
   or `Location`; a nonce per response for the Content-Security-Policy
   (`request.state.csp_nonce`, `csp_nonce` in the templates). On every response:
   `X-Content-Type-Options`, `X-Frame-Options`, `Referrer-Policy`, the policy (not on a
   304, see `Conditional`), `Cache-Control` and `Vary`:
   - a signed-in request's (credentials present) responses are `private` (a route's own
     directives kept, `public` dropped), varying on the credentials;
   - the public's responses that set no Cache-Control of their own get one by what they
     are (`public_cache_control`, `CACHE_RULES`): the register's data a minute, what only
     a new release changes five minutes, vendored libraries a day, the health check,
     problems, redirects and writes `no-store` (a signed-in problem `private, no-store`);
   - every response but a static file's varies on `Accept` (JSON or HTML), `Accept-Encoding`
     and the credentials (Authorization, X-API-Key, Cookie); a static file's on
     `Accept-Encoding`.
2. Starlette's GZipMiddleware: gzip for a client that accepts it (GZIP_EXCLUDED: not what
   is compressed already or gains little).
3. `Conditional`: an ETag on every complete GET or HEAD 200, and `If-None-Match` answered
   304; streamed responses pass unbuffered.
4. Starlette's CORSMiddleware (`LY_CORS_ORIGINS`): anonymous GET and HEAD only.
5. `RateLimit`: requests per client and minute, counted in PostgreSQL (`ly.rate_limit`, an
   UNLOGGED table) so every worker shares the counters; a 429 problem with `Retry-After`
   (the seconds left of the client's minute, which starts at its first request).
   It runs before any authentication work; refused credentials (401) count per address.

The policy lets pages run scripts from Ly itself and inline scripts with the response's
nonce, nothing else (no 'unsafe-inline', no 'unsafe-eval'); style elements need the nonce
too, style attributes are allowed ('unsafe-inline' for style-src-attr: the templates, the
map's legend and Leaflet's layer control colour swatches with them). Images may come from
Ly, data: and blob: URLs (report charts, inspection photos) and the configured basemap's
host (`service.maps.basemap_origins`), nothing else from outside. ReDoc's page (`/redoc`)
alone may also start workers from blob: URLs and apply two style elements by their hashes
(REDOC_PATH).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
import secrets
import time
from dataclasses import dataclass

import anyio.to_thread
import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from datamodel.db import psycopg_url
from service.auth import API_KEY_HEADER, TOKEN_COOKIE
from service.errors import Problem, problem_response
from service.settings import Settings

log = logging.getLogger("ly.edge")

#: A URL has room for the rest of a request (path, other parameters) besides its filter...
URL_BASE_BYTES = 16 * 1024
#: ...and for a CQL2 filter geometry of LY_MAX_VERTICES vertices: a vertex in CQL2 text is
#: two numbers of up to 19 characters and a space and a comma percent-encoded (3 each),
#: in CQL2 JSON brackets and commas (3 each); 64 bytes hold either with room to spare.
URL_BYTES_PER_VERTEX = 64
#: Header fields of one request together (names, values, ": " and CRLF): a large token
#: from an identity broker is a few KiB.
MAX_HEADER_BYTES = 32 * 1024
#: The rate limits count per minute (fixed windows).
WINDOW_SECONDS = 60
#: Not counted: static files (a page loads several; no database work) and the health check.
UNCOUNTED_PREFIX = "/static/"
UNCOUNTED_PATHS = frozenset({"/healthz"})
#: What a signed-in response varies on: the credentials (service/auth.py).
CREDENTIAL_HEADERS = ("Authorization", "X-API-Key", "Cookie")
#: What every other response varies on besides: the format negotiated by Accept (JSON or
#: HTML, service/params.output_format) and the content coding (gzip); static files on
#: the coding only.
NEGOTIATED_HEADERS = ("Accept", "Accept-Encoding")
STATIC_VARY = ("Accept-Encoding",)

# --- caching of the public's responses -------------------------------------------------------
#: Cache-Control of a response to a request without credentials that sets none of its
#: own (tiles and exports do): a successful GET or HEAD (2xx, or 304) by what it is, the
#: first matching path; everything else (problems, redirects, writes, OPTIONS) `no-store`.
#: Signed-in responses are private (below), whatever they say.
NO_STORE = b"no-store"
#: The register's data (items, objects, history, collections with their extents, tileset
#: metadata, maps, reports): a minute, as tiles: edits and an activation must show soon.
CACHE_DATA = b"public, max-age=60"
#: What changes only with a new release of Ly: five minutes.
CACHE_DESCRIPTIVE = b"public, max-age=300"
#: Vendored libraries change only when upgraded (service/static/vendor/README.md): a day.
CACHE_VENDOR = b"public, max-age=86400"
CACHE_RULES: tuple[tuple[re.Pattern, bytes], ...] = (
    (re.compile(r"/static/vendor/"), CACHE_VENDOR),
    (re.compile(r"/static/"), CACHE_DESCRIPTIVE),
    (re.compile(r"/healthz$"), NO_STORE),
    (re.compile(r"/(conformance|openapi\.json|docs|redoc|begreber|kodelister(/[^/]+)?"
                r"|tileMatrixSets(/[^/]+)?|collections/[^/]+/(queryables|schema))?$"),
     CACHE_DESCRIPTIVE),
)


def public_cache_control(method: str, path: str, status: int) -> bytes:
    """Cache-Control of the public's response that has none of its own (`CACHE_RULES`)."""
    if method not in ("GET", "HEAD") or not (200 <= status < 300 or status == 304):
        return NO_STORE
    for pattern, value in CACHE_RULES:
        if pattern.match(path):
            return value
    return CACHE_DATA


# --- compression -----------------------------------------------------------------------------
#: Starlette's GZipMiddleware compresses every response of at least GZIP_MINIMUM_BYTES to a
#: client that accepts gzip (JSON, GeoJSON, HTML, CSS, JavaScript, CSV, Mapbox Vector
#: Tiles, streamed GeoJSON and CSV exports too: a streamed chunk is flushed as it goes),
#: but not these, which are compressed already or gain little: images, ZIP (Shapefile
#: exports), XLSX (a ZIP), GeoPackage exports (their pages are mostly geometry blobs, and a
#: client reads the file as it is), PDF.
GZIP_EXCLUDED = (*DEFAULT_EXCLUDED_CONTENT_TYPES, "application/geopackage+sqlite3",
                 "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                 "application/pdf", "application/octet-stream")
GZIP_MINIMUM_BYTES = 1024
#: zlib's default level: nearly level 9's size for GeoJSON at a fraction of its time.
GZIP_LEVEL = 6

_API_KEY = API_KEY_HEADER.encode()


def max_url_bytes(settings: Settings) -> int:
    """The longest URL (path and query) Ly answers: a CQL2 filter polygon of
    LY_MAX_VERTICES vertices fits (`filter=S_INTERSECTS(geometri,POLYGON((…)))`)."""
    return URL_BASE_BYTES + URL_BYTES_PER_VERTEX * settings.max_vertices


def uvicorn_options(settings: Settings) -> dict:
    """How `ly serve` runs uvicorn. h11, whose limit on a request's head is a setting, set
    above Ly's own limits so that Ly answers an over-long URL or header (414, 431 problems)
    instead of the server's text/plain 400; httptools refuses URLs over 64 KiB, less than a
    filter polygon of LY_MAX_VERTICES vertices takes. No uvicorn proxy headers: `Edge`
    honours X-Forwarded-* from LY_TRUSTED_PROXIES only."""
    return {
        "http": "h11",
        "h11_max_incomplete_event_size": max_url_bytes(settings) + MAX_HEADER_BYTES + 16 * 1024,
        "proxy_headers": False,
    }


# --- the policy -----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Policy:
    """What the edge derives from the settings (cached per settings object)."""

    csp_page: bytes  # with NONCE where the response's nonce goes
    csp_redoc: bytes  # the same, for ReDoc's page (REDOC_PATH)
    csp_other: bytes
    max_url: int
    hosts: frozenset[str]
    any_host: bool
    suffixes: tuple[str, ...]
    proxies: tuple


#: ReDoc's page (service/docs.py): its search index runs in a web worker made from a blob,
#: and two style elements it inserts as its script loads, before it is given the nonce
#: (an empty one and perfect-scrollbar's stylesheet), are allowed by their hashes (those
#: of the vendored ReDoc 2.5.4: tests/test_docs_browser.py sees any other refused).
REDOC_PATH = "/redoc"
REDOC_STYLE_HASHES = ("'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",
                      "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='")


def content_security_policy(settings: Settings, nonce: str | None,
                            blob_workers: bool = False) -> str:
    from service.maps import basemap_origins

    src = f" 'nonce-{nonce}'" if nonce else ""
    images = " ".join(("'self'", "data:", "blob:", *basemap_origins(settings)))
    return "; ".join((
        "default-src 'self'",
        f"script-src 'self'{src}",
        f"style-src 'self'{src}" + ("".join(" " + h for h in REDOC_STYLE_HASHES)
                                     if blob_workers else ""),
        "style-src-attr 'unsafe-inline'",
        f"img-src {images}",
        "font-src 'self'",
        "connect-src 'self'",
        "worker-src 'self' blob:" if blob_workers else "worker-src 'self'",
        "manifest-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ))


def _policy(settings: Settings) -> _Policy:
    hosts = settings.hosts
    return _Policy(
        csp_page=content_security_policy(settings, NONCE.decode()).encode(),
        csp_redoc=content_security_policy(settings, NONCE.decode(), blob_workers=True).encode(),
        csp_other=content_security_policy(settings, None).encode(),
        max_url=max_url_bytes(settings),
        hosts=frozenset(h for h in hosts if not h.startswith("*")),
        any_host="*" in hosts,
        suffixes=tuple(h[1:] for h in hosts if h.startswith("*.")),
        proxies=tuple(ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies),
    )


NONCE = b"{nonce}"
STATIC_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
]
_STATIC_NAMES = frozenset(k for k, _ in STATIC_HEADERS)


def _tokens(value: bytes) -> list[str]:
    return [t.strip() for t in value.decode("latin-1").split(",") if t.strip()]


def _private(value: bytes | None) -> bytes:
    """A Cache-Control value made private: `public` (and `s-maxage`) dropped."""
    if value is None:
        return b"private"
    kept = [t for t in _tokens(value)
            if t.lower() != "public" and not t.lower().startswith("s-maxage")]
    if not any(t.lower() == "private" for t in kept):
        kept.insert(0, "private")
    return ", ".join(kept).encode("latin-1")


def _vary(value: bytes | None, names: tuple[str, ...] = CREDENTIAL_HEADERS) -> bytes:
    """A Vary value with `names` added (once, whatever their case)."""
    tokens = _tokens(value) if value else []
    have = {t.lower() for t in tokens}
    if "*" in have:
        return value
    tokens += [h for h in names if h.lower() not in have]
    return ", ".join(tokens).encode("latin-1")


def _host_name(host: bytes) -> str:
    text = host.decode("latin-1").strip().lower()
    if text.startswith("["):  # [::1]:8000
        return text[1:].split("]", 1)[0]
    if text.count(":") == 1:
        return text.split(":", 1)[0]
    return text


def _problem(status: int, detail: str, kind: str, field: str,
             headers: dict | None = None) -> Problem:
    return Problem(status, detail, kind=kind, errors=[{"field": field, "detail": detail}],
                   headers=headers)


class Edge:
    """Size limits, trusted proxies, the host check, the nonce and every response's headers."""

    def __init__(self, app: ASGIApp, owner) -> None:
        self.app = app
        self.owner = owner  # the FastAPI application: its state holds the settings
        self._cached: tuple[Settings, _Policy] | None = None
        self._trusted: dict[str, bool] = {}
        self._hosts: dict[bytes, bool] = {}

    def policy(self) -> _Policy:
        settings = self.owner.state.settings
        cached = self._cached
        if cached is None or cached[0] is not settings:
            cached = self._cached = (settings, _policy(settings))
            self._trusted, self._hosts = {}, {}
        return cached[1]

    def _is_proxy(self, policy: _Policy, address: str) -> bool:
        known = self._trusted.get(address)
        if known is None:
            try:
                ip = ipaddress.ip_address(address)
                known = any(ip in net for net in policy.proxies)
            except ValueError:
                known = False
            if len(self._trusted) > 4096:
                self._trusted.clear()
            self._trusted[address] = known
        return known

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self.policy()
        header_bytes = 0
        host = None
        signed_in = forwarded = False
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value) + 4
            if name == b"host":
                host = value
            elif name == b"authorization" or name == _API_KEY:
                signed_in = True
            elif name == b"cookie":
                if _token_cookie(value) is not None:
                    signed_in = True
            elif name.startswith(b"x-forwarded-"):
                forwarded = True
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce
        send = self._sender(send, policy, nonce, signed_in, scope)

        url_bytes = len(scope.get("raw_path") or scope["path"].encode()) \
            + len(scope["query_string"]) + 1
        problem = None
        if url_bytes > policy.max_url:
            problem = _problem(414, f"the URL has {url_bytes} bytes; at most {policy.max_url} "
                               "are accepted (a filter geometry may have LY_MAX_VERTICES "
                               "vertices)", "uri-too-long", "url")
        elif header_bytes > MAX_HEADER_BYTES:
            problem = _problem(431, f"the header fields have {header_bytes} bytes together; "
                               f"at most {MAX_HEADER_BYTES} are accepted",
                               "header-fields-too-large", "headers")
        else:
            if forwarded and policy.proxies and scope.get("client") \
                    and self._is_proxy(policy, scope["client"][0]):
                host = self._forwarded(scope, policy, host)
            if host is not None and not self._host_allowed(policy, host):
                shown = host.decode("latin-1")[:100]
                problem = _problem(400, f"Host: {shown!r} is not a name of this service "
                                   "(LY_ALLOWED_HOSTS)", "invalid-host", "Host")
        if problem is not None:
            await problem_response(problem, scope["path"])(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _host_allowed(self, policy: _Policy, host: bytes) -> bool:
        known = self._hosts.get(host)
        if known is None:
            name = _host_name(host)
            known = policy.any_host or name in policy.hosts or (
                bool(policy.suffixes) and name.endswith(policy.suffixes))
            if len(self._hosts) > 1024:  # the allowed few, and whatever else is sent
                self._hosts.clear()
            self._hosts[host] = known
        return known

    def _forwarded(self, scope: Scope, policy: _Policy, host: bytes | None) -> bytes | None:
        """X-Forwarded-For/-Proto/-Host of a trusted proxy applied to the scope; the host."""
        new_host = None
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                client = None
                # From the right: the first address that is not one of our proxies.
                for part in reversed(value.decode("latin-1").split(",")):
                    part = part.strip()
                    try:
                        ipaddress.ip_address(part)
                    except ValueError:
                        break
                    client = part
                    if not self._is_proxy(policy, part):
                        break
                if client:
                    scope["client"] = (client, 0)
            elif name == b"x-forwarded-proto":
                proto = value.decode("latin-1").split(",")[0].strip().lower()
                if proto in ("http", "https"):
                    scope["scheme"] = proto
            elif name == b"x-forwarded-host":
                new_host = value.split(b",")[0].strip()
        if new_host:
            scope["headers"] = [(k, new_host if k == b"host" else v)
                                for k, v in scope["headers"]]
            if host is None:
                scope["headers"].append((b"host", new_host))
            return new_host
        return host

    @staticmethod
    def _sender(send: Send, policy: _Policy, nonce: str, signed_in: bool,
                scope: Scope) -> Send:
        method, path = scope["method"], scope["path"]
        static = path.startswith(UNCOUNTED_PREFIX)
        vary_names = (STATIC_VARY if static else NEGOTIATED_HEADERS) + \
            (CREDENTIAL_HEADERS if signed_in or not static else ())

        async def sender(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                names = set()
                html = False
                cache = vary = None
                for i, (name, value) in enumerate(headers):
                    name = name.lower()
                    names.add(name)
                    if name == b"content-type":
                        html = value.startswith(b"text/html")
                    elif name == b"cache-control":
                        cache = i
                    elif name == b"vary":
                        vary = i
                if not names.isdisjoint(_STATIC_NAMES):
                    headers += [h for h in STATIC_HEADERS if h[0] not in names]
                else:
                    headers += STATIC_HEADERS
                # Not on a 304: a cache keeps the stored page's policy, whose nonce is the
                # one in that page (RFC 9111 4.3.4 would replace it with this response's).
                if b"content-security-policy" not in names and status != 304:
                    if html:
                        csp = policy.csp_redoc if path == REDOC_PATH else policy.csp_page
                        csp = csp.replace(NONCE, nonce.encode())
                    else:
                        csp = policy.csp_other
                    headers.append((b"content-security-policy", csp))
                if cache is None:
                    value = public_cache_control(method, path, status)
                    if signed_in and value != NO_STORE and not static:
                        value = None  # private, as it was (a static file is everyone's)
                    if value is not None:
                        cache = len(headers)
                        headers.append((b"cache-control", value))
                if signed_in:
                    if cache is None:
                        headers.append((b"cache-control", b"private"))
                    else:
                        headers[cache] = (b"cache-control", _private(headers[cache][1]))
                if vary is None:
                    headers.append((b"vary", _vary(None, vary_names)))
                else:
                    headers[vary] = (b"vary", _vary(headers[vary][1], vary_names))
                message["headers"] = headers
            await send(message)

        return sender


# --- validators and conditional requests ---------------------------------------------------

_ENTITY_TAGS = re.compile(rb'\*|(?:W/)?"[^"]*"')
#: What a 304 keeps of the 200 it stands for (RFC 9110 15.4.5: the fields a 200 would have
#: sent that a cache updates its stored response with; CORS for a cross-origin reader).
NOT_MODIFIED_KEEPS = frozenset({b"etag", b"cache-control", b"vary", b"link",
                                b"content-location", b"expires", b"last-modified", b"date"})
_TIMESTAMP = b'"timeStamp":"'
#: Bodies from this size on are hashed in a worker thread, not in the event loop.
HASH_IN_THREAD_BYTES = 256 * 1024


def _opaque(tag: bytes) -> bytes:
    return tag[2:] if tag.startswith(b"W/") else tag


def none_match(header: bytes, etag: bytes) -> bool:
    """Whether If-None-Match `header` names `etag` (weak comparison, RFC 9110 13.1.2)."""
    wanted = _opaque(etag)
    for tag in _ENTITY_TAGS.findall(header):
        if tag == b"*" or _opaque(tag) == wanted:
            return True
    return False


def _validated_bytes(body: bytes, html: bool, json: bool, nonce: bytes) -> bytes:
    """The part of a body that says whether it changed: an HTML page without its nonce (a
    new one in every response), a JSON document without its `timeStamp` (an items page's
    time of answering, OGC API Features 7.15.6)."""
    if html and nonce:
        return body.replace(nonce, b"")
    if json:
        at = body.rfind(_TIMESTAMP)
        if at >= 0:
            end = body.find(b'"', at + len(_TIMESTAMP))
            if end > 0:
                return body[:at] + body[end + 1:]
    return body


def body_etag(body: bytes) -> bytes:
    """A weak ETag of (the validated part of) a body: weak, as the bytes sent differ in
    what is left out of it, and in their coding (gzip or not)."""
    return b'W/"' + hashlib.blake2b(body, digest_size=16).hexdigest().encode() + b'"'


class Conditional:
    """An ETag on every complete (not streamed) GET or HEAD 200 response and `If-None-Match`
    answered with 304 (no body; ETag, Cache-Control, Vary and Link kept; the edge adds
    no Content-Security-Policy to it).

    The ETag is the route's when it set one (an object's `"<versions_id>"`, which If-Match
    on writes compares, service/transactions.py; a tile's hash), except on an HTML page,
    whose bytes change with every response's nonce and which shows more than the object's
    version (navigation, the signed-in user); otherwise a weak hash of the body
    (`body_etag`). A response whose first body message says more follows (a
    StreamingResponse: exports, static files) passes through untouched, unbuffered;
    StaticFiles answers If-None-Match itself.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        condition = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                condition = value if condition is None else condition + b"," + value
        nonce = (scope.get("state") or {}).get("csp_nonce") or ""
        start: Message | None = None
        passing = False

        async def sender(message: Message) -> None:
            nonlocal start, passing
            if passing:
                await send(message)
                return
            kind = message["type"]
            if start is None:
                if kind == "http.response.start":
                    if message["status"] == 200:
                        start = message  # held until the first body message says what follows
                        return
                    passing = True
                await send(message)  # another status, or a message before the response
                return
            passing = True
            body = message.get("body", b"")
            if kind != "http.response.body" or message.get("more_body", False) or not body:
                await send(start)
                await send(message)
                return
            await self._complete(start, message, body, condition, nonce.encode(), send)

        await self.app(scope, receive, sender)

    @staticmethod
    async def _complete(start: Message, message: Message, body: bytes,
                        condition: bytes | None, nonce: bytes, send: Send) -> None:
        headers = list(start.get("headers", ()))
        ctype = b""
        at = None
        for i, (name, value) in enumerate(headers):
            name = name.lower()
            if name == b"content-type":
                ctype = value.lower()
            elif name == b"etag":
                at = i
        html = ctype.startswith(b"text/html")
        if at is None or html:
            def tag() -> bytes:
                return body_etag(_validated_bytes(body, html, b"json" in ctype, nonce))

            # BLAKE2b hashes some 600 MB a second: a large page's in a worker thread.
            etag = tag() if len(body) < HASH_IN_THREAD_BYTES else \
                await anyio.to_thread.run_sync(tag)
            if at is None:
                headers.append((b"etag", etag))
            else:
                headers[at] = (b"etag", etag)
        else:
            etag = headers[at][1]
        if condition is not None and none_match(condition, etag):
            kept = [(k, v) for k, v in headers
                    if k.lower() in NOT_MODIFIED_KEEPS or k.lower().startswith(b"access-control-")]
            await send({**start, "status": 304, "headers": kept})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({**start, "headers": headers})
        await send(message)


# --- rate limits ----------------------------------------------------------------------------

#: A key's window starts at its first request and lasts WINDOW_SECONDS (then the next
#: request starts a new one): fixed windows, on the database's clock, the same for every worker.
_CURRENT = f"r.started > now() - interval '{WINDOW_SECONDS} seconds'"


def _left(alias: str) -> str:
    return (f"greatest(1, ceil(extract(epoch FROM {alias}.started + "
            f"interval '{WINDOW_SECONDS} seconds' - now())))::integer")


#: One statement per request: the refused-credential count of the client's address, and
#: (unless that is at its limit) the request counted under its key; seconds left of the window.
HIT_SQL = f"""
WITH bad AS (SELECT r.hits, r.started FROM ly.rate_limit r
             WHERE r.key = %(bad)s::text AND {_CURRENT}),
hit AS (
  INSERT INTO ly.rate_limit AS r (key, started, hits)
  SELECT %(key)s::text, now(), 1
  WHERE %(key)s::text IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM bad WHERE bad.hits >= %(bad_limit)s::integer)
  ON CONFLICT (key) DO UPDATE
    SET hits = CASE WHEN {_CURRENT} THEN r.hits + 1 ELSE 1 END,
        started = CASE WHEN {_CURRENT} THEN r.started ELSE now() END
  RETURNING r.hits, r.started)
SELECT h.hits, b.hits, {_left("h")}, {_left("b")}
FROM (SELECT 1) one LEFT JOIN hit h ON true LEFT JOIN bad b ON true"""

BAD_SQL = f"""
INSERT INTO ly.rate_limit AS r (key, started, hits) VALUES (%s, now(), 1)
ON CONFLICT (key) DO UPDATE
  SET hits = CASE WHEN {_CURRENT} THEN r.hits + 1 ELSE 1 END,
      started = CASE WHEN {_CURRENT} THEN r.started ELSE now() END"""

CLEANUP_SQL = f"DELETE FROM ly.rate_limit r WHERE NOT ({_CURRENT})"


def _credential(headers) -> bytes | None:
    """The credentials of a request (bearer token, API key or token cookie), if any."""
    found = None
    for name, value in headers:
        if name == b"authorization" or name == _API_KEY:
            return value
        if name == b"cookie":
            found = _token_cookie(value) or found
    return found


def _token_cookie(value: bytes) -> bytes | None:
    """The sign-in cookie's value in a Cookie header, parsed as authentication parses it
    (Starlette's cookie parser: `ly_token =x` is the cookie too), or None."""
    token = cookie_parser(value.decode("latin-1")).get(TOKEN_COOKIE)
    return None if token is None else token.encode("latin-1")


class RateLimit:
    """Requests per minute per client: by address without credentials, by credential (a hash
    of it) when signed in; 401s per address, past whose limit requests with credentials
    from that address get 429. The counters are rows of `ly.rate_limit`, one upsert per
    request on the counters' own pool (`make_counter_pool`), outside any actor's transaction. Should the
    database not answer, requests go through (the route will say what is wrong)."""

    def __init__(self, app: ASGIApp, owner) -> None:
        self.app = app
        self.owner = owner
        self._next_cleanup = 0.0
        self._warned = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        settings: Settings = self.owner.state.settings
        if path.startswith(UNCOUNTED_PREFIX) or path in UNCOUNTED_PATHS:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = client[0] if client else "-"
        credential = _credential(scope["headers"])
        if credential is None:
            limit, bad_limit = settings.rate_limit_anonymous, 0
            key = f"a:{address}" if limit else None
        else:
            limit, bad_limit = settings.rate_limit_signed_in, settings.rate_limit_bad_token
            key = "s:" + hashlib.sha256(credential).hexdigest()[:32] if limit else None
        if key is None and not bad_limit:
            await self.app(scope, receive, send)
            return
        bad_key = f"b:{address}" if bad_limit else None
        row = await self._run(HIT_SQL, {"key": key, "bad": bad_key,
                                        "bad_limit": bad_limit or None}, fetch=True)
        if row is not None:
            hits, bad, hit_left, bad_left = row
            refused = None
            if bad_limit and bad is not None and bad >= bad_limit:
                retry = bad_left
                refused = ("Authorization", f"too many refused credentials from this address "
                           f"(at most {bad_limit} a minute); try again in {retry} s")
            elif limit and hits is not None and hits > limit:
                retry = hit_left
                refused = ("Authorization" if credential else "request",
                           f"too many requests (at most {limit} a minute"
                           f"{' per credential' if credential else ' per address'}); "
                           f"try again in {retry} s")
            if refused:
                p = _problem(429, refused[1], "too-many-requests", refused[0],
                             headers={"Retry-After": str(retry)})
                await problem_response(p, path)(scope, receive, send)
                return
        if bad_key:
            send = self._counting_401s(send, bad_key)
        await self.app(scope, receive, send)

    def _counting_401s(self, send: Send, bad_key: str) -> Send:
        async def sender(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                await self._run(BAD_SQL, [bad_key])
            await send(message)

        return sender

    async def _run(self, sql: str, params, fetch: bool = False):
        pool = self.owner.state.counter_pool
        if pool is None:
            return None
        try:
            async with pool.connection(timeout=COUNTER_WAIT_SECONDS) as conn:
                cur = await conn.execute(sql, params)
                row = await cur.fetchone() if fetch else None
                now = time.monotonic()
                if now >= self._next_cleanup:
                    self._next_cleanup = now + WINDOW_SECONDS
                    await conn.execute(CLEANUP_SQL)
                return row
        except (psycopg.Error, PoolTimeout) as exc:
            now = time.monotonic()
            if now >= self._warned:  # at most once a minute
                self._warned = now + 60
                log.warning("rate limits not applied: %s", type(exc).__name__)
            return None


#: How long a request waits for a counter connection before it goes through uncounted.
COUNTER_WAIT_SECONDS = 2.0


def make_counter_pool(settings: Settings) -> AsyncConnectionPool | None:
    """The counters' own small pool (None when every limit is off): autocommit connections,
    so an upsert is one round trip, and no check on checkout (a broken connection fails
    that one count, which lets its request through, and the pool replaces it)."""
    if not (settings.rate_limit_anonymous or settings.rate_limit_signed_in
            or settings.rate_limit_bad_token):
        return None
    return AsyncConnectionPool(psycopg_url(settings.database_url), min_size=1, max_size=4,
                               open=False, kwargs={"autocommit": True,
                                                   "prepare_threshold": 1},
                               name="ly-rate-limit")


def wrap(app: ASGIApp, owner) -> ASGIApp:
    """The edge around an application's middleware stack (see the module's docstring)."""
    settings: Settings = owner.state.settings
    inner: ASGIApp = RateLimit(app, owner)
    if settings.cors_origins:
        inner = CORSMiddleware(
            inner, allow_origins=settings.cors_origins, allow_methods=["GET", "HEAD"],
            allow_headers=["Accept", "Accept-Language", "If-None-Match"],
            allow_credentials=False,
            expose_headers=["Content-Crs", "ETag", "Link", "Content-Disposition",
                            "Retry-After"],
            max_age=3600)
    # Validators on the uncompressed bytes, compression of what leaves them (a 304 is empty).
    inner = Conditional(inner)
    inner = GZipMiddleware(inner, minimum_size=GZIP_MINIMUM_BYTES, compresslevel=GZIP_LEVEL,
                           exclude_content_types=GZIP_EXCLUDED)
    return Edge(_AcceptEncoding(inner), owner)


def accepts_gzip(value: bytes) -> bool:
    """Whether an Accept-Encoding field admits gzip (RFC 9110 12.5.3: codings are
    case-insensitive, `q=0` refuses one, `*` stands for any not named)."""
    star = None
    for element in value.decode("latin-1").split(","):
        coding, _, params = element.partition(";")
        coding = coding.strip().lower()
        q = 1.0
        for param in params.split(";"):
            key, _, number = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(number.strip())
                except ValueError:
                    q = 0.0
        if coding in ("gzip", "x-gzip"):
            return q > 0
        if coding == "*":
            star = q > 0
    return bool(star)


class _AcceptEncoding:
    """Accept-Encoding as GZipMiddleware reads it (the substring `gzip`, case-sensitive, `q`
    ignored): `gzip` when the client admits it, nothing otherwise."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = [v for n, v in scope["headers"] if n == b"accept-encoding"]
            if given:
                headers = [(n, v) for n, v in scope["headers"] if n != b"accept-encoding"]
                if accepts_gzip(b",".join(given)):
                    headers.append((b"accept-encoding", b"gzip"))
                scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)
