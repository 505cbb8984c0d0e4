"""Sikringsrum from BBR/DAR through Datafordeler's GraphQL, answered by a local stand-in that
serves recorded-shape responses (tests/fixtures/bbr/) on a loopback port."""

from __future__ import annotations

import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest

from loaders import bbr, staging
from tests.conftest import query, snapshot

FIXTURES = Path(__file__).parent / "fixtures" / "bbr"
ROOT_FIELD = re.compile(r"\b(BBR_Bygning|DAR_Husnummer|DAR_NavngivenVej|DAR_Postnummer)\s*\(")


def _load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


class FakeDatafordeler:
    """Datafordeler's GraphQL for BBR and DAR as recorded: BBR_Bygning pages chained by their
    endCursor, DAR entities filtered by `id_lokalId in`. Every request is kept."""

    def __init__(self):
        pages = [_load("bbr_bygning_side1.json"), _load("bbr_bygning_side2.json")]
        self.pages = {None: pages[0]}
        self.pages[pages[0]["data"]["BBR_Bygning"]["pageInfo"]["endCursor"]] = pages[1]
        self.dar = {name: _load(f"{name.lower()}.json")
                    for name in ("DAR_Husnummer", "DAR_NavngivenVej", "DAR_Postnummer")}
        self.requests: list[dict] = []
        self.fail_after_pages: int | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, **body})
                status, answer = fake.answer(self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, path: str, body: dict) -> tuple[int, dict]:
        m = ROOT_FIELD.search(body.get("query", ""))
        if not m:
            return 400, {"errors": [{"message": "unknown query"}]}
        entity, v = m.group(1), body.get("variables") or {}
        if not (v.get("registreringstid") and v.get("virkningstid")):
            return 200, {"errors": [{"message": "bitemporal arguments are required"}]}
        if entity == "BBR_Bygning":
            if not path.startswith("/BBR/v1"):
                return 404, {}
            if self.fail_after_pages is not None:
                served = sum(1 for r in self.requests if "BBR_Bygning" in r["query"])
                if served > self.fail_after_pages:
                    return 503, {"message": "service unavailable"}
            page = copy.deepcopy(self.pages[v.get("after")])
            edges = page["data"]["BBR_Bygning"]["edges"]
            wanted = v.get("kommunekoder")
            if wanted:
                edges[:] = [e for e in edges if e["node"]["kommunekode"] in wanted]
            return 200, page
        if not path.startswith("/DAR/v1"):
            return 404, {}
        ids = set(v.get("ids") or [])
        if len(ids) > 100:
            return 200, {"errors": [{"message": "at most 100 ids"}]}
        page = copy.deepcopy(self.dar[entity])
        edges = page["data"][entity]["edges"]
        edges[:] = [e for e in edges if e["node"]["id_lokalId"] in ids]
        return 200, page

    def node(self, bid_suffix: str) -> dict:
        for page in self.pages.values():
            for e in page["data"]["BBR_Bygning"]["edges"]:
                if e["node"]["id_lokalId"].endswith(bid_suffix):
                    return e["node"]
        raise KeyError(bid_suffix)

    def __enter__(self):
        self.thread.start()
        host, port = self.server.server_address
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def source(self, page_size: int = 5) -> bbr.Datafordeler:
        return bbr.Datafordeler(f"{self.url}/BBR/v1", f"{self.url}/DAR/v1", page_size=page_size)


@pytest.fixture
def datafordeler():
    with FakeDatafordeler() as fake:
        yield fake


def _bbr_rows(url: str) -> list[tuple]:
    return query(url, "SELECT bbr_bygning_id::text, pladser, pladser_kilde_kode, vejnavn, husnr, "
                      "postnr, postnr_by, beskyt_rum_kode, beliggenhedskommune, "
                      "round(ST_X(geometri)::numeric, 2) FROM ly.t_6101_beskyt_rum "
                      "WHERE bbr_bygning_id::text LIKE '5f0e6a3c-%%' ORDER BY bbr_bygning_id")


def test_recorded_bbr_dar_response_loads_sikringsrum_with_addresses_and_places(
        db_url, datafordeler):
    before = snapshot(db_url)
    with psycopg.connect(db_url) as conn:
        run_id = bbr.import_bbr(conn, datafordeler.source(), kommuner=[101], fuld=False)
        assert snapshot(db_url) == before
        run = staging.get_run(conn, run_id)
        assert run["status"] == "klar", run
        t = run["taellere"]
        assert (t["laest"], t["opret"], t["afviste"]) == (8, 7, 1)
        (rejected,) = staging.rejections(conn, run_id)
        assert rejected["raekke"] == 4 and rejected["felt"] == "byg404Koordinat"
        staging.publish(conn, run_id)
    rows = _bbr_rows(db_url)
    assert len(rows) == 7
    first = rows[0]
    assert first[:9] == ("5f0e6a3c-8b1d-4d2e-a6c4-000000000001", 120, 1, "Jagtvej", "12", 2200,
                         "København N", 2, 101)
    assert float(first[9]) == 724254.21  # EPSG:25832 as BBR gave it
    sixth = [r for r in rows if r[0].endswith("0006")][0]
    assert sixth[1] == 40 and sixth[3] is None  # husnummer unknown in DAR: places, no address
    remark = query(db_url, "SELECT bemaerkning FROM ly.kandidat WHERE koersel_id = %s AND "
                           "kilde_vaerdier ->> 'id_lokalId' LIKE '%%0006'", [run_id])[0][0]
    assert "not found in DAR" in remark
    # GraphQL form: bitemporal instant pinned, cursor paging, DAR batches by id
    bbr_requests = [r for r in datafordeler.requests if "BBR_Bygning" in r["query"]]
    assert [r["variables"]["after"] for r in bbr_requests] == \
        [None, "YXJyYXljb25uZWN0aW9uOjQ="]
    assert {r["variables"]["registreringstid"] for r in datafordeler.requests} == {run["parametre"]
                                                                                   ["tid"]}
    assert bbr_requests[0]["variables"]["kommunekoder"] == ["0101"]
    # what BBR said is kept apart from the register
    assert query(db_url, "SELECT count(*), sum(pladser) FROM ly.bbr_vaerdi") == [(7, 1030)]


