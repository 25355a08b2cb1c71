"""Are sliced children as good as their stand-alone twins? (BigNAS's claim) A budget curve.

Trains the `tiny` supernet on CIFAR-10 data (`--data`; the figures in docs/benchmarks.md were
measured on the 10,000 / 2,000 image subset of the CIFAR-10 training images, see docs/data.md)
once per training option and per budget (`--epochs 8,16`), slices 8 children from it
(smallest, largest, 6 seeded random ones) and BN-calibrates them, and trains the same 8
architectures alone from scratch ("twins") on the same data, epochs, batches, augmentation
and LR schedule with the largest child's recipe (label smoothing, dropout, weight decay,
clipping; no distillation). Per child and budget: sliced / twin / sliced - twin of val
top-1; per budget over the 8: mean and worst difference, how many within 2 points, Kendall
tau and Spearman rho between sliced and twin. A PNG (`--png`) draws the difference against
the epochs, one line per child and the mean in bold, one panel per option.

The twins do not depend on the supernet's options, so each is trained once per budget and
cached in <out>/twins/ (keyed by the architecture and every field that changes how it
trains: epochs, data, seed, schedule, ...; the weights are kept, so another `--calib-images`
re-scores them without training). Each option's supernet lives in <out>/<option>/e<epochs>/
(resumed, or reused if done and trained with the same settings). An option is `baseline`
(the `small` recipe: the project's nas-train defaults; `before` is what they were before
issue 20's measurements changed them), a preset name below, or fields of TrainConfig
(`kd=alpha`, `teacher_warmup=0.5`, `method=progressive-shrinking`), several joined by `+`.
`--method` sets the training method of every option; `--jobs 2` trains two supernets /
twins at once (one CPU thread each by default).

    python benchmarks/cifar_quality.py --data npz:DIR [--epochs 8,16] [--options baseline,ps]
        [--method sandwich|progressive-shrinking] [--train-images 5000] [--jobs 2]
        [--calib-images 1024] [--png gap.png] [--out runs/cifar_quality]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from predictors import rank_metrics
from supernet import ElasticSupernet, load_checkpoint, load_space, macs
from supernet.checkpoint import read_checkpoint
from supernet.data.datasets import DataSet, batches, calib_batches, load_data
from supernet.spaces.space import Arch
from supernet.training.config import TrainConfig, check_config, resolved
from supernet.training.evaluation import calibrate_bn, evaluate
from supernet.training.optim import FLOOR_AT, make_scheduler, param_groups
from supernet.training.shrinking import METHODS
from supernet.training.steps import sandwich_step
from supernet.training.train import train
from supernet.utils import mixed_seed

# Presets of TrainConfig fields (on top of the `small` recipe, the nas-train defaults).
PRESETS: dict[str, dict[str, Any]] = {
    "baseline": {},
    # BigNAS's own schedule, resolutions and distillation
    "bignas": {"teacher_warmup": 0.0, "floor_at": FLOOR_AT, "res_sampling": "paired",
               "kd_labels": 0.0},
    "ps": {"method": "progressive-shrinking"},
    "sandwich": {"method": "sandwich"},
    # the defaults before issue 20's measurements: BigNAS's paired resolutions, soft labels only
    "before": {"res_sampling": "paired", "kd_labels": 0.0},
    "paired": {"res_sampling": "paired"},
    "independent": {"res_sampling": "independent"},
    "teacher": {"teacher_warmup": 0.25},
    "teacher50": {"teacher_warmup": 0.5},
    "alpha": {"kd": "alpha"},
    "labels": {"kd_labels": 1.0},  # Once-for-All: labels plus soft labels
    "nolabels": {"kd_labels": 0.0},  # BigNAS: soft labels only
    "bestup": {"sampling": "best-up"},
    "worstup": {"sampling": "worst-up"},
    "random1": {"num_random": 1},
    "random4": {"num_random": 4},
    "floor1": {"floor_at": 1.0},
    "cosine": {"schedule": "cosine"},
}
# What every run shares: the base of the supernets and the twins' recipe. Fields left
# None take the `small` recipe's values (teacher warm-up 0.25, floor at the end), so
# `baseline` is what `nas-train` does by default at this batch.
BASE = dict(space="tiny", batch_size=128, lr=0.2, warmup_epochs=1.0, calib_images=1024,
            resume=True, quiet=True, kd="ce", sampling="uniform", schedule="exp",
            num_random=2)
# The fields that change how a twin trains (its cache key, with the architecture).
TWIN_FIELDS = ("space", "data", "recipe", "epochs", "batch_size", "lr", "optimizer",
               "warmup_epochs", "seed", "label_smoothing", "weight_decay", "grad_clip",
               "schedule", "floor_at", "dropout", "bf16")
WITHIN = 2.0  # points: the target for every child


def option_config(base: TrainConfig, option: str) -> TrainConfig:
    """`base` with the fields of `option` (presets and field=value, joined by `+`);
    ValueError naming the bad part."""
    types = {f.name: f.type for f in fields(TrainConfig)}
    over: dict[str, Any] = {}
    for part in option.split("+"):
        if part in PRESETS:
            over.update(PRESETS[part])
            continue
        name, eq, text = part.partition("=")
        if not eq or name not in types or name in ("space", "data", "out", "epochs"):
            raise ValueError(f"--options: {part!r} is not allowed; expected one of "
                             f"{list(PRESETS)} or FIELD=VALUE of a TrainConfig field")
        t = str(types[name])
        try:
            over[name] = (int(text) if t == "int" else float(text) if "float" in t
                          else text)
        except ValueError:
            raise ValueError(f"--options: {part!r} has a bad value for {name} ({t})") from None
    cfg = replace(base, **over)
    check_config(cfg)
    return cfg


def children(space) -> list[tuple[str, Arch]]:
    """Smallest, largest and 6 random children (seed 0), tagged."""
    rng = np.random.default_rng(0)
    return [("min", space.min_arch()), ("max", space.max_arch()),
            *((f"random{i}", space.sample(rng)) for i in range(6))]


def top1(net: ElasticSupernet, arch: Arch, data: DataSet, cfg: TrainConfig,
         calib_images: int) -> float:
    """BN-calibrated (on `calib_images` training images) val top-1 of one child."""
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    calib = ((x.contiguous(memory_format=fmt), y)
             for x, y in calib_batches(data, calib_images, 256, cfg.seed))
    calibrate_bn(net, arch, calib, calib_images)
    val = ((x.contiguous(memory_format=fmt), y) for x, y in batches(data.val, data, 256))
    return evaluate(net, arch, val).top1


def train_alone(arch: Arch, data: DataSet, cfg: TrainConfig) -> ElasticSupernet:
    """Train one child from scratch with the largest child's recipe and the supernet's
    batches (same order and augmentation), no distillation."""
    torch.manual_seed(cfg.seed)
    net = ElasticSupernet(cfg.space)
    steps = len(data.train) // cfg.batch_size
    opt = torch.optim.SGD(param_groups(net, cfg.weight_decay), lr=cfg.lr, momentum=0.9,
                          nesterov=True)
    sched = make_scheduler(opt, cfg.schedule, cfg.epochs * steps,
                           round(cfg.warmup_epochs * steps), steps, cfg.floor_at)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    dropout = net.space.dropout if cfg.dropout is None else cfg.dropout  # as nas-train
    for epoch in range(cfg.epochs):
        for i, (x, y) in enumerate(batches(data.train, data, cfg.batch_size,
                                           seed=mixed_seed(cfg.seed, epoch), train=True,
                                           drop_last=True)):
            torch.manual_seed(mixed_seed(cfg.seed, epoch * steps + i, 0))  # dropout masks
            # one child: the label loss with smoothing and dropout, nothing distilled
            sandwich_step(net, opt, x.contiguous(memory_format=fmt), y, [arch], cfg, dropout)
            sched.step()
    return net


def _write_json(path: Path, obj: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def twin_path(cache: Path, arch: Arch, cfg: TrainConfig) -> Path:
    """<cache>/<hash>: the twin of `arch` under `cfg`'s recipe (.pt weights, .json scores)."""
    key = json.dumps({"arch": str(arch), **{k: str(getattr(cfg, k)) for k in TWIN_FIELDS}},
                     sort_keys=True)
    return cache / hashlib.sha1(key.encode()).hexdigest()[:16]


