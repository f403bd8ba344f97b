"""Watching a capture while the capture engine writes it.

:class:`LiveCapture` reads only what was appended since the last look (the
pcapng blocks the engine has written completely), so watching a long music
capture costs the same per poll at its end as at its start. Blocks are walked by
the project's one pcapng walker in its mode for a growing file
(:class:`~echolab.captures.pcapng.PcapngWalker`) and frames decoded by its capture
reader, so every link type it knows is watched the same way. How late the engine's
file shows a packet is a rule (:attr:`~echolab.captures.rules.TrafficRules.engine_file_delay_s`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

from echolab.captures.pcapng import EPB, OPB, PcapngWalker
from echolab.captures.reader import T_DATA_LEN, T_DST, T_SRC, T_TS, ReadStats, decode_frame, parse_addr
from echolab.captures.rules import RULES


def walked_packets(walker: PcapngWalker, fh: BinaryIO, stats: ReadStats) -> Iterator[tuple[int, bytes, tuple | None]]:
    """``(block type, block, packet)`` per complete block appended since the walker's last walk.

    *packet* is the reader's tuple for a packet block (None for other blocks, for a
    frame that is not IP, for an unknown interface and for a time with no calendar
    date, past year 9999: those two are counted as malformed, as the file reader
    does). A file still being written ends inside a block; the next walk starts there.
    """
    for btype, buf, pos, blen in walker.walk(fh):
        packet = None
        if btype == EPB or btype == OPB:
            found = walker.packet(btype, buf, pos, blen)
            if found is None:
                stats.malformed += 1
            else:
                interface, ts_us, offset, caplen = found
                packet = decode_frame(interface.linktype, buf, offset, caplen, ts_us, stats)
        yield btype, bytes(buf[pos:pos + blen]), packet


@dataclass
class LiveCapture:
    """Incremental view of a growing pcapng file (the capture engine's format)."""

    path: Path
    device_ip: str
    keepalive_bytes: int = RULES.keepalive_payload_bytes  # more payload than this: traffic, not a keep-alive
    packets: int = 0
    last_from_cloud: float = 0.0  # capture time of the last cloud->device packet
    last_traffic: float = 0.0  # capture time of the last packet either way with more than keepalive_bytes
    last_packet: float = 0.0  # capture time of the last packet of the device, of any size
    answered_at: float | None = None  # capture time of the first cloud->device traffic at or after *since*
    traffic: list[float] = field(default_factory=list)  # capture times of every traffic packet
    _walker: PcapngWalker | None = None
    _stats: ReadStats = field(default_factory=ReadStats)
    _device: bytes = b""

    def __post_init__(self) -> None:
        self._device = parse_addr(self.device_ip)
        self._walker = PcapngWalker(self.path, growing=True)

    def poll(self, since: float = 0.0) -> bool:
        """Read what was appended; True when a cloud->device packet with data came at or after *since*.

        Also keeps ``last_traffic``, ``traffic`` and ``answered_at`` (a
        cloud->device packet with more than ``keepalive_bytes`` of payload at or
        after *since*) up to date.
        """
        assert self._walker is not None
        answered = False
        try:
            with open(self.path, "rb") as fh:
                for btype, _block, pkt in walked_packets(self._walker, fh, self._stats):
                    if btype == EPB or btype == OPB:
                        answered |= self._packet(pkt, since)
        except FileNotFoundError:
            return False
        return answered

    def _packet(self, pkt: tuple | None, since: float) -> bool:
        self.packets += 1
        if pkt is None or self._device not in (pkt[T_SRC], pkt[T_DST]):
            return False
        ts = pkt[T_TS] / 1e6
        self.last_packet = max(self.last_packet, ts)
        if RULES.is_traffic(pkt[T_DATA_LEN], self.keepalive_bytes):
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


__all__ = ["LiveCapture", "walked_packets"]
