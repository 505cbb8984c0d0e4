"""Set-based staging of large vector lists (the fast path of `loaders.municipal_list`).

A national or regional list (a GeoPackage, Shapefile or GeoJSON of hundreds of thousands of
shelters) is staged a batch at a time, column by column instead of row by row:

1. **Convert and check columns.** Each mapped column is converted with the same functions the
   row path uses (`municipal_list.convert`, `rules.validate_properties`), or, for free text
   and UUIDs, checked as the row path checks them (stripped, no NUL, at most the field's
   length; canonical UUIDs), each once per *distinct* value. Defaults, required fields
   and the sub-type rule of `rules.complete` are applied to whole columns. Points come from
   the file's geometry column (EPSG:25832, or CRS84 transformed with pyproj) and must lie in
   Denmark's box, as `rules.point_from_geojson` demands.
2. **Set aside what needs a row's attention.** A row goes the row path (`resolve_rows`, with
   its exact messages) when any of its values did not pass the fast checks, when it has no
   point, when it may match an existing shelter (by `noegle`, BBR building id or address, one
   query per batch), when its point lies in no municipality (at sea or near the coast; the
   boundaries are tested in memory with shapely) or outside the list's municipality, or when
   its duplicate key (`dublet_noegle`) was seen before in the run. The fast rows are therefore new
   shelters that the row path would also have staged as `opret`, with the same values.
3. **Write.** The fast rows' candidates (`ly.kandidat`: the values as `vaerdier`, every value
   as a change from nothing in `aendringer`, as the row path's create) go to the database with
   one `COPY` per batch. The source row itself (`kilde_vaerdier`) is kept for rejected rows
   and rows that go the row path.

Each batch is one transaction that also advances the run's `naeste_raekke`, so a killed run
resumes after its last committed batch, as the row path does. Rows of a batch that go the
row path are staged after the batch's fast rows: a row that the row path accepts as a new
shelter whose duplicate key a *later* fast row of the same batch also has keeps that later
row and is rejected as its duplicate (the row path alone would keep the earlier row).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import orjson
import pandas as pd
import psycopg
from psycopg import sql

from datamodel import crs as crsmod
from datamodel.rules import Problem, validate_properties
from datamodel.themes import Theme
from datamodel.themes.beskyttelsesrum import BETONDAEKNINGSGRAV, undertype_only_betondaekningsgrav
from loaders import staging

#: Lists shorter than this are staged row by row (`municipal_list.stage_run`); the
#: environment variable (a test hook) overrides it.
MIN_ROWS = 5_000
MIN_ROWS_ENV = "LY_IMPORT_BULK_MIN_ROWS"
#: A create takes this figure source (d_ly_pladser_kilde 2, kommunal liste) unless the list
#: gives one; the row path (`municipal_list`) uses the same constant.
KILDE_KOMMUNAL_LISTE = 2

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}$")
#: Targets the fast path does not convert: a row's point from coordinate or WKT columns, an
#: address to parse, an objekt_id key (the row path does; `municipal_list.SPECIAL_TARGETS`).
_NOT_FAST_TARGETS = {"x", "y", "lat", "lon", "wkt", "adresse", "objekt_id"}
#: What a row may match an existing object by (besides objekt_id), where the theme has it:
#: the object's key in another system, its BBR building, and its address.
KEY_FIELDS = ("noegle", "bbr_bygning_id")
ADDRESS_FIELDS = ("vejnavn", "husnr", "postnr")


# --- what a list import needs to know of a theme ----------------------------------------------

def kind_field(theme: Theme) -> str | None:
    """The attribute that says what kind of object a row is (a shelter's type): the one coded
    with the theme's own code list (`d_<temakode>_…`). Two objects at one address are told
    apart by it, and a complete list ends the objects of the kinds it has. None: the theme
    has none."""
    own = f"d_{theme.temakode}_"
    return next((f.name for f in theme.coded_fields if f.codelist.startswith(own)), None)


def figure_source(theme: Theme) -> tuple[str, str] | None:
    """(figure, the attribute recording where it came from) when the theme records the source
    of a report figure (`<figure>_kilde_kode`, code list d_ly_pladser_kilde): a list that
    gives the figure but not its source makes the list its source (`KILDE_KOMMUNAL_LISTE`)."""
    for fig in theme.figures:
        source = f"{fig.field}_kilde_kode"
        if source in theme.fields_by_name:
            return fig.field, source
    return None


def match_fields(theme: Theme) -> tuple[str, ...]:
    """The attributes a row is matched to existing objects by, as the row gives them."""
    kind = kind_field(theme)
    return tuple(n for n in (*KEY_FIELDS, *ADDRESS_FIELDS) if n in theme.fields_by_name) + (
        (kind,) if kind else ())


def _undertype_rule(record: pd.DataFrame) -> np.ndarray:
    return (record["undertype_kode"].isna()
            | record["beskyt_rum_kode"].eq(BETONDAEKNINGSGRAV)).to_numpy()


#: Theme rules (`Theme.rules`) with a whole-column form: per row whether it keeps the rule.
#: Any other rule is applied row by row to the rows still fast.
COLUMN_RULES = {undertype_only_betondaekningsgrav: _undertype_rule}


def _cross_field(record: pd.DataFrame, theme: Theme, fast: np.ndarray) -> None:
    """`rules.complete`'s cross-field rules on the fast rows (unmarked where one fails): the
    validity period's order, and the theme's own rules."""
    if theme.validity:
        start, end = theme.validity
        both = np.flatnonzero(fast & record[start].notna().to_numpy()
                              & record[end].notna().to_numpy())
        a, b = record[start].to_numpy(), record[end].to_numpy()
        fast[[i for i in both.tolist() if b[i] < a[i]]] = False
    for rule in theme.rules:
        if rule in COLUMN_RULES:
            fast &= COLUMN_RULES[rule](record)
            continue
        idx = np.flatnonzero(fast)
        for i, rec in zip(idx.tolist(), _records(record.iloc[idx], theme)):
            if rule(rec):
                fast[i] = False


@dataclass
class Plan:
    """What the fast path needs from the run: the column of each target, the standard values."""

    columns: dict[str, str]  # target -> source column
    standard: dict[str, Any]  # the mapping's defaults, validated
    convert: Callable[[str, Any], Any]  # municipal_list.convert with the run's mapping
    theme: Theme


def plan(source, ctx, convert: Callable[[str, Any, Any], Any]) -> Plan | None:
    """The fast path's plan for a run, or None when the file must go row by row (a table
    without a geometry column, coordinate, WKT or address columns, objekt_id keys, a CRS
    other than EPSG:25832 or CRS84, or too few rows)."""
    theme = ctx.theme
    frame = getattr(source, "frame", None)
    least = int(os.environ.get(MIN_ROWS_ENV) or MIN_ROWS)
    if frame is None or len(source.rows) < least or "geometry" not in frame.columns:
        return None
    if ctx.crs.srid != 25832 and not (ctx.crs.geographic and not ctx.crs.lat_first):
        return None
    columns: dict[str, str] = {}
    for column, target in ctx.targets.items():
        if target in _NOT_FAST_TARGETS:
            return None
        if target != "ignorer":
            columns[target] = column
    problems: list[Problem] = []
    standard = validate_properties(dict(ctx.mapping.standard), problems, theme=theme)
    if ctx.cvr_kode is not None:
        validate_properties({"cvr_kode": ctx.cvr_kode}, problems, theme=theme)
    if problems:
        return None
    return Plan(columns, standard, lambda name, value: convert(name, value, ctx.mapping), theme)


# --- columns -------------------------------------------------------------------------------

def _factorize(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Per row the index of its value among the column's distinct values (-1: no value)."""
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    return codes, np.asarray(uniques, dtype=object)


