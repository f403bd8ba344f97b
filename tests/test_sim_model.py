"""The simulation's model without namespaces: parameters, draws, synthetic
captures (checked with tcptrace and tshark), the audio-output interface."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from echolab.captures.reader import ReadStats, read_packets
from echolab.collector.audio import AudioOutput, AudioOutputError, DurationClip, SounddeviceOutput, clip_duration, \
    clip_samples, clip_from_wav
from echolab.collector.sim import NamespaceUnavailable, SimNotRunning, SimulatedSink
from echolab.collector.sim import lab as simlab
from echolab.collector.sim.errors import ParamsError
from echolab.collector.sim.model import draw_plan, paced_records, upload_bytes, upload_chunks
from echolab.collector.sim.params import DEFAULT_PARAMS, load_params
from echolab.collector.sim.synthetic import write_capture
from echolab.collector.sim.topology import Topology
from echolab.cli import app
from echolab.prompts.classes import STUDY_CLASSES

PARAMS = load_params()


def test_every_study_class_has_a_documented_model() -> None:
    assert set(STUDY_CLASSES) <= set(PARAMS.classes)
    assert PARAMS.classes["music"].music_s is not None
    assert all(PARAMS.classes[c].music_s is None for c in STUDY_CLASSES if c != "music")
    doc = (Path(__file__).resolve().parent.parent / "docs" / "simulation.md").read_text()
    for section in ("upload", "keepalive", "speech", "music", "windows", "synthetic"):
        assert f"[{section}]" in doc, f"docs/simulation.md does not explain [{section}]"
    assert "say nothing about a real Echo" in doc


def test_unknown_labels_get_the_default_model() -> None:
    plan = draw_plan("shopping", PARAMS, np.random.default_rng(0))
    assert plan.speech_bytes > 0 and not plan.has_music


def test_bad_parameter_files_fail_with_a_message(tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text(DEFAULT_PARAMS.read_text().replace('dist = "lognormal", median = 0.9', 'dist = "gamma", k = 1', 1))
    with pytest.raises(ParamsError, match=r"\[classes.information\] think_s: expected a table with dist"):
        load_params(bad)
    bad.write_text("not = [toml")
    with pytest.raises(ParamsError, match="not valid TOML"):
        load_params(bad)
    with pytest.raises(ParamsError, match="cannot read"):
        load_params(tmp_path / "missing.toml")


def test_draws_follow_the_classes_as_documented() -> None:
    rng = np.random.default_rng(1)
    draws = {c: [draw_plan(c, PARAMS, rng) for _ in range(300)] for c in STUDY_CLASSES}
    mean = {c: float(np.mean([p.speech_s for p in ps])) for c, ps in draws.items()}
    for c, ps in draws.items():  # every draw stays in the documented clip range
        d = PARAMS.classes[c].speech_s.args
        assert all(d["min"] <= p.speech_s <= d["max"] for p in ps)
        assert all(p.speech_bytes == int(p.speech_s * PARAMS.speech["bytes_per_s"]) for p in ps)
    assert mean["unintelligible"] < 0.5 * min(mean[c] for c in ("information", "weather", "directions", "quotes"))
    assert all(p.music_bytes > 0 for p in draws["music"])
    # information and weather overlap: each one's range covers most of the other's draws
    info = np.array([p.speech_s for p in draws["information"]])
    weather = np.array([p.speech_s for p in draws["weather"]])
    assert np.mean((info >= weather.min()) & (info <= weather.max())) > 0.7


def test_upload_is_proportional_to_the_clip_and_paced() -> None:
    tail = PARAMS.upload["tail_s"]
    assert upload_bytes(4.5 - tail, PARAMS) == 3 * upload_bytes(1.5 - tail, PARAMS) == 72000
    chunks = upload_chunks(2.0, PARAMS)
    assert sum(size for _, size in chunks) == upload_bytes(2.0, PARAMS)
    assert [round(t, 3) for t, _ in chunks[:3]] == [0.0, 0.1, 0.2]


def test_paced_records_burst_then_stream_at_the_rate() -> None:
    section = {"record_bytes": 1000, "bytes_per_s": 1000, "rate_factor": 2.0, "burst_s": 3.0}
    records = paced_records(10_000, section)
    assert sum(size for _, size in records) == 10_000
    assert [t for t, _ in records[:3]] == [0.0, 0.0, 0.0]
    assert records[-1][0] == pytest.approx((9_000 - 3_000) / 2_000)
    assert all(a[0] <= b[0] for a, b in zip(records, records[1:], strict=False))


def _tcptrace(path: Path) -> str:
    proc = subprocess.run(["tcptrace", "-l", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    assert "warning" not in proc.stdout.lower()
    return proc.stdout


@pytest.mark.skipif(shutil.which("tcptrace") is None or shutil.which("tshark") is None,
                    reason="tcptrace and tshark are installed by scripts/setup.sh")
@pytest.mark.parametrize("label", ["music", "information", "unintelligible"])
def test_synthetic_captures_read_cleanly_with_the_reference_tools(label: str, tmp_path: Path) -> None:
    path = tmp_path / f"{label}.pcap"
    info = write_capture(path, label, 2.5, np.random.default_rng(3), speed=4.0)
    assert info.synthetic and info.backend == "synthetic"
    stats = ReadStats()
    packets = list(read_packets(path, stats))
    assert stats.malformed == 0 and stats.packets == info.packets == len(packets)
    assert max(p.ip_len for p in packets) <= 1500
    topo = Topology()
    sent = sum(p.payload_len for p in packets if p.src == topo.voice_ip)
    assert info.plan.speech_bytes <= sent <= info.plan.speech_bytes * 1.1 + 2000
    out = _tcptrace(path)
    assert "rexmt data pkts:           0           rexmt data pkts:           0" in out
    tls = subprocess.run(["tshark", "-r", str(path), "-Y", "tls.record.content_type == 23"],
                         capture_output=True, text=True)
    assert tls.stdout.strip(), "tshark finds no TLS application data"
    expert = subprocess.run(["tshark", "-r", str(path), "-q", "-z", "expert,warn"], capture_output=True, text=True)
    assert "Warnings" not in expert.stdout and "Errors" not in expert.stdout, expert.stdout
    if label == "music":
        assert info.server_addresses == [topo.voice_ip, topo.music_ip]
        wins = [int(w) for w in re.findall(r"max win adv:\s+\d+ bytes\s+max win adv:\s+(\d+) bytes", out)]
        assert len(wins) == 2 and wins[1] * 5 < wins[0]  # the music server's windows are far smaller
    else:
        assert topo.music_ip not in {p.src for p in packets}


def test_synthetic_captures_are_reproducible_and_speed_only_shrinks_time(tmp_path: Path) -> None:
    a = write_capture(tmp_path / "a.pcap", "weather", 2.0, np.random.default_rng(5))
    b = write_capture(tmp_path / "b.pcap", "weather", 2.0, np.random.default_rng(5))
    fast = write_capture(tmp_path / "c.pcap", "weather", 2.0, np.random.default_rng(5), speed=10.0)
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (a.path, b.path)]
    assert digest[0] == digest[1]
    assert fast.plan == a.plan
    size = lambda p: sum(x.payload_len for x in read_packets(p))  # noqa: E731
    assert size(fast.path) == size(a.path)
    assert (fast.last_ts - fast.first_ts) < (a.last_ts - a.first_ts) / 5


def test_synth_command_writes_a_capture(tmp_path: Path) -> None:
    out = tmp_path / "s.pcap"
    result = CliRunner().invoke(app, ["sim", "synth", str(out), "--class", "quotes", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "Wrote" in result.output and out.stat().st_size > 0


def test_without_root_sim_up_says_why_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NamespaceUnavailable, match="needs root"):
        simlab.up(prefix="never")
    result = CliRunner().invoke(app, ["sim", "up", "--prefix", "never"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: the simulated lab needs root"), result.output


def test_without_iproute2_sim_up_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simlab.topology.shutil, "which", lambda name: None)
    with pytest.raises(NamespaceUnavailable, match=r"apt-get install iproute2"):
        simlab.up(prefix="never")


def test_load_without_a_lab_and_a_sink_without_an_echo(tmp_path: Path) -> None:
    with pytest.raises(SimNotRunning, match="no simulated lab 'nothing-here' is up") as err:
        simlab.SimLab.load("nothing-here", tmp_path)
    assert err.value.hint == "start it with 'echolab sim up'"
    sink = SimulatedSink(tmp_path / "echo.sock", speed=2.0)
    assert isinstance(sink, AudioOutput)
    with pytest.raises(SimNotRunning, match="control socket"):
        sink.play(DurationClip(1.0), label="weather")


class _PromptsLikeClip:
    """Shaped like echolab.prompts.audio.AudioClip: samples() and sample_rate."""

    def __init__(self, path: Path) -> None:
        self.path, self.sample_rate = path, 16000
        self.duration_s = 0.5

    def samples(self) -> np.ndarray:
        return sf.read(self.path, dtype="float32")[0]


def test_clips_are_duck_typed(tmp_path: Path) -> None:
    wav = tmp_path / "c.wav"
    sf.write(wav, np.zeros(8000, dtype=np.float32), 16000)
    data, rate = clip_samples(_PromptsLikeClip(wav))
    assert rate == 16000 and data.dtype == np.float32 and len(data) == 8000
    data, rate = clip_samples(DurationClip(0.5, wav))  # falls back to the WAV file
    assert (len(data), rate) == (8000, 16000)
    assert clip_from_wav(wav).duration_s == pytest.approx(0.5)
    with pytest.raises(AudioOutputError, match="duration_s"):
        clip_duration(object())
    with pytest.raises(AudioOutputError, match="no samples and no WAV path"):
        clip_samples(DurationClip(1.0))


def test_a_missing_sound_device_is_a_clear_error() -> None:
    with pytest.raises(AudioOutputError, match="PortAudio|no sound output device"):
        SounddeviceOutput(device="no-such-device-echolab")


def test_the_synthetic_example_in_the_docs_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "simulation.md").read_text()
    section = doc[doc.index("## The synthetic fallback"):]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "docs/simulation.md", "exec"), scope)
    assert scope["info"].synthetic and (tmp_path / "music.pcap").stat().st_size > 100_000


def test_request_shape_comes_near_a_real_echos(tmp_path: Path) -> None:
    """Voice-class requests at speed 1: medians of bytes up, bytes down and duration within 30% of a real Echo's.

    The request is the first burst of traffic (the post-answer events excluded), as the collector cuts it;
    the real figures are REAL-ECHO-TRAFFIC.md's (echolab.collector.timing.REAL_REQUEST). The live lab's
    figures at speed 1: bench/bench_sim_shape.py.
    """
    from echolab.captures.reader import read_packets
    from echolab.collector.sim.synthetic import write_capture
    from echolab.collector.timing import REAL_REQUEST, bursts

    rng = np.random.default_rng(5)
    shape: dict[str, list[float]] = {"bytes_up": [], "bytes_down": [], "duration_s": []}
    for i in range(40):
        label = ("information", "weather", "directions", "quotes")[i % 4]
        info = write_capture(tmp_path / f"{i}.pcap", label, 2.5, rng)
        request = bursts(read_packets(info.path), info.device_ip)[0]
        shape["bytes_up"].append(request.bytes_up)
        shape["bytes_down"].append(request.bytes_down)
        shape["duration_s"].append(request.end - request.start)
    for name, real in REAL_REQUEST.items():
        assert abs(np.median(shape[name]) - real) <= 0.3 * real, (name, np.median(shape[name]), real)
