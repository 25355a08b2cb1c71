"""Searching for the device a model ships to: latency measured in onnxruntime and cached
per arch in the run folder, int8 candidates, and warm starts from earlier runs."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from nas_search import SearchConfig, run_search
from nas_search.cli import main
from nas_search.testing import CountingOracle
from supernet import load_space

FAST = ["--calib-images", "16", "--val-images", "40"]
TINY = load_space("tiny")

pytestmark = pytest.mark.usefixtures("one_thread_module")


def test_latency_in_onnxruntime_is_cached_and_not_timed_again(ckpt, tmp_path, monkeypatch,
                                                              capsys):
    pytest.importorskip("onnxruntime")
    import nas_search.timing as timing

    calls: list[str] = []
    real = timing.measure

    def counted(child, resolution, **kw):
        calls.append(kw["runtime"])
        return real(child, resolution, **{**kw, "warmup": 1, "repeats": 3})

    monkeypatch.setattr(timing, "measure", counted)
    out = tmp_path / "run"
    args = ["--strategy", "random", "--supernet", ckpt, "--budget", "5", "--objectives",
            "top1,latency", "--latency-runtime", "onnxruntime", "--out", str(out), *FAST,
            "--quiet"]
    assert main(args) == 0
    table = pd.read_csv(out / "results.csv")
    cache = pd.read_csv(out / "latency.csv")
    assert set(table["arch"]) <= set(cache["arch"]) and len(calls) == len(cache)
    assert (table["latency_ms"] > 0).all() and "latency_spread" in table
    assert set(calls) == {"onnxruntime"} and (cache["runtime"] == "onnxruntime").all()
    # the same search again, from scratch beside the cache: nothing is timed twice
    (out / "results.csv").unlink()
    (out / "state.json").unlink()
    calls.clear()
    assert main(args) == 0
    assert calls == []
    settings = json.loads((out / "summary.json").read_text())["settings"]
    assert settings["latency_runtime"] == "onnxruntime" and settings["latency_batch"] == 1


def test_int8_candidates_are_scored_as_onnxruntime_int8(ckpt, tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "q"
    assert main(["--strategy", "random", "--supernet", ckpt, "--budget", "3", "--quantize",
                 "int8", "--latency-runtime", "onnxruntime", "--objectives", "top1,latency",
                 "--out", str(out), *FAST, "--quiet"]) == 0
    table = pd.read_csv(out / "results.csv")
    assert table["evaluator"].str.endswith("/int8").all()
    assert table["top1"].between(0, 1).all() and (table["latency_ms"] > 0).all()


@pytest.mark.parametrize("args, message", [
    (["--quantize", "int8", "--latency-runtime", "torch"],
     "quantize: int8 children run in onnxruntime"),
    (["--warm-start", "/nonexistent/run"], "warm-start: '/nonexistent/run' is not a folder"),
])
def test_bad_deployment_settings_are_one_line_and_exit_2(args, message, tmp_path, capsys):
    assert main([*args, "--out", str(tmp_path / "x"), "--budget", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def _search(out, seed, **kw) -> tuple[SearchConfig, CountingOracle]:
    oracle = CountingOracle(TINY)
    cfg = SearchConfig(strategy="nsga2", out=str(out), budget=30, seed=seed, space="tiny",
                       pop_size=8, max_macs=6e6, **kw)
    run_search(cfg, evaluator=oracle)
    return cfg, oracle


def test_a_warm_start_seeds_the_first_population_and_reuses_the_rows(tmp_path):
    _search(tmp_path / "a", seed=0)
    front = list(pd.read_csv(tmp_path / "a" / "front.csv")["arch"])
    _, oracle = _search(tmp_path / "b", seed=1, warm_start=(str(tmp_path / "a"),))
    table = pd.read_csv(tmp_path / "b" / "results.csv")
    k = min(8, len(front))  # a warm start brings at most a population (pop_size 8)
    assert list(table["arch"][:k]) == front[:k]  # the earlier front comes first
    # same evaluator (the oracle): their rows stand for evaluations, none scored again
    # (the smallest and largest child are scored first for the hypervolume frame)
    frame = {str(TINY.min_arch()), str(TINY.max_arch())}
    assert not (set(front[:k]) - frame) & set(oracle.calls)
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["warm_start"]["rows_reused"] == min(8, len(front))


def test_a_warm_start_from_another_space_is_refused(tmp_path):
    _search(tmp_path / "a", seed=0)
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    summary["problem"]["space"] = "bignas-mbv2"
    (tmp_path / "a" / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="searched space 'bignas-mbv2', not 'tiny'"):
        _search(tmp_path / "b", seed=1, warm_start=(str(tmp_path / "a"),))


def test_nas_export_writes_the_int8_model_with_its_own_metrics(ckpt, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from nas_search.export_cli import main as export_main

    arch = str(TINY.min_arch())
    out = tmp_path / "children"
    assert export_main(["--supernet", ckpt, "--arch", arch, "--out", str(out), "--quantize",
                        "int8", "--calib-images", "16", "--quiet"]) == 0
    assert "model.int8.onnx" in capsys.readouterr().out
    m = json.loads((out / "child" / "metrics.json").read_text())["int8"]
    assert 0 <= m["val"]["top1"] <= 1 and m["latency_ms"] > 0 and m["bytes"] < m["fp32_bytes"]
    sess = ort.InferenceSession(str(out / "child" / "model.int8.onnx"),
                                providers=["CPUExecutionProvider"])
    assert any("QuantizeLinear" in n.op_type for n in
               __import__("onnx").load(str(out / "child" / "model.int8.onnx")).graph.node)
    assert sess.get_inputs()[0].name == "input"
