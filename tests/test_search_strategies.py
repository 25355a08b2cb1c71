"""Search strategies: one contract test over all four (same signature, same table,
budget, cost checks first, seeded, resumable), then each strategy's own rules."""

from __future__ import annotations

import dataclasses
import inspect
import json

import numpy as np
import pytest
from conftest import MAX_MACS

from nas_search import SearchConfig, SearchProblem, Session, run_search
from nas_search.evaluator import EVAL_COLUMNS
from nas_search.problem import Constraints
from nas_search.results import read_results
from nas_search.strategies import STRATEGIES, run_strategy
from nas_search.strategies.base import NoFeasibleChild, sample_new
from nas_search.strategies.coarse2fine import coarse_grid, neighbours
from nas_search.strategies.many_objective import reference_directions
from nas_search.strategies.nsga2 import (
    Options,
    WeightedCrowding,
    weighted_crowding_distance,
)
from nas_search.strategies.operators import CellCrossover, HierarchicalMutation, UnionMating
from nas_search.testing import CountingOracle, OracleEvaluator
from supernet import load_space
from supernet.spaces.cost import macs
from supernet.spaces.space import space_from_dict

TINY = load_space("tiny")
# small settings so that every strategy runs in a second or two
OPTIONS = {"nsga2": {"pop_size": 16}, "coarse2fine": {}, "random": {},
           "assisted": {"predictor": "gp", "pop_size": 16, "generations": 5, "folds": 2},
           **{name: {"pop_size": 16} for name in ("agemoea", "nsga3", "unsga3", "moead",
                                                 "smsemoa")}}
# pymoo's MOEA/D mates one child per subproblem with no duplicate elimination: a repeat is
# answered from the table (no evaluation, no budget), so it may count cached answers
REPEATS = {"moead"}


def test_every_strategy_is_listed_with_an_options_dataclass():
    assert set(STRATEGIES) == {"assisted", "coarse2fine", "nsga2", "random", "agemoea",
                               "nsga3", "unsga3", "moead", "smsemoa"} == set(OPTIONS)
    for s in STRATEGIES.values():
        assert dataclasses.is_dataclass(s.options)
        s.options()  # every setting has a default
        assert list(inspect.signature(s.run).parameters) == ["session", "options"]
    with pytest.raises(ValueError, match="pop_sise: not a setting of strategy"):
        run_strategy("nsga2", None, pop_sise=3)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_contract(name, make_session, comparable):
    oracle = CountingOracle(TINY)
    session = make_session(name, evaluator=oracle)
    table = run_strategy(name, session, **OPTIONS[name])
    # one row per evaluated child, the budget spent exactly, nothing evaluated twice
    assert len(table) == 60 == session.counts.evaluated == len(oracle.calls)
    assert session.counts.cached == 0 or name in REPEATS
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
    again = run_strategy(name, make_session(name), **OPTIONS[name])
    assert comparable(table).equals(comparable(again))
    other = run_strategy(name, make_session(name, seed=1), **OPTIONS[name])
    assert list(other["arch"]) != list(table["arch"])


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_resume_after_a_kill_equals_the_uninterrupted_run(name, tmp_path, comparable):
    opts = {k: v for k, v in OPTIONS[name].items() if k in ("predictor", "pop_size")}
    cfg = SearchConfig(strategy=name, out=str(tmp_path / "run"), budget=70, seed=2,
                       space="tiny", max_macs=MAX_MACS, **opts)
    full = run_search(SearchConfig(**{**cfg.to_dict(), "out": str(tmp_path / "full")}),
                      evaluator=CountingOracle(TINY))
    killed = CountingOracle(TINY, fail_after=39)
    with pytest.raises(KeyboardInterrupt):
        run_search(cfg, evaluator=killed)
    saved = read_results(tmp_path / "run" / "results.csv")
    assert 0 < len(saved) < 70
    again = CountingOracle(TINY)
    resumed = run_search(cfg, evaluator=again)
    # no child evaluated twice: the resumed run only evaluates what was never saved
    assert not set(again.calls) & set(saved["arch"])
    assert len(again.calls) == 70 - len(saved) == 70 - resumed.counts.replayed
    assert comparable(read_results(tmp_path / "run" / "results.csv")).equals(
        comparable(read_results(tmp_path / "full" / "results.csv")))
    assert resumed.history == full.history


