"""Evaluators: a list of children in, a table of metrics out.

The contract (`Evaluator`) is shared with the predictors package and test oracles:
a `name` and `evaluate(archs)` returning one row per arch, in order, with at least
the columns in `EVAL_COLUMNS`. Top-1 is a fraction in 0..1.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pandas as pd
import torch
from torch import nn

from supernet.checkpoint import checkpoint_data, load_checkpoint
from supernet.data.datasets import DataSet
from supernet.nn.deploy import check_runtime, onnx_bytes, ort_scores, quantize_int8
from supernet.nn.model import ElasticSupernet
from supernet.spaces.space import Arch, SearchSpace
from supernet.training.calibrate import calibrated_child, child_images
from supernet.training.evaluation import evaluate
from supernet.utils import file_digest, measure_latency, reuse_freed_memory, torch_threads

from .timing import Timer

EVAL_COLUMNS = ("arch", "top1", "loss", "evaluator", "eval_time_s")
# BN recalibration images per child (at most the training split). Measured by
# benchmarks/calib_images.py on the CIFAR-10 tiny supernet: 50 random children calibrated
# on two disjoint subsets differ by 1.05 / 0.46 / 0.36 / 0.18 top-1 points on average at
# 64 / 256 / 1024 / 4096 images (Kendall tau 0.34 / 0.70 / 0.76 / 0.87): 4096 is the
# smallest size within 0.25 points.
CALIB_IMAGES = 4096
# int8 calibration images per child (the first of the BN calibration set): onnxruntime's
# MinMax calibration runs the whole model per batch, a cost paid per candidate
QUANT_IMAGES = 256


def default_calib_images(extra: dict[str, Any]) -> int:
    """BN calibration images per child for a loaded checkpoint: its authors' recipe where
    the checkpoint records one (a converted supernet), else `CALIB_IMAGES`."""
    recipe = (extra.get("preprocessing") or {}).get("bn_calibration_images")
    return int(recipe) if recipe else CALIB_IMAGES


@runtime_checkable
class Evaluator(Protocol):
    """Anything that scores children: the supernet, a predictor, a test oracle.

    `evaluate` returns one row per input arch, in order, with at least the columns
    arch (str form), top1 (fraction 0..1), loss (may be NaN), evaluator (str, which
    evaluator produced the row) and eval_time_s; extra columns (e.g. latency_ms) pass on.
    """

    name: str

    def evaluate(self, archs: Sequence[Arch]) -> pd.DataFrame:
        """One row per arch, in order (see the class)."""
        ...


def check_output(evaluator: Evaluator, archs: Sequence[Arch], table: pd.DataFrame) -> None:
    """Raise if an evaluator broke the contract (wrong length, order or columns)."""
    missing = [c for c in EVAL_COLUMNS if c not in table]
    if missing:
        raise ValueError(f"evaluator {evaluator.name!r}: result lacks columns {missing}")
    if list(table["arch"]) != [str(a) for a in archs]:
        raise ValueError(f"evaluator {evaluator.name!r}: result rows do not match the "
                         f"{len(archs)} requested children in order")


# ---- the supernet ----------------------------------------------------------------------
class SupernetEvaluator:
    """Children of a trained supernet: BN recalibration on a fixed set of training images,
    then top-1 and loss on the validation split (optionally batch-1 latency).

    Each child is exported first (plain layers, weights copied) and recalibrated and
    evaluated as such: static layers in channels-last layout with in-place activations
    ran 1.3-1.6x faster than the sliced supernet on 2 CPU threads (attentive-mbv3 at 192
    and 288 px), 2-2.6x with `reuse_freed_memory`; and the supernet's own BN statistics
    are never touched.

    Memory stays bounded whatever the data set's size: the calibration images (a fixed
    subset of training images) are held as uint8 at base resolution; the val subset too
    when the data set is in memory, while a streamed folder's val subset is decoded per
    child by `workers` processes. Batches are normalised and resized per child; no float
    copy of the data at any resolution is kept.
    """

    def __init__(self, net: ElasticSupernet, data: DataSet, *, calib_images: int = CALIB_IMAGES,
                 val_images: int | None = None, batch_size: int = 256, latency: bool = False,
                 device: str | torch.device | None = None, name: str = "supernet",
                 calib_seed: int = 0, channels_last: bool = True, threads: int | None = None,
                 workers: int = 0, calib_indices: Sequence[int] | None = None,
                 timer: Timer | None = None, quantize: str | None = None,
                 quant_images: int = QUANT_IMAGES):
        if calib_images < 1:
            raise ValueError(f"calib_images: {calib_images} must be at least 1")
        calib_images = min(calib_images, len(data.train))  # small data sets: all of it
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cpu":
            reuse_freed_memory()
        self.net = net.to(self.device).eval()
        self.space = net.space
        self.data, self.latency, self.threads = data, latency, threads
        self.images = child_images(data, calib_images, seed=calib_seed, indices=calib_indices,
                                   val_images=val_images, batch_size=batch_size,
                                   device=self.device, channels_last=channels_last,
                                   workers=workers)
        self.calib_images, self.val_images = calib_images, len(self.images.val_split)
        # children timed in their deployment runtime (None: torch, on this device)
        self.timer, self.quantize, self.quant_images = timer, quantize, quant_images
        if quantize is not None:
            check_runtime("onnxruntime", quantize)
        self.name = f"{name}/cal{calib_images}/val{self.val_images}" + (
            f"/{quantize}" if quantize else "")

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, space: SearchSpace | str | None = None,
                        data: str | None = None, **kwargs: Any) -> SupernetEvaluator:
        """Load a checkpoint and the data set it was trained on (its held-out val split);
        a converted supernet calibrates on its authors' number of images unless told."""
        net, extra = load_checkpoint(path, space)
        _, dataset = checkpoint_data(net.space, extra, data)
        kwargs.setdefault("name", f"supernet-{file_digest(path)}")
        if kwargs.get("calib_images") is None:
            kwargs["calib_images"] = default_calib_images(extra)
        return cls(net, dataset, **kwargs)

    def evaluate_one(self, arch: Arch) -> dict[str, Any]:
        """Calibrate, evaluate (and time) one child; a row of the result table. With
        `quantize`, top-1 and latency are those of the child's int8 ONNX model."""
        t = time.perf_counter()
        child = calibrated_child(self.net, arch, self.images)
        t_calib = time.perf_counter() - t
        model = None
        if self.quantize is not None:
            model = self.int8_model(arch, child)
            top1, loss, _ = ort_scores(model, self._numpy(self.images.val_batches(
                arch.resolution)), self.threads or 1)
        else:
            res = evaluate(child, arch, self.images.val_batches(arch.resolution))
            top1, loss = res.top1, res.loss
        row: dict[str, Any] = {"arch": str(arch), "top1": top1, "loss": loss,
                               "evaluator": self.name, "eval_time_s": time.perf_counter() - t,
                               "calib_time_s": t_calib}
        if self.latency:
            row.update(self.timing(arch, child, model))
        return row

    @staticmethod
    def _numpy(batches: Iterable[tuple[torch.Tensor, Any]]) -> Iterator[tuple[Any, Any]]:
        for x, y in batches:
            yield (x.contiguous().cpu().numpy(),
                   None if y is None else y.cpu().numpy())

    def int8_model(self, arch: Arch, child: nn.Module) -> bytes:
        """onnxruntime's static int8 quantization of the calibrated `child`, calibrated on
        the first `quant_images` of the BN calibration images."""
        return quantize_int8(onnx_bytes(child.cpu(), arch.resolution),
                             self.images.calib_arrays(arch.resolution, self.quant_images))

    def timing(self, arch: Arch, child: nn.Module | None = None,
               model: bytes | None = None) -> dict[str, Any]:
        """Latency columns of `arch`: the timer's (deployment runtime, cached) or torch's
        on this device."""
        if self.timer is None:
            return {"latency_ms": self.latency_ms(arch, child)}
        child = child if child is not None else self.net.export(arch)
        return self.timer.latency(arch, child.cpu(), model)

    def latency_ms(self, arch: Arch, child: nn.Module | None = None) -> float:
        """Batch-1 latency of the exported child on this evaluator's device, layout and
        CPU threads (in the timer's runtime when there is one)."""
        if self.timer is not None:
            model = self.int8_model(arch, calibrated_child(self.net, arch, self.images)) \
                if self.quantize else None
            return float(self.timing(arch, child, model)["latency_ms"])
        child = child if child is not None else self.net.export(arch)
        with torch_threads(self.threads):
            return measure_latency(child, arch.resolution, self.device,
                                   self.images.memory_format)

    def evaluate(self, archs: Sequence[Arch]) -> pd.DataFrame:
        """One row per child (see `Evaluator`), with `calib_time_s` (and `latency_ms`)."""
        with torch_threads(self.threads):
            rows = [self.evaluate_one(a) for a in archs]
        cols = [*EVAL_COLUMNS, "calib_time_s"] + (
            ["latency_ms"] + (["latency_spread"] if self.timer is not None else [])
            if self.latency else [])
        return pd.DataFrame(rows, columns=cols)


# ---- several processes ---------------------------------------------------------------
class DistributedEvaluator:
    """Splits each batch of children across the ranks of torch.distributed and gathers
    the rows, so every rank gets the whole table (and every rank's search stays in step)."""

    def __init__(self, inner: Evaluator):
        import torch.distributed as dist

        self.inner, self.dist = inner, dist
        self.name = inner.name

    def evaluate(self, archs: Sequence[Arch]) -> pd.DataFrame:
        """Every row, in order: this rank evaluates every world-th child, the rest come
        from the other ranks."""
        world, rank = self.dist.get_world_size(), self.dist.get_rank()
        mine = self.inner.evaluate(list(archs)[rank::world]).to_dict("records")
        parts: list[Any] = [None] * world
        self.dist.all_gather_object(parts, mine)
        rows: list[Any] = [None] * len(archs)
        for r, part in enumerate(parts):
            rows[r::world] = part
        columns = next((list(p[0]) for p in parts if p), list(EVAL_COLUMNS))
        return pd.DataFrame(rows, columns=columns)
