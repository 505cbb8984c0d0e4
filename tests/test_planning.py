"""The planner (issue 18): population grids, reach, the assignment and its checks.

The module's own copy of the demo database gets the synthetic grid of Frederiksberg (147) and
Læsø (825); Frederiksberg's run is a dense small instance (870-odd 100 m cells, every one
within reach of most of the municipality's shelters). What a run stored is checked against
what the test computes itself: feasibility from the stored rows, the number placed against a
maximum flow (networkx), the walking distance against a linear program (scipy's HiGHS), the
arcs and "within reach" recomputed in SQL (ST_DWithin) — with and without the unfit shelters.
"""

from __future__ import annotations

import csv
from pathlib import Path

import networkx as nx
import numpy as np
import psycopg
import pytest
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from datamodel.planning import PlanInputError, Scenario, Settings, parse_scenario
from loaders import planning
from loaders import population_grid as pg
from loaders.reports import population
from tests.conftest import fresh_database, query

FIXTURE = Path(__file__).parent / "fixtures" / "befolkning_kvadratnet" / "befolkning_100m.csv"
FREDERIKSBERG, LAESOE = 147, 825
THEME = planning.plan_theme()
VIEW = f"ly.{THEME.current_view}"
PLACES = planning.profile_for(THEME).places_field(THEME)


@pytest.fixture(scope="module")
def plan_db(template_db):
    """The module's database: the synthetic grid of two municipalities, some shelters in
    Frederiksberg classified unfit, and a base run and a scenario run without the unfit."""
    for url in fresh_database(template_db, "ly_pl_"):
        with psycopg.connect(url) as conn:
            grid = pg.load_synthetic(conn, kommuner=[FREDERIKSBERG, LAESOE])
            # Twelve more counted shelters of Frederiksberg are found unfit (egnethed 3).
            conn.execute(f"""
                UPDATE {VIEW} SET egnethed_kode = 3 WHERE objekt_id IN (
                    SELECT objekt_id FROM {VIEW} WHERE beliggenhedskommune = %s
                      AND funktionsstatus_kode NOT IN (1, 2, 5, 6)
                    ORDER BY objekt_id OFFSET 1 LIMIT 12)""", [FREDERIKSBERG])
            conn.commit()
            base = planning.run(conn, THEME, Settings(), Scenario(), FREDERIKSBERG)
            profile = planning.profile_for(THEME)
            scenario = planning.run(conn, THEME, Settings(),
                                    parse_scenario(THEME, profile, "uden-uegnede"),
                                    FREDERIKSBERG)
        yield {"url": url, "grid": grid, "base": base.koersel_id,
               "scenario": scenario.koersel_id, "scenario_made": scenario}


# --- population grids ------------------------------------------------------------------------

def _file_rows() -> list[tuple[str, int]]:
    with FIXTURE.open(encoding="utf-8") as fh:
        out = []
        for row in csv.DictReader(fh):
            value = row["pers2024"]
            out.append((row["ddkncelle100m"], 1 if value == "99999" else int(value)))
    return sorted(out)


def test_a_dst_file_gives_its_cells_and_counts(db_url):
    with psycopg.connect(db_url) as conn:
        stored = pg.load_file(conn, FIXTURE, periode="2024")
    expected = _file_rows()
    assert stored.celler == len(expected) and stored.indbyggere == sum(n for _, n in expected)
    assert stored.undertrykte == 2 and stored.celle_m == 100 and not stored.syntetisk
    cells = query(db_url, """
        SELECT celle_id, indbyggere, kommunekode, ST_XMin(geometri)::int, ST_YMin(geometri)::int,
               ST_XMax(geometri)::int - ST_XMin(geometri)::int, ST_X(centrum), ST_SRID(geometri)
        FROM ly.befolkningscelle WHERE net_id = %s ORDER BY celle_id""", [stored.id])
    assert [(c[0], c[1]) for c in cells] == expected
    for celle_id, _, kommune, x0, y0, side, cx, srid in cells:
        _, north, east = celle_id.split("_")
        assert (x0, y0, side, srid) == (int(east) * 100, int(north) * 100, 100, 25832)
        assert cx == x0 + 50 and kommune == 751  # Aarhus
    (digest,) = query(db_url, "SELECT sha256 FROM ly.befolkningsnet WHERE id = %s",
                      [stored.id])[0]
    assert digest == pg.sha256(FIXTURE.read_bytes())


