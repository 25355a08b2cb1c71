"""SCARLET-NAS's variation operators (supplement, Table 1), as pymoo operators on integer
encodings.

SCARLET-NAS lists p_rm 0.2, p_re 0.65, p_pr 0.15, p_M 0.7 and p_K-M 0.3 for its
"hierarchical mutation" without defining them. They come from the authors' earlier
MoreMNAS and FALSR, whose hierarchical mutation is two roulette wheels. Our reading:

- first wheel, the kind of mutation: random ("natural") mutation with p_rm, reinforced
  mutation with p_re, prior-regulated mutation with p_pr;
- second wheel, inside prior-regulated mutation: of the gene's K values, the M favoured by
  the prior are drawn with p_M (uniformly among them), the other K - M with p_K-M. In
  MoreMNAS the prior is the cost, which is cheap and exact to predict: here the favoured
  values are those that make the child cheaper (fewer MACs by the closed-form counter);
- reinforced mutation in MoreMNAS samples from an LSTM controller trained by RL on the
  evaluations. We have no controller; our stand-in learns from the same evaluations: the
  new value is drawn from how often each value occurs in the current population's first
  non-dominated front (add-one smoothed), so it exploits what the search has learned.

Each mutated child changes one gene: a cell (a group of genes: the global choices, one
stage, or one layer) is drawn uniformly, then one of its genes that has a choice; every
mutation moves the gene to a value other than its current one. Crossover works on whole
cells, as in MoreMNAS's cell-based crossover: each cell comes from either parent with
probability 1/2.

Algorithm 1 builds the offspring as crossover(M) ∪ hierarchical-mutation(M), M chosen by
tournament from the survived population: two sets of children, mutation never applied to a
crossover child (`UnionMating`). Table 1 sizes them with its one number, the "mutation
ratio" 0.8, which we read as the share of the offspring that are mutants (the other 0.2
crossover children). Table 1 gives no crossover probability: a pair sent to crossover is
always crossed (an uncrossed pair would only copy its parents, which are not new).

The operators see a space only through `GeneLayout` (choices per gene and the genes of
each cell) and a cost function of an encoding, so any space family plugs in (see
`gene_layout`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pymoo.core.crossover import Crossover
from pymoo.core.mating import Mating
from pymoo.core.mutation import Mutation
from pymoo.core.population import Population

from supernet.spaces.space import Arch, SearchSpace

KINDS = ("random", "reinforced", "prior")


@dataclass(frozen=True)
class GeneLayout:
    """What the operators know of a space: the number of choices of each gene (encoding
    order) and the cells, each a tuple of gene indices (every gene in exactly one)."""

    n_choices: tuple[int, ...]
    cells: tuple[tuple[int, ...], ...]
    cell_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        genes = sorted(g for c in self.cells for g in c)
        if genes != list(range(len(self.n_choices))):
            raise ValueError(f"gene layout: cells {self.cells} must hold each of the "
                             f"{len(self.n_choices)} genes exactly once")


_CELL = re.compile(r"^(\w+ \d+)\b")


def gene_layout(space: SearchSpace) -> GeneLayout:
    """The layout of `space`: its own `gene_levels()` (a list of (name, gene indices): the
    global choices, then each stage, or each run of layers, of `SearchSpace`) when it
    defines one; otherwise from the gene names of `space.choices()`, where a name that
    starts '<word> <integer>' ('stage 2 width', 'layer 7') belongs to that cell and any
    other name (resolution, stem, head) to the cell 'global'."""
    n = tuple(int(k) for k in space.n_choices())
    if hasattr(space, "gene_levels"):
        named = list(space.gene_levels())
    else:
        cells: dict[str, list[int]] = {}
        for g, (name, _) in enumerate(space.choices()):
            m = _CELL.match(name)
            cells.setdefault(m.group(1) if m else "global", []).append(g)
        named = list(cells.items())
    return GeneLayout(n, tuple(tuple(g) for _, g in named), tuple(str(k) for k, _ in named))


@dataclass(frozen=True)
class MutationProbs:
    """The two roulette wheels of Table 1: kind of mutation, then favoured values."""

    p_rm: float = 0.2  # random mutation
    p_re: float = 0.65  # reinforced (learned) mutation
    p_pr: float = 0.15  # prior-regulated mutation
    p_m: float = 0.7  # prior wheel: the M favoured values
    p_k_m: float = 0.3  # prior wheel: the other K - M values

    def __post_init__(self) -> None:
        for wheel in ((self.p_rm, self.p_re, self.p_pr), (self.p_m, self.p_k_m)):
            if min(wheel) < 0 or abs(sum(wheel) - 1) > 1e-6:
                raise ValueError(f"mutation probabilities: {list(wheel)} must be "
                                 "non-negative and sum to 1 (p_rm+p_re+p_pr, p_M+p_K-M)")

    @property
    def kinds(self) -> npt.NDArray[np.float64]:
        """The first wheel: probabilities of random, reinforced and prior mutation."""
        return np.array([self.p_rm, self.p_re, self.p_pr])


# pymoo ships no type information: its classes are Any
class HierarchicalMutation(Mutation):  # type: ignore[misc]
    """SCARLET-NAS's hierarchical mutation (see the module docstring). `cost(x)` is the
    prior (lower is favoured); every child handed to it is mutated (`prob` 1: the mutation
    ratio sizes `UnionMating`'s sets instead). `kinds_used` counts draws."""

    def __init__(self, layout: GeneLayout, cost: Callable[[npt.NDArray[np.int64]], float],
                 probs: MutationProbs = MutationProbs(), prob: float = 1.0):
        super().__init__(prob=prob)
        self.layout, self.cost, self.probs = layout, cost, probs
        self.n = np.asarray(layout.n_choices)
        # genes with a single value cannot change; cells without any are never drawn
        self.cells = [[g for g in c if self.n[g] > 1] for c in layout.cells]
        self.cells = [c for c in self.cells if c]
        if not self.cells:
            raise ValueError("mutation: no gene of the space has a choice")
        self.kinds_used: Counter[str] = Counter()

    def _do(self, problem: Any, X: npt.NDArray[Any], *args: Any,
            random_state: np.random.Generator, algorithm: Any = None,
            **kwargs: Any) -> npt.NDArray[np.int64]:
        elite = front_encodings(algorithm)
        X = np.asarray(X).astype(np.int64).copy()
        for i in range(len(X)):
            X[i], _ = self.mutate_one(X[i], random_state, elite)
        return X

    def mutate_one(self, x: npt.NDArray[np.int64], rng: np.random.Generator,
                   elite: npt.NDArray[np.int64] | None = None
                   ) -> tuple[npt.NDArray[np.int64], str]:
        """`x` with one gene changed, and the kind of mutation drawn."""
        cell = self.cells[rng.integers(len(self.cells))]
        gene = cell[rng.integers(len(cell))]
        kind = KINDS[rng.choice(3, p=self.probs.kinds)]
        others = [v for v in range(self.n[gene]) if v != x[gene]]
        w: npt.NDArray[np.floating[Any]]
        if kind == "random":
            w = np.ones(len(others))
        elif kind == "reinforced":
            seen = (np.bincount(elite[:, gene], minlength=self.n[gene])
                    if elite is not None and len(elite) else np.zeros(self.n[gene]))
            w = seen[others] + 1.0  # add-one smoothing: every value stays reachable
        else:
            w = self._prior_weights(x, gene, others)
        y = x.copy()
        y[gene] = others[rng.choice(len(others), p=w / w.sum())]
        self.kinds_used[kind] += 1
        return y, kind

    def favoured(self, x: npt.NDArray[np.int64], gene: int) -> list[int]:
        """The values of `gene` (other than x's) that make the child cheaper: the M."""
        base = self.cost(x)
        out = []
        for v in range(self.n[gene]):
            if v != x[gene]:
                y = x.copy()
                y[gene] = v
                if self.cost(y) < base:
                    out.append(v)
        return out

    def _prior_weights(self, x: npt.NDArray[np.int64], gene: int,
                       others: list[int]) -> npt.NDArray[np.float64]:
        good = set(self.favoured(x, gene))
        m, rest = len(good), len(others) - len(good)
        if m == 0 or rest == 0:  # one side of the wheel is empty: the other takes it all
            return np.ones(len(others))
        return np.array([self.probs.p_m / m if v in good else self.probs.p_k_m / rest
                         for v in others])


def front_encodings(algorithm: Any) -> npt.NDArray[np.int64] | None:
    """Encodings of the first non-dominated front of a pymoo algorithm's population (all
    of it when no ranks are set yet); None without a population."""
    pop = getattr(algorithm, "pop", None)
    if pop is None or len(pop) == 0:
        return None
    X: npt.NDArray[np.int64] = np.asarray(pop.get("X")).astype(np.int64)
    rank = pop.get("rank")
    if rank is not None and not any(r is None for r in rank):
        first: npt.NDArray[np.bool_] = np.asarray(rank, dtype=float) == 0
        if first.any():
            return X[first]
    return X


class CellCrossover(Crossover):  # type: ignore[misc]  # pymoo's classes are Any
    """Two parents, two children: each cell (all its genes together) comes from one parent
    or the other with probability 1/2, as in MoreMNAS's cell-based crossover."""

    def __init__(self, layout: GeneLayout, prob: float = 1.0):
        super().__init__(n_parents=2, n_offsprings=2, prob=prob)
        self.cells = [np.asarray(c) for c in layout.cells]

    def _do(self, problem: Any, X: npt.NDArray[Any], *args: Any,
            random_state: np.random.Generator, **kwargs: Any) -> npt.NDArray[Any]:
        _, n_matings, n_var = X.shape
        Y = np.asarray(X).copy()
        for k in range(n_matings):
            for cell in self.cells:
                if random_state.random() < 0.5:
                    Y[0, k, cell], Y[1, k, cell] = X[1, k, cell], X[0, k, cell]
        return Y


class UnionMating(Mating):  # type: ignore[misc]  # pymoo's classes are Any
    """Algorithm 1's offspring, crossover(M) ∪ hierarchical-mutation(M): a tournament picks
    M from the population it is given; each child is, with probability `mutation_ratio`, a
    mutant of one member of M, else a crossover child of two. Children carry their "origin"."""

    def __init__(self, selection: Any, crossover: Crossover, mutation: Mutation,
                 mutation_ratio: float = 0.8, **kwargs: Any):
        super().__init__(selection, crossover, mutation, **kwargs)
        if not 0 <= mutation_ratio <= 1:
            raise ValueError(f"mutation ratio: {mutation_ratio} must be a share of the "
                             "offspring, in [0, 1]")
        self.mutation_ratio = mutation_ratio

    def _do(self, problem: Any, pop: Population, n_offsprings: int, *,
            random_state: np.random.Generator, **kwargs: Any) -> Population:
        # rounded at random, so that the refill's requests of a few children keep the share
        n_mut = int(math.floor(self.mutation_ratio * n_offsprings + random_state.random()))
        n_cross = n_offsprings - n_mut
        cx = self.crossover
        n_pairs = math.ceil(n_cross / cx.n_offsprings)
        M = self.selection(problem, pop, n_pairs * cx.n_parents + n_mut, n_parents=1,
                           to_pop=False, random_state=random_state, **kwargs).ravel()
        off = Population.empty()
        if n_pairs:
            pairs = M[:n_pairs * cx.n_parents].reshape(n_pairs, cx.n_parents)
            crossed = cx(problem, pop, parents=pairs, random_state=random_state,
                         **kwargs)[:n_cross]
            crossed.set("origin", "crossover")
            off = Population.merge(off, crossed)
        if n_mut:
            # fresh individuals: mutation writes X in place, and M's members are the parents
            mutants = Population.new(X=pop[M[n_pairs * cx.n_parents:]].get("X"))
            mutants = self.mutation(problem, mutants, random_state=random_state, **kwargs)
            mutants.set("origin", "mutation")
            off = Population.merge(off, mutants)
        return off


def encoding_cost(space: SearchSpace, cost_of_arch: Callable[[Arch], float]
                  ) -> Callable[[npt.NDArray[np.int64]], float]:
    """A cost of an encoding from a cost of an Arch (e.g. MACs by the closed form)."""
    def cost(x: npt.NDArray[np.int64]) -> float:
        return float(cost_of_arch(space.decode(x)))
    return cost
