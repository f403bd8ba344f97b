"""The one walker of pcapng blocks, for finished files and for files still being written.

Every part of the toolkit that reads pcapng walks its blocks with
:class:`PcapngWalker`: the streaming reader (:mod:`echolab.captures.reader`), the
writer of cut pieces (:mod:`echolab.captures.pieces`) and the live readers of the
collector (a capture being written, a ring buffer being watched). The walker
follows sections (each sets its byte order and restarts the interface list) and
interface description blocks, and turns a packet block's timestamp into integer
microseconds since the epoch in one place (:meth:`Interface.ts_us`: the
interface's resolution and offset, truncated like libpcap does).

A finished file (``growing=False``) that ends inside a block is cut short
(``truncated``). A file still being written (``growing=True``) ends inside a
block all the time: the walk stops before that block and the next walk, on the
same walker, starts there (``offset``), so each poll reads only what was
appended.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from itertools import repeat
from typing import Any, BinaryIO, Iterator

from echolab.errors import EcholabError

SHB, IDB, OPB, SPB, ISB, EPB = 0x0A0D0D0A, 1, 2, 3, 5, 6  # section header, interface, obsolete/simple/enhanced packet
MAGIC = b"\x0a\x0d\x0d\x0a"
BYTE_ORDER = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
CHUNK = 1 << 20
MAX_BLOCK = 1 << 24  # a block longer than this means the file is damaged
RUN_WINDOW = 1 << 18  # bytes searched at once for a run of packet blocks (:meth:`PcapngWalker.batches`)
#: The latest packet time a capture may hold (the end of year 9999, in microseconds): pcapng's 64-bit
#: timestamps reach far past what a date can show; such packets are counted as malformed and skipped.
MAX_TS_US = 253_402_300_799 * 1_000_000

_HEAD = {e: struct.Struct(e + "II").unpack_from for e in "<>"}  # block type, block length
_EPB = {e: struct.Struct(e + "8xIIII").unpack_from for e in "<>"}  # interface, ts high, ts low, caplen
_OPB = {e: struct.Struct(e + "8xHHIII").unpack_from for e in "<>"}  # interface, drops, ts high, ts low, caplen


class CaptureError(EcholabError):
    """The file cannot be read as a capture at all."""


@dataclass(frozen=True)
class Interface:
    """An interface description block: link type, timestamp units per second, offset in seconds."""

    linktype: int
    units_per_s: int = 1_000_000
    offset_s: int = 0

    def ts_us(self, raw: int) -> int:
        """A packet block's 64-bit timestamp as integer microseconds since the epoch (truncated)."""
        us = raw if self.units_per_s == 1_000_000 else raw * 1_000_000 // self.units_per_s
        return us + self.offset_s * 1_000_000


def parse_interface(buf: bytes, pos: int, blen: int, endian: str) -> Interface:
    """The interface description block at ``buf[pos:pos + blen]`` (options if_tsresol and if_tsoffset read)."""
    linktype = struct.unpack_from(endian + "H", buf, pos + 8)[0]
    units, offset = 1_000_000, 0
    at, end = pos + 16, pos + blen - 4
    while at + 4 <= end:
        code, length = struct.unpack_from(endian + "HH", buf, at)
        if code == 0:
            break
        value = buf[at + 4: at + 4 + length]
        if code == 9 and length >= 1:
            res = value[0]
            units = 2 ** (res & 0x7F) if res & 0x80 else 10 ** res
        elif code == 14 and length == 8:
            offset = struct.unpack(endian + "q", value)[0]
        at += 4 + length + (-length % 4)
    return Interface(linktype, units, offset)