def test_a_bad_dst_file_is_refused_whole_naming_row_and_column(db_url):
    bad = ("ddkncelle100m;pers2024\n100m_62231_5744;12\n100m_62x3_5744;3\n"
           "100m_62231_5744;4\n100m_62232_5744;tolv\n").encode()
    with pytest.raises(pg.GridFileError) as err:
        pg.read_dst(bad)
    problems = {(r, c) for r, c, _ in err.value.problems}
    assert problems == {(3, "ddkncelle100m"), (4, "ddkncelle100m"), (5, "pers2024")}
    with pytest.raises(pg.GridFileError, match="no DDKN cell column"):
        pg.read_dst(b"celle;antal\nx;1\n")
    assert query(db_url, "SELECT count(*) FROM ly.befolkningsnet")[0][0] == 0
    # 1 km cells are read too, in the same layout
    grid = pg.read_dst(b"ddkncelle1km;personer\n1km_6223_574;120\n")
    assert (grid.size, int(grid.east[0]), int(grid.north[0])) == (1000, 574000, 6223000)


def test_cell_ids_round_trip():
    for cid in ("100m_61750_7250", "1km_6175_725", "250m_617500_72500", "10km_617_72"):
        assert pg.cell_id(*pg.parse_cell_id(cid)) == cid
    with pytest.raises(ValueError):
        pg.parse_cell_id("250m_617501_72500")  # not on the 250 m grid


def test_the_synthetic_grid_holds_each_municipalitys_population_inside_it(plan_db):
    url, grid = plan_db["url"], plan_db["grid"]
    rows = dict(query(url, "SELECT kommunekode, sum(indbyggere) FROM ly.befolkningscelle "
                           "WHERE net_id = %s GROUP BY 1", [grid.id]))
    pop = population().by_kommune
    assert rows == {FREDERIKSBERG: pop[FREDERIKSBERG], LAESOE: pop[LAESOE]}
    outside = query(url, """
        SELECT count(*) FROM ly.befolkningscelle c JOIN ly.kommune k USING (kommunekode)
        WHERE c.net_id = %s AND NOT ST_Intersects(k.geometri, c.centrum)""", [grid.id])[0][0]
    assert outside == 0
    (syntetisk, kilde) = query(url, "SELECT syntetisk, kilde FROM ly.befolkningsnet "
                                    "WHERE id = %s", [grid.id])[0]
    assert syntetisk and "syntetisk" in kilde
    # denser near towns: cells within 1 km of a postal district's centre hold more residents
    # than those more than 3 km from every one (Læsø: a few villages and farms)
    near, far = query(url, """
        WITH t AS (SELECT ST_PointOnSurface(geometri) AS pt FROM ly.postnummer),
        c AS (SELECT c.indbyggere, (SELECT min(ST_Distance(t.pt, c.centrum)) FROM t) AS d
              FROM ly.befolkningscelle c WHERE c.net_id = %s AND c.kommunekode = %s)
        SELECT avg(indbyggere) FILTER (WHERE d < 1000), avg(indbyggere) FILTER (WHERE d > 3000)
        FROM c""", [grid.id, LAESOE])[0]
    assert near > 2 * far


def test_the_synthetic_grid_is_deterministic(plan_db):
    with psycopg.connect(plan_db["url"]) as conn:
        areas = pg.areas_from_db(conn, [LAESOE])
    a, b = pg.synthetic_grid(areas), pg.synthetic_grid(areas)
    assert a.ids() == b.ids() and a.residents.tolist() == b.residents.tolist()
    stored = query(plan_db["url"], "SELECT celle_id, indbyggere FROM ly.befolkningscelle "
                                   "WHERE net_id = %s AND kommunekode = %s ORDER BY celle_id",
                   [plan_db["grid"].id, LAESOE])
    assert stored == sorted(zip(a.ids(), a.residents.tolist()))


