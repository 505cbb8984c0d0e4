"""Figures for Ly's maps and reports, computed in SQL from the register.

Every figure is a query against the current register as the connection's role sees it: the
service runs these statements in a transaction that acts for the requesting actor
(`service.db.acting`), so row-level security decides which shelters are counted. Nothing here
imports the service.

The statements are written once as *steps*: a generator yields `(statement, params)` and is
sent back the rows, and returns the result. `run` drives the steps on a synchronous psycopg
connection (scripts, tests), `run_async` on an asynchronous one (the service), so both share
the same SQL and the same assembly of figures.

Coverage (dækning) counts the places of shelters that exist and are not closed: every
`funktionsstatus_kode` except 1 Planlagt, 2 Under anlæg, 5 Lukket and 6 Fjernet
(`COVERAGE_EXCLUDED_STATUS`), divided by the municipality's population from Danmarks
Statistik (`loaders/data/dk-population-by-municipality.csv`, FOLK1A 2026K1). Christiansø (411)
has no population in that table, so it has no coverage figure; the national figure divides all
counted places by the 98 municipalities' population.

Inspections: the classification and verified places come from the shelters' attributes
(`egnethed_kode`, `pladser_verificeret`, written by approved inspections); the inspection
register itself (`ly.eftersyn`, `ly.mangel`, migration 0003) gives the inspections by status
and the open deficiencies by grade, with those past their deadline.

Every theme (`datamodel.themes`): each report has one section per registered theme, made from
its descriptor alone (`theme_section_steps`): the current objects the viewer sees in the area,
and each of the theme's `figures` summed (places, beds, meals, people). A theme with a validity
period (`Theme.validity`) also says how many objects are valid today (the Danish calendar day
of the report's time, as `datetime` on the items does) with their sums, and lists the objects
valid today or later, earliest first. Attributes the audience may not read (and personal data,
always) are neither summed nor listed.

The coverage, type, classification and inspection figures above are the inspection workflow's
(the shelters, 6101/6122): they name that theme's attributes, and take the theme from the
registry in one place (`workflow_theme`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Generator, TypeVar

from psycopg import sql

from datamodel import query, themes
from datamodel.themes import Theme

DATA = Path(__file__).parent / "data"
POPULATION_CSV = DATA / "dk-population-by-municipality.csv"

#: funktionsstatus_kode values whose places do not count as coverage.
COVERAGE_EXCLUDED_STATUS = (1, 2, 5, 6)
#: egnethed_kode: 1 Egnet, 2 Egnet efter udbedring, 3 Uegnet, 9 Ikke vurderet.
EGNET, EFTER_UDBEDRING, UEGNET, IKKE_VURDERET = 1, 2, 3, 9
#: Most shelters listed by name in a municipality's table of shelters needing action.
ACTION_LIST_LIMIT = 500
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


# --- the inspection workflow's theme -----------------------------------------------------------

def workflow_theme() -> Theme:
    """The theme of the inspection workflow (the registry's theme whose objects inspectors are
    assigned: the shelters). The coverage, type, classification and inspection figures below
    are that workflow's; this is the one place the reports pick a theme."""
    for theme in themes.all_themes():
        if theme.assignable:
            return theme
    raise LookupError("no registered theme has the inspection workflow (Theme.assignable)")


# --- figures ---------------------------------------------------------------------------------

@dataclass
class CodeCount:
    """Shelters with one value of a coded attribute."""

    kode: int
    tekst: str
    antal: int
    pladser: int
    pladser_verificeret: int | None = None  # classification tables only
    antal_verificeret: int | None = None


@dataclass
class Figures:
    """The figures of one area (a municipality, or the whole country).

    The inspection figures are None where the viewer may not read the attributes they come
    from (the public).
    """

    antal: int
    pladser: int
    pladser_daekning: int
    folketal: int | None
    #: Places counted in coverage per 1 000 inhabitants (one decimal); None without population.
    pladser_pr_1000: float | None
    antal_offentlige: int  # types 1 Beskyttelsesrum and 3 Betondækningsgrav
    pladser_offentlige: int
    antal_vurderet: int | None = None  # egnethed_kode other than 9
    egnet: int | None = None
    egnet_efter_udbedring: int | None = None
    uegnet: int | None = None
    ikke_vurderet: int | None = None
    antal_verificeret: int | None = None  # with pladser_verificeret
    pladser_verificeret: int | None = None
    #: Registered places of the shelters that have verified places (to compare with).
    pladser_registreret_verificerede: int | None = None
    #: Share of the shelters whose suitability is assessed, in per cent (one decimal).
    andel_vurderet: float | None = None


