"""From a search result to deployable children (`nas-export`): calibrated BN, model.pt that
loads without the supernet, arch.yaml, metrics.json, ONNX, fine-tuning, bad input.

One small supernet is trained on digits for one epoch per session and searched once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import SMALL

from nas_search import SearchConfig, SupernetEvaluator, run_search
from nas_search.export import equispaced, parse_pick
from nas_search.export_cli import main
from supernet import calibrated_child, load_checkpoint, load_child, load_space, params
from supernet.data.datasets import load_data, normalize, resize
from supernet.nn.child_file import FORMAT, check_onnx_available, read_child
from supernet.spaces.cost import macs
from supernet.training.finetune import finetune, recipe_from_config
from supernet.training.train import TrainConfig, train

CALIB = 32


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """(checkpoint path, space, digits data) of a small supernet trained for one epoch."""
    root = tmp_path_factory.mktemp("export")
    (root / "small.yaml").write_text(SMALL)
    threads = torch.get_num_threads()
    ckpt = train(TrainConfig(space=str(root / "small.yaml"), data="digits", epochs=1,
                             batch_size=128, lr=0.2, warmup_epochs=0, calib_images=CALIB,
                             out=str(root / "supernet"), quiet=True, threads=1))
    torch.set_num_threads(threads)
    space = load_checkpoint(ckpt)[0].space
    return ckpt, space, load_data("digits", max(space.resolutions), 0)


@pytest.fixture(scope="session")
def run(trained, tmp_path_factory):
    """A finished search over the trained supernet, with two MACs targets."""
    ckpt, space, _ = trained
    lo, hi = macs(space, space.min_arch()), macs(space, space.max_arch())
    out = tmp_path_factory.mktemp("search") / "run"
    run_search(SearchConfig(strategy="random", supernet=str(ckpt), budget=12, seed=0,
                            out=str(out), calib_images=CALIB,
                            targets=(lo + (hi - lo) / 3, lo + 2 * (hi - lo) / 3)))
    return out


def _arch(space, seed=3):
    """A child that is neither the largest nor the smallest."""
    a = space.sample(np.random.default_rng(seed))
    assert a not in (space.max_arch(), space.min_arch())
    return a


def _export(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv] + ["--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def _images(space, data, arch, n=8):
    return resize(normalize(data.val.x[:n], data), arch.resolution)


# ---- 2, 3: one child: model.pt, arch.yaml, metrics.json; load_child --------------------
def test_exported_file_loads_alone_and_matches_the_supernets_calibrated_child(
        trained, tmp_path, capsys):
    ckpt, space, data = trained
    arch = _arch(space)
    code, _, err = _export(capsys, "--supernet", ckpt, "--arch", arch, "--out",
                           tmp_path / "x", "--calib-images", CALIB)
    assert code == 0, err
    folder = tmp_path / "x" / "child"
    assert {p.name for p in folder.iterdir()} == {"model.pt", "arch.yaml", "metrics.json"}

    raw = torch.load(folder / "model.pt", weights_only=True)
    assert raw["format"] == FORMAT and raw["arch"] == str(arch)
    assert raw["resolution"] == arch.resolution and len(raw["mean"]) == len(raw["std"]) == 3
    assert load_space_dict_equal(raw["space"], space)
    child = load_child(folder / "model.pt")
    assert not child.training and isinstance(child, torch.nn.Module)

    net = load_checkpoint(ckpt)[0].eval()
    want = calibrated_child(net, arch, data, CALIB)
    x = _images(space, data, arch)
    with torch.no_grad():
        torch.testing.assert_close(child(x), want(x), rtol=0, atol=1e-6)

    desc = yaml.safe_load((folder / "arch.yaml").read_text())
    assert desc["arch"] == str(arch) and desc["space"] == "small"
    assert space.arch_from_dict(desc) == arch

    m = json.loads((folder / "metrics.json").read_text())
    assert m["macs"] == macs(space, arch) and m["params"] == params(space, arch)
    assert m["latency_ms"] > 0 and m["calib_images"] == CALIB
    for split in ("val", "test"):  # digits has a test split
        assert 0 <= m[split]["top1"] <= 1 and m[split]["loss"] > 0
    assert read_child(folder / "model.pt").metrics["val"] == m["val"]
    table = pd.read_csv(tmp_path / "x" / "children.csv")
    assert list(table["arch"]) == [str(arch)]


def load_space_dict_equal(d: dict, space) -> bool:
    from supernet.spaces.space import space_from_dict

    return space_from_dict(d) == space


# ---- 4: calibrated_child is the export with the child's own statistics ------------------
def test_calibrated_child_differs_from_the_raw_export_and_equals_the_evaluators(trained):
    ckpt, space, data = trained
    net = load_checkpoint(ckpt)[0].eval()
    arch = _arch(space, seed=5)
    raw, cal = net.export(arch).eval(), calibrated_child(net, arch, data, CALIB)
    # the supernet holds the largest child's statistics: those of a smaller child differ
    means = [(k, v) for k, v in cal.state_dict().items() if k.endswith("running_mean")]
    assert any(not torch.allclose(v, raw.state_dict()[k]) for k, v in means)
    ev = SupernetEvaluator(net, data, calib_images=CALIB, device="cpu", channels_last=False)
    x = _images(space, data, arch)
    with torch.no_grad():
        torch.testing.assert_close(calibrated_child(net, arch, ev.images)(x), cal(x), rtol=0,
                                   atol=1e-5)
    with pytest.raises(ValueError, match="calib_images"):
        calibrated_child(net, arch, data, len(data.train) + 1)


# ---- 1: picks from a run -----------------------------------------------------------------
def test_best_pick_scores_what_it_scored_in_the_search(trained, run, tmp_path, capsys):
    code, _, err = _export(capsys, "--run", run, "--pick", "best", "--out", tmp_path / "b")
    assert code == 0, err
    front = pd.read_csv(run / "front.csv")
    m = json.loads((tmp_path / "b" / "best" / "metrics.json").read_text())
    best = front.sort_values(["top1", "macs"], ascending=[False, True]).iloc[0]
    assert m["arch"] == best["arch"] and m["search_top1"] == pytest.approx(best["top1"])
    # same calibration images, same val split: the same top-1 up to float noise (1 image)
    assert abs(m["val"]["top1"] - m["search_top1"]) <= 1.0 / m["val"]["images"] + 1e-9


def test_front_k_takes_k_children_equispaced_by_macs(run, tmp_path, capsys):
    front = pd.read_csv(run / "front.csv").sort_values("macs")
    k = min(3, len(front))
    code, _, err = _export(capsys, "--run", run, "--pick", f"front:{k}", "--out",
                           tmp_path / "f")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "f" / "children.csv")
    assert len(table) == k and table["arch"].is_unique
    assert list(table["macs"]) == sorted(table["macs"])
    assert table["macs"].iloc[0] == front["macs"].min()
    assert table["macs"].iloc[-1] == front["macs"].max()
    assert all((tmp_path / "f" / lab / "model.pt").is_file() for lab in table["label"])
    code, _, err = _export(capsys, "--run", run, "--pick", f"front:{len(front) + 1}",
                           "--out", tmp_path / "g")
    assert code == 2 and "front" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "g").exists()


def test_equispaced_picks_distinct_points_nearest_to_even_steps():
    v = np.array([1.0, 2.0, 2.1, 2.2, 8.0, 10.0])
    assert equispaced(v, 3) == [0, 4, 5]  # 1, 5.5 -> 8 (nearest), 10
    assert equispaced(v, 6) == list(range(6))
    assert equispaced(v, 1) == [5]
    with pytest.raises(ValueError, match="front:7"):
        equispaced(v, 7)
    assert parse_pick("front:2") == ("front", 2)
    for bad in ("front:0", "front:x", "front", "worst", "best:2"):
        with pytest.raises(ValueError, match="pick"):
            parse_pick(bad)


def test_targets_pick_one_child_per_target(run, tmp_path, capsys):
    summary = json.loads((run / "summary.json").read_text())
    per = {t: b for t, b in summary["best_per_target"].items() if b is not None}
    code, _, err = _export(capsys, "--run", run, "--pick", "targets", "--out", tmp_path / "t")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "t" / "children.csv")
    assert list(table["label"]) == [f"target-{t}" for t in per]
    assert list(table["arch"]) == [b["arch"] for b in per.values()]


# ---- bad input: one line, exit 2, nothing written -----------------------------------------
def test_bad_input_is_one_line_exit_2_and_writes_nothing(trained, run, tmp_path, capsys):
    ckpt, space, _ = trained
    other = load_space("tiny").max_arch()
    no_front = tmp_path / "empty-run"
    no_front.mkdir()
    exists = tmp_path / "exists"
    exists.mkdir()
    (exists / "keep.txt").write_text("mine")
    cases = [
        (["--supernet", ckpt, "--arch", "r16-s8-oops", "--out", tmp_path / "o1"], "malformed"),
        (["--supernet", ckpt, "--arch", other, "--out", tmp_path / "o2"], "small"),
        (["--run", no_front, "--supernet", ckpt, "--out", tmp_path / "o3"], "front.csv"),
        (["--run", run, "--pick", "front:999", "--out", tmp_path / "o4"], "front:999"),
        (["--supernet", ckpt, "--arch", _arch(space), "--out", exists], "--force"),
        (["--arch", _arch(space), "--out", tmp_path / "o5"], "--supernet"),
        (["--supernet", ckpt, "--arch", _arch(space), "--pick", "best", "--out",
          tmp_path / "o6"], "--run"),
        (["--supernet", ckpt, "--arch", _arch(space), "--run", run, "--out",
          tmp_path / "o7"], "--run"),
        (["--run", run, "--pick", "median", "--out", tmp_path / "o8"], "median"),
        (["--supernet", tmp_path / "nope.pt", "--arch", _arch(space), "--out",
          tmp_path / "o9"], "nope.pt"),
        (["--supernet", ckpt, "--arch", _arch(space), "--finetune-epochs", "-1", "--out",
          tmp_path / "o10"], "finetune-epochs"),
    ]
    for argv, needle in cases:
        code, out, err = _export(capsys, *argv)
        assert code == 2, (argv, err)
        assert needle in err and len(err.strip().splitlines()) == 1, err
        assert err.startswith("nas-export: error:") and "Traceback" not in err
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 11))
    assert [p.name for p in exists.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders


def test_force_replaces_an_existing_out_folder_whole(trained, tmp_path, capsys):
    ckpt, space, _ = trained
    out = tmp_path / "o"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    code, _, err = _export(capsys, "--supernet", ckpt, "--arch", _arch(space), "--out", out,
                           "--force", "--calib-images", 16)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["child", "children.csv", "export.yaml"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ---- ONNX ----------------------------------------------------------------------------------
def test_onnx_matches_torch_in_onnxruntime(trained, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    ckpt, space, data = trained
    arch = _arch(space)
    code, _, err = _export(capsys, "--supernet", ckpt, "--arch", arch, "--out", tmp_path / "x",
                           "--onnx", "--calib-images", CALIB)
    assert code == 0, err
    folder = tmp_path / "x" / "child"
    assert json.loads((folder / "metrics.json").read_text())["onnx_max_abs_diff"] <= 1e-4
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    x = _images(space, data, arch, n=5)  # another batch size than the export's
    got = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = load_child(folder / "model.pt")(x).numpy()
    assert np.abs(got - want).max() <= 1e-4


def test_missing_onnx_extra_is_a_clear_error(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if absent
    with pytest.raises(ValueError, match=r"nas-supernet\[onnx\]"):
        check_onnx_available()
    ckpt, space, _ = trained
    code, _, err = _export(capsys, "--supernet", ckpt, "--arch", _arch(space), "--out",
                           tmp_path / "x", "--onnx")
    assert code == 2 and "onnxruntime" in err and not (tmp_path / "x").exists()


# ---- 5: fine-tuning ------------------------------------------------------------------------
def test_finetune_epochs_writes_before_and_after_metrics(trained, tmp_path, capsys):
    ckpt, space, data = trained
    arch = _arch(space)
    code, _, err = _export(capsys, "--supernet", ckpt, "--arch", arch, "--out", tmp_path / "x",
                           "--finetune-epochs", 1, "--calib-images", CALIB)
    assert code == 0, err
    folder = tmp_path / "x" / "child"
    m = json.loads((folder / "metrics.json").read_text())
    ft = m["finetune"]
    assert ft["epochs"] == 1 and not ft["distilled"] and len(ft["losses"]) == 1
    recipe = recipe_from_config(load_checkpoint(ckpt)[1]["config"])
    assert ft["lr"] == pytest.approx(recipe.lr * 0.05)
    assert set(ft["before"]) == {"val", "test"}
    net = load_checkpoint(ckpt)[0].eval()
    before = calibrated_child(net, arch, data, CALIB).state_dict()
    after = load_child(folder / "model.pt").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith("weight"))
    table = pd.read_csv(tmp_path / "x" / "children.csv")
    assert {"val_top1_before_finetune", "val_top1"} <= set(table.columns)


def test_finetune_distilled_from_the_largest_child_learns_its_soft_labels(trained):
    ckpt, space, data = trained
    net, extra = load_checkpoint(ckpt)
    net.eval()
    arch = _arch(space)
    teacher = (calibrated_child(net, space.max_arch(), data, CALIB), space.max_arch())
    recipe = recipe_from_config(extra["config"])
    child = calibrated_child(net, arch, data, CALIB)
    res = finetune(child, arch, data, 1, recipe, teacher=teacher, lr=0.05)
    assert res.distilled and res.lr == 0.05 and np.isfinite(res.losses).all()
    assert not child.training
    with pytest.raises(ValueError, match="finetune_epochs"):
        finetune(child, arch, data, -1, recipe)


def test_load_child_rejects_a_supernet_checkpoint(trained):
    with pytest.raises(ValueError, match="not a child file"):
        load_child(trained[0])
    assert Path(trained[0]).is_file()
