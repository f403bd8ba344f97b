"""Speech engines: turn a prompt's text into audio, behind one interface.

Three engines, picked by name with :func:`get_engine`:

``espeak``
    espeak-ng, offline and fast; ``voice`` (``espeak-ng --voices``), ``speed``
    (words per minute) and ``pitch`` (0-99) are selectable.
``gtts``
    Google Translate's text-to-speech, online; ``lang`` and ``tld`` (the
    accent: ``com``, ``co.uk``, ``com.au``, ``co.in``...) are selectable.
    Without network it fails at once with one line that names the offline
    engine.
``recorded``
    A folder of a person's own recordings, one file per prompt, found by a
    ``manifest.csv`` (columns ``text,file``) or by the prompt's slug
    (:func:`slugify`: "Alexa, who is Ada Lovelace?" is
    ``alexa-who-is-ada-lovelace.wav``).

An engine returns raw samples; :mod:`echolab.prompts.cache` normalizes and stores them.
"""

from __future__ import annotations

import csv
import inspect
import math
import numbers
import re
import subprocess
import unicodedata
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Iterable

import numpy as np

from echolab.errors import shown
from echolab.prompts.audio import decode, sha256_file
from echolab.prompts.errors import SpeechError, SpeechUnavailableError
from echolab.safepaths import UnsafePathError, contained

ENGINES: tuple[str, ...] = ("espeak", "gtts", "recorded")
DEFAULT_ENGINE = "espeak"
#: File types a recordings folder may hold (libsndfile reads them all).
RECORDING_SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3")
MANIFEST = "manifest.csv"
#: The longest an engine may be given for one prompt (its ``timeout`` option), in seconds.
MAX_TIMEOUT_S = 600.0


class SpeechEngine(ABC):
    """Makes speech from text. ``name`` and :attr:`voice` key the audio cache."""

    name: ClassVar[str]

    @property
    @abstractmethod
    def voice(self) -> str:
        """Everything besides the text that changes the sound, as a short name."""

    @abstractmethod
    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        """Samples (float32) and sample rate of *text* spoken.

        Raises :class:`SpeechError` for this text, or
        :class:`SpeechUnavailableError` when the engine cannot run at all.
        """

    def source_digest(self, text: str) -> str:
        """A digest of what the engine reads for *text*, beyond its settings.

        Empty for synthesizers; the recording's hash for ``recorded``, so a
        re-recorded prompt is not served from the cache.
        """
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(voice={self.voice!r})"


