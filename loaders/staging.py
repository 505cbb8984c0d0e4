"""Staged, validated, reversible imports: runs, candidates, a quality gate, atomic publication
and rollback.

Every import or pull is a *run* (`ly.koersel`, migration 0004):

1. **Stage.** The source is read row by row; each row becomes a candidate (`ly.kandidat`: create,
   change, end, or unchanged) or a rejection (`ly.afvist`, naming the field and the reason).
   Staging commits in batches; the run remembers how many source rows are done
   (`naeste_raekke`, and a source cursor in `markoer`), so a killed run resumes from its last
   committed batch. Staging never touches the register.
2. **Gate.** When every row is staged, the quality gate is evaluated (share of rejected rows;
   places each municipality would lose). A run that fails it is `afvist` and cannot be
   published (unless forced); the report says which rule failed and by how much.
3. **Publish.** One transaction writes every candidate through the theme's versioned view
   (`ly.t_6101_beskyt_rum` for shelters), so history and audit hold. A change is guarded by the
   version it was staged against: if someone changed the object since, nothing is published and
   the conflicts are listed.
4. **Rollback.** A published run is undone in one transaction by new versions that restore the
   previous values (created shelters are ended, ended ones re-created with their objekt_id);
   history is never deleted.

A run belongs to one theme (`datamodel.themes`), recorded in its parameters (`temakode`) by
`create_run`; every statement here is made from that theme's descriptor (its table, views,
writable attributes, geometry and the figure the quality gate guards), so a run of another
theme is a run with another descriptor. The candidates' geometry column (`ly.kandidat`,
migration 0004) holds points: a run of an area theme is refused until it holds areas.

Plain synchronous psycopg, like the other loaders; nothing here imports the service.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from uuid import UUID

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from datamodel import themes
from datamodel.rules import Problem
from datamodel.themes import Theme

#: Test hook: seconds to sleep after each committed staging batch (and, with
#: LY_IMPORT_PUBLISH_SLEEP, inside the publish transaction), so a test can kill a run midway.
SLEEP_ENV = "LY_IMPORT_BATCH_SLEEP"
PUBLISH_SLEEP_ENV = "LY_IMPORT_PUBLISH_SLEEP"

DEFAULT_BATCH = 2000


class RunError(Exception):
    """A run cannot do what was asked; the message says why."""


class GateFailed(RunError):
    def __init__(self, report: dict):
        self.report = report
        failed = [r for r in report["regler"] if not r["bestaaet"]]
        super().__init__("the quality gate failed: " + "; ".join(r["forklaring"] for r in failed))


class PublishConflict(RunError):
    def __init__(self, conflicts: list[dict], action: str = "publish"):
        self.conflicts = conflicts
        lines = [f"row {c['raekke']}: {c['objekt_id']} {c['aarsag']}" for c in conflicts[:20]]
        more = f" (and {len(conflicts) - 20} more)" if len(conflicts) > 20 else ""
        super().__init__(f"{action} refused, nothing written: {len(conflicts)} shelter(s) changed "
                         f"since the run was staged: " + "; ".join(lines) + more)


@dataclass
class Gate:
    """The quality gate a run must pass before it may be published."""

    max_afvist_andel: float = 0.25  # rejected rows / rows read
    max_pladstab_andel: float = 0.10  # share of its places a municipality may lose in one run

    def as_dict(self) -> dict:
        return {"max_afvist_andel": self.max_afvist_andel,
                "max_pladstab_andel": self.max_pladstab_andel}

    @classmethod
    def from_dict(cls, d: dict | None) -> "Gate":
        d = d or {}
        return cls(**{k: float(v) for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class Staged:
    """A source row that became a candidate."""

    raekke: int
    handling: str  # opret | ret | afslut | uaendret
    objekt_id: UUID
    record: dict | None = None  # the full writable record to write (opret, ret)
    ewkt: str | None = None  # the point to write (EPSG:25832)
    foer_versions_id: UUID | None = None
    match: str | None = None  # how the row was matched: objekt_id, noegle, bbr, adresse, ny
    dublet_noegle: str | None = None
    aendringer: dict | None = None  # {field: [old, new]}
    kilde: dict | None = None  # the source row as read
    maal: str = "ly"
    bemaerkning: str | None = None


@dataclass
class Rejected:
    """A source row that was rejected, with every problem found."""

    raekke: int
    problems: list[Problem]
    kilde: dict | None = None


@dataclass
class Progress:
    """Callbacks a command line can hook a progress bar to."""

    advance: Callable[[int], None] = lambda n: None
    total: Callable[[int], None] = lambda n: None


# --- JSON ----------------------------------------------------------------------------------

_PLAIN = (str, int, bool, type(None))


def jsonable(value: Any) -> Any:
    if type(value) in _PLAIN:  # the common case, first
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return value
    return value


def _jsonb(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(jsonable(value))


# --- runs ----------------------------------------------------------------------------------

def autocommit(conn: psycopg.Connection) -> psycopg.Connection:
    """Put a loader's connection in autocommit mode (committing what it had pending), so that
    each `conn.transaction()` below is a real, committed transaction and not a savepoint of an
    implicit one: a staged batch must be durable when the next one starts."""
    if not conn.autocommit:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            conn.rollback()
        else:
            conn.commit()
        conn.autocommit = True
    return conn


def create_run(conn: psycopg.Connection, art: str, kilde: str, *, parametre: dict | None = None,
               kommunekode: int | None = None, cvr_kode: int | None = None,
               subjekt: str = "ly-import", kilde_sha256: str | None = None,
               theme: Theme | None = None) -> int:
    """A new run of `theme` (default: `themes.default()`) in state `indlaeser`; committed at
    once so it shows in the run log. The theme is recorded as `parametre.temakode`."""
    theme = theme or themes.default()
    if theme.is_area:
        raise RunError(f"{theme.collection_id}: import runs take point themes only (the "
                       "candidates' geometry, ly.kandidat.geometri, is a point)")
    autocommit(conn)
    parametre = {**(parametre or {}), "temakode": theme.temakode}
    with conn.transaction():
        (run_id,) = conn.execute(
            "INSERT INTO ly.koersel (art, kilde, kilde_sha256, parametre, kommunekode, cvr_kode, "
            "subjekt) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            [art, kilde, kilde_sha256, _jsonb(parametre), kommunekode, cvr_kode, subjekt],
        ).fetchone()
    return run_id


def run_theme(run: dict) -> Theme:
    """The theme a run writes: the one `create_run` recorded (a run made before runs recorded
    their theme: `themes.default()`)."""
    code = (run.get("parametre") or {}).get("temakode")
    if code is None:
        return themes.default()
    try:
        return themes.by_temakode(int(code))
    except KeyError:
        raise RunError(f"run {run.get('id')}: its theme {code} is not registered") from None


def get_run(conn: psycopg.Connection, run_id: int) -> dict:
    autocommit(conn)
    cur = conn.execute("SELECT row_to_json(k) FROM ly.koersel k WHERE id = %s", [run_id])
    row = cur.fetchone()
    if row is None:
        raise RunError(f"run {run_id} does not exist")
    return row[0]


def list_runs(conn: psycopg.Connection, limit: int = 50) -> list[dict]:
    autocommit(conn)
    cur = conn.execute("SELECT row_to_json(k) FROM (SELECT id, art, status, kilde, kommunekode, "
                       "startet, publiceret, tilbagerullet, naeste_raekke, taellere "
                       "FROM ly.koersel ORDER BY id DESC LIMIT %s) k", [limit])
    return [r[0] for r in cur.fetchall()]


def _set_status(conn, run_id: int, status: str, **extra) -> None:
    sets = [sql.SQL("status = %s"), sql.SQL("opdateret = now()")]
    params: list = [status]
    for name, value in extra.items():
        sets.append(sql.SQL("{} = %s").format(sql.Identifier(name)))
        params.append(_jsonb(value) if isinstance(value, dict) else value)
    conn.execute(sql.SQL("UPDATE ly.koersel SET {} WHERE id = %s").format(sql.SQL(", ").join(sets)),
                 params + [run_id])


def mark_failed(conn: psycopg.Connection, run_id: int, message: str) -> None:
    """Record why a run stopped (the register was not touched; it can be resumed)."""
    autocommit(conn)
    with conn.transaction():
        conn.execute("UPDATE ly.koersel SET fejl = %s, opdateret = now() WHERE id = %s",
                     [message[:4000], run_id])


def _add_counters(conn, run_id: int, counts: dict[str, int], rows_done: int,
                  markoer: Any = None) -> None:
    conn.execute(
        "UPDATE ly.koersel SET naeste_raekke = naeste_raekke + %s, opdateret = now(), "
        "markoer = coalesce(%s, markoer), "
        "taellere = (SELECT coalesce(jsonb_object_agg(key, value), '{}'::jsonb) FROM ("
        "  SELECT key, sum(value::numeric)::bigint AS value FROM ("
        "    SELECT * FROM jsonb_each_text(taellere) UNION ALL SELECT * FROM jsonb_each_text(%s)"
        "  ) a GROUP BY key) s) "
        "WHERE id = %s",
        [rows_done, _jsonb(markoer), Jsonb(counts), run_id])


def current_rows(theme: Theme) -> sql.Composed:
    """`row_to_json(t), x, y FROM <current view> t`: a point theme's current objects as the
    loaders read them to match and compare (followed by a JOIN or WHERE)."""
    return sql.SQL("row_to_json(t), ST_X(t.geometri), ST_Y(t.geometri) FROM {} t").format(
        sql.Identifier("ly", theme.current_view))


# --- staging -------------------------------------------------------------------------------

_KANDIDAT_COLS = ("koersel_id, raekke, maal, handling, objekt_id, match, dublet_noegle, "
                  "foer_versions_id, vaerdier, aendringer, geometri, kilde_vaerdier, bemaerkning")


def _json_text(value: Any) -> str | None:
    """JSON text for a jsonb column written with COPY."""
    return None if value is None else orjson.dumps(jsonable(value)).decode()


def _earlier_rows(cur, run_id: int, items: list[Staged]) -> dict:
    """The rows already staged in this run for the same shelters (or keys) as `items`, in one
    query per target: {("o", maal, objekt_id): raekke, ("d", "", key): raekke}."""
    found: dict = {}
    for maal in sorted({s.maal for s in items}):
        ids = [s.objekt_id for s in items if s.maal == maal]
        for oid, raekke in cur.execute(
                "SELECT objekt_id, min(raekke) FROM ly.kandidat WHERE koersel_id = %s "
                "AND maal = %s AND objekt_id = ANY(%s) GROUP BY objekt_id",
                [run_id, maal, ids]).fetchall():
            found[("o", maal, str(oid))] = raekke
    keys = sorted({s.dublet_noegle for s in items if s.dublet_noegle})
    if keys:
        for key, raekke in cur.execute(
                "SELECT dublet_noegle, min(raekke) FROM ly.kandidat WHERE koersel_id = %s "
                "AND dublet_noegle = ANY(%s) GROUP BY dublet_noegle", [run_id, keys]).fetchall():
            found[("d", "", key)] = raekke
    return found


def _keys(s: Staged) -> list[tuple]:
    keys = [("o", s.maal, str(s.objekt_id))]
    if s.dublet_noegle:
        keys.append(("d", "", s.dublet_noegle))
    return keys


def _write_staged(cur, run_id: int, items: list[Staged]) -> None:
    """Candidates, written with COPY."""
    if not items:
        return
    with cur.copy(f"COPY ly.kandidat ({_KANDIDAT_COLS}) FROM STDIN") as copy:
        for s in items:
            copy.write_row((run_id, s.raekke, s.maal, s.handling, s.objekt_id, s.match,
                            s.dublet_noegle, s.foer_versions_id, _json_text(s.record),
                            _json_text(s.aendringer), s.ewkt, _json_text(s.kilde),
                            s.bemaerkning))


def _write_rejected(cur, run_id: int, items: list[Rejected]) -> None:
    """Rejections (one line per problem), written with COPY."""
    if not items:
        return
    with cur.copy("COPY ly.afvist (koersel_id, raekke, felt, aarsag, kilde_vaerdier) "
                  "FROM STDIN") as copy:
        for r in items:
            kilde = _json_text(r.kilde)
            for p in r.problems or [Problem("row", "rejected")]:
                copy.write_row((run_id, r.raekke, p.field[:128], p.detail, kilde))


def stage_items(cur, run_id: int, items: list[Staged | Rejected | None]) -> dict[str, int]:
    """Write one batch of staged rows (in the caller's transaction): candidates, and
    rejections, a candidate for a shelter (or key) an earlier row of the run already had
    rejected as a duplicate of that row. Returns the batch's counters."""
    counts: dict[str, int] = {"laest": 0}
    earlier = _earlier_rows(cur, run_id, [i for i in items if isinstance(i, Staged)])
    staged: list[Staged] = []
    rejected: list[Rejected] = []
    for item in items:
        if item is None:
            counts["sprunget_over"] = counts.get("sprunget_over", 0) + 1
            continue
        counts["laest"] += 1
        if isinstance(item, Staged):
            first = next((earlier[k] for k in _keys(item) if k in earlier), None)
            if first is not None:
                key = f" or key {item.dublet_noegle}" if item.dublet_noegle else ""
                item = Rejected(item.raekke, [Problem(
                    "row", f"duplicate of row {first} (same shelter{key})")], item.kilde)
                counts["dubletter"] = counts.get("dubletter", 0) + 1
        if isinstance(item, Rejected):
            rejected.append(item)
            counts["afviste"] = counts.get("afviste", 0) + 1
            continue
        staged.append(item)
        for k in _keys(item):
            earlier[k] = item.raekke
        key = item.handling if item.maal == "ly" else f"geofa_{item.handling}"
        counts[key] = counts.get(key, 0) + 1
        counts["gyldige"] = counts.get("gyldige", 0) + 1
    _write_staged(cur, run_id, staged)
    _write_rejected(cur, run_id, rejected)
    return counts


def stage(conn: psycopg.Connection, run_id: int, items: Iterable[Staged | Rejected | None], *,
          batch_size: int = DEFAULT_BATCH, progress: Progress | None = None,
          markoer: Callable[[], Any] | None = None) -> dict:
    """Store candidates and rejections, committing every `batch_size` source rows.

    `items` yields one entry per source row, in order, starting after the run's
    `naeste_raekke` (None for a row that is skipped without a trace, e.g. a blank line).
    Each commit also advances `naeste_raekke` (and stores `markoer()`, a source cursor), so a
    killed run resumes exactly after its last committed batch. A candidate for a shelter (or
    with a key) an earlier row of the run already had is rejected as a duplicate of that row.
    Returns the run's counters.
    """
    autocommit(conn)
    progress = progress or Progress()
    sleep = float(os.environ.get(SLEEP_ENV) or 0)
    run = get_run(conn, run_id)
    if run["status"] != "indlaeser":
        raise RunError(f"run {run_id} is {run['status']}; only a run being staged takes rows")
    pending: list[Staged | Rejected | None] = []

    def flush() -> None:
        if not pending:
            return
        with conn.transaction(), conn.cursor() as cur:
            counts = stage_items(cur, run_id, pending)
            _add_counters(conn, run_id, counts, len(pending), markoer() if markoer else None)
        progress.advance(len(pending))
        pending.clear()
        if sleep:
            time.sleep(sleep)

    for item in items:
        pending.append(item)
        if len(pending) >= batch_size:
            flush()
    flush()
    return get_run(conn, run_id)["taellere"]


def _add_candidates(cur, run_id: int, items: list[Staged]) -> dict[str, int]:
    """Candidates computed after the source was read (e.g. shelters a full list no longer has),
    numbered after the source rows; shelters the run has already are skipped."""
    (last,) = cur.execute(
        "SELECT greatest(coalesce(max(raekke), 0), (SELECT naeste_raekke FROM ly.koersel "
        "WHERE id = %s)) FROM (SELECT raekke FROM ly.kandidat WHERE koersel_id = %s "
        "UNION ALL SELECT raekke FROM ly.afvist WHERE koersel_id = %s) r",
        [run_id, run_id, run_id]).fetchone()
    counts: dict[str, int] = {}
    earlier = _earlier_rows(cur, run_id, items) if items else {}
    new: list[Staged] = []
    for s in items:
        if any(k in earlier for k in _keys(s)):
            continue
        last += 1
        s.raekke = last
        new.append(s)
        for k in _keys(s):
            earlier[k] = s.raekke
        key = s.handling if s.maal == "ly" else f"geofa_{s.handling}"
        counts[key] = counts.get(key, 0) + 1
    _write_staged(cur, run_id, new)
    return counts


# --- quality gate --------------------------------------------------------------------------

# The municipality of every point a run adds or moves is found set-based, from the
# municipalities' side: the points get a spatial index, the boundaries are cut into parts of
# at most 64 vertices, and each part's index scan tests its points against the same small
# polygon -- seconds for a national list, where a `ly.kommune_for` lookup per point takes
# minutes. A point in two municipalities (on a border) gets the lower-numbered one, a point
# in none (at sea, near the generalised coast) `ly.kommune_for`'s answer: the same rule.
# The result (`ly_punkt_kommune`, a temporary table of the transaction) is the quality
# gate's, and publishing reads it too.
_POINTS_SQL = sql.SQL("""
CREATE TEMP TABLE ly_punkter ON COMMIT DROP AS
SELECT raekke, geometri, {figure} AS figur FROM ly.kandidat
WHERE koersel_id = %(run)s AND maal = 'ly' AND handling IN ('opret', 'ret')
""")
_POINT_MUNICIPALITY_SQL = """
CREATE TEMP TABLE ly_punkt_kommune ON COMMIT DROP AS
WITH inside AS (
    SELECT DISTINCT ON (p.raekke) p.raekke, m.kommunekode
    FROM (SELECT kommunekode, ST_Subdivide(geometri, 64) AS g FROM ly.kommune) m
    JOIN ly_punkter p ON ST_Intersects(m.g, p.geometri)
    ORDER BY p.raekke, m.kommunekode
)
SELECT p.raekke, coalesce(i.kommunekode, ly.kommune_for(p.geometri)) AS kommune, p.figur
FROM ly_punkter p LEFT JOIN inside i USING (raekke)
"""

# The figure a municipality may lose (`Gate.max_pladstab_andel`): the theme's first report
# figure (a shelter's places), before and after the run.
_PLACES_SQL = sql.SQL("""
WITH old AS (
    SELECT b.beliggenhedskommune AS kommune, -b.{figure} AS d
    FROM ly.kandidat k JOIN {table} b ON b.versions_id = k.foer_versions_id
    WHERE k.koersel_id = %(run)s AND k.maal = 'ly' AND k.handling IN ('ret', 'afslut')
), delta AS (
    SELECT kommune, sum(d){sum_type} AS d FROM (
        SELECT * FROM old UNION ALL SELECT kommune, figur FROM ly_punkt_kommune) x
    WHERE kommune IS NOT NULL GROUP BY kommune
), before AS (
    SELECT beliggenhedskommune AS kommune, sum({figure}){sum_type} AS p FROM {view}
    WHERE beliggenhedskommune IN (SELECT kommune FROM delta) GROUP BY 1
)
SELECT d.kommune, coalesce(b.p, 0), coalesce(b.p, 0) + d.d
FROM delta d LEFT JOIN before b USING (kommune) ORDER BY d.kommune
""")


def figure(theme: Theme) -> str | None:
    """The attribute whose loss the quality gate guards: the theme's first report figure (a
    shelter's places), or None when the theme has none."""
    return theme.figures[0].field if theme.figures else None


def _figure_types(theme: Theme) -> tuple[sql.Composable, sql.Composable]:
    """(cast of a candidate's figure, cast of a sum of figures)."""
    if theme.fields_by_name[figure(theme)].type == "integer":
        return sql.SQL("int"), sql.SQL("::bigint")
    return sql.SQL("numeric"), sql.SQL("")


def _places(cur, run_id: int, theme: Theme) -> list[tuple[int, int, int]]:
    """(municipality, figure before, figure after) for every municipality the run touches
    (none when the theme has no figure); leaves `ly_punkt_kommune` (raekke, kommune) for the
    rest of the transaction."""
    name = figure(theme)
    if name is None:
        value = sql.SQL("NULL::int")
    else:
        cast, _ = _figure_types(theme)
        value = sql.SQL("(vaerdier ->> {})::{}").format(sql.Literal(name), cast)
    cur.execute("DROP TABLE IF EXISTS ly_punkter, ly_punkt_kommune")
    cur.execute(_POINTS_SQL.format(figure=value), {"run": run_id})
    cur.execute("CREATE INDEX ON ly_punkter USING gist (geometri)")
    cur.execute("ANALYZE ly_punkter")
    cur.execute(_POINT_MUNICIPALITY_SQL)
    cur.execute("CREATE UNIQUE INDEX ON ly_punkt_kommune (raekke)")
    cur.execute("ANALYZE ly_punkt_kommune")
    if name is None:
        return []
    _, sum_type = _figure_types(theme)
    return cur.execute(_PLACES_SQL.format(
        figure=sql.Identifier(name), sum_type=sum_type, table=sql.Identifier("ly", theme.table),
        view=sql.Identifier("ly", theme.current_view)), {"run": run_id}).fetchall()


def evaluate_gate(conn: psycopg.Connection, run_id: int, gate: Gate) -> dict:
    """The quality report of a staged run against the current register."""
    autocommit(conn)
    with conn.transaction(), conn.cursor() as cur:
        return _evaluate_gate(conn, cur, run_id, gate)


def _evaluate_gate(conn, cur, run_id: int, gate: Gate) -> dict:
    """`evaluate_gate` in the caller's transaction (publishing reads what it leaves)."""
    run = get_run(conn, run_id)
    t = run["taellere"] or {}
    return gate_report(gate, int(t.get("laest", 0)), int(t.get("afviste", 0)),
                       _places(cur, run_id, run_theme(run)))


def gate_report(gate: Gate, read: int, rejected: int,
                places: Iterable[tuple[int, int, int]]) -> dict:
    """The quality gate's report: the share of rejected rows, and per municipality the
    places before and after (municipality, before, after)."""
    share = rejected / read if read else 0.0
    rules = [{
        "regel": "afvist_andel", "graense": gate.max_afvist_andel, "vaerdi": round(share, 4),
        "bestaaet": share <= gate.max_afvist_andel,
        "forklaring": f"{rejected} of {read} rows rejected ({share:.0%}; at most "
                      f"{gate.max_afvist_andel:.0%} allowed)",
    }]
    for kommune, before, after in places:
        loss = (before - after) / before if before > 0 and after < before else 0.0
        rules.append({
            "regel": "pladstab", "kommunekode": kommune, "foer": before, "efter": after,
            "graense": gate.max_pladstab_andel, "vaerdi": round(loss, 4),
            "bestaaet": loss <= gate.max_pladstab_andel,
            "forklaring": f"municipality {kommune} would go from {before} to {after} places "
                          f"(loses {loss:.0%}; at most {gate.max_pladstab_andel:.0%} allowed)",
        })
    return {"bestaaet": all(r["bestaaet"] for r in rules), "graenser": gate.as_dict(),
            "regler": rules}


#: A run that staged this many rows has the candidates table analysed before its gate.
ANALYZE_AFTER = 5_000


def analyze_candidates(cur) -> None:
    """Fresh statistics for `ly.kandidat` after a large run was staged, so that its gate,
    publication and rollback are planned for its size, not for the table autovacuum last saw
    (a join planned for one row took minutes over 50,000). Only the table's owner may;
    anyone else gets PostgreSQL's warning and the plans as they are."""
    cur.execute("ANALYZE ly.kandidat")


def finish_staging(conn: psycopg.Connection, run_id: int, gate: Gate | None = None,
                   extra: Iterable[Staged] = ()) -> dict:
    """Close staging in one transaction: add the `extra` candidates computed from the whole
    source (e.g. shelters a complete list no longer has), evaluate the gate; the run becomes
    `klar` (may be published) or `afvist`. Returns the gate's report."""
    autocommit(conn)
    run = get_run(conn, run_id)
    if run["status"] != "indlaeser":
        raise RunError(f"run {run_id} is {run['status']}; its staging is finished already")
    gate = gate or Gate.from_dict(run["parametre"].get("gate"))
    with conn.transaction(), conn.cursor() as cur:
        counts = _add_candidates(cur, run_id, list(extra))
        if counts:
            _add_counters(conn, run_id, counts, 0)
        if run["naeste_raekke"] >= ANALYZE_AFTER:
            analyze_candidates(cur)
        report = evaluate_gate(conn, run_id, gate)
        _set_status(conn, run_id, "klar" if report["bestaaet"] else "afvist", kvalitet=report)
        cur.execute("UPDATE ly.koersel SET staget = clock_timestamp(), fejl = NULL "
                    "WHERE id = %s", [run_id])
    return report


# --- publishing and rollback ---------------------------------------------------------------

def _act_as(conn, subject: str, client: str) -> None:
    """Audit: the register's triggers record this subject and client for every version."""
    conn.execute("SELECT set_config('ly.subjekt', %s, true), set_config('ly.klient', %s, true)",
                 [subject, client])


# Publishing writes every candidate of one kind with one statement. Changes and ends go
# through the theme's versioned view (its trigger closes the old version, writes the new one
# and the audit row). New objects are written set-based, straight into the base table, with
# the rule of the view's INSERT trigger (`datamodel.storage.write_function_sql`): fresh
# version id, system time and creation time now, the point's municipality, the acting
# subject as editor, a municipal editor's own CVR (else the one given, else the
# municipality's), and an audit row per version as `ly.audit` writes it. An object created
# through the view and one published here get the same values (tests/test_import_list.py).
# The municipalities come from the quality gate, evaluated just before in the same
# transaction (`ly_punkt_kommune`).
_PUB_INSERT = (
    "WITH s AS MATERIALIZED ("
    "  SELECT k.objekt_id AS oid, k.geometri AS g, "
    "  coalesce(pk.kommune, ly.kommune_for(k.geometri)) AS kommune, {rcols} FROM ly.kandidat k "
    "  CROSS JOIN LATERAL jsonb_populate_record(NULL::{table}, k.vaerdier) r "
    "  LEFT JOIN ly_punkt_kommune pk ON pk.raekke = k.raekke "
    "  WHERE k.koersel_id = %(run)s AND k.maal = 'ly' AND k.handling = 'opret'), "
    "w AS (INSERT INTO {table} (versions_id, objekt_id, systid_fra, systid_til, "
    "  oprettet, bruger_id, beliggenhedskommune, cvr_kode, {other}, geometri) "
    "  SELECT gen_random_uuid(), s.oid, now(), NULL, now(), "
    "  coalesce(nullif(current_setting('ly.subjekt', true), ''), current_user), s.kommune, "
    "  coalesce(CASE WHEN ly.actor_has('municipal_editor', 'municipal_admin') "
    "    THEN ly.actor_cvr() ELSE s.cvr_kode END, "
    "    (SELECT m.cvr_kode FROM ly.kommune m WHERE m.kommunekode = s.kommune)), "
    "  {sother}, s.g FROM s "
    "  RETURNING objekt_id, versions_id), "
    "a AS (INSERT INTO ly.revision (subjekt, cvr_kode, roller, klient, handling, tabel, "
    "  objekt_id, foer_versions_id, efter_versions_id) "
    "  SELECT ly.actor_subject(), ly.actor_cvr(), ly.actor_roles(), "
    "  nullif(current_setting('ly.klient', true), ''), 'opret', {table_name}, "
    "  w.objekt_id, NULL, w.versions_id FROM w) "
    "UPDATE ly.kandidat k SET efter_versions_id = w.versions_id FROM w "
    "WHERE k.koersel_id = %(run)s AND k.maal = 'ly' AND k.objekt_id = w.objekt_id")
_PUB_UPDATE = (
    "WITH w AS (UPDATE {view} v SET {sets}, geometri = k.geometri "
    "FROM ly.kandidat k CROSS JOIN LATERAL jsonb_populate_record(NULL::{table}, "
    "k.vaerdier) r WHERE k.koersel_id = %(run)s AND k.maal = 'ly' AND k.handling = 'ret' "
    "AND v.objekt_id = k.objekt_id AND v.versions_id = k.foer_versions_id "
    "RETURNING v.objekt_id, v.versions_id) "
    "UPDATE ly.kandidat k SET efter_versions_id = w.versions_id FROM w "
    "WHERE k.koersel_id = %(run)s AND k.maal = 'ly' AND k.objekt_id = w.objekt_id")
_PUB_DELETE = (
    "DELETE FROM {view} v USING ly.kandidat k WHERE k.koersel_id = %(run)s "
    "AND k.maal = 'ly' AND k.handling = 'afslut' AND v.objekt_id = k.objekt_id "
    "AND v.versions_id = k.foer_versions_id")
# Candidates that can no longer be written as staged (checked before anything is written).
_PUB_CONFLICTS = (
    "SELECT k.raekke, k.objekt_id, CASE WHEN k.handling = 'opret' "
    "THEN 'exists already (created by someone else)' "
    "ELSE 'is no longer version ' || k.foer_versions_id END "
    "FROM ly.kandidat k WHERE k.koersel_id = %(run)s AND k.maal = 'ly' AND CASE "
    "WHEN k.handling = 'opret' THEN EXISTS (SELECT 1 FROM {table} b "
    "  WHERE b.objekt_id = k.objekt_id AND b.systid_til IS NULL) "
    "WHEN k.handling IN ('ret', 'afslut') THEN NOT EXISTS (SELECT 1 FROM {table} b "
    "  WHERE b.versions_id = k.foer_versions_id AND b.systid_til IS NULL) "
    "ELSE false END ORDER BY k.raekke")
# Rolling back likewise writes every candidate of one kind with one statement through the
# versioned view: a new object is ended, a change restored from the version before it (a new
# version with its values), an ended object re-created with its last values; the view's
# trigger closes the run's version and writes the audit row. The restoring version goes to
# the candidate (`tilbage_versions_id`).
_BACK_CONFLICTS = (
    "SELECT k.raekke, k.objekt_id, CASE WHEN k.handling = 'afslut' "
    "THEN 'was re-created since the run ended it' "
    "ELSE 'has changed since the run wrote version ' || k.efter_versions_id END "
    "FROM ly.kandidat k LEFT JOIN {table} b ON b.objekt_id = k.objekt_id "
    "AND b.systid_til IS NULL WHERE k.koersel_id = %(run)s AND k.maal = 'ly' AND CASE "
    "WHEN k.handling IN ('opret', 'ret') THEN b.versions_id IS DISTINCT FROM k.efter_versions_id "
    "WHEN k.handling = 'afslut' THEN b.versions_id IS NOT NULL ELSE false END "
    "ORDER BY k.raekke DESC")
# Objects of the run that a later published run wrote too: one index probe per object
# (`kandidat_objekt_id`), whatever PostgreSQL's statistics of a freshly written run say.
_BACK_LATER = (
    "SELECT l.koersel_id, k.raekke, k.objekt_id FROM ly.kandidat k CROSS JOIN LATERAL ("
    "  SELECT k2.koersel_id FROM ly.kandidat k2 "
    "  JOIN ly.koersel r2 ON r2.id = k2.koersel_id AND r2.status = 'publiceret' "
    "  WHERE k2.objekt_id = k.objekt_id AND k2.koersel_id > k.koersel_id AND k2.maal = 'ly' "
    "  AND k2.handling <> 'uaendret' ORDER BY k2.koersel_id LIMIT 1) l "
    "WHERE k.koersel_id = %s AND k.maal = 'ly' AND k.handling <> 'uaendret' "
    "ORDER BY k.raekke LIMIT 20")
_BACK_DELETE = (
    "DELETE FROM {view} v USING ly.kandidat k WHERE k.koersel_id = %(run)s "
    "AND k.maal = 'ly' AND k.handling = 'opret' AND v.objekt_id = k.objekt_id "
    "AND v.versions_id = k.efter_versions_id")
_BACK_UPDATE = (
    "WITH w AS (UPDATE {view} v SET {sets}, geometri = r.geometri "
    "FROM ly.kandidat k JOIN {table} r ON r.versions_id = k.foer_versions_id "
    "WHERE k.koersel_id = %(run)s AND k.maal = 'ly' AND k.handling = 'ret' "
    "AND v.objekt_id = k.objekt_id AND v.versions_id = k.efter_versions_id "
    "RETURNING v.objekt_id, v.versions_id) "
    "UPDATE ly.kandidat k SET tilbage_versions_id = w.versions_id FROM w "
    "WHERE k.koersel_id = %(run)s AND k.maal = 'ly' AND k.objekt_id = w.objekt_id")
_BACK_INSERT = (
    "WITH w AS (INSERT INTO {view} (objekt_id, {cols}, geometri) "
    "SELECT r.objekt_id, {rcols}, r.geometri FROM ly.kandidat k "
    "JOIN {table} r ON r.versions_id = k.foer_versions_id "
    "WHERE k.koersel_id = %(run)s AND k.maal = 'ly' AND k.handling = 'afslut' "
    "RETURNING objekt_id, versions_id) "
    "UPDATE ly.kandidat k SET tilbage_versions_id = w.versions_id FROM w "
    "WHERE k.koersel_id = %(run)s AND k.maal = 'ly' AND k.objekt_id = w.objekt_id")


@lru_cache(maxsize=None)
def statements(theme: Theme) -> dict[str, sql.Composed]:
    """The publish and rollback statements of a theme's runs, by name (`_PUB_INSERT` ...)."""
    writable = [f.name for f in theme.writable_fields]
    other = [c for c in writable if c != "cvr_kode"]

    def columns(names: list[str], prefix: str = "") -> sql.Composable:
        if not prefix:
            return sql.SQL(", ").join(sql.Identifier(c) for c in names)
        return sql.SQL(", ").join(sql.SQL(prefix + ".{}").format(sql.Identifier(c))
                                  for c in names)

    parts = {
        "table": sql.Identifier("ly", theme.table),
        "view": sql.Identifier("ly", theme.current_view),
        "table_name": sql.Literal(theme.table),
        "cols": columns(writable), "rcols": columns(writable, "r"),
        "other": columns(other), "sother": columns(other, "s"),
        "sets": sql.SQL(", ").join(sql.SQL("{c} = r.{c}").format(c=sql.Identifier(c))
                                   for c in writable),
    }
    out = {}
    for name, text in (("pub_insert", _PUB_INSERT), ("pub_update", _PUB_UPDATE),
                       ("pub_delete", _PUB_DELETE), ("pub_conflicts", _PUB_CONFLICTS),
                       ("back_conflicts", _BACK_CONFLICTS), ("back_delete", _BACK_DELETE),
                       ("back_update", _BACK_UPDATE), ("back_insert", _BACK_INSERT)):
        out[name] = sql.SQL(text).format(**{k: v for k, v in parts.items()
                                            if "{" + k + "}" in text})
    return out


def _write_kinds(cur, run_id: int, conflicts_sql: sql.Composable, kinds, progress: Progress,
                 action: str) -> int:
    """Write a run's candidates, one statement per kind (`opret`, `ret`, `afslut`), after
    checking none conflicts. Refused (PublishConflict, the caller's transaction rolls back)
    when one does, or when a statement writes fewer rows than its kind has candidates (a
    shelter changed meanwhile). Returns the rows written."""
    todo = dict(cur.execute(
        "SELECT handling, count(*) FROM ly.kandidat WHERE koersel_id = %s AND maal = 'ly' "
        "AND handling IN ('opret', 'ret', 'afslut') GROUP BY handling", [run_id]).fetchall())
    progress.total(sum(todo.values()))
    conflicts = [{"raekke": r, "objekt_id": str(o), "aarsag": a}
                 for r, o, a in cur.execute(conflicts_sql, {"run": run_id}).fetchall()]
    if conflicts:
        raise PublishConflict(conflicts, action=action)
    written = 0
    for handling, statement in kinds:
        if not todo.get(handling):
            continue
        n = cur.execute(statement, {"run": run_id}).rowcount
        if n != todo[handling]:  # changed by someone else meanwhile: nothing is written
            raise PublishConflict([{"raekke": 0, "objekt_id": "-", "aarsag": (
                f"{todo[handling] - n} of {todo[handling]} '{handling}' candidates "
                f"changed during the {action}")}], action=action)
        written += n
        progress.advance(n)
    return written


def _lock_run(cur, run_id: int) -> dict:
    """The run, locked for the rest of the transaction (one publish or rollback at a time)."""
    row = cur.execute("SELECT row_to_json(k) FROM ly.koersel k WHERE id = %s FOR UPDATE",
                      [run_id]).fetchone()
    if row is None:
        raise RunError(f"run {run_id} does not exist")
    return row[0]


def publish(conn: psycopg.Connection, run_id: int, *, force: bool = False,
            progress: Progress | None = None,
            extra: Callable[[psycopg.Connection], None] | None = None) -> dict:
    """Write a staged run's candidates to the register in one transaction.

    Refused (nothing written) when the run is not `klar` (unless `force` for an `afvist` run),
    when the gate fails against the register as it is now (unless `force`), or when a shelter
    changed since it was staged. `extra(conn)` runs inside the same transaction (the GeoFA sync
    stores its links and cursor there). Returns the run's counters.
    """
    autocommit(conn)
    progress = progress or Progress()
    sleep = float(os.environ.get(PUBLISH_SLEEP_ENV) or 0)
    with conn.transaction(), conn.cursor() as cur:
        run = _lock_run(cur, run_id)
        allowed = ("klar", "afvist") if force else ("klar",)
        if run["status"] not in allowed:
            hint = " (the quality gate failed; see its report, or force)" \
                if run["status"] == "afvist" else ""
            raise RunError(f"run {run_id} is {run['status']} and cannot be published{hint}")
        gate = Gate.from_dict(run["parametre"].get("gate"))
        report = evaluate_gate(conn, run_id, gate)
        if not report["bestaaet"] and not force:
            raise GateFailed(report)
        _act_as(conn, run["subjekt"], f"ly-import:{run['art']}:{run_id}")
        st = statements(run_theme(run))
        written = _write_kinds(cur, run_id, st["pub_conflicts"], (
            ("opret", st["pub_insert"]), ("ret", st["pub_update"]),
            ("afslut", st["pub_delete"])), progress, "publish")
        if sleep:
            time.sleep(sleep * written)
        if extra is not None:
            extra(conn)
        _add_counters(conn, run_id, {"skrevet": written}, 0)
        _set_status(conn, run_id, "publiceret", kvalitet=report)
        cur.execute("UPDATE ly.koersel SET publiceret = clock_timestamp() WHERE id = %s", [run_id])
    return get_run(conn, run_id)["taellere"]


def rollback(conn: psycopg.Connection, run_id: int, *, subject: str | None = None,
             progress: Progress | None = None) -> dict:
    """Undo a published run in one transaction with new versions that restore what was there
    before it. Refused (nothing written) when a shelter the run wrote has changed since."""
    autocommit(conn)
    progress = progress or Progress()
    with conn.transaction(), conn.cursor() as cur:
        run = _lock_run(cur, run_id)
        if run["status"] != "publiceret":
            raise RunError(f"run {run_id} is {run['status']}; only a published run can be "
                           "rolled back")
        later = cur.execute(_BACK_LATER, [run_id]).fetchall()
        if later:
            raise PublishConflict([{"raekke": r, "objekt_id": str(o),
                                    "aarsag": f"was changed again by the later run {k2}; roll "
                                              "that back first"} for k2, r, o in later],
                                  action="rollback")
        _act_as(conn, subject or run["subjekt"], f"ly-tilbagerulning:{run['art']}:{run_id}")
        st = statements(run_theme(run))
        undone = _write_kinds(cur, run_id, st["back_conflicts"], (
            ("opret", st["back_delete"]), ("ret", st["back_update"]),
            ("afslut", st["back_insert"])), progress, "rollback")
        _add_counters(conn, run_id, {"tilbagerullet": undone}, 0)
        _set_status(conn, run_id, "tilbagerullet")
        cur.execute("UPDATE ly.koersel SET tilbagerullet = clock_timestamp() WHERE id = %s",
                    [run_id])
    return get_run(conn, run_id)["taellere"]


# --- reports -------------------------------------------------------------------------------

def rejections(conn: psycopg.Connection, run_id: int) -> list[dict]:
    autocommit(conn)
    cur = conn.execute("SELECT raekke, felt, aarsag, kilde_vaerdier FROM ly.afvist "
                       "WHERE koersel_id = %s ORDER BY raekke, id", [run_id])
    return [{"raekke": r, "felt": f, "aarsag": a, "kilde": k} for r, f, a, k in cur.fetchall()]


def write_rejections(conn: psycopg.Connection, run_id: int, path: str | Path) -> int:
    """Every rejected row with its field and reason as CSV (UTF-8, `;`-separated, opens in
    Excel); the source values follow as JSON. Returns the number of lines written."""
    rows = rejections(conn, run_id)
    path = Path(path)
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh, delimiter=";")
        w.writerow(["raekke", "felt", "aarsag", "kilde"])
        for r in rows:
            w.writerow([r["raekke"], r["felt"], r["aarsag"],
                        json.dumps(r["kilde"], ensure_ascii=False) if r["kilde"] else ""])
    return len(rows)


def candidates(conn: psycopg.Connection, run_id: int, *, changed_only: bool = True) -> list[dict]:
    autocommit(conn)
    cur = conn.execute(
        "SELECT raekke, maal, handling, objekt_id, match, aendringer, bemaerkning FROM "
        "ly.kandidat WHERE koersel_id = %s" + (" AND handling <> 'uaendret'" if changed_only
                                                else "") + " ORDER BY raekke", [run_id])
    return [{"raekke": r, "maal": m, "handling": h, "objekt_id": str(o), "match": mt,
             "aendringer": a, "bemaerkning": b} for r, m, h, o, mt, a, b in cur.fetchall()]


def summary(conn: psycopg.Connection, run_id: int) -> dict:
    run = get_run(conn, run_id)
    return {**run, "afviste": rejections(conn, run_id)}


def iter_remaining(rows: list, run: dict) -> Iterator:
    """The rows a run has not staged yet."""
    return iter(rows[run["naeste_raekke"]:])
