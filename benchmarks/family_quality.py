"""Layer-wise against stage-wise: train `scarlet-tiny` (single path) and `tiny` (sandwich
rule) with the `nas-train` defaults on the same data and epochs, then BN-calibrate 8
seeded random children of each and print their val top-1 and the gap of the means.

    python benchmarks/family_quality.py --data npz:PATH_TO_CIFAR_NPZ --epochs 8

Both runs resume from their checkpoints (`<out>/<space>`), so a second call only
evaluates. The target of issue 16: the layer-wise mean within 5 points of the stage-wise.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from nas_search.evaluator import SupernetEvaluator
from supernet.spaces.space import load_space
from supernet.training.train import TrainConfig, train


def random_children(space_name: str, n: int, seed: int) -> list:
    """`n` distinct seeded random children of a space."""
    space, rng, out = load_space(space_name), np.random.default_rng(seed), []
    while len(out) < n:
        a = space.sample(rng)
        if a not in out:
            out.append(a)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="a data spec, e.g. npz:PATH or cifar10:PATH")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--children", type=int, default=8)
    p.add_argument("--calib-images", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--spaces", default="scarlet-tiny,tiny")
    p.add_argument("--out", default="runs/family_quality")
    args = p.parse_args()

    means = {}
    for name in args.spaces.split(","):
        cfg = TrainConfig(space=name, data=args.data, epochs=args.epochs, seed=args.seed,
                          out=str(Path(args.out) / name), resume=True, quiet=True)
        t0 = time.perf_counter()
        path = train(cfg)
        print(f"{name}: trained {path} ({time.perf_counter() - t0:.0f} s this call)",
              flush=True)
        ev = SupernetEvaluator.from_checkpoint(path, calib_images=args.calib_images,
                                               calib_seed=args.seed)
        archs = random_children(name, args.children, args.seed)
        top1 = ev.evaluate(archs)["top1"].to_numpy() * 100
        for a, t in zip(archs, top1):
            print(f"  {t:6.2f}%  {a}")
        means[name] = float(top1.mean())
        print(f"{name}: mean val top-1 of {len(archs)} random children {means[name]:.2f}% "
              f"(min {top1.min():.2f}, max {top1.max():.2f})", flush=True)
    if len(means) == 2:
        (a, ma), (b, mb) = means.items()
        print(f"gap {a} - {b}: {ma - mb:+.2f} points")


if __name__ == "__main__":
    main()
