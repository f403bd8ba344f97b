"""The tracer's fast path for established-connection ACKs against its full algorithm.

:class:`echolab.analysis.features.tcptrace.Tracer` sends most packets through a shortened copy
of tcptrace's per-packet algorithm. It must leave exactly the state the full
algorithm leaves, so every test here traces the same packets both ways and
compares every field of every connection, including the segment database that
decides what later counts as retransmitted or out of order.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from echolab.captures.reader import ReadStats, iter_tcp
from echolab.analysis.features.tcptrace import Direction, Tracer
from pcaps import Scenario, loss_rules, make_capture, netns_available, synthetic_session, tcp_packet, write_pcap
from test_tcptrace_oracle import random_trace


def _space(d: Direction) -> list[Any]:
    return [None if q is None else [list(s) for s in q.segs] for q in d.space.quads]


def snapshot(path: Path, fast: bool) -> tuple[list[Any], int]:
    """Every field of every connection after tracing *path*; and how many packets took the fast path."""
    stats = ReadStats()
    tracer = Tracer(fast=fast)
    taken = 0
    full = tracer._add_full

    def counting_full(pkt: tuple, entry: Any) -> None:
        nonlocal taken
        taken -= 1
        full(pkt, entry)

    tracer._add_full = counting_full  # type: ignore[method-assign]
    packets = 0
    for pkt in iter_tcp(path, stats):
        tracer.add(pkt)
        packets += 1
    out = []
    for conn in tracer.finish(stats.last_ts_us):
        dirs = [[getattr(d, n) for n in Direction.__slots__ if n != "space"] + [_space(d)] for d in (conn.a2b, conn.b2a)]
        out.append([conn.number, conn.a_addr, conn.a_port, conn.b_addr, conn.b_port, conn.first_time,
                    conn.last_time, conn.packets, dirs])
    return out, packets + taken


def established_trace(seed: int, path: Path) -> Path:
    """Mostly established-connection traffic: in-order data, pure ACKs, retransmissions, holes, zero windows."""
    rng = random.Random(seed)
    c, s = "10.0.0.1", "10.0.0.2"
    seqs = {c: rng.choice([100, 2**30 - 3000, 2**32 - 4000]), s: rng.choice([7, 2**31 - 2000, 2**32 - 2000])}
    ts = b"\x01\x01\x08\x0a" + b"\x00" * 8
    opts = rng.choice([b"\x02\x04\x05\xb4\x01\x03\x03\x07", b"\x02\x04\x05\xb4"])
    frames = [(1.0, tcp_packet(c, s, 40000, 443, seq=seqs[c] - 1, flags="S", win=500, options=opts)),
              (1.001, tcp_packet(s, c, 443, 40000, seq=seqs[s] - 1, ack=seqs[c], flags="SA", win=800, options=opts))]
    t = 1.002
    for _ in range(rng.randint(50, 300)):
        src = s if rng.random() < 0.6 else c
        dst = c if src == s else s
        payload = rng.choice([0, 0, 1448, 1448, 700, 1])
        seq = seqs[src]
        r = rng.random()
        if r < 0.05:
            seq = (seq - rng.choice([1448, 700, 1])) % 2**32  # retransmission / overlap
        elif r < 0.08:
            seq = (seq + 1448) % 2**32  # hole
        win = rng.choice([0, 300, 300, 1000, 65535]) if rng.random() < 0.3 else 512
        frames.append((t, tcp_packet(src, dst, 40000 if src == c else 443, 443 if src == c else 40000, seq=seq,
                                     ack=(seqs[dst] - rng.choice([0, 0, 0, 1448])) % 2**32,
                                     flags=rng.choice(["A", "A", "PA"]), win=win, payload=payload,
                                     options=ts if rng.random() < 0.8 else b"", ip_id=rng.choice([0, 1, 2]))))
        seqs[src] = max(seqs[src], seq + payload) % 2**32 if seq >= seqs[src] else seqs[src]
        t += rng.choice([0.0001, 0.002, 0.3])
    return write_pcap(path, frames)


@pytest.mark.parametrize("seed", range(60))
def test_fast_path_equals_full_algorithm_on_random_traces(tmp_path: Path, seed: int) -> None:
    path = random_trace(seed, tmp_path / "r.pcap")
    fast, _ = snapshot(path, True)
    full, _ = snapshot(path, False)
    assert fast == full


@pytest.mark.parametrize("seed", range(40))
def test_fast_path_equals_full_algorithm_on_established_traffic(tmp_path: Path, seed: int) -> None:
    path = established_trace(seed, tmp_path / "e.pcap")
    fast, taken = snapshot(path, True)
    full, none = snapshot(path, False)
    assert fast == full
    assert none == 0 and taken > 30  # the fast path was exercised


def test_fast_path_equals_full_algorithm_on_sessions(tmp_path: Path) -> None:
    for i, syn in enumerate((True, False)):
        path = synthetic_session(tmp_path / f"s{i}.pcap", sizes=[1448, 1448, 300, 1448] * 20, gap_s=0.003,
                                 window=4000, syn=syn, extra_server="52.94.9.9")
        fast, taken = snapshot(path, True)
        assert fast == snapshot(path, False)[0]
        assert taken > 40


@pytest.mark.netns
def test_fast_path_equals_full_algorithm_on_real_stacks(tmp_path: Path) -> None:
    if not netns_available():
        pytest.skip("needs root, ip and tcpdump to make captures in a network namespace")
    path = make_capture(tmp_path / "loss.pcap", Scenario(replies=[150000, 40000]), nft=loss_rules(5001))
    fast, taken = snapshot(path, True)
    assert fast == snapshot(path, False)[0]
    assert taken > 50
