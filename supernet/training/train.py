"""Supernet training, read top to bottom: build (data, supernet, optimizer, schedule,
the family's step), then epochs of steps, then the end of each epoch (BN-calibrated
val top-1 of the smallest and largest child, a checkpoint, a log line).

A checkpoint every epoch; a resumed run ends with the same weights as an uninterrupted
one, because every random draw follows from (seed, epoch/step). Under `torchrun` the
same code runs DDP, every rank training the same children. The steps are in `steps`, the
configuration and recipes in `config`, optimizer and schedule in `optim` (all in this package).
"""

from __future__ import annotations

import csv
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from ..checkpoint import read_checkpoint, save_checkpoint
from ..data.datasets import DataSet, batches, calib_batches, load_data
from ..nn.model import ElasticSupernet
from ..spaces.space import Arch, SearchSpace, load_space, space_from_dict
from ..utils import atomic_write, mixed_seed
from .config import BEFORE_OPTIONS, RUN_ONLY, TrainConfig, check_config, resolved, with_recipe
from .distributed import Dist, convert_sync_bn, setup, teardown
from .evaluation import EvalResult, calibrate_bn, evaluate
from .logger import NullLogger, RunLogger, markdown_table, open_logger
from .optim import make_optimizer, make_scheduler
from .steps import autocast, make_step, training_space

__all__ = ["TrainConfig", "train"]

LOG_FIELDS = ("epoch", "step", "loss", "kd_loss", "lr", "train_s", "eval_s",
              "val_top1_min", "val_top1_max", "skipped_images")


@torch.no_grad()
def _grad_layout(net: nn.Module) -> None:
    """Give conv weights the strides their gradients arrive with under channels-last
    activations, before DDP lays its gradient buckets out after the parameters: else
    every step copies those gradients (and torch warns that strides do not match).
    Convs over more than one input channel get NHWC strides, spelled out even for 1x1
    kernels (where `contiguous(channels_last)` keeps NCHW ones); depthwise weights, whose
    sliced gradients arrive NCHW, stay as they are."""
    for p in net.parameters():
        if p.ndim == 4 and p.shape[1] > 1:
            _, c, h, w = p.shape
            t = torch.empty_strided(p.shape, (h * w * c, 1, w * c, c), dtype=p.dtype,
                                    device=p.device)
            p.data = t.copy_(p.data)


def _recipe(cfg: TrainConfig) -> dict[str, Any]:
    """The fields that decide what a run computes (see RUN_ONLY)."""
    return {k: v for k, v in asdict(cfg).items() if k not in RUN_ONLY}


def _previous(path: Path, cfg: TrainConfig, space: SearchSpace) -> dict | None:
    """The checkpoint to continue from (complete or resumable), None to start afresh;
    ValueError if `path` holds a run of another recipe."""
    if not path.exists():
        return None
    ck = read_checkpoint(path)
    # a field newer than the checkpoint counts at the value that run computed with
    old = {**_recipe(with_recipe(TrainConfig())), **BEFORE_OPTIONS, **ck.get("recipe", {})}
    new = _recipe(cfg)
    diff = [f"{k} {old.get(k)!r} -> {new[k]!r}" for k in new if old.get(k) != new[k]]
    if space_from_dict(ck["space"]) != space:
        diff.insert(0, f"space {ck['space'].get('name')!r} -> {space.name!r}")
    if diff:
        raise ValueError(f"out: {str(path)!r} holds a different run ({'; '.join(diff)}); "
                         "choose another out folder or remove it")
    return ck if ck.get("completed") or cfg.resume else None


def _write_log(path: Path, rows: list[dict]) -> None:
    """Write log.csv atomically from the whole history (kept in the checkpoint), so a
    resumed run's log never holds an epoch twice."""
    def write(f) -> None:
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        w.writeheader()
        w.writerows(rows)

    atomic_write(path, write)


def _on(loader, device: torch.device, channels_last: bool):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for x, y in loader:
        yield x.to(device, memory_format=fmt), y.to(device)


def _calibrated(net: ElasticSupernet, arch: Arch, data: DataSet, cfg: TrainConfig,
                device: torch.device, splits: dict[str, Any]) -> dict[str, EvalResult]:
    """Recalibrate BN for `arch` on the fixed training images, then evaluate each split."""
    # the values in force (resolved)
    assert cfg.batch_size is not None and cfg.workers is not None
    assert cfg.channels_last is not None
    bs = min(512, 2 * cfg.batch_size)  # one process evaluates: a bounded batch
    with autocast(device, cfg.bf16):
        calibrate_bn(net, arch, _on(calib_batches(data, cfg.calib_images, bs, device=device,
                                                  workers=cfg.workers),
                                    device, cfg.channels_last), cfg.calib_images)
        return {name: evaluate(net, arch, _on(batches(s, data, bs, device=device,
                                                      workers=cfg.workers),
                                              device, cfg.channels_last))
                for name, s in splits.items()}


