"""Cutting a long capture into one capture per request.

A long capture (an Echo answering a timed script for an hour, or a day of a
household) holds many requests, but every analysis works on one capture per
labelled request. :func:`find_segments` cuts the device's timeline
(:mod:`echolab.captures.timeline`) as a :class:`~echolab.captures.spec.SplitSpec`
says: by quiet time (``gap=SECONDS``: a *burst* is a run of the device's packets
with no quiet stretch longer than the gap inside), by a fixed schedule
(``every=SECONDS``, ``times=FILE``) or ``auto`` (:mod:`echolab.captures.autocut`).
Bursts or windows with too little of the device's traffic (keep-alives) are set
aside, not returned as requests; a short burst soon after a request (the Echo's
own upload after an answer) can be attached to it (:func:`attach_trailing`).
Every threshold is a rule of :data:`echolab.captures.rules.RULES`.
:mod:`echolab.captures.pieces` writes the requests found as pcapng files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from echolab.captures.device import load_timeline
from echolab.captures.rules import RULES, runs
from echolab.captures.spec import ABSOLUTE_EPOCH, SplitError, SplitSpec
from echolab.captures.timeline import Segment, Timeline

MAX_WINDOWS = 100_000  # every=SECONDS windows in one capture: more means a wrong interval or damaged times


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
    #: False when ``--split auto --expect N`` found no cut of N well-separated requests (the cut is then the
    #: one auto chooses without N, not one forced to N; :mod:`echolab.captures.quality` marks the file suspect)
    fits: bool = True
    #: ``--split auto``: the range of gaps (household seconds) that all give this cut
    gap_range_s: tuple[float, float] | None = None

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
        from echolab.captures.autocut import choose_cut  # it cuts with this function

        return choose_cut(timeline, spec, expect)
    attached = 0
    if spec.mode == "gap":
        candidates = bursts(timeline, spec.us(spec.seconds))
        if spec.attach_trailing:
            candidates, attached = attach_trailing(timeline, candidates, spec)
    else:
        candidates = [timeline.window(a, b) for a, b in _windows(timeline, spec)]
    kept = [s for s in candidates if s.big_enough(spec)]
    ignored = [s for s in candidates if not s.big_enough(spec)]
    why = "as given" if spec.mode != "gap" or not attached else f"as given; {attached} trailing bursts attached"
    return SplitResult(timeline, spec, kept, ignored, attached, why=why, expect=expect)


def bursts(timeline: Timeline, gap_us: int) -> list[Segment]:
    """Bursts: runs of the device's packets with no quiet stretch longer than *gap_us* inside."""
    ts = timeline.ts_us
    return [timeline.window(int(ts[a]), int(ts[b - 1])) for a, b in runs(ts, gap_us)]


def attach_trailing(timeline: Timeline, bursts: Sequence[Segment], spec: SplitSpec) -> tuple[list[Segment], int]:
    """Attach each short burst that soon follows a request to that request; returns (bursts, attached).

    A burst is attached to the burst before it that is a request candidate
    (at least ``min_packets`` packets) when it starts at most
    ``spec.attach_trailing`` seconds after that one's last packet, lasts at
    most :attr:`~echolab.captures.rules.TrafficRules.trailing_max_s` (from its first to its last packet bigger than a
    keep-alive's), holds at least ``min_packets`` packets (so
    not a keep-alive) and at most 1/:attr:`~echolab.captures.rules.TrafficRules.trailing_ratio` of the request's
    bytes. This is the Echo's own upload 8 to 15 s after an answer. A burst
    of fewer packets is attached too when one of them is bigger than a
    keep-alive's (:attr:`~echolab.captures.rules.TrafficRules.keepalive_max_packet_bytes`):
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
            if (b.start_us - p.end_us <= window and _data_span_us(timeline, b) <= spec.us(RULES.trailing_max_s)
                    and p.bytes_out + p.bytes_in >= RULES.trailing_ratio * size):
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
    return timeline.ts_us[lo:hi][timeline.size[lo:hi] > RULES.keepalive_max_packet_bytes]


def _data_span_us(timeline: Timeline, seg: Segment) -> int:
    """From the first to the last packet of *seg* bigger than a keep-alive (a keep-alive next to it does not count)."""
    ts = _data_times_us(timeline, seg)
    return int(ts[-1] - ts[0]) if len(ts) else 0




def _windows(timeline: Timeline, spec: SplitSpec) -> list[tuple[int, int]]:
    """Schedule windows: each runs to the microsecond before the next start; the last to the end."""
    first, last = timeline.first_us, timeline.last_us
    if len(timeline.ts_us):  # records out of time order: the device's packets still fall in a window
        first, last = min(first, int(timeline.ts_us[0])), max(last, int(timeline.ts_us[-1]))
    if spec.mode == "every":
        step = max(1, round(spec.seconds * 1e6))
        if (last - first) // step >= MAX_WINDOWS:
            raise SplitError(f"every={spec.seconds:g} cuts this capture's {(last - first) / 1e6:.0f} s into more than "
                             f"{MAX_WINDOWS} windows; give a longer interval")
        starts = list(range(first, last + 1, step))
    else:
        starts = [round(t * 1e6) if t >= ABSOLUTE_EPOCH else first + round(t * 1e6) for t in spec.times]
        for i, (a, b) in enumerate(zip(starts, starts[1:]), 2):
            if b <= a:
                raise SplitError(f"the times in {spec.times_file} must increase (entry {i} is not after entry {i - 1})")
    if not starts:  # no packet of the device to schedule
        return []
    ends = [b - 1 for b in starts[1:]] + [max(last, starts[-1])]
    return list(zip(starts, ends))


def split_capture(path: Path | str, spec: SplitSpec, device_ip: str | None = None, *,
                  expect: int | None = None) -> SplitResult:
    """Find the requests of the capture at *path* (one read of the file); *expect* guides ``auto``."""
    return find_segments(load_timeline(path, device_ip), spec, expect=expect)


__all__ = ["MAX_WINDOWS", "SplitResult", "attach_trailing", "find_segments", "split_capture"]
