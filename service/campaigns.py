"""Inspection campaigns (eftersynskampagner): a named period with a checklist, a deadline and a
selection of shelters; assignment to inspectors; progress per municipality and nationally;
reports as HTML, CSV and XLSX. Everything is read and written as the signed-in actor."""

from __future__ import annotations

import csv
import io
from datetime import date
from uuid import UUID

import orjson
from fastapi import APIRouter, Query, Request
from psycopg import sql
from starlette.responses import Response

from datamodel import checklist, themes
from datamodel.access import ADMIN_ROLES
from datamodel.rules import Invalid, Problem as RuleProblem
from service import params
from service.auth import current_actor, forbidden, unauthorized
from service.db import acting
from service.errors import Problem, invalid, not_found
from service.http import html_response, json_response
from service.transactions import read_json

router = APIRouter(tags=["Eftersynskampagner"])
#: The inspected theme: campaigns are the shelters' (6101) inspection workflow.
THEME = themes.by_temakode(6101)
_CURRENT = sql.Identifier("ly", THEME.current_view)

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PROGRESS_COLUMNS = ("kommunekode", "kommune", "udvalgt", "tildelt", "kladde", "indsendt",
                    "godkendt", "afvist", "egnet", "egnet_efter_udbedring", "uegnet",
                    "ikke_vurderet", "aabne_mangler", "forfaldne_mangler")


async def _admin(request: Request):
    actor = await current_actor(request)
    if not actor.authenticated:
        raise unauthorized("campaigns need a signed-in administrator")
    if not actor.has(*ADMIN_ROLES) or not actor.may_write_level:
        raise forbidden("only municipal or national administrators (NSIS substantial or high) "
                        "manage campaigns")
    return actor


def _date(body: dict, key: str, problems: list) -> date | None:
    try:
        return date.fromisoformat(body[key])
    except (KeyError, TypeError, ValueError):
        problems.append(RuleProblem(key, "must be a date (YYYY-MM-DD)"))
        return None


#: Codes are stored as PostgreSQL integers.
_INT4 = (-2**31, 2**31 - 1)


def _is_code(value) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)
            and _INT4[0] <= value <= _INT4[1])


def _codes(selection: dict, key: str, problems: list) -> list[int] | None:
    """`udvalg.<key>`: a code or a list of codes (integers), or absent."""
    value = selection.get(key)
    if value is None:
        return None
    value = [value] if not isinstance(value, list) else value
    if not all(_is_code(v) for v in value):
        problems.append(RuleProblem(f"udvalg.{key}", "must be a list of integer codes "
                                                    f"({_INT4[0]} to {_INT4[1]})"))
        return None
    return value


def _parse_campaign(body) -> dict:
    if not isinstance(body, dict):
        raise invalid(Invalid([RuleProblem("body", "must be a JSON object")]))
    problems: list[RuleProblem] = []
    name = body.get("navn")
    if not isinstance(name, str) or not 3 <= len(name.strip()) <= 254:
        problems.append(RuleProblem("navn", "a name of 3–254 characters is required"))
    kode = body.get("tjekliste_kode")
    version = body.get("tjekliste_version")
    template = (checklist.latest(kode) if version is None else
                checklist.load_templates().get((kode, version))) if isinstance(kode, str) else None
    if template is None:
        problems.append(RuleProblem("tjekliste_kode", "must name a checklist of /tjeklister"))
    start, end, deadline = (_date(body, k, problems) for k in
                            ("periode_fra", "periode_til", "frist"))
    if start and end and start > end:
        problems.append(RuleProblem("periode_til", "is before periode_fra"))
    selection = body.get("udvalg") or {}
    kinds = municipalities = None
    if not isinstance(selection, dict):
        problems.append(RuleProblem("udvalg", "is {\"beskyt_rum_kode\": [..], "
                                              "\"kommuner\": [..]} with integer codes"))
    else:
        kinds = _codes(selection, "beskyt_rum_kode", problems)
        municipalities = _codes(selection, "kommuner", problems)
    if problems:
        raise invalid(Invalid(problems))
    return {"navn": name.strip(), "template": template, "start": start, "end": end,
            "deadline": deadline, "kinds": kinds, "municipalities": municipalities}


@router.post("/kampagner", summary="Opret en kampagne og vælg dens beskyttelsesrum", status_code=201,
             response_class=Response,
             responses={201: {"description": "Created, with the number of shelters selected"},
                        403: {"description": "Not an administrator"},
                        422: {"description": "Invalid campaign"}})
