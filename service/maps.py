"""Map pages: `/kort` (the country) and `/kort?kommune=101` (one municipality).

One layer per theme of the registry (`datamodel.themes`): points in marker clusters, areas as
polygons, each listed in the layer control under the theme's Danish title and drawn in the
theme's colour; beneath them a choropleth of the figures per municipality that a theme's own
report module gives (`loaders.reports.ReportExtra.kommune_rows_steps`: the shelters'
coverage; none without one). Everything a layer shows comes from the theme's descriptor: the
popup's heading is the theme's `label`, its rows the attributes the viewer may read, the
filters one per coded attribute of the theme's own (GeoFA/FKG generic ones left out), the
colours one per code of the attribute the viewer colours by ("Farv efter"; the theme's colour
is one choice).

The page is built with folium (Leaflet) on the server and works without internet: Leaflet and
Leaflet.markercluster are vendored under `/static/vendor/` (see its README) and folium is told
to load them from there instead of its CDNs; nothing else is loaded from outside but the
basemap tiles, and without them the page still shows the objects and the choropleth.

What the page shows is read through `acting(request)`, so row-level security decides: the
public reads each theme's public views (public objects, public attributes), signed-in actors
what their roles let them see. Personal attributes (a theme's `personal_fields`: contact
persons and their phone numbers) are never put on a map, for anyone: a page embeds thousands
of objects, and an authority that may read them finds them on the object's own page. Themes
with a validity period show the objects whose period has not ended. Each theme's objects are
embedded as GeoJSON (at most `LY_MAP_MAX_FEATURES` per theme; past that the page says how
many it leaves out). For registers too large to embed, the page would load the objects from a
theme's vector tiles (`/collections/{collectionId}/tiles/WebMercatorQuad/{z}/{y}/{x}`) with a
Leaflet vector-tile plugin instead; the filters would then become tile-layer styles.

Filters and colours are applied in the browser (instantly, without the server); a filter is
`?{collectionId}.{attribute}=code` (or `?{attribute}=code` for every theme that has it), the
colour `?{collectionId}.farve={attribute}` (or `?farve=`; `tema` is the theme's colour). The
municipality is a server-side choice (`?kommune=`) that embeds only its objects.
"""

from __future__ import annotations

import dataclasses
import html
import re
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

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
from datamodel import query, themes
from datamodel.codelists import load_codelists
from datamodel.fields import AENDRINGSAARSAG, BELIGGENHEDSKOMMUNE, Field, Origin, generic_fields
from datamodel.themes import Theme
from loaders import reports as figures
from service import params
from service.auth import current_actor
from service.db import acting
from service.errors import Problem, bad_request, not_found
from service.http import html_response, url

router = APIRouter(tags=["Kort"])

DENMARK_BOUNDS = [[54.55, 8.05], [57.76, 15.2]]
#: "Farv efter" the theme's own colour.
THEME_COLOUR = "tema"
COLOUR_PARAM = "farve"
#: The FKG generic attributes (fkg.generel): no filters on them, and no popup rows but these.
GENERIC = frozenset(f.name for f in generic_fields())
#: Generic attributes a popup shows last, for those who may read them.
POPUP_GENERIC = (BELIGGENHEDSKOMMUNE.name, "off_kode", "cvr_kode")
#: Bookkeeping no popup shows (besides the generic attributes and the system's).
POPUP_SKIPPED = frozenset({AENDRINGSAARSAG.name, "link", "vejkode", "adr_id"})
#: d_basis_funktionsstatus codes drawn as no longer in use (5 Lukket, 6 Fjernet).
STATUS_CODELIST, INACTIVE_STATUS = "d_basis_funktionsstatus", (5, 6)

#: Colours of codes, in a code list's order (a code "Ukendt" or "Ikke vurderet" is grey); a
#: code list value may name its own (`farve`). qgis/make_project.py uses the same (a test
#: keeps them equal).
PALETTE = ("#d7301f", "#2166ac", "#1b7837", "#762a83", "#e08214", "#01665e", "#c51b7d",
           "#8c510a", "#4d9221", "#35978f", "#b2182b", "#5e3c99")
