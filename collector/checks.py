"""What is done to a finished capture of one request: check it is good, and cut a trailing upload off it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from echolab.captures.reader import CaptureError, ReadStats, read_packets
from echolab.collector.failures import Failure


@dataclass
class CheckedCapture:
    servers: list[str]  # the server addresses that talked with the Echo
    bytes_up: int  # TCP/UDP payload bytes the Echo sent
    bytes_down: int  # ... and received


def check_capture(path: Path, device_ip: str) -> CheckedCapture:
    """A good capture: readable, not empty, not cut short, with an answer from the cloud."""
    stats = ReadStats()
    servers: Counter = Counter()
    from_cloud = to_cloud = 0
    try:
        for p in read_packets(path, stats):
            if p.dst == device_ip and p.src != device_ip:
                servers[p.src] += 1
                from_cloud += p.payload_len
            elif p.src == device_ip:
                servers[p.dst] += 1
                to_cloud += p.payload_len
    except CaptureError as exc:
        raise Failure("capture-error", str(exc)) from exc
    if stats.packets == 0:
        raise Failure("no-traffic", "the capture holds no packets")
    if stats.truncated_file:
        raise Failure("truncated", "the capture file ends in the middle of a packet")
    if from_cloud == 0:
        raise Failure("no-response", "the capture holds no data from the cloud to the Echo")
    return CheckedCapture(sorted(servers), to_cloud, from_cloud)


def cut_after(path: Path, ts: float) -> None:
    """Drop the packets of *path* captured at or after *ts* (a post-answer upload left out)."""
    from echolab.captures.pieces import write_pieces
    from echolab.captures.timeline import Segment

    out = path.with_name(path.stem + "-cut")
    piece, = write_pieces(path, [Segment(0, int(ts * 1e6) - 1, 0, 0, 0)], out, stem="cut")
    piece.replace(path)
    out.rmdir()


__all__ = ["CheckedCapture", "check_capture", "cut_after"]
