"""Search strategies: one contract test over all three (same signature, same table,
budget, cost checks first, seeded, resumable), then each strategy's own rules."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest

from nas_search import OracleEvaluator, SearchConfig, SearchProblem, Session, run_search
from nas_search.evaluator import EVAL_COLUMNS
from nas_search.problem import Constraints
from nas_search.results import TIMING_COLUMNS, read_results
from nas_search.strategies import STRATEGIES
from nas_search.strategies.coarse2fine import coarse_grid, neighbours
from nas_search.strategies.nsga2 import (
    HierarchicalMutation,
    WeightedCrowding,
    gene_levels,
    weighted_crowding_distance,
)
from nas_search.strategies.random import NoFeasibleChild
from nas_search.strategies.random import run as random_run
from supernet import load_space
from supernet.cost import macs
from supernet.space import space_from_dict

TINY = load_space("tiny")
MAX_MACS = 4e6  # about half of the tiny space's children fit
OPTIONS = {"nsga2": {"pop_size": 16}, "coarse2fine": {}, "random": {}}


class CountingOracle(OracleEvaluator):
    """The oracle, remembering every child it was asked to evaluate."""

    def __init__(self, space, fail_after: int | None = None):
        super().__init__(space)
        self.calls: list[str] = []
        self.fail_after = fail_after

    def evaluate(self, archs):
        if self.fail_after is not None and len(self.calls) + len(archs) > self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls += [str(a) for a in archs]
        return super().evaluate(archs)


def _session(strategy, budget=60, seed=0, evaluator=None, **problem_kw) -> Session:
    problem = SearchProblem(TINY, constraints=Constraints(max_macs=MAX_MACS), **problem_kw)
    return Session(problem, evaluator or CountingOracle(TINY), strategy=strategy,
                   budget=budget, seed=seed)


def _comparable(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=[c for c in TIMING_COLUMNS if c in table]).reset_index(drop=True)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_contract(name):
    run = STRATEGIES[name]
    params = list(inspect.signature(run).parameters.values())
    assert params[0].name == "session" and all(p.kind is p.KEYWORD_ONLY for p in params[1:])

    oracle = CountingOracle(TINY)
    session = _session(name, evaluator=oracle)
    table = run(session, **OPTIONS[name])
    # one row per evaluated child, the budget spent exactly, nothing evaluated twice
    assert len(table) == 60 == session.counts.evaluated == len(oracle.calls)
    assert table["arch"].is_unique and len(set(oracle.calls)) == len(oracle.calls)
    for col in ("strategy", "seed", "step", "arch", "resolution", "s0_width", "s3_expand",
                "macs", "params", "feasible", *EVAL_COLUMNS):
        assert col in table, col
    assert (table["strategy"] == name).all() and (table["evaluator"] == "oracle").all()
    # the counter turns children away before any evaluation
    assert (table["macs"] <= MAX_MACS).all()
    assert all(macs(TINY, TINY.parse(a)) <= MAX_MACS for a in oracle.calls)
    assert session.counts.rejected_by_cost > 0
    # steps only grow, and every step was closed with a hypervolume
    assert table["step"].is_monotonic_increasing
    assert [h["evaluations"] for h in session.history][-1] == 60
    # the same seed gives the same table; another seed another one
    again = run(_session(name), **OPTIONS[name])
    pd.testing.assert_frame_equal(_comparable(table), _comparable(again))
    other = run(_session(name, seed=1), **OPTIONS[name])
    assert list(other["arch"]) != list(table["arch"])


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_resume_after_a_kill_equals_the_uninterrupted_run(name, tmp_path):
    cfg = SearchConfig(strategy=name, out=str(tmp_path / "run"), budget=70, seed=2,
                       space="tiny", max_macs=MAX_MACS, pop_size=16)
    full = run_search(SearchConfig(**{**cfg.to_dict(), "out": str(tmp_path / "full")}),
                      evaluator=CountingOracle(TINY))
    killed = CountingOracle(TINY, fail_after=37)
    with pytest.raises(KeyboardInterrupt):
        run_search(cfg, evaluator=killed)
    saved = read_results(tmp_path / "run" / "results.csv")
    assert 0 < len(saved) <= 37
    again = CountingOracle(TINY)
    resumed = run_search(cfg, evaluator=again)
    # no child evaluated twice: the resumed run only evaluates what was never saved
    assert not set(again.calls) & set(saved["arch"])
    assert len(again.calls) == 70 - len(saved) == 70 - resumed.counts.replayed
    pd.testing.assert_frame_equal(
        _comparable(read_results(tmp_path / "run" / "results.csv")),
        _comparable(read_results(tmp_path / "full" / "results.csv")))
    assert resumed.history == full.history


def test_a_repeated_search_evaluates_nothing(tmp_path):
    cfg = SearchConfig(strategy="nsga2", out=str(tmp_path), budget=40, seed=0, space="tiny",
                       pop_size=10)
    run_search(cfg, evaluator=CountingOracle(TINY))
    oracle = CountingOracle(TINY)
    session = run_search(cfg, evaluator=oracle)
    assert oracle.calls == [] and session.counts.replayed == 40


def test_random_gives_a_clear_error_when_no_child_is_feasible():
    session = _session("random")
    session.problem = SearchProblem(TINY, constraints=Constraints(max_macs=1.0))
    with pytest.raises(NoFeasibleChild, match="no child meets the constraints after 500"):
        random_run(session, max_tries=500)
    assert session.counts.evaluated == 0


def test_random_stops_when_the_feasible_children_run_out():
    # a space of eight children: the budget cannot be spent, and that is no error
    space = space_from_dict({
        "name": "eight", "resolutions": [16], "stem": {"widths": [8]}, "head": {"widths": [16]},
        "stages": [{"widths": [8, 16], "depths": [1, 2], "kernels": [3], "expands": [1, 2]}],
        "num_classes": 10})
    session = Session(SearchProblem(space), OracleEvaluator(space), strategy="random",
                      budget=50, seed=0)
    table = random_run(session, max_tries=300)
    assert len(table) == 8 == space.size() and table["arch"].is_unique


def test_coarse_grid_follows_bignas_sizes_stage_wise():
    space = load_space("bignas-mbv2")
    grid = coarse_grid(space)
    # 5 resolutions x 4 depth x 2 width x 4 kernel configurations, all distinct
    assert len(space.resolutions) >= 5 and len(grid) == 5 * 4 * 2 * 4
    assert len({a.resolution for a in grid}) == 5
    for a in grid:  # stage-wise: every stage at the same relative width choice
        rel = {spec.widths.index(s.width) / max(len(spec.widths) - 1, 1)
               for s, spec in zip(a.stages, space.stages) if len(spec.widths) > 1}
        assert len(rel) == 1
    small = coarse_grid(TINY)
    assert {a.resolution for a in small} == set(TINY.resolutions)


def test_neighbours_change_exactly_one_gene_by_one_step():
    arch = TINY.sample(np.random.default_rng(0))
    x = TINY.encode(arch)
    nbrs = neighbours(TINY, arch)
    assert len(nbrs) == len(set(nbrs)) > 0
    for n in nbrs:
        diff = TINY.encode(n) - x
        assert np.count_nonzero(diff) == 1 and np.abs(diff).sum() == 1


def test_coarse2fine_searches_each_target_and_reports_its_best(tmp_path):
    targets = (1.5e6, 3e6, 6e6)
    cfg = SearchConfig(strategy="coarse2fine", out=str(tmp_path), budget=120, seed=0,
                       space="tiny", targets=targets)
    session = run_search(cfg, evaluator=OracleEvaluator(TINY))
    table = session.table()
    phases = set(table["phase"])
    assert {"coarse", "fine@1.5M", "fine@3M", "fine@6M"} <= phases
    for t in targets:  # the fine search of a target stays under it
        assert (table[table["phase"] == f"fine@{t / 1e6:g}M"]["macs"] <= t).all()
    import json

    best = json.load(open(tmp_path / "summary.json"))["best_per_target"]
    assert set(best) == {"1.5M", "3M", "6M"}
    for key, t in zip(("1.5M", "3M", "6M"), targets):
        under = table[table["macs"] <= t]
        assert best[key]["top1"] == under["top1"].max() and best[key]["macs"] <= t
    # the fine stage improves on the best coarse child under the tightest target
    coarse = table[(table["phase"] == "coarse") & (table["macs"] <= targets[0])]
    assert best["1.5M"]["top1"] > coarse["top1"].max()


def test_nsga2_is_pymoo_with_scarlet_defaults_and_extremes_in_the_first_generation(
        monkeypatch):
    import pymoo.algorithms.moo.nsga2 as pymoo_nsga2

    params = inspect.signature(STRATEGIES["nsga2"]).parameters
    assert params["pop_size"].default == 70 and params["mutation_ratio"].default == 0.8
    made = []
    original = pymoo_nsga2.NSGA2.__init__

    def spy(self, *a, **kw):
        made.append(kw)
        original(self, *a, **kw)

    monkeypatch.setattr(pymoo_nsga2.NSGA2, "__init__", spy)
    session = _session("nsga2", budget=30)
    session.problem = SearchProblem(TINY)  # unconstrained: the largest child fits
    table = STRATEGIES["nsga2"](session, pop_size=10)
    kw = made[0]
    assert isinstance(kw["mutation"], HierarchicalMutation) and kw["mutation"].prob.value == 0.8
    assert isinstance(kw["survival"].crowding_func, WeightedCrowding)
    assert kw["pop_size"] == 10 and kw["seed"] == 0
    first = set(table[table["step"] == 0]["arch"])
    assert {str(TINY.min_arch()), str(TINY.max_arch())} <= first


def test_hierarchical_mutation_changes_one_gene_of_the_drawn_level():
    levels = gene_levels(TINY)  # global, then one level per stage
    stage2 = np.eye(len(levels))[3]  # all mass on stage 2
    mut = HierarchicalMutation(TINY, level_probs=stage2, prob=1.0)
    rng = np.random.default_rng(0)
    X = np.array([TINY.encode(TINY.sample(rng)) for _ in range(200)])
    Y = mut._do(None, X, random_state=rng)
    changed = np.nonzero(Y != X)
    assert np.all(np.bincount(changed[0], minlength=200) == 1)  # exactly one gene each
    assert set(changed[1]) <= set(levels[3]) and len(set(changed[1])) == 4
    assert np.all(Y < TINY.n_choices()) and np.all(Y >= 0)
    # the level draw follows the probabilities: global vs stages 1:3
    mut = HierarchicalMutation(TINY, level_probs=[1, 1, 1] + [0] * (len(levels) - 3),
                               prob=1.0)
    Y = mut._do(None, np.repeat(X[:1], 3000, 0), random_state=rng)
    genes = np.nonzero(Y != X[:1])[1]
    share_global = np.isin(genes, levels[0]).mean()
    assert abs(share_global - 1 / 3) < 0.04  # three levels, equal weights
    with pytest.raises(ValueError, match="level_probs"):
        HierarchicalMutation(TINY, level_probs=[1, 1])


def test_weighted_crowding_distance_scales_each_objective_term():
    F = np.array([[0.0, 4.0], [1.0, 2.0], [2.0, 1.5], [4.0, 0.0]])
    plain = weighted_crowding_distance(F, [1, 1])
    assert np.isinf(plain[[0, 3]]).all()
    np.testing.assert_allclose(plain[1:3], [(2 / 4) + (2.5 / 4), (3 / 4) + (2 / 4)])
    heavy = weighted_crowding_distance(F, [1, 3])
    np.testing.assert_allclose(heavy[1:3], [(2 / 4) + 3 * (2.5 / 4), (3 / 4) + 3 * (2 / 4)])
    assert plain[1] < plain[2] and heavy[1] > heavy[2]  # the weights change the order
    np.testing.assert_allclose(WeightedCrowding([1, 3]).do(F), heavy)
