"""Normalized histograms with bin edges learned from a data set.

The study's histogram features divide the interval between the smallest and
the largest value *of the whole data set* into equal bins, then normalize each
capture's counts to fractions (so the number of packets drops out). Learning
the edges is :func:`learn_edges` (what a transformer's ``fit`` does); applying
them is :func:`normalized_histogram` (its ``transform``).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np


def learn_edges(arrays: Iterable[np.ndarray], bins: int) -> np.ndarray:
    """``bins + 1`` equally spaced edges from the minimum to the maximum over all *arrays*.

    Arrays may be empty. With no values at all the edges span [0, 1]; with a
    single distinct value v they span [v, v + 1], so every value still lands in
    the first bin.
    """
    if not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    lo, hi = np.inf, -np.inf
    for arr in arrays:
        if len(arr):
            lo = min(lo, float(np.min(arr)))
            hi = max(hi, float(np.max(arr)))
    if lo == np.inf:
        lo, hi = 0.0, 1.0
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, bins + 1)


def normalized_histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Fractions of *values* per bin (summing to 1; all zero when there are no values).

    Values outside the learned range (possible on data ``fit`` did not see) are
    counted in the first or last bin. The last bin includes its right edge.
    """
    bins = len(edges) - 1
    if len(values) == 0:
        return np.zeros(bins)
    idx = np.searchsorted(edges, values, side="right") - 1
    np.clip(idx, 0, bins - 1, out=idx)
    counts = np.bincount(idx, minlength=bins).astype(float)
    return counts / counts.sum()
