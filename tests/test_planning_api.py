"""Planning over HTTP (issue 18): making runs, who sees what, bad input, the municipal
report's coverage section, and the planner's map in Debian's Chromium (screenshot under
test-output/).

The module's own copy of the demo database has the synthetic grid of Frederiksberg (147)
and Morsø (773, so a municipal administrator elsewhere has a municipality of its
own to run).
"""

from __future__ import annotations

import json

import psycopg
import pytest
from fastapi.testclient import TestClient

from loaders import planning
from loaders import population_grid as pg
from service.app import create_app
from tests.browser import launched, requires_chromium
from tests.conftest import LiveServer, bearer, fresh_database, make_settings, query, token

FREDERIKSBERG, MORSOE = 147, 773
FRB_CVR = 11259979
THEME = planning.plan_theme()
VIEW = f"ly.{THEME.current_view}"
RUNS = "/planlaegning/koersler"
JSON_CT = {"Content-Type": "application/json"}
NATIONAL = bearer(["national_reader"], subject="sams-planlaegger")
ADMIN_147 = bearer(["municipal_admin"], subject="frb-admin", cvr=FRB_CVR,
                   kommuner=[FREDERIKSBERG])
EDITOR_147 = bearer(["municipal_editor"], subject="frb-red", cvr=FRB_CVR,
                    kommuner=[FREDERIKSBERG])
EDITOR_101 = bearer(["municipal_editor"], subject="kbh-red", cvr=64942212, kommuner=[101])
PLANNER = bearer(["planner"], subject="planlaegger")


@pytest.fixture(scope="module")
def api(template_db):
    for url in fresh_database(template_db, "ly_pa_"):
        with psycopg.connect(url) as conn:
            pg.load_synthetic(conn, kommuner=[FREDERIKSBERG, MORSOE])
        with TestClient(create_app(make_settings(url))) as c:
            yield c, url


def _post(c, body, headers=NATIONAL):
    return c.post(RUNS, headers={**headers, **JSON_CT}, content=json.dumps(body))


@pytest.fixture(scope="module")
def runs(api):
    """A base run of Frederiksberg by its administrator, and a scenario by a national
    reader (compared with the newest base run: the administrator's)."""
    c, url = api
    base = _post(c, {"kommunekode": FREDERIKSBERG}, ADMIN_147)
    assert base.status_code == 201, base.text
    scen = _post(c, {"kommunekode": FREDERIKSBERG, "scenarie": "kun-offentlige"})
    assert scen.status_code == 201, scen.text
    return base.json(), scen.json()


def test_a_run_is_made_and_read_back(api, runs):
    c, url = api
    base, scen = runs
    assert scen["sammenlignet_med"] == base["id"] and "basis_lavet" not in scen
    got = c.get(f"{RUNS}/{base['id']}", headers=PLANNER)
    assert got.status_code == 200
    body = got.json()
    stored = query(url, "SELECT sum(indbyggere), sum(daekket), sum(inden_for_raekkevidde) "
                        "FROM ly.plankoersel_celle WHERE koersel_id = %s", [base["id"]])[0]
    assert (body["totaler"]["indbyggere"], body["totaler"]["daekket"],
            body["totaler"]["inden_for_raekkevidde"]) == tuple(int(v) for v in stored)
    assert body["resultat"]["daekket"] == body["totaler"]["daekket"]
    assert body["indstillinger"]["minutter"] == 30 and body["omfang"] == "kommune"
    assert body["input"]["net_syntetisk"] is True and body["input"]["objekter"] > 0
    assert {a["omraade"] for a in body["omraader"]} >= {2000}  # postal districts
    comp = c.get(f"{RUNS}/{scen['id']}", headers=PLANNER).json()["sammenligning"]
    assert comp["basis"] == base["id"]
    assert comp["forskel"] == scen["totaler"]["daekket"] - base["totaler"]["daekket"] < 0
    listed = [r["id"] for r in c.get(RUNS, headers=PLANNER).json()["koersler"]]
    assert listed[:2] == [scen["id"], base["id"]]


def test_a_scenario_without_a_base_makes_one_first(api):
    c, _ = api
    r = _post(c, {"kommunekode": MORSOE, "scenarie": {"navn": "uden nr. 1",
                                                             "udelad": {"off_kode": [1]}},
                  "indstillinger": {"minutter": 20}})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["basis_lavet"] == body["sammenlignet_med"]
    base = c.get(f"{RUNS}/{body['basis_lavet']}", headers=NATIONAL).json()
    assert base["scenarie"]["navn"] == "basis" and base["indstillinger"]["minutter"] == 20
    assert r.headers["location"].endswith(f"{RUNS}/{body['id']}")


