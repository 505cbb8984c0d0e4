"""Writing a theme's objects (OGC API - Features Part 4): create, replace, update, delete.

Every collection is a theme (`datamodel.themes`). A write goes through the theme's current
view (`query.current_view(theme)`), whose triggers keep GeoFA's history: a new version per
change, delete only closes the current version; the trigger derives the municipality (for
an area: `ly.as_multipolygon`, `ly.kommune_for_area`). The body is checked against the
theme's descriptor first (`datamodel.rules.validate_feature`, areas with GEOS's reason and at
most `LY_MAX_VERTICES` vertices); problems name the field (`properties.<attribute>`,
`geometry.coordinates`) and nothing is stored. `If-Match` carries the `versions_id` a
client last saw; a stale one gets 412 and changes nothing.
"""

from __future__ import annotations

import re
from uuid import UUID

import orjson
from fastapi import APIRouter, Request
from psycopg import sql
from starlette.responses import Response

from datamodel import crs as crsmod
from datamodel import query
from datamodel.access import EDITING_ROLES, Actor
from datamodel.rules import Candidate, Invalid, Problem as RuleProblem, complete, \
    validate_feature, validate_properties
from datamodel.themes import Theme
from service import allow, collection, params
from service.auth import current_actor, forbidden, unauthorized
from service.db import acting, lock_object
from service.errors import Problem, not_found
from service.features import etag
from service.http import GEOJSON, url

router = APIRouter(tags=["Redigering"])

FEATURE_TYPES = ("application/geo+json", "application/json")
PATCH_TYPES = ("application/merge-patch+json", "application/json", "application/geo+json")

_BODY_RESPONSES = {
    400: {"description": "Malformed JSON or parameter"},
    404: {"description": "No such collection or object"},
    412: {"description": "If-Match does not match the current version"},
    413: {"description": "Body too large"},
    415: {"description": "Unsupported content type"},
    422: {"description": "The feature breaks a rule; the problem names the field"},
}


async def read_json(request: Request, allowed_types: tuple[str, ...]):
    """The request body as JSON, refusing wrong media types, oversize bodies, bad JSON and
    (422, naming each) strings holding U+0000, which the database cannot store."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in allowed_types:
        raise Problem(415, f"Content-Type must be one of {', '.join(allowed_types)}",
                      kind="unsupported-media-type",
                      errors=[{"field": "Content-Type", "detail": f"{ctype or 'none'} given"}])
    limit = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"body: not valid JSON ({exc})", kind="invalid-json",
                      errors=[{"field": "body", "detail": f"not valid JSON: {exc}"}]) from None
    if b"\\u0000" in body:  # a NUL can only be written escaped in JSON
        _refuse_nul(data)
    return data


_NUL_DETAIL = "must not contain NUL characters (U+0000)"


def _refuse_nul(data) -> None:
    """422 naming every string (member name or value) of a JSON document holding U+0000:
    PostgreSQL stores no NUL in text or jsonb. Paths are dotted members and 1-based list
    positions (`svar.x`, `rum[2].y`); a NUL in a member name is shown as `\\u0000`."""
    problems: list[dict] = []
    stack: list[tuple[object, str]] = [(data, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                problems.append({"field": path or "body", "detail": _NUL_DETAIL})
        elif isinstance(node, dict):
            for key, value in node.items():
                shown = key.replace("\x00", "\\u0000")
                child = f"{path}.{shown}" if path else shown
                if "\x00" in key:
                    problems.append({"field": child, "detail": "a member name " + _NUL_DETAIL})
                stack.append((value, child))
        elif isinstance(node, list):
            stack.extend((value, f"{path or 'body'}[{n}]") for n, value in enumerate(node, 1))
    if problems:
        problems.sort(key=lambda e: e["field"])
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise Problem(422, f"{first['field']}: {first['detail']}{more}", kind="invalid-body",
                      errors=problems)


def _too_large(limit: int) -> Problem:
    return Problem(413, f"body: larger than {limit} bytes", kind="too-large",
                   errors=[{"field": "body", "detail": f"at most {limit} bytes"}])


def content_crs(request: Request) -> crsmod.Crs:
    value = request.headers.get("content-crs")
    if value is None:
        return crsmod.DEFAULT
    return params.parse_crs(value.strip().strip("<>"), "Content-Crs")


#: RFC 9110 8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E / obs-text
_ENTITY_TAG = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"')


def _malformed_if_match(detail: str) -> Problem:
    return Problem(400, f"If-Match: {detail}", kind="invalid-header",
                   errors=[{"field": "If-Match", "detail": detail}])


def if_match(request: Request) -> list[UUID] | None:
    """The versions a write is conditional on (None: unconditional, [] with `*`).

    The field is `*` or a list of entity-tags (RFC 9110 13.1.1); anything else, an empty field
    included, is a 400 naming If-Match. A well-formed tag that is weak or not one of this API's
    never matches (strong comparison): the precondition fails, 412.
    """
    values = request.headers.getlist("if-match")
    if not values:
        return None
    value = ",".join(values)
    elements = [e.strip(" \t") for e in value.split(",")]
    tags = [e for e in elements if e]  # empty list elements are ignored (RFC 9110 5.6.1.2)
    if not tags:
        raise _malformed_if_match("empty; send the ETag the object was read with, or *")
    if tags == ["*"]:
        return []
    versions = []
    never = None
    for t in tags:
        m = _ENTITY_TAG.fullmatch(t)
        if m is None:
            shown = t if len(t) <= 60 else t[:57] + "..."
            raise _malformed_if_match(f"{shown!r} is not an entity-tag (a quoted ETag such as "
                                      '"…" or *)')
        if m.group(1):
            never = never or "weak ETags never match"
            continue
        try:
            versions.append(UUID(m.group(2)))
        except ValueError:
            never = never or f"{t} is not an ETag of this API"
    if not versions:
        raise Problem(412, f"If-Match: {never}", kind="precondition-failed",
                      errors=[{"field": "If-Match", "detail": never}])
    return versions


async def require_editor(request: Request, theme: Theme) -> Actor:
    """The actor of a write: signed in (401), with an editing role and NSIS "substantial"
    or higher (403). Scope is the database's to judge."""
    actor = await current_actor(request)
    if not actor.authenticated:
        raise unauthorized("writing needs a signed-in user or an API key")
    if not actor.has(*EDITING_ROLES):
        raise forbidden(f"the role(s) {', '.join(sorted(actor.roles))} may not edit "
                        f"{theme.title.lower()}")
    if not actor.may_write_level:
        raise forbidden("writing needs NSIS assurance level substantial or high "
                        f"(this sign-in: {actor.level or 'unknown'})")
    return actor


