"""The pcapng block parser: chunk boundaries, sections, and files cut or damaged at any block.

Each pcapng here is converted from a pcap by ``editcap``, so the pcap reading
of the same packets is the reference for what must come out.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from echolab.captures.reader import CHUNK, CaptureError, ReadStats, iter_tcp
from pcaps import synthetic_session

pytestmark = pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap (wireshark-common) is not installed")


def to_pcapng(pcap: Path) -> Path:
    out = pcap.with_suffix(".pcapng")
    subprocess.run(["editcap", "-F", "pcapng", str(pcap), str(out)], check=True, capture_output=True)
    return out


def blocks(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, type, length) of every block of a little-endian pcapng."""
    out, pos = [], 0
    while pos < len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        out.append((pos, btype, blen))
        pos += blen
    return out


def read(path: Path) -> tuple[list[tuple], ReadStats]:
    stats = ReadStats()
    return [tuple(bytes(x) if isinstance(x, memoryview) else x for x in t) for t in iter_tcp(path, stats)], stats


def test_a_file_larger_than_a_chunk_reads_like_its_pcap(tmp_path: Path) -> None:
    pcap = synthetic_session(tmp_path / "big.pcap", sizes=[1448, 1000, 77] * 900, gap_s=0.001)
    ng = to_pcapng(pcap)
    assert ng.stat().st_size > 2 * CHUNK
    ours, stats = read(ng)
    assert ours == read(pcap)[0] and not stats.truncated_file and stats.records == len(ours)


def test_cut_anywhere_keeps_every_whole_packet(tmp_path: Path) -> None:
    ng = to_pcapng(synthetic_session(tmp_path / "s.pcap", sizes=[1448, 300, 1448, 5]))
    data = ng.read_bytes()
    layout = blocks(data)
    full, _ = read(ng)
    ends = {off + blen for off, _, blen in layout}
    for cut in range(len(data) - 1, layout[1][0], -5):
        path = tmp_path / "cut.pcapng"
        path.write_bytes(data[:cut])
        got, stats = read(path)
        whole = sum(1 for off, btype, blen in layout if btype == 6 and off + blen <= cut)
        assert got == full[:whole], cut
        assert stats.truncated_file == (cut not in ends), cut


def test_sections_and_damage(tmp_path: Path) -> None:
    ng = to_pcapng(synthetic_session(tmp_path / "s.pcap"))
    data = ng.read_bytes()
    full, _ = read(ng)
    twice = tmp_path / "twice.pcapng"
    twice.write_bytes(data + data)  # a second section restarts the interface list
    assert read(twice)[0] == full + full
    layout = blocks(data)
    off = layout[3][0]
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(data[:off + 4] + struct.pack("<I", 13) + data[off + 8:])
    got, stats = read(bad)
    assert stats.truncated_file and stats.damaged == "pcapng block of length 13"
    assert len(got) == sum(1 for _, btype, _ in layout[:3] if btype == 6)
    for content, message in [(data[:10], "damaged capture header: the file is too short"),
                             (data[:8] + b"XXXX" + data[12:], "bad pcapng byte-order magic")]:
        path = tmp_path / "head.pcapng"
        path.write_bytes(content)
        with pytest.raises(CaptureError, match=message):
            read(path)
