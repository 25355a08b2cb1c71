"""Non-dominated sorting and hypervolume (both pymoo's) over a results table, the shared
hypervolume frame of several runs, and Algorithm 1's K equispaced picks.

Hypervolume: objectives are put in a frame (`HVFrame`) where each objective's ideal is 0
and its nadir, the reference point, is 1. A search builds its frame from the smallest and
largest child under its evaluator (so every run on that evaluator shares it); `nas-search
report` reuses it when all runs compared share it, else builds one from the union of their
rows (`union_frame`). Hypervolumes are comparable only within one frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pymoo.indicators.hv import Hypervolume
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from .problem import OBJECTIVES, HVFrame, SearchProblem


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


def union_frame(tables: list[pd.DataFrame], objectives: tuple[str, ...]) -> HVFrame:
    """A frame from the union of runs: ideal and nadir of the non-dominated feasible rows
    of all `tables` together (rows need `feasible` and the objective columns)."""
    rows = pd.concat([t[t["feasible"].astype(bool)] for t in tables], ignore_index=True)
    if len(rows) == 0:
        raise ValueError("report: the runs hold no feasible child to build a frame from")
    F = np.column_stack([-rows[OBJECTIVES[o][0]].to_numpy(float) * OBJECTIVES[o][1]
                         for o in objectives])
    first = pareto_ranks(F) == 0
    return HVFrame.from_rows(objectives, rows[first],
                             f"union of {len(tables)} runs' non-dominated rows")


def frame_hypervolume(table: pd.DataFrame, frame: HVFrame) -> float:
    """Hypervolume of the feasible rows of `table` in `frame`."""
    if len(table) == 0:
        return 0.0
    return hypervolume(frame.normalize(table[table["feasible"].astype(bool)]))


def equispaced_picks(ranked: pd.DataFrame, problem: SearchProblem, k: int) -> pd.DataFrame:
    """Algorithm 1's last step: `k` children equispaced along the front by the first cost
    objective (k evenly spaced cost levels between the front's cheapest and dearest, each
    taking the nearest child not yet taken). When the front holds fewer than k, the next
    non-domination ranks join ("near the front")."""
    if k <= 0 or len(ranked) == 0:
        return ranked.iloc[:0]
    ranked = ranked if "rank" in ranked else rank_table(ranked, problem)
    ok = ranked[ranked["rank"] >= 0]
    pool = ok[ok["rank"] <= 0]
    r = 0
    top = int(ok["rank"].max()) if len(ok) else 0
    while len(pool) < k and r < top:
        r += 1
        pool = ok[ok["rank"] <= r]
    costs = [o for o in problem.objectives if o != "top1"]
    col = OBJECTIVES[costs[0]][0] if costs else "top1"
    v = pool[col].to_numpy(float)
    if len(pool) == 0:
        return pool
    levels = np.linspace(v.min(), v.max(), k) if k > 1 else np.array([np.median(v)])
    taken: list[int] = []
    for level in levels:
        free = [i for i in np.argsort(np.abs(v - level), kind="stable") if i not in taken]
        if not free:
            break
        taken.append(int(free[0]))
    return pool.iloc[sorted(taken, key=lambda i: v[i])].reset_index(drop=True)
