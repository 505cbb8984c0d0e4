"""Who may see and change what: every role against every read and write path, with the
database as witness.

The expected visibility is written out here as the specification (`expected_visible`) and
compared with what each path returns: items, bbox, CQL2 filters crafted to reach hidden rows,
single items, history, as-of reads, counts. Refused writes must leave the register exactly
as it was.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.app import create_app
from service.auth import hash_api_key
from service.settings import Settings
from tests.conftest import (ITEMS, KEY_FILE, SAMS_CVR, bearer, make_settings, query, snapshot,
                            token)

KBH, AAR = 101, 751  # København and Aarhus


def _cvr(url, kommune):
    return query(url, "SELECT cvr_kode FROM ly.kommune WHERE kommunekode = %s", [kommune])[0][0]


@dataclass(frozen=True)
class Who:
    name: str
    roles: tuple[str, ...] = ()
    kommune: int | None = None
    level: str = "substantial"
    subject: str = "tester"


ACTORS = [
    Who("public"),
    Who("inspector", ("inspector",), subject="entreprenoer-1"),
    Who("municipal_editor", ("municipal_editor",), KBH, subject="kbh-redaktoer"),
    Who("municipal_admin", ("municipal_admin",), KBH, subject="kbh-admin"),
    Who("national_reader", ("national_reader",), subject="sams-laeser"),
    Who("national_admin", ("national_admin",), subject="sams-admin"),
    Who("planner", ("planner",), subject="planlaegger"),
    Who("machine", ("machine", "municipal_editor"), KBH, level="system", subject="api:sync"),
    Who("editor_low_assurance", ("municipal_editor",), KBH, level="low", subject="kbh-lav"),
]


def headers_for(who: Who, url: str, api_keys: dict) -> dict:
    if who.name == "public":
        return {}
    if who.name == "machine":
        return {"X-API-Key": api_keys["sync"]}
    cvr = _cvr(url, who.kommune) if who.kommune else (SAMS_CVR if "national" in who.name
                                                     else None)
    return bearer(who.roles, subject=who.subject, cvr=cvr,
                  kommuner=[who.kommune] if who.kommune else None, level=who.level)


def expected_visible(who: Who, rows, assigned: set[str], kbh_cvr: int,
                     activated: bool = False) -> set[str]:
    """The specification of visibility (issue 3), row by row."""
    out = set()
    for oid, off, cvr, kommune, art in rows:
        roles = set(who.roles)
        municipal = roles & {"municipal_editor", "municipal_admin"}
        own_cvr = who.kommune is not None and cvr == kbh_cvr
        visible = (
            off == 1
            or roles & {"national_reader", "national_admin"}
            or (own_cvr and (municipal or "machine" in roles))
            or (municipal and kommune == who.kommune and off != 2)
            or (off == 3 and roles & {"municipal_editor", "municipal_admin", "planner"})
            or (activated and art in (1, 3))
            or ("inspector" in roles and oid in assigned)
        )
        if visible:
            out.add(oid)
    return out


def all_rows(url):
    return [(str(o), off, cvr, k, art) for o, off, cvr, k, art in query(
        url, "SELECT objekt_id, off_kode, cvr_kode, beliggenhedskommune, beskyt_rum_kode "
             "FROM ly.t_6101_beskyt_rum")]


@pytest.fixture(scope="module")
def access_db(template_db):
    from tests.conftest import _clone, _drop

    name = f"ly_acc_{uuid.uuid4().hex[:10]}"
    url = _clone(template_db, name)
    # one Aarhus shelter hidden from Copenhagen (off_kode 2) is assigned to the inspector
    (hidden,) = query(url, "SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE "
                           "beliggenhedskommune = %s AND off_kode = 2 ORDER BY objekt_id "
                           "LIMIT 1", [AAR])[0]
    query(url, "INSERT INTO ly.tildeling (objekt_id, subjekt, cvr_kode, tildelt_af) "
               "VALUES (%s, 'entreprenoer-1', %s, 'setup')", [hidden, _cvr(url, AAR)])
    keys = {"sync": "ly_test_" + uuid.uuid4().hex}
    query(url, "INSERT INTO ly.api_noegle (navn, hash, roller, cvr_kode, kommuner) VALUES "
               "('sync', %s, %s, %s, %s)",
          [hash_api_key(keys["sync"]), ["municipal_editor"], _cvr(url, KBH), [KBH]])
    yield url, keys, {str(hidden)}
    _drop(name)


@pytest.fixture(scope="module")
def access_client(access_db):
    url, _, _ = access_db
    with TestClient(create_app(make_settings(url))) as c:
        yield c


def _ids(r) -> set[str]:
    assert r.status_code == 200, r.text
    return {f["id"] for f in r.json()["features"]}


@pytest.mark.parametrize("who", ACTORS, ids=lambda w: w.name)
def test_every_read_path_shows_exactly_what_the_role_may_see(access_db, access_client, who):
    url, keys, assigned = access_db
    h = headers_for(who, url, keys)
    rows = all_rows(url)
    kbh_cvr = _cvr(url, KBH)
    visible = expected_visible(who, rows, assigned, kbh_cvr)
    hidden = {r[0] for r in rows} - visible
    c = access_client

    # the collection, every page
    assert _ids(c.get(ITEMS, params={"limit": 10000}, headers=h)) == visible
    first = c.get(ITEMS, params={"limit": 5}, headers=h).json()
    assert first["numberMatched"] == len(visible)  # counts leak nothing either

    # bbox around Aarhus, and CQL2 filters aimed at Aarhus' and at hidden rows
    aar_rows = {r[0] for r in rows if r[3] == AAR}
    aar_bbox = "9.95,56.05,10.35,56.25"
    in_bbox = _ids(c.get(ITEMS, params={"limit": 10000, "bbox": aar_bbox}, headers=h))
    assert in_bbox <= visible
    assert _ids(c.get(ITEMS, params={"limit": 10000, "filter": f"beliggenhedskommune = {AAR}"},
                      headers=h)) == visible & aar_rows
    some_hidden = sorted(hidden)[:20]
    if some_hidden:
        listed = ", ".join(f"'{h_}'" for h_ in some_hidden)
        r = c.get(ITEMS, params={"limit": 10000, "filter": f"objekt_id IN ({listed})"},
                  headers=h)
        assert _ids(r) == set()
        r = c.get(ITEMS, params={"limit": 10000, "filter": "S_INTERSECTS(geometri, "
                                 "BBOX(7,54,16,58)) OR pladser > 0"}, headers=h)
        assert _ids(r) == visible

    # single items, history and as-of: hidden rows are 404, visible ones are there
    probe_visible = sorted(visible)[:3]
    for oid in probe_visible:
        assert c.get(f"{ITEMS}/{oid}", headers=h).status_code == 200
        assert c.get(f"{ITEMS}/{oid}/history", headers=h).status_code == 200
    for oid in some_hidden[:5]:
        for path in (f"{ITEMS}/{oid}", f"{ITEMS}/{oid}/history"):
            r = c.get(path, headers=h)
            assert r.status_code == 404, (path, r.status_code)
            assert r.headers["content-type"] == "application/problem+json"
        r = c.get(f"{ITEMS}/{oid}", params={"asof": "2030-01-01T00:00:00Z"}, headers=h)
        assert r.status_code in (400, 404)
    (now,) = query(url, "SELECT now()")[0]
    asof = _ids(c.get(ITEMS, params={"limit": 10000, "asof": now.isoformat()}, headers=h))
    assert asof == visible


def test_the_public_sees_only_public_attributes_and_cannot_filter_on_others(
        access_db, access_client):
    c = access_client
    features = c.get(ITEMS, params={"limit": 50}).json()["features"]
    assert features
    allowed = {"objekt_id", "versions_id", "systid_fra", "systid_til", "beskyt_rum_kode",
               "beskyt_rum", "klargjort_kode", "klargjort", "pladser", "vejnavn", "husnr",
               "postnr", "postnr_by", "beliggenhedskommune", "navn", "trinfri_adgang_kode",
               "trinfri_adgang", "funktionsstatus_kode", "funktionsstatus"}
    for f in features:
        assert set(f["properties"]) == allowed
    for params in ({"note": "x"}, {"filter": "note IS NULL"}, {"filter": "off_kode = 2"},
                   {"filter": "cvr_kode = 64942212"}):
        r = c.get(ITEMS, params=params)
        assert r.status_code == 400, params
    schema = c.get("/collections/beskyttelsesrum/queryables").json()["properties"]
    assert "note" not in schema and "pladser" in schema


def test_the_database_refuses_the_public_role_private_columns_and_hidden_rows(access_db):
    url, _, _ = access_db
    with psycopg.connect(url) as conn:
        conn.execute("SET ROLE ly_anon")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT note FROM ly.beskyttelsesrum LIMIT 1")
    with psycopg.connect(url) as conn:
        conn.execute("SET ROLE ly_anon")
        seen = conn.execute("SELECT count(*) FROM ly.offentlig_t_6101_beskyt_rum").fetchone()[0]
    (public,) = query(url, "SELECT count(*) FROM ly.t_6101_beskyt_rum WHERE off_kode = 1")[0]
    assert seen == public


WRITE_CASES = ["create_own", "create_other", "update_own", "update_other_visible",
               "update_other_hidden", "delete_own", "delete_other_visible"]


def _expected_write(who: Who, case: str) -> int:
    if who.name == "public":
        return 401
    if who.name in ("inspector", "national_reader", "planner", "editor_low_assurance"):
        return 403
    if who.name == "national_admin":
        return {"create_own": 201, "create_other": 201, "delete_own": 204,
                "delete_other_visible": 204}.get(case, 200)
    # municipal editor/admin of København, and the machine client with that scope
    return {"create_own": 201, "create_other": 403, "update_own": 200,
            "update_other_visible": 403, "update_other_hidden": 404, "delete_own": 204,
            "delete_other_visible": 403}[case]


def _pick(url, kommune, off):
    return str(query(url, "SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE "
                          "beliggenhedskommune = %s AND off_kode = %s AND cvr_kode = "
                          "(SELECT cvr_kode FROM ly.kommune WHERE kommunekode = %s) "
                          "ORDER BY objekt_id LIMIT 1", [kommune, off, kommune])[0][0])


@pytest.mark.parametrize("who", ACTORS, ids=lambda w: w.name)
def test_every_write_path_is_allowed_or_refused_by_role_and_scope(db_url, who):
    api_key = "ly_test_" + uuid.uuid4().hex
    query(db_url, "INSERT INTO ly.api_noegle (navn, hash, roller, cvr_kode, kommuner) VALUES "
                  "('sync', %s, %s, %s, %s)",
          [hash_api_key(api_key), ["municipal_editor"], _cvr(db_url, KBH), [KBH]])
    h = headers_for(who, db_url, {"sync": api_key})
    geojson = {"Content-Type": "application/geo+json"}
    point = {"create_own": [12.5683, 55.6761], "create_other": [10.2039, 56.1535]}
    targets = {"update_own": _pick(db_url, KBH, 3), "update_other_visible": _pick(db_url, AAR, 3),
               "update_other_hidden": _pick(db_url, AAR, 2),
               "delete_own": _pick(db_url, KBH, 1), "delete_other_visible": _pick(db_url, AAR, 1)}
    with TestClient(create_app(make_settings(db_url))) as c:
        for case in WRITE_CASES:
            before = snapshot(db_url)
            audit_before = query(db_url, "SELECT count(*) FROM ly.revision")[0][0]
            if case.startswith("create"):
                body = {"type": "Feature", "geometry": {"type": "Point", "coordinates": point[case]},
                        "properties": {"beskyt_rum_kode": 1, "pladser": 75, "navn": case}}
                r = c.post(ITEMS, content=json.dumps(body), headers={**geojson, **h})
            elif case.startswith("update"):
                r = c.patch(f"{ITEMS}/{targets[case]}", content=json.dumps(
                    {"properties": {"pladser": 77}}),
                    headers={"Content-Type": "application/merge-patch+json", **h})
            else:
                r = c.delete(f"{ITEMS}/{targets[case]}", headers=h)
            want = _expected_write(who, case)
            assert r.status_code == want, (case, r.status_code, r.text)
            if want >= 400:
                assert r.headers["content-type"] == "application/problem+json"
                assert snapshot(db_url) == before, f"{case}: a refused write changed the register"
                assert query(db_url, "SELECT count(*) FROM ly.revision")[0][0] == audit_before
            else:
                assert snapshot(db_url) != before
                subject, cvr, klient = query(
                    db_url, "SELECT subjekt, cvr_kode, klient FROM ly.revision "
                            "ORDER BY id DESC LIMIT 1")[0]
                assert subject == (who.subject if who.name != "machine" else "api:sync")
                if who.name == "machine":
                    assert klient == "api-key:sync"


def test_a_municipal_write_carries_the_actors_cvr_and_user(db_url):
    h = bearer(["municipal_editor"], subject="kbh-redaktoer", cvr=_cvr(db_url, KBH),
               kommuner=[KBH])
    body = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [12.5683, 55.6761]},
            "properties": {"beskyt_rum_kode": 1, "pladser": 75, "cvr_kode": 29189420}}
    with TestClient(create_app(make_settings(db_url))) as c:
        r = c.post(ITEMS, content=json.dumps(body),
                   headers={"Content-Type": "application/geo+json", **h})
    assert r.status_code == 201, r.text
    props = r.json()["properties"]
    assert props["cvr_kode"] == _cvr(db_url, KBH) and props["bruger_id"] == "kbh-redaktoer"


def test_the_database_itself_refuses_writes_outside_scope(db_url):
    """Even SQL run as the user role with a municipal scope cannot reach another municipality."""
    aar = _pick(db_url, AAR, 3)
    before = snapshot(db_url)
    with psycopg.connect(db_url) as conn:
        conn.execute("SET ROLE ly_user")
        conn.execute("SELECT set_config('ly.roller', 'municipal_editor', false), "
                     "set_config('ly.kommuner', '101', false), "
                     "set_config('ly.cvr', %s, false), set_config('ly.subjekt', 'x', false), "
                     "set_config('ly.niveau', 'substantial', false)", [str(_cvr(db_url, KBH))])
        cur = conn.execute("UPDATE ly.t_6101_beskyt_rum SET pladser = 1 WHERE objekt_id = %s",
                           [aar])
        assert cur.rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO ly.beskyttelsesrum (versions_id, objekt_id, systid_fra, "
                         "oprettet, cvr_kode, bruger_id, oprindkode, statuskode, off_kode, "
                         "beskyt_rum_kode, klargjort_kode, pladser, funktionsstatus_kode, "
                         "pladser_kilde_kode, egnethed_kode, beliggenhedskommune, geometri) "
                         "SELECT gen_random_uuid(), gen_random_uuid(), now(), now(), cvr_kode,"
                         " 'x', 0, 3, 3, 1, 3, 5, 3, 9, 9, 751, geometri FROM "
                         "ly.beskyttelsesrum LIMIT 1")
    assert snapshot(db_url) == before


# --- tokens ---

def _foreign_key_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _claims(**over):
    import time

    now = int(time.time())
    claims = {"iss": "ly-dev", "aud": "ly", "sub": "x", "iat": now, "exp": now + 600,
              "roles": ["national_reader"]}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.mark.parametrize("case", ["bad-signature", "wrong-audience", "expired", "no-roles",
                                  "no-subject", "municipal-without-kommune", "unknown-issuer",
                                  "not-a-jwt", "basic-auth", "none-algorithm"])
def test_bad_tokens_are_refused_with_401(ro_client, case):
    own = KEY_FILE.read_bytes()
    tokens = {
        "bad-signature": jwt.encode(_claims(), _foreign_key_pem(), "RS256",
                                    headers={"kid": "ly-dev"}),
        "wrong-audience": jwt.encode(_claims(aud="someone-else"), own, "RS256"),
        "expired": jwt.encode(_claims(exp=1_600_000_000, iat=1_599_999_000), own, "RS256"),
        "no-roles": jwt.encode(_claims(roles=None), own, "RS256"),
        "no-subject": jwt.encode(_claims(sub=None), own, "RS256"),
        "municipal-without-kommune": jwt.encode(_claims(roles=["municipal_editor"], cvr=1),
                                                own, "RS256"),
        "unknown-issuer": jwt.encode(_claims(iss="https://evil.example"), own, "RS256"),
        "not-a-jwt": "abc.def",
        "none-algorithm": jwt.encode(_claims(), None, "none"),
    }
    header = "Basic dXNlcjpwdw==" if case == "basic-auth" else f"Bearer {tokens[case]}"
    for path in (ITEMS, "/", "/mig"):
        r = ro_client.get(path, headers={"Authorization": header})
        assert r.status_code == 401, (case, path, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_an_invalid_api_key_is_401(ro_client):
    r = ro_client.get(ITEMS, headers={"X-API-Key": "ly_nope", "Authorization": ""})
    assert r.status_code == 401


def test_a_production_configuration_refuses_development_keys(shared_db_url):
    with pytest.raises(ValidationError, match="refuses development keys"):
        Settings(database_url=shared_db_url, environment="production",
                 dev_key_file=str(KEY_FILE))
    prod = Settings(database_url=shared_db_url, environment="production", dev_key_file=None,
                    pool_min_size=1, pool_max_size=2)
    with TestClient(create_app(prod)) as c:
        r = c.get(ITEMS, headers={"Authorization": "Bearer " + token(["national_admin"])})
        assert r.status_code == 401


def test_an_oidc_broker_token_is_accepted_with_nsis_level(shared_db_url, tmp_path):
    from cryptography.hazmat.primitives import serialization

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "broker-1", "alg": "RS256", "use": "sig"})
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    settings = make_settings(shared_db_url, oidc_issuer="https://broker.example/realms/kl",
                             oidc_audience="ly-api",
                             oidc_jwks_file=str(tmp_path / "jwks.json"))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    claims = _claims(iss="https://broker.example/realms/kl", aud="ly-api", sub="a1b2",
                     roles=["https://ly.example/roller/municipal_admin"], cvr=29189420,
                     kommunekode="0851",
                     loa="https://data.gov.dk/concept/core/nsis/loa/Substantial")
    tok = jwt.encode(claims, pem, "RS256", headers={"kid": "broker-1"})
    with TestClient(create_app(settings)) as c:
        me = c.get("/mig", headers={"Authorization": f"Bearer {tok}"}).json()
    assert me["roller"] == ["municipal_admin"] and me["kommuner"] == [851]
    assert me["niveau"] == "substantial" and me["cvr_kode"] == 29189420


# --- activation, audit, assignments, presentation ---

def test_activation_opens_public_shelter_locations_and_is_audited(db_url):
    admin = bearer(["national_admin"], subject="sams-vagt", cvr=SAMS_CVR)
    rows = all_rows(db_url)
    public = Who("public")
    with TestClient(create_app(make_settings(db_url))) as c:
        before = _ids(c.get(ITEMS, params={"limit": 10000}))
        assert before == expected_visible(public, rows, set(), 0)
        body = json.dumps({"aktiv": True, "begrundelse": "Øvelse: klargøring"})
        assert c.put("/aktivering", content=body,
                     headers={"Content-Type": "application/json"}).status_code == 401
        editor = bearer(["municipal_admin"], cvr=_cvr(db_url, KBH), kommuner=[KBH])
        assert c.put("/aktivering", content=body, headers={
            "Content-Type": "application/json", **editor}).status_code == 403
        r = c.put("/aktivering", content=body, headers={"Content-Type": "application/json",
                                                        **admin})
        assert r.status_code == 200 and r.json()["aktiv"] is True
        during = _ids(c.get(ITEMS, params={"limit": 10000}))
        assert during == expected_visible(public, rows, set(), 0, activated=True)
        assert during > before
        c.put("/aktivering", content=json.dumps({"aktiv": False, "begrundelse": "Slut"}),
              headers={"Content-Type": "application/json", **admin})
        assert _ids(c.get(ITEMS, params={"limit": 10000})) == before
        trail = c.get("/revision", headers=admin).json()["revision"]
    switches = [e for e in trail if e["handling"] == "aktivering"]
    assert [e["detaljer"]["aktiv"] for e in switches] == [False, True]
    assert all(e["subjekt"] == "sams-vagt" for e in switches)


def test_the_audit_trail_shows_who_changed_what_and_only_to_admins(db_url):
    kbh_cvr = _cvr(db_url, KBH)
    editor = bearer(["municipal_editor"], subject="kbh-redaktoer", cvr=kbh_cvr, kommuner=[KBH])
    target = _pick(db_url, KBH, 3)
    with TestClient(create_app(make_settings(db_url))) as c:
        old = c.get(f"{ITEMS}/{target}", headers=editor).headers["etag"].strip('"')
        r = c.patch(f"{ITEMS}/{target}", content=json.dumps({"properties": {"pladser": 321}}),
                    headers={"Content-Type": "application/merge-patch+json", **editor})
        new = r.headers["etag"].strip('"')
        assert c.delete(f"{ITEMS}/{target}", headers=editor).status_code == 204
        kbh_admin = bearer(["municipal_admin"], cvr=kbh_cvr, kommuner=[KBH])
        entries = c.get("/revision", params={"objekt_id": target}, headers=kbh_admin).json()
        assert c.get("/revision", headers=editor).status_code == 403
        assert c.get("/revision").status_code == 401
        aar_admin = bearer(["municipal_admin"], cvr=_cvr(db_url, AAR), kommuner=[AAR])
        other = c.get("/revision", params={"objekt_id": target}, headers=aar_admin).json()
    ret, slet = sorted(entries["revision"], key=lambda e: e["id"])[-2:]
    assert (ret["handling"], ret["foer_versions_id"], ret["efter_versions_id"]) == (
        "ret", old, new)
    assert (slet["handling"], slet["foer_versions_id"], slet["efter_versions_id"]) == (
        "slet", new, None)
    assert ret["subjekt"] == slet["subjekt"] == "kbh-redaktoer"
    assert ret["cvr_kode"] == kbh_cvr and ret["klient"] == "dev"
    assert other["revision"] == []  # another municipality's admin sees none of it
    with pytest.raises(psycopg.Error, match="revisionssporet"):
        query(db_url, "DELETE FROM ly.revision")


def test_inspectors_see_what_they_are_assigned(db_url):
    kbh_cvr = _cvr(db_url, KBH)
    admin = bearer(["municipal_admin"], subject="kbh-admin", cvr=kbh_cvr, kommuner=[KBH])
    inspector = bearer(["inspector"], subject="entreprenoer-7")
    target = _pick(db_url, KBH, 2)
    with TestClient(create_app(make_settings(db_url))) as c:
        assert c.get(f"{ITEMS}/{target}", headers=inspector).status_code == 404
        r = c.post("/tildelinger", content=json.dumps({"objekt_id": target,
                                                       "subjekt": "entreprenoer-7"}),
                   headers={"Content-Type": "application/json", **admin})
        assert r.status_code == 201, r.text
        assert c.get(f"{ITEMS}/{target}", headers=inspector).status_code == 200
        aar = _pick(db_url, AAR, 2)
        r = c.post("/tildelinger", content=json.dumps({"objekt_id": aar,
                                                       "subjekt": "entreprenoer-7"}),
                   headers={"Content-Type": "application/json", **admin})
        assert r.status_code == 404  # another municipality's hidden shelter does not exist
        mine = c.get("/tildelinger", headers=inspector).json()["tildelinger"]
    assert [t["objekt_id"] for t in mine] == [target]


def test_html_pages_show_who_is_signed_in(ro_client, anon_client):
    page = ro_client.get(ITEMS, params={"f": "html", "limit": 1}).text
    assert "Logget ind som" in page and "sams-admin" in page
    assert "Ikke logget ind" in anon_client.get("/", params={"f": "html"}).text


def test_openapi_declares_the_security_schemes(anon_client):
    spec = anon_client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer"
    assert schemes["apiKey"]["in"] == "header" and schemes["apiKey"]["name"] == "X-API-Key"
