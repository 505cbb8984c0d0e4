"""GeoFA exchange formats, table-driven per theme: GeoJSON as GeoFA's WFS delivers it, GML
(WFS GetFeature, read with GDAL), and the file-upload forms (GeoPackage; Shapefile with the
<=10-character feltnavn10 names and a `temakode` column).

A theme (`THEMES`) is described by GeoFA's published view (the official meta file copied to
`loaders/data/geofa/meta/`, which gives the wire attributes in order, text twins included) and
Ly's attribute definitions (`datamodel.fields`). Adding theme 6122 means adding its meta file
and a `Theme` entry with its Ly fields.

Two profiles:
- `geofa`: exactly GeoFA's view (what GeoFA's WFS serves and its file upload takes);
- `ly` (default): GeoFA's view followed by Ly's own attributes (address, extensions), so an
  export read back loses nothing.

On the wire: MultiPoint in EPSG:25832 (precision 0.001 m), code and text twins together
(`beskyt_rum_kode` 3 and `beskyt_rum` "Betondækningsgrav"), `temakode`/`temanavn`,
`kommunekode` of the responsible authority, feature id `<view>.<objekt_id>`. Reading accepts a
code or its text twin (and refuses a pair that disagree), MultiPoint with one point or Point,
and the feltnavn10 names; server-owned attributes are kept as read (the sync decides what it
writes). Datetimes travel as ISO 8601 text in files, so microseconds survive.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Iterable
from xml.sax.saxutils import escape

from datamodel.codelists import load_codelists
from datamodel.fields import FIELDS_BY_NAME, SHELTER_FIELDS, Field

DATA = Path(__file__).resolve().parent.parent / "data" / "geofa"
EPSG_URN = "urn:ogc:def:crs:EPSG::25832"
GML_NS = "http://www.opengis.net/gml"
WFS_NS = "http://www.opengis.net/wfs"
FKG_NS = "https://geofa.geodanmark.dk/fkg"
PROFILES = ("ly", "geofa")
FORMATS = ("geojson", "gml", "gpkg", "shp")
SYSTEM_EXTRA = ("temakode", "temanavn", "kommunekode")


class FormatError(ValueError):
    """A file or feature that cannot be read; names the feature and field."""


@dataclass(frozen=True)
class Theme:
    temakode: int
    view: str  # GeoFA's published view, e.g. t_6101_beskyt_rum
    temanavn: str  # the theme's table, e.g. t_6101_beskyt_rum_t
    meta_file: str
    ly_fields: tuple[Field, ...]

    @cached_property
    def meta(self) -> dict:
        return json.loads((DATA / "meta" / self.meta_file).read_text(encoding="utf-8"))

    @cached_property
    def wire(self) -> list[tuple[str, str]]:
        """GeoFA's view attributes in order, without the geometry: (name, full_type)."""
        fields = sorted(self.meta["fields"].items(), key=lambda kv: kv[1]["num"])
        return [(name, f["full_type"]) for name, f in fields if not f["full_type"].startswith(
            "geometry")]

    @cached_property
    def geofa_names(self) -> list[str]:
        return [name for name, _ in self.wire]

    @cached_property
    def ly_by_name(self) -> dict[str, Field]:
        return {f.name: f for f in self.ly_fields}

    @cached_property
    def twins(self) -> dict[str, Field]:
        """text twin name -> its coded Ly field."""
        return {f.twin: f for f in self.ly_fields if f.twin}

    def columns(self, profile: str = "ly") -> list[str]:
        """The attributes of an export in order: GeoFA's view, then (profile ly) Ly's own with
        their text twins."""
        if profile not in PROFILES:
            raise FormatError(f"profile: {profile!r} is not one of {', '.join(PROFILES)}")
        names = list(self.geofa_names)
        if profile == "ly":
            for f in self.ly_fields:
                if f.name not in names:
                    names.append(f.name)
                    if f.twin and f.twin not in names:
                        names.append(f.twin)
        return names

    def short_names(self, profile: str = "ly") -> dict[str, str]:
        """name -> feltnavn10 for a Shapefile (no text twins; `temakode` kept)."""
        out: dict[str, str] = {}
        for name in self.columns(profile):
            if name in self.twins or name in ("temanavn", "kommunekode"):
                continue
            f = self.ly_by_name.get(name)
            short = f.short_name if f else name[:10]
            out[name] = short
        if len(set(out.values())) != len(out):
            raise AssertionError(f"feltnavn10 names of {self.view} are not unique")
        return out


