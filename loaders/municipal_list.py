"""Import a municipality's list of shelters: CSV, XLSX, GeoPackage, Shapefile or GeoJSON.

A column mapping (JSON) says which source column holds which attribute:

```json
{"kolonner": {"Navn": "navn", "Pladser": "pladser", "Type": "beskyt_rum_kode",
              "Øst": "x", "Nord": "y", "Adresse": "adresse", "Nr": "noegle"},
 "vaerdier": {"beskyt_rum_kode": {"BDG": 3, "Offentligt": 1}},
 "standard": {"off_kode": 3},
 "crs": "EPSG:25832", "ark": "Ark1"}
```

(a flat `{"Navn": "navn", …}` is read as `kolonner`). Targets are the theme's attribute names
(`datamodel/themes`) or `x`/`y` (easting/northing, or longitude/latitude), `lat`/`lon`,
`wkt` (the point as WKT), `adresse` ("Vejnavn 12, 2100 København Ø"), `objekt_id` (a match key)
and `ignorer`. Columns the mapping does not name are taken when they carry an attribute's
name or its `feltnavn10` alias (so a GeoFA file upload, Shapefile with `temakode`, reads
without a mapping), and a column named as GIS programs name a WKT geometry (`WKT_COLUMNS`:
`WKT` from QGIS's "save as CSV" with GEOMETRY=AS_WKT, `wkt_geom`, `geometri`, `geometry`,
`the_geom`, `geom`, any case) is the `wkt` column. Coded attributes take the code or its text
("Betondækningsgrav").

A WKT column holds a POINT (or a MULTIPOINT of one point; Z is dropped), parsed by shapely
(GEOS); PostGIS's EWKT prefix `SRID=25832;` or `SRID=4326;` gives the value's own CRS (any
other SRID rejects the row); blank, `POINT EMPTY`,
`GEOMETRYCOLLECTION EMPTY` or any other empty geometry is a row without a point (matched to an
existing object, it keeps that object's point; a new object needs one), and text that is not
WKT, or another geometry, rejects the row naming the column. Its coordinates are in the
declared or detected CRS as x/y columns are (longitude first for EPSG:4326, as GIS programs
write WKT). A list uses either coordinate columns or a WKT column.

Coordinates are EPSG:25832 or EPSG:4326/CRS84, declared (`--crs`, the mapping's `crs`, the
file's own CRS) or detected from their magnitude; swapped latitude/longitude (or
easting/northing) are detected and the row rejected saying so (or corrected with
`fix_swapped`). Rows are matched to existing shelters by `objekt_id`, `noegle`, BBR building id
or address; unmatched rows are new shelters. Every rejected row is reported with its row number,
field and reason (`ly.afvist`, and a CSV report file).

The import is a staged run (`loaders.staging`): nothing reaches the register until the run is
published, in one transaction, after its quality gate.

A list is a list of one theme's objects (`theme`, default the shelters, theme 6101): the
targets, conversions, matching and validation come from the theme's descriptor, so a list of
another point theme is imported by passing that theme.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import psycopg
from psycopg import sql

from datamodel import crs as crsmod
from datamodel import themes
from datamodel.codelists import load_codelists
from datamodel.rules import Problem, complete, point_from_geojson, validate_properties
from datamodel.themes import Theme
from loaders import bulk_list, initial_load, staging
from loaders.staging import Gate, Progress, Rejected, RunError, Staged

ART = "kommunal_liste"
#: The theme whose lists this import takes unless told otherwise: the shelters.
THEME = themes.by_temakode(6101)
COORD_TARGETS = ("x", "y", "lat", "lon")
#: The target of a column holding the point as WKT text.
WKT_TARGET = "wkt"
SPECIAL_TARGETS = COORD_TARGETS + (WKT_TARGET, "adresse", "objekt_id", "temakode", "ignorer")
#: Column names (any case) taken as a WKT geometry without a mapping: QGIS's "save as" CSV
#: with GEOMETRY=AS_WKT (`WKT`), QGIS's layer view (`wkt_geom`), GeoFA's and PostGIS's
#: geometry column names, Aarhus University's BBR extracts.
WKT_COLUMNS = ("wkt", "wkt_geom", "geometri", "geometry", "the_geom", "geom")
SPREADSHEETS = (".csv", ".txt", ".tsv", ".xlsx", ".xlsm")
VECTORS = (".gpkg", ".shp", ".zip", ".geojson", ".json", ".gml")
KILDE_KOMMUNAL_LISTE = bulk_list.KILDE_KOMMUNAL_LISTE


class MappingError(RunError):
    """The mapping or the file cannot be used at all (nothing is staged)."""


# --- the mapping ---------------------------------------------------------------------------

@dataclass
class Mapping:
    kolonner: dict[str, str] = field(default_factory=dict)  # source column -> target
    vaerdier: dict[str, dict[str, Any]] = field(default_factory=dict)  # field -> text -> code
    standard: dict[str, Any] = field(default_factory=dict)  # defaults for new objects
    crs: str | None = None
    ark: str | None = None  # worksheet of an XLSX file
    theme: Theme = THEME  # whose attributes the targets are

    @classmethod
    def load(cls, source: str | Path | dict | None, theme: Theme = THEME) -> "Mapping":
        if source is None:
            return cls(theme=theme)
        if isinstance(source, dict):
            data = source
        else:
            try:
                data = json.loads(Path(source).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise MappingError(f"mapping {source}: cannot be read as JSON ({exc})") from None
        if not isinstance(data, dict):
            raise MappingError("mapping: must be a JSON object")
        if "kolonner" not in data and all(isinstance(v, (str, type(None))) for v in data.values()):
            data = {"kolonner": data}
        unknown = set(data) - {"kolonner", "vaerdier", "standard", "crs", "ark"}
        if unknown:
            raise MappingError(f"mapping: unknown member(s) {', '.join(sorted(unknown))} (allowed:"
                               " kolonner, vaerdier, standard, crs, ark)")
        m = cls(kolonner={k: (v or "ignorer") for k, v in (data.get("kolonner") or {}).items()},
                vaerdier={k: {str(t).casefold(): c for t, c in v.items()}
                          for k, v in (data.get("vaerdier") or {}).items()},
                standard=dict(data.get("standard") or {}), crs=data.get("crs"), ark=data.get("ark"),
                theme=theme)
        writable = {f.name for f in theme.writable_fields}
        for column, target in m.kolonner.items():
            if target not in SPECIAL_TARGETS and target not in writable:
                raise MappingError(f"mapping: column {column!r} maps to {target!r}, which is not "
                                   f"an attribute of {theme.collection_id} (nor x, y, lat, lon, "
                                   "wkt, adresse, objekt_id, ignorer)")
        for name in list(m.vaerdier) + list(m.standard):
            if name not in writable:
                raise MappingError(f"mapping: {name!r} is not a writable attribute")
        return m

    def as_dict(self) -> dict:
        return {"kolonner": self.kolonner, "vaerdier": self.vaerdier, "standard": self.standard,
                "crs": self.crs, "ark": self.ark}


def _auto_target(column: str, exact: bool, theme: Theme) -> str | None:
    """The attribute a column name stands for without a mapping: its name (`exact`), or its
    feltnavn10 alias."""
    c = column.strip().lower()
    if exact:
        f = theme.fields_by_name.get(c)
        if f is not None and f.writable:
            return c
        if c in ("objekt_id", "temakode", "x", "y", "lat", "lon", "adresse"):
            return c
        if c in WKT_COLUMNS:
            return WKT_TARGET
        return None
    for f in theme.fields:
        if f.writable and f.feltnavn10 == c:
            return f.name
    return None


def resolve_columns(columns: list[str], mapping: Mapping) -> tuple[dict[str, str], list[str]]:
    """(column -> target, ignored columns); refuses mapped columns the file lacks and targets
    claimed by two columns. Mapped columns come first, then exact attribute names, then
    feltnavn10 aliases for what is still unclaimed (so GeoFA's text twin `beskyt_rum` beside
    `beskyt_rum_kode` is ignored, while a Shapefile's `beskyt_rum` is the code). The targets
    are attributes of the mapping's theme."""
    missing = [c for c in mapping.kolonner if c not in columns]
    if missing:
        raise MappingError(f"mapping names column(s) {', '.join(map(repr, missing))} which the file"
                           f" does not have; it has: {', '.join(map(repr, columns))}")
    targets: dict[str, str] = {}
    claimed: dict[str, str] = {}

    def claim(column: str, target: str, explicit: bool) -> None:
        if target in claimed:
            if not explicit:
                return
            raise MappingError(f"columns {claimed[target]!r} and {column!r} both map to "
                               f"{target!r}; map one of them to \"ignorer\"")
        claimed[target] = column
        targets[column] = target

    for column, target in mapping.kolonner.items():
        if target != "ignorer":
            claim(column, target, True)
    for exact in (True, False):
        for column in columns:
            if column in targets or column in mapping.kolonner:
                continue
            target = _auto_target(column, exact, mapping.theme)
            if target is not None:
                claim(column, target, False)
    ignored = [c for c in columns if c not in targets]
    return {c: targets[c] for c in columns if c in targets}, ignored


# --- reading the file ----------------------------------------------------------------------

@dataclass
class SourceRow:
    raekke: int  # the spreadsheet row number (header = 1), or the feature number (from 1)
    values: dict[str, Any]
    point: tuple[float, float] | None = None  # the file's own geometry, in the file's CRS


@dataclass
class Source:
    rows: Sequence[SourceRow]
    columns: list[str]
    crs: str | None = None  # the file's own CRS (vector files)
    kind: str = "csv"
    frame: Any = None  # vector files: the table as read (typed columns, geometry)


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _read_csv(path: Path) -> Source:
    text = _decode(path.read_bytes())
    sample = text[:4096]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=";,\t|")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ";" if sample.count(";") > sample.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header: list[str] | None = None
    rows: list[SourceRow] = []
    for number, record in enumerate(reader, start=1):
        if header is None:
            if any(c.strip() for c in record):
                header = [c.strip() for c in record]
            continue
        values = {h: (record[i].strip() if i < len(record) else None) for i, h in enumerate(header)
                  if h}
        rows.append(SourceRow(number, values))
    if header is None:
        raise MappingError(f"{path.name}: the file is empty (no header row)")
    return Source(rows, [h for h in header if h], kind="csv")


