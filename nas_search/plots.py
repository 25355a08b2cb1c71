"""PNG figures of a run (front, hypervolume) and of several runs side by side."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from .problem import SearchProblem
from .units import format_count

# Figures are built with matplotlib.figure.Figure, not pyplot: files only, no display
# needed on a server or in CI, and the global backend (a notebook's inline one) untouched.


def _subplots(figsize: tuple[float, float], ncols: int = 1):
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(1, ncols)


def _save(fig: Figure, path: str | Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_pareto(ranked: pd.DataFrame, problem: SearchProblem, path: str | Path,
                title: str, picks: pd.DataFrame | None = None) -> None:
    """Top-1 (%) against MACs (M): every evaluated child, the front highlighted, the
    constraint and target lines, and the K picks (Algorithm 1's last step) when given."""
    fig, ax = _subplots((7, 5))
    if len(ranked):
        x, y = ranked["macs"] / 1e6, ranked["top1"] * 100
        feas, front = ranked["feasible"].astype(bool), ranked["pareto"].astype(bool)
        ax.scatter(x[feas & ~front], y[feas & ~front], s=12, c="tab:blue", alpha=0.35,
                   label="feasible")
        if (~feas).any():
            ax.scatter(x[~feas], y[~feas], s=14, c="tab:red", marker="x", alpha=0.5,
                       label="infeasible")
        f = ranked[front].sort_values("macs")
        ax.plot(f["macs"] / 1e6, f["top1"] * 100, "-o", c="tab:orange", ms=5,
                label=f"Pareto front ({len(f)})")
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
    ax.set_xlabel("MACs (millions)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def plot_hypervolume(history: list[dict], path: str | Path, title: str) -> None:
    """Hypervolume after each generation or step against evaluations spent."""
    fig, ax = _subplots((7, 4))
    ax.plot([h["evaluations"] for h in history], [h["hypervolume"] for h in history],
            "-o", ms=3)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume (frame: ideal 0, nadir 1)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_comparison(runs: list[tuple[str, pd.DataFrame, list[dict]]], path: str | Path,
                    frame: str = "") -> None:
    """Fronts (top-1 against MACs) and hypervolume curves (all in one frame, named by
    `frame`) of several runs, overlaid."""
    fig, (left, right) = _subplots((13, 5), 2)
    for label, front, history in runs:
        f = front.sort_values("macs")
        line, = left.plot(f["macs"] / 1e6, f["top1"] * 100, "-o", ms=4, label=label)
        right.plot([h["evaluations"] for h in history], [h["hypervolume"] for h in history],
                   "-", c=line.get_color(), label=label)
    left.set(xlabel="MACs (millions)", ylabel="top-1 accuracy (%)", title="Pareto fronts")
    right.set(xlabel="evaluations", ylabel="hypervolume (shared frame)",
              title="Hypervolume against evaluations" + (f"\nframe: {frame}" if frame else ""))
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"nas-search report: {len(runs)} runs")
    _save(fig, path)
