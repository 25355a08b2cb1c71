"""Latency lookup tables: each distinct layer configuration of a space timed once on this
device; a child's latency is predicted as the sum of its layers' entries plus one
per-network constant.

A layer is the stem, one whole MBConv block, or the head, as `child_plan` resolves them
(the source the supernet's forward, `export` and the cost counter share). Whole blocks, so
an entry includes the block's own module calls and residual add. Layers are timed one by
one inside a running exported child, so each entry also pays for refetching its weights
and input after the layer before, as in a real forward pass (timing a layer alone in a
loop, data hot in cache, came out 10-50% under the whole child here). What is left, the
calls of the outer containers, is the constant: whole child minus its layers, timed back
to back on a few children.

A table predicts one runtime's latency: torch eager (`runtime="torch"`) or onnxruntime
(`runtime="onnxruntime"`, what is deployed). An onnxruntime table exports each distinct
layer as its own small ONNX model (the layer's input shape, the batch size free, as
`supernet.nn.deploy.onnx_bytes` exports a child) and times it in an onnxruntime session
with the threads pinned as `supernet.nn.deploy.ort_session` pins them, the layers' sessions
again run one after the other on each other's outputs. Each layer's own session pays a
call and reorders its input and output to and from the blocked layout of onnxruntime's
convolutions, costs that grow with the layer and that the whole model pays once; so an
onnxruntime table also has a scale (a "scale" row): over the same few children, timed
whole and layer by layer back to back, the median of whole over the sum of its layers
(0.85-0.9 on attentive-mbv3 and ofa-mbv3), the constant then being what is left.

The runtime is a column of the table, so a torch table and an onnxruntime table are never
mixed: growing one with the other, or reading one where the other is wanted, is a clear
error.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import replace
from itertools import product
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from torch import nn

from supernet.nn.deploy import RUNTIMES, check_runtime, onnx_bytes, ort_session, providers
from supernet.nn.model import ElasticSupernet
from supernet.spaces.plan import MBCONV, child_plan
from supernet.spaces.space import Arch, SearchSpace, StageArch
from supernet.utils import device_sync, torch_threads

from .io import write_csv_atomic

STEM, BLOCK, HEAD, NETWORK = "stem", "block", "head", "network"
SCALE = "scale"  # onnxruntime tables: the layers' sum is scaled (its "ms" is a factor)
META = ("space", "space_hash", "runtime", "device", "batch_size", "threads", "clock", "torch")
CLOCKS = ("wall", "cpu")
COLUMNS = ("kind", "key", "ms", *META)
_BLOCK_FIELDS = ("c_in", "mid", "c_out", "kernel", "stride", "has_expand", "se", "act",
                 "residual", "shortcut_pool", "shortcut_conv", "in_hw")


class MissingEntryError(LookupError):
    """A child has layers the table has not measured."""


# ---- layers of a child -------------------------------------------------------------------
def _key(kind: str, **fields: object) -> str:
    return kind + ":" + ",".join(
        f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in fields.items())


def layer_keys(space: SearchSpace, arch: Arch) -> list[str]:
    """Table keys of the layers of `arch` in network order: stem, each block, head."""
    p = child_plan(space, space.validate(arch))
    hw = p.blocks[-1].out_hw if p.blocks else p.stem_hw
    return [
        _key(STEM, resolution=p.resolution, c_out=p.stem_out, stride=space.stem_stride,
             act=space.stem_act),
        *(_key(BLOCK, **({} if b.kind == MBCONV else {"skip": b.kind}),
               **{f: getattr(b, f) for f in _BLOCK_FIELDS}) for b in p.blocks),
        _key(HEAD, hw=hw, c_in=p.last_width, mid=p.head_mid, width=p.head_width,
             classes=p.num_classes, act=space.head_act),
    ]


def _resolutions(space: SearchSpace, resolutions: Iterable[int] | None) -> tuple[int, ...]:
    res = tuple(space.resolutions if resolutions is None else sorted(set(resolutions)))
    bad = [r for r in res if r not in space.resolutions]
    if bad or not res:
        raise ValueError(f"resolutions: {list(res)} must be a non-empty subset of space "
                         f"{space.name!r}'s {list(space.resolutions)}")
    return res


def covering_archs(space: SearchSpace, resolutions: Iterable[int] | None = None) -> list[Arch]:
    """Children whose layers include every distinct layer configuration of the space (at
    `resolutions`): a block's shape depends only on its stage's choices, the width before
    the stage and the resolution, so each stage is varied at full depth over those alone."""
    base = space.min_arch()
    out: list[Arch] = []
    if space.layers:  # a layer's input is fixed by the layer before: vary every choice
        n = space.n_choices()
        for r, j in product(_resolutions(space, resolutions), range(int(max(n)))):
            out += [replace(space.decode([min(j, k - 1) for k in n]), resolution=r, stem=s,
                            head=h) for s, h in product(space.stem_widths, space.head_widths)]
        return list(dict.fromkeys(out))
    for r in _resolutions(space, resolutions):
        for i, spec in enumerate(space.stages):
            before = space.stem_widths if i == 0 else space.stages[i - 1].widths
            for c_in, w, k, e in product(before, spec.widths, spec.kernels, spec.expands):
                stages = list(base.stages)
                d = max(spec.depths)
                # OFA family: every layer its own kernel and expand; all alike here cover
                # the stage's first layer and every later one (a later layer's shape does
                # not depend on the layer before's kernel or expand)
                stages[i] = StageArch(w, d, (k,) * d, (e,) * d) if space.per_layer \
                    else StageArch(w, d, k, e)
                if i > 0:
                    stages[i - 1] = replace(stages[i - 1], width=c_in)
                stem = c_in if i == 0 else base.stem
                out.append(Arch(r, stem, tuple(stages), base.head))
        for w, h in product(space.stages[-1].widths, space.head_widths):
            stages = list(base.stages)
            stages[-1] = replace(stages[-1], width=w)
            out.append(Arch(r, base.stem, tuple(stages), h))
    return list(dict.fromkeys(out))


def calibration_archs(space: SearchSpace, resolutions: Iterable[int] | None = None,
                      n: int = 5, seed: int = 0) -> list[Arch]:
    """Children timed whole to fit the per-network constant: the smallest at the lowest
    resolution, the largest at the highest, and `n - 2` seeded random ones."""
    res = _resolutions(space, resolutions)
    rng = np.random.default_rng(seed)
    archs = [replace(space.min_arch(), resolution=res[0]),
             replace(space.max_arch(), resolution=res[-1])]
    archs += [replace(space.sample(rng), resolution=int(rng.choice(res)))
              for _ in range(max(0, n - 2))]
    return archs[:n]


# ---- timing ------------------------------------------------------------------------------
@torch.inference_mode()
def measure_layers_ms(layers: Sequence[Callable[[Any], Any]], x: Any, warmup: int = 10,
                      repeats: int = 30, sync: Callable[[], None] = lambda: None,
                      timer: Callable[[], float] = time.perf_counter) -> list[float]:
    """Median wall time in ms of each of `layers` (modules, or any callables such as
    onnxruntime sessions' runs), run in sequence on `x` (each feeding the next), over
    `repeats` runs after `warmup` untimed ones. Timing layers inside a running network, not
    one layer in a loop, charges each with refetching its weights and inputs as a real
    forward pass does; the median, not the mean, because the machine is shared."""
    def run(h: Any, times: list[list[float]] | None) -> None:
        for i, layer in enumerate(layers):
            start = timer()
            h = layer(h)
            sync()
            if times is not None:
                times[i].append(timer() - start)

    for _ in range(warmup):
        run(x, None)
    sync()
    times: list[list[float]] = [[] for _ in layers]
    for _ in range(repeats):
        run(x, times)
    return [1000.0 * float(np.median(t)) for t in times]


def measure_ms(module: Callable[[Any], Any], x: Any, warmup: int = 10, repeats: int = 30,
               sync: Callable[[], None] = lambda: None,
               timer: Callable[[], float] = time.perf_counter) -> float:
    """Median wall time in ms of `module(x)` over `repeats` calls after `warmup` untimed ones."""
    return measure_layers_ms([module], x, warmup, repeats, sync, timer)[0]


def _modules(child: nn.Sequential) -> list[nn.Module]:
    """An exported child's layers in `layer_keys` order: stem, each block, head."""
    stem, blocks, head = child
    return [stem, *cast(nn.Sequential, blocks), head]


def layer_onnx(layer: nn.Module, shape: Sequence[int]) -> bytes:
    """`layer` (eval mode) exported to ONNX in memory for inputs of `shape`, the batch size
    free, as `supernet.nn.deploy.onnx_bytes` exports a whole child."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter
        dynamic = {"input": {0: "batch"}, "output": {0: "batch"}}
        # torch's annotation names paths only; the TorchScript exporter writes to a buffer
        torch.onnx.export(layer.eval(), (torch.zeros(*shape),), buf,  # type: ignore[arg-type]
                          input_names=["input"], output_names=["output"], dynamo=False,
                          dynamic_axes=dynamic)
    return buf.getvalue()


class _OrtRun:
    """One onnxruntime session as a callable on numpy arrays (its single input and output)."""

    def __init__(self, model: bytes, threads: int):
        self.session = ort_session(model, threads)
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: Any) -> Any:
        return self.session.run(None, {self.input: x})[0]


class _TorchOnNumpy:
    """A torch layer as a callable on numpy arrays: the untimed links of a chain."""

    def __init__(self, layer: nn.Module):
        self.layer = layer

    def __call__(self, x: Any) -> Any:
        return self.layer(torch.from_numpy(x)).numpy()


def _ort_layers(mods: Sequence[nn.Module], x: torch.Tensor, threads: int,
                only: Iterable[int] | None = None) -> list[Callable[[Any], Any]]:
    """Each of `mods` (a child's layers, in order, fed `x`) as its own ONNX model in its own
    onnxruntime session with pinned threads; with `only`, just those indices (the others
    stay torch layers, links of the chain whose times are not used)."""
    keep = set(range(len(mods)) if only is None else only)
    runs: list[Callable[[Any], Any]] = []
    h = x
    for i, m in enumerate(mods):
        m = m.eval()
        runs.append(_OrtRun(layer_onnx(m, tuple(h.shape)), threads) if i in keep
                    else _TorchOnNumpy(m))
        with torch.no_grad():
            h = m(h)
    return runs


def _ort_provider_device() -> str:
    return "cuda" if providers()[0].startswith("CUDA") else "cpu"


# ---- the table ---------------------------------------------------------------------------
def space_hash(space: SearchSpace) -> str:
    """Short fingerprint of a space's definition, so a table is never read for another."""
    text = json.dumps(space.to_dict(), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _meta(space: SearchSpace, device: str, batch_size: int, threads: int | None,
          runtime: str = "torch", clock: str = "wall") -> dict[Hashable, object]:
    return {"space": space.name, "space_hash": space_hash(space), "runtime": runtime,
            "device": device, "batch_size": batch_size,
            "threads": threads or torch.get_num_threads(), "clock": clock,
            "torch": torch.__version__}


def clock_timer(clock: str, threads: int | None, device: str = "cpu") -> Callable[[], float]:
    """The timer of `clock`: "wall" (time.perf_counter), or "cpu", the CPU time of the
    calling thread (time.thread_time), which a busy machine's other processes do not inflate
    (their time slices are not counted); "cpu" only measures latency where the work runs on
    the calling thread: one thread, on the CPU."""
    if clock not in CLOCKS:
        raise ValueError(f"clock: {clock!r} is unknown; choose from {', '.join(CLOCKS)}")
    if clock == "wall":
        return time.perf_counter
    if threads != 1 or device != "cpu":
        raise ValueError(f"clock: cpu time is a latency only on one CPU thread, not "
                         f"{threads} thread(s) on {device!r}; use clock='wall'")
    return time.thread_time


def build_latency_table(
    space: SearchSpace, archs: Sequence[Arch] | None = None, *,
    resolutions: Iterable[int] | None = None, batch_size: int = 1, threads: int | None = 1,
    warmup: int = 10, repeats: int = 30, device: str = "cpu", calibration: int = 5,
    existing: pd.DataFrame | None = None, progress: bool = False, runtime: str = "torch",
    clock: str = "wall",
) -> pd.DataFrame:
    """Time each distinct layer of the space (of `archs` only, when given: a lazy table for
    a large space) in `runtime` on `device`, and the per-network constant; rows of
    `existing` (a table of the same runtime, device, batch size and threads) are kept and
    only missing layers measured. Standard torch layers from `export`, random weights.

    `runtime="onnxruntime"`: each layer is its own ONNX model, timed in an onnxruntime
    session with `threads` pinned (`supernet.nn.deploy.ort_session`); the device is
    onnxruntime's (CUDA's where present, else the CPU's) and `device` is not used.

    `clock="cpu"` times in the calling thread's CPU time (`clock_timer`; one thread only):
    on a machine shared with other jobs, a whole child's run is cut by their time slices
    far more often than a single layer's, which wall-clock medians do not filter out."""
    check_runtime(runtime)
    ort = runtime == "onnxruntime"
    if ort:
        device = _ort_provider_device()
        threads = threads or torch.get_num_threads()
    timer = clock_timer(clock, threads, device)
    with torch_threads(threads):
        meta = _meta(space, device, batch_size, threads, runtime, clock)
        if existing is not None:
            _check_meta(existing, meta, "existing table")
        known = set() if existing is None else set(existing["key"])
        targets = covering_archs(space, resolutions) if archs is None else list(archs)
        fit = existing is None or NETWORK not in known
        todo: dict[Arch, list[int]] = {}  # arch -> indices of its layers still to time
        for a in targets:
            for i, key in enumerate(layer_keys(space, a)):
                if key not in known:
                    known.add(key)
                    todo.setdefault(a, []).append(i)
        torch_device = "cpu" if ort else device  # onnxruntime layers are exported on the CPU
        net = ElasticSupernet(space).eval().to(torch_device)
        sync = (lambda: None) if ort else device_sync(device)
        rows = [] if existing is None else existing.to_dict("records")
        items: Iterable[tuple[Arch, list[int]]] = todo.items()
        if progress:
            from tqdm import tqdm

            items = tqdm(items, desc=f"latency table ({runtime})", unit="child", disable=None)
        for a, idx in items:
            keys = layer_keys(space, a)
            # unfolded ELS: entries are per layer of the plan, and a folded ELS would move
            # its cost into the next layer's entry, whose key does not say so
            mods = _modules(net.export(a, fold_els=False).to(torch_device))[: max(idx) + 1]
            x = torch.randn(batch_size, 3, a.resolution, a.resolution, device=torch_device)
            if ort:
                ms = measure_layers_ms(_ort_layers(mods, x, int(threads or 1), idx),
                                       x.numpy(), warmup, repeats, timer=timer)
            else:
                ms = measure_layers_ms(mods, x, warmup, repeats, sync, timer)
            rows += [{"kind": keys[i].split(":")[0], "key": keys[i], "ms": ms[i], **meta}
                     for i in idx]
        if fit and ort:
            rows += _ort_correction(space, net, resolutions, calibration, batch_size,
                                    int(threads or 1), warmup, repeats, timer, meta)
        elif fit:
            gaps = []
            for a in calibration_archs(space, resolutions, calibration):
                child = net.export(a, fold_els=False).to(torch_device)
                x = torch.randn(batch_size, 3, a.resolution, a.resolution, device=torch_device)
                # whole and layer by layer back to back, so load from other processes
                # shifts both alike and the gap is just the outer containers' calls
                whole = measure_ms(child, x, warmup, repeats, sync, timer)
                gaps.append(whole - sum(measure_layers_ms(_modules(child), x, warmup, repeats,
                                                          sync, timer)))
            overhead = float(np.median(gaps)) if gaps else 0.0
            rows.append({"kind": NETWORK, "key": NETWORK, "ms": overhead, **meta})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _ort_correction(space: SearchSpace, net: ElasticSupernet, resolutions: Iterable[int] | None,
                    calibration: int, batch_size: int, threads: int, warmup: int, repeats: int,
                    timer: Callable[[], float],
                    meta: Mapping[Hashable, object]) -> list[dict[Hashable, Any]]:
    """The scale and constant rows of an onnxruntime table, from calibration children timed
    whole (one session) and layer by layer (one session per layer, chained), back to back.

    Each layer's own session reorders its input and output between NCHW and the blocked
    NCHWc layout of onnxruntime's convolutions and pays a session call: costs that grow
    with the layer's tensors and that the whole model pays once, so whole children ran at
    0.76-0.89 of their layers' sum (50 attentive-mbv3 children, one thread). The scale is
    the median of whole / sum, the constant the median of what is left (0 for an odd
    number of children). Fitted on 5 of those 50 children at random, a scale left a
    median 69% of the other 45 within +-10% of measured where a constant alone left 60%
    (benchmarks/latency_table.py's timings of one run on a busy machine)."""
    wholes, sums = [], []
    for a in calibration_archs(space, resolutions, calibration):
        child = net.export(a, fold_els=False)
        x = torch.randn(batch_size, 3, a.resolution, a.resolution)
        whole = _OrtRun(onnx_bytes(child, a.resolution), threads)
        layers = _ort_layers(_modules(child), x, threads)
        # back to back, so load from other processes shifts both alike
        wholes.append(measure_ms(whole, x.numpy(), warmup, repeats, timer=timer))
        sums.append(sum(measure_layers_ms(layers, x.numpy(), warmup, repeats, timer=timer)))
    w, t = np.array(wholes), np.array(sums)
    scale = float(np.median(w / t)) if len(w) else 1.0
    overhead = float(np.median(w - scale * t)) if len(w) else 0.0
    return [{"kind": NETWORK, "key": NETWORK, "ms": overhead, **meta},
            {"kind": SCALE, "key": SCALE, "ms": scale, **meta}]


def _check_meta(frame: pd.DataFrame, want: Mapping[Hashable, object], where: str) -> None:
    for col, value in want.items():
        got: list[object] = list(frame[col].unique()) if col in frame else []
        if len(got) != 1 or str(got[0]) != str(value):
            hint = (f"; a {value} table is built with build_latency_table(..., "
                    f"runtime={value!r}) (benchmarks/latency_table.py --runtime {value})"
                    if col == "runtime" else "")
            raise ValueError(f"{where}: {col} is {list(got)}, expected {value!r}; a latency "
                             "table holds one space, runtime, device, batch size, thread "
                             f"count and clock{hint}")


def _check_single(frame: pd.DataFrame, cols: Iterable[str], where: str) -> None:
    for col in cols:
        got = list(frame[col].unique())
        if len(got) != 1:
            raise ValueError(f"{where}: {col} is {got}; a latency table holds one space, "
                             "runtime, device, batch size, thread count and clock (tables "
                             "timed differently cannot be mixed)")


def save_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a latency table as CSV, atomically."""
    write_csv_atomic(frame, path)


def read_table(path: str | Path) -> pd.DataFrame:
    """A latency table from CSV, with a clear error if the file is not one. A table saved
    before tables had runtime and clock columns was timed in torch with the wall clock."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"latency table: {str(path)!r} does not exist")
    frame = pd.read_csv(path)
    for col, legacy in (("runtime", "torch"), ("clock", "wall")):
        if "key" in frame:  # a column or values missing: a table from before they were kept
            frame[col] = frame[col].astype(object).fillna(legacy) if col in frame else legacy
    missing = [c for c in COLUMNS if c not in frame]
    if missing:
        raise ValueError(f"latency table: {str(path)!r} lacks columns {missing}")
    return frame


class LatencyTable:
    """Predicted latency (ms) of children of `space` in the table's runtime: the sum of
    their layers' entries (times the table's scale, onnxruntime tables' only) plus the
    per-network constant.

    `runtime` (None: either) is the runtime whose latency is wanted; a table timed in
    another is a ValueError, as is a frame that mixes runtimes, devices, batch sizes or
    thread counts."""

    def __init__(self, space: SearchSpace, frame: pd.DataFrame, runtime: str | None = None):
        want: dict[Hashable, object] = {"space": space.name, "space_hash": space_hash(space)}
        if runtime is not None:
            if runtime not in RUNTIMES:
                raise ValueError(f"latency table: runtime {runtime!r} is unknown; choose "
                                 f"from {', '.join(RUNTIMES)}")
            want["runtime"] = runtime
        _check_meta(frame, want, "latency table")
        _check_single(frame, ("runtime", "device", "batch_size", "threads", "clock"),
                      "latency table")
        self.space, self.frame = space, frame
        self.runtime = str(frame["runtime"].iloc[0])
        self.ms: dict[str, float] = dict(zip(frame["key"], frame["ms"].astype(float)))
        self.overhead_ms = self.ms.pop(NETWORK, 0.0)
        self.scale = self.ms.pop(SCALE, 1.0)

    @classmethod
    def from_csv(cls, space: SearchSpace, path: str | Path,
                 runtime: str | None = None) -> LatencyTable:
        """Load a table saved by `save_table` for `space` (and `runtime`, when given)."""
        return cls(space, read_table(path), runtime)

    def missing(self, archs: Iterable[Arch]) -> list[str]:
        """Keys of the layers of `archs` the table lacks (build them with `existing=`)."""
        keys = dict.fromkeys(k for a in archs for k in layer_keys(self.space, a))
        return [k for k in keys if k not in self.ms]

    def predict(self, arch: Arch) -> float:
        """Predicted latency of `arch` in ms, or MissingEntryError naming the absent layers."""
        keys = layer_keys(self.space, arch)
        try:
            return self.scale * float(sum(self.ms[k] for k in keys)) + self.overhead_ms
        except KeyError:
            gone = [k for k in keys if k not in self.ms]
            raise MissingEntryError(
                f"latency table: {len(gone)} layer(s) of {arch} not measured, first {gone[0]!r}; "
                "add them with build_latency_table(space, archs, existing=table.frame, "
                f"runtime={self.runtime!r})"
            ) from None
