"""Inspection uploads under concurrency and row-level security: one of many competing
submissions wins and every other one is told it lost (409/412); identical replays of a new
inspection or photo all succeed with one stored row; a write that row-level security would
turn into a no-op answers 403 or 404, never 200. Concurrent requests go to a real server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.conftest import LiveServer, bearer, make_settings, query
from tests.test_inspections import _cvr, complete_answers, png, room, upload_body

KBH, AAR = 101, 751
INSPECTOR = "inspektoer-1"
N = 20
JSON = {"Content-Type": "application/json"}
DB_TEXT = ("duplicate key", "eftersyn_pkey", "eftersyn_foto_pkey", "violates", "row-level")



@pytest.fixture
def s(db_url):
    """A betondækningsgrav in København assigned to an inspector, and the actors' headers."""
    (shelter,) = query(db_url, "SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE "
                               "beskyt_rum_kode = 3 AND beliggenhedskommune = %s AND cvr_kode = %s"
                               " ORDER BY objekt_id LIMIT 1", [KBH, _cvr(db_url)])[0]
    for subject in (INSPECTOR, "inspektoer-2"):
        query(db_url, "INSERT INTO ly.tildeling (objekt_id, subjekt, cvr_kode, tildelt_af) "
                      "VALUES (%s, %s, %s, 'setup')", [shelter, subject, _cvr(db_url)])
    return {
        "url": db_url, "shelter": str(shelter),
        "inspector": bearer(["inspector"], subject=INSPECTOR),
        "inspector2": bearer(["inspector"], subject="inspektoer-2"),
        "admin": bearer(["municipal_admin"], subject="kbh-admin", cvr=_cvr(db_url),
                        kommuner=[KBH]),
        "editor": bearer(["municipal_editor"], subject="kbh-redaktoer", cvr=_cvr(db_url),
                         kommuner=[KBH]),
        "aar_editor": bearer(["municipal_editor"], subject="aar-redaktoer",
                             cvr=_cvr(db_url, AAR), kommuner=[AAR]),
    }


def _at_once(base: str, requests: list[tuple[str, str, dict, bytes]]) -> list[httpx.Response]:
    """Send the requests concurrently, each on its own connection, released together."""
    async def main():
        start = asyncio.Event()
        async with httpx.AsyncClient(base_url=base, timeout=60,
                                     limits=httpx.Limits(max_connections=len(requests))) as h:
            async def one(method, path, headers, content):
                await start.wait()
                return await h.request(method, path, headers=headers, content=content)
            tasks = [asyncio.create_task(one(*r)) for r in requests]
            await asyncio.sleep(0.05)  # let every task reach the start line
            start.set()
            return await asyncio.gather(*tasks)
    return asyncio.run(main())


def _problem(r: httpx.Response) -> dict:
    assert r.headers["content-type"] == "application/problem+json", r.text
    body = r.json()
    assert not any(t in r.text for t in DB_TEXT), r.text
    return body


def _stored(url, eid):
    return query(url, "SELECT svar, rum, status, version FROM ly.eftersyn WHERE id = %s", [eid])


# --- one of many competing submissions wins ---

def _submit_at_once(s, base: str, conditional: bool) -> None:
    """A draft, then N concurrent submissions of it with different answers."""
    eid = str(uuid.uuid4())
    with httpx.Client(base_url=base) as h:
        r = h.put(f"/eftersyn/{eid}", headers={**JSON, **s["inspector"]},
                  content=json.dumps(upload_body(s, {"beskyt_rum_nr": "BDG-17"},
                                                 status="kladde")))
        assert r.status_code == 201, r.text
        etag = r.headers["ETag"]
    bodies = [upload_body(s, complete_answers(antal_pladser=10 + i), [room()]) for i in range(N)]
    headers = {**JSON, **s["inspector"], **({"If-Match": etag} if conditional else {})}
    answers = _at_once(base, [("PUT", f"/eftersyn/{eid}", headers, json.dumps(b).encode())
                              for b in bodies])
    won = [i for i, r in enumerate(answers) if r.status_code == 200]
    assert len(won) == 1, [(r.status_code, r.text[:200]) for r in answers]
    winner = answers[won[0]]
    assert winner.json()["svar"] == bodies[won[0]]["svar"]  # a 200 is what was sent
    lost = [r for i, r in enumerate(answers) if i != won[0]]
    assert {r.status_code for r in lost} <= {409, 412}, [(r.status_code, r.text) for r in lost]
    for r in lost:
        problem = _problem(r)
        assert r.headers["ETag"] == winner.headers["ETag"]  # what it lost to
        assert problem["errors"][0]["field"] in ("status", "If-Match"), problem
    svar, rum, status, version = _stored(s["url"], eid)[0]
    assert (svar, rum, status) == (bodies[won[0]]["svar"], bodies[won[0]]["rum"], "indsendt")
    assert winner.headers["ETag"] == f'"{version}"' == '"2"'


