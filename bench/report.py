"""The table of a run, the targets checked against it, and the results files."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from bench.config import BENCH_DIR, RESULTS
from bench.scenarios import Row
from bench.system import machine_line

README = BENCH_DIR / "README.md"
START, END = "<!-- bench:latest:start -->", "<!-- bench:latest:end -->"

LY = "Ly"


def _fmt(v: float | None, digits: int = 1) -> str:
    if v is None:
        return ""
    return f"{v:,.{digits}f}"


def _ref(rows: list[Row], scenario: str, variant: str) -> Row | None:
    for r in rows:
        if r.scenario == scenario and r.server == LY and r.variant == variant and r.m:
            return r
    return None


def load_table(rows: list[Row]) -> list[list[str]]:
    """scenario x server: req/s, p50/p95/p99 and the ratios to Ly."""
    out = [["Scenario", "Variant", "Server", "req/s", "p50 ms", "p95 ms", "p99 ms",
            "Ly ÷ this (req/s)", "this ÷ Ly (p95)", "other CPU", "Note"]]
    for r in rows:
        if r.scenario in ("import-gpkg", "export"):
            continue
        variant = r.variant
        if r.server.startswith("PostGIS"):
            ref = _ref(rows, r.scenario, "")
        else:
            ref = _ref(rows, r.scenario, variant)
        if r.m is None:
            out.append([r.scenario, variant, r.server, "", "", "", "", "", "", "", r.note])
            continue
        ratio = p95 = ""
        if ref and ref is not r and r.m.rps:
            ratio = f"{ref.m.rps / r.m.rps:.2f}×"
            p95 = f"{r.m.p95_ms / ref.m.p95_ms:.2f}×" if ref.m.p95_ms else ""
        elif ref is r:
            ratio, p95 = "1.00×", "1.00×"
        out.append([r.scenario, variant, r.server, _fmt(r.m.rps), _fmt(r.m.p50_ms),
                    _fmt(r.m.p95_ms), _fmt(r.m.p99_ms), ratio, p95,
                    f"{r.m.other_cpu:.0%}" if r.m.other_cpu >= 0 else "", r.note])
    return out


def batch_table(rows: list[Row]) -> list[list[str]]:
    out = [["Scenario", "Variant", "Server", "seconds", "MB", "features/rows",
            "peak RSS MB (worker)", "Note"]]
    for r in rows:
        if r.scenario not in ("import-gpkg", "export"):
            continue
        e = r.extra
        out.append([r.scenario, r.variant, r.server, _fmt(e.get("seconds")),
                    _fmt(e.get("mb")), f"{e['features'] if 'features' in e else e.get('rows', ''):,}"
                    if (e.get("features") or e.get("rows")) else "",
                    _fmt(e.get("peak_rss_mb_worker")), _with_phases(r.note, e.get("phases"))])
    return out


def _with_phases(note: str, phases: dict | None) -> str:
    """The importer's phases (from its run's timestamps) after the row's note."""
    if not phases:
        return note
    names = {"read": "read", "stage_and_gate": "validate + stage + gate", "publish": "publish"}
    told = ", ".join(f"{names[k]} {v:,.0f} s" for k, v in phases.items() if v is not None)
    return "; ".join(x for x in (note, told) if x)