def _read_xlsx(path: Path, sheet: str | None) -> Source:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a broken file
        raise MappingError(f"{path.name}: not a readable XLSX workbook ({exc})") from None
    if sheet is not None and sheet not in wb.sheetnames:
        raise MappingError(f"{path.name}: no worksheet {sheet!r} (it has "
                           f"{', '.join(wb.sheetnames)})")
    ws = wb[sheet] if sheet else wb.worksheets[0]
    header: list[str] | None = None
    rows: list[SourceRow] = []
    for number, record in enumerate(ws.iter_rows(values_only=True), start=1):
        if header is None:
            if any(c not in (None, "") for c in record):
                header = ["" if c is None else str(c).strip() for c in record]
            continue
        values = {h: (record[i] if i < len(record) else None) for i, h in enumerate(header) if h}
        values = {k: (v.strip() if isinstance(v, str) else v) for k, v in values.items()}
        rows.append(SourceRow(number, values))
    wb.close()
    if header is None:
        raise MappingError(f"{path.name}: the worksheet is empty (no header row)")
    return Source(rows, [h for h in header if h], kind="xlsx")


def _read_vector(path: Path) -> Source:
    import pyogrio

    try:
        # Not through Arrow: pyarrow would make every service worker 50 MB larger (pandas,
        # which folium imports, imports pyarrow whenever it is installed).
        table = pyogrio.read_dataframe(path, use_arrow=False)
    except Exception as exc:  # GDAL errors come in several classes
        raise MappingError(f"{path.name}: cannot be read as a vector file ({exc})") from None
    crs_name = None
    if table.crs is not None:
        authority = table.crs.to_authority() or ("", "")
        if authority == ("OGC", "CRS84") or table.crs.to_epsg() == 4326:
            crs_name = "CRS84"  # GDAL hands out longitude, latitude
        elif table.crs.to_epsg() == 25832:
            crs_name = "EPSG:25832"
        else:  # any other CRS the file declares: transformed to the storage CRS
            table = table.to_crs(25832)
            crs_name = "EPSG:25832"
    columns = [c for c in table.columns if c != "geometry"]
    return Source(FrameRows(table, columns), columns, crs=crs_name, kind="vector", frame=table)


