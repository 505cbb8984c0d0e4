"""The theme registry: every preparedness theme Ly keeps, each described once.

A `Theme` says everything the rest of Ly needs to store, serve, tile, export, sync, map and
report a theme: its GeoFA names (temakode, view, table), its collection id and Danish title,
its geometry (Point or MultiPolygon, EPSG:25832), its attributes (`datamodel.fields.Field`:
the FKG generic ones, the theme's own read from GeoFA's published meta and table files, and
Ly's extensions), which of them the public may read and which are personal data, its
validity period, the tile layer, how the public sees it during a national activation, and
its demo generator. Storage DDL (`datamodel.storage`), the API, tiles, exports, maps, reports
and the tests are generic over this description; no other module names a theme, apart from
a theme's own workflow (inspections belong to 6101/6122, BBR and municipal list imports to
6101 for now).

The shelter (6101) is the first entry; 6119 evakueringscenter, 6120 midlertidig overnatning
and 6121 større udendørs arrangementer follow (`datamodel.themes.beredskab`). A test may
`register` an extra theme.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable

from datamodel.fields import Field, Origin

GEOFA_DIR = Path(__file__).resolve().parent.parent / "geofa"
POINT, MULTIPOLYGON = "Point", "MultiPolygon"
#: Attributes on the wire of an export that are not stored columns.
WIRE_ONLY = ("temakode", "temanavn")
#: FKG's address attributes (and GeoFA's address as text): what the free text search `q`
#: reads, after the theme's label, unless a theme says otherwise (`Theme.text_search`).
ADDRESS_FIELDS = ("vejnavn", "husnr", "postnr", "postnr_by", "adr_i_tekst")


@dataclass(frozen=True)
class Figure:
    """A sum a municipal report shows for a theme (places, beds, meals, people)."""

    field: str
    title: str


@dataclass(frozen=True, eq=False)
class Theme:
    temakode: int
    collection_id: str  # the OGC collection id, e.g. beskyttelsesrum
    title: str  # Danish, plural: "Beskyttelsesrum"
    singular: str  # Danish, one object: "beskyttelsesrummet"
    description: str
    geofa_view: str  # GeoFA's published view, e.g. t_6101_beskyt_rum (also Ly's current view)
    table: str  # Ly's base table in schema ly, every version of every object
    geometry_type: str  # POINT or MULTIPOLYGON
    fields: tuple[Field, ...]
    srid: int = 25832
    #: (from, to) attributes of the validity period: the features' temporal extent. A NULL
    #: `to` is open-ended. None: `datetime` matches the versions' system time.
    validity: tuple[str, str] | None = None
    #: SQL predicate on a base-table row: objects the public sees while the national
    #: activation is on (besides off_kode 1). None: activation changes nothing.
    activation_public: str | None = None
    #: Inspectors see the objects assigned to them (ly.tildeling), the inspection workflow.
    assignable: bool = False
    label: str = "navn"  # the attribute that names an object for people
    figures: tuple[Figure, ...] = ()
    demo: str | None = None  # "module:function" of the demo generator (loaders)
    meta_file: str | None = None  # GeoFA's published view, in datamodel/geofa/meta
    geofa_table_file: str | None = None  # GeoFA's table, in datamodel/geofa/tables
    #: The theme's own cross-field rules: each takes the complete record (column values) and
    #: returns (attribute, problem) pairs; datamodel.rules applies them with the generic ones
    #: (e.g. a validity period that ends before it starts).
    rules: tuple[Callable[[dict[str, Any]], list[tuple[str, str]]], ...] = ()
    #: Colour of the theme on maps (fill/stroke), a CSS colour.
    colour: str = "#1f6fb2"
    #: The attributes the free text search (`q`) reads: a name and an address. None: the
    #: label and the FKG address attributes the theme has (`search_fields`).
    text_search: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.geometry_type not in (POINT, MULTIPOLYGON):
            raise ValueError(f"{self.collection_id}: geometry_type {self.geometry_type!r}")
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.collection_id}: attribute names are not unique")
        shorts = [f.short_name for f in self.fields]
        if len(set(shorts)) != len(shorts):
            dup = sorted({s for s in shorts if shorts.count(s) > 1})
            raise ValueError(f"{self.collection_id}: feltnavn10 names not unique: {dup}")
        for req in ("objekt_id", "versions_id", "systid_fra", "systid_til", "off_kode",
                    "cvr_kode", "beliggenhedskommune", "bruger_id"):
            if req not in names:
                raise ValueError(f"{self.collection_id}: lacks the generic attribute {req}")
        if self.validity:
            for name in self.validity:
                if name not in names:
                    raise ValueError(f"{self.collection_id}: validity attribute {name} missing")
        for name in self.text_search or ():
            if name not in names:
                raise ValueError(f"{self.collection_id}: text_search attribute {name} missing")

    # --- names -------------------------------------------------------------------------------
    @property
    def temanavn(self) -> str:
        """GeoFA's table name (`temanavn` on the wire), e.g. t_6101_beskyt_rum_t."""
        return self.geofa_view + "_t"

    @property
    def current_view(self) -> str:
        return self.geofa_view

    @property
    def history_view(self) -> str:
        return "hist_" + self.geofa_view

    @property
    def public_current_view(self) -> str:
        return "offentlig_" + self.geofa_view

    @property
    def public_history_view(self) -> str:
        return "offentlig_hist_" + self.geofa_view

    @property
    def tile_layer(self) -> str:
        return self.collection_id

    @property
    def cluster_layer(self) -> str:
        return self.collection_id + "_klynger"

    @property
    def is_area(self) -> bool:
        return self.geometry_type == MULTIPOLYGON

    @property
    def geometry_format(self) -> str:
        """The JSON Schema `format` of the primary geometry (OGC API Features Part 5)."""
        return "geometry-multipolygon" if self.is_area else "geometry-point"

    # --- attribute sets ----------------------------------------------------------------------
    @cached_property
    def fields_by_name(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}

    @cached_property
    def search_fields(self) -> tuple[str, ...]:
        """What `q` searches (before the audience's subset is taken): `text_search`, or the
        label and the address attributes."""
        if self.text_search is not None:
            return self.text_search
        names = self.fields_by_name
        return tuple(n for n in (self.label, *ADDRESS_FIELDS) if n in names)

    @cached_property
    def coded_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.codelist)

    @cached_property
    def twin_names(self) -> frozenset[str]:
        return frozenset(f.twin for f in self.coded_fields if f.twin)

    @cached_property
    def writable_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.writable)

    @cached_property
    def read_only_names(self) -> frozenset[str]:
        """Names a client may send back unchanged (e.g. QGIS echoing a feature); ignored."""
        return frozenset([f.name for f in self.fields if not f.writable]
                         + list(self.twin_names) + list(WIRE_ONLY))

    @cached_property
    def public_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.public)

    @cached_property
    def personal_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.personal)

    def audience_fields(self, public: bool) -> tuple[Field, ...]:
        return self.public_fields if public else self.fields

    def property_columns(self, public: bool = False) -> list[str]:
        """Output property names in order: each field, its text twin right after its code."""
        names: list[str] = []
        for f in self.audience_fields(public):
            names.append(f.name)
            if f.twin:
                names.append(f.twin)
        return names

    @cached_property
    def storage_columns(self) -> tuple[str, ...]:
        """The base table's columns in order: versions_id, objekt_id, the other attributes,
        and the geometry (`geometri`)."""
        rest = [f.name for f in self.fields if f.name not in ("versions_id", "objekt_id")]
        return ("versions_id", "objekt_id", *rest)

    @cached_property
    def codelists(self) -> tuple[str, ...]:
        return tuple(sorted({f.codelist for f in self.coded_fields}))

    # --- GeoFA -----------------------------------------------------------------------------
    @cached_property
    def meta(self) -> dict:
        if not self.meta_file:
            return {"fields": {}}
        return json.loads((GEOFA_DIR / "meta" / self.meta_file).read_text(encoding="utf-8"))

    def __repr__(self) -> str:
        return f"Theme({self.temakode}, {self.collection_id!r})"


