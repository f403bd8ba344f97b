"""SimulatedSink: the audio output that "plays" a clip to the simulated Echo.

Instead of sound, it tells the simulated Echo (over its control socket) how
long the clip is and which class the prompt belongs to (standing in for the
cloud's speech recognition), then waits the clip's real duration divided by
the speed factor, as a speaker would. The Echo streams the utterance upstream
meanwhile. The sink does not wait for the answer: the collector decides when a
response ended by watching traffic, and can poll :meth:`SimulatedSink.is_busy`
(or ``SimLab.wait_idle``) before the next request.
"""

from __future__ import annotations

import json
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from echolab.collector.audio import PlaybackResult, clip_duration
from echolab.collector.sim.errors import EchoBusy, SimError, SimNotRunning

CONTROL_TIMEOUT_S = 5.0


def echo_call(control_socket: Path | str, message: dict[str, Any],
              timeout: float = CONTROL_TIMEOUT_S) -> dict[str, Any]:
    """Send one control message to the simulated Echo and return its reply."""
    path = str(control_socket)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(json.dumps(message).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except FileNotFoundError as exc:
        raise SimNotRunning(f"the simulated Echo's control socket {path} is missing",
                            hint="start the lab with 'echolab sim up'") from exc
    except (ConnectionRefusedError, socket.timeout, OSError) as exc:
        raise SimNotRunning(
            f"the simulated Echo does not answer on {path} ({exc}); restart the lab with 'echolab sim up'") from exc
    try:
        return json.loads(data)
    except ValueError as exc:
        raise SimError(f"the simulated Echo sent an unreadable reply: {data[:200]!r}") from exc


class SimulatedSink:
    """An :class:`echolab.collector.audio.AudioOutput` whose listener is the simulated Echo."""

    backend = "sim"

    def __init__(self, control_socket: Path | str, *, speed: float = 1.0) -> None:
        self.control_socket = Path(control_socket)
        self.speed = float(speed)

    def status(self) -> dict[str, Any]:
        return echo_call(self.control_socket, {"op": "status"})

    def is_busy(self) -> bool:
        return bool(self.status().get("busy"))

    def play(self, clip: Any, *, label: str, prompt_text: str = "") -> PlaybackResult:
        """Hand *clip* (anything with ``duration_s``) to the Echo and wait while it "plays".

        Raises :class:`EchoBusy` if the Echo is still answering the previous
        request, :class:`SimNotRunning` if the lab is down.
        """
        duration = clip_duration(clip)
        started = datetime.now(timezone.utc)
        t0 = time.monotonic()
        reply = echo_call(self.control_socket, {"op": "request", "label": label, "duration_s": duration,
                                                "prompt_text": prompt_text})
        if not reply.get("ok"):
            if reply.get("error") == "busy":
                raise EchoBusy("the simulated Echo is busy (still answering); wait until it is idle (SimLab.wait_idle)")
            raise SimError(f"the simulated Echo refused the request: {reply.get('error')}")
        remaining = t0 + duration / self.speed - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        return PlaybackResult(
            started_at=started,
            ended_at=datetime.now(timezone.utc),
            duration_s=duration,
            played_s=time.monotonic() - t0,
            backend=self.backend,
            device=str(self.control_socket),
            details={"request_id": reply.get("request_id"), "upload_bytes": reply.get("upload_bytes"),
                     "label": label},
        )
