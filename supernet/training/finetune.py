"""Fine-tune one exported child alone, with the supernet's recipe, to test BigNAS's claim
that children need no retraining on one's own data.

The recipe is the supernet's TrainConfig: its optimizer (SGD or RMSProp), batch size,
weight decay on conv/linear weights, gradient clipping, schedule shape and seed. Training
starts at the LR the supernet ended at (FLOOR of its initial LR), without warm-up: the
weights are trained already. With labels the child is regularised like the largest child
of the sandwich (label smoothing, dropout); distilled from a teacher (the supernet's
largest child) it learns the teacher's soft labels like the other children.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..data.datasets import DataSet, batches, resize
from ..spaces.space import Arch
from ..utils import mixed_seed
from .config import TrainConfig, with_recipe
from .optim import FLOOR, make_optimizer, make_scheduler


@dataclass(frozen=True)
class FinetuneResult:
    """What a fine-tuning run did: epochs, starting LR, teacher or labels, mean losses."""

    epochs: int
    lr: float
    distilled: bool
    losses: tuple[float, ...]  # mean training loss per epoch


def recipe_from_config(config: dict[str, Any] | None) -> TrainConfig:
    """The TrainConfig saved in a supernet checkpoint (`config`), unknown keys dropped."""
    names = set(TrainConfig.__dataclass_fields__)
    return with_recipe(TrainConfig(**{k: v for k, v in (config or {}).items() if k in names}))


def finetune(child: nn.Module, arch: Arch, data: DataSet, epochs: int, recipe: TrainConfig,
             *, teacher: tuple[nn.Module, Arch] | None = None, lr: float | None = None,
             device: str | torch.device = "cpu", quiet: bool = True) -> FinetuneResult:
    """Train `child` (a plain module of `arch`) in place for `epochs` epochs on `data`'s
    training split; `teacher` = (module, its arch) distils instead of using labels.
    BN running statistics follow the training batches: recalibrate afterwards."""
    if not (isinstance(epochs, int) and epochs >= 0):
        raise ValueError(f"finetune_epochs: {epochs!r} is not allowed; expected an integer >= 0")
    if lr is None:
        assert recipe.lr is not None  # recipe_from_config fills every recipe field
        lr = recipe.lr * FLOOR
    if not lr > 0:
        raise ValueError(f"finetune_lr: {lr!r} is not allowed; expected a positive number")
    device = torch.device(device)
    assert (recipe.batch_size is not None and recipe.schedule is not None
            and recipe.floor_at is not None and recipe.label_smoothing is not None
            and recipe.grad_clip is not None)  # recipe_from_config fills them
    steps = len(data.train) // recipe.batch_size
    if steps < 1:
        raise ValueError(f"batch_size: the recipe's {recipe.batch_size} exceeds the "
                         f"{len(data.train)} training images")
    child.to(device)
    for m in child.modules():
        if isinstance(m, nn.Dropout):
            # labels: the largest child's regularisation; distilled: none, as in the sandwich
            m.p = 0.0 if teacher else (m.p if recipe.dropout is None else recipe.dropout)
    opt = make_optimizer(child, replace(recipe, lr=lr))
    sched = make_scheduler(opt, recipe.schedule, epochs * steps, 0, steps, recipe.floor_at)
    if teacher is not None:
        teacher[0].to(device).eval()
    losses: list[float] = []
    for epoch in range(epochs):
        child.train()
        # other seeds than the supernet's epochs: fine-tuning sees new crops
        loader = batches(data.train, data, recipe.batch_size,
                         seed=mixed_seed(recipe.seed, 1_000_000 + epoch), train=True,
                         drop_last=True,
                         workers=recipe.workers or 0, device=device)
        total = 0.0
        for i, (x, y) in enumerate(tqdm(loader, total=steps, leave=False, disable=quiet,
                                        desc=f"fine-tune {epoch + 1}/{epochs}")):
            torch.manual_seed(mixed_seed(recipe.seed, 1_000_000 + epoch, i))  # dropout masks
            x, y = x.to(device), y.to(device)
            out = child(resize(x, arch.resolution))
            if teacher is not None:
                with torch.no_grad():
                    soft = teacher[0](resize(x, teacher[1].resolution)).softmax(1)
                loss = F.cross_entropy(out, soft)
            else:
                loss = F.cross_entropy(out, y, label_smoothing=recipe.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.grad_clip > 0:
                nn.utils.clip_grad_norm_(child.parameters(), recipe.grad_clip)
            opt.step()
            sched.step()
            total += loss.item()
        losses.append(total / steps)
    child.eval()
    return FinetuneResult(epochs, lr, teacher is not None, tuple(losses))
