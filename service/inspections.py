"""Inspections (eftersyn): templates, the inspector's tasks, idempotent uploads of inspections
and photos, approval with findings and the shelter's new version, deficiencies, and the
GeoFA 6122 exchange. Every database access acts for the signed-in actor (row-level security).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID

import orjson
import psycopg
from fastapi import APIRouter, Query, Request
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, Response

from psycopg import sql

from datamodel import checklist
from datamodel import crs as crsmod
from datamodel import themes
from datamodel.access import ADMIN_ROLES, EDITING_ROLES, INSPECTOR, Actor
from datamodel.checklist import (CAPPING_GRADES, OPEN_DEFICIENCY_STATUSES, OpenDeficiency,
                                 cap_by_open_deficiencies)
from datamodel.rules import Invalid, Problem as RuleProblem, point_from_geojson
from service import params
from service.auth import current_actor, forbidden, unauthorized
from service.db import acting, equality_filters, lock_object
from service.errors import Problem, bad_request, invalid, not_found
from service.http import html_response, json_response
from service.transactions import read_json

router = APIRouter(tags=["Eftersyn"])

MAX_PHOTO_BYTES = 10_000_000
PHOTO_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG"}
THUMBNAIL_PX = 320
STATIC = Path(__file__).parent / "static"
#: The inspected theme: inspections (GeoFA 6122) are the shelters' (6101) workflow.
THEME = themes.by_temakode(6101)
_CURRENT = sql.Identifier("ly", THEME.current_view)
_HISTORY = sql.Identifier("ly", THEME.history_view)


# --- templates ---

@router.get("/tjeklister", summary="Tjeklisteskabeloner", response_class=Response)
async def templates(request: Request) -> Response:
    params.check_known(request, set())
    items = [{"kode": t.kode, "version": t.version, "titel": t.title}
             for t in checklist.load_templates().values()]
    return json_response({"tjeklister": items})


def _template(kode: str, version: int | None) -> checklist.Template:
    t = checklist.latest(kode) if version is None else checklist.load_templates().get(
        (kode, version))
    if t is None:
        raise not_found(f"Tjeklisten {kode}" + (f" version {version}" if version else ""))
    return t


@router.get("/tjeklister/{kode}", summary="Den nyeste version af en tjekliste",
            response_class=Response, responses={404: {"description": "No such checklist"}})
async def template_latest(request: Request, kode: str) -> Response:
    params.check_known(request, set())
    return json_response(_template(kode, None).to_json())


@router.get("/tjeklister/{kode}/{version}", summary="Én version af en tjekliste",
            response_class=Response, responses={404: {"description": "No such version"}})
async def template_version(request: Request, kode: str, version: int) -> Response:
    params.check_known(request, set())
    return json_response(_template(kode, version).to_json())


# --- who may do what (the database decides scope; these give clear 401/403 first) ---

async def _signed_in(request: Request) -> Actor:
    actor = await current_actor(request)
    if not actor.authenticated:
        raise unauthorized("inspections need a signed-in user")
    return actor


async def _writer(request: Request) -> Actor:
    actor = await _signed_in(request)
    if not actor.has(INSPECTOR, *EDITING_ROLES):
        raise forbidden("only inspectors and municipal or national editors record inspections")
    if not actor.may_write_level:
        raise forbidden("recording inspections needs NSIS assurance level substantial or high")
    return actor


async def _approver(request: Request) -> Actor:
    actor = await _signed_in(request)
    if not actor.has(*ADMIN_ROLES) or not actor.may_write_level:
        raise forbidden("only municipal or national administrators (NSIS substantial or "
                        "high) approve inspections")
    return actor


# --- the inspector's tasks ---

@router.get("/eftersyn/opgaver", summary="Den indloggede inspektørs opgaver",
            response_class=Response)
async def tasks(request: Request) -> Response:
    params.check_known(request, set())
    actor = await _signed_in(request)
    async with acting(request) as conn:
        cur = await conn.execute(sql.SQL("""
            SELECT DISTINCT ON (b.objekt_id) b.objekt_id, b.navn, b.beskyt_rum, b.pladser,
                   concat_ws(' ', b.vejnavn, b.husnr) || coalesce(', ' || b.postnr || ' '
                       || b.postnr_by, ''),
                   k.id, k.navn, coalesce(k.tjekliste_kode, CASE WHEN b.beskyt_rum_kode = 3
                       THEN 'bdg-6122' ELSE 'generel' END), k.tjekliste_version,
                   ST_X(ST_Transform(b.geometri, 4326)), ST_Y(ST_Transform(b.geometri, 4326)),
                   e.id, e.status
            FROM ly.tildeling t
            JOIN {} b ON b.objekt_id = t.objekt_id
            LEFT JOIN ly.kampagne k ON k.id = t.kampagne_id
            LEFT JOIN LATERAL (SELECT id, status FROM ly.eftersyn
                               WHERE objekt_id = b.objekt_id AND inspektoer = %s
                               ORDER BY oprettet DESC LIMIT 1) e ON TRUE
            WHERE t.aktiv AND t.subjekt = %s
            ORDER BY b.objekt_id, t.id DESC""").format(_CURRENT), [actor.subject, actor.subject])
        rows = await cur.fetchall()
    out = []
    for (oid, navn, art, pladser, adresse, kid, knavn, kode, version, lon, lat, eid,
         status) in rows:
        if version is None:
            version = checklist.latest(kode).version
        out.append({"objekt_id": str(oid), "navn": navn, "beskyt_rum": art, "pladser": pladser,
                    "adresse": adresse, "kampagne_id": str(kid) if kid else None,
                    "kampagne": knavn, "tjekliste_kode": kode, "tjekliste_version": version,
                    "lon": lon, "lat": lat, "eftersyn_id": str(eid) if eid else None,
                    "status": status})
    return json_response({"opgaver": out})


# --- the inspector form ---

@router.get("/eftersyn/formular", summary="Inspektørens formular (HTML, virker offline)",
            include_in_schema=False)
async def form(request: Request) -> Response:
    return html_response(request, "eftersyn_formular.html")


@router.get("/eftersyn/sw.js", include_in_schema=False)
async def service_worker() -> Response:
    return FileResponse(STATIC / "eftersyn" / "sw.js", media_type="text/javascript",
                        headers={"Service-Worker-Allowed": "/eftersyn/",
                                 "Cache-Control": "no-cache"})


# --- uploading an inspection (idempotent) ---

def _parse_upload(body) -> dict:
    """The upload's parts, checked: ids, template, status, answers, position."""
    if not isinstance(body, dict):
        raise bad_request("body", "must be a JSON object")
    problems: list[RuleProblem] = []
    unknown = set(body) - {"objekt_id", "tjekliste_kode", "tjekliste_version", "kampagne_id",
                           "status", "svar", "rum", "position", "position_tid"}
    problems += [RuleProblem(k, "is not a member of an inspection") for k in sorted(unknown)]
    out: dict = {}
    for key in ("objekt_id", "kampagne_id"):
        value = body.get(key)
        if value is None:
            if key == "objekt_id":
                problems.append(RuleProblem(key, "is required"))
            out[key] = None
            continue
        try:
            out[key] = UUID(str(value))
        except ValueError:
            problems.append(RuleProblem(key, "must be a UUID"))
    status = body.get("status", "kladde")
    if status not in ("kladde", "indsendt"):
        problems.append(RuleProblem("status", "must be \"kladde\" or \"indsendt\""))
    out["status"] = status
    template = None
    kode, version = body.get("tjekliste_kode"), body.get("tjekliste_version")
    if isinstance(kode, str) and isinstance(version, int) and not isinstance(version, bool):
        template = checklist.load_templates().get((kode, version))
    if template is None:
        problems.append(RuleProblem("tjekliste_version" if isinstance(kode, str) and
                                    checklist.latest(kode) else "tjekliste_kode",
                                    "must name a checklist version of /tjeklister"))
    out["position"] = None
    if body.get("position") is not None:
        xy = point_from_geojson(body["position"], crsmod.DEFAULT, problems)
        out["position"] = f"SRID=25832;POINT({xy[0]:.3f} {xy[1]:.3f})" if xy else None
    out["position_tid"] = None
    if body.get("position_tid") is not None:
        try:
            out["position_tid"] = params.parse_instant(str(body["position_tid"]),
                                                       "position_tid")
        except Problem:
            problems.append(RuleProblem("position_tid", "must be an RFC 3339 date-time"))
    if template is not None:
        try:
            out["svar"], out["rum"] = checklist.validate_answers(
                template, body.get("svar"), body.get("rum"), submit=status == "indsendt")
        except Invalid as exc:
            problems += exc.problems
    if problems:
        raise Invalid(problems)
    out["template"] = template
    return out


