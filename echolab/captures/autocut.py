"""``--split auto``: the gap and the keep-alive threshold chosen for each file, and the cut they give.

Every quiet stretch of the device within the rules' range of gaps is a
*candidate* gap; each candidate is cut (:mod:`echolab.captures.cut`) and scored,
and the widest range of candidates that agree on the count of requests decides
(:func:`choose_cut`).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

import numpy as np

from echolab.captures.cut import SplitResult, bursts, attach_trailing, find_segments
from echolab.captures.rules import RULES
from echolab.captures.spec import SplitSpec
from echolab.captures.timeline import Segment, Timeline


@dataclass(frozen=True)
class _Candidate:
    """One candidate gap: the cut it gives (before the keep-alive threshold) and how good it is."""

    gap_us: int
    bursts: tuple[Segment, ...]
    attached: int
    count: int  # requests with the threshold below
    min_bytes: int  # keep-alive threshold for this gap
    separation: float  # smallest request's bytes over the biggest set-aside burst's (inf: none set aside)


def _quiet_times(timeline: Timeline, spec: SplitSpec) -> np.ndarray:
    """The device's distinct quiet stretches (µs) between RULES.auto_min_gap_s and RULES.auto_max_gap_s, ascending."""
    quiet = np.unique(np.diff(timeline.ts_us)) if len(timeline.ts_us) > 1 else np.array([], dtype=np.int64)
    return quiet[(quiet >= spec.us(RULES.auto_min_gap_s)) & (quiet < spec.us(RULES.auto_max_gap_s))]


def _candidate(timeline: Timeline, spec: SplitSpec, gap_us: int, expect: int | None) -> _Candidate:
    found = bursts(timeline, gap_us)
    attached = 0
    if spec.attach_trailing:
        found, attached = attach_trailing(timeline, found, spec)
    sizes = sorted((b.bytes_out + b.bytes_in for b in found if b.packets >= spec.min_packets), reverse=True)
    sizes = [x for x in sizes if x >= spec.min_bytes]
    if expect is not None:
        if len(sizes) < expect or expect < 1:
            return _Candidate(gap_us, tuple(found), attached, len(sizes), spec.min_bytes, 0.0)
        low = sizes[expect - 1]
        high = sizes[expect] if len(sizes) > expect else 0
    else:  # the biggest drop between consecutive burst sizes, when it is clear
        ratios = [(sizes[i] / max(sizes[i + 1], 1), i) for i in range(len(sizes) - 1)]
        best = max(ratios, default=(0.0, -1))
        if best[0] < 2 * RULES.auto_separation:
            return _Candidate(gap_us, tuple(found), attached, len(sizes), spec.min_bytes, float("inf"))
        low, high = sizes[best[1]], sizes[best[1] + 1]
    threshold = max(spec.min_bytes, int(round((low * max(high, 1)) ** 0.5)) if high else spec.min_bytes)
    threshold = min(threshold, low)
    count = sum(1 for x in sizes if x >= threshold)
    return _Candidate(gap_us, tuple(found), attached, count, threshold, low / high if high else float("inf"))


def choose_cut(timeline: Timeline, spec: SplitSpec, expect: int | None = None) -> SplitResult:
    """``--split auto``: the gap and keep-alive threshold for this file, and the cut they give.

    Every quiet stretch of the device between :attr:`~echolab.captures.rules.TrafficRules.auto_min_gap_s` and
    :attr:`~echolab.captures.rules.TrafficRules.auto_max_gap_s` is a candidate gap (a gap between two of them
    gives the same cut). For each, the bursts are cut, short trailing bursts
    attached (:func:`attach_trailing`), and the keep-alive threshold
    (``min_bytes``) set between the bursts kept and those set aside: with
    *expect* N, between the N-th biggest and the next one, and the candidate
    counts only when the N-th holds :attr:`~echolab.captures.rules.TrafficRules.auto_separation` times the bytes of
    the next; without, at the biggest clear drop in size. Of the runs of
    neighbouring candidate gaps that give the same count (N, with *expect*),
    the widest (in ratio of its ends) wins, and the gap is the geometric
    middle of that range: as far from the quiet inside requests as from the
    quiet between them. The result's ``why`` says all of this in one line.
    """
    quiet = _quiet_times(timeline, spec)
    base = spec.us(RULES.auto_min_gap_s)
    gaps = [base] + [int(q) for q in quiet if q > base]
    candidates = [_candidate(timeline, spec, g, expect) for g in gaps]

    def good(t: _Candidate) -> bool:
        if expect is not None:
            return t.count == expect and t.separation >= RULES.auto_separation
        return t.count >= 1

    # runs of neighbouring candidates with the same count; a run's gaps reach up to the next candidate
    runs: list[tuple[int, int]] = []  # (first index, last index) into candidates
    i = 0
    while i < len(candidates):
        if not good(candidates[i]):
            i += 1
            continue
        j = i
        while j + 1 < len(candidates) and good(candidates[j + 1]) and candidates[j + 1].count == candidates[i].count:
            j += 1
        runs.append((i, j))
        i = j + 1
    top = spec.us(RULES.auto_max_gap_s)

    def bounds(run: tuple[int, int]) -> tuple[int, int]:
        lo = gaps[run[0]]
        hi = gaps[run[1] + 1] if run[1] + 1 < len(gaps) else top
        return lo, hi

    def width(run: tuple[int, int]) -> tuple[float, float]:
        lo, hi = bounds(run)
        return (hi / max(lo, 1), min(t.separation for t in candidates[run[0]:run[1] + 1]))

    if not runs and expect is not None:
        # nothing gives the count asked: never force it; the cut chosen without it, marked as not fitting
        counts = sorted({t.count for t in candidates})
        result = choose_cut(timeline, spec, None)
        result.expect, result.fits = expect, False
        result.why = (f"no gap from {RULES.auto_min_gap_s:g} to {RULES.auto_max_gap_s:g} s gives {expect} "
                      f"well-separated requests (the gaps tried give {', '.join(map(str, counts))}); without "
                      f"--expect: {result.why}")
        return result
    if not runs:
        # nothing gives the count asked: report the cut closest to it, so the user sees what is there
        best = min(range(len(candidates)), key=lambda k: (abs(candidates[k].count - (expect or 1)), -candidates[k].separation))
        chosen = _concrete(spec, candidates[best].gap_us, candidates[best].min_bytes)
        result = find_segments(timeline, chosen, expect=expect)
        counts = sorted({t.count for t in candidates})
        result.asked = spec
        result.why = (f"no gap from {RULES.auto_min_gap_s:g} to {RULES.auto_max_gap_s:g} s gives {expect} well-separated "
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
            chosen = _concrete(spec, gap_us, candidates[pick].min_bytes)
            result = find_segments(timeline, chosen, expect=expect)
            break
    assert result is not None
    t = candidates[pick]
    aside = f"{t.min_bytes / t.separation / 1000:.1f} kB" if t.separation != float("inf") else "none"
    counted = f"{expect} expected" if expect is not None else "the count that holds over the widest range of gaps"
    result.asked = spec
    result.gap_range_s = (lo * spec.speed / 1e6, hi * spec.speed / 1e6)
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


__all__ = ["choose_cut"]
