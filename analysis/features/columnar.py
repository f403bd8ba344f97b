"""A capture's record computed over numpy columns, for captures of established traffic.

Most captures of a smart speaker start in the middle of its long-lived
connections, or with a plain handshake, and hold ACK and PSH+ACK segments with
timestamp options, maybe a FIN a side. For such a capture nearly every one of
tcptrace's per-packet branches is known in advance (no RST, no window scale
switched on late, no SACK from the server), so the statistics, the flow
meter's new bytes and round trip, and the packet sequence follow from
whole-column numpy operations over
:class:`echolab.captures.columns.TcpColumns`. What does depend on the order
of events is left to the per-packet code it must equal: when a server segment
is not new and in order (a retransmission, a hole filled late), tcptrace's
segment database (:class:`~echolab.analysis.features.tcptrace._SeqSpace`) is
fed that direction's segments and the device's ACKs in packet order; when a
segment overlaps earlier bytes, the flow meter runs packet by packet.

:func:`columnar_record` checks, on the columns, every condition under which
this is exactly what the per-packet algorithms give (tcptrace's
:class:`~echolab.analysis.features.tcptrace.Tracer` and
:class:`~echolab.captures.flow.FlowMeter`). A capture that breaks one (RST or
URG, a handshake other than SYN then SYN+ACK, a second FIN or SYN, options
other than timestamps outside a SYN except the device's SACK blocks, a
4-tuple idle past tcptrace's re-use limit, a stream that may wrap, ...) has
the statistics and the flow meter run packet by packet over the columns
instead; its packet sequence still comes from the columns.
tests/test_features_columnar.py compares both paths field by field.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any

import numpy as np

from echolab.captures.columns import TcpColumns
from echolab.captures.flow import MAX_OUTSTANDING, FlowMeter
from echolab.captures.reader import T_DST, T_SRC, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG, ReadStats
from echolab.analysis.features.tcptrace import M32, M64, REUSE_IDLE_US, TWO32, Tracer, _options, _SeqSpace

_PURE_MASK = TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK


def _in_domain(cols: TcpColumns, device: int) -> bool:
    """No packet takes a branch of tcptrace's algorithm that the columns do not follow.

    ACK on every packet but a SYN, no RST or URG, no data on a SYN, options
    only timestamps outside a SYN (the device's may add SACK blocks, which count
    only for its own direction), a time on every packet, two different addresses.
    """
    syn = (cols.flags & TCP_SYN) != 0
    if not (((cols.flags & (TCP_RST | TCP_URG)) == 0).all() and (((cols.flags & TCP_ACK) != 0) | syn).all()
            and (cols.data_len >= 0).all() and (cols.data_len[syn] == 0).all() and (cols.ts > 0).all()
            and (cols.src != cols.dst).all()):
        return False
    other = np.flatnonzero((cols.opt_len > 0) & ~cols.ts_only & ~syn)
    if not len(other):
        return True
    if (cols.src[other] != device).any():
        return False
    blob = cols.options
    return all(set(_option_kinds(blob[a:a + n])) <= {1, 5, 8}  # NOP, SACK, timestamps
               for a, n in zip(cols.opt_at[other].tolist(), cols.opt_len[other].tolist()))


def _option_kinds(options: bytes) -> list[int]:
    """The kinds of TCP options as tcptrace's option walk (``tcptrace._options``) meets them; -1 for a cut one."""
    kinds, p, n = [], 0, len(options)
    while p < n:
        kind = options[p]
        if kind <= 1:
            kinds.append(kind)
            p += 1
            continue
        if p + 1 >= n or options[p + 1] == 0 or p + options[p + 1] > n:
            kinds.append(-1)
            break
        kinds.append(kind)
        p += options[p + 1]
    return kinds


def _connections(cols: TcpColumns) -> list[np.ndarray] | None:
    """Packet indices of each connection (unordered pair of endpoints), in order of first packet.

    None when a connection idles longer than tcptrace's re-use limit (it would start a new one).
    """
    a = (cols.src.astype(np.int64) << 16) | cols.sport
    b = (cols.dst.astype(np.int64) << 16) | cols.dport
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    if (lo == lo[0]).all() and (hi == hi[0]).all():  # one connection, the common capture
        if len(a) > 1 and ((cols.ts[1:] - cols.ts[:-1]) > REUSE_IDLE_US).any():
            return None
        return [np.arange(len(a))]
    _, ilo = np.unique(lo, return_inverse=True)
    _, ihi = np.unique(hi, return_inverse=True)
    key = ilo.astype(np.int64) * (int(ihi.max()) + 1) + ihi
    _, first, conn = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    out = []
    for c in order.tolist():
        idx = np.flatnonzero(conn == c)
        ts = cols.ts[idx]
        if len(idx) > 1 and ((ts[1:] - ts[:-1]) > REUSE_IDLE_US).any():
            return None
        out.append(idx)
    return out