def _content_hash(up: dict) -> str:
    canonical = {k: (str(v) if isinstance(v, (UUID, datetime)) else v) for k, v in up.items()
                 if k != "template"}
    canonical["tjekliste"] = [up["template"].kode, up["template"].version]
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, default=str).encode()).hexdigest()


def _missing(template: checklist.Template, svar: dict, rum: list) -> list[str]:
    try:
        checklist.validate_answers(template, svar, rum, submit=True)
    except Invalid as exc:
        return [p.field.removeprefix("svar.") for p in exc.problems]
    return []


_COLUMNS = ("id, objekt_id, kampagne_id, tjekliste_kode, tjekliste_version, status, svar, rum, "
            "inspektoer, cvr_kode, beliggenhedskommune, egnethed_kode, pladser, godkendt_af, "
            "godkendt_tid, afvist_begrundelse, indberettet_tid, beskyttelsesrum_versions_id, "
            "version, oprettet, opdateret, position_tid, indhold_hash, "
            "ST_AsGeoJSON(ST_Transform(position, 4326), 7)::json AS position")


async def _load(conn, eftersyn_id: UUID) -> dict | None:
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM ly.eftersyn WHERE id = %s",
                             [eftersyn_id])
    row = await cur.fetchone()
    if row is None:
        return None
    return dict(zip([d.name for d in cur.description], row))


async def _load_or_404(conn, eftersyn_id: UUID) -> dict:
    e = await _load(conn, eftersyn_id)
    if e is None:
        raise not_found(f"Eftersynet {eftersyn_id}")
    return e


def _public_form(e: dict, photos: list | None = None) -> dict:
    template = checklist.load_templates()[(e["tjekliste_kode"], e["tjekliste_version"])]
    out = {k: (str(v) if isinstance(v, UUID) else v.isoformat() if isinstance(
        v, (datetime, date)) else v) for k, v in e.items() if k != "indhold_hash"}
    out["mangler_svar"] = _missing(template, e["svar"], e["rum"])
    if photos is not None:
        out["fotos"] = photos
    return out


async def _photos(conn, eftersyn_id: UUID) -> list[dict]:
    cur = await conn.execute(
        "SELECT id, punkt, rum, content_type, stoerrelse, bredde, hoejde, sha256 "
        "FROM ly.eftersyn_foto WHERE eftersyn_id = %s ORDER BY oprettet", [eftersyn_id])
    return [{"id": str(i), "punkt": p, "rum": r, "content_type": c, "stoerrelse": s,
             "bredde": w, "hoejde": h, "sha256": sha} for i, p, r, c, s, w, h, sha in
            await cur.fetchall()]


def _etag(e: dict) -> str:
    return f'"{e["version"]}"'


_ENTITY_TAG = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"')


def _if_match(request: Request) -> frozenset[int] | str | None:
    """The versions an upload is conditional on (RFC 9110 13.1.1): None when it is not,
    "*" for any current version, else the versions the strong ETags name (a weak or a foreign
    tag names none, and so never matches)."""
    value = request.headers.get("if-match")
    if value is None:
        return None
    if value.strip() == "*":
        return "*"
    tags = [t.strip() for t in value.split(",") if t.strip()]
    if not tags:
        raise bad_request("If-Match", 'must be "*" or ETags such as "3"')
    versions = set()
    for tag in tags:
        m = _ENTITY_TAG.fullmatch(tag)
        if m is None:
            raise bad_request("If-Match", f"{tag!r} is not an ETag (a quoted version such as "
                                          '"3")')
        if m.group(1) is None and m.group(2).isdigit():
            versions.add(int(m.group(2)))
    return frozenset(versions)


def _check_if_match(existing: dict | None, expected, eid: UUID) -> None:
    if expected is None:
        return
    if existing is None:
        raise Problem(412, f"If-Match: the inspection {eid} does not exist",
                      kind="precondition-failed",
                      errors=[{"field": "If-Match", "detail": "no current version"}])
    if expected != "*" and existing["version"] not in expected:
        raise Problem(412, f"If-Match: the inspection changed since that version was read; it "
                      f"is now version {existing['version']} ({existing['status']})",
                      kind="precondition-failed",
                      errors=[{"field": "If-Match",
                               "detail": f"the current ETag is {_etag(existing)}"}],
                      headers={"ETag": _etag(existing)})


