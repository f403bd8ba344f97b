"""Naming captures in bulk (by id, campaign, label, source file, status, cut check), to discard, restore or relabel them.

Not to be confused with :mod:`echolab.db.selection`, which chooses the captures a job reads.

A lab that imported a wrong campaign, a home whose files are suspect, or traces
that do not belong in a comparison sets them aside in one step, and takes them
back the same way: a discarded capture keeps its file and its reason (the audit
trail) and is left out of analysis; restoring makes it ``ok`` again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import PurePath
from typing import Sequence

from echolab.db.catalog import Catalog, CatalogError
from echolab.db.records import Capture, CaptureStatus


@dataclass(frozen=True)
class BulkFilter:
    """Which captures: each given filter must hold (none given: refused, so no command touches every capture
    by accident).

    *source* is a shell pattern (``*home2*``) on the file a capture was
    imported or cut from; *check* is ``ok`` or ``suspect`` (the cut's checks,
    :mod:`echolab.captures.quality`).
    """

    ids: tuple[int, ...] = ()
    campaign: str | None = None
    labels: tuple[str, ...] = ()
    source: str | None = None
    status: str | None = None
    check: str | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in {s.value for s in CaptureStatus}:
            raise CatalogError(f"unknown status {self.status!r}: use one of "
                               f"{', '.join(s.value for s in CaptureStatus)}")
        if self.check not in (None, "ok", "suspect"):
            raise CatalogError(f"unknown cut check {self.check!r}: use ok or suspect")

    @property
    def empty(self) -> bool:
        return not (self.ids or self.campaign or self.labels or self.source or self.status or self.check)

    def describe(self) -> str:
        parts = []
        if self.ids:
            parts.append("ids " + ", ".join(map(str, self.ids)))
        for name in ("campaign", "source", "status", "check"):
            if getattr(self, name):
                parts.append(f"{name} {getattr(self, name)}")
        if self.labels:
            parts.append("label " + ", ".join(self.labels))
        return "; ".join(parts) or "every capture"


def source_of(row: Capture) -> str | None:
    """The file a capture came from: the long capture it was cut from, or the file imported whole."""
    return row.source_path or row.source_file


def select_bulk(catalog: Catalog, selection: BulkFilter) -> list[Capture]:
    """The captures *selection* names, oldest first; an unknown id raises."""
    if selection.empty:
        raise CatalogError("name the captures: ids, --campaign, --label, --source, --status or --check",
                           hint="a bulk change of every capture is not taken without a filter")
    rows = catalog.captures(campaign=selection.campaign, status=selection.status)
    if selection.ids:
        wanted = set(selection.ids)
        for cid in wanted:
            catalog.get_capture(cid)  # raises for an unknown id
        rows = [r for r in rows if r.id in wanted]
    if selection.labels:
        rows = [r for r in rows if r.label in selection.labels]
    if selection.source:
        rows = [r for r in rows if _source_matches(r, selection.source)]
    if selection.check:
        rows = [r for r in rows if (r.cut_check or "ok").split(":")[0] == selection.check]
    return rows


def _source_matches(row: Capture, pattern: str) -> bool:
    source = source_of(row)
    return source is not None and (fnmatch(source, pattern) or fnmatch(PurePath(source).name, pattern))


@dataclass
class BulkChange:
    """What a bulk discard or restore changed, and what it left as it was."""

    changed: list[int] = field(default_factory=list)
    unchanged: list[tuple[int, str]] = field(default_factory=list)  # (id, why)


def discard_selected(catalog: Catalog, selection: BulkFilter, reason: str) -> BulkChange:
    """Discard every selected capture not discarded yet, with *reason*, in one transaction."""
    if not reason.strip():
        raise CatalogError("a discard needs a reason (--reason)")
    done = BulkChange()
    with catalog.transaction():
        for row in select_bulk(catalog, selection):
            if row.status == CaptureStatus.discarded.value:
                done.unchanged.append((row.id, "already discarded"))
                continue
            row.status, row.reason = CaptureStatus.discarded.value, reason
            done.changed.append(row.id)
    return done


def restore_selected(catalog: Catalog, selection: BulkFilter) -> BulkChange:
    """Make every selected discarded capture ``ok`` again, in one transaction (others are left as they are)."""
    done = BulkChange()
    with catalog.transaction():
        for row in select_bulk(catalog, selection):
            if row.status != CaptureStatus.discarded.value:
                done.unchanged.append((row.id, f"not discarded ({row.status})"))
                continue
            row.status, row.reason = CaptureStatus.ok.value, None
            done.changed.append(row.id)
    return done


def bulk_filter(ids: Sequence[int] = (), *, campaign: str | None = None, labels: Sequence[str] = (),
              source: str | None = None, status: str | None = None, check: str | None = None) -> BulkFilter:
    """A :class:`BulkFilter` from plain arguments (lists as a command line gives them)."""
    return BulkFilter(tuple(ids), campaign, tuple(labels), source, status, check)


__all__ = ["BulkChange", "BulkFilter", "bulk_filter", "discard_selected", "restore_selected", "select_bulk", "source_of"]
