"""GeoFA exchange formats, generic over the theme registry: GeoJSON as GeoFA's WFS delivers
it, GML (WFS GetFeature, read with GDAL), and the file-upload forms (GeoPackage; Shapefile
with the <=10-character feltnavn10 names and a `temakode` column).

A theme is a `datamodel.themes.Theme`: its GeoFA view (the official meta file in
`datamodel/geofa/meta/`, `Theme.meta`) gives the wire attributes in order, text twins
included, and its descriptor gives Ly's attributes, their feltnavn10 names, the geometry
type and the `temakode`/`temanavn`. A theme GeoFA does not publish (no meta file) travels
as `temakode`, `temanavn` and its own attributes with their twins. Nothing here names a
theme: adding one to the registry adds it here.

Two profiles:
- `geofa`: exactly GeoFA's view (what GeoFA's WFS serves and its file upload takes);
- `ly` (default): GeoFA's view followed by Ly's own attributes (address, extensions), so an
  export read back loses nothing.

On the wire, in EPSG:25832 (precision 0.001 m): a point theme as MultiPoint (one point), an
area theme as MultiPolygon (GML 3: gml:MultiSurface); code and text twins together
(a `*_kode` and its text), `temakode`/`temanavn`, `kommunekode` of the responsible
authority, feature id `<view>.<objekt_id>`. Reading accepts a code or its text twin (and
refuses a pair that disagree), a point as Point or a MultiPoint with one point, an area as
Polygon or MultiPolygon, and the feltnavn10 names; server-owned attributes are kept as read.
Datetimes travel as ISO 8601 text in files, so microseconds survive. Which theme a file
holds is read from it when not given (its layer or feature type, else its `temakode`).

`register_features` reads a theme's current register as Ly features; `import_features`
writes GeoFA features into a theme's register through its current view (one transaction,
every feature validated first, history kept by the view's triggers).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable
from xml.sax.saxutils import escape

from psycopg import sql

from datamodel import crs as crsmod
from datamodel import themes
from datamodel.codelists import load_codelists
from datamodel.fields import GEOMETRY_COLUMN, Field
from datamodel.themes import WIRE_ONLY, Theme

EPSG_URN = "urn:ogc:def:crs:EPSG::25832"
GML_NS = "http://www.opengis.net/gml"
WFS_NS = "http://www.opengis.net/wfs"
FKG_NS = "https://geofa.geodanmark.dk/fkg"
PROFILES = ("ly", "geofa")
FORMATS = ("geojson", "gml", "gpkg", "shp")
#: Wire attributes that are not Ly attributes: the theme's code and table, and the
#: municipality of the responsible authority (derived from cvr_kode).
SYSTEM_EXTRA = (*WIRE_ONLY, "kommunekode")
#: Coordinates on the wire: millimetres, as GeoFA stores them.
DECIMALS = 3


class FormatError(ValueError):
    """A file or feature that cannot be read; names the feature and field."""


def theme(temakode: int | None = None) -> Theme:
    """The registered theme of a temakode (None: the registry's default)."""
    if temakode is None:
        return themes.default()
    try:
        return themes.by_temakode(int(temakode))
    except (KeyError, TypeError, ValueError):
        known = ", ".join(str(t.temakode) for t in themes.all_themes())
        raise FormatError(f"temakode {temakode} is not supported (supported: {known})") \
            from None


# --- a theme's wire ------------------------------------------------------------------------

@lru_cache(maxsize=None)
def wire(t: Theme) -> tuple[tuple[str, str | None], ...]:
    """GeoFA's view attributes in order, without the geometry: (name, full_type). A theme
    without a published view: temakode, temanavn and its attributes with their twins."""
    fields = sorted(t.meta.get("fields", {}).items(), key=lambda kv: kv[1]["num"])
    if fields:
        return tuple((name, f["full_type"]) for name, f in fields
                     if not f["full_type"].startswith("geometry"))
    return tuple((name, None) for name in (*WIRE_ONLY, *t.property_columns(False)))


def geofa_names(t: Theme) -> list[str]:
    return [name for name, _ in wire(t)]


@lru_cache(maxsize=None)
def twins(t: Theme) -> dict[str, Field]:
    """text twin name -> its coded field."""
    return {f.twin: f for f in t.coded_fields if f.twin}


@lru_cache(maxsize=None)
def _columns(t: Theme, profile: str) -> tuple[str, ...]:
    names = list(geofa_names(t))
    if profile == "ly":
        for f in t.fields:
            if f.name not in names:
                names.append(f.name)
                if f.twin and f.twin not in names:
                    names.append(f.twin)
    return tuple(names)


def columns(t: Theme, profile: str = "ly") -> list[str]:
    """The attributes of an export in order: GeoFA's view, then (profile ly) Ly's own with
    their text twins."""
    if profile not in PROFILES:
        raise FormatError(f"profile: {profile!r} is not one of {', '.join(PROFILES)}")
    return list(_columns(t, profile))


def short_names(t: Theme, profile: str = "ly") -> dict[str, str]:
    """name -> feltnavn10 for a Shapefile (no text twins; `temakode` kept)."""
    out: dict[str, str] = {}
    tw = twins(t)
    for name in columns(t, profile):
        if name in tw or name in ("temanavn", "kommunekode"):
            continue
        f = t.fields_by_name.get(name)
        out[name] = f.short_name if f else name[:10]
    if len(set(out.values())) != len(out):
        raise AssertionError(f"feltnavn10 names of {t.geofa_view} are not unique")
    return out


def attributes(t: Theme | None = None) -> list[str]:
    """Every Ly attribute name of a theme (for comparisons in tests and the sync)."""
    return [f.name for f in (t or theme()).fields]


@lru_cache(maxsize=1)
def _authority_kommune() -> dict[int, int | None]:
    return {c.kode: c.extra.get("kommunekode")
            for c in load_codelists()["d_basis_ansvarlig_myndighed"].values}


def _text(codelist: str, code: Any) -> str | None:
    if code is None:
        return None
    return load_codelists()[codelist].text(int(code))


# --- Ly feature -> GeoFA wire properties -----------------------------------------------------

def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "hex") and type(value).__name__ == "UUID":
        return str(value)
    if type(value).__name__ == "Decimal":
        return float(value)
    return value