def _spread(codes: np.ndarray, ok_u: list[bool], values_u: list[Any]
            ) -> tuple[pd.Series, np.ndarray]:
    """Per-distinct results spread to the rows (a missing value: ok, no value)."""
    ok_u = np.append(np.asarray(ok_u, dtype=bool), True)  # index -1: the missing value
    values = np.empty(len(values_u) + 1, dtype=object)
    values[:-1] = values_u
    return pd.Series(values[codes], dtype=object), ok_u[codes]


def _per_distinct(name: str, col: pd.Series, conv: Callable[[str, Any], Any], theme: Theme
                  ) -> tuple[pd.Series, np.ndarray]:
    """Converted values and an ok-mask, the conversion run once per distinct value with the
    row path's own functions (exact, cheap for code lists and numbers)."""
    codes, uniques = _factorize(col)
    ok_u: list[bool] = []
    values_u: list[Any] = []
    for value in uniques:
        plain = value.item() if hasattr(value, "item") else value
        try:
            converted = conv(name, plain)
        except ValueError:
            ok_u.append(False)
            values_u.append(None)
            continue
        if converted is None:
            ok_u.append(True)
            values_u.append(None)
            continue
        problems: list[Problem] = []
        out = validate_properties({name: converted}, problems, theme=theme)
        ok_u.append(not problems)
        values_u.append(out.get(name))
    return _spread(codes, ok_u, values_u)


