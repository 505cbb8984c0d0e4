"""The first load of an empty register (loaders/initial_load.py): the same register, run,
rejections and audit as a staged run and its publication, atomic under SIGKILL, and the
table's indexes and keys back as they were."""

from __future__ import annotations

import json
import signal
import time

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import pytest
import shapely

from loaders import bulk_list, initial_load, municipal_list, staging
from tests.conftest import fresh_database, query, snapshot
from tests.test_import_list import KBH, KBH_CVR, _cli, _copenhagen_geopackage

#: The shelter columns a first load and a staged publication must agree on (all but the
#: version and object ids and the times).
SAME = ("bruger_id, beliggenhedskommune, cvr_kode, oprindkode, statuskode, off_kode, noegle, "
        "note, beskyt_rum_kode, klargjort_kode, pladser, link, adr_id, vejkode, vejnavn, husnr, "
        "postnr, postnr_by, navn, bbr_bygning_id, undertype_kode, areal_m2, "
        "beskyt_rum_anvendelse_kode, trinfri_adgang_kode, funktionsstatus_kode, "
        "pladser_kilde_kode, pladser_verificeret, egnethed_kode, systid_til, "
        "ST_AsEWKT(geometri)")
GATE = staging.Gate(max_afvist_andel=0.5)


@pytest.fixture
def big_list(tmp_path, monkeypatch):
    """The Copenhagen list as a GeoPackage and three more rows: a duplicate of row 1 by its
    key, and a row without a key twice (the second a duplicate by address and type), taken
    by the column-wise path."""
    path, mapping = _copenhagen_geopackage(tmp_path)
    frame = gpd.read_file(path)
    first = frame.iloc[[0]].copy()
    first["Navn"] = "Samme nøgle"
    by_address = frame[frame["Vej"].notna()].iloc[[1]].copy()
    by_address["Nr"] = None
    frame = pd.concat([frame, first, by_address, by_address], ignore_index=True)
    frame.to_file(path, layer="beskyttelsesrum", driver="GPKG")
    monkeypatch.setenv(bulk_list.MIN_ROWS_ENV, "1")
    return path, mapping


def _schema(url: str) -> tuple:
    """The register table's indexes and constraints, as PostgreSQL would make them again."""
    return (query(url, "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM "
                       "pg_index WHERE indrelid = 'ly.beskyttelsesrum'::regclass ORDER BY 1"),
            query(url, "SELECT conname, pg_get_constraintdef(oid), convalidated FROM "
                       "pg_constraint WHERE conrelid = 'ly.beskyttelsesrum'::regclass "
                       "ORDER BY 1"))


def _published(url: str, run_id: int) -> tuple:
    return (
        query(url, "SELECT status, taellere, kvalitet FROM ly.koersel WHERE id = %s", [run_id]),
        query(url, "SELECT raekke, felt, aarsag, kilde_vaerdier FROM ly.afvist "
                   "WHERE koersel_id = %s ORDER BY raekke, id", [run_id]),
        query(url, f"SELECT {SAME} FROM ly.beskyttelsesrum ORDER BY noegle, navn, "
                   "ST_AsEWKT(geometri)"),
        query(url, "SELECT k.raekke, k.handling, k.match FROM ly.kandidat k "
                   "JOIN ly.beskyttelsesrum b ON b.versions_id = k.efter_versions_id "
                   "AND b.objekt_id = k.objekt_id WHERE k.koersel_id = %s ORDER BY 1", [run_id]),
        query(url, "SELECT r.subjekt, r.cvr_kode, r.roller, r.klient, r.handling, r.tabel, "
                   "count(*) FROM ly.revision r JOIN ly.beskyttelsesrum b ON "
                   "b.versions_id = r.efter_versions_id AND b.objekt_id = r.objekt_id "
                   "GROUP BY 1, 2, 3, 4, 5, 6"))


@pytest.fixture
def other_empty_db_url(empty_template_db):
    yield from fresh_database(empty_template_db, "ly_t0_")


def test_a_first_load_makes_the_register_a_staged_run_makes(big_list, empty_db_url,
                                                            other_empty_db_url, monkeypatch):
    path, mapping = big_list
    staged_url = other_empty_db_url
    schema = _schema(empty_db_url)
    runs = {}
    # Chunks of 7 rows: the load prepares each chunk while the one before is written, and
    # the duplicates (rows 39 of 1, 41 of 40) are found across chunks and within one.
    monkeypatch.setattr(initial_load, "CHUNK", 7)
    for url, enabled in ((staged_url, "0"), (empty_db_url, "1")):
        monkeypatch.setenv(initial_load.ENABLED_ENV, enabled)
        with psycopg.connect(url) as conn:
            runs[url] = municipal_list.import_list(conn, path, mapping=mapping,
                                                   kommunekode=KBH, gate=GATE, publish=True)
    first, staged = _published(empty_db_url, runs[empty_db_url]), \
        _published(staged_url, runs[staged_url])
    assert first == staged
    status, t, report = first[0][0]
    assert status == "publiceret" and report["bestaaet"]
    assert (t["laest"], t["opret"], t["afviste"], t["dubletter"], t["skrevet"]) == \
        (40, 25, 15, 3, 25)
    reasons = {r: a for r, _, a, _ in first[1]}
    assert reasons[39] == "duplicate of row 1 (same shelter or key noegle:KBH-001)"
    assert reasons[41].startswith("duplicate of row 40 (same shelter or key adresse:")
    assert "lies at sea" in reasons[38]
    assert len(first[2]) == 25 and len(first[3]) == 25 and first[4][0][-1] == 25
    assert query(empty_db_url, "SELECT navn, pladser_kilde_kode, cvr_kode FROM "
                 "ly.t_6101_beskyt_rum WHERE noegle = 'KBH-910'") == \
        [("Luft omkring", 2, KBH_CVR)]
    # The first load wrote the shelters itself (its candidates keep no values) and left the
    # table's indexes and keys as they were, checked.
    assert query(empty_db_url, "SELECT count(*) FILTER (WHERE vaerdier IS NULL), count(*) "
                 "FROM ly.kandidat") == [(25, 25)]
    assert query(staged_url, "SELECT count(*) FILTER (WHERE vaerdier IS NULL) "
                 "FROM ly.kandidat") == [(0,)]
    assert _schema(empty_db_url) == schema
    # ... and it can be rolled back like any published run.
    with psycopg.connect(empty_db_url) as conn:
        staging.rollback(conn, runs[empty_db_url])
    assert query(empty_db_url, "SELECT count(*) FROM ly.t_6101_beskyt_rum") == [(0,)]
    assert query(empty_db_url, "SELECT count(*) FROM ly.beskyttelsesrum "
                 "WHERE systid_til IS NOT NULL") == [(25,)]


