"""Replay mode of the simulated lab: the Echo and the cloud replay recorded requests.

``echolab sim up --replay SOURCE`` starts the same two processes as the
parametric lab, over the same namespaces, real TCP and real TLS, but each
replays its side of recorded requests (:mod:`echolab.collector.sim.recordings`)
instead of drawing answers from distributions:

* the Echo keeps one long-lived TLS connection to the voice service and,
  while idle, sends keep-alives of the recorded sizes (the cloud answers each
  with a recorded reply size);
* when the sink plays a prompt of class C, the Echo takes the next recording
  of class C (round robin), tells the cloud through the cloud's control socket
  which recording to play and when it starts, and both sides write their
  recorded bytes at their recorded offsets (divided by the speed factor):
  the upload, the answer with its pauses, the post-answer upload;
* each write of n recorded bytes becomes n minus the TLS record overhead of
  application data, so the bytes on the wire match the recorded ones.

The Echo appends one line per replayed request to ``replay.jsonl`` in the run
directory: the recording, its class and source, when its first write began
and when its last write left (wall-clock seconds), and the recorded bytes
each way. That is ground truth for tests; the collector never reads it.
Nothing here tells the collector when an answer is over: it must see that in
the traffic, as on a real Echo.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import ssl
import time
from pathlib import Path
from typing import Any

from echolab.collector.sim import protocol as p
from echolab.collector.sim.echo import EchoBase
from echolab.collector.sim.params import SimParams, load_params
from echolab.collector.sim.recordings import Recording, load
from echolab.captures.rules import RULES

#: The request starts this long after the Echo hears it (time to tell the cloud).
LEAD_S = 0.05
CLOUD_SOCKET = "cloud.sock"
REPLAY_LOG = "replay.jsonl"


def app_bytes(wire: int) -> int:
    """Application bytes whose TLS records carry *wire* bytes on the wire (at least 1)."""
    records = -(-wire // (p.MAX_RECORD + p.TLS_RECORD_OVERHEAD))
    return max(wire - records * p.TLS_RECORD_OVERHEAD, 1)


async def play_side(writer: asyncio.StreamWriter, events: list[tuple[float, str, int]], direction: str,
                    t0: float, speed: float) -> tuple[float | None, float | None, int]:
    """Write *direction*'s events at ``t0 + offset / speed``; returns (first, last) write times and bytes."""
    first = last = None
    sent = 0
    for offset, d, n in events:
        if d != direction:
            continue
        delay = t0 + offset / speed - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if first is None:
            first = time.time()
        size = app_bytes(n)
        writer.write(os.urandom(size))
        await writer.drain()
        sent += size
        last = time.time()
    return first, last, sent


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class ReplayEcho(EchoBase):
    """The Echo's side: keep-alives while idle, the upload of each replayed request."""

    replaying = True

    def __init__(self, args: argparse.Namespace, params: SimParams, recordings: list[Recording]) -> None:
        super().__init__(args, params)
        self.recordings = recordings
        self.run_dir = Path(args.run_dir)
        self.by_label: dict[str, list[int]] = {}
        for i, rec in enumerate(recordings):
            self.by_label.setdefault(rec.label, []).append(i)
        self.turn = {label: 0 for label in self.by_label}
        self.keepalives = [n for r in recordings for n in r.keepalive_up] or [int(params.keepalive["ping_bytes"])]

    async def ping(self) -> None:
        assert self.writer is not None
        self.writer.write(os.urandom(app_bytes(self.rng.choice(self.keepalives))))
        await self.writer.drain()

    async def cloud_call(self, message: dict[str, Any]) -> dict[str, Any]:
        reader, writer = await asyncio.open_unix_connection(str(self.run_dir / CLOUD_SOCKET))
        try:
            writer.write(json.dumps(message).encode() + b"\n")
            await writer.drain()
            return json.loads(await reader.readline() or b"{}")
        finally:
            writer.close()

    async def replay(self, rid: int, index: int) -> None:
        rec = self.recordings[index]
        t0 = time.time() + LEAD_S
        try:
            assert self.writer is not None
            cloud = asyncio.create_task(self.cloud_call({"op": "play", "index": index, "t0": t0,
                                                         "request_id": rid}))
            first, last, _ = await play_side(self.writer, rec.events, "up", t0, self.speed)
            reply = await cloud
            ends = [t for t in (last, reply.get("last")) if t is not None]
            starts = [t for t in (first, reply.get("first")) if t is not None]
            line = {"request_id": rid, "recording": rec.id, "index": index, "label": rec.label,
                    "source": rec.source, "began": min(starts), "ended": max(ends),
                    "bytes_up": rec.bytes_up, "bytes_down": rec.bytes_down}
            with (self.run_dir / REPLAY_LOG).open("a") as fh:
                fh.write(json.dumps(line) + "\n")
        except (OSError, ssl.SSLError, ValueError, AssertionError) as exc:
            self.last_error = f"request {rid}: {exc!r}"
        finally:
            self.requests_done += 1
            self.busy = False

    def refuse(self, msg: dict[str, Any]) -> str | None:
        label = str(msg.get("label", ""))
        if label not in self.by_label:
            return f"no recorded request of class {label!r} (recorded: {', '.join(sorted(self.by_label))})"
        return None

    def begin(self, msg: dict[str, Any]) -> dict[str, Any]:
        label = str(msg.get("label", ""))
        choices = self.by_label[label]
        index = choices[self.turn[label] % len(choices)]
        self.turn[label] += 1
        self.spawn(self.replay(self.request_id, index))
        return {"recording": self.recordings[index].id, "upload_bytes": self.recordings[index].bytes_up}