# --- reading GeoFA's published files ----------------------------------------------------------

_CHECK = re.compile(r"^(\w+) >= (-?\d+) AND \1 <= (-?\d+)$")
_VARCHAR = re.compile(r"^character(?: varying)?\((\d+)\)$")


def _sql_type(full_type: str) -> tuple[str, int | None]:
    if full_type in ("integer", "smallint", "bigint"):
        return "integer", None
    if full_type.startswith("numeric") or full_type in ("double precision", "real"):
        return "number", None
    if full_type == "date":
        return "date", None
    if full_type.startswith("timestamp"):
        return "date-time", None
    if full_type == "uuid":
        return "uuid", None
    if full_type == "boolean":
        return "boolean", None
    m = _VARCHAR.match(full_type)
    if m:
        return "string", int(m.group(1))
    if full_type in ("text", "character varying"):
        return "string", None
    raise ValueError(f"GeoFA type {full_type!r} has no Ly type")


def geofa_attributes(meta_file: str, table_file: str, *, shipped_codelists: Iterable[str],
                     overrides: dict[str, dict] | None = None) -> tuple[Field, ...]:
    """A theme's own attributes as GeoFA publishes them, in the view's order.

    Types and lengths come from the published view (`meta`), NOT NULL, CHECK ranges and
    code-list references from the table file. A `*_kode` column is followed in the view by its
    text twin (a view column that is not a table column). References to lists Ly does not
    ship (GeoDanmark's road and postcode registers) stay plain integers. `overrides` adds
    what GeoFA does not say: Danish titles, public and personal flags, defaults, feltnavn10.
    """
    overrides = overrides or {}
    shipped = set(shipped_codelists)
    meta = json.loads((GEOFA_DIR / "meta" / meta_file).read_text(encoding="utf-8"))
    table = json.loads((GEOFA_DIR / "tables" / table_file).read_text(encoding="utf-8"))
    columns = {c["name"]: c for c in table["columns"]}
    view = sorted(meta["fields"].items(), key=lambda kv: kv[1]["num"])
    out: list[Field] = []
    twins_of_shipped = set()
    for i, (name, mf) in enumerate(view):
        col = columns.get(name)
        ref = ((col or {}).get("_reference") or [None])[0]
        if ref and ref.split(".")[1] in shipped and i + 1 < len(view):
            twins_of_shipped.add(view[i + 1][0])
    for i, (name, mf) in enumerate(view):
        col = columns.get(name)
        if col is None and name in overrides and name not in twins_of_shipped:
            # A view column GeoFA derives from a register Ly does not ship (vejnavn from
            # vejkode, postnr_by from postnr): Ly stores it as written.
            col = {"name": name, "is_nullable": True}
        if col is None or name == "versions_id" or \
                mf["full_type"].startswith("geometry"):
            continue
        ftype, max_length = _sql_type(mf["full_type"])
        kw: dict = {"max_length": max_length}
        for check in col.get("_checks") or ():
            m = _CHECK.match(check.strip())
            if m and m.group(1) == name:
                kw["minimum"], kw["maximum"] = int(m.group(2)), int(m.group(3))
        ref = (col.get("_reference") or [None])[0]
        if ref:
            codelist = ref.split(".")[1]
            if codelist in shipped:
                kw["codelist"] = codelist
                nxt = view[i + 1][0] if i + 1 < len(view) else None
                if nxt and nxt not in columns:
                    kw["twin"] = nxt
        kw["required"] = not col["is_nullable"]
        extra = dict(overrides.get(name, {}))
        title = extra.pop("title", name.replace("_", " ").capitalize())
        kw.update(extra)
        out.append(Field(name, ftype, title, **kw))
    unknown = set(overrides) - {f.name for f in out}
    if unknown:
        raise ValueError(f"{meta_file}: overrides for attributes GeoFA lacks: {sorted(unknown)}")
    return tuple(out)


