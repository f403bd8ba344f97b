"""Cutting long captures into one capture per request.

A long capture (an Echo answering a timed script for an hour, or a day of a
household) holds many requests, but every analysis works on one capture per
labelled request. This module finds the requests in such a capture and writes
each as its own pcapng:

* :func:`load_timeline` reads the capture once with the project's streaming
  reader and keeps the device's TCP packets (time, size, direction); it
  detects the device when no address is given (:func:`detect_device`).
* :func:`find_segments` cuts that timeline by a :class:`SplitSpec`: quiet gaps
  (``gap=SECONDS``), a fixed schedule (``every=SECONDS``, ``times=FILE``) or
  ``auto``, which searches the gap and the keep-alive threshold for each file
  (:func:`choose_cut`). Bursts or windows with too little of the device's
  traffic (keep-alives) are set aside, not returned as requests; a short burst
  soon after a request (the Echo's own upload after an answer) can be attached
  to it (``attach_trailing``).
* :func:`write_pieces` copies the raw records of each segment, unchanged and
  with their times, into one pcapng per segment, in one pass over the file.
* :func:`plot_segments` draws the timeline and the cut, to tune the gap.

Times are integer microseconds since the epoch (``*_us``), the same truncation
the reader uses, so a cut never depends on float rounding.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from array import array
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Sequence

import numpy as np

from echolab.captures.keepalive import KEEPALIVE_MAX_PACKET
from echolab.captures.reader import (
    read_pcap_header,
    MAX_RECORD, PCAP_MAGICS, PCAPNG_MAGIC, TCP_ACK, TCP_SYN, CaptureError, ReadStats, _pcapng_iface, read_packets,
)
from echolab.errors import EcholabError

DEFAULT_GAP_S = 2.0
DEFAULT_MIN_PACKETS = 8
DEFAULT_MIN_BYTES = 4096
# A real Echo uploads a short burst of its own 8 to 15 s after an answer
# (docs/long-captures.md): with --split auto, a burst that starts within this
# many seconds of a request's last packet, is short and much smaller than the
# request is attached to it.
DEFAULT_ATTACH_S = 16.0
TRAILING_MAX_S = 3.0  # a burst that can be attached sends its data within this long (a request takes 5 s or more)
TRAILING_RATIO = 2.0  # and the request it follows holds at least this many times its bytes
# --split auto searches gaps between these (quiet times of the device outside
# this range never decide a cut) ...
AUTO_MIN_GAP_S = 1.0
AUTO_MAX_GAP_S = 30.0
# ... and, with --expect N, accepts a cut only when the N-th biggest burst holds
# at least this many times the bytes of the biggest one set aside.
AUTO_SEPARATION = 2.0
ABSOLUTE_EPOCH = 1e8  # a times-file value at or above this is epoch seconds (after March 1973)
MODES = ("gap", "every", "times", "auto")


class SplitError(EcholabError):
    """A long capture cannot be cut as asked (bad split, no device, unreadable times file)."""


# --------------------------------------------------------------------------- the split settings


@dataclass(frozen=True)
class SplitSpec:
    """How to cut: ``gap`` (seconds of quiet), ``every`` (seconds), ``times`` (start times) or ``auto``.

    ``times`` holds the start times read from ``times_file``: values at or
    above :data:`ABSOLUTE_EPOCH` are epoch seconds, smaller ones are seconds
    after the capture's first packet. A burst (gap) or window (every/times)
    is a request only when it holds at least ``min_packets`` TCP packets and
    ``min_bytes`` IP bytes of the device; smaller ones are keep-alives.
    ``attach_trailing`` (gap and auto) attaches a short burst that starts
    within that many seconds after a request to the request
    (:func:`attach_trailing`); ``auto`` chooses the gap and ``min_bytes`` per
    file (:func:`choose_cut`) and attaches within :data:`DEFAULT_ATTACH_S`
    unless told otherwise. ``speed``: the capture was played this many times
    faster than the household's clock (a simulated day); every time of the cut
    (the gap, the attach window, auto's range of gaps) is then the household's,
    and divided by it on the capture's clock (:meth:`us`).
    """

    mode: str
    seconds: float = 0.0
    times: tuple[float, ...] = ()
    times_file: str | None = None
    min_packets: int = DEFAULT_MIN_PACKETS
    min_bytes: int = DEFAULT_MIN_BYTES
    attach_trailing: float = 0.0
    speed: float = 1.0

    def us(self, seconds: float) -> int:
        """*seconds* of the household's clock as microseconds of the capture's."""
        return round(seconds * 1e6 / self.speed)

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise SplitError(f"the speed factor must be above 0 (got {self.speed:g})")
        if self.mode not in MODES:
            raise SplitError(f"unknown split {self.mode!r}: use gap=SECONDS, every=SECONDS, times=FILE or auto")
        if self.attach_trailing < 0:
            raise SplitError("--attach-trailing cannot be negative")
        if self.attach_trailing and self.mode not in ("gap", "auto"):
            raise SplitError("--attach-trailing works with --split gap=SECONDS or auto, not with a schedule")
        if self.mode in ("gap", "every") and not self.seconds > 0:
            raise SplitError(f"{self.mode}= needs a number of seconds above 0, e.g. {self.mode}=2")
        if self.mode == "times" and not self.times:
            raise SplitError(f"the times file {self.times_file} holds no start times")
        if self.min_packets < 0 or self.min_bytes < 0:
            raise SplitError("--min-packets and --min-bytes cannot be negative")

    @classmethod
    def parse(cls, text: str, *, min_packets: int = DEFAULT_MIN_PACKETS,
              min_bytes: int = DEFAULT_MIN_BYTES, attach_trailing: float | None = None,
              speed: float = 1.0) -> "SplitSpec":
        """``gap=2``, ``every=30``, ``times=FILE`` (the file is read now, so errors show early) or ``auto``.

        *attach_trailing* None means the default: :data:`DEFAULT_ATTACH_S` for
        ``auto``, nothing attached for the others. *speed*: see the class.
        """
        mode, sep, value = text.partition("=")
        mode, value = mode.strip().lower(), value.strip()
        if mode == "auto" and not sep:
            attach = DEFAULT_ATTACH_S if attach_trailing is None else attach_trailing
            return cls("auto", min_packets=min_packets, min_bytes=min_bytes, attach_trailing=attach, speed=speed)
        if not sep or not value or mode not in MODES or mode == "auto":
            raise SplitError(f"cannot read the split {text!r}: use gap=SECONDS, every=SECONDS, times=FILE or auto")
        attach = attach_trailing or 0.0
        if mode == "times":
            return cls(mode, times=read_times(Path(value)), times_file=value, min_packets=min_packets,
                       min_bytes=min_bytes, attach_trailing=attach, speed=speed)
        try:
            seconds = float(value)
        except ValueError:
            raise SplitError(f"{mode}= needs a number of seconds, not {value!r}") from None
        return cls(mode, seconds=seconds, min_packets=min_packets, min_bytes=min_bytes, attach_trailing=attach,
                   speed=speed)

    def __str__(self) -> str:
        if self.mode == "auto":
            return "auto"
        return f"times={self.times_file}" if self.mode == "times" else f"{self.mode}={self.seconds:g}"

    def settings(self) -> str:
        """Every setting of the cut, in the CLI's words: ``gap=4.2 min-packets=8 min-bytes=23000 attach-trailing=16``."""
        text = f"{self}"
        if self.mode == "gap":
            text = f"gap={self.seconds:.3g}"
        text += f" min-packets={self.min_packets} min-bytes={self.min_bytes}"
        if self.attach_trailing:
            text += f" attach-trailing={self.attach_trailing:g}"
        if self.speed != 1:
            text += f" speed={self.speed:g}"
        return text


def read_times(path: Path) -> tuple[float, ...]:
    """Start times, one per line: epoch seconds, seconds after the first packet, or ISO 8601.

    Blank lines and ``#`` comments are skipped; only the first field of a line
    (split on whitespace or a comma) is read. An ISO time without a zone is UTC.
    """
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise SplitError(f"cannot read the times file {path}: {exc.strerror}") from exc
    times: list[float] = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        first = re.split(r"[\s,]+", text)[0]
        times.append(_parse_time(first, path, number))
    return tuple(times)


def _parse_time(text: str, path: Path, line: int) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise SplitError(f"{path} line {line}: {text!r} is neither seconds nor an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


# --------------------------------------------------------------------------- the device and its traffic


@dataclass(frozen=True)
class DeviceGuess:
    """Which address is the device, and how that was decided (so a person can check it)."""

    ip: str
    method: str  # "given", "remote traffic", "connections opened", "client ports"
    score: int = 0  # bytes with remote servers, connections opened, or TCP bytes on the client end
    total: int = 0  # the same score summed over every candidate
    runner_up: str | None = None
    runner_up_score: int = 0

    def describe(self) -> str:
        if self.method == "given":
            return f"{self.ip} (given)"
        unit = {"remote traffic": "of the TCP bytes between local and remote addresses",
                "connections opened": "of the TCP connections opened (no local address talked to a remote one)",
                "client ports": "of the TCP bytes on a connection's client end, the higher port "
                                "(no connection opening seen)"}[self.method]
        share = f"{100 * self.score / self.total:.0f}%" if self.total else "all"
        text = f"{self.ip} (detected: {share} {unit}"
        if self.runner_up:
            text += f"; next {self.runner_up} with {100 * self.runner_up_score / max(self.total, 1):.0f}%"
        return text + ")"


def is_local(address: str) -> bool:
    """A private, loopback or link-local address: one that can be the device."""
    ip = ipaddress.ip_address(address)
    return ip.is_private or ip.is_loopback or ip.is_link_local


@dataclass
class Timeline:
    """The device's TCP packets of one capture, sorted by time."""

    path: Path
    device: DeviceGuess
    first_us: int  # first and last record of any kind
    last_us: int
    ts_us: np.ndarray
    size: np.ndarray  # IP bytes
    outbound: np.ndarray  # True when the device sent it
    stats: ReadStats

    def window(self, start_us: int, end_us: int) -> "Segment":
        """The device's traffic between two times (both included)."""
        lo = int(np.searchsorted(self.ts_us, start_us, "left"))
        hi = int(np.searchsorted(self.ts_us, end_us, "right"))
        size, out = self.size[lo:hi], self.outbound[lo:hi]
        return Segment(start_us, end_us, hi - lo, int(size[out].sum()), int(size[~out].sum()))


@dataclass
class _Packets:
    """Compact columns of every TCP packet of a capture (addresses as small ids)."""

    addresses: list[str] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)
    ts: array = field(default_factory=lambda: array("q"))
    src: array = field(default_factory=lambda: array("l"))
    dst: array = field(default_factory=lambda: array("l"))
    size: array = field(default_factory=lambda: array("l"))
    client_src: array = field(default_factory=lambda: array("b"))  # the sender's port is the higher one
    client_dst: array = field(default_factory=lambda: array("b"))  # the receiver's port is the higher one
    opens: array = field(default_factory=lambda: array("b"))  # a SYN without ACK

    def addr(self, text: str) -> int:
        found = self.ids.get(text)
        if found is None:
            found = self.ids[text] = len(self.addresses)
            self.addresses.append(text)
        return found


def _read_tcp(path: Path, stats: ReadStats) -> _Packets:
    cols = _Packets()
    for p in read_packets(path, stats):
        if p.proto != 6:
            continue
        cols.ts.append(p.ts_us)
        cols.src.append(cols.addr(p.src))
        cols.dst.append(cols.addr(p.dst))
        cols.size.append(p.ip_len)
        cols.client_src.append(1 if p.sport > p.dport else 0)
        cols.client_dst.append(1 if p.dport > p.sport else 0)
        cols.opens.append(1 if p.flags & TCP_SYN and not p.flags & TCP_ACK else 0)
    return cols


def detect_device(path: Path | str) -> DeviceGuess:
    """The device of a capture: the local address with the most TCP traffic to remote servers.

    Where no local address talks to a remote one (a lab on private addresses,
    loopback), the address that opened the most TCP connections; failing
    that (captures that start mid-connection), the one with the most TCP bytes
    as the client end of its connections (the higher port: servers listen on
    low ports like 443).
    """
    return _detect(_read_tcp(Path(path), ReadStats()), Path(path))


def _detect(cols: _Packets, path: Path) -> DeviceGuess:
    n = len(cols.addresses)
    if not n:
        raise SplitError(f"{path} holds no TCP traffic, so there is no device to find; give --device-ip")
    local = np.array([is_local(a) for a in cols.addresses])
    src = np.asarray(cols.src, dtype=np.int64)
    dst = np.asarray(cols.dst, dtype=np.int64)
    size = np.asarray(cols.size, dtype=np.int64)
    remote_pair = local[src] != local[dst]
    scores = np.bincount(np.where(local[src], src, dst)[remote_pair], size[remote_pair], minlength=n)
    method = "remote traffic"
    if not scores.any():
        opens = np.asarray(cols.opens, dtype=bool)
        scores, method = np.bincount(src[opens], minlength=n), "connections opened"
    if not scores.any():
        by_src, by_dst = np.asarray(cols.client_src, dtype=bool), np.asarray(cols.client_dst, dtype=bool)
        scores = (np.bincount(src[by_src], size[by_src], minlength=n)
                  + np.bincount(dst[by_dst], size[by_dst], minlength=n))
        method = "client ports"
    if not scores.any():
        raise SplitError(f"cannot tell the device in {path} (no connection opening, no client port); give --device-ip")
    order = np.argsort(-scores, kind="stable")
    best = int(order[0])
    second = int(order[1]) if n > 1 and scores[order[1]] > 0 else None
    total = int(scores.sum())
    return DeviceGuess(cols.addresses[best], method, int(scores[best]), total,
                       cols.addresses[second] if second is not None else None,
                       int(scores[second]) if second is not None else 0)


def load_timeline(path: Path | str, device_ip: str | None = None) -> Timeline:
    """Read *path* once; keep the device's TCP packets (detecting the device if not given).

    Raises :class:`CaptureError` for a file that is not a capture and
    :class:`SplitError` when the device cannot be found in it.
    """
    path = Path(path)
    stats = ReadStats()
    cols = _read_tcp(path, stats)
    if stats.first_ts is None:
        raise SplitError(f"{path} holds no packets")
    if device_ip is None:
        device = _detect(cols, path)
    else:
        device = DeviceGuess(_normal_ip(device_ip), "given")
    dev = cols.ids.get(device.ip)
    if dev is None:
        raise SplitError(f"no TCP packet of {path} comes from or goes to {device.ip}; check --device-ip "
                         "(leave it out to detect the device)")
    src = np.asarray(cols.src, dtype=np.int64)
    mine = (src == dev) | (np.asarray(cols.dst, dtype=np.int64) == dev)
    ts = np.asarray(cols.ts, dtype=np.int64)[mine]
    order = np.argsort(ts, kind="stable")
    return Timeline(
        path, device, round(stats.first_ts * 1e6), int(stats.last_ts_us if stats.last_ts_us is not None else 0),
        ts[order], np.asarray(cols.size, dtype=np.int64)[mine][order], (src[mine] == dev)[order], stats,
    )


def _normal_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise SplitError(f"{text!r} is not an IP address (--device-ip)") from None


# --------------------------------------------------------------------------- cutting


@dataclass(frozen=True)
class Segment:
    """One request: a time range of the capture (both ends included) and the device's traffic in it."""

    start_us: int
    end_us: int
    packets: int  # the device's TCP packets
    bytes_out: int  # IP bytes the device sent
    bytes_in: int  # IP bytes the device received

    @property
    def start(self) -> float:
        return self.start_us / 1e6

    @property
    def end(self) -> float:
        return self.end_us / 1e6

    @property
    def duration_s(self) -> float:
        return (self.end_us - self.start_us) / 1e6

    def big_enough(self, spec: SplitSpec) -> bool:
        return self.packets >= spec.min_packets and self.bytes_out + self.bytes_in >= spec.min_bytes


@dataclass
class SplitResult:
    """The requests found in one capture, and the bursts or windows set aside as keep-alives.

    ``spec`` is the cut that gives them: for ``--split auto``, the gap and
    keep-alive threshold chosen for this file (``asked`` is then the auto
    spec, and ``why`` says how they were chosen). ``attached`` counts the short
    bursts attached to the request before them.
    """

    timeline: Timeline
    spec: SplitSpec
    segments: list[Segment]
    ignored: list[Segment]
    attached: int = 0
    asked: SplitSpec | None = None
    why: str = ""
    expect: int | None = None

    @property
    def choice(self) -> str:
        """The settings that give this cut (``spec.settings()``), what the catalog keeps with each piece."""
        return self.spec.settings()

    def rows(self) -> list[dict[str, Any]]:
        """One row per request, for a table."""
        first = self.timeline.first_us
        return [
            {"request": i, "start": _iso(s.start_us), "offset_s": f"{(s.start_us - first) / 1e6:.3f}",
             "duration_s": f"{s.duration_s:.3f}", "packets": s.packets, "bytes_out": s.bytes_out,
             "bytes_in": s.bytes_in}
            for i, s in enumerate(self.segments, 1)
        ]

    def summary(self) -> dict[str, Any]:
        """One line of a folder's table: requests found, settings chosen and why, expected."""
        return {"file": str(self.timeline.path), "requests": len(self.segments), "expected": self.expect,
                "set_aside": len(self.ignored), "attached": self.attached, "settings": self.choice,
                "why": self.why}


def _iso(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us / 1e6, timezone.utc).isoformat(timespec="milliseconds")


def find_segments(timeline: Timeline, spec: SplitSpec, *, expect: int | None = None) -> SplitResult:
    """Cut *timeline* into requests as *spec* says (``auto``: as :func:`choose_cut` decides)."""
    if spec.mode == "auto":
        return choose_cut(timeline, spec, expect)
    attached = 0
    if spec.mode == "gap":
        candidates = _bursts(timeline, spec.us(spec.seconds))
        if spec.attach_trailing:
            candidates, attached = attach_trailing(timeline, candidates, spec)
    else:
        candidates = [timeline.window(a, b) for a, b in _windows(timeline, spec)]
    kept = [s for s in candidates if s.big_enough(spec)]
    ignored = [s for s in candidates if not s.big_enough(spec)]
    why = "as given" if spec.mode != "gap" or not attached else f"as given; {attached} trailing bursts attached"
    return SplitResult(timeline, spec, kept, ignored, attached, why=why, expect=expect)


def _bursts(timeline: Timeline, gap_us: int) -> list[Segment]:
    """Runs of the device's packets with no quiet stretch longer than *gap_us* inside."""
    ts = timeline.ts_us
    if not len(ts):
        return []
    breaks = np.flatnonzero(np.diff(ts) > gap_us) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(ts)])) - 1
    return [timeline.window(int(ts[a]), int(ts[b])) for a, b in zip(starts, ends)]


