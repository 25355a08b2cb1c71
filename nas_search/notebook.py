"""Tables for notebooks/pareto.ipynb: the best child under each MACs budget of several
runs. The notebook reads the runs with `nas_search.report.read_runs` and shows the
interactive figures of the HTML report (`nas_search.figures`), so the two never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .figures import by_run
from .results import best_first
from .units import format_count, parse_count


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