def _text(name: str, col: pd.Series, theme: Theme) -> tuple[pd.Series, np.ndarray]:
    """A free-text or UUID column: stripped ('' is no value), no NUL, within the length;
    checked once per distinct value."""
    f = theme.fields_by_name[name]
    codes, uniques = _factorize(col)
    limit = f.max_length or 0
    is_uuid = f.type == "uuid"
    match = _UUID.match
    ok_u: list[bool] = []
    values_u: list[Any] = []
    for v in uniques:
        if type(v) is not str:  # a number in a text column: the row path says why
            ok_u.append(False)
            values_u.append(None)
            continue
        # Python's own strip, as the row path's: the same whitespace, the same characters left.
        v = v.strip()
        if is_uuid:
            ok_u.append(v == "" or match(v) is not None)
            v = v.lower()
        else:
            ok_u.append("\x00" not in v and (not limit or len(v) <= limit))
        values_u.append(v or None)
    return _spread(codes, ok_u, values_u)


def _column(name: str, col: pd.Series, plan_: Plan) -> tuple[pd.Series, np.ndarray]:
    f = plan_.theme.fields_by_name[name]
    if f.type in ("string", "uuid") and (col.dtype == object
                                        or isinstance(col.dtype, pd.StringDtype)):
        return _text(name, col, plan_.theme)
    return _per_distinct(name, col, plan_.convert, plan_.theme)


@dataclass
class Batch:
    """One batch of rows: which go fast, their record columns, keys and points."""

    lo: int  # index of the first row in the source
    fast: np.ndarray  # bool per row of the batch
    record: pd.DataFrame  # writable columns (typed Python values) per row
    given: pd.DataFrame  # the match fields as the row gives them (no defaults), per row
    key: pd.Series  # dublet_noegle per row
    x: np.ndarray
    y: np.ndarray


def _points(frame: pd.DataFrame, ctx) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import shapely

    geoms = frame.geometry.values
    point = shapely.get_type_id(geoms) == 0
    x = np.where(point, shapely.get_x(geoms), np.nan)
    y = np.where(point, shapely.get_y(geoms), np.nan)
    if ctx.crs.srid != 25832:  # CRS84: inside ETRS89's area, then to EPSG:25832
        from pyproj import Transformer

        bx1, by1, bx2, by2 = crsmod.ETRS89_LONLAT_BOX
        inside = (x >= bx1) & (x <= bx2) & (y >= by1) & (y <= by2)
        x, y = Transformer.from_crs(ctx.crs.srid, 25832, always_xy=True).transform(x, y)
        x, y = np.where(inside, x, np.nan), np.where(inside, y, np.nan)
    x1, y1, x2, y2 = crsmod.DENMARK_25832_BOX
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(x) & np.isfinite(y) & (x >= x1) & (x <= x2) & (y >= y1) & (y <= y2)
    return x, y, ok


