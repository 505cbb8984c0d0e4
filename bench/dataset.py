"""The national-scale data set: `count` synthetic shelters over Denmark in database `ly_bench`.

The database is created and migrated with Ly's own migrations and gets the municipalities and
postal-code areas from Ly's loaders. The shelters are then generated in one SQL statement
straight into the base table `ly.beskyttelsesrum` (as its owner, not through the per-row
trigger of the view, which would take many minutes): per municipality a count in proportion to
its population (the demo loader's allocation), points from `ST_GeneratePoints` with a fixed
seed, and attributes drawn like `loaders/demo.py` draws them. A marker row in
`bench.dataset` says the set is complete, so later runs reuse it.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path

import psycopg

from bench.config import CACHE, Config
from loaders.demo import STREETS, _allocate, _municipalities

BRUGER = "bench"

# One row per shelter, attributes drawn as loaders/demo.py draws them (same shares).
_GENERATE = """
INSERT INTO ly.beskyttelsesrum (
    versions_id, objekt_id, systid_fra, systid_til, oprettet, cvr_kode, bruger_id, oprindkode,
    statuskode, off_kode, noegle, beskyt_rum_kode, klargjort_kode, pladser, vejnavn, husnr,
    postnr, postnr_by, beliggenhedskommune, navn, bbr_bygning_id, undertype_kode, areal_m2,
    beskyt_rum_anvendelse_kode, trinfri_adgang_kode, funktionsstatus_kode, pladser_kilde_kode,
    pladser_verificeret, egnethed_kode, geometri)
