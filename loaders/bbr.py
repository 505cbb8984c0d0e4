"""Import sikringsrum from BBR, with addresses from DAR, through Datafordeler's GraphQL.

BBR holds one shelter attribute, `byg069Sikringsrumpladser` (places) on `BBR_Bygning`.
Buildings in use (`status` 6, "Opført") with places > 0 are sikringsrum. Each building's
`husnummer` (a DAR Husnummer, the access address) is resolved to road name
(`DAR_NavngivenVej.vejnavn`) and postcode (`DAR_Postnummer.postnr`, `navn`); the point is
`byg404Koordinat` (EPSG:25832). Every query pins one bitemporal instant (`registreringstid`,
`virkningstid`, fixed when the run starts, so a resumed run reads the same snapshot) and pages
with `first`/`after` cursors; DAR lookups go in batches of at most 100 ids.

The import is a staged run (`loaders.staging`), one committed batch per BBR page, so a killed
run resumes from the page after the last committed one. Matching is on `bbr_bygning_id`:
- a new building becomes a sikringsrum (`beskyt_rum_kode` 2) with `pladser_kilde_kode` 1 (BBR);
- a shelter whose places come from BBR (`pladser_kilde_kode` 1) follows BBR's places, address
  and point; one whose places were verified or corrected (other sources) keeps them, and the
  run only records what BBR said;
- with `fuld` (every building of the municipalities was read), a BBR shelter whose building no
  longer qualifies is ended (the quality gate guards against mass loss).
What BBR said is kept apart from the register: `ly.bbr_vaerdi` shows, per building, the values
of the newest published BBR run.

BBR's sikringsrum are shelters (theme 6101, `THEME`): the run writes through that theme's
descriptor (its view, writable attributes and rules), recorded with the run.
"""

from __future__ import annotations

import os
import re
import uuid
from datetime import datetime, timezone
from typing import Any, Iterable

import httpx
import psycopg
from psycopg import sql

from datamodel import themes
from datamodel.rules import Problem, complete, validate_properties
from datamodel.themes import Theme
from loaders import staging
from loaders.staging import Gate, Progress, Rejected, RunError, Staged

ART = "bbr"
STATUS_OPFOERT = "6"
SIKRINGSRUM = 2
KILDE_BBR = 1
DAR_BATCH = 100
#: The theme BBR's sikringsrum are: the shelters.
THEME = themes.by_temakode(6101)
#: Attributes BBR/DAR own on a BBR-managed shelter.
BBR_OWNED = ("pladser", "vejnavn", "husnr", "postnr", "postnr_by", "adr_id")

BYGNING_QUERY = """
query Sikringsrum($first: Int!, $after: String, $registreringstid: DafDateTime,
                  $virkningstid: DafDateTime, $kommunekoder: [String!]) {
  BBR_Bygning(first: $first, after: $after, registreringstid: $registreringstid,
              virkningstid: $virkningstid,
              where: {status: {eq: "6"}, byg069Sikringsrumpladser: {gt: 0},
                      kommunekode: {in: $kommunekoder}}) {
    pageInfo { hasNextPage endCursor }
    edges { node { id_lokalId kommunekode status husnummer byg007Bygningsnummer
                   byg021BygningensAnvendelse byg069Sikringsrumpladser
                   byg404Koordinat { wkt } registreringFra virkningFra } }
  }
}"""
BYGNING_QUERY_ALL = BYGNING_QUERY.replace(", $kommunekoder: [String!]", "").replace(
    ",\n                      kommunekode: {in: $kommunekoder}", "")

_LOOKUP = """
query {op}($first: Int!, $ids: [String!], $registreringstid: DafDateTime,
           $virkningstid: DafDateTime) {{
  {entity}(first: $first, registreringstid: $registreringstid, virkningstid: $virkningstid,
           where: {{id_lokalId: {{in: $ids}}}}) {{
    pageInfo {{ hasNextPage endCursor }}
    edges {{ node {{ {fields} }} }}
  }}
}}"""
HUSNUMMER_QUERY = _LOOKUP.format(op="Husnumre", entity="DAR_Husnummer",
                                 fields="id_lokalId status husnummertekst navngivenVej postnummer")
