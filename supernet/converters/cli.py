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
from . import KINDS, PENDING, convert

OUT_FILE = "supernet.pt"


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nas-convert", description="Convert a published supernet into a "
                "nas-supernet checkpoint that nas-search and nas-export read.")
    p.add_argument("--from", dest="kind", metavar="KIND", required=True,
                   help=f"source format: {', '.join(KINDS)} "
                        f"({', '.join(PENDING)}: not yet supported)")
    p.add_argument("ckpt", metavar="CKPT", help="the authors' checkpoint file")
    p.add_argument("--out", metavar="DIR", required=True, help=f"folder for {OUT_FILE}")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow full unpickling (runs code from the file): only for files "
                        "from a source you trust, when plain tensor loading fails")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `nas-convert`; returns the exit code."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a bad flag (2), already printed
        return int(e.code or 0)
    out = Path(args.out) / OUT_FILE
    try:
        net, extra = convert(args.kind, args.ckpt, args.trust_pickle)
        save_checkpoint(out, net, **extra)
    except ValueError as e:
        print(f"nas-convert: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} (space {net.space.name}, from {args.kind} "
          f"{extra['source']['file']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
