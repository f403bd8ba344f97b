"""``echolab features``: build the feature cache, export the feature table, inspect a capture."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from echolab.analysis.compare.specs import FeatureSpec
from echolab.analysis.features.sets import ALL_SETS, FLOW_SETS, SEQUENCE_SETS, describe_capture
from echolab.analysis.features.tcptrace import connection_rows
from echolab.cli import selecting as choose
from echolab.cli.common import console, emit_rows, key_value_table, open_lab, rich_progress

app = typer.Typer(help="Extract the feature sets: the study's (tcptrace, histogram, combined), the packet "
                       "sequence's (sequence, kfp, cumul) and the byte flow's, which do not depend on framing "
                       "(flow, volume, timing).", no_args_is_help=True)

FeatureSet = Enum("FeatureSet", {name: name for name in ALL_SETS}, type=str)  # type: ignore[misc]


def _feature(set_name: str, bins: int, include_acks: bool) -> FeatureSpec:
    """The set with the histogram options where it takes them."""
    if set_name == "tcptrace" or set_name in SEQUENCE_SETS or set_name in FLOW_SETS:
        return FeatureSpec.of(set_name)
    return FeatureSpec.of(set_name, bins=bins, include_acks=include_acks)


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
    with open_lab(ctx) as lab, rich_progress() as progress:
        report = lab.build_features(device_ip=device_ip, jobs=jobs, rebuild=rebuild, progress=progress)
        columns = lab.feature_columns(_feature(set_.value, bins, include_acks), report) if (
            set_ is not None and report.records) else None
    console.print(f"{len(report.records)} captures usable ({report.extracted} read now, {report.cached} cached), "
                  f"{report.failed} skipped")
    for capture_id, reason in sorted(report.errors.items()):
        console.print(f"  capture {capture_id}: {reason}", markup=False)
    if set_ is not None and columns is not None:
        names, dropped = columns
        console.print(f"{set_.value}: {len(names)} features: {', '.join(names)}", markup=False)
        if dropped:
            console.print(f"dropped as constant: {', '.join(dropped)}", markup=False)


@app.command("export")
def export(
    ctx: typer.Context,
    output: Annotated[Path, typer.Option(
        "-o", "--output", help="File to write (a folder for --set sequence: one time,size,direction CSV per capture, "
                               "in class folders, which 'catalog import' reads back).")],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="File format.")] = ExportFormat.csv,
    set_: Annotated[FeatureSet, typer.Option("--set", help="Feature set.")] = "combined",  # type: ignore[assignment]
    device_ip: DeviceIp = None,
    bins: Bins = 15,
    include_acks: IncludeAcks = False,
    campaigns: choose.Campaigns = None,
    labels: choose.Labels = None,
    exclude_labels: choose.ExcludeLabels = None,
    min_per_class: choose.MinPerClass = None,
    kind: choose.Kinds = None,
) -> None:
    """Write the feature table (capture id, sha256, campaign, label, features) as CSV or Parquet.

    With --set sequence, write each capture's packet sequence as a time,size,direction CSV file instead.
    """
    chosen = choose.selection(campaigns, labels, exclude_labels, min_per_class, kind)
    with open_lab(ctx) as lab, rich_progress() as progress:
        rows = lab.export_features(output, _feature(set_.value, bins, include_acks), fmt=fmt.value,
                                   device_ip=device_ip, progress=progress,
                                   selection=None if chosen.everything else chosen)
    if set_.value == "sequence":
        console.print(f"wrote {rows} packet traces into {output}")
    else:
        console.print(f"wrote {rows} rows to {output}")


@app.command("inspect")
def inspect(
    capture: Annotated[Path, typer.Argument(
        exists=True, dir_okay=False, help="A pcap or pcapng file, or a time,size,direction packet trace.")],
    device_ip: Annotated[Optional[str], typer.Option(
        "--device-ip", help="The device's IP in this capture (not needed for a packet trace).")] = None,
    per_connection: Annotated[bool, typer.Option(
        "--per-connection", help="Each connection's tcptrace statistics, both directions, tcptrace's CSV names.")
    ] = False,
    sequence: Annotated[bool, typer.Option(
        "--sequence", help="The device's packet sequence (time, signed size, direction) and its bursts.")] = False,
    records: Annotated[bool, typer.Option(
        "--records", help="The TLS records of the device's connections (time, direction, content type, length), "
                          "read from the reassembled TCP streams.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    bins: Bins = 15,
    include_acks: IncludeAcks = False,
) -> None:
    """Print every feature of a bare capture by name (or per-connection tcptrace statistics, its sequence or its
    TLS records)."""
    from echolab.captures.trace import TRACE_DEVICE, is_trace_file

    if is_trace_file(capture):
        device_ip = device_ip or TRACE_DEVICE
    elif device_ip is None:
        raise typer.BadParameter("give the device's address in this capture", param_hint="--device-ip")
    if sequence:
        _print_sequence(capture, device_ip, json_)
        return
    if records:
        _print_records(capture, device_ip, json_)
        return
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


def _print_sequence(capture: Path, device_ip: str, json_: bool) -> None:
    from echolab.analysis.features.sequence import sequence_rows
    from echolab.analysis.features.sets import extract_record

    record = extract_record(capture, device_ip)
    rows = sequence_rows(record)
    bursts = [{"packets": p, "bytes": b} for p, b in zip(record.burst_pkts, record.burst_bytes)]
    if json_:
        sys.stdout.write(json.dumps({"sequence": rows, "bursts": bursts}, indent=2) + "\n")
        return
    shown = [{**r, "time": f"{r['time']:.6f}"} for r in rows]
    emit_rows(shown, ["time", "size", "direction"], title=f"{capture}: {len(rows)} packets (size > 0: device to server)")
    emit_rows(bursts, ["packets", "bytes"], title=f"{len(bursts)} bursts (runs of one direction, signed like sizes)")


def _print_records(capture: Path, device_ip: str, json_: bool) -> None:
    from echolab.captures.records import RecordStats, record_rows, tls_records
    from echolab.captures.trace import TRACE_DEVICE

    if device_ip == TRACE_DEVICE:
        raise typer.BadParameter("a packet trace has no payload bytes, so no TLS records", param_hint="--records")
    stats = RecordStats()
    rows = record_rows(list(tls_records(capture, device_ip, stats)))
    if json_:
        sys.stdout.write(json.dumps({"records": rows, "stats": vars(stats)}, indent=2) + "\n")
        return
    emit_rows(rows, ["time", "end", "direction", "type", "version", "length", "src", "dst"],
              title=f"{capture}: {len(rows)} TLS records (direction 1: from the device)")
    console.print(f"{stats.resyncs} resynchronisations, {stats.skipped_bytes} bytes passed over out of sync, "
                  f"{stats.holes} holes ({stats.hole_bytes} bytes never captured), {stats.partial} records cut off, "
                  f"{stats.duplicate_bytes} retransmitted bytes dropped", markup=False)
