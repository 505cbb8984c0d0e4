"""A local GeoFA for tests and demonstrations: an FKG-shaped PostGIS schema generated from
GeoFA's official schema files, behind a small HTTP facade that answers the SQL API and WFS
GetFeature as GeoFA documents them. Nothing here talks to the real GeoFA.

Schema (`geofa_standin` by default) of one theme (`theme`, default the shelters, 6101),
generated from GeoFA's published files (copies of GeoDanmarkGeoFA/Database @157e3cd: the
theme's meta and table files and `generel` in `datamodel/geofa/`, the code-list tables in
`loaders/data/geofa/tables/`, see loaders/data/README.md):
- code-list tables `d_*` with GeoFA's own column names (`ja_nej_kode`, `ja_nej`, …) and values
  from Ly's code lists (which are GeoFA's);
- `generel` (the generic attributes) and the theme's table (`t_6101_beskyt_rum_t`), with
  their keys, foreign keys and indexes as the table files give them; geometry as the table
  file says (MultiPoint EPSG:25832 for shelters);
- the theme's views (`t_6101_beskyt_rum`, current versions, and `hist_t_6101_beskyt_rum`,
  all versions) with the attributes, order and text twins of the published meta file
  (temakode, temanavn, cvr_navn, kommunekode, …);
- INSTEAD OF triggers as GeoFA has them (OpenFKG's trigger generator): an insert mints
  `versions_id`, takes or mints `objekt_id` (refused when a current version with it exists),
  sets `systid_fra` = `oprettet` = now(); an update refuses a changed `objekt_id`, closes the
  current version and writes a new one; a delete only closes the current version. Geometry is
  made Multi; `bruger_id` is the signed-in user.
- access rules as GeoFA's SQL API rewrites them: anonymous readers see `off_kode` 1; a user
  sees `off_kode` 1 and 3 and everything of its own municipality; a write outside the user's
  municipality is a LIMIT error and nothing is written.

HTTP facade (`StandIn`, a threaded stdlib server on loopback):
- `POST /api/v4/oauth` — password and refresh-token grants; bearer tokens valid one hour;
- `POST /api/v4/sql` (bearer) and `POST /api/v4/sql/database/fkg` (anonymous) — `q` with
  `:name` parameters, `params` one object or a list (one transaction for all), `srs` (default
  4326). Selects answer a GeoJSON FeatureCollection; writes answer `affected_rows` and the
  `returning` rows; an update or delete that changes nothing is a `COUNT 0` error; a rule
  violation a `LIMIT` error; `auth_check.statement` holds the statement as run;
- `GET /ows/fkg/fkg` (anonymous) and `GET /wfs/{user}@fkg/fkg/{srid}` (HTTP Basic) — WFS
  GetFeature with the theme's `typeName` (`fkg:fkg.t_6101_beskyt_rum`), `outputFormat`
  `application/json` or GML 3, `srsName`, `count`/`maxFeatures` and `startIndex`.

Loaders must not import the service, so the facade is plain `http.server`.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg

from datamodel import themes
from datamodel.codelists import load_codelists
from datamodel.themes import GEOFA_DIR, Theme
from loaders.geofa import formats

DATA = Path(__file__).resolve().parent.parent / "data" / "geofa"
SCHEMA = "geofa_standin"
#: The theme the stand-in serves unless told otherwise: the shelters, as the sync.
THEME = themes.by_temakode(6101)
TOKEN_SECONDS = 3600


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class User:
    username: str
    password: str
    cvr_kode: int
    kommunekode: int | None


def municipal_user(conn, kommunekode: int, password: str = "hemmeligt") -> User:
    """GeoFA's municipal user `kom<kode>` with the municipality's CVR."""
    (cvr,) = conn.execute("SELECT cvr_kode FROM ly.kommune WHERE kommunekode = %s",
                          [kommunekode]).fetchone()
    return User(f"kom{kommunekode}", password, cvr, kommunekode)


# --- the schema ----------------------------------------------------------------------------

def _codelist_ddl(table: dict, schema: str) -> tuple[str, list[str], list[tuple]]:
    """CREATE TABLE for one `d_*` table file, and its rows from Ly's copy of the list."""
    name = table["name"]
    cols = [(c["name"], c["type"], c["is_nullable"]) for c in table["columns"]]
    pk = [c["name"] for c in table["columns"] if c.get("_is_primary")]
    body = ",\n  ".join(f"{n} {t}{'' if nullable else ' NOT NULL'}" for n, t, nullable in cols)
    ddl = (f"CREATE TABLE {schema}.{name} (\n  {body},\n  CONSTRAINT {name}_pk PRIMARY KEY "
           f"({', '.join(pk)}))")
    names = [n for n, _, _ in cols]
    rows = []
    for c in load_codelists()[name].values:
        values = {names[0]: c.kode, names[1]: c.tekst, "aktiv": int(c.aktiv),
                  "begrebsdefinition": c.begrebsdefinition, **c.extra}
        rows.append(tuple(values.get(n) for n in names))
    return ddl, names, rows


