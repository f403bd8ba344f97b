"""Synthetic captures: the simulated lab's traffic written straight to pcap.

Where network namespaces cannot be made (no root), :func:`write_capture`
draws a request's response from the same distributions as the live lab
(:func:`echolab.collector.sim.model.draw_plan`) and writes the packets the gateway
would have seen: the long-lived voice connection without its handshake
(mid-connection sequence numbers, TCP timestamps), TLS 1.3 records split into
MSS-sized segments with delayed ACKs, and for music a new connection to the
music address with its handshake, TLS handshake, paced stream and FIN.
Windows are the raw values the live lab advertised (params.toml [synthetic]).

Such captures are cataloged with ``synthetic=True`` and backend "synthetic".
They carry no real stack's behaviour (no congestion control, no loss): a
model of a model, for demos and pipeline tests only.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dpkt
import numpy as np

from echolab.collector.sim import protocol as p
from echolab.collector.sim.model import ResponsePlan, draw_plan, paced_records, upload_chunks, upload_s
from echolab.collector.sim.params import SimParams, load_params
from echolab.collector.sim.topology import Topology

TLS_OVERHEAD = p.TLS_RECORD_OVERHEAD  # TLS 1.3 AES-GCM record: 5-byte header + content type + 16-byte tag
TS_OPTION_LEN = 12  # NOP NOP timestamp
REPORT_RECORD = 500  # bytes a record of the report after an answer carries
ECHO_MAC = b"\x02\xec\x40\x00\x00\x02"
GW_MAC = b"\x02\xec\x40\x00\x00\x01"


@dataclass
class SyntheticInfo:
    """What :func:`write_capture` wrote, for the catalog."""

    path: Path
    label: str
    plan: ResponsePlan
    packets: int
    first_ts: float
    last_ts: float
    device_ip: str
    server_addresses: list[str] = field(default_factory=list)
    synthetic: bool = True
    backend: str = "synthetic"


class _Conn:
    """One TCP connection seen at the gateway.

    Packets are queued as events and numbered only when the whole exchange is
    laid out in time order (:func:`_assemble`), so every packet carries the
    sender's next sequence number and acknowledges all the peer sent before it.
    """

    def __init__(self, out: list, rng: np.random.Generator, echo: str, server: str,
                 eport: int, sport: int, echo_win: int, server_win: int, sp: Any) -> None:
        self.out, self.rng, self.sp = out, rng, sp
        self.addr = {True: (socket.inet_aton(echo), eport), False: (socket.inet_aton(server), sport)}
        self.seq = {True: int(rng.integers(1, 2**32 - 1)), False: int(rng.integers(1, 2**32 - 1))}
        self.win = {True: echo_win, False: server_win}
        self.ts = {True: int(rng.integers(1, 2**31)), False: int(rng.integers(1, 2**31))}
        self.mss = int(sp["mss"]) - TS_OPTION_LEN
        self.ip_id = int(rng.integers(0, 65535))
        self.ends: dict[int, int] = {}  # queued packet -> sender's next seq after it
        self.resent: dict[int, int] = {}  # queued retransmission -> the packet it sends again
        self.last_ack: dict[bool, int] = {}

    def tsopt(self, from_echo: bool, t: float, *, syn: bool = False) -> bytes:
        val = (self.ts[from_echo] + int(t * 1000)) & 0xFFFFFFFF
        ecr = 0 if syn and from_echo else (self.ts[not from_echo] + int(t * 1000)) & 0xFFFFFFFF
        return b"\x01\x01\x08\x0a" + struct.pack("!II", val, ecr)

    def packet(self, t: float, from_echo: bool, flags: int, payload: bytes = b"", opts: bytes | None = None,
               seq_advance: int | None = None, win: int | None = None, acks: int | None = None) -> int:
        """Queue a packet; *acks* is the queued packet a pure ACK answers. Returns its index."""
        advance = len(payload) if seq_advance is None else seq_advance
        index = len(self.out)
        self.out.append((t, index, self, from_echo, flags, payload, opts, advance, win, acks))
        return index

    def retransmit(self, t: float, from_echo: bool, of: int) -> None:
        """Queue a second copy of data packet *of* (lost past the gateway, so the capture holds both)."""
        _t, _i, _c, _f, flags, payload, _o, _a, _w, _k = self.out[of]
        self.resent[self.packet(t, from_echo, flags, payload, seq_advance=0)] = of

    def build(self, t: float, index: int, from_echo: bool, flags: int, payload: bytes, opts: bytes | None,
              advance: int, win: int | None, acks: int | None) -> bytes | None:
        (src, sport), (dst, dport) = self.addr[from_echo], self.addr[not from_echo]
        ack = self.seq[not from_echo] if flags & dpkt.tcp.TH_ACK else 0
        if acks is not None:  # a pure ACK: up to the segment it answers, never backwards, never twice
            last = self.last_ack.get(from_echo)
            ack = self.ends.get(acks, ack)
            if last is not None and ((ack - last) & 0xFFFFFFFF) >= 2**31:
                ack = last
            if ack == last:
                return None
        if flags & dpkt.tcp.TH_ACK:
            self.last_ack[from_echo] = ack
        seq = self.seq[from_echo]
        if index in self.resent:  # a retransmission: the original's sequence number
            seq = (self.ends[self.resent[index]] - len(payload)) & 0xFFFFFFFF
        tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack,
                           flags=flags, win=self.win[from_echo] if win is None else win,
                           opts=self.tsopt(from_echo, t) if opts is None else opts, data=payload)
        tcp.off = (20 + len(tcp.opts)) // 4
        self.seq[from_echo] = (self.seq[from_echo] + advance) & 0xFFFFFFFF
        self.ends[index] = self.seq[from_echo]
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        ip = dpkt.ip.IP(src=src, dst=dst, p=dpkt.ip.IP_PROTO_TCP, ttl=64 if from_echo else 63,
                        id=self.ip_id, df=1, data=tcp)
        ip.len = 20 + len(bytes(tcp))
        eth = dpkt.ethernet.Ethernet(src=ECHO_MAC if from_echo else GW_MAC, dst=GW_MAC if from_echo else ECHO_MAC,
                                     type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
        return bytes(eth)


def _assemble(events: list) -> list[tuple[float, bytes]]:
    """Number the queued packets in time order and build their bytes."""
    events.sort(key=lambda e: (e[0], e[1]))
    frames = ((e[0], e[2].build(e[0], e[1], *e[3:])) for e in events)
    return [(t, frame) for t, frame in frames if frame is not None]


class _Sender:
    """Sends TLS records and handshakes over a :class:`_Conn`."""

    def __init__(self, conn: _Conn) -> None:
        self.conn, self.sp, self.rng, self.mss = conn, conn.sp, conn.rng, conn.mss

    def packet(self, *args: Any, **kwargs: Any) -> int:
        return self.conn.packet(*args, **kwargs)

    def record(self, t: float, from_echo: bool, size: int) -> float:
        """Send one TLS record carrying *size* bytes of frames; returns when its last segment left."""
        data = np.random.default_rng(int(self.rng.integers(2**32))).bytes(size + TLS_OVERHEAD)
        data = b"\x17\x03\x03" + struct.pack("!H", size + TLS_OVERHEAD - 5) + data[5:]
        return self.send(t, from_echo, data)

    def records(self, t: float, from_echo: bool, sizes: list[int], coalesce: bool) -> float:
        """Send records of *sizes* bytes each (a household's framing, see households.py): in one write whose
        segments carry several records (*coalesce*), or one write, so one segment, a record."""
        if not coalesce:
            for n in sizes:
                t = self.record(t, from_echo, n)
            return t
        data = b""
        for n in sizes:
            body = np.random.default_rng(int(self.rng.integers(2**32))).bytes(n + TLS_OVERHEAD - 5)
            data += b"\x17\x03\x03" + struct.pack("!H", n + TLS_OVERHEAD - 5) + body
        return self.send(t, from_echo, data)

    def send(self, t: float, from_echo: bool, data: bytes) -> float:
        # The gateway sees the Echo's packets at once and the server's ACKs one
        # round trip later (and vice versa for the cloud's data). A household
        # profile may add jitter and coalesce segments at the capture point
        # (offloads: the capture shows one packet of several segments).
        rtt, gap = self.sp["rtt_s"], self.sp["segment_gap_s"]
        jitter = float(self.sp.get("jitter_s", 0.0))
        loss = float(self.sp.get("loss", 0.0))
        size = self.mss * int(self.sp.get("capture_coalesce", 1))
        segments = [data[i:i + size] for i in range(0, len(data), size)]
        for i, seg in enumerate(segments):
            last = i == len(segments) - 1
            if jitter:
                t += float(self.rng.exponential(jitter))
            sent = self.packet(t, from_echo, dpkt.tcp.TH_ACK | (dpkt.tcp.TH_PUSH if last else 0), seg)
            if loss and self.rng.random() < loss:  # lost past the gateway: sent again after a timeout
                self.conn.retransmit(t + max(0.2, 2 * rtt), from_echo, sent)
            if i % 2 == 1 or last:
                delay = rtt if i % 2 == 1 else rtt + self.sp["delack_s"]
                self.packet(t + delay, not from_echo, dpkt.tcp.TH_ACK, acks=sent)
            t += gap
        return t

    def handshake(self, t: float, echo_wscale: int, server_wscale: int) -> float:
        mss = struct.pack("!BBH", 2, 4, int(self.sp["mss"]))
        syn_opts = mss + b"\x04\x02" + self.conn.tsopt(True, t, syn=True)[2:] + b"\x01\x03\x03" + bytes([echo_wscale])
        # Windows in SYNs are never scaled: the Echo offers 64240 as Linux does.
        self.packet(t, True, dpkt.tcp.TH_SYN, opts=syn_opts, seq_advance=1, win=64240)
        t += self.sp["rtt_s"]
        synack_opts = mss + b"\x04\x02" + self.conn.tsopt(False, t)[2:] + b"\x01\x03\x03" + bytes([server_wscale])
        self.packet(t, False, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, opts=synack_opts, seq_advance=1)
        self.packet(t + 0.00005, True, dpkt.tcp.TH_ACK)
        return t + 0.0001

    def close(self, t: float, server_first: bool = True) -> float:
        fin = dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK
        self.packet(t, not server_first, fin, seq_advance=1)
        t += self.sp["rtt_s"]
        self.packet(t, server_first, fin, seq_advance=1)
        self.packet(t + self.sp["rtt_s"], not server_first, dpkt.tcp.TH_ACK)
        return t + self.sp["rtt_s"]


def _frame_size(size: int) -> int:
    return size + p.HEADER.size


def _music(out: list, rng: np.random.Generator, params: SimParams, t: float, echo_ip: str, music_ip: str,
           plan: ResponsePlan, speed: float) -> float:
    sp = params.synthetic
    conn = _Sender(_Conn(out, rng, echo_ip, music_ip, int(rng.integers(32768, 60999)), 443,
                         int(sp["echo_music_window"]), int(sp["music_server_window"]), sp))
    t = conn.handshake(t, int(sp["echo_wscale"]), int(sp["music_server_wscale"]))
    # TLS 1.3 handshake (sizes of the live lab's self-signed P-256 certificate).
    t = conn.send(t, True, b"\x16\x03\x01" + struct.pack("!H", 512) + rng.bytes(512))
    t = conn.send(t + sp["rtt_s"], False, b"\x16\x03\x03" + struct.pack("!H", 90) + rng.bytes(90)
                  + b"\x14\x03\x03\x00\x01\x01" + b"\x17\x03\x03" + struct.pack("!H", 820) + rng.bytes(820))
    t = conn.send(t + sp["rtt_s"], True, b"\x14\x03\x03\x00\x01\x01" + b"\x17\x03\x03\x00\x35" + rng.bytes(53))
    t = conn.record(t, True, _frame_size(int(params.music["request_bytes"])))
    t = conn.record(t + sp["rtt_s"], False, 250)
    t = conn.record(t, False, 250)
    start = t
    for offset, size in paced_records(plan.music_bytes, params.music):
        t = max(t, start + offset / speed)
        t = conn.record(t, False, _frame_size(size))
    return conn.close(t + sp["rtt_s"] + sp["delack_s"], server_first=True)


def framed_upload(chunks: list[tuple[float, int]], sp: Any, rng: np.random.Generator) -> list[tuple[float, list[int]]]:
    """The utterance's records as a household's Echo cuts them: (offset, sizes of the records written then).

    The Echo's audio is a byte stream cut into records independently of the
    100 ms chunks it arrives in: a record leaves when it is full, the end of
    speech flushes the rest. A record carries ``upload_record_bytes`` with
    probability ``upload_record_share``, otherwise ``upload_other_record_bytes``
    (+-25%); sizes are the bytes a record carries (its header's length less
    the record's expansion).
    """
    usual = int(sp["upload_record_bytes"])
    share = float(sp.get("upload_record_share", 1.0))
    other = int(sp.get("upload_other_record_bytes", 0)) or usual

    def draw() -> int:
        if share >= 1.0 or rng.random() < share:
            return usual
        return int(rng.integers(other * 3 // 4, other * 5 // 4 + 1))

    out: list[tuple[float, list[int]]] = []
    pending, wanted = 0, draw()
    for offset, size in chunks:
        pending += size
        sizes = []
        while pending >= wanted:
            sizes.append(wanted)
            pending -= wanted
            wanted = draw()
        out.append((offset, sizes))
    if pending and out:
        out[-1][1].append(pending)
    return [(offset, sizes) for offset, sizes in out if sizes]


def generate(label: str, duration_s: float, rng: np.random.Generator, params: SimParams, *,
             start_ts: float = 1_700_000_000.0, speed: float = 1.0, topo: Topology | None = None,
             ) -> tuple[list[tuple[float, bytes]], ResponsePlan]:
    """Frames (timestamp, Ethernet bytes) of one request/response, in time order."""
    topo = topo or Topology()
    sp = params.synthetic
    out: list = []
    plan = draw_plan(label, params, rng)
    voice = _Sender(_Conn(out, rng, topo.echo_ip, topo.voice_ip, int(rng.integers(32768, 60999)), 443,
                          int(sp["echo_window"]), int(sp["voice_server_window"]), sp))
    t0 = start_ts
    t = voice.record(t0, True, _frame_size(int(params.upload["header_bytes"])))
    chunks = upload_chunks(duration_s, params)
    framed = bool(sp.get("upload_record_bytes", 0))  # a household's framing; otherwise one record a chunk
    coalesce = bool(sp.get("upload_coalesce", 1))
    if framed:
        for offset, sizes in framed_upload(chunks, sp, rng):
            t = voice.records(max(t, t0 + offset / speed), True, sizes, coalesce)
    else:
        for offset, size in chunks:
            t = voice.record(max(t, t0 + offset / speed), True, _frame_size(size))
    # Control records (a household's lengths, header length fields): the end of speech, the cloud's acknowledgement.
    end_of_speech = int(sp.get("control_up_bytes", 0)) or _frame_size(0)
    ack = int(sp.get("control_down_bytes", 0)) or _frame_size(int(params.keepalive["pong_bytes"]))
    t = voice.record(max(t, t0 + upload_s(duration_s, params) / speed), True, end_of_speech)
    t += sp["rtt_s"] + plan.think_s / speed
    speech_start = t
    for offset, size in paced_records(plan.speech_bytes, params.speech):
        t = voice.record(max(t, speech_start + offset / speed), False, _frame_size(size))
    t = voice.record(t, False, _frame_size(int(params.speech["directive_bytes"])))
    play_end = speech_start + plan.speech_s / speed
    if plan.has_music:
        stream_start = t + sp["rtt_s"]
        t = _music(out, rng, params, stream_start, topo.echo_ip, topo.music_ip, plan, speed)
        play_end = max(play_end, stream_start + plan.music_s / speed)
    t = voice.record(max(t, play_end), True, _frame_size(int(params.speech["event_bytes"])))
    t = voice.record(t + sp["rtt_s"], False, ack)
    report_prob = float(sp.get("report_prob", 0.0))
    if report_prob and rng.random() < report_prob:  # the report some Echos upload 8 to 15 s after an answer
        # REAL-ECHO-TRAFFIC.md: about 40 packets, ~14.5 KB up and ~1.2 KB down, in well under a second:
        # records of about 500 bytes, one a segment (29 segments up, their ACKs, one answer).
        t += float(rng.uniform(8.0, 15.0)) / speed
        report = int(sp.get("report_bytes", 14500))
        t = voice.records(t, True, [min(REPORT_RECORD, report - i) for i in range(0, report, REPORT_RECORD)], False)
        voice.record(t + sp["rtt_s"], False, _frame_size(1200))
    return _assemble(out), plan


def write_capture(path: Path | str, label: str, duration_s: float, rng: np.random.Generator,
                  params: SimParams | None = None, *, start_ts: float = 1_700_000_000.0, speed: float = 1.0,
                  topo: Topology | None = None) -> SyntheticInfo:
    """Write one synthetic request/response capture (pcap, Ethernet) to *path*.

    *duration_s* is the spoken prompt's length (it sets the upload size);
    *rng* draws the response, so a seeded generator gives the same file.
    """
    params = params or load_params()
    topo = topo or Topology()
    frames, plan = generate(label, duration_s, rng, params, start_ts=start_ts, speed=speed, topo=topo)
    path = Path(path)
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB, nano=False)
        for ts, frame in frames:
            writer.writepkt(frame, ts=ts)
    servers = [topo.voice_ip] + ([topo.music_ip] if plan.has_music else [])
    return SyntheticInfo(path, label, plan, len(frames), frames[0][0], frames[-1][0], topo.echo_ip, servers)
