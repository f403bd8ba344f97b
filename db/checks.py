"""What a person asks of a catalog: how far along is it, and is it intact?"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from echolab.db.catalog import Catalog
from echolab.db.files import PART_SUFFIX, sha256_file
from echolab.db.records import Campaign, Capture, CaptureStatus


@dataclass
class ClassStats:
    label: str
    ok: int = 0
    failed: int = 0
    discarded: int = 0
    target: int | None = None

    @property
    def remaining(self) -> int | None:
        return None if self.target is None else max(self.target - self.ok, 0)


@dataclass
class CatalogStats:
    classes: list[ClassStats]
    campaigns: list[dict[str, object]]
    failures: dict[str, int]

    @property
    def balance(self) -> float:
        """Smallest class count over the largest (1.0 is perfectly balanced)."""
        counts = [c.ok for c in self.classes]
        return (min(counts) / max(counts)) if counts and max(counts) else 0.0


def catalog_stats(catalog: Catalog, *, campaign: str | None = None, target: int | None = None) -> CatalogStats:
    """Per class: good captures against the target; per campaign; failures by reason."""
    s = catalog.session
    campaigns = [catalog.campaign(campaign)] if campaign else list(s.scalars(select(Campaign).order_by(Campaign.id)))
    ids = [c.id for c in campaigns]
    rows = s.execute(
        select(Capture.campaign_id, Capture.label, Capture.status, Capture.reason).where(Capture.campaign_id.in_(ids))
    ).all()

    def class_target(label: str) -> int | None:
        """The given target, else what the campaigns that collect *label* aim at together."""
        if target is not None:
            return target
        aims = [c.target_per_class for c in campaigns if c.target_per_class and label in (c.classes or [])]
        return sum(aims) if aims else None

    per_class: dict[str, ClassStats] = {}
    for c in campaigns:
        for label in c.classes or []:
            per_class.setdefault(label, ClassStats(label, target=class_target(label)))
    per_campaign: dict[int, Counter] = defaultdict(Counter)
    failures: Counter = Counter()
    for campaign_id, label, status, reason in rows:
        stats = per_class.setdefault(label, ClassStats(label, target=class_target(label)))
        setattr(stats, status, getattr(stats, status) + 1)
        per_campaign[campaign_id][status] += 1
        if status == CaptureStatus.failed.value:
            failures[_reason_kind(reason)] += 1
    campaign_rows = [
        {
            "id": c.id, "name": c.name, "backend": c.backend, "status": c.status,
            "target_per_class": c.target_per_class, "classes": len(c.classes or []),
            "ok": per_campaign[c.id]["ok"], "failed": per_campaign[c.id]["failed"],
            "discarded": per_campaign[c.id]["discarded"], "created_at": c.created_at,
        }
        for c in campaigns
    ]
    return CatalogStats(sorted(per_class.values(), key=lambda c: c.label), campaign_rows, dict(failures))


def _reason_kind(reason: str | None) -> str:
    """The failure class of a reason text ("no-response: ..." -> "no-response")."""
    if not reason:
        return "unknown"
    return reason.split(":", 1)[0].strip() or "unknown"


@dataclass
class VerifyReport:
    checked: int = 0
    modified: list[tuple[int, str]] = field(default_factory=list)  # (capture id, path)
    missing: list[tuple[int, str]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # files on disk the catalog does not know
    partial: list[str] = field(default_factory=list)  # leftover .part files

    @property
    def ok(self) -> bool:
        return not (self.modified or self.missing or self.unknown or self.partial)


def verify(catalog: Catalog, *, hash_files: bool = True) -> VerifyReport:
    """Every catalogued file exists and matches its sha256; no file is unknown."""
    report = VerifyReport()
    known: set[str] = set()
    for capture_id, rel, sha in catalog.session.execute(
        select(Capture.id, Capture.path, Capture.sha256).where(Capture.path.is_not(None)).order_by(Capture.id)
    ):
        known.add(rel)
        report.checked += 1
        path = catalog.lab.root / rel
        if not path.is_file():
            report.missing.append((capture_id, rel))
        elif hash_files and sha256_file(path) != sha:
            report.modified.append((capture_id, rel))
    root = catalog.lab.captures_dir
    if root.exists():
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(catalog.lab.root).as_posix()
            if path.name.endswith(PART_SUFFIX):
                report.partial.append(rel)
            elif rel not in known:
                report.unknown.append(rel)
    return report


def sweep_partial(catalog: Catalog) -> list[Path]:
    """Remove ``.part`` files a crash left in the captures folder; return them."""
    removed = [p for p in catalog.lab.captures_dir.rglob(f"*{PART_SUFFIX}") if p.is_file()]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
