"""SQL for reading a theme's register: GeoJSON features built in PostGIS, with bound parameters.

Every function returns `(sql.Composed, params)`; nothing here talks to a connection, so the
service (async) and the loaders (sync) share the same statements. Every statement is generic
over a theme's descriptor (`datamodel.themes.Theme`): its views, attributes and validity.

A bbox in another CRS than storage's is decided in the box's own CRS (`bbox_clause`): the
box, transformed to EPSG:25832 and grown by `BBOX_PREFILTER_MARGIN`, only picks the
candidates from the spatial index; each candidate's geometry is transformed to the box's CRS
and tested against the box itself. The order of a page is objekt_id, or the caller's
`sortby` keys with objekt_id last (`SortKey`, text in `SORT_COLLATION`); paging is by keyset
in both directions (`Keyset`), so a deep page costs what the first does in the default order.
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

#: Metres by which a bbox given in a geographic CRS or EPSG:3857, densified (0.01 degree
#: segments) and transformed to storage's EPSG:25832, is grown before it picks candidates
#: from the spatial index. It must cover (1) the sag of the transformed segments: the image of
#: a parallel or meridian is curved in UTM and a 0.01 degree chord lies up to 1.2 cm inside or
#: outside it in Denmark, 1.55 cm anywhere in the clip box `crs.ETRS89_LONLAT_BOX` (measured
#: with PostGIS on a 0.5 degree grid of segments); (2) the transform's error: a round trip
#: 25832 -> 4326/3857 -> 25832 moves a point by less than 1e-8 m (PROJ's exact transverse
#: Mercator); and (3) for an area theme, how far an edge straight in EPSG:25832 lies from the
#: same edge straight in the box's CRS (the exact test transforms the vertices): 3.4 cm for a
#: 1 km edge, 0.86 m for 5 km, in Denmark. 1 m covers (1) + (2) with a factor of 60 and area
#: edges up to 5 km (the demo and benchmark areas' longest is 1.2 km). The cost of the margin
#: is a few more candidates, each refused by the exact test.
BBOX_PREFILTER_MARGIN = 1.0
#: The collation of text sort keys (`sortby`): Danish ICU (æ, ø, å after z, case and accents
#: at the lower levels), deterministic (ties broken by the bytes) and independent of the
#: database's default. Where PostgreSQL has no ICU, `FALLBACK_SORT_COLLATION` (code point
#: order) is used instead (the service asks `pg_collation` once).
SORT_COLLATION = "da-x-icu"
FALLBACK_SORT_COLLATION = "C"


@dataclass(frozen=True)
class SortKey:
    """One key of `sortby`: an attribute, ascending (NULLs last) or descending (NULLs
    first: the exact reverse)."""

    name: str
    descending: bool = False

    @property
    def spec(self) -> str:
        return ("-" if self.descending else "+") + self.name


@dataclass(frozen=True)
class Keyset:
    """Where a page starts: after (or, `backward`, before) the row whose sort key values are
    `values` (in `sortby` order) and whose objekt_id is `objekt_id`."""

    objekt_id: UUID
    values: tuple = ()
    backward: bool = False


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


def feature_expr(out: crsmod.Crs, properties: list[str],
                 skip_geometry: bool = False) -> sql.Composable:
    """One GeoJSON Feature as JSON text, built by PostgreSQL from the row `t`; with
    `skip_geometry` its geometry is null."""
    props = properties
    cols = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(p)) for p in props)
    geom = sql.SQL("NULL::json") if skip_geometry else geometry_expr(out)
    return sql.SQL(
        "json_build_object('type', 'Feature', 'id', t.objekt_id, 'geometry', {geom}, "
        "'properties', (SELECT row_to_json(p) FROM (SELECT {cols}) p))::text"
    ).format(geom=geom, cols=cols)


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


def _antimeridian_halves(bbox: tuple[float, ...], in_crs: crsmod.Crs
                         ) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """A box across the antimeridian (west edge east of the east edge, in a CRS that wraps
    there) as its two halves, in the box's own axis order; None for any other box."""
    span = crsmod.WRAPPING_X.get(in_crs.srid)
    if span is None:
        return None
    corners = (bbox[0], bbox[1], bbox[3], bbox[4]) if len(bbox) == 6 else bbox
    x = 1 if in_crs.lat_first else 0
    low, high = list(corners[:2]), list(corners[2:])
    if low[x] <= high[x]:
        return None
    east_half = (*low, *high[:x], span[1], *high[x + 1:])
    west_half = (*low[:x], span[0], *low[x + 1:], *high)
    return tuple(east_half), tuple(west_half)