def convert_batch(source, ctx, plan_: Plan, lo: int, hi: int) -> Batch:
    """Convert rows lo..hi of the source column by column and mark the fast ones."""
    theme = plan_.theme
    frame = source.frame.iloc[lo:hi]
    n = hi - lo
    fast = np.ones(n, dtype=bool)
    props: dict[str, pd.Series] = {}
    for target, column in plan_.columns.items():
        col = frame[column]
        if target == "temakode":
            ok = col.isna() | col.astype(str).str.strip().isin(
                ["", str(theme.temakode), f"{theme.temakode}.0"])
            fast &= ok.to_numpy()
            continue
        values, ok = _column(target, col.reset_index(drop=True), plan_)
        fast &= ok
        props[target] = values
    record = pd.DataFrame(index=range(n))
    for f in theme.writable_fields:
        if f.name in props:
            s = props[f.name]
            if f.name in plan_.standard and plan_.standard[f.name] is not None:
                s = s.where(s.notna(), plan_.standard[f.name])
        else:
            s = pd.Series([plan_.standard.get(f.name)] * n, dtype=object)
        record[f.name] = s.astype(object)
    # The row path's create: a list's figure is its own source unless it says otherwise.
    sourced = figure_source(theme)
    if sourced is not None and sourced[1] not in plan_.standard:
        fig, src = sourced
        source_given = props[src].notna() if src in props \
            else pd.Series(False, index=record.index)
        record[src] = record[src].where(source_given | record[fig].isna(),
                                        KILDE_KOMMUNAL_LISTE)
    if ctx.cvr_kode is not None:
        record["cvr_kode"] = record["cvr_kode"].where(record["cvr_kode"].notna(), ctx.cvr_kode)
    # rules.complete: defaults, required fields, the cross-field rules.
    for f in theme.writable_fields:
        if f.default is not None:
            record[f.name] = record[f.name].where(record[f.name].notna(), f.default)
        if f.required:
            fast &= record[f.name].notna().to_numpy()
    _cross_field(record, theme, fast)
    x, y, point_ok = _points(frame, ctx)
    fast &= point_ok
    # The row path matches on the values the row gives, not on defaults (every match name
    # is a column, None where the theme lacks the attribute).
    names = dict.fromkeys((*KEY_FIELDS, *ADDRESS_FIELDS, *match_fields(theme)))
    given = pd.DataFrame({name: props[name] if name in props
                          else pd.Series([None] * n, dtype=object) for name in names})
    return Batch(lo, fast, record, given, _keys(record, x, y, theme), x, y)


def _keys(record: pd.DataFrame, x: np.ndarray, y: np.ndarray, theme: Theme) -> pd.Series:
    """`dublet_noegle` as the row path's create makes it (`noegle:`, else `adresse:`, else
    `punkt:`, the last two with the row's kind), each form built only for the rows that take
    it."""
    empty = pd.Series(None, index=record.index, dtype=object)

    def column(name: str | None) -> pd.Series:
        return record[name] if name in record.columns else empty

    keys = pd.Series(None, index=record.index, dtype=object)
    noegle = column("noegle")
    has_noegle = noegle.notna().to_numpy()
    keys[has_noegle] = "noegle:" + noegle[has_noegle].astype(str)
    rest = ~has_noegle
    if not rest.any():
        return keys
    kinds = column(kind_field(theme))
    vej, hus = column("vejnavn"), column("husnr")
    addressed = rest & (vej.notna() & hus.notna()).to_numpy()
    if addressed.any():
        keys[addressed] = (
            "adresse:" + vej[addressed].astype(str).str.casefold() + "|"
            + hus[addressed].astype(str).str.upper() + "|"
            + column("postnr")[addressed].map(lambda p: str(p) if p else "") + "|"
            + kinds[addressed].map(str))
    pointed = rest & ~addressed
    if pointed.any():
        with np.errstate(invalid="ignore"):
            rx = pd.Series(np.round(x[pointed])).map(lambda v: str(int(v)) if v == v else "nan")
            ry = pd.Series(np.round(y[pointed])).map(lambda v: str(int(v)) if v == v else "nan")
        kind = kinds[pointed].map(str).reset_index(drop=True)
        keys[pointed] = ("punkt:" + rx + ":" + ry + ":" + kind).to_numpy()
    return keys


