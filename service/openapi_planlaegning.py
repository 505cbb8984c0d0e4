"""The OpenAPI document's part for planning (`service.planning`, issue 18): the routes'
parameters, request body and successful answers (declared on the routes, so FastAPI puts them
in the document), and the problems each operation answers besides those of every operation
(`errors`, for `service.openapi`'s `_errors`). Built with `service.openapi`'s schema helpers;
nothing here names a theme."""

from __future__ import annotations

from service.openapi import (_BODY, BOOL, DIGITS, GEOJSON, HTML, INSTANT, INT, JSON, NUM, OBJ,
                             STR, _arr, _json_body, _null, _obj, _param)

RUNS = "/planlaegning/koersler"
RUN = RUNS + "/{koersel_id}"
CELLS = RUN + "/celler"
OBJECTS = RUN + "/objekter"
MAP = "/planlaegning/kort"

KOMMUNE = {"type": "string", "pattern": "^[0-9]{3}$"}
_LINK = _obj({"href": STR, "rel": STR, "type": STR, "title?": STR})
_NINT = _null(dict(INT))
_NNUM = _null(dict(NUM))
_SETTINGS = _obj({"minutter": {"type": "number", "minimum": 1, "maximum": 60},
                  "hastighed_kmt": {"type": "number", "minimum": 1, "maximum": 8},
                  "omvejsfaktor": {"type": "number", "minimum": 1, "maximum": 3},
                  "tvaers_af_kommuner": BOOL}, closed=True)
_CODES = {"type": "object", "additionalProperties": _arr(INT, minItems=1),
          "description": "A coded attribute of the theme -> its codes"}
_SCENARIO = {"oneOf": [
    {"type": "string", "description": "A named scenario of the theme's planning profile "
                                      "(e.g. uden-uegnede, kun-egnede, med-planlagte)"},
    _obj({"navn?": {"type": "string", "minLength": 1, "maxLength": 100},
          "udelad?": _CODES, "medtag?": _CODES,
          "udelad_objekter?": _arr({"type": "string", "format": "uuid"})}, closed=True)]}


def body() -> dict:
    return _json_body(_obj({
        "kommunekode?": _null({"type": "integer", "minimum": 100, "maximum": 999}),
        "indstillinger?": _SETTINGS, "scenarie?": _SCENARIO,
        "sammenlign_med?": {"type": "integer", "minimum": 1},
        "net_id?": {"type": "integer", "minimum": 1}, "tema?": STR}, closed=True),
        "A run: the municipality (absent or null: national), settings, scenario, the base "
        "run to compare with, the population grid and the theme")


def _run(detail: bool) -> dict:
    members = {
        "id": INT, "temakode": INT, "omfang": {"type": "string", "enum": ["kommune", "national"]},
        "kommunekode": _NINT, "net_id": INT, "scenarie": OBJ, "indstillinger": OBJ,
        "input": OBJ, "sammenlignet_med": _NINT, "status": STR, "resultat": _null(dict(OBJ)),
        "subjekt": STR, "oprettet": INSTANT, "afsluttet": _null(dict(INSTANT)),
        "links": _arr(_LINK)}
    if detail:
        area = _obj({"omraade": _NINT, "navn": _null(dict(STR)), "indbyggere": INT,
                     "inden_for_raekkevidde": INT, "daekket": INT, "ikke_daekket": INT,
                     "celler": INT})
        comparison = _obj({"omraade": _NINT, "navn": _null(dict(STR)), "daekket_basis": INT,
                           "daekket_scenarie": INT, "forskel": INT,
                           "inden_for_raekkevidde_basis": INT,
                           "inden_for_raekkevidde_scenarie": INT})
        members.update({
            "totaler": _obj({"indbyggere": INT, "inden_for_raekkevidde": INT, "daekket": INT,
                             "ikke_daekket": INT, "celler": INT, "celler_delt": INT,
                             "afstand_m": INT, "objekter": INT, "kapacitet": INT,
                             "belaegning": INT, "andel_daekket": _NNUM}),
            "omraade_art": {"type": "string", "enum": ["kommune", "postnr"]},
            "omraader": _arr(area),
            "sammenligning?": _obj({"basis": INT, "forskel": INT,
                                    "omraader": _arr(comparison)}),
            "basis_lavet?": INT})
    return _obj(members)


