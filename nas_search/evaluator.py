"""Evaluators: a list of children in, a table of metrics out.

The contract (`Evaluator`) is shared with the predictors package and test oracles:
a `name` and `evaluate(archs)` returning one row per arch, in order, with at least
the columns in `EVAL_COLUMNS`. Top-1 is a fraction in 0..1.
"""

from __future__ import annotations

import ctypes
import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import pandas as pd
import torch
from torch import nn

from supernet.checkpoint import checkpoint_data, load_checkpoint
from supernet.data.datasets import (
    DataSet,
    batches,
    images,
    normalize,
    resize,
    stratified_subset,
)
from supernet.data.datasets import calib_indices as calib_subset
from supernet.nn.export import fold_els_layers
from supernet.nn.model import ElasticSupernet
from supernet.spaces.space import Arch, SearchSpace
from supernet.training.calibrate import as_supernet_call, recalibrate
from supernet.training.evaluation import evaluate
from supernet.utils import device_sync, median_ms, torch_threads

EVAL_COLUMNS = ("arch", "top1", "loss", "evaluator", "eval_time_s")
# BN recalibration images per child (at most the training split). Measured by
# benchmarks/calib_images.py on the CIFAR-10 tiny supernet: 50 random children calibrated
# on two disjoint subsets differ by 1.05 / 0.46 / 0.36 / 0.18 top-1 points on average at
# 64 / 256 / 1024 / 4096 images (Kendall tau 0.34 / 0.70 / 0.76 / 0.87): 4096 is the
# smallest size within 0.25 points.
CALIB_IMAGES = 4096


@runtime_checkable
class Evaluator(Protocol):
    """Anything that scores children: the supernet, a predictor, a test oracle.

    `evaluate` returns one row per input arch, in order, with at least the columns
    arch (str form), top1 (fraction 0..1), loss (may be NaN), evaluator (str, which
    evaluator produced the row) and eval_time_s; extra columns (e.g. latency_ms) pass on.
    """

    name: str

    def evaluate(self, archs: Sequence[Arch]) -> pd.DataFrame: ...


def check_output(evaluator: Evaluator, archs: Sequence[Arch], table: pd.DataFrame) -> None:
    """Raise if an evaluator broke the contract (wrong length, order or columns)."""
    missing = [c for c in EVAL_COLUMNS if c not in table]
    if missing:
        raise ValueError(f"evaluator {evaluator.name!r}: result lacks columns {missing}")
    if list(table["arch"]) != [str(a) for a in archs]:
        raise ValueError(f"evaluator {evaluator.name!r}: result rows do not match the "
                         f"{len(archs)} requested children in order")


