"""Convert published weight-sharing supernets into our checkpoint format (`nas-convert`).

Supported: AttentiveNAS and AlphaNet (one supernet design, space `attentive-mbv3`), and
Once-for-All's MobileNetV3 supernets of width 1.0 and 1.2 (spaces `ofa-mbv3-w10`, `-w12`)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from ..nn.model import ElasticSupernet
from ..spaces.space import Arch
from ..utils import file_sha256
from . import attentivenas, ofa
from .reading import read_state_dict

# kind -> the module that knows its keys, child configs and preprocessing
_PEERS: dict[str, ModuleType] = {"attentivenas": attentivenas, "alphanet": attentivenas,
                                 "ofa-mbv3-w10": ofa, "ofa-mbv3-w12": ofa}
KINDS = tuple(_PEERS)

__all__ = ["KINDS", "check_kind", "convert", "peer_arch", "space_of"]


def check_kind(kind: str) -> str:
    """`kind` if supported; one-line ValueError otherwise."""
    if kind not in KINDS:
        raise ValueError(f"kind: {kind!r} is unknown; expected one of {', '.join(KINDS)}")
    return kind


def space_of(kind: str) -> str:
    """The name of our space that holds `kind`'s supernet."""
    return _PEERS[check_kind(kind)].space_of(kind)


def convert(kind: str, path: str | Path,
            trust_pickle: bool = False) -> tuple[ElasticSupernet, dict[str, Any]]:
    """(our supernet holding the weights of the published file `path`, the extra
    checkpoint entries: `source` {kind, file, sha256} and `preprocessing`)."""
    peer = _PEERS[check_kind(kind)]
    theirs = read_state_dict(path, trust_pickle)
    net = ElasticSupernet(peer.space_of(kind), zero_init_residual_bn=False)
    ours = net.state_dict()
    try:
        mapped = peer.map_state_dict(net.space, theirs, ours, str(path))
    except ValueError as e:
        raise ValueError(f"{e}{_fits_other(kind, theirs)}") from None
    net.load_state_dict(mapped)
    net.eval()
    source = {"kind": kind, "file": Path(path).name, "sha256": file_sha256(path)}
    return net, {"source": source, "preprocessing": peer.preprocessing(kind)}


def _fits_other(kind: str, theirs: dict) -> str:
    """' (it converts with --from K)' when the file that `kind` refused is another kind's
    supernet (e.g. the other OFA width), else ''."""
    tried = {space_of(kind)}
    for other, peer in _PEERS.items():
        name = peer.space_of(other)
        if name in tried:
            continue
        tried.add(name)
        net = ElasticSupernet(name, zero_init_residual_bn=False)
        try:
            peer.map_state_dict(net.space, theirs, net.state_dict(), "")
        except ValueError:
            continue
        return f" (it converts with --from {other})"
    return ""


def peer_arch(kind: str, cfg: dict[str, Any]) -> Arch:
    """Our Arch of a child config in the format of `kind`'s authors."""
    return _PEERS[check_kind(kind)].peer_arch(cfg, space_of(kind))
