"""`nas-convert` / `supernet.convert`: AttentiveNAS and AlphaNet files in the authors'
layouts become `attentive-mbv3` checkpoints; bad files fail in one line, writing nothing.

The published files are not needed: a synthetic one is built from the documented key
names (their numbering and module wrappers) with shapes from our largest child."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest
import torch

from supernet import ElasticSupernet, convert, load_checkpoint, load_space, peer_arch
from supernet.converters.attentivenas import SPACE, map_state_dict
from supernet.converters.cli import main
from supernet.nn.ops import shortcut_pool, shortcut_pool_layer
from supernet.spaces.plan import child_plan

pytestmark = pytest.mark.usefixtures("one_thread")

# AttentiveNAS A0 (= their smallest child), in their config format
A0 = {"resolution": 192, "width": [16, 16, 24, 32, 64, 112, 192, 216, 1792],
      "depth": [1, 3, 3, 3, 3, 3, 1], "kernel_size": [3] * 7,
      "expand_ratio": [1, 4, 4, 4, 4, 6, 6]}
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(sd: dict, name: str, c: int) -> None:
    """A dynamic BN of theirs: `<name>.bn.*` plus two unused `bn_tracking` BNs."""
    for leaf in BN:
        sd[f"{name}.bn.{leaf}"] = [] if leaf == "num_batches_tracked" else [c]
    for i in (0, 1):
        for leaf in ("running_mean", "running_var", "num_batches_tracked"):
            sd[f"{name}.bn_tracking.{i}.{leaf}"] = [] if leaf == "num_batches_tracked" else [c]


def attentive_shapes() -> dict[str, list[int]]:
    """Every key of an AttentiveNAS supernet (before the `module.` prefix) and its shape,
    written from their naming rules; widths from our space's largest child."""
    space = load_space(SPACE)
    mx = child_plan(space, space.max_arch())
    sd: dict[str, list[int]] = {"first_conv.conv.conv.weight": [mx.stem_out, 3, 3, 3]}
    _bn(sd, "first_conv.bn", mx.stem_out)
    for i, b in enumerate(mx.blocks):  # blocks numbered across stages
        mb = f"blocks.{i}.mobile_inverted_conv"
        if b.has_expand:
            sd[f"{mb}.inverted_bottleneck.conv.conv.weight"] = [b.mid, b.c_in, 1, 1]
            _bn(sd, f"{mb}.inverted_bottleneck.bn", b.mid)
        sd[f"{mb}.depth_conv.conv.conv.weight"] = [b.mid, 1, 5, 5]
        _bn(sd, f"{mb}.depth_conv.bn", b.mid)
        if b.se:
            sd[f"{mb}.depth_conv.se.fc.reduce.weight"] = [b.se, b.mid, 1, 1]
            sd[f"{mb}.depth_conv.se.fc.reduce.bias"] = [b.se]
            sd[f"{mb}.depth_conv.se.fc.expand.weight"] = [b.mid, b.se, 1, 1]
            sd[f"{mb}.depth_conv.se.fc.expand.bias"] = [b.mid]
        sd[f"{mb}.point_linear.conv.conv.weight"] = [b.c_out, b.mid, 1, 1]
        _bn(sd, f"{mb}.point_linear.bn", b.c_out)
        sd[f"blocks.{i}.shortcut.conv.conv.weight"] = [b.c_out, b.c_in, 1, 1]  # every block
    sd["last_conv.final_expand_layer.conv.conv.weight"] = [mx.head_mid, mx.last_width, 1, 1]
    _bn(sd, "last_conv.final_expand_layer.bn", mx.head_mid)
    sd["last_conv.feature_mix_layer.conv.conv.weight"] = [mx.head_width, mx.head_mid, 1, 1]
    sd["classifier.linear.linear.weight"] = [space.num_classes, mx.head_width]
    sd["classifier.linear.linear.bias"] = [space.num_classes]
    return sd


