"""Two-way sync with GeoFA against the local stand-in (an FKG-shaped schema generated from the
official schema files, behind a real HTTP facade on loopback): creation, edits, conflicts,
deletions both ways, concurrent edits, the cursor, and the stand-in's own semantics."""

from __future__ import annotations

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from loaders import staging
from loaders.geofa import formats, standin, sync
from loaders.geofa.client import GeoFAClient, GeoFAError, LimitError
from service.app import create_app
from tests.conftest import ITEMS, bearer, make_settings, query, snapshot

FANOE = 563
FANOE_CVR = 31210917
SAMS_CVR = 41575727
# the stand-in's tables as they are (its views show a reader only what GeoFA's rules allow)
ALL = ("geofa_standin.generel g JOIN geofa_standin.t_6101_beskyt_rum_t t USING (versions_id)")
VIEW = f"(SELECT * FROM {ALL} WHERE g.systid_til IS NULL) v"
HIST = f"(SELECT * FROM {ALL}) h"


@pytest.fixture
def geofa(db_url):
    with psycopg.connect(db_url) as conn:
        users = [standin.municipal_user(conn, FANOE), standin.municipal_user(conn, 101)]
        standin.create_schema(conn, users)
    with standin.StandIn(db_url) as s:
        yield s


def _client(geofa, user: str = "kom563") -> GeoFAClient:
    return GeoFAClient(geofa.url, user, "hemmeligt")


def _sync(db_url, geofa, **kw) -> int:
    with psycopg.connect(db_url) as conn:
        return sync.sync(conn, _client(geofa), sync.Target(FANOE_CVR, FANOE), **kw)


def _run(db_url, run_id) -> dict:
    with psycopg.connect(db_url) as conn:
        return staging.get_run(conn, run_id)


def _geofa_edit(geofa, q: str, params: dict, user: str = "kom563") -> dict:
    """Someone editing in GeoFA itself, through its SQL API."""
    return _client(geofa, user).sql(q, params)


def _geofa_row(db_url, objekt_id) -> dict | None:
    rows = query(db_url, "SELECT row_to_json(x) FROM (SELECT objekt_id, versions_id, pladser, "
                         f"note, klargjort_kode, noegle, bruger_id FROM {VIEW}) x "
                         "WHERE objekt_id = %s", [objekt_id])
    return rows[0][0] if rows else None


def _fanoe_ids(db_url) -> list[str]:
    return [str(r[0]) for r in query(db_url, "SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE "
                                             "cvr_kode = %s ORDER BY objekt_id", [FANOE_CVR])]


def _ly(db_url, objekt_id) -> dict | None:
    rows = query(db_url, "SELECT row_to_json(t) FROM ly.t_6101_beskyt_rum t WHERE objekt_id = %s",
                 [objekt_id])
    return rows[0][0] if rows else None


FANOE_EDITOR = bearer(["municipal_editor"], subject="fanoe-redaktor", cvr=FANOE_CVR,
                      kommuner=[FANOE])
SAMS_ADMIN = bearer(["national_admin"], subject="sams-admin", cvr=SAMS_CVR)


def test_a_shelter_created_in_ly_appears_in_geofa_with_its_objekt_id(db_url, geofa):
    first = _sync(db_url, geofa)
    ids = _fanoe_ids(db_url)
    t = _run(db_url, first)["taellere"]
    assert t["geofa_opret"] == len(ids) == t["geofa_skrevet"]
    with TestClient(create_app(make_settings(db_url))) as c:
        r = c.post(ITEMS, headers={**FANOE_EDITOR, "Content-Type": "application/geo+json",
                                   "Content-Crs": "<http://www.opengis.net/def/crs/EPSG/0/25832>"},
                   json={"type": "Feature", "geometry": {"type": "Point",
                                                         "coordinates": [466100.0, 6142600.0]},
                         "properties": {"beskyt_rum_kode": 3, "pladser": 50,
                                        "navn": "Betondækningsgrav Nordby"}})
        assert r.status_code == 201, r.text
        new_id = r.json()["id"]
    run_id = _sync(db_url, geofa)
    row = _geofa_row(db_url, new_id)
    assert row is not None and row["noegle"] == new_id and row["pladser"] == 50
    assert row["bruger_id"] == "kom563"  # GeoFA stamps its own user
    assert query(db_url, "SELECT geofa_objekt_id::text, geofa_versions_id::text FROM "
                         "ly.geofa_link WHERE objekt_id = %s", [new_id]) == \
        [(new_id, row["versions_id"])]
    t = _run(db_url, run_id)["taellere"]
    assert (t.get("geofa_opret"), t.get("geofa_skrevet")) == (1, 1)
    # the next sync finds nothing to do: its own writes are recognised in the overlap window
    again = _run(db_url, _sync(db_url, geofa))["taellere"]
    assert not {k for k in again if k in ("opret", "ret", "afslut", "geofa_opret", "geofa_ret",
                                          "geofa_afslut")}, again
    assert query(db_url, f"SELECT count(*) FROM {VIEW}") == [(len(ids) + 1,)]