def test_of_twenty_concurrent_submissions_exactly_one_wins(s):
    with LiveServer(s["url"]) as server:
        _submit_at_once(s, server.url, conditional=False)
        _submit_at_once(s, server.url, conditional=True)  # each with If-Match: "1"


def test_if_match_makes_an_upload_conditional_on_the_version(s, db_url):
    eid = str(uuid.uuid4())
    draft = json.dumps(upload_body(s, {"beskyt_rum_nr": "BDG-17"}, status="kladde"))
    changed = json.dumps(upload_body(s, {"beskyt_rum_nr": "BDG-18"}, status="kladde"))
    with TestClient(create_app(make_settings(db_url)), headers=s["inspector"]) as c:
        def put(body, if_match=None):
            extra = {} if if_match is None else {"If-Match": if_match}
            return c.put(f"/eftersyn/{eid}", content=body, headers={**JSON, **extra})

        r = put(draft, '"1"')  # nothing to match yet
        assert r.status_code == 412 and _problem(r)["errors"][0]["field"] == "If-Match"
        assert _stored(db_url, eid) == []
        assert put(draft).headers["ETag"] == '"1"'
        for bad in ("", " , ", "1", '"1', "'1'", '"1" "2"'):
            r = put(changed, bad)
            assert r.status_code == 400, (bad, r.text)
            assert _problem(r)["errors"][0]["field"] == "If-Match"
        for stale in ('"7"', 'W/"1"', '"eins"'):
            r = put(changed, stale)
            assert r.status_code == 412 and r.headers["ETag"] == '"1"', r.text
            assert _problem(r)["errors"][0]["field"] == "If-Match"
        assert _stored(db_url, eid)[0][0] == {"beskyt_rum_nr": "BDG-17"}
        r = put(changed, '"0", "1"')
        assert r.status_code == 200 and r.headers["ETag"] == '"2"', r.text
        assert put(changed, '"1"').status_code == 200  # a replay of what was applied
        r = put(draft, '"1"')
        assert r.status_code == 412 and r.headers["ETag"] == '"2"'
        assert put(draft, "*").headers["ETag"] == '"3"'
        assert c.get(f"/eftersyn/{eid}").headers["ETag"] == '"3"'
    assert _stored(db_url, eid)[0][0] == {"beskyt_rum_nr": "BDG-17"}


# --- identical replays of something new all succeed, stored once ---

def test_twenty_identical_concurrent_uploads_of_an_inspection_or_photo_store_one(s):
    eid, fid = str(uuid.uuid4()), str(uuid.uuid4())
    body = json.dumps(upload_body(s, complete_answers(), [room()], status="kladde")).encode()
    data = png((800, 600))
    photo = f"/eftersyn/{eid}/fotos/{fid}?punkt=konstruktion_intakt_kode&rum=1"
    with LiveServer(s["url"]) as server:
        inspections = _at_once(server.url, [("PUT", f"/eftersyn/{eid}",
                                             {**JSON, **s["inspector"]}, body)] * N)
        photos = _at_once(server.url, [("PUT", photo, {"Content-Type": "image/png",
                                                       **s["inspector"]}, data)] * N)
        with httpx.Client(base_url=server.url) as h:
            other = h.put(photo, headers={"Content-Type": "image/png", **s["inspector"]},
                          content=png((800, 600), (0, 0, 255)))
    for answers in (inspections, photos):
        assert sorted(r.status_code for r in answers) == [200] * (N - 1) + [201], [
            (r.status_code, r.text[:200]) for r in answers]
        assert len({r.content for r in answers}) == 1
    assert len({r.headers["ETag"] for r in inspections}) == 1
    assert query(s["url"], "SELECT count(*), max(version) FROM ly.eftersyn") == [(1, 1)]
    assert photos[0].json() == {"id": fid, "sha256": hashlib.sha256(data).hexdigest(),
                                "bredde": 800, "hoejde": 600}
    assert other.status_code == 409 and _problem(other)["errors"][0]["field"] == "foto_id"
    assert query(s["url"], "SELECT count(*), min(sha256) FROM ly.eftersyn_foto") == [
        (1, hashlib.sha256(data).hexdigest())]