# ---- the supernet ----------------------------------------------------------------------
def file_digest(path: str | Path, n: int = 10) -> str:
    """First `n` hex digits of the file's SHA-256: names the weights an evaluation used."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


@torch.inference_mode()
def measure_latency(model: torch.nn.Module, resolution: int, device: torch.device,
                    memory_format: torch.memory_format = torch.contiguous_format,
                    warmup: int = 3, repeats: int = 10) -> float:
    """Median milliseconds of one batch-1 forward of `model` on `device`, after warm-up."""
    model = model.eval().to(device, memory_format=memory_format)
    x = torch.randn(1, 3, resolution, resolution, device=device).to(memory_format=memory_format)
    return median_ms(lambda: model(x), warmup, repeats, device_sync(device))


def reuse_freed_memory() -> bool:
    """Ask glibc to serve large tensors from its heap and keep freed memory for reuse.

    By default every activation above a few MB is a fresh mmap whose pages the kernel
    zero-fills on first touch; evaluation allocates the same big tensors child after child,
    and the faults made BN recalibration about twice as slow at 288 px. Process-wide, and a
    no-op where the C library is not glibc. Returns whether it took effect.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameter numbers
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold,
                                                                        1 << 30))


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
                 workers: int = 0, calib_indices: Sequence[int] | None = None):
        if calib_images < 1:
            raise ValueError(f"calib_images: {calib_images} must be at least 1")
        calib_images = min(calib_images, len(data.train))  # small data sets: all of it
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cpu":
            reuse_freed_memory()
        self.net = net.to(self.device).eval()
        self.space = net.space
        self.data, self.batch_size, self.latency = data, batch_size, latency
        self.calib_seed, self.threads = calib_seed, threads
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        n_val = len(data.val) if val_images is None else min(val_images, len(data.val))
        self.calib_images, self.val_images, self.workers = calib_images, n_val, workers
        self.name = f"{name}/cal{calib_images}/val{n_val}"
        # a fixed subset, independent of the search seed: the same child always gets the
        # same statistics, so evaluations compare across strategies and seeds
        chosen = (calib_subset(data, calib_images, calib_seed) if calib_indices is None
                  else list(calib_indices))
        self._calib = images(data.train.subset(chosen), data)[0].to(self.device)
        # a class-stratified val subset with a fixed seed (the first n could be one class)
        self._val_split = data.val.subset(stratified_subset(data.val.y, n_val, seed=0))
        self._val = None if data.streamed else tuple(
            t.to(self.device) for t in images(self._val_split, data))

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, space: SearchSpace | str | None = None,
                        data: str | None = None, **kwargs) -> SupernetEvaluator:
        """Load a checkpoint and the data set it was trained on (its held-out val split)."""
        net, extra = load_checkpoint(path, space)
        _, dataset = checkpoint_data(net.space, extra, data)
        kwargs.setdefault("name", f"supernet-{file_digest(path)}")
        return cls(net, dataset, **kwargs)

    def _prepared(self, x: torch.Tensor, resolution: int) -> torch.Tensor:
        """uint8 images at base resolution -> normalised, resized, in the eval layout."""
        x = resize(normalize(x, self.data), resolution)
        return x.contiguous(memory_format=self.memory_format)

    def _uint8_batches(self, x: torch.Tensor, y: torch.Tensor | None, resolution: int):
        for i in range(0, len(x), self.batch_size):
            yield (self._prepared(x[i:i + self.batch_size], resolution),
                   None if y is None else y[i:i + self.batch_size])

    def val_batches(self, resolution: int):
        """The val subset as normalised batches at `resolution`, on the device."""
        if self._val is not None:
            yield from self._uint8_batches(*self._val, resolution)
            return
        for x, y in batches(self._val_split, self.data, self.batch_size, device=self.device,
                            workers=self.workers):
            yield resize(x, resolution).contiguous(memory_format=self.memory_format), y

    def calibrated_child(self, arch: Arch) -> nn.Module:
        """Child `arch` exported, with BN statistics recalibrated on the fixed images."""
        # ELS fold after recalibration: their own BN statistics are recalibrated too
        child = self.net.export(arch, fold_els=False).to(self.device,
                                                         memory_format=self.memory_format)
        for m in child.modules():
            # every activation of an exported child acts on a fresh conv/BN output
            if hasattr(m, "inplace"):
                m.inplace = True
        recalibrate(child, arch, self._uint8_batches(self._calib, None, arch.resolution),
                    len(self._calib))
        return as_supernet_call(fold_els_layers(child))

    def evaluate_one(self, arch: Arch) -> dict:
        """Calibrate, evaluate (and time) one child; a row of the result table."""
        t = time.perf_counter()
        child = self.calibrated_child(arch)
        t_calib = time.perf_counter() - t
        res = evaluate(child, arch, self.val_batches(arch.resolution))
        row = {"arch": str(arch), "top1": res.top1, "loss": res.loss,
               "evaluator": self.name, "eval_time_s": time.perf_counter() - t,
               "calib_time_s": t_calib}
        if self.latency:
            row["latency_ms"] = self.latency_ms(arch, child)
        return row

    def latency_ms(self, arch: Arch, child: nn.Module | None = None) -> float:
        """Batch-1 latency of the exported child on this evaluator's device, layout and
        CPU threads."""
        child = child if child is not None else as_supernet_call(self.net.export(arch))
        with torch_threads(self.threads):
            return measure_latency(child, arch.resolution, self.device, self.memory_format)

    def evaluate(self, archs: Sequence[Arch]) -> pd.DataFrame:
        """One row per child (see `Evaluator`), with `calib_time_s` (and `latency_ms`)."""
        with torch_threads(self.threads):
            rows = [self.evaluate_one(a) for a in archs]
        cols = [*EVAL_COLUMNS, "calib_time_s"] + (["latency_ms"] if self.latency else [])
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
        world, rank = self.dist.get_world_size(), self.dist.get_rank()
        mine = self.inner.evaluate(list(archs)[rank::world]).to_dict("records")
        parts: list = [None] * world
        self.dist.all_gather_object(parts, mine)
        rows: list = [None] * len(archs)
        for r, part in enumerate(parts):
            rows[r::world] = part
        columns = next((list(p[0]) for p in parts if p), list(EVAL_COLUMNS))
        return pd.DataFrame(rows, columns=columns)
