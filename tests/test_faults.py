"""Faults during a campaign on the simulated lab: each gives a clear log line and a retry or a clean stop,
a rerun resumes, nothing catalogued is lost, no capture is labelled with another class, no half-written
file is kept as a capture (checked against the simulated lab's ground truth by tests/faults.py)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

import pgserver
from echolab.collector.sim import SimLab, down
from echolab.db.catalog import Catalog
from echolab.labdir import LabDir
from fault_child import STEPS
from faults import (audit, capture_in_progress, collect_cmd, kill_engine, run_collect, snapshot,
                    start_collect)

pytestmark = pytest.mark.netns
SPEED = 30


@pytest.fixture
def sim(request: pytest.FixtureRequest) -> Iterator[SimLab]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    prefix = f"flt{os.getpid() % 1000}{request.node.name[-2:]}"[:10]
    down(prefix)
    lab = SimLab.up(prefix=prefix, speed=SPEED, seed=3)
    yield lab
    down(prefix)


def campaign_log(lab: LabDir) -> str:
    return "".join(p.read_text() for p in lab.logs_dir.glob("*.log"))


def finish_and_audit(lab: LabDir, sim: SimLab, per_class: int, before: dict[int, str], url: str | None = None):
    with Catalog.open(lab, url) as cat:
        done = [c.status for c in cat.campaigns()] == ["done"]
    if not done:  # the rerun resumes the campaign the fault left unfinished
        code, out = run_collect(collect_cmd(lab, sim.prefix, per_class, speed=SPEED), url)
        assert code == 0, out
    result = audit(lab, sim.plans(), before, url)
    assert result.clean, result
    assert result.by_class == {c: per_class for c in ("weather", "music", "unintelligible")}
    with Catalog.open(lab, url) as cat:
        assert [c.status for c in cat.campaigns()] == ["done"], "the rerun resumed the one campaign"
    return result


def test_capture_engine_killed_mid_capture_is_retried(sqlite_lab: LabDir, sim: SimLab) -> None:
    proc = start_collect(collect_cmd(sqlite_lab, sim.prefix, 1, speed=SPEED))
    capture_in_progress(sqlite_lab, proc, sim.echo_ip)
    assert kill_engine(sqlite_lab)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "capture-error: dumpcap stopped during the capture" in campaign_log(sqlite_lab)
    result = audit(sqlite_lab, sim.plans())
    assert result.clean and result.captures == 3, result
    with Catalog.open(sqlite_lab) as cat:
        failed = cat.captures(status="failed")
        assert len(failed) == 1 and failed[0].path is None and failed[0].reason.startswith("capture-error")


def test_sigkill_at_each_step_then_a_rerun_resumes(sqlite_lab: LabDir, sim: SimLab) -> None:
    """Killed at every step of an attempt in turn: nothing catalogued is lost, the rerun sweeps and goes on."""
    for step in STEPS:
        before = snapshot(sqlite_lab)
        code, out = run_collect(collect_cmd(sqlite_lab, sim.prefix, 3, speed=SPEED, at=step, sig="KILL"))
        assert code == -9 and f"fault: SIGKILL at {step}" in out, (step, code, out)
        result = audit(sqlite_lab, sim.plans(), before)
        assert not (result.lost or result.mislabelled or result.half_written), (step, result)
        assert result.captures - len(before) == (1 if step == "stored" else 0), (step, result)
    finish_and_audit(sqlite_lab, sim, 3, before)
    assert "recovery: removed uncatalogued" in campaign_log(sqlite_lab)  # what the kill after placing left


def test_sigterm_at_each_step_finishes_the_capture_and_stops(sqlite_lab: LabDir, sim: SimLab) -> None:
    for step in STEPS:
        before = snapshot(sqlite_lab)
        code, out = run_collect(collect_cmd(sqlite_lab, sim.prefix, 4, speed=SPEED, at=step, sig="TERM"))
        assert code == 0 and f"fault: SIGTERM at {step}" in out and "interrupted" in out, (step, code, out)
        result = audit(sqlite_lab, sim.plans(), before)
        assert result.clean and result.captures == len(before) + 1, (step, result)
    assert campaign_log(sqlite_lab).count("stop requested: finishing the current capture") == len(STEPS)
    finish_and_audit(sqlite_lab, sim, 4, before)


def test_capture_interface_down_for_a_while(sqlite_lab: LabDir, sim: SimLab) -> None:
    proc = start_collect(collect_cmd(sqlite_lab, sim.prefix, 2, speed=SPEED))
    capture_in_progress(sqlite_lab, proc, sim.echo_ip)
    link = [*sim.netns_exec(), "ip", "link", "set", sim.interface]
    subprocess.run([*link, "down"], check=True)
    time.sleep(3)
    subprocess.run([*link, "up"], check=True)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    result = audit(sqlite_lab, sim.plans())
    assert result.clean and result.captures == 6, result
    with Catalog.open(sqlite_lab) as cat:
        failed = cat.captures(status="failed")
    assert failed and all(f.path is None for f in failed)
    log = campaign_log(sqlite_lab)
    assert "failed: " in log
    assert "link: gw-echo went down or up" in log and "link: gw-echo is up and the Echo's traffic paused" in log


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 24 MiB filesystem of its own for the lab, so it can be filled without touching anyone else's disk."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * (1 << 16))
                fh.flush()
        except OSError:
            pass
    return filler


def test_disk_full_stops_cleanly_and_a_rerun_resumes(small_disk: Path, sim: SimLab,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ECHOLAB_CATALOG_URL", raising=False)
    lab = LabDir.open(small_disk / "lab", create=True)
    proc = start_collect(collect_cmd(lab, sim.prefix, 2, speed=SPEED))
    capture_in_progress(lab, proc, sim.echo_ip)
    before = snapshot(lab)
    filler = fill(small_disk)
    out, _ = proc.communicate(timeout=300)
    assert "Traceback" not in out, out
    assert proc.returncode == 1 and out.startswith("Error: ") and "disk is full" in out, out
    result = audit(lab, sim.plans(), before)
    assert not (result.lost or result.mislabelled or result.half_written), result
    filler.unlink()
    finish_and_audit(lab, sim, 2, before)


@pytest.mark.postgres
def test_catalog_server_restarted_mid_campaign(postgres_server: str, tmp_path: Path, sim: SimLab) -> None:
    url = pgserver.create_database(postgres_server, f"faults{os.getpid()}")
    lab = LabDir.open(tmp_path / "lab", create=True)
    Catalog.open(lab, url).close()
    proc = start_collect(collect_cmd(lab, sim.prefix, 3, speed=SPEED), url)
    deadline = time.monotonic() + 120
    while not snapshot(lab, url):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    capture_in_progress(lab, proc, sim.echo_ip)
    before = snapshot(lab, url)
    pgserver.restart(url)
    out, _ = proc.communicate(timeout=300)
    assert "Traceback" not in out, out
    if proc.returncode != 0:  # a clean stop: one line, then a rerun resumes
        assert proc.returncode == 1 and "Error: " in out, out
    finish_and_audit(lab, sim, 3, before, url)
