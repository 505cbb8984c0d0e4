"""Map pages: `/kort` (the country) and `/kort?kommune=101` (one municipality).

The page is built with folium (Leaflet) on the server and works without internet: Leaflet and
Leaflet.markercluster are vendored under `/static/vendor/` (see its README) and folium is told
to load them from there instead of its CDNs; nothing else is loaded from outside but the
basemap tiles, and without them the page still shows the shelters and the choropleth.

What the page shows is read through `acting(request)`, so row-level security decides: the
public sees the public shelters with their public attributes (no condition), signed-in actors
what their roles let them see. The shelters are embedded in the page as GeoJSON (at most
`LY_MAP_MAX_FEATURES`; past that the page says how many it leaves out). For registers too large
to embed, the page would load the shelters from the vector tiles endpoint
(`/collections/beskyttelsesrum/tiles/WebMercatorQuad/{z}/{y}/{x}`) with a Leaflet vector-tile
plugin instead of the embedded GeoJSON; the filters would then become tile-layer styles.

Filters: type and condition are applied in the browser (instantly, without the server);
the municipality is a server-side choice (`?kommune=`) that embeds only its shelters.
"""

from __future__ import annotations

import dataclasses
import html
import re
from pathlib import Path

import folium
import orjson
from branca.element import MacroElement
from fastapi import APIRouter, Request
from folium.plugins import MarkerCluster
from jinja2 import Template
from psycopg import sql
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from datamodel import crs as crsmod
from datamodel import query
from datamodel.codelists import load_codelists
from datamodel.fields import FIELDS_BY_NAME
from loaders import reports as figures
from service import params
from service.auth import current_actor
from service.db import acting
from service.errors import Problem, bad_request, not_found
from service.http import html_response, url

router = APIRouter(tags=["Kort"])

MAP_PARAMS = {"kommune", "beskyt_rum_kode", "egnethed_kode", "farve"}
DENMARK_BOUNDS = [[54.55, 8.05], [57.76, 15.2]]
#: Attributes a popup may show, in order; each viewer gets those it may read.
POPUP_FIELDS = (
    "navn", "beskyt_rum", "undertype", "pladser", "pladser_verificeret", "vejnavn", "husnr",
    "postnr", "postnr_by", "beliggenhedskommune", "funktionsstatus", "klargjort",
    "trinfri_adgang", "egnethed", "beskyt_rum_anvendelse", "offentlig", "cvr_navn",
)
#: Codes the page filters and colours by (besides the texts above).
CODE_FIELDS = ("beskyt_rum_kode", "egnethed_kode", "funktionsstatus_kode")

TYPE_COLOURS = {1: "#d7301f", 2: "#2166ac", 3: "#1b7837", 8: "#762a83", 9: "#737373"}
EGNETHED_COLOURS = {1: "#1a9850", 2: "#fdae61", 3: "#d73027", 9: "#9e9e9e"}
#: Choropleth classes (light to dark, YlGnBu), the colour for 0 places and for no population.
CHOROPLETH_COLOURS = ["#c7e9b4", "#7fcdbb", "#41b6c4", "#2c7fb8", "#253494"]
ZERO_COLOUR, NO_DATA_COLOUR = "#ffffcc", "#d9d9d9"

OSM_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTRIBUTION = ('&copy; <a href="https://www.openstreetmap.org/copyright">'
                   'OpenStreetMap</a>-bidragydere')
DATAFORSYNINGEN_WMS = "https://api.dataforsyningen.dk/topo_skaermkort_DAF"
DATAFORSYNINGEN_ATTRIBUTION = ('Skærmkort &copy; <a href="https://dataforsyningen.dk/">'
                               'Klimadatastyrelsen</a>')

VENDOR = Path(__file__).parent / "static" / "vendor"
_MAP_CRS = dataclasses.replace(crsmod.DEFAULT, decimals=6)  # 0.1 m is plenty for a map


