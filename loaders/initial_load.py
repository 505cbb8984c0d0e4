"""The first load of an empty register (`ly import-list FILE --publish` when there is no
shelter yet): a national or regional list validated column by column, as the fast path of
`loaders.bulk_list` does, and written in one transaction the way `pg_restore` fills a table.

A first load and a staged run (`municipal_list.stage_run`, then `staging.publish`) end with
the same register: the same shelters with the same values, municipalities, CVR numbers,
editor and audit rows, the same rejected rows with the same reasons, the same run counters
and quality report (tests/test_initial_load.py compares the two). What differs is the way:

- One transaction holds the register's table exclusively (`ACCESS EXCLUSIVE`; nobody reads
  an empty register), and checks again that it is empty. If it is not, or the quality gate
  fails, or the importer may not alter the table, the transaction is rolled back and the
  run is staged the usual way (nothing of the attempt remains).
- The table's indexes, primary key and foreign keys are dropped, the rows written with
  `COPY`, and the indexes and keys made again at the end of the same transaction: a sorted
  index build instead of a million index insertions, one join per foreign key instead of a
  million lookups. The keys are checked as they are re-added, so the code lists still hold
  every row. A killed load rolls back to the table as it was, indexes and keys included.
- The run's candidates (`ly.kandidat`) keep the row, the shelter and the version written
  (what rollback and later runs need), not the values: those are the version itself.

Rows the column checks cannot take (a value that needs the row path's message, a point in
no municipality or outside the list's, no point) go through the row path
(`municipal_list.resolve_rows`), as in a staged run. Against an empty register every
accepted row is a new shelter; a row whose duplicate key (`dublet_noegle`) an earlier
accepted row has is rejected as that row's duplicate, as `staging.stage_items` does.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from datamodel.rules import Problem
from datamodel.themes import Theme
from loaders import bulk_list, staging
from loaders.staging import Gate, Rejected, Staged

#: Rows converted and written per step (the file is in memory already).
CHUNK = 50_000
#: Set to 0 to stage every run (a test hook and an escape hatch).
ENABLED_ENV = "LY_IMPORT_FIRST_LOAD"


def _table(theme: Theme) -> sql.Identifier:
    """The theme's base table, which a first load fills."""
    return sql.Identifier("ly", theme.table)


def _writable(theme: Theme) -> list[str]:
    return [f.name for f in theme.writable_fields]


def _other(theme: Theme) -> list[str]:
    return [c for c in _writable(theme) if c != "cvr_kode"]


def _base_columns(theme: Theme) -> list[str]:
    return ["versions_id", "objekt_id", "systid_fra", "oprettet", "bruger_id",
            "beliggenhedskommune", "cvr_kode", *_other(theme), "geometri"]


class NotApplicable(Exception):
    """The first load cannot take this run; it is staged instead (nothing was written)."""


def applies(conn: psycopg.Connection, run: dict, plan: bulk_list.Plan | None) -> bool:
    """Whether a run may be loaded as a first load: a large vector file the fast path takes,
    a run not begun, a theme without a single version, a table the importer owns."""
    if os.environ.get(ENABLED_ENV, "1") == "0" or plan is None:
        return False
    if run["status"] != "indlaeser" or run["naeste_raekke"] != 0:
        return False
    table = _table(plan.theme)
    return bool(conn.execute(sql.SQL(
        "SELECT NOT EXISTS (SELECT 1 FROM {}) "
        "AND pg_has_role(current_user, (SELECT relowner FROM pg_class "
        "WHERE oid = %s::regclass), 'USAGE')").format(table),
        [table.as_string(conn)]).fetchone()[0])


# --- the table's indexes and keys ------------------------------------------------------------

