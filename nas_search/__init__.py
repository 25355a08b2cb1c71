"""Search a trained supernet's children: an evaluator behind four strategies (random,
BigNAS coarse-to-fine, SCARLET-NAS constrained weighted NSGA-II, predictor-assisted
NSGA-II), one Pareto report. Test fakes live in `nas_search.testing`."""

from .evaluator import EVAL_COLUMNS, Evaluator, SupernetEvaluator
from .problem import Constraints, SearchProblem
from .search import SearchConfig, run_search
from .session import Session
from .strategies import STRATEGIES
from .units import parse_count

__all__ = ["EVAL_COLUMNS", "Constraints", "Evaluator", "STRATEGIES",
           "SearchConfig", "SearchProblem", "Session", "SupernetEvaluator", "parse_count",
           "run_search"]