# --- the database --------------------------------------------------------------------------

class Municipalities:
    """The municipal boundaries (`ly.kommune`, cut into parts of at most 64 vertices) in
    memory, to find the municipality of a batch's points at once (GEOS, through shapely)."""

    def __init__(self, cur):
        import shapely

        rows = cur.execute("SELECT kommunekode, ST_AsBinary(ST_Subdivide(geometri, 64)) "
                           "FROM ly.kommune").fetchall()
        self.codes = np.array([r[0] for r in rows], dtype=np.int64)
        self.tree = shapely.STRtree(shapely.from_wkb([bytes(r[1]) for r in rows]))

    def of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per point the lowest code of the municipalities it lies in (a border point lies in
        two), -1 where it lies in none."""
        import shapely

        none = np.iinfo(np.int64).max
        out = np.full(len(x), none, dtype=np.int64)
        if len(x) and len(self.codes):
            points, parts = self.tree.query(shapely.points(x, y), predicate="intersects")
            np.minimum.at(out, points, self.codes[parts])
        out[out == none] = -1
        return out


def address_match(theme: Theme) -> sql.Composed | None:
    """The join of rows `k(i, v, h, p, c)` (index, street name, house number, postal code,
    kind) with current objects `t` at that address (and of that kind, in the municipality
    given as two more parameters when not NULL); None when the theme has no address."""
    names = theme.fields_by_name
    if "vejnavn" not in names or "husnr" not in names:
        return None
    terms = [sql.SQL("lower(t.vejnavn) = lower(k.v) AND upper(t.husnr) = upper(k.h)")]
    if "postnr" in names:
        terms.append(sql.SQL("(k.p IS NULL OR t.postnr = k.p)"))
    kind = kind_field(theme)
    if kind:
        terms.append(sql.SQL("(k.c IS NULL OR t.{} = k.c)").format(sql.Identifier(kind)))
    terms.append(sql.SQL("(%s::int IS NULL OR t.beliggenhedskommune = %s::int)"))
    return sql.SQL("unnest(%s::int[], %s::text[], %s::text[], %s::int[], %s::int[]) "
                   "AS k(i, v, h, p, c) ON ") + sql.SQL(" AND ").join(terms)


def set_aside(cur, run_id: int, b: Batch, ctx, municipalities: "Municipalities") -> None:
    """Unmark fast rows that may match an existing object, lie outside the list's
    municipality or repeat a key seen before in the run (one query each, for the batch)."""
    theme = ctx.theme
    view = sql.Identifier("ly", theme.current_view)
    idx = np.flatnonzero(b.fast)
    if not len(idx):
        return
    rec = b.given.iloc[idx]
    keys = b.key.iloc[idx]
    dup_in_batch = keys.duplicated(keep="first").to_numpy()
    b.fast[idx[dup_in_batch]] = False
    noegle = [v for v in rec["noegle"] if v is not None]
    bbr = [v for v in rec["bbr_bygning_id"] if v is not None]
    taken: set[str] = set()
    if noegle:
        taken |= {f"n:{r}" for (r,) in cur.execute(sql.SQL(
            "SELECT noegle FROM {} WHERE noegle = ANY(%s::text[])").format(view), [noegle])}
    if bbr:
        taken |= {f"b:{r}" for (r,) in cur.execute(sql.SQL(
            "SELECT bbr_bygning_id::text FROM {} WHERE bbr_bygning_id = ANY(%s::uuid[])"
        ).format(view), [bbr])}
    seen = {k for (k,) in cur.execute(
        "SELECT dublet_noegle FROM ly.kandidat WHERE koersel_id = %s AND dublet_noegle = "
        "ANY(%s)", [run_id, list(keys)])}
    addressed: list[int] = []
    for i, n, u, k, v, h in zip(idx.tolist(), rec["noegle"].tolist(),
                                rec["bbr_bygning_id"].tolist(), keys.tolist(),
                                rec["vejnavn"].tolist(), rec["husnr"].tolist()):
        if (n is not None and f"n:{n}" in taken) or (u is not None and f"b:{u}" in taken) \
                or k in seen:
            b.fast[i] = False
        elif v is not None and h is not None:
            addressed.append(i)
    addressed = [i for i in addressed if b.fast[i]]
    join = address_match(theme)
    if addressed and join is not None:
        r = b.given.iloc[addressed]
        kind = kind_field(theme)
        kinds = [c or None for c in r[kind]] if kind else [None] * len(addressed)
        for (i,) in cur.execute(
                sql.SQL("SELECT DISTINCT k.i FROM {} t JOIN ").format(view) + join,
                [addressed, list(r["vejnavn"]), list(r["husnr"]),
                 [p or None for p in r["postnr"]], kinds,
                 ctx.kommunekode, ctx.kommunekode]).fetchall():
            b.fast[i] = False
    # A point in no municipality (at sea, or near the coast) or, for a municipality's list,
    # in another one goes the row path, which finds its municipality as `ly.kommune_ved` does.
    idx = np.flatnonzero(b.fast)
    kommune = municipalities.of(b.x[idx], b.y[idx])
    outside = kommune < 0 if ctx.kommunekode is None else kommune != ctx.kommunekode
    b.fast[idx[outside]] = False


def _records(rec: pd.DataFrame, theme: Theme) -> list[dict]:
    """The rows' records as dicts (field order as in the row path)."""
    names = [f.name for f in theme.writable_fields]
    columns = [rec[name].tolist() for name in names]
    return [dict(zip(names, values)) for values in zip(*columns)]


