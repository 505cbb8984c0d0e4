"""Figures for Ly's maps and reports, computed in SQL from the register.

Every figure is a query against the current register as the connection's role sees it: the
service runs these statements in a transaction that acts for the requesting actor
(`service.db.acting`), so row-level security decides which objects are counted. Nothing here
imports the service.

The statements are written once as *steps*: a generator yields `(statement, params)` and is
sent back the rows, and returns the result. `run` drives the steps on a synchronous psycopg
connection (scripts, tests), `run_async` on an asynchronous one (the service), so both share
the same SQL and the same assembly of figures.

Every theme (`datamodel.themes`): each report has one section per registered theme, made from
its descriptor alone (`theme_section_steps`): the current objects the viewer sees in the area,
and each of the theme's `figures` summed (places, beds, meals, people). A theme with a validity
period (`Theme.validity`) also says how many objects are valid today (the Danish calendar day
of the report's time, as `datetime` on the items does) with their sums, and lists the objects
valid today or later, earliest first. Attributes the audience may not read (and personal data,
always) are neither summed nor listed.

A theme's own figures (its workflow's: coverage, classification, inspections) are not made
here. A theme's workflow registers them, keyed by temakode (`register_extra`, a
`ReportExtra` of steps), from its own module `loaders.reports_<collection id>`, which the
reports import when they first ask for the theme's extras (`extra_for`). The municipal and
national reports run every registered theme's steps after the generic sections and keep the
results by collection id (`KommuneReport.extras`); in JSON their fields are the report's own.

Population per municipality from Danmarks Statistik (`loaders/data/
dk-population-by-municipality.csv`, FOLK1A 2026K1; Christiansø, 411, has none) is here for every
theme's figures per inhabitant (`population`).
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Generator, TypeVar

from psycopg import sql

from datamodel import query, themes
from datamodel.themes import Theme

DATA = Path(__file__).parent / "data"
POPULATION_CSV = DATA / "dk-population-by-municipality.csv"

#: Most objects of a theme with a validity period listed as valid today or later.
LISTED_LIMIT = 500

T = TypeVar("T")
Step = tuple[sql.Composable, list]
Steps = Generator[Step, list[tuple], T]


# --- population ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Population:
    by_kommune: dict[int, int]
    period: str
    source: str

    @property
    def total(self) -> int:
        return sum(self.by_kommune.values())

    def arrays(self) -> tuple[list[int], list[int]]:
        codes = sorted(self.by_kommune)
        return codes, [self.by_kommune[k] for k in codes]


@lru_cache(maxsize=1)
def population() -> Population:
    """Population per municipality (kommunekode without leading zero -> folketal)."""
    by_kommune: dict[int, int] = {}
    periods: set[str] = set()
    with POPULATION_CSV.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            by_kommune[int(row["kommunekode"])] = int(row["folketal"])
            periods.add(row["periode"])
    (period,) = periods
    return Population(by_kommune, period, "Danmarks Statistik, FOLK1A")


# --- drivers ---------------------------------------------------------------------------------

def run(conn, steps: Steps[T]) -> T:
    """Drive `steps` on a synchronous psycopg connection."""
    try:
        step = next(steps)
        while True:
            stmt, params = step
            step = steps.send(conn.execute(stmt, params).fetchall())
    except StopIteration as done:
        return done.value


async def run_async(conn, steps: Steps[T]) -> T:
    """Drive `steps` on an asynchronous psycopg connection."""
    try:
        step = next(steps)
        while True:
            stmt, params = step
            cur = await conn.execute(stmt, params)
            step = steps.send(await cur.fetchall())
    except StopIteration as done:
        return done.value


# --- every theme: its objects and figures ----------------------------------------------------

@dataclass
class FigureSum:
    """One of a theme's figures (`Theme.figures`) summed over objects."""

    felt: str  # the attribute, by its GeoFA name
    titel: str
    sum: int | float


@dataclass
class ListedObject:
    """An object of a theme with a validity period, valid today or later."""

    objekt_id: str
    #: Valid on the report's day; False: it begins later.
    gyldig_nu: bool
    #: Its label, municipality, validity and figure attributes, by GeoFA name.
    egenskaber: dict[str, Any]


