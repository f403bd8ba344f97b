"""Watching a capture while the capture engine writes it.

:class:`LiveCapture` reads only what was appended since the last look (the
pcapng blocks the engine has written completely), so watching a long music
capture costs the same per poll at its end as at its start. Frames and
interface blocks are decoded by the project's capture reader
(``echolab.captures``), so every link type it knows is watched the same way.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from echolab.captures.reader import (
    T_DATA_LEN,
    T_DST,
    T_SRC,
    T_TS,
    ReadStats,
    decode_frame,
    parse_addr,
    pcapng_interface,
)
from echolab.collector.timing import KEEPALIVE_BYTES

#: How late the capture engine's file may show a packet: dumpcap flushes its file every 100 ms, once
#: its wait for packets (up to 250 ms) returns. Quiet judged from the file must allow for it.
FILE_LAG_S = 0.4

_BLOCK_HEAD = struct.Struct("<II")
_EPB = struct.Struct("<IIIII")  # interface id, ts high, ts low, captured length, original length
SHB, IDB, EPB = 0x0A0D0D0A, 1, 6  # pcapng block types: section header, interface description, enhanced packet


def complete_blocks(data: bytes, path: Path | str) -> tuple[list[tuple[int, int, int]], int]:
    """The pcapng blocks written completely at the start of *data*: ``(type, offset, length)`` each,
    and how many bytes they take (a block still being written ends the list).

    Raises ``ValueError`` for a big-endian section: only dumpcap's little-endian files are watched.
    """
    out, pos = [], 0
    while pos + 12 <= len(data):
        btype, blen = _BLOCK_HEAD.unpack_from(data, pos)
        if blen < 12 or pos + blen > len(data):
            break
        if btype == SHB and data[pos + 8: pos + 12] != b"\x4d\x3c\x2b\x1a":
            raise ValueError(f"{path}: only little-endian pcapng is watched live")
        out.append((btype, pos, blen))
        pos += blen
    return out, pos


def decode_packet(data: bytes, pos: int, ifaces: list[tuple[int, int, int]], stats: ReadStats) -> tuple | None:
    """The packet of the enhanced packet block at *pos* of *data* (the reader's tuple), or None when
    its interface is unknown or its frame is not IP."""
    iface, hi, lo, caplen, _ = _EPB.unpack_from(data, pos + 8)
    if iface >= len(ifaces):
        return None
    linktype, units, offset = ifaces[iface]
    ts_us = ((hi << 32) | lo) * 1_000_000 // units + offset * 1_000_000
    return decode_frame(linktype, data, pos + 28, caplen, ts_us, stats)


@dataclass
class LiveCapture:
    """Incremental view of a growing little-endian pcapng file (dumpcap's format)."""

    path: Path
    device_ip: str
    keepalive_bytes: int = KEEPALIVE_BYTES  # more payload than this: traffic, not a keep-alive
    packets: int = 0
    last_from_cloud: float = 0.0  # capture time of the last cloud->device packet
    last_traffic: float = 0.0  # capture time of the last packet either way with more than keepalive_bytes
    last_packet: float = 0.0  # capture time of the last packet of the device, of any size
    answered_at: float | None = None  # capture time of the first cloud->device traffic at or after *since*
    traffic: list[float] = field(default_factory=list)  # capture times of every traffic packet
    _offset: int = 0
    _ifaces: list[tuple[int, int, int]] = field(default_factory=list)  # linktype, units/s, offset s
    _stats: ReadStats = field(default_factory=ReadStats)
    _device: bytes = b""

    def __post_init__(self) -> None:
        self._device = parse_addr(self.device_ip)

    def poll(self, since: float = 0.0) -> bool:
        """Read what was appended; True when a cloud->device packet with data came at or after *since*.

        Also keeps ``last_traffic``, ``traffic`` and ``answered_at`` (a
        cloud->device packet with more than ``keepalive_bytes`` of payload at or
        after *since*) up to date.
        """
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return False
        answered = False
        blocks, used = complete_blocks(data, self.path)
        for btype, pos, blen in blocks:
            if btype == IDB:
                self._ifaces.append(pcapng_interface(data[pos + 8: pos + blen - 4], "<"))
            elif btype == EPB:
                answered |= self._packet(data, pos, since)
        self._offset += used
        return answered

    def _packet(self, data: bytes, pos: int, since: float) -> bool:
        self.packets += 1
        pkt = decode_packet(data, pos, self._ifaces, self._stats)
        if pkt is None or self._device not in (pkt[T_SRC], pkt[T_DST]):
            return False
        ts = pkt[T_TS] / 1e6
        self.last_packet = max(self.last_packet, ts)
        if pkt[T_DATA_LEN] > self.keepalive_bytes:
            self.last_traffic = max(self.last_traffic, ts)
            self.traffic.append(ts)
            if self.answered_at is None and pkt[T_DST] == self._device and ts >= since:
                self.answered_at = ts
        if pkt[T_DST] != self._device or pkt[T_SRC] == self._device:
            return False
        self.last_from_cloud = max(self.last_from_cloud, ts)
        return pkt[T_DATA_LEN] > 0 and ts >= since

    def traffic_after(self, ts: float) -> float | None:
        """Capture time of the first traffic packet later than *ts*, if any."""
        return next((t for t in self.traffic if t > ts), None)
