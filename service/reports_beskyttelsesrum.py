"""How the shelters' own figures (6101, `loaders.reports_beskyttelsesrum`) are shown in the
reports: after the shelters' generic section, the register's key figures with a static map,
the shelters by type, functional status, visibility and classification, coverage, the shelters
needing action and the inspection register's figures; the national overview also has the
coverage map and one row per municipality (at the end of its PDF).

Registered with the generic reports (`service.reports.register_part`) under temakode 6101; the
municipal report's HTML includes `_report_beskyttelsesrum_kommune.html`, the national one
`_report_beskyttelsesrum_national.html`, each given `part` (the dict `html` returns).
"""

from __future__ import annotations

import html
import io

from datamodel.themes import Theme
from loaders import reports as figures
from loaders import reports_beskyttelsesrum as shelters
from service.maps import class_breaks, class_colour, code_colours, legend_classes
from service.reports import (ReportPart, data_uri, fmt, pdf_section, pdf_table, plotting,
                             png_bytes, register_part, scale_bar)

#: Key figures in the order the reports show them: (attribute, label, decimals).
KEY_FIGURES = (
    ("antal", "Beskyttelsesrum i alt", 0),
    ("pladser", "Registrerede pladser", 0),
    ("pladser_daekning", "Pladser i dækningen (ikke planlagt, under anlæg, lukket eller fjernet)",
     0),
    ("folketal", "Folketal", 0),
    ("pladser_pr_1000", "Pladser pr. 1.000 indbyggere", 1),
    ("antal_offentlige", "Offentlige beskyttelsesrum og betondækningsgrave", 0),
    ("pladser_offentlige", "Pladser i offentlige beskyttelsesrum og betondækningsgrave", 0),
)
INSPECTION_FIGURES = (
    ("antal_vurderet", "Vurderede beskyttelsesrum (egnethed fastsat)", 0),
    ("andel_vurderet", "Andel vurderet (%)", 1),
    ("antal_verificeret", "Beskyttelsesrum med verificerede pladser", 0),
    ("pladser_verificeret", "Verificerede pladser", 0),
    ("pladser_registreret_verificerede", "Registrerede pladser i de samme beskyttelsesrum", 0),
)
NATIONAL_COLUMNS = (
    ("Kode", None, 0), ("Kommune", None, 0), ("Folketal", "folketal", 0),
    ("Rum", "antal", 0), ("Pladser", "pladser", 0), ("Dækning", "pladser_daekning", 0),
    ("Pr. 1.000", "pladser_pr_1000", 1), ("Vurderet %", "andel_vurderet", 1),
    ("Egnet", "egnet", 0), ("Efter udb.", "egnet_efter_udbedring", 0), ("Uegnet", "uegnet", 0),
    ("Verif. pl.", "pladser_verificeret", 0),
)
DEFICIENCIES_NOTE = (
    "Eftersyn efter status fra eftersynsregistret; åbne mangler (åben eller planlagt) efter "
    "grad: S sikkerhed, 3 kritisk, 2 væsentlig, 1 let. Forfaldne: fristen er overskredet.")
GRADE_TEXT = {"S": "S – sikkerhed", "3": "3 – kritisk", "2": "2 – væsentlig", "1": "1 – let"}
MAP_CAPTION = ("Beskyttelsesrum efter type. ETRS89 / UTM 32N. Kommunegrænser: DAGI 1:500.000.")
NATIONAL_MAP_CAPTION = ("Pladser i dækningen pr. 1.000 indbyggere. ETRS89 / UTM 32N. "
                        "Kommunegrænser: DAGI 1:500.000. Folketal: Danmarks Statistik, FOLK1A.")
COVERAGE_NOTE = (
    "Dækning: pladser i beskyttelsesrum, der ikke er planlagt, under anlæg, lukket eller "
    "fjernet, delt med folketallet. Tallene omfatter de beskyttelsesrum, du har adgang til.")


def _inspection_tables(insp: shelters.InspectionFigures):
    """(status rows, deficiency rows) for the inspection section."""
    status = [["Status", "Eftersyn"]] + [[st, fmt(n)] for st, n in insp.efter_status]
    grades = [["Grad", "Åbne mangler", "Heraf forfaldne"]] + [
        [GRADE_TEXT[g], fmt(n), fmt(late)] for g, n, late in insp.mangler]
    grades.append(["I alt", fmt(insp.aabne_mangler), fmt(insp.forfaldne_mangler)])
    return status, grades