@dataclass
class KommuneRow:
    kommunekode: int
    navn: str
    figures: Figures
    #: The boundary as GeoJSON (EPSG:4326), when asked for (maps).
    geometry: str | None = None


@dataclass
class ActionRow:
    """A shelter classified 2 (Egnet efter udbedring) or 3 (Uegnet)."""

    objekt_id: str
    navn: str | None
    adresse: str
    beskyt_rum: str
    pladser: int
    pladser_verificeret: int | None
    egnethed_kode: int
    egnethed: str


@dataclass
class InspectionFigures:
    """Inspections of the area's shelters by status, and open deficiencies by grade."""

    efter_status: list[tuple[str, int]]  # (status, inspections)
    seneste_godkendt: datetime | None
    #: (grade, open, of which past the deadline) for grades 'S', '3', '2', '1'.
    mangler: list[tuple[str, int, int]]

    @property
    def aabne_mangler(self) -> int:
        return sum(m[1] for m in self.mangler)

    @property
    def forfaldne_mangler(self) -> int:
        return sum(m[2] for m in self.mangler)


INSPECTION_STATUSES = ("planlagt", "kladde", "indsendt", "godkendt", "afvist", "indberettet")
DEFICIENCY_GRADES = ("S", "3", "2", "1")


def _inspection_steps(kommunekode: int | None) -> Steps[InspectionFigures]:
    where = sql.SQL("beliggenhedskommune = %(k)s") if kommunekode is not None else sql.SQL(
        "TRUE")
    rows = yield (sql.SQL("SELECT status, count(*), max(godkendt_tid) FROM ly.eftersyn "
                          "WHERE {} GROUP BY status").format(where), {"k": kommunekode})
    counts = {status: n for status, n, _ in rows}
    approved = [t for _, _, t in rows if t is not None]
    grades = yield (sql.SQL(
        "SELECT grad, count(*), count(*) FILTER (WHERE frist < current_date) FROM ly.mangel "
        "WHERE {} AND status IN ('aaben', 'planlagt') GROUP BY grad").format(where),
        {"k": kommunekode})
    by_grade = {g.strip(): (n, late) for g, n, late in grades}
    return InspectionFigures(
        efter_status=[(st, counts.get(st, 0)) for st in INSPECTION_STATUSES],
        seneste_godkendt=max(approved) if approved else None,
        mangler=[(g, *by_grade.get(g, (0, 0))) for g in DEFICIENCY_GRADES])


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
    #: The inspection workflow's theme (`workflow_theme`): its figures and code tables.
    figures: Figures
    efter_type: list[CodeCount]
    efter_funktionsstatus: list[CodeCount]
    efter_synlighed: list[CodeCount]
    efter_egnethed: list[CodeCount]
    handling: list[ActionRow]
    handling_i_alt: int
    eftersyn: InspectionFigures | None = None


@dataclass
class NationalReport:
    genereret: datetime
    befolkning_periode: str
    befolkning_kilde: str
    temaer: list[ThemeSection]
    figures: Figures
    efter_type: list[CodeCount]
    efter_funktionsstatus: list[CodeCount]
    efter_synlighed: list[CodeCount]
    efter_egnethed: list[CodeCount]
    kommuner: list[KommuneRow] = field(default_factory=list)
    eftersyn: InspectionFigures | None = None


def as_json(obj: Any) -> Any:
    """A report as JSON-ready data (dataclasses to dicts, with derived shares)."""
    if hasattr(obj, "__dataclass_fields__"):
        return {k: as_json(v) for k, v in obj.__dict__.items() if k != "geometry"}
    if isinstance(obj, (list, tuple)):
        return [as_json(v) for v in obj]
    if isinstance(obj, dict):
        return {k: as_json(v) for k, v in obj.items()}
    if isinstance(obj, datetime):
        return obj.isoformat(timespec="seconds")
    if isinstance(obj, date):
        return obj.isoformat()
    return obj


# --- SQL -------------------------------------------------------------------------------------

def _view(public: bool) -> sql.Identifier:
    return query.views(public, workflow_theme())[0]