UNKNOWN_COLOUR = "#737373"
UNKNOWN_TEXTS = frozenset({"ukendt", "ikke vurderet", "ikke udfyldt", "ved ikke"})
#: Choropleth classes (light to dark, YlGnBu), the colour for 0 and for no population.
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
_CSS_COLOUR = re.compile(r"^#[0-9a-fA-F]{3,8}$")


def basemap_origins(settings) -> tuple[str, ...]:
    """Where the configured basemap's tiles come from: the only host outside Ly a map page
    loads anything from (the Content-Security-Policy's img-src, service/edge.py)."""
    source = {"osm": OSM_URL, "dataforsyningen": DATAFORSYNINGEN_WMS}.get(settings.basemap)
    if source is None:
        return ()
    parts = urlsplit(source)
    return (f"{parts.scheme}://{parts.netloc}",)


# --- what a theme shows on a map ------------------------------------------------------------

def code_colours(codelist: str) -> dict[int, str]:
    """The colour of each code of a code list on maps (and in QGIS)."""
    out: dict[int, str] = {}
    i = 0
    for c in load_codelists()[codelist].values:
        own = c.extra.get("farve")
        if isinstance(own, str) and _CSS_COLOUR.match(own):
            out[c.kode] = own
        elif c.tekst.strip().lower() in UNKNOWN_TEXTS:
            out[c.kode] = UNKNOWN_COLOUR
        else:
            out[c.kode] = PALETTE[i % len(PALETTE)]
            i += 1
    return out


def filter_fields(theme: Theme, public: bool) -> list[Field]:
    """The coded attributes of a theme's own an audience may filter and colour by."""
    visible = {f.name for f in theme.audience_fields(public)}
    return [f for f in theme.coded_fields
            if f.name in visible and f.name not in GENERIC and not f.personal]


def primary_field(theme: Theme) -> Field | None:
    """What a theme is coloured by unless the viewer chooses: its first public coded
    attribute (None: the theme's colour)."""
    fields = filter_fields(theme, public=True)
    return fields[0] if fields else None


def popup_fields(theme: Theme, public: bool) -> list[str]:
    """Output names a popup shows, in order: the theme's own attributes (a coded one by its
    text), then where it lies and, for authorities, its visibility and responsible authority.
    Never the personal attributes, identifiers or bookkeeping."""
    visible = {f.name for f in theme.audience_fields(public)}
    own: list[str] = []
    tail: dict[str, str] = {}
    for f in theme.fields:
        if (f.name not in visible or f.personal or f.origin is Origin.SYSTEM
                or f.type == "uuid" or f.name in POPUP_SKIPPED):
            continue
        shown = f.twin or f.name
        if f.name in POPUP_GENERIC:
            tail[f.name] = shown
        elif f.name not in GENERIC:
            own.append(shown)
    return own + [tail[n] for n in POPUP_GENERIC if n in tail]


def map_properties(theme: Theme, public: bool) -> list[str]:
    """What the page embeds of each object: the popup's attributes, the label, the codes it
    filters and colours by, and the validity period (never a personal attribute)."""
    names = popup_fields(theme, public)
    extra = [theme.label, *[f.name for f in filter_fields(theme, public)],
             *(theme.validity or ())]
    status = _status_field(theme, public)
    if status:
        extra.append(status)
    available = set(theme.property_columns(public)) - {f.name for f in theme.personal_fields}
    for name in extra:
        if name not in names:
            names.append(name)
    return [n for n in names if n in available]


def _status_field(theme: Theme, public: bool) -> str | None:
    visible = {f.name for f in theme.audience_fields(public)}
    return next((f.name for f in theme.coded_fields
                 if f.codelist == STATUS_CODELIST and f.name in visible), None)


