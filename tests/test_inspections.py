"""Inspections: versioned templates, idempotent uploads, validation against the template,
photos, approval with findings and the shelter's new version, deficiencies, GeoFA 6122."""

from __future__ import annotations

import hashlib
import io
import json
import uuid

import psycopg
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from datamodel import checklist
from datamodel.store import TemplateChanged, sync_checklists
from service.app import create_app
from tests.conftest import ITEMS, bearer, make_settings, query, snapshot

KBH = 101
INSPECTOR = "inspektoer-1"


def _cvr(url, kommune=KBH):
    return query(url, "SELECT cvr_kode FROM ly.kommune WHERE kommunekode = %s", [kommune])[0][0]


def complete_answers(**over) -> dict:
    """A complete, unremarkable betondækningsgrav inspection."""
    svar = {"beskyt_rum_nr": "BDG-17", "matrikelejer": "Københavns Kommune",
            "udfoert_af": "Inge Inspektør", "udfoert_dato": "2026-02-20", "dokumentation": True,
            "inspektioner": False, "bbr": False, "lokaliseret": True, "adgang_kode": 1,
            "antal_pladser": 50, "antal_opholdsrum": 1, "betondaeksel_kode": 1,
            "beskyt_rum_anvendelse_kode": 1}
    svar.update(over)
    return svar


def room(**over) -> dict:
    base = {"konstruktion_intakt_kode": 1, "konstruktion_blotlagt_armering_kode": 2,
            "konstruktion_revner_gulv_kode": 2, "indtraengende_fugt_vand_kode": 2,
            "vand_daekker_gulv_kode": 2, "ventilation_haanddreven_kode": 1}
    base.update(over)
    return base


@pytest.fixture
def setup(db_url):
    """A betondækningsgrav in København assigned to an inspector; clients for the roles."""
    (shelter,) = query(db_url, "SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE "
                               "beskyt_rum_kode = 3 AND beliggenhedskommune = %s AND cvr_kode = %s"
                               " ORDER BY objekt_id LIMIT 1", [KBH, _cvr(db_url)])[0]
    query(db_url, "INSERT INTO ly.tildeling (objekt_id, subjekt, cvr_kode, tildelt_af) VALUES "
                  "(%s, %s, %s, 'setup')", [shelter, INSPECTOR, _cvr(db_url)])
    with TestClient(create_app(make_settings(db_url))) as c:
        yield {
            "c": c, "url": db_url, "shelter": str(shelter),
            "inspector": bearer(["inspector"], subject=INSPECTOR),
            "admin": bearer(["municipal_admin"], subject="kbh-admin", cvr=_cvr(db_url),
                            kommuner=[KBH]),
        }


def put(s, eid, body, who="inspector"):
    return s["c"].put(f"/eftersyn/{eid}", content=json.dumps(body),
                      headers={"Content-Type": "application/json", **s[who]})


def upload_body(s, svar, rum=(), status="indsendt"):
    return {"objekt_id": s["shelter"], "tjekliste_kode": "bdg-6122", "tjekliste_version": 1,
            "status": status, "svar": svar, "rum": list(rum),
            "position": {"type": "Point", "coordinates": [12.57, 55.68]},
            "position_tid": "2026-02-20T10:15:00+01:00"}


