"""The access matrix for every theme: every role against every theme's read and write paths.

tests/test_access.py holds the shelter's full matrix (assignments, activation, API keys, the
database's own refusals); this module runs the same roles against every registered theme,
with objects of each theme placed in København and Aarhus at every `off_kode`, and checks
personal data (contact persons, phone numbers): readable by the authorities that may see the
object, never by the public (absent) or by planners and inspectors (empty). The past
(history and `asof`) follows the history rule: a version is read by a role that may see it
and the object's newest version (`HISTORY_SCENARIOS`: objects hidden, made public, handed to
another authority, deleted).
"""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from fastapi.testclient import TestClient

from datamodel import themes
from service.app import create_app
from service.auth import hash_api_key
from tests.conftest import make_settings, query
from tests.test_access import (ACTORS, AAR, KBH, WRITE_CASES, Who, _cvr, _expected_write,
                               headers_for)

THEMES = themes.all_themes()
AUTHORITIES = {"national_reader", "national_admin", "municipal_editor", "municipal_admin",
               "machine"}
PLACES = {KBH: (12.5683, 55.6761), AAR: (10.2039, 56.1535)}


def geometry(theme, lon: float, lat: float) -> dict:
    if not theme.is_area:
        return {"type": "Point", "coordinates": [lon, lat]}
    d = 0.003
    return {"type": "Polygon", "coordinates": [[[lon, lat], [lon + d, lat], [lon + d, lat + d],
                                                [lon, lat + d], [lon, lat]]]}


def sample_properties(theme, tag: str) -> dict:
    """Valid values for every required attribute of a theme, from its descriptor alone, and
    a value for each personal attribute."""
    from datamodel.codelists import load_codelists

    props = {}
    for f in theme.writable_fields:
        if not f.required and not f.personal:
            continue
        if f.default is not None:
            props[f.name] = f.default
        elif f.codelist:
            props[f.name] = next(c.kode for c in load_codelists()[f.codelist].values if c.aktiv)
        elif f.type == "integer":
            props[f.name] = int(f.maximum if f.personal and f.maximum else (f.minimum or 1))
        elif f.type == "number":
            props[f.name] = float(f.minimum or 1)
        elif f.type == "date":
            props[f.name] = "2026-06-01"
        elif f.type == "string":
            props[f.name] = f"{tag} {f.name}"[: f.max_length or 80]
        elif f.type == "uuid":
            props[f.name] = str(uuid.uuid4())
    return props


def _ids(r) -> set[str]:
    assert r.status_code == 200, r.text
    return {f["id"] for f in r.json()["features"]}


def sees(who: Who, off: int, cvr: int, kommune: int, kbh_cvr: int) -> bool:
    """The specification of visibility of one version (activation off, no assignments):
    GeoFA's off_kode and Ly's role/municipality/CVR scope."""
    roles = set(who.roles)
    municipal = roles & {"municipal_editor", "municipal_admin"}
    own_cvr = who.kommune is not None and cvr == kbh_cvr
    return bool(off == 1 or roles & {"national_reader", "national_admin"}
                or (own_cvr and (municipal or "machine" in roles))
                or (municipal and kommune == who.kommune and off != 2)
                or (off == 3 and roles & {"municipal_editor", "municipal_admin", "planner"}))


def expected_visible(theme, who: Who, rows, kbh_cvr: int) -> set[str]:
    """The objects of a theme a role sees (`sees` of their current versions)."""
    return {oid for oid, off, cvr, kommune in rows if sees(who, off, cvr, kommune, kbh_cvr)}


def expected_history(who: Who, versions, kbh_cvr: int) -> list[str] | None:
    """The history rule: the versions a role reads of an object (`versions` oldest first, as
    `stored_versions` gives them), or None (404) when the role may not see the object's newest
    version — its current one, or the one it was deleted in."""
    if not sees(who, *versions[-1][2:], kbh_cvr):
        return None
    return [v[0] for v in versions if sees(who, *v[2:], kbh_cvr)]