def test_an_edit_made_in_geofa_comes_back_to_ly(db_url, geofa):
    _sync(db_url, geofa)
    oid = _fanoe_ids(db_url)[0]
    g = _geofa_row(db_url, oid)
    _geofa_edit(geofa, "update fkg.t_6101_beskyt_rum set pladser = :p, note = :n where "
                       "objekt_id = :o", {"p": 77, "n": "Rettet i GeoFA", "o": oid})
    versions = query(db_url, "SELECT count(*) FROM ly.beskyttelsesrum WHERE objekt_id = %s",
                     [oid])[0][0]
    run_id = _sync(db_url, geofa)
    ly = _ly(db_url, oid)
    assert (ly["pladser"], ly["note"]) == (77, "Rettet i GeoFA")
    assert query(db_url, "SELECT count(*) FROM ly.beskyttelsesrum WHERE objekt_id = %s",
                 [oid])[0][0] == versions + 1  # a new version: history kept
    assert query(db_url, "SELECT handling FROM ly.revision WHERE objekt_id = %s AND klient = %s",
                 [oid, f"ly-import:geofa_sync:{run_id}"]) == [("ret",)]
    t = _run(db_url, run_id)["taellere"]
    assert t["ret"] == 1 and t.get("geofa_skrevet", 0) == 0
    assert _geofa_row(db_url, oid)["versions_id"] != g["versions_id"]
    link = query(db_url, "SELECT grundlag FROM ly.geofa_link WHERE objekt_id = %s", [oid])[0][0]
    assert link["pladser"] == 77


def test_an_edit_on_both_sides_is_a_conflict_resolved_by_the_policy(db_url, geofa):
    _sync(db_url, geofa)
    a, b = _fanoe_ids(db_url)[:2]
    with TestClient(create_app(make_settings(db_url))) as c:
        for oid, headers in ((a, SAMS_ADMIN), (b, SAMS_ADMIN)):
            r = c.patch(f"{ITEMS}/{oid}", headers={**headers, "Content-Type":
                                                   "application/merge-patch+json"},
                        json={"properties": {"pladser": 111, "klargjort_kode": 2}})
            assert r.status_code == 200, r.text
    for oid in (a, b):
        _geofa_edit(geofa, "update fkg.t_6101_beskyt_rum set pladser = :p, note = :n where "
                           "objekt_id = :o", {"p": 222, "n": "Fra GeoFA", "o": oid})
    before_ly, before_geofa = snapshot(db_url), query(db_url, f"SELECT count(*) FROM {HIST}")

    # the dry run: a diff and the conflicts, nothing written anywhere
    policy = sync.Policy(felter={})
    dry = _sync(db_url, geofa, dry_run=True, policy=policy)
    assert snapshot(db_url) == before_ly
    assert query(db_url, f"SELECT count(*) FROM {HIST}") == before_geofa
    with psycopg.connect(db_url) as conn:
        rep = sync.report(conn, dry)
    conflicts = {(c["objekt_id"], c["felt"]): c for c in rep["konflikter"]}
    assert set(conflicts) == {(a, "pladser"), (b, "pladser")}
    ca = conflicts[(a, "pladser")]
    assert (ca["ly"], ca["geofa"], ca["vinder"]) == (111, 222, "geofa")
    assert "responsible authority (CVR 31210917) made the GeoFA edit" in ca["begrundelse"]
    changes = {(ch["maal"], ch["objekt_id"]): ch["aendringer"] for ch in rep["aendringer"]}
    assert changes[("ly", a)] == {"pladser": [111, 222], "note": [None, "Fra GeoFA"]}
    assert list(changes[("geofa", a)]) == ["klargjort_kode"]
    assert changes[("geofa", a)]["klargjort_kode"][1] == 2

    first = _sync(db_url, geofa, policy=policy)
    conflicts = query(db_url, "SELECT objekt_id::text, felt, vinder FROM ly.konflikt WHERE "
                              "koersel_id = %s ORDER BY objekt_id", [first])
    assert conflicts == sorted([(a, "pladser", "geofa"), (b, "pladser", "geofa")])
    for oid in (a, b):
        ly, g = _ly(db_url, oid), _geofa_row(db_url, oid)
        assert (ly["pladser"], ly["note"], ly["klargjort_kode"]) == (222, "Fra GeoFA", 2)
        assert (g["pladser"], g["note"], g["klargjort_kode"]) == (222, "Fra GeoFA", 2)


