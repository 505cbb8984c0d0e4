"""Fuzzing every operation of the OpenAPI document (schemathesis, on Hypothesis).

For each operation of `/openapi.json`, schemathesis generates requests from the document:
parameters, headers and bodies that conform to it (positive cases), and requests that break
it (negative cases: wrong types, missing members, out-of-range values). Each positive case
is sent twice, anonymously and signed in as the national administrator (national_admin),
each negative case signed in; each answer must be

- no server error (5xx): bad input is a 4xx problem, never a 500 or 503;
- a documented status, with a documented Content-Type, and a body that validates against
  the schema the document gives for that status and media type (JSON: the resource's schema,
  the problem details for every 4xx).

Reads (GET, OPTIONS) go to the session's shared read-only database; writes to this module's
own copy of the demo database, where the fixture first made what the inspection workflow
needs (inspections, a photo, a deficiency, a campaign). The inspection and campaign
resources are read there too: the shared database has none, and must not be written. Some
cases of an operation name objects that exist (demo objects of every theme, the fixture's
inspection, a tile over Copenhagen) so the fuzz reaches past the 404s.

Deterministic (`derandomize`): the same cases on every run. No shrinking: a failure is
reported as found (schemathesis prints a curl command that reproduces it).
"""

from __future__ import annotations

import io
import json
import uuid

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance,
                                               response_schema_conformance,
                                               status_code_conformance)

from datamodel import themes, tiles
from service import openapi
from service.app import create_app
from service.http import GEOJSON
from tests.conftest import ADMIN_HEADERS, BASE_URL, fresh_database, make_settings, query
from tests.test_inspections import complete_answers, room

#: The document as the app serves it (building it needs no database).
SPEC = openapi.build(create_app(make_settings(BASE_URL)))
SCHEMA = schemathesis.openapi.from_dict(SPEC)
OPERATIONS = {op.label: op for op in (r.ok() for r in SCHEMA.get_all_operations())}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
#: Generated cases per operation and generation mode (positive, negative). An operation whose
#: inputs admit fewer distinct cases (e.g. none: /tjeklister) gets every one of them.
EXAMPLES = 25
READS = {"GET", "HEAD", "OPTIONS"}
#: Resources of the inspection workflow: read from the module's database (see above).
WORKFLOW = ("/eftersyn", "/mangler", "/kampagner", "/rapporter/kampagner", "/tildelinger")
#: A point in Copenhagen: the seeded tiles cover it.
KBH_LON, KBH_LAT = 12.5683, 55.6761


def _has_inputs(op) -> bool:
    return bool(op.path_parameters or op.query or op.headers or op.body)


def _cases() -> list:
    """(operation, generation mode): negative cases for every operation with an input to
    break (one without parameters or body, e.g. GET /tjeklister, has none)."""
    out = []
    for label, op in OPERATIONS.items():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if mode is GenerationMode.POSITIVE or _has_inputs(op):
                out.append(pytest.param(label, mode, id=f"{label} {mode.value}"))
    return out


# --- the module's database and what the workflow needs in it --------------------------------

def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


def _ok(r, *statuses):
    assert r.status_code in statuses, (r.status_code, r.text[:500])
    return r