def attach_trailing(timeline: Timeline, bursts: Sequence[Segment], spec: SplitSpec) -> tuple[list[Segment], int]:
    """Attach each short burst that soon follows a request to that request; returns (bursts, attached).

    A burst is attached to the burst before it that is a request candidate
    (at least ``min_packets`` packets) when it starts at most
    ``spec.attach_trailing`` seconds after that one's last packet, lasts at
    most :data:`TRAILING_MAX_S` (from its first to its last packet bigger than a
    keep-alive's), holds at least ``min_packets`` packets (so
    not a keep-alive) and at most 1/:data:`TRAILING_RATIO` of the request's
    bytes. This is the Echo's own upload 8 to 15 s after an answer. A burst
    of fewer packets is attached too when one of them is bigger than a
    keep-alive's (:data:`~echolab.captures.keepalive.KEEPALIVE_MAX_PACKET`):
    the device's short report that it has played the answer, which a capture
    the collector makes for the request holds as well. The keep-alives in
    between become part of the request. The rule does not depend on
    ``min_bytes``, so a cut with the chosen threshold reproduces it.
    """
    window = spec.us(spec.attach_trailing)
    out: list[Segment] = []
    attached = 0
    last: int | None = None  # index in out of the last request candidate
    for b in bursts:
        size = b.bytes_out + b.bytes_in
        if b.packets < spec.min_packets:
            if last is not None and b.start_us - out[last].end_us <= window and len(_data_times_us(timeline, b)):
                # a few packets, one bigger than a keep-alive's: the device's word about the answer it just played
                merged = timeline.window(out[last].start_us, b.end_us)
                del out[last:]
                out.append(merged)
                attached += 1
                continue
            out.append(b)
            continue
        if last is not None:
            p = out[last]
            if (b.start_us - p.end_us <= window and _data_span_us(timeline, b) <= spec.us(TRAILING_MAX_S)
                    and p.bytes_out + p.bytes_in >= TRAILING_RATIO * size):
                merged = timeline.window(p.start_us, b.end_us)
                del out[last:]  # keep-alives between them are inside the request now
                out.append(merged)
                attached += 1
                continue
        out.append(b)
        last = len(out) - 1
    return out, attached


