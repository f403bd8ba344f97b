"""The column path of feature extraction against the per-packet path.

A capture of common frames is decoded into numpy columns
(:mod:`echolab.captures.columns`), and a capture of established traffic gets
its record from whole-column operations (:mod:`echolab.analysis.features.columnar`).
Both must give exactly what the per-packet reader (``iter_tcp``) and tcptrace's
per-packet algorithm (``Tracer``) give: the tests build random captures inside
and outside the column path's domain (handshakes with and without window
scaling, zero windows, FINs, several connections, retransmissions, holes,
sequence numbers near a quadrant's end), as pcap, pcapng and nanosecond pcapng,
and compare every column, every record field and every server-to-device
statistic.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from echolab.analysis.features import sets
from echolab.analysis.features.columnar import _column_trace, _connections, _server_direction
from echolab.analysis.features.tcptrace import Tracer
from echolab.captures.columns import tcp_columns
from echolab.captures.pcapng import EPB, PcapngWalker
from echolab.captures.reader import ReadStats, iter_record_batches, iter_records, iter_tcp, parse_addr
from pcaps import synthetic_session, tcp_packet, write_pcap

DEVICE = "10.77.0.2"
TS_OPTS = b"\x01\x01\x08\x0a" + bytes(range(8))


def write_pcapng(path: Path, frames: list[tuple[float, bytes]], *, nano: bool = True) -> Path:
    """A pcapng file: one Ethernet interface (nanosecond or microsecond times), one enhanced block a frame."""
    def block(btype: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    units = 10**9 if nano else 10**6
    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
           block(1, struct.pack("<HHI", 1, 0, 65535) + (struct.pack("<HHB3x", 9, 1, 9) if nano else b"")
                 + struct.pack("<HH", 0, 0))]
    for ts, frame in frames:
        raw = round(ts * units)
        out.append(block(EPB, struct.pack("<IIIII", 0, raw >> 32, raw & 0xFFFFFFFF, len(frame), len(frame)) + frame))
    path.write_bytes(b"".join(out))
    return path


def random_capture(seed: int, path: Path, *, clean: bool = True, fmt: str = "pcap", snaplen: int = 65535) -> Path:
    """Random Echo-like traffic; *clean* keeps it inside the column path's domain (new, in-order data)."""
    rng = random.Random(seed)
    frames: list[tuple[float, bytes]] = []
    servers = ["52.94.1.10", "52.94.9.9", "3.3.3.3"]
    for k in range(rng.choice([1, 1, 2, 3])):
        server, sport, dport = servers[k], 50000 + k, 443
        t = 1_700_000_000.0 + rng.random()
        dseq = rng.choice([1000, 2**31 + 5, rng.randrange(2**31), 2**30 - 1_000_000])
        sseq = rng.choice([900_000, 3 * 2**30 + 7, rng.randrange(2**31)])
        ws_dev, ws_srv = rng.choice([7, None]), rng.choice([8, 0, None])
        ts_opts = rng.random() < 0.8
        opts = TS_OPTS if ts_opts else b""
        if rng.random() < 0.5:  # a handshake: SYN from the device, SYN+ACK from the server
            def syn_opts(ws: int | None) -> bytes:
                return (b"\x02\x04\x05\xb4\x04\x02" + (TS_OPTS[2:] if ts_opts else b"\x01\x01" * 5)
                        + (b"\x01\x03\x03" + bytes([ws]) if ws is not None else b""))
            frames.append((t, tcp_packet(DEVICE, server, sport, dport, seq=dseq - 1, flags="S", win=64240,
                                         options=syn_opts(ws_dev))))
            t += 0.01
            frames.append((t, tcp_packet(server, DEVICE, dport, sport, seq=sseq - 1, ack=dseq, flags="SA",
                                         win=65160, options=syn_opts(ws_srv))))
        for i in range(rng.randint(3, 60)):
            t += rng.choice([0.0, 0.0005, 0.01, 0.2, 1.5])
            r = rng.random()
            if r < 0.5:  # server data
                n = rng.choice([1448, 1448, 600, 1, 0])
                if not clean and rng.random() < 0.2:
                    sseq -= rng.choice([n, 100, 1448])  # retransmission or overlap
                if rng.random() < 0.05:
                    sseq += 3000  # a hole: bytes the capture never saw
                win = rng.choice([501, 8000, 65535, 0 if rng.random() < 0.3 else 300])
                frames.append((t, tcp_packet(server, DEVICE, dport, sport, seq=sseq % 2**32, ack=dseq % 2**32,
                                             flags=rng.choice(["A", "PA"]), win=win, payload=n, options=opts,
                                             ip_id=rng.randrange(1, 65536))))
                sseq += max(n, 0)
            elif r < 0.9:  # device ACK, sometimes with a zero window, or (after a loss) a SACK block
                sack = b""
                if not clean and ts_opts and rng.random() < 0.3:
                    edge = (sseq - rng.choice([1448, 3000])) % 2**32
                    sack = b"\x01\x01\x05\x0a" + edge.to_bytes(4, "big") + ((edge + 1448) % 2**32).to_bytes(4, "big")
                frames.append((t, tcp_packet(DEVICE, server, sport, dport, seq=dseq % 2**32,
                                             ack=(sseq - rng.choice([0, 0, 0, 1448])) % 2**32, flags="A",
                                             win=rng.choice([4000, 4000, 0]), options=opts + sack)))
            else:  # device data
                n = rng.choice([120, 30])
                frames.append((t, tcp_packet(DEVICE, server, sport, dport, seq=dseq % 2**32, ack=sseq % 2**32,
                                             flags="PA", win=4000, payload=n, options=opts)))
                dseq += n
        if rng.random() < 0.4:  # the server closes, maybe the device too
            t += 0.01
            frames.append((t, tcp_packet(server, DEVICE, dport, sport, seq=sseq % 2**32, ack=dseq % 2**32,
                                         flags="FA", win=501, options=opts)))
            if rng.random() < 0.7:
                t += 0.01
                frames.append((t, tcp_packet(DEVICE, server, sport, dport, seq=dseq % 2**32,
                                             ack=(sseq + 1) % 2**32, flags="FA", win=4000, options=opts)))
    if rng.random() < 0.2:  # a connection the device has no part in
        frames.append((1_700_000_000.5, tcp_packet("10.77.0.9", "8.8.8.8", 1234, 53, seq=5, ack=7, payload=40)))
    frames.sort(key=lambda f: f[0])
    if fmt == "pcap":
        return write_pcap(path, frames, snaplen=snaplen)
    return write_pcapng(path, frames, nano=fmt == "pcapng-ns")


