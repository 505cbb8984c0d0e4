"""Inspections (eftersyn): checklist templates, campaigns, inspections, photos, deficiencies,
and the shelter's inspection fields.

- `ly.tjekliste`: every template version (content and hash); synced from the project after
  each migration, and a shipped version may never change (a change is a new version).
- `ly.kampagne`, `ly.kampagne_udvalg`: a named period, its checklist, deadline and the selected
  shelters; inspectors are assigned through `ly.tildeling` (now with a campaign).
- `ly.eftersyn`: one inspection, keyed by the UUID the inspector's device made, bound to one
  template version; lifecycle planlagt → kladde → indsendt → godkendt | afvist → indberettet.
  An approved inspection's answers can never change (trigger).
- `ly.eftersyn_foto`: photos outside the GeoJSON, with content type, size, hash, thumbnail.
- `ly.mangel`: deficiencies from failed items: grade, responsible party, deadline, status.
- The shelter gains `seneste_eftersyn_dato`, `naeste_eftersyn_dato`, `seneste_eftersyn_id` and
  `aendringsaarsag` (why this version was made), so its history shows an approval as the reason.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# (column, code list, text twin) in view order; frozen for this revision.
CODED = (
    ("cvr_kode", "d_basis_ansvarlig_myndighed", "cvr_navn"),
    ("oprindkode", "d_basis_oprindelse", "oprindelse"),
    ("statuskode", "d_basis_status", "status"),
    ("off_kode", "d_basis_offentlig", "offentlig"),
    ("beskyt_rum_kode", "d_6101_beskyt_rum", "beskyt_rum"),
    ("klargjort_kode", "d_basis_ja_nej", "klargjort"),
    ("undertype_kode", "d_ly_undertype", "undertype"),
    ("beskyt_rum_anvendelse_kode", "d_6122_beskyt_rum_anvendelse", "beskyt_rum_anvendelse"),
    ("trinfri_adgang_kode", "d_basis_ja_nej", "trinfri_adgang"),
    ("funktionsstatus_kode", "d_basis_funktionsstatus", "funktionsstatus"),
    ("pladser_kilde_kode", "d_ly_pladser_kilde", "pladser_kilde"),
    ("egnethed_kode", "d_ly_egnethed", "egnethed"),
)
COLUMNS = (
    "versions_id", "objekt_id", "systid_fra", "systid_til", "oprettet", "cvr_kode", "bruger_id",
    "oprindkode", "statuskode", "off_kode", "noegle", "note", "beskyt_rum_kode",
    "klargjort_kode", "pladser", "link", "adr_id", "vejkode", "vejnavn", "husnr", "postnr",
    "postnr_by", "beliggenhedskommune", "navn", "bbr_bygning_id", "undertype_kode", "areal_m2",
    "beskyt_rum_anvendelse_kode", "trinfri_adgang_kode", "funktionsstatus_kode",
    "pladser_kilde_kode", "pladser_verificeret", "egnethed_kode", "seneste_eftersyn_dato",
    "naeste_eftersyn_dato", "seneste_eftersyn_id", "aendringsaarsag", "geometri",
)
STATUSES = ("planlagt", "kladde", "indsendt", "godkendt", "afvist", "indberettet")


def _view(name: str, where: str) -> str:
    base = ",\n        ".join(f"b.{c}" for c in COLUMNS if c != "geometri")
    twins = ",\n        ".join(f"d{i}.tekst AS {twin}" for i, (_, _, twin) in enumerate(CODED))
    joins = "\n    ".join(f"LEFT JOIN ly.{table} d{i} ON d{i}.kode = b.{col}"
                          for i, (col, table, _) in enumerate(CODED))
    return f"""
    CREATE VIEW ly.{name} WITH (security_invoker = true) AS
    SELECT {base},
        {twins},
        b.geometri
    FROM ly.beskyttelsesrum b
    {joins}
    {where}"""


def _write_function() -> str:
    cols = ", ".join(COLUMNS)
    new_vals = ", ".join(f"NEW.{c}" for c in COLUMNS)
    return f"""
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
            -- The reason belongs to one version: an edit that gives none has none.
            IF NEW.aendringsaarsag IS NOT DISTINCT FROM OLD.aendringsaarsag THEN
                NEW.aendringsaarsag := NULL;
            END IF;
        END IF;
        NEW.versions_id := gen_random_uuid();
        NEW.systid_fra := now();
        NEW.systid_til := NULL;
        NEW.geometri := ly.as_point(NEW.geometri);
        NEW.beliggenhedskommune := ly.kommune_for(NEW.geometri);
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
    END $$"""


# Who may read an inspection-like row (inspections, deficiencies) and who may write one.
_SEES = """ly.actor_has('national_reader', 'national_admin')
        OR (ly.actor_has('municipal_editor', 'municipal_admin')
            AND (cvr_kode = ly.actor_cvr() OR beliggenhedskommune = ANY (ly.actor_kommuner())))"""
_ADMINS = """ly.actor_may_write() AND (ly.actor_has('national_admin')
        OR (ly.actor_has('municipal_admin')
            AND (cvr_kode = ly.actor_cvr() OR beliggenhedskommune = ANY (ly.actor_kommuner()))))"""


def upgrade() -> None:
    # --- the shelter's inspection fields, and views and trigger with them ---
    op.execute("""ALTER TABLE ly.beskyttelsesrum
        ADD COLUMN seneste_eftersyn_dato date,
        ADD COLUMN naeste_eftersyn_dato date,
        ADD COLUMN seneste_eftersyn_id uuid,
        ADD COLUMN aendringsaarsag varchar(254)""")
    op.execute("DROP VIEW ly.t_6101_beskyt_rum")
    op.execute("DROP VIEW ly.hist_t_6101_beskyt_rum")
    op.execute(_view("t_6101_beskyt_rum", "WHERE b.systid_til IS NULL"))
    op.execute(_view("hist_t_6101_beskyt_rum", ""))
    op.execute(_write_function())
    op.execute("""CREATE TRIGGER write INSTEAD OF INSERT OR UPDATE OR DELETE
        ON ly.t_6101_beskyt_rum FOR EACH ROW EXECUTE FUNCTION ly.t_6101_beskyt_rum_write()""")
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON ly.t_6101_beskyt_rum TO ly_user")
    op.execute("GRANT SELECT ON ly.hist_t_6101_beskyt_rum TO ly_user")

    # --- checklist templates (content synced from the project) ---
    op.execute("""
    CREATE TABLE ly.tjekliste (
        kode varchar(64) NOT NULL,
        version integer NOT NULL CHECK (version > 0),
        titel varchar(254) NOT NULL,
        indhold jsonb NOT NULL,
        indhold_hash char(64) NOT NULL,
        oprettet timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (kode, version)
    )""")
    op.execute("GRANT SELECT ON ly.tjekliste TO ly_anon, ly_user")

    # --- campaigns ---
    op.execute("""
    CREATE TABLE ly.kampagne (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        navn varchar(254) NOT NULL,
        tjekliste_kode varchar(64) NOT NULL,
        tjekliste_version integer NOT NULL,
        periode_fra date NOT NULL,
        periode_til date NOT NULL,
        frist date NOT NULL,
        udvalg jsonb NOT NULL,
        cvr_kode integer,
        oprettet_af varchar(256) NOT NULL DEFAULT ly.actor_subject(),
        oprettet timestamptz NOT NULL DEFAULT now(),
        FOREIGN KEY (tjekliste_kode, tjekliste_version) REFERENCES ly.tjekliste,
        CHECK (periode_fra <= periode_til)
    )""")
    op.execute("""
    CREATE TABLE ly.kampagne_udvalg (
        kampagne_id uuid NOT NULL REFERENCES ly.kampagne ON DELETE CASCADE,
        objekt_id uuid NOT NULL,
        cvr_kode integer,
        beliggenhedskommune integer,
        PRIMARY KEY (kampagne_id, objekt_id)
    )""")
    op.execute("ALTER TABLE ly.tildeling ADD COLUMN kampagne_id uuid REFERENCES ly.kampagne")

    # --- inspections ---
    statuses = ", ".join(f"'{s}'" for s in STATUSES)
    op.execute(f"""
    CREATE TABLE ly.eftersyn (
        id uuid PRIMARY KEY,
        objekt_id uuid NOT NULL,
        kampagne_id uuid REFERENCES ly.kampagne,
        tjekliste_kode varchar(64) NOT NULL,
        tjekliste_version integer NOT NULL,
        status varchar(12) NOT NULL CHECK (status IN ({statuses})),
        svar jsonb NOT NULL DEFAULT '{{}}',
        rum jsonb NOT NULL DEFAULT '[]',
        indhold_hash char(64),
        inspektoer varchar(256) NOT NULL DEFAULT ly.actor_subject(),
        cvr_kode integer,
        beliggenhedskommune integer,
        position geometry(Point, 25832),
        position_tid timestamptz,
        egnethed_kode integer REFERENCES ly.d_ly_egnethed (kode),
        pladser integer,
        godkendt_af varchar(256),
        godkendt_tid timestamptz,
        afvist_begrundelse varchar(1000),
        indberettet_tid timestamptz,
        beskyttelsesrum_versions_id uuid,
        version integer NOT NULL DEFAULT 1,
        oprettet timestamptz NOT NULL DEFAULT now(),
        opdateret timestamptz NOT NULL DEFAULT now(),
        FOREIGN KEY (tjekliste_kode, tjekliste_version) REFERENCES ly.tjekliste
    )""")
    op.execute("CREATE INDEX eftersyn_objekt ON ly.eftersyn (objekt_id)")
    op.execute("CREATE INDEX eftersyn_kampagne ON ly.eftersyn (kampagne_id, status)")
    op.execute("""
    CREATE FUNCTION ly.eftersyn_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'eftersyn slettes ikke' USING ERRCODE = 'LY403';
        END IF;
        IF OLD.status IN ('godkendt', 'indberettet') AND (
               NEW.svar IS DISTINCT FROM OLD.svar OR NEW.rum IS DISTINCT FROM OLD.rum
               OR NEW.objekt_id IS DISTINCT FROM OLD.objekt_id
               OR NEW.egnethed_kode IS DISTINCT FROM OLD.egnethed_kode
               OR NOT (NEW.status IN ('godkendt', 'indberettet'))) THEN
            RAISE EXCEPTION 'et godkendt eftersyn kan ikke ændres' USING ERRCODE = 'LY409';
        END IF;
        NEW.opdateret := now();
        NEW.version := OLD.version + 1;
        RETURN NEW;
    END $$""")
    op.execute("""CREATE TRIGGER guard BEFORE UPDATE OR DELETE ON ly.eftersyn
        FOR EACH ROW EXECUTE FUNCTION ly.eftersyn_guard()""")

    op.execute("""
    CREATE TABLE ly.eftersyn_foto (
        id uuid PRIMARY KEY,
        eftersyn_id uuid NOT NULL REFERENCES ly.eftersyn,
        punkt varchar(64),
        rum integer CHECK (rum BETWEEN 1 AND 10),
        content_type varchar(40) NOT NULL,
        stoerrelse integer NOT NULL,
        sha256 char(64) NOT NULL,
        bredde integer NOT NULL,
        hoejde integer NOT NULL,
        data bytea NOT NULL,
        miniature bytea NOT NULL,
        oprettet timestamptz NOT NULL DEFAULT now(),
        oprettet_af varchar(256) NOT NULL DEFAULT ly.actor_subject()
    )""")
    op.execute("CREATE INDEX eftersyn_foto_eftersyn ON ly.eftersyn_foto (eftersyn_id)")

    op.execute("""
    CREATE TABLE ly.mangel (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        eftersyn_id uuid NOT NULL REFERENCES ly.eftersyn,
        objekt_id uuid NOT NULL,
        punkt varchar(64) NOT NULL,
        rum integer,
        grad char(1) NOT NULL CHECK (grad IN ('1', '2', '3', 'S')),
        kritisk boolean NOT NULL DEFAULT false,
        beskrivelse varchar(500) NOT NULL,
        ansvarlig varchar(10) NOT NULL CHECK (ansvarlig IN ('kommune', 'ejer')),
        frist date NOT NULL,
        status varchar(12) NOT NULL DEFAULT 'aaben'
            CHECK (status IN ('aaben', 'planlagt', 'udbedret', 'verificeret')),
        cvr_kode integer,
        beliggenhedskommune integer,
        oprettet timestamptz NOT NULL DEFAULT now(),
        opdateret timestamptz NOT NULL DEFAULT now(),
        opdateret_af varchar(256) NOT NULL DEFAULT ly.actor_subject()
    )""")
    op.execute("CREATE INDEX mangel_objekt ON ly.mangel (objekt_id)")
    op.execute("CREATE INDEX mangel_status ON ly.mangel (status, frist)")

    # --- access: row-level security as for the register ---
    for table in ("kampagne", "kampagne_udvalg", "eftersyn", "eftersyn_foto", "mangel"):
        op.execute(f"ALTER TABLE ly.{table} ENABLE ROW LEVEL SECURITY")
    op.execute("GRANT SELECT, INSERT ON ly.kampagne, ly.kampagne_udvalg TO ly_user")
    op.execute("CREATE POLICY laes ON ly.kampagne FOR SELECT TO ly_user USING (true)")
    op.execute("""CREATE POLICY opret ON ly.kampagne FOR INSERT TO ly_user WITH CHECK (
        ly.actor_may_write() AND (ly.actor_has('national_admin')
            OR (ly.actor_has('municipal_admin') AND cvr_kode = ly.actor_cvr())))""")
    # A campaign's selection is seen as its shelters are: no counts of others' hidden rows.
    op.execute("""CREATE POLICY laes ON ly.kampagne_udvalg FOR SELECT TO ly_user USING (
        ly.actor_has('national_reader', 'national_admin') OR cvr_kode = ly.actor_cvr()
        OR beliggenhedskommune = ANY (ly.actor_kommuner())
        OR (ly.actor_has('inspector') AND ly.assigned(objekt_id)))""")
    op.execute("""CREATE POLICY opret ON ly.kampagne_udvalg FOR INSERT TO ly_user WITH CHECK (
        ly.actor_may_write() AND (ly.actor_has('national_admin')
            OR (ly.actor_has('municipal_admin') AND (cvr_kode = ly.actor_cvr()
                OR beliggenhedskommune = ANY (ly.actor_kommuner())))))""")

    op.execute("GRANT SELECT, INSERT, UPDATE ON ly.eftersyn TO ly_user")
    op.execute(f"""CREATE POLICY laes ON ly.eftersyn FOR SELECT TO ly_user USING (
        {_SEES} OR (ly.actor_has('inspector') AND inspektoer = ly.actor_subject()))""")
    # Inspectors record inspections of the shelters assigned to them; municipal staff of
    # their own; national admins of any.
    op.execute("""CREATE POLICY opret ON ly.eftersyn FOR INSERT TO ly_user WITH CHECK (
        ly.actor_may_write() AND inspektoer = ly.actor_subject() AND (
            ly.actor_has('national_admin')
            OR (ly.actor_has('inspector') AND ly.assigned(objekt_id))
            OR (ly.actor_has('municipal_editor', 'municipal_admin')
                AND (cvr_kode = ly.actor_cvr() OR beliggenhedskommune = ANY (ly.actor_kommuner())))))""")
    # An inspector changes their own unsubmitted or rejected inspection (and may submit it);
    # administrators approve, reject and report.
    op.execute(f"""CREATE POLICY ret ON ly.eftersyn FOR UPDATE TO ly_user USING (
        ly.actor_may_write() AND (
            (inspektoer = ly.actor_subject() AND status IN ('planlagt', 'kladde', 'afvist'))
            OR {_ADMINS}))
        WITH CHECK (ly.actor_may_write() AND (
            (inspektoer = ly.actor_subject() AND status IN ('planlagt', 'kladde', 'indsendt'))
            OR {_ADMINS}))""")

    op.execute("GRANT SELECT, INSERT ON ly.eftersyn_foto TO ly_user")
    op.execute("""CREATE POLICY laes ON ly.eftersyn_foto FOR SELECT TO ly_user USING (
        EXISTS (SELECT 1 FROM ly.eftersyn e WHERE e.id = eftersyn_id))""")
    op.execute("""CREATE POLICY opret ON ly.eftersyn_foto FOR INSERT TO ly_user WITH CHECK (
        ly.actor_may_write() AND EXISTS (
            SELECT 1 FROM ly.eftersyn e WHERE e.id = eftersyn_id
            AND e.status IN ('planlagt', 'kladde', 'indsendt', 'afvist')
            AND (e.inspektoer = ly.actor_subject()
                 OR ly.actor_has('national_admin', 'municipal_editor', 'municipal_admin'))))""")

    op.execute("GRANT SELECT, INSERT, UPDATE (status, opdateret, opdateret_af) "
               "ON ly.mangel TO ly_user")
    op.execute(f"CREATE POLICY laes ON ly.mangel FOR SELECT TO ly_user USING ({_SEES})")
    op.execute(f"CREATE POLICY opret ON ly.mangel FOR INSERT TO ly_user WITH CHECK ({_ADMINS})")
    op.execute(f"""CREATE POLICY ret ON ly.mangel FOR UPDATE TO ly_user USING (
        ly.actor_may_write() AND ({_SEES}))""")


def downgrade() -> None:
    raise NotImplementedError("revision 0003 (inspections) cannot be downgraded")