WITH pts AS (
    SELECT a.kommunekode, d.path[1] AS idx, d.geom AS g, a.n
    FROM bench_alloc a
    JOIN ly.kommune k USING (kommunekode)
    CROSS JOIN LATERAL ST_Dump(ST_GeneratePoints(k.geometri, a.n + 10 + a.n / 200,
                                                 %(seed)s + k.kommunekode)) d
), drawn AS (
    SELECT p.kommunekode, p.g, k.cvr_kode, k.navn AS knavn,
           row_number() OVER (ORDER BY p.kommunekode, p.idx) - 1 AS i,
           random() AS r_type, random() AS r_opr, random() AS r_klar, random() AS r_funk,
           random() AS r_off, random() AS r_anv, random() AS r_trin, random() AS r_pl,
           random() AS r_insp, random() AS r_egn, random() AS r_und, random() AS r_areal,
           random() AS r_street, random() AS r_husnr, random() AS r_days
    FROM pts p JOIN ly.kommune k USING (kommunekode)
    WHERE p.idx <= p.n
), typed AS (
    SELECT d.*,
        CASE WHEN r_type < 0.55 THEN 2 WHEN r_type < 0.75 THEN 1 WHEN r_type < 0.95 THEN 3
             WHEN r_type < 0.98 THEN 8 ELSE 9 END AS kind,
        (%(streets)s::text[])[1 + floor(r_street * %(nstreets)s)::int] AS street,
        (1 + floor(r_husnr * 139))::int AS husnr
    FROM drawn d
), valued AS (
    SELECT t.*,
        CASE kind
            WHEN 2 THEN (ARRAY[20, 30, 40, 50, 60, 80, 100, 120, 150, 200, 250, 300])
                        [1 + floor(r_pl * 12)::int]
            WHEN 1 THEN 50 + 10 * floor(r_pl * 96)::int
            WHEN 3 THEN (ARRAY[50, 50, 50, 100, 100, 150])[1 + floor(r_pl * 6)::int]
            ELSE 10 + 5 * floor(r_pl * 39)::int END AS pladser,
        (kind = 3 AND r_insp < 0.4) AS inspected
    FROM typed t
)
SELECT
    gen_random_uuid(), gen_random_uuid(),
    timestamptz '2024-01-01 00:00:00+00' + r_days * interval '700 days', NULL,
    timestamptz '2024-01-01 00:00:00+00' + r_days * interval '700 days',
    cvr_kode, %(bruger)s,
    CASE WHEN r_opr < 0.5 THEN 4 WHEN r_opr < 0.8 THEN 7 WHEN r_opr < 0.9 THEN 3 ELSE 0 END,
    3,
    CASE kind WHEN 2 THEN CASE WHEN r_off < 0.5 THEN 2 ELSE 3 END
              WHEN 1 THEN CASE WHEN r_off < 0.3 THEN 1 ELSE 3 END
              WHEN 3 THEN CASE WHEN r_off < 0.2 THEN 1 ELSE 3 END
              ELSE 3 END,
    'bench-' || lpad(i::text, 7, '0'),
    kind,
    CASE WHEN r_klar < 0.85 THEN 0 WHEN r_klar < 0.98 THEN 3 ELSE 1 END,
    pladser,
    street, husnr::text,
    pn.postnr, pn.navn,
    kommunekode,
    CASE kind WHEN 2 THEN 'Sikringsrum, ' || street || ' ' || husnr
              WHEN 1 THEN 'Offentligt beskyttelsesrum ' || street || ' ' || husnr
              WHEN 3 THEN 'Betondækningsgrav ' || knavn || ' nr. ' || (i %% 1000)
              ELSE 'Beskyttelsesrum ' || street || ' ' || husnr END,
    CASE WHEN kind IN (1, 2) THEN gen_random_uuid() END,
    CASE WHEN kind = 3 THEN CASE WHEN r_und < 0.5 THEN 1 WHEN r_und < 0.8 THEN 2 ELSE 3 END END,
    round((pladser * (0.55 + 0.2 * r_areal))::numeric, 1),
    CASE kind WHEN 2 THEN CASE WHEN r_anv < 0.7 THEN 2 WHEN r_anv < 0.9 THEN 1 ELSE 3 END
              WHEN 1 THEN CASE WHEN r_anv < 0.3 THEN 1 WHEN r_anv < 0.8 THEN 2 ELSE 3 END
              WHEN 3 THEN CASE WHEN r_anv < 0.7 THEN 1 WHEN r_anv < 0.85 THEN 2 ELSE 4 END
              END,
    CASE kind WHEN 2 THEN CASE WHEN r_trin < 0.6 THEN 0 WHEN r_trin < 0.8 THEN 1 ELSE 3 END
              WHEN 1 THEN CASE WHEN r_trin < 0.5 THEN 0 WHEN r_trin < 0.8 THEN 1
                               WHEN r_trin < 0.9 THEN 2 ELSE 3 END
              WHEN 3 THEN 0 END,
    CASE WHEN r_funk < 0.9 THEN 3 WHEN r_funk < 0.95 THEN 4 ELSE 5 END,
    CASE kind WHEN 2 THEN 1 WHEN 1 THEN 2 WHEN 3 THEN CASE WHEN inspected THEN 3 ELSE 2 END
              ELSE 9 END,
    CASE WHEN inspected THEN CASE WHEN r_egn < 0.85 THEN pladser ELSE 0 END END,
    CASE WHEN inspected THEN CASE WHEN r_egn < 0.5 THEN 1 WHEN r_egn < 0.85 THEN 2 ELSE 3 END
         ELSE 9 END,
    g
FROM valued
LEFT JOIN LATERAL (SELECT postnr, navn FROM ly.postnummer
                   WHERE ST_Intersects(geometri, valued.g) ORDER BY postnr LIMIT 1) pn ON TRUE
"""

def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def migrations_digest() -> str:
    """A digest of Ly's migrations: a set built with other migrations is built again."""
    import datamodel

    folder = Path(datamodel.__file__).parent / "migrations"
    h = hashlib.sha256()
    for path in sorted([folder / "env.py", *folder.glob("versions/*.py")]):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _marker(conn: psycopg.Connection) -> dict | None:
    exists = conn.execute("SELECT to_regclass('bench.dataset')").fetchone()[0]
    if not exists:
        return None
    row = conn.execute("SELECT to_jsonb(d) FROM bench.dataset d").fetchone()
    if row is None:
        return None
    d = row[0]
    return {"n": d.get("n"), "seed": d.get("seed"), "build_id": d.get("build_id"),
            "built": d.get("built"), "migrations": d.get("migrations")}


