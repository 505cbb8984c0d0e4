"""Exports of a theme's register: GeoJSON, CSV, XLSX, GeoPackage and Shapefile, written batch
by batch so memory stays constant however many objects are exported.

This module knows nothing of HTTP (it never imports the service). It gives
- `export_sql(q, fmt)`: the statement that reads the filtered register (the filters of an
  items request, no paging), for a server-side cursor;
- a writer per format. A writer takes batches of rows of that statement:
  streamed formats (GeoJSON, CSV) return the bytes of each batch to send at once; file
  formats (XLSX, GeoPackage, Shapefile) append each batch to a file in a directory the
  caller gives (and owns: it removes it, and everything in it, however the export ends) and,
  at the end, name the finished file. Everything a file writer writes is in that directory,
  also openpyxl's stream of the sheet's rows (which openpyxl itself would put in the system
  temporary directory); `close()` releases a writer's open files, finished or not;
- `count_sql(q, limit)`: how many objects the export would hold, counting at most `limit`
  (an XLSX export is refused before it is written when more than a sheet holds match).

Everything follows the theme of the query (`q.theme`, a `datamodel.themes.Theme`): the
columns are the audience's attributes of that theme (`Theme.property_columns`: the public
subset for the public, which never holds a personal attribute; signed in, the theme's view
decides, so personal attributes are NULL for planners and inspectors) with the text twins
beside their codes; the geometry is the theme's (a Point, or a MultiPolygon for an area
theme, written as such); the layer, the files inside a Shapefile's zip and the file name are
the collection id.
- GeoJSON: features built by PostGIS exactly as the items resource builds them (axis order
  of the output CRS, as OGC API - Features Part 2 says); a CRS other than CRS84 is also named
  in the legacy `crs` member so GDAL and QGIS pick it up from the file.
- CSV: a `WKT` column first (GDAL reads it as the geometry: POINT or MULTIPOLYGON), in the
  output CRS's axis order like GeoJSON, then the attribute columns, in one of two dialects
  (`CSV_DIALECTS`): `da` (the default), what a Danish desktop's spreadsheet opens as it is —
  UTF-8 with a byte order mark, `;` between fields, every value in double quotes (so the
  commas of decimal numbers, WKT and text never split a field, also where LibreOffice's text
  import splits at commas too), decimal comma, dates `YYYY-MM-DD`, date-times
  `YYYY-MM-DD HH:MM:SS` in Danish time, and text that a spreadsheet would run as a formula
  (`=`, `+`, `-`, `@` first) kept as text with a leading `'`; and `rfc4180`, for
  programs: `,`, no BOM, quotes only where needed, decimal point, RFC 3339 date-times in UTC
  and the values as stored.
- XLSX: typed cells (numbers as numbers, dates and date-times as Excel dates with a number
  format, date-times in Danish time; text that looks like a formula stays text), the
  columns people read first (`desktop_columns`: the theme's label, its address, its own coded
  attributes as text, its report figures, its validity period, the municipality; then the
  rest in the theme's order, the `WKT` last), column widths from the header and the first
  rows, the header row frozen and an autofilter over the table. A sheet holds at most
  1 048 575 objects (`TooManyRows`) and a cell at most 32 767 characters: an area whose WKT
  is longer refuses the export (`CellTooLong`) rather than cutting the geometry.
- GeoPackage: typed columns (integers, reals, text, dates, date-times in UTC), a layer named
  for the collection with the theme's geometry type, coordinates east/north (x = longitude
  for geographic CRSs, as GeoPackage stores them) with the CRS in the file.
- Shapefile: a .zip with <collection>.shp/.shx/.dbf/.prj/.cpg (UTF-8), points or polygons
  (a Shapefile's polygon type holds multi-part areas). dBASE field names have at most 10
  characters: each attribute gets its `Field.short_name` (`feltnavn10`, from the theme's
  descriptor); a text twin is kept only when its own name fits and differs from every other
  column (so `cvr_navn`, `oprindelse`, `status`, `offentlig` stay; a twin whose name is its
  code field's short name, or longer than 10, is dropped). Dates are dBASE dates, UUIDs and
  date-times text, and text longer than dBASE's 254 bytes is cut there.
"""

