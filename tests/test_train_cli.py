"""`nas-train`: flags mirror TrainConfig, a run prints its closing note, and bad
arguments are one line on stderr with exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest
import torch

from supernet.training.cli import build_parser, main
from supernet.training.train import TrainConfig


@pytest.fixture
def npz(tmp_path) -> str:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),
             y=np.arange(40) % 10)
    return f"npz:{tmp_path / 'd.npz'}"


def test_flags_mirror_the_config_and_its_defaults():
    assert vars(build_parser().parse_args([])) == {**asdict(TrainConfig()),
                                                  "out": str(TrainConfig().out)}
    a = build_parser().parse_args(["--no-channels-last", "--bf16", "--batch-size", "8",
                                   "--schedule", "cosine", "--resume", "--num-random", "3"])
    assert (a.channels_last, a.bf16, a.batch_size, a.schedule, a.resume, a.num_random) == \
        (False, True, 8, "cosine", True, 3)


def test_a_run_prints_the_calibrated_top1_and_is_not_repeated(tmp_path, npz, capsys):
    n = torch.get_num_threads()
    args = ["--space", "tiny", "--data", npz, "--epochs", "1", "--batch-size", "16",
            "--calib-images", "16", "--out", str(tmp_path / "run"), "--quiet", "--threads", "1"]
    try:
        assert main(args) == 0
        first = capsys.readouterr().out
        assert main(args) == 0
        again = capsys.readouterr().out
    finally:
        torch.set_num_threads(n)
    assert "epoch   1/1" in first and "BN-calibrated val top-1: smallest" in first
    assert str(tmp_path / "run" / "supernet.pt") in first
    assert "epoch" not in again and "BN-calibrated val top-1" in again  # already trained


@pytest.mark.parametrize("args,needle", [
    (["--epochs", "0"], "epochs"),
    (["--epochs", "three"], "--epochs"),
    (["--bogus"], "--bogus"),
    (["--schedule", "step"], "--schedule"),
    (["--lr", "-0.1"], "lr"),
    (["--device", "tpu"], "device"),
    (["--space", "nope"], "nope"),
    (["--data", "cifar10:/no/such/dir"], "/no/such/dir"),
    (["--data", "imagenet"], "imagenet"),
])
def test_bad_arguments_are_one_line_and_exit_code_2(tmp_path, capsys, args, needle):
    assert main([*args, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nas-train: error:") and needle in err
    assert "Traceback" not in err


def test_a_corrupt_data_file_is_one_line_too(tmp_path, capsys):
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    assert main(["--data", f"npz:{tmp_path / 'bad.npz'}", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "bad.npz") in err


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "--num-random" in capsys.readouterr().out


def test_module_entry_point_exit_code_without_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "supernet.training.cli", "--batch-size", "0",
                           "--out", str(tmp_path / "x")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "batch_size" in done.stderr
