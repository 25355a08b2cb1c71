"""Copy a child out of the supernet as plain torch layers (Conv2d, BatchNorm2d, Linear)."""

from __future__ import annotations

import torch
from torch import nn

from .ops import DynamicBatchNorm2d, DynamicConv2d, make_act
from .plan import MBCONV, PURE_SKIP, BlockPlan


class SqueezeExcite(nn.Module):
    """Static squeeze-and-excitation: pool, 1x1 reduce, act, 1x1 expand, gate, multiply."""

    def __init__(self, reduce: nn.Conv2d, act: nn.Module, expand: nn.Conv2d, gate: nn.Module):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce, self.act, self.expand, self.gate = reduce, act, expand, gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class MBConv(nn.Module):
    """Static MBConv block; `shortcut` is None (no residual), Identity, or pool/conv."""

    def __init__(self, body: nn.Sequential, shortcut: nn.Module | None):
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y if self.shortcut is None else y + self.shortcut(x)


def _conv(dyn: DynamicConv2d, c_in: int, c_out: int, k: int = 1) -> nn.Conv2d:
    w, b = dyn.sliced(c_in, c_out, k)
    groups = c_in if dyn.depthwise else 1
    conv = nn.Conv2d(c_in, c_out, k, dyn.stride, k // 2, groups=groups, bias=b is not None)
    conv.weight.copy_(w)
    if b is not None:
        conv.bias.copy_(b)
    return conv


def _bn(dyn: DynamicBatchNorm2d, c: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c, eps=dyn.eps, momentum=dyn.momentum)
    for name, t in dyn.sliced(c).items():
        getattr(bn, name).copy_(t)
    bn.num_batches_tracked.copy_(dyn.num_batches_tracked)
    return bn


def _skip(blk, p: BlockPlan) -> nn.Module:
    """A layer-wise skip choice: ELS as conv + BN; a pure skip as pool and zero channels."""
    if p.kind != PURE_SKIP:
        return nn.Sequential(_conv(blk.conv, p.c_in, p.c_out), _bn(blk.bn, p.c_out))
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
            sc.append(nn.AvgPool2d(p.stride, p.stride, ceil_mode=True, count_include_pad=False))
        if p.shortcut_conv:
            sc.append(_conv(blk.shortcut_conv, p.c_in, p.c_out))
        shortcut = nn.Sequential(*sc) if sc else nn.Identity()
    return MBConv(nn.Sequential(*layers), shortcut)


def export_child(net, arch) -> nn.Sequential:
    """Standalone `nn.Sequential(stem, blocks, head)` of child `arch` with copied weights
    and the supernet's raw BN statistics (see `supernet.calibrate.calibrated_child`)."""
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
    return child
