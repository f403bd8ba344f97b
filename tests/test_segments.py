"""Long captures cut into labelled requests (echolab/captures/cut.py, 'catalog import --split', 'catalog segments').

Two kinds of long capture: the simulated lab's synthetic requests laid out on
a known schedule with small keep-alives between them (exact ground truth,
realistic time scales), and a real TCP exchange on loopback captured with
tcpdump (real stack, real timing, short gaps).
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import dpkt
import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from echolab.collector.sim.params import load_params
from echolab.collector.sim.synthetic import generate
from echolab.collector.sim.topology import Topology
from echolab.db.catalog import Catalog
from echolab.db.files import sha256_file
from echolab.db.records import Capture
from echolab.captures.cut import find_segments, split_capture
from echolab.captures.device import detect_device, load_timeline
from echolab.captures.pieces import write_pieces
from echolab.captures.spec import SplitError, SplitSpec
from echolab.db.transfer import label_from_name
from echolab.cli import app
from echolab.labdir import LabDir
from echo_shapes import EchoCapture, cut_is_right, echo_long_capture
from pcaps import SIM_DEVICE_IP, tcp_packet, write_pcap

runner = CliRunner()
T0 = 1_700_000_000.0
SPACING = 60.0  # one request a minute, starting 20 s into its minute
OFFSET = 20.0
LABEL_RX = r"^(?P<label>.+?)_\d+_\d+s"


def cli(lab: LabDir, *args: str):
    return runner.invoke(app, ["--lab", str(lab.root), *args])


# --------------------------------------------------------------------------- synthetic long captures


@dataclass
class LongCapture:
    path: Path
    requests: list[tuple[float, float]]  # first and last packet of each request
    keepalives: list[float]


def _keepalive(t: float, topo: Topology) -> list[tuple[float, bytes]]:
    """A ping on the idle voice connection, its pong and an ACK: 3 small packets."""
    echo, voice = topo.echo_ip, topo.voice_ip
    return [(t, tcp_packet(echo, voice, 40000, 443, seq=5000, ack=9000, flags="PA", payload=62)),
            (t + 0.03, tcp_packet(voice, echo, 443, 40000, seq=9000, ack=5062, flags="PA", payload=62)),
            (t + 0.07, tcp_packet(echo, voice, 40000, 443, seq=5062, ack=9062, flags="A"))]


def make_long_capture(path: Path, label: str, n: int, *, seed: int = 1) -> LongCapture:
    """*n* synthetic requests of *label*, one a minute, with keep-alives before, between and after.

    The simulated answer streams faster than it plays, and the Echo's playback-end event
    follows up to about 10 s after the last streamed record: the tests cut with gap=11,
    which keeps it with its request and stays under the 12.5 s from a request to a keep-alive."""
    params, topo, rng = load_params(), Topology(), np.random.default_rng(seed)
    frames: list[tuple[float, bytes]] = _keepalive(T0, topo)
    requests, keepalives = [], [T0]
    for k in range(n):
        got, _plan = generate(label, 2.0, rng, params, start_ts=T0 + OFFSET + k * SPACING, topo=topo)
        first, last = got[0][0], got[-1][0]
        assert last - first < SPACING - OFFSET - 5, "a request outgrew its minute; adjust the layout"
        frames += got
        requests.append((first, last))
        # midway between this request's end (< 55 s into its minute) and the next one's start (at 20 s)
        ka = T0 + (k + 1) * SPACING + 7.5 if k < n - 1 else T0 + k * SPACING + 70
        frames += _keepalive(ka, topo)
        keepalives.append(ka)
    frames.sort(key=lambda f: f[0])
    return LongCapture(write_pcap(path, frames), requests, keepalives)


@pytest.fixture(scope="module")
def weather(tmp_path_factory: pytest.TempPathFactory) -> LongCapture:
    folder = tmp_path_factory.mktemp("long")
    return make_long_capture(folder / "what_is_the_weather_4_60s.pcap", "weather", 4)


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory) -> LongCapture:
    folder = tmp_path_factory.mktemp("long")
    return make_long_capture(folder / "play_music_3_60s.pcap", "music", 3, seed=2)


def test_gap_split_finds_every_request_and_only_those(weather: LongCapture) -> None:
    result = split_capture(weather.path, SplitSpec.parse("gap=11"))
    # the voice connection is long-lived (no SYN in the capture): the device is its client end
    assert (result.timeline.device.ip, result.timeline.device.method) == (Topology().echo_ip, "client ports")
    assert [(s.start, s.end) for s in result.segments] == [
        (pytest.approx(a, abs=2e-6), pytest.approx(b, abs=2e-6)) for a, b in weather.requests
    ]
    # every keep-alive is a burst of its own, set aside
    assert [s.start for s in result.ignored] == [pytest.approx(t, abs=2e-6) for t in weather.keepalives]
    assert all(s.packets == 3 for s in result.ignored)


def test_thresholds_decide_what_is_a_keepalive(weather: LongCapture) -> None:
    timeline = load_timeline(weather.path)
    loose = find_segments(timeline, SplitSpec.parse("gap=11", min_packets=1, min_bytes=0))
    assert len(loose.segments) == len(weather.requests) + len(weather.keepalives)
    strict = find_segments(timeline, SplitSpec.parse("gap=11", min_packets=100_000))
    assert strict.segments == []
    # a gap longer than the quiet stretches merges everything into one
    merged = find_segments(timeline, SplitSpec.parse("gap=100"))
    assert len(merged.segments) == 1


def test_the_report_after_an_answer_is_attached_to_its_request(weather: LongCapture) -> None:
    """A 2 s gap leaves each answer's playback report (3 packets, 8 to 10 s later) out; attaching brings it back."""
    short = split_capture(weather.path, SplitSpec.parse("gap=2"))
    assert len(short.segments) == 4 and all(s.end < b - 3 for s, (_, b) in zip(short.segments, weather.requests))
    joined = split_capture(weather.path, SplitSpec.parse("gap=2", attach_trailing=12))
    assert [(s.start, s.end) for s in joined.segments] == [
        (pytest.approx(a, abs=2e-6), pytest.approx(b, abs=2e-6)) for a, b in weather.requests]
    assert joined.attached == 4
    # keep-alives (every packet at most a keep-alive's size) are never attached, even when close enough
    assert [s.start for s in joined.ignored] == [pytest.approx(t, abs=2e-6) for t in weather.keepalives]


