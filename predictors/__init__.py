"""Accuracy predictors on Arch encodings, their rank metrics, a predictor as an evaluator,
and latency lookup tables."""

from .evaluator import PredictorEvaluator
from .features import ArchEncoder
from .latency import LatencyTable, build_latency_table, read_table, save_table
from .metrics import RankMetrics, cross_val_rank_metrics, rank_metrics
from .models import (
    PREDICTORS,
    EnsemblePredictor,
    GPPredictor,
    MLPPredictor,
    RBFPredictor,
    make_predictor,
)

__all__ = ["PREDICTORS", "ArchEncoder", "EnsemblePredictor", "GPPredictor", "LatencyTable",
           "MLPPredictor", "PredictorEvaluator", "RBFPredictor", "RankMetrics",
           "build_latency_table", "cross_val_rank_metrics", "make_predictor", "rank_metrics",
           "read_table", "save_table"]