# --- folium, served from /static ------------------------------------------------------------

def _local_assets(request: Request) -> dict[str, list[tuple[str, str]]]:
    def static(path: str) -> str:
        return url(request, "/static/" + path)

    return {
        "map_js": [("leaflet", static("vendor/leaflet/leaflet.js"))],
        "map_css": [("leaflet_css", static("vendor/leaflet/leaflet.css")),
                    ("ly_map_css", static("ly-map.css"))],
        "cluster_js": [("markerclusterjs",
                        static("vendor/leaflet.markercluster/leaflet.markercluster.js"))],
        "cluster_css": [("markerclustercss",
                         static("vendor/leaflet.markercluster/MarkerCluster.css")),
                        ("markerclusterdefaultcss",
                         static("vendor/leaflet.markercluster/MarkerCluster.Default.css"))],
        "ly_js": [("ly_map_js", static("ly-map.js"))],
    }


class _Script(MacroElement):
    """A piece of JavaScript run after the map and its layers exist."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        {{ this.code }}
        {% endmacro %}""")

    def __init__(self, code: str, js: list[tuple[str, str]] | None = None):
        super().__init__()
        self._name = "LyScript"
        self.code = code
        self.js = js or []

    def render(self, **kwargs):
        figure = self.get_root()
        for name, src in self.js:
            figure.header.add_child(folium.JavascriptLink(src), name=name)
        super().render(**kwargs)


def _js(value) -> str:
    """JSON for inline JavaScript: `<` escaped so no string can end the script element."""
    return orjson.dumps(value).decode().replace("<", "\\u003c")


def embed_features(features: list[str]) -> str:
    """A FeatureCollection (from PostgreSQL's feature JSON texts) for a <script> element:
    every `<` escaped, so no name or address can end the element."""
    text = '{"type":"FeatureCollection","features":[' + ",".join(features) + "]}"
    return text.replace("<", "\\u003c")


def _check_local(figure, static_base: str) -> None:
    """Refuse to serve a page that would load scripts or styles from elsewhere (folium's
    defaults are CDNs; every element the page uses is pointed at /static)."""
    for child in figure.header._children.values():
        src = getattr(child, "url", None)
        if src and not src.startswith(static_base):
            raise RuntimeError(f"the map page would load {src} from outside Ly")


# --- choropleth classes ---------------------------------------------------------------------

def _nice(x: float) -> float:
    if x <= 0:
        return 0.0
    digits = 2 if x >= 10 else 1
    return float(f"{x:.{digits}g}") if x < 100 else float(round(x, -1))


