"""Search spaces and Arch: round trips, schema, validation errors, built-in tables."""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import replace

import numpy as np
import pytest
import yaml

from supernet.spaces.cost import macs
from supernet.spaces.space import (
    Arch,
    SearchSpace,
    StageArch,
    builtin_spaces,
    load_space,
    make_divisible,
    space_from_dict,
)

# stage-wise spaces; the layer-wise family (scarlet-*) has its own tests: test_layerwise.py
SPACES = [n for n in builtin_spaces() if load_space(n).family == "stagewise"]


def children(space: SearchSpace, n: int = 30, seed: int = 0) -> list[Arch]:
    """Min, max and `n` seeded random children of `space`."""
    rng = np.random.default_rng(seed)
    return [space.min_arch(), space.max_arch()] + [space.sample(rng) for _ in range(n)]


@pytest.fixture(params=SPACES)
def space(request) -> SearchSpace:
    return load_space(request.param)


def test_builtin_spaces_are_the_three_shipped() -> None:
    assert {"tiny", "bignas-mbv2", "attentive-mbv3"} <= set(SPACES)


# ---- round trips -----------------------------------------------------------------------


def test_string_dict_and_encoding_round_trip(space: SearchSpace) -> None:
    for a in children(space):
        assert Arch.parse(str(a)) == a
        assert space.parse(str(a)) == a
        assert space.arch_from_dict(a.to_dict()) == a
        assert space.arch_from_dict(json.loads(json.dumps(a.to_dict()))) == a
        vec = space.encode(a)
        assert vec.dtype == np.int64 and vec.shape == (len(space.choices()),)
        assert np.all((vec >= 0) & (vec < space.n_choices()))
        assert space.decode(vec) == a
        assert hash(Arch.parse(str(a))) == hash(a)


def test_min_and_max_take_first_and_last_choices(space: SearchSpace) -> None:
    assert np.array_equal(space.encode(space.min_arch()), np.zeros(len(space.choices())))
    assert np.array_equal(space.encode(space.max_arch()), space.n_choices() - 1)
    assert space.min_arch().resolution == min(space.resolutions)
    assert space.max_arch().resolution == max(space.resolutions)
    assert macs(space, space.min_arch()) < macs(space, space.max_arch())


def test_dict_schema_is_exact(space: SearchSpace) -> None:
    for a in children(space, n=5):
        d = a.to_dict()
        assert set(d) == {"resolution", "stem", "stages", "head"}
        assert isinstance(d["stages"], list) and len(d["stages"]) == len(space.stages)
        for s in d["stages"]:
            assert set(s) == {"width", "depth", "kernel", "expand"}
        assert all(isinstance(d[k], int) for k in ("resolution", "stem", "head"))


def test_string_form_is_short_and_regular(space: SearchSpace) -> None:
    text = str(space.max_arch())
    assert re.fullmatch(r"r\d+-s\d+(-w\d+d\d+k\d+e\d+(\.\d+)?)+-h\d+", text), text
    assert len(text.split("-")) == len(space.stages) + 3


def test_integral_expand_prints_and_compares_alike() -> None:
    a = Arch(32, 16, (StageArch(16, 1, 3, 6.0),), 128)
    b = Arch(32, 16, (StageArch(16, 1, 3, 6),), 128)
    assert a.stages[0].expand == b.stages[0].expand and hash(a) == hash(b)
    assert Arch.parse(str(b)) == b and "e6-" in str(b)
    c = Arch.parse("r32-s16-w16d1k3e2.5-h128")
    assert c.stages[0].expand == 2.5 and str(c) == "r32-s16-w16d1k3e2.5-h128"


# ---- size and sampling -------------------------------------------------------------------


def test_size_is_product_of_choice_counts(space: SearchSpace) -> None:
    expected = math.prod(len(opts) for _, opts in space.choices())
    assert space.size() == expected == int(np.prod(space.n_choices(), dtype=object))
    assert len(space.choices()) == 3 + 4 * len(space.stages)


