"""The OpenAPI document's part for the shelters' inspection workflow (6101/6122): checklist
templates, inspections and their photos, deficiencies, campaigns and their report. It is the
workflow's own (as service/inspections.py and service/campaigns.py are), so it names the
shelter's attributes; `service.openapi` merges it into the document, and this module is a
part of that one (it builds with its schema helpers)."""

from __future__ import annotations

from datamodel import checklist
from service.openapi import (_BODY, BINARY, BOOL, CSV, DATE, GEOJSON, HTML, INSTANT, INT, JSON,
                             NUM, OBJ, PHOTO_TYPES, STR, UUID_, XLSX, _arr, _content,
                             _json_body, _null, _obj, _point_body, _ref)

_EFTERSYN_STATUSSER = ["planlagt", "kladde", "indsendt", "godkendt", "afvist", "indberettet"]
_MANGEL_STATUSSER = ["aaben", "planlagt", "udbedret", "verificeret"]
#: The `status` filter of the lists of inspections and of deficiencies.
STATUS_PARAMETERS = {"/eftersyn": _EFTERSYN_STATUSSER, "/mangler": _MANGEL_STATUSSER}
_PROGRESS_COUNTS = ("udvalgt", "tildelt", "kladde", "indsendt", "godkendt", "afvist", "egnet",
                    "egnet_efter_udbedring", "uegnet", "ikke_vurderet", "aabne_mangler",
                    "forfaldne_mangler")


def _template_item() -> dict:
    return _obj({"id": STR, "spoergsmaal": STR, "type": STR, "sektion": STR, "paakraevet": BOOL,
                 "beskrivelse?": STR, "koder?": _arr(_obj({"kode": INT, "tekst": STR})),
                 "kodeliste?": STR, "min?": NUM, "max?": NUM, "maks_laengde?": INT,
                 "kritisk?": BOOL, "pladser?": BOOL, "foto_ved_mangel?": BOOL})


def _template() -> dict:
    sections = _arr(_obj({"titel": STR, "punkter": _arr(_ref("ChecklistItem"))}))
    return _obj({"kode": STR, "version": INT, "titel": STR, "kilde": STR, "beskrivelse": STR,
                 "geofa_tema": _null(dict(INT)), "rum_max": INT, "eftersyn_interval_aar": INT,
                 "sektioner": sections, "rum_sektioner": sections, "mangler": OBJ,
                 "rum_mangler": OBJ, "ikke_vurderet_naar": OBJ,
                 "ekstra_paakraevet": {}}, description="A checklist template (one version)")


def _photo() -> dict:
    return _obj({"id": UUID_, "punkt": _null(dict(STR)), "rum": _null(dict(INT)),
                 "content_type": {"type": "string", "enum": list(PHOTO_TYPES)},
                 "stoerrelse": INT, "bredde": INT, "hoejde": INT, "sha256": STR})


def _deficiency(of_list: bool) -> dict:
    members = {"id": UUID_, "punkt": STR, "rum": _null(dict(INT)),
               "grad": {"type": "string", "enum": ["1", "2", "3", "S"]}, "kritisk": BOOL,
               "beskrivelse": _null(dict(STR)), "ansvarlig": _null(dict(STR)), "frist": DATE,
               "status": {"type": "string", "enum": _MANGEL_STATUSSER}}
    if of_list:
        members.update({"eftersyn_id": UUID_, "objekt_id": UUID_,
                        "beliggenhedskommune": _null(dict(INT))})
    return _obj(members)


def _inspection(with_photos: bool, with_deficiencies: bool = False) -> dict:
    nstr, nint, ninstant = _null(dict(STR)), _null(dict(INT)), _null(dict(INSTANT))
    members = {
        "id": UUID_, "objekt_id": UUID_, "kampagne_id": _null(dict(UUID_)),
        "tjekliste_kode": STR, "tjekliste_version": INT,
        "status": {"type": "string", "enum": _EFTERSYN_STATUSSER}, "svar": OBJ,
        "rum": _arr(OBJ), "inspektoer": STR, "cvr_kode": nint, "beliggenhedskommune": nint,
        "egnethed_kode": nint, "pladser": nint, "godkendt_af": nstr, "godkendt_tid": ninstant,
        "afvist_begrundelse": nstr, "indberettet_tid": ninstant,
        "beskyttelsesrum_versions_id": _null(dict(UUID_)), "version": INT,
        "oprettet": INSTANT, "opdateret": INSTANT, "position_tid": ninstant,
        "position": _null(_obj({"type": {"type": "string", "enum": ["Point"]},
                                "coordinates": _arr(NUM, minItems=2, maxItems=3)})),
        "mangler_svar": _arr(STR),
    }
    if with_photos:
        members["fotos"] = _arr(_ref("Photo"))
    if with_deficiencies:
        members["mangler"] = _arr(_deficiency(of_list=False))
    return _obj(members, closed=True)


