"""`ly`: migrate the database, load reference and demo data, serve the API.

    ly migrate                 create or upgrade the schema (Alembic) and sync code lists
    ly load-municipalities     load the 98 municipalities and the postal-code areas
    ly load-demo [--count N]   load the deterministic demo register
    ly serve [--port 8000]     serve the API with uvicorn
    ly dev-key                 create the local development signing key
    ly dev-token --role R ...  print a development token (development configurations only)
    ly api-key create --name N --role R ...   create an API key for a machine client
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
    from loaders.demo import load_demo

    with psycopg.connect(psycopg_url(_database_url(args))) as conn:
        n = load_demo(conn, count=args.count, seed=args.seed, replace=args.replace)
    print(f"loaded {n} demo shelters" if n else "demo shelters already loaded (use --replace)")
    return 0


def cmd_serve(args) -> int:
    import uvicorn

    uvicorn.run("service.main:app", host=args.host, port=args.port, workers=args.workers,
                log_level=args.log_level, proxy_headers=True)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ly", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="default: DATABASE_URL or the local database")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("migrate", help="create or upgrade the database schema")
    p.add_argument("--revision", default="head")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("load-municipalities", help="load municipalities and postal-code areas")
    p.set_defaults(func=cmd_load_municipalities)

    p = sub.add_parser("load-demo", help="load the deterministic demo register")
    p.add_argument("--count", type=int, default=3000)
    p.add_argument("--seed", type=int, default=6101)
    p.add_argument("--replace", action="store_true", help="end the old demo set and reload")
    p.set_defaults(func=cmd_load_demo)

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
