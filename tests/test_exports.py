"""Exports (`…/items?f=geojson|csv|xlsx|gpkg|shp`): every format opens in GDAL with the
number of shelters the database says the viewer may export for that filter, with the right
attributes; the public's exports lack the non-public columns.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
import zipfile
from datetime import datetime, timezone

import httpx
import pyogrio
import pytest
import shapely

from tests.conftest import ADMIN_HEADERS, ITEMS, query

FORMATS = ["geojson", "csv", "xlsx", "gpkg", "shp"]
SUFFIX = {"geojson": "geojson", "csv": "csv", "xlsx": "xlsx", "gpkg": "gpkg", "shp": "shp.zip"}
BBOX = (12.45, 55.6, 12.65, 55.75)  # Copenhagen, lon/lat
BBOX_SQL = ("ST_Intersects(geometri, ST_Transform(ST_Segmentize("
            "ST_MakeEnvelope(12.45, 55.6, 12.65, 55.75, 4326), 0.001), 25832))")
PRIVATE = {"note", "cvr_kode", "off_kode", "noegle", "bruger_id", "oprettet"}


def _expected(url: str, where: str) -> dict[str, tuple]:
    rows = query(url, "SELECT objekt_id::text, pladser, navn, beskyt_rum_kode, "
                      "ST_X(geometri), ST_Y(geometri), "
                      "ST_X(ST_Transform(geometri, 4326)), ST_Y(ST_Transform(geometri, 4326)) "
                      f"FROM ly.t_6101_beskyt_rum WHERE {where}")
    return {r[0]: r[1:] for r in rows}


def _download(client, tmp_path, fmt, **params):
    r = client.get(ITEMS, params={"f": fmt, **params})
    assert r.status_code == 200, r.text
    disposition = r.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="beskyttelsesrum-')
    assert disposition.endswith(f'.{SUFFIX[fmt]}"')
    path = tmp_path / f"export.{SUFFIX[fmt]}"
    path.write_bytes(r.content)
    return r, path


def _read(path, fmt):
    """(info, dataframe) as GDAL reads the file."""
    src = str(path)
    if fmt == "shp":
        names = zipfile.ZipFile(path).namelist()
        assert sorted(names) == sorted(f"beskyttelsesrum.{e}"
                                       for e in ("shp", "shx", "dbf", "prj", "cpg"))
        src = f"/vsizip/{path}/beskyttelsesrum.shp"
    info = pyogrio.read_info(src)
    df = pyogrio.read_dataframe(src)
    return info, df


def _check(info, df, fmt, expected: dict, public: bool, crs_4326: bool):
    assert info["features"] == len(expected)
    assert len(df) == len(expected)
    columns = set(df.columns)
    id_col = "objekt_id" if fmt != "geojson" or "objekt_id" in columns else "id"
    assert set(df[id_col].astype(str)) == set(expected)
    if public:
        assert not columns & PRIVATE, columns & PRIVATE
    else:
        assert {"cvr_kode", "off_kode", "note"} <= columns
    if fmt == "shp":
        assert all(len(c) <= 10 for c in columns)
    else:
        assert "beskyt_rum" in columns  # the text twin beside the code
    # a few attribute values and the point
    for _, row in df.head(20).iterrows():
        pladser, navn, kode, x, y, lon, lat = expected[str(row[id_col])]
        assert int(row["pladser"]) == pladser
        assert (row["navn"] or None) == navn or (row["navn"] != row["navn"] and navn is None)
        assert int(row["beskyt_rum" if fmt == "shp" else "beskyt_rum_kode"]) == kode
        # GDAL reads the WKT column of CSV as the geometry; of XLSX, as text
        p = row["geometry"] if fmt != "xlsx" else shapely.from_wkt(row["WKT"])
        if crs_4326:
            assert p.x == pytest.approx(lon, abs=1e-6) and p.y == pytest.approx(lat, abs=1e-6)
        else:
            assert p.x == pytest.approx(x, abs=1e-3) and p.y == pytest.approx(y, abs=1e-3)


@pytest.mark.parametrize("fmt", FORMATS)
def test_admin_export_with_bbox_opens_in_gdal(ro_client, shared_db_url, tmp_path, fmt):
    expected = _expected(shared_db_url, BBOX_SQL)
    assert 50 < len(expected) < 1000
    r, path = _download(ro_client, tmp_path, fmt, bbox=",".join(map(str, BBOX)))
    assert r.headers["cache-control"].startswith("private")
    info, df = _read(path, fmt)
    geographic = fmt in ("geojson", "csv", "xlsx")  # default CRS84; GIS files: EPSG:25832
    if fmt in ("gpkg", "shp"):
        assert info["crs"] == "EPSG:25832"
        assert r.headers["content-crs"] == "<http://www.opengis.net/def/crs/EPSG/0/25832>"
    else:
        assert r.headers["content-crs"] == "<http://www.opengis.net/def/crs/OGC/1.3/CRS84>"
    _check(info, df, fmt, expected, public=False, crs_4326=geographic)


@pytest.mark.parametrize("fmt", FORMATS)
def test_public_export_has_public_rows_and_columns_only(anon_client, shared_db_url, tmp_path,
                                                        fmt):
    expected = _expected(shared_db_url, "off_kode = 1")
    r, path = _download(anon_client, tmp_path, fmt)
    info, df = _read(path, fmt)
    _check(info, df, fmt, expected, public=True, crs_4326=fmt in ("geojson", "csv", "xlsx"))


@pytest.mark.parametrize("fmt", ["geojson", "gpkg", "csv"])
def test_export_filters_and_crs(ro_client, shared_db_url, tmp_path, fmt):
    expected = _expected(shared_db_url, "pladser > 200 AND beliggenhedskommune = 101")
    assert expected
    crs = "http://www.opengis.net/def/crs/EPSG/0/25832" if fmt != "gpkg" else \
        "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
    r, path = _download(ro_client, tmp_path, fmt, filter="pladser > 200",
                        beliggenhedskommune=101, crs=crs)
    assert r.headers["content-crs"] == f"<{crs}>"
    info, df = _read(path, fmt)
    if fmt == "gpkg":
        assert info["crs"] == "EPSG:4326"
    _check(info, df, fmt, expected, public=False, crs_4326=fmt == "gpkg")


def test_geojson_export_is_the_items_features(ro_client):
    page = ro_client.get(ITEMS, params={"limit": 3, "bbox": "12.45,55.6,12.65,55.75"}).json()
    export = ro_client.get(ITEMS, params={"f": "geojson", "bbox": "12.45,55.6,12.65,55.75"})
    body = export.json()
    assert body["type"] == "FeatureCollection"
    assert body["numberReturned"] == len(body["features"]) == body["numberMatched"]
    assert body["features"][:3] == page["features"]  # same order (objekt_id), same features
    epsg = ro_client.get(ITEMS, params={"f": "geojson", "bbox": "12.45,55.6,12.65,55.75",
                                        "crs": "EPSG:4326"}).json()
    lon, lat = body["features"][0]["geometry"]["coordinates"]
    assert epsg["features"][0]["geometry"]["coordinates"] == [lat, lon]  # Part 2 axis order
    assert epsg["crs"]["properties"]["name"].endswith("/EPSG/0/4326")


def test_csv_export_reads_as_csv(anon_client, shared_db_url):
    """The default dialect is Danish (BOM, `;`, decimal comma, Danish time); `rfc4180` is
    for programs (`,`, no BOM, decimal point, RFC 3339 in UTC)."""
    count = query(shared_db_url, "SELECT count(*) FROM ly.t_6101_beskyt_rum "
                                 "WHERE off_kode = 1")[0][0]
    da = anon_client.get(ITEMS, params={"f": "csv"})
    assert da.headers["content-type"].startswith("text/csv")
    assert da.content.startswith(b"\xef\xbb\xbf\"WKT\";\"objekt_id\";")
    rows = list(csv.DictReader(io.StringIO(da.content.decode("utf-8-sig")), delimiter=";"))
    assert len(rows) == count
    assert rows[0]["WKT"].startswith("POINT(")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rows[0]["systid_fra"])
    rfc = anon_client.get(ITEMS, params={"f": "csv", "csv-dialect": "rfc4180"})
    assert rfc.content.startswith(b"WKT,objekt_id,")
    rows = list(csv.DictReader(io.StringIO(rfc.text)))
    assert len(rows) == count
    assert rows[0]["WKT"].startswith("POINT(")
    assert rows[0]["systid_fra"].endswith("Z")


def test_csv_dialects_write_numbers_and_times_as_their_readers_read_them(
        ro_client, shared_db_url):
    oid, areal, systid = query(shared_db_url, "SELECT objekt_id::text, areal_m2, systid_fra "
                               "FROM ly.t_6101_beskyt_rum WHERE areal_m2 <> round(areal_m2) "
                               "ORDER BY objekt_id LIMIT 1")[0]
    by_dialect = {}
    for dialect, delimiter in (("da", ";"), ("rfc4180", ",")):
        r = ro_client.get(ITEMS, params={"f": "csv", "csv-dialect": dialect,
                                         "filter": f"objekt_id = '{oid}'"})
        assert r.status_code == 200, r.text
        (row,) = csv.DictReader(io.StringIO(r.content.decode("utf-8-sig")),
                                delimiter=delimiter)
        by_dialect[dialect] = row
    da, rfc = by_dialect["da"], by_dialect["rfc4180"]
    assert float(rfc["areal_m2"]) == float(areal) and "." in rfc["areal_m2"]
    assert float(da["areal_m2"].replace(",", ".")) == float(areal) and "," in da["areal_m2"]
    local = systid.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Copenhagen"))
    assert da["systid_fra"] == local.strftime("%Y-%m-%d %H:%M:%S")
    assert rfc["systid_fra"].startswith(systid.astimezone(timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S"))
    assert da["pladser"] == rfc["pladser"] and da["navn"] == rfc["navn"]


@pytest.mark.parametrize("params", [{"f": "csv", "csv-dialect": "excel"},
                                    {"f": "xlsx", "csv-dialect": "da"}])
def test_a_bad_csv_dialect_is_a_400_naming_it(ro_client, params):
    r = ro_client.get(ITEMS, params=params)
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["field"] == "csv-dialect"


@pytest.mark.parametrize("params, stem", [
    ({}, "beskyttelsesrum"),
    ({"beliggenhedskommune": "751"}, "beskyttelsesrum-aarhus-751"),
    ({"filter": "beliggenhedskommune = 751 AND pladser > 10"}, "beskyttelsesrum-aarhus-751"),
    ({"filter": "beliggenhedskommune IN (101)"}, "beskyttelsesrum-koebenhavn-101"),
    ({"filter": "beliggenhedskommune = 751 OR pladser > 10"}, "beskyttelsesrum"),
    ({"beliggenhedskommune": "751", "filter": "beliggenhedskommune = 101"},
     "beskyttelsesrum"),
])
def test_the_file_name_says_theme_municipality_and_date(ro_client, params, stem):
    from datamodel.query import VALIDITY_TIME_ZONE
    from zoneinfo import ZoneInfo

    today = datetime.now(ZoneInfo(VALIDITY_TIME_ZONE)).date().isoformat()
    for fmt in ("xlsx", "csv"):
        r = ro_client.head(ITEMS, params={"f": fmt, **params})
        assert r.status_code == 200
        assert r.headers["content-disposition"] == \
            f'attachment; filename="{stem}-{today}.{SUFFIX[fmt]}"'
    # the register as it was: the file is named for that day
    r = ro_client.head(ITEMS, params={"f": "gpkg", "asof": "2025-01-31T23:30:00Z", **params})
    assert r.headers["content-disposition"].endswith(f'{stem}-2025-02-01.gpkg"')


def test_asof_before_the_register_gives_empty_files(ro_client, tmp_path):
    for fmt in FORMATS:
        r, path = _download(ro_client, tmp_path, fmt, asof="2001-01-01T00:00:00Z")
        if fmt == "xlsx":  # a sheet with only its header row has no layer schema for GDAL
            continue
        info = pyogrio.read_info(str(path) if fmt != "shp"
                                 else f"/vsizip/{path}/beskyttelsesrum.shp")
        assert info["features"] == 0


@pytest.mark.parametrize("params, field", [
    ({"f": "csv", "limit": "5"}, "limit"),
    ({"f": "shp", "cursor": "00000000-0000-0000-0000-000000000000"}, "cursor"),
    ({"f": "gpkg", "crs": "EPSG:9999"}, "crs"),
    ({"f": "xlsx", "bbox": "1,2,3"}, "bbox"),
    ({"f": "geojson", "filter": "pladser >"}, None),
    ({"f": "csv", "asof": "2999-01-01T00:00:00Z"}, "asof"),
    ({"f": "kml"}, "f"),
])
def test_bad_export_parameters_are_400(ro_client, params, field):
    r = ro_client.get(ITEMS, params=params)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    if field:
        assert r.json()["errors"][0]["field"] == field


@pytest.mark.parametrize("fmt", ["geojson", "gpkg"])
def test_head_of_an_export_answers_its_headers_without_running_it(ro_client, monkeypatch, fmt):
    from service import exports

    get = ro_client.get(ITEMS, params={"f": fmt})

    async def refuse(*_):
        raise AssertionError("HEAD ran the export")

    monkeypatch.setattr(exports, "_open", refuse)
    head = ro_client.head(ITEMS, params={"f": fmt})
    assert head.status_code == 200 and head.content == b""
    for name in ("content-type", "content-crs", "cache-control"):
        assert head.headers[name] == get.headers[name]
    stamp = re.compile(r"\d{8}T\d{6}Z")  # the file is named for the moment of the export
    assert stamp.sub("T", head.headers["content-disposition"]) == \
        stamp.sub("T", get.headers["content-disposition"])
    assert "content-length" not in head.headers
    bad = ro_client.head(ITEMS, params={"f": fmt, "limit": "5"})
    assert bad.status_code == 400


def test_public_cannot_export_by_private_columns(anon_client):
    for params in ({"f": "csv", "filter": "note IS NULL"}, {"f": "gpkg", "cvr_kode": "1"}):
        r = anon_client.get(ITEMS, params=params)
        assert r.status_code == 400, r.text


def test_exports_read_in_batches(ro_client, shared_db_url, monkeypatch):
    """Rows reach the writer in batches of at most BATCH (constant memory)."""
    from loaders import exports as writers
    from service import exports

    monkeypatch.setattr(writers, "BATCH", 400)
    monkeypatch.setattr(exports, "FIRST_BATCH", 50)
    sizes: list[int] = []
    original = writers.CSVWriter.write

    def spy(self, rows):
        sizes.append(len(rows))
        return original(self, rows)

    monkeypatch.setattr(writers.CSVWriter, "write", spy)
    r = ro_client.get(ITEMS, params={"f": "csv"})
    total = query(shared_db_url, "SELECT count(*) FROM ly.t_6101_beskyt_rum")[0][0]
    assert len(r.text.splitlines()) == total + 1
    assert sum(sizes) == total and sizes[0] == 50 and max(sizes) == 400


def test_streamed_export_through_a_real_server(live_ro, shared_db_url):
    """The first bytes arrive before the export is complete, and the whole GeoJSON parses
    (the export's own bytes: without gzip, which the edge applies when asked)."""
    total = query(shared_db_url, "SELECT count(*) FROM ly.t_6101_beskyt_rum")[0][0]
    with httpx.Client(headers={**ADMIN_HEADERS, "Accept-Encoding": "identity"},
                      timeout=30) as http:
        start = time.monotonic()
        with http.stream("GET", live_ro.url + ITEMS, params={"f": "geojson"}) as r:
            assert r.status_code == 200
            chunks = r.iter_raw()
            first = next(chunks)
            ttfb = time.monotonic() - start
            assert first.startswith(b'{"type":"FeatureCollection"')
            body = first + b"".join(chunks)
    assert len(json.loads(body)["features"]) == total
    assert ttfb < 5


def test_a_client_walking_away_ends_the_export_and_frees_its_connection(live_ro, shared_db_url,
                                                                        monkeypatch):
    """A client that goes away mid-stream stops the export at once, and its transaction
    ends cleanly: no connection is left in a transaction, the pool (4 here) serves on."""
    from loaders import exports as writers
    from service import exports

    monkeypatch.setattr(writers, "BATCH", 50)
    monkeypatch.setattr(exports, "FIRST_BATCH", 10)
    original, ended = writers.GeoJSONWriter.write, []

    def slow(self, rows):  # 60 batches of 20 ms: the export outlives the client
        time.sleep(0.02)
        return original(self, rows)

    monkeypatch.setattr(writers.GeoJSONWriter, "write", slow)
    stream = exports._stream

    async def traced(*args):
        n = 0
        try:
            async for chunk in stream(*args):
                n += 1
                yield chunk
        finally:
            ended.append(n)

    monkeypatch.setattr(exports, "_stream", traced)
    with httpx.Client(headers=ADMIN_HEADERS, timeout=30) as http:
        for _ in range(6):  # more than the pool's connections
            with http.stream("GET", live_ro.url + ITEMS, params={"f": "geojson"}) as r:
                next(r.iter_raw())
        deadline = time.monotonic() + 10
        while len(ended) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(ended) == 6 and max(ended) < 30, ended  # stopped early, every one
        busy = query(shared_db_url, "SELECT count(*) FROM pg_stat_activity WHERE "
                                    "datname = current_database() AND pid <> pg_backend_pid() "
                                    "AND state LIKE 'idle in transaction%%'")[0][0]
        assert busy == 0
        ok = http.get(live_ro.url + ITEMS, params={"f": "csv", "filter": "pladser > 900"})
        assert ok.status_code == 200


def test_xlsx_has_typed_cells_human_columns_first_a_frozen_header_and_a_filter(
        ro_client, shared_db_url):
    """Numbers are numbers, date-times Excel dates (Danish time) with a number format; the
    label, address, kinds as text and places come first, the WKT last; column widths, the
    header row frozen, an autofilter over the table."""
    from openpyxl import load_workbook
    from zoneinfo import ZoneInfo

    rows = query(shared_db_url, "SELECT objekt_id::text, navn, pladser, areal_m2, systid_fra "
                 "FROM ly.t_6101_beskyt_rum WHERE beliggenhedskommune = 751 "
                 "ORDER BY objekt_id")
    r = ro_client.get(ITEMS, params={"f": "xlsx", "beliggenhedskommune": "751"})
    assert r.status_code == 200
    book = load_workbook(io.BytesIO(r.content))  # not read-only: panes, filter and widths
    sheet = book.worksheets[0]
    header = [c.value for c in sheet[1]]
    assert header[:6] == ["navn", "vejnavn", "husnr", "postnr", "postnr_by", "beskyt_rum"]
    assert header.index("pladser") < header.index("objekt_id") < header.index("beskyt_rum_kode")
    assert header[-1] == "WKT" and "cvr_navn" in header
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == f"A1:{sheet.cell(1, len(header)).column_letter}" \
                                    f"{len(rows) + 1}"
    widths = {name: sheet.column_dimensions[sheet.cell(1, i + 1).column_letter].width
              for i, name in enumerate(header)}
    assert widths["navn"] > widths["husnr"] and widths["objekt_id"] >= 36
    col = {name: i for i, name in enumerate(header)}
    local = ZoneInfo("Europe/Copenhagen")
    by_id = {row[col["objekt_id"]].value: row for row in sheet.iter_rows(min_row=2)}
    assert len(by_id) == len(rows)
    for oid, navn, pladser, areal, systid in rows[:50]:
        row = by_id[oid]
        assert row[col["navn"]].value == navn
        assert row[col["pladser"]].data_type == "n" and row[col["pladser"]].value == pladser
        if areal is not None:
            assert row[col["areal_m2"]].data_type == "n"
            assert row[col["areal_m2"]].value == float(areal)
        cell = row[col["systid_fra"]]
        assert cell.is_date and cell.number_format == "yyyy-mm-dd hh:mm:ss"
        assert cell.value == systid.astimezone(local).replace(tzinfo=None, microsecond=0)
        assert row[col["beskyt_rum"]].data_type == "s"
