"""``echolab classify``: say what was asked when, in long captures or live, with a trained model."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from echolab.captures.rules import RULES

if TYPE_CHECKING:
    from echolab.analysis.compare.classify import CaptureOutcome
    from echolab.analysis.compare.modelfile import TrainedModel
    from echolab.captures.spec import SplitSpec
    from echolab.collector.watch import LiveRequest

app = typer.Typer(help="Classify each request of long captures, or live traffic, with a trained model file.")


@app.command()
def classify(
    model: Annotated[Path, typer.Option(help="Model file written by 'echolab analyze train'.", exists=True,
                                        dir_okay=False)],
    captures: Annotated[Optional[list[Path]], typer.Argument(
        help="Long captures (pcap or pcapng), or folders of them, to cut into requests and classify.",
        exists=True)] = None,
    split: Annotated[str, typer.Option(
        help="How to cut captures into requests (the cut, not a train/test split), as 'catalog import --split': "
             f"auto, or gap=SECONDS of quiet. Live: gap=SECONDS (auto means gap={RULES.gap_s:g}).")] = "auto",
    device_ip: Annotated[Optional[str], typer.Option(
        help="The Echo's address (default: detected in each capture; live: required unless --sim-prefix).")] = None,
    json_: Annotated[bool, typer.Option("--json", help="One JSON object a line: source, start, end, label, "
                                                       "probability.")] = False,
    timeline: Annotated[Optional[Path], typer.Option(
        help="Draw the requests on a time axis by predicted class, with counts per hour: OUT.png or OUT.html.",
        dir_okay=False)] = None,
    attach_trailing: Annotated[Optional[float], typer.Option(
        help="Attach a short burst that starts within SECONDS after a request to it, as 'catalog import' "
             f"(default: {RULES.trailing_window_s:g} with auto, none with gap=).")] = None,
    min_packets: Annotated[int, typer.Option(
        help="Fewer of the device's TCP packets than this is a keep-alive, not a request (as 'catalog import').")]
        = RULES.min_packets,
    min_bytes: Annotated[int, typer.Option(
        help="Fewer of the device's IP bytes than this is a keep-alive, not a request (as 'catalog import').")]
        = RULES.min_bytes,
    expect: Annotated[Optional[int], typer.Option(
        help="Requests each capture should hold, as 'catalog import --expect': it guides --split auto, and "
             "captures cut otherwise are listed.", min=1)] = None,
    truth: Annotated[Optional[Path], typer.Option(
        help="Score the predictions against a manifest CSV of file,label rows (each request of a file has the "
             "file's label): accuracy, per-class accuracy and confusions.", exists=True, dir_okay=False)] = None,
    label_from: Annotated[Optional[str], typer.Option(
        help="Score against the labels this regular expression finds in the file names, as 'catalog import "
             "--label-from'.")] = None,
    speed: Annotated[float, typer.Option(
        help="The captures were played this many times faster than the household's clock (a simulated day): "
             "the cut's seconds (gap=, auto's range, --attach-trailing) and the timeline's hours are the "
             "household's.", min=0.001)] = 1.0,
    interface: Annotated[Optional[str], typer.Option(
        help="Classify live: capture this interface (ring buffer) and print each request as its answer ends, "
             "until Ctrl-C.")] = None,
    sim_prefix: Annotated[Optional[str], typer.Option(
        help="Live on the simulated lab PREFIX: capture its gateway (interface and Echo address from the lab).")
    ] = None,
) -> None:
    """Cut captures (or live traffic) into requests and print each one's predicted class and probability."""
    from echolab.api import Lab

    trained = Lab.load_model(model)
    if interface or sim_prefix:
        if captures:
            raise typer.BadParameter("give capture files or --interface/--sim-prefix, not both")
        if timeline is not None:
            raise typer.BadParameter("--timeline draws capture files; live, pipe --json into a file instead")
        if attach_trailing is not None:
            raise typer.BadParameter("live classification prints a request as its answer ends, so it attaches "
                                     "nothing after it: leave out --attach-trailing")
        if trained.adapt != "none":
            raise typer.BadParameter(f"the model adapts to each home ({trained.adapt}) from many requests at once, "
                                     "so it cannot classify live one request at a time; classify capture files")
        if expect is not None or truth is not None or label_from is not None:
            raise typer.BadParameter("--expect, --truth and --label-from apply to capture files, not live traffic")
        _live(trained, interface, device_ip, split, sim_prefix, json_, speed)
        return
    if not captures:
        raise typer.BadParameter("give one or more capture files, or --interface to classify live")
    if truth is not None and label_from is not None:
        raise typer.BadParameter("score against --truth or --label-from, not both")
    spec = Lab.cut_spec(split, attach_trailing=attach_trailing, speed=speed, min_packets=min_packets,
                        min_bytes=min_bytes)
    done = _files(trained, captures, spec, device_ip, json_, timeline, expect)
    if truth is not None or label_from is not None:
        _score(done.score(truth=truth, label_from=label_from), trained.classes, err=json_)


