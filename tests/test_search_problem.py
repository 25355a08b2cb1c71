"""Objectives, constraints and units: cost constraints come first (checked by the
counter before any evaluation), then accuracy and latency."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nas_search.problem import Constraints, SearchProblem
from nas_search.units import format_count, parse_accuracy, parse_count, parse_latency
from supernet import load_space
from supernet.spaces.cost import cost

TINY = load_space("tiny")


@pytest.mark.parametrize("text, value", [("400M", 4e8), ("1.2G", 1.2e9), ("250k", 2.5e5),
                                         ("4e8", 4e8), ("1000", 1000.0), (" 3m ", 3e6)])
def test_counts_with_units(text, value):
    assert parse_count(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["4x", "M", "-5M", "0", "1.2.3G", ""])
def test_bad_counts_name_the_option(text):
    with pytest.raises(ValueError, match="--max-macs"):
        parse_count(text, "--max-macs")


def test_accuracy_and_latency_units():
    assert parse_accuracy("95%") == pytest.approx(0.95) == parse_accuracy("0.95")
    for bad in ("95", "abc", "0", "120%"):
        with pytest.raises(ValueError, match="--min-acc"):
            parse_accuracy(bad)
    assert parse_latency("5ms") == 5.0 == parse_latency("0.005s") == parse_latency("5")
    with pytest.raises(ValueError, match="--max-latency"):
        parse_latency("fast")
    assert format_count(4e8) == "400M" and format_count(1.2e9) == "1.2G"


def test_objectives_and_weights_are_checked():
    assert SearchProblem(TINY).weights == (1.0, 1.0)
    with pytest.raises(ValueError, match="objectives"):
        SearchProblem(TINY, objectives=("top1", "flops"))
    with pytest.raises(ValueError, match="weights"):
        SearchProblem(TINY, weights=(1.0,))
    with pytest.raises(ValueError, match="weights"):
        SearchProblem(TINY, weights=(1.0, -1.0))


def test_cost_check_uses_the_closed_form_counter_and_an_impossible_bound_is_an_error():
    arch = TINY.max_arch()
    m, p = cost(TINY, arch)
    assert SearchProblem(TINY, constraints=Constraints(max_macs=m)).within_cost(arch)
    assert not SearchProblem(TINY, constraints=Constraints(max_macs=m - 1)).within_cost(arch)
    assert not SearchProblem(TINY, constraints=Constraints(max_params=p - 1)).within_cost(arch)
    assert not SearchProblem(TINY).within_cost(arch, max_macs=m - 1)  # a target tightens
    with pytest.raises(ValueError, match="no child of space 'tiny' can meet them"):
        SearchProblem(TINY, constraints=Constraints(max_macs=1000)).check_satisfiable()


def test_constraint_matrix_puts_cost_violations_before_accuracy_violations():
    problem = SearchProblem(TINY, constraints=Constraints(max_macs=2e6, min_acc=0.8))
    table = pd.DataFrame({
        "top1": [0.9, 0.1, 0.0, np.nan, np.nan],
        "macs": [1e6, 1e6, 1e6, 2.02e6, 4e6], "params": [1] * 5})
    G = problem.constraint_matrix(table)
    cv = np.maximum(G, 0).sum(1)
    assert cv[0] == 0  # feasible
    assert 0 < cv[1] < cv[2] < 1  # accuracy violations grow with the shortfall, below 1
    assert 1 < cv[3] < cv[4]  # any cost violation outweighs any accuracy violation
    assert list(problem.feasible(table)) == [True, False, False, False, False]
    F = problem.objective_matrix(table)
    assert F[0, 0] == -0.9 and F[0, 1] == 1e6  # top-1 maximised, MACs minimised
