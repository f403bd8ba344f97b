"""``echolab sim``: bring the simulated lab up and down, poke it, write synthetic captures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from echolab.collector.audio import DurationClip
from echolab.collector.sim import lab as simlab
from echolab.collector.sim.params import load_params
from echolab.collector.sim.synthetic import write_capture
from echolab.cli.common import EngineName, console, get_lab, key_value_table, open_lab, rich_progress

app = typer.Typer(help="The simulated lab: an Echo and an Alexa cloud in network namespaces.", no_args_is_help=True)

PrefixOpt = Annotated[str, typer.Option("--prefix", help="Name prefix of the lab's namespaces (one lab per prefix).")]


@app.command("up")
def up(
    ctx: typer.Context,
    speed: Annotated[float, typer.Option(help="Divide every wait and stream duration by this factor.", min=0.001,
                                         max=1000)] = 1.0,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the cloud's draws (default: random).")] = None,
    params: Annotated[Optional[Path], typer.Option(help="Parameter file (default: collector/sim/params.toml).",
                                                   exists=True, dir_okay=False)] = None,
    prefix: PrefixOpt = simlab.DEFAULT_PREFIX,
    replay: Annotated[Optional[str], typer.Option(
        help="Replay recorded requests instead of drawing answers: a campaign of the lab's catalog "
             "(name or id), or a folder of one-request captures in one sub-folder per class.")] = None,
    device_ip: Annotated[Optional[str], typer.Option(
        help="The Echo's address in the replayed folder's captures (default: guessed per capture).")] = None,
    defense: Annotated[Optional[str], typer.Option(
        help="The Echo and the cloud apply this defense live on their TLS connections (a spec as in "
             "'echolab defend': mtu, buckets, buflo, tamaraw or front).")] = None,
) -> None:
    """Start the simulated lab (needs root); cleans up what a crashed run left first."""
    recorded = None
    if replay:
        from echolab.collector.sim import recordings

        lab_dir = None if Path(replay).is_dir() else get_lab(ctx)
        recorded = recordings.from_source(replay, lab=lab_dir, device_ip=device_ip)
    lab = simlab.up(prefix=prefix, speed=speed, seed=seed, params_path=params, replay=recorded,
                    replay_source=replay or "", defense=defense)
    console.print(f"Simulated lab '{lab.prefix}' is up: capture on {lab.interface} in namespace {lab.netns} "
                  f"(ip netns exec {lab.netns} tshark -i {lab.interface}); Echo {lab.echo_ip}, "
                  f"voice {lab.voice_ip}, music {lab.music_ip}, speed {lab.speed:g}"
                  + (f", defense {lab.defense} (live)" if lab.defense else ""))
    if recorded:
        from echolab.collector.sim.recordings import classes

        console.print(f"Replaying {len(recorded)} recorded requests of {replay}: classes {', '.join(classes(recorded))}")


@app.command("status")
def status(
    prefix: PrefixOpt = simlab.DEFAULT_PREFIX,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show whether the simulated lab runs, and where to capture; exit 1 when it does not run."""
    st = simlab.status(prefix)
    lab = st.lab
    if json_:
        out = {"prefix": st.prefix, "running": st.running, "namespaces": st.namespaces, "processes": st.processes,
               "echo": st.echo, "problems": st.problems, "lab": lab.to_dict() if lab else None}
        typer.echo(json.dumps(out, indent=2))
    else:
        pairs = [("running", "yes" if st.running else "no"),
                 *((f"namespace {ns}", "present" if ok else "missing") for ns, ok in st.namespaces.items())]
        if lab:
            pairs += [("capture", f"ip netns exec {lab.netns} tshark -i {lab.interface}"),
                      ("echo ip", lab.echo_ip), ("voice ip", lab.voice_ip), ("music ip", lab.music_ip),
                      ("speed", f"{lab.speed:g}"), ("state", str(lab.run_dir / "state.json"))]
            if lab.replay:
                pairs += [("replays", lab.replay), ("replayed so far", str(len(lab.replayed())))]
            if lab.defense:
                pairs += [("defense (live)", lab.defense)]
            pairs += [(f"process {name}", f"{lab.pids[name]} {'running' if ok else 'gone'}")
                      for name, ok in st.processes.items()]
        if st.echo:
            pairs += [("echo busy", st.echo.get("busy")), ("echo requests", st.echo.get("requests_done"))]
        pairs += [("problem", p) for p in st.problems]
        console.print(key_value_table(pairs, title=f"simulated lab '{prefix}'"))
    if not st.running:
        raise typer.Exit(1)


