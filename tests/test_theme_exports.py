"""Exports and GeoFA exchange files of every theme, from the descriptors alone.

A few objects of each registered theme are written through its current view (one public
with every attribute, one for the authorities, one public with only what is required; an
area theme's are a square, a square with a hole and two squares). Then, per theme:
- every export format (GeoJSON, CSV, XLSX, GeoPackage, Shapefile) opens in GDAL with the
  number of objects the database holds, the theme's geometry type and CRS, and its values;
- the public's export holds only off_kode 1 objects and no personal attribute, and a
  planner's has the personal attributes empty;
- a GeoFA exchange file (GeoJSON, GML, GeoPackage, Shapefile; both profiles) read back with
  `loaders.geofa.formats` equals the register (every attribute; the geometry within 1 mm),
  and `ly geofa export/import` round-trips into the register without a change.
"""

from __future__ import annotations

import json
import uuid
import zipfile
from datetime import date, timedelta

import psycopg
import pyogrio
import pytest
import shapely
from fastapi.testclient import TestClient
from shapely.geometry import shape

from cli.main import main as ly
from datamodel import rules, themes
from datamodel.codelists import load_codelists
from loaders.geofa import formats as F
from service.app import create_app
from tests.conftest import ADMIN_HEADERS, bearer, fresh_database, make_settings, query

THEMES = themes.all_themes()
PERSONAL_THEMES = [t for t in THEMES if t.personal_fields]
FORMATS = ("geojson", "csv", "xlsx", "gpkg", "shp")
SUFFIX = {"geojson": "geojson", "csv": "csv", "xlsx": "xlsx", "gpkg": "gpkg", "shp": "shp.zip"}
KBH = 101
X0, Y0 = 724_500.125, 6_175_800.375  # central København, EPSG:25832
TODAY = date.today()
PLANNER = bearer(["planner"], subject="planlaegger")
#: The exports are asked for the box around the objects made here (EPSG:25832), so the files
#: stay small beside the demo register; the database says what lies in it.
BOX = (X0 - 50, Y0 - 50, X0 + 1500, Y0 + 1000)
BOX_PARAMS = {"bbox": ",".join(map(str, BOX)),
              "bbox-crs": "http://www.opengis.net/def/crs/EPSG/0/25832"}
BOX_SQL = "ST_Intersects(geometri, ST_MakeEnvelope({}, {}, {}, {}, 25832))".format(*BOX)


def _id(t) -> str:
    return t.collection_id


# --- objects of every theme ---------------------------------------------------------------