def test_sample_is_deterministic_per_seed(space: SearchSpace) -> None:
    a = [space.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng1, rng2 = np.random.default_rng(11), np.random.default_rng(11)
    assert [space.sample(rng1) for _ in range(20)] == [space.sample(rng2) for _ in range(20)]
    rng = np.random.default_rng(0)
    assert len({space.sample(rng) for _ in range(50)}) > 40  # not stuck on one child
    for a in children(space, n=10, seed=3):
        assert space.validate(a) is a


# ---- validation errors ---------------------------------------------------------------


def _with_stage(a: Arch, i: int, **change) -> Arch:
    stages = list(a.stages)
    stages[i] = replace(stages[i], **change)
    return replace(a, stages=tuple(stages))


def test_bad_kernel_names_field_value_and_allowed(space: SearchSpace) -> None:
    bad = _with_stage(space.max_arch(), 1, kernel=7)
    with pytest.raises(ValueError) as e:
        space.validate(bad)
    msg = str(e.value)
    assert "stage 1 kernel" in msg and "7" in msg
    assert str(list(space.stages[1].kernels)) in msg
    with pytest.raises(ValueError, match="stage 1 kernel"):
        space.encode(bad)
    with pytest.raises(ValueError, match="stage 1 kernel"):
        space.parse(str(bad))


def test_bad_resolution_width_and_head_are_named(space: SearchSpace) -> None:
    a = space.min_arch()
    cases = [
        (replace(a, resolution=17), "resolution", "17", list(space.resolutions)),
        (replace(a, stem=3), "stem", "3", list(space.stem_widths)),
        (replace(a, head=5), "head", "5", list(space.head_widths)),
        (_with_stage(a, 0, width=999), "stage 0 width", "999", list(space.stages[0].widths)),
        (_with_stage(a, 0, depth=99), "stage 0 depth", "99", list(space.stages[0].depths)),
        (_with_stage(a, 0, expand=9.5), "stage 0 expand", "9.5",
         list(space.stages[0].expands)),
    ]
    for arch, field, value, allowed in cases:
        with pytest.raises(ValueError) as e:
            space.validate(arch)
        msg = str(e.value)
        assert field in msg and value in msg and str(allowed) in msg, msg


def test_wrong_number_of_stages(space: SearchSpace) -> None:
    a = space.max_arch()
    short = replace(a, stages=a.stages[:-1])
    with pytest.raises(ValueError) as e:
        space.validate(short)
    msg = str(e.value)
    assert "stages" in msg and str(len(short.stages)) in msg and str(len(space.stages)) in msg
    with pytest.raises(ValueError, match="stages"):
        space.arch_from_dict(short.to_dict())
    with pytest.raises(ValueError):
        space.validate("not an arch")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", [
    "", "garbage", "r32-s16-h128-x", "r32-s16-w16d1k3-h128", "r32-s16-w16d1k3e1-h",
    "s16-r32-w16d1k3e1-h128", "r32-s16-w16d1k3e1",
])
def test_malformed_string(text: str) -> None:
    with pytest.raises(ValueError) as e:
        Arch.parse(text)
    assert "arch string" in str(e.value) and "malformed" in str(e.value)
    assert "w<width>d<depth>k<kernel>e<expand>" in str(e.value)


def test_malformed_dict(space: SearchSpace) -> None:
    good = space.max_arch().to_dict()
    bads = [
        {k: v for k, v in good.items() if k != "head"},
        {**good, "stages": [{"width": 16, "depth": 1, "kernel": 3}]},
        {**good, "resolution": "big"},
        {**good, "stages": None},
        {**good, "stages": ["w16d1k3e1"]},
    ]
    for bad in bads:
        with pytest.raises(ValueError) as e:
            space.arch_from_dict(bad)
        msg = str(e.value)
        assert "arch dict" in msg and "malformed" in msg
        assert "resolution" in msg and "stages" in msg and "expand" in msg


def test_bad_encoding(space: SearchSpace) -> None:
    n = space.n_choices()
    with pytest.raises(ValueError, match="length"):
        space.decode(list(n[:-1] * 0))
    vec = np.zeros(len(n), dtype=int)
    vec[0] = n[0]
    with pytest.raises(ValueError, match=f"resolution: index {n[0]} out of range"):
        space.decode(vec)


def test_unknown_space_name() -> None:
    with pytest.raises(ValueError) as e:
        load_space("no-such-space")
    msg = str(e.value)
    assert "no-such-space" in msg
    assert all(name in msg for name in SPACES)


# ---- user YAML -------------------------------------------------------------------------


