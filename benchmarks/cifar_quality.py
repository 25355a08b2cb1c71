"""Are sliced children as good as their stand-alone twins? (BigNAS's claim) Printed tables.

Trains the `tiny` supernet on CIFAR-10 data (`--data`; the figures in docs/benchmarks.md were
measured on a 10,000 / 2,000 image subset of the CIFAR-10 training images, see docs/data.md)
once per training option, slices 8 children from it (smallest, largest, 6 seeded random ones) and
BN-calibrates them, and trains the same 8 architectures alone from scratch on the same
data, epochs, batches and augmentation with the largest child's recipe (label
smoothing, dropout, LR schedule, weight decay, clipping; no distillation). Per child:
sliced / alone / difference of val top-1; over the 8: Kendall tau and Spearman rho
between sliced and alone, and the spread (best minus worst) of each.

The twins do not depend on the supernet's options, so they are trained once and
cached in <out>/twins.json; each option's supernet lives in <out>/<option>/ (resumed
or reused if done). An option is `baseline`, a preset name below, or fields of
TrainConfig (`kd=alpha`, `teacher_warmup=0.5`), several joined by `+`.

    python benchmarks/cifar_quality.py [--epochs 8] [--options baseline,teacher,alpha]
        [--train-images 10000] [--out runs/cifar_quality] --data cifar10:PATH|npz:DIR
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from predictors import rank_metrics
from supernet import ElasticSupernet, load_checkpoint, load_space, macs
from supernet.data.datasets import DataSet, batches, calib_batches, load_data
from supernet.spaces.space import Arch
from supernet.training.config import TrainConfig, check_config, resolved
from supernet.training.evaluation import calibrate_bn, evaluate
from supernet.training.optim import FLOOR_AT, make_scheduler, param_groups
from supernet.training.steps import sandwich_step
from supernet.training.train import train
from supernet.utils import mixed_seed

# Presets of TrainConfig fields.
PRESETS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "teacher": {"teacher_warmup": 0.25},
    "alpha": {"kd": "alpha"},
    "bestup": {"sampling": "best-up"},
    "worstup": {"sampling": "worst-up"},
    "random1": {"num_random": 1},
    "random4": {"num_random": 4},
    "floor1": {"floor_at": 1.0},
    "cosine": {"schedule": "cosine"},
}
# What every run shares: the base of the supernets and the twins' recipe. The options
# are pinned at BigNAS's (whatever TrainConfig's defaults), so `baseline` stays BigNAS.
BASE = dict(space="tiny", batch_size=128, lr=0.2, warmup_epochs=1.0, calib_images=1024,
            resume=True, quiet=True, kd="ce", teacher_warmup=0.0, sampling="uniform",
            floor_at=FLOOR_AT, schedule="exp", num_random=2)


# Fields that do not change how a twin trains (how a run is executed, supernet-only).
NOT_TWINS = ("out", "resume", "quiet", "threads", "workers", "kd", "teacher_warmup",
             "sampling", "candidates", "num_random")


def option_config(base: TrainConfig, option: str) -> TrainConfig:
    """`base` with the fields of `option` (presets and field=value, joined by `+`);
    ValueError naming the bad part."""
    types = {f.name: f.type for f in fields(TrainConfig)}
    over: dict[str, Any] = {}
    for part in option.split("+"):
        if part in PRESETS:
            over.update(PRESETS[part])
            continue
        name, eq, text = part.partition("=")
        if not eq or name not in types or name in ("space", "data", "out", "epochs"):
            raise ValueError(f"--options: {part!r} is not allowed; expected one of "
                             f"{list(PRESETS)} or FIELD=VALUE of a TrainConfig field")
        t = str(types[name])
        try:
            over[name] = (int(text) if t == "int" else float(text) if "float" in t
                          else text)
        except ValueError:
            raise ValueError(f"--options: {part!r} has a bad value for {name} ({t})") from None
    cfg = replace(base, **over)
    check_config(cfg)
    return cfg


def children(space) -> list[tuple[str, Arch]]:
    """Smallest, largest and 6 random children (seed 0), tagged."""
    rng = np.random.default_rng(0)
    return [("min", space.min_arch()), ("max", space.max_arch()),
            *((f"random{i}", space.sample(rng)) for i in range(6))]


def top1(net: ElasticSupernet, arch: Arch, data: DataSet, cfg: TrainConfig) -> float:
    """BN-calibrated val top-1 of one child, as in training and search."""
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    calib = ((x.contiguous(memory_format=fmt), y)
             for x, y in calib_batches(data, cfg.calib_images, 256, cfg.seed))
    calibrate_bn(net, arch, calib, cfg.calib_images)
    val = ((x.contiguous(memory_format=fmt), y) for x, y in batches(data.val, data, 256))
    return evaluate(net, arch, val).top1


def train_alone(arch: Arch, data: DataSet, cfg: TrainConfig) -> ElasticSupernet:
    """Train one child from scratch with the largest child's recipe and the supernet's
    batches (same order and augmentation), no distillation."""
    torch.manual_seed(cfg.seed)
    net = ElasticSupernet(cfg.space)
    steps = len(data.train) // cfg.batch_size
    opt = torch.optim.SGD(param_groups(net, cfg.weight_decay), lr=cfg.lr, momentum=0.9,
                          nesterov=True)
    sched = make_scheduler(opt, cfg.schedule, cfg.epochs * steps,
                           round(cfg.warmup_epochs * steps), steps, cfg.floor_at)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    for epoch in range(cfg.epochs):
        for i, (x, y) in enumerate(batches(data.train, data, cfg.batch_size,
                                           seed=mixed_seed(cfg.seed, epoch), train=True,
                                           drop_last=True)):
            torch.manual_seed(mixed_seed(cfg.seed, epoch * steps + i, 0))  # dropout masks
            # one child: the label loss with smoothing and dropout, nothing distilled
            sandwich_step(net, opt, x.contiguous(memory_format=fmt), y, [arch], cfg,
                          net.space.dropout)
            sched.step()
    return net


def _write_json(path: Path, obj: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def twins(kids: list[tuple[str, Arch]], data: DataSet, cfg: TrainConfig,
          cache: Path) -> dict[str, float]:
    """Val top-1 of each architecture trained alone, from `cache` where it holds the
    same recipe, else trained now (and added to the cache at once)."""
    key = json.dumps({k: v for k, v in asdict(cfg).items() if k not in NOT_TWINS},
                     sort_keys=True)
    saved = json.loads(cache.read_text()) if cache.exists() else {}
    done = saved.get(key, {})
    for tag, arch in kids:
        if str(arch) in done:
            continue
        t = time.perf_counter()
        done[str(arch)] = top1(train_alone(arch, data, cfg), arch, data, cfg)
        saved[key] = done
        _write_json(cache, saved)
        print(f"  twin {tag:8s} {100 * done[str(arch)]:6.2f}%  "
              f"({(time.perf_counter() - t) / 60:.1f} min)", flush=True)
    return {tag: done[str(arch)] for tag, arch in kids}


def subset_data(spec: str, n: int, out: Path, base: int) -> str:
    """A data spec for the first n/classes training images of each class (val kept
    whole), written once as an npz folder under `out`; `spec` itself when n is 0."""
    if not n:
        return spec
    data = load_data(spec, base)
    y = data.train.y.numpy()
    per = n // data.num_classes
    idx = np.sort(np.concatenate([np.flatnonzero(y == c)[:per]
                                  for c in range(data.num_classes)]))
    folder = out / f"data-{len(idx)}"
    if not (folder / "val.npz").exists():
        folder.mkdir(parents=True, exist_ok=True)
        for name, x, yy in (("train", data.train.x[idx], y[idx]),
                            ("val", data.val.x, data.val.y.numpy())):
            tmp = folder / f".{name}.tmp.npz"
            np.savez(tmp, x=x.permute(0, 2, 3, 1).numpy(), y=yy)
            os.replace(tmp, folder / f"{name}.npz")
    return f"npz:{folder}"


def table(option: str, kids, sliced: dict[str, float], alone: dict[str, float],
          space) -> dict[str, float]:
    """Print one option's table; return its summary figures."""
    print(f"\noption {option}")
    print(f"{'child':9s} {'MMACs':>6s} {'sliced':>7s} {'alone':>7s} {'diff':>6s}  arch")
    for tag, arch in kids:
        print(f"{tag:9s} {macs(space, arch) / 1e6:6.2f} {100 * sliced[tag]:6.2f}% "
              f"{100 * alone[tag]:6.2f}% {100 * (sliced[tag] - alone[tag]):+6.2f}  {arch}")
    s = np.array([sliced[t] for t, _ in kids])
    a = np.array([alone[t] for t, _ in kids])
    m = rank_metrics(a, s)
    d = 100 * (s - a)
    out = {"mean_diff": float(d.mean()), "worst_diff": float(d.min()),
           "within3": int((d >= -3).sum()), "tau": m.kendall_tau, "rho": m.spearman_rho,
           "spread_sliced": float(100 * np.ptp(s)), "spread_alone": float(100 * np.ptp(a))}
    print(f"diff mean {out['mean_diff']:+.2f}, worst {out['worst_diff']:+.2f}, "
          f"within 3 points {out['within3']}/{len(kids)}; Kendall tau {m.kendall_tau:.3f}, "
          f"Spearman rho {m.spearman_rho:.3f}; spread sliced {out['spread_sliced']:.2f}, "
          f"alone {out['spread_alone']:.2f} points")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=8, help="supernet and twins (default 8)")
    p.add_argument("--options", default="baseline",
                   help=f"comma-separated; each one of {list(PRESETS)} or FIELD=VALUE, "
                   "joined by + (default baseline)")
    p.add_argument("--data", required=True,
                   help="data spec, e.g. cifar10:PATH (the CIFAR-10 python folder) or npz:DIR "
                   "(see docs/data.md for getting CIFAR-10)")
    p.add_argument("--train-images", type=int, default=0,
                   help="train on the first N/10 images of each class (default 0: all)")
    p.add_argument("--out", default="runs/cifar_quality")
    p.add_argument("--threads", type=int, default=0, help="0: as nas-train")
    p.add_argument("--device", default="cpu")
    p.add_argument("--twins", default="baseline",
                   help="the twins' recipe, as an option (e.g. floor1: the schedule of "
                   "that option for the twins too; default baseline)")
    p.add_argument("--skip-twins", action="store_true",
                   help="sliced children only (no twins trained; no differences)")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    space = load_space(BASE["space"])
    try:
        if a.epochs < 1 or a.train_images < 0:
            raise ValueError(f"--epochs {a.epochs} / --train-images {a.train_images}: "
                             "expected epochs >= 1 and images >= 0")
        spec = subset_data(a.data, a.train_images, out, max(space.resolutions))
        base = resolved(TrainConfig(**BASE, data=spec, epochs=a.epochs, threads=a.threads,
                                    device=a.device))
        cfgs = {o: option_config(base, o) for o in a.options.split(",")}
        twin_cfg = option_config(base, a.twins)
    except ValueError as e:
        print(f"cifar_quality: error: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(base.threads)
    data = load_data(spec, max(space.resolutions), base.seed)
    kids = children(space)
    print(f"CIFAR-10 subset ({len(data.train)} train / {len(data.val)} val), tiny space, "
          f"{a.epochs} epochs, batch {base.batch_size}, lr {base.lr}, "
          f"{base.threads} thread(s); twins: {a.twins}; BN-calibrated val top-1", flush=True)
    if not a.skip_twins:
        t = time.perf_counter()
        alone = twins(kids, data, twin_cfg, out / "twins.json")
        print(f"twins: {(time.perf_counter() - t) / 60:.1f} min (cached in {out}/twins.json)",
              flush=True)
    rows, summary = [], {}
    for option, cfg in cfgs.items():
        t = time.perf_counter()
        cfg = replace(cfg, out=str(out / option.replace("=", "-")))
        net, extra = load_checkpoint(train(cfg))
        sliced = {tag: top1(net, arch, data, cfg) for tag, arch in kids}
        print(f"\nsupernet {option}: {extra['seconds'] / 60:.1f} min of training "
              f"(this call {(time.perf_counter() - t) / 60:.1f} min)", flush=True)
        if a.skip_twins:
            for tag, arch in kids:
                print(f"{tag:9s} {100 * sliced[tag]:6.2f}%  {arch}")
            continue
        summary[option] = table(option, kids, sliced, alone, space)
        rows += [{"option": option, "child": tag, "arch": str(arch), "sliced": sliced[tag],
                  "alone": alone[tag]} for tag, arch in kids]
    if summary:
        print(f"\n{'option':34s} {'mean':>6s} {'worst':>6s} {'<=3':>4s} {'tau':>6s} "
              f"{'rho':>6s} {'spread s/a':>11s}")
        for o, s in summary.items():
            print(f"{o:34s} {s['mean_diff']:+6.2f} {s['worst_diff']:+6.2f} "
                  f"{s['within3']:>2d}/8 {s['tau']:6.3f} {s['rho']:6.3f} "
                  f"{s['spread_sliced']:5.2f}/{s['spread_alone']:5.2f}")
        fd, tmp = tempfile.mkstemp(prefix=".results.", dir=out)
        with os.fdopen(fd, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, out / "results.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