def _assignments(theme: Theme, record: dict, cand: Candidate, bruger_id: str):
    writable = [f.name for f in theme.writable_fields]
    cols = [sql.Identifier(name) for name in writable] + [sql.Identifier("bruger_id")]
    vals: list = [record.get(name) for name in writable] + [bruger_id]
    if cand.ewkt is not None:
        # EWKT in EPSG:25832 (a point, or an area as SRID=25832;MULTIPOLYGON(...)); the view's
        # trigger makes it the theme's stored geometry.
        cols.append(sql.Identifier("geometri"))
        vals.append(cand.ewkt)
    return cols, vals


def _geom_value(col: sql.Identifier) -> sql.Composable:
    return sql.SQL("ST_GeomFromEWKT(%s)") if col == sql.Identifier("geometri") else sql.SQL("%s")


def _validate(request: Request, theme: Theme, body, in_crs: crsmod.Crs, *,
              previous: dict | None = None, partial: bool = False) -> Candidate:
    return validate_feature(body, in_crs, previous=previous, partial=partial, theme=theme,
                            max_vertices=request.app.state.settings.max_vertices)


async def _feature_response(request: Request, conn, theme: Theme, objekt_id: UUID,
                            status: int, headers: dict | None = None) -> Response:
    stmt, args = query.feature_sql(objekt_id, crsmod.DEFAULT, theme=theme)
    # The new version may lie outside what the writer can read back (e.g. off_kode 2 of
    # another authority); the write stands and the response says so without the body.
    row = await (await conn.execute(stmt, args)).fetchone()
    out = dict(headers or {})
    if row is None:
        return Response(status_code=204 if status == 200 else status, headers=out)
    feature_json, versions_id = row
    out.update({"ETag": etag(versions_id), "Content-Crs": crsmod.header(crsmod.DEFAULT)})
    return Response(feature_json, status_code=status, media_type=GEOJSON, headers=out)


@router.post("/collections/{collection_id}/items", status_code=201, response_class=Response,
             summary="Opret et objekt",
             responses={201: {"description": "Created; Location names the new object"},
                        **_BODY_RESPONSES})
