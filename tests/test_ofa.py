"""The OFA MobileNetV3 family (`ofa-mbv3-w10`, `-w12`) and its converter: synthesized
checkpoints in OFA's key layouts -> `convert` -> forward, export, kernel transform,
residual rules, child configs, and one-line errors with exit 2.

The published files are not needed: the checkpoints are written from OFA's documented
key names and shapes (widths make_divisible(base * width, 8) of MobileNetV3-Large, mid
make_divisible(round(c_in * 6), 8), SE make_divisible(mid // 4, 8)), filled with seeded
random values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from supernet import ElasticSupernet, convert, load_checkpoint, load_space, peer_arch
from supernet.converters import ofa
from supernet.converters.cli import main
from supernet.nn.ops import DynamicConv2d, centre_crop
from supernet.spaces.cost import macs, params
from supernet.spaces.plan import child_plan
from supernet.spaces.space import make_divisible

pytestmark = pytest.mark.usefixtures("one_thread")

# OFA's widths: first conv, first block, stages 1-5, final expand, feature mix
WIDTHS = {"ofa-mbv3-w10": (16, 16, 24, 40, 80, 112, 160, 960, 1280),
          "ofa-mbv3-w12": (24, 24, 32, 48, 96, 136, 192, 1152, 1536)}
SE_STAGES = (2, 4, 5)
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# OFA's tutorial child (note10, 25 ms) on w1.2, in its config format
TUTORIAL = {"ks": [5, 3, 3, 3, 5, 3, 3, 3, 7, 7, 3, 3, 5, 5, 7, 3, 3, 3, 5, 3],
            "e": [3, 3, 3, 3, 4, 4, 3, 3, 6, 3, 4, 3, 4, 4, 4, 3, 6, 6, 6, 3],
            "d": [2, 2, 3, 4, 3], "r": [192]}


def _bn(sd: dict, name: str, c: int, wrapped: bool) -> None:
    for leaf in BN:
        sd[f"{name}.bn.{'bn.' if wrapped else ''}{leaf}"] = (
            [] if leaf == "num_batches_tracked" else [c])


def ofa_shapes(kind: str, legacy: bool = True, wrapped: bool = True) -> dict[str, list[int]]:
    """Every key of an OFA MobileNetV3 supernet and its shape, from their naming rules:
    blocks 1-20 are elastic (`.conv.conv.weight`, `.bn.bn.*` when `wrapped`), the body
    `mobile_inverted_conv` when `legacy` (the released files) else `conv`."""
    stem, first, *stages, final, mix = WIDTHS[kind]
    body = "mobile_inverted_conv" if legacy else "conv"
    w = ".conv" if wrapped else ""
    sd: dict[str, list[int]] = {"first_conv.conv.weight": [stem, 3, 3, 3]}
    _bn(sd, "first_conv", stem, False)
    sd[f"blocks.0.{body}.depth_conv.conv.weight"] = [first, 1, 3, 3]
    _bn(sd, f"blocks.0.{body}.depth_conv", first, False)
    sd[f"blocks.0.{body}.point_linear.conv.weight"] = [first, first, 1, 1]
    _bn(sd, f"blocks.0.{body}.point_linear", first, False)
    c_in, i = first, 1
    for s, c in enumerate(stages, start=1):
        for _ in range(4):
            mid = make_divisible(round(c_in * 6), 8)
            b = f"blocks.{i}.{body}"
            sd[f"{b}.inverted_bottleneck.conv{w}.weight"] = [mid, c_in, 1, 1]
            _bn(sd, f"{b}.inverted_bottleneck", mid, wrapped)
            sd[f"{b}.depth_conv.conv{w}.weight"] = [mid, 1, 7, 7]
            sd[f"{b}.depth_conv.conv.7to5_matrix"] = [25, 25]
            sd[f"{b}.depth_conv.conv.5to3_matrix"] = [9, 9]
            _bn(sd, f"{b}.depth_conv", mid, wrapped)
            if s in SE_STAGES:
                se = make_divisible(mid // 4, 8)
                sd[f"{b}.depth_conv.se.fc.reduce.weight"] = [se, mid, 1, 1]
                sd[f"{b}.depth_conv.se.fc.reduce.bias"] = [se]
                sd[f"{b}.depth_conv.se.fc.expand.weight"] = [mid, se, 1, 1]
                sd[f"{b}.depth_conv.se.fc.expand.bias"] = [mid]
            sd[f"{b}.point_linear.conv{w}.weight"] = [c, mid, 1, 1]
            _bn(sd, f"{b}.point_linear", c, wrapped)
            c_in, i = c, i + 1
    sd["final_expand_layer.conv.weight"] = [final, c_in, 1, 1]
    _bn(sd, "final_expand_layer", final, False)
    sd["feature_mix_layer.conv.weight"] = [mix, final, 1, 1]
    sd["classifier.linear.weight"] = [1000, mix]
    sd["classifier.linear.bias"] = [1000]
    return sd


def synthesize(kind: str, seed: int = 0, **spelling: bool) -> dict[str, torch.Tensor]:
    """A seeded random OFA state dict: weights scaled by 1/sqrt(fan-in) so activations stay
    of order one, BN variances positive, transform matrices 0.5 I + noise (not identity)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in ofa_shapes(kind, **spelling).items():
        if k.endswith("num_batches_tracked"):
            v = torch.tensor(100)
        elif k.endswith("running_var"):
            v = torch.rand(shape, generator=g) + 0.5
        elif k.endswith("_matrix"):
            n = shape[0]
            v = 0.5 * torch.eye(n) + torch.randn(shape, generator=g) / math.sqrt(n)
        elif k.endswith(".weight") and len(shape) > 1:
            v = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        elif k.endswith("bn.weight"):
            v = torch.rand(shape, generator=g) + 0.5
        else:
            v = torch.randn(shape, generator=g) * 0.1
        out[k] = v
    return out