class _Records:
    """The packet records of one chunk, in order: added one at a time, or a decoded run at once."""

    __slots__ = ("parts", "times", "links", "offsets", "lengths")

    def __init__(self) -> None:
        self.parts: list[tuple] = []
        self.times: list[int] = []
        self.links: list[int] = []
        self.offsets: list[int] = []
        self.lengths: list[int] = []

    def add(self, ts_us: int, linktype: int, offset: int, caplen: int) -> None:
        self.times.append(ts_us)
        self.links.append(linktype)
        self.offsets.append(offset)
        self.lengths.append(caplen)

    def add_run(self, times: Any, links: Any, offsets: Any, lengths: Any) -> None:
        self._close()
        self.parts.append((times, links, offsets, lengths))

    def _close(self) -> None:
        if self.times:
            import numpy as np

            self.parts.append(tuple(np.asarray(c, dtype=np.int64)
                                    for c in (self.times, self.links, self.offsets, self.lengths)))
            self.times, self.links, self.offsets, self.lengths = [], [], [], []

    def __bool__(self) -> bool:
        return bool(self.parts or self.times)

    def take(self) -> tuple:
        """``(times_us, linktypes, offsets, caplens)`` as int64 arrays, and start afresh."""
        import numpy as np

        self._close()
        parts, self.parts = self.parts, []
        if len(parts) == 1:
            return parts[0]
        return tuple(np.concatenate(column) for column in zip(*parts))


