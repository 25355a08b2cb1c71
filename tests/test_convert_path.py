"""The whole user path of a published supernet through the CLIs' `main(argv)`: an
AttentiveNAS or OFA MobileNetV3 (w1.0) file -> `nas-convert` -> `nas-search` on an
ImageNet-style folder -> `nas-export` of the best child.

The checkpoints are synthesized from the documented key names (tests/test_convert.py,
tests/test_ofa.py).
The folder is the cheapest one the evaluator accepts for a 1000-class space: its class
count is that of train/ (val/ must have the same class folders, none empty), so it holds
1000 classes with one 224 px JPEG each in train and val, hard links to 8 seeded images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from test_convert import attentive_shapes
from test_ofa import synthesize

from nas_search.cli import main as search_main
from nas_search.export_cli import main as export_main
from supernet.converters.cli import main as convert_main

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = 1000  # the classifier's outputs of both supernets
BUDGET = 10
# Only children of at most these MACs are evaluated, the rest are turned away by the
# closed-form counter. AttentiveNAS: A0..A4 (203-444M) fit, about 10% of uniform draws
# (under 300M, 0.1%: sampling would stall). OFA w1.0: about 35% of uniform draws fit.
MAX_MACS = {"attentivenas": 450_000_000, "ofa-mbv3-w10": 150_000_000}


def _published(path: Path) -> Path:
    """A seeded random AttentiveNAS supernet saved as the authors do (DDP prefixes)."""
    g = torch.Generator().manual_seed(0)
    sd = {}
    for k, shape in attentive_shapes().items():
        if k.endswith("num_batches_tracked"):
            v = torch.tensor(7)
        elif k.endswith("running_var"):
            v = torch.rand(shape, generator=g) + 0.5
        else:
            v = torch.randn(shape, generator=g) * 0.1
        sd[f"module.{k}"] = v
    torch.save({"epoch": 360, "state_dict": sd}, path)
    return path


def _published_ofa(path: Path) -> Path:
    """A seeded random OFA w1.0 supernet saved as the authors do ({'state_dict'}, the
    legacy `mobile_inverted_conv` keys)."""
    torch.save({"state_dict": synthesize("ofa-mbv3-w10")}, path)
    return path


PUBLISHED = {"attentivenas": ("attentive_nas_pretrained.pth.tar", _published),
             "ofa-mbv3-w10": ("ofa_mbv3_d234_e346_k357_w1.0", _published_ofa)}


def _imagenet_like(root: Path, distinct: int = 8, size: int = 224) -> Path:
    """train/ and val/ with CLASSES class folders of one 224 px JPEG each (hard links to
    `distinct` seeded noisy images, so 2000 files cost 8 encodes)."""
    rng = np.random.default_rng(0)
    src = root / "src"
    src.mkdir(parents=True)
    pool = []
    for i in range(distinct):
        px = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        im = Image.fromarray(px).resize((size, size), Image.BILINEAR)
        pool.append(src / f"{i}.jpg")
        im.save(pool[-1], "JPEG", quality=85)
    for split in ("train", "val"):
        for c in range(CLASSES):
            d = root / "data" / split / f"n{c:08d}"
            d.mkdir(parents=True)
            os.link(pool[(c + (split == "val")) % distinct], d / "0.jpg")
    return root / "data"


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory) -> str:
    """The image folder as a `--data` spec, shared by the kinds."""
    return f"folder:{_imagenet_like(tmp_path_factory.mktemp('imagenet'))}"


@pytest.mark.parametrize("kind", list(PUBLISHED))
def test_convert_search_export_on_an_image_folder(kind: str, imagenet: str, tmp_path: Path,
                                                  capsys) -> None:
    """convert -> nsga2 search of BUDGET small children -> export of the best: exit codes 0,
    one results row per evaluation, the child's files written."""
    name, publish = PUBLISHED[kind]
    ckpt = publish(tmp_path / name)
    conv = tmp_path / "conv"
    assert convert_main(["--from", kind, str(ckpt), "--out", str(conv)]) == 0
    supernet = conv / "supernet.pt"
    assert supernet.is_file()

    data, run, max_macs = imagenet, tmp_path / "run", MAX_MACS[kind]
    # --val-images 32 of 1000 one-image classes: 32 random classes (stratified_subset)
    assert search_main(["--strategy", "nsga2", "--supernet", str(supernet), "--data", data,
                        "--budget", str(BUDGET), "--pop-size", "4", "--calib-images", "16",
                        "--val-images", "32", "--max-macs", str(max_macs), "--seed", "0",
                        "--out", str(run), "--quiet"]) == 0
    table = pd.read_csv(run / "results.csv")
    assert len(table) == BUDGET
    assert (table["macs"] <= max_macs).all() and table["feasible"].all()  # evaluated only
    assert "best overall" in capsys.readouterr().out

    out = tmp_path / "export"
    assert export_main(["--run", str(run), "--pick", "best", "--data", data,
                        "--calib-images", "16", "--out", str(out), "--quiet"]) == 0
    children = pd.read_csv(out / "children.csv")
    assert len(children) == 1
    child = out / children["label"][0]
    for name in ("model.pt", "arch.yaml", "metrics.json"):
        assert (child / name).is_file(), name
    metrics = json.loads((child / "metrics.json").read_text())
    assert metrics["macs"] <= max_macs and metrics["val"]["images"] == CLASSES
    assert metrics["arch"] in set(table["arch"])