class EspeakEngine(SpeechEngine):
    """espeak-ng, run once per prompt, WAV on its standard output."""

    name = "espeak"
    binary = "espeak-ng"

    def __init__(self, voice: str = "en-us", speed: int = 160, pitch: int = 50, timeout: float = 30.0) -> None:
        if not isinstance(voice, str) or not re.fullmatch(r"[A-Za-z0-9_+\-/.]+", voice):
            raise SpeechError(f"espeak-ng voice {voice!r} is not a voice name; list voices with 'espeak-ng --voices'")
        self.espeak_voice = voice
        self.speed = int(_number(speed, "espeak-ng speed", 80, 450, "words per minute"))
        self.pitch = int(_number(pitch, "espeak-ng pitch", 0, 99))
        self.timeout = _number(timeout, "espeak-ng timeout", 0.1, MAX_TIMEOUT_S, "seconds")

    @property
    def voice(self) -> str:
        return f"{self.espeak_voice}-s{self.speed}-p{self.pitch}"

    def command(self) -> list[str]:
        """The espeak-ng command line; the text goes on standard input."""
        return [self.binary, "-v", self.espeak_voice, "-s", str(self.speed), "-p", str(self.pitch), "--stdout"]

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        try:
            proc = subprocess.run(self.command(), input=text.encode("utf-8"), capture_output=True, timeout=self.timeout)
        except FileNotFoundError as exc:
            raise SpeechUnavailableError(
                "espeak-ng is not installed; install it with 'apt-get install espeak-ng' (scripts/setup.sh does)"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise SpeechError(f"espeak-ng took over {self.timeout:g} s for {text!r}") from exc
        message = proc.stderr.decode("utf-8", "replace").strip()
        if proc.returncode != 0 or not proc.stdout:
            if "voice does not exist" in message:
                raise SpeechUnavailableError(
                    f"espeak-ng has no voice {self.espeak_voice!r}; list voices with 'espeak-ng --voices'"
                )
            raise SpeechError(f"espeak-ng failed on {text!r} (exit {proc.returncode}): {message}")
        return decode(proc.stdout)


class GttsEngine(SpeechEngine):
    """Google Translate's speech (the gTTS package); needs the internet."""

    name = "gtts"

    def __init__(self, lang: str = "en", tld: str = "com", slow: bool = False, timeout: float = 10.0) -> None:
        from gtts.lang import tts_langs

        if not isinstance(lang, str) or lang not in tts_langs():
            raise SpeechError(f"gTTS has no language {lang!r}; choose one of: {', '.join(sorted(tts_langs()))}")
        if not isinstance(tld, str) or not re.fullmatch(r"[a-z]{2,3}(\.[a-z]{2,3})?", tld):
            raise SpeechError(f"gTTS tld {tld!r} is not a top-level domain such as com, co.uk or com.au")
        if not isinstance(slow, bool):
            raise SpeechError(f"gTTS slow must be true or false, not {slow!r}")
        self.lang = lang
        self.tld = tld
        self.slow = slow
        self.timeout = _number(timeout, "gTTS timeout", 0.1, MAX_TIMEOUT_S, "seconds")

    @property
    def voice(self) -> str:
        return f"{self.lang}-{self.tld}" + ("-slow" if self.slow else "")

    def request(self, text: str) -> Any:
        """The gTTS object for *text*: nothing is sent until it is streamed."""
        from gtts import gTTS

        return gTTS(text, tld=self.tld, lang=self.lang, slow=self.slow, lang_check=False, timeout=self.timeout)

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        import requests
        from gtts import gTTSError

        chunks: list[bytes] = []
        try:
            for chunk in self.request(text).stream():
                chunks.append(chunk)
        except (gTTSError, requests.RequestException) as exc:
            cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SpeechUnavailableError(
                f"gTTS cannot reach translate.google.{self.tld} ({cause}); "
                "synthesize offline with --engine espeak"
            ) from exc
        if not chunks:
            raise SpeechError(f"gTTS returned no audio for {text!r}")
        try:
            return decode(b"".join(chunks))
        except RuntimeError as exc:  # soundfile's LibsndfileError
            raise SpeechError(f"cannot decode gTTS's MP3 for {text!r}: {exc} (soundfile needs libsndfile >= 1.1)") from exc


class RecordedEngine(SpeechEngine):
    """A folder of recordings of a person's own voice, one file per prompt."""

    name = "recorded"

    def __init__(self, folder: Path | str) -> None:
        if not isinstance(folder, (str, Path)) or not str(folder):
            raise SpeechError(f"the recordings folder must be a path (text), not {folder!r}")
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise SpeechUnavailableError(
                f"recordings folder {self.folder} does not exist; record one file per prompt "
                f"(see 'echolab prompts recordings') or use --engine espeak"
            )
        self._manifest = self._read_manifest()

    @property
    def voice(self) -> str:
        return slugify(self.folder.resolve().name) or "recordings"

    def _read_manifest(self) -> dict[str, Path]:
        path = self.folder / MANIFEST
        if not path.exists():
            return {}
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                rows = [(reader.line_num, row) for row in reader]
        except (OSError, csv.Error, UnicodeDecodeError) as exc:
            raise SpeechError(f"cannot read {path}: {exc}") from exc
        if rows and not {"text", "file"} <= set(rows[0][1]):
            raise SpeechError(f"{path} needs the columns text,file")
        found: dict[str, Path] = {}
        for line, row in rows:
            text, file = row.get("text"), row.get("file")
            if not (text and file):
                continue
            try:  # a shared manifest names files in its own folder only (no absolute path, no ../, no link out)
                found[_text_key(text)] = contained(file, self.folder, f"{path} line {line}: file")
            except UnsafePathError as exc:
                raise SpeechError(str(exc)) from None
        return found

    def recording(self, text: str) -> Path:
        """The file that holds *text*, by the manifest or by slug."""
        if _text_key(text) in self._manifest:
            path = self._manifest[_text_key(text)]
            if path.is_file():
                return path
            raise SpeechError(f"{self.folder / MANIFEST} names {path.name} for {text!r}, which does not exist")
        slug = slugify(text)
        for suffix in RECORDING_SUFFIXES:
            if (self.folder / (slug + suffix)).is_file():
                return self.folder / (slug + suffix)
        raise SpeechError(
            f"no recording of {text!r} in {self.folder}: expected {slug}.wav or a row in {MANIFEST}"
        )

    def source_digest(self, text: str) -> str:
        return sha256_file(self.recording(text))

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        path = self.recording(text)
        try:
            return decode(path.read_bytes())
        except (OSError, RuntimeError) as exc:
            raise SpeechError(f"cannot read recording {path}: {exc}") from exc


def _number(value: Any, name: str, low: float, high: float, unit: str = "") -> float:
    """*value* when it is a finite number from *low* to *high*; else :class:`SpeechError` in one line.

    Settings come from a lab's echolab.toml, which may come from another lab:
    text, ``inf``, ``nan`` and huge numbers are refused before they are used.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or not low <= value <= high:
        raise SpeechError(f"{name} must be a number from {low:g} to {high:g}{' ' + unit if unit else ''}, "
                          f"not {shown(value)}")
    return float(value)


def slugify(text: str, limit: int = 100) -> str:
    """The file name stem of a recording: lower case ASCII words joined by '-'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower().replace("'", "")).strip("-")[:limit].rstrip("-")


def _text_key(text: str) -> str:
    return " ".join(text.split()).casefold()


_CLASSES: dict[str, type[SpeechEngine]] = {"espeak": EspeakEngine, "gtts": GttsEngine, "recorded": RecordedEngine}


def get_engine(name: str = DEFAULT_ENGINE, **options: Any) -> SpeechEngine:
    """The engine called *name* made with *options* (None values are dropped).

    espeak: voice, speed, pitch; gtts: lang, tld, slow, timeout;
    recorded: folder (required).
    """
    cls = _CLASSES.get(name)
    if cls is None:
        raise SpeechError(f"unknown speech engine {name!r}; choose one of {', '.join(ENGINES)}")
    given = {k: v for k, v in options.items() if v is not None}
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise SpeechError(
            f"the {name} engine does not take {', '.join(unknown)}; its options are {', '.join(accepted)}"
        )
    return cls(**given)


def manifest_rows(texts: Iterable[str]) -> list[dict[str, str]]:
    """Rows of a recordings ``manifest.csv`` (text, file) for *texts*.

    The file names are the slugs the recorded engine looks for, so a person
    can record into exactly these names and drop the manifest altogether.
    """
    return [{"text": text, "file": slugify(text) + ".wav"} for text in dict.fromkeys(texts)]
