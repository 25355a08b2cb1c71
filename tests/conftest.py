"""Fixtures shared by the search tests: the tiny space, a counting oracle, sessions."""

from __future__ import annotations

import pandas as pd
import pytest

from nas_search import SearchProblem, Session
from nas_search.problem import Constraints
from nas_search.results import TIMING_COLUMNS
from nas_search.testing import CountingOracle
from supernet import load_space

MAX_MACS = 4e6  # about half of the tiny space's children fit


@pytest.fixture(scope="session")
def tiny():
    """The built-in tiny space."""
    return load_space("tiny")


@pytest.fixture
def make_session(tiny):
    """A factory of sessions on the tiny space under MAX_MACS, with a CountingOracle."""
    def make(strategy: str, budget: int = 60, seed: int = 0, evaluator=None,
             max_macs: float | None = MAX_MACS, **problem_kw) -> Session:
        problem = SearchProblem(tiny, constraints=Constraints(max_macs=max_macs), **problem_kw)
        return Session(problem, evaluator or CountingOracle(tiny), strategy=strategy,
                       budget=budget, seed=seed)
    return make


def _comparable(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=[c for c in TIMING_COLUMNS if c in table]).reset_index(drop=True)


@pytest.fixture
def comparable():
    """A function: a results table without its timing columns (they differ between
    identical runs)."""
    return _comparable