def _title(theme: Theme, name: str) -> str:
    """The Danish title of an output name (a text twin has its code's title)."""
    if name in theme.fields_by_name:
        return theme.fields_by_name[name].title
    for f in theme.coded_fields:
        if f.twin == name:
            return f.title
    return name


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


_INLINE = re.compile(r"<(script|style)\b([^>]*)>", re.IGNORECASE)


def with_nonce(markup: str, nonce: str) -> str:
    """folium's inline <script> and <style> elements with the response's CSP nonce
    (elements loading a file from Ly need none)."""
    def add(m: re.Match) -> str:
        attrs = m.group(2)
        if "nonce=" in attrs or (m.group(1).lower() == "script" and "src=" in attrs):
            return m.group(0)
        return f'<{m.group(1)}{attrs} nonce="{nonce}">'

    return _INLINE.sub(add, markup)


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


def _known_params() -> set[str]:
    names = {"kommune", COLOUR_PARAM}
    for t in themes.all_themes():
        names.add(f"{t.collection_id}.{COLOUR_PARAM}")
        for f in filter_fields(t, public=False):
            names |= {f.name, f"{t.collection_id}.{f.name}"}
    return names


def _code(value: int, name: str, f: Field) -> int:
    if value not in load_codelists()[f.codelist].all_codes():
        raise bad_request(name, f"{value} is not a code of {f.codelist}")
    return value


def _not_public(name: str, title: str) -> Problem:
    return Problem(400, f"{name}: the public may not filter on {title}",
                   kind="invalid-parameter",
                   errors=[{"field": name, "detail": "not an attribute the public may read"}])


@dataclasses.dataclass
class Choice:
    """What the viewer asked of one theme's layer: code filters and the colour."""

    filters: dict[str, int]
    colour: str  # an attribute name, or THEME_COLOUR


def choices(request: Request, public: bool) -> dict[str, Choice]:
    """Each theme's filters and colour from the query, checked: codes of the attribute's code
    list, attributes the viewer may read."""
    shown = list(themes.all_themes())
    out = {}
    for t in shown:
        primary = primary_field(t)
        out[t.collection_id] = Choice({}, primary.name if primary else THEME_COLOUR)
    for t in shown:  # {collectionId}.{attribute}: one theme
        for f in filter_fields(t, public=False):
            name = f"{t.collection_id}.{f.name}"
            value = _int_param(request, name)
            if value is not None:
                if f not in filter_fields(t, public):
                    raise _not_public(name, f.title)
                out[t.collection_id].filters[f.name] = _code(value, name, f)
    unqualified = {f.name for t in shown for f in filter_fields(t, public=False)}
    for name in sorted(unqualified):  # {attribute}: every theme that has it
        value = _int_param(request, name)
        if value is None:
            continue
        readable = [(t, f) for t in shown for f in filter_fields(t, public) if f.name == name]
        if not readable:
            title = next(f.title for t in shown for f in filter_fields(t, False)
                         if f.name == name)
            raise _not_public(name, title)
        for t, f in readable:
            out[t.collection_id].filters.setdefault(f.name, _code(value, name, f))
    for name in [COLOUR_PARAM] + [f"{t.collection_id}.{COLOUR_PARAM}" for t in shown]:
        raw = request.query_params.get(name)
        if not raw:
            continue
        targets = shown if name == COLOUR_PARAM else \
            [t for t in shown if name == f"{t.collection_id}.{COLOUR_PARAM}"]
        matched = False
        for t in targets:
            if raw == THEME_COLOUR:
                out[t.collection_id].colour = THEME_COLOUR
                matched = True
                continue
            for f in filter_fields(t, public):
                if raw in (f.name, f.twin):
                    out[t.collection_id].colour = f.name
                    matched = True
        if not matched:
            allowed = sorted({THEME_COLOUR} | {f.name for t in targets
                                               for f in filter_fields(t, public)})
            raise bad_request(name, "must be one of " + ", ".join(allowed))
    return out


