"""Which children a sandwich step trains, beyond the uniform draw of `sandwich_children`.

Teacher warm-up (Once-for-All's first stage): for the first steps of the budget only
the largest child trains, on the labels, so the teacher is already good when the
others start to learn its soft labels.

Attentive sampling (AttentiveNAS, Wang et al., CVPR 2021): each random child is
replaced by the best (`best-up`) or worst (`worst-up`) of k candidates of about its
cost, ranked by their distillation loss on the step's minibatch. AttentiveNAS draws
the candidates at one FLOPs target; here they are the k-1 draws (of 16 per slot)
nearest the random child's MACs, at its resolution, so the ranking compares children
of one cost rather than small against large. Every draw follows from (seed, step,
slot), so a resumed run trains the same children.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..spaces.cost import macs
from ..spaces.space import Arch, SearchSpace

SAMPLINGS = ("uniform", "best-up", "worst-up")
DRAWS = 16  # random draws per slot from which the k-1 nearest in MACs are kept

__all__ = ["DRAWS", "SAMPLINGS", "attentive_candidates", "pick", "warmup_children"]


def warmup_children(children: list[Arch], step: int, warmup_steps: int) -> list[Arch]:
    """The children of `step`: only the first (the largest) while `step` is within
    the teacher warm-up, all of them afterwards."""
    return children[:1] if step < warmup_steps else children


def attentive_candidates(space: SearchSpace, arch: Arch, seed: int, step: int, slot: int,
                         k: int) -> list[Arch]:
    """`arch` and k-1 other children at its resolution, the nearest in MACs of DRAWS
    seeded draws (their own stream: the uniform draws of the step stay as they were)."""
    if k <= 1:
        return [arch]
    rng = np.random.default_rng([seed, step, slot, 0xA77])
    target = macs(space, arch)
    pool = [replace(space.sample(rng), resolution=arch.resolution) for _ in range(DRAWS)]
    pool = [a for a in dict.fromkeys(pool) if a != arch]  # distinct, in draw order
    pool.sort(key=lambda a: abs(macs(space, a) - target))  # stable: ties keep draw order
    return [arch, *pool[:k - 1]]


def pick(losses: Sequence[float], sampling: str | None) -> int:
    """Index of the candidate to train: lowest loss for best-up, highest for worst-up
    (the first on ties)."""
    if sampling == "best-up":
        return int(np.argmin(losses))
    if sampling == "worst-up":
        return int(np.argmax(losses))
    raise ValueError(f"sampling: {sampling!r} does not rank candidates; expected "
                     f"best-up or worst-up")