def _data_times_us(timeline: Timeline, seg: Segment) -> np.ndarray:
    """The times of the packets of *seg* bigger than a keep-alive."""
    lo = int(np.searchsorted(timeline.ts_us, seg.start_us, "left"))
    hi = int(np.searchsorted(timeline.ts_us, seg.end_us, "right"))
    return timeline.ts_us[lo:hi][timeline.size[lo:hi] > KEEPALIVE_MAX_PACKET]


def _data_span_us(timeline: Timeline, seg: Segment) -> int:
    """From the first to the last packet of *seg* bigger than a keep-alive (a keep-alive next to it does not count)."""
    ts = _data_times_us(timeline, seg)
    return int(ts[-1] - ts[0]) if len(ts) else 0


# --------------------------------------------------------------------------- --split auto


@dataclass(frozen=True)
class _Trial:
    """One candidate gap: the cut it gives (before the keep-alive threshold) and how good it is."""

    gap_us: int
    bursts: tuple[Segment, ...]
    attached: int
    count: int  # requests with the threshold below
    min_bytes: int  # keep-alive threshold for this gap
    separation: float  # smallest request's bytes over the biggest set-aside burst's (inf: none set aside)


def _quiet_times(timeline: Timeline, spec: SplitSpec) -> np.ndarray:
    """The device's distinct quiet stretches (µs) between AUTO_MIN_GAP_S and AUTO_MAX_GAP_S, ascending."""
    quiet = np.unique(np.diff(timeline.ts_us)) if len(timeline.ts_us) > 1 else np.array([], dtype=np.int64)
    return quiet[(quiet >= spec.us(AUTO_MIN_GAP_S)) & (quiet < spec.us(AUTO_MAX_GAP_S))]


