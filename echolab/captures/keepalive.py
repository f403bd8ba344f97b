"""Keep-alive exchanges at the edges of a request, found by their shape.

A cut by quiet time (:mod:`echolab.captures.split`) joins a keep-alive to a
request when the two come closer than the gap: the idle Echo pings its voice
service every so often, whenever the last answer happened to end. A capture
made for one request by the collector holds no such exchange, so a request cut
from a long capture should not either. :func:`trim_edges` finds them: the
device's packets of a request fall into runs separated by more than a short
quiet time; from each end, a run smaller than a request (the cut's keep-alive
thresholds) whose packets are all at most :data:`KEEPALIVE_MAX_PACKET` bytes (a
ping and its answer) is left out. The device's short report that its answer was
played is larger and stays.
"""

from __future__ import annotations

import numpy as np

#: The most TCP payload (bytes) of a keep-alive packet; a packet with more is traffic. A real
#: Echo's keep-alives carry well under 100 bytes; the collector's timing
#: (``echolab.collector.timing``) and ``--keepalive-bytes`` start from this.
KEEPALIVE_PAYLOAD_BYTES = 100

#: The same limit in IP bytes, which the capture readers and the cut measure: the payload and
#: the largest IPv4 and TCP headers with options (20 + 60). A ping and its answer are 114 bytes
#: on the simulated lab; the shortest report of the device that its answer was played is 379.
KEEPALIVE_MAX_PACKET = KEEPALIVE_PAYLOAD_BYTES + 80

#: A cut by a quiet time of G joins a keep-alive to a request's edge when it comes within G; the
#: request's packets fall into runs apart by more than this share of G, and edge runs are looked at.
#: The same for capture files (``classify``) and live watching.
EDGE_GAP_SHARE = 0.05


def trim_edges(ts_us: np.ndarray, size: np.ndarray, *, min_packets: int, min_bytes: int,
               edge_gap_us: int) -> tuple[int, int]:
    """``(lo, hi)``: the packets ``[lo, hi)`` of a request (times sorted) without keep-alives at its edges."""
    n = len(ts_us)
    if n < 2:
        return 0, n
    cuts = np.flatnonzero(np.diff(np.asarray(ts_us)) > edge_gap_us) + 1
    runs = list(zip(np.concatenate(([0], cuts)).tolist(), np.concatenate((cuts, [n])).tolist()))
    size = np.asarray(size)

    def keepalive(run: tuple[int, int]) -> bool:
        a, b = run
        small = b - a < min_packets or int(size[a:b].sum()) < min_bytes
        return small and int(size[a:b].max()) <= KEEPALIVE_MAX_PACKET

    while len(runs) > 1 and keepalive(runs[0]):
        runs.pop(0)
    while len(runs) > 1 and keepalive(runs[-1]):
        runs.pop()
    return runs[0][0], runs[-1][1]


__all__ = ["EDGE_GAP_SHARE", "KEEPALIVE_MAX_PACKET", "KEEPALIVE_PAYLOAD_BYTES", "trim_edges"]
