"""`echolab doctor`: each failure it reports, found for real, with how to fix it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from echolab.collector import doctor
from echolab.cli import app
from echolab.labdir import LabDir


@pytest.fixture
def lab(tmp_path: Path) -> LabDir:
    return LabDir.open(tmp_path / "lab", create=True)


def test_missing_capture_tool() -> None:
    check = doctor.check_capture_tool("no-such-capture-engine")
    assert not check.ok and "apt-get install tshark" in check.fix


def test_missing_interface(lab: LabDir) -> None:
    check = doctor.check_capture_permission("nosuch0", tmp_dir=lab.tmp_dir)
    assert not check.ok
    assert "capture interface 'nosuch0' does not exist" in check.detail
    assert "--interface" in check.fix


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None, reason="needs root to switch user")
def test_no_permission_to_capture(tmp_path: Path) -> None:
    """dumpcap run as a user outside the wireshark group is refused for real; the fix names the group."""
    tmp_path.chmod(0o777)
    check = doctor.check_capture_permission("lo", prefix=("runuser", "-u", "nobody", "--"), tmp_dir=tmp_path)
    assert not check.ok
    assert "not allowed to capture on lo" in check.detail
    assert "wireshark" in check.fix and "group" in check.fix


@pytest.mark.netns
def test_echo_seen_and_not_seen(lab: LabDir) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    from echolab.collector.sim import SimLab, down

    sim = SimLab.up(prefix="doctor", speed=40, seed=1)
    try:
        prefix = tuple(sim.netns_exec())
        seen, timing = doctor.check_device_traffic(sim.interface, sim.echo_ip, listen_s=1.5, prefix=prefix,
                                                   tmp_dir=lab.tmp_dir)
        assert seen.ok, seen.detail
        # the simulated Echo's idle keep-alives (40-byte frames in TLS records) every 25 s / 40
        assert timing.ok and "keep-alives up to 62 bytes" in timing.detail, timing.detail
        assert "would use --keepalive-bytes 100 --quiet 5 --idle-gap 5" in timing.detail
        absent = doctor.check_device_seen(sim.interface, "10.77.0.99", listen_s=0.5, prefix=prefix,
                                          tmp_dir=lab.tmp_dir)
        assert not absent.ok and "--device-ip" in absent.fix
    finally:
        down("doctor")


def test_audio_output_missing() -> None:
    """This machine has no sound card: the real PortAudio says so."""
    check = doctor.check_audio_output("no such speaker")
    assert not check.ok and "--audio-device" in check.fix


def test_speech_engine_offline(lab: LabDir, monkeypatch: pytest.MonkeyPatch) -> None:
    assert doctor.check_speech(lab, "espeak").ok
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # a closed port: gTTS cannot reach its service
    check = doctor.check_speech(lab, "gtts")
    assert not check.ok and "--engine espeak" in check.detail + check.fix


def test_not_enough_disk(lab: LabDir) -> None:
    assert doctor.check_disk(lab, ["weather"], 10).ok
    check = doctor.check_disk(lab, ["music"], 10**9)
    assert not check.ok and "GB free" in check.detail


def test_cli_exit_code_and_fix_lines(lab: LabDir) -> None:
    result = CliRunner().invoke(app, ["--lab", str(lab.root), "doctor", "--interface", "nosuch0", "--device-ip",
                                      "10.0.0.2", "--listen", "0.2"], terminal_width=200)
    assert result.exit_code == 1
    assert "FAIL capture permission" in result.output and "fix: pass the gateway interface" in result.output
    assert "ok   free disk" in result.output


def test_timing_measured_from_keepalives_and_pauses(tmp_path) -> None:
    """Keep-alives of 41 bytes every 25 s, then a request pausing 4.1 s: the quiet time grows to 1.5 x that."""
    from pcaps import tcp_packet, write_pcap

    from echolab.collector.timing import measure

    dev, srv = "192.168.1.50", "52.94.1.10"
    frames, seq = [], {dev: 1000, srv: 900_000}

    def send(t: float, src: str, n: int) -> None:
        dst = srv if src == dev else dev
        sport, dport = (50000, 443) if src == dev else (443, 50000)
        frames.append((t, tcp_packet(src, dst, sport, dport, seq=seq[src], ack=seq[dst], flags="PA", payload=n)))
        seq[src] += n

    for t in (0.0, 25.0, 50.0):
        send(t, dev, 41)
        send(t + 0.05, srv, 39)
    for i in range(20):  # upload and answer; the answer pauses 4 s after its 10th record
        send(60 + i * 0.1, dev, 1448)
        send(61 + i * 0.1 + (4.0 if i >= 10 else 0.0), srv, 1448)
    measured = measure(write_pcap(tmp_path / "echo.pcap", sorted(frames)), dev)
    assert (measured.keepalive_max_bytes, measured.keepalive_interval_s) == (41, 25.0)
    assert round(measured.longest_pause_s, 1) == 4.1  # from the upload's last packet to the answer's next
    assert (measured.keepalive_bytes, measured.quiet_s, measured.idle_s) == (100, 6.2, 6.2)
    assert "would use --keepalive-bytes 100 --quiet 6.2 --idle-gap 6.2" in measured.describe()
