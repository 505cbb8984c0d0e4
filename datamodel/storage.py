"""A theme's versioned storage, from its descriptor: the one storage path of every theme.

`theme_storage(theme)` returns the SQL statements that give a theme (`datamodel.themes`)
GeoFA-style storage in schema `ly`:

- the base table `ly.<table>`: every version of every object (fkg.generel joined with the
  theme's own table), code-list foreign keys, range checks, a typed geometry in EPSG:25832;
- the append-only guard: a version may only be closed (its `systid_til` set), never changed
  or physically removed;
- the current view `ly.<geofa_view>` and the history view `ly.hist_<geofa_view>`, with the
  code lists' text twins, and GeoFA's INSTEAD OF trigger on the current view: insert mints ids
  and times, update closes the current version and writes a new one, delete only closes; the
  trigger derives the municipality, stamps the editor and writes the audit trail;
- the public's views `ly.offentlig_…`, with only the public attributes (the database refuses
  the others: the public role has column grants for them alone);
- history visibility (revision 0010): the history views show a version only to a viewer who
  may see the object's newest version as well (`past_rule`), so the past of an object hidden
  now, handed to another authority or deleted after hiding stays hidden on every path that
  reads the past (history, `asof` on items, single items, tiles and exports); the current
  views are untouched;
- row-level security with GeoFA's `off_kode` semantics and the role/municipality/CVR scope,
  and the grants of the service's two database roles.

Personal data (a theme's `personal` attributes: contact persons, phone numbers) is masked in
the authorities' views for anyone but the authorities that may see the object
(`ly.actor_reads_personal()`), and is never in the public's views.

Migrations call it: the shelter's storage is re-expressed through it (revision 0009, which
leaves the table as it is, `create_table=False`), and a new theme is a descriptor and one
migration calling `theme_storage(theme)`. Statements are idempotent where PostgreSQL allows
(CREATE OR REPLACE, IF NOT EXISTS, policies dropped and made again), so re-expressing an
existing theme changes nothing but what differs.

Pure SQL text; nothing here talks to a connection.
"""

from __future__ import annotations

from datamodel.fields import Field
from datamodel.themes import Theme

#: The generic attributes' column definitions (fkg.generel), as the shelter's table has them.
_SYSTEM_COLUMNS = {
    "versions_id": "uuid PRIMARY KEY",
    "objekt_id": "uuid NOT NULL",
    "systid_fra": "timestamptz NOT NULL",
    "systid_til": "timestamptz",
    "oprettet": "timestamptz NOT NULL",
    "bruger_id": "varchar(128) NOT NULL",
}
_TYPES = {"integer": "integer", "number": "numeric", "date": "date",
          "date-time": "timestamptz", "uuid": "uuid", "boolean": "boolean"}

# Functions every theme's storage uses (created once, by revision 0009).
SHARED_FUNCTIONS = (
    # Geometry as stored for an area theme: a valid, non-empty 2D MultiPolygon in EPSG:25832.
    # Nothing is repaired: an invalid area is refused with GEOS's reason and location.
    """
    CREATE OR REPLACE FUNCTION ly.as_multipolygon(g geometry) RETURNS geometry
    LANGUAGE plpgsql IMMUTABLE AS $$
    DECLARE reason text;
    BEGIN
        IF g IS NULL THEN
            RETURN NULL;
        END IF;
        IF GeometryType(g) NOT IN ('POLYGON', 'MULTIPOLYGON') OR ST_IsEmpty(g) THEN
            RAISE EXCEPTION 'geometrien skal være et område (Polygon eller MultiPolygon)'
                USING ERRCODE = 'LY422', COLUMN = 'geometri';
        END IF;
        IF ST_SRID(g) <> 25832 THEN
            g := ST_Transform(g, 25832);
        END IF;
        g := ST_Multi(ST_Force2D(g));
        IF NOT ST_IsValid(g) THEN
            reason := ST_IsValidReason(g);
            RAISE EXCEPTION 'området er ugyldigt: %', reason
                USING ERRCODE = 'LY422', COLUMN = 'geometri';
        END IF;
        RETURN g;
    END $$""",
    # The municipality of an area: the one holding the largest part of it; an area wholly at
    # sea within 5 km of the (generalised) coast gets the nearest; farther: refused.
    """
    CREATE OR REPLACE FUNCTION ly.kommune_for_area(g geometry) RETURNS integer
    LANGUAGE sql STABLE AS $$
        SELECT coalesce(
            (SELECT kommunekode FROM ly.kommune
             WHERE ST_Intersects(geometri, g)
             ORDER BY ST_Area(ST_Intersection(geometri, g)) DESC, kommunekode LIMIT 1),
            ly.kommune_for(ST_PointOnSurface(g)))
    $$""",
    # Personal data (contact persons, phone numbers) is for the authorities that may see the
    # object: national roles, the municipalities' editors and administrators and machine
    # clients; never planners, inspectors or the public. A connection that has not switched
    # to one of the service's roles (the owner: migrations, loaders, the sync) is trusted as
    # is, as everywhere in Ly: masked values read back through the view would otherwise be
    # written into the next version.
    """
    CREATE OR REPLACE FUNCTION ly.actor_reads_personal() RETURNS boolean
    LANGUAGE sql STABLE AS $$
        SELECT ly.actor_has('national_reader', 'national_admin', 'municipal_editor',
                            'municipal_admin', 'machine')
            OR current_user NOT IN ('ly_anon', 'ly_user')
    $$""",
    "GRANT EXECUTE ON FUNCTION ly.as_multipolygon(geometry), ly.kommune_for_area(geometry), "
    "ly.actor_reads_personal() TO ly_anon, ly_user",
)


