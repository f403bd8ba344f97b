"""A streaming reader for pcap and pcapng captures.

A capture is something you iterate over: :func:`read_packets` yields one
:class:`Packet` per IPv4/IPv6 TCP or UDP packet, reading the file in 1 MiB
chunks, so a 1 GB capture never sits in memory. Only an unreadable file header
is fatal (:class:`CaptureError`); a malformed packet is counted in
:class:`ReadStats` and skipped; a file cut short mid-record ends the iteration
and sets ``ReadStats.truncated_file``.

The decoder is written with :mod:`struct` over the raw record bytes instead of
dpkt objects: the feature extractor reads every packet of every capture, and
building dpkt objects costs several times more than the statistics themselves.
:func:`iter_tcp` is the fast path the tcptrace statistics use (plain tuples,
addresses as bytes); :func:`read_packets` wraps it for everyone else.

Timestamps are kept as integer microseconds (``ts_us``), truncating
nanosecond captures exactly like libpcap does for tcptrace, so time statistics
can be compared with the real tool to the microsecond.
"""

from __future__ import annotations

import io
import socket
import struct
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, BinaryIO, Iterator, NamedTuple

from echolab.captures.pcapng import MAGIC as PCAPNG_MAGIC, CaptureError, PcapngWalker

PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"}

DLT_NULL = 0
DLT_EN10MB = 1
DLT_RAW_ALT = 12
DLT_LOOP = 108
DLT_RAW = 101
DLT_LINUX_SLL = 113
DLT_IPV4 = 228
DLT_IPV6 = 229
DLT_LINUX_SLL2 = 276
SUPPORTED_LINKTYPES = {DLT_NULL, DLT_EN10MB, DLT_RAW_ALT, DLT_LOOP, DLT_RAW, DLT_LINUX_SLL, DLT_IPV4, DLT_IPV6,
                       DLT_LINUX_SLL2}

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK, TCP_URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

CHUNK = 1 << 20
#: The records of one chunk read: ``(buf, times_us, linktypes, offsets, caplens)``, the last four int64 numpy
#: arrays (see :func:`iter_record_batches`).
Batch = tuple[bytes, Any, Any, Any, Any]
MAX_RECORD = 1 << 24  # a record longer than this means the file is damaged

# Indices into the tuples that iter_tcp yields (TcpTuple).
T_TS, T_SRC, T_DST, T_SPORT, T_DPORT, T_FLAGS, T_SEQ, T_ACK, T_WIN, T_URP = range(10)
T_OPTS, T_DATA_LEN, T_CAPTURED, T_IP_ID, T_IP_LEN = range(10, 15)

_u16 = struct.Struct("!H").unpack_from
_ip4 = struct.Struct("!BxHHHxB2x4s4s").unpack_from  # vhl, len, id, off, proto, src, dst
_ip6 = struct.Struct("!4xHBx16s16s").unpack_from  # plen, nxt, src, dst
_tcp = struct.Struct("!HHIIBBHxxH").unpack_from  # sport, dport, seq, ack, off, flags, win, urp
_udp = struct.Struct("!HH").unpack_from
# Ethernet + option-less IPv4 + TCP in one call: ethertype, then _ip4's and _tcp's fields.
_eth_ip4_tcp = struct.Struct("!12xHBxHHHxB2x4s4sHHIIBBHxxH").unpack_from


class Packet(NamedTuple):
    """The header fields of one IP packet that the features need."""

    ts: float
    src: str
    dst: str
    proto: int  # 6 = TCP, 17 = UDP
    sport: int
    dport: int
    flags: int  # TCP flags byte (0 for UDP)
    seq: int
    ack: int
    win: int  # raw window field, not scaled
    options: bytes  # raw TCP options
    payload_len: int  # TCP/UDP payload bytes (from IP length, not captured length)
    ip_len: int  # IP total length (header + payload)
    truncated: bool  # the record was captured shorter than the packet
    ts_us: int = 0  # the same timestamp in integer microseconds (truncated, like libpcap)
    ip_id: int = -1  # IPv4 identification (-1 for IPv6)
    urp: int = 0  # TCP urgent pointer


@dataclass
class ReadStats:
    """What a read skipped, and why; filled while iterating."""

    records: int = 0
    packets: int = 0
    non_ip: int = 0
    malformed: int = 0
    truncated_file: bool = False
    first_ts: float | None = None
    last_ts: float | None = None
    linktypes: set[int] = field(default_factory=set)
    tcp_packets: int = 0
    last_ts_us: int | None = None  # timestamp of the last record of any kind
    damaged: str | None = None  # why the rest of the file was skipped, if it was