class FrameRows(Sequence):
    """The rows of a table read from a vector file, made into `SourceRow`s when asked for (the
    fast path of a large file asks only for the rows it cannot take column by column)."""

    #: Slices longer than this convert whole columns first (far faster than cell by cell).
    WHOLE_COLUMNS = 1000

    def __init__(self, frame, columns: list[str]):
        import shapely

        self.frame, self.columns = frame, columns
        geoms = frame.geometry.values if "geometry" in frame.columns else None
        self._geoms = geoms
        self._kinds = shapely.get_type_id(geoms) if geoms is not None else None
        self._xs = shapely.get_x(geoms) if geoms is not None else None  # NaN: not a point
        self._ys = shapely.get_y(geoms) if geoms is not None else None
        self._cells: dict[str, list] | None = None

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, key):
        if isinstance(key, slice):
            indices = range(*key.indices(len(self)))
            if len(indices) > self.WHOLE_COLUMNS and self._cells is None:
                self._cells = {c: _plain_column(self.frame[c]) for c in self.columns}
            return [self._row(i) for i in indices]
        i = key + len(self) if key < 0 else key
        if not 0 <= i < len(self):
            raise IndexError(key)
        return self._row(i)

    def _row(self, i: int) -> SourceRow:
        if self._cells is not None:
            rec = {c: self._cells[c][i] for c in self.columns}
        else:
            rec = {c: _plain(self.frame[c].iat[i]) for c in self.columns}
        point = None
        kind = int(self._kinds[i]) if self._kinds is not None else -1
        if kind == 0 and self._xs[i] == self._xs[i]:  # a Point (not empty)
            point = (float(self._xs[i]), float(self._ys[i]))
        elif kind > 0:
            geom = self._geoms[i]
            if geom.is_empty:
                pass
            elif kind == 4 and len(geom.geoms) == 1:  # MultiPoint of one point
                point = (geom.geoms[0].x, geom.geoms[0].y)
            else:
                rec["__geometri_fejl__"] = f"{geom.geom_type} is not a point"
        return SourceRow(i + 1, rec, point)


def _plain_column(series) -> list:
    """A pandas column as plain Python values, as `_plain` makes of each cell."""
    import pandas as pd

    kind = series.dtype.kind
    if kind in "iub":  # integers and booleans without missing values
        return series.tolist()
    if kind == "f":
        return [None if v != v else v for v in series.tolist()]
    if kind == "M":
        return [None if pd.isna(v) else v.isoformat() for v in series.tolist()]
    return [v.strip() if type(v) is str else _plain(v) for v in series.tolist()]


def _plain(v: Any) -> Any:
    """A pandas/numpy cell as a plain Python value (NaN/NaT -> None)."""
    if v is None:
        return None
    try:
        import pandas as pd

        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(v, "item"):
        v = v.item()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v.strip() if isinstance(v, str) else v


def read_source(path: str | Path, mapping: Mapping) -> Source:
    path = Path(path)
    if not path.exists():
        raise MappingError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return _read_xlsx(path, mapping.ark)
    if suffix in (".csv", ".txt", ".tsv"):
        return _read_csv(path)
    if suffix in VECTORS:
        return _read_vector(path)
    raise MappingError(f"{path.name}: unknown format {suffix!r} (CSV, XLSX, GeoPackage, "
                       "Shapefile, GeoJSON)")


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- values --------------------------------------------------------------------------------

_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$")


def _number(value: Any) -> float | None:
    """A number from a cell: 12, 12.5, "12,5", "6 170 000,25"; None for blank; raises
    ValueError otherwise."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError
        return float(value)
    s = str(value).strip().replace("\u00a0", "").replace(" ", "")
    if s == "":
        return None
    if s.count(",") == 1 and s.count(".") >= 1 and s.index(".") < s.index(","):
        s = s.replace(".", "")  # 6.170.000,25
    if not _NUMBER.match(s):
        raise ValueError
    return float(s.replace(",", "."))


def _code_from_text(name: str, value: Any, mapping: Mapping) -> Any:
    f = mapping.theme.fields_by_name[name]
    text = str(value).strip()
    mapped = mapping.vaerdier.get(name, {}).get(text.casefold())
    if mapped is not None:
        return mapped
    try:
        n = _number(text)
    except ValueError:
        n = None
    if n is not None and float(n).is_integer():
        return int(n)
    codes = load_codelists()[f.codelist]
    for c in codes.values:
        if c.tekst.casefold() == text.casefold():
            return c.kode
    allowed = ", ".join(f"{c.kode} {c.tekst}" for c in codes.values if c.aktiv)
    raise ValueError(f"{text!r} is not a code or text of {f.codelist} (allowed: {allowed})")


def convert(name: str, value: Any, mapping: Mapping) -> Any:
    """A cell as the JSON value the validation rules expect (an attribute of the mapping's
    theme); raises ValueError with a reason."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    f = mapping.theme.fields_by_name[name]
    if f.codelist:
        return _code_from_text(name, value, mapping)
    if f.type == "integer":
        try:
            n = _number(value)
        except ValueError:
            raise ValueError(f"must be an integer, not {value!r}") from None
        if not float(n).is_integer():
            raise ValueError(f"must be an integer, not {value!r}")
        return int(n)
    if f.type == "number":
        try:
            return _number(value)
        except ValueError:
            raise ValueError(f"must be a number, not {value!r}") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


