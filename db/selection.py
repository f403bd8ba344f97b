"""Which catalogued captures a job reads: one :class:`Selection`, taken by every job that chooses data.

The comparison (``Lab.compare``, ``analyze run``), training (``Lab.train``,
``analyze train``), export (``Lab.export``, ``catalog export``) and the
feature tables read the captures a :class:`Selection` names: some campaigns,
some labels or all but some, captures or packet traces only, and classes
with at least a number of captures. A lab that holds two homes' captures, a
set of public traces and a few mislabelled test files can then compare on
exactly the part it means, without discarding the rest.

:func:`select` reads the selection from the catalog (the query itself is
:meth:`echolab.db.catalog.Catalog.selected_captures`) and says what it left
out, so that a report can say it too. :func:`small_classes` is the one rule of
``min_per_class``, used again by the comparison on the captures that give
features.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from echolab.db.errors import CatalogError

if TYPE_CHECKING:
    from echolab.db.catalog import Catalog
    from echolab.db.records import Capture

#: What ``--kind`` chooses: pcap/pcapng captures, or ``time,size,direction`` packet traces.
KINDS = ("capture", "trace")


class SelectionError(CatalogError):
    """A selection names something the catalog does not hold, or leaves nothing to work on."""


def _names(value: str | int | Iterable[str | int] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, int)):
        return (str(value),)
    return tuple(str(v) for v in value)


@dataclass(frozen=True)
class Selection:
    """The captures a job reads: every field narrows it; the default is every good capture.

    *campaigns*: names or ids (any of them); *labels*: only these classes;
    *exclude_labels*: all but these; *min_per_class*: leave out classes with
    fewer captures; *kind*: ``capture`` (pcap, pcapng) or ``trace`` (packet
    traces) only; *status*: ``ok`` (default), ``discarded``, or ``None`` for all.
    """

    campaigns: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    exclude_labels: tuple[str, ...] = ()
    min_per_class: int | None = None
    kind: str | None = None
    status: str | None = "ok"

    @classmethod
    def of(cls, *, campaigns: str | int | Iterable[str | int] | None = None,
           labels: str | Iterable[str] | None = None, exclude_labels: str | Iterable[str] | None = None,
           min_per_class: int | None = None, kind: str | None = None, status: str | None = "ok") -> "Selection":
        """A checked selection from loose arguments (a name or a list of names)."""
        made = cls(_names(campaigns), _names(labels), _names(exclude_labels), min_per_class, kind, status)
        made.check()
        return made

    def check(self) -> None:
        if self.kind is not None and self.kind not in KINDS:
            raise SelectionError(f"--kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.min_per_class is not None and self.min_per_class < 1:
            raise SelectionError("--min-per-class must be at least 1")
        both = sorted(set(self.labels) & set(self.exclude_labels))
        if both:
            raise SelectionError(f"label(s) {', '.join(both)} both chosen (--label) and left out (--exclude-label)")

    def narrowed(self, other: "Selection") -> "Selection":
        """This selection further narrowed by *other*'s fields where *other* sets them."""
        return Selection(
            campaigns=other.campaigns or self.campaigns,
            labels=other.labels or self.labels,
            exclude_labels=tuple(dict.fromkeys(self.exclude_labels + other.exclude_labels)),
            min_per_class=other.min_per_class if other.min_per_class is not None else self.min_per_class,
            kind=other.kind or self.kind,
            status=self.status if other.status == "ok" else other.status,
        )

    @property
    def everything(self) -> bool:
        """Whether nothing but the status narrows it."""
        return not (self.campaigns or self.labels or self.exclude_labels or self.min_per_class or self.kind)

    def describe(self) -> str:
        """One line: what is chosen (``campaigns a, b; labels x; kind capture; classes with 10+``)."""
        parts = []
        if self.campaigns:
            parts.append("campaign" + ("s " if len(self.campaigns) > 1 else " ") + ", ".join(self.campaigns))
        if self.labels:
            parts.append("label" + ("s " if len(self.labels) > 1 else " ") + ", ".join(self.labels))
        if self.exclude_labels:
            parts.append("without " + ", ".join(self.exclude_labels))
        if self.kind:
            parts.append(f"{self.kind}s only")
        if self.min_per_class:
            parts.append(f"classes with {self.min_per_class}+ captures")
        if self.status != "ok":
            parts.append(f"status {self.status or 'any'}")
        return "; ".join(parts) or "every good capture"

    def to_json(self) -> dict[str, Any]:
        return {"campaigns": list(self.campaigns), "labels": list(self.labels),
                "exclude_labels": list(self.exclude_labels), "min_per_class": self.min_per_class,
                "kind": self.kind, "status": self.status}


EVERYTHING = Selection()


@dataclass
class Selected:
    """The captures a selection chose, and the classes ``min_per_class`` left out (``{class: captures}``)."""

    selection: Selection
    captures: list["Capture"]
    small: dict[str, int] = field(default_factory=dict)

    def notes(self) -> list[str]:
        """What a report says about the choice (nothing for every good capture)."""
        out = [] if self.selection.everything else [f"selection: {self.selection.describe()}"]
        if self.small:
            out.append(small_note(self.small, self.selection.min_per_class or 0))
        return out


def small_classes(labels: Sequence[str], minimum: int | None) -> dict[str, int]:
    """The classes of *labels* with fewer than *minimum* items, and how many they have."""
    if not minimum:
        return {}
    counts = Counter(labels)
    return {c: n for c, n in sorted(counts.items()) if n < minimum}


def small_note(small: dict[str, int], minimum: int) -> str:
    listed = ", ".join(f"{c} ({n})" for c, n in sorted(small.items(), key=lambda kv: (kv[1], kv[0])))
    return f"{len(small)} classes with fewer than {minimum} captures left out: {listed}"


def select(catalog: "Catalog", selection: Selection = EVERYTHING) -> Selected:
    """The captures *selection* names, oldest first; an unknown campaign or label is an error,
    and so is a selection that leaves nothing."""
    selection.check()
    rows = catalog.selected_captures(selection)
    known = set(catalog.labels()) if (selection.labels or selection.exclude_labels) else set()
    unknown = sorted(set(selection.labels + selection.exclude_labels) - known)
    if unknown:
        raise SelectionError(f"no captures labelled {', '.join(unknown)} in the catalog",
                             hint="'echolab catalog stats' lists the labels")
    small = small_classes([c.label for c in rows], selection.min_per_class)
    if small:
        rows = [c for c in rows if c.label not in small]
    if not rows:
        what = selection.describe()
        raise SelectionError(f"no captures left to work on ({what})" + (
            f"; {small_note(small, selection.min_per_class or 0)}" if small else ""),
            hint="'echolab catalog stats' counts the captures per class and campaign")
    return Selected(selection, rows, small)


__all__ = ["EVERYTHING", "KINDS", "Selected", "Selection", "SelectionError", "select", "small_classes",
           "small_note"]
