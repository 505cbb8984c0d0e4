"""Reports: one municipality (`/rapporter/kommune/{kommunekode}`) and the national overview
(`/rapporter/national`), as HTML (default), PDF (`?f=pdf`) and JSON (`?f=json`).

Each report has a section per registered theme, made from its descriptor (`Theme.title`,
`figures`, `validity`, `label`): the objects the viewer sees, each figure summed, and for a
theme with a validity period those valid today and the list of objects valid now or later. The
inspection workflow's theme (`loaders.reports.workflow_theme`, the shelters) adds its coverage,
type, classification and inspection figures after its section.

Reports are for authorities: they show classifications and verified places, which the public
may not read, so a request without credentials gets 401. Every figure is computed in SQL
(`loaders/reports.py`) in a transaction that acts for the requesting actor, so a municipal
editor's report counts what that editor may see. The static map is drawn with matplotlib and
geopandas from the PostGIS geometries (no basemap); the PDF is laid out with reportlab, so no
browser or system service is needed to make it.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import date, datetime
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from datamodel import themes
from loaders import reports as figures
from service import params
from service.auth import current_actor, unauthorized
from service.db import acting
from service.errors import bad_request, not_found
from service.http import JSON, html_response, json_response, url
from service.maps import _num, class_breaks, class_colour, code_colours, legend_classes

router = APIRouter(tags=["Rapporter"])

PDF = "application/pdf"
REPORT_PARAMS = {"f"}
FORMATS = ("html", "pdf", "json")
LOCAL_TZ = ZoneInfo("Europe/Copenhagen")

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


def _inspection_tables(insp: figures.InspectionFigures):
    """(status rows, deficiency rows) for the inspection section."""
    status = [["Status", "Eftersyn"]] + [[st, fmt(n)] for st, n in insp.efter_status]
    grades = [["Grad", "Åbne mangler", "Heraf forfaldne"]] + [
        [GRADE_TEXT[g], fmt(n), fmt(late)] for g, n, late in insp.mangler]
    grades.append(["I alt", fmt(insp.aabne_mangler), fmt(insp.forfaldne_mangler)])
    return status, grades
MAP_CAPTION = ("Beskyttelsesrum efter type. ETRS89 / UTM 32N. Kommunegrænser: DAGI 1:500.000.")
NATIONAL_MAP_CAPTION = ("Pladser i dækningen pr. 1.000 indbyggere. ETRS89 / UTM 32N. "
                        "Kommunegrænser: DAGI 1:500.000. Folketal: Danmarks Statistik, FOLK1A.")
COVERAGE_NOTE = (
    "Dækning: pladser i beskyttelsesrum, der ikke er planlagt, under anlæg, lukket eller "
    "fjernet, delt med folketallet. Tallene omfatter de beskyttelsesrum, du har adgang til.")


def fmt(v, decimals: int = 0) -> str:
    return _num(v, decimals)


def _colours(attribute: str) -> dict[int, str]:
    """Map colours of the codes of one of the workflow theme's coded attributes."""
    return code_colours(figures.workflow_theme().fields_by_name[attribute].codelist)


# --- every theme's section -------------------------------------------------------------------

VALID_NOW, UPCOMING = "Gyldig nu", "Kommende"
NONE_LISTED = "Ingen er gyldige nu eller senere."


def theme_figure_rows(t: figures.ThemeSection) -> list[tuple[str, str, str]]:
    """(key, label, value) of a theme's figures table: its objects, each figure summed, and
    for a theme with a validity period the same for the objects valid today."""
    rows = [("antal", "Antal i alt", fmt(t.antal))]
    rows += [(s.felt, s.titel, fmt(s.sum)) for s in t.summer]
    if t.gyldighed:
        rows.append(("gyldige_i_dag", "Gyldige i dag", fmt(t.gyldige_i_dag)))
        rows += [(f"{s.felt}_i_dag", f"{s.titel}, gyldige i dag", fmt(s.sum))
                 for s in t.summer_i_dag]
    return rows


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, date):
        return value.strftime("%d.%m.%Y")
    if isinstance(value, (int, float)):
        return fmt(value)
    return str(value)


