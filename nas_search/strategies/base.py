"""What every strategy shares: its entry in STRATEGIES, the "uniform, feasible, not yet
seen" sampling, the one pymoo Problem adapter (real or predicted scores), and the
best-first ordering of a run's rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pymoo.config import Config
from pymoo.core.problem import Problem

from supernet.spaces.space import Arch

from ..results import best_first

if TYPE_CHECKING:
    from ..session import Session

Config.warnings["not_compiled"] = False  # pymoo prints to stdout otherwise


@dataclass(frozen=True)
class Strategy:
    """A strategy: `run(session, options)` spends the session's budget and returns its
    table; `options` is the dataclass of its settings (every field has a default)."""

    name: str
    run: Callable[[Session, Any], pd.DataFrame]
    options: type

    def make_options(self, **given: Any) -> Any:
        """The options dataclass from keyword settings; ValueError naming an unknown one."""
        names = {f.name for f in fields(self.options)}
        bad = sorted(set(given) - names)
        if bad:
            raise ValueError(f"{bad[0]}: not a setting of strategy {self.name}; its "
                             f"settings are {', '.join(sorted(names))}")
        return self.options(**given)


class NoFeasibleChild(ValueError):
    """The constraints left no (new) feasible child within the allowed number of draws."""


def sample_new(session: Session, n: int, rng: np.random.Generator, *,
               taken: Sequence[Arch] = (), max_macs: float | None = None,
               unseen: bool = True, count: bool = True, max_tries: int = 20_000) -> list[Arch]:
    """Up to `n` distinct uniform children within the cost constraints (and `max_macs`), not
    in `taken`; with `unseen`, also none this run evaluated or rejected. `count` records
    cost rejections in the session (set it False for draws that spend no evaluation, e.g.
    a surrogate's population). Stops after `max_tries` draws in a row bring nothing."""
    space = session.problem.space
    check = session.screen if count else session.problem.within_cost
    out: list[Arch] = []
    chosen = set(taken)
    misses = 0
    while len(out) < n and misses < max_tries:
        a = space.sample(rng)
        if a in chosen or (unseen and session.seen(a)) or not check(a, max_macs):
            misses += 1
        else:
            out.append(a)
            chosen.add(a)
            misses = 0
    return out


def extremes(session: Session, count: bool = True) -> list[Arch]:
    """The children a first population starts with: a warm start's (the best of earlier
    runs), then the smallest and largest child; those within the cost constraints and
    not yet seen."""
    space = session.problem.space
    check = session.screen if count else session.problem.within_cost
    return [a for a in dict.fromkeys((*session.warm, space.min_arch(), space.max_arch()))
            if not session.seen(a) and check(a)]


def ranked(session: Session, max_macs: float | None = None) -> list[Arch]:
    """This run's feasible children under `max_macs`, best first (top-1, then fewer MACs)."""
    rows = best_first(session.table(), max_macs=max_macs)
    return [session.problem.space.parse(s) for s in rows["arch"]] if len(rows) else []


# pymoo ships no type information: its classes are Any
class ArchProblem(Problem):  # type: ignore[misc]
    """The search as a pymoo Problem over integer encodings: `score(archs)` gives rows
    (session.evaluate for real evaluations, a surrogate's predictions otherwise) and the
    Problem fills F and G for the whole population from them."""

    def __init__(self, session: Session,
                 score: Callable[[list[Arch]], pd.DataFrame] | None = None):
        n = session.problem.space.n_choices()
        super().__init__(n_var=len(n), n_obj=len(session.problem.objectives),
                         n_ieq_constr=session.problem.n_constraints,
                         xl=np.zeros(len(n)), xu=n - 1, vtype=int)
        self.session = session
        self.score = score or session.evaluate

    def _evaluate(self, X: npt.NDArray[Any], out: dict[str, Any], *args: Any,
                  **kwargs: Any) -> None:
        space = self.session.problem.space
        table = self.score([space.decode(x) for x in np.asarray(X).astype(int)])
        out["F"] = self.session.problem.objective_matrix(table)
        G = self.session.problem.constraint_matrix(table)
        if G is not None:
            out["G"] = G
