"""tcptrace's per-connection statistics, computed natively.

This module reproduces what ``tcptrace -l`` (Debian 6.6.7) reports for every
TCP connection of a capture, direction by direction, with the tool's own
definitions: window scaling only when both SYNs asked for it, retransmissions
and out-of-order segments from a per-direction segment database (with the same
ACK-driven merging of acknowledged ranges and the same four sequence-space
quadrants), zero-window probes, initial window, idle time including the tail
to the end of the file for connections left open, connections seen mid-stream
without their SYN, re-use of a 4-tuple. The behaviour is the tcptrace binary's
own (docs/features.md lists the columns); tests/test_tcptrace_oracle.py runs the real binary on
captures of real TCP stacks and requires every column to match.

Differences from the binary (all on inputs a capture from a gateway does not
produce; see docs/features.md): a negative TCP data length from a bogus header
is treated as 0; LINUX_SLL2 captures are accepted; two endpoints with the same
IP address are not split into two half connections (tcptrace's hash-tree bug);
the ``-r`` round-trip-time block is not computed.

Use :func:`trace_capture` for a file, :class:`Tracer` for a packet stream.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from echolab.captures.reader import (TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG, ReadStats, format_addr,
                                     iter_tcp)

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF
TWO32 = 1 << 32
REUSE_IDLE_US = 240_000_000  # tcptrace: a 4-tuple idle for more than 4 minutes starts a new connection
#: The flags the fast path checks: it takes an ACK (PSH allowed) without FIN, SYN, RST or URG.
_FAST_MASK = TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK | TCP_URG

# tcptrace's per-direction CSV columns (41, without -r), in its order.
CSV_DIRECTION_FIELDS: tuple[str, ...] = (
    "total_packets", "resets_sent", "ack_pkts_sent", "pure_acks_sent", "sack_pkts_sent", "dsack_pkts_sent",
    "max_sack_blks/ack", "unique_bytes_sent", "actual_data_pkts", "actual_data_bytes", "rexmt_data_pkts",
    "rexmt_data_bytes", "zwnd_probe_pkts", "zwnd_probe_bytes", "outoforder_pkts", "pushed_data_pkts",
    "SYN/FIN_pkts_sent", "req_1323_ws/ts", "adv_wind_scale", "req_sack", "sacks_sent", "urgent_data_pkts",
    "urgent_data_bytes", "mss_requested", "max_segm_size", "min_segm_size", "avg_segm_size", "max_win_adv",
    "min_win_adv", "zero_win_adv", "avg_win_adv", "initial_window_bytes", "initial_window_pkts",
    "ttl_stream_length", "missed_data", "truncated_data", "truncated_packets", "data_xmit_time",
    "idletime_max", "hardware_dups", "throughput",
)
CSV_CONNECTION_FIELDS: tuple[str, ...] = ("conn_#", "host_a", "host_b", "port_a", "port_b", "first_packet",
                                          "last_packet")


# --------------------------------------------------------------------------- segment database


class _Quadrant:
    """One quarter (2^30 numbers) of a direction's sequence space: sorted [first, last, acked] ranges."""

    __slots__ = ("segs", "prev", "next")

    def __init__(self) -> None:
        self.segs: list[list[Any]] = []
        self.prev: _Quadrant | None = None
        self.next: _Quadrant | None = None


def _last_of(seg: list[Any]) -> int:
    return seg[1]


