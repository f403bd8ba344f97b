"""The catalog schema: the one place that defines it, as SQLAlchemy record classes (one a table).

A row of the catalog is a record (``Capture``, ``Campaign``, ``AnalysisRun`` ...);
"model" in echolab means a trained classifier, never one of these. Schema changes
are Alembic migrations (``db/migrations/versions``); a test checks that the
migrations produce exactly these tables.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


#: The newest schema revision (the head of db/migrations/versions). A catalog at this
#: revision opens without loading Alembic; a test checks that it is Alembic's head.
SCHEMA_REVISION = "0004"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class CaptureStatus(str, enum.Enum):
    ok = "ok"
    failed = "failed"
    discarded = "discarded"


class CampaignStatus(str, enum.Enum):
    running = "running"
    paused = "paused"
    interrupted = "interrupted"
    done = "done"
    imported = "imported"


class Backend(str, enum.Enum):
    echo = "echo"  # a real Echo through a real speaker
    sim = "sim"  # the simulated lab in network namespaces
    synthetic = "synthetic"  # simulated traffic written straight to pcap (no namespaces)
    imported = "imported"  # captures imported from an existing data set
    defended = "defended"  # packet traces a defense made from other captures (echolab.analysis.defenses)


class Device(Base):
    """The device under test."""

    __tablename__ = "devices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    ip: Mapped[str | None] = mapped_column(String(64))
    mac: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Campaign(Base):
    """One collection run (or one import)."""

    __tablename__ = "campaigns"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    location: Mapped[str | None] = mapped_column(String(200))
    backend: Mapped[str] = mapped_column(String(20))
    engine: Mapped[str | None] = mapped_column(String(50))
    voice: Mapped[str | None] = mapped_column(String(100))
    target_per_class: Mapped[int | None] = mapped_column(Integer)
    classes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default=CampaignStatus.running.value)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"))
    device: Mapped[Device | None] = relationship()


class Prompt(Base):
    """A spoken request of one class, and the audio that was played for it."""

    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("label", "text", "engine", "voice", name="uq_prompt"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(100), index=True)
    text: Mapped[str] = mapped_column(Text)
    engine: Mapped[str | None] = mapped_column(String(50))
    voice: Mapped[str | None] = mapped_column(String(100))
    audio_sha256: Mapped[str | None] = mapped_column(String(64))
    duration_s: Mapped[float | None] = mapped_column(Float)


class Capture(Base):
    """One labelled request/response capture."""

    __tablename__ = "captures"
    __table_args__ = (Index("ix_captures_label_status", "label", "status"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    label: Mapped[str] = mapped_column(String(100))
    prompt_id: Mapped[int | None] = mapped_column(ForeignKey("prompts.id"))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    path: Mapped[str | None] = mapped_column(String(500), unique=True)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    packet_count: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=CaptureStatus.ok.value)
    reason: Mapped[str | None] = mapped_column(Text)
    server_addresses: Mapped[list[Any]] = mapped_column(JSON, default=list)
    device_ip: Mapped[str | None] = mapped_column(String(64))
    synthetic: Mapped[bool] = mapped_column(default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    # A capture cut out of a longer one: where it came from.
    source_path: Mapped[str | None] = mapped_column(String(500))
    source_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    source_start: Mapped[float | None] = mapped_column(Float)
    source_end: Mapped[float | None] = mapped_column(Float)
    # the cut's settings (``gap=4 min-packets=8 min-bytes=40000 attach-trailing=16``) and, for
    # --split auto, why they were chosen for this source
    source_cut: Mapped[str | None] = mapped_column(String(300))
    source_cut_why: Mapped[str | None] = mapped_column(Text)
    # A defended capture: a packet trace a defense made from another capture (defended_from, that capture)
    # or a capture collected under a live defense in the simulated lab (no defended_from); the defense's spec.
    defended_from: Mapped[int | None] = mapped_column(ForeignKey("captures.id"), index=True)
    defense: Mapped[str | None] = mapped_column(String(300))
    # the file it was imported from, as given (a whole file; a piece's is source_path), whose name
    # ``catalog relabel --label-from`` reads labels from again
    source_file: Mapped[str | None] = mapped_column(String(500))
    # the checks of the cut that gave it (echolab.captures.quality): ``ok`` or ``suspect: why``
    cut_check: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    campaign: Mapped[Campaign] = relationship()
    prompt: Mapped[Prompt | None] = relationship()
    original: Mapped["Capture | None"] = relationship(remote_side="Capture.id")


class FeatureRow(Base):
    """Extracted features of one capture file, keyed by content and extractor.

    ``values`` holds what the extractor computed (a JSON object); ``error`` is
    set instead when the capture could not be used (corrupt, empty, no TCP).
    """

    __tablename__ = "feature_rows"
    __table_args__ = (UniqueConstraint("capture_sha256", "extractor_version", "device_ip", name="uq_feature_row"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    capture_sha256: Mapped[str] = mapped_column(String(64), index=True)
    extractor_version: Mapped[str] = mapped_column(String(50))
    device_ip: Mapped[str] = mapped_column(String(64))
    values: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AnalysisRun(Base):
    """One classifier comparison: settings, data fingerprint, results."""

    __tablename__ = "analysis_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20), default="running")
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    capture_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    report_dir: Mapped[str | None] = mapped_column(String(500))
    # set (with status "stale") when captures the run used were replaced by a re-cut
    stale_reason: Mapped[str | None] = mapped_column(Text)


class TrialResult(Base):
    """One trial of one model on one feature set, cached by a content key."""

    __tablename__ = "trial_results"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    feature_set: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(50))
    trial: Mapped[int] = mapped_column(Integer)
    accuracy: Mapped[float] = mapped_column(Float)
    f1_macro: Mapped[float | None] = mapped_column(Float)
    best_params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    seconds: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
