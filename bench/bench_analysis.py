"""Benchmark: ``echolab analyze run`` against a plain scikit-learn script of the same protocol.

Both run the full comparison (3 feature sets x 6 models x TRIALS trials) on the
same matrices: by default a synthetic data set shaped like the study's (780
captures; 22 / 30 / 52 columns), or with ``--lab DIR`` the real features of that
lab's catalog. The plain script (bench/plain_protocol.py) runs one job at a
time; echolab runs with its defaults (every core). Both define trial t the same
way, so their per-trial accuracies agree exactly for every model that echolab
computes in double precision, and within noise for the MLP, which the shipped
grids train in single precision; the benchmark reports the difference of mean
accuracy per feature set and model (the goal: within 0.5 percentage points).

It also reruns echolab unchanged (everything from the trial cache) and
prints where the time goes per model. Beside the JSON it draws both as a PNG
(the same name, ``.png``): CPU seconds per model, plain against echolab, and
each cell's difference of mean accuracy against the 0.5-point goal.
``--plot RESULTS.json`` draws the picture of an earlier run without running
anything.

    .venv/bin/python bench/bench_analysis.py --trials 5
    .venv/bin/python bench/bench_analysis.py --lab lab --trials 10
    .venv/bin/python bench/bench_analysis.py --plot bench/results/bench_analysis_780_quiet.json

The plain script's time grows linearly with trials: run a few and
multiply to estimate 100 (the output says so when it extrapolates).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# the installed echolab (scripts/setup.sh), not the checkout: its folders are mapped into the package

from echolab.analysis.compare.matrices import build_matrix  # noqa: E402
from echolab.analysis.compare.runner import run_analysis  # noqa: E402
from echolab.analysis.compare.sources import catalog_source  # noqa: E402
from echolab.analysis.compare.synthetic import synthetic_source  # noqa: E402
from echolab.analysis.compare.specs import RunSettings, study_features  # noqa: E402
from echolab.db.catalog import Catalog  # noqa: E402
from echolab.labdir import LabDir  # noqa: E402

FULL_TRIALS = 100


def print_progress(task: str, done: int, total: int | None) -> None:
    """The library's progress callback, as one line on stderr rewritten in place."""
    sys.stderr.write(f"\r{task}: {done}/{total or '?'}" + ("\n" if done == total else ""))


def load_source(lab: Path | None):
    if lab is None:
        return synthetic_source(130), "synthetic, shaped like the study (780 x 22/30/52)"
    with Catalog.open(LabDir.open(lab)) as cat:
        return catalog_source(cat, progress=print_progress), f"real features of {lab}"


def write_matrices(source, path: Path) -> dict[str, int]:
    src = source.canonical()
    arrays = {"y": src.y}
    shapes = {}
    for spec in study_features():
        X = build_matrix(src, spec).X
        arrays["X_" + spec.key] = X
        shapes[spec.key] = X.shape[1]
    np.savez(path, **arrays)
    return shapes


def load1() -> float:
    """The 1-minute load average: other people's work on a shared machine shows here."""
    return round(os.getloadavg()[0], 2)


def run_plain(npz: Path, trials: int, seed: int, *, one_blas_thread: bool = False) -> dict:
    """The plain script as a user runs it (library thread defaults), or with BLAS held to one thread."""
    env = dict(os.environ)
    if one_blas_thread:
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    load_before = load1()
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "plain_protocol.py"), str(npz), "--trials",
                          str(trials), "--seed", str(seed)], check=True, stdout=subprocess.PIPE, text=True, env=env)
    result = json.loads(out.stdout)
    result["wall"] = time.perf_counter() - t0
    result["load"] = [load_before, load1()]
    return result


def run_echolab(source, trials: int, seed: int, jobs: int | None, tmp: Path) -> tuple[dict, float, float]:
    with Catalog.open(LabDir.open(tmp / "lab", create=True)) as cat:
        load_before = load1()
        t0 = time.perf_counter()
        res = run_analysis(cat, source, RunSettings(trials=trials, seed=seed), name="bench", jobs=jobs,
                           progress=print_progress if sys.stderr.isatty() else None)
        first = time.perf_counter() - t0
        res.run.summary["load"] = [load_before, load1()]
        t0 = time.perf_counter()
        again = run_analysis(cat, source, RunSettings(trials=trials, seed=seed), name="bench-again", jobs=jobs)
        cached = time.perf_counter() - t0
        assert again.computed == 0, "the rerun should come from the cache"
        return res.run.summary, first, cached