class _SeqSpace:
    """The segments one direction has sent, to tell new bytes from retransmitted ones.

    tcptrace keeps the quadrant the current sequence number is in and its two
    neighbours; the opposite quadrant is forgotten whenever a new neighbourhood
    is set up. Acknowledged, adjacent ranges are merged, which changes which
    later segments count as out of order; so ACKs are applied here too.
    """

    __slots__ = ("quads",)

    def __init__(self) -> None:
        self.quads: list[_Quadrant | None] = [None, None, None, None]

    def which(self, seq: int) -> _Quadrant:
        quads = self.quads
        qix = seq >> 30
        quad = quads[qix]
        if quad is not None and quad.next is not None and quad.prev is not None:
            return quad
        nxt, opp, prv = (qix + 1) & 3, (qix + 2) & 3, (qix + 3) & 3
        for ix in (qix, nxt, prv):
            if quads[ix] is None:
                quads[ix] = _Quadrant()
        quads[opp] = None
        quad, qn, qp = quads[qix], quads[nxt], quads[prv]
        quad.prev, quad.next = qp, qn
        qn.prev, qp.next = quad, quad
        qn.next = None
        qp.prev = None
        return quad

    def add(self, seq: int, length: int) -> tuple[int, bool]:
        """Record ``length`` sequence numbers from *seq*; return (retransmitted count, out of order)."""
        last = (seq + length - 1) & M32
        quad = self.which(seq)
        if (seq >> 30) != (last >> 30):
            len1 = ((seq >> 30) + 1) * (1 << 30) - seq
            r1, o1 = _addseg(quad, seq, len1)
            r2, o2 = _addseg(quad.next, last & ~((1 << 30) - 1), length - len1)
            return r1 + r2, o1 or o2
        return _addseg(quad, seq, length)

    def ack(self, ack: int) -> None:
        """Mark ranges below *ack* acknowledged (and every range of the previous quadrant)."""
        quad = self.quads[ack >> 30]
        if quad is None or quad.next is None or quad.prev is None:  # which() would change the neighbourhood
            quad = self.which(ack)
        prev = quad.prev
        changed = False
        for seg in prev.segs:
            if not seg[2]:
                seg[2] = True
                changed = True
        if changed:
            _collapse(prev.segs)
        changed = False
        for seg in quad.segs:
            if ack <= seg[0]:
                break
            if not seg[2]:
                seg[2] = True
                changed = True
        if changed:
            _collapse(quad.segs)


def _add_data(space: _SeqSpace, seq: int, length: int) -> int:
    """:meth:`_SeqSpace.add` for a data segment as one int: retransmitted count, or ``-1 - count`` when
    out of order. An in-order segment inside one settled quadrant is appended without a search."""
    qix = seq >> 30
    quad = space.quads[qix]
    last = seq + length - 1
    if quad is not None and quad.next is not None and quad.prev is not None and last >> 30 == qix:
        segs = quad.segs
        if not segs or seq > segs[-1][1]:
            segs.append([seq, last, False])
            return 0
    rcount, out_order = space.add(seq, length)
    return -1 - rcount if out_order else rcount


def _addseg(quad: _Quadrant, first: int, length: int) -> tuple[int, bool]:
    segs = quad.segs
    last = first + length - 1
    rexlen = 0
    out_order = False
    if segs and first > segs[-1][1]:
        segs.append([first, last, False])
        return 0, False
    i = bisect_left(segs, first, key=_last_of)
    while i < len(segs):
        seg = segs[i]
        if first < seg[0]:
            if last < seg[1]:
                out_order = True
            new = [first, last, False]
            segs.insert(i, new)
            i += 1
            if last < seg[0]:
                return rexlen, out_order
            new[1] = seg[0] - 1
            first = seg[0]
            length = last - first + 1
        if last <= seg[1]:
            return rexlen + length, out_order
        rexlen += seg[1] - first + 1
        first = seg[1] + 1
        length = last - first + 1
        i += 1
    segs.append([first, last, False])
    return rexlen, out_order


def _collapse(segs: list[list[Any]]) -> None:
    i = 0
    while i < len(segs) - 1:
        seg = segs[i]
        if not seg[2]:
            break
        nxt = segs[i + 1]
        if nxt[2] and seg[1] + 1 == nxt[0]:
            seg[1] = nxt[1]
            del segs[i + 1]
        else:
            i += 1


# --------------------------------------------------------------------------- per-direction state