def _table_ddl(table: dict, schema: str) -> list[str]:
    name = table["name"]
    cols = []
    for c in table["columns"]:
        cols.append(f"{c['name']} {c['type']}{'' if c['is_nullable'] else ' NOT NULL'}")
    for con in table.get("constraints") or []:
        if con["constraint"] == "primary":
            cols.append(f"CONSTRAINT {con['name']} PRIMARY KEY ({', '.join(con['columns'])})")
        elif con["constraint"] == "foreign":
            cols.append(f"CONSTRAINT {con['name']} FOREIGN KEY ({', '.join(con['columns'])}) "
                        f"REFERENCES {schema}.{con['referenced_table']} "
                        f"({', '.join(con['referenced_columns'])})")
    out = [f"CREATE TABLE {schema}.{name} (\n  " + ",\n  ".join(cols) + "\n)"]
    for idx in table.get("indices") or []:
        if idx["name"].endswith("_pk"):
            continue
        out.append(f"CREATE {'UNIQUE ' if idx['unique'] else ''}INDEX {idx['name']} ON "
                   f"{schema}.{name} USING {idx['method']} ({', '.join(idx['columns'])})")
    return out


def _view_select(meta: dict, generel: dict, theme: dict, tables: dict[str, dict],
                 schema: str, temakode: int) -> str:
    """The published view's SELECT list and joins, from the meta file's attribute order: a
    base column from `generel` (g) or the theme table (t), the constants temakode/temanavn,
    or an attribute of the code list the preceding code column refers to (its text twin,
    or `kommunekode` of the responsible authority)."""
    gcols = {c["name"]: c for c in generel["columns"]}
    tcols = {c["name"]: c for c in theme["columns"]}
    refs: dict[str, tuple[str, str]] = {}  # code column -> (d table, key column)
    for table in (generel, theme):
        for con in table.get("constraints") or []:
            if con["constraint"] == "foreign" and con["referenced_table"].startswith("d_"):
                refs[con["columns"][0]] = (con["referenced_table"], con["referenced_columns"][0])
    fields = sorted(meta["fields"].items(), key=lambda kv: kv[1]["num"])
    select, joins, last_code = [], [], None
    aliases: dict[str, str] = {}
    for name, _ in fields:
        if name == "temakode":
            select.append(f"{int(temakode)} AS temakode")
        elif name == "temanavn":
            select.append(f"'{theme['name']}'::text AS temanavn")
        elif name in gcols:
            select.append(f"g.{name}")
        elif name in tcols:
            select.append(f"t.{name}")
        else:
            if last_code is None:
                raise ValueError(f"meta attribute {name} follows no code column")
            dtable, key = refs[last_code]
            if last_code not in aliases:
                alias = f"d{len(aliases)}"
                aliases[last_code] = alias
                base = "g" if last_code in gcols else "t"
                joins.append(f"LEFT JOIN {schema}.{dtable} {alias} ON {alias}.{key} = "
                             f"{base}.{last_code}")
            alias = aliases[last_code]
            dcols = [c["name"] for c in tables[dtable]["columns"]]
            column = name if name in dcols else dcols[1]  # the text twin is the 2nd column
            select.append(f"{alias}.{column} AS {name}")
        if name in refs:
            last_code = name
    return (",\n    ".join(select), "\n  ".join(joins))