def _features_sql(theme: Theme, props: list[str], public: bool, kommune: int | None,
                  now: datetime, cap: int | None):
    """The objects of a theme a page shows (`cap + 1` of them), or (cap None) their count."""
    q = query.ItemsQuery(
        public=public, theme=theme,
        equals={BELIGGENHEDSKOMMUNE.name: kommune} if kommune is not None else {},
        datetime_range=(now, None) if theme.validity else None)
    where, args = query.where_clause(q)
    view = query.views(public, theme)[0]
    if cap is None:
        return sql.SQL("SELECT count(*) FROM {v} t WHERE {w}").format(v=view, w=where), args
    stmt = sql.SQL("SELECT {f} FROM {v} t WHERE {w} ORDER BY t.objekt_id LIMIT %s").format(
        f=query.feature_expr(_MAP_CRS, props), v=view, w=where)
    return stmt, args + [cap + 1]


def coverage_theme() -> Theme | None:
    """The theme whose figures per municipality the page shows as a choropleth: the first
    whose own report figures have them (`loaders.reports`; the shelters' coverage)."""
    return next((t for t, extra in figures.extras() if extra.kommune_rows_steps), None)


@dataclasses.dataclass
class Municipality:
    """A municipality on a page without a choropleth: the list and the outline."""

    kommunekode: int
    navn: str
    geometry: str


@dataclasses.dataclass
class MapLayer:
    """One theme on a page."""

    theme: Theme
    choice: Choice
    properties: list[str]
    features_json: str
    shown: int
    total: int

    @property
    def capped(self) -> bool:
        return self.total > self.shown


@router.get("/kort", summary="Kort over Lys temaer (HTML)", response_class=Response,
            responses={200: {"content": {"text/html": {}}},
                       400: {"description": "Invalid parameter"},
                       404: {"description": "No such municipality"}})
async def map_page(request: Request) -> Response:
    params.check_known(request, _known_params())
    actor = await current_actor(request)
    public = actor.public
    kommune = _int_param(request, "kommune")
    if kommune is not None and not 100 <= kommune <= 999:
        raise bad_request("kommune", "a municipality code has three digits (e.g. 101)")
    chosen = choices(request, public)

    settings = request.app.state.settings
    cap = settings.map_max_features
    now = datetime.now(timezone.utc)
    layers: list[MapLayer] = []
    async with acting(request) as conn:
        selected = None
        if kommune is not None:
            selected = await figures.run_async(conn, figures.kommune_exists_steps(kommune))
            if selected is None:
                raise not_found(f"Kommunen {kommune}")
        coverage = coverage_theme()
        if coverage is not None:
            rows = await figures.run_async(conn, figures.kommune_rows_steps(
                public, geometry_tolerance=150.0, theme=coverage))
        else:
            rows = [Municipality(*r) for r in await (await conn.execute(
                "SELECT kommunekode, navn, ST_AsGeoJSON(ST_Transform("
                "ST_SimplifyPreserveTopology(geometri, 150.0), 4326), 5) "
                "FROM ly.kommune ORDER BY kommunekode")).fetchall()]
        for theme in themes.all_themes():
            props = map_properties(theme, public)
            stmt, args = _features_sql(theme, props, public, kommune, now, cap)
            features = [r[0] for r in await (await conn.execute(stmt, args)).fetchall()]
            total = len(features)
            if total > cap:
                features = features[:cap]
                stmt, args = _features_sql(theme, props, public, kommune, now, None)
                total = (await (await conn.execute(stmt, args)).fetchone())[0]
            layers.append(MapLayer(theme, chosen[theme.collection_id], props,
                                   embed_features(features), len(features), total))

    build = _MapBuild(request, public=public, rows=rows, kommune=kommune, layers=layers,
                      coverage=coverage)
    parts = await run_in_threadpool(build.render)
    nonce = getattr(request.state, "csp_nonce", "")
    if nonce:
        parts = {**parts, "header": with_nonce(parts["header"], nonce),
                 "html": with_nonce(parts["html"], nonce)}
    return html_response(
        request, "map.html", map_header=parts["header"], map_html=parts["html"],
        map_script=parts["script"], public=public, layers=[_panel(x, public) for x in layers],
        colour_rules=_colour_rules(layers, public), theme_colour=THEME_COLOUR,
        kommune=kommune, kommune_navn=selected[0] if selected else None,
        kommuner=[(r.kommunekode, r.navn) for r in sorted(rows, key=lambda r: r.navn)],
        basemap=settings.basemap, population=figures.population(),
    )


