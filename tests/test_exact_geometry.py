"""Exact geometry: a bbox decides in its own CRS, and output coordinates round-trip.

Shelters are placed a hair's breadth (1e-9 to 1e-6 degrees, or 0.1 mm to 10 cm in a metric
CRS) inside and outside every edge of a box in CRS84, EPSG:4326 (lat,lon), EPSG:3857 and
EPSG:25832, half-way between the vertices of the densified envelope where its chords sag
most; the items of each box must be exactly the shelters whose stored point, transformed to
the box's CRS by PostGIS, lies within the box's edges by numeric comparison. Then every demo
shelter read in each output CRS and transformed back lies within 1 mm of where it is stored.
"""

from __future__ import annotations

import math
import re

import pytest
from fastapi.testclient import TestClient

from datamodel import themes
from service.app import create_app
from tests.conftest import ADMIN_HEADERS, DEMO_COUNT, ITEMS, fresh_database, make_settings, query

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG = "http://www.opengis.net/def/crs/EPSG/0/{}"
THEME = themes.default()
R_MERCATOR = 6378137.0


def _mercator(lon: float, lat: float) -> tuple[float, float]:
    return (R_MERCATOR * math.radians(lon),
            R_MERCATOR * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)))


#: name -> (bbox-crs URI, srid, box as (x1, y1, x2, y2) in PostGIS axis order (x = lon),
#: offsets from the edges, positions along each edge as fractions). Geographic boxes are
#: 0.2 x 0.1 degrees: the envelope's 0.01 degree segments have their middles at the
#: fractions given.
BOXES = {
    "crs84": (CRS84, 4326, (11.9, 55.4, 12.1, 55.5), (1e-9, 1e-8, 1e-7, 1e-6),
              ((0.175, 0.525, 0.875), (0.25, 0.55, 0.85))),
    "epsg4326": (EPSG.format(4326), 4326, (9.0, 56.1, 9.2, 56.2), (1e-9, 1e-8, 1e-7, 1e-6),
                 ((0.175, 0.525, 0.875), (0.25, 0.55, 0.85))),
    "epsg3857": (EPSG.format(3857), 3857, (*_mercator(10.0, 55.3), *_mercator(10.2, 55.4)),
                 (1e-4, 1e-3, 1e-2, 1e-1), ((0.23, 0.5, 0.77), (0.23, 0.5, 0.77))),
    "epsg25832": (EPSG.format(25832), 25832, (530000.0, 6170000.0, 545000.0, 6180000.0),
                  (1e-4, 1e-3, 1e-2, 1e-1), ((0.23, 0.5, 0.77), (0.23, 0.5, 0.77))),
}


def _edge_points(name: str) -> list[tuple[str, float, float, bool]]:
    """(noegle, x, y, meant to be inside) near every edge of a box, in its CRS (x = lon)."""
    _, _, (x1, y1, x2, y2), offsets, (along_x, along_y) = BOXES[name]
    out = []
    for d in offsets:
        for inside in (True, False):
            s = d if inside else -d  # towards the inside of the box
            for i, f in enumerate(along_y):
                y = y1 + f * (y2 - y1)
                out.append((f"left {d} {i}", x1 + s, y, inside))
                out.append((f"right {d} {i}", x2 - s, y, inside))
            for i, f in enumerate(along_x):
                x = x1 + f * (x2 - x1)
                out.append((f"bottom {d} {i}", x, y1 + s, inside))
                out.append((f"top {d} {i}", x, y2 - s, inside))
    return [(f"exact {name} {n} {'in' if inside else 'out'}", x, y, inside)
            for n, x, y, inside in out]


@pytest.fixture(scope="module")
def edge_db(template_db):
    """The demo register and, for every box, the shelters near its edges."""
    for url in fresh_database(template_db):
        _place_edge_points(url)
        yield url


def _place_edge_points(url: str) -> None:
    (template,) = query(url, f"SELECT objekt_id FROM ly.{THEME.current_view} "
                             "ORDER BY objekt_id LIMIT 1")[0]
    cols = ", ".join(f.name for f in THEME.writable_fields if f.name != "noegle")
    for name, (_, srid, *_rest) in BOXES.items():
        points = _edge_points(name)
        query(url, f"INSERT INTO ly.{THEME.current_view} ({cols}, noegle, geometri) "
                   f"SELECT {cols}, p.noegle, ST_Transform(ST_SetSRID(ST_MakePoint(p.x, p.y), "
                   f"{srid}), 25832) FROM ly.{THEME.current_view} t, "
                   "unnest(%s::text[], %s::float8[], %s::float8[]) p(noegle, x, y) "
                   "WHERE t.objekt_id = %s",
              [[p[0] for p in points], [p[1] for p in points], [p[2] for p in points],
               template])


@pytest.fixture(scope="module")
def edge_client(edge_db):
    with TestClient(create_app(make_settings(edge_db)), headers=ADMIN_HEADERS) as c:
        yield c


def _reference(url: str, srid: int, box: tuple[float, float, float, float]) -> set[str]:
    """The shelters whose stored point, transformed to `srid` by PostGIS, lies within the
    box's edges (compared as numbers, edges included)."""
    x1, y1, x2, y2 = box
    return {str(r[0]) for r in query(
        url, f"SELECT objekt_id FROM (SELECT objekt_id, ST_Transform(geometri, %s) g "
             f"FROM ly.{THEME.current_view}) t "
             "WHERE ST_X(g) >= %s AND ST_X(g) <= %s AND ST_Y(g) >= %s AND ST_Y(g) <= %s",
        [srid, x1, x2, y1, y2])}


