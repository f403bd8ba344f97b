"""The rules of Echo traffic, in one place: what a keep-alive is, what a request is, how long to wait.

Four parts of the toolkit decide from the device's packets alone where a request
begins and ends: the batch cut of long captures (:mod:`echolab.captures.cut`,
``catalog import --split``), the live watcher (``echolab.collector.watch``,
``classify --interface``), classify's trimming of keep-alives at a request's edges
(``echolab.analysis.compare.classify``) and the collector's answer timing
(``echolab.collector.timing``). They all read :data:`RULES`, one
:class:`TrafficRules`; where one of them uses another value on purpose, it takes
it as a parameter whose default comes from here and says why beside it.

The figures come from a real Echo's traffic as the project's docs describe it
(docs/lab-setup.md, docs/long-captures.md): keep-alives of well under 100 bytes of
payload on one long-lived TLS connection, answers that pause up to 2 to 3 s, and a
short upload of the Echo's own 8 to 15 s after an answer.

This module also holds the two pieces of the cut that every cutter shares:
:func:`runs` (packets apart by more than a gap start a new run) and
:func:`trim_edges` (keep-alive exchanges joined to a request's edges, left out).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrafficRules:
    """The rules of the cut and of the collector's timing, units in the names."""

    #: The most TCP payload of a keep-alive packet; a packet with more is traffic. A real Echo's
    #: keep-alives carry well under 100 bytes (``collect --keepalive-bytes`` starts here).
    keepalive_payload_bytes: int = 100
    #: The largest IPv4 and TCP headers with options (20 + 60): the cut measures IP bytes.
    ip_tcp_header_max_bytes: int = 80
    #: ``doctor``'s measurement never takes a packet with more payload than this for a keep-alive,
    #: however the Echo pings: anything bigger is traffic.
    keepalive_ceiling_payload_bytes: int = 300
    #: ``doctor`` proposes the largest keep-alive seen plus this margin as ``--keepalive-bytes``.
    keepalive_margin_bytes: int = 20
    #: Keep-alives sent closer than this belong to one exchange (``doctor``'s spacing ignores them).
    keepalive_spacing_min_s: float = 1.0

    #: The default quiet time of the device that ends a request (``--split gap=S``, ``classify``).
    gap_s: float = 2.0
    #: A burst or window smaller than this (the device's TCP packets or IP bytes) is keep-alives.
    min_packets: int = 8
    min_bytes: int = 4096
    #: The Echo's own upload comes 8 to 15 s after an answer: the window the collector waits for it
    #: and ``--split auto`` attaches a burst within (``--attach-trailing``).
    trailing_window_s: float = 16.0
    #: A burst that can be attached sends its data within this long (a request takes 5 s or more) ...
    trailing_max_s: float = 3.0
    #: ... and the request it follows holds at least this many times its bytes.
    trailing_ratio: float = 2.0

    #: ``--split auto`` searches gaps from ... to ... seconds (quiet outside never decides a cut).
    auto_min_gap_s: float = 1.0
    auto_max_gap_s: float = 30.0
    #: With ``--expect N``, a cut counts when the N-th biggest burst holds this many times the bytes
    #: of the biggest one set aside.
    auto_separation: float = 2.0

    #: A cut by a quiet time G joins a keep-alive to a request's edge when it comes within G; the
    #: request's packets fall into runs apart by more than this share of G, and edge runs are looked at.
    edge_gap_share: float = 0.05

    #: No traffic for this long ends an answer (the collector): real answers pause up to 2 to 3 s;
    #: the Echo's own upload comes 8 s or more later.
    answer_quiet_s: float = 5.0
    #: ``doctor`` proposes a quiet time this many times the longest pause it saw inside traffic.
    answer_quiet_pause_factor: float = 1.5
    #: No traffic for this long before a prompt: the Echo is idle.
    idle_s: float = 5.0
    #: How late the capture engine's file may show a packet: dumpcap (Wireshark 4.0) flushes its
    #: file every 500 ms and libpcap hands it packets every 250 ms (a steady stream on loopback
    #: reached the file 0.48 s late in the median). Quiet judged from the file (the collector, the
    #: live watcher, which also measures the delay) allows for it.
    engine_file_delay_s: float = 0.75
    #: The collector's allowance for the same delay when it judges an answer over from one short
    #: capture: smaller than the watcher's, because the collector's per-class maximum answer time
    #: is measured at the simulated lab's speed and a larger allowance there reads as a busy Echo.
    collector_file_delay_s: float = 0.4
    #: The most delay the live watcher allows for, however late the file has been (a request is
    #: handed on at most this long after its last packet plus the gap).
    engine_file_delay_max_s: float = 2.0
    #: After the capture interface's link went down or up, the collector waits (real seconds, never
    #: scaled by the simulated lab's speed: TCP's clock is real) for the Echo's traffic to pause at
    #: least this long, and at least as long as the link may have been down (since the collector last
    #: saw its link counter unchanged, at the start of an attempt), before the next prompt: TCP retransmits what the outage held back with a back-off that roughly doubles,
    #: so a request of an earlier attempt may reach the cloud, and be answered, that much later.
    link_settle_min_s: float = 2.0
    #: ... and at most this long (TCP's own retransmission timer stops growing at 120 s).
    link_settle_max_s: float = 60.0

    @property
    def keepalive_max_packet_bytes(self) -> int:
        """The keep-alive limit in IP bytes, which the capture readers and the cut measure.

        A ping and its answer are 114 bytes on the simulated lab; the shortest report
        of the device that its answer was played is 379.
        """
        return self.keepalive_payload_bytes + self.ip_tcp_header_max_bytes

    def is_traffic(self, payload_bytes: int, keepalive_payload_bytes: int | None = None) -> bool:
        """A packet with more TCP payload than a keep-alive's (bare ACKs and pings are not traffic)."""
        limit = self.keepalive_payload_bytes if keepalive_payload_bytes is None else keepalive_payload_bytes
        return payload_bytes > limit

    def is_request(self, packets: int, ip_bytes: int, *, min_packets: int | None = None,
                   min_bytes: int | None = None) -> bool:
        """A burst or window big enough to be a request (smaller ones are keep-alives)."""
        least_packets = self.min_packets if min_packets is None else min_packets
        least_bytes = self.min_bytes if min_bytes is None else min_bytes
        return packets >= least_packets and ip_bytes >= least_bytes

    def edge_gap_us(self, gap_us: float) -> int:
        """The quiet time (µs) that separates runs at a request's edges, for a cut by *gap_us*."""
        return round(gap_us * self.edge_gap_share)


