"""Random search: uniform children, cost-infeasible ones turned away by the counter,
until the evaluation budget is spent. The baseline every other strategy must beat."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..session import Session


class NoFeasibleChild(ValueError):
    """The constraints left no (new) feasible child within the allowed number of tries."""


def run(session: Session, *, batch: int = 16, max_tries: int = 20_000) -> pd.DataFrame:
    """Evaluate `batch` new cost-feasible uniform samples per step until the budget is spent.

    Raises NoFeasibleChild when `max_tries` draws in a row find no new feasible child and
    nothing feasible was found before; stops early (the space is exhausted) otherwise.
    """
    rng = np.random.default_rng(session.seed)
    space = session.problem.space
    while not session.done:
        want = min(batch, session.remaining)
        drawn: list = []
        misses = 0
        while len(drawn) < want and misses < max_tries:
            arch = space.sample(rng)
            if session.seen(arch) or arch in drawn or not session.cost_ok(arch):
                misses += 1
            else:
                drawn.append(arch)
                misses = 0
        if not drawn:
            if session.counts.evaluated == 0:
                raise NoFeasibleChild(
                    f"random: no child meets the constraints after {max_tries} uniform "
                    "draws; loosen --max-macs/--max-params")
            break  # every feasible child we can find has been evaluated
        session.evaluate(drawn)
        session.end_step()
    return session.table()
