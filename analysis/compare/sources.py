"""What an analysis reads: a :class:`DataSource`, here the catalog's captures.

A source holds one record per capture (whatever its ``make_transformer``'s
transformers take), the labels, the campaigns and the captures' identities.
:func:`catalog_source` reads the catalog's usable captures through the feature
cache; :mod:`echolab.analysis.compare.synthetic` makes a stand-in of the same
shape.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

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
