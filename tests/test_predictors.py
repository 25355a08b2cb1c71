"""Accuracy predictors: one contract test over every predictor (as optuna tests every
sampler), plus features, rank metrics and the evaluator stand-in."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

from predictors import (
    PREDICTORS,
    ArchEncoder,
    EnsemblePredictor,
    GPPredictor,
    MLPPredictor,
    PredictorEvaluator,
    RBFPredictor,
    cross_val_rank_metrics,
    make_predictor,
    rank_metrics,
)
from predictors.features import encode_archs
from supernet import load_space
from supernet.spaces.cost import macs

SPACE = load_space("tiny")
NAMES = sorted(PREDICTORS)


def _distinct(n: int, seed: int) -> list:
    rng, out = np.random.default_rng(seed), {}
    while len(out) < n:
        a = SPACE.sample(rng)
        out[a] = None
    return list(out)


@pytest.fixture(scope="module")
def synthetic():
    """One-hot features of 120 distinct children and a target that ranks them by log-MACs
    plus a little noise: learnable, but not by memorising."""
    archs = _distinct(120, seed=0)
    X = ArchEncoder(SPACE, one_hot=True).fit_transform(archs)
    rng = np.random.default_rng(1)
    y = np.log([macs(SPACE, a) for a in archs]) + rng.normal(0, 0.05, len(archs))
    return archs, X, y


# ---- the contract, over every predictor ----------------------------------------------------
@pytest.fixture(scope="module", params=NAMES)
def fitted(request, synthetic):
    """(name, predictor fit on 80 children with random_state=0, what fit returned, the
    attributes it had before fit): one fit per predictor, shared by the tests below."""
    _, X, y = synthetic
    est = make_predictor(request.param, random_state=0)
    before = set(vars(est))
    return request.param, est, est.fit(X[:80], y[:80]), before


# scikit-learn's own estimator checks, on settings that fit in milliseconds (the checks
# fit dozens of times; the defaults differ only in sizes and the RBF grid search)
_FAST = [RBFPredictor(alpha=0.1, gamma=0.1), GPPredictor(n_restarts_optimizer=0),
         MLPPredictor(hidden_layer_sizes=(8,), max_iter=20, random_state=0),
         EnsemblePredictor([RBFPredictor(alpha=0.1, gamma=0.1),
                            MLPPredictor(hidden_layer_sizes=(8,), max_iter=20)], random_state=0)]
assert {type(e) for e in _FAST} == set(PREDICTORS.values())


@parametrize_with_checks(_FAST)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("name", NAMES)
def test_init_stores_hyper_parameters_as_given(name):
    cls = PREDICTORS[name]
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    sentinels = {p: object() for p in params}  # no validation may touch them
    est = cls(**sentinels)
    assert all(est.get_params(deep=False)[p] is sentinels[p] for p in params)
    assert not any(k.endswith("_") for k in vars(est))


def test_clone_gives_an_unfitted_equal(fitted, synthetic):
    _, est, _, _ = fitted
    twin = clone(est)
    assert type(twin) is type(est)
    assert repr(twin.get_params(deep=False)) == repr(est.get_params(deep=False))
    with pytest.raises(NotFittedError):
        twin.predict(synthetic[1][:2])


def test_fit_returns_self_and_fitted_state_ends_in_underscore(fitted, synthetic):
    _, est, returned, before = fitted
    assert returned is est
    added = set(vars(est)) - before
    assert added and all(k.endswith("_") and not k.startswith("__") for k in added)
    assert est.n_features_in_ == synthetic[1].shape[1]


def test_predict_shape_and_feature_check(fitted, synthetic):
    _, est, _, _ = fitted
    X = synthetic[1]
    pred = est.predict(X[80:97])
    assert pred.shape == (17,) and pred.dtype == np.float64 and np.isfinite(pred).all()
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:3, :-1])


def test_deterministic_with_random_state(fitted, synthetic):
    name, est, _, _ = fitted
    _, X, y = synthetic
    again = make_predictor(name, random_state=0).fit(X[:80], y[:80])
    np.testing.assert_allclose(again.predict(X[80:]), est.predict(X[80:]), rtol=1e-9,
                               atol=1e-12)


# Chance is tau = 0; a predictor that ranks by log-MACs from one-hot features of 80
# children should do far better on 40 children it never saw.
def test_learns_a_synthetic_ranking_on_held_out_children(fitted, synthetic):
    _, est, _, _ = fitted
    _, X, y = synthetic
    assert rank_metrics(y[80:], est.predict(X[80:])).kendall_tau > 0.5


def test_the_ranking_threshold_rejects_chance(synthetic):
    _, _, y = synthetic
    shuffled = np.random.default_rng(0).permutation(y[80:])
    assert abs(rank_metrics(y[80:], shuffled).kendall_tau) < 0.5


def test_ensemble_is_the_mean_of_its_members(synthetic):
    _, X, y = synthetic
    members = [make_predictor("rbf"), make_predictor("gp", random_state=1)]
    ens = make_predictor("ensemble").set_params(estimators=members).fit(X[:60], y[:60])
    fitted = [clone(m).fit(X[:60], y[:60]).predict(X[60:]) for m in members]
    np.testing.assert_allclose(ens.predict(X[60:]), np.mean(fitted, axis=0), rtol=1e-9)


def test_make_predictor_names_and_errors():
    assert set(NAMES) == {"mlp", "gp", "rbf", "ensemble"}
    assert make_predictor("gp", random_state=5).random_state == 5
    with pytest.raises(ValueError, match="'svm' is not one of"):
        make_predictor("svm")


# ---- features --------------------------------------------------------------------------------
def test_encoder_takes_archs_or_integer_encodings_alike():
    archs = _distinct(10, seed=2)
    codes = np.stack([SPACE.encode(a) for a in archs])
    for one_hot in (False, True):
        enc = ArchEncoder(SPACE, one_hot=one_hot)
        np.testing.assert_array_equal(enc.fit_transform(archs), enc.fit_transform(codes))
    np.testing.assert_array_equal(ArchEncoder(SPACE, one_hot=False).fit_transform(archs), codes)


def test_one_hot_marks_exactly_the_chosen_option_of_each_gene():
    archs = _distinct(25, seed=3)
    codes = encode_archs(SPACE, archs)
    oh = ArchEncoder(SPACE).fit_transform(archs)
    n = SPACE.n_choices()
    assert oh.shape == (25, n.sum())
    blocks = np.split(oh, np.cumsum(n)[:-1], axis=1)
    for gene, block in enumerate(blocks):
        np.testing.assert_array_equal(block.argmax(1), codes[:, gene])
        np.testing.assert_array_equal(block.sum(1), 1.0)


def test_encodings_are_checked_against_the_space():
    bad = np.zeros((2, len(SPACE.n_choices())), dtype=int)
    bad[1, 0] = 7
    with pytest.raises(ValueError, match="row 1, resolution: index 7 out of range"):
        ArchEncoder(SPACE).fit_transform(bad)
    with pytest.raises(ValueError, match="expected shape"):
        ArchEncoder(SPACE).fit_transform(np.zeros((2, 3), dtype=int))
    with pytest.raises(NotFittedError):
        ArchEncoder(SPACE).transform(bad[:1])


@pytest.mark.parametrize("one_hot", [False, True])
def test_pipeline_cross_validates_on_arch_lists(one_hot, synthetic):
    archs, _, y = synthetic
    pipe = make_predictor("gp", SPACE, one_hot=one_hot, random_state=0)
    scores = cross_val_score(pipe, archs[:60], y[:60], cv=3)
    assert scores.shape == (3,) and np.all(scores > 0)  # R^2 well above a constant's 0
    fitted = clone(pipe).fit(archs[:60], y[:60])
    codes = encode_archs(SPACE, archs[60:])
    np.testing.assert_allclose(fitted.predict(archs[60:]), fitted.predict(codes))


# ---- rank metrics --------------------------------------------------------------------------
def test_rank_metrics_agree_with_scipy_and_bounds():
    rng = np.random.default_rng(0)
    t, p = rng.normal(size=30), rng.normal(size=30)
    m = rank_metrics(t, p)
    assert m.kendall_tau == pytest.approx(stats.kendalltau(t, p).statistic)
    assert m.spearman_rho == pytest.approx(stats.spearmanr(t, p).statistic)
    assert m.rmse == pytest.approx(np.sqrt(np.mean((t - p) ** 2)))
    perfect = rank_metrics(t, 2 * t + 1)
    assert perfect.kendall_tau == pytest.approx(1.0) and perfect.spearman_rho == pytest.approx(1.0)
    assert rank_metrics(t, -t).kendall_tau == pytest.approx(-1.0)
    flat = rank_metrics(t, np.zeros(30))
    assert math.isnan(flat.kendall_tau) and math.isnan(flat.spearman_rho)
    with pytest.raises(ValueError, match="equal-length"):
        rank_metrics(t, p[:-1])


def test_cross_val_figures_come_from_held_out_folds_only():
    # A 1-nearest-neighbour model memorises pure noise: perfect on what it was fit on,
    # chance on anything else. Held-out figures must show chance.
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(100, 5)), rng.normal(size=100)
    memo = KNeighborsRegressor(n_neighbors=1)
    assert rank_metrics(y, clone(memo).fit(X, y).predict(X)).kendall_tau == 1.0
    m = cross_val_rank_metrics(memo, X, y, folds=5, seed=0)
    assert abs(m.kendall_tau) < 0.3 and m.rmse > 1.0
    assert cross_val_rank_metrics(memo, X, y, folds=5, seed=0) == m  # seeded folds


# ---- predictor as an evaluator -------------------------------------------------------------
def test_predictor_evaluator_contract(synthetic):
    archs, X, y = synthetic
    pred = make_predictor("rbf", SPACE).fit(archs[:60], y[:60])
    ev = PredictorEvaluator(pred, SPACE, name="rbf")
    assert ev.name == "predictor:rbf"
    asked = archs[100:] + archs[:3]
    out = ev.evaluate(asked)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns[:5]) == ["arch", "top1", "loss", "evaluator", "eval_time_s"]
    assert list(out["arch"]) == [str(a) for a in asked]
    np.testing.assert_allclose(out["top1"], pred.predict(asked))
    assert out["loss"].isna().all() and (out["evaluator"] == "predictor:rbf").all()
    assert (out["eval_time_s"] >= 0).all() and out["top1"].dtype == np.float64
    empty = ev.evaluate([])
    assert len(empty) == 0 and list(empty.columns) == list(out.columns)


def test_predictor_evaluator_on_a_bare_predictor_and_default_name(synthetic):
    archs, _, y = synthetic
    codes = encode_archs(SPACE, archs)
    bare = make_predictor("gp", random_state=0).fit(codes[:60], y[:60])
    ev = PredictorEvaluator(bare, SPACE)
    assert ev.name == "predictor:gp"
    np.testing.assert_allclose(ev.evaluate(archs[60:65])["top1"], bare.predict(codes[60:65]))
    with pytest.raises(NotFittedError):
        PredictorEvaluator(make_predictor("gp"), SPACE).evaluate(archs[:2])
