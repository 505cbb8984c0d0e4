"""The shelters' own figures in the reports (6101, the inspection workflow's theme): coverage,
type, classification and inspections, registered with the generic reports
(`loaders.reports.register_extra`) under temakode 6101.

The same design as `loaders.reports`: every figure is a query against the current register as
the connection's role sees it, written once as steps (`loaders.reports.run` drives them on a
synchronous connection, `run_async` on an asynchronous one). Each function takes the theme's
descriptor, which the generic reports pass in (for 6101 from the registry).

Coverage (dækning) counts the places of shelters that exist and are not closed: every
`funktionsstatus_kode` except 1 Planlagt, 2 Under anlæg, 5 Lukket and 6 Fjernet
(`COVERAGE_EXCLUDED_STATUS`), divided by the municipality's population from Danmarks
Statistik (`loaders.reports.population`, FOLK1A 2026K1). Christiansø (411) has no population in
that table, so it has no coverage figure; the national figure divides all counted places by the
98 municipalities' population.

Inspections: the classification and verified places come from the shelters' attributes
(`egnethed_kode`, `pladser_verificeret`, written by approved inspections); the inspection
register itself (`ly.eftersyn`, `ly.mangel`, migration 0003) gives the inspections by status
and the open deficiencies by grade, with those past their deadline.

`kommune_rows_steps` (one row of coverage figures per municipality) is also the maps'
choropleth, through `loaders.reports.kommune_rows_steps`.

Planned coverage (`planlaegning`, issue 18): the municipality's figures from its newest
finished plan run that the viewer may read (`loaders.planning.coverage_steps`: residents
within reach, covered, the deficit, the postal districts with the largest deficit, and the
newest scenario compared with it), or None without a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql

from datamodel import query
from datamodel.themes import Theme
from loaders import reports
from loaders.reports import Steps, population

#: funktionsstatus_kode values whose places do not count as coverage.
COVERAGE_EXCLUDED_STATUS = (1, 2, 5, 6)
#: egnethed_kode: 1 Egnet, 2 Egnet efter udbedring, 3 Uegnet, 9 Ikke vurderet.
EGNET, EFTER_UDBEDRING, UEGNET, IKKE_VURDERET = 1, 2, 3, 9
#: Most shelters listed by name in a municipality's table of shelters needing action.
ACTION_LIST_LIMIT = 500


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


@dataclass
class KommuneFigures:
    """The shelters' own figures in a municipality's report (after the generic fields)."""

    figures: Figures
    efter_type: list[CodeCount]
    efter_funktionsstatus: list[CodeCount]
    efter_synlighed: list[CodeCount]
    efter_egnethed: list[CodeCount]
    handling: list[ActionRow]
    handling_i_alt: int
    eftersyn: InspectionFigures | None = None
    #: Coverage in the newest plan run (`loaders.planning.PlanCoverage`), None without one.
    planlaegning: Any = None


@dataclass
class NationalFigures:
    """The shelters' own figures in the national overview, with one row per municipality."""

    figures: Figures
    efter_type: list[CodeCount]
    efter_funktionsstatus: list[CodeCount]
    efter_synlighed: list[CodeCount]
    efter_egnethed: list[CodeCount]
    kommuner: list[KommuneRow]
    eftersyn: InspectionFigures | None = None


# --- SQL -------------------------------------------------------------------------------------

def _view(theme: Theme, public: bool) -> sql.Identifier:
    return query.views(public, theme)[0]


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


def kommune_rows_steps(theme: Theme, public: bool, *, geometry_tolerance: float | None = None
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
        pop=_population_cte(), view=_view(theme, public), geom=geom,
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


def _area_figures_steps(theme: Theme, public: bool, kommunekode: int | None) -> Steps[Figures]:
    where = sql.SQL("TRUE") if kommunekode is None else \
        sql.SQL("t.beliggenhedskommune = %(kommune)s")
    folketal = population().total if kommunekode is None else \
        population().by_kommune.get(kommunekode)
    stmt = sql.SQL("""
        SELECT {aggs}, round(coalesce(sum(t.pladser) FILTER (
                   WHERE t.funktionsstatus_kode <> ALL (%(excluded)s)), 0)
               * 1000.0 / nullif(%(folketal)s::int, 0), 1), {share}
        FROM {view} t WHERE {where}""").format(
        aggs=_aggregates(public), view=_view(theme, public), where=where,
        share=_share_assessed("count(t.objekt_id)",
                              "count(t.objekt_id) FILTER (WHERE t.egnethed_kode <> 9)", public))
    (row,) = yield stmt, _params(kommune=kommunekode, folketal=folketal)
    return _figures(row[:-2], folketal, row[-2], row[-1], public)


def _by_code_steps(theme: Theme, public: bool, column: str, kommunekode: int | None,
                   with_verified: bool = False) -> Steps[list[CodeCount]]:
    codelist = theme.fields_by_name[column].codelist
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
                                   view=_view(theme, public), where=where,
                                   column=sql.Identifier(column))
    rows = yield stmt, {"kommune": kommunekode}
    return [CodeCount(kode=r[0], tekst=r[1], antal=r[2], pladser=int(r[3]),
                      pladser_verificeret=int(r[4]) if with_verified else None,
                      antal_verificeret=int(r[5]) if with_verified else None)
            for r in rows]


