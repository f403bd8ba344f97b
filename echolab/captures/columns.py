"""A capture's TCP headers as numpy columns, decoded a chunk at a time.

:func:`iter_tcp` decodes a record at a time in Python; the feature extractor
reads every packet of every capture, and for the common frame (Ethernet, IPv4
without options, TCP) one numpy gather over a chunk's record offsets
(:func:`echolab.captures.reader.iter_record_batches`) decodes the headers of
thousands of packets at once. :func:`tcp_columns` gives the same fields as
:func:`iter_tcp`, in the same order, as arrays; a capture holding any other
frame (IPv6, VLAN, IP options, fragments, other link types, short or damaged
frames) gives None, and its reader is :func:`iter_tcp` (so both agree on every
capture by construction: tests/test_columns.py compares them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from echolab.captures.reader import DLT_EN10MB, ReadStats, iter_record_batches

_HEADER = 54  # Ethernet (14) + IPv4 without options (20) + TCP without options (20)


@dataclass
class TcpColumns:
    """Every TCP packet of a capture, one array a field, in file order (the fields of ``iter_tcp``'s tuples).

    Addresses are IPv4 as big-endian unsigned ints (:meth:`address` turns one
    into the reader's 4 bytes); a packet's raw TCP options are
    ``options[opt_at:opt_at + opt_len]`` (:meth:`opts`).
    """

    ts: np.ndarray  # int64, µs
    src: np.ndarray  # uint32
    dst: np.ndarray
    sport: np.ndarray  # int64 from here on
    dport: np.ndarray
    flags: np.ndarray
    seq: np.ndarray
    ack: np.ndarray
    win: np.ndarray
    urp: np.ndarray
    opt_len: np.ndarray
    opt_at: np.ndarray  # where the packet's options start in ``options``
    data_len: np.ndarray
    captured: np.ndarray
    ip_id: np.ndarray
    ip_len: np.ndarray
    options: bytes  # every packet's raw TCP options, one after the other
    ts_only: np.ndarray  # bool: the options are NOP NOP timestamps (12 bytes), the established segment's

    def __len__(self) -> int:
        return len(self.ts)

    @staticmethod
    def address(value: int) -> bytes:
        return int(value).to_bytes(4, "big")

    def opts(self) -> list[bytes]:
        """Each packet's raw TCP options (``b""`` when none), as ``iter_tcp`` gives them."""
        blob = self.options
        return [blob[a:a + n] if n else b"" for a, n in zip(self.opt_at.tolist(), self.opt_len.tolist())]

    def tuples(self) -> list[tuple]:
        """The packets as ``iter_tcp``'s tuples (``T_*`` order)."""
        cache: dict[int, bytes] = {}

        def addrs(col: np.ndarray) -> list[bytes]:
            out = []
            for v in col.tolist():
                raw = cache.get(v)
                if raw is None:
                    raw = cache[v] = v.to_bytes(4, "big")
                out.append(raw)
            return out

        return list(zip(self.ts.tolist(), addrs(self.src), addrs(self.dst), self.sport.tolist(), self.dport.tolist(),
                        self.flags.tolist(), self.seq.tolist(), self.ack.tolist(), self.win.tolist(),
                        self.urp.tolist(), self.opts(), self.data_len.tolist(), self.captured.tolist(),
                        self.ip_id.tolist(), self.ip_len.tolist()))


#: The header fields of Ethernet + IPv4 (no options) + TCP, where ``iter_tcp``'s one struct call reads them.
_FIELDS = np.dtype({
    "names": ["etype", "vhl", "ip_len", "ip_id", "frag", "proto", "src", "dst", "sport", "dport", "seq", "ack",
              "off", "flags", "win", "urp"],
    "formats": [">u2", "u1", ">u2", ">u2", ">u2", "u1", ">u4", ">u4", ">u2", ">u2", ">u4", ">u4", "u1", "u1", ">u2",
                ">u2"],
    "offsets": [12, 14, 16, 18, 20, 23, 26, 30, 34, 36, 38, 42, 46, 47, 48, 52],
    "itemsize": _HEADER,
})
_TS_OPTIONS = np.array([1, 1, 8, 10], dtype=np.uint8)  # NOP NOP timestamps


def _decode(buf: bytes, times: np.ndarray, links: np.ndarray, off: np.ndarray,
            caplen: np.ndarray) -> dict[str, np.ndarray] | None:
    """One batch's headers, or None when a record is not Ethernet + IPv4 (no options) + TCP."""
    if (links != DLT_EN10MB).any() or caplen.min() < _HEADER:
        return None
    raw = np.frombuffer(buf, dtype=np.uint8)
    windows = np.ndarray((len(raw) - _HEADER + 1, _HEADER), np.uint8, raw, 0, (1, 1))  # every 54 bytes, a row
    h = windows[off].view(_FIELDS)[:, 0]
    ip_len = h["ip_len"].astype(np.int64)
    thl = (h["off"] >> 4).astype(np.int64) << 2
    cend = np.where(ip_len < caplen - 14, off + 14 + ip_len, off + caplen)
    body = off + 34 + thl
    if not ((h["etype"] == 0x0800) & (h["vhl"] == 0x45) & (h["proto"] == 6) & ((h["frag"] & 0x1FFF) == 0)
            & (ip_len >= 20) & (thl >= 20) & (body <= cend)).all():
        return None
    opt_len = thl - 20
    n = len(off)
    opt_at = np.zeros(n, dtype=np.int64)
    ts_only = np.zeros(n, dtype=bool)
    with_opts = np.flatnonzero(opt_len)
    blob = np.zeros(0, dtype=np.uint8)
    if len(with_opts):  # every packet's options, one after the other, gathered at once
        lens = opt_len[with_opts]
        ends = np.cumsum(lens)
        opt_at[with_opts] = ends - lens
        blob = raw[np.repeat(off[with_opts] + _HEADER - (ends - lens), lens) + np.arange(int(ends[-1]))]
        head = blob[np.minimum(opt_at[with_opts, None] + np.arange(4), len(blob) - 1)]  # first 4 bytes (or fewer)
        ts_only[with_opts] = (lens == 12) & (head == _TS_OPTIONS).all(axis=1)
    return {"ts": times, "src": h["src"].astype(np.uint32),
            "dst": h["dst"].astype(np.uint32), "sport": h["sport"].astype(np.int64),
            "dport": h["dport"].astype(np.int64), "flags": h["flags"].astype(np.int64),
            "seq": h["seq"].astype(np.int64), "ack": h["ack"].astype(np.int64), "win": h["win"].astype(np.int64),
            "urp": h["urp"].astype(np.int64), "opt_len": opt_len, "data_len": ip_len - 20 - thl,
            "captured": cend - body, "ip_id": h["ip_id"].astype(np.int64), "ip_len": ip_len, "opt_at": opt_at,
            "ts_only": ts_only, "blob": blob}


def tcp_columns(path: Path | str, stats: ReadStats | None = None) -> TcpColumns | None:
    """The capture's TCP packets as :class:`TcpColumns`, or None when some record needs ``iter_tcp``.

    None also for a capture without records. *stats* is filled like ``iter_tcp``
    fills it only when columns are returned. Raises
    :class:`~echolab.captures.reader.CaptureError` for a file that is not a capture.
    """
    own = ReadStats()
    parts: list[dict] = []
    for batch in iter_record_batches(path, own):
        part = _decode(*batch)
        if part is None:
            return None
        parts.append(part)
    if not parts:
        return None
    names = [n for n in parts[0] if n != "blob"]
    if len(parts) > 1:
        shift = np.cumsum([0] + [len(p["blob"]) for p in parts[:-1]])
        for part, by in zip(parts, shift.tolist()):
            part["opt_at"] = part["opt_at"] + by
    cols = {n: np.concatenate([p[n] for p in parts]) if len(parts) > 1 else parts[0][n] for n in names}
    blob = b"".join(p["blob"].tobytes() for p in parts)
    own.tcp_packets = own.packets = len(cols["ts"])
    if stats is not None:
        stats.__dict__.update(own.__dict__)
    return TcpColumns(options=blob, **cols)
