"""The elastic supernet: `net(x, arch)` runs a child by slicing the largest weights;
`net.export(arch)` copies the child out as a network of standard torch layers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..spaces.plan import MBCONV, PURE_SKIP, BlockPlan, ChildPlan, child_plan, conv_out, layer_plan
from ..spaces.space import Arch, SearchSpace, load_space
from .ops import DynamicBatchNorm2d, DynamicConv2d, DynamicLinear, DynamicSE, act_fn, shortcut_pool


class DynamicBlock(nn.Module):
    """Elastic MBConv block: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project (+ shortcut)."""

    def __init__(self, space: SearchSpace, mx: BlockPlan, k: int, expandable: bool, se: bool,
                 shortcut_conv: bool, transform_kernels: Sequence[int] = ()):
        super().__init__()
        self.expand_conv = DynamicConv2d(mx.c_in, mx.mid) if expandable else None
        self.expand_bn = DynamicBatchNorm2d(mx.mid) if expandable else None
        self.dw_conv = DynamicConv2d(mx.mid, mx.mid, k, mx.stride, depthwise=True,
                                     transform_kernels=transform_kernels)
        self.dw_bn = DynamicBatchNorm2d(mx.mid)
        self.se = DynamicSE(mx.mid, mx.se, space.se_act, space.se_gate) if se else None
        self.project_conv = DynamicConv2d(mx.mid, mx.c_out)
        self.project_bn = DynamicBatchNorm2d(mx.c_out)
        self.shortcut_conv = DynamicConv2d(mx.c_in, mx.c_out) if shortcut_conv else None

    def forward(self, x: torch.Tensor, p: BlockPlan) -> torch.Tensor:
        """Block `p` of a child (its widths, kernel, stride and residual) on `x`."""
        act = act_fn(p.act)
        h = x
        if p.has_expand:
            # a plan expands only in a block built expandable (its largest plan expands)
            assert self.expand_conv is not None and self.expand_bn is not None
            h = act(self.expand_bn(self.expand_conv(h, p.mid)))
        h = act(self.dw_bn(self.dw_conv(h, k=p.kernel)))
        if p.se:
            assert self.se is not None  # likewise: SE only in a block built with it
            h = self.se(h, p.se)
        h = self.project_bn(self.project_conv(h, p.c_out))
        if p.residual:
            sc = x
            if p.shortcut_pool:
                sc = shortcut_pool(sc, p.stride)
            if p.shortcut_conv:
                assert self.shortcut_conv is not None  # the plan's block was built with it
                sc = self.shortcut_conv(sc, p.c_out)
            h = h + sc
        return h


class SkipChoice(nn.Module):
    """The skip choice of a layer-wise space. ELS (SCARLET-NAS): a learnable linear map,
    1x1 conv (with the layer's stride) + BN, no activation, so the proof's Eq. 4 merges it
    into the next layer's first conv; BN puts its output on the scale of the other choices,
    whose blocks also end in BN. Without ELS a pure skip: average pool on stride 2, new
    channels zero (FairNAS-style identity where the shape changes), no weights."""

    def __init__(self, p: BlockPlan):
        super().__init__()
        els = p.kind != PURE_SKIP
        self.conv = DynamicConv2d(p.c_in, p.c_out, 1, p.stride) if els else None
        self.bn = DynamicBatchNorm2d(p.c_out) if els else None
        if self.conv is not None:  # ELS
            # Start as the identity on the channels it keeps: every other choice of a
            # residual layer starts as one too (zero-initialised last BN), so the paths a
            # single-path step mixes agree at first. A random 1x1 map here scrambled the
            # features of every child that took a skip, and the supernet did not learn.
            # The new channels of a widening skip keep their random start: all-zero rows
            # would give constant channels, which BN divides by sqrt(eps) in training.
            n = min(p.c_in, p.c_out)
            with torch.no_grad():
                self.conv.weight[:n].zero_()
                self.conv.weight[range(n), range(n)] = 1.0

    def forward(self, x: torch.Tensor, p: BlockPlan) -> torch.Tensor:
        """The skip of plan `p`: ELS (conv + BN) or pool and zero channels."""
        if self.conv is not None:
            assert self.bn is not None  # made together with the conv
            return self.bn(self.conv(x, p.c_out))
        if p.stride > 1:
            x = F.avg_pool2d(x, p.stride, p.stride, ceil_mode=True, count_include_pad=False)
        return F.pad(x, (0, 0, 0, 0, 0, p.c_out - p.c_in)) if p.c_out != p.c_in else x


class ElasticSupernet(nn.Module):
    """Weight-sharing supernet over a `SearchSpace`; `forward(x, arch)` runs one child."""

    def __init__(self, space: SearchSpace | str, zero_init_residual_bn: bool | None = None):
        super().__init__()
        self.space = space = load_space(space)
        mx = child_plan(space, space.max_arch())
        self._plans: dict[Arch, ChildPlan] = {}
        self.stem_conv = DynamicConv2d(3, mx.stem_out, 3, space.stem_stride)
        self.stem_bn = DynamicBatchNorm2d(mx.stem_out)
        stages = []
        for si, spec in enumerate(space.stages):
            blocks = [b for b in mx.blocks if b.stage == si]
            expandable = any(e != 1 for e in spec.expands)
            first_needs_conv = space.shortcut == "always"
            # OFA: every block of a stage owns its kernel-transform matrices
            kernels = spec.kernels if space.kernel_transform else ()
            stages.append(nn.ModuleList(
                DynamicBlock(space, b, max(spec.kernels), expandable, spec.se,
                             first_needs_conv and b.index == 0, kernels)
                for b in blocks
            ))
        self.stages = nn.ModuleList(stages)
        # layer-wise family: per layer the skip and the block(s) of the other choices
        self.layers = nn.ModuleList(_layer_blocks(space, ops)
                                    for ops in _layer_plans(space, mx.stem_out))
        if space.head_style == "mbv3":
            self.final_conv = DynamicConv2d(mx.last_width, mx.head_mid)
            self.final_bn = DynamicBatchNorm2d(mx.head_mid)
            self.mix_conv: DynamicConv2d | None = DynamicConv2d(mx.head_mid, mx.head_width)
        else:
            self.final_conv = DynamicConv2d(mx.last_width, mx.head_width)
            self.final_bn = DynamicBatchNorm2d(mx.head_width)
            self.mix_conv = None
        self.classifier = DynamicLinear(mx.head_width, space.num_classes)
        nn.init.normal_(self.classifier.linear.weight, 0, 0.01)
        nn.init.zeros_(self.classifier.linear.bias)
        zero = zero_init_residual_bn
        if zero is None:
            zero = space.zero_init_residual_bn
        if zero:
            self._zero_init_residual_bn()

    def _zero_init_residual_bn(self) -> None:
        # BigNAS: every residual block starts as the identity, so deep children train
        # like shallow ones at first. Only blocks that always have a shortcut qualify.
        # torch types the items of a ModuleList as Module: stages hold DynamicBlocks
        for stage in self.stages:
            for i, blk in enumerate(cast(nn.ModuleList, stage)):
                if i > 0 or self.space.shortcut == "always":
                    nn.init.zeros_(cast(DynamicBlock, blk).project_bn.weight)
        for ops in _layer_plans(self.space, max(self.space.stem_widths)):
            for p in ops.values():
                if p.residual:  # a residual choice is an MBConv block, never a skip
                    nn.init.zeros_(cast(DynamicBlock, self.block(p)).project_bn.weight)

    def block(self, p: BlockPlan) -> nn.Module:
        """The supernet module that runs block `p` of a child."""
        # torch types the items of a ModuleList as Module: layers hold ModuleDicts,
        # stages ModuleLists
        if p.op:
            return cast(nn.ModuleDict, self.layers[p.stage])[_block_key(self.space, p)]
        return cast(nn.ModuleList, self.stages[p.stage])[p.index]

    def plan(self, arch: Arch) -> ChildPlan:
        """The resolved layer shapes of `arch` (validated once, then cached)."""
        p = self._plans.get(arch)
        if p is None:
            self.space.validate(arch)
            p = self._plans[arch] = child_plan(self.space, arch)
        return p

    def forward(self, x: torch.Tensor, arch: Arch, dropout: float = 0.0) -> torch.Tensor:
        """Logits of child `arch` on `x` (already at `arch.resolution`)."""
        p = self.plan(arch)
        x = act_fn(self.space.stem_act)(self.stem_bn(self.stem_conv(x, p.stem_out)))
        for b in p.blocks:
            x = self.block(b)(x, b)
        act = act_fn(self.space.head_act)
        if self.mix_conv is not None:
            x = act(self.final_bn(self.final_conv(x, p.head_mid)))
            x = act(self.mix_conv(x.mean((2, 3), keepdim=True), p.head_width))
        else:
            x = act(self.final_bn(self.final_conv(x, p.head_width))).mean((2, 3), keepdim=True)
        x = torch.flatten(x, 1)
        if dropout > 0:
            x = F.dropout(x, dropout, self.training)
        return self.classifier(x)

    @torch.no_grad()
    def export(self, arch: Arch, fold_els: bool = True) -> nn.Sequential:
        """A standalone copy of child `arch` made of standard torch layers.

        It copies the raw BN running statistics stored in the supernet, which are not
        this child's (they are whatever was last computed, e.g. the largest child's):
        use `supernet.calibrated_child` for a child with its own statistics. ELS skips
        are folded into the next conv (exact in eval mode); `fold_els=False` keeps them
        as conv + BN, for a child to train or recalibrate (then `fold_els_layers`)."""
        from .export import export_child

        return export_child(self, arch, fold_els)


def _layer_plans(space: SearchSpace, c: int) -> list[dict[str, BlockPlan]]:
    """Per layer of a layer-wise space, the plan of each choice (input width `c` first);
    the spatial size is nominal (a block's weights do not depend on it)."""
    out, hw = [], max(space.resolutions)
    for i, spec in enumerate(space.layers):
        out.append({op: layer_plan(space, i, op, c, hw) for op in spec.ops})
        c, hw = spec.width, conv_out(hw, spec.stride)
    return out


SHARED = "mbconv"  # the key of a layer's shared block in `ElasticSupernet.layers`


def _block_key(space: SearchSpace, p: BlockPlan) -> str:
    """Which module of its layer runs choice `p`: the skip, the shared block, or its own."""
    if p.kind != MBCONV:
        return p.op
    return SHARED if space.shared_choices else p.op


def _layer_blocks(space: SearchSpace, plans: dict[str, BlockPlan]) -> nn.ModuleDict:
    """The modules of one layer-wise layer. Shared (the default): one MBConv block sized
    for the largest expand, kernel and SE of the layer, which every block choice slices
    (lower channels, centre kernel), so all choices write the same features into the
    next layer; separate (FairNAS, SCARLET-NAS): one block per choice. With separate
    blocks every layer that changes shape hands the next one features from unrelated
    weights, and uniform single-path training learned next to nothing in short runs."""
    out = nn.ModuleDict()
    blocks = [p for p in plans.values() if p.kind == MBCONV]
    if blocks and space.shared_choices:
        big = replace(blocks[0], mid=max(p.mid for p in blocks),
                      kernel=max(p.kernel for p in blocks), se=max(p.se for p in blocks),
                      has_expand=any(p.has_expand for p in blocks))
        out[SHARED] = DynamicBlock(space, big, big.kernel, big.has_expand, bool(big.se), False)
    for op, p in plans.items():
        if p.kind != MBCONV:
            out[op] = SkipChoice(p)
        elif not space.shared_choices:
            out[op] = DynamicBlock(space, p, p.kernel, p.has_expand, bool(p.se), False)
    return out
