"""The collector on the simulated lab: unattended, balanced, resumable, failures classified."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from typer.testing import CliRunner

from echolab.captures.reader import read_packets
from echolab.collector.backends import EchoBackend
from echolab.collector.campaign import CampaignPaused, CampaignRunner, CollectSettings
from echolab.collector.collect import SpeechSource, create_campaign
from echolab.db.catalog import Catalog
from echolab.db.checks import verify
from echolab.cli import app
from echolab.labdir import CATALOG_URL_ENV, LabDir
from echolab.prompts.lists import load_prompts

pytestmark = pytest.mark.netns
ECHOLAB = [sys.executable, "-P", "-m", "echolab.cli"]
SPEED = 30


@pytest.fixture
def sim_prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    from echolab.collector.sim import down

    prefix = f"col{os.getpid() % 1000}{request.node.name[-3:].replace('[', '').replace(']', '')}"[:10]
    down(prefix)
    yield prefix
    down(prefix)


@pytest.fixture
def lab(sqlite_lab: LabDir) -> LabDir:
    """These tests' lab: conftest's lab with a SQLite catalog."""
    return sqlite_lab


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def in_progress_files(lab: LabDir) -> list[Path]:
    """What a collector left in tmp/ (its lock file excepted: filelock keeps it)."""
    return [p for p in files_under(lab.tmp_dir) if p.name != "collect.lock"]


def test_balanced_campaign_on_the_simulated_lab(lab: LabDir, sim_prefix: str) -> None:
    result = CliRunner().invoke(app, ["--lab", str(lab.root), "collect", "--backend", "sim", "--per-class", "5",
                                      "--speed", str(SPEED), "--no-progress", "--sim-prefix", sim_prefix])
    assert result.exit_code == 0, result.output
    assert "done" in result.output
    cat = Catalog.open(lab)
    caps = cat.captures()
    camp = cat.campaigns()[0]
    assert (camp.status, camp.backend, camp.target_per_class) == ("done", "sim", 5)
    assert camp.engine == "espeak" and camp.voice, "the speech engine and voice are recorded"
    assert cat.captures(status="failed") == []
    report = verify(cat)
    assert report.ok and report.checked == 30
    by_class: dict[str, int] = {}
    for c in caps:
        by_class[c.label] = by_class.get(c.label, 0) + 1
        path = lab.root / c.path
        assert path.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a", "a pcapng file"
        packets = list(read_packets(path))
        assert packets and all(c.device_ip in (p.src, p.dst) for p in packets), "only the Echo's traffic"
        assert c.prompt is not None and c.prompt.audio_sha256 and c.prompt.duration_s > 0.5
        assert c.prompt.text.startswith("Alexa") or c.label == "unintelligible"
        music_server = "10.77.1.3"
        assert (music_server in c.server_addresses) == (c.label == "music"), (c.label, c.server_addresses)
    cat.close()
    assert by_class == {k: 5 for k in ("information", "quotes", "weather", "directions", "music", "unintelligible")}
    # interleaved: the first six captures are one of each class
    assert len({c.label for c in caps[:6]}) == 6
    assert in_progress_files(lab) == []
    assert (lab.logs_dir / f"{camp.name}.log").read_text().count("campaign") >= 2


def test_collect_with_a_live_defense_records_it_and_refuses_a_lab_shaped_otherwise(lab: LabDir,
                                                                                   sim_prefix: str) -> None:
    from echolab.collector.sim import SimLab

    base = ["--lab", str(lab.root), "collect", "--backend", "sim", "--per-class", "1", "--classes", "weather",
            "--speed", str(SPEED), "--no-progress", "--sim-prefix", sim_prefix]
    result = CliRunner().invoke(app, [*base, "--defense", "mtu", "--name", "shaped"])
    assert result.exit_code == 0, result.output
    with Catalog.open(lab) as cat:
        camp = cat.campaign("shaped")
        assert camp.settings["defense"] == "mtu"
        (cap,) = cat.captures(campaign="shaped")
        assert (cap.defense, cap.defended_from) == ("mtu", None)
        sizes = {p.ip_len for p in read_packets(lab.root / cap.path) if p.payload_len}
        assert sizes == {1500}, sizes  # every packet with data is a padded record: the MTU
    SimLab.up(prefix=sim_prefix, speed=SPEED, seed=1)  # a lab running undefended
    result = CliRunner().invoke(app, [*base, "--defense", "front"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: the simulated lab '{sim_prefix}' is up with no defense, not front; stop it ('echolab sim down') "
        "or pass another --sim-prefix, and collect starts a lab of its own"]


def _run_cli(lab: LabDir, prefix: str, per_class: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop(CATALOG_URL_ENV, None)
    return subprocess.Popen([*ECHOLAB, "--lab", str(lab.root), "collect", "--backend", "sim", "--per-class",
                             str(per_class), "--speed", str(SPEED), "--no-progress", "--sim-prefix", prefix,
                             "--classes", "weather,music,unintelligible"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                            cwd=Path(__file__).resolve().parent.parent, start_new_session=True)


def _wait_for_capture_in_progress(lab: LabDir, proc: subprocess.Popen, at_least_done: int) -> int:
    """Wait until a capture is being made (not being stored); return how many are done."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        current = list(lab.tmp_dir.glob("capture-*.pcapng"))
        if current and len(list(lab.captures_dir.rglob("*.pcapng"))) >= at_least_done:
            time.sleep(0.1)  # a capture lasts longer than this; storing one does not
            if all(p.exists() for p in current):
                return len(list(lab.captures_dir.rglob("*.pcapng")))
        time.sleep(0.02)
    raise AssertionError("no capture in progress within 120 s")


