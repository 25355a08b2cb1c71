"""The results table (one row per evaluated child) and the files of a run's out folder.

Every file is written atomically (temporary file in the same folder, then rename), so
a run killed at any moment leaves either the previous or the new version, never half.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from supernet.spaces.space import Arch, SearchSpace
from supernet.utils import atomic_write

from .pareto import equispaced_picks, front, rank_table
from .problem import SearchProblem
from .units import format_count

if TYPE_CHECKING:  # session imports this module
    from .session import Session

RESULTS, FRONT, SUMMARY, STATE = "results.csv", "front.csv", "summary.json", "state.json"
# columns that measure time: they differ between identical runs and are left out of
# reproducibility comparisons
TIMING_COLUMNS = ("eval_time_s", "calib_time_s", "latency_ms")


def arch_fields(space: SearchSpace, arch: Arch) -> dict[str, Any]:
    """The fields of `arch` as flat columns: resolution, stem, head, s<i>_width/depth/..."""
    row: dict[str, Any] = {"resolution": arch.resolution, "stem": arch.stem, "head": arch.head}
    row.update({f"l{i}": op for i, op in enumerate(arch.layers)})  # layer-wise choices
    for i, s in enumerate(arch.stages):
        row.update({f"s{i}_width": s.width, f"s{i}_depth": s.depth,
                    f"s{i}_kernel": s.kernel, f"s{i}_expand": s.expand})
    return row


def write_csv(table: pd.DataFrame, path: str | Path) -> None:
    """Atomic CSV write (floats written so that they read back bit for bit)."""
    atomic_write(path, lambda f: table.to_csv(f, index=False))


def write_json(obj: Any, path: str | Path) -> None:
    """Atomic, indented JSON write."""
    atomic_write(path, lambda f: json.dump(obj, f, indent=1, default=_jsonable))


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON file the run wrote (summary.json, state.json): its top-level object."""
    with open(path) as f:
        out: dict[str, Any] = json.load(f)
    return out


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of `table` as dicts keyed by column name."""
    return table.to_dict("records", into=dict)  # into=dict: str keys to the type checker


def read_results(path: str | Path) -> pd.DataFrame:
    """A results.csv as written by a run (the arch column stays a string)."""
    return pd.read_csv(path, dtype={"arch": str, "evaluator": str, "strategy": str})


def best_first(table: pd.DataFrame, ok: np.ndarray | None = None,
               max_macs: float | None = None) -> pd.DataFrame:
    """The rows allowed by `ok` (default the `feasible` column) and under `max_macs`,
    best first: highest top-1, then fewest MACs (accuracy often ties)."""
    if len(table) == 0:
        return table
    ok = table["feasible"].to_numpy(bool) if ok is None else np.asarray(ok, bool)
    if max_macs is not None:
        ok = ok & (table["macs"].to_numpy(float) <= max_macs)
    return table[ok].sort_values(["top1", "macs"], ascending=[False, True], kind="stable")


def best_child(table: pd.DataFrame, problem: SearchProblem,
               max_macs: float | None = None) -> dict[str, Any] | None:
    """The feasible row with the highest top-1 (ties: fewer MACs), under `max_macs`."""
    if len(table) == 0:
        return None
    rows = best_first(table, problem.feasible(table), max_macs)
    if len(rows) == 0:
        return None
    r = rows.iloc[0]
    return {"arch": r["arch"], "top1": float(r["top1"]), "macs": int(r["macs"]),
            "params": int(r["params"])}


def best_per_target(table: pd.DataFrame,
                    problem: SearchProblem) -> dict[str, dict[str, Any] | None]:
    """Best feasible child under each MACs target (or overall when there are none)."""
    if not problem.targets:
        return {"all": best_child(table, problem)}
    return {format_count(t): best_child(table, problem, t) for t in problem.targets}


def write_tables(out: str | Path, table: pd.DataFrame, problem: SearchProblem) -> pd.DataFrame:
    """results.csv (with `pareto` and `rank`) and front.csv; returns the ranked table."""
    ranked = rank_table(table, problem)
    write_csv(ranked, Path(out) / RESULTS)
    write_csv(front(ranked, problem), Path(out) / FRONT)
    return ranked


def write_run(session: Session, cfg: Any) -> dict[str, Any]:
    """Write a finished search's out folder (`cfg` its `SearchConfig`): tables, summary and
    figures; returns the summary."""
    from .html_report import write_run_report
    from .plots import plot_hypervolume, plot_pareto
    from .search_log import log_search
    from .session import STATE_FORMAT

    out, problem = Path(cfg.out), session.problem
    ranked = write_tables(out, session.table(), problem)
    picks = equispaced_picks(ranked, problem, cfg.pick)
    hv = session.history[-1]["hypervolume"] if session.history else 0.0
    summary = {
        "format": STATE_FORMAT,
        "strategy": cfg.strategy, "seed": cfg.seed, "budget": cfg.budget,
        "settings": session.settings, "problem": problem.to_dict(),
        "evaluator": session.evaluator.name,
        "counts": session.summary_counts(),
        "steps": session.step,
        "wall_time_s": round(session.elapsed_s, 2),
        "front_size": int(ranked["pareto"].sum()) if len(ranked) else 0,
        "hypervolume": {"final": hv, "frame": problem.to_dict()["hv_frame"],
                        "history": session.history},
        "best_per_target": best_per_target(ranked, problem),
        "picks": [{"arch": r["arch"], "top1": float(r["top1"]), "macs": int(r["macs"]),
                   "params": int(r["params"]), "rank": int(r["rank"])}
                  for _, r in picks.iterrows()],
        **session.extra_summary,
        "files": [RESULTS, FRONT, SUMMARY, "pareto.png", "hypervolume.png", "report.html"],
    }
    write_json(summary, out / SUMMARY)
    title = f"{cfg.strategy}, seed {cfg.seed}, {session.counts.evaluated} evaluations"
    plot_pareto(ranked, problem, out / "pareto.png", f"Pareto front: {title}", picks=picks)
    plot_hypervolume(session.history, out / "hypervolume.png", f"Hypervolume: {title}")
    write_run_report(out)  # report.html: the interactive front, tables and settings
    log_search(out)  # TensorBoard events of the run (nothing without tensorboard)
    session.write_state(complete=True)
    return summary
