"""Tables and figures of finished runs for notebooks/pareto.ipynb: several out folders
read into one pandas table, their fronts, hypervolume curves and children overlaid on
matplotlib Axes, and the best child under each MACs budget.

Every function draws on a given Axes (or a new figure) and returns it, so a notebook shows
the figures inline and a test can count what was drawn. This module never selects a
matplotlib backend: the notebook's own (inline) one must stay in charge.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from .report import hypervolume_history, load_run, shared_frame
from .results import RESULTS, best_child, read_results
from .units import format_count, parse_count

RunDirs = str | Path | Sequence[str | Path]


def _dirs(dirs: RunDirs) -> list[Path]:
    """One folder or several as a list; a single string is one folder, not its letters."""
    paths = [Path(dirs)] if isinstance(dirs, (str, Path)) else [Path(d) for d in dirs]
    if not paths:
        raise ValueError("runs: no out folder given")
    return paths


def _summaries(dirs: RunDirs) -> list[tuple[str, Path, dict]]:
    """(label, folder, summary.json) of each finished run; labels are unique."""
    paths = _dirs(dirs)
    summaries = [load_run(p)[0] for p in paths]  # raises a clear error on unfinished runs
    names = [p.name for p in paths]
    # the folder name is short; the path as given only where two names coincide
    keys = [p.name if names.count(p.name) == 1 else str(p) for p in paths]
    labels = [f"{k} ({s['strategy']}, seed {s['seed']})" for k, s in zip(keys, summaries)]
    return list(zip(labels, paths, summaries))


def load_runs(dirs: RunDirs) -> pd.DataFrame:
    """Every evaluated child of each run (results.csv rows) with `run` and `evaluation`."""
    frames = []
    for label, path, _ in _summaries(dirs):
        table = read_results(path / RESULTS)
        table.insert(0, "run", label)
        # rows are in evaluation order: the 1-based position is the evaluations spent
        table.insert(1, "evaluation", np.arange(1, len(table) + 1))
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def load_hypervolume(dirs: RunDirs) -> pd.DataFrame:
    """Each run's hypervolume history (summary.json), one row per generation or step,
    recomputed in the frame the runs share (`nas_search.report.shared_frame`); the frame's
    description is in `attrs["frame"]`."""
    runs = _summaries(dirs)
    tables = [read_results(path / RESULTS) for _, path, _ in runs]
    frame = shared_frame([s for _, _, s in runs], tables)
    rows = [{"run": label, **h} for (label, _, s), t in zip(runs, tables)
            for h in hypervolume_history(t, s["hypervolume"]["history"], frame)]
    out = pd.DataFrame(rows, columns=["run", "step", "evaluations", "feasible", "best_top1",
                                      "hypervolume"])
    out.attrs["frame"] = frame.source
    return out


def _by_run(table: pd.DataFrame) -> Iterator[tuple[int, str, pd.DataFrame]]:
    """(index, label, rows) per run, in the order the runs were loaded."""
    for i, (label, rows) in enumerate(table.groupby("run", sort=False)):
        yield i, str(label), rows


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
    for i, label, rows in _by_run(runs):
        f = rows[rows["pareto"].astype(bool)].sort_values("macs")
        ax.plot(f["macs"] / 1e6, f["top1"] * 100, "-o", ms=4, c=f"C{i}",
                label=f"{label}: {len(f)} on the front")
    return _finish(ax, "Pareto fronts", "MACs (millions)", "top-1 accuracy (%)")


def plot_hypervolume(history: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Hypervolume against evaluations spent, one line per run (from `load_hypervolume`)."""
    ax = _axes(ax, (7, 4))
    for i, label, rows in _by_run(history):
        ax.plot(rows["evaluations"], rows["hypervolume"], "-o", ms=3, c=f"C{i}", label=label)
    return _finish(ax, "Hypervolume against evaluations", "evaluations",
                   "hypervolume (shared frame: ideal 0, nadir 1)")


def plot_all_children(runs: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Top-1 against MACs of every evaluated child, one colour per run, infeasible as x."""
    ax = _axes(ax)
    for i, label, rows in _by_run(runs):
        feasible = rows["feasible"].astype(bool)
        ax.scatter(rows.loc[feasible, "macs"] / 1e6, rows.loc[feasible, "top1"] * 100,
                   s=12, alpha=0.5, c=f"C{i}", label=f"{label}: {len(rows)} children")
        if (~feasible).any():
            ax.scatter(rows.loc[~feasible, "macs"] / 1e6, rows.loc[~feasible, "top1"] * 100,
                       s=14, marker="x", alpha=0.5, c=f"C{i}", label=f"{label}: infeasible")
    return _finish(ax, "Every evaluated child", "MACs (millions)", "top-1 accuracy (%)")


class _RecordedFeasibility:
    """`results.best_child` asks its problem only which rows are feasible; results.csv
    already records that under the run's own constraints, so no SearchProblem (and no
    search space) has to be rebuilt from the summary."""

    @staticmethod
    def feasible(table: pd.DataFrame) -> np.ndarray:
        if "feasible" in table:
            return table["feasible"].to_numpy(bool)
        return np.isfinite(table["top1"].to_numpy(float))


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
        for _, label, table in _by_run(runs):
            best = best_child(table, _RecordedFeasibility(), limit) or {}
            rows.append({"budget": format_count(limit), "max_macs": limit, "run": label,
                         **best})
    return pd.DataFrame(rows, columns=["budget", "max_macs", "run", "top1", "macs", "params",
                                       "arch"])