@app.command("down")
def down(prefix: PrefixOpt = simlab.DEFAULT_PREFIX) -> None:
    """Stop the simulated lab and remove its namespaces, links, processes and state."""
    removed = simlab.down(prefix)
    console.print("Removed: " + ", ".join(removed) if removed else "Nothing to remove: the simulated lab was down.")


@app.command("request")
def request(
    label: Annotated[str, typer.Argument(help="Class of the request (what the cloud 'recognizes').")],
    duration: Annotated[float, typer.Option(help="Length of the spoken prompt, seconds.", min=0.1)] = 2.5,
    wait: Annotated[bool, typer.Option(help="Wait until the Echo is idle again.")] = True,
    prefix: PrefixOpt = simlab.DEFAULT_PREFIX,
) -> None:
    """Make the simulated Echo hear one request (no capture; for trying the lab out)."""
    lab = simlab.SimLab.load(prefix)
    result = lab.sink().play(DurationClip(duration), label=label)
    idle = lab.wait_idle() if wait else None
    console.print(f"request {result.details.get('request_id')} ({label}) played in {result.played_s:.2f} s"
                  + ("" if idle is None else "; the Echo is idle" if idle else "; the Echo is still busy"))


@app.command("synth")
def synth(
    out: Annotated[Path, typer.Argument(help="The pcap file to write.", dir_okay=False)],
    label: Annotated[str, typer.Option("--class", "--label", help="Class of the request.")],
    duration: Annotated[float, typer.Option(help="Length of the spoken prompt, seconds.", min=0.1)] = 2.5,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the draws.")] = None,
    speed: Annotated[float, typer.Option(help="Time compression, as for 'sim up'.", min=0.001)] = 1.0,
    params: Annotated[Optional[Path], typer.Option(help="Parameter file.", exists=True, dir_okay=False)] = None,
) -> None:
    """Write one synthetic capture (no namespaces needed) from the simulation's model."""
    info = write_capture(out, label, duration, np.random.default_rng(seed), load_params(params), speed=speed)
    console.print(f"Wrote {info.path}: {info.packets} packets over {info.last_ts - info.first_ts:.2f} s "
                  f"(answer {info.plan.speech_s:.1f} s" + (f", music {info.plan.music_s:.1f} s" if info.plan.has_music
                                                         else "") + ")")


