"""The map page in a real browser: Debian's headless Chromium, driven over the DevTools
protocol, opens `/kort` on the live server, finds the shelters, the clusters and the
choropleth legend, applies filters and compares what it shows with the database.

The machine has no internet, so the OpenStreetMap basemap cannot load: the page must still
show everything but the basemap (and say so). Screenshots go to `test-output/`.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from datamodel import themes
from tests.browser import CHROMIUM
from tests.browser import FLAGS as BROWSER_FLAGS
from tests.conftest import SAMS_CVR, query, token


FLAGS = [*BROWSER_FLAGS, "--window-size=1400,900",
         "--remote-debugging-port=0", "--remote-allow-origins=*"]
KBH = 101


class Browser:
    """One headless Chromium and one page, spoken to over the DevTools protocol."""

    def __init__(self, profile: Path):
        from websockets.sync.client import connect

        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}",
                                      "about:blank"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        self._id = 0
        self.send("Page.enable")
        self.send("Network.enable")

    def send(self, method: str, timeout: float = 30, **params) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, ready: str = "document.querySelector('.folium-map')"
             "?.getAttribute('data-ready') === 'true'", timeout: float = 30) -> None:
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while not self.js(f"Boolean({ready})"):
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not get ready: "
                                     + str(self.js("document.body.innerText.slice(0, 500)")))
            time.sleep(0.1)

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])
        path.write_bytes(data)
        return data

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no chromium or chromium-browser binary on PATH")
    b = Browser(tmp_path_factory.mktemp("chromium-maps"))
    yield b
    b.close()


SHELTERS = themes.get("beskyttelsesrum")
S = SHELTERS.collection_id


def _count(db: str, where: str, params=None) -> int:
    return query(db, f"SELECT count(*) FROM ly.{SHELTERS.current_view} WHERE {where}",
                 params)[0][0]


def _shown(browser: Browser, theme: str = S) -> int:
    return int(browser.js(f"document.getElementById('ly-shown-{theme}')"
                          ".getAttribute('data-count')"))


def _select(browser: Browser, element_id: str, value: str) -> None:
    browser.js(f"(() => {{ const s = document.getElementById({json.dumps(element_id)}); "
               f"s.value = {json.dumps(value)}; s.dispatchEvent(new Event('change')); }})()")


def _open_a_popup(browser: Browser, theme: str = S) -> str:
    """Zoom to the first shown object of a point theme, open its popup, and return the
    popup's text."""
    return browser.js(f"""new Promise(done => {{
        const group = window.lyMap.layers[{json.dumps(theme)}].group;
        const m = group.getLayers()[0];
        group.zoomToShowLayer(m, () => {{
            m.openPopup();
            setTimeout(() => done(document.querySelector('.ly-popup').innerText), 100);
        }});
    }})""")


