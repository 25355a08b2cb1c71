"""Evaluators: one contract (children in, metrics table out) for the supernet and the
oracle; BN recalibration on fixed training images, then top-1/loss on the val split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from nas_search import EVAL_COLUMNS, Evaluator, SupernetEvaluator
from nas_search.evaluator import check_output
from nas_search.testing import OracleEvaluator
from supernet import load_space
from supernet.data.datasets import calib_batches, load_data, normalize, resize, stratified_subset
from supernet.training.evaluation import calibrate_bn, evaluate

TINY = load_space("tiny")


pytestmark = pytest.mark.usefixtures("one_thread_module")




@pytest.fixture(scope="module")
def evaluator(ckpt):
    return SupernetEvaluator.from_checkpoint(ckpt, calib_images=16, val_images=40,
                                             device="cpu")


def _archs(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [TINY.sample(rng) for _ in range(n)]


def test_every_evaluator_follows_the_one_contract(evaluator):
    archs = _archs()
    for ev in (evaluator, OracleEvaluator(TINY)):
        assert isinstance(ev, Evaluator) and isinstance(ev.name, str)
        table = ev.evaluate(archs)
        assert isinstance(table, pd.DataFrame) and list(table.columns)[:5] == list(EVAL_COLUMNS)
        assert list(table["arch"]) == [str(a) for a in archs]
        assert ((table["top1"] >= 0) & (table["top1"] <= 1)).all()
        assert (table["evaluator"] == ev.name).all()
        check_output(ev, archs, table)
    with pytest.raises(ValueError, match="do not match"):
        check_output(evaluator, archs[::-1], evaluator.evaluate(archs))


def test_supernet_evaluator_recalibrates_bn_on_fixed_train_images_then_scores_val(evaluator):
    a, b = _archs(2, seed=1)
    first = evaluator.evaluate([a]).iloc[0]
    evaluator.evaluate([b])  # overwrites the shared BN statistics
    again = evaluator.evaluate([a]).iloc[0]
    assert (first["top1"], first["loss"]) == (again["top1"], again["loss"])
    # the supernet's own statistics are left alone: the exported child is calibrated
    net, data = evaluator.net, evaluator.data
    before = {k: v.clone() for k, v in net.state_dict().items()}
    evaluator.evaluate([a, b])
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    # the same numbers on the supernet itself: calibrate on the fixed subset of training
    # images, evaluate the first val images (channels-last sums in another order: approx)
    calib = next(iter(calib_batches(data, 16, 16, 0)))
    calibrate_bn(net, a, [(resize(calib[0], a.resolution), None)], 16)
    sub = data.val.subset(stratified_subset(data.val.y, 40))  # class-stratified, seed 0
    x = resize(normalize(sub.x, data), a.resolution)
    res = evaluate(net, a, [(x, sub.y)])
    assert res.loss == pytest.approx(first["loss"], rel=1e-4)
    assert res.top1 == pytest.approx(first["top1"], abs=1 / 40)
    net.load_state_dict(before)
    assert "cal16" in evaluator.name and "val40" in evaluator.name
    assert 0 < first["calib_time_s"] < first["eval_time_s"]


def test_the_evaluator_keeps_the_checkpoint_split_and_space(ckpt, tmp_path):
    ev = SupernetEvaluator.from_checkpoint(ckpt, calib_images=8, val_images=8, device="cpu")
    held_out = load_data("digits", max(TINY.resolutions), 0).val
    assert torch.equal(ev.data.val.x, held_out.x)  # the split of training's seed
    with pytest.raises(ValueError, match="differs from the requested space"):
        SupernetEvaluator.from_checkpoint(ckpt, space="attentive-mbv3")
    with pytest.raises(ValueError, match="calib_images"):
        SupernetEvaluator.from_checkpoint(ckpt, calib_images=0)
    # more calibration images than the split holds: all of them (the 4096 default on digits)
    assert SupernetEvaluator.from_checkpoint(ckpt, calib_images=10**6).calib_images == \
        len(ev.data.train)


def test_latency_is_measured_on_the_exported_child_when_asked(ckpt):
    ev = SupernetEvaluator.from_checkpoint(ckpt, calib_images=8, val_images=8, latency=True,
                                           device="cpu")
    table = ev.evaluate([TINY.min_arch(), TINY.max_arch()])
    lat = table["latency_ms"].to_numpy()
    assert np.all(lat > 0) and np.all(np.isfinite(lat))


def test_oracle_is_deterministic_and_favours_bigger_children():
    ev = OracleEvaluator(TINY)
    archs = _archs(20)
    pd.testing.assert_frame_equal(ev.evaluate(archs), ev.evaluate(archs))
    assert ev.top1(TINY.max_arch()) > ev.top1(TINY.min_arch())


def test_evaluation_runs_with_its_own_thread_count_and_restores_it(ckpt, monkeypatch):
    ev = SupernetEvaluator.from_checkpoint(ckpt, calib_images=8, val_images=8, device="cpu",
                                           threads=1)
    seen = []
    inner = ev.evaluate_one
    monkeypatch.setattr(ev, "evaluate_one", lambda a: seen.append(torch.get_num_threads())
                        or inner(a))
    torch.set_num_threads(2)
    try:
        ev.evaluate(_archs(2))
        assert seen == [1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)  # the module's setting
