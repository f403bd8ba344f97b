"""``echolab catalog``: browse, check, import and export a lab's captures."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from echolab.api import Lab
from echolab.captures.checks import CHECKS
from echolab.captures.rules import RULES
from echolab.cli import selecting as choose
from echolab.cli.common import console, emit_rows, err_console, get_lab, key_value_table, open_lab, rich_progress
from echolab.db.catalog import CatalogError
from echolab.db.records import CaptureStatus
from echolab.db.transfer import MANIFEST_COLUMNS, manifest_rows
from echolab.errors import LabError

if TYPE_CHECKING:
    from echolab.api import FolderCut
    from echolab.captures.spec import SplitSpec
    from echolab.db.labels import LabelPreview
    from echolab.db.transfer import ImportReport

app = typer.Typer(help="Browse, check, import and export the lab's capture catalog.", no_args_is_help=True)

LS_COLUMNS = ("id", "label", "status", "campaign", "path", "sha256", "packet_count", "started_at", "check")


class Status(str, Enum):
    ok = "ok"
    failed = "failed"
    discarded = "discarded"
    all = "all"


class Check(str, Enum):
    ok = "ok"
    suspect = "suspect"


def _fmt(json_: bool, csv_: bool) -> str:
    if json_ and csv_:
        raise typer.BadParameter("choose one of --json and --csv")
    return "json" if json_ else "csv" if csv_ else "table"


@app.command("init")
def init(ctx: typer.Context) -> None:
    """Create the lab directory (if needed) and its catalog."""
    with open_lab(ctx, create=True) as lab:
        url = lab.catalog.engine.url.render_as_string(hide_password=True)
        console.print(f"Lab ready at {lab.root} (catalog {url})")


@app.command("ls")
def ls(
    ctx: typer.Context,
    label: Annotated[Optional[str], typer.Option("--class", "--label", help="Only this class.")] = None,
    campaign: Annotated[Optional[str], typer.Option(help="Only this campaign (name or id).")] = None,
    status: Annotated[Status, typer.Option(help="Only captures with this status.")] = Status.all,
    since: Annotated[Optional[datetime], typer.Option(help="Started at or after (ISO time; local unless it has an offset).")] = None,
    until: Annotated[Optional[datetime], typer.Option(help="Started at or before (ISO time; local unless it has an offset).")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    csv_: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
    check: Annotated[Optional[Check], typer.Option(
        help="Only captures whose cut's checks gave this verdict (see 'catalog import --split').")] = None,
) -> None:
    """List captures (a table printed to a pipe or a file keeps every cell whole)."""
    fmt = _fmt(json_, csv_)
    with open_lab(ctx) as lab:
        rows = lab.captures(label=label, campaign=campaign, status=None if status is Status.all else status.value,
                            since=since, until=until)
        if check is not None:
            chosen = {c.id for c in lab.select_bulk(check=check.value)}
            rows = [r for r in rows if r.id in chosen]
        table = manifest_rows(rows)
        for row, capture in zip(table, rows):  # the table names the verdict; JSON and CSV give why
            row["check"] = capture.cut_check if fmt != "table" else (capture.cut_check or "").split(":")[0] or None
        emit_rows(table, LS_COLUMNS if fmt == "table" else (*MANIFEST_COLUMNS, "check"), fmt=fmt,
                  title=f"{len(rows)} captures", whole_when_piped=True)


@app.command("show")
def show(
    ctx: typer.Context,
    capture_id: Annotated[int, typer.Argument(help="Capture id (see 'catalog ls').")],
    packets: Annotated[int, typer.Option(help="How many packets to summarize (tshark dissection).")] = 20,
) -> None:
    """Every field of one capture and a packet summary of its file."""
    from echolab.cli.inspect import packet_summary

    with open_lab(ctx) as lab:
        c = lab.capture(capture_id)
        fields = [(col, getattr(c, col)) for col in c.__table__.columns.keys()]
        fields.insert(2, ("campaign_name", c.campaign.name))
        if c.prompt:
            fields.append(("prompt_text", c.prompt.text))
        console.print(key_value_table(fields, title=f"capture {c.id}"))
        path = lab.capture_path(c)
        if path is None:
            console.print("[dim]no file (a failed attempt)[/dim]")
        elif not path.exists():
            err_console.print(f"[red]file missing:[/red] {path}")
        else:
            console.print(packet_summary(path, limit=packets, device_ip=c.device_ip))


@app.command("stats")
def stats(
    ctx: typer.Context,
    campaign: Annotated[Optional[str], typer.Option(help="Only this campaign.")] = None,
    target: Annotated[Optional[int], typer.Option(help="Target per class (default: the campaigns').")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Per class: good captures against the target and balance; per campaign; failures."""
    import json

    with open_lab(ctx) as lab:
        st = lab.stats(campaign=campaign, target=target)
    classes = [
        {"class": c.label, "ok": c.ok, "target": c.target, "remaining": c.remaining, "failed": c.failed,
         "discarded": c.discarded}
        for c in st.classes
    ]
    if json_:
        typer.echo(json.dumps({"classes": classes, "balance": st.balance, "campaigns": st.campaigns,
                               "failures": st.failures}, indent=2, default=str))
        return
    emit_rows(classes, ("class", "ok", "target", "remaining", "failed", "discarded"),
              title=f"Captures per class (balance {st.balance:.2f})")
    emit_rows(st.campaigns, ("id", "name", "backend", "status", "target_per_class", "ok", "failed", "discarded"),
              title="Campaigns")
    if st.failures:
        emit_rows([{"reason": k, "count": v} for k, v in sorted(st.failures.items())], ("reason", "count"),
                  title="Failures by reason")