async def _lock(conn, eftersyn_id: UUID) -> tuple[dict | None, bool]:
    """The inspection and whether the actor may change it. A row the actor may change is
    locked (FOR UPDATE) until the transaction ends: a concurrent change waits for it, then
    sees what this one did. Row-level security leaves a visible row that the actor may not
    change out of the lock; it is then read unlocked (False)."""
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM ly.eftersyn WHERE id = %s FOR UPDATE",
                             [eftersyn_id])
    row = await cur.fetchone()
    if row is not None:
        return dict(zip([d.name for d in cur.description], row)), True
    return await _load(conn, eftersyn_id), False


def _outside_scope(what: str, field: str) -> Problem:
    return forbidden(f"{what}: the register does not let you change this inspection "
                     "(outside your municipality or role)", field=field)


async def _stored_response(conn, eid: UUID, status: int) -> Response:
    stored = await _load(conn, eid)
    return json_response(_public_form(stored, await _photos(conn, eid)), status=status,
                         headers={"ETag": _etag(stored)})


@router.put("/eftersyn/{eftersyn_id}", summary="Upload et eftersyn (idempotent)",
            response_class=Response,
            responses={200: {"description": "Updated as sent, or the same upload again"},
                       201: {"description": "Created"},
                       400: {"description": "A malformed If-Match"},
                       401: {"description": "Not signed in"},
                       403: {"description": "Visible, but not yours to change"},
                       404: {"description": "No shelter"},
                       409: {"description": "Submitted or approved (perhaps meanwhile): "
                                            "cannot change; the ETag is the current version"},
                       412: {"description": "If-Match does not name the current version"},
                       422: {"description": "Invalid answers; the problem names the item"}})
async def upload(request: Request, eftersyn_id: str) -> Response:
    params.check_known(request, set())
    await _writer(request)
    eid = params.parse_uuid(eftersyn_id, "eftersyn_id")
    expected = _if_match(request)
    body = await read_json(request, ("application/json",))
    try:
        up = _parse_upload(body)
    except Invalid as exc:
        raise invalid(exc) from None
    digest = _content_hash(up)
    async with acting(request) as conn:
        for _ in range(2):
            existing, writable = await _lock(conn, eid)
            if existing is not None:
                return await _update(conn, existing, writable, up, digest, expected)
            _check_if_match(None, expected, eid)
            cur = await conn.execute(sql.SQL(
                "SELECT cvr_kode, beliggenhedskommune FROM {} WHERE objekt_id = %s"
            ).format(_CURRENT), [up["objekt_id"]])
            shelter = await cur.fetchone()
            if shelter is None:
                raise Problem(404, f"objekt_id: the shelter {up['objekt_id']} does not exist",
                              kind="not-found",
                              errors=[{"field": "objekt_id", "detail": "no such shelter"}])
            try:
                cur = await conn.execute(
                    "INSERT INTO ly.eftersyn (id, objekt_id, kampagne_id, tjekliste_kode, "
                    "tjekliste_version, status, svar, rum, indhold_hash, cvr_kode, "
                    "beliggenhedskommune, position, position_tid) VALUES (%s, %s, %s, %s, %s, "
                    "%s, %s, %s, %s, %s, %s, ST_GeomFromEWKT(%s), %s) ON CONFLICT (id) DO NOTHING",
                    [eid, up["objekt_id"], up["kampagne_id"], up["template"].kode,
                     up["template"].version, up["status"], orjson.dumps(up["svar"]).decode(),
                     orjson.dumps(up["rum"]).decode(), digest, shelter[0], shelter[1],
                     up["position"], up["position_tid"]])
            except psycopg.errors.InsufficientPrivilege:
                raise forbidden("objekt_id: you may not record inspections of this shelter "
                                "(not assigned to you, or outside your municipality)",
                                field="objekt_id") from None
            if cur.rowcount == 1:
                return await _stored_response(conn, eid, 201)
            # A concurrent upload stored it first; in READ COMMITTED the next statement sees
            # it, so the second round treats this upload as a replay or a change of it.
    raise Problem(409, f"eftersyn_id: {eid} is the id of an inspection you cannot see",
                  kind="conflict", errors=[{"field": "eftersyn_id", "detail": "in use"}])


async def _update(conn, existing: dict, writable: bool, up: dict, digest: str,
                  expected) -> Response:
    eid = existing["id"]
    if existing["indhold_hash"] == digest:  # a replay: applied once already
        return await _stored_response(conn, eid, 200)
    _check_if_match(existing, expected, eid)
    _check_editable(existing, up)
    if not writable:
        raise forbidden("the inspection is another inspector's; you may see it but not "
                        "change it", field="eftersyn_id")
    try:
        cur = await conn.execute(
            "UPDATE ly.eftersyn SET status = %s, svar = %s, rum = %s, kampagne_id = %s, "
            "position = ST_GeomFromEWKT(%s), position_tid = %s, indhold_hash = %s, "
            "tjekliste_kode = %s, tjekliste_version = %s WHERE id = %s",
            [up["status"], orjson.dumps(up["svar"]).decode(), orjson.dumps(up["rum"]).decode(),
             up["kampagne_id"], up["position"], up["position_tid"], digest, up["template"].kode,
             up["template"].version, eid])
    except psycopg.errors.InsufficientPrivilege:
        raise _outside_scope("status", "status") from None
    if cur.rowcount != 1:  # locked above, so only row-level security could skip it
        raise _outside_scope("eftersyn_id", "eftersyn_id")
    return await _stored_response(conn, eid, 200)


def _check_editable(existing: dict, up: dict) -> None:
    now = f"version {existing['version']}"
    if existing["status"] in ("godkendt", "indberettet"):
        raise Problem(409, f"the inspection has been approved ({now}, {existing['status']}) "
                      "and can no longer be edited", kind="conflict",
                      errors=[{"field": "status", "detail": f"{existing['status']} ({now})"}],
                      headers={"ETag": _etag(existing)})
    if existing["status"] == "indsendt":
        raise Problem(409, f"the inspection has been submitted ({now}) and awaits approval; "
                      "it cannot be changed until it is rejected", kind="conflict",
                      errors=[{"field": "status", "detail": f"indsendt ({now})"}],
                      headers={"ETag": _etag(existing)})
    if existing["objekt_id"] != up["objekt_id"]:
        raise Problem(409, "objekt_id: an inspection cannot move to another shelter",
                      kind="conflict", errors=[{"field": "objekt_id", "detail": "differs"}],
                      headers={"ETag": _etag(existing)})


