"""Where requests go: a real Echo, the simulated lab, or synthetic captures.

Every backend gives the campaign the same things: an audio output to play
prompts through, the capture interface and the Echo's address, and a way to
tell that the Echo is idle. The real-Echo backend takes any
:class:`echolab.collector.audio.AudioOutput`, so tests drive it through the very same
code path with the simulated lab's sink in place of a speaker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from echolab.collector.audio import AudioOutput, SounddeviceOutput


@dataclass(kw_only=True)
class Backend:
    """Base: a live backend captured with dumpcap at the gateway."""

    name: str  # the catalog's campaign backend: "echo", "sim" or "synthetic"
    device_ip: str
    interface: str = ""
    output: AudioOutput | None = None
    prefix: Sequence[str] = ()  # command prefix to run the capture engine (a namespace)
    speed: float = 1.0  # the simulated lab's time factor (1 for a real Echo)
    live: bool = True  # False: the backend writes capture files itself
    #: Floor of the quiet time under a speed factor: time for the capture engine to see the
    #: last packets. A backend that knows when the answer is over can use a shorter one.
    min_quiet_s: float = 0.25
    #: True when ``response_over`` and ``wait_idle`` know when the Echo is done (the parametric
    #: simulated lab); False: the collector decides from the traffic alone, as on a real Echo.
    knows_end: bool = False

    def capture_filter(self) -> str:
        """Only the Echo's own traffic: other devices in the household are never recorded."""
        return f"host {self.device_ip}"

    def response_over(self) -> bool:
        """Besides a quiet network, does the backend know the answer is over? (real Echo: no)."""
        return True

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until the Echo can take the next request (real Echo: the idle gap does it)."""
        return True

    def close(self) -> None:
        pass


@dataclass(kw_only=True)
class EchoBackend(Backend):
    """A real Echo behind the gateway, hearing prompts from a speaker."""

    name: str = "echo"

    @classmethod
    def with_speaker(cls, device_ip: str, interface: str, audio_device: int | str | None = None,
                     volume: float = 1.0) -> "EchoBackend":
        return cls(device_ip=device_ip, interface=interface, output=SounddeviceOutput(audio_device, volume=volume))


@dataclass(kw_only=True)
class SimBackend(Backend):
    """The simulated lab: the Echo in a namespace, captured at the gateway namespace.

    The parametric lab's Echo says when it is done (``knows_end``); a lab that
    replays recorded requests does not, so the collector reads the traffic
    alone, as on a real Echo.
    """

    name: str = "sim"
    lab: Any = None  # echolab.collector.sim.SimLab
    min_quiet_s: float = 0.1
    knows_end: bool = True

    @classmethod
    def from_lab(cls, lab: Any) -> "SimBackend":
        return cls(device_ip=lab.echo_ip, interface=lab.interface, output=lab.sink(), prefix=lab.netns_exec(),
                   speed=lab.speed, lab=lab, knows_end=not lab.replay)

    def response_over(self) -> bool:
        return not self.knows_end or not self.lab.is_busy()

    def wait_idle(self, timeout_s: float) -> bool:
        return not self.knows_end or self.lab.wait_idle(timeout_s)


@dataclass(kw_only=True)
class SyntheticBackend(Backend):
    """No namespaces: captures drawn from the simulation's model, written straight to pcap."""

    name: str = "synthetic"
    live: bool = False
    seed: int = 0
    _rng: np.random.Generator = field(default=None, repr=False)  # type: ignore[assignment]

    @classmethod
    def create(cls, seed: int, speed: float = 1.0) -> "SyntheticBackend":
        from echolab.collector.sim.topology import Topology

        return cls(device_ip=Topology().echo_ip, speed=speed, seed=seed)

    def write(self, path: Path, label: str, duration_s: float, attempt_key: int) -> Any:
        """Write one request's capture to *path* (deterministic per seed and attempt)."""
        from echolab.collector.sim.synthetic import write_capture

        rng = np.random.default_rng([self.seed, attempt_key])
        return write_capture(path, label, duration_s, rng, start_ts=time.time(), speed=self.speed)
