"""HTTP as clients expect it (service/edge.py, service/http.py, service/errors.py):

- every OGC resource's `Link` header (RFC 8288) mirrors the links of its document;
- validators: an ETag on every complete GET 200 (an object's is its `"<versions_id>"`,
  which If-Match on writes compares; a page's a weak hash of the body without its
  `timeStamp` or its nonce), `If-None-Match` answered 304 (no body; ETag, Cache-Control,
  Vary and Link kept; no Content-Security-Policy), and 200 again once the object changed;
- `Cache-Control` on every response (the public's by what it is, signed-in ones private,
  problems and writes `no-store`) and `Vary` on the negotiation and the credentials;
- gzip for JSON, GeoJSON, HTML and tiles when asked for (never for GeoPackage exports);
- problem titles in Danish.

The Link headers' parameters are parsed by Werkzeug's `parse_options_header` (quoted
strings, RFC 8187's `title*`; Werkzeug comes with schemathesis), each link split off at
the comma before its `<` (a URL in a Link header cannot hold a `<`).
"""

from __future__ import annotations

import gzip
import http.client
import re
from http import HTTPStatus
from urllib.parse import urlsplit

import orjson
import pytest
from fastapi.testclient import TestClient
from werkzeug.http import parse_options_header

from datamodel import themes
from datamodel.codelists import load_codelists
from service import edge, errors, http as lyhttp
from service.app import create_app
from tests.conftest import ADMIN_HEADERS, COLLECTION, ITEMS, LiveServer, make_settings

GEOJSON = "application/geo+json"
MERGE_PATCH = "application/merge-patch+json"
PROBLEM = "application/problem+json"
TILE = COLLECTION + "/tiles/WebMercatorQuad/7/40/68"
#: Accept-Encoding as clients send it, and none (httpx asks for gzip unless told otherwise).
GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}


@pytest.fixture(scope="module")
def shelter(anon_client) -> str:
    return anon_client.get(ITEMS + "?limit=1").json()["features"][0]["id"]


def _links(header: str | None) -> list[tuple]:
    """(href, rel, type, title) of each link of a Link header."""
    out = []
    for part in re.split(r",\s*(?=<)", header or ""):
        if not part.strip():
            continue
        target, options = parse_options_header(part.strip())
        assert target.startswith("<") and target.endswith(">"), part
        out.append((target[1:-1], options["rel"], options.get("type"), options.get("title")))
    return out


def _document_links(doc: dict) -> list[tuple]:
    return [(lk["href"], lk["rel"], lk.get("type"), lk.get("title")) for lk in doc["links"]]


# --- Link headers ----------------------------------------------------------------------------

def _resources(shelter: str) -> list[str]:
    out = ["/", "/conformance", "/collections", "/tileMatrixSets", "/begreber", "/kodelister",
           f"/kodelister/{sorted(load_codelists())[0]}", f"{ITEMS}/{shelter}",
           f"{ITEMS}/{shelter}/history", ITEMS + "?limit=2",
           ITEMS + "?limit=2&bbox=12.4,55.6,12.7,55.8&pladser=50"]
    for t in themes.all_themes():
        col = f"/collections/{t.collection_id}"
        out += [col, col + "/items?limit=3", col + "/tiles", col + "/tiles/WebMercatorQuad",
                col + "/tiles/UTM32ETRS89"]
    return out


def test_every_ogc_resources_link_header_mirrors_its_links(anon_client, shelter):
    for path in _resources(shelter):
        r = anon_client.get(path)
        assert r.status_code == 200, (path, r.text[:200])
        doc = r.json()
        assert doc["links"], path
        assert _links(r.headers.get("link")) == _document_links(doc), path
        # a Danish title is sent as RFC 8187's title*, since a header is Latin-1
        r.headers["link"].encode("latin-1")


def test_a_next_link_is_in_the_header(anon_client):
    r = anon_client.get(ITEMS + "?limit=5")
    rels = [lk[1] for lk in _links(r.headers["link"])]
    assert "next" in rels and "self" in rels
    nxt = next(lk[0] for lk in _links(r.headers["link"]) if lk[1] == "next")
    assert nxt == next(lk["href"] for lk in r.json()["links"] if lk["rel"] == "next")


