"""Every HTML page under the Content-Security-Policy (service/edge.py) in a real browser:
Debian's Chromium, driven by Playwright, against the live server. No page may trigger a
`securitypolicyviolation` (a blocked script, style or image, an inline script without the
response's nonce, an event handler attribute), and each still works: the maps draw and
filter, the inspector form's script runs, Swagger UI renders the API.

Playwright drives the system Chromium (`executable_path`); `playwright install` is never run.
`wait_for_function` is given functions, never expression strings: Playwright evaluates
a string with eval() while it polls, which the policy (no 'unsafe-eval') refuses. Requests
to any host but the live server are aborted (the basemap's tiles are the only ones the
policy allows, and the test needs no internet).
"""

from __future__ import annotations

import json

import httpx
import pytest

from datamodel import themes
from datamodel.codelists import load_codelists
from service import openapi
from service.app import create_app
from tests.browser import launched, requires_chromium
from tests.conftest import ADMIN_HEADERS, ITEMS, SAMS_CVR, make_settings, query, token

pytest.importorskip("playwright.sync_api")

pytestmark = requires_chromium

TIMEOUT_MS = 20_000

#: Reports every violation to the console, where the test collects them (a listener set up
#: before any of the page's own scripts runs).
LISTENER = """
document.addEventListener('securitypolicyviolation', (e) => {
  console.error('CSP-VIOLATION ' + JSON.stringify({
    directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample,
    source: e.sourceFile, line: e.lineNumber}));
});
"""


@pytest.fixture(scope="module")
def browser():
    with launched() as b:
        yield b


class Visit:
    """A browser context on the live server that records violations and script errors."""

    def __init__(self, browser, base: str, cookie: str | None = None):
        self.base = base
        self.context = browser.new_context(viewport={"width": 1280, "height": 900},
                                           service_workers="allow")
        self.context.set_default_timeout(TIMEOUT_MS)
        self.context.add_init_script(LISTENER)
        self.context.route(lambda url: not url.startswith(base), lambda route: route.abort())
        if cookie:
            self.context.add_cookies([{"name": "ly_token", "value": cookie, "url": base}])
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.problems.append(f"pageerror: {exc}"))

    def _console(self, msg) -> None:
        text = msg.text
        if "CSP-VIOLATION" in text or "Content Security Policy" in text:
            self.problems.append(text)

    def open(self, path: str):
        self.problems.clear()
        response = self.page.goto(self.base + path, wait_until="load")
        assert response is not None and response.status == 200, (path, response and
                                                                  response.status)
        assert "nonce-" in response.headers["content-security-policy"] or \
            "script-src 'self'" in response.headers["content-security-policy"]
        return response

    def settle(self, path: str) -> None:
        """Let late scripts run, then require that nothing was blocked."""
        self.page.wait_for_timeout(150)
        assert self.problems == [], (path, self.problems)

    def close(self) -> None:
        self.context.close()


def _ids(db: str) -> tuple[str, str]:
    """A public shelter, and a public object of the first area theme with one ("" if none)."""
    shelter = query(db, "SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE off_kode = 1 "
                        "ORDER BY objekt_id LIMIT 1")[0][0]
    for t in themes.all_themes():
        if t.is_area:
            rows = query(db, f"SELECT objekt_id FROM ly.{t.current_view} WHERE off_kode = 1 "
                             "ORDER BY objekt_id LIMIT 1")
            if rows:
                return str(shelter), f"/collections/{t.collection_id}/items/{rows[0][0]}?f=html"
    return str(shelter), ""


def _map_works(v: Visit) -> None:
    v.page.wait_for_function(
        "() => window.lyMap && document.querySelector('.leaflet-marker-pane')")
    assert v.page.evaluate("document.querySelectorAll('.folium-map.leaflet-container')"
                           ".length") == 1
    shown = v.page.evaluate("Number(document.querySelector('output[id^=ly-shown-]')"
                            ".textContent)")
    assert shown > 0
    # The panel's filters (ly-map.js, from /static) change what the map shows.
    code = v.page.evaluate("""() => {
        const s = document.querySelector('select[data-attr]');
        s.value = [...s.options].map(o => o.value).filter(Boolean)[0];
        s.dispatchEvent(new Event('change'));
        return s.name + '=' + s.value; }""")
    assert code in v.page.evaluate("location.search")


#: The path templates of the HTML pages the tests below open: every GET the OpenAPI document
#: says answers text/html (test_every_html_page_of_the_document_is_opened holds them to it).
OPENED = {
    "/", "/conformance", "/collections", "/collections/{collection_id}",
    "/collections/{collection_id}/queryables", "/collections/{collection_id}/schema",
    "/begreber", "/kodelister", "/kodelister/{name}", "/collections/{collection_id}/items",
    "/collections/{collection_id}/items/{featureId}",
    "/collections/{collection_id}/items/{featureId}/history", "/revision", "/kort",
    "/rapporter/kommune/{kommunekode}", "/rapporter/national",
    "/rapporter/kampagner/{kampagne_id}",
    # the planner's map: opened under the policy by tests/test_planning_api.py
    "/planlaegning/kort",
}