# --- photos ---

#: The most pixels a photo may have: a 50-megapixel phone camera's photo is accepted, well
#: under Pillow's decompression-bomb limit (~179 MP), since a small file can declare a huge
#: image (a 21 KB PNG of 13000 × 13000 pixels decodes to half a gigabyte).
MAX_PHOTO_PIXELS = 60_000_000
#: Photos decoded at once (each decode takes up to a few hundred MB), in worker threads.
_DECODES = threading.BoundedSemaphore(2)


def _unreadable(content_type: str, why: str) -> Problem:
    return Problem(415, f"body: not a readable {content_type} image ({why})",
                   kind="unsupported-media-type",
                   errors=[{"field": "body", "detail": "not a readable image"}])


def _image_facts(data: bytes, content_type: str) -> tuple[int, int, bytes]:
    """(width, height, thumbnail JPEG) of an image whose bytes match its content type. Its
    size is read from the header and checked before anything is decoded; a JPEG is decoded
    at the smallest scale that still gives the thumbnail (libjpeg's DCT scaling). Blocking:
    run it in a worker thread."""
    fmt = PHOTO_TYPES[content_type]
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as probe:  # reads the header only
            width, height = probe.size
            if width * height > MAX_PHOTO_PIXELS:
                raise Problem(413, f"body: a photo may have at most {MAX_PHOTO_PIXELS} pixels "
                              f"(this one is {width} × {height})", kind="too-large",
                              errors=[{"field": "body", "detail": f"at most {MAX_PHOTO_PIXELS}"
                                                                  " pixels"}])
            probe.verify()
        with _DECODES, Image.open(io.BytesIO(data), formats=[fmt]) as img:
            if fmt == "JPEG":
                img.draft("RGB", (THUMBNAIL_PX, THUMBNAIL_PX))
            if img.mode not in ("RGB", "RGBA", "L", "LA", "CMYK"):
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            img.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            out = io.BytesIO()
            img.convert("RGB").save(out, "JPEG", quality=80)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError) as exc:
        raise _unreadable(content_type, str(exc)) from None
    return width, height, out.getvalue()


async def _read_photo(request: Request) -> tuple[str, bytes]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in PHOTO_TYPES:
        raise Problem(415, "Content-Type must be image/jpeg or image/png",
                      kind="unsupported-media-type",
                      errors=[{"field": "Content-Type", "detail": f"{ctype or 'none'} given"}])
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_PHOTO_BYTES:
        raise _photo_too_large()
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_PHOTO_BYTES:
            raise _photo_too_large()
    if not data:
        raise Problem(422, "body: the photo is empty", kind="invalid-photo",
                      errors=[{"field": "body", "detail": "empty"}])
    return ctype, bytes(data)


def _photo_too_large() -> Problem:
    return Problem(413, f"body: a photo may be at most {MAX_PHOTO_BYTES} bytes",
                   kind="too-large", errors=[{"field": "body", "detail": "too large"}])


@router.put("/eftersyn/{eftersyn_id}/fotos/{foto_id}", summary="Upload et foto (idempotent)",
            response_class=Response,
            responses={200: {"description": "The same photo again"},
                       201: {"description": "Stored"},
                       403: {"description": "Not yours to add photos to"},
                       404: {"description": "No inspection"},
                       409: {"description": "Another photo under this id, or the inspection "
                                            "is approved"},
                       413: {"description": "Too many bytes or pixels"},
                       415: {"description": "Not a JPEG or PNG image"},
                       422: {"description": "Unknown item or room"}})
async def upload_photo(request: Request, eftersyn_id: str, foto_id: str,
                       punkt: str | None = Query(None, description="Checklist item id"),
                       rum: int | None = Query(None, description="Room number (1-4)")) -> Response:
    params.check_known(request, {"punkt", "rum"})
    await _writer(request)
    eid = params.parse_uuid(eftersyn_id, "eftersyn_id")
    fid = params.parse_uuid(foto_id, "foto_id")
    ctype, data = await _read_photo(request)
    digest = hashlib.sha256(data).hexdigest()
    target = (eid, punkt, rum, digest)
    async with acting(request) as conn:
        e = await _load_or_404(conn, eid)
        template = checklist.load_templates()[(e["tjekliste_kode"], e["tjekliste_version"])]
        _check_photo_target(template, punkt, rum)
        stored = await _stored_photo(conn, fid)
        if stored is not None:
            return _photo_again(stored, target)
        _check_takes_photos(e)
    # decoded outside the transaction (no connection is held meanwhile), off the event loop
    width, height, thumb = await run_in_threadpool(_image_facts, data, ctype)
    async with acting(request) as conn:
        try:
            async with conn.transaction():
                cur = await conn.execute(
                    "INSERT INTO ly.eftersyn_foto (id, eftersyn_id, punkt, rum, content_type, "
                    "stoerrelse, sha256, bredde, hoejde, data, miniature) VALUES "
                    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                    [fid, eid, punkt, rum, ctype, len(data), digest, width, height, data, thumb])
        except psycopg.errors.InsufficientPrivilege:  # the inspection changed meanwhile
            _check_takes_photos(await _load_or_404(conn, eid))
            raise forbidden("eftersyn_id: you may not add photos to this inspection",
                            field="eftersyn_id") from None
        if cur.rowcount == 0:  # a concurrent upload under this id came first
            stored = await _stored_photo(conn, fid)
            if stored is None:
                raise _photo_id_taken()
            return _photo_again(stored, target)
    return json_response({"id": str(fid), "sha256": digest, "bredde": width, "hoejde": height},
                         status=201)


async def _stored_photo(conn, foto_id: UUID) -> dict | None:
    cur = await conn.execute("SELECT id, eftersyn_id, punkt, rum, sha256, bredde, hoejde "
                             "FROM ly.eftersyn_foto WHERE id = %s", [foto_id])
    row = await cur.fetchone()
    return dict(zip([d.name for d in cur.description], row)) if row else None


def _photo_again(stored: dict, target: tuple) -> Response:
    """200 for the photo stored as sent (a replay); 409 for another one under its id."""
    if (stored["eftersyn_id"], stored["punkt"], stored["rum"], stored["sha256"]) != target:
        raise _photo_id_taken()
    return json_response({"id": str(stored["id"]), "sha256": stored["sha256"],
                          "bredde": stored["bredde"], "hoejde": stored["hoejde"]})