def leakproof_sql(functions: tuple[str, ...], leakproof: bool) -> list[str]:
    """`ALTER FUNCTION … [NOT] LEAKPROOF` for each of `functions` (PostGIS predicates, so
    PostgreSQL may use the spatial index under row-level security; migrations 0005 and 0015).
    Only a superuser may: without one, and for a function this PostGIS lacks, a notice says so
    and the migration goes on (answers stay right, spatial filters under RLS stay slow)."""
    word = "LEAKPROOF" if leakproof else "NOT LEAKPROOF"
    return [f"""
        DO $$BEGIN
            EXECUTE 'ALTER FUNCTION {fn} {word}';
        EXCEPTION
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'not a superuser: % left as it is (no spatial index under RLS)',
                    '{fn}';
            WHEN undefined_function THEN
                RAISE NOTICE '% is not in this PostGIS version', '{fn}';
        END$$""" for fn in functions]


def _column_type(f: Field) -> str:
    if f.type == "string":
        return f"varchar({f.max_length})" if f.max_length else "text"
    return _TYPES[f.type]


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def column_definition(f: Field) -> str:
    """One attribute's column in the base table."""
    if f.name in _SYSTEM_COLUMNS:
        return f"{f.name} {_SYSTEM_COLUMNS[f.name]}"
    parts = [f.name, _column_type(f)]
    if f.required or f.name == "cvr_kode":
        parts.append("NOT NULL")
    if f.default is not None and f.name == "off_kode":
        parts.append(f"DEFAULT {int(f.default)}")
    if f.codelist:
        parts.append(f"REFERENCES ly.{f.codelist} (kode)")
    if f.minimum is not None and f.maximum is not None:
        parts.append(f"CONSTRAINT {f.name}_range CHECK ({f.name} BETWEEN {_num(f.minimum)} "
                     f"AND {_num(f.maximum)})")
    elif f.minimum is not None:
        parts.append(f"CONSTRAINT {f.name}_range CHECK ({f.name} >= {_num(f.minimum)})")
    elif f.maximum is not None:
        parts.append(f"CONSTRAINT {f.name}_range CHECK ({f.name} <= {_num(f.maximum)})")
    return " ".join(parts)


def _codelist_tables(theme: Theme) -> list[str]:
    out = []
    for name in theme.codelists:
        extra = ",\n        kommunekode integer" if name == "d_basis_ansvarlig_myndighed" else ""
        out.append(f"""
    CREATE TABLE IF NOT EXISTS ly.{name} (
        kode integer PRIMARY KEY,
        tekst varchar(128) NOT NULL,
        aktiv smallint NOT NULL DEFAULT 1 CHECK (aktiv IN (0, 1)),
        begrebsdefinition varchar{extra}
    )""")
        out.append(f"GRANT SELECT ON ly.{name} TO ly_anon, ly_user")
    return out