@dataclass
class _Handshake:
    """What the SYN options of one side of a connection set (tcptrace's fields of the same names)."""

    syn: bool = False
    seq: int = 0
    mss: int = 0
    ws: int = -1
    ts: bool = False
    sack_req: bool = False


def _handshake(cols: TcpColumns, idx: np.ndarray, to_dev: np.ndarray) -> tuple[_Handshake, _Handshake] | None:
    """(server side, device side) of the connection's handshake; None when it is not a plain one.

    A plain handshake: none at all, or a SYN (no ACK) then the other side's
    SYN+ACK as the connection's first two packets, and no other SYN.
    """
    syn = (cols.flags[idx] & TCP_SYN) != 0
    count = int(syn.sum())
    sides = (_Handshake(), _Handshake())
    if count == 0:
        return sides
    if (count != 2 or len(idx) < 2 or not (syn[0] and syn[1]) or to_dev[0] == to_dev[1]
            or cols.flags[idx[0]] & TCP_ACK or not cols.flags[idx[1]] & TCP_ACK):
        return None
    for i in (0, 1):
        at, length = int(cols.opt_at[idx[i]]), int(cols.opt_len[idx[i]])
        mss, ws, ts, sack_req, sack_count, _ = _options(cols.options[at:at + length])
        if sack_count != -1 or ws > 14:
            return None
        side = sides[0] if to_dev[i] else sides[1]
        side.syn, side.seq, side.ws, side.ts, side.sack_req = True, int(cols.seq[idx[i]]), ws, ts, sack_req
        if mss != -1:
            side.mss = mss if mss < 0x8000 else mss - 0x10000 + TWO32
    return sides


