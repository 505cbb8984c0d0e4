"""SQL for reading a theme's register: GeoJSON features built in PostGIS, with bound parameters.

Every function returns `(sql.Composed, params)`; nothing here talks to a connection, so the
service (async) and the loaders (sync) share the same statements. Every statement is generic
over a theme's descriptor (`datamodel.themes.Theme`): its views, attributes and validity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from psycopg import sql

from datamodel import crs as crsmod
from datamodel import themes
from datamodel.fields import GEOMETRY_COLUMN, STORAGE_SRID
from datamodel.themes import Theme

#: The time zone in which an instant falls on a day of a validity period (gyldig_fra and
#: gyldig_til are Danish calendar dates).
VALIDITY_TIME_ZONE = "Europe/Copenhagen"


def views(public: bool, theme: Theme | None = None) -> tuple[sql.Identifier, sql.Identifier]:
    """(current, history) views of a theme for an audience. The public's views expose only the
    public attributes (the database refuses the others)."""
    t = theme or themes.default()
    if public:
        return (sql.Identifier("ly", t.public_current_view),
                sql.Identifier("ly", t.public_history_view))
    return sql.Identifier("ly", t.current_view), sql.Identifier("ly", t.history_view)


def current_view(theme: Theme) -> sql.Identifier:
    """The view clients write through (INSTEAD OF triggers keep the history)."""
    return sql.Identifier("ly", theme.current_view)


def audience_properties(public: bool, theme: Theme | None = None) -> list[str]:
    return (theme or themes.default()).property_columns(public)


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
    theme: Theme = field(default_factory=themes.default)

    @property
    def properties(self) -> list[str]:
        return self.theme.property_columns(self.public)


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
        clause, dt_params = datetime_clause(q.theme, q.datetime_range)
        clauses.append(clause)
        params += dt_params
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


def datetime_clause(theme: Theme, moment: tuple[datetime | None, datetime | None]
                    ) -> tuple[sql.Composable, list]:
    """`datetime` (Part 1): the features' temporal extent.

    A theme with a validity period (6120, 6121: `gyldig_fra`/`gyldig_til`, Danish calendar
    days, the last one included, NULL `gyldig_til` open-ended) matches the objects valid at
    the instant or at some time in the interval, so "events on now" is one request. Other
    themes (the shelters) match the versions whose system time overlaps it, as before.
    """
    start, end = moment
    clauses: list[sql.Composable] = []
    params: list = []
    if theme.validity:
        v_from, v_to = (sql.Identifier(n) for n in theme.validity)
        day = sql.SQL("(%s::timestamptz AT TIME ZONE {})::date").format(
            sql.Literal(VALIDITY_TIME_ZONE))
        if end is not None:
            clauses.append(sql.SQL("(t.{f} IS NULL OR t.{f} <= {d})").format(f=v_from, d=day))
            params.append(end)
        if start is not None:
            clauses.append(sql.SQL("(t.{t} IS NULL OR t.{t} >= {d})").format(t=v_to, d=day))
            params.append(start)
    else:
        if end is not None:
            clauses.append(sql.SQL("t.systid_fra <= %s"))
            params.append(end)
        if start is not None:
            clauses.append(sql.SQL("(t.systid_til IS NULL OR t.systid_til >= %s)"))
            params.append(start)
    return sql.SQL(" AND ").join(clauses), params


def source(q: ItemsQuery) -> sql.Composable:
    current, history = views(q.public, q.theme)
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
                public: bool = False, theme: Theme | None = None) -> tuple[sql.Composed, list]:
    """One feature (current, or as of an instant). Rows: (feature json, versions_id)."""
    q = ItemsQuery(out=out, asof=asof, objekt_id=objekt_id, public=public,
                   theme=theme or themes.default())
    where, params = where_clause(q)
    stmt = sql.SQL("SELECT {feature}, t.versions_id FROM {src} t WHERE {where}").format(
        feature=feature_expr(out, q.properties), src=source(q), where=where
    )
    return stmt, params


def history_sql(objekt_id: UUID, out: crsmod.Crs, public: bool = False,
                theme: Theme | None = None) -> tuple[sql.Composed, list]:
    """Every version of one object, oldest first. Rows: (feature json, versions_id)."""
    stmt = sql.SQL(
        "SELECT {feature}, t.versions_id FROM {src} t WHERE t.objekt_id = %s "
        "ORDER BY t.systid_fra, t.systid_til NULLS LAST"
    ).format(feature=feature_expr(out, audience_properties(public, theme)),
             src=views(public, theme)[1])
    return stmt, [objekt_id]


def extent_sql(public: bool = False, theme: Theme | None = None) -> sql.Composed:
    """Spatial extent (CRS84) and the start of system time of a theme's current register.

    The convex hull is taken in storage CRS and only its (densified) outline is transformed,
    so the extent is tight without transforming every point.
    """
    return sql.SQL(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e), "
        "(SELECT min(systid_fra) FROM {}) "
        "FROM (SELECT ST_Transform(ST_Segmentize(ST_ConvexHull(ST_Collect(geometri)), 1000), "
        "4326) e FROM {}) x"
    ).format(views(public, theme)[1], views(public, theme)[0])
