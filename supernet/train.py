"""Supernet training as in BigNAS: the sandwich rule with inplace distillation.

Every step trains the largest child on the labels and the smallest plus N random
children on the largest child's detached soft labels, then takes one optimizer
step; by default the first quarter of the run trains the largest child alone
(teacher warm-up). LR: linear warm-up, exponential decay to 5% of the initial LR,
held there from `floor_at` of the run on (or cosine). A checkpoint every epoch;
a resumed run ends with the same weights as an uninterrupted one, because every
random draw follows from (seed, epoch/step). Under `torchrun` the same code runs
DDP, every rank training the same children.
"""

from __future__ import annotations

import csv
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LambdaLR,
    LinearLR,
    LRScheduler,
    SequentialLR,
)
from tqdm import tqdm

from .checkpoint import read_checkpoint, save_checkpoint
from .data import DataSet, batches, calib_batches, load_data, resize
from .distill import KD_LOSSES, distill_loss
from .distributed import Dist, convert_sync_bn, setup, teardown
from .evaluation import EvalResult, calibrate_bn, evaluate
from .model import ElasticSupernet
from .optim import RMSpropTF
from .recipes import RECIPE_FIELDS, RECIPES, recipe_values
from .sampling import SAMPLINGS, attentive_candidates, pick, warmup_children
from .single_path import single_path_children, single_path_step, training_space
from .space import Arch, SearchSpace, load_space, space_from_dict
from .utils import atomic_write, parse_device

__all__ = ["EvalResult", "TrainConfig", "calibrate_bn", "check_config", "evaluate",
           "make_optimizer", "make_scheduler", "param_groups", "resolved", "sandwich_children",
           "sandwich_step", "train"]

FLOOR = 0.05  # BigNAS: the LR decays exponentially, then stays at 5% of its initial value
FLOOR_AT = 2 / 3  # ...from 2/3 of the decay span on (0.97 every 2.4 epochs: 236 of 360)
SCHEDULES = ("exp", "bignas", "cosine")
BIGNAS_DECAY = (0.97, 2.4)  # "bignas" schedule: x0.97 every 2.4 epochs (EfficientNet, BigNAS)
OPTIMIZERS = ("sgd", "rmsprop")
RES_SAMPLING = ("paired", "independent")
# How a run is executed, not what it computes: a checkpoint made with other values
# of these still counts as the same run (resume on GPU, with more workers, ...).
# The space counts by its content (compared apart), not by its name or path.
RUN_ONLY = ("space", "out", "resume", "quiet", "workers", "device", "threads", "channels_last",
            "recipe")  # the recipe counts by the values it gave, not by its name
# What a checkpoint made before these fields existed computed (so it stays resumable)
BEFORE_OPTIONS = {"kd": "ce", "teacher_warmup": 0.0, "sampling": "uniform", "candidates": 3,
                  "floor_at": FLOOR_AT, "optimizer": "sgd", "res_sampling": "independent",
                  "els": True, "fair": False, "resolutions": ()}
LOG_FIELDS = ("epoch", "step", "loss", "kd_loss", "lr", "train_s", "eval_s",
              "val_top1_min", "val_top1_max", "skipped_images")


