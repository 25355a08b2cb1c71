"""A child in its deployment runtime: ONNX latency in onnxruntime (threads pinned, median
and spread), the torch runtime beside it, and onnxruntime's static int8 quantization."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from supernet import ElasticSupernet, load_space
from supernet.nn.deploy import (
    Timing,
    check_runtime,
    measure,
    onnx_bytes,
    ort_scores,
    quantize_int8,
)

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def child():
    torch.manual_seed(0)
    space = load_space("tiny")
    net = ElasticSupernet(space, zero_init_residual_bn=False).eval()
    arch = space.max_arch()
    return net.export(arch).eval(), arch.resolution


def _calib(resolution: int) -> list[np.ndarray]:
    g = np.random.default_rng(0)
    return [g.standard_normal((8, 3, resolution, resolution)).astype(np.float32)
            for _ in range(2)]


@pytest.mark.parametrize("runtime, quantize, message", [
    ("tensorrt", None, "latency runtime: 'tensorrt' is unknown"),
    ("onnxruntime", "int4", "quantize: 'int4' is unknown"),
    ("torch", "int8", "quantize: int8 children run in onnxruntime"),
])
def test_bad_runtime_or_mode_is_one_line(runtime, quantize, message):
    with pytest.raises(ValueError, match=message):
        check_runtime(runtime, quantize)


def test_missing_onnxruntime_is_named(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ort(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ort)
    with pytest.raises(ValueError, match=r"needs the onnxruntime package.*\[onnx\]"):
        check_runtime("onnxruntime")


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_latency_is_a_median_with_its_spread(child, runtime):
    net, res = child
    t = measure(net, res, runtime=runtime, batch=2, threads=1, warmup=1, repeats=5)
    assert isinstance(t, Timing) and t.ms > 0 and t.spread >= 0
    assert (t.runtime, t.batch, t.threads) == (runtime, 2, 1)
    assert t.to_dict()["ms"] == t.ms and t.noisy == (t.spread > 0.25)


def test_onnx_in_memory_computes_the_childs_logits(child):
    net, res = child
    x = torch.randn(3, 3, res, res)
    sess = ort.InferenceSession(onnx_bytes(net, res), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(sess.run(None, {"input": x.numpy()})[0], want, atol=1e-4)


def test_int8_equals_onnxruntimes_own_quantizer(child):
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    net, res = child
    model, calib = onnx_bytes(net, res), _calib(res)
    ours = onnx.load_from_string(quantize_int8(model, calib))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": x}

    with tempfile.TemporaryDirectory() as tmp:
        raw, pre, out = (str(Path(tmp) / f) for f in ("a.onnx", "b.onnx", "c.onnx"))
        Path(raw).write_bytes(model)
        quant_pre_process(raw, pre)
        quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        theirs = onnx.load(out)
    from onnx import numpy_helper

    a = {i.name: numpy_helper.to_array(i) for i in ours.graph.initializer}
    b = {i.name: numpy_helper.to_array(i) for i in theirs.graph.initializer}
    assert a.keys() == b.keys() and any(v.dtype == np.int8 for v in a.values())
    assert all(np.array_equal(a[k], b[k]) for k in a)
    x = np.random.default_rng(1).standard_normal((4, 3, res, res)).astype(np.float32)
    top1, loss, n = ort_scores(quantize_int8(model, calib), [(x, np.zeros(4, np.int64))])
    assert n == 4 and 0 <= top1 <= 1 and np.isfinite(loss)