def test_a_per_field_policy_can_let_ly_win(db_url, geofa):
    _sync(db_url, geofa)
    oid = _fanoe_ids(db_url)[0]
    query(db_url, "UPDATE ly.t_6101_beskyt_rum SET pladser = 111 WHERE objekt_id = %s", [oid])
    _geofa_edit(geofa, "update fkg.t_6101_beskyt_rum set pladser = :p where objekt_id = :o",
                {"p": 222, "o": oid})
    run_id = _sync(db_url, geofa, policy=sync.Policy(felter={"pladser": "ly"}))
    assert query(db_url, "SELECT felt, ly_vaerdi, geofa_vaerdi, politik, vinder FROM ly.konflikt "
                         "WHERE koersel_id = %s", [run_id]) == [("pladser", 111, 222, "ly", "ly")]
    assert _ly(db_url, oid)["pladser"] == 111 and _geofa_row(db_url, oid)["pladser"] == 111


def test_a_deletion_on_either_side_ends_the_object_on_the_other_with_history(db_url, geofa):
    _sync(db_url, geofa)
    in_geofa, in_ly = _fanoe_ids(db_url)[:2]
    _geofa_edit(geofa, "delete from fkg.t_6101_beskyt_rum where objekt_id = :o", {"o": in_geofa})
    with TestClient(create_app(make_settings(db_url))) as c:
        assert c.delete(f"{ITEMS}/{in_ly}", headers=FANOE_EDITOR).status_code == 204
    run_id = _sync(db_url, geofa)
    t = _run(db_url, run_id)["taellere"]
    assert (t["afslut"], t["geofa_afslut"]) == (1, 1)
    # ended in Ly, history kept
    assert _ly(db_url, in_geofa) is None
    assert query(db_url, "SELECT count(*), count(*) FILTER (WHERE systid_til IS NULL) FROM "
                         "ly.hist_t_6101_beskyt_rum WHERE objekt_id = %s", [in_geofa]) == [(1, 0)]
    # ended in GeoFA (soft delete), history kept
    assert _geofa_row(db_url, in_ly) is None
    assert query(db_url, "SELECT count(*) FROM geofa_standin.generel WHERE objekt_id = %s AND "
                         "systid_til IS NOT NULL", [in_ly]) == [(1,)]
    assert query(db_url, "SELECT count(*) FROM ly.geofa_link WHERE afsluttet") == [(2,)]
    # and nothing more happens the next time
    again = _run(db_url, _sync(db_url, geofa))["taellere"]
    assert "afslut" not in again and "geofa_afslut" not in again


def test_a_concurrent_edit_in_geofa_during_the_push_is_reported_and_merged_next_time(
        db_url, geofa):
    _sync(db_url, geofa)
    oid = _fanoe_ids(db_url)[0]
    query(db_url, "UPDATE ly.t_6101_beskyt_rum SET pladser = 333 WHERE objekt_id = %s", [oid])

    def meanwhile():
        _geofa_edit(geofa, "update fkg.t_6101_beskyt_rum set note = :n where objekt_id = :o",
                    {"n": "Samtidig rettelse", "o": oid})

    run_id = _sync(db_url, geofa, before_push=meanwhile)
    (vinder, begrundelse), = query(db_url, "SELECT vinder, begrundelse FROM ly.konflikt WHERE "
                                           "koersel_id = %s", [run_id])
    assert vinder == "ingen" and "COUNT 0" in begrundelse
    g = _geofa_row(db_url, oid)
    assert (g["pladser"], g["note"]) != (333, None) and g["note"] == "Samtidig rettelse"
    assert _run(db_url, run_id)["taellere"]["geofa_samtidige"] == 1
    _sync(db_url, geofa)  # nothing lost: both edits end up on both sides
    ly, g = _ly(db_url, oid), _geofa_row(db_url, oid)
    assert (ly["pladser"], ly["note"]) == (333, "Samtidig rettelse") == (g["pladser"], g["note"])


