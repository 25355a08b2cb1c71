"""A child exported with BN statistics of its own, recomputed on training images.

`ElasticSupernet.export` copies the BN running statistics stored in the supernet,
which belong to no child in particular (after training, the last one calibrated);
`calibrated_child` is the export to use: it recalibrates BN for that child first.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..data.datasets import DataSet, calib_batches
from ..nn.export import fold_els_layers
from ..spaces.space import Arch
from .evaluation import calibrate_bn


class _Forward(nn.Module):
    """An exported child behind the supernet's `forward(x, arch)` signature, so that
    `calibrate_bn` and `evaluate` run on it unchanged."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor, arch: Arch | None = None) -> torch.Tensor:
        return self.body(x)


def as_supernet_call(child: nn.Module) -> nn.Module:
    """`child` (a plain module) callable as `m(x, arch)`, as `evaluate` calls a supernet."""
    return _Forward(child).train(child.training)


def recalibrate(child: nn.Module, arch: Arch, loader: Iterable, num_images: int) -> nn.Module:
    """Reset and recompute the BN statistics of the exported `child` of `arch` on
    `num_images` images of `loader` (batches of (x, y) at any resolution); returns it."""
    wrapped = _Forward(child).train(child.training)  # calibrate_bn restores this mode
    calibrate_bn(wrapped, arch, loader, num_images)
    return child


def calibrated_child(net: nn.Module, arch: Arch, data: DataSet, num_images: int = 64, *,
                     batch_size: int = 256, seed: int = 0,
                     device: str | torch.device | None = None,
                     fold_els: bool = True) -> nn.Module:
    """Child `arch` of `net` as plain layers (eval mode) whose BN statistics are its own:
    recomputed on a fixed, seeded set of `num_images` training images of `data`.

    The same (arch, data, num_images, batch_size, seed) gives the same statistics as the
    search's evaluator, so an exported child scores what it scored in the search. ELS
    skips fold after the recalibration (their BN is recalibrated too); `fold_els=False`
    keeps them, for a child to fine-tune (then `export.fold_els_layers`).
    """
    device = torch.device(device or "cpu")
    child = net.export(arch, fold_els=False).to(device)
    child = recalibrate_on(child, arch, data, num_images, batch_size=batch_size, seed=seed)
    return fold_els_layers(child) if fold_els else child


def recalibrate_on(child: nn.Module, arch: Arch, data: DataSet, num_images: int, *,
                   batch_size: int = 256, seed: int = 0) -> nn.Module:
    """`recalibrate` the plain `child` on `calib_batches(data, num_images, ...)` (on the
    child's device); returns it in eval mode. Used again after fine-tuning."""
    if num_images < 1 or num_images > len(data.train):
        raise ValueError(f"calib_images: {num_images} is not allowed; expected 1.."
                         f"{len(data.train)} (the training images of {data.name!r})")
    device = next(child.parameters()).device
    batches = ((x.to(device), y) for x, y in calib_batches(data, num_images, batch_size, seed))
    return recalibrate(child, arch, batches, num_images).eval()
