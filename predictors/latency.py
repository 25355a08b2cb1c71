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
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import replace
from itertools import product
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import torch
from torch import nn

from supernet.nn.model import ElasticSupernet
from supernet.spaces.plan import MBCONV, child_plan
from supernet.spaces.space import Arch, SearchSpace, StageArch
from supernet.utils import device_sync, torch_threads

from .io import write_csv_atomic

STEM, BLOCK, HEAD, NETWORK = "stem", "block", "head", "network"
META = ("space", "space_hash", "device", "batch_size", "threads", "torch")
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
                stages[i] = StageArch(w, max(spec.depths), k, e)
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
def measure_layers_ms(layers: Sequence[nn.Module], x: torch.Tensor, warmup: int = 10,
                      repeats: int = 30, sync: Callable[[], None] = lambda: None,
                      timer: Callable[[], float] = time.perf_counter) -> list[float]:
    """Median wall time in ms of each of `layers`, run in sequence on `x` (each feeding the
    next), over `repeats` runs after `warmup` untimed ones. Timing layers inside a running
    network, not one layer in a loop, charges each with refetching its weights and inputs
    as a real forward pass does; the median, not the mean, because the machine is shared."""
    def run(h: torch.Tensor, times: list[list[float]] | None) -> None:
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


def measure_ms(module: nn.Module, x: torch.Tensor, warmup: int = 10, repeats: int = 30,
               sync: Callable[[], None] = lambda: None,
               timer: Callable[[], float] = time.perf_counter) -> float:
    """Median wall time in ms of `module(x)` over `repeats` calls after `warmup` untimed ones."""
    return measure_layers_ms([module], x, warmup, repeats, sync, timer)[0]


def _modules(child: nn.Sequential) -> list[nn.Module]:
    """An exported child's layers in `layer_keys` order: stem, each block, head."""
    stem, blocks, head = child
    return [stem, *cast(nn.Sequential, blocks), head]


# ---- the table ---------------------------------------------------------------------------
def space_hash(space: SearchSpace) -> str:
    """Short fingerprint of a space's definition, so a table is never read for another."""
    text = json.dumps(space.to_dict(), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _meta(space: SearchSpace, device: str, batch_size: int,
          threads: int | None) -> dict[Hashable, object]:
    return {"space": space.name, "space_hash": space_hash(space), "device": device,
            "batch_size": batch_size, "threads": threads or torch.get_num_threads(),
            "torch": torch.__version__}


def build_latency_table(
    space: SearchSpace, archs: Sequence[Arch] | None = None, *,
    resolutions: Iterable[int] | None = None, batch_size: int = 1, threads: int | None = 1,
    warmup: int = 10, repeats: int = 30, device: str = "cpu", calibration: int = 5,
    existing: pd.DataFrame | None = None, progress: bool = False,
) -> pd.DataFrame:
    """Time each distinct layer of the space (of `archs` only, when given: a lazy table for
    a large space) on `device`, and the per-network constant; rows of `existing` are kept
    and only missing layers measured. Standard torch layers from `export`, random weights."""
    with torch_threads(threads):
        meta = _meta(space, device, batch_size, threads)
        if existing is not None:
            _check_meta(existing, meta, "existing table")
        known = set() if existing is None else set(existing["key"])
        targets = covering_archs(space, resolutions) if archs is None else list(archs)
        todo: dict[Arch, list[int]] = {}  # arch -> indices of its layers still to time
        for a in targets:
            for i, key in enumerate(layer_keys(space, a)):
                if key not in known:
                    known.add(key)
                    todo.setdefault(a, []).append(i)
        net = ElasticSupernet(space).eval().to(device)
        sync = device_sync(device)
        rows = [] if existing is None else existing.to_dict("records")
        items: Iterable[tuple[Arch, list[int]]] = todo.items()
        if progress:
            from tqdm import tqdm

            items = tqdm(items, desc="latency table", unit="child", disable=None)
        for a, idx in items:
            keys = layer_keys(space, a)
            # unfolded ELS: entries are per layer of the plan, and a folded ELS would move
            # its cost into the next layer's entry, whose key does not say so
            mods = _modules(net.export(a, fold_els=False).to(device))[: max(idx) + 1]
            x = torch.randn(batch_size, 3, a.resolution, a.resolution, device=device)
            ms = measure_layers_ms(mods, x, warmup, repeats, sync)
            rows += [{"kind": keys[i].split(":")[0], "key": keys[i], "ms": ms[i], **meta}
                     for i in idx]
        if not any(r["kind"] == NETWORK for r in rows):
            gaps = []
            for a in calibration_archs(space, resolutions, calibration):
                child = net.export(a, fold_els=False).to(device)
                x = torch.randn(batch_size, 3, a.resolution, a.resolution, device=device)
                # whole and layer by layer back to back, so load from other processes
                # shifts both alike and the gap is just the outer containers' calls
                whole = measure_ms(child, x, warmup, repeats, sync)
                gaps.append(whole - sum(measure_layers_ms(_modules(child), x, warmup, repeats,
                                                          sync)))
            overhead = float(np.median(gaps)) if gaps else 0.0
            rows.append({"kind": NETWORK, "key": NETWORK, "ms": overhead, **meta})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _check_meta(frame: pd.DataFrame, want: Mapping[Hashable, object], where: str) -> None:
    for col, value in want.items():
        got: list[object] = list(frame[col].unique()) if col in frame else []
        if len(got) != 1 or str(got[0]) != str(value):
            raise ValueError(f"{where}: {col} is {list(got)}, expected {value!r}; a latency "
                             "table holds one space, device, batch size and thread count")


def save_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a latency table as CSV, atomically."""
    write_csv_atomic(frame, path)


def read_table(path: str | Path) -> pd.DataFrame:
    """A latency table from CSV, with a clear error if the file is not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"latency table: {str(path)!r} does not exist")
    frame = pd.read_csv(path)
    missing = [c for c in COLUMNS if c not in frame]
    if missing:
        raise ValueError(f"latency table: {str(path)!r} lacks columns {missing}")
    return frame


class LatencyTable:
    """Predicted latency (ms) of children of `space`: the sum of their layers' entries plus
    the per-network constant."""

    def __init__(self, space: SearchSpace, frame: pd.DataFrame):
        want: dict[Hashable, object] = {"space": space.name, "space_hash": space_hash(space)}
        _check_meta(frame, want, "latency table")
        self.space, self.frame = space, frame
        self.ms: dict[str, float] = dict(zip(frame["key"], frame["ms"].astype(float)))
        self.overhead_ms = self.ms.pop(NETWORK, 0.0)

    @classmethod
    def from_csv(cls, space: SearchSpace, path: str | Path) -> LatencyTable:
        """Load a table saved by `save_table` for `space`."""
        return cls(space, read_table(path))

    def missing(self, archs: Iterable[Arch]) -> list[str]:
        """Keys of the layers of `archs` the table lacks (build them with `existing=`)."""
        keys = dict.fromkeys(k for a in archs for k in layer_keys(self.space, a))
        return [k for k in keys if k not in self.ms]

    def predict(self, arch: Arch) -> float:
        """Predicted latency of `arch` in ms, or MissingEntryError naming the absent layers."""
        keys = layer_keys(self.space, arch)
        try:
            return float(sum(self.ms[k] for k in keys)) + self.overhead_ms
        except KeyError:
            gone = [k for k in keys if k not in self.ms]
            raise MissingEntryError(
                f"latency table: {len(gone)} layer(s) of {arch} not measured, first {gone[0]!r}; "
                "add them with build_latency_table(space, archs, existing=table.frame)"
            ) from None
