"""The inspector form (/eftersyn/formular) in a real browser: Debian's Chromium, driven by
Playwright, against a live server on a fresh database.

A betondækningsgrav inspection is filled in offline with a photo, survives a reload while
offline (service worker + IndexedDB), is sent when the device is back online — through a
network that loses the first response of each upload, so the form replays them — and is
stored exactly once; replaying every upload once more changes nothing.

Playwright drives the system Chromium (`executable_path`); `playwright install` is never run.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
from datetime import date

import httpx
import pytest
from PIL import Image

from datamodel import checklist
from tests.browser import launched, requires_chromium
from tests.conftest import query, token

pytest.importorskip("playwright.sync_api")

pytestmark = requires_chromium

KBH = 101
INSPECTOR = "inspektoer-1"
COPENHAGEN = {"latitude": 55.6761, "longitude": 12.5683}
TIMEOUT_MS = 20_000


def _png() -> bytes:
    """A small photo: a PNG with a gradient (so it is not trivially compressible)."""
    img = Image.new("RGB", (64, 48))
    img.putdata([(x * 4, y * 5, (x + y) * 2) for y in range(48) for x in range(64)])
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def _wait(page, predicate, what: str, timeout: float = 30.0):
    """Poll `predicate`, letting Playwright run (its route handlers run only meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        page.wait_for_timeout(200)


@pytest.fixture
def browser():
    with launched() as b:
        yield b


@pytest.fixture
def assignment(db_url):
    """A betondækningsgrav (beskyt_rum_kode 3) in København assigned to the inspector."""
    (cvr,) = query(db_url, "SELECT cvr_kode FROM ly.kommune WHERE kommunekode = %s", [KBH])[0]
    oid, navn = query(db_url, "SELECT objekt_id, navn FROM ly.t_6101_beskyt_rum "
                              "WHERE beskyt_rum_kode = 3 AND beliggenhedskommune = %s "
                              "AND cvr_kode = %s ORDER BY objekt_id LIMIT 1", [KBH, cvr])[0]
    query(db_url, "INSERT INTO ly.tildeling (objekt_id, subjekt, cvr_kode, tildelt_af) "
                  "VALUES (%s, %s, %s, 'setup')", [oid, INSPECTOR, cvr])
    return str(oid), navn


def _new_context(browser):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
        has_touch=True, locale="da-DK", geolocation=COPENHAGEN, permissions=["geolocation"],
        service_workers="allow")
    context.set_default_timeout(TIMEOUT_MS)
    return context


def _shot(page, path):
    """A screenshot of what the inspector sees at the top of the page."""
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path))


def _mangler(page) -> list[str]:
    return page.eval_on_selector_all("#mangler-liste li", "els => els.map(e => e.dataset.punkt)")


