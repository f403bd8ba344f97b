"""The simulated lab end to end: namespaces, real TLS, real tshark at the gateway.

One lab (its own prefix, sped up 8x) serves every test of this module in
order: idempotent ``up``, one captured request per class, recovery from a
crash, and a ``down`` that leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from statistics import median
from typing import Iterator

import dpkt
import pytest
from typer.testing import CliRunner

from echolab.captures.reader import read_packets
from echolab.collector.audio import AudioOutput
from echolab.collector.sim import SimLab, down, status
from echolab.collector.sim.topology import Topology
from echolab.cli import app
from echolab.prompts.classes import STUDY_CLASSES
from pcaps import SIM_DEVICE_IP, sim_capture

pytestmark = pytest.mark.netns

SPEED = 8.0
PREFIX = f"elt{os.getpid() % 100000}"
needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="needs root and iproute2 (network namespaces)")


@pytest.fixture(scope="module")
def run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("simrun")


@pytest.fixture(scope="module")
def lab(run_root: Path) -> Iterator[SimLab]:
    lab = SimLab.up(prefix=PREFIX, speed=SPEED, seed=7, root=run_root)
    try:
        yield lab
    finally:
        down(PREFIX, run_root)


def tcptrace_blocks(path: Path) -> list[dict[str, object]]:
    """Per connection: the two hosts and the b->a (second column) 'max win adv'."""
    proc = subprocess.run(["tcptrace", "-l", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    assert "warning" not in proc.stdout.lower()
    blocks = []
    for block in re.split(r"TCP connection \d+:", proc.stdout)[1:]:
        hosts = re.findall(r"host \w+:\s+([\d.]+):(\d+)", block)
        win = re.search(r"max win adv:\s+(\d+) bytes\s+max win adv:\s+(\d+) bytes", block)
        assert len(hosts) == 2 and win, block
        blocks.append({"a": hosts[0][0], "b": hosts[1][0], "a_max_win": int(win.group(1)),
                       "b_max_win": int(win.group(2))})
    return blocks


def server_bytes(path: Path, server: str) -> int:
    return sum(p.payload_len for p in read_packets(path) if p.src == server)


def tls_record_headers(path: Path, server: str) -> int:
    """Segments from *server* that begin with a TLS 1.2/1.3 application-data record header."""
    count = 0
    with path.open("rb") as fh:
        for _, buf in dpkt.pcapng.Reader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP):
                if dpkt.utils.inet_to_str(ip.src) == server and bytes(ip.data.data[:3]) == b"\x17\x03\x03":
                    count += 1
    return count


@needs_root
def test_up_is_idempotent_and_the_state_tells_where_to_capture(lab: SimLab, run_root: Path) -> None:
    again = SimLab.up(prefix=PREFIX, speed=SPEED, seed=7, root=run_root)
    assert again.pids == lab.pids  # nothing restarted
    loaded = SimLab.load(PREFIX, run_root)
    assert (loaded.interface, loaded.netns, loaded.echo_ip) == ("gw-echo", f"{PREFIX}-gw", SIM_DEVICE_IP)
    assert loaded.server_ips == ["10.77.1.2", "10.77.1.3"]
    links = subprocess.run(["ip", "-n", loaded.netns, "-o", "link", "show", loaded.interface],
                           capture_output=True, text=True, check=True).stdout
    assert "mtu 1500" in links
    offloads = subprocess.run([*loaded.netns_exec(), "ethtool", "-k", loaded.interface],
                              capture_output=True, text=True, check=True).stdout
    for feature in ("tcp-segmentation-offload", "generic-segmentation-offload", "generic-receive-offload"):
        assert re.search(rf"^{feature}: off", offloads, re.M), offloads
    assert isinstance(lab.sink(), AudioOutput)
    assert status(PREFIX, run_root).running
    for name in ("echo.log", "cloud.log"):  # started cleanly: no Python warning (runpy's double import once)
        text = (lab.run_dir / name).read_text()
        assert "Warning" not in text, text


@needs_root
def test_one_request_per_class_captured_at_the_gateway(lab: SimLab, tmp_path: Path) -> None:
    pcaps = {label: sim_capture(lab, tmp_path / f"{label}.pcapng", label) for label in STUDY_CLASSES}
    plans = {plan["label"]: plan for plan in lab.plans()}
    sizes = {}
    for label, path in pcaps.items():
        packets = list(read_packets(path))
        assert packets, label
        assert max(p.ip_len for p in packets) <= 1500, f"{label}: a packet larger than the MTU (offloads on?)"
        assert {p.src for p in packets} >= {lab.echo_ip, lab.voice_ip}
        assert tls_record_headers(path, lab.voice_ip) > 0, label
        tls = subprocess.run(["tshark", "-r", str(path), "-Y", "tls.record.content_type == 23"],
                             capture_output=True, text=True)
        assert tls.returncode == 0 and tls.stdout.strip(), f"{label}: tshark sees no TLS application data"
        # What the voice service sent is the drawn answer plus framing and TLS overhead.
        sizes[label] = server_bytes(path, lab.voice_ip)
        want = plans[label]["speech_bytes"]
        assert want <= sizes[label] <= want * 1.1 + 3000, (label, sizes[label], want)
        # The utterance upload is proportional to the clip and its tail: (2.5 + 1.5) s at 16000 B/s.
        assert plans[label]["audio_bytes"] == 64000
        blocks = tcptrace_blocks(path)
        servers = {b["b"] for b in blocks}
        if label == "music":
            assert servers == {lab.voice_ip, lab.music_ip}
            music_bytes = server_bytes(path, lab.music_ip)
            assert music_bytes >= plans["music"]["music_bytes"]
            assert tls_record_headers(path, lab.music_ip) > 0
        else:
            assert servers == {lab.voice_ip}, label
    windows = {label: max(b["b_max_win"] for b in tcptrace_blocks(path) if b["b"] == lab.voice_ip)
               for label, path in pcaps.items()}
    music_win = max(b["b_max_win"] for b in tcptrace_blocks(pcaps["music"]) if b["b"] == lab.music_ip)
    assert music_win * 5 < min(windows.values()), (music_win, windows)
    speech = [sizes[c] for c in ("information", "weather", "directions", "quotes")]
    assert sizes["unintelligible"] < 0.6 * median(speech), sizes
    assert plans["unintelligible"]["speech_s"] <= 3.0


@needs_root
def test_status_command_reports_the_capture_point(lab: SimLab, run_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("ECHOLAB_SIM_RUN", str(run_root))
    result = CliRunner().invoke(app, ["sim", "status", "--prefix", PREFIX, "--json"])
    assert result.exit_code == 0, result.output
    assert f'"netns": "{PREFIX}-gw"' in result.output and '"interface": "gw-echo"' in result.output


@needs_root
def test_up_recovers_from_a_crash_and_down_leaves_nothing(lab: SimLab, run_root: Path) -> None:
    for pid in lab.pids.values():  # a crash: processes gone, namespaces and state left
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    assert not status(PREFIX, run_root).running
    fresh = SimLab.up(prefix=PREFIX, speed=SPEED, seed=7, root=run_root)
    assert set(fresh.pids.values()).isdisjoint(lab.pids.values())
    assert fresh.echo_status()["connected"]
    pids = list(fresh.pids.values())
    removed = down(PREFIX, run_root)
    assert any(r.startswith("namespace") for r in removed)
    topo = Topology(PREFIX)
    assert not set(topo.namespaces) & set(subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                          text=True).stdout.split())
    host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    for name in (topo.echo_if, topo.gw_echo_if, topo.gw_cloud_if, topo.cloud_if):
        assert f" {name}:" not in host_links and f" {name}@" not in host_links
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "echolab.collector.sim" not in Path(f"/proc/{pid}/cmdline").read_text()
    leftovers = subprocess.run(["pgrep", "-f", str(run_root / PREFIX)], capture_output=True, text=True).stdout
    assert not leftovers.strip()
    assert not (run_root / PREFIX).exists()
    assert down(PREFIX, run_root) == []  # idempotent
