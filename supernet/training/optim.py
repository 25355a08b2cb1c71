"""Optimizer and LR schedule of supernet training: SGD or RMSProp over decay / no-decay
groups, warm-up then decay; and RMSProp as TensorFlow computes it, the optimizer
EfficientNet and BigNAS train with.

torch's RMSprop adds eps outside the square root and starts the mean square at 0; TF's
(tf.compat.v1.train.RMSPropOptimizer) adds eps inside the root, starts the mean square
at 1, and puts the learning rate inside the momentum buffer:

    ms  <- rho * ms + (1 - rho) * g^2
    mom <- momentum * mom + lr * g / sqrt(ms + eps)
    w   <- w - mom

With eps = 1e-3 (EfficientNet's value) the two differ by far more than rounding: a
gradient of 1e-3 is scaled by ~30 in TF's form and by ~1 in torch's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LambdaLR,
    LinearLR,
    LRScheduler,
    SequentialLR,
)

if TYPE_CHECKING:
    from .config import TrainConfig

FLOOR = 0.05  # BigNAS: the LR decays exponentially, then stays at 5% of its initial value
FLOOR_AT = 2 / 3  # ...from 2/3 of the decay span on (0.97 every 2.4 epochs: 236 of 360)
SCHEDULES = ("exp", "bignas", "cosine")
BIGNAS_DECAY = (0.97, 2.4)  # "bignas" schedule: x0.97 every 2.4 epochs (EfficientNet, BigNAS)
OPTIMIZERS = ("sgd", "rmsprop")


class RMSpropTF(Optimizer):
    """TF-style RMSProp (module docstring); weight decay is an L2 term added to the
    gradient, as TF's L2 regularisation of the loss gives."""

    def __init__(self, params: Iterable[Any], lr: float = 0.01, rho: float = 0.9,
                 momentum: float = 0.9, eps: float = 1e-3, weight_decay: float = 0.0):
        for name, v, ok in (("lr", lr, lr >= 0), ("rho", rho, 0 <= rho < 1),
                            ("momentum", momentum, 0 <= momentum < 1), ("eps", eps, eps > 0),
                            ("weight_decay", weight_decay, weight_decay >= 0)):
            if not ok:
                raise ValueError(f"RMSpropTF {name}: {v!r} is out of range")
        super().__init__(params, dict(lr=lr, rho=rho, momentum=momentum, eps=eps,
                                      weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # untyped like torch's optimizers (the base has overloads)
        """One update of every parameter with a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, rho, mu, eps, wd = (group[k] for k in
                                    ("lr", "rho", "momentum", "eps", "weight_decay"))
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad if wd == 0 else p.grad.add(p, alpha=wd)
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.ones_like(p)  # TF starts it at 1, not 0
                    state["momentum_buffer"] = torch.zeros_like(p)
                ms, mom = state["square_avg"], state["momentum_buffer"]
                ms.mul_(rho).addcmul_(g, g, value=1 - rho)
                mom.mul_(mu).addcdiv_(g, ms.add(eps).sqrt_(), value=lr)
                p.sub_(mom)
        return loss


def param_groups(net: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Optimizer groups: weight decay on conv and linear weights, none on BN and biases
    (decaying those only shrinks them)."""
    decay = [p for p in net.parameters() if p.ndim > 1]
    rest = [p for p in net.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": rest, "weight_decay": 0.0}]


def make_optimizer(net: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum 0.9, or RMSProp as EfficientNet and BigNAS train
    (decay 0.9, momentum 0.9, epsilon 1e-3), over `param_groups`."""
    assert cfg.lr is not None and cfg.weight_decay is not None  # the recipe applied
    groups = param_groups(net, cfg.weight_decay)
    if cfg.optimizer == "rmsprop":  # TF's form: eps inside the root (supernet.training.optim)
        return RMSpropTF(groups, lr=cfg.lr, rho=0.9, momentum=0.9, eps=1e-3)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)


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