def bbox_clause(bbox: tuple[float, ...], in_crs: crsmod.Crs,
                column: str = GEOMETRY_COLUMN) -> tuple[sql.Composable, list]:
    """Rows of `t` whose geometry intersects `bbox` (in `in_crs`, its axis order), decided in
    `in_crs` itself.

    In storage CRS the box is the index condition and the test. In another CRS the box's
    transformed, densified envelope grown by `BBOX_PREFILTER_MARGIN` is only the index
    condition (a superset of the matches); the test is the row's geometry transformed to
    `in_crs` against the box in `in_crs`, boundary included, so a point 1e-9 degrees inside
    an edge is in and one 1e-9 degrees outside is out, as the box's CRS says.
    """
    halves = _antimeridian_halves(bbox, in_crs)
    if halves:
        (a, a_params), (b, b_params) = (_box_clause(h, in_crs, column) for h in halves)
        return sql.SQL("(({}) OR ({}))").format(a, b), a_params + b_params
    return _box_clause(bbox, in_crs, column)


def _box_clause(bbox: tuple[float, ...], in_crs: crsmod.Crs,
                column: str) -> tuple[sql.Composable, list]:
    """`bbox_clause` of a box that does not cross the antimeridian."""
    geom = sql.SQL("t.{}").format(sql.Identifier(column))
    env, env_params = envelope_expr(bbox, in_crs)
    if in_crs.srid == STORAGE_SRID:
        return (sql.SQL("{g} && {e} AND ST_Intersects({g}, {e})").format(g=geom, e=env),
                env_params + env_params)
    if len(bbox) == 6:
        bbox = (bbox[0], bbox[1], bbox[3], bbox[4])
    x1, y1, x2, y2 = bbox
    if in_crs.lat_first:
        x1, y1, x2, y2 = y1, x1, y2, x2
    # The prefilter is an expression of constants: planned with the actual values (the
    # service disables generic plans), PostgreSQL folds it and estimates how many rows it
    # holds, which decides between the spatial index and the objekt_id order. The exact
    # test is in COALESCE: PostGIS estimates a spatial predicate on an expression (not a
    # column) to hold for 0.01 % of the rows, which would make a large box look small and
    # the planner sort every candidate instead of reading the objekt_id order; COALESCE's
    # estimate is a half (no NULL can come out of it: the box is never NULL).
    clause = sql.SQL(
        "{g} && ST_Expand({e}, %s) AND COALESCE(ST_Intersects(ST_Transform({g}, {srid}), "
        "ST_MakeEnvelope(%s, %s, %s, %s, {srid})), FALSE)"
    ).format(g=geom, e=env, srid=sql.Literal(in_crs.srid))
    return clause, env_params + [BBOX_PREFILTER_MARGIN, x1, y1, x2, y2]