# --- what a stored run must be ------------------------------------------------------------------

def _run(url: str, run_id: int) -> dict:
    (resultat, indstillinger, scenarie, inp) = query(
        url, "SELECT resultat, indstillinger, scenarie, input FROM ly.plankoersel "
             "WHERE id = %s", [run_id])[0]
    return {"resultat": resultat, "indstillinger": indstillinger, "scenarie": scenarie,
            "input": inp}


def test_a_stored_run_is_feasible(plan_db):
    url = plan_db["url"]
    for run_id in (plan_db["base"], plan_db["scenario"]):
        run = _run(url, run_id)
        limit = run["indstillinger"]["graense_m"]
        radius = run["indstillinger"]["radius_m"]
        over = query(url, """
            SELECT count(*) FROM ly.plankoersel_objekt o
            WHERE o.koersel_id = %s AND o.belaegning > o.kapacitet
               OR o.belaegning <> (SELECT coalesce(sum(antal), 0) FROM ly.plankoersel_tildeling t
                                   WHERE t.koersel_id = o.koersel_id AND t.objekt_id = o.objekt_id)
        """, [run_id])[0][0]
        assert over == 0
        # Beyond the limit: neither the stored walking metres nor the straight line
        # recomputed from the stored cell and the shelter's version.
        beyond = query(url, f"""
            SELECT count(*), coalesce(max(t.afstand_m), 0),
                   coalesce(max(ST_Distance(c.centrum, h.geometri)), 0)
            FROM ly.plankoersel_tildeling t
            JOIN ly.plankoersel k ON k.id = t.koersel_id
            JOIN ly.befolkningscelle c ON c.net_id = k.net_id AND c.celle_id = t.celle_id
            JOIN ly.plankoersel_objekt o ON o.koersel_id = t.koersel_id
                 AND o.objekt_id = t.objekt_id
            JOIN ly.{THEME.table} h ON h.versions_id = o.versions_id
            WHERE t.koersel_id = %s""", [run_id])[0]
        assert beyond[0] > 0 and beyond[1] <= limit + 0.5 and beyond[2] <= radius + 1e-6
        cells = query(url, """
            SELECT count(*) FILTER (WHERE c.indbyggere <> c.daekket + c.ikke_daekket
                                       OR c.daekket <> coalesce(t.n, 0)),
                   count(*), sum(c.indbyggere)
            FROM ly.plankoersel_celle c
            LEFT JOIN (SELECT celle_id, sum(antal) AS n FROM ly.plankoersel_tildeling
                       WHERE koersel_id = %s GROUP BY 1) t USING (celle_id)
            WHERE c.koersel_id = %s""", [run_id, run_id])[0]
        grid_cells = query(url, "SELECT count(*), sum(indbyggere) FROM ly.befolkningscelle "
                                "WHERE net_id = %s AND kommunekode = %s AND indbyggere > 0",
                           [plan_db["grid"].id, FREDERIKSBERG])[0]
        assert cells[0] == 0 and (cells[1], cells[2]) == grid_cells