def _colours(theme: Theme, attribute: str) -> dict[int, str]:
    """Map colours of the codes of one of the theme's coded attributes."""
    return code_colours(theme.fields_by_name[attribute].codelist)


# --- static maps -----------------------------------------------------------------------------

def kommune_map_png(theme: Theme, data: shelters.KommuneMapData, navn: str,
                    type_names: dict[int, str]) -> bytes:
    """The municipality, its neighbours for orientation, and its shelters by type."""
    gpd, shapely, Figure, Patch = plotting()
    fig = Figure(figsize=(7.2, 6.0), dpi=120)
    ax = fig.add_subplot()
    boundary = gpd.GeoSeries([shapely.from_wkb(data.boundary)], crs=25832)
    if data.neighbours:
        gpd.GeoSeries(shapely.from_wkb(data.neighbours), crs=25832).plot(
            ax=ax, facecolor="#eeeeee", edgecolor="#b0b0b0", linewidth=0.5)
    boundary.plot(ax=ax, facecolor="#fffbea", edgecolor="#222222", linewidth=1.2)
    handles = []
    for kode, colour in _colours(theme, "beskyt_rum_kode").items():
        pts = [(x, y) for x, y, t, _ in data.shelters if t == kode]
        if not pts:
            continue
        xs, ys = zip(*pts)
        ax.scatter(xs, ys, s=16, c=colour, edgecolors="white", linewidths=0.6, zorder=3)
        handles.append(Patch(facecolor=colour, edgecolor="white",
                             label=f"{type_names.get(kode, kode)} ({len(pts)})"))
    xmin, ymin, xmax, ymax = boundary.total_bounds
    mx, my = (xmax - xmin) * 0.06 + 200, (ymax - ymin) * 0.06 + 200
    ax.set_xlim(xmin - mx, xmax + mx)
    ax.set_ylim(ymin - my, ymax + my)
    ax.set_aspect("equal")
    ax.set_axis_off()
    scale_bar(ax, xmin - mx, xmax + mx, ymin - my, ymax + my)
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=7.5, title="Type",
                  title_fontsize=8, framealpha=0.9)
    ax.set_title(f"{theme.title} i {navn}", fontsize=11)
    return png_bytes(fig)


def national_map_png(boundaries: list[tuple[int, bytes]],
                     rows: list[shelters.KommuneRow]) -> bytes:
    """Municipalities coloured by places per 1 000 inhabitants (the map page's classes)."""
    gpd, shapely, Figure, Patch = plotting()
    by_code = {r.kommunekode: r.figures.pladser_pr_1000 for r in rows}
    breaks = class_breaks([v for v in by_code.values() if v is not None])
    geoms = gpd.GeoSeries(shapely.from_wkb([b for _, b in boundaries]), crs=25832)
    colours = [class_colour(by_code.get(k), breaks) for k, _ in boundaries]
    fig = Figure(figsize=(7.2, 6.4), dpi=120)
    ax = fig.add_subplot()
    geoms.plot(ax=ax, color=colours, edgecolor="#555555", linewidth=0.3)
    ax.set_aspect("equal")
    ax.set_axis_off()
    handles = [Patch(facecolor=c, edgecolor="#777777", label=t) for c, t in
               legend_classes(breaks)]
    ax.legend(handles=handles, loc="upper right", fontsize=7.5,
              title="Pladser pr. 1.000 indb.", title_fontsize=8, framealpha=0.9)
    xmin, ymin, xmax, ymax = geoms.total_bounds
    scale_bar(ax, xmin, xmax, ymin, ymax)
    ax.set_title("Dækning pr. kommune", fontsize=11)
    return png_bytes(fig)


# --- PDF -------------------------------------------------------------------------------------

def _code_table(counts: list[shelters.CodeCount], verified: bool = False):
    return pdf_table(_code_rows(counts, verified), right=(2, 3, 4, 5) if verified else (2, 3))