@dataclass
class PcapngWalker:
    """Walks the blocks of one pcapng file, in one read or (``growing``) in several as it grows.

    :meth:`walk` yields ``(block type, buf, pos, blen)`` per complete block:
    ``buf[pos:pos + blen]`` is the block, and *buf* is reused, so copy what you
    keep. :meth:`packet` decodes a packet block's interface and time.
    """

    path: Path | str
    growing: bool = False
    endian: str = "<"
    interfaces: list[Interface] = field(default_factory=list)
    offset: int = 0  # bytes of the file walked (complete blocks)
    truncated: bool = False  # a finished file ends inside a block, or a block is damaged
    damaged: str | None = None  # why the rest of the file was skipped, if it was
    packets: int = 0  # packet records :meth:`records` gave out or counted as malformed
    malformed: int = 0
    last_ts_us: int | None = None
    linktypes: set[int] = field(default_factory=set)  # of every interface seen, in any section

    def walk(self, fh: BinaryIO, *, records: bool = False) -> Iterator[tuple]:
        """The complete blocks of *fh* from :attr:`offset` on (read in 1 MiB chunks).

        With *records*, packet records instead, as :meth:`records` describes.
        """
        if records:
            return self.records(fh)
        return self._walk(fh, False)

    def _walk(self, fh: BinaryIO, batches: bool) -> Iterator[tuple]:  # noqa: C901 - one loop, two outputs
        """Blocks one by one, or (*batches*) the packet records of each chunk read, as :meth:`batches` says."""
        fh.seek(self.offset)
        buf = fh.read(CHUNK)
        pos, size = 0, len(buf)
        head = _HEAD[self.endian]
        pending = _Records()
        while True:
            if pos + 12 > size:
                if pending:  # the records point into buf: hand them out before it is replaced
                    yield (buf, *pending.take())
                buf = buf[pos:] + fh.read(CHUNK)
                pos, size = 0, len(buf)
                if size < 12:
                    if size and not self.growing:
                        if self.offset == 0:
                            raise CaptureError(f"{self.path} has a damaged capture header: the file is too short")
                        self.truncated = True
                    return
            btype, blen = head(buf, pos)
            if batches and btype == EPB and self.interfaces:  # a run of packet blocks, found and decoded at once
                run, end = self._packet_blocks(buf, pos, size)
                if len(run):
                    self.offset += end - pos
                    pos = end
                    self._packet_run(buf, run, end, pending)
                    continue
            if btype == SHB:
                endian = BYTE_ORDER.get(bytes(buf[pos + 8:pos + 12]))
                if endian is None:
                    if self.offset == 0:
                        raise CaptureError(f"{self.path} has a damaged capture header: bad pcapng byte-order magic")
                    self.truncated, self.damaged = True, "pcapng section with a bad byte-order magic"
                    if pending:
                        yield (buf, *pending.take())
                    return
                self.endian, self.interfaces = endian, []
                head = _HEAD[endian]
                btype, blen = head(buf, pos)
            elif self.offset == 0:
                raise CaptureError(f"{self.path} has a damaged capture header")
            if blen < 12 or blen % 4 or blen > MAX_BLOCK:
                self.truncated, self.damaged = True, f"pcapng block of length {blen}"
                if pending:
                    yield (buf, *pending.take())
                return
            if pos + blen > size:
                if pending:
                    yield (buf, *pending.take())
                buf = buf[pos:] + fh.read(max(CHUNK, blen))
                pos, size = 0, len(buf)
                if blen > size:
                    self.truncated = not self.growing
                    return
            self.offset += blen
            if btype == IDB:
                self.interfaces.append(parse_interface(buf, pos, blen, self.endian))
                self.linktypes.add(self.interfaces[-1].linktype)
            if not batches:
                yield btype, buf, pos, blen
            elif btype == EPB or btype == OPB:
                self.packets += 1
                self._add_block(btype, buf, pos, blen, pending)
            elif btype == SPB:
                if not self.interfaces:
                    self.malformed += 1
                else:
                    self.packets += 1
                    self.last_ts_us = 0
                    origlen = struct.unpack_from(self.endian + "I", buf, pos + 8)[0]
                    pending.add(0, self.interfaces[0].linktype, pos + 12, min(origlen, blen - 12))
            pos += blen

    def _packet_blocks(self, buf: bytes, pos: int, size: int) -> tuple[Any, int]:
        """The starts of the enhanced packet blocks that follow each other from *pos* on, and where they end.

        Only complete, sound blocks (length 28 to :data:`MAX_BLOCK`, a multiple of 4) within
        :data:`RUN_WINDOW` bytes count. Every 4-byte word holding the packet block type is a candidate
        start; a run is the candidates from *pos* on each of which starts where the one before ends, so
        a word inside a packet that looks like a block type is never taken for one.
        """
        import numpy as np

        words = np.frombuffer(buf, dtype=self.endian + "u4", count=min(size - pos, RUN_WINDOW) // 4, offset=pos)
        cand = np.flatnonzero(words == EPB)
        if not len(cand) or cand[0] != 0 or len(words) < 2:
            return (), pos
        lens = words[np.minimum(cand + 1, len(words) - 1)].astype(np.int64)
        nxt = cand + lens // 4
        fits = (cand + 1 < len(words)) & (lens >= 28) & (lens <= MAX_BLOCK) & ((lens & 3) == 0) & (nxt <= len(words))
        broken = np.flatnonzero(~fits[:-1] | (nxt[:-1] != cand[1:]))
        last = int(broken[0]) if len(broken) else len(cand) - 1
        if not fits[last]:
            last -= 1
        if last < 0:
            return (), pos
        return pos + 4 * cand[:last + 1], pos + 4 * int(nxt[last])

    def _packet_run(self, buf: bytes, run: Any, end: int, pending: _Records) -> None:
        """Decode the enhanced packet blocks starting at *run* (the last one ends at *end*) into *pending*.

        The common run (one interface counting micro- or nanoseconds from the epoch, every block sound) is
        decoded with numpy; any other goes block by block through :meth:`packet`, the one decoder of a
        packet block.
        """
        import numpy as np

        self.packets += len(run)
        at = np.asarray(run, dtype=np.int64)
        blen = np.concatenate((at[1:], [end])) - at
        words = np.frombuffer(buf, dtype=self.endian + "u4", count=len(buf) // 4)
        first_word = at >> 2  # blocks start on 4-byte boundaries of the chunk
        iface = words[first_word + 2].astype(np.int64)
        hi = words[first_word + 3].astype(np.int64)
        lo = words[first_word + 4].astype(np.int64)
        caplen = words[first_word + 5].astype(np.int64)
        first = int(iface[0])
        interface = self.interfaces[first] if first < len(self.interfaces) else None
        if (interface is not None and interface.units_per_s % 1_000_000 == 0 and interface.units_per_s <= 10**18
                and interface.offset_s == 0 and (iface == first).all() and (28 + caplen <= blen).all()):
            # Interface.ts_us: raw * 10^6 // units is raw // (units / 10^6) when units is a multiple of 10^6
            ts = ((hi << 32) | lo) // (interface.units_per_s // 1_000_000)  # below 2^63: hi < 2^31, next
            if (hi < 1 << 31).all() and (ts <= MAX_TS_US).all():
                pending.add_run(ts, np.full(len(at), interface.linktype, dtype=np.int64), at + 28, caplen)
                self.last_ts_us = int(ts[-1])
                return
        for pos, size in zip(at.tolist(), blen.tolist()):
            self._add_block(EPB, buf, pos, size, pending)

    def _add_block(self, btype: int, buf: bytes, pos: int, blen: int, pending: _Records) -> None:
        """One packet block's record into *pending* (:meth:`packet` decodes it), or one more malformed."""
        record = self.packet(btype, buf, pos, blen)
        if record is None:
            self.malformed += 1
            return
        interface, ts_us, offset, caplen = record
        self.last_ts_us = ts_us
        pending.add(ts_us, interface.linktype, offset, caplen)

    def batches(self, fh: BinaryIO) -> Iterator[tuple]:
        """The packet records of each chunk read, as ``(buf, times_us, linktypes, offsets, caplens)``.

        The last four are int64 numpy arrays: record *i* of a batch is
        ``buf[offsets[i]:offsets[i] + caplens[i]]``, taken at ``times_us[i]`` on an interface of link type
        ``linktypes[i]``. A batch is handed out before the walk reads past the chunk its records lie in,
        so a consumer decodes a whole chunk's headers at once (the columnar reader,
        :mod:`echolab.captures.columns`); :meth:`records` gives the same records one by one.
        """
        return self._walk(fh, True)

    def records(self, fh: BinaryIO) -> Iterator[tuple[int, int, bytes, int, int]]:
        """``(ts_us, linktype, buf, offset, caplen)`` per packet record (the reader's hot path).

        The same walk as :meth:`walk`, decoded in its loop. A packet block with an
        unknown interface or a bad length counts in :attr:`malformed`; simple packet
        blocks have no time (``ts_us`` 0).
        """
        for buf, times, links, offsets, lengths in self._walk(fh, True):
            yield from zip(times.tolist(), links.tolist(), repeat(buf), offsets.tolist(), lengths.tolist())

    def packet(self, btype: int, buf: bytes, pos: int, blen: int) -> tuple[Interface, int, int, int] | None:
        """``(interface, ts_us, frame offset, captured length)`` of an enhanced or obsolete packet block.

        None when the block is too short for its own header, names an unknown interface, claims more
        bytes than it holds or has a time with no calendar date (before 1970 or past year 9999,
        :data:`MAX_TS_US`).
        """
        if blen < 28:  # too short for its own header: its fields would be read from the next block
            return None
        if btype == EPB:
            iface, hi, lo, caplen = _EPB[self.endian](buf, pos)
        else:
            iface, _drops, hi, lo, caplen = _OPB[self.endian](buf, pos)
        if iface >= len(self.interfaces) or 28 + caplen > blen:
            return None
        interface = self.interfaces[iface]
        ts_us = interface.ts_us((hi << 32) | lo)
        if not 0 <= ts_us <= MAX_TS_US:
            return None
        return interface, ts_us, pos + 28, caplen


__all__ = ["BYTE_ORDER", "CaptureError", "EPB", "IDB", "ISB", "Interface", "MAGIC", "MAX_BLOCK", "MAX_TS_US",
           "OPB", "PcapngWalker", "SHB", "SPB", "parse_interface"]
