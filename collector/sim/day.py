"""A household's day on the simulated lab: requests at random times, one long capture, the truth.

The test bed for classifying long and live captures (``echolab classify``):
:func:`plan_day` draws a day (seeded): requests of mixed classes, each after a
quiet stretch of the household's clock, mostly short (someone asking a few
things in a row) and sometimes long (nobody home). :func:`play_day` plays it
on a running :class:`~echolab.collector.sim.SimLab`: one capture engine at the
gateway records the whole day into ONE pcapng (only the Echo's traffic, as a
campaign's captures), while the Echo hears each request through the lab's
sink. Every request's class, start (the prompt handed to the Echo) and end
(the Echo idle again, its answer played) goes to a ground-truth log,
``day.jsonl``, one JSON object a line; ``day.json`` says how the day was made.

Each request speaks one of its class's prompts (:class:`DayPrompts`: the lab's
prompt lists and speech cache, as a campaign plays them), so the utterance's
length, and with it the upload, depends on the class as it does in the
campaigns a model is trained on. Without them a request is a silent clip of a
length drawn from ``prompt_s``, the same for every class: a day that hides
what utterance length tells, and says so in ``day.json``.

The lab's speed factor compresses the day: every quiet stretch is divided by
it, as the lab divides every wait of the Echo and the cloud.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from echolab.errors import EcholabError
from echolab.progress import ProgressCallback

CAPTURE_NAME = "day.pcapng"
LOG_NAME = "day.jsonl"
META_NAME = "day.json"


class DayError(EcholabError):
    """A day cannot be planned or played as asked."""


@dataclass(frozen=True)
class DaySettings:
    """How a day is drawn; quiet stretches are seconds of the household's clock."""

    requests: int = 40
    classes: tuple[str, ...] = ()
    seed: int = 0
    min_gap_s: float = 15.0  # the quietest stretch between one answer and the next prompt
    mean_gap_s: float = 30.0  # the mean of a short stretch (min + an exponential draw)
    idle_share: float = 0.1  # the share of stretches that are long idle ones
    idle_s: tuple[float, float] = (120.0, 600.0)  # a long idle stretch, uniform between these
    prompt_s: tuple[float, float] = (1.5, 3.5)  # how long a spoken prompt lasts, uniform
    unknown_share: float = 0.0  # the share of requests drawn from the unmonitored pool (echolab.prompts.pool)
    unknown_kinds: tuple[str, ...] = ()  # the pool's kinds those requests are drawn from

    def check(self) -> None:
        if self.requests < 1:
            raise DayError("a day needs at least 1 request")
        if not self.classes:
            raise DayError("a day needs at least one class")
        if not 0 < self.min_gap_s <= self.mean_gap_s:
            raise DayError("quiet stretches: 0 < min_gap_s <= mean_gap_s")
        if not 0 <= self.idle_share <= 1 or not 0 < self.idle_s[0] <= self.idle_s[1]:
            raise DayError("long idle stretches: idle_share in [0, 1] and 0 < low <= high")
        if not 0 <= self.unknown_share <= 1:
            raise DayError("--unknown-share is a share of the requests, from 0 to 1")
        if self.unknown_share > 0 and not self.unknown_kinds:
            raise DayError("unmonitored requests need kinds to be drawn from (the unmonitored prompt pool)")
        clash = sorted(set(self.unknown_kinds) & set(self.classes))
        if clash:
            raise DayError(f"{', '.join(clash)} cannot be both a class and an unmonitored kind")


@dataclass(frozen=True)
class PlannedRequest:
    index: int
    label: str
    gap_s: float  # household seconds of quiet before the prompt
    prompt_s: float
    unmonitored: bool = False  # drawn from the unmonitored pool: *label* is its kind


def plan_day(settings: DaySettings) -> list[PlannedRequest]:
    """The day's requests, a pure function of the settings (the seed included)."""
    settings.check()
    rng = np.random.default_rng([settings.seed, 0xDA7])
    # a stream of its own, so a day without unmonitored requests is drawn as it always was
    unknown = np.random.default_rng([settings.seed, 0x0B5])
    out = []
    for i in range(settings.requests):
        if rng.random() < settings.idle_share:
            gap = float(rng.uniform(*settings.idle_s))
        else:
            gap = settings.min_gap_s + float(rng.exponential(settings.mean_gap_s - settings.min_gap_s))
        label = str(settings.classes[int(rng.integers(len(settings.classes)))])
        other = settings.unknown_share > 0 and unknown.random() < settings.unknown_share
        if other:
            label = str(settings.unknown_kinds[int(unknown.integers(len(settings.unknown_kinds)))])
        out.append(PlannedRequest(i + 1, label, round(gap, 3), round(float(rng.uniform(*settings.prompt_s)), 3),
                                  other))
    return out


