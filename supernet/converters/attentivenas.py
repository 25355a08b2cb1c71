"""AttentiveNAS / AlphaNet (same supernet, same keys): key map onto `attentive-mbv3`,
child configs, and the authors' evaluation preprocessing."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from ..spaces.space import Arch, SearchSpace, StageArch, load_space
from .mapping import rename_state_dict

SPACE = "attentive-mbv3"

# our module path -> theirs; their dynamic layers wrap a plain one (conv.conv, bn.bn)
_TOP = {
    "stem_conv": "first_conv.conv.conv",
    "stem_bn": "first_conv.bn.bn",
    "final_conv": "last_conv.final_expand_layer.conv.conv",
    "final_bn": "last_conv.final_expand_layer.bn.bn",
    "mix_conv": "last_conv.feature_mix_layer.conv.conv",
    "classifier.linear": "classifier.linear.linear",
}
_MB = "mobile_inverted_conv"
_BLOCK = {
    "expand_conv": f"{_MB}.inverted_bottleneck.conv.conv",
    "expand_bn": f"{_MB}.inverted_bottleneck.bn.bn",
    "dw_conv": f"{_MB}.depth_conv.conv.conv",
    "dw_bn": f"{_MB}.depth_conv.bn.bn",
    "se.reduce": f"{_MB}.depth_conv.se.fc.reduce",
    "se.expand": f"{_MB}.depth_conv.se.fc.expand",
    "project_conv": f"{_MB}.point_linear.conv.conv",
    "project_bn": f"{_MB}.point_linear.bn.bn",
    "shortcut_conv": "shortcut.conv.conv",
}
_OURS_BLOCK = re.compile(r"^stages\.(\d+)\.(\d+)\.(.+)$")
# Every dynamic BN of theirs carries two affine-free BNs that the forward never uses.
_BN_TRACKING = re.compile(r"^(.+\.bn)\.bn_tracking\.[01]\."
                          r"(running_mean|running_var|num_batches_tracked)$")
_SHORTCUT = re.compile(r"^blocks\.(\d+)\.shortcut\.conv\.conv\.weight$")

# Eval recipe of the authors' configs (see the issue-15 notes): short side 256, centre
# crop 224 (ratio 0.875), the model resizes to each child's resolution (bicubic); BN
# statistics are recalibrated per child on 64 batches of 256 training images.
_PREPROCESSING: dict[str, Any] = {
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "resize": 256,
    "crop": 224,
    "crop_at": "base",  # crop once at 224, then resize to each child's resolution
    "crop_ratio": 0.875,
    "child_resize_interpolation": "bicubic",
    "bn_calibration_images": 64 * 256,
    "bn_calibration_batch_size": 256,
}
# AttentiveNAS's eval config asks for bilinear; AlphaNet's omits it (bicubic default).
_RESIZE = {"attentivenas": "bilinear", "alphanet": "bicubic"}


def space_of(kind: str) -> str:
    """The name of our space that holds `kind`'s supernet (both kinds share one)."""
    return SPACE


def preprocessing(kind: str) -> dict[str, Any]:
    """The authors' evaluation preprocessing for `kind` (plain types, checkpoint-safe)."""
    return {**_PREPROCESSING, "resize_interpolation": _RESIZE[kind]}


def their_key(space: SearchSpace, ours: str) -> str:
    """The AttentiveNAS state-dict key of our key `ours` (their blocks count across
    stages, each stage holding its largest depth)."""
    module, leaf = ours.rsplit(".", 1)
    m = _OURS_BLOCK.match(module)
    if m is None:
        return f"{_TOP[module]}.{leaf}"
    stage, index, part = int(m.group(1)), int(m.group(2)), m.group(3)
    first = sum(max(s.depths) for s in space.stages[:stage])
    return f"blocks.{first + index}.{_BLOCK[part]}.{leaf}"


def key_map(space: SearchSpace, ours: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """{their key: our key} for every entry of our state dict `ours`."""
    return {their_key(space, k): k for k in ours}


def skipped(space: SearchSpace, key: str, expected: Mapping[str, str]) -> bool:
    """Whether their `key` is deliberately dropped: the unused `bn_tracking` buffers of a
    BN we map, and the shortcut 1x1 convs of non-first blocks, which never run (inside a
    stage a block's input and output widths agree, so its shortcut is the identity)."""
    m = _BN_TRACKING.match(key)
    if m:
        return f"{m.group(1)}.bn.weight" in expected
    m = _SHORTCUT.match(key)
    if m:
        firsts, n = set(), 0
        for s in space.stages:
            firsts.add(n)
            n += max(s.depths)
        return int(m.group(1)) < n and int(m.group(1)) not in firsts
    return False


def map_state_dict(space: SearchSpace, theirs: Mapping[str, torch.Tensor],
                   ours: Mapping[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """Their state dict renamed to our keys. ValueError naming the first bad key (in their
    file's order, then missing ones in ours) with the expected and found shapes."""
    expected = key_map(space, ours)
    return rename_state_dict(theirs, expected, ours, where, "AttentiveNAS/AlphaNet",
                             skipped=lambda k: skipped(space, k, expected))


_CFG = {"width": 2, "depth": 0, "kernel_size": 0, "expand_ratio": 0}  # extra widths


def peer_arch(cfg: Mapping[str, Any], space: SearchSpace | str = SPACE) -> Arch:
    """Our Arch of an AttentiveNAS/AlphaNet child config {resolution, width (stem, 7
    stages, head), depth, kernel_size, expand_ratio (7 each)}; ValueError outside `space`."""
    space = load_space(space)
    n = len(space.stages)
    try:
        lists = {k: list(cfg[k]) for k in _CFG}
        res = int(cfg["resolution"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"peer config: malformed ({e!r}); expected keys resolution, "
                         f"{', '.join(_CFG)}") from None
    for k, extra in _CFG.items():
        if len(lists[k]) != n + extra:
            raise ValueError(f"peer config: {k} has {len(lists[k])} values, expected "
                             f"{n + extra}")
    w = lists["width"]
    stages = tuple(StageArch(int(w[i + 1]), int(d), int(k), e if e != int(e) else int(e))
                   for i, (d, k, e) in enumerate(zip(lists["depth"], lists["kernel_size"],
                                                     lists["expand_ratio"])))
    arch = Arch(res, int(w[0]), stages, int(w[-1]))
    try:
        return space.validate(arch)
    except ValueError as e:
        raise ValueError(f"peer config: {e}") from None