def _rows(url, theme):
    return [(str(o), off, cvr, k) for o, off, cvr, k in query(
        url, f"SELECT objekt_id, off_kode, cvr_kode, beliggenhedskommune "
             f"FROM ly.{theme.current_view}")]


def _insert(url, theme, kommune: int, off: int, tag: str) -> str:
    """One object of a theme, written through its current view as the owner."""
    props = {**sample_properties(theme, tag), "off_kode": off,
             "cvr_kode": _cvr(url, kommune)}
    cols = list(props)
    geom = "ST_Transform(ST_SetSRID(ST_GeomFromGeoJSON(%s), 4326), 25832)"
    if theme.is_area:
        geom = f"ST_Multi({geom})"
    with psycopg.connect(url) as conn:
        (oid,) = conn.execute(
            f"INSERT INTO ly.{theme.current_view} ({', '.join(cols)}, bruger_id, geometri) "
            f"VALUES ({', '.join(['%s'] * len(cols))}, 'setup', "
            f"{geom}) RETURNING objekt_id",
            [props[c] for c in cols] + [json.dumps(geometry(theme, *PLACES[kommune]))]
        ).fetchone()
    return str(oid)


def update_object(url, theme, oid: str, **values) -> None:
    """A new version of an object through its view (the owner's connection), in its own
    transaction (so it has its own system time). `kommune=` moves the object there."""
    sets, args = [], []
    if "kommune" in values:
        geom = "ST_Transform(ST_SetSRID(ST_GeomFromGeoJSON(%s), 4326), 25832)"
        sets.append(f"geometri = {'ST_Multi(' + geom + ')' if theme.is_area else geom}")
        args.append(json.dumps(geometry(theme, *PLACES[values.pop("kommune")])))
    for name, value in values.items():
        sets.append(f"{name} = %s")
        args.append(value)
    query(url, f"UPDATE ly.{theme.current_view} SET {', '.join(sets)} WHERE objekt_id = %s",
          [*args, oid])


def delete_object(url, theme, oid: str) -> None:
    query(url, f"DELETE FROM ly.{theme.current_view} WHERE objekt_id = %s", [oid])


def stored_versions(url, theme, oid: str) -> list[tuple]:
    """(versions_id, systid_fra, off_kode, cvr_kode, beliggenhedskommune) of every stored
    version of an object, oldest first."""
    return [(str(v), *rest) for v, *rest in query(
        url, f"SELECT versions_id, systid_fra, off_kode, cvr_kode, beliggenhedskommune "
             f"FROM ly.{theme.table} WHERE objekt_id = %s "
             "ORDER BY systid_fra, systid_til NULLS LAST", [oid])]


#: Objects with a past: their versions as (off_kode, municipality, the CVR of which
#: municipality), and whether they are deleted at the end. Each starts as its first state.
HISTORY_SCENARIOS = {
    "hidden": ([(1, KBH, KBH), (2, KBH, KBH)], False),
    "made_public": ([(3, KBH, KBH), (1, KBH, KBH)], False),
    "public_then_secret_then_public": ([(1, KBH, KBH), (3, KBH, KBH), (1, KBH, KBH)], False),
    "deleted_public": ([(1, KBH, KBH)], True),
    "deleted_after_hiding": ([(1, KBH, KBH), (2, KBH, KBH)], True),
    "deleted_restricted": ([(3, AAR, AAR)], True),
    "handed_to_aarhus": ([(2, KBH, KBH), (2, AAR, AAR)], False),
    "handed_to_copenhagen": ([(2, AAR, AAR), (2, KBH, KBH)], False),
    "restricted": ([(3, KBH, KBH), (2, KBH, KBH)], False),
}


def make_history(url, theme, name: str) -> str:
    """One object of a theme with the past of `HISTORY_SCENARIOS[name]`."""
    states, deleted = HISTORY_SCENARIOS[name]
    (off, kommune, _), *later = states
    oid = _insert(url, theme, kommune, off, f"{theme.temakode}-{name}")
    for off, kommune, owner in later:
        update_object(url, theme, oid, off_kode=off, kommune=kommune, cvr_kode=_cvr(url, owner))
    if deleted:
        delete_object(url, theme, oid)
    return oid