def _log_line(row: dict, epochs: int) -> str:
    return (f"epoch {row['epoch']:>3}/{epochs}  loss {row['loss']:.4f}  kd {row['kd_loss']:.4f}"
            f"  lr {row['lr']:.4g}  {row['train_s'] + row['eval_s']:.1f} s  val top-1 "
            f"min {100 * row['val_top1_min']:.2f}%  max {100 * row['val_top1_max']:.2f}%")


def train(cfg: TrainConfig) -> Path:
    """Train (or resume, or find already trained) the supernet of `cfg`; returns the
    path of the final checkpoint `<out>/supernet.pt`."""
    check_config(cfg)
    cfg = resolved(cfg)
    space = training_space(load_space(cfg.space), cfg.els, cfg.fair, cfg.method)
    # The split follows the seed too; the checkpoint stores both, so an evaluator can
    # rebuild the same held-out val split. Folders are only indexed here (streamed).
    data = load_data(cfg.data, space.base_resolution, cfg.seed)
    # The classifier follows the data; the space's class count is a default.
    space = replace(space, num_classes=data.num_classes)
    out = Path(cfg.out)
    path = out / "supernet.pt"
    prev = _previous(path, cfg, space)
    if prev is not None and prev.get("completed"):
        return path
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    d = setup(cfg.device)
    log: RunLogger = NullLogger()
    try:
        assert cfg.batch_size is not None  # the recipe's where unset (resolved)
        if cfg.batch_size % d.world or len(data.train) < cfg.batch_size:
            raise ValueError(f"batch_size: {cfg.batch_size} must divide over {d.world} "
                             f"processes and fit the {len(data.train)} training images")
        # logged steps count optimizer steps done; TensorBoard hides what a killed run
        # logged after its last checkpoint
        log = open_logger(cfg.log_dir or out, cfg.tensorboard, enabled=d.rank == 0,
                          purge_step=prev["step"] + 1 if prev is not None else 0)
        _run(cfg, space, data, d, out, prev, log)
    finally:
        log.close()
        teardown(d)
        torch.set_num_threads(threads)
    return path