def theme_listing(t: figures.ThemeSection, *, with_kommune: bool
                  ) -> tuple[list[str], list[list[str]], tuple[int, ...]]:
    """(header, rows, numeric columns) of the objects valid now or later, with the attributes'
    titles from the theme's descriptor; the municipality column only where the report covers
    more than one."""
    theme = themes.get(t.collection_id)
    names = [n for n in t.felter if with_kommune or n != "beliggenhedskommune"]
    header = [theme.fields_by_name[n].title for n in names] + ["Status"]
    rows = [[_cell(o.egenskaber[n]) if n != "beliggenhedskommune"
             else str(o.egenskaber[n] or "–") for n in names]
            + [VALID_NOW if o.gyldig_nu else UPCOMING] for o in t.aktuelle]
    numeric = tuple(i for i, n in enumerate(names) if n != "beliggenhedskommune"
                    and theme.fields_by_name[n].type in ("integer", "number"))
    return header, rows, numeric


def theme_overview(temaer: list[figures.ThemeSection]) -> list[list[str]]:
    """One row per theme: title, objects, valid today, and its figures summed."""
    rows = [["Tema", "Antal", "Gyldige i dag", "Kapacitet"]]
    for t in temaer:
        rows.append([t.titel, fmt(t.antal),
                     fmt(t.gyldige_i_dag) if t.gyldighed else "–",
                     "; ".join(f"{s.titel}: {fmt(s.sum)}" for s in t.summer) or "–"])
    return rows


def listing_note(t: figures.ThemeSection) -> str | None:
    if t.aktuelle_i_alt > len(t.aktuelle):
        return f"Viser {len(t.aktuelle)} af {t.aktuelle_i_alt}."
    return None


def _format(request: Request) -> str:
    params.check_known(request, REPORT_PARAMS)
    f = request.query_params.get("f")
    if f is not None:
        if f.lower() not in FORMATS:
            raise bad_request("f", f"must be one of {', '.join(FORMATS)}")
        return f.lower()
    accept = request.headers.get("accept", "")
    if PDF in accept:
        return "pdf"
    if "json" in accept and "text/html" not in accept:
        return "json"
    return "html"


async def _signed_in(request: Request):
    actor = await current_actor(request)
    if actor.public:
        raise unauthorized("reports are for authorities: sign in (bearer token, API key or "
                           "the ly_token cookie)")
    return actor


def _kommunekode(raw: str) -> int:
    try:
        kode = int(raw)
    except ValueError:
        raise bad_request("kommunekode", f"{raw!r} is not a municipality code (e.g. 101)") \
            from None
    if not 100 <= kode <= 999:
        raise bad_request("kommunekode", "a municipality code has three digits (e.g. 101)")
    return kode


def _local(t: datetime) -> str:
    return t.astimezone(LOCAL_TZ).strftime("%d.%m.%Y %H:%M")


# --- static maps -----------------------------------------------------------------------------
# matplotlib, geopandas and reportlab are imported when a report is drawn, not when the app
# starts (they take a second or two to import).

def _plotting():
    import matplotlib

    matplotlib.use("Agg")  # the server draws into buffers, never onto a screen
    import geopandas
    import shapely
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    return geopandas, shapely, Figure, Patch


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", pad_inches=0.1)
    return buf.getvalue()


def _scale_bar(ax, xmin: float, xmax: float, ymin: float, ymax: float) -> None:
    span = (xmax - xmin) / 5
    length = next(v for v in (100_000, 50_000, 20_000, 10_000, 5_000, 2_000, 1_000, 500)
                  if v <= span) if span >= 500 else 500
    x0, y0 = xmin + (xmax - xmin) * 0.04, ymin + (ymax - ymin) * 0.04
    ax.plot([x0, x0 + length], [y0, y0], color="#222222", linewidth=3, solid_capstyle="butt")
    label = f"{length // 1000} km" if length >= 1000 else f"{length} m"
    ax.text(x0 + length / 2, y0 + (ymax - ymin) * 0.015, label, ha="center", fontsize=8)


