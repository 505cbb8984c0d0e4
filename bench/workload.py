"""The requests of a run, fixed by the seed and the data set: municipality-sized boxes around
real Danish towns, ids sampled from the table, and tiles over the same towns.

Towns: the postal-code areas are named after the towns they serve; a seeded sample of them
gives the centres (a point on each area's surface). Each box is 20 km x 20 km around its
centre (400 km², the size of a typical Danish municipality), given in CRS84. The boxes and
tiles depend on the seed and the postal areas only, so the shelter and the area scenarios ask
for the same boxes and tiles, in every build of the set.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import psycopg

from bench.config import Config

N_BOXES = 200
N_IDS = 1000
BOX_HALF_M = 10_000
TILE_ZOOMS = tuple(range(8, 15))
#: The CQL2 property filter of the filter scenario (basic CQL2, understood by every server).
CQL_FILTER = "beskyt_rum_kode=1 AND pladser>=200"


@dataclass(frozen=True)
class Town:
    postnr: int
    name: str
    lon: float
    lat: float
    bbox: tuple[float, float, float, float]  # CRS84
    matches: int  # current shelters in the box
    filter_matches: int  # ... that also pass CQL_FILTER
    area_matches: int = 0  # current areas of the area theme intersecting the box
    area_box_matches: int = 0  # ... whose bounding box meets it (tipg's bbox: `&&` only)


@dataclass
class Workload:
    towns: list[Town]
    ids: list[str]

    def tiles(self, z: int) -> list[tuple[int, int, int]]:
        """Distinct WebMercatorQuad tiles (z, x, y) holding the town centres, in town order."""
        seen: dict[tuple[int, int, int], None] = {}
        for t in self.towns:
            seen[(z, *lonlat_to_tile(t.lon, t.lat, z))] = None
        return list(seen)


def lonlat_to_tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2 ** z
    x = int((lon + 180.0) / 360.0 * n)
    lat_r = math.radians(lat)
    y = int((1.0 - math.asinh(math.tan(lat_r)) / math.pi) / 2.0 * n)
    return x, y


def build(cfg: Config) -> Workload:
    shelter_table, area_table = cfg.shelter_theme.table, cfg.area_theme.table
    with psycopg.connect(cfg.db_url) as conn:
        areas = conn.execute(
            "SELECT postnr, navn, ST_X(c), ST_Y(c) FROM "
            "(SELECT postnr, navn, ST_PointOnSurface(geometri) c FROM ly.postnummer) p "
            "ORDER BY postnr").fetchall()
        rng = random.Random(cfg.seed)
        chosen = sorted(rng.sample(areas, min(N_BOXES, len(areas))), key=lambda a: a[0])
        rng.shuffle(chosen)
        towns = []
        for postnr, name, x, y in chosen:
            row = conn.execute(
                """SELECT ST_X(c), ST_Y(c), ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b)
                   FROM (SELECT ST_Transform(ST_SetSRID(ST_MakePoint(%(x)s, %(y)s), 25832), 4326) c,
                                ST_Transform(ST_MakeEnvelope(%(x)s - %(h)s, %(y)s - %(h)s,
                                             %(x)s + %(h)s, %(y)s + %(h)s, 25832), 4326) b) q""",
                {"x": x, "y": y, "h": BOX_HALF_M}).fetchone()
            lon, lat = row[0], row[1]
            bbox = tuple(round(v, 5) for v in row[2:])
            box = "ST_Transform(ST_MakeEnvelope(%s, %s, %s, %s, 4326), 25832)"
            counts = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE beskyt_rum_kode = 1 AND pladser >= 200) "
                f"FROM ly.{shelter_table} WHERE systid_til IS NULL "
                f"AND ST_Intersects(geometri, {box})",
                list(bbox)).fetchone()
            in_box, near_box = conn.execute(
                "SELECT count(*) FILTER (WHERE ST_Intersects(geometri, e)), count(*) "
                f"FROM ly.{area_table}, {box} e WHERE systid_til IS NULL AND geometri && e",
                list(bbox)).fetchone()
            towns.append(Town(postnr, name, lon, lat, bbox, counts[0], counts[1], in_box,
                              near_box))
        ids = [str(r[0]) for r in conn.execute(
            f"SELECT objekt_id FROM ly.{shelter_table} WHERE systid_til IS NULL "
            "ORDER BY md5(objekt_id::text || %s) LIMIT %s", [str(cfg.seed), N_IDS])]
    return Workload(towns=towns, ids=ids)