def status(cfg: Config) -> dict | None:
    """The marker of a complete data set of the wanted size and seed, else None."""
    with psycopg.connect(cfg.maintenance_url, autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                             [cfg.database]).fetchone():
            return None
    with psycopg.connect(cfg.db_url) as conn:
        mark = _marker(conn)
        if not mark or mark["n"] != cfg.count or mark["seed"] != cfg.seed:
            return None
        if mark["migrations"] != migrations_digest():
            log(f"{cfg.database} was built with other migrations; building it again")
            return None
        current = conn.execute("SELECT count(*) FROM ly.beskyttelsesrum "
                               "WHERE systid_til IS NULL AND bruger_id = %s",
                               [BRUGER]).fetchone()[0]
        return mark if current == cfg.count else None


def ensure(cfg: Config) -> dict:
    """A complete data set: reused when it is there (unless --rebuild), else built anew."""
    mark = None if cfg.rebuild else status(cfg)
    if mark:
        log(f"data set {cfg.database}: {cfg.count:,} shelters, built {mark['built']} (reused)")
        return mark
    return build(cfg)


def _migrate(cfg: Config) -> None:
    from cli.main import migrate

    migrate(cfg.db_url)


def build(cfg: Config) -> dict:
    from loaders.reference import load_municipalities, load_postal_codes

    if not cfg.database.startswith("ly_bench"):
        raise SystemExit(f"refusing to build (drop and create) {cfg.database!r}: the bench "
                         "only builds databases named ly_bench*")
    started = time.monotonic()
    digest = migrations_digest()
    log(f"building {cfg.database}: {cfg.count:,} shelters (seed {cfg.seed})")
    with psycopg.connect(cfg.maintenance_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{cfg.database}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{cfg.database}"')
    _migrate(cfg)
    with psycopg.connect(cfg.db_url) as conn:
        load_municipalities(conn)
        load_postal_codes(conn)
        log(f"migrated, municipalities and postal areas loaded ({time.monotonic() - started:.0f} s)")
        per = _allocate(_municipalities(conn), cfg.count)
        with conn.transaction():
            conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
            conn.execute("SET LOCAL work_mem = '256MB'")
            conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")  # one random() stream
            # FK and other triggers off for the bulk insert (codes are checked below).
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute("CREATE TEMP TABLE bench_alloc (kommunekode int, n int) ON COMMIT DROP")
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO bench_alloc VALUES (%s, %s)", sorted(per.items()))
            # Secondary indexes are dropped for the load and built again after it.
            indexes = conn.execute(
                "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) "
                "FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid "
                "WHERE i.indrelid = 'ly.beskyttelsesrum'::regclass AND c.oid IS NULL"
            ).fetchall()
            for name, _ in indexes:
                conn.execute(f"DROP INDEX {name}")
            conn.execute("SELECT setseed(%s)", [(cfg.seed % 1000) / 1000])
            conn.execute(_GENERATE, {"seed": cfg.seed, "streets": list(STREETS),
                                     "nstreets": len(STREETS), "bruger": BRUGER})
            log(f"generated the shelters ({time.monotonic() - started:.0f} s); indexing")
            for _, definition in indexes:
                conn.execute(definition)
            conn.execute("SET LOCAL session_replication_role = DEFAULT")
            _check_codes(conn)
            n = conn.execute("SELECT count(*) FROM ly.beskyttelsesrum WHERE systid_til IS NULL "
                             "AND bruger_id = %s", [BRUGER]).fetchone()[0]
            if n != cfg.count:
                raise RuntimeError(f"generated {n} shelters, wanted {cfg.count}")
            conn.execute("CREATE SCHEMA IF NOT EXISTS bench")
            conn.execute("CREATE TABLE IF NOT EXISTS bench.dataset (n int, seed int, "
                         "build_id uuid, built timestamptz, migrations text)")
            conn.execute("DELETE FROM bench.dataset")
            conn.execute("INSERT INTO bench.dataset VALUES (%s, %s, %s, now(), %s)",
                         [cfg.count, cfg.seed, uuid.uuid4(), digest])
    with psycopg.connect(cfg.db_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) ly.beskyttelsesrum")
        conn.execute("ANALYZE")
        mark = _marker(conn)
    log(f"data set ready in {time.monotonic() - started:.0f} s")
    return mark


def _check_codes(conn: psycopg.Connection) -> None:
    """Each foreign key of the base table holds (the insert bypassed the FK triggers)."""
    rows = conn.execute(
        "SELECT c.conname, a.attname, cf.relname, af.attname FROM pg_constraint c "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
        "JOIN pg_class cf ON cf.oid = c.confrelid "
        "JOIN pg_attribute af ON af.attrelid = c.confrelid AND af.attnum = c.confkey[1] "
        "WHERE c.conrelid = 'ly.beskyttelsesrum'::regclass AND c.contype = 'f'"
    ).fetchall()
    for conname, col, table, ref in rows:
        bad = conn.execute(
            f"SELECT count(*) FROM ly.beskyttelsesrum b WHERE b.{col} IS NOT NULL AND NOT EXISTS "
            f"(SELECT 1 FROM ly.{table} d WHERE d.{ref} = b.{col})").fetchone()[0]
        if bad:
            raise RuntimeError(f"{bad} generated rows break {conname} ({col} -> {table})")


# --- the GeoPackage of the set, for the import scenario ---

#: A municipal-style list of new shelters: no objekt_id (an importer reads one as "update
#: this existing shelter"), `noegle` as the source system's key.
GPKG_COLUMNS = (
    "cvr_kode", "oprindkode", "statuskode", "off_kode", "noegle", "note",
    "beskyt_rum_kode", "klargjort_kode", "pladser", "link", "adr_id", "vejkode", "vejnavn",
    "husnr", "postnr", "postnr_by", "navn", "bbr_bygning_id", "undertype_kode", "areal_m2",
    "beskyt_rum_anvendelse_kode", "trinfri_adgang_kode", "funktionsstatus_kode",
    "pladser_kilde_kode", "pladser_verificeret", "egnethed_kode",
)


def geopackage(cfg: Config, mark: dict) -> Path:
    """`beskyttelsesrum-<n>.gpkg` of the current set (EPSG:25832, layer `beskyttelsesrum`),
    written with pyogrio and cached until the data set is rebuilt."""
    import geopandas as gpd
    import pandas as pd
    import pyogrio
    import shapely

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"beskyttelsesrum-{cfg.count}.gpkg"
    stamp = path.with_suffix(".json")
    wanted = {"build_id": mark["build_id"], "n": cfg.count, "columns": list(GPKG_COLUMNS)}
    if path.exists() and stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return path
    log(f"writing {path.name} with pyogrio")
    started = time.monotonic()
    path.unlink(missing_ok=True)
    cols = ", ".join(GPKG_COLUMNS)
    chunk = 100_000
    with psycopg.connect(cfg.db_url) as conn, conn.cursor(name="gpkg") as cur:
        cur.itersize = chunk
        cur.execute(f"SELECT {cols}, ST_AsBinary(geometri) FROM ly.beskyttelsesrum "
                    "WHERE systid_til IS NULL ORDER BY objekt_id")
        first = True
        while rows := cur.fetchmany(chunk):
            frame = pd.DataFrame([r[:-1] for r in rows], columns=list(GPKG_COLUMNS))
            for c in ("adr_id", "bbr_bygning_id"):
                frame[c] = frame[c].map(lambda v: None if v is None else str(v))
            frame["areal_m2"] = frame["areal_m2"].astype(float)
            geoms = shapely.from_wkb([bytes(r[-1]) for r in rows])
            gdf = gpd.GeoDataFrame(frame, geometry=geoms, crs="EPSG:25832")
            pyogrio.write_dataframe(gdf, path, layer="beskyttelsesrum", driver="GPKG",
                                    append=not first, geometry_type="Point")
            first = False
    stamp.write_text(json.dumps(wanted))
    log(f"{path.name}: {path.stat().st_size / 1e6:.0f} MB in {time.monotonic() - started:.0f} s")
    return path


if __name__ == "__main__":  # build or check the set alone: python -m bench.dataset [--quick]
    import sys

    c = Config(quick="--quick" in sys.argv, rebuild="--rebuild" in sys.argv)
    if c.quick:
        c.count = 100_000
    print(ensure(c))
