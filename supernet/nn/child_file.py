"""A calibrated child as a file that loads without the supernet: model.pt (weights, arch,
space, input resolution, normalisation, metrics), arch.yaml, and optionally model.onnx.

`load_child(path)` rebuilds the plain module from model.pt alone: the space definition
in the file builds the layer structure (through `ElasticSupernet(space).export(arch)`,
so any family the supernet can export), then the saved weights and BN statistics fill it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from ..spaces.space import Arch, SearchSpace, space_from_dict
from ..utils import load_format
from .export import fold_els_layers
from .model import ElasticSupernet

FORMAT = "nas-child/1"
ONNX_TOLERANCE = 1e-4  # max abs difference of logits, onnxruntime vs torch
ONNX_EXTRA = "pip install 'nas-supernet[onnx]'"


@dataclass
class ChildFile:
    """The contents of a model.pt: everything needed to run the child on raw images."""

    arch: Arch
    space: SearchSpace
    state_dict: dict[str, torch.Tensor]
    resolution: int  # the child's input size (square)
    base_resolution: int  # images were prepared at this size, then resized to `resolution`
    mean: tuple[float, float, float]  # of pixels scaled to [0, 1]
    std: tuple[float, float, float]
    metrics: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)  # supernet, data, calibration


def child_dict(f: ChildFile) -> dict[str, Any]:
    """`f` as plain containers, tensors and numbers: loads with weights_only=True."""
    return {"format": FORMAT, "arch": str(f.arch), "arch_dict": f.arch.to_dict(),
            "space": f.space.to_dict(), "state_dict": f.state_dict,
            "resolution": f.resolution, "base_resolution": f.base_resolution,
            "mean": list(f.mean), "std": list(f.std), "num_classes": f.space.num_classes,
            "metrics": f.metrics, "source": f.source}


def save_child(path: str | Path, f: ChildFile) -> None:
    """torch.save the child file (callers write into a temporary folder, then rename)."""
    torch.save(child_dict(f), path)


def arch_yaml(f: ChildFile) -> str:
    """The subnet description (as MMRazor's mutable_cfg): arch string, space, choices."""
    return yaml.safe_dump({"arch": str(f.arch), "space": f.space.name, **f.arch.to_dict()},
                          sort_keys=False)


def read_child(path: str | Path) -> ChildFile:
    """The child file at `path` (weights_only=True); ValueError if it is not one."""
    d = load_format(path, "child", FORMAT, "a child file",
                    "; a supernet checkpoint loads with load_checkpoint")
    space = space_from_dict(d["space"])
    return ChildFile(space.parse(d["arch"]), space, d["state_dict"], int(d["resolution"]),
                     int(d["base_resolution"]), tuple(d["mean"]), tuple(d["std"]),
                     d.get("metrics", {}), d.get("source", {}))


def build_child(space: SearchSpace, arch: Arch, fold_els: bool = True) -> nn.Sequential:
    """The untrained layer structure of child `arch` (what `export` returns)."""
    return ElasticSupernet(space, zero_init_residual_bn=False).export(arch, fold_els)


def load_child(path: str | Path) -> nn.Module:
    """The plain child module of a model.pt, in eval mode, without the supernet; ELS
    skips folded, also those of a file saved before export folded them."""
    f = read_child(path)
    child = build_child(f.space, f.arch, fold_els=False)
    if child.state_dict().keys() != f.state_dict.keys():  # saved folded
        child = fold_els_layers(child)
    child.load_state_dict(f.state_dict)
    return fold_els_layers(child).eval()  # folding twice changes nothing


def check_onnx_available() -> None:
    """ValueError naming the extra to install when onnx or onnxruntime is missing."""
    missing = []
    for mod in ("onnx", "onnxruntime"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise ValueError(f"onnx: {' and '.join(missing)} not installed; "
                         f"install the extra: {ONNX_EXTRA}")


def export_onnx(child: nn.Module, resolution: int, path: str | Path, seed: int = 0) -> float:
    """Write `child` as ONNX (batch size free) and check onnxruntime against torch on
    random input; returns the max abs difference, ValueError above ONNX_TOLERANCE."""
    check_onnx_available()
    import onnx
    import onnxruntime as ort

    child = child.eval()
    x = torch.randn(2, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated but took under a second here, against
        # 10-30 s for the torch.export one (which also needs onnxscript) on these nets.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(child, (x,), str(path), input_names=["input"],
                          output_names=["logits"], dynamo=False,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    onnx.checker.check_model(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = child(x).numpy()
    diff = float(abs(got - want).max())
    if not diff <= ONNX_TOLERANCE:
        raise ValueError(f"onnx: onnxruntime's logits differ from torch's by {diff:.2e}, "
                         f"more than {ONNX_TOLERANCE:g}")
    return diff