def wire_properties(props: dict, t: Theme, profile: str = "ly") -> dict:
    """A Ly feature's properties as GeoFA's view has them, in order, twins filled in."""
    out: dict[str, Any] = {}
    tw = twins(t)
    for name in columns(t, profile):
        if name == "temakode":
            out[name] = t.temakode
        elif name == "temanavn":
            out[name] = t.temanavn
        elif name == "kommunekode":
            cvr = props.get("cvr_kode")
            out[name] = _authority_kommune().get(int(cvr)) if cvr is not None else None
        elif name in tw:
            f = tw[name]
            out[name] = props.get(name) or _text(f.codelist, props.get(f.name))
        else:
            out[name] = _plain(props.get(name))
    return out


def _xy(feature: dict) -> tuple[float, float]:
    """The point of a point feature (Point, or MultiPoint with one point)."""
    g = feature.get("geometry") or {}
    coords = g.get("coordinates")
    if g.get("type") == "MultiPoint":
        coords = coords[0]
    return float(coords[0]), float(coords[1])


def _polygons(feature: dict) -> list:
    """The polygons of an area feature (Polygon or MultiPolygon): rings of [x, y]."""
    g = feature.get("geometry") or {}
    if g.get("type") == "Polygon":
        return [g["coordinates"]]
    if g.get("type") == "MultiPolygon":
        return g["coordinates"]
    raise FormatError(f"{feature.get('id')}: geometry is a {g.get('type')}, not an area")


def _round(v: float) -> float:
    return round(float(v), DECIMALS)


def wire_geometry(feature: dict, t: Theme) -> dict:
    """A Ly feature's geometry as GeoFA's view has it: MultiPoint or MultiPolygon, mm."""
    if t.is_area:
        return {"type": "MultiPolygon",
                "coordinates": [[[[_round(x), _round(y)] for x, y, *_ in ring]
                                 for ring in polygon] for polygon in _polygons(feature)]}
    x, y = _xy(feature)
    return {"type": "MultiPoint", "coordinates": [[_round(x), _round(y)]]}


