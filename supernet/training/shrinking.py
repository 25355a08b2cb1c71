"""Once-for-All's progressive shrinking (Cai et al., ICLR 2020), as a second training method
for stage-wise spaces: train the largest child, then open the elastic kernel, then depth,
then expand ratio and width, each phase distilled from the largest child.

OFA's ImageNet schedule gives the phases 180, 120, 25 + 120 and 25 + 120 epochs (the
largest child, kernel, depth in two steps, expand in two steps). We keep those shares of
the run's epochs, 180 : 120 : 145 : 145 of 590, each phase at least one epoch, and open
each phase's dimensions at once (OFA's two-step depth and expand phases widen the choices
gradually; at our epoch counts a step would be under an epoch). Resolution is elastic
throughout, as in OFA. Within a phase the step is the sandwich rule on the phase's space:
the largest child on the labels, the smallest and random children distilled from it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..spaces.space import SearchSpace

# (phase, the dimensions elastic from it on, OFA's epochs for it)
PHASES: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("largest", (), 180),
    ("kernel", ("kernel",), 120),
    ("depth", ("kernel", "depth"), 145),
    ("expand", ("kernel", "depth", "expand", "width"), 145),
)
METHODS = ("sandwich", "progressive-shrinking")


@dataclass(frozen=True)
class Phase:
    """One phase of a run: its name, its first and last epoch (0-based, end exclusive)
    and the dimensions that are elastic in it."""

    name: str
    start: int
    end: int
    elastic: tuple[str, ...]


def phases(epochs: int) -> list[Phase]:
    """The run's phases: OFA's shares of `epochs`, in order, each at least one epoch
    (ValueError below one epoch per phase)."""
    if epochs < len(PHASES):
        raise ValueError(f"epochs: {epochs} is too few for progressive shrinking; it needs "
                         f"at least {len(PHASES)} (one per phase: "
                         f"{', '.join(p[0] for p in PHASES)})")
    total = sum(p[2] for p in PHASES)
    bounds, acc = [0], 0
    for i, (_, _, share) in enumerate(PHASES):
        acc += share
        # rounded shares, then pushed so that every phase keeps at least one epoch
        end = round(epochs * acc / total)
        end = max(end, bounds[-1] + 1)
        end = min(end, epochs - (len(PHASES) - 1 - i))
        bounds.append(end)
    bounds[-1] = epochs
    return [Phase(name, bounds[i], bounds[i + 1], elastic)
            for i, (name, elastic, _) in enumerate(PHASES)]


def phase_at(epochs: int, epoch: int) -> Phase:
    """The phase that epoch `epoch` (0-based) of an `epochs`-epoch run belongs to."""
    for p in phases(epochs):
        if p.start <= epoch < p.end:
            return p
    raise ValueError(f"epoch: {epoch} is outside the run's 0..{epochs - 1}")


def phase_space(space: SearchSpace, elastic: tuple[str, ...]) -> SearchSpace:
    """`space` with only the `elastic` dimensions (kernel, depth, expand, width) free; the
    others fixed at their largest choice. Resolutions stay elastic."""
    def keep(dim: str, choices: tuple) -> tuple:
        return choices if dim in elastic else (max(choices),)

    stages = tuple(replace(s, widths=keep("width", s.widths), depths=keep("depth", s.depths),
                           kernels=keep("kernel", s.kernels), expands=keep("expand", s.expands))
                   for s in space.stages)
    return replace(space, stages=stages, stem_widths=keep("width", space.stem_widths),
                   head_widths=keep("width", space.head_widths))
