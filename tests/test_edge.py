"""The HTTP edge (service/edge.py): security headers on every response, the
Content-Security-Policy's nonces, Cache-Control for signed-in requests, trusted hosts and
proxies, rate limits shared by the workers (PostgreSQL), CORS, and request size limits
answered with problems by a real uvicorn run as `ly serve` runs it.

Tests that trip a rate limit run on a fresh database of their own: the counters live in the
database, and the shared read-only one serves the rest of the suite.
"""

from __future__ import annotations

import http.client
import json
import math
import re
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service import edge
from service.app import create_app
from service.settings import Settings
from tests.conftest import ADMIN_HEADERS, ITEMS, LiveServer, bearer, make_settings, query, token

PROBLEM = "application/problem+json"
TEMPLATES = Path(__file__).resolve().parent.parent / "service" / "templates"
SECURITY = {"x-content-type-options": "nosniff", "x-frame-options": "DENY",
            "referrer-policy": "strict-origin-when-cross-origin"}


def _secured(r) -> None:
    for name, value in SECURITY.items():
        assert r.headers.get(name) == value, (r.status_code, name, dict(r.headers))
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in _directive(csp, "script-src")
    assert "'unsafe-eval'" not in csp


def _directive(csp: str, name: str) -> str:
    for part in csp.split(";"):
        words = part.split()
        if words and words[0] == name:
            return " ".join(words[1:])
    raise AssertionError(f"no {name} in {csp}")