def test_a_json_schema_names_itself_in_the_link_header(anon_client):
    """Queryables and schema are JSON Schema documents, without links of their own."""
    for t in themes.all_themes():
        for kind in ("queryables", "schema"):
            path = f"/collections/{t.collection_id}/{kind}"
            for f, media in (("json", "application/schema+json"), ("html", "text/html")):
                r = anon_client.get(f"{path}?f={f}")
                assert r.status_code == 200 and r.headers["content-type"].startswith(media)
                rels = {lk[1]: lk for lk in _links(r.headers.get("link"))}
                assert rels["self"][0] == f"http://testserver{path}?f=json", (path, f)
                assert rels["self"][2] == "application/schema+json"
                assert rels["alternate"][0] == f"http://testserver{path}?f=html"


def test_a_tile_matrix_sets_link_header_names_it(anon_client):
    r = anon_client.get("/tileMatrixSets/WebMercatorQuad")
    assert r.status_code == 200
    (href, rel, type_, _), = _links(r.headers["link"])
    assert (href, rel, type_) == ("http://testserver/tileMatrixSets/WebMercatorQuad", "self",
                                  "application/json")


def _as(path: str, f: str) -> str:
    return path + ("&" if "?" in path else "?") + f"f={f}"


def test_html_pages_carry_the_links_of_their_json(anon_client, shelter):
    for path in ("/", "/collections", COLLECTION, ITEMS + "?limit=2", f"{ITEMS}/{shelter}"):
        doc = anon_client.get(_as(path, "json")).json()
        page = anon_client.get(_as(path, "html"))
        assert page.headers["content-type"].startswith("text/html")
        assert _links(page.headers["link"]) == _document_links(doc), path


def test_the_link_header_stays_small_and_keeps_the_paging_links():
    long = "http://ly.test/collections/x/items?filter=" + "a" * 700
    links = [lyhttp.link(long + "&f=json", "self", GEOJSON),
             lyhttp.link(long + "&f=html", "alternate", "text/html"),
             lyhttp.link("http://ly.test/collections/x", "collection", "application/json"),
             lyhttp.link(long + "&cursor=1", "next", GEOJSON),
             lyhttp.link(long + "&cursor=0", "prev", GEOJSON)]
    value = lyhttp.link_header(links)
    assert len(value) <= lyhttp.LINK_HEADER_MAX_BYTES
    kept = [lk[1] for lk in _links(value)]
    # by priority while they fit (next and prev, before self; then the short collection
    # link), in the document's order
    assert kept == ["collection", "next", "prev"]
    assert len(lyhttp.link_header(links[2:3])) < 100


def test_a_page_with_a_long_filter_keeps_its_next_link_in_the_header(anon_client):
    """A client paging by the Link header must not stop after the first page."""
    r = anon_client.get(ITEMS, params={"limit": 2, "filter": f"navn <> '{'x' * 600}'"})
    assert r.status_code == 200
    links = {lk[1]: lk[0] for lk in _links(r.headers["link"])}
    assert links["next"] == next(lk["href"] for lk in r.json()["links"] if lk["rel"] == "next")


def test_an_over_long_filter_does_not_make_a_huge_header(anon_client):
    long = "x" * 3000
    r = anon_client.get(ITEMS, params={"limit": 1, "filter": f"navn <> '{long}'"})
    assert r.status_code == 200, r.text[:300]
    assert len(r.headers["link"]) <= lyhttp.LINK_HEADER_MAX_BYTES
    assert len(r.json()["links"]) >= 3  # the document has every link
    # each link repeats the filter: only the short one fits
    assert [lk[1] for lk in _links(r.headers["link"])] == ["collection"]


# --- validators and 304 ----------------------------------------------------------------------

def _not_modified(r, etag: str) -> None:
    assert r.status_code == 304, (r.status_code, r.text[:200])
    assert r.content == b""
    assert r.headers["etag"] == etag
    assert r.headers["cache-control"] and "Accept" in r.headers["vary"]
    assert "content-type" not in r.headers and "content-encoding" not in r.headers
    # no new policy: the stored page's nonce is the one its policy names (RFC 9111 4.3.4)
    assert "content-security-policy" not in r.headers