THEMES: dict[int, Theme] = {
    6101: Theme(6101, "t_6101_beskyt_rum", "t_6101_beskyt_rum_t", "fkg.t_6101_beskyt_rum.json",
                SHELTER_FIELDS),
}


def theme(temakode: int = 6101) -> Theme:
    try:
        return THEMES[temakode]
    except KeyError:
        raise FormatError(f"temakode {temakode} is not supported (supported: "
                          f"{', '.join(map(str, THEMES))})") from None


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
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "hex") and type(value).__name__ == "UUID":
        return str(value)
    if type(value).__name__ == "Decimal":
        return float(value)
    return value


def wire_properties(props: dict, t: Theme, profile: str = "ly") -> dict:
    """A Ly feature's properties as GeoFA's view has them, in order, twins filled in."""
    out: dict[str, Any] = {}
    for name in t.columns(profile):
        if name == "temakode":
            out[name] = t.temakode
        elif name == "temanavn":
            out[name] = t.temanavn
        elif name == "kommunekode":
            cvr = props.get("cvr_kode")
            out[name] = _authority_kommune().get(int(cvr)) if cvr is not None else None
        elif name in t.twins:
            f = t.twins[name]
            out[name] = props.get(name) or _text(f.codelist, props.get(f.name))
        else:
            out[name] = _plain(props.get(name))
    return out


def geofa_feature(feature: dict, t: Theme, profile: str = "ly") -> dict:
    """A Ly feature (Point, EPSG:25832) as a GeoFA WFS GeoJSON feature (MultiPoint)."""
    x, y = _xy(feature)
    props = wire_properties(feature["properties"], t, profile)
    return {"type": "Feature", "id": f"{t.view}.{props.get('objekt_id')}",
            "geometry": {"type": "MultiPoint", "coordinates": [[round(x, 3), round(y, 3)]]},
            "properties": props}


def _xy(feature: dict) -> tuple[float, float]:
    g = feature.get("geometry") or {}
    coords = g.get("coordinates")
    if g.get("type") == "MultiPoint":
        coords = coords[0]
    return float(coords[0]), float(coords[1])