def per_packet(path: Path) -> dict | str:
    stats = ReadStats()
    try:
        return sets._packet_record(iter_tcp(path, stats), stats, parse_addr(DEVICE), DEVICE).to_json()
    except sets.FeatureError as exc:
        return str(exc)


def extracted(path: Path) -> dict | str:
    try:
        return sets.extract_record(path, DEVICE).to_json()
    except sets.FeatureError as exc:
        return str(exc)


def server_stats(path: Path) -> list[dict]:
    """The tracer's statistics of each connection's server-to-device direction."""
    stats = ReadStats()
    tracer = Tracer()
    tracer.feed(iter_tcp(path, stats))
    return sets.server_directions(tracer.finish(stats.last_ts_us), parse_addr(DEVICE))


@pytest.mark.parametrize("fmt", ["pcap", "pcapng", "pcapng-ns"])
def test_columns_are_the_readers_packets(tmp_path: Path, fmt: str) -> None:
    for seed in range(12):
        path = random_capture(seed, tmp_path / f"c{seed}.{fmt[:6]}", clean=seed % 2 == 0, fmt=fmt)
        expected_stats, got_stats = ReadStats(), ReadStats()
        expected = list(iter_tcp(path, expected_stats))
        cols = tcp_columns(path, got_stats)
        assert cols is not None and cols.tuples() == expected
        assert got_stats == expected_stats


def test_frames_outside_the_common_case_keep_the_per_packet_reader(tmp_path: Path) -> None:
    v6 = write_pcap(tmp_path / "v6.pcap", [(1.0, tcp_packet("2001:db8::1", "2001:db8::2", 1, 2, payload=10))])
    cut = write_pcap(tmp_path / "snap.pcap", [(1.0, tcp_packet("10.0.0.1", "10.0.0.2", 1, 2, payload=100))],
                     snaplen=50)
    assert tcp_columns(v6) is None and tcp_columns(cut) is None
    assert extracted(v6) == per_packet(v6) and extracted(cut) == per_packet(cut)
    broken = tmp_path / "broken.pcap"
    broken.write_bytes(random_capture(3, tmp_path / "whole.pcap").read_bytes()[:-30])
    assert extracted(broken) == per_packet(broken) and "cut short" in str(extracted(broken))