def geofa_feature(feature: dict, t: Theme, profile: str = "ly") -> dict:
    """A Ly feature (EPSG:25832) as a GeoFA WFS GeoJSON feature."""
    props = wire_properties(feature["properties"], t, profile)
    return {"type": "Feature", "id": f"{t.geofa_view}.{props.get('objekt_id')}",
            "geometry": wire_geometry(feature, t), "properties": props}


def feature_collection(features: Iterable[dict], t: Theme, profile: str = "ly") -> dict:
    """GeoJSON as GeoFA's WFS (MapServer/OGR) delivers it with srsName=EPSG:25832."""
    return {"type": "FeatureCollection", "name": f"fkg.{t.geofa_view}",
            "crs": {"type": "name", "properties": {"name": EPSG_URN}},
            "features": [geofa_feature(f, t, profile) for f in features]}


# --- GeoFA wire -> Ly feature --------------------------------------------------------------

def _scalar(value: Any) -> Any:
    """A plain Python value from what GDAL/pandas hand out (NaN, NA, NaT -> None)."""
    if value is None:
        return None
    try:
        import pandas as pd

        if bool(pd.isna(value)):
            return None
    except (TypeError, ValueError, ImportError):
        pass
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    return value


def _coerce(f: Field, value: Any, where: str) -> Any:
    value = _scalar(value)
    if value is None:
        return None
    if isinstance(value, str) and value == "" and f.type != "string":
        return None
    try:
        if f.type == "integer":
            if isinstance(value, str):
                value = float(value)
            if float(value) != int(value):
                raise ValueError
            return int(value)
        if f.type == "number":
            return float(value)
        if f.type in ("uuid", "string"):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            return str(value)
        if f.type == "date":
            if isinstance(value, datetime):  # a GDAL Date read as a timestamp
                value = value.date()
            return value.isoformat() if hasattr(value, "isoformat") else str(value)
        if f.type == "date-time":
            return value.isoformat() if hasattr(value, "isoformat") else str(value)
    except (TypeError, ValueError):
        raise FormatError(f"{where}: {f.name} {value!r} is not of type {f.type}") from None
    return value


def ly_feature(props: dict, geometry: Any, t: Theme, where: str = "feature") -> dict:
    """A GeoFA feature's properties (full or feltnavn10 names) and geometry as a Ly feature:
    a Point or MultiPolygon in EPSG:25832 and Ly's attribute names. Twins only fill in a
    missing code."""
    by_short = {f.short_name: f.name for f in t.fields}
    tw = twins(t)
    names: dict[str, Any] = {}
    for key, value in props.items():
        value = _scalar(value)
        lk = key.strip().lower()
        if lk in tw:
            f = tw[lk]
            # a Shapefile's twin-named column may be the code under its feltnavn10
            numeric = value is None or (isinstance(value, (int, float))
                                        and not isinstance(value, bool))
            name = f.name if lk == f.short_name and numeric else lk
        elif lk in t.fields_by_name or lk in SYSTEM_EXTRA:
            name = lk
        else:
            name = by_short.get(lk, lk)
        if name in names and (value is None or names[name] is not None):
            continue
        names[name] = value
    temakode = names.pop("temakode", None)
    if temakode not in (None, "") and int(float(temakode)) != t.temakode:
        raise FormatError(f"{where}: temakode is {temakode}, not {t.temakode}")
    out: dict[str, Any] = {}
    for name, value in names.items():
        if name in SYSTEM_EXTRA:
            continue
        f = t.fields_by_name.get(name)
        if f is not None:
            out[name] = _coerce(f, value, where)
    for twin, f in tw.items():
        text = names.get(twin)
        if text in (None, ""):
            continue
        codes = load_codelists()[f.codelist]
        code = next((c.kode for c in codes.values if c.tekst.casefold() == str(text).casefold()),
                    None)
        if out.get(f.name) is None:
            if code is None:
                raise FormatError(f"{where}: {twin} {text!r} is not a text of {f.codelist}")
            out[f.name] = code
        elif code is not None and code != out[f.name]:
            raise FormatError(f"{where}: {f.name} {out[f.name]} and its text {twin} {text!r} "
                              "disagree")
    if t.is_area:
        geom = {"type": "MultiPolygon", "coordinates": _area_of(geometry, where)}
    else:
        geom = {"type": "Point", "coordinates": list(_point_of(geometry, where))}
    return {"type": "Feature", "id": out.get("objekt_id"), "geometry": geom, "properties": out}


