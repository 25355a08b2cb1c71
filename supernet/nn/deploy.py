"""A child in the runtime it ships in: ONNX in memory, onnxruntime sessions with pinned
threads, batch-N latency (warm-up, then the median of repeated runs, with its spread), and
onnxruntime's static int8 quantization calibrated on images.

People deploy ONNX models, often int8, not torch eager: a search that constrains latency
should time what will run. Everything here is on this machine (onnxruntime's CPU execution
provider, or CUDA's where present).
"""

from __future__ import annotations

import io
import logging
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..utils import times_ms, torch_threads

RUNTIMES = ("onnxruntime", "torch")
QUANTIZE = ("int8",)
NOISY_SPREAD = 0.25  # (p90 - p10) / median above this: the machine is too busy to trust


@dataclass(frozen=True)
class Timing:
    """One child's latency: the median of `repeats` runs and their relative spread."""

    ms: float
    spread: float  # (p90 - p10) / median over the repeats
    runtime: str
    provider: str
    batch: int
    threads: int

    @property
    def noisy(self) -> bool:
        """Whether the repeats spread too widely for the median to be trusted."""
        return self.spread > NOISY_SPREAD

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for a cache file."""
        return asdict(self)


def check_runtime(runtime: str, quantize: str | None = None) -> None:
    """ValueError (one line) for a runtime or quantization mode that is unknown, not
    installed, or not possible together."""
    if runtime not in RUNTIMES:
        raise ValueError(f"latency runtime: {runtime!r} is unknown; choose from "
                         f"{', '.join(RUNTIMES)}")
    if quantize is not None and quantize not in QUANTIZE:
        raise ValueError(f"quantize: {quantize!r} is unknown; choose from {', '.join(QUANTIZE)}")
    if quantize is not None and runtime != "onnxruntime":
        raise ValueError(f"quantize: {quantize} children run in onnxruntime, not {runtime!r}; "
                         "use --latency-runtime onnxruntime")
    if runtime == "onnxruntime" or quantize is not None:
        for mod in ("onnx", "onnxruntime"):
            try:
                __import__(mod)
            except ImportError:
                raise ValueError(f"latency runtime: onnxruntime needs the {mod} package; "
                                 "install it with pip install 'nas-supernet[onnx]'") from None


def onnx_bytes(child: nn.Module, resolution: int) -> bytes:
    """`child` (eval mode) exported to ONNX in memory, the batch size free."""
    x = torch.zeros(1, 3, resolution, resolution)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter: under a second here, against 10-30 s for torch.export's
        warnings.simplefilter("ignore", DeprecationWarning)
        # the TorchScript exporter (dynamo=False) writes to a file object too; torch's
        # annotation names paths only
        torch.onnx.export(child.eval(), (x,), buf,  # type: ignore[arg-type]
                          input_names=["input"], output_names=["logits"], dynamo=False,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return buf.getvalue()


def providers() -> list[str]:
    """onnxruntime's execution providers to use: CUDA's where present, else the CPU's."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if "CUDAExecutionProvider" in \
        have else ["CPUExecutionProvider"]


def ort_session(model: bytes, threads: int = 1) -> Any:
    """An onnxruntime session of `model` with its threads pinned: `threads` inside an op,
    one across ops, so timings are repeatable and comparable between children."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # warnings about unused initializers are noise here
    return ort.InferenceSession(model, opts, providers=providers())


def _median_spread(call: Callable[[], Any], warmup: int, repeats: int) -> tuple[float, float]:
    p10, med, p90 = np.percentile(times_ms(call, warmup, repeats), [10, 50, 90])
    return float(med), float((p90 - p10) / med) if med > 0 else 0.0


def measure(child: nn.Module | None, resolution: int, *, runtime: str = "onnxruntime",
            batch: int = 1, threads: int = 1, warmup: int = 5, repeats: int = 30,
            model: bytes | None = None) -> Timing:
    """Latency of `child` (or of the ONNX `model`, e.g. its int8 form) at `resolution` in
    `runtime`: warm-up runs, then the median and spread of `repeats` runs of one batch."""
    x = torch.randn(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
    if runtime == "torch":
        if child is None:
            raise ValueError("latency: the torch runtime times a module, not an ONNX model")

        child = child.eval()
        with torch_threads(threads), torch.inference_mode():
            ms, spread = _median_spread(lambda: child(x), warmup, repeats)
        return Timing(ms, spread, "torch", "cpu", batch, threads)
    if model is None:
        if child is None:
            raise ValueError("latency: give a child or an ONNX model")
        model = onnx_bytes(child, resolution)
    sess = ort_session(model, threads)
    feed = {"input": x.numpy()}
    ms, spread = _median_spread(lambda: sess.run(None, feed), warmup, repeats)
    return Timing(ms, spread, "onnxruntime", sess.get_providers()[0], batch, threads)


class _Images:
    """onnxruntime's CalibrationDataReader over batches of normalised images."""

    def __init__(self, batches: Iterable[np.ndarray]):
        self.it: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self.it, None)
        return None if x is None else {"input": np.ascontiguousarray(x, dtype=np.float32)}


def quantize_int8(model: bytes, calib: Iterable[np.ndarray]) -> bytes:
    """onnxruntime's static int8 quantization of `model` (QDQ format, per-channel int8
    weights, uint8 activations, MinMax calibration on the batches `calib`)."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp, _quiet_root_logger():
        raw, src, dst = (Path(tmp) / f for f in ("raw.onnx", "fp32.onnx", "int8.onnx"))
        raw.write_bytes(model)
        # onnxruntime's recommended pre-processing: shapes inferred and constants made
        # initializers, so every conv bias is quantized with its weight
        quant_pre_process(str(raw), str(src))
        quantize_static(str(src), str(dst), _Images(calib), quant_format=QuantFormat.QDQ,
                        per_channel=True, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        return dst.read_bytes()


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantizer logs advice through the root logger at WARNING."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def ort_scores(model: bytes, batches: Iterable[tuple[np.ndarray, np.ndarray]],
               threads: int = 1) -> tuple[float, float, int]:
    """(top-1, mean cross-entropy, images) of the ONNX `model` on labelled batches."""
    sess = ort_session(model, threads)
    correct, loss, n = 0, 0.0, 0
    for x, y in batches:
        logits = torch.from_numpy(sess.run(None, {"input": np.ascontiguousarray(x)})[0])
        yt = torch.as_tensor(y)
        loss += float(torch.nn.functional.cross_entropy(logits, yt, reduction="sum"))
        correct += int((logits.argmax(1) == yt).sum())
        n += len(yt)
    return correct / max(n, 1), loss / max(n, 1), n
