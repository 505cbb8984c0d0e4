"""OGC API - Features over every registered theme: collections, queryables and schema, items
with their filters and paging, CRUD with ETag/If-Match, history and `asof`, bad input,
area geometry, `datetime` on validity periods, who sees which attributes, and GDAL.

Every test is parametrized over `themes.all_themes()` and builds what it sends from the
theme's descriptor (required attributes with values inside their ranges and active codes,
a point or an area in Copenhagen), so a new theme is tested without a line here. The
database is the witness: what a test expects is computed with SQL on the theme's base table.

One database and one app serve the whole module (the tests create the objects they need and
tell them apart by a `noegle` of their own); tests that count rows do so around their own
request.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import orjson
import pytest
from fastapi.testclient import TestClient

from datamodel import themes
from datamodel.codelists import load_codelists
from datamodel.fields import Field
from datamodel.themes import Theme
from service.app import create_app
from tests.conftest import (ADMIN_HEADERS, LiveServer, bearer, fresh_database, make_settings,
                            query)

GEOJSON = "application/geo+json"
MERGE_PATCH = "application/merge-patch+json"
PROBLEM = "application/problem+json"
KBH = 101
COPENHAGEN = (12.568, 55.676)  # lon/lat, municipality 101
AARHUS = (10.2039, 56.1535)  # municipality 751
KBH_BOX = (12.50, 55.64, 12.64, 55.72)  # CRS84, around COPENHAGEN
DK = ZoneInfo("Europe/Copenhagen")
THEMES = themes.all_themes()
AREA_THEMES = [t for t in THEMES if t.is_area]
VALIDITY_THEMES = [t for t in THEMES if t.validity]


def _ids(seq) -> list[str]:
    return [t.collection_id for t in seq]


by_theme = pytest.mark.parametrize("theme", THEMES, ids=_ids(THEMES))


# --- building valid objects from the descriptor -------------------------------------------

def _active_codes(f: Field) -> list[int]:
    return sorted(c.kode for c in load_codelists()[f.codelist].values if c.aktiv)


def sample_value(f: Field):
    """A valid value of an attribute: an active code, the middle of its range, a short text."""
    if f.codelist:
        return _active_codes(f)[0]
    if f.type in ("integer", "number"):
        lo = f.minimum if f.minimum is not None else 1
        hi = f.maximum if f.maximum is not None else lo + 100
        mid = (lo + hi) / 2
        return int(mid) if f.type == "integer" else float(mid)
    if f.type == "string":
        return f"Test {f.name}"[: f.max_length or 40]
    if f.type == "date":
        return date.today().isoformat()
    if f.type == "date-time":
        return datetime.now(timezone.utc).isoformat()
    if f.type == "uuid":
        return str(uuid.uuid4())
    if f.type == "boolean":
        return True
    raise AssertionError(f.type)


def square(lon: float, lat: float, d: float = 0.002) -> dict:
    return {"type": "Polygon", "coordinates": [[[lon, lat], [lon + d, lat], [lon + d, lat + d],
                                                [lon, lat + d], [lon, lat]]]}


def geometry(theme: Theme, lon_lat=COPENHAGEN) -> dict:
    if theme.is_area:
        return square(*lon_lat)
    return {"type": "Point", "coordinates": list(lon_lat)}


def valid_properties(theme: Theme, **overrides) -> dict:
    """Every required attribute without a default, the personal ones and the label."""
    props = {}
    for f in theme.writable_fields:
        if (f.required and f.default is None) or f.personal or f.name == theme.label:
            props[f.name] = sample_value(f)
    props.update(overrides)
    return props


def valid_feature(theme: Theme, lon_lat=COPENHAGEN, **overrides) -> dict:
    return {"type": "Feature", "geometry": geometry(theme, lon_lat),
            "properties": valid_properties(theme, **overrides)}


def items(theme: Theme) -> str:
    return f"/collections/{theme.collection_id}/items"


def post(client, theme, body, **headers):
    return client.post(items(theme), content=orjson.dumps(body),
                       headers={"Content-Type": GEOJSON, **headers})


def create(client, theme, body) -> tuple[str, str]:
    r = post(client, theme, body)
    assert r.status_code == 201, r.text
    return r.json()["id"], r.headers["etag"]


def count_rows(url, theme) -> int:
    return query(url, f"SELECT count(*) FROM ly.{theme.table}")[0][0]


def rows_of(url, theme, objekt_id) -> list[tuple]:
    """Every stored version of one object (as text), oldest first."""
    return query(url, f"SELECT b::text FROM ly.{theme.table} b WHERE objekt_id = %s "
                      "ORDER BY systid_fra, systid_til NULLS LAST", [objekt_id])


def assert_problem(r, status: int, field: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    if field is not None:
        assert field in [e["field"] for e in body.get("errors", [])], body
    return body


def batch() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


# --- fixtures: one database and one app for the module --------------------------------------

@pytest.fixture(scope="module")
def themes_db(template_db):
    for url in fresh_database(template_db, "ly_th_"):
        # Planner statistics of the copied demo register (without them a page's lookup by
        # versions_id can scan an index per row).
        query(url, "ANALYZE")
        yield url


@pytest.fixture(scope="module")
def app(themes_db):
    return create_app(make_settings(themes_db))


@pytest.fixture(scope="module")
def admin(app):
    with TestClient(app, headers=ADMIN_HEADERS) as c:
        yield c


@pytest.fixture(scope="module")
def public(app, admin):
    """Without credentials, on the same app (its pool is opened by `admin`'s lifespan)."""
    return TestClient(app)


@pytest.fixture(scope="module")
def kbh_editor(themes_db) -> dict:
    (cvr,) = query(themes_db, "SELECT cvr_kode FROM ly.kommune WHERE kommunekode = %s",
                   [KBH])[0]
    return bearer(["municipal_editor"], subject="kbh-redaktoer", cvr=cvr, kommuner=[KBH])


PLANNER = bearer(["planner"], subject="planlaegger")


@pytest.fixture(scope="module")
def seeded(admin) -> dict[str, dict[str, str]]:
    """Per theme: a public object and an authorities' one in Copenhagen, a public one in
    Aarhus (outside KBH_BOX). {collection_id: {name: objekt_id}}."""
    out = {}
    for theme in THEMES:
        key = batch()
        out[theme.collection_id] = {
            "kbh_public": create(admin, theme, valid_feature(theme, noegle=key, off_kode=1))[0],
            "kbh_authorities": create(admin, theme, valid_feature(
                theme, (COPENHAGEN[0] + 0.01, COPENHAGEN[1]), noegle=key, off_kode=3))[0],
            "aarhus_public": create(admin, theme, valid_feature(
                theme, AARHUS, noegle=key, off_kode=1))[0],
            "noegle": key,
        }
    return out


# --- collections, queryables, schema ---------------------------------------------------------

def test_collections_list_every_theme_with_extent_and_links(admin, app, seeded, themes_db):
    app.state.extent_cache.clear()  # the objects seeded above count
    doc = admin.get("/collections").json()
    listed = doc["collections"]
    assert [c["id"] for c in listed] == _ids(THEMES)
    for theme, c in zip(THEMES, listed):
        assert c["title"] == theme.title and c["description"] == theme.description
        assert c["x-ly-temakode"] == theme.temakode
        assert c["storageCrs"].endswith("/EPSG/0/25832") and c["crs"][0].endswith("CRS84")
        rels = {link["rel"]: link["href"] for link in c["links"]}
        base = f"/collections/{theme.collection_id}"
        assert rels["items"].split("?")[0].endswith(base + "/items")
        assert rels["http://www.opengis.net/def/rel/ogc/1.0/queryables"].endswith(
            base + "/queryables")
        assert rels["http://www.opengis.net/def/rel/ogc/1.0/schema"].endswith(base + "/schema")
        assert rels["http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector"].endswith(
            base + "/tiles")
        xmin, ymin, xmax, ymax = c["extent"]["spatial"]["bbox"][0]
        (exp,) = query(themes_db, f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
                                  f"FROM (SELECT ST_Extent(ST_Transform(geometri, 4326)) e "
                                  f"FROM ly.{theme.table} WHERE systid_til IS NULL) x")
        # the extent is that of every current object (rounded to 5 decimals)
        assert [xmin, ymin, xmax, ymax] == pytest.approx(list(exp), abs=2e-5)
        (start, end), = c["extent"]["temporal"]["interval"]
        if theme.validity:
            f, t = theme.validity
            (lo, hi, open_ended), = query(
                themes_db, f"SELECT min({f}), max({t}), bool_or({t} IS NULL) "
                           f"FROM ly.{theme.table} WHERE systid_til IS NULL")
            # the first day's start and the last day's end, Danish time
            assert datetime.fromisoformat(start) == datetime.combine(lo, time.min, DK)
            if open_ended:
                assert end is None
            else:
                assert datetime.fromisoformat(end) == datetime.combine(hi, time(23, 59, 59), DK)
        else:
            (first,), = query(themes_db, f"SELECT min(systid_fra) FROM ly.{theme.table}")
            assert datetime.fromisoformat(start) == first and end is None
        one = admin.get(base).json()
        assert one["id"] == theme.collection_id and one["extent"] == c["extent"]


def test_the_extent_cache_keys_on_theme_and_scope(admin, public, app, seeded):
    app.state.extent_cache.clear()
    admin.get("/collections")
    public.get("/collections")
    keys = set(app.state.extent_cache)
    assert {k[0] for k in keys} == set(_ids(THEMES))
    assert len(keys) == 2 * len(THEMES)  # one per theme and scope


@by_theme
def test_queryables_and_schema_follow_the_descriptor(admin, public, theme):
    base = f"/collections/{theme.collection_id}"
    for client, audience in ((admin, theme.fields), (public, theme.public_fields)):
        q = client.get(base + "/queryables")
        assert q.status_code == 200 and q.headers["content-type"] == "application/schema+json"
        qdoc = q.json()
        assert qdoc["title"] == theme.title
        assert set(qdoc["properties"]) == {f.name for f in audience} | {"geometri"}
        assert qdoc["properties"]["geometri"]["format"] == theme.geometry_format

        s = client.get(base + "/schema").json()
        names = {f.name for f in audience} | {f.twin for f in audience if f.twin}
        assert set(s["properties"]) == names | {"geometri"}
        assert s["properties"]["geometri"]["format"] == theme.geometry_format
        assert s["properties"]["objekt_id"]["x-ogc-role"] == "id"
        for f in audience:
            prop = s["properties"][f.name]
            assert prop["title"] == f.title
            assert prop.get("x-ly-personal", False) is f.personal
            if f.codelist:
                assert prop["enum"] == _active_codes(f)
            if f.maximum is not None:
                assert prop["maximum"] == f.maximum
    public_schema = public.get(base + "/schema").json()["properties"]
    assert not {f.name for f in theme.personal_fields} & set(public_schema)
    assert all(not p.get("x-ly-personal") for p in public_schema.values())


@pytest.mark.parametrize("path", ["", "/items", "/items/00000000-0000-0000-0000-000000000001",
                                  "/queryables", "/schema"])
def test_an_unknown_collection_is_a_404_problem(admin, path):
    body = assert_problem(admin.get(f"/collections/ikke_et_tema{path}"), 404)
    assert "ikke_et_tema" in body["detail"]
    assert_problem(admin.post("/collections/ikke_et_tema/items", content=b"{}",
                              headers={"Content-Type": GEOJSON}), 404)


def test_openapi_enumerates_every_collection(admin):
    spec = admin.get("/openapi.json").json()
    ids = _ids(THEMES)
    declared = [p for path in spec["paths"].values() for op in path.values()
                for p in op.get("parameters", []) if p["name"] == "collection_id"]
    assert declared and all(p["schema"]["enum"] == ids for p in declared)
    names = {p["name"] for p in
             spec["paths"]["/collections/{collection_id}/items"]["get"]["parameters"]}
    for theme in THEMES:
        assert {f.name for f in theme.fields} <= names
        assert f"Feature_{theme.collection_id}" in spec["components"]["schemas"]
    body = spec["paths"]["/collections/{collection_id}/items"]["post"]["requestBody"]
    refs = body["content"]["application/geo+json"]["schema"]["anyOf"]
    assert len(refs) == len(THEMES)


@by_theme
def test_every_html_page_of_a_theme_renders(admin, theme, seeded):
    oid = seeded[theme.collection_id]["kbh_public"]
    base = f"/collections/{theme.collection_id}"
    for path in (base, base + "/items", f"{base}/items/{oid}", f"{base}/items/{oid}/history",
                 base + "/queryables", base + "/schema", "/collections", "/"):
        r = admin.get(path, params={"f": "html"})
        assert r.status_code == 200, (path, r.text[:300])
        assert r.headers["content-type"].startswith("text/html")
        assert theme.title in r.text, path
    page = admin.get(f"{base}/items/{oid}", params={"f": "html"}).text
    label = theme.fields_by_name[theme.label]
    assert f"<th title=\"{theme.label}\">{label.title}</th>" in page


# --- items: filters, paging, crs, exports ---------------------------------------------------

@by_theme
def test_items_filters_paging_and_crs(admin, theme, seeded, themes_db):
    key = seeded[theme.collection_id]["noegle"]
    mine = {v for k, v in seeded[theme.collection_id].items() if k != "noegle"}
    by_param = admin.get(items(theme), params={"noegle": key, "limit": 100}).json()
    assert {f["id"] for f in by_param["features"]} == mine
    assert by_param["numberMatched"] == 3
    by_cql = admin.get(items(theme), params={"filter": f"noegle = '{key}'"}).json()
    assert {f["id"] for f in by_cql["features"]} == mine
    by_json = admin.get(items(theme), params={
        "filter": json.dumps({"op": "=", "args": [{"property": "noegle"}, key]}),
        "filter-lang": "cql2-json"}).json()
    assert {f["id"] for f in by_json["features"]} == mine

    # bbox: exactly what the database finds in the box
    box = admin.get(items(theme), params={"bbox": ",".join(map(str, KBH_BOX)),
                                          "limit": 10000}).json()
    expected = {str(r[0]) for r in query(
        themes_db, f"SELECT objekt_id FROM ly.{theme.table} WHERE systid_til IS NULL AND "
                   "ST_Intersects(ST_Transform(geometri, 4326), "
                   "ST_MakeEnvelope(%s, %s, %s, %s, 4326))", KBH_BOX)}
    assert {f["id"] for f in box["features"]} == expected
    assert seeded[theme.collection_id]["kbh_public"] in expected
    assert seeded[theme.collection_id]["aarhus_public"] not in expected

    # paging with the keyset cursor: every object once
    seen, url = [], items(theme) + f"?noegle={key}&limit=2"
    while url:
        doc = admin.get(url).json()
        seen += [f["id"] for f in doc["features"]]
        nxt = [link["href"] for link in doc["links"] if link["rel"] == "next"]
        url = nxt[0] if nxt else None
    assert sorted(seen) == sorted(mine) and len(seen) == 3

    # crs: EPSG:25832 gives the stored coordinates
    oid = seeded[theme.collection_id]["kbh_public"]
    r = admin.get(f"{items(theme)}/{oid}",
                  params={"crs": "http://www.opengis.net/def/crs/EPSG/0/25832"})
    assert r.headers["content-crs"] == "<http://www.opengis.net/def/crs/EPSG/0/25832>"
    g = r.json()["geometry"]
    assert g["type"] == theme.geometry_type
    (xmin, ymin), = query(themes_db, f"SELECT ST_XMin(geometri), ST_YMin(geometri) FROM "
                                     f"ly.{theme.current_view} WHERE objekt_id = %s", [oid])
    flat = g["coordinates"] if g["type"] == "Point" else \
        [p for poly in g["coordinates"] for ring in poly for p in ring]
    if g["type"] == "Point":
        assert flat == pytest.approx([xmin, ymin], abs=0.01)
    else:
        assert min(p[0] for p in flat) == pytest.approx(xmin, abs=0.01)
        assert min(p[1] for p in flat) == pytest.approx(ymin, abs=0.01)
    # a bad filter on a theme names the property
    body = assert_problem(admin.get(items(theme), params={"filter": "ikke_her = 1"}), 400)
    assert "ikke_her" in json.dumps(body)


@by_theme
def test_exports_are_the_themes_filtered_objects(admin, theme, seeded):
    key = seeded[theme.collection_id]["noegle"]
    mine = {v for k, v in seeded[theme.collection_id].items() if k != "noegle"}
    r = admin.get(items(theme), params={"f": "geojson", "noegle": key})
    assert r.status_code == 200, r.text[:500]
    assert theme.collection_id in r.headers["content-disposition"]
    features = r.json()["features"]
    assert {str(f["id"]) if "id" in f else f["properties"]["objekt_id"]
            for f in features} == mine
    r = admin.get(items(theme), params={"f": "csv", "noegle": key})
    assert r.status_code == 200
    assert len([line for line in r.text.splitlines() if line.strip()]) == 1 + len(mine)


# --- CRUD with ETag and If-Match; history and asof -------------------------------------------

@by_theme
def test_create_read_replace_patch_delete_with_etags(admin, theme, themes_db):
    label = theme.label
    key = batch()
    r = post(admin, theme, valid_feature(theme, noegle=key, **{label: "Første"}))
    assert r.status_code == 201, r.text
    oid, first_etag = r.json()["id"], r.headers["etag"]
    assert r.headers["location"].endswith(f"{items(theme)}/{oid}")
    assert r.json()["geometry"]["type"] == theme.geometry_type
    (versions_id, kommune, bruger), = query(
        themes_db, f"SELECT versions_id, beliggenhedskommune, bruger_id "
                   f"FROM ly.{theme.current_view} WHERE objekt_id = %s", [oid])
    assert first_etag == f'"{versions_id}"' and kommune == KBH and bruger == "sams-admin"

    got = admin.get(f"{items(theme)}/{oid}")
    assert got.headers["etag"] == first_etag
    assert got.json()["properties"][label] == "Første"

    # PUT with the current ETag: a new version
    r = admin.put(f"{items(theme)}/{oid}",
                  content=orjson.dumps(valid_feature(theme, noegle=key, **{label: "Anden"})),
                  headers={"Content-Type": GEOJSON, "If-Match": first_etag})
    assert r.status_code == 200, r.text
    second_etag = r.headers["etag"]
    assert second_etag != first_etag and r.json()["properties"][label] == "Anden"

    # a stale If-Match: 412, and nothing changed
    before = rows_of(themes_db, theme, oid)
    r = admin.put(f"{items(theme)}/{oid}",
                  content=orjson.dumps(valid_feature(theme, noegle=key, **{label: "Forkert"})),
                  headers={"Content-Type": GEOJSON, "If-Match": first_etag})
    assert_problem(r, 412, "If-Match")
    assert r.headers["etag"] == second_etag
    r = admin.patch(f"{items(theme)}/{oid}", content=orjson.dumps({"properties": {
        label: "Forkert"}}), headers={"Content-Type": MERGE_PATCH, "If-Match": first_etag})
    assert_problem(r, 412, "If-Match")
    assert_problem(admin.delete(f"{items(theme)}/{oid}", headers={"If-Match": first_etag}),
                   412, "If-Match")
    assert rows_of(themes_db, theme, oid) == before

    # PATCH with the current ETag: only the label changes
    r = admin.patch(f"{items(theme)}/{oid}", content=orjson.dumps({"properties": {
        label: "Tredje"}}), headers={"Content-Type": MERGE_PATCH, "If-Match": second_etag})
    assert r.status_code == 200, r.text
    third_etag = r.headers["etag"]
    patched = r.json()["properties"]
    assert patched[label] == "Tredje" and patched["noegle"] == key

    # history: every version, oldest first, as stored
    hist = admin.get(f"{items(theme)}/{oid}/history").json()["features"]
    assert [v["properties"][label] for v in hist] == ["Første", "Anden", "Tredje"]
    stored = query(themes_db, f"SELECT versions_id::text FROM ly.{theme.table} "
                              "WHERE objekt_id = %s ORDER BY systid_fra", [oid])
    assert [v["id"] for v in hist] == [s[0] for s in stored]
    assert f'"{hist[-1]["id"]}"' == third_etag
    # asof: the version valid then
    then = hist[0]["properties"]["systid_fra"]
    old = admin.get(f"{items(theme)}/{oid}", params={"asof": then})
    assert old.json()["properties"][label] == "Første"
    assert old.headers["etag"] == f'"{hist[0]["id"]}"'
    listed = admin.get(items(theme), params={"asof": then, "noegle": key}).json()["features"]
    assert [f["properties"][label] for f in listed] == ["Første"]

    # OPTIONS, then DELETE with the current ETag: ended, history kept
    assert "POST" in admin.options(items(theme)).headers["allow"]
    assert "DELETE" in admin.options(f"{items(theme)}/{oid}").headers["allow"]
    assert admin.delete(f"{items(theme)}/{oid}",
                        headers={"If-Match": third_etag}).status_code == 204
    assert_problem(admin.get(f"{items(theme)}/{oid}"), 404)
    assert query(themes_db, f"SELECT count(*) FROM ly.{theme.current_view} "
                            "WHERE objekt_id = %s", [oid]) == [(0,)]
    assert len(admin.get(f"{items(theme)}/{oid}/history").json()["features"]) == 3
    body = assert_problem(admin.delete(f"{items(theme)}/{oid}"), 404)
    assert theme.singular.capitalize() in body["detail"]


# --- bad input: a problem naming the field, nothing stored -----------------------------------

def _first(theme: Theme, pred) -> Field | None:
    return next((f for f in theme.writable_fields if pred(f)), None)


def _bad_cases(theme: Theme) -> list:
    """(case, mutate(feature), field) for a theme, from its descriptor."""
    cases = []
    ranged = _first(theme, lambda f: f.type == "integer" and not f.codelist
                    and f.maximum is not None)
    if ranged:
        cases.append(("out_of_range", {ranged.name: int(ranged.maximum) + 1},
                      f"properties.{ranged.name}"))
    coded = _first(theme, lambda f: f.codelist and f.required) or \
        _first(theme, lambda f: f.codelist)
    unknown = max(c.kode for c in load_codelists()[coded.codelist].values) + 1000
    cases.append(("unknown_code", {coded.name: unknown}, f"properties.{coded.name}"))
    cases.append(("unknown_attribute", {"ikke_en_attribut": 1}, "properties.ikke_en_attribut"))
    text = theme.fields_by_name[theme.label]
    if text.type == "string" and text.max_length:
        cases.append(("too_long", {text.name: "x" * (text.max_length + 1)},
                      f"properties.{text.name}"))
    required = _first(theme, lambda f: f.required and f.default is None)
    if required:
        cases.append(("missing_required", {required.name: None},
                      f"properties.{required.name}"))
    else:  # GeoFA requires none of the theme's attributes: the geometry, then
        cases.append(("missing_required", "geometry", "geometry"))
    return cases


BAD = [pytest.param(t, case, change, field, id=f"{t.collection_id}-{case}")
       for t in THEMES for case, change, field in _bad_cases(t)]


@pytest.mark.parametrize("theme, case, change, field", BAD)
def test_bad_input_is_a_problem_naming_the_field_and_stores_nothing(admin, themes_db, theme,
                                                                   case, change, field):
    body = valid_feature(theme)
    if change == "geometry":
        body["geometry"] = None
    else:
        for name, value in change.items():
            if value is None:
                body["properties"].pop(name, None)
            else:
                body["properties"][name] = value
    before = count_rows(themes_db, theme)
    problem = assert_problem(post(admin, theme, body), 422, field)
    assert field in problem["detail"]
    assert count_rows(themes_db, theme) == before
    # the same change in a PUT of an existing object: refused, its versions unchanged
    oid = seeded_once(admin, theme)
    stored = rows_of(themes_db, theme, oid)
    r = admin.put(f"{items(theme)}/{oid}", content=orjson.dumps(body),
                  headers={"Content-Type": GEOJSON})
    assert_problem(r, 422, field)
    assert rows_of(themes_db, theme, oid) == stored


_ONE: dict[str, str] = {}


def seeded_once(admin, theme: Theme) -> str:
    """One object per theme for the PUT cases (made once)."""
    if theme.collection_id not in _ONE:
        _ONE[theme.collection_id] = create(admin, theme, valid_feature(theme))[0]
    return _ONE[theme.collection_id]


@by_theme
def test_the_wrong_geometry_type_is_refused(admin, themes_db, theme):
    body = valid_feature(theme)
    body["geometry"] = {"type": "Point", "coordinates": list(COPENHAGEN)} if theme.is_area \
        else square(*COPENHAGEN)
    before = count_rows(themes_db, theme)
    assert_problem(post(admin, theme, body), 422, "geometry.type")
    assert count_rows(themes_db, theme) == before


def _ring(n: int, lon=COPENHAGEN[0], lat=COPENHAGEN[1], r=0.01) -> list:
    pts = [[lon + r * math.cos(2 * math.pi * i / n), lat + r * math.sin(2 * math.pi * i / n)]
           for i in range(n)]
    return pts + [pts[0]]


AREA_CASES = {
    "self_intersecting": ([[[12.56, 55.67], [12.57, 55.68], [12.57, 55.67], [12.56, 55.68],
                            [12.56, 55.67]]], ["Self-intersection", " at (", "EPSG:25832"]),
    "ring_not_closed": ([[[12.56, 55.67], [12.57, 55.67], [12.57, 55.68], [12.56, 55.68]]],
                        ["not closed"]),
    "outside_denmark": (square(13.40, 52.52)["coordinates"], ["outside Denmark"]),
    "too_many_vertices": ([_ring(40)], ["41 vertices; at most 30", "LY_MAX_VERTICES"]),
}


@pytest.mark.parametrize("case", sorted(AREA_CASES))
@pytest.mark.parametrize("theme", AREA_THEMES, ids=_ids(AREA_THEMES))
def test_an_invalid_area_is_refused_with_the_reason(themes_db, theme, case):
    coordinates, words = AREA_CASES[case]
    app = create_app(make_settings(themes_db, max_vertices=30))
    body = valid_feature(theme)
    body["geometry"] = {"type": "Polygon", "coordinates": coordinates}
    with TestClient(app, headers=ADMIN_HEADERS) as client:
        before = count_rows(themes_db, theme)
        problem = assert_problem(post(client, theme, body), 422, "geometry.coordinates")
        detail = next(e["detail"] for e in problem["errors"]
                      if e["field"] == "geometry.coordinates")
        for word in words:
            assert word in detail, detail
        assert count_rows(themes_db, theme) == before
        # within the limit, the same app stores an area of 20 vertices
        body["geometry"] = {"type": "Polygon", "coordinates": [_ring(20)]}
        r = post(client, theme, body)
        assert r.status_code == 201, r.text
        assert r.json()["geometry"]["type"] == "MultiPolygon"


# --- datetime on validity periods ------------------------------------------------------------

@pytest.mark.parametrize("theme", VALIDITY_THEMES, ids=_ids(VALIDITY_THEMES))
def test_datetime_selects_the_objects_valid_then(admin, themes_db, theme):
    start, end = theme.validity
    key = batch()
    today = date.today()
    periods = {
        "past": (date(2020, 1, 1), date(2020, 12, 31)),
        "current": (today - timedelta(days=10), today + timedelta(days=10)),
        "future": (today + timedelta(days=100), today + timedelta(days=200)),
        "open_ended": (date(2021, 1, 1), None),
        "future_open": (today + timedelta(days=300), None),
        "one_day": (date(2020, 6, 1), date(2020, 6, 1)),
    }
    for name, (fra, til) in periods.items():
        create(admin, theme, valid_feature(theme, noegle=key, **{
            theme.label: name, start: fra.isoformat(),
            end: til.isoformat() if til else None}))

    def expected(lo: str | None, hi: str | None) -> set[str]:
        clauses, args = ["systid_til IS NULL", "noegle = %s"], [key]
        if hi is not None:
            clauses.append(f"{start} <= (%s::timestamptz AT TIME ZONE 'Europe/Copenhagen')::date")
            args.append(hi)
        if lo is not None:
            clauses.append(f"({end} IS NULL OR {end} >= "
                           "(%s::timestamptz AT TIME ZONE 'Europe/Copenhagen')::date)")
            args.append(lo)
        return {r[0] for r in query(themes_db, f"SELECT {theme.label} FROM ly.{theme.table} "
                                               f"WHERE {' AND '.join(clauses)}", args)}

    now = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    later = (datetime.now(timezone.utc) + timedelta(days=150)).strftime("%Y-%m-%dT12:00:00Z")
    requests = [
        (now, now, now),
        ("2020-06-01T10:00:00Z", "2020-06-01T10:00:00Z", "2020-06-01T10:00:00Z"),
        # 23:30 UTC on New Year's Eve is already 2021 in Copenhagen
        ("2020-12-31T23:30:00Z", "2020-12-31T23:30:00Z", "2020-12-31T23:30:00Z"),
        (later, later, later),
        ("2020-06-02T00:00:00Z/2021-06-01T00:00:00Z", "2020-06-02T00:00:00Z",
         "2021-06-01T00:00:00Z"),
        ("../2020-06-01T12:00:00Z", None, "2020-06-01T12:00:00Z"),
        (f"{later}/..", later, None),
    ]
    results = {}
    for value, lo, hi in requests:
        r = admin.get(items(theme), params={"datetime": value, "noegle": key, "limit": 100})
        assert r.status_code == 200, r.text
        got = {f["properties"][theme.label] for f in r.json()["features"]}
        assert got == expected(lo, hi), value
        results[value] = got
    assert results[now] == {"current", "open_ended"}
    assert results["2020-12-31T23:30:00Z"] == {"open_ended"}
    assert results["2020-06-01T10:00:00Z"] == {"past", "one_day"}
    assert results[later] == {"future", "open_ended"}
    assert_problem(admin.get(items(theme), params={"datetime": "2021-01-01/2020-01-01"}),
                   400, "datetime")


# --- who sees which objects and attributes ---------------------------------------------------

@by_theme
def test_each_audience_sees_its_objects_and_attributes(admin, public, kbh_editor, theme,
                                                       seeded, themes_db):
    mine = seeded[theme.collection_id]
    personal = {f.name for f in theme.personal_fields}
    sent = valid_properties(theme)
    public_columns = set(theme.property_columns(public=True))

    # the public: off_kode 1 objects only, public attributes only
    r = public.get(f"{items(theme)}/{mine['kbh_public']}")
    assert r.status_code == 200
    assert set(r.json()["properties"]) == public_columns
    assert_problem(public.get(f"{items(theme)}/{mine['kbh_authorities']}"), 404)
    listed = public.get(items(theme), params={"limit": 10000}).json()["features"]
    visible = {str(r[0]) for r in query(themes_db, f"SELECT objekt_id FROM ly.{theme.table} "
                                                   "WHERE systid_til IS NULL AND off_kode = 1")}
    assert {f["id"] for f in listed} == visible
    assert all(set(f["properties"]) == public_columns for f in listed)
    hist = public.get(f"{items(theme)}/{mine['kbh_public']}/history").json()["features"]
    assert hist and all(not personal & set(v["properties"]) for v in hist)
    assert_problem(public.get(items(theme), params={"noegle": mine["noegle"]}), 400, "noegle")

    # a planner: off_kode 1 and 3, but never the personal data
    for oid in (mine["kbh_public"], mine["kbh_authorities"]):
        props = admin.get(f"{items(theme)}/{oid}", headers=PLANNER).json()["properties"]
        assert all(props.get(name) is None for name in personal), props
    listed = admin.get(items(theme), params={"noegle": mine["noegle"]},
                       headers=PLANNER).json()["features"]
    assert len(listed) == 3
    assert all(f["properties"].get(name) is None for f in listed for name in personal)

    # the municipality's editor: the personal data of its objects
    props = admin.get(f"{items(theme)}/{mine['kbh_authorities']}",
                      headers=kbh_editor).json()["properties"]
    for name in personal:
        assert props[name] == sent[name]
    # and the national administrator's
    props = admin.get(f"{items(theme)}/{mine['kbh_authorities']}").json()["properties"]
    assert {name: props[name] for name in personal} == {name: sent[name] for name in personal}


@by_theme
def test_writes_need_an_editor(public, admin, theme, themes_db):
    before = count_rows(themes_db, theme)
    assert_problem(post(public, theme, valid_feature(theme)), 401)
    assert_problem(post(admin, theme, valid_feature(theme), **PLANNER), 403)
    assert count_rows(themes_db, theme) == before


# --- GDAL reads every collection -------------------------------------------------------------

_GDAL_CHILD = r"""
import json, sys
import pyogrio, shapely
from pyogrio import raw

url, token, jobs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
out = []
for job in jobs:
    pyogrio.set_gdal_config_options({"GDAL_HTTP_AUTH": "BEARER" if job["signed_in"] else None,
                                     "GDAL_HTTP_BEARER": token if job["signed_in"] else None})
    bbox = tuple(job["bbox"]) if job.get("bbox") else None
    try:
        meta, _fids, geoms, fields = raw.read("OAPIF:" + url, layer=job["layer"], bbox=bbox,
                                              **job["options"])
    except Exception as exc:
        out.append({"error": type(exc).__name__, "message": str(exc)})
        continue
    names = list(meta["fields"])
    shapes = shapely.from_wkb(geoms) if len(geoms) else []
    out.append({
        "read_crs": meta["crs"], "fields": names,
        "ids": [str(v) for v in fields[names.index("id")]] if names else [],
        "bounds": [list(shapely.bounds(g)) for g in shapes],
    })
print(json.dumps(out))
"""


def _gdal(url: str, jobs: list[dict]) -> list[dict]:
    """Run GDAL's OAPIF driver (pyogrio) in a child process: the test server is a thread of
    this process, and pyogrio holds the GIL while GDAL fetches (tests/test_clients.py)."""
    env = dict(os.environ, GDAL_HTTP_TIMEOUT="60")
    for name in ("GDAL_HTTP_AUTH", "GDAL_HTTP_BEARER", "GDAL_HTTP_HEADERS", "CPL_DEBUG"):
        env.pop(name, None)
    bearer_token = ADMIN_HEADERS["Authorization"].split(" ", 1)[1]
    proc = subprocess.run([sys.executable, "-c", _GDAL_CHILD, url, bearer_token,
                           json.dumps(jobs)], capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def live(themes_db, admin, seeded):
    with LiveServer(themes_db) as server:
        yield server


def test_gdal_reads_every_collection_as_the_caller_may_see_it(live, themes_db):
    """Signed in as the national administrator and as the public: every layer in
    EPSG:25832 (the stored coordinates) and with a CRS84 bbox, the database's count and
    objects for that caller (the public: off_kode 1, the public attributes only)."""
    pytest.importorskip("pyogrio")
    jobs = [{"layer": theme.collection_id, "kind": kind, "bbox": bbox, "signed_in": signed_in,
             "options": {"PAGE_SIZE": 5000, **options}}
            for signed_in in (True, False) for theme in THEMES
            for kind, options, bbox in (("utm", {"CRS": "EPSG:25832"}, None),
                                        ("bbox", {"CRS": "OGC:CRS84"}, list(KBH_BOX)))]
    results = _gdal(live.url, jobs)
    for job, got in zip(jobs, results):
        theme = themes.get(job["layer"])
        assert "error" not in got, (job, got)
        where = "systid_til IS NULL" + ("" if job["signed_in"] else " AND off_kode = 1")
        if job["kind"] == "bbox":
            where += (" AND ST_Intersects(ST_Transform(geometri, 4326), "
                      "ST_MakeEnvelope(%s, %s, %s, %s, 4326))")
        rows = query(themes_db, f"SELECT objekt_id, ST_XMin(geometri), ST_YMin(geometri), "
                                f"ST_XMax(geometri), ST_YMax(geometri) FROM ly.{theme.table} "
                                f"WHERE {where}", KBH_BOX if job["kind"] == "bbox" else None)
        expected = {str(r[0]): r[1:] for r in rows}
        assert expected, job  # the seeded objects at least
        assert len(got["ids"]) == len(expected), (job, len(got["ids"]), len(expected))
        assert set(got["ids"]) == set(expected)
        if job["kind"] == "utm":
            assert "25832" in got["read_crs"]
            for oid, bounds in zip(got["ids"], got["bounds"]):
                assert bounds == pytest.approx(list(expected[oid]), abs=0.01), oid
        if not job["signed_in"]:
            hidden = {f.name for f in theme.fields if not f.public}
            assert not hidden & set(got["fields"]), (job, hidden & set(got["fields"]))
        else:
            assert {f.name for f in theme.fields if f.public} <= set(got["fields"])


# --- CQL2 filter geometries: at most max_vertices positions ------------------------------------

def test_a_filter_geometry_has_at_most_max_vertices_positions():
    from datamodel.cql2sql import FilterError, Queryable, parse_filter, to_sql

    queryables = {"geometri": Queryable("geometri", "geometri", "geometry")}
    ring = ", ".join(f"{x} {y}" for x, y in _ring(40))  # 41 positions
    expr = parse_filter(f"S_INTERSECTS(geometri, POLYGON(({ring})))", None)
    to_sql(expr, queryables, max_vertices=41)
    with pytest.raises(FilterError) as err:
        to_sql(expr, queryables, max_vertices=40)
    assert "more than 40 coordinates" in err.value.detail
    assert "LY_MAX_VERTICES" in err.value.detail
