"""Two-way sync of a theme (the shelters, 6101, for now) between Ly and GeoFA, keyed on
objekt_id, staged and reported.

One sync is a run (`loaders.staging`, art `geofa_sync`, or `geofa_pull` for a pull only):

1. **Read GeoFA** incrementally: current versions with `systid_fra` after the cursor (minus an
   overlap window, since `now()` is a transaction's start and a slow transaction commits late),
   and versions ended after it whose object has no current version (tombstones). Only the
   responsible authority's objects (`cvr_kode` of the sync user's municipality) are read, which
   the user always sees, so an object missing is never mistaken for a deleted one; an anonymous
   WFS pull (off_kode 1 only) produces no tombstones at all.
2. **Read Ly**: the authority's current shelters, and the links (`ly.geofa_link`: GeoFA's
   objekt_id, the last-seen versions on both sides, and the agreed values — the base of a
   three-way merge).
3. **Plan** per object and per field: a change on one side goes to the other; a change on both
   sides to different values is a conflict the policy resolves (default: the value the
   responsible authority wrote wins; if both or neither side is the authority, the newest edit).
   Every conflict is stored (`ly.konflikt`) with both values and the reason. A deletion on
   either side ends the object on the other (soft delete; history kept), and wins over an edit
   (reported). New objects go across: Ly's with their objekt_id and Ly's id in `noegle`; GeoFA's
   keep theirs in Ly.
4. **Dry run** stops here: the run holds the diff (candidates for both sides) and conflicts.
5. **Apply**: Ly's side is published in one transaction through the versioned view (with the
   cursor and the links of objects that need nothing in GeoFA); then GeoFA is written through the
   SQL API — inserts `returning objekt_id`, updates and deletes guarded by the last-seen
   `versions_id`, so an object someone changed meanwhile is not overwritten (COUNT 0 / missing
   from `returning`): it is reported and merged by the next sync; finally the links of what was
   written.

Only GeoFA's own writable attributes of the theme are exchanged (`sync_fields`: the client
attributes GeoFA's `generel` and theme tables store, and the geometry). Server-owned attributes
(`bruger_id`, `kommunekode`, text twins, `beliggenhedskommune`, address fields GeoFA derives,
system times and ids) are never written; Ly's own id travels in `noegle` on insert.

Everything theme-specific comes from the theme's descriptor (`datamodel.themes`): GeoFA's view
`fkg.<geofa_view>` and its history view, the temakode keying the cursor, the attributes. The
sync exchanges points (GeoFA's one-point MultiPoint); an area theme is refused until it
exchanges areas.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Callable

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from datamodel import themes
from datamodel.rules import Problem, complete, validate_properties
from datamodel.themes import GEOFA_DIR, Theme
from loaders import staging
from loaders.geofa.client import CountZero, GeoFAClient, GeoFAError
from loaders.staging import Gate, Progress, Rejected, RunError, Staged

#: The theme a sync exchanges unless told otherwise: the shelters.
THEME = themes.by_temakode(6101)
POLICIES = ("ansvarlig", "ly", "geofa", "nyeste")
_MUNICIPAL_USER = re.compile(r"^kom(\d{3})$")
#: GeoFA's generic attributes' table (fkg.generel).
GENEREL_TABLE = "generel.json"


def _geofa_columns(table_file: str) -> list[str]:
    data = json.loads((GEOFA_DIR / "tables" / table_file).read_text(encoding="utf-8"))
    return [c["name"] for c in data["columns"]]


@lru_cache(maxsize=None)
def sync_fields(theme: Theme) -> tuple[str, ...]:
    """GeoFA's writable attributes of a theme, exchanged both ways: the attributes a client
    writes that GeoFA stores (its `generel` table, then the theme's table, in their order),
    but `noegle` (which carries Ly's id on insert), and the geometry."""
    if not theme.geofa_table_file:
        raise RunError(f"{theme.collection_id}: the theme has no GeoFA table to sync with")
    writable = {f.name for f in theme.writable_fields}
    stored = _geofa_columns(GENEREL_TABLE) + _geofa_columns(theme.geofa_table_file)
    names = [c for c in dict.fromkeys(stored) if c in writable and c != "noegle"]
    return (*names, "geometri")


@dataclass
class Policy:
    """Who wins a field both sides changed to different values."""

    default: str = "ansvarlig"  # ansvarlig | ly | geofa | nyeste
    felter: dict[str, str] = field(default_factory=dict)  # per-field override
    uafgjort: str = "nyeste"  # when `ansvarlig` cannot tell (both or neither is the authority)
    brugere: dict[str, int] = field(default_factory=dict)  # GeoFA user -> CVR (else kom<NNN>)

    def __post_init__(self):
        for name, value in [("default", self.default), ("uafgjort", self.uafgjort),
                            *self.felter.items()]:
            if value not in POLICIES:
                raise RunError(f"policy {name}: {value!r} is not one of {', '.join(POLICIES)}")

    def check(self, theme: Theme) -> None:
        """Refuse per-field policies for attributes the theme's sync does not exchange."""
        fields = sync_fields(theme)
        unknown = set(self.felter) - set(fields)
        if unknown:
            raise RunError(f"policy: {', '.join(sorted(unknown))} are not synced attributes "
                           f"({', '.join(fields)})")

    def for_field(self, name: str) -> str:
        return self.felter.get(name, self.default)

    def as_dict(self) -> dict:
        return {"default": self.default, "felter": self.felter, "uafgjort": self.uafgjort,
                "brugere": self.brugere}

    @classmethod
    def load(cls, source: str | dict | None) -> "Policy":
        if source is None:
            return cls()
        data = source if isinstance(source, dict) else json.loads(open(source,
                                                                       encoding="utf-8").read())
        return cls(**data)


@dataclass
class Target:
    """Whose GeoFA objects are synced: the sync user's authority."""

    cvr_kode: int
    kommunekode: int | None = None
    overlap_seconds: int = 600


# --- values --------------------------------------------------------------------------------

def _norm(name: str, value: Any) -> Any:
    if name == "geometri":
        return None if value is None else [round(float(value[0]), 3), round(float(value[1]), 3)]
    if value == "":
        return None
    return value


def _eq(name: str, a: Any, b: Any) -> bool:
    a, b = _norm(name, a), _norm(name, b)
    if name == "geometri" and a is not None and b is not None:
        return abs(a[0] - b[0]) <= 0.0015 and abs(a[1] - b[1]) <= 0.0015
    return a == b


def geofa_values(feature: dict, theme: Theme = THEME) -> dict:
    p = feature["properties"]
    coords = (feature.get("geometry") or {}).get("coordinates")
    point = coords[0] if coords and isinstance(coords[0], list) else coords
    out = {f: p.get(f) for f in sync_fields(theme) if f != "geometri"}
    out["geometri"] = _norm("geometri", point) if point else None
    return out


def ly_values(row: dict, x: float, y: float, theme: Theme = THEME) -> dict:
    out = {f: row.get(f) for f in sync_fields(theme) if f != "geometri"}
    out["geometri"] = _norm("geometri", (x, y))
    return out


def _geometry(value: list[float]) -> dict:
    return {"type": "MultiPoint", "crs": {"type": "name", "properties": {"name": "EPSG:25832"}},
            "coordinates": [[value[0], value[1]]]}


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


# --- the plan ------------------------------------------------------------------------------

@dataclass
class Item:
    """What the sync does with one object."""

    objekt_id: uuid.UUID  # Ly's objekt_id (= GeoFA's for objects created on either side by us)
    geofa_objekt_id: uuid.UUID | None = None
    ly: dict | None = None  # Ly's current row
    ly_xy: tuple[float, float] | None = None
    geofa: dict | None = None  # GeoFA's current feature, when read
    link: dict | None = None
    ly_action: str | None = None  # opret | ret | afslut
    ly_record: dict | None = None
    ly_xy_new: list[float] | None = None
    geofa_action: str | None = None  # opret | ret | afslut
    geofa_record: dict | None = None
    geofa_expected: uuid.UUID | None = None
    merged: dict | None = None  # the agreed values after the sync
    conflicts: list[dict] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    end_link: bool = False
    pending: bool = False  # a change for the other side is left for a later push or pull
    pushed_version: uuid.UUID | None = None
    push_failed: bool = False


class Sync:
    def __init__(self, conn: psycopg.Connection, client: GeoFAClient, target: Target, *,
                 policy: Policy | None = None, mode: str = "sync", wfs: bool = False,
                 subjekt: str = "ly-geofa-sync", gate: Gate | None = None,
                 progress: Progress | None = None, theme: Theme = THEME):
        if mode not in ("sync", "pull", "push"):
            raise RunError(f"mode {mode!r} is not sync, pull or push")
        if wfs and mode != "pull":
            raise RunError("the anonymous WFS is read-only: only a pull can use it")
        if theme.is_area:
            raise RunError(f"{theme.collection_id}: the GeoFA sync exchanges points only")
        self.theme = theme
        self.fields = sync_fields(theme)
        self.view = f"fkg.{theme.geofa_view}"  # GeoFA's published views, as Ly names its own
        self.hist = f"fkg.{theme.history_view}"
        self.current_sql = staging.current_rows(theme)
        self.conn = staging.autocommit(conn)
        self.client, self.target = client, target
        self.policy = policy or Policy()
        self.policy.check(theme)
        self.mode, self.wfs, self.subjekt = mode, wfs, subjekt
        self.gate = gate or Gate(max_afvist_andel=1.0)
        self.progress = progress or Progress()
        self._editor_cache: dict[str, int | None] = {}

    # --- reading ---
    def _cursor(self) -> datetime | None:
        row = self.conn.execute("SELECT systid FROM ly.geofa_markoer WHERE tema = %s",
                                [self.theme.temakode]).fetchone()
        return row[0] if row else None

    def read_geofa(self, since: datetime | None) -> tuple[dict[str, dict], list[dict]]:
        cvr = self.target.cvr_kode
        if self.wfs:
            feats = [f for f in self.client.wfs_features(f"fkg:{self.view}")
                     if f["properties"].get("cvr_kode") == cvr]
            return {f["properties"]["objekt_id"]: f for f in feats}, []
        params: dict[str, Any] = {"cvr": cvr}
        cond = ""
        if since is not None:
            cond = " and systid_fra > :since"
            params["since"] = since.isoformat()
        changed = self.client.select(f"select * from {self.view} where cvr_kode = :cvr{cond} "
                                     "order by objekt_id", params)
        ended = self.client.select(
            f"select objekt_id, versions_id, systid_til, bruger_id from {self.hist} h "
            "where cvr_kode = :cvr and systid_til > :since and not exists (select 1 from "
            f"{self.view} c where c.objekt_id = h.objekt_id) order by systid_til",
            {"cvr": cvr, "since": (since.isoformat() if since else "-infinity")})
        tombstones: dict[str, dict] = {}
        for f in ended:  # the newest ended version of each object
            tombstones[f["properties"]["objekt_id"]] = f["properties"]
        return {f["properties"]["objekt_id"]: f for f in changed}, list(tombstones.values())

    def read_ly(self) -> tuple[dict[str, tuple], dict[str, dict], dict[str, dict]]:
        rows = self.conn.execute(sql.SQL("SELECT {} WHERE t.cvr_kode = %s").format(
            self.current_sql), [self.target.cvr_kode]).fetchall()
        current = {r[0]["objekt_id"]: r for r in rows}
        links = {}
        for row in self.conn.execute("SELECT row_to_json(l) FROM ly.geofa_link l WHERE NOT "
                                     "afsluttet").fetchall():
            links[row[0]["objekt_id"]] = row[0]
        linked_current = [o for o in links if o not in current]
        if linked_current:  # linked objects outside the authority's register now
            for r in self.conn.execute(
                    sql.SQL("SELECT {} WHERE t.objekt_id = ANY(%s::uuid[])").format(
                        self.current_sql), [linked_current]).fetchall():
                current[r[0]["objekt_id"]] = r
        by_geofa = {l["geofa_objekt_id"]: l for l in links.values()}
        return current, links, by_geofa

    # --- the plan ---
    def _editor_cvr(self, bruger: str | None) -> int | None:
        if not bruger:
            return None
        if bruger in self.policy.brugere:
            return int(self.policy.brugere[bruger])
        if bruger not in self._editor_cache:
            m = _MUNICIPAL_USER.match(bruger)
            cvr = None
            if m:
                row = self.conn.execute("SELECT cvr_kode FROM ly.kommune WHERE kommunekode = %s",
                                        [int(m.group(1))]).fetchone()
                cvr = row[0] if row else None
            self._editor_cache[bruger] = cvr
        return self._editor_cache[bruger]

    def _ly_editor_cvr(self, versions_id: str) -> int | None:
        row = self.conn.execute("SELECT cvr_kode FROM ly.revision WHERE efter_versions_id = %s "
                                "ORDER BY id DESC LIMIT 1", [versions_id]).fetchone()
        return row[0] if row else None

    def _decide(self, name: str, item: Item, responsible: int | None) -> tuple[str, str]:
        """(winner, reason) for a field both sides changed."""
        policy = self.policy.for_field(name)
        if policy in ("ly", "geofa"):
            return policy, f"policy for {name}: {policy} wins"
        ly_time = _time(item.ly.get("systid_fra"))
        g_time = _time(item.geofa["properties"].get("systid_fra"))
        if policy == "ansvarlig":
            ly_auth = self._ly_editor_cvr(item.ly["versions_id"]) == responsible
            g_auth = self._editor_cvr(item.geofa["properties"].get("bruger_id")) == responsible
            if ly_auth != g_auth:
                side = "ly" if ly_auth else "geofa"
                where = "Ly" if ly_auth else "GeoFA"
                return side, f"the responsible authority (CVR {responsible}) made the {where} edit"
            policy = self.policy.uafgjort
            if policy in ("ly", "geofa"):
                return policy, (f"both or neither edit is the responsible authority's; "
                                f"{policy} wins")
        side = "ly" if (ly_time and g_time and ly_time >= g_time) else "geofa"
        return side, (f"the newest edit wins ({'Ly' if side == 'ly' else 'GeoFA'} "
                      f"{ly_time if side == 'ly' else g_time})")

    def _merge(self, item: Item, base: dict | None) -> None:
        lv = ly_values(item.ly, *item.ly_xy, self.theme)
        gv = geofa_values(item.geofa, self.theme) if item.geofa is not None else dict(base or {})
        responsible = (base or {}).get("cvr_kode") or lv.get("cvr_kode")
        merged: dict[str, Any] = {}
        for name in self.fields:
            b, lval, gval = (base or {}).get(name), lv.get(name), gv.get(name)
            if _eq(name, lval, gval):
                merged[name] = lval
            elif base is not None and _eq(name, lval, b):
                merged[name] = gval
            elif base is not None and _eq(name, gval, b):
                merged[name] = lval
            else:
                winner, reason = self._decide(name, item, responsible)
                merged[name] = lval if winner == "ly" else gval
                item.conflicts.append({"felt": name, "grundlag": b, "ly": lval, "geofa": gval,
                                       "politik": self.policy.for_field(name), "vinder": winner,
                                       "begrundelse": reason})
        item.merged = merged
        ly_update = {k: v for k, v in merged.items() if not _eq(k, v, lv.get(k))}
        geofa_update = {k: v for k, v in merged.items() if not _eq(k, v, gv.get(k))}
        if ly_update:
            item.ly_action = "ret"
            item.ly_record = self._ly_record(item, ly_update)
            item.ly_xy_new = merged["geometri"]
        if geofa_update:
            item.geofa_action = "ret"
            item.geofa_record = self._geofa_record(merged)

    def _ly_record(self, item: Item, update: dict) -> dict | None:
        current = item.ly or {}
        merged = {f.name: current.get(f.name) for f in self.theme.writable_fields}
        merged.update({k: v for k, v in update.items() if k != "geometri"})
        values = validate_properties(merged, item.problems, previous=current or None,
                                     theme=self.theme)
        return complete(values, item.problems, self.theme)

    def _geofa_record(self, values: dict, objekt_id: uuid.UUID | None = None) -> dict:
        """GeoFA's writable attributes; on insert (`objekt_id` given) Ly's id also goes in
        `noegle` and as the objekt_id."""
        out = {k: values.get(k) for k in self.fields if k != "geometri"}
        out["geometri"] = _geometry(values["geometri"])
        if objekt_id is not None:
            out["noegle"] = str(objekt_id)  # Ly's own id travels in noegle
            out["objekt_id"] = str(objekt_id)
        return out

    def plan(self, since: datetime | None) -> tuple[list[Item], datetime | None]:
        changed, tombstones = self.read_geofa(since)
        current, links, by_geofa = self.read_ly()
        items: dict[str, Item] = {}
        newest = since
        for f in changed.values():
            t = _time(f["properties"].get("systid_fra"))
            newest = max(newest, t) if newest else t
        for t in tombstones:
            tt = _time(t.get("systid_til"))
            newest = max(newest, tt) if newest else tt

        def item_for(oid: str) -> Item:
            if oid not in items:
                row = current.get(oid)
                items[oid] = Item(uuid.UUID(oid), ly=row[0] if row else None,
                                  ly_xy=(row[1], row[2]) if row else None, link=links.get(oid))
            return items[oid]

        # GeoFA's changes
        for goid, feature in changed.items():
            p = feature["properties"]
            link = by_geofa.get(goid)
            if link is not None:
                if p["versions_id"] == link.get("geofa_versions_id"):
                    continue  # our own write (or one seen before), read again in the overlap
                it = item_for(link["objekt_id"])
                it.geofa, it.geofa_objekt_id = feature, uuid.UUID(goid)
                continue
            # unlinked: Ly's own object (same objekt_id, or Ly's id in noegle), or a new one
            ly_oid = goid if goid in current else (p.get("noegle") if p.get("noegle") in current
                                                   else None)
            if ly_oid is not None:
                it = item_for(ly_oid)
                it.geofa, it.geofa_objekt_id = feature, uuid.UUID(goid)
                it.notes.append("linked by objekt_id" if ly_oid == goid else "linked by noegle")
                continue
            it = Item(uuid.UUID(goid), geofa_objekt_id=uuid.UUID(goid), geofa=feature)
            items[goid] = it
            if self.mode == "push":
                continue
            it.ly_action = "opret"
            values = geofa_values(feature, self.theme)
            record = {k: v for k, v in values.items() if k != "geometri"}
            if p.get("noegle") and not _is_uuid(p["noegle"]):
                record["noegle"] = p["noegle"]
            record = validate_properties(record, it.problems, theme=self.theme)
            it.ly_record = complete(record, it.problems, self.theme)
            it.ly_xy_new = values["geometri"]
            it.merged = values
        # GeoFA's deletions
        for t in tombstones:
            link = by_geofa.get(t["objekt_id"])
            if link is None:
                continue
            it = item_for(link["objekt_id"])
            it.geofa_objekt_id = uuid.UUID(t["objekt_id"])
            if self.mode == "push":
                it.pending = True
                it.notes.append("ended in GeoFA; left for a pull")
                continue
            it.end_link = True
            if it.ly is not None:
                it.ly_action = "afslut"
                if it.ly["versions_id"] != link.get("ly_versions_id"):
                    it.conflicts.append({
                        "felt": "*", "grundlag": None, "ly": "ændret", "geofa": "slettet",
                        "politik": "sletning", "vinder": "geofa",
                        "begrundelse": f"ended in GeoFA by {t.get('bruger_id')}; the deletion "
                                       "wins over the Ly edit"})
            it.notes.append("ended in GeoFA")
        # Ly's side: changes, new shelters, deletions
        for oid, link in links.items():
            it = items.get(oid)
            if it is not None and it.end_link:
                continue
            if oid not in current:
                it = item_for(oid)
                it.geofa_objekt_id = uuid.UUID(link["geofa_objekt_id"])
                if self.mode == "pull":
                    it.pending = True
                    it.notes.append("ended in Ly; left for a push")
                    continue
                it.end_link = True
                it.geofa_action = "afslut"
                it.geofa_expected = uuid.UUID(
                    (it.geofa or {}).get("properties", {}).get("versions_id")
                    or link["geofa_versions_id"])
                if it.geofa is not None:
                    it.conflicts.append({
                        "felt": "*", "grundlag": None, "ly": "slettet", "geofa": "ændret",
                        "politik": "sletning", "vinder": "ly",
                        "begrundelse": "ended in Ly; the deletion wins over the GeoFA edit"})
                it.notes.append("ended in Ly")
                continue
            ly_changed = current[oid][0]["versions_id"] != link.get("ly_versions_id")
            if (it is None or it.geofa is None) and not ly_changed:
                continue
            it = item_for(oid)
            it.geofa_objekt_id = uuid.UUID(link["geofa_objekt_id"])
            it.geofa_expected = uuid.UUID((it.geofa or {}).get("properties", {}).get(
                "versions_id") or link["geofa_versions_id"])
            self._merge(it, link.get("grundlag") or {})
        for oid, row in current.items():
            if oid in links or row[0]["cvr_kode"] != self.target.cvr_kode:
                continue
            it = item_for(oid)
            if it.geofa is not None:  # linked now by objekt_id or noegle: merge without base
                it.geofa_expected = uuid.UUID(it.geofa["properties"]["versions_id"])
                self._merge(it, None)
                continue
            it.geofa_action = "opret"
            it.merged = ly_values(row[0], row[1], row[2], self.theme)
            it.geofa_record = self._geofa_record(it.merged, it.objekt_id)
        for it in items.values():
            if self.mode == "pull" and it.geofa_action:
                it.notes.append(f"GeoFA {it.geofa_action} left for a push")
                it.geofa_action, it.pending = None, True
            if self.mode == "push" and it.ly_action in ("ret", "opret", "afslut"):
                it.notes.append(f"Ly {it.ly_action} left for a pull")
                it.ly_action, it.pending = None, True
            if it.problems and it.geofa is not None and newest is not None:
                # a GeoFA object Ly cannot take is read (and reported) again next time
                t = _time(it.geofa["properties"].get("systid_fra"))
                if t is not None:
                    newest = min(newest, t - timedelta(microseconds=1))
        return [items[k] for k in sorted(items)], newest

    # --- staging ---
    def _staged(self, raekke: int, it: Item) -> list[Staged | Rejected]:
        out: list[Staged | Rejected] = []
        kilde = {"geofa_objekt_id": str(it.geofa_objekt_id) if it.geofa_objekt_id else None,
                 "geofa_versions_id": (it.geofa or {}).get("properties", {}).get("versions_id"),
                 "geofa_bruger": (it.geofa or {}).get("properties", {}).get("bruger_id"),
                 "noter": it.notes or None}
        if it.problems:
            return [Rejected(raekke, it.problems, kilde)]
        if it.ly_action:
            changes = None
            if it.ly_action == "ret":
                lv = ly_values(it.ly, *it.ly_xy, self.theme)
                changes = {k: [lv.get(k), v] for k, v in it.merged.items() if not _eq(k, v,
                                                                                  lv.get(k))}
            elif it.ly_action == "opret":
                changes = {k: [None, v] for k, v in it.merged.items() if v is not None}
            xy = it.ly_xy_new or (list(it.ly_xy) if it.ly_xy else None)
            out.append(Staged(
                raekke, it.ly_action, it.objekt_id, record=it.ly_record,
                ewkt=f"SRID=25832;POINT({xy[0]:.3f} {xy[1]:.3f})" if xy else None,
                foer_versions_id=uuid.UUID(it.ly["versions_id"]) if it.ly else None,
                match="geofa", aendringer=changes, kilde=kilde,
                bemaerkning="; ".join(it.notes) or None))
        if it.geofa_action:
            gv = geofa_values(it.geofa, self.theme) if it.geofa \
                else (it.link or {}).get("grundlag") or {}
            if it.geofa_action == "ret":
                changes = {k: [gv.get(k), v] for k, v in (it.merged or {}).items()
                           if not _eq(k, v, gv.get(k))}
            elif it.geofa_action == "opret":
                changes = {k: [None, v] for k, v in (it.merged or {}).items() if v is not None}
            else:
                changes = None
            out.append(Staged(
                raekke + 1 if it.ly_action else raekke, it.geofa_action, it.objekt_id,
                record=it.geofa_record, foer_versions_id=it.geofa_expected, maal="geofa",
                match="geofa", aendringer=changes, kilde=kilde,
                bemaerkning="; ".join(it.notes) or None))
        if not out:
            xy = it.ly_xy
            out.append(Staged(raekke, "uaendret", it.objekt_id, maal="ly", match="geofa",
                              ewkt=f"SRID=25832;POINT({xy[0]:.3f} {xy[1]:.3f})" if xy else None,
                              foer_versions_id=uuid.UUID(it.ly["versions_id"]) if it.ly else None,
                              kilde=kilde, bemaerkning="; ".join(it.notes) or None))
        return out

    def stage(self) -> tuple[int, list[Item], datetime | None]:
        cursor = self._cursor()
        since = cursor - timedelta(seconds=self.target.overlap_seconds) if cursor else None
        art = "geofa_pull" if self.mode == "pull" else "geofa_sync"
        run_id = staging.create_run(
            self.conn, art, self.client.base_url, kommunekode=self.target.kommunekode,
            cvr_kode=self.target.cvr_kode, subjekt=self.subjekt, parametre={
                "tilstand": self.mode, "wfs": self.wfs, "bruger": self.client.username,
                "politik": self.policy.as_dict(), "markoer_foer": cursor and cursor.isoformat(),
                "siden": since and since.isoformat(), "overlap": self.target.overlap_seconds,
                "gate": self.gate.as_dict()}, theme=self.theme)
        try:
            items, newest = self.plan(since)
            rows: list = []
            n = 0
            for it in items:
                n += 2
                rows += self._staged(n, it)
            self.progress.total(len(rows))
            staging.stage(self.conn, run_id, rows, batch_size=max(len(rows), 1),
                          progress=self.progress)
            with self.conn.transaction():
                for it in items:
                    for c in it.conflicts:
                        self.conn.execute(
                            "INSERT INTO ly.konflikt (koersel_id, objekt_id, felt, grundlag, "
                            "ly_vaerdi, geofa_vaerdi, politik, vinder, begrundelse) VALUES "
                            "(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                            [run_id, it.objekt_id, c["felt"], Jsonb(c["grundlag"]),
                             Jsonb(c["ly"]), Jsonb(c["geofa"]), c["politik"], c["vinder"],
                             c["begrundelse"]])
                self.conn.execute(
                    "UPDATE ly.koersel SET taellere = taellere || jsonb_build_object("
                    "'konflikter', %s::int), markoer = %s WHERE id = %s",
                    [sum(len(it.conflicts) for it in items),
                     Jsonb({"ny": newest.isoformat() if newest else None}), run_id])
            staging.finish_staging(self.conn, run_id, self.gate)
        except Exception as exc:
            staging.mark_failed(self.conn, run_id, f"{type(exc).__name__}: {exc}")
            raise
        return run_id, items, newest

    # --- applying ---
    def _links(self, items: list[Item], run_id: int, newest: datetime | None,
               pushed: bool) -> Callable[[psycopg.Connection], None]:
        def write(conn: psycopg.Connection) -> None:
            after = dict(conn.execute(
                "SELECT objekt_id::text, efter_versions_id FROM ly.kandidat WHERE koersel_id = %s"
                " AND maal = 'ly' AND efter_versions_id IS NOT NULL", [run_id]).fetchall())
            for it in items:
                has_push = it.geofa_action is not None
                if has_push != pushed or it.push_failed or it.problems or it.pending:
                    continue  # the link (and its base) stays as it was for the next sync
                oid = str(it.objekt_id)
                if it.end_link:
                    conn.execute("UPDATE ly.geofa_link SET afsluttet = true, synkroniseret = "
                                 "now() WHERE objekt_id = %s", [oid])
                    continue
                if it.merged is None or it.geofa_objekt_id is None and not pushed:
                    continue
                ly_version = after.get(oid) or (it.ly or {}).get("versions_id")
                g_version = it.pushed_version or (it.geofa or {}).get("properties", {}).get(
                    "versions_id") or (it.link or {}).get("geofa_versions_id")
                conn.execute(
                    "INSERT INTO ly.geofa_link (objekt_id, geofa_objekt_id, geofa_versions_id, "
                    "ly_versions_id, grundlag) VALUES (%s, %s, %s, %s, %s) ON CONFLICT "
                    "(objekt_id) DO UPDATE SET geofa_objekt_id = EXCLUDED.geofa_objekt_id, "
                    "geofa_versions_id = EXCLUDED.geofa_versions_id, ly_versions_id = "
                    "EXCLUDED.ly_versions_id, grundlag = EXCLUDED.grundlag, afsluttet = false, "
                    "synkroniseret = now()",
                    [oid, str(it.geofa_objekt_id or it.objekt_id), g_version, ly_version,
                     Jsonb(it.merged)])
            if not pushed and newest is not None:
                conn.execute(
                    "INSERT INTO ly.geofa_markoer (tema, systid, koersel_id) VALUES (%s, %s, %s) "
                    "ON CONFLICT (tema) DO UPDATE SET systid = greatest(ly.geofa_markoer.systid, "
                    "EXCLUDED.systid), koersel_id = EXCLUDED.koersel_id, opdateret = now()",
                    [self.theme.temakode, newest, run_id])
        return write

    def _push(self, run_id: int, items: list[Item]) -> dict[str, int]:
        counts = {"geofa_skrevet": 0, "geofa_samtidige": 0}
        inserts = [it for it in items if it.geofa_action == "opret"]
        updates = [it for it in items if it.geofa_action == "ret"]
        deletes = [it for it in items if it.geofa_action == "afslut"]
        if inserts:
            existing = {f["properties"]["objekt_id"]: f for f in self.client.select(
                f"select objekt_id, versions_id, noegle from {self.view} where objekt_id::text = "
                "any(string_to_array(:ids, ','))",
                {"ids": ",".join(str(it.objekt_id) for it in inserts)})}
            todo = [it for it in inserts if str(it.objekt_id) not in existing]
            for it in inserts:
                if str(it.objekt_id) in existing:  # a previous push got there; link it
                    it.pushed_version = uuid.UUID(existing[str(it.objekt_id)]["properties"]
                                                  ["versions_id"])
                    it.geofa_objekt_id = it.objekt_id
            cols = list(todo[0].geofa_record) if todo else []
            for start in range(0, len(todo), 500):
                chunk = todo[start:start + 500]
                values = ", ".join("st_geomfromgeojson(:geometri)" if c == "geometri" else f":{c}"
                                   for c in cols)
                result = self.client.sql(
                    f"insert into {self.view} ({', '.join(cols)}) values ({values}) "
                    "returning objekt_id, versions_id", [it.geofa_record for it in chunk])
                for it, ret in zip(chunk, result.get("returning") or []):
                    it.geofa_objekt_id = uuid.UUID(ret["objekt_id"])
                    it.pushed_version = uuid.UUID(ret["versions_id"])
                    counts["geofa_skrevet"] += 1
        for kind, todo in (("ret", updates), ("afslut", deletes)):
            if not todo:
                continue
            if kind == "ret":
                cols = [c for c in todo[0].geofa_record if c not in ("objekt_id",)]
                sets = ", ".join(f"{c} = st_geomfromgeojson(:geometri)" if c == "geometri"
                                 else f"{c} = :{c}" for c in cols)
                q = (f"update {self.view} set {sets} where objekt_id = :objekt_id and "
                     "versions_id = :versions_id returning objekt_id, versions_id")
                params = [{**{c: it.geofa_record[c] for c in cols},
                           "objekt_id": str(it.geofa_objekt_id),
                           "versions_id": str(it.geofa_expected)} for it in todo]
            else:
                q = (f"delete from {self.view} where objekt_id = :objekt_id and versions_id = "
                     ":versions_id returning objekt_id, versions_id")
                params = [{"objekt_id": str(it.geofa_objekt_id),
                           "versions_id": str(it.geofa_expected)} for it in todo]
            try:
                returned = self.client.sql(q, params).get("returning") or []
            except CountZero:
                returned = []
            done = {r["objekt_id"]: r for r in returned}
            for it in todo:
                r = done.get(str(it.geofa_objekt_id))
                if r is None:
                    it.push_failed = True
                    counts["geofa_samtidige"] += 1
                    continue
                counts["geofa_skrevet"] += 1
                if kind == "ret":
                    it.pushed_version = uuid.UUID(r["versions_id"])
        with self.conn.transaction():
            for it in items:
                if it.geofa_action is None:
                    continue
                if it.push_failed:
                    self.conn.execute(
                        "INSERT INTO ly.konflikt (koersel_id, objekt_id, felt, ly_vaerdi, "
                        "politik, vinder, begrundelse) VALUES (%s, %s, '*', %s, 'versions_id', "
                        "'ingen', %s)",
                        [run_id, it.objekt_id, Jsonb(it.geofa_record),
                         f"changed in GeoFA since version {it.geofa_expected} was read (COUNT 0):"
                         " nothing overwritten; the next sync merges it"])
                    self.conn.execute(
                        "UPDATE ly.kandidat SET bemaerkning = coalesce(bemaerkning || '; ', '') "
                        "|| 'GeoFA changed meanwhile: not written' WHERE koersel_id = %s AND "
                        "maal = 'geofa' AND objekt_id = %s", [run_id, it.objekt_id])
                else:
                    self.conn.execute(
                        "UPDATE ly.kandidat SET efter_versions_id = %s WHERE koersel_id = %s AND "
                        "maal = 'geofa' AND objekt_id = %s", [it.pushed_version, run_id,
                                                              it.objekt_id])
            self.conn.execute(
                "UPDATE ly.koersel SET taellere = taellere || %s WHERE id = %s",
                [Jsonb(counts), run_id])
            if counts["geofa_samtidige"]:
                self.conn.execute(
                    "UPDATE ly.koersel SET taellere = jsonb_set(taellere, '{konflikter}', "
                    "to_jsonb(coalesce((taellere ->> 'konflikter')::int, 0) + %s)) WHERE id = %s",
                    [counts["geofa_samtidige"], run_id])
        return counts

    def apply(self, run_id: int, items: list[Item], newest: datetime | None,
              before_push: Callable[[], None] | None = None) -> dict:
        run = staging.get_run(self.conn, run_id)
        if run["status"] != "klar":
            raise RunError(f"run {run_id} is {run['status']}; nothing was written (see its "
                           "quality report)")
        staging.publish(self.conn, run_id, extra=self._links(items, run_id, newest, False))
        if before_push is not None:
            before_push()
        if self.mode != "pull":
            self._push(run_id, items)
            with self.conn.transaction():
                self._links(items, run_id, newest, True)(self.conn)
        return staging.get_run(self.conn, run_id)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False


def sync(conn: psycopg.Connection, client: GeoFAClient, target: Target, *,
         policy: Policy | None = None, mode: str = "sync", wfs: bool = False,
         dry_run: bool = False, subjekt: str = "ly-geofa-sync", gate: Gate | None = None,
         before_push: Callable[[], None] | None = None, progress: Progress | None = None,
         theme: Theme = THEME) -> int:
    """Stage a sync of `theme` (the dry-run diff) and, unless `dry_run`, apply it. Returns the
    run id."""
    s = Sync(conn, client, target, policy=policy, mode=mode, wfs=wfs, subjekt=subjekt, gate=gate,
             progress=progress, theme=theme)
    run_id, items, newest = s.stage()
    if not dry_run:
        try:
            s.apply(run_id, items, newest, before_push=before_push)
        except GeoFAError as exc:
            staging.mark_failed(conn, run_id, f"GeoFA: {exc}")
            raise
    return run_id


def report(conn: psycopg.Connection, run_id: int) -> dict:
    """The diff and conflicts of a sync run, for a dry run's printout."""
    run = staging.get_run(conn, run_id)
    conflicts = conn.execute(
        "SELECT objekt_id::text, felt, grundlag, ly_vaerdi, geofa_vaerdi, politik, vinder, "
        "begrundelse FROM ly.konflikt WHERE koersel_id = %s ORDER BY id", [run_id]).fetchall()
    return {"koersel": run, "aendringer": staging.candidates(conn, run_id),
            "konflikter": [dict(zip(("objekt_id", "felt", "grundlag", "ly", "geofa", "politik",
                                     "vinder", "begrundelse"), c)) for c in conflicts]}
