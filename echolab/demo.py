"""``echolab demo``: the whole toolkit on the simulated lab, start to report.

It creates the lab directory, brings the simulated lab up (or, where network
namespaces cannot be made, writes synthetic captures from the same model),
synthesizes the prompts offline, collects a balanced data set unattended,
builds the three feature sets, runs the classifier comparison, writes the
report and prints the Table II-shaped summary. Every step is resumable: an
interrupted demo, run again, carries on where it stopped (the campaign
resumes, features and finished trials come from the catalog).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from echolab.labdir import LabDir
from echolab.progress import ProgressCallback
from echolab.prompts.classes import STUDY_CLASSES, STUDY_PER_CLASS

if TYPE_CHECKING:
    from rich.console import Console

    from echolab.db.models import AnalysisRun

DEMO_SIM_PREFIX = "echolab-demo"
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


def run_demo(lab: LabDir, settings: DemoSettings, console: Console | None = None, *,
             progress: ProgressCallback | None = None) -> DemoResult:
    """Run every step of the demo on *lab*; see the module docstring.

    *console* shows the steps and the collection's live view; *progress* is
    called by the speech, feature and comparison steps (``echolab.progress``).
    """
    from rich.console import Console
    from rich.rule import Rule

    from echolab.analysis.compare.report import write_report
    from echolab.analysis.compare.runner import run_analysis
    from echolab.analysis.compare.sources import catalog_source
    from echolab.analysis.compare.specs import RunSettings
    from echolab.analysis.features.store import build_features
    from echolab.collector.campaign import CollectSettings
    from echolab.collector.run import collect
    from echolab.collector.sim import NamespaceUnavailable, SimLab, down
    from echolab.db.catalog import Catalog
    from echolab.prompts.synth import synthesize_lab

    console = console or Console()
    seconds: dict[str, float] = {}
    steps = 6

    def step(n: int, title: str) -> float:
        console.print(Rule(f"[bold]{n}/{steps} {title}"))
        return time.perf_counter()

    t = step(1, "Simulated lab")
    backend, started_sim = settings.backend, False
    if backend == "sim":
        try:
            sim = SimLab.up(prefix=DEMO_SIM_PREFIX, speed=settings.speed, seed=settings.seed)
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
        with Catalog.open(lab) as catalog:
            exists = any(c.name == campaign for c in catalog.campaigns())
        collected = collect(lab, CollectSettings(backend=backend, per_class=settings.per_class, speed=settings.speed,
                                                 seed=settings.seed, sim_prefix=DEMO_SIM_PREFIX,
                                                 classes=list(STUDY_CLASSES)),
                            resume=campaign if exists else None, new=not exists, name=campaign, console=console)
        overhead = collected.median_overhead()
        console.print(f"Campaign {collected.campaign}: {sum(collected.counts.values())} good captures"
                      + (f"; median collector overhead {overhead:.3f} s per capture" if overhead else ""))
        seconds["collect"] = time.perf_counter() - t
    finally:
        if started_sim:
            down(DEMO_SIM_PREFIX)
            console.print("Simulated lab taken down.")

    with Catalog.open(lab) as catalog:
        t = step(4, "Features: tcptrace, histogram, combined")
        built = build_features(catalog, progress=progress)
        console.print(f"{built.extracted} captures read, {built.cached} from the feature cache, "
                      f"{built.failed} unusable")
        seconds["features"] = time.perf_counter() - t

        t = step(5, f"Classifier comparison: 3 feature sets x 6 models x {settings.trials} trials")
        run_name = f"demo-{settings.per_class}x{settings.trials}-seed{settings.seed}"
        result = run_analysis(catalog, catalog_source(catalog, progress=progress),
                              RunSettings(trials=settings.trials, seed=settings.seed), name=run_name,
                              jobs=settings.jobs, progress=progress)
        console.print(f"{result.computed} trials computed, {result.cached} from the cache, {result.seconds:.0f} s")
        seconds["analysis"] = time.perf_counter() - t

        t = step(6, "Report")
        report = write_report(result.run, lab.reports_dir / result.name)
        catalog.set_report_dir(result.run, report.parent)
        seconds["report"] = time.perf_counter() - t
    return DemoResult(collected.campaign, result.run, report, backend, seconds)
