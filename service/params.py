"""Parsing and checking query parameters (OGC API - Features Parts 1-3).

Unknown parameters are refused with 400, as Part 1 requires; each problem names the
parameter.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from uuid import UUID

import orjson
from fastapi import Request

from datamodel import crs as crsmod
from datamodel import themes
from datamodel.access import PERSONAL_READER_ROLES, Actor
from datamodel.cql2sql import FilterError, Queryable, parse_filter, to_sql
from datamodel.query import Keyset, SortKey
from datamodel.themes import Theme
from service.errors import Problem, bad_request, not_found

FORMAT_JSON, FORMAT_HTML = "json", "html"
_F_VALUES = {"json": FORMAT_JSON, "geojson": FORMAT_JSON, "html": FORMAT_HTML}
#: Export formats of the items resource (service/exports.py): `f=geojson` there is the whole
#: filtered result as a file; elsewhere it is JSON.
EXPORT_FORMATS = ("geojson", "gpkg", "csv", "xlsx", "shp")


def theme_of(collection_id: str) -> Theme:
    """The theme a `/collections/{collectionId}` path names, or 404."""
    try:
        return themes.get(collection_id)
    except KeyError:
        known = ", ".join(t.collection_id for t in themes.all_themes())
        raise not_found(f"Samlingen {collection_id!r} (kendte: {known})") from None


def drop_blank_for_html(request: Request) -> None:
    """An HTML form sends its empty fields as `name=`; for HTML requests those mean "not
    given". (API clients get the strict treatment: an empty value is an invalid one.)"""
    if output_format(request, exports=True) != FORMAT_HTML:
        return
    kept = [(k, v) for k, v in request.query_params.multi_items() if v.strip() != ""]
    if len(kept) != len(request.query_params.multi_items()):
        from urllib.parse import urlencode

        request.scope["query_string"] = urlencode(kept).encode()
        del request._query_params  # Starlette caches the parsed query on the request


def check_known(request: Request, allowed: set[str]) -> None:
    names = set(request.query_params.keys())
    with_nul = sorted(n for n in names if "\x00" in n)
    if with_nul:  # shown escaped: the name is not a parameter, and NUL is not text
        raise bad_request(with_nul[0].replace("\x00", "\\u0000"),
                          "a parameter name must not contain NUL characters")
    unknown = sorted(names - allowed)
    if unknown:
        listed = ", ".join(unknown)
        raise Problem(400, f"unknown query parameter(s): {listed}", kind="unknown-parameter",
                      errors=[{"field": n, "detail": "is not a parameter of this resource"}
                              for n in unknown])
    for key in set(request.query_params.keys()):
        values = request.query_params.getlist(key)
        if len(values) > 1:
            raise bad_request(key, "may be given only once")
        if "\x00" in values[0]:
            raise bad_request(key, "must not contain NUL characters")


def output_format(request: Request, exports: bool = False) -> str:
    """json or html; with `exports`, also an export format (returned as given)."""
    f = request.query_params.get("f")
    if f is not None:
        if exports and f.lower() in EXPORT_FORMATS:
            return f.lower()
        if f.lower() not in _F_VALUES:
            known = sorted({*_F_VALUES, *(EXPORT_FORMATS if exports else ())})
            raise bad_request("f", f"must be one of {', '.join(known)}")
        return _F_VALUES[f.lower()]
    accept = request.headers.get("accept", "")
    if "text/html" in accept and "json" not in accept.split("text/html")[0]:
        return FORMAT_HTML
    return FORMAT_JSON


def parse_crs(value: str | None, name: str, default: crsmod.Crs = crsmod.DEFAULT) -> crsmod.Crs:
    if value is None:
        return default
    found = crsmod.lookup(value)
    if found is None:
        supported = ", ".join(crsmod.SUPPORTED)
        raise bad_request(name, f"{value!r} is not supported; use one of {supported}",
                          kind="unsupported-crs")
    return found


