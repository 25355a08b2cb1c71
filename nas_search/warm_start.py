"""Warm start: seed a search's first population with the best feasible children of earlier
runs, and reuse their rows when they were scored by the same evaluator.

The same evaluator means the same supernet weights (the digest in the evaluator's name),
the same calibration and val image counts (also in the name) and the same data set; then
a row is as good as a new evaluation and costs nothing. Otherwise the children are only
seeds, evaluated again like any other.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from supernet.spaces.space import Arch

from .problem import SearchProblem
from .results import FRONT, RESULTS, SUMMARY, best_first, read_json, read_results


@dataclass
class WarmStart:
    """Children to put first in the initial population, and the rows that may stand for
    their evaluations (empty when the evaluators differ)."""

    archs: list[Arch] = field(default_factory=list)
    rows: pd.DataFrame | None = None
    reused: int = 0  # rows of those children taken as evaluated
    runs: list[str] = field(default_factory=list)


def _check_run(run: Path, space: str | None) -> dict[str, Any]:
    """The summary of a finished run of `space` (of any space when None); ValueError (one
    line) otherwise."""
    if not run.is_dir():
        raise ValueError(f"warm-start: {str(run)!r} is not a folder")
    if not (run / SUMMARY).is_file() or not (run / RESULTS).is_file():
        raise ValueError(f"warm-start: {str(run)!r} holds no finished search (no {SUMMARY} "
                         f"and {RESULTS})")
    summary = read_json(run / SUMMARY)
    theirs = summary.get("problem", {}).get("space")
    if space is not None and theirs != space:
        raise ValueError(f"warm-start: {str(run)!r} searched space {theirs!r}, not {space!r}")
    return summary


def check_runs(runs: list[str], space: str | None = None) -> None:
    """ValueError for a warm-start folder that is missing, unfinished or of another space."""
    for r in runs:
        _check_run(Path(r), space)


def warm_start(runs: list[str], problem: SearchProblem, evaluator: str, data: str | None,
               limit: int) -> WarmStart:
    """Up to `limit` children from `runs`: each run's front first, then its best feasible
    rows, those meeting this search's cost constraints, without repeats. Their rows come
    along when the run's evaluator is `evaluator` on the data `data`."""
    out = WarmStart(runs=[str(r) for r in runs])
    taken: dict[Arch, dict[Hashable, Any] | None] = {}  # child -> its row to reuse
    for r in runs:
        run = Path(r)
        summary = _check_run(run, problem.space.name)
        same = (summary.get("evaluator") == evaluator
                and summary.get("settings", {}).get("data") == data)
        table = read_results(run / RESULTS)
        ordered = [read_results(run / FRONT)] if (run / FRONT).is_file() else []
        ordered.append(best_first(table))
        rows = {s: row for s, row in zip(table["arch"], table.to_dict("records"))}
        for part in ordered:
            for s in part["arch"]:
                a = problem.space.parse(s)
                if len(taken) >= limit:
                    break
                if a in taken or not problem.within_cost(a):
                    continue
                taken[a] = rows.get(s) if same else None
    out.archs = list(taken)
    kept = [row for row in taken.values() if row is not None]
    out.reused = len(kept)
    out.rows = pd.DataFrame(kept) if kept else None
    return out
