"""Vector tiles of the register: tile matrix sets and the SQL that builds Mapbox Vector Tiles
in PostGIS (OGC API - Tiles, two tile matrix sets).

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
test in the tile matrix set's CRS. "In the tile" means: the point lies in the tile's envelope,
edges included, so neighbouring tiles repeat only points lying on their shared edge.

A tile is points or clusters, decided per tile by how many shelters the actor sees in it
(after every filter):

- at most `max_points` (default `MAX_POINTS`, 10 000, tipg's cap per tile): layer
  `beskyttelsesrum`, one point per shelter (`ST_AsMVT` over `ST_AsMVTGeom`) with the
  audience's attributes;
- more: layer `beskyttelsesrum_klynger` instead, the same shelters grouped on a regular grid
  of `GRID` x `GRID` (64 x 64) cells per tile in the tile matrix set's CRS (a cell is 64 x 64
  units of the tile's 4096 x 4096 coordinate space; points on the tile's right or bottom
  edge count in the last cell). One point per non-empty cell, at the mean position of its
  shelters (rounded to the tile's integer coordinates, so a lone shelter's cluster sits where
  its point would), with `antal` (number of shelters) and `pladser` (sum of their places).
  Nothing is dropped: the `antal` of a tile add up to the shelters the actor sees in it, and
  row-level security decides which those are, as for points. Clusters read only the geometry
  and `pladser`, so PostgreSQL leaves out the views' code-list joins.

The decision is a bounded count inside the same statement: it reads at most `max_points + 1`
of the rows the clusters would read (and the clusters read on from there, not again), then
`CASE` runs only the sub-plan of the branch it takes.

Nothing here talks to a connection; the service runs the statement in the actor's
transaction, where row-level security decides which shelters exist at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import morecantile
from psycopg import sql

from datamodel import crs as crsmod
from datamodel import query
from datamodel.fields import STORAGE_SRID

LAYER = "beskyttelsesrum"
#: The layer of a dense tile: shelters grouped on a grid (see the module docstring).
CLUSTER_LAYER = "beskyttelsesrum_klynger"
#: A tile with more shelters than this (visible to the actor, after the filters) is clusters.
MAX_POINTS = 10_000
#: Clusters: cells per tile side.
GRID = 64
#: Tile coordinate space of ST_AsMVTGeom, and the buffer around the tile (in that space).
EXTENT, BUFFER = 4096, 64

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


def tile_sql(t: Tile, q: query.ItemsQuery,
             max_points: int = MAX_POINTS) -> tuple[sql.Composed, list]:
    """One Mapbox Vector Tile (a single bytea, empty when no shelter is in the tile): layer
    `beskyttelsesrum`, a point per shelter the actor sees in the tile, with the audience's
    attributes (`q.public`: the public subset from the public views), or, when there are more
    than `max_points` of them, layer `beskyttelsesrum_klynger`: their clusters with `antal`
    and `pladser` (see the module docstring). The filters of `q` apply (CQL2, property
    filters, datetime, asof; bbox and paging are ignored)."""
    if max_points < 0:
        raise ValueError("max_points must not be negative")
    box, box_params = _storage_box(t)
    tile_srid = sql.Literal(t.srid)
    geom = sql.SQL("t.geometri") if t.srid == STORAGE_SRID else \
        sql.SQL("ST_Transform(t.geometri, {})").format(tile_srid)
    where, where_params = query.where_clause(query.ItemsQuery(
        public=q.public, asof=q.asof, datetime_range=q.datetime_range, equals=q.equals,
        cql=q.cql))
    src = query.source(q)
    cols = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(p)) for p in q.properties)
    points = sql.SQL(
        "SELECT ST_AsMVT(m, {layer}, {extent}, 'geom') FROM ("
        "SELECT ST_AsMVTGeom({geom}, (SELECT tile FROM e), {extent}, {buffer}, true) AS geom, "
        "{cols} FROM {src} t "
        "WHERE t.geometri && (SELECT box FROM b) "
        "AND ST_Intersects({geom}, (SELECT tile FROM e)) AND {where}) m"
    ).format(layer=sql.Literal(LAYER), extent=sql.Literal(EXTENT), buffer=sql.Literal(BUFFER),
             geom=geom, cols=cols, src=src, where=where)
    # `s`: the shelters in the tile, as (x, y) in the set's CRS and pladser, read lazily: the
    # count `n` pulls at most max_points + 1 of them, and only the clusters read on (a CTE's
    # readers share its rows, so none is read twice). It reads only the geometry and pladser,
    # so PostgreSQL leaves out the view's code-list joins. Each point is transformed once
    # (OFFSET 0 keeps that subquery whole) and tested against the tile by its coordinates:
    # for a point and the axis-parallel envelope that is exactly the points' ST_Intersects
    # (edges included; comparing doubles is exact), at a fraction of its cost per row.
    xmin, ymin, xmax, ymax = t.bounds
    shelters = sql.SQL(
        "SELECT ST_X(g.p) AS x, ST_Y(g.p) AS y, g.pladser FROM ("
        "SELECT {geom} AS p, t.pladser FROM {src} t "
        "WHERE t.geometri && (SELECT box FROM b) AND {where} OFFSET 0) g "
        "WHERE ST_X(g.p) BETWEEN %s AND %s AND ST_Y(g.p) BETWEEN %s AND %s"
    ).format(geom=geom, src=src, where=where)
    # Clusters: the cell of a point by integer division of its offset from the tile's top left
    # corner (x right, y down), clamped so that points on the right and bottom edges fall in
    # the last cell; the cluster's point at the mean position, in tile coordinates (0 ...
    # EXTENT across the tile, as ST_AsMVTGeom computes them), rounded.
    to_tile_x, to_tile_y = EXTENT / (xmax - xmin), EXTENT / (ymax - ymin)
    to_cell_x, to_cell_y = GRID / (xmax - xmin), GRID / (ymax - ymin)
    clusters = sql.SQL(
        "SELECT ST_AsMVT(k, {layer}, {extent}, 'geom') FROM ("
        "SELECT ST_Point(round((avg(s.x) - %s) * %s), round((%s - avg(s.y)) * %s)) AS geom, "
        "count(*) AS antal, sum(s.pladser) AS pladser FROM s "
        "GROUP BY least(floor((s.x - %s) * %s), {last})::int * {grid} "
        "+ least(floor((%s - s.y) * %s), {last})::int) k"
    ).format(layer=sql.Literal(CLUSTER_LAYER), extent=sql.Literal(EXTENT),
             last=sql.Literal(GRID - 1), grid=sql.Literal(GRID))
    # The envelope and the box are computed once (materialised, read as scalar subqueries,
    # i.e. init plans), also in the generic plan of the prepared statement: the box is then
    # an index condition, never an expression evaluated per row. The CASE evaluates the init
    # plan of its branch only.
    stmt = sql.SQL(
        "WITH e AS MATERIALIZED (SELECT ST_MakeEnvelope(%s, %s, %s, %s, {srid}) AS tile), "
        "b AS MATERIALIZED (SELECT {box} AS box FROM e), "
        "s AS MATERIALIZED ({shelters}), "
        "n AS MATERIALIZED (SELECT count(*) AS c FROM (SELECT 1 FROM s LIMIT %s) x) "
        "SELECT CASE WHEN (SELECT c FROM n) <= %s THEN ({points}) ELSE ({clusters}) END"
    ).format(srid=tile_srid, box=box, shelters=shelters, points=points, clusters=clusters)
    return stmt, [*t.bounds, *box_params, *where_params, xmin, xmax, ymin, ymax,
                  max_points + 1, max_points, *where_params,
                  xmin, to_tile_x, ymax, to_tile_y, xmin, to_cell_x, ymax, to_cell_y]