@pytest.mark.parametrize("name", list(BOXES))
def test_a_bbox_counts_the_shelters_at_its_edges_as_its_own_crs_says(edge_client, edge_db,
                                                                     name):
    uri, srid, box, _, _ = BOXES[name]
    x1, y1, x2, y2 = box
    given = (y1, x1, y2, x2) if name == "epsg4326" else box  # EPSG:4326 is lat,lon
    r = edge_client.get(ITEMS, params={"bbox": ",".join(repr(v) for v in given),
                                       "bbox-crs": uri, "limit": 10000})
    assert r.status_code == 200, r.text
    got = {f["id"] for f in r.json()["features"]}
    expected = _reference(edge_db, srid, box)
    # The shelters were placed where they were meant to be (the reference agrees) ...
    meant = {n: inside for n, _, _, inside in _edge_points(name)}
    by_key = dict(query(edge_db, f"SELECT noegle, objekt_id::text FROM ly.{THEME.current_view} "
                                 "WHERE noegle LIKE %s", [f"exact {name} %"]))
    assert len(by_key) == len(meant) == 96
    assert {k for k, inside in meant.items() if inside} == \
        {k for k, oid in by_key.items() if oid in expected}
    # ... and the API counts every one of them, and every other shelter, as the CRS says.
    wrong = sorted(key for key, oid in by_key.items() if (oid in got) != (oid in expected))
    assert not wrong, f"{len(wrong)} shelters near the edges counted wrongly: {wrong[:6]}"
    assert set(got) == expected


_DECIMALS = re.compile(rb"\.(\d+)")


@pytest.mark.parametrize("uri,srid,lat_first,decimals", [
    (CRS84, 4326, False, 9), (EPSG.format(4326), 4326, True, 9),
    (EPSG.format(3857), 3857, False, 3), (EPSG.format(25832), 25832, False, 3)])
def test_every_demo_shelter_round_trips_within_a_millimetre(ro_client, shared_db_url, uri,
                                                            srid, lat_first, decimals):
    r = ro_client.get(ITEMS, params={"crs": uri, "limit": 10000})
    assert r.status_code == 200
    features = r.json()["features"]
    assert len(features) == DEMO_COUNT
    coordinates = rb"".join(re.findall(rb'"coordinates":\[[^\]]*\]', r.content))
    assert max(len(d) for d in _DECIMALS.findall(coordinates)) <= decimals
    ids = [f["id"] for f in features]
    xs, ys = zip(*(f["geometry"]["coordinates"] for f in features))
    if lat_first:
        xs, ys = ys, xs
    (n, worst), = query(
        shared_db_url, f"SELECT count(*), max(ST_Distance(t.geometri, ST_Transform(ST_SetSRID("
                       f"ST_MakePoint(u.x, u.y), %s), 25832))) FROM unnest(%s::uuid[], "
                       f"%s::float8[], %s::float8[]) u(id, x, y) "
                       f"JOIN ly.{THEME.current_view} t ON t.objekt_id = u.id",
        [srid, ids, [float(v) for v in xs], [float(v) for v in ys]])
    assert n == DEMO_COUNT
    assert worst < 0.001, f"a shelter moved {worst * 1000:.3f} mm through {uri}"


#: (bbox-crs, its SRID, a box whose west edge lies east of its east edge, in the CRS's axis
#: order): across the antimeridian, from 170 degrees east round to 12 degrees east.
ACROSS = {
    "crs84": (CRS84, 4326, (170.0, 54.0, 12.0, 58.0)),
    "epsg4326": (EPSG.format(4326), 4326, (54.0, 170.0, 58.0, 12.0)),
    "epsg3857": (EPSG.format(3857), 3857, (*_mercator(170.0, 54.0), *_mercator(12.0, 58.0))),
}


@pytest.mark.parametrize("name", list(ACROSS))
def test_a_bbox_across_the_antimeridian_is_its_two_halves(ro_client, shared_db_url, name):
    uri, srid, given = ACROSS[name]
    r = ro_client.get(ITEMS, params={"bbox": ",".join(repr(v) for v in given),
                                     "bbox-crs": uri, "limit": 10000})
    assert r.status_code == 200, r.text
    got = {f["id"] for f in r.json()["features"]}
    x1, y1, x2, y2 = (given[1], given[0], given[3], given[2]) if name == "epsg4326" else given
    expected = {str(oid) for (oid,) in query(
        shared_db_url, f"SELECT objekt_id FROM (SELECT objekt_id, ST_Transform(geometri, %s) g "
                       f"FROM ly.{THEME.current_view}) t WHERE (ST_X(g) >= %s OR ST_X(g) <= %s)"
                       " AND ST_Y(g) >= %s AND ST_Y(g) <= %s", [srid, x1, x2, y1, y2])}
    # West of 12 degrees east: most of Denmark, never Bornholm or Zealand's east.
    assert 0 < len(expected) < DEMO_COUNT
    assert got == expected


def test_a_projected_bbox_with_its_west_edge_east_of_its_east_edge_is_refused(ro_client):
    for bbox, crs in (("600000,6100000,500000,6200000", EPSG.format(25832)),
                      ("190,50,-190,60", CRS84), ("180.0000001,50,179,60", CRS84),
                      ("-179,50,-180.5,60", CRS84), ("1e308,50,-1e308,60", CRS84),
                      ("50,190,60,-190", EPSG.format(4326)),
                      ("1e9,7e6,-1e9,8e6", EPSG.format(3857)),
                      ("10,56,12,55", CRS84), ("56,10,55,12", EPSG.format(4326))):
        r = ro_client.get(ITEMS, params={"bbox": bbox, "bbox-crs": crs})
        assert r.status_code == 400, (bbox, crs)
        assert r.json()["errors"][0]["field"] == "bbox"
