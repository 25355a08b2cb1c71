"""DDP under torchrun on CPU (gloo): two processes train what one process trains with the
same global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from supernet import ElasticSupernet, load_space
from supernet.checkpoint import read_checkpoint
from supernet.training.distributed import DynamicSyncBatchNorm2d, convert_sync_bn
from supernet.training.train import TrainConfig, train

SPACE = """
name: ddp
resolutions: [12, 16]
stem: {widths: [8, 12], stride: 1}
stages:
  - {widths: [8, 16], depths: [1, 2], kernels: [3, 5], expands: [2, 3], stride: 2, se: true}
  - {widths: [16, 24], depths: [1, 2], kernels: [3], expands: [2, 3], stride: 2}
head: {widths: [32, 48]}
num_classes: 10
"""
# Float sums over 2 x 8 images differ from sums over 16 in their last bits: after 4
# steps the weights agree to ~1e-7 (measured), and differ by ~1e-2 without
# SyncBatchNorm, where each process normalises with its own half batch.
ATOL, RTOL = 1e-5, 1e-4


def _setup(tmp_path) -> list[str]:
    (tmp_path / "space.yaml").write_text(SPACE)
    rng = np.random.default_rng(0)
    y = np.arange(80) % 10
    x = (rng.integers(0, 40, (80, 16, 16, 3)) + 20 * y[:, None, None, None]).astype(np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    # 72 training images, global batch 16: 4 steps, each process seeing 8 images a step
    return ["--space", str(tmp_path / "space.yaml"), "--data", f"npz:{tmp_path / 'd.npz'}",
            "--epochs", "1", "--batch-size", "16", "--lr", "0.2", "--warmup-epochs", "0",
            "--dropout", "0", "--calib-images", "16", "--quiet"]


def _torchrun(args: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "supernet.training.cli", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # parameters are channels-last before DDP wraps them: no gradient copies into buckets
    assert "strides do not match" not in done.stderr, done.stderr[-3000:]


def _single(tmp_path, args: list[str], out: str, sync_bn: bool) -> dict:
    a = dict(zip(args[0::2], args[1::2]))  # the flag/value pairs (--quiet comes last)
    n = torch.get_num_threads()
    try:
        path = train(TrainConfig(space=a["--space"], data=a["--data"], epochs=1, batch_size=16,
                                 lr=0.2, warmup_epochs=0, dropout=0.0, calib_images=16,
                                 out=str(tmp_path / out), quiet=True, threads=1,
                                 sync_bn=sync_bn))
    finally:
        torch.set_num_threads(n)
    return read_checkpoint(path)


def _params(ck: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in ck["state_dict"].items()
            if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def test_sync_bn_keeps_the_state_and_acts_as_plain_bn_in_one_process(tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE)
    space = load_space(str(tmp_path / "space.yaml"))
    torch.manual_seed(0)
    net = ElasticSupernet(space)
    ref = ElasticSupernet(space)
    ref.load_state_dict(net.state_dict())
    convert_sync_bn(net)
    n_sync = sum(isinstance(m, DynamicSyncBatchNorm2d) for m in net.modules())
    assert n_sync == sum(isinstance(m, torch.nn.BatchNorm2d) for m in ref.modules()) > 0
    assert net.state_dict().keys() == ref.state_dict().keys()
    x, a = torch.randn(4, 3, 16, 16), space.sample(np.random.default_rng(1))
    assert torch.equal(net(x, a), ref(x, a))


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    args = _setup(tmp_path)
    _torchrun([*args, "--out", str(tmp_path / "ddp"), "--sync-bn"])
    ddp = read_checkpoint(tmp_path / "ddp" / "supernet.pt")
    assert ddp["world_size"] == 2 and ddp["completed"] and ddp["step"] == 4
    one = _single(tmp_path, args, "one", sync_bn=True)  # sync_bn is a no-op alone
    assert one["world_size"] == 1
    torch.manual_seed(0)
    init = ElasticSupernet(load_space(str(tmp_path / "space.yaml"))).state_dict()
    p1, p2 = _params(one), _params(ddp)
    for k in p1:
        assert torch.allclose(p1[k], p2[k], atol=ATOL, rtol=RTOL), (k, (p1[k] - p2[k]).abs().max())
    assert max((p1[k] - init[k]).abs().max().item() for k in p1) > 100 * ATOL  # it trained
    assert ddp["history"][0]["loss"] == pytest.approx(one["history"][0]["loss"], rel=1e-4)
