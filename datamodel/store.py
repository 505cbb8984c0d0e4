"""Writing reference data the register depends on: code lists into their `ly.d_*` tables."""

from __future__ import annotations

from psycopg import sql

import json

from datamodel.checklist import load_templates
from datamodel.codelists import load_codelists

_EXTRA_COLUMNS = {"d_basis_ansvarlig_myndighed": ("kommunekode",)}


def sync_codelists(conn) -> int:
    """Upsert every shipped code list into `ly.<name>` (table created if missing).

    Codes are never deleted: versions of old records may still refer to them.
    Returns the number of values written.
    """
    written = 0
    with conn.cursor() as cur:
        for name, codelist in sorted(load_codelists().items()):
            extra = _EXTRA_COLUMNS.get(name, ())
            table = sql.Identifier("ly", name)
            cur.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (kode integer PRIMARY KEY, tekst varchar(128) "
                "NOT NULL, aktiv smallint NOT NULL DEFAULT 1 CHECK (aktiv IN (0, 1)), "
                "begrebsdefinition varchar{})"
            ).format(table, sql.SQL("".join(f", {c} integer" for c in extra))))
            columns = ["kode", "tekst", "aktiv", "begrebsdefinition", *extra]
            stmt = sql.SQL(
                "INSERT INTO {t} ({cols}) VALUES ({vals}) ON CONFLICT (kode) DO UPDATE SET {set}"
            ).format(
                t=table,
                cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
                vals=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
                set=sql.SQL(", ").join(
                    sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in columns[1:]
                ),
            )
            rows = [
                (c.kode, c.tekst, int(c.aktiv), c.begrebsdefinition,
                 *(c.extra.get(e) for e in extra))
                for c in codelist.values
            ]
            cur.executemany(stmt, rows)
            written += len(rows)
    return written


class TemplateChanged(RuntimeError):
    """A shipped checklist version differs from the one stored: publish a new version."""


def sync_checklists(conn) -> int:
    """Store every shipped checklist version; refuse a changed version (inspections stay bound
    to the version they were made with, so a version's content is fixed once stored)."""
    written = 0
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('ly.tjekliste') IS NOT NULL")
        if not cur.fetchone()[0]:
            return 0
        for (kode, version), template in sorted(load_templates().items()):
            cur.execute("SELECT indhold_hash FROM ly.tjekliste WHERE kode = %s AND version = %s",
                        [kode, version])
            row = cur.fetchone()
            if row is None:
                cur.execute(
                    "INSERT INTO ly.tjekliste (kode, version, titel, indhold, indhold_hash) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    [kode, version, template.title,
                     json.dumps(template.to_json(), ensure_ascii=False), template.content_hash])
                written += 1
            elif row[0] != template.content_hash:
                raise TemplateChanged(
                    f"checklist {kode} version {version} has changed since it was stored; "
                    f"give the change a new version number")
    return written
