"""Evaluator throughput, printed (not a timed test).

1. BN recalibration of attentive-mbv3's smallest child at 192 px and largest at 288 px on
   64 images in batches of 16: the evaluator's procedure (exported child, channels-last,
   in-place activations, glibc keeping freed memory) against the same recalibration on the
   elastic supernet (`supernet.training.evaluation.calibrate_bn`, default allocator), next to
   AttentiveNAS's own figures given `--reference FILE` (a workload JSON recorded from
   AttentiveNAS's code on the development machine; not shipped with the repository).
2. Children of the trained digits supernet evaluated per minute (BN recalibration on 64
   training images + top-1 on the 270 val images), and the share spent in calibration.

    python benchmarks/evaluator_throughput.py [--supernet runs/digits/supernet.pt] [--threads 1]
        [--reference FILE]

Without a trained checkpoint, part 2 trains the default one first (supernet.training.train).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from nas_search.evaluator import SupernetEvaluator
from supernet import ElasticSupernet, load_space
from supernet.data.datasets import DataSet, Split, normalize, resize
from supernet.training.evaluation import calibrate_bn


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN primitives, allocator
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _random_images(n: int, size: int, classes: int) -> DataSet:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    split = Split(x, torch.randint(0, classes, (n,), generator=g))
    return DataSet("random", split, split, None, classes, (0.485, 0.456, 0.406),
                   (0.229, 0.224, 0.225), False, 0)


def bn_recalibration(repeats: int, reference: Path | None) -> None:
    space = load_space("attentive-mbv3")
    torch.manual_seed(0)
    net = ElasticSupernet(space).eval()
    data = _random_images(64, 288, space.num_classes)
    cases = [("min", dataclasses.replace(space.min_arch(), resolution=192)),
             ("max", dataclasses.replace(space.max_arch(), resolution=288))]
    ref = {}
    if reference is not None:
        ref = json.loads(reference.read_text())["reference"]["bn_recalibration_64_images_s"]
    # the elastic supernet first: the evaluator changes the allocator for the whole process
    base = {}
    for tag, arch in cases:
        x = resize(normalize(data.train.x, data), arch.resolution)
        loader = [(x[i:i + 16], None) for i in range(0, 64, 16)]
        base[tag] = _median_time(partial(calibrate_bn, net, arch, loader, 64), repeats)
    ev = SupernetEvaluator(net, data, calib_images=64, batch_size=16, device="cpu")
    print(f"BN recalibration, attentive-mbv3, 64 images, batch 16, {torch.get_num_threads()} "
          f"threads (median of {repeats} after a warm-up)")
    print(f"{'child':<14}{'evaluator':>11}{'supernet':>11}{'AttentiveNAS':>14}{'ratio':>8}")
    for tag, arch in cases:
        # the evaluator resizes its uint8 calibration images per child: that cost is in
        ours = _median_time(partial(ev.calibrated_child, arch), repeats)
        key = f"{tag}_child_{arch.resolution}"
        theirs = ref.get(key, float("nan"))
        print(f"{tag + ' @' + str(arch.resolution) + ' px':<14}{ours:>10.2f}s{base[tag]:>10.2f}s"
              f"{theirs:>13.2f}s{ours / theirs:>8.2f}")


def digits_throughput(ckpt: Path, children: int, threads: int | None) -> None:
    ev = SupernetEvaluator.from_checkpoint(ckpt, device="cpu", threads=threads)
    rng = np.random.default_rng(0)
    archs = [ev.space.sample(rng) for _ in range(children)]
    ev.evaluate(archs[:3])  # warm-up
    t = time.perf_counter()
    table = ev.evaluate(archs)
    wall = time.perf_counter() - t
    share = table["calib_time_s"].sum() / table["eval_time_s"].sum()
    print(f"\ndigits supernet ({ckpt}), {ev.name}, {threads or torch.get_num_threads()} "
          f"threads: {children} random children in {wall:.1f} s "
          f"= {60 * children / wall:.0f} children/min; BN calibration {100 * share:.0f}% of "
          f"evaluation time; mean top-1 {100 * table['top1'].mean():.2f}% "
          f"(min {100 * table['top1'].min():.2f}%)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--supernet", default="runs/digits/supernet.pt")
    p.add_argument("--children", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0,
                   help="digits part: CPU threads per evaluation (0: torch's default; "
                        "nas-search uses 1)")
    p.add_argument("--reference", type=Path, default=None, metavar="FILE",
                   help="AttentiveNAS workload JSON with reference timings (optional)")
    args = p.parse_args()
    bn_recalibration(args.repeats, args.reference)
    ckpt = Path(args.supernet)
    if not ckpt.is_file():
        from supernet.training.train import TrainConfig, train

        ckpt = train(TrainConfig(out=ckpt.parent))
    digits_throughput(ckpt, args.children, args.threads or None)


if __name__ == "__main__":
    main()
