"""Image folders streamed from disk: the papers' crops, determinism whatever the number of
workers and processes, unreadable images, disjoint DDP shards, bit-identical resume,
and an ImageNet space trained from a folder on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from supernet.checkpoint import read_checkpoint
from supernet.data.datasets import batches, calib_batches, images, load_data
from supernet.data.folder import centre_box, rrc_box
from supernet.training.cli import main
from supernet.training.train import TrainConfig, train


def _photos(root, per_class=(4, 2), size=(64, 48), classes=("ant", "bee"), fmt="JPEG"):
    """A folder of noisy photos whose mean colour tells the class."""
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "val"), per_class):
        for ci, c in enumerate(classes):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                base = np.array([200, 40, 40] if ci == 0 else [40, 40, 200], dtype=np.int64)
                px = np.clip(base + rng.integers(-30, 30, (size[1], size[0], 3)), 0, 255)
                ext = "jpg" if fmt == "JPEG" else "png"
                Image.fromarray(px.astype(np.uint8)).save(root / split / c / f"{i}.{ext}", fmt)
    return root


def _id_folder(root, n=24, size=20):
    """Solid-colour images whose colour encodes their id: any crop or flip keeps it."""
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
    for i in range(n):
        c = "a" if i % 2 else "b"
        Image.new("RGB", (size, size), (i, 255 - i, 7)).save(root / "train" / c / f"{i:03}.png")
    Image.new("RGB", (size, size), (0, 0, 0)).save(root / "val" / "a" / "0.png")
    Image.new("RGB", (size, size), (0, 0, 0)).save(root / "val" / "b" / "0.png")
    return root


def _ids(d, x: torch.Tensor) -> list[int]:
    mean = torch.tensor(d.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(d.std).view(1, 3, 1, 1) * 255
    raw = (x * std + mean).round()
    return raw[:, 0, 8, 8].long().tolist()


def test_random_resized_crop_box_stays_inside_and_spans_the_published_ranges():
    g = torch.Generator().manual_seed(0)
    areas, ratios = [], []
    for _ in range(2000):
        x0, y0, w, h = rrc_box(320, 240, torch.rand(4, generator=g))
        assert 0 <= x0 and 0 <= y0 and x0 + w <= 320 and y0 + h <= 240 and w >= 1 and h >= 1
        areas.append(w * h / (320 * 240))
        ratios.append(w / h)
    assert min(areas) < 0.1 and max(areas) > 0.9  # 8%..100% of the area
    assert 0.7 < np.median(ratios) < 1.4
    assert centre_box(256, 320) == (16, 48, 224, 224)  # 87.5% of the shorter side: 224 of 256


def test_photos_train_with_random_resized_crops_and_eval_with_the_centre_crop(tmp_path):
    root = _photos(tmp_path / "p", size=(300, 260))
    d = load_data(f"folder:{root}", 128)
    assert d.streamed and d.crop == "rrc" and d.base == 128
    a = list(batches(d.train, d, 4, seed=1, train=True))
    assert all(x.shape == (4, 3, 128, 128) for x, _ in a)
    again = list(batches(d.train, d, 4, seed=1, train=True, workers=2))
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, again))
    other = list(batches(d.train, d, 4, seed=2, train=True))
    assert not torch.equal(a[0][0], other[0][0])
    ev = list(batches(d.val, d, 4))
    assert torch.equal(ev[0][0], list(batches(d.val, d, 4))[0][0])  # eval: no randomness
    x, y = images(d.val, d)
    red = x[y == 0].float().mean((0, 2, 3))
    assert red[0] > 150 and red[2] < 90  # labels follow the sorted class folders


def test_ranks_decode_their_own_rows_of_one_global_batch(tmp_path):
    root = _photos(tmp_path / "p", size=(200, 150))
    d = load_data(f"folder:{root}", 128)
    whole = list(batches(d.train, d, 8, seed=3, train=True, drop_last=True))
    parts = [list(batches(d.train, d, 8, seed=3, train=True, drop_last=True, rank=r, world=2))
             for r in (0, 1)]
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *parts):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)


def test_an_unreadable_image_is_skipped_and_named(tmp_path, capfd):
    root = _photos(tmp_path / "p", size=(40, 40), fmt="PNG")
    bad = root / "train" / "bee" / "1.png"
    bad.write_bytes(b"not a png")
    d = load_data(f"folder:{root}", 32)
    got = [y for _, y in batches(d.train, d, 8, seed=0, train=True)]
    assert sum(len(y) for y in got) == 7  # one of the 8 skipped, never mislabelled
    assert str(bad) in capfd.readouterr().err
    x, y = next(calib_batches(d, 8, 8))
    assert len(y) == 7


def test_shards_of_two_gloo_processes_are_disjoint_and_cover_the_epoch(tmp_path):
    root = _id_folder(tmp_path / "ids")
    script = tmp_path / "shard.py"
    script.write_text(f"""
import json, os, torch, torch.distributed as dist
from supernet.data.datasets import batches, load_data
dist.init_process_group("gloo")
r, w = dist.get_rank(), dist.get_world_size()
d = load_data("folder:{root}", 16)
mean = torch.tensor(d.mean).view(1, 3, 1, 1) * 255
std = torch.tensor(d.std).view(1, 3, 1, 1) * 255
ids = []
for x, y in batches(d.train, d, 8, seed=11, train=True, drop_last=True, rank=r, world=w,
                    workers=1):
    ids += (x * std + mean).round()[:, 0, 8, 8].long().tolist()
