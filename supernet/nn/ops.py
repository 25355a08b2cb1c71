"""Elastic layers: each owns the largest weight and slices it for the active child.

Slicing, not masking: lower-index channels and the centre k x k of the largest
kernel, so a small child costs what its static twin costs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_MODULES = {
    "relu": nn.ReLU, "relu6": nn.ReLU6, "swish": nn.SiLU, "hswish": nn.Hardswish,
    "sigmoid": nn.Sigmoid, "hsigmoid": nn.Hardsigmoid,
}


def make_act(name: str) -> nn.Module:
    """A standard torch activation module by name."""
    return _MODULES[name]()


_FUNCS = {
    "relu": F.relu, "relu6": F.relu6, "swish": F.silu, "hswish": F.hardswish,
    "sigmoid": torch.sigmoid, "hsigmoid": F.hardsigmoid,
}


def act_fn(name: str):
    """The functional form of an activation, for the elastic forward."""
    return _FUNCS[name]


def centre_crop(weight: torch.Tensor, k: int) -> torch.Tensor:
    """The centre k x k of a (.., K, K) kernel."""
    big = weight.shape[-1]
    if k == big:
        return weight
    s = (big - k) // 2
    return weight[..., s:s + k, s:s + k]


def shortcut_pool(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Average pool of an "always"-style shortcut on a strided block (AttentiveNAS).

    Stride 2 follows AttentiveNAS: kernel 2, zero padding 1 counted in the mean when the
    width is odd (else none), so an odd map gives ceil(W/2) with windows [2i-1, 2i];
    their converted weights need the same windows. Other strides keep a ceil-mode pool."""
    if stride == 2:
        return F.avg_pool2d(x, 2, 2, x.shape[-1] % 2, count_include_pad=True)
    return F.avg_pool2d(x, stride, stride, ceil_mode=True, count_include_pad=False)


def shortcut_pool_layer(stride: int, in_hw: int) -> nn.AvgPool2d:
    """`shortcut_pool` as a standard layer for an exported child: the padding is fixed
    for its input size `in_hw` (exact at the child's own resolution)."""
    if stride == 2:
        return nn.AvgPool2d(2, 2, in_hw % 2, count_include_pad=True)
    return nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)


class DynamicConv2d(nn.Module):
    """Conv2d whose in/out channels and (odd) kernel size are chosen per call."""

    def __init__(self, max_in: int, max_out: int, max_kernel: int = 1, stride: int = 1,
                 depthwise: bool = False, bias: bool = False):
        super().__init__()
        self.stride, self.depthwise, self.max_kernel = stride, depthwise, max_kernel
        in_per_group = 1 if depthwise else max_in
        self.weight = nn.Parameter(torch.empty(max_out, in_per_group, max_kernel, max_kernel))
        self.bias = nn.Parameter(torch.zeros(max_out)) if bias else None
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def sliced(self, c_in: int, c_out: int, k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The active weight and bias."""
        w = self.weight[:c_out] if self.depthwise else self.weight[:c_out, :c_in]
        w = centre_crop(w, k)
        return w, (None if self.bias is None else self.bias[:c_out])

    def forward(self, x: torch.Tensor, c_out: int | None = None, k: int | None = None):
        c_in = x.shape[1]
        c_out = c_in if self.depthwise else (c_out or self.weight.shape[0])
        k = k or self.max_kernel
        w, b = self.sliced(c_in, c_out, k)
        return F.conv2d(x, w, b, self.stride, k // 2, 1, c_in if self.depthwise else 1)


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d over the first C channels of its largest parameters and buffers.

    With `momentum=None` the running statistics become a cumulative average, which is
    how BN calibration of a child works (see `supernet.training.train.calibrate_bn`).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if self.training:
            self.num_batches_tracked.add_(1)
            mom = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        else:
            mom = 0.0
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c],
                            self.bias[:c], self.training, mom, self.eps)

    def sliced(self, c: int) -> dict[str, torch.Tensor]:
        """Active parameters and buffers, for export."""
        return {"weight": self.weight[:c], "bias": self.bias[:c],
                "running_mean": self.running_mean[:c], "running_var": self.running_var[:c]}


class DynamicLinear(nn.Module):
    """Linear layer whose input width is chosen by the incoming tensor."""

    def __init__(self, max_in: int, out: int):
        super().__init__()
        self.linear = nn.Linear(max_in, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.linear.weight[:, : x.shape[1]], self.linear.bias)


class DynamicSE(nn.Module):
    """Squeeze-and-excitation on C channels with a squeeze width chosen per call."""

    def __init__(self, max_c: int, max_sq: int, act: str, gate: str):
        super().__init__()
        self.reduce = DynamicConv2d(max_c, max_sq, bias=True)
        self.expand = DynamicConv2d(max_sq, max_c, bias=True)
        self.act, self.gate = act, gate

    def forward(self, x: torch.Tensor, sq: int) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = act_fn(self.act)(self.reduce(s, sq))
        return x * act_fn(self.gate)(self.expand(s, x.shape[1]))