def _aggregate_list(public: bool) -> list[str]:
    """Aggregate expressions over shelters `t`, in the order `_figures` reads them. The
    public's view has no inspection attributes, so the public gets the first five only."""
    cols = [
        "count(t.objekt_id)",
        "coalesce(sum(t.pladser), 0)",
        "coalesce(sum(t.pladser) FILTER (WHERE t.funktionsstatus_kode <> ALL (%(excluded)s)), 0)",
        "count(t.objekt_id) FILTER (WHERE t.beskyt_rum_kode IN (1, 3))",
        "coalesce(sum(t.pladser) FILTER (WHERE t.beskyt_rum_kode IN (1, 3)), 0)",
    ]
    if not public:
        cols += [
            "count(t.objekt_id) FILTER (WHERE t.egnethed_kode <> 9)",
            "count(t.objekt_id) FILTER (WHERE t.egnethed_kode = 1)",
            "count(t.objekt_id) FILTER (WHERE t.egnethed_kode = 2)",
            "count(t.objekt_id) FILTER (WHERE t.egnethed_kode = 3)",
            "count(t.objekt_id) FILTER (WHERE t.egnethed_kode = 9)",
            "count(t.pladser_verificeret)",
            "coalesce(sum(t.pladser_verificeret), 0)",
            "coalesce(sum(t.pladser) FILTER (WHERE t.pladser_verificeret IS NOT NULL), 0)",
        ]
    return cols


def _aggregates(public: bool) -> sql.Composable:
    return sql.SQL(", ".join(_aggregate_list(public)))


def _figures(values: tuple, folketal: int | None, pr_1000: Any, andel: Any,
             public: bool) -> Figures:
    antal, pladser, daekning, antal_off, pladser_off = (int(v) for v in values[:5])
    f = Figures(antal=antal, pladser=pladser, pladser_daekning=daekning, folketal=folketal,
                pladser_pr_1000=float(pr_1000) if pr_1000 is not None else None,
                antal_offentlige=antal_off, pladser_offentlige=pladser_off)
    if not public:
        (f.antal_vurderet, f.egnet, f.egnet_efter_udbedring, f.uegnet, f.ikke_vurderet,
         f.antal_verificeret, f.pladser_verificeret,
         f.pladser_registreret_verificerede) = (int(v) for v in values[5:13])
        f.andel_vurderet = float(andel) if andel is not None else None
    return f


def _share_assessed(antal: str, vurderet: str, public: bool) -> sql.Composable:
    """Per cent of shelters assessed (NULL without shelters, or for the public)."""
    if public:
        return sql.SQL("NULL::numeric")
    return sql.SQL(f"round(100.0 * {vurderet} / nullif({antal}, 0), 1)")


def _population_cte() -> sql.Composable:
    return sql.SQL("pop(kommunekode, folketal) AS "
                   "(SELECT * FROM unnest(%(pop_codes)s::int[], %(pop_values)s::int[]))")


def _params(**extra) -> dict:
    codes, values = population().arrays()
    return {"excluded": list(COVERAGE_EXCLUDED_STATUS), "pop_codes": codes,
            "pop_values": values, **extra}


def kommune_rows_steps(public: bool, *, geometry_tolerance: float | None = None
                       ) -> Steps[list[KommuneRow]]:
    """One row of figures per municipality (all 99, also those without shelters), with the
    boundary simplified by `geometry_tolerance` metres as GeoJSON in EPSG:4326 if given."""
    geom = sql.SQL("NULL::text")
    if geometry_tolerance is not None:
        geom = sql.SQL("ST_AsGeoJSON(ST_Transform(ST_SimplifyPreserveTopology(k.geometri, "
                       "%(tolerance)s), 4326), 5)")
    n_aggs = len(_aggregate_list(public))
    stmt = sql.SQL("""
        WITH {pop},
        agg AS (SELECT t.beliggenhedskommune AS kommunekode, {aggs}
                FROM {view} t GROUP BY t.beliggenhedskommune)
        SELECT k.kommunekode, k.navn, p.folketal,
               round(coalesce(agg.c3, 0) * 1000.0 / nullif(p.folketal, 0), 1), {share},
               {geom}, {agg_cols}
        FROM ly.kommune k
        LEFT JOIN pop p ON p.kommunekode = k.kommunekode
        LEFT JOIN agg ON agg.kommunekode = k.kommunekode
        ORDER BY k.kommunekode""").format(
        pop=_population_cte(), view=_view(public), geom=geom,
        share=_share_assessed("agg.c1", "agg.c6", public),
        aggs=sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(sql.SQL(a), sql.Identifier(f"c{i + 1}"))
            for i, a in enumerate(_aggregate_list(public))),
        agg_cols=sql.SQL(", ").join(
            sql.SQL("coalesce(agg.{}, 0)").format(sql.Identifier(f"c{i + 1}"))
            for i in range(n_aggs)))
    rows = yield stmt, _params(tolerance=geometry_tolerance)
    return [KommuneRow(kommunekode=r[0], navn=r[1],
                       figures=_figures(r[6:], r[2], r[3], r[4], public), geometry=r[5])
            for r in rows]


