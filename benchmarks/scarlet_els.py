"""ELS ablation (SCARLET-NAS, supplement section 3.3): train `scarlet-tiny` with ELS and
with pure skips on the same data, budget and seed, then BN-calibrate and evaluate the same
children in both supernets and print their val top-1 side by side.

    nice python benchmarks/scarlet_els.py --data digits --epochs 8
    nice python benchmarks/scarlet_els.py --data npz:DIR --epochs 4   # or cifar10:PATH

`--data` takes any data spec (default digits; docs/data.md says how to get CIFAR-10).

Both runs resume from their checkpoints (`<out>/els`, `<out>/no-els`), so a second call
only evaluates. The children: the smallest (every layer a skip), the largest (every
layer e6k7) and seeded random ones.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from nas_search.evaluator import SupernetEvaluator
from supernet.spaces.cost import macs
from supernet.spaces.space import load_space
from supernet.training.train import TrainConfig, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="scarlet-tiny")
    p.add_argument("--data", default="digits",
                   help="data spec: digits (default), cifar10:PATH, npz:PATH, folder:PATH")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--warmup-epochs", type=float, default=0.3)
    p.add_argument("--schedule", default="cosine", help="exp or cosine (a short run: cosine)")
    p.add_argument("--children", type=int, default=8)
    p.add_argument("--calib-images", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/scarlet_els")
    args = p.parse_args()

    space = load_space(args.space)
    rng = np.random.default_rng(args.seed)
    archs = [space.min_arch(), space.max_arch()]
    while len(archs) < args.children:
        a = space.sample(rng)
        if a not in archs:
            archs.append(a)
    cols = {}
    for tag, els in (("els", True), ("no-els", False)):
        cfg = TrainConfig(space=args.space, data=args.data, epochs=args.epochs,
                          batch_size=args.batch_size, seed=args.seed, els=els, lr=args.lr,
                          warmup_epochs=args.warmup_epochs, schedule=args.schedule,
                          out=str(Path(args.out) / tag), resume=True, quiet=True)
        t0 = time.perf_counter()
        path = train(cfg)
        print(f"{tag}: trained {path} ({time.perf_counter() - t0:.0f} s this call)", flush=True)
        ev = SupernetEvaluator.from_checkpoint(path, calib_images=args.calib_images,
                                               calib_seed=args.seed)
        cols[tag] = ev.evaluate(archs)["top1"].to_numpy() * 100
    els_space = load_space(args.space)
    table = pd.DataFrame({
        "child": [str(a) for a in archs],
        "MMACs (ELS)": [macs(els_space, a) / 1e6 for a in archs],
        "top1 ELS %": cols["els"], "top1 pure skip %": cols["no-els"],
    })
    table["ELS - pure"] = table["top1 ELS %"] - table["top1 pure skip %"]
    pd.set_option("display.width", 200)
    pd.set_option("display.max_colwidth", 80)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    tau = kendalltau(table["top1 ELS %"], table["top1 pure skip %"]).statistic
    print(f"mean top-1: ELS {table['top1 ELS %'].mean():.2f}%  pure skip "
          f"{table['top1 pure skip %'].mean():.2f}%  (ratio "
          f"{table['top1 ELS %'].mean() / max(table['top1 pure skip %'].mean(), 1e-9):.2f}x); "
          f"ELS better on {(table['ELS - pure'] > 0).sum()}/{len(table)} children; "
          f"Kendall tau between the two rankings {tau:.2f}")


if __name__ == "__main__":
    main()