def _trial(timeline: Timeline, spec: SplitSpec, gap_us: int, expect: int | None) -> _Trial:
    bursts = _bursts(timeline, gap_us)
    attached = 0
    if spec.attach_trailing:
        bursts, attached = attach_trailing(timeline, bursts, spec)
    sizes = sorted((b.bytes_out + b.bytes_in for b in bursts if b.packets >= spec.min_packets), reverse=True)
    sizes = [x for x in sizes if x >= spec.min_bytes]
    if expect is not None:
        if len(sizes) < expect or expect < 1:
            return _Trial(gap_us, tuple(bursts), attached, len(sizes), spec.min_bytes, 0.0)
        low = sizes[expect - 1]
        high = sizes[expect] if len(sizes) > expect else 0
    else:  # the biggest drop between consecutive burst sizes, when it is clear
        ratios = [(sizes[i] / max(sizes[i + 1], 1), i) for i in range(len(sizes) - 1)]
        best = max(ratios, default=(0.0, -1))
        if best[0] < 2 * AUTO_SEPARATION:
            return _Trial(gap_us, tuple(bursts), attached, len(sizes), spec.min_bytes, float("inf"))
        low, high = sizes[best[1]], sizes[best[1] + 1]
    threshold = max(spec.min_bytes, int(round((low * max(high, 1)) ** 0.5)) if high else spec.min_bytes)
    threshold = min(threshold, low)
    count = sum(1 for x in sizes if x >= threshold)
    return _Trial(gap_us, tuple(bursts), attached, count, threshold, low / high if high else float("inf"))


