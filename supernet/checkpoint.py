"""Atomic checkpoints holding the supernet weights and the space definition."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .data.datasets import DataSet, load_data, with_preprocessing
from .nn.model import ElasticSupernet
from .spaces.space import SearchSpace, load_space, space_from_dict
from .utils import atomic_torch_save, load_format

__all__ = ["atomic_torch_save", "checkpoint_data", "load_checkpoint", "read_checkpoint",
           "save_checkpoint"]

FORMAT = "nas-supernet/1"


def save_checkpoint(path: str | Path, net: ElasticSupernet, **extra: Any) -> None:
    """Write weights, the space and `extra` (plain tensors/containers/numbers) atomically."""
    atomic_torch_save({"format": FORMAT, "space": net.space.to_dict(),
                       "state_dict": net.state_dict(), **extra}, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, loaded with weights_only=True; clear error if it is not one."""
    return load_format(path, "checkpoint", FORMAT, "a supernet checkpoint")


def load_checkpoint(
    path: str | Path, space: SearchSpace | str | None = None
) -> tuple[ElasticSupernet, dict[str, Any]]:
    """(supernet with loaded weights, the checkpoint's extra entries).

    If `space` is given, a checkpoint of a different space is an error.
    """
    ck = read_checkpoint(path)
    saved = space_from_dict(ck["space"])
    if space is not None:
        want = load_space(space)
        if want != saved:
            raise ValueError(
                f"checkpoint: {str(path)!r} holds space {saved.name!r}, "
                f"which differs from the requested space {want.name!r}"
            )
    net = ElasticSupernet(saved, zero_init_residual_bn=False)
    net.load_state_dict(ck["state_dict"])
    extra = {k: v for k, v in ck.items() if k not in ("format", "space", "state_dict")}
    return net, extra


def checkpoint_data(space: SearchSpace, extra: dict[str, Any],
                    given: str | None = None) -> tuple[str, DataSet]:
    """(spec, data set) a loaded checkpoint is evaluated on: `given`, else the one it was
    trained on, with its split seed, so val stays held out, and with the preprocessing a
    converted checkpoint records; ValueError when the class count differs from the
    space's."""
    spec = given or extra.get("data") or "digits"
    data = load_data(spec, space.base_resolution, int(extra.get("seed", 0)))
    if extra.get("preprocessing"):  # a converted supernet: as its authors evaluate
        data = with_preprocessing(data, extra["preprocessing"])
    if data.num_classes != space.num_classes:
        hint = "" if given or "data" in extra else (
            "; the checkpoint records no data set (e.g. a converted supernet): give "
            "--data SPEC")
        raise ValueError(f"data: {spec!r} has {data.num_classes} classes but the "
                         f"supernet's space has {space.num_classes}{hint}")
    return spec, data