VEJ_QUERY = _LOOKUP.format(op="Veje", entity="DAR_NavngivenVej", fields="id_lokalId vejnavn")
POSTNUMMER_QUERY = _LOOKUP.format(op="Postnumre", entity="DAR_Postnummer",
                                  fields="id_lokalId postnr navn")


class DatafordelerError(RunError):
    pass


class Datafordeler:
    """A small client for Datafordeler's GraphQL (BBR and DAR). Tests point it at a local
    stand-in; `client` may be any httpx.Client (e.g. with a mock transport)."""

    def __init__(self, bbr_url: str, dar_url: str, *, api_key: str | None = None,
                 timeout: float = 60.0, client: httpx.Client | None = None,
                 page_size: int = 500):
        self.bbr_url, self.dar_url = bbr_url, dar_url
        self.api_key = api_key or os.environ.get("DATAFORDELER_API_KEY")
        self.client = client or httpx.Client(timeout=timeout)
        self.page_size = page_size

    def query(self, url: str, operation: str, query: str, variables: dict) -> dict:
        params = {"apiKey": self.api_key} if self.api_key else None
        try:
            r = self.client.post(url, params=params, json={"operationName": operation,
                                                           "query": query,
                                                           "variables": variables})
        except httpx.HTTPError as exc:
            raise DatafordelerError(f"{operation}: {url} did not answer ({exc})") from None
        if r.status_code != 200:
            raise DatafordelerError(f"{operation}: {url} answered {r.status_code} "
                                    f"{r.text[:200]}")
        try:
            payload = r.json()
        except ValueError:
            raise DatafordelerError(f"{operation}: the answer is not JSON") from None
        if payload.get("errors"):
            raise DatafordelerError(f"{operation}: " + "; ".join(
                e.get("message", "unknown GraphQL error") for e in payload["errors"]))
        if not isinstance(payload.get("data"), dict):
            raise DatafordelerError(f"{operation}: the answer has no data")
        return payload["data"]

    def buildings(self, *, after: str | None, instant: str, kommuner: list[int]
                  ) -> tuple[list[dict], str | None, bool]:
        """One page of sikringsrum buildings: (nodes, endCursor, hasNextPage)."""
        variables: dict[str, Any] = {"first": self.page_size, "after": after,
                                     "registreringstid": instant, "virkningstid": instant}
        query = BYGNING_QUERY_ALL
        if kommuner:
            variables["kommunekoder"] = [f"{k:04d}" for k in kommuner]
            query = BYGNING_QUERY
        data = self.query(self.bbr_url, "Sikringsrum", query, variables)
        conn = data.get("BBR_Bygning") or {}
        info = conn.get("pageInfo") or {}
        nodes = [e["node"] for e in conn.get("edges") or [] if e.get("node")]
        return nodes, info.get("endCursor"), bool(info.get("hasNextPage"))

    def _lookup(self, operation: str, query: str, entity: str, ids: Iterable[str],
                instant: str) -> dict[str, dict]:
        ids = sorted({i for i in ids if i})
        out: dict[str, dict] = {}
        for start in range(0, len(ids), DAR_BATCH):
            chunk = ids[start:start + DAR_BATCH]
            data = self.query(self.dar_url, operation, query,
                              {"first": len(chunk), "ids": chunk, "registreringstid": instant,
                               "virkningstid": instant})
            for e in (data.get(entity) or {}).get("edges") or []:
                node = e.get("node") or {}
                if node.get("id_lokalId"):
                    out[node["id_lokalId"]] = node
        return out

    def addresses(self, husnumre: Iterable[str], instant: str) -> dict[str, dict]:
        """husnummer id -> {vejnavn, husnr, postnr, postnr_by, adr_id}."""
        hus = self._lookup("Husnumre", HUSNUMMER_QUERY, "DAR_Husnummer", husnumre, instant)
        veje = self._lookup("Veje", VEJ_QUERY, "DAR_NavngivenVej",
                            (h.get("navngivenVej") for h in hus.values()), instant)
        post = self._lookup("Postnumre", POSTNUMMER_QUERY, "DAR_Postnummer",
                            (h.get("postnummer") for h in hus.values()), instant)
        out = {}
        for hid, h in hus.items():
            vej = veje.get(h.get("navngivenVej") or "", {})
            pn = post.get(h.get("postnummer") or "", {})
            out[hid] = {"vejnavn": vej.get("vejnavn"), "husnr": h.get("husnummertekst"),
                        "postnr": int(pn["postnr"]) if pn.get("postnr") else None,
                        "postnr_by": pn.get("navn"), "adr_id": hid}
        return out


