"""Helpers every package shares: atomic file writes, file digests, a scoped torch thread
count, median timing and batch-1 latency, glibc's heap reuse. Standard library, numpy and
torch only, so `supernet` stays importable on its own and `nas_search` and `predictors`
import these instead of keeping copies."""

from __future__ import annotations

import ctypes
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch


def atomic_write(path: str | Path, write: Callable[[IO[Any]], None],
                 binary: bool = False) -> None:
    """Call `write(f)` on a temporary file beside `path`, then rename it over `path`: a
    killed process leaves the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline="")) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """`torch.save` through `atomic_write`."""
    atomic_write(path, lambda f: torch.save(obj, f), binary=True)


def load_format(path: str | Path, what: str, fmt: str, kind: str,
                hint: str = "") -> dict[str, Any]:
    """The dict saved at `path` (torch.load with weights_only=True) whose "format" is
    `fmt`; one-line ValueError naming `what` (e.g. "checkpoint") and `kind` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what}: {str(path)!r} does not exist or is not a file")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise ValueError(f"{what}: {str(path)!r} is not {kind} ({type(e).__name__})") from None
    if not isinstance(d, dict) or d.get("format") != fmt:
        raise ValueError(f"{what}: {str(path)!r} is not {kind} (format {fmt!r} expected{hint})")
    return d


def parse_device(text: str) -> torch.device:
    """`text` as a torch device this machine has (cpu, cuda, cuda:N); ValueError naming
    the bad value otherwise."""
    try:
        dev = torch.device(text)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: {text!r} is not a torch device (cpu, cuda, cuda:N)") \
            from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: {text!r} is not supported; expected cpu, cuda, cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {text!r} is not available on this machine")
    return dev


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the body with `n` torch intra-op threads (None or 0: torch's setting), then
    restore the previous count."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def device_sync(device: str | torch.device) -> Callable[[], None]:
    """A function that waits for queued work on `device` (CUDA runs asynchronously)."""
    return torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)


def times_ms(call: Callable[[], Any], warmup: int = 3, repeats: int = 10,
             sync: Callable[[], None] = lambda: None,
             timer: Callable[[], float] = time.perf_counter) -> list[float]:
    """Wall times in ms of `repeats` runs of `call()` after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    sync()
    times: list[float] = []
    for _ in range(repeats):
        start = timer()
        call()
        sync()
        times.append(1000.0 * (timer() - start))
    return times


def median_ms(call: Callable[[], Any], warmup: int = 3, repeats: int = 10,
              sync: Callable[[], None] = lambda: None,
              timer: Callable[[], float] = time.perf_counter) -> float:
    """Median wall time in ms of `call()` over `repeats` runs after `warmup` untimed ones
    (the median, not the mean: the machines are shared)."""
    return float(np.median(times_ms(call, warmup, repeats, sync, timer)))


def mixed_seed(*keys: int) -> int:
    """A 63-bit seed mixed from integers, so every (seed, epoch/step, rank) draws anew."""
    return int(np.random.SeedSequence(list(keys)).generate_state(2, np.uint64)[0] >> 1)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks (supernet files are ~100 MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: str | Path, n: int = 10) -> str:
    """First `n` hex digits of the file's SHA-256: names the weights an evaluation used."""
    return file_sha256(path)[:n]


@torch.inference_mode()
def measure_latency(model: torch.nn.Module, resolution: int, device: torch.device,
                    memory_format: torch.memory_format = torch.contiguous_format,
                    warmup: int = 3, repeats: int = 10) -> float:
    """Median milliseconds of one batch-1 forward of `model` on `device`, after warm-up."""
    # torch's Module.to takes memory_format; its type hints leave it out
    model = model.eval().to(device, memory_format=memory_format)  # type: ignore[call-overload]
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
