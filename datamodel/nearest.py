"""SQL for the nearest objects of a theme to a point (`/naermeste`): exact, with ties broken.

Distance is planar in storage's EPSG:25832 (`ST_Distance` on the stored geometry: metres on
the UTM grid, for a point the distance to it, for an area 0 inside it and the distance to its
boundary outside), everywhere, whatever CRS the point is given in. The answer is the `k`
objects nearest by that distance, ties broken by objekt_id.

One scan of the spatial index (the partial GiST index on the current rows), as KNN:
`ORDER BY t.geometri <-> p LIMIT c` takes the `c` candidates nearest to the point. Since
PostGIS 2.2 (on PostgreSQL 9.5+) `<->` on geometry orders by the true planar distance
(rechecked on the geometry, not the distance of the boxes), for points and areas alike; the
order among equal distances is whatever the index yields. The candidates are then ordered by
`ST_Distance, objekt_id` and the first k kept. That is exact when every object tied at the
k-th distance is a candidate: when fewer than `c` objects exist, or the farthest candidate
lies beyond the k-th distance (by more than `RADIUS_SLACK_*`, for rounding in a different
code path). Otherwise the statement says so (`complete` false) and the service asks again
with 4 times the candidates (`initial_candidates`: 2k + 10 first; one statement in practice).
KNN is an ORDER BY, not a condition: row-level security's conditions (not leakproof) keep a
condition such as `ST_DWithin` from the index, not an index order.

Visibility is not decided here: the statement reads the theme's current view for the
audience (`query.views`: the public's view for the public) in the caller's transaction, where
row-level security (off_kode, scope, activation) decides what is seen, as for items.

Every function returns `(sql.Composed, params)` with bound parameters; nothing here talks to
a connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql

from datamodel import crs as crsmod
from datamodel import query, themes
from datamodel.fields import GEOMETRY_COLUMN, STORAGE_SRID
from datamodel.themes import Theme

#: The property that carries the distance, in metres, rounded to millimetres (3 decimals, as
#: coordinates in metres are output: `crs.METRIC_DECIMALS`). The order is by the unrounded
#: distance, so two features may show the same afstand_m and still be ordered by it.
DISTANCE_PROPERTY = "afstand_m"
DISTANCE_DECIMALS = crsmod.METRIC_DECIMALS
#: Relative and absolute slack by which the farthest candidate must lie beyond the k-th
#: distance for the answer to be complete (see the module's docstring).
RADIUS_SLACK_RELATIVE = 1e-9
RADIUS_SLACK_M = 1e-6
MAX_K = 100


@dataclass
class NearestQuery:
    """What a request for the nearest objects asks: a point (x, y in `in_crs`'s x/y order,
    i.e. already swapped from lat/lon if that CRS is lat-first), how many, of which theme,
    for which audience, output in `out`."""

    x: float
    y: float
    in_crs: crsmod.Crs = crsmod.DEFAULT
    k: int = 5
    out: crsmod.Crs = crsmod.DEFAULT
    public: bool = False
    theme: Theme = field(default_factory=themes.default)


def point_expr(q: NearestQuery) -> tuple[sql.Composable, list]:
    """The point in storage CRS. An expression of bound constants: IMMUTABLE functions only,
    so PostgreSQL folds it at planning and the index scans take it as a constant."""
    pt = sql.SQL("ST_SetSRID(ST_MakePoint(%s, %s), %s)")
    params: list = [q.x, q.y, q.in_crs.srid]
    if q.in_crs.srid != STORAGE_SRID:
        pt = sql.SQL("ST_Transform({}, {})").format(pt, sql.Literal(STORAGE_SRID))
    return pt, params


def initial_candidates(k: int) -> int:
    """How many candidates the first statement takes: k and a margin for ties at the k-th
    distance (the service takes 4 times as many again while the answer is incomplete)."""
    return 2 * k + 10


def nearest_sql(q: NearestQuery, candidates: int) -> tuple[sql.Composed, list]:
    """The `q.k` nearest objects, nearest first (ties: objekt_id), from the `candidates`
    nearest by the index's KNN order. Rows: (feature json text with `afstand_m` in its
    properties, objekt_id, the exact distance in metres, complete). `complete` is false when
    the candidates may not hold every object tied at the k-th distance (the last candidate
    is no farther than it): the caller then asks again with more candidates."""
    if candidates < q.k:
        raise ValueError("candidates must be at least k")
    props = q.theme.property_columns(q.public)
    if DISTANCE_PROPERTY in props:  # a theme's own attribute would be shadowed
        raise ValueError(f"{q.theme.collection_id} has an attribute {DISTANCE_PROPERTY}")
    src = query.views(q.public, q.theme)[0]
    geom = sql.Identifier(GEOMETRY_COLUMN)
    pt, pt_params = point_expr(q)
    stmt = sql.SQL(
        # The candidates in the index's KNN order (`<->`: an ORDER BY, not a condition, so
        # row-level security's conditions do not keep it from the index), with their exact
        # distances. Only versions_id here (the view's code-list joins are unused, so
        # PostgreSQL removes them); the features are built for the k chosen rows alone.
        "WITH cand AS MATERIALIZED (SELECT t.versions_id, t.objekt_id, "
        "ST_Distance(t.{g}, {p}) AS d FROM {src} t ORDER BY t.{g} <-> {p} LIMIT %s), "
        "near AS MATERIALIZED (SELECT * FROM cand ORDER BY d, objekt_id LIMIT %s), "
        # Complete: fewer candidates than asked for (all there are), or the farthest lies
        # beyond the k-th distance (with slack): every object tied at it is a candidate.
        "done AS (SELECT count(*) < %s OR max(cand.d) > "
        "(SELECT max(d) FROM near) * (1 + %s) + %s AS complete FROM cand) "
        "SELECT {feature}, t.objekt_id, near.d, done.complete FROM near CROSS JOIN done "
        "CROSS JOIN LATERAL "
        "(SELECT v.*, round(near.d::numeric, {dec}) AS {dist} FROM {src} v "
        "WHERE v.versions_id = near.versions_id OFFSET 0) t "
        "ORDER BY near.d, near.objekt_id"
    ).format(g=geom, p=pt, src=src, dec=sql.Literal(DISTANCE_DECIMALS),
             dist=sql.Identifier(DISTANCE_PROPERTY),
             feature=query.feature_expr(q.out, [*props, DISTANCE_PROPERTY]))
    params = [*pt_params, *pt_params, candidates, q.k, candidates,
              RADIUS_SLACK_RELATIVE, RADIUS_SLACK_M]
    return stmt, params
