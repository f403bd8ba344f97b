"""The TLS record layer: each TCP stream's bytes, reassembled per direction, read as TLS records.

An eavesdropper cannot read a TLS record's contents, but its five-byte header
travels in clear: content type (20 change-cipher-spec, 21 alert, 22 handshake,
23 application data), version and length. How a device cuts its data into
records and records into TCP segments is a property of the device and the
network (one Echo sends its speech in 113-byte records, one a segment, another
in 432-byte records, several a segment), so the records, unlike the packets,
show the data the way the sender wrote it.

:func:`tls_records` follows every TCP stream of a capture, both directions
apart, and yields one :class:`TlsRecord` per record in the order they become
complete. The bytes are put back in stream order the way a receiver would:

* a retransmitted segment, or the part of a segment that overlaps bytes
  already seen, is dropped;
* a segment that arrives before the bytes in front of it waits until the hole
  is filled; a hole that never fills (the capture point lost the segment) is
  skipped once more than :data:`MAX_PENDING` bytes wait behind it, or at the
  end of the stream, and the reader loses the record boundary there;
* a stream that starts mid-stream (no SYN: the capture began on a long-lived
  connection) or past a skipped hole starts *out of sync*: the reader looks
  for a plausible record header (type 20 to 23, version 0x0301 to 0x0304,
  length at most 2^14 + 2048 bytes, :func:`plausible_header`) followed by
  another plausible header right after its record, or by the exact end of the
  stream, and goes on from there. The bytes passed over are counted.

A record's ``ts_us`` is when its header's segment was captured and ``end_us``
when its last byte was; ``direction`` is 1 from the device (the connection's
client when no device is named) and -1 towards it. What the reader skipped or
could not finish is counted in :class:`RecordStats`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

from echolab.captures.reader import (T_DATA_LEN, T_DPORT, T_DST, T_FLAGS, T_IP_LEN, T_SEQ, T_SPORT, T_SRC, TCP_FIN,
                                     TCP_RST, TCP_SYN, ReadStats, decode_frame, format_addr, iter_records,
                                     parse_addr, T_CAPTURED)

#: TLS content types: change_cipher_spec, alert, handshake, application_data.
CONTENT_TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data"}
#: The longest record TLS allows (2^14 bytes of plaintext plus 2,048 of expansion, RFC 5246 6.2.3).
MAX_RECORD_LENGTH = (1 << 14) + 2048
HEADER = 5
#: Bytes that may wait behind a hole before the reader gives up on the hole and skips it.
MAX_PENDING = 1 << 20
_MOD = 1 << 32


class TlsRecord(NamedTuple):
    """One TLS record as seen on the wire (its header; the contents stay encrypted)."""

    ts_us: int  # capture time of the segment holding the record's header
    end_us: int  # capture time of the segment holding its last byte
    direction: int  # 1 from the device (or the client), -1 towards it
    content_type: int  # 20..23
    version: int  # e.g. 0x0303
    length: int  # bytes of the record's body (the header's length field)
    src: str
    sport: int
    dst: str
    dport: int

    @property
    def type_name(self) -> str:
        return CONTENT_TYPES.get(self.content_type, str(self.content_type))


@dataclass
class RecordStats:
    """What reading records passed over, and why."""

    streams: int = 0  # one-way byte streams seen (a connection has two)
    records: int = 0
    resyncs: int = 0  # times a stream found a record boundary after losing (or never having) one
    skipped_bytes: int = 0  # stream bytes passed over while out of sync
    holes: int = 0  # missing stream bytes skipped (never captured)
    hole_bytes: int = 0
    partial: int = 0  # records cut off by the end of their stream or a hole
    duplicate_bytes: int = 0  # retransmitted or overlapping bytes dropped


def plausible_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> bool:
    """Whether ``buf[pos:pos+5]`` reads as a TLS record header (type, version and length in range)."""
    if pos + HEADER > len(buf):
        return False
    ctype, major, minor = buf[pos], buf[pos + 1], buf[pos + 2]
    length = (buf[pos + 3] << 8) | buf[pos + 4]
    return 20 <= ctype <= 23 and major == 3 and 1 <= minor <= 4 and 0 < length <= MAX_RECORD_LENGTH


def _signed(delta: int) -> int:
    delta %= _MOD
    return delta - _MOD if delta >= 1 << 31 else delta


class _Stream:
    """One direction of one TCP connection: reassembly, then record parsing."""

    def __init__(self, key: tuple, direction: int, stats: RecordStats):
        self.key = key  # (src, sport, dst, dport) as text and ints
        self.direction = direction
        self.stats = stats
        self.isn: int | None = None  # sequence number of stream offset 0
        self.synced = False
        self.next = 0  # the next stream offset wanted in order
        self.pending: dict[int, tuple[bytes, int]] = {}  # offset -> (bytes, ts) waiting behind a hole
        self.pending_bytes = 0
        self.buf = bytearray()  # in-order bytes not yet parsed
        self.buf_start = 0  # stream offset of buf[0]
        self.chunks: deque[tuple[int, int, int]] = deque()  # (start, end, ts) of the bytes in buf

    # ------------------------------------------------------------------ reassembly
    def segment(self, seq: int, flags: int, data: bytes, ts: int) -> list[TlsRecord]:
        if self.isn is None:
            if flags & TCP_SYN:
                self.isn = (seq + 1) % _MOD
                self.synced = True
            elif data:
                self.isn = seq
            else:
                return []
        if not data:
            return []
        start = _signed(seq + (1 if flags & TCP_SYN else 0) - self.isn)
        end = start + len(data)
        if end <= self.next:
            self.stats.duplicate_bytes += len(data)
            return []
        if start < self.next:
            self.stats.duplicate_bytes += self.next - start
            data, start = data[self.next - start:], self.next
        if start > self.next:
            old = self.pending.get(start)
            if old is None or len(old[0]) < len(data):
                self.pending_bytes += len(data) - (len(old[0]) if old else 0)
                self.pending[start] = (data, ts)
            if self.pending_bytes > MAX_PENDING:
                return self._skip_hole()
            return []
        self._deliver(start, data, ts)
        self._drain()
        return self._parse()

    def _deliver(self, start: int, data: bytes, ts: int) -> None:
        self.buf += data
        self.chunks.append((start, start + len(data), ts))
        self.next = start + len(data)

    def _drain(self) -> None:
        while self.pending:
            ready = [o for o in self.pending if o <= self.next]
            if not ready:
                return
            for off in sorted(ready):
                data, ts = self.pending.pop(off)
                self.pending_bytes -= len(data)
                end = off + len(data)
                if end <= self.next:
                    self.stats.duplicate_bytes += len(data)
                    continue
                if off < self.next:
                    self.stats.duplicate_bytes += self.next - off
                    data, off = data[self.next - off:], self.next
                self._deliver(off, data, ts)

    def _skip_hole(self) -> list[TlsRecord]:
        """Give up on the missing bytes in front of the first waiting segment; lose sync there."""
        out = self._parse(final=True)
        if self.buf:
            self.stats.partial += 1 if self.synced else 0
            self._consume(len(self.buf), skipped=not self.synced)
        first = min(self.pending)
        self.stats.holes += 1
        self.stats.hole_bytes += first - self.next
        self.next = self.buf_start = first
        self.synced = False
        self._drain()
        return out + self._parse()

    def finish(self) -> list[TlsRecord]:
        """The end of the stream: skip any holes, read what is left, count what stays unfinished."""
        out: list[TlsRecord] = []
        while self.pending:
            out += self._skip_hole()
        out += self._parse(final=True)
        if self.buf:
            if self.synced:
                self.stats.partial += 1
            else:
                self.stats.skipped_bytes += len(self.buf)
        self.buf.clear()
        self.chunks.clear()
        return out

    # ------------------------------------------------------------------ records
    def _consume(self, n: int, skipped: bool = False) -> None:
        if skipped:
            self.stats.skipped_bytes += n
        del self.buf[:n]
        self.buf_start += n
        while self.chunks and self.chunks[0][1] <= self.buf_start:
            self.chunks.popleft()

    def _times(self, start: int, end: int) -> tuple[int, int]:
        """(capture time of the chunk holding byte *start*, latest capture time of bytes start..end-1)."""
        first, last = None, 0
        for c_start, c_end, ts in self.chunks:
            if c_end <= start:
                continue
            if c_start >= end:
                break
            if first is None:
                first = ts
            last = max(last, ts)
        return (first or 0), last

    def _resync(self, final: bool) -> bool:
        """Find a record boundary in buf: a plausible header followed by another, or by the stream's end."""
        buf, n = self.buf, len(self.buf)
        pos = 0
        while pos + HEADER <= n:
            if plausible_header(buf, pos):
                after = pos + HEADER + ((buf[pos + 3] << 8) | buf[pos + 4])
                if after + HEADER <= n:
                    if plausible_header(buf, after):
                        break
                elif final and after == n:
                    break
                elif not final:
                    # Cannot judge this candidate yet: keep the bytes from here and wait for more.
                    self._consume(pos, skipped=True)
                    return False
            pos += 1
        else:
            keep = 0 if final else min(n, HEADER - 1)
            self._consume(n - keep, skipped=True)
            return False
        self._consume(pos, skipped=True)
        self.synced = True
        self.stats.resyncs += 1
        return True

    def _parse(self, final: bool = False) -> list[TlsRecord]:
        out: list[TlsRecord] = []
        while True:
            if not self.synced and not self._resync(final):
                return out
            buf = self.buf
            if len(buf) < HEADER:
                return out
            if not plausible_header(buf):
                self.synced = False
                continue
            length = (buf[3] << 8) | buf[4]
            if len(buf) < HEADER + length:
                return out
            start = self.buf_start
            ts, end_ts = self._times(start, start + HEADER + length)
            src, sport, dst, dport = self.key
            out.append(TlsRecord(ts, end_ts, self.direction, buf[0], (buf[1] << 8) | buf[2], length,
                                 src, sport, dst, dport))
            self.stats.records += 1
            self._consume(HEADER + length)


