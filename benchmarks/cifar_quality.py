"""Do sliced children match their stand-alone twins? (BigNAS's claim) Printed figures.

Trains the `tiny` supernet on the CIFAR-10 subset of ../shared/data for a time budget,
then reports the BN-calibrated val top-1 of the smallest, largest and three seeded
random children, next to the smallest and largest child trained alone from scratch
for the same number of epochs with the same recipe (label smoothing, dropout, LR
schedule, batch, weight decay, clipping; no distillation).

    python benchmarks/cifar_quality.py [--minutes 20] [--epochs N] [--out runs/cifar_quality]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from supernet import ElasticSupernet, load_checkpoint, load_space, macs
from supernet.data import DataSet, batches, calib_batches, load_data
from supernet.evaluation import calibrate_bn, evaluate
from supernet.space import Arch
from supernet.train import (
    TrainConfig,
    make_scheduler,
    param_groups,
    resolved,
    sandwich_children,
    sandwich_step,
    train,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _fmt(cfg: TrainConfig):
    return torch.channels_last if cfg.channels_last else torch.contiguous_format


def top1(net: ElasticSupernet, arch: Arch, data: DataSet, cfg: TrainConfig) -> float:
    """BN-calibrated val top-1 of one child, as in training and search."""
    fmt = _fmt(cfg)
    calib = ((x.contiguous(memory_format=fmt), y)
             for x, y in calib_batches(data, cfg.calib_images, 256, cfg.seed))
    calibrate_bn(net, arch, calib, cfg.calib_images)
    val = ((x.contiguous(memory_format=fmt), y) for x, y in batches(data.val, data, 256))
    return evaluate(net, arch, val).top1


def train_alone(arch: Arch, data: DataSet, cfg: TrainConfig) -> ElasticSupernet:
    """Train one child from scratch with the largest child's recipe, no distillation."""
    torch.manual_seed(cfg.seed)
    net = ElasticSupernet(cfg.space)
    steps = len(data.train) // cfg.batch_size
    opt = torch.optim.SGD(param_groups(net, cfg.weight_decay), lr=cfg.lr, momentum=0.9,
                          nesterov=True)
    sched = make_scheduler(opt, cfg.schedule, cfg.epochs * steps,
                           round(cfg.warmup_epochs * steps))
    dropout = net.space.dropout
    for epoch in range(cfg.epochs):
        for x, y in batches(data.train, data, cfg.batch_size, seed=1000 + epoch, train=True,
                            drop_last=True):
            # one child: the label loss with smoothing and dropout, nothing distilled
            sandwich_step(net, opt, x, y, [arch], cfg, dropout)
            sched.step()
    return net


def probe_step_seconds(cfg: TrainConfig, data: DataSet, n: int = 4) -> float:
    """Median seconds of a sandwich step at the configured batch, to size the budget."""
    space = load_space(cfg.space)
    net = ElasticSupernet(space)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, y = next(iter(batches(data.train, data, cfg.batch_size, train=True)))
    ts = []
    for s in range(n + 1):
        t = time.perf_counter()
        sandwich_step(net, opt, x, y, sandwich_children(space, 0, s, cfg.num_random), cfg,
                      space.dropout)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts[1:]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=20.0,
                   help="budget of the supernet training (default 20)")
    p.add_argument("--epochs", type=int, default=None, help="fix the epochs instead")
    p.add_argument("--data", default=f"npz:{DATA}")
    p.add_argument("--out", default="runs/cifar_quality")
    p.add_argument("--threads", type=int, default=0, help="0: as nas-train")
    a = p.parse_args()
    cfg = resolved(TrainConfig(space="tiny", data=a.data, out=str(Path(a.out) / "supernet"),
                               resume=True, threads=a.threads, quiet=True, batch_size=128,
                               lr=0.2, warmup_epochs=1, calib_images=1024))
    torch.set_num_threads(cfg.threads)
    data = load_data(cfg.data, max(load_space(cfg.space).resolutions), cfg.seed)
    epochs = a.epochs
    if epochs is None:
        step = probe_step_seconds(cfg, data)
        epoch_s = step * (len(data.train) // cfg.batch_size) * 1.05  # + per-epoch val
        epochs = max(1, int(a.minutes * 60 / epoch_s))
        print(f"probe: {step:.2f} s per sandwich step -> {epochs} epochs in {a.minutes} min")
    cfg = replace(cfg, epochs=epochs)
    t = time.perf_counter()
    net, extra = load_checkpoint(train(cfg))
    print(f"supernet: {epochs} epochs, {extra['seconds'] / 60:.1f} min "
          f"(this call {(time.perf_counter() - t) / 60:.1f} min)")
    space = net.space
    rng = np.random.default_rng(0)
    rows = [("min", space.min_arch()), ("max", space.max_arch()),
            *((f"random{i}", space.sample(rng)) for i in range(3))]
    sliced = {tag: top1(net, arch, data, cfg) for tag, arch in rows}
    alone = {}
    for tag, arch in rows[:2]:
        t = time.perf_counter()
        alone[tag] = top1(train_alone(arch, data, cfg), arch, data, cfg)
        print(f"stand-alone {tag}: {(time.perf_counter() - t) / 60:.1f} min")
    print(f"\nCIFAR-10 subset ({len(data.train)} train / {len(data.val)} val), tiny space, "
          f"{epochs} epochs, batch {cfg.batch_size}; BN-calibrated val top-1")
    print(f"{'child':8s} {'MMACs':>6s} {'sliced':>7s} {'alone':>7s}  arch")
    for tag, arch in rows:
        al = f"{100 * alone[tag]:6.2f}%" if tag in alone else f"{'-':>7s}"
        print(f"{tag:8s} {macs(space, arch) / 1e6:6.2f} {100 * sliced[tag]:6.2f}% {al}  {arch}")


if __name__ == "__main__":
    main()
