"""Reports: one municipality (`/rapporter/kommune/{kommunekode}`) and the national overview
(`/rapporter/national`), as HTML (default), PDF (`?f=pdf`) and JSON (`?f=json`).

Each report has a section per registered theme, made from its descriptor (`Theme.title`,
`figures`, `validity`, `label`): the objects the viewer sees, each figure summed, and for a
theme with a validity period those valid today and the list of objects valid now or later.

A theme's own figures (`loaders.reports.ReportExtra`, its workflow's) follow its section. How
they are shown is the theme's too: a `ReportPart` per report (municipality, national),
registered by temakode (`register_part`) from the theme's module `service.reports_<collection
id>`, which is imported when a report first asks for the theme's parts. A part may read more in
the report's transaction (`load`, e.g. map geometries), draw in a worker thread (`draw`, e.g.
a static map), give the context of its template (`html`, included after the theme's section
as `part`) and its PDF flowables (`pdf`: after the theme's section, and at the report's end).
Nothing here names a theme.

Reports are for authorities: they may show attributes the public may not read, so a request
without credentials gets 401. Every figure is computed in SQL (`loaders/reports.py` and the
themes' own modules) in a transaction that acts for the requesting actor, so a municipal
editor's report counts what that editor may see. Static maps are drawn with matplotlib and
geopandas from the PostGIS geometries (no basemap); the PDF is laid out with reportlab, so no
browser or system service is needed to make it.
"""

from __future__ import annotations

import base64
import html
import importlib
import importlib.util
import io
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from datamodel import themes
from datamodel.themes import Theme
from loaders import reports as figures
from service import params
from service.auth import current_actor, unauthorized
from service.db import acting
from service.errors import bad_request, not_found
from service.http import JSON, html_response, json_response, url
from service.maps import _num

router = APIRouter(tags=["Rapporter"])

PDF = "application/pdf"
REPORT_PARAMS = {"f"}
FORMATS = ("html", "pdf", "json")
LOCAL_TZ = ZoneInfo("Europe/Copenhagen")
KOMMUNE, NATIONAL = "kommune", "national"


def fmt(v, decimals: int = 0) -> str:
    return _num(v, decimals)


# --- a theme's own part ------------------------------------------------------------------------

class ReportPart:
    """How a theme's own figures (`loaders.reports.ReportExtra`) are shown in one report.

    `report` is the whole report (`figures.KommuneReport` or `figures.NationalReport`), `own`
    the theme's own figures in it (`report.extras[theme.collection_id]`). The defaults show
    nothing.
    """

    #: The template included after the theme's section in HTML, with `part` (`html`'s dict).
    template: str | None = None

    async def load(self, conn, theme: Theme, report, own) -> Any:
        """Further reads for HTML and PDF (not JSON), in the report's transaction."""
        return None

    def draw(self, theme: Theme, report, own, loaded) -> Any:
        """Blocking work for HTML and PDF (static maps), run in a worker thread."""
        return loaded

    def html(self, theme: Theme, report, own, drawn) -> dict:
        """The included template's `part`."""
        return {}

    def pdf(self, theme: Theme, report, own, drawn, p, styles) -> tuple[list, list]:
        """(flowables after the theme's section, flowables at the end of the report); `p(text,
        style="BodyText")` makes a paragraph."""
        return [], []


_PARTS: dict[tuple[int, str], ReportPart] = {}
_SEARCHED: set[str] = set()


def register_part(temakode: int, *, kommune: ReportPart | None = None,
                  national: ReportPart | None = None) -> None:
    """Show a theme's own figures in the municipal and/or national report."""
    for scope, part in ((KOMMUNE, kommune), (NATIONAL, national)):
        if part is not None:
            _PARTS[(temakode, scope)] = part


def unregister_part(temakode: int) -> None:
    for scope in (KOMMUNE, NATIONAL):
        _PARTS.pop((temakode, scope), None)


def part_for(theme: Theme, scope: str) -> ReportPart | None:
    """The theme's part of a report (`KOMMUNE`, `NATIONAL`), importing the theme's module
    `service.reports_<collection id>` first if there is one."""
    name = f"{__package__}.reports_{theme.collection_id}"
    if name not in _SEARCHED:
        _SEARCHED.add(name)
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
    return _PARTS.get((theme.temakode, scope))


def _parts(report, scope: str) -> list[tuple[Theme, ReportPart, Any]]:
    """(theme, part, its own figures) of the report's themes that have both, in order."""
    out = []
    for t in report.temaer:
        if t.collection_id in report.extras:
            theme = themes.get(t.collection_id)
            part = part_for(theme, scope)
            if part is not None:
                out.append((theme, part, report.extras[t.collection_id]))
    return out


async def _load_parts(conn, report, scope: str) -> dict[str, Any]:
    return {theme.collection_id: await part.load(conn, theme, report, own)
            for theme, part, own in _parts(report, scope)}