def _point_of(geometry: Any, where: str) -> tuple[float, float]:
    if geometry is None:
        raise FormatError(f"{where}: has no geometry")
    if hasattr(geometry, "geom_type"):  # shapely
        if geometry.geom_type == "MultiPoint" and len(geometry.geoms) == 1:
            geometry = geometry.geoms[0]
        if geometry.geom_type != "Point":
            raise FormatError(f"{where}: geometry is a {geometry.geom_type}, not a point")
        return geometry.x, geometry.y
    gtype, coords = geometry.get("type"), geometry.get("coordinates")
    if gtype == "MultiPoint":
        if len(coords) != 1:
            raise FormatError(f"{where}: a MultiPoint with {len(coords)} points (one expected)")
        coords = coords[0]
    elif gtype != "Point":
        raise FormatError(f"{where}: geometry is a {gtype}, not a point")
    return float(coords[0]), float(coords[1])


def _area_of(geometry: Any, where: str) -> list:
    """MultiPolygon coordinates (lists of [x, y]) of a Polygon or MultiPolygon."""
    if geometry is None:
        raise FormatError(f"{where}: has no geometry")
    if hasattr(geometry, "geom_type"):  # shapely
        from shapely.geometry import mapping

        geometry = mapping(geometry)
    gtype, coords = geometry.get("type"), geometry.get("coordinates")
    if gtype == "Polygon":
        coords = [coords]
    elif gtype != "MultiPolygon":
        raise FormatError(f"{where}: geometry is a {gtype}, not an area (Polygon or "
                          "MultiPolygon)")
    try:
        return [[[[float(p[0]), float(p[1])] for p in ring] for ring in polygon]
                for polygon in coords]
    except (TypeError, ValueError, IndexError):
        raise FormatError(f"{where}: the area's coordinates are not pairs of numbers") \
            from None


def _check_crs(crs_name: str | None, where: str) -> None:
    if crs_name and "25832" not in crs_name:
        raise FormatError(f"{where}: the CRS is {crs_name}; GeoFA exchange is EPSG:25832")


def _theme_named(name: str | None) -> Theme | None:
    """The theme whose GeoFA view a layer or feature type names (fkg.<view>, <view>)."""
    if not name:
        return None
    name = name.split(":")[-1].lower()
    for t in themes.all_themes():
        if name in (t.geofa_view, f"fkg.{t.geofa_view}", t.temanavn):
            return t
    return None


def _theme_of_temakode(value: Any) -> Theme | None:
    value = _scalar(value)
    if value in (None, ""):
        return None
    try:
        return theme(int(float(value)))
    except (FormatError, TypeError, ValueError):
        return None


def read_geojson(data: dict | str | Path, t: Theme | None = None) -> list[dict]:
    """Ly features from GeoFA GeoJSON (a FeatureCollection in EPSG:25832)."""
    if not isinstance(data, dict):
        data = json.loads(Path(data).read_text(encoding="utf-8"))
    crs = ((data.get("crs") or {}).get("properties") or {}).get("name")
    _check_crs(crs, "FeatureCollection")
    features = data.get("features") or []
    if t is None:
        first = (features[0].get("properties") or {}) if features else {}
        t = _theme_named(data.get("name")) or _theme_of_temakode(first.get("temakode")) or \
            _theme_named(first.get("temanavn")) or theme()
    return [ly_feature(f.get("properties") or {}, f.get("geometry"), t, f"feature {i}")
            for i, f in enumerate(features, start=1)]


# --- files ---------------------------------------------------------------------------------

def _frame(features: list[dict], t: Theme, profile: str, short: bool):
    import geopandas as gpd
    from shapely.geometry import shape

    cols = columns(t, profile)
    names = short_names(t, profile) if short else {c: c for c in cols}
    rows, geoms = [], []
    for i, f in enumerate(features, start=1):
        props = wire_properties(f["properties"], t, profile)
        row = {}
        for c in cols:
            if c not in names:
                continue
            v = props.get(c)
            if short and isinstance(v, str) and len(v.encode("utf-8")) > 254:
                raise FormatError(f"feature {i} ({props.get('objekt_id')}): {c} is "
                                  f"{len(v.encode('utf-8'))} bytes in UTF-8; a Shapefile field "
                                  "holds at most 254 (use GeoPackage or GeoJSON)")
            row[names[c]] = v
        rows.append(row)
        geoms.append(shape(wire_geometry(f, t)))
    frame = gpd.GeoDataFrame(rows, columns=list(names.values()), geometry=geoms, crs=25832)
    for c in cols:  # integer columns stay integers with nulls
        f = t.fields_by_name.get(c)
        integer = (f is not None and f.type == "integer") or c in ("temakode", "kommunekode")
        if integer and c in names:
            frame[names[c]] = frame[names[c]].astype("Int64")
    return frame


