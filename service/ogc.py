"""Landing page, conformance, collections, queryables and schema; the glossary and code lists."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from datamodel import themes
from datamodel.codelists import load_codelists
from datamodel.concepts import load_concepts
from service import collection, params
from service.conformance import CONFORMANCE
from service.auth import current_actor
from service.errors import not_found
from service.http import (HTML, JSON, OPENAPI_JSON, SCHEMA_JSON, html_response, json_response,
                          link, self_links, url)

router = APIRouter()

_F = Query(None, description="json or html")


@router.get("/", summary="Landing page", tags=["Capabilities"], response_class=Response,
            responses={200: {"content": {JSON: {}, HTML: {}}, "description": "Landing page"},
                       400: {"description": "Invalid parameter"}})
async def landing(request: Request, f: str | None = _F) -> Response:
    params.check_known(request, {"f"})
    settings = request.app.state.settings
    links = [
        *self_links(request, "/"),
        link(url(request, "/openapi.json"), "service-desc", OPENAPI_JSON, "API-definition"),
        link(url(request, "/docs"), "service-doc", HTML, "API-dokumentation"),
        link(url(request, "/conformance"), "conformance", JSON, "Overensstemmelse"),
        link(url(request, "/collections"), "data", JSON, "Samlinger"),
        link(url(request, "/tileMatrixSets"),
             "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes", JSON, "Tile matrix sets"),
        link(url(request, "/begreber"), "glossary", JSON, "Begrebsliste"),
        link(url(request, "/kodelister"), "describedby", JSON, "Kodelister"),
    ]
    body = {"title": settings.title, "description": settings.description, "links": links}
    if params.output_format(request) == params.FORMAT_HTML:
        return html_response(request, "landing.html", data=body, themes=themes.all_themes())
    return json_response(body)


@router.get("/conformance", summary="Conformance classes", tags=["Capabilities"],
            response_class=Response,
            responses={200: {"content": {JSON: {}, HTML: {}}, "description": "conformsTo"},
                       400: {"description": "Invalid parameter"}})
async def conformance(request: Request, f: str | None = _F) -> Response:
    params.check_known(request, {"f"})
    body = {"conformsTo": CONFORMANCE, "links": self_links(request, "/conformance")}
    if params.output_format(request) == params.FORMAT_HTML:
        return html_response(request, "conformance.html", data=body)
    return json_response(body)


@router.get("/collections", summary="Collections", tags=["Capabilities"],
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


@router.get("/collections/{collection_id}", summary="A collection", tags=["Capabilities"],
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


@router.get("/collections/{collection_id}/queryables", summary="Queryables",
            tags=["Capabilities"], response_class=Response,
            responses={200: {"content": {SCHEMA_JSON: {}, HTML: {}}, "description": "Queryables"},
                       404: {"description": "No such collection"}})
async def queryables(request: Request, collection_id: str, f: str | None = _F) -> Response:
    theme = params.theme_of(collection_id)
    params.check_known(request, {"f"})
    public = (await current_actor(request)).public
    body = collection.queryables_document(request, theme, public)
    if params.output_format(request) == params.FORMAT_HTML:
        return html_response(request, "schema.html", data=body, kind="Queryables")
    return json_response(body, media_type=SCHEMA_JSON)


@router.get("/collections/{collection_id}/schema", summary="Schema (returnables, receivables)",
            tags=["Capabilities"], response_class=Response,
            responses={200: {"content": {SCHEMA_JSON: {}, HTML: {}}, "description": "Schema"},
                       404: {"description": "No such collection"}})
async def schema(request: Request, collection_id: str, f: str | None = _F) -> Response:
    theme = params.theme_of(collection_id)
    params.check_known(request, {"f"})
    public = (await current_actor(request)).public
    body = collection.schema_document(request, theme, public)
    if params.output_format(request) == params.FORMAT_HTML:
        return html_response(request, "schema.html", data=body, kind="Skema")
    return json_response(body, media_type=SCHEMA_JSON)


@router.get("/begreber", summary="Concept glossary (begrebsliste)", tags=["Begreber"],
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


@router.get("/kodelister", summary="Code lists", tags=["Begreber"], response_class=Response,
            responses={200: {"content": {JSON: {}, HTML: {}}, "description": "Code lists"}})
async def codelists(request: Request, f: str | None = _F) -> Response:
    params.check_known(request, {"f"})
    lists = [_codelist_body(n) for n in sorted(load_codelists())]
    body = {"codelists": lists, "links": self_links(request, "/kodelister")}
    if params.output_format(request) == params.FORMAT_HTML:
        return html_response(request, "codelists.html", data=body)
    return json_response(body)


@router.get("/kodelister/{name}", summary="One code list", tags=["Begreber"],
            response_class=Response,
            responses={200: {"content": {JSON: {}, HTML: {}}, "description": "A code list"},
                       404: {"description": "No such code list"}})
async def codelist(request: Request, name: str, f: str | None = _F) -> Response:
    params.check_known(request, {"f"})
    if name not in load_codelists():
        raise not_found(f"Kodelisten {name!r}")
    body = {**_codelist_body(name), "links": self_links(request, f"/kodelister/{name}")}
    if params.output_format(request) == params.FORMAT_HTML:
        return html_response(request, "codelists.html", data={"codelists": [body]})
    return json_response(body)


@router.get("/healthz", summary="Liveness and database check", tags=["Drift"],
            responses={200: {"description": "Up"}, 503: {"description": "Database unreachable"}})
async def healthz(request: Request) -> dict:
    async with request.app.state.pool.connection() as conn:
        await conn.execute("SELECT 1")
    return {"status": "ok"}