def _collection(properties: dict) -> dict:
    return _obj({"type": {"type": "string", "enum": ["FeatureCollection"]},
                 "numberReturned": INT, "links?": _arr(_LINK),
                 "features": _arr(_obj({"type": {"type": "string", "enum": ["Feature"]},
                                        "id": STR, "geometry": OBJ,
                                        "properties": _obj(properties)}))})


CELL_PROPERTIES = {"celle_id": STR, "kommunekode": _NINT, "postnr": _NINT, "indbyggere": INT,
                   "inden_for_raekkevidde": INT, "daekket": INT, "ikke_daekket": INT,
                   "rum": INT, "gennemsnit_m": _NNUM}
OBJECT_PROPERTIES = {"objekt_id": STR, "versions_id": STR, "navn": _null(dict(STR)),
                     "kommunekode": _NINT, "kapacitet": INT, "belaegning": INT, "ledige": INT,
                     "andel": _NNUM, "celler": INT}


def _ok(description: str, media: str, schema: dict) -> dict:
    return {"description": description, "content": {media: {"schema": schema}}}


#: `responses` and `openapi_extra` of each route (service.planning).
ROUTES = {
    (RUNS, "get"): {
        "responses": {200: _ok("Runs, newest first", JSON, _obj(
            {"koersler": _arr(_run(False)), "links": _arr(_LINK)}))},
        "openapi_extra": {"parameters": [
            _param("kommunekode", KOMMUNE, "The municipality's runs and the national ones"),
            _param("limit", {"type": "integer", "minimum": 1, "maximum": 1000})]}},
    (RUNS, "post"): {
        "responses": {201: _ok("The run (Location names it)", JSON, _run(True))},
        "openapi_extra": {"requestBody": body()}},
    (RUN, "get"): {
        "responses": {200: _ok("The run, its totals, areas and comparison", JSON, _run(True))},
        "openapi_extra": {}},
    (CELLS, "get"): {
        "responses": {200: _ok("The run's cells (aggregates)", GEOJSON,
                               _collection(CELL_PROPERTIES))},
        "openapi_extra": {"parameters": [
            _param("kommunekode", KOMMUNE, "Only this municipality's cells"),
            _param("limit", {"type": "integer", "minimum": 1, "maximum": 100000}),
            _param("efter", {"type": "string", "pattern": "^[0-9a-z_]{1,24}$"},
                   "The page after this cell (the next link's)")]}},
    (OBJECTS, "get"): {
        "responses": {200: _ok("The run's objects the caller may see, with their load",
                               GEOJSON, _collection(OBJECT_PROPERTIES))},
        "openapi_extra": {"parameters": [
            _param("kommunekode", KOMMUNE, "Only this municipality's objects")]}},
    (MAP, "get"): {
        "responses": {200: _ok("The planner's map", HTML, STR)},
        "openapi_extra": {"parameters": [
            {**_param("koersel", DIGITS, "The run"), "required": True},
            _param("kommune", KOMMUNE, "The municipality (a national run's cells)")]}},
}


def route(path: str, method: str) -> dict:
    """The keyword arguments of a route's decorator."""
    return ROUTES[(path, method)]


def errors() -> dict[tuple[str, str], tuple[int, ...]]:
    """The problems planning's operations may answer besides those of every operation."""
    return {
        (RUNS, "get"): (403,),
        (RUNS, "post"): (*_BODY, 403, 409),
        (RUN, "get"): (403, 404),
        (CELLS, "get"): (403, 404),
        (OBJECTS, "get"): (403, 404),
        (MAP, "get"): (403, 404),
    }


def success() -> dict[tuple[str, str], dict[int, tuple[str, dict | None]]]:
    """The successful answers, in the form of `service.openapi._success` (the same as the
    routes declare)."""
    out = {}
    for key, spec in ROUTES.items():
        out[key] = {status: (r["description"], r["content"])
                    for status, r in spec["responses"].items()}
    return out