class ReplayCloud:
    """The voice service's side: replies to keep-alives, the answer of each replayed request."""

    def __init__(self, args: argparse.Namespace, params: SimParams, recordings: list[Recording]) -> None:
        self.args, self.params, self.recordings = args, params, recordings
        self.speed = float(args.speed)
        self.rng = random.Random(args.seed)
        self.replies = [n for r in recordings for n in r.keepalive_down]
        self.writer: asyncio.StreamWriter | None = None
        self.playing = 0

    async def voice(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _nodelay(writer)
        self.writer = writer
        try:
            while data := await reader.read(65536):
                if not self.playing and self.replies and not RULES.is_traffic(len(data)):
                    writer.write(os.urandom(app_bytes(self.rng.choice(self.replies))))
                    await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            if self.writer is writer:
                self.writer = None
            writer.close()

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            msg = json.loads(await reader.readline() or b"{}")
            reply: dict[str, Any] = {"ok": False, "error": "not connected"}
            if msg.get("op") == "play" and self.writer is not None:
                rec = self.recordings[int(msg["index"])]
                self.playing += 1
                try:
                    first, last, sent = await play_side(self.writer, rec.events, "down", float(msg["t0"]),
                                                        self.speed)
                    # Until the Echo's last write (its post-answer upload) nothing it sends is a keep-alive.
                    await asyncio.sleep(max(float(msg["t0"]) + rec.duration_s / self.speed - time.time(), 0))
                finally:
                    self.playing -= 1
                reply = {"ok": True, "first": first, "last": last, "sent": sent}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, ssl.SSLError, ValueError, KeyError) as exc:
            writer.write(json.dumps({"ok": False, "error": repr(exc)}).encode() + b"\n")
        finally:
            writer.close()


async def run_echo(args: argparse.Namespace) -> None:
    from echolab.collector.sim.echo import serve

    await serve(ReplayEcho(args, load_params(args.params), load(args.replay)), args, " replay")


async def run_cloud(args: argparse.Namespace, voice_sock: socket.socket, ctx: ssl.SSLContext) -> None:
    cloud = ReplayCloud(args, load_params(args.params), load(args.replay))
    control_path = Path(args.run_dir) / CLOUD_SOCKET
    control_path.unlink(missing_ok=True)
    control = await asyncio.start_unix_server(cloud.control, path=str(control_path))
    voice = await asyncio.start_server(cloud.voice, sock=voice_sock, ssl=ctx)
    print(f"cloud: voice {args.voice_ip}:{args.port} speed {args.speed} replay", flush=True)
    async with voice, control:
        await asyncio.gather(voice.serve_forever(), control.serve_forever())
