"""GeoFA exchange formats for theme 6101: GeoJSON as GeoFA's WFS delivers it, GML read with
GDAL, GeoPackage and Shapefile (feltnavn10 + temakode); export and import round-trip without
loss, and a GeoFA file reads back into Ly through the staged list import."""

from __future__ import annotations

import json
import math
from pathlib import Path

import psycopg
import pyogrio
import pytest

from loaders import municipal_list, staging
from loaders.geofa import formats as F

FIXTURES = Path(__file__).parent / "fixtures" / "geofa"
THEME = F.theme(6101)
META_ORDER = [n for n, _ in sorted(THEME.meta["fields"].items(), key=lambda kv: kv[1]["num"])
              if n != "geometri"]


@pytest.fixture(scope="module")
def features(shared_db_url):
    with psycopg.connect(shared_db_url) as conn:
        out = F.register_features(conn, "t.beliggenhedskommune IN (101, 147)")
    # the awkward values a format must carry: Danish letters, a full-length note, nulls
    note = "Æblehaven ved Øresund, gården bag porten; " * 6
    while len(note.encode("utf-8")) > 254:  # a Shapefile field holds 254 bytes
        note = note[:-1]
    out[0]["properties"].update(note=note, link=None, noegle="0042")
    return out


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


@pytest.mark.parametrize("profile", F.PROFILES)
@pytest.mark.parametrize("fmt", F.FORMATS)
def test_export_and_import_round_trip_without_loss(features, tmp_path, fmt, profile):
    path = F.write_file(features, tmp_path / f"beskyttelsesrum.{fmt}", fmt, profile=profile)
    back = F.read_file(path)
    assert len(back) == len(features)
    names = [c for c in F.columns(THEME, profile) if c in F.attributes(THEME)]
    if profile == "geofa":
        assert "navn" not in names and "pladser" in names
    lost = []
    for a, b in zip(features, back):
        for c in names:
            if not _same(a["properties"].get(c), b["properties"].get(c)):
                lost.append((a["id"], c, a["properties"].get(c), b["properties"].get(c)))
        if math.dist(F._xy(a), F._xy(b)) > 0.0011:  # GeoFA's precision: 0.001 m
            lost.append((a["id"], "geometri", F._xy(a), F._xy(b)))
    assert lost == []