def _photo_id_taken() -> Problem:
    return Problem(409, "foto_id: another photo is stored under this id", kind="conflict",
                   errors=[{"field": "foto_id", "detail": "in use"}])


def _check_takes_photos(e: dict) -> None:
    if e["status"] in ("godkendt", "indberettet"):
        raise Problem(409, "an approved inspection cannot get new photos", kind="conflict",
                      errors=[{"field": "status", "detail": e["status"]}])


def _check_photo_target(template: checklist.Template, punkt: str | None, rum: int | None):
    if rum is not None and not 1 <= rum <= max(template.rooms_max, 0):
        raise invalid(Invalid([RuleProblem("rum", f"must be 1–{template.rooms_max}")]))
    items = template.room_by_id if rum is not None else template.by_id
    if punkt is not None and punkt not in items:
        raise invalid(Invalid([RuleProblem("punkt", f"{punkt!r} is not an item of "
                                                    f"{template.kode}")]))


@router.get("/eftersyn/{eftersyn_id}/fotos/{foto_id}", summary="Et foto (eller dets miniature)",
            response_class=Response, responses={404: {"description": "Not found"}})
async def photo(request: Request, eftersyn_id: str, foto_id: str,
                miniature: bool = Query(False)) -> Response:
    params.check_known(request, {"miniature"})
    await _signed_in(request)
    eid = params.parse_uuid(eftersyn_id, "eftersyn_id")
    fid = params.parse_uuid(foto_id, "foto_id")
    async with acting(request) as conn:
        cur = await conn.execute(
            "SELECT content_type, data, miniature FROM ly.eftersyn_foto "
            "WHERE id = %s AND eftersyn_id = %s", [fid, eid])
        row = await cur.fetchone()
    if row is None:
        raise not_found(f"Fotoet {foto_id}")
    ctype, data, thumb = row
    if miniature:
        return Response(bytes(thumb), media_type="image/jpeg")
    return Response(bytes(data), media_type=ctype)


# --- reading inspections ---

@router.get("/eftersyn/{eftersyn_id}", summary="Ét eftersyn", response_class=Response,
            responses={404: {"description": "Not found"}})
async def inspection(request: Request, eftersyn_id: str) -> Response:
    params.check_known(request, set())
    await _signed_in(request)
    eid = params.parse_uuid(eftersyn_id, "eftersyn_id")
    async with acting(request) as conn:
        e = await _load_or_404(conn, eid)
        photos = await _photos(conn, eid)
        cur = await conn.execute(
            "SELECT id, punkt, rum, grad, kritisk, beskrivelse, ansvarlig, frist, status "
            "FROM ly.mangel WHERE eftersyn_id = %s ORDER BY grad DESC, punkt", [eid])
        names = [d.name for d in cur.description]
        deficiencies = [_jsonable(dict(zip(names, r))) for r in await cur.fetchall()]
    out = _public_form(e, photos)
    out["mangler"] = deficiencies
    return json_response(out, headers={"ETag": f'"{e["version"]}"'})


def _jsonable(row: dict) -> dict:
    return {k: (str(v) if isinstance(v, UUID) else v.isoformat() if isinstance(
        v, (date, datetime)) else v) for k, v in row.items()}


@router.get("/eftersyn", summary="De eftersyn du kan se", response_class=Response)
async def inspections(request: Request, status: str | None = Query(None),
                      kampagne: str | None = Query(None),
                      objekt_id: str | None = Query(None)) -> Response:
    params.check_known(request, {"status", "kampagne", "objekt_id"})
    await _signed_in(request)
    where, args = equality_filters(
        status=status, kampagne_id=params.parse_uuid(kampagne, "kampagne"),
        objekt_id=params.parse_uuid(objekt_id, "objekt_id"))
    async with acting(request) as conn:
        cur = await conn.execute(
            f"SELECT {_COLUMNS} FROM ly.eftersyn WHERE {where} "
            "ORDER BY oprettet DESC LIMIT 10000", args)
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, r)) for r in await cur.fetchall()]
    return json_response({"eftersyn": [_public_form(r) for r in rows]})


# --- approval and rejection ---

async def _lock_for(conn, eid: UUID, status: str, action: str) -> dict:
    """The inspection, locked for an administrator's step from `status`: 404 when the actor
    does not see it, 409 when it is not (or no longer) in `status`, 403 when the actor sees
    it but may not change it. Concurrent steps wait for each other; the later one sees the
    earlier one's outcome and answers 409."""
    e, writable = await _lock(conn, eid)
    if e is None:
        raise not_found(f"Eftersynet {eid}")
    if e["status"] != status:
        what = {"indsendt": "a submitted", "godkendt": "an approved"}[status]
        raise Problem(409, f"only {what} inspection can be {action} (this one is "
                      f"{e['status']}, version {e['version']})", kind="conflict",
                      errors=[{"field": "status", "detail": e["status"]}],
                      headers={"ETag": _etag(e)})
    if not writable:
        raise _outside_scope("eftersyn_id", "eftersyn_id")
    return e


def _class_text(kode: int) -> str:
    from datamodel.codelists import load_codelists

    return load_codelists()["d_ly_egnethed"].text(kode) or str(kode)


@router.post("/eftersyn/{eftersyn_id}/godkend", summary="Godkend et indsendt eftersyn",
             response_class=Response,
             responses={200: {"description": "Approved: classification, deficiencies and the "
                                             "shelter's new version"},
                        403: {"description": "Not an administrator of the shelter"},
                        404: {"description": "Not found"},
                        409: {"description": "Not (or no longer) submitted"}})