def test_speed_reads_the_cut_on_the_households_clock(weather: LongCapture, tmp_path: Path) -> None:
    """A capture played 10 times faster, cut with --speed 10, gives the same requests as the real-time one."""
    with weather.path.open("rb") as fh:
        frames = [(T0 + (float(ts) - T0) / 10, bytes(buf)) for ts, buf in dpkt.pcap.Reader(fh)]
    fast = write_pcap(tmp_path / "fast.pcap", frames)
    scaled = [(T0 + (a - T0) / 10, T0 + (b - T0) / 10) for a, b in weather.requests]
    for spec in (SplitSpec.parse("gap=2", attach_trailing=12, speed=10), SplitSpec.parse("gap=11", speed=10)):
        got = split_capture(fast, spec)
        assert [(s.start, s.end) for s in got.segments] == [
            (pytest.approx(a, abs=2e-6), pytest.approx(b, abs=2e-6)) for a, b in scaled], spec
        assert "speed=10" in got.choice
    # read on the capture's own clock, 11 s of quiet is more than any stretch of it: one burst
    assert len(split_capture(fast, SplitSpec.parse("gap=11")).segments) == 1
    auto = split_capture(fast, SplitSpec.parse("auto", speed=10), expect=4)
    assert [(s.start, s.end) for s in auto.segments] == [
        (pytest.approx(a, abs=2e-6), pytest.approx(b, abs=2e-6)) for a, b in scaled], auto.why
    assert auto.spec.speed == 10 and "for any gap from 1.00 to 30.00 s" in auto.why  # the household's seconds
    with pytest.raises(SplitError, match="speed factor must be above 0"):
        SplitSpec.parse("gap=2", speed=0)


