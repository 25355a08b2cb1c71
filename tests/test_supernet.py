"""The elastic supernet: export equivalence, standalone plain-torch children, weight
slicing, zero-init of residual BNs, and checkpoints."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from supernet import ElasticSupernet, load_checkpoint, load_space, save_checkpoint
from supernet.checkpoint import atomic_torch_save, read_checkpoint
from supernet.nn.ops import DynamicConv2d
from supernet.spaces.space import Arch, SearchSpace, builtin_spaces

TOL = 1e-5  # max abs difference allowed between a child in the supernet and exported

# stage-wise spaces; the layer-wise family (scarlet-*) has its own tests: test_layerwise.py
SPACES = [n for n in builtin_spaces() if load_space(n).family == "stagewise"]
# Plans are computed at arch.resolution, but the networks are size-agnostic convnets, so the
# ImageNet spaces run at 64 px here to keep the file fast; tiny runs at each child's size.
TEST_PX = {"attentive-mbv3": 64, "bignas-mbv2": 64}


def children(space: SearchSpace, n: int, seed: int = 0) -> list[Arch]:
    """Min, max and `n` seeded random children of `space`."""
    rng = np.random.default_rng(seed)
    return [space.min_arch(), space.max_arch()] + [space.sample(rng) for _ in range(n)]


def image(space: SearchSpace, arch: Arch, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """A seeded batch of random images at the test size for `arch`."""
    px = TEST_PX.get(space.name, arch.resolution)
    return torch.randn(batch, 3, px, px, generator=torch.Generator().manual_seed(seed))


def randomise(net: ElasticSupernet, seed: int = 0) -> ElasticSupernet:
    """Random BN statistics, gammas, betas and biases, so that a wrong slice would show.

    The BN statistics start from those of the largest child on a random batch, then are
    perturbed: with the default statistics an untrained net in eval mode shrinks its
    activations layer by layer (logits ~1e-8), which would hide differences.
    """
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)  # also undoes the zero-init
                m.bias.normal_(0.0, 0.2, generator=g)
                m.reset_running_stats()
                m.momentum = None  # cumulative average: one batch gives its statistics
            elif isinstance(m, (DynamicConv2d, nn.Linear)) and m.bias is not None:
                m.bias.normal_(0.0, 0.2, generator=g)
            if isinstance(m, nn.Linear):
                m.weight.normal_(0.0, 0.05, generator=g)
        mx = net.space.max_arch()  # uses every channel of every BN
        net.train()(image(net.space, mx, batch=8, seed=seed), mx)
        for m in bns:
            m.momentum = 0.1
            std = m.running_var.sqrt()
            m.running_mean.add_(0.2 * std * torch.randn(std.shape, generator=g))
            m.running_var.mul_(torch.empty_like(std).uniform_(0.5, 2.0, generator=g))
    return net


pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module", params=SPACES)
def net(request) -> ElasticSupernet:
    """One randomised supernet per built-in space, in eval mode, shared by the module."""
    torch.manual_seed(0)
    return randomise(ElasticSupernet(request.param)).eval()


@pytest.fixture
def tiny_net() -> ElasticSupernet:
    """A fresh randomised tiny supernet that a test may modify."""
    torch.manual_seed(1)
    return randomise(ElasticSupernet("tiny"), seed=1).eval()


# ---- export equivalence ------------------------------------------------------------------


@torch.no_grad()
def test_export_matches_supernet(net: ElasticSupernet) -> None:
    space = net.space
    for i, arch in enumerate(children(space, 20)):
        x = image(space, arch, seed=i)
        child = net.export(arch)
        assert not child.training
        y, z = net(x, arch), child(x)
        assert y.shape == z.shape == (2, space.num_classes)
        assert y.abs().max() > 1e-3  # outputs are not trivially zero
        assert (y - z).abs().max().item() <= TOL, arch


@torch.no_grad()
def test_equivalence_check_detects_a_wrong_slice(tiny_net: ElasticSupernet) -> None:
    arch = tiny_net.space.min_arch()
    x = image(tiny_net.space, arch)
    child = tiny_net.export(arch)
    bn = child[0][1]  # stem BN
    c = bn.num_features
    bn.running_mean.copy_(tiny_net.stem_bn.running_mean[1:c + 1])  # off by one channel
    # the equivalence tolerance must catch it, with a margin
    assert (tiny_net(x, arch) - child(x)).abs().max().item() > 2 * TOL


@torch.no_grad()
def test_export_follows_train_mode(tiny_net: ElasticSupernet) -> None:
    arch = tiny_net.space.max_arch()
    assert tiny_net.train().export(arch).training
    assert not tiny_net.eval().export(arch).training


def test_forward_rejects_an_arch_outside_the_space(tiny_net: ElasticSupernet) -> None:
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="resolution: 64 is not allowed in space 'tiny'"):
        tiny_net(x, replace(tiny_net.space.min_arch(), resolution=64))
    arch = load_space("attentive-mbv3").min_arch()
    with pytest.raises(ValueError, match="stages: 7 given, space 'tiny' has 5"):
        tiny_net(x, arch)
    with pytest.raises(ValueError):
        tiny_net.export(arch)


# ---- standalone, standard layers ----------------------------------------------------------


@torch.no_grad()
def test_export_is_standalone(tiny_net: ElasticSupernet) -> None:
    space = tiny_net.space
    arch = children(space, 1, seed=5)[-1]
    x = image(space, arch)
    child = tiny_net.export(arch)
    before = child(x).clone()
    super_ptrs = {t.data_ptr() for t in [*tiny_net.parameters(), *tiny_net.buffers()]}
    assert not super_ptrs & {t.data_ptr() for t in [*child.parameters(), *child.buffers()]}
    y_before = tiny_net(x, arch).clone()
    for t in [*tiny_net.parameters(), *tiny_net.buffers()]:
        if t.is_floating_point():
            t.mul_(2.0).add_(0.3)  # positive, so running variances stay valid
    assert (tiny_net(x, arch) - y_before).abs().max() > 1e-3  # the supernet did change
    assert torch.equal(child(x), before)


def test_export_has_only_standard_torch_layers(net: ElasticSupernet) -> None:
    for arch in children(net.space, 2, seed=1):
        child = net.export(arch)
        leaves = [m for m in child.modules() if not list(m.children())]
        assert leaves
        for m in leaves:
            assert type(m).__module__.startswith("torch.nn."), type(m)
        assert not any(type(m).__module__.startswith("supernet.nn.ops") for m in child.modules())


# ---- slicing, not masking -----------------------------------------------------------------


def _convs(block: nn.Module) -> list[nn.Conv2d]:
    return [m for m in block.body.modules() if isinstance(m, nn.Conv2d)]


@torch.no_grad()
def test_exported_shapes_are_sliced(net: ElasticSupernet) -> None:
    space = net.space
    for arch in children(space, 3, seed=2):
        p = net.plan(arch)
        child = net.export(arch)
        stem = child[0][0]
        assert stem.weight.shape == (p.stem_out, 3, 3, 3)
        assert torch.equal(stem.weight, net.stem_conv.weight[:p.stem_out])
        for b, blk in zip(p.blocks, child[1]):
            sup = net.stages[b.stage][b.index]
            convs = _convs(blk)
            if b.has_expand:
                e = convs.pop(0)
                assert e.weight.shape == (b.mid, b.c_in, 1, 1)
                assert torch.equal(e.weight, sup.expand_conv.weight[:b.mid, :b.c_in])
            dw = convs.pop(0)
            assert dw.weight.shape == (b.mid, 1, b.kernel, b.kernel) and dw.groups == b.mid
            s = (sup.dw_conv.weight.shape[-1] - b.kernel) // 2
            centre = sup.dw_conv.weight[:b.mid, :, s:s + b.kernel, s:s + b.kernel]
            assert torch.equal(dw.weight, centre)
            if b.se:
                red, exp = convs.pop(0), convs.pop(0)
                assert red.weight.shape == (b.se, b.mid, 1, 1)
                assert exp.weight.shape == (b.mid, b.se, 1, 1)
            proj = convs.pop(0)
            assert proj.weight.shape == (b.c_out, b.mid, 1, 1)
            assert torch.equal(proj.weight, sup.project_conv.weight[:b.c_out, :b.mid])
            bn = blk.body[-1]
            assert torch.equal(bn.running_var, sup.project_bn.running_var[:b.c_out])
            assert not convs
        assert child[2][-1].weight.shape == (space.num_classes, p.head_width)
        n_child = sum(t.numel() for t in child.parameters())
        assert n_child <= sum(t.numel() for t in net.parameters())


@torch.no_grad()
def test_small_kernel_is_the_centre_of_the_large_one() -> None:
    space = load_space("tiny")
    net = ElasticSupernet(space)
    spec = space.stages[1]
    assert max(spec.kernels) == 5 and 3 in spec.kernels
    a = space.max_arch()
    arch = replace(a, stages=(a.stages[0], replace(a.stages[1], kernel=3), *a.stages[2:]))
    child = net.export(arch)
    first = next(i for i, b in enumerate(net.plan(arch).blocks) if b.stage == 1)
    dw = _convs(child[1][first])[1]  # [expand, depthwise, ...]
    big = net.stages[1][0].dw_conv.weight
    assert big.shape[-2:] == (5, 5) and dw.weight.shape[-2:] == (3, 3)
    assert torch.equal(dw.weight, big[:dw.weight.shape[0], :, 1:4, 1:4])


# ---- zero-init of residual BN -------------------------------------------------------------


@pytest.mark.parametrize("name", SPACES)
def test_last_bn_of_residual_blocks_is_zero(name: str) -> None:
    space = load_space(name)
    assert space.zero_init_residual_bn
    on, off = ElasticSupernet(space), ElasticSupernet(space, zero_init_residual_bn=False)
    n_res = 0
    for stage_on, stage_off in zip(on.stages, off.stages):
        for i, (blk_on, blk_off) in enumerate(zip(stage_on, stage_off)):
            residual = i > 0 or space.shortcut == "always"
            n_res += residual
            gamma = blk_on.project_bn.weight
            assert bool((gamma == 0).all()) == residual, (name, i)
            assert bool((blk_off.project_bn.weight == 1).all())
            assert bool((blk_on.dw_bn.weight == 1).all())
    assert n_res > 0
    # At init, the extra blocks of a deep child are identities: it equals the shallowest.
    deep = space.max_arch()
    shallow = replace(deep, stages=tuple(
        replace(s, depth=spec.depths[0]) for s, spec in zip(deep.stages, space.stages)))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        on.eval(), off.eval()
        assert torch.equal(on(x, deep), on(x, shallow))
        assert not torch.allclose(off(x, deep), off(x, shallow), rtol=1e-3, atol=0)


# ---- checkpoints ----------------------------------------------------------------------------


@torch.no_grad()
def test_checkpoint_round_trip(tiny_net: ElasticSupernet, tmp_path) -> None:
    path = tmp_path / "ck.pt"
    save_checkpoint(path, tiny_net, epoch=3, history=[1.0, 0.5])
    net2, extra = load_checkpoint(path)
    assert extra == {"epoch": 3, "history": [1.0, 0.5]}
    assert net2.space == tiny_net.space
    net2.eval()
    for arch in children(tiny_net.space, 4):
        x = image(tiny_net.space, arch)
        assert torch.equal(net2(x, arch), tiny_net(x, arch))
    same, _ = load_checkpoint(path, space="tiny")
    assert same.space.name == "tiny"


def test_checkpoint_loads_with_weights_only(tiny_net: ElasticSupernet, tmp_path) -> None:
    path = tmp_path / "ck.pt"
    save_checkpoint(path, tiny_net)
    ck = torch.load(path, map_location="cpu", weights_only=True)
    assert set(ck) == {"format", "space", "state_dict"}
    assert ck["space"]["name"] == "tiny"
    assert read_checkpoint(path)["format"] == ck["format"]


def test_not_a_checkpoint(tmp_path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(256))
    with pytest.raises(ValueError, match="is not a supernet checkpoint"):
        load_checkpoint(junk)
    plain = tmp_path / "list.pt"
    torch.save([1, 2, 3], plain)
    with pytest.raises(ValueError, match="is not a supernet checkpoint.*format"):
        load_checkpoint(plain)
    other = tmp_path / "dict.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ValueError, match="is not a supernet checkpoint"):
        load_checkpoint(other)
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.pt")


def test_checkpoint_of_another_space(tiny_net: ElasticSupernet, tmp_path) -> None:
    path = tmp_path / "ck.pt"
    save_checkpoint(path, tiny_net)
    with pytest.raises(ValueError) as e:
        load_checkpoint(path, space="attentive-mbv3")
    assert "'tiny'" in str(e.value) and "'attentive-mbv3'" in str(e.value)


def test_atomic_write_leaves_no_temp_files(tiny_net: ElasticSupernet, tmp_path) -> None:
    path = tmp_path / "sub" / "ck.pt"
    save_checkpoint(path, tiny_net)
    save_checkpoint(path, tiny_net, epoch=1)  # overwrite in place
    assert sorted(os.listdir(path.parent)) == ["ck.pt"]
    with pytest.raises(Exception):  # noqa: B017 - whatever pickling raises
        atomic_torch_save({"f": lambda: 0}, path)
    assert sorted(os.listdir(path.parent)) == ["ck.pt"]
    assert load_checkpoint(path)[1] == {"epoch": 1}  # the old file survived intact