def test_sigkill_mid_capture_then_rerun_resumes(lab: LabDir, sim_prefix: str) -> None:
    proc = _run_cli(lab, sim_prefix, per_class=2)
    _wait_for_capture_in_progress(lab, proc, at_least_done=2)
    proc.kill()
    proc.wait()
    time.sleep(0.3)
    # as if the run had died after placing a file and before cataloguing it
    placed = next(lab.captures_dir.rglob("*.pcapng"))
    (placed.parent / "0123456789abcdef.pcapng").write_bytes(placed.read_bytes() + b"")
    # the capture engine died with the collector (no dumpcap left writing into the lab)
    left = subprocess.run(["pgrep", "-f", f"dumpcap.*{lab.tmp_dir}"], capture_output=True, text=True)
    assert left.stdout.strip() == ""
    rerun = _run_cli(lab, sim_prefix, per_class=2)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    assert "recovery" in (lab.logs_dir.glob("*.log").__next__().read_text())
    with Catalog.open(lab) as cat:
        camps = cat.campaigns()
        assert len(camps) == 1 and camps[0].status == "done"  # the plain rerun resumed the same campaign
        ok = cat.captures()
        assert sorted(c.label for c in ok) == sorted(["weather", "music", "unintelligible"] * 2)
        assert verify(cat).ok
        known = {lab.root / c.path for c in ok}
    assert set(files_under(lab.captures_dir)) == known, "no orphan file"
    assert in_progress_files(lab) == []
    verify_cli = CliRunner().invoke(app, ["--lab", str(lab.root), "catalog", "verify"])
    assert verify_cli.exit_code == 0, verify_cli.output


def test_first_ctrl_c_finishes_the_current_capture(lab: LabDir, sim_prefix: str) -> None:
    """Ctrl-C at a terminal signals the whole foreground process group, the collector's children too."""
    proc = _run_cli(lab, sim_prefix, per_class=3)
    done = _wait_for_capture_in_progress(lab, proc, at_least_done=1)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "interrupted" in out and "collect --resume" in out
    with Catalog.open(lab) as cat:
        camp = cat.campaigns()[0]
        assert camp.status == "interrupted"
        assert len(cat.captures()) == done + 1, "the capture in progress was finished and kept"
        assert verify(cat).ok
    assert in_progress_files(lab) == []


def test_second_ctrl_c_aborts_and_discards(lab: LabDir, sim_prefix: str) -> None:
    proc = _run_cli(lab, sim_prefix, per_class=3)
    _wait_for_capture_in_progress(lab, proc, at_least_done=1)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "interrupted" in out
    with Catalog.open(lab) as cat:
        assert cat.campaigns()[0].status == "interrupted"
        assert verify(cat).ok
        known = {lab.root / c.path for c in cat.captures()}
    assert set(files_under(lab.captures_dir)) == known
    assert in_progress_files(lab) == []


def _echo_runner(lab: LabDir, sim, *, device_ip: str, classes: list[str], **overrides) -> CampaignRunner:
    settings = CollectSettings(backend="echo", per_class=1, classes=classes, speed=sim.speed, seed=4,
                               device_ip=device_ip, interface=sim.interface, quiet_s=12.0, **overrides)
    backend = EchoBackend(device_ip=device_ip, interface=sim.interface, output=sim.sink(),
                          prefix=sim.netns_exec(), speed=sim.speed)
    catalog = Catalog.open(lab)
    campaign = create_campaign(catalog, settings)
    return CampaignRunner(catalog, campaign, settings, backend, load_prompts(lab, classes),
                          SpeechSource(lab, settings))


def test_real_echo_backend_through_the_simulated_sink(lab: LabDir, sim_prefix: str) -> None:
    """The echo backend's own path (traffic-only end detection), a sink in place of the speaker."""
    from echolab.collector.sim import SimLab

    sim = SimLab.up(prefix=sim_prefix, speed=SPEED, seed=2)
    runner = _echo_runner(lab, sim, device_ip=sim.echo_ip, classes=["weather", "music", "unintelligible"])
    result = runner.run()
    runner.catalog.close()
    assert result.status == "done" and result.counts == {"weather": 1, "music": 1, "unintelligible": 1}
    plans = sim.plans()
    with Catalog.open(lab) as cat:
        for cap in cat.captures():
            plan = next(p for p in plans if p["label"] == cap.label)
            got = sum(p.payload_len for p in read_packets(lab.root / cap.path) if p.dst == sim.echo_ip)
            planned = plan["speech_bytes"] + plan.get("music_bytes", 0)
            assert got >= planned, f"{cap.label}: the capture stopped before the answer ended ({got} < {planned})"


def test_repeated_failures_pause_the_campaign(lab: LabDir, sim_prefix: str) -> None:
    from echolab.collector.sim import SimLab

    sim = SimLab.up(prefix=sim_prefix, speed=SPEED, seed=2)
    runner = _echo_runner(lab, sim, device_ip="10.77.0.99", classes=["weather"], max_consecutive_failures=2)
    with pytest.raises(CampaignPaused, match=r"paused after 2 'no-traffic' failures in a row .*--resume"):
        runner.run()
    runner.catalog.close()
    with Catalog.open(lab) as cat:
        assert cat.campaigns()[0].status == "paused"
        failed = cat.captures(status="failed")
        assert len(failed) == 2 and all(f.reason.startswith("no-traffic: ") for f in failed)
        assert all(f.path is None for f in failed)
    assert in_progress_files(lab) == []
