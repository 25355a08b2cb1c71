"""fp32 against int8 children of a trained supernet, side by side: top-1 and onnxruntime
latency of 8 children (the smallest, the largest and 6 seeded random ones).

    python benchmarks/int8_children.py --supernet runs/supernet/supernet.pt [--data SPEC]
    python benchmarks/int8_children.py            # trains the digits tiny supernet first

Per child, as the search and `nas-export --quantize int8` compute them:
- fp32 top-1: the child in torch, BN statistics recalibrated on the calibration images
  (`calibrated_child` over `child_images`: the evaluator's default count, at most the
  training split), scored on the val images;
- int8 top-1: onnxruntime's static int8 quantization of that child's ONNX model
  (`supernet.nn.deploy.quantize_int8`: QDQ, per-channel int8 weights, uint8 activations,
  MinMax), calibrated on the first 256 calibration images, scored with `ort_scores` on the
  same val images; the fp32 ONNX model's top-1 is printed too (it should equal torch's);
- latency: the fp32 and the int8 ONNX model in onnxruntime (`supernet.nn.deploy.measure`:
  batch 1, 1 thread pinned, the median of the repeats), alternated over --rounds rounds so
  a busy spell of the machine hits both alike; each figure is the median of the round
  medians, and the spread column is (max - min) / median of those.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nas_search.evaluator import CALIB_IMAGES, QUANT_IMAGES, default_calib_images
from supernet import macs
from supernet.checkpoint import checkpoint_data, load_checkpoint, read_checkpoint
from supernet.nn.deploy import check_runtime, measure, onnx_bytes, ort_scores, quantize_int8
from supernet.training.calibrate import calibrated_child, child_images
from supernet.training.evaluation import evaluate
from supernet.utils import torch_threads


def default_supernet(out: Path) -> Path:
    """The digits tiny supernet (`nas-train`'s defaults), trained into `out` unless there."""
    from supernet.training.train import TrainConfig, train

    path = out / "supernet.pt"
    if path.is_file() and read_checkpoint(path).get("completed"):
        return path
    return Path(train(TrainConfig(out=out, quiet=False)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--supernet", help="checkpoint (default: train the digits tiny supernet "
                                       "into --out)")
    ap.add_argument("--out", default="runs/bench/digits-tiny")
    ap.add_argument("--data", help="data spec (default: the checkpoint's)")
    ap.add_argument("--children", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calib-images", type=int, help="BN calibration images (default: the "
                                                     "evaluator's, at most the training split)")
    ap.add_argument("--quant-images", type=int, default=QUANT_IMAGES)
    ap.add_argument("--val-images", type=int, help="default: all of val")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--save", help="CSV of the table")
    args = ap.parse_args(argv)
    check_runtime("onnxruntime", "int8")

    ckpt = Path(args.supernet) if args.supernet else default_supernet(Path(args.out))
    net, extra = load_checkpoint(ckpt)
    spec, data = checkpoint_data(net.space, extra, args.data)
    space = net.space
    calib = min(args.calib_images or default_calib_images(extra) or CALIB_IMAGES,
                len(data.train))
    images = child_images(data, calib, val_images=args.val_images)
    rng = np.random.default_rng(args.seed)
    archs = list(dict.fromkeys([space.min_arch(), space.max_arch()]
                               + [space.sample(rng) for _ in range(args.children - 2)]))
    print(f"supernet {ckpt} (space {space.name}, data {spec}): BN calibration on {calib} "
          f"training images, int8 calibration on the first {args.quant_images}, top-1 on "
          f"{len(images.val_split)} val images; onnxruntime batch 1, {args.threads} "
          "thread(s)", flush=True)

    rows = []
    t0 = time.perf_counter()
    with torch_threads(args.threads):
        for i, arch in enumerate(archs):
            label = "smallest" if i == 0 else "largest" if i == 1 else f"random {i - 1}"
            child = calibrated_child(net, arch, images)
            top1 = evaluate(child, arch, images.val_batches(arch.resolution)).top1
            fp32 = onnx_bytes(child.cpu(), arch.resolution)
            t = time.perf_counter()
            q = quantize_int8(fp32, images.calib_arrays(arch.resolution, args.quant_images))
            quant_s = time.perf_counter() - t

            def val() -> object:
                for x, y in images.val_batches(arch.resolution):  # noqa: B023
                    yield x.contiguous().cpu().numpy(), y.cpu().numpy()

            top1_onnx = ort_scores(fp32, val(), args.threads)[0]
            top1_q = ort_scores(q, val(), args.threads)[0]
            per_round = max(1, args.repeats // args.rounds)
            lat: dict[str, list[float]] = {"fp32": [], "int8": []}
            for _ in range(args.rounds):
                for name, model in (("fp32", fp32), ("int8", q)):
                    m = measure(None, arch.resolution, runtime="onnxruntime", threads=args.threads,
                                repeats=per_round, model=model)
                    lat[name].append(m.ms)
            med = {k: float(np.median(v)) for k, v in lat.items()}
            rows.append({
                "child": label, "arch": str(arch), "macs": macs(space, arch),
                "fp32_top1": top1, "fp32_onnx_top1": top1_onnx, "int8_top1": top1_q,
                "fp32_ms": med["fp32"], "int8_ms": med["int8"],
                "fp32_spread": float(np.ptp(lat["fp32"]) / med["fp32"]),
                "int8_spread": float(np.ptp(lat["int8"]) / med["int8"]),
                "fp32_bytes": len(fp32), "int8_bytes": len(q), "quantize_s": quant_s})
            print(f"  {label}: done ({time.perf_counter() - t0:.0f} s so far)", flush=True)
    table = pd.DataFrame(rows)
    if args.save:
        table.to_csv(args.save, index=False)

    print("\n| child | MACs | fp32 top-1 | int8 top-1 | change | fp32 ms | int8 ms | "
          "int8 speed-up | size fp32 / int8 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['child']} | {r['macs'] / 1e6:.2f} M | {100 * r['fp32_top1']:.2f}% | "
              f"{100 * r['int8_top1']:.2f}% | {100 * (r['int8_top1'] - r['fp32_top1']):+.2f} | "
              f"{r['fp32_ms']:.3f} (±{100 * r['fp32_spread']:.0f}%) | "
              f"{r['int8_ms']:.3f} (±{100 * r['int8_spread']:.0f}%) | "
              f"{r['fp32_ms'] / r['int8_ms']:.2f}x | "
              f"{r['fp32_bytes'] / 1e3:.0f} / {r['int8_bytes'] / 1e3:.0f} kB |")
    d = table["int8_top1"] - table["fp32_top1"]
    onnx_gap = (table["fp32_onnx_top1"] - table["fp32_top1"]).abs().max()
    print(f"\nint8 - fp32 top-1: mean {100 * d.mean():+.2f} points, worst {100 * d.min():+.2f}; "
          f"int8 speed-up median {np.median(table['fp32_ms'] / table['int8_ms']):.2f}x "
          f"(range {(table['fp32_ms'] / table['int8_ms']).min():.2f}-"
          f"{(table['fp32_ms'] / table['int8_ms']).max():.2f}x); fp32 ONNX top-1 differs from "
          f"torch's by at most {100 * onnx_gap:.2f} points; {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