def _square(x: float, y: float, d: float) -> list:
    return [[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]


def _geometry(t, i: int) -> dict:
    x, y = X0 + 400 * i, Y0 + 250 * i
    if not t.is_area:
        return {"type": "Point", "coordinates": [x, y]}
    if i == 0:
        return {"type": "MultiPolygon", "coordinates": [[_square(x, y, 120.5)]]}
    if i == 1:  # a hole
        hole = list(reversed(_square(x + 40, y + 40, 20)))
        return {"type": "MultiPolygon", "coordinates": [[_square(x, y, 100), hole]]}
    return {"type": "MultiPolygon", "coordinates": [[_square(x, y, 60)],
                                                    [_square(x + 100, y + 5.5, 30)]]}


def _value(t, f, i: int, cvr: int):
    if f.name == "cvr_kode":
        return cvr
    if t.validity and f.name in t.validity:
        start, _ = t.validity
        return TODAY - timedelta(days=10) if f.name == start else TODAY + timedelta(days=30 + i)
    if f.codelist:
        codes = [c.kode for c in load_codelists()[f.codelist].values if c.aktiv]
        return codes[(i + 1) % len(codes)]
    if f.type == "integer":
        low = int(f.minimum) if f.minimum is not None else 20_000_000
        return min(int(f.maximum) if f.maximum is not None else 99_999_999, low + 11 + i)
    if f.type == "number":
        return float(f.minimum or 0) + 12.25 + i
    if f.type == "string":
        text = f"Æbleø {i} {f.name} – “citat”, komma"
        return text[: f.max_length] if f.max_length else text
    if f.type == "uuid":
        return str(uuid.uuid4())
    if f.type == "date":
        return date(2026, 3, 1) + timedelta(days=i)
    return None


def _record(t, i: int, off: int, cvr: int, full: bool) -> dict:
    """Writable values of object i: every attribute (`full`) or only the required ones."""
    record = {f.name: _value(t, f, i, cvr) for f in t.writable_fields
              if full or (f.required and f.default is None) or f.name == "cvr_kode"
              or (t.validity and f.name in t.validity)}
    record["off_kode"] = off
    for _ in range(5):  # the theme's own rules may forbid a combination: leave it empty
        problems: list = []
        complete = rules.complete(dict(record), problems, t)
        if not problems:
            return {k: v for k, v in complete.items() if v is not None}
        for p in problems:
            name = p.field.removeprefix("properties.")
            assert not t.fields_by_name[name].required, p
            record.pop(name, None)
    raise AssertionError(f"no valid record for {t!r}: {problems}")


def _insert(url: str, t, record: dict, geometry: dict) -> str:
    cols = list(record)
    with psycopg.connect(url) as conn:
        conn.execute("SELECT set_config('ly.subjekt', 'test-opsaetning', false)")
        (oid,) = conn.execute(
            f"INSERT INTO ly.{t.current_view} ({', '.join(cols)}, geometri) VALUES "
            f"({', '.join(['%s'] * len(cols))}, ST_SetSRID(ST_GeomFromGeoJSON(%s), 25832)) "
            "RETURNING objekt_id", [record[c] for c in cols] + [json.dumps(geometry)]
        ).fetchone()
    return str(oid)


def create_objects(url: str) -> dict[str, list[str]]:
    """collection id -> objekt_id of the three objects made for each theme."""
    (cvr,) = query(url, "SELECT cvr_kode FROM ly.kommune WHERE kommunekode = %s", [KBH])[0]
    out = {}
    for t in THEMES:
        out[t.collection_id] = [
            _insert(url, t, _record(t, i, off, cvr, full), _geometry(t, i))
            for i, (off, full) in enumerate(((1, True), (3, True), (1, False)))]
    return out


@pytest.fixture(scope="module")
def theme_db(template_db):
    for url in fresh_database(template_db, "ly_tx_"):
        yield url, create_objects(url)


@pytest.fixture(scope="module")
def admin(theme_db):
    with TestClient(create_app(make_settings(theme_db[0])), headers=ADMIN_HEADERS) as c:
        yield c


@pytest.fixture(scope="module")
def public(theme_db):
    with TestClient(create_app(make_settings(theme_db[0]))) as c:
        yield c


# --- reading an export -----------------------------------------------------------------------

def _download(client, t, fmt, tmp_path, headers=None):
    r = client.get(f"/collections/{t.collection_id}/items", params={"f": fmt, **BOX_PARAMS},
                   headers=headers or {})
    assert r.status_code == 200, r.text
    disposition = r.headers["content-disposition"]
    assert disposition.startswith(f'attachment; filename="{t.collection_id}-'), disposition
    assert disposition.endswith(f'.{SUFFIX[fmt]}"')
    path = tmp_path / f"{t.collection_id}.{SUFFIX[fmt]}"
    path.write_bytes(r.content)
    if fmt == "shp":
        names = zipfile.ZipFile(path).namelist()
        assert sorted(names) == sorted(f"{t.collection_id}.{e}"
                                       for e in ("shp", "shx", "dbf", "prj", "cpg"))
        return r, f"/vsizip/{path}/{t.collection_id}.shp"
    return r, str(path)


def _geometries(df, fmt) -> list:
    if fmt == "xlsx":  # GDAL reads XLSX as a table; its WKT column is text
        return [shapely.from_wkt(w) for w in df["WKT"]]
    return list(df.geometry)


def _layer_type(t, fmt) -> str:
    if fmt == "shp" and t.is_area:
        return "Polygon"  # a Shapefile's polygon type, which holds multi-part areas
    return t.geometry_type


def _source(url: str, t, where: str = "TRUE") -> dict[str, dict]:
    """The objects of a theme in the box (as the owner sees them: all of them)."""
    rows = query(url, f"SELECT objekt_id::text, off_kode, ST_AsText(geometri), "
                      f"ST_AsText(ST_Transform(geometri, 4326)) FROM ly.{t.current_view} "
                      f"WHERE {BOX_SQL} AND {where}")
    return {oid: {"off_kode": off, "wkt": wkt, "wkt4326": wkt4326}
            for oid, off, wkt, wkt4326 in rows}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("t", THEMES, ids=_id)
def test_every_export_of_every_theme_opens_in_gdal(theme_db, admin, tmp_path, t, fmt):
    url, made = theme_db
    expected = _source(url, t)
    r, src = _download(admin, t, fmt, tmp_path)
    info, df = pyogrio.read_info(src), pyogrio.read_dataframe(src)
    assert info["features"] == len(df) == len(expected)
    ids = df["objekt_id"].astype(str)
    assert set(ids) == set(expected)
    gis = fmt in ("gpkg", "shp")  # files with their CRS, EPSG:25832 by default
    if gis or fmt == "geojson":
        assert info["geometry_type"] == _layer_type(t, fmt)
        assert info["crs"] == ("EPSG:25832" if gis else "EPSG:4326")
    crs = "EPSG/0/25832" if gis else "OGC/1.3/CRS84"
    assert r.headers["content-crs"] == f"<http://www.opengis.net/def/crs/{crs}>"
    geometries = dict(zip(ids, _geometries(df, fmt)))
    for oid in made[t.collection_id]:
        g = geometries[oid]
        assert g.geom_type in (("Polygon", "MultiPolygon") if fmt == "shp" and t.is_area
                               else (t.geometry_type,))
        source = shapely.from_wkt(expected[oid]["wkt" if gis else "wkt4326"])
        assert g.hausdorff_distance(source) <= (0.001 if gis else 2e-7), (oid, g.wkt)
    columns = set(df.columns)
    if fmt == "shp":
        assert all(len(c) <= 10 for c in columns)
        assert {f.short_name for f in t.fields} <= columns
    else:
        assert set(t.property_columns(False)) <= columns
        first = df[ids == made[t.collection_id][0]].iloc[0]
        assert first[t.label] == query(url, f"SELECT {t.label} FROM ly.{t.current_view} "
                                            "WHERE objekt_id = %s",
                                       [made[t.collection_id][0]])[0][0]
        for f in t.personal_fields:  # the authorities read personal data
            assert first[f.name] not in (None, "") and first[f.name] == first[f.name]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("t", THEMES, ids=_id)
def test_the_public_export_has_public_objects_and_no_personal_attribute(theme_db, public,
                                                                        tmp_path, t, fmt):
    url, made = theme_db
    expected = _source(url, t, "off_kode = 1")
    assert {made[t.collection_id][0], made[t.collection_id][2]} <= set(expected)
    assert made[t.collection_id][1] not in expected
    r, src = _download(public, t, fmt, tmp_path)
    assert r.headers["cache-control"].startswith("public")
    df = pyogrio.read_dataframe(src)
    assert set(df["objekt_id"].astype(str)) == set(expected)
    columns = set(df.columns) - {"geometry", "WKT"} - ({"id"} if fmt == "geojson" else set())
    personal = {f.name for f in t.personal_fields} | {f.short_name for f in t.personal_fields}
    assert not columns & personal
    if fmt == "shp":
        allowed = {f.short_name for f in t.public_fields} | {
            f.twin for f in t.public_fields if f.twin}
    else:
        allowed = set(t.property_columns(True))
    assert columns <= allowed, columns - allowed
    assert not columns & {"off_kode", "cvr_kode", "note", "bruger_id"}


@pytest.mark.parametrize("t", PERSONAL_THEMES, ids=_id)
def test_a_planners_export_has_the_personal_attributes_empty(theme_db, admin, tmp_path, t):
    url, made = theme_db
    hidden = made[t.collection_id][1]  # off_kode 3: every authority, planners too
    for headers, readable in ((ADMIN_HEADERS, True), (PLANNER, False)):
        _, src = _download(admin, t, "gpkg", tmp_path, headers=headers)
        df = pyogrio.read_dataframe(src)
        row = df[df["objekt_id"].astype(str) == hidden]
        assert len(row) == 1
        for f in t.personal_fields:
            value = row.iloc[0][f.name]
            assert bool(value is not None and value == value) is readable, (f.name, value)


# --- GeoFA exchange files ----------------------------------------------------------------------

def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


@pytest.fixture(scope="module")
def register(theme_db):
    """Each theme's objects as the register holds them (every attribute, personal data
    included: the owner's connection reads as the system)."""
    url, made = theme_db
    with psycopg.connect(url) as conn:
        return {t.collection_id: F.register_features(conn, "t.objekt_id = ANY(%s::uuid[])",
                                                     [made[t.collection_id]], t=t)
                for t in THEMES}


@pytest.mark.parametrize("profile", F.PROFILES)
@pytest.mark.parametrize("fmt", F.FORMATS)
@pytest.mark.parametrize("t", THEMES, ids=_id)
def test_a_geofa_file_of_every_theme_reads_back_without_loss(register, tmp_path, t, fmt,
                                                             profile):
    features = register[t.collection_id]
    assert len(features) == 3
    for f in t.personal_fields:
        assert features[0]["properties"][f.name] is not None
    path = F.write_file(features, tmp_path / f"{t.geofa_view}.{fmt}", fmt, t, profile=profile)
    assert F.detect_theme(path) is t  # the file says which theme it holds
    if fmt != "geojson":
        info = pyogrio.read_info(path, **({"WRITE_GFS": "NO"} if fmt == "gml" else {}))
        wire = "MultiPolygon" if t.is_area else "MultiPoint"
        assert info["geometry_type"] == ("Polygon" if fmt == "shp" and t.is_area else wire)
        assert info["crs"] == "EPSG:25832"
    back = F.read_file(path)
    assert len(back) == len(features)
    names = [c for c in F.columns(t, profile) if c in t.fields_by_name]
    if profile == "geofa":
        assert set(names) < set(t.fields_by_name) or not t.meta["fields"]
    lost = []
    for a, b in zip(features, back):
        assert b["geometry"]["type"] == t.geometry_type
        for c in names:
            if not _same(a["properties"].get(c), b["properties"].get(c)):
                lost.append((a["id"], c, a["properties"].get(c), b["properties"].get(c)))
        distance = shape(a["geometry"]).hausdorff_distance(shape(b["geometry"]))
        if distance > 0.001:
            lost.append((a["id"], "geometri", distance))
    assert lost == []


def test_a_geofa_file_of_an_area_theme_refuses_points(tmp_path):
    areas = [t for t in THEMES if t.is_area]
    points = [t for t in THEMES if not t.is_area]
    assert areas and points
    data = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [[X0, Y0]]},
        "properties": {"temakode": areas[0].temakode}}]}
    with pytest.raises(F.FormatError, match="feature 1: geometry is a MultiPoint, not an area"):
        F.read_geojson(data)
    data["features"][0]["properties"]["temakode"] = points[0].temakode
    data["features"][0]["geometry"] = _geometry(areas[0], 0)
    with pytest.raises(F.FormatError, match="feature 1: geometry is a MultiPolygon, not a point"):
        F.read_geojson(data)


