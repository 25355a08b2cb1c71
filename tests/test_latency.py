"""Latency lookup tables: which layers a space has, how one is timed, and the table's
sum-of-layers prediction, save/load and lazy growth."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from predictors.latency import (
    NETWORK,
    SCALE,
    LatencyTable,
    MissingEntryError,
    build_latency_table,
    covering_archs,
    layer_keys,
    measure_layers_ms,
    read_table,
    save_table,
)
from supernet import load_space
from supernet.spaces.plan import child_plan
from supernet.spaces.space import space_from_dict

TINY = load_space("tiny")

# Small enough to enumerate every child, with the options that change a block's shape:
# SE, "always" shortcuts (pool and 1x1 conv), an mbv3 head, two resolutions.
SMALL = space_from_dict({
    "name": "small", "resolutions": [16, 20], "num_classes": 3,
    "stem": {"widths": [8, 16], "stride": 2},
    "stages": [
        {"widths": [8, 16], "depths": [1, 2], "kernels": [3, 5], "expands": [1, 3], "stride": 1},
        {"widths": [16, 24], "depths": [1, 2], "kernels": [3], "expands": [2, 4], "stride": 2,
         "se": True, "act": "hswish"},
    ],
    "head": {"widths": [32, 48], "style": "mbv3", "expand": 2},
    "block": {"shortcut": "always"},
})


def _all_children(space):
    ch = space.choices()
    return [space.decode(v) for v in itertools.product(*(range(len(o)) for _, o in ch))]


def test_layer_keys_follow_the_plan():
    arch = TINY.max_arch()
    keys = layer_keys(TINY, arch)
    assert len(keys) == len(child_plan(TINY, arch).blocks) + 2
    assert keys[0].startswith("stem:") and keys[-1].startswith("head:")
    assert all(k.startswith("block:") for k in keys[1:-1])
    # two children that differ only in the head share every other entry
    other = TINY.decode(np.r_[TINY.encode(arch)[:-1], 0])
    assert layer_keys(TINY, other)[:-1] == keys[:-1] and layer_keys(TINY, other)[-1] != keys[-1]
    with pytest.raises(ValueError, match="head"):
        layer_keys(TINY, replace(arch, head=999))


def test_covering_archs_hold_every_layer_of_the_space_and_no_other():
    everything = {k for a in _all_children(SMALL) for k in layer_keys(SMALL, a)}
    covered = {k for a in covering_archs(SMALL) for k in layer_keys(SMALL, a)}
    assert covered == everything
    assert len(covering_archs(SMALL)) < len(_all_children(SMALL)) / 10
    only_16 = {k for a in covering_archs(SMALL, [16]) for k in layer_keys(SMALL, a)}
    assert only_16 == {k for a in _all_children(SMALL) if a.resolution == 16
                       for k in layer_keys(SMALL, a)}
    with pytest.raises(ValueError, match="subset"):
        covering_archs(SMALL, [17])


class _Tick(nn.Module):
    """Advances a fake clock by the next of its scripted durations (seconds) per call."""

    def __init__(self, clock: list[float], durations: list[float]):
        super().__init__()
        self.clock, self.durations = clock, iter(durations)

    def forward(self, x):
        self.clock[0] += next(self.durations)
        return x


def test_timing_skips_warm_up_and_takes_the_median_per_layer():
    clock = [0.0]
    slow_start = _Tick(clock, [9.0, 9.0, 0.001, 0.002, 0.003, 0.004, 0.5])
    steady = _Tick(clock, [0.010] * 7)
    ms = measure_layers_ms([slow_start, steady], torch.zeros(1), warmup=2, repeats=5,
                           timer=lambda: clock[0])
    assert ms == pytest.approx([3.0, 10.0])


@pytest.fixture(scope="module")
def lazy():
    """A table of just two children of `tiny`, quickly timed."""
    archs = [TINY.min_arch(), TINY.max_arch()]
    frame = build_latency_table(TINY, archs, warmup=2, repeats=15, calibration=2)
    return archs, frame


def test_each_layer_of_the_given_children_is_timed_once(lazy):
    archs, frame = lazy
    keys = {k for a in archs for k in layer_keys(TINY, a)}
    assert frame["key"].is_unique
    assert set(frame["key"]) == keys | {NETWORK}
    layers = frame[frame["kind"] != NETWORK]
    assert (layers["ms"] > 0).all()
    assert set(frame["kind"]) == {"stem", "block", "head", NETWORK}
    assert frame["batch_size"].eq(1).all() and frame["threads"].eq(1).all()


def test_prediction_is_the_sum_of_layer_entries_plus_the_constant(lazy):
    archs, frame = lazy
    table = LatencyTable(TINY, frame)
    ms = dict(zip(frame["key"], frame["ms"]))
    for a in archs:
        want = sum(ms[k] for k in layer_keys(TINY, a)) + ms[NETWORK]
        assert table.predict(a) == pytest.approx(want)
    # ~10x the MACs; layer entries only, as the constant (whole child minus its layers) is
    # at the mercy of other processes when timed with so few repeats
    small, large = (table.predict(a) - table.overhead_ms for a in archs)
    assert large > 1.5 * small


def test_missing_entries_are_named_then_added_lazily(lazy):
    archs, frame = lazy
    new = TINY.sample(np.random.default_rng(4))
    table = LatencyTable(TINY, frame)
    absent = table.missing([new])
    assert absent
    with pytest.raises(MissingEntryError, match="not measured"):
        table.predict(new)
    grown = build_latency_table(TINY, [new], warmup=1, repeats=2, existing=frame)
    assert set(grown["key"]) == set(frame["key"]) | set(absent)
    kept = grown.set_index("key").loc[frame["key"], "ms"]
    np.testing.assert_array_equal(kept.to_numpy(), frame["ms"].to_numpy())  # not re-timed
    assert LatencyTable(TINY, grown).predict(new) > 0
    with pytest.raises(ValueError, match="batch_size"):
        build_latency_table(TINY, [new], batch_size=2, existing=frame)


def test_csv_round_trip_is_atomic_and_checks_the_space(lazy, tmp_path):
    archs, frame = lazy
    path = tmp_path / "sub" / "lat.csv"
    save_table(frame, path)
    assert [p.name for p in path.parent.iterdir()] == ["lat.csv"]  # no temp file left
    table = LatencyTable.from_csv(TINY, path)
    assert table.predict(archs[1]) == pytest.approx(LatencyTable(TINY, frame).predict(archs[1]))
    with pytest.raises(ValueError, match="space"):
        LatencyTable(SMALL, read_table(path))
    with pytest.raises(ValueError, match="does not exist"):
        read_table(tmp_path / "none.csv")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="lacks columns"):
        read_table(tmp_path / "bad.csv")


def test_a_full_table_predicts_every_child_of_the_space():
    frame = build_latency_table(SMALL, warmup=0, repeats=1, calibration=1)
    table = LatencyTable(SMALL, frame)
    children = _all_children(SMALL)
    assert table.missing(children) == []
    assert all(np.isfinite(table.predict(a)) for a in children[::50])


# ---- tables of onnxruntime latency --------------------------------------------------------
@pytest.fixture(scope="module")
def ort_lazy():
    """An onnxruntime table of three children of `tiny` at 24 px, quickly timed."""
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(0)
    archs = [replace(TINY.min_arch(), resolution=24)] + [
        replace(TINY.sample(rng), resolution=24) for _ in range(2)]
    frame = build_latency_table(TINY, archs, resolutions=[24], warmup=3, repeats=20,
                                calibration=3, runtime="onnxruntime")
    return archs, frame


def test_an_onnxruntime_table_times_each_layer_once_and_says_so(ort_lazy):
    archs, frame = ort_lazy
    keys = {k for a in archs for k in layer_keys(TINY, a)}
    assert frame["key"].is_unique and set(frame["key"]) == keys | {NETWORK, SCALE}
    assert (frame[frame["kind"] != NETWORK]["ms"] > 0).all()
    assert frame["runtime"].eq("onnxruntime").all() and frame["threads"].eq(1).all()
    assert frame["device"].iloc[0] in ("cpu", "cuda")
    table = LatencyTable(TINY, frame, "onnxruntime")
    assert table.runtime == "onnxruntime" and 0 < table.scale < 5
    ms = dict(zip(frame["key"], frame["ms"]))
    for a in archs:  # the layers' sum, scaled, plus the constant
        want = ms[SCALE] * sum(ms[k] for k in layer_keys(TINY, a)) + ms[NETWORK]
        assert table.predict(a) == pytest.approx(want) and table.predict(a) > 0


def test_layer_onnx_is_the_layer(ort_lazy):
    from predictors.latency import _modules, layer_onnx
    from supernet import ElasticSupernet
    from supernet.nn.deploy import ort_session

    arch = ort_lazy[0][1]
    child = ElasticSupernet(TINY).eval().export(arch)
    x = torch.randn(2, 3, 24, 24)
    stem, block = _modules(child)[:2]
    h = stem(x)
    sess = ort_session(layer_onnx(block, (1, *h.shape[1:])))
    got = sess.run(None, {"input": h.detach().numpy()})[0]  # the batch size is free
    np.testing.assert_allclose(got, block(h).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_an_onnxruntime_table_predicts_measured_latency_loosely(ort_lazy):
    """Children of `tiny` run in a fraction of a millisecond in onnxruntime, where each
    layer's own session run and layout reorders weigh as much as its compute: a loose
    bound (the benchmark measures the accuracy on attentive-mbv3 and ofa-mbv3)."""
    from supernet import ElasticSupernet
    from supernet.nn.deploy import measure

    archs, frame = ort_lazy
    table = LatencyTable(TINY, frame, "onnxruntime")
    net = ElasticSupernet(TINY).eval()
    for a in archs:
        real = min(measure(net.export(a), 24, warmup=3, repeats=20).ms for _ in range(2))
        assert real / 4 < table.predict(a) < 4 * real


def test_torch_and_onnxruntime_tables_are_never_mixed(lazy, ort_lazy, tmp_path):
    archs, torch_frame = lazy
    _, ort_frame = ort_lazy
    assert set(torch_frame["runtime"]) == {"torch"}
    with pytest.raises(ValueError, match="runtime is .*'torch'.*expected 'onnxruntime'"):
        LatencyTable(TINY, torch_frame, "onnxruntime")
    with pytest.raises(ValueError, match="runtime is .*'onnxruntime'.*expected 'torch'"):
        LatencyTable(TINY, ort_frame, "torch")
    with pytest.raises(ValueError, match="runtime"):  # one frame, two runtimes
        LatencyTable(TINY, pd.concat([torch_frame, ort_frame], ignore_index=True))
    with pytest.raises(ValueError, match="runtime"):  # growing one with the other
        build_latency_table(TINY, [archs[0]], runtime="onnxruntime", existing=torch_frame)
    with pytest.raises(ValueError, match="runtime"):
        build_latency_table(TINY, [archs[0]], existing=ort_frame)
    with pytest.raises(ValueError, match="unknown"):
        build_latency_table(TINY, [archs[0]], runtime="tensorrt")
    # saved and read back, the runtime goes with the table
    save_table(ort_frame, tmp_path / "ort.csv")
    with pytest.raises(ValueError, match="runtime"):
        LatencyTable.from_csv(TINY, tmp_path / "ort.csv", "torch")
    assert LatencyTable.from_csv(TINY, tmp_path / "ort.csv").runtime == "onnxruntime"


def test_a_table_saved_before_the_runtime_column_reads_as_torch(lazy, tmp_path):
    _, frame = lazy
    frame.drop(columns=["runtime", "clock"]).to_csv(tmp_path / "old.csv", index=False)
    table = LatencyTable.from_csv(TINY, tmp_path / "old.csv", "torch")
    assert table.runtime == "torch" and set(table.frame["clock"]) == {"wall"}


def test_cpu_clock_is_one_thread_only():
    from predictors.latency import clock_timer

    assert clock_timer("wall", 4) is not None
    assert clock_timer("cpu", 1)() >= 0
    with pytest.raises(ValueError, match="one CPU thread"):
        clock_timer("cpu", 2)
    with pytest.raises(ValueError, match="one CPU thread"):
        build_latency_table(TINY, [TINY.min_arch()], threads=2, clock="cpu")
    with pytest.raises(ValueError, match="unknown"):
        clock_timer("tsc", 1)