def kommune_map_png(data: figures.KommuneMapData, navn: str,
                    type_names: dict[int, str]) -> bytes:
    """The municipality, its neighbours for orientation, and its shelters by type."""
    gpd, shapely, Figure, Patch = _plotting()
    fig = Figure(figsize=(7.2, 6.0), dpi=120)
    ax = fig.add_subplot()
    boundary = gpd.GeoSeries([shapely.from_wkb(data.boundary)], crs=25832)
    if data.neighbours:
        gpd.GeoSeries(shapely.from_wkb(data.neighbours), crs=25832).plot(
            ax=ax, facecolor="#eeeeee", edgecolor="#b0b0b0", linewidth=0.5)
    boundary.plot(ax=ax, facecolor="#fffbea", edgecolor="#222222", linewidth=1.2)
    handles = []
    for kode, colour in _colours("beskyt_rum_kode").items():
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
    _scale_bar(ax, xmin - mx, xmax + mx, ymin - my, ymax + my)
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=7.5, title="Type",
                  title_fontsize=8, framealpha=0.9)
    ax.set_title(f"{figures.workflow_theme().title} i {navn}", fontsize=11)
    return _png(fig)


def national_map_png(boundaries: list[tuple[int, bytes]],
                     rows: list[figures.KommuneRow]) -> bytes:
    """Municipalities coloured by places per 1 000 inhabitants (the map page's classes)."""
    gpd, shapely, Figure, Patch = _plotting()
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
    _scale_bar(ax, xmin, xmax, ymin, ymax)
    ax.set_title("Dækning pr. kommune", fontsize=11)
    return _png(fig)


# --- PDF -------------------------------------------------------------------------------------

def _pdf(title: str, build) -> bytes:
    """A PDF laid out by reportlab; `build(styles)` returns the story (flowables)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import SimpleDocTemplate

    styles = getSampleStyleSheet()
    buf = io.BytesIO()

    def footer(canvas, doc):
        canvas.saveState()
        canvas.setFont("Helvetica", 7.5)
        canvas.setFillGray(0.35)
        canvas.drawString(1.8 * cm, 1.1 * cm, f"Ly – {title}")
        canvas.drawRightString(A4[0] - 1.8 * cm, 1.1 * cm, f"Side {doc.page}")
        canvas.restoreState()

    doc = SimpleDocTemplate(buf, pagesize=A4, title=title, author="Ly", subject=title,
                            leftMargin=1.8 * cm, rightMargin=1.8 * cm, topMargin=1.6 * cm,
                            bottomMargin=1.8 * cm)
    doc.build(build(styles), onFirstPage=footer, onLaterPages=footer)
    return buf.getvalue()


def _table(rows: list[list], widths=None, right: tuple[int, ...] = (), font_size: float = 8.5,
           header: bool = True):
    """A table; columns in `right` (numbers) are right-aligned."""
    from reportlab.lib import colors
    from reportlab.platypus import LongTable, TableStyle

    t = LongTable(rows, colWidths=widths, repeatRows=1 if header else 0, hAlign="LEFT")
    style = [
        ("FONT", (0, 0), (-1, -1), "Helvetica", font_size),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#cccccc")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]
    style += [("ALIGN", (c, 0), (c, -1), "RIGHT") for c in right]
    if header:
        style += [("FONT", (0, 0), (-1, 0), "Helvetica-Bold", font_size),
                  ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8edf0"))]
    t.setStyle(TableStyle(style))
    return t


def _section(heading, table):
    """A heading kept on the same page as its (short) table."""
    from reportlab.platypus import KeepTogether

    return KeepTogether([heading, table])


def _code_table(counts: list[figures.CodeCount], verified: bool = False):
    return _table(_code_rows(counts, verified), right=(2, 3, 4, 5) if verified else (2, 3))


def _code_rows(counts: list[figures.CodeCount], verified: bool = False) -> list[list[str]]:
    head = ["Kode", "Tekst", "Antal", "Pladser"] + (
        ["Verificerede pladser", "Med verificerede pladser"] if verified else [])
    rows = [head]
    for c in counts:
        row = [str(c.kode), c.tekst, fmt(c.antal), fmt(c.pladser)]
        if verified:
            row += [fmt(c.pladser_verificeret), fmt(c.antal_verificeret)]
        rows.append(row)
    return rows


def _figure_rows(fig: figures.Figures, spec) -> list[list[str]]:
    out = []
    for attr, label, decimals in spec:
        out.append([label, fmt(getattr(fig, attr), decimals)])
    return out


def _theme_story(p, styles, t: figures.ThemeSection, *, with_kommune: bool) -> list:
    """A theme's section: its title and figures, and the objects valid now or later."""
    from reportlab.lib.units import cm
    from reportlab.platypus import Paragraph

    s = [_section(p(t.titel, "Heading2"),
                  _table([[label, value] for _, label, value in theme_figure_rows(t)],
                         widths=[12 * cm, 4 * cm], right=(1,), header=False))]
    if not t.gyldighed:
        return s
    s.append(p("Gyldige nu og kommende", "Heading3"))
    header, rows, numeric = theme_listing(t, with_kommune=with_kommune)
    if not rows:
        return s + [p(NONE_LISTED)]
    cell = styles["BodyText"].clone("cell", fontSize=7.5, leading=9)
    first = 5.0 * cm
    rest = (17.4 * cm - first) / len(header[1:])
    body = [[Paragraph(html.escape(r[0]), cell), *r[1:]] for r in rows]
    s.append(_table([header, *body], widths=[first] + [rest] * (len(header) - 1),
                    right=numeric, font_size=7.5))
    note = listing_note(t)
    if note:
        s.append(p(note))
    return s