@app.command("verify")
def verify_cmd(
    ctx: typer.Context,
    quick: Annotated[bool, typer.Option(help="Check presence only, do not hash files.")] = False,
) -> None:
    """Check every file exists and matches its sha256, and find files the catalog does not know."""
    with open_lab(ctx) as lab:
        report = lab.verify(hash_files=not quick)
    for cid, path in report.missing:
        typer.echo(f"missing   capture {cid}: {path}")
    for cid, path in report.modified:
        typer.echo(f"modified  capture {cid}: {path} (sha256 differs)")
    for path in report.unknown:
        typer.echo(f"unknown   {path} (not in the catalog)")
    for path in report.partial:
        typer.echo(f"partial   {path} (left by an interrupted write)")
    if report.ok:
        console.print(f"[green]OK[/green]: {report.checked} files checked, all present and intact.")
        return
    n = len(report.missing) + len(report.modified) + len(report.unknown) + len(report.partial)
    err_console.print(f"{n} problem(s) in {report.checked} catalogued files.")
    raise typer.Exit(1)


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(help="A folder of class folders, a CSV manifest, or an exported tar.")],
    manifest: Annotated[Optional[Path], typer.Option(help="CSV with path,label columns (paths relative to it).")] = None,
    campaign: Annotated[Optional[str], typer.Option(help="Campaign to import into (default: import-FOLDER).")] = None,
    device_ip: Annotated[Optional[str], typer.Option(help="The Echo's address in these captures.")] = None,
    location: Annotated[Optional[str], typer.Option(help="Network/location label for the campaign.")] = None,
    label_from: Annotated[Optional[str], typer.Option(
        help="Label each file by this regular expression on its name (named group 'label', else the first group), "
             "e.g. '^(.+?)_\\d+_\\d+s'.")] = None,
    split: Annotated[Optional[str], typer.Option(
        help="Cut each file (a long capture) into one capture per request: gap=SECONDS (a request starts after "
             "the device was quiet that long), every=SECONDS or times=FILE (fixed schedules), or auto (the gap and "
             "keep-alive threshold chosen per file; with --expect, the cut that gives that many requests).")] = None,
    min_packets: Annotated[int, typer.Option(
        help="With --split: fewer of the device's TCP packets than this is a keep-alive, not a request.")]
        = RULES.min_packets,
    min_bytes: Annotated[int, typer.Option(
        help="With --split: fewer of the device's IP bytes than this is a keep-alive, not a request.")]
        = RULES.min_bytes,
    expect: Annotated[Optional[int], typer.Option(
        help="With --split: requests each file should hold (--split auto looks for the cut that gives that many, "
             "well apart). A file is never forced into them: one with another count comes in marked suspect.")]
        = None,
    attach_trailing: Annotated[Optional[float], typer.Option(
        help="With --split auto or gap=: attach a short burst starting within SECONDS after a request (the Echo's "
             f"own upload after an answer) to that request (default with auto: {RULES.trailing_window_s:g}; 0: never).")]
        = None,
    replace: Annotated[bool, typer.Option(
        help="Captures already catalogued under another label get this import's label; with --split, a file "
             "already catalogued with another cut gets this one instead (its old pieces are removed with their "
             "cached features). Analysis runs that used them are marked stale.")] = False,
    aliases: Annotated[Optional[Path], typer.Option(
        help="A label map (CSV with from,to and an optional campaign column): labels spelled otherwise are "
             "renamed as they come in.", exists=True, dir_okay=False)] = None,
    create: Annotated[bool, typer.Option(
        "--create", help="Create the lab directory if it does not exist (else a missing --lab is an error).")]
        = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Show no progress bar.")] = False,
) -> None:
    """Import pcap/pcapng files (also .pcap.gz) or packet traces, labelled by folder name, a manifest or a
    file-name pattern.

    Files of the folder that are not captures are listed with why; captures cut short, and captures imported
    whole that last long enough to hold several requests, are named at the end.
    """
    if split is None and (expect is not None or attach_trailing is not None):
        raise typer.BadParameter("--expect and --attach-trailing need --split")
    spec = Lab.cut_spec(split, min_packets=min_packets, min_bytes=min_bytes,
                        attach_trailing=attach_trailing) if split else None
    try:
        opened = open_lab(ctx, create=create)
    except LabError as exc:
        raise LabError(str(exc), hint="or add --create to make a new lab there") from exc
    with opened as lab, rich_progress(enabled=not no_progress, transient=True) as progress:
        report = lab.import_captures(
            source, manifest=manifest, campaign=campaign, device_ip=device_ip, location=location,
            label_from=label_from, cut=spec, expect=expect, replace=replace, progress=progress, aliases=aliases,
        )
    _print_import(report, spec)