def test_an_items_page_is_not_modified_until_the_register_is(client, db_url):
    anon = TestClient(create_app(make_settings(db_url)))
    with anon:
        page = ITEMS + "?limit=3"
        r1, r2 = anon.get(page), anon.get(page)
        etag = r1.headers["etag"]
        assert etag.startswith('W/"') and r2.headers["etag"] == etag
        r = anon.get(page, headers={"If-None-Match": etag})
        _not_modified(r, etag)
        assert _links(r.headers["link"]) == _links(r1.headers["link"])
        assert anon.get(page, headers={"If-None-Match": 'W/"other", ' + etag}).status_code == 304
        assert anon.get(page, headers={"If-None-Match": '"other"'}).status_code == 200
        assert anon.head(page, headers={"If-None-Match": etag}).status_code == 304

        first = r1.json()["features"][0]
        r = anon.get(f"{ITEMS}/{first['id']}")
        item_etag = r.headers["etag"]
        assert item_etag == f'"{first["properties"]["versions_id"]}"'  # strong, as If-Match
        r = anon.get(f"{ITEMS}/{first['id']}", headers={"If-None-Match": item_etag})
        _not_modified(r, item_etag)
        assert _links(r.headers["link"]) == _document_links(anon.get(
            f"{ITEMS}/{first['id']}").json())
        # weak comparison: the weak form of the tag matches too
        assert anon.get(f"{ITEMS}/{first['id']}",
                        headers={"If-None-Match": "W/" + item_etag}).status_code == 304

        # The object changes (a write conditional on the ETag the public read): 200 again.
        edit = {"properties": {"pladser": first["properties"]["pladser"] % 9000 + 7}}
        w = client.patch(f"{ITEMS}/{first['id']}", content=orjson.dumps(edit),
                         headers={"Content-Type": MERGE_PATCH, "If-Match": item_etag})
        assert w.status_code == 200, w.text
        assert w.headers["cache-control"] == "private, no-store"
        r = anon.get(f"{ITEMS}/{first['id']}", headers={"If-None-Match": item_etag})
        assert r.status_code == 200 and r.headers["etag"] == w.headers["etag"] != item_etag
        r = anon.get(page, headers={"If-None-Match": etag})
        assert r.status_code == 200 and r.headers["etag"] != etag


def test_an_html_page_has_one_etag_whatever_its_nonce(anon_client, shelter):
    for path in (f"{ITEMS}/{shelter}?f=html", ITEMS + "?f=html&limit=5", "/?f=html"):
        r1, r2 = anon_client.get(path), anon_client.get(path)
        assert r1.headers["content-security-policy"] != r2.headers["content-security-policy"]
        etag = r1.headers["etag"]
        assert etag.startswith('W/"') and r2.headers["etag"] == etag, path
        _not_modified(anon_client.get(path, headers={"If-None-Match": etag}), etag)


def test_signed_in_responses_are_validated_too(ro_client, shelter):
    r = ro_client.get(f"{ITEMS}/{shelter}")
    etag = r.headers["etag"]
    r = ro_client.get(f"{ITEMS}/{shelter}", headers={"If-None-Match": etag})
    _not_modified(r, etag)
    assert r.headers["cache-control"] == "private" and "Authorization" in r.headers["vary"]


def test_no_etag_on_what_is_streamed_or_not_complete(anon_client):
    with anon_client.stream("GET", ITEMS + "?f=geojson",
                            headers={"If-None-Match": "*"}) as r:
        assert r.status_code == 200 and "etag" not in r.headers
    r = anon_client.head(ITEMS + "?f=gpkg")
    assert r.status_code == 200 and "etag" not in r.headers
    assert anon_client.get("/collections/findes-ikke").headers.get("etag") is None
    # A static file's validators are StaticFiles' own, and it answers If-None-Match itself.
    r = anon_client.get("/static/ly.css")
    assert anon_client.get("/static/ly.css",
                           headers={"If-None-Match": r.headers["etag"]}).status_code == 304


def test_an_etag_is_the_same_with_or_without_gzip(anon_client, shelter):
    for path in (ITEMS + "?limit=50", f"{ITEMS}/{shelter}", "/collections"):
        plain, packed = anon_client.get(path, headers=IDENTITY), anon_client.get(path,
                                                                                headers=GZIP)
        assert packed.headers.get("content-encoding") == "gzip", path
        assert "content-encoding" not in plain.headers
        assert plain.headers["etag"] == packed.headers["etag"], path


