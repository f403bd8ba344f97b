"""``echolab features``: build the feature cache, export the feature table, inspect a capture."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from echolab.analysis.features.sets import FEATURE_SETS, describe_capture, make_transformer
from echolab.analysis.features.store import build_features, export_features
from echolab.analysis.features.tcptrace import connection_rows
from echolab.db.catalog import open_catalog
from echolab.cli.common import console, emit_rows, get_lab, key_value_table, rich_progress

app = typer.Typer(help="Extract the study's feature sets (tcptrace, histogram, combined).", no_args_is_help=True)

FeatureSet = Enum("FeatureSet", {name: name for name in FEATURE_SETS}, type=str)  # type: ignore[misc]


class ExportFormat(str, Enum):
    csv = "csv"
    parquet = "parquet"


DeviceIp = Annotated[Optional[str], typer.Option("--device-ip", help="The device's IP (default: from the catalog).")]
Bins = Annotated[int, typer.Option(min=1, help="Bins per histogram.")]
IncludeAcks = Annotated[bool, typer.Option("--include-acks/--no-acks", help="Keep pure ACKs in the histograms.")]


@app.command("build")
def build(
    ctx: typer.Context,
    set_: Annotated[Optional[FeatureSet], typer.Option("--set", help="Also show this set's columns.")] = None,
    device_ip: DeviceIp = None,
    jobs: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 2,
    rebuild: Annotated[bool, typer.Option(help="Read every capture again, ignoring the cache.")] = False,
    bins: Bins = 15,
    include_acks: IncludeAcks = False,
) -> None:
    """Extract features of every good capture not yet cached in the catalog."""
    with open_catalog(get_lab(ctx)) as cat, rich_progress() as progress:
        report = build_features(cat, device_ip=device_ip, n_jobs=jobs, rebuild=rebuild, progress=progress)
    console.print(f"{len(report.records)} captures usable ({report.extracted} read now, {report.cached} cached), "
                  f"{report.failed} skipped")
    for capture_id, reason in sorted(report.errors.items()):
        console.print(f"  capture {capture_id}: {reason}", markup=False)
    if set_ is not None and report.records:
        options = {} if set_.value == "tcptrace" else {"bins": bins, "include_acks": include_acks}
        transformer = make_transformer(set_.value, **options).fit(list(report.records.values()))
        names = list(transformer.get_feature_names_out())
        console.print(f"{set_.value}: {len(names)} features: {', '.join(names)}", markup=False)
        dropped = getattr(transformer, "dropped_features_", None) or getattr(
            getattr(transformer, "tcptrace_", None), "dropped_features_", [])
        if dropped:
            console.print(f"dropped as constant: {', '.join(dropped)}", markup=False)


@app.command("export")
def export(
    ctx: typer.Context,
    output: Annotated[Path, typer.Option("-o", "--output", help="File to write.", dir_okay=False)],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="File format.")] = ExportFormat.csv,
    set_: Annotated[FeatureSet, typer.Option("--set", help="Feature set.")] = "combined",  # type: ignore[assignment]
    device_ip: DeviceIp = None,
    bins: Bins = 15,
    include_acks: IncludeAcks = False,
) -> None:
    """Write the feature table (capture id, sha256, campaign, label, features) as CSV or Parquet."""
    options = {} if set_.value == "tcptrace" else {"bins": bins, "include_acks": include_acks}
    with open_catalog(get_lab(ctx)) as cat, rich_progress() as progress:
        rows = export_features(cat, output, fmt=fmt.value, set_name=set_.value, device_ip=device_ip,
                               progress=progress, **options)
    console.print(f"wrote {rows} rows to {output}")


@app.command("inspect")
def inspect(
    capture: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A pcap or pcapng file.")],
    device_ip: Annotated[str, typer.Option("--device-ip", help="The device's IP in this capture.")],
    per_connection: Annotated[bool, typer.Option(
        "--per-connection", help="Each connection's tcptrace statistics, both directions, tcptrace's CSV names.")
    ] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    bins: Bins = 15,
    include_acks: IncludeAcks = False,
) -> None:
    """Print every feature of a bare capture by name (or per-connection tcptrace statistics)."""
    if per_connection:
        rows = connection_rows(capture, device_ip)
        if json_:
            sys.stdout.write(json.dumps(rows, indent=2) + "\n")
            return
        for row in rows:
            console.print(key_value_table(row.items(), title=f"connection {row['conn_#']}"))
        return
    values = describe_capture(capture, device_ip, bins=bins, include_acks=include_acks)
    if json_:
        sys.stdout.write(json.dumps(values, indent=2) + "\n")
        return
    emit_rows([{"feature": k, "value": v} for k, v in values.items()], ["feature", "value"], title=str(capture))
