"""History visibility: the past of an object is read only by those who may see its present.

A viewer reads a past version (history, `asof` on items, single items, exports and tiles)
only when the viewer may see the object's newest version — its current version, or for a
deleted object the version it was deleted in — and may see that past version itself, both
by the same row-level security (GeoFA's `off_kode`, Ly's role/municipality/CVR scope). So
hiding an object (off_kode 1 → 2), handing it to another authority or deleting it after
hiding it also hides its past; a version that was never public stays hidden from the public
after the object is made public. Scenarios for every theme, written as the owner through
the theme's view (versions in separate transactions, so they have their own system times).
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from fastapi.testclient import TestClient

from cli.main import migrate
from datamodel import storage, themes
from datamodel.db import with_database
from service.app import create_app
from tests.conftest import BASE_URL, SAMS_CVR, _drop, bearer, make_settings
from tests.test_access import AAR, KBH, _cvr
from tests.test_access_themes import HISTORY_SCENARIOS, make_history, stored_versions

THEMES = themes.all_themes()
PROBLEM = "application/problem+json"


def _versions(url, theme, oid: str) -> list[tuple[str, object]]:
    """(versions_id, systid_fra) of every stored version, oldest first."""
    return [(v[0], v[1]) for v in stored_versions(url, theme, oid)]


@pytest.fixture(scope="module")
def past_db(template_db):
    from tests.conftest import _clone

    name = f"ly_past_{uuid.uuid4().hex[:10]}"
    url = _clone(template_db, name)
    objects = {theme.collection_id: {s: make_history(url, theme, s)
                                        for s in HISTORY_SCENARIOS} for theme in THEMES}
    yield url, objects
    _drop(name)


@pytest.fixture(scope="module")
def past_client(past_db):
    with TestClient(create_app(make_settings(past_db[0]))) as c:
        yield c


PUBLIC: dict = {}


def _editor(url, kommune=KBH) -> dict:
    return bearer(["municipal_editor"], subject="kbh-redaktoer", cvr=_cvr(url, kommune),
                  kommuner=[kommune])


def _history(c, theme, oid, headers) -> list[str] | None:
    """versions_id of the history a viewer reads, or None for a 404."""
    r = c.get(f"/collections/{theme.collection_id}/items/{oid}/history", headers=headers)
    if r.status_code == 404:
        assert r.headers["content-type"] == PROBLEM
        return None
    assert r.status_code == 200, r.text
    return [f["properties"]["versions_id"] for f in r.json()["features"]]


def _asof_item(c, theme, oid, moment, headers) -> str | None:
    r = c.get(f"/collections/{theme.collection_id}/items/{oid}",
              params={"asof": moment.isoformat()}, headers=headers)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return r.json()["properties"]["versions_id"]


def _asof_listed(c, theme, oid, moment, headers) -> set[str]:
    r = c.get(f"/collections/{theme.collection_id}/items",
              params={"asof": moment.isoformat(), "filter": f"objekt_id = '{oid}'",
                      "limit": 10}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["numberMatched"] == len(r.json()["features"])
    return {f["properties"]["versions_id"] for f in r.json()["features"]}


@pytest.mark.parametrize("theme", THEMES, ids=lambda t: t.collection_id)
def test_the_public_no_longer_reads_the_past_of_an_object_made_hidden(past_db, past_client,
                                                                       theme):
    """off_kode 1 → 2: the public read the public version before; now neither its history
    nor `asof` a time it was public shows anything."""
    url, objects = past_db
    oid = objects[theme.collection_id]["hidden"]
    (v1, t1), (v2, _) = _versions(url, theme, oid)
    c = past_client
    assert _history(c, theme, oid, PUBLIC) is None
    assert _asof_item(c, theme, oid, t1, PUBLIC) is None
    assert _asof_listed(c, theme, oid, t1, PUBLIC) == set()
    # the owning authority still reads every version
    assert _history(c, theme, oid, _editor(url)) == [v1, v2]
    assert _asof_item(c, theme, oid, t1, _editor(url)) == v1
    assert _asof_listed(c, theme, oid, t1, _editor(url)) == {v1}


@pytest.mark.parametrize("theme", THEMES, ids=lambda t: t.collection_id)
def test_a_version_that_was_not_public_stays_hidden_when_the_object_is_made_public(
        past_db, past_client, theme):
    url, objects = past_db
    c = past_client
    oid = objects[theme.collection_id]["made_public"]
    (v1, t1), (v2, t2) = _versions(url, theme, oid)
    assert _history(c, theme, oid, PUBLIC) == [v2]
    assert _asof_item(c, theme, oid, t1, PUBLIC) is None
    assert _asof_item(c, theme, oid, t2, PUBLIC) == v2
    assert _asof_listed(c, theme, oid, t1, PUBLIC) == set()
    # public, off_kode 3 for a while, public again: the gap stays a gap
    oid = objects[theme.collection_id]["public_then_secret_then_public"]
    (v1, t1), (v2, t2), (v3, t3) = _versions(url, theme, oid)
    assert _history(c, theme, oid, PUBLIC) == [v1, v3]
    assert [_asof_item(c, theme, oid, t, PUBLIC) for t in (t1, t2, t3)] == [v1, None, v3]
    assert _history(c, theme, oid, _editor(url)) == [v1, v2, v3]


@pytest.mark.parametrize("theme", THEMES, ids=lambda t: t.collection_id)
def test_a_deleted_object_keeps_the_visibility_of_the_version_it_was_deleted_in(
        past_db, past_client, theme):
    """Deleted while public: the public reads its history, ending in the closed version (the
    tombstone a GeoFA consumer reads); hidden, then deleted: its past is hidden too."""
    url, objects = past_db
    c = past_client
    oid = objects[theme.collection_id]["deleted_public"]
    [(v1, t1)] = _versions(url, theme, oid)
    r = c.get(f"/collections/{theme.collection_id}/items/{oid}/history")
    assert r.status_code == 200
    [version] = r.json()["features"]
    assert version["properties"]["versions_id"] == v1
    assert version["properties"]["systid_til"] is not None
    assert _asof_item(c, theme, oid, t1, PUBLIC) == v1
    assert c.get(f"/collections/{theme.collection_id}/items/{oid}").status_code == 404

    oid = objects[theme.collection_id]["deleted_after_hiding"]
    (v1, t1), (v2, t2) = _versions(url, theme, oid)
    assert _history(c, theme, oid, PUBLIC) is None
    assert _asof_item(c, theme, oid, t1, PUBLIC) is None
    assert _asof_listed(c, theme, oid, t1, PUBLIC) == set()
    # the authority that could see it when it was deleted still reads all of it
    assert _history(c, theme, oid, _editor(url)) == [v1, v2]
    assert _asof_item(c, theme, oid, t1, _editor(url)) == v1
    planner = bearer(["planner"], subject="planlaegger")
    assert _history(c, theme, oid, planner) is None


@pytest.mark.parametrize("theme", THEMES, ids=lambda t: t.collection_id)
def test_an_authority_no_longer_reads_the_past_of_an_object_handed_to_another(
        past_db, past_client, theme):
    """An off_kode 2 object of København's moved to Aarhus and handed to Aarhus' CVR: the
    København editor saw its versions by CVR; now it sees none of them. Aarhus and the
    national reader read all of it."""
    url, objects = past_db
    c = past_client
    oid = objects[theme.collection_id]["handed_to_aarhus"]
    (v1, t1), (v2, _) = _versions(url, theme, oid)
    kbh = _editor(url)
    assert _history(c, theme, oid, kbh) is None
    assert _asof_item(c, theme, oid, t1, kbh) is None
    assert _asof_listed(c, theme, oid, t1, kbh) == set()
    aar = bearer(["municipal_editor"], subject="aar", cvr=_cvr(url, AAR), kommuner=[AAR])
    # Aarhus reads the object now; its past as København's off_kode 2 object is København's
    assert _history(c, theme, oid, aar) == [v2]
    sams = bearer(["national_reader"], subject="sams", cvr=SAMS_CVR)
    assert _history(c, theme, oid, sams) == [v1, v2]
    assert _asof_item(c, theme, oid, t1, sams) == v1


@pytest.mark.parametrize("theme", THEMES, ids=lambda t: t.collection_id)
def test_a_planner_no_longer_reads_the_past_of_an_object_restricted_to_its_authority(
        past_db, past_client, theme):
    url, objects = past_db
    c = past_client
    oid = objects[theme.collection_id]["restricted"]
    (v1, t1), (v2, _) = _versions(url, theme, oid)
    planner = bearer(["planner"], subject="planlaegger")
    assert _history(c, theme, oid, planner) is None
    assert _asof_item(c, theme, oid, t1, planner) is None
    assert _history(c, theme, oid, _editor(url)) == [v1, v2]


@pytest.mark.parametrize("theme", THEMES, ids=lambda t: t.collection_id)
def test_exports_and_tiles_asof_follow_the_rule(past_db, past_client, theme):
    """The export of the register as of an instant (and so every asof path) leaves out the
    past of objects hidden now."""
    url, objects = past_db
    c = past_client
    hidden = objects[theme.collection_id]["hidden"]
    (_, t1), _ = _versions(url, theme, hidden)
    r = c.get(f"/collections/{theme.collection_id}/items",
              params={"f": "geojson", "asof": t1.isoformat(),
                      "filter": f"objekt_id = '{hidden}'"})
    assert r.status_code == 200, r.text
    assert r.json()["features"] == []
    r = c.get(f"/collections/{theme.collection_id}/items",
              params={"f": "geojson", "asof": t1.isoformat(),
                      "filter": f"objekt_id = '{hidden}'"}, headers=_editor(url))
    assert len(r.json()["features"]) == 1


def test_the_database_applies_the_rule_to_the_public_role_itself(past_db):
    """Straight SQL as the public's database role: the history views hold no version of an
    object hidden now, and the rule's function tells a caller nothing it could not read."""
    url, objects = past_db
    theme = themes.default()
    hidden = objects[theme.collection_id]["hidden"]
    deleted = objects[theme.collection_id]["deleted_public"]
    with psycopg.connect(url) as conn:
        conn.execute("SET ROLE ly_anon")
        for view in (theme.public_history_view,):
            assert conn.execute(f"SELECT count(*) FROM ly.{view} WHERE objekt_id = %s",
                                [hidden]).fetchone() == (0,)
            assert conn.execute(f"SELECT count(*) FROM ly.{view} WHERE objekt_id = %s",
                                [deleted]).fetchone() == (1,)
        conn.rollback()
        conn.execute("SET ROLE ly_user")
        conn.execute("SELECT set_config('ly.roller', 'planner', false)")
        assert conn.execute(f"SELECT count(*) FROM ly.{theme.history_view} "
                            "WHERE objekt_id = %s", [hidden]).fetchone() == (0,)