def _campaign() -> dict:
    nstr = _null(dict(STR))
    return _obj({"id": UUID_, "navn": STR, "tjekliste_kode": STR, "tjekliste_version": INT,
                 "periode_fra": DATE, "periode_til": DATE, "frist": DATE, "udvalg": OBJ,
                 "cvr_kode": _null(dict(INT)), "oprettet_af": nstr, "oprettet": INSTANT,
                 "udvalgt": INT})


def _progress_row() -> dict:
    return _obj({"kommunekode": _null(dict(INT)), "kommune": _null(dict(STR)),
                 **{c: {"type": "integer", "minimum": 0} for c in _PROGRESS_COUNTS}})


def _feature_6122() -> dict:
    return _obj({"type": {"type": "string", "enum": ["Feature"]},
                 "geometry": _null(OBJ), "properties": OBJ},
                description="A GeoFA 6122 feature (beskyttelsesrum, eftersyn)")


def components() -> dict[str, dict]:
    return {
        "ChecklistItem": _template_item(),
        "Checklist": _template(),
        "Photo": _photo(),
        "Inspection": _inspection(with_photos=True),
        "Campaign": _campaign(),
        "Progress": _progress_row(),
        "Feature6122": _feature_6122(),
    }


def bodies() -> dict[tuple[str, str], dict]:
    """The request bodies of the workflow's operations."""
    kodes = sorted({kode for kode, _ in checklist.load_templates()})
    nonblank = {"type": "string", "minLength": 1, "pattern": r"\S"}
    return {
        ("/eftersyn/{eftersyn_id}", "put"): _json_body(_obj({
            "objekt_id": UUID_,
            "tjekliste_kode": {"type": "string", "enum": kodes},
            "tjekliste_version": {"type": "integer", "minimum": 1},
            "kampagne_id?": _null(dict(UUID_)),
            "status?": {"type": "string", "enum": ["kladde", "indsendt"], "default": "kladde"},
            "svar?": {"type": "object", "description": "Answers by checklist item id"},
            "rum?": _arr(OBJ, description="Answers per room (room items by id)"),
            "position?": _null(_point_body()),
            "position_tid?": _null(dict(INSTANT)),
        }, closed=True), "The inspection: the checklist version it answers, its answers and "
                         "status (indsendt: submitted, every required item answered)"),
        ("/eftersyn/{eftersyn_id}/fotos/{foto_id}", "put"): {
            "required": True, "description": "The photo (at most 10 MB)",
            "content": {t: {"schema": BINARY} for t in PHOTO_TYPES}},
        ("/eftersyn/{eftersyn_id}/afvis", "post"): _json_body(_obj({
            "begrundelse": {"type": "string", "minLength": 3, "maxLength": 1000,
                            "pattern": r"\S.*\S|\S{3}"}}), "Why it is rejected",
            example={"begrundelse": "Rum 2 mangler svar på ventilation"}),
        ("/eftersyn/6122", "post"): _json_body(
            {"anyOf": [
                _obj({"type": {"type": "string", "enum": ["FeatureCollection"]},
                      "features": _arr(_ref("Feature6122"), minItems=1)}),
                _ref("Feature6122")]},
            "GeoFA 6122 features (one, or a FeatureCollection): inspections of Ly's "
            "shelters (noegle is the shelter's objekt_id)", (GEOJSON, JSON)),
        ("/mangler/{mangel_id}", "patch"): _json_body(
            _obj({"status": {"type": "string", "enum": _MANGEL_STATUSSER}}),
            "The deficiency's next status", (JSON, "application/merge-patch+json"),
            example={"status": "planlagt"}),
        ("/kampagner", "post"): _json_body(_obj({
            "navn": {"type": "string", "minLength": 3, "maxLength": 254,
                     "pattern": r"\S.*\S|\S{3}"},
            "tjekliste_kode": {"type": "string", "enum": kodes},
            "tjekliste_version?": _null({"type": "integer", "minimum": 1}),
            "periode_fra": DATE, "periode_til": DATE, "frist": DATE,
            "udvalg?": _obj({"beskyt_rum_kode?": {"anyOf": [INT, _arr(INT)]},
                             "kommuner?": _arr(INT)},
                            description="Which shelters: of these kinds, in these "
                                        "municipalities (default: every one you manage)"),
        }), "The campaign", example={
            "navn": "Eftersyn af betondækningsgrave 2026", "tjekliste_kode": kodes[0],
            "periode_fra": "2026-03-01", "periode_til": "2026-10-31", "frist": "2026-11-30",
            "udvalg": {"beskyt_rum_kode": [3], "kommuner": [101]}}),
        ("/kampagner/{kampagne_id}/tildelinger", "post"): _json_body(_obj({
            "subjekt": {**nonblank, "description": "The inspector's subject"},
            "objekt_ids?": _arr(UUID_, description="Only these shelters"),
            "kommune?": {"type": "integer", "description": "Only this municipality's"},
        }), "The inspector, and which of the campaign's shelters (default: all)",
            example={"subjekt": "inspektoer-1", "kommune": 101}),
    }