def _wire_geometry_type(t: Theme) -> str:
    return "MultiPolygon" if t.is_area else "MultiPoint"


def write_file(features: Iterable[dict], path: str | Path, fmt: str, t: Theme | None = None,
               profile: str = "ly") -> Path:
    """Write features of theme `t` as `geojson`, `gml`, `gpkg` or `shp` (EPSG:25832,
    MultiPoint or MultiPolygon)."""
    t = t or theme()
    path = Path(path)
    features = list(features)
    if fmt == "geojson":
        path.write_text(json.dumps(feature_collection(features, t, profile), ensure_ascii=False),
                        encoding="utf-8")
        return path
    if fmt == "gml":
        path.write_text(to_gml(features, t, profile), encoding="utf-8")
        path.with_suffix(".xsd").write_text(gml_schema(t, profile), encoding="utf-8")
        return path
    import pyogrio

    if fmt == "gpkg":
        pyogrio.write_dataframe(_frame(features, t, profile, short=False), path,
                                layer=t.geofa_view, driver="GPKG",
                                geometry_type=_wire_geometry_type(t))
    elif fmt == "shp":
        pyogrio.write_dataframe(_frame(features, t, profile, short=True), path,
                                driver="ESRI Shapefile", encoding="UTF-8",
                                geometry_type=_wire_geometry_type(t))
    else:
        raise FormatError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
    return path


def _gml_options(path: Path) -> dict:
    import pyogrio

    if path.suffix.lower() not in (".gml", ".xml"):
        return {}
    # never fetch the schema a WFS answer points at; never leave a .gfs beside the file
    pyogrio.set_gdal_config_options({"GML_DOWNLOAD_SCHEMA": "NO"})
    return {"WRITE_GFS": "NO"}


