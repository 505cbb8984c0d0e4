"""Coordinate reference systems Ly serves (OGC API - Features Part 2).

Storage is EPSG:25832 (ETRS89 / UTM zone 32N), as in GeoFA. Output and input may be in
CRS84 (lon/lat, the default), EPSG:4326 (lat/lon, the authority's axis order),
EPSG:25832 or EPSG:3857.
"""

from __future__ import annotations

from dataclasses import dataclass

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_URI = "http://www.opengis.net/def/crs/EPSG/0/{}"


@dataclass(frozen=True)
class Crs:
    uri: str
    srid: int
    lat_first: bool  # authority axis order is latitude, longitude
    decimals: int  # coordinate precision in output (GeoJSON, WKT in CSV and XLSX)
    geographic: bool


#: Output precision: a stored EPSG:25832 point read in any supported CRS and transformed back
#: lies within 1 mm of where it was. Degrees get 8 decimals: rounding moves a point by at
#: most 5e-9 degrees per axis, 0.56 mm north-south and 0.32 mm east-west at 54.5 N, 0.64 mm
#: together (7 decimals, 6.4 mm, did not do). Metres get 3 decimals: 0.71 mm at most in
#: EPSG:25832 (both axes), less on the ground in EPSG:3857, whose metres are 1/cos(latitude)
#: of the ground's (0.56 at 56 N). PostGIS rounds (ST_AsGeoJSON, ST_AsText).
GEOGRAPHIC_DECIMALS = 8
METRIC_DECIMALS = 3

SUPPORTED: dict[str, Crs] = {
    CRS84: Crs(CRS84, 4326, False, GEOGRAPHIC_DECIMALS, True),
    EPSG_URI.format(4326): Crs(EPSG_URI.format(4326), 4326, True, GEOGRAPHIC_DECIMALS, True),
    EPSG_URI.format(25832): Crs(EPSG_URI.format(25832), 25832, False, METRIC_DECIMALS, False),
    EPSG_URI.format(3857): Crs(EPSG_URI.format(3857), 3857, False, METRIC_DECIMALS, False),
}
#: The east-west extent of a CRS whose x axis wraps at the antimeridian (by SRID): a box whose
#: west edge lies east of its east edge crosses it (OGC API Features Part 1, CQL2 §7) and is
#: two boxes, west edge to the end of the world and its start to the east edge.
WRAPPING_X: dict[int, tuple[float, float]] = {
    4326: (-180.0, 180.0),
    3857: (-20037508.342789244, 20037508.342789244),
}
STORAGE = SUPPORTED[EPSG_URI.format(25832)]
DEFAULT = SUPPORTED[CRS84]

_ALIASES = {
    "crs84": CRS84,
    "ogc:crs84": CRS84,
    "[ogc:crs84]": CRS84,
    "urn:ogc:def:crs:ogc:1.3:crs84": CRS84,
    "http://www.opengis.net/def/crs/ogc/1.3/crs84": CRS84,
}
for _code in (4326, 25832, 3857):
    for _alias in (f"epsg:{_code}", f"[epsg:{_code}]", f"urn:ogc:def:crs:epsg::{_code}",
                   f"http://www.opengis.net/def/crs/epsg/0/{_code}"):
        _ALIASES[_alias] = EPSG_URI.format(_code)


def lookup(value: str) -> Crs | None:
    """The supported CRS a URI (or common short form) names, or None."""
    uri = _ALIASES.get(value.strip().lower())
    return SUPPORTED.get(uri) if uri else None


def header(crs: Crs) -> str:
    """The value of a Content-Crs header."""
    return f"<{crs.uri}>"


# Where coordinates of each kind can lie at all, for clipping query envelopes before they
# are transformed (ETRS89's area of use, generously).
ETRS89_LONLAT_BOX = (-16.1, 32.88, 40.18, 84.73)
# Denmark, with its islands and territorial sea, in EPSG:25832 and in lon/lat.
DENMARK_25832_BOX = (420_000.0, 6_030_000.0, 910_000.0, 6_420_000.0)
DENMARK_LONLAT_BOX = (7.7, 54.4, 15.4, 57.9)
