"""Algorithm 1's offspring (SCARLET-NAS supplement): Q_{i+1} = crossover(M) ∪
hierarchical-mutation(M), M drawn by tournament from P_{i+1}, the survived population of
size n (in the first generation too, after P0 ∪ Q0); the mutation ratio sizes the sets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.operators.selection.rnd import RandomSelection
from pymoo.operators.selection.tournament import TournamentSelection
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from nas_search.problem import child_cost
from nas_search.strategies import run_strategy
from nas_search.strategies.nsga2 import Options, ScarletNSGA2
from nas_search.strategies.operators import (
    CellCrossover,
    HierarchicalMutation,
    UnionMating,
    encoding_cost,
    gene_layout,
)
from supernet import load_space

TINY = load_space("tiny")
LAYOUT = gene_layout(TINY)
ENCODED = Problem(n_var=len(TINY.n_choices()), n_obj=1, xl=0, xu=TINY.n_choices() - 1,
                  vtype=int)


def _mating(ratio: float) -> UnionMating:
    cost = encoding_cost(TINY, lambda a: child_cost(TINY, a)[0])
    return UnionMating(RandomSelection(), CellCrossover(LAYOUT),
                       HierarchicalMutation(LAYOUT, cost), ratio)


def _parents(n: int, seed: int) -> Population:
    rng = np.random.default_rng(seed)
    return Population.new(X=np.array([TINY.encode(TINY.sample(rng)) for _ in range(n)]))


def _recording(monkeypatch) -> list[dict]:
    """Every UnionMating call of the runs that follow: the population it mated from, the
    mutation's inputs, the crossover's parents, and the children with their origin."""
    calls: list[dict] = []
    mating_do, mutate_do, cross_do = (UnionMating._do, HierarchicalMutation._do,
                                      CellCrossover._do)

    def mutate(self, problem, X, *a, **kw):
        calls[-1]["mutated"].append(np.array(X))
        return mutate_do(self, problem, X, *a, **kw)

    def cross(self, problem, X, *a, **kw):
        calls[-1]["crossed"].append(np.array(X))
        return cross_do(self, problem, X, *a, **kw)

    def mate(self, problem, pop, n_offsprings, **kw):
        calls.append({"P": np.array(pop.get("X")), "mutated": [], "crossed": []})
        off = mating_do(self, problem, pop, n_offsprings, **kw)
        calls[-1].update(X=np.array(off.get("X")), origin=list(off.get("origin")))
        return off

    monkeypatch.setattr(HierarchicalMutation, "_do", mutate)
    monkeypatch.setattr(CellCrossover, "_do", cross)
    monkeypatch.setattr(UnionMating, "_do", mate)
    return calls


def _rows(X: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in x) for x in X}


def test_nsga2_mates_with_union_mating_and_table_1_has_no_crossover_probability():
    assert "crossover_prob" not in {f.name for f in dataclasses.fields(Options)}
    assert Options().mutation_ratio == 0.8


def test_nsga2_builds_algorithm_1s_operators(make_session):
    session = make_session("nsga2")
    algorithm = ScarletNSGA2(session, Options(pop_size=10))
    mating = algorithm.mating
    assert isinstance(mating, UnionMating) and mating.mutation_ratio == 0.8
    assert isinstance(mating.selection, TournamentSelection)
    # every pair sent to crossover is crossed, every child sent to mutation mutated
    assert isinstance(mating.crossover, CellCrossover) and mating.crossover.prob.value == 1
    assert isinstance(mating.mutation, HierarchicalMutation) and mating.mutation.prob.value == 1
    assert mating.eliminate_duplicates is algorithm.eliminate_duplicates  # skips seen children


def test_offspring_are_crossover_children_and_mutants_of_m_never_both(monkeypatch,
                                                                      make_session):
    calls = _recording(monkeypatch)
    session = make_session("nsga2", budget=150)
    run_strategy("nsga2", session, pop_size=10)
    assert len(calls) >= 5
    origins = [o for c in calls for o in c["origin"]]
    assert {"crossover", "mutation"} == set(origins)
    for c in calls:
        P = _rows(c["P"])
        # mutation's inputs are members of M, drawn from P: never a crossover child
        for X in c["mutated"]:
            assert _rows(X) <= P
        for X in c["crossed"]:  # both parents of every pair are members of P
            assert _rows(X[0]) <= P and _rows(X[1]) <= P
        parents = [np.stack(pair) for X in c["crossed"] for pair in np.swapaxes(X, 0, 1)]
        for x, origin in zip(c["X"], c["origin"]):
            if origin == "mutation":  # one gene away from its parent, a member of P
                assert min(np.count_nonzero(x != p) for p in c["P"]) == 1
            else:  # every cell whole from one parent of one pair
                assert any(all((x[list(g)] == a[list(g)]).all()
                               or (x[list(g)] == b[list(g)]).all() for g in LAYOUT.cells)
                           for a, b in parents)
    # the mutation ratio: about 0.8 of the children asked for are mutants
    assert abs(origins.count("mutation") / len(origins) - 0.8) < 0.08
    kept = session.extra_summary["offspring_kept"]
    assert kept["uniform"] == 20 and kept["crossover"] > 0 and kept["mutation"] > 0


def test_tournament_draws_from_the_survived_population_also_after_p0_and_q0(monkeypatch,
                                                                           make_session):
    calls = _recording(monkeypatch)
    n = 10
    session = make_session("nsga2", budget=120)
    table = run_strategy("nsga2", session, pop_size=n)
    # every mating, the first included, sees P_{i+1}: n children, not R_i's 2n
    assert {len(c["P"]) for c in calls} == {n}
    R0 = table[table["step"] == 0]
    assert len(R0) == 2 * n  # P0 and Q0
    X0 = np.array([TINY.encode(TINY.parse(a)) for a in R0["arch"]])
    P1 = _rows(calls[0]["P"])  # the first offspring's mating
    assert P1 <= _rows(X0)
    # P1 is the best n of R0 by non-dominated rank: no child left out is ranked better
    rank = np.empty(len(X0), int)
    for k, front in enumerate(NonDominatedSorting().do(
            session.problem.objective_matrix(R0.reset_index(drop=True)))):
        rank[front] = k
    inside = np.array([tuple(int(v) for v in x) in P1 for x in X0])
    assert rank[inside].max() <= rank[~inside].min()
    # later generations: P_{i+1} is drawn from this run's evaluated children
    every = _rows(np.array([TINY.encode(TINY.parse(a)) for a in table["arch"]]))
    assert all(_rows(c["P"]) <= every for c in calls)


def test_offspring_are_the_same_under_the_same_seed(monkeypatch, make_session):
    runs = []
    for seed in (0, 0, 1):
        calls = _recording(monkeypatch)
        run_strategy("nsga2", make_session("nsga2", budget=80, seed=seed), pop_size=10)
        runs.append([(c["X"].tolist(), c["origin"]) for c in calls])
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_mutation_ratio_sizes_the_two_sets():
    P = _parents(12, 0)
    rng = np.random.default_rng(1)
    # 0.8 of 10 is 8: exactly 8 mutants and 2 crossover children every time
    for _ in range(20):
        off = _mating(0.8)._do(ENCODED, P, 10, random_state=rng)
        assert list(off.get("origin")).count("mutation") == 8 and len(off) == 10
    # a few children at a time (the refill) keep the share on average
    origins = [o for k in (1, 2, 3) * 400
               for o in _mating(0.8)._do(ENCODED, P, k, random_state=rng).get("origin")]
    assert abs(origins.count("mutation") / len(origins) - 0.8) < 0.03
    assert set(_mating(0.0)._do(ENCODED, P, 9, random_state=rng).get("origin")) == {"crossover"}
    assert set(_mating(1.0)._do(ENCODED, P, 9, random_state=rng).get("origin")) == {"mutation"}
    # the parents are left as they were: mutants are new individuals
    assert (P.get("X") == _parents(12, 0).get("X")).all()
    with pytest.raises(ValueError, match="mutation ratio"):
        _mating(1.5)
