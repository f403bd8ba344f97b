"""Live defenses: the simulated Echo and cloud shape their real TLS connections as a defense would.

``echolab collect --defense SPEC`` (``sim up --defense SPEC``) starts both
simulated ends with the spec, the same spec strings and defaults as the trace
defenses on stored traffic (:mod:`echolab.analysis.defenses.registry` parses
them; nothing here is a second parser). Each connection's frame stream then
travels in cells, one a TLS record (:func:`echolab.collector.sim.protocol.cell`):
where a defense pads, the padding is in the cell and the receiver drops it;
where it sends a dummy, the cell carries no real byte. The real request and
answer arrive unchanged.

A :class:`Shaper` stands where the application wrote into TLS (the place the
household profiles' record sizes come from) and is duck-typed as the
``asyncio.StreamWriter`` it wraps. What each defense does live, with sizes in
IP packet bytes as the trace defenses count them (a cell of ``n`` real bytes
becomes a record of ``n + 4 + 22`` bytes, and a packet ``52`` bytes more when
the record has a segment of its own: IPv4, TCP and its timestamps option):

* ``mtu``, ``buckets``: every write is cut into pieces that fit the largest
  packet, each piece padded so its packet is the smallest size (bucket) that
  holds it. Pure ACKs are the kernel's and stay as they are.
* ``front``: at the start of each request, each side draws its dummy count
  from 1..n and its window from w and sends ``size``-byte dummy cells at
  Rayleigh(window) times from then; those still pending when the exchange is
  over are not sent (the trace defense keeps none past the capture's end).
* ``buflo``, ``tamaraw``: from the start of each request each side sends one
  fixed-size cell every interval (BuFLO: ``rho`` both ways; Tamaraw:
  ``rho_out`` from the Echo, ``rho_in`` from the cloud), real bytes queued
  until a cell takes them, dummies when the queue is empty, until the exchange
  is over and the queue empty and (BuFLO) ``tau`` seconds have passed or
  (Tamaraw) the side's cell count is a multiple of ``L``.

A request's exchange starts when the Echo sends the request (the cloud: when
it reads it) and is over when the Echo has sent its playback event (the cloud:
its acknowledgement); the music service's connection is one exchange of its
own. Writes outside an exchange (keep-alives) are padded by the padding
defenses and otherwise sent as they are. Times are the lab's seconds, the
captures' clock: a lab run ``--speed`` times faster shapes its compressed
traffic with the spec's times as they are, just as ``echolab defend`` reads a
compressed capture. Each side appends one line per exchange to
``defense.jsonl`` in the run directory (real and wire bytes, cells, dummies,
when its last real byte went out).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from echolab.analysis.defenses.registry import Defense, parse_defense
from echolab.analysis.defenses.trace import DefenseError
from echolab.collector.sim import protocol as p
from echolab.collector.sim.topology import MTU

#: The defenses the simulated lab can apply live, in the registry's order.
LIVE_DEFENSES = ("mtu", "buckets", "buflo", "tamaraw", "front")
#: Bytes an IP packet adds to the TLS record it carries: IPv4 (20), TCP (20) and its timestamps option (12).
PACKET_HEADERS = 52
#: Bytes a cell adds to its real bytes on the wire: its header and the TLS record's (5 + type + 16-byte tag).
CELL_OVERHEAD = p.CELL.size + p.TLS_RECORD_OVERHEAD
#: The smallest packet a cell can fill (one real byte), and the largest: the lab's links carry packets of at most
#: their MTU, and a larger record would be cut into several segments (no longer one packet a cell).
MIN_PACKET = PACKET_HEADERS + CELL_OVERHEAD + 1
MAX_PACKET = MTU
#: An exchange that never ends (a request given up) stops being shaped after this many seconds.
MAX_EXCHANGE_S = 300.0
DEFENSE_LOG = "defense.jsonl"


def live_defense(spec: str) -> Defense:
    """The defense of *spec*, checked to be one the simulated lab applies live; one-line DefenseError if not."""
    defense = parse_defense(spec)
    if defense.name not in LIVE_DEFENSES:
        raise DefenseError(f"the simulated lab cannot apply {defense.name} live (it can: {', '.join(LIVE_DEFENSES)}); "
                           f"'echolab defend --defense {defense.spec}' applies it to stored captures")
    for size in _packet_sizes(defense):
        if size < MIN_PACKET:
            raise DefenseError(f"{defense.name}: a live packet must be at least {MIN_PACKET} bytes (IP, TCP, TLS and "
                               f"cell headers and one byte), got {size}")
        if size > MAX_PACKET:
            raise DefenseError(f"{defense.name}: a live packet can be at most {MAX_PACKET} bytes (the simulated "
                               f"lab's MTU), got {size}")
    return defense


def _packet_sizes(defense: Defense) -> tuple[int, ...]:
    return {"mtu": lambda d: (d.mtu,), "buckets": lambda d: d.sizes, "buflo": lambda d: (d.d,),
            "tamaraw": lambda d: (d.size,), "front": lambda d: (d.size,)}[defense.name](defense)


def capacity(packet: int) -> int:
    """Real bytes a cell carries when its packet is *packet* bytes."""
    return packet - PACKET_HEADERS - CELL_OVERHEAD


def wire_bytes(real: int, pad: int) -> int:
    """IP bytes of a cell's packet (its record in a segment of its own)."""
    return real + pad + CELL_OVERHEAD + PACKET_HEADERS


