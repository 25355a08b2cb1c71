"""Compare finished runs: one table and one PNG overlaying their fronts and hypervolumes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .results import FRONT, SUMMARY, read_json, read_results


def load_run(run: str | Path) -> tuple[dict, pd.DataFrame]:
    """(summary, front table) of a finished run's out folder."""
    run = Path(run)
    if not (run / SUMMARY).is_file() or not (run / FRONT).is_file():
        raise ValueError(f"report: {str(run)!r} is not a finished nas-search run "
                         f"(no {SUMMARY} and {FRONT})")
    return read_json(run / SUMMARY), read_results(run / FRONT)


def compare(runs: list[str | Path]) -> pd.DataFrame:
    """One row per run: strategy, seed, counts, front size, hypervolume, best child."""
    rows = []
    for run in runs:
        s, f = load_run(run)
        best = f.sort_values(["top1", "macs"], ascending=[False, True]).iloc[0] if len(f) \
            else None
        rows.append({
            "run": str(run), "strategy": s["strategy"], "seed": s["seed"],
            "evaluated": s["counts"]["evaluated"],
            "rejected": s["counts"]["rejected_by_cost"],
            "front": s["front_size"],
            "hypervolume": round(s["hypervolume"]["final"], 4),
            "best_top1_%": None if best is None else round(100 * best["top1"], 2),
            "best_MACs_M": None if best is None else round(best["macs"] / 1e6, 3),
            "wall_s": s["wall_time_s"],
        })
    return pd.DataFrame(rows)


def report(runs: list[str | Path], png: str | Path) -> pd.DataFrame:
    """Write the overlay PNG and return the comparison table."""
    from .plots import plot_comparison

    table = compare(runs)
    loaded = [(f"{Path(r).name} ({s['strategy']}, seed {s['seed']})", f,
               s["hypervolume"]["history"]) for r in runs for s, f in [load_run(r)]]
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    plot_comparison(loaded, png)
    return table
