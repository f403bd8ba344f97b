"""Bringing captures in (a folder, a CSV manifest, an exported tar) and taking them out.

A capture file is a pcap/pcapng, or a ``time,size,direction`` packet trace
(``echolab.captures.trace``, the form ``features export --set sequence`` writes
and public data sets use): a trace is imported like a capture and gives only
the sequence feature sets.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import tarfile
import tempfile
from collections import Counter
from dataclasses import dataclass, field, replace as _with
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from sqlalchemy import select

from echolab.captures.checks import CHECKS
from echolab.captures.compressed import is_gzip_capture, plain_name, unpack_to
from echolab.captures.quality import CampaignContext, CutChecksReport, CutVerdict, check_cuts
from echolab.captures.reader import CaptureError, CaptureSummary
from echolab.captures.trace import is_trace_file
from echolab.db.archive import MANIFEST_NAME, MAX_FIELD_BYTES, MAX_MANIFEST_BYTES, extract_export, is_tar, member_name
from echolab.progress import ProgressCallback
from echolab.db.catalog import Catalog, CatalogError, DuplicateCaptureError
from echolab.db.files import is_capture_name, sha256_file
from echolab.db.records import Backend, Campaign, CampaignStatus, Capture, CaptureStatus
from echolab.captures.cut import SplitResult, split_capture
from echolab.captures.device import DeviceGuess
from echolab.captures.pieces import write_pieces
from echolab.captures.spec import SplitError, SplitSpec
from echolab.safepaths import UnsafePathError, check_component, contained, is_inside

if TYPE_CHECKING:
    from echolab.db.labels import LabelMap, LabelPreview

MANIFEST_COLUMNS = (
    "id", "label", "status", "campaign", "path", "sha256", "size_bytes", "packet_count",
    "device_ip", "started_at", "ended_at", "synthetic", "reason",
)


@dataclass
class ImportItem:
    path: Path
    label: str
    campaign: str | None = None
    device_ip: str | None = None
    status: str = "ok"
    reason: str | None = None
    origin: Path | None = None  # the file as given, when *path* is its unpacked copy (NAME.pcap.gz)

    @property
    def shown(self) -> Path:
        """The file as the user named it."""
        return self.origin or self.path


@dataclass
class ImportReport:
    imported: list[int] = field(default_factory=list)  # new capture ids
    duplicates: list[str] = field(default_factory=list)  # source paths skipped (same sha256 known)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (source path, message)
    failed: list[tuple[str, str]] = field(default_factory=list)  # kept with status failed: (source path, reason)
    cuts: list["CutImport"] = field(default_factory=list)  # one per long capture cut into requests (--split)
    replaced: int = 0  # pieces of an earlier cut removed by --replace
    stale_runs: list[str] = field(default_factory=list)  # analysis runs marked stale by --replace
    skipped: list[tuple[str, str]] = field(default_factory=list)  # files of the folder not imported: (path, why)
    cut_short: list[tuple[str, str]] = field(default_factory=list)  # imported, but the file ends early: (path, how)
    long: list[tuple[str, float]] = field(default_factory=list)  # imported whole, lasting long: (path, seconds)
    relabelled: list[tuple[int, str, str]] = field(default_factory=list)  # --replace: (id, old label, new label)
    other_label: list[tuple[str, str, str]] = field(default_factory=list)  # duplicates labelled otherwise: (path, held, given)
    labels: "LabelPreview | None" = None  # with --label-from: the labels the pattern gave the files
    checks: list[CutChecksReport] = field(default_factory=list)  # with a cut: the checks of each campaign's files

    @property
    def suspect(self) -> list[CutVerdict]:
        """Files whose cut the checks found suspect (their requests are catalogued with the verdict)."""
        return [v for checked in self.checks for v in checked.suspect]

    @property
    def ok(self) -> bool:
        return not self.rejected


#: What echolab imports, for the reasons given about other files.
IMPORTABLE = ("pcap, pcapng or cap captures (also gzip-compressed, NAME.pcap.gz) and .csv packet traces "
              "with time, size and direction columns")


def is_importable(path: Path) -> bool:
    """A capture (plain or gzip-compressed) or a packet trace."""
    return is_capture_name(path) or is_gzip_capture(path) or is_trace_file(path)


def scan_folder(root: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """The importable files under *root*, and every other file with why it is not imported."""
    found, skipped = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if is_importable(path):
            found.append(path)
        elif path.suffix.lower() == ".csv":
            skipped.append((str(path), "a CSV file without time, size and direction columns (not a packet trace)"))
        else:
            skipped.append((str(path), f"not a capture: echolab imports {IMPORTABLE}"))
    return found, skipped


def _nothing_to_import(source: Path, skipped: list[tuple[str, str]]) -> CatalogError:
    """Why a folder gives no file to import, naming what it holds."""
    if not skipped:
        return CatalogError(f"{source} holds no file to import", hint=f"echolab imports {IMPORTABLE}")
    kinds = Counter(Path(p).suffix.lower() or "(no suffix)" for p, _ in skipped)
    held = ", ".join(f"{n} {suffix}" for suffix, n in kinds.most_common(5))
    return CatalogError(f"{source} holds {len(skipped)} files ({held}) and none echolab can import; "
                        f"the first: {skipped[0][0]}: {skipped[0][1]}", hint=f"echolab imports {IMPORTABLE}")


def items_from_folder(root: Path, paths: Sequence[Path] | None = None) -> Iterable[ImportItem]:
    """Capture files under *root* (or *paths*, found there), labelled by their first-level folder name."""
    for path in (scan_folder(root)[0] if paths is None else paths):
        parts = path.relative_to(root).parts
        if not is_inside(path, root):  # a link to a file elsewhere on the machine
            yield ImportItem(path, "", reason=f"{path} is a link to a file outside {root}; only files inside the "
                                              "folder are imported")
        elif len(parts) < 2:
            yield ImportItem(path, "", reason=f"{path} is not in a class folder (put it in a folder named for its "
                                              "class, label files by their names with --label-from, or use a "
                                              "manifest)")
        else:
            yield ImportItem(path, parts[0])


def items_from_manifest(manifest: Path, base: Path | None = None) -> Iterable[ImportItem]:
    """Rows of a CSV manifest with at least ``path`` and ``label`` columns."""
    base = base or manifest.parent
    rows = read_manifest(manifest)
    if rows and not {"path", "label"} <= set(rows[0]):
        raise CatalogError(f"manifest {manifest} needs 'path' and 'label' columns")
    statuses = {s.value for s in CaptureStatus}
    for line, row in enumerate(rows, start=2):
        path, label, status = (row.get("path") or "").strip(), (row.get("label") or "").strip(), row.get("status") or "ok"
        if not path or not label or status not in statuses:
            why = f"line {line} of {manifest.name} needs a path, a label and a status among {', '.join(sorted(statuses))}"
            yield ImportItem(base / path if path else manifest, "", reason=why)
            continue
        try:  # a row names a file inside the manifest's folder (or the import's source), never elsewhere
            where = contained(path, base, f"line {line} of {manifest.name}: path")
        except UnsafePathError as exc:
            yield ImportItem(Path(path), "", reason=str(exc))
            continue
        yield ImportItem(where, label, row.get("campaign") or None, row.get("device_ip") or None,
                         status=status, reason=row.get("reason") or None)


def read_manifest(manifest: Path) -> list[dict[str, str]]:
    """The rows of a CSV manifest; one line naming the file for one that is not UTF-8 CSV or too big."""
    try:
        if manifest.stat().st_size > MAX_MANIFEST_BYTES:
            raise CatalogError(f"manifest {manifest} is {manifest.stat().st_size} bytes; the limit is "
                               f"{MAX_MANIFEST_BYTES}")
        old_limit = csv.field_size_limit(MAX_FIELD_BYTES)
        try:
            with open(manifest, newline="", encoding="utf-8") as fh:
                return list(csv.DictReader(fh))
        finally:
            csv.field_size_limit(old_limit)
    except OSError as exc:
        raise CatalogError(f"cannot read manifest {manifest}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CatalogError(f"manifest {manifest} is not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV") from None
    except csv.Error as exc:
        raise CatalogError(f"manifest {manifest} is not a readable CSV: {exc} (a field over "
                           f"{MAX_FIELD_BYTES} bytes, or a broken quote)") from None


def import_captures(
    catalog: Catalog,
    source: Path,
    *,
    manifest: Path | None = None,
    campaign: str | None = None,
    device_ip: str | None = None,
    location: str | None = None,
    on_item: Callable[[ImportItem], None] | None = None,
    label_from: str | None = None,
    cut: SplitSpec | None = None,
    expect: int | None = None,
    replace: bool = False,
    progress: ProgressCallback | None = None,
    aliases: "LabelMap | None" = None,
) -> ImportReport:
    """Import capture files from a folder, a manifest or an exported tar.

    Each file is its own transaction; a file whose sha256 the catalog already
    holds is skipped and counted; a file that is not a capture is rejected
    with its reason and the import goes on. Files of a folder that are not
    captures are listed in ``report.skipped`` with why; a folder with nothing
    to import raises :class:`CatalogError` saying what it holds. A gzip-compressed
    capture (``NAME.pcap.gz``) is unpacked and imported as the capture inside.
    A capture whose file ends early is imported and listed in
    ``report.cut_short``; one imported whole that lasts longer than
    :attr:`~echolab.captures.checks.CutChecks.long_capture_s` (a long capture
    that wanted a cut) in ``report.long``. *progress* hears
    ``("importing", files done, files)`` (with a cut, ``"reading"`` and
    ``"cutting"`` first).

    *label_from* labels files by a regular expression on their name (see
    :func:`label_from_name`) instead of their folder (``report.labels``
    previews what it gave, with a warning when the labels look wrong);
    *aliases* renames labels as they come in (campaigns that spell a class
    differently). With *cut*, each file is a long capture cut into one capture
    per request first (see :func:`import_cut`); *expect* is how many requests
    each should hold. *replace* swaps an earlier, different cut of the same
    source for this one, and gives captures already catalogued under another
    label this import's label (``report.relabelled``); without it, they keep
    theirs and are listed in ``report.other_label``.

    A capture that holds no packet (or none of the device) is kept with status
    ``failed`` and its reason (``report.failed``), never ``ok``. Several
    importers may run at once: the duplicate check happens under the
    catalog's write lock, so each file is added once and counted as a
    duplicate by the others.
    """
    source = Path(source)
    if not source.exists():
        raise CatalogError(f"{source} does not exist")
    if source.is_file() and is_tar(source):
        with tempfile.TemporaryDirectory(dir=catalog.lab.tmp_dir) as tmp:
            inner = extract_export(source, Path(tmp))  # echolab's own rules (echolab.db.archive)
            return import_captures(catalog, Path(tmp), manifest=inner, campaign=campaign, device_ip=device_ip,
                                   location=location, on_item=on_item, progress=progress)
    if source.is_file() and manifest is None and source.suffix.lower() == ".csv" and not is_trace_file(source):
        manifest = source
    report = ImportReport()
    if manifest is not None:
        items = list(items_from_manifest(manifest, source if source.is_dir() else manifest.parent))
    elif source.is_dir():
        paths, report.skipped = scan_folder(source)
        if not paths:
            raise _nothing_to_import(source, report.skipped)
        items = list(items_from_pattern(source, label_from, paths) if label_from is not None
                     else items_from_folder(source, paths))
    elif is_importable(source):
        items = list(items_from_pattern(source, label_from) if label_from is not None
                     else [ImportItem(source, source.resolve().parent.name)])
    else:
        raise CatalogError(f"{source} is neither a folder of class folders, a capture, a CSV manifest nor an "
                           "exported tar", hint=f"echolab imports {IMPORTABLE}")
    default_campaign = campaign or f"import-{source.resolve().name}"
    campaigns: dict[str, Campaign] = {}
    if label_from is not None and manifest is None:
        from echolab.db.labels import preview_labels

        report.labels = preview_labels([item.path for item in items], label_from)
    if aliases is not None:
        for item in items:
            if item.label:
                item.label = aliases.get(item.label, campaign or item.campaign or default_campaign) or item.label

    def campaign_of(item: ImportItem) -> Campaign:
        name = campaign or item.campaign or default_campaign
        if name not in campaigns:
            campaigns[name] = _import_campaign(catalog, name, location)
        return campaigns[name]

    pending: list[ImportItem] = []  # with a cut: the files, cut and checked together once all are read
    with tempfile.TemporaryDirectory(dir=catalog.lab.tmp_dir) as scratch:
        for done, item in enumerate(items):
            if progress:
                progress("importing" if cut is None else "reading", done, len(items))
            if on_item:
                on_item(item)
            if item.reason and not item.label:
                report.rejected.append((str(item.path), item.reason))
                continue
            if not item.path.is_file():
                report.rejected.append((str(item.path), f"{item.path} not found"))
                continue
            try:  # before any campaign is made: a name that cannot be a folder leaves nothing behind
                check_component(item.label, "label")
                check_component(campaign or item.campaign or default_campaign, "campaign")
            except UnsafePathError as exc:
                report.rejected.append((str(item.path), str(exc)))
                continue
            if is_gzip_capture(item.path):
                try:
                    plain = unpack_to(item.path, Path(scratch))
                except CaptureError as exc:
                    report.rejected.append((str(item.path), str(exc)))
                    continue
                if plain.cut_short:
                    report.cut_short.append((str(item.path), plain.cut_short))
                item = _with(item, path=plain.path, origin=item.path)
            if cut is not None:
                pending.append(item)
                continue
            _import_file(catalog, item, campaign_of, report, device_ip=device_ip, cut=None, expect=None,
                         replace=replace)
            (Path(scratch) / item.path.name).unlink(missing_ok=True)
        if progress and cut is not None:
            progress("reading", len(items), len(items))
        if pending and cut is not None:
            _import_cuts(catalog, pending, campaign_of, cut, report, device_ip=device_ip, expect=expect,
                         replace=replace, progress=progress)
    if progress and cut is None:
        progress("importing", len(items), len(items))
    for camp in campaigns.values():
        with catalog.transaction():
            catalog.session.refresh(camp)
            labels = sorted(set(camp.classes or []) | {c.label for c in catalog.captures(campaign=camp.id, status=None)})
            camp.classes = labels
    return report


def _import_cuts(catalog: Catalog, items: Sequence[ImportItem], campaign_of: Callable[[ImportItem], Campaign],
                 spec: SplitSpec, report: ImportReport, *, device_ip: str | None, expect: int | None,
                 replace: bool, progress: ProgressCallback | None) -> None:
    """Cut every long capture, judge the cuts of each campaign together (:mod:`echolab.captures.quality`), then
    catalogue the requests of each file with its verdict."""
    results: dict[int, SplitResult] = {}
    for done, item in enumerate(items):
        if progress:
            progress("cutting", done, len(items))
        try:
            results[id(item)] = split_capture(item.path, spec, item.device_ip or device_ip, expect=expect)
        except (CaptureError, SplitError) as exc:
            cut = CutImport(str(item.shown), item.label, expected=expect, problem=str(exc))
            report.cuts.append(cut)
            report.rejected.append((str(item.shown), cut.problem))
    if progress:
        progress("cutting", len(items), len(items))
    verdicts: dict[int, CutVerdict] = {}
    by_campaign: dict[int, list[ImportItem]] = {}
    for item in items:
        if id(item) in results:
            by_campaign.setdefault(campaign_of(item).id, []).append(item)
    for camp_items in by_campaign.values():
        camp = campaign_of(camp_items[0])
        mine = [results[id(item)] for item in camp_items]
        checked = check_cuts(mine, context=_campaign_context(catalog, camp, [sha256_file(i.path) for i in camp_items]))
        for item, verdict in zip(camp_items, checked.verdicts):
            verdict.file = str(item.shown)
            verdicts[id(item)] = verdict
        report.checks.append(checked)
    kept = [item for item in items if id(item) in results]
    for done, item in enumerate(kept):
        if progress:
            progress("importing", done, len(kept))
        import_cut(catalog, campaign_of(item), item, spec, report, device_ip=item.device_ip or device_ip,
                   expect=expect, replace=replace, result=results.pop(id(item)), verdict=verdicts[id(item)])
    if progress:
        progress("importing", len(kept), len(kept))


def _source_file(catalog: Catalog, item: ImportItem) -> str | None:
    """The file as given, for a capture imported whole (none for one unpacked from an exported tar)."""
    shown = item.shown.resolve()
    if shown.is_relative_to(catalog.lab.tmp_dir.resolve()):
        return None
    return str(item.shown)[:500]


def _campaign_context(catalog: Catalog, campaign: Campaign, exclude: Sequence[str]) -> CampaignContext:
    """The devices and request durations of the files the campaign already holds, cut earlier."""
    context = CampaignContext()
    devices: dict[str, str | None] = {}
    for row in catalog.captures(campaign=campaign.id, status=None):
        if row.source_sha256 is None or row.source_sha256 in exclude:
            continue
        devices.setdefault(row.source_sha256, row.device_ip)
        if row.source_start is not None and row.source_end is not None:
            context.durations_s.append(row.source_end - row.source_start)
    context.devices = [ip for ip in devices.values() if ip]
    return context


def _import_file(catalog: Catalog, item: ImportItem, campaign_of: Callable[[ImportItem], Campaign],
                 report: ImportReport, *, device_ip: str | None, cut: SplitSpec | None, expect: int | None,
                 replace: bool) -> None:
    """Import one plain file: cut into requests, or whole."""
    shown = str(item.shown)
    if cut is not None:  # a long capture: cut into requests first
        import_cut(catalog, campaign_of(item), item, cut, report, device_ip=item.device_ip or device_ip,
                   expect=expect, replace=replace)
        return
    sha = sha256_file(item.path)
    if catalog.has_sha256(sha):
        report.duplicates.append(shown)
        with catalog.transaction():
            _held_label(catalog, list(catalog.session.scalars(select(Capture).where(Capture.sha256 == sha))),
                        item, shown, report, replace)
        return

    def judge(summary: CaptureSummary) -> None:
        if summary.truncated_file and shown not in {p for p, _ in report.cut_short}:
            report.cut_short.append((shown, "the file ends inside a packet record; the packets before it were read"))
        if summary.first_ts is not None and summary.last_ts is not None:
            lasts = summary.last_ts - summary.first_ts
            if lasts > CHECKS.long_capture_s:
                report.long.append((shown, lasts))

    try:
        row = catalog.add_capture(
            campaign_of(item), item.label, item.path, device_ip=item.device_ip or device_ip,
            status=item.status, reason=item.reason, unique=True, on_summary=judge,
            source={"source_file": _source_file(catalog, item)},
        )
    except DuplicateCaptureError:  # another importer added it since the check above
        report.duplicates.append(shown)
        return
    except CaptureError as exc:
        report.rejected.append((shown, str(exc)))
        return
    report.imported.append(row.id)
    if row.status == CaptureStatus.failed.value and item.status == CaptureStatus.ok.value:
        report.failed.append((shown, row.reason or ""))


def label_from_name(pattern: str | re.Pattern[str], name: str) -> str | None:
    """The label a regular expression finds in a file name (None when it does not match).

    The label is the named group ``label`` when there is one, else the first
    group, else the whole match: ``^(.+?)_\\d+_\\d+s`` reads
    ``what_is_the_weather_5_30s.pcap`` as ``what_is_the_weather``.
    """
    rx = re.compile(pattern) if isinstance(pattern, str) else pattern
    found = rx.search(name)
    if found is None:
        return None
    if "label" in rx.groupindex:
        return found.group("label") or None
    return (found.group(1) if rx.groups else found.group(0)) or None


def items_from_pattern(source: Path, pattern: str, paths: Sequence[Path] | None = None) -> Iterable[ImportItem]:
    """Capture files at or under *source* (or *paths*), labelled by *pattern* applied to each file name.

    The pattern sees the name of the capture inside a compressed one
    (``a_1.pcap`` for ``a_1.pcap.gz``), so one pattern reads both.
    """
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise CatalogError(f"--label-from {pattern!r} is not a regular expression: {exc}") from exc
    if paths is None:
        paths = [source] if source.is_file() else scan_folder(source)[0]
    for path in paths:
        label = label_from_name(rx, plain_name(path))
        if source.is_dir() and not is_inside(path, source):
            yield ImportItem(path, "", reason=f"{path} is a link to a file outside {source}; only files inside the "
                                              "folder are imported")
        elif label is None:
            yield ImportItem(path, "", reason=f"{path} is not matched by --label-from {pattern!r}")
        else:
            yield ImportItem(path, label)


@dataclass
class CutImport:
    """What became of one long capture: its device, its requests, the cut chosen, and any problem."""

    path: str
    label: str
    device: DeviceGuess | None = None
    requests: int = 0  # found by the cut
    ignored: int = 0  # bursts or windows set aside as keep-alives
    imported: list[int] = field(default_factory=list)
    duplicates: int = 0
    problem: str | None = None
    settings: str | None = None  # the cut's settings (chosen per file with --split auto)
    why: str | None = None  # how they were chosen
    expected: int | None = None
    attached: int = 0  # trailing bursts attached to the request before them
    replaced: int = 0  # pieces of an earlier cut removed (--replace)
    check: str | None = None  # the verdict of the cut's checks: ``ok`` or ``suspect: why``


def import_cut(
    catalog: Catalog,
    campaign: Campaign,
    item: ImportItem,
    spec: SplitSpec,
    report: ImportReport,
    *,
    device_ip: str | None = None,
    expect: int | None = None,
    replace: bool = False,
    result: SplitResult | None = None,
    verdict: CutVerdict | None = None,
) -> CutImport:
    """Cut one long capture into requests and catalogue each as its own pcapng.

    Each piece links back to its source (path as given, sha256, time range)
    and keeps the cut's settings and, for ``auto``, why they were chosen, and
    the verdict of the cut's checks (:mod:`echolab.captures.quality`; *verdict*
    when the caller judged it with the campaign's other files, else the file
    is judged alone). A file that does not split into *expect* requests is
    not forced into them: its requests come in marked suspect, with why.
    *result* is the cut when the caller has made it already.

    No request is catalogued twice: the source's pieces already in the
    catalog are read under the write lock, in the same transaction that adds
    the new ones. The same cut again adds nothing (each piece is a duplicate);
    a different cut is refused, naming the campaign and the cut that hold the
    source, unless *replace*: then the old pieces go (their cached features
    dropped, analysis runs that used them marked stale) and the new ones come
    in, in one transaction.
    """
    done = CutImport(str(item.shown), item.label, expected=expect)
    report.cuts.append(done)
    try:
        source_sha = sha256_file(item.path)
        if result is None:
            result = split_capture(item.path, spec, device_ip, expect=expect)
    except (CaptureError, SplitError) as exc:
        done.problem = str(exc)
        report.rejected.append((str(item.shown), done.problem))
        return done
    if verdict is None:
        verdict = check_cuts([result]).verdicts[0]
        verdict.file = str(item.shown)
    done.device, done.requests, done.ignored = result.timeline.device, len(result.segments), len(result.ignored)
    done.settings, done.why, done.attached = result.choice, result.why, result.attached
    done.check = verdict.text
    if result.timeline.stats.truncated_file and str(item.shown) not in {p for p, _ in report.cut_short}:
        report.cut_short.append((str(item.shown), "the file ends inside a packet record; the packets before it "
                                                  "were read"))
    if not result.segments:
        done.problem = (f"{item.shown} holds no request with {spec} "
                        f"(preview the cut: echolab catalog segments {item.shown})")
        report.rejected.append((str(item.shown), done.problem))
        return done
    ranges = [(seg.start_us, seg.end_us) for seg in result.segments]
    with tempfile.TemporaryDirectory(dir=catalog.lab.tmp_dir) as tmp:
        pieces = write_pieces(item.path, result.segments, Path(tmp), stem=item.path.stem)
        try:
            with catalog.transaction():
                _add_pieces(catalog, campaign, item, result, source_sha, pieces, ranges, done, report, replace)
        except _CutConflict as conflict:
            done.problem = str(conflict)
            report.rejected.append((str(item.shown), done.problem))
    return done


class _CutConflict(CatalogError):
    pass


def _held_label(catalog: Catalog, held: list[Capture], item: ImportItem, shown: str, report: ImportReport,
                replace: bool) -> None:
    """Captures of this file already catalogued under another label: relabelled with *replace*, else named."""
    other = [row for row in held if row.label != item.label and item.label]
    if not other:
        return
    if replace:
        from echolab.db.labels import apply_labels

        done = apply_labels(catalog, [(row, item.label) for row in other])
        report.relabelled.extend(done.changed)
        report.stale_runs.extend(r for r in done.stale_runs if r not in report.stale_runs)
    else:
        for label in sorted({row.label for row in other}):
            report.other_label.append((shown, label, item.label))


def _add_pieces(catalog: Catalog, campaign: Campaign, item: ImportItem, result: SplitResult, source_sha: str,
                pieces: list[Path], ranges: list[tuple[int, int]], done: CutImport, report: ImportReport,
                replace: bool) -> None:
    """Inside the write lock: compare with the source's pieces in the catalog, then add (and replace)."""
    held = catalog.source_pieces(source_sha)
    known = {(round(r.source_start * 1e6), round(r.source_end * 1e6)): r for r in held
             if r.source_start is not None and r.source_end is not None}
    if held and set(known) != set(ranges):
        if not replace:
            raise _CutConflict(_conflict_message(item.shown, held, result))
        stale = [r for key, r in known.items() if key not in set(ranges)]
        stale += [r for r in held if r.source_start is None or r.source_end is None]
        when = datetime.now(timezone.utc).isoformat(timespec="seconds")
        _dropped, runs = catalog.remove_captures(stale, f"were replaced by a re-cut of {item.shown} "
                                                        f"({result.choice}) on {when}")
        done.replaced = len(stale)
        report.replaced += len(stale)
        report.stale_runs.extend(r for r in runs if r not in report.stale_runs)
        known = {key: r for key, r in known.items() if key in set(ranges)}
    _held_label(catalog, [known[key] for key in ranges if key in known], item, str(item.shown), report, replace)
    for seg, key, piece in zip(result.segments, ranges, pieces):
        if key in known:
            if replace:
                known[key].cut_check = done.check
            done.duplicates += 1
            report.duplicates.append(f"{item.shown} (request at {seg.start:.6f})")
            continue
        try:
            row = catalog.add_capture(
                campaign, item.label, piece, move=True, device_ip=result.timeline.device.ip, unique=True,
                started_at=datetime.fromtimestamp(seg.start, timezone.utc),
                ended_at=datetime.fromtimestamp(seg.end, timezone.utc),
                source={"source_path": str(item.shown), "source_sha256": source_sha,
                        "source_start": seg.start, "source_end": seg.end,
                        "source_cut": result.choice[:300], "source_cut_why": result.why or None,
                        "cut_check": done.check},
            )
        except DuplicateCaptureError:  # the same content from another file
            done.duplicates += 1
            report.duplicates.append(f"{item.shown} (request at {seg.start:.6f})")
            continue
        done.imported.append(row.id)
        report.imported.append(row.id)


