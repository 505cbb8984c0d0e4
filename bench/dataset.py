"""The national-scale data set in database `ly_bench`: `count` synthetic shelters and `areas`
synthetic areas of the area theme (100,000 event areas, 6121) over Denmark.

The database is created and migrated with Ly's own migrations and gets the municipalities and
postal-code areas from Ly's loaders. The shelters are then generated in one SQL statement
straight into the shelter theme's base table (`ly.` + the descriptor's `table`; as its owner,
not through the per-row trigger of the view, which would take many minutes): per municipality
a count in proportion to its population (the demo loader's allocation), points from
`ST_GeneratePoints` with a fixed seed, and attributes drawn like `loaders/demo.py` draws them.
The areas follow in a second statement built from the area theme's descriptor (`area_sql`):
the same allocation, a centre from `ST_GeneratePoints`, a valid MultiPolygon of 0.5-50 ha
(rotated rectangles and ellipses, some in two parts), every attribute from its `Field` (codes
drawn from the theme's code lists, integers within their ranges, the validity period mostly in
summer 2026, an `off_kode` mix). The shelters are generated first, with the same seed and
statement as before the areas existed, so the shelter set is the same as an older build's.
A marker row in `bench.dataset` says the set is complete, so later runs reuse it.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path

import psycopg

from bench.config import CACHE, QUICK_AREAS, QUICK_COUNT, Config
from loaders.demo import STREETS, _allocate, _municipalities

BRUGER = "bench"

# One row per shelter, attributes drawn as loaders/demo.py draws them (same shares).
_GENERATE = """
INSERT INTO ly.{table} (
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

# --- the areas: one statement built from the area theme's descriptor ---

#: Share of areas per off_kode (1 public, 2 the responsible authority, 3 every authority):
#: most permitted events are public knowledge.
AREA_OFF_KODE = ((1, 0.55), (3, 0.30), (2, 0.15))
#: oprindkode of the areas: ortofoto, drawing, cadastral map, not filled in.
AREA_OPRINDKODE = ((1, 0.40), (6, 0.30), (2, 0.20), (0, 0.10))
AREA_MIN_M2, AREA_MAX_M2 = 5_000.0, 500_000.0  # 0.5-50 ha
#: Area of a 16-gon of circumradius 1 (ST_Buffer(point, 1, 'quad_segs=4')).
_POLY16 = 8 * 0.3826834323650898
#: The validity period: three in four start between 1 May and 31 August 2026, the rest
#: anywhere from January 2026 to June 2027; 0-13 days long, one in twenty open-ended.
SUMMER_START, SUMMER_DAYS = "2026-05-01", 123
YEAR_START, YEAR_DAYS = "2026-01-01", 546


def _shares(var: str, shares) -> str:
    """CASE over a uniform random `var`: each code with its share."""
    arms, acc = [], 0.0
    for code, share in shares[:-1]:
        acc += share
        arms.append(f"WHEN {var} < {acc:.4f} THEN {code}")
    return f"CASE {' '.join(arms)} ELSE {shares[-1][0]} END"


def _clamp(expr: str, f) -> str:
    if f.minimum is not None:
        expr = f"greatest({expr}, {int(f.minimum)})"
    if f.maximum is not None:
        expr = f"least({expr}, {int(f.maximum)})"
    return expr


def _text(expr: str, f) -> str:
    return f"left({expr}, {f.max_length})" if f.max_length else expr


def area_sql(theme) -> tuple[str, list[str]]:
    """The INSERT of the areas of `theme` (an area theme) and the code lists it reads.

    Every attribute comes from the theme's `Field`s: system columns and `bruger_id` as for
    the shelters, `cvr_kode` and `beliggenhedskommune` from the municipality (the one holding
    the largest part when an area crosses a border, as `ly.kommune_for_area` derives it),
    `noegle` a bench key, `postnr`/`postnr_by` from the postal area at the centre, codes drawn
    from each field's code list (active codes), required integers within the field's range
    (a theme's figures, e.g. expected participants, in proportion to the area), the validity period
    (`theme.validity`) mostly in summer 2026, the label and other required texts numbered,
    optional public texts on half the areas; the rest NULL.
    """
    if not theme.is_area:
        raise ValueError(f"{theme!r} is not an area theme")
    validity = theme.validity or (None, None)
    figures = {fig.field for fig in theme.figures}
    codelists: list[str] = []
    randoms: list[str] = []
    values: list[str] = []

    def rnd(name: str) -> str:
        var = f"r_{len(randoms)}"
        randoms.append(f"random() AS {var}")
        return var

    for name in theme.storage_columns:
        f = theme.fields_by_name[name]
        if name in ("versions_id", "objekt_id"):
            v = "gen_random_uuid()"
        elif name in ("systid_fra", "oprettet"):
            v = "registered"
        elif name == "systid_til":
            v = "NULL"
        elif name == "bruger_id":
            v = "%(bruger)s"
        elif name == "cvr_kode":
            v = "cvr_kode"
        elif name == "beliggenhedskommune":
            v = "kommune"
        elif name == "off_kode":
            v = _shares(rnd(name), AREA_OFF_KODE)
        elif name == "oprindkode":
            v = _shares(rnd(name), AREA_OPRINDKODE)
        elif name == "statuskode":
            v = "3"  # gældende
        elif name == "noegle":
            v = _text("'bench-' || %(prefix)s || '-' || lpad(i::text, 7, '0')", f)
        elif name == "postnr":
            v = "pn_postnr"
        elif name == "postnr_by":
            v = _text("pn_navn", f)
        elif name == validity[0]:
            v = "valid_from"
        elif name == validity[1]:
            v = "valid_to"
        elif f.codelist:
            k = len(codelists)
            codelists.append(f.codelist)
            v = (f"(SELECT codes[1 + floor({rnd(name)} * cardinality(codes))::int] "
                 f"FROM codes_{k})")
        elif f.type == "integer" and name in figures:
            # participants and the like: 0.02-0.5 per m² of the area
            v = _clamp(f"round(area_m2 * (0.02 + 0.48 * {rnd(name)}))::int", f)
        elif f.type in ("integer", "number") and f.required:
            lo = f.minimum if f.minimum is not None else 0
            hi = f.maximum if f.maximum is not None else lo + 1000
            v = (f"({int(lo)} + floor({rnd(name)} * {int(hi - lo + 1)}))::int"
                 if f.type == "integer" else
                 f"round(({lo} + {rnd(name)} * {hi - lo})::numeric, 1)")
        elif f.type == "string" and (name == theme.label or f.required):
            v = _text(f"%(title_{name})s || ' ' || knavn || ' nr. ' || (i + 1)"
                      if name == theme.label else f"%(title_{name})s || ' ' || (i + 1)", f)
        elif f.type == "string" and f.public and (f.max_length or 999) >= 64:
            numbered = _text(f"%(title_{name})s || ' ' || (i + 1)", f)
            v = f"CASE WHEN {rnd(name)} < 0.5 THEN {numbered} END"
        elif f.required:
            v = {"date": "DATE '2026-06-01'", "date-time": "registered",
                 "boolean": f"{rnd(name)} < 0.5", "uuid": "gen_random_uuid()"}.get(
                f.type, "NULL")
        else:
            v = "NULL"
        values.append(f"{v} AS {name}")

    end = validity[1]
    end_required = bool(end and theme.fields_by_name[end].required)
    select = ",\n       ".join(values)
    randoms_sql = "".join(", " + r for r in randoms)
    codes = ",\n".join(
        f"codes_{k} AS (SELECT array_agg(kode ORDER BY kode) AS codes FROM ly.{name} "
        "WHERE aktiv = 1)" for k, name in enumerate(codelists))
    statement = f"""
INSERT INTO ly.{theme.table} ({", ".join(theme.storage_columns)}, geometri)
WITH {codes + "," if codes else ""}
pts AS (
    SELECT a.kommunekode, d.path[1] AS idx, d.geom AS c, a.n
    FROM bench_alloc a
    JOIN ly.kommune k USING (kommunekode)
    CROSS JOIN LATERAL ST_Dump(ST_GeneratePoints(k.geometri, a.n + 10 + a.n / 200,
                                                 %(seed)s + k.kommunekode)) d
), drawn AS (
    SELECT p.kommunekode, p.c, k.cvr_kode, k.navn AS knavn,
           row_number() OVER (ORDER BY p.kommunekode, p.idx) - 1 AS i,
           random() AS r_area, random() AS r_aspect, random() AS r_rot, random() AS r_shape,
           random() AS r_two, random() AS r_reg, random() AS r_summer, random() AS r_from,
           random() AS r_len, random() AS r_open{randoms_sql}
    FROM pts p JOIN ly.kommune k USING (kommunekode)
    WHERE p.idx <= p.n
), sized AS (
    SELECT d.*,
        exp(ln({AREA_MIN_M2}) + r_area * ln({AREA_MAX_M2 / AREA_MIN_M2})) AS area_m2,
        1 + 2 * r_aspect AS q,  -- length to width, 1-3
        (r_two < 0.15) AS two_parts,  -- e.g. the event and its camping site
        (r_shape < 0.25) AS round_shape
    FROM drawn d
), parts AS (
    SELECT s.*,
        CASE WHEN two_parts THEN 0.7 ELSE 1.0 END * area_m2 AS main_m2,
        0.3 * area_m2 AS side_m2
    FROM sized s
), local AS (  -- the shape around (0, 0), before it is turned and placed
    SELECT p.*,
        CASE WHEN round_shape
             THEN ST_Scale(ST_Buffer(ST_MakePoint(0, 0), 1, 'quad_segs=4'),
                           sqrt(main_m2 * q / {_POLY16}), sqrt(main_m2 / (q * {_POLY16})))
             ELSE ST_MakeEnvelope(-sqrt(main_m2 * q) / 2, -sqrt(main_m2 / q) / 2,
                                  sqrt(main_m2 * q) / 2, sqrt(main_m2 / q) / 2) END AS main,
        CASE WHEN round_shape THEN sqrt(main_m2 * q / {_POLY16})
             ELSE sqrt(main_m2 * q) / 2 END AS half_length
    FROM parts p
), shaped AS MATERIALIZED (  -- each geometry made once
    SELECT l.*,
        ST_SetSRID(ST_Translate(ST_Rotate(
            CASE WHEN two_parts THEN ST_Collect(main, ST_MakeEnvelope(
                     half_length + 20, -sqrt(side_m2) / 2,
                     half_length + 20 + sqrt(side_m2), sqrt(side_m2) / 2))
                 ELSE ST_Multi(main) END,
            r_rot * pi()), ST_X(c), ST_Y(c)), 25832) AS g
    FROM local l
), placed AS (
    SELECT s.*,
        -- ly.kommune_for_area, which intersects each candidate, only where there are two
        CASE WHEN cardinality(ks.k) = 1 THEN ks.k[1] ELSE ly.kommune_for_area(s.g) END
            AS kommune,
        timestamptz '2025-09-01 00:00:00+00' + r_reg * interval '240 days' AS registered,
        CASE WHEN r_summer < 0.75
             THEN DATE '{SUMMER_START}' + floor(r_from * {SUMMER_DAYS})::int
             ELSE DATE '{YEAR_START}' + floor(r_from * {YEAR_DAYS})::int END AS valid_from
    FROM shaped s
    CROSS JOIN LATERAL (SELECT array_agg(kommunekode) AS k FROM ly.kommune
                        WHERE ST_Intersects(geometri, s.g)) ks
), dated AS (
    SELECT p.*,
        CASE WHEN r_open < 0.05 AND NOT {str(end_required).lower()} THEN NULL
             ELSE valid_from + floor(r_len * r_len * 14)::int END AS valid_to
    FROM placed p
), named AS (
    SELECT d.*, pn.postnr AS pn_postnr, pn.navn AS pn_navn
    FROM dated d
    LEFT JOIN LATERAL (SELECT postnr, navn FROM ly.postnummer
                       WHERE ST_Intersects(geometri, d.c) ORDER BY postnr LIMIT 1) pn ON TRUE
)
SELECT {select}, g
FROM named
"""
    return statement, codelists


def area_params(cfg: Config, theme) -> dict:
    params = {"seed": cfg.seed * 7 + 100_000, "bruger": BRUGER, "prefix": str(theme.temakode)}
    for f in theme.fields:
        params[f"title_{f.name}"] = f.title
    return params


# --- the marker, and building the set ---

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
            "built": d.get("built"), "migrations": d.get("migrations"),
            "areas": d.get("areas"), "area_table": d.get("area_table")}