async def create_campaign(request: Request) -> Response:
    params.check_known(request, set())
    actor = await _admin(request)
    c = _parse_campaign(await read_json(request, ("application/json",)))
    selection = {"beskyt_rum_kode": c["kinds"], "kommuner": c["municipalities"]}
    async with acting(request) as conn:
        cur = await conn.execute(
            "INSERT INTO ly.kampagne (navn, tjekliste_kode, tjekliste_version, periode_fra, "
            "periode_til, frist, udvalg, cvr_kode) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "RETURNING id",
            [c["navn"], c["template"].kode, c["template"].version, c["start"], c["end"],
             c["deadline"], orjson.dumps(selection).decode(), actor.cvr])
        (kid,) = await cur.fetchone()
        # the shelters the administrator may manage that match the selection
        cur = await conn.execute(sql.SQL(
            "INSERT INTO ly.kampagne_udvalg (kampagne_id, objekt_id, cvr_kode, "
            "beliggenhedskommune) SELECT %s, objekt_id, cvr_kode, beliggenhedskommune "
            "FROM {} WHERE ly.may_edit(cvr_kode, beliggenhedskommune) "
            "AND (%s::int[] IS NULL OR beskyt_rum_kode = ANY (%s::int[])) "
            "AND (%s::int[] IS NULL OR beliggenhedskommune = ANY (%s::int[]))").format(_CURRENT),
            [kid, c["kinds"], c["kinds"], c["municipalities"], c["municipalities"]])
        selected = cur.rowcount
    return json_response({"id": str(kid), "navn": c["navn"], "udvalgt": selected}, status=201)


_CAMPAIGN = ("SELECT id, navn, tjekliste_kode, tjekliste_version, periode_fra, periode_til, "
             "frist, udvalg, cvr_kode, oprettet_af, oprettet, (SELECT count(*) FROM "
             "ly.kampagne_udvalg u WHERE u.kampagne_id = k.id) AS udvalgt FROM ly.kampagne k")


def _campaign_json(names, row) -> dict:
    return {k: (str(v) if isinstance(v, UUID) else v.isoformat() if hasattr(v, "isoformat")
                else v) for k, v in zip(names, row)}


@router.get("/kampagner", summary="Eftersynskampagner", response_class=Response)
async def campaigns(request: Request) -> Response:
    params.check_known(request, set())
    if not (await current_actor(request)).authenticated:
        raise unauthorized("campaigns need a signed-in user")
    async with acting(request) as conn:
        cur = await conn.execute(_CAMPAIGN + " ORDER BY oprettet DESC")
        names = [d.name for d in cur.description]
        rows = [_campaign_json(names, r) for r in await cur.fetchall()]
    return json_response({"kampagner": rows})


async def _campaign(conn, kampagne_id: str) -> dict:
    kid = params.parse_uuid(kampagne_id, "kampagne_id")
    cur = await conn.execute(_CAMPAIGN + " WHERE id = %s", [kid])
    row = await cur.fetchone()
    if row is None:
        raise not_found(f"Kampagnen {kampagne_id}")
    return _campaign_json([d.name for d in cur.description], row)


@router.get("/kampagner/{kampagne_id}", summary="Én kampagne", response_class=Response,
            responses={404: {"description": "Not found"}})
async def campaign(request: Request, kampagne_id: str) -> Response:
    params.check_known(request, set())
    if not (await current_actor(request)).authenticated:
        raise unauthorized("campaigns need a signed-in user")
    async with acting(request) as conn:
        return json_response(await _campaign(conn, kampagne_id))


@router.post("/kampagner/{kampagne_id}/tildelinger",
             summary="Tildel kampagnens beskyttelsesrum (alle, én kommunes eller en liste) til en "
                     "inspektør", status_code=201, response_class=Response,
             responses={201: {"description": "Assigned"}, 404: {"description": "Not found"},
                        422: {"description": "Invalid body"}})