class Direction:
    """What tcptrace keeps for one direction of a connection (its ``tcb``), as far as -l needs it."""

    __slots__ = (
        "packets", "reset_count", "syn_count", "fin_count", "ack_pkts", "pureack_pkts", "num_sacks",
        "num_dsacks", "max_sack_blocks", "unique_bytes", "data_pkts", "data_bytes", "rexmit_pkts",
        "rexmit_bytes", "num_zwnd_probes", "zwnd_probe_bytes", "out_order_pkts", "data_pkts_push", "f1323_ws",
        "f1323_ts", "window_scale", "fsack_req", "sacks_sent", "urg_data_pkts", "urg_data_bytes", "mss",
        "max_seg_size", "min_seg_size", "win_max", "win_min", "win_zero_ct", "win_tot", "win_scaled_pkts",
        "scaled_stats", "win_last", "initialwin_bytes", "initialwin_segs", "data_acked", "syn", "fin",
        "windowend", "latest_seq", "seq_wrap_count", "quads", "trunc_bytes", "trunc_segs", "first_data_time",
        "last_data_time", "last_time", "idle_max", "hw_dups", "hw_seen", "hw_ix", "space",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)
        self.f1323_ws = self.f1323_ts = self.fsack_req = self.scaled_stats = self.data_acked = False
        self.hw_seen = [(0, 0)] * 8
        self.space = _SeqSpace()


@dataclass
class Connection:
    """One TCP connection as tcptrace numbers it; ``a`` sent the first packet seen."""

    number: int
    a_addr: bytes
    a_port: int
    b_addr: bytes
    b_port: int
    a2b: Direction
    b2a: Direction
    first_time: int = 0  # µs
    last_time: int = 0  # µs
    packets: int = 0

    @property
    def host_a(self) -> str:
        return format_addr(self.a_addr)

    @property
    def host_b(self) -> str:
        return format_addr(self.b_addr)

    def closed(self) -> bool:
        """FIN seen in both directions, or a RST in either (tcptrace's test before adding tail idle time)."""
        fins = (self.a2b.fin_count > 0) + (self.b2a.fin_count > 0)
        return fins >= 2 or self.a2b.reset_count > 0 or self.b2a.reset_count > 0

    def elapsed_us(self) -> int:
        return max(self.last_time - self.first_time, 0)

    def direction_of(self, sender: bytes, port: int | None = None) -> Direction:
        """The direction whose packets *sender* sent."""
        if sender == self.a_addr and (port is None or port == self.a_port):
            return self.a2b
        return self.b2a

    def stats(self, which: str) -> dict[str, Any]:
        """Numeric statistics of direction ``"a2b"`` or ``"b2a"`` (None where tcptrace prints NA)."""
        return direction_stats(self, self.a2b if which == "a2b" else self.b2a)

    def csv_row(self) -> dict[str, str]:
        """This connection as tcptrace's ``--csv`` row, formatted like the tool, keyed by its column names."""
        row = {
            "conn_#": str(self.number), "host_a": tcptrace_addr(self.a_addr), "host_b": tcptrace_addr(self.b_addr),
            "port_a": str(self.a_port), "port_b": str(self.b_port),
            "first_packet": _tv(self.first_time), "last_packet": _tv(self.last_time),
        }
        values = {"a2b": csv_direction(self, self.a2b), "b2a": csv_direction(self, self.b2a)}
        for name in CSV_DIRECTION_FIELDS:
            for side in ("a2b", "b2a"):
                row[f"{name}_{side}"] = values[side][name]
        return row


def tcptrace_addr(raw: bytes) -> str:
    """An address as tcptrace prints it: IPv4 dotted, IPv6 with zero-padded groups and its own ``::`` rule."""
    if len(raw) == 4:
        return format_addr(raw)
    out = ""
    doing = done = False
    for i in range(8):
        group = (raw[2 * i] << 8) | raw[2 * i + 1]
        if group == 0:
            if doing and i != 7:
                continue
            if not doing and not done:
                doing = True
                continue
        if doing:
            doing, done = False, True
            out += ":"
        out += "%04x:" % group
    return out[:-1]


def _tv(us: int) -> str:
    """tcptrace prints timevals as ``%ld.%ld`` (microseconds not zero-padded)."""
    return f"{us // 1_000_000}.{us % 1_000_000}"


# --------------------------------------------------------------------------- the tracer