def parse_bbox(value: str | None, name: str = "bbox",
               crs: crsmod.Crs = crsmod.DEFAULT) -> tuple[float, ...] | None:
    """4 or 6 numbers in `crs`'s axis order. West above east is a box across the antimeridian
    in a CRS that wraps there (CRS84, EPSG:4326, EPSG:3857); any other lower corner value above
    the upper corner's is refused."""
    if value is None:
        return None
    try:
        numbers = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise bad_request(name, "must be 4 or 6 comma-separated numbers") from None
    if len(numbers) not in (4, 6) or not all(math.isfinite(n) for n in numbers):
        raise bad_request(name, "must be 4 or 6 comma-separated finite numbers")
    half = len(numbers) // 2
    x_axis = 1 if crs.lat_first else 0
    span = crsmod.WRAPPING_X.get(crs.srid)
    if span is not None and numbers[x_axis] > numbers[x_axis + half]:
        # across the antimeridian (datamodel.query.bbox_clause splits it): each edge on Earth
        if not all(span[0] <= numbers[i] <= span[1] for i in (x_axis, x_axis + half)):
            raise bad_request(name, f"a box across the antimeridian needs both east-west edges "
                                    f"within {span[0]:g} and {span[1]:g}")
    for i in range(half):
        if i == x_axis and span is not None:
            continue
        if numbers[i] > numbers[i + half]:
            raise bad_request(name, "a lower corner value is greater than the upper corner's")
    return numbers