def schema_sql(schema: str = SCHEMA, t: Theme = THEME) -> list[str]:
    """Every statement that creates the stand-in's schema of theme `t` (empty of data)."""
    if not (t.meta_file and t.geofa_table_file):
        raise ValueError(f"{t.collection_id}: the theme has no published GeoFA files")
    view = t.geofa_view
    meta = t.meta
    generel = _json(GEOFA_DIR / "tables" / "generel.json")
    theme = _json(GEOFA_DIR / "tables" / t.geofa_table_file)
    tables = {p.stem: json.loads(p.read_text(encoding="utf-8"))
              for p in sorted((DATA / "tables").glob("d_*.json"))}
    out = [f"DROP SCHEMA IF EXISTS {schema} CASCADE", f"CREATE SCHEMA {schema}"]
    for name, table in tables.items():
        ddl, names, rows = _codelist_ddl(table, schema)
        out.append(ddl)
        if rows:
            placeholders = ", ".join("(" + ", ".join(_literal(v) for v in r) + ")" for r in rows)
            out.append(f"INSERT INTO {schema}.{name} ({', '.join(names)}) VALUES {placeholders}")
    out += _table_ddl(generel, schema)
    out += _table_ddl(theme, schema)
    cols, joins = _view_select(meta, generel, theme, tables, schema, t.temakode)
    # The SQL API's access rules (as GeoFA rewrites statements): the public sees off_kode 1;
    # a user off_kode 1 and 3 and all of its own municipality.
    rule = ("(CASE WHEN nullif(current_setting('geofa.bruger', true), '') IS NULL "
            "THEN g.off_kode = 1 ELSE g.off_kode IN (1, 3) OR d0.kommunekode = "
            "nullif(current_setting('geofa.kommunekode', true), '')::int END)")
    base = (f"SELECT {cols}\n  FROM {schema}.generel g JOIN {schema}.{theme['name']} t "
            f"USING (versions_id)\n  {joins}")
    out.append(f"CREATE VIEW {schema}.{view} AS {base}\n  WHERE g.systid_til IS NULL AND {rule}")
    out.append(f"CREATE VIEW {schema}.{t.history_view} AS {base}\n  WHERE {rule}")
    gnames = [c["name"] for c in generel["columns"]]
    tnames = [c["name"] for c in theme["columns"]]
    gvals = ", ".join(f"NEW.{c}" for c in gnames)
    tvals = ", ".join(f"NEW.{c}" for c in tnames)
    out.append(f"""
CREATE FUNCTION {schema}.{view}_trg() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bruger text := nullif(current_setting('geofa.bruger', true), '');
    kommune int := nullif(current_setting('geofa.kommunekode', true), '')::int;
    ny_kommune int;
BEGIN
    IF bruger IS NULL THEN
        RAISE EXCEPTION 'LIMIT: anonymous users may not write' USING ERRCODE = 'GF403';
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF TG_OP = 'UPDATE' AND NEW.objekt_id IS DISTINCT FROM OLD.objekt_id THEN
            RAISE EXCEPTION 'objekt_id kan ikke ændres' USING ERRCODE = 'GF422';
        END IF;
        IF OLD.kommunekode IS DISTINCT FROM kommune THEN
            RAISE EXCEPTION 'LIMIT: object % is outside municipality %', OLD.objekt_id, kommune
                USING ERRCODE = 'GF403';
        END IF;
        UPDATE {schema}.generel SET systid_til = now()
            WHERE versions_id = OLD.versions_id AND systid_til IS NULL;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        NEW.oprettet := OLD.oprettet;
    ELSE
        NEW.objekt_id := coalesce(NEW.objekt_id, gen_random_uuid());
        IF EXISTS (SELECT 1 FROM {schema}.generel WHERE objekt_id = NEW.objekt_id
                   AND systid_til IS NULL) THEN
            RAISE EXCEPTION 'objekt_id % findes allerede', NEW.objekt_id
                USING ERRCODE = 'unique_violation';
        END IF;
        NEW.oprettet := now();
        NEW.cvr_kode := coalesce(NEW.cvr_kode,
                                 nullif(current_setting('geofa.cvr', true), '')::int);
    END IF;
    SELECT kommunekode INTO ny_kommune FROM {schema}.d_basis_ansvarlig_myndighed
        WHERE cvr_kode = NEW.cvr_kode;
    IF ny_kommune IS DISTINCT FROM kommune THEN
        RAISE EXCEPTION 'LIMIT: cvr_kode % is not an authority of municipality %',
            NEW.cvr_kode, kommune USING ERRCODE = 'GF403';
    END IF;
    NEW.versions_id := gen_random_uuid();
    NEW.systid_fra := now();
    NEW.systid_til := NULL;
    NEW.bruger_id := bruger;
    NEW.geometri := ST_Multi(NEW.geometri);
    IF ST_SRID(NEW.geometri) <> 25832 THEN
        NEW.geometri := ST_Transform(NEW.geometri, 25832);
    END IF;
    INSERT INTO {schema}.generel ({', '.join(gnames)}) VALUES ({gvals});
    INSERT INTO {schema}.{theme['name']} ({', '.join(tnames)}) VALUES ({tvals});
    RETURN NEW;
END $$""")
    out.append(f"CREATE TRIGGER skriv INSTEAD OF INSERT OR UPDATE OR DELETE ON {schema}.{view} "
               f"FOR EACH ROW EXECUTE FUNCTION {schema}.{view}_trg()")
    out.append(f"""CREATE TABLE {schema}.bruger (
  brugernavn text PRIMARY KEY, kodeord text NOT NULL, cvr_kode integer NOT NULL,
  kommunekode integer)""")
    out.append(f"""CREATE TABLE {schema}.token (
  token text PRIMARY KEY, brugernavn text NOT NULL REFERENCES {schema}.bruger,
  udloeber timestamptz NOT NULL, art text NOT NULL)""")
    return out


