"""Load reference data: municipalities (DAGI 1:500 000) and postal-code areas.

Both are shipped in `loaders/data/` (sources in its README). Loading is idempotent: rows are
upserted in one transaction, so a killed load leaves the previous data in place.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import psycopg

DATA = Path(__file__).parent / "data"
MUNICIPALITIES = DATA / "dk-municipalities-dagi-500k.geojson"
POSTAL_CODES = DATA / "dk-postal-codes-dagi-500k.geojson"
KOMMUNER_CSV = DATA / "kommuner.csv"

# GeoJSON polygons (CRS84, with a dummy Z) of one area -> one 2D MultiPolygon in EPSG:25832.
_AREA_SQL = """
    SELECT ST_Multi(ST_CollectionExtract(ST_MakeValid(
        ST_Transform(ST_Union(ST_Force2D(ST_SetSRID(ST_GeomFromGeoJSON(g), 4326))), 25832)
    ), 3))
    FROM unnest(%s::text[]) g
"""


def _polygons_by(path: Path, key: str) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for feature in json.loads(path.read_text(encoding="utf-8"))["features"]:
        grouped[feature["properties"][key]].append(json.dumps(feature["geometry"]))
    return grouped


def load_municipalities(conn: psycopg.Connection) -> int:
    """Upsert the 98 municipalities (and Christiansø) with names and CVR numbers."""
    names = {}
    with KOMMUNER_CSV.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            names[int(row["kommunekode"])] = (row["navn"], int(row["cvr_kode"]))
    polygons = _polygons_by(MUNICIPALITIES, "lau_1")
    with conn.transaction(), conn.cursor() as cur:
        for code, geoms in sorted(polygons.items()):
            navn, cvr = names[int(code)]
            cur.execute(
                f"""INSERT INTO ly.kommune (kommunekode, navn, cvr_kode, geometri)
                    VALUES (%s, %s, %s, ({_AREA_SQL}))
                    ON CONFLICT (kommunekode) DO UPDATE
                    SET navn = EXCLUDED.navn, cvr_kode = EXCLUDED.cvr_kode,
                        geometri = EXCLUDED.geometri""",
                [int(code), navn, cvr, geoms],
            )
    return len(polygons)


def load_postal_codes(conn: psycopg.Connection) -> int:
    """Upsert the postal-code areas.

    Central Copenhagen and Frederiksberg are single areas for a range of street postcodes
    (`1000-1499`); such an area is stored under the range's first code.
    """
    features = json.loads(POSTAL_CODES.read_text(encoding="utf-8"))["features"]
    label = {f["properties"]["postal_code"]: f["properties"]["label_dk"] for f in features}
    polygons = _polygons_by(POSTAL_CODES, "postal_code")
    with conn.transaction(), conn.cursor() as cur:
        for code, geoms in sorted(polygons.items()):
            cur.execute(
                f"""INSERT INTO ly.postnummer (postnr, navn, geometri)
                    VALUES (%s, %s, ({_AREA_SQL}))
                    ON CONFLICT (postnr) DO UPDATE
                    SET navn = EXCLUDED.navn, geometri = EXCLUDED.geometri""",
                [int(code.split("-")[0]), label[code], geoms],
            )
    return len(polygons)
