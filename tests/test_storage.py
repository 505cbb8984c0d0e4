"""The storage helper: the shelter's storage re-expressed through it is what it was, and a
theme's storage is exactly what its descriptor says."""

from __future__ import annotations

import re
import uuid

import psycopg
import pytest

from cli.main import migrate
from datamodel import storage, themes
from datamodel.db import with_database
from tests.conftest import BASE_URL, _drop

SHELTER = themes.get("beskyttelsesrum")


def _normalise(source: str) -> str:
    """A function body without comments and with whitespace collapsed."""
    source = re.sub(r"--[^\n]*", "", source)
    return re.sub(r"\s+", " ", source).strip()


def catalog(conn, theme) -> dict:
    """What the database says about a theme's storage: view definitions, triggers and their
    functions, policies, table and column grants, indexes and constraints."""
    names = [theme.table, theme.current_view, theme.history_view, theme.public_current_view,
             theme.public_history_view]
    out: dict = {}
    for name in names[1:]:
        out[f"view {name}"] = conn.execute(
            "SELECT pg_get_viewdef(%s::regclass, true), "
            "(SELECT reloptions FROM pg_class WHERE oid = %s::regclass)",
            [f"ly.{name}", f"ly.{name}"]).fetchone()
    for rel in names[:2]:
        for tgname, tgdef, fn in conn.execute(
                "SELECT t.tgname, pg_get_triggerdef(t.oid), p.prosrc FROM pg_trigger t "
                "JOIN pg_proc p ON p.oid = t.tgfoid WHERE t.tgrelid = %s::regclass "
                "AND NOT t.tgisinternal ORDER BY t.tgname", [f"ly.{rel}"]):
            out[f"trigger {rel}.{tgname}"] = (tgdef, _normalise(fn))
    out["policies"] = conn.execute(
        "SELECT policyname, permissive, roles, cmd, qual, with_check FROM pg_policies "
        "WHERE schemaname = 'ly' AND tablename = %s ORDER BY policyname", [theme.table]
    ).fetchall()
    out["rls"] = conn.execute("SELECT relrowsecurity, relforcerowsecurity FROM pg_class "
                              "WHERE oid = %s::regclass", [f"ly.{theme.table}"]).fetchone()
    out["table grants"] = conn.execute(
        "SELECT table_name, grantee, privilege_type FROM information_schema.role_table_grants "
        "WHERE table_schema = 'ly' AND table_name = ANY(%s) AND grantee LIKE 'ly\\_%%' "
        "ORDER BY 1, 2, 3", [names]).fetchall()
    out["column grants"] = conn.execute(
        "SELECT table_name, column_name, grantee, privilege_type "
        "FROM information_schema.column_privileges WHERE table_schema = 'ly' "
        "AND table_name = ANY(%s) AND grantee LIKE 'ly\\_%%' ORDER BY 1, 2, 3, 4",
        [names]).fetchall()
    out["indexes"] = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'ly' "
        "AND tablename = %s ORDER BY 1", [theme.table]).fetchall()
    out["constraints"] = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass ORDER BY 1", [f"ly.{theme.table}"]).fetchall()
    out["columns"] = conn.execute(
        "SELECT column_name, data_type, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = 'ly' AND table_name = %s "
        "ORDER BY ordinal_position", [theme.table]).fetchall()
    return out


@pytest.fixture
def scratch_url():
    name = f"ly_storage_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(BASE_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield with_database(BASE_URL, name)
    _drop(name)


def test_shelter_storage_is_unchanged_by_the_helper(scratch_url):
    """Revision 0009 re-makes the shelter's guard, views, trigger, policies and grants from
    the descriptor: the catalog is the same before and after."""
    migrate(scratch_url, "0008")
    with psycopg.connect(scratch_url) as conn:
        before = catalog(conn, SHELTER)
    migrate(scratch_url, "0009")
    with psycopg.connect(scratch_url) as conn:
        after = catalog(conn, SHELTER)
    assert before.keys() == after.keys()
    for key in before:
        assert before[key] == after[key], key
    # The comparison sees what it compares: four views, the guard and write triggers, three
    # policies, the public's column grants.
    assert sum(k.startswith("view ") for k in before) == 4
    assert {"trigger beskyttelsesrum.append_only", "trigger t_6101_beskyt_rum.write"} <= set(before)
    assert [p[0] for p in before["policies"]] == ["afslut", "laes", "opret"]
    assert any(g[2] == "ly_anon" for g in before["column grants"])


