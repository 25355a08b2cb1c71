"""A child with BN statistics of its own: the fixed images every child is calibrated and
scored on (`ChildImages`), and `calibrated_child`, the one way to get such a child.

`ElasticSupernet.export` copies the BN running statistics stored in the supernet, which
belong to no child in particular. The search's evaluator, `nas-export` and fine-tuning all
go through `calibrated_child`, so an exported child scores what it scored in the search.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data.datasets import (
    DataSet,
    Split,
    batches,
    calib_indices,
    images,
    normalize,
    resize,
    stratified_subset,
)
from ..data.folder import FolderSplit
from ..nn.export import fold_els_layers
from ..nn.model import ElasticSupernet
from ..spaces.space import Arch
from .evaluation import calibrate_bn


@dataclass
class ChildImages:
    """The calibration images (uint8 at base resolution, on the device) and the val subset
    children are scored on, with the batch size and memory layout of both."""

    data: DataSet
    calib: torch.Tensor
    val_split: Split | FolderSplit
    val: tuple[torch.Tensor, torch.Tensor] | None  # in memory; None: decoded per child
    batch_size: int = 256
    memory_format: torch.memory_format = torch.contiguous_format
    workers: int = 0

    @property
    def device(self) -> torch.device:
        """Where the images live and the child runs."""
        return self.calib.device

    def _prepared(self, x: torch.Tensor, resolution: int) -> torch.Tensor:
        x = resize(normalize(x, self.data), resolution)
        return x.contiguous(memory_format=self.memory_format)

    def calib_batches(self, resolution: int) -> Iterator[tuple[torch.Tensor, None]]:
        """The calibration images as normalised batches at `resolution`."""
        for i in range(0, len(self.calib), self.batch_size):
            yield self._prepared(self.calib[i:i + self.batch_size], resolution), None

    def calib_arrays(self, resolution: int, n: int) -> list[np.ndarray]:
        """The first `n` calibration images at `resolution` as float32 numpy batches (what
        onnxruntime's int8 calibration reads)."""
        out: list[np.ndarray] = []
        left = min(n, len(self.calib))
        for x, _ in self.calib_batches(resolution):
            if left <= 0:
                break
            out.append(x[:left].contiguous().cpu().numpy())
            left -= len(out[-1])
        return out

    def val_batches(self, resolution: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The val subset as normalised batches at `resolution`, with labels."""
        if self.val is not None:
            x, y = self.val
            for i in range(0, len(x), self.batch_size):
                yield (self._prepared(x[i:i + self.batch_size], resolution),
                       y[i:i + self.batch_size])
            return
        for x, y in batches(self.val_split, self.data, self.batch_size, device=self.device,
                            workers=self.workers):
            yield resize(x, resolution).contiguous(memory_format=self.memory_format), y


def child_images(data: DataSet, calib_images: int, *, seed: int = 0,
                 indices: torch.Tensor | Sequence[int] | None = None,
                 val_images: int | None = 0,
                 batch_size: int = 256, device: str | torch.device | None = None,
                 channels_last: bool = False, workers: int = 0) -> ChildImages:
    """The fixed images of `data`: `calib_images` seeded training images (or `indices`) and
    a class-stratified val subset of `val_images` (None: all of val; 0: none).

    The subsets do not depend on any search seed: the same child always gets the same
    statistics and the same score, whatever the strategy.
    """
    if not 1 <= calib_images <= len(data.train):
        raise ValueError(f"calib_images: {calib_images} is not allowed; expected 1.."
                         f"{len(data.train)} (the training images of {data.name!r})")
    device = torch.device(device or "cpu")
    chosen = calib_indices(data, calib_images, seed) if indices is None else indices
    calib = images(data.train.subset(torch.as_tensor(chosen)), data)[0].to(device)
    n_val = len(data.val) if val_images is None else min(val_images, len(data.val))
    # stratified with a fixed seed: the first n could be one class
    val_split = data.val.subset(stratified_subset(data.val.y, n_val, seed=0))
    val: tuple[torch.Tensor, torch.Tensor] | None = None
    if not data.streamed:
        x, y = images(val_split, data)
        val = (x.to(device), y.to(device))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return ChildImages(data, calib, val_split, val, batch_size, fmt, workers)


def calibrated_child(net: ElasticSupernet, arch: Arch, images: ChildImages | DataSet,
                     num_images: int = 64, *, batch_size: int = 256, seed: int = 0,
                     device: str | torch.device | None = None,
                     fold_els: bool = True) -> nn.Sequential:
    """Child `arch` of `net` as plain layers in eval mode, its BN statistics recomputed on
    the calibration images of `images` (or, given a `DataSet`, on `num_images` seeded
    training images of it, batched by `batch_size`, on `device`).

    ELS skips fold after the recalibration (their BN is recalibrated too); `fold_els=False`
    keeps them, for a child to fine-tune (then `calibrate_bn` again and `fold_els_layers`).
    """
    if isinstance(images, DataSet):
        images = child_images(images, num_images, seed=seed, batch_size=batch_size,
                              device=device)
    # torch's Module.to takes memory_format; its type hints leave it out
    child = net.export(arch, fold_els=False).to(  # type: ignore[call-overload]
        images.device, memory_format=images.memory_format)
    for m in child.modules():
        # a child for inference: every activation acts on a fresh conv/BN output
        if fold_els and hasattr(m, "inplace"):
            m.inplace = True
    calibrate_bn(child, arch, images.calib_batches(arch.resolution), len(images.calib))
    child.eval()
    return fold_els_layers(child) if fold_els else child
