"""SCARLET-NAS's constrained, weighted NSGA-II (supplement, Algorithm 1) on pymoo's NSGA2.

pymoo runs the algorithm; we supply the pieces: the Problem adapter (strategies/base), the
SCARLET operators (strategies/operators: hierarchical mutation, cell crossover), crowding
distance weighted by the objective weights, duplicate elimination that also skips
children this run already evaluated or rejected, and Algorithm 1's populations:

- P0 and Q0 are drawn uniformly until each holds n children that meet every constraint;
  the first survival picks P1, n of those 2n, and the first offspring are mated from P1;
- each offspring set Q_{i+1} is crossover(M) ∪ hierarchical-mutation(M), M drawn by
  tournament from P_{i+1} (operators.UnionMating: a share `mutation_ratio` of mutants, the
  rest crossover children; no mutation of crossover children, no crossover probability);
- Q is refilled until n children meet every constraint: the cost is checked first, with
  the closed-form counter (a child over it is never evaluated); the accuracy (and measured
  latency) constraint after evaluation. Every evaluation counts in the budget, kept or
  not; a generation cut short by the budget keeps what it has.

Selection is NSGA2's binary tournament (feasibility, then domination, then crowding).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pymoo.algorithms.moo.nsga2 import NSGA2, binary_tournament
from pymoo.core.duplicate import DefaultDuplicateElimination
from pymoo.core.population import Population
from pymoo.core.termination import NoTermination
from pymoo.operators.selection.tournament import TournamentSelection
from pymoo.operators.survival.rank_and_crowding import RankAndCrowding
from pymoo.operators.survival.rank_and_crowding.metrics import CrowdingDiversity

from ..session import Session
from .base import ArchProblem, NoFeasibleChild, Strategy, extremes, sample_new
from .operators import (
    CellCrossover,
    HierarchicalMutation,
    MutationProbs,
    UnionMating,
    encoding_cost,
    gene_layout,
)


@dataclass
class Options:
    """NSGA-II settings; the defaults are SCARLET-NAS's Table 1 (population 70, mutation
    ratio 0.8, the two roulettes' probabilities). Table 1 has no crossover probability."""

    pop_size: int = 70
    mutation_ratio: float = 0.8  # the share of each offspring set made by mutation
    mutation: MutationProbs = field(default_factory=MutationProbs)
    include_extremes: bool = True  # the smallest and largest child in P0 when feasible
    patience: int = 20  # generations in a row without a new evaluation before stopping
    max_rounds: int = 50  # refill rounds in a row that propose nothing new: Q stays short


def weighted_crowding_distance(F: npt.ArrayLike,
                               weights: Sequence[float] | npt.NDArray[np.float64]
                               ) -> npt.NDArray[np.float64]:
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


# pymoo ships no type information: its classes are Any
class WeightedCrowding(CrowdingDiversity):  # type: ignore[misc]
    """pymoo crowding function computing `weighted_crowding_distance`."""

    def __init__(self, weights: Sequence[float]):
        super().__init__()
        self.weights = np.asarray(weights, float)

    def _do(self, F: npt.NDArray[np.float64], n_remove: int | None = None
            ) -> npt.NDArray[np.float64]:
        return weighted_crowding_distance(F, self.weights)