def _options(opts: bytes) -> tuple[int, int, bool, bool, int, list[tuple[int, int]]]:
    """(mss, ws, ts, sack_req, sack_count, blocks) from raw TCP options; -1 = absent."""
    mss = ws = sack_count = -1
    ts = sack_req = False
    blocks: list[tuple[int, int]] = []
    p, n = 0, len(opts)
    while p < n:
        kind = opts[p]
        if kind <= 1:
            p += 1
            continue
        if p + 1 >= n:
            break
        length = opts[p + 1]
        if length == 0 or p + length > n:
            break
        if kind == 2 and length >= 4:
            mss = (opts[p + 2] << 8) | opts[p + 3]
            mss = -1 if mss == 0xFFFF else mss
        elif kind == 3 and length >= 3:
            ws = -1 if opts[p + 2] == 0xFF else opts[p + 2]
        elif kind == 8:
            ts = True
        elif kind == 4:
            sack_req = True
        elif kind == 5:
            sack_count = 0
            blocks = []
            q, end = p + 2, p + length
            while q < end and q + 8 <= n and sack_count < 10:
                blocks.append((int.from_bytes(opts[q:q + 4], "big"), int.from_bytes(opts[q + 4:q + 8], "big")))
                sack_count += 1
                q += 8
        p += length
    return mss, ws, ts, sack_req, sack_count, blocks


def _is_dsack(blocks: list[tuple[int, int]], ack: int) -> bool:
    (l0, r0) = blocks[0]
    if r0 <= ack:
        return True
    if len(blocks) > 1:
        l1, r1 = blocks[1]
        if r0 <= r1 and l0 >= l1:
            return True
        if (l0 <= l1 and r0 > l1) or (r0 >= r1 and l0 < r1):
            return True
    return False


_TS_ONLY = b"\x01\x01\x08\x0a"  # NOP NOP timestamps: the options of nearly every established segment


