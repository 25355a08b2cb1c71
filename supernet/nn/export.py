"""Copy a child out of the supernet as plain torch layers (Conv2d, BatchNorm2d, Linear).

Layer-wise ELS skips (1x1 conv + BN, no activation) are linear in eval mode, so a run of
them merges into the next dense 1x1 conv (SCARLET-NAS supplement, Eq. 4):
`fold_els_layers`.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from ..spaces.plan import MBCONV, PURE_SKIP, BlockPlan
from .ops import DynamicBatchNorm2d, DynamicConv2d, make_act, shortcut_pool_layer


class SqueezeExcite(nn.Module):
    """Static squeeze-and-excitation: pool, 1x1 reduce, act, 1x1 expand, gate, multiply."""

    def __init__(self, reduce: nn.Conv2d, act: nn.Module, expand: nn.Conv2d, gate: nn.Module):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce, self.act, self.expand, self.gate = reduce, act, expand, gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x` scaled channel-wise by its gate."""
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class MBConv(nn.Module):
    """Static MBConv block; `shortcut` is None (no residual), Identity, or pool/conv."""

    def __init__(self, body: nn.Sequential, shortcut: nn.Module | None):
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The body's output, plus the shortcut's where the block has one."""
        y = self.body(x)
        return y if self.shortcut is None else y + self.shortcut(x)


def _conv(dyn: DynamicConv2d, c_in: int, c_out: int, k: int = 1) -> nn.Conv2d:
    w, b = dyn.sliced(c_in, c_out, k)
    groups = c_in if dyn.depthwise else 1
    conv = nn.Conv2d(c_in, c_out, k, dyn.stride, k // 2, groups=groups, bias=b is not None)
    conv.weight.copy_(w)
    if b is not None:
        assert conv.bias is not None  # made with bias=True just above
        conv.bias.copy_(b)
    return conv


def _bn(dyn: DynamicBatchNorm2d, c: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c, eps=dyn.eps, momentum=dyn.momentum)
    for name, t in dyn.sliced(c).items():
        getattr(bn, name).copy_(t)
    assert bn.num_batches_tracked is not None  # made tracking running statistics
    bn.num_batches_tracked.copy_(dyn.num_batches_tracked)
    return bn


class ELS(nn.Sequential):
    """An exported ELS skip: 1x1 conv (the layer's stride) + BN, no activation. Its own
    class only so that `fold_els_layers` finds it; state-dict keys are a Sequential's."""


def _skip(blk, p: BlockPlan) -> nn.Module:
    """A layer-wise skip choice: ELS as conv + BN; a pure skip as pool and zero channels."""
    if p.kind != PURE_SKIP:
        return ELS(_conv(blk.conv, p.c_in, p.c_out), _bn(blk.bn, p.c_out))
    layers: list[nn.Module] = []
    if p.stride > 1:
        layers.append(nn.AvgPool2d(p.stride, p.stride, ceil_mode=True, count_include_pad=False))
    if p.c_out != p.c_in:  # ZeroPad3d pads the last three dims: (C, H, W) of a batch
        layers.append(nn.ZeroPad3d((0, 0, 0, 0, 0, p.c_out - p.c_in)))
    return nn.Sequential(*layers) if layers else nn.Identity()


def _block(blk, p: BlockPlan, space) -> nn.Module:
    if p.kind != MBCONV:
        return _skip(blk, p)
    layers: list[nn.Module] = []
    if p.has_expand:
        layers += [_conv(blk.expand_conv, p.c_in, p.mid), _bn(blk.expand_bn, p.mid),
                   make_act(p.act)]
    layers += [_conv(blk.dw_conv, p.mid, p.mid, p.kernel), _bn(blk.dw_bn, p.mid),
               make_act(p.act)]
    if p.se:
        layers.append(SqueezeExcite(_conv(blk.se.reduce, p.mid, p.se), make_act(space.se_act),
                                    _conv(blk.se.expand, p.se, p.mid), make_act(space.se_gate)))
    layers += [_conv(blk.project_conv, p.mid, p.c_out), _bn(blk.project_bn, p.c_out)]
    shortcut: nn.Module | None = None
    if p.residual:
        sc: list[nn.Module] = []
        if p.shortcut_pool:
            sc.append(shortcut_pool_layer(p.stride, p.in_hw))
        if p.shortcut_conv:
            sc.append(_conv(blk.shortcut_conv, p.c_in, p.c_out))
        shortcut = nn.Sequential(*sc) if sc else nn.Identity()
    return MBConv(nn.Sequential(*layers), shortcut)


def _fold_target(m: nn.Module) -> nn.Sequential | None:
    """The container whose [0] is a dense 1x1 conv reading all of `m`'s input and whose
    [1] is that conv's BN; None when an ELS before `m` cannot merge into it."""
    seq: nn.Module | None = m
    if isinstance(m, MBConv):
        # a residual reads the input too; without expansion the first conv is depthwise
        seq = m.body if m.shortcut is None else None
    if not isinstance(seq, nn.Sequential) or len(seq) < 2:
        return None
    conv, bn = seq[0], seq[1]
    dense_1x1 = (isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1)
                 and conv.groups == 1 and conv.padding == (0, 0) and conv.dilation == (1, 1))
    return seq if dense_1x1 and isinstance(bn, nn.BatchNorm2d) else None


