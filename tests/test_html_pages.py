"""The HTML pages for people, in a real browser as a visitor (no credentials): Debian's
Chromium driven by Playwright (tests/browser.py) against the live server on the shared demo
register.

- The landing page is Danish, says what Ly is, and leads to the map, the finder and search,
  the inspection form and the reports; every same-origin link on it, and every link on the
  pages those lead to (one of each kind), answers; none 400 or 404, and 401 only where
  sign-in is required (`SIGN_IN`).
- On a phone (390 x 844) no page is wider than the screen: wide tables scroll in their box.
- An object's page shows names, not codes (a coded attribute's text, the municipality's
  name), one row per attribute (no code row and text row both).
- Code-list pages carry no notes for developers.
- Items pages page by their links (first, prev when given, next) and offer the exports of the
  current filter; every page has `<link rel="alternate">` for its JSON forms.
"""

from __future__ import annotations

import csv
import io
import re
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urljoin, urlsplit

import pytest

from datamodel import themes
from datamodel.codelists import load_codelists
from service import features
from tests.browser import launched, requires_chromium
from tests.conftest import ITEMS, query

pytest.importorskip("playwright.sync_api")

pytestmark = requires_chromium

TIMEOUT_MS = 20_000
#: Paths a visitor is asked to sign in for (401): the reports are for the authorities.
SIGN_IN = ("/rapporter/",)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
FINDER = themes.all_themes()[0]  # the landing page's "Find …" theme


@pytest.fixture(scope="module")
def browser():
    with launched() as b:
        yield b


@pytest.fixture
def visitor(browser, live_ro):
    """A browser context without credentials; requests off the live server are aborted."""
    base = live_ro.url
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    context.route(lambda url: not url.startswith(base), lambda route: route.abort())
    page = context.new_page()
    page.base = base
    yield page
    context.close()


