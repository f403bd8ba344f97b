"""The device's traffic in a capture, and the time ranges of it that the cut gives.

A :class:`Timeline` holds the device's TCP packets of one capture as columns
(time, IP bytes, direction), read once by :func:`echolab.captures.device.load_timeline`;
a :class:`Segment` is one time range of it with the device's traffic counted.
Times are integer microseconds since the epoch (``*_us``), the reader's
truncation, so a cut never depends on float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from echolab.captures.reader import ReadStats
from echolab.captures.rules import RULES

if TYPE_CHECKING:
    from echolab.captures.device import DeviceGuess
    from echolab.captures.spec import SplitSpec


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
        """Big enough to be a request under *spec*'s keep-alive thresholds (:meth:`TrafficRules.is_request`)."""
        return RULES.is_request(self.packets, self.bytes_out + self.bytes_in, min_packets=spec.min_packets,
                                min_bytes=spec.min_bytes)



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


__all__ = ["Segment", "Timeline"]
