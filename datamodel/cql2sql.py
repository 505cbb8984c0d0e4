"""CQL2 filters (OGC API - Features Part 3) translated into PostGIS SQL.

`parse_filter` turns CQL2 text or CQL2 JSON into the normalised CQL2-JSON dict (parsing is
done by the `cql2` library); `to_sql` turns that dict into a boolean SQL expression
(`psycopg.sql.Composable` with `%s` placeholders) and its parameter list.

Safety rules:

* every literal of the filter is a bound parameter, with an explicit cast;
* property names only ever become `sql.Identifier` of a whitelisted column (`Queryable`);
* the size of a filter is bounded (length, nesting depth, number of nodes, number of
  coordinates). The text is also scanned *before* it reaches the `cql2` parser, whose
  recursive descent overflows the C stack (the process dies with SIGSEGV) on a few thousand
  nested parentheses or chained operators.

Supported (conformance classes of CQL2 1.0, OGC 21-065r2):

* basic-cql2: and, or, not, =, <>, <, <=, >, >=, isNull, boolean properties used as
  predicates, string/number/boolean/timestamp/date literals; booleans are ordered (false <
  true);
* advanced-comparison-operators: like, between, in (the pattern of LIKE is a string literal,
  or CASEI/ACCENTI of one, in which a backslash escapes `%`, `_` or a backslash and nothing
  else);
* case-insensitive-comparison: casei (as `lower()`);
* accent-insensitive-comparison: accenti (as `ly.unaccent()`, revision 0013: PostgreSQL's
  `unaccent` dictionary, IMMUTABLE), combinable with casei in either order;
* basic-spatial-functions(-plus) and spatial-functions: s_intersects, s_disjoint, s_contains,
  s_within, s_touches, s_crosses, s_overlaps, s_equals with any GeoJSON geometry or a bbox; a
  geographic bbox whose west edge exceeds its east edge crosses the antimeridian (CQL2 7.5.1)
  and is the union of the two boxes either side of it;
* temporal-functions: t_after, t_before, t_contains, t_disjoint, t_during, t_equals,
  t_finishedBy, t_finishes, t_intersects, t_meets, t_metBy, t_overlappedBy, t_overlaps,
  t_startedBy, t_starts on instants (date-time/date properties, TIMESTAMP/DATE literals)
  and intervals (INTERVAL of those, '..' for an open end); comparisons (=, <, ...) and
  between on temporal properties too;
* arithmetic: + - * / % div ^ on numeric properties, literals and arithmetic expressions,
  computed in `numeric`; see `_Compiler._arithmetic` for division by zero and magnitudes;
* property-property comparisons.

Beyond CQL2 1.0: S_DWITHIN(geometry, geometry, distance) is true where the two geometries lie
within `distance` metres of each other, planar in the storage CRS (EPSG:25832), as
`ST_DWithin` (which uses the spatial index); BETWEEN also takes strings.

Text ordering (<, <=, >, >=, BETWEEN on strings) uses the collation `TEXT_COLLATION` ("C":
Unicode code point order), whatever the database's default collation; = <> IN LIKE are
unchanged.

Refused with `FilterError`: array functions (a_*; no queryable is array-valued), unknown
functions, `= NULL` (use IS NULL), comparisons between incompatible types (named after the
property), division by a literal zero, a negative or non-numeric S_DWITHIN distance.

Dates compared with date-times are taken as midnight UTC of that day.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import cql2
from psycopg import sql

__all__ = [
    "TEXT_COLLATION",
    "FilterError",
    "Queryable",
    "parse_filter",
    "to_sql",
    "geometry_sql",
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_COORDINATES",
    "MAX_FILTER_LENGTH",
    "MAX_TEXT_OPERATORS",
]

MAX_DEPTH = 50  # nesting of operators (and of parentheses in CQL2 text)
MAX_NODES = 1000  # operators, properties and literals (a geometry literal counts as one)
MAX_COORDINATES = 10_000  # positions in all geometry literals of a filter together
MAX_FILTER_LENGTH = 1_000_000  # characters of the filter string
# Operators (AND, OR, NOT, LIKE, IN, BETWEEN, IS, DIV, = < > + - * / % ^) in CQL2 text,
# counted before parsing: the cql2 parser needs some 3-4 KiB of C stack per nested operator
# and ~8 KiB per parenthesis, so these limits keep it well inside a default 8 MiB thread stack.
MAX_TEXT_OPERATORS = 500
MAX_DENSIFIED_VERTICES = 20_000  # vertices ST_Segmentize may add to one geometry literal

#: The collation of text ordering comparisons (<, <=, >, >=, BETWEEN) in filters: "C" orders by
#: Unicode code point (PostgreSQL compares UTF-8 bytes, which is the same order), the same on
#: every server whatever its default collation or operating system locales (no ICU or glibc
#: version can change it). Other orderings of text (sortby) import it from here.
TEXT_COLLATION = "C"

TYPES = frozenset(
    {"integer", "number", "string", "boolean", "date-time", "date", "uuid", "geometry"}
)
_NUMERIC = frozenset({"integer", "number"})
_TEMPORAL = frozenset({"date-time", "date"})
_ORDERED = _NUMERIC | _TEMPORAL | {"string", "boolean"}  # <, <=, >, >= (false < true)
_BETWEEN = _NUMERIC | _TEMPORAL | {"string"}
_INT64_MAX = 2**63 - 1

# Where lon/lat may lie before being transformed to a storage CRS (ETRS89's area of use,
# generously, as in datamodel.crs.ETRS89_LONLAT_BOX): a transverse Mercator projection of a
# world-wide envelope would otherwise collapse onto its central meridian.
_ETRS89_LONLAT_BOX = (-16.1, 32.88, 40.18, 84.73)
_MERCATOR_LONLAT_BOX = (-180.0, -85.06, 180.0, 85.06)
_GEOGRAPHIC_SRIDS = frozenset({4326})
_MERCATOR_R = 6378137.0


@dataclass(frozen=True)
class Queryable:
    name: str  # public property name, e.g. "pladser"
    column: str  # SQL column name in the table/view
    type: str  # one of TYPES
    codes: frozenset[int] | None = None  # allowed codes; informative only


class FilterError(ValueError):
    """A filter that cannot be used. `field` is "filter", "filter-lang" or a property name."""

    def __init__(self, detail: str, field: str = "filter"):
        super().__init__(detail)
        self.detail = detail
        self.field = field

    def __str__(self) -> str:
        return self.detail


# ---------------------------------------------------------------------------------------
# Parsing


def parse_filter(text_or_json: str, lang: str | None) -> dict:
    """The normalised CQL2-JSON of a filter given as CQL2 text or CQL2 JSON.

    `lang` is "cql2-text", "cql2-json" or None (JSON if the string starts with "{").
    The result is a dict (or a bare boolean for the filters `true`/`false`).
    """
    if lang is not None:
        norm = lang.strip().lower()
        if norm not in ("cql2-text", "cql2-json"):
            raise FilterError(
                f"unsupported filter-lang '{lang[:40]}'; use cql2-text or cql2-json", "filter-lang"
            )
        lang = norm
    if not isinstance(text_or_json, str):
        raise FilterError("the filter must be a string")
    if len(text_or_json) > MAX_FILTER_LENGTH:
        raise FilterError(f"filter too long (more than {MAX_FILTER_LENGTH} characters)")
    if not text_or_json.strip():
        raise FilterError("empty filter")
    if lang is None:
        lang = "cql2-json" if text_or_json.lstrip().startswith("{") else "cql2-text"

    if lang == "cql2-json":
        try:
            raw = json.loads(text_or_json)
        except RecursionError:
            raise FilterError(f"filter nested too deeply (more than {MAX_DEPTH} levels)") from None
        except ValueError as e:
            raise FilterError(f"invalid CQL2 JSON: {e}") from None
        _check_size(raw)
        parse, what = cql2.parse_json, "CQL2 JSON"
    else:
        _prescan_text(text_or_json)
        parse, what = cql2.parse_text, "CQL2 text"
    try:
        expr = parse(text_or_json).to_json()
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except BaseException as e:  # cql2.ParseError, ValidationError, pyo3 PanicException
        raise FilterError(_parse_error_message(what, text_or_json, e)) from None
    _check_size(expr)
    return expr


# WKT keywords: inside their parentheses a "-" directly before a digit is a sign, not an
# operator (BBOX is not among them: its arguments are parsed as expressions).
_WKT_WORDS = frozenset({
    "POINT", "LINESTRING", "POLYGON", "MULTIPOINT", "MULTILINESTRING", "MULTIPOLYGON",
    "GEOMETRYCOLLECTION",
})
# Keyword operators: the cql2 parser recurses on chains of each of these as well (20,000 of
# `LIKE 'a'`, `IN (1)` or `div 1` in a row kill the process), so they count as operators.
_OPERATOR_WORDS = frozenset({"AND", "OR", "NOT", "LIKE", "IN", "BETWEEN", "IS", "DIV"})
_OPERATOR_CHARS = frozenset("=<>+-*/%^")
_TOO_COMPLEX = f"filter too complex (more than {MAX_TEXT_OPERATORS} operators)"


def _prescan_text(text: str) -> None:
    """Bound parenthesis depth and operator count of CQL2 text before the parser sees it."""
    depth = 0
    operators = 0
    wkt_depth: int | None = None  # parenthesis level where a WKT literal's body starts
    wkt_pending = False  # just read a WKT keyword (and maybe Z)
    word: list[str] = []
    i, n = 0, len(text)

    def end_word() -> None:
        nonlocal operators, wkt_pending
        if not word:
            return
        w = "".join(word).upper()
        word.clear()
        if w in _OPERATOR_WORDS:
            operators += 1
            if operators > MAX_TEXT_OPERATORS:
                raise FilterError(_TOO_COMPLEX)
        wkt_pending = w in _WKT_WORDS or (w == "Z" and wkt_pending)

    while i < n:
        c = text[i]
        if c.isalnum() or c in "_.:":
            word.append(c)
            i += 1
            continue
        end_word()
        if c == "'" or c == '"':  # quoted string or identifier; '' or "" escapes the quote
            j = i + 1
            while j < n:
                if text[j] == c:
                    if j + 1 < n and text[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
            wkt_pending = False
            continue
        if c in "([":
            depth += 1
            if depth > MAX_DEPTH:
                raise FilterError(f"filter nested too deeply (more than {MAX_DEPTH} levels)")
            if wkt_depth is None and wkt_pending:
                wkt_depth = depth
            wkt_pending = False
        elif c in ")]":
            if wkt_depth is not None and depth == wkt_depth:
                wkt_depth = None
            depth -= 1
        elif not c.isspace():
            wkt_pending = False
            if c in _OPERATOR_CHARS:
                sign = (c == "-" and wkt_depth is not None and i + 1 < n
                        and (text[i + 1].isdigit() or text[i + 1] == "."))
                if not sign:
                    operators += 1
                    if operators > MAX_TEXT_OPERATORS:
                        raise FilterError(_TOO_COMPLEX)
        i += 1
    end_word()


def _parse_error_message(what: str, text: str, exc: BaseException) -> str:
    msg = str(exc)
    pos = re.search(r"-->\s*(\d+):(\d+)", msg)
    expected = re.search(r"^\s*=\s*(.+)$", msg, re.MULTILINE)
    if pos:
        line, col = int(pos.group(1)), int(pos.group(2))
        lines = text.splitlines() or [""]
        near = lines[line - 1][col - 1:col + 19] if 0 < line <= len(lines) else ""
        out = f"{what} syntax error at line {line}, column {col}"
        out += f" near '{near}'" if near.strip() else " (at the end)"
        if expected:
            out += f": {expected.group(1).strip()}"
    else:
        first = msg.strip().splitlines()[0] if msg.strip() else type(exc).__name__
        if "did not match any variant" in first:
            first = "not a valid CQL2 expression"
        out = f"invalid {what}: {first}"
    return out if len(out) <= 300 else out[:297] + "..."


def _is_geometry_literal(d: dict) -> bool:
    return "bbox" in d or ("type" in d and ("coordinates" in d or "geometries" in d))


def _check_size(expr: Any, max_coordinates: int = MAX_COORDINATES) -> None:
    """Depth, node and coordinate limits, checked without recursion."""
    nodes = 0
    coords = 0
    stack: list[tuple[Any, int]] = [(expr, 1)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise FilterError(f"filter too complex (more than {MAX_NODES} nodes)")
        if depth > MAX_DEPTH:
            raise FilterError(f"filter nested too deeply (more than {MAX_DEPTH} levels)")
        if isinstance(node, dict):
            if _is_geometry_literal(node):
                coords += _count_positions(node, max_coordinates)
                if coords > max_coordinates:
                    raise FilterError(
                        f"geometry too large (more than {max_coordinates} coordinates; "
                        "LY_MAX_VERTICES)"
                    )
                continue
            for key in ("args", "interval"):
                value = node.get(key)
                if isinstance(value, list):
                    stack.extend((a, depth + 1) for a in value)
        elif isinstance(node, list):
            stack.extend((a, depth + 1) for a in node)


def _count_positions(geom: dict, cap: int = MAX_COORDINATES) -> int:
    """Number of positions in a GeoJSON geometry (or bbox), iteratively."""
    if "bbox" in geom:
        return 2
    count = 0
    stack: list[Any] = [geom]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "geometries" in item and isinstance(item["geometries"], list):
                stack.extend(item["geometries"])
            elif "coordinates" in item:
                stack.append(item["coordinates"])
        elif isinstance(item, list):
            if item and not isinstance(item[0], list):
                count += 1
            else:
                stack.extend(item)
            if count > cap:
                break
    return count


# ---------------------------------------------------------------------------------------
# Translation


def to_sql(
    expr: dict,
    queryables: dict[str, Queryable],
    *,
    filter_srid: int = 4326,
    flip_axes: bool = False,
    storage_srid: int = 25832,
    alias: str | None = None,
    max_vertices: int = MAX_COORDINATES,
) -> tuple[sql.Composable, list]:
    """A boolean SQL expression (with `%s` placeholders) and its parameters.

    `filter_srid`/`flip_axes` describe the coordinates of geometry literals (CRS84: 4326,
    False; EPSG:4326: 4326, True); they are transformed to `storage_srid` in SQL. `alias`
    qualifies the columns (e.g. "t" gives t."col"). `max_vertices` bounds the positions of
    all geometry literals together (the service passes LY_MAX_VERTICES).
    """
    _check_size(expr, max_vertices)
    compiler = _Compiler(queryables, filter_srid, flip_axes, storage_srid, alias)
    return _finalize(compiler.predicate(expr))


def geometry_sql(
    geometry: dict,
    *,
    filter_srid: int = 4326,
    flip_axes: bool = False,
    storage_srid: int = 25832,
    max_vertices: int = MAX_COORDINATES,
) -> tuple[sql.Composable, list]:
    """A GeoJSON geometry or `{"bbox": [...]}` as an SQL geometry in `storage_srid` and its
    parameters, exactly as a filter's geometry literal is built (validated, clipped, densified,
    transformed; a bbox may cross the antimeridian): for SQL beside a filter, e.g. ordering
    by distance (`t.geometri <-> g`) next to S_DWITHIN. Raises FilterError."""
    if not isinstance(geometry, dict) or not _is_geometry_literal(geometry):
        raise FilterError("not a GeoJSON geometry or bbox")
    _check_size(geometry, max_vertices)
    compiler = _Compiler({}, filter_srid, flip_axes, storage_srid, None)
    return _finalize(compiler._geometry_literal(geometry))


class _Param(sql.Composable):
    """A bound parameter with its value: `%s::cast`. Collected by `_finalize`, in the order
    the placeholders appear in the statement (so a parameter used twice is passed twice)."""

    def __init__(self, value: Any, cast: str):
        super().__init__(value)
        self.cast = cast

    def as_bytes(self, context: Any = None) -> bytes:
        return f"%s::{self.cast}".encode()

    def __eq__(self, other: Any) -> bool:
        return self is other

    __hash__ = object.__hash__


def _finalize(clause: sql.Composable) -> tuple[sql.Composable, list]:
    """Replace each `_Param` by a plain placeholder and collect the values in text order."""
    params: list = []

    def walk(node: sql.Composable) -> sql.Composable:
        if isinstance(node, _Param):
            params.append(node._obj)
            return sql.SQL(f"%s::{node.cast}")
        if isinstance(node, sql.Composed):
            return sql.Composed([walk(c) for c in node])
        return node

    out = walk(clause)
    return out, params


@dataclass
class _Operand:
    """A compiled value: SQL (property, casei(...), arithmetic) or a literal still to be
    bound."""

    kind: str  # a Queryable type, or for literals: "number", "null", "interval", "array"
    sql: sql.Composable | None = None  # None for literals not bound yet
    prop: str | None = None  # property name, for messages
    value: Any = None  # literal value (python)
    folds: tuple[str, ...] = ()  # "casei"/"accenti" applied to a string, innermost first
    # arithmetic: bounds of log10|value| for a non-zero value (upper, lower)
    magnitude: tuple[float, float] | None = None

    @property
    def is_literal(self) -> bool:
        return self.sql is None


_COMPARISONS = {"=": "=", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_SPATIAL = {
    "s_intersects": "ST_Intersects",
    "s_disjoint": "ST_Disjoint",
    "s_contains": "ST_Contains",
    "s_within": "ST_Within",
    "s_touches": "ST_Touches",
    "s_crosses": "ST_Crosses",
    "s_overlaps": "ST_Overlaps",
    "s_equals": "ST_Equals",
}
# Allen's relations on [s1, e1] (first argument) and [s2, e2] (second), as in CQL2.
_TEMPORAL_OPS = {
    "t_after": ["{s1} > {e2}"],
    "t_before": ["{e1} < {s2}"],
    "t_contains": ["{s1} < {s2}", "{e1} > {e2}"],
    "t_disjoint": ["NOT ({s1} <= {e2} AND {e1} >= {s2})"],
    "t_during": ["{s1} > {s2}", "{e1} < {e2}"],
    "t_equals": ["{s1} = {s2}", "{e1} = {e2}"],
    "t_finishedby": ["{s1} < {s2}", "{e1} = {e2}"],
    "t_finishes": ["{s1} > {s2}", "{e1} = {e2}"],
    "t_intersects": ["{s1} <= {e2}", "{e1} >= {s2}"],
    "t_meets": ["{e1} = {s2}"],
    "t_metby": ["{s1} = {e2}"],
    "t_overlappedby": ["{s1} > {s2}", "{s1} < {e2}", "{e1} > {e2}"],
    "t_overlaps": ["{s1} < {s2}", "{e1} > {s2}", "{e1} < {e2}"],
    "t_startedby": ["{s1} = {s2}", "{e1} > {e2}"],
    "t_starts": ["{s1} = {s2}", "{e1} < {e2}"],
}
_UNSUPPORTED = {
    name: "array functions are not supported (no queryable is array-valued)"
    for name in ("a_equals", "a_contains", "a_containedby", "a_overlaps")
}
_FOLDS = {"casei": "lower", "accenti": "ly.unaccent"}  # revision 0013 made ly.unaccent
_ARITHMETIC = frozenset({"+", "-", "*", "/", "%", "div", "^"})
# Arithmetic is computed in `numeric`, which holds up to 131,072 digits before the decimal
# point and raises an error (not a NULL) beyond them. Each arithmetic expression's magnitude is
# bounded before it reaches the database (log10 of its largest absolute value, and of its
# smallest non-zero one) and refused past _MAX_MAGNITUDE. Properties are taken to hold values
# of at most bigint's (integers) or a double's (numbers) range.
_MAX_MAGNITUDE = 100_000.0
_MIN_MAGNITUDE = -16_383.0  # numeric's smallest non-zero value is 1e-16383
_PROPERTY_MAGNITUDE = {"integer": (18.97, 0.0), "number": (308.26, -324.0)}
_POWER_MAGNITUDE = 1000  # a power beyond 10^1000 in magnitude is NULL (see _power)
_LOG10_2 = math.log10(2)
_METRIC_SRIDS = range(25828, 25839)  # ETRS89 / UTM zones 28N..38N: S_DWITHIN's metres
_MERCATOR_HALF_WIDTH = math.pi * _MERCATOR_R

_TS_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$"
)
_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def _parse_timestamp(s: Any, field: str) -> datetime:
    m = _TS_RE.match(s) if isinstance(s, str) else None
    if not m:
        raise FilterError(
            f"invalid timestamp {str(s)[:40]!r}; use e.g. 2024-01-31T12:00:00Z", field
        )
    y, mo, d, h, mi, sec, frac, tz = m.groups()
    try:
        if tz in ("Z", "z"):
            tzinfo = timezone.utc
        else:
            sign = 1 if tz[0] == "+" else -1
            tzinfo = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
        micro = int((frac or "0")[:6].ljust(6, "0"))
        moment = datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec), micro,
                          tzinfo=tzinfo)
    except ValueError:
        raise FilterError(f"invalid timestamp {s[:40]!r}", field) from None
    try:
        moment.astimezone(timezone.utc)
    except OverflowError:
        raise FilterError(f"timestamp {s[:40]!r} lies outside the years 1-9999 (UTC)",
                          field) from None
    return moment


def _parse_date(s: Any, field: str) -> date:
    m = _DATE_RE.match(s) if isinstance(s, str) else None
    try:
        if m:
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        pass
    raise FilterError(f"invalid date {str(s)[:40]!r}; use e.g. 2024-01-31", field)


def _check_pattern(node: Any) -> None:
    """A LIKE pattern is a string literal, or CASEI/ACCENTI of one (CQL2's patternExpression):
    `%` and `_` are wildcards, and a backslash makes the next `%`, `_` or backslash literal.
    Anything else after a backslash, or a backslash at the end, is refused (PostgreSQL would
    drop the backslash, or fail on the last one). Neither lower() nor unaccent() changes `%`,
    `_` or a backslash."""
    while (isinstance(node, dict) and str(node.get("op", "")).lower() in _FOLDS
           and isinstance(node.get("args"), list) and len(node["args"]) == 1):
        node = node["args"][0]
    if not isinstance(node, str):
        raise FilterError("the pattern of LIKE must be a string literal (or CASEI/ACCENTI of "
                          "one), not a property")
    i = 0
    while i < len(node):
        if node[i] == "\\":
            if i + 1 == len(node):
                raise FilterError("a LIKE pattern must not end in a backslash (write \\\\ for "
                                  "a backslash)")
            if node[i + 1] not in "%_\\":
                raise FilterError(f"in a LIKE pattern a backslash escapes %, _ or a backslash, "
                                  f"not {node[i + 1]!r} (write \\\\ for a backslash)")
            i += 2
        else:
            i += 1


def _op_name(node: dict) -> str:
    op = node.get("op")
    if not isinstance(op, str):
        raise FilterError("invalid CQL2 expression: 'op' must be a string")
    return op.lower()


def _args(node: dict) -> list:
    args = node.get("args")
    if not isinstance(args, list):
        raise FilterError(f"invalid CQL2 expression: '{node.get('op')}' needs a list of args")
    return args


class _Compiler:
    def __init__(self, queryables, filter_srid, flip_axes, storage_srid, alias):
        self.queryables: dict[str, Queryable] = queryables
        self.filter_srid = int(filter_srid)
        self.flip = bool(flip_axes)
        self.storage_srid = int(storage_srid)
        self.alias = alias

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _param(value: Any, cast: str) -> sql.Composable:
        return _Param(value, cast)

    def _column(self, name: Any) -> _Operand:
        if not isinstance(name, str):
            raise FilterError("invalid CQL2 expression: a property name must be a string")
        q = self.queryables.get(name)
        if q is None:
            shown = name if len(name) <= 60 else name[:57] + "..."
            raise FilterError(f"unknown queryable '{shown}'", shown)
        if q.type not in TYPES:
            raise FilterError(f"queryable '{name}' has an unsupported type", name)
        ident = sql.Identifier(self.alias, q.column) if self.alias else sql.Identifier(q.column)
        return _Operand(kind=q.type, sql=ident, prop=name)

    @staticmethod
    def _arity(op: str, args: list, n: int) -> None:
        if len(args) != n:
            raise FilterError(f"{op.upper()} takes {n} argument{'s' if n != 1 else ''}")

    # -- predicates ----------------------------------------------------------------------

    def predicate(self, node: Any) -> sql.Composable:
        if isinstance(node, bool):
            return self._param(node, "boolean")
        if not isinstance(node, dict):
            raise FilterError(f"not a condition: {json.dumps(node, default=str)[:60]}")
        if "property" in node and "op" not in node:
            col = self._column(node["property"])
            if col.kind != "boolean":
                raise FilterError(
                    f"property '{col.prop}' is not a boolean and cannot be used as a condition",
                    col.prop,
                )
            return sql.SQL("({})").format(col.sql)
        if "op" not in node:
            raise FilterError(f"not a condition: {json.dumps(node, default=str)[:60]}")
        op = _op_name(node)
        args = _args(node)
        if op in ("and", "or"):
            if len(args) < 2:
                raise FilterError(f"{op.upper()} needs at least 2 arguments")
            joiner = sql.SQL(" AND " if op == "and" else " OR ")
            return sql.SQL("({})").format(joiner.join(self.predicate(a) for a in args))
        if op == "not":
            self._arity(op, args, 1)
            return sql.SQL("(NOT {})").format(self.predicate(args[0]))
        if op in _COMPARISONS:
            self._arity(op, args, 2)
            return self._comparison(op, args)
        if op == "isnull":
            self._arity("isNull", args, 1)
            a = self.operand(args[0])
            if a.is_literal:
                raise FilterError("IS NULL needs a property")
            return sql.SQL("({} IS NULL)").format(a.sql)
        if op == "like":
            self._arity(op, args, 2)
            return self._like(args)
        if op == "between":
            self._arity(op, args, 3)
            return self._between(args)
        if op == "in":
            self._arity(op, args, 2)
            return self._in(args)
        if op in _SPATIAL:
            self._arity(op, args, 2)
            a, b = (self._geometry(x, op) for x in args)
            return sql.SQL("{}({}, {})").format(sql.SQL(_SPATIAL[op]), a, b)
        if op == "s_dwithin":
            self._arity(op, args, 3)
            return self._dwithin(args)
        if op in _TEMPORAL_OPS:
            self._arity(op, args, 2)
            return self._temporal(op, args)
        if op in _ARITHMETIC or op in _FOLDS:
            raise FilterError(f"{'an arithmetic expression' if op in _ARITHMETIC else op.upper()}"
                              " is a value, not a condition: compare it with something")
        raise self._unknown(op)

    def _unknown(self, op: str) -> FilterError:
        if op in _UNSUPPORTED:
            return FilterError(_UNSUPPORTED[op])
        if op in _FOLDS or op in _ARITHMETIC or op.startswith(("s_", "t_", "a_")):
            return FilterError(f"{op.upper()} is not supported here")
        return FilterError(f"unknown function or operator '{op[:40]}'")

    # -- operands ------------------------------------------------------------------------

    def operand(self, node: Any) -> _Operand:
        """A scalar operand: property, casei(...)/accenti(...), arithmetic, or literal (bound
        later)."""
        if isinstance(node, bool):
            return _Operand(kind="boolean", value=node)
        if isinstance(node, (int, float)):
            if not math.isfinite(node):
                raise FilterError("numbers must be finite")
            return _Operand(kind="number", value=node)
        if isinstance(node, str):
            if "\x00" in node:
                raise FilterError("strings must not contain NUL characters")
            return _Operand(kind="string", value=node)
        if node is None:
            return _Operand(kind="null")
        if isinstance(node, list):
            return _Operand(kind="array", value=node)
        if not isinstance(node, dict):
            raise FilterError("invalid CQL2 expression")
        if "property" in node:
            return self._column(node["property"])
        if "timestamp" in node:
            return _Operand(kind="date-time", value=_parse_timestamp(node["timestamp"], "filter"))
        if "date" in node:
            return _Operand(kind="date", value=_parse_date(node["date"], "filter"))
        if "interval" in node:
            return _Operand(kind="interval", value=node["interval"])
        if _is_geometry_literal(node):
            return _Operand(kind="geometry", value=node)
        if "op" in node:
            op = _op_name(node)
            args = _args(node)
            if op in _FOLDS:
                self._arity(op, args, 1)
                inner = self.operand(args[0])
                if inner.kind != "string":
                    who = f"property '{inner.prop}'" if inner.prop else "the argument"
                    raise FilterError(f"{op.upper()} needs a string; {who} is {_a(inner.kind)}",
                                      inner.prop or "filter")
                inner = self._bind(inner, "string", None)
                return _Operand(kind="string", sql=_fold(op, inner.sql), prop=inner.prop,
                                folds=inner.folds + (op,))
            if op in _ARITHMETIC:
                self._arity(op, args, 2)
                return self._arithmetic(op, args)
            raise self._unknown(op)
        raise FilterError(f"invalid CQL2 expression: {json.dumps(node, default=str)[:60]}")

    def _bind(self, a: _Operand, target: str, prop: str | None) -> _Operand:
        """Bind literal `a` as a value of type `target` (the type of property `prop`)."""
        if not a.is_literal:
            return a
        field = prop or "filter"
        what = f"property '{prop}'" if prop else "the comparison"
        v = a.value
        if a.kind == "null":
            raise FilterError("NULL is not a value; use IS NULL / IS NOT NULL", field)
        if target in _NUMERIC:
            if a.kind != "number":
                raise FilterError(f"{what} is {_a(target)}; {_shown(a)} is not a number", field)
            whole = isinstance(v, int) or v.is_integer()
            if target == "integer" and whole and abs(v) <= _INT64_MAX:
                # cql2 gives every number as a float: 10.0 is the integer 10
                s = self._param(int(v), "bigint")
            else:
                # compared numerically (pladser > 10.5 is pladser >= 11), never rounded
                s = self._param(Decimal(v) if isinstance(v, int) else Decimal(repr(v)),
                                "numeric")
        elif target == "string":
            if a.kind != "string":
                raise FilterError(f"{what} is a string; {_shown(a)} is not a string", field)
            s = self._param(v, "text")
        elif target == "boolean":
            if a.kind != "boolean":
                raise FilterError(f"{what} is a boolean; {_shown(a)} is not true/false", field)
            s = self._param(v, "boolean")
        elif target == "uuid":
            if a.kind != "string":
                raise FilterError(f"{what} is a UUID; {_shown(a)} is not a UUID string", field)
            try:
                u = uuid.UUID(v)
            except ValueError:
                raise FilterError(f"{what} is a UUID; {_shown(a)} is not a UUID", field) from None
            s = self._param(u, "uuid")
        elif target in _TEMPORAL:
            if a.kind == "date-time":
                s = self._param(a.value, "timestamptz")
            elif a.kind == "date":
                s = self._param(a.value, "date")
            else:
                hint = "TIMESTAMP('2024-01-31T12:00:00Z')" if target == "date-time" \
                    else "DATE('2024-01-31')"
                raise FilterError(f"{what} is {_a(target)}; compare it with {hint}, "
                                  f"not {_shown(a)}", field)
            return _Operand(kind=a.kind, sql=s)
        elif target == "geometry":
            raise FilterError(f"{what} is a geometry; use a spatial function such as "
                              f"S_INTERSECTS or S_EQUALS", field)
        else:
            raise FilterError(f"{_shown(a)} cannot be used here", field)
        return _Operand(kind=target, sql=s)

    def _pair(self, a: _Operand, b: _Operand, opname: str) -> tuple[_Operand, _Operand]:
        """Bind two operands of a binary comparison against each other's type."""
        for x in (a, b):
            if x.kind in ("interval", "array"):
                raise FilterError(f"{_a(x.kind)} cannot be used with {opname}")
        if a.is_literal and b.is_literal:
            if a.kind == "null" or b.kind == "null":
                raise FilterError("NULL is not a value; use IS NULL / IS NOT NULL")
            target = "number" if a.kind == "number" else a.kind
            return self._bind(a, target, None), self._bind(b, target, None)
        if a.is_literal:
            return self._bind_to(a, b), b
        if b.is_literal:
            return a, self._bind_to(b, a)
        # property (or casei, accenti, arithmetic) against property
        if a.kind == b.kind or {a.kind, b.kind} <= _NUMERIC or {a.kind, b.kind} <= _TEMPORAL:
            if a.kind == "geometry":
                raise FilterError(f"property '{a.prop}' is a geometry; use a spatial function "
                                  f"such as S_EQUALS", a.prop or "filter")
            return a, b
        raise FilterError(
            f"cannot compare {_a(a.kind)} property '{a.prop}' with {_a(b.kind)} "
            f"property '{b.prop}'", b.prop or "filter")

    def _bind_to(self, lit: _Operand, ref: _Operand) -> _Operand:
        """Bind a literal against a property (or casei/accenti) operand: CASEI(navn) = 'Ly'
        compares lower(navn) with lower('Ly'), ACCENTI(navn) = 'Ærø' unaccent(navn) with
        unaccent('Ærø') (the literal gets the property's folds, in the same order)."""
        bound = self._bind(lit, ref.kind, ref.prop)
        if ref.folds and bound.kind == "string":
            s = bound.sql
            for f in ref.folds:
                s = _fold(f, s)
            bound = _Operand(kind="string", sql=s, folds=ref.folds)
        return bound

    def _comparison(self, op: str, args: list) -> sql.Composable:
        a, b = self._pair(self.operand(args[0]), self.operand(args[1]), op)
        if op not in ("=", "<>"):
            for x in (a, b):
                if x.kind not in _ORDERED:
                    raise FilterError(f"{op} cannot be used with {_a(x.kind)}"
                                      + (f" (property '{x.prop}')" if x.prop else ""),
                                      x.prop or "filter")
        left, right = self._unify_many([a, b])
        if op not in ("=", "<>") and a.kind == "string":
            left, right = _collated(left), _collated(right)
        return sql.SQL("({} {} {})").format(left, sql.SQL(_COMPARISONS[op]), right)

    def _like(self, args: list) -> sql.Composable:
        a, b = self.operand(args[0]), self.operand(args[1])
        for x in (a, b):
            if x.kind not in ("string",):
                who = f"property '{x.prop}'" if x.prop else _shown(x)
                raise FilterError(f"LIKE needs strings; {who} is {_a(x.kind)}", x.prop or "filter")
        _check_pattern(args[1])
        a, b = self._pair(a, b, "LIKE")
        return sql.SQL("({} LIKE {})").format(a.sql, b.sql)

    def _against(self, ref: _Operand, others: list[_Operand], opname: str) -> list[_Operand]:
        """Bind `ref` (if a literal) and then each of `others` against it."""
        if ref.is_literal:
            if ref.kind in ("interval", "array", "null", "geometry"):
                raise FilterError(f"{_a(ref.kind)} cannot be used with {opname}")
            ref = self._bind(ref, ref.kind, None)
        out = [ref]
        for o in others:
            if o.kind in ("interval", "array"):
                raise FilterError(f"{_a(o.kind)} cannot be used with {opname}")
            out.append(self._pair(ref, o, opname)[1])
        return out

    @staticmethod
    def _unify_many(parts: list[_Operand]) -> list[sql.Composable]:
        """Dates among date-times become midnight UTC."""
        kinds = {p.kind for p in parts}
        if {"date", "date-time"} <= kinds:
            return [_as_timestamptz(p.sql) if p.kind == "date" else p.sql for p in parts]
        return [p.sql for p in parts]

    def _between(self, args: list) -> sql.Composable:
        ops = [self.operand(v) for v in args]
        ref = next((o for o in ops if not o.is_literal), ops[0])
        kind = ref.kind
        if kind not in _BETWEEN:
            raise FilterError("BETWEEN needs numbers, strings, dates or timestamps; "
                              f"{_shown(ref)} is {_a(kind)}", ref.prop or "filter")
        bound = self._against(ref, [o for o in ops if o is not ref], "BETWEEN")
        # back in argument order
        position = next(i for i, o in enumerate(ops) if o is ref)
        rest = iter(bound[1:])
        ordered = [bound[0] if i == position else next(rest) for i in range(3)]
        parts = self._unify_many(ordered)
        if kind == "string":
            parts = [_collated(p) for p in parts]
        return sql.SQL("({} BETWEEN {} AND {})").format(*parts)

    def _in(self, args: list) -> sql.Composable:
        a = self.operand(args[0])
        if not isinstance(args[1], list):
            raise FilterError("IN needs a list of values")
        if not args[1]:
            raise FilterError("IN needs at least one value")
        if a.kind == "geometry":
            raise FilterError(f"IN cannot be used with geometry property '{a.prop}'",
                              a.prop or "filter")
        parts = self._against(a, [self.operand(item) for item in args[1]], "IN")
        sqls = self._unify_many(parts)
        return sql.SQL("({} IN ({}))").format(sqls[0], sql.SQL(", ").join(sqls[1:]))

    # -- arithmetic ----------------------------------------------------------------------

    def _arithmetic(self, op: str, args: list) -> _Operand:
        """+ - * / % div ^ in `numeric` (so 7 / 2 is 3.5; div truncates towards zero, % takes
        the sign of the dividend). A NULL operand gives NULL. Dividing by zero: a literal 0
        divisor is refused here; any other divisor goes through NULLIF(d, 0), so a row whose
        divisor is 0 gives NULL (the comparison is unknown, the row does not match) instead of
        an error. Magnitudes are bounded (see _MAX_MAGNITUDE) so numeric never overflows."""
        a, b = (self._number(x, op) for x in args)
        if op in ("/", "%", "div") and b.is_literal and b.value == 0:
            raise FilterError(f"division by zero: the divisor of {op} is 0")
        (ua, la), (ub, lb) = a.magnitude, b.magnitude
        if op in ("+", "-"):
            upper, lower = max(ua, ub) + _LOG10_2, _MIN_MAGNITUDE
        elif op == "*":
            upper, lower = ua + ub, la + lb
        elif op == "/":
            upper, lower = ua - lb, la - ub
        elif op == "div":
            upper, lower = ua - lb, 0.0
        elif op == "%":
            upper, lower = min(ua, ub), _MIN_MAGNITUDE
            if ua - lb > _MAX_MAGNITUDE:  # the quotient it is computed from
                upper = ua - lb
        else:  # ^: bounded by _power
            upper, lower = float(_POWER_MAGNITUDE), _MIN_MAGNITUDE
        if not upper <= _MAX_MAGNITUDE:  # also NaN
            raise FilterError(f"arithmetic result too large (it could exceed "
                              f"10^{int(_MAX_MAGNITUDE)}); simplify the expression")
        lower = max(lower, _MIN_MAGNITUDE)
        x, y = self._numeric(a), self._numeric(b)
        if op in ("+", "-", "*"):
            out = sql.SQL("({} {} {})").format(x, sql.SQL(op), y)
        elif op == "/":
            out = sql.SQL("({} / NULLIF({}, 0))").format(x, y)
        elif op == "%":
            out = sql.SQL("mod({}, NULLIF({}, 0))").format(x, y)
        elif op == "div":
            out = sql.SQL("div({}, NULLIF({}, 0))").format(x, y)
        else:
            out = _power(x, y)
        return _Operand(kind="number", sql=out, magnitude=(upper, lower))

    def _number(self, node: Any, op: str) -> _Operand:
        """An operand of arithmetic: a number literal, a numeric property or arithmetic."""
        x = self.operand(node)
        if x.magnitude is not None:
            return x
        if x.kind == "number" and x.is_literal:
            v = abs(x.value)
            mag = (math.log10(v), math.log10(v)) if v else (-math.inf, math.inf)
            return _Operand(kind="number", value=x.value, magnitude=mag)
        if x.kind in _NUMERIC and not x.is_literal:
            return _Operand(kind=x.kind, sql=x.sql, prop=x.prop,
                            magnitude=_PROPERTY_MAGNITUDE[x.kind])
        who = f"property '{x.prop}'" if x.prop else _shown(x)
        raise FilterError(f"arithmetic ({op}) needs numbers; {who} is {_a(x.kind)}",
                          x.prop or "filter")

    def _numeric(self, x: _Operand) -> sql.Composable:
        if x.is_literal:
            v = x.value
            return self._param(Decimal(v) if isinstance(v, int) else Decimal(repr(v)), "numeric")
        if x.magnitude is not None and x.prop is None:  # arithmetic: numeric already
            return x.sql
        return sql.SQL("({})::numeric").format(x.sql)  # integer or double columns too

    # -- temporal ------------------------------------------------------------------------

    def _instant(self, node: Any) -> _Operand:
        """An instant, bound: temporal property, TIMESTAMP/DATE literal, or a string."""
        if isinstance(node, str):
            if _DATE_RE.match(node):
                x = _Operand(kind="date", value=_parse_date(node, "filter"))
            else:
                x = _Operand(kind="date-time", value=_parse_timestamp(node, "filter"))
        else:
            x = self.operand(node)
        if x.kind not in _TEMPORAL:
            raise FilterError(f"temporal functions need dates or timestamps; {_shown(x)} is "
                              f"{_a(x.kind)}", x.prop or "filter")
        return self._bind(x, x.kind, None)

    def _period(self, node: Any) -> tuple[_Operand, _Operand]:
        if not (isinstance(node, dict) and "interval" in node):
            x = self._instant(node)
            return x, x
        bounds = node["interval"]
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise FilterError("INTERVAL needs a start and an end")
        ends = [None if b == ".." else self._instant(b) for b in bounds]
        kinds = {e.kind for e in ends if e is not None}
        kind = "date" if kinds == {"date"} else "date-time"
        cast = "date" if kind == "date" else "timestamptz"
        start, end = (
            e if e is not None else _Operand(kind=kind, sql=self._param(inf, cast))
            for e, inf in zip(ends, ("-infinity", "infinity"))
        )
        return start, end

    def _temporal(self, op: str, args: list) -> sql.Composable:
        (s1, e1), (s2, e2) = self._period(args[0]), self._period(args[1])
        names = dict(zip(("s1", "e1", "s2", "e2"), self._unify_many([s1, e1, s2, e2])))
        conds = [sql.SQL(c).format(**names) for c in _TEMPORAL_OPS[op]]
        return sql.SQL("({})").format(sql.SQL(" AND ").join(conds))

    # -- spatial -------------------------------------------------------------------------

    def _geometry(self, node: Any, op: str) -> sql.Composable:
        x = self.operand(node)
        if x.kind != "geometry":
            who = f"property '{x.prop}'" if x.prop else _shown(x)
            raise FilterError(f"{op.upper()} needs geometries; {who} is {_a(x.kind)}",
                              x.prop or "filter")
        if not x.is_literal:
            return x.sql
        # An expression of constants: planned with the actual values, PostgreSQL folds it once.
        return self._geometry_literal(x.value)

    def _dwithin(self, args: list) -> sql.Composable:
        """S_DWITHIN(a, b, distance): a and b lie within `distance` metres of each other,
        planar in the storage CRS (ST_DWithin, which the spatial index serves)."""
        if self.storage_srid not in _METRIC_SRIDS:
            raise FilterError("S_DWITHIN needs a storage CRS in metres (ETRS89 / UTM)")
        a, b = (self._geometry(x, "s_dwithin") for x in args[:2])
        d = args[2]
        if isinstance(d, bool) or not isinstance(d, (int, float)):
            shown = _shown(self.operand(d)) if not isinstance(d, dict) or "op" not in d \
                else "an expression"
            raise FilterError("the third argument of S_DWITHIN is the distance in metres and "
                              f"must be a number, not {shown}")
        if not math.isfinite(d):
            raise FilterError("the distance of S_DWITHIN must be a finite number of metres")
        if d < 0:
            raise FilterError(f"the distance of S_DWITHIN must not be negative (got {d:g})")
        return sql.SQL("ST_DWithin({}, {}, {})").format(a, b, self._param(float(d), "float8"))

    def _geometry_literal(self, geom: dict) -> sql.Composable:
        srid = self.filter_srid
        # lonlat_pts: the vertex sequences of the literal (consecutive vertices form edges;
        # a point is a sequence of one), in x/y (lon/lat) order of filter_srid
        if "bbox" in geom:
            base, lonlat_pts = self._bbox(geom["bbox"])  # already in x/y order
        else:
            lonlat_pts = _validate_geojson(geom)
            base = sql.SQL("ST_Force2D(ST_SetSRID(ST_GeomFromGeoJSON({}), {}))").format(
                self._param(json.dumps(geom), "text"), self._param(srid, "int"))
            if self.flip:
                base = sql.SQL("ST_FlipCoordinates({})").format(base)
                lonlat_pts = [[(y, x) for x, y in part] for part in lonlat_pts]
        self._check_range(lonlat_pts)
        if srid == self.storage_srid:
            return base
        clip = _clip_box(self.storage_srid)
        if clip is None or (srid not in _GEOGRAPHIC_SRIDS and srid != 3857):
            return sql.SQL("ST_Transform({}, {})").format(
                base, self._param(self.storage_srid, "int"))
        g = base
        if srid == 3857:
            length_m = _path_length(lonlat_pts)
            if length_m > 0:
                seg = max(1000.0, length_m / MAX_DENSIFIED_VERTICES)
                g = sql.SQL("ST_Segmentize({}, {})").format(g, self._param(seg, "float8"))
            g = sql.SQL("ST_Transform({}, 4326)").format(g)
            lonlat_pts = [[_mercator_to_lonlat(p) for p in part] for part in lonlat_pts]
        xs = [p[0] for part in lonlat_pts for p in part]
        ys = [p[1] for part in lonlat_pts for p in part]
        if xs and not (min(xs) >= clip[0] and min(ys) >= clip[1] and max(xs) <= clip[2]
                       and max(ys) <= clip[3]):
            g = sql.SQL("ST_ClipByBox2D({}, ST_MakeEnvelope({}, {}, {}, {}, 4326))").format(
                g, *(self._param(c, "float8") for c in clip))
            # clipping adds at most the perimeter of the clip box to each part's length
        length_deg = _path_length(lonlat_pts)
        if length_deg > 0:
            # edges are straight lines in lon/lat: densify so they stay near-straight there
            seg = max(0.01, 3 * length_deg / MAX_DENSIFIED_VERTICES)
            g = sql.SQL("ST_Segmentize({}, {})").format(g, self._param(seg, "float8"))
        return sql.SQL("ST_Transform({}, {})").format(g, self._param(self.storage_srid, "int"))

    def _bbox(self, bbox: Any) -> tuple[sql.Composable, list]:
        if (not isinstance(bbox, list) or len(bbox) not in (4, 6)
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           and math.isfinite(v) for v in bbox)):
            raise FilterError("BBOX needs 4 or 6 finite numbers")
        if len(bbox) == 6:
            bbox = [bbox[0], bbox[1], bbox[3], bbox[4]]
        x1, y1, x2, y2 = (float(v) for v in bbox)
        if self.flip:  # minlat, minlon, maxlat, maxlon
            x1, y1, x2, y2 = y1, x1, y2, x2
        if y1 > y2:
            raise FilterError("BBOX: the southern edge lies north of the northern edge")
        boxes = [(x1, y1, x2, y2)]
        if x1 > x2:
            # West edge east of the east edge: the box crosses the antimeridian (CQL2 7.5.1,
            # OGC API Features 7.15.3), the union of the boxes either side of it.
            half = self._half_width()
            if half is None:
                raise FilterError("BBOX: the western edge exceeds the eastern edge, which only "
                                  "a box in longitude/latitude (or Web Mercator) can do: it "
                                  "crosses the antimeridian")
            if not (-half <= x2 < x1 <= half):
                raise FilterError(f"BBOX crossing the antimeridian: both edges must lie "
                                  f"within ±{half:.10g}")
            boxes = [b for b in ((x1, y1, half, y2), (-half, y1, x2, y2)) if b[0] < b[2]] \
                or [(half, y1, half, y2)]
        parts = [self._box(*b) for b in boxes]
        base = parts[0] if len(parts) == 1 else sql.SQL("ST_Collect({}, {})").format(*parts)
        rings = [[(a, b), (c, b), (c, d), (a, d), (a, b)] for a, b, c, d in boxes]
        return base, rings

    def _half_width(self) -> float | None:
        """Where the antimeridian lies in x of filter_srid (None: no antimeridian)."""
        if self.filter_srid in _GEOGRAPHIC_SRIDS:
            return 180.0
        if self.filter_srid == 3857:
            return _MERCATOR_HALF_WIDTH
        return None

    def _box(self, x1: float, y1: float, x2: float, y2: float) -> sql.Composable:
        srid = self._param(self.filter_srid, "int")
        if x1 == x2 or y1 == y2:  # degenerate: a point or a line, not an (empty) envelope
            if x1 == x2 and y1 == y2:
                gj: dict = {"type": "Point", "coordinates": [x1, y1]}
            else:
                gj = {"type": "LineString", "coordinates": [[x1, y1], [x2, y2]]}
            return sql.SQL("ST_SetSRID(ST_GeomFromGeoJSON({}), {})").format(
                self._param(json.dumps(gj), "text"), srid)
        return sql.SQL("ST_MakeEnvelope({}, {}, {}, {}, {})").format(
            *(self._param(v, "float8") for v in (x1, y1, x2, y2)), srid)

    def _check_range(self, parts: list) -> None:
        if self.filter_srid not in _GEOGRAPHIC_SRIDS:
            return
        order = "latitude/longitude" if self.flip else "longitude/latitude"
        for part in parts:
            for x, y in part:
                if not (-90.0 <= y <= 90.0 and -360.0 <= x <= 360.0):
                    shown = f"{y:g} {x:g}" if self.flip else f"{x:g} {y:g}"
                    raise FilterError(f"coordinate out of range for {order}: {shown}")