# --- the rule in the catalog and in the plans ---------------------------------------------


def _plans(url) -> dict:
    """EXPLAIN (no costs) of every theme's current items page, count, tile and history as
    the public and as the national reader."""
    from datamodel import crs, query
    from datamodel import tiles as tilesmod

    tile = tilesmod.tile("WebMercatorQuad", "12", 1285, 2199)
    out = {}
    with psycopg.connect(url) as conn:
        for role, roles, public in (("ly_anon", "", True), ("ly_user", "national_reader", False)):
            conn.execute(f"SET ROLE {role}")
            conn.execute("SELECT set_config('ly.roller', %s, false)", [roles])
            for theme in THEMES:
                q = query.ItemsQuery(public=public, theme=theme, limit=10)
                for name, (stmt, args) in {
                        "items": query.items_sql(q), "count": query.count_sql(q, 1000),
                        "tile": tilesmod.tile_sql(tile, q),
                        "history": query.history_sql(uuid.uuid4(), crs.DEFAULT, public=public,
                                                     theme=theme)}.items():
                    plan = conn.execute("EXPLAIN (COSTS OFF) " + stmt.as_string(conn), args)
                    out[role, theme.collection_id, name] = "\n".join(r[0] for r in plan)
            conn.execute("RESET ROLE")
    return out