def _code_rows(counts: list[shelters.CodeCount], verified: bool = False) -> list[list[str]]:
    head = ["Kode", "Tekst", "Antal", "Pladser"] + (
        ["Verificerede pladser", "Med verificerede pladser"] if verified else [])
    rows = [head]
    for c in counts:
        row = [str(c.kode), c.tekst, fmt(c.antal), fmt(c.pladser)]
        if verified:
            row += [fmt(c.pladser_verificeret), fmt(c.antal_verificeret)]
        rows.append(row)
    return rows


def _figure_rows(fig: shelters.Figures, spec) -> list[list[str]]:
    return [[label, fmt(getattr(fig, attr), decimals)] for attr, label, decimals in spec]


def kommune_story(theme: Theme, own: shelters.KommuneFigures, map_png: bytes, p,
                  styles) -> list:
    """The shelters' own part of a municipality's PDF."""
    from reportlab.lib.units import cm
    from reportlab.platypus import Image, Paragraph, Spacer

    s = [p(f"{theme.title}: registret", "Heading2"),
         pdf_table(_figure_rows(own.figures, KEY_FIGURES), widths=[12 * cm, 4 * cm],
                   right=(1,), header=False),
         Spacer(1, 0.3 * cm),
         Image(io.BytesIO(map_png), width=15 * cm, height=12.5 * cm, kind="proportional"),
         p(MAP_CAPTION, "Italic"),
         pdf_section(p("Efter type", "Heading3"), _code_table(own.efter_type)),
         pdf_section(p("Efter funktionsstatus", "Heading3"),
                     _code_table(own.efter_funktionsstatus)),
         pdf_section(p("Efter synlighed (off_kode)", "Heading3"),
                     _code_table(own.efter_synlighed)),
         p("Kapacitet og dækning", "Heading2"),
         p(f"{fmt(own.figures.pladser_daekning)} pladser i dækningen for "
           f"{fmt(own.figures.folketal)} indbyggere: "
           f"{fmt(own.figures.pladser_pr_1000, 1)} pladser pr. 1.000 indbyggere."),
         p(COVERAGE_NOTE),
         p("Eftersyn og klassifikation", "Heading2"),
         pdf_table(_figure_rows(own.figures, INSPECTION_FIGURES),
                   widths=[12 * cm, 4 * cm], right=(1,), header=False),
         pdf_section(p("Klassifikation (egnethed)", "Heading3"),
                     _code_table(own.efter_egnethed, verified=True)),
         p("Beskyttelsesrum, der kræver handling (egnet efter udbedring eller uegnet)",
           "Heading3")]
    if own.handling:
        rows = [["Navn", "Adresse", "Type", "Pladser", "Verif.", "Egnethed"]]
        cell = styles["BodyText"].clone("cell", fontSize=7.5, leading=9)
        for a in own.handling:
            rows.append([Paragraph(html.escape(a.navn or "–"), cell),
                         Paragraph(html.escape(a.adresse or "–"), cell),
                         a.beskyt_rum, fmt(a.pladser), fmt(a.pladser_verificeret),
                         a.egnethed])
        s.append(pdf_table(rows, widths=[4.2 * cm, 4.8 * cm, 2.8 * cm, 1.4 * cm, 1.2 * cm,
                                         3.0 * cm], right=(3, 4), font_size=7.5))
        if own.handling_i_alt > len(own.handling):
            s.append(p(f"Viser {len(own.handling)} af {own.handling_i_alt}."))
    else:
        s.append(p("Ingen."))
    status, grades = _inspection_tables(own.eftersyn)
    s += [p("Eftersyn og mangler", "Heading3"), p(DEFICIENCIES_NOTE),
          pdf_table(status, widths=[6 * cm, 3 * cm], right=(1,)), Spacer(1, 0.2 * cm),
          pdf_table(grades, widths=[6 * cm, 3 * cm, 3 * cm], right=(1, 2))]
    return s


