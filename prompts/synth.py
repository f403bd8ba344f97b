"""Synthesize every prompt up front, so an unattended run needs no network.

:func:`synthesize_lab` fills the lab's audio cache for the chosen classes and
engine; a second run finds everything cached and synthesizes nothing. Each
distinct text is made once (the study's quotes are one text asked 130 times).
espeak-ng is a separate process per prompt, so two worker threads keep two
cores busy.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from echolab.labdir import LabDir
from echolab.safepaths import UnsafePathError, contained
from echolab.progress import ProgressCallback, notify
from echolab.prompts.audio import AudioClip
from echolab.prompts.cache import AudioCache
from echolab.prompts.errors import SpeechError, SpeechUnavailableError
from echolab.prompts.lists import load_prompts
from echolab.prompts.speech import DEFAULT_ENGINE, SpeechEngine, get_engine

#: The lab settings table (echolab.toml) that picks the engine and its options.
SPEECH_SETTINGS = "speech"
DEFAULT_WORKERS = 2


@dataclass
class SynthReport:
    """What a synthesis run did: counts of distinct texts, clips, failures."""

    engine: str
    voice: str
    synthesized: int = 0
    cached: int = 0
    clips: dict[str, AudioClip] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return self.synthesized + self.cached + len(self.failed)

    @property
    def seconds_per_synthesis(self) -> float | None:
        return self.seconds / self.synthesized if self.synthesized else None


def engine_for_lab(lab: LabDir | None, name: str | None = None, **overrides: Any) -> SpeechEngine:
    """The engine named *name* (else the lab's ``[speech] engine``, else espeak).

    Options come from the lab's ``[speech.<engine>]`` table, then *overrides*
    (None values ignored). The recorded engine's folder defaults to
    ``LAB/prompts/recordings``; a relative folder is taken from the lab root.
    """
    table = _settings_table(lab.setting(SPEECH_SETTINGS) if lab else None, SPEECH_SETTINGS, lab)
    name = name or table.get("engine") or DEFAULT_ENGINE
    if not isinstance(name, str):
        raise SpeechError(f"[{SPEECH_SETTINGS}] engine in {_settings_file(lab)} must be a name such as "
                          f"{DEFAULT_ENGINE!r}, not {name!r}")
    options = _settings_table(table.get(name), f"{SPEECH_SETTINGS}.{name}", lab)
    from_settings = "folder" in options
    if from_settings and not isinstance(options["folder"], str):
        raise SpeechError(f"[{SPEECH_SETTINGS}.recorded] folder in {_settings_file(lab)} must be a path (text), "
                          f"not {repr(options['folder'])[:60]}")
    settings_keys = set(options) - {k for k, v in overrides.items() if v is not None}
    options.update({k: v for k, v in overrides.items() if v is not None})
    if name == "recorded":
        folder = Path(options.get("folder") or (lab.prompts_dir / "recordings" if lab else "recordings"))
        if lab is not None and not folder.is_absolute():
            folder = lab.root / folder
        if lab is not None and from_settings and overrides.get("folder") is None:  # a lab's settings stay in the lab
            try:
                folder = contained(folder, lab.root, f"[{SPEECH_SETTINGS}.recorded] folder")
            except UnsafePathError as exc:
                raise SpeechError(str(exc)) from None
        options["folder"] = folder
    try:
        return get_engine(name, **options)
    except SpeechUnavailableError:
        raise
    except SpeechError as exc:
        if not settings_keys or lab is None:
            raise
        raise SpeechError(f"{exc} (settings: [{SPEECH_SETTINGS}.{name}] in {_settings_file(lab)})") from None


def _settings_file(lab: LabDir | None) -> str:
    return str(lab.root / "echolab.toml") if lab is not None else "the lab settings"


def _settings_table(value: Any, name: str, lab: LabDir | None) -> dict[str, Any]:
    """A settings table as a dict; one line naming the file when it is something else (``speech = "espeak"``)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpeechError(f"{name} in {_settings_file(lab)} must be a table ([{name}] with keys such as "
                          f"engine = \"espeak\"), not {value!r}")
    return dict(value)


def synthesize_texts(
    cache: AudioCache,
    engine: SpeechEngine,
    texts: Iterable[str],
    *,
    workers: int = DEFAULT_WORKERS,
    progress: ProgressCallback | None = None,
) -> SynthReport:
    """Make sure every distinct text of *texts* is in *cache*.

    *progress* is called as ``progress("speech (ENGINE VOICE)", done, total)``
    as prompts are made or found in the cache (``echolab.progress``).

    A prompt the engine cannot say (a missing recording) is recorded in
    ``failed`` and the others go on; an engine that cannot run at all
    (:class:`~echolab.prompts.errors.SpeechUnavailableError`, e.g. gTTS offline)
    stops the run at once and is raised.
    """
    unique = list(dict.fromkeys(texts))
    report = SynthReport(engine.name, engine.voice)
    start = time.perf_counter()
    task = f"speech ({engine.name} {engine.voice})"
    finished = 0
    notify(progress, task, finished, len(unique))
    with ThreadPoolExecutor(max(1, workers)) as pool:
        futures: dict[Future[tuple[AudioClip, bool]], str] = {
            pool.submit(cache.ensure, engine, text): text for text in unique
        }
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                text = futures[future]
                try:
                    clip, made = future.result()
                except SpeechError as exc:
                    if isinstance(exc, SpeechUnavailableError):
                        for other in pending:
                            other.cancel()
                        raise
                    report.failed[text] = str(exc)
                else:
                    report.clips[text] = clip
                    if made:
                        report.synthesized += 1
                    else:
                        report.cached += 1
                finished += 1
                notify(progress, task, finished, len(unique))
    report.seconds = time.perf_counter() - start
    return report


def synthesize_lab(
    lab: LabDir,
    engine: str | SpeechEngine | None = None,
    classes: Sequence[str] | None = None,
    *,
    wake_word: str | None = None,
    workers: int = DEFAULT_WORKERS,
    progress: ProgressCallback | None = None,
    **engine_options: Any,
) -> SynthReport:
    """Fill the lab's audio cache with every prompt of *classes*.

    *engine* is a name (options from the lab settings and *engine_options*)
    or a ready engine. *classes* defaults to every available class. *progress*
    as in :func:`synthesize_texts`.
    """
    prompts = load_prompts(lab, classes, wake_word)
    if not isinstance(engine, SpeechEngine):
        engine = engine_for_lab(lab, engine, **engine_options)
    texts = [p.text for plist in prompts.values() for p in plist]
    return synthesize_texts(AudioCache.for_lab(lab), engine, texts, workers=workers, progress=progress)
