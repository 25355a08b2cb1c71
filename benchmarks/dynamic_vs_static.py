"""Inference inside the supernet (`net(x, arch)`) against the exported child, same weights.

Eval mode, torch.no_grad, batch 16, 2 threads: the smallest attentive-mbv3 child at
192 px and the largest at 288 px. The two forms are timed in pairs, alternating which
goes first (so machine noise hits both alike); the median of the timed runs after
warm-up is reported, with the ratio supernet / exported (target <= 1.05) and, given
`--reference FILE` (a workload JSON recorded from AttentiveNAS's own code, not shipped with
the repository), AttentiveNAS's own figures beside them. On a busy machine two-thread
timings swing widely; `--threads 1` is steadier.

    python benchmarks/dynamic_vs_static.py --runs 10 [--reference FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from supernet import ElasticSupernet, load_space


def timed(fn: Callable[..., object], *args: object) -> float:
    """Wall time of one call `fn(*args)`, in ms."""
    t = time.perf_counter()
    fn(*args)
    return 1e3 * (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="attentive-mbv3")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--min-px", type=int, default=192)
    ap.add_argument("--max-px", type=int, default=288)
    ap.add_argument("--runs", type=int, default=10, help="timed runs of each form")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reference", type=Path, default=None, metavar="FILE",
                    help="AttentiveNAS workload JSON with reference timings (optional)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    space = load_space(args.space)
    net = ElasticSupernet(space).eval()
    ref = {}
    if args.reference is not None:
        ref = json.loads(args.reference.read_text())["reference"]["eval_forward_batch16_ms"]

    print(f"{space.name}: eval, no_grad, batch {args.batch}, {args.threads} threads, "
          f"median of {args.runs} runs after {args.warmup} warm-up (ms); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'child':<10}{'supernet':>10}{'exported':>10}{'ratio':>8}"
          f"{'AttentiveNAS supernet / exported (ratio)':>44}")
    for label, arch, px in (("min", space.min_arch(), args.min_px),
                            ("max", space.max_arch(), args.max_px)):
        arch = space.validate(replace(arch, resolution=px))
        x = torch.randn(args.batch, 3, px, px)
        child = net.export(arch).eval()
        with torch.no_grad():
            dyn_ms, static_ms = [], []
            for i in range(args.warmup + args.runs):
                if i % 2:  # alternate which form goes first, so neither always follows
                    d, s = timed(net, x, arch), timed(child, x)
                else:
                    s, d = timed(child, x), timed(net, x, arch)
                if i >= args.warmup:
                    dyn_ms.append(d)
                    static_ms.append(s)
        dyn, static = statistics.median(dyn_ms), statistics.median(static_ms)
        r_dyn = ref.get(f"{label}_{px}_in_supernet")
        r_static = ref.get(f"{label}_{px}_exported_eval")
        theirs = (f"{r_dyn} / {r_static} ({r_dyn / r_static:.2f})" if r_dyn and r_static
                  else "n/a")
        print(f"{label} {px}px{'':<3}{dyn:>10.0f}{static:>10.0f}{dyn / static:>8.3f}{theirs:>44}")
        if r_dyn and r_static:
            print(f"{'':<10}ours vs AttentiveNAS: supernet {dyn / r_dyn:.2f}x, "
                  f"exported {static / r_static:.2f}x their time")
    print(f"target: ratio <= 1.05; load average now {os.getloadavg()[0]:.1f} "
          "(above about 1 on 2 cores, two-thread timings are noisy)")


if __name__ == "__main__":
    main()
