"""The API's documentation pages in a real browser, offline: Swagger UI (`/docs`) and ReDoc
(`/redoc`) render Ly's OpenAPI document, under the Content-Security-Policy (no violation),
with every request to another host aborted and recorded (none may even be attempted).

The browser knows the live server by a name that is not loopback's (`http://ly.test`, each
request answered by the live server through Playwright's routing), as a deployment would
be: Swagger UI never shows its online validator badge for a document on localhost or
127.0.0.1, so only under another name would it ask validator.swagger.io for it (unless
`validatorUrl: null`, service/static/ly-docs.js).
"""

from __future__ import annotations

import pytest

from tests.browser import launched, requires_chromium
from tests.conftest import LiveServer

pytest.importorskip("playwright.sync_api")

pytestmark = requires_chromium

TIMEOUT_MS = 30_000
LISTENER = """
document.addEventListener('securitypolicyviolation', (e) => {
  console.error('CSP-VIOLATION ' + JSON.stringify({
    directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample}));
});
"""


@pytest.fixture(scope="module")
def browser():
    with launched() as b:
        yield b


NAME = "http://ly.test"


class Offline:
    """A browser context where only Ly answers (at NAME, by the live server `live`): every
    other request is aborted and recorded, as are policy violations and script errors."""

    def __init__(self, browser, live: str):
        self.live = live
        self.outside: list[str] = []
        self.problems: list[str] = []
        self.requests: list[str] = []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.context.add_init_script(LISTENER)
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.problems.append(f"pageerror: {exc}"))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def _route(self, route):
        url = route.request.url
        if url.startswith(NAME + "/"):
            headers = {**route.request.headers, "host": NAME.split("//", 1)[1]}
            route.fulfill(response=route.fetch(url=self.live + url[len(NAME):],
                                               headers=headers))
        elif url.startswith(("http:", "https:", "ws:", "wss:")):
            self.outside.append(url)
            route.abort()
        else:
            route.continue_()

    def _console(self, msg) -> None:
        if "CSP-VIOLATION" in msg.text or "Content Security Policy" in msg.text:
            self.problems.append(msg.text)

    def open(self, path: str):
        response = self.page.goto(NAME + path, wait_until="load")
        assert response is not None and response.status == 200, path
        return response

    def close(self):
        self.context.close()


ITEMS_SUMMARY = "En samlings objekter (features)"


def _offline_and_clean(v: Offline) -> None:
    assert v.outside == [], v.outside  # nothing was asked of another host
    assert v.problems == [], v.problems
    web = [u for u in v.requests if u.startswith(("http:", "https:"))]
    # not even what the policy refused before it left the browser
    assert web and all(u.startswith(NAME + "/") for u in web), web


@pytest.fixture(scope="module")
def live(shared_db_url):
    """The app, with NAME one of its host names."""
    with LiveServer(shared_db_url, public_url=NAME) as server:
        yield server


def test_swagger_ui_works_offline(browser, live):
    v = Offline(browser, live.url)
    try:
        v.open("/docs")
        v.page.get_by_text(ITEMS_SUMMARY).first.wait_for(state="visible")
        assert v.page.locator(".opblock").count() > 20  # every operation is listed
        v.page.wait_for_load_state("networkidle")
        _offline_and_clean(v)
        assert any(u.endswith("/openapi.json") for u in v.requests)
    finally:
        v.close()


def test_redoc_works_offline(browser, live):
    v = Offline(browser, live.url)
    try:
        r = v.open("/redoc")
        assert "worker-src 'self' blob:" in r.headers["content-security-policy"]
        v.page.locator("h2", has_text=ITEMS_SUMMARY).first.wait_for(state="visible")
        # The search runs in ReDoc's web worker (from a blob, which the page's policy allows).
        v.page.fill("input[placeholder='Search...']", "historik")
        v.page.locator("[role='search'] [role='menuitem'], .search-results li").first \
            .wait_for(state="visible")
        v.page.wait_for_load_state("networkidle")
        _offline_and_clean(v)
    finally:
        v.close()



NONCE_OF_PAGE = "() => document.querySelector('script[nonce]').nonce"
#: Whether the page's policy refuses a style element without its nonce.
UNNONCED_STYLE_REFUSED = """() => new Promise((resolve) => {
  document.addEventListener('securitypolicyviolation', () => resolve(true), {once: true});
  const s = document.createElement('style');
  s.textContent = 'body { outline: 0 }';
  document.head.appendChild(s);
  setTimeout(() => resolve(false), 2000);
})"""


def test_a_revalidated_page_keeps_its_policy(browser, live_ro):
    """A page the browser revalidates is answered 304 without a new policy: the stored
    page runs under the policy it came with, whose nonce is the one in it. ReDoc's page
    gives its nonce to the style elements ReDoc makes: under a new policy's nonce they
    would be refused. (No routing here: Playwright's routing turns the browser's cache
    off; the policy keeps other hosts out, and a request to one would be seen.)"""
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(LISTENER)
    page = context.new_page()
    problems, responses = [], []
    page.on("console", lambda m: problems.append(m.text) if "CSP-VIOLATION" in m.text
            or "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on("response", lambda r: responses.append(r))
    heading = page.locator("h2", has_text=ITEMS_SUMMARY).first
    try:
        first = page.goto(live_ro.url + "/redoc", wait_until="load")
        heading.wait_for(state="visible")
        nonce = page.evaluate(NONCE_OF_PAGE)
        again = page.reload(wait_until="load")
        heading.wait_for(state="visible")
        # The browser asked with the page's ETag and was answered 304 (Playwright reports
        # the stored page's status; the fields are the 304's: no type, no policy).
        assert again.request.all_headers()["if-none-match"] == first.headers["etag"]
        raw = again.all_headers()
        assert "content-type" not in raw and "content-security-policy" not in raw, raw
        assert page.evaluate(NONCE_OF_PAGE) == nonce  # the stored page
        assert page.evaluate("document.querySelectorAll('style[nonce]').length") > 0
        assert problems == [], problems
        assert all(r.url.startswith((live_ro.url + "/", "blob:")) for r in responses)
        assert page.evaluate(UNNONCED_STYLE_REFUSED)  # a policy is in force: the stored one
    finally:
        context.close()
