"""`nas-train`: argument parsing only; the work is `supernet.training.train.train`.

Under torchrun this module (or the `nas-train` script) is the entry point of every
process: `torchrun --nproc_per_node=2 -m supernet.training.cli --space tiny --data digits`.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..checkpoint import read_checkpoint
from ..cli_kit import Parser, run
from ..data.datasets import DATA_SPECS
from .config import RECIPES, RES_SAMPLING, TrainConfig
from .distill import KD_LOSSES
from .optim import OPTIMIZERS, SCHEDULES
from .sampling import SAMPLINGS
from .shrinking import METHODS
from .train import train


def _ints(text: str) -> tuple[int, ...]:
    """'192,224,288' -> (192, 224, 288); argparse turns the ValueError into exit 2."""
    try:
        out = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers") from None
    if not out or min(out) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: resolutions must be positive")
    return out


def build_parser() -> argparse.ArgumentParser:
    """The `nas-train` flags; defaults are TrainConfig's."""
    d = TrainConfig()
    p = Parser(prog="nas-train", description="Train an elastic supernet as in BigNAS "
                "(sandwich rule, inplace distillation) or, on a layer-wise space, as in "
                "SCARLET-NAS (single path, ELS). Run it under torchrun for DDP.")
    a = p.add_argument
    a("--space", default=d.space, help="built-in space name or YAML file (default %(default)s)")
    a("--data", default=d.data, help=f"{DATA_SPECS} (default %(default)s)")
    a("--recipe", choices=list(RECIPES), default=d.recipe,
      help="hyper-parameters of the flags left unset (default %(default)s; see README)")
    r = RECIPES[d.recipe]
    a("--epochs", type=int, default=d.epochs, help=f"default: the recipe's ({r.epochs})")
    a("--batch-size", type=int, default=d.batch_size,
      help=f"global batch, split over torchrun processes (default: the recipe's, {r.batch_size})")
    a("--lr", type=float, default=d.lr,
      help="initial learning rate (default: the recipe's, scaled linearly to the batch)")
    a("--optimizer", choices=OPTIMIZERS, default=d.optimizer,
      help=f"default: the recipe's ({r.optimizer})")
    a("--warmup-epochs", type=float, default=d.warmup_epochs,
      help=f"default: the recipe's ({r.warmup_epochs:g})")
    a("--num-random", type=int, default=d.num_random,
      help="random children per step besides the largest and smallest (default %(default)s)")
    a("--resolutions", type=_ints, default=d.resolutions,
      help="training resolutions, comma-separated, those of the space that are listed "
      "(default: the recipe's; small: all of the space's; bignas: 192,224,288,320)")
    a("--seed", type=int, default=d.seed, help="default %(default)s")
    a("--out", default=str(d.out), help="run folder: supernet.pt, log.csv (default %(default)s)")
    a("--resume", action="store_true", help="continue from <out>/supernet.pt")
    a("--device", default=d.device, help="cpu, cuda or cuda:N (default %(default)s)")
    a("--workers", type=int, default=d.workers,
      help="DataLoader processes decoding batches (default: the cores per process for "
      "image folders, 0 for in-memory data)")
    a("--label-smoothing", type=float, default=d.label_smoothing,
      help=f"default: the recipe's ({r.label_smoothing:g})")
    a("--weight-decay", type=float, default=d.weight_decay,
      help=f"default: the recipe's ({r.weight_decay:g})")
    a("--grad-clip", type=float, default=d.grad_clip,
      help=f"max gradient norm, 0 for none (default: the recipe's, {r.grad_clip:g})")
    a("--schedule", choices=SCHEDULES, default=d.schedule,
      help=f"default: the recipe's ({r.schedule})")
    a("--res-sampling", choices=RES_SAMPLING, default=d.res_sampling,
      help="resolutions of the random children: paired (those between the smallest and "
      "largest child's, each once per step) or independent (any; default: the recipe's, "
      f"{r.res_sampling})")
    a("--calib-images", type=int, default=d.calib_images,
      help="training images per BN recalibration (default %(default)s)")
    a("--dropout", type=float, default=d.dropout,
      help="dropout of the largest child (default: the recipe's, else the space's)")
    a("--bf16", action="store_true", help="bfloat16 autocast")
    a("--channels-last", action=argparse.BooleanOptionalAction, default=d.channels_last,
      help="NHWC memory format (default: on CPU only)")
    a("--sync-bn", action="store_true", help="batch statistics over all torchrun processes")
    a("--threads", type=int, default=d.threads,
      help="torch CPU threads per process (default 0: half the cores, 1 on 2 cores)")
    a("--quiet", action="store_true", help="no progress bar")
    a("--tensorboard", action=argparse.BooleanOptionalAction, default=d.tensorboard,
      help="TensorBoard scalars and settings beside log.csv (default: when the tensorboard "
      "package, extra [tb], is installed; --tensorboard without it is an error)")
    a("--log-dir", default=d.log_dir,
      help="TensorBoard's folder, one per run (default: the --out folder)")
    a("--method", choices=METHODS, default=d.method,
      help="stage-wise spaces: sandwich (BigNAS, default) or progressive-shrinking (OFA: "
      "the largest child, then kernel, depth, expand and width opened phase by phase)")
    a("--no-els", dest="els", action="store_false",
      help="layer-wise spaces: skip choices as pure skips, not ELS (ablation)")
    a("--fair", action="store_true",
      help="layer-wise spaces: FairNAS strict fairness (every choice trained each step)")
    # options that narrow the gap between sliced children and stand-alone twins
    a("--kd", choices=KD_LOSSES, default=d.kd, help="distillation loss: ce to the soft "
      "labels (BigNAS) or AlphaNet's adaptive alpha-divergence (default %(default)s)")
    a("--kd-labels", type=float, default=d.kd_labels,
      help="weight of the labels' cross-entropy added to each distilled child's loss (0: "
      "soft labels only, BigNAS; 1: labels plus soft labels, Once-for-All; default: the "
      f"recipe's, {r.kd_labels:g})")
    a("--teacher-warmup", type=float, default=d.teacher_warmup,
      help="share of the run, at its start, in which only the largest child trains "
      f"(Once-for-All's first stage; default: the recipe's, {r.teacher_warmup:g})")
    a("--sampling", choices=SAMPLINGS, default=d.sampling,
      help="random children: uniform, or AttentiveNAS's best-up / worst-up of "
      f"--candidates ranked by their loss on the batch (default: the recipe's, {r.sampling})")
    a("--candidates", type=int, default=d.candidates,
      help="candidates per random child for best-up / worst-up (default %(default)s)")
    a("--floor-at", type=float, default=d.floor_at,
      help="share of the run after warm-up at which the exp schedule reaches its 5%% "
      f"floor (default: the recipe's, {r.floor_at:g}; 1: decay over the whole run)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse flags, train, print where the supernet is and how good its extremes are."""
    return run("nas-train", lambda: _train(argv), "continue with --resume and the same --out")


def _train(argv: list[str] | None) -> int:
    path = train(TrainConfig(**vars(build_parser().parse_args(argv))))
    if int(os.environ.get("RANK", "0")) == 0:
        r = read_checkpoint(path)["result"]
        print(f"supernet: {path}  ({r['seconds']:.0f} s of training and evaluation)")
        print(f"BN-calibrated {r['split']} top-1: smallest {100 * r['min_top1']:.2f}% "
              f"({r['min_arch']}), largest {100 * r['max_top1']:.2f}% ({r['max_arch']})")
    return 0

if __name__ == "__main__":
    sys.exit(main())