def _draw_parts(report, scope: str, loaded: dict[str, Any]) -> dict[str, Any]:
    return {theme.collection_id: part.draw(theme, report, own, loaded[theme.collection_id])
            for theme, part, own in _parts(report, scope)}


def _html_parts(report, scope: str, drawn: dict[str, Any]) -> dict[str, dict]:
    """collection id -> the context of the theme's included template (`part`)."""
    return {theme.collection_id: {"template": part.template,
                                  **part.html(theme, report, own, drawn[theme.collection_id])}
            for theme, part, own in _parts(report, scope) if part.template}


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

def plotting():
    import matplotlib

    matplotlib.use("Agg")  # the server draws into buffers, never onto a screen
    import geopandas
    import shapely
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    return geopandas, shapely, Figure, Patch


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", pad_inches=0.1)
    return buf.getvalue()


def scale_bar(ax, xmin: float, xmax: float, ymin: float, ymax: float) -> None:
    span = (xmax - xmin) / 5
    length = next(v for v in (100_000, 50_000, 20_000, 10_000, 5_000, 2_000, 1_000, 500)
                  if v <= span) if span >= 500 else 500
    x0, y0 = xmin + (xmax - xmin) * 0.04, ymin + (ymax - ymin) * 0.04
    ax.plot([x0, x0 + length], [y0, y0], color="#222222", linewidth=3, solid_capstyle="butt")
    label = f"{length // 1000} km" if length >= 1000 else f"{length} m"
    ax.text(x0 + length / 2, y0 + (ymax - ymin) * 0.015, label, ha="center", fontsize=8)


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


def pdf_table(rows: list[list], widths=None, right: tuple[int, ...] = (),
              font_size: float = 8.5, header: bool = True):
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


def pdf_section(heading, table):
    """A heading kept on the same page as its (short) table."""
    from reportlab.platypus import KeepTogether

    return KeepTogether([heading, table])