@dataclass
class TrainConfig:
    """Everything a supernet training run needs; `nas-train` flags map one to one."""

    space: str = "tiny"  # built-in space name or YAML path
    data: str = "digits"  # see supernet.data.DATA_SPECS
    # Fields left None take the recipe's value (supernet.recipes); set ones win.
    recipe: str = "small"  # "small" (ours, CPU minutes), "bignas", "attentivenas"
    epochs: int | None = None  # small: 8, the default digits run: ~2.5 min on 2 CPU cores
    batch_size: int | None = None  # global: split over the processes of a torchrun job
    lr: float | None = None  # None: the recipe's, scaled linearly to batch_size
    optimizer: str | None = None  # "sgd" (Nesterov, momentum 0.9) or "rmsprop"
    warmup_epochs: float | None = None
    num_random: int = 2
    seed: int = 0
    out: str | Path = "runs/supernet"
    resume: bool = False
    device: str = "cpu"
    # DataLoader processes decoding batches; None: 0 for in-memory data, the cores per
    # process (at most 8) for image folders
    workers: int | None = None
    label_smoothing: float | None = None
    weight_decay: float | None = None  # conv and linear weights only, once per step
    grad_clip: float | None = None  # max global gradient norm; 0 turns clipping off
    schedule: str | None = None  # "exp" (floor at 2/3 of the run), "bignas", "cosine"
    # "paired": the smallest child at the lowest resolution, the largest at the highest,
    # the random ones at the others, each once per step where the counts allow (BigNAS
    # supplement C); "independent": random children draw any resolution
    res_sampling: str = "paired"
    calib_images: int = 512  # training images per BN recalibration
    dropout: float | None = None  # largest child only; None: the recipe's, else the space's
    bf16: bool = False  # bfloat16 autocast
    # NHWC; None: on CPU only, where it measured 1.7x faster for these nets (on a GPU
    # every new child shape cost a slow first kernel choice with it)
    channels_last: bool | None = None
    sync_bn: bool = False  # batch statistics over all processes of a torchrun job
    # torch CPU threads; 0: half the cores per process (1 on 2 cores): two threads were
    # 1.5x faster on 2 idle cores but 5-10x slower on 2 cores shared with other jobs
    threads: int = 0
    quiet: bool = False  # no progress bar
    # layer-wise spaces (SCARLET-NAS) train single-path, not by the sandwich rule:
    els: bool = True  # skip choices as ELS (1x1 conv + BN); False: pure skips (ablation)
    fair: bool = False  # FairNAS strict fairness: every choice of every layer each step
    # Options against the gap between sliced children and their stand-alone twins,
    # measured by benchmarks/cifar_quality.py (README). The small recipe's values suit
    # short runs: teacher warm-up plus a decay that reaches the floor at the end
    # narrowed the gap at 8 epochs from 6.6 to 2.3 points; BigNAS's own recipe is
    # teacher_warmup 0 and the floor held for the last third.
    kd: str = "ce"  # distillation: "ce" to the soft labels (BigNAS), "alpha" (AlphaNet)
    teacher_warmup: float | None = None  # share of the run (its first steps): largest alone
    sampling: str | None = None  # random children: "uniform", "best-up", "worst-up"
    candidates: int = 3  # children ranked per random child by best-up / worst-up
    floor_at: float | None = None  # share of the decay span after which "exp" holds FLOOR
    # training resolutions (those of the space listed here; none listed: all the space's);
    # None: the recipe's (bignas: the supplement's four, {192, 224, 288, 320})
    resolutions: tuple[int, ...] | None = None


def with_recipe(cfg: TrainConfig) -> TrainConfig:
    """`cfg` with the fields left None filled from its recipe (flags win)."""
    if cfg.recipe not in RECIPES:
        raise ValueError(f"recipe: {cfg.recipe!r} is not allowed; expected one of "
                         f"{list(RECIPES)}")
    vals = recipe_values(cfg.recipe, {f: getattr(cfg, f) for f in RECIPE_FIELDS})
    dropout = RECIPES[cfg.recipe].dropout if cfg.dropout is None else cfg.dropout
    return replace(cfg, **vals, dropout=dropout)