from __future__ import annotations

import csv
import io
import os
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
from psycopg import sql

from datamodel import crs as crsmod
from datamodel import query
from datamodel.fields import AENDRINGSAARSAG, BELIGGENHEDSKOMMUNE, GEOMETRY_COLUMN, generic_fields
from datamodel.themes import Theme

#: Rows per fetch from the server-side cursor (and per append to a file).
BATCH = 5000
#: Excel's sheet holds 1 048 576 rows, one of them the header.
XLSX_MAX_ROWS = 1_048_575
#: Excel's cell holds at most 32 767 characters.
XLSX_MAX_CELL = 32_767
#: Excel's sheet names have at most 31 characters.
XLSX_MAX_SHEET_NAME = 31
DBF_TEXT_BYTES = 254
#: Desktop files (the `da` CSV, XLSX) give date-times in Danish time, as people read them.
LOCAL_TIME_ZONE = ZoneInfo(query.VALIDITY_TIME_ZONE)
#: FKG's standard address attributes, in reading order (where a theme has them).
ADDRESS_FIELDS = ("vejnavn", "husnr", "postnr", "postnr_by")
#: Attributes every theme shares (the FKG generic ones and Ly's): not a theme's own.
_SHARED = frozenset({f.name for f in generic_fields()}
                    | {BELIGGENHEDSKOMMUNE.name, AENDRINGSAARSAG.name})
#: Excel's column width is in characters; wider columns are cut to this (the text wraps).
XLSX_MAX_WIDTH = 50
XLSX_DATE = "yyyy-mm-dd"
XLSX_DATETIME = "yyyy-mm-dd hh:mm:ss"


@dataclass(frozen=True)
class CSVDialect:
    """How a CSV export is written (`csv-dialect`)."""

    name: str
    delimiter: str
    bom: bool  # UTF-8 with a byte order mark (Excel then reads UTF-8, not the ANSI code page)
    quoting: int  # csv.QUOTE_ALL or csv.QUOTE_MINIMAL
    desktop: bool  # decimal comma, Danish time, formula-looking text guarded
    description: str


CSV_DIALECTS: dict[str, CSVDialect] = {
    "da": CSVDialect(
        "da", ";", True, csv.QUOTE_ALL, True,
        "Danish desktops (Excel, LibreOffice in da-DK): UTF-8 with BOM, semicolons, every "
        "value quoted, decimal comma, dates YYYY-MM-DD, date-times YYYY-MM-DD HH:MM:SS in "
        "Danish time"),
    "rfc4180": CSVDialect(
        "rfc4180", ",", False, csv.QUOTE_MINIMAL, False,
        "RFC 4180 for programs: UTF-8 without BOM, commas, decimal point, RFC 3339 date-times "
        "in UTC"),
}
#: Danish users are the audience: the default is what Danish Excel opens as it is.
DEFAULT_CSV_DIALECT = "da"
#: What a spreadsheet takes for a formula when a cell starts with it (OWASP's CSV injection).
_FORMULA_START = ("=", "+", "-", "@")


@dataclass(frozen=True)
class Format:
    name: str  # the `f` value
    media_type: str
    suffix: str  # of the file name
    streamed: bool  # sent while it is read (else written to a file first)
    default_crs: crsmod.Crs
    geometry: str  # "feature" (GeoJSON built in PostGIS), "wkt" or "wkb"


