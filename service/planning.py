"""Planning (issue 18): the planner's runs over HTTP, and the planner's map.

- `GET /planlaegning/koersler`: the runs the caller may read, newest first
  (`?kommunekode=` its municipality's and the national ones, `?limit=`).
- `POST /planlaegning/koersler`: make a run (`loaders.planning`): `kommunekode` (absent or
  null: national), `indstillinger` (`minutter`, `hastighed_kmt`, `omvejsfaktor`,
  `tvaers_af_kommuner`), `scenarie` (a name such as `uden-uegnede`, or `{navn, udelad,
  medtag, udelad_objekter}`), `sammenlign_med` (a base run), `net_id` (a population grid;
  default the newest), `tema` (default the first theme with places). 201 with the run and
  `Location`; a scenario without `sammenlign_med` is compared with the newest matching base
  run, made first if there is none.
- `GET /planlaegning/koersler/{id}`: the run: settings, scenario, inputs' versions, result,
  totals, per area (municipalities of a national run, postal districts of a municipal one)
  and, for a scenario, the difference in covered residents per area against its base.
- `GET /planlaegning/koersler/{id}/celler`: its cells as GeoJSON (the 100 m squares, CRS84):
  residents, within reach, covered, uncovered, shelters used, mean walking metres: aggregates
  only (`?kommunekode=`, `?limit=` up to 100 000, `?efter=` the next page's cell).
- `GET /planlaegning/koersler/{id}/objekter`: its objects with capacity and load as GeoJSON:
  only those the caller may see (row-level security on the run's rows and on the theme's
  view, migration 0014).
- `GET /planlaegning/kort?koersel={id}[&kommune=]`: the map (Danish): covered and uncovered
  residents per cell and the objects' load, with legends (a national run without `kommune`:
  its municipalities, coloured by the share covered).

Who: reading needs an authority (municipal roles, national roles, planner; the public 401,
others 403); row-level security decides which runs (migration 0014). Making a run needs a
national reader or administrator, or a municipal administrator for its own municipality, at
NSIS substantial or high. Nothing here names a theme: places, label and view come from the
descriptor and its planning profile.
"""

from __future__ import annotations

import html
import re
from dataclasses import asdict

import folium
import orjson
import psycopg
from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from datamodel import planning as model
from datamodel import themes
from datamodel.access import (MUNICIPAL_ADMIN, MUNICIPAL_EDITOR, NATIONAL_ADMIN,
                              NATIONAL_READER, PLANNER)
from datamodel.planning import PlanInputError, Settings
from loaders import planning
from service import params
from service.auth import current_actor, forbidden, unauthorized
from service.db import acting
from service.errors import Problem, bad_request, from_database, not_found
from service.http import GEOJSON, JSON, html_response, json_response, link, url
from service.openapi_planlaegning import CELLS, MAP, OBJECTS, RUN, RUNS, route
from service.maps import (CHOROPLETH_COLOURS, DENMARK_BOUNDS, NO_DATA_COLOUR, OSM_ATTRIBUTION,
                          OSM_URL, ZERO_COLOUR, _check_local, _local_assets, _num,
                          class_breaks, class_colour, with_nonce)
from service.transactions import read_json

router = APIRouter(tags=["Planlægning"])

READERS = (MUNICIPAL_EDITOR, MUNICIPAL_ADMIN, NATIONAL_READER, NATIONAL_ADMIN, PLANNER)
#: A run's id in a path: digits (FastAPI refuses anything else with a 400 problem).
RUN_ID = Path(pattern=r"^[0-9]{1,18}$", description="The run's id")
BODY_MEMBERS = {"kommunekode", "indstillinger", "scenarie", "sammenlign_med", "net_id", "tema"}
CELLS_DEFAULT, CELLS_MAX = 10_000, 100_000
#: Uncovered residents per cell (light to dark reds), and the objects' load.
UNCOVERED_COLOURS = ["#fee5d9", "#fcae91", "#fb6a4a", "#de2d26", "#a50f15"]
LOAD_CLASSES = ((0.0, "#bdbdbd", "Ubrugt"), (0.5, "#fdd49e", "Under halvt fyldt"),
                (0.9, "#fc8d59", "Halvt til 90 % fyldt"), (1.0, "#d7301f", "Over 90 % fyldt"))
