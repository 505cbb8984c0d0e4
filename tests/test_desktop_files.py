"""Files for Danish desktops: the CSV and XLSX exports as LibreOffice Calc reads them under a
da-DK locale, the GeoFA 6122 inspection export and the GeoFA exchange files as GDAL reads
their CRS, and municipal lists with a WKT geometry column.

LibreOffice (Debian's libreoffice-calc-nogui, installed by scripts/system-deps.sh) runs
headless with a profile of its own whose locale is da-DK (`ooSetupSystemLocale`), one
`soffice` start per conversion; the LibreOffice tests skip when it is not installed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import uuid
import zipfile
from datetime import date, datetime
from pathlib import Path
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

import psycopg
import pyogrio
import pytest
from fastapi.testclient import TestClient

from loaders import municipal_list, staging
from loaders.geofa import formats as F
from service.app import create_app
from tests.conftest import ADMIN_HEADERS, ITEMS, bearer, fresh_database, make_settings, query
from tests.test_inspections import INSPECTOR, KBH, complete_answers, room

SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")
LOCAL = ZoneInfo("Europe/Copenhagen")
#: LibreOffice's Text Import dialog as a fresh profile proposes it (officecfg's
#: Calc/Dialogs/CSVImport: separators comma, semicolon and tab; quote "; quoted fields not
#: as text; special numbers not detected), with UTF-8 (what the file's BOM says) and the
#: locale's language (0: the profile's da-DK). Headless LibreOffice never sniffs a
#: separator: without filter options it reads comma-separated Windows-1252.
TEXT_IMPORT_DEFAULTS = "Text - txt - csv (StarCalc):44/59/9,34,76,1,,0,false,false"
DA_DK_PROFILE = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry"
           xmlns:xs="http://www.w3.org/2001/XMLSchema"
           xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Setup/L10N"><prop oor:name="ooSetupSystemLocale"
  oor:op="fuse"><value>da-DK</value></prop></item>
<item oor:path="/org.openoffice.Setup/L10N"><prop oor:name="ooLocale"
  oor:op="fuse"><value>da-DK</value></prop></item>
</oor:items>
"""
NAME = "Ærø Åbyhøj Kælder"  # æøå in upper and lower case
FORMULA = "=HYPERLINK(\"http://eksempel.invalid\";\"klik\")"


# --- a database with an approved inspection and names people write ---------------------------

@pytest.fixture(scope="module")
def desk(template_db):
    """The module's own database: a betondækningsgrav in København inspected and approved
    (so it has inspection dates) and named with æøå, a neighbour named like a formula."""
    url = next(gen := fresh_database(template_db, "ly_desk_"))
    cvr = query(url, "SELECT cvr_kode FROM ly.kommune WHERE kommunekode = %s", [KBH])[0][0]
    shelter, neighbour = [r[0] for r in query(
        url, "SELECT objekt_id::text FROM ly.t_6101_beskyt_rum WHERE beskyt_rum_kode = 3 AND "
             "beliggenhedskommune = %s AND cvr_kode = %s ORDER BY objekt_id LIMIT 2",
        [KBH, cvr])]
    query(url, "INSERT INTO ly.tildeling (objekt_id, subjekt, cvr_kode, tildelt_af) VALUES "
               "(%s, %s, %s, 'setup')", [shelter, INSPECTOR, cvr])
    admin = bearer(["municipal_admin"], subject="kbh-admin", cvr=cvr, kommuner=[KBH])
    inspector = bearer(["inspector"], subject=INSPECTOR)
    with TestClient(create_app(make_settings(url)), headers=ADMIN_HEADERS) as c:
        for oid, navn in ((shelter, NAME), (neighbour, FORMULA)):
            etag = c.get(f"{ITEMS}/{oid}").headers["etag"]
            r = c.patch(f"{ITEMS}/{oid}", content=json.dumps({"properties": {"navn": navn}}),
                        headers={"Content-Type": "application/merge-patch+json",
                                 "If-Match": etag})
            assert r.status_code == 200, r.text
        eid = str(uuid.uuid4())
        body = {"objekt_id": shelter, "tjekliste_kode": "bdg-6122", "tjekliste_version": 1,
                "status": "indsendt", "svar": complete_answers(), "rum": [room()],
                "position": {"type": "Point", "coordinates": [12.57, 55.68]},
                "position_tid": "2026-02-20T10:15:00+01:00"}
        r = c.put(f"/eftersyn/{eid}", content=json.dumps(body),
                  headers={"Content-Type": "application/json", **inspector})
        assert r.status_code == 201, r.text
        r = c.post(f"/eftersyn/{eid}/godkend", headers=admin)
        assert r.status_code == 200, r.text
        yield {"url": url, "c": c, "shelter": shelter, "neighbour": neighbour,
               "eftersyn": eid, "admin": admin}
    next(gen, None)