_WKT_POINT = re.compile(r"^\s*(?:SRID=\d+;)?POINT\s*\(\s*([-+0-9.eE]+)\s+([-+0-9.eE]+)\s*\)\s*$",
                        re.I)


def _point(node: dict) -> tuple[float, float] | None:
    wkt = (node.get("byg404Koordinat") or {}).get("wkt")
    if not wkt:
        return None
    m = _WKT_POINT.match(wkt)
    if not m:
        raise ValueError(f"{wkt!r} is not a POINT")
    return float(m.group(1)), float(m.group(2))


def _places(node: dict) -> int | None:
    v = node.get("byg069Sikringsrumpladser")
    if v in (None, ""):
        return None
    n = float(str(v).replace(",", "."))
    return int(n)


def _current(theme: Theme) -> sql.Composed:
    return sql.SQL("SELECT row_to_json(t), ST_X(t.geometri), ST_Y(t.geometri) FROM {} t "
                   "WHERE t.bbr_bygning_id = %s ORDER BY t.objekt_id").format(
        sql.Identifier("ly", theme.current_view))


def resolve_building(cur, raekke: int, node: dict, address: dict | None,
                     theme: Theme = THEME) -> Staged | Rejected | None:
    """The candidate one BBR building becomes (None: not a sikringsrum)."""
    kilde = {k: v for k, v in node.items() if k != "byg404Koordinat"}
    kilde["wkt"] = (node.get("byg404Koordinat") or {}).get("wkt")
    if address:
        kilde.update({k: v for k, v in address.items() if k != "adr_id"})
    problems: list[Problem] = []
    try:
        bid = uuid.UUID(str(node.get("id_lokalId")))
    except ValueError:
        return Rejected(raekke, [Problem("id_lokalId", f"{node.get('id_lokalId')!r} is not a "
                                                       "UUID")], kilde)
    try:
        places = _places(node)
    except ValueError:
        return Rejected(raekke, [Problem("byg069Sikringsrumpladser",
                                         f"{node.get('byg069Sikringsrumpladser')!r} is not a "
                                         "number")], kilde)
    if str(node.get("status")) != STATUS_OPFOERT or not places or places <= 0:
        return None  # not (or no longer) a sikringsrum in use; handled by `fuld`
    try:
        xy = _point(node)
    except ValueError as exc:
        return Rejected(raekke, [Problem("byg404Koordinat", str(exc))], kilde)
    found = cur.execute(_current(theme), [bid]).fetchall()
    if len(found) > 1:
        return Rejected(raekke, [Problem("id_lokalId", (
            f"building {bid} has {len(found)} shelters in the register; resolve by hand"))], kilde)
    addr = {k: v for k, v in (address or {}).items() if v is not None}
    remark = None if address else f"husnummer {node.get('husnummer')} not found in DAR"
    if not found:
        if xy is None:
            return Rejected(raekke, [Problem("byg404Koordinat", "the building has no "
                                                                "coordinates")], kilde)
        values = {"beskyt_rum_kode": SIKRINGSRUM, "pladser": places,
                  "pladser_kilde_kode": KILDE_BBR, "bbr_bygning_id": str(bid), "oprindkode": 0,
                  "statuskode": 3, "off_kode": 3, "klargjort_kode": 3, **addr}
        if addr.get("vejnavn") and addr.get("husnr"):
            values["navn"] = f"Sikringsrum, {addr['vejnavn']} {addr['husnr']}"
        values = validate_properties(values, problems, theme=theme)
        record = complete(values, problems, theme)
        if problems:
            return Rejected(raekke, problems, kilde)
        return Staged(raekke, "opret", uuid.uuid4(), record=record,
                      ewkt=f"SRID=25832;POINT({xy[0]:.3f} {xy[1]:.3f})", match="ny",
                      aendringer={k: [None, staging.jsonable(v)] for k, v in record.items()
                                  if v is not None}, kilde=kilde, bemaerkning=remark)
    current, cx, cy = found[0]
    oid = uuid.UUID(current["objekt_id"])
    ewkt_now = f"SRID=25832;POINT({cx:.3f} {cy:.3f})"
    if current.get("pladser_kilde_kode") != KILDE_BBR:
        note = (f"BBR: {places} places; the register keeps {current.get('pladser')} "
                f"(source {current.get('pladser_kilde_kode')}, not BBR)")
        return Staged(raekke, "uaendret", oid, record=None, ewkt=ewkt_now,
                      foer_versions_id=uuid.UUID(current["versions_id"]), match="bbr",
                      kilde=kilde, bemaerkning=note)
    writable = [f.name for f in theme.writable_fields]
    merged = {name: current.get(name) for name in writable}
    merged.update({"pladser": places, **{k: addr.get(k) for k in BBR_OWNED if k in addr}})
    values = validate_properties(merged, problems, previous=current, theme=theme)
    record = complete(values, problems, theme)
    if problems:
        return Rejected(raekke, problems, kilde)
    changes = {}
    for name in writable:
        old, new = staging.jsonable(current.get(name)), staging.jsonable(record.get(name))
        if old != new and not (isinstance(old, (int, float)) and isinstance(new, (int, float))
                               and float(old) == float(new)):
            changes[name] = [old, new]
    new_xy = xy or (cx, cy)
    if abs(new_xy[0] - cx) > 0.001 or abs(new_xy[1] - cy) > 0.001:
        changes["geometri"] = [[round(cx, 3), round(cy, 3)],
                               [round(new_xy[0], 3), round(new_xy[1], 3)]]
    return Staged(raekke, "ret" if changes else "uaendret", oid, record=record,
                  ewkt=f"SRID=25832;POINT({new_xy[0]:.3f} {new_xy[1]:.3f})",
                  foer_versions_id=uuid.UUID(current["versions_id"]), match="bbr",
                  aendringer=changes or None, kilde=kilde, bemaerkning=remark)


