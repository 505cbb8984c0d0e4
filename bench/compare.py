"""Ratios to the peers over repeated runs, and two builds compared by them.

A run's ratio for a scenario (and variant, e.g. a zoom) is Ly's requests per second divided by
the peer's, both measured in that run. Over several runs the median ratio is the figure: the
machine's speed changes from run to run (other sessions, caches), the ratio much less.

`python -m bench.run --repeat N` keeps every run's rows and reports the median ratios
(`repeat_table`). `python -m bench.compare` reads results files of two builds (e.g. the commit
before a refactor, run from a git worktree, and the commit after) and says, per scenario and
variant, whether the median ratios agree within a tolerance (±10 % by default):

    python -m bench.compare --before /tmp/ly-before/bench/results \\
        --after bench/results --since 2026-12-07T08:00 --scenarios items-bbox,mvt-tiles

A path is a results file or a folder of them; `--since` keeps the runs started at or after a
UTC time (the folders also hold older runs). A file written with `--repeat N` counts as N runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from bench.report import LY, _text, rows_from
from bench.scenarios import Row

PEERS = ("tipg", "pygeoapi")


def run_index(row: Row) -> int:
    return int(row.extra.get("run", 1))


def split_runs(rows: list[Row]) -> list[list[Row]]:
    """Rows of a repeated run, one list per run (by `extra['run']`)."""
    runs: dict[int, list[Row]] = {}
    for r in rows:
        runs.setdefault(run_index(r), []).append(r)
    return [runs[k] for k in sorted(runs)]


def runs_of(result: dict) -> list[list[Row]]:
    """The runs of a results file: N for a file written with --repeat N, else one."""
    if result.get("repeats"):
        return split_runs(rows_from({"rows": result["repeats"]}))
    return [rows_from(result)]


def _key(r: Row) -> tuple[str, str]:
    return r.scenario, r.variant


def ratio(run: list[Row], scenario: str, variant: str, peer: str) -> float | None:
    """Ly's req/s over the peer's in one run (None if either is missing)."""
    ly = next((r for r in run if r.server == LY and _key(r) == (scenario, variant) and r.m),
              None)
    other = next((r for r in run if r.server == peer and _key(r) == (scenario, variant)
                  and r.m), None)
    if not ly or not other or not other.m.rps:
        return None
    return ly.m.rps / other.m.rps


def pairs(runs: list[list[Row]], peers=PEERS, scenarios=None) -> list[tuple[str, str, str]]:
    """(scenario, variant, peer) measured for Ly and the peer in some run, in run order."""
    seen: dict[tuple[str, str, str], None] = {}
    for run in runs:
        for r in run:
            if r.server in peers and r.m and (scenarios is None or r.scenario in scenarios):
                if any(x.server == LY and _key(x) == _key(r) and x.m for x in run):
                    seen[(r.scenario, r.variant, r.server)] = None
    return list(seen)


def median_ratios(runs: list[list[Row]], peers=PEERS, scenarios=None
                  ) -> dict[tuple[str, str, str], tuple[list[float | None], float | None]]:
    """Per (scenario, variant, peer): each run's ratio and the median of those measured."""
    out = {}
    for scenario, variant, peer in pairs(runs, peers, scenarios):
        values = [ratio(run, scenario, variant, peer) for run in runs]
        measured = [v for v in values if v is not None]
        out[(scenario, variant, peer)] = (values, statistics.median(measured)
                                          if measured else None)
    return out


def repeat_table(runs: list[list[Row]]) -> list[list[str]]:
    """Scenario, variant, peer, Ly ÷ peer in each run, and the median."""
    n = len(runs)
    table = [["Scenario", "Variant", "Peer", *(f"run {k + 1}" for k in range(n)),
              "median Ly ÷ peer"]]
    for (scenario, variant, peer), (values, med) in median_ratios(runs).items():
        table.append([scenario, variant, peer,
                      *("" if v is None else f"{v:.2f}×" for v in values),
                      "" if med is None else f"{med:.2f}×"])
    return table