def test_offline_inspection_arrives_once_even_when_replayed(live_rw, db_url, assignment,
                                                             browser, output_dir):
    oid, _ = assignment
    base = live_rw.url
    jwt = token(["inspector"], subject=INSPECTOR, ttl_seconds=3600)
    template = checklist.load_templates()[("bdg-6122", 1)]
    required = [p["id"] for s in template.to_json()["sektioner"] for p in s["punkter"]
                if p["paakraevet"]]
    photo = _png()

    context = _new_context(browser)
    page = context.new_page()
    crashes: list[str] = []
    page.on("pageerror", lambda exc: crashes.append(str(exc)))

    # --- online: sign in with the token in the URL, see the task, open it ---
    page.goto(f"{base}/eftersyn/formular#token={jwt}")
    page.wait_for_selector("body[data-klar='1']")
    assert "token" not in page.url, "the token must be removed from the address"
    assert page.evaluate("localStorage.getItem('ly_token')") == jwt
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")
    task = page.locator(f"#opgave-liste li.opgave[data-objekt-id='{oid}']")
    task.wait_for()
    assert task.locator(".sync").inner_text() == "Ikke påbegyndt"
    task.locator("button").click()
    page.wait_for_selector("#formular:not([hidden])")
    eftersyn_id = page.get_attribute("#formular", "data-eftersyn-id")
    assert re.fullmatch(r"[0-9a-f-]{36}", eftersyn_id)

    # "Mangler" lists exactly the template's required items; "Indsend" waits for them
    assert _mangler(page) == required
    assert page.is_disabled("#indsend")
    _shot(page, output_dir / "eftersyn-formular.png")

    # --- offline: fill in every required item and one room, attach a photo, submit ---
    context.set_offline(True)
    page.wait_for_selector("#net[data-online='nej']")
    today = date.today().isoformat()
    page.fill("[name='svar.beskyt_rum_nr']", "BDG-101-0042")
    page.fill("[name='svar.matrikelejer']", "Københavns Kommune")
    page.fill("[name='svar.udfoert_af']", "Ida Østergård")
    page.fill("[name='svar.udfoert_dato']", today)
    page.check("[name='svar.dokumentation'][value='true']")
    page.check("[name='svar.inspektioner'][value='false']")
    page.check("[name='svar.bbr'][value='true']")
    # a conditional requirement: the reason is required when the shelter cannot be located
    page.check("[name='svar.lokaliseret'][value='false']")
    assert "lokaliseret_aarsag" in _mangler(page)
    page.check("[name='svar.lokaliseret'][value='true']")
    assert "lokaliseret_aarsag" not in _mangler(page)
    page.fill("[name='svar.antal_pladser']", "40")
    page.check("[name='svar.adgang_kode'][value='1']")
    page.fill("[name='svar.note']", "Dækslet er tungt; nøgle hos viceværten")
    page.click("#tilfoej-rum")
    page.check("[name='rum[1].konstruktion_intakt_kode'][value='1']")
    page.check("[name='rum[1].konstruktion_blotlagt_armering_kode'][value='2']")
    page.set_input_files(
        "[data-foto-for='rum[1].konstruktion_intakt_kode'] input[type=file]",
        files=[{"name": "rum1.png", "mimeType": "image/png", "buffer": photo}])
    page.wait_for_selector("[data-foto-for='rum[1].konstruktion_intakt_kode'] li.foto")
    assert _mangler(page) == []
    assert page.is_visible("#mangler-ingen")
    assert page.is_enabled("#indsend")

    page.click("#indsend")
    page.wait_for_selector("#synk-tilstand[data-sync='venter']")
    assert "Venter på netværk" in page.inner_text("#synk-tilstand")
    assert page.get_attribute("#formular", "data-status") == "indsendt"
    assert page.is_disabled("[name='svar.beskyt_rum_nr']")   # a submitted form is locked
    _shot(page, output_dir / "eftersyn-offline.png")
    page.screenshot(path=str(output_dir / "eftersyn-offline-hele.png"), full_page=True)
    assert query(db_url, "SELECT count(*) FROM ly.eftersyn")[0][0] == 0
    assert query(db_url, "SELECT count(*) FROM ly.eftersyn_foto")[0][0] == 0

    # --- still offline: a reload comes from the service worker, the draft from IndexedDB ---
    response = page.reload()
    assert response is not None and response.from_service_worker
    page.wait_for_selector("body[data-klar='1']")
    page.wait_for_selector("#formular:not([hidden])")
    assert page.get_attribute("#formular", "data-eftersyn-id") == eftersyn_id
    assert page.input_value("[name='svar.beskyt_rum_nr']") == "BDG-101-0042"
    assert page.input_value("[name='svar.udfoert_af']") == "Ida Østergård"
    assert page.input_value("[name='svar.udfoert_dato']") == today
    assert page.input_value("[name='svar.antal_pladser']") == "40"
    assert page.is_checked("[name='svar.bbr'][value='true']")
    assert page.is_checked("[name='rum[1].konstruktion_intakt_kode'][value='1']")
    assert page.locator("li.foto").count() == 1
    assert page.get_attribute("#synk-tilstand", "data-sync") == "venter"
    assert query(db_url, "SELECT count(*) FROM ly.eftersyn")[0][0] == 0

    # the task list, offline too, shows the task waiting for the network
    page.click("#tilbage")
    page.locator("#opgaver-kilde", has_text="Offline").wait_for()
    card = page.locator(f"#opgave-liste li.opgave[data-objekt-id='{oid}']")
    card.locator(".sync[data-sync='venter']").wait_for()
    assert "1 venter" in page.inner_text("#udbakke")
    card.locator("button").click()
    page.wait_for_selector(f"#formular[data-eftersyn-id='{eftersyn_id}']:not([hidden])")

    # --- back online through a network that loses the first response of each upload ---
    seen: list[tuple[str, int]] = []   # (kind, HTTP status the server answered)
    sent: list[dict] = []              # every upload exactly as the browser sent it
    lost: set[str] = set()

    def lossy(route, request):
        if request.method != "PUT":
            route.continue_()
            return
        kind = "foto" if "/fotos/" in request.url else "eftersyn"
        sent.append({"url": request.url, "body": request.post_data_buffer,
                     "headers": {k: v for k, v in request.headers.items()
                                 if k.lower() in ("authorization", "content-type")}})
        answer = route.fetch()
        seen.append((kind, answer.status))
        if kind not in lost and answer.ok:
            lost.add(kind)
            route.abort("connectionreset")   # the server has it; the device never hears so
        else:
            route.fulfill(response=answer)

    context.route(re.compile(r".*/eftersyn/[0-9a-f-]{36}(/fotos/[0-9a-f-]{36})?(\?.*)?$"), lossy)
    context.set_offline(False)
    page.wait_for_selector("#net[data-online='ja']")
    # the `online` event starts the outbox by itself
    _wait(page, lambda: seen, "the outbox to send on the online event", timeout=15)

    def synced():
        if page.get_attribute("#synk-tilstand", "data-sync") == "sendt":
            return True
        if page.get_attribute("body", "data-synkroniserer") is None:
            page.click("#synk-formular")   # "Synkroniser": send what is still waiting now
        return False

    _wait(page, synced, "the form to report the inspection as sent", timeout=60)
    assert page.inner_text("#synk-tilstand").startswith("Sendt")
    page.wait_for_selector("li.foto[data-sendt='1']")
    _shot(page, output_dir / "eftersyn-sendt.png")

    # the network lost a response of each kind, so each upload reached the server twice
    assert [s for k, s in seen if k == "eftersyn"][:2] == [201, 200], seen
    assert [s for k, s in seen if k == "foto"][:2] == [201, 200], seen

    def stored():
        return (query(db_url, "SELECT count(*) FROM ly.eftersyn")[0][0],
                query(db_url, "SELECT count(*) FROM ly.eftersyn_foto")[0][0])

    assert stored() == (1, 1)
    (eid, status, svar, rum, inspector, version, lon, lat, position_tid) = query(
        db_url, "SELECT id, status, svar, rum, inspektoer, version, "
                "ST_X(ST_Transform(position, 4326)), ST_Y(ST_Transform(position, 4326)), "
                "position_tid FROM ly.eftersyn")[0]
    assert str(eid) == eftersyn_id
    assert status == "indsendt"
    assert inspector == INSPECTOR
    assert svar == {"beskyt_rum_nr": "BDG-101-0042", "matrikelejer": "Københavns Kommune",
                    "udfoert_af": "Ida Østergård", "udfoert_dato": today, "dokumentation": True,
                    "inspektioner": False, "bbr": True, "lokaliseret": True,
                    "antal_pladser": 40, "adgang_kode": 1,
                    "note": "Dækslet er tungt; nøgle hos viceværten"}
    assert rum == [{"konstruktion_intakt_kode": 1, "konstruktion_blotlagt_armering_kode": 2}]
    assert abs(lon - COPENHAGEN["longitude"]) < 1e-4 and abs(lat - COPENHAGEN["latitude"]) < 1e-4
    assert position_tid is not None
    (foto_eid, punkt, foto_rum, ctype, size, data) = query(
        db_url, "SELECT eftersyn_id, punkt, rum, content_type, stoerrelse, data "
                "FROM ly.eftersyn_foto")[0]
    assert (str(foto_eid), punkt, foto_rum, ctype, size) == (
        eftersyn_id, "konstruktion_intakt_kode", 1, "image/png", len(photo))
    assert hashlib.sha256(bytes(data)).hexdigest() == hashlib.sha256(photo).hexdigest()

    # --- replay: "Synkroniser" once more, then every upload again, byte for byte ---
    context.unroute_all()
    before = len(seen)
    page.click("#synk-formular")
    page.wait_for_function("() => document.body.dataset.synkroniserer === undefined")
    assert page.get_attribute("#synk-tilstand", "data-sync") == "sendt"
    assert len(seen) == before   # nothing was waiting, nothing was sent
    assert {s["url"].split("?")[0].rsplit("/", 2)[-2] for s in sent} >= {"eftersyn", "fotos"}
    with httpx.Client(timeout=30) as http:
        for s in sent:
            r = http.put(s["url"], content=s["body"], headers=s["headers"])
            assert r.status_code == 200, (s["url"], r.status_code, r.text)
    assert stored() == (1, 1)
    assert query(db_url, "SELECT version FROM ly.eftersyn")[0][0] == version
    r = httpx.get(f"{base}/eftersyn/{eftersyn_id}", headers={"Authorization": "Bearer " + jwt})
    assert r.status_code == 200
    got = r.json()
    assert got["status"] == "indsendt" and got["mangler_svar"] == []
    assert [(f["punkt"], f["rum"], f["stoerrelse"]) for f in got["fotos"]] == [
        ("konstruktion_intakt_kode", 1, len(photo))]

    # back in the task list the task shows it was sent
    page.click("#tilbage")
    page.wait_for_selector(
        f"#opgave-liste li.opgave[data-objekt-id='{oid}'] .sync[data-sync='sendt']")
    assert crashes == [], crashes
    context.close()


