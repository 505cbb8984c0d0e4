"""The migrated database: its tables match datamodel.tables, history is append-only, code
lists are loaded, and migrations run again without change."""

from __future__ import annotations

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from alembic.script import ScriptDirectory

from cli.main import alembic_config, migrate
from datamodel.codelists import load_codelists
from datamodel.db import sqlalchemy_url
from datamodel.tables import metadata
from tests.conftest import query


def _include(obj, name, type_, reflected, compare_to):
    # Views (t_6101_beskyt_rum, hist_…) and PostGIS' own tables are not described as tables.
    if type_ == "table":
        return name in metadata.tables or f"ly.{name}" in metadata.tables
    return True


def test_migrated_schema_matches_the_table_definitions(db_url):
    # The role `ly` has its own schema `ly` on its default search_path ("$user"); compare
    # with `ly` as a named schema, as the metadata declares it.
    engine = create_engine(sqlalchemy_url(db_url),
                           connect_args={"options": "-c search_path=public"})
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={
            "include_schemas": True, "include_object": _include, "compare_type": True,
            "include_name": lambda name, type_, parent: (
                name == "ly" if type_ == "schema" else True)})
        diff = compare_metadata(ctx, metadata)
    engine.dispose()
    assert diff == []


def test_code_lists_are_loaded_from_the_shipped_files(db_url):
    for name, codelist in load_codelists().items():
        rows = dict(query(db_url, f"SELECT kode, tekst FROM ly.{name}"))
        assert rows == {c.kode: c.tekst for c in codelist.values}, name


def test_migrate_twice_changes_nothing(db_url):
    before = query(db_url, "SELECT count(*) FROM ly.beskyttelsesrum")
    migrate(db_url)
    head = ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
    assert query(db_url, "SELECT version_num FROM alembic_version") == [(head,)]
    assert query(db_url, "SELECT count(*) FROM ly.beskyttelsesrum") == before


@pytest.mark.parametrize("statement", [
    "DELETE FROM ly.beskyttelsesrum",
    "TRUNCATE ly.beskyttelsesrum",
    "UPDATE ly.beskyttelsesrum SET pladser = pladser + 1",
    "UPDATE ly.beskyttelsesrum SET systid_til = NULL WHERE systid_til IS NOT NULL",
])
def test_stored_versions_are_never_changed_or_removed(db_url, statement):
    query(db_url, "UPDATE ly.t_6101_beskyt_rum SET pladser = pladser + 1 "
                  "WHERE objekt_id = (SELECT min(objekt_id::text)::uuid FROM ly.t_6101_beskyt_rum)")
    before = query(db_url, "SELECT count(*), sum(pladser) FROM ly.beskyttelsesrum")
    with pytest.raises(psycopg.Error, match="beskyttelsesrum"):
        query(db_url, statement)
    assert query(db_url, "SELECT count(*), sum(pladser) FROM ly.beskyttelsesrum") == before


def test_update_through_the_view_versions_and_derives_the_municipality(db_url):
    (oid,) = query(db_url, "SELECT objekt_id FROM ly.t_6101_beskyt_rum "
                           "WHERE beliggenhedskommune <> 751 LIMIT 1")[0]
    # move the shelter to central Aarhus
    query(db_url, "UPDATE ly.t_6101_beskyt_rum SET geometri = ST_Transform("
                  "ST_SetSRID(ST_MakePoint(10.2039, 56.1535), 4326), 25832) WHERE objekt_id = %s",
          [oid])
    rows = query(db_url, "SELECT beliggenhedskommune, systid_til IS NULL FROM "
                         "ly.beskyttelsesrum WHERE objekt_id = %s ORDER BY systid_fra, "
                         "systid_til NULLS LAST", [oid])
    assert len(rows) == 2 and rows[-1] == (751, True) and rows[0][1] is False


def test_a_point_far_outside_denmark_is_refused_by_the_database(db_url):
    with pytest.raises(psycopg.Error, match="uden for Danmark"):
        query(db_url, "INSERT INTO ly.t_6101_beskyt_rum (bruger_id, oprindkode, statuskode, "
                      "off_kode, beskyt_rum_kode, klargjort_kode, pladser, funktionsstatus_kode,"
                      " pladser_kilde_kode, egnethed_kode, geometri) VALUES ('t', 0, 3, 3, 1, 3,"
                      " 10, 3, 9, 9, ST_Transform(ST_SetSRID(ST_MakePoint(2.35, 48.85), 4326),"
                      " 25832))")
