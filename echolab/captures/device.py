"""Which address of a capture is the device, and its traffic read once into a :class:`Timeline`.

:func:`load_timeline` reads a capture once with the project's streaming reader and
keeps the device's TCP packets (time, size, direction); when no address is given it
detects the device (:func:`detect_device`) and says how, so a person can check it.
"""

from __future__ import annotations

import ipaddress
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from echolab.captures.reader import TCP_ACK, TCP_SYN, ReadStats, read_packets
from echolab.captures.spec import SplitError
from echolab.captures.timeline import Timeline


@dataclass(frozen=True)
class DeviceGuess:
    """Which address is the device, and how that was decided (so a person can check it)."""

    ip: str
    method: str  # "given", "remote traffic", "connections opened", "client ports"
    score: int = 0  # bytes with remote servers, connections opened, or TCP bytes on the client end
    total: int = 0  # the same score summed over every candidate
    runner_up: str | None = None
    runner_up_score: int = 0

    def describe(self) -> str:
        if self.method == "given":
            return f"{self.ip} (given)"
        unit = {"remote traffic": "of the TCP bytes between local and remote addresses",
                "connections opened": "of the TCP connections opened (no local address talked to a remote one)",
                "client ports": "of the TCP bytes on a connection's client end, the higher port "
                                "(no connection opening seen)"}[self.method]
        share = f"{100 * self.score / self.total:.0f}%" if self.total else "all"
        text = f"{self.ip} (detected: {share} {unit}"
        if self.runner_up:
            text += f"; next {self.runner_up} with {100 * self.runner_up_score / max(self.total, 1):.0f}%"
        return text + ")"


def is_local(address: str) -> bool:
    """A private, loopback or link-local address: one that can be the device."""
    ip = ipaddress.ip_address(address)
    return ip.is_private or ip.is_loopback or ip.is_link_local



@dataclass
class _Packets:
    """Compact columns of every TCP packet of a capture (addresses as small ids)."""

    addresses: list[str] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)
    ts: array = field(default_factory=lambda: array("q"))
    src: array = field(default_factory=lambda: array("l"))
    dst: array = field(default_factory=lambda: array("l"))
    size: array = field(default_factory=lambda: array("l"))
    client_src: array = field(default_factory=lambda: array("b"))  # the sender's port is the higher one
    client_dst: array = field(default_factory=lambda: array("b"))  # the receiver's port is the higher one
    opens: array = field(default_factory=lambda: array("b"))  # a SYN without ACK

    def addr(self, text: str) -> int:
        found = self.ids.get(text)
        if found is None:
            found = self.ids[text] = len(self.addresses)
            self.addresses.append(text)
        return found


def _read_tcp(path: Path, stats: ReadStats) -> _Packets:
    cols = _Packets()
    for p in read_packets(path, stats):
        if p.proto != 6:
            continue
        if not -(1 << 63) <= p.ts_us < 1 << 63:  # a damaged timestamp: far past any calendar
            raise SplitError(f"{path}: a packet's time ({p.ts_us} µs) is out of any range a capture can hold; "
                             "the file is damaged")
        cols.ts.append(p.ts_us)
        cols.src.append(cols.addr(p.src))
        cols.dst.append(cols.addr(p.dst))
        cols.size.append(p.ip_len)
        cols.client_src.append(1 if p.sport > p.dport else 0)
        cols.client_dst.append(1 if p.dport > p.sport else 0)
        cols.opens.append(1 if p.flags & TCP_SYN and not p.flags & TCP_ACK else 0)
    return cols


def detect_device(path: Path | str) -> DeviceGuess:
    """The device of a capture: the local address with the most TCP traffic to remote servers.

    Where no local address talks to a remote one (a lab on private addresses,
    loopback), the address that opened the most TCP connections; failing
    that (captures that start mid-connection), the one with the most TCP bytes
    as the client end of its connections (the higher port: servers listen on
    low ports like 443).
    """
    return _detect(_read_tcp(Path(path), ReadStats()), Path(path))


def _detect(cols: _Packets, path: Path) -> DeviceGuess:
    n = len(cols.addresses)
    if not n:
        raise SplitError(f"{path} holds no TCP traffic, so there is no device to find; give --device-ip")
    local = np.array([is_local(a) for a in cols.addresses])
    src = np.asarray(cols.src, dtype=np.int64)
    dst = np.asarray(cols.dst, dtype=np.int64)
    size = np.asarray(cols.size, dtype=np.int64)
    remote_pair = local[src] != local[dst]
    scores = np.bincount(np.where(local[src], src, dst)[remote_pair], size[remote_pair], minlength=n)
    method = "remote traffic"
    if not scores.any():
        opens = np.asarray(cols.opens, dtype=bool)
        scores, method = np.bincount(src[opens], minlength=n), "connections opened"
    if not scores.any():
        by_src, by_dst = np.asarray(cols.client_src, dtype=bool), np.asarray(cols.client_dst, dtype=bool)
        scores = (np.bincount(src[by_src], size[by_src], minlength=n)
                  + np.bincount(dst[by_dst], size[by_dst], minlength=n))
        method = "client ports"
    if not scores.any():
        raise SplitError(f"cannot tell the device in {path} (no connection opening, no client port); give --device-ip")
    order = np.argsort(-scores, kind="stable")
    best = int(order[0])
    second = int(order[1]) if n > 1 and scores[order[1]] > 0 else None
    total = int(scores.sum())
    return DeviceGuess(cols.addresses[best], method, int(scores[best]), total,
                       cols.addresses[second] if second is not None else None,
                       int(scores[second]) if second is not None else 0)


def load_timeline(path: Path | str, device_ip: str | None = None) -> Timeline:
    """Read *path* once; keep the device's TCP packets (detecting the device if not given).

    Raises :class:`CaptureError` for a file that is not a capture and
    :class:`SplitError` when the device cannot be found in it.
    """
    path = Path(path)
    stats = ReadStats()
    cols = _read_tcp(path, stats)
    if stats.first_ts is None:
        raise SplitError(f"{path} holds no packets")
    if device_ip is None:
        device = _detect(cols, path)
    else:
        device = DeviceGuess(_normal_ip(device_ip), "given")
    dev = cols.ids.get(device.ip)
    if dev is None:
        raise SplitError(f"no TCP packet of {path} comes from or goes to {device.ip}; check --device-ip "
                         "(leave it out to detect the device)")
    src = np.asarray(cols.src, dtype=np.int64)
    mine = (src == dev) | (np.asarray(cols.dst, dtype=np.int64) == dev)
    ts = np.asarray(cols.ts, dtype=np.int64)[mine]
    order = np.argsort(ts, kind="stable")
    return Timeline(
        path, device, round(stats.first_ts * 1e6), int(stats.last_ts_us if stats.last_ts_us is not None else 0),
        ts[order], np.asarray(cols.size, dtype=np.int64)[mine][order], (src[mine] == dev)[order], stats,
    )


def _normal_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise SplitError(f"{text!r} is not an IP address (--device-ip)") from None


__all__ = ["DeviceGuess", "detect_device", "is_local", "load_timeline"]
