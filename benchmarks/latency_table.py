"""How well a latency lookup table predicts real latency: build (or reuse) the table of a
space, time seeded exported children whole, print correlation and mean relative error.

    python benchmarks/latency_table.py --space tiny --table runs/latency-tiny.csv
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from predictors.io import write_csv_atomic
from predictors.latency import (
    LatencyTable,
    build_latency_table,
    calibration_archs,
    device_sync,
    measure_ms,
    read_table,
    save_table,
    torch_threads,
)
from supernet import ElasticSupernet, load_space, macs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="tiny")
    ap.add_argument("--table", help="CSV to reuse (missing layers are added) and save")
    ap.add_argument("--children", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved passes over the children, repeats split among them")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--save-children", help="CSV of each child's real, retest and table ms")
    args = ap.parse_args(argv)

    space = load_space(args.space)
    reuse = args.table is not None and Path(args.table).is_file()
    existing = read_table(args.table) if reuse else None
    start = time.perf_counter()
    frame = build_latency_table(space, batch_size=args.batch_size, threads=args.threads,
                                warmup=args.warmup, repeats=args.repeats, device=args.device,
                                existing=existing,
                                progress=True)
    built_s = time.perf_counter() - start
    if args.table:
        save_table(frame, args.table)
    table = LatencyTable(space, frame)

    rng = np.random.default_rng(args.seed)
    calib = set(calibration_archs(space))
    archs: list = []
    while len(archs) < args.children:  # distinct children, none used to fit the constant
        a = space.sample(rng)
        if a not in calib and a not in archs:
            archs.append(a)
    net = ElasticSupernet(space).eval()
    children = [net.export(a).to(args.device) for a in archs]
    inputs = [torch.randn(args.batch_size, 3, a.resolution, a.resolution, device=args.device)
              for a in archs]
    sync = device_sync(args.device)
    per_round = max(1, args.repeats // args.rounds)

    def time_all() -> np.ndarray:
        # round-robin over the children, so a slow spell of the machine hits them all
        # alike instead of a few; each child's figure is the median of its round medians
        rounds = [[measure_ms(c, x, args.warmup, per_round, sync)
                   for c, x in zip(children, inputs)] for _ in range(args.rounds)]
        return np.median(rounds, axis=0)

    with torch_threads(args.threads):
        real, retest = time_all(), time_all()  # the retest shows the noise floor
    pred = np.array([table.predict(a) for a in archs])
    flops = np.array([macs(space, a) for a in archs], dtype=float)
    rel = np.abs(pred - real) / real
    noise = np.abs(retest - real) / real
    if args.save_children:
        write_csv_atomic(pd.DataFrame({"arch": [str(a) for a in archs], "macs": flops,
                                       "real_ms": real, "retest_ms": retest, "table_ms": pred}),
                         args.save_children)

    print(f"space {space.name}, batch {args.batch_size}, threads {args.threads}, "
          f"device {args.device}, torch {torch.__version__}")
    print(f"table: {len(frame) - 1} layer entries, per-network constant "
          f"{table.overhead_ms:+.3f} ms, built in {built_s:.0f} s"
          + (" (reused)" if existing is not None else ""))
    print(f"{len(archs)} exported children (seed {args.seed}), real latency "
          f"{real.min():.2f}..{real.max():.2f} ms, median {np.median(real):.2f} ms "
          f"(retest median {np.median(retest):.2f} ms; {args.rounds} rounds of {per_round})")
    print(f"table vs real: Pearson r {stats.pearsonr(pred, real).statistic:.3f}, "
          f"Kendall tau {stats.kendalltau(pred, real).statistic:.3f}, "
          f"mean relative error {100 * rel.mean():.1f}% (max {100 * rel.max():.1f}%), "
          f"median real/table {np.median(real / pred):.2f}")
    print(f"retest vs real (noise floor): Pearson r {stats.pearsonr(retest, real).statistic:.3f}, "
          f"Kendall tau {stats.kendalltau(retest, real).statistic:.3f}, "
          f"mean relative difference {100 * noise.mean():.1f}%")
    print(f"MACs vs real (for scale): Pearson r {stats.pearsonr(flops, real).statistic:.3f}, "
          f"Kendall tau {stats.kendalltau(flops, real).statistic:.3f}")


if __name__ == "__main__":
    main()
