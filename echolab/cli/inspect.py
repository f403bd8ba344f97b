"""A human view of one capture: conversations (fast reader) and packets (tshark via pyshark)."""

from __future__ import annotations

import shutil
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


def _tshark_lines(path: Path, limit: int) -> Text:
    if shutil.which("tshark") is None:
        return Text("(install tshark for a per-packet dissection)", style="dim")
    import asyncio

    import pyshark

    # pyshark runs tshark from an asyncio loop; its own loop, so that a caller that already ran (and closed)
    # one with asyncio.run, as the web view does, does not leave it without a current loop
    loop = asyncio.new_event_loop()
    cap = pyshark.FileCapture(str(path), only_summaries=True, eventloop=loop)
    lines = []
    try:
        for i, pkt in enumerate(cap):
            if i >= limit:
                break
            lines.append(f"{pkt.no:>5} {float(pkt.time):10.6f} {pkt.source:>15} -> {pkt.destination:<15} "
                         f"{pkt.protocol:<6} {pkt.length:>5} {pkt.info}")
    finally:
        cap.close()
        loop.close()
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
