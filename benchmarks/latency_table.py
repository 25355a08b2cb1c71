"""How well a latency lookup table predicts real latency: build (or reuse) the table of a
space in torch or onnxruntime, time seeded exported children whole in the same runtime,
print Pearson r, mean absolute percentage error and the share within +-10%.

    python benchmarks/latency_table.py --space tiny --table runs/latency-tiny.csv
    python benchmarks/latency_table.py --space attentive-mbv3 --runtime onnxruntime \
        --layers children --clock cpu --table runs/latency-attentive-ort.csv

Whole children are timed in rounds (round-robin over the children, repeats split among
the rounds, each child's figure the median of its round medians), twice: the retest
against the first pass is the noise floor. In onnxruntime each child is timed with
`supernet.nn.deploy.measure` (wall clock, the median of repeated batch-1 runs in a session
with pinned threads: what a search with --latency-runtime onnxruntime records) and, with
--clock cpu, also in the calling thread's CPU time, which the time slices of other
processes on a shared machine do not inflate (one thread only).

--layers children builds the table from the layers of the timed children and of the
children that fit the per-network constant only (a lazy table: each entry is still one
distinct layer timed once, whichever child it came from); --layers all, every layer of the
space (what `nas-search --latency-table` needs).

nn-Meter (Zhang et al., MobiSys 2021) publishes 99% of CPU predictions within +-10%; the
target here is 90%.
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
    clock_timer,
    device_sync,
    measure_ms,
    read_table,
    save_table,
    torch_threads,
)
from supernet import ElasticSupernet, load_space, macs
from supernet.nn.deploy import measure, onnx_bytes, ort_session


def accuracy(pred: np.ndarray, real: np.ndarray) -> str:
    """Pearson r, MAPE and the share within +-10% of `pred` against `real`."""
    rel = np.abs(pred - real) / real
    return (f"Pearson r {stats.pearsonr(pred, real).statistic:.3f}, "
            f"Kendall tau {stats.kendalltau(pred, real).statistic:.3f}, "
            f"MAPE {100 * rel.mean():.1f}% (max {100 * rel.max():.1f}%), "
            f"within +-10% {100 * np.mean(rel <= 0.10):.0f}%, "
            f"median real/pred {np.median(real / pred):.3f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="tiny")
    ap.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="the table's clock (cpu: the thread's CPU time, one thread only); "
                         "with cpu, children are also timed whole in CPU time")
    ap.add_argument("--layers", choices=("all", "children"), default="all",
                    help="time every layer of the space, or only those of the children "
                         "timed here (and of the constant's)")
    ap.add_argument("--table", help="CSV to reuse (missing layers are added) and save")
    ap.add_argument("--children", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved passes over the children, repeats split among them")
    ap.add_argument("--device", default="cpu", help="torch's device (torch runtime only)")
    ap.add_argument("--save-children", help="CSV of each child's real, retest and table ms")
    ap.add_argument("--reuse-children", metavar="CSV",
                    help="the whole-child timings of an earlier run's --save-children (same "
                         "space, seed and children) instead of timing them again")
    args = ap.parse_args(argv)

    space = load_space(args.space)
    ort = args.runtime == "onnxruntime"
    rng = np.random.default_rng(args.seed)
    calib = set(calibration_archs(space))
    archs: list = []
    while len(archs) < args.children:  # distinct children, none used to fit the constant
        a = space.sample(rng)
        if a not in calib and a not in archs:
            archs.append(a)

    reuse = args.table is not None and Path(args.table).is_file()
    existing = read_table(args.table) if reuse else None
    start = time.perf_counter()
    frame = build_latency_table(
        space, None if args.layers == "all" else archs + sorted(calib, key=str),
        batch_size=args.batch_size, threads=args.threads, warmup=args.warmup,
        repeats=args.repeats, device=args.device, existing=existing, progress=True,
        runtime=args.runtime, clock=args.clock)
    built_s = time.perf_counter() - start
    if args.table:
        save_table(frame, args.table)
    table = LatencyTable(space, frame, args.runtime)

    net = ElasticSupernet(space).eval()
    per_round = max(1, args.repeats // args.rounds)
    warm = max(1, args.warmup // args.rounds)
    clocks = ["wall"] + (["cpu"] if args.clock == "cpu" else [])
    start = time.perf_counter()
    if ort:
        models: dict[int, bytes] = {}  # exported when first timed
        thread_timer = clock_timer("cpu", args.threads) if args.clock == "cpu" else None

        def time_child(i: int) -> dict[str, float]:
            if i not in models:
                models[i] = onnx_bytes(net.export(archs[i]), archs[i].resolution)
            out = {"wall": measure(None, archs[i].resolution, runtime="onnxruntime",
                                   batch=args.batch_size, threads=args.threads, warmup=warm,
                                   repeats=per_round, model=models[i]).ms}
            if thread_timer is not None:
                sess = ort_session(models[i], args.threads)
                r = archs[i].resolution  # deploy.measure's input
                x = torch.randn(args.batch_size, 3, r, r,
                                generator=torch.Generator().manual_seed(0)).numpy()
                out["cpu"] = measure_ms(lambda _: sess.run(None, {"input": x}), None, warm,
                                        per_round, timer=thread_timer)
            return out
    else:
        children = [net.export(a).to(args.device) for a in archs] \
            if not args.reuse_children else []
        tinputs = [torch.randn(args.batch_size, 3, a.resolution, a.resolution,
                               device=args.device) for a in archs]
        sync = device_sync(args.device)
        cpu_timer = clock_timer("cpu", args.threads, args.device) \
            if args.clock == "cpu" else None

        def time_child(i: int) -> dict[str, float]:
            out = {"wall": measure_ms(children[i], tinputs[i], warm, per_round, sync)}
            if cpu_timer is not None:
                out["cpu"] = measure_ms(children[i], tinputs[i], warm, per_round, sync,
                                        cpu_timer)
            return out

    def time_all() -> dict[str, np.ndarray]:
        # round-robin over the children, so a slow spell of the machine hits them all
        # alike instead of a few; each child's figure is the median of its round medians
        rounds = [[time_child(i) for i in range(len(archs))] for _ in range(args.rounds)]
        return {c: np.median([[r[c] for r in rnd] for rnd in rounds], axis=0) for c in clocks}

    if args.reuse_children:
        old = pd.read_csv(args.reuse_children)
        if list(old["arch"]) != [str(a) for a in archs]:
            raise SystemExit(f"--reuse-children: {args.reuse_children} holds other children")
        real = {c: old[f"real_{c}_ms"].to_numpy(float) for c in clocks}
        retest = {c: old[f"retest_{c}_ms"].to_numpy(float) for c in clocks}
    else:
        with torch_threads(args.threads):
            real, retest = time_all(), time_all()  # the retest shows the noise floor
    timed_s = time.perf_counter() - start
    pred = np.array([table.predict(a) for a in archs])
    flops = np.array([macs(space, a) for a in archs], dtype=float)
    if args.save_children:
        cols = {"arch": [str(a) for a in archs], "macs": flops, "table_ms": pred}
        for c in clocks:
            cols |= {f"real_{c}_ms": real[c], f"retest_{c}_ms": retest[c]}
        write_csv_atomic(pd.DataFrame(cols), args.save_children)

    runtime = f"onnxruntime {onnxruntime_version()}" if ort else f"torch {torch.__version__}"
    print(f"space {space.name}, runtime {runtime}, batch {args.batch_size}, threads "
          f"{args.threads}, device {frame['device'].iloc[0]}, table clock {args.clock}")
    print(f"table: {len(table.ms)} layer entries ({args.layers}), per-network scale "
          f"{table.scale:.3f} and constant {table.overhead_ms:+.3f} ms, built in {built_s:.0f} s"
          + (" (reused)" if existing is not None else ""))
    print(f"{len(archs)} children (seed {args.seed}) timed whole in {timed_s:.0f} s "
          f"({args.rounds} rounds of {per_round} repeats, twice)"
          + (f" (timings reused from {args.reuse_children})" if args.reuse_children else ""))
    what = {"wall": "wall clock, median" + (" (supernet.nn.deploy.measure)" if ort else ""),
            "cpu": "thread CPU time, median"}
    for c in clocks:
        r, t = real[c], retest[c]
        spread = np.abs(t - r) / r
        print(f"measured ({what[c]}): {r.min():.2f}..{r.max():.2f} ms, median "
              f"{np.median(r):.2f}; retest differs by {100 * spread.mean():.1f}% on average "
              f"(max {100 * spread.max():.1f}%)")
        print(f"  table vs measured:  {accuracy(pred, r)}")
        print(f"  retest vs measured: {accuracy(t, r)}  (noise floor)")
        print(f"  MACs vs measured (for scale): Pearson r "
              f"{stats.pearsonr(flops, r).statistic:.3f}, Kendall tau "
              f"{stats.kendalltau(flops, r).statistic:.3f}")


def onnxruntime_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


if __name__ == "__main__":
    main()
