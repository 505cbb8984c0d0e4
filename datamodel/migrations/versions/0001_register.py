"""The shelter register v1: code lists, municipalities, beskyttelsesrum with GeoFA-style history.

Storage follows GeoFA (fkg.generel + fkg.t_6101_beskyt_rum_t): every version is a row of
`ly.beskyttelsesrum`; `systid_til IS NULL` marks the current one. Clients write through the
view `ly.t_6101_beskyt_rum` (current versions, with code-list text twins), whose INSTEAD OF
triggers do what GeoFA's do: insert mints ids and times, update closes the current version
and writes a new one, delete only closes the current version. The base table refuses
physical deletes and any change but closing a version. `ly.hist_t_6101_beskyt_rum` shows
every version.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Code-list tables the register references (values are synchronised from the project's JSON
# files after every migration by env.py).
CODELISTS = (
    "d_basis_oprindelse", "d_basis_status", "d_basis_offentlig", "d_basis_ja_nej",
    "d_basis_handicapegnet", "d_basis_funktionsstatus", "d_6101_beskyt_rum",
    "d_6122_beskyt_rum_anvendelse", "d_6122_ja_nej_ved_ikke", "d_6122_beskyt_rum",
    "d_ly_undertype", "d_ly_pladser_kilde", "d_ly_egnethed",
)

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
    "pladser_kilde_kode", "pladser_verificeret", "egnethed_kode", "geometri",
)


def _codelist_table(name: str, extra: str = "") -> str:
    return f"""
    CREATE TABLE ly.{name} (
        kode integer PRIMARY KEY,
        tekst varchar(128) NOT NULL,
        aktiv smallint NOT NULL DEFAULT 1 CHECK (aktiv IN (0, 1)),
        begrebsdefinition varchar{extra}
    )"""


def _view(name: str, where: str) -> str:
    base = ",\n        ".join(f"b.{c}" for c in COLUMNS if c != "geometri")
    twins = ",\n        ".join(f"d{i}.tekst AS {twin}" for i, (_, _, twin) in enumerate(CODED))
    joins = "\n    ".join(
        f"LEFT JOIN ly.{table} d{i} ON d{i}.kode = b.{col}"
        for i, (col, table, _) in enumerate(CODED)
    )
    return f"""
    CREATE VIEW ly.{name} AS
    SELECT {base},
        {twins},
        b.geometri
    FROM ly.beskyttelsesrum b
    {joins}
    {where}"""


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.execute("CREATE SCHEMA IF NOT EXISTS ly")
    for name in CODELISTS:
        op.execute(_codelist_table(name))
    op.execute(_codelist_table("d_basis_ansvarlig_myndighed", ",\n        kommunekode integer"))

    op.execute("""
    CREATE TABLE ly.kommune (
        kommunekode integer PRIMARY KEY,
        navn varchar(60) NOT NULL,
        cvr_kode integer,
        geometri geometry(MultiPolygon, 25832) NOT NULL
    )""")
    op.execute("CREATE INDEX kommune_geometri_gist ON ly.kommune USING gist (geometri)")
    op.execute("""
    CREATE TABLE ly.postnummer (
        postnr integer PRIMARY KEY,
        navn varchar(40) NOT NULL,
        geometri geometry(MultiPolygon, 25832) NOT NULL
    )""")
    op.execute("CREATE INDEX postnummer_geometri_gist ON ly.postnummer USING gist (geometri)")

    fk = {col: table for col, table, _ in CODED}
    op.execute(f"""
    CREATE TABLE ly.beskyttelsesrum (
        versions_id uuid PRIMARY KEY,
        objekt_id uuid NOT NULL,
        systid_fra timestamptz NOT NULL,
        systid_til timestamptz,
        oprettet timestamptz NOT NULL,
        cvr_kode integer NOT NULL REFERENCES ly.{fk['cvr_kode']} (kode),
        bruger_id varchar(128) NOT NULL,
        oprindkode integer NOT NULL REFERENCES ly.{fk['oprindkode']} (kode),
        statuskode integer NOT NULL REFERENCES ly.{fk['statuskode']} (kode),
        off_kode integer NOT NULL DEFAULT 3 REFERENCES ly.{fk['off_kode']} (kode),
        noegle varchar(128),
        note varchar(254),
        beskyt_rum_kode integer NOT NULL REFERENCES ly.{fk['beskyt_rum_kode']} (kode),
        klargjort_kode integer NOT NULL REFERENCES ly.{fk['klargjort_kode']} (kode),
        pladser integer NOT NULL CONSTRAINT pladser_range CHECK (pladser BETWEEN 1 AND 9999),
        link varchar(1024),
        adr_id uuid,
        vejkode integer CONSTRAINT vejkode_range CHECK (vejkode BETWEEN 0 AND 9999),
        vejnavn varchar(40),
        husnr varchar(4),
        postnr integer CONSTRAINT postnr_range CHECK (postnr BETWEEN 800 AND 9999),
        postnr_by varchar(30),
        beliggenhedskommune integer,
        navn varchar(254),
        bbr_bygning_id uuid,
        undertype_kode integer REFERENCES ly.{fk['undertype_kode']} (kode),
        areal_m2 numeric(9, 1) CONSTRAINT areal_m2_range CHECK (areal_m2 > 0),
        beskyt_rum_anvendelse_kode integer REFERENCES ly.{fk['beskyt_rum_anvendelse_kode']} (kode),
        trinfri_adgang_kode integer REFERENCES ly.{fk['trinfri_adgang_kode']} (kode),
        funktionsstatus_kode integer NOT NULL REFERENCES ly.{fk['funktionsstatus_kode']} (kode),
        pladser_kilde_kode integer NOT NULL REFERENCES ly.{fk['pladser_kilde_kode']} (kode),
        pladser_verificeret integer
            CONSTRAINT pladser_verificeret_range CHECK (pladser_verificeret BETWEEN 0 AND 9999),
        egnethed_kode integer NOT NULL REFERENCES ly.{fk['egnethed_kode']} (kode),
        geometri geometry(Point, 25832) NOT NULL
            CONSTRAINT geometri_valid CHECK (NOT ST_IsEmpty(geometri)),
        CONSTRAINT systid_order CHECK (systid_til IS NULL OR systid_til >= systid_fra)
    )""")
    op.execute("""CREATE UNIQUE INDEX beskyttelsesrum_aktuel_uk
        ON ly.beskyttelsesrum (objekt_id) WHERE systid_til IS NULL""")
    op.execute("""CREATE INDEX beskyttelsesrum_historik
        ON ly.beskyttelsesrum (objekt_id, systid_fra)""")
    op.execute("""CREATE INDEX beskyttelsesrum_aktuel_gist
        ON ly.beskyttelsesrum USING gist (geometri) WHERE systid_til IS NULL""")
    op.execute("""CREATE INDEX beskyttelsesrum_gist
        ON ly.beskyttelsesrum USING gist (geometri)""")
    op.execute("""CREATE INDEX beskyttelsesrum_systid
        ON ly.beskyttelsesrum (systid_fra, systid_til)""")

    # The base table is append-only: a version may only be closed, never changed or removed.
    op.execute("""
    CREATE FUNCTION ly.beskyttelsesrum_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' OR TG_OP = 'TRUNCATE' THEN
            RAISE EXCEPTION 'versioner af beskyttelsesrum slettes aldrig fysisk'
                USING ERRCODE = 'LY403';
        END IF;
        IF OLD.systid_til IS NOT NULL
           OR (to_jsonb(NEW) - 'systid_til') IS DISTINCT FROM (to_jsonb(OLD) - 'systid_til') THEN
            RAISE EXCEPTION 'en version af beskyttelsesrum kan kun afsluttes, ikke ændres'
                USING ERRCODE = 'LY403';
        END IF;
        RETURN NEW;
    END $$""")
    op.execute("""CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON ly.beskyttelsesrum
        FOR EACH ROW EXECUTE FUNCTION ly.beskyttelsesrum_append_only()""")
    op.execute("""CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON ly.beskyttelsesrum
        FOR EACH STATEMENT EXECUTE FUNCTION ly.beskyttelsesrum_append_only()""")

    # Municipality of a point: the one containing it, else the nearest within 5 km (the DAGI
    # 1:500 000 coastline is generalised). No municipalities loaded: NULL. Farther: refused.
    op.execute("""
    CREATE FUNCTION ly.kommune_for(g geometry) RETURNS integer LANGUAGE plpgsql STABLE AS $$
    DECLARE k integer;
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM ly.kommune) THEN
            RETURN NULL;
        END IF;
        SELECT kommunekode INTO k FROM ly.kommune
            WHERE ST_Intersects(geometri, g) ORDER BY kommunekode LIMIT 1;
        IF k IS NULL THEN
            SELECT kommunekode INTO k FROM ly.kommune
                WHERE ST_DWithin(geometri, g, 5000) ORDER BY geometri <-> g LIMIT 1;
        END IF;
        IF k IS NULL THEN
            RAISE EXCEPTION 'punktet ligger uden for Danmark' USING ERRCODE = 'LY422',
                COLUMN = 'geometri';
        END IF;
        RETURN k;
    END $$""")

    # Geometry as stored: a 2D point in EPSG:25832. GeoFA's MultiPoint with one point is accepted.
    op.execute("""
    CREATE FUNCTION ly.as_point(g geometry) RETURNS geometry LANGUAGE plpgsql IMMUTABLE AS $$
    BEGIN
        IF g IS NULL THEN
            RETURN NULL;
        END IF;
        IF GeometryType(g) = 'MULTIPOINT' AND ST_NumGeometries(g) = 1 THEN
            g := ST_GeometryN(g, 1);
        END IF;
        IF GeometryType(g) <> 'POINT' OR ST_IsEmpty(g) THEN
            RAISE EXCEPTION 'geometrien skal være et punkt' USING ERRCODE = 'LY422',
                COLUMN = 'geometri';
        END IF;
        IF ST_SRID(g) <> 25832 THEN
            g := ST_Transform(g, 25832);
        END IF;
        RETURN ST_Force2D(g);
    END $$""")

    cols = ", ".join(COLUMNS)
    new_vals = ", ".join(f"NEW.{c}" for c in COLUMNS)
    derive = """
        NEW.geometri := ly.as_point(NEW.geometri);
        NEW.beliggenhedskommune := ly.kommune_for(NEW.geometri);
        IF NEW.cvr_kode IS NULL THEN
            NEW.cvr_kode := (SELECT cvr_kode FROM ly.kommune
                             WHERE kommunekode = NEW.beliggenhedskommune);
        END IF;"""
    op.execute(_view("t_6101_beskyt_rum", "WHERE b.systid_til IS NULL"))
    op.execute(_view("hist_t_6101_beskyt_rum", ""))
    op.execute(f"""
    CREATE FUNCTION ly.t_6101_beskyt_rum_write() RETURNS trigger LANGUAGE plpgsql AS $$
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
                RETURN NULL;  -- someone else closed this version first
            END IF;
            IF TG_OP = 'DELETE' THEN
                RETURN OLD;
            END IF;
            NEW.oprettet := OLD.oprettet;
        END IF;
        NEW.versions_id := gen_random_uuid();
        NEW.systid_fra := now();
        NEW.systid_til := NULL;
        {derive}
        INSERT INTO ly.beskyttelsesrum ({cols}) VALUES ({new_vals});
        RETURN NEW;
    END $$""")
    op.execute("""CREATE TRIGGER write INSTEAD OF INSERT OR UPDATE OR DELETE
        ON ly.t_6101_beskyt_rum FOR EACH ROW EXECUTE FUNCTION ly.t_6101_beskyt_rum_write()""")


def downgrade() -> None:
    op.execute("DROP SCHEMA ly CASCADE")
