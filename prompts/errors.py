"""The expected failures of prompt lists, speech engines and the audio cache.

Each is an :class:`~echolab.errors.EcholabError`, so the CLI prints its text as
one ``Error: ...`` line; the text says what to do next.
"""

from __future__ import annotations

from echolab.errors import EcholabError


class PromptListError(EcholabError):
    """A prompt list cannot be read, or names an unknown class or wake word."""


class SpeechError(EcholabError):
    """A speech engine could not turn a prompt into audio."""


class SpeechUnavailableError(SpeechError):
    """The engine itself cannot run here (no network for gTTS, no espeak-ng)."""


class AudioCacheError(EcholabError):
    """The audio cache directory cannot be written or read."""
