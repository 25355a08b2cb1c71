"""Resolve a child `Arch` into concrete layer shapes: one source for the supernet's
forward, `export`, the cost counter and latency tables, so they cannot disagree."""

from __future__ import annotations

from dataclasses import dataclass

from .space import SKIP, Arch, SearchSpace, make_divisible, op_shape

MBCONV, ELS, PURE_SKIP = "mbconv", "els", "skip"  # kinds of block


@dataclass(frozen=True)
class BlockPlan:
    """One block of a child with every width resolved: an MBConv block, or (layer-wise) a
    skip choice, as ELS (1x1 conv + BN, `mid` == `c_in`) or a pure skip (no weights)."""

    stage: int  # stage index; layer-wise: layer index
    index: int  # block index within the stage (layer-wise: 0)
    c_in: int
    mid: int  # expanded width (== c_in when there is no expansion conv)
    c_out: int
    kernel: int
    stride: int
    has_expand: bool
    se: int  # squeeze width, 0 when the block has no SE
    act: str
    residual: bool  # output = block(x) + shortcut(x)
    shortcut_pool: bool  # avg-pool in the shortcut (stride 2, "always" style)
    shortcut_conv: bool  # 1x1 conv in the shortcut (channels differ, "always" style)
    in_hw: int
    out_hw: int
    kind: str = MBCONV
    op: str = ""  # layer-wise: the choice name, e.g. "e6k7se" or "skip"; stage-wise: ""


@dataclass(frozen=True)
class ChildPlan:
    """All resolved shapes of one child: stem, blocks, head."""

    resolution: int
    stem_out: int
    stem_hw: int
    blocks: tuple[BlockPlan, ...]
    last_width: int
    head_mid: int  # mbv3: the 6x final-expand width; mbv2: 0
    head_width: int
    num_classes: int


def conv_out(hw: int, stride: int) -> int:
    """Spatial size after a 'same'-padded odd-kernel conv (and the ceil-mode avg-pool)."""
    return (hw - 1) // stride + 1


def mid_width(c_in: int, expand: float) -> int:
    """Expanded width of an MBConv block: make_divisible(round(c_in * t), 8); none at t=1."""
    return c_in if expand == 1 else make_divisible(round(c_in * expand), 8)


def se_width(space: SearchSpace, c_in: int, mid: int) -> int:
    """Squeeze width of SE: a fraction of the block input (EfficientNet) or mid (MBv3)."""
    src = c_in if space.se_source == "input" else mid
    if space.se_divisible:
        return make_divisible(int(src * space.se_ratio), 8)
    return max(1, int(src * space.se_ratio))


def layer_plan(space: SearchSpace, i: int, op: str, c_in: int, hw: int) -> BlockPlan:
    """Layer `i` of a layer-wise space with choice `op`, on a `c_in` x `hw` x `hw` input.

    Blocks follow MobileNetV2: a residual where stride 1 and widths agree. A skip choice
    never adds a residual of its own; it replaces the block (ELS, or a pure skip that
    average-pools on stride 2 and zero-pads new channels).
    """
    spec = space.layers[i]
    out_hw = conv_out(hw, spec.stride)
    if op == SKIP:
        return BlockPlan(stage=i, index=0, c_in=c_in, mid=c_in, c_out=spec.width, kernel=1,
                         stride=spec.stride, has_expand=False, se=0, act=spec.act,
                         residual=False, shortcut_pool=False, shortcut_conv=False,
                         in_hw=hw, out_hw=out_hw, kind=ELS if space.els else PURE_SKIP,
                         op=op)
    expand, kernel, se = op_shape(op)
    mid = mid_width(c_in, expand)
    return BlockPlan(stage=i, index=0, c_in=c_in, mid=mid, c_out=spec.width, kernel=kernel,
                     stride=spec.stride, has_expand=expand != 1,
                     se=se_width(space, c_in, mid) if se else 0, act=spec.act,
                     residual=spec.stride == 1 and c_in == spec.width,
                     shortcut_pool=False, shortcut_conv=False, in_hw=hw, out_hw=out_hw,
                     op=op)


def child_plan(space: SearchSpace, arch: Arch) -> ChildPlan:
    """Resolve `arch` (assumed valid for `space`) into layer shapes."""
    hw = conv_out(arch.resolution, space.stem_stride)
    stem_hw = hw
    c = arch.stem
    blocks = []
    for li, op in enumerate(arch.layers):  # layer-wise family
        blocks.append(layer_plan(space, li, op, c, hw))
        c, hw = blocks[-1].c_out, blocks[-1].out_hw
    for si, (spec, st) in enumerate(zip(space.stages, arch.stages)):
        for bi in range(st.depth):
            kernel, expand = st.layer(bi)  # the stage's, or the layer's own (OFA)
            stride = spec.stride if bi == 0 else 1
            mid = mid_width(c, expand)
            out_hw = conv_out(hw, stride)
            same = stride == 1 and c == st.width
            always = space.shortcut == "always"
            blocks.append(BlockPlan(
                stage=si, index=bi, c_in=c, mid=mid, c_out=st.width, kernel=kernel,
                stride=stride, has_expand=expand != 1,
                se=se_width(space, c, mid) if spec.se else 0, act=spec.act,
                residual=same or always,
                shortcut_pool=always and stride > 1,
                shortcut_conv=always and c != st.width,
                in_hw=hw, out_hw=out_hw,
            ))
            c, hw = st.width, out_hw
    head_mid = space.head_expand * c if space.head_style == "mbv3" else 0
    return ChildPlan(arch.resolution, arch.stem, stem_hw, tuple(blocks), c, head_mid,
                     arch.head, space.num_classes)