@dataclass
class ThemeSection:
    """A theme's figures in an area, as its descriptor defines them."""

    collection_id: str
    temakode: int
    titel: str
    #: Current objects the viewer sees in the area.
    antal: int
    summer: list[FigureSum]
    #: (from, to) attributes of the validity period; None: the theme has none (or the
    #: viewer may not read it), and the validity figures below are None and empty.
    gyldighed: list[str] | None = None
    gyldige_i_dag: int | None = None
    summer_i_dag: list[FigureSum] | None = None
    #: The attributes each listed object gives (`ListedObject.egenskaber`), in order.
    felter: list[str] = field(default_factory=list)
    #: Objects valid today or later, earliest first (at most LISTED_LIMIT of them).
    aktuelle: list[ListedObject] = field(default_factory=list)
    aktuelle_i_alt: int = 0


def _readable(theme: Theme, public: bool) -> set[str]:
    """Attributes the audience may read and a report may show (never personal data)."""
    return {f.name for f in theme.audience_fields(public) if not f.personal}


def _number(value: Any, theme: Theme, name: str) -> int | float:
    return int(value) if theme.fields_by_name[name].type == "integer" else float(value)


def _area_clause(kommunekode: int | None) -> tuple[sql.Composable, list]:
    if kommunekode is None:
        return sql.SQL("TRUE"), []
    return sql.SQL("t.beliggenhedskommune = %s"), [kommunekode]


def theme_section_steps(theme: Theme, public: bool, kommunekode: int | None,
                        now: datetime) -> Steps[ThemeSection]:
    """A theme's section of a report: its current objects in the municipality (None: the
    whole country) that the connection's actor sees, and its figures summed; for a theme
    with a validity period also those valid at `now` and the objects valid then or later."""
    view = query.views(public, theme)[0]
    readable = _readable(theme, public)
    figures = [f for f in theme.figures if f.field in readable]
    validity = theme.validity if theme.validity and set(theme.validity) <= readable else None
    area, area_params = _area_clause(kommunekode)
    columns = [sql.SQL("t.{}").format(sql.Identifier(f.field)) for f in figures]
    sums = [sql.SQL("coalesce(sum(s.{}), 0)").format(sql.Identifier(f.field)) for f in figures]
    valid_now, now_params = (query.datetime_clause(theme, (now, now)) if validity
                             else (sql.SQL("FALSE"), []))
    aggregates = [sql.SQL("count(*)"), *sums]
    if validity:
        aggregates += [sql.SQL("count(*) FILTER (WHERE s.nu)"),
                       *(sql.SQL("coalesce(sum(s.{}) FILTER (WHERE s.nu), 0)").format(
                           sql.Identifier(f.field)) for f in figures)]
    stmt = sql.SQL("SELECT {aggs} FROM (SELECT {cols} FROM {view} t WHERE {area}) s").format(
        aggs=sql.SQL(", ").join(aggregates),
        cols=sql.SQL(", ").join([*columns, sql.SQL("({}) AS nu").format(valid_now)]),
        view=view, area=area)
    (row,) = yield stmt, [*now_params, *area_params]
    section = ThemeSection(
        collection_id=theme.collection_id, temakode=theme.temakode, titel=theme.title,
        antal=int(row[0]),
        summer=[FigureSum(f.field, f.title, _number(v, theme, f.field))
                for f, v in zip(figures, row[1:1 + len(figures)])])
    if not validity:
        return section
    rest = row[1 + len(figures):]
    section.gyldighed = list(validity)
    section.gyldige_i_dag = int(rest[0])
    section.summer_i_dag = [FigureSum(f.field, f.title, _number(v, theme, f.field))
                            for f, v in zip(figures, rest[1:])]
    names = list(dict.fromkeys(
        n for n in (theme.label, "beliggenhedskommune", *validity, *(f.field for f in figures))
        if n in readable))
    later, later_params = query.datetime_clause(theme, (now, None))
    order = [sql.SQL("t.{} NULLS FIRST").format(sql.Identifier(validity[0]))]
    if theme.label in readable:
        order.append(sql.SQL("t.{} NULLS LAST").format(sql.Identifier(theme.label)))
    listed = sql.SQL("""
        SELECT t.objekt_id::text, ({valid_now}), {cols}, count(*) OVER ()
        FROM {view} t WHERE {area} AND {later}
        ORDER BY {order}, t.objekt_id LIMIT %s""").format(
        valid_now=valid_now, view=view, area=area, later=later,
        cols=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(n)) for n in names),
        order=sql.SQL(", ").join(order))
    rows = yield listed, [*now_params, *area_params, *later_params, LISTED_LIMIT]
    section.felter = names
    section.aktuelle = [ListedObject(r[0], bool(r[1]), dict(zip(names, r[2:-1])))
                        for r in rows]
    section.aktuelle_i_alt = int(rows[0][-1]) if rows else 0
    return section


