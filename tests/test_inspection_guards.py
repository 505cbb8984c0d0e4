"""Inspection guards (revision 0012): a photo never lands on an inspection approved
meanwhile, and whoever may change a shelter as an administrator may assign an inspector to
it. The races go to a real server; where an interleaving has to be forced, a test-only
trigger in the test's own database holds one transaction on an advisory lock the test
releases once the other request is waiting for it (or done)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import psycopg
import pytest
from alembic import command
from fastapi.testclient import TestClient

from cli.main import alembic_config, migrate
from datamodel.access import Actor, transaction_settings
from datamodel.db import with_database
from service.app import create_app
from tests.conftest import (BASE_URL, ITEMS, LiveServer, _admin, _drop_later, bearer,
                            make_settings, query)
from tests.test_inspections import _cvr, complete_answers, png, room, upload_body

KBH, FRB, AAR = 101, 147, 751  # København, Frederiksberg, Aarhus
INSPECTOR = "inspektoer-1"
JSON = {"Content-Type": "application/json"}
PHOTO = "/fotos/{}?punkt=konstruktion_intakt_kode&rum=1"
ROUNDS = 10
#: Keys of the advisory locks the test-only triggers wait for.
HOLD_APPROVAL, HOLD_PHOTO = 120_001, 120_002



@pytest.fixture
def s(db_url):
    """A betondækningsgrav in København assigned to an inspector, and the actors' headers."""
    (shelter,) = query(db_url, "SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE "
                               "beskyt_rum_kode = 3 AND beliggenhedskommune = %s AND cvr_kode = %s"
                               " ORDER BY objekt_id LIMIT 1", [KBH, _cvr(db_url)])[0]
    query(db_url, "INSERT INTO ly.tildeling (objekt_id, subjekt, cvr_kode, tildelt_af) "
                  "VALUES (%s, %s, %s, 'setup')", [shelter, INSPECTOR, _cvr(db_url)])
    # Test-only: what each photo's transaction sees of its inspection as it commits (a
    # deferred constraint trigger runs at commit, and reads in a snapshot of its own).
    query(db_url, """
        CREATE TABLE public.foto_ved_commit (foto_id uuid, status text);
        GRANT INSERT ON public.foto_ved_commit TO PUBLIC;
        CREATE FUNCTION public.foto_ved_commit() RETURNS trigger LANGUAGE plpgsql
        SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
        BEGIN
            INSERT INTO public.foto_ved_commit
                SELECT NEW.id, e.status FROM ly.eftersyn e WHERE e.id = NEW.eftersyn_id;
            RETURN NULL;
        END $$;
        CREATE CONSTRAINT TRIGGER zz_test_commit AFTER INSERT ON ly.eftersyn_foto
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
            EXECUTE FUNCTION public.foto_ved_commit();
        CREATE FUNCTION public.test_pause() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock_shared(TG_ARGV[0]::bigint);
            RETURN NULL;
        END $$""")
    return {
        "url": db_url, "shelter": str(shelter),
        "inspector": bearer(["inspector"], subject=INSPECTOR),
        "admin": bearer(["municipal_admin"], subject="kbh-admin", cvr=_cvr(db_url),
                        kommuner=[KBH]),
    }


def _submitted(s, h: httpx.Client) -> str:
    eid = str(uuid.uuid4())
    r = h.put(f"/eftersyn/{eid}", headers={**JSON, **s["inspector"]},
              content=json.dumps(upload_body(s, complete_answers(), [room()])))
    assert r.status_code == 201, r.text
    return eid


def _photo_request(s, eid: str) -> tuple[str, str, dict, bytes]:
    return ("PUT", f"/eftersyn/{eid}" + PHOTO.format(uuid.uuid4()),
            {"Content-Type": "image/png", **s["inspector"]}, png((64, 48)))


def _approval_request(s, eid: str) -> tuple[str, str, dict, bytes]:
    return ("POST", f"/eftersyn/{eid}/godkend", s["admin"], b"")


def _waiting(conn, *, advisory: bool) -> int:
    """Backends of the database waiting for an advisory lock, or for a row (any other lock)."""
    op = "=" if advisory else "<>"
    return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                        "current_database() AND wait_event_type = 'Lock' AND wait_event "
                        f"{op} 'advisory'").fetchone()[0]


