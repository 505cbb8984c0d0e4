"""Municipal list imports as staged runs: good rows in, every bad row reported with its reason,
the quality gate, atomic publication, rollback, and a killed import that resumes."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from loaders import municipal_list, staging
from service.app import create_app
from tests.conftest import ADMIN_HEADERS, bearer, make_settings, query, snapshot

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "kommunal_liste"
LIST_CSV = FIXTURES / "koebenhavn.csv"
MAPPING = FIXTURES / "koebenhavn.mapping.json"
KBH = 101
KBH_CVR = 64942212
#: The theme whose lists these are (the shelters); its attributes, not a copy of them.
WRITABLE = [f.name for f in municipal_list.THEME.writable_fields]

#: Row number (header = row 1) -> words the reason must contain.
BAD_ROWS = {
    24: ("geometri", "coordinates are missing"),
    25: ("geometri", "axes look swapped"),
    26: ("beskyt_rum_kode", "'Bunker' is not a code"),
    27: ("row", "duplicate of row 3"),
    28: ("pladser", "must be an integer, not 'mange'"),
    29: ("geometri", "lies in municipality 147"),
}


def register_state(url: str) -> tuple:
    """The current register's values (not its version ids): what a rollback must restore."""
    cols = ", ".join(WRITABLE)
    return tuple(query(url, f"SELECT count(*), md5(string_agg(row(objekt_id, {cols}, "
                            "ST_AsText(geometri))::text, '|' ORDER BY objekt_id)) "
                            "FROM ly.t_6101_beskyt_rum")[0])


def _xlsx_from_csv(path: Path) -> Path:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Beskyttelsesrum"
    with LIST_CSV.open(encoding="utf-8") as fh:
        for record in csv.reader(fh, delimiter=";"):
            ws.append([int(v) if v.isdigit() else (v or None) for v in record])
    wb.save(path)
    return path


def test_spreadsheet_with_bad_rows_imports_the_good_rows_and_reports_every_bad_row(
        db_url, tmp_path):
    xlsx = _xlsx_from_csv(tmp_path / "kbh.xlsx")
    before = snapshot(db_url)
    with psycopg.connect(db_url) as conn:
        run_id = municipal_list.import_list(conn, xlsx, mapping=MAPPING, kommunekode=KBH,
                                            batch_size=7)
        run = staging.get_run(conn, run_id)
        assert snapshot(db_url) == before  # staging never touches the register
        assert run["status"] == "klar", run["kvalitet"]
        t = run["taellere"]
        assert (t["laest"], t["afviste"], t["opret"], t["ret"], t["uaendret"],
                t["sprunget_over"]) == (31, 6, 23, 1, 1, 1)
        rejected = staging.rejections(conn, run_id)
        assert {r["raekke"] for r in rejected} == set(BAD_ROWS)
        for r in rejected:
            field, words = BAD_ROWS[r["raekke"]]
            assert r["felt"].startswith(field) and words in r["aarsag"], r
            assert r["kilde"]["Nr"]  # the source values travel with the reason
        report = tmp_path / "afviste.csv"
        assert staging.write_rejections(conn, run_id, report) == 6
        lines = report.read_text(encoding="utf-8-sig").splitlines()
        assert lines[0] == "raekke;felt;aarsag;kilde" and len(lines) == 7
        assert "Bunker" in report.read_text(encoding="utf-8-sig")

        staging.publish(conn, run_id)
    rows = query(db_url, "SELECT noegle, beskyt_rum_kode, pladser, pladser_kilde_kode, cvr_kode, "
                         "beliggenhedskommune, trinfri_adgang_kode, vejnavn, husnr, postnr "
                         "FROM ly.t_6101_beskyt_rum WHERE noegle LIKE 'KBH-%%' ORDER BY noegle")
    assert [r[0] for r in rows] == [f"KBH-{i:03d}" for i in range(1, 24)]
    first = rows[0]
    assert first == ("KBH-001", 3, 50, 2, KBH_CVR, KBH, 1, "Nørrebrogade", "2", 2300)
    assert query(db_url, "SELECT pladser, pladser_kilde_kode FROM ly.t_6101_beskyt_rum "
                         "WHERE noegle = 'demo-000007'") == [(850, 2)]
    # written through the versioned view: a new version and an audit entry per change
    assert query(db_url, "SELECT count(*) FROM ly.hist_t_6101_beskyt_rum "
                         "WHERE noegle = 'demo-000007'") == [(2,)]
    assert query(db_url, "SELECT handling, count(*) FROM ly.revision WHERE klient = %s "
                         "GROUP BY 1 ORDER BY 1", [f"ly-import:kommunal_liste:{run_id}"]) == \
        [("opret", 23), ("ret", 1)]


def _rows_for_vector(swap_one: bool = False) -> list[dict]:
    """The fixture's first good rows as features (lon/lat in EPSG:4326)."""
    from pyproj import Transformer

    to_ll = Transformer.from_crs(25832, 4326, always_xy=True)
    out = []
    with LIST_CSV.open(encoding="utf-8") as fh:
        for i, rec in enumerate(csv.DictReader(fh, delimiter=";")):
            if i >= 6:
                break
            x, y = float(rec["Øst"].replace(",", ".")), float(rec["Nord"])
            lon, lat = to_ll.transform(x, y)
            out.append({"noegle": rec["Nr"], "navn": rec["Navn"], "pladser": int(rec["Pladser"]),
                        "beskyt_rum_kode": 3, "x": x, "y": y, "lon": lon, "lat": lat})
    if swap_one:
        out[-1]["lon"], out[-1]["lat"] = out[-1]["lat"], out[-1]["lon"]
    return out


