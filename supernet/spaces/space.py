"""Search spaces and child architectures: the one vocabulary of the toolkit.

A `SearchSpace` lists the choices (resolutions, stem, stages or layers, head); an `Arch`
is one child, frozen and hashable, with a string form, a dict form and an integer encoding.

Three families share it. Stage-wise (BigNAS): per stage a width, depth, kernel and expand
ratio, weights sliced from the largest. Layer-wise (SCARLET-NAS, FairNAS): per layer one
named block, `e<expand>k<kernel>[se]` or `skip`; each choice owns its weights, and a skip
is a learnable 1x1 conv + BN (ELS) unless the space says `els: false`. OFA (Once-for-All's
MobileNetV3): stages as stage-wise, but a kernel and an expand ratio per layer of a stage
(`StageArch` holds tuples, one entry per active layer), weights sliced as stage-wise.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ACTIVATIONS = ("relu", "relu6", "swish", "hswish")
SHORTCUTS = ("identity", "always")  # identity: residual only where shapes agree (MBv2)
HEADS = ("mbv2", "mbv3")
SE_SOURCES = ("input", "mid")
GATES = ("sigmoid", "hsigmoid")
FAMILIES = ("stagewise", "layerwise", "ofa")
SKIP = "skip"  # the layer-wise skip choice: ELS (1x1 conv + BN) or a pure skip
_OP_RE = re.compile(r"^e(\d+(?:\.\d+)?)k(\d+)(se)?$")
OP_FORMS = "'e<expand>k<kernel>' (an inverted bottleneck), 'e<expand>k<kernel>se' or 'skip'"


def op_shape(op: str) -> tuple[float, int, bool]:
    """(expand, kernel, se) of a layer-wise block choice such as `e6k7se`; ValueError for
    `skip` or a malformed name."""
    m = _OP_RE.match(str(op))
    if not m:
        raise ValueError(f"layer choice: {op!r} is malformed; expected {OP_FORMS}")
    return _num(float(m.group(1))), int(m.group(2)), bool(m.group(3))


def op_order(op: str) -> tuple[float, int, bool]:
    """Sort key of a layer choice from cheapest to most costly: skip, then by expand ratio,
    kernel, SE (the order of MACs within a layer)."""
    return (0, 0, False) if op == SKIP else op_shape(op)


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round `v` to a multiple of `divisor` without going below 90% of it (MobileNet rule)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _fmt(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class StageArch:
    """The choices of one stage of a child: output width, depth, kernel, expand ratio. In
    the OFA family `kernel` and `expand` are tuples with one entry per layer (`depth` long).
    """

    width: int
    depth: int
    kernel: int | tuple[int, ...]
    expand: float | tuple[float, ...]

    def __post_init__(self) -> None:
        k, e = self.kernel, self.expand
        if isinstance(k, (tuple, list)) != isinstance(e, (tuple, list)):
            raise ValueError(f"stage: kernel {k!r} and expand {e!r} must both be per layer "
                             "(sequences) or both single values")
        if isinstance(k, (tuple, list)) and isinstance(e, (tuple, list)):
            ks, es = tuple(int(v) for v in k), tuple(_num(float(v)) for v in e)
            if len(ks) != self.depth or len(es) != self.depth:
                raise ValueError(f"stage: depth {self.depth} needs {self.depth} per-layer "
                                 f"kernels and expand ratios, got {len(ks)} and {len(es)}")
            # lists become tuples so that the child stays hashable
            object.__setattr__(self, "kernel", ks)
            object.__setattr__(self, "expand", es)

    @property
    def per_layer(self) -> bool:
        """Whether kernel and expand are given per layer (OFA family)."""
        return isinstance(self.kernel, tuple)

    def layer(self, i: int) -> tuple[int, float]:
        """(kernel, expand) of layer `i` of the stage, in either form."""
        k, e = self.kernel, self.expand
        if isinstance(k, tuple) and isinstance(e, tuple):
            return k[i], e[i]
        if isinstance(k, tuple) or isinstance(e, tuple):  # __post_init__ rules this out
            raise ValueError(f"stage: kernel {k!r} and expand {e!r} mix forms")
        return k, e

    def __str__(self) -> str:
        if self.per_layer:  # depth = number of layers: w24_k3e3_k5e4
            return f"w{self.width}" + "".join(
                f"_k{k}e{_fmt(e)}" for k, e in map(self.layer, range(self.depth)))
        k, e = self.layer(0)
        return f"w{self.width}d{self.depth}k{k}e{_fmt(e)}"


@dataclass(frozen=True)
class Arch:
    """One child model: resolution, stem width, per-stage choices (stage-wise family) or
    per-layer choice names (layer-wise family; `stages` is then empty), head width."""

    resolution: int
    stem: int
    stages: tuple[StageArch, ...]
    head: int
    layers: tuple[str, ...] = ()

    def __str__(self) -> str:
        body = "-".join([str(s) for s in self.stages] + list(self.layers))
        return f"r{self.resolution}-s{self.stem}-{body}-h{self.head}"

    _STAGE_RE = re.compile(r"^w(\d+)d(\d+)k(\d+)e(\d+(?:\.\d+)?)$")
    _PER_LAYER_RE = re.compile(r"^w(\d+)((?:_k\d+e\d+(?:\.\d+)?)+)$")
    _LAYER_RE = re.compile(r"_k(\d+)e(\d+(?:\.\d+)?)")

    @classmethod
    def parse(cls, text: str) -> "Arch":
        """Parse the short string form: `r32-s16-w16d1k3e1-...-h128` (stage-wise),
        `r32-s16-e1k3-e6k7-skip-...-h256` (layer-wise) or `r224-s16-w24_k3e3_k7e6-...-h1280`
        (OFA: one `_k<kernel>e<expand>` per layer of a stage)."""
        parts = str(text).strip().split("-")
        if len(parts) < 4 or not re.fullmatch(r"r\d+", parts[0]) or not re.fullmatch(
            r"s\d+", parts[1]
        ) or not re.fullmatch(r"h\d+", parts[-1]):
            raise ValueError(
                f"arch string: {text!r} is malformed; expected "
                "'r<res>-s<stem>-w<width>d<depth>k<kernel>e<expand>-...-h<head>', per "
                "layer (OFA) 'w<width>_k<kernel>e<expand>_k<kernel>e<expand>...' per stage, "
                f"or layer-wise 'r<res>-s<stem>-<choice>-...-h<head>' with each choice "
                f"{OP_FORMS}"
            )
        if all(p == SKIP or _OP_RE.match(p) for p in parts[2:-1]):
            layers = tuple(p if p == SKIP else _op_name(*op_shape(p)) for p in parts[2:-1])
            return cls(int(parts[0][1:]), int(parts[1][1:]), (), int(parts[-1][1:]), layers)
        stages = []
        for i, p in enumerate(parts[2:-1]):
            per = cls._PER_LAYER_RE.match(p)
            if per:
                ke = cls._LAYER_RE.findall(per.group(2))
                stages.append(StageArch(int(per.group(1)), len(ke), tuple(int(k) for k, _ in ke),
                                        tuple(float(e) for _, e in ke)))
                continue
            m = cls._STAGE_RE.match(p)
            if not m:
                raise ValueError(
                    f"arch string: stage {i} {p!r} is malformed; expected "
                    "'w<width>d<depth>k<kernel>e<expand>' or, per layer (OFA), "
                    "'w<width>_k<kernel>e<expand>_k<kernel>e<expand>...'"
                )
            e = float(m.group(4))
            stages.append(
                StageArch(int(m.group(1)), int(m.group(2)), int(m.group(3)), _num(e))
            )
        return cls(int(parts[0][1:]), int(parts[1][1:]), tuple(stages), int(parts[-1][1:]))

    def to_dict(self) -> dict[str, Any]:
        """The dict form: resolution, stem, stages (width/depth/kernel/expand), head; a
        layer-wise child has `layers` (choice names) in place of `stages`."""
        if self.layers:
            return {"resolution": self.resolution, "stem": self.stem,
                    "layers": list(self.layers), "head": self.head}
        return {
            "resolution": self.resolution,
            "stem": self.stem,
            "stages": [
                {"width": s.width, "depth": s.depth, "kernel": _plain(s.kernel),
                 "expand": _plain(s.expand)}
                for s in self.stages
            ],
            "head": self.head,
        }


def _stage_choice(kernel: Any, expand: Any) -> tuple[Any, Any]:
    """(kernel, expand) of a stage dict: lists stay per layer (OFA), single values become
    an int and a number."""
    if isinstance(kernel, (list, tuple)) or isinstance(expand, (list, tuple)):
        return tuple(kernel), tuple(expand)
    return int(kernel), _num(float(expand))


def _plain(v: Any) -> Any:
    """A per-layer tuple as a list (YAML/JSON friendly); a single value as it is."""
    return list(v) if isinstance(v, tuple) else v


def _num(x: float) -> float:
    """Keep integral expand ratios as ints so 6 and 6.0 print and compare alike."""
    return int(x) if float(x).is_integer() else float(x)


def _op_name(expand: float, kernel: int, se: bool) -> str:
    """The canonical name of a block choice (`e6k7`, `e3k5se`)."""
    return f"e{_fmt(expand)}k{kernel}" + ("se" if se else "")


@dataclass(frozen=True)
class StageSpec:
    """The choices of one stage and its fixed properties."""

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    expands: tuple[float, ...]
    stride: int = 1
    se: bool = False
    act: str = "relu"


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a layer-wise space: its output width, stride, and block choices."""

    width: int
    stride: int
    ops: tuple[str, ...]
    act: str = "relu"