# --- work units, run in this process or in a pool (top-level functions: picklable) ---

def job_twin(tag: str, arch: Arch, cfg: TrainConfig, path: str) -> str:
    """Train one twin and save its weights at `path`.pt (unless done, or under way in
    another process); returns a log line."""
    p = Path(path)
    if p.with_suffix(".json").exists() or not _lock(p.with_suffix(".lock")):
        return f"  twin {tag:8s} {cfg.epochs:3d} epochs: done or under way elsewhere"
    try:
        return _train_twin(tag, arch, cfg, p)
    finally:
        p.with_suffix(".lock").unlink(missing_ok=True)


def _lock(path: Path) -> bool:
    """Take the lock file `path` (holding our pid); False while a live process holds it."""
    try:
        pid = int(path.read_text() or 0)
        os.kill(pid, 0)
        return False  # its holder is alive
    except (FileNotFoundError, ValueError, ProcessLookupError):
        path.unlink(missing_ok=True)  # none, or a stale one
    except PermissionError:
        return False
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def _train_twin(tag: str, arch: Arch, cfg: TrainConfig, p: Path) -> str:
    torch.set_num_threads(cfg.threads)
    t = time.perf_counter()
    data = load_data(cfg.data, max(load_space(cfg.space).resolutions), cfg.seed)
    net = train_alone(arch, data, cfg)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    os.close(fd)
    torch.save(net.state_dict(), tmp)
    os.replace(tmp, p.with_suffix(".pt"))
    _write_json(p.with_suffix(".json"), {"arch": str(arch), "key": {
        k: str(getattr(cfg, k)) for k in TWIN_FIELDS}, "top1": {}})
    return (f"  twin {tag:8s} {cfg.epochs:3d} epochs: "
            f"{(time.perf_counter() - t) / 60:.1f} min")