def _problem(r, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"] == PROBLEM, r.headers.get("content-type")
    body = r.json()
    assert body["status"] == status and body["detail"]
    return body


def Server(app, **options) -> LiveServer:
    """An app under a real uvicorn with uvicorn's `options` (as `ly serve` runs it)."""
    return LiveServer(app=app, uvicorn_options=options)


@contextmanager
def _workers(db_url: str, n: int = 2, **settings):
    """`n` instances of the app on one database, each under its own uvicorn, as `ly serve
    --workers n` runs them (each worker process makes its own app and pool)."""
    with ExitStack() as stack:
        servers = []
        for _ in range(n):
            s = make_settings(db_url, **settings)
            servers.append(stack.enter_context(Server(create_app(s), **edge.uvicorn_options(s))))
        yield servers


# --- security headers ------------------------------------------------------------------------

@pytest.mark.parametrize("path, status", [
    ("/", 200), ("/?f=html", 200), ("/collections?f=html", 200), (ITEMS + "?limit=2", 200),
    ("/collections/findes-ikke", 404), (ITEMS + "?limit=abc", 400),
    ("/static/ly.css", 200), ("/static/findes-ikke.css", 404), ("/docs", 200),
    ("/openapi.json", 200), ("/kort?kommune=abc", 400), ("/healthz", 200),
    ("/collections/beskyttelsesrum/tiles/WebMercatorQuad/7/40/68", 200),
])
def test_every_response_has_the_security_headers(anon_client, path, status):
    r = anon_client.get(path)
    expected = {status, 204} if "/tiles/" in path else {status}  # an empty tile is a 204
    assert r.status_code in expected, r.text[:200]
    _secured(r)


def test_refused_credentials_and_unexpected_errors_have_them_too(shared_db_url):
    app = create_app(make_settings(shared_db_url))

    @app.get("/test-boom", include_in_schema=False)
    async def boom():
        raise RuntimeError("boom")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/collections", headers={"Authorization": "Bearer not-a-jwt"})
        _problem(r, 401)
        _secured(r)
        r = c.get("/test-boom")
        _problem(r, 500)
        _secured(r)


def _inline(page: str) -> list[tuple[str, str]]:
    """(tag, attributes) of the page's inline <script> (not data blocks) and <style> elements."""
    out = []
    for tag, attrs in re.findall(r"<(script|style)\b([^>]*)>", page, re.IGNORECASE):
        if tag == "script" and ("src=" in attrs or "application/json" in attrs):
            continue
        out.append((tag, attrs))
    return out


@pytest.mark.parametrize("path", ["/kort", "/?f=html", ITEMS + "?f=html&limit=3", "/docs",
                                  "/eftersyn/formular"])
def test_inline_scripts_and_styles_carry_the_responses_nonce(anon_client, path):
    r1, r2 = anon_client.get(path), anon_client.get(path)
    assert r1.status_code == 200
    nonces = []
    for r in (r1, r2):
        csp = r.headers["content-security-policy"]
        script = _directive(csp, "script-src")
        (nonce,) = re.findall(r"'nonce-([A-Za-z0-9_-]{16,})'", script)
        assert f"'nonce-{nonce}'" in _directive(csp, "style-src")
        assert "'unsafe-inline'" not in script and "'unsafe-inline'" not in \
            _directive(csp, "style-src")
        for tag, attrs in _inline(r.text):
            assert f'nonce="{nonce}"' in attrs, (tag, attrs)
        nonces.append(nonce)
    assert nonces[0] != nonces[1]
    if path == "/kort":  # folium's own inline scripts and styles are there, with the nonce
        assert len(_inline(r1.text)) >= 4


def test_no_template_has_inline_event_handlers_or_outside_assets():
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text(encoding="utf-8")
        assert not re.search(r"\son[a-z]+\s*=", text, re.IGNORECASE), template.name
        assert not re.search(r"""(src|href)=["']https?://""", text), template.name
        assert "javascript:" not in text, template.name


def test_docs_load_swagger_ui_from_ly(anon_client):
    page = anon_client.get("/docs").text
    assert "cdn.jsdelivr.net" not in page and "fastapi.tiangolo.com" not in page
    for src in re.findall(r'(?:src|href)="([^"]+)"', page):
        if src.startswith("http"):
            assert src.startswith("http://testserver/static/"), src
            assert anon_client.get(src).status_code == 200, src


def test_images_may_come_from_the_configured_basemap_only(shared_db_url):
    for basemap, host, extra in [("osm", "https://tile.openstreetmap.org", {}),
                                 ("dataforsyningen", "https://api.dataforsyningen.dk",
                                  {"dataforsyningen_token": "t0ken"}),
                                 ("none", None, {})]:
        with TestClient(create_app(make_settings(shared_db_url, basemap=basemap,
                                                 **extra))) as c:
            csp = c.get("/kort").headers["content-security-policy"]
        images = _directive(csp, "img-src").split()
        outside = [s for s in images if s.startswith("http")]
        assert outside == ([host] if host else []), csp
        assert "*" not in images
        for directive in ("default-src", "script-src", "style-src", "connect-src"):
            assert "http" not in _directive(csp, directive), csp


# --- Cache-Control and Vary for signed-in requests -------------------------------------------

def test_signed_in_responses_are_private(ro_client, anon_client):
    r = ro_client.get("/collections")  # sets no Cache-Control of its own
    assert r.status_code == 200
    assert r.headers["cache-control"] == "private"
    assert "Authorization" in r.headers["vary"]
    # Signed in through the page cookie: private too (shared caches do store such pages).
    cookie = token(["national_admin"], subject="sams-admin")
    r = anon_client.get("/?f=html", headers={"Cookie": f"ly_token={cookie}"})
    assert r.status_code == 200 and "sams-admin" in r.text
    assert r.headers["cache-control"] == "private"
    assert "Cookie" in r.headers["vary"]
    # A route's own caching stays, made private: signed-in tiles keep their max-age.
    r = ro_client.get("/collections/beskyttelsesrum/tiles/WebMercatorQuad/7/40/68")
    assert r.headers["cache-control"].startswith("private") and "max-age" in \
        r.headers["cache-control"]
    assert r.headers["vary"].count("Authorization") == 1
    # The public's responses keep what the route said, or get the edge's public caching
    # (tests/test_http_conventions.py).
    assert anon_client.get("/collections").headers["cache-control"] == "public, max-age=60"
    public_tile = anon_client.get("/collections/beskyttelsesrum/tiles/WebMercatorQuad/7/40/68")
    assert public_tile.headers["cache-control"].startswith("public")


def test_private_cache_control_keeps_the_routes_directives():
    assert edge._private(None) == b"private"
    assert edge._private(b"public, max-age=60") == b"private, max-age=60"
    assert edge._private(b"public, max-age=60, s-maxage=600") == b"private, max-age=60"
    assert edge._private(b"private, no-store") == b"private, no-store"
    assert edge._private(b"no-cache") == b"private, no-cache"
    assert edge._vary(b"Accept") == b"Accept, Authorization, X-API-Key, Cookie"
    assert edge._vary(b"authorization, x-api-key, cookie") == b"authorization, x-api-key, cookie"


# --- hosts and proxies -----------------------------------------------------------------------

def test_a_foreign_host_is_refused_and_never_reaches_a_link(anon_client):
    # Before: 307 with `Location: http://evil.example/collections` (the slash redirect).
    r = anon_client.get("/collections/", headers={"Host": "evil.example"},
                        follow_redirects=False)
    body = _problem(r, 400)
    assert body["errors"][0]["field"] == "Host"
    assert "location" not in r.headers
    _secured(r)
    r = anon_client.get("/", headers={"Host": "evil.example:8000"})
    _problem(r, 400)
    # Allowed names, with a port.
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "testserver"):
        assert anon_client.get("/healthz", headers={"Host": host}).status_code == 200, host