def test_who_may_make_runs(api):
    c, _ = api
    municipal = {"kommunekode": FREDERIKSBERG}
    for headers, body, status, field in (
            (ADMIN_147, {"kommunekode": MORSOE}, 403, "kommunekode"),
            (ADMIN_147, {}, 403, "kommunekode"),  # national: not a municipal admin's
            (EDITOR_147, municipal, 403, "Authorization"),
            (PLANNER, municipal, 403, "Authorization"),
            (bearer(["national_admin"], level="low"), municipal, 403, "Authorization"),
            (bearer(["inspector"]), municipal, 403, "Authorization")):
        r = _post(c, body, headers)
        assert r.status_code == status, (headers, r.text)
        assert r.json()["errors"][0]["field"] == field
    assert c.post(RUNS, headers=JSON_CT, content="{}").status_code == 401


def test_bad_input_is_a_problem_naming_the_field(api):
    c, _ = api
    for body, field in (({"indstillinger": {"minutter": 0}}, "indstillinger.minutter"),
                        ({"indstillinger": {"tvaers_af_kommuner": True},
                          "kommunekode": FREDERIKSBERG}, "indstillinger.tvaers_af_kommuner"),
                        ({"scenarie": {"udelad": {"ukendt": [1]}}}, "scenarie.udelad.ukendt"),
                        ({"scenarie": "ingen-saadan"}, "scenarie"),
                        ({"kommunekode": 999}, "kommunekode"),
                        ({"kommunekode": "147"}, "kommunekode"),
                        ({"net_id": 424242}, "net_id"),
                        ({"sammenlign_med": 424242, "scenarie": "kun-egnede",
                          "kommunekode": FREDERIKSBERG}, "sammenlign_med"),
                        ({"hvad": 1}, "hvad"), ([1, 2], "body")):
        r = _post(c, body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["errors"][0]["field"] == field, (body, r.json())
    r = c.post(RUNS, headers={**NATIONAL, **JSON_CT}, content="{")
    assert r.status_code == 400
    r = c.post(RUNS, headers={**NATIONAL, "Content-Type": "text/plain"}, content="{}")
    assert r.status_code == 415
    for path, field in ((f"{RUNS}/x", "koersel_id"), (f"{RUNS}?kommunekode=12", "kommunekode"),
                        (f"{RUNS}/1/celler?efter=%27", "efter"),
                        ("/planlaegning/kort", "koersel")):
        r = c.get(path, headers=NATIONAL)
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == field, path


def test_nothing_is_public_and_municipalities_see_their_own(api, runs):
    c, _ = api
    base, _ = runs
    for path in (RUNS, f"{RUNS}/{base['id']}", f"{RUNS}/{base['id']}/celler",
                 f"{RUNS}/{base['id']}/objekter", f"/planlaegning/kort?koersel={base['id']}"):
        assert c.get(path).status_code == 401, path
        assert c.get(path, headers=bearer(["inspector"])).status_code == 403, path
    assert c.get(f"{RUNS}/{base['id']}", headers=EDITOR_101).status_code == 404
    assert base["id"] not in [r["id"] for r in c.get(RUNS, headers=EDITOR_101)
                              .json()["koersler"]]
    assert c.get(f"{RUNS}/{base['id']}", headers=EDITOR_147).status_code == 200


def test_planners_see_cells_of_the_whole_run_but_only_the_shelters_they_may_see(api, runs):
    c, url = api
    base, _ = runs
    path = f"{RUNS}/{base['id']}"
    all_objects = c.get(f"{path}/objekter", headers=NATIONAL).json()
    mine = c.get(f"{path}/objekter", headers=PLANNER).json()
    ids = [f["id"] for f in mine["features"]]
    hidden = query(url, f"SELECT count(*) FROM ly.plankoersel_objekt o JOIN {VIEW} t "
                        "USING (objekt_id) WHERE o.koersel_id = %s AND t.off_kode = 2",
                   [base["id"]])[0][0]
    assert hidden > 0 and len(ids) == all_objects["numberReturned"] - hidden
    offs = {r[0] for r in query(url, f"SELECT off_kode FROM {VIEW} WHERE objekt_id = "
                                     "ANY(%s::uuid[])", [ids])}
    assert offs <= {1, 3}
    # ...while the cells (aggregates, counting every shelter) are the same for both
    cells = [c.get(f"{path}/celler?limit=100000", headers=h).json() for h in (NATIONAL,
                                                                           PLANNER)]
    assert cells[0]["features"] == cells[1]["features"]
    assert sum(f["properties"]["daekket"] for f in cells[1]["features"]) == \
        base["totaler"]["daekket"]
    # the assignments of hidden shelters are hidden too
    with psycopg.connect(url) as conn:
        conn.execute("SET ROLE ly_user")
        conn.execute("SELECT set_config('ly.roller', 'planner', false)")
        seen = conn.execute("SELECT count(DISTINCT objekt_id) FROM ly.plankoersel_tildeling "
                            "WHERE koersel_id = %s", [base["id"]]).fetchone()[0]
    assert 0 < seen <= len(ids)


def test_cells_are_paged(api, runs):
    c, _ = api
    base, _ = runs
    first = c.get(f"{RUNS}/{base['id']}/celler?limit=100", headers=PLANNER).json()
    nxt = next(link["href"] for link in first["links"] if link["rel"] == "next")
    second = c.get(nxt.replace("http://testserver", ""), headers=PLANNER).json()
    a = [f["id"] for f in first["features"]]
    b = [f["id"] for f in second["features"]]
    assert len(a) == 100 and b and max(a) < min(b)


def test_the_municipal_report_shows_the_runs_coverage(api, runs):
    c, url = api
    base, scen = runs
    report = c.get(f"/rapporter/kommune/{FREDERIKSBERG}?f=json", headers=NATIONAL).json()
    plan = report["planlaegning"]
    daekket, indbyggere, within = (int(v) for v in query(
        url, "SELECT sum(daekket), sum(indbyggere), sum(inden_for_raekkevidde) "
             "FROM ly.plankoersel_celle WHERE koersel_id = %s", [base["id"]])[0])
    assert plan["koersel_id"] == base["id"]
    assert (plan["daekket"], plan["indbyggere"], plan["inden_for_raekkevidde"]) == (
        daekket, indbyggere, within)
    assert plan["underskud"] == indbyggere - daekket and plan["syntetisk"] is True
    assert plan["scenarie"]["koersel_id"] == scen["id"]
    assert plan["scenarie"]["forskel"] == scen["totaler"]["daekket"] - daekket
    worst = plan["stoerste_underskud"]
    assert worst == sorted(worst, key=lambda a: -a["ikke_daekket"])
    page = c.get(f"/rapporter/kommune/{FREDERIKSBERG}", headers=NATIONAL).text
    assert 'id="planlaegning"' in page and "Syntetisk befolkning" in page
    assert f'data-figure="daekket"><th scope="row">Dækket (tildelt en plads)</th>' \
           f'<td class="num">{daekket:,}'.replace(",", ".") in page
    pdf = c.get(f"/rapporter/kommune/{FREDERIKSBERG}?f=pdf", headers=NATIONAL)
    from io import BytesIO

    from pypdf import PdfReader

    text = "".join(p.extract_text() for p in PdfReader(BytesIO(pdf.content)).pages)
    assert "Planlagt dækning" in text and f"{daekket:,}".replace(",", ".") in text
    # a municipality without a run says so
    other = c.get("/rapporter/kommune/101?f=json", headers=NATIONAL).json()
    assert other["planlaegning"] is None


@requires_chromium
def test_the_planners_map_in_chromium(api, runs, output_dir):
    pytest.importorskip("playwright.sync_api")
    _, url = api
    base, _ = runs
    with LiveServer(url) as server, launched() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.add_init_script("""document.addEventListener('securitypolicyviolation',
            (e) => console.error('CSP-VIOLATION ' + e.violatedDirective));""")
        context.route(lambda u: not u.startswith(server.url), lambda route: route.abort())
        context.add_cookies([{"name": "ly_token", "url": server.url,
                              "value": token(["planner"], subject="planlaegger")}])
        page = context.new_page()
        problems = []
        page.on("console", lambda m: problems.append(m.text) if "CSP" in m.text
                or m.type == "error" and "net::ERR_FAILED" not in m.text else None)
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        response = page.goto(f"{server.url}/planlaegning/kort?koersel={base['id']}")
        assert response.status == 200
        page.wait_for_function("() => document.querySelectorAll("
                               "'.leaflet-overlay-pane canvas').length > 0")
        page.wait_for_timeout(500)
        panel = page.inner_text(".ly-map-panel")
        assert "Ikke dækkede indbyggere pr. celle" in panel
        assert "Dækkede indbyggere pr. celle" in panel and "belægning" in panel.lower()
        assert "syntetisk" in panel.lower()
        layers = page.inner_text(".leaflet-control-layers")
        assert "Ikke dækkede indbyggere pr. celle" in layers
        assert page.locator(".ly-legend-panel").count() == 3
        target = output_dir / "planlaegning-kort-147.png"
        page.screenshot(path=str(target))
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert not [p for p in problems if "CSP" in p or "Error" in p], problems
        context.close()