def choose_cut(timeline: Timeline, spec: SplitSpec, expect: int | None = None) -> SplitResult:
    """``--split auto``: the gap and keep-alive threshold for this file, and the cut they give.

    Every quiet stretch of the device between :data:`AUTO_MIN_GAP_S` and
    :data:`AUTO_MAX_GAP_S` is a candidate gap (a gap between two of them
    gives the same cut). For each, the bursts are cut, short trailing bursts
    attached (:func:`attach_trailing`), and the keep-alive threshold
    (``min_bytes``) set between the bursts kept and those set aside: with
    *expect* N, between the N-th biggest and the next one, and the candidate
    counts only when the N-th holds :data:`AUTO_SEPARATION` times the bytes of
    the next; without, at the biggest clear drop in size. Of the runs of
    neighbouring candidate gaps that give the same count (N, with *expect*),
    the widest (in ratio of its ends) wins, and the gap is the geometric
    middle of that range: as far from the quiet inside requests as from the
    quiet between them. The result's ``why`` says all of this in one line.
    """
    quiet = _quiet_times(timeline, spec)
    base = spec.us(AUTO_MIN_GAP_S)
    gaps = [base] + [int(q) for q in quiet if q > base]
    trials = [_trial(timeline, spec, g, expect) for g in gaps]

    def good(t: _Trial) -> bool:
        if expect is not None:
            return t.count == expect and t.separation >= AUTO_SEPARATION
        return t.count >= 1

    # runs of neighbouring candidates with the same count; a run's gaps reach up to the next candidate
    runs: list[tuple[int, int]] = []  # (first index, last index) into trials
    i = 0
    while i < len(trials):
        if not good(trials[i]):
            i += 1
            continue
        j = i
        while j + 1 < len(trials) and good(trials[j + 1]) and trials[j + 1].count == trials[i].count:
            j += 1
        runs.append((i, j))
        i = j + 1
    top = spec.us(AUTO_MAX_GAP_S)

    def bounds(run: tuple[int, int]) -> tuple[int, int]:
        lo = gaps[run[0]]
        hi = gaps[run[1] + 1] if run[1] + 1 < len(gaps) else top
        return lo, hi

    def width(run: tuple[int, int]) -> tuple[float, float]:
        lo, hi = bounds(run)
        return (hi / max(lo, 1), min(t.separation for t in trials[run[0]:run[1] + 1]))

    if not runs:
        # nothing gives the count asked: report the cut closest to it, so the user sees what is there
        best = min(range(len(trials)), key=lambda k: (abs(trials[k].count - (expect or 1)), -trials[k].separation))
        chosen = _concrete(spec, trials[best].gap_us, trials[best].min_bytes)
        result = find_segments(timeline, chosen, expect=expect)
        counts = sorted({t.count for t in trials})
        result.asked = spec
        result.why = (f"no gap from {AUTO_MIN_GAP_S:g} to {AUTO_MAX_GAP_S:g} s gives {expect} well-separated "
                      f"requests (the gaps tried give {', '.join(map(str, counts))}); closest: {chosen.settings()}")
        return result
    run = max(runs, key=width)
    lo, hi = bounds(run)
    middle = (lo * hi) ** 0.5
    # a round gap when one lies in the range; its cut is the candidate's at or below it
    result = None
    household = middle * spec.speed / 1e6  # the gap in the household's seconds
    for gap in (float(f"{household:.2g}"), float(f"{household:.3g}"), household):
        gap_us = spec.us(gap)
        if lo <= gap_us < hi:
            pick = bisect_right(gaps, gap_us) - 1
            chosen = _concrete(spec, gap_us, trials[pick].min_bytes)
            result = find_segments(timeline, chosen, expect=expect)
            break
    assert result is not None
    t = trials[pick]
    aside = f"{t.min_bytes / t.separation / 1000:.1f} kB" if t.separation != float("inf") else "none"
    counted = f"{expect} expected" if expect is not None else "the count that holds over the widest range of gaps"
    result.asked = spec
    result.why = (f"{len(result.segments)} requests ({counted}) for any gap from {lo * spec.speed / 1e6:.2f} to "
                  f"{hi * spec.speed / 1e6:.2f} s: gap {result.spec.seconds:g} s in the middle; keep-alive threshold "
                  f"{result.spec.min_bytes} bytes (smallest request {min(s.bytes_out + s.bytes_in for s in result.segments) / 1000:.1f} kB, "
                  f"biggest burst set aside {aside}); {result.attached} trailing bursts attached "
                  f"(within {spec.attach_trailing:g} s)")
    return result