@pytest.fixture(scope="module")
def theme_db(template_db):
    from tests.conftest import _clone, _drop

    name = f"ly_acct_{uuid.uuid4().hex[:10]}"
    url = _clone(template_db, name)
    for theme in THEMES:
        for kommune in (KBH, AAR):
            for off in (1, 2, 3):
                _insert(url, theme, kommune, off, f"{theme.temakode}-{kommune}-{off}")
    keys = {"sync": "ly_test_" + uuid.uuid4().hex}
    query(url, "INSERT INTO ly.api_noegle (navn, hash, roller, cvr_kode, kommuner) VALUES "
               "('sync', %s, %s, %s, %s)",
          [hash_api_key(keys["sync"]), ["municipal_editor"], _cvr(url, KBH), [KBH]])
    yield url, keys
    _drop(name)


@pytest.fixture(scope="module")
def theme_client(theme_db):
    with TestClient(create_app(make_settings(theme_db[0]))) as c:
        yield c


@pytest.mark.parametrize("theme", THEMES, ids=lambda t: t.collection_id)
@pytest.mark.parametrize("who", ACTORS, ids=lambda w: w.name)
def test_every_theme_read_path_shows_exactly_what_the_role_may_see(theme_db, theme_client,
                                                                    theme, who):
    url, keys = theme_db
    if theme.assignable and who.name == "inspector":
        pytest.skip("the shelter's assignments are covered by tests/test_access.py")
    items = f"/collections/{theme.collection_id}/items"
    h = headers_for(who, url, keys)
    rows = _rows(url, theme)
    visible = expected_visible(theme, who, rows, _cvr(url, KBH))
    hidden = {r[0] for r in rows} - visible
    c = theme_client

    assert _ids(c.get(items, params={"limit": 10000}, headers=h)) == visible
    assert c.get(items, params={"limit": 1}, headers=h).json()["numberMatched"] == len(visible)
    aar = {r[0] for r in rows if r[3] == AAR}
    assert _ids(c.get(items, params={"limit": 10000, "filter": f"beliggenhedskommune = {AAR}"},
                      headers=h)) == visible & aar
    for oid in sorted(hidden)[:4]:
        for path in (f"{items}/{oid}", f"{items}/{oid}/history"):
            assert c.get(path, headers=h).status_code == 404, path
    if hidden:
        listed = ", ".join(f"'{o}'" for o in sorted(hidden)[:20])
        assert _ids(c.get(items, params={"limit": 10000, "filter": f"objekt_id IN ({listed})"},
                          headers=h)) == set()
    (now,) = query(url, "SELECT now()")[0]
    assert _ids(c.get(items, params={"limit": 10000, "asof": now.isoformat()},
                      headers=h)) == visible

    # personal data: the authorities read it; the public never gets the attribute; planners
    # and inspectors get it empty
    for f in c.get(items, params={"limit": 10000}, headers=h).json()["features"]:
        for p in theme.personal_fields:
            if who.name == "public":
                assert p.name not in f["properties"]
            elif set(who.roles) & AUTHORITIES:
                assert f["properties"][p.name] is not None, (who.name, p.name)
            else:
                assert f["properties"][p.name] is None, (who.name, p.name)


def _snapshot(url, theme) -> tuple:
    return tuple(query(url, f"SELECT count(*), md5(string_agg(b::text, '|' ORDER BY "
                            f"versions_id)) FROM ly.{theme.table} b")[0])


@pytest.mark.parametrize("theme", [t for t in THEMES if not t.assignable],
                         ids=lambda t: t.collection_id)
