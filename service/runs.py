"""The log of imports and GeoFA syncs (runs), for administrators.

Runs are created by the `ly` command (loaders.staging); the API only reads them. Row-level
security decides which runs an administrator sees (migration 0004: national admins every run,
municipal admins the runs of their CVR or municipalities).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from fastapi import APIRouter, Request
from starlette.responses import Response

from datamodel.access import ADMIN_ROLES
from service import params
from service.auth import current_actor, forbidden, unauthorized
from service.db import acting
from service.errors import Problem, bad_request
from service.http import self_links, json_response

router = APIRouter(tags=["Importer og synkronisering"])

_RUN_COLUMNS = ("id, art, status, kilde, kommunekode, cvr_kode, subjekt, startet, opdateret, "
                "staget, publiceret, tilbagerullet, naeste_raekke, taellere, kvalitet, fejl")
_ARTER = ("kommunal_liste", "bbr", "geofa_pull", "geofa_sync")
_STATUSSER = ("indlaeser", "klar", "afvist", "publiceret", "tilbagerullet", "fejlet")


def _plain(row: dict) -> dict:
    return {k: (v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, UUID)
                else v) for k, v in row.items()}


async def _rows(conn, stmt: str, args: list) -> list[dict]:
    cur = await conn.execute(stmt, args)
    names = [d.name for d in cur.description]
    return [_plain(dict(zip(names, r))) for r in await cur.fetchall()]


async def _require_admin(request: Request) -> None:
    actor = await current_actor(request)
    if not actor.authenticated:
        raise unauthorized("the run log needs a signed-in administrator")
    if not actor.has(*ADMIN_ROLES):
        raise forbidden("only administrators may read the run log")


@router.get("/koersler", summary="Loggen over indlæsninger og synkroniseringer (administratorer)",
            response_class=Response,
            responses={200: {"description": "Runs, newest first"},
                       401: {"description": "Not signed in"}, 403: {"description": "Not allowed"}})
async def runs(request: Request) -> Response:
    params.check_known(request, {"art", "status", "kommunekode", "limit", "f"})
    await _require_admin(request)
    clauses, args = ["TRUE"], []
    art = request.query_params.get("art")
    if art is not None:
        if art not in _ARTER:
            raise bad_request("art", f"must be one of {', '.join(_ARTER)}")
        clauses.append("art = %s")
        args.append(art)
    status = request.query_params.get("status")
    if status is not None:
        if status not in _STATUSSER:
            raise bad_request("status", f"must be one of {', '.join(_STATUSSER)}")
        clauses.append("status = %s")
        args.append(status)
    kommune = request.query_params.get("kommunekode")
    if kommune is not None:
        if not kommune.isdigit():
            raise bad_request("kommunekode", "must be a municipality code")
        clauses.append("kommunekode = %s")
        args.append(int(kommune))
    n = params.parse_limit(request.query_params.get("limit"), 100, 1000)
    async with acting(request) as conn:
        rows = await _rows(conn, f"SELECT {_RUN_COLUMNS} FROM ly.koersel WHERE "
                                 + " AND ".join(clauses) + " ORDER BY id DESC LIMIT %s", args + [n])
    for r in rows:
        r["links"] = [{"href": str(request.url_for("run", run_id=r["id"])), "rel": "item",
                       "type": "application/json"}]
    return json_response({"koersler": rows, "links": self_links(request, "/koersler")[:1]})


@router.get("/koersler/{run_id}", name="run", summary="Én kørsel: tællere, kvalitetsport, "
            "afviste rækker, konflikter og ændringer (administratorer)", response_class=Response,
            responses={200: {"description": "The run"}, 401: {"description": "Not signed in"},
                       403: {"description": "Not allowed"}, 404: {"description": "No such run"}})
async def run(request: Request, run_id: str) -> Response:
    params.check_known(request, {"f"})
    await _require_admin(request)
    if not run_id.isdigit():
        raise bad_request("run_id", "must be a run number")
    rid = int(run_id)
    async with acting(request) as conn:
        found = await _rows(conn, f"SELECT {_RUN_COLUMNS}, parametre FROM ly.koersel "
                                  "WHERE id = %s", [rid])
        if not found:
            raise Problem(404, f"Kørsel {rid} findes ikke", kind="not-found")
        body = found[0]
        body["afviste"] = await _rows(conn, "SELECT raekke, felt, aarsag, kilde_vaerdier FROM "
                                            "ly.afvist WHERE koersel_id = %s ORDER BY raekke, id",
                                      [rid])
        body["konflikter"] = await _rows(
            conn, "SELECT objekt_id, felt, grundlag, ly_vaerdi, geofa_vaerdi, politik, vinder, "
                  "begrundelse FROM ly.konflikt WHERE koersel_id = %s ORDER BY id", [rid])
        body["kandidater"] = await _rows(
            conn, "SELECT raekke, maal, handling, objekt_id, match, foer_versions_id, "
                  "efter_versions_id, tilbage_versions_id, aendringer, bemaerkning "
                  "FROM ly.kandidat WHERE koersel_id = %s AND handling <> 'uaendret' "
                  "ORDER BY raekke LIMIT 10000", [rid])
    body["links"] = self_links(request, f"/koersler/{rid}")[:1]
    return json_response(body)
