"""Every bad input to a write is refused with a 4xx problem naming the field, and changes nothing.

The matrix runs each case against POST (create), and a representative subset against PUT
(replace) and PATCH (merge patch) of an existing shelter. One database serves the whole
module: a refused request must leave it untouched, which every case proves with `snapshot`
before and after. A 500 would surface as an exception from the TestClient.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass

import orjson
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.conftest import ADMIN_HEADERS, ITEMS, _clone, _drop, make_settings, query, snapshot

PROBLEM = "application/problem+json"
CRS84 = "<http://www.opengis.net/def/crs/OGC/1.3/CRS84>"
EPSG4326 = "<http://www.opengis.net/def/crs/EPSG/0/4326>"
EPSG25832 = "<http://www.opengis.net/def/crs/EPSG/0/25832>"
MAX_BODY = 1_000_000

COPENHAGEN = [12.5683, 55.6761]
POINT = {"type": "Point", "coordinates": COPENHAGEN}


def feature(geometry=POINT, *, drop: tuple[str, ...] = (), **props) -> dict:
    """A valid shelter (a beskyttelsesrum, type 1, in Copenhagen) with some changes."""
    properties = {"beskyt_rum_kode": 1, "pladser": 50, "navn": "Testrum"}
    properties.update(props)
    body = {"type": "Feature", "geometry": geometry, "properties": properties}
    for name in drop:
        body.pop(name, None)
        properties.pop(name, None)
    return body


def point(*coords) -> dict:
    return {"type": "Point", "coordinates": list(coords)}


@dataclass
class Case:
    id: str
    body: object = None  # full feature for POST/PUT (JSON-encoded unless `raw`)
    status: int = 422
    field: str = ""  # the field the problem must name
    raw: bytes | None = None  # sent as is instead of `body`
    headers: dict = dataclasses.field(default_factory=dict)
    put: bool = False  # also run as PUT on an existing shelter
    patch: object = None  # the PATCH body for this case (None: not run as PATCH)
    patch_raw: bytes | None = None
    patch_headers: dict | None = None  # default: `headers`


def _pad(body: dict, size: int) -> bytes:
    """`body` as JSON padded with insignificant whitespace to exactly `size` bytes."""
    data = orjson.dumps(body)
    return data[:-1] + b" " * (size - len(data)) + b"}"


OVERSIZED = _pad(feature(), MAX_BODY + 1)
OVERSIZED_PATCH = _pad({"properties": {"pladser": 60}}, MAX_BODY + 1)
LONG_NOTE = "x" * 255

CASES = [
    # --- not JSON ---
    Case("invalid-json", raw=b'{"type": "Feature", "geometry": ', status=400, field="body",
         put=True, patch_raw=b'{"properties": {"pladser": 60}'),
    Case("empty-body", raw=b"", status=400, field="body", put=True, patch_raw=b""),
    Case("json-with-nan", raw=b'{"type": "Feature", "properties": {"pladser": NaN}}',
         status=400, field="body"),
    Case("json-with-bom", raw=b"\xef\xbb\xbf" + orjson.dumps(feature()), status=400,
         field="body"),
    Case("json-not-utf8", raw=b'{"type": "Feature", "properties": {"note": "\xff\xfe"}}',
         status=400, field="body"),
    Case("json-trailing-garbage", raw=orjson.dumps(feature()) + b" {}", status=400,
         field="body"),
    # --- not a GeoJSON Feature ---
    Case("body-is-array", body=[feature()], field="body", put=True, patch=[{"pladser": 1}]),
    Case("body-is-string", body="Feature", field="body", patch="pladser=60"),
    Case("type-featurecollection", body={"type": "FeatureCollection",
                                         "features": [feature()]}, field="type", put=True),
    Case("type-missing", body=feature(drop=("type",)), field="type"),
    Case("type-is-geometry", body={**POINT, "properties": {"pladser": 1}}, field="type"),
    Case("geometry-missing", body=feature(drop=("geometry",)), field="geometry", put=True),
    Case("geometry-null", body=feature(None), field="geometry", patch={"geometry": None}),
    Case("geometry-is-wkt", body=feature("POINT(12.57 55.68)"), field="geometry",
         patch={"geometry": "POINT(12.57 55.68)"}),
    Case("properties-is-array", body={**feature(), "properties": [1, 2]}, field="properties",
         put=True, patch={"properties": [1, 2]}),
    Case("properties-is-string", body={**feature(), "properties": "pladser=50"},
         field="properties", patch={"properties": "pladser=60"}),
    Case("unknown-member", body={**feature(), "farve": "rød"}, field="farve",
         patch={"farve": "rød"}),
    # --- wrong geometry type ---
    Case("linestring", body=feature({"type": "LineString",
                                     "coordinates": [COPENHAGEN, [12.6, 55.7]]}),
         field="geometry.type", put=True,
         patch={"geometry": {"type": "LineString", "coordinates": [COPENHAGEN, [12.6, 55.7]]}}),
    Case("polygon", body=feature({"type": "Polygon", "coordinates": [[
        [12.56, 55.67], [12.58, 55.67], [12.58, 55.68], [12.56, 55.67]]]}),
        field="geometry.type"),
    Case("geometrycollection", body=feature({"type": "GeometryCollection",
                                             "geometries": [POINT]}), field="geometry.type"),
    Case("geometry-type-missing", body=feature({"coordinates": COPENHAGEN}),
         field="geometry.type"),
    Case("multipoint-two-points", body=feature({"type": "MultiPoint",
                                                "coordinates": [COPENHAGEN, [12.6, 55.7]]}),
         field="geometry.coordinates", put=True,
         patch={"geometry": {"type": "MultiPoint", "coordinates": [COPENHAGEN, [12.6, 55.7]]}}),
    # --- empty geometry ---
    Case("point-empty", body=feature(point()), field="geometry.coordinates", put=True,
         patch={"geometry": point()}),
    Case("point-no-coordinates", body=feature({"type": "Point"}), field="geometry.coordinates"),
    Case("multipoint-empty", body=feature({"type": "MultiPoint", "coordinates": []}),
         field="geometry.coordinates"),
    Case("multipoint-empty-point", body=feature({"type": "MultiPoint", "coordinates": [[]]}),
         field="geometry.coordinates"),
    # --- invalid geometry ---
    Case("coordinates-strings", body=feature(point("12.57", "55.68")),
         field="geometry.coordinates", patch={"geometry": point("12.57", "55.68")}),
    Case("coordinates-nan-strings", body=feature(point("NaN", "NaN")),
         field="geometry.coordinates", put=True),
    Case("coordinates-infinity-strings", body=feature(point("Infinity", "-Infinity")),
         field="geometry.coordinates"),
    Case("coordinates-null", body=feature(point(None, None)), field="geometry.coordinates"),
    Case("coordinates-booleans", body=feature(point(True, False)), field="geometry.coordinates"),
    Case("coordinates-nested", body=feature({"type": "Point", "coordinates": [COPENHAGEN]}),
         field="geometry.coordinates"),
    Case("coordinates-is-string", body=feature({"type": "Point",
                                                "coordinates": "12.57 55.68"}),
         field="geometry.coordinates"),
    Case("one-coordinate", body=feature(point(12.57)), field="geometry.coordinates", put=True,
         patch={"geometry": point(12.57)}),
    Case("four-coordinates", body=feature(point(12.57, 55.68, 10, 1)),
         field="geometry.coordinates"),
    # --- outside Denmark ---
    Case("paris", body=feature(point(2.3522, 48.8566)), field="geometry.coordinates", put=True,
         patch={"geometry": point(2.3522, 48.8566)}),
    Case("null-island", body=feature(point(0, 0)), field="geometry.coordinates"),
    Case("beyond-etrs89", body=feature(point(-120, -80)), field="geometry.coordinates"),
    Case("absurd-numbers", body=feature(point(1e300, -1e300)), field="geometry.coordinates"),
    # inside the rough Danish box but in Sweden, far from any municipality: the database
    # backstop (ly.kommune_for) refuses it
    Case("malmo", body=feature(point(13.0038, 55.6050)), field="geometry", put=True,
         patch={"geometry": point(13.0038, 55.6050)}),
    Case("metres-without-content-crs", body=feature(point(724351.9, 6175804.0)),
         field="geometry.coordinates"),
    Case("degrees-as-epsg25832", body=feature(point(*COPENHAGEN)), field="geometry.coordinates",
         headers={"Content-Crs": EPSG25832}),
    # --- swapped axes ---
    Case("swapped-lat-lon-in-crs84", body=feature(point(55.6761, 12.5683)),
         field="geometry.coordinates", put=True, patch={"geometry": point(55.6761, 12.5683)}),
    Case("swapped-lat-lon-explicit-crs84", body=feature(point(55.6761, 12.5683)),
         field="geometry.coordinates", headers={"Content-Crs": CRS84}),
    Case("swapped-lon-lat-in-epsg4326", body=feature(point(12.5683, 55.6761)),
         field="geometry.coordinates", headers={"Content-Crs": EPSG4326}, put=True,
         patch={"geometry": point(12.5683, 55.6761)}),
    # --- unknown codes ---
    Case("beskyt_rum_kode-7", body=feature(beskyt_rum_kode=7),
         field="properties.beskyt_rum_kode", put=True,
         patch={"properties": {"beskyt_rum_kode": 7}}),
    Case("beskyt_rum_kode-string", body=feature(beskyt_rum_kode="sikringsrum"),
         field="properties.beskyt_rum_kode"),
    Case("off_kode-9", body=feature(off_kode=9), field="properties.off_kode", put=True,
         patch={"properties": {"off_kode": 9}}),
    Case("klargjort_kode-ja", body=feature(klargjort_kode="ja"),
         field="properties.klargjort_kode", patch={"properties": {"klargjort_kode": "ja"}}),
    Case("statuskode-true", body=feature(statuskode=True), field="properties.statuskode"),
    Case("cvr_kode-unknown", body=feature(cvr_kode=12345678), field="properties.cvr_kode"),
    Case("undertype_kode-unknown", body=feature(beskyt_rum_kode=3, undertype_kode=7),
         field="properties.undertype_kode"),
    # --- required fields ---
    Case("beskyt_rum_kode-missing", body=feature(drop=("beskyt_rum_kode",)),
         field="properties.beskyt_rum_kode", put=True),
    Case("pladser-missing", body=feature(drop=("pladser",)), field="properties.pladser",
         put=True),
    Case("pladser-null", body=feature(pladser=None), field="properties.pladser",
         patch={"properties": {"pladser": None}}),
    Case("beskyt_rum_kode-null", body=feature(beskyt_rum_kode=None),
         field="properties.beskyt_rum_kode", patch={"properties": {"beskyt_rum_kode": None}}),
    Case("properties-missing", body=feature(drop=("properties",)), field="properties.pladser"),
    # --- pladser ---
    Case("pladser-0", body=feature(pladser=0), field="properties.pladser", put=True,
         patch={"properties": {"pladser": 0}}),
    Case("pladser-10000", body=feature(pladser=10000), field="properties.pladser", put=True,
         patch={"properties": {"pladser": 10000}}),
    Case("pladser-negative", body=feature(pladser=-5), field="properties.pladser",
         patch={"properties": {"pladser": -5}}),
    Case("pladser-fraction", body=feature(pladser=12.5), field="properties.pladser", put=True,
         patch={"properties": {"pladser": 12.5}}),
    Case("pladser-many", body=feature(pladser="many"), field="properties.pladser", put=True,
         patch={"properties": {"pladser": "many"}}),
    Case("pladser-numeric-string", body=feature(pladser="50"), field="properties.pladser"),
    Case("pladser-boolean", body=feature(pladser=True), field="properties.pladser"),
    Case("pladser-huge", raw=orjson.dumps(feature(pladser=0)).replace(b'"pladser":0',
                                                                      b'"pladser":1' + b"0" * 30),
         field="properties.pladser"),
    Case("pladser-object", body=feature(pladser={"value": 50}), field="properties.pladser"),
    # --- other property values ---
    Case("note-255-chars", body=feature(note=LONG_NOTE), field="properties.note", put=True,
         patch={"properties": {"note": LONG_NOTE}}),
    Case("navn-255-chars", body=feature(navn="n" * 255), field="properties.navn"),
    Case("husnr-5-chars", body=feature(husnr="12345"), field="properties.husnr"),
    Case("note-not-string", body=feature(note=42), field="properties.note"),
    Case("note-with-nul", body=feature(note="før\u0000efter"), field="properties.note",
         patch={"properties": {"note": "før\u0000efter"}}),
    Case("postnr-700", body=feature(postnr=700), field="properties.postnr"),
    Case("areal_m2-0", body=feature(areal_m2=0), field="properties.areal_m2"),
    Case("areal_m2-string", body=feature(areal_m2="stort"), field="properties.areal_m2"),
    Case("adr_id-not-uuid", body=feature(adr_id="not-a-uuid"), field="properties.adr_id",
         patch={"properties": {"adr_id": "not-a-uuid"}}),
    Case("pladser_verificeret-negative", body=feature(pladser_verificeret=-1),
         field="properties.pladser_verificeret"),
    Case("unknown-property", body=feature(farve="rød"), field="properties.farve", put=True,
         patch={"properties": {"farve": "rød"}}),
    Case("misspelt-property", body=feature(pladsér=50), field="properties.pladsér"),
    # --- cross-field rule ---
    Case("undertype-on-beskyttelsesrum", body=feature(beskyt_rum_kode=1, undertype_kode=1),
         field="properties.undertype_kode", put=True,
         patch={"properties": {"undertype_kode": 1}}),  # the PATCH target is a type 1
    Case("undertype-on-sikringsrum", body=feature(beskyt_rum_kode=2, undertype_kode=2),
         field="properties.undertype_kode"),
    # --- size, media type, CRS ---
    Case("oversized-body", raw=OVERSIZED, status=413, field="body", put=True,
         patch_raw=OVERSIZED_PATCH),
    Case("text-plain", body=feature(), status=415, field="Content-Type", put=True,
         headers={"Content-Type": "text/plain"}, patch={"properties": {"pladser": 60}}),
    Case("form-urlencoded", raw=b"pladser=50", status=415, field="Content-Type",
         headers={"Content-Type": "application/x-www-form-urlencoded"}),
    Case("xml", raw=b"<Feature/>", status=415, field="Content-Type",
         headers={"Content-Type": "application/xml"}, patch_raw=b"<Feature/>"),
    Case("no-content-type", body=feature(), status=415, field="Content-Type",
         headers={"Content-Type": ""}, patch={"properties": {"pladser": 60}}),
    Case("json-patch-media-type", body=feature(), status=415, field="Content-Type",
         headers={"Content-Type": "application/json-patch+json"},
         patch=[{"op": "replace", "path": "/properties/pladser", "value": 60}]),
    Case("content-crs-epsg3035", body=feature(), status=400, field="Content-Crs", put=True,
         headers={"Content-Crs": "<http://www.opengis.net/def/crs/EPSG/0/3035>"},
         patch={"geometry": POINT}),
    Case("content-crs-garbage", body=feature(), status=400, field="Content-Crs",
         headers={"Content-Crs": "wgs84 please"}),
    Case("content-crs-empty", body=feature(), status=400, field="Content-Crs",
         headers={"Content-Crs": ""}),
]

MERGE_PATCH = "application/merge-patch+json"
GEOJSON = "application/geo+json"


@pytest.fixture(scope="module")
def bad_db(template_db):
    """One database for the whole matrix: every case must leave it unchanged."""
    name = f"ly_bad_{uuid.uuid4().hex[:12]}"
    url = _clone(template_db, name)
    yield url
    _drop(name)


@pytest.fixture(scope="module")
def bad_client(bad_db):
    with TestClient(create_app(make_settings(bad_db)), headers=ADMIN_HEADERS) as c:
        yield c


@pytest.fixture(scope="module")
def target(bad_db) -> tuple[str, str]:
    """(objekt_id, versions_id) of an existing beskyttelsesrum (type 1) without a sub-type."""
    objekt_id, versions_id = query(
        bad_db, "SELECT objekt_id, versions_id FROM ly.t_6101_beskyt_rum "
                "WHERE beskyt_rum_kode = 1 AND undertype_kode IS NULL "
                "ORDER BY objekt_id LIMIT 1")[0]
    return str(objekt_id), str(versions_id)


def _send(client, method: str, path: str, content: bytes, headers: dict):
    headers = dict(headers)
    if headers.get("Content-Type") == "":
        del headers["Content-Type"]  # no Content-Type header at all
    return client.request(method, path, content=content, headers=headers)


def _assert_problem(r, status: int, field_name: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert problem["status"] == status
    assert problem["title"] and problem["detail"]
    fields = [e["field"] for e in problem.get("errors", [])]
    assert field_name in fields, (field_name, problem)
    assert all(e.get("detail") for e in problem["errors"])
    return problem


def _run(client, db_url, method, path, content, headers, status, field_name):
    before = snapshot(db_url)
    r = _send(client, method, path, content, headers)
    problem = _assert_problem(r, status, field_name)
    assert snapshot(db_url) == before, "a refused write changed the register"
    return problem


def _content(case: Case, body, raw) -> bytes:
    return raw if raw is not None else orjson.dumps(body)


def _param(cases):
    return [pytest.param(c, id=c.id) for c in cases]


@pytest.mark.parametrize("case", _param(CASES))
def test_post(bad_client, bad_db, case: Case):
    headers = {"Content-Type": GEOJSON, **case.headers}
    _run(bad_client, bad_db, "POST", ITEMS, _content(case, case.body, case.raw), headers,
         case.status, case.field)


@pytest.mark.parametrize("case", _param(c for c in CASES if c.put))
def test_put(bad_client, bad_db, target, case: Case):
    headers = {"Content-Type": GEOJSON, "If-Match": f'"{target[1]}"', **case.headers}
    _run(bad_client, bad_db, "PUT", f"{ITEMS}/{target[0]}", _content(case, case.body, case.raw),
         headers, case.status, case.field)


@pytest.mark.parametrize(
    "case", _param(c for c in CASES if c.patch is not None or c.patch_raw is not None))
def test_patch(bad_client, bad_db, target, case: Case):
    extra = case.patch_headers if case.patch_headers is not None else case.headers
    headers = {"Content-Type": MERGE_PATCH, **extra}
    _run(bad_client, bad_db, "PATCH", f"{ITEMS}/{target[0]}",
         _content(case, case.patch, case.patch_raw), headers, case.status, case.field)


def test_every_problem_is_listed_at_once(bad_client, bad_db):
    body = feature(point(2.35, 48.86), pladser=0, off_kode=9, farve="rød", note=LONG_NOTE)
    problem = _run(bad_client, bad_db, "POST", ITEMS, orjson.dumps(body),
                   {"Content-Type": GEOJSON}, 422, "properties.pladser")
    fields = {e["field"] for e in problem["errors"]}
    assert {"geometry.coordinates", "properties.pladser", "properties.off_kode",
            "properties.farve", "properties.note"} <= fields
    assert f"and {len(problem['errors']) - 1} more" in problem["detail"], problem


def test_swapped_axes_are_explained(bad_client, bad_db):
    for crs, coords in ((CRS84, [55.6761, 12.5683]), (EPSG4326, [12.5683, 55.6761])):
        problem = _run(bad_client, bad_db, "POST", ITEMS, orjson.dumps(feature(point(*coords))),
                       {"Content-Type": GEOJSON, "Content-Crs": crs}, 422,
                       "geometry.coordinates")
        assert "swapped" in problem["errors"][0]["detail"]


def test_oversized_chunked_body_without_content_length_is_413(bad_client, bad_db):
    def chunks():
        for i in range(0, len(OVERSIZED), 65536):
            yield OVERSIZED[i:i + 65536]

    before = snapshot(bad_db)
    r = bad_client.post(ITEMS, content=chunks(), headers={"Content-Type": GEOJSON})
    assert "content-length" not in {k.lower() for k in r.request.headers}
    _assert_problem(r, 413, "body")
    assert snapshot(bad_db) == before


def test_body_of_exactly_the_limit_is_not_refused_as_too_large(bad_client, bad_db):
    # a valid feature padded to exactly max_body_bytes is refused only for its content:
    # here its off_kode, so the database stays unchanged and the size check is proven lenient
    data = _pad(feature(off_kode=9), MAX_BODY)
    assert len(data) == MAX_BODY
    _run(bad_client, bad_db, "POST", ITEMS, data, {"Content-Type": GEOJSON}, 422,
         "properties.off_kode")


def test_malformed_feature_id_and_unknown_parameter(bad_client, bad_db, target):
    body = orjson.dumps(feature())
    _run(bad_client, bad_db, "PUT", f"{ITEMS}/not-a-uuid", body,
         {"Content-Type": GEOJSON}, 400, "featureId")
    _run(bad_client, bad_db, "PATCH", f"{ITEMS}/not-a-uuid", b'{"properties": {}}',
         {"Content-Type": MERGE_PATCH}, 400, "featureId")
    _run(bad_client, bad_db, "DELETE", f"{ITEMS}/not-a-uuid", b"", {}, 400, "featureId")
    _run(bad_client, bad_db, "POST", ITEMS + "?dryrun=true", body,
         {"Content-Type": GEOJSON}, 400, "dryrun")
    _run(bad_client, bad_db, "DELETE", f"{ITEMS}/{target[0]}?force=1", b"", {}, 400, "force")


def test_patch_that_breaks_the_sub_type_rule(bad_client, bad_db):
    """Turning a betondækningsgrav with a sub-type into another type leaves an orphan
    sub-type: refused, naming undertype_kode."""
    rows = query(bad_db, "SELECT objekt_id FROM ly.t_6101_beskyt_rum "
                         "WHERE beskyt_rum_kode = 3 AND undertype_kode IS NOT NULL LIMIT 1")
    assert rows, "the demo register has betondækningsgrave with a sub-type"
    _run(bad_client, bad_db, "PATCH", f"{ITEMS}/{rows[0][0]}",
         orjson.dumps({"properties": {"beskyt_rum_kode": 2}}),
         {"Content-Type": MERGE_PATCH}, 422, "properties.undertype_kode")


def test_stale_if_match_with_bad_body_changes_nothing(bad_client, bad_db, target):
    """A write with a wrong If-Match is refused whatever its body (never 2xx)."""
    stale = f'"{uuid.uuid4()}"'
    for method, ctype, body in (("PUT", GEOJSON, feature()),
                                ("PATCH", MERGE_PATCH, {"properties": {"pladser": 60}})):
        _run(bad_client, bad_db, method, f"{ITEMS}/{target[0]}", orjson.dumps(body),
             {"Content-Type": ctype, "If-Match": stale}, 412, "If-Match")
    _run(bad_client, bad_db, "DELETE", f"{ITEMS}/{target[0]}", b"", {"If-Match": stale}, 412,
         "If-Match")
    _run(bad_client, bad_db, "PUT", f"{ITEMS}/{target[0]}", orjson.dumps(feature()),
         {"Content-Type": GEOJSON, "If-Match": "not-an-etag"}, 400, "If-Match")


@pytest.mark.parametrize("name", ["noegle", "navn", "vejnavn"])
def test_nul_in_a_property_filter_is_a_client_error(bad_client, name):
    """The `?property=value` filters of items refuse a NUL like the CQL2 filter does
    (PostgreSQL cannot hold it in text), instead of failing in the database."""
    r = bad_client.get(ITEMS, params={name: "før\x00efter"})
    _assert_problem(r, 400, name)