def _print_import(report: "ImportReport", spec: "SplitSpec | None") -> None:
    """What an import did: each cut, the counts, then every file not imported or worth a look, with why."""
    for done in report.cuts:
        if done.device is not None:
            typer.echo(f"{done.path}: label {done.label}, device {done.device.describe()}; {done.requests} requests "
                       f"({done.ignored} keep-alive bursts set aside), {len(done.imported)} imported"
                       + (f", {done.replaced} old pieces replaced" if done.replaced else ""))
            if spec is not None and spec.mode in ("auto", "gap"):
                typer.echo(f"  cut: {done.settings}" + (f"; {done.why}" if spec.mode == "auto" else ""))
            if done.check and done.check != "ok":
                typer.echo(f"  check: {done.check}")
    console.print(f"Imported {len(report.imported)} captures; skipped {len(report.duplicates)} duplicates "
                  f"(same sha256 or request); rejected {len(report.rejected)}"
                  + (f"; {len(report.skipped)} files not captures" if report.skipped else "") + ".")
    for checked in report.checks:
        typer.echo(checked.summary())
    for verdict in report.suspect:
        typer.echo(f"suspect: {verdict.file}: {'; '.join(verdict.reasons)}")
    if report.suspect:
        typer.echo("Suspect files are catalogued with their verdict: preview one with 'echolab catalog segments "
                   "FILE -o cut.png'; set them aside with 'echolab catalog discard --check suspect --reason ...'.")
    for path, why in report.skipped:
        typer.echo(f"skipped: {path}: {why}", err=True)
    for path, how in report.cut_short:
        typer.echo(f"cut short: {path}: {how}", err=True)
    if report.long:
        longest = max(s for _, s in report.long)
        typer.echo(f"{len(report.long)} captures imported whole last over {CHECKS.long_capture_s:g} s (longest "
                   f"{longest:.0f} s): long captures of several requests each? Preview the cut with 'echolab catalog "
                   "segments FOLDER --split auto', then discard these and import the files with --split auto.",
                   err=True)
        for path, seconds in report.long:
            typer.echo(f"  long: {path} ({seconds:.0f} s)", err=True)
    if report.labels is not None and report.labels.warning():
        typer.echo(f"labels: {report.labels.warning()} (preview: echolab catalog segments FOLDER --label-from ...)",
                   err=True)
    for old_new, n in Counter((old, new) for _id, old, new in report.relabelled).most_common():
        typer.echo(f"relabelled {n} captures from {old_new[0]} to {old_new[1]} (--replace)")
    for path, held, given in report.other_label:
        typer.echo(f"kept label: {path} is catalogued as {held}, not {given} (--replace relabels it; "
                   "'catalog relabel' fixes labels in place)", err=True)
    if report.stale_runs:
        typer.echo(f"Analysis runs marked stale (they used replaced or relabelled captures): "
                   f"{', '.join(report.stale_runs)}")
    for path, reason in report.failed:
        typer.echo(f"kept as failed: {path}: {reason}", err=True)
    for _path, message in report.rejected:
        typer.echo(f"rejected: {message}", err=True)
    if not report.ok:
        raise typer.Exit(1)


