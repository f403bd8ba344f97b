"""Running the capture engine for one request.

echolab captures with ``dumpcap``, the capture engine of Wireshark that
``tshark -i`` itself runs: the same packets and the same pcapng files, but it
starts in tens of milliseconds where tshark first loads every dissector
(about 0.7 s, measured on the lab machine), which matters when a campaign
starts a capture per request. ``capture_tool = "tshark"`` in echolab.toml (or
``--capture-tool tshark``) uses tshark instead.

A capture is "really capturing" once the engine has said ``Capturing on ...``
and then named its output ``File: ...`` on stderr: it prints the first line
before it opens the interface (a permission error follows it), the second
once the interface is open, the filter applied and the file created.
The child is tied to this process (PR_SET_PDEATHSIG), so a killed collector
never leaves a capture running; a pid file lets a rerun clean up anyway.
"""

from __future__ import annotations

import ctypes
import os
import re
import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from echolab.errors import EcholabError

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0
_STATS = re.compile(r"Packets received/dropped on interface '.*?': (\d+)/(\d+)")


class CaptureToolError(EcholabError):
    """The capture engine is missing, cannot open the interface, or failed."""


class CapturePermissionError(CaptureToolError):
    pass


class InterfaceError(CaptureToolError):
    pass


try:  # resolved here: the child between fork and exec must not load libraries
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def explain_failure(stderr: str, interface: str, tool: str, returncode: int | None = None) -> CaptureToolError:
    """Turn the engine's complaint (and how it exited) into a message that says what to do."""
    text = stderr.strip()
    low = text.lower()
    if "permission" in low or "operation not permitted" in low or "you don't have permission" in low:
        return CapturePermissionError(
            f"{tool} is not allowed to capture on {interface}: add your user to the 'wireshark' group "
            "(dpkg-reconfigure wireshark-common, answer yes; then usermod -aG wireshark $USER and log in again) "
            "or run as root"
        )
    if "no such device" in low or "there is no device named" in low or "doesn't exist" in low or "no such" in low:
        return InterfaceError(f"capture interface {interface!r} does not exist; list them with 'ip link' "
                              "and pass --interface")
    if text:
        last = text.splitlines()[-1]
    elif returncode is not None and returncode < 0:
        last = f"killed by {_signal_name(-returncode)} without a message"
    else:
        last = "exited without a message"
    return CaptureToolError(f"{tool} failed on {interface}: {last}")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclass
class StopInfo:
    received: int | None
    dropped: int | None
    returncode: int
    link_changed: bool = False  # the interface lost its link (went down) while the capture ran


def _net_attribute(interface: str, name: str, prefix: Sequence[str] = ()) -> str | None:
    """``/sys/class/net/INTERFACE/NAME`` (read in the namespace *prefix* runs in); None when it cannot be read."""
    path = f"/sys/class/net/{interface}/{name}"
    try:
        if prefix:  # another network namespace: read it there
            out = subprocess.run([*prefix, "cat", path], capture_output=True, text=True, timeout=5)
            return out.stdout.strip() if out.returncode == 0 else None
        return Path(path).read_text().strip()
    except (OSError, subprocess.SubprocessError):
        return None


def carrier_changes(interface: str, prefix: Sequence[str] = ()) -> int | None:
    """How often the interface's link went down or up since it was made (Linux's ``carrier_changes``).

    Read at the start and the end of a capture: a difference means the link was
    down for a while and packets crossing it then are missing from the file.
    None when it cannot be read (an interface such as ``any``, another system).
    """
    value = _net_attribute(interface, "carrier_changes", prefix)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def link_up(interface: str, prefix: Sequence[str] = ()) -> bool | None:
    """Whether the interface's link is up (Linux's ``operstate``); None when it cannot be read.

    An interface whose driver does not report its state (``unknown``, as a
    loopback or a tunnel does) counts as up.
    """
    state = _net_attribute(interface, "operstate", prefix)
    return None if state is None else state not in ("down", "lowerlayerdown", "notpresent")