def _fold(op: str, s: sql.Composable) -> sql.Composable:
    """CASEI (lower) or ACCENTI (ly.unaccent) of a string expression."""
    return sql.SQL("{}({})").format(sql.SQL(_FOLDS[op]), s)


def _collated(s: sql.Composable) -> sql.Composable:
    """A string expression in TEXT_COLLATION, for ordering comparisons. The COLLATE applies
    to the comparison only: lower()/unaccent() inside still use the database's ctype."""
    return sql.SQL("({} COLLATE {})").format(s, sql.Identifier(TEXT_COLLATION))


def _power(base: sql.Composable, exponent: sql.Composable) -> sql.Composable:
    """base ^ exponent without the errors numeric's power() raises: NULL for 0 to a negative
    power, a negative base to a fractional power, and results beyond 10^_POWER_MAGNITUDE in
    magnitude (instead of overflowing). A scalar subquery evaluates each operand once: CASE
    needs them several times, and nesting would otherwise grow the statement exponentially."""
    return sql.SQL(
        "(SELECT CASE WHEN _ly_pow.a IS NULL OR _ly_pow.b IS NULL THEN NULL "
        "WHEN _ly_pow.b = 0 THEN 1::numeric "
        "WHEN _ly_pow.a = 0 THEN CASE WHEN _ly_pow.b > 0 THEN 0::numeric END "
        "WHEN _ly_pow.a < 0 AND _ly_pow.b <> trunc(_ly_pow.b) THEN NULL "
        "WHEN _ly_pow.b * log(abs(_ly_pow.a)) > {limit} THEN NULL "
        "ELSE power(_ly_pow.a, _ly_pow.b) END "
        "FROM (SELECT {base}, {exponent}) AS _ly_pow(a, b))"
    ).format(base=base, exponent=exponent, limit=sql.SQL(str(_POWER_MAGNITUDE)))