def _current(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM ly.{table} WHERE systid_til IS NULL "
                        "AND bruger_id = %s", [BRUGER]).fetchone()[0]


def status(cfg: Config) -> dict | None:
    """The marker of a complete data set of the wanted size and seed, else None."""
    with psycopg.connect(cfg.maintenance_url, autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                             [cfg.database]).fetchone():
            return None
    areas = cfg.area_theme
    with psycopg.connect(cfg.db_url) as conn:
        mark = _marker(conn)
        if not mark or mark["n"] != cfg.count or mark["seed"] != cfg.seed:
            return None
        if mark["migrations"] != migrations_digest():
            log(f"{cfg.database} was built with other migrations; building it again")
            return None
        if mark["areas"] != cfg.areas or mark["area_table"] != areas.table:
            log(f"{cfg.database} has no {cfg.areas:,} areas in ly.{areas.table}; "
                "building it again")
            return None
        if _current(conn, cfg.shelter_theme.table) != cfg.count or \
                _current(conn, areas.table) != cfg.areas:
            return None
        return mark


def ensure(cfg: Config) -> dict:
    """A complete data set: reused when it is there (unless --rebuild), else built anew."""
    mark = None if cfg.rebuild else status(cfg)
    if mark:
        log(f"data set {cfg.database}: {cfg.count:,} shelters and {cfg.areas:,} areas, built "
            f"{mark['built']} (reused)")
        return mark
    return build(cfg)


