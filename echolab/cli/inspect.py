"""A human view of one capture: conversations (fast reader) and packets (tshark's dissectors)."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text

from echolab.captures.reader import ReadStats, read_packets
from echolab.captures.trace import is_trace_file, read_trace


def packet_summary(path: Path, *, limit: int = 20, device_ip: str | None = None) -> Group:
    """Conversations of the capture and tshark's one-line summary of its first *limit* packets.

    A ``time,size,direction`` packet trace has no addresses: its two directions are summarized instead.
    """
    if is_trace_file(path):
        return _trace_summary(path)
    stats = ReadStats()
    conv: Counter = Counter()
    conv_bytes: Counter = Counter()
    for p in read_packets(path, stats):
        key = (p.src, p.sport, p.dst, p.dport, "TCP" if p.proto == 6 else "UDP")
        conv[key] += 1
        conv_bytes[key] += p.ip_len
    table = Table(title=f"{stats.packets} packets, {len(conv)} directions"
                  + (" (file cut short)" if stats.truncated_file else ""))
    for col in ("from", "to", "proto", "packets", "IP bytes"):
        table.add_column(col)
    for key, n in conv.most_common(12):
        src, sport, dst, dport, proto = key
        mark = " (device)" if device_ip and src == device_ip else ""
        table.add_row(f"{src}:{sport}{mark}", f"{dst}:{dport}", proto, str(n), str(conv_bytes[key]))
    parts: list = [table]
    if limit > 0:
        parts.append(_tshark_lines(path, limit))
    return Group(*parts)


#: tshark's summary columns of a packet, in the order the lines show them.
_TSHARK_FIELDS = ("frame.number", "frame.time_relative", "_ws.col.Source", "_ws.col.Destination", "_ws.col.Protocol",
                  "frame.len", "_ws.col.Info")
TSHARK_TIMEOUT_S = 60


def _tshark_lines(path: Path, limit: int) -> Text:
    """tshark's one-line summary of the first *limit* packets (its dissectors name the protocols).

    tshark is run directly (``-T fields``), not through pyshark: pyshark's
    asyncio child process could lose its exit status to another part of a
    long-lived process and report a crash of a tshark that had finished.
    """
    tshark = shutil.which("tshark")
    if tshark is None:
        return Text("(install tshark for a per-packet dissection)", style="dim")
    cmd = [tshark, "-n", "-r", str(path), "-c", str(limit), "-T", "fields", "-E", "separator=/t"]
    for field in _TSHARK_FIELDS:
        cmd += ["-e", field]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=TSHARK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return Text(f"(tshark took over {TSHARK_TIMEOUT_S} s to dissect it)", style="dim")
    lines = []
    for row in done.stdout.splitlines():
        cols = row.split("\t")
        if len(cols) != len(_TSHARK_FIELDS):
            continue
        no, t, src, dst, proto, length, info = cols
        try:
            t = f"{float(t):10.6f}"
        except ValueError:
            pass
        lines.append(f"{no:>5} {t} {src:>15} -> {dst:<15} {proto:<6} {length:>5} {info}")
    if not lines and done.returncode != 0:
        why = next((x for x in reversed(done.stderr.splitlines()) if x.strip() and "Running as user" not in x), "")
        return Text(f"(tshark could not dissect it{': ' + why if why else ''})", style="dim")
    return Text("\n".join(lines) if lines else "(no packets)")


def _trace_summary(path: Path) -> Group:
    times, sizes = read_trace(path)
    table = Table(title=f"packet trace (time,size,direction): {len(sizes)} packets over {times[-1] / 1e6:.3f} s")
    for col in ("direction", "packets", "IP bytes"):
        table.add_column(col)
    up = [s for s in sizes if s > 0]
    down = [-s for s in sizes if s < 0]
    table.add_row("device to server (1)", str(len(up)), str(sum(up)))
    table.add_row("server to device (-1)", str(len(down)), str(sum(down)))
    return Group(table)
