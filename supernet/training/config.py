"""Training configuration: `TrainConfig` (every `nas-train` flag) and the recipes that
fill the fields a user leaves unset: the published hyper-parameters of BigNAS and
AttentiveNAS, and ours for small CPU runs. Flags win over the recipe.

The learning rate is given at the recipe's batch size and scaled linearly with the
batch actually used (Goyal et al.'s rule, which both papers' code applies), unless
`lr` itself is set. Where a value comes from is said next to it: "BigNAS" (the
paper's slides and supplement), "EfficientNet" (whose training setup BigNAS adopts),
"AttentiveNAS repo" (configs/train_attentive_nas_models.yml), "ours".
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..utils import parse_device
from .distill import KD_LOSSES
from .logger import check_tensorboard
from .optim import FLOOR_AT, OPTIMIZERS, SCHEDULES
from .sampling import SAMPLINGS
from .shrinking import METHODS, phases


@dataclass(frozen=True)
class Recipe:
    """Values a recipe gives to the TrainConfig fields it controls."""

    epochs: int
    batch_size: int
    lr: float  # at `batch_size`; scaled linearly for another batch
    optimizer: str  # "sgd" (Nesterov, momentum 0.9) or "rmsprop" (TF-style, see train)
    schedule: str
    warmup_epochs: float
    weight_decay: float  # conv and linear weights: the largest child's L2 term, once a step
    label_smoothing: float  # the largest child's label loss only
    dropout: float | None  # the largest child only; None: the space's head dropout
    grad_clip: float
    teacher_warmup: float  # share of the run in which the largest child trains alone
    floor_at: float  # "exp" schedule: share of the decay span at which the floor is reached
    sampling: str  # random children: "uniform" or AttentiveNAS's "best-up" / "worst-up"
    res_sampling: str  # random children's resolutions: "paired" or "independent"
    kd_labels: float  # weight of the labels' loss beside each distilled child's soft labels
    # training resolutions, those of the space that are listed here; () or none listed
    # in the space: all of the space's
    resolutions: tuple[int, ...] = ()


RECIPES: dict[str, Recipe] = {
    # ours: sized for a few CPU minutes on 2 cores (digits, the tiny space). Teacher
    # warm-up (Once-for-All's first stage) for the first quarter and a decay that reaches
    # the floor at the end narrowed the sliced-vs-alone gap at 8 CIFAR epochs from 6.6 to
    # 2.3 points (benchmarks/cifar_quality.py, docs/benchmarks.md). Random children at
    # any resolution and the labels beside the soft labels (a short run's teacher is
    # weak) narrowed it further (issue 20, same page).
    "small": Recipe(epochs=8, batch_size=64, lr=0.1, optimizer="sgd", schedule="exp",
                    warmup_epochs=1.0, weight_decay=5e-5, label_smoothing=0.1, dropout=None,
                    grad_clip=5.0, teacher_warmup=0.25, floor_at=1.0, sampling="uniform",
                    res_sampling="independent", kd_labels=1.0),
    # BigNAS: TF-style RMSProp, LR 0.256 at batch 4096 decayed x0.97 every 2.4 epochs,
    # label smoothing 0.1, 5 warm-up epochs (all EfficientNet's set-up, which BigNAS
    # adopts), held at 5% of the initial LR (BigNAS supplement B), weight decay 1e-5 and
    # dropout 0.2 on the largest child only (BigNAS slides), training at 192/224/288/320
    # (BigNAS supplement C), 360 epochs (ours: the seeds give none; the decay reaches its
    # floor at epoch 241), no clipping.
    "bignas": Recipe(epochs=360, batch_size=4096, lr=0.256, optimizer="rmsprop",
                     schedule="bignas", warmup_epochs=5.0, weight_decay=1e-5,
                     label_smoothing=0.1, dropout=0.2, grad_clip=0.0, teacher_warmup=0.0,
                     floor_at=2 / 3, sampling="uniform", res_sampling="paired", kd_labels=0.0,
                     resolutions=(192, 224, 288, 320)),
    # AttentiveNAS repo: SGD Nesterov 0.9, base LR 0.1 at its batch of 2048 (32 x 64
    # GPUs; its own rescaling is commented out), warm-up 5 of 360 epochs then cosine to
    # 0, weight decay 1e-5 (none on BN and biases), label smoothing 0.1, dropout 0.2,
    # gradient clipping at 1.0, best-up sampling of 3 candidates (its "BestUp-3"
    # config). Its drop-connect 0.2 and AutoAugment are not implemented here.
    "attentivenas": Recipe(epochs=360, batch_size=2048, lr=0.1, optimizer="sgd",
                           schedule="cosine", warmup_epochs=5.0, weight_decay=1e-5,
                           label_smoothing=0.1, dropout=0.2, grad_clip=1.0, teacher_warmup=0.0,
                           floor_at=2 / 3, sampling="best-up", res_sampling="paired",
                           kd_labels=0.0),
}

RECIPE_FIELDS = ("epochs", "batch_size", "lr", "optimizer", "schedule", "warmup_epochs",
                 "weight_decay", "label_smoothing", "grad_clip", "teacher_warmup", "floor_at",
                 "sampling", "res_sampling", "kd_labels", "resolutions")


def recipe_values(name: str, given: dict) -> dict:
    """The values in force for recipe `name` given the fields set by the user (`given`:
    field -> value, None where unset): unset fields take the recipe's, and an unset LR
    is the recipe's scaled linearly to the batch size in force."""
    if name not in RECIPES:
        raise ValueError(f"recipe: {name!r} is not a recipe; allowed {list(RECIPES)}")
    r = RECIPES[name]
    out = {f: getattr(r, f) if given.get(f) is None else given[f] for f in RECIPE_FIELDS}
    if given.get("lr") is None and isinstance(out["batch_size"], int):
        out["lr"] = r.lr * out["batch_size"] / r.batch_size
    return out


