"""A finished search in TensorBoard, beside nas-train's logs: its hypervolume against
evaluations and the best feasible top-1 under each MACs target (or overall), with the
settings as text. Optional like nas-train's: nothing is written without the tensorboard
package (extra [tb]). Rewritten whole at each finish, so a resumed run shows each step once.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from supernet.training.logger import TensorBoardLogger, markdown_table, use_tensorboard

from .results import RESULTS, SUMMARY, read_json, read_results
from .units import format_count

SUFFIX = ".nas-search"  # tells this module's event files from nas-train's in one folder


def search_scalars(table: pd.DataFrame, history: list[dict[str, Any]],
                   targets: list[float]) -> list[tuple[int, dict[str, float]]]:
    """(evaluations spent, tag -> value) after each step: `search/hypervolume` and
    `search/best_top1/<target>` (`all` without targets) where a feasible child fits."""
    ok, top1 = table["feasible"].to_numpy(bool), table["top1"].to_numpy(float)
    macs = table["macs"].to_numpy(float)
    limits = {format_count(t): float(t) for t in targets} or {"all": math.inf}
    best = {name: np.maximum.accumulate(np.where(ok & (macs <= t), top1, -np.inf))
            for name, t in limits.items()}
    out = []
    for h in history:
        n = min(int(h["evaluations"]), len(table))
        values = {"search/hypervolume": float(h["hypervolume"])}
        values.update({f"search/best_top1/{name}": float(b[n - 1])
                       for name, b in best.items() if n and np.isfinite(b[n - 1])})
        out.append((int(h["evaluations"]), values))
    return out


def log_search(run_dir: str | Path, log_dir: str | Path | None = None,
               tensorboard: bool | None = None) -> Path | None:
    """Write the finished run in `run_dir` as TensorBoard events into `log_dir` (default
    `run_dir`), replacing this module's earlier ones; returns the folder, or None when
    TensorBoard is off (`tensorboard` None: on when the package is installed)."""
    if not use_tensorboard(tensorboard):
        return None
    run_dir = Path(run_dir)
    summary, table = read_json(run_dir / SUMMARY), read_results(run_dir / RESULTS)
    log_dir = Path(log_dir or run_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tensorboard.", dir=log_dir))
    try:
        log = TensorBoardLogger(tmp, filename_suffix=SUFFIX)
        settings = {k: v if isinstance(v, str) else json.dumps(v)
                    for k, v in summary.get("settings", {}).items()}
        log.text("search/settings", markdown_table(settings))
        for step, values in search_scalars(table, summary["hypervolume"]["history"],
                                           summary["problem"].get("targets", [])):
            log.scalars(values, step)
        log.close()
        new = [f.name for f in tmp.iterdir()]
        old = [f for f in log_dir.glob(f"events.out.tfevents.*{SUFFIX}") if f.name not in new]
        for name in new:  # each event file appears whole
            os.replace(tmp / name, log_dir / name)
        for f in old:
            f.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return log_dir