def test_a_register_with_shelters_is_staged(big_list, db_url):
    path, mapping = big_list
    with psycopg.connect(db_url) as conn:
        run_id = municipal_list.import_list(conn, path, mapping=mapping, kommunekode=KBH,
                                            gate=GATE, publish=True)
    assert query(db_url, "SELECT status FROM ly.koersel WHERE id = %s", [run_id]) == \
        [("publiceret",)]
    assert query(db_url, "SELECT count(*) FILTER (WHERE vaerdier IS NULL) FROM ly.kandidat "
                 "WHERE koersel_id = %s", [run_id]) == [(0,)]


def test_a_first_load_that_fails_its_gate_is_staged_for_review(big_list, empty_db_url):
    path, mapping = big_list
    with psycopg.connect(empty_db_url) as conn:  # 15 of 40 rows rejected: more than 25 %
        run_id = municipal_list.import_list(conn, path, mapping=mapping, kommunekode=KBH,
                                            publish=True)
    assert query(empty_db_url, "SELECT status FROM ly.koersel WHERE id = %s", [run_id]) == \
        [("afvist",)]
    assert query(empty_db_url, "SELECT count(*) FROM ly.beskyttelsesrum") == [(0,)]
    assert query(empty_db_url, "SELECT count(*), count(vaerdier) FROM ly.kandidat") == \
        [(25, 25)]


def test_a_killed_first_load_leaves_nothing_and_resumes(big_list, empty_db_url, tmp_path):
    path, mapping = big_list
    mapping_file = tmp_path / "mapping.json"
    mapping_file.write_text(json.dumps(mapping), encoding="utf-8")
    before, schema = snapshot(empty_db_url), _schema(empty_db_url)
    env = {bulk_list.MIN_ROWS_ENV: "1", staging.SLEEP_ENV: "30"}
    proc = _cli(empty_db_url, "import-list", str(path), "--mapping", str(mapping_file),
                "--kommune", str(KBH), "--publish", "--max-afvist", "0.5", env=env)
    # Killed while it holds the table, its rows written and its indexes dropped.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        held = query(empty_db_url, "SELECT count(*) FROM pg_locks WHERE granted AND mode = "
                     "'AccessExclusiveLock' AND relation = 'ly.beskyttelsesrum'::regclass")
        if held == [(1,)]:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.5)  # within the 30 s pause after the rows
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert snapshot(empty_db_url) == before  # waits for the server to roll back
    assert _schema(empty_db_url) == schema
    (run_id, status, done), = query(empty_db_url,
                                    "SELECT id, status, naeste_raekke FROM ly.koersel")
    assert (status, done) == ("indlaeser", 0)
    assert query(empty_db_url, "SELECT count(*) FROM ly.kandidat") == [(0,)]
    resumed = _cli(empty_db_url, "runs", "resume", str(run_id), "--publish",
                   env={bulk_list.MIN_ROWS_ENV: "1"})
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, (out, err[-2000:])
    assert query(empty_db_url, "SELECT status, taellere ->> 'skrevet' FROM ly.koersel") == \
        [("publiceret", "25")]
    assert query(empty_db_url, "SELECT count(*) FROM ly.t_6101_beskyt_rum") == [(25,)]
    assert query(empty_db_url, "SELECT count(vaerdier) FROM ly.kandidat") == [(0,)]
    assert _schema(empty_db_url) == schema


def test_points_as_ewkb_are_what_shapely_writes():
    rng = np.random.default_rng(7)
    x, y = rng.uniform(-1e6, 1e6, 500), rng.uniform(5e6, 7e6, 500)
    x[:3], y[:3] = (0.0, -0.0, 1e-300), (np.pi, 6_100_000.5, -1.0)
    expected = shapely.to_wkb(shapely.set_srid(shapely.points(x, y), 25832), hex=True,
                              include_srid=True).tolist()
    assert initial_load.ewkb_points(x, y, 25832) == expected
    assert initial_load.ewkb_points(np.zeros(0), np.zeros(0), 25832) == []
