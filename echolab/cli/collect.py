"""``echolab collect`` and ``echolab doctor``."""

from __future__ import annotations

from contextlib import contextmanager
from enum import Enum
from typing import Annotated, Any, Iterator, Optional

import typer

from echolab.api import Lab
from echolab.collector.audio import device_spec
from echolab.collector.campaign import CollectSettings
from echolab.captures.rules import RULES
from echolab.cli.common import EngineName, console, emit_rows, get_lab
from echolab.prompts.classes import STUDY_CLASSES, STUDY_PER_CLASS

collect_app = typer.Typer(help="Collect labelled captures unattended until every class reaches its target.",
                          invoke_without_command=True)
doctor_app = typer.Typer(help="Check a real lab before a long run: capture, Echo, audio, speech, disk.",
                         invoke_without_command=True)


class BackendName(str, Enum):
    sim = "sim"
    echo = "echo"
    synthetic = "synthetic"


def _classes(value: Optional[str]) -> list[str]:
    return [c.strip() for c in value.split(",") if c.strip()] if value else list(STUDY_CLASSES)


class Trailing(str, Enum):
    include = "include"
    exclude = "exclude"


@collect_app.callback()
def collect(
    ctx: typer.Context,
    backend: Annotated[BackendName, typer.Option(help="sim: the simulated lab; echo: a real Echo; "
                                                      "synthetic: simulated captures without namespaces.")] = BackendName.sim,
    per_class: Annotated[int, typer.Option(min=1, help="Good captures wanted per class.")] = STUDY_PER_CLASS,
    classes: Annotated[Optional[str], typer.Option(help="Comma-separated classes (default: the study's six; "
                                                        "on a replaying simulated lab, the recorded ones).")] = None,
    device_ip: Annotated[Optional[str], typer.Option(help="The Echo's IP address (echo backend).")] = None,
    interface: Annotated[Optional[str], typer.Option(help="Gateway interface the Echo's traffic crosses.")] = None,
    engine: Annotated[EngineName, typer.Option(help="Speech engine for the prompts.")] = EngineName.espeak,
    voice: Annotated[Optional[str], typer.Option(help="Engine voice (espeak voice, gTTS language).")] = None,
    audio_device: Annotated[Optional[str], typer.Option(help="Sound output device (index or name).")] = None,
    list_audio_devices: Annotated[bool, typer.Option("--list-audio-devices", help="List sound outputs and exit.")] = False,
    resume: Annotated[Optional[str], typer.Option(help="Carry on this campaign (name or id).")] = None,
    new: Annotated[bool, typer.Option("--new", help="Start a new campaign even if an unfinished one matches.")] = False,
    name: Annotated[Optional[str], typer.Option(help="Name of a new campaign (default: BACKEND-DATE-TIME).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the class interleaving and prompt order.")] = 0,
    speed: Annotated[float, typer.Option(help="Simulated lab time factor (sim/synthetic).")] = 1.0,
    quiet: Annotated[float, typer.Option(help="Seconds without traffic beyond keep-alive size that end an "
                                              "answer (real Echo answers pause up to 2-3 s).")] = RULES.answer_quiet_s,
    idle_gap: Annotated[float, typer.Option(help="Seconds without traffic beyond keep-alive size before the "
                                                 "Echo counts as idle and the next prompt plays.")] = RULES.idle_s,
    trailing: Annotated[Trailing, typer.Option(help="The Echo's post-answer upload: keep it in its request's "
                                                    "capture, or cut it out; never in the next one.")] = Trailing.include,
    trailing_window: Annotated[float, typer.Option(help="Seconds after an answer within which the post-answer "
                                                        "upload may come (real Echos: 8-15 s).")] = RULES.trailing_window_s,
    keepalive_bytes: Annotated[int, typer.Option(help="Packets with at most this payload are keep-alives, "
                                                      "not traffic.")] = RULES.keepalive_payload_bytes,
    location: Annotated[Optional[str], typer.Option(help="Network/location label of this campaign.")] = None,
    capture_tool: Annotated[str, typer.Option(help="dumpcap (fast start) or tshark.")] = "dumpcap",
    wake_word: Annotated[Optional[str], typer.Option(help="Alexa, Echo, Computer or Amazon.")] = None,
    progress: Annotated[bool, typer.Option(help="Show the live progress display.")] = True,
    sim_prefix: Annotated[str, typer.Option(help="Which simulated lab (its namespaces' prefix).")] = "echolab",
    defense: Annotated[Optional[str], typer.Option(
        help="The simulated lab's Echo and cloud apply this defense live on their TLS connections (a spec as in "
             "'echolab defend', e.g. mtu, front:n=300,w=0.5-3, buflo:rho=0.005,tau=2; sim backend only).")] = None,
) -> None:
    """Collect until every chosen class has the target of good captures; a rerun resumes."""
    if list_audio_devices:
        from echolab.collector.audio import list_devices

        emit_rows(list_devices(), ("index", "name", "channels", "default_samplerate"), title="Sound outputs")
        return
    lab = Lab(get_lab(ctx, create=True))
    settings = CollectSettings(
        backend=backend.value, per_class=per_class, classes=_classes(classes) if classes else [], seed=seed,
        engine=engine.value,
        engine_options={"voice": voice} if voice and engine is EngineName.espeak else
        ({"lang": voice} if voice and engine is EngineName.gtts else {}),
        wake_word=wake_word, device_ip=device_ip, interface=interface, audio_device=audio_device,
        location=location, capture_tool=capture_tool, quiet_s=quiet, idle_gap_s=idle_gap, speed=speed,
        sim_prefix=sim_prefix, trailing=trailing.value, trailing_s=trailing_window, keepalive_bytes=keepalive_bytes,
        defense=defense,
    )
    result = lab.collect(settings, resume=resume, new=new, name=name,
                         display=collect_display(console) if progress else None)
    failures = ", ".join(f"{k}: {v}" for k, v in result.failures.items()) or "none"
    overhead = result.median_overhead()
    typer.echo(f"Campaign {result.campaign} {result.status}: "
                  + ", ".join(f"{k} {v}/{result.target}" for k, v in result.counts.items())
                  + f"; failures {failures}"
                  + (f"; median collector overhead {overhead:.3f} s per capture" if overhead is not None else ""))
    if not result.done:
        typer.echo(f"Resume with: echolab --lab {lab.root} collect --resume {result.campaign}")


