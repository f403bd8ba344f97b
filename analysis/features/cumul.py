"""CUMUL's features (Panchenko et al., "Website fingerprinting at Internet scale", NDSS 2016).

CUMUL reads a trace as its cumulative representation: walking the packets in
order, ``a`` adds up the absolute sizes and ``c`` the signed sizes (positive
from the client, here the device). The piecewise linear curve through the
points ``(0, 0), (a_1, c_1), ..., (a_N, c_N)`` is sampled at ``points`` (100
in the paper) equally spaced values of ``a``, from ``a_N / points`` to
``a_N``; in front come the paper's four totals: packets and bytes in each
direction. The paper classifies the vectors with an RBF SVM
(``cumul_svm`` in ``analysis/compare/grids.toml``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from echolab.analysis.features.sets import as_record

#: The four totals, in front of the interpolated points.
CUMUL_TOTALS = ("s2d_total_pkts", "d2s_total_pkts", "s2d_total_bytes", "d2s_total_bytes")


def cumul_feature_names(points: int = 100) -> list[str]:
    """The totals, then ``bi_cumul_000_bytes`` ... (three digits, more past 1000 points)."""
    width = max(3, len(str(points - 1)))
    return [*CUMUL_TOTALS, *(f"bi_cumul_{i:0{width}d}_bytes" for i in range(points))]


def cumul_vector(sizes: np.ndarray, points: int = 100) -> np.ndarray:
    """The CUMUL row of one signed size sequence (bytes)."""
    sizes = np.asarray(sizes, dtype=float)
    incoming = sizes < 0
    totals = [float(incoming.sum()), float((~incoming).sum()), float(-sizes[incoming].sum()),
              float(sizes[~incoming].sum())]
    if len(sizes) == 0:
        return np.asarray(totals + [0.0] * points)
    a = np.concatenate(([0.0], np.cumsum(np.abs(sizes))))
    c = np.concatenate(([0.0], np.cumsum(sizes)))
    at = np.linspace(0.0, a[-1], points + 1)[1:]
    return np.concatenate((totals, np.interp(at, a, c)))


class CumulFeatures(TransformerMixin, BaseEstimator):
    """CUMUL's four totals and ``points`` samples of the cumulative signed size (bytes).

    Parameters: ``points`` (100, the paper's choice). Nothing is learned from
    the data (``fit`` checks ``points`` and sets ``feature_names_``). Applies
    to packet traces as well as captures.
    """

    def __init__(self, points: int = 100):
        self.points = points

    def fit(self, X: Sequence[Any], y: Any = None) -> "CumulFeatures":
        if not isinstance(self.points, (int, np.integer)) or isinstance(self.points, bool) or self.points < 1:
            raise ValueError(f"points must be a positive integer, got {self.points!r}")
        self.feature_names_ = cumul_feature_names(self.points)
        return self

    def transform(self, X: Sequence[Any]) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        rows = [cumul_vector(np.asarray(as_record(x).seq_sizes), self.points) for x in X]
        return np.asarray(rows, dtype=float).reshape(len(rows), len(self.feature_names_))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        return np.asarray(self.feature_names_, dtype=object)