def start(conn: psycopg.Connection, *, kommuner: list[int] | None = None,
          gate: Gate | None = None, subjekt: str = "ly-import-bbr", bbr_url: str, dar_url: str,
          fuld: bool = True, instant: datetime | None = None, theme: Theme = THEME) -> int:
    """Create a BBR run of `theme`; the bitemporal instant is fixed now so a resumed run reads
    the same snapshot."""
    kommuner = sorted(int(k) for k in kommuner or [])
    instant = (instant or datetime.now(timezone.utc)).isoformat().replace("+00:00", "Z")
    params = {"kommuner": kommuner, "tid": instant, "fuld": fuld, "bbr_url": bbr_url,
              "dar_url": dar_url, "gate": (gate or Gate()).as_dict()}
    return staging.create_run(conn, ART, bbr_url, parametre=params,
                              kommunekode=kommuner[0] if len(kommuner) == 1 else None,
                              subjekt=subjekt, theme=theme)


def _ended_buildings(conn, run_id: int, kommuner: list[int], theme: Theme) -> list[Staged]:
    """BBR shelters of the run's municipalities whose building the run did not deliver."""
    rows = conn.execute(sql.SQL(
        "SELECT objekt_id, versions_id, pladser, bbr_bygning_id FROM {} t "
        "WHERE bbr_bygning_id IS NOT NULL AND pladser_kilde_kode = %s AND beskyt_rum_kode = %s "
        "AND (cardinality(%s::int[]) = 0 OR beliggenhedskommune = ANY (%s::int[])) "
        "AND NOT EXISTS (SELECT 1 FROM ly.kandidat k WHERE k.koersel_id = %s AND "
        "k.kilde_vaerdier ->> 'id_lokalId' = t.bbr_bygning_id::text) ORDER BY objekt_id"
    ).format(sql.Identifier("ly", theme.current_view)),
        [KILDE_BBR, SIKRINGSRUM, kommuner, kommuner, run_id]).fetchall()
    return [Staged(0, "afslut", o, foer_versions_id=v, match="bbr",
                   aendringer={"pladser": [p, None]},
                   kilde={"id_lokalId": str(b), "byg069Sikringsrumpladser": 0},
                   bemaerkning="the building is no longer a sikringsrum in use in BBR")
            for o, v, p, b in rows]