def _theme_story(p, styles, t: figures.ThemeSection, *, with_kommune: bool) -> list:
    """A theme's section: its title and figures, and the objects valid now or later."""
    from reportlab.lib.units import cm
    from reportlab.platypus import Paragraph

    s = [pdf_section(p(t.titel, "Heading2"),
                     pdf_table([[label, value] for _, label, value in theme_figure_rows(t)],
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
    s.append(pdf_table([header, *body], widths=[first] + [rest] * (len(header) - 1),
                       right=numeric, font_size=7.5))
    note = listing_note(t)
    if note:
        s.append(p(note))
    return s


def _overview_table(temaer: list[figures.ThemeSection]):
    from reportlab.lib.units import cm

    return pdf_table(theme_overview(temaer), widths=[5.2 * cm, 1.8 * cm, 2.4 * cm, 8.0 * cm],
                     right=(1, 2))


def kommune_title(report: figures.KommuneReport) -> str:
    return f"Kommunerapport: {report.navn} ({report.kommunekode})"


NATIONAL_TITLE = "Landsoversigt"


def _story(report, scope: str, title: str, viewer: str, drawn: dict[str, Any]):
    """`_pdf`'s story of a report: title, the themes' overview, each theme's section followed
    by its own part, and the parts' appendices."""
    from reportlab.platypus import Paragraph

    parts = {theme.collection_id: (theme, part, own) for theme, part, own in _parts(report, scope)}

    def story(styles):
        p = lambda text, style="BodyText": Paragraph(html.escape(text), styles[style])  # noqa
        s = [p(title, "Title"),
             p(f"Rapport genereret {_local(report.genereret)} for {viewer}. Folketal: "
               f"{report.befolkning_kilde} {report.befolkning_periode}."),
             p("Temaer", "Heading2"), _overview_table(report.temaer)]
        appendix = []
        for t in report.temaer:
            s += _theme_story(p, styles, t, with_kommune=scope == NATIONAL)
            if t.collection_id in parts:
                theme, part, own = parts[t.collection_id]
                after, end = part.pdf(theme, report, own, drawn[t.collection_id], p, styles)
                s += after
                if scope == KOMMUNE:
                    s += planning_story(theme, getattr(own, "planlaegning", None), p)
                appendix += end
        return s + appendix

    return story


def planning_story(theme: Theme, plan, p) -> list:
    """A municipality's planned coverage (a theme's own figures' `planlaegning`,
    `loaders.planning.PlanCoverage`) in its PDF: the newest plan run's figures, the postal
    districts with the largest deficit and the newest scenario compared with it."""
    if plan is None:
        return []
    from reportlab.lib.units import cm

    figure = theme.figures[0].title if theme.figures else "Kapacitet"
    share = "–" if plan.andel_daekket is None else fmt(100 * plan.andel_daekket, 1)
    rows = [["Indbyggere", fmt(plan.indbyggere)],
            ["Med nok inden for rækkevidde (uden konkurrence)",
             fmt(plan.inden_for_raekkevidde)],
            ["Dækket (tildelt en plads)", fmt(plan.daekket)],
            ["Underskud (uden plads)", fmt(plan.underskud)], ["Andel dækket (%)", share],
            [f"{figure} i planen ({fmt(plan.objekter)} {theme.title.lower()})",
             fmt(plan.kapacitet)], ["Heraf ikke brugt", fmt(plan.ledige)]]
    source = (f"Syntetisk befolkning ({plan.kilde}): folketallet fordelt på 100 m-celler, "
              "ikke Danmarks Statistiks kvadratnet." if plan.syntetisk
              else f"Befolkning: {plan.kilde}.")
    s = [p("Planlagt dækning (tildeling inden for gangafstand)", "Heading2"),
         p(f"Kørsel {plan.koersel_id}, {plan.oprettet[:16].replace('T', ' ')}: højst "
           f"{fmt(plan.minutter)} minutters gang; flest muligt placeret, med kortest samlet "
           f"gangafstand. {source}"),
         pdf_table(rows, widths=[12 * cm, 4 * cm], right=(1,), header=False)]
    if plan.stoerste_underskud:
        s.append(pdf_section(p("Områder med størst underskud", "Heading3"), pdf_table(
            [["Postnummer", "By", "Indbyggere", "Dækket", "Underskud"]]
            + [[str(a.omraade or "–"), a.navn or "–", fmt(a.indbyggere), fmt(a.daekket),
                fmt(a.ikke_daekket)] for a in plan.stoerste_underskud], right=(2, 3, 4))))
    if plan.scenarie:
        sc = plan.scenarie
        s.append(p(f"Scenariet {sc['navn']} (kørsel {sc['koersel_id']}) dækker "
                   f"{fmt(sc['daekket'])} indbyggere: {fmt(sc['forskel'])} i forhold til "
                   "planen."))
        if plan.scenarie_omraader:
            s.append(pdf_table([["Postnummer", "By", "Planen", "Scenariet", "Forskel"]] + [
                [str(c.omraade or "–"), c.navn or "–", fmt(c.daekket_basis),
                 fmt(c.daekket_scenarie), fmt(c.forskel)] for c in plan.scenarie_omraader],
                right=(2, 3, 4)))
    return s


def kommune_pdf(report: figures.KommuneReport, viewer: str, drawn: dict[str, Any]) -> bytes:
    title = kommune_title(report)
    return _pdf(title, _story(report, KOMMUNE, title, viewer, drawn))


def national_pdf(report: figures.NationalReport, viewer: str, drawn: dict[str, Any]) -> bytes:
    return _pdf(NATIONAL_TITLE, _story(report, NATIONAL, NATIONAL_TITLE, viewer, drawn))


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
        "overview": theme_overview(temaer),
        "theme_rows": {t.collection_id: theme_figure_rows(t) for t in temaer},
        "listings": {t.collection_id: theme_listing(t, with_kommune=with_kommune)
                     for t in temaer if t.gyldighed},
        "listing_notes": {t.collection_id: listing_note(t) for t in temaer},
        "none_listed": NONE_LISTED,
    }


def data_uri(png: bytes) -> str:
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
        loaded = None if fmt_ == "json" else await _load_parts(conn, report, KOMMUNE)
    path = f"/rapporter/kommune/{kode}"
    if fmt_ == "json":
        body = figures.as_json(report)
        body["links"] = _links(request, path)
        return json_response(body)
    drawn = await run_in_threadpool(_draw_parts, report, KOMMUNE, loaded)
    if fmt_ == "pdf":
        pdf = await run_in_threadpool(kommune_pdf, report, _viewer(actor), drawn)
        return Response(pdf, media_type=PDF, headers={
            "Content-Disposition": f'inline; filename="ly-rapport-{kode}.pdf"'})
    return html_response(request, "report_kommune.html", report=report, fmt=fmt,
                         viewer=_viewer(actor), generated=_local(report.genereret),
                         links=_links(request, path), title=kommune_title(report),
                         parts=_html_parts(report, KOMMUNE, drawn),
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
        loaded = None if fmt_ == "json" else await _load_parts(conn, report, NATIONAL)
    path = "/rapporter/national"
    if fmt_ == "json":
        body = figures.as_json(report)
        body["links"] = _links(request, path)
        return json_response(body)
    drawn = await run_in_threadpool(_draw_parts, report, NATIONAL, loaded)
    if fmt_ == "pdf":
        pdf = await run_in_threadpool(national_pdf, report, _viewer(actor), drawn)
        return Response(pdf, media_type=PDF, headers={
            "Content-Disposition": 'inline; filename="ly-rapport-national.pdf"'})
    return html_response(request, "report_national.html", report=report, fmt=fmt,
                         viewer=_viewer(actor), generated=_local(report.genereret),
                         links=_links(request, path), title=NATIONAL_TITLE,
                         parts=_html_parts(report, NATIONAL, drawn),
                         **_theme_context(report.temaer, with_kommune=True))