def job_supernet(name: str, cfg: TrainConfig) -> str:
    """Train (or resume) one supernet, unless under way in another process; returns a
    log line."""
    lock = Path(cfg.out) / ".lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    if not _lock(lock):
        return f"  supernet {name} {cfg.epochs:3d} epochs: under way elsewhere"
    t = time.perf_counter()
    try:
        train(cfg)
    finally:
        lock.unlink(missing_ok=True)
    return f"  supernet {name} {cfg.epochs:3d} epochs: {(time.perf_counter() - t) / 60:.1f} min"


def run_jobs(jobs: list[tuple[float, Any, tuple]], n: int) -> None:
    """Run (cost, function, args) units, the costliest first, `n` at a time."""
    jobs = sorted(jobs, key=lambda j: -j[0])
    if n <= 1:
        for _, fn, args in jobs:
            print(fn(*args), flush=True)
        return
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(n, maxtasksperchild=1) as pool:
        for line in pool.imap_unordered(_call, [(fn, args) for _, fn, args in jobs]):
            print(line, flush=True)


def _call(unit: tuple) -> str:
    fn, args = unit
    return fn(*args)


def twin_top1(path: Path, arch: Arch, data: DataSet, cfg: TrainConfig, calib: int) -> float:
    """The val top-1 of a trained twin at `calib` calibration images (cached in its .json)."""
    meta = json.loads(path.with_suffix(".json").read_text())
    if str(calib) not in meta["top1"]:
        net = ElasticSupernet(cfg.space)
        net.load_state_dict(torch.load(path.with_suffix(".pt"), weights_only=True))
        meta["top1"][str(calib)] = top1(net, arch, data, cfg, calib)
        _write_json(path.with_suffix(".json"), meta)
    return meta["top1"][str(calib)]