_ADDRESS = re.compile(
    r"^\s*(?P<vej>.*?[^\d\s,][^,]*?)\s+(?P<husnr>\d{1,3}\s?[A-Za-zÆØÅæøå]?)\b\s*"
    r"(?:,[^,\d]*?)?(?:,?\s*(?P<postnr>\d{4})\s+(?P<by>[^,]+?))?\s*$")


def parse_address(text: str) -> dict | None:
    """{vejnavn, husnr, postnr, postnr_by} from "Vejnavn 12A, 2100 København Ø"; None if the
    text does not look like an address."""
    m = _ADDRESS.match(text or "")
    if not m:
        return None
    out = {"vejnavn": m.group("vej").strip(" ,"),
           "husnr": m.group("husnr").replace(" ", "").upper()}
    if m.group("postnr"):
        out["postnr"] = int(m.group("postnr"))
        out["postnr_by"] = m.group("by").strip()
    return out


_EWKT_SRID = re.compile(r"^\s*SRID\s*=\s*(\d+)\s*;", re.IGNORECASE)


#: The CRS an EWKT `SRID=n;` prefix may name (EPSG:4326 as GIS programs write WKT: longitude
#: first).
EWKT_CRS = {25832: crsmod.STORAGE, 4326: crsmod.DEFAULT}


def wkt_point(value: Any) -> tuple[float, float, crsmod.Crs | None] | None:
    """(x, y, CRS) of a WKT POINT, or of a MULTIPOINT of one point (a Z is dropped), the CRS
    an EWKT `SRID=n;` prefix names (`EWKT_CRS`) or None (the list's); None for a blank cell
    or an empty geometry. Raises ValueError saying why otherwise."""
    import shapely

    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not WKT (a POINT)")
    text = value.strip()
    if text == "":
        return None
    own = None
    m = _EWKT_SRID.match(text)
    if m:
        own = EWKT_CRS.get(int(m.group(1)))
        if own is None:
            raise ValueError(f"declares SRID={m.group(1)}; a point is read in EPSG:25832 or "
                             "EPSG:4326")
        text = text[m.end():]
    try:
        geom = shapely.from_wkt(text)
    except (shapely.errors.GEOSException, ValueError) as exc:
        detail = str(exc).removeprefix("ParseException: ")
        raise ValueError(f"{_shown(value)} is not WKT ({detail})") from None
    if geom is None or geom.is_empty:
        return None
    if geom.geom_type == "MultiPoint":
        if len(geom.geoms) != 1:
            raise ValueError(f"is a MULTIPOINT of {len(geom.geoms)} points; one point is needed")
        geom = geom.geoms[0]
    if geom.geom_type != "Point":
        raise ValueError(f"is a {geom.geom_type.upper()}, not a POINT")
    return float(geom.x), float(geom.y), own