def _area_figures_steps(public: bool, kommunekode: int | None) -> Steps[Figures]:
    where = sql.SQL("TRUE") if kommunekode is None else \
        sql.SQL("t.beliggenhedskommune = %(kommune)s")
    folketal = population().total if kommunekode is None else \
        population().by_kommune.get(kommunekode)
    stmt = sql.SQL("""
        SELECT {aggs}, round(coalesce(sum(t.pladser) FILTER (
                   WHERE t.funktionsstatus_kode <> ALL (%(excluded)s)), 0)
               * 1000.0 / nullif(%(folketal)s::int, 0), 1), {share}
        FROM {view} t WHERE {where}""").format(
        aggs=_aggregates(public), view=_view(public), where=where,
        share=_share_assessed("count(t.objekt_id)",
                              "count(t.objekt_id) FILTER (WHERE t.egnethed_kode <> 9)", public))
    (row,) = yield stmt, _params(kommune=kommunekode, folketal=folketal)
    return _figures(row[:-2], folketal, row[-2], row[-1], public)


def _by_code_steps(public: bool, column: str, kommunekode: int | None,
                   with_verified: bool = False) -> Steps[list[CodeCount]]:
    codelist = workflow_theme().fields_by_name[column].codelist
    where = sql.SQL("TRUE") if kommunekode is None else \
        sql.SQL("t.beliggenhedskommune = %(kommune)s")
    extra = sql.SQL(", coalesce(sum(t.pladser_verificeret), 0), count(t.pladser_verificeret)") \
        if with_verified else sql.SQL("")
    stmt = sql.SQL("""
        SELECT d.kode, d.tekst, count(t.objekt_id), coalesce(sum(t.pladser), 0){extra}
        FROM ly.{codelist} d
        LEFT JOIN (SELECT * FROM {view} t WHERE {where}) t ON t.{column} = d.kode
        GROUP BY d.kode, d.tekst
        HAVING d.kode IN (SELECT kode FROM ly.{codelist} WHERE aktiv = 1)
            OR count(t.objekt_id) > 0
        ORDER BY d.kode""").format(extra=extra, codelist=sql.Identifier(codelist),
                                   view=_view(public), where=where,
                                   column=sql.Identifier(column))
    rows = yield stmt, {"kommune": kommunekode}
    return [CodeCount(kode=r[0], tekst=r[1], antal=r[2], pladser=int(r[3]),
                      pladser_verificeret=int(r[4]) if with_verified else None,
                      antal_verificeret=int(r[5]) if with_verified else None)
            for r in rows]


def _action_steps(kommunekode: int) -> Steps[tuple[list[ActionRow], int]]:
    stmt = sql.SQL("""
        SELECT t.objekt_id::text, t.navn,
               concat_ws(', ', nullif(concat_ws(' ', t.vejnavn, t.husnr), ''),
                         nullif(concat_ws(' ', t.postnr, t.postnr_by), '')),
               t.beskyt_rum, t.pladser, t.pladser_verificeret, t.egnethed_kode, t.egnethed,
               count(*) OVER ()
        FROM {view} t
        WHERE t.beliggenhedskommune = %(kommune)s AND t.egnethed_kode IN (2, 3)
        ORDER BY t.egnethed_kode DESC, t.navn NULLS LAST, t.objekt_id
        LIMIT %(limit)s""").format(view=_view(False))
    rows = yield stmt, {"kommune": kommunekode, "limit": ACTION_LIST_LIMIT}
    total = rows[0][8] if rows else 0
    return [ActionRow(*r[:8]) for r in rows], total


def _now_steps() -> Steps[datetime]:
    ((now,),) = yield sql.SQL("SELECT now()"), []
    return now


def kommune_exists_steps(kommunekode: int) -> Steps[tuple[str, int | None] | None]:
    rows = yield (sql.SQL("SELECT navn, cvr_kode FROM ly.kommune WHERE kommunekode = %s"),
                  [kommunekode])
    return rows[0] if rows else None


