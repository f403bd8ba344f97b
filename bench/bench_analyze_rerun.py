"""Benchmark: an unchanged ``echolab analyze run`` on a lab whose comparison is finished.

Everything is cached (features and trials), so the command has nothing to compute;
what it costs is start-up, reading the catalog and, in echolab before this change,
recomputing the summary and drawing every plot of the report again. Each
interpreter runs the same command on its own copy of the same lab, in the same
run of this script, one after the other: this echolab (the interpreter running the
script) and the named alternative, ``--baseline``: a Python with another echolab
installed (for example a virtual environment of the commit before the change).

    .venv/bin/python bench/bench_analyze_rerun.py --lab /tmp/DEMO-A --name demo-20x2-seed0 --trials 2 \\
        --baseline /tmp/venv-base/bin/python [--runs 5] [--out bench/results/analyze-rerun.json]
    .venv/bin/python bench/bench_analyze_rerun.py --lab /tmp/DEMO-780 --trials 1 -m knn \\
        --baseline /work/main/.venv/bin/python --out bench/results/analyze-rerun-unnamed.json

Without ``--name`` the command names no run: an unchanged rerun must find the
stored run by its settings and data (before this change it recomputed the
summary and wrote a new run and report every time).

Make the lab with ``echolab --lab /tmp/DEMO-A demo --per-class 20 --trials 2`` (root, a few
minutes). Each copy gets one untimed run first (it brings the copy's report up to date).
Wall time depends on what else the machine runs; CPU time (user + system of the
command) much less, so both are given, as medians.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the child, its output) of one run of *cmd*."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env={**os.environ, "COLUMNS": "120"})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out.stdout


def measure(python: str, lab: Path, args: list[str], runs: int) -> dict:
    cmd = [python, "-P", "-m", "echolab", "--lab", str(lab), "analyze", "run", *args]
    first = timed(cmd)[2]  # untimed: brings this copy's report up to date
    walls, cpus = [], []
    report = lab / "reports"
    stamps = {p: p.stat().st_mtime_ns for p in report.rglob("*") if p.is_file()}
    for _ in range(runs):
        wall, cpu, out = timed(cmd)
        walls.append(wall)
        cpus.append(cpu)
    rewritten = sum(p.stat().st_mtime_ns != t for p, t in stamps.items() if p.exists())
    return {"python": python, "command": cmd, "wall_median_s": statistics.median(walls),
            "cpu_median_s": statistics.median(cpus), "walls": walls, "cpus": cpus,
            "report_files_rewritten_in_timed_runs": rewritten,
            "first_output_line": first.strip().splitlines()[0] if first.strip() else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", type=Path, required=True, help="a lab whose comparison run is finished")
    parser.add_argument("--name", help="the run's name (default: none, an unnamed run, which must find its stored twin)")
    parser.add_argument("--model", "-m", action="append", default=[], help="run only these models (repeatable)")
    parser.add_argument("--trials", type=int, required=True, help="the run's trials")
    parser.add_argument("--baseline", required=True, help="a Python with the echolab to compare against")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path)
    opts = parser.parse_args()
    args = ["--trials", str(opts.trials), *(["--name", opts.name] if opts.name else [])]
    args += [a for m in opts.model for a in ("-m", m)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, python in (("this echolab", sys.executable), ("baseline", opts.baseline)):
            copy = Path(tmp) / label.replace(" ", "-")
            shutil.copytree(opts.lab, copy, symlinks=True)
            results[label] = measure(python, copy, args, opts.runs)
    ours, base = results["this echolab"], results["baseline"]
    summary = {
        "lab": str(opts.lab), "runs": opts.runs, "load_average": os.getloadavg(), "results": results,
        "wall_ratio_baseline_over_ours": base["wall_median_s"] / ours["wall_median_s"],
        "cpu_ratio_baseline_over_ours": base["cpu_median_s"] / ours["cpu_median_s"],
    }
    for label, r in results.items():
        print(f"{label:13} median wall {r['wall_median_s']:6.2f} s, CPU {r['cpu_median_s']:6.2f} s, "
              f"report files rewritten {r['report_files_rewritten_in_timed_runs']}  ({r['python']})")
    print(f"baseline / this echolab: wall x{summary['wall_ratio_baseline_over_ours']:.1f}, "
          f"CPU x{summary['cpu_ratio_baseline_over_ours']:.1f}")
    if opts.out:
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