async def assign(request: Request, kampagne_id: str) -> Response:
    params.check_known(request, set())
    await _admin(request)
    body = await read_json(request, ("application/json",))
    problems: list[RuleProblem] = []
    subject = body.get("subjekt") if isinstance(body, dict) else None
    if not isinstance(subject, str) or not subject.strip():
        problems.append(RuleProblem("subjekt", "the inspector's subject is required"))
    ids = body.get("objekt_ids") if isinstance(body, dict) else None
    try:
        ids = [UUID(str(i)) for i in ids] if ids is not None else None
    except (TypeError, ValueError):
        problems.append(RuleProblem("objekt_ids", "must be a list of objekt_id UUIDs"))
    kommune = body.get("kommune") if isinstance(body, dict) else None
    if kommune is not None and not _is_code(kommune):
        problems.append(RuleProblem("kommune", "must be a kommunekode"))
    if problems:
        raise invalid(Invalid(problems))
    async with acting(request) as conn:
        c = await _campaign(conn, kampagne_id)
        # Decided on each shelter's current version (the selection is what it was when the
        # campaign was made): a shelter since ended, or moved out of the actor's scope, is
        # left out, and an assignment carries the shelter's CVR of now.
        cur = await conn.execute(sql.SQL(
            "INSERT INTO ly.tildeling (objekt_id, subjekt, cvr_kode, kampagne_id) "
            "SELECT u.objekt_id, %s, b.cvr_kode, u.kampagne_id FROM ly.kampagne_udvalg u "
            "JOIN {} b ON b.objekt_id = u.objekt_id "
            "WHERE u.kampagne_id = %s AND ly.may_edit(b.cvr_kode, b.beliggenhedskommune) "
            "AND (%s::uuid[] IS NULL OR u.objekt_id = ANY (%s::uuid[])) "
            "AND (%s::int IS NULL OR b.beliggenhedskommune = %s) "
            "AND NOT EXISTS (SELECT 1 FROM ly.tildeling t WHERE t.objekt_id = u.objekt_id "
            "AND t.subjekt = %s AND t.kampagne_id = u.kampagne_id AND t.aktiv)").format(_CURRENT),
            [subject.strip(), c["id"], ids, ids, kommune, kommune, subject.strip()])
    return json_response({"kampagne_id": c["id"], "subjekt": subject.strip(),
                          "tildelt": cur.rowcount}, status=201)


async def _progress(conn, kid: str) -> list[dict]:
    cur = await conn.execute("""
        WITH u AS (SELECT objekt_id, beliggenhedskommune FROM ly.kampagne_udvalg
                   WHERE kampagne_id = %(k)s),
        e AS (SELECT DISTINCT ON (objekt_id) id, objekt_id, status, egnethed_kode
              FROM ly.eftersyn WHERE kampagne_id = %(k)s ORDER BY objekt_id, opdateret DESC),
        t AS (SELECT DISTINCT objekt_id FROM ly.tildeling WHERE kampagne_id = %(k)s AND aktiv),
        m AS (SELECT objekt_id,
                     count(*) FILTER (WHERE status IN ('aaben', 'planlagt')) AS aabne,
                     count(*) FILTER (WHERE status IN ('aaben', 'planlagt')
                                      AND frist < current_date) AS forfaldne
              FROM ly.mangel WHERE eftersyn_id IN (SELECT id FROM e) GROUP BY objekt_id)
        SELECT u.beliggenhedskommune, k.navn, count(*), count(t.objekt_id),
               count(*) FILTER (WHERE e.status = 'kladde'),
               count(*) FILTER (WHERE e.status = 'indsendt'),
               count(*) FILTER (WHERE e.status IN ('godkendt', 'indberettet')),
               count(*) FILTER (WHERE e.status = 'afvist'),
               count(*) FILTER (WHERE e.status IN ('godkendt', 'indberettet')
                                AND e.egnethed_kode = 1),
               count(*) FILTER (WHERE e.status IN ('godkendt', 'indberettet')
                                AND e.egnethed_kode = 2),
               count(*) FILTER (WHERE e.status IN ('godkendt', 'indberettet')
                                AND e.egnethed_kode = 3),
               count(*) FILTER (WHERE e.status IN ('godkendt', 'indberettet')
                                AND e.egnethed_kode = 9),
               coalesce(sum(m.aabne), 0)::int, coalesce(sum(m.forfaldne), 0)::int
        FROM u LEFT JOIN e USING (objekt_id) LEFT JOIN t USING (objekt_id)
        LEFT JOIN m USING (objekt_id) LEFT JOIN ly.kommune k
            ON k.kommunekode = u.beliggenhedskommune
        GROUP BY 1, 2 ORDER BY 1""", {"k": UUID(kid)})
    return [dict(zip(PROGRESS_COLUMNS, row)) for row in await cur.fetchall()]