def _instance(url: str, run_id: int):
    """The run's problem recomputed from the database alone: cells, shelters and every arc
    within reach by ST_DWithin, cost the walking metres."""
    run = _run(url, run_id)
    s = run["indstillinger"]
    scenario = Scenario(**{k: v for k, v in {
        "udelad": {a: tuple(c) for a, c in run["scenarie"]["udelad"].items()}}.items()})
    excluded = {a: set(c) for a, c in scenario.udelad.items()}
    excluded.setdefault("funktionsstatus_kode", set()).update({1, 2, 5, 6})
    conds = " AND ".join(f"NOT coalesce(s.{a} = ANY(%s::int[]), false)" for a in excluded)
    args = [sorted(v) for v in excluded.values()]
    net = run["input"]["net_id"]
    arcs = query(url, f"""
        SELECT c.celle_id, s.objekt_id::text, round(ST_Distance(c.centrum, s.geometri) * %s)::int
        FROM ly.befolkningscelle c JOIN {VIEW} s
          ON s.beliggenhedskommune = %s AND ST_DWithin(c.centrum, s.geometri, %s)
        WHERE c.net_id = %s AND c.kommunekode = %s AND s.{PLACES} > 0 AND {conds}""",
                 [s["omvejsfaktor"], FREDERIKSBERG, s["radius_m"], net, FREDERIKSBERG, *args])
    cells = dict(query(url, "SELECT celle_id, indbyggere FROM ly.befolkningscelle "
                            "WHERE net_id = %s AND kommunekode = %s", [net, FREDERIKSBERG]))
    shelters = dict(query(url, f"SELECT objekt_id::text, s.{PLACES} FROM {VIEW} s "
                               f"WHERE beliggenhedskommune = %s AND s.{PLACES} > 0 AND {conds}",
                          [FREDERIKSBERG, *args]))
    return cells, shelters, arcs


def test_a_stored_run_places_as_many_as_a_maximum_flow_and_walks_no_further_than_an_lp(plan_db):
    url = plan_db["url"]
    for run_id in (plan_db["base"], plan_db["scenario"]):
        cells, shelters, arcs = _instance(url, run_id)
        stored_arcs = _run(url, run_id)["resultat"]["buer"]
        assert stored_arcs == len(arcs) > 0
        g = nx.DiGraph()
        for c, n in cells.items():
            g.add_edge("kilde", ("c", c), capacity=n)
        for s, k in shelters.items():
            g.add_edge(("s", s), "dræn", capacity=k)
        for c, s, _ in arcs:
            g.add_edge(("c", c), ("s", s), capacity=cells[c])
        max_flow = nx.maximum_flow_value(g, "kilde", "dræn")
        placed, metres = query(url, "SELECT sum(antal), sum(antal::bigint * afstand_m) "
                                    "FROM ly.plankoersel_tildeling WHERE koersel_id = %s",
                               [run_id])[0]
        assert placed == max_flow
        # min Σ cost·x over x ≥ 0 with Σ_s x ≤ residents, Σ_c x ≤ places, Σ x = max flow
        ci = {c: i for i, c in enumerate(cells)}
        si = {s: i for i, s in enumerate(shelters)}
        n = len(arcs)
        rows_c = [ci[c] for c, _, _ in arcs]
        rows_s = [len(ci) + si[s] for _, s, _ in arcs]
        a_ub = coo_matrix((np.ones(2 * n), (rows_c + rows_s, list(range(n)) * 2)),
                          shape=(len(ci) + len(si), n)).tocsr()
        b_ub = [cells[c] for c in ci] + [shelters[s] for s in si]
        lp = linprog([d for _, _, d in arcs], A_ub=a_ub, b_ub=b_ub,
                     A_eq=np.ones((1, n)), b_eq=[max_flow], bounds=(0, None), method="highs")
        assert lp.status == 0
        assert int(metres) == round(lp.fun)


def test_within_reach_recomputed_in_sql_with_and_without_the_unfit(plan_db):
    url = plan_db["url"]
    results = {}
    for run_id in (plan_db["base"], plan_db["scenario"]):
        run = _run(url, run_id)
        s = run["indstillinger"]
        unfit = run["scenarie"]["udelad"].get("egnethed_kode", [])
        per_cell = dict(query(url, f"""
            SELECT c.celle_id, least(c.indbyggere, coalesce((
                SELECT sum(s.{PLACES}) FROM {VIEW} s
                WHERE s.beliggenhedskommune = c.kommunekode
                  AND s.funktionsstatus_kode NOT IN (1, 2, 5, 6)
                  AND NOT coalesce(s.egnethed_kode = ANY(%s::int[]), false)
                  AND ST_DWithin(s.geometri, c.centrum, %s)), 0))
            FROM ly.befolkningscelle c WHERE c.net_id = %s AND c.kommunekode = %s""",
                                  [unfit, s["radius_m"], run["input"]["net_id"], FREDERIKSBERG]))
        stored = dict(query(url, "SELECT celle_id, inden_for_raekkevidde FROM "
                                 "ly.plankoersel_celle WHERE koersel_id = %s", [run_id]))
        assert stored == per_cell
        assert run["resultat"]["inden_for_raekkevidde"] == sum(per_cell.values())
        results[run_id] = sum(per_cell.values())
    # A dozen shelters are unfit; ignoring competition, every cell of dense
    # Frederiksberg still has enough places in reach (the assignment places fewer: below).
    assert results[plan_db["scenario"]] <= results[plan_db["base"]]