class CaptureProcess:
    """One running capture writing pcapng to *path*."""

    def __init__(self, proc: subprocess.Popen, path: Path, tool: str, interface: str, pidfile: Path | None,
                 prefix: Sequence[str] = ()):
        self.proc, self.path, self.tool, self.interface, self.pidfile = proc, path, tool, interface, pidfile
        self.prefix = tuple(prefix)
        self.link_changes = carrier_changes(interface, prefix)

    @classmethod
    def start(
        cls,
        path: Path,
        interface: str,
        capture_filter: str,
        *,
        prefix: Sequence[str] = (),
        tool: str = "dumpcap",
        pidfile: Path | None = None,
        timeout_s: float = START_TIMEOUT_S,
        ring: tuple[int, int] | None = None,
    ) -> "CaptureProcess":
        """Start capturing and return once the engine is really capturing.

        *ring* ``(kilobytes, files)``: a ring buffer, files of that size and at most
        that many (dumpcap names them PATHSTEM_NNNNN_DATETIME.pcapng and deletes the oldest).
        """
        if shutil.which(tool) is None:
            raise CaptureToolError(f"{tool} is not installed; install it with 'apt-get install tshark'")
        cmd = [*prefix, tool, "-q", "-i", interface, "-f", capture_filter, "-w", str(path)]
        if tool == "tshark":
            cmd += ["-F", "pcapng"]
        if ring is not None:
            cmd += ["-b", f"filesize:{int(ring[0])}", "-b", f"files:{int(ring[1])}"]
        try:
            # A session of its own: a Ctrl-C at the terminal reaches the collector, which
            # decides when the capture ends, and not the capture engine directly.
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    preexec_fn=_die_with_parent, start_new_session=True)
        except OSError as exc:
            raise CaptureToolError(f"cannot run {tool}: {exc.strerror}") from exc
        if pidfile is not None:
            try:
                pidfile.write_text(f"{proc.pid}\n{path}\n")
            except OSError as exc:
                proc.kill()
                proc.wait()
                raise CaptureToolError(f"cannot write {pidfile}: {exc.strerror}") from exc
        seen = b""
        deadline = time.monotonic() + timeout_s
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stderr], [], [], 0.2)
            if ready:
                chunk = os.read(proc.stderr.fileno(), 4096)
                seen += chunk
                if _ready(seen):
                    return cls(proc, path, tool, interface, pidfile, prefix)
                if not chunk:  # EOF: the engine exited
                    break
            elif proc.poll() is not None:
                break
        proc.kill()
        proc.wait()
        _unlink(pidfile)
        Path(path).unlink(missing_ok=True)
        if time.monotonic() >= deadline:
            raise CaptureToolError(f"{tool} did not start capturing on {interface} within {timeout_s:.0f} s")
        raise explain_failure(seen.decode(errors="replace"), interface, tool, proc.returncode)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> StopInfo:
        """Stop cleanly (SIGINT: the engine writes out what it holds) and report drops."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        _unlink(self.pidfile)
        text = (err or b"").decode(errors="replace")
        match = _STATS.search(text)
        received, dropped = (int(match.group(1)), int(match.group(2))) if match else (None, None)
        if self.proc.returncode not in (0, -signal.SIGINT) and match is None:
            raise explain_failure(text, self.interface, self.tool, self.proc.returncode)
        changed = self.link_changes is not None and carrier_changes(self.interface, self.prefix) != self.link_changes
        return StopInfo(received, dropped, self.proc.returncode, changed)

    def abort(self) -> None:
        """Kill the capture and delete its file (an aborted request)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        _unlink(self.pidfile)
        self.path.unlink(missing_ok=True)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def why_stopped(self) -> str:
        """The engine's last words once it has exited on its own (a full disk, a lost interface), or ""."""
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        try:
            text = self.proc.stderr.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("Packets")]
        return lines[-1] if lines else ""


def _ready(stderr: bytes) -> bool:
    """The engine has opened the interface: "File: ..." follows "Capturing on ..."."""
    start = stderr.find(b"Capturing on")
    return start >= 0 and b"File:" in stderr[start:]


def _unlink(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)


def kill_stale(pidfile: Path) -> bool:
    """Kill a capture a crashed collector left behind (its pid file says which)."""
    try:
        pid_text, _, rest = pidfile.read_text().partition("\n")
        pid, capture_path = int(pid_text), rest.strip()
    except (OSError, ValueError):
        _unlink(pidfile)
        return False
    killed = False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        if ("dumpcap" in cmdline or "tshark" in cmdline) and capture_path in cmdline:
            os.kill(pid, signal.SIGKILL)
            killed = True
    except (OSError, ProcessLookupError):
        pass
    _unlink(pidfile)
    return killed