def test_every_html_page_of_the_document_is_opened():
    spec = openapi.build(create_app(make_settings("postgresql://ly@127.0.0.1:1/unused")))
    html = {path for path, ops in spec["paths"].items()
            if "text/html" in ops.get("get", {}).get("responses", {}).get("200", {})
            .get("content", {})}
    assert html and html <= OPENED, sorted(html - OPENED)


def test_every_page_runs_under_the_policy(browser, live_ro, shared_db_url):
    shelter, area = _ids(shared_db_url)
    public = ["/?f=html", "/conformance?f=html", "/collections?f=html", "/begreber?f=html",
              "/kodelister?f=html", f"/kodelister/{sorted(load_codelists())[0]}?f=html",
              f"{ITEMS}/{shelter}?f=html"]
    for t in themes.all_themes():
        col = f"/collections/{t.collection_id}"
        public += [f"{col}?f=html", f"{col}/items?f=html&limit=10",
                   f"{col}/queryables?f=html", f"{col}/schema?f=html"]
    if area:
        public.append(area)
    v = Visit(browser, live_ro.url)
    try:
        for path in public:
            v.open(path)
            assert v.page.query_selector("main h1"), path
            v.settle(path)

        v.open("/kort")
        _map_works(v)
        v.settle("/kort")

        # The inspector form: app.js ran (it sets the network status) under the policy.
        v.open("/eftersyn/formular")
        v.page.wait_for_function(
            "() => document.getElementById('net').dataset.online !== 'ukendt'")
        assert v.page.evaluate("document.getElementById('net').textContent") in (
            "Online", "Offline")
        v.settle("/eftersyn/formular")

        # Swagger UI, from /static/vendor, renders the OpenAPI document.
        v.open("/docs")
        v.page.wait_for_selector(".swagger-ui .info .title")
        assert v.page.query_selector_all(".opblock")  # the operations are listed
        v.settle("/docs")
    finally:
        v.close()

    # Signed in (the pages' token cookie): the authorities' pages and reports.
    admin = token(["national_admin"], subject="sams-admin", cvr=SAMS_CVR)
    v = Visit(browser, live_ro.url, cookie=admin)
    try:
        for path in ("/rapporter/national", "/rapporter/kommune/101", "/revision?f=html",
                     f"{ITEMS}/{shelter}/history?f=html", f"{ITEMS}/{shelter}?f=html"):
            v.open(path)
            assert v.page.query_selector("main"), path
            v.settle(path)
        # The reports' charts are data: images; they load under img-src.
        v.open("/rapporter/kommune/101")
        assert v.page.evaluate("[...document.images].every(i => i.complete && "
                               "i.naturalWidth > 0)")
        v.settle("/rapporter/kommune/101")
        v.open("/kort?kommune=101&farve=egnethed")
        _map_works(v)
        v.settle("/kort?kommune=101")
    finally:
        v.close()


def test_the_listener_sees_a_violation(browser, live_ro):
    """The check can fail: an inline script without the nonce is blocked and reported."""
    v = Visit(browser, live_ro.url)
    try:
        v.open("/?f=html")
        v.page.evaluate("""() => { const s = document.createElement('script');
                                   s.textContent = 'window.__ran = 1';
                                   document.body.appendChild(s); }""")
        v.page.evaluate("""() => { const b = document.createElement('button');
                                   b.setAttribute('onclick', 'window.__clicked = 1');
                                   document.body.appendChild(b); b.click(); }""")
        v.page.wait_for_timeout(150)
        assert v.page.evaluate("window.__ran") is None
        assert v.page.evaluate("window.__clicked") is None
        assert any("script-src" in p for p in v.problems), v.problems
    finally:
        v.close()


def test_the_campaign_report_runs_under_the_policy(browser, live_rw, db_url):
    """The one page that needs an object the shared database lacks: a campaign."""
    body = {"navn": "BDG 2026", "tjekliste_kode": "bdg-6122", "periode_fra": "2026-02-01",
            "periode_til": "2026-03-15", "frist": "2026-03-15",
            "udvalg": {"beskyt_rum_kode": [3], "kommuner": [101]}}
    r = httpx.post(live_rw.url + "/kampagner", content=json.dumps(body),
                   headers={**ADMIN_HEADERS, "Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    admin = token(["national_admin"], subject="sams-admin", cvr=SAMS_CVR)
    v = Visit(browser, live_rw.url, cookie=admin)
    try:
        path = f"/rapporter/kampagner/{r.json()['id']}?f=html"
        v.open(path)
        assert v.page.query_selector("main"), path
        v.settle(path)
    finally:
        v.close()