def _total(rows: list[dict]) -> dict:
    total = {c: sum(r[c] for r in rows) for c in PROGRESS_COLUMNS[2:]}
    return {"kommunekode": None, "kommune": "Hele landet", **total}


@router.get("/kampagner/{kampagne_id}/fremdrift",
            summary="Fremdrift pr. kommune og for hele landet", response_class=Response,
            responses={404: {"description": "Not found"}})
async def progress(request: Request, kampagne_id: str) -> Response:
    params.check_known(request, set())
    if not (await current_actor(request)).authenticated:
        raise unauthorized("campaigns need a signed-in user")
    async with acting(request) as conn:
        c = await _campaign(conn, kampagne_id)
        rows = await _progress(conn, c["id"])
    return json_response({"kampagne": c, "kommuner": rows, "national": _total(rows)})


async def _overdue(conn, kid: str) -> list[dict]:
    cur = await conn.execute(sql.SQL(
        "SELECT m.objekt_id, b.navn, m.beliggenhedskommune, m.punkt, m.rum, m.grad, "
        "m.beskrivelse, m.ansvarlig, m.frist, m.status FROM ly.mangel m "
        "JOIN ly.eftersyn e ON e.id = m.eftersyn_id "
        "LEFT JOIN {} b ON b.objekt_id = m.objekt_id "
        "WHERE e.kampagne_id = %s AND m.status IN ('aaben', 'planlagt') "
        "AND m.frist < current_date ORDER BY m.frist, m.beliggenhedskommune").format(_CURRENT),
        [UUID(kid)])
    names = [d.name for d in cur.description]
    return [{k: (str(v) if isinstance(v, UUID) else v.isoformat() if hasattr(v, "isoformat")
                 else v) for k, v in zip(names, r)} for r in await cur.fetchall()]


@router.get("/rapporter/kampagner/{kampagne_id}",
            summary="Kampagnerapport: fremdrift, klassifikationer, overskredne mangler",
            response_class=Response,
            responses={200: {"content": {"text/html": {}, "text/csv": {}, XLSX: {}}},
                       404: {"description": "Not found"}})
async def report(request: Request, kampagne_id: str,
                 f: str | None = Query(None, description="html (default), csv or xlsx"),
                 kommune: int | None = Query(None, description="Only this municipality")
                 ) -> Response:
    params.check_known(request, {"f", "kommune"})
    if not (await current_actor(request)).authenticated:
        raise unauthorized("reports need a signed-in user")
    fmt = (f or "html").lower()
    if fmt not in ("html", "csv", "xlsx"):
        raise Problem(400, "f: must be html, csv or xlsx", kind="invalid-parameter",
                      errors=[{"field": "f", "detail": "html, csv or xlsx"}])
    async with acting(request) as conn:
        c = await _campaign(conn, kampagne_id)
        rows = await _progress(conn, c["id"])
        overdue = await _overdue(conn, c["id"])
    if kommune is not None:
        rows = [r for r in rows if r["kommunekode"] == kommune]
        overdue = [m for m in overdue if m["beliggenhedskommune"] == kommune]
    rows_with_total = rows + [_total(rows)]
    name = f"kampagne-{c['id'][:8]}" + (f"-{kommune}" if kommune else "")
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=PROGRESS_COLUMNS, delimiter=";")
        writer.writeheader()
        writer.writerows(rows_with_total)
        return Response(out.getvalue().encode("utf-8-sig"), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    if fmt == "xlsx":
        return Response(_xlsx(c, rows_with_total, overdue), media_type=XLSX,
                        headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'})
    return html_response(request, "report_kampagne.html", kampagne=c, rows=rows,
                         total=_total(rows), overdue=overdue, columns=PROGRESS_COLUMNS)


def _xlsx(c: dict, rows: list[dict], overdue: list[dict]) -> bytes:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    sheet = wb.create_sheet("Fremdrift")
    sheet.append([f"Kampagne: {c['navn']}", f"frist {c['frist']}"])
    sheet.append(list(PROGRESS_COLUMNS))
    for r in rows:
        sheet.append([r[k] for k in PROGRESS_COLUMNS])
    late = wb.create_sheet("Forfaldne mangler")
    columns = ["objekt_id", "navn", "beliggenhedskommune", "punkt", "rum", "grad",
               "beskrivelse", "ansvarlig", "frist", "status"]
    late.append(columns)
    for m in overdue:
        late.append([m[k] for k in columns])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
