"""Features of children for accuracy predictors: the integer encoding of `space.encode`,
or its one-hot form, from a list of `Arch` or a 2-D array of encodings alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from supernet.spaces.space import Arch, SearchSpace

# What a predictor takes: a list of Arch, or an (n, genes) array of their integer encodings
Archs = Sequence[Arch] | npt.NDArray[Any]


def encode_archs(space: SearchSpace, archs: Archs) -> npt.NDArray[np.int64]:
    """(n, genes) int64 choice indices of a list of Arch, or a checked copy of an encoding array."""
    if len(archs) and isinstance(archs[0], Arch):
        return np.stack([space.encode(a) for a in archs])
    x = np.asarray(archs)
    n = space.n_choices()
    if x.ndim != 2 or x.shape[1] != len(n):
        raise ValueError(f"encodings: expected shape (n, {len(n)}) for space {space.name!r}, "
                         f"got {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.any(x != np.round(x)):
        raise ValueError("encodings: expected integer choice indices")
    x = x.astype(np.int64)
    bad = (x < 0) | (x >= n)
    if bad.any():
        row, gene = map(int, np.argwhere(bad)[0])
        name = space.choices()[gene][0]
        raise ValueError(f"encodings row {row}, {name}: index {x[row, gene]} out of range; "
                         f"allowed 0..{n[gene] - 1}")
    return x


def one_hot(space: SearchSpace, codes: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """One-hot of each gene, genes in encoding order: (n, sum of choices) of 0.0/1.0."""
    n = space.n_choices()
    offsets = np.concatenate([[0], np.cumsum(n)[:-1]])
    out = np.zeros((len(codes), int(n.sum())))
    out[np.arange(len(codes))[:, None], offsets + codes] = 1.0
    return out


# sklearn ships no type information: its base classes are Any
class ArchEncoder(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """scikit-learn transformer: Arch list or integer encodings -> float features.

    `one_hot=False` keeps the integer choice indices (ordinal on stage-wise spaces: choices
    are sorted, so a larger index is a wider/deeper/larger child; a layer-wise choice is a
    category, skip being 6 of 0-6 in S1); `one_hot=True` gives one column per choice.
    """

    def __init__(self, space: SearchSpace, one_hot: bool = True):
        self.space = space
        self.one_hot = one_hot

    def fit(self, X: Archs, y: object = None) -> ArchEncoder:
        """Check `X` against the space; there is nothing to learn (the space fixes the choices)."""
        encode_archs(self.space, X)
        self.n_choices_ = self.space.n_choices()
        self.n_features_out_ = int(self.n_choices_.sum()) if self.one_hot else len(self.n_choices_)
        return self

    def transform(self, X: Archs) -> npt.NDArray[np.float64]:
        """Features of `X` (a list of Arch or an (n, genes) integer array)."""
        check_is_fitted(self, "n_choices_")
        codes = encode_archs(self.space, X)
        return one_hot(self.space, codes) if self.one_hot else codes.astype(np.float64)
