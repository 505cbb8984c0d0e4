"""Deterministic, plausible, synthetic demo registers for every theme, for demonstrations and
tests. Ly ships no school, venue or event data: every object here is invented, and says so
(its name ends in "(syntetisk)", its note reads "Syntetisk demodata ...", contact persons are
marked and their phone numbers start with 9999).

Each theme's descriptor names its generator (`Theme.demo`, "loaders.demo:<function>");
`load_demo` runs them all. Every generator takes `(conn, count=None, seed=DEFAULT_SEED,
replace=False)`, writes through the theme's current view as the demo user (`DEMO_BRUGER`),
so the demo data has history like any other data, and returns how many objects it wrote. A
register that already holds a theme's demo objects is left alone unless `replace`, which ends
their current versions (history kept) and writes the set anew. The same seed and count always
give the same register, down to the `objekt_id`s; dates are fixed relative to
`REFERENCE_DATE`, never today's.

- `shelters` (6101): spread over all municipalities in proportion to their population (so
  denser where people live), placed by PostGIS (`ST_GeneratePoints` with a fixed seed), and
  given types, capacities and attributes in plausible Danish proportions.
- `evacuation_centres` (6119): about one per 1-2 postal districts in every municipality (at
  least one each), a little way from the district's centre, with sleeping and eating places.
- `temporary_overnight_stays` (6120): about one per municipality (more where people live),
  near a district's centre, with past, current and future validity periods.
- `outdoor_events` (6121): areas of 0.5-50 ha a few kilometres from towns, each wholly inside
  one municipality, mostly in the summer of 2026.

A postal district's centre (`ST_PointOnSurface`) stands in for its town; a municipality
holding no district's centre (Christiansø) gets the point on its largest overlap with one.
"""

from __future__ import annotations

import csv
import importlib
import math
import random
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Callable, Iterable, Mapping

import psycopg
from psycopg import sql

from datamodel import themes as theme_registry
from datamodel.themes import Theme
from loaders.reference import DATA

POPULATION_CSV = DATA / "dk-population-by-municipality.csv"
NAMESPACE = uuid.UUID("6b1e7c1a-2f5d-4f3e-9a57-3c0f5d2a6101")
DEMO_BRUGER = "ly-demo"
DEFAULT_SEED = 6101
DEFAULT_SHELTERS = 3000
#: The fixed "today" of the demo's validity periods (past, current and future relative to it).
REFERENCE_DATE = date(2026, 6, 15)
#: Every synthetic object's note.
SYNTHETIC_NOTE = "Syntetisk demodata (Ly) - ikke et virkeligt sted eller arrangement"
#: Names of synthetic objects end in this.
SYNTHETIC_MARK = "(syntetisk)"

STREETS = (
    "Vestergade", "Østergade", "Nørregade", "Søndergade", "Storegade", "Kirkevej", "Skolevej",
    "Stationsvej", "Møllevej", "Bygaden", "Industrivej", "Parkvej", "Engvej", "Skovvej",
    "Strandvej", "Havnegade", "Torvet", "Ringvejen", "Banegårdsgade", "Grønnegade",
    "Algade", "Jernbanegade", "Rådhusstræde", "Nygade", "Tværgade", "Kongensgade",
    "Dronningensgade", "Fabriksvej", "Idrætsvej", "Birkevej", "Bøgevej", "Egevej", "Lindevej",
)

# (beskyt_rum_kode, share): sikringsrum dominate; betondækningsgrave are the public trench
# shelters inspected in 2026; a few are registered as other or unknown.
TYPE_SHARES = ((2, 0.55), (1, 0.20), (3, 0.20), (8, 0.03), (9, 0.02))


@dataclass(frozen=True)
class Municipality:
    kommunekode: int
    navn: str
    folketal: int


def _municipalities(conn: psycopg.Connection) -> list[Municipality]:
    population = {}
    with POPULATION_CSV.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            population[int(row["kommunekode"])] = int(row["folketal"])
    rows = conn.execute("SELECT kommunekode, navn FROM ly.kommune ORDER BY kommunekode").fetchall()
    return [Municipality(k, n, population.get(k, 100)) for k, n in rows]


def _allocate(municipalities: list[Municipality], count: int) -> dict[int, int]:
    """Shelters per municipality: at least 3 each (so every municipality has every kind over
    the set), the rest in proportion to population (largest remainders)."""
    base = {m.kommunekode: 3 for m in municipalities}
    rest = max(count - 3 * len(municipalities), 0)
    total = sum(m.folketal for m in municipalities)
    shares = {m.kommunekode: rest * m.folketal / total for m in municipalities}
    for code, share in shares.items():
        base[code] += int(share)
    leftover = count - sum(base.values())
    for code in sorted(shares, key=lambda c: shares[c] - int(shares[c]), reverse=True):
        if leftover <= 0:
            break
        base[code] += 1
        leftover -= 1
    return base


