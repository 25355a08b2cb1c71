"""Once-for-All's MobileNetV3 supernets (`ofa_mbv3_d234_e346_k357_w1.0` and `_w1.2`): key
map onto `ofa-mbv3-w10` / `ofa-mbv3-w12`, child configs, the authors' preprocessing.

Their files spell one weight several ways, and OFA's own loader accepts them all: block
bodies named `mobile_inverted_conv` (the code that trained the released nets) or `conv`
(today's), and dynamic layers wrapping a plain one (`.conv.conv.weight`, `.bn.bn.*`,
`.linear.linear.*`) or not. Keys are compared in one canonical form: `conv`, unwrapped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..spaces.space import Arch, SearchSpace, StageArch, load_space
from .mapping import rename_state_dict

SPACES = {"ofa-mbv3-w10": "ofa-mbv3-w10", "ofa-mbv3-w12": "ofa-mbv3-w12"}  # kind -> space

# our module path -> theirs (canonical form)
_TOP = {
    "stem_conv": "first_conv.conv",
    "stem_bn": "first_conv.bn",
    "final_conv": "final_expand_layer.conv",
    "final_bn": "final_expand_layer.bn",
    "mix_conv": "feature_mix_layer.conv",
    "classifier.linear": "classifier.linear",
}
_BLOCK = {
    "expand_conv": "inverted_bottleneck.conv",
    "expand_bn": "inverted_bottleneck.bn",
    "dw_conv": "depth_conv.conv",
    "dw_bn": "depth_conv.bn",
    "se.reduce": "depth_conv.se.fc.reduce",
    "se.expand": "depth_conv.se.fc.expand",
    "project_conv": "point_linear.conv",
    "project_bn": "point_linear.bn",
}
_OURS_BLOCK = re.compile(r"^stages\.(\d+)\.(\d+)\.(.+)$")
_TRANSFORMS = "dw_conv.transforms"  # ours: dw_conv.transforms.7to5; theirs: 7to5_matrix
_LEGACY = re.compile(r"^(blocks\.\d+\.)mobile_inverted_conv\.")
_CURRENT = re.compile(r"^(blocks\.\d+\.)conv\.")
_WRAPPED = re.compile(r"\.(conv|bn|linear)\.\1\.(\w+)$")
# the layers of OFA's elastic blocks (all but the fixed first one) wrap a plain layer
_DYNAMIC = re.compile(r"^(blocks\.(?!0\.)\d+\.conv\.\w+\.(?:conv|bn))\.(weight|bias|running_mean"
                      r"|running_var|num_batches_tracked)$")

# The authors' evaluation (their RunManager and tutorial): short side resized bilinearly to
# ceil(r / 0.875), centre crop r, for each child's own resolution r (no resize inside the
# model); BN statistics recalibrated per child on 2000 training images in batches of 200
# (random-resized crops, flips, colour jitter), as the mean over batches of the batch mean
# and biased batch variance.
_PREPROCESSING: dict[str, Any] = {
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "resize": None,  # per child: ceil(resolution / crop_ratio)
    "crop": None,  # per child: its resolution
    "crop_at": "child",  # crop at each child's resolution, not once at a base resolution
    "crop_ratio": 0.875,
    "resize_interpolation": "bilinear",
    "child_resize_interpolation": None,
    "bn_calibration_images": 2000,
    "bn_calibration_batch_size": 200,
    "bn_calibration_variance": "biased",
    "bn_calibration_augment": "random-resized-crop 0.08-1, flip, "
                              "color jitter brightness 32/255 saturation 0.5",
}


def space_of(kind: str) -> str:
    """The name of our space that holds `kind`'s supernet."""
    return SPACES[kind]


def preprocessing(kind: str) -> dict[str, Any]:
    """The authors' evaluation preprocessing (plain types, checkpoint-safe)."""
    return dict(_PREPROCESSING)


def canonical(key: str) -> str:
    """Their key in one spelling: block body `conv`, dynamic wrappers removed."""
    return _WRAPPED.sub(r".\1.\2", _LEGACY.sub(r"\1conv.", key))


def _first_block(space: SearchSpace) -> list[int]:
    """Their block number of each stage's first layer (blocks count across stages)."""
    out, n = [], 0
    for s in space.stages:
        out.append(n)
        n += max(s.depths)
    return out


