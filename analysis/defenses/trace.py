"""A defended packet sequence, and the constant-rate sender several defenses share.

A defense reads a capture's packet sequence: times in seconds since its first
packet and signed sizes (IP total length, positive from the device to a server,
negative from a server to the device; see
:mod:`echolab.analysis.features.sequence`). It returns a :class:`Defended`
sequence: the packets on the wire after the defense, each with the number of
the capture's own (real) bytes it carries. A packet that carries none is a
dummy. Real bytes are a stream per direction: a defense may pad, split, merge
or delay them, never drop or reorder them, and never send one before the
undefended capture did (:func:`check_real_bytes` holds every defense to that).
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Iterator

import numpy as np

from echolab.errors import EcholabError


class DefenseError(EcholabError):
    """A defense cannot be named, set up or applied as asked."""


#: The longest capture a defense is applied to, seconds from its first packet to its last (a request to an
#: Echo lasts seconds; a trace from someone else may claim a gap of centuries).
MAX_DEFENDED_SPAN_S = 3600.0
#: The most bytes (both directions) of a capture a defense is applied to.
MAX_DEFENDED_BYTES = 1 << 30
#: The most packets a defense may put on the wire for one capture (a constant-rate sender at its
#: parameters' extremes, or padding to tiny packets, would otherwise fill the memory).
MAX_DEFENDED_PACKETS = 5_000_000


def check_packets(count: float, what: str = "the defense") -> None:
    """Raise :class:`DefenseError` when *count* packets are more than :data:`MAX_DEFENDED_PACKETS`."""
    if not count <= MAX_DEFENDED_PACKETS:
        raise DefenseError(f"{what} would send more than {MAX_DEFENDED_PACKETS:,} packets for one capture",
                           hint="check the defense's parameters and the capture's length")


def check_limits(times: np.ndarray, sizes: np.ndarray) -> None:
    """Raise :class:`DefenseError` for a sequence longer than :data:`MAX_DEFENDED_SPAN_S` or larger than
    :data:`MAX_DEFENDED_BYTES` (times in seconds, signed sizes; as :func:`as_arrays` gives them)."""
    if len(times) and not np.all(np.isfinite(times)):
        raise DefenseError("a packet sequence's times must be finite")
    span = float(times[-1] - times[0]) if len(times) else 0.0
    if span > MAX_DEFENDED_SPAN_S:
        raise DefenseError(f"it lasts {span:.6g} s, longer than the {MAX_DEFENDED_SPAN_S:g} s a defense is applied to")
    total = int(np.abs(sizes).sum(dtype=object)) if len(sizes) else 0
    if total > MAX_DEFENDED_BYTES:
        raise DefenseError(f"it holds {total:,} bytes, more than the {MAX_DEFENDED_BYTES:,} a defense is applied to")


@dataclass(frozen=True)
class Defended:
    """Packets on the wire after a defense, in time order.

    ``times`` (seconds, on the undefended capture's clock),
    ``sizes`` (signed bytes, positive from the device), ``real`` (bytes of the
    capture's own traffic each packet carries, 0 for a dummy).
    """

    times: np.ndarray
    sizes: np.ndarray
    real: np.ndarray

    @classmethod
    def merge(cls, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> "Defended":
        """One sequence from per-direction parts (times, signed sizes, real bytes), ordered by time (stable)."""
        times = np.concatenate([np.asarray(p[0], dtype=float) for p in parts]) if parts else np.zeros(0)
        sizes = np.concatenate([np.asarray(p[1], dtype=np.int64) for p in parts]) if parts else np.zeros(0, np.int64)
        real = np.concatenate([np.asarray(p[2], dtype=np.int64) for p in parts]) if parts else np.zeros(0, np.int64)
        keep = sizes != 0
        times, sizes, real = times[keep], sizes[keep], real[keep]
        order = np.argsort(times, kind="stable")
        return cls(times[order], sizes[order], real[order])

    @classmethod
    def unchanged(cls, times: np.ndarray, sizes: np.ndarray) -> "Defended":
        sizes = np.asarray(sizes, dtype=np.int64)
        return cls(np.asarray(times, dtype=float), sizes, np.abs(sizes))

    @property
    def dummies(self) -> int:
        return int(np.sum(self.real == 0))

    def times_us(self) -> list[int]:
        """Times in whole microseconds from the first packet on the wire (what a trace file holds)."""
        if not len(self.times):
            return []
        us = np.round(self.times * 1e6).astype(np.int64)
        return (us - us[0]).tolist()


def as_arrays(times: object, sizes: object) -> tuple[np.ndarray, np.ndarray]:
    """(times in seconds, signed sizes) as arrays, checked: same length, no zero size, times not decreasing."""
    t = np.asarray(times, dtype=float)
    s = np.asarray(sizes, dtype=np.int64)
    if t.shape != s.shape or t.ndim != 1:
        raise DefenseError(f"a packet sequence needs one time per size, got {t.shape} and {s.shape}")
    if np.any(s == 0):
        raise DefenseError("a packet sequence cannot hold a packet of size 0")
    if len(t) > 1 and np.any(np.diff(t) < 0):
        raise DefenseError("a packet sequence's times must not decrease")
    return t, s


def direction(times: np.ndarray, sizes: np.ndarray, sign: int) -> tuple[np.ndarray, np.ndarray]:
    """(times, unsigned sizes) of one direction (``1`` from the device, ``-1`` to it)."""
    keep = sizes > 0 if sign > 0 else sizes < 0
    return times[keep], np.abs(sizes[keep])


def directions(times: np.ndarray, sizes: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(sign, times, unsigned sizes)`` of each direction that has packets, from the device (1) first."""
    for sign in (1, -1):
        t, b = direction(times, sizes, sign)
        if len(b):
            yield sign, t, b


def constant_rate(arrivals: np.ndarray, nbytes: np.ndarray, *, start: float, interval: float,
                  size: int) -> tuple[np.ndarray, np.ndarray]:
    """A sender of one *size*-byte packet every *interval* seconds from *start*, until its queue empties.

    Returns (slot times, real bytes of each slot): a slot carries what has
    arrived by its time and is not yet sent, at most *size*. The sent total
    follows S_k = min(S_{k-1} + size, A(t_k)) with A the arrived total,
    i.e. S_k = k*size + min(size, min_{j<=k}(A(t_j) - j*size)), computed at once.
    The caller adds padding slots past the last one returned.
    """
    total = int(nbytes.sum())
    if total == 0:
        return np.zeros(0), np.zeros(0, np.int64)
    last = float(arrivals[-1]) if len(arrivals) else start
    n_float = math.ceil(max(last - start, 0.0) / interval) + math.ceil(total / size) + 2
    check_packets(n_float, "a constant-rate sender")
    n = int(n_float)
    slots = start + interval * np.arange(n)
    cum = np.concatenate([[0], np.cumsum(nbytes)])
    arrived = cum[np.searchsorted(arrivals, slots + 1e-12, side="right")]
    k = np.arange(n, dtype=np.int64)
    sent = k * size + np.minimum(size, np.minimum.accumulate(arrived - k * size))
    done = int(np.argmax(sent >= total))
    sent = sent[: done + 1]
    real = np.diff(np.concatenate([[0], sent]))
    return slots[: done + 1], real.astype(np.int64)


def check_real_bytes(times: np.ndarray, sizes: np.ndarray, defended: Defended) -> None:
    """Raise :class:`DefenseError` unless *defended* carries each direction's real bytes, none early.

    Per direction: the real bytes total the capture's own; no packet carries
    more real bytes than its size; and by any time no more real bytes are sent
    than the capture had sent by then (bytes are a stream, so none is reordered).
    """
    for sign in (1, -1):
        t, b = direction(times, sizes, sign)
        keep = defended.sizes > 0 if sign > 0 else defended.sizes < 0
        dt, ds, dr = defended.times[keep], np.abs(defended.sizes[keep]), defended.real[keep]
        if int(dr.sum()) != int(b.sum()):
            raise DefenseError(f"direction {sign:+d}: {int(dr.sum())} real bytes sent, the capture has {int(b.sum())}")
        if np.any(dr > ds) or np.any(dr < 0):
            raise DefenseError(f"direction {sign:+d}: a packet carries more real bytes than its size")
        cum = np.concatenate([[0], np.cumsum(b)])
        available = cum[np.searchsorted(t, dt + 1e-9, side="right")]
        if np.any(np.cumsum(dr) > available):
            raise DefenseError(f"direction {sign:+d}: real bytes sent before the capture sent them")
