"""``echolab defend``: write a defended campaign (packet traces a defense made from the catalog's captures)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from echolab.cli.common import console, open_lab, rich_progress

app = typer.Typer(help="Apply a defense (padding, BuFLO, Tamaraw, WTF-PAD, FRONT, ...) to captures: a defended "
                       "campaign of packet traces.", invoke_without_command=True)


@app.callback()
def defend(
    ctx: typer.Context,
    defense: Annotated[Optional[str], typer.Option(
        "--defense", "-d", help="Defense spec: a name, or NAME:KEY=VALUE,... (front:n=1400,w=1-8); see --list.")] = None,
    campaign: Annotated[Optional[str], typer.Option(
        "--campaign", "-c", help="Defend this campaign's captures (default: every undefended capture).")] = None,
    name: Annotated[Optional[str], typer.Option(
        "--name", help="Name of the defended campaign (default CAMPAIGN+SPEC).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the defense's random draws (per capture).")] = 0,
    device_ip: Annotated[Optional[str], typer.Option("--device-ip", help="The device's IP (default: from the "
                                                                          "catalog).")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the defenses, their parameters and defaults.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress.")] = True,
) -> None:
    """Write the defended twin of each capture as a trace capture in a new campaign, with the overheads."""
    from echolab.api import Lab

    if list_:
        rows = Lab.defenses()
        if as_json:
            sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        else:
            for row in rows:
                console.print(f"{row['name']}  {row['parameters']}", markup=False, highlight=False)
                console.print(f"    models: {row['models']}", markup=False, highlight=False)
                console.print(f"    paper: {row['cite']}", markup=False, highlight=False)
        return
    if defense is None:
        raise typer.BadParameter("name a defense with --defense SPEC, or list them with --list",
                                 param_hint="--defense")
    with open_lab(ctx) as lab, rich_progress(enabled=progress and not as_json) as bar:
        report = lab.defend(defense, campaign=campaign, name=name, seed=seed, device_ip=device_ip, progress=bar)
    totals = report.totals()
    if as_json:
        sys.stdout.write(json.dumps({"campaign": report.campaign, "defense": report.defense,
                                     "written": report.written, "skipped": report.skipped,
                                     "history": report.history, "overhead": totals}, indent=2) + "\n")
        return
    console.print(f"{report.written} defended captures in campaign {report.campaign!r} ({report.defense})",
                  markup=False)
    if report.history:
        console.print(f"the defense learned from {len(report.history)} other captures, which it does not defend "
                      "(they would be the ideal case)", markup=False)
    console.print(f"overhead: bandwidth {100 * totals['bandwidth']:.1f}% (from the device "
                  f"{100 * totals['bandwidth_out']:.1f}%, to it {100 * totals['bandwidth_in']:.1f}%), packets "
                  f"{100 * totals['extra_packets']:.1f}%, delay {100 * totals['delay']:.1f}% "
                  f"(mean {totals['delay_s_mean']:.3f} s, most {totals['delay_s_max']:.3f} s)", markup=False)
    for cid, why in report.skipped:
        console.print(f"  capture {cid} skipped: {why}", markup=False)