def _pick(rng: random.Random, shares) -> int:
    r, acc = rng.random(), 0.0
    for value, share in shares:
        acc += share
        if r < acc:
            return value
    return shares[-1][0]


def _attributes(rng: random.Random, kind: int, index: int, street: str, husnr: int,
                kommune: str) -> dict:
    """Plausible attribute values for one shelter of the given type."""
    a: dict = {
        "beskyt_rum_kode": kind,
        "oprindkode": _pick(rng, ((4, 0.5), (7, 0.3), (3, 0.1), (0, 0.1))),
        "statuskode": 3,
        "klargjort_kode": _pick(rng, ((0, 0.85), (3, 0.13), (1, 0.02))),
        "funktionsstatus_kode": _pick(rng, ((3, 0.9), (4, 0.05), (5, 0.05))),
        "egnethed_kode": 9,
        "vejnavn": street,
        "husnr": str(husnr),
        "noegle": f"demo-{index:06d}",
    }
    if kind == 2:  # sikringsrum: in a building, from BBR, owner's responsibility
        a.update(
            pladser=rng.choice((20, 30, 40, 50, 60, 80, 100, 120, 150, 200, 250, 300)),
            navn=f"Sikringsrum, {street} {husnr}",
            pladser_kilde_kode=1,
            off_kode=_pick(rng, ((2, 0.5), (3, 0.5))),
            beskyt_rum_anvendelse_kode=_pick(rng, ((2, 0.7), (1, 0.2), (3, 0.1))),
            trinfri_adgang_kode=_pick(rng, ((0, 0.6), (1, 0.2), (3, 0.2))),
        )
    elif kind == 1:  # offentligt beskyttelsesrum: municipal list
        a.update(
            pladser=rng.randrange(50, 1001, 10),
            navn=f"Offentligt beskyttelsesrum {street} {husnr}",
            pladser_kilde_kode=2,
            off_kode=_pick(rng, ((1, 0.3), (3, 0.7))),
            beskyt_rum_anvendelse_kode=_pick(rng, ((1, 0.3), (2, 0.5), (3, 0.2))),
            trinfri_adgang_kode=_pick(rng, ((0, 0.5), (1, 0.3), (2, 0.1), (3, 0.1))),
        )
    elif kind == 3:  # betondækningsgrav: free-standing trench shelter
        inspected = rng.random() < 0.4
        pladser = rng.choice((50, 50, 50, 100, 100, 150))
        a.update(
            pladser=pladser,
            navn=f"Betondækningsgrav {kommune} nr. {index % 1000}",
            undertype_kode=_pick(rng, ((1, 0.5), (2, 0.3), (3, 0.2))),
            pladser_kilde_kode=3 if inspected else 2,
            off_kode=_pick(rng, ((1, 0.2), (3, 0.8))),
            beskyt_rum_anvendelse_kode=_pick(rng, ((1, 0.7), (2, 0.15), (4, 0.15))),
            trinfri_adgang_kode=0,
        )
        if inspected:
            a["egnethed_kode"] = _pick(rng, ((1, 0.5), (2, 0.35), (3, 0.15)))
            a["pladser_verificeret"] = pladser if a["egnethed_kode"] != 3 else 0
    else:
        a.update(
            pladser=rng.randrange(10, 201, 5),
            navn=f"Beskyttelsesrum {street} {husnr}",
            pladser_kilde_kode=9,
            off_kode=3,
        )
    if kind in (1, 2):
        a["bbr_bygning_id"] = uuid.uuid5(NAMESPACE, f"bbr-{index}")
    a["areal_m2"] = round(a["pladser"] * rng.uniform(0.55, 0.75), 1)
    return a


# --- 6101: shelters ---------------------------------------------------------------------------