def _like_pattern(term: str) -> str:
    """`%term%` for ILIKE, with the term's own `\\`, `%` and `_` taken literally."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_document(theme: Theme, public: bool) -> sql.Composable | None:
    """The text `q` searches in a row `t`: the theme's `search_fields` the audience may read,
    separated by a space (so no term matches across two attributes); None when it may read
    none of them."""
    readable = {f.name for f in theme.audience_fields(public)}
    names = [n for n in theme.search_fields if n in readable]
    if not names:
        return None
    # coalesce and || rather than concat_ws (STABLE): the expression is IMMUTABLE for text
    # and integer attributes, so a trigram index on ly.unaccent(<it>) could serve it.
    parts = [sql.SQL("coalesce(t.{}::text, '')").format(sql.Identifier(n)) for n in names]
    return sql.SQL("({})").format(sql.SQL(" || ' ' || ").join(parts))


def text_clause(theme: Theme, public: bool, terms: tuple[str, ...]
                ) -> tuple[sql.Composable, list]:
    """`q`: every term occurs in the search document, case- and accent-insensitively
    (`ly.unaccent`, migration 0013, on both sides; ILIKE)."""
    doc = search_document(theme, public)
    if doc is None:
        return sql.SQL("FALSE"), []
    doc = sql.SQL("ly.unaccent({})").format(doc)
    clauses = [sql.SQL("{} ILIKE ly.unaccent(%s)").format(doc) for _ in terms]
    return sql.SQL(" AND ").join(clauses), [_like_pattern(t) for t in terms]


@dataclass
class ItemsQuery:
    """What a request for items asks of the register."""

    out: crsmod.Crs = crsmod.DEFAULT
    limit: int = 10
    after: UUID | None = None  # the page after this objekt_id (default order; see `keyset`)
    keyset: Keyset | None = None  # where the page starts (a cursor), in the `sortby` order
    sortby: tuple[SortKey, ...] = ()  # then objekt_id
    collation: str = SORT_COLLATION  # of text sort keys
    select: tuple[str, ...] | None = None  # the properties output (None: every readable one)
    skip_geometry: bool = False
    text: tuple[str, ...] = ()  # `q`: terms that must all occur in the search fields
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
        """The output properties: the audience's, or the chosen ones of them (`select`)."""
        readable = self.theme.property_columns(self.public)
        if self.select is None:
            return readable
        return [p for p in self.select if p in readable]

    @property
    def boundary(self) -> Keyset | None:
        if self.keyset is not None:
            return self.keyset
        return Keyset(self.after) if self.after is not None else None


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
        clause, bbox_params = bbox_clause(q.bbox, q.bbox_crs)
        clauses.append(clause)
        params += bbox_params
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
    if q.text:
        clause, text_params = text_clause(q.theme, q.public, q.text)
        clauses.append(clause)
        params += text_params
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


def sort_keys(q: ItemsQuery) -> list[tuple[sql.Composable, bool]]:
    """(expression on `t`, descending) of the page order: the `sortby` keys, text in
    `q.collation`, then objekt_id ascending (unique: the order is total)."""
    keys: list[tuple[sql.Composable, bool]] = []
    for key in q.sortby:
        expr: sql.Composable = sql.SQL("t.{}").format(sql.Identifier(key.name))
        if q.theme.fields_by_name[key.name].type == "string":
            expr = sql.SQL("{} COLLATE {}").format(expr, sql.Identifier(q.collation))
        keys.append((expr, key.descending))
    keys.append((sql.SQL("t.objekt_id"), False))
    return keys


def _order_by(keys: list[tuple[sql.Composable, bool]], reverse: bool = False) -> sql.Composable:
    """ORDER BY items: ascending NULLS LAST, descending NULLS FIRST, so each direction is the
    exact reverse of the other (`reverse` flips every key: the order of a backward page)."""
    items = []
    for i, (expr, desc) in enumerate(keys):
        desc = desc != reverse
        if i == len(keys) - 1:  # objekt_id, never NULL: as the unique index orders it
            items.append(sql.SQL("{} DESC").format(expr) if desc else expr)
        else:
            items.append(sql.SQL("{} DESC NULLS FIRST" if desc else "{} ASC NULLS LAST")
                         .format(expr))
    return sql.SQL(", ").join(items)


def order_sql(q: ItemsQuery) -> sql.Composable:
    """The ORDER BY list of `q`'s order on alias `t` (e.g. for an export that follows sortby)."""
    return _order_by(sort_keys(q))


def _beyond(expr: sql.Composable, desc: bool, value) -> tuple[sql.Composable | None, list]:
    """Rows strictly after `value` in one key's order (None: no row is)."""
    if value is None:
        return (sql.SQL("{} IS NOT NULL").format(expr), []) if desc else (None, [])
    if desc:
        return sql.SQL("{} < %s").format(expr), [value]
    return sql.SQL("({e} > %s OR {e} IS NULL)").format(e=expr), [value]


