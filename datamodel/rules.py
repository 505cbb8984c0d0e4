"""Rules an object of a theme must satisfy before it is stored.

`validate_feature` turns a client's GeoJSON Feature into column values of a theme
(`datamodel.themes.Theme`), or raises `Invalid` listing every problem with the field it
concerns (`properties.pladser`, `geometry.coordinates`, …). It knows nothing of HTTP.

Geometry: a point theme takes a Point (or GeoFA's one-point MultiPoint); an area theme a
Polygon or MultiPolygon that is valid (OGC simple features, checked by GEOS after the
coordinates are rounded to the millimetre they are stored with), non-empty, inside Denmark,
and has at most `max_vertices` vertices (`LY_MAX_VERTICES`, shared with CQL2 filter
geometries). Nothing is repaired silently: an invalid area is refused with GEOS's reason and,
where GEOS reports one, its location.

`cap_by_open_deficiencies` is the classification rule an approval applies on top of the
checklist's outcome (`datamodel.checklist.assess`): while a safety (S) or grade-3 deficiency of
the shelter is open, an approval classifies it at best *egnet efter udbedring*, never *egnet*.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

import shapely
from pyproj import Transformer

from datamodel import crs as crsmod
from datamodel import themes
from datamodel.codelists import load_codelists
from datamodel.fields import Field
from datamodel.themes import Theme

#: The default of LY_MAX_VERTICES: vertices of one written area or one CQL2 filter geometry.
DEFAULT_MAX_VERTICES = 10_000


@dataclass(frozen=True)
class Problem:
    field: str
    detail: str


class Invalid(ValueError):
    """The input breaks one or more rules; nothing may be stored."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(f"{p.field}: {p.detail}" for p in problems))


@lru_cache(maxsize=8)
def _to_storage(srid: int) -> Transformer:
    return Transformer.from_crs(srid, 25832, always_xy=True)


def _inside(box: tuple[float, float, float, float], x: float, y: float) -> bool:
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def point_from_geojson(geometry: Any, in_crs: crsmod.Crs, problems: list[Problem]):
    """(x, y) in EPSG:25832 from a GeoJSON Point or one-point MultiPoint, or None."""
    if not isinstance(geometry, dict):
        problems.append(Problem("geometry", "must be a GeoJSON geometry object (a Point)"))
        return None
    gtype = geometry.get("type")
    coords = geometry.get("coordinates")
    if gtype == "MultiPoint":
        if not isinstance(coords, list) or len(coords) != 1:
            problems.append(Problem("geometry.coordinates",
                                    "a MultiPoint is accepted only with exactly one point"))
            return None
        coords = coords[0]
    elif gtype != "Point":
        problems.append(Problem("geometry.type",
                                f"must be Point (or a MultiPoint with one point), not {gtype!r}"))
        return None
    if not isinstance(coords, list) or len(coords) == 0:
        problems.append(Problem("geometry.coordinates", "the point is empty"))
        return None
    if len(coords) not in (2, 3) or not all(
        isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) for c in coords
    ):
        problems.append(Problem("geometry.coordinates",
                                "a position is two (or three) finite numbers"))
        return None
    a, b = float(coords[0]), float(coords[1])
    lon_lat = (b, a) if in_crs.lat_first else (a, b)
    x, y = _project(lon_lat, in_crs)
    if x is not None and _inside(crsmod.DENMARK_25832_BOX, x, y):
        return x, y
    sx, sy = _project((lon_lat[1], lon_lat[0]), in_crs)
    if sx is not None and _inside(crsmod.DENMARK_25832_BOX, sx, sy):
        order = ("latitude, longitude" if in_crs.lat_first else "longitude, latitude"
                 if in_crs.geographic else "easting, northing")
        problems.append(Problem(
            "geometry.coordinates",
            f"the axes look swapped: {in_crs.uri} expects {order} ({a}, {b} lies outside Denmark, "
            f"{b}, {a} inside)"))
        return None
    problems.append(Problem("geometry.coordinates",
                            f"({a}, {b}) in {in_crs.uri} lies outside Denmark"))
    return None


