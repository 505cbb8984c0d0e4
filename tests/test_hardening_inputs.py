"""Inputs the database cannot take are refused before they reach it: a 4xx problem naming the
field, and nothing stored. NUL characters in JSON and query parameters, LIKE patterns that
end in an escape, instants outside what PostgreSQL and Python hold, integers beyond the
columns' range, malformed If-Match; unconditional writes are serialised; OPTIONS lists every
method of a path."""

from __future__ import annotations

import concurrent.futures
import json
import re
import uuid

import httpx
import orjson
import psycopg
import pytest
from fastapi.routing import iter_route_contexts
from psycopg import sql

from datamodel.cql2sql import FilterError, Queryable, parse_filter, to_sql
from service.errors import from_database
from tests.conftest import ADMIN_HEADERS, BASE_URL, ITEMS, query, snapshot
from tests.test_inspections import complete_answers, room

PROBLEM = "application/problem+json"
GEOJSON = "application/geo+json"
MERGE_PATCH = "application/merge-patch+json"
JS = {"Content-Type": "application/json"}
KBH = 101
TILE = "/collections/beskyttelsesrum/tiles/WebMercatorQuad/0/0/0"


def assert_problem(r, status, field) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert problem["status"] == status and problem["detail"]
    fields = [e["field"] for e in problem.get("errors", [])]
    assert field in fields, (field, problem)
    return problem


def counts(url) -> tuple:
    """Everything a refused request might have stored."""
    return (snapshot(url),) + query(url, """
        SELECT (SELECT count(*) FROM ly.aktivering), (SELECT count(*) FROM ly.tildeling),
               (SELECT count(*) FROM ly.kampagne), (SELECT count(*) FROM ly.kampagne_udvalg),
               (SELECT count(*) FROM ly.eftersyn),
               (SELECT string_agg(status || coalesce(afvist_begrundelse, ''), ',' ORDER BY id)
                FROM ly.eftersyn)""")[0]


def shelter_in(url, kommune=KBH, kind=3) -> str:
    return str(query(url, "SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE beskyt_rum_kode = %s"
                          " AND beliggenhedskommune = %s ORDER BY objekt_id LIMIT 1",
                     [kind, kommune])[0][0])


CAMPAIGN = {"navn": "BDG 2026", "tjekliste_kode": "bdg-6122", "periode_fra": "2026-02-01",
            "periode_til": "2026-03-15", "frist": "2026-03-15",
            "udvalg": {"beskyt_rum_kode": [3], "kommuner": [KBH]}}


# --- 1. NUL (U+0000): PostgreSQL refuses it in text and jsonb -----------------------------

def test_nul_in_any_json_body_is_refused_naming_its_path(client, db_url):
    shelter = shelter_in(db_url)
    # a submitted inspection to reject, and a campaign to assign
    eid = str(uuid.uuid4())
    r = client.put(f"/eftersyn/{eid}", content=json.dumps({
        "objekt_id": shelter, "tjekliste_kode": "bdg-6122", "tjekliste_version": 1,
        "status": "indsendt", "svar": complete_answers(), "rum": [room()]}), headers=JS)
    assert r.status_code == 201, r.text
    r = client.post("/kampagner", content=json.dumps(CAMPAIGN), headers=JS)
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    feature = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [12.57, 55.68]},
               "properties": {"beskyt_rum_kode": 1, "pladser": 50, "navn": "Testrum"}}
    nul = "før\u0000efter"
    cases = [
        ("PUT", "/aktivering", {"aktiv": True, "begrundelse": nul}, JS, "begrundelse"),
        ("POST", "/tildelinger", {"objekt_id": shelter, "subjekt": nul}, JS, "subjekt"),
        ("POST", "/kampagner", {**CAMPAIGN, "navn": nul}, JS, "navn"),
        ("POST", f"/kampagner/{kid}/tildelinger", {"subjekt": nul}, JS, "subjekt"),
        ("POST", f"/eftersyn/{eid}/afvis", {"begrundelse": nul}, JS, "begrundelse"),
        ("POST", ITEMS, {**feature, "properties": {**feature["properties"], "navn": nul}},
         {"Content-Type": GEOJSON}, "properties.navn"),
        ("PATCH", f"{ITEMS}/{shelter}", {"properties": {"note": nul}},
         {"Content-Type": MERGE_PATCH}, "properties.note"),
        # in a member name, and deep inside a list
        ("PATCH", f"{ITEMS}/{shelter}", {"properties": {"no\u0000te": "x"}},
         {"Content-Type": MERGE_PATCH}, "properties.no\\u0000te"),
        ("PUT", "/aktivering", {"aktiv": True, "begrundelse": "Øvelse", "x": [1, {"y": nul}]},
         JS, "x[2].y"),
    ]
    for method, path, body, headers, field in cases:
        before = counts(db_url)
        r = client.request(method, path, content=orjson.dumps(body), headers=headers)
        problem = assert_problem(r, 422, field)
        assert "\x00" not in problem["detail"]
        assert counts(db_url) == before, (method, path)