got = [None] * w
dist.all_gather_object(got, ids)
if r == 0:
    json.dump(got, open("{tmp_path / 'ids.json'}", "w"))
dist.destroy_process_group()
""")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", str(script)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    shard0, shard1 = json.loads((tmp_path / "ids.json").read_text())
    assert len(shard0) == len(shard1) == 12 and not set(shard0) & set(shard1)
    assert sorted(shard0 + shard1) == list(range(24))  # the epoch: every image once
    d = load_data(f"folder:{root}", 16)  # the same global order as one process reads
    one = [i for x, _ in batches(d.train, d, 8, seed=11, train=True, drop_last=True)
           for i in _ids(d, x)]
    assert one == [i for k in range(3) for i in shard0[4 * k:4 * k + 4] + shard1[4 * k:4 * k + 4]]


SMALL = """
name: small
resolutions: [12, 16]
stem: {widths: [8], stride: 1, act: swish}
stages:
  - {widths: [8, 16], depths: [1, 2], kernels: [3], expands: [2], stride: 2}
  - {widths: [16], depths: [1, 2], kernels: [3], expands: [2, 3], stride: 2}
head: {widths: [32]}
num_classes: 10
"""


def test_streamed_training_with_workers_resumes_bit_identical(tmp_path, monkeypatch):
    root = _photos(tmp_path / "p", per_class=(16, 4), size=(24, 20), fmt="PNG")
    (tmp_path / "s.yaml").write_text(SMALL)
    cfg = dict(space=str(tmp_path / "s.yaml"), data=f"folder:{root}", epochs=2, batch_size=8,
               lr=0.1, warmup_epochs=0, calib_images=8, quiet=True, threads=1, workers=2)
    full = read_checkpoint(train(TrainConfig(**cfg, out=str(tmp_path / "full"))))
    assert full["space"]["num_classes"] == 2  # the classifier follows the data
    real = train.__globals__["save_checkpoint"]
    calls = []

    def stop_after_first(*a, **k):
        real(*a, **k)
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr("supernet.training.train.save_checkpoint", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**cfg, out=str(tmp_path / "cut")))
    monkeypatch.setattr("supernet.training.train.save_checkpoint", real)
    done = read_checkpoint(train(TrainConfig(**cfg, out=str(tmp_path / "cut"), resume=True)))
    assert done["completed"] and calls == [1]
    for k, v in full["state_dict"].items():
        assert torch.equal(v, done["state_dict"][k]), k
    # the search reads the same folder back: 2 classes, streamed val, no refusal
    from nas_search.evaluator import SupernetEvaluator

    ev = SupernetEvaluator.from_checkpoint(tmp_path / "full" / "supernet.pt", calib_images=8,
                                           device="cpu", workers=1)
    assert ev.data.streamed and ev.space.num_classes == 2
    row = ev.evaluate([ev.space.max_arch()]).iloc[0]
    assert 0 <= row["top1"] <= 1 and np.isfinite(row["loss"])


def test_attentive_mbv3_trains_one_epoch_from_a_folder_on_the_cpu(tmp_path, capsys):
    root = _photos(tmp_path / "p", per_class=(2, 1), size=(256, 256))
    out = tmp_path / "run"
    code = main(["--space", "attentive-mbv3", "--data", f"folder:{root}", "--epochs", "1",
                 "--workers", "2", "--batch-size", "2", "--calib-images", "2", "--out", str(out),
                 "--threads", "1", "--quiet"])
    assert code == 0, capsys.readouterr().err
    ck = read_checkpoint(out / "supernet.pt")
    assert ck["completed"] and ck["step"] == 2 and ck["space"]["num_classes"] == 2
    assert ck["space"]["base_resolution"] == 224
    assert "BN-calibrated val top-1" in capsys.readouterr().out


def test_a_converted_supernets_preprocessing_is_how_its_images_are_prepared(tmp_path):
    from supernet import load_space
    from supernet.checkpoint import checkpoint_data

    _photos(tmp_path, size=(96, 80), fmt="PNG")
    from dataclasses import replace

    # photos at a base of 224 (a small base treats a folder like CIFAR: no eval crop)
    space = replace(load_space("attentive-mbv3"), num_classes=2)
    pre = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "crop_ratio": 0.5,
           "resize_interpolation": "bilinear"}
    _, plain = checkpoint_data(space, {}, f"folder:{tmp_path}")
    _, theirs = checkpoint_data(space, {"preprocessing": pre}, f"folder:{tmp_path}")
    assert (plain.mean, plain.crop_fraction, plain.resample) == (
        (0.485, 0.456, 0.406), 0.875, "bicubic")
    assert (theirs.mean, theirs.std, theirs.crop_fraction, theirs.resample) == (
        (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 0.5, "bilinear")
    a, b = images(plain.val, plain)[0], images(theirs.val, theirs)[0]
    assert a.shape == b.shape and not torch.equal(a, b)  # another crop, another filter
    with pytest.raises(ValueError, match="resize_interpolation 'lanczos' is not supported"):
        checkpoint_data(space, {"preprocessing": {"resize_interpolation": "lanczos"}},
                        f"folder:{tmp_path}")
