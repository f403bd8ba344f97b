"""The one pcapng walker (echolab/captures/pcapng.py): finished files, and files still being written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from echolab.captures.pcapng import EPB, IDB, SHB, CaptureError, PcapngWalker
from echolab.captures.reader import iter_records
from echolab.collector.sim import synthetic


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A synthetic request as pcap, and the same converted to pcapng by editcap."""
    folder = tmp_path_factory.mktemp("walker")
    pcap = synthetic.write_capture(folder / "one.pcap", "weather", 2.0, np.random.default_rng(3)).path
    pcapng = folder / "one.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(pcap), str(pcapng)], check=True, capture_output=True)
    return pcap, pcapng


def _times(walker: PcapngWalker, path: Path) -> list[int]:
    with open(path, "rb") as fh:
        return [walker.packet(b, buf, pos, blen)[1] for b, buf, pos, blen in walker.walk(fh) if b == EPB]


def test_the_walker_gives_the_times_the_pcap_has(capture: tuple[Path, Path]) -> None:
    pcap, pcapng = capture
    expected = [rec[0] for rec in iter_records(pcap)]
    walker = PcapngWalker(pcapng)
    assert _times(walker, pcapng) == expected and len(expected) > 20
    assert not walker.truncated and walker.offset == pcapng.stat().st_size
    records = PcapngWalker(pcapng)
    with open(pcapng, "rb") as fh:
        assert [r[0] for r in records.records(fh)] == expected
    assert records.packets == len(expected) and records.malformed == 0 and records.linktypes == {1}


def test_a_growing_file_is_read_block_by_block_as_it_is_written(capture: tuple[Path, Path], tmp_path: Path) -> None:
    _, pcapng = capture
    data = pcapng.read_bytes()
    expected = _times(PcapngWalker(pcapng), pcapng)
    growing = tmp_path / "growing.pcapng"
    walker, seen, kinds = PcapngWalker(growing, growing=True), [], set()
    for end in range(0, len(data) + 1000, 1000):  # the engine appends 1000 bytes at a time, cutting blocks
        growing.write_bytes(data[:end])
        with open(growing, "rb") as fh:
            for btype, buf, pos, blen in walker.walk(fh):
                kinds.add(btype)
                if btype == EPB:
                    seen.append(walker.packet(btype, buf, pos, blen)[1])
        assert walker.offset <= end and not walker.truncated  # a block still being written is waited for
    assert seen == expected and {SHB, IDB, EPB} <= kinds
    finished = PcapngWalker(growing)
    growing.write_bytes(data[:len(data) - 7])  # a finished file cut inside its last block
    assert len(_times(finished, growing)) == len(expected) - 1 and finished.truncated


def test_a_file_that_is_not_pcapng_is_refused_and_one_too_short_waited_for(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(b"\x01\x00\x00\x00" + b"\x14\x00\x00\x00" * 4)
    with pytest.raises(CaptureError, match="damaged capture header"), open(bad, "rb") as fh:
        list(PcapngWalker(bad).walk(fh))
    short = tmp_path / "short.pcapng"
    short.write_bytes(b"\x0a\x0d\x0d\x0a\x1c")
    with open(short, "rb") as fh:
        assert list(PcapngWalker(short, growing=True).walk(fh)) == []
    with pytest.raises(CaptureError, match="too short"), open(short, "rb") as fh:
        list(PcapngWalker(short).walk(fh))