@dataclass
class TruthRow:
    """One played request: what was asked, and when (epoch seconds)."""

    request: int
    label: str
    start: float
    end: float
    prompt_s: float
    prompt: str = ""  # the words spoken (empty: a silent clip of drawn length)
    unmonitored: bool = False  # a request of the unmonitored pool (*label* is its kind), in no class

    def to_json(self) -> dict[str, Any]:
        iso = lambda t: datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")  # noqa: E731
        return {"request": self.request, "label": self.label, "start": iso(self.start), "end": iso(self.end),
                "start_ts": round(self.start, 6), "end_ts": round(self.end, 6), "prompt_s": self.prompt_s,
                "prompt": self.prompt, "unmonitored": self.unmonitored}


class DayPrompts:
    """What each request of a day says: one of its class's prompts, spoken by the lab's speech engine.

    The same lists, wake word, engine and audio cache a campaign uses
    (:func:`echolab.prompts.lists.load_prompts`, :mod:`echolab.prompts.cache`);
    the n-th request of a class speaks the prompt a campaign's n-th capture of
    that class would (:func:`echolab.collector.schedule.pick_prompt`), so a
    day's utterances are drawn as a training campaign's are.
    """

    def __init__(self, lab: Any, classes: Sequence[str], *, engine: str | None = None, seed: int = 0,
                 wake_word: str | None = None, engine_options: dict[str, Any] | None = None,
                 unknown_kinds: Sequence[str] = ()) -> None:
        from echolab.prompts.cache import AudioCache
        from echolab.prompts.lists import load_prompts
        from echolab.prompts.synth import engine_for_lab

        self.prompts = load_prompts(lab, list(classes), wake_word)
        if unknown_kinds:  # the unmonitored pool's kinds (echolab.prompts.pool), spoken as the classes are
            from echolab.prompts.pool import load_pool

            self.prompts.update(load_pool(lab, list(unknown_kinds), wake_word))
        classes = [*classes, *unknown_kinds]
        missing = [c for c in classes if not self.prompts.get(c)]
        if missing:
            raise DayError(f"no prompts for {', '.join(missing)}",
                           hint="add them to the lab's prompt lists ('echolab prompts ls' shows what is there)")
        self.engine = engine_for_lab(lab, engine, **(engine_options or {}))
        self.cache = AudioCache.for_lab(lab)
        self.seed = seed

    def for_plan(self, plan: Sequence[PlannedRequest],
                 progress: ProgressCallback | None = None) -> list[tuple[str, Any]]:
        """``(text, clip)`` for every planned request, synthesized now (before the day's clock starts)."""
        from echolab.collector.schedule import pick_prompt

        seen: dict[str, int] = {}
        out = []
        for i, req in enumerate(plan):
            n = seen.get(req.label, 0)
            seen[req.label] = n + 1
            prompt = pick_prompt(self.prompts[req.label], req.label, n, self.seed)
            text = getattr(prompt, "text", str(prompt))
            out.append((text, self.cache.get_or_synthesize(self.engine, text)))
            if progress is not None:
                progress("speech for the day's prompts", i + 1, len(plan))
        return out


