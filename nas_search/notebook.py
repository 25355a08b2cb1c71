"""Tables and figures of finished runs for notebooks/pareto.ipynb: several out folders
read into one pandas table, their fronts, hypervolume curves and children, and the best
child under each MACs budget.

The notebook shows the interactive figures of the HTML report (`nas_search.figures`); the
static matplotlib versions here draw the same series (`nas_search.plots`) on a given Axes
(or a new figure) and return it, so a test can count what was drawn. This module never
selects a matplotlib backend: the notebook's own (inline) one must stay in charge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from .figures import EVALUATIONS_AXIS, HV_AXIS, MACS_AXIS, TOP1_AXIS, by_run
from .plots import draw_children, draw_fronts, draw_hypervolume
from .report import RunDirs, read_runs
from .results import best_first
from .units import format_count, parse_count


def load_runs(dirs: RunDirs) -> pd.DataFrame:
    """Every evaluated child (results.csv rows) of each run with `run` and `evaluation`."""
    return read_runs(dirs).children


def load_hypervolume(dirs: RunDirs) -> pd.DataFrame:
    """Each run's hypervolume history (summary.json), one row per generation or step,
    recomputed in the frame the runs share (`nas_search.report.shared_frame`); the frame's
    description is in `attrs["frame"]`."""
    return read_runs(dirs).history


def _axes(ax: Axes | None, figsize: tuple[float, float] = (7, 5)) -> Axes:
    return ax if ax is not None else plt.subplots(figsize=figsize)[1]


def _finish(ax: Axes, title: str, xlabel: str, ylabel: str) -> Axes:
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return ax


def plot_fronts(runs: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Each run's Pareto front (its `pareto` rows), top-1 against MACs, one line per run."""
    ax = _axes(ax)
    draw_fronts(ax, runs)
    return _finish(ax, "Pareto fronts", MACS_AXIS, TOP1_AXIS)


def plot_hypervolume(history: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Hypervolume against evaluations spent, one line per run (from `load_hypervolume`)."""
    ax = _axes(ax, (7, 4))
    draw_hypervolume(ax, history)
    return _finish(ax, "Hypervolume against evaluations", EVALUATIONS_AXIS, HV_AXIS)


def plot_all_children(runs: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Top-1 against MACs of every evaluated child, one colour per run, infeasible ones
    as grey crosses."""
    ax = _axes(ax)
    draw_children(ax, runs)
    return _finish(ax, "Every evaluated child", MACS_AXIS, TOP1_AXIS)


def _best_under(table: pd.DataFrame, limit: float) -> dict[str, Any]:
    """The best child under `limit` that results.csv records as feasible (under the run's
    own constraints, so no SearchProblem has to be rebuilt); {} when none fits."""
    ok = table["feasible"].to_numpy(bool) if "feasible" in table \
        else np.isfinite(table["top1"].to_numpy(float))
    rows = best_first(table, ok, limit)
    if len(rows) == 0:
        return {}
    r = rows.iloc[0]
    return {"arch": r["arch"], "top1": float(r["top1"]), "macs": int(r["macs"]),
            "params": int(r["params"])}


def budget_grid(runs: pd.DataFrame, n: int = 4) -> list[float]:
    """`n` MACs limits evenly spaced above the cheapest child up to the dearest, rounded
    up to two significant digits (so the last one admits every child)."""
    macs = runs["macs"].to_numpy(float)
    if len(macs) == 0:
        return []
    limits = np.linspace(macs.min(), macs.max(), n + 1)[1:]
    return sorted({_ceil2(v) for v in limits})


def _ceil2(value: float) -> float:
    scale = 10.0 ** (math.floor(math.log10(value)) - 1)
    return math.ceil(value / scale - 1e-9) * scale


def best_per_budget(runs: pd.DataFrame, budgets: Sequence[float | str] | None = None
                    ) -> pd.DataFrame:
    """The best feasible child (highest top-1, then fewest MACs) of each run under each
    MACs limit ('400M' or 4e8; None: `budget_grid`); NaN where none fits."""
    if isinstance(budgets, (str, int, float)):
        budgets = [budgets]  # one limit, not the characters of '400M'
    limits = budget_grid(runs) if budgets is None else sorted(
        parse_count(b, "budget") for b in budgets)
    rows = []
    for limit in limits:
        for _, label, table in by_run(runs):
            rows.append({"budget": format_count(limit), "max_macs": limit, "run": label,
                         **_best_under(table, limit)})
    out: pd.DataFrame = pd.DataFrame(rows, columns=["budget", "max_macs", "run", "top1",
                                                    "macs", "params", "arch"])
    return out
