"""The native tcptrace statistics against the real ``tcptrace -l -n --csv``.

Captures are made by real Linux TCP stacks in network namespaces (tests/pcaps.py):
several connections, concurrency, loss after and before the capture point
(retransmissions, SACKs, out-of-order), one direction only, a mid-stream start,
a slow reader with a small receive buffer (zero windows), no window scaling /
SACK / timestamps, RST close, 4-tuple re-use, idle gaps, snaplen truncation,
nanosecond pcapng. Every column of every connection must equal the binary's
printed value (times and averages at the binary's printed precision).
"""

from __future__ import annotations

import csv
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from echolab.analysis.features.tcptrace import CSV_CONNECTION_FIELDS, CSV_DIRECTION_FIELDS, trace_capture
from pcaps import (Scenario, delete_frames, loss_rules, make_capture, netns_available, retransmitted_originals,
                         tcp_packet, write_pcap)

pytestmark = pytest.mark.skipif(shutil.which("tcptrace") is None, reason="tcptrace is not installed")


def real_tcptrace(path: Path) -> list[dict[str, str]]:
    """Rows of ``tcptrace -l -n --csv`` keyed by its own column names (values stripped)."""
    out = subprocess.run(["tcptrace", "-l", "-n", "--csv", str(path)], capture_output=True, text=True,
                         check=True).stdout
    lines = [line for line in out.splitlines() if line.strip() and not line.startswith("#")]
    rows = list(csv.reader(lines))
    header = [h.strip() for h in rows[0]]
    return [dict(zip(header, (c.strip() for c in row))) for row in rows[1:]]


def mismatches(path: Path) -> list[str]:
    expected = real_tcptrace(path)
    ours = [c.csv_row() for c in trace_capture(path)]
    problems = []
    if len(expected) != len(ours):
        problems.append(f"{len(expected)} connections in tcptrace, {len(ours)} in ours")
    columns = list(CSV_CONNECTION_FIELDS) + [f"{n}_{s}" for n in CSV_DIRECTION_FIELDS for s in ("a2b", "b2a")]
    for exp, got in zip(expected, ours):
        assert set(columns) <= set(exp), "tcptrace printed other columns than the ones we know"
        for col in columns:
            if exp[col] != got[col]:
                problems.append(f"conn {exp['conn_#']} {col}: tcptrace {exp[col]!r}, ours {got[col]!r}")
    return problems


PORT = 5001
SCENARIOS: dict[str, dict] = {
    "three_conns": dict(scenario=Scenario(replies=[30000, 5000, 120000])),
    "concurrent": dict(scenario=Scenario(replies=[40000, 40000, 40000], concurrent=True, server_pause_s=0.002)),
    "loss_after_capture": dict(scenario=Scenario(replies=[150000, 80000]), nft=loss_rules(PORT)),
    "loss_before_capture": dict(scenario=Scenario(replies=[120000]), nft=loss_rules(PORT, every=11)),
    "one_direction": dict(scenario=Scenario(replies=[90000, 20000]), bpf=f"tcp src port {PORT}",
                          nft=loss_rules(PORT)),
    "device_side_only": dict(scenario=Scenario(replies=[50000], upload=5000), bpf=f"tcp dst port {PORT}"),
    "midstream": dict(scenario=Scenario(replies=[60000, 30000], concurrent=True, midstream=True)),
    "zero_window": dict(scenario=Scenario(replies=[150000], rcvbuf=2048, reader_stall_s=0.4)),
    "no_ws_sack_ts": dict(scenario=Scenario(replies=[100000]), nft=loss_rules(PORT),
                          sysctls={"net.ipv4.tcp_window_scaling": "0", "net.ipv4.tcp_sack": "0",
                                   "net.ipv4.tcp_timestamps": "0"}),
    "reset_close": dict(scenario=Scenario(replies=[20000, 8000], reset=True, upload=3000)),
    "port_reuse": dict(scenario=Scenario(replies=[10000, 12000, 9000], client_port=40404)),
    "idle_gaps": dict(scenario=Scenario(replies=[16000], chunk=2000, server_pause_s=0.04)),
    "snaplen_96": dict(scenario=Scenario(replies=[40000]), snaplen=96),
    "pcapng_nano": dict(scenario=Scenario(replies=[30000, 7000]), nano=True, fmt="pcapng"),
}


