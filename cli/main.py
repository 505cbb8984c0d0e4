"""`ly`: migrate the database, load reference and demo data, serve the API.

    ly migrate                 create or upgrade the schema (Alembic) and sync code lists
    ly load-municipalities     load the 98 municipalities and the postal-code areas
    ly load-demo [--count N] [--theme ID]   load the deterministic demo data of every theme
                               (and the synthetic population grid for the planner)
    ly load-population FILE    load Danmarks Statistik's population grid (kvadratnet)
    ly plan run [--kommune K] [--scenarie S]  assign residents to places within walking distance
    ly plan list | show ID     the planner's runs
    ly serve [--port 8000]     serve the API with uvicorn
    ly dev-key                 create the local development signing key
    ly dev-token --role R ...  print a development token (development configurations only)
    ly api-key create --name N --role R ...   create an API key for a machine client
    ly import-list FILE --mapping M --kommune K [--publish]   stage (and publish) a municipal list
    ly import-bbr [--kommune K] [--publish]   stage (and publish) sikringsrum from BBR/DAR
    ly geofa export|pull|push|sync ...        GeoFA exchange formats and two-way sync
    ly runs list|show|publish|rollback|resume|report ...   the log of runs
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import psycopg

from datamodel.db import psycopg_url


def _database_url(args) -> str:
    if args.database_url:
        return args.database_url
    from service.settings import Settings

    return Settings().database_url


def alembic_config(database_url: str):
    from alembic.config import Config

    import datamodel

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(datamodel.__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def migrate(database_url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def cmd_migrate(args) -> int:
    migrate(_database_url(args), args.revision)
    print(f"migrated to {args.revision}")
    return 0


def cmd_load_municipalities(args) -> int:
    from loaders.reference import load_municipalities, load_postal_codes

    with psycopg.connect(psycopg_url(_database_url(args))) as conn:
        k = load_municipalities(conn)
        p = load_postal_codes(conn)
    print(f"loaded {k} municipalities and {p} postal-code areas")
    return 0


def cmd_load_demo(args) -> int:
    from datamodel import themes
    from loaders.demo import load_themes

    counts = {themes.default().collection_id: args.count}
    with psycopg.connect(psycopg_url(_database_url(args))) as conn:
        written = load_themes(conn, counts=counts, seed=args.seed, replace=args.replace,
                              themes=args.theme)
    for collection_id, n in written.items():
        print(f"{collection_id}: loaded {n} demo objects" if n else
              f"{collection_id}: demo objects already loaded (use --replace)")
    if not args.uden_befolkning and args.theme is None:
        from loaders import population_grid

        with psycopg.connect(psycopg_url(_database_url(args))) as conn:
            grid = population_grid.load_synthetic(conn, replace=args.replace)
        print(f"population grid: {grid.celler} synthetic cells, {grid.indbyggere} residents "
              f"(net {grid.id})" if grid else
              "population grid: the synthetic grid is already loaded (use --replace)")
    return 0


# --- the planner (issue 18: loaders.population_grid, loaders.planning) ---

def cmd_load_population(args) -> int:
    from loaders import population_grid

    with psycopg.connect(psycopg_url(_database_url(args))) as conn:
        if args.syntetisk:
            if args.file:
                print("give a FILE or --syntetisk, not both", file=sys.stderr)
                return 2
            grid = population_grid.load_synthetic(conn, seed=args.seed,
                                                  kommuner=args.kommune or None,
                                                  replace=True)
        elif not args.file:
            print("give a FILE (Danmarks Statistik's grid) or --syntetisk", file=sys.stderr)
            return 2
        else:
            try:
                grid = population_grid.load_file(
                    conn, args.file, kilde=args.kilde, periode=args.periode, year=args.aar,
                    suppressed_as=args.undertrykt_som, count_column=args.kolonne)
            except population_grid.GridFileError as exc:
                print(f"refused, nothing stored: {len(exc.problems)} problem(s)", file=sys.stderr)
                for row, column, why in exc.problems[:20]:
                    print(f"  row {row}, {column}: {why}", file=sys.stderr)
                return 3
    print(f"net {grid.id}: {grid.celler} cells of {grid.celle_m} m, {grid.indbyggere} "
          f"residents ({grid.kilde}{', syntetisk' if grid.syntetisk else ''}"
          f"{f', {grid.undertrykte} suppressed cells' if grid.undertrykte else ''})")
    return 0


def _print_plan(conn, run_id: int) -> None:
    from loaders import planning

    run = planning.drive(conn, planning.run_steps(run_id))
    if run is None:
        print(f"no run {run_id}", file=sys.stderr)
        return
    r = run["resultat"]
    where = f"kommune {run['kommunekode']}" if run["kommunekode"] else "national"
    print(f"run {run_id} ({where}, {run['scenarie']['navn']}, net {run['net_id']}"
          f"{', syntetisk' if run['input'].get('net_syntetisk') else ''}): "
          f"{r['daekket']} of {r['indbyggere']} residents covered ({r['andel_daekket']}), "
          f"{r['inden_for_raekkevidde']} with enough places within reach, "
          f"{r['ikke_daekket']} without a place")
    print(f"  {r['objekter']} objects, {r['kapacitet']} places ({r['belaegning']} used); "
          f"{r['buer']} arcs; split cells {r['celler_delt_foer']} -> {r['celler_delt']}; "
          f"mean walk {r['gennemsnit_m']} m; seconds {r['sekunder']}")
    if run["sammenlignet_med"]:
        base = planning.drive(conn, planning.run_steps(run["sammenlignet_med"]))
        print(f"  compared with run {run['sammenlignet_med']}: covered "
              f"{r['daekket'] - base['resultat']['daekket']:+d}")


def cmd_plan(args) -> int:
    from datamodel import planning as model
    from loaders import planning

    with psycopg.connect(psycopg_url(_database_url(args))) as conn:
        if args.action == "list":
            for run in planning.drive(conn, planning.runs_steps(args.kommune, args.limit)):
                r = run["resultat"]
                print(f"{run['id']:>6}  {run['oprettet'][:19]}  "
                      f"{run['kommunekode'] or 'national':>8}  {run['scenarie']['navn']:<16} "
                      f"covered {r['daekket']} of {r['indbyggere']}")
            return 0
        if args.action == "show":
            _print_plan(conn, args.id)
            return 0
        try:
            theme = planning.plan_theme(args.tema)
            raw = {k: v for k, v in (("minutter", args.minutter), ("hastighed_kmt",
                                                                     args.hastighed),
                                     ("omvejsfaktor", args.omvej)) if v is not None}
            if args.tvaers_af_kommuner:
                raw["tvaers_af_kommuner"] = True
            settings = model.Settings.parse(raw)
            scenario = model.parse_scenario(theme, planning.profile_for(theme), args.scenarie)
            made = planning.run(conn, theme, settings, scenario, args.kommune,
                                net_id=args.net, sammenlign_med=args.sammenlign_med)
        except model.PlanInputError as exc:
            print(f"{exc.field}: {exc.detail}", file=sys.stderr)
            return 2
        if made.made_base:
            _print_plan(conn, made.basis_id)
        _print_plan(conn, made.koersel_id)
    return 0


def cmd_serve(args) -> int:
    import uvicorn

    from service.edge import uvicorn_options
    from service.settings import Settings

    # h11 with a request-head limit above Ly's own, no uvicorn proxy headers (service.edge).
    uvicorn.run("service.main:app", host=args.host, port=args.port, workers=args.workers,
                log_level=args.log_level, **uvicorn_options(Settings()))
    return 0


def cmd_dev_key(args) -> int:
    from service.devtokens import ensure_key

    print(ensure_key(args.key_file))
    return 0


def cmd_dev_token(args) -> int:
    from service.devtokens import ensure_key, issue
    from service.settings import Settings

    settings = Settings()
    if settings.environment == "production":
        print("refused: development tokens are for development configurations only",
              file=sys.stderr)
        return 2
    key = ensure_key(args.key_file)
    kommuner = [int(k) for k in args.kommune]
    cvr = args.cvr
    if cvr is None and kommuner:
        cvr = _municipality_cvr(kommuner[0])
    print(issue(key, subject=args.subject, roles=args.role, cvr=cvr, kommuner=kommuner,
                level=args.level, name=args.name, ttl_seconds=args.ttl,
                issuer=settings.dev_issuer, audience=settings.dev_audience))
    return 0


def _municipality_cvr(kommunekode: int) -> int | None:
    import csv

    from loaders.reference import KOMMUNER_CSV

    with KOMMUNER_CSV.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if int(row["kommunekode"]) == kommunekode:
                return int(row["cvr_kode"])
    return None


def cmd_api_key(args) -> int:
    import secrets

    from service.auth import hash_api_key

    key = "ly_" + secrets.token_urlsafe(32)
    with psycopg.connect(psycopg_url(_database_url(args))) as conn:
        conn.execute(
            "INSERT INTO ly.api_noegle (navn, hash, roller, cvr_kode, kommuner) "
            "VALUES (%s, %s, %s, %s, %s)",
            [args.name, hash_api_key(key), args.role, args.cvr, [int(k) for k in args.kommune]])
    print(key)
    return 0


# --- imports and sync (loaders.staging, loaders.municipal_list, loaders.bbr, loaders.geofa) ---

def _progress(desc: str):
    """A loaders.staging.Progress drawing a tqdm bar on stderr."""
    from tqdm import tqdm

    from loaders.staging import Progress

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request spoils the bar
    bar = tqdm(desc=desc, unit="række", file=sys.stderr, dynamic_ncols=True, leave=True)

    def total(n: int) -> None:
        bar.total = n
        bar.refresh()

    return Progress(advance=bar.update, total=total), bar


def _print_run(conn, run_id: int, report_path: str | None = None) -> int:
    from loaders import staging

    run = staging.get_run(conn, run_id)
    print(f"run {run_id} ({run['art']}): {run['status']}")
    print("  counters: " + ", ".join(f"{k} {v}" for k, v in sorted(run["taellere"].items())))
    for rule in (run.get("kvalitet") or {}).get("regler", []):
        if not rule["bestaaet"] or rule["regel"] == "afvist_andel":
            print(f"  gate {'ok  ' if rule['bestaaet'] else 'FAIL'}: {rule['forklaring']}")
    rejected = staging.rejections(conn, run_id)
    if rejected:
        rows = len({r["raekke"] for r in rejected})
        if report_path:
            staging.write_rejections(conn, run_id, report_path)
            print(f"  {rows} rejected row(s), every reason in {report_path}:")
        else:
            print(f"  {rows} rejected row(s) (all of them: ly runs report {run_id} --out FILE):")
        for r in rejected[:10]:
            print(f"    row {r['raekke']}: {r['felt']}: {r['aarsag']}")
        if len(rejected) > 10:
            print(f"    … {len(rejected) - 10} more")
    if run.get("fejl"):
        print(f"  stopped: {run['fejl']} (resume with `ly runs resume {run_id}`)")
    return {"publiceret": 0, "klar": 0, "tilbagerullet": 0, "afvist": 3}.get(run["status"], 1)


def _gate(args):
    from loaders.staging import Gate

    return Gate(max_afvist_andel=args.max_afvist, max_pladstab_andel=args.max_pladstab)


def _run_guarded(conn, run_id: int, fn) -> None:
    from loaders import staging

    try:
        fn()
    except staging.RunError:
        raise
    except Exception as exc:
        staging.mark_failed(conn, run_id, f"{type(exc).__name__}: {exc}")
        raise


def cmd_import_list(args) -> int:
    from loaders import municipal_list, staging

    with psycopg.connect(psycopg_url(_database_url(args))) as conn:
        try:
            run_id, source = municipal_list.begin(
                conn, args.file, mapping=args.mapping, kommunekode=args.kommune, crs=args.crs,
                gate=_gate(args), fuld=args.fuld, fix_swapped=args.ret_byttede_akser,
                subjekt=args.subjekt)
        except staging.RunError as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 2
        if args.rapport is None:  # the rejected rows always go to a file
            args.rapport = f"{Path(args.file).stem}-koersel-{run_id}-afviste.csv"
        print(f"run {run_id}: staging {args.file}", file=sys.stderr)
        progress, bar = _progress("indlæser")
        try:
            _run_guarded(conn, run_id, lambda: municipal_list.stage_run(
                conn, run_id, batch_size=args.batch_size, progress=progress, source=source,
                publish=args.publish))
        except staging.RunError as exc:
            print(f"stopped: {exc}", file=sys.stderr)
        finally:
            bar.close()
        return _finish(conn, run_id, args)


def _finish(conn, run_id: int, args) -> int:
    from loaders import staging

    run = staging.get_run(conn, run_id)
    if getattr(args, "publish", False) and run["status"] == "klar":
        progress, bar = _progress("publicerer")
        try:
            staging.publish(conn, run_id, progress=progress)
        except staging.RunError as exc:
            print(f"not published: {exc}", file=sys.stderr)
        finally:
            bar.close()
    return _print_run(conn, run_id, getattr(args, "rapport", None))


def cmd_import_bbr(args) -> int:
    from loaders import bbr, staging

    with psycopg.connect(psycopg_url(_database_url(args))) as conn:
        source = bbr.Datafordeler(args.bbr_url, args.dar_url, api_key=args.api_key)
        run_id = bbr.start(conn, kommuner=args.kommune, gate=_gate(args), subjekt=args.subjekt,
                           bbr_url=args.bbr_url, dar_url=args.dar_url, fuld=not args.ikke_fuld)
        print(f"run {run_id}: reading BBR/DAR", file=sys.stderr)
        progress, bar = _progress("BBR")
        try:
            _run_guarded(conn, run_id, lambda: bbr.stage_run(conn, run_id, source,
                                                             progress=progress))
        except staging.RunError as exc:
            print(f"stopped: {exc}", file=sys.stderr)
        finally:
            bar.close()
        return _finish(conn, run_id, args)


def cmd_runs(args) -> int:
    from loaders import staging

    with psycopg.connect(psycopg_url(_database_url(args))) as conn:
        try:
            if args.action == "list":
                for r in staging.list_runs(conn, args.limit):
                    t = r["taellere"] or {}
                    print(f"{r['id']:>6}  {r['art']:<15} {r['status']:<13} {r['startet'][:19]}  "
                          f"kommune {r['kommunekode'] or '-':<4} laest {t.get('laest', 0)} "
                          f"afviste {t.get('afviste', 0)} opret {t.get('opret', 0)} "
                          f"ret {t.get('ret', 0)} afslut {t.get('afslut', 0)}  {r['kilde']}")
                return 0
            if args.action == "show":
                code = _print_run(conn, args.id, args.rapport)
                if args.kandidater:
                    for c in staging.candidates(conn, args.id):
                        print(f"    row {c['raekke']}: {c['maal']} {c['handling']} "
                              f"{c['objekt_id']} ({c['match']}) {c['aendringer'] or ''}")
                return code
            if args.action == "report":
                n = staging.write_rejections(conn, args.id, args.out)
                print(f"{n} rejection(s) written to {args.out}")
                return 0
            if args.action == "publish":
                progress, bar = _progress("publicerer")
                try:
                    staging.publish(conn, args.id, force=args.force, progress=progress)
                finally:
                    bar.close()
                return _print_run(conn, args.id)
            if args.action == "rollback":
                progress, bar = _progress("ruller tilbage")
                try:
                    staging.rollback(conn, args.id, progress=progress)
                finally:
                    bar.close()
                return _print_run(conn, args.id)
            if args.action == "resume":
                return _resume(conn, args)
        except staging.RunError as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 2
    return 2


def _resume(conn, args) -> int:
    from loaders import staging

    run = staging.get_run(conn, args.id)
    progress, bar = _progress("genoptager")
    try:
        if run["art"] == "kommunal_liste":
            from loaders import municipal_list

            _run_guarded(conn, args.id, lambda: municipal_list.stage_run(
                conn, args.id, batch_size=args.batch_size, progress=progress,
                publish=getattr(args, "publish", False)))
        elif run["art"] == "bbr":
            from loaders import bbr

            p = run["parametre"]
            source = bbr.Datafordeler(p["bbr_url"], p["dar_url"], api_key=args.api_key)
            _run_guarded(conn, args.id, lambda: bbr.stage_run(conn, args.id, source,
                                                              progress=progress))
        else:
            raise staging.RunError(f"a {run['art']} run is not resumed; start a new sync "
                                   "(it continues from the cursor)")
    finally:
        bar.close()
    return _finish(conn, args.id, args)


def _add_gate_args(p) -> None:
    p.add_argument("--max-afvist", type=float, default=0.25,
                   help="largest share of rejected rows the gate allows (default 0.25)")
    p.add_argument("--max-pladstab", type=float, default=0.10,
                   help="largest share of its places a municipality may lose (default 0.10)")
    p.add_argument("--subjekt", default="ly-import", help="who is importing (audit trail)")


def build_parser() -> argparse.ArgumentParser:
    from loaders.staging import DEFAULT_BATCH

    parser = argparse.ArgumentParser(prog="ly", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="default: DATABASE_URL or the local database")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("migrate", help="create or upgrade the database schema")
    p.add_argument("--revision", default="head")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("load-municipalities", help="load municipalities and postal-code areas")
    p.set_defaults(func=cmd_load_municipalities)

    p = sub.add_parser("load-demo", help="load the deterministic demo data of every theme")
    p.add_argument("--count", type=int, default=3000,
                   help="objects of the default theme (shelters); the other themes scale with "
                        "the municipalities and postal districts")
    p.add_argument("--seed", type=int, default=6101)
    p.add_argument("--replace", action="store_true", help="end the old demo set and reload")
    p.add_argument("--theme", action="append", metavar="ID",
                   help="only this theme (collection id; repeatable); default every theme")
    p.add_argument("--uden-befolkning", action="store_true",
                   help="without the synthetic population grid (made unless --theme is given)")
    p.set_defaults(func=cmd_load_demo)

    p = sub.add_parser("load-population",
                       help="load a population grid: Danmarks Statistik's file, or synthetic")
    p.add_argument("file", nargs="?", help="DST's befolkning i kvadratnet (CSV)")
    p.add_argument("--kilde", help="the grid's source (default: the file's name)")
    p.add_argument("--periode", help="e.g. 2026-01-01")
    p.add_argument("--aar", type=int, help="the year's persons column (pers<year>; default "
                                           "the newest)")
    p.add_argument("--kolonne", help="the residents column, if none of the usual names")
    p.add_argument("--undertrykt-som", type=int, default=1,
                   help="residents counted for a cell DST suppressed (default 1)")
    p.add_argument("--syntetisk", action="store_true",
                   help="make the synthetic grid from FOLK1A instead of reading a file")
    p.add_argument("--kommune", type=int, action="append", default=[],
                   help="with --syntetisk: only these municipalities (repeatable)")
    p.add_argument("--seed", type=int, default=2026, help="with --syntetisk")
    p.set_defaults(func=cmd_load_population)

    p = sub.add_parser("plan", help="the planner: assign residents to places within reach")
    plans = p.add_subparsers(dest="action", required=True)
    r = plans.add_parser("run", help="make a run (one transaction)")
    r.add_argument("--kommune", type=int, help="kommunekode (default: national)")
    r.add_argument("--scenarie", help="a scenario's name (e.g. uden-uegnede, kun-egnede, "
                                      "med-planlagte, kun-offentlige)")
    r.add_argument("--minutter", type=float, help="walking limit (default 30, at most 60)")
    r.add_argument("--hastighed", type=float, help="walking speed km/h (default 4.5)")
    r.add_argument("--omvej", type=float, help="detour factor (default 1.3)")
    r.add_argument("--tvaers-af-kommuner", action="store_true",
                   help="national: one problem across municipal borders")
    r.add_argument("--net", type=int, help="population grid id (default the newest)")
    r.add_argument("--sammenlign-med", type=int, help="the base run a scenario is compared with")
    r.add_argument("--tema", help="collection id (default the first theme with places)")
    r = plans.add_parser("list", help="the newest runs")
    r.add_argument("--kommune", type=int)
    r.add_argument("--limit", type=int, default=30)
    r = plans.add_parser("show", help="a run's result")
    r.add_argument("id", type=int)
    p.set_defaults(func=cmd_plan)

    from datamodel.access import ROLES

    p = sub.add_parser("dev-key", help="create the local development signing key")
    p.add_argument("--key-file", default=".ly/dev-key.pem")
    p.set_defaults(func=cmd_dev_key)

    p = sub.add_parser("dev-token", help="print a development token")
    p.add_argument("--key-file", default=".ly/dev-key.pem")
    p.add_argument("--subject", default="udvikler@ly.local")
    p.add_argument("--name")
    p.add_argument("--role", action="append", required=True, choices=sorted(ROLES))
    p.add_argument("--kommune", action="append", default=[], help="kommunekode (repeatable)")
    p.add_argument("--cvr", type=int, help="default: the first municipality's CVR")
    p.add_argument("--level", default="substantial", choices=["low", "substantial", "high"])
    p.add_argument("--ttl", type=int, default=8 * 3600, help="seconds")
    p.set_defaults(func=cmd_dev_token)

    p = sub.add_parser("api-key", help="API keys for machine clients")
    keys = p.add_subparsers(dest="action", required=True)
    k = keys.add_parser("create", help="create a key; it is printed once, only a hash is kept")
    k.add_argument("--name", required=True)
    k.add_argument("--role", action="append", required=True, choices=sorted(ROLES))
    k.add_argument("--cvr", type=int)
    k.add_argument("--kommune", action="append", default=[])
    k.set_defaults(func=cmd_api_key)

    p = sub.add_parser("import-list", help="stage (and publish) a municipal list of shelters")
    p.add_argument("file", help="CSV, XLSX, GeoPackage, Shapefile or GeoJSON")
    p.add_argument("--mapping", help="column mapping (JSON); see README")
    p.add_argument("--kommune", type=int, help="the municipality whose list this is")
    p.add_argument("--crs", help="EPSG:25832, EPSG:4326 or CRS84 (default: the file's, or "
                                 "detected)")
    p.add_argument("--publish", action="store_true", help="publish when the gate passes")
    p.add_argument("--fuld", action="store_true",
                   help="the list is complete: end the municipality's shelters of its types that "
                        "it does not have")
    p.add_argument("--ret-byttede-akser", action="store_true",
                   help="correct rows with swapped axes instead of rejecting them")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                   help="source rows per committed batch (default %(default)s)")
    p.add_argument("--rapport", help="CSV file for the rejected rows")
    _add_gate_args(p)
    p.set_defaults(func=cmd_import_list)

    p = sub.add_parser("import-bbr", help="stage (and publish) sikringsrum from BBR/DAR")
    p.add_argument("--kommune", type=int, action="append", default=[],
                   help="kommunekode (repeatable; default all)")
    p.add_argument("--bbr-url", default="https://graphql.datafordeler.dk/BBR/v1")
    p.add_argument("--dar-url", default="https://graphql.datafordeler.dk/DAR/v1")
    p.add_argument("--api-key", default=None, help="Datafordeler API key (or DATAFORDELER_API_KEY)")
    p.add_argument("--ikke-fuld", action="store_true",
                   help="do not end BBR shelters whose building is no longer delivered")
    p.add_argument("--publish", action="store_true")
    p.add_argument("--rapport", help="CSV file for the rejected buildings")
    _add_gate_args(p)
    p.set_defaults(func=cmd_import_bbr)

    from loaders.geofa.cli import add_parser as add_geofa_parser

    add_geofa_parser(sub, _database_url, _progress)

    p = sub.add_parser("runs", help="the log of imports and syncs")
    runs = p.add_subparsers(dest="action", required=True)
    r = runs.add_parser("list", help="the newest runs")
    r.add_argument("--limit", type=int, default=30)
    for name, helptext in (("show", "a run's counters, gate and rejected rows"),
                           ("publish", "publish a staged run (one transaction)"),
                           ("rollback", "undo a published run with new versions"),
                           ("resume", "continue an interrupted run"),
                           ("report", "write a run's rejected rows to a CSV file")):
        r = runs.add_parser(name, help=helptext)
        r.add_argument("id", type=int)
        if name == "show":
            r.add_argument("--kandidater", action="store_true", help="list the changes too")
            r.add_argument("--rapport")
        if name == "publish":
            r.add_argument("--force", action="store_true", help="publish despite a failed gate")
        if name == "resume":
            r.add_argument("--publish", action="store_true")
            r.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                           help="source rows per committed batch (default %(default)s)")
            r.add_argument("--api-key", default=None)
            r.add_argument("--rapport", help="CSV file for the rejected rows")
        if name == "report":
            r.add_argument("--out", required=True)
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("serve", help="serve the API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
