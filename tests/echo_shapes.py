"""Crafted long captures shaped like a real Echo's, for the automatic cut (--split auto).

Not real captures: hand-made TCP frames (tests/pcaps.py's writer) laid out as
/work/shared/docs/REAL-ECHO-TRAFFIC.md describes real Echos at a home gateway,
one file per voice command asked several times:

* one long-lived TLS connection to the voice service, caught mid-stream (no SYN);
* keep-alives on it every 20 to 30 s when idle (3 packets, under 100 bytes each);
* requests 30 to 50 s apart (start to start): the utterance uploaded (70 to
  80 kB up in full-size segments) while the answer comes back (10 to 90 kB
  down), 5 to 9 s in all; an answer can pause for 2 to 3 s and go on;
* 8 to 15 s after an answer, often, the Echo's own upload burst: about 40
  packets, ~14.5 kB up and ~1.2 kB down, in well under a second;
* sometimes a stray burst (~0.3 s, ~20 packets, ~7 kB up) before the first request.

:func:`echo_long_capture` writes one such file and returns where each part
is, so a test can check a cut against the truth. ``bench/bench_autosplit.py``
uses it for a larger corpus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pcaps import tcp_packet, write_pcap

ECHO_IP = "192.168.1.50"
VOICE_IP = "52.94.233.10"
ECHO_PORT, VOICE_PORT = 50412, 443
MSS = 1448


@dataclass
class EchoCapture:
    path: Path
    requests: list[tuple[float, float]] = field(default_factory=list)  # first and last packet of each
    trailing: list[tuple[int, float, float]] = field(default_factory=list)  # (request index, first, last)
    strays: list[tuple[float, float]] = field(default_factory=list)
    keepalives: list[float] = field(default_factory=list)
    pauses: list[tuple[int, float]] = field(default_factory=list)  # (request index, seconds)


class _Conn:
    """The Echo's long-lived connection, already established when the capture starts."""

    def __init__(self, rng: np.random.Generator):
        self.frames: list[tuple[float, bytes]] = []
        self.seq_up = int(rng.integers(1, 2**31))
        self.seq_down = int(rng.integers(1, 2**31))

    def up(self, t: float, payload: int) -> None:
        self.frames.append((t, tcp_packet(ECHO_IP, VOICE_IP, ECHO_PORT, VOICE_PORT, seq=self.seq_up,
                                          ack=self.seq_down, flags="PA" if payload else "A", payload=payload,
                                          win=2000)))
        self.seq_up = (self.seq_up + payload) % 2**32

    def down(self, t: float, payload: int) -> None:
        self.frames.append((t, tcp_packet(VOICE_IP, ECHO_IP, VOICE_PORT, ECHO_PORT, seq=self.seq_down,
                                          ack=self.seq_up, flags="PA" if payload else "A", payload=payload,
                                          win=3000)))
        self.seq_down = (self.seq_down + payload) % 2**32

    def keepalive(self, t: float) -> None:
        self.up(t, 62)
        self.down(t + 0.03, 62)
        self.up(t + 0.07, 0)