# --- what row-level security refuses is refused out loud ---

def test_writes_refused_by_row_level_security_never_answer_200(s, db_url):
    eid = str(uuid.uuid4())
    draft = upload_body(s, {"beskyt_rum_nr": "BDG-17"}, status="kladde")
    changed = json.dumps(upload_body(s, complete_answers(), [room()], status="kladde"))
    with TestClient(create_app(make_settings(db_url))) as c:
        def put(who, body=changed, path=f"/eftersyn/{eid}"):
            return c.put(path, content=body, headers={**JSON, **s[who]})

        assert put("inspector", json.dumps(draft)).status_code == 201
        before = _stored(db_url, eid)
        r = put("editor")  # sees the inspector's draft, may not change it
        assert r.status_code == 403 and _problem(r)["status"] == 403, r.text
        # another municipality's editor sees the (off_kode 3) shelter but not the draft, and
        # may not record inspections of it: told so, alike for this id and an unused one
        for path in (f"/eftersyn/{eid}", f"/eftersyn/{uuid.uuid4()}"):
            r = put("aar_editor", path=path)
            assert r.status_code == 403, r.text
            assert _problem(r)["errors"][0]["field"] == "objekt_id"
        r = put("inspector2")  # another inspector of the same shelter: not theirs to see
        assert r.status_code in (404, 409), r.text
        _problem(r)
        assert _stored(db_url, eid) == before
        assert put("admin").status_code == 200  # municipal administrators may correct it
        # an inspection of a visible shelter outside the editor's municipality (off_kode 3)
        (elsewhere,) = query(db_url, "SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE "
                                     "off_kode = 3 AND beskyt_rum_kode = 3 AND "
                                     "beliggenhedskommune = %s LIMIT 1", [AAR])[0]
        foreign = json.dumps({**draft, "objekt_id": str(elsewhere)})
        r = put("editor", foreign, f"/eftersyn/{uuid.uuid4()}")
        assert r.status_code == 403 and _problem(r)["errors"][0]["field"] == "objekt_id", r.text
        assert query(db_url, "SELECT count(*) FROM ly.eftersyn") == [(1,)]
        # an inter-municipal authority's administrator edits København's shelters, and so
        # assigns them (ly.tildeling's policy, revision 0012), under the shelter's own CVR
        joint = bearer(["municipal_admin"], subject="beredskab-admin", cvr=_cvr(db_url, AAR),
                       kommuner=[KBH, AAR])
        r = c.post("/tildelinger", content=json.dumps({"objekt_id": s["shelter"],
                                                       "subjekt": "inspektoer-3"}),
                   headers={**JSON, **joint})
        assert r.status_code == 201, r.text
        assert query(db_url, "SELECT cvr_kode FROM ly.tildeling WHERE subjekt = 'inspektoer-3'"
                     ) == [(_cvr(db_url),)]
        # ... and sees the assignment it made (ly.tildeling's read policy, revision 0012)
        listed = c.get("/tildelinger", headers=joint).json()
        assert any(t["subjekt"] == "inspektoer-3" for t in listed["tildelinger"]), listed


