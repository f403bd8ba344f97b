"""A device's TCP byte flow: new stream bytes per packet, per direction, and the round trip.

How many packets or records a device needs for its data is a property of the
device and the network; how many *stream bytes* it sends, and when, is a
property of what it says. :class:`FlowMeter` reads the packets of a capture
(the reader's TcpTuples) and keeps, for every packet carrying stream bytes not
seen before on its connection and direction, its time and that count, signed
by direction (positive from the device). A retransmitted segment adds nothing,
an overlapping one only its new part, and an out-of-order one its bytes when
it arrives; so the same bytes cut into different segments give the same flow.

It also estimates the round trip between the capture point and the servers
(:attr:`FlowMeter.rtt_us`): the smallest time from a device segment sent once
to the server's acknowledgement of it (Karn's rule: retransmitted data gives
no sample). At a home gateway that is the network's round trip to the cloud.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque

from echolab.captures.reader import T_ACK, T_DATA_LEN, T_DPORT, T_DST, T_FLAGS, T_SEQ, T_SPORT, T_SRC, T_TS, TCP_ACK, \
    TCP_SYN

_MOD = 1 << 32
MAX_OUTSTANDING = 4096  # device segments awaiting their acknowledgement, per connection


def _signed(delta: int) -> int:
    delta %= _MOD
    return delta - _MOD if delta >= 1 << 31 else delta


class ByteRanges:
    """The stream offsets one direction of a connection has carried (disjoint, sorted, merged)."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add(self, start: int, end: int) -> int:
        """Mark ``[start, end)`` carried; return how many of those bytes were not carried before."""
        if end <= start:
            return 0
        starts, ends = self.starts, self.ends
        i = bisect_left(ends, start)  # first range that ends at or after start
        j = i
        covered = 0
        new_start, new_end = start, end
        while j < len(starts) and starts[j] <= end:
            covered += max(0, min(ends[j], end) - max(starts[j], start))
            new_start, new_end = min(new_start, starts[j]), max(new_end, ends[j])
            j += 1
        starts[i:j] = [new_start]
        ends[i:j] = [new_end]
        return (end - start) - covered


class FlowMeter:
    """Feed it the device's TCP packets (:meth:`add`); read ``times_us``, ``nbytes`` and ``rtt_us``."""

    def __init__(self, device: bytes):
        self.device = device
        self.times_us: list[int] = []
        self.nbytes: list[int] = []  # new stream bytes of each packet that had some, + from the device
        self.rtt_us = 0  # 0 until a sample was seen
        self._ranges: dict[tuple, tuple[int, ByteRanges]] = {}  # per direction: (sequence base, ranges)
        self._sent: dict[tuple, deque[tuple[int, int]]] = {}  # per connection: (end offset, time) sent once

    def add(self, pkt: tuple) -> None:
        src, sport, dst, dport = pkt[T_SRC], pkt[T_SPORT], pkt[T_DST], pkt[T_DPORT]
        up = src == self.device
        n = pkt[T_DATA_LEN]
        if n > 0:
            key = (src, sport, dst, dport)
            seq = pkt[T_SEQ] + (1 if pkt[T_FLAGS] & TCP_SYN else 0)
            entry = self._ranges.get(key)
            if entry is None:
                entry = self._ranges[key] = (seq, ByteRanges())
            start = _signed(seq - entry[0])
            new = entry[1].add(start, start + n)
            if new:
                self.times_us.append(pkt[T_TS])
                self.nbytes.append(new if up else -new)
            if up and new == n:
                sent = self._sent.setdefault(key, deque())
                if len(sent) < MAX_OUTSTANDING:
                    sent.append((start + n, pkt[T_TS]))
        if not up and pkt[T_FLAGS] & TCP_ACK:
            self._acked((dst, dport, src, sport), pkt[T_ACK], pkt[T_TS])

    def _acked(self, key: tuple, ack: int, ts: int) -> None:
        sent = self._sent.get(key)
        if not sent:
            return
        acked = _signed(ack - self._ranges[key][0])
        last = None
        while sent and sent[0][0] <= acked:
            last = sent.popleft()
        if last is not None:
            sample = ts - last[1]
            if sample > 0 and (self.rtt_us == 0 or sample < self.rtt_us):
                self.rtt_us = sample