def table_sql(theme: Theme) -> list[str]:
    """The base table and its indexes."""
    t = theme.table
    cols = [column_definition(theme.fields_by_name[c]) for c in theme.storage_columns]
    geom = f"geometry({theme.geometry_type}, {theme.srid})"
    cols.append(f"geometri {geom} NOT NULL\n"
                "            CONSTRAINT geometri_valid CHECK (NOT ST_IsEmpty(geometri))")
    cols.append("CONSTRAINT systid_order CHECK (systid_til IS NULL OR systid_til >= systid_fra)")
    if theme.validity:
        start, end = theme.validity
        cols.append(f"CONSTRAINT {end}_range CHECK ({end} IS NULL OR {end} >= {start})")
    body = ",\n        ".join(cols)
    out = [f"""
    CREATE TABLE IF NOT EXISTS ly.{t} (
        {body}
    )""",
           f"CREATE UNIQUE INDEX IF NOT EXISTS {t}_aktuel_uk ON ly.{t} (objekt_id) "
           "WHERE systid_til IS NULL",
           f"CREATE INDEX IF NOT EXISTS {t}_historik ON ly.{t} (objekt_id, systid_fra)",
           f"CREATE INDEX IF NOT EXISTS {t}_aktuel_gist ON ly.{t} USING gist (geometri) "
           "WHERE systid_til IS NULL",
           f"CREATE INDEX IF NOT EXISTS {t}_gist ON ly.{t} USING gist (geometri)",
           f"CREATE INDEX IF NOT EXISTS {t}_systid ON ly.{t} (systid_fra, systid_til)"]
    if theme.validity:
        start, end = theme.validity
        out.append(f"CREATE INDEX IF NOT EXISTS {t}_gyldig ON ly.{t} ({start}, {end}) "
                   "WHERE systid_til IS NULL")
    return out


def guard_sql(theme: Theme) -> list[str]:
    """The append-only guard: compare binary images, so closing a version is all an UPDATE
    may do (revision 0008 measured it: 47 -> 6 us a version against a jsonb comparison)."""
    t = theme.table
    return [f"""
    CREATE OR REPLACE FUNCTION ly.{t}_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        closed ly.{t};
    BEGIN
        IF TG_OP = 'DELETE' OR TG_OP = 'TRUNCATE' THEN
            RAISE EXCEPTION 'versioner af {t} slettes aldrig fysisk'
                USING ERRCODE = 'LY403';
        END IF;
        closed := NEW;
        closed.systid_til := OLD.systid_til;
        IF OLD.systid_til IS NOT NULL OR closed *<> OLD THEN
            RAISE EXCEPTION 'en version af {t} kan kun afsluttes, ikke ændres'
                USING ERRCODE = 'LY403';
        END IF;
        RETURN NEW;
    END $$""",
            f"""CREATE OR REPLACE TRIGGER append_only BEFORE UPDATE OR DELETE ON ly.{t}
        FOR EACH ROW EXECUTE FUNCTION ly.{t}_append_only()""",
            f"""CREATE OR REPLACE TRIGGER append_only_truncate BEFORE TRUNCATE ON ly.{t}
        FOR EACH STATEMENT EXECUTE FUNCTION ly.{t}_append_only()"""]


def newest_function(theme: Theme) -> str:
    """The theme's function telling whether a version is its object's newest (below)."""
    return f"ly.{theme.table}_er_seneste(uuid)"


def history_function_sql(theme: Theme) -> list[str]:
    """Whether version `v` is its object's newest: the current version, or for a deleted
    object the version it was deleted in (no version of the object starts at or after its
    end). SECURITY DEFINER, since the viewer's row-level security would hide a newer, hidden
    version; it answers only for a versions_id the caller names, so it tells a viewer nothing
    the history rule does not (a version the viewer saw is still the newest exactly when the
    viewer still reads the object or its past). Static SQL per theme: the plan is cached."""
    t, fn = theme.table, newest_function(theme)
    return [f"""
    CREATE OR REPLACE FUNCTION ly.{t}_er_seneste(v uuid) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ly, pg_temp AS $$
        SELECT coalesce((
            SELECT x.systid_til IS NULL OR NOT EXISTS (
                SELECT 1 FROM ly.{t} n
                WHERE n.objekt_id = x.objekt_id AND n.systid_fra >= x.systid_til
                  AND n.versions_id <> x.versions_id)
            FROM ly.{t} x WHERE x.versions_id = v), false)
    $$""",
            f"REVOKE ALL ON FUNCTION {fn} FROM PUBLIC",
            f"GRANT EXECUTE ON FUNCTION {fn} TO ly_anon, ly_user"]


