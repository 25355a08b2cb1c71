"""Training recipes: the published hyper-parameters of BigNAS and AttentiveNAS, and ours
for small CPU runs. A recipe fills the TrainConfig fields left unset (None); flags win.

The learning rate is given at the recipe's batch size and scaled linearly with the
batch actually used (Goyal et al.'s rule, which both papers' code applies), unless
`lr` itself is set. Where a value comes from is said next to it: "BigNAS" (the
paper's slides and supplement), "EfficientNet" (whose training setup BigNAS adopts),
"AttentiveNAS repo" (configs/train_attentive_nas_models.yml), "ours".
"""

from __future__ import annotations

from dataclasses import dataclass


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
    # training resolutions, those of the space that are listed here; () or none listed
    # in the space: all of the space's
    resolutions: tuple[int, ...] = ()


RECIPES: dict[str, Recipe] = {
    # ours: sized for a few CPU minutes on 2 cores (digits, the tiny space). Teacher
    # warm-up (Once-for-All's first stage) for the first quarter and a decay that reaches
    # the floor at the end narrowed the sliced-vs-alone gap at 8 CIFAR epochs from 6.6 to
    # 2.3 points (benchmarks/cifar_quality.py, README).
    "small": Recipe(epochs=8, batch_size=64, lr=0.1, optimizer="sgd", schedule="exp",
                    warmup_epochs=1.0, weight_decay=5e-5, label_smoothing=0.1, dropout=None,
                    grad_clip=5.0, teacher_warmup=0.25, floor_at=1.0, sampling="uniform"),
    # BigNAS: TF-style RMSProp, LR 0.256 at batch 4096 decayed x0.97 every 2.4 epochs,
    # label smoothing 0.1, 5 warm-up epochs (all EfficientNet's set-up, which BigNAS
    # adopts), held at 5% of the initial LR (BigNAS supplement B), weight decay 1e-5 and
    # dropout 0.2 on the largest child only (BigNAS slides), training at 192/224/288/320
    # (BigNAS supplement C), 360 epochs (ours: the seeds give none; the decay reaches its
    # floor at epoch 241), no clipping.
    "bignas": Recipe(epochs=360, batch_size=4096, lr=0.256, optimizer="rmsprop",
                     schedule="bignas", warmup_epochs=5.0, weight_decay=1e-5,
                     label_smoothing=0.1, dropout=0.2, grad_clip=0.0, teacher_warmup=0.0,
                     floor_at=2 / 3, sampling="uniform", resolutions=(192, 224, 288, 320)),
    # AttentiveNAS repo: SGD Nesterov 0.9, base LR 0.1 at its batch of 2048 (32 x 64
    # GPUs; its own rescaling is commented out), warm-up 5 of 360 epochs then cosine to
    # 0, weight decay 1e-5 (none on BN and biases), label smoothing 0.1, dropout 0.2,
    # gradient clipping at 1.0, best-up sampling of 3 candidates (its "BestUp-3"
    # config). Its drop-connect 0.2 and AutoAugment are not implemented here.
    "attentivenas": Recipe(epochs=360, batch_size=2048, lr=0.1, optimizer="sgd",
                           schedule="cosine", warmup_epochs=5.0, weight_decay=1e-5,
                           label_smoothing=0.1, dropout=0.2, grad_clip=1.0, teacher_warmup=0.0,
                           floor_at=2 / 3, sampling="best-up"),
}

RECIPE_FIELDS = ("epochs", "batch_size", "lr", "optimizer", "schedule", "warmup_epochs",
                 "weight_decay", "label_smoothing", "grad_clip", "teacher_warmup", "floor_at",
                 "sampling", "resolutions")


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