@pytest.fixture(scope="module")
def theirs() -> dict[str, torch.Tensor]:
    """A seeded random AttentiveNAS state dict (no prefix); variances positive."""
    g = torch.Generator().manual_seed(0)
    out = {}
    for k, shape in attentive_shapes().items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            out[k] = torch.rand(shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(shape, generator=g) * 0.1
    return out


@pytest.fixture(scope="module")
def published(theirs, tmp_path_factory) -> Path:
    """The state dict as the authors save it: {'epoch', 'state_dict'} with DDP prefixes."""
    path = tmp_path_factory.mktemp("peer") / "attentive_nas_pretrained.pth.tar"
    torch.save({"epoch": 360, "state_dict": {f"module.{k}": v for k, v in theirs.items()}},
               path)
    return path


@pytest.fixture(scope="module")
def converted(published) -> tuple[ElasticSupernet, dict]:
    return convert("attentivenas", published)


def test_key_set_as_documented(theirs):
    # 37 blocks, 1468 keys, 666 of them bn_tracking buffers (the peers' dump of the file)
    assert len(theirs) == 1468
    assert sum(".bn_tracking." in k for k in theirs) == 666


def test_weights_land_where_expected(theirs, converted):
    net, _ = converted
    blk = net.stages
    pairs = {
        "first_conv.conv.conv.weight": net.stem_conv.weight,
        "first_conv.bn.bn.running_var": net.stem_bn.running_var,
        "blocks.0.mobile_inverted_conv.depth_conv.conv.conv.weight": blk[0][0].dw_conv.weight,
        "blocks.0.shortcut.conv.conv.weight": blk[0][0].shortcut_conv.weight,
        "blocks.1.mobile_inverted_conv.point_linear.bn.bn.bias": blk[0][1].project_bn.bias,
        "blocks.2.mobile_inverted_conv.inverted_bottleneck.conv.conv.weight":
            blk[1][0].expand_conv.weight,
        "blocks.2.shortcut.conv.conv.weight": blk[1][0].shortcut_conv.weight,
        "blocks.8.mobile_inverted_conv.depth_conv.se.fc.reduce.bias": blk[2][1].se.reduce.bias,
        "blocks.8.mobile_inverted_conv.depth_conv.se.fc.expand.weight":
            blk[2][1].se.expand.weight,
        "blocks.26.mobile_inverted_conv.depth_conv.bn.bn.running_mean":
            blk[4][7].dw_bn.running_mean,
        "blocks.36.mobile_inverted_conv.point_linear.conv.conv.weight":
            blk[6][1].project_conv.weight,
        "last_conv.final_expand_layer.bn.bn.weight": net.final_bn.weight,
        "last_conv.feature_mix_layer.conv.conv.weight": net.mix_conv.weight,
        "classifier.linear.linear.weight": net.classifier.linear.weight,
        "classifier.linear.linear.bias": net.classifier.linear.bias,
    }
    for k, ours in pairs.items():
        assert torch.equal(ours, theirs[k]), k
    assert net.stages[1][1].shortcut_conv is None  # their block-3 shortcut never runs


def _layouts(theirs: dict) -> dict[str, object]:
    prefixed = {f"module.{k}": v for k, v in theirs.items()}
    return {"bare": theirs, "bare-module": prefixed, "state_dict": {"state_dict": theirs},
            "model": {"model": prefixed, "epoch": 3}}


@pytest.mark.parametrize("layout", ["bare", "bare-module", "state_dict", "model"])
def test_layouts(layout, theirs, converted, tmp_path):
    path = tmp_path / "w.pth"
    torch.save(_layouts(theirs)[layout], path)
    net, extra = convert("alphanet", path)
    want = converted[0].state_dict()
    assert all(torch.equal(v, want[k]) for k, v in net.state_dict().items())
    assert extra["source"]["kind"] == "alphanet"
    assert extra["preprocessing"]["resize_interpolation"] == "bicubic"


def test_cli_round_trip(published, converted, tmp_path, capsys):
    out = tmp_path / "conv"
    assert main(["--from", "attentivenas", str(published), "--out", str(out)]) == 0
    assert "supernet.pt" in capsys.readouterr().out
    net, extra = load_checkpoint(out / "supernet.pt")  # weights_only loading
    assert net.space == load_space(SPACE)
    assert extra["source"] == {"kind": "attentivenas", "file": published.name,
                               "sha256": hashlib.sha256(published.read_bytes()).hexdigest()}
    pre = extra["preprocessing"]
    assert pre["mean"] == [0.485, 0.456, 0.406] and pre["std"] == [0.229, 0.224, 0.225]
    assert (pre["resize_interpolation"], pre["crop_ratio"]) == ("bilinear", 0.875)
    assert pre["bn_calibration_images"] == 16384
    arch = peer_arch("attentivenas", A0)
    x = torch.randn(1, 3, 192, 192, generator=torch.Generator().manual_seed(1))
    ref = converted[0]
    with torch.no_grad():
        y = net.eval()(x, arch)
        assert torch.equal(y, ref(x, arch))
        # the exported static child agrees with the elastic forward
        assert torch.allclose(ref.export(arch).eval()(x), y, atol=1e-5, rtol=0)


def test_peer_arch_a0_is_smallest_child():
    space = load_space(SPACE)
    assert peer_arch("alphanet", A0) == space.min_arch()
    with pytest.raises(ValueError, match="peer config: resolution: 200 is not allowed"):
        peer_arch("attentivenas", {**A0, "resolution": 200})
    with pytest.raises(ValueError, match="peer config: depth has 6 values, expected 7"):
        peer_arch("attentivenas", {**A0, "depth": [1] * 6})
    with pytest.raises(ValueError, match="peer config: malformed"):
        peer_arch("attentivenas", {"resolution": 192})


def _ours() -> dict[str, torch.Tensor]:
    return ElasticSupernet(SPACE, zero_init_residual_bn=False).state_dict()


@pytest.mark.parametrize("change, message", [
    ("missing", "is missing key 'classifier.linear.linear.bias' (expected shape [1000], "
                "found none)"),
    ("unexpected", "has unexpected key 'blocks.0.extra.weight' (found shape [3], "
                   "expected none)"),
    ("shape", "key 'first_conv.conv.conv.weight' has shape [16, 3, 3, 3], expected "
              "[24, 3, 3, 3]"),
    ("first-block shortcut", "is missing key 'blocks.7.shortcut.conv.conv.weight'"),
])
def test_mapping_errors(change, message, theirs):
    bad = dict(theirs)
    if change == "missing":
        del bad["classifier.linear.linear.bias"]
    elif change == "unexpected":
        bad["blocks.0.extra.weight"] = torch.zeros(3)
    elif change == "shape":
        bad["first_conv.conv.conv.weight"] = torch.zeros(16, 3, 3, 3)
    else:  # a first block's shortcut conv runs: unlike the later ones it is required
        del bad["blocks.7.shortcut.conv.conv.weight"]
    with pytest.raises(ValueError) as e:
        map_state_dict(load_space(SPACE), bad, _ours(), "f")
    assert message in str(e.value)


def _run_cli(args: list[str], out: Path, capsys) -> str:
    """The one-line error of a failing `nas-convert`; checks exit 2 and no output."""
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nas-convert: error: ")
    assert not out.exists()
    return err


def test_cli_errors(theirs, published, tmp_path, capsys):
    out = tmp_path / "out"
    assert "is unknown" in _run_cli(["--from", "bignas", str(published)], out, capsys)
    # an AttentiveNAS file read as OFA's: the first key that differs, and the kind it is
    assert ("key 'first_conv.conv.conv.weight' has shape [24, 3, 3, 3], expected "
            "[16, 3, 3, 3] (it converts with --from attentivenas)") in _run_cli(
        ["--from", "ofa-mbv3-w10", str(published)], out, capsys)
    (tmp_path / "text.pth").write_text("not a checkpoint")
    assert "is not a torch checkpoint" in _run_cli(
        ["--from", "alphanet", str(tmp_path / "text.pth")], out, capsys)
    torch.save({"epoch": 1, "state_dict": {"weight": torch.zeros(2)}}, tmp_path / "x.pth")
    assert "holds no AttentiveNAS/AlphaNet supernet" in _run_cli(
        ["--from", "alphanet", str(tmp_path / "x.pth")], out, capsys)
    torch.save({"lr": 0.1}, tmp_path / "y.pth")
    assert "holds no state dict" in _run_cli(
        ["--from", "alphanet", str(tmp_path / "y.pth")], out, capsys)
    bad = {**theirs, "classifier.linear.linear.bias": torch.zeros(10)}
    torch.save({"state_dict": bad}, tmp_path / "shape.pth")
    assert "has shape [10], expected [1000]" in _run_cli(
        ["--from", "attentivenas", str(tmp_path / "shape.pth")], out, capsys)


def test_pickle_only_file_needs_trust(theirs, tmp_path, capsys):
    # the authors' files pickle their training args, which weights_only refuses
    path = tmp_path / "with_args.pth.tar"
    torch.save({"args": argparse.Namespace(lr=0.1), "state_dict": theirs}, path)
    out = tmp_path / "out"
    assert "--trust-pickle" in _run_cli(["--from", "attentivenas", str(path)], out, capsys)
    assert main(["--from", "attentivenas", str(path), "--out", str(out),
                 "--trust-pickle"]) == 0
    assert (out / "supernet.pt").is_file()


def test_shortcut_pool_odd_width():
    # AttentiveNAS: kernel 2, stride 2, zero padding 1 counted in the mean on odd widths
    x = torch.arange(25.0).reshape(1, 1, 5, 5)
    y = shortcut_pool(x, 2)
    assert y.shape == (1, 1, 3, 3)
    assert y[0, 0, 0, 0] == x[0, 0, 0, 0] / 4  # window [-1, 0] x [-1, 0]
    assert y[0, 0, 1, 1] == x[0, 0, 1:3, 1:3].mean()
    assert torch.equal(shortcut_pool_layer(2, 5)(x), y)
    even = torch.randn(1, 2, 6, 6)
    assert torch.equal(shortcut_pool(even, 2), torch.nn.functional.avg_pool2d(even, 2))
