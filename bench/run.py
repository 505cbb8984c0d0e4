"""`python -m bench.run`: build the data set, run Ly, tipg and pygeoapi through every scenario,
print the table and write bench/results/ (and, after a full run, bench/README.md).

    python -m bench.run                 # 1,000,000 shelters, 15 s per scenario
    python -m bench.run --quick         # 100,000 shelters, 5 s per scenario (smoke run)
    python -m bench.run --rebuild       # build the data set anew
    python -m bench.run --servers ly,tipg --scenarios items-bbox,deep-paging
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

from bench import dataset, report, scenarios, servers, system, workload
from bench.config import QUICK_COUNT, Config
from bench.dataset import log
from bench.scenarios import Context, Row

ALL_SCENARIOS = (*scenarios.HTTP_SCENARIOS, *scenarios.OTHER_SCENARIOS)


def parse(argv: list[str] | None) -> Config:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_COUNT:,} shelters, 5 s per scenario (smoke run)")
    p.add_argument("--rebuild", action="store_true", help="build the data set anew")
    p.add_argument("--count", type=int, help="shelters in the data set (default 1,000,000)")
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
                 database_name=a.database)
    unknown = set(cfg.scenarios) - set(ALL_SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if a.quick:
        cfg.count, cfg.duration, cfg.warmup = QUICK_COUNT, 5, 1
    if a.count:
        cfg.count = a.count
    if a.duration:
        cfg.duration = a.duration
    if a.warmup is not None:
        cfg.warmup = a.warmup
    cfg.update_readme = not (a.no_readme or a.quick or a.database or a.count or a.duration
                             or cfg.scenarios != ALL_SCENARIOS
                             or cfg.servers != ("ly", "tipg", "pygeoapi"))
    return cfg


def run(cfg: Config) -> list[Row]:
    started = datetime.now(timezone.utc)
    system.ensure_tools()
    mark = dataset.ensure(cfg)
    wl = workload.build(cfg)
    log(f"workload: {len(wl.towns)} town boxes (median "
        f"{sorted(t.matches for t in wl.towns)[len(wl.towns) // 2]:,} shelters each), "
        f"{len(wl.ids)} ids")
    ctx = Context(cfg, wl)
    rows: list[Row] = []
    versions: dict[str, str] = {}
    for name in cfg.servers:
        server = servers.make(cfg, name)
        server.prepare()
        versions.update(server.versions())
        wanted = [s for s in scenarios.HTTP_SCENARIOS if s in cfg.scenarios]
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
    if "physical-limit" in cfg.scenarios:
        log("physical limit (pgbench)")
        rows += _guarded("items-bbox", "PostGIS (pgbench)", scenarios.physical_limit, ctx)
    if "import-gpkg" in cfg.scenarios:
        log("import from GeoPackage")
        rows += _guarded("import-gpkg", "ogr2ogr", lambda c: scenarios.import_geopackage(
            c, dataset.geopackage(cfg, mark)), ctx)
    rows = _ordered(rows)
    result = {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {"count": cfg.count, "seed": cfg.seed, "duration": cfg.duration,
                   "warmup": cfg.warmup, "connections": cfg.connections,
                   "workers": cfg.workers, "quick": cfg.quick, "page_limit": cfg.page_limit,
                   "deep_page": cfg.deep_page, "deep_limit": cfg.deep_limit,
                   "database": cfg.database, "servers": list(cfg.servers),
                   "scenarios": list(cfg.scenarios)},
        "dataset": mark,
        "machine": system.machine(cfg.db_url),
        "versions": versions,
        "workload": {"towns": [t.__dict__ for t in wl.towns], "cql_filter": workload.CQL_FILTER,
                     "ids": len(wl.ids)},
    }
    path = report.write(result, rows, update_readme=cfg.update_readme)
    report.print_tables(rows)
    log(f"results: {path}" + (" and bench/README.md" if cfg.update_readme else ""))
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
        return int(digits) if digits and r.scenario in ("deep-paging", "mvt-tiles") else 0

    return sorted(rows, key=lambda r: (order.get(r.scenario, 99), variant(r),
                                       servers_order.get(r.server, 9)))


def main(argv: list[str] | None = None) -> int:
    cfg = parse(argv)
    run(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
