"""Inspection checklists (tjeklister) as versioned data, the validation of answers against
them, and the explicit rules that turn answers into findings (mangler) and a classification
(egnethed).

Two templates ship with Ly:
- `bdg-6122`: the betondækningsgrav inspection exactly as GeoFA theme 6122 defines it. Its
  items, questions, types, codes, ranges and required fields are read from GeoFA's own schema
  files (`datamodel/geofa/`); Ly adds only which answers are deficiencies and how grave
  (`datamodel/checklists/bdg-6122-v1.json`).
- `generel`: a general shelter checklist with graded findings (0, 1, 2, 3, S) and critical
  items (`datamodel/checklists/generel-v1.json`).

A changed template is a new version; an inspection stays bound to the version it was made with.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any
from uuid import UUID

from datamodel.codelists import load_codelists
from datamodel.rules import Invalid, Problem

HERE = Path(__file__).parent
GEOFA = HERE / "geofa"
META_6122 = GEOFA / "fkg.t_6122_beskyt_rum_eftersyn.json"
TABLE_6122 = GEOFA / "t_6122_beskyt_rum_eftersyn_t.json"

GRADES = ("0", "1", "2", "3", "S")
#: Days to fix a deficiency of each grade, counted from approval.
DEADLINE_DAYS = {"S": 7, "3": 90, "2": 180, "1": 365}
EGNET, EGNET_EFTER_UDBEDRING, UEGNET, IKKE_VURDERET = 1, 2, 3, 9
#: What an approved inspection keeps of its assessment (`Assessment`: the suitability class
#: and the places counted) in `ly.eftersyn` (migration 0003), named as the shelter attributes
#: they set: (column, code list or None).
ASSESSMENT_COLUMNS = (("egnethed_kode", "d_ly_egnethed"), ("pladser", None))


@dataclass(frozen=True)
class Item:
    id: str
    question: str
    type: str  # ja_nej_ved_ikke | kode | heltal | tal | boolesk | dato | tekst | uuid | grad
    section: str
    description: str = ""
    codes: tuple[tuple[int, str], ...] = ()
    codelist: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    required: bool = False
    critical: bool = False
    capacity: bool = False  # the answer is the verified number of places
    photo_on_defect: bool = False

    def to_json(self) -> dict:
        out: dict[str, Any] = {"id": self.id, "spoergsmaal": self.question, "type": self.type,
                               "sektion": self.section, "paakraevet": self.required}
        if self.description:
            out["beskrivelse"] = self.description
        if self.codes:
            out["koder"] = [{"kode": k, "tekst": t} for k, t in self.codes]
        if self.codelist:
            out["kodeliste"] = self.codelist
        for key, value in (("min", self.minimum), ("max", self.maximum),
                           ("maks_laengde", self.max_length)):
            if value is not None:
                out[key] = value
        if self.critical:
            out["kritisk"] = True
        if self.capacity:
            out["pladser"] = True
        if self.photo_on_defect:
            out["foto_ved_mangel"] = True
        return out


@dataclass(frozen=True)
class Template:
    kode: str
    version: int
    title: str
    source: str
    description: str
    items: tuple[Item, ...]
    room_items: tuple[Item, ...]
    rooms_max: int
    interval_years: int
    deficiencies: dict = field(default_factory=dict)  # item id -> rule
    room_deficiencies: dict = field(default_factory=dict)
    not_assessed_when: dict = field(default_factory=dict)  # item id -> answers
    extra_required: dict = field(default_factory=dict)  # item id -> {"naar": {item: value}}
    geofa_theme: int | None = None

    @property
    def by_id(self) -> dict[str, Item]:
        return {i.id: i for i in self.items}

    @property
    def room_by_id(self) -> dict[str, Item]:
        return {i.id: i for i in self.room_items}

    def to_json(self) -> dict:
        sections: dict[str, list] = {}
        for item in self.items:
            sections.setdefault(item.section, []).append(item.to_json())
        room_sections: dict[str, list] = {}
        for item in self.room_items:
            room_sections.setdefault(item.section, []).append(item.to_json())
        return {
            "kode": self.kode, "version": self.version, "titel": self.title,
            "kilde": self.source, "beskrivelse": self.description,
            "geofa_tema": self.geofa_theme, "rum_max": self.rooms_max,
            "eftersyn_interval_aar": self.interval_years,
            "sektioner": [{"titel": t, "punkter": p} for t, p in sections.items()],
            "rum_sektioner": [{"titel": t, "punkter": p} for t, p in room_sections.items()],
            "mangler": self.deficiencies, "rum_mangler": self.room_deficiencies,
            "ikke_vurderet_naar": self.not_assessed_when,
            "ekstra_paakraevet": self.extra_required,
        }

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True,
                                         ensure_ascii=False).encode()).hexdigest()


# --- GeoFA 6122 ---

#: 6122 fields that are not the inspector's answers: generic FKG attributes, derived address
#: fields, text twins, and what approval fills in.
_SYSTEM_6122 = {
    "temakode", "temanavn", "objekt_id", "versions_id", "systid_fra", "systid_til", "oprettet",
    "cvr_kode", "cvr_navn", "kommunekode", "bruger_id", "oprindkode", "oprindelse",
    "statuskode", "status", "off_kode", "offentlig", "beliggenhedskommune", "vejkode",
    "vejnavn", "cvf_vejkode", "husnr", "postnr", "postnr_by", "noegle", "sagsnr",
    "beskyt_rum_type_kode", "beskyt_rum_type", "godkendt_af", "godkendt_dato", "link",
    "geometri",
}
_ROOM = re.compile(r"^_([1-4])_(.+)$")
_CHECK = re.compile(r"(\w+) >= (-?\d+) AND \w+ <= (-?\d+)")


@lru_cache(maxsize=1)
def geofa_6122() -> tuple[dict, dict]:
    """(fields of the published view, table facts: NOT NULL columns and CHECK ranges)."""
    meta = json.loads(META_6122.read_text(encoding="utf-8"))
    table = json.loads(TABLE_6122.read_text(encoding="utf-8"))
    not_null = {c["name"] for c in table["columns"] if not c["is_nullable"]}
    ranges = {}
    for c in table["columns"]:
        for check in c.get("_checks") or ():
            m = _CHECK.search(check)
            if m:
                ranges[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return meta["fields"], {"not_null": not_null, "ranges": ranges}


def twin_names_6122() -> set[str]:
    """The text twins of coded 6122 fields (`adgang_kode` → `adgang`)."""
    fields, _ = geofa_6122()
    return {n[: -len("_kode")] for n in fields if n.endswith("_kode")
            and n[: -len("_kode")] in fields} | {"cvr_navn", "oprindelse", "status",
                                                 "offentlig", "beskyt_rum_type"}


def _item_type(f: dict) -> tuple[str, str | None]:
    rel = ((f.get("properties") or {}).get("_rel") or "").removeprefix("fkg.")
    t = f.get("_type")
    if t == "integer" and rel == "d_6122_ja_nej_ved_ikke":
        return "ja_nej_ved_ikke", rel
    if t == "integer" and rel:
        return "kode", rel
    return {"integer": "heltal", "boolean": "boolesk", "date": "dato", "uuid": "uuid"}.get(
        t, "tekst"), None


def _section_and_question(alias: str, desc: str, name: str = "") -> tuple[str, str]:
    text = (alias or desc or "").strip()
    if name.startswith("adgang"):
        text = text if ":" in text else "Adgang og anvendelse: " + text
    text = re.sub(r"^Rum \d+ - ", "", text)
    for prefix in ("Adgang og anvendelse", "Konstruktion", "Installation"):
        if text.startswith(prefix + ":"):
            return prefix, text[len(prefix) + 1:].strip()
    return "Stamdata", text


def _item_6122(name: str, f: dict, table: dict, *, item_id: str | None = None,
               required: bool | None = None) -> Item:
    kind, rel = _item_type(f)
    section, question = _section_and_question(f.get("alias") or "", f.get("desc") or "", name)
    low_high = table["ranges"].get(name)
    codes = tuple((r["value"], r["alias"].strip()) for r in f.get("_restriction") or ())
    desc = (f.get("desc") or "").strip()
    return Item(
        id=item_id or name, question=question or name, type=kind, section=section,
        description=desc if desc != question else "", codes=codes, codelist=rel,
        minimum=low_high[0] if low_high else None, maximum=low_high[1] if low_high else None,
        max_length=f.get("_character_maximum_length") if kind == "tekst" else None,
        required=name in table["not_null"] if required is None else required,
        capacity=name == "antal_pladser",
    )


def _build_6122(overlay: dict) -> Template:
    fields, table = geofa_6122()
    twins = twin_names_6122()
    ordered = sorted(fields.items(), key=lambda kv: kv[1].get("sort_id") or 0)
    items, room_items = [], []
    for name, f in ordered:
        if name in _SYSTEM_6122 or name in twins:
            continue
        m = _ROOM.match(name)
        if m is None:
            items.append(_item_6122(name, f, table))
        elif m.group(1) == "1":
            room_items.append(_item_6122(name, f, table, item_id=m.group(2), required=False))
    for rule_set, by_id in ((overlay["mangler"], {i.id for i in items}),
                            (overlay["rum_mangler"], {i.id for i in room_items})):
        unknown = set(rule_set) - by_id
        if unknown:
            raise ValueError(f"deficiency rules for unknown 6122 items: {sorted(unknown)}")
    crit = {k for k, r in {**overlay["mangler"], **overlay["rum_mangler"]}.items()
            if r.get("kritisk")}
    items = [_with(i, critical=i.id in crit) for i in items]
    room_items = [_with(i, critical=i.id in crit) for i in room_items]
    return Template(
        kode=overlay["kode"], version=overlay["version"], title=overlay["titel"],
        source=overlay["kilde"], description=overlay["beskrivelse"], items=tuple(items),
        room_items=tuple(room_items), rooms_max=overlay["rum_max"],
        interval_years=overlay["eftersyn_interval_aar"], deficiencies=overlay["mangler"],
        room_deficiencies=overlay["rum_mangler"],
        not_assessed_when={"lokaliseret": [False], "adgang_kode": [2, 3]},
        extra_required=overlay.get("ekstra_paakraevet", {}), geofa_theme=6122,
    )


def _with(item: Item, **changes) -> Item:
    return Item(**{**item.__dict__, **changes})


def _build_general(data: dict) -> Template:
    local_lists = data.get("kodelister", {})
    items = []
    for section in data["sektioner"]:
        for p in section["punkter"]:
            codes: tuple = ()
            codelist = p.get("kodeliste")
            if codelist in local_lists:
                codes = tuple((c["kode"], c["tekst"]) for c in local_lists[codelist])
            elif codelist:
                codes = tuple((c.kode, c.tekst) for c in load_codelists()[codelist].values
                              if c.aktiv)
            items.append(Item(
                id=p["id"], question=p["spoergsmaal"], type=p["type"], section=section["titel"],
                codes=codes, codelist=codelist, minimum=p.get("min"), maximum=p.get("max"),
                required=p.get("paakraevet", False), critical=p.get("kritisk", False),
                capacity=p.get("pladser", False), photo_on_defect=p.get("foto_ved_mangel", False),
            ))
    return Template(
        kode=data["kode"], version=data["version"], title=data["titel"], source=data["kilde"],
        description=data["beskrivelse"], items=tuple(items), room_items=(),
        rooms_max=data["rum_max"], interval_years=data["eftersyn_interval_aar"],
        deficiencies=data.get("mangler", {}), not_assessed_when=data["ikke_vurderet_naar"],
    )


@lru_cache(maxsize=1)
def load_templates() -> dict[tuple[str, int], Template]:
    """Every shipped template version, keyed by (kode, version)."""
    out = {}
    for path in sorted((HERE / "checklists").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        template = _build_6122(data) if data.get("geofa_tema") == 6122 else _build_general(data)
        out[(template.kode, template.version)] = template
    return out


def latest(kode: str) -> Template | None:
    versions = [t for (k, _), t in load_templates().items() if k == kode]
    return max(versions, key=lambda t: t.version) if versions else None


# --- answers ---

def _check(item: Item, value: Any) -> tuple[Any, str | None]:
    """The stored value of an answer, or an error message."""
    t = item.type
    if t in ("ja_nej_ved_ikke", "kode", "heltal"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()):
            return None, f"must be an integer, not {value!r}"
        value = int(value)
        if item.codes and value not in {k for k, _ in item.codes}:
            allowed = ", ".join(f"{k} {txt}" for k, txt in item.codes)
            return None, f"{value} is not an allowed answer (allowed: {allowed})"
    elif t == "tal":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, f"must be a number, not {value!r}"
    elif t == "boolesk":
        if not isinstance(value, bool):
            return None, f"must be true or false, not {value!r}"
    elif t == "grad":
        if not isinstance(value, str) or value not in GRADES:
            return None, f"must be one of {', '.join(GRADES)}, not {value!r}"
    elif t == "dato":
        try:
            value = date.fromisoformat(value).isoformat() if isinstance(value, str) else None
        except ValueError:
            value = None
        if value is None:
            return None, "must be a date (YYYY-MM-DD)"
    elif t == "uuid":
        try:
            value = str(UUID(value)) if isinstance(value, str) else None
        except ValueError:
            value = None
        if value is None:
            return None, "must be a UUID"
    else:
        if not isinstance(value, str):
            return None, f"must be text, not {value!r}"
        if "\x00" in value:
            return None, "must not contain NUL characters"
        if item.max_length and len(value) > item.max_length:
            return None, f"is {len(value)} characters; at most {item.max_length} are allowed"
    if item.minimum is not None and isinstance(value, (int, float)) and not isinstance(
            value, bool) and not item.minimum <= value <= item.maximum:
        return None, f"must be between {item.minimum:g} and {item.maximum:g}, not {value}"
    return value, None


def _check_block(items: dict[str, Item], answers: Any, prefix: str,
                 problems: list[Problem]) -> dict:
    if answers is None:
        return {}
    if not isinstance(answers, dict):
        problems.append(Problem(prefix.rstrip("."), "must be a JSON object of answers"))
        return {}
    clean = {}
    for key, value in answers.items():
        item = items.get(key)
        if item is None:
            problems.append(Problem(f"{prefix}{key}", "is not an item of this checklist"))
            continue
        if value is None:
            continue
        stored, error = _check(item, value)
        if error:
            problems.append(Problem(f"{prefix}{key}", error))
        else:
            clean[key] = stored
    return clean


def validate_answers(template: Template, svar: Any, rum: Any, *, submit: bool) -> tuple[dict,
                                                                                        list]:
    """Answers checked against the template: (answers, rooms). Drafts may be incomplete;
    a submission must answer every required item. Raises `Invalid` naming each item."""
    problems: list[Problem] = []
    clean = _check_block(template.by_id, svar, "svar.", problems)
    rooms: list[dict] = []
    if rum is not None and not isinstance(rum, list):
        problems.append(Problem("rum", "must be a list of rooms"))
    elif rum:
        if len(rum) > template.rooms_max:
            problems.append(Problem("rum", f"at most {template.rooms_max} rooms, not {len(rum)}"))
        for n, room in enumerate(rum[: template.rooms_max], start=1):
            rooms.append(_check_block(template.room_by_id, room, f"rum[{n}].", problems))
    if submit:
        for item in template.items:
            if item.required and item.id not in clean and not any(
                    p.field == f"svar.{item.id}" for p in problems):
                problems.append(Problem(f"svar.{item.id}", f"is required: {item.question}"))
        for item_id, rule in template.extra_required.items():
            conditions = rule["naar"]
            if all(clean.get(k) == v for k, v in conditions.items()) and item_id not in clean:
                why = ", ".join(f"{k} = {json.dumps(v)}" for k, v in conditions.items())
                problems.append(Problem(f"svar.{item_id}", f"is required when {why}"))
    if problems:
        raise Invalid(problems)
    return clean, rooms


# --- outcome ---

@dataclass(frozen=True)
class Finding:
    item: str
    room: int | None
    grade: str
    critical: bool
    responsible: str  # kommune | ejer
    text: str


@dataclass(frozen=True)
class Assessment:
    egnethed_kode: int
    findings: tuple[Finding, ...]
    places: int | None


def _responsible(rule_party: str, svar: dict) -> str:
    if rule_party != "grundejer":
        return rule_party
    owner = str(svar.get("matrikelejer") or "").lower()
    return "kommune" if "kommune" in owner else "ejer"


def _rule_findings(rules: dict, answers: dict, items: dict[str, Item], room: int | None,
                   svar: dict) -> list[Finding]:
    out = []
    for item_id, rule in rules.items():
        if item_id in answers and answers[item_id] in rule["naar"]:
            item = items.get(item_id)
            out.append(Finding(item_id, room, rule["grad"], bool(rule.get("kritisk")),
                               _responsible(rule.get("ansvarlig", "kommune"), svar),
                               rule.get("tekst") or (item.question if item else item_id)))
    return out


def assess(template: Template, svar: dict, rum: list[dict]) -> Assessment:
    """Findings and classification, by the template's explicit rules:
    not assessed when the not-assessed condition holds (no access, not located); unfit
    (uegnet) when a critical item is graded 3; fit after repair (egnet efter udbedring) when
    anything is graded 2 or 3; fit (egnet) otherwise. Grade S (safety) always makes a
    deficiency with the shortest deadline but does not by itself change the answers' class;
    at approval, an open S or grade-3 deficiency of the shelter caps *egnet*
    (`cap_by_open_deficiencies`)."""
    findings = _rule_findings(template.deficiencies, svar, template.by_id, None, svar)
    for item in template.items:
        if item.type == "grad" and svar.get(item.id) in ("1", "2", "3", "S"):
            findings.append(Finding(item.id, None, svar[item.id], item.critical, "kommune",
                                    item.question))
    for n, room in enumerate(rum, start=1):
        findings += _rule_findings(template.room_deficiencies, room, template.room_by_id, n,
                                   svar)
    places = next((svar[i.id] for i in template.items if i.capacity and i.id in svar), None)
    if any(svar.get(k) in v for k, v in template.not_assessed_when.items()):
        klass = IKKE_VURDERET
    elif any(f.grade == "3" and f.critical for f in findings):
        klass = UEGNET
    elif any(f.grade in ("2", "3") for f in findings):
        klass = EGNET_EFTER_UDBEDRING
    else:
        klass = EGNET
    return Assessment(klass, tuple(findings), places)


# --- GeoFA 6122 exchange ---

def _twin(f: dict, value: Any) -> str | None:
    for r in f.get("_restriction") or ():
        if r["value"] == value:
            return r["alias"].strip()
    return None


def to_6122(template: Template, inspection: dict, shelter: dict, codes: dict) -> dict:
    """An inspection as a GeoFA 6122 feature: every field of the published view, exact names,
    codes with their text twins, rooms in the `_1_` … `_4_` blocks, MultiPoint in EPSG:25832.

    `inspection`: id, version id, times, answers (`svar`), rooms (`rum`), approver;
    `shelter`: the shelter's current properties and `x`, `y` in EPSG:25832;
    `codes`: text of the generic codes (cvr_navn, oprindelse, status, offentlig).
    """
    fields, _ = geofa_6122()
    svar, rum = inspection["svar"], inspection["rum"]
    props: dict[str, Any] = {name: None for name in fields if name != "geometri"}
    props.update({
        "temakode": 6122, "temanavn": "t_6122_beskyt_rum_eftersyn_t",
        "objekt_id": inspection["id"], "versions_id": inspection["versions_id"],
        "systid_fra": inspection["systid_fra"], "systid_til": None,
        "oprettet": inspection["oprettet"], "cvr_kode": shelter["cvr_kode"],
        "cvr_navn": codes.get("cvr_navn"), "kommunekode": shelter.get("beliggenhedskommune"),
        "bruger_id": inspection["bruger_id"], "oprindkode": 7,
        "oprindelse": codes.get("oprindelse"), "statuskode": 3, "status": codes.get("status"),
        "off_kode": 3, "offentlig": codes.get("offentlig"),
        "beliggenhedskommune": shelter.get("beliggenhedskommune"),
        "vejkode": shelter.get("vejkode"), "vejnavn": shelter.get("vejnavn"),
        "husnr": shelter.get("husnr"), "postnr": shelter.get("postnr"),
        "postnr_by": shelter.get("postnr_by"), "noegle": shelter["objekt_id"],
        "beskyt_rum_type_kode": 1, "beskyt_rum_type": _twin(fields["beskyt_rum_type_kode"], 1),
        "godkendt_af": inspection.get("godkendt_af"),
        "godkendt_dato": inspection.get("godkendt_dato"),
    })
    for key, value in svar.items():
        props[key] = value
    for n, room in enumerate(rum, start=1):
        for key, value in room.items():
            props[f"_{n}_{key}"] = value
    for name, f in fields.items():
        if name.endswith("_kode") and name[:-5] in fields and props.get(name) is not None:
            props[name[:-5]] = _twin(f, props[name]) or props.get(name[:-5])
    return {"type": "Feature", "id": inspection["id"],
            "geometry": {"type": "MultiPoint", "coordinates": [[round(shelter["x"], 3),
                                                                round(shelter["y"], 3)]]},
            "properties": props}


def validate_6122(feature: Any) -> list[Problem]:
    """Problems of a 6122 feature against GeoFA's official field list, types, lengths,
    ranges, NOT NULL columns and code lists. Empty when valid."""
    fields, table = geofa_6122()
    problems: list[Problem] = []
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        return [Problem("type", "must be a GeoJSON Feature")]
    if not _one_danish_point(feature.get("geometry")):
        problems.append(Problem("geometry", "must be a MultiPoint with one point in EPSG:25832 "
                                            "inside Denmark"))
    props = feature.get("properties")
    if props is None:
        props = {}
    if not isinstance(props, dict):
        return [*problems, Problem("properties", "must be an object")]
    for name in props:
        if name not in fields:
            problems.append(Problem(f"properties.{name}", "is not a field of 6122"))
    for name, f in fields.items():
        if name == "geometri":
            continue
        if name not in props:
            problems.append(Problem(f"properties.{name}", "is missing"))
            continue
        value = props[name]
        if value is None:
            if name in table["not_null"]:
                problems.append(Problem(f"properties.{name}", "may not be null (NOT NULL)"))
            continue
        problems += _check_6122_value(name, f, value, table)
    return problems


def _one_danish_point(geom: Any) -> bool:
    """A GeoJSON MultiPoint of one point whose coordinates are numbers in EPSG:25832 inside
    Denmark (whatever else a client sent is simply not one)."""
    if not isinstance(geom, dict) or geom.get("type") != "MultiPoint":
        return False
    coords = geom.get("coordinates")
    if not isinstance(coords, list) or len(coords) != 1 or not isinstance(coords[0], list) \
            or len(coords[0]) != 2:
        return False
    x, y = coords[0]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y)):
        return False
    return 400_000 <= x <= 910_000 and 6_000_000 <= y <= 6_450_000


def _check_6122_value(name: str, f: dict, value: Any, table: dict) -> list[Problem]:
    t = f.get("_type")
    where = f"properties.{name}"
    if t == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return [Problem(where, f"must be an integer, not {value!r}")]
        allowed = {r["value"] for r in f.get("_restriction") or ()}
        if allowed and value not in allowed:
            return [Problem(where, f"{value} is not in the code list")]
        low_high = table["ranges"].get(name)
        if low_high and not low_high[0] <= value <= low_high[1]:
            return [Problem(where, f"{value} is outside {low_high[0]}–{low_high[1]}")]
    elif t == "boolean" and not isinstance(value, bool):
        return [Problem(where, "must be a boolean")]
    elif t == "date":
        try:
            date.fromisoformat(value)
        except (TypeError, ValueError):
            return [Problem(where, "must be a date")]
    elif t == "uuid":
        try:
            UUID(str(value))
        except ValueError:
            return [Problem(where, "must be a UUID")]
    elif t in ("character varying", "text", "character"):
        if not isinstance(value, str):
            return [Problem(where, "must be text")]
        limit = f.get("_character_maximum_length")
        if limit and len(value) > limit:
            return [Problem(where, f"longer than {limit} characters")]
    return []


def from_6122(template: Template, feature: dict) -> tuple[dict, list[dict]]:
    """The answers and rooms of a 6122 feature (the inverse of `to_6122`)."""
    props = feature.get("properties") or {}
    svar = {i.id: props[i.id] for i in template.items if props.get(i.id) is not None}
    rooms = []
    for n in range(1, template.rooms_max + 1):
        room = {i.id: props[f"_{n}_{i.id}"] for i in template.room_items
                if props.get(f"_{n}_{i.id}") is not None}
        rooms.append(room)
    while rooms and not rooms[-1]:
        rooms.pop()
    return svar, rooms


# --- classification capped by open deficiencies ---

#: A deficiency stays open until an administrator has verified its repair: `udbedret` is the
#: responsible party's word that it is fixed, and a failed verification sends it back to
#: `aaben`. Statuses of `ly.mangel` (migration 0003).
OPEN_DEFICIENCY_STATUSES = ("aaben", "planlagt", "udbedret")
#: Grades of a deficiency that, while open, keep an approval from classifying *egnet*:
#: S (sikkerhed, safety) and 3 (kritisk).
CAPPING_GRADES = ("S", "3")


@dataclass(frozen=True)
class OpenDeficiency:
    """A deficiency of the shelter not yet verified: one found by the inspection being
    approved (`inspection` None) or one still open from an earlier inspection."""

    grade: str
    item: str
    room: int | None = None
    inspection: UUID | None = None
    status: str = "aaben"


@dataclass(frozen=True)
class Classification:
    egnethed_kode: int
    #: Why the class is lower than the answers alone give (Danish), or None.
    reason: str | None = None


def _describe(d: OpenDeficiency) -> str:
    text = f"{'S' if d.grade == 'S' else 'grad-' + d.grade}-mangel {d.item}"
    if d.room is not None:
        text += f" (rum {d.room})"
    if d.inspection is not None:
        text += f" fra eftersyn {d.inspection}"
    return text


def cap_by_open_deficiencies(egnethed_kode: int,
                             deficiencies: list[OpenDeficiency] | tuple) -> Classification:
    """The approval's classification: `egnethed_kode` (the checklist's outcome) capped to
    *egnet efter udbedring* while one of `deficiencies` is open with grade S or 3.

    Only *egnet* is capped; *egnet efter udbedring*, *uegnet* and *ikke vurderet* stand as
    they are. A deficiency counts whichever inspection found it; one that is verificeret
    (or of grade 1 or 2) does not."""
    capping = [d for d in deficiencies
               if d.grade in CAPPING_GRADES and d.status in OPEN_DEFICIENCY_STATUSES]
    if egnethed_kode != EGNET or not capping:
        return Classification(egnethed_kode)
    if len(capping) == 1:
        reason = (f"begrænset af åben {_describe(capping[0])}: højst egnet efter udbedring, "
                  "indtil den er verificeret")
    else:
        reason = (f"begrænset af {len(capping)} åbne S- eller grad-3-mangler: højst egnet efter "
                  "udbedring, indtil de er verificeret: "
                  + "; ".join(_describe(d) for d in capping))
    return Classification(EGNET_EFTER_UDBEDRING, reason)