def _as_timestamptz(s: sql.Composable) -> sql.Composable:
    return sql.SQL("(({})::timestamp AT TIME ZONE 'UTC')").format(s)


def _a(kind: str) -> str:
    names = {"integer": "an integer", "number": "a number", "string": "a string",
             "boolean": "a boolean", "date-time": "a timestamp", "date": "a date",
             "uuid": "a UUID", "geometry": "a geometry", "null": "NULL",
             "interval": "an interval", "array": "a list"}
    return names.get(kind, kind)


def _shown(a: _Operand) -> str:
    if a.prop:
        return f"property '{a.prop}'"
    if a.kind == "null":
        return "NULL"
    if a.kind == "geometry":
        return "a geometry"
    if a.kind in ("date-time", "date"):
        return _a(a.kind)
    text = json.dumps(a.value, default=str, ensure_ascii=False)
    if isinstance(a.value, float) and a.value.is_integer() and abs(a.value) < 1e15:
        text = str(int(a.value))
    return text if len(text) <= 40 else text[:37] + "..."


def _clip_box(storage_srid: int) -> tuple[float, float, float, float] | None:
    if 25828 <= storage_srid <= 25838:  # ETRS89 / UTM zones 28N..38N
        return _ETRS89_LONLAT_BOX
    if storage_srid == 3857:
        return _MERCATOR_LONLAT_BOX
    return None