def _shown(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


# --- CRS -----------------------------------------------------------------------------------

def declared_crs(value: str | None) -> crsmod.Crs | None:
    if value is None:
        return None
    c = crsmod.lookup(value)
    if c is None or c.srid not in (4326, 25832):
        raise MappingError(f"crs: {value!r} is not supported (EPSG:25832, EPSG:4326 or CRS84)")
    return c


def detect_crs(pairs: list[tuple[float, float]]) -> crsmod.Crs:
    """EPSG:25832 when the coordinates are metres, else CRS84 (longitude, latitude; a row
    with latitude first is then reported as swapped)."""
    if pairs and all(abs(a) <= 180 and abs(b) <= 180 for a, b in pairs):
        return crsmod.DEFAULT
    return crsmod.STORAGE


# --- one row -------------------------------------------------------------------------------

@dataclass
class Context:
    kommunekode: int | None
    cvr_kode: int | None
    mapping: Mapping
    targets: dict[str, str]
    crs: crsmod.Crs
    fix_swapped: bool = False
    uses_latlon: bool = False
    uses_wkt: bool = False  # the point is a WKT column

    @property
    def theme(self) -> Theme:
        return self.mapping.theme


class Lookups:
    """Current objects that a batch of rows may match, fetched with one query per key kind
    (rather than a query per row): by objekt_id, noegle, BBR building id and address, and the
    municipality of each row's point."""

    def __init__(self, theme: Theme) -> None:
        self.theme = theme
        self.current = staging.current_rows(theme)
        self.by_id: dict[str, tuple] = {}
        self.by_noegle: dict[str, list[tuple]] = {}
        self.by_bbr: dict[str, list[tuple]] = {}
        self.by_address: dict[int, list[tuple]] = {}  # index in the batch -> matches
        self.kommune: dict[int, int | None] = {}  # index in the batch -> municipality
        self.at_sea_known = False  # municipalities are loaded: a point without one is at sea

    def _rows(self, cur, where: str, params: list) -> list[tuple]:
        return cur.execute(sql.SQL("SELECT {} WHERE {}").format(self.current, sql.SQL(where)),
                           params).fetchall()

    def fetch_keys(self, cur, prepared: list["Prepared"]) -> None:
        ids = sorted({p.objekt_id for p in prepared if p.objekt_id is not None})
        if ids:
            for r in self._rows(cur, "t.objekt_id = ANY(%s)", [ids]):
                self.by_id[r[0]["objekt_id"]] = r
        keys = sorted({str(p.props["noegle"]) for p in prepared if p.props.get("noegle")})
        if keys:
            for r in self._rows(cur, "t.noegle = ANY(%s::text[])", [keys]):
                self.by_noegle.setdefault(r[0]["noegle"], []).append(r)
        bbr = sorted({u for p in prepared if (u := _uuid_text(p.props.get("bbr_bygning_id")))})
        if bbr:
            for r in self._rows(cur, "t.bbr_bygning_id = ANY(%s::uuid[])", [bbr]):
                self.by_bbr.setdefault(r[0]["bbr_bygning_id"], []).append(r)

    def fetch_addresses(self, cur, wanted: dict[int, dict], kommunekode: int | None) -> None:
        """Matches by street name and house number (and postal code and kind when the row has
        them, and the list's municipality) for the rows `wanted` (index -> props)."""
        join = bulk_list.address_match(self.theme)
        if not wanted or join is None:
            return
        idx = list(wanted)
        props = [wanted[i] for i in idx]
        kind = bulk_list.kind_field(self.theme)
        for i, *r in cur.execute(
                sql.SQL("SELECT k.i, {} JOIN ").format(self.current) + join,
                [idx, [p["vejnavn"] for p in props], [p["husnr"] for p in props],
                 [p.get("postnr") or None for p in props],
                 [(p.get(kind) or None) if kind else None for p in props],
                 kommunekode, kommunekode]).fetchall():
            self.by_address.setdefault(i, []).append(tuple(r))

    def fetch_municipalities(self, cur, points: dict[int, tuple[float, float]]) -> None:
        """The municipality of each point (`ly.kommune_ved`: containing it, or within 5 km
        of the generalised coast; None at sea), when municipalities are loaded at all."""
        self.at_sea_known = bool(cur.execute("SELECT EXISTS (SELECT 1 FROM ly.kommune)"
                                             ).fetchone()[0])
        if not points or not self.at_sea_known:
            return
        idx = list(points)
        self.kommune.update(cur.execute(
            "SELECT k.i, ly.kommune_ved(ST_SetSRID(ST_MakePoint(k.x, k.y), 25832)) "
            "FROM unnest(%s::int[], %s::float8[], %s::float8[]) AS k(i, x, y)",
            [idx, [points[i][0] for i in idx], [points[i][1] for i in idx]]).fetchall())


def _uuid_text(value: Any) -> str | None:
    if value in (None, ""):
        return None
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None  # not a UUID: matches nothing, and the validation rejects it


def _label(name: str, ctx: Context) -> str:
    cols = [c for c, t in ctx.targets.items() if t == name]
    return f"{name} (column {cols[0]!r})" if cols else name


def _relabel(problems: list[Problem], ctx: Context) -> list[Problem]:
    out = []
    for p in problems:
        name = p.field.removeprefix("properties.")
        if name in ctx.theme.fields_by_name:
            out.append(Problem(_label(name, ctx), p.detail))
        elif p.field.startswith("geometry"):
            out.append(Problem("geometri", p.detail))
        else:
            out.append(p)
    return out


def _point(row: SourceRow, raw: dict, ctx: Context, problems: list[Problem]
           ) -> tuple[tuple[float, float] | None, str | None]:
    """The row's point in EPSG:25832 (or None when it has none), and a remark."""
    values: dict[str, float | None] = {}
    for target in COORD_TARGETS:
        if target in raw:
            try:
                values[target] = _number(raw[target])
            except ValueError:
                problems.append(Problem(_label(target, ctx),
                                        f"must be a number, not {raw[target]!r}"))
                return None, None
    if "__geometri_fejl__" in row.values:
        problems.append(Problem("geometri", row.values["__geometri_fejl__"]))
        return None, None
    crs = ctx.crs
    if ctx.uses_wkt:
        try:
            wkt = wkt_point(raw.get(WKT_TARGET))
        except ValueError as exc:
            problems.append(Problem(_label(WKT_TARGET, ctx), str(exc)))
            return None, None
        if wkt is not None:
            values["x"], values["y"], own = wkt
            crs = own or crs
    if ctx.uses_latlon:
        pair = (values.get("lon"), values.get("lat"))
        names = ("lon", "lat")
    else:
        pair = (values.get("x"), values.get("y"))
        names = ("x", "y")
    if pair == (None, None):
        if row.point is None:
            return None, None
        pair = row.point
    elif None in pair:
        missing = names[pair.index(None)]
        problems.append(Problem(_label(missing, ctx), "is missing (both coordinates are needed)"))
        return None, None
    found: list[Problem] = []
    xy = point_from_geojson({"type": "Point", "coordinates": list(pair)}, crs, found)
    if xy is not None:
        return xy, None
    if ctx.fix_swapped and found and "swapped" in found[0].detail:
        xy = point_from_geojson({"type": "Point", "coordinates": [pair[1], pair[0]]}, crs, [])
        if xy is not None:
            return xy, f"swapped axes corrected ({pair[0]}, {pair[1]})"
    problems.extend(Problem("geometri", p.detail) for p in found)
    return None, None


@dataclass
class Prepared:
    """A source row read and converted, before it is matched against the register."""

    row: SourceRow
    kilde: dict
    props: dict[str, Any]
    xy: tuple[float, float] | None
    remark: str | None
    objekt_id: str | None  # a UUID given as the match key


def prepare_row(row: SourceRow, ctx: Context) -> Prepared | Rejected | None:
    """Read one source row: convert its cells, parse its address and point (no database)."""
    kilde = {k: staging.jsonable(v) for k, v in row.values.items() if not k.startswith("__")}
    if all(v in (None, "") for v in row.values.values()) and row.point is None:
        return None  # a blank line
    problems: list[Problem] = []
    raw = {t: row.values.get(c) for c, t in ctx.targets.items()}
    temakode = raw.pop("temakode", None)
    own = ctx.theme.temakode
    if temakode not in (None, "") and str(temakode).strip() not in (str(own), f"{own}.0"):
        problems.append(Problem(_label("temakode", ctx),
                                f"is {temakode}; this import takes theme {own} only"))
    props: dict[str, Any] = {}
    for target, value in raw.items():
        if target in SPECIAL_TARGETS:
            continue
        try:
            converted = convert(target, value, ctx.mapping)
        except ValueError as exc:
            problems.append(Problem(_label(target, ctx), str(exc)))
            continue
        if converted is not None:
            props[target] = converted
    address = raw.get("adresse")
    if address not in (None, ""):
        parsed = parse_address(str(address))
        if parsed is None:
            problems.append(Problem(_label("adresse", ctx),
                                    f"{address!r} is not an address (\"Vejnavn 12, 2100 By\")"))
        else:
            for k, v in parsed.items():
                props.setdefault(k, v)
    xy, remark = _point(row, raw, ctx, problems)
    if problems:
        return Rejected(row.raekke, _relabel(problems, ctx), kilde)
    objekt_id = raw.get("objekt_id")
    oid = None
    if objekt_id not in (None, ""):
        try:
            oid = str(uuid.UUID(str(objekt_id)))
        except ValueError:
            return Rejected(row.raekke, [Problem(_label("objekt_id", ctx),
                                                 f"{objekt_id!r} is not a UUID")], kilde)
    return Prepared(row, kilde, props, xy, remark, oid)


def _match_keys(p: Prepared, lk: Lookups, ctx: Context
                ) -> tuple[str | None, list, Rejected | None]:
    """How the row matches by objekt_id, noegle or BBR id: (match, found rows, rejection)."""
    label = _label
    if p.objekt_id is not None:
        found = lk.by_id.get(p.objekt_id)
        if found is None:
            return None, [], Rejected(p.row.raekke, [Problem(
                label("objekt_id", ctx), f"{p.objekt_id} is not a current shelter")], p.kilde)
        return "objekt_id", [found], None
    for key, name, table, norm in (("noegle", "noegle", lk.by_noegle, str),
                                   ("bbr", "bbr_bygning_id", lk.by_bbr, _uuid_text)):
        if p.props.get(name):
            found = table.get(norm(p.props[name]) or "", [])
            if len(found) > 1:
                return None, [], Rejected(p.row.raekke, [Problem(label(name, ctx), (
                    f"{p.props[name]} matches {len(found)} shelters; give objekt_id"))], p.kilde)
            if found:
                return key, found, None
    return None, [], None


def resolve_rows(cur, rows: list[SourceRow], ctx: Context) -> list[Staged | Rejected | None]:
    """The candidate (or rejection) each source row of a batch becomes, in order. The register
    is read with a few queries per batch (see `Lookups`), not per row."""
    out: list[Staged | Rejected | None | Prepared] = [prepare_row(r, ctx) for r in rows]
    prepared = {i: p for i, p in enumerate(out) if isinstance(p, Prepared)}
    lk = Lookups(ctx.theme)
    lk.fetch_keys(cur, list(prepared.values()))
    matched: dict[int, tuple[str | None, list]] = {}
    for i, p in prepared.items():
        match, found, rejected = _match_keys(p, lk, ctx)
        if rejected is not None:
            out[i] = rejected
        else:
            matched[i] = (match, found)
    lk.fetch_addresses(cur, {i: prepared[i].props for i, (m, _) in matched.items()
                             if m is None and prepared[i].props.get("vejnavn")
                             and prepared[i].props.get("husnr")}, ctx.kommunekode)
    lk.fetch_municipalities(cur, {i: prepared[i].xy for i in matched
                                  if prepared[i].xy is not None})
    for i, (match, found) in matched.items():
        out[i] = _resolve(prepared[i], match, found, lk.by_address.get(i, []), lk.kommune.get(i),
                          lk.at_sea_known, ctx)
    return out  # type: ignore[return-value]


def _resolve(p: Prepared, match: str | None, found: list, by_address: list,
             kommune: int | None, at_sea_known: bool, ctx: Context) -> Staged | Rejected:
    row, props, xy = p.row, p.props, p.xy
    if match is None and by_address:
        if len(by_address) > 1:
            return Rejected(row.raekke, [Problem(_label("adresse", ctx), (
                f"{props['vejnavn']} {props['husnr']} matches {len(by_address)} shelters; "
                "give objekt_id or noegle"))], p.kilde)
        match, found = "adresse", by_address
    if xy is not None and at_sea_known and kommune is None:
        return Rejected(row.raekke, [Problem("geometri", (
            f"the point ({xy[0]:.1f}, {xy[1]:.1f}) lies at sea, more than 5 km from every "
            "Danish municipality"))], p.kilde)
    if xy is not None and ctx.kommunekode is not None and kommune != ctx.kommunekode:
        return Rejected(row.raekke, [Problem("geometri", (
            f"the point ({xy[0]:.1f}, {xy[1]:.1f}) lies in municipality {kommune}, not in "
            f"{ctx.kommunekode} whose list this is"))], p.kilde)
    if match is not None:
        return _change(row, ctx, found[0], props, xy, match, p.remark, p.kilde)
    return _create(row, ctx, props, xy, p.remark, p.kilde)


def _change(row, ctx, current_row, props, xy, match, remark, kilde) -> Staged | Rejected:
    current, cx, cy = current_row
    if ctx.kommunekode is not None and current["beliggenhedskommune"] != ctx.kommunekode \
            and current["cvr_kode"] != ctx.cvr_kode:
        return Rejected(row.raekke, [Problem(match, (
            f"matches {current['objekt_id']} in municipality {current['beliggenhedskommune']}, "
            f"outside the list's municipality {ctx.kommunekode}"))], kilde)
    theme = ctx.theme
    sourced = bulk_list.figure_source(theme)
    if sourced is not None:
        fig, src = sourced
        if fig in props and props[fig] != current.get(fig) and src not in ctx.targets.values():
            props[src] = KILDE_KOMMUNAL_LISTE
    problems: list[Problem] = []
    writable = [f.name for f in theme.writable_fields]
    merged = {name: current.get(name) for name in writable}
    merged.update(props)
    values = validate_properties(merged, problems, previous=current, theme=theme)
    record = complete(values, problems, theme)
    if problems:
        return Rejected(row.raekke, _relabel(problems, ctx), kilde)
    new_xy = xy or (cx, cy)
    changes = {}
    for name in writable:
        old, new = staging.jsonable(current.get(name)), staging.jsonable(record.get(name))
        if isinstance(old, (int, float)) and isinstance(new, (int, float)):
            same = float(old) == float(new)
        else:
            same = old == new
        if not same:
            changes[name] = [old, new]
    if math.dist(new_xy, (cx, cy)) > 0.001:
        changes["geometri"] = [[round(cx, 3), round(cy, 3)], [round(new_xy[0], 3),
                                                              round(new_xy[1], 3)]]
    return Staged(row.raekke, "ret" if changes else "uaendret", uuid.UUID(current["objekt_id"]),
                  record=record, ewkt=f"SRID=25832;POINT({new_xy[0]:.3f} {new_xy[1]:.3f})",
                  foer_versions_id=uuid.UUID(current["versions_id"]), match=match,
                  aendringer=changes or None, kilde=kilde, bemaerkning=remark)


def _create(row, ctx, props, xy, remark, kilde) -> Staged | Rejected:
    problems: list[Problem] = []
    if xy is None:
        problems.append(Problem("geometri", "coordinates are missing, and the row matches no "
                                            "existing shelter (a new shelter needs a point)"))
    theme = ctx.theme
    values = dict(ctx.mapping.standard)
    values.update(props)
    sourced = bulk_list.figure_source(theme)
    if sourced is not None and sourced[0] in values and sourced[1] not in values:
        values[sourced[1]] = KILDE_KOMMUNAL_LISTE
    if "cvr_kode" not in values and ctx.cvr_kode is not None:
        values["cvr_kode"] = ctx.cvr_kode
    values = validate_properties(values, problems, theme=theme)
    record = complete(values, problems, theme)
    if problems:
        return Rejected(row.raekke, _relabel(problems, ctx), kilde)
    key = None
    kind_name = bulk_list.kind_field(theme)
    kind = record.get(kind_name) if kind_name else None
    if record.get("noegle"):
        key = f"noegle:{record['noegle']}"
    elif record.get("vejnavn") and record.get("husnr"):
        key = (f"adresse:{record['vejnavn'].casefold()}|{record['husnr'].upper()}|"
               f"{record.get('postnr') or ''}|{kind}")
    else:
        key = f"punkt:{round(xy[0])}:{round(xy[1])}:{kind}"
    return Staged(row.raekke, "opret", uuid.uuid4(), record=record,
                  ewkt=f"SRID=25832;POINT({xy[0]:.3f} {xy[1]:.3f})", match="ny",
                  dublet_noegle=key, aendringer={k: [None, staging.jsonable(v)]
                                                 for k, v in record.items() if v is not None},
                  kilde=kilde, bemaerkning=remark)


# --- the run -------------------------------------------------------------------------------

def _context(conn, source: Source, params: dict, theme: Theme) -> Context:
    mapping = Mapping.load(params["mapping"], theme)
    targets, _ = resolve_columns(source.columns, mapping)
    used = set(targets.values())
    uses_latlon = bool({"lat", "lon"} & used)
    if uses_latlon and {"x", "y"} & used:
        raise MappingError("mapping: use either x/y or lat/lon columns, not both")
    uses_wkt = WKT_TARGET in used
    if uses_wkt and set(COORD_TARGETS) & used:
        wkt_col = next(c for c, t in targets.items() if t == WKT_TARGET)
        raise MappingError(f"mapping: use either coordinate columns or the WKT column "
                           f"{wkt_col!r}, not both (map one of them to \"ignorer\")")
    has_columns = bool(set(COORD_TARGETS) & used) or uses_wkt
    crs = declared_crs(params.get("crs") or mapping.crs)
    if crs is None and source.crs and not has_columns:
        crs = declared_crs(source.crs)
    if crs is None:
        sample = []
        for r in source.rows[:200]:
            try:
                if uses_wkt:  # a value with its own SRID says nothing of the others'
                    col = next(c for c, t in targets.items() if t == WKT_TARGET)
                    a, b, own = wkt_point(r.values.get(col)) or (None, None, None)
                    if own is not None:
                        continue
                elif has_columns:
                    names = ("lon", "lat") if uses_latlon else ("x", "y")
                    cols = [next((c for c, t in targets.items() if t == n), None) for n in names]
                    a = _number(r.values.get(cols[0])) if cols[0] else None
                    b = _number(r.values.get(cols[1])) if cols[1] else None
                else:
                    a, b = r.point if r.point else (None, None)
            except ValueError:
                continue
            if a is not None and b is not None:
                sample.append((a, b))
        crs = detect_crs(sample)
    if uses_latlon or uses_wkt:  # longitude first, as GIS programs write WKT
        crs = crsmod.DEFAULT if crs.geographic else crs
    return Context(params.get("kommunekode"), params.get("cvr_kode"), mapping, targets, crs,
                   bool(params.get("fix_swapped")), uses_latlon, uses_wkt)


def _municipality_cvr(conn, kommunekode: int | None) -> int | None:
    if kommunekode is None:
        return None
    row = conn.execute("SELECT cvr_kode FROM ly.kommune WHERE kommunekode = %s",
                       [kommunekode]).fetchone()
    if row is None:
        raise MappingError(f"kommune: {kommunekode} is not a municipality code")
    return row[0]


def start(conn: psycopg.Connection, path: str | Path, *, mapping: str | Path | dict | None,
          kommunekode: int | None, crs: str | None = None, gate: Gate | None = None,
          fuld: bool = False, fix_swapped: bool = False, subjekt: str = "ly-import",
          theme: Theme = THEME) -> int:
    """Check the file and the mapping and create the run (nothing staged yet)."""
    return begin(conn, path, mapping=mapping, kommunekode=kommunekode, crs=crs, gate=gate,
                 fuld=fuld, fix_swapped=fix_swapped, subjekt=subjekt, theme=theme)[0]


def begin(conn: psycopg.Connection, path: str | Path, *, mapping: str | Path | dict | None,
          kommunekode: int | None, crs: str | None = None, gate: Gate | None = None,
          fuld: bool = False, fix_swapped: bool = False, subjekt: str = "ly-import",
          theme: Theme = THEME) -> tuple[int, Source]:
    """`start`, also returning the file as read (for `stage_run`, so it is read once)."""
    path = Path(path).resolve()
    m = Mapping.load(mapping, theme)
    source = read_source(path, m)
    cvr = _municipality_cvr(conn, kommunekode)
    params = {"fil": str(path), "mapping": m.as_dict(), "crs": crs, "kommunekode": kommunekode,
              "cvr_kode": cvr, "fuld": fuld, "fix_swapped": fix_swapped,
              "gate": (gate or Gate()).as_dict()}
    ctx = _context(conn, source, params, theme)
    params["crs_brugt"] = ctx.crs.uri
    params["kolonner"] = ctx.targets
    params["raekker"] = len(source.rows)
    run_id = staging.create_run(conn, ART, str(path), parametre=params, kommunekode=kommunekode,
                                cvr_kode=cvr, subjekt=subjekt, kilde_sha256=sha256(path),
                                theme=theme)
    return run_id, source


def _ended_by_full_list(conn, run_id: int, kommunekode: int, theme: Theme) -> list[Staged]:
    """Objects of the list's kinds (every object, when the theme has no kinds) in its
    municipality that no row matched."""
    kind, fig = bulk_list.kind_field(theme), staging.figure(theme)
    of_kinds = sql.SQL("")
    if kind:
        of_kinds = sql.SQL("AND t.{kind} IN (SELECT DISTINCT (vaerdier ->> {name})::int "
                           "FROM ly.kandidat WHERE koersel_id = %(run)s AND vaerdier IS NOT "
                           "NULL) ").format(kind=sql.Identifier(kind), name=sql.Literal(kind))
    rows = conn.execute(sql.SQL(
        "SELECT objekt_id, versions_id, {fig} FROM {view} t "
        "WHERE beliggenhedskommune = %(kommune)s {of_kinds}AND NOT EXISTS (SELECT 1 FROM "
        "ly.kandidat k WHERE k.koersel_id = %(run)s AND k.objekt_id = t.objekt_id) "
        "ORDER BY objekt_id").format(
            fig=sql.Identifier(fig) if fig else sql.SQL("NULL"),
            view=sql.Identifier("ly", theme.current_view), of_kinds=of_kinds),
        {"kommune": kommunekode, "run": run_id}).fetchall()
    return [Staged(0, "afslut", o, foer_versions_id=v, match="fuld_liste",
                   aendringer={fig: [p, None]} if fig else None,
                   bemaerkning="not on the complete list") for o, v, p in rows]


def stage_run(conn: psycopg.Connection, run_id: int, *, batch_size: int = staging.DEFAULT_BATCH,
              progress: Progress | None = None, source: Source | None = None,
              publish: bool = False) -> dict:
    """Stage (or resume staging) a list run and close it with the quality gate. Returns the
    gate's report. `source`: the file as `start` read it (else it is read again).
    `publish`: the run is to be published when it passes; a large file for an empty register
    is then loaded and published at once (`loaders.initial_load`). The run's theme is the one
    it was started for."""
    run = staging.get_run(conn, run_id)
    if run["art"] != ART:
        raise RunError(f"run {run_id} is a {run['art']} run, not a municipal list")
    theme = staging.run_theme(run)
    params = run["parametre"]
    path = Path(params["fil"])
    if not path.exists():
        raise RunError(f"run {run_id}: its file {path} is gone")
    if sha256(path) != run["kilde_sha256"]:
        raise RunError(f"run {run_id}: {path} has changed since the run started; start a new run")
    if source is None:
        source = read_source(path, Mapping.load(params["mapping"], theme))
    ctx = _context(conn, source, params, theme)
    progress = progress or Progress()
    progress.total(len(source.rows))
    progress.advance(run["naeste_raekke"])

    def items() -> Iterator:
        remaining = list(staging.iter_remaining(source.rows, run))
        with conn.cursor() as cur:
            for start in range(0, len(remaining), batch_size):
                yield from resolve_rows(cur, remaining[start:start + batch_size], ctx)

    if run["status"] == "indlaeser":
        fast = bulk_list.plan(source, ctx, convert)
        if publish and initial_load.load(conn, run_id, source, ctx, fast, resolve_rows,
                                         progress=progress) is not None:
            return staging.get_run(conn, run_id)["kvalitet"]
        if fast is not None:  # a large vector file: column by column (loaders.bulk_list)
            bulk_list.stage(conn, run_id, source, ctx, fast, resolve_rows,
                            batch_size=batch_size, progress=progress)
        else:
            staging.stage(conn, run_id, items(), batch_size=batch_size, progress=progress)
        extra = _ended_by_full_list(conn, run_id, params["kommunekode"], theme) \
            if params.get("fuld") and params.get("kommunekode") else []
        return staging.finish_staging(conn, run_id, extra=extra)
    return run["kvalitet"]


def import_list(conn: psycopg.Connection, path: str | Path, *, mapping=None,
                kommunekode: int | None = None, crs: str | None = None, gate: Gate | None = None,
                fuld: bool = False, fix_swapped: bool = False, publish: bool = False,
                batch_size: int = staging.DEFAULT_BATCH, subjekt: str = "ly-import",
                progress: Progress | None = None, theme: Theme = THEME) -> int:
    """Start, stage and (when asked and the gate passes) publish a list of `theme`'s objects.
    Returns the run id."""
    run_id, source = begin(conn, path, mapping=mapping, kommunekode=kommunekode, crs=crs,
                            gate=gate, fuld=fuld, fix_swapped=fix_swapped, subjekt=subjekt,
                            theme=theme)
    try:
        stage_run(conn, run_id, batch_size=batch_size, progress=progress, source=source,
                  publish=publish)
    except Exception as exc:
        staging.mark_failed(conn, run_id, f"{type(exc).__name__}: {exc}")
        raise
    if publish and staging.get_run(conn, run_id)["status"] == "klar":
        staging.publish(conn, run_id)
    return run_id