def test_forwarded_headers_are_ignored_from_anyone_but_a_trusted_proxy(anon_client):
    evil = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https",
            "X-Forwarded-For": "203.0.113.9"}
    r = anon_client.get("/collections/", headers=evil, follow_redirects=False)
    assert r.status_code in (301, 307, 308)
    assert r.headers["location"].startswith("http://testserver/")
    body = anon_client.get("/", headers=evil).json()
    hrefs = [link["href"] for link in body["links"]]
    assert hrefs and all(h.startswith("http://testserver/") for h in hrefs), hrefs


def test_a_trusted_proxys_forwarded_headers_are_honoured(shared_db_url):
    settings = make_settings(shared_db_url, trusted_proxies=["10.0.0.0/8"],
                             allowed_hosts=["ly.example.dk"], rate_limit_anonymous=1000)
    with TestClient(create_app(settings), client=("10.1.2.3", 40000)) as c:
        headers = {"X-Forwarded-Host": "ly.example.dk", "X-Forwarded-Proto": "https",
                   "X-Forwarded-For": "198.51.100.77, 10.9.9.9"}
        r = c.get("/", headers=headers)
        assert r.status_code == 200
        hrefs = [link["href"] for link in r.json()["links"]]
        assert all(h.startswith("https://ly.example.dk/") for h in hrefs), hrefs
        # The client is the first address from the right that is not a trusted proxy.
        keys = [k for (k,) in query(shared_db_url, "SELECT key FROM ly.rate_limit")]
        assert "a:198.51.100.77" in keys and "a:10.9.9.9" not in keys
        # A forwarded host must be one of the service's names, too.
        r = c.get("/", headers={**headers, "X-Forwarded-Host": "evil.example"})
        _problem(r, 400)


def test_the_public_url_makes_every_link(shared_db_url):
    settings = make_settings(shared_db_url, public_url="https://ly.example.dk/api")
    with TestClient(create_app(settings)) as c:
        r = c.get("/", headers={"Host": "localhost:8000"})
        hrefs = [link["href"] for link in r.json()["links"]]
        assert all(h.startswith("https://ly.example.dk/api/") for h in hrefs), hrefs
        # Its host is one of the service's names without being listed.
        assert c.get("/healthz", headers={"Host": "ly.example.dk"}).status_code == 200
        _problem(c.get("/", headers={"Host": "evil.example"}), 400)


def test_list_settings_read_from_the_environment(monkeypatch, shared_db_url):
    monkeypatch.setenv("LY_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7")
    monkeypatch.setenv("LY_ALLOWED_HOSTS", '["ly.example.dk", "*.ly.example.dk"]')
    monkeypatch.setenv("LY_CORS_ORIGINS", "")
    s = Settings(database_url=shared_db_url)
    assert s.trusted_proxies == ["10.0.0.0/8", "192.168.1.7"]
    assert s.hosts == {"ly.example.dk", "*.ly.example.dk"}
    assert s.cors_origins == []
    monkeypatch.setenv("LY_TRUSTED_PROXIES", "proxy.example")
    with pytest.raises(ValueError, match="LY_TRUSTED_PROXIES"):
        Settings(database_url=shared_db_url)


def test_wildcard_hosts(shared_db_url):
    settings = make_settings(shared_db_url, allowed_hosts=["*.ly.example.dk"])
    with TestClient(create_app(settings)) as c:
        assert c.get("/healthz", headers={"Host": "a.ly.example.dk"}).status_code == 200
        _problem(c.get("/healthz", headers={"Host": "ly.example.dk.evil"}), 400)
    with TestClient(create_app(make_settings(shared_db_url, allowed_hosts=["*"]))) as c:
        assert c.get("/healthz", headers={"Host": "any.example"}).status_code == 200


# --- rate limits -----------------------------------------------------------------------------

def _is_429(r) -> dict:
    body = _problem(r, 429)
    retry = int(r.headers["retry-after"])
    assert 1 <= retry <= edge.WINDOW_SECONDS
    assert body["type"].endswith("/too-many-requests")
    _secured(r)
    return body