def shelters(conn: psycopg.Connection, count: int | None = None, seed: int = DEFAULT_SEED,
             replace: bool = False) -> int:
    """Write `count` (default 3000) demo shelters; returns how many were written (0 if the
    register already holds demo shelters and not `replace`). Needs the municipalities (and,
    for postal codes, the postal areas) loaded first."""
    count = DEFAULT_SHELTERS if count is None else count
    theme = theme_registry.get("beskyttelsesrum")
    municipalities = _municipalities(conn)
    if not municipalities:
        raise RuntimeError("no municipalities loaded; run `ly load-municipalities` first")
    per = _allocate(municipalities, count)
    rng = random.Random(seed)
    derived = {"postnr", "postnr_by"}  # from the postal-code area the point lies in
    columns = [f.name for f in theme.writable_fields if f.name not in derived]
    columns += ["objekt_id", "bruger_id"]
    insert = (
        f"INSERT INTO ly.{theme.current_view} ({', '.join(columns)}, postnr, postnr_by, "
        f"geometri) SELECT {', '.join(['%s'] * len(columns))}, p.postnr, p.navn, g.pt "
        "FROM (SELECT %s::geometry AS pt) g "
        "LEFT JOIN LATERAL (SELECT postnr, navn FROM ly.postnummer "
        "  WHERE ST_Intersects(geometri, g.pt) LIMIT 1) p ON TRUE"
    )
    written = 0
    with conn.transaction(), conn.cursor() as cur:
        if not _start(cur, theme, replace):
            return 0
        index = 0
        for m in municipalities:
            n = per[m.kommunekode]
            # ST_GeneratePoints may return a point or two short on multi-island areas.
            points = cur.execute(
                "SELECT (ST_Dump(ST_GeneratePoints(geometri, %s, %s))).geom FROM ly.kommune "
                "WHERE kommunekode = %s LIMIT %s",
                [n + 10, seed + m.kommunekode, m.kommunekode, n],
            ).fetchall()
            rows = []
            for (pt,) in points:
                kind = _pick(rng, TYPE_SHARES)
                street, husnr = rng.choice(STREETS), rng.randrange(1, 140)
                attrs = _attributes(rng, kind, index, street, husnr, m.navn)
                values = [attrs.get(c) for c in columns[:-2]]
                values += [uuid.uuid5(NAMESPACE, f"{seed}-{index}"), DEMO_BRUGER, pt]
                rows.append(values)
                index += 1
            cur.executemany(insert, rows)
            written += len(rows)
    return written


# --- what the other themes share --------------------------------------------------------------


def _start(cur: psycopg.Cursor, theme: Theme, replace: bool) -> bool:
    """Whether to write the theme's demo set: not if it is there already (unless `replace`,
    which first ends the current demo versions through the view, keeping their history)."""
    existing = cur.execute(f"SELECT count(*) FROM ly.{theme.current_view} WHERE bruger_id = %s",
                           [DEMO_BRUGER]).fetchone()[0]
    if existing and not replace:
        return False
    cur.execute(f"DELETE FROM ly.{theme.current_view} WHERE bruger_id = %s", [DEMO_BRUGER])
    return True


@dataclass(frozen=True)
class Town:
    """A postal district's centre, standing in for its town, in the municipality holding it."""

    kommunekode: int
    postnr: int | None
    postnr_by: str | None
    navn: str  # what objects near it are named after
    x: float
    y: float


_TOWNS_SQL = """
    WITH centre AS (
        SELECT postnr, navn, ST_PointOnSurface(geometri) AS pt FROM ly.postnummer
    ), assigned AS (
        SELECT DISTINCT ON (c.postnr) k.kommunekode, c.postnr, c.navn AS postnr_by,
               c.navn, c.pt
        FROM centre c JOIN ly.kommune k ON ST_Intersects(k.geometri, c.pt)
        ORDER BY c.postnr, k.kommunekode
    )
    SELECT kommunekode, postnr, postnr_by, navn, ST_X(pt), ST_Y(pt) FROM assigned
    UNION ALL
    SELECT k.kommunekode, o.postnr, o.navn, k.navn,
           ST_X(coalesce(o.pt, ST_PointOnSurface(k.geometri))),
           ST_Y(coalesce(o.pt, ST_PointOnSurface(k.geometri)))
    FROM ly.kommune k
    LEFT JOIN LATERAL (
        SELECT p.postnr, p.navn, ST_PointOnSurface(ST_Intersection(p.geometri, k.geometri)) AS pt
        FROM ly.postnummer p WHERE ST_Intersects(p.geometri, k.geometri)
        ORDER BY ST_Area(ST_Intersection(p.geometri, k.geometri)) DESC, p.postnr LIMIT 1
    ) o ON TRUE
    WHERE k.kommunekode NOT IN (SELECT kommunekode FROM assigned)
    ORDER BY 1, 2
"""


def _towns(conn: psycopg.Connection) -> dict[int, list[Town]]:
    """Every municipality's towns, by kommunekode, each list in postnr order."""
    towns: dict[int, list[Town]] = {}
    for k, postnr, postnr_by, navn, x, y in conn.execute(_TOWNS_SQL).fetchall():
        towns.setdefault(k, []).append(Town(k, postnr, postnr_by, navn, x, y))
    if not towns:
        raise RuntimeError("no municipalities loaded; run `ly load-municipalities` first")
    return towns


def _spread(weights: Mapping[int, float], total: int, minimum: int = 0) -> dict[int, int]:
    """`total` objects over the keys: `minimum` each, the rest in proportion to the weights
    (largest remainders, ties by key)."""
    out = {key: minimum for key in weights}
    rest = max(total - minimum * len(weights), 0)
    weight = sum(weights.values()) or 1.0
    shares = {key: rest * w / weight for key, w in weights.items()}
    for key, share in shares.items():
        out[key] += int(share)
    leftover = total - sum(out.values())
    for key in sorted(shares, key=lambda k: (-(shares[k] - int(shares[k])), k)):
        if leftover <= 0:
            break
        out[key] += 1
        leftover -= 1
    return out


