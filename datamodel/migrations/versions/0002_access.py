"""Access control in the database: roles, row-level security, public attributes, audit,
the national activation switch and inspector assignments.

The service runs every request's transaction as one of two database roles, chosen per
transaction with `set_config('role', …, true)`:
- `ly_anon` (the public): may read only the public columns, and only the rows the policies
  show the public (off_kode 1, and public shelters while activation is on);
- `ly_user` (any signed-in actor): rows and writes as the policies allow for the actor's Ly
  roles, municipalities and CVR, which the service sets in `ly.*` settings of the same
  transaction.
Neither role can log in or bypass RLS, so no query path (items, filters, counts, history,
as-of, exports, tiles) can see or change a row the policies do not allow.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: Columns the public may read (with the text twins of the coded ones).
PUBLIC_COLUMNS = (
    "versions_id", "objekt_id", "systid_fra", "systid_til", "beskyt_rum_kode", "klargjort_kode",
    "pladser", "vejnavn", "husnr", "postnr", "postnr_by", "beliggenhedskommune", "navn",
    "trinfri_adgang_kode", "funktionsstatus_kode", "geometri",
)
PUBLIC_TWINS = (
    ("beskyt_rum_kode", "d_6101_beskyt_rum", "beskyt_rum"),
    ("klargjort_kode", "d_basis_ja_nej", "klargjort"),
    ("trinfri_adgang_kode", "d_basis_ja_nej", "trinfri_adgang"),
    ("funktionsstatus_kode", "d_basis_funktionsstatus", "funktionsstatus"),
)
# The base table's columns in order; frozen for this revision.
COLUMNS = (
    "versions_id", "objekt_id", "systid_fra", "systid_til", "oprettet", "cvr_kode", "bruger_id",
    "oprindkode", "statuskode", "off_kode", "noegle", "note", "beskyt_rum_kode",
    "klargjort_kode", "pladser", "link", "adr_id", "vejkode", "vejnavn", "husnr", "postnr",
    "postnr_by", "beliggenhedskommune", "navn", "bbr_bygning_id", "undertype_kode", "areal_m2",
    "beskyt_rum_anvendelse_kode", "trinfri_adgang_kode", "funktionsstatus_kode",
    "pladser_kilde_kode", "pladser_verificeret", "egnethed_kode", "geometri",
)
CODELISTS = (
    "d_basis_oprindelse", "d_basis_status", "d_basis_offentlig", "d_basis_ja_nej",
    "d_basis_handicapegnet", "d_basis_funktionsstatus", "d_6101_beskyt_rum",
    "d_6122_beskyt_rum_anvendelse", "d_6122_ja_nej_ved_ikke", "d_6122_beskyt_rum",
    "d_ly_undertype", "d_ly_pladser_kilde", "d_ly_egnethed", "d_basis_ansvarlig_myndighed",
)


def _public_view(name: str, where: str) -> str:
    cols = ",\n        ".join(f"b.{c}" for c in PUBLIC_COLUMNS if c != "geometri")
    twins = ",\n        ".join(f"d{i}.tekst AS {twin}" for i, (_, _, twin) in
                              enumerate(PUBLIC_TWINS))
    joins = "\n    ".join(f"LEFT JOIN ly.{table} d{i} ON d{i}.kode = b.{col}"
                          for i, (col, table, _) in enumerate(PUBLIC_TWINS))
    return f"""
    CREATE VIEW ly.{name} WITH (security_invoker = true) AS
    SELECT {cols},
        {twins},
        b.geometri
    FROM ly.beskyttelsesrum b
    {joins}
    {where}"""


def upgrade() -> None:
    # --- database roles (cluster-wide, so created only once) ---
    op.execute("""
    DO $$BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ly_anon') THEN
            CREATE ROLE ly_anon NOLOGIN NOBYPASSRLS;
        END IF;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ly_user') THEN
            CREATE ROLE ly_user NOLOGIN NOBYPASSRLS;
        END IF;
        EXECUTE format('GRANT ly_anon, ly_user TO %I', current_user);
    END$$""")
    op.execute("GRANT USAGE ON SCHEMA ly TO ly_anon, ly_user")
    for name in CODELISTS:
        op.execute(f"GRANT SELECT ON ly.{name} TO ly_anon, ly_user")
    op.execute("GRANT SELECT ON ly.kommune, ly.postnummer TO ly_anon, ly_user")
    op.execute("GRANT EXECUTE ON FUNCTION ly.kommune_for(geometry), ly.as_point(geometry) "
               "TO ly_anon, ly_user")

    # --- the actor, as the service set it for this transaction ---
    op.execute("""
    CREATE FUNCTION ly.actor_roles() RETURNS text[] LANGUAGE sql STABLE AS $$
        SELECT coalesce(string_to_array(nullif(current_setting('ly.roller', true), ''), ','),
                        '{}'::text[])
    $$""")
    op.execute("""
    CREATE FUNCTION ly.actor_kommuner() RETURNS int[] LANGUAGE sql STABLE AS $$
        SELECT coalesce(string_to_array(nullif(current_setting('ly.kommuner', true), ''),
                                        ',')::int[], '{}'::int[])
    $$""")
    op.execute("""
    CREATE FUNCTION ly.actor_cvr() RETURNS int LANGUAGE sql STABLE AS $$
        SELECT nullif(current_setting('ly.cvr', true), '')::int
    $$""")
    op.execute("""
    CREATE FUNCTION ly.actor_subject() RETURNS text LANGUAGE sql STABLE AS $$
        SELECT coalesce(nullif(current_setting('ly.subjekt', true), ''), current_user::text)
    $$""")
    op.execute("""
    CREATE FUNCTION ly.actor_has(VARIADIC wanted text[]) RETURNS boolean LANGUAGE sql STABLE AS $$
        SELECT ly.actor_roles() && wanted
    $$""")
    # Writes by people need NSIS "substantial" or "high"; machine clients authenticate as
    # systems ("system"). Only the service's own connection (no ly role) is trusted as is.
    op.execute("""
    CREATE FUNCTION ly.actor_may_write() RETURNS boolean LANGUAGE sql STABLE AS $$
        SELECT current_setting('ly.niveau', true) IN ('substantial', 'high', 'system')
    $$""")

    # --- the national activation switch (append-only; the newest row is in force) ---
    op.execute("""
    CREATE TABLE ly.aktivering (
        id bigserial PRIMARY KEY,
        aktiv boolean NOT NULL,
        begrundelse varchar(500) NOT NULL,
        tid timestamptz NOT NULL DEFAULT now(),
        subjekt varchar(256) NOT NULL DEFAULT ly.actor_subject(),
        cvr_kode integer DEFAULT ly.actor_cvr()
    )""")
    op.execute("INSERT INTO ly.aktivering (aktiv, begrundelse, subjekt) "
               "VALUES (false, 'Ly installeret', 'ly')")
    op.execute("""
    CREATE FUNCTION ly.activated() RETURNS boolean LANGUAGE sql STABLE AS $$
        SELECT coalesce(nullif(current_setting('ly.aktiveret', true), '')::boolean, false)
    $$""")
    op.execute("""
    CREATE FUNCTION ly.activation_in_force() RETURNS boolean LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = ly, pg_temp AS $$
        SELECT aktiv FROM ly.aktivering ORDER BY id DESC LIMIT 1
    $$""")
    op.execute("GRANT EXECUTE ON FUNCTION ly.activation_in_force() TO ly_anon, ly_user")
    op.execute("GRANT SELECT ON ly.aktivering TO ly_anon, ly_user")
    op.execute("GRANT INSERT ON ly.aktivering TO ly_user")
    op.execute("GRANT USAGE ON SEQUENCE ly.aktivering_id_seq TO ly_user")
    op.execute("ALTER TABLE ly.aktivering ENABLE ROW LEVEL SECURITY")
    op.execute("CREATE POLICY laes ON ly.aktivering FOR SELECT USING (true)")
    op.execute("""CREATE POLICY skift ON ly.aktivering FOR INSERT TO ly_user
        WITH CHECK (ly.actor_has('national_admin') AND ly.actor_may_write()
                    AND subjekt = ly.actor_subject())""")

    # --- inspector assignments (tildeling): which inspector may see which shelter ---
    op.execute("""
    CREATE TABLE ly.tildeling (
        id bigserial PRIMARY KEY,
        objekt_id uuid NOT NULL,
        subjekt varchar(256) NOT NULL,
        cvr_kode integer,
        aktiv boolean NOT NULL DEFAULT true,
        tid timestamptz NOT NULL DEFAULT now(),
        tildelt_af varchar(256) NOT NULL DEFAULT ly.actor_subject()
    )""")
    op.execute("CREATE INDEX tildeling_subjekt ON ly.tildeling (subjekt, objekt_id) WHERE aktiv")
    op.execute("""
    CREATE FUNCTION ly.assigned(o uuid) RETURNS boolean LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = ly, pg_temp AS $$
        SELECT EXISTS (SELECT 1 FROM ly.tildeling
                       WHERE objekt_id = o AND subjekt = ly.actor_subject() AND aktiv)
    $$""")
    op.execute("GRANT EXECUTE ON FUNCTION ly.assigned(uuid) TO ly_user")

    # --- who may see and change a shelter version ---
    op.execute("""
    CREATE FUNCTION ly.may_see(off integer, cvr integer, kommune integer, art integer, o uuid)
    RETURNS boolean LANGUAGE sql STABLE AS $$
        SELECT off = 1
            OR ly.actor_has('national_reader', 'national_admin')
            OR (cvr = ly.actor_cvr() AND ly.actor_has('municipal_editor', 'municipal_admin',
                                                      'machine'))
            OR (kommune = ANY (ly.actor_kommuner())
                AND ly.actor_has('municipal_editor', 'municipal_admin') AND off <> 2)
            OR (off = 3 AND ly.actor_has('municipal_editor', 'municipal_admin', 'planner'))
            OR (ly.activated() AND art IN (1, 3))
            OR (ly.actor_has('inspector') AND ly.assigned(o))
    $$""")
    op.execute("""
    CREATE FUNCTION ly.may_edit(cvr integer, kommune integer) RETURNS boolean
    LANGUAGE sql STABLE AS $$
        SELECT ly.actor_may_write() AND (
            ly.actor_has('national_admin')
            OR (ly.actor_has('municipal_editor', 'municipal_admin')
                AND (cvr = ly.actor_cvr() OR kommune = ANY (ly.actor_kommuner()))))
    $$""")
    op.execute("""
    CREATE FUNCTION ly.may_create(kommune integer) RETURNS boolean LANGUAGE sql STABLE AS $$
        SELECT ly.actor_may_write() AND (
            ly.actor_has('national_admin')
            OR (ly.actor_has('municipal_editor', 'municipal_admin')
                AND kommune = ANY (ly.actor_kommuner())))
    $$""")
    op.execute("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA ly TO ly_anon, ly_user")

    op.execute("ALTER TABLE ly.beskyttelsesrum ENABLE ROW LEVEL SECURITY")
    op.execute("""CREATE POLICY laes ON ly.beskyttelsesrum FOR SELECT TO ly_anon, ly_user
        USING (ly.may_see(off_kode, cvr_kode, beliggenhedskommune, beskyt_rum_kode, objekt_id))""")
    # A new version must lie in the actor's municipalities and carry the actor as editor.
    op.execute("""CREATE POLICY opret ON ly.beskyttelsesrum FOR INSERT TO ly_user
        WITH CHECK (ly.may_create(beliggenhedskommune) AND bruger_id = ly.actor_subject())""")
    # Closing a version (update or delete through the view) needs the right to edit it.
    op.execute("""CREATE POLICY afslut ON ly.beskyttelsesrum FOR UPDATE TO ly_user
        USING (ly.may_edit(cvr_kode, beliggenhedskommune)
               AND ly.may_see(off_kode, cvr_kode, beliggenhedskommune, beskyt_rum_kode,
                              objekt_id))
        WITH CHECK (true)""")
    public_cols = ", ".join(c for c in PUBLIC_COLUMNS)
    op.execute(f"GRANT SELECT ({public_cols}) ON ly.beskyttelsesrum TO ly_anon")
    op.execute("GRANT SELECT, INSERT ON ly.beskyttelsesrum TO ly_user")
    op.execute("GRANT UPDATE (systid_til) ON ly.beskyttelsesrum TO ly_user")

    op.execute("ALTER VIEW ly.t_6101_beskyt_rum SET (security_invoker = true)")
    op.execute("ALTER VIEW ly.hist_t_6101_beskyt_rum SET (security_invoker = true)")
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON ly.t_6101_beskyt_rum TO ly_user")
    op.execute("GRANT SELECT ON ly.hist_t_6101_beskyt_rum TO ly_user")
    op.execute(_public_view("offentlig_t_6101_beskyt_rum", "WHERE b.systid_til IS NULL"))
    op.execute(_public_view("offentlig_hist_t_6101_beskyt_rum", ""))
    op.execute("GRANT SELECT ON ly.offentlig_t_6101_beskyt_rum, "
               "ly.offentlig_hist_t_6101_beskyt_rum TO ly_anon, ly_user")

    # --- audit (revision): who, when, what (before and after versions), through which client ---
    op.execute("""
    CREATE TABLE ly.revision (
        id bigserial PRIMARY KEY,
        tid timestamptz NOT NULL DEFAULT clock_timestamp(),
        subjekt varchar(256) NOT NULL,
        cvr_kode integer,
        roller text[] NOT NULL,
        klient varchar(256),
        handling varchar(20) NOT NULL,
        tabel varchar(63) NOT NULL,
        objekt_id uuid,
        foer_versions_id uuid,
        efter_versions_id uuid,
        detaljer jsonb
    )""")
    op.execute("CREATE INDEX revision_objekt ON ly.revision (objekt_id, tid)")
    op.execute("CREATE INDEX revision_cvr ON ly.revision (cvr_kode, tid)")
    op.execute("""
    CREATE FUNCTION ly.revision_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'revisionssporet kan ikke ændres' USING ERRCODE = 'LY403';
    END $$""")
    op.execute("""CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON ly.revision
        FOR EACH ROW EXECUTE FUNCTION ly.revision_append_only()""")
    op.execute("""CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON ly.revision
        FOR EACH STATEMENT EXECUTE FUNCTION ly.revision_append_only()""")
    # Written only through this function (callers cannot forge who did what).
    op.execute("""
    CREATE FUNCTION ly.audit(handling text, tabel text, objekt uuid, foer uuid, efter uuid,
                             detaljer jsonb DEFAULT NULL) RETURNS void
    LANGUAGE sql SECURITY DEFINER SET search_path = ly, pg_temp AS $$
        INSERT INTO ly.revision (subjekt, cvr_kode, roller, klient, handling, tabel, objekt_id,
                                 foer_versions_id, efter_versions_id, detaljer)
        VALUES (ly.actor_subject(), ly.actor_cvr(), ly.actor_roles(),
                nullif(current_setting('ly.klient', true), ''), handling, tabel, objekt, foer,
                efter, detaljer)
    $$""")
    op.execute("REVOKE ALL ON FUNCTION ly.audit(text, text, uuid, uuid, uuid, jsonb) FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION ly.audit(text, text, uuid, uuid, uuid, jsonb) "
               "TO ly_user")
    op.execute("ALTER TABLE ly.revision ENABLE ROW LEVEL SECURITY")
    op.execute("GRANT SELECT ON ly.revision TO ly_user")
    op.execute("""CREATE POLICY laes ON ly.revision FOR SELECT TO ly_user USING (
        ly.actor_has('national_admin')
        OR (ly.actor_has('municipal_admin') AND cvr_kode = ly.actor_cvr()))""")

    op.execute("""
    CREATE FUNCTION ly.aktivering_audit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM ly.audit('aktivering', 'aktivering', NULL, NULL, NULL,
                         jsonb_build_object('aktiv', NEW.aktiv, 'begrundelse', NEW.begrundelse));
        RETURN NEW;
    END $$""")
    op.execute("""CREATE TRIGGER audit AFTER INSERT ON ly.aktivering
        FOR EACH ROW EXECUTE FUNCTION ly.aktivering_audit()""")
    op.execute("""
    CREATE FUNCTION ly.tildeling_audit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM ly.audit(CASE WHEN NEW.aktiv THEN 'tildel' ELSE 'fratag' END, 'tildeling',
                         NEW.objekt_id, NULL, NULL, jsonb_build_object('subjekt', NEW.subjekt));
        RETURN NEW;
    END $$""")
    op.execute("""CREATE TRIGGER audit AFTER INSERT OR UPDATE ON ly.tildeling
        FOR EACH ROW EXECUTE FUNCTION ly.tildeling_audit()""")
    op.execute("ALTER TABLE ly.tildeling ENABLE ROW LEVEL SECURITY")
    op.execute("GRANT SELECT, INSERT, UPDATE (aktiv) ON ly.tildeling TO ly_user")
    op.execute("GRANT USAGE ON SEQUENCE ly.tildeling_id_seq TO ly_user")
    op.execute("""CREATE POLICY laes ON ly.tildeling FOR SELECT TO ly_user USING (
        subjekt = ly.actor_subject() OR ly.actor_has('national_admin')
        OR (ly.actor_has('municipal_admin') AND cvr_kode = ly.actor_cvr()))""")
    op.execute("""CREATE POLICY skriv ON ly.tildeling FOR INSERT TO ly_user WITH CHECK (
        ly.actor_may_write() AND tildelt_af = ly.actor_subject()
        AND (ly.actor_has('national_admin')
             OR (ly.actor_has('municipal_admin') AND cvr_kode = ly.actor_cvr())))""")
    op.execute("""CREATE POLICY ret ON ly.tildeling FOR UPDATE TO ly_user USING (
        ly.actor_may_write() AND (ly.actor_has('national_admin')
             OR (ly.actor_has('municipal_admin') AND cvr_kode = ly.actor_cvr())))""")

    # --- API keys for machine clients (only a hash is stored) ---
    op.execute("""
    CREATE TABLE ly.api_noegle (
        id bigserial PRIMARY KEY,
        navn varchar(128) NOT NULL UNIQUE,
        hash char(64) NOT NULL UNIQUE,
        roller text[] NOT NULL,
        cvr_kode integer,
        kommuner integer[] NOT NULL DEFAULT '{}',
        aktiv boolean NOT NULL DEFAULT true,
        oprettet timestamptz NOT NULL DEFAULT now()
    )""")

    # --- the shelter write trigger now stamps the actor and writes the audit trail ---
    cols = ", ".join(COLUMNS)
    new_vals = ", ".join(f"NEW.{c}" for c in COLUMNS)
    op.execute(f"""
    CREATE OR REPLACE FUNCTION ly.t_6101_beskyt_rum_write() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            NEW.objekt_id := coalesce(NEW.objekt_id, gen_random_uuid());
            IF EXISTS (SELECT 1 FROM ly.beskyttelsesrum
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
            UPDATE ly.beskyttelsesrum SET systid_til = now()
                WHERE versions_id = OLD.versions_id AND systid_til IS NULL;
            IF NOT FOUND THEN
                RETURN NULL;  -- someone else closed this version first, or it may not be edited
            END IF;
            IF TG_OP = 'DELETE' THEN
                PERFORM ly.audit('slet', 'beskyttelsesrum', OLD.objekt_id, OLD.versions_id, NULL);
                RETURN OLD;
            END IF;
            NEW.oprettet := OLD.oprettet;
        END IF;
        NEW.versions_id := gen_random_uuid();
        NEW.systid_fra := now();
        NEW.systid_til := NULL;
        NEW.geometri := ly.as_point(NEW.geometri);
        NEW.beliggenhedskommune := ly.kommune_for(NEW.geometri);
        -- As in GeoFA, a write carries the editor, and a municipality's write its own CVR.
        NEW.bruger_id := coalesce(nullif(current_setting('ly.subjekt', true), ''),
                                  NEW.bruger_id, current_user);
        IF ly.actor_has('municipal_editor', 'municipal_admin') THEN
            NEW.cvr_kode := ly.actor_cvr();
        END IF;
        IF NEW.cvr_kode IS NULL THEN
            NEW.cvr_kode := (SELECT cvr_kode FROM ly.kommune
                             WHERE kommunekode = NEW.beliggenhedskommune);
        END IF;
        INSERT INTO ly.beskyttelsesrum ({cols}) VALUES ({new_vals});
        PERFORM ly.audit(CASE TG_OP WHEN 'INSERT' THEN 'opret' ELSE 'ret' END,
                         'beskyttelsesrum', NEW.objekt_id,
                         CASE TG_OP WHEN 'INSERT' THEN NULL ELSE OLD.versions_id END,
                         NEW.versions_id);
        RETURN NEW;
    END $$""")


def downgrade() -> None:
    # Dropping access control would leave writes without their audit trail; restore from a
    # backup instead of downgrading a register that has been in use.
    raise NotImplementedError("revision 0002 (access control) cannot be downgraded")
