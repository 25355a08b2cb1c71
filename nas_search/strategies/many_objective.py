"""pymoo's many-objective algorithms as strategies: AGE-MOEA, NSGA-III, U-NSGA-III, MOEA/D
and SMS-EMOA, on the same footing as nsga2.

Each runs pymoo's own algorithm through ask and tell, with what every strategy here
shares: the Problem adapter (strategies/base), SCARLET's cell crossover and hierarchical
mutation on the integer encoding, a first population drawn uniformly among children that
meet the cost constraints (with the smallest and largest child), duplicates of anything
this run has already seen removed, the cost checked with the closed-form counter before
any evaluation, and the budget: an asked batch larger than what is left is cut to fit.

NSGA-III, U-NSGA-III and MOEA/D use Das-Dennis reference directions: the finest lattice of
at most `pop_size` points on the simplex of the objectives. pymoo's MOEA/D takes no
constraints, so there a child that breaks one gets the worst objective values instead
(a penalty, as pymoo's own notes suggest); the others rank by constraint violation first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from math import comb
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pymoo.algorithms.moo.moead import MOEAD
from pymoo.algorithms.moo.nsga3 import NSGA3
from pymoo.algorithms.moo.sms import SMSEMOA
from pymoo.algorithms.moo.unsga3 import UNSGA3
from pymoo.core.algorithm import Algorithm
from pymoo.core.individual import Individual
from pymoo.core.population import Population
from pymoo.core.sampling import Sampling
from pymoo.core.termination import NoTermination
from pymoo.util.ref_dirs import get_reference_directions

from ..session import Session
from .base import ArchProblem, NoFeasibleChild, Strategy, extremes, sample_new
from .nsga2 import NoRepeats
from .operators import (
    CellCrossover,
    HierarchicalMutation,
    MutationProbs,
    encoding_cost,
    gene_layout,
)

PENALTY = 1e12  # MOEA/D's objective values for a child that breaks a constraint


@dataclass
class Options:
    """Settings shared by pymoo's many-objective algorithms."""

    pop_size: int = 70  # NSGA-III/U-NSGA-III/MOEA/D: also caps the reference directions
    mutation: MutationProbs = field(default_factory=MutationProbs)
    n_neighbors: int = 20  # MOEA/D's neighbourhood (at most the population)
    patience: int = 50  # asks in a row without a new evaluation before stopping

    def __post_init__(self) -> None:
        if self.pop_size < 2:
            raise ValueError(f"pop_size: {self.pop_size} is not allowed; expected >= 2")
        if self.n_neighbors < 2:
            raise ValueError(f"n_neighbors: {self.n_neighbors} is not allowed; expected >= 2")


def reference_directions(n_obj: int, at_most: int) -> npt.NDArray[np.float64]:
    """The finest Das-Dennis lattice on the `n_obj`-simplex with at most `at_most` points."""
    partitions = 1
    while comb(partitions + 1 + n_obj - 1, n_obj - 1) <= at_most:
        partitions += 1
    dirs: npt.NDArray[np.float64] = get_reference_directions("das-dennis", n_obj,
                                                             n_partitions=partitions)
    return dirs


# pymoo ships no type information: its classes are Any
class FeasibleSampling(Sampling):  # type: ignore[misc]
    """The first population: the smallest and largest child, then uniform children that
    meet the cost constraints and that this run has not seen (rejections counted)."""

    def __init__(self, session: Session):
        super().__init__()
        self.session = session
        self.rng = np.random.default_rng(session.seed)

    def _do(self, problem: Any, n_samples: int, *args: Any,
            **kwargs: Any) -> npt.NDArray[np.int64]:
        first = extremes(self.session)[:n_samples]
        archs = first + sample_new(self.session, n_samples - len(first), self.rng, taken=first)
        if not archs:
            raise NoFeasibleChild("no child meets the cost constraints; loosen "
                                  "--max-macs/--max-params")
        space = self.session.problem.space
        return np.array([space.encode(a) for a in archs], dtype=np.int64)


class PenaltyProblem(ArchProblem):
    """The adapter without constraints, for MOEA/D: a child that breaks one gets
    `PENALTY` on every objective, so it never replaces a neighbour."""

    def __init__(self, session: Session):
        super().__init__(session)
        self.n_ieq_constr = 0

    def _evaluate(self, X: npt.NDArray[Any], out: dict[str, Any], *args: Any,
                  **kwargs: Any) -> None:
        space = self.session.problem.space
        table = self.score([space.decode(x) for x in np.asarray(X).astype(int)])
        F = self.session.problem.objective_matrix(table)
        G = self.session.problem.constraint_matrix(table)
        if G is not None:
            F[(np.asarray(G) > 0).any(axis=1)] = PENALTY
        out["F"] = F


