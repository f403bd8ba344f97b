"""Packet traces: a capture as rows of ``time,size,direction``, the form public data sets use.

A trace holds, per packet of the device's TCP traffic in capture order, the
time in seconds since the trace's first packet, the signed size in bytes (IP
total length; positive from the device to a server, negative from a server to
the device) and the direction (``1`` device to server, ``-1`` server to
device). There are no TCP headers, so only features computed from the
sequence itself (``echolab.analysis.features.sequence``, ``kfp``, ``cumul``)
can be taken from a trace.

``echolab features export --set sequence`` writes traces; ``echolab catalog
import`` reads them back as captures (a file ending in ``.csv`` whose first
line names the columns of :data:`TRACE_HEADER`). Public data sets write the same
rows in other ways, which are read too: a leading index column, numbers as
floats, and unsigned sizes whose sign is the direction column's.
"""

from __future__ import annotations

import csv
import io
import math
from array import array
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from echolab.captures.reader import CaptureError

if TYPE_CHECKING:
    from echolab.captures.reader import CaptureSummary

TRACE_HEADER = ("time", "size", "direction")
TRACE_SUFFIX = ".csv"
#: The key a trace's cached features are stored under in place of a device IP (a trace has no addresses).
TRACE_DEVICE = "trace"


class TraceError(CaptureError):
    """A trace file cannot be read (not ``time,size,direction`` rows, or inconsistent signs)."""


#: The names a trace's columns may go by (lower case): public data sets call the size ``length``.
TRACE_COLUMN_NAMES = {
    "time": ("time", "timestamp", "time_s"),
    "size": ("size", "length", "len", "bytes"),
    "direction": ("direction", "dir"),
}


def trace_columns(header: list[str] | tuple[str, ...]) -> tuple[int, int, int] | None:
    """The positions of the time, size and direction columns in a CSV header (None: not a trace).

    Other columns (a leading index column that pandas writes, say) are allowed
    and ignored; each of the three must be there once.
    """
    names = [c.strip().strip('"').lower() for c in header]
    found: list[int] = []
    for aliases in TRACE_COLUMN_NAMES.values():
        at = [i for i, name in enumerate(names) if name in aliases]
        if len(at) != 1:
            return None
        found.append(at[0])
    return found[0], found[1], found[2]


def is_trace_file(path: Path | str) -> bool:
    """Whether *path* is a ``.csv`` file whose first line names time, size and direction columns."""
    path = Path(path)
    if path.suffix.lower() != TRACE_SUFFIX or not path.is_file():
        return False
    try:
        with open(path, newline="") as fh:
            first = next(csv.reader([fh.readline()]), [])
    except (OSError, UnicodeDecodeError):
        return False
    return trace_columns(first) is not None


def _number(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(text)
    return value


#: Bounds of a trace's values: times within about 300 years of 1970 (the microseconds fit in 64 bits),
#: sizes within what one IP packet can carry (jumbograms included).
MAX_TRACE_TIME_S = 1e10
MAX_TRACE_SIZE = 1 << 32


def read_trace(path: Path | str) -> tuple[array, array]:
    """(times in microseconds since the first packet, signed sizes in bytes) of a trace file.

    The public forms are read as well as echolab's own: extra columns (a
    leading index column) are ignored, numbers may be written as floats
    (``1500.0``; a size must still be a whole number), and a size may be
    unsigned with the direction column giving its sign (``1500,-1`` is 1500
    bytes to the device). Raises :class:`TraceError` naming the first bad
    line: a missing header, a value that is not a number, a zero or fractional
    size, a direction other than 1 or -1, or a negative size with direction 1.
    """
    path = Path(path)
    times, sizes = array("q"), array("l")
    try:
        with open(path, newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            columns = trace_columns(header) if header is not None else None
            if columns is None:
                raise TraceError(f"{path} is not a packet trace: its first line must name the columns "
                                 f"{','.join(TRACE_HEADER)} (other columns, such as an index, are ignored)")
            ti, si, di = columns
            t0: float | None = None
            for line, row in enumerate(reader, start=2):
                if not row or not any(cell.strip() for cell in row):
                    continue
                try:
                    t, raw_size, raw_dir = _number(row[ti]), _number(row[si]), _number(row[di])
                except (ValueError, IndexError) as exc:
                    raise TraceError(f"{path} line {line}: expected time,size,direction numbers, got {row!r}") from exc
                if not math.isfinite(t) or abs(t) > MAX_TRACE_TIME_S:
                    raise TraceError(f"{path} line {line}: time {row[ti][:40]!r} is not a number of seconds "
                                     f"within {MAX_TRACE_TIME_S:g}")
                if not (math.isfinite(raw_size) and math.isfinite(raw_dir)) or abs(raw_size) > MAX_TRACE_SIZE:
                    raise TraceError(f"{path} line {line}: size {row[si][:40]} is over {MAX_TRACE_SIZE} bytes, "
                                     "more than any packet")
                size, direction = round(raw_size), round(raw_dir)
                if size != raw_size or direction != raw_dir or size == 0 or direction not in (1, -1):
                    raise TraceError(f"{path} line {line}: a size must be a whole number of bytes other than 0 and "
                                     f"a direction 1 (device to server) or -1 (server to device), got {row!r}")
                if size > 0 and direction < 0:
                    size = -size  # an unsigned size: the direction column gives its sign
                elif size < 0 and direction > 0:
                    raise TraceError(f"{path} line {line}: size {size} and direction {direction} disagree "
                                     "(a negative size is a packet to the device, direction -1)")
                t0 = t if t0 is None else t0
                try:
                    times.append(round((t - t0) * 1e6))
                    sizes.append(size)
                except (OverflowError, ValueError):  # inf, nan, or beyond 64-bit microseconds and sizes
                    raise TraceError(f"{path} line {line}: time {row[0]!r} or size {row[1]!r} is out of range") from None
    except OSError as exc:
        raise TraceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path} is not a text file of time,size,direction rows") from exc
    except csv.Error as exc:
        raise TraceError(f"{path} is not a readable CSV of time,size,direction rows: {exc}") from None
    if not sizes:
        raise TraceError(f"{path} holds no packets")
    return times, sizes


def format_trace(times_us: Iterable[int], sizes: Iterable[int]) -> str:
    """The text of a trace file (header, then one row per packet; times to the microsecond)."""
    out = io.StringIO()
    out.write(",".join(TRACE_HEADER) + "\n")
    for t, s in zip(times_us, sizes):
        out.write(f"{t / 1e6:.6f},{s},{1 if s > 0 else -1}\n")
    return out.getvalue()


def write_trace(path: Path | str, times_us: Iterable[int], sizes: Iterable[int]) -> Path:
    """Write a trace file; return its path."""
    path = Path(path)
    path.write_text(format_trace(times_us, sizes))
    return path


def summarize_trace(path: Path | str) -> "CaptureSummary":
    """What the catalog records about a trace file: its packet count (a trace has no addresses)."""
    from echolab.captures.reader import CaptureSummary

    times, _ = read_trace(path)
    return CaptureSummary(packets=len(times), records=len(times), first_ts=0.0, last_ts=times[-1] / 1e6,
                          addresses={}, truncated_file=False)