def compare(plain: dict, ours: dict) -> tuple[list[dict], float, bool]:
    rows, worst, identical = [], 0.0, True
    for fs, by_model in plain["cells"].items():
        for model, cell in by_model.items():
            mine = ours["cells"][fs][model]
            a, b = 100 * np.mean(cell["accuracies"]), mine["mean"]
            identical &= cell["accuracies"] == mine["accuracies"]
            worst = max(worst, abs(a - b))
            rows.append({"features": fs, "model": model, "plain": a, "echolab": b, "diff": b - a,
                         "plain_s": cell["seconds"], "echolab_cpu_s": mine["seconds"]})
    return rows, worst, identical


def plot(report: dict, out: Path) -> None:
    """Where the time goes per model (plain against echolab, CPU seconds) and each cell's accuracy difference."""
    from matplotlib.figure import Figure

    from echolab.analysis.compare.grids import load_grids

    grids = load_grids()
    per_model = sorted(report["per_model"].items(), key=lambda kv: kv[1]["plain_s"])
    names = [grids[m].short if m in grids else m for m, _ in per_model]
    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1]})
    at = np.arange(len(per_model))
    left.barh(at + 0.2, [m["plain_s"] for _, m in per_model], height=0.4, color="#b0b0b0", label="plain scikit-learn")
    left.barh(at - 0.2, [m["echolab_cpu_s"] for _, m in per_model], height=0.4, color="#4C72B0",
              label="echolab (CPU seconds in its workers)")
    left.set_yticks(at, names)
    left.set_xlabel(f"seconds, {report['trials']} trials x {len(report['columns'])} feature sets")
    left.legend(loc="lower right", frameon=False)
    left.set_title(f"plain {report['plain_seconds']:.0f} s, echolab {report['echolab_seconds']:.0f} s wall: "
                   f"x{report['speedup']:.2f}", fontsize=10)
    cells = report["cells"]
    sets = list(report["columns"])
    models = [m for m, _ in reversed(per_model)]
    for i, f in enumerate(sets):
        diffs = {c["model"]: c["diff"] for c in cells if c["features"] == f}
        right.scatter([diffs.get(m, np.nan) for m in models], np.arange(len(models)) + (i - 1) * 0.2, s=22,
                      label=f)
    right.axvspan(-0.5, 0.5, color="#e8f2e8", zorder=0, label="goal: within 0.5 points")
    right.axvline(0, color="#888", linewidth=0.8)
    right.set_yticks(np.arange(len(models)), [grids[m].short if m in grids else m for m in models])
    right.invert_yaxis()
    reach = max([1.0] + [abs(c["diff"]) + 0.2 for c in cells])
    right.set_xlim(-reach, reach)
    right.set_xlabel("mean accuracy, echolab minus plain (points)")
    right.legend(loc="lower right", frameon=False, fontsize=8)
    right.set_title(f"same splits; largest difference {report['max_mean_accuracy_diff_pp']:.2f} points", fontsize=10)
    for ax in (left, right):
        ax.spines["top"].set_visible(False)
        ax.spines["right"].set_visible(False)
    fig.suptitle(f"The study's protocol on {report['captures']} captures ({report['data']})", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lab", type=Path, help="Use this lab's real features instead of synthetic data.")
    ap.add_argument("--trials", type=int, default=5, help="Trials for both (default 5; the study used 100).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=None, help="echolab's worker processes (default: every core).")
    ap.add_argument("--skip-one-thread", action="store_true",
                    help="Skip the second baseline: the plain script with BLAS held to one thread.")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bench_analysis.json")
    ap.add_argument("--plot", type=Path, metavar="RESULTS.json",
                    help="Only draw the picture of an earlier run's results (beside it, .png), then stop.")
    args = ap.parse_args()
    if args.plot:
        plot(json.loads(args.plot.read_text()), args.plot.with_suffix(".png"))
        print(f"written {args.plot.with_suffix('.png')}")
        return

    source, what = load_source(args.lab)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        npz = tmp / "matrices.npz"
        shapes = write_matrices(source, npz)
        print(f"data: {what}; {len(source.y)} captures; columns {shapes}; trials {args.trials}", file=sys.stderr)
        plain = run_plain(npz, args.trials, args.seed)
        plain1 = None if args.skip_one_thread else run_plain(npz, args.trials, args.seed, one_blas_thread=True)
        ours, first, cached = run_echolab(source, args.trials, args.seed, args.jobs, tmp)

    rows, worst, identical = compare(plain, ours)
    if plain1:
        rows1, worst1, _ = compare(plain1, ours)
        worst = max(worst, worst1)
        for r, r1 in zip(rows, rows1):
            r["plain_one_thread_s"] = r1["plain_s"]
    per_model: dict[str, dict[str, float]] = {}
    for r in rows:
        m = per_model.setdefault(r["model"], {"plain_s": 0.0, "plain_one_thread_s": 0.0, "echolab_cpu_s": 0.0})
        m["plain_s"] += r["plain_s"]
        m["plain_one_thread_s"] += r.get("plain_one_thread_s", 0.0)
        m["echolab_cpu_s"] += r["echolab_cpu_s"]
    scale = FULL_TRIALS / args.trials
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_before": os.getloadavg()},
        "load_1min_before_after": {"plain": plain["load"], "plain_one_blas_thread": plain1["load"] if plain1 else None,
                                   "echolab": ours["load"]},
        "data": what, "captures": int(len(source.y)), "columns": shapes, "trials": args.trials,
        "plain_seconds": plain["seconds"], "echolab_seconds": first, "echolab_cached_seconds": cached,
        "speedup": plain["seconds"] / first,
        "plain_one_blas_thread_seconds": plain1["seconds"] if plain1 else None,
        "speedup_vs_one_blas_thread": plain1["seconds"] / first if plain1 else None,
        "extrapolated_100_trials": {"plain_s": plain["seconds"] * scale, "echolab_s": first * scale}
        if args.trials != FULL_TRIALS else None,
        "max_mean_accuracy_diff_pp": worst, "identical_per_trial": identical,
        "per_model": per_model, "cells": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    plot(report, args.out.with_suffix(".png"))

    print(f"\n{what}; {len(source.y)} captures; {args.trials} trials x 3 feature sets x 6 models")
    print(f"plain scikit-learn, one job at a time: {plain['seconds']:8.1f} s")
    if plain1:
        print(f"plain, BLAS held to one thread:        {plain1['seconds']:8.1f} s")
    print(f"echolab analyze run (jobs={args.jobs or os.cpu_count()}):      {first:8.1f} s   speed-up "
          f"x{plain['seconds'] / first:.2f}" + (f" (x{plain1['seconds'] / first:.2f} against one BLAS thread)"
                                                if plain1 else ""))
    print(f"echolab rerun, all from the cache:     {cached:8.1f} s")
    if args.trials != FULL_TRIALS:
        print(f"extrapolated to 100 trials (x{scale:g}, linear): plain {plain['seconds'] * scale / 60:.0f} min, "
              f"echolab {first * scale / 60:.0f} min")
    print(f"largest difference of mean accuracy: {worst:.3f} pp; per-trial accuracies identical: {identical}")
    print("1-minute load average before/after: plain " + str(plain["load"])
          + (f", plain 1 BLAS thread {plain1['load']}" if plain1 else "") + f", echolab {ours['load']}")
    print("\nmean accuracy per feature set and model (pp):")
    for r in rows:
        print(f"{r['features']:>10} {r['model']:>14}: plain {r['plain']:6.2f}  echolab {r['echolab']:6.2f}  "
              f"diff {r['diff']:+.2f}")
    print("\nwhere the time goes (seconds, summed over feature sets and trials):")
    print(f"{'model':>14} {'plain':>9} {'plain, 1 BLAS thread':>21} {'echolab, CPU':>13}")
    for model, m in sorted(per_model.items(), key=lambda kv: -kv[1]["plain_s"]):
        print(f"{model:>14} {m['plain_s']:9.1f} {m['plain_one_thread_s']:21.1f} {m['echolab_cpu_s']:13.1f}")
    print(f"\nwritten {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