@pytest.fixture
def scratch_url():
    name = f"ly_hvis_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(BASE_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield with_database(BASE_URL, name)
    _drop(name)


def test_the_rule_leaves_the_current_plans_as_they_were(scratch_url):
    """Revision 0010 changes the plans of history reads only: the current items, counts and
    tiles (the public's fast path, benchmarked against tipg) plan exactly as at 0009."""
    migrate(scratch_url, "0009")
    before = _plans(scratch_url)
    migrate(scratch_url, "0010")
    after = _plans(scratch_url)
    assert before.keys() == after.keys()
    for key in before:
        if key[2] == "history":
            assert "_er_seneste" in after[key], key
            # (0009 re-made the shelter's storage as it was; its new themes got their
            # storage from theme_storage, with the rule)
            if key[1] == themes.default().collection_id:
                assert "_er_seneste" not in before[key], key
        else:
            assert before[key] == after[key], key


def test_every_theme_and_a_theme_made_later_get_the_rule(db_url):
    """Every theme's history views carry the rule and its current views do not; a theme
    registered and made at runtime by `theme_storage` gets it too, and re-expressing an
    existing theme's storage keeps it."""
    from tests.test_extra_theme import EXTRA

    def viewdef(conn, view):
        return conn.execute("SELECT pg_get_viewdef(%s::regclass)", [f"ly.{view}"]).fetchone()[0]

    themes.register(EXTRA)
    try:
        with psycopg.connect(db_url) as conn:
            for stmt in storage.theme_storage(EXTRA):
                conn.execute(stmt)
            for stmt in storage.theme_storage(themes.default(), create_table=False):
                conn.execute(stmt)
            for theme in [*THEMES, EXTRA]:
                for view in (theme.history_view, theme.public_history_view):
                    assert f"{theme.table}_er_seneste" in viewdef(conn, view), view
                for view in (theme.current_view, theme.public_current_view):
                    assert "_er_seneste" not in viewdef(conn, view), view
            # the extra theme's public history: public, then hidden -> nothing for the public
            (oid,) = conn.execute(
                f"INSERT INTO ly.{EXTRA.current_view} (omraadenavn, drikkevand_kode, "
                "gyldig_fra, off_kode, bruger_id, oprindkode, statuskode, geometri) VALUES "
                "('Parken', 1, '2026-06-01', 1, 't', 0, 3, ST_Multi(ST_Buffer(ST_SetSRID("
                "ST_MakePoint(724000, 6176000), 25832), 50))) RETURNING objekt_id").fetchone()
            conn.commit()
            conn.execute(f"UPDATE ly.{EXTRA.current_view} SET off_kode = 2 "
                         "WHERE objekt_id = %s", [oid])
            conn.commit()
            assert conn.execute(f"SELECT count(*) FROM ly.{EXTRA.history_view} "
                                "WHERE objekt_id = %s", [oid]).fetchone() == (2,)  # owner
            conn.execute("SET ROLE ly_anon")
            assert conn.execute(f"SELECT count(*) FROM ly.{EXTRA.public_history_view} "
                                "WHERE objekt_id = %s", [oid]).fetchone() == (0,)
    finally:
        themes.unregister(EXTRA.collection_id)