def _server_direction(cols: TcpColumns, idx: np.ndarray, to_dev: np.ndarray, end_time: int) -> dict[str, Any] | None:
    """tcptrace's statistics of the server-to-device direction of the connection at *idx* (packet indices).

    None when the connection is outside what the columns follow: not a plain
    handshake, more than one FIN a direction, a segment that is not new and in
    order (the segment database would count it retransmitted or out of order),
    or sequence numbers that may wrap. *to_dev*: which of the packets go to the device.
    """
    sides = _handshake(cols, idx, to_dev)
    if sides is None:
        return None
    me, peer = sides
    flags = cols.flags[idx]
    syn_c, fin_c, ack_c = (flags & TCP_SYN) != 0, (flags & TCP_FIN) != 0, (flags & TCP_ACK) != 0
    fins_me, fins_peer = int(fin_c[to_dev].sum()), int(fin_c[~to_dev].sum())
    if fins_me > 1 or fins_peer > 1:
        return None
    d = idx[to_dev]  # this direction's packets
    n = len(d)
    ts_d, dlen, seq_d, flags_d = cols.ts[d], cols.data_len[d], cols.seq[d], flags[to_dev]
    syn, fin, ackf = syn_c[to_dev], fin_c[to_dev], ack_c[to_dev]
    data = dlen > 0
    both_ws = me.ws != -1 and peer.ws != -1
    win_c = cols.win[idx]
    win = win_c[to_dev]
    eff = np.where(syn, win, win << me.ws) if both_ws else win
    # zero-window probe: the other direction's latest packet before it advertised a zero window
    local = np.arange(len(idx))
    last_other = np.maximum.accumulate(np.where(to_dev, -1, local))[to_dev]
    probe = (data | fin) & ~syn & (last_other >= 0) & (win_c[np.maximum(last_other, 0)] == 0)
    segs = (syn | fin | data) & ~probe
    first = seq_d[segs]
    last = first + dlen[segs] + syn[segs] + fin[segs] - 1
    rexmit = out_order = None  # per packet of this direction, when not every segment is new and in order
    if len(first) and ((last > M32).any() or ((first >> 30) != (last >> 30)).any() or (
            len(first) > 1 and (first[1:] <= np.maximum.accumulate(last)[:-1]).any())):
        rexmit, out_order = _segment_database(cols, idx, to_dev, segs, syn, fin)
    # initial window: data before the other side first ACKs something else than this side's SYN
    threshold = (me.seq + 1) & M32 if me.syn else 1
    acked_at = np.flatnonzero(~to_dev & ack_c & (cols.ack[idx] != threshold))
    before = local[to_dev] < (acked_at[0] if len(acked_at) else len(idx))
    if rexmit is None:
        unique, rexmit_pkts, rexmit_bytes, out_order_pkts, initial = int(dlen[segs].sum()), 0, 0, 0, data & before
    else:
        fresh = segs & (rexmit < dlen)
        unique = int((dlen - rexmit)[fresh].sum())
        rexmit_pkts, rexmit_bytes = int((rexmit > 0).sum()), int(rexmit.sum())
        out_order_pkts = int(out_order.sum())
        initial = data & before & (rexmit <= 0)
    # window statistics restart at the first scaled advertisement when both sides scale
    scaled_at = np.flatnonzero(~syn & (eff > 0)) if both_ws else np.zeros(0, dtype=np.int64)
    peer_scaled = both_ws and bool((~syn_c[~to_dev] & (win_c[~to_dev] > 0)).any())
    counted = eff[int(scaled_at[0]):] if len(scaled_at) else eff
    scaled_pkts = n - int(scaled_at[0]) if len(scaled_at) else 0
    win_tot = int(counted.sum())
    positive = counted[counted > 0]
    win_div = scaled_pkts if len(scaled_at) and peer_scaled else n
    conn_first, conn_last = int(cols.ts[idx[0]]), int(cols.ts[idx[-1]])
    data_bytes = int(dlen.sum())
    data_pkts = int(data.sum())
    data_ts = ts_d[data]
    first_data = int(data_ts[0]) if len(data_ts) else 0
    last_data = int(data_ts[-1]) if len(data_ts) else 0
    idle = 0
    last_time = int(ts_d[-1]) if n else 0
    if n > 1:
        idle = max(int((ts_d[1:] - ts_d[:-1]).max()), 0)
    if last_time and not (fins_me and fins_peer):
        idle = max(idle, end_time - last_time)  # tcptrace adds the tail of a connection not closed
    length = None
    if me.syn and fins_me:
        ends = seq_d + dlen
        quads = set((seq_d >> 30).tolist()) | set((ends[ends < TWO32] >> 30).tolist())
        if len(quads) == 4:
            return None  # the stream may wrap around the sequence space
        fin_end = int(ends[fin][0]) & M32
        length = (fin_end - me.seq - 1 if fin_end > me.seq else fin_end + TWO32 - me.seq - 1) & M64
    trunc = data & (cols.captured[d] < dlen)
    etime = max(conn_last - conn_first, 0) / 1_000_000.0
    has_non_syn = bool((~syn_c).any())  # any non-SYN packet resets the scale when not both sides scale
    return {
        "total_packets": n, "resets_sent": 0, "ack_pkts_sent": int(ackf.sum()),
        "pure_acks_sent": int((ackf & (dlen == 0) & ~syn & ~fin).sum()), "sack_pkts_sent": 0, "dsack_pkts_sent": 0,
        "max_sack_blks/ack": 0, "unique_bytes_sent": unique, "actual_data_pkts": data_pkts,
        "actual_data_bytes": data_bytes, "rexmt_data_pkts": rexmit_pkts, "rexmt_data_bytes": rexmit_bytes,
        "zwnd_probe_pkts": int(probe.sum()), "zwnd_probe_bytes": int(dlen[probe].sum()),
        "outoforder_pkts": out_order_pkts,
        "pushed_data_pkts": int((data & ((flags_d & TCP_PSH) != 0)).sum()), "syn_pkts_sent": int(me.syn),
        "fin_pkts_sent": fins_me, "req_1323_ws": me.ws != -1,
        "req_1323_ts": me.ts or bool((cols.opt_len[d][~syn] > 0).any()),
        "adv_wind_scale": 0 if me.ws == -1 or (has_non_syn and not both_ws) else me.ws,
        "req_sack": me.sack_req, "sacks_sent": 0, "urgent_data_pkts": 0, "urgent_data_bytes": 0,
        "mss_requested": me.mss, "max_segm_size": int(dlen.max()) if data_pkts else 0,
        "min_segm_size": int(dlen[data].min()) if data_pkts else 0,
        "avg_segm_size": int(data_bytes / (data_pkts + 0.001)), "max_win_adv": int(counted.max()) if n else 0,
        "min_win_adv": int(positive.min()) if len(positive) else 0, "zero_win_adv": int((ackf & (eff == 0)).sum()),
        "avg_win_adv": win_tot // win_div if win_div else 0, "initial_window_bytes": int(dlen[initial].sum()),
        "initial_window_pkts": int(initial.sum()), "ttl_stream_length": length,
        "missed_data": None if length is None else (length - unique) & M64,
        "truncated_data": int((dlen - cols.captured[d])[trunc].sum()), "truncated_packets": int(trunc.sum()),
        "data_xmit_time": max(last_data - first_data, 0) / 1_000_000.0,
        "idletime_max": None if not last_time else idle / 1000.0,
        "throughput": None if etime == 0.0 else unique / etime,
        "_win_tot": win_tot, "_win_div": win_div, "_first_data_us": first_data, "_last_data_us": last_data,
        "_conn_first_us": conn_first, "_conn_last_us": conn_last,
    }


