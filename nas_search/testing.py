"""Test fakes for the search: a deterministic oracle evaluator, and one that records (and
can fail) its calls. Imported by tests, benchmarks and the notebook; never by the search."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from supernet.spaces.space import Arch, SearchSpace

from .evaluator import EVAL_COLUMNS


class OracleEvaluator:
    """Deterministic stand-in: top-1 rises with log-MACs, minus a fixed per-child jitter.

    No network and no data: tests and benchmarks of the search logic run in milliseconds.
    """

    def __init__(self, space: SearchSpace, noise: float = 0.03, name: str = "oracle"):
        from supernet.spaces.cost import macs

        self.space, self.noise, self.name = space, noise, name
        self._macs = macs
        self._lo = math.log(macs(space, space.min_arch()))
        self._hi = math.log(macs(space, space.max_arch()))

    def top1(self, arch: Arch) -> float:
        """The oracle's top-1 of `arch`, a fraction in 0..1."""
        x = (math.log(self._macs(self.space, arch)) - self._lo) / max(self._hi - self._lo, 1e-9)
        # depth helps a little more than width here, so the front is not just "more MACs"
        depth = np.mean([s.depth / max(spec.depths)
                         for s, spec in zip(arch.stages, self.space.stages)]
                        + [op != "skip" for op in arch.layers])  # layer-wise: non-skip layers
        h = int.from_bytes(hashlib.sha256(str(arch).encode()).digest()[:8], "big") / 2**64
        return float(np.clip(0.5 + 0.4 * math.sqrt(max(x, 0)) + 0.05 * depth
                             - self.noise * h, 0, 1))

    def evaluate(self, archs: Sequence[Arch]) -> pd.DataFrame:
        """One row per arch, in order (the `Evaluator` contract); loss is NaN."""
        rows = [{"arch": str(a), "top1": self.top1(a), "loss": float("nan"),
                 "evaluator": self.name, "eval_time_s": 0.0} for a in archs]
        return pd.DataFrame(rows, columns=list(EVAL_COLUMNS))


class CountingOracle(OracleEvaluator):
    """The oracle, remembering every child it was asked to evaluate; with `fail_after`,
    a simulated kill (KeyboardInterrupt) once more than that many were asked for."""

    def __init__(self, space: SearchSpace, fail_after: int | None = None, **kwargs: Any):
        super().__init__(space, **kwargs)
        self.calls: list[str] = []
        self.fail_after = fail_after

    def evaluate(self, archs: Sequence[Arch]) -> pd.DataFrame:
        """The oracle's rows, after recording `archs` (or the simulated kill)."""
        if self.fail_after is not None and len(self.calls) + len(archs) > self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls += [str(a) for a in archs]
        return super().evaluate(archs)
