"""Starting or resuming a campaign: backend, prompts, speech, progress display, log.

The progress display is the caller's: :func:`collect` takes a *display*, a
function of the :class:`~echolab.collector.campaign.CampaignRunner` that returns a
context manager yielding the runner's event callback. :func:`plain_display` prints
a plain line every few captures (for output that is not a terminal: nohup, a
service); the command line passes its rich live view on a terminal.

On a simulated lab that replays recorded requests (``sim up --replay``), the
classes default to the recorded ones and each class's prompt is its name: the
replayed upload is the recorded one, whatever is "said".
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from datetime import datetime
from typing import Any, Callable, ContextManager, Iterator, TextIO

from filelock import FileLock, Timeout

from echolab.collector.audio import device_spec
from echolab.collector.backends import Backend, EchoBackend, SimBackend, SyntheticBackend
from echolab.collector.campaign import CampaignRunner, CollectError, CollectResult, CollectSettings, log
from echolab.db.catalog import Catalog
from echolab.db.records import Campaign, CampaignStatus
from echolab.labdir import LabDir
from echolab.prompts.classes import STUDY_CLASSES

RESUMABLE = (CampaignStatus.running.value, CampaignStatus.interrupted.value, CampaignStatus.paused.value)
#: Settings of the lab's hardware that may change between two sittings of one campaign
#: (a new DHCP lease, another sound card); given on the command line they win over the stored ones.
HARDWARE = ("device_ip", "interface", "audio_device", "capture_tool", "location")


def find_resumable(catalog: Catalog, settings: CollectSettings) -> Campaign | None:
    """The newest unfinished campaign with the same backend, classes, target and live defense."""
    for camp in reversed(catalog.campaigns()):
        if (camp.status in RESUMABLE and camp.backend == settings.backend
                and camp.target_per_class == settings.per_class and list(camp.classes or []) == settings.classes
                and (camp.settings or {}).get("defense") == settings.defense):
            return camp
    return None


def pick_campaign(catalog: Catalog, settings: CollectSettings, *, resume: str | None = None,
                  new: bool = False) -> tuple[Campaign | None, CollectSettings]:
    """The campaign to carry on (named, or the unfinished one) with its stored settings; None: a new one."""
    if resume:
        camp = catalog.campaign(resume)
        if camp.status == CampaignStatus.imported.value:
            raise CollectError(f"campaign {camp.name} holds imported captures; it cannot be collected into")
        return camp, _resumed(camp, settings)
    if not new:
        camp = find_resumable(catalog, settings)
        if camp is not None:
            log.info("resuming unfinished campaign %s", camp.name)
            return camp, _resumed(camp, settings)
    return None, settings


def _resumed(camp: Campaign, given: CollectSettings) -> CollectSettings:
    """The campaign's stored settings, with the hardware settings given now where they differ from the defaults."""
    stored = CollectSettings.from_dict(camp.settings or {})
    defaults = CollectSettings()
    for name in HARDWARE:
        value = getattr(given, name)
        if value != getattr(defaults, name) and value != getattr(stored, name):
            log.info("resuming %s with %s=%s (was %s)", camp.name, name, value, getattr(stored, name))
            setattr(stored, name, value)
    return stored


def create_campaign(catalog: Catalog, settings: CollectSettings, name: str | None = None,
                    voice: str | None = None) -> Campaign:
    name = name or f"{settings.backend}-{datetime.now():%Y%m%d-%H%M%S}"
    device = None
    if settings.device_ip:
        device = catalog.device(f"{settings.backend}-echo-{settings.device_ip}", ip=settings.device_ip,
                                model="simulated Echo" if settings.backend != "echo" else None)
    return catalog.create_campaign(
        name, backend=settings.backend, engine=settings.engine,
        voice=voice, target_per_class=settings.per_class,
        classes=settings.classes, settings=asdict(settings), location=settings.location, device=device,
    )