def _direction(src: bytes, sport: int, dport: int, device: bytes | None) -> int:
    if device is not None:
        return 1 if src == device else -1
    return 1 if sport > dport else -1  # the client's port is the ephemeral, higher one


def tls_records(path: Path | str, device_ip: str | None = None, stats: RecordStats | None = None,
                read_stats: ReadStats | None = None) -> Iterator[TlsRecord]:
    """Yield every TLS record of every TCP stream in the capture at *path* (see the module's docstring).

    With *device_ip*, only the device's connections are followed and
    ``direction`` is 1 for the device's records; without it, every TCP
    connection is, and 1 means from the client (the higher port). Raises
    :class:`~echolab.captures.reader.CaptureError` only when the file is not a
    capture; a damaged tail ends the iteration (``read_stats.truncated_file``).
    """
    stats = stats if stats is not None else RecordStats()
    read_stats = read_stats if read_stats is not None else ReadStats()
    device = parse_addr(device_ip) if device_ip else None
    streams: dict[tuple, _Stream] = {}
    for ts_us, linktype, buf, off, caplen in iter_records(path, read_stats):
        pkt = decode_frame(linktype, buf, off, caplen, ts_us, read_stats)
        if pkt is None or pkt[T_FLAGS] < 0:
            continue
        src, dst = pkt[T_SRC], pkt[T_DST]
        if device is not None and device not in (src, dst):
            continue
        read_stats.packets += 1
        key = (src, pkt[T_SPORT], dst, pkt[T_DPORT])
        stream = streams.get(key)
        if stream is None:
            stream = streams[key] = _Stream((format_addr(src), key[1], format_addr(dst), key[3]),
                                            _direction(src, key[1], key[3], device), stats)
            stats.streams += 1
        data_len, captured = pkt[T_DATA_LEN], pkt[T_CAPTURED]
        data = b""
        if data_len > 0 and captured > 0:
            # The payload ends where the IP packet does: at the IP header's offset plus its total length.
            end = _payload_end(linktype, buf, off, caplen, pkt[T_IP_LEN])
            data = bytes(buf[end - data_len:end - data_len + min(captured, data_len)])
        yield from stream.segment(pkt[T_SEQ], pkt[T_FLAGS], data, ts_us)
        if pkt[T_FLAGS] & (TCP_FIN | TCP_RST):
            yield from stream.finish()
    for stream in streams.values():
        yield from stream.finish()


def _payload_end(linktype: int, buf: bytes, off: int, caplen: int, ip_len: int) -> int:
    from echolab.captures.reader import ip_offset

    return ip_offset(linktype, buf, off, caplen) + ip_len


def record_rows(records: list[TlsRecord], t0_us: int | None = None) -> list[dict[str, object]]:
    """Records as rows (time in seconds from *t0_us*, default the first record's) for tables and JSON."""
    base = t0_us if t0_us is not None else (records[0].ts_us if records else 0)
    return [{"time": round((r.ts_us - base) / 1e6, 6), "end": round((r.end_us - base) / 1e6, 6),
             "direction": r.direction, "type": r.type_name, "version": f"0x{r.version:04x}", "length": r.length,
             "src": f"{r.src}:{r.sport}", "dst": f"{r.dst}:{r.dport}"} for r in records]
