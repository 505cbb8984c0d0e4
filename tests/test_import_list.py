"""Municipal list imports as staged runs: good rows in, every bad row reported with its reason,
the quality gate, atomic publication, rollback, and a killed import that resumes."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from datamodel.fields import WRITABLE_FIELDS
from loaders import municipal_list, staging
from service.app import create_app
from tests.conftest import ADMIN_HEADERS, bearer, make_settings, query, snapshot

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "kommunal_liste"
LIST_CSV = FIXTURES / "koebenhavn.csv"
MAPPING = FIXTURES / "koebenhavn.mapping.json"
KBH = 101
KBH_CVR = 64942212

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
    cols = ", ".join(f.name for f in WRITABLE_FIELDS)
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