RULES = TrafficRules()


def runs(ts_us: np.ndarray, gap_us: float) -> list[tuple[int, int]]:
    """``[lo, hi)`` index ranges of sorted times with no quiet stretch longer than *gap_us* inside."""
    n = len(ts_us)
    if not n:
        return []
    breaks = np.flatnonzero(np.diff(np.asarray(ts_us)) > gap_us) + 1
    return list(zip(np.concatenate(([0], breaks)).tolist(), np.concatenate((breaks, [n])).tolist()))


def trim_edges(ts_us: np.ndarray, size: np.ndarray, *, min_packets: int, min_bytes: int,
               edge_gap_us: int, rules: TrafficRules = RULES) -> tuple[int, int]:
    """``(lo, hi)``: the packets ``[lo, hi)`` of a request (times sorted) without keep-alives at its edges.

    A cut by quiet time joins a keep-alive to a request when the two come closer
    than the gap: the idle Echo pings its voice service every so often, whenever the
    last answer happened to end. A capture made for one request by the collector
    holds no such exchange, so a request cut from a long capture should not either.
    The device's packets of a request fall into runs separated by more than
    *edge_gap_us*; from each end, a run smaller than a request whose packets are all
    at most :attr:`TrafficRules.keepalive_max_packet_bytes` (a ping and its answer)
    is left out. The device's short report that its answer was played is larger and
    stays.
    """
    n = len(ts_us)
    if n < 2:
        return 0, n
    parts = runs(ts_us, edge_gap_us)
    size = np.asarray(size)

    def keepalive(run: tuple[int, int]) -> bool:
        a, b = run
        small = not rules.is_request(b - a, int(size[a:b].sum()), min_packets=min_packets, min_bytes=min_bytes)
        return small and int(size[a:b].max()) <= rules.keepalive_max_packet_bytes

    while len(parts) > 1 and keepalive(parts[0]):
        parts.pop(0)
    while len(parts) > 1 and keepalive(parts[-1]):
        parts.pop()
    return parts[0][0], parts[-1][1]


__all__ = ["RULES", "TrafficRules", "runs", "trim_edges"]