def _concrete(spec: SplitSpec, gap_us: int, min_bytes: int) -> SplitSpec:
    return SplitSpec("gap", gap_us * spec.speed / 1e6, min_packets=spec.min_packets, min_bytes=min_bytes,
                     speed=spec.speed,
                     attach_trailing=spec.attach_trailing)


def _windows(timeline: Timeline, spec: SplitSpec) -> list[tuple[int, int]]:
    """Schedule windows: each runs to the microsecond before the next start; the last to the end."""
    first, last = timeline.first_us, timeline.last_us
    if spec.mode == "every":
        step = round(spec.seconds * 1e6)
        starts = list(range(first, last + 1, step))
    else:
        starts = [round(t * 1e6) if t >= ABSOLUTE_EPOCH else first + round(t * 1e6) for t in spec.times]
        for i, (a, b) in enumerate(zip(starts, starts[1:]), 2):
            if b <= a:
                raise SplitError(f"the times in {spec.times_file} must increase (entry {i} is not after entry {i - 1})")
    ends = [b - 1 for b in starts[1:]] + [max(last, starts[-1])]
    return list(zip(starts, ends))


def split_capture(path: Path | str, spec: SplitSpec, device_ip: str | None = None, *,
                  expect: int | None = None) -> SplitResult:
    """Find the requests of the capture at *path* (one read of the file); *expect* guides ``auto``."""
    return find_segments(load_timeline(path, device_ip), spec, expect=expect)