def their_key(space: SearchSpace, ours: str) -> str:
    """The canonical OFA key of our key `ours`."""
    module, leaf = ours.rsplit(".", 1)
    m = _OURS_BLOCK.match(module)
    if m is None:
        return f"{_TOP[module]}.{leaf}"
    stage, index, part = int(m.group(1)), int(m.group(2)), m.group(3)
    block = f"blocks.{_first_block(space)[stage] + index}.conv"
    if part == _TRANSFORMS:
        return f"{block}.{_BLOCK['dw_conv']}.{leaf}_matrix"
    return f"{block}.{_BLOCK[part]}.{leaf}"


def spell(key: str, legacy: bool) -> str:
    """OFA's own spelling of a canonical key (to name a missing one): wrapped where their
    elastic layers wrap a plain one, the block body `mobile_inverted_conv` if `legacy`."""
    m = _DYNAMIC.match(key)
    if m:  # ...depth_conv.conv.weight -> ...depth_conv.conv.conv.weight
        module, leaf = m.groups()
        key = f"{module}.{module.rsplit('.', 1)[1]}.{leaf}"
    return _CURRENT.sub(r"\1mobile_inverted_conv.", key) if legacy else key


def map_state_dict(space: SearchSpace, theirs: Mapping[str, torch.Tensor],
                   ours: Mapping[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """Their state dict renamed to our keys. ValueError naming the first bad key (in their
    file's order, then missing ones in ours) with the expected and found shapes."""
    expected = {their_key(space, k): k for k in ours}
    legacy = any(_LEGACY.match(k) for k in theirs)
    return rename_state_dict(theirs, expected, ours, where, "OFA MobileNetV3",
                             canonical=canonical, spell=lambda k: spell(k, legacy))


def _values(cfg: Mapping[str, Any], key: str, n: int) -> list:
    """`cfg[key]` as a list of `n` values; a single value is broadcast, as OFA does."""
    v = cfg[key]
    if isinstance(v, (list, tuple)):
        if len(v) != n:
            raise ValueError(f"peer config: {key} has {len(v)} values, expected {n}")
        return list(v)
    return [v] * n


def _pick(v: Any, allowed: Sequence, what: str) -> Any:
    """The allowed value equal to `v` (so 4.0 reads as 4); ValueError naming their field."""
    if isinstance(v, bool) or v not in allowed:
        raise ValueError(f"peer config: {what} = {v!r} is not allowed; allowed {list(allowed)}")
    return allowed[list(allowed).index(v)]


def peer_arch(cfg: Mapping[str, Any], space: SearchSpace | str) -> Arch:
    """Our Arch of an OFA child config {ks, e (one per elastic block), d (one per elastic
    stage), r (resolution, or a one-element list)}; ks and e of blocks past a stage's
    depth are ignored, as OFA ignores them. ValueError outside `space`."""
    space = load_space(space)
    elastic = space.stages[1:]  # stage 0 is OFA's fixed first block
    slots = [max(s.depths) for s in elastic]
    if not isinstance(cfg, Mapping):
        raise ValueError(f"peer config: expected a mapping with keys ks, e, d, r, got "
                         f"{type(cfg).__name__}")
    missing = [k for k in ("ks", "e", "d", "r") if k not in cfg]
    if missing:
        raise ValueError(f"peer config: missing {', '.join(missing)}; expected keys ks, e, "
                         "d and r (the resolution)")
    ks, es = _values(cfg, "ks", sum(slots)), _values(cfg, "e", sum(slots))
    ds = _values(cfg, "d", len(elastic))
    r = cfg["r"]
    if isinstance(r, (list, tuple)):
        if len(r) != 1:
            raise ValueError(f"peer config: r has {len(r)} values, expected one resolution")
        r = r[0]
    first = space.min_arch().stages[0]
    stages, off = [first], 0
    for i, (spec, n, d) in enumerate(zip(elastic, slots, ds)):
        d = _pick(d, spec.depths, f"d[{i}]")
        layers = range(off, off + d)
        kernel = tuple(_pick(ks[j], spec.kernels, f"ks[{j}]") for j in layers)
        expand = tuple(_pick(es[j], spec.expands, f"e[{j}]") for j in layers)
        stages.append(StageArch(spec.widths[-1], d, kernel, expand))
        off += n
    try:
        arch = Arch(int(r), space.stem_widths[-1], tuple(stages), space.head_widths[-1])
        return space.validate(arch)
    except (TypeError, ValueError) as e:
        raise ValueError(f"peer config: {e}") from None


__all__ = ["SPACES", "canonical", "map_state_dict", "peer_arch", "preprocessing", "space_of",
           "spell", "their_key"]
