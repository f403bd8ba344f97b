"""Normalized histograms with bin edges learned from a data set.

The study's histogram features divide the interval between the smallest and
the largest value *of the whole data set* into equal bins, then normalize each
capture's counts to fractions (so the number of packets drops out). Learning
the edges is :func:`learn_edges` (what a transformer's ``fit`` does); applying
them is :func:`normalized_histograms` (its ``transform``: every capture at once),
which gives row by row what :func:`normalized_histogram` gives for one capture
(the definition, kept as the test's reference).
"""

from __future__ import annotations

from typing import Iterable, Sequence

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
    filled = [arr for arr in arrays if len(arr)]
    if filled:
        values = np.concatenate(filled) if len(filled) > 1 else np.asarray(filled[0])
        lo, hi = float(np.min(values)), float(np.max(values))
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


def normalized_histograms(arrays: Sequence[np.ndarray], edges: np.ndarray) -> np.ndarray:
    """:func:`normalized_histogram` of each of *arrays*, as the rows of one matrix, computed at once."""
    bins = len(edges) - 1
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    out = np.zeros((len(arrays), bins))
    if not lengths.sum():
        return out
    idx = np.searchsorted(edges, np.concatenate(arrays), side="right") - 1
    np.clip(idx, 0, bins - 1, out=idx)
    cells = np.repeat(np.arange(len(arrays)) * bins, lengths) + idx
    counts = np.bincount(cells, minlength=len(arrays) * bins).reshape(len(arrays), bins).astype(float)
    filled = lengths > 0
    out[filled] = counts[filled] / counts[filled].sum(axis=1, keepdims=True)
    return out