def test_a_scenario_is_compared_with_its_base_per_area(plan_db):
    url, base, scen = plan_db["url"], plan_db["base"], plan_db["scenario"]
    made = plan_db["scenario_made"]
    assert made.basis_id == base and not made.made_base  # the newest base run was found
    assert query(url, "SELECT sammenlignet_med FROM ly.plankoersel WHERE id = %s",
                 [scen])[0][0] == base
    with psycopg.connect(url) as conn:
        rows = planning.drive(conn, planning.comparison_steps(scen, base, "postnr"))
    assert rows and sum(r.forskel for r in rows) == (
        _run(url, scen)["resultat"]["daekket"] - _run(url, base)["resultat"]["daekket"])
    assert sum(r.forskel for r in rows) < 0  # without the unfit shelters fewer are covered
    objects = {r[0]: r[1] for r in query(
        url, "SELECT koersel_id, count(*) FROM ly.plankoersel_objekt GROUP BY 1")}
    unfit = query(url, f"SELECT count(*) FROM {VIEW} WHERE beliggenhedskommune = %s "
                       "AND egnethed_kode = 3 AND funktionsstatus_kode NOT IN (1, 2, 5, 6)",
                  [FREDERIKSBERG])[0][0]
    assert unfit >= 12 and objects[base] - objects[scen] == unfit


def test_runs_are_append_only(plan_db):
    url, run_id = plan_db["url"], plan_db["base"]
    for stmt in ("UPDATE ly.plankoersel_celle SET daekket = 0 WHERE koersel_id = %s",
                 "DELETE FROM ly.plankoersel_tildeling WHERE koersel_id = %s",
                 "DELETE FROM ly.plankoersel WHERE id = %s",
                 "UPDATE ly.plankoersel SET resultat = '{}' WHERE id = %s",
                 "UPDATE ly.befolkningscelle SET indbyggere = 1 WHERE net_id = %s"):
        with pytest.raises(psycopg.Error) as err:
            query(url, stmt, [run_id])
        assert err.value.diag.sqlstate == "LY409", stmt
    with pytest.raises(psycopg.Error):
        query(url, "TRUNCATE ly.plankoersel_celle CASCADE")
    # nothing can be added to a finished run
    with pytest.raises(psycopg.Error) as err:
        query(url, "INSERT INTO ly.plankoersel_kommune VALUES (%s, 101, 0, 0, 0)", [run_id])
    assert err.value.diag.sqlstate == "LY409"


def test_an_inconsistent_run_cannot_be_finished(plan_db):
    url = plan_db["url"]
    with psycopg.connect(url) as conn:
        inputs = planning.drive(conn, planning.read_steps(THEME, Settings(), Scenario(),
                                                          LAESOE))
        sol = planning.compute(inputs)
        assert sol.placed > 0
        sol.assigned = sol.assigned.copy()
        i = int(np.argmax(sol.assigned))
        sol.assigned[i] -= 1  # the cell no longer adds up to its assignments
        with pytest.raises(psycopg.Error) as err:
            planning.drive(conn, planning.store_steps(inputs, sol))
        assert err.value.diag.sqlstate == "LY409"
        conn.rollback()


# --- the pure planner --------------------------------------------------------------------------

