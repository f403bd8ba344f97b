"""When a real Echo's answer is over, and when the Echo is idle: decided from its traffic alone.

A real Echo keeps one long-lived TLS connection with small keep-alives, its
answers can pause for 2 to 3 s and go on, and 8 to 15 s after an answer it
often uploads a short burst of its own (docs/lab-setup.md, from public gateway
captures of real Echos; in 460 real requests the longest pause between the cloud's data packets inside a
request was over 2 s in 43% of them, median 1.9 s). So:

* **traffic** is a packet to or from the Echo with more than
  ``keepalive_bytes`` of TCP payload; keep-alives and bare ACKs are not traffic;
* the **answer is over** once there has been no traffic for ``quiet_s``,
  longer than the pauses inside real answers and shorter than the 8 s before
  the earliest post-answer upload;
* the **post-answer upload** is traffic that starts within ``trailing_s`` of
  the answer's end; it belongs to its own request's capture (``include``) or
  is cut out of it (``exclude``), never to the next request's;
* the **Echo is idle** once there has been no traffic for ``idle_s``.

Every duration here is in real seconds; the collector divides them by the
simulated lab's speed factor. Every figure is a rule of
:data:`echolab.captures.rules.RULES`, which the cut of long captures reads too. :func:`measure` reads a capture of the live
interface and says what it would use (``echolab doctor``).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from echolab.captures.reader import Packet, read_packets
from echolab.captures.rules import RULES

TRAILING_CHOICES = ("include", "exclude")

#: A real Echo request as public gateway captures show it (docs/simulation.md) (the middle of each range): the
#: utterance upload (70 to 80 KB), the answer (10 to 90 KB) and the request's length (5 to 9 s),
#: the post-answer upload excluded. The parametric simulation is compared with these.
REAL_REQUEST = {"bytes_up": 75_000, "bytes_down": 50_000, "duration_s": 7.0}


def is_traffic(payload_len: int, keepalive_bytes: int = RULES.keepalive_payload_bytes) -> bool:
    """More TCP payload than a keep-alive's (:meth:`~echolab.captures.rules.TrafficRules.is_traffic`)."""
    return RULES.is_traffic(payload_len, keepalive_bytes)


@dataclass(frozen=True)
class Burst:
    """Traffic of the Echo with no pause of ``quiet_s`` or more inside."""

    start: float
    end: float
    bytes_up: int
    bytes_down: int
    longest_pause_s: float


def bursts(packets: Iterable[Packet], device_ip: str, *, quiet_s: float = RULES.answer_quiet_s,
           keepalive_bytes: int = RULES.keepalive_payload_bytes) -> list[Burst]:
    """Cut the Echo's traffic into bursts separated by at least *quiet_s* without traffic."""
    out: list[Burst] = []
    cur: list[float] | None = None  # start, end, up, down, longest pause
    for p in packets:
        if device_ip not in (p.src, p.dst) or not is_traffic(p.payload_len, keepalive_bytes):
            continue
        up = p.src == device_ip
        if cur is not None and p.ts - cur[1] >= quiet_s:
            out.append(Burst(cur[0], cur[1], int(cur[2]), int(cur[3]), cur[4]))
            cur = None
        if cur is None:
            cur = [p.ts, p.ts, 0, 0, 0.0]
        cur[4] = max(cur[4], p.ts - cur[1])
        cur[1] = p.ts
        cur[2 if up else 3] += p.payload_len
    if cur is not None:
        out.append(Burst(cur[0], cur[1], int(cur[2]), int(cur[3]), cur[4]))
    return out


@dataclass(frozen=True)
class Measured:
    """What :func:`measure` saw on the live interface, and the settings it would use."""

    packets: int
    keepalives: int
    keepalive_max_bytes: int | None
    keepalive_interval_s: float | None
    longest_pause_s: float | None
    keepalive_bytes: int
    quiet_s: float
    idle_s: float

    def describe(self) -> str:
        seen = (f"keep-alives up to {self.keepalive_max_bytes} bytes"
                + (f" every {self.keepalive_interval_s:.0f} s" if self.keepalive_interval_s else "")
                if self.keepalives else "no keep-alive")
        pause = (f"; longest pause inside traffic {self.longest_pause_s:.1f} s"
                 if self.longest_pause_s is not None else "")
        return (f"{seen}{pause}; would use --keepalive-bytes {self.keepalive_bytes} --quiet {self.quiet_s:g} "
                f"--idle-gap {self.idle_s:g}")


def measure(path: Path | str, device_ip: str) -> Measured:
    """Keep-alive size and spacing, and the pauses inside traffic, of the Echo in the capture at *path*.

    The settings it proposes are the defaults, raised when the Echo's
    keep-alives are larger (up to the rules' ceiling: anything bigger is
    traffic) or its traffic pauses longer than the defaults allow.
    """
    packets = [p for p in read_packets(path) if device_ip in (p.src, p.dst)]
    small = [p for p in packets if 0 < p.payload_len <= RULES.keepalive_ceiling_payload_bytes]
    ka_max = max((p.payload_len for p in small), default=None)
    sent = [p.ts for p in small if p.src == device_ip]
    gaps = [b - a for a, b in zip(sent, sent[1:]) if b - a > RULES.keepalive_spacing_min_s]
    keepalive_bytes = max(RULES.keepalive_payload_bytes, (ka_max or 0) + RULES.keepalive_margin_bytes)
    pauses = [b.longest_pause_s for b in bursts(packets, device_ip, quiet_s=RULES.answer_quiet_s,
                                                   keepalive_bytes=keepalive_bytes)]
    longest = max(pauses, default=None)
    quiet = RULES.answer_quiet_s
    if longest is not None:
        quiet = max(quiet, round(RULES.answer_quiet_pause_factor * longest, 1))
    return Measured(len(packets), len(small), ka_max, statistics.median(gaps) if gaps else None, longest,
                    keepalive_bytes, quiet, max(RULES.idle_s, quiet))
