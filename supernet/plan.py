"""Resolve a child `Arch` into concrete layer shapes: one source for the supernet's
forward, `export`, the cost counter and latency tables, so they cannot disagree."""

from __future__ import annotations

from dataclasses import dataclass

from .space import Arch, SearchSpace, make_divisible


@dataclass(frozen=True)
class BlockPlan:
    """One MBConv block of a child with every width resolved."""

    stage: int
    index: int  # block index within the stage
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


def child_plan(space: SearchSpace, arch: Arch) -> ChildPlan:
    """Resolve `arch` (assumed valid for `space`) into layer shapes."""
    hw = conv_out(arch.resolution, space.stem_stride)
    stem_hw = hw
    c = arch.stem
    blocks = []
    for si, (spec, st) in enumerate(zip(space.stages, arch.stages)):
        for bi in range(st.depth):
            stride = spec.stride if bi == 0 else 1
            mid = mid_width(c, st.expand)
            out_hw = conv_out(hw, stride)
            same = stride == 1 and c == st.width
            always = space.shortcut == "always"
            blocks.append(BlockPlan(
                stage=si, index=bi, c_in=c, mid=mid, c_out=st.width, kernel=st.kernel,
                stride=stride, has_expand=st.expand != 1,
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