async def approve(request: Request, eftersyn_id: str) -> Response:
    params.check_known(request, set())
    actor = await _approver(request)
    eid = params.parse_uuid(eftersyn_id, "eftersyn_id")
    async with acting(request) as conn:
        e = await _lock_for(conn, eid, "indsendt", "approved")
        template = checklist.load_templates()[(e["tjekliste_kode"], e["tjekliste_version"])]
        result = checklist.assess(template, e["svar"], e["rum"])
        today = datetime.now(timezone.utc).date()
        done = e["svar"].get("udfoert_dato") or today.isoformat()
        # The shelter's new version waits for its other writers (lock_object) before the
        # open deficiencies are read, so the classification sees what they committed.
        await lock_object(conn, THEME, e["objekt_id"])
        klass = cap_by_open_deficiencies(result.egnethed_kode, [
            *await _open_deficiencies(conn, e["objekt_id"]),
            *(OpenDeficiency(f.grade, f.item, f.room) for f in result.findings)])
        result = dataclasses.replace(result, egnethed_kode=klass.egnethed_kode)
        shelter_version = await _update_shelter(conn, e, result, template, done, eid,
                                                klass.reason)
        if shelter_version is None:
            raise forbidden("the shelter is outside your register", field="objekt_id")
        try:
            for f in result.findings:
                await conn.execute(
                    "INSERT INTO ly.mangel (eftersyn_id, objekt_id, punkt, rum, grad, kritisk, "
                    "beskrivelse, ansvarlig, frist, cvr_kode, beliggenhedskommune) VALUES "
                    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [eid, e["objekt_id"], f.item, f.room, f.grade, f.critical, f.text[:500],
                     f.responsible, today + timedelta(days=checklist.DEADLINE_DAYS[f.grade]),
                     e["cvr_kode"], e["beliggenhedskommune"]])
            cur = await conn.execute(
                "UPDATE ly.eftersyn SET status = 'godkendt', godkendt_af = %s, "
                "godkendt_tid = now(), egnethed_kode = %s, pladser = %s, "
                "beskyttelsesrum_versions_id = %s WHERE id = %s",
                [actor.name or actor.subject, result.egnethed_kode, result.places,
                 shelter_version, eid])
        except psycopg.errors.InsufficientPrivilege:
            raise _outside_scope("eftersyn_id", "eftersyn_id") from None
        if cur.rowcount != 1:
            raise _outside_scope("eftersyn_id", "eftersyn_id")
        await conn.execute("SELECT ly.audit('godkend', 'eftersyn', %s, NULL, %s, %s)",
                           [e["objekt_id"], shelter_version,
                            json.dumps({"eftersyn": str(eid),
                                        "egnethed_kode": result.egnethed_kode,
                                        "egnethed_begrundelse": klass.reason})])
    return json_response({
        "id": str(eid), "status": "godkendt", "egnethed_kode": result.egnethed_kode,
        "egnethed": _class_text(result.egnethed_kode), "egnethed_begrundelse": klass.reason,
        "pladser": result.places,
        "beskyttelsesrum_versions_id": str(shelter_version),
        "mangler": [{"punkt": f.item, "rum": f.room, "grad": f.grade, "kritisk": f.critical,
                     "ansvarlig": f.responsible, "beskrivelse": f.text}
                    for f in result.findings]})


async def _open_deficiencies(conn, objekt_id: UUID) -> list[OpenDeficiency]:
    """The shelter's deficiencies from earlier inspections that are still open with a grade
    that caps the classification (datamodel.checklist.cap_by_open_deficiencies)."""
    cur = await conn.execute(
        "SELECT grad, punkt, rum, eftersyn_id, status FROM ly.mangel WHERE objekt_id = %s "
        "AND status = ANY(%s) AND grad = ANY(%s) ORDER BY oprettet, id",
        [objekt_id, list(OPEN_DEFICIENCY_STATUSES), list(CAPPING_GRADES)])
    return [OpenDeficiency(g.strip(), p, r, i, st) for g, p, r, i, st in await cur.fetchall()]


def _reason_text(eid: UUID, kode: int, reason: str | None) -> str:
    """The shelter version's `aendringsaarsag` (at most 254 characters)."""
    text = f"Eftersyn {eid} godkendt: {_class_text(kode)}" + (f" ({reason})" if reason else "")
    limit = THEME.fields_by_name["aendringsaarsag"].max_length or len(text)
    return text if len(text) <= limit else text[:limit - 2] + "…)"


async def _update_shelter(conn, e: dict, result: checklist.Assessment,
                          template: checklist.Template, done: str, eid: UUID,
                          reason: str | None = None):
    """The shelter's new version: verified places, condition, inspection dates and the
    inspection (and why its class is capped, if it is) as the reason. Returns the new
    versions_id, or None when not allowed."""
    done_date = date.fromisoformat(done)
    try:
        next_date = done_date.replace(year=done_date.year + template.interval_years)
    except ValueError:  # 29 February
        next_date = done_date.replace(year=done_date.year + template.interval_years, day=28)
    assessed = result.egnethed_kode != checklist.IKKE_VURDERET
    # The shelter's new version is a write like the API's: it waits for the writers of the
    # shelter under way, and they for it (service.db.lock_object).
    await lock_object(conn, THEME, e["objekt_id"])
    cur = await conn.execute(sql.SQL(
        "SELECT ly.may_edit(cvr_kode, beliggenhedskommune) FROM {} WHERE objekt_id = %s"
    ).format(_CURRENT), [e["objekt_id"]])
    row = await cur.fetchone()
    if row is None or not row[0]:
        return None
    cur = await conn.execute(sql.SQL(
        "UPDATE {} SET egnethed_kode = %s, "
        "pladser_verificeret = CASE WHEN %s THEN %s ELSE pladser_verificeret END, "
        "pladser_kilde_kode = CASE WHEN %s AND %s IS NOT NULL THEN 3 ELSE pladser_kilde_kode END,"
        " seneste_eftersyn_dato = %s, naeste_eftersyn_dato = %s, seneste_eftersyn_id = %s, "
        "aendringsaarsag = %s WHERE objekt_id = %s RETURNING versions_id").format(_CURRENT),
        [result.egnethed_kode, assessed, result.places, assessed, result.places, done_date,
         next_date, eid, _reason_text(eid, result.egnethed_kode, reason),
         e["objekt_id"]])
    row = await cur.fetchone()
    return row[0] if row else None


@router.post("/eftersyn/{eftersyn_id}/afvis", summary="Afvis et indsendt eftersyn",
             response_class=Response,
             responses={200: {"description": "Rejected; the inspector may correct it"},
                        403: {"description": "Not an administrator of the shelter"},
                        404: {"description": "Not found"},
                        409: {"description": "Not (or no longer) submitted"},
                        422: {"description": "A reason is required"}})