def test_load_user_yaml(tmp_path) -> None:
    d = load_space("tiny").to_dict()
    d["name"] = "tiny-wide"
    d["resolutions"] = [32, 40]
    d["stages"][0]["widths"] = [16, 24, 32]
    path = tmp_path / "tiny-wide.yaml"
    path.write_text(yaml.safe_dump(d))
    space = load_space(path)
    assert space.name == "tiny-wide"
    assert space.resolutions == (32, 40) and space.stages[0].widths == (16, 24, 32)
    assert space.stages[1:] == load_space("tiny").stages[1:]
    assert space.size() == load_space("tiny").size()  # 3 -> 2 resolutions, 2 -> 3 widths
    a = space.max_arch()
    assert a.resolution == 40 and a.stages[0].width == 32
    assert space.arch_from_dict(a.to_dict()) == a
    assert load_space(str(path)) == space
    assert load_space(space) is space


def test_builtin_space_dict_round_trips(space: SearchSpace, tmp_path) -> None:
    path = tmp_path / "copy.yaml"
    path.write_text(yaml.safe_dump(space.to_dict()))
    assert load_space(path) == space


def test_bad_user_yaml(tmp_path) -> None:
    d = load_space("tiny").to_dict()
    d["stages"][1]["kernels"] = [3, 4]
    path = tmp_path / "even.yaml"
    path.write_text(yaml.safe_dump(d))
    with pytest.raises(ValueError, match=r"stages\[1\]\.kernels.*odd"):
        load_space(path)
    (tmp_path / "broken.yaml").write_text("stages: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_space(tmp_path / "broken.yaml")
    d = load_space("tiny").to_dict()
    del d["num_classes"]
    (tmp_path / "nc.yaml").write_text(yaml.safe_dump(d))
    with pytest.raises(ValueError, match="missing field 'num_classes'"):
        load_space(tmp_path / "nc.yaml")
    with pytest.raises(ValueError, match="neither a built-in space"):
        load_space(tmp_path / "absent.yaml")


# ---- the tiny space ---------------------------------------------------------------------


def test_tiny_space_requirements() -> None:
    s = load_space("tiny")
    assert s.stem_stride == 1
    assert s.resolutions == (24, 28, 32)
    assert s.num_classes == 10
    for spec in s.stages:
        assert len(spec.widths) > 1 and len(spec.depths) > 1
        assert spec.kernels == (3, 5)
    # At least four stages elastic in all of width, depth, kernel and expand ratio (the
    # first, MBConv1 stage keeps expand 1, as in both reference spaces).
    assert sum(len(spec.expands) > 1 for spec in s.stages) >= 4
    assert s.size() >= 1e5
    assert macs(s, s.max_arch()) <= 15e6
    assert macs(s, s.min_arch()) <= 2e6
    assert s.max_arch().resolution == 32 and s.min_arch().resolution == 24


# ---- the ImageNet spaces -------------------------------------------------------------------


@pytest.mark.parametrize("v", [0.5, 3, 7.9, 8, 10, 11.9, 12, 16.1, 20, 36, 37.5, 40.1, 100,
                               123.4, 150, 333, 1000])
def test_make_divisible_formula(v: float) -> None:
    expected = max(8, int(v + 4) // 8 * 8)
    if expected < 0.9 * v:
        expected += 8
    assert make_divisible(v) == expected
    assert make_divisible(v) % 8 == 0 and make_divisible(v) >= 0.9 * v


def test_make_divisible_known_values() -> None:
    assert [make_divisible(v) for v in (10, 12, 20, 24, 36, 60, 68)] == [16, 16, 24, 24, 40,
                                                                          64, 72]
    assert make_divisible(12, 4) == 12 and make_divisible(3, 4) == 4


def test_attentive_min_child_macs() -> None:
    s = load_space("attentive-mbv3")
    assert macs(s, s.min_arch()) == 203_389_568  # AttentiveNAS's "~203M" smallest child


def _table(space: SearchSpace) -> list[tuple]:
    return [(s.widths, s.depths, s.kernels, s.expands, s.stride, s.se) for s in space.stages]


def test_bignas_mbv2_table() -> None:
    s = load_space("bignas-mbv2")
    assert s.resolutions == (192, 224, 256, 288, 320)
    assert s.stem_widths == (32, 40) and s.stem_stride == 2
    r = lambda a, b: tuple(range(a, b + 1))  # noqa: E731
    assert [t[:5] for t in _table(s)] == [
        ((16, 24), r(1, 2), (3,), (1,), 1),
        ((24, 32), r(2, 3), (3,), (6,), 2),
        ((40, 48), r(2, 3), (3, 5), (6,), 2),
        ((80, 88), r(2, 4), (3, 5), (6,), 2),
        ((112, 120, 128), r(2, 6), (3, 5), (6,), 1),
        ((192, 200, 208, 216), r(2, 6), (3, 5), (6,), 2),
        ((320, 352), r(1, 2), (3, 5), (6,), 1),
    ]
    assert s.head_widths == (1280, 1408) and s.head_style == "mbv2"
    assert s.num_classes == 1000


def test_attentive_mbv3_table() -> None:
    s = load_space("attentive-mbv3")
    assert s.resolutions == (192, 224, 256, 288)
    assert s.stem_widths == (16, 24) and s.stem_stride == 2
    r = lambda a, b: tuple(range(a, b + 1))  # noqa: E731
    e = (4, 5, 6)
    assert _table(s) == [
        ((16, 24), r(1, 2), (3, 5), (1,), 1, False),
        ((24, 32), r(3, 5), (3, 5), e, 2, False),
        ((32, 40), r(3, 6), (3, 5), e, 2, True),
        ((64, 72), r(3, 6), (3, 5), e, 2, False),
        ((112, 120, 128), r(3, 8), (3, 5), e, 1, True),
        ((192, 200, 208, 216), r(3, 8), (3, 5), (6,), 2, True),
        ((216, 224), r(1, 2), (3, 5), (6,), 1, True),
    ]
    assert s.head_widths == (1792, 1984) and s.head_style == "mbv3"
    assert s.num_classes == 1000 and s.shortcut == "always"


# ---- the OFA family: a kernel and expand ratio per layer ------------------------------------

OFA_SPACES = [n for n in builtin_spaces() if load_space(n).family == "ofa"]


@pytest.fixture(params=OFA_SPACES)
def ofa(request) -> SearchSpace:
    return load_space(request.param)


def test_ofa_spaces_are_shipped() -> None:
    assert OFA_SPACES == ["ofa-mbv3-w10", "ofa-mbv3-w12"]
    for name in OFA_SPACES:
        s = load_space(name)
        assert s.per_layer and s.kernel_transform and not s.layers
        assert [len(st.depths) for st in s.stages] == [1, 3, 3, 3, 3, 3]


def test_ofa_round_trips(ofa: SearchSpace) -> None:
    for a in children(ofa):
        assert all(s.per_layer and len(s.kernel) == s.depth for s in a.stages)
        assert Arch.parse(str(a)) == a and hash(Arch.parse(str(a))) == hash(a)
        assert ofa.parse(str(a)) == a
        assert ofa.arch_from_dict(json.loads(json.dumps(a.to_dict()))) == a
        vec = ofa.encode(a)
        assert vec.shape == (len(ofa.choices()),) and ofa.decode(vec) == a


def test_ofa_string_and_dict_forms(ofa: SearchSpace) -> None:
    a = ofa.min_arch()
    text = str(ofa.max_arch())
    assert re.fullmatch(r"r\d+-s\d+(-w\d+(_k\d+e\d+)+)+-h\d+", text), text
    assert "-w24_k3e3_k3e3-" in str(a) or "-w32_k3e3_k3e3-" in str(a)
    d = ofa.max_arch().to_dict()
    assert d["stages"][1] == {"width": d["stages"][1]["width"], "depth": 4,
                              "kernel": [7, 7, 7, 7], "expand": [6, 6, 6, 6]}
    b = Arch.parse("r128-s16-w16_k3e1-w24_k3e3_k5e4.5-h1280")
    assert b.stages[1] == StageArch(24, 2, (3, 5), (3, 4.5))
    assert str(b) == "r128-s16-w16_k3e1-w24_k3e3_k5e4.5-h1280"


def test_ofa_min_max_and_encoding(ofa: SearchSpace) -> None:
    assert np.array_equal(ofa.encode(ofa.min_arch()), np.zeros(len(ofa.choices())))
    assert np.array_equal(ofa.encode(ofa.max_arch()), ofa.n_choices() - 1)
    lo, hi = ofa.min_arch(), ofa.max_arch()
    assert [s.depth for s in lo.stages[1:]] == [2] * 5
    assert [s.depth for s in hi.stages[1:]] == [4] * 5
    assert set(lo.stages[3].kernel) == {3} and set(hi.stages[3].expand) == {6}
    names = [n for n, _ in ofa.choices()]
    assert names[6:12] == ["stage 1 width", "stage 1 depth", "stage 1 layer 0 kernel",
                           "stage 1 layer 0 expand", "stage 1 layer 1 kernel",
                           "stage 1 layer 1 expand"]
    levels = ofa.gene_levels()
    assert sorted(g for _, genes in levels for g in genes) == list(range(len(names)))
    assert [n for n, _ in levels] == ["global"] + [f"stage {i}" for i in range(6)]


def test_ofa_genes_past_the_depth_are_ignored(ofa: SearchSpace) -> None:
    vec = np.zeros(len(ofa.choices()), dtype=int)
    names = [n for n, _ in ofa.choices()]
    other = vec.copy()
    other[names.index("stage 2 layer 3 kernel")] = 2  # depth 2: layer 3 does not run
    assert ofa.decode(vec) == ofa.decode(other)
    other[names.index("stage 2 depth")] = 2
    assert ofa.decode(other).stages[2].kernel == (3, 3, 3, 7)


def test_ofa_size_counts_distinct_children() -> None:
    d = load_space("ofa-mbv3-w10").to_dict()
    d["resolutions"] = [128, 160]
    d["stages"] = [{**d["stages"][1], "depths": [1, 2], "kernels": [3, 5], "expands": [3]},
                   {**d["stages"][2], "depths": [1, 2], "kernels": [3, 7], "expands": [3, 6]}]
    small = space_from_dict(d)
    everything = {small.decode(v) for v in itertools.product(
        *[range(n) for n in small.n_choices()])}
    assert small.size() == len(everything) == 2 * (2 + 4) * (4 + 16)
    assert load_space("ofa-mbv3-w10").size() == 25 * (9 ** 2 + 9 ** 3 + 9 ** 4) ** 5


def test_ofa_validation_errors(ofa: SearchSpace) -> None:
    a = ofa.max_arch()
    bad = _with_stage(a, 1, kernel=(7, 4, 7, 7))
    with pytest.raises(ValueError, match=r"stage 1 layer 1 kernel: 4 is not allowed .*"
                                         r"allowed \[3, 5, 7\]"):
        ofa.validate(bad)
    with pytest.raises(ValueError, match="stage 2 depth: 5 is not allowed"):
        ofa.validate(_with_stage(a, 2, depth=5, kernel=(7,) * 5, expand=(6,) * 5))
    with pytest.raises(ValueError, match=r"stage 1: 'w\d+d4k7e6' does not fit space .*"
                                         "a kernel and expand ratio per layer"):
        ofa.validate(_with_stage(a, 1, kernel=7, expand=6))
    tiny = load_space("tiny")
    per_layer = _with_stage(tiny.max_arch(), 0, kernel=(5, 5), expand=(1, 1))
    with pytest.raises(ValueError, match="does not fit space 'tiny' .*one kernel"):
        tiny.validate(per_layer)
    with pytest.raises(ValueError, match="depth 3 needs 3 per-layer kernels and expand "
                                         "ratios, got 2 and 2"):
        StageArch(24, 3, (3, 5), (3, 4))
    with pytest.raises(ValueError, match="must both be per layer"):
        StageArch(24, 2, (3, 5), 3)
    with pytest.raises(ValueError, match="arch string: stage 1 'w24_k3' is malformed"):
        Arch.parse("r128-s16-w16_k3e1-w24_k3-h1280")


def test_ofa_space_dict_round_trips_and_others_unchanged(ofa: SearchSpace, tmp_path) -> None:
    d = ofa.to_dict()
    assert d["family"] == "ofa" and d["block"]["kernel_transform"] is True
    path = tmp_path / "copy.yaml"
    path.write_text(yaml.safe_dump(d))
    assert load_space(path) == ofa
    for name in SPACES:  # the other spaces' dicts (and so their checkpoints) are as before
        other = load_space(name).to_dict()
        assert "family" not in other and "kernel_transform" not in other["block"]
    s1 = load_space("scarlet-s1").to_dict()
    s1["block"]["kernel_transform"] = True
    with pytest.raises(ValueError, match="kernel_transform: for stage-based spaces"):
        space_from_dict(s1)
