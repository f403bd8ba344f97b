"""``echolab prompts``: list, check and synthesize the voice prompts."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from echolab.cli.common import EngineName, console, emit_rows, err_console, get_lab, rich_progress
from echolab.errors import LabError
from echolab.labdir import LabDir
from echolab.prompts import nonsense
from echolab.prompts.classes import STUDY_PER_CLASS
from echolab.prompts.lists import read_lists, resolve_wake_word, validate_lists, load_prompts
from echolab.prompts.speech import manifest_rows
from echolab.prompts.synth import DEFAULT_WORKERS, synthesize_lab

app = typer.Typer(help="List, check and synthesize the voice prompts of each class.", no_args_is_help=True)

LS_COLUMNS = ("class", "prompts", "unique", "repeat", "source", "samples")


ClassesOption = Annotated[
    Optional[list[str]],
    typer.Option("--classes", "--class", help="Only these classes (repeat, or separate with commas). Default: all."),
]
WakeOption = Annotated[
    Optional[str],
    typer.Option("--wake-word", help="Alexa, Echo, Computer or Amazon. Default: the lab's wake_word setting, else Alexa."),
]


def _classes(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _lab_if_any(ctx: typer.Context) -> LabDir | None:
    """The lab, or None when its directory does not exist (shipped lists only)."""
    try:
        return get_lab(ctx)
    except LabError as exc:
        if "does not exist" not in str(exc):
            raise
        err_console.print(f"[dim]{exc.args[0].split(';')[0]}: using the shipped lists only[/dim]")
        return None


def _fmt(json_: bool, csv_: bool) -> str:
    if json_ and csv_:
        raise typer.BadParameter("choose one of --json and --csv")
    return "json" if json_ else "csv" if csv_ else "table"


@app.command("ls")
def ls(
    ctx: typer.Context,
    classes: ClassesOption = None,
    wake_word: WakeOption = None,
    samples: Annotated[int, typer.Option(min=0, help="How many sample prompts to show per class.")] = 1,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    csv_: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
    pool: Annotated[bool, typer.Option("--pool", help="List the unmonitored pool's kinds (requests of no class, "
                                                      "for the open world) instead of the classes.")] = False,
) -> None:
    """List the classes, how many prompts each has, where its list is, samples."""
    fmt = _fmt(json_, csv_)
    lab = _lab_if_any(ctx)
    wake = resolve_wake_word(wake_word, lab)
    rows = []
    if pool:
        from echolab.prompts.pool import read_pool

        lists = read_pool(lab, _classes(classes))
    else:
        lists = read_lists(lab, _classes(classes))
    for name, plist in lists.items():
        shown = [p.text for p in plist.prompts(wake)[: min(samples, len(plist.lines))]]
        rows.append({
            "class": name,
            "prompts": plist.count,
            "unique": plist.unique,
            "repeat": plist.repeat,
            "source": "shipped" if plist.shipped else str(plist.path),
            "samples": " | ".join(shown),
        })
    emit_rows(rows, LS_COLUMNS, fmt=fmt, title=f"{'Unmonitored pool' if pool else 'Prompt lists'} (wake word {wake})")


@app.command("validate")
def validate(
    ctx: typer.Context,
    per_class: Annotated[int, typer.Option(min=1, help="Prompts each class needs, repeats included.")] = STUDY_PER_CLASS,
    classes: ClassesOption = None,
) -> None:
    """Check the lists: empty lines, duplicates, wake word, length, enough prompts.

    Prints every problem as FILE:LINE: severity: message; exits 1 on any error.
    """
    lab = _lab_if_any(ctx)
    wanted = _classes(classes)
    problems = validate_lists(lab, wanted, per_class)
    for problem in problems:
        typer.echo(str(problem))
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    checked = len(wanted) if wanted else len(read_lists(lab))
    if errors:
        typer.echo(f"{errors} error(s), {warnings} warning(s) in the prompt lists", err=True)
        raise typer.Exit(1)
    typer.echo(f"ok: {checked} classes with at least {per_class} prompts each ({warnings} warning(s))")


@app.command("synth")
def synth(
    ctx: typer.Context,
    engine: Annotated[Optional[EngineName], typer.Option(help="Speech engine. Default: the lab's [speech] engine, else espeak.")] = None,
    classes: ClassesOption = None,
    wake_word: WakeOption = None,
    voice: Annotated[Optional[str], typer.Option(help="espeak-ng voice (see 'espeak-ng --voices'), e.g. en-us, en-gb.")] = None,
    speed: Annotated[Optional[int], typer.Option(help="espeak-ng speed in words per minute.")] = None,
    lang: Annotated[Optional[str], typer.Option(help="gTTS language, e.g. en.")] = None,
    tld: Annotated[Optional[str], typer.Option(help="gTTS accent by Google domain: com, co.uk, com.au, co.in...")] = None,
    recordings: Annotated[Optional[Path], typer.Option(help="Folder of recordings (recorded engine). Default: LAB/prompts/recordings.")] = None,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Prompts synthesized at once.")] = DEFAULT_WORKERS,
) -> None:
    """Synthesize every prompt into the lab's audio cache, before a run.

    An unattended run then needs no network. Already cached prompts are not made again.
    """
    lab = get_lab(ctx, create=True)
    options = {"voice": voice, "speed": speed, "lang": lang, "tld": tld, "folder": recordings}
    chosen = engine.value if engine else None
    with rich_progress() as progress:
        report = synthesize_lab(lab, chosen, _classes(classes), wake_word=wake_word, workers=workers,
                                progress=progress, **options)
    for text, message in report.failed.items():
        err_console.print(f"failed: {text!r}: {message}", highlight=False, markup=False)
    per = report.seconds_per_synthesis
    speed_note = f", {per * 1000:.0f} ms per prompt" if per else ""
    console.print(
        f"{report.engine} {report.voice}: {report.synthesized} synthesized, {report.cached} cached, "
        f"{len(report.failed)} failed ({report.seconds:.1f} s{speed_note}); audio in {lab.audio_dir}",
        highlight=False,
    )
    if report.failed:
        raise typer.Exit(1)


@app.command("recordings")
def recordings(
    ctx: typer.Context,
    classes: ClassesOption = None,
    wake_word: WakeOption = None,
    output: Annotated[Optional[Path], typer.Option(help="Write the manifest here (e.g. FOLDER/manifest.csv) instead of printing it.")] = None,
) -> None:
    """Print the manifest.csv (text,file) a folder of recordings needs."""
    lab = _lab_if_any(ctx)
    prompts = load_prompts(lab, _classes(classes), wake_word)
    rows = manifest_rows(p.text for plist in prompts.values() for p in plist)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["text", "file"])
    writer.writeheader()
    writer.writerows(rows)
    if output is None:
        sys.stdout.write(buf.getvalue())
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(buf.getvalue(), encoding="utf-8")
    console.print(f"wrote {len(rows)} prompts to {output}", highlight=False)


@app.command("nonsense")
def nonsense_cmd(
    ctx: typer.Context,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same list.")] = nonsense.SEED,
    count: Annotated[int, typer.Option(min=1, help="How many sentences.")] = nonsense.COUNT,
    output: Annotated[Optional[Path], typer.Option(help="Where to write. Default: LAB/prompts/unintelligible.txt (replaces the shipped list for this lab).")] = None,
) -> None:
    """Write a list of unintelligible prompts (nonsense words) from a seed."""
    target = output or get_lab(ctx, create=True).prompts_dir / "unintelligible.txt"
    console.print(f"wrote {count} prompts (seed {seed}) to {nonsense.write_list(target, seed, count)}", highlight=False)