SYNTHETIC_NOTE = ("Befolkningen er syntetisk: Lys demonet, FOLK1A-folketallet fordelt på "
                  "100 m-celler. Det er ikke Danmarks Statistiks kvadratnet.")


# --- who may ------------------------------------------------------------------------------------

async def _reader(request: Request):
    actor = await current_actor(request)
    if not actor.authenticated:
        raise unauthorized("planning is for authorities: sign in")
    if not actor.has(*READERS):
        raise forbidden("planning needs a municipal, national or planner role")
    return actor


async def _runner(request: Request, kommunekode: int | None):
    actor = await _reader(request)
    if not actor.may_write_level:
        raise forbidden("making a run needs NSIS assurance substantial or high")
    if actor.has(NATIONAL_READER, NATIONAL_ADMIN):
        return actor
    if actor.has(MUNICIPAL_ADMIN):
        if kommunekode is None:
            raise forbidden("a municipal administrator makes runs of its own municipality",
                            "kommunekode")
        if kommunekode not in actor.kommuner:
            raise forbidden(f"municipality {kommunekode} is not yours", "kommunekode")
        return actor
    raise forbidden("runs are made by national roles and municipal administrators")


def _input_problem(exc: PlanInputError) -> Problem:
    return Problem(422, f"{exc.field}: {exc.detail}", kind="invalid-body",
                   errors=[{"field": exc.field, "detail": exc.detail}])