def _choose_towns(rng: random.Random, towns: list[Town], n: int) -> list[Town]:
    """`n` of a municipality's towns, each once as far as they go."""
    if n <= len(towns):
        return rng.sample(towns, n)
    return towns + [rng.choice(towns) for _ in range(n - len(towns))]


def _offset(rng: random.Random, low: float, high: float) -> tuple[float, float]:
    d, a = rng.uniform(low, high), rng.uniform(0, 2 * math.pi)
    return d * math.cos(a), d * math.sin(a)


_PLACE_POINTS = """
    SELECT DISTINCT ON (c.i) c.i, c.pt
    FROM (SELECT i, attempt, last, kommunekode, postnr,
                 ST_SetSRID(ST_MakePoint(x, y), 25832) AS pt
          FROM unnest(%s::int[], %s::int[], %s::bool[], %s::int[], %s::int[], %s::float8[],
                      %s::float8[]) AS u(i, attempt, last, kommunekode, postnr, x, y)) c
    JOIN ly.kommune k ON k.kommunekode = c.kommunekode
    LEFT JOIN ly.postnummer p ON p.postnr = c.postnr
    WHERE c.last OR (ST_Contains(k.geometri, c.pt)
                     AND (p.postnr IS NULL OR ST_Contains(p.geometri, c.pt)))
    ORDER BY c.i, c.attempt
"""


def _place_points(cur: psycopg.Cursor, anchors: list[tuple[Town, float, float]]) -> list[str]:
    """A point for each (town, dx, dy): the town's centre moved by (dx, dy), or by a third of
    it, whichever first stays inside both the municipality and the postal district; else the
    centre itself. Returned as PostGIS geometry values, in the anchors' order."""
    cols: list[list] = [[] for _ in range(7)]
    for i, (town, dx, dy) in enumerate(anchors):
        for attempt, f in enumerate((1.0, 1 / 3, 0.0)):
            for col, v in zip(cols, (i, attempt, f == 0.0, town.kommunekode, town.postnr,
                                     town.x + f * dx, town.y + f * dy)):
                col.append(v)
    placed = dict(cur.execute(_PLACE_POINTS, cols).fetchall())
    return [placed[i] for i in range(len(anchors))]


def _insert(cur: psycopg.Cursor, theme: Theme, rows: list[dict]) -> int:
    """Write rows (attribute -> value, plus objekt_id and geometri) through the theme's current
    view as the demo user."""
    if not rows:
        return 0
    writable = {f.name for f in theme.writable_fields}
    columns = sorted({c for row in rows for c in row} - {"geometri", "objekt_id"})
    unknown = set(columns) - writable
    if unknown:
        raise ValueError(f"{theme!r}: the demo writes attributes it lacks: {sorted(unknown)}")
    columns += ["objekt_id", "bruger_id"]
    cur.executemany(
        f"INSERT INTO ly.{theme.current_view} ({', '.join(columns)}, geometri) "
        f"VALUES ({', '.join(['%s'] * len(columns))}, %s::geometry)",
        [[row.get(c) for c in columns[:-1]] + [DEMO_BRUGER, row["geometri"]] for row in rows])
    return len(rows)


def _object_id(theme: Theme, seed: int, index: int) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{theme.temakode}-{seed}-{index}")


def _rng(theme: Theme, seed: int) -> random.Random:
    return random.Random(f"ly-demo-{theme.temakode}-{seed}")


def _generic(rng: random.Random, theme: Theme, index: int) -> dict:
    """The FKG generic attributes of a synthetic object: mostly visible to every authority
    (3), some to the public (1), a few to the responsible one only (2)."""
    return {
        "oprindkode": _pick(rng, ((4, 0.5), (1, 0.2), (3, 0.2), (0, 0.1))),
        "statuskode": 3,
        "off_kode": _pick(rng, ((3, 0.6), (1, 0.3), (2, 0.1))),
        "noegle": f"demo-{theme.temakode}-{index:05d}",
        "note": SYNTHETIC_NOTE,
    }


FIRST_NAMES = ("Anne", "Mette", "Lars", "Søren", "Camilla", "Jens", "Louise", "Peter", "Maria",
               "Henrik", "Sofie", "Mads", "Ida", "Niels", "Julie", "Rasmus", "Hanne", "Ole")
LAST_NAMES = ("Jensen", "Nielsen", "Hansen", "Pedersen", "Andersen", "Christensen", "Larsen",
              "Sørensen", "Rasmussen", "Petersen", "Madsen", "Kristensen")


def _contact(rng: random.Random, block: int, index: int) -> tuple[str, int]:
    """A synthetic contact person and an obviously fake phone number (9999bnnn)."""
    person = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)} {SYNTHETIC_MARK}"
    return person, 99990000 + (block * 1000 + index) % 10000