def test_public_map_shows_shelters_clusters_legend_and_filters(browser, live_ro,
                                                                shared_db_url, output_dir):
    browser.send("Network.clearBrowserCookies")
    browser.open(f"{live_ro.url}/kort")
    public = _count(shared_db_url, "off_kode = 1")
    assert public > 0
    assert _shown(browser) == public
    assert browser.js(f"window.lyMap.layers.{S}.group.getLayers().length") == public
    # Shelters in the DOM: at this zoom as clusters, plus any that stand alone.
    clusters = browser.js(f"document.querySelectorAll('.marker-cluster.ly-t-{S}').length")
    singles = browser.js(f"document.querySelectorAll('.ly-point.ly-t-{S}').length")
    assert clusters > 0, "no marker clusters at the national zoom"
    cluster_total = browser.js(f"[...document.querySelectorAll('.marker-cluster.ly-t-{S}')]"
                               ".reduce((n, c) => n + Number(c.innerText), 0)")
    assert cluster_total + singles == public
    # The choropleth and its legend; the basemap is unreachable here, and the page says so.
    legend = browser.js("document.querySelector('.ly-choropleth-legend')?.innerText")
    assert legend and "Pladser pr. 1.000 indbyggere" in legend and "Intet folketal" in legend
    municipalities = browser.js("document.querySelectorAll('.leaflet-overlay-pane path')"
                                ".length")
    assert municipalities >= 99
    assert browser.js("document.getElementById('ly-basemap-note').hidden") is False
    # A layer switcher with the basemaps and the overlays, in Danish: one per theme.
    control = browser.js("document.querySelector('.leaflet-control-layers').innerText")
    for name in ("OpenStreetMap", "Intet baggrundskort", "Dækning pr. kommune",
                 *(t.title for t in themes.all_themes())):
        assert name in control
    # Coloured by type unless asked; the public may not filter or colour by condition.
    assert browser.js(f"document.querySelector('.folium-map').classList"
                      f".contains('ly-colour-{S}-beskyt_rum_kode')")
    assert browser.js(f"document.getElementById('filter-{S}-egnethed_kode')") is None
    assert "egnethed_kode" not in browser.js(
        f"[...document.getElementById('colour-{S}').options].map(o => o.value).join()")
    target = output_dir / "map-national-public.png"
    assert browser.screenshot(target)[:8] == b"\x89PNG\r\n\x1a\n"

    # Filter: Betondækningsgrav (type 3).
    _select(browser, f"filter-{S}-beskyt_rum_kode", "3")
    expected = _count(shared_db_url, "off_kode = 1 AND beskyt_rum_kode = 3")
    assert 0 < expected < public
    assert _shown(browser) == expected
    assert browser.js(f"window.lyMap.layers.{S}.group.getLayers().length") == expected
    assert browser.js(f"window.lyMap.layers.{S}.group.getLayers()"
                      ".every(m => m.lyProps.beskyt_rum_kode === 3)")
    assert f"{S}.beskyt_rum_kode=3" in browser.js("location.search")
    browser.screenshot(output_dir / "map-national-public-betondaekningsgrav.png")

    # A popup holds public attributes only.
    text = _open_a_popup(browser)
    assert "Betondækningsgrav" in text and "Pladser" in text
    for hidden in ("Egnethed", "Synlighed", "Ansvarlig myndighed", "Verificerede pladser"):
        assert hidden not in text


def test_municipality_map_for_the_national_admin(browser, live_ro, shared_db_url, output_dir):
    admin = token(["national_admin"], subject="sams-admin", cvr=SAMS_CVR)
    browser.send("Network.setCookie", name="ly_token", value=admin, url=live_ro.url)
    try:
        browser.open(f"{live_ro.url}/kort?kommune={KBH}&farve=egnethed")
        assert "København" in browser.js("document.querySelector('h1').innerText")
        total = _count(shared_db_url, "beliggenhedskommune = %s", [KBH])
        assert _shown(browser) == total
        # Coloured by condition: the legend for it is shown, the one for type hidden.
        assert browser.js("document.querySelector('.folium-map').classList"
                          f".contains('ly-colour-{S}-egnethed_kode')")
        assert browser.js(f"document.querySelector('[data-legend={S}]"
                          "[data-mode=egnethed_kode]').hidden") is False
        assert browser.js(f"document.querySelector('[data-legend={S}]"
                          "[data-mode=beskyt_rum_kode]').hidden") is True
        assert f"{S}.farve=egnethed_kode" in browser.js("location.search")

        _select(browser, f"filter-{S}-egnethed_kode", "3")
        unsuitable = _count(shared_db_url, "beliggenhedskommune = %s AND egnethed_kode = 3",
                            [KBH])
        assert _shown(browser) == unsuitable
        _select(browser, f"filter-{S}-egnethed_kode", "")
        _select(browser, f"filter-{S}-beskyt_rum_kode", "3")
        assert _shown(browser) == _count(
            shared_db_url, "beliggenhedskommune = %s AND beskyt_rum_kode = 3", [KBH])
        text = _open_a_popup(browser)
        assert "Egnethed" in text and "Synlighed" in text  # the authorities' attributes
        browser.screenshot(output_dir / "map-kommune-101-admin.png")
    finally:
        browser.send("Network.clearBrowserCookies")