def _action_steps(theme: Theme, kommunekode: int) -> Steps[tuple[list[ActionRow], int]]:
    stmt = sql.SQL("""
        SELECT t.objekt_id::text, t.navn,
               concat_ws(', ', nullif(concat_ws(' ', t.vejnavn, t.husnr), ''),
                         nullif(concat_ws(' ', t.postnr, t.postnr_by), '')),
               t.beskyt_rum, t.pladser, t.pladser_verificeret, t.egnethed_kode, t.egnethed,
               count(*) OVER ()
        FROM {view} t
        WHERE t.beliggenhedskommune = %(kommune)s AND t.egnethed_kode IN (2, 3)
        ORDER BY t.egnethed_kode DESC, t.navn NULLS LAST, t.objekt_id
        LIMIT %(limit)s""").format(view=_view(theme, False))
    rows = yield stmt, {"kommune": kommunekode, "limit": ACTION_LIST_LIMIT}
    total = rows[0][8] if rows else 0
    return [ActionRow(*r[:8]) for r in rows], total


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


def _code_tables_steps(theme: Theme, kommunekode: int | None
                       ) -> Steps[dict[str, list[CodeCount]]]:
    """The area's shelters by type, functional status, visibility and classification."""
    return {
        "efter_type": (yield from _by_code_steps(theme, False, "beskyt_rum_kode", kommunekode)),
        "efter_funktionsstatus": (yield from _by_code_steps(theme, False, "funktionsstatus_kode",
                                                            kommunekode)),
        "efter_synlighed": (yield from _by_code_steps(theme, False, "off_kode", kommunekode)),
        "efter_egnethed": (yield from _by_code_steps(theme, False, "egnethed_kode", kommunekode,
                                                     with_verified=True)),
    }


def kommune_steps(theme: Theme, kommunekode: int, now: datetime) -> Steps[KommuneFigures]:
    """The shelters' own figures in a municipality's report, for a signed-in viewer."""
    from loaders import planning

    return KommuneFigures(
        figures=(yield from _area_figures_steps(theme, False, kommunekode)),
        **(yield from _code_tables_steps(theme, kommunekode)),
        **dict(zip(("handling", "handling_i_alt"),
                   (yield from _action_steps(theme, kommunekode)))),
        eftersyn=(yield from _inspection_steps(kommunekode)),
        planlaegning=(yield from planning.coverage_steps(theme, kommunekode)),
    )


def national_steps(theme: Theme, now: datetime) -> Steps[NationalFigures]:
    """The shelters' national totals, code tables, one row per municipality and inspections."""
    return NationalFigures(
        figures=(yield from _area_figures_steps(theme, False, None)),
        **(yield from _code_tables_steps(theme, None)),
        kommuner=(yield from kommune_rows_steps(theme, False)),
        eftersyn=(yield from _inspection_steps(None)),
    )


# --- geometries for the static map -------------------------------------------------------------

@dataclass
class KommuneMapData:
    """Geometries (WKB, EPSG:25832) for a municipality's static map."""

    boundary: bytes
    neighbours: list[bytes]
    #: (x, y, beskyt_rum_kode, egnethed_kode) of the shelters the viewer sees there.
    shelters: list[tuple[float, float, int, int | None]]


def kommune_map_steps(theme: Theme, kommunekode: int, public: bool = False
                      ) -> Steps[KommuneMapData]:
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
        ORDER BY t.objekt_id""").format(egnethed=egnethed, view=_view(theme, public)),
        [kommunekode])
    return KommuneMapData(bytes(boundary), [bytes(n) for n in neighbours],
                          [tuple(p) for p in points])


reports.register_extra(6101, reports.ReportExtra(
    kommune_steps=kommune_steps, national_steps=national_steps,
    kommune_rows_steps=kommune_rows_steps))