class Links(HTMLParser):
    """The hrefs of a page's `<a>` and `<link rel=alternate>` elements."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("href") and (tag == "a" or (tag == "link" and a.get("rel") == "alternate")):
            self.hrefs.append(a["href"])


def _same_origin(base: str, page_url: str, hrefs) -> list[str]:
    out = []
    for href in hrefs:
        if href.startswith(("#", "mailto:", "javascript:")):
            continue
        full = urljoin(page_url, href).split("#", 1)[0]
        if full.startswith(base + "/") or full == base:
            out.append(full)
    return out


def _kind(url: str) -> tuple:
    """Links of one kind (the same path but for ids, the same parameters and format) are
    walked once: one object page of a theme stands for all of them."""
    parts = urlsplit(url)
    qs = dict(parse_qsl(parts.query, keep_blank_values=True))
    return _UUID.sub("{id}", parts.path), tuple(sorted(qs)), qs.get("f")


def _status_ok(path: str, status: int) -> bool:
    if status == 401:
        return path.startswith(SIGN_IN)
    return 200 <= status < 300


def test_landing_page_is_danish_and_every_link_answers(visitor, shared_db_url):
    base = visitor.base
    r = visitor.goto(base + "/", wait_until="load")
    assert r.status == 200 and r.headers["content-type"].startswith("text/html")
    assert visitor.evaluate("document.documentElement.lang") == "da"
    text = visitor.inner_text("main")
    for words in ("registret over beskyttelsesrum og beredskabsdata", "evakueringscentre",
                  "midlertidig overnatning", "større udendørs arrangementer", "GeoFA",
                  "Borgere", "Kommuner og beredskab", "Se kortet", "Søg i registret",
                  "Eftersyn", "Rapporter", "Kræver log ind", "For udviklere"):
        assert words.lower() in text.lower(), words
    # It leads to the map, the finder and search, the inspections and the reports.
    hrefs = visitor.eval_on_selector_all("main a[href]", "els => els.map(a => a.href)")
    paths = {urlsplit(h).path for h in hrefs}
    assert {"/kort", f"/collections/{FINDER.collection_id}/items", "/eftersyn/formular",
            "/rapporter/national", "/docs", "/openapi.json", "/collections",
            "/conformance"} <= paths, paths
    assert all(f"/collections/{t.collection_id}/items" in paths for t in themes.all_themes())
    form = visitor.query_selector("form[role=search]")
    assert urlsplit(form.get_attribute("action")).path == \
        f"/collections/{FINDER.collection_id}/items"
    assert form.query_selector("input[name=q]")

    # Every same-origin link, and the links of the HTML pages they lead to (one per kind).
    first = list(dict.fromkeys(_same_origin(base, base + "/", Links(visitor.content()).hrefs)))
    seen_kinds = {_kind(u) for u in first}
    answers: dict[str, int] = {}
    second: list[str] = []
    for url in first:
        resp = visitor.request.get(url)
        answers[url] = resp.status
        if resp.status == 200 and resp.headers["content-type"].startswith("text/html"):
            for nxt in _same_origin(base, resp.url, Links(resp.text()).hrefs):
                if _kind(nxt) not in seen_kinds:
                    seen_kinds.add(_kind(nxt))
                    second.append(nxt)
    for url in second:
        answers[url] = visitor.request.get(url).status
    bad = {u: s for u, s in answers.items() if not _status_ok(urlsplit(u).path, s)}
    assert not bad, bad
    assert len(first) >= 15 and len(second) >= 20, (len(first), len(second))
    # The tile matrix sets are linked as JSON (their HTML form would be a 400).
    assert any(urlsplit(u).path == "/tileMatrixSets" and answers[u] == 200 for u in first)
    # Sign-in is asked for only by the reports.
    assert {urlsplit(u).path for u, s in answers.items() if s == 401} == {"/rapporter/national"}
    # The exports of every theme's list were walked too.
    exported = {dict(parse_qsl(urlsplit(u).query)).get("f") for u in answers}
    assert {"geojson", "gpkg", "csv", "xlsx", "shp"} <= exported, exported

    # The search form finds an object by its name (once items read `q`: another change).
    if "q" in features.ITEMS_PARAMS:
        oid, navn = query(shared_db_url, f"SELECT objekt_id, {FINDER.label} FROM "
                                         f"ly.{FINDER.current_view} WHERE off_kode = 1 AND "
                                         f"{FINDER.label} IS NOT NULL ORDER BY objekt_id "
                                         "LIMIT 1")[0]
        visitor.goto(base + "/")
        visitor.fill("#landing-q", navn)
        with visitor.expect_navigation():
            visitor.click("form[role=search] button[type=submit]")
        assert str(oid) in _ids(visitor), visitor.url
        assert visitor.input_value("form.filters input[name=q]") == navn


def _public_object(db: str, theme) -> str:
    return str(query(db, f"SELECT objekt_id FROM ly.{theme.current_view} WHERE off_kode = 1 "
                         "AND beliggenhedskommune IS NOT NULL ORDER BY objekt_id LIMIT 1")[0][0])


def test_on_a_phone_no_page_is_wider_than_the_screen(browser, live_ro, shared_db_url):
    base = live_ro.url
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  has_touch=True)
    context.route(lambda url: not url.startswith(base), lambda route: route.abort())
    page = context.new_page()
    oid = _public_object(shared_db_url, FINDER)
    wide = "() => document.documentElement.scrollWidth"
    try:
        for path in (f"{ITEMS}?f=html&limit=50", "/?f=html", f"{ITEMS}/{oid}?f=html",
                     f"{ITEMS}/{oid}/history?f=html", "/kodelister?f=html",
                     "/kodelister/d_6101_beskyt_rum?f=html", "/begreber?f=html"):
            assert page.goto(base + path).status == 200, path
            inner = page.evaluate("() => window.innerWidth")
            assert inner == 390
            assert page.evaluate(wide) <= inner, (path, page.evaluate(wide))
        # A table wider than the phone (a cell that cannot wrap) scrolls in its box; without
        # the box's overflow the page would be wider (so the check above can fail).
        page.goto(base + f"{ITEMS}?f=html&limit=50")
        box = page.query_selector(".table-scroll")
        box.evaluate("b => { b.querySelector('tbody td').textContent = 'x'.repeat(120); }")
        assert box.evaluate("b => b.scrollWidth > b.clientWidth")
        assert page.evaluate(wide) <= 390
        box.evaluate("b => { b.style.overflow = 'visible'; }")
        assert page.evaluate(wide) > 390
    finally:
        context.close()


def test_an_objects_page_shows_names_and_one_row_per_attribute(visitor, shared_db_url):
    base = visitor.base
    for theme in themes.all_themes():
        oid = _public_object(shared_db_url, theme)
        path = f"/collections/{theme.collection_id}/items/{oid}"
        props = visitor.request.get(base + path + "?f=json").json()["properties"]
        assert visitor.goto(base + path + "?f=html").status == 200
        rows = visitor.eval_on_selector_all(
            "table.properties tr",
            "trs => trs.map(tr => [tr.querySelector('th').title, tr.querySelector('th')"
            ".innerText, tr.lastElementChild.innerText])")
        by_name = {name: value for name, _, value in rows if name}
        names = [name for name, _, _ in rows if name]
        assert len(names) == len(set(names)), names
        titles = [title for _, title, _ in rows]
        assert len(titles) == len(set(titles)), titles
        for f in theme.coded_fields:
            if f.name not in props or props[f.name] is None:
                continue
            # One row, named as the code, showing the text (the code small beside it).
            assert f.twin not in by_name, (theme.collection_id, f.twin)
            assert by_name[f.name].startswith(props[f.twin]), (f.name, by_name[f.name])
        # The municipality by name (DAGI's, as in ly.kommune), not only its code.
        kode = props["beliggenhedskommune"]
        (navn,) = query(shared_db_url, "SELECT navn FROM ly.kommune WHERE kommunekode = %s",
                        [kode])[0]
        assert navn in by_name["beliggenhedskommune"], by_name["beliggenhedskommune"]
        assert by_name["beliggenhedskommune"] != str(kode)
        assert navn in visitor.inner_text("p.meta")


def test_code_list_pages_have_no_notes_for_developers(visitor):
    base = visitor.base
    lists = load_codelists()
    index = visitor.request.get(base + "/kodelister?f=html").text()
    for name, cl in lists.items():
        assert f"/kodelister/{name}?f=html" in index
        text = visitor.request.get(base + f"/kodelister/{name}?f=html").text()
        for note in ("GeoDanmarkGeoFA", "reference/", "_data/", ".sql", ".md", "[RECON]",
                     "Note:", cl.description):
            assert note not in text, (name, note)
        assert len(cl.source) < 12 or cl.source not in text, name
    # What a municipal user needs: the title, codes and texts, whether in use, where used.
    visitor.goto(base + "/kodelister/d_basis_offentlig?f=html")
    assert visitor.inner_text("main h1") == "Synlighed"
    cells = visitor.eval_on_selector_all(
        "table.codes tbody tr", "trs => trs.map(tr => [...tr.cells].map(c => c.innerText))")
    assert ["1", "Synlig for alle", "Ja"] == cells[0][:3]
    used = visitor.inner_text("ul.uses")
    assert all(t.title in used for t in themes.all_themes())
    # An inactive code (none ships today) would be marked as such: GeoFA keeps it for old data.
    inactive = next(((n, c) for n, cl in lists.items() for c in cl.values if not c.aktiv), None)
    if inactive is not None:
        visitor.goto(base + f"/kodelister/{inactive[0]}?f=html")
        row = visitor.eval_on_selector_all(
            "table.codes tbody tr.inactive", "trs => trs.map(tr => tr.cells[0].innerText)")
        assert str(inactive[1].kode) in row


def _ids(page) -> list[str]:
    return page.eval_on_selector_all("tr[data-objekt-id]",
                                     "trs => trs.map(t => t.dataset.objektId)")


def test_items_pages_page_by_their_links(visitor):
    base = visitor.base
    visitor.goto(base + f"{ITEMS}?f=html&limit=3")
    page1 = _ids(visitor)
    assert len(page1) == 3
    assert visitor.query_selector("nav.paging a[rel=first]") is None  # already the first
    assert visitor.query_selector("nav.paging a[rel=prev]") is None
    with visitor.expect_navigation():
        visitor.click("nav.paging a[rel=next]")
    assert "f=html" in visitor.url
    page2 = _ids(visitor)
    assert len(page2) == 3 and min(page2) > max(page1)
    with visitor.expect_navigation():
        visitor.click("nav.paging a[rel=next]")
    page3 = _ids(visitor)
    assert min(page3) > max(page2)
    # `prev` where the page's links have it (another change adds it to items).
    as_json = visitor.url.replace("f=html", "f=json")
    if any(lk["rel"] == "prev" for lk in visitor.request.get(as_json).json()["links"]):
        with visitor.expect_navigation():
            visitor.click("nav.paging a[rel=prev]")
        assert _ids(visitor) == page2
    with visitor.expect_navigation():
        visitor.click("nav.paging a[rel=first]")
    assert _ids(visitor) == page1


def test_alternate_links_and_the_exports_of_the_current_filter(visitor, shared_db_url):
    base = visitor.base
    oid = _public_object(shared_db_url, FINDER)
    for path, media in (("/", "application/json"), ("/collections", "application/json"),
                        ("/kodelister/d_basis_offentlig", "application/json"),
                        (ITEMS, "application/geo+json"), (f"{ITEMS}/{oid}",
                                                          "application/geo+json")):
        visitor.goto(base + path + "?f=html")
        alternates = visitor.eval_on_selector_all(
            "head link[rel=alternate]", "ls => ls.map(l => [l.type, l.href])")
        assert media in [t for t, _ in alternates], (path, alternates)
        href = next(h for t, h in alternates if t == media)
        r = visitor.request.get(href)
        assert r.status == 200 and r.headers["content-type"].startswith(media), (path, href)

    # The download links carry the page's filter, not its paging.
    flt = "pladser > 100"
    visitor.goto(base + f"{ITEMS}?f=html&limit=2&filter={flt}")
    links = dict(visitor.eval_on_selector_all(
        "section.downloads a", "as => as.map(a => [a.dataset.format, a.href])"))
    assert set(links) == {"geojson", "gpkg", "csv", "xlsx", "shp"}
    for fmt, href in links.items():
        qs = dict(parse_qsl(urlsplit(href).query))
        assert qs == {"filter": flt, "f": fmt}, href
    matched = visitor.request.get(base + ITEMS, params={"filter": flt, "limit": 1}) \
        .json()["numberMatched"]
    text = visitor.request.get(links["csv"]).text().lstrip("\ufeff")
    delimiter = ";" if ";" in text.split("\n", 1)[0] else ","  # the Danish dialect or RFC 4180
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    assert matched > 2 and len(rows) - 1 == matched
