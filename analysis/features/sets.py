"""The feature sets, as scikit-learn transformers over per-capture records.

The expensive part, reading a capture, happens once per file in
:func:`extract_record`: one streaming pass feeds tcptrace's per-connection
statistics (:mod:`echolab.analysis.features.tcptrace`) and collects the server-to-device packet
sizes and times. The resulting :class:`CaptureRecord` is cached in the catalog
(:mod:`echolab.analysis.features.store`). The transformers (made by
:func:`make_transformer`; their classes are in :mod:`echolab.analysis.features.transformers`,
so that reading records does not load scikit-learn) then work on lists of records:

* :class:`TcptraceFeatures` - tcptrace's 35 per-direction statistics of the
  server-to-device direction (SYN/FIN counts as two columns, so 36), combined
  over the capture's connections by :data:`TCPTRACE_FEATURES`' rules; ``fit``
  learns which columns are constant and drops them (``dropped_features_``).
* :class:`HistogramFeatures` - normalized packet-size histogram followed by the
  normalized inter-arrival-time histogram, ``bins`` each; ``fit`` learns the
  bin edges (``size_edges_``, ``iat_edges_``) from the data it sees.
* :class:`CombinedFeatures` - tcptrace followed by histogram.

Past the study's three, the record also keeps the device's whole TCP packet
sequence (time, signed size) and its bursts, the input of the sequence sets
:data:`SEQUENCE_SETS`: ``sequence`` (the signed sizes themselves,
:mod:`~echolab.analysis.features.sequence`), ``kfp`` (k-FP, Hayes & Danezis
2016, :mod:`~echolab.analysis.features.kfp`) and ``cumul`` (CUMUL, Panchenko
et al. 2016, :mod:`~echolab.analysis.features.cumul`). A packet trace read from
a ``time,size,direction`` CSV (:mod:`echolab.captures.trace`) gives a record
with the sequence only (``kind="trace"``); the study's sets refuse it.

This module owns the feature-name grammar (the sequence sets' modules list
their own names in it). Every name follows :data:`FEATURE_NAME_RE`:
``<direction>_<quantity>_<unit>``, direction ``s2d`` (server to device),
``d2s`` or ``bi`` (both directions; a signed value is positive from the device),
unit one of :data:`UNITS`; e.g. ``s2d_max_win_adv_bytes``,
``s2d_size_hist_03_frac``, ``bi_cumul_042_bytes``.
"""

from __future__ import annotations

import re
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from echolab.captures.reader import (T_DATA_LEN, T_DST, T_FLAGS, T_IP_LEN, T_SRC, T_TS, TCP_ACK, TCP_FIN, TCP_RST,
                                     TCP_SYN, CaptureError, ReadStats, format_addr, iter_tcp, parse_addr)
from echolab.captures.columns import tcp_columns
from echolab.captures.flow import FlowMeter
from echolab.captures.trace import read_trace
from echolab.analysis.features.columnar import columnar_record
from echolab.analysis.features.tcptrace import Connection, Tracer, direction_stats
from echolab.errors import EcholabError
from echolab.progress import ProgressCallback

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

    from echolab.db.catalog import Catalog

#: Bump when extraction changes what a record holds; cached rows of other versions are ignored.
EXTRACTOR_VERSION = "echolab-features-3"  # 2: the device's packet sequence and bursts; 3: its byte flow, round trip

#: Captures up to this size are decoded into numpy columns (about 130 bytes a packet held at once);
#: larger ones are streamed packet by packet, so memory stays flat however long a capture is.
COLUMNS_MAX_BYTES = 32 << 20

UNITS = ("pkts", "bytes", "count", "blocks", "s", "ms", "bytes_per_s", "pkts_per_s", "frac")
FEATURE_NAME_RE = re.compile(
    r"^(?P<direction>s2d|d2s|bi)_(?P<quantity>[a-z][a-z0-9]*(?:_[a-z0-9]+)*?)_(?P<unit>"
    + "|".join(sorted(UNITS, key=len, reverse=True)) + r")$")