def _migrate(cfg: Config) -> None:
    from cli.main import migrate

    migrate(cfg.db_url)


def _drop_indexes(conn: psycopg.Connection, table: str) -> list[tuple[str, str]]:
    """Drop the secondary indexes of `ly.<table>` for a bulk load; their definitions."""
    indexes = conn.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) "
        "FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid "
        "WHERE i.indrelid = %s::regclass AND c.oid IS NULL", [f"ly.{table}"]).fetchall()
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    return indexes


def build(cfg: Config) -> dict:
    from loaders.reference import load_municipalities, load_postal_codes

    if not cfg.database.startswith("ly_bench"):
        raise SystemExit(f"refusing to build (drop and create) {cfg.database!r}: the bench "
                         "only builds databases named ly_bench*")
    started = time.monotonic()
    digest = migrations_digest()
    shelters, areas = cfg.shelter_theme, cfg.area_theme
    log(f"building {cfg.database}: {cfg.count:,} shelters and {cfg.areas:,} areas of "
        f"{areas.temakode} {areas.collection_id} (seed {cfg.seed})")
    with psycopg.connect(cfg.maintenance_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{cfg.database}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{cfg.database}"')
    _migrate(cfg)
    with psycopg.connect(cfg.db_url) as conn:
        load_municipalities(conn)
        load_postal_codes(conn)
        log(f"migrated, municipalities and postal areas loaded ({time.monotonic() - started:.0f} s)")
        municipalities = _municipalities(conn)
        per = _allocate(municipalities, cfg.count)
        with conn.transaction():
            conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
            conn.execute("SET LOCAL work_mem = '256MB'")
            conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")  # one random() stream
            # The generating statements are costed far over the JIT thresholds: compiling
            # their expressions took 20-30 s of the areas' build (same data without it).
            conn.execute("SET LOCAL jit = off")
            # FK and other triggers off for the bulk insert (codes are checked below).
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute("CREATE TEMP TABLE bench_alloc (kommunekode int, n int) ON COMMIT DROP")
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO bench_alloc VALUES (%s, %s)", sorted(per.items()))
            # Secondary indexes are dropped for the load and built again after it.
            indexes = _drop_indexes(conn, shelters.table)
            conn.execute("SELECT setseed(%s)", [(cfg.seed % 1000) / 1000])
            conn.execute(_GENERATE.format(table=shelters.table),
                         {"seed": cfg.seed, "streets": list(STREETS),
                          "nstreets": len(STREETS), "bruger": BRUGER})
            log(f"generated the shelters ({time.monotonic() - started:.0f} s)")
            if cfg.areas:
                conn.execute("TRUNCATE bench_alloc")
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO bench_alloc VALUES (%s, %s)",
                                    sorted(_allocate(municipalities, cfg.areas).items()))
                indexes += _drop_indexes(conn, areas.table)
                conn.execute("SELECT setseed(%s)", [((cfg.seed + 1) % 1000) / 1000])
                statement, _ = area_sql(areas)
                conn.execute(statement, area_params(cfg, areas))
                log(f"generated the areas ({time.monotonic() - started:.0f} s)")
            log("indexing")
            for _, definition in indexes:
                conn.execute(definition)
            conn.execute("SET LOCAL session_replication_role = DEFAULT")
            for theme, wanted in ((shelters, cfg.count), (areas, cfg.areas)):
                _check_codes(conn, theme.table)
                n = _current(conn, theme.table)
                if n != wanted:
                    raise RuntimeError(f"generated {n} rows in ly.{theme.table}, wanted {wanted}")
            _check_areas(conn, areas)
            conn.execute("CREATE SCHEMA IF NOT EXISTS bench")
            conn.execute("DROP TABLE IF EXISTS bench.dataset")
            conn.execute("CREATE TABLE bench.dataset (n int, seed int, build_id uuid, "
                         "built timestamptz, migrations text, areas int, area_table text)")
            conn.execute("INSERT INTO bench.dataset VALUES (%s, %s, %s, now(), %s, %s, %s)",
                         [cfg.count, cfg.seed, uuid.uuid4(), digest, cfg.areas, areas.table])
    with psycopg.connect(cfg.db_url, autocommit=True) as conn:
        conn.execute(f"VACUUM (ANALYZE) ly.{shelters.table}")
        conn.execute(f"VACUUM (ANALYZE) ly.{areas.table}")
        conn.execute("ANALYZE")
        mark = _marker(conn)
    log(f"data set ready in {time.monotonic() - started:.0f} s")
    return mark