def parse_instant(value: str, name: str) -> datetime:
    """An RFC 3339 date-time (a bare date is its midnight UTC), aware. Refused (400 naming
    `name`) unless it is an instant of years 1-9999 in UTC, where Python's and PostgreSQL's
    ranges meet (`0001-01-01T00:00:00+14:00` is year 0 in UTC)."""
    text = value.strip()
    try:
        if len(text) == 10:
            moment = datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise bad_request(name, f"{value!r} is not an RFC 3339 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        moment.astimezone(timezone.utc)
    except OverflowError:
        raise bad_request(name, f"{value!r} lies outside the years 1-9999 (UTC)") from None
    return moment


def parse_datetime(value: str | None) -> tuple[datetime | None, datetime | None] | None:
    """An instant or an interval `a/b`, `../b`, `a/..` (Part 1 `datetime`)."""
    if value is None:
        return None
    if "/" in value:
        start_s, _, end_s = value.partition("/")
        start = None if start_s in ("..", "") else parse_instant(start_s, "datetime")
        end = None if end_s in ("..", "") else parse_instant(end_s, "datetime")
        if start is None and end is None:
            raise bad_request("datetime", "an interval needs at least one end")
        if start and end and start > end:
            raise bad_request("datetime", "the interval's start is after its end")
        return start, end
    moment = parse_instant(value, "datetime")
    return moment, moment


def parse_uuid(value: str | None, name: str) -> UUID | None:
    if value is None:
        return None
    try:
        return UUID(value)
    except ValueError:
        raise bad_request(name, f"{value!r} is not a UUID") from None


def parse_limit(value: str | None, default: int, maximum: int) -> int:
    if value is None:
        return default
    try:
        limit = int(value)
    except ValueError:
        raise bad_request("limit", f"{value!r} is not an integer") from None
    if limit < 1:
        raise bad_request("limit", "must be at least 1")
    return min(limit, maximum)


# --- filters shared by items, tiles, exports and maps ----------------------------------------

def queryables(theme: Theme, public: bool = False) -> dict[str, Queryable]:
    """What an audience may filter a theme on: the attributes it may read, and the geometry."""
    out = {f.name: Queryable(f.name, f.name, f.type) for f in theme.audience_fields(public)}
    out["geometri"] = Queryable("geometri", "geometri", "geometry")
    return out


def equals_filters(request: Request, theme: Theme, public: bool,
                   reserved: set[str]) -> dict[str, object]:
    """`?property=value` filters for queryables (Part 3 queryables-query-parameters); names in
    `reserved` are the resource's own parameters."""
    out: dict[str, object] = {}
    allowed = queryables(theme, public)
    for name, raw in request.query_params.items():
        if name in reserved or name not in allowed or name == "geometri":
            continue  # unknown names were refused by check_known already
        f = theme.fields_by_name[name]
        try:
            if f.type == "integer":
                out[name] = int(raw)
            elif f.type == "number":
                out[name] = float(raw)
            elif f.type == "uuid":
                out[name] = parse_uuid(raw, name)
            elif f.type == "date-time":
                out[name] = parse_instant(raw, name)
            elif f.type == "date":
                out[name] = date.fromisoformat(raw)
            else:
                out[name] = raw
        except ValueError:
            raise bad_request(name, f"{raw!r} is not a valid {f.type}") from None
    return out


def cql_filter(request: Request, theme: Theme, public: bool) -> tuple | None:
    """The request's CQL2 filter (`filter`, `filter-lang`, `filter-crs`) as SQL on alias `t`."""
    text = request.query_params.get("filter")
    lang = request.query_params.get("filter-lang")
    if text is None:
        if lang is not None or request.query_params.get("filter-crs") is not None:
            raise bad_request("filter", "filter-lang and filter-crs need a filter")
        return None
    filter_crs = parse_crs(request.query_params.get("filter-crs"), "filter-crs")
    try:
        expr = parse_filter(text, lang)
        return to_sql(expr, queryables(theme, public), filter_srid=filter_crs.srid,
                      flip_axes=filter_crs.lat_first, alias="t",
                      max_vertices=request.app.state.settings.max_vertices)
    except FilterError as exc:
        raise bad_request(exc.field, exc.detail, kind="invalid-filter") from None


def asof(request: Request) -> datetime | None:
    """`asof`: read the register as it was at an instant (not in the future)."""
    value = request.query_params.get("asof")
    if value is None:
        return None
    moment = parse_instant(value, "asof")
    if moment > datetime.now(timezone.utc):
        raise bad_request("asof", "lies in the future")
    return moment


# --- sortby, properties, q and the keyset cursor ---------------------------------------------

#: At most this many terms in `q` (each is one more pass of ILIKE over the candidates).
MAX_TERMS = 20
_TERM_SPLIT = re.compile(r"[\s,]+")


def reads_personal(actor: Actor) -> bool:
    return actor.authenticated and actor.has(*PERSONAL_READER_ROLES)


def sortable(theme: Theme, actor: Actor) -> list[str]:
    """What an actor may sort a theme on: its queryables but the geometry, and personal data
    only for those who may read it."""
    personal_ok = reads_personal(actor)
    return [f.name for f in theme.audience_fields(actor.public)
            if personal_ok or not f.personal]


def parse_sortby(value: str | None, theme: Theme, actor: Actor) -> tuple[SortKey, ...]:
    """`sortby=+navn,-pladser` (OGC API - Features Part 8 draft, STAC API Sort): `-` sorts
    descending, `+` or no sign ascending. An unencoded `+` arrives as a space (form
    encoding), which is taken as `+`."""
    if value is None:
        return ()
    allowed = sortable(theme, actor)
    keys: list[SortKey] = []
    for raw in value.split(","):
        term = raw.strip()
        descending = term.startswith("-")
        name = term[1:].strip() if term[:1] in ("-", "+") else term
        if not name:
            raise bad_request("sortby", "each key is an attribute name, optionally after + "
                                        "(ascending) or - (descending)")
        if name not in allowed:
            f = theme.fields_by_name.get(name)
            why = ("is personal data this caller may not read" if f is not None and f.personal
                   and f in theme.audience_fields(actor.public) else
                   "is not an attribute this caller may sort on")
            raise bad_request("sortby", f"{name!r} {why}; sortable: {', '.join(allowed)}")
        if any(k.name == name for k in keys):
            raise bad_request("sortby", f"{name!r} is given more than once")
        keys.append(SortKey(name, descending))
    return tuple(keys)


def parse_properties(value: str | None, theme: Theme, public: bool) -> tuple[str, ...] | None:
    """`properties=a,b,c`: the output properties, chosen from those the audience reads (an
    attribute or a code's text twin); the objekt_id is the feature's id anyway."""
    if value is None:
        return None
    allowed = theme.property_columns(public)
    names = [n.strip() for n in value.split(",")]
    if not any(names) or not all(names):
        raise bad_request("properties", "a comma-separated list of property names")
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise bad_request("properties", f"{unknown[0]!r} is not a property this caller may "
                                        f"read; readable: {', '.join(allowed)}")
    return tuple(dict.fromkeys(names))


def parse_q(value: str | None) -> tuple[str, ...]:
    """`q`: free text terms, separated by white space or commas; every term must occur."""
    if value is None:
        return ()
    terms = tuple(t for t in _TERM_SPLIT.split(value) if t)
    if not terms:
        raise bad_request("q", "needs at least one term")
    if len(terms) > MAX_TERMS:
        raise bad_request("q", f"at most {MAX_TERMS} terms")
    return terms


def _sort_spec(keys: tuple[SortKey, ...]) -> str:
    return ",".join(k.spec for k in keys)


def _to_json(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    return value


def encode_cursor(keys: tuple[SortKey, ...], row: tuple, backward: bool = False) -> str:
    """The opaque cursor of a page boundary: base64url of JSON holding the sort (`s`), the
    boundary row's sort key values (`v`) and objekt_id (`id`), and `d` = prev for the page
    before it. `row` is a page row of `query.items_sql`: (feature, objekt_id, *values)."""
    doc = {"s": _sort_spec(keys), "v": [_to_json(v) for v in row[2:]], "id": str(row[1])}
    if backward:
        doc["d"] = "prev"
    return base64.urlsafe_b64encode(orjson.dumps(doc)).rstrip(b"=").decode()


def _from_json(value, type_: str):
    if value is None:
        return None
    if type_ == "integer" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("a cursor value must not contain NUL characters")
    if type_ == "number" and isinstance(value, str):
        number = Decimal(value)
        # a stored number is a double: beyond 1e308 it is not a boundary row's value
        if number.is_finite() and abs(number.adjusted()) <= 400:
            return number
    if type_ == "string" and isinstance(value, str):
        return value
    if type_ == "boolean" and isinstance(value, bool):
        return value
    if type_ == "date" and isinstance(value, str):
        return date.fromisoformat(value)
    if type_ == "date-time" and isinstance(value, str):
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            return moment
    if type_ == "uuid" and isinstance(value, str):
        return UUID(value)
    raise ValueError(f"{value!r} is not a {type_}")


def parse_cursor(value: str | None, theme: Theme, keys: tuple[SortKey, ...]) -> Keyset | None:
    """A cursor from a `next` or `prev` link; a bare objekt_id (the cursors before sortby)
    still means "after this objekt_id" in the default order."""
    if value is None:
        return None
    try:
        plain = UUID(value)
    except ValueError:
        plain = None
    if plain is not None:
        if keys:
            raise bad_request("cursor", "a bare objekt_id cursor pages the default order only; "
                                        "follow the links of a response with this sortby")
        return Keyset(plain)
    try:
        doc = orjson.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        if not isinstance(doc, dict) or not isinstance(doc.get("v"), list):
            raise ValueError("not a cursor")
        spec, direction = doc.get("s"), doc.get("d", "next")
        if not isinstance(doc.get("id"), str):
            raise ValueError("the cursor's id is not a UUID")
        objekt_id = UUID(doc["id"])
    except (ValueError, TypeError, KeyError, binascii.Error, orjson.JSONDecodeError):
        raise bad_request("cursor", "is not a cursor of this resource; follow a next or "
                                    "prev link") from None
    if spec != _sort_spec(keys):
        raise bad_request("cursor", f"belongs to another order (sortby {spec or 'default'!r}); "
                                    "start again from the first page")
    if direction not in ("next", "prev") or len(doc["v"]) != len(keys):
        raise bad_request("cursor", "is not a cursor of this resource")
    try:
        values = tuple(_from_json(v, theme.fields_by_name[k.name].type)
                       for v, k in zip(doc["v"], keys))
    except (ValueError, TypeError, InvalidOperation):
        raise bad_request("cursor", "is not a cursor of this resource") from None
    return Keyset(objekt_id, values, backward=direction == "prev")