def _project(xy: tuple[float, float], in_crs: crsmod.Crs):
    if in_crs.srid == 25832:
        return xy
    if in_crs.geographic and not _inside(crsmod.ETRS89_LONLAT_BOX, *xy):
        return None, None
    x, y = _to_storage(in_crs.srid).transform(*xy)
    if not (math.isfinite(x) and math.isfinite(y)):
        return None, None
    return x, y


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _coerce(f: Field, value: Any) -> tuple[Any, str | None]:
    """The column value for `value`, or an error message."""
    if f.type == "integer":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not value.is_integer()
        ):
            return None, f"must be an integer, not {value!r}"
        value = int(value)
    elif f.type == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None, f"must be a number, not {value!r}"
    elif f.type == "string":
        if not isinstance(value, str):
            return None, f"must be a string, not {value!r}"
        if "\x00" in value:
            return None, "must not contain NUL characters"
        if f.max_length and len(value) > f.max_length:
            return None, f"is {len(value)} characters long; at most {f.max_length} are allowed"
    elif f.type == "uuid":
        try:
            value = UUID(str(value)) if isinstance(value, str) else None
        except ValueError:
            value = None
        if value is None:
            return None, "must be a UUID"
    elif f.type == "date":
        if not isinstance(value, str) or not _DATE_RE.match(value):
            return None, "must be a date (YYYY-MM-DD)"
        try:
            value = date.fromisoformat(value)
        except ValueError:
            return None, "must be a valid date (YYYY-MM-DD)"
    elif f.type == "date-time":
        try:
            value = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None, "must be an RFC 3339 date-time"
    if f.minimum is not None and value < f.minimum or f.maximum is not None and value > f.maximum:
        return None, f"must be between {_num(f.minimum)} and {_num(f.maximum)}, not {value}"
    if f.codelist:
        codes = load_codelists()[f.codelist]
        code = codes.get(value)
        if code is None:
            allowed = ", ".join(f"{c.kode} {c.tekst}" for c in codes.values if c.aktiv)
            return None, f"{value} is not a code of {f.codelist} (allowed: {allowed})"
        if not code.aktiv:
            return None, f"{value} ({code.tekst}) is no longer an active code of {f.codelist}"
    return value, None


def _num(v: float | None) -> str:
    return "…" if v is None else (str(int(v)) if float(v).is_integer() else str(v))


def validate_properties(props: Any, problems: list[Problem], previous: dict | None = None,
                        theme: Theme | None = None) -> dict:
    """Column values for the writable properties a client sent.

    Read-only properties (ids, system times, text twins, derived fields) are ignored, so a
    client may send back a feature as it read it. `previous` holds the current version's values:
    an inactive code that is kept unchanged stays valid.
    """
    theme = theme or themes.default()
    if props is None:
        return {}
    if not isinstance(props, dict):
        problems.append(Problem("properties", "must be a JSON object"))
        return {}
    values: dict[str, Any] = {}
    for name, value in props.items():
        if name in theme.read_only_names:
            continue
        f = theme.fields_by_name.get(name)
        if f is None:
            problems.append(Problem(f"properties.{name}",
                                    f"is not an attribute of {theme.collection_id}"))
            continue
        if value is None:
            values[name] = None
            continue
        if previous is not None and f.codelist and previous.get(name) == value:
            values[name] = value
            continue
        coerced, error = _coerce(f, value)
        if error:
            problems.append(Problem(f"properties.{name}", error))
        else:
            values[name] = coerced
    return values


def complete(values: dict, problems: list[Problem], theme: Theme | None = None) -> dict:
    """A full record for create/replace: defaults applied, required fields and cross-field rules
    checked. Fields the client did not send are NULL (or their default)."""
    theme = theme or themes.default()
    record: dict[str, Any] = {}
    for f in theme.fields:
        if not f.writable:
            continue
        value = values.get(f.name)
        if value is None and f.default is not None:
            value = f.default
        already = any(p.field == f"properties.{f.name}" for p in problems)
        if value is None and f.required and not already:
            problems.append(Problem(f"properties.{f.name}", "is required"))
        record[f.name] = value
    for name, detail in _validity_order(theme, record):
        problems.append(Problem(f"properties.{name}", detail))
    for rule in theme.rules:
        for name, detail in rule(record):
            problems.append(Problem(f"properties.{name}", detail))
    return record


def _validity_order(theme: Theme, record: dict) -> list[tuple[str, str]]:
    """A validity period ends on or after the day it starts (a NULL end is open-ended)."""
    if not theme.validity:
        return []
    start, end = theme.validity
    if record.get(start) is not None and record.get(end) is not None \
            and record[end] < record[start]:
        return [(end, f"{record[end]} lies before {start} {record[start]}")]
    return []


@dataclass(frozen=True)
class Candidate:
    """A validated object ready to be written: column values and its geometry in EPSG:25832
    (a point as x, y; an area as EWKT), or no geometry (a patch that leaves it)."""

    record: dict
    x: float | None = None
    y: float | None = None
    area_ewkt: str | None = None

    @property
    def ewkt(self) -> str | None:
        if self.area_ewkt is not None:
            return self.area_ewkt
        if self.x is None:
            return None
        return f"SRID=25832;POINT({self.x:.3f} {self.y:.3f})"


def _position_ok(p: Any) -> bool:
    return isinstance(p, list) and len(p) in (2, 3) and all(
        isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) for c in p)


