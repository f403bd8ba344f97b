#!/usr/bin/env python3
"""Writing the report of a run with many classes: time and peak memory, this report against the previous one.

A study of real captures from two homes has about 130 commands; its report
must stay quick to write and readable. This bench makes one stored run of
the six default models on the study's three feature sets over N captures of
C classes (default 150 classes, 1,000 captures, 5 trials; made-up trial
results through the comparison's own summary code, tests/reports.py) and
writes its report twice, each in a fresh child process on the same run:

* ``new``: ``echolab.analysis.compare.report.write_report`` as installed;
* ``old``: the report module and templates of commit ``--old`` (default: the
  last commit before the report learned to scale), read from git, on the
  same installed library otherwise.

Each child prints the seconds ``write_report`` took and the process's peak
resident memory (``ru_maxrss``, which counts matplotlib's C buffers, which
tracemalloc does not see), and the same before the call (the imports and
the run itself). The parent writes
both and their ratios to ``bench/results/report_scale.json``::

    .venv/bin/python -P bench/bench_report_scale.py            # 150 classes, 1,000 captures
    .venv/bin/python -P bench/bench_report_scale.py --classes 40 --captures 300
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
OLD = "f27b2dd79323622ba2563b57813ad958abd961c8"
MODULE = "analysis/compare"


def old_module(rev: str, folder: Path):  # noqa: ANN201 - a module
    """The report module of *rev* (with its templates and the study's numbers) loaded from *folder*."""
    def show(path: str) -> bytes:
        return subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True,
                              capture_output=True).stdout

    (folder / "templates").mkdir(parents=True)
    names = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", rev, f"{MODULE}/templates/"],
                           check=True, capture_output=True, text=True).stdout.split()
    for name in names:
        (folder / "templates" / Path(name).name).write_bytes(show(name))
    (folder / "study_results.toml").write_bytes(show(f"{MODULE}/study_results.toml"))
    (folder / "report.py").write_bytes(show(f"{MODULE}/report.py"))
    spec = importlib.util.spec_from_file_location("old_report", folder / "report.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_report"] = module
    spec.loader.exec_module(module)
    return module


def child(which: str, args: argparse.Namespace) -> None:
    from reports import scaled_run

    run = scaled_run(args.classes, args.captures, trials=args.trials)
    with tempfile.TemporaryDirectory(prefix="echolab-report-bench-") as tmp:
        if which == "old":
            module = old_module(args.old, Path(tmp) / "old")
        else:
            from echolab.analysis.compare import report as module
        import matplotlib.figure  # noqa: F401 - loaded before the clock starts for both paths

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        page = module.write_report(run, Path(tmp) / "out", force=True)
        seconds = time.perf_counter() - t
        written = sum(p.stat().st_size for p in page.parent.iterdir())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": round(seconds, 2), "max_rss_mb": round(rss / 1024, 1), "rss_before_mb": round(before / 1024, 1),
                      "report_mb": round(written / 2**20, 2)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=150)
    ap.add_argument("--captures", type=int, default=1000)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--old", default=OLD, help="git revision of the previous report (default: %(default)s)")
    ap.add_argument("--only", choices=("old", "new"), help="run one path (the other is not measured)")
    ap.add_argument("--child", choices=("old", "new"), help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "report_scale.json")
    args = ap.parse_args()
    if args.child:
        child(args.child, args)
        return
    out = {"classes": args.classes, "captures": args.captures, "trials": args.trials, "models": 6,
           "feature_sets": 3, "old_revision": args.old,
           "command": "bench/bench_report_scale.py " + " ".join(sys.argv[1:])}
    for which in [args.only] if args.only else ["new", "old"]:
        cmd = [sys.executable, "-P", __file__, "--child", which, "--classes", str(args.classes),
               "--captures", str(args.captures), "--trials", str(args.trials), "--old", args.old]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{which} report failed:\n{done.stderr}")
        out[which] = json.loads(done.stdout.strip().splitlines()[-1])
        print(which, out[which], flush=True)
    if "old" in out and "new" in out:
        out["speedup"] = round(out["old"]["seconds"] / out["new"]["seconds"], 1)
        out["rss_ratio"] = round(out["old"]["max_rss_mb"] / out["new"]["max_rss_mb"], 1)
        print(f"new report {out['speedup']}x faster, {out['rss_ratio']}x less peak memory")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
