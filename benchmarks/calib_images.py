"""How many images BN recalibration needs: the measured default of `--calib-images`.

On the tiny supernet trained on CIFAR-10 data (measured on a 10,000 / 2,000 image subset
of the CIFAR-10 training images, see docs/data.md), the same 50 random children are
calibrated on two disjoint subsets of training images, for 64, 256, 1024 and 4096 images,
and scored on the val images. Printed per size: the Kendall tau between the two rankings
and the mean absolute top-1 difference (points). The default is the smallest size whose
mean difference is at most 0.25 points.

    python benchmarks/calib_images.py --data cifar10:PATH | npz:DIR
    python benchmarks/calib_images.py --supernet runs/cifar-tiny/supernet.pt

Without --supernet it trains one first on --data (8 epochs, cached under runs/cifar-tiny).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

from nas_search.evaluator import SupernetEvaluator
from supernet.checkpoint import load_checkpoint
from supernet.data.datasets import load_data
from supernet.training.train import TrainConfig, train

SIZES = (64, 256, 1024, 4096)
TARGET = 0.25  # points of top-1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supernet", default=None,
                    help="a trained checkpoint (default: train the tiny supernet on --data)")
    ap.add_argument("--data", default=None,
                    help="data spec to train on without --supernet: cifar10:PATH, npz:PATH, "
                         "folder:PATH (see docs/data.md for getting CIFAR-10)")
    ap.add_argument("--children", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    args = ap.parse_args()
    if args.supernet is None and args.data is None:
        ap.error("give --data SPEC to train the supernet on (e.g. cifar10:PATH or npz:DIR; "
                 "see docs/data.md), or --supernet CKPT")
    torch.set_num_threads(args.threads)
    ckpt = args.supernet or str(train(TrainConfig(
        data=args.data, epochs=8, out="runs/cifar-tiny", threads=args.threads)))
    net, extra = load_checkpoint(ckpt)
    data = load_data(extra["data"], net.space.base_resolution, int(extra.get("seed", 0)))
    rng = np.random.default_rng(0)
    archs = list(dict.fromkeys(net.space.sample(rng) for _ in range(args.children)))
    sizes = [int(s) for s in args.sizes.split(",")]
    perm = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))
    print(f"{Path(ckpt)}: {len(archs)} random children, {len(data.val)} val images; "
          f"two disjoint calibration subsets per size")
    print(f"{'images':>7} {'tau':>6} {'mean |diff|':>12} {'max |diff|':>11} "
          f"{'top-1 spread':>13} {'s/child':>8}")
    chosen = None
    for n in sizes:
        if 2 * n > len(perm):
            print(f"{n:>7}  skipped: needs {2 * n} training images, {len(perm)} there")
            continue
        tops = []
        t = time.perf_counter()
        for part in (perm[:n], perm[n:2 * n]):
            ev = SupernetEvaluator(net, data, calib_images=n, calib_indices=part.tolist(),
                                   device="cpu", threads=args.threads)
            tops.append(100 * ev.evaluate(archs)["top1"].to_numpy())
        secs = (time.perf_counter() - t) / (2 * len(archs))
        diff = np.abs(tops[0] - tops[1])
        tau = kendalltau(tops[0], tops[1]).statistic
        spread = tops[0].max() - tops[0].min()
        print(f"{n:>7} {tau:6.3f} {diff.mean():12.3f} {diff.max():11.2f} {spread:13.2f} "
              f"{secs:8.2f}")
        if chosen is None and diff.mean() <= TARGET:
            chosen = n
    print(f"smallest size with mean |diff| <= {TARGET} points: {chosen}")


if __name__ == "__main__":
    main()