class NoRepeats(DefaultDuplicateElimination):  # type: ignore[misc]  # pymoo's: Any
    """pymoo's duplicate elimination, plus any child this run already evaluated or
    rejected: every offspring is new, so no generation spends its slots on known children."""

    def __init__(self, session: Session):
        super().__init__()
        self.session = session

    def _do(self, pop: Population, other: Population | None,
            is_duplicate: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        is_duplicate = super()._do(pop, other, is_duplicate)
        if other is None:  # the pass of a population against itself
            space = self.session.problem.space
            for i, x in enumerate(pop.get("X")):
                is_duplicate[i] |= self.session.seen(space.decode(np.asarray(x).astype(int)))
        return is_duplicate


def scarlet_operators(session: Session, opts: Options,
                      eliminate_duplicates: Any = None) -> dict[str, Any]:
    """NSGA2's keyword arguments for Algorithm 1's offspring (SCARLET's operators, see
    operators.UnionMating) and weighted crowding; `eliminate_duplicates` defaults to pymoo's."""
    space = session.problem.space
    layout = gene_layout(space)
    cost = encoding_cost(space, lambda a: session.problem.cost(a)[0])
    mating = UnionMating(TournamentSelection(func_comp=binary_tournament),
                         CellCrossover(layout), HierarchicalMutation(layout, cost, opts.mutation),
                         opts.mutation_ratio,
                         eliminate_duplicates=eliminate_duplicates or DefaultDuplicateElimination())
    return {"mating": mating,
            "survival": RankAndCrowding(
                crowding_func=WeightedCrowding(session.problem.weights))}


class ScarletNSGA2(NSGA2):  # type: ignore[misc]  # pymoo's classes are Any
    """NSGA2 whose initial and offspring populations follow Algorithm 1 (module docstring)."""

    def __init__(self, session: Session, opts: Options, **kwargs: Any):
        repeats = NoRepeats(session)
        super().__init__(pop_size=opts.pop_size, eliminate_duplicates=repeats,
                         **scarlet_operators(session, opts, repeats), **kwargs)
        self.session, self.opts = session, opts
        self.rng = np.random.default_rng(session.seed)
        self.kept: Counter[str] = Counter()  # children kept (meeting every constraint) by origin

    def _fill(self, n: int, propose: Callable[[int], Population]) -> Population:
        """Algorithm 1's refill: proposals (`propose(k)` -> Population) until `n` children
        meet every constraint, the budget is spent, or `max_rounds` rounds bring nothing."""
        session, space = self.session, self.session.problem.space
        kept = Population.empty()
        idle = 0
        while len(kept) < n and not session.done and idle < self.opts.max_rounds:
            cand = propose(n - len(kept))
            # the cost first: a child over it is rejected (and counted), never evaluated
            ok = [session.screen(space.decode(np.asarray(x).astype(int)))
                  for x in cand.get("X")] if len(cand) else []
            cand = cand[np.flatnonzero(ok)[:session.remaining]]
            if len(cand) == 0:
                idle += 1
                continue
            idle = 0
            self.evaluator.eval(self.problem, cand, algorithm=self)
            G = cand.get("G")
            good = (np.ones(len(cand), bool) if G is None or np.size(G) == 0
                    else (np.asarray(G, float) <= 0).all(axis=1))
            kept = Population.merge(kept, cand[np.flatnonzero(good)])
        self.kept.update(o or "uniform" for o in kept.get("origin"))
        return kept

    def _uniform(self, k: int) -> Population:
        space = self.session.problem.space
        first = extremes(self.session) if self.opts.include_extremes and \
            self.session.counts.evaluated == 0 else []
        archs = first[:k] + sample_new(self.session, k - len(first[:k]), self.rng,
                                       taken=first)
        return Population.new(X=np.array([space.encode(a) for a in archs], dtype=np.int64)
                              .reshape(-1, self.problem.n_var))

    def _initialize_infill(self) -> Population:
        pop = self._fill(2 * self.pop_size, self._uniform)  # P0 and Q0
        if len(pop) == 0:
            if self.session.counts.evaluated == 0:
                raise NoFeasibleChild("nsga2: no child meets the cost constraints; loosen "
                                      "--max-macs/--max-params")
            raise NoFeasibleChild("nsga2: no evaluated child meets --min-acc / "
                                  "--max-latency; loosen them")
        return pop

    def _initialize_advance(self, infills: Population | None = None, **kwargs: Any) -> None:
        # P1: the best n of R0 = P0 ∪ Q0. pymoo's NSGA2 keeps all 2n here, and would mate
        # the first offspring from R0 instead of from P1.
        self.pop = self.survival.do(self.problem, infills, n_survive=self.pop_size,
                                    algorithm=self, random_state=self.random_state, **kwargs)

    def _infill(self) -> Population | None:
        def mate(k: int) -> Population:
            return self.mating.do(self.problem, self.pop, k, algorithm=self,
                                  random_state=self.random_state)

        off = self._fill(self.pop_size, mate)
        if len(off) == 0:
            self.termination.force_termination = True
            return None
        return off


def run(session: Session, options: Options | None = None) -> pd.DataFrame:
    """Generations until the budget is spent (the last one cut to fit); stops early when
    `patience` generations in a row bring no new evaluation."""
    opts = options or Options()
    algorithm = ScarletNSGA2(session, opts, seed=session.seed)
    algorithm.setup(ArchProblem(session), termination=NoTermination())
    session.step_label, session.phase = "gen", "init"
    idle = 0
    while not session.done and idle < opts.patience:
        before = session.counts.evaluated
        algorithm.next()
        session.end_step()
        session.phase = "evolve"
        idle = idle + 1 if session.counts.evaluated == before else 0
        if algorithm.termination.force_termination:  # mating found no new child at all
            break
    session.extra_summary["mutation_kinds"] = dict(
        algorithm.mating.mutation.kinds_used)
    session.extra_summary["offspring_kept"] = dict(algorithm.kept)
    return session.table()


STRATEGY = Strategy("nsga2", run, Options)
