"""`nas-search`: end to end on an untrained tiny supernet, bad input (one line, exit 2),
resume after a real kill, two gloo processes under torchrun, the report command and
the default path that trains the supernet first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from nas_search.cli import main
from nas_search.results import TIMING_COLUMNS, read_results

FAST = ["--calib-images", "16", "--val-images", "40"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny tensors; a busy shared machine


pytestmark = pytest.mark.usefixtures("one_thread_module")




def _comparable(path: Path) -> pd.DataFrame:
    t = read_results(path)
    return t.drop(columns=[c for c in TIMING_COLUMNS if c in t])


def test_a_search_writes_the_out_folder_and_prints_progress(ckpt, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--strategy", "random", "--supernet", ckpt, "--budget", "20", "--seed", "1",
                 "--max-macs", "4M", "--out", str(out), *FAST]) == 0
    cap = capsys.readouterr()
    assert "[random] step   0  evals 16/20" in cap.err and "HV" in cap.err
    assert "20 evaluated" in cap.out and "best overall" in cap.out
    for name in ("results.csv", "front.csv", "summary.json", "pareto.png", "hypervolume.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["max_macs"] == 4e6
    assert summary["evaluator"].startswith("supernet-") and summary["counts"]["evaluated"] == 20
    # the same command again evaluates nothing: every child comes from the saved table
    assert main(["--strategy", "random", "--supernet", ckpt, "--budget", "20", "--seed", "1",
                 "--max-macs", "4M", "--out", str(out), *FAST, "--quiet"]) == 0
    assert "20 evaluated" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["counts"]["replayed"] == 20


@pytest.mark.parametrize("args, message", [
    (["--strategy", "bayes"], "invalid choice: 'bayes'"),
    (["--budget", "-5"], "--budget: -5 must be at least 1"),
    (["--max-macs", "4x"], "--max-macs: '4x' is not a count"),
    (["--max-macs", "1k"], "no child of space 'tiny' can meet them"),
    (["--space", "attentive-mbv3"], "differs from the requested space"),
    (["--out", "FILE/sub"], "is not a writable folder"),
    (["--supernet", "missing.pt"], "does not exist"),
    (["--resume", "nowhere"], "holds no search to resume"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, message, ckpt, tmp_path, capsys):
    (tmp_path / "FILE").write_text("a file, not a folder")
    args = [a.replace("FILE", str(tmp_path / "FILE")) for a in args]
    base = ["--supernet", ckpt, "--out", str(tmp_path / "out"), "--budget", "4", *FAST]
    given = {a for a in args if a.startswith("--")}
    argv = [a for i, a in enumerate(base) if not (a in given or (i and base[i - 1] in given))]
    if "--resume" in given:
        argv = []
    assert main(argv + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("nas-search: error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_the_installed_command_exits_2_without_a_traceback(tmp_path):
    p = subprocess.run([sys.executable, "-m", "nas_search.cli", "--budget", "0"],
                       capture_output=True, text=True, env=ENV, cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


def test_resume_after_a_kill_ends_like_an_uninterrupted_run(ckpt, tmp_path):
    args = ["--strategy", "nsga2", "--supernet", ckpt, "--budget", "90", "--pop-size", "10",
            "--seed", "5", "--max-macs", "5M", *FAST]
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "nas_search.cli", *args, "--out", str(out),
                             "--quiet"], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    state = out / "state.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text())["steps_completed"] >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = json.loads(state.read_text())
    assert not saved["complete"] and 3 <= saved["steps_completed"] < 9  # killed mid-way
    rows_before = len(read_results(out / "results.csv"))
    assert main(["--resume", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["replayed"] == rows_before  # nothing evaluated twice
    assert main([*args, "--out", str(tmp_path / "full"), "--quiet"]) == 0
    pd.testing.assert_frame_equal(_comparable(out / "results.csv"),
                                  _comparable(tmp_path / "full" / "results.csv"))
    full = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert summary["hypervolume"]["history"] == full["hypervolume"]["history"]


def test_two_gloo_processes_give_the_same_table_as_one(ckpt, tmp_path, monkeypatch):
    args = ["--strategy", "coarse2fine", "--supernet", ckpt, "--budget", "24", "--seed", "2",
            "--max-macs", "3M", *FAST, "--quiet"]
    torchrun = Path(sys.executable).parent / "torchrun"
    p = subprocess.run([str(torchrun), "--nproc_per_node=2", "--standalone", "-m",
                        "nas_search.cli", *args, "--out", str(tmp_path / "two")],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.count("24 evaluated") == 1  # only rank 0 reports
    import nas_search.search

    monkeypatch.setattr(nas_search.search, "_device", lambda: "cpu")  # as the gloo ranks
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    pd.testing.assert_frame_equal(_comparable(tmp_path / "two" / "results.csv"),
                                  _comparable(tmp_path / "one" / "results.csv"))


def test_report_overlays_runs_and_prints_a_comparison(ckpt, tmp_path, capsys):
    runs = []
    for strategy in ("random", "nsga2"):
        runs.append(str(tmp_path / strategy))
        pop = ["--pop-size", "6"] if strategy == "nsga2" else []
        assert main(["--strategy", strategy, "--supernet", ckpt, "--budget", "12", *pop,
                     "--out", runs[-1], *FAST, "--quiet"]) == 0
    capsys.readouterr()
    png = tmp_path / "cmp.png"
    assert main(["report", *runs, "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "hypervolume" in out and "random" in out and "nsga2" in out
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_without_a_supernet_the_default_one_is_trained_first(ckpt, tmp_path, monkeypatch,
                                                             capsys):
    import supernet.training.train

    calls = []

    def fake_train(cfg):
        calls.append(cfg)
        path = Path(cfg.out) / "supernet.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(Path(ckpt).read_bytes())
        return path

    monkeypatch.setattr(supernet.training.train, "train", fake_train)
    out = tmp_path / "run"
    assert main(["--strategy", "nsga2", "--budget", "8", "--pop-size", "4", "--seed", "3",
                 "--out", str(out), *FAST, "--quiet"]) == 0
    (cfg,) = calls
    assert Path(cfg.out) == out / "supernet" and cfg.seed == 3
    assert (cfg.space, cfg.data) == ("tiny", "digits")
    assert len(read_results(out / "results.csv")) == 8


def test_latency_objective_and_constraint(ckpt, tmp_path):
    out = tmp_path / "lat"
    assert main(["--strategy", "random", "--supernet", ckpt, "--budget", "6", "--out", str(out),
                 "--objectives", "top1,latency", "--weights", "1,2", "--max-latency", "10s",
                 *FAST, "--quiet"]) == 0
    results = read_results(out / "results.csv")
    assert (results["latency_ms"] > 0).all() and results["feasible"].all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problem"]["objectives"] == ["top1", "latency"]
    assert summary["problem"]["weights"] == [1.0, 2.0]
    assert summary["problem"]["latency_ref_ms"] > 0 and summary["hypervolume"]["final"] > 0
