"""A fitted accuracy predictor behind the Evaluator interface of the search, for fast sweeps.

Duck-typed (no import of nas_search): a `name` and `evaluate(archs) -> DataFrame` with one
row per arch in order. Every row names the predictor in `evaluator`, so predicted figures
are never mistaken for measured ones.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from supernet.spaces.space import Arch, SearchSpace

from .features import encode_archs

PREFIX = "predictor:"
COLUMNS = ["arch", "top1", "loss", "evaluator", "eval_time_s"]


class Predictor(Protocol):
    """A fitted scikit-learn regressor, or pipeline, on integer encodings of children."""

    def predict(self, X: npt.NDArray[np.int64], /) -> npt.ArrayLike:
        """Predicted top-1 of each row of encodings `X`."""


def predictor_label(predictor: Predictor) -> str:
    """Short name of a predictor (of the last step of a pipeline), e.g. 'mlp'."""
    est = predictor.steps[-1][1] if hasattr(predictor, "steps") else predictor
    return type(est).__name__.lower().removesuffix("predictor") or type(est).__name__.lower()


class PredictorEvaluator:
    """Predicted top-1 of children from a fitted predictor on integer encodings (or a
    pipeline that starts with an ArchEncoder); `loss` is NaN since nothing is measured."""

    def __init__(self, predictor: Predictor, space: SearchSpace, name: str | None = None):
        self.predictor = predictor
        self.space = space
        name = name or predictor_label(predictor)
        self.name = name if name.startswith(PREFIX) else PREFIX + name

    def evaluate(self, archs: Sequence[Arch]) -> pd.DataFrame:
        """One row per arch, in order: arch, top1 (predicted), loss (NaN), evaluator,
        eval_time_s (the batch's prediction time shared equally)."""
        archs = list(archs)
        if not archs:
            return pd.DataFrame({c: pd.Series(dtype=object if c in ("arch", "evaluator")
                                              else float) for c in COLUMNS})
        start = time.perf_counter()
        top1 = np.asarray(self.predictor.predict(encode_archs(self.space, archs)),
                          dtype=np.float64)
        per_arch = (time.perf_counter() - start) / len(archs)
        return pd.DataFrame({
            "arch": [str(a) for a in archs],
            "top1": top1.ravel(),
            "loss": np.nan,
            "evaluator": self.name,
            "eval_time_s": per_arch,
        })