def detach(cur, table: sql.Identifier) -> list[sql.Composable]:
    """Drop a table's indexes, primary and unique keys and foreign keys (in the caller's
    transaction); return the statements that make them again, in order."""
    oid = cur.execute("SELECT %s::regclass::oid", [table.as_string(cur)]).fetchone()[0]
    constraints = cur.execute(
        "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s AND contype IN ('p', 'u', 'f') "
        "ORDER BY contype = 'f' DESC, conname", [oid]).fetchall()
    indexes = cur.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "WHERE i.indrelid = %s AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
        "WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid) ORDER BY 1",
        [oid]).fetchall()
    target = table
    for name, _, _ in constraints:  # foreign keys first, then the keys
        cur.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
            target, sql.Identifier(name)))
    for name, _ in indexes:
        cur.execute(sql.SQL("DROP INDEX {}").format(sql.SQL(name)))
    again: list[sql.Composable] = [sql.SQL(d) for _, d in indexes]
    again += [sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
        target, sql.Identifier(name), sql.SQL(d))
        for name, kind, d in reversed(constraints)]  # keys before the foreign keys
    return again


# --- one chunk --------------------------------------------------------------------------------

@dataclass
class Accepted:
    """The accepted rows of a chunk, in row order, as the register's columns."""

    raekke: np.ndarray
    record: pd.DataFrame  # the theme's writable columns
    x: np.ndarray
    y: np.ndarray
    kommune: np.ndarray  # beliggenhedskommune (None where the register has no municipalities)
    key: pd.Series  # dublet_noegle


@dataclass
class Totals:
    counts: dict[str, int] = field(default_factory=lambda: {"laest": 0})
    places: dict[int, int] = field(default_factory=dict)  # municipality -> places written
    seen: dict[str, int] = field(default_factory=dict)  # dublet_noegle -> first row
    ids: list[str] = field(default_factory=list)  # objekt_id for the rows to come, ascending

    def object_ids(self, n: int) -> list[str]:
        out, self.ids = self.ids[:n], self.ids[n:]
        return out

    def add(self, name: str, n: int) -> None:
        if n:
            self.counts[name] = self.counts.get(name, 0) + n


def _slow_rows(cur, staged: list[Staged], theme: Theme) -> Accepted | None:
    """Rows the row path accepted, as columns (their municipality as the view's trigger
    finds it, `ly.kommune_for`)."""
    if not staged:
        return None
    writable = _writable(theme)
    for s in staged:
        if s.handling != "opret" or s.maal != "ly":  # only new objects in an empty register
            raise NotApplicable(f"row {s.raekke} became '{s.handling}'")
    ewkt = [s.ewkt for s in staged]
    rows = cur.execute(
        "SELECT ST_X(g), ST_Y(g), ly.kommune_for(g) FROM (SELECT ST_GeomFromEWKT(e) AS g, i "
        "FROM unnest(%s::text[]) WITH ORDINALITY AS u(e, i)) p ORDER BY i", [ewkt]).fetchall()
    record = pd.DataFrame([[s.record.get(n) for n in writable] for s in staged],
                          columns=writable, dtype=object)
    return Accepted(np.array([s.raekke for s in staged], dtype=np.int64), record,
                    np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
                    np.array([r[2] for r in rows], dtype=object),  # None: no municipalities
                    pd.Series([s.dublet_noegle for s in staged], dtype=object))


def _fast_rows(b: bulk_list.Batch, kommune: np.ndarray) -> Accepted:
    idx = np.flatnonzero(b.fast)
    return Accepted(b.lo + idx + 1, b.record.iloc[idx].reset_index(drop=True), b.x[idx],
                    b.y[idx], kommune, b.key.iloc[idx].reset_index(drop=True))


def _merge(parts: list[Accepted], theme: Theme) -> Accepted:
    parts = [p for p in parts if p is not None and len(p.raekke)]
    if not parts:
        return Accepted(np.zeros(0, np.int64),
                        pd.DataFrame(columns=_writable(theme), dtype=object),
                        np.zeros(0), np.zeros(0), np.zeros(0, np.int64),
                        pd.Series([], dtype=object))
    raekke = np.concatenate([p.raekke for p in parts])
    order = np.argsort(raekke, kind="stable")
    record = pd.concat([p.record for p in parts], ignore_index=True).iloc[order]
    key = pd.concat([p.key for p in parts], ignore_index=True).iloc[order]
    return Accepted(raekke[order], record.reset_index(drop=True),
                    np.concatenate([p.x for p in parts])[order],
                    np.concatenate([p.y for p in parts])[order],
                    np.concatenate([p.kommune for p in parts])[order],
                    key.reset_index(drop=True))