def test_workers_share_the_anonymous_limit(db_url):
    with _workers(db_url, rate_limit_anonymous=5) as (a, b):
        statuses = [httpx.get((a, b)[i % 2].url + "/collections").status_code
                    for i in range(5)]
        assert statuses == [200] * 5
        # The sixth request, to either worker, is over the limit the two share.
        body = _is_429(httpx.get(b.url + "/collections"))
        assert body["errors"][0]["field"] == "request"
        _is_429(httpx.get(a.url + "/conformance"))
        # Static files and the health check are not counted (nor refused).
        assert httpx.get(a.url + "/static/ly.css").status_code == 200
        assert httpx.get(b.url + "/healthz").status_code == 200
        # Signed in, the client has its own allowance.
        assert httpx.get(a.url + "/collections", headers=ADMIN_HEADERS).status_code == 200
    (hits,) = query(db_url, "SELECT hits FROM ly.rate_limit WHERE key = 'a:127.0.0.1'")[0]
    assert hits == 7


def test_a_flood_of_bad_tokens_is_refused(db_url):
    with _workers(db_url, rate_limit_bad_token=4, rate_limit_signed_in=1000) as (a, b):
        for i in range(4):
            r = httpx.get((a, b)[i % 2].url + "/collections",
                          headers={"Authorization": f"Bearer forged-{i}"})
            _problem(r, 401)
        # From now on, credentials from this address are refused outright, a new forgery
        # and a good token alike; the public's requests still go through.
        body = _is_429(httpx.get(a.url + "/collections",
                                 headers={"Authorization": "Bearer forged-x"}))
        assert body["errors"][0]["field"] == "Authorization"
        _is_429(httpx.get(b.url + "/collections", headers=ADMIN_HEADERS))
        _is_429(httpx.get(b.url + "/collections", headers={"X-API-Key": "guess"}))
        assert httpx.get(b.url + "/collections").status_code == 200
    # The four refused credentials counted for the address; the requests refused after
    # them left no counter of their own behind.
    keys = dict(query(db_url, "SELECT key, hits FROM ly.rate_limit"))
    assert keys["b:127.0.0.1"] == 4
    assert len([k for k in keys if k.startswith("s:")]) == 4


def test_the_signed_in_limit_is_per_credential(db_url):
    first = bearer(["national_reader"], subject="laeser-1")
    second = bearer(["national_reader"], subject="laeser-2")
    with _workers(db_url, rate_limit_signed_in=3, rate_limit_anonymous=1000) as (a, b):
        assert [httpx.get((a, b)[i % 2].url + "/collections", headers=first).status_code
                for i in range(3)] == [200] * 3
        _is_429(httpx.get(a.url + "/collections", headers=first))
        assert httpx.get(b.url + "/collections", headers=second).status_code == 200
        assert httpx.get(b.url + "/collections").status_code == 200


def test_a_limit_of_0_is_off(db_url):
    settings = make_settings(db_url, rate_limit_anonymous=0, rate_limit_signed_in=0,
                             rate_limit_bad_token=0)
    with TestClient(create_app(settings)) as c:
        for _ in range(5):
            assert c.get("/conformance").status_code == 200
            assert c.get("/conformance",
                         headers={"Authorization": "Bearer x"}).status_code == 401
    assert query(db_url, "SELECT count(*) FROM ly.rate_limit")[0][0] == 0


def test_the_default_limits():
    fields = Settings.model_fields
    assert [fields[f"rate_limit_{k}"].default for k in ("anonymous", "signed_in", "bad_token")] \
        == [1200, 6000, 30]
    assert fields["cors_origins"].default == ["*"]


# --- CORS ------------------------------------------------------------------------------------

ORIGIN = "https://kort.kommune.example"


def test_anonymous_reads_are_open_to_any_origin(anon_client):
    r = anon_client.get(ITEMS + "?limit=1", headers={"Origin": ORIGIN})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in r.headers
    assert "Content-Crs" in r.headers["access-control-expose-headers"]
    pre = anon_client.options(ITEMS, headers={"Origin": ORIGIN,
                                              "Access-Control-Request-Method": "GET"})
    assert pre.status_code == 200 and "GET" in pre.headers["access-control-allow-methods"]
    _secured(pre)


