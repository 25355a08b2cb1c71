"""Atomic CSV writes: a killed process leaves the old file or the new one, never half of one."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from supernet.utils import atomic_write


def write_csv_atomic(frame: pd.DataFrame, path: str | Path) -> None:
    """Write `frame` (no index) to a temporary file beside `path`, then rename it over `path`."""
    atomic_write(path, lambda f: frame.to_csv(f, index=False))