def _files(trained: "TrainedModel", captures: list[Path], spec: "SplitSpec", device_ip: Optional[str], json_: bool,
           timeline: Optional[Path], expect: Optional[int] = None) -> Any:
    from echolab.analysis.compare.classify import iso
    from echolab.api import Lab

    def show(outcome: "CaptureOutcome") -> None:
        for p in outcome.predictions:
            if json_:
                typer.echo(json.dumps(p.to_json()))
            else:
                prob = "-" if p.probability is None else f"{p.probability:.2f}"
                typer.echo(f"{p.source}\t{iso(p.start)}\t{iso(p.end)}\t{p.label}\t{prob}")
        note = (f"{outcome.source}: {len(outcome.predictions)} requests (device {outcome.device_ip}, cut "
                f"{outcome.cut}; {outcome.set_aside} small bursts set aside")
        note += f"; {len(outcome.unreadable)} without features)" if outcome.unreadable else ")"
        if outcome.as_expected is False:
            note += f"; expected {outcome.expected}"
        typer.echo(note, err=True)

    if trained.adapt != "none":
        typer.echo(f"The model adapts to each home ({trained.adapt}): the requests of all the captures given are "
                   f"adapted together, as one home's; cutting {len(captures)} capture(s) or folder(s) first.", err=True)
    done = Lab.classify(captures, trained, spec, device_ip=device_ip, expect=expect, on_capture=show)
    typer.echo(f"{len(done.predictions)} requests: " + ", ".join(f"{k} {v}" for k, v in done.counts().items()),
               err=json_)
    typer.echo(done.checks_summary(), err=json_)
    for o in done.suspect:
        typer.echo(f"  suspect: {o.source.name}: {o.check.removeprefix('suspect: ')}", err=True)
    if done.not_as_expected:
        typer.echo(f"{len(done.not_as_expected)} of {len(done.outcomes)} captures not cut into {expect} requests: "
                   + ", ".join(f"{o.source.name} ({len(o.predictions) + len(o.unreadable)})"
                               for o in done.not_as_expected), err=True)
    if timeline is not None:
        typer.echo(f"Timeline: {done.timeline(timeline)}", err=json_)
    return done


def _score(result: Any, classes: list[str], *, err: bool) -> None:
    """The score's lines: accuracy, the worst classes, the top confusions (and the matrix when small)."""
    from echolab.analysis.compare.scoring import confusion_table

    acc = result.accuracy
    typer.echo(f"Scored against {result.truth}: accuracy {acc:.1f}% ({result.right} of {result.scored} requests)"
               if acc is not None else f"Scored against {result.truth}: no request to score", err=err)
    if result.unlabelled:
        typer.echo(f"  not in the truth ({len(result.unlabelled)} files, not scored): "
                   + ", ".join(Path(f).name for f in result.unlabelled[:10])
                   + (" ..." if len(result.unlabelled) > 10 else ""), err=err)
    worst = list(result.per_class().items())[:10]
    typer.echo("  per class (worst first): " + ", ".join(f"{c} {a:.0f}% of {n}" for c, (n, a) in worst), err=err)
    confusions = result.top_confusions()
    if confusions:
        typer.echo("  top confusions: " + ", ".join(f"{t} as {p} ({n})" for t, p, n in confusions), err=err)
    order, table = confusion_table(result, classes)
    if len(order) <= 12:
        width = max(len(c) for c in order)
        typer.echo("  confusion (rows: true, columns: predicted):", err=err)
        typer.echo("  " + " " * width + " " + " ".join(f"{i:>4}" for i in range(1, len(order) + 1)), err=err)
        for i, (label, row) in enumerate(zip(order, table), 1):
            typer.echo(f"  {label:>{width}} " + " ".join(f"{v:>4}" for v in row) + f"   ({i})", err=err)


def _live(trained: "TrainedModel", interface: Optional[str], device_ip: Optional[str], split: str,
          sim_prefix: Optional[str], json_: bool, speed: float = 1.0) -> None:
    from echolab.analysis.compare.classify import ClassifyError
    from echolab.api import Lab

    stop = {"now": False}

    def request_stop(signum: int, frame: Any) -> None:
        stop["now"] = True

    def show(req: "LiveRequest") -> None:
        if json_:
            typer.echo(json.dumps(req.to_json()))
        elif req.error:
            typer.echo(f"{req.source}\t{req.to_json()['start']}\t{req.to_json()['end']}\t(no features: {req.error})")
        else:
            prob = "-" if req.probability is None else f"{req.probability:.2f}"
            row = req.to_json()
            typer.echo(f"{req.source}\t{row['start']}\t{row['end']}\t{req.label}\t{prob}\t"
                       f"(+{req.latency_s:.2f} s)")
        sys.stdout.flush()

    def started(where: str, who: str, cut: str) -> None:
        typer.echo(f"Watching {where} for {who} (cut {cut}); Ctrl-C stops.", err=True)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        seen = Lab.classify_live(trained, interface=interface, device_ip=device_ip, sim_prefix=sim_prefix, cut=split,
                                 speed=speed, on_request=show, on_start=started, should_stop=lambda: stop["now"])
    except ClassifyError as exc:  # a missing address or a cut that is not by quiet time: an option's fault
        raise typer.BadParameter(str(exc)) from exc
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    counts = seen.counts()
    text = f"Stopped: {len(seen.requests)} requests: " + (
        ", ".join(f"{k} {v}" for k, v in counts.most_common()) or "none")
    latency = seen.median_latency_s()
    if latency is not None:
        text += f"; latency after the last packet median {latency:.2f} s, max {max(seen.latencies_s()):.2f} s"
    text += f"; {seen.set_aside} small bursts set aside"
    typer.echo(text, err=True)