def test_a_6122_import_refuses_what_it_cannot_store(s, db_url):
    eid = str(uuid.uuid4())
    answers, rooms = complete_answers(), [room()]
    with TestClient(create_app(make_settings(db_url))) as c:
        c.put(f"/eftersyn/{eid}", content=json.dumps(upload_body(s, answers, rooms)),
              headers={**JSON, **s["inspector"]})
        assert c.post(f"/eftersyn/{eid}/godkend", headers=s["admin"]).status_code == 200
        feature = c.get(f"/eftersyn/{eid}/6122", headers=s["admin"]).json()

        def imp(feature, who="admin"):
            return c.post("/eftersyn/6122", content=json.dumps(feature),
                          headers={"Content-Type": "application/geo+json", **s[who]})

        new = str(uuid.uuid4())
        feature["properties"]["objekt_id"] = new
        first = imp(feature)
        assert first.status_code == 201 and first.json()["eftersyn"][0]["oprettet"] is True
        again = imp(feature)  # the same import again: applied once
        assert again.status_code == 201 and again.json()["eftersyn"][0]["oprettet"] is False
        feature["properties"]["antal_pladser"] = 7  # other content under the same id
        r = imp(feature)
        assert r.status_code == 409, r.text
        assert _problem(r)["errors"][0]["field"] == "features[0].properties.objekt_id"
        # an editor may not record inspections of another municipality's (visible) shelter
        (elsewhere,) = query(db_url, "SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE "
                                     "off_kode = 3 AND beskyt_rum_kode = 3 AND "
                                     "beliggenhedskommune = %s LIMIT 1", [AAR])[0]
        feature["properties"].update(objekt_id=str(uuid.uuid4()), noegle=str(elsewhere),
                                     antal_pladser=50)
        r = imp(feature, "editor")
        assert r.status_code == 403, r.text
        assert _problem(r)["errors"][0]["field"] == "features[0].properties.noegle"
    assert query(db_url, "SELECT count(*) FROM ly.eftersyn") == [(2,)]
    assert query(db_url, "SELECT antal FROM (SELECT svar->>'antal_pladser' AS antal "
                         "FROM ly.eftersyn WHERE id = %s) t", [new]) == [("50",)]


def test_approval_rejection_and_reporting_refuse_what_they_cannot_change(s, db_url):
    eid = str(uuid.uuid4())
    aar_admin = bearer(["municipal_admin"], subject="aar-admin", cvr=_cvr(db_url, AAR),
                       kommuner=[AAR])
    reason = json.dumps({"begrundelse": "Mangler foto"})
    with TestClient(create_app(make_settings(db_url))) as c:
        c.put(f"/eftersyn/{eid}", content=json.dumps(upload_body(
            s, complete_answers(betondaeksel_kode=2), [room()])),
            headers={**JSON, **s["inspector"]})
        for path, body in ((f"/eftersyn/{eid}/godkend", None), (f"/eftersyn/{eid}/afvis", reason),
                           (f"/eftersyn/{eid}/indberet", None)):
            r = c.post(path, content=body, headers={**JSON, **aar_admin})
            assert r.status_code == 404, (path, r.text)
            _problem(r)
        assert c.post(f"/eftersyn/{eid}/godkend", headers=s["admin"]).status_code == 200
        (mangel,) = c.get("/mangler", headers=s["admin"]).json()["mangler"]
        r = c.patch(f"/mangler/{mangel['id']}", content=json.dumps({"status": "planlagt"}),
                    headers={**JSON, **bearer(["municipal_editor"], cvr=_cvr(db_url, AAR),
                                              kommuner=[AAR])})
        assert r.status_code == 404, r.text
        assert c.post(f"/eftersyn/{eid}/indberet", headers=s["admin"]).status_code == 200
        assert c.post(f"/eftersyn/{eid}/indberet", headers=s["admin"]).status_code == 409
    assert query(db_url, "SELECT status FROM ly.mangel") == [("aaben",)]


def test_concurrent_approvals_approve_once(s):
    eid = str(uuid.uuid4())
    with LiveServer(s["url"]) as server:
        with httpx.Client(base_url=server.url) as h:
            assert h.put(f"/eftersyn/{eid}", headers={**JSON, **s["inspector"]}, content=json.dumps(
                upload_body(s, complete_answers(betondaeksel_kode=2), [room()]))
            ).status_code == 201
        answers = _at_once(server.url, [("POST", f"/eftersyn/{eid}/godkend", s["admin"], b"")]
                           * 8)
    assert sorted(r.status_code for r in answers) == [200] + [409] * 7, [
        (r.status_code, r.text[:200]) for r in answers]
    for r in answers:
        if r.status_code == 409:
            _problem(r)
    assert query(s["url"], "SELECT count(*) FROM ly.mangel") == [(1,)]
    assert query(s["url"], "SELECT count(*) FROM ly.hist_t_6101_beskyt_rum "
                           "WHERE seneste_eftersyn_id = %s", [eid]) == [(1,)]
