"""Closed-form MACs and parameter counts of a child: no tensors, no forward pass.

MACs count every convolution and linear layer (SE's 1x1 convs and shortcut convs
included); BN, activations, pooling, the SE multiply and bias additions are free,
as in OFA and AttentiveNAS where "FLOPs" means these MACs. fvcore is the reference.

Widths come from `plan` (`mid_width`, `se_width`, `conv_out`), the same helpers the
supernet and `export` use; the block rules below mirror `plan.child_plan`. The
counter walks stages rather than building a `ChildPlan`, which keeps it well above
20k children/s (it runs for every candidate a search considers).
"""

from __future__ import annotations

from functools import lru_cache

from .plan import conv_out, mid_width, se_width
from .space import SKIP, Arch, SearchSpace, op_shape

_op_shape = lru_cache(maxsize=None)(op_shape)  # the counter parses each choice name once


def _block(space: SearchSpace, se: bool, c_in: int, c_out: int, kernel: int,
           expand: float, hw: int, stride: int) -> tuple[int, int, int]:
    """(MACs, params, output size) of one MBConv block: [expand] dw [SE] project [sc conv]."""
    mid = mid_width(c_in, expand)
    out_hw = conv_out(hw, stride)
    ohw = out_hw * out_hw
    k2 = kernel * kernel
    m = ohw * mid * (k2 + c_out)  # depthwise + project
    n = mid * (k2 + 2 + c_out) + 2 * c_out  # their weights + two BNs
    if expand != 1:
        m += hw * hw * c_in * mid
        n += c_in * mid + 2 * mid
    if se:
        sq = se_width(space, c_in, mid)
        m += 2 * mid * sq
        n += 2 * mid * sq + sq + mid
    if space.shortcut == "always" and c_in != c_out:  # 1x1 conv in the shortcut
        m += ohw * c_in * c_out
        n += c_in * c_out
    return m, n, out_hw


def _els_run(c0: int, c: int, hw: int, expand: float, residual: bool) -> tuple[int, int]:
    """(MACs, params) a run of ELS layers (c0 -> c channels, output hw x hw) adds to the
    block after it, deployed: merged into its expand conv (that conv reads c0 channels,
    not c) where nothing else reads the run, else collapsed into one 1x1 conv + BN."""
    if expand != 1 and not residual:
        mid = mid_width(c, expand)
        return hw * hw * (c0 - c) * mid, (c0 - c) * mid
    return hw * hw * c0 * c, c0 * c + 2 * c


def cost(space: SearchSpace, arch: Arch) -> tuple[int, int]:
    """(MACs, params) of child `arch` at its resolution, in one pass.

    Blocks 1.. of a stage share one shape (input width = output width, stride 1), so a
    stage costs its first block plus (depth - 1) times its second (OFA: layer by layer).
    Layer-wise ELS skips cost what they cost folded (`export.fold_els_layers`), as deployed.
    """
    hw = conv_out(arch.resolution, space.stem_stride)
    c = arch.stem
    m = hw * hw * 27 * c  # 3x3 stem conv on RGB
    n = 27 * c + 2 * c
    for spec, st in zip(space.stages, arch.stages):
        if st.per_layer:  # OFA: each layer has its own kernel and expand ratio
            for bi in range(st.depth):
                k, e = st.layer(bi)
                bm, bn, hw = _block(space, spec.se, c if bi == 0 else st.width, st.width, k,
                                    e, hw, spec.stride if bi == 0 else 1)
                m, n = m + bm, n + bn
            c = st.width
            continue
        k, e = st.layer(0)  # one kernel and expand ratio for the whole stage
        bm, bn, hw = _block(space, spec.se, c, st.width, k, e, hw, spec.stride)
        if st.depth > 1:
            rm, rn, hw = _block(space, spec.se, st.width, st.width, k, e, hw, 1)
            bm += (st.depth - 1) * rm
            bn += (st.depth - 1) * rn
        m, n, c = m + bm, n + bn, st.width
    els_in = 0  # input width of a pending run of ELS layers (0: none), see export.fold_els_layers
    for lspec, op in zip(space.layers, arch.layers):  # layer-wise family
        if op == SKIP:
            hw = conv_out(hw, lspec.stride)
            if space.els and not els_in:  # charged where the run ends; a pure skip is free
                els_in = c
        else:
            e, k, se = _op_shape(op)
            bm, bn, out_hw = _block(space, se, c, lspec.width, k, e, hw, lspec.stride)
            if els_in:
                rm, rn = _els_run(els_in, c, hw, e, lspec.stride == 1 and c == lspec.width)
                bm, bn, els_in = bm + rm, bn + rn, 0
            m, n, hw = m + bm, n + bn, out_hw
        c = lspec.width
    hw, head = hw * hw, arch.head
    if els_in:  # the run folds into the head's 1x1 conv: it reads els_in channels, not c
        w = space.head_expand * c if space.head_style == "mbv3" else head
        m += hw * (els_in - c) * w
        n += (els_in - c) * w
    if space.head_style == "mbv3":  # 1x1 final expand + BN, pool, 1x1 feature mix (bias-free)
        mid = space.head_expand * c
        m += hw * c * mid + mid * head
        n += c * mid + 2 * mid + mid * head
    else:  # 1x1 conv + BN to the head width, pool
        m += hw * c * head
        n += c * head + 2 * head
    m += head * space.num_classes
    n += head * space.num_classes + space.num_classes
    return m, n


def macs(space: SearchSpace, arch: Arch) -> int:
    """Multiply-accumulates of child `arch` at its resolution."""
    return cost(space, arch)[0]


def params(space: SearchSpace, arch: Arch) -> int:
    """Parameters of the exported child (conv, linear, BN affine, biases; no buffers)."""
    return cost(space, arch)[1]