def class_breaks(values: list[float], n: int = len(CHOROPLETH_COLOURS)) -> list[float]:
    """Upper bounds of `n` quantile classes of the positive values, rounded to nice numbers
    (the last is the maximum)."""
    pos = sorted(v for v in values if v and v > 0)
    if not pos:
        return []
    breaks: list[float] = []
    for i in range(1, n):
        b = _nice(pos[min(len(pos) - 1, (len(pos) * i) // n)])
        if b > 0 and (not breaks or b > breaks[-1]) and b < pos[-1]:
            breaks.append(b)
    breaks.append(pos[-1])
    return breaks


def class_colour(value: float | None, breaks: list[float]) -> str:
    if value is None:
        return NO_DATA_COLOUR
    if value <= 0 or not breaks:
        return ZERO_COLOUR
    for i, b in enumerate(breaks):
        if value <= b:
            return CHOROPLETH_COLOURS[i]
    return CHOROPLETH_COLOURS[len(breaks) - 1]


def _num(v: float | int | None, decimals: int = 0) -> str:
    """Danish number format: 1.234,5."""
    if v is None:
        return "–"
    text = f"{v:,.{decimals}f}"
    return text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")


def legend_classes(breaks: list[float]) -> list[tuple[str, str]]:
    """(colour, label) of each class, 0 and "no population" included."""
    out = [(ZERO_COLOUR, "0")]
    lower = None
    for i, b in enumerate(breaks):
        label = f"op til {_num(b, 1)}" if lower is None else f"{_num(lower, 1)} – {_num(b, 1)}"
        out.append((CHOROPLETH_COLOURS[i], label))
        lower = b
    out.append((NO_DATA_COLOUR, "Intet folketal"))
    return out


# --- the request ----------------------------------------------------------------------------

def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise bad_request(name, f"{raw!r} is not an integer") from None


def _check_code(value: int | None, name: str, codelist: str) -> None:
    if value is not None and value not in load_codelists()[codelist].all_codes():
        raise bad_request(name, f"{value} is not a code of {codelist}")


def _shelters_sql(props: list[str], public: bool, kommune: int | None, cap: int):
    where = sql.SQL("TRUE") if kommune is None else sql.SQL("t.beliggenhedskommune = %s")
    stmt = sql.SQL("SELECT {f} FROM {v} t WHERE {w} ORDER BY t.objekt_id LIMIT %s").format(
        f=query.feature_expr(_MAP_CRS, props), v=query.views(public)[0], w=where)
    return stmt, ([kommune] if kommune is not None else []) + [cap + 1]


@router.get("/kort", summary="Kort over beskyttelsesrum (HTML)", response_class=Response,
            responses={200: {"content": {"text/html": {}}},
                       400: {"description": "Invalid parameter"},
                       404: {"description": "No such municipality"}})
async def map_page(request: Request) -> Response:
    params.check_known(request, MAP_PARAMS)
    actor = await current_actor(request)
    public = actor.public
    kommune = _int_param(request, "kommune")
    if kommune is not None and not 100 <= kommune <= 999:
        raise bad_request("kommune", "a municipality code has three digits (e.g. 101)")
    type_code = _int_param(request, "beskyt_rum_kode")
    egnethed = _int_param(request, "egnethed_kode")
    _check_code(type_code, "beskyt_rum_kode", "d_6101_beskyt_rum")
    if egnethed is not None and public:
        raise Problem(400, "egnethed_kode: the public may not filter on the condition of "
                      "shelters", kind="invalid-parameter",
                      errors=[{"field": "egnethed_kode",
                               "detail": "not an attribute the public may read"}])
    _check_code(egnethed, "egnethed_kode", "d_ly_egnethed")
    farve = request.query_params.get("farve") or "type"
    if farve not in ("type", "egnethed") or (public and farve != "type"):
        raise bad_request("farve", "must be type" + ("" if public else " or egnethed"))

    settings = request.app.state.settings
    available = set(query.audience_properties(public))
    props = [p for p in (*POPUP_FIELDS, *CODE_FIELDS) if p in available]
    cap = settings.map_max_features
    async with acting(request) as conn:
        selected = None
        if kommune is not None:
            selected = await figures.run_async(conn, figures.kommune_exists_steps(kommune))
            if selected is None:
                raise not_found(f"Kommunen {kommune}")
        rows = await figures.run_async(
            conn, figures.kommune_rows_steps(public, geometry_tolerance=150.0))
        stmt, args = _shelters_sql(props, public, kommune, cap)
        features = [r[0] for r in await (await conn.execute(stmt, args)).fetchall()]
        total = len(features)
        if total > cap:
            features = features[:cap]
            count_stmt = sql.SQL("SELECT count(*) FROM {} t WHERE {}").format(
                query.views(public)[0],
                sql.SQL("TRUE") if kommune is None else sql.SQL("t.beliggenhedskommune = %s"))
            total = (await (await conn.execute(
                count_stmt, [kommune] if kommune is not None else [])).fetchone())[0]
    shelters_json = embed_features(features)

    build = _MapBuild(request, public=public, rows=rows, kommune=kommune,
                      initial={"beskyt_rum_kode": type_code, "egnethed_kode": egnethed})
    parts = await run_in_threadpool(build.render)
    codelists = load_codelists()
    return html_response(
        request, "map.html", map_header=parts["header"], map_html=parts["html"],
        map_script=parts["script"], shelters_json=shelters_json, public=public,
        shown_max=len(features), total=total, capped=total > len(features),
        kommune=kommune, kommune_navn=selected[0] if selected else None,
        kommuner=[(r.kommunekode, r.navn) for r in sorted(rows, key=lambda r: r.navn)],
        types=[(c.kode, c.tekst, TYPE_COLOURS.get(c.kode, "#737373"))
               for c in codelists["d_6101_beskyt_rum"].values],
        egnetheder=[(c.kode, c.tekst, EGNETHED_COLOURS.get(c.kode, "#9e9e9e"))
                    for c in codelists["d_ly_egnethed"].values],
        type_code=type_code, egnethed=egnethed, farve=farve, basemap=settings.basemap,
        population=figures.population(),
    )


class _MapBuild:
    """The folium map of a page: basemaps, choropleth, shelter clusters, layer control."""

    def __init__(self, request: Request, *, public: bool, rows, kommune: int | None,
                 initial: dict):
        self.request = request
        self.settings = request.app.state.settings
        self.public = public
        self.rows = rows
        self.kommune = kommune
        self.initial = initial
        self.assets = _local_assets(request)

    def _basemaps(self, m: folium.Map) -> list[str]:
        layers = []
        if self.settings.basemap == "osm":
            layers.append(folium.TileLayer(OSM_URL, attr=OSM_ATTRIBUTION, name="OpenStreetMap",
                                           max_zoom=19, max_native_zoom=19))
        elif self.settings.basemap == "dataforsyningen":
            token = self.settings.dataforsyningen_token
            layers.append(folium.WmsTileLayer(
                f"{DATAFORSYNINGEN_WMS}?token={token}", layers="dtk_skaermkort",
                fmt="image/png", transparent=False, name="Skærmkort (Dataforsyningen)",
                attr=DATAFORSYNINGEN_ATTRIBUTION, version="1.1.1"))
        for layer in layers:
            layer.add_to(m)
        # Always a way to switch the basemap off (and the only choice with LY_BASEMAP=none).
        folium.FeatureGroup(name="Intet baggrundskort", overlay=False,
                            show=not layers).add_to(m)
        return [layer.get_name() for layer in layers]

    def _choropleth(self, m: folium.Map) -> tuple[folium.GeoJson, list[float]]:
        values = [r.figures.pladser_pr_1000 for r in self.rows]
        breaks = class_breaks([v for v in values if v is not None])
        feats = []
        for r in self.rows:
            f = r.figures
            feats.append({
                "type": "Feature", "id": r.kommunekode,
                "geometry": orjson.loads(r.geometry),
                "properties": {
                    "kommunekode": r.kommunekode, "navn": r.navn,
                    "folketal": _num(f.folketal), "antal": _num(f.antal),
                    "pladser": _num(f.pladser_daekning),
                    "pr_1000": _num(f.pladser_pr_1000, 1),
                    "fill": class_colour(f.pladser_pr_1000, breaks),
                },
            })
        layer = folium.GeoJson(
            {"type": "FeatureCollection", "features": feats},
            name="Dækning pr. kommune",
            style_function=lambda feat: {
                "fillColor": feat["properties"]["fill"], "fillOpacity": 0.6,
                "color": "#555555", "weight": 0.6},
            highlight_function=lambda feat: {"weight": 2.5, "color": "#000000"},
            tooltip=folium.GeoJsonTooltip(
                fields=["navn", "folketal", "antal", "pladser", "pr_1000"],
                aliases=["Kommune", "Folketal", "Beskyttelsesrum", "Pladser (dækning)",
                         "Pladser pr. 1.000 indbyggere"], sticky=True),
            zoom_on_click=False,
        )
        layer.add_to(m)
        return layer, breaks

    def _legend_html(self, breaks: list[float]) -> str:
        pop = figures.population()
        items = "".join(
            f'<li><span class="swatch" style="background:{c}"></span>{html.escape(t)}</li>'
            for c, t in legend_classes(breaks))
        return (
            '<h3>Pladser pr. 1.000 indbyggere</h3>'
            f'<ul>{items}</ul>'
            '<p class="src">Pladser i beskyttelsesrum, der ikke er planlagt, under anlæg, '
            'lukket eller fjernet, blandt dem du kan se. Folketal: '
            f'{html.escape(pop.source)} {html.escape(pop.period)}.</p>')

    def render(self) -> dict[str, str]:
        a = self.assets
        m = folium.Map(location=[56.1, 11.2], zoom_start=7, tiles=None, zoom_control=False,
                       min_zoom=5, max_zoom=19, width="100%", height="100%")
        m.default_js = a["map_js"]
        m.default_css = a["map_css"]
        basemaps = self._basemaps(m)
        choropleth, breaks = self._choropleth(m)
        if self.kommune is not None:
            sel = next(r for r in self.rows if r.kommunekode == self.kommune)
            outline = folium.GeoJson(
                {"type": "Feature", "geometry": orjson.loads(sel.geometry), "properties": {}},
                name="Valgt kommune", interactive=False,
                style_function=lambda _: {"fill": False, "color": "#000000", "weight": 3})
            outline.add_to(m)
            g = orjson.loads(sel.geometry)
            xs, ys = _coords(g)
            m.fit_bounds([[min(ys), min(xs)], [max(ys), max(xs)]])
        else:
            m.fit_bounds(DENMARK_BOUNDS)
        cluster = MarkerCluster(name="Beskyttelsesrum", options={
            "showCoverageOnHover": False, "chunkedLoading": True, "maxClusterRadius": 60,
            "disableClusteringAtZoom": 16, "spiderfyOnMaxZoom": True})
        cluster.default_js = a["cluster_js"]
        cluster.default_css = a["cluster_css"]
        cluster.add_to(m)
        folium.LayerControl(position="topright", collapsed=False).add_to(m)
        labels = {name: _label(name) for name in POPUP_FIELDS}
        options = {
            "fields": [p for p in POPUP_FIELDS if p in query.audience_properties(self.public)],
            "labels": labels,
            "itemUrl": url(self.request, "/collections/beskyttelsesrum/items/"),
            "kommuner": {str(r.kommunekode): r.navn for r in self.rows},
            "basemaps": [],
            "initial": self.initial,
            "public": self.public,
        }
        code = (
            f"LyMap.init({m.get_name()}, {cluster.get_name()}, {{"
            f"options: {_js(options)}, "
            f"basemaps: [{', '.join(basemaps)}], "
            f"choropleth: {choropleth.get_name()}, "
            f"legendHtml: {_js(self._legend_html(breaks))}}});")
        _Script(code, a["ly_js"]).add_to(m)
        root = m.get_root()
        root.render()
        _check_local(root, url(self.request, "/static/"))
        # folium's viewport meta forbids zooming the page (user-scalable=no); base.html has
        # its own, accessible one.
        header = re.sub(r'<meta name="viewport"[^>]*>', "", root.header.render())
        return {"header": header, "html": root.html.render(), "script": root.script.render()}


def _label(name: str) -> str:
    if name in FIELDS_BY_NAME:
        return FIELDS_BY_NAME[name].title
    for f in FIELDS_BY_NAME.values():
        if f.twin == name:
            return f.title
    return name


def _coords(geometry: dict) -> tuple[list[float], list[float]]:
    xs: list[float] = []
    ys: list[float] = []

    def walk(c):
        if isinstance(c[0], (int, float)):
            xs.append(c[0])
            ys.append(c[1])
        else:
            for sub in c:
                walk(sub)

    walk(geometry["coordinates"])
    return xs, ys
