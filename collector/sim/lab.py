"""Bring the simulated lab up and down, and find a running one.

``up`` makes the namespaces (:mod:`echolab.collector.sim.topology`), a self-signed
certificate, and starts two processes: the cloud (voice + music services) in
the cloud namespace and the Echo in the echo namespace. What the collector
needs to find the running lab is written to ``RUN_ROOT/PREFIX/state.json``
and read back by :meth:`SimLab.load`. ``up`` first removes whatever an earlier
run left (a crash included); ``down`` removes everything: processes (by pid,
and every process still inside the lab's namespaces), namespaces with their
links, and the run directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from filelock import FileLock

from echolab.collector.sim import topology
from echolab.collector.sim.errors import SimError, SimNotRunning
from echolab.collector.sim import recordings
from echolab.collector.sim.params import DEFAULT_PARAMS, load_params
from echolab.collector.sim.recordings import Recording
from echolab.collector.sim.replay import REPLAY_LOG
from echolab.collector.sim.sink import SimulatedSink, echo_call
from echolab.collector.sim.topology import Topology

RUN_ROOT_ENV = "ECHOLAB_SIM_RUN"
DEFAULT_RUN_ROOT = Path("/run/echolab-sim")
DEFAULT_PREFIX = "echolab"
PORT = 443
READY_TIMEOUT_S = 15.0


def run_root(root: Path | str | None = None) -> Path:
    return Path(root or os.environ.get(RUN_ROOT_ENV) or DEFAULT_RUN_ROOT)


def _run_dir(prefix: str, root: Path | str | None) -> Path:
    return run_root(root) / prefix


@dataclass(frozen=True)
class SimLab:
    """A running simulated lab: where to capture, who talks to whom.

    Run tshark with ``capture_command(path)`` (or prefix your own command
    with ``netns_exec()``): it must run inside ``netns`` on ``interface``.
    """

    prefix: str
    run_dir: Path
    netns: str  # the gateway namespace, where captures run
    interface: str  # the capture interface inside netns
    echo_netns: str
    cloud_netns: str
    echo_ip: str
    voice_ip: str
    music_ip: str
    port: int
    speed: float
    seed: int | None
    params_path: str
    control_socket: Path
    pids: dict[str, int] = field(default_factory=dict)
    started_at: str = ""
    replay: str = ""  # replay mode: where the recorded requests came from ("" = parametric)
    replay_digest: str = ""  # which recordings (up compares it)
    defense: str = ""  # the live defense both ends apply (a spec, echolab.collector.sim.shaping; "" = none)

    # --- finding a lab ------------------------------------------------------------------
    @classmethod
    def up(cls, *, prefix: str = DEFAULT_PREFIX, speed: float = 1.0, seed: int | None = None,
           params_path: Path | str | None = None, root: Path | str | None = None,
           replay: Sequence[Recording] | None = None, replay_source: str = "", defense: str | None = None) -> "SimLab":
        return up(prefix=prefix, speed=speed, seed=seed, params_path=params_path, root=root, replay=replay,
                  replay_source=replay_source, defense=defense)

    @classmethod
    def load(cls, prefix: str = DEFAULT_PREFIX, root: Path | str | None = None) -> "SimLab":
        """The lab running under *prefix*; :class:`SimNotRunning` if there is none."""
        path = _run_dir(prefix, root) / "state.json"
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise SimNotRunning(f"no simulated lab '{prefix}' is up", hint="start it with 'echolab sim up'") from exc
        except (OSError, ValueError) as exc:
            raise SimNotRunning(f"the simulated lab's state {path} is unreadable ({exc}); "
                                "run 'echolab sim up' to rebuild it") from exc
        raw["run_dir"] = Path(raw["run_dir"])
        raw["control_socket"] = Path(raw["control_socket"])
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["run_dir"] = str(self.run_dir)
        out["control_socket"] = str(self.control_socket)
        return out

    @property
    def server_ips(self) -> list[str]:
        return [self.voice_ip, self.music_ip]

    # --- captures -----------------------------------------------------------------------
    def netns_exec(self) -> list[str]:
        """The command prefix that runs a program inside the gateway namespace."""
        return ["ip", "netns", "exec", self.netns]

    def capture_command(self, path: Path | str, *, capture_filter: str | None = None,
                        tool: str = "tshark") -> list[str]:
        """A tshark (or dumpcap, same options) command writing the gateway's traffic to *path*."""
        cmd = [*self.netns_exec(), tool, "-q", "-i", self.interface, "-w", str(path)]
        if capture_filter:
            cmd += ["-f", capture_filter]
        return cmd

    # --- the Echo -----------------------------------------------------------------------
    def sink(self) -> SimulatedSink:
        """The audio output that makes this lab's Echo hear a prompt."""
        return SimulatedSink(self.control_socket, speed=self.speed)

    def echo_status(self) -> dict[str, Any]:
        return echo_call(self.control_socket, {"op": "status"})

    def is_busy(self) -> bool:
        """True while the Echo uploads, waits for, or plays an answer."""
        return bool(self.echo_status().get("busy"))

    def wait_idle(self, timeout_s: float = 120.0, poll_s: float = 0.05) -> bool:
        """Wait until the Echo is idle; False if it is still busy after *timeout_s*."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.is_busy():
                return True
            time.sleep(poll_s)
        return not self.is_busy()

    @property
    def replay_file(self) -> Path:
        return self.run_dir / "recordings.json"

    def recordings(self) -> list[Recording]:
        """The recorded requests this lab replays (none in parametric mode)."""
        return recordings.load(self.replay_file) if self.replay else []

    def replayed(self) -> list[dict[str, Any]]:
        """One line per replayed request: recording, class, began, ended (ground truth for tests)."""
        path = self.run_dir / REPLAY_LOG
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def defense_log(self) -> list[dict[str, Any]]:
        """One line per exchange each end shaped under the live defense (none without one)."""
        from echolab.collector.sim.shaping import read_log

        return read_log(self.run_dir)

    def plans(self) -> list[dict[str, Any]]:
        """Every response the cloud drew so far (ground truth for tests and docs)."""
        path = self.run_dir / "plans.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class SimStatus:
    """What ``sim status`` reports."""

    prefix: str
    running: bool
    namespaces: dict[str, bool]
    processes: dict[str, bool]
    echo: dict[str, Any] | None
    lab: SimLab | None
    problems: list[str]


# --- processes ------------------------------------------------------------------------------
def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _ours(pid: int, run_dir: Path) -> bool:
    cmd = _cmdline(pid)
    return "echolab.collector.sim." in cmd and (f"{run_dir}/" in cmd or f"{run_dir} " in cmd)


def _pids_naming(run_dir: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() and _ours(int(entry.name), run_dir):
            if _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def _stop(pids: list[int], grace_s: float = 2.0) -> None:
    """SIGTERM each pid, then SIGKILL what is left after *grace_s*."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        _reap(pids)
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    _reap(pids)