def _street(rng: random.Random) -> tuple[str, str]:
    return rng.choice(STREETS), str(rng.randrange(1, 140))


# --- 6119: evacuation centres -----------------------------------------------------------------

# (kind of building, share, sleeping places low-high)
CENTRE_KINDS = (
    ("Hallen", 0.30, (100, 600)),
    ("Idrætscenter", 0.20, (200, 1200)),
    ("Skole", 0.25, (80, 400)),
    ("Kulturhus", 0.10, (50, 300)),
    ("Fritidscenter", 0.08, (40, 200)),
    ("Forsamlingshus", 0.07, (30, 120)),
)


def evacuation_centres(conn: psycopg.Connection, count: int | None = None,
                       seed: int = DEFAULT_SEED, replace: bool = False) -> int:
    """Synthetic evacuation centres: `count` (default: one per 1.5 postal districts), at least
    one in every municipality, the rest by the number of districts, each within 900 m of a
    district's centre and inside the district and the municipality."""
    theme = theme_registry.get("evakueringscenter")
    towns = _towns(conn)
    n_towns = sum(len(t) for t in towns.values())
    total = round(n_towns / 1.5) if count is None else count
    per = _spread({k: len(t) for k, t in towns.items()}, total,
                  minimum=1 if total >= len(towns) else 0)
    rng = _rng(theme, seed)
    anchors, rows = [], []
    for k in sorted(towns):
        for town in _choose_towns(rng, towns[k], per[k]):
            index = len(rows)
            kind = rng.choices([c[0] for c in CENTRE_KINDS], [c[1] for c in CENTRE_KINDS])[0]
            low, high = next(c[2] for c in CENTRE_KINDS if c[0] == kind)
            sleep = rng.randrange(low, high + 1, 10)
            street, husnr = _street(rng)
            row = _generic(rng, theme, index) | {
                "evakucenter_ref": index + 1,
                "evakucenter": f"{town.navn} {kind} {SYNTHETIC_MARK}",
                "vejnavn": street, "husnr": husnr,
                "postnr": town.postnr, "postnr_by": town.postnr_by,
                "funktionsstatus_kode": _pick(rng, ((3, 0.9), (1, 0.05), (4, 0.05))),
                "indkvartering_kode": _pick(rng, ((1, 0.92), (2, 0.08))),
                "sovepladser": sleep,
                "forplejning_kode": _pick(rng, ((1, 0.8), (2, 0.1), (3, 0.1))),
                "spisepladser": min(5000, max(10, 10 * round(sleep * rng.uniform(0.06, 0.12)))),
                "beredskabsplan_kode": _pick(rng, ((1, 0.7), (0, 0.2), (3, 0.1))),
                "objekt_id": _object_id(theme, seed, index),
            }
            rows.append(row)
            anchors.append((town, *_offset(rng, 100, 900)))
    with conn.transaction(), conn.cursor() as cur:
        if not _start(cur, theme, replace):
            return 0
        for row, geom in zip(rows, _place_points(cur, anchors)):
            row["geometri"] = geom
        return _insert(cur, theme, rows)


# --- 6120: temporary overnight stays ----------------------------------------------------------

STAY_PLACES = ("Skole", "Idrætshal", "Efterskole", "Hallerne", "Spejderhus", "Kulturcenter",
               "Friskole", "Ungdomsskole")


def _stay_period(rng: random.Random) -> tuple[date, date | None]:
    """A past, current or future stay relative to REFERENCE_DATE, or an open-ended one."""
    when = _pick(rng, ((0, 0.3), (1, 0.25), (2, 0.35), (3, 0.1)))
    length = timedelta(days=rng.choice((1, 2, 2, 3, 3, 4, 6, 13, 30, 60)))
    ref = REFERENCE_DATE
    if when == 0:  # ended before the reference date (from 2026-01-01)
        end = ref - timedelta(days=rng.randrange(1, 150))
        return max(end - length, date(2026, 1, 1)), end
    if when == 1:  # running on the reference date
        start = ref - timedelta(days=rng.randrange(0, length.days + 1))
        return start, max(start + length, ref)
    if when == 2:  # starting after it (until 2026-12-31)
        start = ref + timedelta(days=rng.randrange(1, 180))
        return start, min(start + length, date(2026, 12, 31))
    return ref - timedelta(days=rng.randrange(30, 400)), None  # a standing arrangement


