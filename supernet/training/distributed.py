"""Multi-process training with torchrun: process-group set-up and a sliceable SyncBatchNorm.

torch's own `nn.SyncBatchNorm` normalises all its channels, so it cannot serve an
elastic layer whose width changes per child; `DynamicSyncBatchNorm2d` slices like
`DynamicBatchNorm2d` and averages the batch statistics over all processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..nn.ops import DynamicBatchNorm2d


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: rank, number of processes, its device."""

    rank: int
    world: int
    device: torch.device
    owns_group: bool  # this module started the process group and must end it


def setup(device: str) -> Dist:
    """Join the torchrun job described by the environment (gloo on CPU, NCCL on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    dev = torch.device(device)
    if dev.type == "cuda":
        if dev.index is None:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        owns = True
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return Dist(rank, world, dev, owns)


def teardown(d: Dist) -> None:
    """End the process group if `setup` started it."""
    if d.owns_group:
        dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Sum over all processes; the gradient is summed likewise, as every rank's loss
    depends on the summed statistics."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        g = g.clone()
        dist.all_reduce(g)
        return g


def _syncing() -> bool:
    # Only training forwards synchronise (grad enabled): BN calibration and evaluation
    # run on rank 0 alone and must not wait for the others.
    return (torch.is_grad_enabled() and dist.is_available() and dist.is_initialized()
            and dist.get_world_size() > 1)


class DynamicSyncBatchNorm2d(DynamicBatchNorm2d):
    """DynamicBatchNorm2d whose training statistics are the mean and variance over the
    global batch of all processes (a differentiable all-reduce of sums)."""

    # always kept (track_running_stats): torch types them as optional
    running_mean: torch.Tensor
    running_var: torch.Tensor
    num_batches_tracked: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """BN over the channels of `x`; in training under torchrun, with the statistics of
        the global batch."""
        if not (self.training and _syncing()):
            return super().forward(x)
        c = x.shape[1]
        xf = x.float()
        count = torch.full((1,), xf.numel() // c, dtype=xf.dtype, device=xf.device)
        stats = _AllReduceSum.apply(torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)),
                                               count]))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            mom = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            self.running_mean[:c].lerp_(mean, mom)
            self.running_var[:c].lerp_(var * n / (n - 1).clamp_min(1), mom)
        scale = self.weight[:c] * torch.rsqrt(var + self.eps)
        shift = self.bias[:c] - mean * scale
        return (xf * scale.view(1, c, 1, 1) + shift.view(1, c, 1, 1)).to(x.dtype)


def convert_sync_bn(module: nn.Module) -> nn.Module:
    """Replace every DynamicBatchNorm2d in `module` by a DynamicSyncBatchNorm2d (same
    state, same state-dict keys), in place; returns `module`."""
    for name, child in module.named_children():
        if type(child) is DynamicBatchNorm2d:
            new = DynamicSyncBatchNorm2d(child.num_features, child.eps, child.momentum)
            new.load_state_dict(child.state_dict())
            setattr(module, name, new.to(child.weight.device))
        else:
            convert_sync_bn(child)
    return module