@pytest.mark.parametrize("who", ACTORS, ids=lambda w: w.name)
def test_every_theme_write_path_is_allowed_or_refused_by_role_and_scope(db_url, theme, who):
    api_key = "ly_test_" + uuid.uuid4().hex
    query(db_url, "INSERT INTO ly.api_noegle (navn, hash, roller, cvr_kode, kommuner) VALUES "
                  "('sync', %s, %s, %s, %s)",
          [hash_api_key(api_key), ["municipal_editor"], _cvr(db_url, KBH), [KBH]])
    h = headers_for(who, db_url, {"sync": api_key})
    items = f"/collections/{theme.collection_id}/items"
    targets = {"update_own": _insert(db_url, theme, KBH, 3, "own"),
               "update_other_visible": _insert(db_url, theme, AAR, 3, "other"),
               "update_other_hidden": _insert(db_url, theme, AAR, 2, "hidden"),
               "delete_own": _insert(db_url, theme, KBH, 1, "own-1"),
               "delete_other_visible": _insert(db_url, theme, AAR, 1, "other-1")}
    patch_field = next(f for f in theme.writable_fields if f.type == "string"
                       and not f.codelist and not f.personal and f.name != "aendringsaarsag")
    with TestClient(create_app(make_settings(db_url))) as c:
        for case in WRITE_CASES:
            before = _snapshot(db_url, theme)
            if case.startswith("create"):
                place = PLACES[KBH if case == "create_own" else AAR]
                body = {"type": "Feature", "geometry": geometry(theme, *place),
                        "properties": sample_properties(theme, case)}
                r = c.post(items, content=json.dumps(body),
                           headers={"Content-Type": "application/geo+json", **h})
            elif case.startswith("update"):
                r = c.patch(f"{items}/{targets[case]}",
                            content=json.dumps({"properties": {patch_field.name: "rettet"}}),
                            headers={"Content-Type": "application/merge-patch+json", **h})
            else:
                r = c.delete(f"{items}/{targets[case]}", headers=h)
            want = _expected_write(who, case)
            assert r.status_code == want, (case, r.status_code, r.text)
            if want >= 400:
                assert r.headers["content-type"] == "application/problem+json"
                assert _snapshot(db_url, theme) == before, case
            else:
                assert _snapshot(db_url, theme) != before, case


@pytest.fixture(scope="module")
def history_objects(theme_db):
    """{collection id: {scenario: objekt_id}} in the matrix' database."""
    url, _ = theme_db
    return {theme.collection_id: {name: make_history(url, theme, name)
                                  for name in HISTORY_SCENARIOS} for theme in THEMES}


@pytest.mark.parametrize("theme", THEMES, ids=lambda t: t.collection_id)
@pytest.mark.parametrize("who", ACTORS, ids=lambda w: w.name)
def test_every_theme_history_and_asof_follow_the_history_rule(theme_db, theme_client,
                                                              history_objects, theme, who):
    """Every role reads exactly the versions the history rule gives (`expected_history`):
    in an object's history, and `asof` the start of each version, on the single item and in
    the items (the path tiles and exports share)."""
    url, keys = theme_db
    h = headers_for(who, url, keys)
    kbh_cvr = _cvr(url, KBH)
    items = f"/collections/{theme.collection_id}/items"
    c = theme_client
    for name, oid in history_objects[theme.collection_id].items():
        versions = stored_versions(url, theme, oid)
        want = expected_history(who, versions, kbh_cvr)
        r = c.get(f"{items}/{oid}/history", headers=h)
        if want is None:
            assert r.status_code == 404, (name, r.text)
        else:
            assert r.status_code == 200, (name, r.text)
            got = [f["properties"]["versions_id"] for f in r.json()["features"]]
            assert got == want, name
        readable = set(want or ())
        for versions_id, start, *_ in versions:
            expected = versions_id if versions_id in readable else None
            r = c.get(f"{items}/{oid}", params={"asof": start.isoformat()}, headers=h)
            assert r.status_code == (200 if expected else 404), (name, versions_id, r.text)
            if expected:
                assert r.json()["properties"]["versions_id"] == expected
            r = c.get(items, params={"asof": start.isoformat(), "limit": 10,
                                     "filter": f"objekt_id = '{oid}'"}, headers=h)
            assert {f["properties"]["versions_id"] for f in r.json()["features"]} == \
                ({expected} if expected else set()), (name, versions_id)
