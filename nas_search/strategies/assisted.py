"""Predictor-assisted NSGA-II (NSGANetV2-style): a surrogate of top-1 is fit on the real
evaluations, NSGA-II runs on the surrogate, and a small batch spread along the predicted
front is evaluated for real each iteration before the surrogate is refit.

Only real evaluations reach the session (and so results.csv); surrogate predictions stay
inside this module. The held-out Kendall tau of each iteration's surrogate is recorded in
`session.extra_summary["surrogate"]`. Every choice flows from the seed and the real answers,
so the session's generic replay resumes an interrupted run exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.termination import NoTermination
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting
from sklearn.base import BaseEstimator

from predictors.metrics import cross_val_rank_metrics
from predictors.models import PREDICTORS, make_predictor
from supernet.spaces.space import Arch

from ..session import Session
from .base import ArchProblem, NoFeasibleChild, Strategy, extremes, sample_new
from .nsga2 import Options as NSGA2Options
from .nsga2 import scarlet_operators, weighted_crowding_distance
from .operators import MutationProbs


@dataclass
class Options:
    """Predictor-assisted settings: the surrogate, its NSGA-II (SCARLET's operators), and
    how many real evaluations each iteration spends."""

    predictor: str = "mlp"  # a name of predictors.models.PREDICTORS
    pop_size: int = 70
    mutation_ratio: float = 0.8
    mutation: MutationProbs = field(default_factory=MutationProbs)
    initial: int | None = None  # real evaluations before the first fit (default budget/5)
    batch: int = 8  # real evaluations per iteration
    generations: int = 20  # surrogate NSGA-II generations per iteration
    folds: int = 5  # cross-validation folds of the recorded Kendall tau (< 2: none)

    def __post_init__(self) -> None:
        if self.predictor not in PREDICTORS:
            raise ValueError(f"predictor: {self.predictor!r} is unknown; choose from "
                             f"{sorted(PREDICTORS)}")


def predicted_table(session: Session, model: BaseEstimator, archs: list[Arch]) -> pd.DataFrame:
    """Rows like the session's (macs, params, top1) with top-1 predicted; NaN over cost."""
    problem = session.problem
    cost = np.array([problem.cost(a) for a in archs], dtype=float).reshape(-1, 2)
    ok = np.array([problem.within_cost(a) for a in archs], dtype=bool)  # nothing counted
    top1 = np.full(len(archs), np.nan)
    if ok.any():
        top1[ok] = model.predict([a for a, k in zip(archs, ok) if k])
    table = pd.DataFrame({"macs": cost[:, 0], "params": cost[:, 1], "top1": top1})
    if problem.latency_fn is not None:
        table["latency_ms"] = [problem.latency_fn(a) for a in archs]
    return table


def initial_sample(session: Session, n: int, rng: np.random.Generator) -> list[Arch]:
    """The smallest and largest child (when cost-feasible), then uniform feasible ones."""
    picked = extremes(session)[:n]
    return picked + sample_new(session, n - len(picked), rng, taken=picked)


def fit_surrogate(session: Session, name: str,
                  folds: int) -> tuple[BaseEstimator, dict[str, Any]]:
    """The surrogate fit on every real evaluation, and its cross-validated Kendall tau."""
    table = session.table()
    table = table[np.isfinite(table["top1"].to_numpy(float))]
    space = session.problem.space
    archs = [space.parse(s) for s in table["arch"]]
    y = table["top1"].to_numpy(float)
    model = make_predictor(name, space, random_state=session.seed)
    k = min(folds, len(y))
    tau = (cross_val_rank_metrics(model, archs, y, folds=k, seed=session.seed).kendall_tau
           if k >= 2 else float("nan"))
    model.fit(archs, y)
    # None rather than NaN (too few children, or constant predictions): valid JSON
    return model, {"n_train": len(y), "kendall_tau": tau if np.isfinite(tau) else None}


def start_population(session: Session, pop_size: int,
                     rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """Encodings to seed the surrogate NSGA-II: the best real children by non-dominated
    rank (so it starts from the known front), topped up with uniform feasible ones."""
    problem, space = session.problem, session.problem.space
    table = session.table()
    table = table[table["feasible"].to_numpy(bool)]
    archs: list[Arch] = []
    if len(table):
        order = np.concatenate(NonDominatedSorting().do(problem.objective_matrix(table)))
        archs = [space.parse(table["arch"].iloc[i]) for i in order[:pop_size]]
    # seen children allowed and nothing counted: the surrogate's population spends no budget
    rest = sample_new(session, pop_size - len(archs), rng, taken=archs, unseen=False,
                      count=False)
    return np.array([space.encode(a) for a in archs + rest], dtype=np.int64)


def surrogate_front(session: Session, model: BaseEstimator, rng: np.random.Generator,
                    opts: Options, seed: int) -> list[Arch]:
    """Every distinct child of the surrogate NSGA-II's populations (final and earlier)."""
    space = session.problem.space
    X0 = start_population(session, opts.pop_size, rng)
    operators = scarlet_operators(session, NSGA2Options(
        pop_size=len(X0), mutation_ratio=opts.mutation_ratio, mutation=opts.mutation))
    algorithm = NSGA2(pop_size=len(X0), sampling=X0, eliminate_duplicates=True, seed=seed,
                      **operators)
    problem = ArchProblem(session, lambda archs: predicted_table(session, model, archs))
    algorithm.setup(problem, termination=NoTermination())
    found: dict[Arch, None] = {}
    for _ in range(opts.generations):
        algorithm.next()
        found.update((space.decode(np.asarray(x).astype(int)), None)
                     for x in algorithm.pop.get("X"))
    return list(found)


def pick_spread(session: Session, model: BaseEstimator, candidates: list[Arch],
                k: int) -> list[Arch]:
    """`k` new cost-feasible candidates: those predicted to meet every constraint first;
    in each group the lowest predicted non-dominated rank first, and within a rank the
    largest (weighted) crowding distance, so the batch spans the front."""
    new = [a for a in candidates if not session.seen(a) and session.problem.within_cost(a)]
    if not new or k <= 0:
        return []
    problem = session.problem
    table = predicted_table(session, model, new)
    F = problem.objective_matrix(table)
    G = problem.constraint_matrix(table)
    ok = np.ones(len(new), bool) if G is None else (G <= 0).all(axis=1)
    order = []
    for group in (np.flatnonzero(ok), np.flatnonzero(~ok)):  # predicted-infeasible: last
        order += [int(group[i]) for i in spread_order(F[group], problem.weights)]
    return [new[i] for i in order[:k]]


def spread_order(F: npt.NDArray[np.float64], weights: Sequence[float]) -> list[int]:
    """Row indices of F by non-dominated rank, then by decreasing weighted crowding."""
    if len(F) == 0:
        return []
    order: list[int] = []
    for front in NonDominatedSorting().do(F):
        d = weighted_crowding_distance(F[front], weights)
        order += [int(front[i]) for i in np.argsort(-d, kind="stable")]
    return order


def run(session: Session, options: Options | None = None) -> pd.DataFrame:
    """Initial sample (default a fifth of the budget, at least 10), then iterations of
    fit surrogate -> NSGA-II on it -> `batch` real evaluations, until the budget is spent."""
    o = options or Options()
    if session.problem.needs_latency and session.problem.latency_fn is None:
        raise ValueError("predictor: latency objectives/constraints need --latency-table "
                         "with --strategy assisted (the surrogate front needs latency "
                         "unmeasured)")
    rng = np.random.default_rng(session.seed)
    n_init = min(session.remaining, o.initial or max(10, session.budget // 5))
    records: list[dict[str, Any]] = []
    session.extra_summary["surrogate"] = records
    session.step_label, session.phase = "iter", "init"
    first = initial_sample(session, n_init, rng)
    if not first:
        raise NoFeasibleChild("assisted: no child meets the cost constraints; loosen "
                              "--max-macs/--max-params")
    session.evaluate(first)
    session.end_step()
    session.phase = "assisted"
    iteration = 0
    while not session.done:
        model, info = fit_surrogate(session, o.predictor, o.folds)
        records.append({"iteration": iteration, **info})
        want = min(o.batch, session.remaining)
        cands = surrogate_front(session, model, rng, o, seed=session.seed * 1000 + iteration)
        picked = pick_spread(session, model, cands, want)
        # the surrogate's front may be all known children: spend the rest uniformly
        picked += sample_new(session, want - len(picked), rng, taken=picked)
        if not picked:
            break  # every feasible child we can find has been evaluated
        session.evaluate(picked)
        session.end_step()
        iteration += 1
    return session.table()


STRATEGY = Strategy("assisted", run, Options)
