"""Recorded Echo requests, read from one-request captures, for the simulated lab to replay.

A :class:`Recording` is what one request's capture says each side sent: the
TCP payload bytes of the Echo and of the cloud, in order, with their times,
grouped into writes (segments of one direction less than ``WRITE_GAP_S``
apart make one write). Retransmitted bytes are counted once. The request
itself runs from the first to the last packet carrying more than a
keep-alive's payload (:attr:`echolab.captures.rules.TrafficRules.keepalive_payload_bytes`), so it
holds the pauses inside the answer and the post-answer upload; the small
packets before and after it are the Echo's keep-alives, whose sizes the
replaying Echo reuses while idle.

Every TCP connection of the Echo in the capture is replayed on the lab's one
long-lived voice connection (a second connection, such as a music stream, is
not reproduced as its own connection). UDP (DNS) is not replayed.

Sources: a folder of labelled one-request captures (one sub-folder per class,
named by the class) or a catalog campaign (its good captures and their
labels and device addresses).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from echolab.captures.reader import CaptureError, read_packets
from echolab.collector.sim.errors import SimError
from echolab.captures.rules import RULES

#: Segments of one direction closer than this are written by the replay as one write.
WRITE_GAP_S = 0.002
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")


class RecordingError(SimError):
    """A capture or a source of recordings cannot be replayed."""


@dataclass(frozen=True)
class Recording:
    """One recorded request: ``events`` are ``(offset_s, "up" | "down", bytes)``, offsets from its start."""

    id: str
    label: str
    source: str
    device_ip: str
    events: list[tuple[float, str, int]]
    keepalive_up: list[int] = field(default_factory=list)
    keepalive_down: list[int] = field(default_factory=list)

    @property
    def bytes_up(self) -> int:
        return sum(n for _, d, n in self.events if d == "up")

    @property
    def bytes_down(self) -> int:
        return sum(n for _, d, n in self.events if d == "down")

    @property
    def duration_s(self) -> float:
        return self.events[-1][0] if self.events else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Recording":
        return cls(**{**raw, "events": [tuple(e) for e in raw["events"]]})


def guess_device(path: Path) -> str:
    """The Echo of a capture: the end of its busiest TCP connection that does not use the lower port."""
    flows: dict[tuple[str, int, str, int], int] = {}
    for p in read_packets(path):
        if p.proto != 6:
            continue
        a, b = (p.src, p.sport), (p.dst, p.dport)
        key = (*min(a, b), *max(a, b))
        flows[key] = flows.get(key, 0) + p.payload_len
    if not flows:
        raise RecordingError(f"{path} holds no TCP traffic to replay")
    ip1, port1, ip2, port2 = max(flows, key=flows.__getitem__)
    return ip1 if port1 > port2 else ip2


def _new_bytes(seen: dict[tuple, int], key: tuple, seq: int, length: int) -> int:
    """Bytes of a segment not sent before on its connection and direction (retransmissions count once)."""
    end = (seq + length) & 0xFFFFFFFF
    top = seen.get(key)
    if top is None:
        seen[key] = end
        return length
    ahead = (end - top) & 0xFFFFFFFF
    if ahead == 0 or ahead >= 1 << 31:  # nothing beyond what was seen
        return 0
    seen[key] = end
    return min(ahead, length)


def read_recording(path: Path | str, label: str, *, device_ip: str | None = None, rec_id: str | None = None,
                   keepalive_bytes: int = RULES.keepalive_payload_bytes) -> Recording:
    """The request recorded in the one-request capture at *path*."""
    path = Path(path)
    try:
        device = device_ip or guess_device(path)
        packets = [p for p in read_packets(path) if p.proto == 6 and device in (p.src, p.dst) and p.payload_len > 0]
    except CaptureError as exc:
        raise RecordingError(f"cannot read the recording {path}: {exc}") from exc
    seen: dict[tuple, int] = {}
    data: list[tuple[float, str, int]] = []
    for p in packets:
        n = _new_bytes(seen, (p.src, p.sport, p.dst, p.dport), p.seq, p.payload_len)
        if n:
            data.append((p.ts, "up" if p.src == device else "down", n))
    big = [i for i, (_, _, n) in enumerate(data) if n > keepalive_bytes]
    if not big:
        raise RecordingError(f"{path} holds no request: no packet of {device} carries more than "
                             f"{keepalive_bytes} bytes")
    first, last = big[0], big[-1]
    outside = data[:first] + data[last + 1:]
    t0 = data[first][0]
    events: list[list[Any]] = []
    for ts, direction, n in data[first:last + 1]:
        if events and events[-1][1] == direction and ts - events[-1][3] < WRITE_GAP_S:
            events[-1][2] += n
            events[-1][3] = ts
        else:
            events.append([round(ts - t0, 6), direction, n, ts])
    return Recording(
        id=rec_id or f"{label}/{path.name}", label=label, source=str(path), device_ip=device,
        events=[(e[0], e[1], e[2]) for e in events],
        keepalive_up=[n for _, d, n in outside if d == "up"],
        keepalive_down=[n for _, d, n in outside if d == "down"],
    )


def from_folder(folder: Path | str, *, device_ip: str | None = None) -> list[Recording]:
    """Every capture of *folder*/CLASS/*.pcap[ng], labelled by its sub-folder's name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RecordingError(f"{folder} is not a folder of recorded requests (one sub-folder per class)")
    out = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        for path in sorted(p for p in sub.iterdir() if p.suffix in CAPTURE_SUFFIXES):
            out.append(read_recording(path, sub.name, device_ip=device_ip))
    if not out:
        raise RecordingError(f"{folder} holds no captures in class sub-folders (CLASS/NAME.pcapng)")
    return out


def from_campaign(catalog: Any, name: str) -> list[Recording]:
    """The good captures of catalog campaign *name* (an echolab.db.catalog.Catalog), with their labels."""
    campaign = catalog.campaign(name)
    out = []
    for cap in catalog.captures(campaign=campaign.id, status="ok"):
        if cap.path is None:
            continue
        out.append(read_recording(catalog.lab.root / cap.path, cap.label, device_ip=cap.device_ip,
                                  rec_id=f"{campaign.name}/{cap.id}"))
    if not out:
        raise RecordingError(f"campaign {campaign.name} has no good captures to replay")
    return out


def from_source(source: str | Path, *, lab: Any = None, device_ip: str | None = None) -> list[Recording]:
    """A folder of labelled captures, or else the campaign of that name in *lab*'s catalog (a LabDir)."""
    if Path(source).is_dir():
        return from_folder(source, device_ip=device_ip)
    if lab is None:
        raise RecordingError(f"{source} is not a folder, and no lab was given to look it up as a campaign")
    from echolab.db.catalog import Catalog

    with Catalog.open(lab) as catalog:
        return from_campaign(catalog, str(source))


def classes(recordings: Iterable[Recording]) -> list[str]:
    return sorted({r.label for r in recordings})


def _text(recordings: Sequence[Recording]) -> str:
    return json.dumps([r.to_dict() for r in recordings])


def digest(recordings: Sequence[Recording]) -> str:
    """Which recordings (what ``sim up`` compares to leave a running lab as it is)."""
    return hashlib.sha256(_text(recordings).encode()).hexdigest()[:16]


def save(recordings: Sequence[Recording], path: Path) -> str:
    """Write the recordings as one JSON file; returns their digest."""
    path.write_text(_text(recordings))
    return digest(recordings)


def load(path: Path | str) -> list[Recording]:
    return [Recording.from_dict(raw) for raw in json.loads(Path(path).read_text())]
