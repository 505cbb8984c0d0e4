"""The planner: who gets a place within walking distance (issue 18; ZUPLA in Ly's terms).

A run takes a population grid (`loaders.population_grid`), a theme's objects with places (the
shelters' `pladser`, through the theme's descriptor and its planning profile,
`datamodel.planning`), settings and a scenario, and computes:

1. **Reach.** For every populated cell, the objects within the walking limit: straight-line
   distance from the cell's centre at most `limit ÷ detour` (`Settings.radius_m`), found with
   a KD-tree of the objects (`scipy.spatial.cKDTree.sparse_distance_matrix`, cells in blocks
   of 20,000). Every such (cell, object) pair is an *arc*; its cost is the walking distance
   in whole metres, `round(straight line × detour)`. Within reach (ignoring competition): a
   cell's residents up to the places of the objects in its reach, `min(residents, places in
   reach)`.
2. **Assignment.** A capacity-constrained assignment of residents to places, solved as a
   min-cost max-flow with Google OR-Tools (`SimpleMinCostFlow.solve_max_flow_with_min_cost`:
   source → cells (their residents) → objects (every arc, the walking metres as cost) →
   sink (each object's places)): first as many residents placed as possible (a maximum
   flow), then among those the least total walking distance. The flow is integral, so every
   resident is placed in one object or not at all. Nobody is assigned beyond the limit (only
   arcs within it exist) and no object over its places (its arc to the sink).
3. **Split cells.** A cell whose residents go to more than one object is *split*. After the
   solve, cycles in the assignment (cell A → object 1 ← cell B → object 2 ← cell A, and
   longer ones) are cancelled: flow is pushed around each until one of its assignments is
   empty. At an optimum every such cycle costs nothing either way round, so this changes
   neither the residents placed nor the walking distance, and leaves an assignment whose
   (cell, object) pairs form a forest: then at most (objects used − trees) cells are split
   (each tree of k objects can split at most k − 1 cells). That is all it does: it does not
   look for another optimal assignment with fewer split cells; the count before and after is
   reported (`celler_delt_foer`, `celler_delt`).

A national run is, by default, the municipalities' runs side by side: each municipality's
residents are assigned to the places in that municipality (ZUPLA plans per municipality;
Danish public shelters are the municipality's, lov om beskyttelsesrum §1). A national run with
`tvaers_af_kommuner` is one problem for the whole country (the same method, no borders; slower
and larger). A municipal run is its municipality's cells and objects. Either way the result
is exact for its model: the maximum number placed and, among those, the least walking distance
over every arc within the limit (no arc is left out).

The run reads its inputs in the connection's transaction (`read_steps`: as the actor sees
them, row-level security applies), computes without the database (`compute`, which the
service runs in a worker thread), and stores the run with its settings, scenario, the
versions of its inputs (the grid, the objects' count, newest `systid_fra` and a SHA-256 of
their `versions_id`s) and its time (`store_steps`): so a plan can be reproduced (the same
inputs with `asof` the run's time) and compared. Steps as in `loaders.reports`: generators of
`(statement, params)`, driven by `loaders.reports.run` (sync) or `run_async`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from psycopg import sql

from datamodel import planning, themes
from datamodel.planning import PlanInputError, Profile, Scenario, Settings
from datamodel.themes import Theme
from loaders.reports import Steps

#: Cells per block when finding the arcs (bounds the memory of one KD-tree query).
BLOCK = 20_000
METHOD = ("OR-Tools SimpleMinCostFlow.solve_max_flow_with_min_cost: største antal placerede "
          "(maksimal strømning), dernæst mindste samlede gangafstand (hele meter)")
SPLIT_METHOD = ("cyklusser i tildelingen ophæves (samme antal placerede og samme gangafstand); "
                "tildelingen er derefter en skov, så højst (brugte rum − træer) celler er delt")


# --- drivers (statements that return nothing answer []) ---------------------------------------

def drive(conn, steps: Steps):
    """Drive `steps` on a synchronous psycopg connection."""
    try:
        step = next(steps)
        while True:
            cur = conn.execute(*step)
            step = steps.send(cur.fetchall() if cur.description else [])
    except StopIteration as done:
        return done.value


async def drive_async(conn, steps: Steps):
    """Drive `steps` on an asynchronous psycopg connection."""
    try:
        step = next(steps)
        while True:
            cur = await conn.execute(*step)
            step = steps.send(await cur.fetchall() if cur.description else [])
    except StopIteration as done:
        return done.value


# --- a theme's planning profile ----------------------------------------------------------------

_SEARCHED: set[str] = set()


def profile_for(theme: Theme) -> Profile:
    """The theme's planning profile: registered by its workflow module
    `loaders.planning_<collection id>` (imported on first use), else the default (every
    current object with places counts)."""
    name = f"{__package__}.planning_{theme.collection_id}"
    if name not in _SEARCHED:
        _SEARCHED.add(name)
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
    return planning.registered_profile(theme.temakode) or Profile()


def plan_theme(collection_id: str | None = None) -> Theme:
    """The theme a run plans with: the given one, or the first point theme with places."""
    if collection_id is not None:
        try:
            theme = themes.get(collection_id)
        except KeyError:
            raise PlanInputError("tema", f"{collection_id!r} is not a collection") from None
        if not planning.plannable(theme):
            raise PlanInputError("tema", f"{collection_id} has no places to plan with")
        return theme
    return next(t for t in themes.all_themes() if planning.plannable(t))


# --- the pure part: reach, assignment, split cells ------------------------------------------------

@dataclass
class Problem:
    """Cells (centres, residents, group) and objects (positions, places, group); a cell is
    assigned only to objects of its own group (its municipality, or one group for all)."""

    cell_x: np.ndarray
    cell_y: np.ndarray
    residents: np.ndarray
    cell_group: np.ndarray
    obj_x: np.ndarray
    obj_y: np.ndarray
    places: np.ndarray
    obj_group: np.ndarray
    radius_m: float
    detour: float


@dataclass
class Solution:
    """The assignment: its (cell, object, residents, walking metres) with residents, and per
    cell and object the totals."""

    arc_cell: np.ndarray
    arc_obj: np.ndarray
    arc_flow: np.ndarray
    arc_cost: np.ndarray
    within_reach: np.ndarray  # per cell: min(residents, places in reach)
    assigned: np.ndarray  # per cell
    load: np.ndarray  # per object
    arcs: int  # (cell, object) pairs within the limit
    groups: int
    split_before: int
    split_after: int
    cycles: int  # cycles cancelled
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def placed(self) -> int:
        return int(self.arc_flow.sum())

    @property
    def cost(self) -> int:
        return int((self.arc_flow.astype(np.int64) * self.arc_cost).sum())


def _arcs(cx, cy, ox, oy, radius: float, detour: float):
    """Every (cell, object) pair within `radius` (local indices) and its cost in whole
    walking metres."""
    from scipy.spatial import cKDTree

    tails, heads, costs = [], [], []
    if len(cx) == 0 or len(ox) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    tree = cKDTree(np.column_stack([ox, oy]))
    order = np.lexsort((cx, cy))  # blocks of nearby cells: small trees, few pairs per query
    for i in range(0, len(order), BLOCK):
        sel = order[i:i + BLOCK]
        block = cKDTree(np.column_stack([cx[sel], cy[sel]]))
        m = block.sparse_distance_matrix(tree, radius, output_type="ndarray")
        if len(m):
            tails.append(sel[m["i"]])
            heads.append(m["j"].astype(np.int64))
            costs.append(np.rint(m["v"] * detour).astype(np.int64))
    if not tails:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(tails), np.concatenate(heads), np.concatenate(costs)


def _cancel_cycles(cell: np.ndarray, obj: np.ndarray, flow: np.ndarray, cost: np.ndarray,
                   n_cells: int) -> tuple[np.ndarray, int]:
    """Cancel the cycles of an assignment (see the module's docstring): the flows after, and
    how many cycles were cancelled. A cycle whose cost is not zero (the solver's answer was
    not optimal) is pushed the cheaper way, so the cost never rises."""
    flow = flow.astype(np.int64).copy()
    parent: dict[int, int] = {}

    def find(a: int) -> int:
        root = a
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(a, a) != root:
            parent[a], a = root, parent[a]
        return root

    adjacency: dict[int, dict[int, int]] = {}  # node -> {arc: other node}
    cycles = 0

    def link(a: int, u: int, v: int) -> None:
        adjacency.setdefault(u, {})[a] = v
        adjacency.setdefault(v, {})[a] = u

    def unlink(a: int, u: int, v: int) -> None:
        adjacency[u].pop(a, None)
        adjacency[v].pop(a, None)

    def path(start: int, goal: int) -> list[tuple[int, int, int]] | None:
        """(arc, from, to) steps from start to goal in the forest, or None."""
        back: dict[int, tuple[int, int]] = {start: (-1, -1)}
        frontier = [start]
        while frontier and goal not in back:
            nxt = []
            for u in frontier:
                for a, v in adjacency.get(u, {}).items():
                    if v not in back:
                        back[v] = (a, u)
                        nxt.append(v)
            frontier = nxt
        if goal not in back:
            return None
        steps = []
        node = goal
        while node != start:
            a, prev = back[node]
            steps.append((a, prev, node))
            node = prev
        return steps[::-1]

    for a in range(len(cell)):
        u, v = int(cell[a]), n_cells + int(obj[a])
        ru, rv = find(u), find(v)
        if ru != rv:
            parent[ru] = rv
            link(a, u, v)
            continue
        steps = path(v, u)
        if steps is None:  # connected once, split since by a cancelled cycle
            link(a, u, v)
            continue
        # The cycle: arc a from cell u to object v (+), then the path back from v to u: an
        # arc walked from an object to a cell is walked against its direction (-).
        cycle = [(a, 1)] + [(b, 1 if frm < n_cells else -1) for b, frm, _ in steps]
        delta = sum(s * int(cost[b]) for b, s in cycle)
        if delta > 0:
            cycle = [(b, -s) for b, s in cycle]
        theta = min(int(flow[b]) for b, s in cycle if s < 0)
        for b, s in cycle:
            flow[b] += s * theta
        cycles += 1
        for b, _ in cycle[1:]:
            if flow[b] == 0:
                unlink(b, int(cell[b]), n_cells + int(obj[b]))
        if flow[a] > 0:
            link(a, u, v)
    return flow, cycles


def solve(problem: Problem) -> Solution:
    """Reach, assignment and split cells for every group (see the module's docstring)."""
    from ortools.graph.python import min_cost_flow

    n_cells, n_obj = len(problem.residents), len(problem.places)
    residents = problem.residents.astype(np.int64)
    places = problem.places.astype(np.int64)
    within = np.zeros(n_cells, dtype=np.int64)
    parts: list[tuple[np.ndarray, ...]] = []
    seconds = {"raekkevidde": 0.0, "tildeling": 0.0, "deling": 0.0}
    arcs = split_before = cycles = 0
    groups = np.unique(problem.cell_group)
    obj_order = np.argsort(problem.obj_group, kind="stable")
    obj_groups = problem.obj_group[obj_order]
    cell_order = np.argsort(problem.cell_group, kind="stable")
    cell_groups = problem.cell_group[cell_order]
    for g in groups:
        ci = cell_order[np.searchsorted(cell_groups, g):np.searchsorted(cell_groups, g, "right")]
        oi = obj_order[np.searchsorted(obj_groups, g):np.searchsorted(obj_groups, g, "right")]
        t0 = time.perf_counter()
        tails, heads, costs = _arcs(problem.cell_x[ci], problem.cell_y[ci], problem.obj_x[oi],
                                    problem.obj_y[oi], problem.radius_m, problem.detour)
        nc, no = len(ci), len(oi)
        r = residents[ci]
        capacity = np.bincount(tails, weights=places[oi][heads], minlength=nc).astype(np.int64)
        within[ci] = np.minimum(r, capacity)
        arcs += len(tails)
        t1 = time.perf_counter()
        seconds["raekkevidde"] += t1 - t0
        if len(tails) == 0:
            continue
        smcf = min_cost_flow.SimpleMinCostFlow()
        smcf.add_arcs_with_capacity_and_unit_cost(tails, heads + nc, r[tails], costs)
        sink = nc + no
        smcf.add_arcs_with_capacity_and_unit_cost(
            np.arange(nc, nc + no, dtype=np.int64), np.full(no, sink, dtype=np.int64),
            places[oi], np.zeros(no, dtype=np.int64))
        supply = np.zeros(nc + no + 1, dtype=np.int64)
        reached = capacity > 0
        supply[:nc] = np.where(reached, r, 0)
        supply[sink] = -int(supply[:nc].sum())
        smcf.set_nodes_supplies(np.arange(nc + no + 1, dtype=np.int64), supply)
        status = smcf.solve_max_flow_with_min_cost()
        if status != smcf.OPTIMAL:
            raise RuntimeError(f"OR-Tools min-cost flow: {status}")
        flow = smcf.flows(np.arange(len(tails), dtype=np.int64))
        del smcf
        t2 = time.perf_counter()
        seconds["tildeling"] += t2 - t1
        used = flow > 0
        pt, ph, pf, pc = tails[used], heads[used], flow[used], costs[used]
        split_before += int((np.bincount(pt, minlength=nc) > 1).sum())
        pf, n_cycles = _cancel_cycles(pt, ph, pf, pc, nc)
        cycles += n_cycles
        keep = pf > 0
        parts.append((ci[pt[keep]], oi[ph[keep]], pf[keep], pc[keep]))
        seconds["deling"] += time.perf_counter() - t2
    if parts:
        arc_cell, arc_obj, arc_flow, arc_cost = (np.concatenate(x) for x in zip(*parts))
    else:
        arc_cell = arc_obj = arc_flow = arc_cost = np.zeros(0, dtype=np.int64)
    assigned = np.bincount(arc_cell, weights=arc_flow, minlength=n_cells).astype(np.int64)
    load = np.bincount(arc_obj, weights=arc_flow, minlength=n_obj).astype(np.int64)
    split_after = int((np.bincount(arc_cell, minlength=n_cells) > 1).sum())
    return Solution(arc_cell=arc_cell, arc_obj=arc_obj, arc_flow=arc_flow.astype(np.int64),
                    arc_cost=arc_cost.astype(np.int64), within_reach=within, assigned=assigned,
                    load=load, arcs=arcs, groups=len(groups), split_before=split_before,
                    split_after=split_after, cycles=cycles,
                    seconds={k: round(v, 3) for k, v in seconds.items()})


# --- a run: its inputs from the database ----------------------------------------------------------

@dataclass
class Inputs:
    theme: Theme
    profile: Profile
    settings: Settings
    scenario: Scenario
    kommunekode: int | None  # None: national
    grid: dict
    read_at: datetime
    cell_ids: list[str]
    cell_x: np.ndarray
    cell_y: np.ndarray
    residents: np.ndarray
    cell_kommune: np.ndarray
    cell_postnr: list[int | None]
    objekt_ids: list[uuid.UUID]
    versions_ids: list[uuid.UUID]
    obj_x: np.ndarray
    obj_y: np.ndarray
    places: np.ndarray
    obj_kommune: np.ndarray
    newest_version: datetime | None

    @property
    def scope(self) -> str:
        return "national" if self.kommunekode is None else "kommune"

    def versions(self) -> dict:
        """The versions of the run's inputs."""
        digest = hashlib.sha256("\n".join(sorted(str(v) for v in self.versions_ids))
                                .encode()).hexdigest()
        g = self.grid
        return {
            "net_id": g["id"], "net_kilde": g["kilde"], "net_syntetisk": g["syntetisk"],
            "net_sha256": g["sha256"], "net_periode": g["periode"],
            "celler": len(self.cell_ids), "indbyggere": int(self.residents.sum()),
            "tema": self.theme.collection_id, "pladser_felt": self.profile.places_field(
                self.theme),
            "objekter": len(self.versions_ids), "objekter_versions_sha256": digest,
            "objekter_nyeste_systid_fra": self.newest_version.isoformat()
            if self.newest_version else None,
            "laest": self.read_at.isoformat(),
        }


def read_steps(theme: Theme, settings: Settings, scenario: Scenario, kommunekode: int | None,
               net_id: int | None = None) -> Steps[Inputs]:
    """The run's inputs as the connection's actor sees them."""
    profile = profile_for(theme)
    if net_id is None:
        rows = yield planning.NEWEST_GRID_SQL, []
        if not rows:
            raise PlanInputError("net_id", "no population grid is loaded (ly load-population, "
                                           "or ly load-demo for the synthetic one)")
        net_id = rows[0][0]
    rows = yield planning.GRID_SQL, [net_id]
    if not rows:
        raise PlanInputError("net_id", f"no population grid {net_id}")
    names = ("id", "kilde", "syntetisk", "celle_m", "periode", "sha256", "celler", "indbyggere",
             "indlaest")
    grid = dict(zip(names, rows[0]))
    grid["indlaest"] = grid["indlaest"].isoformat()
    ((now,),) = yield sql.SQL("SELECT now()"), []
    stmt, params = planning.cells_sql(net_id, kommunekode)
    cells = yield stmt, params
    stmt, params = planning.objects_sql(theme, profile, scenario, kommunekode)
    objs = yield stmt, params
    return Inputs(
        theme=theme, profile=profile, settings=settings, scenario=scenario,
        kommunekode=kommunekode, grid=grid, read_at=now,
        cell_ids=[c[0] for c in cells],
        cell_x=np.array([c[1] for c in cells], dtype=float),
        cell_y=np.array([c[2] for c in cells], dtype=float),
        residents=np.array([c[3] for c in cells], dtype=np.int64),
        cell_kommune=np.array([-1 if c[4] is None else c[4] for c in cells], dtype=np.int64),
        cell_postnr=[c[5] for c in cells],
        objekt_ids=[o[0] for o in objs], versions_ids=[o[1] for o in objs],
        obj_x=np.array([o[3] for o in objs], dtype=float),
        obj_y=np.array([o[4] for o in objs], dtype=float),
        places=np.array([o[5] for o in objs], dtype=np.int64),
        obj_kommune=np.array([-1 if o[6] is None else o[6] for o in objs], dtype=np.int64),
        newest_version=max((o[2] for o in objs), default=None))


def problem_of(inputs: Inputs) -> Problem:
    s = inputs.settings
    one = inputs.kommunekode is not None or s.tvaers_af_kommuner
    return Problem(
        cell_x=inputs.cell_x, cell_y=inputs.cell_y, residents=inputs.residents,
        cell_group=np.zeros(len(inputs.residents), dtype=np.int64) if one
        else inputs.cell_kommune,
        obj_x=inputs.obj_x, obj_y=inputs.obj_y, places=inputs.places,
        obj_group=np.zeros(len(inputs.places), dtype=np.int64) if one
        else inputs.obj_kommune,
        radius_m=s.radius_m, detour=s.omvejsfaktor)


def compute(inputs: Inputs) -> Solution:
    """The run's assignment (no database: the service runs it in a worker thread)."""
    return solve(problem_of(inputs))


# --- a run: storing it --------------------------------------------------------------------------

def result_json(inputs: Inputs, sol: Solution) -> dict:
    residents = int(inputs.residents.sum())
    placed = sol.placed
    return {
        "indbyggere": residents, "inden_for_raekkevidde": int(sol.within_reach.sum()),
        "daekket": placed, "ikke_daekket": residents - placed,
        "andel_daekket": round(placed / residents, 4) if residents else None,
        "celler": len(inputs.cell_ids), "celler_delt_foer": sol.split_before,
        "celler_delt": sol.split_after, "cyklusser_ophaevet": sol.cycles,
        "objekter": len(inputs.objekt_ids), "kapacitet": int(inputs.places.sum()),
        "belaegning": int(sol.load.sum()), "buer": sol.arcs, "delproblemer": sol.groups,
        "afstand_m_i_alt": sol.cost,
        "gennemsnit_m": round(sol.cost / placed, 1) if placed else None,
        "sekunder": sol.seconds, "metode": METHOD, "delte_celler_metode": SPLIT_METHOD,
        "model": ("hele landet som ét problem" if inputs.settings.tvaers_af_kommuner
                  and inputs.kommunekode is None else
                  "hver kommunes indbyggere til kommunens egen kapacitet"),
    }


def store_steps(inputs: Inputs, sol: Solution, *, sammenlignet_med: int | None = None
                ) -> Steps[int]:
    """Store the run (see migration 0014) and return its id."""
    from psycopg.types.json import Jsonb

    ((run_id,),) = yield sql.SQL("""
        INSERT INTO ly.plankoersel (temakode, omfang, kommunekode, net_id, scenarie,
                                    indstillinger, input, sammenlignet_med)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"""), [
        inputs.theme.temakode, inputs.scope, inputs.kommunekode, inputs.grid["id"],
        Jsonb(inputs.scenario.as_json()), Jsonb(inputs.settings.as_json()),
        Jsonb(inputs.versions()), sammenlignet_med]
    n = len(inputs.cell_ids)
    arcs_per_cell = np.bincount(sol.arc_cell, minlength=n)
    metres = np.bincount(sol.arc_cell, weights=sol.arc_flow * sol.arc_cost,
                         minlength=n).astype(np.int64)
    if n:
        yield sql.SQL("""
            INSERT INTO ly.plankoersel_celle (koersel_id, celle_id, kommunekode, postnr,
                indbyggere, inden_for_raekkevidde, daekket, ikke_daekket, rum, afstand_m)
            SELECT %s, u.* FROM unnest(%s::text[], %s::int[], %s::int[], %s::int[], %s::int[],
                                      %s::int[], %s::int[], %s::int[], %s::bigint[]) u"""), [
            run_id, inputs.cell_ids,
            [None if k < 0 else k for k in inputs.cell_kommune.tolist()], inputs.cell_postnr,
            inputs.residents.tolist(), sol.within_reach.tolist(), sol.assigned.tolist(),
            (inputs.residents - sol.assigned).tolist(), arcs_per_cell.tolist(),
            metres.tolist()]
    m = len(inputs.objekt_ids)
    if m:
        cells_per_obj = np.bincount(sol.arc_obj, minlength=m)
        yield sql.SQL("""
            INSERT INTO ly.plankoersel_objekt (koersel_id, objekt_id, versions_id, kommunekode,
                                               kapacitet, belaegning, celler)
            SELECT %s, u.* FROM unnest(%s::uuid[], %s::uuid[], %s::int[], %s::int[], %s::int[],
                                      %s::int[]) u"""), [
            run_id, inputs.objekt_ids, inputs.versions_ids,
            [None if k < 0 else k for k in inputs.obj_kommune.tolist()],
            inputs.places.tolist(), sol.load.tolist(), cells_per_obj.tolist()]
        kommuner = inputs.obj_kommune
        codes = sorted(set(kommuner.tolist()) - {-1})
        yield sql.SQL("""
            INSERT INTO ly.plankoersel_kommune (koersel_id, kommunekode, objekter, kapacitet,
                                                belaegning)
            SELECT %s, u.* FROM unnest(%s::int[], %s::int[], %s::bigint[], %s::bigint[]) u"""), [
            run_id, codes, [int((kommuner == k).sum()) for k in codes],
            [int(inputs.places[kommuner == k].sum()) for k in codes],
            [int(sol.load[kommuner == k].sum()) for k in codes]]
    if len(sol.arc_flow):
        yield sql.SQL("""
            INSERT INTO ly.plankoersel_tildeling (koersel_id, celle_id, objekt_id, antal,
                                                  afstand_m)
            SELECT %s, u.* FROM unnest(%s::text[], %s::uuid[], %s::int[], %s::int[]) u"""), [
            run_id, [inputs.cell_ids[i] for i in sol.arc_cell.tolist()],
            [inputs.objekt_ids[i] for i in sol.arc_obj.tolist()], sol.arc_flow.tolist(),
            sol.arc_cost.tolist()]
    yield sql.SQL("""
        UPDATE ly.plankoersel SET status = 'faerdig', resultat = %s,
               afsluttet = clock_timestamp()
        WHERE id = %s"""), [Jsonb(result_json(inputs, sol)), run_id]
    return run_id


def base_run_steps(inputs: Inputs) -> Steps[int | None]:
    """The newest finished run without a scenario with the same theme, scope, grid and
    settings: what a scenario run is compared with."""
    from psycopg.types.json import Jsonb

    rows = yield sql.SQL("""
        SELECT id FROM ly.plankoersel
        WHERE status = 'faerdig' AND temakode = %s AND omfang = %s
          AND kommunekode IS NOT DISTINCT FROM %s AND net_id = %s AND indstillinger = %s
          AND scenarie = %s
        ORDER BY id DESC LIMIT 1"""), [
        inputs.theme.temakode, inputs.scope, inputs.kommunekode, inputs.grid["id"],
        Jsonb(inputs.settings.as_json()), Jsonb(Scenario().as_json())]
    return rows[0][0] if rows else None


def check_base_steps(base_id: int, inputs: Inputs) -> Steps[int]:
    """A base run the caller named: it must be finished, readable and of the same theme,
    scope and grid."""
    rows = yield sql.SQL("SELECT temakode, omfang, kommunekode, net_id FROM ly.plankoersel "
                         "WHERE id = %s AND status = 'faerdig'"), [base_id]
    if not rows:
        raise PlanInputError("sammenlign_med", f"no finished run {base_id}")
    if tuple(rows[0]) != (inputs.theme.temakode, inputs.scope, inputs.kommunekode,
                          inputs.grid["id"]):
        raise PlanInputError("sammenlign_med", f"run {base_id} has another theme, scope or "
                                               "population grid")
    return base_id


@dataclass
class Made:
    """The runs a request made: the run, and the base run made for its comparison (if
    one had to be made)."""

    koersel_id: int
    basis_id: int | None
    made_base: bool


def plan_steps(theme: Theme, settings: Settings, scenario: Scenario, kommunekode: int | None,
               *, net_id: int | None = None, sammenlign_med: int | None = None,
               compute_fn=compute):
    """Every step of a run in one (sync) generator: read, compute, store; a scenario is
    compared with `sammenlign_med`, or the newest matching base run, made first if there is
    none. The service drives the same parts itself to compute in a worker thread."""
    inputs = yield from read_steps(theme, settings, scenario, kommunekode, net_id)
    base, made_base = None, False
    if not scenario.is_base:
        if sammenlign_med is not None:
            base = yield from check_base_steps(sammenlign_med, inputs)
        else:
            base = yield from base_run_steps(inputs)
            if base is None:
                base_inputs = yield from read_steps(theme, settings, Scenario(), kommunekode,
                                                    inputs.grid["id"])
                base = yield from store_steps(base_inputs, compute_fn(base_inputs))
                made_base = True
    run_id = yield from store_steps(inputs, compute_fn(inputs), sammenlignet_med=base)
    return Made(run_id, base, made_base)


def run(conn, theme: Theme, settings: Settings | None = None, scenario: Scenario | None = None,
        kommunekode: int | None = None, *, net_id: int | None = None,
        sammenlign_med: int | None = None) -> Made:
    """A run on a synchronous connection, in one transaction (the CLI, tests)."""
    with conn.transaction():
        return drive(conn, plan_steps(theme, settings or Settings(),
                                               scenario or Scenario(), kommunekode,
                                               net_id=net_id, sammenlign_med=sammenlign_med))


# --- reading a run back (the API, the map, the report) --------------------------------------------

@dataclass
class AreaRow:
    omraade: int | None
    navn: str | None
    indbyggere: int
    inden_for_raekkevidde: int
    daekket: int
    ikke_daekket: int
    celler: int


@dataclass
class ComparisonRow:
    omraade: int | None
    navn: str | None
    daekket_basis: int
    daekket_scenarie: int
    forskel: int
    inden_for_raekkevidde_basis: int
    inden_for_raekkevidde_scenarie: int


@dataclass
class Totals:
    indbyggere: int
    inden_for_raekkevidde: int
    daekket: int
    ikke_daekket: int
    celler: int
    celler_delt: int
    afstand_m: int
    objekter: int
    kapacitet: int
    belaegning: int

    @property
    def andel_daekket(self) -> float | None:
        return round(self.daekket / self.indbyggere, 4) if self.indbyggere else None


def _run_dict(row) -> dict:
    out = dict(zip(planning.RUN_COLUMNS, row))
    for k in ("oprettet", "afsluttet"):
        if out.get(k) is not None:
            out[k] = out[k].isoformat()
    return out


def runs_steps(kommunekode: int | None = None, limit: int = 100) -> Steps[list[dict]]:
    stmt, params = planning.runs_sql(kommunekode=kommunekode, limit=limit)
    rows = yield stmt, params
    return [_run_dict(r) for r in rows]


def run_steps(run_id: int) -> Steps[dict | None]:
    stmt, params = planning.runs_sql(run_id=run_id, limit=1)
    rows = yield stmt, params
    return _run_dict(rows[0]) if rows else None


def totals_steps(run_id: int, kommunekode: int | None = None) -> Steps[Totals]:
    (cells, cp), (objs, op) = planning.summary_sql(run_id, kommunekode)
    (c,) = yield cells, cp
    (o,) = yield objs, op
    return Totals(*(int(v) for v in c), *(int(v) for v in o))


def areas_steps(run_id: int, by: str, kommunekode: int | None = None) -> Steps[list[AreaRow]]:
    stmt, params = planning.area_rows_sql(run_id, by, kommunekode)
    rows = yield stmt, params
    return [AreaRow(r[0], r[1], *(int(v) for v in r[2:])) for r in rows]


def comparison_steps(run_id: int, base_id: int, by: str, kommunekode: int | None = None
                     ) -> Steps[list[ComparisonRow]]:
    stmt, params = planning.comparison_sql(run_id, base_id, by, kommunekode)
    rows = yield stmt, params
    return [ComparisonRow(r[0], r[1], *(int(v) for v in r[2:])) for r in rows]


# --- the municipal report's coverage section ------------------------------------------------------

#: Areas (postal districts) listed with the largest deficit, and in the comparison.
REPORT_AREAS = 5


@dataclass
class PlanCoverage:
    """The coverage of a municipality in its newest plan run (the municipal report)."""

    koersel_id: int
    omfang: str
    oprettet: str
    kilde: str
    syntetisk: bool
    minutter: float
    indbyggere: int
    inden_for_raekkevidde: int
    daekket: int
    #: Residents without a place within the limit (covered by no assignment).
    underskud: int
    andel_daekket: float | None
    objekter: int
    kapacitet: int
    belaegning: int
    ledige: int
    celler_delt: int
    #: The postal districts with the largest deficit.
    stoerste_underskud: list[AreaRow]
    #: The newest scenario run compared with this one: its name, id, covered, difference.
    scenarie: dict | None = None
    scenarie_omraader: list[ComparisonRow] = field(default_factory=list)


def coverage_steps(theme: Theme, kommunekode: int) -> Steps[PlanCoverage | None]:
    """The municipality's coverage from its newest finished base run (a municipal run for
    it, or else a national one) that the actor may read; None without one."""
    rows = yield sql.SQL("""
        SELECT k.id, k.omfang, k.oprettet, n.kilde, n.syntetisk,
               (k.indstillinger ->> 'minutter')::float
        FROM ly.plankoersel k JOIN ly.befolkningsnet n ON n.id = k.net_id
        WHERE k.status = 'faerdig' AND k.temakode = %s AND k.scenarie ->> 'navn' = %s
          AND (k.kommunekode = %s OR k.omfang = 'national')
        ORDER BY (k.omfang = 'kommune') DESC, k.id DESC LIMIT 1"""), [
        theme.temakode, planning.BASE, kommunekode]
    if not rows:
        return None
    run_id, omfang, oprettet, kilde, syntetisk, minutter = rows[0]
    t = yield from totals_steps(run_id, kommunekode)
    areas = yield from areas_steps(run_id, "postnr", kommunekode)
    out = PlanCoverage(
        koersel_id=run_id, omfang=omfang, oprettet=oprettet.isoformat(), kilde=kilde,
        syntetisk=syntetisk, minutter=minutter, indbyggere=t.indbyggere,
        inden_for_raekkevidde=t.inden_for_raekkevidde, daekket=t.daekket,
        underskud=t.ikke_daekket, andel_daekket=t.andel_daekket, objekter=t.objekter,
        kapacitet=t.kapacitet, belaegning=t.belaegning, ledige=t.kapacitet - t.belaegning,
        celler_delt=t.celler_delt,
        stoerste_underskud=[a for a in areas if a.ikke_daekket > 0][:REPORT_AREAS])
    rows = yield sql.SQL("""
        SELECT id, scenarie ->> 'navn' FROM ly.plankoersel
        WHERE status = 'faerdig' AND sammenlignet_med = %s ORDER BY id DESC LIMIT 1"""), [run_id]
    if rows:
        sid, navn = rows[0]
        st = yield from totals_steps(sid, kommunekode)
        out.scenarie = {"koersel_id": sid, "navn": navn, "daekket": st.daekket,
                        "inden_for_raekkevidde": st.inden_for_raekkevidde,
                        "forskel": st.daekket - t.daekket,
                        "forskel_inden_for_raekkevidde":
                            st.inden_for_raekkevidde - t.inden_for_raekkevidde}
        comp = yield from comparison_steps(sid, run_id, "postnr", kommunekode)
        out.scenarie_omraader = [c for c in comp if c.forskel != 0][:REPORT_AREAS]
    return out