@pytest.mark.parametrize("fmt", ["pcap", "pcapng-ns", "pcap-snap96"])
def test_the_column_path_gives_the_per_packet_record(tmp_path: Path, fmt: str) -> None:
    """Snap length 96 cuts the data of most segments short (tcptrace's truncated data and packets)."""
    taken = 0
    for seed in range(60):
        path = random_capture(seed, tmp_path / f"c{seed}", clean=seed % 4 != 3, fmt=fmt.split("-snap")[0],
                              snaplen=96 if "snap" in fmt else 65535)
        assert extracted(path) == per_packet(path), seed
        stats = ReadStats()
        cols = tcp_columns(path, stats)
        if cols is not None and _column_trace(cols, stats, int.from_bytes(parse_addr(DEVICE), "big")) is not None:
            taken += 1
    assert taken >= 40  # most captures are inside the domain


def test_every_server_statistic_matches_the_tracer(tmp_path: Path) -> None:
    device = int.from_bytes(parse_addr(DEVICE), "big")
    compared = 0
    for seed in range(60):
        path = random_capture(seed, tmp_path / f"c{seed}.pcap", clean=seed % 3 != 2)
        stats = ReadStats()
        cols = tcp_columns(path, stats)
        if cols is None or _column_trace(cols, stats, device) is None:
            continue
        ours = [_server_direction(cols, idx, cols.dst[idx] == device, stats.last_ts_us)
                for idx in _connections(cols) if device in (cols.src[idx[0]], cols.dst[idx[0]])]
        theirs = server_stats(path)
        assert len(ours) == len(theirs)
        for mine, tracer in zip(ours, theirs):
            assert mine == {k: tracer[k] for k in mine}, seed
            compared += 1
    assert compared >= 40


def test_the_study_shaped_sessions_take_the_column_path(tmp_path: Path) -> None:
    for syn in (False, True):
        path = synthetic_session(tmp_path / f"s{syn}.pcap", sizes=[1448, 900, 1448, 30], syn=syn,
                                 extra_server="52.94.9.9")
        stats = ReadStats()
        cols = tcp_columns(path, stats)
        assert _column_trace(cols, stats, int.from_bytes(parse_addr("192.168.1.50"), "big")) is not None
        again = ReadStats()
        assert (sets.extract_record(path, "192.168.1.50").to_json()
                == sets._packet_record(iter_tcp(path, again), again, parse_addr("192.168.1.50"),
                                       "192.168.1.50").to_json())


def test_a_packet_that_holds_block_type_words_is_not_taken_for_a_block(tmp_path: Path) -> None:
    """The walker finds runs of packet blocks by their type word; payload bytes that look like one stay data."""
    fake = struct.pack("<II", EPB, 32) * 40  # aligned words claiming to be packet blocks of 32 bytes
    frames = [(1.0 + i / 10, tcp_packet("10.0.0.1", "10.0.0.2", 1, 2, seq=1 + 400 * i, payload=fake[: 8 * i + 2]))
              for i in range(40)]
    path = write_pcapng(tmp_path / "tricky.pcapng", frames)
    walker = PcapngWalker(path)
    with open(path, "rb") as fh:
        blocks = [walker.packet(b, buf, pos, blen)[1:] for b, buf, pos, blen in walker.walk(fh) if b == EPB]
    records = [(r[0], r[3], r[4]) for r in iter_records(path)]
    assert records == blocks and len(records) == 40
    batches = list(iter_record_batches(path))
    assert sum(len(b[1]) for b in batches) == 40


def test_histograms_of_many_records_at_once_equal_one_at_a_time() -> None:
    import numpy as np

    from echolab.analysis.features.histogram import learn_edges, normalized_histogram, normalized_histograms

    rng = np.random.default_rng(5)
    arrays = [rng.integers(40, 1500, size=n).astype(float) for n in (0, 1, 7, 300, 0, 52)] + [np.array([9e9, -1.0])]
    edges = learn_edges(arrays[:-1], 15)
    together = normalized_histograms(arrays, edges)
    assert np.array_equal(together, np.array([normalized_histogram(a, edges) for a in arrays]))
    assert np.array_equal(normalized_histograms([np.zeros(0)] * 3, edges), np.zeros((3, 15)))


