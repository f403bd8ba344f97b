"""Classify the requests of long captures with a trained model, and draw the day they make.

The eavesdropper's view: point a model file (:mod:`echolab.analysis.compare.modelfile`)
at a day of a household's traffic and say what was asked when. Each capture
is cut into requests by the same cut as ``catalog import --split``
(:mod:`echolab.captures.cut`, with the rules of :data:`echolab.captures.rules.RULES`); each request's raw records are copied into a
temporary pcapng and read by the feature extractor, as a catalogued capture
would be, but nothing is written to the catalog. :func:`plot_timeline` draws the
predictions on a time axis, coloured by class, with counts per class and hour.
"""

from __future__ import annotations

import base64
import html
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from echolab.captures.rules import RULES, trim_edges
from echolab.captures.spec import SplitSpec
from echolab.errors import EcholabError


class ClassifyError(EcholabError):
    """Captures cannot be classified as asked (bad timeline file, nothing to draw)."""


@dataclass(frozen=True)
class Prediction:
    """One request of a capture and what the model says it was."""

    source: str
    start: float  # epoch seconds of the request's first and last packet of the device
    end: float
    label: str
    probability: float | None
    packets: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "start": iso(self.start), "end": iso(self.end), "label": self.label,
                "probability": None if self.probability is None else round(self.probability, 4)}


