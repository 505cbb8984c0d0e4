"""Landing page, conformance, collections, queryables and schema; the glossary and code lists.

Also the HTML pages' display helpers, registered on the templates' environment at import
(`show_value`, `item_rows`, `export_links`, `kommunenavn`): a coded attribute shown as its
text (the text twin, else the code list's text), a municipality code as the municipality's
name, dates and times in Danish local time; all read from the theme descriptor (`codelist`,
`twin`) and the code lists, so every theme gets them.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import lru_cache
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from datamodel import themes
from datamodel.checklist import load_templates
from datamodel.codelists import load_codelists
from datamodel.concepts import load_concepts
from datamodel.fields import BELIGGENHEDSKOMMUNE
from datamodel.themes import Theme
from service import collection, params
from service.conformance import CONFORMANCE
from service.auth import current_actor
from service.errors import not_found
from service.http import (HTML, JSON, OPENAPI_JSON, SCHEMA_JSON, html_response, json_response,
                          link, self_links, templates, url, with_links)

router = APIRouter()

_F = Query(None, description="json or html")

# --- display helpers of the HTML pages ---------------------------------------------------

#: The code list whose values carry `kommunekode` (the municipalities and their names).
_AUTHORITIES = "d_basis_ansvarlig_myndighed"
_LOCAL = ZoneInfo("Europe/Copenhagen")
#: The labels of the export formats (`params.EXPORT_FORMATS`) offered on an items page.
_EXPORT_LABELS = {"geojson": "GeoJSON", "gpkg": "GeoPackage", "csv": "CSV",
                  "xlsx": "Excel (XLSX)", "shp": "Shapefile (zip)"}
#: Query parameters an export refuses (it is never a page) or sets itself.
_NOT_EXPORTED = {"f", "limit", "cursor"}


@lru_cache(maxsize=1)
def _municipality_names() -> dict[int, str]:
    cl = load_codelists().get(_AUTHORITIES)
    if cl is None:
        return {}
    return {int(c.extra["kommunekode"]): c.tekst for c in cl.values
            if c.extra.get("kommunekode") is not None}


def kommunenavn(code) -> str | None:
    """The municipality's name ("Aarhus Kommune") of a municipality code (751), or None."""
    try:
        return _municipality_names().get(int(code))
    except (TypeError, ValueError):
        return None


def _local_time(value: str) -> str:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(_LOCAL)
    return f"{moment.day}.{moment.month}.{moment.year} kl. {moment:%H:%M:%S}"


def _local_date(value: str) -> str:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return value
    return f"{day.day}.{day.month}.{day.year}"


def show_value(theme: Theme, name: str, props: dict) -> tuple[str, str | None]:
    """(text, code) of attribute `name` of an object's properties for people: a coded
    attribute's text (its twin, else the code list's text) with the code beside it, a
    municipality code's name with the code, a yes/no, a Danish date; else the value."""
    value = props.get(name)
    f = theme.fields_by_name.get(name)
    if value is None:
        if f is not None and f.twin and props.get(f.twin) is not None:
            return str(props[f.twin]), None
        return "", None
    if f is None:
        return str(value), None
    if f.codelist:
        text = props.get(f.twin) if f.twin else None
        if text is None:
            cl = load_codelists().get(f.codelist)
            text = cl.text(value) if cl is not None and isinstance(value, int) else None
        return (str(text), str(value)) if text is not None else (str(value), None)
    if f.name == BELIGGENHEDSKOMMUNE.name:
        navn = kommunenavn(value)
        return (navn, str(value)) if navn else (str(value), None)
    if f.type == "boolean":
        return ("Ja" if value else "Nej"), None
    if f.type == "date-time" and isinstance(value, str):
        return _local_time(value), None
    if f.type == "date" and isinstance(value, str):
        return _local_date(value), None
    return str(value), None


def item_rows(theme: Theme, props: dict) -> list[dict]:
    """The rows of an object's page: one per attribute, in the properties' order; a coded
    attribute and its text twin are one row (the text, the code beside it)."""
    twins = {f.twin: f.name for f in theme.coded_fields if f.twin}
    rows = []
    for name in props:
        if name in twins and twins[name] in props:
            continue  # shown in its code's row
        f = theme.fields_by_name.get(name)
        if f is None and name in twins:  # a twin without its code
            f = theme.fields_by_name[twins[name]]
        text, code = show_value(theme, name, props)
        rows.append({"name": name, "title": f.title if f is not None else name,
                     "text": text, "code": code})
    return rows