def temporary_overnight_stays(conn: psycopg.Connection, count: int | None = None,
                              seed: int = DEFAULT_SEED, replace: bool = False) -> int:
    """Synthetic temporary overnight stays (schools and halls where 10-1000 people sleep for
    a tournament, a camp or a course): `count` (default: one per municipality) spread by the
    square root of the population, each within 1.5 km of a district's centre."""
    theme = theme_registry.get("midlertidig_overnatning")
    towns = _towns(conn)
    population = {m.kommunekode: m.folketal for m in _municipalities(conn)}
    total = len(towns) if count is None else count
    per = _spread({k: math.sqrt(population.get(k, 100)) for k in towns}, total)
    rng = _rng(theme, seed)
    anchors, rows = [], []
    for k in sorted(towns):
        for _ in range(per[k]):
            index = len(rows)
            town = rng.choice(towns[k])
            people = (rng.randrange(20, 401, 10) if rng.random() < 0.85
                      else rng.randrange(400, 1001, 50))
            awake = (_pick(rng, ((1, 0.9), (0, 0.1))) if people >= 150
                     else _pick(rng, ((1, 0.5), (0, 0.45), (3, 0.05))))
            gyldig_fra, gyldig_til = _stay_period(rng)
            person, phone = _contact(rng, 1, index)
            street, husnr = _street(rng)
            row = _generic(rng, theme, index) | {
                "institutionsnavn": f"{town.navn} {rng.choice(STAY_PLACES)} {SYNTHETIC_MARK}",
                "antal_personer": people,
                "mid_ov_person": person, "mid_ov_tlfnr": phone,
                "fast_vaagen_vagt_kode": awake,
                "vejnavn": street, "husnr": husnr,
                "postnr": town.postnr, "postnr_by": town.postnr_by,
                "gyldig_fra": gyldig_fra, "gyldig_til": gyldig_til,
                "objekt_id": _object_id(theme, seed, index),
            }
            rows.append(row)
            anchors.append((town, *_offset(rng, 100, 1500)))
    with conn.transaction(), conn.cursor() as cur:
        if not _start(cur, theme, replace):
            return 0
        for row, geom in zip(rows, _place_points(cur, anchors)):
            row["geometri"] = geom
        return _insert(cur, theme, rows)


# --- 6121: larger outdoor events --------------------------------------------------------------

# sua_kode: (share, area in ha, expected people, days, name patterns, organiser,
#            (forsamlingstelt, cirkustelt, camping, salg): probability of "Ja")
EVENT_KINDS = {
    1: (0.16, (5, 50), (2000, 60000), (3, 5), ("{town} Festival", "Festival i {town}"),
        "{town} Festivalforening", (0.9, 0.0, 0.8, 0.9)),
    2: (0.10, (5, 30), (3000, 40000), (2, 3), ("Dyrskue i {town}", "{town} Dyrskue"),
        "{town} Landboforening", (0.9, 0.0, 0.2, 0.9)),
    3: (0.14, (0.5, 3), (150, 1500), (1, 3), ("Byfest i {town}", "Sommerfest {town}"),
        "{town} Borgerforening", (1.0, 0.0, 0.1, 0.5)),
    4: (0.08, (0.5, 2), (200, 1500), (1, 3), ("Cirkus i {town}", "Cirkusdage {town}"),
        "Cirkus Demo ApS", (0.0, 1.0, 0.0, 0.6)),
    5: (0.14, (1, 10), (1000, 30000), (1, 2), ("Sommerkoncert {town}", "{town} Open Air"),
        "{town} Musikforening", (0.3, 0.0, 0.2, 0.9)),
    6: (0.10, (5, 40), (300, 8000), (5, 10), ("Spejderlejr ved {town}", "{town} Sommerlejr"),
        "{town} Spejdergruppe", (0.5, 0.0, 1.0, 0.3)),
    7: (0.14, (1, 8), (1000, 20000), (2, 4), ("Kræmmermarked {town}", "{town} Marked"),
        "{town} Handelsstandsforening", (0.4, 0.0, 0.3, 1.0)),
    8: (0.08, (2, 15), (200, 3000), (7, 21), ("Sommercamping {town}", "Teltplads {town}"),
        "{town} Idrætsforening", (0.2, 0.0, 1.0, 0.2)),
    98: (0.06, (0.5, 5), (200, 5000), (1, 3), ("Sportsdag {town}", "Friluftsdag {town}"),
         "{town} Idrætsforening", (0.5, 0.0, 0.1, 0.5)),
}
MIN_EVENT_M2, MAX_EVENT_M2 = 5_000, 500_000


def _shape(rng: random.Random, area_m2: float) -> list[tuple[float, float]]:
    """A simple polygon of `area_m2` around (0, 0): a rotated rectangle or a star-shaped blob
    of 8-24 vertices (convex or star-shaped about its centre, hence valid). Open ring."""
    if rng.random() < 0.4:
        aspect = rng.uniform(1.0, 3.0)
        w = math.sqrt(area_m2 * aspect)
        h = area_m2 / w
        corners = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
    else:
        n = rng.randrange(8, 25)
        step = 2 * math.pi / n
        angles = [i * step + rng.uniform(-0.3, 0.3) * step for i in range(n)]
        radii = [rng.uniform(0.85, 1.15) for _ in range(n)]
        unit = 0.5 * sum(radii[i] * radii[(i + 1) % n] *
                         math.sin((angles[(i + 1) % n] - angles[i]) % (2 * math.pi))
                         for i in range(n))
        scale = math.sqrt(area_m2 / unit)
        corners = [(scale * r * math.cos(a), scale * r * math.sin(a))
                   for r, a in zip(radii, angles)]
    turn = rng.uniform(0, math.pi)
    c, s = math.cos(turn), math.sin(turn)
    return [(x * c - y * s, x * s + y * c) for x, y in corners]