def median_rows(runs: list[list[Row]]) -> list[Row]:
    """One row per (scenario, variant, server): the run whose req/s is the median (the lower
    one for an even number of runs); rows without a measurement only when no run has one."""
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for run in runs:
        for r in run:
            groups.setdefault((r.scenario, r.variant, r.server), []).append(r)
    out = []
    for group in groups.values():
        measured = sorted((r for r in group if r.m), key=lambda r: r.m.rps)
        if measured:
            chosen = measured[(len(measured) - 1) // 2]
        else:
            chosen = group[0]
        out.append(replace(chosen, extra={**chosen.extra, "median_of": len(measured)}))
    return out


# --- two builds compared ---

def _files(paths: list[Path]) -> list[Path]:
    out = []
    for p in paths:
        out += sorted(p.glob("*.json")) if p.is_dir() else [p]
    return out


def load_runs(paths: list[Path], since: datetime | None, peer: str, count: int | None = None
              ) -> tuple[list[list[Row]], list[dict]]:
    """The runs in `paths` started at or after `since` that measured Ly and `peer` (on a set
    of `count` shelters, if given)."""
    runs, used = [], []
    for path in _files(paths):
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if "rows" not in result or "started" not in result:
            continue
        started = datetime.fromisoformat(result["started"])
        if since and started < since:
            continue
        servers = set(result.get("config", {}).get("servers", []))
        if not {"ly", peer} <= servers:
            continue
        if count is not None and result.get("config", {}).get("count") != count:
            continue
        file_runs = runs_of(result)
        runs += file_runs
        used.append({"file": str(path), "started": result["started"], "runs": len(file_runs),
                     "ly": result.get("versions", {}).get("ly", "?"),
                     "count": result.get("config", {}).get("count"),
                     "database": result.get("config", {}).get("database")})
    return runs, used


def compare(before: list[list[Row]], after: list[list[Row]], *, peer: str,
            scenarios: set[str] | None, tolerance: float) -> list[list[str]]:
    b = median_ratios(before, (peer,), scenarios)
    a = median_ratios(after, (peer,), scenarios)
    table = [["Scenario", "Variant", f"before: Ly ÷ {peer} per run", "median",
              f"after: Ly ÷ {peer} per run", "median", "after ÷ before", "Verdict"]]

    def runs_text(values):
        return ", ".join("–" if v is None else f"{v:.2f}" for v in values)

    for key in dict.fromkeys([*b, *a]):
        scenario, variant, _ = key
        bv, bm = b.get(key, ([], None))
        av, am = a.get(key, ([], None))
        if bm is None or am is None:
            change, verdict = "", "n/a"
        else:
            x = am / bm
            change = f"{x - 1:+.1%}"
            verdict = "same" if abs(x - 1) <= tolerance else "DIFFERS"
        table.append([scenario, variant, runs_text(bv), "" if bm is None else f"{bm:.2f}×",
                      runs_text(av), "" if am is None else f"{am:.2f}×", change, verdict])
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", nargs="+", type=Path, required=True,
                   help="results files or folders of the build before")
    p.add_argument("--after", nargs="+", type=Path, required=True,
                   help="results files or folders of the build after")
    p.add_argument("--since", help="only runs started at or after this UTC time "
                   "(e.g. 2026-12-07T08:00)")
    p.add_argument("--peer", default="tipg")
    p.add_argument("--count", type=int, help="only runs on a set of this many shelters")
    p.add_argument("--scenarios", default="items-bbox,mvt-tiles",
                   help="comma-separated (default items-bbox,mvt-tiles)")
    p.add_argument("--tolerance", type=float, default=10.0, help="percent (default 10)")
    a = p.parse_args(argv)
    since = None
    if a.since:
        since = datetime.fromisoformat(a.since)
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
    scenarios = {s for s in a.scenarios.split(",") if s} or None
    before, used_b = load_runs(a.before, since, a.peer, a.count)
    after, used_a = load_runs(a.after, since, a.peer, a.count)
    for side, used in (("before", used_b), ("after", used_a)):
        print(f"{side}: {sum(u['runs'] for u in used)} run(s)")
        for u in used:
            print(f"  {u['started']}  {u['file']}  ly {u['ly']}, {u['count']:,} shelters, "
                  f"database {u['database']}, {u['runs']} run(s)")
    counts = {u["count"] for u in used_b + used_a}
    if len(counts) > 1:
        print(f"WARNING: the runs are of different set sizes: {sorted(counts)}")
    if not before or not after:
        print("nothing to compare")
        return 1
    table = compare(before, after, peer=a.peer, scenarios=scenarios,
                    tolerance=a.tolerance / 100)
    print()
    print(f"Median over the runs of Ly ÷ {a.peer} (req/s); 'same' within ±{a.tolerance:g} %:")
    print(_text(table))
    differs = [row for row in table[1:] if row[-1] == "DIFFERS"]
    same = [row for row in table[1:] if row[-1] == "same"]
    print()
    print(f"{len(same)} of {len(table) - 1} agree within "
          f"±{a.tolerance:g} %" + (f"; differ: {', '.join(r[0] + ' ' + r[1] for r in differs)}"
                                   if differs else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