def past_rule(theme: Theme) -> str:
    """History visibility, for a row `b` of a theme's history view: a viewer reads a past
    version only when the viewer may see the object's newest version too. The version itself
    has passed the table's row-level security; the newest version is asked of the same
    policy (the subqueries run as the viewer: the views are security_invoker), so GeoFA's
    off_kode, the role/municipality/CVR scope, activation and assignments decide both alike.

    In order of cost: the row is the current version (the viewer sees it: nothing more to
    ask); the object's current version is visible (a probe of the partial unique index; a
    scalar subquery, not EXISTS, which PostgreSQL would turn into a hash of every visible
    current object, built in full for a page of a hundred); else (hidden now, or
    deleted) the newest version the viewer may see must be the object's newest
    (`ly.<table>_er_seneste`): true only for a deleted object whose last version the viewer
    may see. The owner's own connection (migrations, loaders, the sync) is not subject to
    row-level security and reads every version, as before. The current views are untouched:
    the plans of current items and tiles are unchanged."""
    t = theme.table
    return f"""WHERE b.systid_til IS NULL
       OR (SELECT true FROM ly.{t} a WHERE a.objekt_id = b.objekt_id AND a.systid_til IS NULL)
       OR ly.{t}_er_seneste(
              (SELECT l.versions_id FROM ly.{t} l WHERE l.objekt_id = b.objekt_id
               ORDER BY l.systid_fra DESC, l.systid_til DESC LIMIT 1))"""


def _select_list(theme: Theme, fields: tuple[Field, ...], *, mask: bool) -> tuple[str, str]:
    names = {f.name for f in fields}
    columns = []
    for c in theme.storage_columns:
        if c not in names:
            continue
        f = theme.fields_by_name[c]
        if mask and f.personal:
            columns.append(f"CASE WHEN (SELECT ly.actor_reads_personal()) THEN b.{c} END AS {c}")
        else:
            columns.append(f"b.{c}")
    coded = [f for f in fields if f.codelist and f.twin]
    twins = [f"d{i}.tekst AS {f.twin}" for i, f in enumerate(coded)]
    joins = "\n    ".join(f"LEFT JOIN ly.{f.codelist} d{i} ON d{i}.kode = b.{f.name}"
                          for i, f in enumerate(coded))
    select = ",\n        ".join([*columns, *twins, "b.geometri"])
    return select, joins


def _view(theme: Theme, name: str, fields: tuple[Field, ...], where: str, *,
          mask: bool) -> str:
    select, joins = _select_list(theme, fields, mask=mask)
    return f"""
    CREATE OR REPLACE VIEW ly.{name} WITH (security_invoker = true) AS
    SELECT {select}
    FROM ly.{theme.table} b
    {joins}
    {where}"""


def history_views_sql(theme: Theme, rule: bool = True) -> list[str]:
    """The history views `ly.hist_…` and `ly.offentlig_hist_…`: every version, with the
    history rule (`past_rule`, and the function it calls) when `rule`, without it when not
    (as revision 0009 made them, before revision 0010 put the rule in place)."""
    # Not a security_barrier view: PostgreSQL would not flatten it, and a page in objekt_id
    # order would read and sort the whole register. The rule's conditions may so run after a
    # query's own; those the API builds raise nothing about a row (CQL2 refuses arithmetic;
    # values are bound and typed), and every version they see has passed row-level security,
    # which is a barrier.
    where = past_rule(theme) if rule else ""
    views = [_view(theme, theme.history_view, theme.fields, where, mask=True),
             _view(theme, theme.public_history_view, theme.public_fields, where, mask=False)]
    return history_function_sql(theme) + views if rule else views


def views_sql(theme: Theme, history_rule: bool = True) -> list[str]:
    """The four views (and the history rule's function, `history_views_sql`)."""
    current = "WHERE b.systid_til IS NULL"
    return [
        _view(theme, theme.current_view, theme.fields, current, mask=True),
        _view(theme, theme.public_current_view, theme.public_fields, current, mask=False),
        *history_views_sql(theme, history_rule),
    ]


