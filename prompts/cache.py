"""The on-disk speech cache: each prompt is synthesized once per voice.

Layout, under the lab's ``audio/`` directory::

    audio/<engine>/<voice>/<key>.wav    the normalized clip (16-bit PCM)
    audio/<engine>/<voice>/<key>.json   its sidecar: text, sha256, duration...
    audio/.locks/<key>.lock             one lock per entry

``key`` is a SHA-256 of (engine, voice, text, audio format, and for recordings
the recording's own hash), so a change to any of them makes a new entry.

An entry counts only when its sidecar exists and names the SHA-256 of the WAV
beside it: a truncated, damaged or half-written file fails that check and is
made again. Writers hold the entry's lock, write to a temporary file in the
same directory and ``os.replace`` it (WAV first, sidecar last, so the sidecar
marks a finished entry); concurrent runs therefore never see a partial file
and synthesize an entry only once.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from echolab.labdir import LabDir
from echolab.prompts.audio import AudioClip, AudioFormat, normalize, sha256_file, wav_bytes
from echolab.prompts.errors import AudioCacheError, SpeechError
from echolab.prompts.speech import SpeechEngine, slugify

#: Bumped when the way clips are made changes, so old entries are not reused.
CACHE_VERSION = 1
#: How long to wait for another run that is making the same entry.
LOCK_TIMEOUT_S = 300.0
#: The lab settings table (echolab.toml) that sets the audio format.
AUDIO_SETTINGS = "audio"


def audio_format_for_lab(lab: LabDir | None) -> AudioFormat:
    """The audio format of the lab's ``[audio]`` settings, else the defaults."""
    table = (lab.setting(AUDIO_SETTINGS) or {}) if lab else {}
    if not isinstance(table, dict):
        raise AudioCacheError(f"[audio] in echolab.toml must be a table of settings, not {table!r}")
    known = set(AudioFormat.__dataclass_fields__)
    unknown = set(table) - known
    if unknown:
        raise AudioCacheError(f"unknown [audio] settings {sorted(unknown)} in echolab.toml; known: {sorted(known)}")
    try:
        return AudioFormat(**table)
    except (TypeError, ValueError) as exc:
        raise AudioCacheError(f"bad [audio] settings in echolab.toml: {exc}") from exc


class AudioCache:
    """Normalized prompt audio on disk, made on demand by a speech engine."""

    def __init__(self, root: Path | str, fmt: AudioFormat | None = None) -> None:
        self.root = Path(root)
        self.format = fmt or AudioFormat()

    @classmethod
    def for_lab(cls, lab: LabDir) -> "AudioCache":
        """The cache in ``lab.audio_dir`` with the lab's audio format."""
        return cls(lab.audio_dir, audio_format_for_lab(lab))

    def key(self, engine: SpeechEngine, text: str) -> str:
        parts = [CACHE_VERSION, engine.name, engine.voice, text, self.format.key(), engine.source_digest(text)]
        return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()

    def paths(self, engine: SpeechEngine, text: str) -> tuple[Path, Path, Path]:
        """The WAV, sidecar and lock file of the entry for *text*."""
        key = self.key(engine, text)
        folder = self.root / engine.name / (slugify(engine.voice) or "default")
        return folder / f"{key}.wav", folder / f"{key}.json", self.root / ".locks" / f"{key}.lock"

    def lookup(self, engine: SpeechEngine, text: str) -> AudioClip | None:
        """The cached clip of *text*, or None when absent or damaged."""
        wav, meta, _ = self.paths(engine, text)
        return _read_entry(wav, meta)

    def get_or_synthesize(self, engine: SpeechEngine, text: str) -> AudioClip:
        """The clip of *text*, synthesized now unless a good one is cached."""
        return self.ensure(engine, text)[0]

    def ensure(self, engine: SpeechEngine, text: str) -> tuple[AudioClip, bool]:
        """The clip of *text* and whether it was synthesized by this call."""
        clip = self.lookup(engine, text)
        if clip is not None:
            return clip, False
        wav, meta, lock_path = self.paths(engine, text)
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(lock_path), timeout=LOCK_TIMEOUT_S):
                clip = _read_entry(wav, meta)  # another run may have made it meanwhile
                if clip is not None:
                    return clip, False
                return self._make(engine, text, wav, meta), True
        except Timeout as exc:
            raise AudioCacheError(f"waited {LOCK_TIMEOUT_S:g} s for the lock {lock_path}; is another run stuck?") from exc
        except PermissionError as exc:
            raise AudioCacheError(f"cannot write the audio cache {self.root}: {exc}") from exc

    def _make(self, engine: SpeechEngine, text: str, wav: Path, meta: Path) -> AudioClip:
        samples, rate = engine.synthesize(text)
        try:
            clip_samples = normalize(samples, rate, self.format)
        except ValueError as exc:
            raise SpeechError(f"the {engine.name} engine gave no sound for {text!r}") from exc
        data = wav_bytes(clip_samples, self.format.sample_rate)
        wav.parent.mkdir(parents=True, exist_ok=True)
        sidecar: dict[str, Any] = {
            "version": CACHE_VERSION,
            "text": text,
            "engine": engine.name,
            "voice": engine.voice,
            "sha256": hashlib.sha256(data).hexdigest(),
            "duration_s": round(len(clip_samples) / self.format.sample_rate, 6),
            "sample_rate": self.format.sample_rate,
            "frames": len(clip_samples),
            "format": asdict(self.format),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        _atomic_write(wav, data)
        _atomic_write(meta, json.dumps(sidecar, indent=2).encode("utf-8"))
        return _clip(wav, sidecar)


def _read_entry(wav: Path, meta: Path) -> AudioClip | None:
    try:
        sidecar = json.loads(meta.read_text(encoding="utf-8"))
        if sidecar.get("version") != CACHE_VERSION or sha256_file(wav) != sidecar["sha256"]:
            return None
        return _clip(wav, sidecar)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _clip(wav: Path, sidecar: dict[str, Any]) -> AudioClip:
    return AudioClip(
        path=wav,
        sha256=sidecar["sha256"],
        duration_s=float(sidecar["duration_s"]),
        sample_rate=int(sidecar["sample_rate"]),
        text=sidecar["text"],
        engine=sidecar["engine"],
        voice=sidecar["voice"],
    )


def _atomic_write(path: Path, data: bytes) -> None:
    """Write *data* to *path* so that readers see the old file or the new one.

    No fsync: after a power cut a torn file fails the sidecar's SHA-256 check
    and is made again, which costs less than syncing every clip.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
