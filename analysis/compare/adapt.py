"""Adapting to a household without its labels: unsupervised domain adaptation of feature matrices.

An eavesdropper who trained on homes of its own has the target home's traffic,
just not its labels. What differs between homes and not between commands (the
Echo's framing, the network's pace, the speaker's) shifts every feature of a
home together; these methods take that shift out using only features, never
labels, so they are fair to use on the test home. None is on unless asked
(``--adapt``); the report names the one a figure used.

* ``standardize``: each home's features are standardised with that home's own
  mean and standard deviation.
* ``quantile``: each feature is mapped to its quantile within its home (mid-rank
  over the home's captures), so only the order of captures inside a home
  counts.
* ``coral``: CORAL (Sun, Feng & Saenko, "Return of frustratingly easy domain
  adaptation", AAAI 2016): after per-home standardising, the training homes'
  features are whitened with their covariance and re-coloured with the test
  home's, so second-order statistics match too.

A home is a group of :attr:`DataSource.groupings` (``campaign`` by default:
one campaign per household). The test rows of a trial define the target for
``coral``; the other two treat every home alike and need no target.
"""

from __future__ import annotations

import numpy as np

from echolab.errors import EcholabError

ADAPTATIONS = ("none", "standardize", "quantile", "coral")


class AdaptationError(EcholabError):
    """An adaptation was asked for that cannot be done on this data."""


def check_method(method: str) -> None:
    if method not in ADAPTATIONS:
        raise AdaptationError(f"--adapt must be one of {', '.join(ADAPTATIONS)}, not {method!r}")


def standardize_groups(X: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each group's rows standardised with the group's own mean and standard deviation (constant columns: 0)."""
    out = np.zeros_like(X, dtype=float)
    for g in np.unique(groups):
        rows = groups == g
        part = X[rows].astype(float)
        sd = part.std(axis=0)
        out[rows] = (part - part.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    return out


def quantile_groups(X: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each value mapped to its quantile among its group's values of that column ((mid-rank - 0.5) / n)."""
    from scipy.stats import rankdata

    out = np.zeros_like(X, dtype=float)
    for g in np.unique(groups):
        rows = groups == g
        part = X[rows].astype(float)
        out[rows] = (rankdata(part, method="average", axis=0) - 0.5) / len(part)
    return out


def _matrix_power(cov: np.ndarray, power: float) -> np.ndarray:
    values, vectors = np.linalg.eigh(cov)
    values = np.clip(values, 1e-12, None)
    return (vectors * values ** power) @ vectors.T


def coral(X: np.ndarray, groups: np.ndarray, target_rows: np.ndarray, *, eps: float = 1.0) -> np.ndarray:
    """Per-group standardising, then the non-target rows re-coloured with the target rows' covariance (CORAL).

    *eps* is the paper's regulariser (the identity added to both covariances).
    """
    Z = standardize_groups(X, groups)
    target = np.zeros(len(Z), dtype=bool)
    target[target_rows] = True
    if target.all() or not target.any():
        return Z
    eye = np.eye(Z.shape[1]) * eps
    cs = np.cov(Z[~target], rowvar=False) + eye
    ct = np.cov(Z[target], rowvar=False) + eye
    Z[~target] = Z[~target] @ _matrix_power(cs, -0.5) @ _matrix_power(ct, 0.5)
    return Z


def adapt_matrix(X: np.ndarray, groups: np.ndarray | None, method: str,
                 target_rows: np.ndarray | None = None) -> np.ndarray:
    """*X* adapted by *method* (:data:`ADAPTATIONS`) over the homes in *groups*; "none" returns *X* itself."""
    check_method(method)
    if method == "none":
        return X
    if groups is None or len(np.unique(groups)) < 1:
        raise AdaptationError(f"--adapt {method} needs each capture's home (its campaign)")
    groups = np.asarray(groups)
    if method == "standardize":
        return standardize_groups(X, groups)
    if method == "quantile":
        return quantile_groups(X, groups)
    if target_rows is None:
        raise AdaptationError("CORAL needs the target home's rows")
    return coral(X, groups, np.asarray(target_rows))