async def reject(request: Request, eftersyn_id: str) -> Response:
    params.check_known(request, set())
    await _approver(request)
    eid = params.parse_uuid(eftersyn_id, "eftersyn_id")
    body = await read_json(request, ("application/json",))
    reason = body.get("begrundelse") if isinstance(body, dict) else None
    if not isinstance(reason, str) or not 3 <= len(reason.strip()) <= 1000:
        raise invalid(Invalid([RuleProblem("begrundelse", "a reason of 3–1000 characters is "
                                                          "required")]))
    async with acting(request) as conn:
        e = await _lock_for(conn, eid, "indsendt", "rejected")
        cur = await conn.execute(
            "UPDATE ly.eftersyn SET status = 'afvist', afvist_begrundelse = %s, "
            "indhold_hash = NULL WHERE id = %s", [reason.strip(), eid])
        if cur.rowcount != 1:
            raise _outside_scope("eftersyn_id", "eftersyn_id")
        await conn.execute("SELECT ly.audit('afvis', 'eftersyn', %s, NULL, NULL, %s)",
                           [e["objekt_id"], json.dumps({"eftersyn": str(eid),
                                                        "begrundelse": reason.strip()})])
    return json_response({"id": str(eid), "status": "afvist", "begrundelse": reason.strip()})


# --- GeoFA 6122 ---

async def _feature_6122(conn, e: dict) -> dict:
    template = checklist.load_templates()[(e["tjekliste_kode"], e["tjekliste_version"])]
    if template.geofa_theme != 6122:
        raise Problem(409, f"the {template.kode} checklist has no GeoFA 6122 form",
                      kind="conflict")
    cur = await conn.execute(sql.SQL(
        "SELECT row_to_json(t)::jsonb - 'geometri', ST_X(t.geometri), ST_Y(t.geometri), "
        "(SELECT tekst FROM ly.d_basis_oprindelse WHERE kode = 7), "
        "(SELECT tekst FROM ly.d_basis_status WHERE kode = 3), "
        "(SELECT tekst FROM ly.d_basis_offentlig WHERE kode = 3) "
        "FROM {} t WHERE t.objekt_id = %s "
        "ORDER BY (t.versions_id = %s) DESC, t.systid_fra DESC LIMIT 1").format(_HISTORY),
        [e["objekt_id"], e["beskyttelsesrum_versions_id"]])
    row = await cur.fetchone()
    if row is None:
        raise not_found(f"Beskyttelsesrummet {e['objekt_id']}")
    shelter, x, y, oprindelse, status, offentlig = row
    shelter.update({"x": x, "y": y})
    data = {"id": str(e["id"]), "versions_id": str(e["beskyttelsesrum_versions_id"] or e["id"]),
            "systid_fra": e["opdateret"].isoformat(), "oprettet": e["oprettet"].isoformat(),
            "bruger_id": e["inspektoer"][:128], "svar": e["svar"], "rum": e["rum"],
            "godkendt_af": (e["godkendt_af"] or "")[:50] or None,
            "godkendt_dato": e["godkendt_tid"].date().isoformat() if e["godkendt_tid"] else None}
    return checklist.to_6122(template, data, shelter, {
        "cvr_navn": shelter.get("cvr_navn"), "oprindelse": oprindelse, "status": status,
        "offentlig": offentlig})


#: GeoJSON's legacy `crs` member (GeoJSON 2008), which GDAL and QGIS read: RFC 7946 GeoJSON
#: is CRS84 only, so a file without it is read as longitude/latitude.
_STORAGE_CRS_MEMBER = {"type": "name",
                       "properties": {"name": f"urn:ogc:def:crs:EPSG::{crsmod.STORAGE.srid}"}}


def _declaring_crs(feature: dict) -> dict:
    """The 6122 feature (EPSG:25832 coordinates, as GeoFA exchanges them) naming its CRS."""
    return {"type": feature["type"], "crs": _STORAGE_CRS_MEMBER,
            **{k: v for k, v in feature.items() if k != "type"}}


@router.get("/eftersyn/{eftersyn_id}/6122", summary="Eftersynet som GeoFA 6122-objekt",
            response_class=Response,
            responses={200: {"content": {"application/geo+json": {}}},
                       409: {"description": "Not approved, or not a 6122 checklist"}})
async def export_6122(request: Request, eftersyn_id: str) -> Response:
    params.check_known(request, set())
    await _signed_in(request)
    eid = params.parse_uuid(eftersyn_id, "eftersyn_id")
    async with acting(request) as conn:
        e = await _load_or_404(conn, eid)
        if e["status"] not in ("godkendt", "indberettet"):
            raise Problem(409, "only an approved inspection is reported to GeoFA",
                          kind="conflict", errors=[{"field": "status", "detail": e["status"]}])
        feature = await _feature_6122(conn, e)
    problems = checklist.validate_6122(feature)
    if problems:  # Ly's own export must always satisfy GeoFA; say so loudly if not
        raise Problem(500, "the 6122 export does not validate: " + "; ".join(
            f"{p.field}: {p.detail}" for p in problems[:5]), kind="export-invalid")
    return Response(orjson.dumps(_declaring_crs(feature)), media_type="application/geo+json",
                    headers={"Content-Crs": crsmod.header(crsmod.STORAGE)})


@router.post("/eftersyn/{eftersyn_id}/indberet", summary="Markér som indberettet til GeoFA",
             response_class=Response,
             responses={200: {"description": "Reported"},
                        403: {"description": "Not an administrator of the shelter"},
                        404: {"description": "Not found"},
                        409: {"description": "Not (or no longer) approved"}})
async def mark_reported(request: Request, eftersyn_id: str) -> Response:
    params.check_known(request, set())
    await _approver(request)
    eid = params.parse_uuid(eftersyn_id, "eftersyn_id")
    async with acting(request) as conn:
        await _lock_for(conn, eid, "godkendt", "reported")
        cur = await conn.execute("UPDATE ly.eftersyn SET status = 'indberettet', "
                                 "indberettet_tid = now() WHERE id = %s", [eid])
        if cur.rowcount != 1:
            raise _outside_scope("eftersyn_id", "eftersyn_id")
    return json_response({"id": str(eid), "status": "indberettet"})


@router.post("/eftersyn/6122", summary="Indlæs GeoFA 6122-objekter som indsendte eftersyn",
             status_code=201, response_class=Response,
             responses={201: {"description": "Imported (`oprettet` false: imported before)"},
                        403: {"description": "A shelter you may not record inspections of"},
                        404: {"description": "No such shelter"},
                        409: {"description": "Another inspection under a feature's id"},
                        422: {"description": "A feature breaks GeoFA's rules or the checklist"}})
