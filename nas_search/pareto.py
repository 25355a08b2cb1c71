"""Non-dominated sorting and hypervolume (both pymoo's) over a results table.

Hypervolume reference: objectives are put in a fixed normalised frame by
`SearchProblem.normalized_objectives` (1 - top-1, MACs and params over the largest
child's, latency over the largest child's latency), where the ideal is 0 and the
reference point is 1 in every objective; the hypervolume is then a number in [0, 1]
comparable across runs, strategies and seeds of the same space.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pymoo.indicators.hv import Hypervolume
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from .problem import OBJECTIVES, SearchProblem


def pareto_ranks(F: np.ndarray) -> np.ndarray:
    """Non-domination rank of each row of F (all minimised): 0 is the front."""
    ranks = np.zeros(len(F), dtype=np.int64)
    if len(F):
        for k, front in enumerate(NonDominatedSorting().do(np.asarray(F, float))):
            ranks[front] = k
    return ranks


def hypervolume(F_norm: np.ndarray) -> float:
    """Hypervolume of normalised points against the reference point (1, ..., 1)."""
    F_norm = np.asarray(F_norm, float)
    if len(F_norm) == 0:
        return 0.0
    F_norm = F_norm[np.all(F_norm < 1.0, axis=1)]  # points beyond the reference add nothing
    if len(F_norm) == 0:
        return 0.0
    ref = np.ones(F_norm.shape[1])
    return float(Hypervolume(ref_point=ref, norm_ref_point=False).do(F_norm))


def rank_table(table: pd.DataFrame, problem: SearchProblem) -> pd.DataFrame:
    """`table` with `pareto` (on the front of the feasible rows) and `rank` (non-domination
    rank among feasible rows, -1 for infeasible ones) columns."""
    out = table.copy()
    feasible = problem.feasible(out) if len(out) else np.zeros(0, bool)
    rank = np.full(len(out), -1, dtype=np.int64)
    if feasible.any():
        rank[feasible] = pareto_ranks(problem.objective_matrix(out[feasible]))
    out["rank"] = rank
    out["pareto"] = rank == 0
    return out


def front(table: pd.DataFrame, problem: SearchProblem) -> pd.DataFrame:
    """The non-dominated feasible rows, sorted by the first cost objective."""
    ranked = table if "pareto" in table else rank_table(table, problem)
    f = ranked[ranked["pareto"]]
    costs = [o for o in problem.objectives if o != "top1"]
    if costs:
        f = f.sort_values(OBJECTIVES[costs[0]][0], kind="stable")
    return f.reset_index(drop=True)


def table_hypervolume(table: pd.DataFrame, problem: SearchProblem) -> float:
    """Hypervolume of the feasible rows of `table`."""
    if len(table) == 0:
        return 0.0
    feasible = problem.feasible(table)
    return hypervolume(problem.normalized_objectives(table[feasible]))


def hypervolume_curve(table: pd.DataFrame, problem: SearchProblem,
                      evaluations: list[int]) -> list[float]:
    """Hypervolume of the first n rows (evaluations in order) for each n in `evaluations`."""
    return [table_hypervolume(table.iloc[:n], problem) for n in evaluations]
