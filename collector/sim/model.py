"""What the simulated cloud does for one request: one draw, two backends.

:func:`draw_plan` draws a request's think time, answer length and (for music)
stream length from the class's distributions; :func:`paced_records` turns a
byte count into a send schedule of records. The live cloud process sleeps on
these schedules and writes real TLS records; the synthetic writer turns the
same schedules into packets. Offsets are in real (unscaled) seconds; callers
divide them by the speed factor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from echolab.collector.sim.params import SimParams


@dataclass(frozen=True)
class ResponsePlan:
    """One request's drawn response. Byte counts are never speed-scaled."""

    label: str
    think_s: float
    speech_s: float
    speech_bytes: int
    music_s: float = 0.0
    music_bytes: int = 0

    @property
    def has_music(self) -> bool:
        return self.music_bytes > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def draw_plan(label: str, params: SimParams, rng: np.random.Generator) -> ResponsePlan:
    """Draw the response to one request of class *label*."""
    model = params.for_label(label)
    think = round(model.think_s.draw(rng), 4)
    speech = round(model.speech_s.draw(rng), 4)
    music = round(model.music_s.draw(rng), 4) if model.music_s is not None else 0.0
    return ResponsePlan(
        label=label,
        think_s=think,
        speech_s=speech,
        speech_bytes=int(speech * params.speech["bytes_per_s"]),
        music_s=music,
        music_bytes=int(music * params.music["bytes_per_s"]),
    )


def upload_s(duration_s: float, params: SimParams) -> float:
    """How long the Echo streams a prompt of *duration_s*: the prompt, then until the cloud hears it ended."""
    return max(duration_s, 0.0) + params.upload["tail_s"]


def upload_bytes(duration_s: float, params: SimParams) -> int:
    """Bytes of the utterance upload: proportional to the time the Echo streams."""
    return int(upload_s(duration_s, params) * params.upload["bytes_per_s"])


def upload_chunks(duration_s: float, params: SimParams) -> list[tuple[float, int]]:
    """(offset_s, bytes) of each upload chunk, paced over the utterance and its tail."""
    total = upload_bytes(duration_s, params)
    step = params.upload["chunk_s"]
    per = max(int(params.upload["bytes_per_s"] * step), 1)
    chunks, sent, t = [], 0, 0.0
    while sent < total:
        size = min(per, total - sent)
        chunks.append((round(t, 6), size))
        sent += size
        t += step
    return chunks


def paced_records(total: int, section: dict[str, float] | Any) -> list[tuple[float, int]]:
    """(offset_s, bytes) of each record of a stream of *total* bytes.

    The first ``burst_s`` seconds of audio go out at once (a player fills
    its buffer), the rest at ``rate_factor`` times real time, in records of
    ``record_bytes``.
    """
    record = int(section["record_bytes"])
    rate = section["bytes_per_s"] * section["rate_factor"]
    burst = int(section["burst_s"] * section["bytes_per_s"])
    out, sent = [], 0
    while sent < total:
        size = min(record, total - sent)
        offset = 0.0 if sent < burst else (sent - burst) / rate
        out.append((round(offset, 6), size))
        sent += size
    return out