def feature_collection(features: Iterable[dict], t: Theme, profile: str = "ly") -> dict:
    """GeoJSON as GeoFA's WFS (MapServer/OGR) delivers it with srsName=EPSG:25832."""
    return {"type": "FeatureCollection", "name": f"fkg.{t.view}",
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
        if f.type in ("date-time", "date"):
            return value.isoformat() if hasattr(value, "isoformat") else str(value)
    except (TypeError, ValueError):
        raise FormatError(f"{where}: {f.name} {value!r} is not of type {f.type}") from None
    return value


def ly_feature(props: dict, geometry: Any, t: Theme, where: str = "feature") -> dict:
    """A GeoFA feature's properties (full or feltnavn10 names) and geometry as a Ly feature:
    a Point in EPSG:25832 and Ly's attribute names. Twins only fill in a missing code."""
    by_short = {f.short_name: f.name for f in t.ly_fields}
    names: dict[str, Any] = {}
    for key, value in props.items():
        value = _scalar(value)
        lk = key.strip().lower()
        if lk in t.twins:
            f = t.twins[lk]
            # a Shapefile's `beskyt_rum` is the code under its feltnavn10; GeoFA's is the text
            numeric = value is None or (isinstance(value, (int, float))
                                        and not isinstance(value, bool))
            name = f.name if lk == f.short_name and numeric else lk
        elif lk in t.ly_by_name or lk in SYSTEM_EXTRA:
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
        if name in ("temanavn", "kommunekode"):
            continue
        f = t.ly_by_name.get(name)
        if f is not None:
            out[name] = _coerce(f, value, where)
    for twin, f in t.twins.items():
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
    point = _point_of(geometry, where)
    return {"type": "Feature", "id": out.get("objekt_id"),
            "geometry": {"type": "Point", "coordinates": list(point)}, "properties": out}


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


def _check_crs(crs_name: str | None, where: str) -> None:
    if crs_name and "25832" not in crs_name:
        raise FormatError(f"{where}: the CRS is {crs_name}; GeoFA exchange is EPSG:25832")


def read_geojson(data: dict | str | Path, t: Theme | None = None) -> list[dict]:
    """Ly features from GeoFA GeoJSON (a FeatureCollection in EPSG:25832)."""
    t = t or theme()
    if not isinstance(data, dict):
        data = json.loads(Path(data).read_text(encoding="utf-8"))
    crs = ((data.get("crs") or {}).get("properties") or {}).get("name")
    _check_crs(crs, "FeatureCollection")
    return [ly_feature(f.get("properties") or {}, f.get("geometry"), t, f"feature {i}")
            for i, f in enumerate(data.get("features") or [], start=1)]


# --- files ---------------------------------------------------------------------------------

def _frame(features: list[dict], t: Theme, profile: str, short: bool):
    import geopandas as gpd
    from shapely.geometry import MultiPoint

    cols = t.columns(profile)
    names = t.short_names(profile) if short else {c: c for c in cols}
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
        geoms.append(MultiPoint([_xy(f)]))
    frame = gpd.GeoDataFrame(rows, columns=list(names.values()), geometry=geoms, crs=25832)
    for c in cols:  # integer columns stay integers with nulls
        f = t.ly_by_name.get(c)
        integer = (f is not None and f.type == "integer") or c in ("temakode", "kommunekode")
        if integer and c in names:
            frame[names[c]] = frame[names[c]].astype("Int64")
    return frame


def write_file(features: Iterable[dict], path: str | Path, fmt: str, t: Theme | None = None,
               profile: str = "ly") -> Path:
    """Write features as `geojson`, `gml`, `gpkg` or `shp` (EPSG:25832, MultiPoint)."""
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
        pyogrio.write_dataframe(_frame(features, t, profile, short=False), path, layer=t.view,
                                driver="GPKG")
    elif fmt == "shp":
        pyogrio.write_dataframe(_frame(features, t, profile, short=True), path,
                                driver="ESRI Shapefile", encoding="UTF-8")
    else:
        raise FormatError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
    return path


def read_file(path: str | Path, t: Theme | None = None) -> list[dict]:
    """Ly features from a GeoFA exchange file (GeoJSON, GML, GeoPackage, Shapefile)."""
    t = t or theme()
    path = Path(path)
    if path.suffix.lower() in (".geojson", ".json"):
        return read_geojson(path, t)
    import pyogrio

    options = {}
    if path.suffix.lower() in (".gml", ".xml"):
        # never fetch the schema a WFS answer points at; never leave a .gfs beside the file
        pyogrio.set_gdal_config_options({"GML_DOWNLOAD_SCHEMA": "NO"})
        options["WRITE_GFS"] = "NO"
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
    f = t.ly_by_name.get(name)
    kind = f.type if f else ("integer" if (full_type or "").startswith("integer") else "string")
    return {"integer": "xsd:int", "number": "xsd:double"}.get(kind, "xsd:string")


def gml_schema(t: Theme, profile: str = "ly") -> str:
    """The application schema (as WFS DescribeFeatureType answers), so GDAL reads each
    attribute with its type and a house number "7" stays text."""
    types = dict(t.wire)
    elements = "\n".join(
        f'        <xsd:element name="{c}" type="{_xsd_type(t, c, types.get(c))}" minOccurs="0"/>'
        for c in t.columns(profile))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:fkg="{FKG_NS}"
  xmlns:gml="{GML_NS}" targetNamespace="{FKG_NS}" elementFormDefault="qualified" version="0.1">
  <xsd:import namespace="{GML_NS}"
    schemaLocation="http://schemas.opengis.net/gml/3.1.1/base/gml.xsd"/>
  <xsd:element name="fkg.{t.view}" type="fkg:fkg.{t.view}Type"
    substitutionGroup="gml:_Feature"/>
  <xsd:complexType name="fkg.{t.view}Type">
    <xsd:complexContent>
      <xsd:extension base="gml:AbstractFeatureType">
      <xsd:sequence>
        <xsd:element name="geometri" type="gml:MultiPointPropertyType" minOccurs="0"/>
{elements}
      </xsd:sequence>
      </xsd:extension>
    </xsd:complexContent>
  </xsd:complexType>
</xsd:schema>
"""


def to_gml(features: Iterable[dict], t: Theme | None = None, profile: str = "ly") -> str:
    """A WFS 1.1.0 GetFeature answer in GML 3 (MapServer's form: namespace prefix `fkg`,
    feature type `fkg.<view>`, gml:id `<view>.<objekt_id>`, MultiPoint in EPSG:25832)."""
    t = t or theme()
    features = list(features)
    members = []
    xs, ys = [], []
    for f in features:
        x, y = _xy(f)
        xs.append(x)
        ys.append(y)
        props = wire_properties(f["properties"], t, profile)
        attrs = "".join(
            f"<fkg:{k}>{escape(str(v).lower() if isinstance(v, bool) else str(v))}</fkg:{k}>"
            for k, v in props.items() if v is not None)
        members.append(
            f'<gml:featureMember><fkg:fkg.{t.view} gml:id="{t.view}.{props.get("objekt_id")}">'
            f'<gml:boundedBy><gml:Envelope srsName="{EPSG_URN}"><gml:lowerCorner>{x:.3f} {y:.3f}'
            f'</gml:lowerCorner><gml:upperCorner>{x:.3f} {y:.3f}</gml:upperCorner></gml:Envelope>'
            f'</gml:boundedBy><fkg:geometri><gml:MultiPoint srsName="{EPSG_URN}"><gml:pointMember>'
            f'<gml:Point><gml:pos>{x:.3f} {y:.3f}</gml:pos></gml:Point></gml:pointMember>'
            f'</gml:MultiPoint></fkg:geometri>{attrs}</fkg:fkg.{t.view}></gml:featureMember>')
    bbox = (f'<gml:boundedBy><gml:Envelope srsName="{EPSG_URN}"><gml:lowerCorner>{min(xs):.3f} '
            f'{min(ys):.3f}</gml:lowerCorner><gml:upperCorner>{max(xs):.3f} {max(ys):.3f}'
            f'</gml:upperCorner></gml:Envelope></gml:boundedBy>') if xs else \
        '<gml:boundedBy><gml:Null>missing</gml:Null></gml:boundedBy>'
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<wfs:FeatureCollection xmlns:fkg="{FKG_NS}"'
            f' xmlns:wfs="{WFS_NS}" xmlns:gml="{GML_NS}" '
            f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n{bbox}\n'
            + "\n".join(members) + "\n</wfs:FeatureCollection>\n")


# --- Ly's register as features -------------------------------------------------------------

def register_features(conn, where: str = "TRUE", params: list | None = None) -> list[dict]:
    """Current shelters of the register as Ly features (Point, EPSG:25832), every attribute
    with its twin; `where` filters the view `t`."""
    cur = conn.execute(
        "SELECT row_to_json(t)::jsonb - 'geometri', ST_X(t.geometri), ST_Y(t.geometri) "
        f"FROM ly.t_6101_beskyt_rum t WHERE {where} ORDER BY t.objekt_id", params or [])
    return [{"type": "Feature", "id": p["objekt_id"],
             "geometry": {"type": "Point", "coordinates": [x, y]}, "properties": p}
            for p, x, y in cur.fetchall()]


def attributes() -> list[str]:
    """Every Ly attribute name (for comparisons in tests and the sync)."""
    return [f.name for f in SHELTER_FIELDS]


def field(name: str) -> Field:
    return FIELDS_BY_NAME[name]