def _reap(pids: list[int]) -> None:
    """Collect those of *pids* that are our own exited children (no zombies left).

    Only these pids: waiting on any child would steal the exit status of the
    caller's other subprocesses (a collector's tshark).
    """
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def _spawn(ns: str, module: str, args: list[str], log: Path) -> int:
    # -P and cwd=/: the installed echolab runs, never a folder that happens to be the cwd.
    # The module's main() is called rather than run with -m: the package's __init__ already imports
    # the Echo's module (through the replay), and runpy would warn that it runs it a second time.
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-P", "-c", f"from {module} import main; main()", *args],
            stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
            cwd="/", start_new_session=True)
    return proc.pid


def _make_cert(run_dir: Path) -> tuple[Path, Path]:
    cert, key = run_dir / "cert.pem", run_dir / "key.pem"
    if shutil.which("openssl") is None:
        raise SimError("the simulated cloud's TLS needs openssl: apt-get install openssl")
    topology._run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                   "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "30",
                   "-subj", "/CN=voice.echolab.test",
                   "-addext", "subjectAltName=DNS:voice.echolab.test,DNS:music.echolab.test"])
    return cert, key


def _log_tail(run_dir: Path, lines: int = 8) -> str:
    parts = []
    for name in ("cloud.log", "echo.log"):
        path = run_dir / name
        if path.exists():
            tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
            if tail:
                parts.append(f"{name}: " + " | ".join(tail))
    return "; ".join(parts)


# --- up / down / status ---------------------------------------------------------------------
def _lock(prefix: str, root: Path | str | None) -> FileLock:
    base = run_root(root)
    base.mkdir(parents=True, exist_ok=True)
    return FileLock(str(base / f"{prefix}.lock"))