def test_the_pull_is_incremental_with_an_overlap_and_the_anonymous_wfs_never_deletes(
        db_url, geofa):
    first = _sync(db_url, geofa)  # GeoFA was empty: everything pushed, nothing read yet
    assert _run(db_url, first)["parametre"]["siden"] is None
    assert query(db_url, "SELECT count(*) FROM ly.geofa_markoer") == [(0,)]
    _sync(db_url, geofa)  # reads its own writes back: the cursor is GeoFA's newest systid
    cursor = query(db_url, "SELECT systid FROM ly.geofa_markoer")[0][0]
    geofa.requests.clear()
    second = _sync(db_url, geofa, mode="pull")
    params = _run(db_url, second)["parametre"]
    assert params["markoer_foer"] == cursor.isoformat()
    assert params["siden"] < params["markoer_foer"]  # the overlap window
    assert any("systid_fra > :since" in r["body"] for r in geofa.requests)

    # anonymous WFS: only off_kode 1 is served; what is missing is not deleted
    public = query(db_url, "SELECT count(*) FROM geofa_standin.generel WHERE off_kode = 1 AND "
                           "systid_til IS NULL")[0][0]
    total = len(_fanoe_ids(db_url))
    assert 0 < public < total
    before = snapshot(db_url)
    with psycopg.connect(db_url) as conn:
        run_id = sync.sync(conn, GeoFAClient(geofa.url), sync.Target(FANOE_CVR, FANOE),
                           mode="pull", wfs=True)
    assert snapshot(db_url) == before
    t = _run(db_url, run_id)["taellere"]
    assert "afslut" not in t and t.get("uaendret", 0) == 0
    with pytest.raises(staging.RunError, match="read-only"):
        with psycopg.connect(db_url) as conn:
            sync.sync(conn, GeoFAClient(geofa.url), sync.Target(FANOE_CVR, FANOE), wfs=True)


def test_the_standin_answers_the_sql_api_and_wfs_as_geofa_documents_them(db_url, geofa):
    _sync(db_url, geofa)
    http = httpx.Client(base_url=geofa.url)
    # writes need a token; a bad password is refused
    r = http.post("/api/v4/sql", json={"q": "delete from fkg.t_6101_beskyt_rum"})
    assert r.status_code == 401
    r = http.post("/api/v4/oauth", json={"grant_type": "password", "username": "kom563",
                                         "password": "forkert", "database": "fkg"})
    assert r.status_code == 401
    client = _client(geofa)
    # parameterised insert returning objekt_id; a write in another municipality is LIMIT
    point = {"type": "MultiPoint", "crs": {"type": "name", "properties": {"name": "EPSG:25832"}},
             "coordinates": [[466200.0, 6142700.0]]}
    q = ("insert into fkg.t_6101_beskyt_rum (cvr_kode, oprindkode, statuskode, off_kode, "
         "beskyt_rum_kode, klargjort_kode, pladser, geometri) values (:cvr, 0, 3, 1, 3, 3, 40, "
         "st_geomfromgeojson(:geometri)) returning objekt_id")
    new = client.sql(q, [{"cvr": FANOE_CVR, "geometri": point}])
    assert new["affected_rows"] == 1 and len(new["returning"][0]["objekt_id"]) == 36
    before = query(db_url, "SELECT count(*) FROM geofa_standin.generel")
    with pytest.raises(LimitError, match="LIMIT"):
        client.sql(q, [{"cvr": FANOE_CVR, "geometri": point},
                       {"cvr": 64942212, "geometri": point}])
    assert query(db_url, "SELECT count(*) FROM geofa_standin.generel") == before  # all or none
    # an update guarded by a stale versions_id changes nothing: COUNT 0
    oid = new["returning"][0]["objekt_id"]
    with pytest.raises(GeoFAError, match="COUNT 0"):
        client.sql("update fkg.t_6101_beskyt_rum set pladser = 41 where objekt_id = :o and "
                   "versions_id = :v", {"o": oid, "v": "00000000-0000-0000-0000-000000000000"})
    client.sql("update fkg.t_6101_beskyt_rum set pladser = 41 where objekt_id = :o", {"o": oid})
    hist = client.select("select versions_id, systid_til, pladser from "
                         "fkg.hist_t_6101_beskyt_rum where objekt_id = :o order by systid_fra, "
                         "systid_til", {"o": oid})
    assert [f["properties"]["pladser"] for f in hist] == [40, 41]
    assert hist[0]["properties"]["systid_til"] is not None
    # output in EPSG:4326 by default, 25832 on request
    (f4326,) = client.select("select * from fkg.t_6101_beskyt_rum where objekt_id = :o",
                             {"o": oid}, srs=4326)
    assert f4326["geometry"]["type"] == "MultiPoint"
    assert 8 < f4326["geometry"]["coordinates"][0][0] < 9
    assert f4326["properties"]["beskyt_rum"] == "Betondækningsgrav"
    # anonymous SQL sees off_kode 1 only
    anon = GeoFAClient(geofa.url).select("select objekt_id, off_kode from "
                                         "fkg.t_6101_beskyt_rum", anonymous=True)
    assert anon and {f["properties"]["off_kode"] for f in anon} == {1}
    with pytest.raises(GeoFAError, match="not a published relation"):
        client.select("select * from fkg.generel")
    # WFS GetFeature: GeoJSON as GeoFA delivers it, and GML 3 that GDAL reads
    params = {"service": "WFS", "request": "GetFeature", "typeName": "fkg:fkg.t_6101_beskyt_rum",
              "srsName": "EPSG:25832"}
    fc = http.get("/ows/fkg/fkg", params={**params, "outputFormat": "application/json"}).json()
    assert {f["properties"]["off_kode"] for f in fc["features"]} == {1}
    f = fc["features"][0]
    assert f["id"] == f"t_6101_beskyt_rum.{f['properties']['objekt_id']}"
    assert f["geometry"]["type"] == "MultiPoint" and list(f["properties"])[:2] == ["temakode",
                                                                                  "temanavn"]
    gml = http.get("/ows/fkg/fkg", params=params)
    assert gml.status_code == 200 and b"fkg:fkg.t_6101_beskyt_rum" in gml.content
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "wfs.gml"
        path.write_bytes(gml.content)
        back = formats.read_file(path)
    assert sorted(x["properties"]["objekt_id"] for x in back) == \
        sorted(x["properties"]["objekt_id"] for x in fc["features"])
    auth = http.get("/wfs/kom563@fkg/fkg/25832", params={**params,
                                                         "outputFormat": "application/json"},
                    auth=("kom563", "hemmeligt")).json()
    assert len(auth["features"]) > len(fc["features"])  # the user sees its own off_kode 2 and 3