def sliced_top1(run: Path, kids, data: DataSet, cfg: TrainConfig,
                calib: int) -> dict[str, float]:
    """Val top-1 of the 8 children sliced from <run>/supernet.pt (cached beside it, keyed
    by the checkpoint's size and time)."""
    ck = run / "supernet.pt"
    st = ck.stat()
    stamp = f"{st.st_size}-{st.st_mtime_ns}"
    cache = run / f"sliced-calib{calib}.json"
    saved = json.loads(cache.read_text()) if cache.exists() else {}
    if saved.get("stamp") != stamp or set(saved.get("top1", {})) != {t for t, _ in kids}:
        net, _ = load_checkpoint(ck)
        saved = {"stamp": stamp, "top1": {tag: top1(net, arch, data, cfg, calib)
                                          for tag, arch in kids}}
        _write_json(cache, saved)
    return saved["top1"]


def subset_data(spec: str, n: int, out: Path, base: int) -> str:
    """A data spec for the first n/classes training images of each class (val kept
    whole), written once as an npz folder under `out`; `spec` itself when n is 0."""
    if not n:
        return spec
    data = load_data(spec, base)
    y = data.train.y.numpy()
    per = n // data.num_classes
    idx = np.sort(np.concatenate([np.flatnonzero(y == c)[:per]
                                  for c in range(data.num_classes)]))
    folder = out / f"data-{len(idx)}"
    if not (folder / "val.npz").exists():
        folder.mkdir(parents=True, exist_ok=True)
        for name, x, yy in (("train", data.train.x[idx], y[idx]),
                            ("val", data.val.x, data.val.y.numpy())):
            tmp = folder / f".{name}.tmp.npz"
            np.savez(tmp, x=x.permute(0, 2, 3, 1).numpy(), y=yy)
            os.replace(tmp, folder / f"{name}.npz")
    return f"npz:{folder.resolve()}"


def summary(sliced: dict[str, float], alone: dict[str, float], kids) -> dict[str, float]:
    """Mean / worst difference (points), count within WITHIN, Kendall tau, Spearman rho."""
    s = np.array([sliced[t] for t, _ in kids])
    a = np.array([alone[t] for t, _ in kids])
    m = rank_metrics(a, s)
    d = 100 * (s - a)
    return {"mean": float(d.mean()), "worst": float(d.min()),
            "within": int((d >= -WITHIN).sum()), "tau": m.kendall_tau, "rho": m.spearman_rho}


def print_option(option: str, budgets: list[int], kids, space,
                 res: dict[int, tuple[dict[str, float], dict[str, float]]]) -> dict:
    """Print one option's table over the budgets (markdown); return per-budget summaries."""
    print(f"\noption {option}")
    head = "| child | MMACs | " + " | ".join(
        f"{e} ep: sliced | twin | sliced - twin" for e in budgets) + " |"
    print(head)
    print("|---|---|" + "---|---|---|" * len(budgets))
    for tag, arch in kids:
        cells = []
        for e in budgets:
            s, a = res[e][0][tag], res[e][1][tag]
            cells.append(f"{100 * s:.2f} | {100 * a:.2f} | {100 * (s - a):+.2f}")
        print(f"| {tag} | {macs(space, arch) / 1e6:.2f} | " + " | ".join(cells) + " |")
    out = {}
    for e in budgets:
        out[e] = sm = summary(*res[e], kids)
        print(f"{e} epochs: mean {sm['mean']:+.2f}, worst {sm['worst']:+.2f}, within "
              f"{WITHIN:g} points {sm['within']}/{len(kids)}, Kendall tau {sm['tau']:.3f}, "
              f"Spearman rho {sm['rho']:.3f}")
    return out