def test_catalog_comparison_sees_a_changed_policy(scratch_url):
    """The comparison above would notice a difference (here: a policy one term wider)."""
    migrate(scratch_url, "head")
    with psycopg.connect(scratch_url) as conn:
        before = catalog(conn, SHELTER)
        conn.execute("ALTER POLICY laes ON ly.beskyttelsesrum USING (true)")
        assert catalog(conn, SHELTER)["policies"] != before["policies"]


def test_every_theme_has_its_storage(scratch_url):
    """Every registered theme has a base table with the descriptor's columns in order, its four
    views, guard and write triggers, and row-level security."""
    migrate(scratch_url, "head")
    with psycopg.connect(scratch_url) as conn:
        for theme in themes.all_themes():
            cat = catalog(conn, theme)
            # (the shelter's geometry sits where 0001 put it, before 0003's columns)
            assert [c[0] for c in cat["columns"] if c[0] != "geometri"] == \
                list(theme.storage_columns), theme
            assert sum(k.startswith("view ") for k in cat) == 4
            assert f"trigger {theme.table}.append_only" in cat
            assert f"trigger {theme.current_view}.write" in cat
            assert cat["rls"] == (True, False)
            assert [p[0] for p in cat["policies"]] == ["afslut", "laes", "opret"]
            public_cols = {c[1] for c in cat["column grants"] if c[2] == "ly_anon"
                           and c[0] == theme.table}
            assert public_cols == {f.name for f in theme.public_fields} | {"geometri"}
            assert not public_cols & {f.name for f in theme.personal_fields}
            geom = conn.execute(
                "SELECT type FROM geometry_columns WHERE f_table_schema = 'ly' "
                "AND f_table_name = %s", [theme.table]).fetchone()[0]
            assert geom == theme.geometry_type.upper()


def test_new_theme_statements_are_idempotent(scratch_url):
    """Running a theme's storage again changes nothing (a re-expression is safe)."""
    migrate(scratch_url, "head")
    theme = themes.by_temakode(6121)
    with psycopg.connect(scratch_url) as conn:
        before = catalog(conn, theme)
        for stmt in storage.theme_storage(theme):
            conn.execute(stmt)
        assert catalog(conn, theme) == before


def test_personal_data_is_masked_for_planners_and_kept_by_the_owners_edits(scratch_url):
    """The authorities' view masks personal attributes for a planner; an edit through the
    view by the owner's own connection (loaders, sync) keeps them in the new version."""
    migrate(scratch_url, "head")
    theme = themes.by_temakode(6120)
    with psycopg.connect(scratch_url) as conn:
        conn.execute("INSERT INTO ly.kommune (kommunekode, navn, cvr_kode, geometri) VALUES "
                     "(101, 'København', 64942212, ST_Multi(ST_Buffer("
                     "ST_SetSRID(ST_MakePoint(724000, 6176000), 25832), 20000)))")
        (oid,) = conn.execute(
            f"INSERT INTO ly.{theme.current_view} (institutionsnavn, antal_personer, "
            "mid_ov_person, mid_ov_tlfnr, fast_vaagen_vagt_kode, gyldig_fra, bruger_id, "
            "oprindkode, statuskode, off_kode, geometri) VALUES ('Skolen', 40, "
            "'Kontakt Person', 99990000, 1, '2026-06-01', 't', 0, 3, 3, ST_SetSRID(ST_MakePoint(724000, 6176000), 25832)) RETURNING objekt_id"
        ).fetchone()
        conn.execute(f"UPDATE ly.{theme.current_view} SET antal_personer = 50 "
                     "WHERE objekt_id = %s", [oid])
        assert conn.execute(f"SELECT mid_ov_person, mid_ov_tlfnr FROM ly.{theme.table} "
                            "WHERE objekt_id = %s AND systid_til IS NULL", [oid]
                            ).fetchone() == ("Kontakt Person", 99990000)
        conn.execute("SET ROLE ly_user")
        conn.execute("SELECT set_config('ly.roller', 'planner', false)")
        assert conn.execute(f"SELECT mid_ov_person, mid_ov_tlfnr, institutionsnavn FROM "
                            f"ly.{theme.current_view} WHERE objekt_id = %s", [oid]
                            ).fetchone() == (None, None, "Skolen")
        conn.execute("SELECT set_config('ly.roller', 'municipal_editor', false)")
        assert conn.execute(f"SELECT mid_ov_person FROM ly.{theme.current_view} "
                            "WHERE objekt_id = %s", [oid]).fetchone() == ("Kontakt Person",)