def _int_member(body: dict, name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _input_problem(PlanInputError(name, f"must be an integer {low}-{high}"))
    return value


def _run_id(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise bad_request("koersel_id", f"{raw!r} is not a run id")
    return int(raw)


def _kommune_param(request: Request, name: str = "kommunekode") -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or not 100 <= int(raw) <= 999:
        raise bad_request(name, "a municipality code has three digits (e.g. 101)")
    return int(raw)


def _theme_of(run: dict):
    try:
        return themes.by_temakode(run["temakode"])
    except KeyError:
        raise not_found(f"Temaet for kørsel {run['id']}") from None


# --- the runs -----------------------------------------------------------------------------------

def _links(request: Request, run_id: int) -> list[dict]:
    base = f"/planlaegning/koersler/{run_id}"
    return [link(url(request, base), "self", JSON, "Kørslen"),
            link(url(request, base + "/celler"), "celler", GEOJSON, "Celler (GeoJSON)"),
            link(url(request, base + "/objekter"), "objekter", GEOJSON,
                 "Objekter og belægning (GeoJSON)"),
            link(url(request, "/planlaegning/kort", koersel=run_id), "kort", "text/html",
                 "Kort")]


@router.get(RUNS, summary="Planlægningskørsler (myndigheder)", response_class=Response,
            **route(RUNS, "get"))
async def list_runs(request: Request) -> Response:
    params.check_known(request, {"kommunekode", "limit"})
    await _reader(request)
    kommune = _kommune_param(request)
    limit = params.parse_limit(request.query_params.get("limit"), 100, 1000)
    async with acting(request) as conn:
        runs = await planning.drive_async(conn, planning.runs_steps(kommune, limit))
    for r in runs:
        r["links"] = _links(request, r["id"])
    return json_response({"koersler": runs, "links": [
        link(url(request, "/planlaegning/koersler", kommunekode=kommune), "self", JSON,
             "Dette dokument")]})


async def _detail(conn, request: Request, run: dict) -> dict:
    run_id = run["id"]
    by = "kommune" if run["omfang"] == "national" else "postnr"
    totals = await planning.drive_async(conn, planning.totals_steps(run_id))
    areas = await planning.drive_async(conn, planning.areas_steps(run_id, by))
    out = {**run, "totaler": {**asdict(totals), "andel_daekket": totals.andel_daekket},
           "omraade_art": by, "omraader": [asdict(a) for a in areas]}
    base = run.get("sammenlignet_med")
    if base is not None:
        comp = await planning.drive_async(conn, planning.comparison_steps(run_id, base, by))
        out["sammenligning"] = {"basis": base, "omraader": [asdict(c) for c in comp],
                                "forskel": sum(c.forskel for c in comp)}
    out["links"] = _links(request, run_id)
    return out


@router.get(RUN, summary="En planlægningskørsel", response_class=Response,
            **route(RUN, "get"))
async def get_run(request: Request, koersel_id: str = RUN_ID) -> Response:
    params.check_known(request, set())
    await _reader(request)
    run_id = _run_id(koersel_id)
    async with acting(request) as conn:
        run = await planning.drive_async(conn, planning.run_steps(run_id))
        if run is None:
            raise not_found(f"Kørsel {run_id}")
        body = await _detail(conn, request, run)
    return json_response(body)


def _parse_body(body) -> dict:
    if not isinstance(body, dict):
        raise _input_problem(PlanInputError("body", "must be a JSON object"))
    unknown = sorted(set(body) - BODY_MEMBERS)
    if unknown:
        raise _input_problem(PlanInputError(unknown[0], "is not a member (" + ", ".join(
            sorted(BODY_MEMBERS)) + ")"))
    tema = body.get("tema")
    if tema is not None and not isinstance(tema, str):
        raise _input_problem(PlanInputError("tema", "must be a collection id"))
    try:
        theme = planning.plan_theme(tema)
        profile = planning.profile_for(theme)
        return {
            "theme": theme,
            "kommunekode": _int_member(body, "kommunekode", 100, 999),
            "settings": Settings.parse(body.get("indstillinger")),
            "scenario": model.parse_scenario(theme, profile, body.get("scenarie")),
            "sammenlign_med": _int_member(body, "sammenlign_med", 1, 2**62),
            "net_id": _int_member(body, "net_id", 1, 2**31 - 1),
        }
    except PlanInputError as exc:
        raise _input_problem(exc) from None


@router.post(RUNS, summary="Lav en planlægningskørsel", response_class=Response,
             status_code=201, **route(RUNS, "post"))
async def make_run(request: Request) -> Response:
    params.check_known(request, set())
    await _reader(request)
    req = _parse_body(await read_json(request, (JSON,)))
    kommune = req["kommunekode"]
    await _runner(request, kommune)
    settings = req["settings"]
    if settings.tvaers_af_kommuner and kommune is not None:
        raise _input_problem(PlanInputError("indstillinger.tvaers_af_kommuner",
                                            "applies to national runs only"))
    try:
        async with acting(request) as conn:
            if kommune is not None:
                rows = await (await conn.execute(
                    "SELECT 1 FROM ly.kommune WHERE kommunekode = %s", [kommune])).fetchall()
                if not rows:
                    raise _input_problem(PlanInputError("kommunekode",
                                                        f"{kommune} is not a municipality"))
            made = await _make(conn, req)
            run = await planning.drive_async(conn, planning.run_steps(made.koersel_id))
            body = await _detail(conn, request, run)
    except PlanInputError as exc:
        raise _input_problem(exc) from None
    except psycopg.errors.InsufficientPrivilege:
        raise forbidden("row-level security refused the run") from None
    except psycopg.Error as exc:
        problem = from_database(exc)
        if problem is None:
            raise
        raise problem from None
    if made.made_base:
        body["basis_lavet"] = made.basis_id
    return json_response(body, status=201, headers={
        "Location": url(request, f"/planlaegning/koersler/{made.koersel_id}")})


async def _make(conn, req: dict) -> planning.Made:
    """`loaders.planning.plan_steps`, with the computing in a worker thread."""
    theme, settings, scenario = req["theme"], req["settings"], req["scenario"]
    kommune, net_id = req["kommunekode"], req["net_id"]
    inputs = await planning.drive_async(conn, planning.read_steps(theme, settings, scenario,
                                                                  kommune, net_id))
    base, made_base = None, False
    if not scenario.is_base:
        if req["sammenlign_med"] is not None:
            base = await planning.drive_async(conn, planning.check_base_steps(
                req["sammenlign_med"], inputs))
        else:
            base = await planning.drive_async(conn, planning.base_run_steps(inputs))
            if base is None:
                base_inputs = await planning.drive_async(conn, planning.read_steps(
                    theme, settings, model.Scenario(), kommune, inputs.grid["id"]))
                sol = await run_in_threadpool(planning.compute, base_inputs)
                base = await planning.drive_async(conn, planning.store_steps(base_inputs, sol))
                made_base = True
    sol = await run_in_threadpool(planning.compute, inputs)
    run_id = await planning.drive_async(conn, planning.store_steps(inputs, sol,
                                                                   sammenlignet_med=base))
    return planning.Made(run_id, base, made_base)


# --- cells and objects as GeoJSON -----------------------------------------------------------------

async def _readable_run(conn, run_id: int) -> dict:
    run = await planning.drive_async(conn, planning.run_steps(run_id))
    if run is None:
        raise not_found(f"Kørsel {run_id}")
    return run


@router.get(CELLS, summary="En kørsels celler (GeoJSON, aggregeret)",
            response_class=Response, **route(CELLS, "get"))
async def run_cells(request: Request, koersel_id: str = RUN_ID) -> Response:
    params.check_known(request, {"kommunekode", "limit", "efter"})
    await _reader(request)
    run_id = _run_id(koersel_id)
    kommune = _kommune_param(request)
    limit = params.parse_limit(request.query_params.get("limit"), CELLS_DEFAULT, CELLS_MAX)
    cursor = request.query_params.get("efter")
    if cursor is not None and not re.fullmatch(r"[0-9a-z_]{1,24}", cursor):
        raise bad_request("efter", "is not a cell id")
    async with acting(request) as conn:
        await _readable_run(conn, run_id)
        stmt, args = model.cells_geojson_sql(run_id, kommune, cursor, limit + 1)
        rows = await (await conn.execute(stmt, args)).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    links = [link(url(request, f"/planlaegning/koersler/{run_id}/celler", kommunekode=kommune,
                      limit=limit, efter=cursor), "self", GEOJSON, "Denne side")]
    if more:
        links.append(link(url(request, f"/planlaegning/koersler/{run_id}/celler",
                              kommunekode=kommune, limit=limit, efter=rows[-1][0]),
                          "next", GEOJSON, "Næste side"))
    text = ('{"type":"FeatureCollection","numberReturned":' + str(len(rows))
            + ',"links":' + orjson.dumps(links).decode() + ',"features":['
            + ",".join(r[1] for r in rows) + "]}")
    return Response(text, media_type=GEOJSON)


@router.get(OBJECTS, summary="En kørsels objekter og deres belægning (GeoJSON)",
            response_class=Response, **route(OBJECTS, "get"))
async def run_objects(request: Request, koersel_id: str = RUN_ID) -> Response:
    params.check_known(request, {"kommunekode"})
    await _reader(request)
    run_id = _run_id(koersel_id)
    kommune = _kommune_param(request)
    async with acting(request) as conn:
        run = await _readable_run(conn, run_id)
        stmt, args = model.objects_geojson_sql(_theme_of(run), run_id, kommune)
        rows = await (await conn.execute(stmt, args)).fetchall()
    text = ('{"type":"FeatureCollection","numberReturned":' + str(len(rows))
            + ',"features":[' + ",".join(r[0] for r in rows) + "]}")
    return Response(text, media_type=GEOJSON)


# --- the map --------------------------------------------------------------------------------------

def _breaks_legend(breaks: list[float], colours: list[str], zero: str) -> list[tuple[str, str]]:
    out = [(zero, "0")]
    lower = 0
    for i, b in enumerate(breaks):
        out.append((colours[i], f"{_num(lower + 1 if i else 1)} – {_num(b)}"))
        lower = b
    return out


def _class(value: float, breaks: list[float], colours: list[str], zero: str) -> str:
    if not value or not breaks:
        return zero
    for i, b in enumerate(breaks):
        if value <= b:
            return colours[i]
    return colours[len(breaks) - 1]


def _load_colour(share: float | None) -> str:
    if not share:
        return LOAD_CLASSES[0][1]
    for upper, colour, _ in LOAD_CLASSES[1:]:
        if share <= upper:
            return colour
    return LOAD_CLASSES[-1][1]


def _load_legend() -> list[tuple[str, str]]:
    return [(c, t) for _, c, t in LOAD_CLASSES]


class _PlanMap:
    """The folium map of a run: cells (covered, uncovered) or municipalities, and objects."""

    def __init__(self, request: Request, *, cells: list[dict] | None,
                 areas: list[dict] | None, objects: list[dict], figure: str, theme_title: str):
        self.request = request
        self.settings = request.app.state.settings
        self.cells = cells
        self.areas = areas
        self.objects = objects
        self.figure = figure
        self.theme_title = theme_title
        self.legends: list[dict] = []

    def _cell_layer(self, m, key: str, name: str, colours: list[str], zero: str, show: bool):
        values = [c["properties"][key] for c in self.cells]
        breaks = [int(b) for b in class_breaks([float(v) for v in values if v])]
        breaks = sorted(set(breaks))
        feats = []
        for c in self.cells:
            p = c["properties"]
            feats.append({**c, "properties": {**p, "fill": _class(p[key], breaks, colours,
                                                                  zero)}})
        layer = folium.GeoJson(
            {"type": "FeatureCollection", "features": feats}, name=name, show=show,
            style_function=lambda f: {"fillColor": f["properties"]["fill"], "fillOpacity": 0.75,
                                      "color": "#555555", "weight": 0.2},
            tooltip=folium.GeoJsonTooltip(
                fields=["celle_id", "indbyggere", "daekket", "ikke_daekket",
                        "inden_for_raekkevidde"],
                aliases=["Celle", "Indbyggere", "Dækket", "Ikke dækket",
                         "Inden for rækkevidde"], sticky=True))
        layer.add_to(m)
        self.legends.append({"id": key, "title": name,
                             "items": _breaks_legend(breaks, colours, zero)})

    def _area_layer(self, m):
        values = [a["andel"] for a in self.areas if a["andel"] is not None]
        breaks = class_breaks([100 * v for v in values])
        feats = []
        for a in self.areas:
            share = None if a["andel"] is None else 100 * a["andel"]
            feats.append({"type": "Feature", "geometry": orjson.loads(a["geometry"]),
                          "properties": {"navn": a["navn"], "indbyggere": _num(a["indbyggere"]),
                                         "daekket": _num(a["daekket"]),
                                         "andel": _num(share, 1),
                                         "fill": class_colour(share, breaks)}})
        folium.GeoJson(
            {"type": "FeatureCollection", "features": feats}, name="Andel dækket pr. kommune",
            style_function=lambda f: {"fillColor": f["properties"]["fill"], "fillOpacity": 0.7,
                                      "color": "#555555", "weight": 0.6},
            tooltip=folium.GeoJsonTooltip(fields=["navn", "indbyggere", "daekket", "andel"],
                                          aliases=["Kommune", "Indbyggere", "Dækket",
                                                   "Andel dækket (%)"], sticky=True)).add_to(m)
        items = [(ZERO_COLOUR, "0 %")]
        lower = None
        for i, b in enumerate(breaks):
            items.append((CHOROPLETH_COLOURS[i], f"op til {_num(b, 1)} %" if lower is None
                          else f"{_num(lower, 1)} – {_num(b, 1)} %"))
            lower = b
        items.append((NO_DATA_COLOUR, "Ingen indbyggere"))
        self.legends.append({"id": "andel", "title": "Andel dækket pr. kommune",
                             "items": items})

    def _object_layer(self, m):
        group = folium.FeatureGroup(name=f"{self.theme_title}: belægning", show=True)
        for o in self.objects:
            p = o["properties"]
            lon, lat = o["geometry"]["coordinates"][:2]
            share = float(p["andel"]) if p["andel"] is not None else None
            text = (f"{html.escape(p['navn'] or self.theme_title)}: {_num(p['belaegning'])} af "
                    f"{_num(p['kapacitet'])} ({self.figure.lower()}) brugt")
            folium.CircleMarker(
                [lat, lon], radius=4 + min(8, p["kapacitet"] / 100), weight=1,
                color="#333333", fill=True, fill_color=_load_colour(share), fill_opacity=0.9,
                tooltip=text).add_to(group)
        group.add_to(m)
        self.legends.append({"id": "belaegning",
                             "title": f"{self.theme_title}: brugt af {self.figure.lower()}",
                             "items": _load_legend()})

    def render(self) -> dict[str, str]:
        assets = _local_assets(self.request)
        m = folium.Map(location=[56.1, 11.2], zoom_start=7, tiles=None, prefer_canvas=True,
                       min_zoom=5, max_zoom=19, width="100%", height="100%")
        m.default_js = assets["map_js"]
        m.default_css = assets["map_css"]
        if self.settings.basemap == "osm":
            folium.TileLayer(OSM_URL, attr=OSM_ATTRIBUTION, name="OpenStreetMap",
                             max_zoom=19, max_native_zoom=19).add_to(m)
        folium.FeatureGroup(name="Intet baggrundskort", overlay=False,
                            show=self.settings.basemap != "osm").add_to(m)
        if self.cells is not None:
            self._cell_layer(m, "daekket", "Dækkede indbyggere pr. celle", CHOROPLETH_COLOURS,
                             ZERO_COLOUR, show=False)
            self._cell_layer(m, "ikke_daekket", "Ikke dækkede indbyggere pr. celle",
                             UNCOVERED_COLOURS, "#f7f7f7", show=True)
            bounds = self._bounds([c["geometry"] for c in self.cells])
        else:
            self._area_layer(m)
            bounds = DENMARK_BOUNDS
        self._object_layer(m)
        folium.LayerControl(position="topright", collapsed=False).add_to(m)
        m.fit_bounds(bounds)
        root = m.get_root()
        root.render()
        _check_local(root, url(self.request, "/static/"))
        header = re.sub(r'<meta name="viewport"[^>]*>', "", root.header.render())
        return {"header": header, "html": root.html.render(), "script": root.script.render()}

    @staticmethod
    def _bounds(geometries: list[dict]):
        xs, ys = [], []
        for g in geometries:
            for x, y in g["coordinates"][0]:
                xs.append(x)
                ys.append(y)
        if not xs:
            return DENMARK_BOUNDS
        return [[min(ys), min(xs)], [max(ys), max(xs)]]


@router.get(MAP, summary="Kort over en planlægningskørsel (HTML)", response_class=Response,
            **route(MAP, "get"))
async def plan_map(request: Request) -> Response:
    params.check_known(request, {"koersel", "kommune"})
    await _reader(request)
    raw = request.query_params.get("koersel")
    if raw is None:
        raise bad_request("koersel", "is required (the run's id)")
    run_id = _run_id(raw)
    kommune = _kommune_param(request, "kommune")
    cap = request.app.state.settings.map_max_features
    async with acting(request) as conn:
        run = await _readable_run(conn, run_id)
        theme = _theme_of(run)
        if run["omfang"] == "kommune":
            if kommune is not None and kommune != run["kommunekode"]:
                raise bad_request("kommune", f"run {run_id} is of municipality "
                                             f"{run['kommunekode']}")
            kommune = run["kommunekode"]
        totals = await planning.drive_async(conn, planning.totals_steps(run_id, kommune))
        cells = areas = None
        shown_cells = None
        if kommune is not None:
            stmt, args = model.cells_geojson_sql(run_id, kommune, None, cap + 1)
            rows = await (await conn.execute(stmt, args)).fetchall()
            shown_cells = min(len(rows), cap)
            cells = [orjson.loads(r[1]) for r in rows[:cap]]
        else:
            rows = await (await conn.execute("""
                SELECT c.kommunekode, k.navn, sum(c.indbyggere), sum(c.daekket),
                       ST_AsGeoJSON(ST_Transform(ST_SimplifyPreserveTopology(k.geometri, 150),
                                                 4326), 5)
                FROM ly.plankoersel_celle c JOIN ly.kommune k USING (kommunekode)
                WHERE c.koersel_id = %s GROUP BY c.kommunekode, k.navn, k.geometri""",
                [run_id])).fetchall()
            areas = [{"navn": r[1], "indbyggere": int(r[2]), "daekket": int(r[3]),
                      "andel": (int(r[3]) / int(r[2])) if r[2] else None, "geometry": r[4]}
                     for r in rows]
        stmt, args = model.objects_geojson_sql(theme, run_id, kommune)
        objects = [orjson.loads(r[0]) for r in (await (await conn.execute(stmt, args))
                                                  .fetchall())[:cap]]
        navn = None
        if kommune is not None:
            found = await (await conn.execute("SELECT navn FROM ly.kommune WHERE kommunekode "
                                              "= %s", [kommune])).fetchone()
            if found is None:
                raise not_found(f"Kommunen {kommune}")
            navn = found[0]
    figure = theme.figures[0].title if theme.figures else "Kapacitet"
    build = _PlanMap(request, cells=cells, areas=areas, objects=objects, figure=figure,
                     theme_title=theme.title)
    parts = await run_in_threadpool(build.render)
    nonce = getattr(request.state, "csp_nonce", "")
    if nonce:
        parts = {**parts, "header": with_nonce(parts["header"], nonce),
                 "html": with_nonce(parts["html"], nonce)}
    total_cells = totals.celler
    return html_response(
        request, "planning_kort.html", map_header=parts["header"], map_html=parts["html"],
        map_script=parts["script"], run=run, totals=totals, kommune=kommune,
        kommune_navn=navn, legends=build.legends, fmt=_num, theme=theme, figure=figure,
        synthetic=bool(run["input"].get("net_syntetisk")), synthetic_note=SYNTHETIC_NOTE,
        shown_cells=shown_cells, total_cells=total_cells, objects_shown=len(objects),
        links=_links(request, run_id))