@app.command("day")
def day(
    ctx: typer.Context,
    out: Annotated[Path, typer.Argument(help="Folder for the day: day.pcapng, day.jsonl (the truth), day.json.",
                                        file_okay=False)],
    requests: Annotated[int, typer.Option(help="Requests in the day.", min=1)] = 40,
    classes: Annotated[Optional[str], typer.Option(help="Comma-separated classes (default: the study's six).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the day's draws (classes, quiet stretches, prompts).")] = 0,
    min_gap: Annotated[float, typer.Option(help="Shortest quiet stretch before a request, household seconds.",
                                           min=0.1)] = 15.0,
    mean_gap: Annotated[float, typer.Option(help="Mean of a short quiet stretch, household seconds.", min=0.1)] = 30.0,
    idle_share: Annotated[float, typer.Option(help="Share of long idle stretches (nobody home).", min=0,
                                              max=1)] = 0.1,
    idle: Annotated[str, typer.Option(help="A long idle stretch, household seconds: LOW,HIGH.")] = "120,600",
    speed: Annotated[float, typer.Option(help="Play the day this many times faster (the lab's speed factor: it "
                                              "compresses the Echo's waits and the quiet stretches).", min=0.001,
                                         max=1000)] = 1.0,
    prefix: PrefixOpt = simlab.DEFAULT_PREFIX,
    engine: Annotated[EngineName, typer.Option(help="Speech engine for the prompts (as 'collect').")] = (
        EngineName.espeak),
    silent: Annotated[bool, typer.Option("--silent", help="Play silent clips of 1.5 to 3.5 s, the same for every "
                                         "class, instead of the lab's prompts: a day where the utterance's length "
                                         "tells nothing.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show the speech progress bar.")] = True,
    unknown_share: Annotated[float, typer.Option(
        help="Share of the requests drawn from the unmonitored pool (requests of no class: smart home, sports, "
             "recipes, ...), logged with their kind and unmonitored: true.", min=0, max=1)] = 0.0,
    unknown_kinds: Annotated[Optional[str], typer.Option(
        help="Comma-separated kinds of the unmonitored pool to draw from (default: every kind).")] = None,
) -> None:
    """Play a household's day on the simulated lab: requests at random times, one long capture, the truth.

    Each request speaks one of its class's prompts from the lab's prompt lists
    (the lists, wake word and speech cache of 'collect'), so a model trained on
    a campaign meets utterances drawn as its training data's were. Brings the
    lab up at --speed when it is not running (and down after); a running lab
    is used at its own speed.
    """
    from echolab.collector.sim.day import DayPrompts, DaySettings, play_day
    from echolab.prompts.classes import STUDY_CLASSES

    try:
        low, high = (float(v) for v in idle.split(","))
    except ValueError:
        raise typer.BadParameter("write --idle as LOW,HIGH seconds, e.g. 120,600") from None
    chosen = tuple(c.strip() for c in classes.split(",") if c.strip()) if classes else tuple(STUDY_CLASSES)
    kinds: tuple[str, ...] = ()
    if unknown_share > 0:
        from echolab.prompts.pool import pool_kinds, pool_path

        kinds = (tuple(k.strip() for k in unknown_kinds.split(",") if k.strip()) if unknown_kinds
                 else tuple(pool_kinds(get_lab(ctx, create=True))))
        for kind in kinds:
            pool_path(kind, get_lab(ctx, create=True))  # an unknown kind fails here, naming the known ones
    settings = DaySettings(requests=requests, classes=chosen, seed=seed, min_gap_s=min_gap, mean_gap_s=mean_gap,
                           idle_share=idle_share, idle_s=(low, high), unknown_share=unknown_share,
                           unknown_kinds=kinds)
    settings.check()
    prompts = None if silent else DayPrompts(get_lab(ctx, create=True), chosen, engine=engine.value, seed=seed,
                                             unknown_kinds=kinds)
    started_here = False
    try:
        lab = simlab.SimLab.load(prefix)
    except simlab.SimNotRunning:
        lab, started_here = simlab.up(prefix=prefix, speed=speed, seed=seed), True

    def show(row: object) -> None:
        console.print(f"request {row.request:>4} {row.label:<15} {row.end - row.start:6.2f} s")  # type: ignore[attr-defined]

    try:
        with rich_progress(enabled=progress, transient=True) as bar:
            result = play_day(lab, out, settings, prompts=prompts, on_request=show, progress=bar)
    finally:
        if started_here:
            simlab.down(prefix)
    console.print(f"Day of {len(result.truth)} requests in {result.seconds:.0f} s (speed {result.speed:g}): "
                  f"capture {result.capture}, truth {result.log}"
                  + (f"; {len(result.failed)} refused: {'; '.join(result.failed[:3])}" if result.failed else ""))