def _drop_duplicates(acc: Accepted, totals: Totals, rejected: list[Rejected],
                     kilde: Callable[[int], dict]) -> Accepted:
    """Reject rows whose duplicate key an earlier accepted row has (`stage_items`' rule)."""
    keys = acc.key.tolist()
    seen = totals.seen
    keep = np.ones(len(keys), dtype=bool)
    for i, (raekke, key) in enumerate(zip(acc.raekke.tolist(), keys)):
        if key is None:
            continue
        first = seen.get(key)
        if first is None:
            seen[key] = raekke
            continue
        keep[i] = False
        rejected.append(Rejected(raekke, [Problem(
            "row", f"duplicate of row {first} (same shelter or key {key})")], kilde(raekke)))
        totals.add("dubletter", 1)
    if keep.all():
        return acc
    idx = np.flatnonzero(keep)
    return Accepted(acc.raekke[idx], acc.record.iloc[idx].reset_index(drop=True), acc.x[idx],
                    acc.y[idx], acc.kommune[idx], acc.key.iloc[idx].reset_index(drop=True))


@dataclass
class Stamp:
    """What the view's INSERT trigger would set on every new version of this transaction."""

    now: str
    bruger_id: str
    editor_cvr: int | None  # a municipal editor's own CVR, which wins
    cvr_of: dict[int, int]  # municipality -> its CVR


def _stamp(cur) -> Stamp:
    now, bruger, editor_cvr = cur.execute(
        "SELECT now()::text, coalesce(nullif(current_setting('ly.subjekt', true), ''), "
        "current_user), CASE WHEN ly.actor_has('municipal_editor', 'municipal_admin') "
        "THEN ly.actor_cvr() END").fetchone()
    return Stamp(now, bruger, editor_cvr,
                 dict(cur.execute("SELECT kommunekode, cvr_kode FROM ly.kommune").fetchall()))


def _uuids(n: int, ordered: bool = False) -> list[str]:
    """n random (version 4) UUIDs as text, made at once; `ordered`: in ascending order, so
    that the indexes on `objekt_id` (candidates, audit) grow at their right edge."""
    raw = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    text = raw.tobytes().hex()
    ids = [text[i:i + 32] for i in range(0, 32 * n, 32)]
    if ordered:
        ids.sort()
    return ids


def ewkb_points(x: np.ndarray, y: np.ndarray, srid: int) -> list[str]:
    """Points as hex EWKB (little-endian, with SRID), as `shapely.to_wkb(..., hex=True,
    include_srid=True)` writes them, made from the coordinates at once."""
    n = len(x)
    record = np.zeros(n, dtype=[("order", "u1"), ("kind", "<u4"), ("srid", "<u4"),
                                ("x", "<f8"), ("y", "<f8")])
    record["order"], record["kind"], record["srid"] = 1, 0x20000001, srid
    record["x"], record["y"] = x, y
    text = record.tobytes().hex().upper()
    size = 2 * record.itemsize
    return [text[i:i + size] for i in range(0, size * n, size)]


def _write(cur, run_id: int, acc: Accepted, stamp: Stamp, totals: Totals, theme: Theme) -> None:
    """The chunk's new objects (base table) and its candidates, with COPY."""
    n = len(acc.raekke)
    if not n:
        return
    versions, objects = _uuids(n), totals.object_ids(n)
    kommune = acc.kommune.tolist()
    given = acc.record["cvr_kode"].tolist()
    if stamp.editor_cvr is not None:
        cvr = [stamp.editor_cvr] * n
    else:
        cvr = [c if c is not None else stamp.cvr_of.get(k) for c, k in zip(given, kommune)]
    geoms = ewkb_points(acc.x, acc.y, theme.srid)
    other = [acc.record[c].tolist() for c in _other(theme)]
    now, bruger = stamp.now, stamp.bruger_id
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in _base_columns(theme))
    with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(_table(theme), columns)) as copy:
        for row in zip(versions, objects, kommune, cvr, *other, geoms):
            copy.write_row((row[0], row[1], now, now, bruger, *row[2:]))
    with cur.copy("COPY ly.kandidat (koersel_id, raekke, maal, handling, objekt_id, match, "
                  "efter_versions_id) FROM STDIN") as copy:
        for raekke, oid, vid in zip(acc.raekke.tolist(), objects, versions):
            copy.write_row((run_id, raekke, "ly", "opret", oid, "ny", vid))
    fig = staging.figure(theme)
    if fig is not None:  # the figure the quality gate guards, per municipality
        for k, p in zip(kommune, acc.record[fig].tolist()):
            totals.places[k] = totals.places.get(k, 0) + (p or 0)
    totals.add("opret", n)
    totals.add("gyldige", n)