def _overview_table(temaer: list[figures.ThemeSection]):
    from reportlab.lib.units import cm

    return _table(theme_overview(temaer), widths=[5.2 * cm, 1.8 * cm, 2.4 * cm, 8.0 * cm],
                  right=(1, 2))


def kommune_title(report: figures.KommuneReport) -> str:
    return f"Kommunerapport: {report.navn} ({report.kommunekode})"


NATIONAL_TITLE = "Landsoversigt"


def kommune_pdf(report: figures.KommuneReport, map_png: bytes, viewer: str) -> bytes:
    from reportlab.lib.units import cm
    from reportlab.platypus import Image, Paragraph, Spacer

    title = kommune_title(report)
    workflow = figures.workflow_theme()

    def workflow_story(p, styles):
        s = [p(f"{workflow.title}: registret", "Heading2"),
             _table(_figure_rows(report.figures, KEY_FIGURES), widths=[12 * cm, 4 * cm],
                    right=(1,), header=False),
             Spacer(1, 0.3 * cm),
             Image(io.BytesIO(map_png), width=15 * cm, height=12.5 * cm, kind="proportional"),
             p(MAP_CAPTION, "Italic"),
             _section(p("Efter type", "Heading3"), _code_table(report.efter_type)),
             _section(p("Efter funktionsstatus", "Heading3"),
                      _code_table(report.efter_funktionsstatus)),
             _section(p("Efter synlighed (off_kode)", "Heading3"),
                      _code_table(report.efter_synlighed)),
             p("Kapacitet og dækning", "Heading2"),
             p(f"{fmt(report.figures.pladser_daekning)} pladser i dækningen for "
               f"{fmt(report.figures.folketal)} indbyggere: "
               f"{fmt(report.figures.pladser_pr_1000, 1)} pladser pr. 1.000 indbyggere."),
             p(COVERAGE_NOTE),
             p("Eftersyn og klassifikation", "Heading2"),
             _table(_figure_rows(report.figures, INSPECTION_FIGURES),
                    widths=[12 * cm, 4 * cm], right=(1,), header=False),
             _section(p("Klassifikation (egnethed)", "Heading3"),
                      _code_table(report.efter_egnethed, verified=True)),
             p("Beskyttelsesrum, der kræver handling (egnet efter udbedring eller uegnet)",
               "Heading3")]
        if report.handling:
            rows = [["Navn", "Adresse", "Type", "Pladser", "Verif.", "Egnethed"]]
            cell = styles["BodyText"].clone("cell", fontSize=7.5, leading=9)
            for a in report.handling:
                rows.append([Paragraph(html.escape(a.navn or "–"), cell),
                             Paragraph(html.escape(a.adresse or "–"), cell),
                             a.beskyt_rum, fmt(a.pladser), fmt(a.pladser_verificeret),
                             a.egnethed])
            s.append(_table(rows, widths=[4.2 * cm, 4.8 * cm, 2.8 * cm, 1.4 * cm, 1.2 * cm,
                                          3.0 * cm], right=(3, 4), font_size=7.5))
            if report.handling_i_alt > len(report.handling):
                s.append(p(f"Viser {len(report.handling)} af {report.handling_i_alt}."))
        else:
            s.append(p("Ingen."))
        status, grades = _inspection_tables(report.eftersyn)
        s += [p("Eftersyn og mangler", "Heading3"), p(DEFICIENCIES_NOTE),
              _table(status, widths=[6 * cm, 3 * cm], right=(1,)), Spacer(1, 0.2 * cm),
              _table(grades, widths=[6 * cm, 3 * cm, 3 * cm], right=(1, 2))]
        return s

    def story(styles):
        p = lambda text, style="BodyText": Paragraph(html.escape(text), styles[style])  # noqa
        s = [p(title, "Title"),
             p(f"Rapport genereret {_local(report.genereret)} for {viewer}. Folketal: "
               f"{report.befolkning_kilde} {report.befolkning_periode}."),
             p("Temaer", "Heading2"), _overview_table(report.temaer)]
        for t in report.temaer:
            s += _theme_story(p, styles, t, with_kommune=False)
            if t.collection_id == workflow.collection_id:
                s += workflow_story(p, styles)
        return s

    return _pdf(title, story)


