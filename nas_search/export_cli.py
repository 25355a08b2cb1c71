"""`nas-export`: argument parsing only; the work is `nas_search.export.export_children`.

    nas-export --supernet CKPT --arch STRING --out DIR
    nas-export --run DIR [--supernet CKPT] --pick best|targets|front:K --out DIR
               [--calib-images N] [--onnx] [--quantize int8]
               [--finetune-epochs N [--finetune-distill]] [--force]

Bad input gives a one-line error on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from supernet.cli_kit import Parser, UsageError, arg, number, run, whole
from supernet.nn.deploy import QUANTIZE

from .export import PICKS, ExportConfig, export_children, parse_pick


def _pick(text: str, what: str) -> str:
    parse_pick(text)
    return text


def export_parser() -> argparse.ArgumentParser:
    """The parser of `nas-export`'s flags (ExportConfig's fields)."""
    p = Parser(prog="nas-export", description="Export children of a trained supernet as "
                "standalone models with their own BN statistics (model.pt, arch.yaml, "
                "metrics.json, optionally model.onnx).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--arch", metavar="STRING", help="one child, in the Arch string form")
    src.add_argument("--run", metavar="DIR", help="out folder of a nas-search run")
    p.add_argument("--supernet", metavar="CKPT",
                   help="supernet checkpoint (default with --run: the run's supernet)")
    p.add_argument("--pick", type=arg(_pick, "--pick"),
                   help=f"with --run: {PICKS} (front:K = K children equispaced by MACs "
                        "along the front; default best)")
    p.add_argument("--out", metavar="DIR", required=True,
                   help="folder to create: one sub-folder per child and children.csv")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--calib-images", type=arg(whole(1), "--calib-images"),
                   help="training images for BN recalibration (default: the run's "
                        "setting, else 4096; at most the training split)")
    p.add_argument("--onnx", action="store_true",
                   help="also write model.onnx, checked with onnxruntime (extra [onnx])")
    p.add_argument("--quantize", choices=QUANTIZE,
                   help="int8: also write model.int8.onnx, onnxruntime's static int8 "
                        "quantization, with its own top-1 and latency (extra [onnx])")
    p.add_argument("--finetune-epochs", type=arg(whole(0), "--finetune-epochs"), default=0,
                   help="train each child alone this long with the supernet's recipe and "
                        "report before/after metrics (default 0)")
    p.add_argument("--finetune-distill", action="store_true",
                   help="fine-tune on the largest child's soft labels instead of the labels")
    p.add_argument("--finetune-lr", type=arg(number, "--finetune-lr"),
                   help="fine-tuning LR (default: the supernet's final LR, 5%% of its initial)")
    p.add_argument("--data", help="data spec (default: the checkpoint's training data)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--threads", type=arg(whole(1), "--threads"), default=1,
                   help="torch CPU threads, also for the latency figure (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `nas-export`; returns the exit code."""
    return run("nas-export", lambda: _export(argv), "nothing was written")


def _export(argv: Sequence[str] | None) -> int:
    args = export_parser().parse_args(argv)
    if args.pick is not None and args.run is None:
        raise UsageError("--pick needs --run DIR")
    cfg = ExportConfig(**{**vars(args), "pick": args.pick or "best"})
    table = export_children(cfg)
    if not args.quiet:
        cols = [c for c in table.columns if c not in ("arch", "val_loss", "test_loss")]
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"wrote {cfg.out}/: {', '.join(table['label'])} (model.pt, arch.yaml, metrics.json"
          f"{', model.onnx' if cfg.onnx else ''}"
          f"{', model.int8.onnx' if cfg.quantize else ''}), children.csv")
    return 0

if __name__ == "__main__":
    sys.exit(main())