def write_function_sql(theme: Theme) -> list[str]:
    """GeoFA's INSTEAD OF trigger on the current view."""
    t, v = theme.table, theme.current_view
    cols = ", ".join((*theme.storage_columns, "geometri"))
    new_vals = ", ".join(f"NEW.{c}" for c in (*theme.storage_columns, "geometri"))
    as_geometry = "ly.as_multipolygon" if theme.is_area else "ly.as_point"
    municipality = "ly.kommune_for_area" if theme.is_area else "ly.kommune_for"
    reason = ""
    if "aendringsaarsag" in theme.fields_by_name:
        reason = """
            -- The reason belongs to one version: an edit that gives none has none.
            IF NEW.aendringsaarsag IS NOT DISTINCT FROM OLD.aendringsaarsag THEN
                NEW.aendringsaarsag := NULL;
            END IF;"""
    return [f"""
    CREATE OR REPLACE FUNCTION ly.{v}_write() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            NEW.objekt_id := coalesce(NEW.objekt_id, gen_random_uuid());
            IF EXISTS (SELECT 1 FROM ly.{t}
                       WHERE objekt_id = NEW.objekt_id AND systid_til IS NULL) THEN
                RAISE EXCEPTION 'objekt_id % findes allerede', NEW.objekt_id
                    USING ERRCODE = 'unique_violation', COLUMN = 'objekt_id';
            END IF;
            NEW.oprettet := now();
        ELSE
            IF TG_OP = 'UPDATE' AND NEW.objekt_id IS DISTINCT FROM OLD.objekt_id THEN
                RAISE EXCEPTION 'objekt_id kan ikke ændres' USING ERRCODE = 'LY422',
                    COLUMN = 'objekt_id';
            END IF;
            UPDATE ly.{t} SET systid_til = now()
                WHERE versions_id = OLD.versions_id AND systid_til IS NULL;
            IF NOT FOUND THEN
                RETURN NULL;  -- someone else closed this version first, or it may not be edited
            END IF;
            IF TG_OP = 'DELETE' THEN
                PERFORM ly.audit('slet', '{t}', OLD.objekt_id, OLD.versions_id, NULL);
                RETURN OLD;
            END IF;
            NEW.oprettet := OLD.oprettet;{reason}
        END IF;
        NEW.versions_id := gen_random_uuid();
        NEW.systid_fra := now();
        NEW.systid_til := NULL;
        NEW.geometri := {as_geometry}(NEW.geometri);
        NEW.beliggenhedskommune := {municipality}(NEW.geometri);
        NEW.bruger_id := coalesce(nullif(current_setting('ly.subjekt', true), ''),
                                  NEW.bruger_id, current_user);
        IF ly.actor_has('municipal_editor', 'municipal_admin') THEN
            NEW.cvr_kode := ly.actor_cvr();
        END IF;
        IF NEW.cvr_kode IS NULL THEN
            NEW.cvr_kode := (SELECT cvr_kode FROM ly.kommune
                             WHERE kommunekode = NEW.beliggenhedskommune);
        END IF;
        INSERT INTO ly.{t} ({cols}) VALUES ({new_vals});
        PERFORM ly.audit(CASE TG_OP WHEN 'INSERT' THEN 'opret' ELSE 'ret' END,
                         '{t}', NEW.objekt_id,
                         CASE TG_OP WHEN 'INSERT' THEN NULL ELSE OLD.versions_id END,
                         NEW.versions_id);
        RETURN NEW;
    END $$""",
            f"""CREATE OR REPLACE TRIGGER write INSTEAD OF INSERT OR UPDATE OR DELETE
        ON ly.{v} FOR EACH ROW EXECUTE FUNCTION ly.{v}_write()"""]


