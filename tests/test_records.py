"""The TLS record layer on crafted streams: exactly the records written, however the bytes were cut."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from echolab.captures.records import MAX_PENDING, RecordStats, plausible_header, tls_records
from pcaps import tcp_packet, write_pcap

DEVICE, SERVER = "192.168.1.50", "52.94.1.10"
DPORT, SPORT = 443, 50123
_rng = random.Random(22)  # ciphertext-like bodies, the same on every run


def record(length: int, ctype: int = 23, version: int = 0x0303, fill: int | None = None) -> bytes:
    """A TLS record header and *length* bytes of body (random, like ciphertext, unless *fill*)."""
    body = bytes([fill]) * length if fill is not None else _rng.randbytes(length)
    return bytes([ctype, version >> 8, version & 0xFF, length >> 8, length & 0xFF]) + body


def segments_pcap(path: Path, segments: list[tuple[float, int, bytes]], *, up: bool = True,
                  syn: bool = False, isn: int = 1_000_000) -> Path:
    """A pcap of data segments (time, stream offset, bytes) from the device (or the server) on one connection."""
    src, dst, sport, dport = (DEVICE, SERVER, SPORT, DPORT) if up else (SERVER, DEVICE, DPORT, SPORT)
    frames = []
    if syn:
        frames.append((0.0, tcp_packet(src, dst, sport, dport, seq=isn - 1, flags="S")))
    for ts, offset, data in segments:
        frames.append((ts, tcp_packet(src, dst, sport, dport, seq=(isn + offset) % (1 << 32), ack=1, flags="PA",
                                      payload=data)))
        frames.append((ts + 0.0001, tcp_packet(dst, src, dport, sport, seq=1, ack=(isn + offset + len(data)) % (1 << 32),
                                               flags="A")))
    return write_pcap(path, frames)


def cut(stream: bytes, sizes: list[int], t0: float = 1.0, dt: float = 0.01) -> list[tuple[float, int, bytes]]:
    """The stream cut into segments of *sizes* (the rest in one last segment), one every *dt* seconds."""
    out, pos = [], 0
    for i, n in enumerate([*sizes, len(stream)]):
        if pos >= len(stream):
            break
        out.append((t0 + i * dt, pos, stream[pos:pos + n]))
        pos += n
    return out


def read(path: Path, **kw) -> tuple[list[tuple[int, int, int]], RecordStats]:
    stats = RecordStats()
    recs = [(r.direction, r.content_type, r.length) for r in tls_records(path, DEVICE, stats, **kw)]
    return recs, stats


def test_plausible_header_bounds() -> None:
    assert plausible_header(record(10)) and plausible_header(record(18432))
    assert not plausible_header(record(18433)[:5] + b"")
    assert not plausible_header(bytes([24, 3, 3, 0, 10]))  # heartbeat: not a type the reader accepts
    assert not plausible_header(bytes([23, 3, 5, 0, 10]))  # no such version
    assert not plausible_header(bytes([23, 3, 3, 0, 0]))  # an empty record
    assert not plausible_header(bytes([23, 3, 3, 0]))  # too short


def test_record_split_over_three_segments(tmp_path: Path) -> None:
    stream = record(1200, ctype=22) + record(3000)
    path = segments_pcap(tmp_path / "split.pcap", cut(stream, [400, 500, 305 + 1000]), syn=True)
    recs, stats = read(path)
    assert recs == [(1, 22, 1200), (1, 23, 3000)]
    assert stats.resyncs == 0 and stats.skipped_bytes == 0 and stats.partial == 0
    first = next(tls_records(path, DEVICE))
    assert first.ts_us == 1_000_000 and first.end_us == 1_020_000  # header in the first segment, last byte in the third


def test_three_records_in_one_segment(tmp_path: Path) -> None:
    stream = record(113) + record(432) + record(33, ctype=21)
    path = segments_pcap(tmp_path / "three.pcap", [(1.0, 0, stream)], syn=True)
    assert read(path)[0] == [(1, 23, 113), (1, 23, 432), (1, 21, 33)]


def test_retransmitted_and_overlapping_segments_are_read_once(tmp_path: Path) -> None:
    stream = record(113) * 1 + record(1500) + record(432)
    segs = cut(stream, [118, 700, 805])
    retrans = [segs[0], segs[1], segs[1], (1.05, 600, stream[600:1400]), *segs[2:]]  # a copy, then an overlap
    recs, stats = read(segments_pcap(tmp_path / "rexmit.pcap", retrans, syn=True))
    assert recs == [(1, 23, 113), (1, 23, 1500), (1, 23, 432)]
    assert stats.duplicate_bytes == 700 + (818 - 600) + (1400 - 818)  # the copy, the overlap's head, then its tail


def test_out_of_order_segments_wait_for_the_hole(tmp_path: Path) -> None:
    stream = record(2000) + record(100, ctype=21)
    a, b, c = cut(stream, [1000, 600])
    recs, stats = read(segments_pcap(tmp_path / "ooo.pcap", [a, c, b], syn=True))
    assert recs == [(1, 23, 2000), (1, 21, 100)]
    assert stats.holes == 0 and stats.resyncs == 0


def test_capture_starting_mid_record_resynchronises(tmp_path: Path) -> None:
    head = record(4000)
    stream = head + record(113) + record(113) + record(432)
    start = 1234  # the capture begins inside the first record, with no SYN
    segs = [(t, off - start, data) for t, off, data in cut(stream, [1448] * 20) if off >= start]
    segs = [(1.0, 0, stream[start:1448])] + segs
    recs, stats = read(segments_pcap(tmp_path / "mid.pcap", segs))
    assert recs == [(1, 23, 113), (1, 23, 113), (1, 23, 432)]
    assert stats.resyncs == 1 and stats.skipped_bytes == len(head) - start


def test_mid_record_start_with_one_record_after_it(tmp_path: Path) -> None:
    """A single record after the cut is found at the stream's end (nothing follows to confirm it)."""
    stream = record(900, fill=0x17) + record(300)
    recs, _ = read(segments_pcap(tmp_path / "one.pcap", [(1.0, 0, stream[100:])]))
    assert recs == [(1, 23, 300)]