async def _until(what: str, done, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        await asyncio.sleep(0.01)


def _interleave(s, base: str, first, second, key: int) -> tuple[httpx.Response, httpx.Response]:
    """`first` is held (by the test-only pause trigger) on the advisory lock `key` the test
    holds; `second` is sent once `first` waits there, and the lock is released once `second`
    has answered or waits for a row lock itself."""
    holder = psycopg.connect(s["url"], autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", [key])
    try:
        async def main():
            async with httpx.AsyncClient(base_url=base, timeout=60) as h:
                one = asyncio.create_task(h.request(first[0], first[1], headers=first[2],
                                                    content=first[3]))
                await _until("the first request to reach its pause",
                             lambda: one.done() or _waiting(holder, advisory=True) == 1)
                assert not one.done(), one.result().text
                two = asyncio.create_task(h.request(second[0], second[1], headers=second[2],
                                                    content=second[3]))
                await _until("the second request to answer or wait",
                             lambda: two.done() or _waiting(holder, advisory=False) >= 1)
                holder.execute("SELECT pg_advisory_unlock(%s)", [key])
                return await one, await two
        return asyncio.run(main())
    finally:
        holder.close()


def _photos(url, eid):
    return query(url, "SELECT count(*) FROM ly.eftersyn_foto WHERE eftersyn_id = %s", [eid])[0][0]


def _status(url, eid):
    return query(url, "SELECT status FROM ly.eftersyn WHERE id = %s", [eid])[0][0]


def _problem(r: httpx.Response) -> dict:
    assert r.headers["content-type"] == "application/problem+json", r.text
    assert "row-level" not in r.text and "godkendt eftersyn får" not in r.text, r.text
    return r.json()


# --- a photo and an approval at the same time ---

def test_a_photo_sent_while_the_inspection_is_being_approved_is_refused(s):
    """The approval has updated the status (not yet committed) when the photo comes: the
    photo waits for it and is refused, 409, as on an inspection approved before."""
    query(s["url"], "CREATE TRIGGER test_pause AFTER UPDATE ON ly.eftersyn FOR EACH ROW "
                    f"WHEN (NEW.status = 'godkendt') EXECUTE FUNCTION public.test_pause("
                    f"{HOLD_APPROVAL})")
    with LiveServer(s["url"]) as server:
        with httpx.Client(base_url=server.url) as h:
            eid = _submitted(s, h)
        approval, photo = _interleave(s, server.url, _approval_request(s, eid),
                                      _photo_request(s, eid), HOLD_APPROVAL)
    assert approval.status_code == 200, approval.text
    assert photo.status_code == 409, photo.text
    assert _problem(photo)["errors"][0] == {"field": "status", "detail": "godkendt"}
    assert _photos(s["url"], eid) == 0 and _status(s["url"], eid) == "godkendt"


def test_an_approval_waits_for_a_photo_being_stored(s):
    """The photo is stored (not yet committed) when the approval comes: the approval waits
    for it, then approves the inspection with the photo."""
    query(s["url"], "CREATE TRIGGER test_pause AFTER INSERT ON ly.eftersyn_foto FOR EACH ROW "
                    f"EXECUTE FUNCTION public.test_pause({HOLD_PHOTO})")
    with LiveServer(s["url"]) as server:
        with httpx.Client(base_url=server.url) as h:
            eid = _submitted(s, h)
        photo, approval = _interleave(s, server.url, _photo_request(s, eid),
                                      _approval_request(s, eid), HOLD_PHOTO)
    assert photo.status_code == 201, photo.text
    assert approval.status_code == 200, approval.text
    assert _photos(s["url"], eid) == 1 and _status(s["url"], eid) == "godkendt"
    assert query(s["url"], "SELECT status FROM public.foto_ved_commit") == [("indsendt",)]


def test_racing_photos_and_approvals_never_leave_a_photo_on_an_approved_inspection(s):
    """A photo and an approval of a fresh submitted inspection sent at once, ROUNDS times:
    each photo is stored (201) or refused (409) and the approval always succeeds; no photo
    commits onto an approved inspection (what each photo's transaction saw as it committed)."""
    outcomes = []
    with LiveServer(s["url"]) as server:
        with httpx.Client(base_url=server.url) as h:
            eids = [_submitted(s, h) for _ in range(ROUNDS)]

        async def race(eid):
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as h:
                return await asyncio.gather(*(h.request(m, p, headers=hd, content=c) for
                                              m, p, hd, c in (_photo_request(s, eid),
                                                              _approval_request(s, eid))))
        for eid in eids:
            photo, approval = asyncio.run(race(eid))
            outcomes.append((eid, photo, approval))
    for eid, photo, approval in outcomes:
        assert approval.status_code == 200, approval.text
        assert photo.status_code in (201, 409), photo.text
        if photo.status_code == 409:
            assert _problem(photo)["errors"][0]["field"] == "status"
        assert _photos(s["url"], eid) == (photo.status_code == 201)
    stored = sum(photo.status_code == 201 for _, photo, _ in outcomes)
    seen = query(s["url"], "SELECT status, count(*) FROM public.foto_ved_commit GROUP BY 1")
    assert seen == ([("indsendt", stored)] if stored else []), (
        seen, [(p.status_code, a.status_code) for _, p, a in outcomes])


def test_no_photo_joins_an_approved_or_reported_inspection_whoever_inserts_it(s):
    """The guard is the database's, as the approved answers' is (0003): it holds for the
    owner's own connection too, which row-level security does not restrict."""
    with TestClient(create_app(make_settings(s["url"]))) as c:
        eid = str(uuid.uuid4())
        assert c.put(f"/eftersyn/{eid}", content=json.dumps(
            upload_body(s, complete_answers(), [room()])),
            headers={**JSON, **s["inspector"]}).status_code == 201
        _insert_photo(s["url"], eid)  # submitted: it takes photos
        assert c.post(f"/eftersyn/{eid}/godkend", headers=s["admin"]).status_code == 200
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="godkendt eftersyn"):
            _insert_photo(s["url"], eid)
        assert c.post(f"/eftersyn/{eid}/indberet", headers=s["admin"]).status_code == 200
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="godkendt eftersyn"):
            _insert_photo(s["url"], eid)
    assert _photos(s["url"], eid) == 1 and _status(s["url"], eid) == "indberettet"


