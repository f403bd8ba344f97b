"""What a defense costs one capture: extra bytes, extra packets, added delay.

Bandwidth overhead is the defended bytes on the wire over the capture's own
bytes, minus one (so 0.5 is 50% more), for each direction and in total; extra
packets likewise. Delay is when the last real byte is sent with the defense
minus when it was sent without it (seconds), and that over the capture's
duration (first to last packet): the time overhead of Kennedy et al. (CNS 2019).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from echolab.analysis.defenses.trace import Defended, as_arrays


@dataclass(frozen=True)
class Overhead:
    """The cost of one defended capture (see the module's docstring)."""

    real_bytes_out: int
    real_bytes_in: int
    wire_bytes_out: int
    wire_bytes_in: int
    real_packets: int
    wire_packets: int
    dummies: int
    last_real_s: float  # undefended: the capture's last packet
    defended_last_real_s: float
    duration_s: float

    @property
    def bandwidth_out(self) -> float:
        return _ratio(self.wire_bytes_out, self.real_bytes_out)

    @property
    def bandwidth_in(self) -> float:
        return _ratio(self.wire_bytes_in, self.real_bytes_in)

    @property
    def bandwidth(self) -> float:
        return _ratio(self.wire_bytes_out + self.wire_bytes_in, self.real_bytes_out + self.real_bytes_in)

    @property
    def extra_packets(self) -> int:
        return self.wire_packets - self.real_packets

    @property
    def delay_s(self) -> float:
        return max(0.0, self.defended_last_real_s - self.last_real_s)

    @property
    def delay(self) -> float:
        """Added delay over the capture's duration (0 for a capture of one packet)."""
        return self.delay_s / self.duration_s if self.duration_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(bandwidth_out=self.bandwidth_out, bandwidth_in=self.bandwidth_in, bandwidth=self.bandwidth,
                   extra_packets=self.extra_packets, delay_s=self.delay_s, delay=self.delay)
        return out


def _ratio(wire: int, real: int) -> float:
    return wire / real - 1.0 if real else 0.0


def overhead(times: Any, sizes: Any, defended: Defended) -> Overhead:
    """The :class:`Overhead` of *defended*, the defense of the capture (times, signed sizes)."""
    t, s = as_arrays(times, sizes)
    t0 = float(t[0]) if len(t) else 0.0
    carries = defended.real > 0
    return Overhead(
        real_bytes_out=int(s[s > 0].sum()), real_bytes_in=int(-s[s < 0].sum()),
        wire_bytes_out=int(defended.sizes[defended.sizes > 0].sum()),
        wire_bytes_in=int(-defended.sizes[defended.sizes < 0].sum()),
        real_packets=len(s), wire_packets=len(defended.sizes), dummies=defended.dummies,
        last_real_s=float(t[-1]) - t0 if len(t) else 0.0,
        defended_last_real_s=float(defended.times[carries].max()) - t0 if carries.any() else 0.0,
        duration_s=float(t[-1] - t[0]) if len(t) else 0.0)


def total_overhead(items: Sequence[Overhead]) -> dict[str, float]:
    """A data set's overhead: bytes and delays summed over its captures (the literature's aggregate)."""
    def tot(attr: str) -> int:
        return sum(getattr(o, attr) for o in items)

    real = tot("real_bytes_out") + tot("real_bytes_in")
    delay = sum(o.delay_s for o in items)
    duration = sum(o.duration_s for o in items)
    return {"captures": len(items),
            "bandwidth": _ratio(tot("wire_bytes_out") + tot("wire_bytes_in"), real),
            "bandwidth_out": _ratio(tot("wire_bytes_out"), tot("real_bytes_out")),
            "bandwidth_in": _ratio(tot("wire_bytes_in"), tot("real_bytes_in")),
            "extra_packets": _ratio(tot("wire_packets"), tot("real_packets")),
            "dummies": float(tot("dummies")),
            "delay": delay / duration if duration > 0 else 0.0,
            "delay_s_mean": delay / len(items) if items else 0.0,
            "delay_s_max": float(np.max([o.delay_s for o in items])) if items else 0.0}