def replay_classes(settings: CollectSettings) -> list[str]:
    """The classes of the requests a running simulated lab replays (none: not a replaying lab)."""
    if settings.backend != "sim":
        return []
    from echolab.collector.sim import SimLab, SimNotRunning
    from echolab.collector.sim.recordings import classes

    try:
        return classes(SimLab.load(settings.sim_prefix).recordings())
    except SimNotRunning:
        return []


def check_defense(settings: CollectSettings) -> None:
    """A live defense is the simulated lab's: its spec made canonical, or one CollectError line for another backend."""
    if not settings.defense:
        settings.defense = None
        return
    if settings.backend == "echo":
        raise CollectError("a real Echo cannot be made to pad or shape its traffic: --defense works on the simulated "
                           "lab (--backend sim); 'echolab defend' defends the captures of a real Echo")
    if settings.backend != "sim":
        raise CollectError(f"--defense works on the simulated lab (--backend sim), not {settings.backend}; "
                           "'echolab defend' defends stored captures")
    from echolab.collector.sim.shaping import live_defense

    settings.defense = live_defense(settings.defense).spec


def make_backend(settings: CollectSettings, stack: ExitStack) -> Backend:
    """The backend the settings name; brings the simulated lab up (with the live defense) when it is not running.

    The settings' defense has been checked by :func:`check_defense` (as :func:`collect` does first).
    """
    if settings.backend == "echo":
        if not settings.device_ip or not settings.interface:
            raise CollectError("the echo backend needs --device-ip (the Echo's address) and --interface "
                               "(the gateway interface the Echo's traffic crosses)")
        return EchoBackend.with_speaker(settings.device_ip, settings.interface, device_spec(settings.audio_device))
    if settings.backend == "sim":
        from echolab.collector.sim import SimLab, SimNotRunning, down

        try:
            lab = SimLab.load(settings.sim_prefix)
            if settings.speed != lab.speed:
                log.info("the simulated lab runs at speed %s; using it", lab.speed)
            if lab.defense != (settings.defense or ""):
                raise CollectError(f"the simulated lab {settings.sim_prefix!r} is up with "
                                   f"{'defense ' + lab.defense if lab.defense else 'no defense'}, not "
                                   f"{settings.defense or 'none'}; stop it ('echolab sim down') or pass another "
                                   "--sim-prefix, and collect starts a lab of its own")
        except SimNotRunning:
            lab = SimLab.up(prefix=settings.sim_prefix, speed=settings.speed, seed=settings.seed,
                            defense=settings.defense)
            stack.callback(down, settings.sim_prefix)
        settings.speed = lab.speed
        settings.device_ip = lab.echo_ip
        settings.interface = lab.interface
        return SimBackend.from_lab(lab)
    if settings.backend == "synthetic":
        backend = SyntheticBackend.create(settings.seed, settings.speed)
        settings.device_ip = backend.device_ip
        return backend
    raise CollectError(f"unknown backend {settings.backend!r}: use sim, echo or synthetic")


class SpeechSource:
    """text -> clip, from the lab's speech cache (synthesized on first use)."""

    def __init__(self, lab: LabDir, settings: CollectSettings) -> None:
        from echolab.prompts.cache import AudioCache
        from echolab.prompts.synth import engine_for_lab

        self.engine = engine_for_lab(lab, settings.engine, **settings.engine_options)
        self.cache = AudioCache.for_lab(lab)

    @property
    def voice(self) -> str:
        return self.engine.voice

    def __call__(self, text: str) -> Any:
        return self.cache.get_or_synthesize(self.engine, text)



class _CampaignLog(logging.FileHandler):
    """The campaign's log file; a line it cannot write (a full disk) is said once on stderr, not as a traceback."""

    warned = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.warned:
            self.warned = True
            print(f"echolab: cannot write the campaign log {self.baseFilename}: {sys.exc_info()[1]}", file=sys.stderr)