def national_pdf(report: figures.NationalReport, map_png: bytes, viewer: str) -> bytes:
    from reportlab.lib.units import cm
    from reportlab.platypus import Image, PageBreak, Paragraph, Spacer

    title = NATIONAL_TITLE
    workflow = figures.workflow_theme()

    def workflow_story(p):
        return [
            p(f"{workflow.title}: hele landet", "Heading2"),
            _table(_figure_rows(report.figures, KEY_FIGURES + INSPECTION_FIGURES),
                   widths=[12 * cm, 4 * cm], right=(1,), header=False),
            Spacer(1, 0.3 * cm),
            Image(io.BytesIO(map_png), width=14 * cm, height=12.4 * cm, kind="proportional"),
            p(NATIONAL_MAP_CAPTION, "Italic"),
            _section(p("Efter type", "Heading3"), _code_table(report.efter_type)),
            _section(p("Efter funktionsstatus", "Heading3"),
                     _code_table(report.efter_funktionsstatus)),
            _section(p("Efter synlighed (off_kode)", "Heading3"),
                     _code_table(report.efter_synlighed)),
            _section(p("Klassifikation (egnethed)", "Heading3"),
                     _code_table(report.efter_egnethed, verified=True)),
            p(COVERAGE_NOTE),
            p("Eftersyn og mangler", "Heading3"), p(DEFICIENCIES_NOTE),
            _table(_inspection_tables(report.eftersyn)[0], widths=[6 * cm, 3 * cm],
                   right=(1,)),
            _table(_inspection_tables(report.eftersyn)[1], widths=[6 * cm, 3 * cm, 3 * cm],
                   right=(1, 2)),
        ]

    def story(styles):
        p = lambda text, style="BodyText": Paragraph(html.escape(text), styles[style])  # noqa
        rows = [[c[0] for c in NATIONAL_COLUMNS]]
        for r in report.kommuner:
            rows.append([str(r.kommunekode), r.navn] + [
                fmt(getattr(r.figures, attr), d) for _, attr, d in NATIONAL_COLUMNS[2:]])
        widths = [1.0 * cm, 2.9 * cm, 1.5 * cm, 1.0 * cm, 1.4 * cm, 1.4 * cm, 1.3 * cm,
                  1.4 * cm, 1.1 * cm, 1.3 * cm, 1.1 * cm, 1.4 * cm]
        s = [p(title, "Title"),
             p(f"Rapport genereret {_local(report.genereret)} for {viewer}. Folketal: "
               f"{report.befolkning_kilde} {report.befolkning_periode}."),
             p("Temaer", "Heading2"), _overview_table(report.temaer)]
        for t in report.temaer:
            s += _theme_story(p, styles, t, with_kommune=True)
            if t.collection_id == workflow.collection_id:
                s += workflow_story(p)
        return s + [
            PageBreak(),
            p(f"{workflow.title}: kommunerne", "Heading2"),
            _table(rows, widths=widths, right=tuple(range(2, len(NATIONAL_COLUMNS))),
                   font_size=7),
        ]

    return _pdf(title, story)


# --- routes ----------------------------------------------------------------------------------

def _viewer(actor) -> str:
    who = actor.name or actor.subject
    roles = ", ".join(sorted(actor.roles))
    kommuner = f"; kommune {', '.join(str(k) for k in sorted(actor.kommuner))}" \
        if actor.kommuner else ""
    return f"{who} ({roles}{kommuner})"


