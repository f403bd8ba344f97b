"""The catalog's repository: the one owner of its queries (captures, campaigns, features, runs, trials).

:class:`Catalog` opens a lab's catalog (its engine and migrations live in
:mod:`echolab.db.engine`, its write lock in :mod:`echolab.db.locks`), adds and
queries rows. Every change is one transaction; files are placed before rows
point at them.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from sqlalchemy import Engine, delete, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from echolab.captures.reader import CaptureError, CaptureSummary, summarize
from echolab.captures.trace import TRACE_SUFFIX, is_trace_file, summarize_trace
from echolab.db.engine import DEFAULT_LOCK_TIMEOUT_S, MAX_LOCK_TIMEOUT_S, MIGRATIONS, make_engine, migrate, short_error
from echolab.db.errors import (
    CatalogBusyError, CatalogError, DuplicateCaptureError, UnknownCaptureError, UnknownRunError,
)
from echolab.db.files import place_file, sha256_file
from echolab.db.locks import WriteLock
from echolab.db.records import (
    AnalysisRun, Backend, Campaign, CampaignStatus, Capture, CaptureStatus, Device, FeatureRow, Prompt,
    TrialResult, utcnow,
)
from echolab.labdir import LabDir
from echolab.safepaths import check_component, safe_component


def safe_name(text: str, what: str = "name") -> str:
    """A file-system-safe form of a campaign or class name (:func:`echolab.safepaths.safe_component`)."""
    return safe_component(text, what)


def capture_file_name(sha256: str, suffix: str, nth: int = 1) -> str:
    """A capture's file name in its class folder: ``SHA16.pcapng``; the *nth* of the same content ``SHA16-N``."""
    return f"{sha256[:16]}{suffix}" if nth == 1 else f"{sha256[:16]}-{nth}{suffix}"