@app.command("segments")
def segments_cmd(
    capture: Annotated[Path, typer.Argument(help="A long pcap/pcapng capture, or a folder of them (one line each).",
                                            exists=True)],
    split: Annotated[str, typer.Option(
        help="The cut into requests (not a train/test split): gap=SECONDS, every=SECONDS, times=FILE or auto "
             "(see 'import --split').")]
        = f"gap={RULES.gap_s:g}",
    device_ip: Annotated[Optional[str], typer.Option(help="The Echo's address (default: detected).")] = None,
    min_packets: Annotated[int, typer.Option(help="Fewer device TCP packets than this is a keep-alive.")]
        = RULES.min_packets,
    min_bytes: Annotated[int, typer.Option(help="Fewer device IP bytes than this is a keep-alive.")]
        = RULES.min_bytes,
    expect: Annotated[Optional[int], typer.Option(
        help="Requests each file should hold (--split auto searches the cut that gives that many).")] = None,
    attach_trailing: Annotated[Optional[float], typer.Option(
        help=f"Attach a short burst within SECONDS after a request to it (default with auto: {RULES.trailing_window_s:g}).")]
        = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the timeline plot to this PNG.")] = None,
    bin_s: Annotated[Optional[float], typer.Option("--bin", help="Plot bin width in seconds (default: auto).")]
        = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the segments as JSON.")] = False,
    label_from: Annotated[Optional[str], typer.Option(
        help="Show the label this regular expression gives each file name (as 'import --label-from'), and warn "
             "when the labels look wrong.")] = None,
) -> None:
    """Preview how long captures would be cut into requests (no import): a table and a timeline plot.

    For a folder: one line a file with the requests found, the settings chosen (and why, for auto) and the
    count expected; with --label-from, the label each file would get.
    """
    spec = Lab.cut_spec(split, min_packets=min_packets, min_bytes=min_bytes, attach_trailing=attach_trailing)
    labels = Lab.preview_labels(capture, label_from) if label_from is not None else None
    if capture.is_dir():
        cut = Lab.preview_cut_folder(capture, spec, device_ip=device_ip, expect=expect)
        if labels is not None:
            by_name = {name: label for label, names in labels.labels.items() for name in names}
            for row in cut.rows:
                row["label"] = by_name.get(Path(str(row["file"])).name)
        _segments_folder(cut, spec.mode, json_)
        if labels is not None:
            _label_summary(labels)
        return
    result = Lab.preview_cut(capture, spec, device_ip=device_ip, expect=expect)
    if labels is not None:
        typer.echo(f"label: {next(iter(labels.labels), None) or 'none (the file name is not matched)'}",
                   err=json_)
    columns = ("request", "start", "offset_s", "duration_s", "packets", "bytes_out", "bytes_in")
    if json_:
        emit_rows(result.rows(), columns, fmt="json")
    else:
        typer.echo(f"device {result.timeline.device.describe()}")
        typer.echo(f"{len(result.segments)} requests in {capture.name} ({result.spec}); "
                   f"{len(result.ignored)} keep-alive bursts set aside"
                   + (f"; expected {expect}" if expect is not None else ""))
        typer.echo(f"cut: {result.choice}" + (f"; {result.why}" if spec.mode == "auto" else ""))
        typer.echo(f"check: {Lab.check_cut(result).text}")
        emit_rows(result.rows(), columns, whole_when_piped=True)
    if out is not None:
        Lab.plot_cut(result, out, bin_s=bin_s)
        err_console.print(f"Timeline written to {out}")