def targets(rows: list[Row]) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for every target of the issue."""
    def get(scenario, server, variant=""):
        for r in rows:
            if r.scenario == scenario and r.server == server and r.variant == variant:
                return r
        return None

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("met" if ok else "MISSED")

    out = []
    ly, tipg, pga = (get("items-bbox", s) for s in (LY, "tipg", "pygeoapi"))
    if ly and ly.m and tipg and tipg.m:
        x = ly.m.rps / tipg.m.rps
        out.append(("Items by bbox: Ly ≥ 1.5× tipg req/s, p95 ≤ tipg's",
                    f"{x:.2f}×, p95 {ly.m.p95_ms:.1f} vs {tipg.m.p95_ms:.1f} ms",
                    verdict(x >= 1.5 and ly.m.p95_ms <= tipg.m.p95_ms)))
    if ly and ly.m and pga and pga.m:
        x = ly.m.rps / pga.m.rps
        out.append(("Items by bbox: Ly ≥ 5× pygeoapi req/s, p95 ≤ pygeoapi's",
                    f"{x:.2f}×, p95 {ly.m.p95_ms:.1f} vs {pga.m.p95_ms:.1f} ms",
                    verdict(x >= 5 and ly.m.p95_ms <= pga.m.p95_ms)))
    deep = [r for r in rows if r.scenario == "deep-paging" and r.server == LY and r.m]
    if len(deep) == 2:
        first, last = deep
        x = last.m.p50_ms / first.m.p50_ms
        out.append((f"Deep paging: Ly {last.variant} ≤ 2× the latency of page 1",
                    f"p50 {last.m.p50_ms:.1f} vs {first.m.p50_ms:.1f} ms = {x:.2f}× "
                    f"(p95 {last.m.p95_ms / first.m.p95_ms:.2f}×)", verdict(x <= 2)))
    out.append(_tiles_target(rows, "mvt-tiles", "Tiles z8–14: Ly ≥ tipg req/s at every zoom"))
    ly_a, tipg_a = get("items-bbox-areas", LY), get("items-bbox-areas", "tipg")
    title = "Items by bbox, areas: Ly ≥ tipg req/s"
    if ly_a and ly_a.m and tipg_a and tipg_a.m:
        x = ly_a.m.rps / tipg_a.m.rps
        out.append((title, f"{x:.2f}×, p95 {ly_a.m.p95_ms:.1f} vs {tipg_a.m.p95_ms:.1f} ms",
                    verdict(x >= 1)))
    elif ly_a or tipg_a:
        out.append((title, "Ly: " + (ly_a.note if ly_a else "not run"), verdict(None)))
    if any(r.scenario == "mvt-tiles-areas" for r in rows):
        out.append(_tiles_target(rows, "mvt-tiles-areas",
                                 "Tiles z8–14, areas: Ly ≥ tipg req/s at every zoom"))
    ly_imp, ogr = get("import-gpkg", LY, "validated load"), get("import-gpkg", "ogr2ogr",
                                                              "COPY, no validation")
    if ly_imp and ogr and "seconds" in ly_imp.extra and "seconds" in ogr.extra and \
            (ly_imp.note or ly_imp.extra.get("rows") != ogr.extra.get("rows")):
        out.append(("Import: Ly's validated load ≤ 1.5× ogr2ogr's time",
                    f"Ly {ly_imp.extra['seconds']:.0f} s ({ly_imp.note or 'incomplete'}) vs "
                    f"ogr2ogr {ogr.extra['seconds']:.0f} s", verdict(False)))
    elif ly_imp and ogr and "seconds" in ly_imp.extra and "seconds" in ogr.extra:
        x = ly_imp.extra["seconds"] / ogr.extra["seconds"]
        out.append(("Import: Ly's validated load ≤ 1.5× ogr2ogr's time",
                    f"{ly_imp.extra['seconds']:.0f} s vs {ogr.extra['seconds']:.0f} s = "
                    f"{x:.2f}×", verdict(x <= 1.5)))
    else:
        out.append(("Import: Ly's validated load ≤ 1.5× ogr2ogr's time",
                    "Ly: " + (ly_imp.note if ly_imp else "not run"), verdict(None)))
    exports = [r for r in rows if r.scenario == "export"]
    if exports and all("peak_rss_mb_worker" in r.extra for r in exports):
        peak = max(r.extra["peak_rss_mb_worker"] for r in exports)
        out.append(("Export of the whole set: peak memory < 300 MB",
                    ", ".join(f"{r.variant} {r.extra['peak_rss_mb_worker']:.0f} MB"
                              for r in exports), verdict(peak < 300)))
    else:
        out.append(("Export of the whole set: peak memory < 300 MB",
                    "Ly: " + (exports[0].note if exports else "not run"), verdict(None)))
    limit = get("items-bbox", "PostGIS (pgbench)", "Ly's transaction")
    page = get("items-bbox", "PostGIS (pgbench)", "page SQL only")
    if ly and ly.m and limit and limit.m:
        x = ly.m.rps / limit.m.rps
        extra = f"; {ly.m.rps / page.m.rps:.0%} of the page SQL alone" if page and page.m else ""
        out.append(("Ly items ≥ 60% of the physical limit (Ly's transaction in pgbench)",
                    f"{x:.0%}{extra}", verdict(x >= 0.6)))
    return out


def _tiles_target(rows: list[Row], scenario: str, title: str) -> tuple[str, str, str]:
    tiles_ly = [r for r in rows if r.scenario == scenario and r.server == LY]
    pairs = [(r.m.rps / t.m.rps, r.variant) for r in tiles_ly for t in rows
             if r.m and t.scenario == scenario and t.server == "tipg" and
             t.variant == r.variant and t.m and t.m.rps]
    if tiles_ly and all(r.m for r in tiles_ly) and pairs:
        worst = min(pairs)
        return (title, f"lowest Ly ÷ tipg {worst[0]:.2f}× ({worst[1]})",
                "met" if worst[0] >= 1 else "MISSED")
    return (title, "Ly: " + (tiles_ly[0].note if tiles_ly else "not run"), "n/a")


def _markdown(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |",
             "|" + "|".join("---" for _ in table[0]) + "|"]
    for row in table[1:]:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines)


def _text(table: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for k, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(result: dict, rows: list[Row]) -> str:
    m = result["machine"]
    cfg = result["config"]
    versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items())
    areas = f" and {cfg['areas']:,} areas ({cfg.get('area_theme')})" if cfg.get("areas") else ""
    repeat = cfg.get("repeat") or 1
    medians = (f" Each row is the median of {repeat} runs (by req/s); the ratios of every run "
               "are in the last table.") if repeat > 1 else ""
    parts = [
        f"Run {result['started']} (UTC), {cfg['count']:,} shelters{areas}, {cfg['workers']} worker "
        f"processes per server, wrk {cfg['connections']} connections × {cfg['duration']} s "
        f"per scenario after {cfg['warmup']} s warm-up{' (quick mode)' if cfg['quick'] else ''}."
        + medians,
        "",
        f"Machine: {machine_line(m)}.",
        "",
        f"Versions: {versions}.",
        "",
        _markdown(load_table(rows)),
        "",
        _markdown(batch_table(rows)),
        "",
        "Targets:",
        "",
        _markdown([["Target", "Measured", "Verdict"], *[list(t) for t in targets(rows)]]),
    ]
    if result.get("repeat_table"):
        parts += ["", f"Ratios to the peers in each of the {repeat} runs, and their median:", "",
                  _markdown(result["repeat_table"])]
    return "\n".join(parts) + "\n"


def write(result: dict, rows: list[Row], update_readme: bool, path: Path | None = None) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(result["started"]).astimezone(timezone.utc)
    path = path or RESULTS / f"{stamp.strftime('%Y%m%dT%H%M%SZ')}.json"
    result = dict(result, rows=[r.as_dict() for r in rows],
                  targets=[{"target": t, "measured": m, "verdict": v}
                           for t, m, v in targets(rows)])
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n")
    tmp.replace(path)
    md = markdown(result, rows)
    (RESULTS / "latest.md").write_text("# Latest bench run\n\n" + md +
                                       f"\nRaw results: `{path.name}`.\n")
    if update_readme and README.exists():
        text = README.read_text()
        if START in text and END in text:
            head, rest = text.split(START, 1)
            _, tail = rest.split(END, 1)
            README.write_text(f"{head}{START}\n{md}\nRaw results: "
                              f"`bench/results/{path.name}`.\n{END}{tail}")
    return path


def print_tables(rows: list[Row], repeat_table: list[list[str]] | None = None) -> None:
    print()
    print(_text(load_table(rows)))
    print()
    print(_text(batch_table(rows)))
    print()
    print(_text([["Target", "Measured", "Verdict"], *[list(t) for t in targets(rows)]]))
    print()
    if repeat_table:
        print("Ratios to the peers in each run, and their median:")
        print(_text(repeat_table))
        print()


def rows_from(result: dict) -> list[Row]:
    """The rows of a stored results file."""
    from bench.load import Measurement

    rows = []
    for r in result["rows"]:
        m = Measurement(**r["measurement"]) if r.get("measurement") else None
        rows.append(Row(r["scenario"], r["server"], r.get("variant", ""), m, r.get("note", ""),
                        r.get("extra") or {}))
    return rows


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.report RESULTS.json [--readme]`: print a stored run's tables again and
    rewrite bench/results/latest.md (and the README's table with --readme) from it."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench.report", description=main.__doc__)
    p.add_argument("results", type=Path)
    p.add_argument("--readme", action="store_true")
    a = p.parse_args(argv)
    result = json.loads(a.results.read_text())
    rows = rows_from(result)
    base = {k: v for k, v in result.items() if k not in ("rows", "targets")}
    write(base, rows, update_readme=a.readme, path=a.results)
    print_tables(rows, result.get("repeat_table"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
