"""Faults for a campaign on the simulated lab, and the audit of what the catalog holds after them.

Used by tests/test_faults.py and bench/bench_soak.py. The audit checks every
catalogued capture against the simulated lab's ground truth (the plans its
cloud drew, each with the class the Echo heard): none lost since a snapshot,
none labelled with another class, none half-written, no file the catalog does
not know, nothing left in progress.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any

from echolab.collector.checks import check_capture
from echolab.collector.failures import Failure
from echolab.collector.live import LiveCapture
from echolab.db.catalog import Catalog
from echolab.db.checks import verify
from echolab.labdir import CATALOG_URL_ENV, LabDir

HERE = Path(__file__).resolve().parent
CHILD = HERE / "fault_child.py"
CLASSES = "weather,music,unintelligible"


def collect_cmd(lab: LabDir, prefix: str, per_class: int, *, speed: float, at: str | None = None,
                sig: str = "KILL", on: int = 1, classes: str = CLASSES) -> list[str]:
    fault = ["--at", at, "--signal", sig, "--on", str(on)] if at else []
    return [sys.executable, "-P", str(CHILD), *fault, "--", "--lab", str(lab.root), "collect", "--backend", "sim",
            "--per-class", str(per_class), "--speed", str(speed), "--no-progress", "--sim-prefix", prefix,
            "--classes", classes]


def start_collect(cmd: list[str], catalog_url: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop(CATALOG_URL_ENV, None)
    if catalog_url:
        env[CATALOG_URL_ENV] = catalog_url
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                            cwd=HERE.parent, start_new_session=True)


def run_collect(cmd: list[str], catalog_url: str | None = None, timeout: float = 300) -> tuple[int, str]:
    proc = start_collect(cmd, catalog_url)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def capture_in_progress(lab: LabDir, proc: subprocess.Popen, device_ip: str, timeout: float = 120) -> Path:
    """Wait until a request's capture holds its first packet; its path.

    The file alone is not enough: the engine creates it before it reports that it
    captures, and a fault then is a capture that failed to start, not one that
    stopped during the capture. A packet in the file means the engine was capturing.
    """
    deadline = time.monotonic() + timeout
    watched: dict[Path, LiveCapture] = {}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the collector ended before a capture began: {proc.stdout.read()}")
        for path in lab.tmp_dir.glob("capture-*.pcapng"):
            if path.name.startswith("capture-watch-"):
                continue
            live = watched.setdefault(path, LiveCapture(path, device_ip))
            live.poll()
            if live.packets:
                return path
        time.sleep(0.01)
    raise AssertionError(f"no capture in progress within {timeout:.0f} s")


def engine_pid(lab: LabDir) -> int | None:
    """The capture engine the collector started (its pid file in the lab)."""
    try:
        return int((lab.tmp_dir / "capture.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def kill_engine(lab: LabDir, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = engine_pid(lab)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
                return True
            except ProcessLookupError:
                pass
        time.sleep(0.01)
    return False


@dataclass
class Audit:
    captures: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    lost: list[int] = field(default_factory=list)  # catalogued before, gone now
    mislabelled: list[str] = field(default_factory=list)  # the Echo heard another class in the capture's time
    half_written: list[str] = field(default_factory=list)  # unreadable, cut short, no answer, or bytes short
    unknown_files: list[str] = field(default_factory=list)  # in captures/ but not catalogued
    in_progress: list[str] = field(default_factory=list)  # left in tmp/

    @property
    def clean(self) -> bool:
        return not (self.lost or self.mislabelled or self.half_written or self.unknown_files or self.in_progress)


def snapshot(lab: LabDir, catalog_url: str | None = None) -> dict[int, str]:
    with Catalog.open(lab, catalog_url) as cat:
        return {c.id: c.sha256 for c in cat.captures()}


def audit(lab: LabDir, plans: list[dict[str, Any]], before: dict[int, str] | None = None,
          catalog_url: str | None = None) -> Audit:
    """Every good capture against the simulated cloud's plans (the class each request was heard as)."""
    out = Audit()
    with Catalog.open(lab, catalog_url) as cat:
        caps = cat.captures()
        report = verify(cat)
        now = {c.id: c.sha256 for c in caps}
        out.lost = sorted(i for i, sha in (before or {}).items() if now.get(i) != sha)
        for cap in caps:
            out.captures += 1
            out.by_class[cap.label] = out.by_class.get(cap.label, 0) + 1
            start = cap.started_at.replace(tzinfo=cap.started_at.tzinfo or timezone.utc).timestamp()
            end = cap.ended_at.replace(tzinfo=cap.ended_at.tzinfo or timezone.utc).timestamp()
            heard = [p for p in plans if start <= p["t"] <= end]
            name = f"#{cap.id} {cap.label} {cap.path}"
            if not heard or any(p["label"] != cap.label for p in heard):
                out.mislabelled.append(f"{name}: heard {[p['label'] for p in heard]}")
                continue
            path = lab.root / cap.path
            try:
                got = check_capture(path, cap.device_ip)
            except Failure as exc:
                out.half_written.append(f"{name}: {exc}")
                continue
            want = sum(p["speech_bytes"] + p.get("music_bytes", 0) for p in heard)
            if got.bytes_down < want:
                out.half_written.append(f"{name}: {got.bytes_down} of {want} bytes of the answer")
        out.half_written += [f"{rel}: modified" for _i, rel in report.modified]
        out.half_written += [f"{rel}: missing" for _i, rel in report.missing]
        out.unknown_files = list(report.unknown) + list(report.partial)
    out.in_progress = sorted(p.name for p in lab.tmp_dir.rglob("*") if p.is_file() and p.name != "collect.lock")
    return out