@dataclass
class Prepared:
    """A chunk converted column by column (no database): its fast rows and the rows the row
    path must see."""

    lo: int
    hi: int
    fast: Accepted
    slow: list  # SourceRow


def _prepare(source, ctx, plan_: bulk_list.Plan, lo: int, hi: int,
             municipalities: bulk_list.Municipalities) -> Prepared:
    b = bulk_list.convert_batch(source, ctx, plan_, lo, hi)
    idx = np.flatnonzero(b.fast)
    kommune = municipalities.of(b.x[idx], b.y[idx])
    outside = kommune < 0 if ctx.kommunekode is None else kommune != ctx.kommunekode
    b.fast[idx[outside]] = False  # the row path finds (or refuses) their municipality
    return Prepared(lo, hi, _fast_rows(b, kommune[~outside]),
                    [source.rows[lo + int(i)] for i in np.flatnonzero(~b.fast)])


def _chunk(cur, run_id: int, source, ctx, p: Prepared, resolve_rows: Callable,
           stamp: Stamp, totals: Totals) -> None:
    """Resolve a prepared chunk's other rows, reject duplicates, write what is accepted."""
    staged: list[Staged] = []
    rejected: list[Rejected] = []
    skipped = 0
    for item in resolve_rows(cur, p.slow, ctx):
        if item is None:  # a blank line
            skipped += 1
        elif isinstance(item, Rejected):
            rejected.append(item)
        else:
            staged.append(item)
    kilde = {s.raekke: s.kilde for s in staged}

    def source_row(raekke: int) -> dict:  # the source row as the row path keeps it
        if raekke in kilde:
            return kilde[raekke]
        return {k: staging.jsonable(v) for k, v in source.rows[raekke - 1].values.items()
                if not k.startswith("__")}

    theme = ctx.theme
    acc = _drop_duplicates(_merge([p.fast, _slow_rows(cur, staged, theme)], theme), totals,
                           rejected, source_row)
    _write(cur, run_id, acc, stamp, totals, theme)
    staging._write_rejected(cur, run_id, sorted(rejected, key=lambda r: r.raekke))
    totals.add("afviste", len(rejected))
    totals.add("sprunget_over", skipped)
    totals.add("laest", (p.hi - p.lo) - skipped)


def _prepared(pool: ThreadPoolExecutor, prepare: Callable[[int, int], Prepared], n: int
              ) -> Iterator[Prepared]:
    """The chunks in order, each prepared in the background while the one before is
    written (the conversion's numpy and GEOS work runs while the server takes a COPY)."""
    bounds = [(lo, min(n, lo + CHUNK)) for lo in range(0, n, CHUNK)]
    ahead = pool.submit(prepare, *bounds[0]) if bounds else None
    for i in range(len(bounds)):
        current = ahead.result()
        ahead = pool.submit(prepare, *bounds[i + 1]) if i + 1 < len(bounds) else None
        yield current


def _report(totals: Totals, gate: Gate) -> dict:
    """The quality gate's report, as `staging.evaluate_gate` makes it for this run (every
    municipality had none of the figure before)."""
    places = [(k, 0, totals.places[k]) for k in sorted(k for k in totals.places if k is not None)]
    return staging.gate_report(gate, totals.counts.get("laest", 0),
                               totals.counts.get("afviste", 0), places)


# --- the run ----------------------------------------------------------------------------------

