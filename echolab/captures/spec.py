"""How to cut a long capture into requests: the ``--split`` setting, parsed and checked.

``--split`` is the option's name users type (``catalog import --split gap=6``); what
it sets is the *cut* of a long capture into one capture per request, not a
train/test split. :class:`SplitSpec` holds one cut's settings: ``gap=SECONDS`` of
quiet, a fixed schedule (``every=SECONDS``, ``times=FILE``) or ``auto``
(:mod:`echolab.captures.autocut`). Defaults come from
:data:`echolab.captures.rules.RULES`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from echolab.captures.rules import RULES
from echolab.errors import EcholabError

ABSOLUTE_EPOCH = 1e8  # a times-file value at or above this is epoch seconds (after March 1973)
MODES = ("gap", "every", "times", "auto")


class SplitError(EcholabError):
    """A long capture cannot be cut as asked (bad split, no device, unreadable times file)."""



@dataclass(frozen=True)
class SplitSpec:
    """How to cut: ``gap`` (seconds of quiet), ``every`` (seconds), ``times`` (start times) or ``auto``.

    ``times`` holds the start times read from ``times_file``: values at or
    above :data:`ABSOLUTE_EPOCH` are epoch seconds, smaller ones are seconds
    after the capture's first packet. A burst (gap) or window (every/times)
    is a request only when it holds at least ``min_packets`` TCP packets and
    ``min_bytes`` IP bytes of the device; smaller ones are keep-alives.
    ``attach_trailing`` (gap and auto) attaches a short burst that starts
    within that many seconds after a request to the request
    (:func:`attach_trailing`); ``auto`` chooses the gap and ``min_bytes`` per
    file (:func:`choose_cut`) and attaches within :attr:`~echolab.captures.rules.TrafficRules.trailing_window_s`
    unless told otherwise. ``speed``: the capture was played this many times
    faster than the household's clock (a simulated day); every time of the cut
    (the gap, the attach window, auto's range of gaps) is then the household's,
    and divided by it on the capture's clock (:meth:`us`).
    """

    mode: str
    seconds: float = 0.0
    times: tuple[float, ...] = ()
    times_file: str | None = None
    min_packets: int = RULES.min_packets
    min_bytes: int = RULES.min_bytes
    attach_trailing: float = 0.0
    speed: float = 1.0

    def us(self, seconds: float) -> int:
        """*seconds* of the household's clock as microseconds of the capture's."""
        return round(seconds * 1e6 / self.speed)

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise SplitError(f"the speed factor must be above 0 (got {self.speed:g})")
        if self.mode not in MODES:
            raise SplitError(f"unknown split {self.mode!r}: use gap=SECONDS, every=SECONDS, times=FILE or auto")
        if self.attach_trailing < 0:
            raise SplitError("--attach-trailing cannot be negative")
        if self.attach_trailing and self.mode not in ("gap", "auto"):
            raise SplitError("--attach-trailing works with --split gap=SECONDS or auto, not with a schedule")
        if self.mode in ("gap", "every") and not self.seconds > 0:
            raise SplitError(f"{self.mode}= needs a number of seconds above 0, e.g. {self.mode}=2")
        if self.mode == "times" and not self.times:
            raise SplitError(f"the times file {self.times_file} holds no start times")
        if self.min_packets < 0 or self.min_bytes < 0:
            raise SplitError("--min-packets and --min-bytes cannot be negative")

    @classmethod
    def parse(cls, text: str, *, min_packets: int = RULES.min_packets,
              min_bytes: int = RULES.min_bytes, attach_trailing: float | None = None,
              speed: float = 1.0) -> "SplitSpec":
        """``gap=2``, ``every=30``, ``times=FILE`` (the file is read now, so errors show early) or ``auto``.

        *attach_trailing* None means the default: :attr:`~echolab.captures.rules.TrafficRules.trailing_window_s` for
        ``auto``, nothing attached for the others. *speed*: see the class.
        """
        mode, sep, value = text.partition("=")
        mode, value = mode.strip().lower(), value.strip()
        if mode == "auto" and not sep:
            attach = RULES.trailing_window_s if attach_trailing is None else attach_trailing
            return cls("auto", min_packets=min_packets, min_bytes=min_bytes, attach_trailing=attach, speed=speed)
        if not sep or not value or mode not in MODES or mode == "auto":
            raise SplitError(f"cannot read the split {text!r}: use gap=SECONDS, every=SECONDS, times=FILE or auto")
        attach = attach_trailing or 0.0
        if mode == "times":
            return cls(mode, times=read_times(Path(value)), times_file=value, min_packets=min_packets,
                       min_bytes=min_bytes, attach_trailing=attach, speed=speed)
        try:
            seconds = float(value)
        except ValueError:
            raise SplitError(f"{mode}= needs a number of seconds, not {value!r}") from None
        return cls(mode, seconds=seconds, min_packets=min_packets, min_bytes=min_bytes, attach_trailing=attach,
                   speed=speed)

    def __str__(self) -> str:
        if self.mode == "auto":
            return "auto"
        return f"times={self.times_file}" if self.mode == "times" else f"{self.mode}={self.seconds:g}"

    def settings(self) -> str:
        """Every setting of the cut, in the CLI's words: ``gap=4.2 min-packets=8 min-bytes=23000 attach-trailing=16``."""
        text = f"{self}"
        if self.mode == "gap":
            text = f"gap={self.seconds:.3g}"
        text += f" min-packets={self.min_packets} min-bytes={self.min_bytes}"
        if self.attach_trailing:
            text += f" attach-trailing={self.attach_trailing:g}"
        if self.speed != 1:
            text += f" speed={self.speed:g}"
        return text


def read_times(path: Path) -> tuple[float, ...]:
    """Start times, one per line: epoch seconds, seconds after the first packet, or ISO 8601.

    Blank lines and ``#`` comments are skipped; only the first field of a line
    (split on whitespace or a comma) is read. An ISO time without a zone is UTC.
    """
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise SplitError(f"cannot read the times file {path}: {exc.strerror}") from exc
    times: list[float] = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        first = re.split(r"[\s,]+", text)[0]
        times.append(_parse_time(first, path, number))
    return tuple(times)


def _parse_time(text: str, path: Path, line: int) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise SplitError(f"{path} line {line}: {text!r} is neither seconds nor an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


__all__ = ["ABSOLUTE_EPOCH", "MODES", "SplitError", "SplitSpec", "read_times"]