@pytest.fixture(scope="module")
def oracle_captures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not netns_available():
        pytest.skip("needs root, ip and tcpdump to make captures in a network namespace")
    folder = tmp_path_factory.mktemp("oracle")
    made = {}
    for name, spec in SCENARIOS.items():
        spec = dict(spec)
        suffix = ".pcapng" if spec.get("fmt") == "pcapng" else ".pcap"
        made[name] = make_capture(folder / f"{name}{suffix}", spec.pop("scenario"), **spec)
    # The capture point missed the first transmissions of lost segments (and one segment for good):
    # their retransmissions fill holes, which tcptrace counts as out of order.
    full = made["loss_before_capture"]
    hidden = retransmitted_originals(full, PORT)
    assert hidden, "the loss rule dropped nothing"
    made["loss_before_capture"] = delete_frames(full, folder / "loss_before_capture_cut.pcap",
                                                [*hidden, hidden[0] + 2])
    return made


@pytest.mark.netns
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_column_equals_tcptrace(oracle_captures: dict[str, Path], name: str) -> None:
    path = oracle_captures[name]
    assert path.stat().st_size < 1_000_000
    assert mismatches(path) == []


@pytest.mark.netns
def test_scenarios_exercise_what_they_claim(oracle_captures: dict[str, Path]) -> None:
    """The captures really contain the behaviour each scenario is named for (judged by tcptrace itself)."""
    def rows(name: str) -> list[dict[str, str]]:
        return real_tcptrace(oracle_captures[name])

    def total(name: str, col: str) -> int:
        return sum(int(r[f"{col}_a2b"]) + int(r[f"{col}_b2a"]) for r in rows(name) if r[f"{col}_a2b"] != "NA")

    assert len(rows("three_conns")) == 3
    assert total("loss_after_capture", "rexmt_data_pkts") > 0
    assert total("loss_after_capture", "sack_pkts_sent") > 0
    assert total("loss_before_capture", "outoforder_pkts") > 0
    assert all(r["total_packets_b2a"] == "0" for r in rows("one_direction"))
    assert all(r["SYN/FIN_pkts_sent_a2b"].startswith("0/") for r in rows("midstream"))
    assert total("zero_window", "zero_win_adv") > 0
    assert all(r["req_1323_ws/ts_a2b"] == "N/N" for r in rows("no_ws_sack_ts"))
    assert total("reset_close", "resets_sent") > 0
    assert len(rows("port_reuse")) == 3
    assert total("snaplen_96", "truncated_packets") > 0


def test_handmade_edge_cases(tmp_path: Path) -> None:
    """Hand-written segments: SYN/FIN retransmission, overlap, zero-window probe with data, URG, SACK
    blocks incl. D-SACK, one-sided window scale, IPv6, and an unclosed connection's idle tail."""
    c, s = "10.0.0.2", "10.0.0.1"
    ws = b"\x01\x03\x03\x07"  # NOP, window scale 7
    frames = [
        (1.0, tcp_packet(c, s, 40000, 443, seq=100, flags="S", win=64240, options=ws)),
        (1.1, tcp_packet(c, s, 40000, 443, seq=100, flags="S", win=64240, options=ws)),  # SYN rexmit
        (1.2, tcp_packet(s, c, 443, 40000, seq=5000, ack=101, flags="SA", win=65160, options=ws)),
        (1.3, tcp_packet(c, s, 40000, 443, seq=101, ack=5001, flags="A", win=502)),
        (1.4, tcp_packet(s, c, 443, 40000, seq=5001, ack=101, flags="PA", win=509, payload=1000)),
        (1.5, tcp_packet(s, c, 443, 40000, seq=6001, ack=101, flags="A", win=509, payload=1000)),
        (1.6, tcp_packet(s, c, 443, 40000, seq=5501, ack=101, flags="A", win=509, payload=1000)),  # overlap
        (1.7, tcp_packet(c, s, 40000, 443, seq=101, ack=6001, flags="A", win=0,
                         options=b"\x01\x01\x05\x0a" + (6001).to_bytes(4, "big") + (7001).to_bytes(4, "big"))),
        (1.8, tcp_packet(s, c, 443, 40000, seq=7001, ack=101, flags="A", win=509, payload=1)),  # probe
        (1.9, tcp_packet(c, s, 40000, 443, seq=101, ack=7001, flags="A", win=300,
                         options=b"\x01\x01\x05\x0a" + (5001).to_bytes(4, "big") + (5501).to_bytes(4, "big"))),
        (2.0, tcp_packet(s, c, 443, 40000, seq=7001, ack=101, flags="UA", win=509, payload=50, urp=10)),
        (2.1, tcp_packet(s, c, 443, 40000, seq=7051, ack=101, flags="FA", win=509)),
        (2.2, tcp_packet(s, c, 443, 40000, seq=7051, ack=101, flags="FA", win=509)),  # FIN rexmit
        (2.3, tcp_packet("2001:db8::2", "2001:db8::1", 5555, 80, seq=1, flags="S", win=1000)),
        (2.4, tcp_packet("2001:db8::1", "2001:db8::2", 80, 5555, seq=9, ack=2, flags="SA", win=2000)),
        (2.5, tcp_packet("2001:db8::2", "2001:db8::1", 5555, 80, seq=2, ack=10, flags="PA", win=1000, payload=19)),
        (2.6, tcp_packet("10.0.0.3", s, 41000, 443, seq=7, flags="S", win=1000, options=ws)),  # one-sided ws
        (2.7, tcp_packet(s, "10.0.0.3", 443, 41000, seq=70, ack=8, flags="SA", win=1000)),
        (2.8, tcp_packet("10.0.0.3", s, 41000, 443, seq=8, ack=71, flags="RA", win=0)),
        (9.9, tcp_packet(s, c, 443, 40000, seq=7052, ack=101, flags="A", win=509)),
    ]
    path = write_pcap(tmp_path / "edge.pcap", frames)
    assert mismatches(path) == []
    path96 = write_pcap(tmp_path / "edge96.pcap", frames, snaplen=70)
    assert mismatches(path96) == []


