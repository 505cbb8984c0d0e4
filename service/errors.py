"""One error model: RFC 9457 problem details (application/problem+json) for every error.

A problem names what was wrong: `errors` lists `{field, detail}` pairs, and `detail` repeats
the first of them in words; `title` is the status in Danish (`TITLES`). Nothing that
reaches a client is a bare 500 traceback.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

import orjson
import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from datamodel.rules import Invalid

log = logging.getLogger("ly")

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://ly.beredskab.dk/problemer/"

#: A problem's `title`: the status in Danish, the language of Ly's pages and its API's
#: summaries (RFC 9457 leaves the title's language to the API; `detail` says what was
#: wrong). Every status Ly answers with a problem, and those the HTTP layers may.
TITLES = {
    400: "Ugyldig forespørgsel",
    401: "Ikke logget ind",
    403: "Ingen adgang",
    404: "Findes ikke",
    405: "Metoden er ikke tilladt",
    406: "Formatet kan ikke leveres",
    408: "Forespørgslen tog for lang tid",
    409: "Konflikt",
    410: "Findes ikke længere",
    411: "Længden mangler",
    412: "Forudsætning ikke opfyldt",
    413: "Forespørgslen er for stor",
    414: "Adressen er for lang",
    415: "Medietypen understøttes ikke",
    416: "Området kan ikke leveres",
    422: "Ugyldige data",
    428: "Forudsætning påkrævet",
    429: "For mange forespørgsler",
    431: "Headerfelterne er for store",
    500: "Intern fejl",
    501: "Ikke understøttet",
    502: "Fejl i en bagvedliggende tjeneste",
    503: "Midlertidigt utilgængelig",
    504: "En bagvedliggende tjeneste svarede ikke",
}


def title(status: int) -> str:
    """The Danish title of a problem's status (TITLES; else by its class)."""
    found = TITLES.get(status)
    if found is not None:
        return found
    return "Fejl i tjenesten" if status >= 500 else "Fejl i forespørgslen"