@pytest.mark.parametrize("path, params, field", [
    (ITEMS, {"navn": "a\x00"}, "navn"),
    (ITEMS, {"filter": "navn = 'a\x00b'"}, "filter"),
    (ITEMS, {"filter": "CASEI(navn) LIKE CASEI('a\x00%')"}, "filter"),
    (ITEMS, {"filter": json.dumps({"op": "=", "args": [{"property": "navn"}, "a\x00"]}),
             "filter-lang": "cql2-json"}, "filter"),
    (ITEMS, {"datetime": "2020-01-01T00:00:00Z\x00"}, "datetime"),
    (TILE, {"filter": "navn LIKE 'a\x00%'"}, "filter"),
    ("/revision", {"subjekt": "a\x00"}, "subjekt"),
    ("/collections", {"f": "json\x00"}, "f"),
])
def test_nul_in_a_query_parameter_is_a_400_naming_it(ro_client, path, params, field):
    assert_problem(ro_client.get(path, params=params), 400, field)


def test_nul_in_a_query_parameter_name_is_a_400(ro_client):
    assert_problem(ro_client.get(ITEMS + "?na%00vn=x"), 400, "na\\u0000vn")


# --- 2. LIKE patterns: a backslash escapes %, _ and itself ----------------------------------

@pytest.mark.parametrize("pattern", ["Ly\\", "%\\", "\\", "a\\b%", "Ly\\\\\\"])
@pytest.mark.parametrize("where", ["items", "casei", "tiles", "csv", "geojson", "anonymous"])
def test_a_like_pattern_with_a_dangling_escape_is_a_400(ro_client, anon_client, pattern, where):
    text = (f"CASEI(navn) LIKE CASEI('{pattern}')" if where == "casei"
            else f"navn LIKE '{pattern}'")
    client = anon_client if where == "anonymous" else ro_client
    path = TILE if where == "tiles" else ITEMS
    params = {"filter": text}
    if where in ("csv", "geojson"):
        params["f"] = where
    problem = assert_problem(client.get(path, params=params), 400, "filter")
    assert "backslash" in problem["detail"]


def test_a_like_pattern_needs_a_literal(ro_client):
    # CQL2's patternExpression is a literal (or CASEI/ACCENTI of one): a property's values
    # are not patterns (one ending in a backslash would fail in the database)
    assert_problem(ro_client.get(ITEMS, params={"filter": "navn LIKE note"}), 400, "filter")
    assert_problem(ro_client.get(ITEMS, params={"filter": "navn LIKE CASEI(note)"}), 400,
                   "filter")


def test_escaped_like_patterns_match_exactly(ro_client):
    def names(pattern):
        r = ro_client.get(ITEMS, params={"filter": f"navn LIKE '{pattern}'", "limit": 10000})
        assert r.status_code == 200, r.text
        return {f["properties"]["navn"] for f in r.json()["features"]}

    every = names("%")
    assert every and names("%\\%%") == {n for n in every if n and "%" in n}
    assert names("%\\_%") == {n for n in every if n and "_" in n}
    assert names("%\\\\%") == {n for n in every if n and "\\" in n}


def test_like_escapes_match_exactly_what_they_name():
    names = ["a%b", "a_b", "a\\b", "ab", "axb", "A%B"]
    queryables = {"navn": Queryable("navn", "navn", "string")}

    def matching(text):
        clause, args = to_sql(parse_filter(text, None), queryables)
        stmt = sql.SQL("SELECT navn FROM unnest(%s::text[]) AS v(navn) WHERE {}").format(clause)
        with psycopg.connect(BASE_URL) as conn:
            return {r[0] for r in conn.execute(stmt, [names, *args])}

    assert matching("navn LIKE 'a\\%b'") == {"a%b"}
    assert matching("navn LIKE 'a\\_b'") == {"a_b"}
    assert matching("navn LIKE 'a\\\\b'") == {"a\\b"}
    assert matching("navn LIKE 'a_b'") == {"a%b", "a_b", "a\\b", "axb"}
    assert matching("CASEI(navn) LIKE CASEI('a\\%B')") == {"a%b", "A%B"}
    for bad in ("navn LIKE 'a\\'", "navn LIKE 'a\\b'", "navn LIKE 'a\\\\\\'"):
        with pytest.raises(FilterError) as caught:
            to_sql(parse_filter(bad, None), queryables)
        assert caught.value.field == "filter" and "backslash" in caught.value.detail


