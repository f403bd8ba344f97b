"""The simulated Echo: one process inside the echo namespace.

It keeps a long-lived TLS connection to the voice service (reconnecting if it
drops) and sends keep-alive pings while idle. It "hears" through a control
socket (a unix socket in the run directory, reachable from outside the
namespace): :class:`echolab.collector.sim.sink.SimulatedSink` tells it a clip's length
and the prompt's class (standing in for speech recognition), and the Echo
streams the utterance to the voice service in paced chunks while the clip
"plays". It then plays the answer (and, for music, fetches the sample from
the music service over a new TLS connection) and reports itself busy until
playback is over.

Control protocol: one JSON object per line, one reply line per request.
``{"op": "status"}`` and ``{"op": "request", "label": ..., "duration_s": ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import ssl
import time
from pathlib import Path
from typing import Any

from echolab.collector.sim import protocol as p
from echolab.collector.sim.model import upload_bytes, upload_chunks, upload_s
from echolab.collector.sim.params import SimParams, load_params
from echolab.collector.sim.shaping import Shaper, cells_reader, shaper

#: A request with no answer after this many real seconds (scaled) is given up.
REQUEST_TIMEOUT_S = 180.0


class EchoBase:
    """What both simulated Echos share (this module's and replay mode's): the long-lived voice
    connection, keep-alives while idle, the state the control socket reports, and its protocol.

    A subclass says what it does on connecting (:meth:`on_connected`), with what the voice
    service sends (:meth:`read_loop`), how it pings (:meth:`ping`), which requests it refuses
    (:meth:`refuse`) and how it starts one (:meth:`begin`).
    """

    replaying = False  # said in the status, so a caller knows which Echo answers

    def __init__(self, args: argparse.Namespace, params: SimParams) -> None:
        self.args = args
        self.params = params
        self.speed = float(args.speed)
        self.ctx = ssl.create_default_context(cafile=args.cafile)
        self.writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()
        self.busy = False
        self.request_id = 0
        self.requests_done = 0
        self.connections = 0
        self.last_error: str | None = None
        self.rng = random.Random(args.seed)
        self.defense: str | None = getattr(args, "defense", None)  # a live defense's spec (shaping)
        self.tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def status(self) -> dict[str, Any]:
        out = {"busy": self.busy, "connected": self.connected.is_set(), "request_id": self.request_id,
               "requests_done": self.requests_done, "connections": self.connections,
               "last_error": self.last_error, "pid": os.getpid(), "speed": self.speed}
        return {**out, "replay": True} if self.replaying else out

    # --- the long-lived voice connection -------------------------------------------------
    async def voice_loop(self) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_connection(
                    self.args.voice_ip, self.args.port, ssl=self.ctx, server_hostname="voice.echolab.test")
                writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                reader = cells_reader(reader, self.defense, self.tasks)
                writer = shaper(writer, self.defense, sign=1, side="echo", seed=self.rng.getrandbits(32),
                                run_dir=getattr(self.args, "run_dir", None))
                self.writer = writer
                self.connections += 1
                await self.on_connected()
                self.connected.set()
                self.last_error = None
                await self.read_loop(reader)
            except (OSError, ssl.SSLError, asyncio.IncompleteReadError, ValueError) as exc:
                self.last_error = f"voice connection: {exc!r}"
            if isinstance(self.writer, Shaper):
                self.writer.stop()
            self.connected.clear()
            self.writer = None
            await asyncio.sleep(1.0)

    async def on_connected(self) -> None:
        """Called once a connection is made, before the Echo counts as connected."""

    def exchange(self, starts: bool) -> None:
        """A request's exchange starts (or is over): a live defense shapes it (``shaping.Shaper``)."""
        if isinstance(self.writer, Shaper):
            self.writer.begin() if starts else self.writer.end()

    async def read_loop(self, reader: asyncio.StreamReader) -> None:
        """Read what the voice service sends until the connection ends (default: drop it)."""
        while await reader.read(65536):
            pass

    async def keepalive_loop(self) -> None:
        ka = self.params.keepalive
        while True:
            wait = ka["interval_s"] + self.rng.uniform(-ka["jitter_s"], ka["jitter_s"])
            await asyncio.sleep(max(wait, 0.5) / self.speed)
            if self.connected.is_set() and not self.busy:
                try:
                    await self.ping()
                except (OSError, ssl.SSLError) as exc:
                    self.last_error = f"keep-alive: {exc!r}"

    async def ping(self) -> None:
        raise NotImplementedError

    # --- the control socket ------------------------------------------------------------
    def refuse(self, msg: dict[str, Any]) -> str | None:
        """Why a request cannot be taken, beyond busy and disconnected (None: it can)."""
        return None

    def begin(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Start request ``self.request_id`` (already counted, the Echo already busy); what the reply adds."""
        raise NotImplementedError

    def control_op(self, msg: dict[str, Any]) -> dict[str, Any]:
        op = msg.get("op")
        if op == "status":
            return {"ok": True, **self.status()}
        if op == "request":
            if self.busy:
                return {"ok": False, "error": "busy", **self.status()}
            refused = self.refuse(msg)
            if refused:
                return {"ok": False, "error": refused}
            if not self.connected.is_set():
                return {"ok": False, "error": "not connected to the voice service", **self.status()}
            self.request_id += 1
            self.busy = True
            added = self.begin(msg)
            return {"ok": True, "request_id": self.request_id, **added, **self.status()}
        return {"ok": False, "error": f"unknown op {op!r}"}

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await p.answer_control(reader, writer, self.control_op)


class Echo(EchoBase):
    """The parametric Echo: streams the utterance in paced chunks, plays the drawn answer."""

    def __init__(self, args: argparse.Namespace, params: SimParams) -> None:
        super().__init__(args, params)
        self.lock = asyncio.Lock()
        self.speech_first: float | None = None

    async def send(self, data: bytes) -> None:
        async with self.lock:
            if self.writer is None:
                raise ConnectionError("not connected to the voice service")
            self.writer.write(data)
            await self.writer.drain()

    async def on_connected(self) -> None:
        await self.send(p.json_frame(p.HELLO, {"device": "echolab-sim-echo"}, 500))

    async def read_loop(self, reader: asyncio.StreamReader) -> None:
        while True:
            kind, payload = await p.read_frame(reader)
            if kind == p.SPEECH and self.busy and self.speech_first is None:
                self.speech_first = time.monotonic()
            elif kind == p.SPEECH_END and self.busy:
                self.spawn(self.finish(p.parse_json(payload)))

    async def ping(self) -> None:
        await self.send(p.sized_frame(p.PING, int(self.params.keepalive["ping_bytes"])))

    # --- one request ------------------------------------------------------------------
    async def request(self, label: str, duration_s: float) -> None:
        rid = self.request_id
        start = time.monotonic()
        try:
            self.exchange(True)
            await self.send(p.json_frame(p.REQUEST, {"request_id": rid, "label": label},
                                         int(self.params.upload["header_bytes"])))
            for offset, size in upload_chunks(duration_s, self.params):
                delay = start + offset / self.speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self.send(p.sized_frame(p.AUDIO, size + p.HEADER.size))
            delay = start + upload_s(duration_s, self.params) / self.speed - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.send(p.frame(p.REQUEST_END, b""))
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            self.last_error = f"request {rid}: {exc!r}"
            self.exchange(False)
            self.busy = False
            return
        await asyncio.sleep(REQUEST_TIMEOUT_S / self.speed)
        if self.busy and self.request_id == rid:
            self.last_error = f"request {rid}: no answer from the voice service"
            self.exchange(False)
            self.busy = False

    async def fetch_music(self, music: dict[str, Any]) -> None:
        reader, writer = await asyncio.open_connection(
            music["host"], int(music["port"]), ssl=self.ctx, server_hostname=music.get("server_name"))
        reader = cells_reader(reader, self.defense, self.tasks)
        writer = shaper(writer, self.defense, sign=1, side="echo-music", seed=self.rng.getrandbits(32), run_dir=None)
        try:
            writer.write(p.json_frame(p.STREAM_REQUEST, {"token": music["token"]},
                                      int(self.params.music["request_bytes"])))
            await writer.drain()
            while True:
                try:
                    await p.read_frame(reader)
                except asyncio.IncompleteReadError:
                    break
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass

    async def finish(self, end: dict[str, Any]) -> None:
        """Play the answer (and the music sample), then report playback done."""
        rid = self.request_id
        now = time.monotonic()
        play_end = (self.speech_first or now) + float(end.get("speech_s", 0)) / self.speed
        music = end.get("music")
        try:
            if music:
                stream_start = time.monotonic()
                await self.fetch_music(music)
                play_end = max(play_end, stream_start + float(music.get("music_s", 0)) / self.speed)
            delay = play_end - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.send(p.json_frame(p.EVENT, {"request_id": rid, "event": "PlaybackFinished"},
                                         int(self.params.speech["event_bytes"])))
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            self.last_error = f"request {rid} playback: {exc!r}"
        finally:
            self.exchange(False)
            if self.request_id == rid:
                self.requests_done += 1
                self.busy = False

    def begin(self, msg: dict[str, Any]) -> dict[str, Any]:
        duration = float(msg.get("duration_s", 0.0))
        self.speech_first = None
        self.spawn(self.request(str(msg.get("label", "")), duration))
        return {"upload_bytes": upload_bytes(duration, self.params)}


async def serve(echo: Any, args: argparse.Namespace, mode: str = "") -> None:
    """Run *echo* (this module's :class:`Echo`, or replay mode's) until stopped: its control
    socket, its voice connection and its keep-alives."""
    control_path = Path(args.control)
    control_path.unlink(missing_ok=True)
    server = await asyncio.start_unix_server(echo.control, path=str(control_path))
    os.chmod(control_path, 0o660)
    print(f"echo: control {control_path} voice {args.voice_ip}:{args.port} speed {args.speed}{mode}", flush=True)
    echo.spawn(echo.voice_loop())
    echo.spawn(echo.keepalive_loop())
    async with server:
        await server.serve_forever()


async def run(args: argparse.Namespace) -> None:
    await serve(Echo(args, load_params(args.params)), args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m echolab.collector.sim.echo",
                                     description="The simulated Echo (run inside the echo namespace).")
    parser.add_argument("--control", required=True, help="unix socket path for SimulatedSink")
    parser.add_argument("--voice-ip", required=True)
    parser.add_argument("--port", type=int, default=443)
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--params", default=None)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--replay", default=None, help="recordings to replay (replay mode)")
    parser.add_argument("--run-dir", default=None, help="where replay mode logs each replayed request "
                                                        "(and a live defense each exchange)")
    parser.add_argument("--defense", default=None, help="a live defense's spec (echolab.collector.sim.shaping)")
    args = parser.parse_args(argv)
    try:
        if args.replay:
            from echolab.collector.sim.replay import run_echo

            asyncio.run(run_echo(args))
        else:
            asyncio.run(run(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