def theme_sections_steps(public: bool, kommunekode: int | None,
                         now: datetime) -> Steps[list[ThemeSection]]:
    """`theme_section_steps` for every registered theme, in temakode order."""
    out = []
    for theme in themes.all_themes():
        out.append((yield from theme_section_steps(theme, public, kommunekode, now)))
    return out


# --- a theme's own figures ---------------------------------------------------------------------

@dataclass(frozen=True)
class ReportExtra:
    """What a theme's own workflow adds to the reports beyond its generic section.

    `kommune_steps(theme, kommunekode, now)` and `national_steps(theme, now)` are steps whose
    result (a dataclass) is the theme's own figures for a municipality or the whole country;
    its fields go into the report's JSON beside the generic ones. `kommune_rows_steps(theme,
    public, geometry_tolerance=...)`, if given, gives one row of the theme's figures per
    municipality (the maps' choropleth).
    """

    kommune_steps: Callable[[Theme, int, datetime], Steps[Any]]
    national_steps: Callable[[Theme, datetime], Steps[Any]]
    kommune_rows_steps: Callable[..., Steps[list[Any]]] | None = None


_EXTRAS: dict[int, ReportExtra] = {}
_SEARCHED: set[str] = set()


def register_extra(temakode: int, extra: ReportExtra) -> None:
    """Add a theme's own figures to the reports (a theme's workflow module calls this)."""
    _EXTRAS[temakode] = extra


def unregister_extra(temakode: int) -> None:
    _EXTRAS.pop(temakode, None)


def _discover(theme: Theme) -> None:
    """Import the theme's own report module, `loaders.reports_<collection id>`, if there is
    one (it registers its figures when imported)."""
    name = f"{__package__}.reports_{theme.collection_id}"
    if name in _SEARCHED:
        return
    _SEARCHED.add(name)
    if importlib.util.find_spec(name) is not None:
        importlib.import_module(name)


def extra_for(theme: Theme) -> ReportExtra | None:
    """The theme's own figures in the reports (None: only its generic section)."""
    _discover(theme)
    return _EXTRAS.get(theme.temakode)


def extras() -> list[tuple[Theme, ReportExtra]]:
    """(theme, its own figures) for every registered theme that has them, in temakode order."""
    return [(t, e) for t in themes.all_themes() if (e := extra_for(t)) is not None]


# --- the reports -----------------------------------------------------------------------------

#: A report's field holding each theme's own figures (`ReportExtra`), by collection id; their
#: fields are the report's own in JSON (`as_json`).
_OWN = {"flatten": True}


@dataclass
class KommuneReport:
    kommunekode: int
    navn: str
    cvr_kode: int | None
    genereret: datetime
    befolkning_periode: str
    befolkning_kilde: str
    #: One section per registered theme (`theme_section_steps`).
    temaer: list[ThemeSection]
    #: Each theme's own figures (`ReportExtra.kommune_steps`), by collection id.
    extras: dict[str, Any] = field(default_factory=dict, metadata=_OWN)


@dataclass
class NationalReport:
    genereret: datetime
    befolkning_periode: str
    befolkning_kilde: str
    temaer: list[ThemeSection]
    #: Each theme's own figures (`ReportExtra.national_steps`), by collection id.
    extras: dict[str, Any] = field(default_factory=dict, metadata=_OWN)


