"""The HTML pages in a real browser: headless Chromium renders them from the live server.

Chromium has no credentials, so it sees what the public sees: the shelters marked public
(off_kode 1; the demo register is not activated) and their public attributes.
"""

from __future__ import annotations

import html
import os
import signal
import subprocess
from html.parser import HTMLParser
from urllib.parse import urlencode

import pytest

from tests.browser import CHROMIUM, FLAGS, requires_chromium
from tests.conftest import ITEMS, query

pytestmark = requires_chromium

TIMEOUT = 60


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    """Run Chromium once with some arguments; returns its stdout (the DOM for --dump-dom)."""
    profile = tmp_path_factory.mktemp("chromium-profile")

    def run(*args: str) -> str:
        cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args]
        # Its own session, so a hung browser and all its helper processes can be killed.
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail(f"chromium did not finish within {TIMEOUT} s: {args}")
        assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
        return out.decode("utf-8")

    return run


class Page(HTMLParser):
    """Table rows (cell texts and the row's attributes) and links of a rendered DOM."""

    def __init__(self, dom: str):
        super().__init__(convert_charrefs=True)
        self.rows: list[tuple[dict, list[str]]] = []
        self.links: list[tuple[dict, str]] = []
        self.form_fields: list[dict] = []  # <input>s of the page's forms, in document order
        self._cell: list[str] | None = None
        self._link: tuple[dict, list[str]] | None = None
        self.feed(dom)
        self.text = html.unescape(dom)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr":
            self.rows.append((attrs, []))
        elif tag in ("td", "th") and self.rows:
            self._cell = []
        elif tag == "a":
            self._link = (attrs, [])
        elif tag == "input":
            self.form_fields.append(attrs)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1][1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "a" and self._link is not None:
            self.links.append((self._link[0], " ".join("".join(self._link[1]).split())))
            self._link = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._link is not None:
            self._link[1].append(data)

    def feature_rows(self) -> list[tuple[dict, list[str]]]:
        return [(a, cells) for a, cells in self.rows if "data-objekt-id" in a]


def _public_ids(db: str) -> set[str]:
    return {str(r[0]) for r in query(
        db, "SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE off_kode = 1")}


def test_items_page_lists_25_shelters_and_links_the_next_page(chromium, live_ro,
                                                              shared_db_url):
    page = Page(chromium("--dump-dom", f"{live_ro.url}{ITEMS}?f=html&limit=25"))
    rows = page.feature_rows()
    assert len(rows) == 25
    ids = [a["data-objekt-id"] for a, _ in rows]
    assert len(set(ids)) == 25
    assert set(ids) <= _public_ids(shared_db_url)
    assert ids == sorted(ids)  # keyset order
    nxt = [a for a, text in page.links if text == "Næste side" and "f=html" in a.get("href", "")]
    assert nxt, [text for _, text in page.links]
    assert "cursor=" in nxt[0]["href"] and "limit=25" in nxt[0]["href"]

    # The browser follows it: the next 25, all after this page's last.
    following = Page(chromium("--dump-dom", html.unescape(nxt[0]["href"]))).feature_rows()
    next_ids = [a["data-objekt-id"] for a, _ in following]
    assert len(next_ids) == 25 and min(next_ids) > max(ids)


def test_item_page_shows_the_shelters_name_and_places(chromium, live_ro, shared_db_url):
    objekt_id, navn, pladser = query(
        shared_db_url,
        "SELECT objekt_id, navn, pladser FROM ly.t_6101_beskyt_rum "
        "WHERE off_kode = 1 AND navn IS NOT NULL ORDER BY objekt_id LIMIT 1")[0]
    page = Page(chromium("--dump-dom", f"{live_ro.url}{ITEMS}/{objekt_id}?f=html"))
    assert navn in page.text
    h1 = page.text.split("<h1>", 1)[1].split("</h1>", 1)[0]
    assert h1.strip() == navn
    by_field = {cells[1]: cells[2] for _, cells in page.rows if len(cells) >= 3}
    assert by_field["pladser"] == str(pladser)
    assert by_field["objekt_id"] == str(objekt_id)
    assert str(objekt_id) in page.text


def test_glossary_page_shows_betondaekningsgrav(chromium, live_ro):
    page = Page(chromium("--dump-dom", f"{live_ro.url}/begreber?f=html"))
    assert "Betondækningsgrav" in page.text


def test_items_page_screenshot(chromium, live_ro, output_dir):
    target = output_dir / "items.png"
    target.unlink(missing_ok=True)
    chromium(f"--screenshot={target}", "--window-size=1280,900", "--hide-scrollbars",
             f"{live_ro.url}{ITEMS}?f=html&limit=25")
    assert target.exists()
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000, len(data)


def test_items_search_form_works_as_a_browser_submits_it(chromium, live_ro, shared_db_url):
    """The search form of the items page, submitted with only a filter filled in.

    A browser submits a GET form's every text input, empty ones as `name=` (HTML form
    submission); the page must treat an empty bbox or filter as not given.
    """
    items_url = f"{live_ro.url}{ITEMS}?f=html&limit=25"
    form = Page(chromium("--dump-dom", items_url)).form_fields
    names = [f.get("name") for f in form if f.get("name")]
    assert {"f", "bbox", "filter", "limit"} <= set(names), names
    values = [(f["name"], "pladser > 500" if f["name"] == "filter" else f.get("value", ""))
              for f in form if f.get("name")]
    submitted = f"{live_ro.url}{ITEMS}?{urlencode(values)}"  # e.g. ...&bbox=&filter=...
    assert "bbox=&" in submitted
    page = Page(chromium("--dump-dom", submitted))
    (expected,) = query(shared_db_url, "SELECT count(*) FROM ly.t_6101_beskyt_rum "
                                       "WHERE off_kode = 1 AND pladser > 500")[0]
    rows = page.feature_rows()
    assert expected > 0
    assert len(rows) == min(25, expected), page.text[:600]
    header = next(cells for a, cells in page.rows if "Pladser" in cells)
    col = header.index("Pladser")
    assert all(int(cells[col]) > 500 for _, cells in rows)
