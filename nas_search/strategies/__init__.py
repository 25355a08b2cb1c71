"""Search strategies, one plain dict: name -> Strategy(name, run, options dataclass). Each runs
as `run(session, options)` and returns the session's results table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import assisted, coarse2fine, many_objective, nsga2, random
from .base import Strategy

if TYPE_CHECKING:
    import pandas as pd

    from ..session import Session

STRATEGIES: dict[str, Strategy] = {
    "assisted": assisted.STRATEGY,
    "coarse2fine": coarse2fine.STRATEGY,
    "nsga2": nsga2.STRATEGY,
    "random": random.STRATEGY,
    # pymoo's many-objective algorithms (strategies/many_objective)
    "agemoea": many_objective.AGE_MOEA,
    "nsga3": many_objective.NSGA3_STRATEGY,
    "unsga3": many_objective.UNSGA3_STRATEGY,
    "moead": many_objective.MOEAD_STRATEGY,
    "smsemoa": many_objective.SMS_EMOA,
}


def run_strategy(name: str, session: Session, **options: Any) -> pd.DataFrame:
    """Run strategy `name` on `session` with keyword settings of its options dataclass."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy: {name!r} is unknown; choose from {sorted(STRATEGIES)}")
    strategy = STRATEGIES[name]
    return strategy.run(session, strategy.make_options(**options))


__all__ = ["STRATEGIES", "Strategy", "run_strategy"]