#: The study's three sets (the default of a comparison).
FEATURE_SETS = ("tcptrace", "histogram", "combined")
#: Sets computed from the packet sequence alone (they apply to packet traces too).
SEQUENCE_SETS = ("sequence", "kfp", "cumul")
#: Sets computed from the device's byte flow, which do not depend on how bytes are cut into packets
#: (:mod:`echolab.analysis.features.flow`): volume curves and timing, then both.
FLOW_SETS = ("flow", "volume", "timing")
#: Every set a comparison, an export or the report can name.
ALL_SETS = FEATURE_SETS + SEQUENCE_SETS + FLOW_SETS

# (feature name, tcptrace statistic behind it, rule combining the capture's connections)
# Order: tcptrace -l's order of its 35 always-printed per-direction lines.
TCPTRACE_FEATURES: tuple[tuple[str, str, str], ...] = (
    ("s2d_total_pkts", "total_packets", "sum"),
    ("s2d_ack_pkts", "ack_pkts_sent", "sum"),
    ("s2d_pure_ack_pkts", "pure_acks_sent", "sum"),
    ("s2d_sack_pkts", "sack_pkts_sent", "sum"),
    ("s2d_dsack_pkts", "dsack_pkts_sent", "sum"),
    ("s2d_max_sack_per_ack_blocks", "max_sack_blks/ack", "max"),
    ("s2d_unique_sent_bytes", "unique_bytes_sent", "sum"),
    ("s2d_actual_data_pkts", "actual_data_pkts", "sum"),
    ("s2d_actual_data_bytes", "actual_data_bytes", "sum"),
    ("s2d_rexmt_data_pkts", "rexmt_data_pkts", "sum"),
    ("s2d_rexmt_data_bytes", "rexmt_data_bytes", "sum"),
    ("s2d_zwnd_probe_pkts", "zwnd_probe_pkts", "sum"),
    ("s2d_zwnd_probe_bytes", "zwnd_probe_bytes", "sum"),
    ("s2d_outoforder_pkts", "outoforder_pkts", "sum"),
    ("s2d_pushed_data_pkts", "pushed_data_pkts", "sum"),
    ("s2d_syn_pkts", "syn_pkts_sent", "sum"),
    ("s2d_fin_pkts", "fin_pkts_sent", "sum"),
    ("s2d_urgent_data_pkts", "urgent_data_pkts", "sum"),
    ("s2d_urgent_data_bytes", "urgent_data_bytes", "sum"),
    ("s2d_mss_requested_bytes", "mss_requested", "max"),
    ("s2d_max_segm_size_bytes", "max_segm_size", "max"),
    ("s2d_min_segm_size_bytes", "min_segm_size", "min_nonzero"),
    ("s2d_avg_segm_size_bytes", "avg_segm_size", "avg_segm"),
    ("s2d_max_win_adv_bytes", "max_win_adv", "max"),
    ("s2d_min_win_adv_bytes", "min_win_adv", "min_nonzero"),
    ("s2d_zero_win_adv_count", "zero_win_adv", "sum"),
    ("s2d_avg_win_adv_bytes", "avg_win_adv", "avg_win"),
    ("s2d_initial_window_bytes", "initial_window_bytes", "sum"),
    ("s2d_initial_window_pkts", "initial_window_pkts", "sum"),
    ("s2d_ttl_stream_length_bytes", "ttl_stream_length", "sum"),
    ("s2d_missed_data_bytes", "missed_data", "sum"),
    ("s2d_truncated_data_bytes", "truncated_data", "sum"),
    ("s2d_truncated_pkts", "truncated_packets", "sum"),
    ("s2d_data_xmit_time_s", "data_xmit_time", "data_span"),
    ("s2d_idletime_max_ms", "idletime_max", "max"),
    ("s2d_throughput_bytes_per_s", "throughput", "throughput"),
)
TCPTRACE_FEATURE_NAMES: tuple[str, ...] = tuple(name for name, _, _ in TCPTRACE_FEATURES)

#: The 13 statistics the study found constant and dropped (its 22 are the rest).
STUDY_DROPPED: tuple[str, ...] = (
    "s2d_sack_pkts", "s2d_dsack_pkts", "s2d_max_sack_per_ack_blocks", "s2d_zwnd_probe_pkts",
    "s2d_zwnd_probe_bytes", "s2d_syn_pkts", "s2d_fin_pkts", "s2d_urgent_data_pkts", "s2d_urgent_data_bytes",
    "s2d_zero_win_adv_count", "s2d_ttl_stream_length_bytes", "s2d_missed_data_bytes", "s2d_truncated_data_bytes",
    "s2d_truncated_pkts",
)

