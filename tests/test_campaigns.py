"""Campaigns: selection, assignment to inspectors, progress per municipality and nationally,
and reports as HTML, CSV and XLSX whose figures equal the database's."""

from __future__ import annotations

import csv
import io
import json
import uuid

from fastapi.testclient import TestClient
from openpyxl import load_workbook

from service.app import create_app
from tests.conftest import SAMS_CVR, bearer, make_settings, query
from tests.test_inspections import complete_answers, room

KBH, AAR = 101, 751
JS = {"Content-Type": "application/json"}


def _cvr(url, kommune):
    return query(url, "SELECT cvr_kode FROM ly.kommune WHERE kommunekode = %s", [kommune])[0][0]


def test_a_campaign_from_selection_to_report(db_url):
    sams = bearer(["national_admin"], subject="sams", cvr=SAMS_CVR)
    kbh_admin = bearer(["municipal_admin"], subject="kbh-admin", cvr=_cvr(db_url, KBH),
                       kommuner=[KBH])
    inspector = bearer(["inspector"], subject="entreprenoer-9")
    body = {"navn": "BDG 2026", "tjekliste_kode": "bdg-6122", "periode_fra": "2026-02-01",
            "periode_til": "2026-03-15", "frist": "2026-03-15",
            "udvalg": {"beskyt_rum_kode": [3], "kommuner": [KBH, AAR]}}
    with TestClient(create_app(make_settings(db_url))) as c:
        bad = c.post("/kampagner", content=json.dumps({**body, "periode_til": "2026-01-01"}),
                     headers={**JS, **sams})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "periode_til"
        assert c.post("/kampagner", content=json.dumps(body),
                      headers={**JS, **inspector}).status_code == 403
        r = c.post("/kampagner", content=json.dumps(body), headers={**JS, **sams})
        assert r.status_code == 201, r.text
        kid = r.json()["id"]
        expected = {k: n for k, n in query(
            db_url, "SELECT beliggenhedskommune, count(*) FROM ly.t_6101_beskyt_rum WHERE "
                    "beskyt_rum_kode = 3 AND beliggenhedskommune IN (101, 751) GROUP BY 1")}
        assert r.json()["udvalgt"] == sum(expected.values())

        # København's administrator assigns København's shelters (only those) to a contractor
        r = c.post(f"/kampagner/{kid}/tildelinger", content=json.dumps(
            {"subjekt": "entreprenoer-9"}), headers={**JS, **kbh_admin})
        assert r.status_code == 201 and r.json()["tildelt"] == expected[KBH]
        tasks = c.get("/eftersyn/opgaver", headers=inspector).json()["opgaver"]
        assert len(tasks) == expected[KBH] and {t["kampagne_id"] for t in tasks} == {kid}
        assert all(t["tjekliste_kode"] == "bdg-6122" for t in tasks)

        # two inspections: one approved with a deficiency made overdue, one left as a draft
        first, second = tasks[0]["objekt_id"], tasks[1]["objekt_id"]
        eid = str(uuid.uuid4())
        upload = {"objekt_id": first, "tjekliste_kode": "bdg-6122", "tjekliste_version": 1,
                  "kampagne_id": kid, "status": "indsendt", "svar": complete_answers(),
                  "rum": [room(konstruktion_intakt_kode=2)]}
        assert c.put(f"/eftersyn/{eid}", content=json.dumps(upload),
                     headers={**JS, **inspector}).status_code == 201
        assert c.put(f"/eftersyn/{uuid.uuid4()}", content=json.dumps(
            {**upload, "objekt_id": second, "status": "kladde", "rum": []}),
            headers={**JS, **inspector}).status_code == 201
        assert c.post(f"/eftersyn/{eid}/godkend", headers=kbh_admin).status_code == 200
        query(db_url, "UPDATE ly.mangel SET frist = current_date - 1")

        national = c.get(f"/kampagner/{kid}/fremdrift", headers=sams).json()
        rows = {r["kommunekode"]: r for r in national["kommuner"]}
        assert rows[KBH]["udvalgt"] == expected[KBH] and rows[AAR]["udvalgt"] == expected[AAR]
        assert (rows[KBH]["godkendt"], rows[KBH]["kladde"], rows[KBH]["uegnet"]) == (1, 1, 1)
        assert (rows[KBH]["aabne_mangler"], rows[KBH]["forfaldne_mangler"]) == (1, 1)
        assert rows[KBH]["tildelt"] == expected[KBH] and rows[AAR]["tildelt"] == 0
        assert national["national"]["udvalgt"] == sum(expected.values())
        # a municipality sees its own part only
        own = c.get(f"/kampagner/{kid}/fremdrift", headers=kbh_admin).json()["kommuner"]
        assert [r["kommunekode"] for r in own] == [KBH]

        html = c.get(f"/rapporter/kampagner/{kid}", headers=sams)
        assert html.status_code == 200 and "BDG 2026" in html.text
        assert "Hovedkonstruktionen er ikke intakt" in html.text
        text = c.get(f"/rapporter/kampagner/{kid}", params={"f": "csv"}, headers=sams)
        table = list(csv.DictReader(io.StringIO(text.content.decode("utf-8-sig")),
                                    delimiter=";"))
        assert [r["kommunekode"] for r in table] == ["101", "751", ""]
        assert int(table[0]["uegnet"]) == 1 and int(table[-1]["udvalgt"]) == sum(
            expected.values())
        xlsx = c.get(f"/rapporter/kampagner/{kid}", params={"f": "xlsx", "kommune": KBH},
                     headers=sams)
        wb = load_workbook(io.BytesIO(xlsx.content), read_only=True)
        sheet = list(wb["Fremdrift"].iter_rows(values_only=True))
        assert sheet[1][0] == "kommunekode" and sheet[2][0] == KBH
        assert sheet[2][2] == expected[KBH]
        late = list(wb["Forfaldne mangler"].iter_rows(values_only=True))
        assert len(late) == 2 and late[1][3] == "konstruktion_intakt_kode"
        assert c.get(f"/rapporter/kampagner/{kid}", params={"f": "pdf"},
                     headers=sams).status_code == 400
        assert c.get(f"/rapporter/kampagner/{kid}").status_code == 401
