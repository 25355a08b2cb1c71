"""The Pareto report: front.csv is exactly the non-dominated set of the feasible rows,
ranks and hypervolume are pymoo's in a fixed frame, the out folder holds every file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nas_search import OracleEvaluator, SearchConfig, SearchProblem, run_search
from nas_search.pareto import hypervolume, pareto_ranks, rank_table, table_hypervolume
from nas_search.problem import Constraints
from nas_search.results import read_results
from supernet import load_space
from supernet.cost import macs

TINY = load_space("tiny")
BIG_MACS = macs(TINY, TINY.max_arch())


def _dominated(i: int, top1: np.ndarray, cost: np.ndarray) -> bool:
    better_eq = (top1 >= top1[i]) & (cost <= cost[i])
    strictly = (top1 > top1[i]) | (cost < cost[i])
    return bool(np.any(better_eq & strictly))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = SearchConfig(strategy="nsga2", out=str(out), budget=80, seed=4, space="tiny",
                       pop_size=16, max_macs=5e6, min_acc=0.7)
    session = run_search(cfg, evaluator=OracleEvaluator(TINY, noise=0.08))
    return out, session


def test_front_csv_is_exactly_the_non_dominated_set_of_the_feasible_rows(run):
    out, _ = run
    results = read_results(out / "results.csv")
    front = read_results(out / "front.csv")
    feasible = results[(results["top1"] >= 0.7) & (results["macs"] <= 5e6)]
    assert 0 < len(feasible) < len(results)  # the accuracy constraint bites
    top1, cost = feasible["top1"].to_numpy(), feasible["macs"].to_numpy(float)
    expected = {a for i, a in enumerate(feasible["arch"]) if not _dominated(i, top1, cost)}
    assert set(front["arch"]) == expected and len(front) == len(expected)
    assert set(results[results["pareto"]]["arch"]) == expected
    assert (results.loc[~results["feasible"], "rank"] == -1).all()
    assert front["macs"].is_monotonic_increasing


def test_ranks_are_successive_non_dominated_fronts():
    F = np.array([[1, 1], [2, 2], [0, 3], [3, 0], [3, 3], [2, 2]], float)
    ranks = pareto_ranks(F)
    assert list(ranks) == [0, 1, 0, 0, 2, 1]  # equal points share a rank


def test_hypervolume_against_the_fixed_reference_point():
    assert hypervolume(np.array([[0.5, 0.5]])) == pytest.approx(0.25)
    assert hypervolume(np.array([[0.5, 0.5], [0.2, 0.8]])) == pytest.approx(0.25 + 0.3 * 0.2)
    assert hypervolume(np.array([[1.2, 0.1]])) == 0.0  # beyond the reference point
    assert hypervolume(np.zeros((0, 2))) == 0.0
    # the frame: 1 - top-1 and MACs over the largest child's
    problem = SearchProblem(TINY)
    table = pd.DataFrame({"top1": [0.9], "macs": [BIG_MACS / 2], "params": [1]})
    assert table_hypervolume(table, problem) == pytest.approx(0.5 * 0.9)


def test_rank_table_ignores_infeasible_rows():
    problem = SearchProblem(TINY, constraints=Constraints(max_macs=2e6))
    table = pd.DataFrame({"top1": [0.5, 0.9, 0.99, np.nan], "macs": [1e6, 1.5e6, 3e6, 1e6],
                          "params": [1, 1, 1, 1]})
    ranked = rank_table(table, problem)
    assert list(ranked["pareto"]) == [True, True, False, False]
    assert list(ranked["rank"]) == [0, 0, -1, -1]


def test_the_out_folder_holds_tables_summary_and_figures(run):
    out, session = run
    for name in ("results.csv", "front.csv", "summary.json", "pareto.png", "hypervolume.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    s = json.loads((out / "summary.json").read_text())
    assert s["seed"] == 4 and s["strategy"] == "nsga2" and s["settings"]["budget"] == 80
    assert s["counts"]["evaluated"] == 80 == len(read_results(out / "results.csv"))
    assert s["counts"]["rejected_by_cost"] == session.counts.rejected_by_cost > 0
    assert {"cached", "replayed"} <= set(s["counts"]) and s["wall_time_s"] > 0
    hv = [h["hypervolume"] for h in s["hypervolume"]["history"]]
    assert len(hv) == s["steps"] and np.all(np.diff(hv) >= 0) and hv[-1] > 0
    assert s["hypervolume"]["final"] == hv[-1] and "reference point" in s["hypervolume"]["frame"]
    best = s["best_per_target"]["all"]
    results = read_results(out / "results.csv")
    assert best["top1"] == results[results["feasible"]]["top1"].max()