#: Named subsets of the tcptrace set used by the study's ablations.
TCPTRACE_GROUPS: dict[str, tuple[str, ...]] = {
    "window": ("s2d_max_win_adv_bytes", "s2d_min_win_adv_bytes", "s2d_avg_win_adv_bytes", "s2d_zero_win_adv_count"),
    "data_amount": ("s2d_total_pkts", "s2d_unique_sent_bytes", "s2d_actual_data_pkts", "s2d_actual_data_bytes"),
}
HISTOGRAM_PARTS = ("size", "iat")
#: Ablation name -> (feature set, its ``groups`` option).
ABLATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "window": ("tcptrace", ("window",)),
    "data_amount": ("tcptrace", ("data_amount",)),
    "size_hist": ("histogram", ("size",)),
    "iat_hist": ("histogram", ("iat",)),
}


def histogram_feature_names(part: str, bins: int) -> list[str]:
    """Names of one histogram's columns: ``s2d_size_hist_00_frac`` ... (part is "size" or "iat")."""
    width = max(2, len(str(bins - 1)))
    return [f"s2d_{part}_hist_{i:0{width}d}_frac" for i in range(bins)]


class FeatureError(EcholabError):
    """A capture cannot give features (corrupt, empty, no TCP with the device) or bad options."""


# --------------------------------------------------------------------------- per-capture records


@dataclass
class CaptureRecord:
    """What one pass over a capture yields; the input of every transformer.

    ``tcptrace`` maps each name of :data:`TCPTRACE_FEATURE_NAMES` to its
    combined value. ``sizes`` (IP total length, bytes), ``times_us``
    (microseconds since the first one) and ``pure_ack`` describe every
    server-to-device TCP packet in file order.

    ``seq_times_us`` (microseconds since the first one) and ``seq_sizes`` (IP
    total length, positive from the device, negative to it) are every TCP
    packet between the device and a server, both directions, in file order;
    ``burst_pkts`` and ``burst_bytes`` are its bursts (runs of packets in one
    direction), signed the same way. ``kind`` is "pcap", or "trace" for a
    record read from a ``time,size,direction`` file, which has the sequence only.

    ``flow_times_us`` (microseconds since the first packet of the sequence)
    and ``flow_bytes`` (signed like sizes) are the device's byte flow: the new
    TCP stream bytes of each packet that carried some
    (:class:`echolab.captures.flow.FlowMeter`), the input of the flow sets;
    ``rtt_us`` is the round trip from the capture point to the servers (0 when
    unknown).
    """

    device_ip: str
    connections: int
    tcptrace: dict[str, float]
    sizes: list[int] = field(default_factory=list)
    times_us: list[int] = field(default_factory=list)
    pure_ack: list[int] = field(default_factory=list)
    packets: int = 0  # TCP packets with the device, both directions
    seq_times_us: list[int] = field(default_factory=list)
    seq_sizes: list[int] = field(default_factory=list)
    burst_pkts: list[int] = field(default_factory=list)
    burst_bytes: list[int] = field(default_factory=list)
    kind: str = "pcap"
    version: str = EXTRACTOR_VERSION
    flow_times_us: list[int] = field(default_factory=list)
    flow_bytes: list[int] = field(default_factory=list)
    rtt_us: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"device_ip": self.device_ip, "connections": self.connections, "tcptrace": dict(self.tcptrace),
                "sizes": list(self.sizes), "times_us": list(self.times_us), "pure_ack": list(self.pure_ack),
                "packets": self.packets, "seq_times_us": list(self.seq_times_us), "seq_sizes": list(self.seq_sizes),
                "burst_pkts": list(self.burst_pkts), "burst_bytes": list(self.burst_bytes), "kind": self.kind,
                "version": self.version, "flow_times_us": list(self.flow_times_us),
                "flow_bytes": list(self.flow_bytes), "rtt_us": self.rtt_us}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "CaptureRecord":
        return cls(**data)

    def histogram_values(self, include_acks: bool) -> tuple[np.ndarray, np.ndarray]:
        """(packet sizes in bytes, inter-arrival times in seconds) of the kept packets."""
        sizes = np.asarray(self.sizes, dtype=float)
        times = np.asarray(self.times_us, dtype=np.int64)
        if not include_acks and len(sizes):
            keep = np.asarray(self.pure_ack, dtype=bool) == 0
            sizes, times = sizes[keep], times[keep]
        iat = np.maximum(np.diff(times), 0) / 1e6 if len(times) > 1 else np.zeros(0)
        return sizes, iat