class _WholeReads(io.RawIOBase):
    """An unbuffered file whose ``read(n)`` returns *n* bytes unless the file ends first.

    The readers read 1 MiB chunks; through a buffered file each read also
    allocates and fills a buffer of its own, which costs more than the read
    itself on the small captures of a study.
    """

    def __init__(self, raw: io.FileIO):
        self.raw = raw

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if size < 0 or len(data) >= size or not data:
            return data
        parts = [data]
        got = len(data)
        while got < size:
            more = self.raw.read(size - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self.raw.close()
        super().close()


def _open(path: Path) -> BinaryIO:
    try:
        return _WholeReads(io.FileIO(path, "rb"))  # type: ignore[return-value]
    except OSError as exc:
        raise CaptureError(f"cannot open {path}: {exc.strerror}") from exc


# --------------------------------------------------------------------------- record readers
# Each yields (ts_us, linktype, buf, offset, caplen) per record; buf is shared.


@dataclass(frozen=True)
class PcapHeader:
    """The 24-byte global header of a classic pcap file."""

    endian: str  # "<" or ">" for struct
    nano: bool  # nanosecond timestamps
    snaplen: int
    linktype: int


def read_pcap_header(fh: BinaryIO, path: Path) -> PcapHeader:
    """Read and decode a pcap global header (the file is positioned at its start)."""
    head = fh.read(24)
    if len(head) < 24:
        raise CaptureError(f"{path} has a damaged capture header: the file is too short")
    magic = head[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    snaplen, linktype = struct.unpack(endian + "II", head[16:24])
    return PcapHeader(endian, nano, snaplen, linktype & 0xFFFF)


def pcap_ts_us(sec: int, frac: int, nano: bool) -> int:
    """A pcap record's time as integer microseconds (nanoseconds truncated, like libpcap)."""
    return sec * 1_000_000 + (frac // 1000 if nano else frac)


def _pcap_batch(buf: bytes, times: list[int], linktype: int, offsets: list[int], lengths: list[int]) -> Batch:
    import numpy as np

    return (buf, np.asarray(times, dtype=np.int64), np.full(len(times), linktype, dtype=np.int64),
            np.asarray(offsets, dtype=np.int64), np.asarray(lengths, dtype=np.int64))


def _pcap_batches(fh: BinaryIO, path: Path, stats: ReadStats) -> Iterator[Batch]:
    """The records of each chunk read, as :data:`Batch` (see :func:`iter_record_batches`)."""
    header = read_pcap_header(fh, path)
    endian, nano, linktype = header.endian, header.nano, header.linktype
    stats.linktypes.add(linktype)
    rec = struct.Struct(endian + "IIII").unpack_from
    buf = fh.read(CHUNK)
    pos = 0
    size = len(buf)
    times: list[int] = []
    offsets: list[int] = []
    lengths: list[int] = []
    while True:
        if pos + 16 > size:
            if times:  # the records point into buf: hand them out before it is replaced
                stats.records += len(times)
                stats.last_ts_us = times[-1]
                yield _pcap_batch(buf, times, linktype, offsets, lengths)
                times, offsets, lengths = [], [], []
            buf = buf[pos:] + fh.read(CHUNK)
            pos, size = 0, len(buf)
            if size == 0:
                return
            if size < 16:
                stats.truncated_file = True
                return
        sec, frac, caplen, _origlen = rec(buf, pos)
        if caplen > MAX_RECORD:
            stats.truncated_file = True
            stats.damaged = f"record {stats.records + len(times) + 1} claims {caplen} bytes"
            break
        end = pos + 16 + caplen
        if end > size:
            if times:
                stats.records += len(times)
                stats.last_ts_us = times[-1]
                yield _pcap_batch(buf, times, linktype, offsets, lengths)
                times, offsets, lengths = [], [], []
            buf = buf[pos:] + fh.read(max(CHUNK, caplen + 16))
            pos, size = 0, len(buf)
            end = 16 + caplen
            if end > size:
                stats.truncated_file = True
                return
        times.append(sec * 1_000_000 + (frac // 1000 if nano else frac))  # pcap_ts_us, inline
        offsets.append(pos + 16)
        lengths.append(caplen)
        pos = end
    if times:
        stats.records += len(times)
        stats.last_ts_us = times[-1]
        yield _pcap_batch(buf, times, linktype, offsets, lengths)


def _pcapng_batches(fh: BinaryIO, path: Path, stats: ReadStats) -> Iterator[Batch]:
    """Blocks are walked in place inside 1 MiB chunks by the one pcapng walker."""
    walker = PcapngWalker(path)
    try:
        yield from walker.batches(fh)
    finally:
        stats.records += walker.packets
        stats.malformed += walker.malformed
        stats.linktypes |= walker.linktypes
        if walker.last_ts_us is not None:
            stats.last_ts_us = walker.last_ts_us
        stats.truncated_file |= walker.truncated
        stats.damaged = walker.damaged or stats.damaged


def iter_record_batches(path: Path | str, stats: ReadStats | None = None) -> Iterator[Batch]:
    """Yield the records of a pcap/pcapng file a chunk at a time: ``(buf, times_us, linktypes, offsets, caplens)``.

    The four are int64 numpy arrays; record *i* of a batch is the frame
    ``buf[offsets[i]:offsets[i] + caplens[i]]``; *buf* is replaced
    between batches. The records are :func:`iter_records`' (which flattens these batches), for readers
    that decode a chunk's headers at once (:mod:`echolab.captures.columns`). Raises
    :class:`CaptureError` for a file that is not a capture at all; *stats* is complete when the
    iteration ends.
    """
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    with _open(path) as fh:
        magic = fh.read(4)
        fh.seek(0)
        if len(magic) < 4:
            raise CaptureError(f"{path} is empty or too short to be a capture")
        if magic in PCAP_MAGICS:
            batches = _pcap_batches(fh, path, stats)
        elif magic == PCAPNG_MAGIC:
            batches = _pcapng_batches(fh, path, stats)
        else:
            raise CaptureError(f"{path} is not a pcap or pcapng capture")
        first = True
        for batch in batches:
            if first:
                stats.first_ts = int(batch[1][0]) / 1e6
                first = False
            yield batch
        if stats.last_ts_us is not None:
            stats.last_ts = stats.last_ts_us / 1e6


def iter_records(path: Path | str, stats: ReadStats | None = None) -> Iterator[tuple[int, int, bytes, int, int]]:
    """Yield ``(ts_us, linktype, buf, offset, caplen)`` per record of a pcap/pcapng file.

    ``buf[offset:offset+caplen]`` is the frame; *buf* is reused between records,
    so copy what you keep. Raises :class:`CaptureError` for a file that is not a
    capture at all.
    """
    for buf, times, links, offsets, lengths in iter_record_batches(path, stats):
        yield from zip(times.tolist(), links.tolist(), repeat(buf), offsets.tolist(), lengths.tolist())


# --------------------------------------------------------------------------- frame decoding


def _ip_offset(linktype: int, buf: bytes, off: int, caplen: int) -> int:
    """Offset of the IP header inside a frame, or -1 when the frame is not IP."""
    if linktype == DLT_EN10MB:
        if caplen < 14:
            return -1
        etype = _u16(buf, off + 12)[0]
        ip = off + 14
        if etype == 0x8100 and caplen >= 18:  # one 802.1Q tag
            etype = _u16(buf, off + 16)[0]
            ip = off + 18
        if etype == 0x8864 and ip + 8 <= off + caplen:  # PPPoE session
            proto = _u16(buf, ip + 6)[0]
            return ip + 8 if proto in (0x0021, 0x0057) else -1
        return ip if etype in (0x0800, 0x86DD) else -1
    if linktype == DLT_LINUX_SLL:
        if caplen < 16:
            return -1
        return off + 16 if _u16(buf, off + 14)[0] in (0x0800, 0x86DD) else -1
    if linktype == DLT_LINUX_SLL2:
        if caplen < 20:
            return -1
        return off + 20 if _u16(buf, off)[0] in (0x0800, 0x86DD) else -1
    if linktype in (DLT_RAW, DLT_RAW_ALT, DLT_IPV4, DLT_IPV6):
        return off if caplen else -1
    if linktype in (DLT_NULL, DLT_LOOP):
        if caplen < 4:
            return -1
        family = buf[off:off + 4]
        fam = struct.unpack(">I", family)[0]
        if linktype == DLT_NULL and fam > 0xFFFF:  # DLT_NULL is in the writer's byte order
            fam = struct.unpack("<I", family)[0]
        return off + 4 if fam in (2, 10, 24, 28, 30) else -1
    return -1


def decode_tcp(buf: bytes, ip: int, end: int, ts_us: int, stats: ReadStats,
               want_udp: bool = False) -> tuple | None:
    """Decode the IP packet at ``buf[ip:end]`` into a TcpTuple (see ``T_*``).

    Returns None for a non-TCP packet (UDP is returned, with flags -1, only when
    *want_udp*). The data length comes from the IP header, never from the
    captured length, like tcptrace.
    """
    if ip >= end:
        stats.non_ip += 1
        return None
    version = buf[ip] >> 4
    if version == 4:
        if ip + 20 > end:
            stats.malformed += 1
            return None
        vhl, ip_len, ip_id, frag, proto, src, dst = _ip4(buf, ip)
        hl = (vhl & 0x0F) * 4
        if frag & 0x1FFF:  # non-initial fragment: no transport header
            stats.non_ip += 1
            return None
        seg = ip + hl
        l4_len = ip_len - hl
        captured_end = min(end, ip + ip_len) if ip_len >= hl else end
    elif version == 6:
        if ip + 40 > end:
            stats.malformed += 1
            return None
        plen, proto, src, dst = _ip6(buf, ip)
        ip_len = plen + 40
        ip_id = -1
        seg = ip + 40
        l4_len = plen  # like tcptrace: extension headers are not subtracted
        while proto in (0, 43, 60, 44) and seg + 8 <= end:  # hop-by-hop, routing, dest. options, fragment
            nxt = buf[seg]
            if proto == 44:
                if _u16(buf, seg + 2)[0] & 0xFFF8:
                    stats.non_ip += 1
                    return None
                seg += 8
            else:
                seg += 8 + buf[seg + 1] * 8
            proto = nxt
        captured_end = min(end, ip + ip_len)
    else:
        stats.non_ip += 1
        return None
    if proto == 6:
        if seg + 20 > captured_end:
            stats.malformed += 1
            return None
        sport, dport, seq, ack, off, flags, win, urp = _tcp(buf, seg)
        thl = (off >> 4) * 4
        if seg + thl > captured_end:
            stats.malformed += 1
            return None
        opts = buf[seg + 20: seg + thl] if thl > 20 else b""
        data_len = l4_len - thl
        captured = captured_end - seg - thl
        stats.tcp_packets += 1
        return (ts_us, src, dst, sport, dport, flags, seq, ack, win, urp, opts, data_len,
                captured, ip_id, ip_len)
    if proto == 17 and want_udp and seg + 8 <= captured_end:
        sport, dport = _udp(buf, seg)
        return (ts_us, src, dst, sport, dport, -1, 0, 0, 0, 0, b"", l4_len - 8,
                captured_end - seg - 8, ip_id, ip_len)
    stats.non_ip += 1
    return None


def iter_tcp(path: Path | str, stats: ReadStats | None = None, *, want_udp: bool = False) -> Iterator[tuple]:
    """Yield one TcpTuple per TCP packet of a capture (fast path, see ``T_*``).

    Addresses are raw bytes (4 or 16); :func:`format_addr` prints them.
    IPv4 without options over Ethernet or raw IP, the common case, is decoded
    inline; everything else goes through :func:`decode_tcp`.
    """
    stats = stats if stats is not None else ReadStats()
    ip4, tcp, eth_ip4_tcp = _ip4, _tcp, _eth_ip4_tcp
    raw_types = (DLT_RAW, DLT_RAW_ALT, DLT_IPV4, DLT_IPV6)
    for ts_us, linktype, buf, off, caplen in iter_records(path, stats):
        if linktype == DLT_EN10MB and caplen >= 54:  # the common case, decoded with one struct call
            (etype, vhl, ip_len, ip_id, frag, proto, src, dst, sport, dport, seq, ack, offb, flags, win,
             urp) = eth_ip4_tcp(buf, off)
            if etype == 0x0800 and vhl == 0x45 and proto == 6 and not frag & 0x1FFF and ip_len >= 20:
                ip = off + 14
                cend = ip + ip_len if ip_len < caplen - 14 else off + caplen
                thl = (offb >> 4) << 2
                body = ip + 20 + thl
                if thl >= 20 and body <= cend:
                    stats.tcp_packets += 1
                    stats.packets += 1
                    yield (ts_us, src, dst, sport, dport, flags, seq, ack, win, urp,
                           buf[ip + 40:body] if thl > 20 else b"", ip_len - 20 - thl, cend - body, ip_id, ip_len)
                    continue
        end = off + caplen
        if linktype == DLT_EN10MB and caplen >= 34 and buf[off + 12] == 8 and buf[off + 13] == 0:
            ip = off + 14
        elif linktype in raw_types:
            ip = off if caplen else -1
        else:
            try:
                ip = _ip_offset(linktype, buf, off, caplen)
            except (struct.error, IndexError):
                stats.malformed += 1
                continue
            if ip < 0:
                stats.non_ip += 1
                continue
        if ip + 40 <= end and buf[ip] == 0x45 and buf[ip + 9] == 6:
            _vhl, ip_len, ip_id, frag, _p, src, dst = ip4(buf, ip)
            if not frag & 0x1FFF and ip_len >= 20:
                cend = ip + ip_len if ip + ip_len < end else end
                sport, dport, seq, ack, offb, flags, win, urp = tcp(buf, ip + 20)
                thl = (offb >> 4) << 2
                body = ip + 20 + thl
                if thl >= 20 and body <= cend:
                    stats.tcp_packets += 1
                    stats.packets += 1
                    yield (ts_us, src, dst, sport, dport, flags, seq, ack, win, urp,
                           buf[ip + 40:body] if thl > 20 else b"", ip_len - 20 - thl, cend - body, ip_id, ip_len)
                    continue
        if ip < 0:
            stats.non_ip += 1
            continue
        try:
            pkt = decode_tcp(buf, ip, end, ts_us, stats, want_udp)
        except (struct.error, IndexError):
            stats.malformed += 1
            continue
        if pkt is not None:
            stats.packets += 1
            yield pkt


def decode_frame(linktype: int, buf: bytes, off: int, caplen: int, ts_us: int,
                 stats: ReadStats) -> tuple | None:
    """Decode one link-layer frame into a TcpTuple (see ``T_*``), or None when it holds no TCP.

    For callers that walk records themselves (the collector's live view of a
    capture being written); :func:`iter_tcp` inlines the common case of this.
    """
    try:
        ip = _ip_offset(linktype, buf, off, caplen)
        if ip < 0:
            stats.non_ip += 1
            return None
        return decode_tcp(buf, ip, off + caplen, ts_us, stats)
    except (struct.error, IndexError):
        stats.malformed += 1
        return None


#: Offset of the IP header inside a link-layer frame, or -1 when the frame is not IP.
ip_offset = _ip_offset


_NTOP: dict[bytes, str] = {}


def format_addr(raw: bytes) -> str:
    """An address from :func:`iter_tcp` as text (cached: captures reuse few addresses)."""
    text = _NTOP.get(raw)
    if text is None:
        text = socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)
        if len(_NTOP) < 100_000:
            _NTOP[raw] = text
    return text


def parse_addr(text: str) -> bytes:
    """The inverse of :func:`format_addr`; raises ValueError for a bad address."""
    try:
        return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
    except OSError as exc:
        raise ValueError(f"{text!r} is not an IP address") from exc


def read_packets(path: Path | str, stats: ReadStats | None = None) -> Iterator[Packet]:
    """Yield every IP TCP/UDP packet of the capture at *path*, in file order.

    Raises :class:`CaptureError` only when the file cannot be opened as a
    capture. A file cut short mid-record ends the iteration and sets
    ``stats.truncated_file``.
    """
    for t in iter_tcp(path, stats, want_udp=True):
        udp = t[T_FLAGS] < 0
        data_len = t[T_DATA_LEN]
        yield Packet(t[T_TS] / 1e6, format_addr(t[T_SRC]), format_addr(t[T_DST]), 17 if udp else 6,
                     t[T_SPORT], t[T_DPORT], 0 if udp else t[T_FLAGS], t[T_SEQ], t[T_ACK], t[T_WIN],
                     bytes(t[T_OPTS]), max(data_len, 0), t[T_IP_LEN], t[T_CAPTURED] < data_len,
                     t[T_TS], t[T_IP_ID], t[T_URP])


@dataclass
class CaptureSummary:
    """What the catalog records about a capture file."""

    packets: int
    records: int
    first_ts: float | None
    last_ts: float | None
    addresses: dict[str, int]  # address -> packets it appears in
    truncated_file: bool

    def server_addresses(self, device_ip: str | None) -> list[str]:
        """Addresses that talked with *device_ip* (all addresses when unknown)."""
        return sorted(a for a in self.addresses if a != device_ip)


def summarize(path: Path | str) -> CaptureSummary:
    """Count packets and addresses of a capture (one streaming pass)."""
    stats = ReadStats()
    raw: dict[bytes, int] = {}
    for t in iter_tcp(path, stats, want_udp=True):
        raw[t[T_SRC]] = raw.get(t[T_SRC], 0) + 1
        raw[t[T_DST]] = raw.get(t[T_DST], 0) + 1
    addresses = {format_addr(a): n for a, n in raw.items()}
    return CaptureSummary(stats.packets, stats.records, stats.first_ts, stats.last_ts, addresses, stats.truncated_file)

