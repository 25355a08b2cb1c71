"""What one child of a converted ImageNet supernet costs to evaluate on this machine: BN
recalibration and top-1 on a folder of 224 px images (generated when no --data is given),
per image, for the smallest and largest child, projected to the authors' calibration
recipe and to ImageNet's 50,000 val images.

    python benchmarks/converted_child_cost.py --supernet conv/supernet.pt [--data folder:DIR]
        [--images 64] [--threads 1]

ImageNet is not needed: the cost does not depend on what the pixels show.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nas_search.evaluator import SupernetEvaluator, default_calib_images
from supernet import load_checkpoint, macs
from supernet.training.calibrate import calibrated_child
from supernet.training.evaluation import evaluate
from supernet.utils import torch_threads

VAL_IMAGES = 50_000  # ImageNet's val split


def _folder(root: Path, classes: int, per_class: int) -> Path:
    """train/ and val/ folders of random 256x320 JPEGs, `classes` classes."""
    g = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(classes):
            d = root / split / f"n{c:08d}"
            d.mkdir(parents=True)
            for i in range(per_class):
                px = g.integers(0, 256, (256, 320, 3), dtype=np.uint8)
                Image.fromarray(px).save(d / f"{i}.JPEG", "JPEG", quality=90)
    return root


def main(argv: list[str] | None = None) -> None:
    """Print the per-image cost of the smallest and largest child and the projections."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--supernet", required=True, help="a converted checkpoint (nas-convert)")
    ap.add_argument("--data", help="folder:DIR of 1000 classes (default: generated)")
    ap.add_argument("--images", type=int, default=64, help="calibration and val images timed")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    net, extra = load_checkpoint(args.supernet)
    space = net.space
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or f"folder:{_folder(Path(tmp), space.num_classes, 1)}"
        ev = SupernetEvaluator.from_checkpoint(args.supernet, data=data, device="cpu",
                                               calib_images=args.images,
                                               val_images=args.images, threads=args.threads)
        recipe = default_calib_images(extra)
        print(f"{space.name}: {args.images} calibration and val images per child, "
              f"{args.threads} thread(s), {torch.get_num_threads()} torch threads available")
        print(f"{'child':<9} {'res':>4} {'MMACs':>7} {'calib ms/img':>13} {'val ms/img':>11} "
              f"{f'calib x{recipe}':>14} {'val x50k':>10}")
        for name, arch in (("smallest", space.min_arch()), ("largest", space.max_arch())):
            with torch_threads(args.threads):
                calibrated_child(ev.net, arch, ev.images)  # warm-up: first-call costs
                t = time.perf_counter()
                child = calibrated_child(ev.net, arch, ev.images)
                calib = (time.perf_counter() - t) / len(ev.images.calib)
                t = time.perf_counter()
                res = evaluate(child, arch, ev.images.val_batches(arch.resolution))
                val = (time.perf_counter() - t) / res.n
            print(f"{name:<9} {arch.resolution:>4} {macs(space, arch) / 1e6:>7.1f} "
                  f"{1e3 * calib:>13.1f} {1e3 * val:>11.1f} {recipe * calib / 60:>12.1f} m "
                  f"{VAL_IMAGES * val / 3600:>8.2f} h")


if __name__ == "__main__":
    main()