def plot(path: Path, budgets: list[int], kids, curves: dict[str, dict[int, tuple]],
         title: str) -> None:
    """One panel per option: sliced - twin against epochs, a line per child, mean bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    opts = list(curves)
    fig, axes = plt.subplots(1, len(opts), figsize=(4.2 * len(opts) + 1.5, 4.2), sharey=True,
                             squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, o in zip(axes[0], opts):
        for i, (tag, _) in enumerate(kids):
            d = [100 * (curves[o][e][0][tag] - curves[o][e][1][tag]) for e in budgets]
            ax.plot(budgets, d, "o-", lw=1, ms=3, color=colors(i), label=tag)
        mean = [100 * np.mean([curves[o][e][0][t] - curves[o][e][1][t] for t, _ in kids])
                for e in budgets]
        ax.plot(budgets, mean, "s-", lw=3, color="black", label="mean")
        ax.axhline(0, color="grey", lw=0.8)
        ax.axhline(-WITHIN, color="grey", lw=0.8, ls="--")
        ax.set_title(o, fontsize=9)
        ax.set_xticks(budgets)
        ax.set_xlabel("epochs (supernet and twins)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("sliced - twin val top-1 (points)")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", default="8",
                   help="budgets, comma-separated (e.g. 8,16): supernet and twins (default 8)")
    p.add_argument("--options", default="baseline",
                   help=f"comma-separated; each one of {list(PRESETS)} or FIELD=VALUE, "
                   "joined by + (default baseline)")
    p.add_argument("--method", choices=METHODS, default=None,
                   help="training method of every option (default: nas-train's, sandwich)")
    p.add_argument("--data", required=True,
                   help="data spec, e.g. cifar10:PATH (the CIFAR-10 python folder) or npz:DIR "
                   "(see docs/data.md for getting CIFAR-10)")
    p.add_argument("--train-images", type=int, default=0,
                   help="train on the first N/10 images of each class (default 0: all)")
    p.add_argument("--calib-images", type=int, default=1024,
                   help="training images per BN calibration of each scored child, sliced "
                   "and twin (default 1024)")
    p.add_argument("--out", default="runs/cifar_quality")
    p.add_argument("--png", default=None, help="the gap-against-epochs plot (default "
                   "<out>/gap_budget.png)")
    p.add_argument("--threads", type=int, default=0, help="per job; 0: as nas-train")
    p.add_argument("--jobs", type=int, default=1,
                   help="supernets / twins trained at once, in processes (default 1)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--twins", default="baseline",
                   help="the twins' recipe, as an option (default baseline: the small "
                   "recipe's schedule, floor at the end)")
    p.add_argument("--skip-twins", action="store_true",
                   help="sliced children only (no twins trained; no differences)")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    space = load_space(BASE["space"])
    try:
        budgets = sorted({int(e) for e in a.epochs.split(",")})
        if min(budgets) < 1 or a.train_images < 0 or a.calib_images < 1 or a.jobs < 1:
            raise ValueError(f"--epochs {a.epochs} / --train-images {a.train_images} / "
                             f"--calib-images {a.calib_images} / --jobs {a.jobs}: expected "
                             "epochs >= 1, images >= 0, calibration images and jobs >= 1")
        spec = subset_data(a.data, a.train_images, out, max(space.resolutions))
        extra = {"method": a.method} if a.method else {}
        cfgs = {}
        for e in budgets:
            base = resolved(TrainConfig(**BASE, data=spec, epochs=e, threads=a.threads,
                                        device=a.device, **extra))
            for o in a.options.split(","):
                cfgs[o, e] = option_config(base, o)
            cfgs["twins", e] = option_config(base, a.twins)
    except ValueError as e:
        print(f"cifar_quality: error: {e}", file=sys.stderr)
        return 2
    options = list(dict.fromkeys(a.options.split(",")))
    label = {o: (f"{o} ({a.method})" if a.method else o) for o in options}
    torch.set_num_threads(cfgs["twins", budgets[0]].threads)
    data = load_data(spec, max(space.resolutions), 0)
    kids = children(space)
    cache = out / "twins"
    cache.mkdir(exist_ok=True)
    print(f"CIFAR-10 ({len(data.train)} train / {len(data.val)} val), tiny space, epochs "
          f"{budgets}, batch {BASE['batch_size']}, lr {BASE['lr']}, "
          f"{cfgs['twins', budgets[0]].threads} thread(s) x {a.jobs} job(s); twins: {a.twins}; "
          f"val top-1 after BN calibration on {a.calib_images} images", flush=True)

    # the work: missing twins and unfinished supernets, the costliest first
    jobs: list[tuple[float, Any, tuple]] = []
    big = macs(space, space.max_arch())
    for e in budgets if not a.skip_twins else []:
        for tag, arch in kids:
            path = twin_path(cache, arch, cfgs["twins", e])
            if not path.with_suffix(".json").exists():
                cost = e * (0.1 + macs(space, arch) / big)
                jobs.append((cost, job_twin, (tag, arch, cfgs["twins", e], str(path))))
    runs = {}
    for o in options:
        for e in budgets:
            cfg = replace(cfgs[o, e], out=str(out / o.replace("=", "-") / f"e{e}"))
            runs[o, e] = cfg
            ck = Path(cfg.out) / "supernet.pt"
            if not (ck.exists() and read_checkpoint(ck).get("completed")):
                jobs.append((e * 2.3, job_supernet, (f"{o} ({cfg.method})", cfg)))
            else:
                try:  # done: train() returns at once, or refuses a run of other settings
                    train(cfg)
                except ValueError as err:  # (a preset changed since: stale, not reused)
                    print(f"cifar_quality: error: {err}", file=sys.stderr)
                    return 2
    t = time.perf_counter()
    if jobs:
        print(f"training {len(jobs)} unit(s) ...", flush=True)
        run_jobs(jobs, a.jobs)
        print(f"training: {(time.perf_counter() - t) / 60:.1f} min", flush=True)

    # scores, tables, plot
    curves: dict[str, dict[int, tuple]] = {}
    rows, summaries = [], {}
    for o in options:
        res = {}
        for e in budgets:
            sliced = sliced_top1(Path(runs[o, e].out), kids, data, runs[o, e], a.calib_images)
            if a.skip_twins:
                print(f"{o} {e} epochs: " + ", ".join(f"{t} {100 * v:.2f}"
                                                      for t, v in sliced.items()))
                continue
            alone = {tag: twin_top1(twin_path(cache, arch, cfgs["twins", e]), arch, data,
                                    cfgs["twins", e], a.calib_images) for tag, arch in kids}
            res[e] = (sliced, alone)
            rows += [{"option": o, "method": runs[o, e].method, "epochs": e, "child": tag,
                      "arch": str(arch), "mmacs": macs(space, arch) / 1e6,
                      "sliced": sliced[tag], "twin": alone[tag]} for tag, arch in kids]
        if res:
            curves[label[o]] = res
            summaries[label[o]] = print_option(label[o], budgets, kids, space, res)
    if not summaries:
        return 0
    print(f"\n| option | epochs | mean | worst | within {WITHIN:g} | Kendall tau | "
          "Spearman rho |\n|---|---|---|---|---|---|---|")
    for o, per in summaries.items():
        for e, s in per.items():
            print(f"| {o} | {e} | {s['mean']:+.2f} | {s['worst']:+.2f} | "
                  f"{s['within']}/{len(kids)} | {s['tau']:.3f} | {s['rho']:.3f} |")
    fd, tmp = tempfile.mkstemp(prefix=".results.", dir=out)
    with os.fdopen(fd, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, out / "results.csv")
    png = Path(a.png) if a.png else out / "gap_budget.png"
    plot(png, budgets, kids, curves,
         f"Sliced children minus their twins, tiny supernet, CIFAR-10 "
         f"({len(data.train)} train images; BN calibration {a.calib_images} images)")
    print(f"\nplot: {png}; rows: {out / 'results.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
