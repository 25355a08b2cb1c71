"""Distillation losses of the sandwich: a child learns the largest child's soft labels.

`ce`: cross-entropy to the soft labels (BigNAS's inplace distillation; the same
gradient as KL(teacher || student)). `alpha`: AlphaNet's adaptive alpha-divergence
(Wang et al., ICML 2021): per image, the larger of D_alpha- and D_alpha+ between
teacher p and student q, so that a student is pushed both where it over- and where
it under-estimates the teacher's uncertainty. The importance ratio (p/q)^alpha is
clipped at `clip` (AlphaNet: alpha in [-1, 1], clip 5) to bound the gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

KD_LOSSES = ("ce", "alpha")
ALPHA_RANGE = (-1.0, 1.0)  # AlphaNet's alpha- and alpha+
ALPHA_CLIP = 5.0  # AlphaNet's bound on the importance ratio (p/q)^alpha

__all__ = ["ALPHA_CLIP", "ALPHA_RANGE", "KD_LOSSES", "adaptive_alpha", "alpha_divergence",
           "distill_loss", "soft_cross_entropy"]


def soft_cross_entropy(logits: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of student `logits` to teacher probabilities `soft`."""
    return F.cross_entropy(logits, soft)


def alpha_divergence(logits: torch.Tensor, soft: torch.Tensor, alpha: float,
                     clip: float = ALPHA_CLIP) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image D_alpha(p || q) of teacher `soft` (p) and student `logits` (q), and a
    surrogate whose gradient is the divergence's (with the ratio clipped), both (N,).

    D_alpha = (sum_c q^(1-alpha) p^alpha - 1) / (alpha (alpha - 1)); alpha -> 1 gives
    KL(p || q), alpha -> 0 gives KL(q || p). Its gradient in the student's
    log-probabilities is -q w / alpha, w = (p/q)^alpha, so the surrogate weights log q
    by the detached q * rho, rho = w / alpha + 1 / (alpha (alpha - 1)) (AlphaNet's
    form): a term proportional to q adds nothing through the softmax.
    """
    logq = logits.log_softmax(1)
    q, logp = logq.detach().exp(), soft.clamp_min(1e-30).log()
    log_ratio = logp - logq.detach()  # log p/q per class
    if abs(alpha - 1.0) < 1e-3:  # KL(p || q): rho = p/q, so the surrogate is CE(p, q)
        value = (soft * log_ratio).sum(1)
        rho = log_ratio.exp()
    elif abs(alpha) < 1e-3:  # KL(q || p), ratio clipped as the others
        ratio = log_ratio.exp().clamp(max=clip)
        value = -(q * ratio.log()).sum(1)
        rho = ratio.log() - 1.0
    else:
        w = (alpha * log_ratio).exp().clamp(max=clip)
        base = 1.0 / (alpha * (alpha - 1.0))
        value = (q * (w - 1.0)).sum(1) * base
        rho = w / alpha + base
    surrogate = -(q * rho * logq).sum(1)
    return value.detach(), surrogate


def adaptive_alpha(logits: torch.Tensor, soft: torch.Tensor,
                   alphas: tuple[float, float] = ALPHA_RANGE,
                   clip: float = ALPHA_CLIP) -> torch.Tensor:
    """AlphaNet's loss: per image the larger of D_alpha- and D_alpha+, batch mean. Its
    value is the divergence (what the log shows and attentive sampling ranks by), its
    gradient the surrogate's (a surrogate's value means nothing by itself)."""
    lo_v, lo_s = alpha_divergence(logits, soft, alphas[0], clip)
    hi_v, hi_s = alpha_divergence(logits, soft, alphas[1], clip)
    left = lo_v > hi_v
    value = torch.where(left, lo_v, hi_v).mean()
    surrogate = torch.where(left, lo_s, hi_s).mean()
    return surrogate - surrogate.detach() + value


def distill_loss(kind: str, logits: torch.Tensor, soft: torch.Tensor,
                 alphas: tuple[float, float] = ALPHA_RANGE,
                 clip: float = ALPHA_CLIP) -> torch.Tensor:
    """The distillation loss `kind` (one of KD_LOSSES) of a child's logits."""
    if kind == "ce":
        return soft_cross_entropy(logits, soft)
    if kind == "alpha":
        return adaptive_alpha(logits, soft, alphas, clip)
    raise ValueError(f"kd: {kind!r} is not allowed; expected one of {list(KD_LOSSES)}")