def _panel(layer: MapLayer, public: bool) -> dict:
    """What the page's panel shows of a layer: counts, filters, colour choices, legends."""
    t = layer.theme
    codelists = load_codelists()
    filters = []
    for f in filter_fields(t, public):
        colours = code_colours(f.codelist)
        filters.append({
            "name": f.name, "title": f.title, "param": f"{t.collection_id}.{f.name}",
            "selected": layer.choice.filters.get(f.name),
            "codes": [(c.kode, c.tekst, colours[c.kode]) for c in codelists[f.codelist].values]})
    return {
        "id": t.collection_id, "title": t.title, "colour": t.colour, "area": t.is_area,
        "validity": t.validity is not None, "shown": layer.shown, "total": layer.total,
        "capped": layer.capped, "features_json": layer.features_json, "filters": filters,
        "colour_by": layer.choice.colour,
        "colour_param": f"{t.collection_id}.{COLOUR_PARAM}",
        "open": bool(layer.choice.filters) or layer.choice.colour != (
            primary_field(t).name if primary_field(t) else THEME_COLOUR),
    }


def _colour_rules(layers: list[MapLayer], public: bool) -> list[tuple[str, str]]:
    """(CSS selector, colour) of every layer's colour choices: the page switches between
    them with a class on the map, without touching the objects."""
    rules = []
    for layer in layers:
        t = layer.theme
        rules.append((f".ly-colour-{t.collection_id}-{THEME_COLOUR} .ly-obj.ly-t-{t.collection_id}",
                      t.colour))
        for f in filter_fields(t, public):
            for kode, colour in code_colours(f.codelist).items():
                rules.append((f".ly-colour-{t.collection_id}-{f.name} "
                              f".ly-obj.ly-t-{t.collection_id}.ly-c-{f.name}-{kode}", colour))
    return rules