@app.command("households")
def households(
    ctx: typer.Context,
    out: Annotated[Path, typer.Argument(help="Folder for the captures: one folder per household, one per class.",
                                        file_okay=False)],
    household: Annotated[Optional[list[str]], typer.Option(
        "--household", help="A household profile (repeat; default: every one of --profiles, else every built-in "
                            "one; see --list).")] = None,
    profiles: Annotated[Optional[Path], typer.Option(
        help="A profiles file ([households.NAME] tables, e.g. from 'sim measure-household'); its profiles come "
             "before the built-in ones of the same name.", exists=True, dir_okay=False)] = None,
    classes: Annotated[Optional[str], typer.Option(help="Comma-separated classes (default: the study's six).")] = None,
    commands: Annotated[Optional[int], typer.Option(
        help="Instead of classes: this many fixed commands (command-01 ...), each one utterance and one answer, "
             "asked again and again, as a real two-home study records them.", min=2)] = None,
    per_class: Annotated[int, typer.Option(help="Captures of each class in each household.", min=1)] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the draws.")] = 0,
    list_: Annotated[bool, typer.Option("--list", help="Only list the household profiles.")] = False,
) -> None:
    """Collect one campaign per simulated household (synthetic captures, no namespaces needed).

    Each household frames and sends the same requests its own way (upload, answer and control record sizes,
    segmentation, MSS, offloads at the capture point, round trip, jitter, bandwidth, the speaker's pace, the servers' addresses,
    the report after an answer); its captures go into the catalog as campaign household-NAME, so that
    'analyze run --split-by campaign' trains on some homes and tests on an unseen one.
    """
    from dataclasses import asdict

    from echolab.collector.sim.households import (HOUSEHOLDS, HouseholdError, collect_households, command_labels,
                                                  command_params, load_households)
    from echolab.prompts.classes import STUDY_CLASSES

    try:
        given = load_households(profiles) if profiles else ()
    except HouseholdError as exc:
        raise typer.BadParameter(str(exc), param_hint="--profiles") from None
    known = {h.name: h for h in (*HOUSEHOLDS, *given)}  # a file's profile replaces a built-in one of its name
    for h in given:
        if h.name in {b.name for b in HOUSEHOLDS}:
            console.print(f"note: {profiles} redefines the built-in household {h.name}; its captures go to campaign "
                          f"household-{h.name}, with any the built-in profile made there before")
    if list_:
        for h in (*given, *(h for h in HOUSEHOLDS if h.name not in {g.name for g in given})):
            console.print(key_value_table(asdict(h).items(), title=h.name))
        return
    if household:
        unknown = [name for name in household if name not in known]
        if unknown:
            raise typer.BadParameter(f"unknown household(s) {', '.join(unknown)}; choose from {', '.join(known)}",
                                     param_hint="--household")
        chosen = [known[name] for name in household]
    else:
        chosen = list(given) if given else list(HOUSEHOLDS)
    if commands is not None and classes:
        raise typer.BadParameter("give --classes or --commands, not both", param_hint="--commands")
    base = None
    if commands is not None:
        labels: tuple[str, ...] = tuple(command_labels(commands))
        base = command_params(labels)
    else:
        labels = tuple(c.strip() for c in classes.split(",") if c.strip()) if classes else tuple(STUDY_CLASSES)
    with open_lab(ctx, create=True) as lab, rich_progress() as progress:
        done = collect_households(lab.catalog, out, chosen, labels, per_class, seed=seed, progress=progress,
                                  base=base)
    for name, n in done.items():
        console.print(f"household-{name}: {n} captures imported")


@app.command("measure-household")
def measure_household(
    captures: Annotated[list[Path], typer.Argument(
        help="A home's captures of one request each (files, or folders of them), taken at its gateway.")],
    device_ip: Annotated[str, typer.Option(help="The Echo's address in the captures.")],
    name: Annotated[str, typer.Option(help="The profile's name.")] = "measured",
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Write the profile to this profiles file (for 'sim households --profiles').",
        dir_okay=False)] = None,
) -> None:
    """Measure a household profile from a home's own captures: its Echo's framing and its network.

    The profile says how the home's Echo cuts its upload into TLS records and segments, how long its answer
    and control records are, its MSS, offloads at the capture point, round trip, resent share, the voice
    server's address and how often a report follows an answer; 'sim households --profiles FILE' then
    simulates homes like it. The speaker's pace, jitter and bandwidth stay at their defaults.
    """
    from dataclasses import asdict

    from echolab.collector.sim.households import HouseholdError, household_toml
    from echolab.collector.sim.households import measure_household as measure
    from echolab.db.files import capture_files

    missing = [given for given in captures if not given.exists()]
    if missing:
        raise typer.BadParameter(f"{missing[0]} does not exist", param_hint="CAPTURES")
    files = capture_files(captures)
    if not files:
        raise typer.BadParameter("no capture files in what was given", param_hint="CAPTURES")
    try:
        measured = measure(files, device_ip, name)
    except HouseholdError as exc:
        raise typer.BadParameter(str(exc), param_hint="CAPTURES") from None
    console.print(key_value_table(asdict(measured.household).items(), title=name))
    console.print(f"measured on {measured.used} of {measured.captures} captures "
                  f"({measured.upload_records} upload records)")
    for note in measured.notes[:5]:
        console.print(f"  skipped: {note}")
    if output is not None:
        try:
            output.write_text(household_toml([measured.household]), encoding="utf-8")
        except OSError as exc:
            raise typer.BadParameter(f"cannot write {output}: {exc.strerror or exc}", param_hint="--output") from None
        console.print(f"profile written to {output}")
