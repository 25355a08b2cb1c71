"""The closed-form cost counter against fvcore and against the exported child."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from supernet import ElasticSupernet, load_space
from supernet.spaces.cost import cost, macs, params
from supernet.spaces.plan import ChildPlan, child_plan
from supernet.spaces.space import Arch, SearchSpace, StageArch, builtin_spaces

with warnings.catch_warnings():  # fvcore scripts helpers at import: torch deprecation noise
    warnings.simplefilter("ignore", DeprecationWarning)
    from fvcore.nn import FlopCountAnalysis

# stage-wise spaces; the layer-wise family (scarlet-*) has its own tests: test_layerwise.py
SPACES = [n for n in builtin_spaces() if load_space(n).family == "stagewise"]
OFA_SPACES = [n for n in builtin_spaces() if load_space(n).family == "ofa"]
N_RANDOM = 30  # plus min and max: 32 children per space
N_RANDOM_OFA = 6  # ImageNet-sized children at up to 224 px: fvcore takes ~0.4 s each
# fvcore operator groups that are multiply-accumulates; BN, pooling etc. are not counted.
MAC_OPS = {"conv", "linear", "addmm", "matmul", "mm", "bmm", "einsum"}


def children(space: SearchSpace, n: int, seed: int = 0) -> list[Arch]:
    """Min, max and `n` seeded random children of `space`."""
    rng = np.random.default_rng(seed)
    return [space.min_arch(), space.max_arch()] + [space.sample(rng) for _ in range(n)]


def fvcore_macs(model: nn.Module, resolution: int) -> int:
    """fvcore's count of conv and linear/matmul MACs of `model` on one image."""
    flops = FlopCountAnalysis(model.eval(), torch.randn(1, 3, resolution, resolution))
    flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = flops.by_operator()
    assert "conv" in by_op and set(by_op) - MAC_OPS  # the split is real: BN etc. are seen
    return sum(v for k, v in by_op.items() if k in MAC_OPS)


pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module", params=SPACES + OFA_SPACES)
def net(request) -> ElasticSupernet:
    """One supernet per built-in space, shared by the module."""
    return ElasticSupernet(request.param).eval()


def test_macs_and_params_match_the_exported_child(net: ElasticSupernet) -> None:
    space = net.space
    for arch in children(space, N_RANDOM if space.family == "stagewise" else N_RANDOM_OFA):
        child = net.export(arch)
        assert params(space, arch) == sum(p.numel() for p in child.parameters()), arch
        assert macs(space, arch) == fvcore_macs(child, arch.resolution), arch
        assert cost(space, arch) == (macs(space, arch), params(space, arch))


# ---- cheap properties over many children -------------------------------------------------


def plan_counts(p: ChildPlan) -> tuple[int, int]:
    """Reference (MACs, params) summed block by block over the resolved plan."""
    m, n = p.stem_hw ** 2 * 27 * p.stem_out, 29 * p.stem_out
    hw = p.stem_hw
    for b in p.blocks:
        ohw, k2 = b.out_hw ** 2, b.kernel ** 2
        if b.has_expand:
            m += b.in_hw ** 2 * b.c_in * b.mid
            n += b.c_in * b.mid + 2 * b.mid
        m += ohw * b.mid * k2 + ohw * b.mid * b.c_out
        n += b.mid * k2 + 2 * b.mid + b.mid * b.c_out + 2 * b.c_out
        if b.se:
            m += 2 * b.mid * b.se
            n += 2 * b.mid * b.se + b.se + b.mid
        if b.shortcut_conv:
            m += ohw * b.c_in * b.c_out
            n += b.c_in * b.c_out
        hw = b.out_hw
    if p.head_mid:
        m += hw * hw * p.last_width * p.head_mid + p.head_mid * p.head_width
        n += p.last_width * p.head_mid + 2 * p.head_mid + p.head_mid * p.head_width
    else:
        m += hw * hw * p.last_width * p.head_width
        n += p.last_width * p.head_width + 2 * p.head_width
    return (m + p.head_width * p.num_classes,
            n + p.head_width * p.num_classes + p.num_classes)


@pytest.mark.parametrize("name", SPACES + OFA_SPACES)
def test_stage_wise_count_equals_block_wise_plan(name: str) -> None:
    space = load_space(name)
    for arch in children(space, 1000, seed=1):
        assert cost(space, arch) == plan_counts(child_plan(space, arch)), arch


def _deeper(stage: StageArch) -> StageArch:
    """`stage` with one more layer (OFA: a copy of its last layer's kernel and expand)."""
    if stage.per_layer:
        return StageArch(stage.width, stage.depth + 1, (*stage.kernel, stage.kernel[-1]),
                         (*stage.expand, stage.expand[-1]))
    return replace(stage, depth=stage.depth + 1)


@pytest.mark.parametrize("name", SPACES + OFA_SPACES)
def test_cost_is_monotone(name: str) -> None:
    space = load_space(name)
    lo, hi = cost(space, space.min_arch()), cost(space, space.max_arch())
    for arch in children(space, 200, seed=2)[2:]:
        m, n = cost(space, arch)
        assert lo[0] <= m <= hi[0] and lo[1] <= n <= hi[1]
        res = space.resolutions
        i = res.index(arch.resolution)
        if i + 1 < len(res):
            bigger = replace(arch, resolution=res[i + 1])
            assert macs(space, bigger) > m and params(space, bigger) == n
        deeper = replace(arch, stages=(_deeper(arch.stages[0]), *arch.stages[1:]))
        assert cost(space, deeper) > (m, n)  # not validated: the counter is pure arithmetic


def test_known_figures() -> None:
    s = load_space("attentive-mbv3")
    assert cost(s, s.min_arch()) == (203_389_568, 8_954_184)
    t = load_space("tiny")
    assert macs(t, t.max_arch()) <= 15e6 and macs(t, t.min_arch()) <= 2e6


def test_ofa_figures() -> None:
    # OFA's own counter: w1.0 41.48 / 566.17 MFLOPs (smallest at 128, largest at 224),
    # w1.2 100.32 / 843.10 (160 / 224); params of their static children
    w10, w12 = load_space("ofa-mbv3-w10"), load_space("ofa-mbv3-w12")
    assert cost(w10, w10.min_arch()) == (41_476_224, 3_410_792)
    assert cost(w10, w10.max_arch()) == (566_170_656, 7_664_760)
    assert cost(w12, w12.min_arch()) == (100_320_888, 4_602_456)
    assert cost(w12, w12.max_arch()) == (843_101_040, 10_701_632)