def test_the_form_page_and_its_service_worker_are_served(live_rw):
    """The page is Danish and mobile-ready; the worker may control /eftersyn/."""
    with httpx.Client(base_url=live_rw.url) as http:
        page = http.get("/eftersyn/formular")
        assert page.status_code == 200
        assert '<html lang="da">' in page.text and 'name="viewport"' in page.text
        for label in ("Gem kladde", "Indsend", "Synkroniser", "Mangler"):
            assert label in page.text
        sw = http.get("/eftersyn/sw.js")
        assert sw.status_code == 200
        assert sw.headers["service-worker-allowed"] == "/eftersyn/"
        assert "javascript" in sw.headers["content-type"]
        for asset in ("/static/eftersyn/app.js", "/static/eftersyn/app.css"):
            assert http.get(asset).status_code == 200
        # nothing is fetched from elsewhere at run time (no CDNs)
        assert not re.search(r"""(src|href)=["']https?://(?!127\.0\.0\.1)""", page.text)


def test_server_errors_are_shown_at_their_items_and_a_rejection_can_be_corrected(
        live_rw, db_url, assignment, browser, output_dir):
    """Signing in with the token field, a draft saved online, the problem's `errors[].field`
    shown next to the item it names, and an inspection the municipality rejected corrected
    and submitted again."""
    oid, _ = assignment
    base = live_rw.url
    jwt = token(["inspector"], subject=INSPECTOR, ttl_seconds=3600)
    # a second task: an ordinary shelter (not a betondækningsgrav) gets the general checklist
    (other,) = query(db_url, "SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE "
                             "beskyt_rum_kode = 1 AND beliggenhedskommune = %s "
                             "ORDER BY objekt_id LIMIT 1", [KBH])[0]
    query(db_url, "INSERT INTO ly.tildeling (objekt_id, subjekt, tildelt_af) "
                  "VALUES (%s, %s, 'setup')", [other, INSPECTOR])
    context = _new_context(browser)
    page = context.new_page()
    crashes: list[str] = []
    page.on("pageerror", lambda exc: crashes.append(str(exc)))

    page.goto(f"{base}/eftersyn/formular")
    page.wait_for_selector("#log-ind:not([hidden])")
    page.fill("#token", "ikke en nøgle")
    page.click("#log-ind-form button[type=submit]")
    assert page.is_visible("#token-fejl")
    page.fill("#token", jwt)
    page.click("#log-ind-form button[type=submit]")
    page.locator(f"#opgave-liste li.opgave[data-objekt-id='{oid}'] button").click()
    page.wait_for_selector("#formular:not([hidden])")
    eftersyn_id = page.get_attribute("#formular", "data-eftersyn-id")

    # rooms are added and removed; the later rooms move up
    page.click("#tilfoej-rum")
    page.click("#tilfoej-rum")
    page.check("[name='rum[2].konstruktion_intakt_kode'][value='3']")
    page.click("section.rum[data-rum='1'] .fjern-rum")
    assert page.locator("section.rum").count() == 1
    assert page.is_checked("[name='rum[1].konstruktion_intakt_kode'][value='3']")

    # a draft is saved online as a draft ("kladde"), incomplete as it is
    page.fill("[name='svar.beskyt_rum_nr']", "BDG-7")
    page.fill("[name='svar.antal_pladser']", "12")
    page.click("#gem-kladde")
    page.wait_for_selector("#synk-tilstand[data-sync='sendt']")
    assert query(db_url, "SELECT status, svar FROM ly.eftersyn")[0] == (
        "kladde", {"beskyt_rum_nr": "BDG-7", "antal_pladser": 12})

    # the server refuses the next upload: each error is shown at the item it names
    problem = {"type": "about:blank", "title": "Unprocessable Content", "status": 422,
               "detail": "1 svar er ugyldige",
               "errors": [{"field": "svar.antal_pladser", "detail": "stemmer ikke med BBR"},
                          {"field": "kampagne_id", "detail": "kampagnen er afsluttet"}]}

    def refuse(route, request):
        if request.method == "PUT":
            route.fulfill(status=422, content_type="application/problem+json",
                          body=json.dumps(problem))
        else:
            route.continue_()

    context.route(re.compile(r".*/eftersyn/[0-9a-f-]{36}$"), refuse)
    page.fill("[name='svar.antal_pladser']", "13")
    page.click("#gem-kladde")
    page.wait_for_selector("#synk-tilstand[data-sync='fejl']")
    item = page.locator(".punkt[data-felt='svar.antal_pladser']")
    assert item.locator(".felt-fejl").inner_text() == "stemmer ikke med BBR"
    assert "har-fejl" in item.get_attribute("class")
    assert "1 svar er ugyldige" in page.inner_text("#problem")
    assert "kampagne_id: kampagnen er afsluttet" in page.inner_text("#problem")
    _shot(page, output_dir / "eftersyn-fejl.png")
    item.scroll_into_view_if_needed()
    page.screenshot(path=str(output_dir / "eftersyn-fejl-ved-punkt.png"))
    context.unroute_all()
    page.fill("[name='svar.antal_pladser']", "14")   # editing the item clears its error
    assert not item.locator(".felt-fejl").is_visible()

    # complete it and submit online
    page.fill("[name='svar.matrikelejer']", "Privat ejer")
    page.fill("[name='svar.udfoert_af']", "Ida Østergård")
    page.click(".punkt[data-felt='svar.udfoert_dato'] button.i-dag")
    for name, value in (("dokumentation", "false"), ("inspektioner", "false"),
                        ("bbr", "false"), ("lokaliseret", "true")):
        page.check(f"[name='svar.{name}'][value='{value}']")
    assert _mangler(page) == []
    page.click("#indsend")
    page.wait_for_selector("#synk-tilstand[data-sync='sendt']")
    assert query(db_url, "SELECT status FROM ly.eftersyn")[0][0] == "indsendt"
    assert page.is_disabled("[name='svar.antal_pladser']")

    # the municipality rejects it; the inspector sees why, corrects it and submits again
    (cvr,) = query(db_url, "SELECT cvr_kode FROM ly.kommune WHERE kommunekode = %s", [KBH])[0]
    admin = {"Authorization": "Bearer " + token(["municipal_admin"], subject="kbh-admin",
                                                cvr=cvr, kommuner=[KBH])}
    r = httpx.post(f"{base}/eftersyn/{eftersyn_id}/afvis", headers=admin,
                   json={"begrundelse": "Antal pladser skal tælles igen"})
    assert r.status_code == 200, r.text
    page.click("#tilbage")
    card = page.locator(f"#opgave-liste li.opgave[data-objekt-id='{oid}']")
    card.locator(".sync", has_text="afvist").wait_for()
    card.locator("button").click()
    page.wait_for_selector("#formular[data-status='kladde']")
    assert "Antal pladser skal tælles igen" in page.inner_text("#problem")
    assert page.is_enabled("[name='svar.antal_pladser']")
    page.fill("[name='svar.antal_pladser']", "16")
    page.click("#indsend")
    page.wait_for_selector("#synk-tilstand[data-sync='sendt']")
    status, svar = query(db_url, "SELECT status, svar FROM ly.eftersyn")[0]
    assert (status, svar["antal_pladser"]) == ("indsendt", 16)
    assert query(db_url, "SELECT count(*) FROM ly.eftersyn")[0][0] == 1
    assert query(db_url, "SELECT rum FROM ly.eftersyn")[0][0] == [
        {"konstruktion_intakt_kode": 3}]

    # the general checklist: graded items (0, 1, 2, 3, S), no rooms
    page.click("#tilbage")
    page.locator(f"#opgave-liste li.opgave[data-objekt-id='{other}'] button").click()
    page.wait_for_selector("#formular:not([hidden])")
    assert "Generelt eftersyn" in page.inner_text("#formular-tjekliste")
    assert page.locator("[name='svar.B1']").evaluate_all("els => els.map(e => e.value)") == [
        "0", "1", "2", "3", "S"]
    assert page.is_hidden("#rum-blok")
    assert "B1" in _mangler(page)
    page.check("[name='svar.B1'][value='S']")
    assert "B1" not in _mangler(page)
    assert crashes == [], crashes
    context.close()