def _segment_database(cols: TcpColumns, idx: np.ndarray, to_dev: np.ndarray, segs: np.ndarray, syn: np.ndarray,
                      fin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(retransmitted count, out of order) of each packet of the server's direction, from tcptrace's segment
    database (:class:`~echolab.analysis.features.tcptrace._SeqSpace`) fed in packet order: the direction's
    segments (*segs*, SYN and FIN counting one number each) and the device's ACKs, which merge what they
    acknowledge. The rest of the statistics do not depend on it."""
    n = int(to_dev.sum())
    rexmit = np.zeros(n, dtype=np.int64)
    out_order = np.zeros(n, dtype=bool)
    space = _SeqSpace()
    mine = np.cumsum(to_dev) - 1  # index among the direction's packets
    seq = cols.seq[idx].tolist()
    ack = cols.ack[idx].tolist()
    acks = ((cols.flags[idx] & TCP_ACK) != 0).tolist()
    lengths = (cols.data_len[idx][to_dev] + syn + fin).tolist()
    segs_l = segs.tolist()
    for i, (server, j) in enumerate(zip(to_dev.tolist(), mine.tolist())):
        if server:
            if segs_l[j]:
                rexmit[j], out_order[j] = space.add(seq[i], lengths[j])
        elif acks[i]:
            space.ack(ack[i])
    return rexmit, out_order


def _signed(delta: np.ndarray) -> np.ndarray:
    delta = delta & M32
    return np.where(delta >= 1 << 31, delta - (1 << 32), delta)


def _flow(cols: TcpColumns, idx: np.ndarray, to_dev: np.ndarray) -> tuple[bool, int]:
    """The flow meter over one connection of the device (packet indices *idx*): (every data segment is new,
    smallest round trip or 0; 0 when not every one is).

    False when a data segment overlaps or falls behind earlier bytes of its direction (the meter would
    count only part of it) or the device sent more segments than the meter keeps.
    """
    dlen = cols.data_len[idx]
    data = dlen > 0
    rtt = 0
    for side in (~to_dev, to_dev):  # from the device, to it
        mine = np.flatnonzero(side & data)  # positions within the connection
        if not len(mine):
            continue
        seq = cols.seq[idx[mine]]
        start = _signed(seq - seq[0])
        end = start + dlen[mine]
        if len(mine) > 1 and (start[1:] < np.maximum.accumulate(end)[:-1]).any():
            return False, 0
        if side is to_dev:
            continue
        if len(mine) > MAX_OUTSTANDING:  # the flow meter keeps no more
            return False, 0
        # the server's ACKs after the device's first segment, and which device segments each acknowledges
        acks = np.flatnonzero(to_dev & ((cols.flags[idx] & TCP_ACK) != 0))
        acks = acks[acks > mine[0]]
        if not len(acks):
            continue
        acked = _signed(cols.ack[idx[acks]] - seq[0])
        sent_before = np.searchsorted(mine, acks)
        popped = np.maximum.accumulate(np.minimum(sent_before, np.searchsorted(end, acked, side="right")))
        grew = np.flatnonzero(popped > np.concatenate(([0], popped[:-1])))
        if len(grew):
            samples = cols.ts[idx[acks[grew]]] - cols.ts[idx[mine[popped[grew] - 1]]]
            samples = samples[samples > 0]
            if len(samples):
                rtt = int(samples.min())
    return True, rtt


def _bursts(sizes: np.ndarray) -> tuple[list[int], list[int]]:
    """:func:`echolab.analysis.features.sets.bursts` of a sequence without zeros, with numpy."""
    if not len(sizes):
        return [], []
    pos = sizes > 0
    starts = np.flatnonzero(np.concatenate(([True], pos[1:] != pos[:-1])))
    counts = np.concatenate((starts[1:], [len(sizes)])) - starts
    return np.where(pos[starts], counts, -counts).tolist(), np.add.reduceat(sizes, starts).tolist()


def _array(typecode: str, values: np.ndarray) -> array:
    out = array(typecode)
    out.frombytes(values.astype(f"i{out.itemsize}").tobytes())
    return out


def _column_trace(cols: TcpColumns, stats: ReadStats, dev_ip: int) -> tuple | None:
    """(server-to-device statistics of each connection, flow times, flow bytes, round trip) from whole
    columns; None when a packet is outside the domain (see the module's doc). The flow meter runs packet
    by packet when a device segment is not new and in order."""
    if not _in_domain(cols, dev_ip):
        return None
    conns = _connections(cols)
    if conns is None:
        return None
    end_time = stats.last_ts_us if stats.last_ts_us is not None else max(int(cols.ts[i[-1]]) for i in conns)
    directions = []
    rtt = 0
    new_only = True
    for idx in conns:
        if not ((cols.src[idx[0]] == dev_ip) or (cols.dst[idx[0]] == dev_ip)):
            continue  # not the device's
        to_dev = cols.dst[idx] == dev_ip
        stats_d = _server_direction(cols, idx, to_dev, end_time)
        if stats_d is None:
            return None
        directions.append(stats_d)
        if new_only:
            new_only, conn_rtt = _flow(cols, idx, to_dev)
            if conn_rtt and (rtt == 0 or conn_rtt < rtt):
                rtt = conn_rtt
    if not new_only:
        device = dev_ip.to_bytes(4, "big")
        meter = FlowMeter(device)
        for pkt in cols.tuples():
            if pkt[T_DST] == device or pkt[T_SRC] == device:
                meter.add(pkt)
        return directions, np.asarray(meter.times_us, dtype=np.int64), meter.nbytes, meter.rtt_us
    data = np.flatnonzero(((cols.src == dev_ip) | (cols.dst == dev_ip)) & (cols.data_len > 0))
    nbytes = np.where(cols.src[data] == dev_ip, cols.data_len[data], -cols.data_len[data])
    return directions, cols.ts[data], nbytes.tolist(), rtt


def _packet_trace(cols: TcpColumns, stats: ReadStats, device: bytes) -> tuple:
    """What :func:`_column_trace` gives, from tcptrace's and the flow meter's per-packet algorithms."""
    from echolab.analysis.features.sets import server_directions

    tracer = Tracer()
    add = tracer.add
    meter = FlowMeter(device)
    flow = meter.add
    for pkt in cols.tuples():
        add(pkt)
        if pkt[T_DST] == device or pkt[T_SRC] == device:
            flow(pkt)
    directions = server_directions(tracer.finish(stats.last_ts_us), device)
    return directions, np.asarray(meter.times_us, dtype=np.int64), meter.nbytes, meter.rtt_us


def columnar_record(cols: TcpColumns, stats: ReadStats, device: bytes, device_ip: str) -> Any:
    """The capture's :class:`~echolab.analysis.features.sets.CaptureRecord` from its columns.

    The packet sequence always comes from whole columns; tcptrace's statistics
    and the flow meter too for a capture inside the domain (see the module's
    doc), else packet by packet. None when the capture has no packets from a
    server to the device or no connection of the device (the per-packet path
    says what is missing).
    """
    from echolab.analysis.features.sets import CaptureRecord, combine_connections

    if len(device) != 4:
        return None
    dev_ip = int.from_bytes(device, "big")
    from_dev = cols.src == dev_ip
    to_dev = cols.dst == dev_ip
    s2d = to_dev & ~from_dev
    if not s2d.any():
        return None
    traced = _column_trace(cols, stats, dev_ip) or _packet_trace(cols, stats, device)
    directions, flow_times, flow_bytes, rtt = traced
    if not directions:
        return None
    times = cols.ts[s2d]
    pure = ((cols.flags[s2d] & _PURE_MASK) == TCP_ACK) & (cols.data_len[s2d] == 0)
    in_sequence = from_dev ^ to_dev  # a packet between the device and a server
    seq_times = cols.ts[in_sequence]
    seq_sizes = np.where(from_dev, cols.ip_len, -cols.ip_len)[in_sequence]
    burst_pkts, burst_bytes = _bursts(seq_sizes)
    s0 = int(seq_times[0])
    return CaptureRecord(device_ip=device_ip, connections=len(directions), tcptrace=combine_connections(directions),
                         sizes=_array("l", cols.ip_len[s2d]), times_us=_array("q", times - times[0]),
                         pure_ack=_array("b", pure), packets=int((from_dev | to_dev).sum()),
                         seq_times_us=_array("q", seq_times - s0), seq_sizes=_array("l", seq_sizes),
                         burst_pkts=burst_pkts, burst_bytes=burst_bytes,
                         flow_times_us=_array("q", flow_times - s0), flow_bytes=flow_bytes, rtt_us=rtt)