def _insert_photo(url, eid: str) -> None:
    query(url, "INSERT INTO ly.eftersyn_foto (id, eftersyn_id, content_type, stoerrelse, "
               "sha256, bredde, hoejde, data, miniature) VALUES "
               "(%s, %s, 'image/png', 1, repeat('0', 64), 1, 1, '\\x00', '\\x00')",
          [uuid.uuid4(), eid])


def _act(conn, actor: Actor) -> None:
    """Act for `actor` in this transaction, as service/db.py does."""
    for name, value in transaction_settings(actor).items():
        conn.execute("SELECT set_config(%s, %s, true)", [name, value])


# --- who may change a shelter may assign an inspector to it ---

def test_whoever_may_change_a_shelter_assigns_its_inspector(db_url):
    """An administrator whose municipality holds a shelter of another authority's CVR may
    edit it, and so assign it; an administrator of another municipality and CVR may not."""
    kbh = _cvr(db_url, KBH)
    (shelter,) = query(db_url, "SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE "
                               "beliggenhedskommune = %s AND cvr_kode = %s AND off_kode = 3 "
                               "ORDER BY objekt_id LIMIT 1", [KBH, kbh])[0]
    joint = bearer(["municipal_admin"], subject="beredskab-admin", cvr=_cvr(db_url, FRB),
                   kommuner=[KBH])
    aarhus = bearer(["municipal_admin"], subject="aar-admin", cvr=_cvr(db_url, AAR),
                    kommuner=[AAR])
    inspector = bearer(["inspector"], subject="entreprenoer-8")
    body = json.dumps({"objekt_id": str(shelter), "subjekt": "entreprenoer-8"})

    def assigned():
        return query(db_url, "SELECT subjekt, cvr_kode, tildelt_af FROM ly.tildeling WHERE "
                             "objekt_id = %s AND subjekt = 'entreprenoer-8'", [shelter])

    with TestClient(create_app(make_settings(db_url))) as c:
        r = c.post("/tildelinger", content=body, headers={**JSON, **aarhus})
        assert r.status_code == 403 and r.json()["errors"][0]["field"] == "objekt_id", r.text
        assert assigned() == []
        assert c.get(f"{ITEMS}/{shelter}", headers=inspector).status_code == 404
        # the joint authority's administrator assigns København's shelter, under its CVR ...
        r = c.post("/tildelinger", content=body, headers={**JSON, **joint})
        assert r.status_code == 201, r.text
        assert assigned() == [("entreprenoer-8", kbh, "beredskab-admin")]
        assert c.get(f"{ITEMS}/{shelter}", headers=inspector).status_code == 200
        # ... as they may edit it (an edit makes it theirs: a municipal write carries the
        # writer's CVR, so this comes last)
        r = c.patch(f"{ITEMS}/{shelter}", content=json.dumps({"properties": {"note": "tjek"}}),
                    headers={"Content-Type": "application/merge-patch+json", **joint})
        assert r.status_code == 200, r.text
        r = c.patch(f"{ITEMS}/{shelter}", content=json.dumps({"properties": {"note": "x"}}),
                    headers={"Content-Type": "application/merge-patch+json", **aarhus})
        assert r.status_code in (403, 404), r.text


