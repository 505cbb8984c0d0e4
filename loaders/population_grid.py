"""Population on a grid: Danmarks Statistik's "befolkning i kvadratnet" and a synthetic grid.

The planner (`loaders.planning`) needs where people live, finer than a municipality. Danmarks
Statistik (DST) publishes the night-time population on the Danish national grid (Det Danske
Kvadratnet, DDKN): square cells of 100 m, 250 m, 1 km or 10 km in EPSG:25832, each named by
its size and the coordinates of its lower left corner truncated to the size
(`100m_61750_7250` is the 100 m cell whose lower left corner is 725 000 E, 6 175 000 N;
`1km_6175_725` the 1 km cell holding it; a 250 m cell counts in units of 10 m:
`250m_617500_72500`).

A grid (`ly.befolkningsnet`, migration 0014) is stored once and never changed: each load is a
new grid with its source, its cell size, whether it is synthetic, its period and the SHA-256
of the file it came from; its cells (`ly.befolkningscelle`) carry the DDKN id, the cell as a
polygon and its centre (EPSG:25832), the residents and the municipality holding the centre.

**DST's file** (`read_dst`): a delimited text file (`;`, `,` or tab; UTF-8, or Windows-1252)
with a header row, one row per populated cell. The cell column is DST's variable
`ddkncelle100m` (`ddkncelle250m`, `ddkncelle1km`, `ddkncelle10km`; any case, `ddkn_celle…` and
SDFI's `kn100mdk`/`kn1kmdk` accepted); the residents are `pers<year>` (the newest year, or the
one asked for), `personer`, `pers`, `befolkning`, `folketal` or `antal`, or the column
named by `count_column`.
Other columns (households, `hust<year>`) are ignored. Cells DST has suppressed for
discretion (an empty value, `..`, or DST's marker 99999 for "1 or 2") count as
`suppressed_as` residents (default 1) and are counted in the load's report. Every problem (a
malformed id, cells of two sizes, a repeated cell, a value that is not a whole number) is
reported with its row and column, and nothing is stored unless the whole file is good.

**The synthetic grid** (`synthetic_grid`): Ly ships no population grid, so the demo makes one.
Each municipality's FOLK1A population (`loaders/data/dk-population-by-municipality.csv`) is
spread over 100 m cells inside it: 85 % around its towns (every postal district's centre
stands for a town, weighted log-normally; residents fall off exponentially with the distance
from the town, more slowly for larger towns), 15 % in hamlets scattered over the
municipality. Each municipality's cells add up to its FOLK1A figure exactly; a cell belongs to
one municipality (the one holding its centre). The same seed gives the same grid (for one
NumPy version). It is named synthetic wherever it is shown (`syntetisk`, its source
`syntetisk (Ly demo)`); a DST file loaded later is a drop-in replacement (the planner uses the
newest grid unless told otherwise).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

#: DDKN cell sizes: prefix -> (size in metres, unit of the id's coordinates in metres).
SIZES = {"100m": (100, 100), "250m": (250, 10), "1km": (1000, 1000), "10km": (10000, 10000)}
_ID = re.compile(r"^(100m|250m|1km|10km)_(\d{3,7})_(\d{2,6})$")
_CELL_COLUMNS = re.compile(r"^(?:ddkn_?celle_?|kn)(100m|250m|1km|10km)(?:dk)?$")
_COUNT_NAMES = ("personer", "pers", "befolkning", "folketal", "antal")
_YEAR_COLUMN = re.compile(r"^pers_?(\d{4})$")
#: How DST marks a suppressed (discretion) count.
SUPPRESSED = frozenset({"", "..", ".", "99999"})
SYNTHETIC_SOURCE = "syntetisk (Ly demo)"
DEFAULT_SEED = 2026
#: Share of a municipality's residents in hamlets rather than towns (synthetic grid).
RURAL_SHARE = 0.15
#: Residents of a hamlet on average, and of a block of houses placed at once in a town.
MEAN_HAMLET = 12
TOWN_BLOCK = 15


class GridFileError(ValueError):
    """A population file that cannot be loaded; `problems` are (row, column, reason)."""

    def __init__(self, problems: list[tuple[int, str, str]]):
        self.problems = problems
        first = "; ".join(f"row {r}, {c}: {why}" for r, c, why in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(first + more)


# --- DDKN cell ids ------------------------------------------------------------------------------

def parse_cell_id(cell_id: str) -> tuple[int, int, int]:
    """(size in metres, easting and northing of the lower left corner in metres)."""
    m = _ID.match(cell_id.strip())
    if not m:
        raise ValueError(f"{cell_id!r} is not a DDKN cell id (e.g. 100m_61750_7250)")
    size, unit = SIZES[m.group(1)]
    north, east = int(m.group(2)) * unit, int(m.group(3)) * unit
    if north % size or east % size:
        raise ValueError(f"{cell_id!r}: the corner is not on the {m.group(1)} grid")
    return size, east, north


def cell_id(size: int, east: int, north: int) -> str:
    """The DDKN id of the cell of `size` metres whose lower left corner is (east, north)."""
    prefix, unit = next((p, u) for p, (s, u) in SIZES.items() if s == size)
    return f"{prefix}_{north // unit}_{east // unit}"


@dataclass
class Grid:
    """Populated cells as arrays: lower left corners (metres, EPSG:25832), residents and (if
    known) the municipality of each."""

    size: int
    east: np.ndarray  # int64, metres
    north: np.ndarray
    residents: np.ndarray  # int64
    kommunekode: np.ndarray | None = None  # int64, or None: found from the centre when stored
    suppressed: int = 0  # cells DST suppressed, counted as `suppressed_as`

    def __len__(self) -> int:
        return len(self.residents)

    @property
    def total(self) -> int:
        return int(self.residents.sum())

    def ids(self) -> list[str]:
        return [cell_id(self.size, int(e), int(n)) for e, n in zip(self.east, self.north)]

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        half = self.size / 2
        return self.east + half, self.north + half


# --- Danmarks Statistik's file ------------------------------------------------------------------

def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252")


def _columns(header: list[str], year: int | None, count_column: str | None = None
             ) -> tuple[int, int, list[tuple[int, str, str]]]:
    names = [h.strip().lower() for h in header]
    problems = []
    cell = next((i for i, n in enumerate(names) if _CELL_COLUMNS.match(n)), None)
    if cell is None:
        problems.append((1, "header", "no DDKN cell column (ddkncelle100m, ddkncelle1km, …)"))
    years = {int(m.group(1)): i for i, n in enumerate(names) if (m := _YEAR_COLUMN.match(n))}
    count = None
    if count_column is not None:
        if count_column.strip().lower() not in names:
            problems.append((1, "header", f"no column {count_column}"))
        else:
            count = names.index(count_column.strip().lower())
    elif year is not None:
        count = years.get(year)
        if count is None:
            problems.append((1, "header", f"no column pers{year}"))
    elif years:
        count = years[max(years)]
    else:
        count = next((names.index(n) for n in _COUNT_NAMES if n in names), None)
        if count is None:
            problems.append((1, "header", "no residents column (pers<year>, personer, pers, "
                                          "befolkning, folketal, antal)"))
    return cell if cell is not None else -1, count if count is not None else -1, problems


def read_dst(data: bytes | str | Path, *, year: int | None = None,
             suppressed_as: int = 1, count_column: str | None = None) -> Grid:
    """The populated cells of a DST population grid file (see the module's docstring);
    raises GridFileError listing every problem."""
    raw = Path(data).read_bytes() if isinstance(data, (str, Path)) else data
    text = _decode(raw)
    sample = text[:4096]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=";,\t")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ";"
    rows = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(rows, None)
    if not header:
        raise GridFileError([(1, "header", "the file is empty")])
    cell_col, count_col, problems = _columns(header, year, count_column)
    if problems:
        raise GridFileError(problems)
    cell_name, count_name = header[cell_col].strip(), header[count_col].strip()
    sizes: set[int] = set()
    seen: dict[tuple[int, int], int] = {}
    east, north, residents = [], [], []
    suppressed = 0
    for n, row in enumerate(rows, start=2):
        if not row or all(not v.strip() for v in row):
            continue
        if len(row) <= max(cell_col, count_col):
            problems.append((n, "row", f"has {len(row)} columns, the header {len(header)}"))
            continue
        raw_id, raw_count = row[cell_col].strip(), row[count_col].strip()
        try:
            size, e, no = parse_cell_id(raw_id)
        except ValueError as exc:
            problems.append((n, cell_name, str(exc)))
            continue
        sizes.add(size)
        if (e, no) in seen:
            problems.append((n, cell_name, f"{raw_id} is repeated (first in row {seen[(e, no)]})"))
            continue
        seen[(e, no)] = n
        if raw_count in SUPPRESSED:
            value = suppressed_as
            suppressed += 1
        else:
            try:
                value = int(raw_count.replace(".", "").replace(" ", ""))
            except ValueError:
                problems.append((n, count_name, f"{raw_count!r} is not a whole number"))
                continue
            if value < 0:
                problems.append((n, count_name, "is negative"))
                continue
        east.append(e)
        north.append(no)
        residents.append(value)
    if len(sizes) > 1:
        problems.append((0, cell_name, "cells of more than one size: "
                                       + ", ".join(f"{s} m" for s in sorted(sizes))))
    if not problems and not residents:
        problems.append((2, cell_name, "no cells"))
    if problems:
        raise GridFileError(sorted(problems))
    return Grid(size=sizes.pop(), east=np.array(east, dtype=np.int64),
                north=np.array(north, dtype=np.int64),
                residents=np.array(residents, dtype=np.int64), suppressed=suppressed)


# --- the synthetic grid -------------------------------------------------------------------------

@dataclass
class Area:
    """A municipality for the synthetic grid: its boundary (shapely, EPSG:25832), population
    and towns (x, y in EPSG:25832)."""

    kommunekode: int
    geometry: object
    population: int
    towns: list[tuple[float, float]] = field(default_factory=list)


def _largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integers in proportion to `weights` that add up to `total` exactly."""
    if total <= 0 or weights.sum() <= 0:
        return np.zeros(len(weights), dtype=np.int64)
    share = weights * (total / weights.sum())
    out = np.floor(share).astype(np.int64)
    short = total - int(out.sum())
    if short > 0:
        order = np.lexsort((np.arange(len(share)), -(share - out)))
        out[order[:short]] += 1
    return out


def _inside(geometry, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    import shapely

    return shapely.contains_xy(geometry, x, y)


def _uniform_points(rng, geometry, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` points uniformly inside the polygon (rejection sampling in its bounding box)."""
    minx, miny, maxx, maxy = geometry.bounds
    xs, ys, have = [], [], 0
    for _ in range(200):
        if have >= n:
            break
        k = max(256, 2 * (n - have))
        x = rng.uniform(minx, maxx, k)
        y = rng.uniform(miny, maxy, k)
        keep = _inside(geometry, x, y)
        xs.append(x[keep])
        ys.append(y[keep])
        have += int(keep.sum())
    x, y = np.concatenate(xs)[:n], np.concatenate(ys)[:n]
    return x, y


def _area_cells(area: Area, rng, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cell keys east index, north index, residents) of one municipality, before the cells
    already taken by another municipality are removed."""
    import shapely

    pop = int(area.population)
    geometry = area.geometry
    shapely.prepare(geometry)
    towns = area.towns or [tuple(geometry.representative_point().coords[0])]
    tx = np.array([t[0] for t in towns])
    ty = np.array([t[1] for t in towns])
    rural = int(round(pop * RURAL_SHARE))
    in_towns = _largest_remainder(rng.lognormal(0.0, 0.9, len(towns)), pop - rural)
    xs, ys = [], []
    weights = []
    for x0, y0, n in zip(tx, ty, in_towns):
        if n <= 0:
            continue
        # Blocks of TOWN_BLOCK residents with a 2-D exponential fall-off from the town's
        # centre (the radius is gamma(2)); larger towns spread further.
        blocks = max(1, int(n) // TOWN_BLOCK)
        scale = max(120.0, 190.0 * np.sqrt(n / 1000.0))
        r = rng.gamma(2.0, scale, blocks)
        a = rng.uniform(0.0, 2 * np.pi, blocks)
        xs.append(x0 + r * np.cos(a))
        ys.append(y0 + r * np.sin(a))
        weights.append(np.full(blocks, n / blocks))
    if rural > 0:
        hx, hy = _uniform_points(rng, geometry, max(1, rural // MEAN_HAMLET))
        which = rng.integers(0, len(hx), rural)
        xs.append(hx[which] + rng.normal(0.0, 30.0, rural))
        ys.append(hy[which] + rng.normal(0.0, 30.0, rural))
        weights.append(np.ones(rural))
    x = np.concatenate(xs) if xs else np.zeros(0)
    y = np.concatenate(ys) if ys else np.zeros(0)
    w = np.concatenate(weights) if weights else np.zeros(0)
    ie = np.floor(x / size).astype(np.int64)
    inn = np.floor(y / size).astype(np.int64)
    keys, where = np.unique(inn * 10_000_000 + ie, return_inverse=True)
    counts = np.bincount(where, weights=w, minlength=len(keys))
    cn, ce = keys // 10_000_000, keys % 10_000_000
    inside = _inside(geometry, (ce + 0.5) * size, (cn + 0.5) * size)
    return ce[inside], cn[inside], counts[inside]


def synthetic_grid(areas: Iterable[Area], *, seed: int = DEFAULT_SEED, size: int = 100) -> Grid:
    """A deterministic synthetic population grid (see the module's docstring): every area's
    population in cells of `size` metres inside it, adding up to its population exactly."""
    taken: set[int] = set()
    east, north, residents, kommune = [], [], [], []
    for area in sorted(areas, key=lambda a: a.kommunekode):
        if area.population <= 0:
            continue
        rng = np.random.default_rng([seed, area.kommunekode])
        ce, cn, counts = _area_cells(area, rng, size)
        keys = cn * 10_000_000 + ce
        free = np.array([k not in taken for k in keys.tolist()], dtype=bool)
        ce, cn, counts, keys = ce[free], cn[free], counts[free], keys[free]
        if len(counts) == 0:  # a sliver: everyone in the cell of a point inside it
            px, py = area.geometry.representative_point().coords[0]
            ce, cn = (np.array([int(px // size)]), np.array([int(py // size)]))
            counts, keys = np.array([1]), cn * 10_000_000 + ce
        counts = _largest_remainder(np.asarray(counts, dtype=float), int(area.population))
        keep = counts > 0
        taken.update(keys[keep].tolist())
        east.append(ce[keep] * size)
        north.append(cn[keep] * size)
        residents.append(counts[keep])
        kommune.append(np.full(int(keep.sum()), area.kommunekode, dtype=np.int64))
    return Grid(size=size, east=np.concatenate(east), north=np.concatenate(north),
                residents=np.concatenate(residents), kommunekode=np.concatenate(kommune))


def areas_from_db(conn, kommuner: Iterable[int] | None = None,
                  population: dict[int, int] | None = None) -> list[Area]:
    """The municipalities (of `kommuner`, default all) from `ly.kommune`, with FOLK1A's
    population (or `population`) and their towns: the postal districts' centres
    (`ST_PointOnSurface`) in them."""
    import shapely

    from loaders.reports import population as folk1a

    pop = population if population is not None else folk1a().by_kommune
    wanted = None if kommuner is None else sorted(set(kommuner))
    rows = conn.execute(
        "SELECT kommunekode, ST_AsBinary(geometri) FROM ly.kommune "
        "WHERE %s::int[] IS NULL OR kommunekode = ANY(%s::int[]) ORDER BY kommunekode",
        [wanted, wanted]).fetchall()
    towns: dict[int, list[tuple[float, float]]] = {}
    for k, x, y in conn.execute("""
            SELECT k.kommunekode, ST_X(c.pt), ST_Y(c.pt)
            FROM (SELECT postnr, ST_PointOnSurface(geometri) AS pt FROM ly.postnummer) c
            JOIN ly.kommune k ON ST_Intersects(k.geometri, c.pt)
            ORDER BY k.kommunekode, c.postnr""").fetchall():
        towns.setdefault(k, []).append((x, y))
    return [Area(k, shapely.from_wkb(bytes(g)), int(pop.get(k, 0)), towns.get(k, []))
            for k, g in rows]


def areas_from_files(kommuner: Iterable[int] | None = None) -> list[Area]:
    """The same from Ly's shipped DAGI files (no database): for the benchmark."""
    import shapely
    from pyproj import Transformer
    from shapely.ops import transform, unary_union

    from loaders.reference import MUNICIPALITIES, POSTAL_CODES
    from loaders.reports import population as folk1a

    to_utm = Transformer.from_crs(4326, 25832, always_xy=True).transform

    def shape(geometry: dict):
        return transform(lambda x, y, z=None: to_utm(x, y),
                         shapely.force_2d(shapely.geometry.shape(geometry)))

    wanted = None if kommuner is None else set(kommuner)
    parts: dict[int, list] = {}
    for f in json.loads(MUNICIPALITIES.read_text(encoding="utf-8"))["features"]:
        k = int(f["properties"]["lau_1"])
        if wanted is None or k in wanted:
            parts.setdefault(k, []).append(shape(f["geometry"]))
    polygons = {k: shapely.make_valid(unary_union(v)) for k, v in parts.items()}
    codes = sorted(polygons)
    tree = shapely.STRtree([polygons[k] for k in codes])
    towns: dict[int, list[tuple[float, float]]] = {}
    for f in sorted(json.loads(POSTAL_CODES.read_text(encoding="utf-8"))["features"],
                    key=lambda f: f["properties"]["postal_code"]):
        pt = shape(f["geometry"]).representative_point()
        hits = sorted(codes[i] for i in tree.query(pt, predicate="intersects"))
        if hits:
            towns.setdefault(hits[0], []).append((pt.x, pt.y))
    pop = folk1a().by_kommune
    return [Area(k, polygons[k], int(pop.get(k, 0)), towns.get(k, [])) for k in codes]


# --- storing a grid -----------------------------------------------------------------------------

@dataclass(frozen=True)
class StoredGrid:
    id: int
    kilde: str
    syntetisk: bool
    celle_m: int
    celler: int
    indbyggere: int
    undertrykte: int


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store(conn, grid: Grid, *, kilde: str, syntetisk: bool, periode: str | None = None,
          digest: str | None = None, actor: str | None = None) -> StoredGrid:
    """Store `grid` as a new grid (`ly.befolkningsnet`) with its cells, in one transaction.
    Cells without a municipality get the one holding their centre (or the nearest within
    5 km, as `ly.kommune_ved`)."""
    if digest is None:
        h = hashlib.sha256()
        for a in (grid.east, grid.north, grid.residents):
            h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
        digest = h.hexdigest()
    with conn.transaction(), conn.cursor() as cur:
        (grid_id,) = cur.execute("""
            INSERT INTO ly.befolkningsnet (kilde, syntetisk, celle_m, periode, sha256,
                                           celler, indbyggere, undertrykte, indlaest_af)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, coalesce(%s, current_user))
            RETURNING id""",
            [kilde, syntetisk, grid.size, periode, digest, len(grid), grid.total,
             grid.suppressed, actor]).fetchone()
        cur.execute("CREATE TEMP TABLE _celler (e bigint, n bigint, indbyggere int, "
                    "kommunekode int) ON COMMIT DROP")
        kommune = grid.kommunekode if grid.kommunekode is not None else [None] * len(grid)
        with cur.copy("COPY _celler (e, n, indbyggere, kommunekode) FROM STDIN") as copy:
            for e, n, r, k in zip(grid.east.tolist(), grid.north.tolist(),
                                  grid.residents.tolist(),
                                  kommune.tolist() if hasattr(kommune, "tolist") else kommune):
                copy.write_row((e, n, r, k))
        # The municipality (unless known) and the postal district of each cell's centre,
        # set-based before the rows are stored (grids never change afterwards).
        cur.execute("ALTER TABLE _celler ADD COLUMN postnr int, ADD COLUMN pt geometry")
        cur.execute("UPDATE _celler SET pt = ST_SetSRID(ST_MakePoint(e + %s, n + %s), 25832)",
                    [grid.size / 2, grid.size / 2])
        cur.execute("CREATE INDEX ON _celler USING gist (pt)")
        cur.execute("ANALYZE _celler")
        if grid.kommunekode is None:
            cur.execute("""
                UPDATE _celler c SET kommunekode = k.kommunekode FROM ly.kommune k
                WHERE ST_Intersects(k.geometri, c.pt)""")
            cur.execute("UPDATE _celler SET kommunekode = ly.kommune_ved(pt) "
                        "WHERE kommunekode IS NULL")
        cur.execute("""
            UPDATE _celler c SET postnr = p.postnr FROM ly.postnummer p
            WHERE ST_Intersects(p.geometri, c.pt)""")
        prefix, unit = next((p, u) for p, (s, u) in SIZES.items() if s == grid.size)
        cur.execute("""
            INSERT INTO ly.befolkningscelle (net_id, celle_id, indbyggere, kommunekode, postnr,
                                             geometri, centrum)
            SELECT %(id)s, %(prefix)s || '_' || (c.n / %(unit)s) || '_' || (c.e / %(unit)s),
                   c.indbyggere, c.kommunekode, c.postnr,
                   ST_MakeEnvelope(c.e, c.n, c.e + %(size)s, c.n + %(size)s, 25832), c.pt
            FROM _celler c ORDER BY c.n, c.e""",
            {"id": grid_id, "prefix": prefix, "unit": unit, "size": grid.size})
    conn.execute("ANALYZE ly.befolkningscelle")
    conn.commit()
    return StoredGrid(grid_id, kilde, syntetisk, grid.size, len(grid), grid.total,
                      grid.suppressed)


def load_file(conn, path: str | Path, *, kilde: str | None = None, periode: str | None = None,
              year: int | None = None, suppressed_as: int = 1, count_column: str | None = None,
              actor: str | None = None) -> StoredGrid:
    """Read a DST population grid file and store it as a new grid."""
    raw = Path(path).read_bytes()
    grid = read_dst(raw, year=year, suppressed_as=suppressed_as, count_column=count_column)
    return store(conn, grid, kilde=kilde or f"Danmarks Statistik: {Path(path).name}",
                 syntetisk=False, periode=periode, digest=sha256(raw), actor=actor)


def load_synthetic(conn, *, seed: int = DEFAULT_SEED, kommuner: Iterable[int] | None = None,
                   replace: bool = False) -> StoredGrid | None:
    """Make and store the demo's synthetic grid (of `kommuner`, default all); None if a
    synthetic grid with this seed and these municipalities is there already (unless
    `replace`, which stores a new one: grids are never changed)."""
    kilde = SYNTHETIC_SOURCE if kommuner is None else \
        f"{SYNTHETIC_SOURCE}, kommune {', '.join(str(k) for k in sorted(set(kommuner)))}"
    periode = f"FOLK1A {_period()}, frø {seed}"
    if not replace:
        row = conn.execute("SELECT 1 FROM ly.befolkningsnet WHERE kilde = %s AND periode = %s "
                           "AND syntetisk", [kilde, periode]).fetchone()
        if row:
            return None
    grid = synthetic_grid(areas_from_db(conn, kommuner), seed=seed)
    return store(conn, grid, kilde=kilde, syntetisk=True, periode=periode)


def _period() -> str:
    from loaders.reports import population

    return population().period
