"""What the command-line tools share (nas-train, nas-convert, nas-search, nas-export):
a parser whose errors are one line, argument converters that keep our ValueError
messages, and one runner that turns bad input into one line on stderr and exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

_T = TypeVar("_T")


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError (argparse would print the usage block
    and exit itself); `run` reports it."""

    def error(self, message: str) -> NoReturn:
        """Raise `message` as a UsageError instead of printing usage and exiting."""
        raise UsageError(message)


def arg(convert: Callable[[str, str], _T], what: str) -> Callable[[str], _T]:
    """An argparse type calling `convert(text, what)`, whose ValueError message is kept."""
    def parse(text: str) -> _T:
        try:
            return convert(text, what)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse


def whole(minimum: int) -> Callable[[str, str], int]:
    """A converter of whole numbers of at least `minimum`."""
    def parse(text: str, what: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise ValueError(f"{what}: {text!r} is not a whole number") from None
        if v < minimum:
            raise ValueError(f"{what}: {v} must be at least {minimum}")
        return v
    return parse


def number(text: str, what: str) -> float:
    """A converter of real numbers."""
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a number") from None


def run(prog: str, body: Callable[[], int], interrupted: str) -> int:
    """Run a tool's `body`: its exit code; bad input (UsageError, ValueError) is one line
    and 2, --help is 0, Ctrl-C prints `interrupted` (what the user can do) and is 130."""
    try:
        return body()
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except (UsageError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {interrupted}", file=sys.stderr)
        return 130