def test_every_and_times_schedules(weather: LongCapture, tmp_path: Path) -> None:
    every = split_capture(weather.path, SplitSpec.parse(f"every={SPACING:g}"))
    assert len(every.segments) == 4 and len(every.ignored) == 1  # the last minute holds only a keep-alive
    for seg, (a, b) in zip(every.segments, weather.requests):
        assert seg.start <= a and b <= seg.end
    relative = tmp_path / "times.txt"
    relative.write_text("# seconds after the first packet\n" +
                        "".join(f"{OFFSET - 1 + k * SPACING:g}\n" for k in range(4)))
    absolute = tmp_path / "epochs.txt"
    absolute.write_text("".join(f"{T0 + OFFSET - 1 + k * SPACING:.6f}, request {k}\n" for k in range(4)))
    for times in (relative, absolute):
        result = split_capture(weather.path, SplitSpec.parse(f"times={times}"))
        assert [round(s.start - T0, 3) for s in result.segments] == [OFFSET - 1 + k * SPACING for k in range(4)]
        for seg, (a, b) in zip(result.segments, weather.requests):
            assert seg.start <= a and b <= seg.end
    backwards = tmp_path / "backwards.txt"
    backwards.write_text("30\n10\n")
    with pytest.raises(SplitError, match="must increase"):
        split_capture(weather.path, SplitSpec.parse(f"times={backwards}"))


@pytest.mark.parametrize("text, message", [
    ("gap", "cannot read the split"), ("slices=3", "cannot read the split"), ("gap=-1", "above 0"),
    ("every=soon", "needs a number"), ("times=/nonexistent/times.txt", "cannot read the times file"),
])
def test_bad_split_settings(text: str, message: str) -> None:
    with pytest.raises(SplitError, match=message):
        SplitSpec.parse(text)