def test_a_pull_leaves_lys_own_changes_for_the_next_push(db_url, geofa):
    _sync(db_url, geofa)
    oid = _fanoe_ids(db_url)[0]
    query(db_url, "UPDATE ly.t_6101_beskyt_rum SET pladser = 444 WHERE objekt_id = %s", [oid])
    pulled = _sync(db_url, geofa, mode="pull")
    assert _run(db_url, pulled)["art"] == "geofa_pull"
    assert _geofa_row(db_url, oid)["pladser"] != 444  # a pull writes nothing to GeoFA
    note = query(db_url, "SELECT bemaerkning FROM ly.kandidat WHERE koersel_id = %s",
                 [pulled])[0][0]
    assert "left for a push" in note
    _sync(db_url, geofa, mode="push")
    assert _geofa_row(db_url, oid)["pladser"] == 444


def test_the_synced_attributes_are_what_geofa_stores_and_a_client_writes():
    """The exchanged attributes come from GeoFA's table files and the theme's descriptor: for
    the shelters exactly GeoFA's writable 6101 attributes (no address, no Ly extension, no
    server-owned attribute); for every theme only attributes a client writes, never noegle
    (it carries Ly's id), and the geometry last. A policy for another attribute is refused."""
    from datamodel import themes

    assert sync.sync_fields(sync.THEME) == (
        "cvr_kode", "oprindkode", "statuskode", "off_kode", "note", "beskyt_rum_kode",
        "klargjort_kode", "pladser", "link", "geometri")
    for theme in themes.all_themes():
        if not theme.geofa_table_file:
            continue
        fields = sync.sync_fields(theme)
        writable = {f.name for f in theme.writable_fields if f.fkg}
        assert fields[-1] == "geometri" and "noegle" not in fields, theme
        assert set(fields[:-1]) <= writable, (theme, set(fields[:-1]) - writable)
        assert {"cvr_kode", "off_kode"} <= set(fields), theme
    with pytest.raises(staging.RunError, match="navn"):
        sync.Policy(felter={"navn": "ly"}).check(sync.THEME)
    sync.Policy(felter={"pladser": "ly"}).check(sync.THEME)


def test_the_sync_refuses_an_area_theme_before_reading_anything():
    from datamodel import themes

    area = next(t for t in themes.all_themes() if t.is_area)
    with pytest.raises(staging.RunError, match="points only"):
        sync.Sync(None, GeoFAClient("http://127.0.0.1:9"), sync.Target(FANOE_CVR, FANOE),
                  theme=area)