def test_lost_segment_is_skipped_and_the_reader_resynchronises(tmp_path: Path) -> None:
    stream = b"".join(record(1000) for _ in range(8))
    segs = cut(stream, [1005] * 8)  # one record a segment
    del segs[2]  # never captured
    recs, stats = read(segments_pcap(tmp_path / "hole.pcap", segs, syn=True))
    assert recs == [(1, 23, 1000)] * 7
    assert stats.holes == 1 and stats.hole_bytes == 1005


def test_both_directions_are_kept_apart(tmp_path: Path) -> None:
    up = record(113) + record(113)
    down = record(4123) + record(16379)
    frames = [(0.0, tcp_packet(DEVICE, SERVER, SPORT, DPORT, seq=99, flags="S")),
              (0.001, tcp_packet(SERVER, DEVICE, DPORT, SPORT, seq=499, ack=100, flags="SA")),
              (0.1, tcp_packet(DEVICE, SERVER, SPORT, DPORT, seq=100, ack=500, flags="PA", payload=up))]
    pos = 0
    for i in range(0, len(down), 1448):
        frames.append((0.2 + i / 1e6, tcp_packet(SERVER, DEVICE, DPORT, SPORT, seq=500 + i, ack=100 + len(up),
                                                 flags="A", payload=down[i:i + 1448])))
        pos = i
    path = write_pcap(tmp_path / "both.pcap", frames)
    assert read(path)[0] == [(1, 23, 113), (1, 23, 113), (-1, 23, 4123), (-1, 23, 16379)]
    assert pos > 0


def test_sequence_numbers_wrapping_around(tmp_path: Path) -> None:
    stream = record(3000) + record(50)
    path = segments_pcap(tmp_path / "wrap.pcap", cut(stream, [1448, 1448]), syn=True, isn=(1 << 32) - 2000)
    assert read(path)[0] == [(1, 23, 3000), (1, 23, 50)]


def test_too_many_bytes_behind_a_hole_are_not_held_forever(tmp_path: Path) -> None:
    stream = b"".join(record(16000) for _ in range(MAX_PENDING // 16000 + 6))
    segs = cut(stream, [16005] * (len(stream) // 16005))
    del segs[1]
    recs, stats = read(segments_pcap(tmp_path / "long.pcap", segs, syn=True))
    assert stats.holes == 1 and len(recs) == len(segs)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_records_match_tsharks_tls_dissector(tmp_path: Path) -> None:
    """tshark's own TLS dissector reads the same record lengths from a clean stream."""
    stream = record(22, ctype=22, version=0x0301) + record(1, ctype=20) + b"".join(
        record(n) for n in (113, 432, 4123, 9000, 113, 16408))
    path = segments_pcap(tmp_path / "clean.pcap", cut(stream, [1448] * 40), syn=True)
    out = subprocess.run(["tshark", "-r", str(path), "-o", "tcp.desegment_tcp_streams:TRUE", "-d",
                          "tcp.port==443,tls", "-T", "fields", "-e", "tls.record.length", "-Y", "tls"],
                         capture_output=True, text=True, check=True).stdout
    theirs = [int(n) for line in out.split() for n in line.split(",") if n]
    ours = [length for _, _, length in read(path)[0]]
    assert ours == theirs == [22, 1, 113, 432, 4123, 9000, 113, 16408]


def test_features_inspect_records(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from echolab.cli import app

    stream = record(113) + record(432) + record(33, ctype=21)
    path = segments_pcap(tmp_path / "cli.pcap", cut(stream, [300]), syn=True)
    res = CliRunner().invoke(app, ["features", "inspect", str(path), "--device-ip", DEVICE, "--records", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert [(r["direction"], r["type"], r["length"]) for r in out["records"]] == [
        (1, "application_data", 113), (1, "application_data", 432), (1, "alert", 33)]
    assert out["stats"]["records"] == 3 and out["records"][0]["version"] == "0x0303"
    table = CliRunner().invoke(app, ["features", "inspect", str(path), "--device-ip", DEVICE, "--records"],
                               terminal_width=200)
    text = " ".join(table.output.split())
    assert table.exit_code == 0 and "3 TLS records" in text and "0 resynchronisations" in text