def test_a_repeated_search_evaluates_nothing(tmp_path):
    cfg = SearchConfig(strategy="nsga2", out=str(tmp_path), budget=40, seed=0, space="tiny",
                       pop_size=10)
    run_search(cfg, evaluator=CountingOracle(TINY))
    oracle = CountingOracle(TINY)
    session = run_search(cfg, evaluator=oracle)
    assert oracle.calls == [] and session.counts.replayed == 40


def test_shared_sampling_is_uniform_feasible_and_new(make_session):
    session = make_session("random")
    rng = np.random.default_rng(0)
    first = sample_new(session, 20, rng)
    assert len(set(first)) == 20 and all(macs(TINY, a) <= MAX_MACS for a in first)
    rejected = session.counts.rejected_by_cost
    assert rejected > 0  # the draws over the cost were counted
    session.evaluate(first[:10])
    more = sample_new(session, 50, rng)
    assert not set(more) & set(first[:10])  # unseen only
    free = sample_new(session, 30, rng, unseen=False, count=False, max_macs=2e6)
    assert all(macs(TINY, a) <= 2e6 for a in free)


def test_random_gives_a_clear_error_when_no_child_is_feasible(make_session):
    session = make_session("random", max_macs=1.0)
    with pytest.raises(NoFeasibleChild, match="no child meets the constraints after 500"):
        run_strategy("random", session, max_tries=500)
    assert session.counts.evaluated == 0


def test_random_stops_when_the_feasible_children_run_out():
    # a space of eight children: the budget cannot be spent, and that is no error
    space = space_from_dict({
        "name": "eight", "resolutions": [16], "stem": {"widths": [8]}, "head": {"widths": [16]},
        "stages": [{"widths": [8, 16], "depths": [1, 2], "kernels": [3], "expands": [1, 2]}],
        "num_classes": 10})
    session = Session(SearchProblem(space), OracleEvaluator(space), strategy="random",
                      budget=50, seed=0)
    table = run_strategy("random", session, max_tries=300)
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
    best = json.load(open(tmp_path / "summary.json"))["best_per_target"]
    assert set(best) == {"1.5M", "3M", "6M"}
    for key, t in zip(("1.5M", "3M", "6M"), targets):
        under = table[table["macs"] <= t]
        assert best[key]["top1"] == under["top1"].max() and best[key]["macs"] <= t
    # the fine stage improves on the best coarse child under the tightest target
    coarse = table[(table["phase"] == "coarse") & (table["macs"] <= targets[0])]
    assert best["1.5M"]["top1"] > coarse["top1"].max()


def test_nsga2_is_pymoo_with_scarlet_defaults_and_extremes_in_the_first_generation(
        monkeypatch, make_session):
    import pymoo.algorithms.moo.nsga2 as pymoo_nsga2

    assert Options().pop_size == 70 and Options().mutation_ratio == 0.8
    made = []
    original = pymoo_nsga2.NSGA2.__init__

    def spy(self, *a, **kw):
        made.append(kw)
        original(self, *a, **kw)

    monkeypatch.setattr(pymoo_nsga2.NSGA2, "__init__", spy)
    session = make_session("nsga2", budget=30, max_macs=None)  # the largest child fits
    table = run_strategy("nsga2", session, pop_size=10)
    kw = made[0]
    mating = kw["mating"]  # Algorithm 1: crossover(M) and mutation(M), 80% mutants
    assert isinstance(mating, UnionMating) and mating.mutation_ratio == 0.8
    assert isinstance(mating.mutation, HierarchicalMutation)
    assert isinstance(mating.crossover, CellCrossover)
    assert isinstance(kw["survival"].crowding_func, WeightedCrowding)
    assert kw["pop_size"] == 10 and kw["seed"] == 0
    first = set(table[table["step"] == 0]["arch"])
    assert {str(TINY.min_arch()), str(TINY.max_arch())} <= first
    assert len(first) == 20  # P0 and Q0: 2n children before the first survival