def test_a_packet_from_the_device_to_itself_counts_like_the_per_packet_path(tmp_path: Path) -> None:
    path = random_capture(4, tmp_path / "base.pcap")
    frames = [(1_700_000_000.0 + i, tcp_packet(DEVICE, DEVICE, 5000, 5001, seq=10 + i, payload=20 * i))
              for i in range(3)]
    import dpkt

    with open(path, "rb") as fh:
        frames += [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(fh)]
    mixed = write_pcap(tmp_path / "mixed.pcap", sorted(frames, key=lambda f: f[0]))
    assert extracted(mixed) == per_packet(mixed) and isinstance(extracted(mixed), dict)


def test_a_capture_past_the_column_limit_is_streamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = random_capture(8, tmp_path / "c.pcap")
    expected = extracted(path)
    monkeypatch.setattr(sets, "COLUMNS_MAX_BYTES", 100)
    monkeypatch.setattr(sets, "tcp_columns", lambda *a, **k: pytest.fail("a large capture was decoded in columns"))
    assert extracted(path) == expected == per_packet(path)


def _handmade(path: Path, packets: list[tuple[str, dict]]) -> Path:
    """Server 52.94.1.10:443 and the device :50000, one packet every 10 ms: ("s2d" or "d2s", tcp_packet args)."""
    frames = []
    for i, (way, kw) in enumerate(packets):
        ends = ("52.94.1.10", DEVICE, 443, 50000) if way == "s2d" else (DEVICE, "52.94.1.10", 50000, 443)
        frames.append((1_700_000_000.0 + i / 100, tcp_packet(*ends, **kw)))
    return write_pcap(path, frames)


def test_acknowledged_ranges_merge_before_a_later_segment_is_judged(tmp_path: Path) -> None:
    """Two acknowledged segments merge; a later one from before the first to inside the second is then out
    of order (it would not be against the two apart), so the device's ACKs must reach the segment database."""
    path = _handmade(tmp_path / "merge.pcap", [
        ("s2d", {"seq": 300, "ack": 1, "payload": 100}), ("s2d", {"seq": 400, "ack": 1, "payload": 100}),
        ("d2s", {"seq": 1, "ack": 500}), ("s2d", {"seq": 250, "ack": 1, "payload": 171}),
        ("s2d", {"seq": 500, "ack": 1, "payload": 100}), ("d2s", {"seq": 1, "ack": 600})])
    record = extracted(path)
    assert record == per_packet(path) and record["tcptrace"]["s2d_outoforder_pkts"] == 1


def test_options_that_change_the_trace_keep_the_per_packet_algorithm(tmp_path: Path) -> None:
    """A window scale option after the handshake (it turns scaling on) and SACK blocks from the server (they
    count for the server's direction) are outside the column path's domain."""
    syn = b"\x02\x04\x05\xb4\x01\x01\x01\x01"
    late_scale = _handmade(tmp_path / "scale.pcap", [
        ("d2s", {"seq": 0, "flags": "S", "options": syn}),
        ("s2d", {"seq": 0, "ack": 1, "flags": "SA", "options": syn[:4] + b"\x01\x03\x03\x08"}),
        ("d2s", {"seq": 1, "ack": 1, "options": b"\x01\x03\x03\x07"}),
        ("s2d", {"seq": 1, "ack": 1, "payload": 100, "win": 300}), ("d2s", {"seq": 1, "ack": 101})])
    sack = b"\x01\x01\x05\x0a" + (5000).to_bytes(4, "big") + (6000).to_bytes(4, "big")
    server_sack = _handmade(tmp_path / "sack.pcap", [
        ("s2d", {"seq": 1, "ack": 1, "payload": 100}), ("d2s", {"seq": 1, "ack": 101, "payload": 50}),
        ("s2d", {"seq": 101, "ack": 1, "options": sack}), ("s2d", {"seq": 101, "ack": 51, "payload": 10})])
    device = int.from_bytes(parse_addr(DEVICE), "big")
    for path in (late_scale, server_sack):
        stats = ReadStats()
        assert _column_trace(tcp_columns(path, stats), stats, device) is None
        assert extracted(path) == per_packet(path)
    assert extracted(server_sack)["tcptrace"]["s2d_sack_pkts"] == 1
