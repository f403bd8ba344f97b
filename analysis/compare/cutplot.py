"""The cut of a long capture, drawn: the device's traffic over time with the requests found.

``catalog segments --plot`` and a notebook draw :class:`~echolab.captures.cut.SplitResult`
with this; it lives above the captures layer so that the reader and the cut never
import matplotlib.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from echolab.captures.cut import SplitResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def cut_figure(result: SplitResult, *, bin_s: float | None = None) -> Figure:
    """A matplotlib ``Figure`` (no pyplot): the device's bytes per time bin (sent up, received down), the
    requests as green spans and the bursts set aside as dotted lines, to tune the cut."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tl = result.timeline
    span_s = max((tl.last_us - tl.first_us) / 1e6, 1e-3)
    bin_s = bin_s or max(span_s / 800, 1e-3)
    edges = np.arange(0, span_s + bin_s, bin_s)
    t = (tl.ts_us - tl.first_us) / 1e6
    out_b, _ = np.histogram(t[tl.outbound], edges, weights=tl.size[tl.outbound])
    in_b, _ = np.histogram(t[~tl.outbound], edges, weights=tl.size[~tl.outbound])
    fig = Figure(figsize=(12, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.bar(edges[:-1], out_b, width=bin_s, align="edge", color="tab:blue", label="sent by the device")
    ax.bar(edges[:-1], -in_b, width=bin_s, align="edge", color="tab:orange", label="received by the device")
    top = max(out_b.max(initial=0), in_b.max(initial=0), 1)
    for i, seg in enumerate(result.segments, 1):
        a, b = (seg.start_us - tl.first_us) / 1e6, (seg.end_us - tl.first_us) / 1e6
        ax.axvspan(a, max(b, a + bin_s), color="tab:green", alpha=0.2)
        ax.text(a, 0.97, str(i), fontsize=8, va="top", transform=ax.get_xaxis_transform())
    for seg in result.ignored:
        ax.axvline((seg.start_us - tl.first_us) / 1e6, color="grey", linewidth=0.5, linestyle=":")
    ax.set_xlim(0, span_s)
    ax.set_ylim(-top * 1.15, top * 1.15)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xlabel("seconds after the first packet")
    ax.set_ylabel(f"IP bytes per {bin_s:.3g} s bin\n(sent up, received down)")
    ax.set_title(f"{tl.path.name}: device {tl.device.ip}, {result.spec}: {len(result.segments)} requests "
                 f"(green), {len(result.ignored)} set aside (dotted)", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_segments(result: SplitResult, out: Path | str, *, bin_s: float | None = None) -> Path:
    """Write :func:`cut_figure` as a PNG at *out*."""
    fig = cut_figure(result, bin_s=bin_s)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


__all__ = ["cut_figure", "plot_segments"]
