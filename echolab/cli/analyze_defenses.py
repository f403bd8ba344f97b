"""``echolab analyze defenses``: the strongest attacks on each defense, both ways, against its overhead.

Registered on the ``analyze`` group by :mod:`echolab.cli.analyze`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from echolab.cli.common import console, open_lab, rich_progress


def _pct(value: Any) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def defenses_cmd(
    ctx: typer.Context,
    defense: Annotated[list[str], typer.Option(
        "--defense", "-d", help="Defense spec, repeatable: a name or NAME:KEY=VALUE,... (echolab defend --list).")],
    features: Annotated[Optional[list[str]], typer.Option(
        "--features", "-f", help="Attack feature set, repeatable: sequence sets only (kfp, cumul, sequence), each "
                                 "with its own classifier unless --models. Default: kfp and cumul.")] = None,
    models: Annotated[Optional[list[str]], typer.Option(
        "--models", "-m", help="Classifier from the grids file, repeatable, for every set named.")] = None,
    campaigns: Annotated[Optional[list[str]], typer.Option(
        "--campaign", "-c", help="Undefended campaign to defend and attack, repeatable (default: every undefended "
                                 "capture).")] = None,
    trials: Annotated[int, typer.Option(min=1, help="Trials (splits) per attack and mode.")] = 5,
    split_by: Annotated[str, typer.Option(
        help="random, or a grouping (source, session, day, campaign, device, location); the splits are made on "
             "the undefended captures and kept for their defended twins.")] = "random",
    seed: Annotated[int, typer.Option(help="Seed of the splits, the models and the defenses.")] = 0,
    device_ip: Annotated[Optional[str], typer.Option(help="The Echo's address, when the catalog does not say.")] = None,
    grids: Annotated[Optional[Path], typer.Option(help="Grids file (default: analysis/compare/grids.toml).",
                                                  exists=True, dir_okay=False)] = None,
    plot: Annotated[Optional[Path], typer.Option(
        help="Where to write the Pareto plot (PNG; default: the lab's reports/defenses.png).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run the attacks on each defense, trained on undefended and on defended traffic; overheads and the plot."""
    with open_lab(ctx) as lab, rich_progress(enabled=not as_json) as progress:
        result = lab.compare_defenses(defense, features=features or (), models=models or (),
                                      campaigns=campaigns or (), trials=trials, split_by=split_by, seed=seed,
                                      device_ip=device_ip, grids=grids, progress=progress)
        out = plot or lab.dir.reports_dir / "defenses.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    result.figure().savefig(out, dpi=120)
    if as_json:
        sys.stdout.write(json.dumps({**result.to_json(), "plot": str(out)}, indent=2) + "\n")
        return
    table = Table(title=f"Attack accuracy (%) and overhead (%): {result.captures} captures, "
                        f"{len(result.classes)} classes (chance {100 * result.chance:.1f}%), {result.trials} trials")
    for col in ("defense", "attack", "undefended", "trained undefended", "trained defended", "bandwidth", "delay"):
        table.add_column(col)
    for row in result.rows():
        name = row["defense"] + (" (published)" if row["published"] else "")
        table.add_row(name, row["attack"], _pct(row["undefended"]), _pct(row["trained_undefended"]),
                      _pct(row["trained_defended"]), _pct(row["bandwidth"]), _pct(row["delay"]))
    console.print(table)
    console.print("Pareto front: " + ", ".join(result.pareto()), markup=False)
    for b in result.best_within():
        where = f"within {100 * b['bandwidth_budget']:.0f}% bandwidth and {100 * b['delay_budget']:.0f}% delay"
        if b["defense"] is None:
            console.print(f"{where}: no defense tried fits", markup=False)
        else:
            mark = " (within twice chance)" if b["within_twice_chance"] else ""
            console.print(f"{where}: {b['defense']}, best attack {_pct(b['accuracy'])}%{mark}", markup=False)
    console.print(f"Plot: {out}", markup=False)