FORMATS: dict[str, Format] = {
    "geojson": Format("geojson", "application/geo+json", "geojson", True, crsmod.DEFAULT,
                      "feature"),
    "csv": Format("csv", "text/csv; charset=utf-8", "csv", True, crsmod.DEFAULT, "wkt"),
    "xlsx": Format("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                   "xlsx", False, crsmod.DEFAULT, "wkt"),
    # GIS files carry their CRS; Danish GIS works in the storage CRS (as GeoFA's downloads).
    "gpkg": Format("gpkg", "application/geopackage+sqlite3", "gpkg", False, crsmod.STORAGE,
                   "wkb"),
    "shp": Format("shp", "application/zip", "shp.zip", False, crsmod.STORAGE, "wkb"),
}


class DoesNotFit(ValueError):
    """The result does not fit the format."""


class TooManyRows(DoesNotFit):
    """More objects than an XLSX sheet holds."""

    @classmethod
    def xlsx(cls) -> "TooManyRows":
        return cls(f"an XLSX sheet holds at most {XLSX_MAX_ROWS} objects and more match: "
                   "narrow the filter, or export CSV or GeoPackage (f=csv, f=gpkg)")


class CellTooLong(DoesNotFit):
    """A value longer than an XLSX cell holds."""


def columns(theme: Theme, public: bool) -> list[tuple[str, str]]:
    """(name, type) of a theme's attribute columns for an audience: each field, its twin
    after. The public's never hold a personal attribute."""
    fields = theme.audience_fields(public)
    if public:
        fields = tuple(f for f in fields if not f.personal)
    out: list[tuple[str, str]] = []
    for f in fields:
        out.append((f.name, f.type))
        if f.twin:
            out.append((f.twin, "string"))
    assert [n for n, _ in out] == theme.property_columns(public), "personal attribute public"
    return out


def shapefile_names(theme: Theme, public: bool) -> list[str | None]:
    """The dBASE name of each column of `columns(theme, public)`, None for a twin that is
    dropped."""
    cols = columns(theme, public)
    by_name = theme.fields_by_name
    taken = {by_name[n].short_name for n, _ in cols if n in by_name}
    assert len(taken) == len([n for n, _ in cols if n in by_name]), "feltnavn10 clash"
    out: list[str | None] = []
    for name, _ in cols:
        if name in by_name:
            out.append(by_name[name].short_name)
        elif len(name) <= 10 and name not in taken:
            taken.add(name)
            out.append(name)
        else:
            out.append(None)
    return out


def export_sql(q: query.ItemsQuery, fmt: Format) -> tuple[sql.Composed, list]:
    """Every object of `q.theme` matching `q` (its filters, asof, audience; `limit` and the
    cursor are not used), ordered by objekt_id. Rows: (feature json text,) for GeoJSON; else
    the attribute columns, then the geometry (point or multipolygon) as WKT text or WKB."""
    where, params = query.where_clause(q)
    src = query.source(q)
    if fmt.geometry == "feature":
        select = query.feature_expr(q.out, q.properties)
    else:
        geom = sql.SQL("t.{}").format(sql.Identifier(GEOMETRY_COLUMN))
        if q.out.srid != crsmod.STORAGE.srid:
            geom = sql.SQL("ST_Transform({}, {})").format(geom, sql.Literal(q.out.srid))
        if fmt.geometry == "wkt":
            if q.out.lat_first:
                geom = sql.SQL("ST_FlipCoordinates({})").format(geom)
            geom = sql.SQL("ST_AsText({}, {})").format(geom, sql.Literal(q.out.decimals))
        else:
            geom = sql.SQL("ST_AsBinary({})").format(geom)
        cols = [sql.SQL("t.{}").format(sql.Identifier(p)) for p in q.properties]
        select = sql.SQL(", ").join([*cols, geom])
    stmt = sql.SQL("SELECT {select} FROM {src} t WHERE {where} ORDER BY t.objekt_id").format(
        select=select, src=src, where=where)
    return stmt, params


def count_sql(q: query.ItemsQuery, limit: int) -> tuple[sql.Composed, list]:
    """The number of objects `export_sql(q, ...)` reads, counted up to `limit` (a bounded
    count: the database stops at `limit`)."""
    where, params = query.where_clause(q)
    stmt = sql.SQL("SELECT count(*) FROM (SELECT FROM {src} t WHERE {where} LIMIT {limit}) n"
                   ).format(src=query.source(q), where=where, limit=sql.Literal(int(limit)))
    return stmt, params


def layer_name(theme: Theme) -> str:
    """The layer (GeoPackage, Shapefile, XLSX sheet) and file stem of a theme's export."""
    return theme.collection_id


def file_name(fmt: Format, theme: Theme, moment: datetime | None = None,
              kommunekode: int | None = None) -> str:
    """What the file holds: `<collection>[-<municipality>-<code>]-<date>.<ext>`, e.g.
    `beskyttelsesrum-aarhus-751-2026-12-08.xlsx`; the date (Danish) is the day of `moment`
    (the register's instant: now, or `asof`); the municipality when the export holds one
    municipality's objects only (`filter_municipality`)."""
    moment = (moment or datetime.now(timezone.utc)).astimezone(LOCAL_TIME_ZONE)
    parts = [layer_name(theme)]
    name = municipality_names().get(kommunekode) if kommunekode is not None else None
    if name is not None:
        parts += [slug(name), str(kommunekode)]
    return f"{'-'.join(parts)}-{moment.date().isoformat()}.{fmt.suffix}"


_DANISH_LETTERS = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa"})


def slug(text: str) -> str:
    """ASCII for a file name, as Danish writes without æøå: "Høje-Taastrup" ->
    "hoeje-taastrup", "Lyngby-Taarbæk" -> "lyngby-taarbaek"."""
    text = unicodedata.normalize("NFKD", text.casefold().translate(_DANISH_LETTERS))
    text = "".join(c for c in text if not unicodedata.combining(c))
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


@lru_cache(maxsize=1)
def municipality_names() -> dict[int, str]:
    """Municipality code -> name, from the shipped list (`loaders/data/kommuner.csv`)."""
    from loaders.reference import KOMMUNER_CSV

    with KOMMUNER_CSV.open(encoding="utf-8", newline="") as fh:
        return {int(r["kommunekode"]): r["navn"] for r in csv.DictReader(fh)}


def filter_municipality(equals: dict, cql: dict | None) -> int | None:
    """The one municipality an export is limited to by its filters, or None: the
    `beliggenhedskommune=` query parameter, or a CQL2 filter (the normalised CQL2 JSON of
    `datamodel.cql2sql.parse_filter`) that is, or is an AND of terms one of which is,
    `beliggenhedskommune = <code>` (or IN a list of one code). Two different municipalities
    (nothing matches) name none."""
    name = BELIGGENHEDSKOMMUNE.name
    found: set[int] = set()
    if equals.get(name) is not None:
        found.add(int(equals[name]))

    def term(node) -> None:
        if not isinstance(node, dict):
            return
        op, args = str(node.get("op", "")).lower(), node.get("args") or []
        if op == "and":
            for a in args:
                term(a)
        elif op in ("=", "in") and len(args) == 2:
            a, b = args
            if not (isinstance(a, dict) and a.get("property") == name):
                a, b = b, a
            if not (isinstance(a, dict) and a.get("property") == name):
                return
            if op == "in":
                b = b[0] if isinstance(b, list) and len(b) == 1 else None
            if isinstance(b, int) and not isinstance(b, bool):
                found.add(b)
            elif isinstance(b, float) and b.is_integer():
                found.add(int(b))

    term(cql)
    return found.pop() if len(found) == 1 else None


def _text(value) -> str | None:
    """A value as text for CSV/XLSX/Shapefile: UUIDs, RFC 3339 UTC date-times."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    return str(value)


def desktop_columns(theme: Theme, public: bool) -> list[str]:
    """The columns of `columns(theme, public)` in the order people read them: the theme's
    label, its address (`ADDRESS_FIELDS`), its own coded attributes as text (their twins),
    its report figures (`Theme.figures`), its validity period and the municipality; then
    every other column in the theme's order (codes, identities, system times, ...)."""
    names = [n for n, _ in columns(theme, public)]
    present = set(names)
    own_coded = [f.twin for f in theme.coded_fields if f.name not in _SHARED and f.twin]
    first = [theme.label, *ADDRESS_FIELDS, *own_coded,
             *(fig.field for fig in theme.figures), *(theme.validity or ()),
             BELIGGENHEDSKOMMUNE.name]
    order = list(dict.fromkeys(n for n in first if n in present))
    return order + [n for n in names if n not in set(order)]


def _decimal_comma(value) -> str:
    """A number as Danish writes it: decimal comma, no thousands separator, no exponent."""
    if isinstance(value, float):
        value = Decimal(repr(value))
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text.replace(".", ",")


def _local(value: datetime) -> datetime:
    """A date-time as a Danish wall-clock time (naive, as spreadsheets keep them)."""
    return value.astimezone(LOCAL_TIME_ZONE).replace(tzinfo=None, microsecond=0)


def _desktop_text(value) -> str:
    """A value as the `da` CSV dialect writes it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (float, Decimal)):
        return _decimal_comma(value)
    if isinstance(value, datetime):
        return _local(value).isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


# --- streamed formats ---

class GeoJSONWriter:
    def __init__(self, fmt: Format, q: query.ItemsQuery):
        self.out = q.out
        self.count = 0

    def start(self) -> bytes:
        head = b'{"type":"FeatureCollection",'
        if self.out.uri != crsmod.CRS84:
            head += b'"crs":{"type":"name","properties":{"name":"' + self.out.uri.encode() + b'"}},'
        return head + b'"features":['

    def write(self, rows: list[tuple]) -> bytes:
        if not rows:
            return b""
        sep = b"," if self.count else b""
        self.count += len(rows)
        return sep + ",".join(r[0] for r in rows).encode()

    def finish(self) -> bytes:
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        return (f'],"numberMatched":{self.count},"numberReturned":{self.count},'
                f'"timeStamp":"{stamp}"}}').encode()


class CSVWriter:
    """The `WKT` column, then the attribute columns, in a dialect of `CSV_DIALECTS`."""

    def __init__(self, fmt: Format, q: query.ItemsQuery, dialect: str = DEFAULT_CSV_DIALECT):
        self.names = [n for n, _ in columns(q.theme, q.public)]
        self.dialect = CSV_DIALECTS[dialect]
        self.value = _desktop_text if self.dialect.desktop else _text

    def _rows(self, rows) -> bytes:
        buf = io.StringIO()
        w = csv.writer(buf, delimiter=self.dialect.delimiter, quoting=self.dialect.quoting,
                       lineterminator="\r\n")
        w.writerows(rows)
        return buf.getvalue().encode()

    def start(self) -> bytes:
        return (b"\xef\xbb\xbf" if self.dialect.bom else b"") + self._rows([["WKT", *self.names]])

    def write(self, rows: list[tuple]) -> bytes:
        value = self.value
        return self._rows([[r[-1], *("" if v is None else value(v) for v in r[:-1])]
                           for r in rows])

    def finish(self) -> bytes:
        return b""


# --- file formats ---

class _FileWriter:
    """Writes to a file in `directory` (the caller's, which it removes); `path` when
    finished."""

    def __init__(self, fmt: Format, q: query.ItemsQuery, directory: str):
        self.fmt = fmt
        self.q = q
        self.dir = directory
        self.count = 0

    def close(self) -> None:
        """Release the writer's open files (its directory is the caller's to remove)."""


def _sheet_stream(sheet, path: str):
    """openpyxl's write-only sheet streams its rows to an XML file it makes in the system
    temporary directory (`openpyxl.worksheet._writer.create_temporary_file`), outside the
    export's directory, and removes it only when the workbook is saved or at interpreter
    exit. This stream writes to `path`, so the export's directory holds everything."""
    from openpyxl.worksheet._writer import WorksheetWriter

    class SheetStream(WorksheetWriter):
        def cleanup(self) -> None:  # openpyxl's also unregisters its own temporary file
            if os.path.exists(self.out):
                os.remove(self.out)

    stream = SheetStream(sheet, out=path)
    stream.write_top()
    return stream


def _xlsx_value(value):
    """A register value as an XLSX cell takes it: numbers as numbers, dates as dates,
    date-times as Danish wall-clock times, the rest as text (without the control characters
    XML does not allow)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return _local(value)
    if isinstance(value, date):
        return value
    text = str(value)
    return _ILLEGAL_XML.sub("\ufffd", text) if _ILLEGAL_XML.search(text) else text


def _width(value) -> int:
    """How many characters a cell shows."""
    if value is None:
        return 0
    if isinstance(value, datetime):
        return len("2026-12-08 10:00:00")
    if isinstance(value, date):
        return len("2026-12-08")
    return len(str(value))


try:
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE as _ILLEGAL_XML
except ImportError:  # openpyxl not installed: XLSX is not written
    _ILLEGAL_XML = re.compile(r"[\000-\010]|[\013-\014]|[\016-\037]")


class XLSXWriter(_FileWriter):
    """One sheet: the header row (frozen, with an autofilter over the table), then a row per
    object in the order of `desktop_columns` with the `WKT` last, typed cells. Column widths
    are fixed before the first row is streamed, so they come from the header and the first
    batch."""

    def __init__(self, fmt: Format, q: query.ItemsQuery, directory: str):
        super().__init__(fmt, q, directory)
        from openpyxl import Workbook

        self.book = Workbook(write_only=True)  # rows go to the sheet's stream as appended
        self.layer = layer_name(q.theme)
        self.sheet = self.book.create_sheet(self.layer[:XLSX_MAX_SHEET_NAME])
        cols = columns(q.theme, q.public)
        names = [n for n, _ in cols]
        order = desktop_columns(q.theme, q.public)
        self.index = [names.index(n) for n in order]  # positions in a row of `export_sql`
        self.header = [*order, "WKT"]
        self.id_index = names.index("objekt_id") if "objekt_id" in names else 0
        self.started = False

    def _start(self, sample: list[list]) -> None:
        """Column widths, the frozen header row and the header; then the sheet's stream
        (openpyxl writes the widths and the panes before the rows)."""
        from openpyxl.cell import WriteOnlyCell
        from openpyxl.styles import Font
        from openpyxl.utils import get_column_letter

        for i, name in enumerate(self.header):
            width = max([len(name), *(_width(row[i]) for row in sample)])
            self.sheet.column_dimensions[get_column_letter(i + 1)].width = \
                min(width + 2, XLSX_MAX_WIDTH)
        self.sheet.freeze_panes = "A2"
        # Before the first append, which would make openpyxl's own stream.
        self.sheet._writer = _sheet_stream(self.sheet, os.path.join(self.dir, "sheet.xml"))
        self.started = True
        bold = Font(bold=True)
        header = []
        for name in self.header:
            cell = WriteOnlyCell(self.sheet, value=name)
            cell.font = bold
            header.append(cell)
        self.sheet.append(header)

    def _cells(self, values: list) -> list:
        """Date and date-time cells with their number format; text that openpyxl would
        write as a formula (`=` first) as text."""
        from openpyxl.cell import WriteOnlyCell

        out = list(values)
        for i, v in enumerate(values):
            if isinstance(v, date):
                cell = WriteOnlyCell(self.sheet, value=v)
                cell.number_format = XLSX_DATETIME if isinstance(v, datetime) else XLSX_DATE
                out[i] = cell
            elif isinstance(v, str) and v.startswith("=") and len(v) > 1:
                cell = WriteOnlyCell(self.sheet, value=v)
                cell.data_type = "s"
                out[i] = cell
        return out

    def write(self, rows: list[tuple]) -> None:
        self.count += len(rows)
        if self.count > XLSX_MAX_ROWS:  # a backstop: the service counts before it writes
            raise TooManyRows.xlsx()
        table = []
        for r in rows:
            wkt = r[-1]
            if wkt is not None and len(wkt) > XLSX_MAX_CELL:
                raise CellTooLong(
                    f"the geometry of {r[self.id_index]} is {len(wkt)} characters of WKT; an "
                    f"XLSX cell holds at most {XLSX_MAX_CELL}: export CSV, GeoPackage or "
                    "GeoJSON")
            table.append([*(_xlsx_value(r[i]) for i in self.index), wkt])
        if not self.started:
            self._start(table)
        append = self.sheet.append
        for values in table:
            append(self._cells(values))

    def finish(self) -> str:
        from openpyxl.utils import get_column_letter
        from openpyxl.writer.excel import ExcelWriter

        if not self.started:  # no rows: the header alone
            self._start([])
        last = get_column_letter(len(self.header))
        self.sheet.auto_filter.ref = f"A1:{last}{self.count + 1}"
        path = os.path.join(self.dir, f"{self.layer}.xlsx")
        # `Workbook.save`, with the archive closed also when the save fails (a full disk):
        # else its open file would keep the space of the half-written workbook until the
        # garbage collector finds it.
        self.book.properties.modified = datetime.now(timezone.utc).replace(tzinfo=None)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            ExcelWriter(self.book, archive).write_data()  # ends the sheet's stream
        self.sheet = None
        return path

    def close(self) -> None:
        """Also an export abandoned half-way (too many rows, a cell too long, an error): the
        sheet's XML stream is ended, so its file is closed now rather than by the garbage
        collector (an unlinked file still takes its space while it is open). A sheet whose
        stream never started has no file (closing it would make openpyxl's own)."""
        sheet, self.sheet = self.sheet, None
        if sheet is not None and self.started:
            try:
                sheet.close()
            except Exception:  # openpyxl's internals; the directory goes anyway
                pass


class _OGRWriter(_FileWriter):
    """GeoPackage and Shapefile through GDAL (pyogrio), one append per batch, with the
    theme's geometry type (Point or MultiPolygon)."""

    driver = ""
    suffix = ""

    def __init__(self, fmt: Format, q: query.ItemsQuery, directory: str):
        super().__init__(fmt, q, directory)
        self.columns = columns(q.theme, q.public)
        self.layer = layer_name(q.theme)
        self.geometry_type = q.theme.geometry_type
        self.path = os.path.join(self.dir, f"{self.layer}.{self.suffix}")
        self.crs = f"EPSG:{q.out.srid}"

    def _arrays(self, rows: list[tuple]) -> tuple[list, list, list]:
        """(names, arrays, masks) of the attribute columns of a batch."""
        names, data, masks = [], [], []
        for i, (name, kind) in enumerate(self.columns):
            values = [r[i] for r in rows]
            names.append(name)
            if kind == "integer":
                mask = np.array([v is None for v in values])
                data.append(np.array([0 if v is None else v for v in values], dtype="int64"))
                masks.append(mask)
            elif kind == "number":
                data.append(np.array([np.nan if v is None else float(v) for v in values],
                                     dtype="float64"))
                masks.append(None)
            elif kind == "date":  # a GDAL Date field (GeoPackage and dBASE have them)
                data.append(np.array(values, dtype="datetime64[D]"))
                masks.append(None)
            else:
                data.append(np.array([_text(v) for v in values], dtype=object))
                masks.append(None)
        return names, data, masks

    def _write(self, rows, names, data, masks, **kw) -> None:
        from pyogrio.raw import write

        geometry = np.array([bytes(r[-1]) for r in rows], dtype=object)
        write(self.path, geometry, data, names, field_mask=masks, layer=self.layer,
              driver=self.driver, geometry_type=self.geometry_type, crs=self.crs,
              append=self.count > 0, **kw)
        self.count += len(rows)


class GPKGWriter(_OGRWriter):
    driver = "GPKG"
    suffix = "gpkg"

    def write(self, rows: list[tuple]) -> None:
        if not rows:
            return
        names, data, masks = self._arrays(rows)
        tz = {}
        for i, (name, kind) in enumerate(self.columns):
            if kind == "date-time":
                values = [r[i] for r in rows]
                # UTC, without zone in numpy; GDAL's zone flag 100 means UTC.
                data[i] = np.array([None if v is None else
                                    v.astimezone(timezone.utc).replace(tzinfo=None)
                                    for v in values], dtype="datetime64[ms]")
                tz[name] = np.full(len(rows), 100, dtype="int32")
        self._write(rows, names, data, masks, gdal_tz_offsets=tz)

    def finish(self) -> str | None:
        if self.count == 0:  # no batch was written: an empty layer with its columns
            self._write_empty()
        return self.path

    def _write_empty(self) -> None:
        from pyogrio.raw import write

        names = [n for n, _ in self.columns]
        dtypes = {"integer": "int64", "number": "float64", "date-time": "datetime64[ms]",
                  "date": "datetime64[D]"}
        data = [np.array([], dtype=dtypes.get(k, object)) for _, k in self.columns]
        write(self.path, np.array([], dtype=object), data, names, layer=self.layer,
              driver=self.driver, geometry_type=self.geometry_type, crs=self.crs)


def _dbf_text(value: str | None) -> str | None:
    if value is None:
        return None
    raw = value.encode()
    if len(raw) <= DBF_TEXT_BYTES:
        return value
    return raw[:DBF_TEXT_BYTES].decode(errors="ignore")  # never half a character


class ShapefileWriter(_OGRWriter):
    driver = "ESRI Shapefile"
    suffix = "shp"

    def __init__(self, fmt: Format, q: query.ItemsQuery, directory: str):
        super().__init__(fmt, q, directory)
        self.short = shapefile_names(q.theme, q.public)

    def _shp_arrays(self, rows):
        names, data, masks = self._arrays(rows)
        keep = [i for i, s in enumerate(self.short) if s is not None]
        for i in keep:
            if data[i].dtype == object:
                data[i] = np.array([_dbf_text(v) for v in data[i]], dtype=object)
        return ([self.short[i] for i in keep], [data[i] for i in keep],
                [masks[i] for i in keep])

    def write(self, rows: list[tuple]) -> None:
        if not rows:
            return
        names, data, masks = self._shp_arrays(rows)
        self._write(rows, names, data, masks, encoding="UTF-8")

    def finish(self) -> str:
        if self.count == 0:
            from pyogrio.raw import write

            names = [s for s in self.short if s is not None]
            kinds = [k for (_, k), s in zip(self.columns, self.short) if s is not None]
            dtypes = {"integer": "int64", "number": "float64", "date": "datetime64[D]"}
            data = [np.array([], dtype=dtypes.get(k, object)) for k in kinds]
            write(self.path, np.array([], dtype=object), data, names, layer=self.layer,
                  driver=self.driver, geometry_type=self.geometry_type, crs=self.crs,
                  encoding="UTF-8")
        stem = os.path.join(self.dir, self.layer)
        zpath = os.path.join(self.dir, f"{self.layer}.shp.zip")
        with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
            for ext in ("shp", "shx", "dbf", "prj", "cpg"):
                if os.path.exists(f"{stem}.{ext}"):
                    z.write(f"{stem}.{ext}", f"{self.layer}.{ext}")
                    os.unlink(f"{stem}.{ext}")  # keep only the zip on disk
        return zpath


WRITERS = {"geojson": GeoJSONWriter, "csv": CSVWriter, "xlsx": XLSXWriter,
           "gpkg": GPKGWriter, "shp": ShapefileWriter}


def writer(fmt: Format, q: query.ItemsQuery, directory: str | None = None, *,
           csv_dialect: str = DEFAULT_CSV_DIALECT):
    """The writer of `fmt`; a file format's writes in `directory`; CSV in `csv_dialect`."""
    if fmt.name == "csv":
        return WRITERS["csv"](fmt, q, csv_dialect)
    if fmt.streamed:
        return WRITERS[fmt.name](fmt, q)
    if directory is None:
        raise TypeError(f"the {fmt.name} writer needs a directory to write in")
    return WRITERS[fmt.name](fmt, q, directory)