async def import_6122(request: Request) -> Response:
    params.check_known(request, set())
    await _writer(request)
    body = await read_json(request, ("application/geo+json", "application/json"))
    features = body.get("features") if isinstance(body, dict) and body.get(
        "type") == "FeatureCollection" else [body]
    if not isinstance(features, list) or not features:
        raise bad_request("body", "must be a 6122 Feature or FeatureCollection")
    template = checklist.latest("bdg-6122")
    problems: list[RuleProblem] = []
    parsed = []
    for n, feature in enumerate(features):
        for p in checklist.validate_6122(feature):
            problems.append(RuleProblem(f"features[{n}].{p.field}", p.detail))
        if problems:
            continue
        props = feature["properties"]
        svar, rum = checklist.from_6122(template, feature)
        try:
            svar, rum = checklist.validate_answers(template, svar, rum, submit=True)
            parsed.append((UUID(str(props["objekt_id"])), UUID(str(props["noegle"])), svar, rum))
        except (Invalid, ValueError, TypeError) as exc:
            for p in getattr(exc, "problems", [RuleProblem("noegle", "must be Ly's objekt_id")]):
                problems.append(RuleProblem(f"features[{n}].{p.field}", p.detail))
    if problems:
        raise invalid(Invalid(problems))
    created = []
    async with acting(request) as conn:
        for n, (eid, shelter_id, svar, rum) in enumerate(parsed):
            field = f"features[{n}].properties"
            cur = await conn.execute(sql.SQL(
                "SELECT cvr_kode, beliggenhedskommune FROM {} WHERE objekt_id = %s"
            ).format(_CURRENT), [shelter_id])
            shelter = await cur.fetchone()
            if shelter is None:
                raise Problem(404, f"{field}.noegle: the shelter {shelter_id} does not exist",
                              kind="not-found",
                              errors=[{"field": f"{field}.noegle", "detail": "no such shelter"}])
            try:
                cur = await conn.execute(
                    "INSERT INTO ly.eftersyn (id, objekt_id, tjekliste_kode, tjekliste_version, "
                    "status, svar, rum, cvr_kode, beliggenhedskommune) VALUES "
                    "(%s, %s, %s, %s, 'indsendt', %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                    [eid, shelter_id, template.kode, template.version,
                     orjson.dumps(svar).decode(), orjson.dumps(rum).decode(), shelter[0],
                     shelter[1]])
            except psycopg.errors.InsufficientPrivilege:
                raise forbidden(f"{field}.noegle: you may not record inspections of the shelter "
                                f"{shelter_id} (not assigned to you, or outside your "
                                "municipality)", field=f"{field}.noegle") from None
            if cur.rowcount == 0:  # stored before: a replay of the same import, or a clash
                e = await _load(conn, eid)
                if e is None or (e["objekt_id"], e["tjekliste_kode"], e["tjekliste_version"],
                                 e["svar"], e["rum"]) != (shelter_id, template.kode,
                                                          template.version, svar, rum):
                    raise Problem(409, f"{field}.objekt_id: another inspection is stored under "
                                  f"the id {eid}", kind="conflict",
                                  errors=[{"field": f"{field}.objekt_id", "detail": "in use"}])
            created.append({"id": str(eid), "objekt_id": str(shelter_id),
                            "oprettet": cur.rowcount == 1})
    return json_response({"eftersyn": created}, status=201)


# --- deficiencies ---

_TRANSITIONS = {"aaben": {"planlagt", "udbedret"}, "planlagt": {"udbedret"},
                "udbedret": {"verificeret", "aaben"}, "verificeret": set()}


@router.get("/mangler", summary="De mangler du kan se", response_class=Response)
async def deficiencies(request: Request, status: str | None = Query(None),
                       objekt_id: str | None = Query(None),
                       forfaldne: bool = Query(False, description="Only past their deadline")
                       ) -> Response:
    params.check_known(request, {"status", "objekt_id", "forfaldne"})
    await _signed_in(request)
    where, args = equality_filters(status=status,
                                   objekt_id=params.parse_uuid(objekt_id, "objekt_id"))
    if forfaldne:
        where += " AND frist < current_date AND status IN ('aaben', 'planlagt')"
    async with acting(request) as conn:
        cur = await conn.execute(
            "SELECT id, eftersyn_id, objekt_id, punkt, rum, grad, kritisk, beskrivelse, "
            f"ansvarlig, frist, status, beliggenhedskommune FROM ly.mangel WHERE {where} "
            "ORDER BY frist, id LIMIT 10000", args)
        names = [d.name for d in cur.description]
        rows = [_jsonable(dict(zip(names, r))) for r in await cur.fetchall()]
    return json_response({"mangler": rows})


@router.patch("/mangler/{mangel_id}", summary="Flyt en mangel videre (aaben → planlagt → "
              "udbedret → verificeret)", response_class=Response,
              responses={200: {"description": "Updated"},
                         403: {"description": "Visible, but not yours to change"},
                         404: {"description": "Not found"},
                         409: {"description": "Not a next status"},
                         422: {"description": "Invalid body"}})
async def update_deficiency(request: Request, mangel_id: str) -> Response:
    params.check_known(request, set())
    actor = await _signed_in(request)
    if not actor.has(*EDITING_ROLES) or not actor.may_write_level:
        raise forbidden("municipal or national editors update deficiencies")
    mid = params.parse_uuid(mangel_id, "mangel_id")
    body = await read_json(request, ("application/json", "application/merge-patch+json"))
    new = body.get("status") if isinstance(body, dict) else None
    if new not in _TRANSITIONS:
        raise invalid(Invalid([RuleProblem("status", f"must be one of "
                                                     f"{', '.join(_TRANSITIONS)}")]))
    if new == "verificeret" and not actor.has(*ADMIN_ROLES):
        raise forbidden("only administrators verify a repair", field="status")
    async with acting(request) as conn:
        cur = await conn.execute("SELECT status FROM ly.mangel WHERE id = %s FOR UPDATE", [mid])
        row = await cur.fetchone()
        writable = row is not None
        if row is None:  # row-level security locks only what the actor may change
            cur = await conn.execute("SELECT status FROM ly.mangel WHERE id = %s", [mid])
            row = await cur.fetchone()
        if row is None:
            raise not_found(f"Mangelen {mangel_id}")
        if new not in _TRANSITIONS[row[0]]:
            raise Problem(409, f"status: {row[0]} cannot become {new}", kind="conflict",
                          errors=[{"field": "status", "detail": f"from {row[0]}"}])
        if writable:
            cur = await conn.execute("UPDATE ly.mangel SET status = %s, opdateret = now(), "
                                     "opdateret_af = %s WHERE id = %s",
                                     [new, actor.subject, mid])
        if not writable or cur.rowcount != 1:
            raise forbidden("the deficiency is outside your register (you may see it but not "
                            "change it)", field="mangel_id")
    return json_response({"id": str(mid), "status": new})
