"""The catalog library: open (and migrate) a lab's catalog, add and query captures.

Every change is one transaction; files are placed before rows point at them.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from echolab.captures.reader import CaptureError, summarize
from echolab.db.files import place_file, sha256_file
from echolab.db.models import (SCHEMA_REVISION, AnalysisRun, Backend, Campaign, CampaignStatus, Capture,
                               CaptureStatus, Device, Prompt, TrialResult, utcnow)
from echolab.errors import EcholabError
from echolab.labdir import LabDir

MIGRATIONS = Path(__file__).parent / "migrations"


class CatalogError(EcholabError):
    """The catalog cannot be opened or a request to it cannot be met."""


class UnknownCaptureError(CatalogError):
    pass


class UnknownRunError(CatalogError):
    """No analysis run has the name or id asked for."""


def _alembic_config() -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # The driver's own transaction handling is off (it would run DDL outside any
    # transaction): SQLAlchemy emits BEGIN itself (_sqlite_begin), so a migration
    # interrupted half-way leaves no half-made schema.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN")


def make_engine(url: str) -> Engine:
    """An engine for *url*; SQLite gets WAL, foreign keys, a busy timeout and transactional DDL."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _current_revision(engine: Engine) -> str | None:
    """The catalog's schema revision, read without Alembic (``None`` when it cannot be read)."""
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return None


def migrate(engine: Engine) -> str:
    """Bring the catalog's schema up to date; refuse a schema newer than this echolab.

    A catalog already at :data:`~echolab.db.models.SCHEMA_REVISION` is opened without
    loading Alembic (most opens: it saves a third of a second on every command)."""
    if _current_revision(engine) == SCHEMA_REVISION:
        return SCHEMA_REVISION
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    cfg = _alembic_config()
    script = ScriptDirectory.from_config(cfg)
    head = script.get_current_head()
    try:
        with engine.begin() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
            if current is not None:
                try:
                    script.get_revision(current)
                except CommandError:
                    raise CatalogError(
                        f"the catalog has schema revision {current}, newer than this echolab "
                        f"knows (up to {head}); upgrade echolab to open it"
                    )
            if current != head:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
    except CatalogError:
        raise
    except SQLAlchemyError as exc:
        raise CatalogError(f"cannot open the catalog at {engine.url!r}: {_short(exc)}") from exc
    return head or ""


def _short(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


_NAME_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """A file-system-safe form of a campaign or class name."""
    return _NAME_SAFE.sub("-", text).strip("-") or "unnamed"


class Catalog:
    """One lab's catalog. Use as a context manager; it closes its session."""

    def __init__(self, lab: LabDir, engine: Engine):
        self.lab = lab
        self.engine = engine
        self.session = Session(engine, expire_on_commit=False)

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
            engine = make_engine(url)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise CatalogError(f"bad catalog URL {url!r}: {_short(exc)}") from exc
        migrate(engine)
        return cls(lab, engine)

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

        A database failure (disk full, locked, a constraint) becomes a
        :class:`CatalogError`; nothing of the unit is kept.
        """
        try:
            yield self.session
            self.session.commit()
        except SQLAlchemyError as exc:
            self.session.rollback()
            raise CatalogError(f"the catalog could not be changed: {_short(exc)}") from exc
        except BaseException:
            self.session.rollback()
            raise

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
            raise CatalogError(f"no campaign {name_or_id!r} in the catalog; 'echolab catalog stats' lists them")
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

    def capture_path(self, campaign: Campaign, label: str, sha256: str, suffix: str) -> Path:
        """Where a capture lives in the lab: captures/CAMPAIGN/CLASS/SHA16.pcapng."""
        return self.lab.captures_dir / safe_name(campaign.name) / safe_name(label) / f"{sha256[:16]}{suffix}"

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
    ) -> Capture:
        """Record one capture; place its file in the lab first (when there is one).

        Raises :class:`CaptureError` when *pcap* is not a readable capture. A
        failed attempt without a file is recorded with ``pcap=None``.
        """
        CaptureStatus(status)
        fields: dict[str, Any] = {}
        dest: Path | None = None
        placed_here = False
        if pcap is not None:
            pcap = Path(pcap)
            summary = summarize(pcap)
            sha = sha256_file(pcap)
            dest = self.capture_path(campaign, label, sha, ".pcapng" if _is_pcapng(pcap) else ".pcap")
            fields = dict(sha256=sha, size_bytes=pcap.stat().st_size, packet_count=summary.packets,
                          path=self.lab.relative(dest))
            if server_addresses is None:
                server_addresses = summary.server_addresses(device_ip) if device_ip else []
            if not (dest.exists() and sha256_file(dest) == sha):  # else: placed by a run that crashed
                place_file(pcap, dest)
                placed_here = True
        try:
            with self.transaction() as s:
                row = Capture(
                    campaign_id=campaign.id, label=label, prompt_id=prompt.id if prompt else None,
                    started_at=started_at, ended_at=ended_at, status=status, reason=reason,
                    server_addresses=list(server_addresses or []), device_ip=device_ip, synthetic=synthetic,
                    attempts=attempts, **fields, **(source or {}),
                )
                s.add(row)
        except BaseException:
            if placed_here and dest is not None:
                dest.unlink(missing_ok=True)  # the source is still where it was
            raise
        if move and pcap is not None:
            pcap.unlink(missing_ok=True)
        return row

    def has_sha256(self, sha256: str) -> bool:
        return self.session.scalar(select(Capture.id).where(Capture.sha256 == sha256).limit(1)) is not None

    def get_capture(self, capture_id: int) -> Capture:
        row = self.session.get(Capture, capture_id)
        if row is None:
            raise UnknownCaptureError(f"no capture with id {capture_id}; 'echolab catalog ls' lists them")
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


def _is_pcapng(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"\x0a\x0d\x0d\x0a"


def open_catalog(lab: LabDir) -> Catalog:
    """Open *lab*'s catalog (creating and migrating it as needed)."""
    return Catalog.open(lab)


__all__ = ["Catalog", "CatalogError", "CaptureError", "UnknownCaptureError", "UnknownRunError", "open_catalog"]