@pytest.mark.parametrize("t", THEMES, ids=_id)
def test_ly_geofa_export_and_import_of_every_theme(db_url, tmp_path, capsys, t):
    """`ly geofa export --tema` and `ly geofa import`: the register's own file changes
    nothing; an edited file makes new versions of what changed; an invalid one stores
    nothing."""
    (cvr,) = query(db_url, "SELECT cvr_kode FROM ly.kommune WHERE kommunekode = %s", [KBH])[0]
    ids = [_insert(db_url, t, _record(t, i, 1, cvr, True), _geometry(t, i)) for i in (0, 1)]
    total = query(db_url, f"SELECT count(*) FROM ly.{t.current_view} "
                          "WHERE beliggenhedskommune = %s", [KBH])[0][0]
    path = tmp_path / f"{t.geofa_view}.gpkg"
    assert ly(["--database-url", db_url, "geofa", "export", str(path), "--tema",
               str(t.temakode), "--format", "gpkg", "--kommune", str(KBH)]) == 0
    assert ly(["--database-url", db_url, "geofa", "import", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"laest {total}, opret 0, ret 0, uaendret {total}" in out, out

    with psycopg.connect(db_url) as conn:
        by_id = {f["id"]: f for f in F.register_features(conn, "t.objekt_id = ANY(%s::uuid[])",
                                                           [ids], t=t)}
    features = [by_id[i] for i in ids]
    label = t.fields_by_name[t.label]
    features[0]["properties"][label.name] = "Ændret i GeoFA"[: label.max_length]
    features[1]["geometry"] = _geometry(t, 2)  # moved or reshaped
    features.append(json.loads(json.dumps({"type": "Feature", "geometry": _geometry(t, 3),
                                           "properties": _record(t, 3, 1, cvr, False)},
                                          default=str)))
    versions = query(db_url, f"SELECT count(*) FROM ly.{t.history_view}")[0][0]
    with psycopg.connect(db_url) as conn:
        counts = F.import_features(conn, features, t, dry_run=True)
        assert counts == {"laest": 3, "opret": 1, "ret": 2, "uaendret": 0}
        assert query(db_url, f"SELECT count(*) FROM ly.{t.history_view}")[0][0] == versions
        bad = json.loads(json.dumps(features, default=str))
        bad[0]["properties"]["off_kode"] = 99
        with pytest.raises(F.FormatError, match=r"feature 1 .*properties\.off_kode"):
            F.import_features(conn, bad, t)
        assert query(db_url, f"SELECT count(*) FROM ly.{t.history_view}")[0][0] == versions
        assert F.import_features(conn, features, t) == counts
    rows = dict(query(db_url, f"SELECT objekt_id::text, {t.label} FROM ly.{t.current_view} "
                              "WHERE objekt_id = ANY(%s::uuid[])", [ids]))
    assert rows[ids[0]] == features[0]["properties"][label.name]
    # two new versions and one new object; the old versions are kept, closed
    assert query(db_url, f"SELECT count(*) FROM ly.{t.history_view}")[0][0] == versions + 3
    moved = query(db_url, f"SELECT ST_AsText(geometri) FROM ly.{t.current_view} "
                          "WHERE objekt_id = %s", [ids[1]])[0][0]
    assert shapely.from_wkt(moved).hausdorff_distance(shape(_geometry(t, 2))) <= 0.001


@pytest.mark.parametrize("t", [t for t in THEMES if t.is_area], ids=_id)
def test_an_area_too_long_for_an_xlsx_cell_is_a_problem_and_whole_in_csv(theme_db, admin, t):
    """Excel's cell holds 32 767 characters: an area whose WKT is longer refuses the XLSX
    export (400, naming `f`) instead of cutting the geometry; CSV carries it whole."""
    url, _ = theme_db
    (cvr,) = query(url, "SELECT cvr_kode FROM ly.kommune WHERE kommunekode = %s", [KBH])[0]
    x, y = X0 + 5000, Y0 - 3000  # outside BOX: the other tests do not see it
    circle = shapely.Point(x, y).buffer(150, quad_segs=600)
    circle = shapely.set_precision(circle, 0.001)
    oid = _insert(url, t, _record(t, 0, 1, cvr, False),
                  {"type": "MultiPolygon", "coordinates": [shapely.geometry.mapping(circle)[
                      "coordinates"]]})
    box = {"bbox": f"{x - 200},{y - 200},{x + 200},{y + 200}",
           "bbox-crs": BOX_PARAMS["bbox-crs"], "crs": BOX_PARAMS["bbox-crs"]}
    items = f"/collections/{t.collection_id}/items"
    r = admin.get(items, params={"f": "xlsx", **box})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["field"] == "f" and oid in r.json()["errors"][0]["detail"]
    r = admin.get(items, params={"f": "csv", **box})
    assert r.status_code == 200
    wkt = r.text.splitlines()[1].split('"')[1]
    assert len(wkt) > 32_767 and wkt.startswith("MULTIPOLYGON")
    assert shapely.from_wkt(wkt).hausdorff_distance(circle) <= 0.001


@pytest.mark.parametrize("fmt", F.FORMATS)
def test_a_theme_geofa_does_not_publish_travels_with_its_own_attributes(tmp_path, fmt):
    """A theme without a GeoFA meta file (a descriptor alone, registered for this test):
    its exchange files carry temakode, temanavn and its attributes with their twins, and
    read back (the theme found from the file) without loss."""
    from datamodel.fields import BELIGGENHEDSKOMMUNE, Field, generic_fields
    from datamodel.themes import MULTIPOLYGON, Theme

    extra = Theme(
        temakode=9902, collection_id="test_uden_geofa", title="Test", singular="testen",
        description="Et tema uden GeoFA-metafil.", geofa_view="t_9902_test", table="test_9902",
        geometry_type=MULTIPOLYGON, label="omraadenavn",
        fields=(*generic_fields(),
                Field("omraadenavn", "string", "Område", max_length=80, public=True),
                Field("drikkevand_kode", "integer", "Drikkevand", codelist="d_basis_ja_nej",
                      twin="drikkevand", feltnavn10="drikkevand"),
                Field("ansvarlig_tlfnr", "integer", "Telefon", personal=True,
                      feltnavn10="tlfnr"),
                Field("gyldig_fra", "date", "Gyldig fra"), BELIGGENHEDSKOMMUNE))
    assert F.columns(extra, "geofa")[:3] == ["temakode", "temanavn", "objekt_id"]
    assert "drikkevand" in F.columns(extra, "geofa")
    features = [{"type": "Feature", "id": str(uuid.uuid4()),
                 "geometry": _geometry(extra, i),
                 "properties": {"objekt_id": None, "versions_id": str(uuid.uuid4()),
                                "systid_fra": "2026-05-01T10:11:12.123456+02:00",
                                "systid_til": None, "oprettet": "2026-05-01T10:11:12+02:00",
                                "cvr_kode": None, "bruger_id": "test", "oprindkode": 0,
                                "statuskode": 3, "off_kode": 1, "noegle": "007",
                                "note": "Åen ved Ølby", "omraadenavn": f"Sø {i}",
                                "drikkevand_kode": 1, "ansvarlig_tlfnr": 20304050 + i,
                                "gyldig_fra": "2026-06-0" + str(i + 1),
                                "beliggenhedskommune": KBH}} for i in range(3)]
    for f in features:
        f["properties"]["objekt_id"] = f["id"]
    themes.register(extra)
    try:
        path = F.write_file(features, tmp_path / f"upload.{fmt}", fmt, extra, profile="geofa")
        assert F.detect_theme(path) is extra
        back = F.read_file(path)
    finally:
        themes.unregister(extra.collection_id)
    assert [b["properties"] for b in back] == [f["properties"] for f in features]
    for a, b in zip(features, back):
        assert shape(a["geometry"]).hausdorff_distance(shape(b["geometry"])) <= 0.001
