"""Packet padding (to the MTU, to fixed buckets) and size noise after Wang et al.'s d*-privacy.

None of these changes when a packet is sent, except that size noise may hold
bytes back: a packet made smaller than it was leaves its remaining bytes for
the next packet of its direction.
"""

from __future__ import annotations

import math

import numpy as np

from echolab.analysis.defenses.registry import Defense, Param
from echolab.analysis.defenses.trace import Defended, check_packets, directions


class MtuPadding(Defense):
    """Every packet padded to the MTU (a packet larger than it is cut into MTU-sized ones)."""

    name = "mtu"
    params = (Param("mtu", "int", 1500, "packet size on the wire, bytes", 1),)
    models = ("device and cloud both pad every packet (pure ACKs included) to the MTU at the TLS/IP layer; "
              "no packet is delayed")
    cite = "Dyer et al., Peek-a-Boo, I Still See You, IEEE S&P 2012 (packet padding, BuFLO with d=MTU and no timing)"

    def _apply(self, times: np.ndarray, sizes: np.ndarray, rng: np.random.Generator) -> Defended:
        return pad_each(times, sizes, lambda s: np.full_like(s, self.mtu), self.mtu)


class BucketPadding(Defense):
    """Every packet padded to the smallest bucket that holds it."""

    name = "buckets"
    params = (Param("sizes", "sizes", (128, 256, 512, 1024, 1500), "bucket sizes, bytes; the largest is the MTU", 1),)
    models = "device and cloud both pad every packet up to the next bucket size; no packet is delayed"
    cite = ("Dyer et al., IEEE S&P 2012 (fixed-size padding schemes); "
            "Pironti et al., Identifying website users by TLS traffic analysis, ESORICS 2012 (length-hiding buckets)")

    def _apply(self, times: np.ndarray, sizes: np.ndarray, rng: np.random.Generator) -> Defended:
        buckets = np.asarray(self.sizes, dtype=np.int64)
        top = int(buckets[-1])

        def bucket(s: np.ndarray) -> np.ndarray:
            return buckets[np.minimum(np.searchsorted(buckets, s), len(buckets) - 1)]

        return pad_each(times, sizes, bucket, top)


def pad_each(times: np.ndarray, sizes: np.ndarray, target, top: int) -> Defended:
    """Each packet cut into *top*-byte pieces, its last piece padded to ``target(piece)``."""
    mag = np.abs(sizes)
    pieces = np.maximum(1, -(-mag // top))
    check_packets(int(pieces.sum(dtype=object)) if len(pieces) else 0, "padding")
    idx = np.repeat(np.arange(len(sizes)), pieces)
    first = np.concatenate([[0], np.cumsum(pieces)[:-1]])
    within = np.arange(len(idx)) - np.repeat(first, pieces)
    real = np.minimum(top, mag[idx] - within * top)
    wire = np.maximum(target(real), real)
    return Defended(times[idx].astype(float), np.sign(sizes[idx]) * wire, real.astype(np.int64))


def tree_noise(n: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Noise of each prefix sum 1..n under the binary-tree mechanism (Chan, Shi & Song 2011).

    Each dyadic interval of 1..n gets one Laplace draw of *scale*; the noisy
    prefix sum up to i adds the draws of the intervals that make up 1..i
    (at most log2(n)+1 of them).
    """
    if n == 0:
        return np.zeros(0)
    levels = max(1, math.ceil(math.log2(n + 1)))
    draws = [rng.laplace(0.0, scale, size=(n >> lvl) + 1) for lvl in range(levels + 1)]
    out = np.zeros(n)
    for i in range(1, n + 1):
        total, start = 0.0, 0
        for lvl in range(levels, -1, -1):  # i as a sum of powers of two, largest first
            if i - start >= (1 << lvl):
                total += draws[lvl][start >> lvl]
                start += 1 << lvl
        out[i - 1] = total
    return out


class SizeNoise(Defense):
    """d*-privacy size noise: each packet's size is the difference of noisy prefix sums of the sizes."""

    name = "dstar"
    params = (Param("eps", "float", 0.005, "privacy parameter epsilon (per byte; smaller is noisier)", 1e-9),
              Param("mtu", "int", 1500, "largest packet, bytes", 1))
    models = ("device and cloud both reshape each direction's packet sizes: the i-th packet's size is the "
              "difference of noisy prefix sums (Laplace, binary-tree mechanism, scale log2(n)/eps), clamped to "
              "0..MTU; a packet made larger is padded, one made smaller leaves its bytes for the next packet "
              "(and past the last, MTU-sized packets at the last packet's time)")
    cite = ("Wang et al., Fingerprinting encrypted voice traffic on smart speakers with deep learning, WiSec 2020 "
            "(d*-privacy size noise after Xiao et al., CCS 2014)")

    def _apply(self, times: np.ndarray, sizes: np.ndarray, rng: np.random.Generator) -> Defended:
        parts = []
        for sign, t, b in directions(times, sizes):
            n = len(b)
            noisy = np.cumsum(b) + tree_noise(n, max(1.0, math.log2(n + 1)) / self.eps, rng)
            target = np.clip(np.diff(np.concatenate([[0.0], noisy])), 0, self.mtu).round().astype(np.int64)
            wire_t, wire, real = [], [], []
            check_packets(n + math.ceil(int(b.sum(dtype=object)) / self.mtu), "size noise")
            queue = 0
            for ti, bi, xi in zip(t, b, target):
                queue += int(bi)
                carry = min(queue, int(xi))
                queue -= carry
                if xi > 0:
                    wire_t.append(ti), wire.append(int(xi)), real.append(carry)
            while queue > 0:  # what noise held back, flushed after the direction's last packet
                carry = min(queue, self.mtu)
                wire_t.append(float(t[-1])), wire.append(self.mtu), real.append(carry)
                queue -= carry
            parts.append((np.asarray(wire_t), sign * np.asarray(wire, np.int64), np.asarray(real, np.int64)))
        return Defended.merge(parts)
