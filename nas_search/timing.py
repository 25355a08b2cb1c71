"""Latency of each candidate in the runtime it ships in, cached per arch in the run folder.

A resumed run, or a second objective asking again, reads the cached timing instead of
timing the child again; a timing whose repeats spread widely is flagged (the machine was
busy) and reported, not silently trusted.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from supernet.nn.deploy import NOISY_SPREAD, Timing, check_runtime, measure
from supernet.spaces.space import Arch

from .results import records, write_csv

LATENCY_CACHE = "latency.csv"
_KEY = ("arch", "runtime", "quantize", "batch", "threads")


@dataclass
class Timer:
    """How candidates are timed: runtime, batch, pinned threads, repeats, and the cache
    file (None: no cache). `quantize` is only part of the cache key: the caller passes
    the quantized model."""

    runtime: str = "onnxruntime"
    batch: int = 1
    threads: int = 1
    warmup: int = 5
    repeats: int = 30
    quantize: str | None = None
    cache: Path | None = None
    noisy: int = 0  # timings flagged as noisy so far
    _rows: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        check_runtime(self.runtime, self.quantize)
        if self.batch < 1:
            raise ValueError(f"latency batch: {self.batch} is not allowed; expected >= 1")
        if self.cache is not None and self.cache.is_file():
            for r in records(pd.read_csv(self.cache, keep_default_na=False)):
                self._rows[self._key(str(r["arch"]), r["quantize"] or None)] = r

    def _key(self, arch: str, quantize: str | None) -> tuple[Any, ...]:
        return (arch, self.runtime, quantize or "", self.batch, self.threads)

    def latency(self, arch: Arch, child: nn.Module | None,
                model: bytes | None = None) -> dict[str, Any]:
        """{latency_ms, latency_spread} of `arch` (the exported `child`, or its ONNX
        `model`), from the cache when it was timed before."""
        key = self._key(str(arch), self.quantize)
        if key not in self._rows:
            t = measure(child, arch.resolution, runtime=self.runtime, batch=self.batch,
                        threads=self.threads, warmup=self.warmup, repeats=self.repeats,
                        model=model)
            self._record(key, t)
        r = self._rows[key]
        return {"latency_ms": float(r["ms"]), "latency_spread": float(r["spread"])}

    def _record(self, key: tuple[Any, ...], t: Timing) -> None:
        self._rows[key] = dict(zip(_KEY, key)) | t.to_dict()
        if t.noisy:
            self.noisy += 1
            if self.noisy == 1:  # once: the spread column says which timings it concerns
                print(f"latency: repeats of {key[0]} spread {100 * t.spread:.0f}% around "
                      f"the median (> {100 * NOISY_SPREAD:.0f}%): this machine is busy; "
                      "see the latency_spread column", file=sys.stderr)
        if self.cache is not None:
            write_csv(pd.DataFrame(list(self._rows.values())), self.cache)