def _theme_context(temaer: list[figures.ThemeSection], *, with_kommune: bool) -> dict:
    """What the templates need to draw every theme's section."""
    return {
        "workflow": figures.workflow_theme(),
        "overview": theme_overview(temaer),
        "theme_rows": {t.collection_id: theme_figure_rows(t) for t in temaer},
        "listings": {t.collection_id: theme_listing(t, with_kommune=with_kommune)
                     for t in temaer if t.gyldighed},
        "listing_notes": {t.collection_id: listing_note(t) for t in temaer},
        "none_listed": NONE_LISTED,
    }


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _links(request: Request, path: str) -> list[dict]:
    return [
        {"href": url(request, path, f="html"), "rel": "alternate", "type": "text/html",
         "title": "Som HTML"},
        {"href": url(request, path, f="pdf"), "rel": "alternate", "type": PDF,
         "title": "Som PDF"},
        {"href": url(request, path, f="json"), "rel": "alternate", "type": JSON,
         "title": "Som JSON"},
    ]


@router.get("/rapporter/kommune/{kommunekode}", summary="Rapport for en kommune",
            response_class=Response,
            responses={200: {"content": {"text/html": {}, PDF: {}, JSON: {}}},
                       400: {"description": "Invalid parameter"},
                       401: {"description": "Reports need sign-in"},
                       404: {"description": "No such municipality"}})
async def kommune_report(request: Request, kommunekode: str) -> Response:
    actor = await _signed_in(request)
    fmt_ = _format(request)
    kode = _kommunekode(kommunekode)
    async with acting(request) as conn:
        report = await figures.run_async(conn, figures.kommune_report_steps(kode))
        if report is None:
            raise not_found(f"Kommunen {kode}")
        map_data = None if fmt_ == "json" else \
            await figures.run_async(conn, figures.kommune_map_steps(kode))
    path = f"/rapporter/kommune/{kode}"
    if fmt_ == "json":
        body = figures.as_json(report)
        body["links"] = _links(request, path)
        return json_response(body)
    type_names = {c.kode: c.tekst for c in report.efter_type}
    png = await run_in_threadpool(kommune_map_png, map_data, report.navn, type_names)
    if fmt_ == "pdf":
        pdf = await run_in_threadpool(kommune_pdf, report, png, _viewer(actor))
        return Response(pdf, media_type=PDF, headers={
            "Content-Disposition": f'inline; filename="ly-rapport-{kode}.pdf"'})
    return html_response(request, "report_kommune.html", report=report, map_src=_data_uri(png),
                         fmt=fmt, key_figures=KEY_FIGURES, inspection_figures=INSPECTION_FIGURES,
                         coverage_note=COVERAGE_NOTE, deficiencies_note=DEFICIENCIES_NOTE,
                         viewer=_viewer(actor), generated=_local(report.genereret),
                         links=_links(request, path), egnethed_colours=_colours("egnethed_kode"),
                         title=kommune_title(report),
                         **_theme_context(report.temaer, with_kommune=False))


@router.get("/rapporter/national", summary="Landsoversigt over alle temaer",
            response_class=Response,
            responses={200: {"content": {"text/html": {}, PDF: {}, JSON: {}}},
                       400: {"description": "Invalid parameter"},
                       401: {"description": "Reports need sign-in"}})
async def national_report(request: Request) -> Response:
    actor = await _signed_in(request)
    fmt_ = _format(request)
    async with acting(request) as conn:
        report = await figures.run_async(conn, figures.national_report_steps())
        boundaries = None if fmt_ == "json" else \
            await figures.run_async(conn, figures.national_map_steps())
    path = "/rapporter/national"
    if fmt_ == "json":
        body = figures.as_json(report)
        body["links"] = _links(request, path)
        return json_response(body)
    png = await run_in_threadpool(national_map_png, boundaries, report.kommuner)
    if fmt_ == "pdf":
        pdf = await run_in_threadpool(national_pdf, report, png, _viewer(actor))
        return Response(pdf, media_type=PDF, headers={
            "Content-Disposition": 'inline; filename="ly-rapport-national.pdf"'})
    return html_response(request, "report_national.html", report=report,
                         map_src=_data_uri(png), fmt=fmt, key_figures=KEY_FIGURES,
                         inspection_figures=INSPECTION_FIGURES, columns=NATIONAL_COLUMNS,
                         coverage_note=COVERAGE_NOTE, deficiencies_note=DEFICIENCIES_NOTE,
                         viewer=_viewer(actor), generated=_local(report.genereret),
                         links=_links(request, path), title=NATIONAL_TITLE,
                         **_theme_context(report.temaer, with_kommune=True))
