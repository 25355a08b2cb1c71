"""Convert published weight-sharing supernets into our checkpoint format (`nas-convert`).

Supported: AttentiveNAS and AlphaNet (one supernet design, space `attentive-mbv3`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..nn.model import ElasticSupernet
from ..spaces.space import Arch
from . import attentivenas
from .reading import read_state_dict, sha256

KINDS = ("attentivenas", "alphanet")
PENDING = ("ofa-mbv3-w10", "ofa-mbv3-w12")  # need the OFA space family first

__all__ = ["KINDS", "PENDING", "check_kind", "convert", "peer_arch"]


def check_kind(kind: str) -> str:
    """`kind` if supported; one-line ValueError otherwise."""
    if kind in PENDING:
        raise ValueError(f"kind: {kind!r} is not yet supported (the OFA MobileNetV3 "
                         f"supernets need their own space family); supported: "
                         f"{', '.join(KINDS)}")
    if kind not in KINDS:
        raise ValueError(f"kind: {kind!r} is unknown; expected one of {', '.join(KINDS)} "
                         f"({', '.join(PENDING)} not yet supported)")
    return kind


def convert(kind: str, path: str | Path,
            trust_pickle: bool = False) -> tuple[ElasticSupernet, dict[str, Any]]:
    """(our supernet holding the weights of the published file `path`, the extra
    checkpoint entries: `source` {kind, file, sha256} and `preprocessing`)."""
    check_kind(kind)
    theirs = read_state_dict(path, trust_pickle)
    net = ElasticSupernet(attentivenas.SPACE, zero_init_residual_bn=False)
    ours = net.state_dict()
    net.load_state_dict(attentivenas.map_state_dict(net.space, theirs, ours, str(path)))
    net.eval()
    source = {"kind": kind, "file": Path(path).name, "sha256": sha256(path)}
    return net, {"source": source, "preprocessing": attentivenas.preprocessing(kind)}


def peer_arch(kind: str, cfg: dict[str, Any]) -> Arch:
    """Our Arch of a child config in the format of `kind`'s authors."""
    check_kind(kind)
    return attentivenas.peer_arch(cfg)
