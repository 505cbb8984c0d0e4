"""A deterministic, realistic synthetic register for demonstrations and tests.

Shelters are spread over all municipalities in proportion to their population (so denser
where people live), placed by PostGIS (`ST_GeneratePoints` with a fixed seed), and given
types, capacities and attributes in plausible Danish proportions. The same seed and count
always give the same register, down to the `objekt_id`s. Every shelter is written through
the versioned view, so the demo data has history like any other data.
"""

from __future__ import annotations

import csv
import random
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

from datamodel.fields import WRITABLE_FIELDS
from loaders.reference import DATA

POPULATION_CSV = DATA / "dk-population-by-municipality.csv"
NAMESPACE = uuid.UUID("6b1e7c1a-2f5d-4f3e-9a57-3c0f5d2a6101")
DEMO_BRUGER = "ly-demo"

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


def load_demo(conn: psycopg.Connection, count: int = 3000, seed: int = 6101,
              replace: bool = False) -> int:
    """Write `count` demo shelters; returns how many were written.

    A register that already holds demo shelters is left alone unless `replace`, which ends
    their current versions (history kept) and writes the set anew. Needs the municipalities
    (and, for postal codes, the postal areas) loaded first.
    """
    municipalities = _municipalities(conn)
    if not municipalities:
        raise RuntimeError("no municipalities loaded; run `ly load-municipalities` first")
    per = _allocate(municipalities, count)
    rng = random.Random(seed)
    derived = {"postnr", "postnr_by"}  # from the postal-code area the point lies in
    columns = [f.name for f in WRITABLE_FIELDS if f.name not in derived]
    columns += ["objekt_id", "bruger_id"]
    insert = (
        f"INSERT INTO ly.t_6101_beskyt_rum ({', '.join(columns)}, postnr, postnr_by, geometri) "
        f"SELECT {', '.join(['%s'] * len(columns))}, p.postnr, p.navn, g.pt "
        "FROM (SELECT %s::geometry AS pt) g "
        "LEFT JOIN LATERAL (SELECT postnr, navn FROM ly.postnummer "
        "  WHERE ST_Intersects(geometri, g.pt) LIMIT 1) p ON TRUE"
    )
    written = 0
    with conn.transaction(), conn.cursor() as cur:
        existing = cur.execute("SELECT count(*) FROM ly.t_6101_beskyt_rum WHERE bruger_id = %s",
                               [DEMO_BRUGER]).fetchone()[0]
        if existing and not replace:
            return 0
        cur.execute("DELETE FROM ly.t_6101_beskyt_rum WHERE bruger_id = %s", [DEMO_BRUGER])
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