RES_SAMPLING = ("paired", "independent")
# How a run is executed, not what it computes: a checkpoint made with other values
# of these still counts as the same run (resume on GPU, with more workers, ...).
# The space counts by its content (compared apart), not by its name or path.
RUN_ONLY = ("space", "out", "resume", "quiet", "workers", "device", "threads", "channels_last",
            "recipe",  # the recipe counts by the values it gave, not by its name
            "log_dir", "tensorboard")
# What a checkpoint made before these fields existed computed (so it stays resumable)
BEFORE_OPTIONS = {"kd": "ce", "kd_labels": 0.0, "teacher_warmup": 0.0, "sampling": "uniform",
                  "candidates": 3, "floor_at": FLOOR_AT, "optimizer": "sgd",
                  "res_sampling": "independent", "els": True, "fair": False, "resolutions": (),
                  "method": "sandwich"}


@dataclass
class TrainConfig:
    """Everything a supernet training run needs; `nas-train` flags map one to one."""

    space: str = "tiny"  # built-in space name or YAML path
    data: str = "digits"  # see supernet.data.datasets.DATA_SPECS
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
    # supplement C); "independent": random children draw any resolution; None: the recipe's
    res_sampling: str | None = None
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
    # TensorBoard scalars (loss, LR, images/s, val top-1) and the settings, beside log.csv;
    # None: when the tensorboard package (extra [tb]) is installed; True: an error without it
    tensorboard: bool | None = None
    log_dir: str | Path | None = None  # TensorBoard's folder; None: `out`
    # stage-wise spaces: "sandwich" (BigNAS, every dimension elastic from the start) or
    # "progressive-shrinking" (OFA: the largest child, then kernel, depth, expand and width
    # opened phase by phase; see supernet.training.shrinking)
    method: str = "sandwich"
    # layer-wise spaces (SCARLET-NAS) train single-path, not by the sandwich rule:
    els: bool = True  # skip choices as ELS (1x1 conv + BN); False: pure skips (ablation)
    fair: bool = False  # FairNAS strict fairness: every choice of every layer each step
    # Options against the gap between sliced children and their stand-alone twins,
    # measured by benchmarks/cifar_quality.py (README). The small recipe's values suit
    # short runs: teacher warm-up plus a decay that reaches the floor at the end
    # narrowed the gap at 8 epochs from 6.6 to 2.3 points; BigNAS's own recipe is
    # teacher_warmup 0 and the floor held for the last third.
    kd: str = "ce"  # distillation: "ce" to the soft labels (BigNAS), "alpha" (AlphaNet)
    # weight of the labels' cross-entropy added to every distilled child's loss: 0, soft
    # labels only (BigNAS); 1, labels plus soft labels (Once-for-All's kd_ratio 1);
    # None: the recipe's
    kd_labels: float | None = None
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
    assert (cfg.lr is not None and cfg.warmup_epochs is not None  # with_recipe fills them
            and cfg.label_smoothing is not None and cfg.weight_decay is not None
            and cfg.grad_clip is not None and cfg.teacher_warmup is not None
            and cfg.floor_at is not None and cfg.res_sampling is not None
            and cfg.kd_labels is not None)
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
        ("kd_labels", 0 <= cfg.kd_labels and math.isfinite(cfg.kd_labels), "a number >= 0"),
        ("teacher_warmup", 0 <= cfg.teacher_warmup < 1, "a share of the run within [0, 1)"),
        ("sampling", cfg.sampling in SAMPLINGS, f"one of {list(SAMPLINGS)}"),
        ("candidates", isinstance(cfg.candidates, int) and cfg.candidates >= 1,
         "an integer >= 1"),
        ("floor_at", 0 < cfg.floor_at <= 1, "within (0, 1]"),
        ("method", cfg.method in METHODS, f"one of {list(METHODS)}"),
        ("resolutions", isinstance(cfg.resolutions, tuple) and all(
            isinstance(r, int) and r > 0 for r in cfg.resolutions), "positive integers"),
    ]
    for name, ok, want in rules:
        if not ok:
            raise ValueError(f"{name}: {getattr(cfg, name)!r} is not allowed; expected {want}")
    parse_device(cfg.device)
    check_tensorboard(cfg.tensorboard)
    if cfg.method == "progressive-shrinking":
        assert cfg.epochs is not None  # an integer: the rules above checked it
        phases(cfg.epochs)  # one epoch per phase at least


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