def sees_predicate(theme: Theme) -> str:
    """Who may see a version: GeoFA's off_kode (1 everyone, 2 the owning authority, 3 every
    authority) and Ly's role/municipality/CVR scope. The actor's side is scalar subqueries,
    evaluated once per statement (revision 0006 measured it: page + count 82 -> 42 ms)."""
    terms = [
        "off_kode = 1",
        "(SELECT ly.actor_has('national_reader', 'national_admin'))",
        "(cvr_kode = (SELECT ly.actor_cvr())\n"
        "        AND (SELECT ly.actor_has('municipal_editor', 'municipal_admin', 'machine')))",
        "(beliggenhedskommune = ANY ((SELECT ly.actor_kommuner())::int[])\n"
        "        AND (SELECT ly.actor_has('municipal_editor', 'municipal_admin')) "
        "AND off_kode <> 2)",
        "(off_kode = 3 AND (SELECT ly.actor_has('municipal_editor', 'municipal_admin', "
        "'planner')))",
    ]
    if theme.activation_public:
        terms.append(f"((SELECT ly.activated()) AND {theme.activation_public})")
    if theme.assignable:
        terms.append("((SELECT ly.actor_has('inspector')) AND ly.assigned(objekt_id))")
    return "\n    OR ".join(terms)


#: Who may close a version: a writer (NSIS substantial/high or a system) who is a national
#: administrator, or a municipal editor/administrator of the version's CVR or municipality.
EDITS = """
    (SELECT ly.actor_may_write()) AND (
        (SELECT ly.actor_has('national_admin'))
        OR ((SELECT ly.actor_has('municipal_editor', 'municipal_admin'))
            AND (cvr_kode = (SELECT ly.actor_cvr())
                 OR beliggenhedskommune = ANY ((SELECT ly.actor_kommuner())::int[]))))"""


def policies_sql(theme: Theme) -> list[str]:
    t = theme.table
    sees = sees_predicate(theme)
    return [
        f"ALTER TABLE ly.{t} ENABLE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS laes ON ly.{t}",
        f"DROP POLICY IF EXISTS opret ON ly.{t}",
        f"DROP POLICY IF EXISTS afslut ON ly.{t}",
        f"CREATE POLICY laes ON ly.{t} FOR SELECT TO ly_anon, ly_user USING ({sees})",
        # A new version must lie in the actor's municipalities and carry the actor as editor.
        f"""CREATE POLICY opret ON ly.{t} FOR INSERT TO ly_user
        WITH CHECK (ly.may_create(beliggenhedskommune) AND bruger_id = ly.actor_subject())""",
        # Closing a version (update or delete through the view) needs the right to edit it.
        f"""CREATE POLICY afslut ON ly.{t} FOR UPDATE TO ly_user
        USING (({EDITS}) AND ({sees}))
        WITH CHECK (true)""",
    ]


def grants_sql(theme: Theme) -> list[str]:
    t = theme.table
    public_cols = ", ".join(
        [c for c in theme.storage_columns if theme.fields_by_name[c].public] + ["geometri"])
    return [
        f"GRANT SELECT ({public_cols}) ON ly.{t} TO ly_anon",
        f"GRANT SELECT, INSERT ON ly.{t} TO ly_user",
        f"GRANT UPDATE (systid_til) ON ly.{t} TO ly_user",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ly.{theme.current_view} TO ly_user",
        f"GRANT SELECT ON ly.{theme.history_view} TO ly_user",
        f"GRANT SELECT ON ly.{theme.public_current_view}, ly.{theme.public_history_view} "
        "TO ly_anon, ly_user",
    ]


def theme_storage(theme: Theme, *, create_table: bool = True,
                  history_rule: bool = True) -> list[str]:
    """Every statement of a theme's storage, in order: its table (`create_table`; False
    re-expresses an existing theme's storage on its table) and everything on it. The history
    views apply the history rule unless `history_rule` is False (revision 0009, which came
    before the rule)."""
    out: list[str] = []
    if create_table:
        out += _codelist_tables(theme) + table_sql(theme)
    out += guard_sql(theme) + views_sql(theme, history_rule)
    out += write_function_sql(theme)
    out += policies_sql(theme) + grants_sql(theme)
    return out


def drop_theme_storage(theme: Theme) -> list[str]:
    """Undo `theme_storage` of a new theme (a downgrade of the migration that made it)."""
    v = theme.current_view
    return [
        f"DROP VIEW IF EXISTS ly.{theme.public_history_view}, ly.{theme.public_current_view}, "
        f"ly.{theme.history_view}, ly.{v}",
        f"DROP FUNCTION IF EXISTS ly.{v}_write(), {newest_function(theme)}",
        f"DROP TABLE IF EXISTS ly.{theme.table}",
        f"DROP FUNCTION IF EXISTS ly.{theme.table}_append_only()",
    ]