def export_links(request: Request, theme: Theme) -> list[dict]:
    """Download links of an items page: the whole filtered result (this page's filters, not
    its paging) in each export format."""
    kept = [(k, v) for k, v in request.query_params.multi_items()
            if k not in _NOT_EXPORTED and v.strip() != ""]
    base = url(request, collection.path(theme, "items"))
    return [{"f": f, "title": _EXPORT_LABELS.get(f, f.upper()),
             "href": f"{base}?{urlencode([*kept, ('f', f)])}"} for f in params.EXPORT_FORMATS]


templates.env.globals.update(show_value=show_value, item_rows=item_rows,
                             export_links=export_links)
templates.env.filters["kommunenavn"] = kommunenavn


# --- code lists for people ------------------------------------------------------------

#: A note for developers in a code's definition: a file or a source path is named.
_DEVELOPER_NOTE = re.compile(r"reference/|\.(md|sql|json|py)\b|_data/|\bsrc/")


def codelist_title(description: str) -> str:
    """A code list's title for people: its description's Danish lead, without the notes on
    GeoFA's field names and the English gloss ("Synlighed (GeoFA off_kode) / visibility of
    the record" is "Synlighed")."""
    for sep in (" (", " / ", ". "):
        if sep in description:
            return description.split(sep, 1)[0].strip()
    return description.strip().rstrip(".")


def for_people(text: str | None) -> str | None:
    """A code's definition, unless it is a note for developers (it names source files)."""
    if not text or _DEVELOPER_NOTE.search(text):
        return None
    return text


@lru_cache(maxsize=1)
def codelist_uses() -> dict[str, list[dict]]:
    """Where each code list is used: the themes' attributes and the inspection checklists'
    questions (`{"where": …, "what": …, "collection_id": the theme's, or None}`)."""
    uses: dict[str, list[dict]] = {}
    for theme in themes.all_themes():
        for f in theme.coded_fields:
            uses.setdefault(f.codelist, []).append(
                {"where": theme.title, "what": f.title, "collection_id": theme.collection_id})
    newest: dict[str, object] = {}
    for (kode, version), template in sorted(load_templates().items()):
        newest[kode] = template  # the newest version of each checklist
    for template in newest.values():
        counted: dict[str, int] = {}
        for item in (*template.items, *template.room_items):
            if item.codelist:
                counted[item.codelist] = counted.get(item.codelist, 0) + 1
        for name, n in counted.items():
            uses.setdefault(name, []).append(
                {"where": f"Tjekliste: {template.title}",
                 "what": f"{n} spørgsmål" if n > 1 else "1 spørgsmål",
                 "collection_id": None})
    return uses


@router.get("/", summary="Forside", tags=["Om tjenesten"], response_class=Response,
            responses={200: {"content": {JSON: {}, HTML: {}}, "description": "Landing page"},
                       400: {"description": "Invalid parameter"}})
async def landing(request: Request, f: str | None = _F) -> Response:
    params.check_known(request, {"f"})
    settings = request.app.state.settings
    links = [
        *self_links(request, "/"),
        link(url(request, "/openapi.json"), "service-desc", OPENAPI_JSON, "API-definition"),
        link(url(request, "/docs"), "service-doc", HTML, "API-dokumentation"),
        link(url(request, "/redoc"), "service-doc", HTML, "API-reference (ReDoc)"),
        link(url(request, "/conformance"), "conformance", JSON, "Overensstemmelse"),
        link(url(request, "/collections"), "data", JSON, "Samlinger"),
        link(url(request, "/tileMatrixSets"),
             "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes", JSON, "Tile matrix sets"),
        link(url(request, "/begreber"), "glossary", JSON, "Begrebsliste"),
        link(url(request, "/kodelister"), "describedby", JSON, "Kodelister"),
    ]
    body = {"title": settings.title, "description": settings.description, "links": links}
    if params.output_format(request) == params.FORMAT_HTML:
        return html_response(request, "landing.html", data=body, themes=themes.all_themes(),
                             developer=_developer_links(links))
    return json_response(body)