def check_config(cfg: TrainConfig) -> None:
    """Raise ValueError naming the first field outside its allowed range."""
    cfg = with_recipe(cfg)
    rules = [
        ("epochs", isinstance(cfg.epochs, int) and cfg.epochs >= 1, "an integer >= 1"),
        ("batch_size", isinstance(cfg.batch_size, int) and cfg.batch_size >= 1,
         "an integer >= 1"),
        ("lr", cfg.lr > 0 and math.isfinite(cfg.lr), "a positive number"),
        ("warmup_epochs", 0 <= cfg.warmup_epochs, "a number >= 0"),
        ("num_random", isinstance(cfg.num_random, int) and cfg.num_random >= 0,
         "an integer >= 0"),
        ("seed", isinstance(cfg.seed, int) and cfg.seed >= 0, "an integer >= 0"),
        ("workers", cfg.workers is None or isinstance(cfg.workers, int) and cfg.workers >= 0,
         "an integer >= 0"),
        ("optimizer", cfg.optimizer in OPTIMIZERS, f"one of {list(OPTIMIZERS)}"),
        ("res_sampling", cfg.res_sampling in RES_SAMPLING, f"one of {list(RES_SAMPLING)}"),
        ("label_smoothing", 0 <= cfg.label_smoothing < 1, "within [0, 1)"),
        ("weight_decay", cfg.weight_decay >= 0, "a number >= 0"),
        ("grad_clip", cfg.grad_clip >= 0, "a number >= 0 (0: off)"),
        ("schedule", cfg.schedule in SCHEDULES, f"one of {list(SCHEDULES)}"),
        ("calib_images", isinstance(cfg.calib_images, int) and cfg.calib_images >= 1,
         "an integer >= 1"),
        ("dropout", cfg.dropout is None or 0 <= cfg.dropout < 1, "within [0, 1)"),
        ("threads", isinstance(cfg.threads, int) and cfg.threads >= 0, "an integer >= 0"),
        ("kd", cfg.kd in KD_LOSSES, f"one of {list(KD_LOSSES)}"),
        ("teacher_warmup", 0 <= cfg.teacher_warmup < 1, "a share of the run within [0, 1)"),
        ("sampling", cfg.sampling in SAMPLINGS, f"one of {list(SAMPLINGS)}"),
        ("candidates", isinstance(cfg.candidates, int) and cfg.candidates >= 1,
         "an integer >= 1"),
        ("floor_at", 0 < cfg.floor_at <= 1, "within (0, 1]"),
        ("resolutions", isinstance(cfg.resolutions, tuple) and all(
            isinstance(r, int) and r > 0 for r in cfg.resolutions), "positive integers"),
    ]
    for name, ok, want in rules:
        if not ok:
            raise ValueError(f"{name}: {getattr(cfg, name)!r} is not allowed; expected {want}")
    parse_device(cfg.device)


