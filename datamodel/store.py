"""Writing reference data the register depends on: code lists into their `ly.d_*` tables."""

from __future__ import annotations

from psycopg import sql

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