# --------------------------------------------------------------------------- writing the pieces
# Raw records are copied, never decoded: a pcapng source keeps its own section
# and interface blocks; a pcap source gets a pcapng section and one interface
# with its link type, snap length and time resolution.

_SECTION, _HEADER, _PACKET = range(3)
_SHB_LE = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
MAX_OPEN = 64  # piece files kept open at once


def _pcap_idb(linktype: int, snaplen: int, nano: bool) -> bytes:
    opts = struct.pack("<HHB3xHH", 9, 1, 9, 0, 0) if nano else b""  # if_tsresol=9, end of options
    blen = 20 + len(opts)
    return struct.pack("<IIHHI", 1, blen, linktype, 0, snaplen) + opts + struct.pack("<I", blen)


def _raw_pcap(fh: BinaryIO, path: Path) -> Iterator[tuple[int, int, bytes]]:
    header = read_pcap_header(fh, path)
    endian, nano = header.endian, header.nano
    yield _SECTION, 0, _SHB_LE
    yield _HEADER, 0, _pcap_idb(header.linktype, header.snaplen, nano)
    rec = struct.Struct(endian + "IIII").unpack
    units = 1_000_000_000 if nano else 1_000_000
    while len(hdr := fh.read(16)) == 16:
        sec, frac, caplen, origlen = rec(hdr)
        if caplen > MAX_RECORD:
            return
        data = fh.read(caplen)
        if len(data) < caplen:
            return
        raw = sec * units + frac
        pad = -caplen % 4
        blen = 32 + caplen + pad
        block = struct.pack("<IIIIIII", 6, blen, 0, raw >> 32, raw & 0xFFFFFFFF, caplen, origlen) + data \
            + b"\0" * pad + struct.pack("<I", blen)
        yield _PACKET, sec * 1_000_000 + (frac // 1000 if nano else frac), block


def _raw_pcapng(fh: BinaryIO, path: Path) -> Iterator[tuple[int, int, bytes]]:
    endian = "<"
    ifaces: list[tuple[int, int, int]] = []
    while len(head := fh.read(8)) == 8:
        if head[:4] == PCAPNG_MAGIC:
            bom = fh.read(4)
            endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">" if bom == b"\x1a\x2b\x3c\x4d" else ""
            if not endian:
                return
            blen = struct.unpack(endian + "I", head[4:8])[0]
            body = fh.read(blen - 12)
            if blen < 28 or len(body) < blen - 12:
                return
            block = bytearray(head + bom + body)
            block[16:24] = b"\xff" * 8  # section length: unknown (the piece is shorter)
            ifaces = []
            yield _SECTION, 0, bytes(block)
            continue
        btype, blen = struct.unpack(endian + "II", head)
        if blen < 12 or blen % 4 or blen > MAX_RECORD:
            return
        body = fh.read(blen - 8)
        if len(body) < blen - 8:
            return
        if btype in (6, 2):  # enhanced / obsolete packet block
            if btype == 6:
                iface, hi, lo = struct.unpack_from(endian + "III", body, 0)
            else:
                iface, _drops, hi, lo = struct.unpack_from(endian + "HHII", body, 0)
            if iface >= len(ifaces):
                continue
            _lt, units, offset = ifaces[iface]
            raw = (hi << 32) | lo
            ts_us = raw if units == 1_000_000 else raw * 1_000_000 // units
            yield _PACKET, ts_us + offset * 1_000_000, head + body
        elif btype == 1:
            ifaces.append(_pcapng_iface(body, endian))
            yield _HEADER, 0, head + body
        elif btype not in (3, 5):  # simple packet blocks have no time; interface statistics would be wrong
            yield _HEADER, 0, head + body


def raw_blocks(path: Path | str) -> Iterator[tuple[int, int, bytes]]:
    """``(kind, ts_us, block)`` per block, as pcapng blocks (a pcap file is converted record by record)."""
    path = Path(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise CaptureError(f"cannot open {path}: {exc.strerror}") from exc
    with fh:
        magic = fh.read(4)
        fh.seek(0)
        if magic in PCAP_MAGICS:
            yield from _raw_pcap(fh, path)
        elif magic == PCAPNG_MAGIC:
            yield from _raw_pcapng(fh, path)
        else:
            raise CaptureError(f"{path} is not a pcap or pcapng capture")


class _Pieces:
    """The open piece files; each gets the section and interface blocks before its first packet."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = paths
        self.section = 0
        self.headers: list[bytes] = []
        self.written: dict[int, tuple[int, int]] = {}  # piece -> (section, header blocks written)
        self.open: OrderedDict[int, BinaryIO] = OrderedDict()

    def header(self, kind: int, block: bytes) -> None:
        if kind == _SECTION:
            self.section += 1
            self.headers = []
        self.headers.append(block)

    def packet(self, piece: int, block: bytes) -> None:
        fh = self._handle(piece)
        section, done = self.written.get(piece, (-1, 0))
        if section != self.section:
            done = 0
        for hdr in self.headers[done:]:
            fh.write(hdr)
        self.written[piece] = (self.section, len(self.headers))
        fh.write(block)

    def _handle(self, piece: int) -> BinaryIO:
        fh = self.open.pop(piece, None)
        if fh is None:
            if len(self.open) >= MAX_OPEN:
                self.open.popitem(last=False)[1].close()
            fh = open(self.paths[piece], "ab" if piece in self.written else "wb")
        self.open[piece] = fh
        return fh

    def close(self) -> None:
        for fh in self.open.values():
            fh.close()
        for piece, path in enumerate(self.paths):
            if piece not in self.written:  # no packet fell in it: a valid, empty capture
                path.write_bytes(b"".join(self.headers))


def write_pieces(source: Path | str, segments: Sequence[Segment], out_dir: Path, *, stem: str = "piece") -> list[Path]:
    """Write the records of each segment (``start_us <= t <= end_us``) to its own pcapng.

    One pass over *source*; records are copied byte for byte, times kept.
    Segments must not overlap. Returns the paths, in the order of *segments*.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    order = sorted(range(len(segments)), key=lambda i: segments[i].start_us)
    starts = [segments[i].start_us for i in order]
    for a, b in zip(order, order[1:]):
        if segments[b].start_us <= segments[a].end_us:
            raise SplitError("segments overlap; cannot write them as separate pieces")
    paths = [out_dir / f"{stem}_{i + 1:04d}.pcapng" for i in range(len(segments))]
    pieces = _Pieces(paths)
    try:
        for kind, ts_us, block in raw_blocks(source):
            if kind != _PACKET:
                pieces.header(kind, block)
                continue
            k = bisect_right(starts, ts_us) - 1
            if k >= 0 and ts_us <= segments[order[k]].end_us:
                pieces.packet(order[k], block)
    finally:
        pieces.close()
    return paths


# --------------------------------------------------------------------------- the preview plot


def plot_segments(result: SplitResult, out: Path, *, bin_s: float | None = None) -> Path:
    """A PNG of the device's bytes per time bin (sent up, received down) with the requests as spans."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tl = result.timeline
    span_s = max((tl.last_us - tl.first_us) / 1e6, 1e-3)
    bin_s = bin_s or max(span_s / 800, 1e-3)
    edges = np.arange(0, span_s + bin_s, bin_s)
    t = (tl.ts_us - tl.first_us) / 1e6
    out_b, _ = np.histogram(t[tl.outbound], edges, weights=tl.size[tl.outbound])
    in_b, _ = np.histogram(t[~tl.outbound], edges, weights=tl.size[~tl.outbound])
    fig = Figure(figsize=(12, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.bar(edges[:-1], out_b, width=bin_s, align="edge", color="tab:blue", label="sent by the device")
    ax.bar(edges[:-1], -in_b, width=bin_s, align="edge", color="tab:orange", label="received by the device")
    top = max(out_b.max(initial=0), in_b.max(initial=0), 1)
    for i, seg in enumerate(result.segments, 1):
        a, b = (seg.start_us - tl.first_us) / 1e6, (seg.end_us - tl.first_us) / 1e6
        ax.axvspan(a, max(b, a + bin_s), color="tab:green", alpha=0.2)
        ax.text(a, 0.97, str(i), fontsize=8, va="top", transform=ax.get_xaxis_transform())
    for seg in result.ignored:
        ax.axvline((seg.start_us - tl.first_us) / 1e6, color="grey", linewidth=0.5, linestyle=":")
    ax.set_xlim(0, span_s)
    ax.set_ylim(-top * 1.15, top * 1.15)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xlabel("seconds after the first packet")
    ax.set_ylabel(f"IP bytes per {bin_s:.3g} s bin\n(sent up, received down)")
    ax.set_title(f"{tl.path.name}: device {tl.device.ip}, {result.spec}: {len(result.segments)} requests "
                 f"(green), {len(result.ignored)} set aside (dotted)", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


__all__ = [
    "DEFAULT_ATTACH_S", "DEFAULT_GAP_S", "DEFAULT_MIN_BYTES", "attach_trailing", "choose_cut", "DEFAULT_MIN_PACKETS", "DeviceGuess", "Segment", "SplitError",
    "SplitResult", "SplitSpec", "Timeline", "detect_device", "find_segments", "is_local", "load_timeline",
    "plot_segments", "raw_blocks", "read_times", "split_capture", "write_pieces",
]