def test_a_large_body_is_hashed_in_a_thread_to_the_same_tag(anon_client, monkeypatch):
    path = ITEMS + "?limit=20"
    inline = anon_client.get(path).headers["etag"]
    monkeypatch.setattr(edge, "HASH_IN_THREAD_BYTES", 1)
    assert anon_client.get(path).headers["etag"] == inline


def test_the_none_match_parser():
    assert edge.none_match(b'"a", W/"b"', b'W/"b"')
    assert edge.none_match(b'W/"a"', b'"a"')
    assert edge.none_match(b"*", b'"x"')
    assert not edge.none_match(b'"ab"', b'"a"')
    assert not edge.none_match(b"", b'"a"')


# --- Cache-Control and Vary ------------------------------------------------------------------

PUBLIC_VARY = {"Accept", "Accept-Encoding", "Authorization", "X-API-Key", "Cookie"}


def _vary_set(value: str | None) -> set[str]:
    return {v.strip() for v in (value or "").split(",") if v.strip()}


def _vary(r) -> set[str]:
    return _vary_set(r.headers.get("vary"))


@pytest.mark.parametrize("path, cache", [
    (ITEMS + "?limit=2", "public, max-age=60"),
    (ITEMS + "?limit=2&f=html", "public, max-age=60"),
    (COLLECTION, "public, max-age=60"),
    (COLLECTION + "/tiles/WebMercatorQuad", "public, max-age=60"),
    ("/", "public, max-age=300"),
    ("/?f=html", "public, max-age=300"),
    ("/conformance", "public, max-age=300"),
    ("/openapi.json", "public, max-age=300"),
    ("/docs", "public, max-age=300"),
    ("/redoc", "public, max-age=300"),
    ("/kodelister", "public, max-age=300"),
    ("/tileMatrixSets/WebMercatorQuad", "public, max-age=300"),
    (COLLECTION + "/queryables", "public, max-age=300"),
    ("/static/ly.css", "public, max-age=300"),
    ("/static/vendor/leaflet/leaflet.js", "public, max-age=86400"),
    ("/healthz", "no-store"),
    ("/collections/findes-ikke", "no-store"),
    (ITEMS + "?limit=abc", "no-store"),
    ("/static/findes-ikke.css", "no-store"),
])
def test_the_publics_responses_say_how_long_they_keep(anon_client, path, cache):
    r = anon_client.get(path)
    assert r.headers["cache-control"] == cache, (path, r.status_code)
    vary = _vary(r)
    if path.startswith("/static/"):
        assert "Accept-Encoding" in vary and "Cookie" not in vary
    else:
        assert PUBLIC_VARY <= vary, (path, vary)
        assert len(vary) == len(r.headers["vary"].split(","))  # each once


def test_routes_keep_their_own_caching(anon_client):
    tile = anon_client.get(TILE)
    assert tile.headers["cache-control"] == "public, max-age=60"
    assert PUBLIC_VARY <= _vary(tile)
    with anon_client.stream("GET", ITEMS + "?f=csv") as r:
        assert r.headers["cache-control"] == "public, max-age=60"


def test_writes_and_refusals_are_not_stored(anon_client):
    r = anon_client.post(ITEMS, content=b"{}", headers={"Content-Type": GEOJSON})
    assert r.status_code == 401 and r.headers["cache-control"] == "no-store"
    r = anon_client.get("/collections", headers={"Authorization": "Bearer not-a-jwt"})
    assert r.status_code == 401 and r.headers["cache-control"] == "private, no-store"


def test_signed_in_responses_stay_private(ro_client, shelter):
    for path in (ITEMS + "?limit=2", f"{ITEMS}/{shelter}", "/", "/collections"):
        r = ro_client.get(path)
        assert r.headers["cache-control"] == "private", path
        assert PUBLIC_VARY <= _vary(r)
    r = ro_client.get("/collections/findes-ikke")
    assert r.headers["cache-control"] == "private, no-store"
    assert ro_client.get(TILE).headers["cache-control"].startswith("private, max-age=")
    assert ro_client.get("/static/ly.css").headers["cache-control"] == "private, max-age=300"