def _seed(c: TestClient, url: str) -> dict:
    """Inspections (one approved with a deficiency, one draft with a photo), a campaign; the
    ids the fuzz may name."""
    h = {**ADMIN_HEADERS, "Content-Type": "application/json"}
    shelters = [str(r[0]) for r in query(
        url, "SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE beskyt_rum_kode = 3 "
             "ORDER BY objekt_id LIMIT 2")]
    approved, draft, photo = (str(uuid.uuid5(uuid.NAMESPACE_URL, f"ly-fuzz-{n}"))
                              for n in ("approved", "draft", "photo"))

    def upload(eid, shelter, status, svar, rum):
        body = {"objekt_id": shelter, "tjekliste_kode": "bdg-6122", "tjekliste_version": 1,
                "status": status, "svar": svar, "rum": rum,
                "position": {"type": "Point", "coordinates": [KBH_LON, KBH_LAT]}}
        _ok(c.put(f"/eftersyn/{eid}", content=json.dumps(body), headers=h), 201)

    upload(approved, shelters[0], "indsendt", complete_answers(udfoert_af="Fuzz"),
           [room(konstruktion_blotlagt_armering_kode=1)])
    _ok(c.post(f"/eftersyn/{approved}/godkend", headers=ADMIN_HEADERS), 200)
    upload(draft, shelters[1], "kladde", {"beskyt_rum_nr": "BDG-2"}, [])
    _ok(c.put(f"/eftersyn/{draft}/fotos/{photo}", content=_png(),
              headers={**ADMIN_HEADERS, "Content-Type": "image/png"}), 201)
    campaign = _ok(c.post("/kampagner", headers=h, content=json.dumps({
        "navn": "Fuzz", "tjekliste_kode": "bdg-6122", "periode_fra": "2026-01-01",
        "periode_til": "2026-12-31", "frist": "2026-12-31",
        "udvalg": {"kommuner": [101]}})), 201).json()["id"]
    deficiencies = [str(r[0]) for r in query(url, "SELECT id FROM ly.mangel ORDER BY id")]
    assert deficiencies, "the approved inspection has a deficiency"
    return {"eftersyn_id": [approved, draft], "foto_id": [photo], "mangel_id": deficiencies,
            "kampagne_id": [campaign]}


def _client(url: str) -> TestClient:
    # A server error is an answer to check (schemathesis reports it with a curl command that
    # reproduces it), not an exception raised into the test. The fuzz sends thousands of
    # requests a minute from one client: no rate limit.
    app = create_app(make_settings(url, rate_limit_anonymous=0, rate_limit_signed_in=0))
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def fuzz_db(template_db):
    """This module's own copy of the demo database, with the workflow's objects."""
    for url in fresh_database(template_db, "ly_fz_"):
        with _client(url) as c:
            yield c, _seed(c, url)


@pytest.fixture(scope="module")
def shared(shared_db_url):
    """A client on the session's shared read-only database."""
    with _client(shared_db_url) as c:
        yield c


def _demo_objects(url: str) -> list[dict]:
    """One current object of every theme: (collection_id, featureId) path parameters."""
    out = []
    for t in themes.all_themes():
        (oid,) = query(url, f"SELECT objekt_id FROM ly.{t.current_view} WHERE off_kode = 1 "
                            "ORDER BY objekt_id LIMIT 1")[0]
        out.append({"collection_id": t.collection_id, "featureId": str(oid)})
    return out


def _tiles() -> list[dict]:
    """A tile over Copenhagen in every tile matrix set, at a middling and a close zoom."""
    out = []
    for tms_id, tms in tiles.TILE_MATRIX_SETS.items():
        for z in (10, 15):
            if z > tms.maxzoom:
                continue
            t = tms.tile(KBH_LON, KBH_LAT, z)
            out.append({"tileMatrixSetId": tms_id, "tileMatrix": str(z), "tileRow": str(t.y),
                        "tileCol": str(t.x)})
    return out


@pytest.fixture(scope="module")
def known(shared_db_url, fuzz_db) -> dict:
    """Path parameters naming things that exist, by parameter name."""
    return {"objects": _demo_objects(shared_db_url), "tiles": _tiles(),
            "kommunekode": ["101", "851"], **fuzz_db[1]}


def _seeds(op, known: dict) -> list[dict]:
    """Path parameters of `op` that name existing things."""
    names = {p.name for p in op.path_parameters}
    if "featureId" in names:
        return known["objects"]
    if "tileRow" in names:
        return [{"collection_id": o["collection_id"], **t}
                for o in known["objects"] for t in known["tiles"]]
    seeded = sorted(names & {"eftersyn_id", "foto_id", "mangel_id", "kampagne_id",
                             "kommunekode"})
    if not seeded:
        return []
    if "foto_id" in names:  # the photo is the draft's
        return [{"eftersyn_id": known["eftersyn_id"][1], "foto_id": known["foto_id"][0]}]
    return [{name: value} for name in seeded for value in known[name]]