def as_json(obj: Any) -> Any:
    """A report as JSON-ready data (dataclasses to dicts, with derived shares); the themes'
    own figures (`ReportExtra`) as the report's own fields."""
    if hasattr(obj, "__dataclass_fields__"):
        out = {}
        own = []
        for f in fields(obj):
            if f.name == "geometry":
                continue
            if f.metadata.get("flatten"):
                own += list(getattr(obj, f.name).values())
            else:
                out[f.name] = as_json(getattr(obj, f.name))
        for part in own:
            for k, v in as_json(part).items():
                if k in out:
                    raise ValueError(f"a theme's own report figure {k!r} is already a field")
                out[k] = v
        return out
    if isinstance(obj, (list, tuple)):
        return [as_json(v) for v in obj]
    if isinstance(obj, dict):
        return {k: as_json(v) for k, v in obj.items()}
    if isinstance(obj, datetime):
        return obj.isoformat(timespec="seconds")
    if isinstance(obj, date):
        return obj.isoformat()
    return obj


def _now_steps() -> Steps[datetime]:
    ((now,),) = yield sql.SQL("SELECT now()"), []
    return now


def kommune_exists_steps(kommunekode: int) -> Steps[tuple[str, int | None] | None]:
    rows = yield (sql.SQL("SELECT navn, cvr_kode FROM ly.kommune WHERE kommunekode = %s"),
                  [kommunekode])
    return rows[0] if rows else None


def kommune_report_steps(kommunekode: int) -> Steps[KommuneReport | None]:
    """The report of one municipality for a signed-in viewer (None: no such municipality).

    Counts the objects of every theme lying in the municipality (`beliggenhedskommune`)
    that the viewer sees, and adds each theme's own figures (`ReportExtra`).
    """
    found = yield from kommune_exists_steps(kommunekode)
    if found is None:
        return None
    navn, cvr = found
    pop = population()
    now = yield from _now_steps()
    report = KommuneReport(
        kommunekode=kommunekode, navn=navn, cvr_kode=cvr, genereret=now,
        befolkning_periode=pop.period, befolkning_kilde=pop.source,
        temaer=(yield from theme_sections_steps(False, kommunekode, now)))
    for theme, extra in extras():
        report.extras[theme.collection_id] = yield from extra.kommune_steps(
            theme, kommunekode, now)
    return report


def national_report_steps() -> Steps[NationalReport]:
    """The national overview for a signed-in viewer: every theme's figures, and each theme's
    own (`ReportExtra`)."""
    pop = population()
    now = yield from _now_steps()
    report = NationalReport(
        genereret=now, befolkning_periode=pop.period, befolkning_kilde=pop.source,
        temaer=(yield from theme_sections_steps(False, None, now)))
    for theme, extra in extras():
        report.extras[theme.collection_id] = yield from extra.national_steps(theme, now)
    return report


def kommune_rows_steps(public: bool, *, geometry_tolerance: float | None = None,
                       theme: Theme | None = None) -> Steps[list[Any]]:
    """One row of a theme's own figures per municipality (all 99), with the boundary
    simplified by `geometry_tolerance` metres as GeoJSON in EPSG:4326 if given: the theme's
    `ReportExtra.kommune_rows_steps` (default: `themes.default()`'s)."""
    theme = theme or themes.default()
    extra = extra_for(theme)
    if extra is None or extra.kommune_rows_steps is None:
        raise LookupError(f"the theme {theme.collection_id!r} has no figures per municipality")
    return (yield from extra.kommune_rows_steps(theme, public,
                                                geometry_tolerance=geometry_tolerance))


# --- geometries for static maps --------------------------------------------------------------

def national_map_steps(tolerance: float = 250.0) -> Steps[list[tuple[int, bytes]]]:
    """Simplified municipality boundaries (WKB, EPSG:25832) for the national static map."""
    rows = yield (sql.SQL("SELECT kommunekode, ST_AsBinary(ST_SimplifyPreserveTopology("
                          "geometri, %s)) FROM ly.kommune ORDER BY kommunekode"), [tolerance])
    return [(r[0], bytes(r[1])) for r in rows]
