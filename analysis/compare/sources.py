"""What an analysis reads: a :class:`DataSource` from the catalog, or a synthetic one.

A source holds one record per capture (whatever its ``make_transformer``'s
transformers take), the labels, the campaigns and the captures' identities.
:func:`catalog_source` reads the catalog's usable captures through the feature
cache; :func:`synthetic_source` makes a realistic stand-in with the same shape,
for trying the toolkit, tests and benches.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from echolab.analysis.compare.specs import AnalysisError
from echolab.prompts.classes import STUDY_CLASSES
from echolab.progress import ProgressCallback

TransformerFactory = Callable[..., Any]


@dataclass
class DataSource:
    """What an analysis reads: per-capture records, labels, campaigns and identities.

    ``records`` are whatever ``make_transformer(set_name, **options)``'s
    transformers take (the catalog's data set, or synthetic rows). The source is
    put in a canonical order (by capture hash) so that the same captures give the
    same trial splits however the catalog returned them.
    """

    records: Sequence[Any]
    y: np.ndarray
    groups: np.ndarray
    sha256s: list[str]
    capture_ids: list[int | None]
    make_transformer: TransformerFactory
    description: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.y = np.asarray(self.y).astype(str)
        self.groups = np.asarray(self.groups).astype(str)
        n = len(self.y)
        if not (len(self.records) == len(self.groups) == len(self.sha256s) == len(self.capture_ids) == n):
            raise AnalysisError("records, labels, campaigns and hashes differ in length")

    def canonical(self) -> "DataSource":
        order = sorted(range(len(self.y)), key=lambda i: (self.sha256s[i], self.y[i]))
        idx = np.asarray(order, dtype=int)
        return replace(
            self,
            records=take(self.records, idx),
            y=self.y[idx],
            groups=self.groups[idx],
            sha256s=[self.sha256s[i] for i in order],
            capture_ids=[self.capture_ids[i] for i in order],
        )

    def fingerprint(self) -> str:
        """A hash of the sorted (capture sha256, label) pairs: what the data set is."""
        h = hashlib.sha256()
        for sha, label in sorted(zip(self.sha256s, self.y.tolist())):
            h.update(f"{sha}\t{label}\n".encode())
        return h.hexdigest()

    def groups_fingerprint(self) -> str:
        h = hashlib.sha256()
        for sha, group in sorted(zip(self.sha256s, self.groups.tolist())):
            h.update(f"{sha}\t{group}\n".encode())
        return h.hexdigest()

    def classes(self) -> list[str]:
        present = set(self.y.tolist())
        ordered = [c for c in STUDY_CLASSES if c in present]
        return ordered + sorted(present - set(ordered))


def take(records: Sequence[Any], idx: np.ndarray) -> Sequence[Any]:
    """The records at *idx* (an array's rows, or a list's items)."""
    if isinstance(records, np.ndarray):
        return records[idx]
    return [records[int(i)] for i in idx]


def catalog_source(catalog: Any, *, device_ip: str | None = None,
                   progress: ProgressCallback | None = None) -> DataSource:
    """The catalog's good captures, through the feature extraction of ``echolab.analysis.features.sets``.

    *progress* is called as captures not yet in the feature cache are read
    (``echolab.progress``).
    """
    from echolab.analysis.features import sets as features

    ds = features.load_dataset(catalog, device_ip=device_ip, progress=progress)
    if len(ds.y) == 0:
        raise AnalysisError("the catalog has no usable captures to analyse; collect or import some first")
    return DataSource(
        records=ds.records,
        y=np.asarray(ds.y),
        groups=np.asarray(ds.campaigns),
        sha256s=list(ds.sha256s),
        capture_ids=list(ds.capture_ids),
        make_transformer=features.make_transformer,
        description=f"catalog {getattr(catalog.lab, 'root', '')}",
        notes=_skipped_notes(getattr(ds, "skipped", [])),
    )


def _skipped_notes(skipped: Sequence[tuple[int, str]]) -> list[str]:
    if not skipped:
        return []
    shown = "; ".join(f"capture {cid}: {why}" for cid, why in list(skipped)[:10])
    more = f" (and {len(skipped) - 10} more)" if len(skipped) > 10 else ""
    return [f"{len(skipped)} unusable captures left out: {shown}{more}"]


# Synthetic data: stands in for real features while developing, and in tests and benches.

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
) -> DataSource:
    """A realistic stand-in for the study's data: 52 columns (22 "tcptrace" + 30 "histogram").

    Each block has a few informative directions (class means), correlated
    copies and noise columns, scaled so that the classifiers land near the
    study's accuracies (roughly 85-97%). Campaigns are assigned round robin.
    """
    rng = np.random.default_rng(seed)
    k = len(classes)
    y = np.repeat(np.asarray(classes), n_per_class)
    blocks = []
    for width, n_inf, sep in ((22, 6, 2.9 * separation), (30, 8, 1.1 * separation)):
        centers = rng.normal(0.0, sep, size=(k, n_inf))
        labels = np.repeat(np.arange(k), n_per_class)
        inf = centers[labels] + rng.normal(0.0, 1.0, size=(len(y), n_inf))
        mix = rng.normal(0.0, 1.0, size=(n_inf, width - n_inf)) / np.sqrt(n_inf)
        rest = inf @ mix + rng.normal(0.0, 0.7, size=(len(y), width - n_inf))
        block = np.hstack([inf, rest]) * rng.uniform(0.5, 50.0, size=width) + rng.uniform(-5, 5, size=width)
        blocks.append(block)
    X = np.hstack(blocks)
    groups = np.asarray([f"synthetic-{i % campaigns + 1}" for i in range(len(y))])
    shas = [hashlib.sha256(row.tobytes() + str(i).encode()).hexdigest() for i, row in enumerate(X)]
    return DataSource(
        records=X,
        y=y,
        groups=groups,
        sha256s=shas,
        capture_ids=[None] * len(y),
        make_transformer=synthetic_transformer,
        description=f"synthetic ({len(y)} rows x 52 columns, seed {seed})",
        notes=["synthetic data: feature options (bins, ACKs, ablations) do not apply"],
    )
