"""The dummy-packet family: WTF-PAD and FRONT. Real packets keep their sizes and times; dummies are added.

Neither delays a real byte, so the added delay is zero; the cost is bandwidth.
Dummies are added only while the capture lasts (up to its last packet): what
the eavesdropper's capture of the request would hold.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from echolab.analysis.defenses.registry import Defense, Param
from echolab.analysis.defenses.trace import Defended, DefenseError, as_arrays, direction


class WtfPad(Defense):
    """WTF-PAD: adaptive padding whose dummy bursts follow histograms learned from the lab's captures."""

    name = "wtfpad"
    learns = True
    params = (Param("percentile", "float", 90.0, "inter-arrival percentile that separates bursts from gaps", 1, 100),
              Param("idle", "float", 0.5, "chance that a real packet sets no gap timer (the histogram's "
                                          "infinity bin)", 0, 1))
    models = ("device and cloud each run a burst/gap state machine: after each real packet a timer drawn from "
              "the gap histogram (the lab's between-burst inter-arrival times) starts; if it runs out before the "
              "next real packet, a fake burst is sent: dummies spaced by the burst histogram (the lab's within-burst "
              "times), sized from the lab's packet sizes, ending with the chance 1/mean burst length or at the "
              "next real packet; no real packet is delayed")
    cite = ("Juarez, Imani, Perry, Diaz & Wright, Toward an efficient website fingerprinting defense, ESORICS "
            "2016; on smart speakers, Wang et al., WiSec 2020 (adaptive padding learned from the lab's traffic)")

    def fit(self, sequences: Sequence[tuple[Any, Any]], labels: Sequence[str] | None = None) -> "WtfPad":
        """Learn each direction's within-burst and between-burst inter-arrival times, sizes and burst length."""
        self.histograms_: dict[int, dict[str, np.ndarray | float]] = {}
        for sign in (1, -1):
            iats, sizes = [], []
            for times, signed in sequences:
                t, b = direction(*as_arrays(times, signed), sign)
                iats.append(np.diff(t))
                sizes.append(b)
            gaps = np.concatenate(iats) if iats else np.zeros(0)
            gaps = gaps[gaps > 0]
            if len(gaps) < 2:
                raise DefenseError("wtfpad learns its histograms from the lab's captures, and these hold fewer "
                                   f"than 2 inter-arrival times {'from' if sign > 0 else 'to'} the device")
            cut = float(np.percentile(gaps, self.percentile))
            within, between = gaps[gaps <= cut], gaps[gaps > cut]
            runs = len(between) + sum(1 for b in sizes if len(b))  # bursts: each trace starts one, each long gap another
            self.histograms_[sign] = {"within": np.sort(within), "between": np.sort(between if len(between) else gaps),
                                      "sizes": np.concatenate(sizes), "stop": min(1.0, runs / max(len(gaps), 1)),
                                      "cut": cut}
        return self

    def _apply(self, times: np.ndarray, sizes: np.ndarray, rng: np.random.Generator) -> Defended:
        if not hasattr(self, "histograms_"):
            raise DefenseError("wtfpad has no histograms yet: fit it on the lab's captures first "
                               "(echolab defend does, on the campaign it defends)")
        end = float(times[-1])
        parts = [(times, sizes, np.abs(sizes))]
        for sign in (1, -1):
            t, _ = direction(times, sizes, sign)
            h = self.histograms_[sign]
            dummy_t: list[float] = []
            for k, tk in enumerate(t):
                nxt = float(t[k + 1]) if k + 1 < len(t) else end
                if rng.random() < self.idle:
                    continue
                cur = float(tk) + float(rng.choice(h["between"]))
                while cur < nxt:
                    dummy_t.append(cur)
                    if rng.random() < h["stop"]:
                        break
                    cur += float(rng.choice(h["within"]))
            if dummy_t:
                dsizes = rng.choice(h["sizes"], size=len(dummy_t))
                parts.append((np.asarray(dummy_t), sign * dsizes.astype(np.int64), np.zeros(len(dummy_t), np.int64)))
        return Defended.merge(parts)


class Front(Defense):
    """FRONT: dummy packets at Rayleigh-distributed times, most of them near the start."""

    name = "front"
    params = (Param("n", "int", 1700, "most dummies a side sends (each side draws its count from 1..n)", 1),
              Param("w", "range", (1.0, 14.0), "range of the Rayleigh scale (padding window), seconds", 1e-6),
              Param("size", "int", 1500, "dummy packet size, bytes", 1))
    models = ("device and cloud each draw a dummy count from 1..n and a window from w, and send that many "
              "size-byte dummies at Rayleigh(window)-distributed times from the first packet (those after the "
              "capture's last packet are not in it); no real packet is delayed")
    cite = ("Gong & Wang, Zero-delay lightweight defenses against website fingerprinting, USENIX Security 2020 "
            "(N=1700, W 1-14 s)")

    def _apply(self, times: np.ndarray, sizes: np.ndarray, rng: np.random.Generator) -> Defended:
        end = float(times[-1])
        parts = [(times, sizes, np.abs(sizes))]
        for sign in (1, -1):
            count = int(rng.integers(1, self.n + 1))
            window = float(rng.uniform(*self.w))
            at = np.sort(rng.rayleigh(window, count))
            at = at[at <= end]
            parts.append((at, np.full(len(at), sign * self.size), np.zeros(len(at), np.int64)))
        return Defended.merge(parts)