def national_story(theme: Theme, own: shelters.NationalFigures, map_png: bytes, p
                   ) -> tuple[list, list]:
    """The shelters' own part of the national PDF, and its table of municipalities (at the
    end)."""
    from reportlab.lib.units import cm
    from reportlab.platypus import Image, PageBreak, Spacer

    status, grades = _inspection_tables(own.eftersyn)
    after = [
        p(f"{theme.title}: hele landet", "Heading2"),
        pdf_table(_figure_rows(own.figures, KEY_FIGURES + INSPECTION_FIGURES),
                  widths=[12 * cm, 4 * cm], right=(1,), header=False),
        Spacer(1, 0.3 * cm),
        Image(io.BytesIO(map_png), width=14 * cm, height=12.4 * cm, kind="proportional"),
        p(NATIONAL_MAP_CAPTION, "Italic"),
        pdf_section(p("Efter type", "Heading3"), _code_table(own.efter_type)),
        pdf_section(p("Efter funktionsstatus", "Heading3"),
                    _code_table(own.efter_funktionsstatus)),
        pdf_section(p("Efter synlighed (off_kode)", "Heading3"),
                    _code_table(own.efter_synlighed)),
        pdf_section(p("Klassifikation (egnethed)", "Heading3"),
                    _code_table(own.efter_egnethed, verified=True)),
        p(COVERAGE_NOTE),
        p("Eftersyn og mangler", "Heading3"), p(DEFICIENCIES_NOTE),
        pdf_table(status, widths=[6 * cm, 3 * cm], right=(1,)),
        pdf_table(grades, widths=[6 * cm, 3 * cm, 3 * cm], right=(1, 2)),
    ]
    rows = [[c[0] for c in NATIONAL_COLUMNS]]
    for r in own.kommuner:
        rows.append([str(r.kommunekode), r.navn] + [
            fmt(getattr(r.figures, attr), d) for _, attr, d in NATIONAL_COLUMNS[2:]])
    widths = [1.0 * cm, 2.9 * cm, 1.5 * cm, 1.0 * cm, 1.4 * cm, 1.4 * cm, 1.3 * cm,
              1.4 * cm, 1.1 * cm, 1.3 * cm, 1.1 * cm, 1.4 * cm]
    end = [PageBreak(), p(f"{theme.title}: kommunerne", "Heading2"),
           pdf_table(rows, widths=widths, right=tuple(range(2, len(NATIONAL_COLUMNS))),
                     font_size=7)]
    return after, end


# --- the parts -------------------------------------------------------------------------------

class KommunePart(ReportPart):
    """A municipality's report: the shelters' figures, map, action list and inspections."""

    template = "_report_beskyttelsesrum_kommune.html"

    async def load(self, conn, theme, report, own):
        return await figures.run_async(
            conn, shelters.kommune_map_steps(theme, report.kommunekode))

    def draw(self, theme, report, own, loaded):
        type_names = {c.kode: c.tekst for c in own.efter_type}
        return kommune_map_png(theme, loaded, report.navn, type_names)

    def html(self, theme, report, own, drawn):
        return {"theme": theme, "own": own, "map_src": data_uri(drawn),
                "key_figures": KEY_FIGURES, "inspection_figures": INSPECTION_FIGURES,
                "coverage_note": COVERAGE_NOTE, "deficiencies_note": DEFICIENCIES_NOTE,
                "egnethed_colours": _colours(theme, "egnethed_kode")}

    def pdf(self, theme, report, own, drawn, p, styles):
        return kommune_story(theme, own, drawn, p, styles), []


class NationalPart(ReportPart):
    """The national overview: the shelters' totals, coverage map and municipalities."""

    template = "_report_beskyttelsesrum_national.html"

    async def load(self, conn, theme, report, own):
        return await figures.run_async(conn, figures.national_map_steps())

    def draw(self, theme, report, own, loaded):
        return national_map_png(loaded, own.kommuner)

    def html(self, theme, report, own, drawn):
        return {"theme": theme, "own": own, "map_src": data_uri(drawn),
                "key_figures": KEY_FIGURES, "inspection_figures": INSPECTION_FIGURES,
                "columns": NATIONAL_COLUMNS, "coverage_note": COVERAGE_NOTE,
                "deficiencies_note": DEFICIENCIES_NOTE}

    def pdf(self, theme, report, own, drawn, p, styles):
        return national_story(theme, own, drawn, p)


register_part(6101, kommune=KommunePart(), national=NationalPart())
