"""What an analysis reads: a :class:`DataSource` from the catalog, or a synthetic one.

A source holds one record per capture (whatever its ``make_transformer``'s
transformers take), the labels, the campaigns and the captures' identities.
:func:`catalog_source` reads the catalog's usable captures through the feature
cache; :mod:`echolab.analysis.compare.synthetic` makes synthetic rows of the same
shape (not tuned toward any published accuracy), for trying the toolkit, tests and benches.
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

    ``groupings`` holds each capture's group under every grouping of
    ``splits.GROUPINGS`` the source knows (``campaign`` at least, from
    ``groups``); ``provenance`` says where the data came from
    (:mod:`echolab.analysis.compare.provenance`); ``extraction`` names what
    turned captures into records (extractor version, device address per
    capture), part of every trial's cache key.

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
    groupings: dict[str, np.ndarray] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    extraction: list[str] = field(default_factory=list)
    #: What the canonical order sorts by, when not the capture's hash: a defended capture sorts by its
    #: original's, so a defended campaign's trials hold the same requests as its original's.
    order_keys: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.y = np.asarray(self.y).astype(str)
        self.groups = np.asarray(self.groups).astype(str)
        self.groupings = {k: np.asarray(v).astype(str) for k, v in self.groupings.items()}
        self.groupings.setdefault("campaign", self.groups)
        if any(len(v) != len(self.y) for v in self.groupings.values()):
            raise AnalysisError("a grouping differs in length from the labels")
        n = len(self.y)
        if not (len(self.records) == len(self.groups) == len(self.sha256s) == len(self.capture_ids) == n):
            raise AnalysisError("records, labels, campaigns and hashes differ in length")

    def canonical(self) -> "DataSource":
        keys = self.order_keys or self.sha256s
        order = sorted(range(len(self.y)), key=lambda i: (keys[i], self.y[i]))
        idx = np.asarray(order, dtype=int)
        return replace(
            self,
            records=take(self.records, idx),
            y=self.y[idx],
            groups=self.groups[idx],
            sha256s=[self.sha256s[i] for i in order],
            capture_ids=[self.capture_ids[i] for i in order],
            groupings={k: v[idx] for k, v in self.groupings.items()},
            extraction=[self.extraction[i] for i in order] if self.extraction else [],
            order_keys=[self.order_keys[i] for i in order] if self.order_keys else [],
        )

    def fingerprint(self) -> str:
        """A hash of the sorted (capture sha256, label) pairs: what the data set is."""
        h = hashlib.sha256()
        for sha, label in sorted(zip(self.sha256s, self.y.tolist())):
            h.update(f"{sha}\t{label}\n".encode())
        return h.hexdigest()

    def groups_fingerprint(self, grouping: str = "campaign") -> str:
        h = hashlib.sha256()
        for sha, group in sorted(zip(self.sha256s, self.groupings[grouping].tolist())):
            h.update(f"{sha}\t{group}\n".encode())
        return h.hexdigest()

    def extraction_fingerprint(self) -> str:
        """A hash of what made each record: (capture sha256, extractor version and device address) pairs."""
        h = hashlib.sha256()
        for sha, how in sorted(zip(self.sha256s, self.extraction or [""] * len(self.sha256s))):
            h.update(f"{sha}\t{how}\n".encode())
        return h.hexdigest()

    def subset(self, keep: np.ndarray, note: str | None = None) -> "DataSource":
        """The rows where *keep* is true (a boolean mask), with *note* added to the notes."""
        idx = np.flatnonzero(np.asarray(keep, dtype=bool))
        return replace(
            self,
            records=take(self.records, idx),
            y=self.y[idx],
            groups=self.groups[idx],
            sha256s=[self.sha256s[i] for i in idx],
            capture_ids=[self.capture_ids[i] for i in idx],
            groupings={k: v[idx] for k, v in self.groupings.items()},
            extraction=[self.extraction[i] for i in idx] if self.extraction else [],
            notes=[*self.notes, note] if note else list(self.notes),
        )

    def classes(self) -> list[str]:
        present = set(self.y.tolist())
        ordered = [c for c in STUDY_CLASSES if c in present]
        return ordered + sorted(present - set(ordered))


def take(records: Sequence[Any], idx: np.ndarray) -> Sequence[Any]:
    """The records at *idx* (an array's rows, or a list's items)."""
    if isinstance(records, np.ndarray):
        return records[idx]
    return [records[int(i)] for i in idx]


def catalog_source(catalog: Any, *, device_ip: str | None = None, progress: ProgressCallback | None = None,
                   campaigns: Sequence[str | int] = (), selection: Any = None) -> DataSource:
    """The catalog's good captures, through the feature extraction of ``echolab.analysis.features.sets``.

    *selection* (an ``echolab.db.selection.Selection``) narrows them; its
    ``min_per_class`` counts the captures that give features, and the notes
    say what it left out. *campaigns* narrow it further. Unless campaigns are
    named, the defended captures are left out (``echolab defend`` writes
    those, ``collect --defense`` collects them live; name their campaign to analyse them). *progress* is called as captures not yet in the
    feature cache are read (``echolab.progress``).
    """
    from echolab.analysis.compare import provenance
    from echolab.analysis.compare.splits import capture_groups
    from echolab.analysis.features import sets as features
    from echolab.db.selection import EVERYTHING, Selection, select, small_classes, small_note

    chosen_by = selection or EVERYTHING
    if campaigns:
        chosen_by = chosen_by.narrowed(Selection.of(campaigns=campaigns))
    chosen = select(catalog, chosen_by)
    rows = chosen.captures if chosen_by.campaigns else [c for c in chosen.captures if c.defense is None]
    ds = features.load_dataset(catalog, device_ip=device_ip, progress=progress, captures=rows)
    if len(ds.y) == 0:
        raise AnalysisError("the catalog has no usable captures to analyse; collect or import some first")
    by_id = {c.id: c for c in rows}
    used = [by_id[i] for i in ds.capture_ids]
    source = DataSource(
        records=ds.records,
        y=np.asarray(ds.y),
        groups=np.asarray(ds.campaigns),
        sha256s=list(ds.sha256s),
        capture_ids=list(ds.capture_ids),
        make_transformer=features.make_transformer,
        description=f"catalog {getattr(catalog.lab, 'root', '')}",
        notes=_skipped_notes(getattr(ds, "skipped", [])),
        groupings={k: np.asarray(v) for k, v in capture_groups(used).items()},
        provenance=provenance.of_captures(used),
        extraction=[f"{r.version}@{r.device_ip}" for r in ds.records],
        order_keys=[(getattr(c, "original", None) or c).sha256 or "" for c in used],
    )
    source.notes[:0] = chosen.notes()
    minimum = chosen.selection.min_per_class
    small = small_classes(source.y.tolist(), minimum)
    if small:  # classes that had enough captures but not enough that give features
        source = source.subset(~np.isin(source.y, list(small)), small_note(small, minimum or 0) + " (usable)")
    if not len(source.y):
        raise AnalysisError(f"no usable captures left to analyse ({chosen.selection.describe()})")
    return source


def _subset(ds: Any, keep: Sequence[int]) -> Any:
    """The rows *keep* of a ``features.sets.Dataset``."""
    return replace(ds, records=[ds.records[i] for i in keep], y=ds.y[list(keep)],
                   capture_ids=[ds.capture_ids[i] for i in keep], campaigns=[ds.campaigns[i] for i in keep],
                   sha256s=[ds.sha256s[i] for i in keep])


def _skipped_notes(skipped: Sequence[tuple[int, str]]) -> list[str]:
    if not skipped:
        return []
    shown = "; ".join(f"capture {cid}: {why}" for cid, why in list(skipped)[:10])
    more = f" (and {len(skipped) - 10} more)" if len(skipped) > 10 else ""
    return [f"{len(skipped)} unusable captures left out: {shown}{more}"]