def _wkt(ring: list[tuple[float, float]], cx: float, cy: float, factor: float = 1.0) -> str:
    pts = [f"{cx + factor * x:.2f} {cy + factor * y:.2f}" for x, y in ring + ring[:1]]
    return f"MULTIPOLYGON((({', '.join(pts)})))"


def _event_period(rng: random.Random, days: tuple[int, int], sua: int) -> tuple[date, date]:
    """Mostly in the summer of 2026 (June-August), some in spring or autumn, Christmas
    markets in December."""
    length = rng.randint(*days)
    season = _pick(rng, ((0, 0.85), (1, 0.07), (2, 0.08)))
    if season == 0:
        start = date(2026, 6, 1) + timedelta(days=rng.randrange(0, 92 - length + 1))
    elif season == 1:
        start = date(2026, 4, 15) + timedelta(days=rng.randrange(0, 46))
    elif sua == 7:
        start = date(2026, 11, 27) + timedelta(days=rng.randrange(0, 21))
    else:
        start = date(2026, 9, 1) + timedelta(days=rng.randrange(0, 50))
    return start, start + timedelta(days=length - 1)


_PLACE_AREAS = """
    SELECT DISTINCT ON (c.i) c.i, c.g, q.postnr, q.navn
    FROM (SELECT i, attempt, kommunekode, ST_GeomFromText(wkt, 25832) AS g
          FROM unnest(%s::int[], %s::int[], %s::int[], %s::text[])
               AS u(i, attempt, kommunekode, wkt)) c
    JOIN ly.kommune k ON k.kommunekode = c.kommunekode AND ST_Within(c.g, k.geometri)
    LEFT JOIN LATERAL (SELECT postnr, navn FROM ly.postnummer
                       WHERE ST_Intersects(geometri, ST_PointOnSurface(c.g))
                       ORDER BY postnr LIMIT 1) q ON TRUE
    ORDER BY c.i, c.attempt
"""


def _place_areas(cur: psycopg.Cursor, candidates: list[list[tuple[int, str]]]
                 ) -> dict[int, tuple[str, int | None, str | None]]:
    """For each event's candidates ((kommunekode, wkt), best first): the first wholly inside
    its municipality, with the postal district at its heart; events with none are left out.
    (The first candidates are tried first: most fit.)"""
    placed: dict[int, tuple[str, int | None, str | None]] = {}
    for first in (True, False):
        cols: list[list] = [[], [], [], []]
        for i, cands in enumerate(candidates):
            if i in placed:
                continue
            for attempt, (k, wkt) in enumerate(cands[:1] if first else cands[1:]):
                for col, v in zip(cols, (i, attempt, k, wkt)):
                    col.append(v)
        placed |= {i: (g, postnr, navn) for i, g, postnr, navn in cur.execute(_PLACE_AREAS, cols)}
    return placed


