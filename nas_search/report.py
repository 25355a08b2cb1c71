"""Compare finished runs: read their out folders once (`read_runs`) into what every report
draws (every child labelled with its run, hypervolume histories, one comparison table),
with every hypervolume in one frame shared by all the runs compared. The PNG overlay is
`report`; the HTML report (`html_report`) and the notebook read the same `Runs`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .pareto import frame_hypervolume, union_frame
from .problem import HVFrame
from .results import FRONT, RESULTS, SUMMARY, read_json, read_results

RunDirs = str | Path | Sequence[str | Path]
HISTORY_COLUMNS = ["run", "step", "evaluations", "feasible", "best_top1", "hypervolume"]


def load_run(run: str | Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """(summary, front table) of a finished run's out folder."""
    run = Path(run)
    if not all((run / f).is_file() for f in (SUMMARY, FRONT, RESULTS)):
        raise ValueError(f"report: {str(run)!r} is not a finished nas-search run "
                         f"(no {SUMMARY}, {FRONT} and {RESULTS})")
    return read_json(run / SUMMARY), read_results(run / FRONT)


def shared_frame(summaries: list[dict[str, Any]], tables: list[pd.DataFrame]) -> HVFrame:
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


def hypervolume_history(table: pd.DataFrame, history: list[dict[str, Any]],
                        frame: HVFrame) -> list[dict[str, Any]]:
    """The run's hypervolume after each step, recomputed in `frame`."""
    return [{**h, "hypervolume": frame_hypervolume(table.iloc[:h["evaluations"]], frame)}
            for h in history]


def run_dirs(dirs: RunDirs) -> list[Path]:
    """One folder or several as a list; a single string is one folder, not its letters."""
    paths = [Path(dirs)] if isinstance(dirs, (str, Path)) else [Path(d) for d in dirs]
    if not paths:
        raise ValueError("runs: no out folder given")
    return paths


@dataclass
class Runs:
    """Finished runs read once, in the order given; `labels` are unique: the folder name
    (the path where two names coincide), strategy and seed."""

    paths: list[Path]
    labels: list[str]
    summaries: list[dict[str, Any]]
    tables: list[pd.DataFrame]  # each run's results.csv, rows in evaluation order

    @cached_property
    def frame(self) -> HVFrame:
        """The hypervolume frame the runs share (`shared_frame`)."""
        return shared_frame(self.summaries, self.tables)

    @cached_property
    def children(self) -> pd.DataFrame:
        """Every evaluated child of every run, with `run` (label) and `evaluation` (the
        evaluations spent when it was evaluated, from 1)."""
        out: pd.DataFrame = pd.concat(
            [t.assign(run=label, evaluation=np.arange(1, len(t) + 1))[["run", "evaluation",
                                                                        *t.columns]]
             for label, t in zip(self.labels, self.tables)], ignore_index=True)
        return out

    @cached_property
    def history(self) -> pd.DataFrame:
        """Each run's hypervolume history (summary.json), one row per generation or step,
        recomputed in the shared frame; `attrs["frame"]` describes the frame."""
        rows = [{"run": label, **h} for label, s, t in zip(self.labels, self.summaries,
                                                           self.tables)
                for h in hypervolume_history(t, s["hypervolume"]["history"], self.frame)]
        out: pd.DataFrame = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
        out.attrs["frame"] = self.frame.source
        return out

    def comparison(self) -> pd.DataFrame:
        """One row per run: strategy, seed, counts, front size, hypervolume in the shared
        frame, best child; `attrs["frame"]` is the frame."""
        rows = []
        for run, s, table in zip(self.paths, self.summaries, self.tables):
            f = table[table["pareto"].astype(bool)]
            best = f.sort_values(["top1", "macs"], ascending=[False, True]).iloc[0] \
                if len(f) else None
            rows.append({
                "run": str(run), "strategy": s["strategy"], "seed": s["seed"],
                "evaluated": s["counts"]["evaluated"],
                "rejected": s["counts"]["rejected_by_cost"],
                "front": s["front_size"],
                "hypervolume": round(frame_hypervolume(table, self.frame), 4),
                "best_top1_%": None if best is None else round(100 * best["top1"], 2),
                "best_MACs_M": None if best is None else round(best["macs"] / 1e6, 3),
                "wall_s": s["wall_time_s"],
            })
        out: pd.DataFrame = pd.DataFrame(rows)
        out.attrs["frame"] = self.frame
        return out


def read_runs(dirs: RunDirs) -> Runs:
    """The finished runs in `dirs` (ValueError naming a folder that is not one)."""
    paths = run_dirs(dirs)
    summaries = [load_run(p)[0] for p in paths]
    names = [p.name for p in paths]
    keys = [p.name if names.count(p.name) == 1 else str(p) for p in paths]
    labels = [f"{k} ({s['strategy']}, seed {s['seed']})" for k, s in zip(keys, summaries)]
    return Runs(paths, labels, summaries, [read_results(p / RESULTS) for p in paths])


def compare(runs: RunDirs) -> pd.DataFrame:
    """`Runs.comparison` of the finished runs in `runs`."""
    return read_runs(runs).comparison()


def report(runs: RunDirs | Runs, png: str | Path) -> pd.DataFrame:
    """Write the overlay PNG and return the comparison table (its `attrs["frame"]` is the
    shared hypervolume frame)."""
    from .plots import plot_comparison

    runs = runs if isinstance(runs, Runs) else read_runs(runs)
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    plot_comparison(runs.children, runs.history, png, frame=runs.frame.source)
    return runs.comparison()