class Tracer:
    """Feeds TCP packets (``echolab.captures`` tuples) through tcptrace's per-packet algorithm.

    ``fast`` (default True) handles the packets that make up almost all of a
    capture (ACK or PSH+ACK of a known connection, no options but timestamps)
    in :meth:`add` itself, with the full algorithm's branches those packets
    cannot take removed; ``fast=False`` sends everything through the full
    algorithm, :meth:`_add_full` (the tests compare the two).
    """

    def __init__(self, fast: bool = True) -> None:
        self.connections: list[Connection] = []
        self._table: dict[tuple, tuple[Connection, bool]] = {}
        self.end_time: int = 0
        self.fast = fast

    def _new(self, src: bytes, sport: int, dst: bytes, dport: int) -> Connection:
        conn = Connection(len(self.connections) + 1, src, sport, dst, dport, Direction(), Direction())
        self.connections.append(conn)
        self._table[(src, sport, dst, dport)] = (conn, True)
        self._table[(dst, dport, src, sport)] = (conn, False)
        return conn

    def feed(self, packets: Iterable[tuple]) -> None:
        for pkt in packets:
            self.add(pkt)

    def add(self, pkt: tuple) -> None:  # noqa: C901 - the fast path, inline because it runs per packet
        """Account one packet (a TcpTuple of :func:`echolab.captures.reader.iter_tcp`).

        An ACK (PSH allowed; no SYN, FIN, RST, URG) of a known 4-tuple within
        the re-use idle limit, with no options or only timestamps and a
        non-negative data length, is handled here: every statement is
        :meth:`_add_full`'s with ``syn = fin = rst = urg = 0``, ``ackf = 1`` and
        no MSS, window-scale or SACK option. Keep the two in step
        (tests/test_tcptrace_fastpath.py compares them). Other packets go to
        :meth:`_add_full`.
        """
        (now, src, dst, sport, dport, flags, seq, ack, win, _urp, opts, data_len, captured, ip_id, _ip_len) = pkt
        entry = self._table.get((src, sport, dst, dport))
        if entry is None or (flags & _FAST_MASK) != TCP_ACK or data_len < 0 or not self.fast:
            self._add_full(pkt, entry)
            return
        conn, forward = entry
        if now - conn.last_time > REUSE_IDLE_US or (opts and (len(opts) != 12 or opts[:4] != _TS_ONLY)):
            self._add_full(pkt, entry)
            return
        if forward:
            this, other = conn.a2b, conn.b2a
        else:
            this, other = conn.b2a, conn.a2b
        if opts:
            this.f1323_ts = True
        if not conn.first_time:
            conn.first_time = now
        conn.last_time = now
        scaled = this.f1323_ws and other.f1323_ws
        eff_win = (win << (this.window_scale & 63)) & M64 if scaled else win
        last_time = this.last_time
        if last_time:
            idle = now - last_time
            if idle > this.idle_max:
                this.idle_max = idle
        this.last_time = now
        end = seq + data_len
        quads = this.quads
        if quads == 15:
            if (this.syn >> 30) == (end >> 30) and end >= this.syn:
                this.seq_wrap_count += 1
                quads = 0
        quads |= (1 << (seq >> 30))
        if end < TWO32:
            quads |= (1 << (end >> 30))
        this.quads = quads
        this.windowend = (ack + eff_win) & M32
        if not scaled:
            this.window_scale = other.window_scale = 0
        conn.packets += 1
        this.packets += 1
        if this.scaled_stats:
            this.win_scaled_pkts += 1
        this.latest_seq = end & M32
        if ip_id >= 0:
            key = (seq, ip_id)
            if seq and ip_id and key in this.hw_seen:
                this.hw_dups += 1
            else:
                this.hw_seen[this.hw_ix] = key
                this.hw_ix = (this.hw_ix + 1) & 7
        rexmit_bytes = 0
        if data_len > 0:
            this.data_pkts += 1
            if flags & TCP_PSH:
                this.data_pkts_push += 1
            this.data_bytes += data_len
            if data_len > this.max_seg_size:
                this.max_seg_size = data_len
            if this.min_seg_size == 0 or data_len < this.min_seg_size:
                this.min_seg_size = data_len
            if not this.first_data_time:
                this.first_data_time = now
            this.last_data_time = now
            if captured < data_len:
                this.trunc_bytes += data_len - captured
                this.trunc_segs += 1
            if other.win_last == 0 and other.packets > 0:  # zero-window probe
                this.num_zwnd_probes += 1
                this.zwnd_probe_bytes += data_len
            else:
                rexmit_bytes = _add_data(this.space, seq, data_len)
                if rexmit_bytes < 0:  # out of order
                    rexmit_bytes = -1 - rexmit_bytes
                    this.out_order_pkts += 1
                if rexmit_bytes < data_len:
                    this.unique_bytes += data_len - rexmit_bytes
        other.space.ack(ack)
        if rexmit_bytes > 0:
            this.rexmit_pkts += 1
            this.rexmit_bytes += rexmit_bytes
        this.win_last = eff_win
        if eff_win > this.win_max:
            this.win_max = eff_win
        if eff_win > 0 and scaled and not this.scaled_stats:
            this.scaled_stats = True
            this.win_min = this.win_max = eff_win
            this.win_tot = 0
            this.win_scaled_pkts = 1
        elif eff_win > 0 and (this.win_min == 0 or eff_win < this.win_min):
            this.win_min = eff_win
        this.win_tot += eff_win
        if eff_win == 0:
            this.win_zero_ct += 1
        this.ack_pkts += 1
        if data_len == 0:
            this.pureack_pkts += 1
        if not other.data_acked and ((other.syn + 1) & M32) != ack:
            other.data_acked = True
        if data_len > 0 and not this.data_acked and rexmit_bytes <= 0:
            this.initialwin_bytes += data_len
            this.initialwin_segs += 1

    def _add_full(self, pkt: tuple, entry: tuple[Connection, bool] | None) -> None:  # noqa: C901 - dotrace()
        """One pass of tcptrace's dotrace(), kept in its order; *entry* is the 4-tuple's table entry."""
        (now, src, dst, sport, dport, flags, seq, ack, win, urp, opts, data_len, captured, ip_id, _ip_len) = pkt
        syn = flags & TCP_SYN
        if entry is None:
            conn = self._new(src, sport, dst, dport)
            this, other = conn.a2b, conn.b2a
        else:
            conn, forward = entry
            this, other = (conn.a2b, conn.b2a) if forward else (conn.b2a, conn.a2b)
            if (now - conn.last_time > REUSE_IDLE_US
                    or (syn and (this.fin_count or other.fin_count or this.reset_count or other.reset_count)
                        and (seq > other.windowend or seq < this.syn))
                    or (syn and this.syn_count > 1 and this.syn != seq)):
                conn = self._new(src, sport, dst, dport)
                this, other = conn.a2b, conn.b2a
        if not conn.first_time:
            conn.first_time = now
        conn.last_time = now
        fin, rst, ackf = flags & TCP_FIN, flags & TCP_RST, flags & TCP_ACK
        if syn:
            this.syn_count = (this.syn_count + 1) & 0xFF
        if rst:
            this.reset_count = (this.reset_count + 1) & 0xFF
        if fin:
            this.fin_count = (this.fin_count + 1) & 0xFF
        if ackf or syn:
            eff_win = win
            if this.f1323_ws and other.f1323_ws and not syn:
                eff_win = (win << (this.window_scale & 63)) & M64
        else:
            eff_win = 0
        if this.last_time:
            idle = now - this.last_time
            if idle > this.idle_max:
                this.idle_max = idle
        this.last_time = now
        dlen = data_len if data_len > 0 else 0
        start = seq
        end = start + dlen
        # sequence-space wrap count (only used for the stream length)
        quads = this.quads
        if quads == 15:
            if (this.syn >> 30) == (end >> 30) and end >= this.syn:
                this.seq_wrap_count += 1
                quads = 0
        quads |= (1 << (start >> 30))
        if end < TWO32:
            quads |= (1 << (end >> 30))
        this.quads = quads
        if syn:
            this.syn = start
        if fin:
            this.fin = end & M32
        if ackf:
            this.windowend = (ack + eff_win) & M32
        if opts:
            mss, ws, ts, sack_req, sack_count, blocks = _options(opts)
            if mss != -1:
                this.mss = mss if mss < 0x8000 else mss - 0x10000 + TWO32
            if ws != -1:
                this.window_scale = ws
                this.f1323_ws = True
            if ts:
                this.f1323_ts = True
            if sack_req:
                this.fsack_req = True
            if sack_count > 0:
                this.sacks_sent += 1
        else:
            sack_count = -1
            blocks = None
        if not syn and (not this.f1323_ws or not other.f1323_ws):
            this.window_scale = other.window_scale = 0
        if data_len > 0:
            this.data_pkts += 1
            if flags & TCP_PSH:
                this.data_pkts_push += 1
            this.data_bytes += data_len
            if flags & TCP_URG:
                this.urg_data_pkts += 1
                this.urg_data_bytes += urp
            if data_len > this.max_seg_size:
                this.max_seg_size = data_len
            if this.min_seg_size == 0 or data_len < this.min_seg_size:
                this.min_seg_size = data_len
            if not this.first_data_time:
                this.first_data_time = now
            this.last_data_time = now
        conn.packets += 1
        this.packets += 1
        if this.scaled_stats:
            this.win_scaled_pkts += 1
        this.latest_seq = end & M32
        if ip_id >= 0:
            key = (seq, ip_id)
            if seq and ip_id and key in this.hw_seen:
                this.hw_dups += 1
            else:
                this.hw_seen[this.hw_ix] = key
                this.hw_ix = (this.hw_ix + 1) & 7
        if data_len > 0 and captured < data_len:
            this.trunc_bytes += data_len - captured
            this.trunc_segs += 1
        rexmit_bytes = 0
        out_order = False
        if syn or fin or data_len > 0:
            length = dlen + (1 if syn else 0) + (1 if fin else 0)
            probe = other.win_last == 0 and other.packets > 0 and not syn
            rcount = 0
            if probe:
                this.num_zwnd_probes += 1
                this.zwnd_probe_bytes += dlen
            else:
                rcount, out_order = this.space.add(start, length)
                rexmit_bytes = rcount
            if out_order:
                this.out_order_pkts += 1
            if syn:
                length -= 1
                if this.syn_count > 1:
                    rcount -= 1
            if fin:
                length -= 1
                if this.fin_count > 1:
                    rcount -= 1
            if not probe and rcount < length:
                this.unique_bytes += length - rcount
        if ackf:
            other.space.ack(ack)
        if rexmit_bytes > 0:
            this.rexmit_pkts += 1
            this.rexmit_bytes += rexmit_bytes
        if rst:
            if ackf:
                this.ack_pkts += 1
            return
        this.win_last = eff_win
        if ackf or syn:
            if eff_win > this.win_max:
                this.win_max = eff_win
            if eff_win > 0 and this.f1323_ws and other.f1323_ws and not syn and not this.scaled_stats:
                this.scaled_stats = True
                this.win_min = this.win_max = eff_win
                this.win_tot = 0
                this.win_scaled_pkts = 1
            elif eff_win > 0 and (this.win_min == 0 or eff_win < this.win_min):
                this.win_min = eff_win
            this.win_tot += eff_win
        if ackf:
            if eff_win == 0:
                this.win_zero_ct += 1
            this.ack_pkts += 1
            if data_len == 0 and not syn and not fin:
                this.pureack_pkts += 1
            if sack_count > 0:
                this.num_sacks += 1
                if sack_count > this.max_sack_blocks:
                    this.max_sack_blocks = sack_count
                if _is_dsack(blocks, ack):
                    this.num_dsacks += 1
            if not other.data_acked and ((other.syn + 1) & M32) != ack:
                other.data_acked = True
        if data_len > 0 and not this.data_acked and rexmit_bytes <= 0:
            this.initialwin_bytes += data_len
            this.initialwin_segs += 1

    def finish(self, end_time: int | None) -> list[Connection]:
        """Add the idle tail up to *end_time* (µs, the last record of the file) to open connections."""
        if end_time is None:
            end_time = max((c.last_time for c in self.connections), default=0)
        self.end_time = end_time
        for conn in self.connections:
            if conn.closed():
                continue
            for d in (conn.a2b, conn.b2a):
                if d.last_time:
                    idle = end_time - d.last_time
                    if idle > d.idle_max:
                        d.idle_max = idle
        return self.connections