async def create(request: Request, collection_id: str) -> Response:
    theme = params.theme_of(collection_id)
    params.check_known(request, set())
    actor = await require_editor(request, theme)
    body = await read_json(request, FEATURE_TYPES)
    cand = _validate(request, theme, body, content_crs(request))
    cols, vals = _assignments(theme, cand.record, cand, actor.subject)
    stmt = sql.SQL("INSERT INTO {view} ({cols}) VALUES ({vals}) RETURNING objekt_id").format(
        view=query.current_view(theme),
        cols=sql.SQL(", ").join(cols),
        vals=sql.SQL(", ").join(_geom_value(c) for c in cols),
    )
    async with acting(request) as conn:
        objekt_id = (await (await conn.execute(stmt, vals)).fetchone())[0]
        location = url(request, collection.path(theme, "items", str(objekt_id)))
        return await _feature_response(request, conn, theme, objekt_id, 201,
                                       {"Location": location})


async def _current(conn, theme: Theme, objekt_id: UUID) -> dict | None:
    """The current version's stored values (JSON types) as the actor may see them, with
    `_may_edit` telling whether the actor may change it and `_later` whether it was written
    after this transaction began (its versions are stamped with the transaction's start, so it
    could not close that version); None when hidden or absent."""
    cur = await conn.execute(
        sql.SQL("SELECT row_to_json(t), ly.may_edit(t.cvr_kode, t.beliggenhedskommune), "
                "t.systid_fra > now() FROM {} t WHERE objekt_id = %s").format(
            query.current_view(theme)),
        [objekt_id])
    row = await cur.fetchone()
    if row is None:
        return None
    return {**row[0], "_may_edit": row[1], "_later": row[2]}


class _Closed(Exception):
    """The version a write's statement was to close had been closed by another writer."""


class _Later(Exception):
    """The current version was made after this transaction began."""


#: Transactions a write may take before giving up (each retry follows another writer's commit).
_ATTEMPTS = 8


async def _serialised(request: Request, theme: Theme, objekt_id: UUID, feature_id: str,
                      expected: list[UUID] | None, write):
    """Run `write(conn, current)` on the object's current version, in a transaction holding
    the object's lock, after the preconditions (404, 403, 412).

    Versions are stamped with their transaction's start, so a version made after this
    transaction began (by a writer that held the lock first) cannot be closed by it: the
    transaction is begun again. `write` raises `_Closed` when its statement found the version
    closed by a writer that does not take the lock; without If-Match the write is then made
    again on the new version, with If-Match that is a 412.
    """
    for _ in range(_ATTEMPTS):
        try:
            async with acting(request) as conn:
                await lock_object(conn, theme, objekt_id)
                current = await _current(conn, theme, objekt_id)
                _check_precondition(theme, current, expected, feature_id)
                if current["_later"]:
                    raise _Later
                return await write(conn, current)
        except _Later:
            continue
        except _Closed:
            if expected is not None:
                raise Problem(412, f"If-Match: {theme.singular} blev ændret mens denne "
                              "skrivning blev udført", kind="precondition-failed",
                              errors=[{"field": "If-Match", "detail": "concurrent change"}]
                              ) from None
    raise Problem(503, f"{theme.singular} ændres af mange samtidigt; prøv igen",
                  kind="busy", headers={"Retry-After": "1"})


def _check_precondition(theme: Theme, current: dict | None, expected: list[UUID] | None,
                        feature_id: str):
    """404 for what the actor cannot see, 403 for what it sees but may not change, 412 for a
    stale If-Match."""
    what = theme.singular.capitalize()
    if current is None:
        if expected is not None:
            raise Problem(412, f"If-Match: {what} {feature_id} findes ikke",
                          kind="precondition-failed",
                          errors=[{"field": "If-Match", "detail": "no current version"}])
        raise not_found(f"{what} {feature_id}")
    if not current["_may_edit"]:
        raise forbidden(f"{theme.singular} hører til en anden myndigheds register")
    if expected and UUID(current["versions_id"]) not in expected:
        raise Problem(412, f"If-Match: {theme.singular} er ændret siden den version blev læst",
                      kind="precondition-failed",
                      errors=[{"field": "If-Match",
                               "detail": f"the current ETag is {etag(current['versions_id'])}"}],
                      headers={"ETag": etag(current["versions_id"])})


