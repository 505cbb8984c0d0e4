"""The planner's model: settings, scenarios, a theme's planning profile, and its SQL.

A *plan run* (`ly.plankoersel`, migration 0014) assigns the residents of a population grid
(`ly.befolkningsnet`, `ly.befolkningscelle`) to the places of a theme's objects within a
walking limit (ZUPLA, the Swiss Zuweisungsplanung, in Ly's terms): the planner of
`loaders.planning` computes it, this module describes it. Nothing here knows the web.

- `Settings`: the walking limit (minutes, 30 by default, at most 60), the walking speed
  (km/h) and the detour factor (walking distance ÷ straight-line distance). The limit in
  walking metres is `minutes × speed`; an object is within reach of a cell when the
  straight-line distance from the cell's centre is at most `limit ÷ detour`. The cost of an
  assignment is its walking distance in whole metres (`round(straight line × detour)`).
- `Scenario`: the same run with objects left out by coded attributes (e.g. after the
  inspections: the unfit), by a hand-picked list, or with objects added that the profile
  otherwise leaves out (planned ones).
- `Profile`: what a theme's planning counts: the figure holding the places (the theme's first
  `figures` entry by default), which codes leave an object out of the base plan, which codes
  are "planned", and the named scenarios a theme's workflow offers. A theme's own workflow
  registers its profile (`register_profile`); without one, every current object with places
  counts.

The SQL here is built from the theme's descriptor (view, attributes) with bound parameters;
the names of attributes come from the descriptor, never from a request.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from psycopg import sql

from datamodel import query
from datamodel.codelists import load_codelists
from datamodel.themes import Theme

#: ZUPLA: within about 30 minutes' walk, 60 at most.
DEFAULT_MINUTES = 30.0
MAX_MINUTES = 60.0
DEFAULT_SPEED_KMH = 4.5
DEFAULT_DETOUR = 1.3
SCOPES = ("kommune", "national")
#: A run's scenario name when nothing is left out or added.
BASE = "basis"


class PlanInputError(ValueError):
    """A setting or scenario that cannot be used; `field` names it (e.g. `scenarie.udelad`)."""

    def __init__(self, field_name: str, detail: str):
        super().__init__(f"{field_name}: {detail}")
        self.field = field_name
        self.detail = detail


@dataclass(frozen=True)
class Settings:
    minutter: float = DEFAULT_MINUTES
    hastighed_kmt: float = DEFAULT_SPEED_KMH
    omvejsfaktor: float = DEFAULT_DETOUR
    #: One problem for the whole country instead of one per municipality (national runs).
    tvaers_af_kommuner: bool = False

    @property
    def limit_m(self) -> float:
        """The walking limit in metres."""
        return self.minutter * self.hastighed_kmt * 1000.0 / 60.0

    @property
    def radius_m(self) -> float:
        """The straight-line distance within which an object is in reach."""
        return self.limit_m / self.omvejsfaktor

    def as_json(self) -> dict:
        return {**asdict(self), "graense_m": round(self.limit_m, 3),
                "radius_m": round(self.radius_m, 3), "omkostning": "gangafstand i hele meter"}

    @classmethod
    def parse(cls, raw: Any, prefix: str = "indstillinger") -> "Settings":
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise PlanInputError(prefix, "must be an object")
        known = {"minutter", "hastighed_kmt", "omvejsfaktor", "tvaers_af_kommuner"}
        for key in raw:
            if key not in known:
                raise PlanInputError(f"{prefix}.{key}", "is not a setting (minutter, "
                                     "hastighed_kmt, omvejsfaktor, tvaers_af_kommuner)")
        out = {}
        for key, low, high in (("minutter", 1, MAX_MINUTES), ("hastighed_kmt", 1, 8),
                               ("omvejsfaktor", 1, 3)):
            if key in raw:
                v = raw[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
                    raise PlanInputError(f"{prefix}.{key}", "must be a number")
                if not low <= v <= high:
                    raise PlanInputError(f"{prefix}.{key}", f"must be between {low} and {high}")
                out[key] = float(v)
        if "tvaers_af_kommuner" in raw:
            if not isinstance(raw["tvaers_af_kommuner"], bool):
                raise PlanInputError(f"{prefix}.tvaers_af_kommuner", "must be true or false")
            out["tvaers_af_kommuner"] = raw["tvaers_af_kommuner"]
        return cls(**out)


@dataclass(frozen=True)
class Scenario:
    """Which objects a run leaves out or adds beyond its theme's base plan."""

    navn: str = BASE
    #: attribute -> codes: objects with one of these codes are left out.
    udelad: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: attribute -> codes: objects the profile leaves out for these codes count after all
    #: (e.g. planned ones).
    medtag: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: objects left out by hand (objekt_id).
    udelad_objekter: tuple[uuid.UUID, ...] = ()

    @property
    def is_base(self) -> bool:
        return not (self.udelad or self.medtag or self.udelad_objekter)

    def as_json(self) -> dict:
        return {"navn": self.navn,
                "udelad": {k: list(v) for k, v in sorted(self.udelad.items())},
                "medtag": {k: list(v) for k, v in sorted(self.medtag.items())},
                "udelad_objekter": sorted(str(o) for o in self.udelad_objekter)}