def stage_run(conn: psycopg.Connection, run_id: int, source: Datafordeler, *,
              progress: Progress | None = None) -> dict:
    """Read BBR page by page (resuming after the last committed page), resolve addresses in
    DAR, stage, and close the run with the quality gate. Returns the gate's report."""
    progress = progress or Progress()
    run = staging.get_run(conn, run_id)
    if run["art"] != ART:
        raise RunError(f"run {run_id} is a {run['art']} run, not a BBR run")
    if run["status"] != "indlaeser":
        return run["kvalitet"]
    theme = staging.run_theme(run)
    params = run["parametre"]
    instant, kommuner = params["tid"], params.get("kommuner") or []
    after = (run.get("markoer") or {}).get("after")
    done = run["naeste_raekke"]
    progress.advance(done)
    if not (run.get("markoer") or {}).get("slut"):
        while True:
            nodes, cursor, more = source.buildings(after=after, instant=instant,
                                                   kommuner=kommuner)
            progress.total(done + len(nodes) + (source.page_size if more else 0))
            addresses = source.addresses((n.get("husnummer") for n in nodes), instant)

            def items(nodes=nodes, first=done):
                with conn.cursor() as cur:
                    for i, node in enumerate(nodes, start=1):
                        yield resolve_building(cur, first + i, node,
                                               addresses.get(node.get("husnummer") or ""),
                                               theme)

            marker = {"after": cursor, "slut": not more}
            staging.stage(conn, run_id, items(), batch_size=max(len(nodes), 1),
                          progress=progress, markoer=lambda m=marker: m)
            done += len(nodes)
            if not more or not nodes:
                break
            after = cursor
    extra = _ended_buildings(conn, run_id, kommuner, theme) if params.get("fuld") else []
    return staging.finish_staging(conn, run_id, extra=extra)


def import_bbr(conn: psycopg.Connection, source: Datafordeler, *,
               kommuner: list[int] | None = None, gate: Gate | None = None, fuld: bool = True,
               publish: bool = False, subjekt: str = "ly-import-bbr",
               progress: Progress | None = None, theme: Theme = THEME) -> int:
    """Start, stage and (when asked and the gate passes) publish a BBR run; its id."""
    run_id = start(conn, kommuner=kommuner, gate=gate, subjekt=subjekt, bbr_url=source.bbr_url,
                   dar_url=source.dar_url, fuld=fuld, theme=theme)
    try:
        report = stage_run(conn, run_id, source, progress=progress)
    except Exception as exc:
        staging.mark_failed(conn, run_id, f"{type(exc).__name__}: {exc}")
        raise
    if publish and report["bestaaet"]:
        staging.publish(conn, run_id)
    return run_id
