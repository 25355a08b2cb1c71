"""Search a trained supernet's children: an evaluator behind three strategies (random,
BigNAS coarse-to-fine, SCARLET-NAS constrained weighted NSGA-II), one Pareto report."""

from .evaluator import EVAL_COLUMNS, Evaluator, OracleEvaluator, SupernetEvaluator
from .problem import Constraints, SearchProblem, parse_count
from .search import SearchConfig, run_search
from .session import Session
from .strategies import STRATEGIES

__all__ = ["EVAL_COLUMNS", "Constraints", "Evaluator", "OracleEvaluator", "STRATEGIES",
           "SearchConfig", "SearchProblem", "Session", "SupernetEvaluator", "parse_count",
           "run_search"]
