"""Read a published checkpoint file into a flat {name: tensor} state dict, safely."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

# where distributed files keep the weights, tried in this order
_WRAPPERS = ("state_dict", "model")
_DDP = "module."


def load_file(path: str | Path, trust_pickle: bool = False) -> object:
    """torch.load with weights_only=True; full unpickling only with `trust_pickle`, since
    it can run arbitrary code. One-line ValueError for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint: {str(path)!r} does not exist or is not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # a valid pickle naming a class beyond tensors (e.g. the authors' training args)
        # fails on an "Unsupported global"; a file that is no pickle fails otherwise
        if "unsupported global" not in str(e).lower():
            raise ValueError(f"checkpoint: {str(path)!r} is not a torch checkpoint "
                             f"({type(e).__name__})") from None
        if not trust_pickle:
            raise ValueError(f"checkpoint: {str(path)!r} holds Python objects besides "
                             "tensors and needs full unpickling, which can run code; rerun "
                             "with --trust-pickle if you trust its source") from None
    except Exception as e:  # torch raises many types for a file it cannot read
        raise ValueError(f"checkpoint: {str(path)!r} is not a torch checkpoint "
                         f"({type(e).__name__})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"checkpoint: {str(path)!r} could not be unpickled "
                         f"({type(e).__name__}: {e})") from None


def state_dict_of(obj: object, where: str) -> dict[str, torch.Tensor]:
    """The tensors of a loaded checkpoint: under `state_dict` or `model`, or the dict
    itself; DDP's `module.` prefix removed. ValueError when there is no state dict."""
    if isinstance(obj, dict):
        for key in _WRAPPERS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ValueError(f"checkpoint: {where!r} holds no state dict (expected a dict of "
                         f"tensors, alone or under {' or '.join(map(repr, _WRAPPERS))})")
    if all(k.startswith(_DDP) for k in obj):
        obj = {k[len(_DDP):]: v for k, v in obj.items()}
    return obj


def read_state_dict(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The flat state dict stored in a published checkpoint file."""
    return state_dict_of(load_file(path, trust_pickle), str(path))
