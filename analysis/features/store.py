"""Feature records cached in the catalog, built in parallel.

A record is keyed by what determines it: the capture's content (sha256), the
extractor version and the device IP (``echolab.db.records.FeatureRow``). Building reads
every capture without a cached row, on ``n_jobs`` worker processes, reporting to
an optional progress callback (``echolab.progress``); a capture that cannot be used (corrupt, cut short, empty, no TCP
with the device) is stored with its reason in ``FeatureRow.error`` and skipped
by the data set - the build goes on.
"""

from __future__ import annotations

import csv
import math
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from echolab.analysis.features.sets import EXTRACTOR_VERSION, CaptureRecord, FeatureError, extract_record
from echolab.captures.trace import TRACE_DEVICE, TRACE_SUFFIX
from echolab.db.records import Capture
from echolab.errors import require
from echolab.progress import ProgressCallback, notify

if TYPE_CHECKING:
    from echolab.db.catalog import Catalog

BATCH = 50


@dataclass
class BuildReport:
    """What a build found: records by capture id, reasons for the unusable ones, counts."""

    records: dict[int, CaptureRecord] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    extracted: int = 0  # files read in this build
    cached: int = 0  # captures answered from the catalog

    @property
    def failed(self) -> int:
        return len(self.errors)


def device_ip_of(capture: Capture, override: str | None = None) -> str | None:
    """The device IP for *capture*: the override, its own, or its campaign's device's.

    A packet trace has no addresses: its key is :data:`~echolab.captures.trace.TRACE_DEVICE`.
    """
    if (capture.path or "").lower().endswith(TRACE_SUFFIX):
        return TRACE_DEVICE
    if override:
        return override
    if capture.device_ip:
        return capture.device_ip
    campaign = capture.campaign
    if campaign is not None and campaign.device is not None and campaign.device.ip:
        return campaign.device.ip
    return None


def _extract(path: str, device_ip: str) -> tuple[dict | None, str | None]:
    """Worker: (record JSON, None) or (None, reason)."""
    try:
        return extract_record(path, device_ip).to_json(), None
    except FeatureError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - a bug on one capture must not stop a long build
        return None, f"internal error while reading the capture: {type(exc).__name__}: {exc}"


#: Libraries that run threads of their own once imported: a process holding one is not forked.
FORK_UNSAFE = ("jax", "torch", "tensorflow")


def _extract_pair(job: tuple[str, str]) -> tuple[dict | None, str | None]:
    return _extract(*job)