def _cleanup(prefix: str, root: Path | str | None) -> list[str]:
    """Remove everything of lab *prefix*, running or crashed; returns what was removed."""
    topo = Topology(prefix)
    run_dir = _run_dir(prefix, root)
    removed: list[str] = []
    state = run_dir / "state.json"
    pids: list[int] = []
    if state.exists():
        try:
            pids = [int(p) for p in json.loads(state.read_text()).get("pids", {}).values()]
        except (OSError, ValueError, TypeError):
            pids = []
    present = topology.existing_namespaces()
    # Our processes by the state's pids, and any other whose command line names
    # this lab's run directory (state file lost, namespace deleted by hand).
    pids = [p for p in pids if _alive(p) and _ours(p, run_dir)]
    pids += [p for p in _pids_naming(run_dir) if p not in pids]
    for ns in topo.namespaces:
        if ns in present:
            pids += [p for p in topology.netns_pids(ns) if p not in pids]
    if pids:
        _stop(pids)
        removed.append(f"processes {' '.join(map(str, sorted(pids)))}")
    removed += [f"namespace {ns}" for ns in topology.delete(topo)]
    if run_dir.exists():
        shutil.rmtree(run_dir, ignore_errors=True)
        removed.append(f"run directory {run_dir}")
    return removed


def up(*, prefix: str = DEFAULT_PREFIX, speed: float = 1.0, seed: int | None = None,
       params_path: Path | str | None = None, root: Path | str | None = None,
       replay: Sequence[Recording] | None = None, replay_source: str = "", defense: str | None = None) -> SimLab:
    """Start the simulated lab *prefix* (idempotent) and return it.

    With *defense* (a spec such as ``front:n=300,w=0.5-3``) the Echo and the
    cloud apply that defense live on their connections
    (:mod:`echolab.collector.sim.shaping`); a spec it cannot apply live raises
    ``DefenseError`` before anything starts.

    With *replay* (recorded requests, :mod:`echolab.collector.sim.recordings`)
    the Echo and the cloud replay them instead of drawing answers
    (:mod:`echolab.collector.sim.replay`); *replay_source* says where they
    came from. A healthy lab already running with the same speed, seed,
    parameters and recordings is returned as is; anything else under this
    prefix (a crashed run, other settings) is cleaned up first.
    """
    if not speed > 0 or speed > 1000:
        raise SimError(f"speed must be between 0 and 1000 (got {speed})")
    topology.check_privileges()
    params_file = str(Path(params_path).resolve()) if params_path else str(DEFAULT_PARAMS)
    load_params(params_file)  # fail on bad parameters before touching the network
    if defense:
        from echolab.collector.sim.shaping import live_defense

        defense = live_defense(defense).spec  # bad or not live: one line, before touching the network
        if replay:
            raise SimError("a live defense shapes the parametric simulated lab's traffic, not replayed recordings; "
                           "drop --replay or --defense")
    defense = defense or ""
    digest = recordings.digest(replay) if replay else ""
    with _lock(prefix, root):
        current = status(prefix, root)
        if current.running and current.lab and (current.lab.speed, current.lab.seed, current.lab.params_path,
                                                current.lab.replay_digest, current.lab.defense) == \
                (float(speed), seed, params_file, digest, defense):
            return current.lab
        _cleanup(prefix, root)
        try:
            return _start(prefix, float(speed), seed, params_file, root, replay, replay_source or "recordings",
                          defense)
        except BaseException:
            _cleanup(prefix, root)
            raise