@dataclass(frozen=True)
class Profile:
    """What a theme's planning counts (see the module's docstring)."""

    #: The attribute holding the places; None: the theme's first figure.
    places: str | None = None
    #: attribute -> codes that leave an object out of the base plan.
    excluded: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: attribute -> codes of objects that are planned (a scenario may add them).
    planned: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: Named scenarios: name -> (Danish title, Scenario).
    presets: dict[str, tuple[str, Scenario]] = field(default_factory=dict)

    def places_field(self, theme: Theme) -> str:
        name = self.places or (theme.figures[0].field if theme.figures else None)
        if name is None or name not in theme.fields_by_name:
            raise PlanInputError("tema", f"{theme.collection_id} has no places to plan with")
        return name


_PROFILES: dict[int, Profile] = {}


def register_profile(temakode: int, profile: Profile) -> None:
    """A theme's own planning profile (its workflow module calls this)."""
    _PROFILES[temakode] = profile


def registered_profile(temakode: int) -> Profile | None:
    return _PROFILES.get(temakode)


def plannable(theme: Theme) -> bool:
    """A point theme with a figure (places) can be planned with."""
    return not theme.is_area and bool(theme.figures)


def parse_scenario(theme: Theme, profile: Profile, raw: Any,
                   prefix: str = "scenarie") -> Scenario:
    """A scenario from a request: a preset's name, or an object with `navn`, `udelad`
    ({attribute: [codes]}), `medtag` ({attribute: [codes]}) and `udelad_objekter` ([uuid]).
    Attributes must be coded attributes of the theme, codes codes of their lists."""
    if raw is None or raw == BASE:
        return Scenario()
    if isinstance(raw, str):
        if raw not in profile.presets:
            names = ", ".join([BASE, *sorted(profile.presets)])
            raise PlanInputError(prefix, f"{raw!r} is not a scenario ({names})")
        return profile.presets[raw][1]
    if not isinstance(raw, dict):
        raise PlanInputError(prefix, "must be a scenario's name or an object")
    unknown = set(raw) - {"navn", "udelad", "medtag", "udelad_objekter"}
    if unknown:
        raise PlanInputError(f"{prefix}.{sorted(unknown)[0]}", "is not a member of a scenario "
                             "(navn, udelad, medtag, udelad_objekter)")
    codelists = load_codelists()

    def codes(member: str) -> dict[str, tuple[int, ...]]:
        value = raw.get(member) or {}
        if not isinstance(value, dict):
            raise PlanInputError(f"{prefix}.{member}", "must be an object {attribute: [codes]}")
        out = {}
        for name, values in value.items():
            where = f"{prefix}.{member}.{name}"
            f = theme.fields_by_name.get(name)
            if f is None or not f.codelist:
                raise PlanInputError(where, f"is not a coded attribute of {theme.title}")
            if not isinstance(values, list) or not values or not all(
                    isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise PlanInputError(where, "must be a list of codes")
            allowed = codelists[f.codelist].all_codes()
            bad = [v for v in values if v not in allowed]
            if bad:
                raise PlanInputError(where, f"{bad[0]} is not a code of {f.codelist}")
            out[name] = tuple(sorted(set(values)))
        return out

    objects = raw.get("udelad_objekter") or []
    if not isinstance(objects, list):
        raise PlanInputError(f"{prefix}.udelad_objekter", "must be a list of objekt_id")
    ids = []
    for i, o in enumerate(objects):
        try:
            ids.append(uuid.UUID(str(o)))
        except ValueError:
            raise PlanInputError(f"{prefix}.udelad_objekter[{i}]", "is not a UUID") from None
    navn = raw.get("navn", "scenarie")
    if not isinstance(navn, str) or not navn.strip() or len(navn) > 100 or "\x00" in navn:
        raise PlanInputError(f"{prefix}.navn", "must be a text of 1-100 characters")
    scenario = Scenario(navn=navn.strip(), udelad=codes("udelad"), medtag=codes("medtag"),
                        udelad_objekter=tuple(sorted(set(ids))))
    if scenario.is_base:
        return Scenario()
    if scenario.navn == BASE:
        raise PlanInputError(f"{prefix}.navn", f"{BASE!r} names the run without a scenario")
    return scenario


def scenario_from_json(data: dict) -> Scenario:
    return Scenario(navn=data.get("navn", BASE),
                    udelad={k: tuple(v) for k, v in (data.get("udelad") or {}).items()},
                    medtag={k: tuple(v) for k, v in (data.get("medtag") or {}).items()},
                    udelad_objekter=tuple(uuid.UUID(o) for o in data.get("udelad_objekter", [])))


# --- SQL ------------------------------------------------------------------------------------------

def _code_filters(theme: Theme, profile: Profile, scenario: Scenario
                  ) -> tuple[list[sql.Composable], list]:
    """Clauses on the theme's view `t` leaving out what the profile and the scenario leave
    out (an attribute that is NULL leaves nothing out)."""
    clauses: list[sql.Composable] = []
    params: list = []
    for name in sorted(set(profile.excluded) | set(scenario.udelad)):
        if name not in theme.fields_by_name:
            raise PlanInputError("scenarie", f"{name} is not an attribute of {theme.title}")
        out = set(profile.excluded.get(name, ())) - set(scenario.medtag.get(name, ()))
        out |= set(scenario.udelad.get(name, ()))
        if out:
            clauses.append(sql.SQL("NOT coalesce(t.{} = ANY(%s::int[]), false)").format(
                sql.Identifier(name)))
            params.append(sorted(out))
    if scenario.udelad_objekter:
        clauses.append(sql.SQL("t.objekt_id <> ALL(%s::uuid[])"))
        params.append(list(scenario.udelad_objekter))
    return clauses, params


def objects_sql(theme: Theme, profile: Profile, scenario: Scenario,
                kommunekode: int | None) -> tuple[sql.Composed, list]:
    """The objects a run plans with, as the connection's actor sees them: objekt_id,
    versions_id, systid_fra, x, y (EPSG:25832), places and municipality, in objekt_id order."""
    places = profile.places_field(theme)
    clauses, params = _code_filters(theme, profile, scenario)
    clauses.insert(0, sql.SQL("t.{} > 0").format(sql.Identifier(places)))
    if kommunekode is not None:
        clauses.append(sql.SQL("t.beliggenhedskommune = %s"))
        params.append(kommunekode)
    stmt = sql.SQL("""
        SELECT t.objekt_id, t.versions_id, t.systid_fra, ST_X(t.geometri), ST_Y(t.geometri),
               t.{places}, t.beliggenhedskommune
        FROM {view} t WHERE {where} ORDER BY t.objekt_id""").format(
        places=sql.Identifier(places), view=query.views(False, theme)[0],
        where=sql.SQL(" AND ").join(clauses))
    return stmt, params


def cells_sql(net_id: int, kommunekode: int | None) -> tuple[sql.Composed, list]:
    """A grid's populated cells (in a municipality): celle_id, x, y of the centre, residents,
    municipality and the postal district holding the centre, in celle_id order."""
    where = sql.SQL("c.net_id = %s AND c.indbyggere > 0")
    params: list = [net_id]
    if kommunekode is not None:
        where = sql.SQL("{} AND c.kommunekode = %s").format(where)
        params.append(kommunekode)
    return sql.SQL("""
        SELECT c.celle_id, ST_X(c.centrum), ST_Y(c.centrum), c.indbyggere, c.kommunekode,
               c.postnr
        FROM ly.befolkningscelle c WHERE {where} ORDER BY c.celle_id""").format(
        where=where), params


#: The newest grid (a real one before a synthetic one of the same age is no rule: newest).
NEWEST_GRID_SQL = sql.SQL("SELECT id FROM ly.befolkningsnet ORDER BY indlaest DESC, id DESC "
                          "LIMIT 1")
GRID_SQL = sql.SQL("SELECT id, kilde, syntetisk, celle_m, periode, sha256, celler, indbyggere, "
                   "indlaest FROM ly.befolkningsnet WHERE id = %s")

#: A run's summary columns, as the API shows them.
RUN_COLUMNS = ("id", "temakode", "omfang", "kommunekode", "net_id", "scenarie", "indstillinger",
               "input", "sammenlignet_med", "status", "resultat", "subjekt", "oprettet",
               "afsluttet")


def runs_sql(*, kommunekode: int | None = None, run_id: int | None = None,
             limit: int = 100) -> tuple[sql.Composed, list]:
    """Finished runs the actor may read (row-level security), newest first."""
    clauses = [sql.SQL("k.status = 'faerdig'")]
    params: list = []
    if kommunekode is not None:
        clauses.append(sql.SQL("(k.kommunekode = %s OR k.omfang = 'national')"))
        params.append(kommunekode)
    if run_id is not None:
        clauses.append(sql.SQL("k.id = %s"))
        params.append(run_id)
    cols = sql.SQL(", ").join(sql.SQL("k.{}").format(sql.Identifier(c)) for c in RUN_COLUMNS)
    return sql.SQL("SELECT {cols} FROM ly.plankoersel k WHERE {w} ORDER BY k.id DESC "
                   "LIMIT %s").format(cols=cols, w=sql.SQL(" AND ").join(clauses)), \
        params + [limit]


def area_rows_sql(run_id: int, by: str, kommunekode: int | None = None
                  ) -> tuple[sql.Composed, list]:
    """Residents, within reach and covered per area of a run: per municipality (`by`
    'kommune') or postal district ('postnr'), largest deficit first."""
    if by == "kommune":
        key, name = sql.SQL("c.kommunekode"), sql.SQL(
            "(SELECT navn FROM ly.kommune WHERE kommunekode = c.kommunekode)")
    else:
        key, name = sql.SQL("c.postnr"), sql.SQL(
            "(SELECT navn FROM ly.postnummer WHERE postnr = c.postnr)")
    where = sql.SQL("c.koersel_id = %s")
    params: list = [run_id]
    if kommunekode is not None:
        where = sql.SQL("{} AND c.kommunekode = %s").format(where)
        params.append(kommunekode)
    return sql.SQL("""
        SELECT {key} AS omraade, {name} AS navn, sum(c.indbyggere)::bigint,
               sum(c.inden_for_raekkevidde)::bigint, sum(c.daekket)::bigint,
               sum(c.ikke_daekket)::bigint, count(*)
        FROM ly.plankoersel_celle c WHERE {where}
        GROUP BY {key} ORDER BY sum(c.ikke_daekket) DESC, {key}""").format(
        key=key, name=name, where=where), params


def comparison_sql(run_id: int, base_id: int, by: str, kommunekode: int | None = None
                   ) -> tuple[sql.Composed, list]:
    """Covered residents per area in a scenario run against its base run: (area, name,
    covered in the base, covered in the scenario, difference), largest loss first."""
    key = "kommunekode" if by == "kommune" else "postnr"
    name = ("(SELECT navn FROM ly.kommune WHERE kommunekode = a.omraade)" if by == "kommune"
            else "(SELECT navn FROM ly.postnummer WHERE postnr = a.omraade)")
    where = "" if kommunekode is None else "AND c.kommunekode = %s"
    stmt = sql.SQL(f"""
        WITH a AS (
            SELECT c.{key} AS omraade,
                   sum(c.daekket) FILTER (WHERE c.koersel_id = %s)::bigint AS basis,
                   sum(c.daekket) FILTER (WHERE c.koersel_id = %s)::bigint AS scenarie,
                   sum(c.inden_for_raekkevidde) FILTER (WHERE c.koersel_id = %s)::bigint
                       AS basis_rk,
                   sum(c.inden_for_raekkevidde) FILTER (WHERE c.koersel_id = %s)::bigint
                       AS scenarie_rk
            FROM ly.plankoersel_celle c
            WHERE c.koersel_id IN (%s, %s) {where}
            GROUP BY c.{key})
        SELECT a.omraade, {name}, coalesce(a.basis, 0), coalesce(a.scenarie, 0),
               coalesce(a.scenarie, 0) - coalesce(a.basis, 0),
               coalesce(a.basis_rk, 0), coalesce(a.scenarie_rk, 0)
        FROM a ORDER BY coalesce(a.scenarie, 0) - coalesce(a.basis, 0), a.omraade""")
    params = [base_id, run_id, base_id, run_id, base_id, run_id]
    if kommunekode is not None:
        params.append(kommunekode)
    return stmt, params


def cells_geojson_sql(run_id: int, kommunekode: int | None, after: str | None, limit: int,
                      decimals: int = 6) -> tuple[sql.Composed, list]:
    """A page of a run's cells as GeoJSON features (CRS84; the cell's square): aggregates
    only (residents, within reach, covered, uncovered, shelters used)."""
    clauses = [sql.SQL("r.koersel_id = %s")]
    params: list = [run_id]
    if kommunekode is not None:
        clauses.append(sql.SQL("r.kommunekode = %s"))
        params.append(kommunekode)
    if after is not None:
        clauses.append(sql.SQL("r.celle_id > %s"))
        params.append(after)
    stmt = sql.SQL("""
        SELECT r.celle_id, json_build_object(
            'type', 'Feature', 'id', r.celle_id,
            'geometry', ST_AsGeoJSON(ST_Transform(c.geometri, 4326), %s)::json,
            'properties', json_build_object(
                'celle_id', r.celle_id, 'kommunekode', r.kommunekode, 'postnr', r.postnr,
                'indbyggere', r.indbyggere, 'inden_for_raekkevidde', r.inden_for_raekkevidde,
                'daekket', r.daekket, 'ikke_daekket', r.ikke_daekket, 'rum', r.rum,
                'gennemsnit_m', CASE WHEN r.daekket > 0
                                THEN round(r.afstand_m::numeric / r.daekket) END))::text
        FROM ly.plankoersel_celle r
        JOIN ly.plankoersel k ON k.id = r.koersel_id
        JOIN ly.befolkningscelle c ON c.net_id = k.net_id AND c.celle_id = r.celle_id
        WHERE {where} ORDER BY r.celle_id LIMIT %s""").format(
        where=sql.SQL(" AND ").join(clauses))
    return stmt, [decimals, *params, limit]


def objects_geojson_sql(theme: Theme, run_id: int, kommunekode: int | None,
                        decimals: int = 6) -> tuple[sql.Composed, list]:
    """A run's objects with their load, as GeoJSON features (CRS84): only those the actor
    may see (the run's rows and the theme's current view both answer to row-level
    security); the label is the theme's, if the actor may read it."""
    clauses = [sql.SQL("o.koersel_id = %s")]
    params: list = [run_id]
    if kommunekode is not None:
        clauses.append(sql.SQL("o.kommunekode = %s"))
        params.append(kommunekode)
    label = sql.SQL("t.{}").format(sql.Identifier(theme.label)) \
        if theme.label in theme.fields_by_name else sql.SQL("NULL::text")
    stmt = sql.SQL("""
        SELECT json_build_object(
            'type', 'Feature', 'id', o.objekt_id,
            'geometry', ST_AsGeoJSON(ST_Transform(t.geometri, 4326), %s)::json,
            'properties', json_build_object(
                'objekt_id', o.objekt_id, 'versions_id', o.versions_id, 'navn', {label},
                'kommunekode', o.kommunekode, 'kapacitet', o.kapacitet,
                'belaegning', o.belaegning, 'ledige', o.kapacitet - o.belaegning,
                'andel', round(o.belaegning::numeric / nullif(o.kapacitet, 0), 3),
                'celler', o.celler))::text
        FROM ly.plankoersel_objekt o
        JOIN {view} t ON t.objekt_id = o.objekt_id
        WHERE {where} ORDER BY o.objekt_id""").format(
        label=label, view=query.views(False, theme)[0], where=sql.SQL(" AND ").join(clauses))
    return stmt, [decimals, *params]


def summary_sql(run_id: int, kommunekode: int | None = None
                ) -> tuple[tuple[sql.Composed, list], tuple[sql.Composed, list]]:
    """Two statements: a run's cell totals (in a municipality: residents, within reach,
    covered, uncovered, cells, split cells, walking metres of the covered), and its objects'
    totals per municipality (objects, capacity, load: aggregates, so they count the objects
    the actor may not see too)."""
    where = sql.SQL("koersel_id = %s")
    params: list = [run_id]
    if kommunekode is not None:
        where = sql.SQL("koersel_id = %s AND kommunekode = %s")
        params.append(kommunekode)
    cells = sql.SQL("""
        SELECT coalesce(sum(indbyggere), 0)::bigint,
               coalesce(sum(inden_for_raekkevidde), 0)::bigint,
               coalesce(sum(daekket), 0)::bigint, coalesce(sum(ikke_daekket), 0)::bigint,
               count(*), count(*) FILTER (WHERE rum > 1), coalesce(sum(afstand_m), 0)::bigint
        FROM ly.plankoersel_celle WHERE {w}""").format(w=where)
    objects = sql.SQL("""
        SELECT coalesce(sum(objekter), 0)::bigint, coalesce(sum(kapacitet), 0)::bigint,
               coalesce(sum(belaegning), 0)::bigint
        FROM ly.plankoersel_kommune WHERE {w}""").format(w=where)
    return (cells, params), (objects, list(params))
