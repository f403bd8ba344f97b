"""Scoring a classification of long captures against what was really asked.

A researcher who classifies long captures of known commands (a public data
set's files, each holding several requests of one command, its label in the
file name or a manifest) wants the accuracy, not only the predictions.
:func:`truth_of` reads the truth: a manifest CSV of ``file,label`` rows (the
column may be ``path``; paths relative to the manifest or bare file names),
or a regular expression on the file names, the same as ``catalog import
--label-from`` (:func:`echolab.db.transfer.label_from_name`). :func:`score`
compares every request's predicted class with its file's label: accuracy,
per-class accuracy, the confusion counts, and the files the truth does not
cover or whose request count differs from the one expected.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from echolab.errors import EcholabError


class TruthError(EcholabError):
    """The truth to score against cannot be read (a bad manifest or pattern, or nothing it labels)."""


@dataclass
class Truth:
    """The label of each capture file, by path and by bare name (a manifest may give either)."""

    by_path: dict[str, str] = field(default_factory=dict)
    by_name: dict[str, str] = field(default_factory=dict)
    source: str = ""

    def label(self, path: Path | str) -> str | None:
        p = Path(path)
        return self.by_path.get(str(p.resolve())) or self.by_name.get(p.name)


def truth_from_manifest(manifest: Path | str) -> Truth:
    """``file,label`` (or ``path,label``) rows; a relative path is taken from the manifest's folder."""
    manifest = Path(manifest)
    try:
        with open(manifest, newline="") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip().lower() for c in reader.fieldnames or []]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TruthError(f"cannot read the truth manifest {manifest}: {exc}") from exc
    key = "file" if "file" in columns else "path" if "path" in columns else None
    if key is None or "label" not in columns:
        raise TruthError(f"the truth manifest {manifest} needs 'file' (or 'path') and 'label' columns; "
                         f"it has {', '.join(columns) or 'none'}")
    names = dict(zip(columns, reader.fieldnames or []))
    truth = Truth(source=str(manifest))
    for row in rows:
        file, label = (row.get(names[key]) or "").strip(), (row.get(names["label"]) or "").strip()
        if not file or not label:
            continue
        path = Path(file) if Path(file).is_absolute() else manifest.parent / file
        truth.by_path[str(path.resolve())] = label
        truth.by_name.setdefault(Path(file).name, label)
    if not truth.by_path:
        raise TruthError(f"the truth manifest {manifest} labels no file")
    return truth


def truth_from_names(paths: Sequence[Path | str], pattern: str) -> Truth:
    """Each file's label by *pattern* on its name (as ``catalog import --label-from``)."""
    from echolab.db.transfer import label_from_name

    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise TruthError(f"--label-from {pattern!r} is not a regular expression: {exc}") from exc
    truth = Truth(source=f"file names by {pattern!r}")
    for path in paths:
        label = label_from_name(rx, Path(path).name)
        if label is not None:
            truth.by_path[str(Path(path).resolve())] = label
    if not truth.by_path:
        raise TruthError(f"--label-from {pattern!r} matches none of the {len(paths)} file names",
                         hint="try the pattern on a name first: python -c \"import re; print(re.search(PATTERN, NAME))\"")
    return truth


def truth_of(paths: Sequence[Path | str], *, manifest: Path | str | None = None,
             label_from: str | None = None) -> Truth:
    """The truth from a manifest or from the file names (one of them)."""
    if (manifest is None) == (label_from is None):
        raise TruthError("score against a manifest (--truth) or the file names (--label-from), one of them")
    return truth_from_manifest(manifest) if manifest is not None else truth_from_names(paths, label_from or "")


@dataclass
class Score:
    """Requests scored against their file's label."""

    truth: str
    scored: int = 0
    right: int = 0
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)  # {true: {predicted: n}}
    unlabelled: list[str] = field(default_factory=list)  # files the truth does not name
    counts_off: list[tuple[str, int, int]] = field(default_factory=list)  # (file, requests, expected)

    @property
    def accuracy(self) -> float | None:
        """% of scored requests predicted as their file's label."""
        return 100.0 * self.right / self.scored if self.scored else None

    def per_class(self) -> dict[str, tuple[int, float]]:
        """Per true class: requests and the % predicted right, worst first."""
        out = {t: (sum(row.values()), 100.0 * row.get(t, 0) / sum(row.values())) for t, row in self.confusion.items()}
        return dict(sorted(out.items(), key=lambda kv: (kv[1][1], kv[0])))

    def top_confusions(self, top: int = 10) -> list[tuple[str, str, int]]:
        """The most frequent (true, predicted, requests) mistakes."""
        pairs = Counter({(t, p): n for t, row in self.confusion.items() for p, n in row.items() if p != t})
        return [(t, p, n) for (t, p), n in pairs.most_common(top)]

    def to_json(self) -> dict[str, Any]:
        return {"truth": self.truth, "scored": self.scored, "right": self.right, "accuracy": self.accuracy,
                "confusion": self.confusion, "unlabelled": self.unlabelled,
                "counts_off": [{"file": f, "requests": n, "expected": e} for f, n, e in self.counts_off]}


def score(outcomes: Sequence[Any], truth: Truth, *, expect: int | None = None) -> Score:
    """Score each outcome's predictions (``CaptureOutcome``) against its file's label in *truth*."""
    result = Score(truth.source)
    for outcome in outcomes:
        if expect is not None and len(outcome.predictions) != expect:
            result.counts_off.append((str(outcome.source), len(outcome.predictions), expect))
        label = truth.label(outcome.source)
        if label is None:
            result.unlabelled.append(str(outcome.source))
            continue
        row = result.confusion.setdefault(label, {})
        for p in outcome.predictions:
            row[p.label] = row.get(p.label, 0) + 1
            result.scored += 1
            result.right += p.label == label
    if not result.scored and outcomes:
        raise TruthError(f"the truth ({truth.source}) labels none of the {len(outcomes)} classified files",
                         hint="a manifest names files by path (relative to it) or by bare file name")
    return result


def confusion_table(result: Score, classes: Sequence[str] = ()) -> tuple[list[str], list[list[int]]]:
    """The confusion counts as a square table over the true and predicted classes (*classes* first)."""
    seen = set(result.confusion) | {p for row in result.confusion.values() for p in row}
    order = [c for c in classes if c in seen] + sorted(seen - set(classes))
    return order, [[result.confusion.get(t, {}).get(p, 0) for p in order] for t in order]


__all__ = ["Score", "Truth", "TruthError", "confusion_table", "score", "truth_from_manifest", "truth_from_names",
           "truth_of"]
