"""RMSProp as TensorFlow computes it, the optimizer EfficientNet and BigNAS train with.

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

import torch
from torch.optim import Optimizer


class RMSpropTF(Optimizer):
    """TF-style RMSProp (module docstring); weight decay is an L2 term added to the
    gradient, as TF's L2 regularisation of the loss gives."""

    def __init__(self, params, lr: float = 0.01, rho: float = 0.9, momentum: float = 0.9,
                 eps: float = 1e-3, weight_decay: float = 0.0):
        for name, v, ok in (("lr", lr, lr >= 0), ("rho", rho, 0 <= rho < 1),
                            ("momentum", momentum, 0 <= momentum < 1), ("eps", eps, eps > 0),
                            ("weight_decay", weight_decay, weight_decay >= 0)):
            if not ok:
                raise ValueError(f"RMSpropTF {name}: {v!r} is out of range")
        super().__init__(params, dict(lr=lr, rho=rho, momentum=momentum, eps=eps,
                                      weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
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
