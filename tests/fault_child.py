"""``echolab collect`` with a fault at one step of an attempt (run as a script by the fault tests and the soak).

    python -P tests/fault_child.py --at STEP --signal KILL|TERM --on N -- ARGS OF echolab...

The N-th time the campaign reaches STEP in this process, the process sends
itself the signal (SIGKILL: it dies there; SIGTERM: the collector's own stop).
Without ``--at`` it is the plain command. Steps, in the order of an attempt:
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any, Callable

#: step -> (module, qualified name, when: "before" or "after" the call)
STEPS: dict[str, tuple[str, str, str]] = {
    "speech": ("echolab.collector.collect", "SpeechSource.__call__", "before"),
    "idle": ("echolab.collector.campaign", "CampaignRunner._wait_idle", "before"),
    "start": ("echolab.collector.campaign", "CampaignRunner._start_capture", "after"),
    "play": ("echolab.collector.sim.sink", "SimulatedSink.play", "before"),
    "response": ("echolab.collector.campaign", "CampaignRunner._wait_response", "before"),
    "stop": ("echolab.collector.recorder", "CaptureProcess.stop", "after"),
    "check": ("echolab.collector.checks", "check_capture", "after"),
    "placed": ("echolab.db.catalog", "place_file", "after"),
    "stored": ("echolab.db.catalog", "Catalog.add_capture", "after"),
}
__doc__ += ", ".join(STEPS) + "."


def arm(step: str, signum: int, on: int) -> None:
    """Wrap the function of *step* so that its *on*-th call sends *signum* to this process."""
    import importlib

    module_name, qualname, when = STEPS[step]
    module = importlib.import_module(module_name)
    owner: Any = module
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    original: Callable[..., Any] = getattr(owner, name)
    seen = [0]

    def fire() -> None:
        seen[0] += 1
        if seen[0] == on:
            print(f"fault: {signal.Signals(signum).name} at {step}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signum)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if step == "stored" and not kwargs.get("move"):
            return original(*args, **kwargs)  # a failed attempt's row, not a capture
        if when == "before":
            fire()
        out = original(*args, **kwargs)
        if when == "after":
            fire()
        return out

    setattr(owner, name, wrapped)
    if not path:  # a module function: the campaign runner calls it by the name it imported
        runner = importlib.import_module("echolab.collector.campaign")
        if getattr(runner, name, None) is original:
            setattr(runner, name, wrapped)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--at", choices=sorted(STEPS))
    ap.add_argument("--signal", default="KILL", choices=["KILL", "TERM"])
    ap.add_argument("--on", type=int, default=1)
    ap.add_argument("rest", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    if args.at:
        arm(args.at, getattr(signal, f"SIG{args.signal}"), args.on)
    from echolab.cli import main as cli

    sys.argv = ["echolab", *[a for a in args.rest if a != "--"]]
    cli()


if __name__ == "__main__":
    main()