def bursts(sizes: Sequence[int]) -> tuple[list[int], list[int]]:
    """The bursts of a signed size sequence: (packets, bytes) of each run of one direction, signed by it.

    ``[+100, +50, -1500, -1500, -60, +80]`` has bursts ``[2, -3, 1]`` packets
    and ``[150, -3060, 80]`` bytes.
    """
    pkts: list[int] = []
    nbytes: list[int] = []
    for s in sizes:
        if pkts and (s > 0) == (pkts[-1] > 0):
            pkts[-1] += 1 if s > 0 else -1
            nbytes[-1] += s
        else:
            pkts.append(1 if s > 0 else -1)
            nbytes.append(s)
    return pkts, nbytes


def trace_record(path: Path | str) -> CaptureRecord:
    """The record of a ``time,size,direction`` packet trace: its sequence and bursts, nothing else.

    The server-to-device sizes and times are filled from the sequence too, but
    without TCP headers there are no tcptrace statistics and no pure-ACK flags,
    so only the sequence sets apply (the others raise :class:`FeatureError`).
    """
    from echolab.captures.trace import TRACE_DEVICE, TraceError

    try:
        times, sizes = read_trace(path)
    except TraceError as exc:
        raise FeatureError(str(exc)) from exc
    return sequence_record(times, sizes, TRACE_DEVICE)


def sequence_record(times_us: Sequence[int], sizes: Sequence[int], device_ip: str) -> CaptureRecord:
    """A record holding a packet sequence only (``kind="trace"``): what the sequence sets need."""
    s2d = [(t, -s) for t, s in zip(times_us, sizes) if s < 0]
    t0 = s2d[0][0] if s2d else 0
    burst_pkts, burst_bytes = bursts(sizes)
    return CaptureRecord(device_ip=device_ip, connections=0, tcptrace={},
                         sizes=[s for _, s in s2d], times_us=[t - t0 for t, _ in s2d], pure_ack=[0] * len(s2d),
                         packets=len(sizes), seq_times_us=list(times_us), seq_sizes=list(sizes),
                         burst_pkts=burst_pkts, burst_bytes=burst_bytes, kind="trace")


def require_headers(records: Sequence["CaptureRecord"], set_name: str) -> None:
    """Raise :class:`FeatureError` when some record is a packet trace: *set_name* needs TCP headers."""
    traces = sum(1 for r in records if r.kind == "trace")
    if traces:
        raise FeatureError(
            f"the {set_name} set needs TCP headers, but {traces} of the {len(records)} captures are packet traces "
            f"(time,size,direction) without them; only the sequence sets ({', '.join(SEQUENCE_SETS)}) apply to "
            "traces")


def as_record(item: Any) -> CaptureRecord:
    """*item* as a :class:`CaptureRecord` (it may be one, or its JSON form)."""
    if isinstance(item, CaptureRecord):
        return item
    if isinstance(item, dict):
        return CaptureRecord.from_json(item)
    raise TypeError(f"feature transformers take CaptureRecord objects (or their JSON), got {type(item).__name__}")


def server_directions(connections: Sequence[Connection], device: bytes) -> list[dict[str, Any]]:
    """tcptrace statistics of the server-to-device direction of each connection with *device*."""
    out = []
    for conn in connections:
        if conn.a_addr == device and conn.b_addr != device:
            out.append(direction_stats(conn, conn.b2a))
        elif conn.b_addr == device and conn.a_addr != device:
            out.append(direction_stats(conn, conn.a2b))
    return out


