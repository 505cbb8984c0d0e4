"""Imports and GeoFA sync: runs (koersler), staged candidates, rejected rows, conflicts, the
GeoFA pull cursor and links, with row-level security for the run log.

Every import or pull is a *run* (`ly.koersel`) that stages its result before anything reaches
the register:
- `ly.kandidat`: one row per source row that became a change (or an unchanged match), with
  the values to write, the version it was computed against (`foer_versions_id`) and, once
  published, the version it wrote (`efter_versions_id`). Rollback writes new versions that
  restore `foer_versions_id`'s values; history is never deleted.
- `ly.afvist`: every rejected source row with the field and the reason.
- `ly.konflikt`: every GeoFA sync conflict with both values and the policy's decision.
- `ly.geofa_markoer`: the pull cursor on GeoFA's systid; `ly.geofa_link`: for each synced
  shelter GeoFA's objekt_id, the last-seen GeoFA and Ly versions and the agreed values (the
  base of the three-way merge).
- `ly.bbr_vaerdi`: the values BBR last delivered for each building (from published BBR runs),
  kept apart from the register's verified values and manual corrections.

Runs are written by the loaders (the `ly` CLI, as the owning role). Administrators read the
run log through the API: national admins all runs, municipal admins the runs of their CVR or
municipalities.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ARTER = ("kommunal_liste", "bbr", "geofa_pull", "geofa_sync")
STATUSSER = ("indlaeser", "klar", "afvist", "publiceret", "tilbagerullet", "fejlet")
HANDLINGER = ("opret", "ret", "afslut", "uaendret")


def _in(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


def upgrade() -> None:
    op.execute(f"""
    CREATE TABLE ly.koersel (
        id bigserial PRIMARY KEY,
        art varchar(20) NOT NULL CHECK (art IN ({_in(ARTER)})),
        status varchar(20) NOT NULL DEFAULT 'indlaeser' CHECK (status IN ({_in(STATUSSER)})),
        kilde text NOT NULL,
        kilde_sha256 char(64),
        parametre jsonb NOT NULL DEFAULT '{{}}',
        kommunekode integer,
        cvr_kode integer,
        subjekt varchar(256) NOT NULL,
        startet timestamptz NOT NULL DEFAULT now(),
        opdateret timestamptz NOT NULL DEFAULT now(),
        staget timestamptz,
        publiceret timestamptz,
        tilbagerullet timestamptz,
        naeste_raekke integer NOT NULL DEFAULT 0,
        markoer jsonb,
        taellere jsonb NOT NULL DEFAULT '{{}}',
        kvalitet jsonb,
        fejl text
    )""")
    op.execute("CREATE INDEX koersel_art ON ly.koersel (art, startet)")
    op.execute("CREATE INDEX koersel_kommune ON ly.koersel (kommunekode)")

    op.execute(f"""
    CREATE TABLE ly.kandidat (
        koersel_id bigint NOT NULL REFERENCES ly.koersel (id),
        raekke integer NOT NULL,
        maal varchar(6) NOT NULL DEFAULT 'ly' CHECK (maal IN ('ly', 'geofa')),
        handling varchar(10) NOT NULL CHECK (handling IN ({_in(HANDLINGER)})),
        objekt_id uuid NOT NULL,
        match varchar(20),
        dublet_noegle text,
        foer_versions_id uuid,
        efter_versions_id uuid,
        tilbage_versions_id uuid,
        vaerdier jsonb,
        aendringer jsonb,
        geometri geometry(Point, 25832),
        kilde_vaerdier jsonb,
        bemaerkning text,
        PRIMARY KEY (koersel_id, raekke)
    )""")
    op.execute("CREATE UNIQUE INDEX kandidat_objekt ON ly.kandidat (koersel_id, maal, objekt_id)")
    op.execute("""CREATE UNIQUE INDEX kandidat_dublet ON ly.kandidat (koersel_id, dublet_noegle)
        WHERE dublet_noegle IS NOT NULL""")
    op.execute("CREATE INDEX kandidat_objekt_id ON ly.kandidat (objekt_id)")

    op.execute("""
    CREATE TABLE ly.afvist (
        id bigserial PRIMARY KEY,
        koersel_id bigint NOT NULL REFERENCES ly.koersel (id),
        raekke integer NOT NULL,
        felt varchar(128) NOT NULL,
        aarsag text NOT NULL,
        kilde_vaerdier jsonb
    )""")
    op.execute("CREATE INDEX afvist_koersel ON ly.afvist (koersel_id, raekke)")

    op.execute("""
    CREATE TABLE ly.konflikt (
        id bigserial PRIMARY KEY,
        koersel_id bigint NOT NULL REFERENCES ly.koersel (id),
        objekt_id uuid NOT NULL,
        felt varchar(64) NOT NULL,
        grundlag jsonb,
        ly_vaerdi jsonb,
        geofa_vaerdi jsonb,
        politik varchar(30) NOT NULL,
        vinder varchar(10) NOT NULL CHECK (vinder IN ('ly', 'geofa', 'ingen')),
        begrundelse text
    )""")
    op.execute("CREATE INDEX konflikt_koersel ON ly.konflikt (koersel_id)")

    op.execute("""
    CREATE TABLE ly.geofa_markoer (
        tema integer PRIMARY KEY,
        systid timestamptz NOT NULL,
        koersel_id bigint REFERENCES ly.koersel (id),
        opdateret timestamptz NOT NULL DEFAULT now()
    )""")
    op.execute("""
    CREATE TABLE ly.geofa_link (
        objekt_id uuid PRIMARY KEY,
        geofa_objekt_id uuid NOT NULL UNIQUE,
        geofa_versions_id uuid,
        ly_versions_id uuid,
        grundlag jsonb NOT NULL DEFAULT '{}',
        afsluttet boolean NOT NULL DEFAULT false,
        synkroniseret timestamptz NOT NULL DEFAULT now()
    )""")

    # What BBR last said about each building, from the newest published BBR run that saw it.
    # Kept apart from the register (pladser, pladser_verificeret, manual corrections).
    op.execute("""
    CREATE VIEW ly.bbr_vaerdi AS
    SELECT DISTINCT ON ((k.kilde_vaerdier ->> 'id_lokalId'))
        (k.kilde_vaerdier ->> 'id_lokalId')::uuid AS bbr_bygning_id,
        k.objekt_id,
        (k.kilde_vaerdier ->> 'byg069Sikringsrumpladser')::integer AS pladser,
        k.kilde_vaerdier ->> 'status' AS status,
        k.kilde_vaerdier ->> 'vejnavn' AS vejnavn,
        k.kilde_vaerdier ->> 'husnr' AS husnr,
        (k.kilde_vaerdier ->> 'postnr')::integer AS postnr,
        k.kilde_vaerdier ->> 'postnr_by' AS postnr_by,
        k.geometri,
        k.koersel_id,
        r.publiceret AS hentet
    FROM ly.kandidat k JOIN ly.koersel r ON r.id = k.koersel_id
    WHERE r.art = 'bbr' AND r.status = 'publiceret' AND k.kilde_vaerdier ? 'id_lokalId'
    ORDER BY (k.kilde_vaerdier ->> 'id_lokalId'), r.publiceret DESC
    """)

    # --- who may read the run log: administrators (national, or of the run's CVR/municipality)
    op.execute("""
    CREATE FUNCTION ly.may_see_run(cvr integer, kommune integer) RETURNS boolean
    LANGUAGE sql STABLE AS $$
        SELECT ly.actor_has('national_admin')
            OR (ly.actor_has('municipal_admin')
                AND (cvr = ly.actor_cvr() OR kommune = ANY (ly.actor_kommuner())))
    $$""")
    op.execute("GRANT EXECUTE ON FUNCTION ly.may_see_run(integer, integer) TO ly_user")
    for table in ("koersel", "kandidat", "afvist", "konflikt"):
        op.execute(f"ALTER TABLE ly.{table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"GRANT SELECT ON ly.{table} TO ly_user")
    op.execute("""CREATE POLICY laes ON ly.koersel FOR SELECT TO ly_user
        USING (ly.may_see_run(cvr_kode, kommunekode))""")
    for table in ("kandidat", "afvist", "konflikt"):
        op.execute(f"""CREATE POLICY laes ON ly.{table} FOR SELECT TO ly_user
            USING (EXISTS (SELECT 1 FROM ly.koersel r WHERE r.id = koersel_id))""")
    op.execute("ALTER VIEW ly.bbr_vaerdi SET (security_invoker = true)")
    op.execute("GRANT SELECT ON ly.bbr_vaerdi TO ly_user")


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS ly.bbr_vaerdi")
    for table in ("geofa_link", "geofa_markoer", "konflikt", "afvist", "kandidat", "koersel"):
        op.execute(f"DROP TABLE IF EXISTS ly.{table}")
    op.execute("DROP FUNCTION IF EXISTS ly.may_see_run(integer, integer)")
