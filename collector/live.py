"""Watching a capture while the capture engine writes it.

:class:`LiveCapture` reads only what was appended since the last look (the
pcapng blocks the engine has written completely), so watching a long music
capture costs the same per poll at its end as at its start.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import dpkt


_BLOCK_HEAD = struct.Struct("<II")
_EPB = struct.Struct("<IIIII")  # interface id, ts high, ts low, captured length, original length
_IDB = 1
_EPB_TYPE = 6
_LINKTYPE_ETHERNET = 1
_LINKTYPE_SLL = 113


@dataclass
class LiveCapture:
    """Incremental view of a growing little-endian pcapng file (dumpcap's format)."""

    path: Path
    device_ip: str
    packets: int = 0
    last_from_cloud: float = 0.0  # capture time of the last cloud->device packet
    _offset: int = 0
    _linktypes: list[int] = field(default_factory=list)
    _resolution: list[float] = field(default_factory=list)
    _device: bytes = b""

    def __post_init__(self) -> None:
        import socket

        self._device = socket.inet_aton(self.device_ip)

    def poll(self, since: float = 0.0) -> bool:
        """Read what was appended; True when a cloud->device packet with data came at or after *since*."""
        answered = False
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return False
        pos = 0
        while pos + 12 <= len(data):
            btype, blen = _BLOCK_HEAD.unpack_from(data, pos)
            if blen < 12 or pos + blen > len(data):
                break  # a block still being written
            body = data[pos + 8: pos + blen - 4]
            if btype == 0x0A0D0D0A and data[pos + 8: pos + 12] != b"\x4d\x3c\x2b\x1a":
                raise ValueError(f"{self.path}: only little-endian pcapng is watched live")
            if btype == _IDB:
                self._linktypes.append(struct.unpack_from("<H", body)[0])
                self._resolution.append(_ts_resolution(body[8:]))
            elif btype == _EPB_TYPE:
                answered |= self._packet(body, since)
            pos += blen
        self._offset += pos
        return answered

    def _packet(self, body: bytes, since: float) -> bool:
        iface, hi, lo, caplen, _ = _EPB.unpack_from(body)
        frame = body[20: 20 + caplen]
        self.packets += 1
        linktype = self._linktypes[iface] if iface < len(self._linktypes) else _LINKTYPE_ETHERNET
        ip = _ip_of(frame, linktype)
        if ip is None or ip.dst != self._device or ip.src == self._device:
            return False
        ts = ((hi << 32) | lo) * self._resolution[iface] if iface < len(self._resolution) else 0.0
        self.last_from_cloud = max(self.last_from_cloud, ts)
        tcp = ip.data
        payload = ip.len - ip.hl * 4 - (tcp.off * 4 if isinstance(tcp, dpkt.tcp.TCP) else 8)
        return payload > 0 and ts >= since


def _ip_of(frame: bytes, linktype: int):
    try:
        if linktype == _LINKTYPE_ETHERNET:
            ip = dpkt.ethernet.Ethernet(frame).data
        elif linktype == _LINKTYPE_SLL:
            ip = dpkt.sll.SLL(frame).data
        else:
            ip = dpkt.ip.IP(frame)
    except (dpkt.dpkt.UnpackError, struct.error, IndexError):
        return None
    return ip if isinstance(ip, dpkt.ip.IP) else None


def _ts_resolution(options: bytes) -> float:
    """Seconds per timestamp unit from an interface block's options (if_tsresol, code 9)."""
    pos = 0
    while pos + 4 <= len(options):
        code, length = struct.unpack_from("<HH", options, pos)
        if code == 0:
            break
        if code == 9 and length >= 1:
            value = options[pos + 4]
            return 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0 ** -value
        pos += 4 + length + (-length % 4)
    return 1e-6
