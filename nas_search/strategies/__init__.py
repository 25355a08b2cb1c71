"""Search strategies: each is `run(session, **options) -> results table`."""

from . import coarse2fine, nsga2, random

STRATEGIES = {"coarse2fine": coarse2fine.run, "nsga2": nsga2.run, "random": random.run}

__all__ = ["STRATEGIES"]
