"""From a search result to deployable children: pick children of a run (or take one arch),
recalibrate their BN, measure them, optionally fine-tune them, write one folder each.

    OUT/<label>/model.pt      plain state_dict + arch + space + resolution + mean/std +
                              metrics (supernet.nn.child_file; loads with weights_only=True)
    OUT/<label>/arch.yaml     the subnet description
    OUT/<label>/metrics.json  top-1/loss on val (and test), MACs, params, batch-1 latency
    OUT/<label>/model.onnx    with --onnx, checked against torch with onnxruntime
    OUT/<label>/model.int8.onnx  with --quantize int8: onnxruntime's static int8 model,
                              its top-1 and latency under "int8" in metrics.json
    OUT/children.csv          one row per child, search top-1 beside the exported one

The whole OUT folder is built under a temporary name and renamed at the end, so a bad
input or an interruption leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
import yaml
from torch import nn

from supernet.checkpoint import checkpoint_data, load_checkpoint
from supernet.data.datasets import DataSet, batches, resize
from supernet.nn.child_file import (
    ChildFile,
    arch_yaml,
    check_onnx_available,
    export_onnx,
    save_child,
)
from supernet.nn.deploy import check_runtime, measure, onnx_bytes, ort_scores, quantize_int8
from supernet.nn.export import fold_els_layers
from supernet.nn.model import ElasticSupernet
from supernet.spaces.cost import macs
from supernet.spaces.space import Arch, SearchSpace
from supernet.training.calibrate import ChildImages, calibrated_child, child_images
from supernet.training.evaluation import calibrate_bn, evaluate
from supernet.training.finetune import finetune, recipe_from_config
from supernet.utils import file_digest, measure_latency, parse_device, torch_threads

from .evaluator import QUANT_IMAGES, default_calib_images
from .results import FRONT, SUMMARY, read_json, read_results
from .units import format_count

PICKS = "best | targets | front:K"
CHILDREN = "children.csv"


@dataclass
class ExportConfig:
    """Everything `nas-export` needs; its flags map one to one."""

    out: str
    supernet: str | None = None  # default with --run: the run's supernet
    arch: str | None = None
    run: str | None = None
    pick: str = "best"
    force: bool = False
    calib_images: int | None = None  # default: the run's setting, else the search's default
    onnx: bool = False
    quantize: str | None = None  # "int8": also onnxruntime's static int8 model
    finetune_epochs: int = 0
    finetune_distill: bool = False  # learn the largest child's soft labels, not the labels
    finetune_lr: float | None = None  # default: the supernet's final LR (5% of its initial)
    data: str | None = None  # default: the data the supernet was trained on
    device: str = "cpu"
    threads: int = 1  # torch CPU threads (latency is measured with these)
    quiet: bool = False


@dataclass(frozen=True)
class Pick:
    """One child to export: folder label, arch string, its row of the search (if any)."""

    label: str
    arch: str
    search: dict[str, float]


def parse_pick(text: str) -> tuple[str, int]:
    """'best' -> ('best', 1), 'targets' -> ('targets', 0), 'front:4' -> ('front', 4)."""
    kind, _, k = str(text).partition(":")
    if kind in ("best", "targets") and not k:
        return kind, 0 if kind == "targets" else 1
    if kind == "front" and k.isdigit() and int(k) >= 1:
        return kind, int(k)
    raise ValueError(f"pick: {text!r} is not allowed; expected {PICKS} (K a whole number >= 1)")


def equispaced(values: npt.NDArray[np.float64], k: int) -> list[int]:
    """Indices of `k` distinct entries of sorted `values` closest to k equispaced points
    between their min and max (SCARLET-NAS's K models from the final front)."""
    if k > len(values):
        raise ValueError(f"pick: front:{k} asks for more children than the {len(values)} "
                         "on the front")
    targets = np.linspace(values[0], values[-1], k) if k > 1 else np.array([values[-1]])
    free, chosen = list(range(len(values))), []
    for t in targets:
        i = min(free, key=lambda j: (abs(values[j] - t), j))
        free.remove(i)
        chosen.append(i)
    return sorted(chosen)


def _row(r: pd.Series[Any]) -> dict[str, float]:
    keep = ("top1", "loss", "macs", "params", "latency_ms")
    return {f"search_{k}": float(r[k]) for k in keep if k in r and pd.notna(r[k])}


def run_picks(run: str | Path, pick: str) -> list[Pick]:
    """The children of search run folder `run` that `pick` names (see PICKS)."""
    kind, k = parse_pick(pick)
    path = Path(run) / FRONT
    if not path.is_file():
        raise ValueError(f"run: {str(run)!r} holds no {FRONT}; give the out folder of a "
                         "finished nas-search run")
    front = read_results(path)
    if len(front) == 0:
        raise ValueError(f"run: {str(path)!r} is empty (no feasible child)")
    if kind == "best":  # highest top-1, ties: fewer MACs (as nas-search's best child)
        r = front.sort_values(["top1", "macs"], ascending=[False, True], kind="stable").iloc[0]
        return [Pick("best", r["arch"], _row(r))]
    front = front.sort_values("macs", kind="stable").reset_index(drop=True)
    if kind == "front":
        return [Pick(f"front-{n}-{format_count(front['macs'][i])}", front["arch"][i],
                     _row(front.iloc[i]))
                for n, i in enumerate(equispaced(front["macs"].to_numpy(float), k))]
    summary = read_json(Path(run) / SUMMARY) if (Path(run) / SUMMARY).is_file() else {}
    per = summary.get("best_per_target", {})
    if not per or list(per) == ["all"]:
        raise ValueError(f"pick: run {str(run)!r} was searched without --targets; "
                         "use best or front:K")
    rows = read_results(Path(run) / "results.csv").drop_duplicates("arch").set_index("arch",
                                                                                      drop=False)
    picks = [Pick(f"target-{t}", b["arch"], _row(rows.loc[b["arch"]]))
             for t, b in per.items() if b is not None]
    if not picks:
        raise ValueError(f"pick: run {str(run)!r} found no feasible child under any of its "
                         f"targets {list(per)}")
    return picks


def run_supernet(run: str | Path) -> str:
    """The supernet a run searched: its saved setting, else <run>/supernet/supernet.pt."""
    summary = Path(run) / SUMMARY
    saved = read_json(summary).get("settings", {}).get("supernet") if summary.is_file() \
        else None
    return saved or str(Path(run) / "supernet" / "supernet.pt")


def _run_calib_images(run: str | Path | None) -> int | None:
    """The calibration images a run's search used, where it set them."""
    summary = Path(run) / SUMMARY if run else None
    if summary is not None and summary.is_file():
        n = read_json(summary).get("settings", {}).get("calib_images")
        return None if n is None else int(n)
    return None


@contextmanager
def _staged_folder(out: Path, force: bool) -> Iterator[Path]:
    """A temporary folder beside `out` that becomes `out` when the body succeeds (replacing
    an old `out` only with `force`) and is removed when it fails.
    (A private atomic-folder helper until the project has a shared one.)"""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        _check_out(out, force)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise ValueError(f"out: {str(out)!r} exists; choose another folder or pass --force "
                         "to replace it")
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {str(out)!r} is a file, not a folder")


def _scores(child: torch.nn.Module, arch: Arch, data: DataSet, bs: int,
            device: torch.device) -> dict[str, dict[str, float]]:
    """Top-1 and loss of a plain child on val (and test, where the data has one)."""
    splits = {"val": data.val, **({"test": data.test} if data.test is not None else {})}
    out: dict[str, dict[str, float]] = {}
    for name, split in splits.items():
        loader = ((x.to(device), y.to(device)) for x, y in batches(split, data, bs))
        r = evaluate(child, arch, loader)
        out[name] = {"top1": r.top1, "loss": r.loss, "images": r.n}
    return out


def export_one(net: ElasticSupernet, space: SearchSpace, images: ChildImages, pick: Pick,
               cfg: ExportConfig, folder: Path, source: dict[str, Any],
               teacher: tuple[nn.Module, Arch] | None = None) -> dict[str, Any]:
    """Calibrate, measure (fine-tune) and write one child into `folder`; its metrics."""
    arch, data, calib = space.parse(pick.arch), images.data, len(images.calib)
    device, bs = images.device, images.batch_size
    t = time.perf_counter()
    # fine-tuning trains the ELS skips as conv + BN: they fold after it
    child = calibrated_child(net, arch, images, fold_els=not cfg.finetune_epochs)
    m: dict[str, Any] = {"arch": str(arch), "label": pick.label, **pick.search,
               **_scores(child, arch, data, bs, device), "macs": macs(space, arch),
               "calib_images": calib}
    if cfg.finetune_epochs:
        before = {k: m[k] for k in ("val", "test") if k in m}
        recipe = recipe_from_config(source.get("recipe_config"))
        res = finetune(child, arch, data, cfg.finetune_epochs, recipe, teacher=teacher,
                       lr=cfg.finetune_lr, device=device, quiet=cfg.quiet)
        calibrate_bn(child, arch, images.calib_batches(arch.resolution), calib)
        child = fold_els_layers(child.eval())
        m.update(_scores(child, arch, data, bs, device))
        m["finetune"] = {**asdict(res), "before": before}
    m["params"] = sum(p.numel() for p in child.parameters())  # deployed: ELS folded
    m["latency_ms"] = measure_latency(child, arch.resolution, device)
    m["latency_device"] = f"{device.type}, {torch.get_num_threads()} thread(s)"
    m["export_s"] = time.perf_counter() - t
    child = child.cpu().eval()
    folder.mkdir()
    f = ChildFile(arch, space, child.state_dict(), arch.resolution, space.base_resolution,
                  data.mean, data.std, m,
                  {k: v for k, v in source.items() if k != "recipe_config"})
    save_child(folder / "model.pt", f)
    (folder / "arch.yaml").write_text(arch_yaml(f))
    if cfg.onnx:
        m["onnx_max_abs_diff"] = export_onnx(child, arch.resolution, folder / "model.onnx")
    if cfg.quantize:
        m["int8"] = _int8(child, arch, images, folder / "model.int8.onnx", cfg.threads)
    (folder / "metrics.json").write_text(json.dumps(m, indent=1) + "\n")
    return m


def _int8(child: nn.Module, arch: Arch, images: ChildImages, path: Path,
          threads: int) -> dict[str, Any]:
    """Write onnxruntime's static int8 model of `child` to `path` (calibrated on the first
    QUANT_IMAGES calibration images, as the search does); its val scores and latency beside
    the fp32 ONNX model's."""
    fp32 = onnx_bytes(child, arch.resolution)
    q = quantize_int8(fp32, images.calib_arrays(arch.resolution, QUANT_IMAGES))
    path.write_bytes(q)
    val = ((resize(x, arch.resolution).numpy(), y.numpy()) for x, y in
           batches(images.data.val, images.data, images.batch_size))
    top1, loss, n = ort_scores(q, val, threads)
    t_q = measure(None, arch.resolution, threads=threads, model=q)
    t_f = measure(None, arch.resolution, threads=threads, model=fp32)
    return {"val": {"top1": top1, "loss": loss, "images": n}, "latency_ms": t_q.ms,
            "latency_spread": t_q.spread, "fp32_onnx_latency_ms": t_f.ms,
            "runtime": f"onnxruntime {t_q.provider}, {threads} thread(s)",
            "bytes": len(q), "fp32_bytes": len(fp32)}


def _teacher(net: ElasticSupernet, space: SearchSpace,
             images: ChildImages) -> tuple[nn.Module, Arch]:
    arch = space.max_arch()
    return calibrated_child(net, arch, images), arch


def export_children(cfg: ExportConfig) -> pd.DataFrame:
    """Do what `cfg` says (see the module doc); returns children.csv's table. Bad input
    raises ValueError with a one-line message before anything is written."""
    out = Path(cfg.out)
    _check_out(out, cfg.force)
    if (cfg.arch is None) == (cfg.run is None):
        raise ValueError("arch/run: give exactly one of --arch STRING or --run DIR")
    if cfg.onnx:
        check_onnx_available()
    if cfg.quantize is not None:
        check_runtime("onnxruntime", cfg.quantize)
    if not (isinstance(cfg.finetune_epochs, int) and cfg.finetune_epochs >= 0):
        raise ValueError(f"finetune_epochs: {cfg.finetune_epochs!r} is not allowed; "
                         "expected a whole number >= 0")
    if cfg.finetune_lr is not None and not cfg.finetune_lr > 0:
        raise ValueError(f"finetune_lr: {cfg.finetune_lr!r} is not allowed; expected a "
                         "positive number")
    device = parse_device(cfg.device)
    if cfg.run:
        picks = run_picks(cfg.run, cfg.pick)
    elif cfg.arch is not None:
        picks = [Pick("child", cfg.arch, {})]
    else:  # --run ''
        raise ValueError("arch/run: give exactly one of --arch STRING or --run DIR")
    ckpt = cfg.supernet or (run_supernet(cfg.run) if cfg.run else None)
    if ckpt is None:
        raise ValueError("supernet: give --supernet CKPT (a nas-train checkpoint)")
    net, extra = load_checkpoint(ckpt)
    space = net.space
    archs = [space.parse(p.arch) for p in picks]  # an arch of another space fails here
    calib = cfg.calib_images or _run_calib_images(cfg.run) or default_calib_images(extra)
    spec, data = checkpoint_data(space, extra, cfg.data)
    calib = min(calib, len(data.train))  # as the search's evaluator: at most the split
    net.to(device).eval()
    # the search evaluator's images and batch: the same calibration statistics
    images = child_images(data, calib, batch_size=256, device=device)
    source = {"supernet": str(ckpt), "supernet_sha256": file_digest(ckpt), "data": spec,
              "split_seed": int(extra.get("seed", 0)), "calib_images": calib, "calib_seed": 0,
              "recipe_config": extra.get("config"),
              # a converted supernet's authors' image preparation, for whoever deploys it
              **({"preprocessing": extra["preprocessing"]} if extra.get("preprocessing")
                 else {})}
    rows: list[dict[str, Any]] = []
    with torch_threads(cfg.threads), _staged_folder(out, cfg.force) as tmp:
        teacher = (_teacher(net, space, images)
                   if cfg.finetune_epochs and cfg.finetune_distill else None)
        for i, (p, a) in enumerate(zip(picks, archs)):
            if not cfg.quiet:
                print(f"[{i + 1}/{len(picks)}] {p.label}: {a}", flush=True)
            m = export_one(net, space, images, p, cfg, tmp / p.label, source, teacher)
            rows.append(_summary_row(m))
        table = pd.DataFrame(rows)
        table.to_csv(tmp / CHILDREN, index=False)
        (tmp / "export.yaml").write_text(yaml.safe_dump(
            {**{k: v for k, v in asdict(cfg).items() if k not in ("quiet", "force")},
             "supernet": str(ckpt), "calib_images": calib}, sort_keys=False))
    return table


def _summary_row(m: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"label": m["label"], "arch": m["arch"]}
    if "search_top1" in m:
        row["search_top1"] = m["search_top1"]
    if "finetune" in m:
        for split, r in m["finetune"]["before"].items():
            row[f"{split}_top1_before_finetune"] = r["top1"]
    for split in ("val", "test"):
        if split in m:
            row[f"{split}_top1"] = m[split]["top1"]
            row[f"{split}_loss"] = m[split]["loss"]
    row.update({k: m[k] for k in ("macs", "params", "latency_ms")})
    return row
