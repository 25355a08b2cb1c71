"""notebooks/pareto.ipynb and the functions behind it (nas_search.notebook): the stored
notebook carries no outputs, it runs end to end against the out folders of two real
searches, and the tables and figures it shows are right."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the unit tests draw off screen; the notebook's kernel picks its own
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from nas_search import SearchConfig, run_search  # noqa: E402
from nas_search.notebook import best_per_budget, budget_grid  # noqa: E402
from nas_search.report import read_runs  # noqa: E402
from nas_search.testing import OracleEvaluator  # noqa: E402
from supernet import load_space  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "pareto.ipynb"
TINY = load_space("tiny")


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory) -> list[Path]:
    """Two finished searches of the tiny space, scored by the deterministic oracle (a
    second each): NSGA-II with an accuracy floor, so some children are infeasible, and
    random without one."""
    root = tmp_path_factory.mktemp("runs")
    settings = [("nsga2", {"pop_size": 10, "min_acc": 0.7}), ("random", {})]
    for strategy, extra in settings:
        cfg = SearchConfig(strategy=strategy, out=str(root / strategy), budget=30, seed=0,
                           space="tiny", **extra)
        run_search(cfg, evaluator=OracleEvaluator(TINY, noise=0.08))
    return [root / s for s, _ in settings]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _parameters_cell(nb) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "one cell tagged 'parameters'"
    return cells[0]


def _with_runs(nb, runs: list[Path]) -> None:
    """Set RUNS in the parameters cell, as papermill would (the other parameters stay)."""
    cell = _parameters_cell(nb)
    value = repr([str(r) for r in runs])
    cell.source, n = re.subn(r"(?m)^RUNS = .*$", lambda _: f"RUNS = {value}", cell.source)
    assert n == 1, "the parameters cell assigns RUNS on one line"


# ---- the notebook --------------------------------------------------------------------
def test_the_stored_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert "RUNS = " in _parameters_cell(nb).source


def test_the_notebook_runs_against_two_searches_and_shows_figures(run_dirs, tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    _with_runs(nb, run_dirs)
    # "python3" is the kernel ipykernel provides to the interpreter running the tests
    # (jupyter_client runs it with sys.executable), so no kernel has to be installed
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # the HTML report's interactive figures: fronts over every child, hypervolume
    plotly = "application/vnd.plotly.v1+json"
    figures = [o.data[plotly] for o in outputs if plotly in o.get("data", {})]
    assert len(figures) == 2
    assert [t["meta"]["kind"] for t in figures[0]["data"]].count("front") == len(run_dirs)
    tables = [o.data["text/plain"] for o in outputs if o.output_type == "execute_result"]
    assert any("best_top1_%" in t for t in tables)  # the run comparison
    assert any("budget" in t and "max_macs" in t for t in tables)  # best child per budget


# ---- loading ---------------------------------------------------------------------------
def test_read_runs_labels_every_child_with_its_run(run_dirs):
    runs = read_runs(run_dirs).children
    assert list(runs["run"].unique()) == ["nsga2 (nsga2, seed 0)", "random (random, seed 0)"]
    assert len(runs) == 60 and (runs.groupby("run")["evaluation"].max() == 30).all()
    assert runs["pareto"].dtype == bool and runs["feasible"].dtype == bool
    assert (~runs["feasible"]).any()  # the accuracy floor of the nsga2 run bites
    one = read_runs(str(run_dirs[1])).children  # one folder as a plain string
    assert list(one["run"].unique()) == ["random (random, seed 0)"]


def test_read_runs_tells_apart_folders_of_the_same_name(run_dirs, tmp_path):
    twin = tmp_path / "nsga2"
    twin.mkdir()
    for f in run_dirs[0].iterdir():
        (twin / f.name).write_bytes(f.read_bytes())
    labels = read_runs([run_dirs[0], twin]).children["run"].unique()
    assert list(labels) == [f"{run_dirs[0]} (nsga2, seed 0)", f"{twin} (nsga2, seed 0)"]


def test_read_runs_refuses_an_unfinished_run(tmp_path):
    with pytest.raises(ValueError, match="is not a finished nas-search run"):
        read_runs([tmp_path])
    with pytest.raises(ValueError, match="no out folder"):
        read_runs([])


def test_read_runs_history_is_the_summary_history(run_dirs):
    history = read_runs(run_dirs).history
    for d in run_dirs:
        saved = json.loads((d / "summary.json").read_text())["hypervolume"]["history"]
        rows = history[history["run"].str.startswith(d.name)]
        assert list(rows["evaluations"]) == [h["evaluations"] for h in saved]
        assert list(rows["hypervolume"]) == [h["hypervolume"] for h in saved]


# ---- best child per budget ------------------------------------------------------------
def _children() -> pd.DataFrame:
    return pd.DataFrame({
        "run": ["a"] * 5 + ["b"] * 2,
        "arch": ["a1", "a2", "a3", "a4", "a5", "b1", "b2"],
        "macs": [1e6, 2e6, 1.5e6, 3e6, 2.5e6, 2.5e6, 4e6],
        "params": [10, 20, 15, 30, 25, 25, 40],
        "top1": [0.50, 0.80, 0.80, 0.95, 0.99, 0.70, 0.90],
        # a5 is the best child under 3M but breaks a constraint of its run
        "feasible": [True, True, True, True, False, True, True],
    })


def test_best_per_budget_picks_the_best_feasible_child_under_each_limit():
    table = best_per_budget(_children(), ["3M", 2e6, "1.2M"])
    assert list(table["budget"]) == ["1.2M", "1.2M", "2M", "2M", "3M", "3M"]
    assert list(table["run"]) == ["a", "b"] * 3
    assert list(table["max_macs"]) == [1.2e6, 1.2e6, 2e6, 2e6, 3e6, 3e6]
    best = table.set_index(["budget", "run"])
    assert best.loc[("1.2M", "a"), "arch"] == "a1"
    assert best.loc[("2M", "a"), "arch"] == "a3"  # top-1 tie with a2: fewer MACs wins
    assert best.loc[("3M", "a"), "arch"] == "a4"  # a5 is more accurate but infeasible
    assert best.loc[("3M", "b"), "arch"] == "b1" and best.loc[("3M", "b"), "top1"] == 0.70
    assert best.loc[("3M", "a"), "macs"] == 3e6 and best.loc[("3M", "a"), "params"] == 30
    for budget in ("1.2M", "2M"):  # nothing of run b fits: a row of NaN, not a gap
        assert best.loc[(budget, "b")].drop("max_macs").isna().all()
    single = best_per_budget(_children(), "2M")  # one limit, not the letters of '2M'
    assert list(single["budget"]) == ["2M", "2M"] and single["arch"].iloc[0] == "a3"


def test_the_default_budgets_span_the_children_and_admit_every_one():
    children = _children()
    grid = budget_grid(children, n=4)
    assert grid == [1.8e6, 2.5e6, 3.3e6, 4e6]
    assert grid == sorted(grid) and grid[-1] >= children["macs"].max()
    assert math.isclose(budget_grid(pd.DataFrame({"macs": [1.23e6, 4.567e6]}), n=1)[0], 4.6e6)
    table = best_per_budget(children)
    assert list(table["max_macs"].unique()) == grid
    assert table["arch"].iloc[-2:].tolist() == ["a4", "b2"]  # the overall best of each run
