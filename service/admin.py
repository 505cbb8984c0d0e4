"""Who am I, the national activation switch, inspector assignments and the audit trail."""

from __future__ import annotations

from datetime import datetime

import psycopg
from fastapi import APIRouter, Query, Request
from psycopg import sql
from starlette.responses import Response

from datamodel import themes
from datamodel.access import ADMIN_ROLES, NATIONAL_ADMIN, ROLES
from service import params
from service.auth import current_actor, forbidden, unauthorized
from service.db import acting, equality_filters
from service.errors import Problem, bad_request
from service.http import JSON, html_response, json_response, self_links
from service.transactions import read_json

router = APIRouter(tags=["Adgang"])


@router.get("/mig", summary="Hvem er logget ind", response_class=Response,
            responses={200: {"content": {JSON: {}}, "description": "The actor"},
                       401: {"description": "Credentials that do not verify"}})
async def me(request: Request) -> Response:
    params.check_known(request, {"f"})
    actor = await current_actor(request)
    body = {**actor.describe(), "roller_forklaret": {r: ROLES[r] for r in sorted(actor.roles)}}
    return json_response(body)


async def _activation(conn) -> dict:
    cur = await conn.execute(
        "SELECT aktiv, begrundelse, tid, subjekt FROM ly.aktivering ORDER BY id DESC LIMIT 1")
    aktiv, begrundelse, tid, subjekt = await cur.fetchone()
    return {"aktiv": aktiv, "begrundelse": begrundelse, "tid": tid.isoformat(),
            "af": subjekt}


@router.get("/aktivering", summary="Den nationale aktivering", response_class=Response,
            responses={200: {"description": "Whether public shelter locations are public"}})
async def activation(request: Request) -> Response:
    params.check_known(request, {"f"})
    async with acting(request) as conn:
        body = await _activation(conn)
    return json_response(body)


@router.put("/aktivering", summary="Slå den nationale aktivering til eller fra (national administrator)",
            response_class=Response,
            responses={200: {"description": "The switch as now set"},
                       401: {"description": "Not signed in"}, 403: {"description": "Not allowed"},
                       422: {"description": "Invalid body"}})
async def set_activation(request: Request) -> Response:
    params.check_known(request, set())
    actor = await current_actor(request)
    if not actor.authenticated:
        raise unauthorized("activation needs a signed-in national administrator")
    if not actor.has(NATIONAL_ADMIN) or not actor.may_write_level:
        raise forbidden("only a national administrator (NSIS substantial or high) may switch "
                        "activation")
    body = await read_json(request, ("application/json",))
    if not isinstance(body, dict) or not isinstance(body.get("aktiv"), bool):
        raise Problem(422, "aktiv: must be true or false", kind="invalid-body",
                      errors=[{"field": "aktiv", "detail": "must be true or false"}])
    reason = body.get("begrundelse")
    if not isinstance(reason, str) or not 3 <= len(reason.strip()) <= 500:
        raise Problem(422, "begrundelse: a reason of 3-500 characters is required",
                      kind="invalid-body",
                      errors=[{"field": "begrundelse", "detail": "3-500 characters"}])
    async with acting(request) as conn:
        try:
            cur = await conn.execute("INSERT INTO ly.aktivering (aktiv, begrundelse) "
                                     "VALUES (%s, %s)", [body["aktiv"], reason.strip()])
        except psycopg.errors.InsufficientPrivilege:
            cur = None
        if cur is None or cur.rowcount != 1:  # row-level security refused the switch
            raise forbidden("the register does not let you switch activation", field="aktiv")
        out = await _activation(conn)
    request.app.state.extent_cache.clear()
    return json_response(out)


def _require_admin(actor) -> None:
    if not actor.authenticated:
        raise unauthorized("this needs a signed-in administrator")
    if not actor.has(*ADMIN_ROLES):
        raise forbidden("only administrators may do this")


@router.get("/revision", summary="Revisionssporet (administratorer)", response_class=Response,
            responses={200: {"description": "Audit entries, newest first"},
                       401: {"description": "Not signed in"}, 403: {"description": "Not allowed"}})