def _examples(op, known: dict) -> list[dict]:
    """`as_strategy` arguments of cases with the document's example bodies: a theme's
    Feature (a create or replace the register accepts) to the theme's collection, and an
    operation's own example (to the things that exist, for one with path parameters)."""
    if op.path.startswith("/collections/") and op.method.upper() in ("POST", "PUT"):
        targets = {o["collection_id"]: o for o in known["objects"]}
        schemas = SPEC["components"]["schemas"]
        return [{"path_parameters": targets[cid] if "featureId" in op.path else
                 {"collection_id": cid},
                 "body": schemas[f"Feature_{cid}"]["example"], "media_type": GEOJSON}
                for cid in targets]
    content = SPEC["paths"][op.path][op.method.lower()].get("requestBody", {}).get("content", {})
    bodies = [(media, c["example"]) for media, c in content.items() if "example" in c][:1]
    return [{"path_parameters": pp, "body": body, "media_type": media}
            for media, body in bodies for pp in (_seeds(op, known) or [{}])]


def _strategy(op, known: dict, mode: GenerationMode):
    """Generated cases; cases naming existing things; cases with the example bodies (each
    kind about as often)."""
    generated = op.as_strategy(generation_mode=mode)
    examples = _examples(op, known) if mode is GenerationMode.POSITIVE else []
    kinds = [st.one_of(*(op.as_strategy(generation_mode=mode, **kw) for kw in examples)),
             ] if examples else []
    seeds = _seeds(op, known)
    if seeds:
        kinds.append(st.one_of(*(op.as_strategy(generation_mode=mode, path_parameters=pp)
                                 for pp in seeds)))
    return st.one_of(*kinds, generated)


def _latin1(value):
    """A header value as HTTP sends it (httpx encodes str values as ASCII only)."""
    return value.encode("latin-1", "replace") if isinstance(value, str) else value


def _send(client: TestClient, kwargs: dict):
    body = {}
    if "json" in kwargs:
        body["content"] = json.dumps(kwargs["json"]).encode()
    elif kwargs.get("data") is not None:
        body["content"] = kwargs["data"]
    return client.request(kwargs["method"], kwargs["url"], params=kwargs.get("params") or None,
                          headers={k: _latin1(v) for k, v in kwargs["headers"].items()}, **body)


@pytest.mark.parametrize("label,mode", _cases())
def test_every_answer_is_documented_and_no_input_is_a_server_error(label, mode, shared,
                                                                  fuzz_db, known):
    op = OPERATIONS[label]
    own = op.method.upper() not in READS or op.path.startswith(WORKFLOW)
    client = fuzz_db[0] if own else shared
    # Positive cases go as the public and as the national administrator. Negative ones
    # (malformed input) signed in only: anonymously they meet the same parameter checks, and
    # every write refuses the public (401) before it reads a body.
    identities = (None, ADMIN_HEADERS) if mode is GenerationMode.POSITIVE else (ADMIN_HEADERS,)

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate],
              print_blob=False)
    @given(case=_strategy(op, known, mode))
    def run(case):
        for headers in identities:
            kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
            case.validate_response(_send(client, kwargs), checks=CHECKS)

    run()


@pytest.mark.parametrize("cid", [t.collection_id for t in themes.all_themes()])
def test_the_documents_example_features_are_accepted(cid, fuzz_db):
    """The fuzz's creates and replaces start from these: each is a Feature the register
    stores."""
    example = SPEC["components"]["schemas"][f"Feature_{cid}"]["example"]
    r = fuzz_db[0].post(f"/collections/{cid}/items", content=json.dumps(example),
                        headers={**ADMIN_HEADERS, "Content-Type": GEOJSON})
    assert r.status_code == 201, r.text
    assert r.json()["properties"].items() >= example["properties"].items()


def test_the_document_is_valid_openapi_3_0():
    SCHEMA.validate()


@pytest.mark.parametrize("label", list(OPERATIONS))
def test_every_answer_of_every_operation_has_a_schema(label):
    """What the fuzz checks answers against: a schema for every body an operation answers
    with (JSON ones with members), the problem details for every 4xx and 5xx."""
    op = SPEC["paths"][OPERATIONS[label].path][OPERATIONS[label].method.lower()]
    assert any(s.startswith("2") for s in op["responses"]), "no success documented"
    for status, response in op["responses"].items():
        for media, content in response.get("content", {}).items():
            schema = content.get("schema")
            assert schema, (status, media, "no schema")
            if status.startswith(("4", "5")):
                assert (media, schema) == ("application/problem+json",
                                           {"$ref": "#/components/schemas/Problem"}), status
            elif "json" in media:
                assert set(schema) & {"$ref", "properties", "anyOf"}, (status, media, schema)