def _conflict_message(path: Path, held: list[Capture], result: SplitResult) -> str:
    by = sorted({(r.campaign.name, r.source_cut or "a cut not recorded") for r in held})
    where = "; ".join(f"campaign {name!r} with {cut}" for name, cut in by)
    return (f"{path} is already catalogued cut another way ({len(held)} pieces: {where}); this cut "
            f"({result.choice}) gives {len(result.segments)} requests at other times. Import it with the same "
            f"cut, or add --replace to swap the old pieces for these (their features are dropped and analysis "
            f"runs that used them marked stale)")


def _import_campaign(catalog: Catalog, name: str, location: str | None) -> Campaign:
    try:
        return catalog.campaign(name)
    except CatalogError:
        pass
    try:
        return catalog.create_campaign(
            name, backend=Backend.imported.value, location=location, status=CampaignStatus.imported.value
        )
    except CatalogError:  # another importer created it meanwhile
        return catalog.campaign(name)


def manifest_rows(captures: Sequence[Capture]) -> list[dict[str, Any]]:
    return [
        {
            "id": c.id, "label": c.label, "status": c.status, "reason": c.reason, "campaign": c.campaign.name,
            "path": c.path, "sha256": c.sha256, "size_bytes": c.size_bytes, "packet_count": c.packet_count,
            "device_ip": c.device_ip, "started_at": c.started_at.isoformat() if c.started_at else None,
            "ended_at": c.ended_at.isoformat() if c.ended_at else None, "synthetic": c.synthetic,
        }
        for c in captures
    ]


