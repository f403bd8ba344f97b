"""How the collector makes the Echo hear a prompt: one interface, two backends.

:class:`AudioOutput` is what the collector codes against. Its two
implementations:

* :class:`SounddeviceOutput` plays the clip's samples through a real sound
  device (PortAudio via ``sounddevice``) to a real Echo's microphones;
* :class:`echolab.collector.sim.sink.SimulatedSink` hands the clip's duration and the
  prompt's class to the simulated Echo and waits as long as the clip lasts.

A clip is duck-typed: anything with ``duration_s`` (the simulated backend
needs nothing else); the real backend also needs its samples, found by
:func:`clip_samples`: ``samples()`` (or ``load_samples()``, or a ``samples``
attribute) with ``sample_rate`` (as ``echolab.prompts.audio.AudioClip`` has), a
method returning ``(samples, rate)``, or else the WAV file at ``path``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from echolab.errors import EcholabError


class AudioOutputError(EcholabError):
    """The clip cannot be played: no PortAudio, no such device, unreadable clip."""


@dataclass(frozen=True)
class PlaybackResult:
    """What one ``play`` call did, for the capture's record."""

    started_at: datetime
    ended_at: datetime
    duration_s: float  # the clip's real length
    played_s: float  # wall-clock time the call took (shorter under a speed factor)
    backend: str  # "echo" (a real speaker) or "sim"
    device: str
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class AudioOutput(Protocol):
    """Something that can make the device under test hear a prompt."""

    backend: str

    def play(self, clip: Any, *, label: str, prompt_text: str = "") -> PlaybackResult:
        """Play *clip* (of class *label*) and return once it has been heard."""
        ...


def clip_duration(clip: Any) -> float:
    """The clip's length in seconds (``clip.duration_s``)."""
    try:
        duration = float(clip.duration_s)
    except (AttributeError, TypeError, ValueError) as exc:
        raise AudioOutputError(f"cannot tell how long clip {clip!r} is: it needs a numeric duration_s") from exc
    if not duration >= 0:
        raise AudioOutputError(f"clip {clip!r} has an invalid duration {duration}")
    return duration


def clip_samples(clip: Any) -> tuple[np.ndarray, int]:
    """The clip's samples as float32 (frames[, channels]) and the sample rate."""
    rate = getattr(clip, "sample_rate", None)
    for name in ("load_samples", "samples"):
        found = getattr(clip, name, None)
        data = found() if callable(found) else found
        if isinstance(data, tuple) and len(data) == 2:  # (samples, rate)
            data, rate = data
        if data is not None and rate:
            return np.asarray(data, dtype=np.float32), int(rate)
    path = getattr(clip, "path", None)
    if path is None:
        raise AudioOutputError(f"clip {clip!r} has no samples and no WAV path")
    import soundfile

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=False)
    except (OSError, RuntimeError) as exc:
        raise AudioOutputError(f"cannot read the clip's audio {path}: {exc}; re-synthesize the prompt") from exc
    return data, int(rate)


def _sounddevice():
    try:
        import sounddevice
    except OSError as exc:
        raise AudioOutputError(
            f"PortAudio is not available ({exc}); install it with 'apt-get install libportaudio2'") from exc
    except ImportError as exc:
        raise AudioOutputError("the sounddevice package is missing; pip install sounddevice") from exc
    return sounddevice


def device_spec(value: str | int | None) -> int | str | None:
    """A sound device as a user gives it: an index ("3") or a part of its name."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


def list_devices() -> list[dict[str, Any]]:
    """Output-capable sound devices: index, name, channels, default rate."""
    sd = _sounddevice()
    try:
        devices = sd.query_devices()
    except sd.PortAudioError as exc:
        raise AudioOutputError(f"cannot list sound devices: {exc}") from exc
    return [
        {"index": i, "name": d["name"], "channels": d["max_output_channels"],
         "default_samplerate": d["default_samplerate"]}
        for i, d in enumerate(devices) if d["max_output_channels"] > 0
    ]


class SounddeviceOutput:
    """Plays clips through a real sound device (the speaker next to the Echo).

    *device* is a PortAudio device index or name substring (None: the default
    output). The device is checked when the output is made, so a missing
    speaker fails before a campaign starts.
    """

    backend = "echo"

    def __init__(self, device: int | str | None = None, *, volume: float = 1.0) -> None:
        self._sd = _sounddevice()
        self.device = device
        self.volume = float(volume)
        try:
            info = self._sd.query_devices(device, kind="output")
        except (ValueError, self._sd.PortAudioError) as exc:
            raise AudioOutputError(f"no sound output device {device!r} ({exc}); "
                                   "list the devices with echolab.collector.audio.list_devices()") from exc
        self.device_name = str(info["name"])

    def play(self, clip: Any, *, label: str, prompt_text: str = "") -> PlaybackResult:
        """Play *clip* to the end (blocking) and say when it started and ended."""
        data, rate = clip_samples(clip)
        started = datetime.now(timezone.utc)
        t0 = time.monotonic()
        try:
            self._sd.play(np.clip(data * self.volume, -1.0, 1.0), samplerate=rate, device=self.device, blocking=True)
        except self._sd.PortAudioError as exc:
            raise AudioOutputError(f"playback on {self.device_name} failed: {exc}") from exc
        return PlaybackResult(started, datetime.now(timezone.utc), len(data) / rate, time.monotonic() - t0,
                              self.backend, self.device_name, {"label": label, "sample_rate": rate})


@dataclass(frozen=True)
class DurationClip:
    """A clip known only by its length (and optionally a WAV file).

    Enough for the simulated backend; demos and tests use it when no
    synthesized prompt is at hand.
    """

    duration_s: float
    path: Path | None = None


def clip_from_wav(path: Path | str) -> DurationClip:
    """A clip for a WAV file, its duration read from the header."""
    import soundfile

    try:
        info = soundfile.info(str(path))
    except (OSError, RuntimeError) as exc:
        raise AudioOutputError(f"cannot read WAV file {path}: {exc}") from exc
    return DurationClip(float(info.duration), Path(path))