class Shaper:
    """One side of one connection, writing its frame stream as cells shaped by *defense*.

    ``sign`` is 1 for the Echo (it models the device's packets), -1 for the
    cloud. :meth:`begin` and :meth:`end` bound a request's exchange;
    :meth:`finish` sends what is queued before a connection is closed.
    """

    def __init__(self, writer: asyncio.StreamWriter, defense: Defense, *, sign: int, side: str,
                 rng: np.random.Generator, log: Path | None = None) -> None:
        self.writer, self.defense, self.sign, self.side, self.rng, self.log = writer, defense, sign, side, rng, log
        self.queue = bytearray()
        self.task: asyncio.Task | None = None
        self.ending = asyncio.Event()
        self.stats: dict[str, Any] | None = None

    # --- the StreamWriter the simulated ends write to --------------------------------------
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.writer.get_extra_info(name, default)

    async def drain(self) -> None:
        await self.writer.drain()

    def close(self) -> None:
        self.stop()
        self.writer.close()

    async def wait_closed(self) -> None:
        await self.writer.wait_closed()

    def write(self, data: bytes) -> None:
        name = self.defense.name
        if self.stats is not None:
            self.stats["real_bytes"] += len(data)
            self.stats["last_write"] = time.monotonic()
        if name in ("buflo", "tamaraw") and self.task is not None and not self.task.done():
            self.queue += data
            return
        if name in ("mtu", "buckets"):
            top = capacity(self._sizes()[-1])
            for i in range(0, len(data), top):
                piece = data[i:i + top]
                self._send(piece, self._packet_for(len(piece)))
            return
        self._send_plain(data)

    def _send_plain(self, data: bytes) -> None:
        """*data* as it is, in cells of at most the largest cell's real bytes, without padding."""
        for i in range(0, len(data), p.MAX_CELL - p.CELL.size):
            piece = data[i:i + p.MAX_CELL - p.CELL.size]
            self._send(piece, wire_bytes(len(piece), 0))

    @property
    def paces(self) -> bool:
        """True for a constant-rate defense (every byte waits for a slot)."""
        return self.defense.name in ("buflo", "tamaraw")

    # --- exchanges ---------------------------------------------------------------------
    def begin(self) -> None:
        """A request's exchange starts now.

        One under way (a constant-rate side still sending its tail after the last request ended)
        carries the new request too: its schedule goes on until this exchange ends, so no byte of the
        new request leaves unshaped once the old schedule would have stopped. Its log line then counts both.
        """
        if self.stats is not None:
            self.ending.clear()
            return
        now = time.monotonic()
        self.stats = {"side": self.side, "defense": self.defense.spec, "start": now, "real_bytes": 0,
                      "wire_bytes": 0, "cells": 0, "dummies": 0, "last_write": None, "last_real_sent": None}
        self.ending = asyncio.Event()
        if self.defense.name == "front":
            self.task = asyncio.create_task(self._front(now))
        elif self.defense.name in ("buflo", "tamaraw"):
            self.task = asyncio.create_task(self._constant_rate(now))

    def end(self) -> None:
        """The exchange is over: pending dummies are dropped, a constant-rate side stops once its rule allows."""
        self.ending.set()
        if self.defense.name not in ("buflo", "tamaraw"):
            self.stop()
            self._log()

    async def finish(self) -> None:
        """End the exchange and wait until everything queued is on the wire."""
        self.end()
        if self.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.task), MAX_EXCHANGE_S)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
        await self.writer.drain()

    def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    # --- the defenses ------------------------------------------------------------------
    def _sizes(self) -> tuple[int, ...]:
        return (self.defense.mtu,) if self.defense.name == "mtu" else tuple(self.defense.sizes)

    def _packet_for(self, real: int) -> int:
        for size in self._sizes():
            if capacity(size) >= real:
                return size
        return self._sizes()[-1]

    def _send(self, real: bytes, packet: int) -> None:
        pad = max(0, packet - wire_bytes(len(real), 0))
        self.writer.write(p.cell(bytes(real), pad))
        if self.stats is not None:
            self.stats["wire_bytes"] += wire_bytes(len(real), pad)
            self.stats["cells"] += 1
            self.stats["dummies"] += 0 if real else 1
            if real:
                self.stats["last_real_sent"] = time.monotonic()

    async def _front(self, start: float) -> None:
        d = self.defense
        count = int(self.rng.integers(1, d.n + 1))
        window = float(self.rng.uniform(*d.w))
        for at in np.sort(self.rng.rayleigh(window, count)):
            delay = start + float(at) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._send(b"", d.size)
            await self.writer.drain()

    async def _constant_rate(self, start: float) -> None:
        d = self.defense
        if d.name == "buflo":
            interval, size = d.rho, d.d
        else:
            interval, size = (d.rho_out if self.sign > 0 else d.rho_in), d.size
        room = capacity(size)
        k = 0
        try:
            while True:
                ended = self.ending.is_set() and not self.queue
                if ended and (time.monotonic() - start >= d.tau if d.name == "buflo" else k % d.L == 0):
                    break
                if time.monotonic() - start > MAX_EXCHANGE_S:
                    break
                take = bytes(self.queue[:room])
                del self.queue[:room]
                self._send(take, size)
                await self.writer.drain()
                k += 1
                delay = start + k * interval - time.monotonic()  # slot k at k * interval, as the trace defense
                if delay > 0:
                    await asyncio.sleep(delay)
        finally:
            if self.queue:  # cut short (the connection closes): what is left goes out as it is
                left = bytes(self.queue)
                self.queue.clear()
                self._send_plain(left)
            self._log()

    def _log(self) -> None:
        stats, self.stats = self.stats, None
        if stats is None or self.log is None:
            return
        end = time.monotonic()
        stats["end"] = end
        stats["span_s"] = (stats["last_real_sent"] or stats["start"]) - stats["start"]
        stats["last_real_delay_s"] = max(0.0, (stats["last_real_sent"] or 0.0) - (stats["last_write"] or 0.0))
        try:
            with self.log.open("a") as fh:
                fh.write(json.dumps(stats) + "\n")
        except OSError:
            pass


def shaper(writer: asyncio.StreamWriter, spec: str | None, *, sign: int, side: str, seed: int | None,
           run_dir: str | Path | None) -> Any:
    """*writer* itself without a defense, else a :class:`Shaper` of *spec*."""
    if not spec:
        return writer
    log = Path(run_dir) / DEFENSE_LOG if run_dir else None
    return Shaper(writer, live_defense(spec), sign=sign, side=side, rng=np.random.default_rng(seed), log=log)


def cells_reader(raw: asyncio.StreamReader, spec: str | None, tasks: set[asyncio.Task]) -> asyncio.StreamReader:
    """*raw* itself without a defense, else a reader of the real bytes of the cells read from *raw*."""
    if not spec:
        return raw
    out = asyncio.StreamReader(limit=p.MAX_FRAME)
    task = asyncio.create_task(p.read_cells(raw, out))
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return out


def read_log(run_dir: Path | str) -> list[dict[str, Any]]:
    """Every exchange a defended lab's ends logged (``defense.jsonl``), in the order written."""
    path = Path(run_dir) / DEFENSE_LOG
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


__all__ = ["LIVE_DEFENSES", "Shaper", "capacity", "cells_reader", "live_defense", "read_log", "shaper"]