def success() -> dict[tuple[str, str], dict[int, tuple[str, dict | None]]]:
    """The successful answers of the workflow's operations."""
    inspection = _content((JSON, _ref("Inspection")))
    return {
        ("/tjeklister", "get"): {200: ("Checklist templates", _content((JSON, _obj({
            "tjeklister": _arr(_obj({"kode": STR, "version": INT, "titel": STR}))}))))},
        ("/tjeklister/{kode}", "get"): {200: ("The latest version",
                                              _content((JSON, _ref("Checklist"))))},
        ("/tjeklister/{kode}/{version}", "get"): {200: ("The version",
                                                        _content((JSON, _ref("Checklist"))))},
        ("/eftersyn/opgaver", "get"): {200: ("The inspector's tasks", _content((JSON, _obj({
            "opgaver": _arr(_obj({
                "objekt_id": UUID_, "navn": _null(dict(STR)), "beskyt_rum": _null(dict(STR)),
                "pladser": _null(dict(INT)), "adresse": _null(dict(STR)),
                "kampagne_id": _null(dict(UUID_)), "kampagne": _null(dict(STR)),
                "tjekliste_kode": STR, "tjekliste_version": INT, "lon": NUM, "lat": NUM,
                "eftersyn_id": _null(dict(UUID_)),
                "status": _null({"type": "string", "enum": _EFTERSYN_STATUSSER})}))}))))},
        ("/eftersyn/{eftersyn_id}", "put"): {200: ("Updated, or the same upload again",
                                                   inspection),
                                             201: ("Created", inspection)},
        ("/eftersyn/{eftersyn_id}", "get"): {200: ("The inspection, its photos and "
                                                   "deficiencies", _content((JSON, _inspection(
                                                       with_photos=True,
                                                       with_deficiencies=True))))},
        ("/eftersyn/{eftersyn_id}/fotos/{foto_id}", "put"): {
            200: ("The same photo again", _content((JSON, _obj({"id": UUID_, "sha256": STR})))),
            201: ("Stored", _content((JSON, _obj({"id": UUID_, "sha256": STR, "bredde": INT,
                                                  "hoejde": INT}))))},
        ("/eftersyn/{eftersyn_id}/fotos/{foto_id}", "get"): {
            200: ("The photo, or its thumbnail (JPEG)",
                  _content(*((t, BINARY) for t in PHOTO_TYPES)))},
        ("/eftersyn", "get"): {200: ("Inspections, newest first", _content((JSON, _obj({
            "eftersyn": _arr(_inspection(with_photos=False))}))))},
        ("/eftersyn/{eftersyn_id}/godkend", "post"): {200: (
            "Approved: classification, deficiencies and the shelter's new version",
            _content((JSON, _obj({
                "id": UUID_, "status": {"type": "string", "enum": ["godkendt"]},
                "egnethed_kode": INT, "egnethed": STR, "pladser": _null(dict(INT)),
                "beskyttelsesrum_versions_id": UUID_,
                "mangler": _arr(_obj({"punkt": STR, "rum": _null(dict(INT)), "grad": STR,
                                      "kritisk": BOOL, "ansvarlig": _null(dict(STR)),
                                      "beskrivelse": STR}))}))))},
        ("/eftersyn/{eftersyn_id}/afvis", "post"): {200: (
            "Rejected; the inspector may correct it", _content((JSON, _obj({
                "id": UUID_, "status": {"type": "string", "enum": ["afvist"]},
                "begrundelse": STR}))))},
        ("/eftersyn/{eftersyn_id}/6122", "get"): {200: (
            "The inspection as a GeoFA 6122 feature", _content((GEOJSON,
                                                                 _ref("Feature6122"))))},
        ("/eftersyn/{eftersyn_id}/indberet", "post"): {200: ("Reported", _content((JSON, _obj({
            "id": UUID_, "status": {"type": "string", "enum": ["indberettet"]}}))))},
        ("/eftersyn/6122", "post"): {201: ("Imported (oprettet false: it was imported "
                                           "before)", _content((JSON, _obj({
                                               "eftersyn": _arr(_obj({
                                                   "id": UUID_, "objekt_id": UUID_,
                                                   "oprettet": BOOL}))}))))},
        ("/mangler", "get"): {200: ("Deficiencies, by deadline", _content((JSON, _obj({
            "mangler": _arr(_deficiency(of_list=True))}))))},
        ("/mangler/{mangel_id}", "patch"): {200: ("Updated", _content((JSON, _obj({
            "id": UUID_, "status": {"type": "string", "enum": _MANGEL_STATUSSER}}))))},
        ("/kampagner", "get"): {200: ("Campaigns, newest first", _content((JSON, _obj({
            "kampagner": _arr(_ref("Campaign"))}))))},
        ("/kampagner", "post"): {201: ("Created, with the number of shelters selected",
                                       _content((JSON, _obj({"id": UUID_, "navn": STR,
                                                             "udvalgt": INT}))))},
        ("/kampagner/{kampagne_id}", "get"): {200: ("The campaign",
                                                    _content((JSON, _ref("Campaign"))))},
        ("/kampagner/{kampagne_id}/tildelinger", "post"): {201: (
            "Assigned (tildelt: how many new assignments)", _content((JSON, _obj({
                "kampagne_id": UUID_, "subjekt": STR, "tildelt": INT}))))},
        ("/kampagner/{kampagne_id}/fremdrift", "get"): {200: (
            "Progress per municipality and nationally", _content((JSON, _obj({
                "kampagne": _ref("Campaign"), "kommuner": _arr(_ref("Progress")),
                "national": _ref("Progress")}))))},
        ("/rapporter/kampagner/{kampagne_id}", "get"): {200: ("The report", _content(
            (HTML, STR), (CSV, STR), (XLSX, BINARY)))},
    }