async def _write_version(request: Request, theme: Theme, feature_id: str, body, *,
                         partial: bool) -> Response:
    """Write a new version of an object: PUT (`partial` False) or merge patch (True).

    The body is validated against the current version, so an inactive code the object already
    has stays valid when it is sent back unchanged.
    """
    actor = await require_editor(request, theme)
    objekt_id = params.parse_uuid(feature_id, "featureId")
    expected = if_match(request)
    in_crs = content_crs(request)

    async def write(conn, current: dict) -> Response:
        cand = _validate(request, theme, body, in_crs, previous=current, partial=partial)
        record = _merge(theme, current, body.get("properties") or {}) if partial \
            else cand.record
        cols, vals = _assignments(theme, record, cand, actor.subject)
        sets = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(c, _geom_value(c)) for c in cols
        )
        stmt = sql.SQL(
            "UPDATE {view} SET {sets} WHERE objekt_id = %s AND versions_id = %s "
            "RETURNING versions_id"
        ).format(view=query.current_view(theme), sets=sets)
        row = await (await conn.execute(stmt, vals + [objekt_id, current["versions_id"]])
                     ).fetchone()
        if row is None:  # closed meanwhile by a writer that does not take the lock
            raise _Closed
        return await _feature_response(request, conn, theme, objekt_id, 200)

    return await _serialised(request, theme, objekt_id, feature_id, expected, write)


def _merge(theme: Theme, current: dict, patch_props: dict) -> dict:
    """RFC 7396 merge of a patch's properties into the current version, validated whole."""
    problems: list[RuleProblem] = []
    base = {f.name: current.get(f.name) for f in theme.writable_fields}
    merged_input = {**base, **patch_props}
    values = validate_properties(merged_input, problems, previous=current, theme=theme)
    record = complete(values, problems, theme=theme)
    if problems:
        raise Invalid(problems)
    return record


@router.put("/collections/{collection_id}/items/{featureId}", response_class=Response,
            summary="Erstat et objekt (ny version)",
            responses={200: {"description": "Replaced; ETag is the new version"},
                       **_BODY_RESPONSES})
async def replace(request: Request, collection_id: str, featureId: str) -> Response:
    theme = params.theme_of(collection_id)
    params.check_known(request, set())
    body = await read_json(request, FEATURE_TYPES)
    return await _write_version(request, theme, featureId, body, partial=False)


@router.patch("/collections/{collection_id}/items/{featureId}", response_class=Response,
              summary="Opdater et objekt (JSON merge patch, ny version)",
              responses={200: {"description": "Updated; ETag is the new version"},
                         **_BODY_RESPONSES})
async def update(request: Request, collection_id: str, featureId: str) -> Response:
    theme = params.theme_of(collection_id)
    params.check_known(request, set())
    body = await read_json(request, PATCH_TYPES)
    return await _write_version(request, theme, featureId, body, partial=True)


@router.delete("/collections/{collection_id}/items/{featureId}", status_code=204,
               response_class=Response, summary="Afslut et objekt (historikken bevares)",
               responses={204: {"description": "Ended"},
                          404: {"description": "No such collection or object"},
                          412: {"description": "If-Match does not match"}})
async def delete(request: Request, collection_id: str, featureId: str) -> Response:
    theme = params.theme_of(collection_id)
    params.check_known(request, set())
    await require_editor(request, theme)
    objekt_id = params.parse_uuid(featureId, "featureId")
    expected = if_match(request)

    async def write(conn, current: dict) -> None:
        cur = await conn.execute(
            sql.SQL("DELETE FROM {} WHERE objekt_id = %s AND versions_id = %s").format(
                query.current_view(theme)), [objekt_id, current["versions_id"]])
        if cur.rowcount == 0:
            raise _Closed

    await _serialised(request, theme, objekt_id, featureId, expected, write)
    return Response(status_code=204)


@router.options("/collections/{collection_id}/items", include_in_schema=True,
                summary="Tilladte metoder", responses={200: {"description": "Allow header"}})
async def items_options(request: Request, collection_id: str) -> Response:
    params.theme_of(collection_id)
    return Response(status_code=200, headers={"Allow": allow.header(request)})


@router.options("/collections/{collection_id}/items/{featureId}", include_in_schema=True,
                summary="Tilladte metoder", responses={200: {"description": "Allow header"}})
async def item_options(request: Request, collection_id: str, featureId: str) -> Response:
    params.theme_of(collection_id)
    return Response(status_code=200, headers={"Allow": allow.header(request)})
