"""Audio of a prompt: one format for every engine, and the clip a run plays.

Engines give speech at their own rate and loudness (espeak-ng 22.05 kHz,
gTTS 24 kHz MP3, a person's recordings anything). Before it is cached, every
clip is made alike, so the Echo hears every class the same way: mono, one
sample rate, the speech trimmed of its own silences and scaled to one RMS
loudness (with a peak ceiling), then a fixed lead-in and tail of silence.
"""

from __future__ import annotations

import hashlib
import io
import math
import numbers
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from echolab.errors import shown

#: Samples quieter than this (relative to the clip's peak) count as silence
#: when trimming the edges.
TRIM_THRESHOLD_DB = -40.0


#: The longest lead-in or tail of silence around a clip, in seconds.
MAX_SILENCE_S = 10.0
#: The quietest loudness or peak ceiling a format may ask for, in dBFS (16-bit audio spans about 96 dB).
MIN_DBFS = -96.0


@dataclass(frozen=True)
class AudioFormat:
    """How cached clips are made: rate, loudness, silence around the speech."""

    sample_rate: int = 22050
    target_dbfs: float = -20.0
    peak_dbfs: float = -1.0
    lead_in_s: float = 0.25
    tail_s: float = 0.25

    def __post_init__(self) -> None:
        # The format may come from a shared lab's echolab.toml: right types, finite, bounded (no inf, no 1e12 s).
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, numbers.Integral) \
                or not 8000 <= self.sample_rate <= 96000:
            raise ValueError(f"sample_rate {shown(self.sample_rate)} must be a whole number of Hz from 8000 to 96000")
        for name, low, high, unit in (("lead_in_s", 0, MAX_SILENCE_S, " s"), ("tail_s", 0, MAX_SILENCE_S, " s"),
                                      ("target_dbfs", MIN_DBFS, 0, " dBFS"), ("peak_dbfs", MIN_DBFS, 0, " dBFS")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
                    or not low <= value <= high:
                raise ValueError(f"{name} {shown(value)} must be a number from {low:g} to {high:g}{unit}")
        if self.target_dbfs >= 0:
            raise ValueError("target_dbfs must be below 0 and peak_dbfs at most 0")

    def key(self) -> str:
        """A short text naming the format, part of every cache key."""
        return f"{self.sample_rate}Hz/{self.target_dbfs:g}dBFS/{self.peak_dbfs:g}pk/{self.lead_in_s:g}s/{self.tail_s:g}s"


@dataclass(frozen=True)
class AudioClip:
    """A cached, normalized WAV file of one prompt."""

    path: Path
    sha256: str
    duration_s: float
    sample_rate: int
    text: str
    engine: str
    voice: str

    def samples(self) -> np.ndarray:
        """The clip as float32 mono samples in [-1, 1], ready for playback."""
        data, _ = sf.read(self.path, dtype="float32", always_2d=False)
        return data


def to_mono(samples: np.ndarray) -> np.ndarray:
    data = np.asarray(samples, dtype=np.float32)
    return data.mean(axis=1, dtype=np.float32) if data.ndim == 2 else data


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """*samples* at *rate* resampled to *target* Hz (polyphase filter)."""
    if rate == target:
        return samples.astype(np.float32, copy=False)
    common = gcd(rate, target)
    return resample_poly(samples, target // common, rate // common).astype(np.float32)


def trim_silence(samples: np.ndarray, threshold_db: float = TRIM_THRESHOLD_DB) -> np.ndarray:
    """*samples* without the quiet stretches at either end."""
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak == 0.0:
        return samples[:0]
    loud = np.flatnonzero(np.abs(samples) >= peak * 10 ** (threshold_db / 20))
    return samples[loud[0] : loud[-1] + 1]


def rms_dbfs(samples: np.ndarray) -> float:
    """Loudness of *samples* as RMS in dB relative to full scale."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
    return 20 * np.log10(rms) if rms > 0 else float("-inf")


def normalize(samples: np.ndarray, rate: int, fmt: AudioFormat) -> np.ndarray:
    """Mono at ``fmt.sample_rate``, trimmed, at ``fmt.target_dbfs``, padded.

    Raises ValueError when there is no sound at all.
    """
    speech = trim_silence(resample(to_mono(samples), rate, fmt.sample_rate))
    if speech.size == 0:
        raise ValueError("the audio is silent")
    gain = 10 ** ((fmt.target_dbfs - rms_dbfs(speech)) / 20)
    peak = float(np.max(np.abs(speech))) * gain
    ceiling = 10 ** (fmt.peak_dbfs / 20)
    if peak > ceiling:
        gain *= ceiling / peak  # a peaky clip ends up quieter than the target, never clipped
    lead = np.zeros(round(fmt.lead_in_s * fmt.sample_rate), dtype=np.float32)
    tail = np.zeros(round(fmt.tail_s * fmt.sample_rate), dtype=np.float32)
    return np.concatenate([lead, (speech * gain).astype(np.float32), tail])


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Samples and rate of an encoded file in memory (WAV, FLAC, MP3...).

    MP3 needs libsndfile 1.1 or later (soundfile's wheels bundle it).
    """
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    return samples, int(rate)


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """16-bit PCM WAV of *samples*."""
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