def resolved(cfg: TrainConfig) -> TrainConfig:
    """`cfg` with the recipe's values and its automatic choices made (channels_last,
    threads, workers; see TrainConfig): the values in force."""
    cfg = with_recipe(cfg)
    cpu = torch.device(cfg.device).type == "cpu"
    procs = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # set by torchrun
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    per_proc = max(1, (cores or 2) // procs)
    streamed = str(cfg.data).startswith("folder:")
    workers = cfg.workers if cfg.workers is not None else (min(8, per_proc) if streamed else 0)
    return replace(cfg, channels_last=cpu if cfg.channels_last is None else cfg.channels_last,
                   threads=cfg.threads or max(1, (cores or 2) // (2 * procs)), workers=workers)


def _seed(*keys: int) -> int:
    """A 63-bit seed mixed from integers, so every (seed, epoch/step, rank) draws anew."""
    return int(np.random.SeedSequence(list(keys)).generate_state(2, np.uint64)[0] >> 1)


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


def _at(x: torch.Tensor, resolution: int, channels_last: bool) -> torch.Tensor:
    x = resize(x, resolution)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def sandwich_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                  y: torch.Tensor, children: list[Arch], cfg: TrainConfig,
                  dropout: float, candidates: dict[int, list[Arch]] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """One training step: the first child (the largest) learns the labels, with label
    smoothing and dropout; every other child learns its detached soft labels (inplace
    distillation, loss `cfg.kd`). Each child's backward adds to the gradients, then
    clipping and one optimizer step. `model` is the supernet or DDP around it.
    `candidates[i]`, where given, replaces child i by the one of them that
    `cfg.sampling` picks by distillation loss on this batch (attentive sampling).
    Returns the largest child's loss and the mean distillation loss, detached."""
    if cfg.label_smoothing is None or cfg.grad_clip is None:  # a config fresh from the user
        cfg = with_recipe(cfg)
    opt.zero_grad(set_to_none=True)
    ddp = isinstance(model, nn.parallel.DistributedDataParallel)
    last = len(children) - 1

    def sync(i: int):  # DDP reduces the accumulated gradients once: in the last backward
        return model.no_sync() if ddp and i < last else nullcontext()

    def logits(arch: Arch, dropout: float = 0.0) -> torch.Tensor:
        with _autocast(x.device, cfg.bf16):
            return model(_at(x, arch.resolution, cfg.channels_last), arch,
                         dropout=dropout).float()

    big, *rest = children
    with sync(0):
        out = logits(big, dropout)
        loss = F.cross_entropy(out, y, label_smoothing=cfg.label_smoothing)
        loss.backward()
    soft = out.detach().softmax(1)  # inplace distillation: the largest child teaches
    kd_sum = torch.zeros((), device=x.device)
    for i, arch in enumerate(rest, 1):
        if candidates and i in candidates:
            arch = _attentive(candidates[i], logits, soft, cfg, ddp)
        with sync(i):
            kd = distill_loss(cfg.kd, logits(arch), soft)
            kd.backward()
        kd_sum += kd.detach()
    if cfg.grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return loss.detach(), kd_sum / max(len(rest), 1)


def _attentive(pool: list[Arch], logits, soft: torch.Tensor, cfg: TrainConfig,
               ddp: bool) -> Arch:
    """The child of `pool` that cfg.sampling picks by its distillation loss on this
    batch; under DDP the losses are summed over the processes, so all pick alike."""
    with torch.no_grad():
        losses = torch.stack([distill_loss(cfg.kd, logits(a), soft) for a in pool])
        if ddp:
            dist.all_reduce(losses)
    return pool[pick(losses.tolist(), cfg.sampling)]


def make_scheduler(opt: torch.optim.Optimizer, schedule: str, total_steps: int,
                   warmup_steps: int, steps_per_epoch: int = 1,
                   floor_at: float = FLOOR_AT) -> LRScheduler:
    """Per-step LR: linear warm-up to the initial LR, then exponential decay held at
    FLOOR: "exp" reaches it at `floor_at` of the decay span whatever the run's length
    (BigNAS's shape: FLOOR_AT), "bignas" decays x0.97 every 2.4 epochs (the published
    rate); or cosine to zero."""
    span = max(1, total_steps - warmup_steps)
    if schedule == "cosine":
        main: LRScheduler = CosineAnnealingLR(opt, T_max=span)
    else:
        if schedule == "bignas":
            rate, every = BIGNAS_DECAY
            gamma = rate ** (1 / (every * max(1, steps_per_epoch)))
        else:
            gamma = FLOOR ** (1 / max(1.0, floor_at * span))
        main = LambdaLR(opt, lambda t: max(FLOOR, gamma ** t))
    if warmup_steps <= 1:
        return main
    # steps 0..w-1 at lr/w, 2lr/w, ..., lr; the decay starts at step w
    warm = LinearLR(opt, start_factor=1 / warmup_steps, total_iters=warmup_steps - 1)
    return SequentialLR(opt, [warm, main], milestones=[warmup_steps])


def param_groups(net: nn.Module, weight_decay: float) -> list[dict]:
    """Optimizer groups: weight decay on conv and linear weights, none on BN and biases
    (decaying those only shrinks them)."""
    decay = [p for p in net.parameters() if p.ndim > 1]
    rest = [p for p in net.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": rest, "weight_decay": 0.0}]


@torch.no_grad()
def _grad_layout(net: nn.Module) -> None:
    """Give conv weights the strides their gradients arrive with under channels-last
    activations, before DDP lays its gradient buckets out after the parameters: else
    every step copies those gradients (and torch warns that strides do not match).
    Convs over more than one input channel get NHWC strides, spelled out even for 1x1
    kernels (where `contiguous(channels_last)` keeps NCHW ones); depthwise weights, whose
    sliced gradients arrive NCHW, stay as they are."""
    for p in net.parameters():
        if p.ndim == 4 and p.shape[1] > 1:
            _, c, h, w = p.shape
            t = torch.empty_strided(p.shape, (h * w * c, 1, w * c, c), dtype=p.dtype,
                                    device=p.device)
            p.data = t.copy_(p.data)


def make_optimizer(net: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum 0.9, or RMSProp as EfficientNet and BigNAS train
    (decay 0.9, momentum 0.9, epsilon 1e-3), over `param_groups`."""
    groups = param_groups(net, cfg.weight_decay)
    if cfg.optimizer == "rmsprop":  # TF's form: eps inside the root (supernet.optim)
        return RMSpropTF(groups, lr=cfg.lr, rho=0.9, momentum=0.9, eps=1e-3)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)


def _recipe(cfg: TrainConfig) -> dict[str, Any]:
    """The fields that decide what a run computes (see RUN_ONLY)."""
    return {k: v for k, v in asdict(cfg).items() if k not in RUN_ONLY}


def _previous(path: Path, cfg: TrainConfig, space: SearchSpace) -> dict | None:
    """The checkpoint to continue from (complete or resumable), None to start afresh;
    ValueError if `path` holds a run of another recipe."""
    if not path.exists():
        return None
    ck = read_checkpoint(path)
    # a field newer than the checkpoint counts at the value that run computed with
    old = {**_recipe(with_recipe(TrainConfig())), **BEFORE_OPTIONS, **ck.get("recipe", {})}
    new = _recipe(cfg)
    diff = [f"{k} {old.get(k)!r} -> {new[k]!r}" for k in new if old.get(k) != new[k]]
    if space_from_dict(ck["space"]) != space:
        diff.insert(0, f"space {ck['space'].get('name')!r} -> {space.name!r}")
    if diff:
        raise ValueError(f"out: {str(path)!r} holds a different run ({'; '.join(diff)}); "
                         "choose another out folder or remove it")
    return ck if ck.get("completed") or cfg.resume else None


def _write_log(path: Path, rows: list[dict]) -> None:
    """Write log.csv atomically from the whole history (kept in the checkpoint), so a
    resumed run's log never holds an epoch twice."""
    def write(f) -> None:
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        w.writeheader()
        w.writerows(rows)

    atomic_write(path, write)


def _on(loader, device: torch.device, channels_last: bool):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for x, y in loader:
        yield x.to(device, memory_format=fmt), y.to(device)


def _calibrated(net: ElasticSupernet, arch: Arch, data: DataSet, cfg: TrainConfig,
                device: torch.device, splits: dict[str, Any]) -> dict[str, EvalResult]:
    """Recalibrate BN for `arch` on the fixed training images, then evaluate each split."""
    bs = min(512, 2 * cfg.batch_size)  # one process evaluates: a bounded batch
    with _autocast(device, cfg.bf16):
        calibrate_bn(net, arch, _on(calib_batches(data, cfg.calib_images, bs, device=device,
                                                  workers=cfg.workers),
                                    device, cfg.channels_last), cfg.calib_images)
        return {name: evaluate(net, arch, _on(batches(s, data, bs, device=device,
                                                      workers=cfg.workers),
                                              device, cfg.channels_last))
                for name, s in splits.items()}


def _log_line(row: dict, epochs: int) -> str:
    return (f"epoch {row['epoch']:>3}/{epochs}  loss {row['loss']:.4f}  kd {row['kd_loss']:.4f}"
            f"  lr {row['lr']:.4g}  {row['train_s'] + row['eval_s']:.1f} s  val top-1 "
            f"min {100 * row['val_top1_min']:.2f}%  max {100 * row['val_top1_max']:.2f}%")


def train(cfg: TrainConfig) -> Path:
    """Train (or resume, or find already trained) the supernet of `cfg`; returns the
    path of the final checkpoint `<out>/supernet.pt`."""
    check_config(cfg)
    cfg = resolved(cfg)
    space = training_space(load_space(cfg.space), cfg.els, cfg.fair)
    # The split follows the seed too; the checkpoint stores both, so an evaluator can
    # rebuild the same held-out val split. Folders are only indexed here (streamed).
    data = load_data(cfg.data, space.base_resolution, cfg.seed)
    # The classifier follows the data; the space's class count is a default.
    space = replace(space, num_classes=data.num_classes)
    out = Path(cfg.out)
    path = out / "supernet.pt"
    prev = _previous(path, cfg, space)
    if prev is not None and prev.get("completed"):
        return path
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    d = setup(cfg.device)
    try:
        if cfg.batch_size % d.world or len(data.train) < cfg.batch_size:
            raise ValueError(f"batch_size: {cfg.batch_size} must divide over {d.world} "
                             f"processes and fit the {len(data.train)} training images")
        _run(cfg, space, data, d, out, prev)
    finally:
        teardown(d)
        torch.set_num_threads(threads)
    return path


def _run(cfg: TrainConfig, space: SearchSpace, data: DataSet, d: Dist, out: Path,
         prev: dict | None) -> None:
    torch.manual_seed(cfg.seed)  # weight initialisation
    net = ElasticSupernet(space)
    if prev is not None:
        net.load_state_dict(prev["state_dict"])
    if cfg.sync_bn and d.world > 1:
        convert_sync_bn(net)
    net.to(d.device)
    if cfg.channels_last:
        _grad_layout(net)
    model: nn.Module = net
    if d.world > 1:
        # The last backward of a step (the smallest child's) leaves layers idle. Buffers
        # (BN running statistics) follow rank 0: training does not read them.
        model = nn.parallel.DistributedDataParallel(
            net, device_ids=[d.device] if d.device.type == "cuda" else None,
            find_unused_parameters=True)
    steps = len(data.train) // cfg.batch_size
    opt = make_optimizer(net, cfg)
    sched = make_scheduler(opt, cfg.schedule, cfg.epochs * steps,
                           round(min(cfg.warmup_epochs, cfg.epochs) * steps), steps,
                           cfg.floor_at)
    teacher_steps = round(cfg.teacher_warmup * cfg.epochs * steps)
    train_res = train_resolutions(space, cfg.resolutions)
    history: list[dict] = []
    start, seconds = 0, 0.0
    if prev is not None:
        opt.load_state_dict(prev["optimizer"])
        sched.load_state_dict(prev["scheduler"])
        history, start, seconds = list(prev["history"]), prev["epoch"], prev["seconds"]
    dropout = space.dropout if cfg.dropout is None else cfg.dropout
    lead = d.rank == 0
    if lead and not cfg.quiet and start < cfg.epochs:
        print(_header(cfg, space, data, d, dropout), flush=True)
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        net.train()
        loader = batches(data.train, data, cfg.batch_size, seed=_seed(cfg.seed, epoch),
                         train=True, drop_last=True, rank=d.rank, world=d.world,
                         workers=cfg.workers, device=d.device)
        bar = tqdm(loader, total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=cfg.quiet or not lead, dynamic_ncols=True)
        sums = torch.zeros(3, dtype=torch.float64, device=d.device)
        for i, (x, y) in enumerate(bar):
            step = epoch * steps + i
            pools = None
            if space.family == "layerwise":  # SCARLET-NAS: single path, labels only
                children = single_path_children(space, cfg.seed, step, cfg.fair,
                                                cfg.num_random)
                step_fn = single_path_step
            else:
                children = warmup_children(
                    sandwich_children(space, cfg.seed, step, cfg.num_random,
                                      cfg.res_sampling == "paired", train_res),
                    step, teacher_steps)
                if cfg.sampling != "uniform":
                    pools = {i: attentive_candidates(space, a, cfg.seed, step, i,
                                                     cfg.candidates)
                             for i, a in enumerate(children[1:-1], 1)}
                step_fn = sandwich_step
            torch.manual_seed(_seed(cfg.seed, step, d.rank))  # dropout masks, resumable
            x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
            loss, kd = (step_fn(model, opt, x, y, children, cfg, dropout) if pools is None
                        else sandwich_step(model, opt, x, y, children, cfg, dropout, pools))
            sched.step()
            short = cfg.batch_size // d.world - len(y)  # unreadable images skipped
            sums += torch.stack([loss.double(), kd.double(),
                                 torch.tensor(float(short), dtype=torch.float64,
                                              device=d.device)])
            if i % 10 == 0 and not bar.disable:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        if d.world > 1:
            dist.all_reduce(sums)
        skipped = int(sums[2].item())
        sums = (sums / (steps * d.world)).tolist()
        train_s = time.perf_counter() - t0
        if lead:
            t1 = time.perf_counter()
            last = epoch + 1 == cfg.epochs
            res = {}
            for tag, arch in (("min", space.min_arch()), ("max", space.max_arch())):
                splits = {"val": data.val}
                if last and data.test is not None:
                    splits["test"] = data.test
                res[tag] = _calibrated(net, arch, data, cfg, d.device, splits)
            eval_s = time.perf_counter() - t1
            row = {"epoch": epoch + 1, "step": (epoch + 1) * steps, "loss": sums[0],
                   "kd_loss": sums[1], "lr": opt.param_groups[0]["lr"], "train_s": train_s,
                   "eval_s": eval_s, "val_top1_min": res["min"]["val"].top1,
                   "val_top1_max": res["max"]["val"].top1, "skipped_images": skipped}
            history.append(row)
            seconds += train_s + eval_s
            result = None
            if last:
                split = "test" if data.test is not None else "val"
                result = {"split": split, "seconds": seconds,
                          **{f"{tag}_arch": str(a) for tag, a in
                             (("min", space.min_arch()), ("max", space.max_arch()))},
                          **{f"{tag}_top1": res[tag][split].top1 for tag in res},
                          **{f"{tag}_loss": res[tag][split].loss for tag in res}}
            save_checkpoint(out / "supernet.pt", net, config=_plain(cfg),
                            recipe=_recipe(cfg), data=cfg.data, seed=cfg.seed,
                            epoch=epoch + 1, step=(epoch + 1) * steps, completed=last,
                            optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                            history=history, seconds=seconds, result=result,
                            world_size=d.world)
            _write_log(out / "log.csv", history)
            (tqdm.write if not bar.disable else print)(_log_line(row, cfg.epochs))
        if d.world > 1:
            dist.barrier()  # the others wait while rank 0 evaluates and saves


def _header(cfg: TrainConfig, space: SearchSpace, data: DataSet, d: Dist,
            dropout: float) -> str:
    """The values in force, once at the start of the log."""
    return (f"nas-train: space {space.name} ({space.num_classes} classes, base "
            f"{space.base_resolution} px), data {data.name} ({len(data.train)} train"
            f"{', streamed' if data.streamed else ''}, {cfg.workers} workers), recipe "
            f"{cfg.recipe}: {cfg.optimizer} lr {cfg.lr:g} batch {cfg.batch_size} x {d.world} "
            f"proc, {cfg.epochs} epochs, warm-up {cfg.warmup_epochs:g}, schedule "
            f"{cfg.schedule}, weight decay {cfg.weight_decay:g}, label smoothing "
            f"{cfg.label_smoothing:g}, dropout {dropout:g}, clip {cfg.grad_clip:g}, "
            f"{cfg.num_random} random children ({cfg.res_sampling} resolutions)")


def _plain(cfg: TrainConfig) -> dict[str, Any]:
    """The config as plain values (checkpoints load with weights_only=True)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