def campaign_log(lab: LabDir, name: str) -> logging.Handler:
    handler = _CampaignLog(lab.logs_dir / f"{name}.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    return handler


class PlainProgress:
    """One plain line every *every* captures, for output that is not a terminal (nohup, a service)."""

    def __init__(self, runner: CampaignRunner, every: int = 5, stream: Any = None):
        self.runner, self.every, self.stream = runner, max(every, 1), stream or sys.stdout
        self.start = time.monotonic()
        self.seen = 0

    def line(self) -> str:
        s, r = self.runner.settings, self.runner
        done = sum(min(r.counts.get(c, 0), s.per_class) for c in s.classes)
        total = s.per_class * len(s.classes)
        elapsed = time.monotonic() - self.start
        eta = f", about {elapsed / self.seen * (total - done) / 60:.0f} min left" if self.seen and done < total else ""
        failures = ", ".join(f"{k} {v}" for k, v in r.failures.items()) or "none"
        per_class = ", ".join(f"{c} {r.counts.get(c, 0)}" for c in s.classes)
        return (f"{time.strftime('%Y-%m-%d %H:%M:%S')} {r.campaign.name}: {done}/{total} captures ({per_class}); "
                f"failures: {failures}; {elapsed / 60:.1f} min{eta}")

    def event(self, kind: str, info: dict[str, Any]) -> None:
        if kind != "ok":
            return
        self.seen += 1
        s = self.runner.settings
        if self.seen % self.every == 0 or all(self.runner.counts.get(c, 0) >= s.per_class for c in s.classes):
            print(self.line(), file=self.stream, flush=True)


#: ``display(runner)`` -> a context manager yielding ``event(kind, info)``, called after every attempt.
Display = Callable[[CampaignRunner], ContextManager[Callable[[str, dict[str, Any]], None]]]


def plain_display(stream: TextIO | None = None, every: int = 5) -> Display:
    """A display that prints one plain progress line every *every* good captures to *stream*."""

    @contextmanager
    def display(runner: CampaignRunner) -> Iterator[Callable[[str, dict[str, Any]], None]]:
        yield PlainProgress(runner, every=every, stream=stream).event

    return display


def collect(
    lab: LabDir,
    settings: CollectSettings,
    *,
    resume: str | None = None,
    new: bool = False,
    name: str | None = None,
    display: Display | None = None,
) -> CollectResult:
    """Run (or resume) a campaign until every class has its target of good captures.

    *display* shows progress (see :data:`Display`; :func:`plain_display` prints
    plain lines); by default nothing is shown and the campaign log is the trail.
    """
    check_defense(settings)  # a bad spec, or a defense on a real Echo: one line before anything starts
    replayed = replay_classes(settings)
    if not settings.classes:
        settings.classes = replayed or list(STUDY_CLASSES)
    if replayed:
        unknown = [c for c in settings.classes if c not in replayed]
        if unknown:
            raise CollectError(f"the simulated lab replays no request of class {', '.join(unknown)} "
                               f"(it replays {', '.join(replayed)})")
    with ExitStack() as stack:
        lock = FileLock(str(lab.tmp_dir / "collect.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout as exc:
            raise CollectError(f"another collector is running in the lab {lab.root}; wait for it or stop it") from exc
        stack.callback(lock.release)
        catalog = stack.enter_context(Catalog.open(lab))
        campaign, settings = pick_campaign(catalog, settings, resume=resume, new=new)
        backend = make_backend(settings, stack)
        speech = None if replayed else SpeechSource(lab, settings)
        if campaign is None:
            campaign = create_campaign(catalog, settings, name, voice=speech.voice if speech else None)
        handler = campaign_log(lab, campaign.name)
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        stack.callback(log.removeHandler, handler)
        stack.callback(handler.close)
        if campaign.settings != asdict(settings):
            with catalog.transaction():
                campaign.settings = asdict(settings)
        from echolab.prompts.lists import load_prompts

        prompts = ({c: [c] for c in settings.classes} if replayed
                   else load_prompts(lab, settings.classes, settings.wake_word))
        runner = CampaignRunner(catalog, campaign, settings, backend, prompts, speech)
        runner.recover()
        if display is None:
            return runner.run()
        with display(runner) as on_event:
            runner.on_event = on_event
            return runner.run()
    raise AssertionError("unreachable")


__all__ = ["collect", "CollectSettings", "CollectResult", "CollectError", "Display", "plain_display"]
