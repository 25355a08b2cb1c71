"""The Pareto report: front.csv is exactly the non-dominated set of the feasible rows,
ranks and hypervolume are pymoo's in a fixed frame, the out folder holds every file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nas_search import SearchConfig, SearchProblem, run_search
from nas_search.pareto import (
    equispaced_picks,
    frame_hypervolume,
    hypervolume,
    pareto_ranks,
    rank_table,
    table_hypervolume,
    union_frame,
)
from nas_search.problem import Constraints, HVFrame
from nas_search.report import compare
from nas_search.results import read_results
from nas_search.testing import OracleEvaluator
from supernet import load_space
from supernet.spaces.cost import macs

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
                       pop_size=16, max_macs=5e6, min_acc=0.7, pick=4)
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
    assert s["hypervolume"]["final"] == hv[-1]
    frame = s["hypervolume"]["frame"]  # the smallest and largest child under the oracle
    oracle = OracleEvaluator(TINY, noise=0.08)
    assert frame["objectives"] == ["top1", "macs"] and "largest child" in frame["source"]
    assert frame["ideal"] == [oracle.top1(TINY.max_arch()), macs(TINY, TINY.min_arch())]
    assert frame["nadir"] == [oracle.top1(TINY.min_arch()), macs(TINY, TINY.max_arch())]
    best = s["best_per_target"]["all"]
    results = read_results(out / "results.csv")
    assert best["top1"] == results[results["feasible"]]["top1"].max()


def test_picks_are_k_front_children_equispaced_in_macs(run):
    out, _ = run
    s = json.loads((out / "summary.json").read_text())
    front = read_results(out / "front.csv")
    picks = s["picks"]
    assert len(picks) == 4 and {p["arch"] for p in picks} <= set(front["arch"])
    m = [p["macs"] for p in picks]
    assert m == sorted(m) and m[0] == front["macs"].min() and m[-1] == front["macs"].max()
    # each pick is the front child nearest its level of k evenly spaced MACs levels
    for level, p in zip(np.linspace(m[0], m[-1], 4), m):
        assert abs(p - level) == np.abs(front["macs"].to_numpy() - level).min()


def test_picks_reach_into_the_next_rank_when_the_front_is_short():
    problem = SearchProblem(TINY)
    table = pd.DataFrame({"top1": [0.5, 0.6, 0.55, 0.4], "macs": [1e6, 2e6, 3e6, 4e6],
                          "params": [1] * 4, "arch": list("abcd")})
    ranked = rank_table(table, problem)
    assert ranked["rank"].tolist() == [0, 0, 1, 2]
    assert equispaced_picks(ranked, problem, 3)["arch"].tolist() == ["a", "b", "c"]
    assert len(equispaced_picks(ranked, problem, 0)) == 0


def test_frame_maps_ideal_to_0_and_nadir_to_1():
    frame = HVFrame(("top1", "macs"), ideal=(0.8, 1e6), nadir=(0.5, 5e6))
    table = pd.DataFrame({"top1": [0.8, 0.5, 0.65], "macs": [1e6, 5e6, 3e6],
                          "feasible": [True] * 3})
    np.testing.assert_allclose(frame.normalize(table), [[0, 0], [1, 1], [0.5, 0.5]])
    assert frame_hypervolume(table.iloc[2:], frame) == pytest.approx(0.25)
    assert HVFrame.from_dict(frame.to_dict()) == frame
    # the union frame: ideal and nadir of the non-dominated rows of all tables together
    a = pd.DataFrame({"top1": [0.6, 0.7], "macs": [2e6, 4e6], "feasible": [True, True]})
    b = pd.DataFrame({"top1": [0.65, 0.9], "macs": [1e6, 9e6], "feasible": [True, False]})
    u = union_frame([a, b], ("top1", "macs"))
    assert u.ideal == (0.7, 1e6) and u.nadir == (0.65, 4e6)


def test_report_uses_the_runs_shared_frame_or_their_union(run, tmp_path):
    out, _ = run
    other = tmp_path / "random"
    run_search(SearchConfig(strategy="random", out=str(other), budget=40, seed=0,
                            space="tiny", max_macs=5e6, min_acc=0.7),
               evaluator=OracleEvaluator(TINY, noise=0.08))
    table = compare([out, other])
    frame = table.attrs["frame"]
    assert "largest child" in frame.source  # one evaluator: the runs' own frame
    s = json.loads((out / "summary.json").read_text())
    assert table["hypervolume"].iloc[0] == round(s["hypervolume"]["final"], 4)
    # a run on another evaluator has another frame: then the union of the rows decides
    third = tmp_path / "noisier"
    run_search(SearchConfig(strategy="random", out=str(third), budget=40, seed=0,
                            space="tiny", max_macs=5e6, min_acc=0.7),
               evaluator=OracleEvaluator(TINY, noise=0.2, name="noisier"))
    table = compare([out, other, third])
    assert "union of 3 runs" in table.attrs["frame"].source
