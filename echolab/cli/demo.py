"""``echolab demo``: the README's main job."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from echolab.cli.analyze import accuracy_table
from echolab.cli.common import console, get_lab, rich_progress
from echolab.demo import QUICK_TRIALS, DemoSettings, run_demo
from echolab.prompts.classes import STUDY_PER_CLASS

app = typer.Typer(help="Run the whole toolkit on the simulated lab: collect, features, comparison, report.",
                  invoke_without_command=True)


@app.callback()
def demo(
    ctx: typer.Context,
    per_class: Annotated[int, typer.Option(min=5, help="Captures per class.")] = STUDY_PER_CLASS,
    trials: Annotated[int, typer.Option(min=1, help="Trials of the comparison (quick default).")] = QUICK_TRIALS,
    full: Annotated[bool, typer.Option("--full", help="The study's full protocol: 100 trials.")] = False,
    speed: Annotated[float, typer.Option(help="Simulated lab time factor.")] = DemoSettings.speed,
    seed: Annotated[int, typer.Option(help="Seed of collection order and trial splits.")] = 0,
    jobs: Annotated[Optional[int], typer.Option(help="Worker processes for the comparison.")] = None,
    synthetic: Annotated[bool, typer.Option("--synthetic", help="Write synthetic captures instead of "
                                                                "running the namespaces.")] = False,
) -> None:
    """Collect a balanced data set on the simulated lab, compare the classifiers, write the report."""
    lab = get_lab(ctx, create=True)
    settings = DemoSettings(per_class=per_class, trials=100 if full else trials, speed=speed, seed=seed, jobs=jobs,
                            backend="synthetic" if synthetic else "sim")
    with rich_progress(stop_when_done=True) as progress:
        result = run_demo(lab, settings, console, progress=progress)
    console.print(accuracy_table(result.run))
    console.print(f"\nReport: {result.report}\nMarkdown summary: {result.report.parent / 'summary.md'}\n"
                  "Accuracies measured on the simulated lab say nothing about a real Echo (docs/simulation.md).")
    total = sum(result.seconds.values())
    typer.echo("Time per step: " + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
               + f"; total {total / 60:.1f} min")