def trace_capture(path: Path | str, stats: ReadStats | None = None) -> list[Connection]:
    """Every TCP connection of the capture at *path*, with tcptrace's statistics.

    Raises :class:`echolab.captures.reader.CaptureError` for a file that is not a capture.
    """
    stats = stats if stats is not None else ReadStats()
    tracer = Tracer()
    tracer.feed(iter_tcp(path, stats))
    return tracer.finish(stats.last_ts_us)


# --------------------------------------------------------------------------- reporting


def stream_length(d: Direction) -> int | None:
    """tcptrace's ``ttl stream length``: None (NA) unless the direction sent a SYN and a FIN."""
    if not (d.syn_count and d.fin_count):
        return None
    last = d.latest_seq if d.reset_count else d.fin
    wraps = d.seq_wrap_count
    if last > d.syn:
        return (last + TWO32 * wraps - d.syn - 1) & M64
    return (last + TWO32 * (wraps + 1) - d.syn - 1) & M64


def avg_win_adv(conn: Connection, d: Direction) -> tuple[int, int]:
    """(window total, divisor) behind ``avg win adv`` (integer division of the two)."""
    if conn.a2b.scaled_stats and conn.b2a.scaled_stats:
        return d.win_tot, d.win_scaled_pkts
    return d.win_tot, d.packets