def combine_connections(stats: Sequence[dict[str, Any]]) -> dict[str, float]:
    """One value per tcptrace feature from per-connection statistics (see docs/features.md).

    Counts and bytes add up; maxima take the maximum; minima the smallest
    non-zero value; averages are recomputed from the summed parts exactly as
    tcptrace computes them for one connection; data xmit time spans the first
    to the last data packet of any connection; throughput is all unique bytes
    over the span from the first to the last packet of any connection. A
    statistic tcptrace prints as NA counts as 0.
    """
    out: dict[str, float] = {}
    for name, key, rule in TCPTRACE_FEATURES:
        values = [s[key] for s in stats if s[key] is not None]
        if rule == "sum":
            out[name] = float(sum(values))
        elif rule == "max":
            out[name] = float(max(values, default=0))
        elif rule == "min_nonzero":
            out[name] = float(min((v for v in values if v > 0), default=0))
        elif rule == "avg_segm":
            data_bytes = sum(s["actual_data_bytes"] for s in stats)
            data_pkts = sum(s["actual_data_pkts"] for s in stats)
            out[name] = float(int(data_bytes / (data_pkts + 0.001)))
        elif rule == "avg_win":
            div = sum(s["_win_div"] for s in stats)
            out[name] = float(sum(s["_win_tot"] for s in stats) // div) if div else 0.0
        elif rule == "data_span":
            spans = [(s["_first_data_us"], s["_last_data_us"]) for s in stats if s["_first_data_us"]]
            out[name] = max(max(e for _, e in spans) - min(b for b, _ in spans), 0) / 1e6 if spans else 0.0
        elif rule == "throughput":
            first = min((s["_conn_first_us"] for s in stats), default=0)
            last = max((s["_conn_last_us"] for s in stats), default=0)
            unique = sum(s["unique_bytes_sent"] for s in stats)
            out[name] = unique / ((last - first) / 1e6) if last > first else 0.0
        else:  # pragma: no cover - the table above is the only input
            raise AssertionError(rule)
    return out


def extract_record(path: Path | str, device_ip: str) -> CaptureRecord:
    """Read the capture at *path* once and return its :class:`CaptureRecord`.

    Raises :class:`FeatureError` for a capture that cannot be used: not a
    capture, damaged or cut short, empty, without TCP, or without TCP traffic
    of *device_ip*. A ``time,size,direction`` packet trace gives
    :func:`trace_record` (*device_ip* is not used).
    """
    from echolab.captures.trace import is_trace_file

    if is_trace_file(path):
        return trace_record(path)
    try:
        device = parse_addr(device_ip)
    except ValueError as exc:
        raise FeatureError(f"device IP {device_ip!r} is not an IP address") from exc
    stats = ReadStats()
    try:
        small = Path(path).stat().st_size <= COLUMNS_MAX_BYTES
    except OSError:
        small = False  # the reader says why it cannot be read
    try:
        columns = tcp_columns(path, stats) if small else None
    except CaptureError as exc:
        raise FeatureError(str(exc)) from exc
    if columns is not None:  # the common frames: their headers decoded with numpy
        _check_read(stats)
        record = columnar_record(columns, stats, device, device_ip)
        if record is not None:
            return record
        return _packet_record(columns.tuples(), stats, device, device_ip)
    return _packet_record(iter_tcp(path, stats), stats, device, device_ip)


def _check_read(stats: ReadStats) -> None:
    """Raise :class:`FeatureError` for a capture that was damaged, empty or without TCP."""
    if stats.truncated_file:
        why = f" ({stats.damaged})" if stats.damaged else ""
        raise FeatureError(f"capture is damaged or cut short after {stats.records} records{why}")
    if stats.records == 0:
        raise FeatureError("capture holds no packets")
    if stats.tcp_packets == 0:
        raise FeatureError(f"capture holds no TCP packets ({stats.records} records)")


def _packet_record(source: Iterable[tuple], stats: ReadStats, device: bytes, device_ip: str) -> CaptureRecord:
    """The record from the capture's packets (``iter_tcp`` tuples), one at a time; *stats* complete after them."""
    tracer = Tracer()
    add = tracer.add
    sizes = array("l")  # compact: a long capture keeps 17 bytes per server packet, not ~90
    times = array("q")
    pure = array("b")
    seq_times = array("q")  # every packet between the device and a server
    seq_sizes = array("l")
    packets = 0
    i_src, i_dst, i_len, i_ts, i_flags, i_data = T_SRC, T_DST, T_IP_LEN, T_TS, T_FLAGS, T_DATA_LEN  # per packet
    add_size, add_time, add_pure = sizes.append, times.append, pure.append
    add_seq_time, add_seq_size = seq_times.append, seq_sizes.append
    pure_mask = TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK  # a pure ACK: ACK alone (PSH/URG allowed), no data
    meter = FlowMeter(device)
    flow = meter.add
    try:
        for pkt in source:
            add(pkt)
            if pkt[i_dst] == device:
                packets += 1
                flow(pkt)
                if pkt[i_src] != device:
                    add_size(pkt[i_len])
                    add_time(pkt[i_ts])
                    add_pure(1 if (pkt[i_flags] & pure_mask) == TCP_ACK and pkt[i_data] == 0 else 0)
                    add_seq_time(pkt[i_ts])
                    add_seq_size(-pkt[i_len])
            elif pkt[i_src] == device:
                packets += 1
                flow(pkt)
                add_seq_time(pkt[i_ts])
                add_seq_size(pkt[i_len])
    except CaptureError as exc:
        raise FeatureError(str(exc)) from exc
    _check_read(stats)
    connections = tracer.finish(stats.last_ts_us)
    directions = server_directions(connections, device)
    if not directions or not sizes:
        seen = sorted({format_addr(c.a_addr) for c in connections} | {format_addr(c.b_addr) for c in connections})
        raise FeatureError(f"no TCP packets from a server to the device {device_ip} "
                           f"(addresses in the capture: {', '.join(seen[:6])})")
    t0, s0 = times[0], seq_times[0]
    burst_pkts, burst_bytes = bursts(seq_sizes)
    return CaptureRecord(device_ip=device_ip, connections=len(directions), tcptrace=combine_connections(directions),
                         sizes=sizes, times_us=array("q", (t - t0 for t in times)), pure_ack=pure, packets=packets,
                         seq_times_us=array("q", (t - s0 for t in seq_times)), seq_sizes=seq_sizes,
                         burst_pkts=burst_pkts, burst_bytes=burst_bytes,
                         flow_times_us=array("q", (t - s0 for t in meter.times_us)), flow_bytes=meter.nbytes,
                         rtt_us=meter.rtt_us)


def make_transformer(set_name: str, *, bins: int = 15, include_acks: bool = False, drop_constant: bool = True,
                     groups: Sequence[str] | None = None, **sequence_options: Any) -> "BaseEstimator":
    """An unfitted transformer for a feature set (:data:`ALL_SETS`) or an ablation.

    The flow sets ("flow", "volume", "timing", :data:`FLOW_SETS`) take the
    options of :class:`echolab.analysis.features.flow.FlowFeatures` (``half``,
    ``step_s``, ``points``, ``pause_s``, ...). The sequence sets ("sequence", "kfp", "cumul") take their own options
    (e.g. ``length`` of "sequence", ``points`` of "cumul"; see
    :func:`echolab.analysis.features.sequence.make_sequence_transformer`) and
    ignore ``bins``, ``include_acks`` and ``drop_constant``; the study's sets
    take no others.

    Ablations (:data:`ABLATIONS`): "window" (window advertisements), "data_amount"
    (total packets, unique bytes, data packets, data bytes), "size_hist",
    "iat_hist". ``groups`` narrows "tcptrace" (names in :data:`TCPTRACE_GROUPS`)
    or "histogram" ("size", "iat"). The classes are in
    :mod:`echolab.analysis.features.transformers` (scikit-learn loads here, not on import).
    """
    if set_name in FLOW_SETS:
        from echolab.analysis.features.flow import make_flow_transformer

        return make_flow_transformer(set_name, **sequence_options)
    if sequence_options and set_name not in SEQUENCE_SETS:
        raise FeatureError(f"the {set_name} set has no option(s) {', '.join(sorted(sequence_options))}")
    from echolab.analysis.features.transformers import CombinedFeatures, HistogramFeatures, TcptraceFeatures

    if set_name in ABLATIONS:
        if groups is not None:
            raise FeatureError(f"{set_name!r} is an ablation with fixed groups; do not pass groups")
        set_name, groups = ABLATIONS[set_name]
    if set_name == "tcptrace":
        return TcptraceFeatures(groups=groups, drop_constant=drop_constant)
    if set_name == "histogram":
        return HistogramFeatures(bins=bins, include_acks=include_acks, groups=groups)
    if set_name == "combined":
        if groups is not None:
            raise FeatureError("the combined set takes no groups; use 'tcptrace' or 'histogram' with groups")
        return CombinedFeatures(bins=bins, include_acks=include_acks, drop_constant=drop_constant)
    if set_name in SEQUENCE_SETS:
        from echolab.analysis.features.sequence import make_sequence_transformer

        return make_sequence_transformer(set_name, **sequence_options)
    raise FeatureError(f"unknown feature set {set_name!r}; choose from {', '.join([*ALL_SETS, *ABLATIONS])}")


def all_feature_names(bins: int = 15) -> list[str]:
    """Every feature name the transformers can produce with *bins* bins (before constant columns drop)."""
    return [*TCPTRACE_FEATURE_NAMES, *histogram_feature_names("size", bins), *histogram_feature_names("iat", bins)]


# --------------------------------------------------------------------------- data sets


@dataclass
class Dataset:
    """Per-capture records and labels of a catalog's usable captures, in capture-id order."""

    records: list[CaptureRecord]
    y: np.ndarray  # labels (str)
    capture_ids: list[int]
    campaigns: list[str]
    sha256s: list[str]
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (capture id, reason) of unusable captures

    def __len__(self) -> int:
        return len(self.records)


def load_dataset(catalog: "Catalog", *, device_ip: str | None = None, progress: ProgressCallback | None = None,
                 label: str | None = None, campaign: str | int | None = None, n_jobs: int = 2,
                 captures: Sequence[Any] | None = None) -> Dataset:
    """Every good capture of *catalog* as a :class:`Dataset`, extracting (in parallel) what is not cached.

    *captures*: these catalogued captures instead (an ``echolab.db.selection.select``'s).

    The device IP of a capture comes from *device_ip* when given, else the
    capture's own ``device_ip``, else its campaign's device. Unusable captures
    are listed in ``Dataset.skipped`` with their reason. *progress* is called
    while captures are read (``echolab.progress``).
    """
    from echolab.analysis.features.store import build_features

    captures = list(captures) if captures is not None else catalog.captures(label=label, campaign=campaign)
    report = build_features(catalog, captures=captures, device_ip=device_ip, progress=progress, n_jobs=n_jobs)
    records, y, ids, campaigns, shas = [], [], [], [], []
    for cap in captures:
        record = report.records.get(cap.id)
        if record is None:
            continue
        records.append(record)
        y.append(cap.label)
        ids.append(cap.id)
        campaigns.append(cap.campaign.name if cap.campaign is not None else "")
        shas.append(cap.sha256 or "")
    return Dataset(records, np.asarray(y, dtype=str), ids, campaigns, shas, skipped=sorted(report.errors.items()))


def describe_capture(path: Path | str, device_ip: str, *, bins: int = 15,
                     include_acks: bool = False) -> dict[str, float]:
    """Every feature of one bare capture by name (nothing dropped; histogram edges from this capture alone).

    The study's sets come first (not for a packet trace, which has no TCP
    headers), then kfp and cumul, then the flow set (not for a trace either). A name in more than one set (``s2d_total_pkts``)
    is one quantity and is listed once.
    """
    from echolab.analysis.features.sequence import describe_sequence
    from echolab.analysis.features.transformers import HistogramFeatures

    record = extract_record(path, device_ip)
    out: dict[str, float] = {}
    if record.kind != "trace":
        out.update(record.tcptrace)
        hist = HistogramFeatures(bins=bins, include_acks=include_acks).fit([record])
        out.update(zip(hist.feature_names_, hist.transform([record])[0].tolist()))
    for name, value in describe_sequence(record).items():
        out.setdefault(name, value)
    if record.kind != "trace":
        from echolab.analysis.features.flow import describe_flow

        for name, value in describe_flow(record).items():
            out.setdefault(name, value)
    return out
