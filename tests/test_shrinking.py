"""Progressive shrinking (OFA): the phase schedule (which dimensions are elastic in which
epoch), the phase's space, and the children a step trains in each phase."""

from __future__ import annotations

import pytest

from supernet import load_space
from supernet.training.shrinking import phase_at, phase_space, phases

TINY = load_space("tiny")


def test_phases_keep_ofas_shares_of_the_epochs():
    # OFA: 180 / 120 / 145 / 145 of 590 epochs
    assert [(p.name, p.start, p.end) for p in phases(590)] == [
        ("largest", 0, 180), ("kernel", 180, 300), ("depth", 300, 445), ("expand", 445, 590)]
    assert [(p.start, p.end) for p in phases(16)] == [(0, 5), (5, 8), (8, 12), (12, 16)]
    assert [(p.start, p.end) for p in phases(4)] == [(0, 1), (1, 2), (2, 3), (3, 4)]


@pytest.mark.parametrize("epochs", range(4, 40))
def test_every_epoch_is_in_exactly_one_phase_and_each_phase_has_one(epochs):
    ps = phases(epochs)
    assert ps[0].start == 0 and ps[-1].end == epochs
    assert all(a.end == b.start for a, b in zip(ps, ps[1:]))
    assert all(p.end > p.start for p in ps)


def test_which_dimensions_are_elastic_in_which_epoch():
    elastic = [phase_at(8, e).elastic for e in range(8)]
    assert elastic == [(), (), ("kernel",), ("kernel",), ("kernel", "depth"),
                       ("kernel", "depth"), ("kernel", "depth", "expand", "width"),
                       ("kernel", "depth", "expand", "width")]
    with pytest.raises(ValueError, match="epoch: 8 is outside"):
        phase_at(8, 8)


def test_too_few_epochs_is_a_one_line_error():
    with pytest.raises(ValueError, match="epochs: 3 is too few for progressive shrinking"):
        phases(3)


@pytest.mark.parametrize("elastic", [(), ("kernel",), ("kernel", "depth"),
                                     ("kernel", "depth", "expand", "width")])
def test_the_phase_space_frees_only_its_dimensions(elastic):
    space = phase_space(TINY, elastic)
    assert space.max_arch() == TINY.max_arch()
    assert space.resolutions == TINY.resolutions  # resolution is elastic throughout
    lo = space.min_arch()
    for spec, full, st in zip(space.stages, TINY.stages, lo.stages):
        assert (st.kernel == min(full.kernels)) == ("kernel" in elastic)
        assert (st.depth == min(full.depths)) == ("depth" in elastic) or \
            len(full.depths) == 1
        assert len(spec.widths) == (len(full.widths) if "width" in elastic else 1)
        assert len(spec.expands) == (len(full.expands) if "expand" in elastic else 1)
    assert phase_space(TINY, ("kernel", "depth", "expand", "width")) == TINY


def test_each_step_trains_the_children_of_its_phase(monkeypatch):
    from supernet.training import steps
    from supernet.training.config import TrainConfig, with_recipe

    seen: list[list] = []
    monkeypatch.setattr(steps, "sandwich_step",
                        lambda model, opt, x, y, kids, *a: seen.append(kids))
    cfg = with_recipe(TrainConfig(epochs=8, method="progressive-shrinking"))
    per_epoch = 3
    step = steps.make_step(TINY, cfg, 8 * per_epoch)
    for s in range(8 * per_epoch):
        step(None, None, None, None, s)
    for s, kids in enumerate(seen):
        phase = phase_at(8, s // per_epoch)
        sub = phase_space(TINY, phase.elastic)
        assert len(kids) == (1 if not phase.elastic else 2 + cfg.num_random)
        assert kids[0].stages == TINY.max_arch().stages  # the largest child leads
        for a in kids:
            sub.validate(a)  # every child within its phase's space
    # kernels only change from the kernel phase on, widths only in the last
    first_kernel = min(s for s, k in enumerate(seen)
                       if any(st.kernel != mx.kernel for a in k for st, mx in
                              zip(a.stages, TINY.max_arch().stages)))
    first_width = min(s for s, k in enumerate(seen)
                      if any(st.width != mx.width for a in k for st, mx in
                             zip(a.stages, TINY.max_arch().stages)))
    assert first_kernel // per_epoch == phases(8)[1].start
    assert first_width // per_epoch == phases(8)[3].start


def test_progressive_shrinking_needs_a_stage_wise_space():
    from supernet.training.steps import training_space

    with pytest.raises(ValueError, match="method: progressive-shrinking needs a stage-wise"):
        training_space(load_space("scarlet-tiny"), True, False, "progressive-shrinking")