def _mercator_to_lonlat(p: tuple[float, float]) -> tuple[float, float]:
    x, y = p
    lon = math.degrees(x / _MERCATOR_R)
    lat = math.degrees(2 * math.atan(math.exp(max(-700.0, min(700.0, y / _MERCATOR_R))))
                       - math.pi / 2)
    return lon, lat


def _path_length(parts: list) -> float:
    total = 0.0
    for part in parts:
        for (x1, y1), (x2, y2) in zip(part, part[1:]):
            total += math.hypot(x2 - x1, y2 - y1)
    return total


_GEOJSON_DEPTH = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2,
                  "Polygon": 2, "MultiPolygon": 3}


def _validate_geojson(geom: dict) -> list[list[tuple[float, float]]]:
    """Check a GeoJSON geometry; its vertex sequences (x, y) for length/extent estimates."""
    parts: list[list[tuple[float, float]]] = []
    stack = [(geom, 1)]
    while stack:
        g, depth = stack.pop()
        if not isinstance(g, dict):
            raise FilterError("invalid geometry literal")
        gtype = g.get("type")
        if gtype == "GeometryCollection":
            members = g.get("geometries")
            if not isinstance(members, list):
                raise FilterError("invalid GeometryCollection literal")
            if depth >= MAX_DEPTH:
                raise FilterError("GeometryCollection literal nested too deeply")
            stack.extend((m, depth + 1) for m in members)
            continue
        if gtype not in _GEOJSON_DEPTH:
            raise FilterError(f"unsupported geometry type {str(gtype)[:30]!r}")
        coords = g.get("coordinates")
        nesting = _GEOJSON_DEPTH[gtype]

        def pos(p: Any) -> tuple[float, float]:
            if (not isinstance(p, list) or len(p) not in (2, 3)
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                               and math.isfinite(v) for v in p)):
                raise FilterError(f"invalid position in {gtype} literal")
            return float(p[0]), float(p[1])

        def seq(s: Any, minimum: int, closed: bool) -> list[tuple[float, float]]:
            if not isinstance(s, list):
                raise FilterError(f"invalid {gtype} literal")
            pts = [pos(p) for p in s]
            if len(pts) < minimum:
                raise FilterError(f"{gtype} literal: a {'ring' if closed else 'line'} needs at "
                                  f"least {minimum} positions")
            if closed and pts[0] != pts[-1]:
                raise FilterError(f"{gtype} literal: rings must be closed")
            return pts

        def lst(s: Any) -> list:
            if not isinstance(s, list):
                raise FilterError(f"invalid {gtype} literal")
            return s

        if nesting == 0:
            parts.append([pos(coords)])
        elif gtype == "MultiPoint":
            parts.extend([pos(p)] for p in lst(coords))
        elif gtype == "LineString":
            parts.append(seq(coords, 2, False))
        elif gtype == "MultiLineString":
            parts.extend(seq(line, 2, False) for line in lst(coords))
        elif gtype == "Polygon":
            parts.extend(seq(ring, 4, True) for ring in lst(coords))
        else:  # MultiPolygon
            for poly in lst(coords):
                parts.extend(seq(ring, 4, True) for ring in lst(poly))
    return parts
