"""The training steps, one per supernet family, and the children each step trains.

Stage-wise spaces (BigNAS): the sandwich rule with inplace distillation. Every step
trains the largest child on the labels and the smallest plus N random children on the
largest child's detached soft labels, then takes one optimizer step; by default the
first quarter of the run trains the largest child alone (teacher warm-up).

Layer-wise spaces (SCARLET-NAS, after SPOS and FairNAS): single path. Each step samples
one choice per layer, uniformly, for each of `num_random` children (2 by default, as the
sandwich rule's random children) and trains them on the labels; with `fair`, FairNAS's
strict fairness: each step trains m children whose choices at every layer are a
permutation of that layer's m choices, so every choice gets exactly one update per step.
Every step also trains the smallest child (all skips), as the sandwich rule does: a
uniform draw is all-skip once in 7^9 steps of scarlet-tiny, and that child stayed at
chance (13% on digits) without it, at 64% with it. There is no teacher: labels only.
Measured on digits with the `nas-train` defaults (8 epochs), 5 seeded random children:
one uniform child a step left one of them at 94.4% test top-1, two at 97.8 to 100%.

`make_step` picks the family's step once, before the loop. Every draw follows from
(seed, step), so all DDP ranks train the same children and a resumed run computes
what an uninterrupted one does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..data.datasets import resize
from ..spaces.space import Arch, SearchSpace, with_els
from .config import TrainConfig, with_recipe
from .distill import distill_loss
from .sampling import attentive_candidates, pick, warmup_children
from .shrinking import phase_at, phase_space

# (model, optimizer, images, labels, global step) -> (loss, distillation loss), detached
Step = Callable[[nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Tensor, int],
                tuple[torch.Tensor, torch.Tensor]]


def at_resolution(x: torch.Tensor, resolution: int, channels_last: bool | None) -> torch.Tensor:
    """A batch resized to a child's resolution, in the memory format the run uses."""
    x = resize(x, resolution)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def autocast(device: torch.device, bf16: bool) -> AbstractContextManager[None]:
    """bfloat16 autocast on `device` when asked, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def _backward_context(model: nn.Module, last: bool) -> AbstractContextManager[None]:
    """DDP reduces the accumulated gradients once, in the last backward of a step: its
    `no_sync()` before the others; nothing for a plain module."""
    if isinstance(model, nn.parallel.DistributedDataParallel) and not last:
        return model.no_sync()
    return nullcontext()


def train_resolutions(space: SearchSpace, wanted: tuple[int, ...]) -> tuple[int, ...]:
    """The resolutions a run trains at: those of the space in `wanted`, else all."""
    return tuple(r for r in space.resolutions if r in wanted) or space.resolutions


def sandwich_children(space: SearchSpace, seed: int, step: int, num_random: int,
                      paired: bool = True,
                      resolutions: tuple[int, ...] | None = None) -> list[Arch]:
    """The children of one step, the same on every rank: largest (highest resolution),
    `num_random` random ones, smallest (lowest resolution), over `resolutions` (default:
    the space's). `paired`: the random ones take the resolutions between the extremes,
    each once per step where the counts allow, in random order (BigNAS supplement C);
    else each draws any of them."""
    rng = np.random.default_rng([seed, step])
    res = sorted(resolutions or space.resolutions)
    rand = [space.sample(rng) for _ in range(num_random)]
    if num_random and (paired or res != sorted(space.resolutions)):
        middle = (res[1:-1] or res) if paired else res  # two or fewer: draw any
        need = -(-num_random // len(middle))
        order = np.concatenate([rng.permutation(middle) for _ in range(need)])[:num_random]
        rand = [replace(a, resolution=int(r)) for a, r in zip(rand, order)]
    return [replace(space.max_arch(), resolution=res[-1]), *rand,
            replace(space.min_arch(), resolution=res[0])]


def sandwich_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                  y: torch.Tensor, children: list[Arch], cfg: TrainConfig,
                  dropout: float, candidates: dict[int, list[Arch]] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """One training step: the first child (the largest) learns the labels, with label
    smoothing and dropout; every other child learns its detached soft labels (inplace
    distillation, loss `cfg.kd`, plus `cfg.kd_labels` times the labels' loss). Each
    child's backward adds to the gradients, then clipping and one optimizer step.
    `model` is the supernet or DDP around it.
    `candidates[i]`, where given, replaces child i by the one of them that
    `cfg.sampling` picks by distillation loss on this batch (attentive sampling).
    Returns the largest child's loss and the mean distillation loss, detached."""
    if None in (cfg.label_smoothing, cfg.grad_clip, cfg.kd_labels):  # fresh from the user
        cfg = with_recipe(cfg)
    smoothing, clip, labels = cfg.label_smoothing, cfg.grad_clip, cfg.kd_labels
    assert smoothing is not None and clip is not None and labels is not None  # with_recipe
    opt.zero_grad(set_to_none=True)
    ddp = isinstance(model, nn.parallel.DistributedDataParallel)
    last = len(children) - 1

    def sync(i: int) -> AbstractContextManager[None]:
        return _backward_context(model, i == last)

    def logits(arch: Arch, dropout: float = 0.0) -> torch.Tensor:
        with autocast(x.device, cfg.bf16):
            return model(at_resolution(x, arch.resolution, cfg.channels_last), arch,
                         dropout=dropout).float()

    big, *rest = children
    with sync(0):
        out = logits(big, dropout)
        loss = F.cross_entropy(out, y, label_smoothing=smoothing)
        loss.backward()
    soft = out.detach().softmax(1)  # inplace distillation: the largest child teaches
    kd_sum = torch.zeros((), device=x.device)
    for i, arch in enumerate(rest, 1):
        if candidates and i in candidates:
            arch = attentive_pick(candidates[i], logits, soft, cfg, ddp)
        with sync(i):
            out = logits(arch)
            kd = distill_loss(cfg.kd, out, soft)
            if labels:  # Once-for-All's form: the labels too, not the teacher alone
                (kd + labels * F.cross_entropy(out, y, label_smoothing=smoothing)).backward()
            else:
                kd.backward()
        kd_sum += kd.detach()
    if clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return loss.detach(), kd_sum / max(len(rest), 1)


def attentive_pick(pool: list[Arch], logits: Callable[[Arch], torch.Tensor],
                   soft: torch.Tensor, cfg: TrainConfig, ddp: bool) -> Arch:
    """The child of `pool` that cfg.sampling picks by its distillation loss on this
    batch; under DDP the losses are summed over the processes, so all pick alike."""
    with torch.no_grad():
        losses = torch.stack([distill_loss(cfg.kd, logits(a), soft) for a in pool])
        if ddp:
            dist.all_reduce(losses)
    return pool[pick(losses.tolist(), cfg.sampling)]


def single_path_children(space: SearchSpace, seed: int, step: int, fair: bool = False,
                         num_random: int = 2) -> list[Arch]:
    """The children of one step, the same on every rank: `num_random` uniform children
    (at least one), or (fair) one per choice of the widest gene, each gene's choices
    shuffled across the children (a gene with fewer choices repeats a fresh shuffle);
    then the smallest child."""
    rng = np.random.default_rng([seed, step])
    if not fair:
        drawn = [space.sample(rng) for _ in range(max(1, num_random))]
    else:
        n = space.n_choices()
        m = int(n.max())
        cols = [np.concatenate([rng.permutation(k) for _ in range(math.ceil(m / k))])[:m]
                for k in n]
        drawn = [space.decode([c[j] for c in cols]) for j in range(m)]
    smallest = space.min_arch()
    return drawn + ([smallest] if smallest not in drawn else [])


def single_path_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                     y: torch.Tensor, children: list[Arch], cfg: TrainConfig,
                     dropout: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One step: every child learns the labels (label smoothing, dropout), the gradients
    add up, then clipping and one optimizer step. Returns the mean loss and a zero
    distillation loss (the log keeps one format for both families)."""
    smoothing, clip = cfg.label_smoothing, cfg.grad_clip
    assert smoothing is not None and clip is not None  # the recipe applied (make_step's)
    opt.zero_grad(set_to_none=True)
    total = torch.zeros((), device=x.device)
    for i, arch in enumerate(children):
        with _backward_context(model, i == len(children) - 1):
            with autocast(x.device, cfg.bf16):
                out = model(at_resolution(x, arch.resolution, cfg.channels_last), arch,
                            dropout=dropout).float()
            loss = F.cross_entropy(out, y, label_smoothing=smoothing)
            loss.backward()
        total += loss.detach()
    if clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return total / len(children), torch.zeros((), device=x.device)


def training_space(space: SearchSpace, els: bool, fair: bool,
                   method: str = "sandwich") -> SearchSpace:
    """The space a run trains: ELS or pure skips (layer-wise only); ValueError naming the
    option (fair, method) when it does not apply to the space's family."""
    if fair and space.family != "layerwise":
        raise ValueError(f"fair: strict fairness (--fair) needs a layer-wise space; "
                         f"{space.name!r} is stage-wise (sandwich rule)")
    if method != "sandwich" and space.family == "layerwise":
        raise ValueError(f"method: {method} needs a stage-wise space; {space.name!r} is "
                         f"layer-wise (single path)")
    return with_els(space, els)


def make_step(space: SearchSpace, cfg: TrainConfig, total_steps: int) -> Step:
    """The training step of `space`'s family with `cfg` (recipe applied), chosen once:
    it draws the step's children from (seed, step) and trains them."""
    dropout = space.dropout if cfg.dropout is None else cfg.dropout
    if space.family == "layerwise":
        def single_path(model, opt, x, y, step):
            kids = single_path_children(space, cfg.seed, step, cfg.fair, cfg.num_random)
            return single_path_step(model, opt, x, y, kids, cfg, dropout)
        return single_path

    # attentive sampling ranks the random children of the sandwich rule only
    attentive = cfg.sampling != "uniform" and cfg.method == "sandwich"

    def stage_wise(model, opt, x, y, step):
        kids = stage_children(space, cfg, step, total_steps)
        pools = None
        if attentive:
            pools = {i: attentive_candidates(space, a, cfg.seed, step, i, cfg.candidates)
                     for i, a in enumerate(kids[1:-1], 1)}
        return sandwich_step(model, opt, x, y, kids, cfg, dropout, pools)
    return stage_wise


def stage_children(space: SearchSpace, cfg: TrainConfig, step: int,
                   total_steps: int) -> list[Arch]:
    """The children step `step` of `total_steps` trains in a stage-wise space (`cfg` with
    its recipe applied), largest first, before attentive sampling: the sandwich rule's
    (the largest alone during the teacher warm-up), or progressive shrinking's (the phase
    of the step's epoch elastic, the rest at their largest; the largest alone in the first
    phase). `benchmarks/choice_counts.py` replays them."""
    assert (cfg.epochs is not None and cfg.teacher_warmup is not None  # recipe applied
            and cfg.resolutions is not None)
    res = train_resolutions(space, cfg.resolutions)
    paired = cfg.res_sampling == "paired"
    if cfg.method == "progressive-shrinking":
        phase = phase_at(cfg.epochs, step * cfg.epochs // total_steps)
        kids = sandwich_children(phase_space(space, phase.elastic), cfg.seed, step,
                                 cfg.num_random, paired, res)
        return kids if phase.elastic else kids[:1]
    kids = sandwich_children(space, cfg.seed, step, cfg.num_random, paired, res)
    return warmup_children(kids, step, round(cfg.teacher_warmup * total_steps))