def test_other_formats_crs_detection_and_swapped_axes(db_url, tmp_path):
    """GeoJSON (CRS84), GeoPackage and Shapefile in GeoFA's upload form (EPSG:25832, feltnavn10,
    temakode) and a CSV with latitude/longitude columns, each with one row's axes swapped.
    Staging only, so the four runs share one database."""
    for kind in ("geojson", "gpkg", "shp", "csv-latlon"):
        _check_format(db_url, tmp_path, kind)


def _check_format(db_url, tmp_path, kind):
    import geopandas as gpd
    from shapely.geometry import Point

    rows = _rows_for_vector(swap_one=True)
    mapping = None
    if kind == "csv-latlon":
        path = tmp_path / "liste.csv"
        with path.open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "navn", "pladser", "type", "breddegrad", "laengdegrad"])
            for r in rows:
                w.writerow([r["noegle"], r["navn"], r["pladser"], "Betondækningsgrav",
                            f"{r['lat']:.7f}", f"{r['lon']:.7f}"])
        mapping = {"id": "noegle", "navn": "navn", "pladser": "pladser",
                   "type": "beskyt_rum_kode", "breddegrad": "lat", "laengdegrad": "lon"}
    else:
        attrs = [{"noegle": r["noegle"], "navn": r["navn"], "pladser": r["pladser"],
                  "beskyt_rum": r["beskyt_rum_kode"], "temakode": 6101} for r in rows]
        if kind == "geojson":  # GeoJSON is CRS84; the file says nothing else
            geoms = [Point(r["lon"], r["lat"]) for r in rows]
            crs = "OGC:CRS84"
        else:  # the GeoFA file-upload forms, EPSG:25832 with the feltnavn10 names
            geoms = [Point(r["x"], r["y"]) for r in rows]
            geoms[-1] = Point(rows[-1]["y"], rows[-1]["x"])
            crs = "EPSG:25832"
        path = tmp_path / f"liste.{kind}"
        gpd.GeoDataFrame(attrs, geometry=geoms, crs=crs).to_file(path, engine="pyogrio")
    with psycopg.connect(db_url) as conn:
        run_id = municipal_list.import_list(conn, path, mapping=mapping, kommunekode=KBH,
                                            gate=staging.Gate(max_afvist_andel=0.5))
        run = staging.get_run(conn, run_id)
        rejected = staging.rejections(conn, run_id)
    assert run["taellere"]["opret"] == 5, (kind, run, rejected)
    assert [(r["raekke"], r["felt"]) for r in rejected] == [(7 if kind.startswith("csv")
                                                             else 6, "geometri")]
    assert "swapped" in rejected[0]["aarsag"]
    expected_crs = "25832" if kind in ("gpkg", "shp") else "CRS84"
    assert run["parametre"]["crs_brugt"].endswith(expected_crs)


def test_the_gate_blocks_a_run_that_would_empty_a_municipality(db_url, tmp_path):
    """A complete list (`fuld`) with two shelters would end all the others: refused."""
    small = tmp_path / "lille.csv"
    lines = LIST_CSV.read_text(encoding="utf-8").splitlines()
    small.write_text("\n".join(lines[:3]) + "\n", encoding="utf-8")
    before = snapshot(db_url)
    with psycopg.connect(db_url) as conn:
        run_id = municipal_list.import_list(conn, small, mapping=MAPPING, kommunekode=KBH,
                                            fuld=True, publish=True)
        run = staging.get_run(conn, run_id)
        assert run["status"] == "afvist"
        failed = [r for r in run["kvalitet"]["regler"] if not r["bestaaet"]]
        assert failed[0]["regel"] == "pladstab" and failed[0]["kommunekode"] == KBH
        assert "municipality 101 would go from" in failed[0]["forklaring"]
        with pytest.raises(staging.RunError, match="quality gate failed"):
            staging.publish(conn, run_id)
    assert snapshot(db_url) == before


def test_publish_is_refused_when_a_shelter_changed_after_staging(db_url):
    with psycopg.connect(db_url) as conn:
        run_id = municipal_list.import_list(conn, LIST_CSV, mapping=MAPPING, kommunekode=KBH)
    query(db_url, "UPDATE ly.t_6101_beskyt_rum SET note = 'ændret imens' "
                  "WHERE noegle = 'demo-000007'")
    before = snapshot(db_url)
    with psycopg.connect(db_url) as conn:
        with pytest.raises(staging.PublishConflict, match="changed since the run was staged"):
            staging.publish(conn, run_id)
        assert staging.get_run(conn, run_id)["status"] == "klar"
    assert snapshot(db_url) == before  # nothing of the run was written, not even the new ones


FULL_GATE = staging.Gate(max_afvist_andel=0.5, max_pladstab_andel=1.0)


