"""Vector tiles of every theme's register: tile matrix sets and the SQL that builds Mapbox
Vector Tiles in PostGIS (OGC API - Tiles, two tile matrix sets).

- `WebMercatorQuad` (EPSG:3857), OGC's well-known set, from morecantile.
- `UTM32ETRS89` (EPSG:25832), the tiling of the Danish agency SDFI's (Dataforsyningen's)
  UTM32 WMTS caches (TileMatrixSet "View1" of e.g. `topo_skaermkort`): 256 x 256 pixel tiles,
  origin (top left) E 120 000, N 6 500 000, and 15 levels with cell sizes 1638.4 m, 819.2 m,
  ... 0.1 m (each half the one before). SDFI names the levels L00 ... L14; here they are
  `0` ... `14`. The matrix widths and heights cover SDFI's View1 extent, E 120 000-1 000 000
  and N 5 900 000-6 500 000 (at level 0: 3 x 2 tiles), so a Ly tile lines up with an SDFI
  background-map tile of the same level, row and column.

Tiles are built SQL-first, one statement per tile, the envelope and every value bound as
parameters, with an index-friendly `&&` on the stored geometry in EPSG:25832 before the exact
test in the tile matrix set's CRS. "In the tile" means: the object's geometry intersects the
tile's envelope, edges included, so neighbouring tiles repeat only points lying on their
shared edge (and areas crossing it).

Everything is generic over the theme's descriptor (`datamodel.themes.Theme`): its views, its
layer names (`theme.tile_layer`, `theme.cluster_layer`), its attributes and its figures.

Attributes (`tile_properties`): the audience's (`theme.property_columns(public)`: the
public's subset from the public's views for the public), but never personal data: a theme's
`personal_fields` (contact persons, phone numbers) are left out of every tile for every
audience, signed in or not, even where the authority's view would show them. Tiles are
for maps; whoever needs a contact reads the object itself.

A point theme's tile is points or clusters, decided per tile by how many objects the actor
sees in it (after every filter):

- at most `max_points` (default `MAX_POINTS`, 10 000, tipg's cap per tile): layer
  `theme.tile_layer` (the collection id), one point per object (`ST_AsMVT` over
  `ST_AsMVTGeom`) with the tile's attributes;
- more: layer `theme.cluster_layer` (the id + `_klynger`) instead, the same objects
  grouped on a regular grid of `GRID` x `GRID` (64 x 64) cells per tile in the tile matrix
  set's CRS (a cell is 64 x 64 units of the tile's 4096 x 4096 coordinate space; points on
  the tile's right or bottom edge count in the last cell). One point per non-empty cell, at
  the mean position of its objects (rounded to the tile's integer coordinates, so a lone
  object's cluster sits where its point would), with `antal` (number of objects) and the sum
  of the theme's first figure (`cluster_figure`: the first of `theme.figures` the public may
  read, e.g. the places of a shelter; a theme without one has `antal` only). Nothing is
  dropped: the `antal` of a tile add up to the objects the actor sees in it, and row-level
  security decides which those are, as for points. Clusters read only the geometry and the
  figure, so PostgreSQL leaves out the views' code-list joins.

  The decision is a bounded count inside the same statement: it reads at most
  `max_points + 1` of the rows the clusters would read (and the clusters read on from there,
  not again), then `CASE` runs only the sub-plan of the branch it takes.

An area theme's tile (`theme.is_area`, e.g. the areas of outdoor events) is always layer
`theme.tile_layer`: each visible polygon intersecting the tile, clipped to the tile and a
buffer of `BUFFER` (64) units around it (`ST_AsMVTGeom(..., clip => true)`; PostGIS snaps it
to the tile's 4096 grid and makes it valid), with the tile's attributes. Areas are not
clustered: a polygon is what a map of areas must show, and ST_AsMVTGeom already leaves out a
polygon smaller than half a tile unit and keeps every other one at the tile's resolution. The
bound for a dense tile (more than `max_points` polygons, which only a national map of a
large register makes): every polygon is still drawn, but first simplified
(`ST_Simplify`, Douglas-Peucker) to one pixel of a 256-pixel rendering (1/256 of the tile's
width), so polygons smaller than a pixel vanish and the others keep only the vertices a map
can show; the tile's size then follows its pixels, not the register's vertex count.

Nothing here talks to a connection; the service runs the statement in the actor's
transaction, where row-level security decides which objects exist at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import morecantile
from psycopg import sql

from datamodel import crs as crsmod
from datamodel import query
from datamodel.fields import STORAGE_SRID
from datamodel.themes import Theme

#: A point tile with more objects than this (visible to the actor, after the filters) is
#: clusters; an area tile with more polygons than this has them simplified to its pixels.
MAX_POINTS = 10_000
#: Clusters: cells per tile side.
GRID = 64
#: Tile coordinate space of ST_AsMVTGeom, and the buffer around the tile (in that space).
EXTENT, BUFFER = 4096, 64
#: A dense area tile's simplification tolerance: one pixel of a tile drawn this many pixels
#: wide.
DENSE_AREA_PIXELS = 256
#: The attribute of a cluster counting its objects.
COUNT = "antal"

WEB_MERCATOR_QUAD = "WebMercatorQuad"
UTM32 = "UTM32ETRS89"

# SDFI's UTM32 cache (View1): see the module docstring.
_UTM32_ORIGIN = (120_000.0, 6_500_000.0)
_UTM32_EXTENT = (120_000.0, 5_900_000.0, 1_000_000.0, 6_500_000.0)
_UTM32_TOP_CELL = 1638.4
_UTM32_LEVELS = 15
_PIXEL = 0.00028  # metres per pixel in the OGC scale denominator


def _utm32() -> morecantile.TileMatrixSet:
    matrices = []
    x0, y0, x1, y1 = _UTM32_EXTENT
    for z in range(_UTM32_LEVELS):
        cell = _UTM32_TOP_CELL / 2 ** z
        span = cell * 256
        matrices.append({
            "id": str(z), "scaleDenominator": cell / _PIXEL, "cellSize": cell,
            "cornerOfOrigin": "topLeft", "pointOfOrigin": list(_UTM32_ORIGIN),
            "tileWidth": 256, "tileHeight": 256,
            "matrixWidth": math.ceil((x1 - x0) / span - 1e-9),
            "matrixHeight": math.ceil((y1 - y0) / span - 1e-9),
        })
    return morecantile.TileMatrixSet.model_validate({
        "id": UTM32,
        "title": "ETRS89 / UTM zone 32N, SDFI's (Dataforsyningen's) Danish tile cache (View1)",
        "description": "Origin E 120000, N 6500000; 256 x 256 pixel tiles; cell sizes 1638.4 m "
                       "(level 0, SDFI's L00) halving to 0.1 m (level 14, L14); SDFI's View1 "
                       "extent E 120000-1000000, N 5900000-6500000.",
        "crs": crsmod.EPSG_URI.format(25832),
        "orderedAxes": ["E", "N"],
        "tileMatrices": matrices,
    })


TILE_MATRIX_SETS: dict[str, morecantile.TileMatrixSet] = {
    WEB_MERCATOR_QUAD: morecantile.tms.get(WEB_MERCATOR_QUAD),
    UTM32: _utm32(),
}


class OutOfRange(ValueError):
    """A tile that is not in the tile matrix set; `field` names the path parameter."""

    def __init__(self, field: str, detail: str):
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


@dataclass(frozen=True)
class Tile:
    tms_id: str
    srid: int
    level: int  # index of the tile matrix
    row: int
    col: int
    bounds: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax in the set's CRS


def srid(tms: morecantile.TileMatrixSet) -> int:
    return tms.crs.to_epsg()


def tile(tms_id: str, tile_matrix: str, row: int, col: int) -> Tile:
    """The tile `tile_matrix/row/col` of a set, or OutOfRange."""
    tms = TILE_MATRIX_SETS[tms_id]
    ids = [m.id for m in tms.tileMatrices]
    if tile_matrix not in ids:
        raise OutOfRange("tileMatrix", f"{tile_matrix!r} is not a tile matrix of {tms_id} "
                                       f"({ids[0]} … {ids[-1]})")
    level = ids.index(tile_matrix)
    m = tms.tileMatrices[level]
    if not 0 <= row < m.matrixHeight:
        raise OutOfRange("tileRow", f"{row} lies outside 0 … {m.matrixHeight - 1} at tile "
                                    f"matrix {tile_matrix}")
    if not 0 <= col < m.matrixWidth:
        raise OutOfRange("tileCol", f"{col} lies outside 0 … {m.matrixWidth - 1} at tile "
                                    f"matrix {tile_matrix}")
    # Computed from the matrix' origin, so tiles of one level share their edges exactly.
    ox, oy = m.pointOfOrigin
    span_x, span_y = m.cellSize * m.tileWidth, m.cellSize * m.tileHeight
    bounds = (ox + col * span_x, oy - (row + 1) * span_y, ox + (col + 1) * span_x,
              oy - row * span_y)
    return Tile(tms_id, srid(tms), level, row, col, bounds)


def _storage_box(t: Tile) -> tuple[sql.Composable, list]:
    """A box in storage CRS (EPSG:25832) that surely contains the tile, for the `&&` that
    lets the spatial index do the first cut. Other CRSs: the tile's outline is densified,
    taken to lon/lat, clipped to where ETRS89 is defined (a WebMercatorQuad tile at level 0
    is the whole world), densified again and taken to 25832; a margin covers the curvature
    the densified outline does not follow."""
    if t.srid == STORAGE_SRID:
        return sql.SQL("e.tile"), []
    span = t.bounds[2] - t.bounds[0]
    cx1, cy1, cx2, cy2 = crsmod.ETRS89_LONLAT_BOX
    expr = sql.SQL(
        "ST_Expand(ST_Transform(ST_Segmentize(ST_ClipByBox2D("
        "ST_Transform(ST_Segmentize(e.tile, %s), 4326), "
        "ST_MakeEnvelope(%s, %s, %s, %s, 4326)), 0.01), {storage}), %s)"
    ).format(storage=sql.Literal(STORAGE_SRID))
    return expr, [span / 64, cx1, cy1, cx2, cy2, max(1.0, span / 1000)]


def tile_properties(theme: Theme, public: bool) -> list[str]:
    """The attributes a tile of `theme` carries for an audience, in output order: the
    audience's (`theme.property_columns(public)`) without personal data (`personal_fields`
    and their text twins), which no tile carries for anyone."""
    personal = {f.name for f in theme.personal_fields} | \
        {f.twin for f in theme.personal_fields if f.twin}
    return [c for c in theme.property_columns(public) if c not in personal]


def cluster_figure(theme: Theme) -> str | None:
    """The attribute a cluster sums: the first of the theme's figures that the public may
    read (clusters are the same for every audience), or None (clusters count only)."""
    for figure in theme.figures:
        f = theme.fields_by_name.get(figure.field)
        if f is not None and f.public and not f.personal and f.name != COUNT:
            return f.name
    return None


def cluster_properties(theme: Theme) -> list[str]:
    """The attributes of a cluster of `theme`: `antal`, and the sum of its figure."""
    figure = cluster_figure(theme)
    return [COUNT] + ([figure] if figure else [])


def tile_sql(t: Tile, q: query.ItemsQuery,
             max_points: int = MAX_POINTS) -> tuple[sql.Composed, list]:
    """One Mapbox Vector Tile of `q.theme` (a single bytea, empty when no object is in the
    tile), as the actor sees it: for a point theme layer `theme.tile_layer`, a point per object
    with `tile_properties` (`q.public`: the public subset from the public views), or, when
    there are more than `max_points` of them, layer `theme.cluster_layer`: their clusters with
    `cluster_properties`; for an area theme layer `theme.tile_layer`, the polygons clipped to
    the tile (simplified when more than `max_points`). See the module docstring. The filters
    of `q` apply (CQL2, property filters, datetime, asof; bbox and paging are ignored)."""
    if max_points < 0:
        raise ValueError("max_points must not be negative")
    theme = q.theme
    box, box_params = _storage_box(t)
    tile_srid = sql.Literal(t.srid)
    geom = sql.SQL("t.geometri") if t.srid == STORAGE_SRID else \
        sql.SQL("ST_Transform(t.geometri, {})").format(tile_srid)
    where, where_params = query.where_clause(query.ItemsQuery(
        public=q.public, asof=q.asof, datetime_range=q.datetime_range, equals=q.equals,
        cql=q.cql, theme=theme))
    src = query.source(q)
    # The envelope and the box are computed once (materialised, read as scalar subqueries,
    # i.e. init plans), also in the generic plan of the prepared statement: the box is then
    # an index condition, never an expression evaluated per row.
    head = sql.SQL(
        "WITH e AS MATERIALIZED (SELECT ST_MakeEnvelope(%s, %s, %s, %s, {srid}) AS tile), "
        "b AS MATERIALIZED (SELECT {box} AS box FROM e), "
    ).format(srid=tile_srid, box=box)
    head_params = [*t.bounds, *box_params]
    properties = tile_properties(theme, q.public)
    if theme.is_area:
        stmt, params = _area_sql(t, theme, geom, src, where, where_params, properties,
                                 max_points)
    else:
        stmt, params = _point_sql(t, theme, geom, src, where, where_params, properties,
                                  max_points)
    return head + stmt, head_params + params


def _columns(names: list[str], alias: str = "t") -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(p))
                              for p in names)


def _area_sql(t: Tile, theme: Theme, geom: sql.Composable, src: sql.Composable,
              where: sql.Composable, where_params: list, properties: list[str],
              max_points: int) -> tuple[sql.Composed, list]:
    """The area tile after `e` and `b`: `a` holds the visible polygons intersecting the tile,
    each transformed once (OFFSET 0 keeps that subquery whole); `n` counts them; each is
    clipped to the tile and its buffer by ST_AsMVTGeom, simplified first when `n` is above
    `max_points`."""
    tolerance = (t.bounds[2] - t.bounds[0]) / DENSE_AREA_PIXELS
    stmt = sql.SQL(
        "a AS MATERIALIZED (SELECT * FROM ("
        "SELECT {geom} AS g, {cols} FROM {src} t "
        "WHERE t.geometri && (SELECT box FROM b) AND {where} OFFSET 0) x "
        "WHERE ST_Intersects(x.g, (SELECT tile FROM e))), "
        "n AS MATERIALIZED (SELECT count(*) AS c FROM a) "
        "SELECT ST_AsMVT(m, {layer}, {extent}, 'geom') FROM ("
        "SELECT ST_AsMVTGeom(CASE WHEN (SELECT c FROM n) <= %s THEN a.g "
        "ELSE ST_Simplify(a.g, %s) END, (SELECT tile FROM e), {extent}, {buffer}, true) AS geom, "
        "{acols} FROM a) m"
    ).format(geom=geom, cols=_columns(properties), src=src, where=where,
             layer=sql.Literal(theme.tile_layer), extent=sql.Literal(EXTENT),
             buffer=sql.Literal(BUFFER), acols=_columns(properties, "a"))
    return stmt, [*where_params, max_points, tolerance]


def _point_sql(t: Tile, theme: Theme, geom: sql.Composable, src: sql.Composable,
               where: sql.Composable, where_params: list, properties: list[str],
               max_points: int) -> tuple[sql.Composed, list]:
    """The point tile after `e` and `b`: points or clusters (module docstring)."""
    points = sql.SQL(
        "SELECT ST_AsMVT(m, {layer}, {extent}, 'geom') FROM ("
        "SELECT ST_AsMVTGeom({geom}, (SELECT tile FROM e), {extent}, {buffer}, true) AS geom, "
        "{cols} FROM {src} t "
        "WHERE t.geometri && (SELECT box FROM b) "
        "AND ST_Intersects({geom}, (SELECT tile FROM e)) AND {where}) m"
    ).format(layer=sql.Literal(theme.tile_layer), extent=sql.Literal(EXTENT),
             buffer=sql.Literal(BUFFER), geom=geom, cols=_columns(properties), src=src,
             where=where)
    # `s`: the objects in the tile, as (x, y) in the set's CRS and the figure, read lazily: the
    # count `n` pulls at most max_points + 1 of them, and only the clusters read on (a CTE's
    # readers share its rows, so none is read twice). It reads only the geometry and the
    # figure, so PostgreSQL leaves out the view's code-list joins. Each point is transformed
    # once (OFFSET 0 keeps that subquery whole) and tested against the tile by its
    # coordinates: for a point and the axis-parallel envelope that is exactly the points'
    # ST_Intersects (edges included; comparing doubles is exact), at a fraction of its cost
    # per row.
    figure = cluster_figure(theme)
    fig_in = sql.SQL(", t.{} AS f").format(sql.Identifier(figure)) if figure else sql.SQL("")
    fig_out = sql.SQL(", g.f") if figure else sql.SQL("")
    fig_sum = sql.SQL(", sum(s.f) AS {}").format(sql.Identifier(figure)) if figure \
        else sql.SQL("")
    xmin, ymin, xmax, ymax = t.bounds
    objects = sql.SQL(
        "SELECT ST_X(g.p) AS x, ST_Y(g.p) AS y{fig_out} FROM ("
        "SELECT {geom} AS p{fig_in} FROM {src} t "
        "WHERE t.geometri && (SELECT box FROM b) AND {where} OFFSET 0) g "
        "WHERE ST_X(g.p) BETWEEN %s AND %s AND ST_Y(g.p) BETWEEN %s AND %s"
    ).format(geom=geom, src=src, where=where, fig_in=fig_in, fig_out=fig_out)
    # Clusters: the cell of a point by integer division of its offset from the tile's top left
    # corner (x right, y down), clamped so that points on the right and bottom edges fall in
    # the last cell; the cluster's point at the mean position, in tile coordinates (0 ...
    # EXTENT across the tile, as ST_AsMVTGeom computes them), rounded.
    to_tile_x, to_tile_y = EXTENT / (xmax - xmin), EXTENT / (ymax - ymin)
    to_cell_x, to_cell_y = GRID / (xmax - xmin), GRID / (ymax - ymin)
    clusters = sql.SQL(
        "SELECT ST_AsMVT(k, {layer}, {extent}, 'geom') FROM ("
        "SELECT ST_Point(round((avg(s.x) - %s) * %s), round((%s - avg(s.y)) * %s)) AS geom, "
        "count(*) AS {count}{fig_sum} FROM s "
        "GROUP BY least(floor((s.x - %s) * %s), {last})::int * {grid} "
        "+ least(floor((%s - s.y) * %s), {last})::int) k"
    ).format(layer=sql.Literal(theme.cluster_layer), extent=sql.Literal(EXTENT),
             count=sql.Identifier(COUNT), fig_sum=fig_sum,
             last=sql.Literal(GRID - 1), grid=sql.Literal(GRID))
    # The CASE evaluates the init plan of its branch only.
    stmt = sql.SQL(
        "s AS MATERIALIZED ({objects}), "
        "n AS MATERIALIZED (SELECT count(*) AS c FROM (SELECT 1 FROM s LIMIT %s) x) "
        "SELECT CASE WHEN (SELECT c FROM n) <= %s THEN ({points}) ELSE ({clusters}) END"
    ).format(objects=objects, points=points, clusters=clusters)
    return stmt, [*where_params, xmin, xmax, ymin, ymax,
                  max_points + 1, max_points, *where_params,
                  xmin, to_tile_x, ymax, to_tile_y, xmin, to_cell_x, ymax, to_cell_y]
