"""The streaming capture reader, checked field by field against tshark."""

from __future__ import annotations

import shutil
import struct
import subprocess
import tracemalloc
from pathlib import Path

import dpkt
import pytest

from echolab.captures.reader import CaptureError, ReadStats, iter_tcp, read_packets, summarize
from pcaps import synthetic_session, tcp_packet, write_pcap

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")

FIELDS = ["frame.time_epoch", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "tcp.dstport",
          "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.window_size_value", "tcp.len", "ip.len", "ipv6.plen"]


def tshark_tcp(path: Path) -> list[dict[str, str]]:
    cmd = ["tshark", "-r", str(path), "-Y", "tcp", "-T", "fields", "-E", "occurrence=f",
           *sum((["-e", f] for f in FIELDS), [])]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [dict(zip(FIELDS, line.split("\t"))) for line in out.splitlines()]


def assert_same_as_tshark(path: Path) -> int:
    ours = [p for p in read_packets(path) if p.proto == 6]
    theirs = tshark_tcp(path)
    assert len(ours) == len(theirs) > 0
    for p, t in zip(ours, theirs):
        assert p.ts_us == int(round(float(t["frame.time_epoch"]) * 1e6)) or \
            abs(p.ts - float(t["frame.time_epoch"])) < 2e-6
        assert p.src == (t["ip.src"] or t["ipv6.src"]) and p.dst == (t["ip.dst"] or t["ipv6.dst"])
        assert (p.sport, p.dport) == (int(t["tcp.srcport"]), int(t["tcp.dstport"]))
        assert p.flags == int(t["tcp.flags"], 16) & 0xFF
        assert (p.seq, p.ack, p.win) == (int(t["tcp.seq_raw"]), int(t["tcp.ack_raw"]), int(t["tcp.window_size_value"]))
        assert p.payload_len == int(t["tcp.len"])
        assert p.ip_len == (int(t["ip.len"]) if t["ip.len"] else int(t["ipv6.plen"]) + 40)
    return len(ours)


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_real_loopback_capture_matches_tshark(capture_factory, fmt: str) -> None:
    path = capture_factory(payloads=[100, 3000, 70000], reply=5000, fmt=fmt)
    assert assert_same_as_tshark(path) > 5


def test_nanosecond_captures_truncate_to_microseconds(tmp_path: Path) -> None:
    frame = tcp_packet("10.0.0.1", "10.0.0.2", 443, 5000, payload=10)
    nano = tmp_path / "ns.pcap"
    stamps = [(1_700_000_000, 123_456_789), (1_700_000_001, 999_999_999), (1_700_000_002, 1)]
    with open(nano, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))
        for sec, ns in stamps:
            fh.write(struct.pack("<IIII", sec, ns, len(frame), len(frame)) + frame)
    ng = tmp_path / "ns.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(nano), str(ng)], check=True, capture_output=True)
    expected = [sec * 1_000_000 + ns // 1000 for sec, ns in stamps]
    assert [p.ts_us for p in read_packets(nano)] == expected == [p.ts_us for p in read_packets(ng)]
    assert_same_as_tshark(ng)


def _frames_with_linktype(path: Path, linktype: int, wrap) -> Path:
    base = [tcp_packet("10.0.0.1", "10.0.0.2", 443, 5000, seq=7, ack=9, flags="PA", payload=100, win=321),
            tcp_packet("2001:db8::1", "2001:db8::2", 443, 5000, seq=8, ack=10, flags="A", payload=0, win=5)]
    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=linktype)
        for i, frame in enumerate(base):
            writer.writepkt(wrap(frame), ts=1000.0 + i)
    return path


@pytest.mark.parametrize("name,linktype,wrap", [
    ("ethernet_vlan", 1, lambda f: f[:12] + b"\x81\x00\x00\x07" + f[12:]),
    ("linux_sll", 113, lambda f: struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 8, struct.unpack("!H", f[12:14])[0])
     + f[14:]),
    ("linux_sll2", 276, lambda f: struct.pack("!HHIHBB8s", struct.unpack("!H", f[12:14])[0], 0, 1, 1, 0, 6,
                                              b"\x02" * 8) + f[14:]),
    ("raw_ip", 101, lambda f: f[14:]),
    ("null", 0, lambda f: struct.pack("<I", 2 if f[12:14] == b"\x08\x00" else 30) + f[14:]),
])
def test_link_types_match_tshark(tmp_path: Path, name: str, linktype: int, wrap) -> None:
    path = _frames_with_linktype(tmp_path / f"{name}.pcap", linktype, wrap)
    assert assert_same_as_tshark(path) == 2


def test_damaged_files(tmp_path: Path) -> None:
    good = synthetic_session(tmp_path / "good.pcap")
    data = good.read_bytes()
    for name, content, message in [("empty.pcap", b"", "empty"), ("junk.pcap", b"hello world!", "not a pcap"),
                                   ("short.pcap", data[:10], "damaged capture header")]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CaptureError, match=message):
            list(read_packets(tmp_path / name))
    with pytest.raises(CaptureError, match="cannot open"):
        list(read_packets(tmp_path / "missing.pcap"))
    (tmp_path / "cut.pcap").write_bytes(data[:-20])
    stats = ReadStats()
    got = list(read_packets(tmp_path / "cut.pcap", stats))
    assert stats.truncated_file and len(got) == len(list(read_packets(good))) - 1
    # a record whose TCP header is cut by the snap length is counted, not fatal
    frames = [(1.0, tcp_packet("1.1.1.1", "2.2.2.2", 1, 2, payload=50)), (2.0, tcp_packet("1.1.1.1", "2.2.2.2", 1, 2))]
    short = write_pcap(tmp_path / "snap40.pcap", frames, snaplen=40)
    stats = ReadStats()
    assert list(read_packets(short, stats)) == [] and stats.malformed == 2


def test_summarize_counts_addresses(tmp_path: Path) -> None:
    path = synthetic_session(tmp_path / "s.pcap", extra_server="52.94.7.7")
    summary = summarize(path)
    assert summary.packets == len(list(read_packets(path)))
    assert summary.server_addresses("192.168.1.50") == ["52.94.1.10", "52.94.7.7"]


def test_memory_stays_flat_on_a_large_capture(tmp_path: Path) -> None:
    """A ~40 MB capture is streamed: peak Python memory stays a few MB (the 1 MiB read chunks)."""
    frame = tcp_packet("10.0.0.1", "10.0.0.2", 443, 5000, payload=1400)
    path = tmp_path / "big.pcap"
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    record = struct.pack("<IIII", 1, 0, len(frame), len(frame)) + frame
    with open(path, "wb") as fh:
        fh.write(header)
        fh.write(record * 28_000)
    assert path.stat().st_size > 40_000_000
    tracemalloc.start()
    count = sum(1 for _ in iter_tcp(path))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 28_000
    assert peak < 6_000_000