class _MapBuild:
    """The folium map of a page: basemaps, choropleth, one layer per theme, layer control."""

    def __init__(self, request: Request, *, public: bool, rows, kommune: int | None,
                 layers: list[MapLayer], coverage: Theme | None):
        self.request = request
        self.settings = request.app.state.settings
        self.public = public
        self.rows = rows
        self.kommune = kommune
        self.layers = layers
        self.assets = _local_assets(request)
        self.coverage = coverage
        self.figure = coverage.figures[0].title if coverage and coverage.figures else "Antal"

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
                    "daekning": _num(f.pladser_daekning),
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
                fields=["navn", "folketal", "antal", "daekning", "pr_1000"],
                aliases=["Kommune", "Folketal", self.coverage.title,
                         f"{self.figure} (dækning)",
                         f"{self.figure} pr. 1.000 indbyggere"], sticky=True),
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
            f'<h3>{html.escape(self.figure)} pr. 1.000 indbyggere</h3>'
            f'<ul>{items}</ul>'
            f'<p class="src">{html.escape(self.figure)} i '
            f'{html.escape(self.coverage.title.lower())}, der ikke er planlagt, under anlæg, '
            'lukket eller fjernet, blandt dem du kan se. Folketal: '
            f'{html.escape(pop.source)} {html.escape(pop.period)}.</p>')

    def _theme_layer(self, m: folium.Map, layer: MapLayer):
        t = layer.theme
        name = (f'<span class="ly-swatch ly-swatch-{"area" if t.is_area else "point"}" '
                f'style="--ly-colour:{html.escape(t.colour)}"></span> {html.escape(t.title)}')
        if t.is_area:
            group = folium.FeatureGroup(name=name)
        else:
            group = MarkerCluster(name=name, options={
                "showCoverageOnHover": False, "chunkedLoading": True, "maxClusterRadius": 60,
                "disableClusteringAtZoom": 16, "spiderfyOnMaxZoom": True})
            group.default_js = self.assets["cluster_js"]
            group.default_css = self.assets["cluster_css"]
        group.add_to(m)
        return group

    def _layer_options(self, layer: MapLayer) -> dict:
        t = layer.theme
        primary = primary_field(t)
        fig = next((f for f in t.figures if f.field in layer.properties), None)
        return {
            "id": t.collection_id, "title": t.title, "colour": t.colour, "area": t.is_area,
            "label": t.label, "fallback": primary.twin if primary and primary.twin else None,
            "figure": {"field": fig.field, "title": fig.title.lower()} if fig else None,
            "fields": popup_fields(t, self.public),
            "labels": {n: _title(t, n) for n in layer.properties},
            "dates": [n for n in layer.properties if n in t.fields_by_name
                      and t.fields_by_name[n].type in ("date", "date-time")],
            "numbers": [n for n in layer.properties if n in t.fields_by_name
                        and t.fields_by_name[n].type in ("integer", "number")
                        and not t.fields_by_name[n].codelist],
            "filters": [f.name for f in filter_fields(t, self.public)],
            "status": _status_field(t, self.public), "inactive": list(INACTIVE_STATUS),
            "colourBy": layer.choice.colour, "defaultColour": (
                primary.name if primary else THEME_COLOUR),
            "initial": layer.choice.filters,
            "itemUrl": url(self.request, f"/collections/{t.collection_id}/items/"),
        }

    def render(self) -> dict[str, str]:
        a = self.assets
        m = folium.Map(location=[56.1, 11.2], zoom_start=7, tiles=None, zoom_control=False,
                       min_zoom=5, max_zoom=19, width="100%", height="100%")
        m.default_js = a["map_js"]
        m.default_css = a["map_css"]
        basemaps = self._basemaps(m)
        choropleth, breaks = self._choropleth(m) if self.coverage else (None, [])
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
        # Areas first (beneath), points on top.
        ordered = sorted(self.layers, key=lambda x: not x.theme.is_area)
        groups = {x.theme.collection_id: self._theme_layer(m, x) for x in ordered}
        folium.LayerControl(position="topright", collapsed=False).add_to(m)
        options = {
            "layers": [self._layer_options(x) for x in self.layers],
            "kommuner": {str(r.kommunekode): r.navn for r in self.rows},
            "themeColour": THEME_COLOUR,
            "colourParam": COLOUR_PARAM,
            "public": self.public,
        }
        code = (
            f"LyMap.init({m.get_name()}, {{"
            f"options: {_js(options)}, "
            "groups: {" + ", ".join(f"{_js(cid)}: {g.get_name()}"
                                     for cid, g in groups.items()) + "}, "
            f"basemaps: [{', '.join(basemaps)}], "
            f"choropleth: {choropleth.get_name() if choropleth else 'null'}, "
            f"legendHtml: {_js(self._legend_html(breaks) if choropleth else None)}}});")
        _Script(code, a["ly_js"]).add_to(m)
        root = m.get_root()
        root.render()
        _check_local(root, url(self.request, "/static/"))
        # folium's viewport meta forbids zooming the page (user-scalable=no); base.html has
        # its own, accessible one.
        header = re.sub(r'<meta name="viewport"[^>]*>', "", root.header.render())
        return {"header": header, "html": root.html.render(), "script": root.script.render()}


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
