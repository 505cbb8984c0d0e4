"""`python -m bench.run`: build the data set, run Ly, tipg and pygeoapi through every scenario,
print the table and write bench/results/ (and, after a full run, bench/README.md).

    python -m bench.run                 # 1,000,000 shelters + 100,000 areas, 15 s per scenario
    python -m bench.run --quick         # 100,000 shelters + 10,000 areas, 5 s (smoke run)
    python -m bench.run --rebuild       # build the data set anew
    python -m bench.run --servers ly,tipg --scenarios items-bbox,deep-paging
    python -m bench.run --servers ly,tipg --scenarios items-bbox,mvt-tiles --repeat 3
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

from bench import compare, dataset, report, scenarios, servers, system, workload
from bench.config import QUICK_AREAS, QUICK_COUNT, Config, area_theme
from bench.dataset import log
from bench.scenarios import Context, Row

ALL_SCENARIOS = (*scenarios.HTTP_SCENARIOS, *scenarios.OTHER_SCENARIOS)


def parse(argv: list[str] | None) -> Config:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_COUNT:,} shelters and {QUICK_AREAS:,} areas, 5 s per "
                   "scenario (smoke run)")
    p.add_argument("--rebuild", action="store_true", help="build the data set anew")
    p.add_argument("--count", type=int, help="shelters in the data set (default 1,000,000)")
    p.add_argument("--areas", type=int, help="areas of the area theme in the data set "
                   f"(default 100,000; quick {QUICK_AREAS:,})")
    p.add_argument("--area-theme", help="collection id of the area scenarios' theme (default: "
                   f"the register's first area theme, {area_theme().collection_id})")
    p.add_argument("--repeat", type=int, default=1,
                   help="run the selected scenarios N times (each pass starts the servers "
                   "anew; export and import-gpkg run once) and report each row as the "
                   "median run and the median of the runs' ratios to the peers")
    p.add_argument("--duration", type=int, help="seconds per timed run (default 15; quick 5)")
    p.add_argument("--warmup", type=int, help="seconds of warm-up per run (default 3; quick 1)")
    p.add_argument("--connections", type=int, default=32, help="concurrent connections (32)")
    p.add_argument("--workers", type=int, default=2, help="worker processes per server (2)")
    p.add_argument("--servers", default="ly,tipg,pygeoapi")
    p.add_argument("--scenarios", default=",".join(ALL_SCENARIOS),
                   help="comma-separated: " + ", ".join(ALL_SCENARIOS))
    p.add_argument("--database", help="database of the set (default ly_bench, or "
                   "ly_bench_quick with --quick); e.g. a copy with an experimental change")
    p.add_argument("--no-readme", action="store_true",
                   help="do not put this run's table in bench/README.md")
    a = p.parse_args(argv)
    cfg = Config(quick=a.quick, rebuild=a.rebuild, connections=a.connections,
                 workers=a.workers, servers=tuple(s for s in a.servers.split(",") if s),
                 scenarios=tuple(s for s in a.scenarios.split(",") if s),
                 database_name=a.database, area_theme_id=a.area_theme,
                 repeat=max(1, a.repeat))
    unknown = set(cfg.scenarios) - set(ALL_SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if a.quick:
        cfg.count, cfg.areas, cfg.duration, cfg.warmup = QUICK_COUNT, QUICK_AREAS, 5, 1
    if a.count:
        cfg.count = a.count
    if a.areas is not None:
        cfg.areas = a.areas
    if a.duration:
        cfg.duration = a.duration
    if a.warmup is not None:
        cfg.warmup = a.warmup
    cfg.update_readme = not (a.no_readme or a.quick or a.database or a.count or a.duration
                             or a.areas is not None or a.area_theme
                             or cfg.scenarios != ALL_SCENARIOS
                             or cfg.servers != ("ly", "tipg", "pygeoapi"))
    return cfg


def run(cfg: Config) -> list[Row]:
    started = datetime.now(timezone.utc)
    system.ensure_tools()
    mark = dataset.ensure(cfg)
    wl = workload.build(cfg)
    median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    log(f"workload: {len(wl.towns)} town boxes (median "
        f"{median([t.matches for t in wl.towns]):,} shelters and "
        f"{median([t.area_matches for t in wl.towns]):,} areas each), {len(wl.ids)} ids")
    ctx = Context(cfg, wl)
    versions: dict[str, str] = {}
    passes: list[list[Row]] = []
    for k in range(1, cfg.repeat + 1):
        wanted = [s for s in cfg.scenarios if k == 1 or s in scenarios.REPEATABLE]
        if cfg.repeat > 1:
            log(f"pass {k} of {cfg.repeat}")
        rows = _pass(cfg, ctx, wanted, versions, mark)
        if cfg.repeat > 1:
            for r in rows:
                r.extra["run"] = k
        passes.append(rows)
    rows = _ordered(compare.median_rows(passes) if cfg.repeat > 1 else passes[0])
    result = {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {"count": cfg.count, "seed": cfg.seed, "duration": cfg.duration,
                   "warmup": cfg.warmup, "connections": cfg.connections,
                   "workers": cfg.workers, "quick": cfg.quick, "page_limit": cfg.page_limit,
                   "deep_page": cfg.deep_page, "deep_limit": cfg.deep_limit,
                   "database": cfg.database, "servers": list(cfg.servers),
                   "scenarios": list(cfg.scenarios), "areas": cfg.areas,
                   "area_theme": cfg.area_theme.collection_id, "repeat": cfg.repeat},
        "dataset": mark,
        "machine": system.machine(cfg.db_url),
        "versions": versions,
        "workload": {"towns": [t.__dict__ for t in wl.towns], "cql_filter": workload.CQL_FILTER,
                     "ids": len(wl.ids)},
    }
    table = None
    if cfg.repeat > 1:
        result["repeats"] = [r.as_dict() for run in passes for r in _ordered(run)]
        table = result["repeat_table"] = compare.repeat_table(passes)
    path = report.write(result, rows, update_readme=cfg.update_readme)
    report.print_tables(rows, table)
    log(f"results: {path}" + (" and bench/README.md" if cfg.update_readme else ""))
    return rows


def _pass(cfg: Config, ctx: Context, wanted_scenarios: list[str], versions: dict[str, str],
          mark: dict) -> list[Row]:
    """One pass over the servers and the scenarios: each server started, asked for every
    wanted HTTP scenario in turn and stopped; then the database-only scenarios."""
    rows: list[Row] = []
    for name in cfg.servers:
        server = servers.make(cfg, name)
        server.prepare()
        versions.update(server.versions())
        wanted = [s for s in scenarios.HTTP_SCENARIOS if s in wanted_scenarios]
        if not wanted:
            continue
        server.start()
        try:
            for scenario in wanted:
                if scenario in scenarios.FRESH_SERVER and name == "ly":
                    server.stop()  # measured on an idle, freshly started server
                    server.start()
                log(f"{scenario} on {server.label}")
                rows += _guarded(scenario, server.label, scenarios.HTTP_SCENARIOS[scenario],
                                 ctx, server)
                if scenario == "items-bbox" and name == "ly":
                    public = servers.LyPublic(cfg)
                    rows += _guarded(scenario, public.label, scenarios.items_bbox, ctx, public)
        finally:
            server.stop()
    if "physical-limit" in wanted_scenarios:
        log("physical limit (pgbench)")
        rows += _guarded("items-bbox", "PostGIS (pgbench)", scenarios.physical_limit, ctx)
    if "import-gpkg" in wanted_scenarios:
        log("import from GeoPackage")
        rows += _guarded("import-gpkg", "ogr2ogr", lambda c: scenarios.import_geopackage(
            c, dataset.geopackage(cfg, mark)), ctx)
    if "planning-national" in wanted_scenarios:
        from bench import planning

        log("the planner at national scale (bench/planning.py)")
        rows += _guarded("planning-national", "Ly", planning.scenario, ctx)
    return rows


def _guarded(scenario: str, label: str, fn, *args) -> list[Row]:
    """A scenario that fails is a row saying so; the run goes on with the others."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - reported in the table and the log
        import traceback

        traceback.print_exc()
        log(f"  {scenario} on {label} failed: {type(exc).__name__}: {exc}")
        return [Row(scenario, label, note=f"failed: {type(exc).__name__}: "
                                          f"{scenarios.one_line(str(exc))}")]


def _ordered(rows: list[Row]) -> list[Row]:
    """Scenario by scenario (in the order of ALL_SCENARIOS), Ly first."""
    order = {s: i for i, s in enumerate(ALL_SCENARIOS)}
    servers_order = {"Ly": 0, "Ly (public)": 1, "tipg": 2, "pygeoapi": 3,
                     "PostGIS (pgbench)": 4, "ogr2ogr": 5}

    def variant(r: Row) -> int:
        digits = "".join(c for c in r.variant if c.isdigit())
        return int(digits) if digits and r.scenario in ("deep-paging", "mvt-tiles",
                                                        "mvt-tiles-areas") else 0

    return sorted(rows, key=lambda r: (order.get(r.scenario, 99), variant(r),
                                       servers_order.get(r.server, 9)))


def main(argv: list[str] | None = None) -> int:
    cfg = parse(argv)
    run(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
