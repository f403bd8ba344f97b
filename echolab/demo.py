"""``echolab demo``: the whole toolkit on the simulated lab, start to report.

It creates the lab directory, brings the simulated lab up (or, where network
namespaces cannot be made, writes synthetic captures from the same model),
synthesizes the prompts offline, collects a balanced data set unattended,
builds the three feature sets, runs the classifier comparison, writes the
report and prints the Table II-shaped summary. Every step is resumable: an
interrupted demo, run again, carries on where it stopped (the campaign
resumes, features and finished trials come from the catalog). Each step after
the simulated lab is one call on the library's front door, :class:`echolab.Lab`.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from echolab.api import Lab
from echolab.labdir import LabDir
from echolab.progress import ProgressCallback
from echolab.prompts.classes import STUDY_CLASSES, STUDY_PER_CLASS

if TYPE_CHECKING:
    from echolab.db.records import AnalysisRun

DEMO_SIM_PREFIX = "echolab-demo"
DEMO_SIM_SLOTS = 9  # demos that can run at once on one machine, each on its own simulated lab
QUICK_TRIALS = 5


@dataclass
class DemoSettings:
    per_class: int = STUDY_PER_CLASS
    trials: int = QUICK_TRIALS
    speed: float = 60.0  # the simulated lab's time factor: waits and streams are this much shorter
    seed: int = 0
    jobs: int | None = None
    backend: str = "sim"  # "sim", or "synthetic" where namespaces cannot be made


@dataclass
class DemoResult:
    campaign: str
    run: "AnalysisRun"  # the comparison's stored run (its summary holds the accuracy table)
    report: Path
    backend: str
    seconds: dict[str, float]

    @property
    def run_name(self) -> str:
        return self.run.name


class PlainConsole:
    """Where the demo's messages go when the caller gives no console: plain lines on stdout."""

    _MARKUP = re.compile(r"\[(?:bold|yellow|/)\]")

    def print(self, *objects: Any, **_options: Any) -> None:
        print(*(self._MARKUP.sub("", str(o)) for o in objects))

    def rule(self, title: str = "", **_options: Any) -> None:
        print(f"-- {self._MARKUP.sub('', title)} --")


@contextmanager
def demo_sim_prefix(root: Path | str | None = None) -> Iterator[str]:
    """A simulated-lab prefix no other running demo holds: ``echolab-demo``, else ``echolab-demo2`` ...

    Each prefix is claimed by an exclusive lock on a file next to the labs'
    run directories (``RUN_ROOT/PREFIX.demo``), held until the block ends; the
    system drops it when a demo dies, and the next demo to take that prefix
    cleans up what the dead one left (``SimLab.up`` does).
    """
    from echolab.collector.sim import SimError
    from echolab.collector.sim.lab import run_root

    base = run_root(root)
    try:
        base.mkdir(parents=True, exist_ok=True)
    except PermissionError:  # not root: SimLab.up will say so, and the demo falls back to synthetic captures
        yield DEMO_SIM_PREFIX
        return
    for slot in range(1, DEMO_SIM_SLOTS + 1):
        prefix = DEMO_SIM_PREFIX if slot == 1 else f"{DEMO_SIM_PREFIX}{slot}"
        fd = os.open(base / f"{prefix}.demo", os.O_RDWR | os.O_CREAT, 0o644)  # not SimLab.up's own PREFIX.lock
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield prefix
        finally:
            os.close(fd)  # closing drops the lock
        return
    raise SimError(f"{DEMO_SIM_SLOTS} demos are already running on this machine, each on its own simulated lab",
                   hint="wait for one to finish, or write synthetic captures (echolab demo --synthetic)")


