"""Planning (issue 18): population grids and plan runs (the assignment of residents to places).

- `ly.befolkningsnet`: a population grid (Danmarks Statistik's "befolkning i kvadratnet", or
  Ly's synthetic demo grid, flagged `syntetisk`): source, cell size, period, the SHA-256 of
  its file, cells and residents. `ly.befolkningscelle`: its cells (DDKN id, the cell's square
  and its centre in EPSG:25832, residents, the municipality holding the centre). A grid is
  never changed: a new file is a new grid.
- `ly.plankoersel`: a run of the planner (`loaders.planning`): theme, scope (a municipality,
  or national), scenario and settings (JSON), its inputs' versions (the grid, the objects'
  versions: count, newest systid_fra, a SHA-256 of their versions_id), the base run it is
  compared with, who ran it and when, and its result. Per run: `plankoersel_celle` (every
  populated cell: residents, within reach, covered, uncovered, shelters used, walking
  metres), `plankoersel_objekt` (every object: capacity and load), `plankoersel_tildeling`
  (cell -> object: residents and walking metres) and `plankoersel_kommune` (objects,
  capacity and load per municipality: aggregates without the objects).

History: runs are append-only. A run is written in one transaction: inserted as `koerer`,
its rows added, then marked `faerdig` once; the finishing update checks in SQL that it is
feasible (no object over its capacity, no assignment beyond the walking limit, every cell's
residents = covered + uncovered, covered = its assignments, every object's load = its
assignments). After that nothing of it changes, and nothing is ever deleted (triggers refuse
UPDATE, DELETE and TRUNCATE; SQLSTATE LY409).

Who sees what (row-level security; nothing is granted to the public, `ly_anon`):
- grids: every authority role (municipal, national, planner);
- runs: national roles and planners every run; municipal editors and administrators the
  runs of their municipalities and the national ones. A run's cells and municipal
  aggregates go with the run; its objects and assignments are shown only where the viewer
  may see the object (its current version, through the theme's view):
  `ly.plan_objekt_synlig`. A planner therefore sees per-cell and per-area figures that
  count objects the planner may not see, but never those objects;
- making a run: national readers and administrators (any scope), municipal administrators
  for their own municipalities, with NSIS substantial or high; the run carries its maker.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

from alembic import op

from datamodel import themes

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

CHILDREN = ("plankoersel_celle", "plankoersel_objekt", "plankoersel_tildeling",
            "plankoersel_kommune")
IMMUTABLE = ("befolkningsnet", "befolkningscelle", *CHILDREN)
AUTHORITIES = "'municipal_editor', 'municipal_admin', 'national_reader', 'national_admin', " \
              "'planner'"


def _visible_sql() -> str:
    """`ly.plan_objekt_synlig(run, objekt_id)`: may the actor see the object (its current
    version, through its theme's view)? One branch per point theme with places, as the
    registry has them at this revision; any other theme: no."""
    branches = "\n".join(
        f"            WHEN {t.temakode} THEN EXISTS (SELECT 1 FROM ly.{t.current_view} v "
        f"WHERE v.objekt_id = o)"
        for t in themes.all_themes() if not t.is_area and t.figures)
    return f"""
    CREATE FUNCTION ly.plan_objekt_synlig(k bigint, o uuid) RETURNS boolean
    LANGUAGE sql STABLE AS $$
        SELECT CASE (SELECT temakode FROM ly.plankoersel WHERE id = k)
{branches}
            ELSE false END
    $$"""


def upgrade() -> None:
    op.execute("""
    CREATE TABLE ly.befolkningsnet (
        id serial PRIMARY KEY,
        kilde varchar(200) NOT NULL,
        syntetisk boolean NOT NULL,
        celle_m integer NOT NULL CHECK (celle_m IN (100, 250, 1000, 10000)),
        periode varchar(100),
        sha256 char(64) NOT NULL,
        celler integer NOT NULL CHECK (celler >= 0),
        indbyggere bigint NOT NULL CHECK (indbyggere >= 0),
        undertrykte integer NOT NULL DEFAULT 0,
        indlaest timestamptz NOT NULL DEFAULT clock_timestamp(),
        indlaest_af varchar(256) NOT NULL DEFAULT current_user
    )""")
    op.execute("""
    CREATE TABLE ly.befolkningscelle (
        net_id integer NOT NULL REFERENCES ly.befolkningsnet (id),
        celle_id varchar(24) NOT NULL,
        indbyggere integer NOT NULL CHECK (indbyggere >= 0),
        kommunekode integer,
        postnr integer,
        geometri geometry(Polygon, 25832) NOT NULL,
        centrum geometry(Point, 25832) NOT NULL,
        PRIMARY KEY (net_id, celle_id)
    )""")
    op.execute("CREATE INDEX befolkningscelle_kommune ON ly.befolkningscelle "
               "(net_id, kommunekode)")
    op.execute("CREATE INDEX befolkningscelle_centrum ON ly.befolkningscelle "
               "USING gist (centrum)")

    op.execute("""
    CREATE TABLE ly.plankoersel (
        id bigserial PRIMARY KEY,
        temakode integer NOT NULL,
        omfang varchar(10) NOT NULL CHECK (omfang IN ('kommune', 'national')),
        kommunekode integer REFERENCES ly.kommune (kommunekode),
        net_id integer NOT NULL REFERENCES ly.befolkningsnet (id),
        scenarie jsonb NOT NULL,
        indstillinger jsonb NOT NULL,
        input jsonb NOT NULL,
        sammenlignet_med bigint REFERENCES ly.plankoersel (id),
        status varchar(10) NOT NULL DEFAULT 'koerer' CHECK (status IN ('koerer', 'faerdig')),
        resultat jsonb,
        subjekt varchar(256) NOT NULL DEFAULT ly.actor_subject(),
        cvr_kode integer DEFAULT ly.actor_cvr(),
        roller text[] NOT NULL DEFAULT ly.actor_roles(),
        klient varchar(256) DEFAULT nullif(current_setting('ly.klient', true), ''),
        oprettet timestamptz NOT NULL DEFAULT now(),
        afsluttet timestamptz,
        CHECK ((omfang = 'kommune') = (kommunekode IS NOT NULL)),
        CHECK ((status = 'faerdig') = (resultat IS NOT NULL AND afsluttet IS NOT NULL))
    )""")
    op.execute("CREATE INDEX plankoersel_kommune_idx ON ly.plankoersel (kommunekode, id)")
    op.execute("""
    CREATE TABLE ly.plankoersel_celle (
        koersel_id bigint NOT NULL REFERENCES ly.plankoersel (id),
        celle_id varchar(24) NOT NULL,
        kommunekode integer,
        postnr integer,
        indbyggere integer NOT NULL CHECK (indbyggere > 0),
        inden_for_raekkevidde integer NOT NULL CHECK (inden_for_raekkevidde >= 0),
        daekket integer NOT NULL CHECK (daekket >= 0),
        ikke_daekket integer NOT NULL CHECK (ikke_daekket >= 0),
        rum integer NOT NULL CHECK (rum >= 0),
        afstand_m bigint NOT NULL CHECK (afstand_m >= 0),
        PRIMARY KEY (koersel_id, celle_id),
        CHECK (daekket + ikke_daekket = indbyggere),
        CHECK (daekket <= inden_for_raekkevidde AND inden_for_raekkevidde <= indbyggere)
    )""")
    op.execute("CREATE INDEX plankoersel_celle_omraade ON ly.plankoersel_celle "
               "(koersel_id, kommunekode, postnr)")
    op.execute("""
    CREATE TABLE ly.plankoersel_objekt (
        koersel_id bigint NOT NULL REFERENCES ly.plankoersel (id),
        objekt_id uuid NOT NULL,
        versions_id uuid NOT NULL,
        kommunekode integer,
        kapacitet integer NOT NULL CHECK (kapacitet > 0),
        belaegning integer NOT NULL CHECK (belaegning >= 0),
        celler integer NOT NULL CHECK (celler >= 0),
        PRIMARY KEY (koersel_id, objekt_id),
        CHECK (belaegning <= kapacitet)
    )""")
    op.execute("""
    CREATE TABLE ly.plankoersel_tildeling (
        koersel_id bigint NOT NULL,
        celle_id varchar(24) NOT NULL,
        objekt_id uuid NOT NULL,
        antal integer NOT NULL CHECK (antal > 0),
        afstand_m integer NOT NULL CHECK (afstand_m >= 0),
        PRIMARY KEY (koersel_id, celle_id, objekt_id),
        FOREIGN KEY (koersel_id, celle_id) REFERENCES ly.plankoersel_celle (koersel_id, celle_id),
        FOREIGN KEY (koersel_id, objekt_id)
            REFERENCES ly.plankoersel_objekt (koersel_id, objekt_id)
    )""")
    op.execute("CREATE INDEX plankoersel_tildeling_objekt ON ly.plankoersel_tildeling "
               "(koersel_id, objekt_id)")
    op.execute("""
    CREATE TABLE ly.plankoersel_kommune (
        koersel_id bigint NOT NULL REFERENCES ly.plankoersel (id),
        kommunekode integer NOT NULL,
        objekter integer NOT NULL CHECK (objekter >= 0),
        kapacitet bigint NOT NULL CHECK (kapacitet >= 0),
        belaegning bigint NOT NULL CHECK (belaegning >= 0 AND belaegning <= kapacitet),
        PRIMARY KEY (koersel_id, kommunekode)
    )""")

    # --- append-only ---
    op.execute("""
    CREATE FUNCTION ly.plan_uforanderlig() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'planlægningsdata (%) ændres og slettes ikke', TG_TABLE_NAME
            USING ERRCODE = 'LY409';
    END $$""")
    for table in IMMUTABLE:
        op.execute(f"CREATE TRIGGER uforanderlig BEFORE UPDATE OR DELETE ON ly.{table} "
                   "FOR EACH ROW EXECUTE FUNCTION ly.plan_uforanderlig()")
    for table in (*IMMUTABLE, "plankoersel"):
        op.execute(f"CREATE TRIGGER uforanderlig_truncate BEFORE TRUNCATE ON ly.{table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION ly.plan_uforanderlig()")
    op.execute("CREATE TRIGGER uforanderlig_slet BEFORE DELETE ON ly.plankoersel "
               "FOR EACH ROW EXECUTE FUNCTION ly.plan_uforanderlig()")
    # Rows of a run are added only while it runs (checked once per statement).
    op.execute("""
    CREATE FUNCTION ly.plan_koerer() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = ly, pg_temp AS $$
    DECLARE
        k bigint;
    BEGIN
        SELECT n.koersel_id INTO k FROM (SELECT DISTINCT koersel_id FROM nye) n
        WHERE NOT EXISTS (SELECT 1 FROM ly.plankoersel p WHERE p.id = n.koersel_id
                          AND p.status = 'koerer')
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'kørsel % kører ikke', k USING ERRCODE = 'LY409';
        END IF;
        RETURN NULL;
    END $$""")
    for table in CHILDREN:
        op.execute(f"CREATE TRIGGER koerer AFTER INSERT ON ly.{table} "
                   "REFERENCING NEW TABLE AS nye "
                   "FOR EACH STATEMENT EXECUTE FUNCTION ly.plan_koerer()")
    # A run changes once: from koerer to faerdig, with its result, after checking that it
    # is feasible. Its owner reads every row (no row-level security in the check). The
    # run's rows are new in this transaction, so the statistics do not know them yet: no
    # nested loops (they would be quadratic in the run's size).
    op.execute("""
    CREATE FUNCTION ly.plan_afslut() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = ly, pg_temp SET enable_nestloop = off AS $$
    DECLARE
        bad text;
        graense numeric := (NEW.indstillinger ->> 'graense_m')::numeric;
    BEGIN
        IF OLD.status <> 'koerer' OR NEW.status <> 'faerdig'
           OR (to_jsonb(NEW) - 'status' - 'resultat' - 'afsluttet')
              IS DISTINCT FROM (to_jsonb(OLD) - 'status' - 'resultat' - 'afsluttet') THEN
            RAISE EXCEPTION 'en kørsel afsluttes én gang og ændres ikke siden'
                USING ERRCODE = 'LY409';
        END IF;
        SELECT 'celle ' || c.celle_id INTO bad FROM ly.plankoersel_celle c
        LEFT JOIN (SELECT celle_id, sum(antal) AS n, count(*) AS rum,
                          sum(antal::bigint * afstand_m) AS m
                   FROM ly.plankoersel_tildeling WHERE koersel_id = NEW.id GROUP BY celle_id) t
            ON t.celle_id = c.celle_id
        WHERE c.koersel_id = NEW.id
          AND (coalesce(t.n, 0) <> c.daekket OR coalesce(t.rum, 0) <> c.rum
               OR coalesce(t.m, 0) <> c.afstand_m)
        LIMIT 1;
        IF bad IS NULL THEN
            SELECT 'objekt ' || o.objekt_id INTO bad FROM ly.plankoersel_objekt o
            LEFT JOIN (SELECT objekt_id, sum(antal) AS n, count(*) AS celler
                       FROM ly.plankoersel_tildeling WHERE koersel_id = NEW.id
                       GROUP BY objekt_id) t ON t.objekt_id = o.objekt_id
            WHERE o.koersel_id = NEW.id
              AND (coalesce(t.n, 0) <> o.belaegning OR coalesce(t.celler, 0) <> o.celler)
            LIMIT 1;
        END IF;
        IF bad IS NULL THEN
            SELECT 'tildeling ' || celle_id || ' -> ' || objekt_id INTO bad
            FROM ly.plankoersel_tildeling
            WHERE koersel_id = NEW.id AND afstand_m > graense + 0.5 LIMIT 1;
        END IF;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION 'kørsel %: % stemmer ikke', NEW.id, bad USING ERRCODE = 'LY409';
        END IF;
        RETURN NEW;
    END $$""")
    op.execute("CREATE TRIGGER afslut BEFORE UPDATE ON ly.plankoersel "
               "FOR EACH ROW EXECUTE FUNCTION ly.plan_afslut()")

    # --- who sees what ---
    op.execute(f"""
    CREATE FUNCTION ly.plan_maa_laese(omfang varchar, kommune integer) RETURNS boolean
    LANGUAGE sql STABLE AS $$
        SELECT (SELECT ly.actor_has('national_reader', 'national_admin', 'planner'))
            OR ((SELECT ly.actor_has('municipal_editor', 'municipal_admin'))
                AND (omfang = 'national' OR kommune = ANY ((SELECT ly.actor_kommuner())::int[])))
    $$""")
    op.execute("""
    CREATE FUNCTION ly.plan_maa_koere(omfang varchar, kommune integer) RETURNS boolean
    LANGUAGE sql STABLE AS $$
        SELECT (SELECT ly.actor_may_write()) AND (
            (SELECT ly.actor_has('national_reader', 'national_admin'))
            OR ((SELECT ly.actor_has('municipal_admin')) AND omfang = 'kommune'
                AND kommune = ANY ((SELECT ly.actor_kommuner())::int[])))
    $$""")
    op.execute(_visible_sql())
    op.execute("GRANT EXECUTE ON FUNCTION ly.plan_maa_laese(varchar, integer), "
               "ly.plan_maa_koere(varchar, integer), ly.plan_objekt_synlig(bigint, uuid) "
               "TO ly_user")
    op.execute("REVOKE EXECUTE ON FUNCTION ly.plan_maa_laese(varchar, integer), "
               "ly.plan_maa_koere(varchar, integer), ly.plan_objekt_synlig(bigint, uuid) "
               "FROM PUBLIC")
    for table in ("befolkningsnet", "befolkningscelle", "plankoersel", *CHILDREN):
        op.execute(f"ALTER TABLE ly.{table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"REVOKE ALL ON ly.{table} FROM ly_anon")
    for table in ("befolkningsnet", "befolkningscelle"):
        op.execute(f"GRANT SELECT ON ly.{table} TO ly_user")
        op.execute(f"""CREATE POLICY laes ON ly.{table} FOR SELECT TO ly_user
            USING ((SELECT ly.actor_has({AUTHORITIES})))""")
    op.execute("GRANT SELECT, INSERT ON ly.plankoersel TO ly_user")
    op.execute("GRANT UPDATE (status, resultat, afsluttet) ON ly.plankoersel TO ly_user")
    op.execute("GRANT USAGE ON SEQUENCE ly.plankoersel_id_seq TO ly_user")
    op.execute("""CREATE POLICY laes ON ly.plankoersel FOR SELECT TO ly_user
        USING (ly.plan_maa_laese(omfang, kommunekode)
               OR (status = 'koerer' AND subjekt = (SELECT ly.actor_subject())))""")
    op.execute("""CREATE POLICY opret ON ly.plankoersel FOR INSERT TO ly_user
        WITH CHECK (ly.plan_maa_koere(omfang, kommunekode) AND status = 'koerer'
                    AND subjekt = (SELECT ly.actor_subject()))""")
    op.execute("""CREATE POLICY afslut ON ly.plankoersel FOR UPDATE TO ly_user
        USING (status = 'koerer' AND subjekt = (SELECT ly.actor_subject()))
        WITH CHECK (true)""")
    mine = ("koersel_id IN (SELECT id FROM ly.plankoersel WHERE status = 'koerer' "
            "AND subjekt = (SELECT ly.actor_subject()))")
    readable = "koersel_id IN (SELECT id FROM ly.plankoersel WHERE status = 'faerdig')"
    for table in CHILDREN:
        op.execute(f"GRANT SELECT, INSERT ON ly.{table} TO ly_user")
        op.execute(f"CREATE POLICY opret ON ly.{table} FOR INSERT TO ly_user "
                   f"WITH CHECK ({mine})")
    for table in ("plankoersel_celle", "plankoersel_kommune"):
        op.execute(f"CREATE POLICY laes ON ly.{table} FOR SELECT TO ly_user "
                   f"USING ({readable} OR {mine})")
    for table in ("plankoersel_objekt", "plankoersel_tildeling"):
        op.execute(f"CREATE POLICY laes ON ly.{table} FOR SELECT TO ly_user "
                   f"USING ((({readable}) OR {mine}) "
                   f"AND ly.plan_objekt_synlig(koersel_id, objekt_id))")


def downgrade() -> None:
    op.execute("DROP TABLE ly.plankoersel_tildeling, ly.plankoersel_objekt, "
               "ly.plankoersel_kommune, ly.plankoersel_celle, ly.plankoersel, "
               "ly.befolkningscelle, ly.befolkningsnet")
    op.execute("DROP FUNCTION ly.plan_objekt_synlig(bigint, uuid), "
               "ly.plan_maa_laese(varchar, integer), ly.plan_maa_koere(varchar, integer), "
               "ly.plan_afslut(), ly.plan_koerer(), ly.plan_uforanderlig()")