def test_second_run_with_one_building_changed_changes_only_that_one(db_url, datafordeler):
    with psycopg.connect(db_url) as conn:
        first = bbr.import_bbr(conn, datafordeler.source(), kommuner=[101], fuld=False,
                               publish=True)
        assert staging.get_run(conn, first)["status"] == "publiceret"
        versions_before = query(db_url, "SELECT count(*) FROM ly.beskyttelsesrum")[0][0]
        # a manual correction of building 3: its verified places stay, whatever BBR says
        query(db_url, "UPDATE ly.t_6101_beskyt_rum SET pladser = 240, pladser_kilde_kode = 3, "
                      "pladser_verificeret = 240 WHERE bbr_bygning_id::text LIKE '%%0003'")
        datafordeler.node("0001")["byg069Sikringsrumpladser"] = 150
        datafordeler.node("0003")["byg069Sikringsrumpladser"] = 260
        second = bbr.import_bbr(conn, datafordeler.source(), kommuner=[101], fuld=False,
                                publish=True)
        run = staging.get_run(conn, second)
    t = run["taellere"]
    assert (t["ret"], t.get("opret", 0), t["uaendret"], t["skrevet"]) == (1, 0, 6, 1)
    changed = query(db_url, "SELECT objekt_id, aendringer FROM ly.kandidat WHERE koersel_id = %s "
                            "AND handling = 'ret'", [second])
    assert changed[0][1] == {"pladser": [120, 150]}
    # exactly one new version (and the manual correction's): nothing else was touched
    assert query(db_url, "SELECT count(*) FROM ly.beskyttelsesrum")[0][0] == versions_before + 2
    assert query(db_url, "SELECT pladser, pladser_kilde_kode FROM ly.t_6101_beskyt_rum WHERE "
                         "bbr_bygning_id::text LIKE '%%0003'") == [(240, 3)]
    assert query(db_url, "SELECT pladser FROM ly.bbr_vaerdi WHERE bbr_bygning_id::text LIKE "
                         "'%%0003'") == [(260,)]
    note = query(db_url, "SELECT bemaerkning FROM ly.kandidat WHERE koersel_id = %s AND "
                         "kilde_vaerdier ->> 'id_lokalId' LIKE '%%0003'", [second])[0][0]
    assert "keeps 240" in note


def test_interrupted_bbr_run_resumes_after_its_last_committed_page(db_url, datafordeler):
    datafordeler.fail_after_pages = 1  # page 2 fails: the service goes away midway
    before = snapshot(db_url)
    with psycopg.connect(db_url) as conn:
        with pytest.raises(bbr.DatafordelerError, match="503"):
            bbr.import_bbr(conn, datafordeler.source(), kommuner=[101], fuld=False)
        (run_id, status, done, fejl) = query(
            db_url, "SELECT id, status, naeste_raekke, fejl FROM ly.koersel")[0]
        assert (status, done) == ("indlaeser", 5) and "503" in fejl
        assert snapshot(db_url) == before
        datafordeler.fail_after_pages = None
        report = bbr.stage_run(conn, run_id, datafordeler.source())
        assert report["bestaaet"]
        staging.publish(conn, run_id)
    afters = [r["variables"]["after"] for r in datafordeler.requests if "BBR_Bygning" in r["query"]]
    assert afters == [None, "YXJyYXljb25uZWN0aW9uOjQ=", "YXJyYXljb25uZWN0aW9uOjQ="]
    assert len(_bbr_rows(db_url)) == 7


def test_full_run_ends_vanished_buildings_but_the_gate_stops_mass_loss(db_url, datafordeler):
    """The demo register has BBR sikringsrum in Copenhagen that the recorded response does
    not have: a full run would end them all, and the quality gate refuses it."""
    before = snapshot(db_url)
    with psycopg.connect(db_url) as conn:
        run_id = bbr.import_bbr(conn, datafordeler.source(), kommuner=[101], fuld=True,
                                publish=True)
        run = staging.get_run(conn, run_id)
    assert run["status"] == "afvist" and run["taellere"]["afslut"] > 50
    rule = [r for r in run["kvalitet"]["regler"] if r["regel"] == "pladstab"][0]
    assert not rule["bestaaet"] and rule["kommunekode"] == 101
    assert snapshot(db_url) == before
