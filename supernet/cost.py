"""Closed-form MACs and parameter counts of a child: no tensors, no forward pass.

MACs count every convolution and linear layer (SE's 1x1 convs and shortcut convs
included); BN, activations, pooling, the SE multiply and bias additions are free,
as in OFA and AttentiveNAS where "FLOPs" means these MACs. fvcore is the reference.
"""

from __future__ import annotations

from .plan import ChildPlan, child_plan
from .space import Arch, SearchSpace


def _counts(p: ChildPlan) -> tuple[int, int]:
    """(MACs, params) of a resolved child."""
    hw = p.stem_hw * p.stem_hw
    m = hw * 27 * p.stem_out
    n = 27 * p.stem_out + 2 * p.stem_out
    for b in p.blocks:
        ihw, ohw = b.in_hw * b.in_hw, b.out_hw * b.out_hw
        if b.has_expand:
            m += ihw * b.c_in * b.mid
            n += b.c_in * b.mid + 2 * b.mid
        k2 = b.kernel * b.kernel
        m += ohw * b.mid * k2
        n += b.mid * k2 + 2 * b.mid
        if b.se:
            m += 2 * b.mid * b.se
            n += 2 * b.mid * b.se + b.se + b.mid
        m += ohw * b.mid * b.c_out
        n += b.mid * b.c_out + 2 * b.c_out
        if b.shortcut_conv:
            m += ohw * b.c_in * b.c_out
            n += b.c_in * b.c_out
    hw = p.blocks[-1].out_hw ** 2 if p.blocks else p.stem_hw ** 2
    if p.head_mid:
        m += hw * p.last_width * p.head_mid + p.head_mid * p.head_width
        n += p.last_width * p.head_mid + 2 * p.head_mid + p.head_mid * p.head_width
    else:
        m += hw * p.last_width * p.head_width
        n += p.last_width * p.head_width + 2 * p.head_width
    m += p.head_width * p.num_classes
    n += p.head_width * p.num_classes + p.num_classes
    return m, n


def macs(space: SearchSpace, arch: Arch) -> int:
    """Multiply-accumulates of child `arch` at its resolution."""
    return _counts(child_plan(space, arch))[0]


def params(space: SearchSpace, arch: Arch) -> int:
    """Parameters of the exported child (conv, linear, BN affine, biases; no buffers)."""
    return _counts(child_plan(space, arch))[1]


def cost(space: SearchSpace, arch: Arch) -> tuple[int, int]:
    """(MACs, params) in one pass."""
    return _counts(child_plan(space, arch))