def _literal(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, (int, float)):
        return str(v)
    return "'" + str(v).replace("'", "''") + "'"


def create_schema(conn: psycopg.Connection, users: list[User] = (), schema: str = SCHEMA,
                  theme: Theme = THEME) -> None:
    """(Re)create the stand-in's schema of `theme` with its users, in one transaction."""
    with conn.transaction():
        for stmt in schema_sql(schema, theme):
            conn.execute(stmt)
        for u in users:
            conn.execute(f"INSERT INTO {schema}.bruger VALUES (%s, %s, %s, %s)",
                         [u.username, u.password, u.cvr_kode, u.kommunekode])


# --- the HTTP facade -----------------------------------------------------------------------

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")
_RELATION = re.compile(r"\bfkg\.([A-Za-z_][A-Za-z0-9_]*)", re.I)
_KEYWORD = re.compile(r"^\s*(select|with|insert|update|delete)\b", re.I)


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class StandIn:
    """The HTTP facade over the stand-in schema (of `theme`) in the database at `url`."""

    def __init__(self, url: str, schema: str = SCHEMA, host: str = "127.0.0.1", port: int = 0,
                 theme: Theme = THEME):
        self.db_url, self.schema, self.theme = url, schema, theme
        self.view = theme.geofa_view
        self.allowed = {self.view, theme.history_view} | {
            p.stem for p in (DATA / "tables").glob("d_*")}
        self.requests: list[dict] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30  # an idle keep-alive connection is closed after this

            def log_message(self, *args):
                pass

            def _send(self, status: int, body: Any, ctype: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else json.dumps(
                    body, ensure_ascii=False, default=str).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _dispatch(self, method: str) -> None:
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    raw = self.rfile.read(length) if length else b""
                    standin.requests.append({"method": method, "path": self.path,
                                             "body": raw.decode("utf-8", "replace")})
                    status, body, ctype = standin.handle(method, self.path, dict(self.headers),
                                                         raw)
                except ApiError as exc:
                    status, ctype = exc.status, "application/json"
                    body = {"success": False, "message": exc.message, "code": exc.code}
                self._send(status, body, ctype)

            def do_GET(self):
                self._dispatch("GET")

            def do_POST(self):
                self._dispatch("POST")

        self.server = ThreadingHTTPServer((host, port), Handler)
        # keep-alive connections of clients must not hold up a shutdown
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # --- lifecycle ---
    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "StandIn":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- requests ---
    def handle(self, method: str, target: str, headers: dict, raw: bytes):
        parts = urlsplit(target)
        path = parts.path.rstrip("/")
        query = {k.lower(): v[-1] for k, v in parse_qs(parts.query).items()}
        if method == "POST" and path == "/api/v4/oauth":
            return 200, self.oauth(self._body(raw)), "application/json"
        if method == "POST" and path == "/api/v4/sql":
            return 200, self.sql(self._body(raw), self._bearer(headers)), "application/json"
        if method == "POST" and path == "/api/v4/sql/database/fkg":
            return 200, self.sql(self._body(raw), None), "application/json"
        if method == "GET" and path == "/ows/fkg/fkg":
            return self.wfs(query, None)
        m = re.fullmatch(r"/wfs/([^@/]+)@fkg/fkg/(\d+)", path)
        if method == "GET" and m:
            user = self._basic(headers, m.group(1))
            query.setdefault("srsname", f"EPSG:{m.group(2)}")
            return self.wfs(query, user)
        raise ApiError(404, f"{method} {path}: not a GeoFA stand-in resource", "NOT_FOUND")

    @staticmethod
    def _body(raw: bytes) -> dict:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise ApiError(400, "the body is not JSON", "BAD_REQUEST") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object", "BAD_REQUEST")
        return body

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.db_url)

    def _user(self, conn, username: str) -> dict:
        row = conn.execute(f"SELECT brugernavn, cvr_kode, kommunekode FROM {self.schema}.bruger "
                           "WHERE brugernavn = %s", [username]).fetchone()
        return {"brugernavn": row[0], "cvr_kode": row[1], "kommunekode": row[2]} if row else None

    def oauth(self, body: dict) -> dict:
        grant = body.get("grant_type")
        with self._connect() as conn:
            if grant == "password":
                if body.get("database") != "fkg":
                    raise ApiError(400, "database must be fkg", "INVALID_REQUEST")
                row = conn.execute(f"SELECT brugernavn FROM {self.schema}.bruger WHERE "
                                   "brugernavn = %s AND kodeord = %s",
                                   [body.get("username"), body.get("password")]).fetchone()
                if row is None:
                    raise ApiError(401, "invalid username or password", "INVALID_GRANT")
                username = row[0]
            elif grant == "refresh_token":
                row = conn.execute(f"SELECT brugernavn FROM {self.schema}.token WHERE token = %s "
                                   "AND art = 'refresh' AND udloeber > now()",
                                   [body.get("refresh_token")]).fetchone()
                if row is None:
                    raise ApiError(401, "invalid refresh token", "INVALID_GRANT")
                username = row[0]
            else:
                raise ApiError(400, "grant_type must be password or refresh_token",
                               "UNSUPPORTED_GRANT_TYPE")
            access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
            now = datetime.now(timezone.utc)
            conn.execute(f"INSERT INTO {self.schema}.token VALUES (%s, %s, %s, 'access'), "
                         "(%s, %s, %s, 'refresh')",
                         [access, username, now + timedelta(seconds=TOKEN_SECONDS), refresh,
                          username, now + timedelta(days=1)])
        return {"access_token": access, "token_type": "bearer", "expires_in": TOKEN_SECONDS,
                "refresh_token": refresh, "scope": ""}

    def _bearer(self, headers: dict) -> dict:
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            raise ApiError(401, "a bearer token is required (POST /api/v4/oauth)", "UNAUTHORIZED")
        with self._connect() as conn:
            row = conn.execute(f"SELECT brugernavn FROM {self.schema}.token WHERE token = %s "
                               "AND art = 'access' AND udloeber > now()",
                               [auth[7:].strip()]).fetchone()
            if row is None:
                raise ApiError(401, "the token is invalid or has expired", "UNAUTHORIZED")
            return self._user(conn, row[0])

    def _basic(self, headers: dict, username: str) -> dict:
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        try:
            user, password = base64.b64decode(auth[6:]).decode().split(":", 1)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(401, "HTTP Basic authentication is required", "UNAUTHORIZED") from None
        with self._connect() as conn:
            ok = conn.execute(f"SELECT 1 FROM {self.schema}.bruger WHERE brugernavn = %s AND "
                              "kodeord = %s", [user, password]).fetchone()
            if not ok or user != username:
                raise ApiError(401, "wrong user or password", "UNAUTHORIZED")
            return self._user(conn, user)

    def _act(self, conn, user: dict | None) -> None:
        conn.execute("SELECT set_config('geofa.bruger', %s, true), "
                     "set_config('geofa.kommunekode', %s, true), set_config('geofa.cvr', %s, true)",
                     ["" if user is None else user["brugernavn"],
                      "" if user is None or user["kommunekode"] is None
                      else str(user["kommunekode"]),
                      "" if user is None else str(user["cvr_kode"])])

    def _rewrite(self, q: str) -> tuple[str, str]:
        if not isinstance(q, str) or not q.strip():
            raise ApiError(400, "q: a statement is required", "BAD_REQUEST")
        if ";" in q.strip().rstrip(";"):
            raise ApiError(400, "q: one statement at a time", "BAD_REQUEST")
        m = _KEYWORD.match(q)
        if not m:
            raise ApiError(400, "q: only select, insert, update and delete are allowed",
                           "BAD_REQUEST")
        for rel in _RELATION.findall(q):
            if rel.lower() not in self.allowed:
                raise ApiError(400, f"q: fkg.{rel} is not a published relation", "BAD_REQUEST")
        if re.search(r"\b(geofa_standin|pg_catalog|information_schema|ly)\.", q, re.I):
            raise ApiError(400, "q: only fkg relations may be used", "BAD_REQUEST")
        statement = _RELATION.sub(lambda r: f"{self.schema}.{r.group(1)}", q.strip().rstrip(";"))
        return m.group(1).lower(), statement

    @staticmethod
    def _params(statement: str, params: dict) -> tuple[str, dict]:
        names = set(_PARAM.findall(statement))
        missing = names - set(params)
        if missing:
            raise ApiError(400, f"params: missing {', '.join(sorted(missing))}", "BAD_REQUEST")
        converted = _PARAM.sub(lambda m: f"%({m.group(1)})s", statement.replace("%", "%%"))
        values = {k: (json.dumps(v) if isinstance(v, (dict, list)) else v)
                  for k, v in params.items()}
        return converted, values

    def sql(self, body: dict, user: dict | None) -> dict:
        kind, statement = self._rewrite(body.get("q"))
        srs = int(body.get("srs") or 4326)
        params = body.get("params")
        sets = params if isinstance(params, list) else [params or {}]
        with self._connect() as conn:
            try:
                with conn.transaction():
                    self._act(conn, user)
                    if kind in ("select", "with"):
                        stmt, values = self._params(statement, sets[0])
                        result = self._select(conn, stmt, values, srs)
                    else:
                        result = self._write(conn, kind, statement, sets, srs)
            except psycopg.Error as exc:
                message = (exc.diag.message_primary or str(exc)).strip()
                code = "LIMIT" if message.startswith("LIMIT") else "SQL_ERROR"
                raise ApiError(400, message, code) from None
        result["auth_check"] = {"statement": statement, "user": user and user["brugernavn"]}
        return result

    def _geometry_columns(self, conn, stmt: str, values: dict) -> list[str]:
        cur = conn.execute(f"SELECT * FROM ({stmt}) AS q LIMIT 0", values)
        (geom_oid,) = conn.execute("SELECT 'geometry'::regtype::oid").fetchone()
        return [d.name for d in cur.description if d.type_code == geom_oid]

    def _select(self, conn, stmt: str, values: dict, srs: int) -> dict:
        geoms = self._geometry_columns(conn, stmt, values)
        geom = (f"ST_AsGeoJSON(ST_Transform(q.{geoms[0]}, {srs}), 8)::json" if geoms
                else "NULL::json")
        rows = conn.execute(f"SELECT row_to_json(q), {geom} FROM ({stmt}) AS q",
                            values).fetchall()
        features = [{"type": "Feature", "properties": {k: v for k, v in p.items()
                                                       if k not in geoms}, "geometry": g}
                    for p, g in rows]
        return {"success": True, "forStore": True, "type": "FeatureCollection",
                "features": features}

    def _write(self, conn, kind: str, statement: str, sets: list[dict], srs: int) -> dict:
        affected, returning = 0, []
        for values in sets:
            stmt, vals = self._params(statement, values)
            cur = conn.execute(stmt, vals)
            affected += cur.rowcount if cur.rowcount > 0 else 0
            if cur.description:
                names = [d.name for d in cur.description]
                returning += [{n: _plain(v) for n, v in zip(names, r)} for r in cur.fetchall()]
        if kind in ("update", "delete") and affected == 0:
            raise ApiError(400, "COUNT 0: no object was changed (it does not exist, has changed, "
                                "or the rules do not allow it)", "COUNT0")
        return {"success": True, "affected_rows": affected, "returning": returning}

    def wfs(self, query: dict, user: dict | None):
        if query.get("service", "WFS").upper() != "WFS" or \
                query.get("request", "").lower() != "getfeature":
            raise ApiError(400, "only SERVICE=WFS&REQUEST=GetFeature is served", "WFS")
        view = self.view
        type_name = query.get("typename") or query.get("typenames") or ""
        if type_name not in (f"fkg:fkg.{view}", f"fkg.{view}", f"fkg:{view}"):
            raise ApiError(400, f"typeName {type_name!r} is not served (fkg:fkg.{view})", "WFS")
        srid = int(re.sub(r"\D*(\d+)$", r"\1", query.get("srsname", "EPSG:4326")))
        limit = int(query.get("count") or query.get("maxfeatures") or 10000)
        offset = int(query.get("startindex") or 0)
        with self._connect() as conn:
            with conn.transaction():
                self._act(conn, user)
                rows = conn.execute(
                    f"SELECT row_to_json(v), ST_X(ST_GeometryN(v.geometri, 1)), "
                    f"ST_Y(ST_GeometryN(v.geometri, 1)), ST_AsGeoJSON(ST_Transform(v.geometri, "
                    f"%s), 8)::json FROM {self.schema}.{view} v ORDER BY v.objekt_id "
                    f"LIMIT %s OFFSET %s", [srid, limit, offset]).fetchall()
        rows = [({k: v for k, v in p.items() if k != "geometri"}, x, y, g) for p, x, y, g in rows]
        fmt = (query.get("outputformat") or "GML3").lower()
        if fmt in ("application/json", "json", "geojson"):
            return 200, {"type": "FeatureCollection", "name": f"fkg.{view}",
                         "crs": {"type": "name",
                                 "properties": {"name": f"urn:ogc:def:crs:EPSG::{srid}"}},
                         "features": [{"type": "Feature", "id": f"{view}.{p['objekt_id']}",
                                       "geometry": g, "properties": p}
                                      for p, _, _, g in rows]}, "application/json"
        if srid != 25832:
            raise ApiError(400, "the stand-in serves GML in EPSG:25832 only", "WFS")
        features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [x, y]},
                     "properties": p} for p, x, y, _ in rows]
        gml = formats.to_gml(features, formats.theme(self.theme.temakode), profile="geofa")
        return 200, gml.encode("utf-8"), "text/xml; subtype=gml/3.1.1"


def _plain(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    if v is not None and not isinstance(v, (str, int, float, bool, dict, list)):
        return str(v)
    return v


def serve(url: str, users: list[User], host: str = "127.0.0.1", port: int = 8765,
          theme: Theme = THEME) -> None:
    """Create the schema and serve the facade until interrupted (`ly geofa standin`)."""
    with psycopg.connect(url) as conn:
        create_schema(conn, users, theme=theme)
    s = StandIn(url, host=host, port=port, theme=theme)
    print(f"GeoFA stand-in on {s.url} (users: {', '.join(u.username for u in users)})",
          flush=True)
    try:
        s.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        s.server.server_close()

