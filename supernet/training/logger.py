"""Run logs behind one small interface (`RunLogger`: scalars at a step, text, close), so the
training loop never asks which backend it talks to. Two backends: TensorBoard (the
`tensorboard` package, extra `[tb]`) and none; log.csv is written by the loop either way.
Another backend (MLflow, W&B) is one more class with the same three methods."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

INSTALL_HINT = "pip install 'nas-supernet[tb]'"


class RunLogger(Protocol):
    """Where a run's scalars and text go."""

    def scalars(self, values: Mapping[str, Any], step: int) -> None:
        """Log each tag -> number (a float or a one-element tensor) at `step`."""

    def text(self, tag: str, text: str, step: int = 0) -> None:
        """Log a block of markdown text under `tag`."""

    def close(self) -> None:
        """Flush and release the backend."""


class NullLogger:
    """Logs nothing (and never reads a tensor, so it costs no device sync)."""

    def scalars(self, values: Mapping[str, Any], step: int) -> None:
        """Drop the values."""

    def text(self, tag: str, text: str, step: int = 0) -> None:
        """Drop the text."""

    def close(self) -> None:
        """Nothing to release."""


class TensorBoardLogger:
    """TensorBoard event files in `log_dir` through torch's `SummaryWriter`. With
    `purge_step`, TensorBoard hides the events a killed run had written from that step on,
    so a resumed run shows each step once."""

    def __init__(self, log_dir: str | Path, purge_step: int | None = None,
                 filename_suffix: str = ""):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step,
                                    filename_suffix=filename_suffix)

    def scalars(self, values: Mapping[str, Any], step: int) -> None:
        """One scalar event per tag at `step` (a tensor is read here: one device sync)."""
        for tag, v in values.items():
            self.writer.add_scalar(tag, float(v), step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        """A text event (shown as markdown in TensorBoard's Text tab)."""
        self.writer.add_text(tag, text, step)

    def close(self) -> None:
        """Flush the event file and close it."""
        self.writer.close()


def tensorboard_available() -> bool:
    """Whether the `tensorboard` package (needed by torch's SummaryWriter) is installed."""
    return importlib.util.find_spec("tensorboard") is not None


def check_tensorboard(wanted: bool | None) -> None:
    """ValueError in one line when TensorBoard is asked for explicitly but not installed."""
    if wanted and not tensorboard_available():
        raise ValueError(f"tensorboard: the tensorboard package is not installed; "
                         f"{INSTALL_HINT}, or run without --tensorboard")


def use_tensorboard(tensorboard: bool | None) -> bool:
    """Whether to write TensorBoard logs: as asked, or (None) when the package is installed;
    ValueError when asked for but not installed."""
    check_tensorboard(tensorboard)
    return tensorboard_available() if tensorboard is None else tensorboard


def open_logger(log_dir: str | Path, tensorboard: bool | None, enabled: bool = True,
                purge_step: int | None = None) -> RunLogger:
    """The logger a run writes to: TensorBoard in `log_dir` when `tensorboard` is True, or
    None and the package is installed; a NullLogger when off or not `enabled` (a process
    other than the first of a torchrun job)."""
    if not (use_tensorboard(tensorboard) and enabled):
        return NullLogger()
    return TensorBoardLogger(log_dir, purge_step=purge_step)


def markdown_table(values: Mapping[str, Any]) -> str:
    """`values` as a two-column markdown table (TensorBoard renders text as markdown)."""
    rows = [f"| {k} | {'' if v is None else v} |" for k, v in values.items()]
    return "\n".join(["| setting | value |", "| --- | --- |", *rows])
