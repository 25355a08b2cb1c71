"""SCARLET-NAS's operators: the two roulettes' frequencies (pinned over many draws), one
gene per mutation, the learned and prior wheels, cell crossover, the gene layout."""

from __future__ import annotations

import numpy as np
import pytest

from nas_search.problem import child_cost
from nas_search.strategies.operators import (
    CellCrossover,
    GeneLayout,
    HierarchicalMutation,
    MutationProbs,
    encoding_cost,
    gene_layout,
)
from supernet import load_space

TINY = load_space("tiny")
DRAWS = 20_000  # the std of a share p is sqrt(p(1-p)/n) <= 0.0036: tolerance 0.015 is 4 std
TOL = 0.015


def _mutation(probs: MutationProbs = MutationProbs()) -> HierarchicalMutation:
    cost = encoding_cost(TINY, lambda a: child_cost(TINY, a)[0])
    return HierarchicalMutation(gene_layout(TINY), cost, probs, prob=1.0)


def test_layout_of_a_stage_wise_space_and_of_a_layer_wise_one():
    layout = gene_layout(TINY)
    assert layout.cell_names == ("global", "stage 0", "stage 1", "stage 2", "stage 3",
                                 "stage 4")
    names = [n for n, _ in TINY.choices()]
    assert [names[g] for g in layout.cells[0]] == ["resolution", "stem", "head"]
    assert [names[g] for g in layout.cells[3]] == [f"stage 2 {k}" for k in
                                                  ("width", "depth", "kernel", "expand")]

    class LayerWise:  # a SCARLET-style space: one gene (the block choice) per layer
        def choices(self):
            return [("resolution", (224,))] + [(f"layer {i}", tuple(range(7)))
                                               for i in range(19)]

        def n_choices(self):
            return np.array([len(c) for _, c in self.choices()])

    lw = gene_layout(LayerWise())
    assert len(lw.cells) == 20 and lw.cells[1] == (1,) and lw.cell_names[-1] == "layer 18"
    with pytest.raises(ValueError, match="exactly once"):
        GeneLayout((2, 2), ((0,), (0,)))


def test_first_roulette_draws_each_kind_with_table_1_probabilities():
    mut, rng = _mutation(), np.random.default_rng(0)
    x = TINY.encode(TINY.sample(rng))
    kinds = [mut.mutate_one(x, rng)[1] for _ in range(DRAWS)]
    share = {k: kinds.count(k) / DRAWS for k in ("random", "reinforced", "prior")}
    assert abs(share["random"] - 0.2) < TOL
    assert abs(share["reinforced"] - 0.65) < TOL
    assert abs(share["prior"] - 0.15) < TOL
    # other probabilities are followed too, not hard-wired
    mut = _mutation(MutationProbs(p_rm=0.5, p_re=0.1, p_pr=0.4))
    kinds = [mut.mutate_one(x, rng)[1] for _ in range(DRAWS)]
    assert abs(kinds.count("random") / DRAWS - 0.5) < TOL
    assert abs(kinds.count("prior") / DRAWS - 0.4) < TOL


def test_every_mutation_changes_exactly_one_gene_within_its_range():
    mut, rng = _mutation(), np.random.default_rng(1)
    X = np.array([TINY.encode(TINY.sample(rng)) for _ in range(500)])
    Y = mut._do(None, X, random_state=rng)
    changed = np.nonzero(Y != X)
    assert np.all(np.bincount(changed[0], minlength=500) == 1)
    assert np.all(Y < TINY.n_choices()) and np.all(Y >= 0)
    # cells are drawn uniformly, then a gene of the cell: each of the 6 cells ~1/6
    cell_of = {g: i for i, c in enumerate(gene_layout(TINY).cells) for g in c}
    movable = {cell_of[g] for g in range(len(TINY.n_choices())) if TINY.n_choices()[g] > 1}
    Y = mut._do(None, np.repeat(X[:1], 6000, 0), random_state=rng)
    cells = np.array([cell_of[g] for g in np.nonzero(Y != X[:1])[1]])
    for c in movable:
        assert abs((cells == c).mean() - 1 / len(movable)) < 0.025


def test_second_roulette_favours_the_cheaper_values_with_p_m():
    # prior-regulated mutation only, on a gene with cheaper and dearer values
    mut, rng = _mutation(MutationProbs(p_rm=0, p_re=0, p_pr=1)), np.random.default_rng(2)
    x = np.array([1] * len(TINY.n_choices()))  # the middle of every 3-valued gene
    x = np.minimum(x, TINY.n_choices() - 1)
    base = mut.cost(x)
    cheaper = []
    for _ in range(DRAWS):
        y, kind = mut.mutate_one(x, rng)
        g = int(np.flatnonzero(y != x)[0])
        if mut.favoured(x, g) and len(mut.favoured(x, g)) < TINY.n_choices()[g] - 1:
            cheaper.append(mut.cost(y) < base)
    assert kind == "prior" and len(cheaper) > 5000
    assert abs(np.mean(cheaper) - 0.7) < TOL  # p_M; the other K - M values get p_K-M


def test_learned_mutation_follows_the_front():
    # reinforced (learned) kind only: a front where gene 0 (resolution) is always 2
    mut, rng = _mutation(MutationProbs(p_rm=0, p_re=1, p_pr=0)), np.random.default_rng(3)
    elite = np.array([TINY.encode(TINY.sample(rng)) for _ in range(40)])
    elite[:, 0] = 2
    x = TINY.encode(TINY.sample(rng))
    x[0] = 0
    moved = []
    for _ in range(DRAWS // 4):
        y, _ = mut.mutate_one(x, rng, elite)
        if y[0] != x[0]:
            moved.append(y[0])
    # value 2 has 40 + 1 (smoothing) counts, value 1 has 1: 41/42 of the moves
    assert abs(np.mean(np.array(moved) == 2) - 41 / 42) < 0.03


def test_cell_crossover_swaps_whole_cells():
    layout = gene_layout(TINY)
    rng = np.random.default_rng(4)
    a, b = (TINY.encode(TINY.sample(rng)) for _ in range(2))
    b = np.where(a == b, (b + 1) % TINY.n_choices(), b)  # parents differ where they can
    X = np.stack([np.tile(a, (200, 1)), np.tile(b, (200, 1))])
    Y = CellCrossover(layout)._do(None, X, random_state=rng)
    for child in Y[0]:
        for cell in layout.cells:
            cell = list(cell)
            assert (child[cell] == a[cell]).all() or (child[cell] == b[cell]).all()
    share = np.mean([(Y[0, k, list(layout.cells[1])] == a[list(layout.cells[1])]).all()
                     for k in range(200)])
    assert 0.35 < share < 0.65


def test_probabilities_are_checked():
    with pytest.raises(ValueError, match="sum to 1"):
        MutationProbs(p_rm=0.5, p_re=0.65, p_pr=0.15)
    with pytest.raises(ValueError, match="sum to 1"):
        MutationProbs(p_m=0.9)
