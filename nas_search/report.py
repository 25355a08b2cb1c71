"""Compare finished runs: one table and one PNG overlaying their fronts and hypervolumes,
every hypervolume in one frame shared by all the runs compared."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .pareto import frame_hypervolume, union_frame
from .problem import HVFrame
from .results import FRONT, RESULTS, SUMMARY, read_json, read_results


def load_run(run: str | Path) -> tuple[dict, pd.DataFrame]:
    """(summary, front table) of a finished run's out folder."""
    run = Path(run)
    if not all((run / f).is_file() for f in (SUMMARY, FRONT, RESULTS)):
        raise ValueError(f"report: {str(run)!r} is not a finished nas-search run "
                         f"(no {SUMMARY}, {FRONT} and {RESULTS})")
    return read_json(run / SUMMARY), read_results(run / FRONT)


def shared_frame(summaries: list[dict], tables: list[pd.DataFrame]) -> HVFrame:
    """The runs' own frame when they all share one (same evaluator), else one built from
    the union of their rows; ValueError when the runs optimise different objectives."""
    objectives = {tuple(s["problem"]["objectives"]) for s in summaries}
    if len(objectives) != 1:
        raise ValueError(f"report: the runs optimise different objectives {sorted(objectives)}"
                         "; compare runs of one search problem")
    frames = [s["hypervolume"].get("frame") for s in summaries]
    if frames[0] and all(f == frames[0] for f in frames):
        return HVFrame.from_dict(frames[0])
    return union_frame(tables, objectives.pop())


def _loaded(runs: list[str | Path]):
    loaded = [(Path(r), *load_run(r), read_results(Path(r) / RESULTS)) for r in runs]
    frame = shared_frame([s for _, s, _, _ in loaded], [t for _, _, _, t in loaded])
    return loaded, frame


def hypervolume_history(table: pd.DataFrame, history: list[dict],
                        frame: HVFrame) -> list[dict]:
    """The run's hypervolume after each step, recomputed in `frame`."""
    return [{**h, "hypervolume": frame_hypervolume(table.iloc[:h["evaluations"]], frame)}
            for h in history]


def compare(runs: list[str | Path]) -> pd.DataFrame:
    """One row per run: strategy, seed, counts, front size, hypervolume in the shared
    frame, best child."""
    loaded, frame = _loaded(runs)
    rows = []
    for run, s, f, table in loaded:
        best = f.sort_values(["top1", "macs"], ascending=[False, True]).iloc[0] if len(f) \
            else None
        rows.append({
            "run": str(run), "strategy": s["strategy"], "seed": s["seed"],
            "evaluated": s["counts"]["evaluated"],
            "rejected": s["counts"]["rejected_by_cost"],
            "front": s["front_size"],
            "hypervolume": round(frame_hypervolume(table, frame), 4),
            "best_top1_%": None if best is None else round(100 * best["top1"], 2),
            "best_MACs_M": None if best is None else round(best["macs"] / 1e6, 3),
            "wall_s": s["wall_time_s"],
        })
    out = pd.DataFrame(rows)
    out.attrs["frame"] = frame
    return out


def report(runs: list[str | Path], png: str | Path) -> pd.DataFrame:
    """Write the overlay PNG and return the comparison table (its `attrs["frame"]` is the
    shared hypervolume frame)."""
    from .plots import plot_comparison

    loaded, frame = _loaded(runs)
    table = compare(runs)
    curves = [(f"{run.name} ({s['strategy']}, seed {s['seed']})", f,
               hypervolume_history(t, s["hypervolume"]["history"], frame))
              for run, s, f, t in loaded]
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    plot_comparison(curves, png, frame=frame.source)
    return table