def _run(cfg: TrainConfig, space: SearchSpace, data: DataSet, d: Dist, out: Path,
         prev: dict | None, log: RunLogger) -> None:
    # the values in force: resolved() filled the recipe's fields and the automatic choices
    assert (cfg.epochs is not None and cfg.batch_size is not None and cfg.schedule is not None
            and cfg.warmup_epochs is not None and cfg.floor_at is not None
            and cfg.workers is not None)
    torch.manual_seed(cfg.seed)  # weight initialisation
    net = ElasticSupernet(space)
    if prev is not None:
        net.load_state_dict(prev["state_dict"])
    if cfg.sync_bn and d.world > 1:
        convert_sync_bn(net)
    net.to(d.device)
    if cfg.channels_last:
        _grad_layout(net)
    model: nn.Module = net
    if d.world > 1:
        # The last backward of a step (the smallest child's) leaves layers idle. Buffers
        # (BN running statistics) follow rank 0: training does not read them.
        model = nn.parallel.DistributedDataParallel(
            net, device_ids=[d.device] if d.device.type == "cuda" else None,
            find_unused_parameters=True)
    steps = len(data.train) // cfg.batch_size
    opt = make_optimizer(net, cfg)
    sched = make_scheduler(opt, cfg.schedule, cfg.epochs * steps,
                           round(min(cfg.warmup_epochs, cfg.epochs) * steps), steps,
                           cfg.floor_at)
    step_fn = make_step(space, cfg, cfg.epochs * steps)  # the family's, chosen once
    history: list[dict] = []
    start, seconds = 0, 0.0
    if prev is not None:
        opt.load_state_dict(prev["optimizer"])
        sched.load_state_dict(prev["scheduler"])
        history, start, seconds = list(prev["history"]), prev["epoch"], prev["seconds"]
    lead = d.rank == 0
    if lead and not cfg.quiet and start < cfg.epochs:
        print(_header(cfg, space, data, d), flush=True)
    log.text("settings", f"{_header(cfg, space, data, d)}\n\n{markdown_table(_plain(cfg))}",
             start * steps)
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        net.train()
        loader = batches(data.train, data, cfg.batch_size, seed=mixed_seed(cfg.seed, epoch),
                         train=True, drop_last=True, rank=d.rank, world=d.world,
                         workers=cfg.workers, device=d.device)
        bar = tqdm(loader, total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=cfg.quiet or not lead, dynamic_ncols=True)
        sums = torch.zeros(3, dtype=torch.float64, device=d.device)
        tick = t0
        for i, (x, y) in enumerate(bar):
            step = epoch * steps + i
            torch.manual_seed(mixed_seed(cfg.seed, step, d.rank))  # dropout masks, resumable
            x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
            loss, kd = step_fn(model, opt, x, y, step)
            now = time.perf_counter()  # images/s of all processes, data loading included
            log.scalars({"train/loss": loss, "train/kd_loss": kd,
                         "train/lr": opt.param_groups[0]["lr"],
                         "train/images_per_s": len(y) * d.world / (now - tick)}, step + 1)
            tick = now
            sched.step()
            short = cfg.batch_size // d.world - len(y)  # unreadable images skipped
            sums += torch.stack([loss.double(), kd.double(),
                                 torch.tensor(float(short), dtype=torch.float64,
                                              device=d.device)])
            if i % 10 == 0 and not bar.disable:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        if d.world > 1:
            dist.all_reduce(sums)
        skipped = int(sums[2].item())
        means = (sums / (steps * d.world)).tolist()
        train_s = time.perf_counter() - t0
        if lead:
            t1 = time.perf_counter()
            last = epoch + 1 == cfg.epochs
            res = {}
            for tag, arch in (("min", space.min_arch()), ("max", space.max_arch())):
                splits = {"val": data.val}
                if last and data.test is not None:
                    splits["test"] = data.test
                res[tag] = _calibrated(net, arch, data, cfg, d.device, splits)
            eval_s = time.perf_counter() - t1
            row = {"epoch": epoch + 1, "step": (epoch + 1) * steps, "loss": means[0],
                   "kd_loss": means[1], "lr": opt.param_groups[0]["lr"], "train_s": train_s,
                   "eval_s": eval_s, "val_top1_min": res["min"]["val"].top1,
                   "val_top1_max": res["max"]["val"].top1, "skipped_images": skipped}
            history.append(row)
            log.scalars({"val/top1_min": row["val_top1_min"],
                         "val/top1_max": row["val_top1_max"],
                         "train/skipped_images": skipped}, row["step"])
            seconds += train_s + eval_s
            result = None
            if last:
                split = "test" if data.test is not None else "val"
                result = {"split": split, "seconds": seconds,
                          **{f"{tag}_arch": str(a) for tag, a in
                             (("min", space.min_arch()), ("max", space.max_arch()))},
                          **{f"{tag}_top1": res[tag][split].top1 for tag in res},
                          **{f"{tag}_loss": res[tag][split].loss for tag in res}}
            save_checkpoint(out / "supernet.pt", net, config=_plain(cfg),
                            recipe=_recipe(cfg), data=cfg.data, seed=cfg.seed,
                            epoch=epoch + 1, step=(epoch + 1) * steps, completed=last,
                            optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                            history=history, seconds=seconds, result=result,
                            world_size=d.world)
            _write_log(out / "log.csv", history)
            (tqdm.write if not bar.disable else print)(_log_line(row, cfg.epochs))
        if d.world > 1:
            dist.barrier()  # the others wait while rank 0 evaluates and saves


def _header(cfg: TrainConfig, space: SearchSpace, data: DataSet, d: Dist) -> str:
    """The values in force, once at the start of the log."""
    dropout = space.dropout if cfg.dropout is None else cfg.dropout
    return (f"nas-train: space {space.name} ({space.num_classes} classes, base "
            f"{space.base_resolution} px), data {data.name} ({len(data.train)} train"
            f"{', streamed' if data.streamed else ''}, {cfg.workers} workers), recipe "
            f"{cfg.recipe}: {cfg.optimizer} lr {cfg.lr:g} batch {cfg.batch_size} x {d.world} "
            f"proc, {cfg.epochs} epochs, warm-up {cfg.warmup_epochs:g}, schedule "
            f"{cfg.schedule}, weight decay {cfg.weight_decay:g}, label smoothing "
            f"{cfg.label_smoothing:g}, dropout {dropout:g}, clip {cfg.grad_clip:g}, "
            f"{cfg.num_random} random children ({cfg.res_sampling} resolutions)")


def _plain(cfg: TrainConfig) -> dict[str, Any]:
    """The config as plain values (checkpoints load with weights_only=True)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
