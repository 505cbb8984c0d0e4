"""`ly geofa …`: export and import GeoFA exchange files of any theme (`--tema`, the GeoFA
temakode; the file says which when importing), run the local stand-in, pull from, push to
and sync with GeoFA (SQL API v4; the anonymous WFS for a read-only pull; the sync is the
shelters' workflow for now).

The `ly` command (cli/main.py) adds these subcommands and hands in how it finds the database
and draws progress bars, so loaders never import the command line."""

from __future__ import annotations

import json
import os
import sys


def _url(args) -> str:
    from datamodel.db import psycopg_url

    return psycopg_url(args.resolve_database_url(args))


def _theme(args):
    from loaders.geofa import formats

    return formats.theme(args.tema) if args.tema is not None else None


def cmd_export(args) -> int:
    import psycopg

    from loaders.geofa import formats

    try:
        t = _theme(args) or formats.theme()
    except formats.FormatError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    with psycopg.connect(_url(args)) as conn:
        where, params = "TRUE", []
        if args.kommune:
            where, params = "t.beliggenhedskommune = ANY(%s)", [args.kommune]
        features = formats.register_features(conn, where, params, t=t)
    try:
        path = formats.write_file(features, args.out, args.format, t, profile=args.profil)
    except formats.FormatError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    print(f"{len(features)} objects of {t.temakode} {t.title} written to {path} "
          f"({args.format}, profile {args.profil})")
    return 0


def cmd_import(args) -> int:
    import psycopg

    from loaders.geofa import formats

    try:
        t = _theme(args) or formats.detect_theme(args.file)
        with psycopg.connect(_url(args)) as conn:
            counts = formats.import_file(conn, args.file, t, subjekt=args.subjekt,
                                         dry_run=args.dry_run)
    except (formats.FormatError, OSError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    dry = " (dry run, nothing stored)" if args.dry_run else ""
    print(f"{args.file}: {t.temakode} {t.title}{dry}: "
          + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def cmd_standin(args) -> int:
    import psycopg

    from loaders.geofa import standin

    with psycopg.connect(_url(args)) as conn:
        users = [standin.municipal_user(conn, k, args.kodeord) for k in args.kommune]
    standin.serve(_url(args), users, host=args.host, port=args.port)
    return 0


def cmd_sync(args) -> int:
    import psycopg

    from loaders import staging
    from loaders.geofa import sync
    from loaders.geofa.client import GeoFAClient

    password = args.kodeord or os.environ.get("GEOFA_PASSWORD")
    client = GeoFAClient(args.url, args.bruger, password)
    with psycopg.connect(_url(args)) as conn:
        cvr = args.cvr
        if cvr is None:
            row = conn.execute("SELECT cvr_kode FROM ly.kommune WHERE kommunekode = %s",
                               [args.kommune]).fetchone()
            if row is None:
                print("refused: give --kommune (a municipality code) or --cvr", file=sys.stderr)
                return 2
            cvr = row[0]
        target = sync.Target(cvr_kode=cvr, kommunekode=args.kommune, overlap_seconds=args.overlap)
        progress, bar = args.make_progress(f"GeoFA {args.action}")
        try:
            run_id = sync.sync(conn, client, target, policy=sync.Policy.load(args.politik),
                               mode=args.action, wfs=args.wfs, dry_run=args.dry_run,
                               subjekt=args.subjekt, progress=progress)
        except staging.RunError as exc:
            print(f"stopped: {exc}", file=sys.stderr)
            return 2
        finally:
            bar.close()
        rep = sync.report(conn, run_id)
    run = rep["koersel"]
    print(f"run {run_id} ({run['art']}, {args.action}{', dry run' if args.dry_run else ''}): "
          f"{run['status']}")
    print("  counters: " + ", ".join(f"{k} {v}" for k, v in sorted(run["taellere"].items())))
    for c in rep["aendringer"]:
        print(f"  {c['maal']:<5} {c['handling']:<6} {c['objekt_id']} "
              f"{json.dumps(c['aendringer'], ensure_ascii=False) if c['aendringer'] else ''}"
              f"{'  (' + c['bemaerkning'] + ')' if c['bemaerkning'] else ''}")
    for c in rep["konflikter"]:
        print(f"  CONFLICT {c['objekt_id']} {c['felt']}: Ly {c['ly']!r} / GeoFA {c['geofa']!r} "
              f"(was {c['grundlag']!r}) -> {c['vinder']}: {c['begrundelse']}")
    return 0 if run["status"] in ("publiceret", "klar") else 3


def add_parser(sub, database_url, progress) -> None:
    """`database_url(args)` -> the database URL; `progress(desc)` -> (Progress, bar)."""
    p = sub.add_parser("geofa", help="GeoFA exchange formats and two-way sync")
    p.set_defaults(resolve_database_url=database_url, make_progress=progress)
    geofa = p.add_subparsers(dest="action", required=True)

    e = geofa.add_parser("export", help="write a theme's register as a GeoFA exchange file")
    e.add_argument("out")
    e.add_argument("--tema", type=int, help="the GeoFA temakode (default: the first theme)")
    e.add_argument("--format", choices=["geojson", "gml", "gpkg", "shp"], default="geojson")
    e.add_argument("--profil", choices=["ly", "geofa"], default="ly",
                   help="geofa: exactly GeoFA's attributes; ly: also Ly's own (default)")
    e.add_argument("--kommune", type=int, action="append", default=[])
    e.set_defaults(func=cmd_export)

    i = geofa.add_parser("import", help="write a GeoFA exchange file into a theme's register "
                                        "(new versions where it differs; all or nothing)")
    i.add_argument("file", help="GeoJSON, GML, GeoPackage or Shapefile (EPSG:25832)")
    i.add_argument("--tema", type=int, help="the GeoFA temakode (default: what the file says)")
    i.add_argument("--dry-run", action="store_true", help="count the changes, store nothing")
    i.add_argument("--subjekt", default="ly-geofa-import", help="who is importing (audit)")
    i.set_defaults(func=cmd_import)

    s = geofa.add_parser("standin", help="serve a local GeoFA stand-in (SQL API and WFS)")
    s.add_argument("--kommune", type=int, action="append", required=True,
                   help="a municipal user kom<kode> per municipality (repeatable)")
    s.add_argument("--kodeord", default="hemmeligt")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765)
    s.set_defaults(func=cmd_standin)

    for name, helptext in (("pull", "bring GeoFA's changes into Ly"),
                           ("push", "send Ly's changes to GeoFA"),
                           ("sync", "both ways, conflicts resolved by the policy")):
        c = geofa.add_parser(name, help=helptext)
        c.add_argument("--url", required=True, help="GeoFA's base URL (e.g. the stand-in's)")
        c.add_argument("--bruger", help="GeoFA user (e.g. kom101)")
        c.add_argument("--kodeord", help="password (or GEOFA_PASSWORD)")
        c.add_argument("--kommune", type=int, help="the user's municipality")
        c.add_argument("--cvr", type=int, help="the authority whose objects are synced "
                                               "(default: the municipality's)")
        c.add_argument("--politik", help="merge policy (JSON): default, felter, uafgjort, brugere")
        c.add_argument("--overlap", type=int, default=600, help="seconds re-read before the "
                                                                "cursor (default 600)")
        c.add_argument("--dry-run", action="store_true", help="show the diff, write nothing")
        c.add_argument("--wfs", action="store_true", help="pull from the anonymous WFS "
                                                          "(off_kode 1 only; never deletes)")
        c.add_argument("--subjekt", default="ly-geofa-sync")
        c.set_defaults(func=cmd_sync)