def test_a_token_cookie_the_way_authentication_reads_it_is_signed_in(anon_client, shelter):
    """`ly_token =<jwt>` signs the caller in (Starlette's cookie parser), so the edge must
    take it for credentials too: a signed-in body is never marked public."""
    token = ADMIN_HEADERS["Authorization"].split(" ", 1)[1]
    public = anon_client.get(f"{ITEMS}/{shelter}").json()["properties"]
    for cookie in (f"ly_token ={token}", f"a=1; ly_token={token}", f" ly_token = {token}"):
        r = anon_client.get(f"{ITEMS}/{shelter}", headers={"Cookie": cookie})
        assert r.status_code == 200
        assert len(r.json()["properties"]) > len(public)  # signed in: more attributes
        assert r.headers["cache-control"] == "private", cookie
    anon_client.cookies.clear()


def test_accept_encoding_is_read_as_http_says(served):
    assert edge.accepts_gzip(b"gzip") and edge.accepts_gzip(b"GZIP")
    assert edge.accepts_gzip(b"br;q=1.0, gzip;q=0.5") and edge.accepts_gzip(b"*")
    assert not edge.accepts_gzip(b"gzip;q=0") and not edge.accepts_gzip(b"identity")
    assert not edge.accepts_gzip(b"*;q=0") and not edge.accepts_gzip(b"gzip;q=0, *")
    for value, compressed in (("GZIP", True), ("gzip;q=0", False), ("deflate, gzip;q=0.0", False),
                              ("x-gzip", True)):
        status, headers, body = _raw(served, ITEMS + "?limit=100", {"Accept-Encoding": value})
        assert status == 200
        assert (headers.get("content-encoding") == "gzip") is compressed, value


def test_the_cache_rules():
    rule = edge.public_cache_control
    assert rule("GET", "/collections/x/items/1", 200) == edge.CACHE_DATA
    assert rule("HEAD", "/collections/x/queryables", 304) == edge.CACHE_DESCRIPTIVE
    assert rule("GET", "/collections/x/queryables/y", 200) == edge.CACHE_DATA
    assert rule("GET", "/", 200) == edge.CACHE_DESCRIPTIVE
    assert rule("GET", "/kodelister/d_x", 200) == edge.CACHE_DESCRIPTIVE
    assert rule("GET", "/kort", 200) == edge.CACHE_DATA
    for method, status in (("GET", 307), ("GET", 404), ("POST", 201), ("DELETE", 204),
                           ("OPTIONS", 200)):
        assert rule(method, "/collections", status) == edge.NO_STORE


# --- compression -----------------------------------------------------------------------------

def _raw(server, path: str, headers: dict, method: str = "GET"):
    """The response as sent (no client decoding the body)."""
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(method, path, headers=headers)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def served(shared_db_url):
    with LiveServer(shared_db_url) as server:
        yield server


def test_json_geojson_html_and_tiles_are_gzipped_when_asked_for(served, shelter):
    for path, media in ((ITEMS + "?limit=100", GEOJSON), (f"{ITEMS}/{shelter}", GEOJSON),
                        ("/collections", "application/json"), ("/kort", "text/html"),
                        ("/openapi.json", "application/vnd.oai.openapi+json")):
        status, headers, body = _raw(served, path, GZIP)
        assert status == 200 and headers["content-type"].startswith(media), path
        assert headers["content-encoding"] == "gzip", path
        assert "Accept-Encoding" in headers["vary"]
        assert int(headers["content-length"]) == len(body)
        plain = gzip.decompress(body)
        s, h, identity = _raw(served, path, IDENTITY)
        assert "content-encoding" not in h and len(identity) > len(body), path
        if media != "text/html":
            assert orjson.loads(plain) == orjson.loads(identity), path
        else:  # the page's nonce is the one its policy names
            nonce = headers["content-security-policy"].split("'nonce-", 1)[1].split("'", 1)[0]
            assert f'nonce="{nonce}"'.encode() in plain
    status, headers, body = _raw(served, "/static/vendor/swagger-ui/swagger-ui-bundle.js",
                                 GZIP)
    assert headers["content-encoding"] == "gzip"
    status, headers, body = _raw(served, "/collections/beskyttelsesrum/tiles/WebMercatorQuad"
                                 "/5/10/17", GZIP)
    assert status == 200 and headers["content-type"] == "application/vnd.mapbox-vector-tile"
    assert headers["content-encoding"] == "gzip" and gzip.decompress(body)