def _label_summary(labels: "LabelPreview") -> None:
    """How many labels a pattern gives, and its warning (on stderr)."""
    err_console.print(f"{len(labels.labels)} labels for {labels.files} files"
                      + (f"; {len(labels.unmatched)} files not matched" if labels.unmatched else ""))
    if labels.warning():
        err_console.print(f"[yellow]warning:[/yellow] {labels.warning()}", highlight=False)


def _segments_folder(cut: "FolderCut", mode: str, json_: bool) -> None:
    """One line a capture of the folder: requests found, settings chosen, why, expected (and label)."""
    rows, expect = cut.rows, cut.expect
    labelled = any("label" in r for r in rows)
    if json_:
        emit_rows(rows, ("file", *(("label",) if labelled else ()), "requests", "expected", "set_aside", "attached",
                         "settings", "why", "check"), fmt="json")
        return
    for r in rows:
        if labelled:
            typer.echo(f"{r['file']}: label {r.get('label') or '(not matched)'}")
        if r["requests"] is None:
            typer.echo(f"{r['file']}: cannot be cut: {r['why']}")
            continue
        wanted = "" if expect is None else (" (as expected)" if r["requests"] == expect else f" (expected {expect})")
        typer.echo(f"{r['file']}: {r['requests']} requests{wanted}; {r['settings']}"
                   + (f"; {r['why']}" if mode == "auto" else ""))
        if r.get("check") not in (None, "ok"):
            typer.echo(f"  check: {r['check']}")
    if expect is not None:
        typer.echo(f"{cut.as_expected} of {len(rows)} captures hold the {expect} requests expected")
    if cut.checks is not None:
        typer.echo(cut.checks.summary())


@app.command("export")
def export_cmd(
    ctx: typer.Context,
    out: Annotated[Path, typer.Argument(help="FILE.csv or FILE.json (manifest) or FILE.tar[.gz] (captures + manifest).")],
    labels: choose.Labels = None,
    campaigns: choose.Campaigns = None,
    exclude_labels: choose.ExcludeLabels = None,
    min_per_class: choose.MinPerClass = None,
    kind: choose.Kinds = None,
    status: Annotated[Status, typer.Option(help="Only captures with this status.")] = Status.ok,
) -> None:
    """Write a manifest, or a tar of captures plus manifest that 'import' reads back."""
    chosen = choose.selection(campaigns, labels, exclude_labels, min_per_class, kind,
                              status=None if status is Status.all else status.value)
    with open_lab(ctx) as lab:
        count = lab.export(out, selection=chosen)
    console.print(f"Exported {count} captures to {out}")


IdsArg = Annotated[Optional[list[int]], typer.Argument(help="Capture ids (see 'catalog ls').", show_default=False)]
CampaignOpt = Annotated[Optional[str], typer.Option(help="Only captures of this campaign (name or id).")]
LabelsOpt = Annotated[Optional[list[str]], typer.Option("--label", "--class", help="Only captures with this label "
                                                        "(repeat for several).", show_default=False)]
SourceOpt = Annotated[Optional[str], typer.Option(
    help="Only captures imported or cut from files matching this shell pattern (e.g. '*home2*').")]


CheckOpt = Annotated[Optional[Check], typer.Option(help="Only captures whose cut's checks gave this verdict.")]


@app.command("discard")
def discard(
    ctx: typer.Context,
    capture_ids: IdsArg = None,
    reason: Annotated[str, typer.Option(help="Why (kept for the audit trail).")] = "",
    campaign: CampaignOpt = None,
    label: LabelsOpt = None,
    source: SourceOpt = None,
    status: Annotated[Optional[Status], typer.Option(help="Only captures with this status.")] = None,
    check: CheckOpt = None,
) -> None:
    """Exclude captures from analysis, keeping them and the reason for the audit trail: by id, or in bulk by
    campaign, label, source file, status or cut check ('catalog restore' takes them back)."""
    with open_lab(ctx) as lab:
        if capture_ids and len(capture_ids) == 1 and not (campaign or label or source or status or check):
            row = lab.discard(capture_ids[0], reason)
            console.print(f"Capture {row.id} discarded: {row.reason}")
            return
        done = lab.discard_many(reason, capture_ids or (), campaign=campaign, labels=label or (), source=source,
                                status=None if status in (None, Status.all) else status.value,
                                check=check.value if check else None)
    console.print(f"Discarded {len(done.changed)} captures ({len(done.unchanged)} already discarded): {reason}")