def detect_theme(path: str | Path) -> Theme:
    """The theme a GeoFA exchange file holds: its layer or feature type (`fkg.<view>`),
    else the `temakode` of its first feature, else the registry's default."""
    path = Path(path)
    if path.suffix.lower() in (".geojson", ".json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        first = ((data.get("features") or [{}])[0].get("properties") or {})
        return _theme_named(data.get("name")) or _theme_of_temakode(first.get("temakode")) \
            or theme()
    import pyogrio

    options = _gml_options(path)
    try:
        info = pyogrio.read_info(path, **options)
    except Exception as exc:  # GDAL's errors come in several classes
        raise FormatError(f"{path.name}: cannot be read ({exc})") from None
    found = _theme_named(info["layer_name"])
    if found:
        return found
    column = next((c for c in info["fields"] if c.lower() == "temakode"), None)
    if column is not None and info["features"]:
        frame = pyogrio.read_dataframe(path, columns=[column], max_features=1,
                                       read_geometry=False, use_arrow=False, **options)
        found = _theme_of_temakode(frame[column].iloc[0]) if len(frame) else None
        if found:
            return found
    return theme()


def read_file(path: str | Path, t: Theme | None = None) -> list[dict]:
    """Ly features from a GeoFA exchange file (GeoJSON, GML, GeoPackage, Shapefile) of theme
    `t` (None: the theme the file says it holds)."""
    path = Path(path)
    if path.suffix.lower() in (".geojson", ".json"):
        return read_geojson(path, t)
    import pyogrio

    t = t or detect_theme(path)
    options = _gml_options(path)
    try:
        frame = pyogrio.read_dataframe(path, use_arrow=False, **options)
    except Exception as exc:  # GDAL's errors come in several classes
        raise FormatError(f"{path.name}: cannot be read ({exc})") from None
    if frame.crs is not None and frame.crs.to_epsg() not in (25832, None):
        raise FormatError(f"{path.name}: the CRS is EPSG:{frame.crs.to_epsg()}; GeoFA exchange "
                          "is EPSG:25832")
    out = []
    for i, rec in enumerate(frame.to_dict("records"), start=1):
        geom = rec.pop("geometry", None)
        rec.pop("gml_id", None)
        out.append(ly_feature(rec, geom, t, f"{path.name} feature {i}"))
    return out


# --- GML (WFS 1.1 GetFeature, GML 3) -------------------------------------------------------

def _xsd_type(t: Theme, name: str, full_type: str | None) -> str:
    f = t.fields_by_name.get(name)
    kind = f.type if f else ("integer" if (full_type or "").startswith("integer")
                             or name in ("temakode", "kommunekode") else "string")
    return {"integer": "xsd:int", "number": "xsd:double"}.get(kind, "xsd:string")


def gml_schema(t: Theme, profile: str = "ly") -> str:
    """The application schema (as WFS DescribeFeatureType answers), so GDAL reads each
    attribute with its type and a house number "7" stays text."""
    types = dict(wire(t))
    geometry = "gml:MultiSurfacePropertyType" if t.is_area else "gml:MultiPointPropertyType"
    elements = "\n".join(
        f'        <xsd:element name="{c}" type="{_xsd_type(t, c, types.get(c))}" minOccurs="0"/>'
        for c in columns(t, profile))
    view = t.geofa_view
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:fkg="{FKG_NS}"
  xmlns:gml="{GML_NS}" targetNamespace="{FKG_NS}" elementFormDefault="qualified" version="0.1">
  <xsd:import namespace="{GML_NS}"
    schemaLocation="http://schemas.opengis.net/gml/3.1.1/base/gml.xsd"/>
  <xsd:element name="fkg.{view}" type="fkg:fkg.{view}Type"
    substitutionGroup="gml:_Feature"/>
  <xsd:complexType name="fkg.{view}Type">
    <xsd:complexContent>
      <xsd:extension base="gml:AbstractFeatureType">
      <xsd:sequence>
        <xsd:element name="{GEOMETRY_COLUMN}" type="{geometry}" minOccurs="0"/>
{elements}
      </xsd:sequence>
      </xsd:extension>
    </xsd:complexContent>
  </xsd:complexType>
</xsd:schema>
"""


def _envelope(xs: list[float], ys: list[float]) -> str:
    return (f'<gml:boundedBy><gml:Envelope srsName="{EPSG_URN}"><gml:lowerCorner>{min(xs):.3f} '
            f'{min(ys):.3f}</gml:lowerCorner><gml:upperCorner>{max(xs):.3f} {max(ys):.3f}'
            f'</gml:upperCorner></gml:Envelope></gml:boundedBy>')


def _gml_geometry(geometry: dict) -> tuple[str, list[float], list[float]]:
    """(GML 3 of a wire geometry, its xs, its ys)."""
    if geometry["type"] == "MultiPoint":
        x, y = geometry["coordinates"][0]
        return (f'<gml:MultiPoint srsName="{EPSG_URN}"><gml:pointMember><gml:Point><gml:pos>'
                f'{x:.3f} {y:.3f}</gml:pos></gml:Point></gml:pointMember></gml:MultiPoint>',
                [x], [y])
    xs, ys, members = [], [], []
    for polygon in geometry["coordinates"]:
        rings = []
        for i, ring in enumerate(polygon):
            xs += [p[0] for p in ring]
            ys += [p[1] for p in ring]
            pos = " ".join(f"{x:.3f} {y:.3f}" for x, y in ring)
            tag = "exterior" if i == 0 else "interior"
            rings.append(f"<gml:{tag}><gml:LinearRing><gml:posList>{pos}</gml:posList>"
                         f"</gml:LinearRing></gml:{tag}>")
        members.append(f"<gml:surfaceMember><gml:Polygon>{''.join(rings)}</gml:Polygon>"
                       "</gml:surfaceMember>")
    return (f'<gml:MultiSurface srsName="{EPSG_URN}">{"".join(members)}</gml:MultiSurface>',
            xs, ys)


def to_gml(features: Iterable[dict], t: Theme | None = None, profile: str = "ly") -> str:
    """A WFS 1.1.0 GetFeature answer in GML 3 (MapServer's form: namespace prefix `fkg`,
    feature type `fkg.<view>`, gml:id `<view>.<objekt_id>`, MultiPoint or MultiSurface in
    EPSG:25832)."""
    t = t or theme()
    view = t.geofa_view
    members = []
    all_x, all_y = [], []
    for f in features:
        geometry, xs, ys = _gml_geometry(wire_geometry(f, t))
        all_x += xs
        all_y += ys
        props = wire_properties(f["properties"], t, profile)
        attrs = "".join(
            f"<fkg:{k}>{escape(str(v).lower() if isinstance(v, bool) else str(v))}</fkg:{k}>"
            for k, v in props.items() if v is not None)
        members.append(
            f'<gml:featureMember><fkg:fkg.{view} gml:id="{view}.{props.get("objekt_id")}">'
            f'{_envelope(xs, ys)}<fkg:{GEOMETRY_COLUMN}>{geometry}</fkg:{GEOMETRY_COLUMN}>'
            f'{attrs}</fkg:fkg.{view}></gml:featureMember>')
    bbox = _envelope(all_x, all_y) if all_x else \
        '<gml:boundedBy><gml:Null>missing</gml:Null></gml:boundedBy>'
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<wfs:FeatureCollection xmlns:fkg="{FKG_NS}"'
            f' xmlns:wfs="{WFS_NS}" xmlns:gml="{GML_NS}" '
            f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n{bbox}\n'
            + "\n".join(members) + "\n</wfs:FeatureCollection>\n")


# --- Ly's register as features -------------------------------------------------------------

def _read_personal(conn) -> str | None:
    """On the operator's own connection (no actor set: the command line), read as the system
    does, so personal attributes are exported rather than masked; an actor's connection reads
    what the actor may. Returns the roles to restore, or None if nothing was changed."""
    roles = conn.execute("SELECT coalesce(current_setting('ly.roller', true), '')").fetchone()[0]
    if roles:
        return None
    conn.execute("SELECT set_config('ly.roller', 'national_reader', true)")
    return roles


def register_features(conn, where: str = "TRUE", params: list | None = None, *,
                      t: Theme | None = None) -> list[dict]:
    """Current objects of a theme's register as Ly features (Point or MultiPolygon,
    EPSG:25832), every attribute with its twin; `where` filters the current view `t`."""
    t = t or theme()
    stmt = sql.SQL(
        "SELECT row_to_json(t)::jsonb - {g}, ST_AsGeoJSON(t.{gi}, 9)::json FROM {view} t "
        "WHERE {where} ORDER BY t.objekt_id").format(
        g=sql.Literal(GEOMETRY_COLUMN), gi=sql.Identifier(GEOMETRY_COLUMN),
        view=sql.Identifier("ly", t.current_view), where=sql.SQL(where))
    with conn.transaction():  # the roles set below hold for this transaction only
        restore = _read_personal(conn)
        rows = conn.execute(stmt, params or []).fetchall()
        if restore is not None:
            conn.execute("SELECT set_config('ly.roller', %s, true)", [restore])
    out = []
    for p, g in rows:
        if not t.is_area:  # a point stored as a point
            g = {"type": "Point", "coordinates": g["coordinates"]}
        out.append({"type": "Feature", "id": p["objekt_id"], "geometry": g, "properties": p})
    return out


# --- GeoFA features into Ly's register -----------------------------------------------------

def _same_geometry(ewkt: str, current: dict) -> bool:
    """Whether a candidate's geometry (EWKT, EPSG:25832) is the stored one (GeoJSON) to the
    millimetre, whatever the rings' orientation and start."""
    import shapely
    from shapely.geometry import shape

    new = shapely.from_wkt(ewkt.split(";", 1)[1])
    old = shape(current)
    if old.geom_type == "MultiPoint" and len(old.geoms) == 1:
        old = old.geoms[0]
    return bool(shapely.equals(shapely.set_precision(new, 0.001),
                               shapely.set_precision(old, 0.001)))