def _dense(seed: int, cells: int = 300, shelters: int = 40) -> planning.Problem:
    rng = np.random.default_rng(seed)
    return planning.Problem(
        cell_x=rng.uniform(0, 1500, cells), cell_y=rng.uniform(0, 1500, cells),
        residents=rng.integers(1, 60, cells), cell_group=np.zeros(cells, dtype=np.int64),
        obj_x=rng.uniform(0, 1500, shelters), obj_y=rng.uniform(0, 1500, shelters),
        places=rng.integers(20, 300, shelters), obj_group=np.zeros(shelters, dtype=np.int64),
        radius_m=1500.0, detour=1.3)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_planner_is_optimal_on_dense_instances(seed):
    p = _dense(seed)
    sol = planning.solve(p)
    d = np.hypot(p.cell_x[:, None] - p.obj_x[None, :], p.cell_y[:, None] - p.obj_y[None, :])
    ci, oi = np.nonzero(d <= p.radius_m)
    assert sol.arcs == len(ci)
    cost = np.rint(d[ci, oi] * p.detour)
    g = nx.DiGraph()
    for c, r in enumerate(p.residents.tolist()):
        g.add_edge("s", c, capacity=r, weight=0)
    for o, k in enumerate(p.places.tolist()):
        g.add_edge(("o", o), "t", capacity=k, weight=0)
    for c, o, w in zip(ci.tolist(), oi.tolist(), cost.astype(int).tolist()):
        g.add_edge(c, ("o", o), capacity=int(p.residents[c]), weight=w)
    flow = nx.max_flow_min_cost(g, "s", "t")
    assert sol.placed == sum(flow["s"].values())
    assert sol.cost == nx.cost_of_flow(g, flow)
    assert (sol.load <= p.places).all()
    assert (sol.assigned <= p.residents).all()
    assert (sol.within_reach >= sol.assigned).all()


def test_cancelling_cycles_keeps_placed_and_distance_and_leaves_a_forest():
    # Two cells and two shelters used both ways round at equal cost: a cycle.
    cell = np.array([0, 0, 1, 1])
    obj = np.array([0, 1, 0, 1])
    flow = np.array([3, 2, 4, 5])
    cost = np.array([100, 200, 150, 250])  # 100 - 200 + 250 - 150 = 0
    after, cycles = planning._cancel_cycles(cell, obj, flow, cost, 2)
    assert cycles == 1
    assert np.bincount(cell, weights=after, minlength=2).tolist() == [5, 9]
    assert np.bincount(obj, weights=after, minlength=2).tolist() == [7, 7]
    assert int((after * cost).sum()) == int((flow * cost).sum())
    assert (after > 0).sum() == 3  # 4 nodes, one tree: 3 arcs
    # A cycle that is not free is pushed the cheaper way: the cost falls.
    after, _ = planning._cancel_cycles(cell, obj, flow, np.array([100, 200, 250, 150]), 2)
    assert int((after * np.array([100, 200, 250, 150])).sum()) < int(
        (flow * np.array([100, 200, 250, 150])).sum())


def test_settings_and_scenarios_are_checked_naming_the_field():
    profile = planning.profile_for(THEME)
    for raw, field in (({"minutter": 90}, "indstillinger.minutter"),
                       ({"fart": 3}, "indstillinger.fart"),
                       ({"omvejsfaktor": "x"}, "indstillinger.omvejsfaktor")):
        with pytest.raises(PlanInputError) as err:
            Settings.parse(raw)
        assert err.value.field == field
    for raw, field in (("ukendt", "scenarie"),
                       ({"udelad": {"navn": [1]}}, "scenarie.udelad.navn"),
                       ({"udelad": {"egnethed_kode": [7]}}, "scenarie.udelad.egnethed_kode"),
                       ({"udelad_objekter": ["x"]}, "scenarie.udelad_objekter[0]"),
                       ({"navn": "basis", "udelad": {"egnethed_kode": [3]}}, "scenarie.navn")):
        with pytest.raises(PlanInputError) as err:
            parse_scenario(THEME, profile, raw)
        assert err.value.field == field
    s = Settings.parse({"minutter": 30, "hastighed_kmt": 4.5, "omvejsfaktor": 1.3})
    assert s.limit_m == pytest.approx(2250) and s.radius_m == pytest.approx(2250 / 1.3)