def _full_run(url: str) -> tuple[int, dict]:
    """The Copenhagen list as a complete list (`fuld`), published: it creates, changes and
    ends shelters (every demo shelter in Copenhagen that the list does not have)."""
    with psycopg.connect(url) as conn:
        run_id = municipal_list.import_list(conn, LIST_CSV, mapping=MAPPING, kommunekode=KBH,
                                            fuld=True, gate=FULL_GATE, publish=True)
        t = staging.get_run(conn, run_id)["taellere"]
    assert t["opret"] > 0 and t["ret"] > 0 and t["afslut"] > 0
    return run_id, t


def test_a_rollback_undoes_new_changed_and_ended_shelters(db_url):
    """Rolled back: the new shelters ended, the changed restored, the ended re-created, each
    with a new version and an audit row of its kind; the register is as before."""
    before = register_state(db_url)
    run_id, t = _full_run(db_url)
    assert register_state(db_url) != before
    with psycopg.connect(db_url) as conn:
        counts = staging.rollback(conn, run_id)
    assert counts["tilbagerullet"] == t["opret"] + t["ret"] + t["afslut"]
    assert register_state(db_url) == before
    audited = query(db_url, "SELECT k.handling, r.handling, count(*) FROM ly.kandidat k "
                    "JOIN ly.revision r ON r.objekt_id = k.objekt_id AND r.klient = %s "
                    "WHERE k.koersel_id = %s GROUP BY 1, 2 ORDER BY 1",
                    [f"ly-tilbagerulning:kommunal_liste:{run_id}", run_id])
    assert audited == [("afslut", "opret", t["afslut"]), ("opret", "slet", t["opret"]),
                       ("ret", "ret", t["ret"])]
    # The restoring versions are the candidates' `tilbage_versions_id`, and current.
    assert query(db_url, "SELECT k.handling, count(b.versions_id), count(*) FROM ly.kandidat k "
                 "LEFT JOIN ly.beskyttelsesrum b ON b.versions_id = k.tilbage_versions_id "
                 "AND b.systid_til IS NULL WHERE k.koersel_id = %s "
                 "AND k.handling <> 'uaendret' GROUP BY 1 ORDER BY 1", [run_id]) == \
        [("afslut", t["afslut"], t["afslut"]), ("opret", 0, t["opret"]),
         ("ret", t["ret"], t["ret"])]


def test_a_rollback_is_refused_when_a_shelter_changed_since(db_url):
    """A shelter the run created was edited, one it ended was made again: the rollback is
    refused naming both, and writes nothing."""
    run_id, _ = _full_run(db_url)
    (created, c_row), = query(db_url, "SELECT objekt_id, raekke FROM ly.kandidat WHERE "
                              "koersel_id = %s AND handling = 'opret' ORDER BY raekke LIMIT 1",
                              [run_id])
    (ended, e_row, last), = query(
        db_url, "SELECT objekt_id, raekke, foer_versions_id FROM ly.kandidat WHERE "
                "koersel_id = %s AND handling = 'afslut' ORDER BY raekke LIMIT 1", [run_id])
    query(db_url, "UPDATE ly.t_6101_beskyt_rum SET note = 'ændret siden' WHERE objekt_id = %s",
          [created])
    cols = ", ".join(WRITABLE)
    query(db_url, f"INSERT INTO ly.t_6101_beskyt_rum (objekt_id, {cols}, geometri) SELECT "
                  f"objekt_id, {cols}, geometri FROM ly.beskyttelsesrum WHERE versions_id = %s",
          [last])
    before = snapshot(db_url)
    with psycopg.connect(db_url) as conn:
        with pytest.raises(staging.PublishConflict) as refused:
            staging.rollback(conn, run_id)
        assert staging.get_run(conn, run_id)["status"] == "publiceret"
    reasons = {(c["raekke"], c["objekt_id"]): c["aarsag"] for c in refused.value.conflicts}
    assert set(reasons) == {(c_row, str(created)), (e_row, str(ended))}
    assert reasons[(c_row, str(created))].startswith("has changed since the run wrote version")
    assert reasons[(e_row, str(ended))] == "was re-created since the run ended it"
    assert snapshot(db_url) == before


def test_mapping_errors_name_the_column(db_url, tmp_path):
    with psycopg.connect(db_url) as conn:
        with pytest.raises(municipal_list.MappingError, match="'Kapacitet'.*does not have"):
            municipal_list.import_list(conn, LIST_CSV, mapping={"Kapacitet": "pladser"},
                                       kommunekode=KBH)
        with pytest.raises(municipal_list.MappingError, match="'Nr' maps to 'nøgle'"):
            municipal_list.import_list(conn, LIST_CSV, mapping={"Nr": "nøgle"}, kommunekode=KBH)
    assert query(db_url, "SELECT count(*) FROM ly.koersel") == [(0,)]