def png(size=(40, 30), colour=(200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


# --- templates ---

def test_the_6122_template_is_geofas_field_list():
    t = checklist.latest("bdg-6122")
    fields, table = checklist.geofa_6122()
    room_fields = {n[3:] for n in fields if n.startswith("_1_") and n.endswith("_kode")}
    assert {i.id for i in t.room_items} == room_fields
    assert {i.id for i in t.items} <= set(fields)
    assert {i.id for i in t.items if i.required} == table["not_null"] - {
        "versions_id", "beskyt_rum_type_kode", "geometri"}
    adgang = t.by_id["adgang_kode"]
    assert adgang.codes == ((1, "Ja"), (2, "Nej"), (3, "Ved ikke"))
    assert adgang.question == "Er der adgang til beskyttelsesrummet?"
    assert (t.by_id["antal_pladser"].minimum, t.by_id["antal_pladser"].maximum) == (0, 5000)
    assert t.rooms_max == 4


def test_templates_are_served_and_a_changed_version_is_refused(setup):
    c = setup["c"]
    listed = c.get("/tjeklister").json()["tjeklister"]
    assert {(t["kode"], t["version"]) for t in listed} == {("bdg-6122", 1), ("generel", 1)}
    doc = c.get("/tjeklister/generel/1").json()
    kinds = {p["id"]: p for s in doc["sektioner"] for p in s["punkter"]}
    assert kinds["B1"]["type"] == "grad" and kinds["B1"]["kritisk"] is True
    assert c.get("/tjeklister/generel/7").status_code == 404
    query(setup["url"], "UPDATE ly.tjekliste SET indhold_hash = repeat('0', 64) "
                        "WHERE kode = 'generel'")
    with psycopg.connect(setup["url"]) as conn, pytest.raises(TemplateChanged):
        sync_checklists(conn)


# --- uploads ---

def test_an_upload_is_applied_once_and_a_submitted_one_is_frozen(setup):
    eid = str(uuid.uuid4())
    draft = upload_body(setup, {"beskyt_rum_nr": "BDG-17"}, status="kladde")
    r = put(setup, eid, draft)
    assert r.status_code == 201, r.text
    assert "udfoert_af" in r.json()["mangler_svar"]
    assert put(setup, eid, draft).status_code == 200
    body = upload_body(setup, complete_answers(), [room()])
    r = put(setup, eid, body)
    assert r.status_code == 200 and r.json()["status"] == "indsendt"
    assert r.json()["mangler_svar"] == []
    for _ in range(3):  # a flaky network resends the same upload
        assert put(setup, eid, body).status_code == 200
    assert query(setup["url"], "SELECT count(*), max(version) FROM ly.eftersyn") == [(1, 2)]
    changed = upload_body(setup, complete_answers(antal_pladser=60), [room()])
    r = put(setup, eid, changed)
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("svar,rum,field", [
    ({"antal_pladser": "mange"}, [], "svar.antal_pladser"),
    ({"antal_pladser": 6000}, [], "svar.antal_pladser"),
    ({"adgang_kode": 4}, [], "svar.adgang_kode"),
    ({"dokumentation": "ja"}, [], "svar.dokumentation"),
    ({"udfoert_dato": "20.02.2026"}, [], "svar.udfoert_dato"),
    ({"matrikelejer": "x" * 101}, [], "svar.matrikelejer"),
    ({"farve": "rød"}, [], "svar.farve"),
    ({}, [{"konstruktion_intakt_kode": 7}], "rum[1].konstruktion_intakt_kode"),
    ({}, [{}] * 5, "rum"),
    ({"udfoert_af": None}, [], "svar.udfoert_af"),
    ({"lokaliseret": False, "adgang_kode": 2}, [], "svar.lokaliseret_aarsag"),
], ids=["wrong-type", "out-of-range", "unknown-code", "not-boolean", "bad-date", "too-long",
        "unknown-item", "room-unknown-code", "too-many-rooms", "missing-required",
        "conditionally-required"])
def test_invalid_answers_are_refused_naming_the_item_and_nothing_is_stored(setup, svar, rum,
                                                                         field):
    answers = complete_answers(**svar)
    answers = {k: v for k, v in answers.items() if v is not None}
    before = query(setup["url"], "SELECT count(*) FROM ly.eftersyn")
    r = put(setup, uuid.uuid4(), upload_body(setup, answers, rum))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in r.json()["errors"]]
    assert query(setup["url"], "SELECT count(*) FROM ly.eftersyn") == before


def test_inspections_are_for_assigned_shelters_and_signed_in_writers(setup, db_url):
    other = str(query(db_url, "SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE off_kode = 3 "
                              "AND beskyt_rum_kode = 3 AND objekt_id <> %s LIMIT 1",
                      [setup["shelter"]])[0][0])
    body = {**upload_body(setup, complete_answers(), [room()]), "objekt_id": other}
    assert put(setup, uuid.uuid4(), body).status_code == 404  # not assigned: unseen
    c = setup["c"]
    body = json.dumps(upload_body(setup, complete_answers()))
    assert c.put(f"/eftersyn/{uuid.uuid4()}", content=body,
                 headers={"Content-Type": "application/json"}).status_code == 401
    reader = bearer(["national_reader"], subject="sams")
    assert c.put(f"/eftersyn/{uuid.uuid4()}", content=body, headers={
        "Content-Type": "application/json", **reader}).status_code == 403
    assert query(db_url, "SELECT count(*) FROM ly.eftersyn") == [(0,)]


# --- photos ---

def test_photos_are_checked_stored_once_with_a_thumbnail(setup):
    eid = str(uuid.uuid4())
    assert put(setup, eid, upload_body(setup, complete_answers(), [room()],
                                       status="kladde")).status_code == 201
    c, h = setup["c"], setup["inspector"]
    data = png((800, 600))
    fid = str(uuid.uuid4())
    url = f"/eftersyn/{eid}/fotos/{fid}"
    r = c.put(url, params={"punkt": "konstruktion_intakt_kode", "rum": 1}, content=data,
              headers={"Content-Type": "image/png", **h})
    assert r.status_code == 201, r.text
    assert c.put(url, params={"punkt": "konstruktion_intakt_kode", "rum": 1}, content=data,
                 headers={"Content-Type": "image/png", **h}).status_code == 200
    (count, sha, w, thumb) = query(setup["url"], "SELECT count(*), min(sha256), min(bredde), "
                                                 "min(length(miniature)) FROM ly.eftersyn_foto")[0]
    assert (count, sha, w) == (1, hashlib.sha256(data).hexdigest(), 800) and thumb > 0
    with Image.open(io.BytesIO(c.get(url, params={"miniature": True}, headers=h).content)) as t:
        assert max(t.size) == 320
    assert c.get(url, headers=h).content == data
    bad = [(png(), "image/gif", 415), (b"not an image", "image/jpeg", 415),
           (png(), "image/jpeg", 415), (b"", "image/png", 422)]
    for content, ctype, status in bad:
        r = c.put(f"/eftersyn/{eid}/fotos/{uuid.uuid4()}", content=content,
                  headers={"Content-Type": ctype, **h})
        assert r.status_code == status, (ctype, r.text)
    r = c.put(f"/eftersyn/{eid}/fotos/{uuid.uuid4()}", params={"punkt": "farve"}, content=data,
              headers={"Content-Type": "image/png", **h})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "punkt"
    r = c.put(f"/eftersyn/{uuid.uuid4()}/fotos/{uuid.uuid4()}", content=data,
              headers={"Content-Type": "image/png", **h})
    assert r.status_code == 404
    assert query(setup["url"], "SELECT count(*) FROM ly.eftersyn_foto") == [(1,)]


# --- outcome ---

@pytest.mark.parametrize("svar,rooms,klass", [
    ({}, [room()], checklist.EGNET),
    ({}, [room(konstruktion_revner_gulv_kode=1)], checklist.EGNET),
    ({}, [room(), room(konstruktion_blotlagt_armering_kode=1)], checklist.EGNET_EFTER_UDBEDRING),
    ({}, [room(konstruktion_intakt_kode=2)], checklist.UEGNET),
    ({"beskyt_rum_anvendelse_kode": 4}, [room()], checklist.UEGNET),
    ({"betondaeksel_kode": 2}, [room()], checklist.EGNET),
    ({"adgang_kode": 2}, [], checklist.IKKE_VURDERET),
    ({"lokaliseret": False, "lokaliseret_aarsag": "Er nedlagt"}, [], checklist.IKKE_VURDERET),
])
def test_classification_rules(svar, rooms, klass):
    t = checklist.latest("bdg-6122")
    answers, rum = checklist.validate_answers(t, complete_answers(**svar), rooms, submit=True)
    result = checklist.assess(t, answers, rum)
    assert result.egnethed_kode == klass
    if svar.get("betondaeksel_kode") == 2:
        assert [(f.item, f.grade) for f in result.findings] == [("betondaeksel_kode", "S")]


def test_general_checklist_grades_and_critical_items():
    t = checklist.latest("generel")
    base = {"A1": 1, "A2": 1, "B1": "0", "B2": "0", "B3": "0", "C1": "0", "C3": "0", "D1": "0",
            "D3": "0", "E1": "0", "G2": 40}
    cases = [({}, checklist.EGNET), ({"D2": "3"}, checklist.EGNET_EFTER_UDBEDRING),
             ({"B2": "2"}, checklist.EGNET_EFTER_UDBEDRING), ({"E1": "3"}, checklist.UEGNET),
             ({"A2": 2}, checklist.IKKE_VURDERET)]
    for over, klass in cases:
        answers, _ = checklist.validate_answers(t, {**base, **over}, [], submit=True)
        assert checklist.assess(t, answers, []).egnethed_kode == klass, over
    with pytest.raises(checklist.Invalid) as exc:
        checklist.validate_answers(t, {**base, "B1": "4"}, [], submit=True)
    assert exc.value.problems[0].field == "svar.B1"


def test_approval_versions_the_shelter_with_the_inspection_as_reason(setup):
    c, url, shelter = setup["c"], setup["url"], setup["shelter"]
    before = c.get(f"{ITEMS}/{shelter}", headers=setup["admin"]).json()["properties"]
    eid = str(uuid.uuid4())
    rooms = [room(), room(konstruktion_blotlagt_armering_kode=1)]
    assert put(setup, eid, upload_body(setup, complete_answers(antal_pladser=48),
                                       rooms)).status_code == 201
    assert c.post(f"/eftersyn/{eid}/godkend", headers=setup["inspector"]).status_code == 403
    r = c.post(f"/eftersyn/{eid}/godkend", headers=setup["admin"])
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["egnethed_kode"] == 2 and result["pladser"] == 48
    assert [(m["punkt"], m["rum"], m["grad"]) for m in result["mangler"]] == [
        ("konstruktion_blotlagt_armering_kode", 2, "2")]
    now = c.get(f"{ITEMS}/{shelter}", headers=setup["admin"]).json()["properties"]
    assert (now["egnethed_kode"], now["pladser_verificeret"], now["pladser_kilde_kode"]) == (
        2, 48, 3)
    assert now["seneste_eftersyn_dato"] == "2026-02-20"
    assert now["naeste_eftersyn_dato"] == "2031-02-20"
    assert now["seneste_eftersyn_id"] == eid and eid in now["aendringsaarsag"]
    assert now["versions_id"] == result["beskyttelsesrum_versions_id"]
    history = c.get(f"{ITEMS}/{shelter}/history", headers=setup["admin"]).json()["features"]
    assert [v["properties"]["egnethed_kode"] for v in history[-2:]] == [
        before["egnethed_kode"], 2]
    assert history[-1]["properties"]["aendringsaarsag"].startswith(f"Eftersyn {eid}")
    deficiency = query(url, "SELECT grad, ansvarlig, frist - current_date, status FROM ly.mangel")
    assert deficiency == [("2", "kommune", 180, "aaben")]
    # approved: frozen for everyone, through the API and in the database
    again = upload_body(setup, complete_answers(antal_pladser=10), rooms)
    assert put(setup, eid, again).status_code == 409
    assert put(setup, eid, again, who="admin").status_code == 409
    assert c.post(f"/eftersyn/{eid}/godkend", headers=setup["admin"]).status_code == 409
    with pytest.raises(psycopg.Error, match="godkendt eftersyn"):
        query(url, "UPDATE ly.eftersyn SET svar = '{}' WHERE id = %s", [eid])


def test_rejection_lets_the_inspector_correct_and_resubmit(setup):
    c = setup["c"]
    eid = str(uuid.uuid4())
    assert put(setup, eid, upload_body(setup, complete_answers(), [room()])).status_code == 201
    r = c.post(f"/eftersyn/{eid}/afvis", content=json.dumps({"begrundelse": ""}),
               headers={"Content-Type": "application/json", **setup["admin"]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "begrundelse"
    r = c.post(f"/eftersyn/{eid}/afvis", content=json.dumps({"begrundelse": "Mangler foto"}),
               headers={"Content-Type": "application/json", **setup["admin"]})
    assert r.status_code == 200
    fixed = upload_body(setup, complete_answers(note="Foto vedlagt"), [room()])
    r = put(setup, eid, fixed)
    assert r.status_code == 200 and r.json()["status"] == "indsendt"


def test_deficiencies_move_through_their_states(setup):
    c = setup["c"]
    eid = str(uuid.uuid4())
    put(setup, eid, upload_body(setup, complete_answers(betondaeksel_kode=2), [room()]))
    c.post(f"/eftersyn/{eid}/godkend", headers=setup["admin"])
    (mangel,) = c.get("/mangler", headers=setup["admin"]).json()["mangler"]
    assert (mangel["grad"], mangel["status"]) == ("S", "aaben")
    path = f"/mangler/{mangel['id']}"
    editor = bearer(["municipal_editor"], cvr=_cvr(setup["url"]), kommuner=[KBH])
    js = {"Content-Type": "application/json"}

    def move(status, who):
        return c.patch(path, content=json.dumps({"status": status}), headers={**js, **who})

    assert move("verificeret", setup["admin"]).status_code == 409
    assert move("udbedret", editor).status_code == 200
    assert move("verificeret", editor).status_code == 403
    assert move("verificeret", setup["admin"]).status_code == 200
    assert move("aaben", setup["admin"]).status_code == 409
    assert move("lukket", setup["admin"]).status_code == 422
    assert c.get("/mangler", headers=setup["inspector"]).json()["mangler"] == []


# --- GeoFA 6122 ---

def test_the_6122_export_validates_and_imports_back_to_the_same_answers(setup):
    c = setup["c"]
    eid = str(uuid.uuid4())
    answers = complete_answers(taarn_kode=2, trapper_antal=2, note="Tæt på legepladsen")
    rooms = [room(), room(vand_daekker_gulv_kode=1), room(skadedyr_spor_kode=3)]
    put(setup, eid, upload_body(setup, answers, rooms))
    assert c.get(f"/eftersyn/{eid}/6122", headers=setup["admin"]).status_code == 409
    c.post(f"/eftersyn/{eid}/godkend", headers=setup["admin"])
    r = c.get(f"/eftersyn/{eid}/6122", headers=setup["admin"])
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    feature = r.json()
    fields, _ = checklist.geofa_6122()
    assert set(feature["properties"]) == set(fields) - {"geometri"}
    assert checklist.validate_6122(feature) == []
    props = feature["properties"]
    assert props["_2_vand_daekker_gulv_kode"] == 1 and props["_2_vand_daekker_gulv"] == "Ja"
    assert props["_3_skadedyr_spor"] == "Ved ikke" and props["_4_konstruktion_intakt_kode"] is None
    assert props["noegle"] == setup["shelter"] and props["antal_pladser"] == 50
    assert feature["geometry"]["type"] == "MultiPoint"
    # importing it back (as a new inspection) gives the same answers
    feature["properties"]["objekt_id"] = str(uuid.uuid4())
    r = c.post("/eftersyn/6122", content=json.dumps({"type": "FeatureCollection",
                                                     "features": [feature]}),
               headers={"Content-Type": "application/geo+json", **setup["admin"]})
    assert r.status_code == 201, r.text
    new_id = r.json()["eftersyn"][0]["id"]
    svar, rum = query(setup["url"], "SELECT svar, rum FROM ly.eftersyn WHERE id = %s",
                      [new_id])[0]
    assert svar == answers and rum == rooms
    # a broken feature is refused naming the field, and nothing is stored
    feature["properties"]["objekt_id"] = str(uuid.uuid4())
    feature["properties"]["adgang_kode"] = 9
    del feature["properties"]["matrikelejer"]
    before = snapshot(setup["url"])
    r = c.post("/eftersyn/6122", content=json.dumps(feature),
               headers={"Content-Type": "application/geo+json", **setup["admin"]})
    assert r.status_code == 422
    fields_named = {e["field"] for e in r.json()["errors"]}
    assert {"features[0].properties.adgang_kode",
            "features[0].properties.matrikelejer"} <= fields_named
    assert snapshot(setup["url"]) == before