def _code_tables_steps(kommunekode: int | None) -> Steps[dict[str, list[CodeCount]]]:
    """The area's shelters by type, functional status, visibility and classification."""
    return {
        "efter_type": (yield from _by_code_steps(False, "beskyt_rum_kode", kommunekode)),
        "efter_funktionsstatus": (yield from _by_code_steps(False, "funktionsstatus_kode",
                                                            kommunekode)),
        "efter_synlighed": (yield from _by_code_steps(False, "off_kode", kommunekode)),
        "efter_egnethed": (yield from _by_code_steps(False, "egnethed_kode", kommunekode,
                                                     with_verified=True)),
    }


def kommune_report_steps(kommunekode: int) -> Steps[KommuneReport | None]:
    """The report of one municipality for a signed-in viewer (None: no such municipality).

    Counts the objects of every theme lying in the municipality (`beliggenhedskommune`)
    that the viewer sees.
    """
    found = yield from kommune_exists_steps(kommunekode)
    if found is None:
        return None
    navn, cvr = found
    pop = population()
    now = yield from _now_steps()
    return KommuneReport(
        kommunekode=kommunekode, navn=navn, cvr_kode=cvr, genereret=now,
        befolkning_periode=pop.period, befolkning_kilde=pop.source,
        temaer=(yield from theme_sections_steps(False, kommunekode, now)),
        figures=(yield from _area_figures_steps(False, kommunekode)),
        **(yield from _code_tables_steps(kommunekode)),
        **dict(zip(("handling", "handling_i_alt"), (yield from _action_steps(kommunekode)))),
        eftersyn=(yield from _inspection_steps(kommunekode)),
    )


def national_report_steps() -> Steps[NationalReport]:
    """The national overview for a signed-in viewer: every theme's figures, the workflow
    theme's totals and one row per municipality."""
    pop = population()
    now = yield from _now_steps()
    return NationalReport(
        genereret=now, befolkning_periode=pop.period, befolkning_kilde=pop.source,
        temaer=(yield from theme_sections_steps(False, None, now)),
        figures=(yield from _area_figures_steps(False, None)),
        **(yield from _code_tables_steps(None)),
        kommuner=(yield from kommune_rows_steps(False)),
        eftersyn=(yield from _inspection_steps(None)),
    )


# --- geometries for static maps --------------------------------------------------------------

@dataclass
class KommuneMapData:
    """Geometries (WKB, EPSG:25832) for a municipality's static map."""

    boundary: bytes
    neighbours: list[bytes]
    #: (x, y, beskyt_rum_kode, egnethed_kode) of the shelters the viewer sees there.
    shelters: list[tuple[float, float, int, int | None]]


def kommune_map_steps(kommunekode: int, public: bool = False) -> Steps[KommuneMapData]:
    rows = yield (sql.SQL("""
        SELECT ST_AsBinary(k.geometri),
               ARRAY(SELECT ST_AsBinary(ST_SimplifyPreserveTopology(n.geometri, 50))
                     FROM ly.kommune n
                     WHERE n.kommunekode <> k.kommunekode
                       AND n.geometri && ST_Expand(k.geometri, 5000))
        FROM ly.kommune k WHERE k.kommunekode = %s"""), [kommunekode])
    boundary, neighbours = rows[0]
    egnethed = sql.SQL("NULL::int") if public else sql.SQL("t.egnethed_kode")
    points = yield (sql.SQL("""
        SELECT ST_X(t.geometri), ST_Y(t.geometri), t.beskyt_rum_kode, {egnethed}
        FROM {view} t WHERE t.beliggenhedskommune = %s
        ORDER BY t.objekt_id""").format(egnethed=egnethed, view=_view(public)), [kommunekode])
    return KommuneMapData(bytes(boundary), [bytes(n) for n in neighbours],
                          [tuple(p) for p in points])


def national_map_steps(tolerance: float = 250.0) -> Steps[list[tuple[int, bytes]]]:
    """Simplified municipality boundaries (WKB, EPSG:25832) for the national static map."""
    rows = yield (sql.SQL("SELECT kommunekode, ST_AsBinary(ST_SimplifyPreserveTopology("
                          "geometri, %s)) FROM ly.kommune ORDER BY kommunekode"), [tolerance])
    return [(r[0], bytes(r[1])) for r in rows]