def import_features(conn, features: list[dict], t: Theme, *, subjekt: str = "ly-geofa-import",
                    dry_run: bool = False, max_problems: int = 20) -> dict[str, int]:
    """Write GeoFA features of theme `t` into its register through the current view, in one
    transaction: an `objekt_id` the register holds gets a new version when an attribute the
    file carries or the geometry differs (else nothing; attributes the file lacks, as in the
    `geofa` profile, keep their values), any other feature is created (with its objekt_id
    when it has one). Every feature is validated (`datamodel.rules`) and compared with the
    current version as validated the same way; one invalid feature refuses the file
    (FormatError naming the feature and field) and nothing is stored. Server-owned
    attributes (ids, system times, beliggenhedskommune) are the register's. `dry_run`
    counts and rolls back. Returns the counts: laest, opret, ret, uaendret."""
    from datamodel.rules import Invalid, validate_feature

    view = sql.Identifier("ly", t.current_view)
    geom = sql.Identifier(GEOMETRY_COLUMN)
    writable = [f.name for f in t.writable_fields]
    counts = {"laest": len(features), "opret": 0, "ret": 0, "uaendret": 0}
    problems: list[str] = []

    def validated(props: dict, geometry, previous: dict | None):
        return validate_feature({"type": "Feature", "geometry": geometry, "properties": props},
                                crsmod.STORAGE, theme=t, previous=previous)

    update = sql.SQL("UPDATE {} SET {}, {} = %s::geometry WHERE objekt_id = %s").format(
        view, sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(n))
                                 for n in writable), geom)
    inserts: dict[bool, sql.Composed] = {}
    for with_id in (False, True):
        cols = [sql.Identifier(n) for n in (["objekt_id"] if with_id else []) + writable]
        inserts[with_id] = sql.SQL("INSERT INTO {} ({}, {}) VALUES ({}, %s::geometry)").format(
            view, sql.SQL(", ").join(cols), geom,
            sql.SQL(", ").join(sql.Placeholder() * len(cols)))
    ids = [str(oid) for f in features
           if (oid := (f.get("properties") or {}).get("objekt_id")) is not None]
    try:
        with conn.transaction():
            conn.execute("SELECT set_config('ly.subjekt', %s, true)", [subjekt])
            restore = _read_personal(conn)  # compare personal data as stored
            current = {str(p["objekt_id"]): (p, g) for p, g in conn.execute(
                sql.SQL("SELECT row_to_json(t)::jsonb - {}, ST_AsGeoJSON(t.{})::json FROM {} t "
                        "WHERE t.objekt_id = ANY(%s::uuid[])").format(
                    sql.Literal(GEOMETRY_COLUMN), geom, view), [ids]).fetchall()}
            for i, f in enumerate(features, start=1):
                props = f.get("properties") or {}
                oid = props.get("objekt_id")
                old, old_geometry = current.get(str(oid), (None, None))
                stored = {k: v for k, v in (old or {}).items() if k in writable}
                try:
                    cand = validated({**stored, **{k: v for k, v in props.items()
                                                   if k in writable}},
                                     f.get("geometry"), old)
                except Invalid as exc:
                    problems += [f"feature {i} ({oid}): {p.field}: {p.detail}"
                                 for p in exc.problems]
                    continue
                values = [cand.record.get(n) for n in writable]
                if old is None:
                    with_id = oid is not None
                    conn.execute(inserts[with_id],
                                 [*([oid] if with_id else []), *values, cand.ewkt])
                    counts["opret"] += 1
                    continue
                try:
                    before = validated(stored, old_geometry, old).record
                except Invalid:  # a version stored before a rule: any write renews it
                    before = None
                if before == cand.record and _same_geometry(cand.ewkt, old_geometry):
                    counts["uaendret"] += 1
                    continue
                conn.execute(update, [*values, cand.ewkt, oid])
                counts["ret"] += 1
            if problems:
                more = f" (and {len(problems) - max_problems} more)" \
                    if len(problems) > max_problems else ""
                raise FormatError("; ".join(problems[:max_problems]) + more)
            if restore is not None:
                conn.execute("SELECT set_config('ly.roller', %s, true)", [restore])
            if dry_run:
                raise _DryRun()
    except _DryRun:
        pass
    return counts


class _DryRun(Exception):
    """Rolls a dry run's transaction back."""


def import_file(conn, path: str | Path, t: Theme | None = None, **kw) -> dict[str, int]:
    """`import_features` of a GeoFA exchange file; `dry_run=True` counts and stores nothing."""
    t = t or detect_theme(path)
    return import_features(conn, read_file(path, t), t, **kw)
