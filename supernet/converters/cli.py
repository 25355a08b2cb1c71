"""`nas-convert`: a published supernet file -> DIR/supernet.pt in our checkpoint format.

    nas-convert --from KIND CKPT --out DIR [--trust-pickle]

Bad input gives a one-line error on stderr, exit code 2, and writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..checkpoint import save_checkpoint
from ..cli_kit import Parser, run
from . import KINDS, convert

OUT_FILE = "supernet.pt"


def parser() -> argparse.ArgumentParser:
    """The `nas-convert` argument parser (errors in one line)."""
    p = Parser(prog="nas-convert", description="Convert a published supernet into a "
                "nas-supernet checkpoint that nas-search and nas-export read.")
    p.add_argument("--from", dest="kind", metavar="KIND", required=True,
                   help=f"source format: {', '.join(KINDS)}")
    p.add_argument("ckpt", metavar="CKPT", help="the authors' checkpoint file")
    p.add_argument("--out", metavar="DIR", required=True, help=f"folder for {OUT_FILE}")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow full unpickling (runs code from the file): only for files "
                        "from a source you trust, when plain tensor loading fails")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `nas-convert`; returns the exit code."""
    return run("nas-convert", lambda: _convert(argv), "nothing was written")


def _convert(argv: Sequence[str] | None) -> int:
    args = parser().parse_args(argv)
    out = Path(args.out) / OUT_FILE
    net, extra = convert(args.kind, args.ckpt, args.trust_pickle)
    save_checkpoint(out, net, **extra)
    print(f"wrote {out} (space {net.space.name}, from {args.kind} "
          f"{extra['source']['file']})")
    return 0

if __name__ == "__main__":
    sys.exit(main())