def _check_codes(conn: psycopg.Connection, table: str) -> None:
    """Each foreign key of the base table holds (the insert bypassed the FK triggers)."""
    rows = conn.execute(
        "SELECT c.conname, a.attname, cf.relname, af.attname FROM pg_constraint c "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
        "JOIN pg_class cf ON cf.oid = c.confrelid "
        "JOIN pg_attribute af ON af.attrelid = c.confrelid AND af.attnum = c.confkey[1] "
        "WHERE c.conrelid = %s::regclass AND c.contype = 'f'", [f"ly.{table}"]
    ).fetchall()
    for conname, col, ref_table, ref in rows:
        bad = conn.execute(
            f"SELECT count(*) FROM ly.{table} b WHERE b.{col} IS NOT NULL AND NOT EXISTS "
            f"(SELECT 1 FROM ly.{ref_table} d WHERE d.{ref} = b.{col})").fetchone()[0]
        if bad:
            raise RuntimeError(f"{bad} generated rows break {conname} ({col} -> {ref_table})")


def _check_areas(conn: psycopg.Connection, theme) -> None:
    """The generated areas are what `ly.as_multipolygon` would store: valid, non-empty 2D
    MultiPolygons in the theme's SRID, 0.5-50 ha, each in the municipality
    `ly.kommune_for_area` gives it, with the validity period in order."""
    bad, small, large, wrong_kommune = conn.execute(
        f"""SELECT count(*) FILTER (WHERE NOT ST_IsValid(geometri) OR ST_IsEmpty(geometri)
                                     OR GeometryType(geometri) <> 'MULTIPOLYGON'
                                     OR ST_SRID(geometri) <> %s),
                   count(*) FILTER (WHERE ST_Area(geometri) < %s),
                   count(*) FILTER (WHERE ST_Area(geometri) > %s),
                   count(*) FILTER (WHERE beliggenhedskommune IS NULL)
            FROM ly.{theme.table} WHERE bruger_id = %s""",
        [theme.srid, AREA_MIN_M2 * 0.999, AREA_MAX_M2 * 1.001, BRUGER]).fetchone()
    if bad or small or large or wrong_kommune:
        raise RuntimeError(f"generated areas: {bad} invalid, {small} under 0.5 ha, {large} "
                           f"over 50 ha, {wrong_kommune} without a municipality")
    sample = conn.execute(
        f"SELECT count(*) FILTER (WHERE beliggenhedskommune <> ly.kommune_for_area(geometri)) "
        f"FROM (SELECT * FROM ly.{theme.table} WHERE bruger_id = %s "
        f"ORDER BY versions_id LIMIT 500) s", [BRUGER]).fetchone()[0]
    if sample:
        raise RuntimeError(f"{sample} of 500 sampled areas are not in the municipality "
                           "ly.kommune_for_area gives them")


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
    """`<collection id>-<n>.gpkg` of the current shelter set (EPSG:25832, layer named after
    the collection), written with pyogrio and cached until the data set is rebuilt."""
    import geopandas as gpd
    import pandas as pd
    import pyogrio
    import shapely

    CACHE.mkdir(parents=True, exist_ok=True)
    theme = cfg.shelter_theme
    path = CACHE / f"{theme.collection_id}-{cfg.count}.gpkg"
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
        cur.execute(f"SELECT {cols}, ST_AsBinary(geometri) FROM ly.{theme.table} "
                    "WHERE systid_til IS NULL ORDER BY objekt_id")
        first = True
        while rows := cur.fetchmany(chunk):
            frame = pd.DataFrame([r[:-1] for r in rows], columns=list(GPKG_COLUMNS))
            for c in ("adr_id", "bbr_bygning_id"):
                frame[c] = frame[c].map(lambda v: None if v is None else str(v))
            frame["areal_m2"] = frame["areal_m2"].astype(float)
            geoms = shapely.from_wkb([bytes(r[-1]) for r in rows])
            gdf = gpd.GeoDataFrame(frame, geometry=geoms, crs="EPSG:25832")
            pyogrio.write_dataframe(gdf, path, layer=theme.collection_id, driver="GPKG",
                                    append=not first, geometry_type="Point")
            first = False
    stamp.write_text(json.dumps(wanted))
    log(f"{path.name}: {path.stat().st_size / 1e6:.0f} MB in {time.monotonic() - started:.0f} s")
    return path


if __name__ == "__main__":  # build or check the set alone: python -m bench.dataset [--quick]
    import sys

    c = Config(quick="--quick" in sys.argv, rebuild="--rebuild" in sys.argv)
    if c.quick:
        c.count, c.areas = QUICK_COUNT, QUICK_AREAS
    print(ensure(c))