def _register(url: str, oid: str) -> dict:
    """The shelter's current values as the database has them."""
    (row,) = query(url, "SELECT navn, pladser, areal_m2, seneste_eftersyn_dato, systid_fra, "
                        "ST_X(geometri), ST_Y(geometri) FROM ly.t_6101_beskyt_rum "
                        "WHERE objekt_id = %s", [oid])
    return dict(zip(("navn", "pladser", "areal_m2", "seneste_eftersyn_dato", "systid_fra",
                     "x", "y"), row))


# --- the Danish CSV -----------------------------------------------------------------------------

def test_the_csv_starts_with_a_bom_and_separates_with_semicolons(desk):
    r = desk["c"].get(ITEMS, params={"f": "csv", "beliggenhedskommune": KBH})
    assert r.status_code == 200
    assert r.content.startswith(b'\xef\xbb\xbf"WKT";"objekt_id";"versions_id";')
    assert r.headers["content-disposition"].startswith(
        'attachment; filename="beskyttelsesrum-koebenhavn-101-')
    rows = {row["objekt_id"]: row for row in csv.DictReader(
        io.StringIO(r.content.decode("utf-8-sig")), delimiter=";")}
    mine = rows[desk["shelter"]]
    shelter = _register(desk["url"], desk["shelter"])
    assert mine["navn"] == NAME
    assert mine["seneste_eftersyn_dato"] == shelter["seneste_eftersyn_dato"].isoformat()
    assert mine["areal_m2"] == f"{shelter['areal_m2']:f}".rstrip("0").rstrip(".").replace(
        ".", ",")
    assert rows[desk["neighbour"]]["navn"] == "'" + FORMULA  # a spreadsheet keeps it text


