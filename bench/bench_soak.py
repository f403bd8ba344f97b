#!/usr/bin/env python3
"""A long simulated campaign with faults injected at random, every capture checked against the ground truth.

Runs ``echolab collect`` on the simulated lab (high speed) round after round;
each round injects one fault drawn at random:

* ``sigkill@STEP`` / ``sigterm@STEP``: the collector killed, or asked to stop,
  at a step of an attempt (tests/fault_child.py names the steps);
* ``engine``: the capture engine (dumpcap) killed mid-capture;
* ``link``: the capture interface down for a while (0.5-3 s);
* ``disk``: the lab's filesystem (a tmpfs of its own) filled mid-capture, freed
  once the collector has stopped;
* ``pgrestart`` (with ``--catalog postgres``): the catalog's PostgreSQL server
  (a throw-away one, tests/pgserver.py) restarted mid-capture.

A round ends once the catalog holds one more good capture than when the fault
struck (a killed or stopped collector is rerun at once, as a service manager
would): that wait is the fault's recovery time. After every round the catalog
is audited against the simulated cloud's plans (tests/faults.py): captures
lost since the round began, labelled with a class the Echo did not hear,
half-written (unreadable, cut short, fewer answer bytes than the cloud sent);
at the end, files the catalog does not know and files left in progress.

Run as root from the repository root, under the simulated lab's lock::

    flock /tmp/echolab-netns.lock nice .venv/bin/python -P bench/bench_soak.py --minutes 20
    flock /tmp/echolab-netns.lock nice .venv/bin/python -P bench/bench_soak.py --minutes 20 --catalog postgres

Writes bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import pgserver  # noqa: E402
from fault_child import STEPS  # noqa: E402
from faults import audit, capture_in_progress, collect_cmd, kill_engine, snapshot, start_collect  # noqa: E402

from echolab.collector.sim import SimLab, down  # noqa: E402
from echolab.errors import EcholabError  # noqa: E402
from echolab.labdir import LabDir  # noqa: E402

KINDS = ("sigkill", "sigterm", "engine", "link", "disk")
PG_KINDS = KINDS + ("pgrestart",)


def count_good(lab: LabDir, url: str | None) -> int | None:
    """Captures in the catalog; None while it cannot be read (its server restarting)."""
    try:
        return len(snapshot(lab, url))
    except EcholabError:
        return None


def wait_for_more(lab: LabDir, count: int, proc: subprocess.Popen, timeout: float, url: str | None) -> bool:
    """Wait until the catalog holds more than *count* good captures (False: the collector ended first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (count_good(lab, url) or 0) > count:
            return True
        if proc.poll() is not None:
            return (count_good(lab, url) or 0) > count
        time.sleep(0.1)
    return False


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    return out


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    try:
        with open(filler, "wb") as fh:
            while True:
                fh.write(b"\0" * (1 << 16))
                fh.flush()
    except OSError:  # full (already full: the file cannot even be made)
        pass
    return filler


def one_round(kind: str, rng: random.Random, lab: LabDir, sim: SimLab, disk: Path, per_class: int,
              speed: float, url: str | None) -> tuple[str, float | None, str]:
    """Inject one fault of *kind*; return (its name, recovery seconds or None, what the collector said)."""
    count = len(snapshot(lab, url))
    plain = collect_cmd(lab, sim.prefix, per_class, speed=speed)
    if kind in ("sigkill", "sigterm"):
        step = rng.choice(list(STEPS))
        name = f"{kind}@{step}"
        proc = start_collect(collect_cmd(lab, sim.prefix, per_class, speed=speed, at=step,
                                         sig="KILL" if kind == "sigkill" else "TERM", on=rng.randint(1, 2)), url)
        out, _ = proc.communicate(timeout=300)
        struck = time.monotonic()
        count = len(snapshot(lab, url))  # a SIGTERM lets the capture in progress finish: count from the stop
    else:
        name = kind
        proc = start_collect(plain, url)
        capture_in_progress(lab, proc, sim.echo_ip)
        time.sleep(rng.uniform(0, 0.3))
        struck = time.monotonic()
        count = len(snapshot(lab, url))
        if kind == "pgrestart":
            assert url is not None
            pgserver.restart(url)
        elif kind == "engine":
            kill_engine(lab)
        elif kind == "link":
            link = [*sim.netns_exec(), "ip", "link", "set", sim.interface]
            subprocess.run([*link, "down"], check=True)
            time.sleep(rng.uniform(0.5, 3.0))
            subprocess.run([*link, "up"], check=True)
        else:
            filler = fill(disk)
            out, _ = proc.communicate(timeout=300)
            filler.unlink(missing_ok=True)
        if proc.poll() is None and wait_for_more(lab, count, proc, 300, url):
            return name, time.monotonic() - struck, stop(proc)
        out = stop(proc)
    rerun = start_collect(plain, url)
    recovered = wait_for_more(lab, count, rerun, 300, url)
    out += stop(rerun)
    return name, (time.monotonic() - struck) if recovered else None, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20)
    ap.add_argument("--speed", type=float, default=60)
    ap.add_argument("--per-class", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--prefix", default="soak")
    ap.add_argument("--catalog", choices=("sqlite", "postgres"), default="sqlite",
                    help="the catalog: SQLite in the lab, or a PostgreSQL server of its own, restarted as a fault")
    ap.add_argument("--json", type=Path, default=None, help="default: bench/results/soak[-postgres].json")
    args = ap.parse_args()
    if args.json is None:
        args.json = ROOT / "bench" / "results" / ("soak.json" if args.catalog == "sqlite" else "soak-postgres.json")
    with ExitStack() as stack:
        url = None
        if args.catalog == "postgres":
            url = pgserver.create_database(stack.enter_context(pgserver.running()), "soak")
        soak(args, url)


def soak(args: argparse.Namespace, url: str | None) -> None:
    kinds = KINDS if url is None else PG_KINDS
    rng = random.Random(args.seed)
    down(args.prefix)
    sim = SimLab.up(prefix=args.prefix, speed=args.speed, seed=args.seed)
    work = Path(tempfile.mkdtemp(prefix="echolab-soak-"))
    disk = work / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1g", "tmpfs", str(disk)], check=True)
    faults: Counter = Counter()
    recovery: dict[str, list[float]] = defaultdict(list)
    unrecovered: Counter = Counter()
    lost, mislabelled, half = [], [], []
    started = time.monotonic()
    try:
        lab = LabDir.open(disk / "lab", create=True)
        while time.monotonic() - started < args.minutes * 60:
            kind = rng.choice(kinds)
            before = snapshot(lab, url)
            name, took, out = one_round(kind, rng, lab, sim, disk, args.per_class, args.speed, url)
            faults[kind] += 1
            if took is None:
                unrecovered[kind] += 1
            else:
                recovery[kind].append(took)
            result = audit(lab, sim.plans(), before, url)
            lost += result.lost
            mislabelled += result.mislabelled
            half += result.half_written
            print(f"{time.monotonic() - started:7.0f} s  {name:18s} recovered in "
                  f"{'-' if took is None else f'{took:.1f} s'}; {result.captures} captures"
                  + f"; lost {len(result.lost)}, mislabelled {len(result.mislabelled)}, half-written "
                  f"{len(result.half_written)}" + ("" if "Traceback" not in out else "  TRACEBACK"), flush=True)
            if "Traceback" in out:
                print(out[-3000:], flush=True)
        final = audit(lab, sim.plans(), catalog_url=url)
        row = {
            "minutes": round((time.monotonic() - started) / 60, 1), "speed": args.speed, "seed": args.seed,
            "catalog": args.catalog,
            "captures": final.captures, "by_class": final.by_class, "faults": dict(faults),
            "lost": len(lost), "mislabelled": len(mislabelled), "half_written": len(half),
            "unknown_files": len(final.unknown_files), "left_in_progress": final.in_progress,
            "unrecovered": dict(unrecovered),
            "recovery_s": {k: {"median": round(statistics.median(v), 2), "max": round(max(v), 2), "n": len(v)}
                           for k, v in sorted(recovery.items())},
            "problems": (lost + mislabelled + half)[:20],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(row, indent=2) + "\n")
        print(json.dumps(row, indent=2))
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
        down(args.prefix)


if __name__ == "__main__":
    main()