def direction_stats(conn: Connection, d: Direction) -> dict[str, Any]:
    """Numeric values of every tcptrace statistic of one direction, keyed by tcptrace's CSV names.

    ``ttl_stream_length``, ``missed_data``, ``idletime_max`` and ``throughput``
    are None where tcptrace prints NA. Times are in tcptrace's units: seconds
    for ``data_xmit_time``, milliseconds for ``idletime_max``, bytes per second
    for ``throughput``. A few extra ``_``-prefixed entries carry what a
    per-capture combination needs (sums behind averages, first/last times in µs).
    """
    tot, div = avg_win_adv(conn, d)
    length = stream_length(d)
    etime = conn.elapsed_us() / 1_000_000.0
    xmit_us = max(d.last_data_time - d.first_data_time, 0)
    return {
        "total_packets": d.packets, "resets_sent": d.reset_count, "ack_pkts_sent": d.ack_pkts,
        "pure_acks_sent": d.pureack_pkts, "sack_pkts_sent": d.num_sacks, "dsack_pkts_sent": d.num_dsacks,
        "max_sack_blks/ack": d.max_sack_blocks, "unique_bytes_sent": d.unique_bytes,
        "actual_data_pkts": d.data_pkts, "actual_data_bytes": d.data_bytes, "rexmt_data_pkts": d.rexmit_pkts,
        "rexmt_data_bytes": d.rexmit_bytes, "zwnd_probe_pkts": d.num_zwnd_probes,
        "zwnd_probe_bytes": d.zwnd_probe_bytes, "outoforder_pkts": d.out_order_pkts,
        "pushed_data_pkts": d.data_pkts_push, "syn_pkts_sent": d.syn_count, "fin_pkts_sent": d.fin_count,
        "req_1323_ws": d.f1323_ws, "req_1323_ts": d.f1323_ts, "adv_wind_scale": d.window_scale,
        "req_sack": d.fsack_req, "sacks_sent": d.sacks_sent, "urgent_data_pkts": d.urg_data_pkts,
        "urgent_data_bytes": d.urg_data_bytes, "mss_requested": d.mss, "max_segm_size": d.max_seg_size,
        "min_segm_size": d.min_seg_size, "avg_segm_size": int(d.data_bytes / (d.data_pkts + 0.001)),
        "max_win_adv": d.win_max, "min_win_adv": d.win_min, "zero_win_adv": d.win_zero_ct,
        "avg_win_adv": tot // div if div else 0, "initial_window_bytes": d.initialwin_bytes,
        "initial_window_pkts": d.initialwin_segs, "ttl_stream_length": length,
        "missed_data": None if length is None else (length - d.unique_bytes) & M64,
        "truncated_data": d.trunc_bytes, "truncated_packets": d.trunc_segs,
        "data_xmit_time": xmit_us / 1_000_000.0,
        "idletime_max": None if not d.last_time else d.idle_max / 1000.0,
        "hardware_dups": d.hw_dups,
        "throughput": None if etime == 0.0 else d.unique_bytes / etime,
        "_win_tot": tot, "_win_div": div, "_first_data_us": d.first_data_time, "_last_data_us": d.last_data_time,
        "_conn_first_us": conn.first_time, "_conn_last_us": conn.last_time,
    }


