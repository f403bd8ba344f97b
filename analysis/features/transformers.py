"""The study's feature sets as scikit-learn transformers over per-capture records.

:func:`echolab.analysis.features.sets.make_transformer` is how they are made;
this module holds the classes (see :mod:`echolab.analysis.features.sets` for
what each set holds). They live apart from the records and names so that reading
the feature cache does not load scikit-learn.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from echolab.analysis.features.histogram import learn_edges, normalized_histograms
from echolab.analysis.features.sets import (HISTOGRAM_PARTS, TCPTRACE_FEATURE_NAMES, TCPTRACE_GROUPS, as_record,
                                            histogram_feature_names, require_headers)


def _check_groups(groups: Iterable[str] | None, known: Iterable[str], what: str) -> tuple[str, ...]:
    if groups is None:
        return ()
    if isinstance(groups, str):
        groups = (groups,)
    groups = tuple(groups)
    unknown = [g for g in groups if g not in known]
    if unknown or not groups:
        raise ValueError(f"unknown {what} group(s) {unknown or groups!r}; choose from {', '.join(known)}")
    return groups


class TcptraceFeatures(TransformerMixin, BaseEstimator):
    """tcptrace statistics of the server-to-device direction, constant columns dropped at fit.

    Parameters: ``groups`` keeps only named subsets (:data:`TCPTRACE_GROUPS`),
    ``drop_constant`` (default True) drops columns constant over the fitted
    data, as the study did. Learned: ``candidate_features_``,
    ``dropped_features_``, ``feature_names_``.
    """

    def __init__(self, groups: Sequence[str] | None = None, drop_constant: bool = True):
        self.groups = groups
        self.drop_constant = drop_constant

    def _candidates(self) -> list[str]:
        groups = _check_groups(self.groups, TCPTRACE_GROUPS, "tcptrace")
        if not groups:
            return list(TCPTRACE_FEATURE_NAMES)
        wanted = {n for g in groups for n in TCPTRACE_GROUPS[g]}
        return [n for n in TCPTRACE_FEATURE_NAMES if n in wanted]

    @staticmethod
    def _matrix(X: Sequence[Any], names: Sequence[str]) -> np.ndarray:
        records = [as_record(x) for x in X]
        require_headers(records, "tcptrace")
        return np.array([[r.tcptrace[n] for n in names] for r in records], dtype=float).reshape(len(records),
                                                                                               len(names))

    def fit(self, X: Sequence[Any], y: Any = None) -> "TcptraceFeatures":
        candidates = self._candidates()
        if len(X) == 0:
            raise ValueError("TcptraceFeatures.fit needs at least one capture record")
        matrix = self._matrix(X, candidates)
        constant = np.ptp(matrix, axis=0) == 0 if self.drop_constant else np.zeros(len(candidates), bool)
        self.candidate_features_ = candidates
        self.dropped_features_ = [n for n, c in zip(candidates, constant) if c]
        self.feature_names_ = [n for n, c in zip(candidates, constant) if not c]
        return self

    def transform(self, X: Sequence[Any]) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        return self._matrix(X, self.feature_names_)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        return np.asarray(self.feature_names_, dtype=object)


class HistogramFeatures(TransformerMixin, BaseEstimator):
    """Normalized packet-size histogram, then normalized inter-arrival-time histogram.

    Parameters: ``bins`` per histogram (15), ``include_acks`` (False: pure ACKs
    are left out before sizes and inter-arrival times are taken), ``groups``
    a subset of ("size", "iat"). Learned: ``size_edges_`` (bytes, IP total
    length) and ``iat_edges_`` (seconds), each ``bins + 1`` edges from the
    smallest to the largest value of the fitted data.
    """

    def __init__(self, bins: int = 15, include_acks: bool = False, groups: Sequence[str] | None = None):
        self.bins = bins
        self.include_acks = include_acks
        self.groups = groups

    def _parts(self) -> tuple[str, ...]:
        return _check_groups(self.groups, HISTOGRAM_PARTS, "histogram") or HISTOGRAM_PARTS

    def fit(self, X: Sequence[Any], y: Any = None) -> "HistogramFeatures":
        self._fit_values(X)
        return self

    def fit_transform(self, X: Sequence[Any], y: Any = None, **fit_params: Any) -> np.ndarray:
        """``fit(X).transform(X)``, taking each record's sizes and inter-arrival times once."""
        return self._rows(self._fit_values(X))

    def _fit_values(self, X: Sequence[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Learn the edges from *X*; return each record's (sizes, inter-arrival times)."""
        if not isinstance(self.bins, (int, np.integer)) or isinstance(self.bins, bool) or self.bins < 1:
            raise ValueError(f"bins must be a positive integer, got {self.bins!r}")
        parts = self._parts()
        if len(X) == 0:
            raise ValueError("HistogramFeatures.fit needs at least one capture record")
        records = [as_record(x) for x in X]
        require_headers(records, "histogram")
        values = [r.histogram_values(self.include_acks) for r in records]
        self.size_edges_ = learn_edges((v[0] for v in values), self.bins)
        self.iat_edges_ = learn_edges((v[1] for v in values), self.bins)
        self.parts_ = parts
        self.feature_names_ = [n for p in parts for n in histogram_feature_names(p, self.bins)]
        return values

    def transform(self, X: Sequence[Any]) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        records = [as_record(x) for x in X]
        require_headers(records, "histogram")
        return self._rows([r.histogram_values(self.include_acks) for r in records])

    def _rows(self, values: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        parts = []
        if "size" in self.parts_:
            parts.append(normalized_histograms([v[0] for v in values], self.size_edges_))
        if "iat" in self.parts_:
            parts.append(normalized_histograms([v[1] for v in values], self.iat_edges_))
        return np.hstack(parts).reshape(len(values), len(self.feature_names_))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        return np.asarray(self.feature_names_, dtype=object)


class CombinedFeatures(TransformerMixin, BaseEstimator):
    """The tcptrace set followed by the histogram set (``tcptrace_`` and ``histogram_`` once fitted)."""

    def __init__(self, bins: int = 15, include_acks: bool = False, drop_constant: bool = True):
        self.bins = bins
        self.include_acks = include_acks
        self.drop_constant = drop_constant

    def fit(self, X: Sequence[Any], y: Any = None) -> "CombinedFeatures":
        records = [as_record(x) for x in X]
        self.tcptrace_ = TcptraceFeatures(drop_constant=self.drop_constant).fit(records)
        self.histogram_ = HistogramFeatures(bins=self.bins, include_acks=self.include_acks).fit(records)
        self.feature_names_ = [*self.tcptrace_.feature_names_, *self.histogram_.feature_names_]
        return self

    def transform(self, X: Sequence[Any]) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        records = [as_record(x) for x in X]
        return np.hstack([self.tcptrace_.transform(records), self.histogram_.transform(records)])

    def fit_transform(self, X: Sequence[Any], y: Any = None, **fit_params: Any) -> np.ndarray:
        """``fit(X).transform(X)``, converting and reading each record once."""
        records = [as_record(x) for x in X]
        self.tcptrace_ = TcptraceFeatures(drop_constant=self.drop_constant).fit(records)
        self.histogram_ = HistogramFeatures(bins=self.bins, include_acks=self.include_acks)
        hist = self.histogram_.fit_transform(records)
        self.feature_names_ = [*self.tcptrace_.feature_names_, *self.histogram_.feature_names_]
        return np.hstack([self.tcptrace_.transform(records), hist])

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        return np.asarray(self.feature_names_, dtype=object)