def _start(prefix: str, speed: float, seed: int | None, params_file: str, root: Path | str | None,
           replay: Sequence[Recording] | None = None, replay_source: str = "", defense: str = "") -> SimLab:
    topo = Topology(prefix)
    run_dir = _run_dir(prefix, root)
    run_dir.mkdir(parents=True, exist_ok=True)
    topology.create(topo)
    cert, key = _make_cert(run_dir)
    control = run_dir / "echo.sock"
    common = ["--params", params_file, "--speed", str(speed)]
    digest = ""
    if replay:
        digest = recordings.save(replay, run_dir / "recordings.json")
        common += ["--replay", str(run_dir / "recordings.json")]
    if defense:
        common += ["--defense", defense]
    cloud_seed = ["--seed", str(seed)] if seed is not None else []
    echo_seed = ["--seed", str(seed + 1)] if seed is not None else []
    pids = {"cloud": _spawn(topo.cloud_ns, "echolab.collector.sim.cloud",
                            ["--voice-ip", topo.voice_ip, "--music-ip", topo.music_ip, "--port", str(PORT),
                             "--cert", str(cert), "--key", str(key), "--run-dir", str(run_dir),
                             *common, *cloud_seed], run_dir / "cloud.log")}
    # Write the state before the Echo starts so a failure below is still cleaned up by pid.
    lab = SimLab(prefix=prefix, run_dir=run_dir, netns=topo.gw_ns, interface=topo.capture_interface,
                 echo_netns=topo.echo_ns, cloud_netns=topo.cloud_ns, echo_ip=topo.echo_ip,
                 voice_ip=topo.voice_ip, music_ip=topo.music_ip, port=PORT, speed=speed, seed=seed,
                 params_path=params_file, control_socket=control, pids=pids,
                 started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 replay=replay_source if replay else "", replay_digest=digest, defense=defense)
    _write_state(lab)
    _wait_log(run_dir / "cloud.log", "cloud: voice", pids["cloud"], run_dir)
    pids["echo"] = _spawn(topo.echo_ns, "echolab.collector.sim.echo",
                          ["--control", str(control), "--voice-ip", topo.voice_ip, "--port", str(PORT),
                           "--cafile", str(cert), "--run-dir", str(run_dir), *common, *echo_seed],
                          run_dir / "echo.log")
    _write_state(lab)
    _wait_ready(lab)
    return lab


def _write_state(lab: SimLab) -> None:
    tmp = lab.run_dir / "state.json.tmp"
    tmp.write_text(json.dumps(lab.to_dict(), indent=2) + "\n")
    tmp.replace(lab.run_dir / "state.json")


def _wait_log(log: Path, marker: str, pid: int, run_dir: Path) -> None:
    """Wait until a started process has written *marker* (it is listening)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if log.exists() and marker in log.read_text(errors="replace"):
            return
        if not _alive(pid):
            break
        time.sleep(0.05)
    raise SimError(f"the simulated cloud did not start: {_log_tail(run_dir) or 'no output'}")


def _wait_ready(lab: SimLab) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        for name, pid in lab.pids.items():
            if not _alive(pid):
                raise SimError(f"the simulated {name} process exited at start: {_log_tail(lab.run_dir)}")
        if lab.control_socket.exists():
            try:
                if lab.echo_status().get("connected"):
                    return
            except SimError as exc:
                last = str(exc)
        time.sleep(0.1)
    raise SimError(f"the simulated Echo did not connect to the voice service within {READY_TIMEOUT_S:.0f} s "
                   f"({last or 'no reply'}): {_log_tail(lab.run_dir)}")


def down(prefix: str = DEFAULT_PREFIX, root: Path | str | None = None) -> list[str]:
    """Stop lab *prefix* and remove all it made (idempotent); returns what was removed."""
    topology.check_privileges()
    with _lock(prefix, root):
        return _cleanup(prefix, root)


def status(prefix: str = DEFAULT_PREFIX, root: Path | str | None = None) -> SimStatus:
    """Check namespaces, processes and the Echo's connection of lab *prefix*."""
    topo = Topology(prefix)
    present = topology.existing_namespaces() if shutil.which("ip") else set()
    namespaces = {ns: ns in present for ns in topo.namespaces}
    problems: list[str] = []
    try:
        lab: SimLab | None = SimLab.load(prefix, root)
    except SimNotRunning:
        lab = None
    processes: dict[str, bool] = {}
    echo: dict[str, Any] | None = None
    if lab is not None:
        processes = {name: _alive(pid) and _ours(pid, lab.run_dir) for name, pid in lab.pids.items()}
        problems += [f"{name} process {lab.pids[name]} is not running" for name, ok in processes.items() if not ok]
        try:
            echo = lab.echo_status()
            if not echo.get("connected"):
                problems.append("the Echo is not connected to the voice service")
        except SimError as exc:
            problems.append(str(exc))
    elif any(namespaces.values()):
        problems.append("namespaces exist without a state file (a crashed run); 'echolab sim up' cleans them up")
    problems += [f"namespace {ns} is missing" for ns, ok in namespaces.items() if lab is not None and not ok]
    running = lab is not None and not problems
    return SimStatus(prefix, running, namespaces, processes, echo, lab, problems)