@pytest.fixture(scope="module")
def soffice(tmp_path_factory):
    """Convert a file with headless LibreOffice (one start per conversion) in a da-DK
    profile of its own, reused by every conversion."""
    if SOFFICE is None:
        pytest.skip("LibreOffice is not installed (scripts/system-deps.sh installs "
                    "libreoffice-calc-nogui)")
    profile = tmp_path_factory.mktemp("lo-profile")
    (profile / "user").mkdir()
    (profile / "user" / "registrymodifications.xcu").write_text(DA_DK_PROFILE, encoding="utf-8")
    home = tmp_path_factory.mktemp("lo-home")
    env = {**os.environ, "HOME": str(home), "LANG": "C.UTF-8"}

    def convert(src: Path, to: str, infilter: str | None = None) -> Path:
        out = src.parent / f"lo-{src.suffix[1:]}-{to}"
        cmd = [SOFFICE, "--headless", "--norestore", "--nolockcheck",
               f"-env:UserInstallation={profile.as_uri()}"]
        if infilter:
            cmd.append(f"--infilter={infilter}")
        cmd += ["--convert-to", to, "--outdir", str(out), str(src)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
        result = out / f"{src.stem}.{to}"
        assert done.returncode == 0 and result.exists(), (done.stdout, done.stderr)
        return result

    return convert


def test_libreoffice_in_da_dk_reads_the_csv_with_its_text_import_defaults(desk, soffice,
                                                                          tmp_path):
    """The CSV with no separator chosen for it (the dialog's comma, semicolon and tab): every
    value quoted, so the decimal commas and the commas of text split nothing; names with æøå,
    numbers with a decimal comma are numbers, dates are dates."""
    from openpyxl import load_workbook

    r = desk["c"].get(ITEMS, params={"f": "csv", "beliggenhedskommune": KBH})
    path = tmp_path / "beskyttelsesrum.csv"
    path.write_bytes(r.content)
    sheet = load_workbook(soffice(path, "xlsx", TEXT_IMPORT_DEFAULTS)).worksheets[0]
    header = [c.value for c in sheet[1]]
    assert header[:3] == ["WKT", "objekt_id", "versions_id"]
    col = {name: i for i, name in enumerate(header)}
    rows = {row[col["objekt_id"]].value: row for row in sheet.iter_rows(min_row=2)}
    expected = query(desk["url"], "SELECT count(*) FROM ly.t_6101_beskyt_rum WHERE "
                                  "beliggenhedskommune = %s", [KBH])[0][0]
    assert len(rows) == expected and all(len(row) == len(header) for row in rows.values())
    shelter = _register(desk["url"], desk["shelter"])
    mine = rows[desk["shelter"]]
    assert mine[col["navn"]].value == NAME
    assert mine[col["pladser"]].data_type == "n" and mine[col["pladser"]].value == \
        shelter["pladser"]
    assert mine[col["areal_m2"]].data_type == "n"
    assert mine[col["areal_m2"]].value == pytest.approx(float(shelter["areal_m2"]))
    dated = mine[col["seneste_eftersyn_dato"]]
    assert dated.is_date and dated.value == datetime.combine(shelter["seneste_eftersyn_dato"],
                                                             datetime.min.time())
    # Date-times (YYYY-MM-DD HH:MM:SS, Danish time) are text unless "Detect special numbers"
    # is ticked (it is not by default); Excel reads them as date-times.
    local = shelter["systid_fra"].astimezone(LOCAL).strftime("%Y-%m-%d %H:%M:%S")
    assert mine[col["systid_fra"]].value in (local, datetime.fromisoformat(local))
    assert str(mine[col["WKT"]].value).startswith("POINT(")
    assert rows[desk["neighbour"]][col["navn"]].value == "'" + FORMULA


# --- the XLSX -----------------------------------------------------------------------------------

_ODS = {"table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
        "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
        "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0"}


def _ods_rows(path: Path) -> list[list[tuple[str | None, str | None]]]:
    """(value type, value) of every cell of an ODS file's first sheet, as LibreOffice
    wrote them: office:value-type float/date/string with office:value, office:date-value
    or the paragraph text."""
    root = ElementTree.fromstring(zipfile.ZipFile(path).read("content.xml"))
    table = root.find(".//table:table", _ODS)
    out = []
    t, o = f"{{{_ODS['table']}}}", f"{{{_ODS['office']}}}"
    for row in table.iter(t + "table-row"):
        cells = []
        for cell in row:
            if cell.tag not in (t + "table-cell", t + "covered-table-cell"):
                continue
            kind = cell.get(o + "value-type")
            value = cell.get(o + "value") or cell.get(o + "date-value")
            if kind == "string":
                value = "".join(p.text or "" for p in cell.iter(f"{{{_ODS['text']}}}p"))
            repeat = int(cell.get(t + "number-columns-repeated", "1"))
            cells += [(kind, value)] * min(repeat, 200)
        out.append(cells)
    return out


def test_libreoffice_in_da_dk_reads_the_xlsx_typed(desk, soffice, tmp_path):
    """Ly's XLSX converted by LibreOffice to ODS: names with æøå are text, places and areas
    numbers, inspection dates dates and system times date-times; the formula-looking name
    stays text; the human columns come first."""
    r = desk["c"].get(ITEMS, params={"f": "xlsx", "filter": f"beliggenhedskommune = {KBH}"})
    assert r.status_code == 200
    name = r.headers["content-disposition"].split('"')[1]
    assert name.startswith("beskyttelsesrum-koebenhavn-101-") and name.endswith(".xlsx")
    path = tmp_path / "beskyttelsesrum.xlsx"
    path.write_bytes(r.content)
    rows = _ods_rows(soffice(path, "ods"))
    header = [v for _, v in rows[0] if v]
    assert header[0] == "navn" and header[-1] == "WKT"
    col = {name: i for i, name in enumerate(header)}
    by_id = {row[col["objekt_id"]][1]: row for row in rows[1:] if len(row) > col["objekt_id"]}
    shelter = _register(desk["url"], desk["shelter"])
    mine = by_id[desk["shelter"]]
    assert mine[col["navn"]] == ("string", NAME)
    assert mine[col["pladser"]] == ("float", str(shelter["pladser"]))
    assert mine[col["areal_m2"]][0] == "float"
    assert float(mine[col["areal_m2"]][1]) == pytest.approx(float(shelter["areal_m2"]))
    assert mine[col["seneste_eftersyn_dato"]][0] == "date"
    assert date.fromisoformat(mine[col["seneste_eftersyn_dato"]][1][:10]) == \
        shelter["seneste_eftersyn_dato"]
    kind, value = mine[col["systid_fra"]]
    assert kind == "date"
    assert datetime.fromisoformat(value) == \
        shelter["systid_fra"].astimezone(LOCAL).replace(tzinfo=None, microsecond=0)
    assert mine[col["beskyt_rum"]] == ("string", "Betondækningsgrav")
    assert by_id[desk["neighbour"]][col["navn"]] == ("string", FORMULA)


# --- GDAL reads the CRS of the GeoFA files --------------------------------------------------------

def test_the_6122_export_declares_epsg_25832_and_gdal_reads_it(desk, tmp_path):
    r = desk["c"].get(f"/eftersyn/{desk['eftersyn']}/6122", headers=desk["admin"])
    assert r.status_code == 200, r.text
    assert r.headers["content-crs"] == "<http://www.opengis.net/def/crs/EPSG/0/25832>"
    path = tmp_path / "eftersyn.geojson"
    path.write_bytes(r.content)
    info = pyogrio.read_info(path)
    assert info["crs"] == "EPSG:25832" and info["features"] == 1
    (point,) = pyogrio.read_dataframe(path).geometry.iloc[0].geoms
    shelter = _register(desk["url"], desk["shelter"])
    assert (point.x, point.y) == pytest.approx((shelter["x"], shelter["y"]), abs=0.001)


@pytest.mark.parametrize("fmt", F.FORMATS)
def test_the_geofa_exchange_files_declare_epsg_25832(desk, tmp_path, fmt):
    with psycopg.connect(desk["url"]) as conn:
        features = F.register_features(conn, "beliggenhedskommune = %s", [KBH])
    path = F.write_file(features, tmp_path / f"geofa.{fmt}", fmt)
    info = pyogrio.read_info(path)
    assert info["crs"] == "EPSG:25832", (fmt, info["crs"])
    frame = pyogrio.read_dataframe(path)
    assert len(frame) == len(features)
    shelter = _register(desk["url"], desk["shelter"])
    (point,) = frame[frame["objekt_id"].astype(str) == desk["shelter"]].geometry.iloc[0].geoms
    assert (point.x, point.y) == pytest.approx((shelter["x"], shelter["y"]), abs=0.001)


# --- municipal lists with a WKT column ----------------------------------------------------------

def test_a_list_with_a_wkt_column_imports_its_points(desk, tmp_path):
    """QGIS's "save as CSV" with GEOMETRY=AS_WKT: a `WKT` column, comma-separated. The
    points are the WKT's; an empty geometry is a missing point (a new shelter without one is
    rejected, a matched one keeps its point); bad WKT is a rejected row naming the column."""
    url = desk["url"]
    known, noegle = query(url, "SELECT objekt_id::text, noegle FROM ly.t_6101_beskyt_rum "
                               "WHERE beliggenhedskommune = %s AND noegle IS NOT NULL "
                               "ORDER BY objekt_id LIMIT 1", [KBH])[0]
    lines = [("WKT", "Nr", "Navn", "Pladser", "Type"),
             ("Point (722791 6169261)", "WKT-1", "Ly ved Nørrebrogade", "50", "BDG"),
             ("MULTIPOINT ((725344.5 6170190.25))", "WKT-2", "Ly ved Vesterbro", "220", "1"),
             ("POINT Z (727751 6175354 12)", "WKT-3", "Ly ved Østerbro", "230", "3"),
             ("POINT EMPTY", "WKT-4", "Ly uden punkt", "40", "3"),
             ("GEOMETRYCOLLECTION EMPTY", noegle, "Kendt ly", "", ""),
             ("POINT (722791 6169261", "WKT-6", "Brudt WKT", "50", "3"),
             ("LINESTRING (722791 6169261, 722800 6169270)", "WKT-7", "En linje", "50", "3"),
             ("", "WKT-8", "Tom celle", "50", "3")]
    path = tmp_path / "qgis.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(lines)
    mapping = {"kolonner": {"Nr": "noegle", "Navn": "navn", "Pladser": "pladser",
                            "Type": "beskyt_rum_kode"},
               "vaerdier": {"beskyt_rum_kode": {"BDG": 3}}}
    with psycopg.connect(url) as conn:
        run_id = municipal_list.import_list(conn, path, mapping=mapping, kommunekode=KBH,
                                            gate=staging.Gate(max_afvist_andel=0.9))
        run = staging.get_run(conn, run_id)
        rejected = {r["raekke"]: (r["felt"], r["aarsag"])
                    for r in staging.rejections(conn, run_id)}
    assert run["parametre"]["kolonner"]["WKT"] == "wkt"
    assert run["parametre"]["crs_brugt"].endswith("25832")  # detected from the magnitudes
    staged = {r[0]: r[1:] for r in query(
        url, "SELECT raekke, handling, ST_X(geometri), ST_Y(geometri), objekt_id::text "
             "FROM ly.kandidat WHERE koersel_id = %s", [run_id])}
    assert staged[2][:3] == ("opret", 722791, 6169261)
    assert staged[3][:3] == ("opret", 725344.5, 6170190.25)
    assert staged[4][:3] == ("opret", 727751, 6175354)
    known_point = query(url, "SELECT ST_X(geometri), ST_Y(geometri) FROM ly.t_6101_beskyt_rum"
                             " WHERE objekt_id = %s", [known])[0]
    assert staged[6][0] in ("uaendret", "ret") and staged[6][3] == known
    assert staged[6][1:3] == pytest.approx(known_point, abs=0.001)
    assert rejected[5] == ("geometri", "coordinates are missing, and the row matches no "
                                       "existing shelter (a new shelter needs a point)")
    assert rejected[9][0] == "geometri" and "coordinates are missing" in rejected[9][1]
    assert rejected[7][0] == "wkt (column 'WKT')" and "is not WKT" in rejected[7][1]
    assert rejected[8] == ("wkt (column 'WKT')", "is a LINESTRING, not a POINT")
    assert set(rejected) == {5, 7, 8, 9}


def test_a_list_with_a_wkt_column_in_lon_lat_and_xy_columns_too_is_refused(desk, tmp_path):
    """WKT in CRS84 (longitude first, as GIS programs write it) is detected; PostGIS's EWKT
    gives a value's own CRS, an SRID other than 25832 or 4326 rejects the row; WKT and
    coordinate columns together are a mapping error."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["geometri", "navn", "pladser", "beskyt_rum_kode"])
    sheet.append(["POINT (12.5683 55.6761)", "Ly på Rådhuspladsen", 60, 3])
    sheet.append(["SRID=25832;POINT (724000 6175000)", "EWKT i meter", 60, 3])
    sheet.append(["SRID=4326;POINT (12.57 55.68)", "EWKT i grader", 60, 3])
    sheet.append(["SRID=3857;POINT (1399000 7494000)", "Web Mercator", 60, 3])
    path = tmp_path / "liste.xlsx"
    book.save(path)
    with psycopg.connect(desk["url"]) as conn:
        run_id = municipal_list.import_list(conn, path, kommunekode=KBH,
                                            gate=staging.Gate(max_afvist_andel=0.9))
        run = staging.get_run(conn, run_id)
        rejected = staging.rejections(conn, run_id)
        assert run["parametre"]["crs_brugt"].endswith("CRS84")
        assert [(r["raekke"], r["felt"]) for r in rejected] == [(5, "wkt (column 'geometri')")]
        assert "SRID=3857" in rejected[0]["aarsag"]
        points = query(desk["url"], "SELECT raekke, ST_AsText(ST_Transform(geometri, 4326), 4)"
                                    " FROM ly.kandidat WHERE koersel_id = %s ORDER BY raekke",
                       [run_id])
        assert points[0] == (2, "POINT(12.5683 55.6761)") and points[2] == (4, "POINT(12.57 55.68)")
        assert query(desk["url"], "SELECT ST_AsText(geometri) FROM ly.kandidat WHERE "
                                  "koersel_id = %s AND raekke = 3", [run_id]) == \
            [("POINT(724000 6175000)",)]
        sheet.insert_cols(1)
        sheet["A1"] = "x"
        book.save(path)
        with pytest.raises(municipal_list.MappingError, match="either coordinate columns or "
                                                              "the WKT column 'geometri'"):
            municipal_list.import_list(conn, path, kommunekode=KBH)