def test_map_page_loads_nothing_from_outside(anon_client):
    r = anon_client.get("/kort")
    assert r.status_code == 200
    page = r.text
    for tag in ("<script src=", "<link rel=\"stylesheet\" href="):
        for piece in page.split(tag)[1:]:
            src = piece.split('"')[1]
            assert "/static/" in src and src.startswith("http://testserver/"), src


@pytest.mark.parametrize("path, status, field", [
    ("/kort?kommune=999", 404, None),
    ("/kort?kommune=abc", 400, "kommune"),
    ("/kort?beskyt_rum_kode=7", 400, "beskyt_rum_kode"),
    ("/kort?beskyttelsesrum.beskyt_rum_kode=x", 400, "beskyttelsesrum.beskyt_rum_kode"),
    ("/kort?egnethed_kode=1", 400, "egnethed_kode"),  # the public may not see condition
    ("/kort?beskyttelsesrum.egnethed_kode=1", 400, "beskyttelsesrum.egnethed_kode"),
    ("/kort?farve=egnethed", 400, "farve"),
    ("/kort?beskyttelsesrum.farve=pladser", 400, "beskyttelsesrum.farve"),
    ("/kort?beskyttelsesrum.navn=1", 400, "beskyttelsesrum.navn"),
    ("/kort?zoom=3", 400, "zoom"),
])
def test_map_page_bad_parameters_are_problems(anon_client, path, status, field):
    r = anon_client.get(path)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    if field:
        assert r.json()["errors"][0]["field"] == field


def _page_with(client, path: str = "/kort", **settings) -> str:
    """The page as the app renders it with some settings changed (for this request only)."""
    state = client.app.state
    original = state.settings
    state.settings = original.model_copy(update=settings)
    try:
        r = client.get(path)
    finally:
        state.settings = original
    assert r.status_code == 200, r.text
    return r.text


def test_basemap_settings(anon_client):
    osm = _page_with(anon_client)
    assert "https://tile.openstreetmap.org/{z}/{x}/{y}.png" in osm
    df = _page_with(anon_client, basemap="dataforsyningen", dataforsyningen_token="t0ken")
    assert "https://api.dataforsyningen.dk/topo_skaermkort_DAF?token=t0ken" in df
    assert '"layers": "dtk_skaermkort"' in df and "openstreetmap.org/{z}" not in df
    none = _page_with(anon_client, basemap="none")
    assert "tile.openstreetmap.org" not in none and "dataforsyningen" not in none
    assert "Intet baggrundskort" in none


def test_a_dataforsyningen_basemap_needs_a_token():
    from pydantic import ValidationError

    from service.settings import Settings

    with pytest.raises(ValidationError, match="LY_DATAFORSYNINGEN_TOKEN"):
        Settings(basemap="dataforsyningen")


def test_the_page_says_when_it_leaves_shelters_out(anon_client, shared_db_url):
    page = _page_with(anon_client, map_max_features=50)
    public = _count(shared_db_url, "off_kode = 1")
    assert f"Kortet viser de første 50 af {public} (beskyttelsesrum)" in page
    data = page.split(f'id="ly-features-{S}">', 1)[1].split("</script>", 1)[0]
    assert len(json.loads(data)["features"]) == 50


def test_a_name_cannot_end_the_script_it_is_embedded_in(anon_client):
    """User data (names) sits in a <script> element as JSON: `<` is escaped there (and the
    popup builds its text with textContent, never innerHTML)."""
    from service.maps import embed_features

    evil = "</script><script>alert(1)</script>"
    feature = json.dumps({"type": "Feature", "id": "x", "geometry": None,
                          "properties": {"navn": evil}})
    text = embed_features([feature])
    assert "<" not in text
    assert json.loads(text)["features"][0]["properties"]["navn"] == evil
    page = anon_client.get("/kort").text
    data = page.split(f'id="ly-features-{S}">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and json.loads(data)["type"] == "FeatureCollection"
    assert "innerHTML" not in _popup_code()


def _popup_code() -> str:
    from service.maps import VENDOR

    code = (VENDOR.parent / "ly-map.js").read_text(encoding="utf-8")
    return code.split("function popup(", 1)[1].split("function classes(", 1)[0]
