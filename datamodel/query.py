"""SQL for reading the register: GeoJSON features built in PostGIS, with bound parameters.

Every function returns `(sql.Composed, params)`; nothing here talks to a connection, so the
service (async) and the loaders (sync) share the same statements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from psycopg import sql

from datamodel import crs as crsmod
from datamodel.fields import GEOMETRY_COLUMN, PUBLIC_FIELDS, SHELTER_FIELDS, STORAGE_SRID

CURRENT_VIEW = sql.Identifier("ly", "t_6101_beskyt_rum")
HISTORY_VIEW = sql.Identifier("ly", "hist_t_6101_beskyt_rum")
# The public's views expose only the public attributes (the database refuses the others).
PUBLIC_CURRENT_VIEW = sql.Identifier("ly", "offentlig_t_6101_beskyt_rum")
PUBLIC_HISTORY_VIEW = sql.Identifier("ly", "offentlig_hist_t_6101_beskyt_rum")


def property_columns(fields=SHELTER_FIELDS) -> list[str]:
    """Output property names in order: each field, its text twin right after its code."""
    names: list[str] = []
    for f in fields:
        names.append(f.name)
        if f.twin:
            names.append(f.twin)
    return names


def views(public: bool) -> tuple[sql.Identifier, sql.Identifier]:
    """(current, history) views for an audience."""
    if public:
        return PUBLIC_CURRENT_VIEW, PUBLIC_HISTORY_VIEW
    return CURRENT_VIEW, HISTORY_VIEW


def audience_properties(public: bool) -> list[str]:
    return property_columns(PUBLIC_FIELDS if public else SHELTER_FIELDS)


def geometry_expr(out: crsmod.Crs, column: str = GEOMETRY_COLUMN) -> sql.Composable:
    geom = sql.SQL("t.{}").format(sql.Identifier(column))
    if out.srid != STORAGE_SRID:
        geom = sql.SQL("ST_Transform({}, {})").format(geom, sql.Literal(out.srid))
    if out.lat_first:
        geom = sql.SQL("ST_FlipCoordinates({})").format(geom)
    return sql.SQL("ST_AsGeoJSON({}, {})::json").format(geom, sql.Literal(out.decimals))


def feature_expr(out: crsmod.Crs, properties: list[str]) -> sql.Composable:
    """One GeoJSON Feature as JSON text, built by PostgreSQL from the row `t`."""
    props = properties
    cols = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(p)) for p in props)
    return sql.SQL(
        "json_build_object('type', 'Feature', 'id', t.objekt_id, 'geometry', {geom}, "
        "'properties', (SELECT row_to_json(p) FROM (SELECT {cols}) p))::text"
    ).format(geom=geometry_expr(out), cols=cols)


def envelope_expr(bbox: tuple[float, ...], in_crs: crsmod.Crs) -> tuple[sql.Composable, list]:
    """A query envelope in storage CRS from a bbox given in `in_crs` (axis order of that CRS).

    Geographic envelopes are densified before they are transformed, so their edges follow
    the meridians and parallels, and clipped to where ETRS89 is defined.
    """
    if len(bbox) == 6:
        bbox = (bbox[0], bbox[1], bbox[3], bbox[4])
    x1, y1, x2, y2 = bbox
    if in_crs.lat_first:
        x1, y1, x2, y2 = y1, x1, y2, x2
    if in_crs.srid == STORAGE_SRID:
        return sql.SQL("ST_MakeEnvelope(%s, %s, %s, %s, 25832)"), [x1, y1, x2, y2]
    env = sql.SQL("ST_MakeEnvelope(%s, %s, %s, %s, %s)")
    params: list = [x1, y1, x2, y2, in_crs.srid]
    if in_crs.srid != 4326:
        env = sql.SQL("ST_Transform(ST_Segmentize({}, 1000), 4326)").format(env)
    cx1, cy1, cx2, cy2 = crsmod.ETRS89_LONLAT_BOX
    expr = sql.SQL(
        "ST_Transform(ST_Segmentize(ST_ClipByBox2D({}, ST_MakeEnvelope(%s, %s, %s, %s, 4326)), "
        "0.01), 25832)"
    ).format(env)
    return expr, params + [cx1, cy1, cx2, cy2]


@dataclass
class ItemsQuery:
    """What a request for items asks of the register."""

    out: crsmod.Crs = crsmod.DEFAULT
    limit: int = 10
    after: UUID | None = None  # keyset cursor: objekt_id of the last feature of the previous page
    bbox: tuple[float, ...] | None = None
    bbox_crs: crsmod.Crs = crsmod.DEFAULT
    datetime_range: tuple[datetime | None, datetime | None] | None = None
    asof: datetime | None = None
    equals: dict[str, object] = field(default_factory=dict)  # property = value filters
    cql: tuple[sql.Composable, list] | None = None  # from datamodel.cql2sql.to_sql
    objekt_id: UUID | None = None
    public: bool = False  # the public's attributes and views

    @property
    def properties(self) -> list[str]:
        return audience_properties(self.public)


def where_clause(q: ItemsQuery) -> tuple[sql.Composable, list]:
    clauses: list[sql.Composable] = []
    params: list = []
    if q.asof is not None:
        clauses.append(sql.SQL("t.systid_fra <= %s AND (t.systid_til IS NULL OR t.systid_til > %s)"))
        params += [q.asof, q.asof]
    if q.objekt_id is not None:
        clauses.append(sql.SQL("t.objekt_id = %s"))
        params.append(q.objekt_id)
    if q.bbox is not None:
        env, env_params = envelope_expr(q.bbox, q.bbox_crs)
        # The envelope is an expression of constants: planned with the actual values (the
        # service disables generic plans), PostgreSQL folds it and estimates how many rows it
        # holds, which decides between the spatial index and the objekt_id order.
        clauses.append(sql.SQL("t.geometri && {e} AND ST_Intersects(t.geometri, {e})")
                       .format(e=env))
        params += env_params + env_params
    if q.datetime_range is not None:
        start, end = q.datetime_range
        if end is not None:
            clauses.append(sql.SQL("t.systid_fra <= %s"))
            params.append(end)
        if start is not None:
            clauses.append(sql.SQL("(t.systid_til IS NULL OR t.systid_til >= %s)"))
            params.append(start)
    for name, value in q.equals.items():
        clauses.append(sql.SQL("t.{} = %s").format(sql.Identifier(name)))
        params.append(value)
    if q.cql is not None:
        expr, cql_params = q.cql
        clauses.append(sql.SQL("({})").format(expr))
        params += cql_params
    if not clauses:
        return sql.SQL("TRUE"), params
    return sql.SQL(" AND ").join(clauses), params


def source(q: ItemsQuery) -> sql.Composable:
    current, history = views(q.public)
    return history if q.asof is not None else current


def items_sql(q: ItemsQuery) -> tuple[sql.Composed, list]:
    """One page of features (`limit + 1` rows, to tell whether a next page exists).

    Rows: (feature json text, objekt_id). Keyset paging on objekt_id keeps deep pages as fast
    as the first. The page is chosen first (the view's code-list joins are unused there, so
    PostgreSQL removes them), and only its rows are joined and turned into GeoJSON.
    """
    where, params = where_clause(q)
    keyset = sql.SQL("")
    if q.after is not None:
        keyset = sql.SQL(" AND t.objekt_id > %s")
        params = params + [q.after]
    stmt = sql.SQL(
        "WITH page AS MATERIALIZED (SELECT t.versions_id FROM {src} t WHERE {where}{keyset} "
        "ORDER BY t.objekt_id LIMIT %s) "
        "SELECT {feature}, t.objekt_id FROM page CROSS JOIN LATERAL "
        "(SELECT * FROM {src} v WHERE v.versions_id = page.versions_id OFFSET 0) t "
        "ORDER BY t.objekt_id"
    ).format(feature=feature_expr(q.out, q.properties), src=source(q), where=where,
             keyset=keyset)
    return stmt, params + [q.limit + 1]


def count_sql(q: ItemsQuery, cap: int) -> tuple[sql.Composed, list]:
    """Count of matches, reading at most `cap + 1` rows (more than cap means: not exact)."""
    where, params = where_clause(q)
    stmt = sql.SQL(
        "SELECT count(*) FROM (SELECT 1 FROM {src} t WHERE {where} LIMIT %s) c"
    ).format(src=source(q), where=where)
    return stmt, params + [cap + 1]


def feature_sql(objekt_id: UUID, out: crsmod.Crs, asof: datetime | None = None,
                public: bool = False) -> tuple[sql.Composed, list]:
    """One feature (current, or as of an instant). Rows: (feature json, versions_id)."""
    q = ItemsQuery(out=out, asof=asof, objekt_id=objekt_id, public=public)
    where, params = where_clause(q)
    stmt = sql.SQL("SELECT {feature}, t.versions_id FROM {src} t WHERE {where}").format(
        feature=feature_expr(out, q.properties), src=source(q), where=where
    )
    return stmt, params


def history_sql(objekt_id: UUID, out: crsmod.Crs,
                public: bool = False) -> tuple[sql.Composed, list]:
    """Every version of one object, oldest first. Rows: (feature json, versions_id)."""
    stmt = sql.SQL(
        "SELECT {feature}, t.versions_id FROM {src} t WHERE t.objekt_id = %s "
        "ORDER BY t.systid_fra, t.systid_til NULLS LAST"
    ).format(feature=feature_expr(out, audience_properties(public)), src=views(public)[1])
    return stmt, [objekt_id]


def extent_sql(public: bool = False) -> sql.Composed:
    """Spatial extent (CRS84) and the start of system time of the current register.

    The convex hull is taken in storage CRS and only its (densified) outline is transformed,
    so the extent is tight without transforming every point.
    """
    return sql.SQL(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e), "
        "(SELECT min(systid_fra) FROM {}) "
        "FROM (SELECT ST_Transform(ST_Segmentize(ST_ConvexHull(ST_Collect(geometri)), 1000), "
        "4326) e FROM {}) x"
    ).format(views(public)[1], views(public)[0])
