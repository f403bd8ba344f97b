"""The simulated Alexa cloud: a voice service and a music service over TLS.

Runs as one process inside the cloud namespace (``python -m
echolab.collector.sim.cloud``), started by :func:`echolab.collector.sim.lab.up`. The voice
service holds the Echo's long-lived connection: it answers keep-alives, reads
each request's audio and, after a drawn think time, streams a spoken answer as
paced TLS records. For music it ends the preamble with a directive naming the
music service, which streams the sample over a new connection from its own
address. The music service's listening socket gets a small SO_RCVBUF, so the
windows it advertises toward the Echo are small (what the study saw).
Each drawn plan is appended to ``plans.jsonl`` in the run directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import socket
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from echolab.collector.sim import protocol as p
from echolab.collector.sim.model import ResponsePlan, draw_plan, paced_records
from echolab.collector.sim.params import SimParams, load_params
from echolab.collector.sim.shaping import Shaper, cells_reader, shaper


class Cloud:
    """State shared by the voice and music services of one cloud process."""

    def __init__(self, args: argparse.Namespace, params: SimParams) -> None:
        self.args = args
        self.params = params
        self.speed = float(args.speed)
        self.rng = np.random.default_rng(args.seed)
        self.pending: dict[str, ResponsePlan] = {}
        self.plans_log = Path(args.run_dir) / "plans.jsonl"
        self.defense: str | None = getattr(args, "defense", None)  # a live defense's spec (shaping)
        self.readers: set[asyncio.Task] = set()

    def shaped(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               side: str) -> tuple[asyncio.StreamReader, Any]:
        """The connection as the services use it: under a live defense, its cells' real bytes and a Shaper."""
        return (cells_reader(reader, self.defense, self.readers),
                shaper(writer, self.defense, sign=-1, side=side, seed=int(self.rng.integers(1 << 32)),
                       run_dir=self.args.run_dir))

    def _log_plan(self, meta: dict[str, Any], plan: ResponsePlan) -> None:
        record = {"t": time.time(), "request_id": meta.get("request_id"), "audio_bytes": meta.get("audio_bytes"),
                  **plan.to_dict()}
        with self.plans_log.open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    async def _paced(self, writer: asyncio.StreamWriter, kind: int, total: int, section: Any) -> None:
        start = time.monotonic()
        for offset, size in paced_records(total, section):
            delay = start + offset / self.speed - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(p.sized_frame(kind, size + p.HEADER.size))
            await writer.drain()

    async def respond(self, writer: asyncio.StreamWriter, meta: dict[str, Any], lock: asyncio.Lock) -> None:
        plan = draw_plan(str(meta.get("label", "")), self.params, self.rng)
        self._log_plan(meta, plan)
        await asyncio.sleep(plan.think_s / self.speed)
        async with lock:
            await self._paced(writer, p.SPEECH, plan.speech_bytes, self.params.speech)
            end: dict[str, Any] = {"request_id": meta.get("request_id"), "speech_s": plan.speech_s}
            if plan.has_music:
                token = secrets.token_hex(8)
                self.pending[token] = plan
                end["music"] = {"host": self.args.music_ip, "port": self.args.port, "token": token,
                                "music_s": plan.music_s, "server_name": "music.echolab.test"}
            writer.write(p.json_frame(p.SPEECH_END, end, int(self.params.speech["directive_bytes"])))
            await writer.drain()

    async def voice(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reader, writer = self.shaped(reader, writer, "cloud")
        lock = asyncio.Lock()
        meta: dict[str, Any] = {}
        tasks: set[asyncio.Task] = set()
        try:
            while True:
                kind, payload = await p.read_frame(reader)
                if kind in (p.PING, p.HELLO):
                    async with lock:
                        writer.write(p.sized_frame(p.PONG, int(self.params.keepalive["pong_bytes"])))
                        await writer.drain()
                elif kind == p.REQUEST:
                    if isinstance(writer, Shaper):
                        writer.begin()
                    meta = p.parse_json(payload)
                    meta["audio_bytes"] = 0
                elif kind == p.AUDIO:
                    meta["audio_bytes"] = meta.get("audio_bytes", 0) + len(payload)
                elif kind == p.REQUEST_END:
                    task = asyncio.create_task(self.respond(writer, dict(meta), lock))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                elif kind == p.EVENT:
                    async with lock:
                        writer.write(p.sized_frame(p.EVENT_ACK, int(self.params.keepalive["pong_bytes"])))
                        await writer.drain()
                    if isinstance(writer, Shaper):
                        writer.end()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, ValueError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            writer.close()

    async def music(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reader, writer = self.shaped(reader, writer, "cloud-music")
        try:
            kind, payload = await p.read_frame(reader)
            plan = self.pending.pop(str(p.parse_json(payload).get("token")), None) if kind == p.STREAM_REQUEST else None
            if plan is not None:
                if isinstance(writer, Shaper) and writer.paces:
                    writer.begin()  # the stream goes out at the constant rate too (FRONT's dummies: voice only)
                await self._paced(writer, p.STREAM, plan.music_bytes, self.params.music)
                if isinstance(writer, Shaper):
                    await writer.finish()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, ValueError):
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, ssl.SSLError):
                pass


def listening_socket(ip: str, port: int, rcvbuf: int) -> socket.socket:
    """A listening TCP socket; a non-zero *rcvbuf* is set before listen()."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((ip, port))
    sock.listen(16)
    sock.setblocking(False)
    return sock


def _nodelay(handler):
    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await handler(reader, writer)

    return wrapped


async def serve(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    cloud = Cloud(args, params)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    voice_sock = listening_socket(args.voice_ip, args.port, int(params.windows["voice_rcvbuf"]))
    if args.replay:
        from echolab.collector.sim.replay import run_cloud

        await run_cloud(args, voice_sock, ctx)
        return
    music_sock = listening_socket(args.music_ip, args.port, int(params.windows["music_rcvbuf"]))
    voice = await asyncio.start_server(_nodelay(cloud.voice), sock=voice_sock, ssl=ctx)
    music = await asyncio.start_server(_nodelay(cloud.music), sock=music_sock, ssl=ctx)
    print(f"cloud: voice {args.voice_ip}:{args.port} music {args.music_ip}:{args.port} speed {args.speed}", flush=True)
    async with voice, music:
        await asyncio.gather(voice.serve_forever(), music.serve_forever())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m echolab.collector.sim.cloud",
                                     description="The simulated Alexa cloud (run inside the cloud namespace).")
    parser.add_argument("--voice-ip", required=True)
    parser.add_argument("--music-ip", required=True)
    parser.add_argument("--port", type=int, default=443)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--params", default=None)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--replay", default=None, help="recordings to replay (replay mode)")
    parser.add_argument("--defense", default=None, help="a live defense's spec (echolab.collector.sim.shaping)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