@pytest.mark.parametrize("method, headers", [
    ("GET", "Authorization"), ("GET", "X-API-Key"), ("POST", "Content-Type"),
    ("DELETE", None), ("PUT", "If-Match"),
])
def test_no_origin_may_send_credentials_or_write(anon_client, method, headers):
    ask = {"Origin": ORIGIN, "Access-Control-Request-Method": method}
    if headers:
        ask["Access-Control-Request-Headers"] = headers
    r = anon_client.options(ITEMS, headers=ask)
    assert r.status_code == 400
    allowed = r.headers.get("access-control-allow-headers", "").lower()
    assert "authorization" not in allowed and "x-api-key" not in allowed
    assert method in ("GET",) or method not in r.headers.get("access-control-allow-methods", "")


def test_cors_can_be_limited_or_off(shared_db_url):
    with TestClient(create_app(make_settings(shared_db_url, cors_origins=[ORIGIN]))) as c:
        assert c.get("/", headers={"Origin": ORIGIN}).headers[
            "access-control-allow-origin"] == ORIGIN
        assert "access-control-allow-origin" not in c.get(
            "/", headers={"Origin": "https://other.example"}).headers
    with TestClient(create_app(make_settings(shared_db_url, cors_origins=[]))) as c:
        assert "access-control-allow-origin" not in c.get(
            "/", headers={"Origin": ORIGIN}).headers


# --- request size ----------------------------------------------------------------------------

def _polygon_filter(vertices: int) -> str:
    """A CQL2 text filter with one polygon of `vertices` positions (the ring closed), its
    numbers at full double precision, as a client computing a circle would write them."""
    ring = [(12.5683 + 0.1 * math.cos(2 * math.pi * i / (vertices - 1)) + 1e-13,
             55.6761 + 0.06 * math.sin(2 * math.pi * i / (vertices - 1)) - 1e-13)
            for i in range(vertices - 1)]
    ring.append(ring[0])
    coords = ",".join(f"{x!r} {y!r}" for x, y in ring)
    return f"S_INTERSECTS(geometri,POLYGON(({coords})))"


def _raw_get(server: Server, target: str, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("GET", target)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def served_as_ly_serve(shared_db_url):
    """The app under uvicorn with the options `ly serve` uses, LY_MAX_VERTICES 2000 (a filter
    polygon of 2000 vertices takes some 80 KiB of URL: more than httptools' 64 KiB)."""
    settings = make_settings(shared_db_url, max_vertices=2000)
    with Server(create_app(settings), **edge.uvicorn_options(settings)) as server:
        yield server, settings


def test_a_filter_polygon_of_max_vertices_fits_in_the_url(served_as_ly_serve):
    from urllib.parse import quote

    server, settings = served_as_ly_serve
    target = f"{ITEMS}?limit=1&filter=" + quote(_polygon_filter(settings.max_vertices))
    assert len(target) > 65_536  # beyond what httptools and httpx accept
    assert len(target) <= edge.max_url_bytes(settings)
    status, headers, body = _raw_get(server, target)
    assert status == 200, body[:300]
    assert json.loads(body)["type"] == "FeatureCollection"
    # One vertex more is the filter's own problem (LY_MAX_VERTICES), not the URL's.
    status, headers, body = _raw_get(
        server, f"{ITEMS}?limit=1&filter=" + quote(_polygon_filter(settings.max_vertices + 1)))
    assert status == 400 and headers["content-type"] == PROBLEM
    assert "LY_MAX_VERTICES" in json.loads(body)["detail"]


def test_an_over_long_url_is_a_414_problem(served_as_ly_serve):
    server, settings = served_as_ly_serve
    limit = edge.max_url_bytes(settings)
    status, headers, body = _raw_get(server, f"{ITEMS}?filter=" + "x" * limit)
    assert status == 414, body[:300]
    assert headers["content-type"] == PROBLEM
    problem = json.loads(body)
    assert problem["status"] == 414 and problem["errors"][0]["field"] == "url"
    assert headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" in headers


def test_over_large_header_fields_are_a_431_problem(served_as_ly_serve):
    server, _ = served_as_ly_serve
    status, headers, body = _raw_get(server, "/collections",
                                     {"X-Padding": "p" * edge.MAX_HEADER_BYTES})
    assert status == 431, body[:300]
    assert headers["content-type"] == PROBLEM
    assert json.loads(body)["errors"][0]["field"] == "headers"
    assert headers["x-frame-options"] == "DENY"
    # A large token from an identity broker still fits.
    status, _, _ = _raw_get(server, "/collections", {"X-Padding": "p" * 8000})
    assert status == 200
