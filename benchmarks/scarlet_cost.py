"""SCARLET-NAS search space S1 at its extremes (supplement, section 3.4, Table 2): MACs
and parameters of the all-skip and the all-E6K7 child at 224 px, ours beside the paper's
FLOPs (multiply-adds), with ELS folded into the next conv as exported (Eq. 4), with ELS
as trained (unfolded, fvcore only) and with pure skips; fvcore checks the closed form on
the exported children. Also the closed-form counter's rate on layer-wise children.

    python benchmarks/scarlet_cost.py [--space scarlet-s1] [--no-fvcore]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from supernet import ElasticSupernet, load_space
from supernet.spaces.cost import cost
from supernet.spaces.space import with_els

with warnings.catch_warnings():  # fvcore scripts helpers at import: torch deprecation noise
    warnings.simplefilter("ignore", DeprecationWarning)
    from fvcore.nn import FlopCountAnalysis

MAC_OPS = {"conv", "linear", "addmm", "matmul", "mm", "bmm", "einsum"}
PAPER_MFLOPS = {"all skip": 23, "all E6K7": 557}  # Table 2: "All Identity", "All K7E6"


def fvcore_macs(net: ElasticSupernet, arch, fold_els: bool = True) -> int:
    """fvcore's conv + linear MACs of the exported child on one image."""
    flops = FlopCountAnalysis(net.export(arch, fold_els).eval(),
                              torch.randn(1, 3, arch.resolution, arch.resolution))
    flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return sum(v for k, v in flops.by_operator().items() if k in MAC_OPS)


def row(space, skip: str, tag: str, m: float | None, ref: float | None, n: float,
        paper: float) -> str:
    """One line of the table; m (closed form) and ref (fvcore) in MACs, n in parameters."""
    mm = "-" if m is None else f"{m / 1e6:.2f}"
    fv = "-" if ref is None else f"{ref / 1e6:.2f}"
    ratio = (ref if m is None else m) / 1e6 / paper
    return (f"{space.name:<12} {skip:<12} {tag:<9} {mm:>8} {fv:>8} {paper:>12} "
            f"{ratio:>6.2f} {n / 1e6:>9.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="scarlet-s1")
    p.add_argument("--no-fvcore", action="store_true", help="skip the fvcore cross-check")
    args = p.parse_args()
    base = load_space(args.space)
    print(f"{'space':<12} {'skip':<12} {'child':<9} {'MMACs':>8} {'fvcore':>8} "
          f"{'paper MFLOPs':>12} {'ratio':>6} {'params M':>9}")
    for els in (True, False):
        space = with_els(base, els)
        net = None if args.no_fvcore else ElasticSupernet(space).eval()
        for tag, arch in (("all skip", space.min_arch()), ("all E6K7", space.max_arch())):
            m, n = cost(space, arch)
            ref = None if net is None else fvcore_macs(net, arch)
            paper = PAPER_MFLOPS[tag] if args.space == "scarlet-s1" else float("nan")
            print(row(space, "ELS folded" if els else "pure", tag, m, ref, n, paper))
            if els and net is not None:  # as trained: every ELS a 1x1 conv + BN
                child = net.export(arch, fold_els=False)
                print(row(space, "ELS unfolded", tag, None, fvcore_macs(net, arch, False),
                          sum(p.numel() for p in child.parameters()), paper))
    rng = np.random.default_rng(0)
    archs = [base.sample(rng) for _ in range(2000)]
    t = time.perf_counter()
    for a in archs:
        cost(base, a)
    rate = len(archs) / (time.perf_counter() - t)
    print(f"closed form: {rate:,.0f} children/s on {len(archs)} random {base.name} children")
    print("The paper's 23 M for 'All Identity' is the all-ELS child folded: the 19 ELS "
          "merge into the 1x1 conv before pooling, which then reads the 16 channels of the "
          "first block (stem 10.8 M + first block 10.0 M + 16->1280 at 7x7 1.0 M + "
          "classifier 1.3 M); a pure skip zero-pads to each layer's width instead, so that "
          "conv reads 320 channels (20.1 M).")


if __name__ == "__main__":
    main()