# --- 3. instants outside PostgreSQL's and Python's range -------------------------------------

@pytest.mark.parametrize("value", [
    "0001-01-01T00:00:00+14:00",  # year 0 in UTC: Python has no such datetime
    "9999-12-31T23:59:59-14:00",  # year 10000 in UTC
    "0001-01-01T00:00:00+00:01",
])
@pytest.mark.parametrize("name", ["datetime", "asof", "interval-start", "interval-end"])
def test_an_instant_outside_the_range_is_a_400(ro_client, value, name):
    if name == "interval-start":
        params, field = {"datetime": f"{value}/.."}, "datetime"
    elif name == "interval-end":
        params, field = {"datetime": f"../{value}"}, "datetime"
    else:
        params, field = {name: value}, name
    for path in (ITEMS, TILE):
        assert_problem(ro_client.get(path, params=params), 400, field)


def test_an_instant_at_the_edges_is_served(ro_client):
    for value in ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00-14:00", "2020-01-01"):
        assert ro_client.get(ITEMS, params={"datetime": value}).status_code == 200
    r = ro_client.get(ITEMS, params={"datetime": "9999-12-31T23:59:59+14:00/.."})
    assert r.status_code == 200, r.text


def test_audit_trail_since_an_instant_outside_the_range_is_a_400(ro_client):
    assert_problem(ro_client.get("/revision", params={"siden": "0001-01-01T00:00:00+14:00"}),
                   400, "siden")


def test_a_cql2_timestamp_outside_the_range_is_a_400(ro_client):
    r = ro_client.get(ITEMS, params={
        "filter": "systid_fra > TIMESTAMP('0001-01-01T00:00:00+14:00')"})
    assert_problem(r, 400, "filter")
    # an instant of a temporal function may be a bare string in CQL2 JSON
    r = ro_client.get(ITEMS, params={"filter-lang": "cql2-json", "filter": json.dumps(
        {"op": "t_after", "args": [{"property": "systid_fra"}, "0001-01-01T00:00:00+14:00"]})})
    assert_problem(r, 400, "filter")


def test_an_inspection_positioned_outside_the_range_is_refused_and_not_stored(client, db_url):
    shelter = shelter_in(db_url)
    before = counts(db_url)
    for value in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        r = client.put(f"/eftersyn/{uuid.uuid4()}", content=json.dumps({
            "objekt_id": shelter, "tjekliste_kode": "bdg-6122", "tjekliste_version": 1,
            "status": "kladde", "svar": {"beskyt_rum_nr": "BDG-1"},
            "position": {"type": "Point", "coordinates": [12.57, 55.68]},
            "position_tid": value}), headers=JS)
        assert_problem(r, 422, "position_tid")
    assert counts(db_url) == before


@pytest.mark.parametrize("feature, field", [
    ({"type": "Feature", "geometry": "x", "properties": -17554}, "geometry"),
    ({"type": "Feature", "geometry": "x", "properties": -17554}, "properties"),
    ({"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [["a", 1]]},
      "properties": {}}, "geometry"),
    ({"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": 7},
      "properties": {}}, "geometry"),
])
def test_a_6122_feature_of_the_wrong_shapes_is_a_422_naming_the_member(client, db_url,
                                                                        feature, field):
    """Found by the fuzzer (tests/test_fuzz.py): a geometry or properties that are not
    objects reached the validator's `.get` and answered 500."""
    before = counts(db_url)
    r = client.post("/eftersyn/6122", content=json.dumps(
        {"type": "FeatureCollection", "features": [feature]}), headers=JS)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert any(e["field"].endswith(field) for e in r.json()["errors"]), r.json()
    assert counts(db_url) == before


# --- 4. integers beyond the columns' range ---------------------------------------------------