def test_the_assignment_policy_asks_what_changing_the_shelter_asks(db_url):
    """The database's own rule, without the service's checks in front of it."""
    kbh = _cvr(db_url, KBH)
    (shelter,) = query(db_url, "SELECT objekt_id FROM ly.t_6101_beskyt_rum WHERE "
                               "beliggenhedskommune = %s AND off_kode = 3 ORDER BY objekt_id "
                               "LIMIT 1", [KBH])[0]

    def insert_as(subject, roles, cvr, kommuner, level="substantial", objekt_id=shelter):
        actor = Actor(subject, frozenset(roles), cvr=cvr, kommuner=frozenset(kommuner),
                      level=level)
        with psycopg.connect(db_url) as conn:
            _act(conn, actor)
            conn.execute("INSERT INTO ly.tildeling (objekt_id, subjekt, cvr_kode) "
                         "VALUES (%s, 'entreprenoer-9', %s)", [objekt_id, kbh])

    refused = [
        ("aar-admin", ["municipal_admin"], _cvr(db_url, AAR), [AAR]),  # another's shelter
        ("kbh-redaktoer", ["municipal_editor"], kbh, [KBH]),  # edits, but does not assign
        ("kbh-lav", ["municipal_admin"], kbh, [KBH], "low"),  # not a writer's assurance
        ("sams-admin", ["national_admin"], None, [], "high", uuid.uuid4()),  # no such object
    ]
    for args in refused:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            insert_as(*args)
    insert_as("beredskab-admin", ["municipal_admin"], _cvr(db_url, FRB), [KBH])
    insert_as("kbh-admin", ["municipal_admin"], kbh, [])  # by CVR, as before
    insert_as("sams-admin", ["national_admin"], None, [], "high")
    assert query(db_url, "SELECT tildelt_af FROM ly.tildeling WHERE subjekt = 'entreprenoer-9' "
                         "ORDER BY id") == [("beredskab-admin",), ("kbh-admin",), ("sams-admin",)]


# --- the revision's downgrade ---

def _catalog(url) -> tuple:
    return (
        query(url, "SELECT policyname, cmd, roles::text, qual, with_check FROM pg_policies "
                   "WHERE schemaname = 'ly' AND tablename = 'tildeling' ORDER BY policyname"),
        query(url, "SELECT tgname FROM pg_trigger WHERE tgrelid = 'ly.eftersyn_foto'::regclass "
                   "AND NOT tgisinternal ORDER BY tgname"),
        query(url, "SELECT format('ly.%s(%s)', p.proname, "
                   "pg_get_function_identity_arguments(p.oid)), pg_get_userbyid(p.proowner) "
                   "FROM pg_proc p WHERE p.pronamespace = 'ly'::regnamespace ORDER BY 1"),
    )


def test_the_downgrade_restores_what_0011_had():
    name = f"ly_t0012_{uuid.uuid4().hex[:10]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(BASE_URL, name)
    try:
        migrate(url, "0011")
        before = _catalog(url)
        migrate(url, "0012")
        after = _catalog(url)
        assert after != before
        assert ("guard",) in after[1] and "ly.eftersyn_foto_guard()" in {p for p, _ in after[2]}
        command.downgrade(alembic_config(url), "0011")
        assert _catalog(url) == before
    finally:
        _drop_later(name)