def errors() -> dict[tuple[str, str], tuple[int, ...]]:
    """The problems the workflow's operations may answer besides those of every operation."""
    return {
        ("/tjeklister/{kode}", "get"): (404,),
        ("/tjeklister/{kode}/{version}", "get"): (404,),
        ("/eftersyn/{eftersyn_id}", "put"): (*_BODY, 403, 404, 409),
        ("/eftersyn/{eftersyn_id}", "get"): (404,),
        ("/eftersyn/{eftersyn_id}/fotos/{foto_id}", "put"): (*_BODY, 403, 404, 409),
        ("/eftersyn/{eftersyn_id}/fotos/{foto_id}", "get"): (404,),
        ("/eftersyn/{eftersyn_id}/godkend", "post"): (403, 404, 409),
        ("/eftersyn/{eftersyn_id}/afvis", "post"): (*_BODY, 403, 404, 409),
        ("/eftersyn/{eftersyn_id}/6122", "get"): (404, 409),
        ("/eftersyn/{eftersyn_id}/indberet", "post"): (403, 404, 409),
        ("/eftersyn/6122", "post"): (*_BODY, 403, 404),
        ("/mangler/{mangel_id}", "patch"): (*_BODY, 403, 404, 409),
        ("/kampagner", "post"): (*_BODY, 403),
        ("/kampagner/{kampagne_id}", "get"): (404,),
        ("/kampagner/{kampagne_id}/tildelinger", "post"): (*_BODY, 403, 404),
        ("/kampagner/{kampagne_id}/fremdrift", "get"): (404,),
        ("/rapporter/kampagner/{kampagne_id}", "get"): (404,),
    }