@dataclass
class DayResult:
    out_dir: Path
    capture: Path
    log: Path
    truth: list[TruthRow] = field(default_factory=list)
    speed: float = 1.0
    device_ip: str = ""
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def read_truth(path: Path | str) -> list[TruthRow]:
    """The ground-truth log of a day (``day.jsonl``, or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / LOG_NAME
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DayError(f"cannot read the day's log {path}: {exc.strerror}") from exc
    rows = []
    for line in filter(str.strip, lines):
        raw = json.loads(line)
        rows.append(TruthRow(raw["request"], raw["label"], raw["start_ts"], raw["end_ts"], raw.get("prompt_s", 0.0),
                             raw.get("prompt", ""), bool(raw.get("unmonitored", False))))
    return rows


def play_day(lab: Any, out_dir: Path | str, settings: DaySettings, *, prompts: DayPrompts | None = None,
             tool: str = "dumpcap", on_request: Callable[[TruthRow], None] | None = None,
             should_stop: Callable[[], bool] = lambda: False,
             progress: ProgressCallback | None = None) -> DayResult:
    """Play the day *settings* draw on the running *lab*; return where the capture and the log are.

    With *prompts*, every request speaks one of its class's prompts (synthesized
    before the day starts; *progress* sees that); without, a silent clip of the
    planned length. A request the Echo refuses (busy, disconnected) is logged
    as failed and the day goes on; Ctrl-C ends the day early with the capture
    and the log kept.
    """
    from echolab.collector.audio import DurationClip
    from echolab.collector.recorder import CaptureProcess

    plan = plan_day(settings)
    spoken = prompts.for_plan(plan, progress) if prompts is not None else [
        ("", DurationClip(req.prompt_s)) for req in plan]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    capture, log = out / CAPTURE_NAME, out / LOG_NAME
    speed = float(lab.speed)
    utterances = (f"the lab's prompt lists, spoken by {prompts.engine.name}" if prompts is not None else
                  f"silent clips of {settings.prompt_s[0]:g} to {settings.prompt_s[1]:g} s, the same for every class")
    meta = {"settings": {**asdict(settings), "classes": list(settings.classes),
                         "unknown_kinds": list(settings.unknown_kinds)}, "speed": speed,
            "utterances": utterances,
            "device_ip": lab.echo_ip, "capture": CAPTURE_NAME, "log": LOG_NAME, "prefix": lab.prefix,
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    (out / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    result = DayResult(out, capture, log, speed=speed, device_ip=lab.echo_ip)
    started = time.monotonic()
    cap = CaptureProcess.start(capture, lab.interface, f"host {lab.echo_ip}", prefix=lab.netns_exec(), tool=tool)
    sink = lab.sink()
    try:
        with log.open("w") as fh:
            for req, (text, clip) in zip(plan, spoken):
                _sleep(req.gap_s / speed, should_stop)
                if should_stop():
                    break
                lab.wait_idle(60.0)
                start = time.time()
                try:
                    sink.play(clip, label=req.label, prompt_text=text or f"a {req.label} request")
                except EcholabError as exc:
                    result.failed.append(f"request {req.index} ({req.label}): {exc}")
                    continue
                lab.wait_idle(max(120.0 / speed, 10.0), poll_s=0.02)
                row = TruthRow(req.index, req.label, start, time.time(), round(float(clip.duration_s), 3), text,
                               req.unmonitored)
                fh.write(json.dumps(row.to_json()) + "\n")
                fh.flush()
                result.truth.append(row)
                if on_request is not None:
                    on_request(row)
            _sleep(settings.min_gap_s / speed, lambda: False)  # the last answer's tail reaches the capture
    except KeyboardInterrupt:
        pass
    finally:
        cap.stop()
    result.seconds = time.monotonic() - started
    return result


def _sleep(seconds: float, should_stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0 and not should_stop():
        time.sleep(min(left, 0.2))


# --------------------------------------------------------------------------- scoring against the truth


@dataclass
class DayScore:
    """Requests found and classified, matched to the truth by time overlap."""

    truth: int
    found: int
    matched: int
    correct: int

    @property
    def precision(self) -> float:
        return self.matched / self.found if self.found else 0.0

    @property
    def recall(self) -> float:
        return self.matched / self.truth if self.truth else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def accuracy(self) -> float:
        """Correct classes among the matched requests."""
        return self.correct / self.matched if self.matched else 0.0


def match(truth: Sequence[TruthRow], found: Sequence[tuple[float, float, str]], *,
          slack_s: float = 0.5) -> tuple[DayScore, list[tuple[int, int]]]:
    """Pair found requests ``(start, end, label)`` with true ones, one to one, by the largest time overlap.

    Two requests overlap when their spans, each widened by *slack_s*, do.
    Returns the score and the pairs (truth index, found index).
    """
    candidates = []
    for i, t in enumerate(truth):
        for j, (a, b, _) in enumerate(found):
            overlap = min(t.end, b) - max(t.start, a) + 2 * slack_s
            if overlap > 0:
                candidates.append((overlap, i, j))
    used_t: set[int] = set()
    used_f: set[int] = set()
    pairs = []
    for _, i, j in sorted(candidates, reverse=True):
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
            pairs.append((i, j))
    correct = sum(1 for i, j in pairs if truth[i].label == found[j][2])
    return DayScore(len(truth), len(found), len(pairs), correct), sorted(pairs)


__all__ = ["DayError", "DayPrompts", "DayResult", "DayScore", "DaySettings", "PlannedRequest", "TruthRow", "match", "plan_day",
           "play_day", "read_truth"]