class Problem(Exception):
    def __init__(self, status: int, detail: str, *, kind: str | None = None,
                 errors: list[dict] | None = None, headers: dict | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.errors = errors or []
        self.headers = headers or {}


def bad_request(field: str, detail: str, kind: str = "invalid-parameter") -> Problem:
    return Problem(400, f"{field}: {detail}", kind=kind, errors=[{"field": field, "detail": detail}])


def not_found(what: str) -> Problem:
    return Problem(404, f"{what} findes ikke", kind="not-found")


def _phrase(status: int) -> str | None:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return None


def problem_response(p: Problem, instance: str | None = None) -> Response:
    body = {
        "type": PROBLEM_BASE + p.kind if p.kind else "about:blank",
        "title": title(p.status),
        "status": p.status,
        "detail": p.detail,
    }
    if instance:
        body["instance"] = instance
    if p.errors:
        body["errors"] = p.errors
    return Response(orjson.dumps(body), status_code=p.status, media_type=PROBLEM_MEDIA_TYPE,
                    headers=p.headers)


def invalid(exc: Invalid, status: int = 422) -> Problem:
    errors = [{"field": pr.field, "detail": pr.detail} for pr in exc.problems]
    first = exc.problems[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return Problem(status, f"{first.field} {first.detail}{more}", kind="invalid-feature",
                   errors=errors)


#: Our words for what the database refused (its own texts never reach a client).
_REFUSALS = (
    (psycopg.errors.NotNullViolation, "is required"),
    (psycopg.errors.CheckViolation, "is outside the values the register allows"),
    (psycopg.errors.ForeignKeyViolation, "refers to something the register does not have"),
    (psycopg.errors.StringDataRightTruncation, "is longer than the register allows"),
    (psycopg.errors.NumericValueOutOfRange, "is outside the range the register stores"),
    (psycopg.errors.DatetimeFieldOverflow, "is outside the range the register stores"),
    (psycopg.errors.InvalidTextRepresentation, "is not a valid value"),
    (psycopg.errors.InvalidDatetimeFormat, "is not a valid value"),
    (psycopg.errors.UntranslatableCharacter, "holds a character the register cannot store"),
    (psycopg.errors.CharacterNotInRepertoire, "holds a character the register cannot store"),
)


def _field(column: str | None, theme) -> str | None:
    """The request field a column is, when it is one of the theme's attributes (or its
    geometry) and the request writes that theme's objects; else None."""
    if not column or theme is None:
        return None
    if column == "geometri":
        return "geometry"
    return f"properties.{column}" if column in theme.fields_by_name else None


def from_database(exc: psycopg.Error, theme=None) -> Problem | None:
    """A client's problem the database caught (a backstop behind the checks of each
    resource): in our words, naming a field only when the database named the column and it
    is an attribute of `theme` (the datamodel.themes.Theme the request writes), else the
    request as a whole. Messages of the register's own triggers (SQLSTATE LY422, LY409) are ours."""
    diag = exc.diag
    column = diag.column_name
    if column is None and isinstance(exc, psycopg.errors.CheckViolation):
        column = (diag.constraint_name or "").removesuffix("_range") or None
    state = diag.sqlstate or ""
    if state == "LY409":  # the register's own triggers: a change its state does not allow
        detail = diag.message_primary or "the object's state does not allow this change"
        return Problem(409, detail, kind="conflict",
                       errors=[{"field": column or "status", "detail": detail}])
    if state == "LY422":
        field = _field(column, theme) or "request"
        detail = diag.message_primary or "the register refused the value"
        return Problem(422, f"{field}: {detail}", kind="invalid-feature",
                       errors=[{"field": field, "detail": detail}])
    for kind, words in _REFUSALS:
        if isinstance(exc, kind):
            field = _field(column, theme)
            if field is None:
                field, words = "request", f"a value {words}"
            return Problem(422, f"{field}: {words}", kind="invalid-feature",
                           errors=[{"field": field, "detail": words}])
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        # row-level security: a theme's object is in scope by where it lies
        field = "geometry" if theme is not None else "request"
        return Problem(403, "the register does not let you write this object there "
                       "(outside your municipality or role)", kind="forbidden",
                       errors=[{"field": field, "detail": "outside your scope"}])
    if isinstance(exc, psycopg.errors.UniqueViolation):
        field = _field(column, theme) or "request"
        return Problem(409, f"{field}: findes allerede", kind="conflict",
                       errors=[{"field": field, "detail": "findes allerede"}])
    return None


def _theme_of(request: Request):
    from datamodel import themes

    cid = request.path_params.get("collection_id")
    try:
        return themes.get(cid) if isinstance(cid, str) else None
    except KeyError:
        return None


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return problem_response(exc, request.url.path)

    @app.exception_handler(Invalid)
    async def _invalid(request: Request, exc: Invalid):
        return problem_response(invalid(exc), request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = []
        for e in exc.errors():
            loc = [str(x) for x in e.get("loc", ()) if x not in ("query", "path", "header")]
            errors.append({"field": ".".join(loc) or "request", "detail": e.get("msg", "invalid")})
        first = errors[0] if errors else {"field": "request", "detail": "invalid"}
        return problem_response(
            Problem(400, f"{first['field']}: {first['detail']}", kind="invalid-parameter",
                    errors=errors), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            from service import allow  # every method of the path, not only one route's

            methods = allow.header(request)
            if methods:
                headers["Allow"] = methods
        detail = str(exc.detail)
        if detail == _phrase(exc.status_code):  # Starlette's default, in English
            detail = f"{title(exc.status_code)}: {request.method} {request.url.path}"
        return problem_response(Problem(exc.status_code, detail, headers=headers),
                                request.url.path)

    @app.exception_handler(psycopg.Error)
    async def _database(request: Request, exc: psycopg.Error):
        p = from_database(exc, _theme_of(request))
        if p is None:
            log.exception("database error on %s", request.url.path, exc_info=exc)
            p = Problem(503, "Databasen svarede ikke som ventet; prøv igen.", kind="database")
        return problem_response(p, request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path, exc_info=exc)
        return problem_response(Problem(500, "Uventet fejl; den er logget."), request.url.path)
