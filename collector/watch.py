"""Watching a live capture for requests: cut each one as its answer ends, and hand it on.

``echolab classify --interface`` runs this: :class:`RequestWatcher` starts the
capture engine with a ring buffer (:class:`~echolab.collector.recorder.CaptureProcess`,
only the device's traffic, the oldest files deleted so a day-long watch never
fills the disk), follows the files it writes as they grow (:class:`RingFollower`,
complete pcapng blocks only, as :class:`~echolab.collector.live.LiveCapture`
reads one growing file, with the same pcapng walker) and cuts the device's
traffic into requests by the gap rule of ``catalog import --split gap=S``
(:mod:`echolab.captures.cut`, with the rules of :data:`echolab.captures.rules.RULES`):
a request ends when the device has been quiet for the gap; bursts smaller than
the keep-alive thresholds are set aside, and keep-alives joined to a request's
edges are left out as classify leaves them out. Each request's raw blocks become a
temporary pcapng for the feature extractor, and *on_request* gets a
:class:`LiveRequest` with its record; the latency is the time from the
request's last packet to the moment it was handed on.

The model is the caller's (the collector layer does not import the
comparison): *predict* maps feature records to ``(labels, probabilities)``,
as ``TrainedModel.predict`` does.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from echolab.captures.pcapng import EPB, IDB, OPB, SHB, CaptureError, PcapngWalker
from echolab.captures.reader import T_DST, T_IP_LEN, T_SRC, T_TS, ReadStats, parse_addr
from echolab.captures.rules import RULES, trim_edges
from echolab.collector.live import walked_packets
from echolab.errors import EcholabError

POLL_S = 0.05
RING = (10_000, 20)  # 10 MB files, at most 20 of them
DELAY_WINDOW = 200  # packets whose delay into the file is remembered


class WatchError(EcholabError):
    """A live capture cannot be watched (engine failed, unreadable ring buffer)."""


@dataclass
class LiveRequest:
    """One request seen live, and what the model says it was."""

    source: str
    start: float
    end: float  # epoch seconds of its last packet
    packets: int
    label: str = ""
    probability: float | None = None
    latency_s: float = 0.0  # from the last packet to the prediction
    error: str | None = None  # the request gave no features

    def to_json(self) -> dict[str, Any]:
        from datetime import datetime, timezone

        iso = lambda t: datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")  # noqa: E731
        return {"source": self.source, "start": iso(self.start), "end": iso(self.end), "label": self.label,
                "probability": None if self.probability is None else round(self.probability, 4),
                "latency_s": round(self.latency_s, 3)}


class RingFollower:
    """Complete pcapng blocks of the files a ring buffer writes, in order, as they are written.

    The files are ``STEM_NNNNN_*.pcapng`` in *folder* (dumpcap's ring names);
    a file is left for the next once a newer one exists and nothing more can
    be read from it. :meth:`read` gives ``(block type, block bytes, packet)``
    (:func:`~echolab.collector.live.walked_packets`).
    """

    def __init__(self, folder: Path, stem: str):
        self.folder, self.stem = Path(folder), stem
        self._pattern = re.compile(re.escape(stem) + r"_(\d+)_.*\.pcapng$")
        self._current: Path | None = None
        self._walker: PcapngWalker | None = None
        self._stats = ReadStats()
        self.files_read = 0

    def _files(self) -> list[Path]:
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := self._pattern.match(p.name))]
        return [p for _, p in sorted(found)]

    def read(self) -> list[tuple[int, bytes, tuple | None]]:
        blocks: list[tuple[int, bytes, tuple | None]] = []
        while True:
            files = self._files()
            if self._current is None:
                if not files:
                    return blocks
                self._start(files[0])
            blocks += self._read_current()
            later = [p for p in files if p.name > self._current.name]
            if not later:
                return blocks
            blocks += self._read_current()  # what was written before the engine moved on
            self._start(later[0])

    def _start(self, path: Path) -> None:
        self._current, self._walker = path, PcapngWalker(path, growing=True)
        self.files_read += 1

    def _read_current(self) -> list[tuple[int, bytes, tuple | None]]:
        assert self._current is not None and self._walker is not None
        try:
            with open(self._current, "rb") as fh:
                return list(walked_packets(self._walker, fh, self._stats))
        except FileNotFoundError:  # the ring deleted it before we got there
            return []
        except CaptureError as exc:
            raise WatchError(str(exc)) from exc


@dataclass
class _Burst:
    headers: list[bytes]
    blocks: list[bytes] = field(default_factory=list)
    first_us: int = 0
    last_us: int = 0
    packets: int = 0
    size: int = 0
    ts_us: list[int] = field(default_factory=list)
    ip_len: list[int] = field(default_factory=list)


class RequestWatcher:
    """Cuts a live stream of the device's packets into requests and classifies each as it ends."""

    def __init__(self, device_ip: str, predict: Callable[[Sequence[Any]], tuple[list[str], list[Any]]], *,
                 gap_s: float = RULES.gap_s, min_packets: int = RULES.min_packets,
                 min_bytes: int = RULES.min_bytes, source: str = "live",
                 on_request: Callable[[LiveRequest], None] | None = None):
        self.device_ip, self.predict, self.source = device_ip, predict, source
        self.gap_us = round(gap_s * 1e6)
        self.min_packets, self.min_bytes = min_packets, min_bytes
        self.on_request = on_request or (lambda r: None)
        self._device = parse_addr(device_ip)
        self._headers: list[bytes] = []
        self._now = 0.0
        self._burst: _Burst | None = None
        self.requests: list[LiveRequest] = []
        self.set_aside = 0
        self.packets = 0
        #: How late packets reach the file (the engine writes in batches): the largest of the recent
        #: delays, so a quiet file is not taken for a quiet device.
        self._delays: deque[float] = deque(maxlen=DELAY_WINDOW)

    def feed(self, blocks: Sequence[tuple[int, bytes, tuple | None]], now: float | None = None) -> None:
        """Take walked blocks in file order (:meth:`RingFollower.read`), read at *now*."""
        self._now = time.time() if now is None else now
        for btype, block, pkt in blocks:
            if btype == SHB:
                self._headers = [block]
            elif btype == IDB:
                self._headers.append(block)
            elif btype == EPB or btype == OPB:
                self._packet(block, pkt)

    def _packet(self, block: bytes, pkt: tuple | None) -> None:
        if pkt is None or (pkt[T_SRC] != self._device and pkt[T_DST] != self._device):
            return
        self.packets += 1
        ts = pkt[T_TS]
        self._delays.append(max(self._now - ts / 1e6, 0.0))
        if self._burst is not None and ts - self._burst.last_us > self.gap_us:
            self._close()
        if self._burst is None:
            self._burst = _Burst(list(self._headers), first_us=ts)
        b = self._burst
        b.blocks.append(block)
        b.ts_us.append(ts)
        b.ip_len.append(pkt[T_IP_LEN])
        b.last_us, b.packets, b.size = max(b.last_us, ts), b.packets + 1, b.size + pkt[T_IP_LEN]

    def tick(self, now: float | None = None) -> None:
        """Close the current request when the device has been quiet for the gap (wall clock)."""
        now = time.time() if now is None else now
        if self._burst is not None and now * 1e6 - self._burst.last_us > self.gap_us + self.delay_s * 1e6:
            self._close()

    @property
    def delay_s(self) -> float:
        """How long after a packet it may still reach the file (at most the rules' ``engine_file_delay_max_s``)."""
        return min(max(max(self._delays, default=0.0), RULES.engine_file_delay_s) + POLL_S,
                   RULES.engine_file_delay_max_s)

    def flush(self) -> None:
        """Close what is open (the watch is ending)."""
        if self._burst is not None:
            self._close()

    def _close(self) -> None:
        from echolab.analysis.features.sets import FeatureError, extract_record

        b, self._burst = self._burst, None
        assert b is not None
        if not RULES.is_request(b.packets, b.size, min_packets=self.min_packets, min_bytes=self.min_bytes):
            self.set_aside += 1
            return
        lo, hi = trim_edges(np.asarray(b.ts_us), np.asarray(b.ip_len), min_packets=self.min_packets,
                            min_bytes=self.min_bytes, edge_gap_us=RULES.edge_gap_us(self.gap_us))
        if (lo, hi) != (0, b.packets):  # keep-alives joined to the request's edges (as classify leaves out)
            b.blocks, b.ts_us, b.ip_len = b.blocks[lo:hi], b.ts_us[lo:hi], b.ip_len[lo:hi]
            b.first_us, b.last_us, b.packets, b.size = min(b.ts_us), max(b.ts_us), hi - lo, sum(b.ip_len)
        req = LiveRequest(self.source, b.first_us / 1e6, b.last_us / 1e6, b.packets)
        with tempfile.NamedTemporaryFile(prefix="echolab-live-", suffix=".pcapng") as fh:
            fh.write(b"".join(b.headers) + b"".join(b.blocks))
            fh.flush()
            try:
                record = extract_record(fh.name, self.device_ip)
            except FeatureError as exc:
                req.error = str(exc)
                record = None
        if record is not None:
            labels, probs = self.predict([record])
            req.label, req.probability = labels[0], probs[0]
        req.latency_s = time.time() - req.end
        self.requests.append(req)
        self.on_request(req)


def watch_interface(interface: str, device_ip: str, predict: Callable[[Sequence[Any]], tuple[list[str], list[Any]]],
                    *, gap_s: float = RULES.gap_s, min_packets: int = RULES.min_packets,
                    min_bytes: int = RULES.min_bytes, prefix: Sequence[str] = (),
                    tool: str = "dumpcap", ring: tuple[int, int] = RING, folder: Path | str | None = None,
                    on_request: Callable[[LiveRequest], None] | None = None,
                    on_start: Callable[[], None] | None = None,
                    should_stop: Callable[[], bool] = lambda: False) -> RequestWatcher:
    """Capture *interface* (only *device_ip*'s traffic) into a ring buffer and classify each request live.

    Runs until *should_stop* says so or Ctrl-C (KeyboardInterrupt ends the
    watch quietly); returns the watcher with every request it saw.
    """
    from echolab.collector.recorder import CaptureProcess

    watcher = RequestWatcher(device_ip, predict, gap_s=gap_s, min_packets=min_packets, min_bytes=min_bytes,
                             source=interface, on_request=on_request)
    with tempfile.TemporaryDirectory(prefix="echolab-watch-") as tmp:
        where = Path(folder) if folder is not None else Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        cap = CaptureProcess.start(where / "live.pcapng", interface, f"host {device_ip}", prefix=prefix, tool=tool,
                                   ring=ring)
        follower = RingFollower(where, "live")
        if on_start is not None:
            on_start()
        try:
            while not should_stop():
                if not cap.alive:
                    raise WatchError(f"{tool} stopped capturing on {interface}")
                watcher.feed(follower.read())
                watcher.tick()
                time.sleep(POLL_S)
        except KeyboardInterrupt:
            pass
        finally:
            cap.stop()
        watcher.feed(follower.read())
        watcher.flush()
    return watcher


__all__ = ["LiveRequest", "RING", "RequestWatcher", "RingFollower", "WatchError", "watch_interface"]