def write_fast(cur, run_id: int, b: Batch, theme: Theme) -> int:
    """The fast rows' candidates, written with one COPY: the record as `vaerdier`, every
    value given as a change from nothing as `aendringer` (as the row path's create)."""
    idx = np.flatnonzero(b.fast)
    if not len(idx):
        return 0
    records = _records(b.record.iloc[idx], theme)
    keys = b.key.iloc[idx].tolist()
    xs, ys = b.x[idx].tolist(), b.y[idx].tolist()
    dumps = orjson.dumps
    with cur.copy("COPY ly.kandidat (koersel_id, raekke, maal, handling, objekt_id, match, "
                  "dublet_noegle, vaerdier, aendringer, geometri) FROM STDIN") as copy:
        for i, record, key, x, y in zip(idx.tolist(), records, keys, xs, ys):
            changes = {k: [None, v] for k, v in record.items() if v is not None}
            copy.write_row((run_id, b.lo + i + 1, "ly", "opret", uuid.uuid4(), "ny", key,
                            dumps(record).decode(), dumps(changes).decode(),
                            f"SRID=25832;POINT({x:.3f} {y:.3f})"))
    return len(idx)


def stage(conn: psycopg.Connection, run_id: int, source, ctx, plan_: Plan,
          resolve_rows: Callable, *, batch_size: int, progress: staging.Progress) -> None:
    """Stage (or resume staging) a list with the fast path, a committed batch at a time."""
    staging.autocommit(conn)
    run = staging.get_run(conn, run_id)
    if run["status"] != "indlaeser":
        raise staging.RunError(f"run {run_id} is {run['status']}; only a run being staged "
                               "takes rows")
    n = len(source.rows)
    sleep = float(os.environ.get(staging.SLEEP_ENV) or 0)
    with conn.cursor() as cur:
        municipalities = Municipalities(cur)
    for lo in range(run["naeste_raekke"], n, batch_size):
        hi = min(n, lo + batch_size)
        b = convert_batch(source, ctx, plan_, lo, hi)
        with conn.transaction(), conn.cursor() as cur:
            set_aside(cur, run_id, b, ctx, municipalities)
            fast = write_fast(cur, run_id, b, ctx.theme)
            slow = [source.rows[lo + int(i)] for i in np.flatnonzero(~b.fast)]
            counts = staging.stage_items(cur, run_id, resolve_rows(cur, slow, ctx))
            for key in ("laest", "opret", "gyldige"):
                counts[key] = counts.get(key, 0) + fast
            staging._add_counters(conn, run_id, counts, hi - lo)
        progress.advance(hi - lo)
        if sleep:
            time.sleep(sleep)