def _cli(db_url: str, *args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cli.main", "--database-url", db_url, *args],
                            cwd=ROOT, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_killed_import_leaves_the_register_untouched_then_resumes_publishes_and_rolls_back(
        db_url, tmp_path):
    before, state_before = snapshot(db_url), register_state(db_url)
    proc = _cli(db_url, "import-list", str(LIST_CSV), "--mapping", str(MAPPING), "--kommune",
                str(KBH), "--batch-size", "4", "--publish", "--rapport",
                str(tmp_path / "afbrudt.csv"), env={staging.SLEEP_ENV: "0.4"})
    deadline = time.monotonic() + 30
    done = 0
    while time.monotonic() < deadline:
        rows = query(db_url, "SELECT naeste_raekke FROM ly.koersel")
        done = rows[0][0] if rows else 0
        if done >= 8:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    (run_id, status, done) = query(db_url, "SELECT id, status, naeste_raekke FROM ly.koersel")[0]
    assert status == "indlaeser" and 8 <= done < 31
    assert snapshot(db_url) == before  # killed midway: the register is exactly as before
    staged = query(db_url, "SELECT count(*) FROM ly.kandidat WHERE koersel_id = %s", [run_id])
    assert 0 < staged[0][0] <= done

    # resume: continues after the last committed batch, publishes in one transaction
    report = tmp_path / "afviste.csv"
    resumed = _cli(db_url, "runs", "resume", str(run_id), "--publish", "--batch-size", "4",
                   "--rapport", str(report))
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    assert f"run {run_id} (kommunal_liste): publiceret" in out
    assert f"6 rejected row(s), every reason in {report}" in out
    assert len(report.read_text(encoding="utf-8-sig").splitlines()) == 7
    t = query(db_url, "SELECT taellere FROM ly.koersel WHERE id = %s", [run_id])[0][0]
    assert (t["laest"], t["afviste"], t["opret"], t["ret"], t["skrevet"]) == (31, 6, 23, 1, 24)
    assert query(db_url, "SELECT count(*) FROM ly.t_6101_beskyt_rum WHERE noegle LIKE 'KBH-%%'"
                 ) == [(23,)]
    published = register_state(db_url)
    assert published != state_before

    # rollback: new versions restore the previous publication; history stays
    rolled = _cli(db_url, "runs", "rollback", str(run_id))
    out, err = rolled.communicate(timeout=60)
    assert rolled.returncode == 0, err
    assert register_state(db_url) == state_before
    assert query(db_url, "SELECT count(*) FROM ly.hist_t_6101_beskyt_rum "
                         "WHERE noegle = 'demo-000007'") == [(3,)]
    assert query(db_url, "SELECT count(*) FROM ly.hist_t_6101_beskyt_rum WHERE noegle "
                         "LIKE 'KBH-%%' AND systid_til IS NOT NULL") == [(23,)]
    assert query(db_url, "SELECT status FROM ly.koersel WHERE id = %s", [run_id]) == \
        [("tilbagerullet",)]
    again = _cli(db_url, "runs", "rollback", str(run_id))
    _, err = again.communicate(timeout=60)
    assert again.returncode == 2 and "only a published run" in err


def test_the_run_log_is_for_administrators(db_url):
    with psycopg.connect(db_url) as conn:
        run_id = municipal_list.import_list(conn, LIST_CSV, mapping=MAPPING, kommunekode=KBH)
    with TestClient(create_app(make_settings(db_url))) as c:
        r = c.get("/koersler", headers=ADMIN_HEADERS)
        assert r.status_code == 200
        assert [k["id"] for k in r.json()["koersler"]] == [run_id]
        one = c.get(f"/koersler/{run_id}", headers=ADMIN_HEADERS).json()
        assert one["status"] == "klar" and len(one["afviste"]) == 6
        assert {a["raekke"] for a in one["afviste"]} == set(BAD_ROWS)
        assert sum(1 for k in one["kandidater"] if k["handling"] == "opret") == 23
        kbh_admin = bearer(["municipal_admin"], cvr=KBH_CVR, kommuner=[KBH])
        assert [k["id"] for k in c.get("/koersler", headers=kbh_admin).json()["koersler"]] == \
            [run_id]
        other_admin = bearer(["municipal_admin"], cvr=29189420, kommuner=[851])
        assert c.get("/koersler", headers=other_admin).json()["koersler"] == []
        assert c.get(f"/koersler/{run_id}", headers=other_admin).status_code == 404
        editor = bearer(["municipal_editor"], cvr=KBH_CVR, kommuner=[KBH])
        assert c.get("/koersler", headers=editor).status_code == 403
        assert c.get("/koersler").status_code == 401
        assert c.get("/koersler?status=nonsense", headers=ADMIN_HEADERS).status_code == 400


def test_killing_the_publication_midway_writes_nothing(db_url):
    """Publication is one transaction: killed while writing, the register is as before."""
    with psycopg.connect(db_url) as conn:
        run_id = municipal_list.import_list(conn, LIST_CSV, mapping=MAPPING, kommunekode=KBH)
    before = snapshot(db_url)
    proc = _cli(db_url, "runs", "publish", str(run_id), env={staging.PUBLISH_SLEEP_ENV: "0.2"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until the transaction has written versions
        busy = query(db_url, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                             "current_database() AND state = 'idle in transaction'")[0][0]
        if busy:
            time.sleep(0.6)
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert snapshot(db_url) == before
    assert query(db_url, "SELECT status FROM ly.koersel WHERE id = %s", [run_id]) == [("klar",)]
    with psycopg.connect(db_url) as conn:
        staging.publish(conn, run_id)
    assert query(db_url, "SELECT count(*) FROM ly.t_6101_beskyt_rum WHERE noegle LIKE 'KBH-%%'"
                 ) == [(23,)]


def test_rows_match_existing_shelters_by_address_and_bbr_building(db_url, tmp_path):
    (vej, husnr, postnr, kind, pladser), = query(
        db_url, "SELECT vejnavn, husnr, postnr, beskyt_rum_kode, pladser FROM "
                "ly.t_6101_beskyt_rum WHERE beliggenhedskommune = %s AND beskyt_rum_kode = 3 "
                "AND (vejnavn, husnr, postnr) IN (SELECT vejnavn, husnr, postnr FROM "
                "ly.t_6101_beskyt_rum GROUP BY 1, 2, 3 HAVING count(*) = 1) "
                "ORDER BY objekt_id LIMIT 1", [KBH])
    (bbr_id, bbr_pladser), = query(
        db_url, "SELECT bbr_bygning_id, pladser FROM ly.t_6101_beskyt_rum WHERE "
                "beliggenhedskommune = %s AND bbr_bygning_id IS NOT NULL ORDER BY objekt_id "
                "LIMIT 1", [KBH])
    path = tmp_path / "match.csv"
    path.write_text("adresse;type;pladser;bbr\n"
                    f"{vej} {husnr}, {postnr} København;3;{pladser + 5};\n"
                    f";;{bbr_pladser + 7};{bbr_id}\n", encoding="utf-8")
    mapping = {"adresse": "adresse", "type": "beskyt_rum_kode", "pladser": "pladser",
               "bbr": "bbr_bygning_id"}
    with psycopg.connect(db_url) as conn:
        run_id = municipal_list.import_list(conn, path, mapping=mapping, kommunekode=KBH)
        found = [(c["match"], c["handling"], c["aendringer"]["pladser"])
                 for c in staging.candidates(conn, run_id)]
    assert found == [("adresse", "ret", [pladser, pladser + 5]),
                     ("bbr", "ret", [bbr_pladser, bbr_pladser + 7])]


# --- the fast path for large vector files (loaders.bulk_list) ------------------------------

#: Rows added to the Copenhagen list for the fast path: each must be rejected for its reason.
EXTRA_BAD = [
    {"Nr": "KBH-906", "Navn": "x" * 300, "Type": "BDG", "Pladser": "50", "Trinfri": "Nej",
     "xy": (724000.0, 6172000.0)},  # name too long
    {"Nr": "KBH-907", "Navn": "Undertype", "Type": "1", "Pladser": "50", "Trinfri": "Nej",
     "Undertype": 1, "xy": (724100.0, 6172100.0)},  # sub-type on a public shelter
    {"Nr": "KBH-908", "Navn": "BBR", "Type": "BDG", "Pladser": "50", "Trinfri": "Nej",
     "BBR": "ikke-en-uuid", "xy": (724200.0, 6172200.0)},  # not a UUID
    {"Nr": "KBH-909", "Navn": "Nul pladser", "Type": "BDG", "Pladser": "0", "Trinfri": "Nej",
     "xy": (724300.0, 6172300.0)},  # places out of range
    {"Nr": "  KBH-910  ", "Navn": "  Luft omkring  ", "Type": "BDG", "Pladser": "75",
     "Trinfri": "Ja", "BBR": "0F8FAD5B-D9CB-469F-A165-70867728950E",
     "xy": (724400.0, 6172400.0)},  # good: padded text, upper-case UUID
    {"Nr": "KBH-911", "Navn": "Skagerrak", "Type": "BDG", "Pladser": "50", "Trinfri": "Nej",
     "xy": (450000.0, 6400000.0)},  # at sea, far from any municipality
]


def _copenhagen_geopackage(tmp_path: Path) -> tuple[Path, dict]:
    """The Copenhagen list as a GeoPackage (points from its coordinates, the address split
    into its parts) with a few more rows, and its mapping."""
    import geopandas as gpd
    from shapely.geometry import Point

    records = []
    with LIST_CSV.open(encoding="utf-8") as fh:
        for r in csv.DictReader(fh, delimiter=";"):
            east, north = (municipal_list._number(r["Øst"]), municipal_list._number(r["Nord"]))
            parsed = municipal_list.parse_address(r["Adresse"]) or {}
            records.append({"Nr": r["Nr"] or None, "Navn": r["Navn"] or None,
                            "Type": r["Type"] or None, "Pladser": r["Pladser"] or None,
                            "Trinfri": r["Trinfri"] or None, "Vej": parsed.get("vejnavn"),
                            "Husnr": parsed.get("husnr"), "Postnr": parsed.get("postnr"),
                            "By": parsed.get("postnr_by"), "Undertype": None, "BBR": None,
                            "geometry": Point(east, north) if east and north else None})
    for extra in EXTRA_BAD:
        e = dict(extra)
        records.append({"Vej": None, "Husnr": None, "Postnr": None, "By": None,
                        "Undertype": None, "BBR": None, **e, "geometry": Point(*e.pop("xy"))})
        records[-1].pop("xy", None)
    frame = gpd.GeoDataFrame(records, geometry="geometry", crs="EPSG:25832")
    frame["Postnr"] = frame["Postnr"].astype("Int64")
    frame["Undertype"] = frame["Undertype"].astype("Int64")
    path = tmp_path / "koebenhavn.gpkg"
    frame.to_file(path, layer="beskyttelsesrum", driver="GPKG")
    mapping = {"kolonner": {"Nr": "noegle", "Navn": "navn", "Type": "beskyt_rum_kode",
                            "Pladser": "pladser", "Trinfri": "trinfri_adgang_kode",
                            "Vej": "vejnavn", "Husnr": "husnr", "Postnr": "postnr",
                            "By": "postnr_by", "Undertype": "undertype_kode",
                            "BBR": "bbr_bygning_id"},
               "vaerdier": {"beskyt_rum_kode": {"BDG": 3, "Offentligt beskyttelsesrum": 1}},
               "standard": {"off_kode": 3, "oprindkode": 0}}
    return path, mapping


def _staged(url: str, run_id: int) -> tuple:
    """A run's counters, candidates (new shelters' random ids left out) and rejections."""
    return (
        query(url, "SELECT taellere - 'skrevet' FROM ly.koersel WHERE id = %s", [run_id]),
        query(url, "SELECT raekke, handling, match, dublet_noegle, foer_versions_id, "
                   "CASE WHEN handling = 'opret' THEN NULL ELSE objekt_id END, vaerdier, "
                   "aendringer, ST_AsText(geometri), bemaerkning FROM ly.kandidat "
                   "WHERE koersel_id = %s ORDER BY raekke", [run_id]),
        query(url, "SELECT raekke, felt, aarsag FROM ly.afvist WHERE koersel_id = %s "
                   "ORDER BY raekke, id", [run_id]))


def _both_paths(db_url: str, path, mapping: dict, monkeypatch) -> dict[str, int]:
    """The run ids of one import of `path` by the fast path and one by the row path."""
    from loaders import bulk_list

    runs = {}
    with psycopg.connect(db_url) as conn:
        for way, least in (("fast", "1"), ("rows", str(10 ** 9))):
            monkeypatch.setenv(bulk_list.MIN_ROWS_ENV, least)
            runs[way] = municipal_list.import_list(conn, path, mapping=mapping,
                                                   kommunekode=KBH, batch_size=9)
    return runs


def test_the_fast_path_stages_exactly_what_the_row_path_stages(db_url, tmp_path, monkeypatch):
    path, mapping = _copenhagen_geopackage(tmp_path)
    runs = _both_paths(db_url, path, mapping, monkeypatch)
    fast, rows = _staged(db_url, runs["fast"]), _staged(db_url, runs["rows"])
    assert fast == rows
    t = fast[0][0][0]
    assert (t["laest"], t["afviste"], t["opret"], t["ret"], t["uaendret"]) == (37, 11, 24, 1, 1)
    rejected = {r: (f, a) for r, f, a in fast[2]}
    assert "is 300 characters long" in rejected[33][1]
    assert "only a betondækningsgrav" in rejected[34][1]
    assert "must be a UUID" in rejected[35][1] and "between 1 and 9999" in rejected[36][1]
    assert "lies at sea" in rejected[38][1]
    new = [c for c in fast[1] if c[0] == 37][0]
    assert (new[6]["noegle"], new[6]["navn"], new[6]["bbr_bygning_id"]) == \
        ("KBH-910", "Luft omkring", "0f8fad5b-d9cb-469f-a165-70867728950e")
    # The fast run staged most rows without the row path (which keeps each source row).
    kept = dict(query(db_url, "SELECT koersel_id, count(*) FILTER (WHERE kilde_vaerdier IS "
                              "NULL) FROM ly.kandidat GROUP BY 1"))
    assert kept[runs["rows"]] == 0 and kept[runs["fast"]] >= 20


def test_a_wkt_column_of_a_vector_file_stages_the_same_on_both_paths(db_url, tmp_path,
                                                                    monkeypatch):
    """A large vector file with a WKT column (mapped) goes the row path whatever its size
    (`bulk_list.plan`), so the fast path's threshold changes nothing: the WKT's point is
    taken where it is given (here 10 m east of the file's geometry), the file's own geometry
    where it is blank."""
    import geopandas as gpd
    import shapely

    path, mapping = _copenhagen_geopackage(tmp_path)
    frame = gpd.read_file(path)
    frame["WKT"] = [None if g is None or i % 3 == 0 else f"POINT ({g.x + 10} {g.y})"
                    for i, g in enumerate(frame.geometry)]
    frame.to_file(path, layer="beskyttelsesrum", driver="GPKG")
    mapping["kolonner"]["WKT"] = "wkt"
    runs = _both_paths(db_url, path, mapping, monkeypatch)
    fast, rows = _staged(db_url, runs["fast"]), _staged(db_url, runs["rows"])
    assert fast == rows
    points = {r[0]: r[8] for r in rows[1] if r[1] == "opret"}
    assert points, rows
    for i, (g, wkt) in enumerate(zip(frame.geometry, frame["WKT"]), start=1):
        if i in points and g is not None:
            x = g.x + 10 if isinstance(wkt, str) else g.x
            assert shapely.from_wkt(points[i]).equals_exact(shapely.Point(x, g.y), 0.001), i


def test_a_killed_fast_import_resumes_and_publishes_the_same(db_url, tmp_path):
    from loaders import bulk_list

    path, mapping = _copenhagen_geopackage(tmp_path)
    mapping_file = tmp_path / "mapping.json"
    mapping_file.write_text(json.dumps(mapping), encoding="utf-8")
    before = snapshot(db_url)
    env = {bulk_list.MIN_ROWS_ENV: "1", staging.SLEEP_ENV: "0.4"}
    proc = _cli(db_url, "import-list", str(path), "--mapping", str(mapping_file), "--kommune",
                str(KBH), "--batch-size", "4", "--publish", "--max-afvist", "0.4", env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = query(db_url, "SELECT naeste_raekke FROM ly.koersel")
        if rows and rows[0][0] >= 8:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    (run_id, status, done), = query(db_url, "SELECT id, status, naeste_raekke FROM ly.koersel")
    assert status == "indlaeser" and 8 <= done < 38
    assert snapshot(db_url) == before
    assert query(db_url, "SELECT max(raekke) <= %s FROM ly.kandidat", [done + 1]) == [(True,)]
    resumed = _cli(db_url, "runs", "resume", str(run_id), "--publish", "--batch-size", "4",
                   env={bulk_list.MIN_ROWS_ENV: "1"})
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, (out, err[-2000:])
    t = query(db_url, "SELECT taellere FROM ly.koersel WHERE id = %s", [run_id])[0][0]
    assert (t["laest"], t["afviste"], t["opret"], t["ret"], t["skrevet"]) == (37, 11, 24, 1, 25)
    assert query(db_url, "SELECT count(*) FROM ly.t_6101_beskyt_rum WHERE noegle LIKE 'KBH-%%'"
                 ) == [(24,)]
    assert query(db_url, "SELECT navn, pladser_kilde_kode, cvr_kode FROM ly.t_6101_beskyt_rum "
                         "WHERE noegle = 'KBH-910'") == [("Luft omkring", 2, KBH_CVR)]


def test_published_shelters_are_what_the_versioned_view_makes(db_url):
    """Publication writes new shelters set-based into the base table: each must equal the
    shelter the view's write trigger makes from the same values, audit row included."""
    with psycopg.connect(db_url) as conn:
        run_id = municipal_list.import_list(conn, LIST_CSV, mapping=MAPPING, kommunekode=KBH,
                                            publish=True)
    cols = ", ".join(WRITABLE)
    compared = (f"{cols}, beliggenhedskommune, bruger_id, systid_til, seneste_eftersyn_dato, "
                "naeste_eftersyn_dato, seneste_eftersyn_id, ST_AsEWKT(geometri)")
    created = query(db_url, "SELECT objekt_id FROM ly.kandidat WHERE koersel_id = %s AND "
                            "handling = 'opret' ORDER BY raekke", [run_id])
    assert len(created) == 23
    with psycopg.connect(db_url) as conn:
        conn.execute("SELECT set_config('ly.subjekt', 'ly-import', true), "
                     f"set_config('ly.klient', 'ly-import:kommunal_liste:{run_id}', true)")
        copies = []
        for (oid,) in created:
            (new_id,) = conn.execute(
                f"INSERT INTO ly.t_6101_beskyt_rum ({cols}, geometri) SELECT {cols}, geometri "
                "FROM ly.beskyttelsesrum WHERE objekt_id = %s RETURNING objekt_id",
                [oid]).fetchone()
            copies.append((oid, new_id))
        conn.commit()
    audit = ("SELECT r.subjekt, r.cvr_kode, r.roller, r.klient, r.handling, r.tabel, "
             "r.foer_versions_id, "
             "efter_versions_id = b.versions_id FROM ly.revision r JOIN ly.beskyttelsesrum b "
             "ON b.objekt_id = r.objekt_id WHERE r.objekt_id = %s")
    for oid, new_id in copies:
        published = query(db_url, f"SELECT {compared} FROM ly.beskyttelsesrum "
                                  "WHERE objekt_id = %s", [oid])
        through_view = query(db_url, f"SELECT {compared} FROM ly.beskyttelsesrum "
                                     "WHERE objekt_id = %s", [new_id])
        assert published == through_view and published[0][-1].startswith("SRID=25832;POINT")
        assert query(db_url, audit, [oid]) == query(db_url, audit, [new_id])
    (kommuner, cvr), = query(db_url, "SELECT array_agg(DISTINCT beliggenhedskommune), "
                                     "array_agg(DISTINCT cvr_kode) FROM ly.beskyttelsesrum b "
                                     "JOIN ly.kandidat k ON k.objekt_id = b.objekt_id "
                                     "WHERE k.koersel_id = %s", [run_id])
    assert kommuner == [KBH] and cvr == [KBH_CVR]


def test_a_point_at_sea_is_a_rejected_row_not_a_failed_import(db_url, tmp_path):
    path = tmp_path / "hav.csv"
    path.write_text("Nr;Type;Pladser;x;y\nHAV-1;3;50;725344;6170190\n"
                    "HAV-2;3;50;450000;6400000\nHAV-3;3;50;738000;6174000\n", encoding="utf-8")
    mapping = {"Nr": "noegle", "Type": "beskyt_rum_kode", "Pladser": "pladser", "x": "x",
               "y": "y"}
    with psycopg.connect(db_url) as conn:
        run_id = municipal_list.import_list(conn, path, mapping=mapping, publish=True,
                                            gate=staging.Gate(max_afvist_andel=0.5))
        rejected = staging.rejections(conn, run_id)
    assert [(r["raekke"], r["felt"]) for r in rejected] == [(3, "geometri")]
    assert "(450000.0, 6400000.0) lies at sea" in rejected[0]["aarsag"]
    # HAV-3 lies just off the generalised coast: within 5 km, it gets the nearest municipality
    assert query(db_url, "SELECT noegle, beliggenhedskommune IS NOT NULL FROM "
                         "ly.t_6101_beskyt_rum WHERE noegle LIKE 'HAV-%%' ORDER BY 1") == \
        [("HAV-1", True), ("HAV-3", True)]


# --- other themes ---------------------------------------------------------------------------

def _value(f, i: int):
    """A valid cell for a required attribute, from its descriptor (row i of a list)."""
    from datamodel.codelists import load_codelists

    if f.codelist:
        return next(c.kode for c in load_codelists()[f.codelist].values if c.aktiv)
    if f.type in ("integer", "number"):
        return int(f.minimum or 0) + 1 + i
    if f.type == "date":
        return "2026-06-01"
    return f"{f.title} {i + 1}"[:f.max_length or 254]


#: Three points in Copenhagen (EPSG:25832), from the shelter list.
KBH_POINTS = ((722791.0, 6169261.0), (725344.0, 6170190.0), (723558.0, 6170240.0))


def test_a_list_of_another_point_theme_is_staged_published_and_rolled_back_the_same_way(
        db_url, tmp_path):
    """The import is generic over the theme: a list of another point theme's objects (its
    own attribute names as columns) is staged, gated on the theme's figure, published into
    that theme's table through its view and rolled back, and the shelters are untouched. An
    area theme is refused before anything is staged (the candidates hold points)."""
    from datamodel import themes

    others = [t for t in themes.all_themes() if not t.is_area and t is not municipal_list.THEME]
    assert others, "no other point theme to import"
    shelters = snapshot(db_url)
    for theme in others:
        view = theme.current_view
        required = [f for f in theme.writable_fields if f.required and f.default is None]
        fig = theme.figures[0].field if theme.figures else None
        columns = list(dict.fromkeys([f.name for f in required] + ([fig] if fig else [])))
        rows = [{f: _value(theme.fields_by_name[f], i) for f in columns}
                for i in range(len(KBH_POINTS))]
        for i, row in enumerate(rows):
            row["noegle"] = f"{theme.temakode}-{i + 1}"
        path = tmp_path / f"{theme.collection_id}.csv"
        with path.open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, delimiter=";")
            w.writerow([*rows[0], "x", "y"])
            for row, (x, y) in zip(rows, KBH_POINTS):
                w.writerow([*row.values(), x, y])
        (before,) = query(db_url, f"SELECT count(*) FROM ly.{view}")[0]
        figure_before = query(db_url, f"SELECT coalesce(sum({fig}), 0) FROM ly.{view} WHERE "
                                      "beliggenhedskommune = %s", [KBH])[0][0] if fig else None
        with psycopg.connect(db_url) as conn:
            run_id = municipal_list.import_list(conn, path, kommunekode=KBH, publish=True,
                                                theme=theme)
            run = staging.get_run(conn, run_id)
            assert run["status"] == "publiceret", (theme, run, staging.rejections(conn, run_id))
            assert run["parametre"]["temakode"] == theme.temakode
            assert run["taellere"]["opret"] == len(rows)
            if fig:
                rule = next(r for r in run["kvalitet"]["regler"] if r["regel"] == "pladstab")
                assert (rule["kommunekode"], rule["foer"], rule["efter"]) == (
                    KBH, figure_before, figure_before + sum(r[fig] for r in rows))
            got = query(db_url, f"SELECT noegle, beliggenhedskommune, cvr_kode, "
                                f"{', '.join(columns)} FROM ly.{view} WHERE noegle LIKE %s "
                                "ORDER BY noegle", [f"{theme.temakode}-%"])
            assert [(g[0], g[1], g[2]) for g in got] == [
                (r["noegle"], KBH, KBH_CVR) for r in rows]
            for g, r in zip(got, rows):
                assert [str(v) for v in g[3:]] == [str(r[c]) for c in columns], theme
            assert query(db_url, "SELECT DISTINCT tabel FROM ly.revision WHERE klient = %s",
                         [f"ly-import:kommunal_liste:{run_id}"]) == [(theme.table,)]
            staging.rollback(conn, run_id)
        assert query(db_url, f"SELECT count(*) FROM ly.{view}") == [(before,)]
        # history is kept: each new object's one version, closed by the rollback
        assert query(db_url, f"SELECT count(*), count(systid_til) FROM ly.{theme.history_view} "
                             "WHERE noegle LIKE %s", [f"{theme.temakode}-%"]) == [
            (len(rows), len(rows))]
    assert snapshot(db_url) == shelters
    area = next(t for t in themes.all_themes() if t.is_area)
    n = query(db_url, "SELECT count(*) FROM ly.koersel")
    with psycopg.connect(db_url) as conn, pytest.raises(staging.RunError,
                                                         match="point themes only"):
        municipal_list.import_list(conn, path, kommunekode=KBH, theme=area)
    assert query(db_url, "SELECT count(*) FROM ly.koersel") == n