def test_campaign_integers_out_of_range_name_their_field(client, db_url):
    before = counts(db_url)
    for selection, field in (({"kommuner": [10**18]}, "udvalg.kommuner"),
                             ({"kommuner": [2**31]}, "udvalg.kommuner"),
                             ({"kommuner": [True]}, "udvalg.kommuner"),
                             ({"beskyt_rum_kode": [10**18]}, "udvalg.beskyt_rum_kode"),
                             ({"beskyt_rum_kode": 2**40}, "udvalg.beskyt_rum_kode")):
        r = client.post("/kampagner", content=json.dumps({**CAMPAIGN, "udvalg": selection}),
                        headers=JS)
        problem = assert_problem(r, 422, field)
        assert "geometry" not in [e["field"] for e in problem["errors"]]
    assert counts(db_url) == before
    r = client.post("/kampagner", content=json.dumps(CAMPAIGN), headers=JS)
    kid = r.json()["id"]
    before = counts(db_url)
    for kommune in (10**18, 2**31, -2**31 - 1):
        r = client.post(f"/kampagner/{kid}/tildelinger",
                        content=json.dumps({"subjekt": "x", "kommune": kommune}), headers=JS)
        assert_problem(r, 422, "kommune")
    assert counts(db_url) == before


@pytest.mark.parametrize("path, params, field", [
    (ITEMS, {"pladser": str(10**30)}, None),  # no shelter has that many places
    (ITEMS, {"pladser": str(2**63)}, None),
    (ITEMS, {"beskyt_rum_kode": str(-10**20)}, None),
    (ITEMS, {"limit": str(10**30)}, None),  # clamped to the maximum
    ("/revision", {"limit": str(10**30)}, "limit"),
    ("/tjeklister/generel/" + str(10**30), {}, None),
    (TILE.replace("/0/0/0", "/0/" + str(10**30) + "/0"), {}, "tileRow"),
    (ITEMS, {"filter": f"pladser = {10**30}"}, None),
    (ITEMS, {"filter": f"beskyt_rum_kode IN ({10**30}, 1)"}, None),
])
def test_integer_parameters_beyond_the_range_never_fail_in_the_database(ro_client, path,
                                                                         params, field):
    r = ro_client.get(path, params=params)
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if field is not None:
        assert_problem(r, r.status_code, field)
        assert 400 <= r.status_code < 500


def test_a_database_refusal_names_no_field_it_does_not_know(client, db_url):
    """`from_database` is a backstop: its problems use the register's own words and name a
    field only when the database told which column (a theme's attribute or its geometry)."""

    with psycopg.connect(db_url) as conn:
        def caught(statement):
            try:
                conn.execute(statement)
            except psycopg.Error as exc:
                conn.rollback()
                return exc
            raise AssertionError(f"{statement} did not fail")

        cases = [
            caught("SELECT ARRAY[1000000000000000000]::int[]"),
            caught("SELECT 'x'::int"),
            caught("CREATE TEMP TABLE u (a int UNIQUE); INSERT INTO u VALUES (1), (1)"),
            caught("CREATE TEMP TABLE c (a int CHECK (a > 0)); INSERT INTO c VALUES (0)"),
        ]
    for exc in cases:
        p = from_database(exc)
        assert p is not None and 400 <= p.status < 500
        fields = [e["field"] for e in p.errors]
        assert fields and "geometry" not in fields and not any(
            f.startswith("properties.") for f in fields), (exc, fields)
        texts = " ".join([p.detail, *(e["detail"] for e in p.errors)])
        assert exc.diag.message_primary not in texts, (exc, texts)


# --- 5. If-Match ---------------------------------------------------------------------------

MALFORMED_IF_MATCH = ["", " ", "garbage", '"', '"abc', 'abc"', '"a" "b"', '"a",, garbage',
                      '*, "a"', "W/", 'W/"a']


def test_a_malformed_if_match_is_a_400_and_changes_nothing(client, db_url):
    shelter = shelter_in(db_url)
    replacement = orjson.dumps(client.get(f"{ITEMS}/{shelter}").json())
    before = counts(db_url)
    for value in MALFORMED_IF_MATCH:
        for method, body, ctype in (("PATCH", b'{"properties": {"pladser": 7}}', MERGE_PATCH),
                                    ("PUT", replacement, GEOJSON), ("DELETE", None, None)):
            headers = {"If-Match": value, **({"Content-Type": ctype} if ctype else {})}
            r = client.request(method, f"{ITEMS}/{shelter}", content=body, headers=headers)
            assert_problem(r, 400, "If-Match")
    assert counts(db_url) == before


def test_well_formed_if_match_values_are_compared(client, db_url):
    shelter = shelter_in(db_url)
    etag = client.get(f"{ITEMS}/{shelter}").headers["etag"]
    before = counts(db_url)
    # well-formed ETags that are not this one's (or weak ones) fail the precondition: 412
    for value in ('"abc"', 'W/"abc"', f"W/{etag}", '"", "x"', f"{etag[:-2]}\""):
        r = client.patch(f"{ITEMS}/{shelter}", content=b'{"properties": {"pladser": 7}}',
                         headers={"Content-Type": MERGE_PATCH, "If-Match": value})
        assert_problem(r, 412, "If-Match")
    assert counts(db_url) == before
    # lists with empty elements and optional whitespace are lists (RFC 9110 5.6.1)
    r = client.patch(f"{ITEMS}/{shelter}", content=b'{"properties": {"pladser": 7}}',
                     headers={"Content-Type": MERGE_PATCH, "If-Match": f' ,"abc",\t{etag} ,'})
    assert r.status_code == 200, r.text


