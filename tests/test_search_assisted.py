"""Predictor-assisted NSGA-II (strategies/assisted) on the deterministic oracle: budget,
real rows only, per-iteration surrogate tau, seeding, resume, its hypervolume against
random; the --predictor flag; and a latency lookup table as a pre-evaluation constraint."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from nas_search import SearchConfig, SearchProblem, Session, run_search
from nas_search.cli import main
from nas_search.problem import Constraints
from nas_search.results import TIMING_COLUMNS, read_results
from nas_search.strategies.assisted import pick_spread
from nas_search.testing import CountingOracle, OracleEvaluator
from predictors.latency import (
    COLUMNS,
    NETWORK,
    LatencyTable,
    covering_archs,
    layer_keys,
    save_table,
    space_hash,
)
from supernet import ElasticSupernet, load_space, save_checkpoint

TINY = load_space("tiny")
BUDGET = 40


def _cfg(out, seed: int = 0, **kw) -> SearchConfig:
    opts = {"strategy": "assisted", "predictor": "gp", "budget": BUDGET, "seed": seed,
            "space": "tiny", "pop_size": 16, **kw}
    return SearchConfig(out=str(out), **opts)


def _comparable(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=[c for c in TIMING_COLUMNS if c in table]).reset_index(drop=True)


@pytest.fixture(scope="module")
def assisted_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("assisted")
    oracle = CountingOracle(TINY)
    session = run_search(_cfg(out), evaluator=oracle)
    return out, session, oracle


def test_spends_exactly_the_budget_on_real_evaluations(assisted_run):
    out, session, oracle = assisted_run
    results = read_results(out / "results.csv")
    assert len(oracle.calls) == len(set(oracle.calls)) == BUDGET == len(results)
    assert set(results["evaluator"]) == {"oracle"}  # no surrogate prediction is a row
    assert sorted(results["arch"]) == sorted(oracle.calls)
    first = results[results["phase"] == "init"]["arch"].tolist()
    assert str(TINY.min_arch()) in first and str(TINY.max_arch()) in first
    assert (results["phase"] == "assisted").sum() == BUDGET - len(first)


def test_summary_has_the_held_out_tau_of_every_iteration(assisted_run):
    out, session, _ = assisted_run
    surrogate = json.loads((out / "summary.json").read_text())["surrogate"]
    assert [s["iteration"] for s in surrogate] == list(range(len(surrogate)))
    assert len(surrogate) == session.step - 1  # one fit per iteration after the initial step
    evals = [h["evaluations"] for h in session.history]
    assert [s["n_train"] for s in surrogate] == evals[:-1]  # fit on all real rows so far
    taus = np.array([s["kendall_tau"] for s in surrogate])
    assert np.all((taus >= -1) & (taus <= 1))
    assert taus[-1] > 0.3  # the oracle is learnable: the surrogate ranks well above chance


def test_same_seed_same_results_and_resume_after_a_kill(assisted_run, tmp_path):
    out, _, _ = assisted_run
    again = run_search(_cfg(tmp_path / "again"), evaluator=CountingOracle(TINY))
    assert _comparable(read_results(tmp_path / "again" / "results.csv")).equals(
        _comparable(read_results(out / "results.csv")))
    cfg = _cfg(tmp_path / "killed")
    with pytest.raises(KeyboardInterrupt):
        run_search(cfg, evaluator=CountingOracle(TINY, fail_after=25))
    rest = CountingOracle(TINY)
    resumed = run_search(cfg, evaluator=rest)
    assert resumed.counts.replayed > 0 and len(rest.calls) == BUDGET - resumed.counts.replayed
    assert _comparable(resumed.table()).equals(_comparable(again.table()))


def test_reaches_the_hypervolume_of_random_at_the_same_budget(assisted_run, tmp_path):
    _, session, _ = assisted_run
    rand = run_search(SearchConfig(strategy="random", budget=BUDGET, seed=0, space="tiny",
                                   out=str(tmp_path / "random")), evaluator=OracleEvaluator(TINY))
    assert session.history[-1]["hypervolume"] >= rand.history[-1]["hypervolume"]


def test_the_batch_spans_the_predicted_front_and_predicted_infeasible_come_last():
    oracle = OracleEvaluator(TINY)

    class Exact:  # a surrogate that is the oracle itself
        def predict(self, archs):
            return np.array([oracle.top1(a) for a in archs])

    rng = np.random.default_rng(0)
    cands = list(dict.fromkeys(TINY.sample(rng) for _ in range(60)))
    cap = float(np.median([oracle.top1(a) for a in cands]))
    problem = SearchProblem(TINY, constraints=Constraints(min_acc=cap))
    session = Session(problem, oracle, strategy="nsga2", budget=10, seed=0)
    picked = pick_spread(session, Exact(), cands, len(cands))
    assert sorted(map(str, picked)) == sorted(map(str, cands))
    ok = [oracle.top1(a) >= cap for a in picked]
    assert ok == sorted(ok, reverse=True)  # every predicted-feasible one before the rest
    best = max(cands, key=oracle.top1)  # an extreme of the first front: infinite crowding
    assert best in picked[:2]
    assert session.counts.evaluated == 0  # picking spends nothing


@pytest.mark.parametrize("args, message", [
    (["--predictor", "bogus"], "invalid choice: 'bogus'"),
    (["--strategy", "random", "--predictor", "mlp"], "predictor: not a setting of strategy"),
    (["--strategy", "nsga2", "--predictor", "mlp"], "predictor: not a setting of strategy"),
])
def test_bad_predictor_is_one_line_and_exit_code_2(args, message, tmp_path, capsys):
    assert main([*args, "--out", str(tmp_path), "--budget", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


# ---- latency lookup table ----------------------------------------------------------------
def _table(path) -> LatencyTable:
    """A hand-made table for the tiny space: every layer it can have, made-up timings."""
    meta = {"space": TINY.name, "space_hash": space_hash(TINY), "device": "cpu",
            "batch_size": 1, "threads": 1, "torch": torch.__version__}
    keys = dict.fromkeys(k for a in covering_archs(TINY) for k in layer_keys(TINY, a))
    rows = [{"kind": k.split(":")[0], "key": k, "ms": 0.05 + 0.01 * (len(k) % 11), **meta}
            for k in keys]
    rows.append({"kind": NETWORK, "key": NETWORK, "ms": 0.2, **meta})
    save_table(pd.DataFrame(rows, columns=list(COLUMNS)), path)
    return LatencyTable.from_csv(TINY, path)


@pytest.mark.parametrize("predictor", [None, "gp"])
def test_latency_table_is_a_pre_evaluation_constraint(predictor, tmp_path):
    table = _table(tmp_path / "lat.csv")
    lats = [table.predict(a) for a in covering_archs(TINY)]
    cap = float(np.median(lats))
    oracle = CountingOracle(TINY)
    strategy = "assisted" if predictor else "nsga2"
    session = run_search(_cfg(tmp_path / "run", predictor=predictor, strategy=strategy,
                              budget=24, objectives=("top1", "latency"), max_latency=cap,
                              latency_table=str(tmp_path / "lat.csv")), evaluator=oracle)
    # the hypervolume frame's two children come first, outside the search's budget
    frame, search = oracle.calls[:2], oracle.calls[2:]
    assert frame == [str(TINY.min_arch()), str(TINY.max_arch())]
    results = read_results(tmp_path / "run" / "results.csv")
    assert len(results) == 24 and set(results["arch"]) == set(search) | (
        set(frame) & set(results["arch"]))
    evaluated = [table.predict(TINY.parse(a)) for a in results["arch"]]
    assert max(evaluated) <= cap  # over-cap never evaluated by the search
    assert session.counts.rejected_by_cost > 0
    assert np.allclose(results["latency_ms"], evaluated) and results["feasible"].all()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["problem"]["latency_ref_ms"] == pytest.approx(table.predict(TINY.max_arch()))


def test_latency_table_end_to_end_on_the_command_line(tmp_path, capsys):
    table = _table(tmp_path / "lat.csv")
    ckpt = tmp_path / "tiny.pt"
    torch.manual_seed(0)
    save_checkpoint(ckpt, ElasticSupernet("tiny"), data="digits", seed=0)
    out = tmp_path / "out"
    cap = table.predict(TINY.max_arch()) * 0.8
    assert main(["--strategy", "random", "--supernet", str(ckpt), "--budget", "4",
                 "--objectives", "top1,latency", "--latency-table", str(tmp_path / "lat.csv"),
                 "--max-latency", f"{cap}ms", "--calib-images", "8", "--val-images", "16",
                 "--threads", "1", "--out", str(out), "--quiet"]) == 0
    results = read_results(out / "results.csv")
    want = [table.predict(TINY.parse(a)) for a in results["arch"]]
    assert np.allclose(results["latency_ms"], want) and (results["latency_ms"] <= cap).all()
    assert main(["--latency-table", str(tmp_path / "nope.csv"), "--out",
                 str(tmp_path / "o2")]) == 2
    assert "does not exist" in capsys.readouterr().err