def test_algorithm1_refills_offspring_until_n_meet_the_accuracy_constraint(make_session):
    # about a third of the children under the MACs cap reach this top-1
    oracle = CountingOracle(TINY)
    top1 = np.array([oracle.top1(TINY.sample(np.random.default_rng(i))) for i in range(300)])
    min_acc = float(np.quantile(top1, 0.6))
    session = make_session("nsga2", budget=400, max_macs=6e6, evaluator=oracle)
    session.problem = SearchProblem(TINY, constraints=Constraints(max_macs=6e6,
                                                                  min_acc=min_acc))
    table = run_strategy("nsga2", session, pop_size=10)
    assert len(table) == 400 and (table["macs"] <= 6e6).all()  # cost first: never evaluated
    assert (~table["feasible"]).sum() > 50  # evaluations that missed min_acc: budget spent
    steps = table.groupby("step")
    feasible = steps["feasible"].sum()
    # P0 and Q0 hold 2n = 20 feasible children; each full generation refilled to n = 10
    assert feasible.iloc[0] == 20
    full = feasible.iloc[1:-1]  # the last generation may be cut by the budget
    assert len(full) >= 3 and (full == 10).all()
    assert (steps.size().iloc[1:-1] > 10).any()  # ... at the price of extra evaluations


def test_weighted_crowding_distance_scales_each_objective_term():
    F = np.array([[0.0, 4.0], [1.0, 2.0], [2.0, 1.5], [4.0, 0.0]])
    plain = weighted_crowding_distance(F, [1, 1])
    assert np.isinf(plain[[0, 3]]).all()
    np.testing.assert_allclose(plain[1:3], [(2 / 4) + (2.5 / 4), (3 / 4) + (2 / 4)])
    heavy = weighted_crowding_distance(F, [1, 3])
    np.testing.assert_allclose(heavy[1:3], [(2 / 4) + 3 * (2.5 / 4), (3 / 4) + 3 * (2 / 4)])
    assert plain[1] < plain[2] and heavy[1] > heavy[2]  # the weights change the order
    np.testing.assert_allclose(WeightedCrowding([1, 3]).do(F), heavy)


@pytest.mark.parametrize("settings, message", [
    ({"strategy": "random", "pop_size": 5}, "pop_size: not a setting of strategy"),
    ({"strategy": "coarse2fine", "mutation_ratio": 0.5}, "mutation_ratio: not a setting"),
    ({"strategy": "assisted", "predictor": "forest"}, "predictor: 'forest' is unknown"),
])
def test_the_strategy_checks_its_own_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        SearchConfig(**settings)


@pytest.mark.parametrize("n_obj, at_most, count", [(2, 16, 16), (3, 16, 15), (3, 70, 66)])
def test_reference_directions_are_the_finest_lattice_within_the_population(n_obj, at_most,
                                                                            count):
    dirs = reference_directions(n_obj, at_most)
    assert dirs.shape == (count, n_obj) and np.allclose(dirs.sum(axis=1), 1)


@pytest.mark.parametrize("name", ["nsga3", "unsga3", "moead"])
def test_many_objective_strategies_run_three_objectives(name, make_session):
    session = make_session(name, objectives=("top1", "macs", "params"))
    table = run_strategy(name, session, pop_size=16)
    assert session.counts.evaluated == 60 == len(table)
    assert (table["macs"] <= MAX_MACS).all()
    assert session.history[-1]["hypervolume"] > 0


def test_coarse_to_fine_runs_on_the_ofa_family():
    ofa = load_space("ofa-mbv3-w10")
    grid = coarse_grid(ofa)
    # every layer of a stage takes the stage's kernel and expand in the coarse grid
    assert all(len(set(st.kernel)) == 1 and len(set(st.expand)) == 1
               for a in grid for st in a.stages)
    problem = SearchProblem(ofa, constraints=Constraints(max_macs=300e6), targets=(300e6,))
    session = Session(problem, CountingOracle(ofa), strategy="coarse2fine", budget=40, seed=0)
    table = run_strategy("coarse2fine", session)
    assert len(table) == 40 and (table["macs"] <= 300e6).all()