def run_demo(lab: LabDir, settings: DemoSettings, console: Any = None, *,
             progress: ProgressCallback | None = None, collect_display: Any = None) -> DemoResult:
    """Run every step of the demo on *lab*; see the module docstring.

    *console* (a rich ``Console``, as the CLI passes, or anything with ``print``
    and ``rule``; default :class:`PlainConsole`) shows the steps; *progress* is
    called by the speech, feature and comparison steps (``echolab.progress``);
    *collect_display* shows the collection (``echolab.collector.collect.Display``;
    default: a plain line every few captures on stdout).
    """
    from echolab.collector.campaign import CollectSettings
    from echolab.collector.collect import plain_display
    from echolab.collector.sim import NamespaceUnavailable, SimLab, down
    from echolab.prompts.synth import synthesize_lab

    console = console or PlainConsole()
    collect_display = collect_display or plain_display()
    seconds: dict[str, float] = {}
    steps = 6

    def step(n: int, title: str) -> float:
        console.rule(f"[bold]{n}/{steps} {title}")
        return time.perf_counter()

    t = step(1, "Simulated lab")
    backend, started_sim = settings.backend, False
    claim = ExitStack()
    prefix = claim.enter_context(demo_sim_prefix()) if backend == "sim" else DEMO_SIM_PREFIX
    if backend == "sim":
        try:
            sim = SimLab.up(prefix=prefix, speed=settings.speed, seed=settings.seed)
            started_sim = True
            console.print(f"Echo {sim.echo_ip} -> gateway {sim.netns}:{sim.interface} -> voice {sim.voice_ip}, "
                          f"music {sim.music_ip}; speed x{sim.speed:g}")
        except NamespaceUnavailable as exc:
            backend = "synthetic"
            console.print(f"[yellow]{exc}[/]\nFalling back to synthetic captures written from the same model "
                          "(catalogued as synthetic).")
    seconds["lab"] = time.perf_counter() - t
    try:
        t = step(2, "Prompts: offline speech (espeak-ng)")
        synth = synthesize_lab(lab, "espeak", list(STUDY_CLASSES), progress=progress)
        console.print(f"{synth.synthesized} prompts synthesized, {synth.cached} already in the cache")
        seconds["speech"] = time.perf_counter() - t

        t = step(3, f"Collecting {settings.per_class} captures per class, classes interleaved")
        campaign = f"demo-{backend}-{settings.per_class}-seed{settings.seed}"  # a rerun carries this one on
        with Lab(lab) as front:
            exists = any(c.name == campaign for c in front.campaigns())
        collected = Lab(lab).collect(CollectSettings(backend=backend, per_class=settings.per_class, speed=settings.speed,
                                                 seed=settings.seed, sim_prefix=prefix,
                                                 classes=list(STUDY_CLASSES)),
                            resume=campaign if exists else None, new=not exists, name=campaign,
                            display=collect_display)
        overhead = collected.median_overhead()
        console.print(f"Campaign {collected.campaign}: {sum(collected.counts.values())} good captures"
                      + (f"; median collector overhead {overhead:.3f} s per capture" if overhead else ""))
        seconds["collect"] = time.perf_counter() - t
    finally:
        with claim:
            if started_sim:
                down(prefix)
            console.print("Simulated lab taken down.")

    with Lab(lab) as front:
        t = step(4, "Features: tcptrace, histogram, combined")
        built = front.build_features(progress=progress)
        console.print(f"{built.extracted} captures read, {built.cached} from the feature cache, "
                      f"{built.failed} unusable")
        seconds["features"] = time.perf_counter() - t

        t = step(5, f"Classifier comparison: 3 feature sets x 6 models x {settings.trials} trials")
        run_name = f"demo-{settings.per_class}x{settings.trials}-seed{settings.seed}"
        result = front.compare(trials=settings.trials, seed=settings.seed, name=run_name, jobs=settings.jobs,
                               progress=progress)
        console.print(f"{result.computed} trials computed, {result.cached} from the cache, {result.seconds:.0f} s")
        seconds["analysis"] = time.perf_counter() - t

        t = step(6, "Report")
        report = front.report(result)
        seconds["report"] = time.perf_counter() - t
    return DemoResult(collected.campaign, result.run, report, backend, seconds)
