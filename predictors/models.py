"""Accuracy predictors as scikit-learn regressors on numeric features of children.

Each one standardises X and y around a scikit-learn model, so `clone`, pipelines and
cross-validation work unchanged. Hyper-parameters are stored as given; the inner model
is built in `fit` because its shape (e.g. one GP length scale per feature) needs X.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import VotingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y
from threadpoolctl import threadpool_limits

from supernet.spaces.space import SearchSpace

from .features import ArchEncoder


def _one_blas_thread() -> threadpool_limits:
    # Matrices of a few hundred children are too small for threaded BLAS to pay off, and
    # on a busy machine its spinning threads made the MLP fit 6x slower (measured).
    return threadpool_limits(limits=1, user_api="blas")


# sklearn ships no type information: its base classes are Any
class _Predictor(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """Shared fit/predict: validate, standardise X and y, delegate to `_model(X)`."""

    def _model(self, X: np.ndarray) -> BaseEstimator:
        """The unfitted inner model, sized for training data X (the model sees X standardised)."""
        raise NotImplementedError

    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike) -> _Predictor:
        """Fit on features X (n, d) and targets y (n,); returns self."""
        xs, ys = check_X_y(X, y, y_numeric=True)
        if len(ys) < 2:
            raise ValueError(f"fit: n_samples = {len(ys)}; a predictor needs at least 2 children")
        self.n_features_in_ = xs.shape[1]
        with warnings.catch_warnings(), _one_blas_thread():
            # the MLP's iteration cap is deliberate early stopping, and a GP length scale at
            # its bound just marks an irrelevant feature: neither is worth a warning per fit
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model_ = self._fit_model(xs, ys)
        return self

    def _fit_model(self, X: np.ndarray, y: np.ndarray) -> BaseEstimator:
        inner = make_pipeline(StandardScaler(), self._model(X))
        return TransformedTargetRegressor(inner, transformer=StandardScaler()).fit(X, y)

    def predict(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Predicted targets (n,) of features X."""
        check_is_fitted(self, "model_")
        xs = check_array(X)
        if xs.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {xs.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input")
        with _one_blas_thread():
            return np.asarray(self.model_.predict(xs), dtype=np.float64).ravel()


class MLPPredictor(_Predictor):
    """A small multi-layer perceptron (L-BFGS, L2 penalty, capped iterations) on standardised
    X and y."""

    def __init__(self, hidden_layer_sizes: tuple[int, ...] = (64, 64), alpha: float = 1.0,
                 max_iter: int = 300, random_state: int | None = None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike) -> MLPPredictor:
        """Fit on features X (n, d) and targets y (n,); returns self."""
        super().fit(X, y)
        self.n_iter_ = self.model_.regressor_[-1].n_iter_  # L-BFGS iterations run
        return self

    def _model(self, X: np.ndarray) -> BaseEstimator:
        return MLPRegressor(hidden_layer_sizes=self.hidden_layer_sizes, solver="lbfgs",
                            alpha=self.alpha, max_iter=self.max_iter,
                            random_state=self.random_state)


class GPPredictor(_Predictor):
    """Gaussian process: constant x Matern-5/2 + white noise, hyper-parameters by maximum
    marginal likelihood. `ard` (one length scale per feature) costs ~50x the fit time."""

    def __init__(self, ard: bool = False, n_restarts_optimizer: int = 2,
                 random_state: int | None = None):
        self.ard = ard
        self.n_restarts_optimizer = n_restarts_optimizer
        self.random_state = random_state

    def _model(self, X: np.ndarray) -> BaseEstimator:
        n_features = X.shape[1]
        scale = np.ones(n_features) if self.ard else 1.0
        kernel = (ConstantKernel(1.0, (1e-2, 1e2))
                  * Matern(scale * np.sqrt(n_features), (1e-2, 1e3), nu=2.5)
                  + WhiteKernel(0.1, (1e-6, 1e1)))
        return GaussianProcessRegressor(kernel=kernel,
                                        n_restarts_optimizer=self.n_restarts_optimizer,
                                        random_state=self.random_state)


class RBFPredictor(_Predictor):
    """Kernel ridge regression with an RBF kernel; `alpha`/`gamma` left as None are chosen
    by `cv`-fold cross-validation on the training data (deterministic folds)."""

    def __init__(self, alpha: float | None = None, gamma: float | None = None, cv: int = 5):
        self.alpha = alpha
        self.gamma = gamma
        self.cv = cv

    def _model(self, X: np.ndarray) -> BaseEstimator:
        n_samples, n_features = X.shape
        # gamma is relative to 1/d so that the grid suits any feature count
        alphas = [self.alpha] if self.alpha is not None else [1e-2, 1e-1, 1.0]
        gammas = ([self.gamma] if self.gamma is not None
                  else [g / n_features for g in (0.1, 0.3, 1.0, 3.0)])
        if len(alphas) * len(gammas) == 1:
            return KernelRidge(alpha=alphas[0], kernel="rbf", gamma=gammas[0])
        return GridSearchCV(KernelRidge(kernel="rbf"), {"alpha": alphas, "gamma": gammas},
                            cv=KFold(min(self.cv, n_samples), shuffle=True, random_state=0),
                            scoring="neg_mean_squared_error")


class EnsemblePredictor(_Predictor):
    """Mean prediction of several predictors (default: MLP, GP and RBF), each fit on all data.

    `random_state` seeds every member that has one, each with its own derived seed.
    """

    def __init__(self, estimators: Sequence[BaseEstimator] | None = None,
                 random_state: int | None = None):
        self.estimators = estimators
        self.random_state = random_state

    def _fit_model(self, X: np.ndarray, y: np.ndarray) -> BaseEstimator:
        members = [clone(e) for e in (_default_members() if self.estimators is None
                                      else self.estimators)]
        if self.random_state is not None:
            rng = check_random_state(self.random_state)
            for m in members:
                if "random_state" in m.get_params():
                    m.set_params(random_state=int(rng.randint(2**31 - 1)))
        named = [(f"{i}_{type(m).__name__.lower()}", m) for i, m in enumerate(members)]
        return VotingRegressor(named).fit(X, y)


def _default_members() -> list[BaseEstimator]:
    return [MLPPredictor(), GPPredictor(), RBFPredictor()]


PREDICTORS: dict[str, type[_Predictor]] = {
    "mlp": MLPPredictor,
    "gp": GPPredictor,
    "rbf": RBFPredictor,
    "ensemble": EnsemblePredictor,
}


def make_predictor(name: str, space: SearchSpace | None = None, *, one_hot: bool = True,
                   random_state: int | None = None) -> BaseEstimator:
    """A predictor by name (see PREDICTORS). With `space`, a pipeline that takes a list of
    Arch or integer encodings and features them with `ArchEncoder(space, one_hot)`."""
    if name not in PREDICTORS:
        raise ValueError(f"predictor: {name!r} is not one of {sorted(PREDICTORS)}")
    est = PREDICTORS[name]()
    if "random_state" in est.get_params():
        est.set_params(random_state=random_state)
    if space is None:
        return est
    return Pipeline([("features", ArchEncoder(space, one_hot=one_hot)), (name, est)])
