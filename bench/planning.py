"""`python -m bench.planning`: the planner (issue 18) at national scale, without a database.

    python -m bench.planning                  # 3 runs, median; about 3 minutes
    python -m bench.planning --repeat 1 --shelters 20000

The data: Ly's synthetic population grid for all of Denmark (`loaders.population_grid`:
every municipality's FOLK1A 2026K1 population, 6,025,511 residents, on 100 m cells, from the
shipped DAGI files; the demo's generator, seed 2026) and about 60,000 synthetic shelters,
placed where people live (a cell is drawn with probability ∝ residents^1.3, so more shelters
per resident in dense areas, as sikringsrum are in blocks of flats; the point uniformly in the
cell) with the demo's mix of types and capacities, scaled so the places add up to the national
figure of 2024 (3,680,747); a shelter belongs to its cell's municipality.

Each repetition runs two fresh child processes on the same data, so each one's peak memory
(`ru_maxrss` from `os.wait4`) is its own:
- *reach*: the (cell, shelter) arcs within 30 minutes' walk at 4.5 km/h with detour factor 1.3
  (1,731 m straight line), per municipality, as a run finds them (`loaders.planning._arcs`);
- *reach + assignment*: `loaders.planning.solve`, the whole national run as Ly makes it (each
  municipality's residents to its own places; OR-Tools' min-cost max-flow; cycle
  cancelling), with its own split of reach, assignment and split-cell seconds.
Reported: seconds, peak resident memory and arcs, as the median of the repetitions, with the
residents placed and the walking metres (equal in every repetition: the method is exact and
deterministic). Written to bench/results/planning-<UTC>.json. Also the `planning-national`
scenario of `python -m bench.run` (one row). Targets: reach + assignment under 60 s and under
2 GB. The machine may be shared: the figures are what a run saw.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench.config import CACHE, RESULTS

SHELTERS = 60_000
PLACES_2024 = 3_680_747
SEED = 18
#: The demo's shelter types and capacities (loaders/demo.py): (share, capacities).
TYPES = ((0.55, (20, 30, 40, 50, 60, 80, 100, 120, 150, 200, 250, 300)),
         (0.20, tuple(range(50, 1001, 10))), (0.20, tuple(range(50, 151, 10))),
         (0.05, tuple(range(20, 201, 10))))
TARGET_SECONDS, TARGET_MB = 60.0, 2048.0


def build(path: Path, shelters: int = SHELTERS, seed: int = SEED) -> dict:
    """The grid and the shelters, written to `path` (npz); what they are."""
    from loaders import population_grid as pg

    t0 = time.perf_counter()
    grid = pg.synthetic_grid(pg.areas_from_files())
    t1 = time.perf_counter()
    rng = np.random.default_rng(seed)
    weight = grid.residents.astype(float) ** 1.3
    at = rng.choice(len(grid), shelters, p=weight / weight.sum())
    sx = grid.east[at] + rng.uniform(0, grid.size, shelters)
    sy = grid.north[at] + rng.uniform(0, grid.size, shelters)
    kind = rng.choice(len(TYPES), shelters, p=[t[0] for t in TYPES])
    places = np.array([rng.choice(TYPES[k][1]) for k in kind], dtype=float)
    places = np.maximum(1, np.rint(places * PLACES_2024 / places.sum())).astype(np.int64)
    cx, cy = grid.centres()
    np.savez(path, cx=cx, cy=cy, residents=grid.residents, kommune=grid.kommunekode,
             sx=sx, sy=sy, places=places, skommune=grid.kommunekode[at])
    return {"celler": len(grid), "indbyggere": grid.total, "objekter": shelters,
            "pladser": int(places.sum()), "grid_seconds": round(t1 - t0, 2)}


def _problem(path: Path):
    from loaders import planning

    d = np.load(path)
    from datamodel.planning import Settings

    s = Settings()
    return planning.Problem(cell_x=d["cx"], cell_y=d["cy"], residents=d["residents"],
                            cell_group=d["kommune"], obj_x=d["sx"], obj_y=d["sy"],
                            places=d["places"], obj_group=d["skommune"],
                            radius_m=s.radius_m, detour=s.omvejsfaktor)


def child(mode: str, path: Path) -> dict:
    """One measurement in this (fresh) process."""
    from loaders import planning

    p = _problem(path)
    t0 = time.perf_counter()
    if mode == "reach":
        arcs = 0
        for g in np.unique(p.cell_group):
            ci = np.nonzero(p.cell_group == g)[0]
            oi = np.nonzero(p.obj_group == g)[0]
            tails, _, _ = planning._arcs(p.cell_x[ci], p.cell_y[ci], p.obj_x[oi], p.obj_y[oi],
                                         p.radius_m, p.detour)
            arcs += len(tails)
        return {"seconds": round(time.perf_counter() - t0, 3), "arcs": arcs}
    sol = planning.solve(p)
    return {"seconds": round(time.perf_counter() - t0, 3), "arcs": sol.arcs,
            "phases": sol.seconds, "placed": sol.placed, "metres": sol.cost,
            "split_before": sol.split_before, "split_after": sol.split_after,
            "cycles": sol.cycles, "groups": sol.groups}


def _measure(mode: str, path: Path) -> dict:
    proc = subprocess.Popen([sys.executable, "-m", "bench.planning", "--child", mode, str(path)],
                            stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"the {mode} child failed ({proc.returncode})")
    result = json.loads(out)
    result["peak_mb"] = round(usage.ru_maxrss / 1024, 1)  # kilobytes on Linux
    return result


def _load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def run(repeat: int = 3, shelters: int = SHELTERS, seed: int = SEED) -> dict:
    CACHE.mkdir(parents=True, exist_ok=True)
    data = CACHE / f"planning-national-{shelters}-{seed}.npz"
    info = build(data, shelters, seed)
    print(f"data: {info['celler']:,} cells, {info['indbyggere']:,} residents, "
          f"{info['objekter']:,} shelters, {info['pladser']:,} places "
          f"(grid made in {info['grid_seconds']} s)", file=sys.stderr)
    runs = []
    for k in range(repeat):
        load_before = _load_average()
        reach = _measure("reach", data)
        full = _measure("solve", data)
        runs.append({"reach": reach, "solve": full, "load_average_before": load_before})
        print(f"run {k + 1}: reach {reach['seconds']} s, {reach['peak_mb']} MB, "
              f"{reach['arcs']:,} arcs; reach + assignment {full['seconds']} s "
              f"({full['phases']}), {full['peak_mb']} MB; placed {full['placed']:,}, "
              f"{full['metres']:,} m; split cells {full['split_before']} -> "
              f"{full['split_after']} (load average before: {load_before})", file=sys.stderr)
    med = lambda xs: statistics.median(xs)  # noqa: E731
    summary = {
        "reach_seconds": med([r["reach"]["seconds"] for r in runs]),
        "reach_peak_mb": med([r["reach"]["peak_mb"] for r in runs]),
        "arcs": runs[0]["reach"]["arcs"],
        "solve_seconds": med([r["solve"]["seconds"] for r in runs]),
        "solve_peak_mb": med([r["solve"]["peak_mb"] for r in runs]),
        "assignment_seconds": med([r["solve"]["phases"]["tildeling"] for r in runs]),
        "placed": runs[0]["solve"]["placed"], "metres": runs[0]["solve"]["metres"],
        "split_before": runs[0]["solve"]["split_before"],
        "split_after": runs[0]["solve"]["split_after"],
    }
    summary["met"] = (summary["solve_seconds"] < TARGET_SECONDS
                      and summary["solve_peak_mb"] < TARGET_MB)
    result = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "data": info, "repeat": repeat, "runs": runs, "median": summary,
              "cpus": os.cpu_count(), "targets": {"seconds": TARGET_SECONDS,
                                                  "peak_mb": TARGET_MB}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"planning-{stamp}.json").write_text(json.dumps(result, indent=1))
    return result


def note(result: dict) -> str:
    m = result["median"]
    return (f"median of {result['repeat']}: reach {m['reach_seconds']} s, {m['reach_peak_mb']} MB, "
            f"{m['arcs']:,} arcs; reach + assignment {m['solve_seconds']} s (assignment "
            f"{m['assignment_seconds']} s), {m['solve_peak_mb']} MB; placed {m['placed']:,} of "
            f"{result['data']['indbyggere']:,}; target < 60 s and < 2 GB "
            f"{'met' if m['met'] else 'MISSED'}")


def scenario(ctx) -> list:
    """The `planning-national` row of `python -m bench.run`."""
    from bench.scenarios import Row

    result = run(repeat=max(3, getattr(ctx.cfg, "repeat", 1)))
    return [Row("planning-national", "Ly", "6 M residents, 60,000 shelters", None,
                note(result), {"planning": result["median"]})]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.planning", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--shelters", type=int, default=SHELTERS)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--child", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child[0], Path(a.child[1]))))
        return 0
    result = run(a.repeat, a.shelters, a.seed)
    print(note(result))
    return 0 if result["median"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
