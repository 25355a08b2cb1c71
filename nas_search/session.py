"""One search run's bookkeeping, shared by every strategy: the cost check before any
evaluation, the evaluation budget, the cache, the results table, progress and the
atomic state written after every step.

Resuming is a replay: the strategy starts again from its seed, and every child already
in the interrupted run's results.csv is answered from that table instead of being
evaluated. Since every random choice flows from the seed and the answers are the saved
ones, the replay takes the same decisions and the run ends exactly as an uninterrupted
one would, without evaluating any child twice.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from supernet.spaces.space import Arch

from .evaluator import EVAL_COLUMNS, Evaluator, check_output
from .pareto import rank_table, table_hypervolume
from .problem import SearchProblem
from .results import (
    RESULTS,
    STATE,
    TIMING_COLUMNS,
    arch_fields,
    records,
    write_csv,
    write_json,
)

STATE_FORMAT = "nas-search/1"


@dataclass
class Counts:
    """What a run spent: rows evaluated, children the counter rejected, cache hits."""

    evaluated: int = 0  # rows of the table (evaluated now, or replayed from disk)
    rejected_by_cost: int = 0  # distinct children the closed-form counter turned away
    cached: int = 0  # requests for a child this run had already evaluated
    replayed: int = 0  # rows taken from the interrupted run's table instead of evaluated


class Session:
    """The one object strategies talk to: `evaluate` children, `end_step` after each
    generation or step, stop when `done`."""

    def __init__(self, problem: SearchProblem, evaluator: Evaluator, *, strategy: str,
                 budget: int, seed: int, out: str | Path | None = None,
                 settings: dict[str, Any] | None = None, saved: pd.DataFrame | None = None,
                 elapsed_s: float = 0.0, quiet: bool = True, main: bool = True,
                 known: pd.DataFrame | None = None, warm: Sequence[Arch] = ()):
        if budget < 1:
            raise ValueError(f"budget: {budget} must be at least 1 evaluation")
        self.problem, self.evaluator = problem, evaluator
        self.strategy, self.budget, self.seed = strategy, int(budget), int(seed)
        self.out = Path(out) if out is not None else None
        self.settings = settings or {}
        self.quiet, self.main = quiet, main
        self.counts = Counts()
        self.step = 0
        self.step_label = "step"
        self.phase = strategy
        self.history: list[dict[str, Any]] = []
        self.extra_summary: dict[str, Any] = {}  # strategy-specific entries for summary.json
        self._rows: list[dict[str, Any]] = []
        self._by_arch: dict[Arch, dict[str, Any]] = {}
        self._rejected: set[Arch] = set()
        self._saved = _saved_metrics(saved, evaluator.name)
        # rows the evaluator already gave before the run (the hypervolume frame's children):
        # used, not evaluated again, when the strategy asks for them (and then counted)
        self._known = _saved_metrics(known, evaluator.name)
        # children of earlier runs that population strategies put first (warm start)
        self.warm: list[Arch] = list(warm)
        self._elapsed0, self._t0 = float(elapsed_s), time.perf_counter()
        self.chunk = 32  # children per evaluator call
        self._bar = None
        if main and not quiet:
            from tqdm import tqdm

            self._bar = tqdm(total=self.budget, desc=strategy, unit="eval", leave=False,
                             dynamic_ncols=True, file=sys.stderr)

    def close(self) -> None:
        """End the progress bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # ---- what strategies ask -----------------------------------------------------
    @property
    def remaining(self) -> int:
        """Evaluations left in the budget."""
        return self.budget - self.counts.evaluated

    @property
    def done(self) -> bool:
        """Whether the budget is spent: the strategy stops."""
        return self.remaining <= 0

    def seen(self, arch: Arch) -> bool:
        """Whether this run already evaluated or cost-rejected `arch`."""
        return arch in self._by_arch or arch in self._rejected

    def lookup(self, arch: Arch) -> dict[str, Any] | None:
        """The row of `arch` if this run evaluated it."""
        return self._by_arch.get(arch)

    def screen(self, arch: Arch, max_macs: float | None = None) -> bool:
        """The closed-form check before any evaluation: False, and the child counted as
        rejected, when it breaks the cost constraints. `max_macs` (a strategy's own target)
        tightens the check without counting (`SearchProblem.within_cost` counts nothing)."""
        if not self.problem.within_cost(arch):
            self._reject(arch)
            return False
        return self.problem.within_cost(arch, max_macs)

    def evaluate(self, archs: Sequence[Arch]) -> pd.DataFrame:
        """Metrics of each child, in order, with `evaluated` and `feasible` columns.

        A child over the cost constraints is rejected by the counter and never evaluated
        (top-1 NaN); a child already in the table is answered from it. Raises if the new
        children exceed the remaining budget: strategies size their batches to it.
        """
        archs = list(archs)
        new: list[Arch] = []
        for a in archs:
            if not self.screen(a):
                continue
            if a in self._by_arch:
                self.counts.cached += 1
            elif a not in new:
                new.append(a)
        if len(new) > self.remaining:
            raise RuntimeError(f"{self.strategy}: asked for {len(new)} evaluations with "
                               f"{self.remaining} left in the budget")
        # in chunks, so that the table on disk and the progress bar keep up with a long
        # generation, and a kill loses at most one chunk of evaluations
        for i in range(0, len(new), self.chunk):
            part = new[i:i + self.chunk]
            fresh = [a for a in part if str(a) not in self._saved and str(a) not in self._known]
            metrics: dict[Arch, dict[str, Any]] = {}
            if fresh:
                table = self.evaluator.evaluate(fresh)
                check_output(self.evaluator, fresh, table)
                metrics = dict(zip(fresh, records(table)))
            for a in part:  # rows in request order, whatever their source
                if a in metrics:
                    m = metrics[a]
                elif str(a) in self._known:
                    m = self._known[str(a)]
                else:
                    m = self._saved[str(a)]
                    self.counts.replayed += 1
                self._add_row(a, m)
            self._write_results()
            if self._bar is not None:
                self._bar.update(len(part))
        out = pd.DataFrame([self._by_arch.get(a) or self._rejected_row(a) for a in archs])
        out["evaluated"] = [a in self._by_arch for a in archs]
        out["feasible"] = out["feasible"].astype(bool)
        return out

    def end_step(self) -> None:
        """Close a generation or step: hypervolume, progress line, atomic state."""
        table = self.table()
        feasible = table["feasible"].to_numpy(bool) if len(table) else np.zeros(0, bool)
        best = float(table["top1"][feasible].max()) if feasible.any() else float("nan")
        self.history.append({
            "step": self.step, "evaluations": self.counts.evaluated,
            "feasible": int(feasible.sum()), "best_top1": best,
            "hypervolume": table_hypervolume(table, self.problem)})
        if self._bar is not None:
            h = self.history[-1]
            self._bar.write(f"[{self.strategy}] {self.step_label} {self.step:3d}  "
                            f"evals {h['evaluations']}/{self.budget}  feasible {h['feasible']}"
                            f"  rejected {self.counts.rejected_by_cost}  best top-1 "
                            f"{100 * best:.2f}%  HV {h['hypervolume']:.4f}", file=sys.stderr)
        self.step += 1
        self.write_state(complete=False)

    # ---- the table -----------------------------------------------------------------
    def table(self) -> pd.DataFrame:
        """Every evaluated child, one row each, in evaluation order, with `feasible`."""
        return pd.DataFrame(self._rows)

    @property
    def elapsed_s(self) -> float:
        """Wall time of the run in seconds, the interrupted runs' before a resume included."""
        return self._elapsed0 + time.perf_counter() - self._t0

    def summary_counts(self) -> dict[str, int]:
        """The counts as a dict, for summary.json and state.json."""
        return asdict(self.counts)

    # ---- internals -----------------------------------------------------------------
    def _base(self, arch: Arch) -> dict[str, Any]:
        m, p = self.problem.cost(arch)
        row = {"strategy": self.strategy, "seed": self.seed, "step": self.step,
               "phase": self.phase, "arch": str(arch),
               **arch_fields(self.problem.space, arch), "macs": m, "params": p}
        if self.problem.latency_fn is not None:  # known before evaluation (lookup table)
            row["latency_ms"] = self.problem.latency_fn(arch)
        return row

    def _reject(self, arch: Arch) -> None:
        if arch not in self._rejected:
            self._rejected.add(arch)
            self.counts.rejected_by_cost += 1

    def _add_row(self, arch: Arch, metrics: dict[str, Any]) -> None:
        row = self._base(arch)
        row.update({k: v for k, v in metrics.items() if k != "arch"})
        row["feasible"] = bool(self.problem.feasible(pd.DataFrame([row]))[0])
        self._rows.append(row)
        self._by_arch[arch] = row
        self.counts.evaluated += 1

    def _rejected_row(self, arch: Arch) -> dict[str, Any]:
        row = self._base(arch)
        row.update({"top1": float("nan"), "loss": float("nan"), "evaluator": "",
                    "eval_time_s": 0.0, "feasible": False})
        if self.problem.needs_latency:
            row.setdefault("latency_ms", float("nan"))
        return row

    def _write_results(self) -> None:
        if self.out is not None and self.main:
            write_csv(rank_table(self.table(), self.problem), self.out / RESULTS)

    def write_state(self, complete: bool) -> None:
        """state.json: settings, steps completed, counts, history (atomically)."""
        if self.out is None or not self.main:
            return
        write_json({"format": STATE_FORMAT, "settings": self.settings,
                    "steps_completed": self.step, "complete": complete,
                    "elapsed_s": self.elapsed_s, "counts": self.summary_counts(),
                    "history": self.history}, self.out / STATE)


def _saved_metrics(saved: pd.DataFrame | None,
                   evaluator_name: str) -> dict[str, dict[str, Any]]:
    """arch string -> evaluator columns of an interrupted run's rows (its answers)."""
    if saved is None or len(saved) == 0:
        return {}
    names = set(saved["evaluator"].astype(str))
    if names != {evaluator_name}:
        raise ValueError(f"resume: the saved results come from evaluator(s) {sorted(names)}, "
                         f"not {evaluator_name!r}; resume with the same supernet and data")
    keep = [c for c in saved.columns if c in EVAL_COLUMNS or c in TIMING_COLUMNS]
    return {r["arch"]: r for r in records(saved[keep])}