#: Relations of the landing page whose targets have an HTML form (`?f=html`); the others
#: (the OpenAPI document, the tile matrix sets) are linked as what they are.
_HTML_FORM_RELS = {"conformance", "data", "glossary", "describedby"}
_TYPE_LABELS = {JSON: "JSON", OPENAPI_JSON: "OpenAPI 3.0, JSON", HTML: "HTML"}


def _developer_links(links: list[dict]) -> list[dict]:
    """The landing page's links for developers, each to a form a browser can show."""
    out = []
    for lk in links:
        if lk["rel"] in ("self", "alternate"):
            continue
        html = lk["rel"] in _HTML_FORM_RELS
        out.append({"title": lk["title"], "rel": lk["rel"],
                    "href": lk["href"] + ("&" if "?" in lk["href"] else "?") + "f=html"
                    if html else lk["href"],
                    "format": "HTML" if html else _TYPE_LABELS.get(lk["type"], lk["type"])})
    return out


@router.get("/conformance", summary="Overensstemmelsesklasser (conformance)", tags=["Om tjenesten"],
            response_class=Response,
            responses={200: {"content": {JSON: {}, HTML: {}}, "description": "conformsTo"},
                       400: {"description": "Invalid parameter"}})
async def conformance(request: Request, f: str | None = _F) -> Response:
    params.check_known(request, {"f"})
    body = {"conformsTo": CONFORMANCE, "links": self_links(request, "/conformance")}
    if params.output_format(request) == params.FORMAT_HTML:
        return html_response(request, "conformance.html", data=body)
    return json_response(body)


@router.get("/collections", summary="Samlinger", tags=["Om tjenesten"],
            response_class=Response,
            responses={200: {"content": {JSON: {}, HTML: {}}, "description": "Collections"},
                       400: {"description": "Invalid parameter"}})
async def collections(request: Request, f: str | None = _F) -> Response:
    params.check_known(request, {"f"})
    actor = await current_actor(request)
    body = {"links": self_links(request, "/collections"),
            "collections": [await collection.description(request, actor, theme)
                            for theme in themes.all_themes()]}
    if params.output_format(request) == params.FORMAT_HTML:
        return html_response(request, "collections.html", data=body)
    return json_response(body)


@router.get("/collections/{collection_id}", summary="En samling", tags=["Om tjenesten"],
            response_class=Response,
            responses={200: {"content": {JSON: {}, HTML: {}}, "description": "The collection"},
                       400: {"description": "Invalid parameter"},
                       404: {"description": "No such collection"}})
async def collection_page(request: Request, collection_id: str, f: str | None = _F) -> Response:
    theme = params.theme_of(collection_id)
    params.check_known(request, {"f"})
    body = await collection.description(request, await current_actor(request), theme)
    if params.output_format(request) == params.FORMAT_HTML:
        return html_response(request, "collection.html", data=body)
    return json_response(body)


@router.get("/collections/{collection_id}/queryables", summary="Søgbare egenskaber (queryables)",
            tags=["Om tjenesten"], response_class=Response,
            responses={200: {"content": {SCHEMA_JSON: {}, HTML: {}}, "description": "Queryables"},
                       404: {"description": "No such collection"}})
async def queryables(request: Request, collection_id: str, f: str | None = _F) -> Response:
    theme = params.theme_of(collection_id)
    params.check_known(request, {"f"})
    public = (await current_actor(request)).public
    body = collection.queryables_document(request, theme, public)
    # A JSON Schema has no links of its own: its self and alternate links go in the header.
    headers = with_links(None, self_links(request, collection.path(theme, "queryables"),
                                          SCHEMA_JSON))
    if params.output_format(request) == params.FORMAT_HTML:
        return html_response(request, "schema.html", headers=headers, data=body,
                             kind="Queryables")
    return json_response(body, media_type=SCHEMA_JSON, headers=headers)