# One audit row per version, as `ly.audit` writes it for a create through the view.
# The actor is read once (not per row); the rows go in the order they were written.
_AUDIT = sql.SQL(
    "WITH a AS MATERIALIZED (SELECT ly.actor_subject() AS s, ly.actor_cvr() AS c, "
    "ly.actor_roles() AS r, nullif(current_setting('ly.klient', true), '') AS k) "
    "INSERT INTO ly.revision (subjekt, cvr_kode, roller, klient, handling, tabel, objekt_id, "
    "foer_versions_id, efter_versions_id) SELECT a.s, a.c, a.r, a.k, 'opret', "
    "{name}, b.objekt_id, NULL, b.versions_id FROM a CROSS JOIN {table} b "
    "ORDER BY b.objekt_id")


def load(conn: psycopg.Connection, run_id: int, source, ctx, plan_: bulk_list.Plan | None,
         resolve_rows: Callable, *, progress: staging.Progress | None = None
         ) -> dict | None:
    """Load and publish a run as the register's first load, in one transaction. Returns the
    run's counters, or None when the run cannot be loaded this way (nothing was written;
    the caller stages it)."""
    staging.autocommit(conn)
    progress = progress or staging.Progress()
    run = staging.get_run(conn, run_id)
    if not applies(conn, run, plan_):
        return None
    gate = Gate.from_dict(run["parametre"].get("gate"))
    sleep = float(os.environ.get(staging.SLEEP_ENV) or 0)
    n = len(source.rows)
    theme = ctx.theme
    table = _table(theme)
    try:
        with conn.transaction(), conn.cursor() as cur:
            _lock(cur, run_id, table)
            staging._act_as(conn, run["subjekt"], f"ly-import:{run['art']}:{run_id}")
            stamp = _stamp(cur)
            again = detach(cur, table)
            municipalities = bulk_list.Municipalities(cur)
            totals = Totals(ids=_uuids(n, ordered=True))
            progress.total(n)
            with ThreadPoolExecutor(1, thread_name_prefix="ly-first-load") as pool:
                for p in _prepared(pool, lambda lo, hi: _prepare(
                        source, ctx, plan_, lo, hi, municipalities), n):
                    _chunk(cur, run_id, source, ctx, p, resolve_rows, stamp, totals)
                    progress.advance(p.hi - p.lo)
                    if sleep:
                        time.sleep(sleep)
            report = _report(totals, gate)
            if not report["bestaaet"]:
                raise NotApplicable("the quality gate failed; staged for review")
            cur.execute("UPDATE ly.koersel SET staget = clock_timestamp() WHERE id = %s",
                        [run_id])
            _attach(cur, again)
            written = cur.execute(_AUDIT.format(name=sql.Literal(theme.table),
                                                table=table)).rowcount
            cur.execute(sql.SQL("ANALYZE {}").format(table))
            staging.analyze_candidates(cur)
            counts = {k: v for k, v in totals.counts.items() if v}
            counts["skrevet"] = written
            staging._add_counters(conn, run_id, counts, n)
            staging._set_status(conn, run_id, "publiceret", kvalitet=report)
            cur.execute("UPDATE ly.koersel SET publiceret = clock_timestamp(), fejl = NULL "
                        "WHERE id = %s", [run_id])
    except (NotApplicable, psycopg.errors.InsufficientPrivilege, psycopg.errors.LockNotAvailable):
        return None
    return staging.get_run(conn, run_id)["taellere"]


def _lock(cur, run_id: int, table: sql.Identifier) -> None:
    """The run and the theme's table, for this transaction; the table must be empty."""
    staging._lock_run(cur, run_id)
    cur.execute("SET LOCAL lock_timeout = '10s'")  # a long reader: stage instead of waiting
    cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table))
    cur.execute("SET LOCAL lock_timeout = 0")
    if cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(table)).fetchone()[0]:
        raise NotApplicable("the register is no longer empty")


def _attach(cur, again: list[sql.Composable]) -> None:
    """Make the indexes and keys again (a sorted build each; each foreign key checked by one
    join over the table)."""
    cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
    for statement in again:
        cur.execute(statement)