def random_trace(seed: int, path: Path) -> Path:
    """A random mix of flags, options, windows, retransmissions, holes, wraps and time steps."""
    rng = random.Random(seed)
    hosts = [("10.0.0.1", "10.0.0.2", 40000, 443), ("10.0.0.3", "10.0.0.1", 41000, 80)]
    state = {}
    frames = []
    t = 1000.0
    for i in range(rng.randint(20, 120)):
        c, s, cp, sp = rng.choice(hosts)
        fwd = rng.random() < 0.5
        src, dst, sport, dport = (c, s, cp, sp) if fwd else (s, c, sp, cp)
        key = (src, sport)
        if key not in state:
            state[key] = rng.choice([0, 100, 2**32 - 500, 2**30 - 300, rng.randrange(2**32)])
        seq = state[key]
        other = state.get((dst, dport), 0)
        flags = "A"
        r = rng.random()
        if r < 0.08: flags = "S"
        elif r < 0.14: flags = "SA"
        elif r < 0.2: flags = "FA"
        elif r < 0.23: flags = "RA"
        elif r < 0.25: flags = "R"
        elif r < 0.3: flags = "PA"
        elif r < 0.32: flags = "UA"
        elif r < 0.34: flags = ""
        payload = rng.choice([0, 0, 1, 100, 1448, 500])
        if rng.random() < 0.15:  # retransmit / overlap / jump back
            seq = (seq - rng.choice([100, 1448, 50, 1])) % 2**32
        if rng.random() < 0.05:
            seq = (seq + 3000) % 2**32  # hole
        opts = b""
        o = rng.random()
        if o < 0.15: opts = b"\x02\x04\x05\xb4\x01\x03\x03" + bytes([rng.choice([0, 7, 14])])
        elif o < 0.25: opts = b"\x01\x01\x08\x0a" + b"\x00" * 8
        elif o < 0.32:
            a = (other - 2000) % 2**32
            opts = b"\x01\x01\x05\x12" + a.to_bytes(4, "big") + ((a + 500) % 2**32).to_bytes(4, "big") + ((a+100)%2**32).to_bytes(4,"big") + ((a+900)%2**32).to_bytes(4,"big")
        elif o < 0.35: opts = b"\x04\x02\x01\x01"
        win = rng.choice([0, 0, 5, 100, 65535, 3000])
        ack = (other + rng.choice([0, 0, 1, -100, 1448])) % 2**32
        frames.append((t, tcp_packet(src, dst, sport, dport, seq=seq, ack=ack, flags=flags, win=win, payload=payload,
                                     options=opts, ip_id=rng.choice([0, 5, i]), urp=rng.choice([0, 3]))))
        state[key] = (seq + payload + (1 if "S" in flags or "F" in flags else 0)) % 2**32
        t += rng.choice([0.001, 0.01, 0.5, 0.0, 300.0 if rng.random() < 0.02 else 0.002, -0.001])
    return write_pcap(path, frames)


@pytest.mark.parametrize("seed", range(40))
def test_random_handmade_traces(tmp_path: Path, seed: int) -> None:
    assert mismatches(random_trace(seed, tmp_path / f"r{seed}.pcap")) == []