class Catalog:
    """One lab's catalog. Use as a context manager; it closes its session."""

    def __init__(self, lab: LabDir, engine: Engine, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S):
        self.lab = lab
        self.engine = engine
        self.lock_timeout_s = lock_timeout_s
        self.write_lock = WriteLock(engine, lab, lock_timeout_s)
        self.session = Session(engine, expire_on_commit=False)
        self._depth = 0  # nesting of transaction()
        self._placed: list[Path] = []  # files placed in the lab by the open transaction
        self._after_commit: list[tuple[Path, bool]] = []  # (file, only if no row uses it) to remove on commit

    @classmethod
    def open(cls, lab: LabDir, url: str | None = None) -> "Catalog":
        url = url or lab.catalog_url
        if url.startswith("sqlite:///"):
            db_path = Path(url.removeprefix("sqlite:///"))
            if db_path.exists() and db_path.is_file():
                try:
                    with open(db_path, "rb") as fh:
                        head = fh.read(16)
                except OSError as exc:
                    raise CatalogError(f"cannot read the catalog {db_path}: {exc.strerror}") from exc
                if head and not head.startswith(b"SQLite format 3"):
                    raise CatalogError(f"{db_path} is not a SQLite catalog (unreadable or damaged)")
        try:
            timeout = float(lab.setting("catalog_lock_timeout_s", DEFAULT_LOCK_TIMEOUT_S))
            if not math.isfinite(timeout) or not 0 <= timeout <= MAX_LOCK_TIMEOUT_S:
                raise ValueError(timeout)
        except (TypeError, ValueError):
            raise CatalogError(f"catalog_lock_timeout_s in {lab.root / 'echolab.toml'} must be a number of seconds "
                               f"from 0 to {MAX_LOCK_TIMEOUT_S:g}") from None
        try:
            engine = make_engine(url, timeout)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise CatalogError(f"bad catalog URL {url!r}: {short_error(exc)}") from exc
        migrate(engine)
        return cls(lab, engine, timeout)

    def close(self) -> None:
        self.session.close()
        self.engine.dispose()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of change: committed when the block ends, rolled back on error.

        The write lock is taken when the unit begins (SQLite: ``BEGIN
        IMMEDIATE``; PostgreSQL: an advisory lock), so writers in several
        processes wait their turn instead of failing half-way; a wait longer
        than the lab's ``catalog_lock_timeout_s`` raises
        :class:`CatalogBusyError` naming the process that holds the lab. A
        block inside another one joins it. A database failure (disk full, a
        constraint) becomes a :class:`CatalogError`; nothing of the unit is
        kept, and files placed in the lab for it are removed.
        """
        if self._depth:
            self._depth += 1
            try:
                yield self.session
            finally:
                self._depth -= 1
            return
        try:
            if self.session.in_transaction():  # a read snapshot: end it, so the write sees the latest data
                self.session.commit()
            self.write_lock.acquire(self.session)
        except SQLAlchemyError as exc:
            self.session.rollback()
            raise CatalogError(f"the catalog could not be changed: {short_error(exc)}") from exc
        self._depth = 1
        try:
            yield self.session
            self.session.commit()
        except SQLAlchemyError as exc:
            self._abort()
            raise CatalogError(f"the catalog could not be changed: {short_error(exc)}") from exc
        except BaseException:
            self._abort()
            raise
        finally:
            self._depth = 0
            self.write_lock.release()
        done, self._after_commit, self._placed = self._after_commit, [], []
        for path, checked in done:
            if checked:
                self._remove_unreferenced(path)
            else:
                path.unlink(missing_ok=True)


    def _abort(self) -> None:
        """Roll back and remove the files this transaction placed (unless a committed row uses them)."""
        self.session.rollback()
        placed, self._placed, self._after_commit = self._placed, [], []
        for path in placed:
            self._remove_unreferenced(path)

    def _remove_unreferenced(self, path: Path) -> None:
        try:
            used = self.session.scalar(select(Capture.id).where(Capture.path == self.lab.relative(path)).limit(1))
            self.session.rollback()
        except SQLAlchemyError:
            return
        if used is None:
            path.unlink(missing_ok=True)

    # -- devices, campaigns, prompts ------------------------------------------------

    def device(self, name: str, *, ip: str | None = None, mac: str | None = None, model: str | None = None) -> Device:
        """The device called *name*, created (or its fields updated) as given."""
        with self.transaction() as s:
            dev = s.scalar(select(Device).where(Device.name == name))
            if dev is None:
                dev = Device(name=name)
                s.add(dev)
            for key, value in (("ip", ip), ("mac", mac), ("model", model)):
                if value is not None:
                    setattr(dev, key, value)
        return dev

    def create_campaign(
        self,
        name: str,
        *,
        backend: str,
        engine: str | None = None,
        voice: str | None = None,
        target_per_class: int | None = None,
        classes: Sequence[str] = (),
        settings: dict[str, Any] | None = None,
        location: str | None = None,
        device: Device | None = None,
        status: str = CampaignStatus.running.value,
    ) -> Campaign:
        Backend(backend)  # validates
        check_component(name, "campaign")
        with self.transaction() as s:
            if s.scalar(select(Campaign).where(Campaign.name == name)) is not None:
                raise CatalogError(f"a campaign named {name!r} already exists")
            campaign = Campaign(
                name=name, backend=backend, engine=engine, voice=voice, target_per_class=target_per_class,
                classes=list(classes), settings=dict(settings or {}), location=location,
                device_id=device.id if device else None, status=status,
            )
            s.add(campaign)
        return campaign

    def campaign(self, name_or_id: str | int) -> Campaign:
        stmt = select(Campaign)
        if isinstance(name_or_id, int) or str(name_or_id).isdigit():
            found = self.session.get(Campaign, int(name_or_id))
            if found is None:
                found = self.session.scalar(stmt.where(Campaign.name == str(name_or_id)))
        else:
            found = self.session.scalar(stmt.where(Campaign.name == name_or_id))
        if found is None:
            raise CatalogError(f"no campaign {name_or_id!r} in the catalog",
                               hint="'echolab catalog stats' lists the campaigns")
        return found

    def campaigns(self) -> list[Campaign]:
        return list(self.session.scalars(select(Campaign).order_by(Campaign.id)))

    def set_campaign_status(self, campaign: Campaign, status: str) -> None:
        CampaignStatus(status)
        with self.transaction():
            campaign.status = status
            if status in (CampaignStatus.done.value, CampaignStatus.imported.value):
                campaign.finished_at = utcnow()

    def prompt(
        self, label: str, text: str, *, engine: str | None = None, voice: str | None = None,
        audio_sha256: str | None = None, duration_s: float | None = None,
    ) -> Prompt:
        """The catalog's row for this prompt (created when new)."""
        with self.transaction() as s:
            row = s.scalar(
                select(Prompt).where(
                    Prompt.label == label, Prompt.text == text, Prompt.engine.is_(engine) if engine is None
                    else Prompt.engine == engine, Prompt.voice.is_(voice) if voice is None else Prompt.voice == voice,
                )
            )
            if row is None:
                row = Prompt(label=label, text=text, engine=engine, voice=voice)
                s.add(row)
            if audio_sha256 is not None:
                row.audio_sha256 = audio_sha256
            if duration_s is not None:
                row.duration_s = duration_s
        return row

    # -- captures -----------------------------------------------------------------

    def capture_path(self, campaign: Campaign, label: str, sha256: str, suffix: str, nth: int = 1) -> Path:
        """Where a capture lives in the lab: captures/CAMPAIGN/CLASS/SHA16.pcapng.

        The *nth* capture of the same content in the same campaign and class (traces
        a defense made alike: the anonymity sets send every request of a set as the
        same cells) gets a file of its own, ``SHA16-2.csv`` for the second, and so on.
        """
        return (self.lab.captures_dir / safe_name(campaign.name, "campaign") / safe_name(label, "label")
                / capture_file_name(sha256, suffix, nth))

    def add_capture(
        self,
        campaign: Campaign,
        label: str,
        pcap: Path | None,
        *,
        move: bool = False,
        status: str = CaptureStatus.ok.value,
        reason: str | None = None,
        prompt: Prompt | None = None,
        started_at: datetime | None = None,
        ended_at: datetime | None = None,
        device_ip: str | None = None,
        synthetic: bool = False,
        attempts: int = 1,
        server_addresses: Sequence[str] | None = None,
        source: dict[str, Any] | None = None,
        unique: bool = False,
        on_summary: Callable[[CaptureSummary], None] | None = None,
    ) -> Capture:
        """Record one capture and place its file in the lab, in one transaction.

        Raises :class:`CaptureError` when *pcap* is not a readable capture. A
        failed attempt without a file is recorded with ``pcap=None``. A capture
        asked to be ``ok`` that holds no packet, or none of *device_ip* (none
        over TCP or UDP when no device is given), is kept as ``failed`` with the
        reason. With *unique*, a capture whose sha256 the catalog holds raises
        :class:`DuplicateCaptureError` (checked under the write lock, so two
        importers of the same file never both add it). *on_summary* hears what
        the one read of the file found (its span, whether it was cut short).
        """
        CaptureStatus(status)
        fields: dict[str, Any] = {}
        dest: Path | None = None
        if pcap is not None:
            pcap = Path(pcap)
            trace = is_trace_file(pcap)  # a time,size,direction packet trace (no headers, no addresses)
            summary = summarize_trace(pcap) if trace else summarize(pcap)
            if on_summary is not None:
                on_summary(summary)
            sha = sha256_file(pcap)
            suffix = TRACE_SUFFIX if trace else ".pcapng" if _is_pcapng(pcap) else ".pcap"
            dest = self.capture_path(campaign, label, sha, suffix)
            fields = dict(sha256=sha, size_bytes=pcap.stat().st_size, packet_count=summary.packets,
                          path=self.lab.relative(dest))
            if server_addresses is None:
                server_addresses = summary.server_addresses(device_ip) if device_ip else []
            empty = _emptiness(summary, device_ip, trace=trace)
            if empty and status == CaptureStatus.ok.value:
                status, reason = CaptureStatus.failed.value, empty
        with self.transaction() as s:
            if unique and pcap is not None and s.scalar(
                    select(Capture.id).where(Capture.sha256 == fields["sha256"]).limit(1)) is not None:
                raise DuplicateCaptureError(f"{pcap} is already in the catalog (same sha256)")
            if dest is not None:  # the same content already a capture of this campaign and class: a file of its own
                # by content, not by campaign and label: two labels (or campaigns) may share a folder name
                taken = set(s.scalars(select(Capture.path).where(Capture.sha256 == fields["sha256"])))
                nth = 1
                while fields["path"] in taken:
                    nth += 1
                    dest = self.capture_path(campaign, label, fields["sha256"], suffix, nth)
                    fields["path"] = self.lab.relative(dest)
            if dest is not None and not (dest.exists() and sha256_file(dest) == fields["sha256"]):
                place_file(pcap, dest)  # else: placed by a run that crashed, or the same content elsewhere
                self._placed.append(dest)
            row = Capture(
                campaign_id=campaign.id, label=label, prompt_id=prompt.id if prompt else None,
                started_at=started_at, ended_at=ended_at, status=status, reason=reason,
                server_addresses=list(server_addresses or []), device_ip=device_ip, synthetic=synthetic,
                attempts=attempts, **fields, **(source or {}),
            )
            s.add(row)
            if move and pcap is not None:
                self._after_commit.append((pcap, False))
        return row

    def source_pieces(self, source_sha256: str) -> list[Capture]:
        """Every capture cut from the source file with this sha256 (any status), in time order."""
        return list(self.session.scalars(
            select(Capture).where(Capture.source_sha256 == source_sha256).order_by(Capture.source_start)))

    def remove_captures(self, rows: Sequence[Capture], why: str) -> tuple[int, list[str]]:
        """Delete *rows* for good (a re-cut replaces them), in the open transaction or one of its own.

        Their cached features go with them (unless another capture has the
        same content), and every analysis run that used one of them is marked
        ``stale`` with *why*. Their files are removed once the change commits.
        Returns (feature rows dropped, names of the runs marked stale).
        """
        ids = {r.id for r in rows}
        if not ids:
            return 0, []
        with self.transaction() as s:
            shas = {r.sha256 for r in rows if r.sha256}
            kept = set(s.scalars(select(Capture.sha256).where(Capture.sha256.in_(shas), Capture.id.not_in(ids))))
            dropped = 0
            if shas - kept:
                dropped = s.execute(delete(FeatureRow).where(FeatureRow.capture_sha256.in_(shas - kept))).rowcount or 0
            stale = []
            for run in s.scalars(select(AnalysisRun)):
                used = sorted(ids & set(run.capture_ids or []))
                if used:
                    run.status = "stale"
                    run.stale_reason = f"captures {', '.join(map(str, used))} {why}"
                    stale.append(run.name)
            for r in rows:
                if r.path:
                    self._after_commit.append((self.lab.root / r.path, True))
                s.delete(r)
        return dropped, stale

    def has_sha256(self, sha256: str) -> bool:
        return self.session.scalar(select(Capture.id).where(Capture.sha256 == sha256).limit(1)) is not None

    def get_capture(self, capture_id: int) -> Capture:
        row = self.session.get(Capture, capture_id)
        if row is None:
            raise UnknownCaptureError(f"no capture with id {capture_id}", hint="'echolab catalog ls' lists the captures")
        return row

    def captures(
        self,
        label: str | None = None,
        campaign: str | int | None = None,
        status: str | None = CaptureStatus.ok.value,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Capture]:
        """Captures matching every given filter, oldest first (default: good ones)."""
        stmt = select(Capture).order_by(Capture.id)
        if label is not None:
            stmt = stmt.where(Capture.label == label)
        if campaign is not None:
            stmt = stmt.where(Capture.campaign_id == self.campaign(campaign).id)
        if status is not None:
            CaptureStatus(status)
            stmt = stmt.where(Capture.status == status)
        if since is not None:
            stmt = stmt.where(Capture.started_at >= self._db_time(since))
        if until is not None:
            stmt = stmt.where(Capture.started_at <= self._db_time(until))
        return list(self.session.scalars(stmt))

    def selected_captures(self, selection: Any) -> list[Capture]:
        """Captures of an ``echolab.db.selection.Selection`` (its campaigns, labels, kind and status; its
        ``min_per_class`` is :func:`echolab.db.selection.select`'s), oldest first."""
        stmt = select(Capture).order_by(Capture.id)
        if selection.campaigns:
            stmt = stmt.where(Capture.campaign_id.in_([self.campaign(c).id for c in selection.campaigns]))
        if selection.labels:
            stmt = stmt.where(Capture.label.in_(selection.labels))
        if selection.exclude_labels:
            stmt = stmt.where(Capture.label.not_in(selection.exclude_labels))
        if selection.status is not None:
            CaptureStatus(selection.status)
            stmt = stmt.where(Capture.status == selection.status)
        if selection.kind is not None:
            trace = Capture.path.like(f"%{TRACE_SUFFIX}")
            stmt = stmt.where(trace if selection.kind == "trace" else or_(Capture.path.is_(None), ~trace))
        return list(self.session.scalars(stmt))

    def labels(self) -> list[str]:
        """Every label the catalog's captures carry (whatever their status), sorted."""
        return sorted(self.session.scalars(select(Capture.label).distinct()))

    def _db_time(self, when: datetime) -> datetime:
        """*when* in UTC as the database compares it (a time without offset is local time)."""
        utc = when.astimezone(timezone.utc)
        return utc.replace(tzinfo=None) if self.engine.dialect.name == "sqlite" else utc

    def discard(self, capture_id: int, reason: str) -> Capture:
        """Mark a capture discarded: kept for the audit trail, excluded from analysis."""
        if not reason.strip():
            raise CatalogError("a discard needs a reason (--reason)")
        with self.transaction():
            row = self.get_capture(capture_id)
            row.status = CaptureStatus.discarded.value
            row.reason = reason
        return row

    def abspath(self, capture: Capture) -> Path | None:
        return self.lab.root / capture.path if capture.path else None

    # -- the feature cache --------------------------------------------------------------

    def feature_rows(self, keys: set[tuple[str, str]],
                     version: str) -> dict[tuple[str, str], tuple[dict | None, str | None]]:
        """The cached ``(values, error)`` of each ``(capture sha256, device IP)`` of *keys* that the
        extractor *version* made (absent keys are left out)."""
        shas = sorted({sha for sha, _ in keys})
        out: dict[tuple[str, str], tuple[dict | None, str | None]] = {}
        for chunk in _chunks(shas):
            stmt = select(FeatureRow).where(FeatureRow.extractor_version == version,
                                            FeatureRow.capture_sha256.in_(chunk))
            for row in self.session.scalars(stmt):
                key = (row.capture_sha256, row.device_ip)
                if key in keys:
                    out[key] = (row.values, row.error)
        return out

    def store_feature_rows(self, rows: Sequence[tuple[tuple[str, str], dict | None, str | None]],
                           version: str) -> None:
        """Cache extraction results ``((sha256, device IP), values, error)`` of the extractor *version*
        in one transaction; a row already cached under the same key is replaced."""
        if not rows:
            return
        with self.transaction() as s:
            for (sha, ip), values, error in rows:
                existing = s.scalars(select(FeatureRow).where(
                    FeatureRow.capture_sha256 == sha, FeatureRow.extractor_version == version,
                    FeatureRow.device_ip == ip)).first()
                if existing is None:
                    s.add(FeatureRow(capture_sha256=sha, extractor_version=version, device_ip=ip,
                                     values=values, error=error))
                else:
                    existing.values, existing.error = values, error

    # -- analysis runs and trial results ------------------------------------------------

    def analysis_runs(self) -> list[AnalysisRun]:
        """Every stored analysis run, newest first."""
        stmt = select(AnalysisRun).order_by(AnalysisRun.created_at.desc(), AnalysisRun.id.desc())
        return list(self.session.scalars(stmt))

    def analysis_run(self, name_or_id: str | int, *, missing_ok: bool = False) -> AnalysisRun | None:
        """The run called *name_or_id* (else the run with that id); :class:`UnknownRunError` when absent
        (``None`` with *missing_ok*)."""
        run = self.session.scalar(select(AnalysisRun).where(AnalysisRun.name == str(name_or_id)))
        if run is None and str(name_or_id).isdigit():
            run = self.session.get(AnalysisRun, int(name_or_id))
        if run is None and not missing_ok:
            raise UnknownRunError(f"no analysis run {str(name_or_id)!r}")
        return run

    def start_analysis_run(self, name: str, *, settings: dict[str, Any], fingerprint: str,
                           capture_ids: Sequence[int], versions: dict[str, str]) -> AnalysisRun:
        """Record the run called *name* as running with these settings (created, or updated to resume it)."""
        with self.transaction() as s:
            run = s.scalar(select(AnalysisRun).where(AnalysisRun.name == name))
            if run is None:
                run = AnalysisRun(name=name)
                s.add(run)
            run.settings = settings
            run.fingerprint = fingerprint
            run.capture_ids = list(capture_ids)
            run.versions = versions
            run.status = "running"
            run.finished_at = None
        return run

    def finish_analysis_run(self, run: AnalysisRun, status: str, summary: dict[str, Any] | None = None) -> None:
        """Set *run*'s status ("done" stores *summary* and the finishing time; "interrupted", "failed")."""
        with self.transaction():
            if summary is not None:
                run.summary = summary
            run.status = status
            if status == "done":
                run.finished_at = utcnow()

    def set_report_dir(self, run: AnalysisRun, folder: Path) -> None:
        """Remember where *run*'s report was written (a folder inside the lab)."""
        relative = self.lab.relative(folder)
        if run.report_dir != relative:
            with self.transaction():
                run.report_dir = relative

    def stored_trial_keys(self, keys: Sequence[str]) -> set[str]:
        """Those of *keys* that name a stored trial result."""
        found: set[str] = set()
        for chunk in _chunks(keys):
            found.update(self.session.scalars(select(TrialResult.key).where(TrialResult.key.in_(chunk))))
        return found

    def trial_results(self, keys: Sequence[str]) -> dict[str, TrialResult]:
        """The stored trial results of *keys*, by key (absent keys are left out)."""
        rows: dict[str, TrialResult] = {}
        for chunk in _chunks(keys):
            for row in self.session.scalars(select(TrialResult).where(TrialResult.key.in_(chunk))):
                rows[row.key] = row
        return rows

    def add_trial_results(self, results: Sequence[TrialResult]) -> int:
        """Store *results* in one transaction, skipping keys already stored; return how many were added."""
        known = self.stored_trial_keys([r.key for r in results])
        new = [r for r in results if r.key not in known]
        with self.transaction() as s:
            s.add_all(new)
        return len(new)


def _chunks(items: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    """*items* in slices small enough for one ``IN (...)`` clause."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _emptiness(summary: Any, device_ip: str | None, *, trace: bool = False) -> str | None:
    """Why a capture cannot be a good one (no packets, no traffic of the device), or None.

    A packet trace holds only the device's own packets and no addresses: packets are enough."""
    if not summary.packets:
        return "empty: the capture holds no packets"
    if trace:
        return None
    if device_ip and device_ip not in summary.addresses:
        return f"no device traffic: no TCP or UDP packet from or to {device_ip}"
    if not device_ip and not summary.addresses:
        return "no device traffic: the capture holds no TCP or UDP packet"
    return None


def _is_pcapng(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"\x0a\x0d\x0d\x0a"



__all__ = ["Catalog", "CatalogBusyError", "CatalogError", "CaptureError", "DuplicateCaptureError",
           "UnknownCaptureError", "UnknownRunError"]
