"""A synthetic :class:`~echolab.analysis.compare.sources.DataSource` shaped like the study's data.

It stands in for real features while developing, in tests and in benches, and
lets ``echolab analyze run --synthetic N`` try the toolkit without captures.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from echolab.analysis.compare.sources import DataSource
from echolab.analysis.compare.specs import AnalysisError
from echolab.prompts.classes import STUDY_CLASSES

_SYNTH_BLOCKS = {"tcptrace": (0, 22), "histogram": (22, 52), "combined": (0, 52),
                 # stand-ins for the ablations: a few tcptrace columns, one histogram each
                 "window": (0, 3), "data_amount": (3, 7), "size_hist": (22, 37), "iat_hist": (37, 52)}


class SyntheticColumns(BaseEstimator, TransformerMixin):
    """Selects a synthetic feature set's columns out of a 52-column record."""

    def __init__(self, set_name: str = "combined"):
        self.set_name = set_name

    def fit(self, X: Any, y: Any = None) -> "SyntheticColumns":
        if self.set_name not in _SYNTH_BLOCKS:
            raise AnalysisError(f"unknown feature set {self.set_name!r}; choose one of {', '.join(_SYNTH_BLOCKS)}")
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        lo, hi = _SYNTH_BLOCKS[self.set_name]
        return np.asarray(X, dtype=float)[:, lo:hi]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        lo, hi = _SYNTH_BLOCKS[self.set_name]
        return np.asarray([("tcp_" if i < 22 else "hist_") + f"{i:02d}" for i in range(lo, hi)], dtype=object)


def synthetic_transformer(set_name: str, **options: Any) -> SyntheticColumns:
    """``make_transformer`` of the synthetic source (options such as bins are ignored)."""
    return SyntheticColumns(set_name)


def synthetic_source(
    n_per_class: int = 130,
    *,
    classes: Sequence[str] = STUDY_CLASSES,
    campaigns: int = 1,
    seed: int = 0,
    separation: float = 1.0,
    session_effect: float = 0.0,
) -> DataSource:
    """Synthetic feature rows to try the toolkit on: 52 columns (22 "tcptrace" + 30 "histogram"), no captures.

    Each block has a few informative directions in which every class has a
    random centre (spread *separation*, in units of the noise), correlated
    copies of them and noise columns, in arbitrary units. Both blocks get the
    same separation, and nothing is tuned toward any published accuracy: what
    the classifiers score here says how they handle this geometry, nothing
    about Echo traffic.

    Captures go to *campaigns* round robin, and each campaign records each
    class in a session of its own (groupings ``campaign`` and ``session``), as
    a lab that collects one class at a time does. *session_effect* > 0 gives
    every session a random offset of that spread in every column, a signature
    its rows share: the confound under which random splits overstate accuracy.
    """
    rng = np.random.default_rng(seed)
    k = len(classes)
    y = np.repeat(np.asarray(classes), n_per_class)
    labels = np.repeat(np.arange(k), n_per_class)
    campaign_of = np.arange(len(y)) % campaigns
    session_of = campaign_of * k + labels
    blocks = []
    for width, n_inf in ((22, 6), (30, 8)):
        centers = rng.normal(0.0, separation, size=(k, n_inf))
        inf = centers[labels] + rng.normal(0.0, 1.0, size=(len(y), n_inf))
        mix = rng.normal(0.0, 1.0, size=(n_inf, width - n_inf)) / np.sqrt(n_inf)
        rest = inf @ mix + rng.normal(0.0, 0.7, size=(len(y), width - n_inf))
        block = np.hstack([inf, rest])
        if session_effect > 0:
            block = block + rng.normal(0.0, session_effect, size=(campaigns * k, width))[session_of]
        blocks.append(block * rng.uniform(0.5, 50.0, size=width) + rng.uniform(-5, 5, size=width))
    X = np.hstack(blocks)
    groups = np.asarray([f"synthetic-{c + 1}" for c in campaign_of])
    sessions = np.asarray([f"synthetic-{c + 1} {label}" for c, label in zip(campaign_of, y)])
    shas = [hashlib.sha256(row.tobytes() + str(i).encode()).hexdigest() for i, row in enumerate(X)]
    from echolab.analysis.compare import provenance

    return DataSource(
        records=X,
        y=y,
        groups=groups,
        sha256s=shas,
        capture_ids=[None] * len(y),
        make_transformer=synthetic_transformer,
        description=f"synthetic ({len(y)} rows x 52 columns, seed {seed}, separation {separation:g}"
                    + (f", session effect {session_effect:g})" if session_effect else ")"),
        notes=["synthetic data: feature options (bins, ACKs, ablations) do not apply"],
        groupings={"campaign": groups, "session": sessions},
        provenance=provenance.synthetic_rows(len(y), seed),
    )