def _operators(session: Session, opts: Options) -> dict[str, Any]:
    space = session.problem.space
    layout = gene_layout(space)
    cost = encoding_cost(space, lambda a: session.problem.cost(a)[0])
    return {"sampling": FeasibleSampling(session), "crossover": CellCrossover(layout),
            "mutation": HierarchicalMutation(layout, cost, opts.mutation)}


def _age_moea(session: Session, opts: Options, n_obj: int) -> Algorithm:
    try:  # pymoo's AGE-MOEA compiles its geometry with numba, an optional extra
        from pymoo.algorithms.moo.age import AGEMOEA
    except Exception:
        raise ValueError("strategy: agemoea needs numba; install it with pip install "
                         "'nas-supernet[many]' or pip install numba") from None
    return AGEMOEA(pop_size=opts.pop_size, eliminate_duplicates=NoRepeats(session),
                   **_operators(session, opts))


def _nsga3(session: Session, opts: Options, n_obj: int) -> Algorithm:
    return NSGA3(reference_directions(n_obj, opts.pop_size), pop_size=opts.pop_size,
                 eliminate_duplicates=NoRepeats(session), **_operators(session, opts))


def _unsga3(session: Session, opts: Options, n_obj: int) -> Algorithm:
    return UNSGA3(reference_directions(n_obj, opts.pop_size), pop_size=opts.pop_size,
                  eliminate_duplicates=NoRepeats(session), **_operators(session, opts))


def _sms_emoa(session: Session, opts: Options, n_obj: int) -> Algorithm:
    return SMSEMOA(pop_size=opts.pop_size, eliminate_duplicates=NoRepeats(session),
                   **_operators(session, opts))


def _moead(session: Session, opts: Options, n_obj: int) -> Algorithm:
    dirs = reference_directions(n_obj, opts.pop_size)
    return MOEAD(dirs, n_neighbors=min(opts.n_neighbors, len(dirs)),
                 **_operators(session, opts))


def _evaluated(session: Session, pop: Population) -> Population:
    """`pop` cut so that its new children (cost-feasible, not yet in the table) fit the
    budget left; order kept."""
    space = session.problem.space
    left, keep = session.remaining, 0
    for x in pop.get("X"):
        a = space.decode(np.asarray(x).astype(int))
        new = session.problem.within_cost(a) and not session.seen(a)
        if new and left == 0:
            break
        left -= int(new)
        keep += 1
    return pop[:keep]


def run_pymoo(session: Session, opts: Options,
              build: Callable[[Session, Options, int], Algorithm],
              penalize: bool = False) -> pd.DataFrame:
    """Ask, evaluate (the cost checked first, the batch cut to the budget left) and tell
    until the budget is spent or `patience` asks in a row bring no new evaluation."""
    n_obj = len(session.problem.objectives)
    problem = PenaltyProblem(session) if penalize else ArchProblem(session)
    algorithm = build(session, opts, n_obj)
    algorithm.setup(problem, termination=NoTermination(), seed=session.seed)
    session.step_label, session.phase = "gen", "init"
    idle = 0
    while not session.done and idle < opts.patience:
        before = session.counts.evaluated
        asked = algorithm.ask()
        one = isinstance(asked, Individual)  # MOEA/D asks for one child at a time
        pop = _evaluated(session, Population.create(asked) if one else asked)
        if len(pop) == 0:
            break
        algorithm.evaluator.eval(problem, pop, algorithm=algorithm)
        algorithm.tell(infills=pop[0] if one else pop)
        session.end_step()
        session.phase = "evolve"
        idle = idle + 1 if session.counts.evaluated == before else 0
    return session.table()


def _strategy(name: str, build: Callable[[Session, Options, int], Algorithm],
              penalize: bool = False) -> Strategy:
    def run(session: Session, options: Options | None = None) -> pd.DataFrame:
        return run_pymoo(session, options or Options(), build, penalize)

    run.__doc__ = f"pymoo's {name} on the search (see the module docstring)."
    return Strategy(name, run, Options)


AGE_MOEA = _strategy("agemoea", _age_moea)
NSGA3_STRATEGY = _strategy("nsga3", _nsga3)
UNSGA3_STRATEGY = _strategy("unsga3", _unsga3)
MOEAD_STRATEGY = _strategy("moead", _moead, penalize=True)
SMS_EMOA = _strategy("smsemoa", _sms_emoa)
