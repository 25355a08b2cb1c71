"""Random search: uniform children, cost-infeasible ones turned away by the counter,
until the evaluation budget is spent. The baseline every other strategy must beat."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..session import Session
from .base import NoFeasibleChild, Strategy, sample_new


@dataclass
class Options:
    """Random search settings."""

    batch: int = 16  # children per step
    max_tries: int = 20_000  # draws in a row without a new feasible child before giving up


def run(session: Session, options: Options | None = None) -> pd.DataFrame:
    """Evaluate `batch` new cost-feasible uniform samples per step until the budget is spent.

    Raises NoFeasibleChild when `max_tries` draws in a row find no new feasible child and
    nothing feasible was found before; stops early (the space is exhausted) otherwise.
    """
    opts = options or Options()
    rng = np.random.default_rng(session.seed)
    while not session.done:
        drawn = sample_new(session, min(opts.batch, session.remaining), rng,
                           max_tries=opts.max_tries)
        if not drawn:
            if session.counts.evaluated == 0:
                raise NoFeasibleChild(
                    f"random: no child meets the constraints after {opts.max_tries} uniform "
                    "draws; loosen --max-macs/--max-params")
            break  # every feasible child we can find has been evaluated
        session.evaluate(drawn)
        session.end_step()
    return session.table()


STRATEGY = Strategy("random", run, Options)
