"""Benchmark: how quickly the ``echolab`` command starts and answers.

Times, as whole processes (what a person at a terminal waits for), on a lab of
780 catalogued captures (130 per class of the study's six, written by the
simulation's synthetic model and imported once):

* ``echolab --help``
* ``echolab catalog ls``
* ``echolab catalog stats``

The named alternative, in the same run: ``sqlite-utils --help``, a Click command
line of a similar size over SQLite, installed in a virtual environment of its own
(``python3 -m venv /tmp/su-venv && /tmp/su-venv/bin/pip install sqlite-utils``; it wants a
newer Click than gTTS allows in echolab's). Goals: median ``echolab --help`` under 0.3 s, and no slower than
2x ``sqlite-utils --help``.

    .venv/bin/python bench/bench_cli.py --runs 15 --sqlite-utils /tmp/su-venv/bin/sqlite-utils \
        [--lab /tmp/bench-cli-lab] [--out bench/results/cli.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def make_lab(root: Path, per_class: int) -> None:
    """A lab of ``per_class`` synthetic captures per study class (made once, then reused)."""
    import numpy as np

    from echolab.collector.sim import synthetic
    from echolab.db.catalog import Catalog
    from echolab.db.transfer import import_captures
    from echolab.labdir import LabDir
    from echolab.prompts.classes import STUDY_CLASSES

    lab = LabDir.open(root, create=True)
    folder = root.parent / f"{root.name}-captures"
    for label in STUDY_CLASSES:
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rng = np.random.default_rng([STUDY_CLASSES.index(label), i])
            synthetic.write_capture(folder / label / f"{i}.pcap", label, float(rng.uniform(1.5, 3.0)), rng)
    with Catalog.open(lab) as cat:
        import_captures(cat, folder, campaign="bench", device_ip="10.77.0.2")
    shutil.rmtree(folder, ignore_errors=True)


def time_command(argv: list[str], runs: int, env: dict[str, str]) -> dict[str, float]:
    subprocess.run(argv, capture_output=True, env=env, check=True)  # warm the file cache once
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, env=env, check=True)
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--lab", type=Path, default=Path("/tmp/bench-cli-lab"))
    parser.add_argument("--per-class", type=int, default=130)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--sqlite-utils", type=Path, default=Path("/tmp/su-venv/bin/sqlite-utils"))
    args = parser.parse_args()

    sqlite_utils = args.sqlite_utils
    if not sqlite_utils.exists():
        sys.exit("the alternative is missing: python3 -m venv /tmp/su-venv && /tmp/su-venv/bin/pip install "
                 "sqlite-utils (or pass --sqlite-utils PATH)")
    if not (args.lab / "catalog.sqlite").exists():
        print(f"making a lab of {6 * args.per_class} captures at {args.lab} ...", flush=True)
        make_lab(args.lab, args.per_class)
    env = {k: v for k, v in os.environ.items() if k != "ECHOLAB_CATALOG_URL"}
    echolab = [str(BIN / "echolab"), "--lab", str(args.lab)]
    cases = {
        "echolab --help": [*echolab, "--help"],
        "echolab catalog ls": [*echolab, "catalog", "ls"],
        "echolab catalog stats": [*echolab, "catalog", "stats"],
        "sqlite-utils --help": [str(sqlite_utils), "--help"],
    }
    results = {name: time_command(argv, args.runs, env) for name, argv in cases.items()}
    base = results["sqlite-utils --help"]["median_s"]
    print(f"{'command':<24} {'median':>8} {'min':>8} {'max':>8}  vs sqlite-utils --help")
    for name, r in results.items():
        print(f"{name:<24} {r['median_s']:8.3f} {r['min_s']:8.3f} {r['max_s']:8.3f}  x{r['median_s'] / base:.2f}")
    load = os.getloadavg()
    print(f"load average during the run: {load[0]:.2f}")
    if args.out:
        args.out.write_text(json.dumps({"results": results, "load": load, "captures": 6 * args.per_class}, indent=2)
                            + "\n")


if __name__ == "__main__":
    main()