def csv_direction(conn: Connection, d: Direction) -> dict[str, str]:
    """One direction's values formatted exactly as ``tcptrace -l --csv`` prints them (stripped)."""
    s = direction_stats(conn, d)
    out: dict[str, str] = {}
    for name in CSV_DIRECTION_FIELDS:
        if name == "SYN/FIN_pkts_sent":
            out[name] = f"{s['syn_pkts_sent']}/{s['fin_pkts_sent']}"
        elif name == "req_1323_ws/ts":
            out[name] = f"{'Y' if s['req_1323_ws'] else 'N'}/{'Y' if s['req_1323_ts'] else 'N'}"
        elif name == "req_sack":
            out[name] = "Y" if s["req_sack"] else "N"
        elif name == "data_xmit_time":
            out[name] = "%.3f" % s[name]
        elif name == "idletime_max":
            out[name] = "NA" if s[name] is None else "%.1f" % s[name]
        elif name == "throughput":
            out[name] = "NA" if s[name] is None else "%.0f" % s[name]
        elif s[name] is None:
            out[name] = "NA"
        else:
            out[name] = str(int(s[name]))
    return out


def connection_rows(path: Path | str, device_ip: str | None = None) -> list[dict[str, str]]:
    """Each connection of a capture as tcptrace's CSV row (its column names and formatting).

    With *device_ip*, each row also says which column is server-to-device
    (``s2d``: "a2b", "b2a" or "" when the device is not an endpoint).
    """
    from echolab.captures.reader import parse_addr

    device = parse_addr(device_ip) if device_ip else None
    rows = []
    for conn in trace_capture(path):
        row = conn.csv_row()
        if device is not None:
            row["s2d"] = "b2a" if conn.a_addr == device else "a2b" if conn.b_addr == device else ""
        rows.append(row)
    return rows
