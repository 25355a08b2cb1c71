"""SCARLET-NAS's constrained, weighted NSGA-II, as pymoo's NSGA2 with our operators.

pymoo runs the algorithm; we supply the pieces: a Problem that fills F and G for the
whole population (cost constraints checked by the counter before any evaluation), a
sampling that may seed the min and max child, hierarchical mutation, crowding distance
weighted by the objective weights, and duplicate elimination that also skips children
this run already evaluated or rejected. Selection is NSGA2's binary tournament
(feasibility, then domination, then crowding); crossover is uniform.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.config import Config
from pymoo.core.duplicate import DefaultDuplicateElimination
from pymoo.core.mutation import Mutation
from pymoo.core.problem import Problem
from pymoo.core.sampling import Sampling
from pymoo.core.termination import NoTermination
from pymoo.operators.crossover.ux import UniformCrossover
from pymoo.operators.survival.rank_and_crowding import RankAndCrowding
from pymoo.operators.survival.rank_and_crowding.metrics import CrowdingDiversity

from supernet.space import SearchSpace

from ..session import Session

Config.warnings["not_compiled"] = False  # pymoo prints to stdout otherwise


class ArchProblem(Problem):
    """The search as a pymoo Problem over integer encodings: F and G for a population."""

    def __init__(self, session: Session):
        n = session.problem.space.n_choices()
        super().__init__(n_var=len(n), n_obj=len(session.problem.objectives),
                         n_ieq_constr=session.problem.n_constraints,
                         xl=np.zeros(len(n)), xu=n - 1, vtype=int)
        self.session = session

    def _evaluate(self, X, out, *args, **kwargs):
        space = self.session.problem.space
        table = self.session.evaluate([space.decode(x) for x in np.asarray(X).astype(int)])
        out["F"] = self.session.problem.objective_matrix(table)
        G = self.session.problem.constraint_matrix(table)
        if G is not None:
            out["G"] = G


class ArchSampling(Sampling):
    """Uniform encodings, cost-feasible by rejection where possible; optionally the
    smallest and (if it meets the cost constraints) the largest child first."""

    def __init__(self, session: Session, include_extremes: bool = True,
                 max_tries: int = 1000):
        super().__init__()
        self.session, self.include_extremes, self.max_tries = session, include_extremes, max_tries

    def _do(self, problem, n_samples, *args, random_state=None, **kwargs):
        sp = self.session.problem
        space = sp.space
        picked: dict[tuple, np.ndarray] = {}
        if self.include_extremes:
            for a in (space.min_arch(), space.max_arch()):
                if sp.cost_ok(a):
                    picked[tuple(space.encode(a))] = space.encode(a)
        n = space.n_choices()
        for _ in range(self.max_tries * n_samples):
            if len(picked) >= n_samples:
                break
            x = random_state.integers(n)
            if self.session.cost_ok(space.decode(x)):
                picked.setdefault(tuple(x), x)
        return np.array(list(picked.values())[:n_samples], dtype=np.int64)


def gene_levels(space: SearchSpace) -> list[list[int]]:
    """Gene indices per mutation level: [global (resolution, stem, head), stage 0, ...];
    layer-wise, a stage's genes are its layers' choices (see `SearchSpace.gene_levels`)."""
    return [genes for _, genes in space.gene_levels()]


class HierarchicalMutation(Mutation):
    """A first draw picks the level (global choices, or one stage) with `level_probs`, a
    second picks one of its genes, which moves to another of its values."""

    def __init__(self, space: SearchSpace, level_probs: Sequence[float] | None = None,
                 prob: float = 0.8):
        super().__init__(prob=prob)
        self.n = space.n_choices()
        levels = gene_levels(space)
        probs = np.ones(len(levels)) if level_probs is None else np.asarray(level_probs, float)
        if len(probs) != len(levels) or np.any(probs < 0) or probs.sum() <= 0:
            raise ValueError(f"level_probs: {probs.tolist()} must be {len(levels)} non-negative "
                             "weights (global, then one per stage)")
        # genes with a single value cannot change; levels without any are never drawn
        self.levels = [[g for g in lvl if self.n[g] > 1] for lvl in levels]
        probs = np.where([bool(lvl) for lvl in self.levels], probs, 0.0)
        if probs.sum() == 0:
            raise ValueError("level_probs: every level with a non-zero weight has no choice")
        self.probs = probs / probs.sum()

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        X = np.asarray(X).astype(np.int64).copy()
        for row in X:
            level = self.levels[random_state.choice(len(self.levels), p=self.probs)]
            gene = level[random_state.integers(len(level))]
            new = random_state.integers(self.n[gene] - 1)
            row[gene] = new + (new >= row[gene])  # any value but the current one
        return X


def weighted_crowding_distance(F: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """NSGA-II crowding distance with each objective's term scaled by its weight
    (SCARLET-NAS); the extremes of every objective with a spread get infinity."""
    F = np.asarray(F, float)
    n, m = F.shape
    if n <= 2:
        return np.full(n, np.inf)
    d = np.zeros(n)
    for j in range(m):
        order = np.argsort(F[:, j], kind="stable")
        f = F[order, j]
        span = f[-1] - f[0]
        if span <= 0:
            continue
        gap = np.empty(n)
        gap[1:-1] = (f[2:] - f[:-2]) / span
        gap[0] = gap[-1] = np.inf
        d[order] += weights[j] * gap
    return d


class WeightedCrowding(CrowdingDiversity):
    """pymoo crowding function computing `weighted_crowding_distance`."""

    def __init__(self, weights: Sequence[float]):
        super().__init__()
        self.weights = np.asarray(weights, float)

    def _do(self, F, n_remove=None):
        return weighted_crowding_distance(F, self.weights)


class NoRepeats(DefaultDuplicateElimination):
    """pymoo's duplicate elimination, plus any child this run already evaluated or
    rejected: every offspring is new, so no generation spends its slots on known children."""

    def __init__(self, session: Session):
        super().__init__()
        self.session = session

    def _do(self, pop, other, is_duplicate):
        is_duplicate = super()._do(pop, other, is_duplicate)
        if other is None:  # the pass of a population against itself
            space = self.session.problem.space
            for i, x in enumerate(pop.get("X")):
                is_duplicate[i] |= self.session.seen(space.decode(np.asarray(x).astype(int)))
        return is_duplicate


def run(session: Session, *, pop_size: int = 70, mutation_ratio: float = 0.8,
        crossover_prob: float = 0.9, level_probs: Sequence[float] | None = None,
        include_extremes: bool = True, patience: int = 20) -> pd.DataFrame:
    """Generations of `pop_size` until the budget is spent (the last one is cut to fit).

    Defaults follow SCARLET-NAS: population 70, mutation ratio 0.8. Stops early when
    `patience` generations in a row bring no new evaluation.
    """
    space = session.problem.space
    pop_size = max(1, min(pop_size, session.remaining))
    algorithm = NSGA2(
        pop_size=pop_size,
        sampling=ArchSampling(session, include_extremes),
        crossover=UniformCrossover(prob=crossover_prob),
        mutation=HierarchicalMutation(space, level_probs, prob=mutation_ratio),
        survival=RankAndCrowding(crowding_func=WeightedCrowding(session.problem.weights)),
        eliminate_duplicates=NoRepeats(session),
        seed=session.seed,
    )
    algorithm.setup(ArchProblem(session), termination=NoTermination())
    session.step_label, session.phase = "gen", "init"
    idle = 0
    while not session.done and idle < patience:
        before = session.counts.evaluated
        algorithm.n_offsprings = min(pop_size, session.remaining)
        algorithm.next()
        session.end_step()
        session.phase = "evolve"
        idle = idle + 1 if session.counts.evaluated == before else 0
        if algorithm.termination.force_termination:  # mating found no new child at all
            break
    return session.table()