@router.get("/collections/{collection_id}/schema", summary="Skema (returnables, receivables)",
            tags=["Om tjenesten"], response_class=Response,
            responses={200: {"content": {SCHEMA_JSON: {}, HTML: {}}, "description": "Schema"},
                       404: {"description": "No such collection"}})
async def schema(request: Request, collection_id: str, f: str | None = _F) -> Response:
    theme = params.theme_of(collection_id)
    params.check_known(request, {"f"})
    public = (await current_actor(request)).public
    body = collection.schema_document(request, theme, public)
    # A JSON Schema has no links of its own: its self and alternate links go in the header.
    headers = with_links(None, self_links(request, collection.path(theme, "schema"),
                                          SCHEMA_JSON))
    if params.output_format(request) == params.FORMAT_HTML:
        return html_response(request, "schema.html", headers=headers, data=body, kind="Skema")
    return json_response(body, media_type=SCHEMA_JSON, headers=headers)


@router.get("/begreber", summary="Begrebsliste", tags=["Begreber"],
            response_class=Response,
            responses={200: {"content": {JSON: {}, HTML: {}}, "description": "Glossary"}})
async def glossary(request: Request, f: str | None = _F) -> Response:
    params.check_known(request, {"f"})
    concepts = [{"term": c.term, "gloss": c.gloss, "definition": c.definition,
                 "source": c.source} for c in load_concepts()]
    body = {"concepts": concepts, "links": self_links(request, "/begreber")}
    if params.output_format(request) == params.FORMAT_HTML:
        return html_response(request, "glossary.html", data=body)
    return json_response(body)


def _codelist_body(name: str) -> dict:
    cl = load_codelists()[name]
    return {"name": cl.name, "description": cl.description, "source": cl.source,
            "values": [{"kode": c.kode, "tekst": c.tekst, "aktiv": int(c.aktiv),
                        "begrebsdefinition": c.begrebsdefinition} for c in cl.values]}


def _codelist_page(name: str) -> dict:
    """A code list as its HTML page shows it to a municipal user: the title, the codes, texts
    and definitions (no notes for developers), active or not, and where the list is used."""
    cl = load_codelists()[name]
    values = [{"kode": c.kode, "tekst": c.tekst, "aktiv": c.aktiv,
               "definition": for_people(c.begrebsdefinition)} for c in cl.values]
    return {"name": cl.name, "title": codelist_title(cl.description),
            "own": cl.source.strip() == "Ly", "values": values,
            "with_definitions": any(v["definition"] for v in values),
            "uses": codelist_uses().get(cl.name, [])}


@router.get("/kodelister", summary="Kodelister", tags=["Begreber"], response_class=Response,
            responses={200: {"content": {JSON: {}, HTML: {}}, "description": "Code lists"}})
async def codelists(request: Request, f: str | None = _F) -> Response:
    params.check_known(request, {"f"})
    lists = [_codelist_body(n) for n in sorted(load_codelists())]
    body = {"codelists": lists, "links": self_links(request, "/kodelister")}
    if params.output_format(request) == params.FORMAT_HTML:
        return html_response(request, "codelists.html", data=body,
                             lists=[_codelist_page(n) for n in sorted(load_codelists())])
    return json_response(body)


@router.get("/kodelister/{name}", summary="Én kodeliste", tags=["Begreber"],
            response_class=Response,
            responses={200: {"content": {JSON: {}, HTML: {}}, "description": "A code list"},
                       404: {"description": "No such code list"}})
async def codelist(request: Request, name: str, f: str | None = _F) -> Response:
    params.check_known(request, {"f"})
    if name not in load_codelists():
        raise not_found(f"Kodelisten {name!r}")
    body = {**_codelist_body(name), "links": self_links(request, f"/kodelister/{name}")}
    if params.output_format(request) == params.FORMAT_HTML:
        return html_response(request, "codelist.html", data=body, cl=_codelist_page(name))
    return json_response(body)


@router.get("/healthz", summary="Driftstjek (tjenesten og databasen)", tags=["Drift"],
            responses={200: {"description": "Up"}, 503: {"description": "Database unreachable"}})
async def healthz(request: Request) -> dict:
    async with request.app.state.pool.connection() as conn:
        await conn.execute("SELECT 1")
    return {"status": "ok"}