def test_head_answers_what_get_would(served, shelter):
    path = f"{ITEMS}?limit=20"
    _, got, body = _raw(served, path, GZIP)
    status, head, nothing = _raw(served, path, GZIP, method="HEAD")
    assert status == 200 and nothing == b""
    for name in ("etag", "content-encoding", "content-length", "link", "cache-control",
                 "vary"):
        assert head[name] == got[name], name


def test_exports_that_are_files_are_not_gzipped_and_streams_still_stream(served):
    status, headers, body = _raw(served, ITEMS + "?f=gpkg&pladser=50", GZIP)
    assert status == 200 and headers["content-type"] == "application/geopackage+sqlite3"
    assert "content-encoding" not in headers and body.startswith(b"SQLite format 3")
    assert int(headers["content-length"]) == len(body)
    # A streamed GeoJSON export is compressed as it streams (chunked, no length, no ETag).
    status, headers, body = _raw(served, ITEMS + "?f=geojson", GZIP)
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert headers.get("transfer-encoding") == "chunked" and "content-length" not in headers
    assert "etag" not in headers
    doc = orjson.loads(gzip.decompress(body))
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) > 100


def test_a_304_through_uvicorn_has_no_body(served, shelter):
    _, got, _ = _raw(served, f"{ITEMS}/{shelter}?f=html", GZIP)
    status, headers, body = _raw(served, f"{ITEMS}/{shelter}?f=html",
                                 {**GZIP, "If-None-Match": got["etag"]})
    assert status == 304 and body == b"" and headers["etag"] == got["etag"]
    assert "content-security-policy" not in headers and "content-encoding" not in headers
    assert headers["link"] == got["link"]
    assert _vary_set(headers["vary"]) == _vary_set(got["vary"])


# --- problem titles --------------------------------------------------------------------------

def test_problem_titles_are_danish(anon_client):
    cases = [(anon_client.get("/collections/findes-ikke"), 404, "Findes ikke"),
             (anon_client.get(ITEMS + "?limit=abc"), 400, "Ugyldig forespørgsel"),
             (anon_client.get("/findes/slet/ikke"), 404, "Findes ikke"),
             (anon_client.put("/collections"), 405, "Metoden er ikke tilladt"),
             (anon_client.post(ITEMS, content=b"{}"), 401, "Ikke logget ind")]
    for r, status, title in cases:
        assert r.status_code == status and r.headers["content-type"] == PROBLEM
        body = r.json()
        assert body["title"] == title, body
        assert body["detail"] != HTTPStatus(status).phrase  # Starlette's English, replaced
    assert anon_client.get("/findes/slet/ikke").json()["detail"] == \
        "Findes ikke: GET /findes/slet/ikke"


def test_every_title_is_ours():
    for status, title in errors.TITLES.items():
        assert title != HTTPStatus(status).phrase and errors.title(status) == title
    assert errors.title(418) == "Fejl i forespørgslen" and errors.title(599) == "Fejl i tjenesten"


#: English words that would give away an English summary (Danish summaries use none of them).
_ENGLISH = re.compile(
    r"\b(the|a|an|of|to|and|or|one|your?|who|visible|page|collections?|campaigns?|inspections?|"
    r"inspectors?|photos?|deficienc\w*|reports?|code|lists?|tiles?|sets?|checklists?|schema|"
    r"queryables|conformance|classes|approve|reject|assign|create|import|mark|move|turn)\b",
    re.IGNORECASE)


def _words(text: str) -> str:
    """A summary without its parenthesised glosses, e.g. "(queryables)" after the Danish."""
    return re.sub(r"\([^)]*\)", "", text)


def test_operation_summaries_are_danish_like_the_problem_titles(anon_client):
    """One language for the API's human words: problem titles and OpenAPI summaries."""
    doc = anon_client.get("/openapi.json").json()
    summaries = [(path, method, op.get("summary", ""))
                 for path, ops in doc["paths"].items() for method, op in ops.items()
                 if isinstance(op, dict) and "responses" in op]
    assert len(summaries) > 40
    missing = [(p, m) for p, m, s in summaries if not s]
    english = [(p, m, s) for p, m, s in summaries if _ENGLISH.search(_words(s))]
    assert not missing and not english, (missing, english)
    tags = {t for ops in doc["paths"].values() for op in ops.values() if isinstance(op, dict)
            for t in op.get("tags", [])}
    assert not [t for t in tags if _ENGLISH.search(t) or t in ("Capabilities", "Vector tiles")]