def _run(jobs: list[tuple[str, str]], n_jobs: int) -> Iterator[tuple[dict | None, str | None]]:
    """Results in job order. Workers are forked (on Linux) so they start in milliseconds with every module
    already imported; elsewhere, or once a library that runs threads of its own is loaded (JAX, after the
    deep model or the JAX MLP trained in this process: forking it can deadlock), they are spawned."""
    if n_jobs == 1 or len(jobs) < 8:
        for path, ip in jobs:
            yield _extract(path, ip)
        return
    methods = multiprocessing.get_all_start_methods()
    threaded = any(name in sys.modules for name in FORK_UNSAFE)
    context = multiprocessing.get_context("fork" if "fork" in methods and not threaded else "spawn")
    chunk = max(1, min(16, len(jobs) // (n_jobs * 8)))
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=context) as pool:
        yield from pool.map(_extract_pair, jobs, chunksize=chunk)


def build_features(catalog: "Catalog", *, captures: Sequence[Capture] | None = None, device_ip: str | None = None,
                   progress: ProgressCallback | None = None, n_jobs: int = 2, rebuild: bool = False) -> BuildReport:
    """Make sure every capture in *captures* (default: all good ones) has a cached record.

    *progress* is called as ``progress("extracting features", done, total)`` while
    captures without a cached record are read.

    Raises :class:`FeatureError` when some capture has no device IP (pass
    *device_ip*, or record the device of its campaign).
    """
    captures = list(captures if captures is not None else catalog.captures())
    report = BuildReport()
    keys: dict[int, tuple[str, str]] = {}
    no_ip = [c.id for c in captures if device_ip_of(c, device_ip) is None]
    if no_ip:
        shown = ", ".join(map(str, no_ip[:10])) + (" ..." if len(no_ip) > 10 else "")
        raise FeatureError(f"captures {shown} have no device IP; pass --device-ip or set the campaign's device IP")
    for cap in captures:
        if not cap.sha256:
            report.errors[cap.id] = "capture has no sha256 in the catalog"
            continue
        keys[cap.id] = (cap.sha256, device_ip_of(cap, device_ip))
    cached = catalog.feature_rows(set(keys.values()), EXTRACTOR_VERSION) if not rebuild else {}
    todo: dict[tuple[str, str], str] = {}
    for cap in captures:
        key = keys.get(cap.id)
        if key is None or key in cached:
            continue
        path = catalog.abspath(cap)
        if path is None or not Path(path).is_file():
            report.errors[cap.id] = f"capture file {path} is missing"
            continue
        todo.setdefault(key, str(path))
    fresh = _extract_all(catalog, todo, n_jobs, progress)
    report.extracted = len(todo)
    for cap in captures:
        key = keys.get(cap.id)
        if key is None or cap.id in report.errors:
            continue
        values, error = fresh[key] if key in fresh else cached[key]
        if key not in fresh:
            report.cached += 1
        if error is not None:
            report.errors[cap.id] = error
        else:
            report.records[cap.id] = CaptureRecord.from_json(values)
    return report


def _extract_all(catalog: "Catalog", todo: dict[tuple[str, str], str], n_jobs: int,
                 progress: ProgressCallback | None) -> dict[tuple[str, str], tuple[dict | None, str | None]]:
    keys = list(todo)
    jobs = [(todo[k], k[1]) for k in keys]
    results: dict[tuple[str, str], tuple[dict | None, str | None]] = {}
    pending: list[tuple[tuple[str, str], dict | None, str | None]] = []
    if jobs:
        notify(progress, "extracting features", 0, len(jobs))
    for done, (key, (values, error)) in enumerate(zip(keys, _run(jobs, n_jobs)), 1):
        results[key] = (values, error)
        pending.append((key, values, error))
        notify(progress, "extracting features", done, len(jobs))
        if len(pending) >= BATCH:
            catalog.store_feature_rows(pending, EXTRACTOR_VERSION)
            pending = []
    catalog.store_feature_rows(pending, EXTRACTOR_VERSION)
    return results


def feature_rows(catalog: "Catalog", *, set_name: str = "combined", device_ip: str | None = None,
                 progress: ProgressCallback | None = None, n_jobs: int = 2, captures: Any = None,
                 **options) -> tuple[list[str], list[list[Any]]]:
    """(column names, rows) of the data set: capture_id, sha256, campaign, label, then the set's features
    (the transformer fitted on every usable capture; of *captures* when given). Needs no pandas."""
    from echolab.analysis.features.sets import load_dataset, make_transformer

    data = load_dataset(catalog, device_ip=device_ip, progress=progress, n_jobs=n_jobs, captures=captures)
    if not len(data):
        raise FeatureError("no usable captures in the catalog",
                           hint="'echolab features build' says why each capture is unusable")
    transformer = make_transformer(set_name, **options).fit(data.records)
    matrix = transformer.transform(data.records)
    columns = ["capture_id", "sha256", "campaign", "label", *map(str, transformer.get_feature_names_out())]
    rows = [[cid, sha, camp, str(label), *values] for cid, sha, camp, label, values in
            zip(data.capture_ids, data.sha256s, data.campaigns, data.y.tolist(), matrix.tolist())]
    return columns, rows


def feature_table(catalog: "Catalog", *, set_name: str = "combined", device_ip: str | None = None,
                  progress: ProgressCallback | None = None, n_jobs: int = 2, captures: Any = None, **options):
    """The data set as a pandas DataFrame: capture_id, sha256, campaign, label, then the set's features
    (the transformer fitted on every usable capture; of *captures* when given)."""
    import pandas as pd

    columns, rows = feature_rows(catalog, set_name=set_name, device_ip=device_ip, progress=progress,
                                 n_jobs=n_jobs, captures=captures, **options)
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({c: float for c in columns[4:]})


def _csv_value(value: Any) -> Any:
    return "" if isinstance(value, float) and math.isnan(value) else value  # as pandas writes a missing value


def export_features(catalog: "Catalog", path: Path | str, *, fmt: str = "csv", set_name: str = "combined",
                    device_ip: str | None = None, progress: ProgressCallback | None = None, captures: Any = None,
                    **options) -> int:
    """Write the set's features to *path* as CSV (no pandas needed) or Parquet; return the number of rows.

    *captures*: these catalogued captures only (default: every good one).
    The ``sequence`` set is written as packet traces instead: *path* is a
    folder (see :func:`export_traces`) and the number returned is of files.
    """
    if set_name == "sequence":
        if fmt != "csv":
            raise FeatureError("the sequence set is exported as time,size,direction CSV files only (--format csv)")
        return export_traces(catalog, path, device_ip=device_ip, progress=progress, captures=captures)
    if fmt not in ("csv", "parquet"):
        raise FeatureError(f"unknown export format {fmt!r}; choose csv or parquet")
    if fmt == "parquet":
        require("pyarrow", "parquet", "Parquet export")
        require("pandas", "parquet", "Parquet export")
    path = Path(path)
    if fmt == "csv":
        columns, rows = feature_rows(catalog, set_name=set_name, device_ip=device_ip, progress=progress,
                                     captures=captures, **options)
        try:
            with open(path, "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(columns)
                writer.writerows([_csv_value(v) for v in row] for row in rows)
        except OSError as exc:
            raise FeatureError(f"cannot write {path}: {exc.strerror or exc}") from exc
        return len(rows)
    frame = feature_table(catalog, set_name=set_name, device_ip=device_ip, progress=progress, captures=captures,
                          **options)
    try:
        frame.to_parquet(path, index=False)
    except OSError as exc:
        raise FeatureError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return len(frame)


def export_traces(catalog: "Catalog", folder: Path | str, *, device_ip: str | None = None,
                  progress: "ProgressCallback | None" = None, captures: Any = None) -> int:
    """Write each usable capture's packet sequence as ``FOLDER/LABEL/SHA16.csv`` (``time,size,direction``).

    The folder of class folders is what ``echolab catalog import FOLDER`` reads
    back (as packet traces, which give the sequence sets only). Captures of the
    same sequence and class (a defense can make them so) each get a file,
    ``SHA16-2.csv`` for the second; an import keeps one capture per content, as
    it does for any file it has seen. Returns the number of files written; an
    existing file of the same name is replaced.
    """
    from echolab.analysis.features.sets import load_dataset
    from echolab.captures.trace import write_trace
    from echolab.db.catalog import capture_file_name, safe_name

    data = load_dataset(catalog, device_ip=device_ip, progress=progress, captures=captures)
    if not len(data):
        raise FeatureError("no usable captures in the catalog",
                           hint="'echolab features build' says why each capture is unusable")
    folder = Path(folder)
    written: dict[Path, int] = {}
    try:
        for record, label, sha in zip(data.records, data.y.tolist(), data.sha256s):
            target = folder / safe_name(label)
            target.mkdir(parents=True, exist_ok=True)
            first = target / capture_file_name(sha, TRACE_SUFFIX)  # labels may share a folder name: count by file
            nth = written[first] = written.get(first, 0) + 1
            write_trace(target / capture_file_name(sha, TRACE_SUFFIX, nth), record.seq_times_us, record.seq_sizes)
    except OSError as exc:
        raise FeatureError(f"cannot write traces into {folder}: {exc.strerror or exc}") from exc
    return len(data)
