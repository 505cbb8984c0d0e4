"""SQL for the nearest objects of a theme to a point (`/naermeste`): exact, with ties broken.

Distance is planar in storage's EPSG:25832 (`ST_Distance` on the stored geometry: metres on
the UTM grid, for a point the distance to it, for an area 0 inside it and the distance to its
boundary outside), everywhere, whatever CRS the point is given in. The answer is the `k`
objects nearest by that distance, ties broken by objekt_id.

Two steps, both on the spatial index (the partial GiST index on the current rows):

1. KNN: `ORDER BY t.geometri <-> p LIMIT k` finds k objects by the index. Since PostGIS 2.2
   (on PostgreSQL 9.5+) `<->` on geometry is the true planar distance, rechecked on the
   geometry (not the box distance of older PostGIS), for points and areas alike; but the
   order among equal distances is whatever the index yields. The largest exact distance of
   these k, `r`, is at least the true k-th distance (even if `<->` were box distance, the k
   it returns lie at most `r` away, so at least k objects do).
2. Exact: every object within `r` (`ST_DWithin`, on the index; grown by `RADIUS_SLACK` so no
   object at exactly `r` is lost to rounding in a different code path), ordered by
   `ST_Distance, objekt_id`, the first k. Every object tied at the k-th distance is a
   candidate, so the tie rule is exact too (a candidate set of "k plus some" from KNN alone
   could miss a tied object with a smaller objekt_id).

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
#: Relative and absolute slack of the exact step's radius (see the module's docstring): a
#: few more candidates at most, each ordered by its exact distance.
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


def nearest_sql(q: NearestQuery) -> tuple[sql.Composed, list]:
    """The `q.k` nearest objects, nearest first (ties: objekt_id). Rows: (feature json text
    with `afstand_m` in its properties, objekt_id, the exact distance in metres)."""
    props = q.theme.property_columns(q.public)
    if DISTANCE_PROPERTY in props:  # a theme's own attribute would be shadowed
        raise ValueError(f"{q.theme.collection_id} has an attribute {DISTANCE_PROPERTY}")
    src = query.views(q.public, q.theme)[0]
    geom = sql.Identifier(GEOMETRY_COLUMN)
    pt, pt_params = point_expr(q)
    stmt = sql.SQL(
        # Step 1: k objects by the index's KNN order; their largest exact distance.
        "WITH knn AS MATERIALIZED (SELECT ST_Distance(t.{g}, {p}) AS d FROM {src} t "
        "ORDER BY t.{g} <-> {p} LIMIT %s), "
        # Step 2: everything within that radius, exactly ordered, ties by objekt_id. Only
        # versions_id and the distance here (the view's code-list joins are unused, so
        # PostgreSQL removes them); the features are built for the k chosen rows alone.
        "near AS MATERIALIZED (SELECT t.versions_id, t.objekt_id, ST_Distance(t.{g}, {p}) AS d "
        "FROM {src} t WHERE ST_DWithin(t.{g}, {p}, "
        "(SELECT max(d) FROM knn) * (1 + %s) + %s) "
        "ORDER BY 3, 2 LIMIT %s) "
        "SELECT {feature}, t.objekt_id, near.d FROM near CROSS JOIN LATERAL "
        "(SELECT v.*, round(near.d::numeric, {dec}) AS {dist} FROM {src} v "
        "WHERE v.versions_id = near.versions_id OFFSET 0) t "
        "ORDER BY near.d, near.objekt_id"
    ).format(g=geom, p=pt, src=src, dec=sql.Literal(DISTANCE_DECIMALS),
             dist=sql.Identifier(DISTANCE_PROPERTY),
             feature=query.feature_expr(q.out, [*props, DISTANCE_PROPERTY]))
    params = [*pt_params, *pt_params, q.k, *pt_params, *pt_params,
              RADIUS_SLACK_RELATIVE, RADIUS_SLACK_M, q.k]
    return stmt, params