def outdoor_events(conn: psycopg.Connection, count: int | None = None,
                   seed: int = DEFAULT_SEED, replace: bool = False) -> int:
    """Synthetic larger outdoor events: `count` (default: two per municipality) spread by the
    number of towns, each an area of 0.5-50 ha 0.6-2.5 km from a town, wholly inside its
    municipality (moved closer or made smaller until it is; left out if it never is)."""
    theme = theme_registry.get("stoerre_udendoers_arrangementer")
    towns = _towns(conn)
    total = 2 * len(towns) if count is None else count
    per = _spread({k: len(t) for k, t in towns.items()}, total)
    rng = _rng(theme, seed)
    kinds = sorted(EVENT_KINDS)
    drafts, candidates = [], []
    for k in sorted(towns):
        for town in _choose_towns(rng, towns[k], per[k]):
            sua = rng.choices(kinds, [EVENT_KINDS[s][0] for s in kinds])[0]
            _, (lo, hi), (p_lo, p_hi), days, names, organiser, kit = EVENT_KINDS[sua]
            area = min(MAX_EVENT_M2, max(MIN_EVENT_M2, 10_000 * rng.uniform(lo, hi)))
            ring = _shape(rng, area)
            dist, angle = rng.uniform(600, 2500), rng.uniform(0, 2 * math.pi)
            cands = []
            for turn in (0, math.pi / 2, math.pi, 3 * math.pi / 2):
                for f in (1.0, 0.5):
                    cx = town.x + f * dist * math.cos(angle + turn)
                    cy = town.y + f * dist * math.sin(angle + turn)
                    cands.append((k, _wkt(ring, cx, cy)))
            cands.append((k, _wkt(ring, town.x, town.y)))
            small = math.sqrt(max(MIN_EVENT_M2 * 1.05, area / 4) / area)
            cands.append((k, _wkt(ring, town.x, town.y, small)))
            candidates.append(cands)
            gyldig_fra, gyldig_til = _event_period(rng, days, sua)
            people = rng.randrange(p_lo, p_hi + 1, 50 if p_hi > 2000 else 10)
            flags = [1 if rng.random() < p else 0 for p in kit]
            street, husnr = _street(rng)
            drafts.append((town, sua, names, organiser, people, flags, street, husnr,
                           gyldig_fra, gyldig_til))
    with conn.transaction(), conn.cursor() as cur:
        if not _start(cur, theme, replace):
            return 0
        placed = _place_areas(cur, candidates)
        rows = []
        for i, (town, sua, names, organiser, people, flags, street, husnr, gyldig_fra,
                gyldig_til) in enumerate(drafts):
            if i not in placed:
                continue
            geom, postnr, postnr_by = placed[i]
            index = len(rows)
            person, phone = _contact(rng, 5, index)
            name = rng.choice(names).format(town=town.navn)
            where = f"{postnr} {postnr_by}" if postnr else town.navn
            rows.append(_generic(rng, theme, index) | {
                "sua_kode": sua,
                "arrangement": f"{name} 2026 {SYNTHETIC_MARK}",
                "forsamlingstelt_kode": flags[0], "cirkustelt_kode": flags[1],
                "campingomraade_kode": flags[2], "salgsomraade_kode": flags[3],
                "arrangoer": f"{organiser.format(town=town.navn)} {SYNTHETIC_MARK}",
                "adr_i_tekst": f"Arealet ved {street}, {where}",
                "sua_person": person, "sua_tlfnr": phone,
                "antal_personer": people,
                "vejnavn": street, "husnr": husnr,
                "postnr": postnr, "postnr_by": postnr_by,
                "gyldig_fra": gyldig_fra, "gyldig_til": gyldig_til,
                "objekt_id": _object_id(theme, seed, index),
                "geometri": geom,
            })
        return _insert(cur, theme, rows)


# --- every theme ------------------------------------------------------------------------------

Generator = Callable[..., int]


def generator(theme: Theme) -> Generator | None:
    """The theme's demo generator (`Theme.demo`, "module:function"), or None if it has none."""
    if not theme.demo:
        return None
    module, _, function = theme.demo.partition(":")
    return getattr(importlib.import_module(module), function)


def load_themes(conn: psycopg.Connection, *, counts: Mapping[str, int | None] | None = None,
                seed: int = DEFAULT_SEED, replace: bool = False,
                themes: Iterable[str | Theme] | None = None) -> dict[str, int]:
    """Run the demo generator of every registered theme (or of `themes`, collection ids or
    themes), in temakode order; `counts` by collection id (a theme not named: its generator's
    default). Returns the objects written by collection id (0: already there). Each theme is
    its own transaction. Needs the municipalities and postal areas loaded first."""
    counts = counts or {}
    wanted = None if themes is None else {
        t.collection_id if isinstance(t, Theme) else t for t in themes}
    if wanted is not None:
        unknown = wanted - {t.collection_id for t in theme_registry.all_themes()}
        if unknown:
            raise KeyError(f"no such theme: {', '.join(sorted(unknown))}")
    written: dict[str, int] = {}
    for theme in theme_registry.all_themes():
        if wanted is not None and theme.collection_id not in wanted:
            continue
        fn = generator(theme)
        if fn is None:
            continue
        written[theme.collection_id] = fn(conn, count=counts.get(theme.collection_id),
                                          seed=seed, replace=replace)
        if written[theme.collection_id]:
            # Fresh statistics: without them a page of a few thousand rows is planned as if
            # the table were empty (an index scan per row, seconds instead of milliseconds).
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier("ly", theme.table)))
            conn.commit()
    return written


def load_demo(conn: psycopg.Connection, count: int = DEFAULT_SHELTERS, seed: int = DEFAULT_SEED,
              replace: bool = False, themes: Iterable[str | Theme] | None = None) -> int:
    """Load the demo register of every theme (or of `themes`): `count` objects of the default
    theme (the shelters), every other theme at its generator's own scale. Returns how many
    objects of the default theme were written (0 if already there and not `replace`);
    `load_themes` reports every theme.
    """
    written = load_themes(conn, counts={theme_registry.default().collection_id: count},
                          seed=seed, replace=replace, themes=themes)
    return written.get(theme_registry.default().collection_id, 0)
