"""BN recalibration and evaluation of one child: sliced from the supernet or exported.

Shared BN statistics belong to no child, so before a child is evaluated its BN
running statistics are recomputed on a fixed set of training images (BigNAS).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from ..data.datasets import resize
from ..nn.model import ElasticSupernet
from ..spaces.space import Arch


@dataclass(frozen=True)
class EvalResult:
    """Top-1 accuracy (0..1) and mean cross-entropy of one child on one split."""

    top1: float
    loss: float
    n: int


def _bns(net: torch.nn.Module) -> list[_BatchNorm]:
    return [m for m in net.modules() if isinstance(m, _BatchNorm)]


def _forward(net: torch.nn.Module, x: torch.Tensor, arch: Arch) -> torch.Tensor:
    """Child `arch` on `x`: the supernet slices it, an exported child is it."""
    return net(x, arch) if isinstance(net, ElasticSupernet) else net(x)


@torch.no_grad()
def calibrate_bn(net: torch.nn.Module, arch: Arch, loader: Iterable[tuple[torch.Tensor, Any]],
                 num_images: int) -> int:
    """Reset BN statistics and recompute them for `arch` (of the supernet `net`, or the
    exported child `net`) as an exact average over `num_images` images of `loader`
    (batches of (x, y) at any resolution). Returns the images used."""
    bns = _bns(net)
    saved = [(bn.momentum, bn.training) for bn in bns]
    was_training = net.training
    net.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
        bn.train()
    seen = 0
    try:
        for x, _ in loader:
            if seen >= num_images:
                break
            x = x[: num_images - seen]
            _forward(net, resize(x, arch.resolution), arch)
            seen += len(x)
    finally:
        for bn, (mom, tr) in zip(bns, saved):
            bn.momentum = mom
            bn.train(tr)
        net.train(was_training)
    return seen


@torch.no_grad()
def evaluate(net: torch.nn.Module, arch: Arch,
             loader: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> EvalResult:
    """Top-1 and loss of child `arch` (of the supernet, or exported) in eval mode with its
    current BN statistics, over `loader`."""
    was_training = net.training
    net.eval()
    correct, loss, n = 0, 0.0, 0
    try:
        for x, y in loader:
            out = _forward(net, resize(x, arch.resolution), arch)
            loss += F.cross_entropy(out, y, reduction="sum").item()
            correct += int((out.argmax(1) == y).sum())
            n += len(y)
    finally:
        net.train(was_training)
    return EvalResult(correct / max(n, 1), loss / max(n, 1), n)
