"""Labels a lab can fix: relabel captures, a map of labels spelled differently, a preview of a pattern's labels.

A wrong ``--label-from`` at import, two homes that spell one command two ways
(``..._until_christmas`` / ``..._untill_christmas``), a class renamed: each is
fixed in the catalog, without importing again. :func:`relabel` takes the new
label from one name, a regular-expression substitution on the old labels, a
label map (a CSV of ``from,to`` rows, optionally per campaign), or the file
names again with another pattern. Analysis runs that used a relabelled
capture are marked stale, as a re-cut does. :func:`preview_labels` shows what
a pattern makes of a folder's file names before anything is imported, and
warns when many files collapse into few labels (``\\d+`` matching a number
instead of the command's name).
"""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Sequence

from sqlalchemy import select as sql_select

from echolab.captures.checks import CHECKS
from echolab.captures.compressed import plain_name
from echolab.db.catalog import Catalog, CatalogError
from echolab.db.records import AnalysisRun, Capture
from echolab.db.bulk import BulkFilter, select_bulk, source_of

LABEL_MAX = 100  # the catalog's label column


@dataclass(frozen=True)
class LabelMap:
    """Labels to rename: ``(campaign or None, from) -> to``; a row without a campaign holds for every campaign."""

    rows: dict[tuple[str | None, str], str]

    def get(self, label: str, campaign: str | None = None) -> str | None:
        """The new label of *label* in *campaign* (a row for that campaign first), or None to keep it."""
        return self.rows.get((campaign, label), self.rows.get((None, label)))

    def __len__(self) -> int:
        return len(self.rows)


def read_label_map(path: Path | str) -> LabelMap:
    """A label map from a CSV file with ``from`` and ``to`` columns and an optional ``campaign`` column."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            fields = {(f or "").strip().lower() for f in reader.fieldnames or []}
            if not {"from", "to"} <= fields:
                raise CatalogError(f"label map {path} needs 'from' and 'to' columns (and may have 'campaign')")
            rows: dict[tuple[str | None, str], str] = {}
            for line, row in enumerate(reader, start=2):
                row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
                old, new, camp = row.get("from", ""), row.get("to", ""), row.get("campaign") or None
                if not old or not new:
                    raise CatalogError(f"line {line} of {path.name} needs a label in both 'from' and 'to'")
                _check_label(new, f"line {line} of {path.name}")
                if rows.get((camp, old), new) != new:
                    raise CatalogError(f"line {line} of {path.name} maps {old!r} a second time, to another label")
                rows[(camp, old)] = new
    except OSError as exc:
        raise CatalogError(f"cannot read label map {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CatalogError(f"label map {path} is not a text CSV file") from exc
    return LabelMap(rows)


def _check_label(label: str, where: str) -> None:
    if not label.strip() or len(label) > LABEL_MAX or "/" in label:
        raise CatalogError(f"{where}: {label!r} is not a label (1 to {LABEL_MAX} characters, no '/')")


@dataclass
class Relabelled:
    """What a relabel changed: ``(id, old, new)`` per capture, the captures it could not label, runs gone stale."""

    changed: list[tuple[int, str, str]] = field(default_factory=list)
    unchanged: int = 0  # selected, already so labelled
    unmatched: list[tuple[int, str]] = field(default_factory=list)  # (id, why no label came of it)
    stale_runs: list[str] = field(default_factory=list)
    dry_run: bool = False

    def renames(self) -> Counter[tuple[str, str]]:
        """How many captures went from each old label to each new one."""
        return Counter((old, new) for _id, old, new in self.changed)


def relabel(catalog: Catalog, selection: BulkFilter | None = None, *, to: str | None = None,
            match: str | None = None, label_map: LabelMap | None = None, label_from: str | None = None,
            dry_run: bool = False) -> Relabelled:
    """Give the selected captures (all, for a map, a match or a pattern without a selection) new labels.

    Exactly one way: *to* alone (every selected capture gets it), *match* with
    *to* (a regular expression on the labels; each match is replaced by *to*,
    which may name groups as ``\\1``), *label_map*, or *label_from* (the label
    read again from the file each capture was imported or cut from). One
    transaction; with *dry_run*, nothing is written.
    """
    ways = sum(x is not None for x in (match, label_map, label_from)) + (to is not None and match is None)
    if ways != 1:
        raise CatalogError("relabel one way: --to NEW, --match REGEX --to NEW, --map FILE or --label-from REGEX")
    rx = _compile(match, "--match") if match is not None else None
    name_rx = _compile(label_from, "--label-from") if label_from is not None else None
    if rx is not None and to is None:
        raise CatalogError("--match needs --to (the replacement)")
    if to is not None and rx is None:
        _check_label(to, "--to")
        if selection is None or selection.empty:
            raise CatalogError("--to alone needs the captures to relabel: ids, --label, --campaign or --source")
    done = Relabelled(dry_run=dry_run)
    with catalog.transaction():
        rows = select_bulk(catalog, selection) if selection is not None and not selection.empty else \
            catalog.captures(status=None)
        for row in rows:
            new = _new_label(row, to, rx, label_map, name_rx, done)
            if new is None:
                continue
            if new == row.label:
                done.unchanged += 1
                continue
            done.changed.append((row.id, row.label, new))
            if not dry_run:
                row.label = new
        if not dry_run and done.changed:
            done.stale_runs = _mark_runs_stale(catalog, {cid for cid, _old, _new in done.changed})
            _refresh_classes(catalog, rows)
    return done


def apply_labels(catalog: Catalog, changes: Sequence[tuple[Capture, str]]) -> Relabelled:
    """Give each capture its new label, in the open transaction or one of its own (runs that used one go stale)."""
    done = Relabelled()
    with catalog.transaction():
        for row, new in changes:
            _check_label(new, f"capture {row.id}")
            if row.label == new:
                done.unchanged += 1
                continue
            done.changed.append((row.id, row.label, new))
            row.label = new
        if done.changed:
            done.stale_runs = _mark_runs_stale(catalog, {cid for cid, _old, _new in done.changed})
            _refresh_classes(catalog, [row for row, _new in changes])
    return done


def _compile(pattern: str, option: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise CatalogError(f"{option} {pattern!r} is not a regular expression: {exc}") from exc


def _new_label(row: Capture, to: str | None, rx: re.Pattern[str] | None, label_map: LabelMap | None,
               name_rx: re.Pattern[str] | None, done: Relabelled) -> str | None:
    if rx is not None:
        if not rx.search(row.label):
            return None
        new = rx.sub(to or "", row.label)
    elif label_map is not None:
        new = label_map.get(row.label, row.campaign.name)
        if new is None:
            return None
    elif name_rx is not None:
        from echolab.db.transfer import label_from_name

        source = source_of(row)
        if source is None:
            done.unmatched.append((row.id, "the catalog holds no file name for it (imported before file names "
                                           "were kept)"))
            return None
        new = label_from_name(name_rx, plain_name(PurePath(source).name))
        if new is None:
            done.unmatched.append((row.id, f"{PurePath(source).name} is not matched by the pattern"))
            return None
    else:
        new = to
    assert new is not None
    try:
        _check_label(new, f"capture {row.id}")
    except CatalogError as exc:
        done.unmatched.append((row.id, str(exc)))
        return None
    return new


def _mark_runs_stale(catalog: Catalog, ids: set[int]) -> list[str]:
    stale = []
    for run in catalog.session.scalars(sql_select(AnalysisRun)):
        used = sorted(ids & set(run.capture_ids or []))
        if used:
            run.status = "stale"
            run.stale_reason = f"captures {', '.join(map(str, used[:20]))}{' ...' if len(used) > 20 else ''} " \
                               "were relabelled"
            stale.append(run.name)
    return stale


def _refresh_classes(catalog: Catalog, rows: Sequence[Capture]) -> None:
    """Each touched campaign's class list: the labels its captures now have."""
    for camp in {r.campaign.id: r.campaign for r in rows}.values():
        labels = catalog.session.scalars(sql_select(Capture.label).where(Capture.campaign_id == camp.id)).all()
        camp.classes = sorted(set(labels))