@dataclass(frozen=True)
class SearchSpace:
    """All choices of a MobileNet-style supernet, plus its fixed block options: stage-wise
    (`stages`, elastic) or layer-wise (`layers`, one block per choice; `stages` empty)."""

    name: str
    resolutions: tuple[int, ...]
    stem_widths: tuple[int, ...]
    stem_stride: int
    stages: tuple[StageSpec, ...]
    head_widths: tuple[int, ...]
    num_classes: int
    stem_act: str = "relu"
    head_act: str = "relu"
    head_style: str = "mbv2"  # mbv2: conv-bn-act to head width; mbv3: 6x expand + feature mix
    head_expand: int = 6  # mbv3 only: final expand ratio over the last stage width
    shortcut: str = "identity"
    se_source: str = "input"  # squeeze width from the block input (EfficientNet) or mid (MBv3)
    se_ratio: float = 0.25
    se_act: str = "swish"
    se_gate: str = "sigmoid"
    se_divisible: bool = False  # round the squeeze width with make_divisible (AttentiveNAS)
    dropout: float = 0.2
    zero_init_residual_bn: bool = True
    layers: tuple[LayerSpec, ...] = ()  # layer-wise family only
    els: bool = True  # layer-wise: skip = 1x1 conv + BN (ELS); False: a pure skip
    # layer-wise: the block choices of a layer slice one block's weights (largest expand,
    # kernel, SE), as OFA's elastic layers do; False: one block per choice (FairNAS)
    shared_choices: bool = True
    # Images are prepared (cropped) at this resolution, then resized to each child's
    # (BigNAS supplement C: 224 on ImageNet); 0 means the largest resolution.
    base_resolution: int = 0
    # OFA family: every layer of a stage chooses its own kernel and expand ratio
    per_layer: bool = False
    # OFA's elastic kernel: a smaller kernel is a learned linear map (one matrix per step
    # between consecutive kernel sizes of a stage) of the centre of the next larger one
    kernel_transform: bool = False
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if not self.base_resolution:
            object.__setattr__(self, "base_resolution", max(self.resolutions))

    @property
    def family(self) -> str:
        """'layerwise' (SCARLET-NAS: a block choice per layer), 'ofa' (stages with a kernel
        and expand ratio per layer) or 'stagewise' (BigNAS)."""
        if self.layers:
            return "layerwise"
        return "ofa" if self.per_layer else "stagewise"

    # ---- choices -------------------------------------------------------------
    def choices(self) -> list[tuple[str, tuple]]:
        """(gene name, allowed values) in encoding order."""
        out: list[tuple[str, tuple]] = [
            ("resolution", self.resolutions),
            ("stem", self.stem_widths),
        ]
        for i, spec in enumerate(self.layers):
            out.append((f"layer {i}", spec.ops))
        for i, s in enumerate(self.stages):
            out += [(f"stage {i} width", s.widths), (f"stage {i} depth", s.depths)]
            if self.per_layer:  # a gene per layer the stage can have; unused ones are ignored
                for j in range(max(s.depths)):
                    out += [(f"stage {i} layer {j} kernel", s.kernels),
                            (f"stage {i} layer {j} expand", s.expands)]
            else:
                out += [(f"stage {i} kernel", s.kernels), (f"stage {i} expand", s.expands)]
        out.append(("head", self.head_widths))
        return out

    def n_choices(self) -> np.ndarray:
        """Number of options of each gene, in encoding order."""
        return np.array([len(c) for _, c in self.choices()], dtype=np.int64)

    def size(self) -> int:
        """Number of distinct children (OFA: the genes of layers beyond a stage's depth
        change nothing, so a stage counts sum over depths d of (kernels x expands)^d)."""
        if not self.per_layer:
            return int(np.prod([len(c) for _, c in self.choices()], dtype=object))
        n = len(self.resolutions) * len(self.stem_widths) * len(self.head_widths)
        for s in self.stages:
            n *= len(s.widths) * sum((len(s.kernels) * len(s.expands)) ** d for d in s.depths)
        return n

    def gene_levels(self) -> list[tuple[str, list[int]]]:
        """Genes grouped for hierarchical mutation: ('global', [resolution, stem, head]),
        then one group per stage; layer-wise, a stage is a run of layers between width or
        stride changes (MobileNetV2's stages), its genes one per layer."""
        names = [name for name, _ in self.choices()]
        out = [("global", [names.index("resolution"), names.index("stem"),
                           names.index("head")])]
        for i in range(len(self.stages)):
            out.append((f"stage {i}", [g for g, n in enumerate(names)
                                       if n.startswith(f"stage {i} ")]))
        for i, spec in enumerate(self.layers):
            if i == 0 or spec.stride > 1 or spec.width != self.layers[i - 1].width:
                out.append((f"stage {len(out) - 1}", []))
            out[-1][1].append(names.index(f"layer {i}"))
        return out

    # ---- children ------------------------------------------------------------
    def decode(self, vector: Sequence[int] | np.ndarray) -> Arch:
        """Arch from an integer vector of choice indices."""
        ch = self.choices()
        vec = [int(v) for v in np.asarray(vector).ravel()]
        if len(vec) != len(ch):
            raise ValueError(
                f"encoding: length {len(vec)} does not match the space's {len(ch)} genes"
            )
        vals = []
        for (name, opts), v in zip(ch, vec):
            if not 0 <= v < len(opts):
                raise ValueError(
                    f"encoding {name}: index {v} out of range; allowed 0..{len(opts) - 1}"
                )
            vals.append(opts[v])
        if self.layers:
            return Arch(vals[0], vals[1], (), vals[-1], tuple(vals[2:-1]))
        if self.per_layer:
            per_layer, g = [], 2
            for spec in self.stages:
                w, d, n = vals[g], vals[g + 1], max(spec.depths)
                layers = vals[g + 2:g + 2 + 2 * n]
                per_layer.append(StageArch(w, d, tuple(layers[0:2 * d:2]),
                                           tuple(_num(e) for e in layers[1:2 * d:2])))
                g += 2 + 2 * n
            return Arch(vals[0], vals[1], tuple(per_layer), vals[-1])
        stages = tuple(
            StageArch(vals[2 + 4 * i], vals[3 + 4 * i], vals[4 + 4 * i], _num(vals[5 + 4 * i]))
            for i in range(len(self.stages))
        )
        return Arch(vals[0], vals[1], stages, vals[-1])

    def encode(self, arch: Arch) -> np.ndarray:
        """Integer vector of choice indices of `arch`."""
        self.validate(arch)
        vals = self._values(arch)
        return np.array(
            [opts.index(v) for (_, opts), v in zip(self.choices(), vals)], dtype=np.int64
        )

    def _values(self, arch: Arch) -> list:
        if self.layers:
            return [arch.resolution, arch.stem, *arch.layers, arch.head]
        vals: list = [arch.resolution, arch.stem]
        for spec, s in zip(self.stages, arch.stages):
            vals += [s.width, s.depth]
            if self.per_layer:  # layers past the depth take the first choice (ignored)
                for j in range(max(spec.depths)):
                    vals += list(s.layer(j)) if j < s.depth else [spec.kernels[0],
                                                                   spec.expands[0]]
            else:
                vals += [s.kernel, s.expand]
        return vals + [arch.head]

    def validate(self, arch: Arch) -> Arch:
        """Raise ValueError naming the field, the bad value and the allowed values."""
        if not isinstance(arch, Arch):
            raise ValueError(f"arch: expected an Arch, got {type(arch).__name__}")
        if self.layers or arch.layers:
            if not self.layers or arch.stages:
                mine, other = ("layer-wise", "stage-wise") if arch.layers else \
                    ("stage-wise", "layer-wise")
                raise ValueError(f"arch: {arch} is {mine}, space {self.name!r} is {other}")
            if len(arch.layers) != len(self.layers):
                raise ValueError(
                    f"layers: {len(arch.layers)} given, space {self.name!r} has "
                    f"{len(self.layers)}; layer choices {self._layer_summary()}")
        elif len(arch.stages) != len(self.stages):
            raise ValueError(
                f"stages: {len(arch.stages)} given, space {self.name!r} has {len(self.stages)}"
            )
        for i, (spec, s) in enumerate(zip(self.stages, arch.stages)):
            if s.per_layer != self.per_layer:
                want = ("a kernel and expand ratio per layer, e.g. 'w24_k3e3_k5e4'"
                        if self.per_layer else "one kernel and expand ratio, e.g. 'w24d2k3e4'")
                raise ValueError(f"stage {i}: {str(s)!r} does not fit space {self.name!r} "
                                 f"({self.family}), which takes {want}")
            if s.per_layer and s.depth not in spec.depths:  # before its layers are read
                raise ValueError(f"stage {i} depth: {s.depth!r} is not allowed in space "
                                 f"{self.name!r}; allowed {list(spec.depths)}")
        for (name, opts), v in zip(self.choices(), self._values(arch)):
            if v not in opts:
                raise ValueError(
                    f"{name}: {v!r} is not allowed in space {self.name!r}; allowed {list(opts)}"
                )
        return arch

    def _layer_summary(self) -> str:
        """The allowed choices of each layer, runs of equal layers folded: for messages."""
        runs: list[list] = []
        for i, spec in enumerate(self.layers):
            if runs and runs[-1][2] == spec.ops:
                runs[-1][1] = i
            else:
                runs.append([i, i, spec.ops])
        return "; ".join(f"{a}" + (f"-{b}" if b > a else "") + f": {list(ops)}"
                         for a, b, ops in runs)

    def arch_from_dict(self, d: dict) -> Arch:
        """Arch from the dict form (see `Arch.to_dict`), validated."""
        if isinstance(d, dict) and "layers" in d:
            try:
                arch = Arch(int(d["resolution"]), int(d["stem"]), (), int(d["head"]),
                            tuple(str(x) for x in d["layers"]))
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(
                    f"arch dict: malformed ({e!r}); expected keys resolution, stem, head and "
                    "layers: [choice, ...]") from None
            return self.validate(arch)
        try:
            stages = tuple(
                StageArch(int(s["width"]), int(s["depth"]), *_stage_choice(s["kernel"],
                                                                          s["expand"]))
                for s in d["stages"]
            )
            arch = Arch(int(d["resolution"]), int(d["stem"]), stages, int(d["head"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"arch dict: malformed ({e!r}); expected keys resolution, stem, head and "
                "stages: [{width, depth, kernel, expand}, ...] (OFA: kernel and expand as "
                "lists, one value per layer)"
            ) from None
        return self.validate(arch)

    def parse(self, text: str) -> Arch:
        """Arch from its string form, validated against this space."""
        return self.validate(Arch.parse(text))

    def min_arch(self) -> Arch:
        """The smallest child: the first choice of every gene at the lowest resolution
        (layer-wise: the cheapest choice of every layer, skip where allowed)."""
        if self.layers:
            return self._extreme(min)
        return self.decode([0] * len(self.choices()))

    def max_arch(self) -> Arch:
        """The largest child: the last choice of every gene (layer-wise: the costliest
        choice of every layer, e.g. e6k7)."""
        if self.layers:
            return self._extreme(max)
        return self.decode(self.n_choices() - 1)

    def _extreme(self, pick) -> Arch:
        ends = 0 if pick is min else -1
        return Arch(self.resolutions[ends], self.stem_widths[ends], (), self.head_widths[ends],
                    tuple(pick(s.ops, key=op_order) for s in self.layers))

    def sample(self, rng: np.random.Generator) -> Arch:
        """A uniformly random child."""
        return self.decode([int(rng.integers(n)) for n in self.n_choices()])

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (YAML/JSON/checkpoint friendly) that `space_from_dict` reads back."""
        if self.layers:
            return {
                "name": self.name, "family": "layerwise",
                "resolutions": list(self.resolutions),
                "base_resolution": self.base_resolution,
                "stem": {"widths": list(self.stem_widths), "stride": self.stem_stride,
                         "act": self.stem_act},
                "layers": [{"width": s.width, "stride": s.stride, "ops": list(s.ops),
                            "act": s.act} for s in self.layers],
                "head": {"widths": list(self.head_widths), "style": self.head_style,
                         "expand": self.head_expand, "act": self.head_act,
                         "dropout": self.dropout},
                "num_classes": self.num_classes,
                "block": {"els": self.els, "shared_choices": self.shared_choices,
                          "se_source": self.se_source,
                          "se_ratio": self.se_ratio, "se_act": self.se_act,
                          "se_gate": self.se_gate, "se_divisible": self.se_divisible,
                          "zero_init_residual_bn": self.zero_init_residual_bn},
            }
        d: dict[str, Any] = {
            "name": self.name,
            **({"family": self.family} if self.per_layer else {}),
            "resolutions": list(self.resolutions),
            "base_resolution": self.base_resolution,
            "stem": {"widths": list(self.stem_widths), "stride": self.stem_stride,
                     "act": self.stem_act},
            "stages": [
                {"widths": list(s.widths), "depths": list(s.depths), "kernels": list(s.kernels),
                 "expands": list(s.expands), "stride": s.stride, "se": s.se, "act": s.act}
                for s in self.stages
            ],
            "head": {"widths": list(self.head_widths), "style": self.head_style,
                     "expand": self.head_expand, "act": self.head_act,
                     "dropout": self.dropout},
            "num_classes": self.num_classes,
            "block": {"shortcut": self.shortcut, "se_source": self.se_source,
                      "se_ratio": self.se_ratio, "se_act": self.se_act,
                      "se_gate": self.se_gate, "se_divisible": self.se_divisible,
                      "zero_init_residual_bn": self.zero_init_residual_bn},
        }
        if self.kernel_transform:  # written only when set: other spaces' dicts unchanged
            d["block"]["kernel_transform"] = True
        return d


def _tuple(d: dict, key: str, where: str, typ=int) -> tuple:
    if key not in d:
        raise ValueError(f"space {where}: missing field {key!r}")
    v = d[key]
    if not isinstance(v, (list, tuple)):
        v = [v]
    if not v:
        raise ValueError(f"space {where}.{key}: empty list; give at least one choice")
    try:
        vals = tuple(_num(float(x)) if typ is float else typ(x) for x in v)
    except (TypeError, ValueError):
        raise ValueError(f"space {where}.{key}: {v!r} is not a list of numbers") from None
    if any(x <= 0 for x in vals):
        raise ValueError(f"space {where}.{key}: {list(vals)} must all be positive")
    return tuple(sorted(set(vals)))


def _choice(value: Any, allowed: tuple, where: str) -> Any:
    if value not in allowed:
        raise ValueError(f"space {where}: {value!r} is not one of {list(allowed)}")
    return value


def _base(d: dict) -> int:
    base = d.get("base_resolution", 0)
    if not isinstance(base, int) or isinstance(base, bool) or base < 0:
        raise ValueError(f"space base_resolution: {base!r} is not a positive integer "
                         "(the resolution images are cropped at; omit it for the largest)")
    return base


def space_from_dict(d: dict) -> SearchSpace:
    """Build and check a SearchSpace from its dict (YAML) form."""
    if not isinstance(d, dict):
        raise ValueError(f"space: expected a mapping, got {type(d).__name__}")
    family = d.get("family", "layerwise" if "layers" in d else "stagewise")
    _choice(family, FAMILIES, "family")
    body = "layers" if family == "layerwise" else "stages"
    for key in ("resolutions", "stem", body, "head", "num_classes"):
        if key not in d:
            raise ValueError(f"space: missing field {key!r}")
    stem, head, block = d["stem"], d["head"], d.get("block", {}) or {}
    if not isinstance(d[body], list) or not d[body]:
        raise ValueError(f"space {body}: expected a non-empty list of {body}")
    stages, layers = [], []
    if family == "layerwise":
        layers = _layers(d, stem, bool(block.get("els", True)))
        if block.get("shortcut", "identity") != "identity":
            raise ValueError("space block.shortcut: a layer-wise space has MobileNetV2 "
                             "residuals only ('identity'), not "
                             f"{block.get('shortcut')!r}")
        if block.get("kernel_transform"):
            raise ValueError("space block.kernel_transform: for stage-based spaces "
                             "(stagewise, ofa) only; a layer-wise space slices kernels plainly")
    for i, s in enumerate(d.get("stages", []) if family != "layerwise" else []):
        where = f"stages[{i}]"
        if not isinstance(s, dict):
            raise ValueError(f"space {where}: expected a mapping")
        stages.append(StageSpec(
            widths=_tuple(s, "widths", where),
            depths=_tuple(s, "depths", where),
            kernels=_tuple(s, "kernels", where),
            expands=_tuple(s, "expands", where, float),
            stride=int(s.get("stride", 1)),
            se=bool(s.get("se", False)),
            act=_choice(s.get("act", "relu"), ACTIVATIONS, f"{where}.act"),
        ))
        if any(k % 2 == 0 for k in stages[-1].kernels):
            raise ValueError(f"space {where}.kernels: {list(stages[-1].kernels)} must be odd")
    return SearchSpace(
        name=str(d.get("name", "custom")),
        resolutions=_tuple(d, "resolutions", "top"),
        base_resolution=_base(d),
        stem_widths=_tuple(stem, "widths", "stem"),
        stem_stride=int(stem.get("stride", 2)),
        stem_act=_choice(stem.get("act", "relu"), ACTIVATIONS, "stem.act"),
        stages=tuple(stages),
        head_widths=_tuple(head, "widths", "head"),
        head_style=_choice(head.get("style", "mbv2"), HEADS, "head.style"),
        head_expand=int(head.get("expand", 6)),
        head_act=_choice(head.get("act", "relu"), ACTIVATIONS, "head.act"),
        dropout=float(head.get("dropout", 0.2)),
        num_classes=int(d["num_classes"]),
        shortcut=_choice(block.get("shortcut", "identity"), SHORTCUTS, "block.shortcut"),
        se_source=_choice(block.get("se_source", "input"), SE_SOURCES, "block.se_source"),
        se_ratio=float(block.get("se_ratio", 0.25)),
        se_act=_choice(block.get("se_act", "swish"), ACTIVATIONS, "block.se_act"),
        se_gate=_choice(block.get("se_gate", "sigmoid"), GATES, "block.se_gate"),
        se_divisible=bool(block.get("se_divisible", False)),
        zero_init_residual_bn=bool(block.get("zero_init_residual_bn", True)),
        layers=tuple(layers),
        els=bool(block.get("els", True)),
        shared_choices=bool(block.get("shared_choices", True)),
        per_layer=family == "ofa",
        kernel_transform=bool(block.get("kernel_transform", False)),
    )


def _layers(d: dict, stem: dict, els: bool) -> list[LayerSpec]:
    """The checked layers of a layer-wise space; `ops` at the top is every layer's default."""
    default = d.get("ops")
    if d.get("stages"):
        raise ValueError("space: a layer-wise space has `layers`, not `stages`")
    c = max(_tuple(stem, "widths", "stem"))
    out = []
    for i, s in enumerate(d["layers"]):
        where = f"layers[{i}]"
        if not isinstance(s, dict):
            raise ValueError(f"space {where}: expected a mapping")
        ops = s.get("ops", default)
        if not isinstance(ops, list) or not ops:
            raise ValueError(f"space {where}.ops: expected a non-empty list of choices "
                             f"({OP_FORMS}), here or as the space's `ops`")
        names = []
        for op in ops:
            if str(op) != SKIP:
                e, k, se = op_shape(str(op))
                if k % 2 == 0 or e <= 0:
                    raise ValueError(f"space {where}.ops: {op!r} needs an odd kernel and a "
                                     "positive expand ratio")
                op = _op_name(e, k, se)
            if op in names:
                raise ValueError(f"space {where}.ops: {op!r} is listed twice")
            names.append(str(op))
        spec = LayerSpec(width=_tuple(s, "width", where)[0], stride=int(s.get("stride", 1)),
                         ops=tuple(names),
                         act=_choice(s.get("act", "relu"), ACTIVATIONS, f"{where}.act"))
        if SKIP in spec.ops and not els and spec.width < c:
            raise ValueError(f"space {where}: a pure skip (els: false) cannot narrow "
                             f"{c} to {spec.width} channels; use ELS or drop 'skip' here")
        out.append(spec)
        c = spec.width
    return out


def with_els(space: SearchSpace, els: bool) -> SearchSpace:
    """`space` with its layer-wise skip choices as ELS (True) or pure skips (False)."""
    if space.els == els:
        return space
    if space.family != "layerwise":
        raise ValueError(f"els: a pure skip (--no-els) needs a layer-wise space; "
                         f"{space.name!r} is stage-wise")
    return space_from_dict({**space.to_dict(), "block": {**space.to_dict()["block"],
                                                         "els": els}})


def builtin_spaces() -> list[str]:
    """Names of the spaces shipped with the package."""
    files = resources.files("supernet").joinpath("spaces").iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".yaml"))


def load_space(name_or_path: str | Path | SearchSpace) -> SearchSpace:
    """A built-in space by name, or a user's YAML file by path."""
    if isinstance(name_or_path, SearchSpace):
        return name_or_path
    text = str(name_or_path)
    if text in builtin_spaces():
        raw = resources.files("supernet").joinpath("spaces").joinpath(f"{text}.yaml").read_text()
    else:
        p = Path(text)
        if not (p.suffix in (".yaml", ".yml") and p.is_file()):
            raise ValueError(
                f"space: {text!r} is neither a built-in space {builtin_spaces()} "
                "nor an existing .yaml file"
            )
        raw = p.read_text()
    try:
        d = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ValueError(f"space: {text!r} is not valid YAML ({str(e).splitlines()[0]})") from None
    return space_from_dict(d)