def test_pieces_copy_records_unchanged(weather: LongCapture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every source record in a segment's range, byte for byte and with its time, and no other."""
    monkeypatch.setattr("echolab.captures.pieces.MAX_OPEN", 2)  # pieces are closed and reopened while writing
    for fmt in ("pcapng", "nsecpcap"):
        source = tmp_path / f"source.{fmt}"
        subprocess.run(["editcap", "-F", fmt, str(weather.path), str(source)], check=True, capture_output=True)
        result = split_capture(source, SplitSpec.parse("gap=11", min_packets=1, min_bytes=0))
        assert len(result.segments) == 9
        pieces = write_pieces(source, result.segments, tmp_path / fmt)
        with open(weather.path, "rb") as fh:
            records = [(round(ts * 1e6), bytes(buf)) for ts, buf in dpkt.pcap.Reader(fh)]
        for seg, piece in zip(result.segments, pieces):
            with open(piece, "rb") as fh:
                reader = dpkt.pcapng.Reader(fh)
                assert reader.datalink() == dpkt.pcap.DLT_EN10MB
                got = [(round(ts * 1e6), bytes(buf)) for ts, buf in reader]
            assert got == [r for r in records if seg.start_us <= r[0] <= seg.end_us]
        # tshark reads the pieces, and sees the source's nanosecond times unchanged
        shown = subprocess.run(["tshark", "-r", str(pieces[0]), "-T", "fields", "-e", "frame.time_epoch"],
                               check=True, capture_output=True, text=True).stdout.split()
        whole = subprocess.run(["tshark", "-r", str(source), "-T", "fields", "-e", "frame.time_epoch"],
                               check=True, capture_output=True, text=True).stdout.split()
        first = result.segments[0]
        assert shown == [t for t in whole if first.start_us <= int(Decimal(t) * 1_000_000) <= first.end_us]


def test_detects_the_local_address_talking_to_remote_servers(tmp_path: Path) -> None:
    echo, phone, router, cloud = "192.168.1.20", "192.168.1.30", "192.168.1.1", "52.94.233.10"
    frames = []
    for i in range(30):  # the phone talks more, but only to the router
        frames.append((T0 + i, tcp_packet(phone, router, 50000, 8080, payload=1400)))
    for i in range(10):
        frames.append((T0 + i + 0.5, tcp_packet(echo, cloud, 40000, 443, payload=900)))
        frames.append((T0 + i + 0.6, tcp_packet(cloud, echo, 443, 40000, payload=100)))
    frames.append((T0 + 20, tcp_packet(phone, "8.8.8.8", 50001, 443, payload=200)))
    guess = detect_device(write_pcap(tmp_path / "home.pcap", sorted(frames)))
    assert (guess.ip, guess.method, guess.runner_up) == (echo, "remote traffic", phone)
    assert "192.168.1.20 (detected: 9" in guess.describe()
    with pytest.raises(SplitError, match="no TCP packet .* goes to 10.9.9.9"):
        load_timeline(tmp_path / "home.pcap", "10.9.9.9")


def test_label_from_name() -> None:
    assert label_from_name(LABEL_RX, "what_is_the_weather_5_30s.pcap") == "what_is_the_weather"
    assert label_from_name(r"^([a-z]+)-", "music-2.pcapng") == "music"
    assert label_from_name(r"weather", "the_weather.pcap") == "weather"
    assert label_from_name(LABEL_RX, "notes.pcap") is None


# --------------------------------------------------------------------------- importing


def test_import_split_labels_links_and_is_idempotent(lab: LabDir, weather: LongCapture, music: LongCapture,
                                                      tmp_path: Path) -> None:
    folder = tmp_path / "long"
    folder.mkdir()
    for cap in (weather, music):
        shutil.copy(cap.path, folder / cap.path.name)
    args = ("catalog", "import", str(folder), "--split", "gap=11", "--label-from", LABEL_RX, "--campaign", "long")
    first = cli(lab, *args)
    assert first.exit_code == 0, first.output
    assert "Imported 7 captures; skipped 0 duplicates" in first.output
    assert f"what_is_the_weather_4_60s.pcap: label what_is_the_weather, device {SIM_DEVICE_IP} (detected" in first.output
    with Catalog.open(lab) as cat:
        rows = cat.captures()
        by_label = {label: [r for r in rows if r.label == label] for label in ("what_is_the_weather", "play_music")}
        assert {k: len(v) for k, v in by_label.items()} == {"what_is_the_weather": 4, "play_music": 3}
        for label, cap in (("what_is_the_weather", weather), ("play_music", music)):
            got = sorted(by_label[label], key=lambda r: r.source_start)
            assert [(r.source_start, r.source_end) for r in got] == [
                (pytest.approx(a, abs=2e-6), pytest.approx(b, abs=2e-6)) for a, b in cap.requests
            ]
            for row in got:
                assert row.source_path == str(folder / cap.path.name)
                assert row.source_sha256 == sha256_file(cap.path)
                assert row.device_ip == SIM_DEVICE_IP and row.path.endswith(".pcapng")
                assert row.started_at.timestamp() == pytest.approx(row.source_start, abs=1e-5)
                assert sha256_file(lab.root / row.path) == row.sha256
    again = cli(lab, *args)
    assert again.exit_code == 0, again.output
    assert "Imported 0 captures; skipped 7 duplicates" in again.output
    # the same capture, run on a little longer (another file): its pieces dedupe by content
    longer = tmp_path / "longer" / weather.path.name
    longer.parent.mkdir()
    with open(weather.path, "rb") as fh:
        frames = [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(fh)]
    write_pcap(longer, frames + _keepalive(weather.keepalives[-1] + 60, Topology()))
    ran_on = cli(lab, "catalog", "import", str(longer), "--split", "gap=11", "--label-from", LABEL_RX)
    assert ran_on.exit_code == 0, ran_on.output
    assert "Imported 0 captures; skipped 4 duplicates" in ran_on.output
    # a different split of the same source would catalogue the same requests again: refused
    every = cli(lab, *args[:-4], "--split", f"every={SPACING:g}", "--label-from", LABEL_RX, "--campaign", "long")
    assert every.exit_code == 1, every.output
    assert "what_is_the_weather_4_60s.pcap is already catalogued cut another way (4 pieces: campaign 'long' " \
           "with gap=11 min-packets=8 min-bytes=4096)" in every.output
    with Catalog.open(lab) as cat:
        assert len(cat.captures()) == 7
        assert not list(cat.lab.tmp_dir.iterdir())


def test_expect_mismatch_is_marked_suspect_not_forced(sqlite_lab: LabDir, weather: LongCapture,
                                                      music: LongCapture, tmp_path: Path) -> None:
    folder = tmp_path / "long"
    folder.mkdir()
    for cap in (weather, music):
        shutil.copy(cap.path, folder / cap.path.name)
    result = cli(sqlite_lab, "catalog", "import", str(folder), "--split", "gap=11", "--label-from", LABEL_RX,
                 "--expect", "4")
    assert result.exit_code == 0, result.output
    assert "Imported 7 captures" in result.output and "rejected 0" in result.output
    assert f"suspect: {folder / 'play_music_3_60s.pcap'}: holds 3 requests, expected 4" in result.output
    assert "cut checks: 1 of 2 files suspect" in result.output
    with Catalog.open(sqlite_lab) as cat:
        checks = {(r.label, r.cut_check) for r in cat.captures()}
    assert checks == {("what_is_the_weather", "ok"), ("play_music", "suspect: holds 3 requests, expected 4")}
    unmatched = cli(sqlite_lab, "catalog", "import", str(folder), "--split", "gap=11", "--label-from", r"^xyz_(\w+)")
    assert unmatched.exit_code == 1 and "is not matched by --label-from" in unmatched.output
    no_split = cli(sqlite_lab, "catalog", "import", str(folder), "--expect", "4")
    assert no_split.exit_code != 0 and "--expect and --attach-trailing need --split" in no_split.output


def test_segments_preview_writes_png_and_table(weather: LongCapture, tmp_path: Path) -> None:
    png = tmp_path / "cut.png"
    result = runner.invoke(app, ["catalog", "segments", str(weather.path), "--split", "gap=11", "-o", str(png)],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    assert f"device {SIM_DEVICE_IP} (detected" in result.output
    assert "4 requests in what_is_the_weather_4_60s.pcap (gap=11); 5 keep-alive bursts set aside" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    rows = json.loads(runner.invoke(app, ["catalog", "segments", str(weather.path), "--split", "gap=11",
                                          "--json"]).output)
    assert [float(r["offset_s"]) for r in rows] == [pytest.approx(a - T0, abs=1e-3) for a, _ in weather.requests]
    bad = runner.invoke(app, ["catalog", "segments", str(weather.path), "--split", "gap=11", "--device-ip", "nope"])
    assert bad.exit_code == 1 and "Error: 'nope' is not an IP address" in bad.output


# --------------------------------------------------------------------------- a real capture on loopback

DEVICE, SERVER = "127.0.0.2", "127.0.0.1"


def _serve(server: socket.socket, stop: threading.Event) -> None:
    """Each connection: read (request bytes, reply bytes) headers and answer, until the client closes."""
    server.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = server.accept()
        except socket.timeout:
            continue
        threading.Thread(target=_answer, args=(conn,), daemon=True).start()


def _answer(conn: socket.socket) -> None:
    with conn:
        while head := _recv(conn, 8):
            ask, reply = struct.unpack("!II", head)
            _recv(conn, ask)
            conn.sendall(b"r" * reply)


def _recv(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return b""
        data += chunk
    return data


def _exchange(sock: socket.socket, ask: int, reply: int) -> None:
    sock.sendall(struct.pack("!II", ask, reply) + b"q" * ask)
    _recv(sock, reply)


def _connect(port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind((DEVICE, 0))
    sock.connect((SERVER, port))
    return sock


@pytest.fixture(scope="module")
def loopback_capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[float, float]]]:
    """Three requests (a new connection each, 15 round trips) 0.9 s apart; keep-alives on an idle connection."""
    path = tmp_path_factory.mktemp("loop") / "turn_on_the_lights_3_1s.pcap"
    server = socket.socket()
    server.bind((SERVER, 0))
    server.listen(8)
    port = server.getsockname()[1]
    stop = threading.Event()
    serving = threading.Thread(target=_serve, args=(server, stop), daemon=True)
    serving.start()
    # A small snap length (the packets are < 9000 bytes) and a large buffer: in immediate mode the kernel
    # ring holds buffer/snaplen packets, and with -s 0 on loopback that is ~8, so bursts would be dropped.
    proc = subprocess.Popen(["tcpdump", "-i", "lo", "--immediate-mode", "-U", "-s", "9000", "-B", "16384",
                             "-w", str(path), f"tcp port {port}"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        assert proc.stderr is not None
        while "listening on" not in proc.stderr.readline().decode(errors="replace"):
            assert proc.poll() is None, "tcpdump did not start"
        spans = []
        with _connect(port) as idle:
            _exchange(idle, 10, 10)
            for k in range(3):
                time.sleep(0.45)
                _exchange(idle, 10, 10)  # a keep-alive mid-pause
                time.sleep(0.45)
                start = time.time()
                with _connect(port) as req:
                    for _ in range(15):
                        _exchange(req, 1500, 4000)
                spans.append((start, time.time()))
            time.sleep(0.45)
            _exchange(idle, 10, 10)
        time.sleep(0.3)
    finally:
        stop.set()
        proc.terminate()
        proc.wait(timeout=10)
        serving.join(timeout=5)
        server.close()
    return path, spans


def test_real_loopback_capture_is_cut_per_request(loopback_capture, sqlite_lab: LabDir) -> None:
    path, spans = loopback_capture
    result = split_capture(path, SplitSpec.parse("gap=0.3"))
    guess = result.timeline.device
    assert (guess.ip, guess.method) == (DEVICE, "connections opened")
    assert len(result.segments) == 3, [(s.start, s.end, s.packets) for s in result.segments]
    for seg, (a, b) in zip(result.segments, spans):
        # the SYN follows the connect() call; the last FIN/ACK follows the close (well within the gap)
        assert a <= seg.start < a + 0.25 and b - 0.1 < seg.end < b + 0.25
    assert len(result.ignored) >= 4  # the keep-alives (and the idle connection's opening and close)
    imported = cli(sqlite_lab, "catalog", "import", str(path), "--split", "gap=0.3", "--label-from", LABEL_RX,
                   "--expect", "3")
    assert imported.exit_code == 0, imported.output
    with Catalog.open(sqlite_lab) as cat:
        rows = cat.captures()
        assert [r.label for r in rows] == ["turn_on_the_lights"] * 3
        assert all(r.packet_count >= 15 * 2 + 3 for r in rows), [(r.packet_count, r.source_start) for r in rows]
        assert cat.session.scalar(select(Capture.source_sha256).limit(1)) == sha256_file(path)


def test_python_example_in_the_docs_runs(weather: LongCapture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "long-captures.md").read_text()
    code = doc.split("```python\n", 1)[1].split("```", 1)[0]
    shutil.copy(weather.path, tmp_path / "long.pcap")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/long-captures.md", "exec"), {})
    assert f"{SIM_DEVICE_IP} (detected" in capsys.readouterr().out
    assert (tmp_path / "timeline.png").stat().st_size > 0
    assert len(list((tmp_path / "pieces").glob("*.pcapng"))) == len(weather.requests)


# --------------------------------------------------------------------------- Echo-shaped captures: --split auto
# Crafted (tests/echo_shapes.py), not real: one long-lived TLS connection caught
# mid-stream, keep-alives every 20-30 s, 5 requests 30-50 s apart, and one real
# pattern each that a fixed gap gets wrong.

PATTERNS = {  # the chances given to echo_long_capture
    "trailing upload bursts 8-15 s after answers": dict(trailing=1.0, stray=0.0, pause=0.0),
    "a stray burst before the first request": dict(trailing=0.0, stray=1.0, pause=0.0),
    "pauses of 2-3 s inside answers": dict(trailing=0.0, stray=0.0, pause=1.0),
    "all of them": dict(trailing=1.0, stray=1.0, pause=1.0),
}


@pytest.fixture(scope="module")
def echo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, EchoCapture]:
    folder = tmp_path_factory.mktemp("echo")
    made = {}
    for i, (name, chances) in enumerate(PATTERNS.items()):
        cap = echo_long_capture(folder / f"pattern{i}_5_40s.pcap", np.random.default_rng(100 + i), **chances)
        made[name] = cap
    assert made["a stray burst before the first request"].strays
    assert len(made["trailing upload bursts 8-15 s after answers"].trailing) == 5
    assert len(made["pauses of 2-3 s inside answers"].pauses) == 5
    return made


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_auto_cut_with_expect_cuts_each_real_pattern_right(echo_files: dict[str, EchoCapture], pattern: str) -> None:
    cap = echo_files[pattern]
    timeline = load_timeline(cap.path)
    assert timeline.device.method == "remote traffic" and timeline.device.ip == "192.168.1.50"
    auto = find_segments(timeline, SplitSpec.parse("auto"), expect=5)
    assert cut_is_right([(s.start, s.end) for s in auto.segments], cap), auto.why
    assert auto.asked is not None and auto.spec.mode == "gap" and "5 requests (5 expected)" in auto.why
    # the chosen settings reproduce the cut on their own
    again = find_segments(timeline, SplitSpec.parse(f"gap={auto.spec.seconds!r}", min_bytes=auto.spec.min_bytes,
                                                    attach_trailing=auto.spec.attach_trailing))
    assert [(s.start_us, s.end_us) for s in again.segments] == [(s.start_us, s.end_us) for s in auto.segments]
    # what the user tried cuts these wrong
    fixed = find_segments(timeline, SplitSpec.parse("gap=3"))
    if pattern != "pauses of 2-3 s inside answers":
        assert not cut_is_right([(s.start, s.end) for s in fixed.segments], cap)


def test_auto_cut_without_expect_reads_the_quiet_times(echo_files: dict[str, EchoCapture]) -> None:
    cap = echo_files["all of them"]
    result = split_capture(cap.path, SplitSpec.parse("auto"))
    assert cut_is_right([(s.start, s.end) for s in result.segments], cap), result.why
    assert "the count that holds over the widest range of gaps" in result.why


def test_import_auto_keeps_the_choice_and_segments_shows_it_per_file(sqlite_lab: LabDir,
                                                                      echo_files: dict[str, EchoCapture],
                                                                      tmp_path: Path) -> None:
    folder = tmp_path / "echo"
    folder.mkdir()
    for cap in echo_files.values():
        shutil.copy(cap.path, folder / cap.path.name)
    preview = runner.invoke(app, ["catalog", "segments", str(folder), "--split", "auto", "--expect", "5"])
    assert preview.exit_code == 0, preview.output
    lines = [line for line in preview.output.splitlines() if line.startswith("pattern")]
    assert len(lines) == 4 and all(": 5 requests (as expected); gap=" in line for line in lines)
    assert "4 of 4 captures hold the 5 requests expected" in preview.output
    done = cli(sqlite_lab, "catalog", "import", str(folder), "--split", "auto", "--expect", "5",
               "--label-from", r"^(pattern\d)_")
    assert done.exit_code == 0, done.output
    assert "Imported 20 captures" in done.output and done.output.count("  cut: gap=") == 4
    with Catalog.open(sqlite_lab) as cat:
        rows = cat.captures()
    for line in lines:
        name, _, rest = line.partition(": 5 requests (as expected); ")
        settings, _, why = rest.partition("; ")
        mine = [r for r in rows if r.source_path.endswith(name)]
        assert len(mine) == 5 and {r.source_cut for r in mine} == {settings}
        assert {r.source_cut_why for r in mine} == {why}


def test_recut_is_refused_then_replaced_with_features_and_runs_updated(sqlite_lab: LabDir,
                                                                        echo_files: dict[str, EchoCapture],
                                                                        tmp_path: Path) -> None:
    from echolab.db.records import AnalysisRun, FeatureRow

    cap = echo_files["trailing upload bursts 8-15 s after answers"]
    first = cli(sqlite_lab, "catalog", "import", str(cap.path), "--split", "auto", "--expect", "5",
                "--campaign", "home")
    assert first.exit_code == 0, first.output
    with Catalog.open(sqlite_lab) as cat:
        old = cat.captures()
        cut = old[0].source_cut
        with cat.transaction() as s:
            s.add(AnalysisRun(name="before", status="done", capture_ids=[r.id for r in old]))
            s.add(AnalysisRun(name="unrelated", status="done", capture_ids=[]))
            for r in old:
                s.add(FeatureRow(capture_sha256=r.sha256, extractor_version="v1", device_ip="192.168.1.50",
                                 values={"x": 1}))
    refused = cli(sqlite_lab, "catalog", "import", str(cap.path), "--split", "gap=3", "--campaign", "other")
    assert refused.exit_code == 1
    assert f"is already catalogued cut another way (5 pieces: campaign 'home' with {cut})" in refused.output
    with Catalog.open(sqlite_lab) as cat:
        assert [r.id for r in cat.captures()] == [r.id for r in old]
    swapped = cli(sqlite_lab, "catalog", "import", str(cap.path), "--split", "gap=3", "--campaign", "other",
                  "--replace")
    assert swapped.exit_code == 0, swapped.output
    assert "10 imported, 5 old pieces replaced" in swapped.output and "marked stale" in swapped.output
    with Catalog.open(sqlite_lab) as cat:
        new = cat.source_pieces(sha256_file(cap.path))
        assert len(new) == 10
        assert {(r.source_start, r.source_end) for r in new}.isdisjoint((r.source_start, r.source_end) for r in old)
        assert all(a.source_end < b.source_start for a, b in zip(new, new[1:]))  # no overlap
        assert all(r.source_cut == "gap=3 min-packets=8 min-bytes=4096" for r in new)
        assert cat.session.scalars(select(FeatureRow)).all() == []
        runs = {r.name: r for r in cat.session.scalars(select(AnalysisRun))}
        assert runs["before"].status == "stale" and "were replaced by a re-cut" in runs["before"].stale_reason
        assert runs["unrelated"].status == "done"
        assert not any((sqlite_lab.root / r.path).exists() for r in old)