def _request(conn: _Conn, rng: np.random.Generator, t0: float, *, pause: float = 0.0) -> tuple[float, float]:
    """One request from *t0*: the upload, the answer (with an optional pause); its first and last packets' times."""
    up_bytes = int(rng.uniform(70_000, 80_000))
    down_bytes = int(rng.uniform(10_000, 90_000))
    up_s = rng.uniform(2.0, 3.5)
    n_up = -(-up_bytes // MSS)
    t = first = t0
    for k in range(n_up):
        t = t0 + up_s * k / n_up + (rng.uniform(0, 0.004) if k else 0.0)
        conn.up(t, min(MSS, up_bytes - k * MSS))
        if k % 2:
            conn.down(t + 0.02, 0)
    # the answer starts before the upload ends, and takes 2 to 4 s more
    start = t0 + up_s * rng.uniform(0.7, 0.95)
    answer_s = rng.uniform(2.0, 4.0)
    n_down = -(-down_bytes // MSS)
    half = n_down // 2
    last = t
    for k in range(n_down):
        when = start + answer_s * k / n_down + rng.uniform(0, 0.004) + (pause if k >= half else 0.0)
        conn.down(when, min(MSS, down_bytes - k * MSS))
        if k % 2:
            conn.up(when + 0.015, 0)
        last = max(last, when + 0.015)
    conn.up(last + 0.05, 0)
    return first, last + 0.05


def _burst(conn: _Conn, rng: np.random.Generator, t0: float, *, up_bytes: int, packets: int, down_bytes: int,
           span: float) -> float:
    """A short burst: *packets* packets in *span* seconds, about half of them up."""
    n_up = packets // 2
    n_down = packets - n_up
    for k in range(packets):
        t = t0 + span * k / max(packets - 1, 1)
        if k % 2 == 0 and k // 2 < n_up:
            conn.up(t, max(1, up_bytes // n_up - 40))
        else:
            conn.down(t, max(0, down_bytes // n_down - 40))
    return t0 + span


def echo_long_capture(path: Path, rng: np.random.Generator, *, requests: int = 5, trailing: float = 0.8,
                      stray: float = 0.5, pause: float = 0.3, start: float = 1_700_000_000.0) -> EchoCapture:
    """Write one Echo-shaped long capture of *requests* requests; the chances of each pattern as given.

    *trailing*: chance of a post-answer upload burst after each request;
    *stray*: chance of a stray burst before the first request; *pause*: chance
    of a 2 to 3 s pause inside each answer. Seeded by *rng*, so a test or a
    bench gets the same file each time.
    """
    conn = _Conn(rng)
    out = EchoCapture(Path(path))
    busy: list[tuple[float, float]] = []  # spans keep-alives stay out of
    t = start + rng.uniform(10, 20)
    if rng.random() < stray:
        s0 = start + rng.uniform(2, max(3.0, t - start - 4))
        end = _burst(conn, rng, s0, up_bytes=int(rng.uniform(6500, 7500)), packets=int(rng.integers(18, 23)),
                     down_bytes=600, span=rng.uniform(0.2, 0.4))
        out.strays.append((s0, end))
        busy.append((s0 - 1, end + 1))
    for i in range(requests):
        p = rng.uniform(2.0, 3.0) if rng.random() < pause else 0.0
        first, last = _request(conn, rng, t, pause=p)
        out.requests.append((first, last))
        if p:
            out.pauses.append((i, p))
        busy.append((t - 1, last + 1))
        end = last
        if rng.random() < trailing:
            b0 = last + rng.uniform(8, 15)
            end = _burst(conn, rng, b0, up_bytes=int(rng.uniform(14000, 15000)), packets=int(rng.integers(38, 43)),
                         down_bytes=1200, span=rng.uniform(0.3, 0.6))
            out.trailing.append((i, b0, end))
            busy.append((b0 - 1, end + 1))
        t = max(t + rng.uniform(30, 50), end + 3)
    finish = max(end, out.requests[-1][1]) + rng.uniform(10, 20)
    k = start + rng.uniform(0, 5)
    while k < finish:
        if not any(a <= k <= b for a, b in busy):
            conn.keepalive(k)
            out.keepalives.append(k)
        k += rng.uniform(20, 30)
    conn.frames.sort(key=lambda f: f[0])
    write_pcap(out.path, conn.frames)
    return out


def cut_is_right(found: list[tuple[float, float]], truth: EchoCapture) -> bool:
    """Each request (with its trailing burst) inside exactly one piece, one per piece, no stray in any."""
    if len(found) != len(truth.requests):
        return False
    ends = {i: b for i, _a, b in truth.trailing}
    for i, ((a, b), (r0, r1)) in enumerate(zip(found, truth.requests)):
        if not (a <= r0 + 1e-6 and max(r1, ends.get(i, r1)) - 1e-6 <= b):
            return False
    return not any(a <= s0 <= b for s0, _s1 in truth.strays for a, b in found)