# --------------------------------------------------------------------------- a pattern's labels, before import


@dataclass
class LabelPreview:
    """What a ``--label-from`` pattern makes of file names: the files of each label, those it does not match."""

    pattern: str
    labels: dict[str, list[str]]
    unmatched: list[str]

    @property
    def files(self) -> int:
        return sum(len(v) for v in self.labels.values()) + len(self.unmatched)

    def warning(self) -> str | None:
        """Why the labels look wrong, if they do: many files in few labels, or many files not matched."""
        matched = self.files - len(self.unmatched)
        if self.files and len(self.unmatched) > CHECKS.label_unmatched_share * self.files:
            return (f"{len(self.unmatched)} of {self.files} files are not matched by '{self.pattern}' "
                    f"(the first: {self.unmatched[0]})")
        numbers = sorted(k for k in self.labels if re.fullmatch(r"[\d_.:-]+", k))
        if numbers:
            return (f"{len(numbers)} labels are numbers ({', '.join(numbers[:3])}): does '{self.pattern}' take "
                    "a count or a date instead of the command's name?")
        if self.labels and matched / len(self.labels) > CHECKS.label_files_per_label:
            label, biggest = max(((k, len(v)) for k, v in self.labels.items()), key=lambda kv: kv[1])
            return (f"{matched} files fall into only {len(self.labels)} labels ({biggest} into {label!r}): "
                    f"does '{self.pattern}' take the whole command's name?")
        return None

    def rows(self) -> list[dict[str, object]]:
        return [{"label": k, "files": len(v), "first": v[0]} for k, v in sorted(self.labels.items())]


def preview_labels(paths: Sequence[Path], pattern: str) -> LabelPreview:
    """The labels *pattern* gives each file name of *paths* (see :func:`echolab.db.transfer.label_from_name`)."""
    from echolab.db.transfer import label_from_name

    rx = _compile(pattern, "--label-from")
    labels: dict[str, list[str]] = defaultdict(list)
    unmatched: list[str] = []
    for path in paths:
        name = plain_name(path)
        label = label_from_name(rx, name)
        if label is None:
            unmatched.append(Path(path).name)
        else:
            labels[label].append(Path(path).name)
    return LabelPreview(pattern, dict(labels), unmatched)


__all__ = ["LabelMap", "LabelPreview", "Relabelled", "apply_labels", "preview_labels", "read_label_map",
           "relabel"]
