"""Closed-form cost counter against fvcore: children per second on the same seeded children.

The closed form (`supernet.spaces.cost.macs`) is timed over all children; fvcore
(`FlopCountAnalysis` of the exported child, one image at the child's resolution) over the
first few only, since it traces every child, and its rate is extrapolated to the rest.
Export time is reported apart and not charged to fvcore. Target: >= 20,000 children/s
in closed form.

    python benchmarks/cost_counter.py --space attentive-mbv3 --children 200 --fvcore 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np
import torch

from supernet import ElasticSupernet, load_space, macs
from supernet.spaces.space import Arch, SearchSpace

with warnings.catch_warnings():  # fvcore scripts helpers at import: torch deprecation noise
    warnings.simplefilter("ignore", DeprecationWarning)
    from fvcore.nn import FlopCountAnalysis

MAC_OPS = {"conv", "linear", "addmm", "matmul", "mm", "bmm", "einsum"}


def closed_form_rate(space: SearchSpace, archs: list[Arch], repeats: int) -> float:
    """Children/s of `macs`: the median of `repeats` timed passes over `archs`."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for a in archs:
            macs(space, a)
        times.append(time.perf_counter() - t)
    return len(archs) / statistics.median(times)


def fvcore_macs(model: torch.nn.Module, resolution: int) -> int:
    """fvcore's conv + linear/matmul MACs of `model` on one image."""
    fl = FlopCountAnalysis(model, torch.randn(1, 3, resolution, resolution))
    fl.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return sum(v for k, v in fl.by_operator().items() if k in MAC_OPS)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="attentive-mbv3")
    ap.add_argument("--children", type=int, default=200)
    ap.add_argument("--fvcore", type=int, default=20, help="children counted by fvcore")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=20, help="timed closed-form passes")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    space = load_space(args.space)
    rng = np.random.default_rng(args.seed)
    archs = [space.sample(rng) for _ in range(args.children)]

    first = [macs(space, a) for a in archs]  # one cold pass, also the reference values
    cf_rate = closed_form_rate(space, archs, args.repeats)

    net = ElasticSupernet(space).eval()
    n_fv = min(args.fvcore, len(archs))
    t_export = t_fv = 0.0
    for a, ref in zip(archs[:n_fv], first):
        t = time.perf_counter()
        child = net.export(a).eval()
        t_export += time.perf_counter() - t
        t = time.perf_counter()
        got = fvcore_macs(child, a.resolution)
        t_fv += time.perf_counter() - t
        if got != ref:
            raise SystemExit(f"mismatch on {a}: closed form {ref}, fvcore {got}")
    fv_rate = n_fv / t_fv

    print(f"space {space.name}, {len(archs)} seeded children (seed {args.seed}), "
          f"torch threads {args.threads}, load average {os.getloadavg()[0]:.1f}")
    print(f"closed form : {cf_rate:12,.0f} children/s  (median of {args.repeats} passes over "
          f"{len(archs)}; {1e6 / cf_rate:.1f} us/child)")
    extrap = "" if n_fv == len(archs) else f", extrapolated from the first {n_fv}"
    print(f"fvcore      : {fv_rate:12,.2f} children/s  ({1e3 / fv_rate:.0f} ms/child{extrap}; "
          f"export adds {1e3 * t_export / n_fv:.0f} ms/child, not counted)")
    print(f"fvcore on all {len(archs)}: {len(archs) / fv_rate:.1f} s (estimated) vs closed "
          f"form {len(archs) / cf_rate * 1e3:.2f} ms")
    print(f"ratio       : closed form is {cf_rate / fv_rate:,.0f}x faster; "
          f"{n_fv}/{n_fv} fvcore counts identical")
    print(f"target      : >= 20,000 children/s -> {'met' if cf_rate >= 20_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