def test_geojson_is_shaped_as_geofas_wfs_delivers_it(features):
    fc = F.feature_collection(features[:3], THEME, profile="geofa")
    assert fc["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::25832"
    f = fc["features"][0]
    p = f["properties"]
    assert f["id"] == f"t_6101_beskyt_rum.{p['objekt_id']}"
    assert f["geometry"]["type"] == "MultiPoint" and len(f["geometry"]["coordinates"]) == 1
    assert list(p) == META_ORDER  # exactly GeoFA's view, in its order
    assert (p["temakode"], p["temanavn"]) == (6101, "t_6101_beskyt_rum_t")
    # code and text twins travel together; kommunekode is the responsible authority's
    twins = {"beskyt_rum_kode": "beskyt_rum", "klargjort_kode": "klargjort", "cvr_kode":
             "cvr_navn", "off_kode": "offentlig", "statuskode": "status", "oprindkode":
             "oprindelse"}
    for code, twin in twins.items():
        assert p[code] is not None and isinstance(p[twin], str), (code, twin)
    assert p["kommunekode"] in (101, 147)
    ly = F.feature_collection(features[:1], THEME)["features"][0]["properties"]
    assert list(ly)[:len(META_ORDER)] == META_ORDER and ly["navn"] and ly["funktionsstatus"]


def test_shapefile_uses_feltnavn10_and_a_temakode_column(features, tmp_path):
    path = F.write_file(features, tmp_path / "upload.shp", "shp")
    info = pyogrio.read_info(path)
    fields = list(info["fields"])
    assert all(len(name) <= 10 for name in fields)
    assert fields[0] == "temakode"
    assert {"beskyt_rum", "klargjort", "versions_i", "pl_kilde", "funktionss", "bbr_byg_id",
            "beliggenhe"} <= set(fields)
    assert "cvr_navn" not in fields  # no text twins in the upload form
    assert info["crs"] == "EPSG:25832" and info["geometry_type"] == "MultiPoint"
    assert (tmp_path / "upload.cpg").read_text().strip().upper() in ("UTF-8", "UTF8")
    long_link = [dict(features[0], properties={**features[0]["properties"], "link": "x" * 300})]
    with pytest.raises(F.FormatError, match="link is 300 bytes.*at most 254"):
        F.write_file(long_link, tmp_path / "lang.shp", "shp")


def test_gml_from_geofas_wfs_is_read_with_gdal():
    """A GetFeature answer without its schema (GDAL must not fetch it) reads with the right
    values: a noegle "0017" stays text, an escaped URL comes back whole."""
    back = F.read_file(FIXTURES / "wfs_getfeature_6101.gml")
    assert not (FIXTURES / "wfs_getfeature_6101.gfs").exists()
    assert [f["properties"]["objekt_id"] for f in back] == [
        "6427cf5c-db9f-11ee-bb57-bb467bf14801", "6427cf5c-db9f-11ee-bb57-bb467bf14802"]
    second = back[1]["properties"]
    assert (second["noegle"], second["beskyt_rum_kode"], second["pladser"], second["off_kode"]) \
        == ("0017", 3, 50, 1)
    assert second["link"] == "https://www.kk.dk/beskyttelsesrum?id=17&type=bdg"
    assert back[0]["properties"]["note"] == "Nøgle hos vicevært, tlf. på døren"
    assert back[1]["geometry"] == {"type": "Point", "coordinates": [720482.4, 6179304.1]}


def test_geojson_from_geofa_reads_twins_and_refuses_what_does_not_fit():
    data = json.loads((FIXTURES / "wfs_getfeature_6101.geojson").read_text(encoding="utf-8"))
    back = F.read_geojson(data)
    assert [f["properties"]["beskyt_rum_kode"] for f in back] == [1, 3, 2]  # 3rd: text only
    assert back[0]["properties"]["systid_fra"] == "2026-02-02T10:11:12.345678+01:00"
    assert "cvr_navn" not in back[0]["properties"] and "temakode" not in back[0]["properties"]
    bad = json.loads(json.dumps(data))
    bad["features"][1]["properties"]["beskyt_rum"] = "Sikringsrum"
    with pytest.raises(F.FormatError, match="feature 2: beskyt_rum_kode 3 and its text"):
        F.read_geojson(bad)
    bad = json.loads(json.dumps(data))
    bad["features"][0]["properties"]["temakode"] = 6122
    with pytest.raises(F.FormatError, match="feature 1: temakode is 6122"):
        F.read_geojson(bad)
    bad = json.loads(json.dumps(data))
    bad["features"][2]["geometry"]["coordinates"].append([720000.0, 6170000.0])
    with pytest.raises(F.FormatError, match="feature 3: a MultiPoint with 2 points"):
        F.read_geojson(bad)
    bad["crs"]["properties"]["name"] = "urn:ogc:def:crs:EPSG::4326"
    with pytest.raises(F.FormatError, match="EPSG:25832"):
        F.read_geojson(bad)


def test_a_geofa_upload_file_reads_back_through_the_staged_import_unchanged(db_url, tmp_path):
    """The file-upload forms carry objekt_id, so every row matches its shelter: nothing to do."""
    for fmt in ("shp", "gpkg", "geojson"):
        with psycopg.connect(db_url) as conn:
            exported = F.register_features(conn, "t.beliggenhedskommune = 147")
            path = F.write_file(exported, tmp_path / f"upload.{fmt}", fmt)
            run_id = municipal_list.import_list(conn, path, kommunekode=147)
            run = staging.get_run(conn, run_id)
        assert run["status"] == "klar", fmt
        assert run["taellere"] == {"laest": len(exported), "gyldige": len(exported),
                                   "uaendret": len(exported)}, fmt
        assert run["parametre"]["kolonner"]["objekt_id"] == "objekt_id"