@pytest.fixture(scope="module")
def theirs() -> dict[str, torch.Tensor]:
    return synthesize("ofa-mbv3-w10")


@pytest.fixture(scope="module")
def published(theirs, tmp_path_factory) -> Path:
    """The w1.0 state dict as OFA distributes it: {'state_dict': ...}, legacy keys."""
    path = tmp_path_factory.mktemp("ofa") / "ofa_mbv3_d234_e346_k357_w1.0"
    torch.save({"state_dict": theirs}, path)
    return path


@pytest.fixture(scope="module")
def converted(published) -> tuple[ElasticSupernet, dict]:
    return convert("ofa-mbv3-w10", published)


def _x(res: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(2, 3, res, res, generator=torch.Generator().manual_seed(seed))


# ---- keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(WIDTHS))
def test_key_set_as_documented(kind):
    shapes = ofa_shapes(kind, legacy=False)
    assert len(shapes) == 475  # OFA's dump: 475 keys for either width
    ours = ElasticSupernet(kind, zero_init_residual_bn=False).state_dict()
    assert len(ours) == 475 and sum(p.numel() for p in ours.values()) == sum(
        math.prod(s) for s in shapes.values())


def test_documented_block_widths():
    # w1.0 max dims (block: mid, SE): 5: 144/40, 13: 480/120, 17: 672/168, 20: 960/240
    s = ofa_shapes("ofa-mbv3-w10", legacy=False)
    for block, mid, se in ((5, 144, 40), (13, 480, 120), (17, 672, 168), (20, 960, 240)):
        assert s[f"blocks.{block}.conv.depth_conv.se.fc.reduce.weight"] == [se, mid, 1, 1]
    s = ofa_shapes("ofa-mbv3-w12", legacy=False)
    assert s["blocks.18.conv.depth_conv.se.fc.reduce.weight"] == [288, 1152, 1, 1]
    assert s["first_conv.conv.weight"] == [24, 3, 3, 3]  # 19.2 -> 16 < 0.9 * 19.2 -> 24


def test_weights_land_where_expected(theirs, converted):
    net, _ = converted
    st = net.stages
    b = "mobile_inverted_conv"
    pairs = {
        "first_conv.conv.weight": net.stem_conv.weight,
        "first_conv.bn.running_var": net.stem_bn.running_var,
        f"blocks.0.{b}.depth_conv.conv.weight": st[0][0].dw_conv.weight,
        f"blocks.0.{b}.point_linear.bn.bias": st[0][0].project_bn.bias,
        f"blocks.1.{b}.inverted_bottleneck.conv.conv.weight": st[1][0].expand_conv.weight,
        f"blocks.4.{b}.depth_conv.conv.7to5_matrix": st[1][3].dw_conv.transforms["7to5"],
        f"blocks.4.{b}.depth_conv.conv.5to3_matrix": st[1][3].dw_conv.transforms["5to3"],
        f"blocks.6.{b}.depth_conv.se.fc.expand.bias": st[2][1].se.expand.bias,
        f"blocks.13.{b}.depth_conv.bn.bn.running_mean": st[4][0].dw_bn.running_mean,
        f"blocks.20.{b}.point_linear.conv.conv.weight": st[5][3].project_conv.weight,
        "final_expand_layer.bn.weight": net.final_bn.weight,
        "feature_mix_layer.conv.weight": net.mix_conv.weight,
        "classifier.linear.weight": net.classifier.linear.weight,
    }
    for k, ours in pairs.items():
        assert torch.equal(ours, theirs[k]), k
    assert st[0][0].dw_conv.transforms is None  # the fixed first block has one kernel


def test_one_canonical_spelling():
    want = "blocks.3.conv.depth_conv.conv.weight"
    for k in ("blocks.3.mobile_inverted_conv.depth_conv.conv.conv.weight",
              "blocks.3.conv.depth_conv.conv.conv.weight",
              "blocks.3.mobile_inverted_conv.depth_conv.conv.weight", want):
        assert ofa.canonical(k) == want
    assert ofa.canonical("classifier.linear.linear.bias") == "classifier.linear.bias"
    assert ofa.canonical("blocks.3.conv.inverted_bottleneck.bn.bn.running_var") == (
        "blocks.3.conv.inverted_bottleneck.bn.running_var")
    matrix = "blocks.3.conv.depth_conv.conv.7to5_matrix"
    assert ofa.canonical(matrix) == matrix


@pytest.mark.parametrize("layout", ["current", "unwrapped", "model-module", "bare"])
def test_layouts(layout, converted, tmp_path):
    # OFA's loader accepts every spelling of a key; so do we, and DDP/wrapper dicts
    if layout == "current":
        obj: object = {"state_dict": synthesize("ofa-mbv3-w10", legacy=False)}
    elif layout == "unwrapped":
        obj = {"state_dict": synthesize("ofa-mbv3-w10", legacy=False, wrapped=False)}
    elif layout == "model-module":
        obj = {"model": {f"module.{k}": v for k, v in synthesize("ofa-mbv3-w10").items()}}
    else:
        obj = synthesize("ofa-mbv3-w10")
    torch.save(obj, tmp_path / "w")
    net, extra = convert("ofa-mbv3-w10", tmp_path / "w")
    want = converted[0].state_dict()
    assert all(torch.equal(v, want[k]) for k, v in net.state_dict().items())
    assert extra["source"]["kind"] == "ofa-mbv3-w10"


def test_cli_round_trip_and_preprocessing(published, converted, tmp_path, capsys):
    out = tmp_path / "conv"
    assert main(["--from", "ofa-mbv3-w10", str(published), "--out", str(out)]) == 0
    assert "space ofa-mbv3-w10" in capsys.readouterr().out
    net, extra = load_checkpoint(out / "supernet.pt")  # weights_only loading
    assert net.space == load_space("ofa-mbv3-w10") and net.space.kernel_transform
    pre = extra["preprocessing"]
    assert pre["mean"] == [0.485, 0.456, 0.406] and pre["std"] == [0.229, 0.224, 0.225]
    assert (pre["resize_interpolation"], pre["crop_ratio"], pre["crop_at"]) == (
        "bilinear", 0.875, "child")
    assert (pre["bn_calibration_images"], pre["bn_calibration_batch_size"]) == (2000, 200)
    arch = net.space.sample(np.random.default_rng(3))
    x = _x(arch.resolution)
    with torch.no_grad():
        assert torch.equal(net.eval()(x, arch), converted[0](x, arch))


# ---- forward, export, kernel transform --------------------------------------------------


def _children(space, n: int, seed: int = 0, res: int | None = None):
    from dataclasses import replace

    rng = np.random.default_rng(seed)
    out = [space.min_arch(), space.max_arch()] + [space.sample(rng) for _ in range(n)]
    return [replace(a, resolution=res or min(space.resolutions)) for a in out]


def test_export_equals_supernet_forward(converted):
    net, _ = converted
    for arch in _children(net.space, 3):
        x = _x(arch.resolution)
        with torch.no_grad():
            y = net(x, arch)
            child = net.export(arch).eval()
            assert torch.allclose(child(x), y, atol=1e-5, rtol=1e-5), arch
        assert params(net.space, arch) == sum(p.numel() for p in child.parameters())


def _reference_kernel(w7: torch.Tensor, m75: torch.Tensor, m53: torch.Tensor,
                      k: int) -> torch.Tensor:
    """OFA's rule written out with einsum: 5x5 = M75 applied to the centre 5x5 (row-major
    vectors, new[p] = sum_q M[p, q] old[q]); 3x3 = M53 applied to the centre of that."""
    c = w7.shape[0]
    if k == 7:
        return w7
    w5 = torch.einsum("pq,cq->cp", m75, w7[:, :, 1:6, 1:6].reshape(c, 25)).reshape(c, 1, 5, 5)
    if k == 5:
        return w5
    return torch.einsum("pq,cq->cp", m53, w5[:, :, 1:4, 1:4].reshape(c, 9)).reshape(c, 1, 3, 3)


def test_kernel_transform_rule(theirs, converted):
    net, _ = converted
    dw = net.stages[2][1].dw_conv
    b = "blocks.6.mobile_inverted_conv.depth_conv.conv"
    w7, m75, m53 = (theirs[f"{b}.conv.weight"], theirs[f"{b}.7to5_matrix"],
                    theirs[f"{b}.5to3_matrix"])
    with torch.no_grad():
        for k in (7, 5, 3):
            got, _ = dw.sliced(40, 40, k)
            want = _reference_kernel(w7[:40], m75, m53, k)
            assert got.shape == (40, 1, k, k)
            assert torch.allclose(got, want, atol=1e-6), k
            if k < 7:  # the learned map matters: a plain centre crop is something else
                assert not torch.allclose(got, centre_crop(w7[:40], k), atol=1e-3)


def test_kernel_transform_in_forward_and_export(converted):
    net, _ = converted
    space = net.space
    arch = _children(space, 0)[0]  # smallest child: every elastic layer at k=3
    x = _x(arch.resolution, seed=2)
    plain = ElasticSupernet(space, zero_init_residual_bn=False)
    sd = {k: (torch.eye(v.shape[0]) if ".transforms." in k else v)
          for k, v in net.state_dict().items()}
    plain.load_state_dict(sd)
    with torch.no_grad():
        y, y_plain = net(x, arch), plain.eval()(x, arch)
        assert (y - y_plain).abs().max() > 1e-3  # the matrices change the child
        child = net.export(arch)
        dw = child[1][1].body[3]  # stage 1, layer 0: expand conv, BN, act, depthwise
        assert isinstance(dw, torch.nn.Conv2d) and dw.kernel_size == (3, 3)
        assert torch.allclose(dw.weight, net.stages[1][0].dw_conv.sliced(
            dw.in_channels, dw.in_channels, 3)[0])  # the exported child stores it transformed


def test_identity_transform_is_a_centre_crop():
    conv = DynamicConv2d(8, 8, 7, depthwise=True, transform_kernels=(3, 5, 7))
    assert set(conv.transforms) == {"7to5", "5to3"}
    with torch.no_grad():
        for k in (3, 5):
            assert torch.equal(conv.sliced(8, 8, k)[0], centre_crop(conv.weight, k))
    with pytest.raises(ValueError, match="must start at the largest kernel 7"):
        DynamicConv2d(8, 8, 7, depthwise=True, transform_kernels=(3, 5))


def test_depthwise_forward_is_a_conv_with_the_transformed_kernel(converted):
    net, _ = converted
    dw = net.stages[1][1].dw_conv
    x = _x(16)[:, :1].repeat(1, 48, 1, 1)
    with torch.no_grad():
        w = dw.sliced(48, 48, 5)[0]
        assert torch.allclose(dw(x, k=5), F.conv2d(x, w, None, 1, 2, 1, 48))


# ---- the space ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(WIDTHS))
def test_residual_rules(kind):
    space = load_space(kind)
    for arch in (space.min_arch(), space.max_arch()):
        p = child_plan(space, arch)
        first = p.blocks[0]
        assert (first.kernel, first.has_expand, first.residual) == (3, False, True)
        for b in p.blocks[1:]:
            # no residual on any stage's first layer, the stride-1 stage 4 included
            assert b.residual == (b.index > 0), b
        assert [b.act for b in p.blocks if b.index == 0] == ["relu"] * 3 + ["hswish"] * 3
        assert [bool(b.se) for b in p.blocks if b.index == 0] == [False, False, True, False,
                                                                   True, True]
        assert p.head_mid == 6 * WIDTHS[kind][6] and p.head_width == WIDTHS[kind][8]


def test_resolutions():
    assert load_space("ofa-mbv3-w10").resolutions == tuple(range(128, 225, 4))
    assert load_space("ofa-mbv3-w12").resolutions == tuple(range(160, 225, 4))


def test_ofa_counter_figures():
    # OFA's own counter (conv + linear MACs, batch 1) on the smallest and largest children
    # and the tutorial child: 41.48 / 121.28 / 188.25 / 566.17 (w1.0), 100.32 / 193.08 /
    # 433.56 / 843.10 and 264.01 at 192 (w1.2) MFLOPs; static child params 3.41M ... 10.70M
    from dataclasses import replace

    figures = {"ofa-mbv3-w10": [(41.48, 121.28), (188.25, 566.17), 3410792, 7664760],
               "ofa-mbv3-w12": [(100.32, 193.08), (433.56, 843.10), 4602456, 10701632]}
    for kind, (lo, hi, n_lo, n_hi) in figures.items():
        s = load_space(kind)
        for a, want, n in ((s.min_arch(), lo, n_lo), (s.max_arch(), hi, n_hi)):
            got = [macs(s, replace(a, resolution=r)) / 1e6 for r in (min(s.resolutions), 224)]
            assert np.allclose(got, want, atol=0.005) and params(s, a) == n, (kind, got)
    w12 = load_space("ofa-mbv3-w12")
    assert round(macs(w12, peer_arch("ofa-mbv3-w12", TUTORIAL)) / 1e6, 2) == 264.01


# ---- child configs ------------------------------------------------------------------------


def test_peer_arch():
    s = load_space("ofa-mbv3-w10")
    assert peer_arch("ofa-mbv3-w10", {"ks": 3, "e": 3, "d": 2, "r": 128}) == s.min_arch()
    assert peer_arch("ofa-mbv3-w10", {"ks": [7] * 20, "e": [6] * 20, "d": [4] * 5,
                                      "r": [224]}) == s.max_arch()
    a = peer_arch("ofa-mbv3-w12", TUTORIAL)
    assert str(a) == ("r192-s24-w24_k3e1-w32_k5e3_k3e3-w48_k5e4_k3e4-w96_k7e6_k7e3_k3e4-"
                      "w136_k5e4_k5e4_k7e4_k3e3-w192_k3e6_k3e6_k5e6-h1536")
    # entries of blocks past a stage's depth are ignored, whatever they hold
    odd = {**TUTORIAL, "ks": list(TUTORIAL["ks"]), "e": list(TUTORIAL["e"])}
    odd["ks"][2], odd["e"][3], odd["ks"][19] = 9, None, 4
    assert peer_arch("ofa-mbv3-w12", odd) == a


@pytest.mark.parametrize("change, message", [
    ({"ks": [3] * 19}, "ks has 19 values, expected 20"),
    ({"d": [5, 2, 2, 2, 2]}, "d[0] = 5 is not allowed; allowed [2, 3, 4]"),
    ({"ks": [3] * 4 + [4] + [3] * 15}, "ks[4] = 4 is not allowed; allowed [3, 5, 7]"),
    ({"r": [128, 160]}, "r has 2 values, expected one resolution"),
    ({"r": 130}, "resolution: 130 is not allowed"),
    ({"r": None}, "peer config:"),
])
def test_peer_arch_errors(change, message):
    cfg = {"ks": 3, "e": 3, "d": 2, "r": 128, **change}
    with pytest.raises(ValueError) as e:
        peer_arch("ofa-mbv3-w10", cfg)
    assert str(e.value).startswith("peer config: ") and message in str(e.value)
    with pytest.raises(ValueError, match="peer config: missing r"):
        peer_arch("ofa-mbv3-w10", {"ks": 3, "e": 3, "d": 2})


# ---- errors -------------------------------------------------------------------------------


def _run_cli(args: list[str], out: Path, capsys) -> str:
    """The one-line error of a failing `nas-convert`; checks exit 2 and no output."""
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nas-convert: error: "), err
    assert not out.exists()
    return err


@pytest.mark.parametrize("change, message", [
    ("missing", "is missing key 'blocks.7.mobile_inverted_conv.depth_conv.conv.7to5_matrix' "
                "(expected shape [25, 25], found none)"),
    ("missing-wrapped", "is missing key "
                        "'blocks.3.mobile_inverted_conv.point_linear.bn.bn.running_var' "
                        "(expected shape [24], found none)"),
    ("unexpected", "has unexpected key 'blocks.21.mobile_inverted_conv.depth_conv.conv.conv"
                   ".weight' (found shape [8, 1, 7, 7], expected none)"),
    ("shape", "key 'blocks.2.mobile_inverted_conv.depth_conv.conv.conv.weight' has shape "
              "[144, 1, 5, 5], expected [144, 1, 7, 7]"),
    ("twice", "holds both 'classifier.linear.weight' and 'classifier.linear.linear.weight', "
              "two spellings of one weight"),
])
def test_mapping_errors(change, message, theirs, tmp_path, capsys):
    bad = dict(theirs)
    b = "mobile_inverted_conv"
    if change == "missing":
        del bad[f"blocks.7.{b}.depth_conv.conv.7to5_matrix"]
    elif change == "missing-wrapped":
        del bad[f"blocks.3.{b}.point_linear.bn.bn.running_var"]
    elif change == "unexpected":
        bad[f"blocks.21.{b}.depth_conv.conv.conv.weight"] = torch.zeros(8, 1, 7, 7)
    elif change == "shape":
        bad[f"blocks.2.{b}.depth_conv.conv.conv.weight"] = torch.zeros(144, 1, 5, 5)
    else:
        bad["classifier.linear.linear.weight"] = bad["classifier.linear.weight"]
    torch.save({"state_dict": bad}, tmp_path / "bad")
    err = _run_cli(["--from", "ofa-mbv3-w10", str(tmp_path / "bad")], tmp_path / "out", capsys)
    assert message in err, err


def test_cli_errors(published, tmp_path, capsys):
    out = tmp_path / "out"
    assert "'ofa-mbv3-w14' is unknown" in _run_cli(["--from", "ofa-mbv3-w14",
                                                    str(published)], out, capsys)
    # the w1.0 file read as w1.2: the first key's shapes, and which kind it looks like
    err = _run_cli(["--from", "ofa-mbv3-w12", str(published)], out, capsys)
    assert ("key 'first_conv.conv.weight' has shape [16, 3, 3, 3], expected [24, 3, 3, 3] "
            "(it converts with --from ofa-mbv3-w10)") in err
    torch.save({"state_dict": {"weight": torch.zeros(2)}}, tmp_path / "x.pth")
    assert "holds no OFA MobileNetV3 supernet" in _run_cli(
        ["--from", "ofa-mbv3-w10", str(tmp_path / "x.pth")], out, capsys)
