"""BigNAS coarse-to-fine search.

Coarse: a grid of resolutions x stage-wise depth, width and kernel configurations
(BigNAS: 5 x 4 x 2 x 4), filtered by the cost constraints and evaluated. Fine: for each
MACs target (or just the constraints), a local search from the best coarse children
under it that changes one gene at a time (a stage's depth, width, kernel or expand
ratio, or the resolution, stem or head) and moves to any improvement, until the budget
is spent.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from supernet.spaces.space import Arch, SearchSpace

from ..session import Session
from ..units import format_count
from .base import Strategy, ranked


@dataclass
class Options:
    """Coarse-to-fine settings: the grid (BigNAS: 5 x 4 x 2 x 4), then the local search."""

    resolutions: int = 5
    depths: int = 4
    widths: int = 2
    kernels: int = 4
    coarse_share: float = 0.5  # at most this share of the budget on the grid
    top_k: int = 3  # local searches start from the best k coarse children of each target
    batch: int = 8  # neighbours evaluated per step


def _levels(n_options: int, n_configs: int) -> list[int]:
    """Indices spreading `n_configs` configurations evenly over `n_options` choices."""
    if n_configs <= 1:
        return [n_options - 1]
    return [round(j / (n_configs - 1) * (n_options - 1)) for j in range(n_configs)]


def coarse_grid(space: SearchSpace, resolutions: int = 5, depths: int = 4, widths: int = 2,
                kernels: int = 4) -> list[Arch]:
    """The BigNAS coarse grid, each configuration applied stage-wise, duplicates dropped.

    Depth configuration j puts every stage at the j-th of `depths` evenly spread points of
    its own depth range; width configuration j does the same for stem, stage widths,
    expand ratios and head together; kernel configuration j gives the largest kernel to the
    last round(j / (kernels - 1) * K) of the K stages with a kernel choice (late stages run
    at low resolution, where large kernels are cheap) and the smallest to the others.
    """
    n_res = len(space.resolutions)
    res_idx = sorted(set(_levels(n_res, min(resolutions, n_res))))
    elastic = [i for i, s in enumerate(space.stages) if len(s.kernels) > 1]
    out: dict[Arch, None] = {}
    for r, d, w, k in itertools.product(res_idx, range(depths), range(widths), range(kernels)):
        vec = [r, _levels(len(space.stem_widths), widths)[w]]
        large = set(elastic[len(elastic) - _levels(len(elastic) + 1, kernels)[k]:])
        for i, s in enumerate(space.stages):
            big_kernel = i in large
            kernel, expand = (len(s.kernels) - 1 if big_kernel else 0,
                              _levels(len(s.expands), widths)[w])
            vec += [_levels(len(s.widths), widths)[w], _levels(len(s.depths), depths)[d]]
            # OFA's per-layer genes: every layer of the stage takes the stage's choice
            vec += [kernel, expand] * (max(s.depths) if space.per_layer else 1)
        vec.append(_levels(len(space.head_widths), widths)[w])
        out.setdefault(space.decode(vec), None)
    return list(out)


def neighbours(space: SearchSpace, arch: Arch) -> list[Arch]:
    """Children one step away: one gene moved to the adjacent choice, up or down."""
    x = space.encode(arch)
    n = space.n_choices()
    out = []
    for g in range(len(x)):
        for step in (-1, 1):
            if 0 <= x[g] + step < n[g]:
                y = x.copy()
                y[g] += step
                out.append(space.decode(y))
    return out


def _climb(session: Session, rng: np.random.Generator, current: Arch,
           score: Callable[[Arch], tuple[float, float]], target: float | None,
           stop: int, batch: int) -> None:
    """From `current`, evaluate shuffled unseen neighbours under `target` a batch at a time
    and move to the best of a batch as soon as it beats the current child by `score`."""
    space = session.problem.space
    best = score(current)
    while session.counts.evaluated < stop:
        cands = [a for a in neighbours(space, current)
                 if not session.seen(a) and session.screen(a, target)]
        rng.shuffle(cands)
        moved = False
        for i in range(0, len(cands), batch):
            chunk = cands[i:i + min(batch, stop - session.counts.evaluated)]
            if not chunk:
                return
            session.evaluate(chunk)
            session.end_step()
            top = max(chunk, key=score)
            if score(top) > best:
                current, best, moved = top, score(top), True
                break
        if not moved:
            return  # a local optimum


def _perturb(session: Session, rng: np.random.Generator, target: float | None) -> Arch | None:
    """The best child under `target` with three random genes redrawn, if it fits."""
    space = session.problem.space
    best = ranked(session, target)
    if not best:
        return None
    x = space.encode(best[0])
    n = space.n_choices()
    for g in rng.choice(len(x), size=min(3, len(x)), replace=False):
        x[g] = rng.integers(n[g])
    cand = space.decode(x)
    return cand if session.screen(cand, target) else None


def _local_search(session: Session, rng: np.random.Generator, target: float | None,
                  budget: int, top_k: int, batch: int) -> None:
    """Hill climbing under `target` from its `top_k` best children, then from random
    perturbations of the best, until `budget` evaluations are spent."""
    space = session.problem.space
    stop = min(session.counts.evaluated + budget, session.budget)

    def score(arch: Arch) -> tuple[float, float]:
        """Higher top-1 is better; at equal top-1 fewer MACs (accuracy often ties)."""
        row = session.lookup(arch)
        if row is None or not row["feasible"] or (target is not None and row["macs"] > target):
            return (-np.inf, -np.inf)
        return (row["top1"], -row["macs"])

    starts = ranked(session, target)[:top_k]
    if not starts and session.screen(space.min_arch(), target):
        starts = [space.min_arch()]
    fruitless = 0  # rounds without a new evaluation: the neighbourhood is exhausted
    while session.counts.evaluated < stop and fruitless < 50:
        before = session.counts.evaluated
        current = starts.pop(0) if starts else _perturb(session, rng, target)
        if current is not None:
            if not session.seen(current):
                session.evaluate([current])
                session.end_step()
            _climb(session, rng, current, score, target, stop, batch)
        fruitless = fruitless + 1 if session.counts.evaluated == before else 0


def run(session: Session, options: Options | None = None) -> pd.DataFrame:
    """Coarse grid (at most `coarse_share` of the budget), then a fine local search per
    MACs target (the budget left split evenly between targets)."""
    o = options or Options()
    rng = np.random.default_rng(session.seed)
    problem = session.problem
    if problem.space.family == "layerwise":
        raise ValueError(f"strategy coarse2fine: its grid is over stage-wise depth, width and "
                         f"kernel; space {problem.space.name!r} is {problem.space.family} "
                         "(use nsga2, random, assisted or a many-objective strategy)")
    targets: list[float | None] = list(problem.targets) or [None]
    loosest = max(problem.targets) if problem.targets else None
    grid = [a for a in coarse_grid(problem.space, o.resolutions, o.depths, o.widths, o.kernels)
            if session.screen(a, loosest)]
    cap = max(1, int(o.coarse_share * session.budget))
    if len(grid) > cap:  # keep an even, seeded subset of the grid
        keep = np.sort(rng.choice(len(grid), size=cap, replace=False))
        grid = [grid[i] for i in keep]
    session.phase = "coarse"
    for i in range(0, len(grid), o.batch):
        if session.done:
            break
        session.evaluate(grid[i:i + min(o.batch, session.remaining)])
        session.end_step()
    for j, target in enumerate(targets):
        if session.done:
            break
        share = session.remaining // (len(targets) - j)
        session.phase = "fine" if target is None else f"fine@{format_count(target)}"
        _local_search(session, rng, target, share, o.top_k, o.batch)
    return session.table()


STRATEGY = Strategy("coarse2fine", run, Options)