async def audit_trail(
    request: Request,
    objekt_id: str | None = Query(None, description="Only entries about this object"),
    subjekt: str | None = Query(None, description="Only entries by this subject"),
    siden: str | None = Query(None, description="Only entries at or after this instant"),
    limit: int | None = Query(None, ge=1, le=10000),
    f: str | None = Query(None),
) -> Response:
    params.check_known(request, {"objekt_id", "subjekt", "siden", "limit", "f"})
    actor = await current_actor(request)
    _require_admin(actor)
    where, args = equality_filters(objekt_id=params.parse_uuid(objekt_id, "objekt_id"),
                                   subjekt=subjekt)
    if siden is not None:
        where += " AND tid >= %s"
        args.append(params.parse_instant(siden, "siden"))
    n = params.parse_limit(request.query_params.get("limit"), 100, 10000)
    async with acting(request) as conn:
        cur = await conn.execute(
            "SELECT id, tid, subjekt, cvr_kode, roller, klient, handling, tabel, objekt_id, "
            f"foer_versions_id, efter_versions_id, detaljer FROM ly.revision WHERE {where} "
            "ORDER BY id DESC LIMIT %s", args + [n])
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, r)) for r in await cur.fetchall()]
    entries = [{k: (v.isoformat() if isinstance(v, datetime) else
                    str(v) if k.endswith("_id") and v is not None and k != "id" else v)
                for k, v in row.items()} for row in rows]
    body = {"revision": entries, "links": self_links(request, "/revision")}
    if params.output_format(request) == params.FORMAT_HTML:
        return html_response(request, "audit.html", data=body)
    return json_response(body)


@router.get("/tildelinger", summary="De tildelinger til inspektører du kan se",
            response_class=Response, responses={200: {"description": "Assignments"},
                                                401: {"description": "Not signed in"}})
async def assignments(request: Request) -> Response:
    params.check_known(request, set())
    actor = await current_actor(request)
    if not actor.authenticated:
        raise unauthorized("assignments need a signed-in user")
    async with acting(request) as conn:
        cur = await conn.execute(
            "SELECT objekt_id, subjekt, cvr_kode, aktiv, tid, tildelt_af FROM ly.tildeling "
            "ORDER BY id")
        rows = await cur.fetchall()
    return json_response({"tildelinger": [
        {"objekt_id": str(o), "subjekt": s, "cvr_kode": c, "aktiv": a, "tid": t.isoformat(),
         "tildelt_af": by} for o, s, c, a, t, by in rows]})


def _assignable() -> list[themes.Theme]:
    """The themes whose objects are assigned to inspectors (`Theme.assignable`)."""
    return [t for t in themes.all_themes() if t.assignable]


async def _assignable_object(conn, objekt_id) -> tuple[themes.Theme, int, bool] | None:
    """(theme, cvr_kode, whether the actor may edit it) of the current object an assignment
    names, among the assignable themes' objects the actor sees; None when there is none."""
    for theme in _assignable():
        cur = await conn.execute(sql.SQL(
            "SELECT cvr_kode, ly.may_edit(cvr_kode, beliggenhedskommune) FROM {} "
            "WHERE objekt_id = %s").format(sql.Identifier("ly", theme.current_view)),
            [objekt_id])
        row = await cur.fetchone()
        if row is not None:
            return theme, row[0], row[1]
    return None


@router.post("/tildelinger", summary="Tildel et objekt til en inspektør (administratorer)",
             status_code=201, response_class=Response,
             responses={201: {"description": "Assigned"}, 401: {"description": "Not signed in"},
                        403: {"description": "Not allowed"},
                        404: {"description": "No such object"},
                        422: {"description": "Invalid body"}})
async def assign(request: Request) -> Response:
    params.check_known(request, set())
    actor = await current_actor(request)
    _require_admin(actor)
    if not actor.may_write_level:
        raise forbidden("assigning needs NSIS assurance level substantial or high")
    body = await read_json(request, ("application/json",))
    if not isinstance(body, dict):
        raise bad_request("body", "must be a JSON object")
    objekt_id = params.parse_uuid(body.get("objekt_id") if isinstance(body.get("objekt_id"),
                                                                      str) else None, "objekt_id")
    subject = body.get("subjekt")
    if objekt_id is None or not isinstance(subject, str) or not subject.strip():
        raise Problem(422, "objekt_id and subjekt are required", kind="invalid-body",
                      errors=[{"field": "objekt_id", "detail": "the objekt_id of an object to "
                                                               "inspect"},
                              {"field": "subjekt", "detail": "the inspector's subject"}])
    async with acting(request) as conn:
        found = await _assignable_object(conn, objekt_id)
        if found is None:
            what = " eller ".join(t.singular for t in _assignable()) or "objektet"
            raise Problem(404, f"{what[0].upper()}{what[1:]} {objekt_id} findes ikke",
                          kind="not-found")
        _, cvr, may_edit = found
        if not may_edit:
            raise forbidden("the object is outside your register", field="objekt_id")
        try:
            cur = await conn.execute("INSERT INTO ly.tildeling (objekt_id, subjekt, cvr_kode) "
                                     "VALUES (%s, %s, %s)", [objekt_id, subject.strip(), cvr])
        except psycopg.errors.InsufficientPrivilege:
            cur = None
        if cur is None or cur.rowcount != 1:  # row-level security refused the assignment
            raise forbidden("the object is outside your register (or changed meanwhile); "
                            "only an administrator who may change it assigns it",
                            field="objekt_id")
    return json_response({"objekt_id": str(objekt_id), "subjekt": subject.strip()}, status=201)