def iso(ts: float) -> str:
    """UTC ISO 8601 with milliseconds (what the JSON lines and the table print)."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class CaptureOutcome:
    """The requests of one capture: predictions, the cut used, and requests that gave no features."""

    source: Path
    device_ip: str
    cut: str
    predictions: list[Prediction] = field(default_factory=list)
    unreadable: list[tuple[float, str]] = field(default_factory=list)  # (start, reason)
    set_aside: int = 0  # bursts too small to be requests (keep-alives)
    expected: int | None = None  # requests the file should hold (``--expect``), as import checks it
    #: the verdict of the cut's checks (:mod:`echolab.captures.quality`), as import keeps it: ``ok`` or
    #: ``suspect: why``; judged once every capture classified together is cut (:func:`classify_captures`)
    check: str = "ok"
    result: Any = field(default=None, repr=False)  # the cut itself (a SplitResult), for the checks

    @property
    def as_expected(self) -> bool | None:
        """Whether the cut found the requests expected (``None`` when nothing was expected)."""
        return None if self.expected is None else len(self.predictions) + len(self.unreadable) == self.expected


def request_records(source: Path | str, segments: Sequence[Any], device_ip: str) -> list[tuple[Any, str | None]]:
    """A feature record (or the reason there is none) per segment of *source*, via temporary pieces."""
    from echolab.analysis.features.sets import FeatureError, extract_record
    from echolab.captures.pieces import write_pieces

    out: list[tuple[Any, str | None]] = []
    with tempfile.TemporaryDirectory(prefix="echolab-classify-") as tmp:
        for piece in write_pieces(source, segments, Path(tmp), stem="request"):
            try:
                out.append((extract_record(piece, device_ip), None))
            except FeatureError as exc:
                out.append((None, str(exc)))
    return out


def trim_keepalives(timeline: Any, segment: Any, spec: Any, edge_gap_s: float) -> Any:
    """*segment* without the keep-alive exchanges joined to its edges (:func:`echolab.captures.rules.trim_edges`)."""
    lo = int(np.searchsorted(timeline.ts_us, segment.start_us, "left"))
    hi = int(np.searchsorted(timeline.ts_us, segment.end_us, "right"))
    ts = timeline.ts_us[lo:hi]
    a, b = trim_edges(ts, timeline.size[lo:hi], min_packets=spec.min_packets, min_bytes=spec.min_bytes,
                      edge_gap_us=round(edge_gap_s * 1e6))
    if not len(ts) or (a, b) == (0, len(ts)):
        return segment
    return timeline.window(int(ts[a]), int(ts[b - 1]))


def classify_capture(path: Path | str, model: Any, split: str | SplitSpec = "auto", *, device_ip: str | None = None,
                     trim: bool = True, expect: int | None = None) -> CaptureOutcome:
    """Cut the capture at *path* into requests (*split*: ``auto``, ``gap=S`` or a ``SplitSpec``) and classify each.

    With *trim*, keep-alive exchanges joined to a request's edges are left out
    (:func:`trim_keepalives`, runs apart by
    :attr:`~echolab.captures.rules.TrafficRules.edge_gap_share` of the gap).
    *expect*: requests the capture should hold; it guides ``auto`` as it does
    ``catalog import --expect``, and the outcome says whether the cut found them.
    """
    outcome, good = _cut(path, split, device_ip=device_ip, trim=trim, expect=expect)
    _predict([(outcome, good)], model)
    return outcome


def _cut(path: Path | str, split: str | SplitSpec, *, device_ip: str | None, trim: bool,
         expect: int | None) -> tuple[CaptureOutcome, list[tuple[Any, Any]]]:
    """The outcome of cutting *path* (no predictions yet) and its requests that have features: (segment, record)."""
    from echolab.captures.cut import split_capture

    path = Path(path)
    spec = SplitSpec.parse(split) if isinstance(split, str) else split
    result = split_capture(path, spec, device_ip, expect=expect)
    device = result.timeline.device.ip
    outcome = CaptureOutcome(path, device, result.spec.settings() if hasattr(result.spec, "settings") else str(spec),
                             set_aside=len(result.ignored), expected=expect)
    segments = result.segments
    if trim and result.spec.seconds > 0:
        edge_gap_s = result.spec.seconds * RULES.edge_gap_share / result.spec.speed  # on the capture's clock
        segments = [trim_keepalives(result.timeline, seg, result.spec, edge_gap_s) for seg in segments]
    result.segments = segments
    outcome.result = result
    records = request_records(path, result.segments, device)
    good = [(seg, rec) for seg, (rec, _) in zip(result.segments, records) if rec is not None]
    outcome.unreadable = [(seg.start, why or "") for seg, (rec, why) in zip(result.segments, records) if rec is None]
    return outcome, good


def _predict(cut: Sequence[tuple[CaptureOutcome, list[tuple[Any, Any]]]], model: Any) -> None:
    """Classify the requests of every outcome in *cut* in one call (an adapted model adapts them together)."""
    records = [rec for _, good in cut for _, rec in good]
    labels, probs = model.predict(records)
    if len(labels) != len(records) or len(probs) != len(records):
        raise ClassifyError(f"the model gave {len(labels)} predictions for {len(records)} requests")
    k = 0
    for outcome, good in cut:
        outcome.predictions = [Prediction(str(outcome.source), seg.start, seg.end, labels[k + i], probs[k + i],
                                          seg.packets) for i, (seg, _) in enumerate(good)]
        k += len(good)


def classify_captures(paths: Iterable[Path | str], model: Any, split: str | SplitSpec = "auto", *, device_ip: str | None = None,
                      on_capture: Callable[[CaptureOutcome], None] | None = None,
                      expect: int | None = None, check: bool = True) -> list[CaptureOutcome]:
    """:func:`classify_capture` for each path, in order; *on_capture* sees each outcome as it is done.

    A model that adapts to each home (``model.adapt``) gets the requests of
    every path at once, as one home's: the paths are cut first, then classified
    together, and *on_capture* sees the outcomes after that. Once all are cut,
    the cuts are judged together as import judges a campaign's files
    (:func:`check_outcomes`), so each outcome's ``check`` says ``ok`` or why its
    cut is suspect; without *check*, the caller judges them (and keeps the
    report).
    """
    together = getattr(model, "adapt", "none") != "none"
    cut = []
    for path in paths:
        done = _cut(path, split, device_ip=device_ip, trim=True, expect=expect)
        if not together:
            _predict([done], model)
            if on_capture is not None:
                on_capture(done[0])
        cut.append(done)
    if together:
        _predict(cut, model)
        if on_capture is not None:
            for outcome, _ in cut:
                on_capture(outcome)
    outcomes = [outcome for outcome, _ in cut]
    if check:
        check_outcomes(outcomes)
    return outcomes


def check_outcomes(outcomes: Sequence[CaptureOutcome]) -> Any:
    """Judge the cuts of *outcomes* together, with the checks of ``catalog import``
    (:func:`echolab.captures.quality.check_cuts`: device, request durations and uploads against the
    others', working gaps, ``--expect``); set each outcome's ``check`` and return the report (None when
    no outcome holds its cut)."""
    from echolab.captures.quality import check_cuts

    judged = [o for o in outcomes if o.result is not None]
    if not judged:
        return None
    report = check_cuts([o.result for o in judged])
    for outcome, verdict in zip(judged, report.verdicts):
        verdict.file = str(outcome.source)
        outcome.check = verdict.text
    return report


def summary(predictions: Sequence[Prediction]) -> dict[str, int]:
    """Requests per predicted class, most frequent first."""
    return dict(Counter(p.label for p in predictions).most_common())


# --------------------------------------------------------------------------- the timeline


def hourly_counts(predictions: Sequence[Prediction], *, speed: float = 1.0) -> tuple[list[datetime], dict[str, list[int]]]:
    """Requests per (clock) hour and class; with *speed* > 1 the hours are the household's (see plot_timeline)."""
    if not predictions:
        return [], {}
    t0 = min(p.start for p in predictions)
    clock = [t0 + (p.start - t0) * speed for p in predictions]
    first = datetime.fromtimestamp(min(clock), timezone.utc).replace(minute=0, second=0, microsecond=0)
    n_hours = int((max(clock) - first.timestamp()) // 3600) + 1
    hours = [datetime.fromtimestamp(first.timestamp() + 3600 * h, timezone.utc) for h in range(n_hours)]
    counts: dict[str, list[int]] = {}
    for p, c in zip(predictions, clock):
        counts.setdefault(p.label, [0] * n_hours)[int((c - first.timestamp()) // 3600)] += 1
    return hours, counts


#: The timeline draws at most this many rows of classes; the least frequent beyond them share one row.
TIMELINE_MAX_ROWS = 20


def timeline_rows(predictions: Sequence[Prediction], classes: Sequence[str] = (),
                  max_rows: int = TIMELINE_MAX_ROWS) -> tuple[list[str], dict[str, str]]:
    """The rows the timeline draws and each class's row: every class up to *max_rows*; beyond, the most
    frequent ``max_rows - 1`` and one row ``other (N classes)`` for the rest."""
    order = _class_order(predictions, classes)
    if len(order) <= max_rows:
        return order, {c: c for c in order}
    counts = Counter(p.label for p in predictions)
    kept = sorted(order, key=lambda c: (-counts[c], order.index(c)))[:max_rows - 1]
    other = f"other ({len(order) - len(kept)} classes)"
    rows = [c for c in order if c in kept] + [other]
    return rows, {c: (c if c in kept else other) for c in order}


def _time_axis(ax: Any, span_days: float) -> None:
    """Ticks that say the date when the timeline spans days (not "00:00" on every tick), the time otherwise."""
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=3, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%b %d\n%H:%M" if span_days >= 1 else "%H:%M"))


def _class_order(predictions: Sequence[Prediction], classes: Sequence[str] = ()) -> list[str]:
    """The classes present, in *classes*' order, then others; requests the model rejected come last."""
    from echolab.analysis.compare.openworld import UNKNOWN

    present = {p.label for p in predictions}
    ordered = [c for c in classes if c in present and c != UNKNOWN]
    rest = sorted(present - set(ordered) - {UNKNOWN})
    return ordered + rest + ([UNKNOWN] if UNKNOWN in present else [])


def timeline_figure(predictions: Sequence[Prediction], *, classes: Sequence[str] = (), speed: float = 1.0,
                    title: str = "") -> Any:
    """A matplotlib ``Figure`` (no pyplot): the requests on a time axis, then counts per class and hour.

    *speed*: the capture was played this many times faster than the household's
    clock (a simulated day); times are drawn as ``first + (t - first) * speed``.
    Class labels are drawn as given (a ``$`` in one is not matplotlib math).
    A timeline over days has dates on its ticks; above :data:`TIMELINE_MAX_ROWS`
    classes the least frequent share one row (:func:`timeline_rows`).
    """
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False}):
        return _timeline_figure(predictions, classes, speed, title)


def _timeline_figure(predictions: Sequence[Prediction], classes: Sequence[str], speed: float, title: str) -> Any:
    import matplotlib.dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not predictions:
        raise ClassifyError("no requests were found, so there is no timeline to draw")
    order, row_of = timeline_rows(predictions, classes)
    colors = {c: (f"C{i % 10}" if len(order) <= 10 else _tab20(i)) for i, c in enumerate(order)}
    if any(row != label for label, row in row_of.items()):  # the shared row of the least frequent classes
        colors[order[-1]] = "#9a9a9a"
    if "unknown" in colors:  # rejected by the model's reject option: grey
        colors["unknown"] = "0.6"
    t0 = min(p.start for p in predictions)
    span_days = (max(p.end for p in predictions) - t0) * speed / 86400

    def when(t: float) -> datetime:
        return datetime.fromtimestamp(t0 + (t - t0) * speed, timezone.utc)

    fig = Figure(figsize=(12, max(6.5, 3.0 + 0.24 * len(order))), dpi=100)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, gridspec_kw={"height_ratios": [1.2 + 0.04 * len(order), 1]})
    min_width = max((predictions[-1].end - t0) * speed / 1500, 1.0) / 86400  # visible at any span (days)
    for row, label in enumerate(order):
        spans = [(mdates.date2num(when(p.start)), max((p.end - p.start) * speed / 86400, min_width))
                 for p in predictions if row_of[p.label] == label]
        top.broken_barh(spans, (row - 0.4, 0.8), facecolors=colors[label], edgecolors=colors[label], linewidth=0.8)
    top.set_yticks(range(len(order)), [f"{c} ({sum(row_of[p.label] == c for p in predictions)})" for c in order],
                   fontsize=8 if len(order) > 10 else None)
    top.invert_yaxis()
    top.xaxis_date()
    _time_axis(top, span_days)
    top.set_title(title or f"{len(predictions)} requests, coloured by predicted class", fontsize=10)
    hours, by_class = hourly_counts(predictions, speed=speed)
    counts: dict[str, list[int]] = {}
    for label, values in by_class.items():
        merged = counts.setdefault(row_of[label], [0] * len(hours))
        counts[row_of[label]] = [a + b for a, b in zip(merged, values)]
    x = mdates.date2num(hours)
    base = [0] * len(hours)
    for label in order:
        values = counts.get(label, [0] * len(hours))
        bottom.bar(x, values, width=1 / 24 * 0.9, bottom=base, align="edge", color=colors[label], label=label)
        base = [a + b for a, b in zip(base, values)]
    bottom.xaxis_date()
    _time_axis(bottom, span_days)
    span = (min(x[0], top.get_xlim()[0]), max(x[-1] + 1 / 24, top.get_xlim()[1]))
    top.set_xlim(span)
    bottom.set_xlim(span)
    bottom.set_ylabel("requests per hour")
    bottom.set_xlabel("time (UTC" + (f", household clock: capture played {speed:g}x faster)" if speed != 1 else ")"))
    if len(order) > 6:  # beside the bars, not over them
        bottom.legend(fontsize=7, ncols=1 if len(order) <= 12 else 2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        bottom.legend(fontsize=8, ncols=len(order), loc="upper left")
    fig.tight_layout()
    return fig


def _tab20(i: int) -> Any:
    from matplotlib import colormaps

    return colormaps["tab20"](i % 20)


def plot_timeline(predictions: Sequence[Prediction], out: Path | str, *, classes: Sequence[str] = (),
                  speed: float = 1.0, title: str = "") -> Path:
    """Write the timeline as PNG (``.png``) or as an HTML page with the picture and the hourly table."""
    import io

    out = Path(out)
    kind = out.suffix.lower()
    if kind not in (".png", ".html"):
        raise ClassifyError(f"--timeline writes .png or .html, not {out.name!r}")
    fig = timeline_figure(predictions, classes=classes, speed=speed, title=title)
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == ".png":
        fig.savefig(out, format="png")
        return out
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    out.write_text(_html_page(predictions, base64.b64encode(buf.getvalue()).decode(), classes, speed, title))
    return out


def _html_page(predictions: Sequence[Prediction], png_b64: str, classes: Sequence[str], speed: float,
               title: str) -> str:
    order = _class_order(predictions, classes)
    hours, counts = hourly_counts(predictions, speed=speed)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in order)
    rows = "".join(
        f"<tr><td>{h:%Y-%m-%d %H:00}</td>" + "".join(f"<td>{counts.get(c, [0] * len(hours))[i]}</td>" for c in order)
        + "</tr>" for i, h in enumerate(hours))
    listing = "".join(
        f"<tr><td>{html.escape(iso(p.start))}</td><td>{html.escape(iso(p.end))}</td><td>{html.escape(p.label)}</td>"
        f"<td>{'' if p.probability is None else f'{p.probability:.2f}'}</td></tr>" for p in predictions)
    name = html.escape(title or "A day of requests")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{name}</title>"
            "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:right}</style></head><body>"
            f"<h1>{name}</h1><img alt='timeline' src='data:image/png;base64,{png_b64}'>"
            f"<h2>Requests per hour and predicted class</h2><table><tr><th>hour (UTC)</th>{head}</tr>{rows}</table>"
            f"<h2>Requests</h2><table><tr><th>start</th><th>end</th><th>class</th><th>probability</th></tr>"
            f"{listing}</table></body></html>\n")


__all__ = ["CaptureOutcome", "ClassifyError", "Prediction", "classify_capture", "classify_captures",
           "hourly_counts", "iso", "plot_timeline", "request_records", "summary", "timeline_figure"]