def area_from_geojson(geometry: Any, in_crs: crsmod.Crs, problems: list[Problem],
                      max_vertices: int = DEFAULT_MAX_VERTICES) -> str | None:
    """EWKT of a MultiPolygon in EPSG:25832 from a GeoJSON Polygon or MultiPolygon, or None
    (with the problems found)."""
    if not isinstance(geometry, dict):
        problems.append(Problem("geometry", "must be a GeoJSON geometry object (a Polygon or "
                                "MultiPolygon)"))
        return None
    gtype = geometry.get("type")
    coords = geometry.get("coordinates")
    if gtype == "Polygon":
        polygons = [coords]
    elif gtype == "MultiPolygon":
        polygons = coords if isinstance(coords, list) else None
    else:
        problems.append(Problem("geometry.type",
                                f"must be Polygon or MultiPolygon (an area), not {gtype!r}"))
        return None
    if not polygons or not all(isinstance(p, list) and p for p in polygons):
        problems.append(Problem("geometry.coordinates", "the area is empty"))
        return None
    count = 0
    for pi, rings in enumerate(polygons):
        for ri, ring in enumerate(rings):
            where = f"polygon {pi + 1}, ring {ri + 1}"
            if not isinstance(ring, list) or not all(_position_ok(p) for p in ring):
                problems.append(Problem("geometry.coordinates",
                                        f"{where}: a position is two (or three) finite numbers"))
                return None
            if len(ring) < 4:
                problems.append(Problem("geometry.coordinates",
                                        f"{where}: a ring has at least 4 positions"))
                return None
            if ring[0][:2] != ring[-1][:2]:
                problems.append(Problem("geometry.coordinates",
                                        f"{where}: the ring is not closed (its first and last "
                                        f"positions differ: {ring[0]} and {ring[-1]})"))
                return None
            count += len(ring)
    if count > max_vertices:
        problems.append(Problem("geometry.coordinates",
                                f"the area has {count} vertices; at most {max_vertices} are "
                                "allowed (LY_MAX_VERTICES)"))
        return None
    projected = []
    for rings in polygons:
        out_rings = []
        for ring in rings:
            pts = []
            for p in ring:
                a, b = float(p[0]), float(p[1])
                lon_lat = (b, a) if in_crs.lat_first else (a, b)
                x, y = _project(lon_lat, in_crs)
                if x is None or not _inside(crsmod.DENMARK_25832_BOX, x, y):
                    problems.append(Problem("geometry.coordinates",
                                            f"({a}, {b}) in {in_crs.uri} lies outside Denmark"))
                    return None
                pts.append((round(x, 3), round(y, 3)))
            out_rings.append(pts)
        projected.append(shapely.Polygon(out_rings[0], out_rings[1:]))
    geom = shapely.MultiPolygon(projected)
    if geom.is_empty or geom.area == 0:
        problems.append(Problem("geometry.coordinates", "the area is empty (no surface)"))
        return None
    if not geom.is_valid:
        problems.append(Problem("geometry.coordinates",
                                f"the area is not valid: {_reason(geom, in_crs)}"))
        return None
    return "SRID=25832;" + shapely.to_wkt(geom, rounding_precision=3, trim=True)


_REASON_AT = re.compile(r"^(?P<what>[^\[]+)\[(?P<x>[-0-9.eE+]+) (?P<y>[-0-9.eE+]+)\]$")


def _reason(geom, in_crs: crsmod.Crs) -> str:
    """GEOS's reason, with its location given in the client's CRS too."""
    reason = shapely.is_valid_reason(geom)
    m = _REASON_AT.match(reason)
    if not m:
        return reason
    x, y = float(m.group("x")), float(m.group("y"))
    text = f"{m.group('what').strip()} at ({x:.3f}, {y:.3f}) in EPSG:25832"
    if in_crs.srid != 25832:
        back = Transformer.from_crs(25832, in_crs.srid, always_xy=True)
        a, b = back.transform(x, y)
        if in_crs.lat_first:
            a, b = b, a
        text += f", ({a:.7f}, {b:.7f}) in {in_crs.uri}"
    return text


def validate_feature(body: Any, in_crs: crsmod.Crs = crsmod.DEFAULT, *,
                     previous: dict | None = None, partial: bool = False,
                     theme: Theme | None = None,
                     max_vertices: int = DEFAULT_MAX_VERTICES) -> Candidate:
    """Validate a GeoJSON Feature of `theme` for create/replace, or a merge patch when
    `partial`.

    With `partial` only the members present are validated and returned; the caller merges
    them into the current version and validates the result again with `complete`.
    """
    theme = theme or themes.default()
    problems: list[Problem] = []
    if not isinstance(body, dict):
        raise Invalid([Problem("body", "must be a GeoJSON Feature object")])
    if not partial and body.get("type") != "Feature":
        problems.append(Problem("type", f"must be \"Feature\", not {body.get('type')!r}"))
    unknown = set(body) - {"type", "id", "geometry", "properties", "links", "bbox"}
    for member in sorted(unknown):
        problems.append(Problem(member, "is not a member of a GeoJSON Feature"))
    xy: tuple = (None, None)
    area = None
    if "geometry" in body or not partial:
        if body.get("geometry") is None:
            what = "an area (Polygon or MultiPolygon)" if theme.is_area else "a Point"
            problems.append(Problem("geometry", f"is required ({what} in Denmark)"))
        elif theme.is_area:
            area = area_from_geojson(body["geometry"], in_crs, problems, max_vertices)
        else:
            xy = point_from_geojson(body["geometry"], in_crs, problems) or (None, None)
    values = validate_properties(body.get("properties"), problems, previous, theme)
    if not partial:
        values = complete(values, problems, theme)
    if problems:
        raise Invalid(problems)
    return Candidate(values, *xy, area_ewkt=area)

