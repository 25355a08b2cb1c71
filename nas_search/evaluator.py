"""Evaluators: a list of children in, a table of metrics out.

The contract (`Evaluator`) is shared with the predictors package and test oracles:
a `name` and `evaluate(archs)` returning one row per arch, in order, with at least
the columns in `EVAL_COLUMNS`. Top-1 is a fraction in 0..1.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch
from torch import nn

from supernet.checkpoint import load_checkpoint
from supernet.data import DataSet, calib_batches, load_data, normalize, resize
from supernet.evaluation import calibrate_bn, evaluate
from supernet.model import ElasticSupernet
from supernet.space import Arch, SearchSpace

EVAL_COLUMNS = ("arch", "top1", "loss", "evaluator", "eval_time_s")


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


# ---- a deterministic oracle, for tests and demos --------------------------------------
class OracleEvaluator:
    """Deterministic stand-in: top-1 rises with log-MACs, minus a fixed per-child jitter.

    No network and no data: tests and benchmarks of the search logic run in milliseconds.
    """

    def __init__(self, space: SearchSpace, noise: float = 0.03, name: str = "oracle"):
        from supernet.cost import macs

        self.space, self.noise, self.name = space, noise, name
        self._macs = macs
        self._lo = math.log(macs(space, space.min_arch()))
        self._hi = math.log(macs(space, space.max_arch()))

    def top1(self, arch: Arch) -> float:
        x = (math.log(self._macs(self.space, arch)) - self._lo) / max(self._hi - self._lo, 1e-9)
        # depth helps a little more than width here, so the front is not just "more MACs"
        depth = np.mean([s.depth / max(spec.depths)
                         for s, spec in zip(arch.stages, self.space.stages)]
                        + [op != "skip" for op in arch.layers])
        h = int.from_bytes(hashlib.sha256(str(arch).encode()).digest()[:8], "big") / 2**64
        return float(np.clip(0.5 + 0.4 * math.sqrt(max(x, 0)) + 0.05 * depth
                             - self.noise * h, 0, 1))

    def evaluate(self, archs: Sequence[Arch]) -> pd.DataFrame:
        rows = [{"arch": str(a), "top1": self.top1(a), "loss": float("nan"),
                 "evaluator": self.name, "eval_time_s": 0.0} for a in archs]
        return pd.DataFrame(rows, columns=list(EVAL_COLUMNS))


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
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        model(x)
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model(x)
        sync()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


@contextmanager
def torch_threads(n: int | None):
    """Run the body with `n` torch CPU threads (None: torch's setting), then restore."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


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


class _Child(nn.Module):
    """An exported child behind the supernet's `forward(x, arch)` signature, so that
    `supernet.evaluation.calibrate_bn` and `evaluate` run on it unchanged."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor, arch: Arch | None = None) -> torch.Tensor:
        return self.body(x)


class SupernetEvaluator:
    """Children of a trained supernet: BN recalibration on a fixed set of training images,
    then top-1 and loss on the validation split (optionally batch-1 latency).

    Each child is exported first (plain layers, weights copied) and recalibrated and
    evaluated as such: static layers in channels-last layout with in-place activations
    ran 1.3-1.6x faster than the sliced supernet on 2 CPU threads (attentive-mbv3 at 192
    and 288 px), 2-2.6x with `reuse_freed_memory`; and the supernet's own BN statistics
    are never touched. Images are normalised and resized once per resolution.
    """

    def __init__(self, net: ElasticSupernet, data: DataSet, *, calib_images: int = 64,
                 val_images: int | None = None, batch_size: int = 256, latency: bool = False,
                 device: str | torch.device | None = None, name: str = "supernet",
                 calib_seed: int = 0, channels_last: bool = True, threads: int | None = None):
        if calib_images < 1:
            raise ValueError(f"calib_images: {calib_images} must be at least 1")
        if len(data.train) < calib_images:
            raise ValueError(f"calib_images: {calib_images} exceeds the {len(data.train)} "
                             f"training images of {data.name!r}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cpu":
            reuse_freed_memory()
        self.net = net.to(self.device).eval()
        self.space = net.space
        self.data, self.batch_size, self.latency = data, batch_size, latency
        self.calib_seed, self.threads = calib_seed, threads
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        n_val = len(data.val) if val_images is None else min(val_images, len(data.val))
        self.calib_images, self.val_images = calib_images, n_val
        self.name = f"{name}/cal{calib_images}/val{n_val}"
        self._prepared: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, space: SearchSpace | str | None = None,
                        data: str | None = None, **kwargs) -> SupernetEvaluator:
        """Load a checkpoint and the data set it was trained on (its held-out val split)."""
        net, extra = load_checkpoint(path, space)
        spec = data or extra.get("data") or "digits"
        seed = int(extra.get("seed", 0))  # the split seed of training: val stays held out
        dataset = load_data(spec, max(net.space.resolutions), seed)
        if dataset.num_classes != net.space.num_classes:
            raise ValueError(f"data: {spec!r} has {dataset.num_classes} classes but the "
                             f"supernet's space has {net.space.num_classes}")
        kwargs.setdefault("name", f"supernet-{file_digest(path)}")
        return cls(net, dataset, **kwargs)

    def inputs(self, resolution: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(calibration images, val images, val labels) at `resolution`, on the device."""
        if resolution not in self._prepared:
            d = self.data
            # a fixed subset, independent of the search seed: the same child always gets
            # the same statistics, so evaluations compare across strategies and seeds
            calib = next(iter(calib_batches(d, self.calib_images, self.calib_images,
                                            self.calib_seed)))[0]
            val = normalize(d.val.x[: self.val_images], d)
            fmt = self.memory_format
            self._prepared[resolution] = (
                resize(calib, resolution).to(self.device, memory_format=fmt),
                resize(val, resolution).to(self.device, memory_format=fmt),
                d.val.y[: self.val_images].to(self.device))
        return self._prepared[resolution]

    def _batches(self, x: torch.Tensor, y: torch.Tensor | None):
        for i in range(0, len(x), self.batch_size):
            yield x[i:i + self.batch_size], (None if y is None else y[i:i + self.batch_size])

    def calibrated_child(self, arch: Arch) -> nn.Module:
        """Child `arch` exported, with BN statistics recalibrated on the fixed images."""
        calib = self.inputs(arch.resolution)[0]
        child = _Child(self.net.export(arch)).to(self.device, memory_format=self.memory_format)
        for m in child.modules():
            # every activation of an exported child acts on a fresh conv/BN output
            if hasattr(m, "inplace"):
                m.inplace = True
        calibrate_bn(child, arch, self._batches(calib, None), len(calib))
        return child

    def evaluate_one(self, arch: Arch) -> dict:
        """Calibrate, evaluate (and time) one child; a row of the result table."""
        t = time.perf_counter()
        child = self.calibrated_child(arch)
        t_calib = time.perf_counter() - t
        _, val_x, val_y = self.inputs(arch.resolution)
        res = evaluate(child, arch, self._batches(val_x, val_y))
        row = {"arch": str(arch), "top1": res.top1, "loss": res.loss,
               "evaluator": self.name, "eval_time_s": time.perf_counter() - t,
               "calib_time_s": t_calib}
        if self.latency:
            row["latency_ms"] = self.latency_ms(arch, child)
        return row

    def latency_ms(self, arch: Arch, child: nn.Module | None = None) -> float:
        """Batch-1 latency of the exported child on this evaluator's device, layout and
        CPU threads."""
        child = child if child is not None else _Child(self.net.export(arch))
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
