"""Elastic layers: each owns the largest weight and slices it for the active child.

Slicing, not masking: lower-index channels and the centre k x k of the largest
kernel, so a small child costs what its static twin costs. With OFA's kernel transform a
smaller kernel is, in addition, a learned linear map of that centre (`transform_kernel`).
"""

from __future__ import annotations

from collections.abc import Sequence

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


def transform_name(big: int, small: int) -> str:
    """Key of the matrix that maps the centre of a `big` kernel to a `small` one: '7to5'."""
    return f"{big}to{small}"


def transform_kernel(weight: torch.Tensor, k: int, kernels: Sequence[int],
                     matrices: nn.ParameterDict) -> torch.Tensor:
    """OFA's elastic kernel: from the largest kernel down to `k`, one step per smaller size
    of `kernels`, take the centre s x s and map its s*s values (row-major) through that
    step's matrix M as x @ M^T; 3x3 thus comes from the transformed 5x5, never the raw one.
    """
    steps = sorted(kernels, reverse=True)
    if k not in steps:
        raise ValueError(f"kernel: {k} is not one of the transformed sizes {steps}")
    w = weight
    for big, small in zip(steps, steps[1:]):
        if big == k:
            break
        w = centre_crop(w, small)
        shape = w.shape
        w = F.linear(w.reshape(-1, small * small), matrices[transform_name(big, small)])
        w = w.reshape(shape)
    return w


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
    """Conv2d whose in/out channels and (odd) kernel size are chosen per call.

    `transform_kernels` (OFA): the kernel sizes a smaller kernel is made from by learned
    matrices, one per step between consecutive sizes (`transforms['7to5']`, 25 x 25),
    initialised to the identity so that they start as plain centre crops."""

    def __init__(self, max_in: int, max_out: int, max_kernel: int = 1, stride: int = 1,
                 depthwise: bool = False, bias: bool = False,
                 transform_kernels: Sequence[int] = ()):
        super().__init__()
        self.stride, self.depthwise, self.max_kernel = stride, depthwise, max_kernel
        in_per_group = 1 if depthwise else max_in
        self.weight = nn.Parameter(torch.empty(max_out, in_per_group, max_kernel, max_kernel))
        self.bias = nn.Parameter(torch.zeros(max_out)) if bias else None
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        steps = sorted(set(transform_kernels), reverse=True)
        if steps and steps[0] != max_kernel:
            raise ValueError(f"kernel transform: sizes {steps} must start at the largest "
                             f"kernel {max_kernel}")
        self.kernels = tuple(steps)
        pairs = list(zip(steps, steps[1:]))
        self.transforms = nn.ParameterDict(
            {transform_name(a, b): nn.Parameter(torch.eye(b * b)) for a, b in pairs}
        ) if pairs else None

    def sliced(self, c_in: int, c_out: int, k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The active weight (a transformed kernel where the layer has transforms) and bias."""
        w = self.weight[:c_out] if self.depthwise else self.weight[:c_out, :c_in]
        if self.transforms is not None and k < self.max_kernel:
            w = transform_kernel(w, k, self.kernels, self.transforms)
        else:
            w = centre_crop(w, k)
        return w, (None if self.bias is None else self.bias[:c_out])

    def forward(self, x: torch.Tensor, c_out: int | None = None, k: int | None = None):
        """The conv on all input channels of `x`, `c_out` outputs (depthwise: as many as
        in) and a k x k kernel (default: the largest)."""
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

    # always kept (track_running_stats): torch types them as optional
    running_mean: torch.Tensor
    running_var: torch.Tensor
    num_batches_tracked: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """BN over the channels of `x`, the first C of the running statistics."""
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
        """Logits from the features of `x` (its width picks the weight's columns)."""
        return F.linear(x, self.linear.weight[:, : x.shape[1]], self.linear.bias)


class DynamicSE(nn.Module):
    """Squeeze-and-excitation on C channels with a squeeze width chosen per call."""

    def __init__(self, max_c: int, max_sq: int, act: str, gate: str):
        super().__init__()
        self.reduce = DynamicConv2d(max_c, max_sq, bias=True)
        self.expand = DynamicConv2d(max_sq, max_c, bias=True)
        self.act, self.gate = act, gate

    def forward(self, x: torch.Tensor, sq: int) -> torch.Tensor:
        """`x` gated channel-wise through a squeeze of width `sq`."""
        s = x.mean((2, 3), keepdim=True)
        s = act_fn(self.act)(self.reduce(s, sq))
        return x * act_fn(self.gate)(self.expand(s, x.shape[1]))