@doctor_app.callback()
def doctor(
    ctx: typer.Context,
    interface: Annotated[Optional[str], typer.Option(help="Gateway interface the Echo's traffic crosses.")] = None,
    device_ip: Annotated[Optional[str], typer.Option(help="The Echo's IP address.")] = None,
    audio_device: Annotated[Optional[str], typer.Option(help="Sound output device (index or name).")] = None,
    engine: Annotated[EngineName, typer.Option(help="Speech engine to check.")] = EngineName.espeak,
    per_class: Annotated[int, typer.Option(help="Planned captures per class (disk estimate).")] = STUDY_PER_CLASS,
    classes: Annotated[Optional[str], typer.Option(help="Planned classes (default: the study's six).")] = None,
    listen: Annotated[float, typer.Option(help="Seconds to listen for the Echo's traffic.")] = 10.0,
    capture_tool: Annotated[str, typer.Option(help="dumpcap or tshark.")] = "dumpcap",
) -> None:
    """Check capture permission, the Echo's traffic, audio output, volume, speech and disk."""
    from echolab.collector.doctor import run_doctor

    lab = get_lab(ctx, create=True)
    checks = run_doctor(lab, interface=interface, device_ip=device_ip, audio_device=device_spec(audio_device),
                        engine=engine.value,
                        classes=_classes(classes), per_class=per_class, tool=capture_tool, listen_s=listen)
    failed = 0
    for c in checks:
        mark = "[green]ok[/green]  " if c.ok and not c.warning else ("[yellow]warn[/yellow]" if c.ok else "[red]FAIL[/red]")
        console.print(f"{mark} {c.name}: {c.detail}")
        if c.fix and (not c.ok or c.warning):
            console.print(f"       fix: {c.fix}")
        failed += not c.ok
    if failed:
        console.print(f"{failed} check(s) failed.")
        raise typer.Exit(1)
    console.print("All checks passed.")


def collect_display(out: Any) -> Any:
    """The collection's progress display for *out* (a rich console): the live view on a
    terminal, else a plain line every few captures (a night-long run under nohup)."""
    from echolab.collector.collect import plain_display

    if not out.is_terminal:
        return plain_display(out.file)

    @contextmanager
    def live_view(runner: Any) -> Iterator[Any]:
        view = _ProgressView(runner, out)
        with view.live:
            yield view.event

    return live_view


class _ProgressView:
    """Per-class counts against the target, rate, ETA and recent failures, live."""

    def __init__(self, runner: Any, out: Any):
        from rich.live import Live
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.runner = runner
        s = runner.settings
        self.progress = Progress(TextColumn("{task.description:>16}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=out)
        total = s.per_class * len(s.classes)
        done = sum(min(runner.counts.get(c, 0), s.per_class) for c in s.classes)
        self.overall = self.progress.add_task("all classes", total=total, completed=done)
        self.tasks = {c: self.progress.add_task(c, total=s.per_class, completed=min(runner.counts.get(c, 0),
                                                                                        s.per_class))
                      for c in s.classes}
        self.live = Live(self._render(), console=out, refresh_per_second=4, transient=False)

    def _render(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        failures = ", ".join(f"{k} {v}" for k, v in self.runner.failures.items()) or "none"
        recent = "\n".join(f"  {line}" for line in self.runner.recent_failures)
        text = Text(f"campaign {self.runner.campaign.name}  failures: {failures}")
        return Group(self.progress, text, Text(recent, style="red") if recent else Text(""))

    def event(self, kind: str, info: dict[str, Any]) -> None:
        if kind == "ok":
            self.progress.update(self.tasks[info["label"]], completed=info["counts"][info["label"]])
            self.progress.advance(self.overall)
        self.live.update(self._render())