def write_manifest(rows: Sequence[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _below_lab(rel: str) -> bool:
    """Whether a path the catalog holds names a file below the lab (relative, no ``..``)."""
    try:
        member_name(rel, Path("catalog"))
    except CatalogError:
        return False
    return True


def export_catalog(catalog: Catalog, out: Path, captures: Sequence[Capture]) -> int:
    """Write a manifest (``.csv``/``.json``) or a tar of captures plus manifest.

    Only captures with a file go into a tar. Written to a temporary name and
    renamed, so a failed export leaves nothing half-written. Returns the
    number of captures exported.
    """
    out = Path(out)
    suffix = "".join(out.suffixes[-2:]).lower()
    tmp = out.with_name(out.name + ".part")
    try:
        if suffix.endswith(".tar") or suffix.endswith(".tar.gz") or suffix.endswith(".tgz"):
            with_files = [c for c in captures if c.path]
            mode = "w:gz" if suffix.endswith(("gz", "tgz")) else "w"
            with tarfile.open(tmp, mode) as tar:
                data = write_manifest(manifest_rows(with_files), "csv").encode()
                info = tarfile.TarInfo(MANIFEST_NAME)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                for c in with_files:
                    if not _below_lab(c.path):
                        raise CatalogError(f"capture {c.id}'s path {c.path[:200]!r} leads outside the lab; "
                                           "nothing was exported")
                    with open(catalog.lab.root / c.path, "rb") as fh:  # a regular file, never a link
                        tar.addfile(tar.gettarinfo(arcname=c.path, fileobj=fh), fh)
            count = len(with_files)
        elif out.suffix.lower() in (".csv", ".json"):
            tmp.write_text(write_manifest(manifest_rows(captures), out.suffix.lower().lstrip(".")))
            count = len(captures)
        else:
            raise CatalogError(f"cannot tell the export format of {out.name}: use .csv, .json, .tar or .tar.gz")
        shutil.move(tmp, out)
    except CatalogError:
        tmp.unlink(missing_ok=True)
        raise
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CatalogError(f"cannot write {out}: {exc.strerror or exc}") from exc
    return count
