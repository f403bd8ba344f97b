"""Writing the requests of a long capture as one pcapng each, in one pass over the file.

:func:`write_pieces` copies the raw records of each request (a
:class:`~echolab.captures.timeline.Segment`), unchanged and with their times, into
its own pcapng. Records are copied, never decoded: a pcapng source keeps its own
section and interface blocks (walked by :class:`~echolab.captures.pcapng.PcapngWalker`);
a pcap source gets a pcapng section and one interface with its link type, snap
length and time resolution.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

from echolab.captures.pcapng import EPB, ISB, OPB, SHB, SPB, PcapngWalker
from echolab.captures.reader import MAX_RECORD, PCAP_MAGICS, PCAPNG_MAGIC, CaptureError, pcap_ts_us, read_pcap_header
from echolab.captures.spec import SplitError
from echolab.captures.timeline import Segment

_SECTION, _HEADER, _PACKET = range(3)
_SHB_LE = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
MAX_OPEN = 64  # piece files kept open at once


def _pcap_idb(linktype: int, snaplen: int, nano: bool) -> bytes:
    opts = struct.pack("<HHB3xHH", 9, 1, 9, 0, 0) if nano else b""  # if_tsresol=9, end of options
    blen = 20 + len(opts)
    return struct.pack("<IIHHI", 1, blen, linktype, 0, snaplen) + opts + struct.pack("<I", blen)


def _raw_pcap(fh: BinaryIO, path: Path) -> Iterator[tuple[int, int, bytes]]:
    header = read_pcap_header(fh, path)
    endian, nano = header.endian, header.nano
    yield _SECTION, 0, _SHB_LE
    yield _HEADER, 0, _pcap_idb(header.linktype, header.snaplen, nano)
    rec = struct.Struct(endian + "IIII").unpack
    units = 1_000_000_000 if nano else 1_000_000
    while len(hdr := fh.read(16)) == 16:
        sec, frac, caplen, origlen = rec(hdr)
        if caplen > MAX_RECORD:
            return
        data = fh.read(caplen)
        if len(data) < caplen:
            return
        raw = sec * units + frac
        pad = -caplen % 4
        blen = 32 + caplen + pad
        block = struct.pack("<IIIIIII", 6, blen, 0, raw >> 32, raw & 0xFFFFFFFF, caplen, origlen) + data \
            + b"\0" * pad + struct.pack("<I", blen)
        yield _PACKET, pcap_ts_us(sec, frac, nano), block


def _raw_pcapng(fh: BinaryIO, path: Path) -> Iterator[tuple[int, int, bytes]]:
    walker = PcapngWalker(path)
    for btype, buf, pos, blen in walker.walk(fh):
        if btype == EPB or btype == OPB:
            found = walker.packet(btype, buf, pos, blen)
            if found is not None:
                yield _PACKET, found[1], bytes(buf[pos:pos + blen])
        elif btype == SHB:
            block = bytearray(buf[pos:pos + blen])
            block[16:24] = b"\xff" * 8  # section length: unknown (the piece is shorter)
            yield _SECTION, 0, bytes(block)
        elif btype not in (SPB, ISB):  # simple packet blocks have no time; interface statistics would be wrong
            yield _HEADER, 0, bytes(buf[pos:pos + blen])


def raw_blocks(path: Path | str) -> Iterator[tuple[int, int, bytes]]:
    """``(kind, ts_us, block)`` per block, as pcapng blocks (a pcap file is converted record by record)."""
    path = Path(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise CaptureError(f"cannot open {path}: {exc.strerror}") from exc
    with fh:
        magic = fh.read(4)
        fh.seek(0)
        if magic in PCAP_MAGICS:
            yield from _raw_pcap(fh, path)
        elif magic == PCAPNG_MAGIC:
            yield from _raw_pcapng(fh, path)
        else:
            raise CaptureError(f"{path} is not a pcap or pcapng capture")


class _Pieces:
    """The open piece files; each gets the section and interface blocks before its first packet."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = paths
        self.section = 0
        self.headers: list[bytes] = []
        self.written: dict[int, tuple[int, int]] = {}  # piece -> (section, header blocks written)
        self.open: OrderedDict[int, BinaryIO] = OrderedDict()

    def header(self, kind: int, block: bytes) -> None:
        if kind == _SECTION:
            self.section += 1
            self.headers = []
        self.headers.append(block)

    def packet(self, piece: int, block: bytes) -> None:
        fh = self._handle(piece)
        section, done = self.written.get(piece, (-1, 0))
        if section != self.section:
            done = 0
        for hdr in self.headers[done:]:
            fh.write(hdr)
        self.written[piece] = (self.section, len(self.headers))
        fh.write(block)

    def _handle(self, piece: int) -> BinaryIO:
        fh = self.open.pop(piece, None)
        if fh is None:
            if len(self.open) >= MAX_OPEN:
                self.open.popitem(last=False)[1].close()
            fh = open(self.paths[piece], "ab" if piece in self.written else "wb")
        self.open[piece] = fh
        return fh

    def close(self) -> None:
        for fh in self.open.values():
            fh.close()
        for piece, path in enumerate(self.paths):
            if piece not in self.written:  # no packet fell in it: a valid, empty capture
                path.write_bytes(b"".join(self.headers))


def write_pieces(source: Path | str, segments: Sequence[Segment], out_dir: Path, *, stem: str = "piece") -> list[Path]:
    """Write the records of each segment (``start_us <= t <= end_us``) to its own pcapng.

    One pass over *source*; records are copied byte for byte, times kept.
    Segments must not overlap. Returns the paths, in the order of *segments*.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    order = sorted(range(len(segments)), key=lambda i: segments[i].start_us)
    starts = [segments[i].start_us for i in order]
    for a, b in zip(order, order[1:]):
        if segments[b].start_us <= segments[a].end_us:
            raise SplitError("requests overlap; cannot write them as separate pieces")
    paths = [out_dir / f"{stem}_{i + 1:04d}.pcapng" for i in range(len(segments))]
    pieces = _Pieces(paths)
    try:
        for kind, ts_us, block in raw_blocks(source):
            if kind != _PACKET:
                pieces.header(kind, block)
                continue
            k = bisect_right(starts, ts_us) - 1
            if k >= 0 and ts_us <= segments[order[k]].end_us:
                pieces.packet(order[k], block)
    finally:
        pieces.close()
    return paths


__all__ = ["MAX_OPEN", "raw_blocks", "write_pieces"]