@app.command("restore")
def restore(
    ctx: typer.Context,
    capture_ids: IdsArg = None,
    campaign: CampaignOpt = None,
    label: LabelsOpt = None,
    source: SourceOpt = None,
    check: CheckOpt = None,
) -> None:
    """Take discarded captures back into analysis (status ok): by id, campaign, label, source file or cut check."""
    with open_lab(ctx) as lab:
        done = lab.restore(capture_ids or (), campaign=campaign, labels=label or (), source=source,
                           check=check.value if check else None)
    console.print(f"Restored {len(done.changed)} captures; {len(done.unchanged)} chosen were not discarded.")


@app.command("relabel")
def relabel_cmd(
    ctx: typer.Context,
    capture_ids: IdsArg = None,
    to: Annotated[Optional[str], typer.Option(
        help="The new label (with --match: the replacement, which may name groups as \\1).")] = None,
    match: Annotated[Optional[str], typer.Option(
        help="A regular expression on labels: each label it matches has the match replaced by --to.")] = None,
    map_file: Annotated[Optional[Path], typer.Option(
        "--map", help="A label map: CSV with from,to columns and an optional campaign column.", exists=True,
        dir_okay=False)] = None,
    label_from: Annotated[Optional[str], typer.Option(
        help="Read each label again from the name of the file the capture was imported or cut from, with this "
             "regular expression (as 'import --label-from').")] = None,
    campaign: CampaignOpt = None,
    label: LabelsOpt = None,
    source: SourceOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; change nothing.")] = False,
) -> None:
    """Give captures new labels: chosen ones (ids, --label, --campaign, --source) --to one label, or by --match,
    --map or --label-from. Analysis runs that used a relabelled capture are marked stale."""
    with open_lab(ctx) as lab:
        done = lab.relabel(capture_ids or (), campaign=campaign, labels=label or (), source=source, to=to,
                           match=match, label_map=map_file, label_from=label_from, dry_run=dry_run)
    verb = "would relabel" if dry_run else "relabelled"
    for (old, new), n in sorted(done.renames().items()):
        typer.echo(f"{verb} {n} captures: {old} -> {new}")
    for cid, why in done.unmatched[:20]:
        typer.echo(f"not relabelled: capture {cid}: {why}", err=True)
    if len(done.unmatched) > 20:
        typer.echo(f"... and {len(done.unmatched) - 20} more not relabelled", err=True)
    console.print(f"{'Would relabel' if dry_run else 'Relabelled'} {len(done.changed)} captures; "
                  f"{done.unchanged} already so labelled; {len(done.unmatched)} not relabelled.")
    if done.stale_runs:
        typer.echo(f"Analysis runs marked stale (they used relabelled captures): {', '.join(done.stale_runs)}")


@app.command("serve")
def serve_cmd(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8001,
    host: Annotated[str, typer.Option(
        help="Address to listen on (127.0.0.1: this machine only; any other serves the captures to the "
             "network). Every request needs a token, printed once in the URL, unless --no-auth.")] = "127.0.0.1",
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open a web browser on the catalog.")] = True,
    no_auth: Annotated[bool, typer.Option(
        "--no-auth", help="Serve without a token (anyone who can reach it sees the captures).")] = False,
) -> None:
    """Browse the catalog in a web browser (Datasette, read-only; SQLite catalogs only)."""
    from echolab.errors import require

    require("datasette", "web", "the catalog's web view (catalog serve)")
    from echolab.db.serve import is_loopback, serve

    def ready(url: str) -> None:
        typer.echo(f"Serving the catalog of {lab.root} at {url} (read-only; Ctrl-C stops)")
        if is_loopback(host):
            if not no_auth:
                typer.echo("Open the URL above once (the browser keeps its token); it is shown only now.")
            return
        if no_auth:
            typer.echo(f"No token (--no-auth): anyone who can reach {host}:{port} can read and download every "
                       "capture of this lab.")
        else:
            typer.echo(f"Listening on {host}, beyond this machine: every request needs the token in the URL above "
                       "(open it once; the browser keeps it). It is shown only now.")

    lab = get_lab(ctx)
    serve(lab, host=host, port=port, open_browser=open_browser, on_ready=ready, no_auth=no_auth)


__all__ = ["app", "CatalogError", "CaptureStatus"]