def test_unconditional_concurrent_writes_are_serialised_and_each_applied(live_rw, db_url):
    """QGIS writes without If-Match: concurrent writes of one feature each make a version."""
    shelter = shelter_in(db_url)
    before = query(db_url, "SELECT count(*) FROM ly.beskyttelsesrum WHERE objekt_id = %s",
                   [shelter])[0][0]
    url = f"{live_rw.url}{ITEMS}/{shelter}"

    def write(n):
        with httpx.Client(timeout=60) as c:
            return c.patch(url, content=orjson.dumps({"properties": {"note": f"skriver {n}"}}),
                           headers={"Content-Type": MERGE_PATCH, **ADMIN_HEADERS})

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(write, range(10)))
    assert [r.status_code for r in results] == [200] * 10, [r.text[:200] for r in results]
    rows = query(db_url, "SELECT note, versions_id, systid_til FROM ly.beskyttelsesrum "
                         "WHERE objekt_id = %s ORDER BY systid_fra, versions_id", [shelter])
    assert len(rows) == before + 10
    notes = [r[0] for r in rows[before:]]
    assert sorted(notes) == sorted(f"skriver {n}" for n in range(10))  # each applied once
    assert [r[2] is None for r in rows] == [False] * (len(rows) - 1) + [True]
    assert {r.headers["etag"] for r in results} == {f'"{r[1]}"' for r in rows[before:]}


# --- 6. OPTIONS and Allow ------------------------------------------------------------------

_EXAMPLES = {"collection_id": "beskyttelsesrum", "tileMatrixSetId": "WebMercatorQuad",
             "tileMatrix": "0", "tileRow": "0", "tileCol": "0", "kode": "generel",
             "version": "1", "kommunekode": "101", "name": "beskyt_rum_kode"}


def _example(path: str, ids: str) -> str:
    return re.sub(r"\{([^}:]+)(:[^}]*)?\}", lambda m: _EXAMPLES.get(m.group(1), ids), path)


def _allow(r) -> set[str]:
    return {m.strip() for m in r.headers["allow"].split(",")}


def test_options_lists_exactly_the_routed_methods_of_every_path(ro_client, anon_client):
    """Every path of every route: OPTIONS answers with Allow, and the router's own answer to
    each other method (405 or not, asked anonymously so nothing is written) agrees with it."""
    shelter = ro_client.get(ITEMS, params={"limit": 1}).json()["features"][0]["id"]
    paths = {"/static/ly.css"}
    for route in iter_route_contexts(ro_client.app.routes):
        if route.path and route.methods and route.path != "/{path:path}":
            paths.add(_example(route.path, shelter))
    assert "/aktivering" in paths and len(paths) > 40
    for path in sorted(paths):
        r = ro_client.options(path)
        assert r.status_code == 200 and r.content == b"", (path, r.status_code, r.text[:200])
        allowed = _allow(r)
        assert "OPTIONS" in allowed, path
        for method in ("HEAD", "POST", "PUT", "PATCH", "DELETE"):
            answer = anon_client.request(method, path, content=b"")
            assert (answer.status_code == 405) == (method not in allowed), (
                path, method, answer.status_code, allowed)
            if answer.status_code == 405:
                assert _allow(answer) == allowed, (path, method)
    assert _allow(ro_client.options("/aktivering")) == {"GET", "PUT", "OPTIONS"}
    # /eftersyn/opgaver is also /eftersyn/{eftersyn_id} (a PUT there is an upload)
    assert _allow(ro_client.options("/eftersyn/opgaver")) == {"GET", "PUT", "OPTIONS"}
    assert _allow(ro_client.options(ITEMS)) == {"GET", "HEAD", "POST", "OPTIONS"}
    r = ro_client.options("/nothing-here")
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert ro_client.options("/collections/nope/items").status_code == 404


def test_a_method_not_allowed_lists_every_allowed_one(anon_client):
    r = anon_client.delete("/aktivering")
    assert r.status_code == 405 and r.headers["content-type"] == PROBLEM
    assert _allow(r) == {"GET", "PUT", "OPTIONS"}