def _merge(els: ELS, target: nn.Sequential) -> None:
    """Replace target[0] by target[0] o BN o conv of `els` (eval-mode BN: an affine map).

    The merged conv gets no bias: its constant W2 (beta - scale * mean) is taken off
    target[1]'s running mean instead, exact for the eval-mode BN that follows it."""
    # torch types a Sequential's items as Module: an ELS is (Conv2d, BatchNorm2d) as
    # `_skip` made it, and `_fold_target` checked the target's first two
    first, second = els
    conv1, bn1 = cast(nn.Conv2d, first), cast(nn.BatchNorm2d, second)
    conv2, bn2 = cast(nn.Conv2d, target[0]), cast(nn.BatchNorm2d, target[1])
    # exported BNs track running statistics (torch types them as optional)
    assert bn1.running_mean is not None and bn1.running_var is not None
    assert bn2.running_mean is not None
    scale = bn1.weight.double() / torch.sqrt(bn1.running_var.double() + bn1.eps)
    shift = bn1.bias.double() - scale * bn1.running_mean.double()
    if conv1.bias is not None:
        shift = shift + scale * conv1.bias.double()
    w2 = conv2.weight[:, :, 0, 0].double()
    w = w2 @ (scale[:, None] * conv1.weight[:, :, 0, 0].double())
    # 1x1, no padding: a stride-s1 conv then a stride-s2 one samples every s1*s2-th pixel
    stride = conv1.stride[0] * conv2.stride[0]
    merged = nn.Conv2d(conv1.in_channels, conv2.out_channels, 1, stride,
                       bias=conv2.bias is not None).to(conv2.weight)
    merged.weight.copy_(w[:, :, None, None])
    if conv2.bias is not None:
        assert merged.bias is not None  # made with a bias where conv2 has one
        merged.bias.copy_(conv2.bias)
    bn2.running_mean.sub_((w2 @ shift).to(bn2.running_mean))
    target[0] = merged


@torch.no_grad()
def fold_els_layers(child: nn.Sequential) -> nn.Sequential:
    """Merge, in place, every ELS of an exported `child` into the next layer's dense 1x1
    conv where only that conv reads it (next ELS, expand conv of a block without residual,
    head conv); folded ELS become Identity, so block i stays layer i. Exact in eval mode
    only: train or recalibrate BN before folding. Returns `child`."""
    _, seq, head = child
    blocks = cast(nn.Sequential, seq)  # export_child's (stem, blocks, head): a Sequential
    for i, blk in enumerate(blocks):  # in order: a run folds forward into its last ELS
        if not isinstance(blk, ELS):
            continue
        nxt = blocks[i + 1] if i + 1 < len(blocks) else head
        target = _fold_target(nxt)
        if target is not None:
            _merge(blk, target)
            blocks[i] = nn.Identity()
    return child


def export_child(net, arch, fold_els: bool = True) -> nn.Sequential:
    """Standalone `nn.Sequential(stem, blocks, head)` of child `arch` with copied weights
    and the supernet's raw BN statistics (see `supernet.training.calibrate.calibrated_child`);
    ELS folded (deployed form) unless `fold_els` is False (to train or recalibrate it)."""
    space, p = net.space, net.plan(arch)
    stem = nn.Sequential(_conv(net.stem_conv, 3, p.stem_out, 3), _bn(net.stem_bn, p.stem_out),
                         make_act(space.stem_act))
    blocks = nn.Sequential(*(_block(net.block(b), b, space) for b in p.blocks))
    if net.mix_conv is not None:
        head = [_conv(net.final_conv, p.last_width, p.head_mid), _bn(net.final_bn, p.head_mid),
                make_act(space.head_act), nn.AdaptiveAvgPool2d(1),
                _conv(net.mix_conv, p.head_mid, p.head_width), make_act(space.head_act)]
    else:
        head = [_conv(net.final_conv, p.last_width, p.head_width),
                _bn(net.final_bn, p.head_width), make_act(space.head_act),
                nn.AdaptiveAvgPool2d(1)]
    lin = nn.Linear(p.head_width, space.num_classes)
    lin.weight.copy_(net.classifier.linear.weight[:, : p.head_width])
    lin.bias.copy_(net.classifier.linear.bias)
    head += [nn.Flatten(1), nn.Dropout(space.dropout), lin]
    child = nn.Sequential(stem, blocks, nn.Sequential(*head))
    child.train(net.training)
    return fold_els_layers(child) if fold_els else child