def keyset_clause(keys: list[tuple[sql.Composable, bool]], values: tuple,
                  backward: bool = False) -> tuple[sql.Composable, list]:
    """Rows after the boundary row with sort key `values` (the last is its objekt_id) in the
    order of `keys`, or before it (`backward`): the lexicographic comparison, key by key, with
    NULLs where `_order_by` puts them, so pages neither repeat nor skip a row."""
    if len(keys) == 1:  # the default order: objekt_id alone, as the unique index serves it
        op = "<" if backward else ">"
        return sql.SQL("{} " + op + " %s").format(keys[0][0]), [values[0]]
    disjuncts: list[sql.Composable] = []
    params: list = []
    equal: list[tuple[sql.Composable, list]] = []
    for (expr, desc), value in zip(keys, values):
        beyond, beyond_params = _beyond(expr, desc != backward, value)
        if beyond is not None:
            parts = [e for e, _ in equal] + [beyond]
            disjuncts.append(sql.SQL("({})").format(sql.SQL(" AND ").join(parts)))
            for _, p in equal:
                params += p
            params += beyond_params
        equal.append((sql.SQL("{} IS NULL").format(expr), []) if value is None else
                     (sql.SQL("{} = %s").format(expr), [value]))
    return sql.SQL("({})").format(sql.SQL(" OR ").join(disjuncts)), params


def items_sql(q: ItemsQuery) -> tuple[sql.Composed, list]:
    """One page of features (`limit + 1` rows, to tell whether a further page exists).

    Rows: (feature json text, objekt_id, the `sortby` keys' values), in the page order.
    Keyset paging (`q.boundary`) keeps deep pages as fast as the first in the default order
    (objekt_id, the unique index); a backward page (a `prev` cursor) is read in the reverse
    order from its boundary and returned in the page order, its extra row (if any) first.
    The page is chosen first (the view's code-list joins are unused there, so PostgreSQL
    removes them), and only its rows are joined and turned into GeoJSON.
    """
    where, params = where_clause(q)
    keys = sort_keys(q)
    boundary = q.boundary
    backward = boundary is not None and boundary.backward
    keyset = sql.SQL("")
    if boundary is not None:
        cond, cond_params = keyset_clause(keys, (*boundary.values, boundary.objekt_id),
                                          backward)
        keyset = sql.SQL(" AND {}").format(cond)
        params = params + cond_params
    values = sql.SQL("").join(sql.SQL(", t.{}").format(sql.Identifier(k.name))
                              for k in q.sortby)
    stmt = sql.SQL(
        "WITH page AS MATERIALIZED (SELECT t.versions_id FROM {src} t WHERE {where}{keyset} "
        "ORDER BY {inner} LIMIT %s) "
        "SELECT {feature}, t.objekt_id{values} FROM page CROSS JOIN LATERAL "
        "(SELECT * FROM {src} v WHERE v.versions_id = page.versions_id OFFSET 0) t "
        "ORDER BY {outer}"
    ).format(feature=feature_expr(q.out, q.properties, q.skip_geometry), src=source(q),
             where=where, keyset=keyset, values=values, inner=_order_by(keys, backward),
             outer=_order_by(keys))
    return stmt, params + [q.limit + 1]


def count_sql(q: ItemsQuery, cap: int) -> tuple[sql.Composed, list]:
    """Count of matches, reading at most `cap + 1` rows (more than cap means: not exact)."""
    where, params = where_clause(q)
    stmt = sql.SQL(
        "SELECT count(*) FROM (SELECT 1 FROM {src} t WHERE {where} LIMIT %s) c"
    ).format(src=source(q), where=where)
    return stmt, params + [cap + 1]


def feature_sql(objekt_id: UUID, out: crsmod.Crs, asof: datetime | None = None,
                public: bool = False, theme: Theme | None = None,
                select: tuple[str, ...] | None = None,
                skip_geometry: bool = False) -> tuple[sql.Composed, list]:
    """One feature (current, or as of an instant), with the chosen properties (`select`) and
    without its geometry (`skip_geometry`). Rows: (feature json, versions_id)."""
    q = ItemsQuery(out=out, asof=asof, objekt_id=objekt_id, public=public,
                   theme=theme or themes.default(), select=select, skip_geometry=skip_geometry)
    where, params = where_clause(q)
    stmt = sql.SQL("SELECT {feature}, t.versions_id FROM {src} t WHERE {where}").format(
        feature=feature_expr(out, q.properties, skip_geometry), src=source(q), where=where
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
