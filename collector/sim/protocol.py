"""The simulated Echo and cloud's application framing, carried inside TLS.

A frame is a 1-byte type, a 4-byte big-endian length and a payload. Control
frames carry JSON; audio frames carry filler bytes of the planned size. None
of it is visible on the wire (TLS encrypts it); only its sizes and timing are.

With a live defense on (:mod:`echolab.collector.sim.shaping`), the frame
stream travels in *cells*, one a TLS record: a :data:`CELL` header (real
bytes, padding bytes), that many bytes of the frame stream, then padding the
receiver drops. A dummy cell carries no real byte. Both ends of every
connection of a defended lab speak cells; an undefended lab writes frames
straight into TLS, as before.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
from typing import Any, Callable

HELLO = 1  # Echo -> voice: device registration after connecting
PING = 2  # Echo -> voice: idle keep-alive
PONG = 3  # voice -> Echo
REQUEST = 4  # Echo -> voice: request metadata (JSON: label, request id)
AUDIO = 5  # Echo -> voice: utterance audio chunk
REQUEST_END = 6  # Echo -> voice: end of speech detected
SPEECH = 7  # voice -> Echo: spoken answer audio record
SPEECH_END = 8  # voice -> Echo: answer done (JSON: speech_s, music directive)
EVENT = 9  # Echo -> voice: playback finished event
EVENT_ACK = 10  # voice -> Echo
STREAM_REQUEST = 11  # Echo -> music: fetch the sample (JSON)
STREAM = 12  # music -> Echo: sample audio record

HEADER = struct.Struct("!BI")
#: TLS 1.3 application data: at most 16384 bytes per record, each with a 5-byte header, the inner
#: content type and a 16-byte AEAD tag on the wire.
MAX_RECORD = 16384
TLS_RECORD_OVERHEAD = 22
MAX_FRAME = 1 << 24
#: A cell's header: bytes of the frame stream it carries, then bytes of padding after them.
CELL = struct.Struct("!HH")
#: The most a cell (header, real bytes and padding) may hold: one TLS record's plaintext.
MAX_CELL = MAX_RECORD


def frame(kind: int, payload: bytes) -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def filler(size: int) -> bytes:
    """Incompressible bytes of *size* (what encrypted audio looks like anyway)."""
    return os.urandom(max(size, 0))


def json_frame(kind: int, obj: dict[str, Any], pad_to: int = 0) -> bytes:
    """A JSON frame padded with spaces to about *pad_to* bytes of payload."""
    body = json.dumps(obj).encode()
    if len(body) < pad_to:
        body += b" " * (pad_to - len(body))
    return frame(kind, body)


def sized_frame(kind: int, size: int) -> bytes:
    """A frame of filler whose total length (header included) is *size*."""
    return frame(kind, filler(size - HEADER.size))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one frame; raises asyncio.IncompleteReadError at end of stream."""
    header = await reader.readexactly(HEADER.size)
    kind, length = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ValueError(f"frame of {length} bytes is too large")
    return kind, await reader.readexactly(length)


def cell(real: bytes, pad: int) -> bytes:
    """One cell: *real* bytes of the frame stream, then *pad* bytes the receiver drops."""
    return CELL.pack(len(real), pad) + real + bytes(pad)


async def read_cells(raw: asyncio.StreamReader, out: asyncio.StreamReader) -> None:
    """Feed the real bytes of the cells read from *raw* into *out* (padding and dummies dropped) until it ends."""
    try:
        while True:
            real, pad = CELL.unpack(await raw.readexactly(CELL.size))
            data = await raw.readexactly(real + pad)
            if real:
                out.feed_data(data[:real])
    except asyncio.IncompleteReadError:
        out.feed_eof()
    except Exception as exc:  # the connection broke: the reader of *out* hears it
        out.set_exception(exc)


def parse_json(payload: bytes) -> dict[str, Any]:
    return json.loads(payload.decode() or "{}")


async def answer_control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         handle: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Serve one request on a unix control socket: a JSON line in, ``handle``'s JSON reply out."""
    try:
        line = await reader.readline()
        try:
            reply = handle(json.loads(line or b"{}"))
        except (ValueError, TypeError) as exc:
            reply = {"ok": False, "error": f"bad control message: {exc}"}
        writer.write(json.dumps(reply).encode() + b"\n")
        await writer.drain()
    finally:
        writer.close()