# --- the registry -----------------------------------------------------------------------------

_REGISTRY: dict[str, Theme] = {}


def register(theme: Theme) -> Theme:
    """Add a theme (the built-in ones at import; tests may add their own)."""
    for other in _REGISTRY.values():
        if other.collection_id != theme.collection_id and (
                other.temakode == theme.temakode or other.table == theme.table):
            raise ValueError(f"{theme!r} clashes with {other!r}")
    _REGISTRY[theme.collection_id] = theme
    return theme


def unregister(collection_id: str) -> None:
    _REGISTRY.pop(collection_id, None)


def all_themes() -> tuple[Theme, ...]:
    """Every registered theme, in temakode order."""
    return tuple(sorted(_REGISTRY.values(), key=lambda t: t.temakode))


def get(collection_id: str) -> Theme:
    """The theme of a collection id (KeyError if none)."""
    return _REGISTRY[collection_id]


def by_temakode(temakode: int) -> Theme:
    for t in _REGISTRY.values():
        if t.temakode == temakode:
            return t
    raise KeyError(temakode)


def default() -> Theme:
    """The first theme (lowest temakode): what theme-unaware entry points mean."""
    return all_themes()[0]


def _load_builtin() -> None:
    from datamodel.themes import beredskab, beskyttelsesrum

    for t in (beskyttelsesrum.THEME, *beredskab.THEMES):
        register(t)


_load_builtin()

__all__ = ["Theme", "Figure", "Field", "Origin", "POINT", "MULTIPOLYGON", "register",
           "unregister", "all_themes", "get", "by_temakode", "default", "geofa_attributes"]
