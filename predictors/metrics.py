"""How well a predictor ranks children: Kendall tau, Spearman rho, RMSE, on held-out folds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import KFold

from .features import Archs


@dataclass(frozen=True)
class RankMetrics:
    """Rank correlations (-1..1, 0 is chance) and root-mean-square error of predictions."""

    kendall_tau: float
    spearman_rho: float
    rmse: float


def rank_metrics(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> RankMetrics:
    """Kendall tau-b and Spearman rho (scipy.stats) and RMSE of `y_pred` against `y_true`.

    A constant `y_pred` ranks nothing: its correlations are NaN, not a number that looks fair.
    """
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape or len(t) < 2:
        raise ValueError(f"rank_metrics: need two equal-length arrays of at least 2 values, "
                         f"got {t.shape} and {p.shape}")
    rmse = float(np.sqrt(np.mean((t - p) ** 2)))
    if np.ptp(t) == 0 or np.ptp(p) == 0:
        return RankMetrics(float("nan"), float("nan"), rmse)
    return RankMetrics(float(stats.kendalltau(t, p).statistic),
                       float(stats.spearmanr(t, p).statistic), rmse)


def cross_val_rank_metrics(predictor: BaseEstimator, X: Archs, y: npt.ArrayLike, folds: int = 5,
                           seed: int = 0) -> RankMetrics:
    """Mean over `folds` shuffled folds of the metrics on each held-out fold; the predictor
    is cloned and fit on the other folds, so no figure comes from data it was fit on."""
    y = np.asarray(y, dtype=np.float64)
    per_fold: list[RankMetrics] = []
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(np.arange(len(y))):
        model = clone(predictor).fit(_take(X, train), y[train])
        per_fold.append(rank_metrics(y[test], model.predict(_take(X, test))))
    return RankMetrics(*(float(np.mean([getattr(m, f) for m in per_fold]))
                         for f in ("kendall_tau", "spearman_rho", "rmse")))


def _take(X: Archs, idx: npt.NDArray[np.intp]) -> Archs:
    """Rows `idx` of an array or of a list (e.g. of Arch, for a pipeline with ArchEncoder)."""
    return X[idx] if isinstance(X, np.ndarray) else [X[i] for i in idx]
