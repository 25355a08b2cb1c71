"""PNG figures of a run (front, hypervolume) and of several runs side by side, drawn from
the same `figures` series (points, colours, labels) as the HTML report and the notebook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from supernet.utils import atomic_write

from .figures import (
    EVALUATIONS_AXIS,
    INFEASIBLE_KIND,
    MACS_AXIS,
    TOP1_AXIS,
    children_series,
    front_series,
    hypervolume_series,
)
from .problem import SearchProblem
from .units import format_count

# Figures are built with matplotlib.figure.Figure, not pyplot: files only, no display
# needed on a server or in CI, and the global backend (a notebook's inline one) untouched.


def _subplots(figsize: tuple[float, float], ncols: int = 1) -> tuple[Figure, Any]:
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(1, ncols)


def _save(fig: Figure, path: str | Path) -> None:
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=120, format="png"), binary=True)


def draw_children(ax: Axes, children: pd.DataFrame) -> None:
    """Every evaluated child on `ax` (`figures.children_series`: infeasible greyed, x)."""
    for s in children_series(children):
        bad = s.kind == INFEASIBLE_KIND
        ax.scatter(s.x, s.y, s=14 if bad else 12, marker="x" if bad else "o",
                   alpha=0.6 if bad else 0.45, c=s.colour, label=s.label)


def draw_fronts(ax: Axes, children: pd.DataFrame) -> None:
    """Each run's front on `ax` as a line (`figures.front_series`)."""
    for s in front_series(children):
        ax.plot(s.x, s.y, "-o", ms=4, c=s.colour, label=s.label, zorder=4)


def draw_hypervolume(ax: Axes, history: pd.DataFrame) -> None:
    """Each run's hypervolume curve on `ax` (`figures.hypervolume_series`)."""
    for s in hypervolume_series(history):
        ax.plot(s.x, s.y, "-o", ms=3, c=s.colour, label=s.label)


def plot_pareto(ranked: pd.DataFrame, problem: SearchProblem, path: str | Path,
                title: str, picks: pd.DataFrame | None = None) -> None:
    """Top-1 (%) against MACs (M): every evaluated child, the front highlighted, the
    constraint and target lines, and the K picks (Algorithm 1's last step) when given."""
    fig, ax = _subplots((7, 5))
    if len(ranked):
        draw_children(ax, ranked)
        draw_fronts(ax, ranked)
    if picks is not None and len(picks):
        ax.scatter(picks["macs"] / 1e6, picks["top1"] * 100, s=140, facecolors="none",
                   edgecolors="k", linewidths=1.5, label=f"picks ({len(picks)})", zorder=5)
    c = problem.constraints
    if c.max_macs is not None:
        ax.axvline(c.max_macs / 1e6, ls="--", c="k", lw=1,
                   label=f"max MACs {format_count(c.max_macs)}")
    if c.min_acc is not None:
        ax.axhline(c.min_acc * 100, ls="--", c="gray", lw=1,
                   label=f"min top-1 {100 * c.min_acc:g}%")
    for t in problem.targets:
        ax.axvline(t / 1e6, ls=":", c="tab:green", lw=1)
    if problem.targets:
        ax.plot([], [], ls=":", c="tab:green", label="MACs targets")
    ax.set(xlabel=MACS_AXIS, ylabel=TOP1_AXIS, title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def plot_hypervolume(history: list[dict[str, Any]], path: str | Path, title: str) -> None:
    """Hypervolume after each generation or step against evaluations spent."""
    fig, ax = _subplots((7, 4))
    ax.plot([h["evaluations"] for h in history], [h["hypervolume"] for h in history],
            "-o", ms=3)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume (frame: ideal 0, nadir 1)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_comparison(children: pd.DataFrame, history: pd.DataFrame, path: str | Path,
                    frame: str = "") -> None:
    """Fronts (top-1 against MACs) and hypervolume curves (all in one frame, named by
    `frame`) of several runs, overlaid (`report.Runs.children` and `.history`)."""
    fig, (left, right) = _subplots((13, 5), 2)
    draw_fronts(left, children)
    draw_hypervolume(right, history)
    left.set(xlabel=MACS_AXIS, ylabel=TOP1_AXIS, title="Pareto fronts")
    right.set(xlabel=EVALUATIONS_AXIS, ylabel="hypervolume (shared frame)",
              title="Hypervolume against evaluations" + (f"\nframe: {frame}" if frame else ""))
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"nas-search report: {children['run'].nunique()} runs")
    _save(fig, path)
