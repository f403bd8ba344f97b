#!/usr/bin/env python3
"""One release's trials against another's, measured side by side on a machine whose speed drifts.

Runs the study's protocol for a few trials (every feature set, every model of
the grids file, one BLAS thread, in this process) with whatever echolab the
interpreter imports, and writes each cell's outcome and each model's CPU
seconds. The named alternative is another release of echolab, installed in
another environment, running the very same command at the very same time on
the other core:

    taskset -c 0 OLD/bin/python -P bench/bench_trials_paired.py --lab LAB --out old.json &
    taskset -c 1 .venv/bin/python -P bench/bench_trials_paired.py --lab LAB --out new.json
    # then again with the cores swapped; compare with --compare old.json new.json

On a shared virtual machine the speed of a core moves by 10-20% from one
minute to the next, more than a change of a few percent, so two runs one
after the other (even two whole 100-trial protocols) cannot tell such a
change from the machine's drift; two runs at the same time, each on its own
core, see the same drift. ``--compare`` also checks that both releases gave
the same outcome in every cell (accuracy, choice, fold score, confusion,
importances).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

MODELS = ("mlp", "random_forest", "svm_rbf", "svm_linear", "knn", "decision_tree")
SETS = ("tcptrace", "histogram", "combined")


def measure(lab: Path, trials: int, models: list[str]) -> dict:
    from sklearn.model_selection import train_test_split
    from threadpoolctl import threadpool_limits

    from echolab.analysis.compare.execute import keep_freed_memory
    from echolab.analysis.compare.grids import load_grids
    from echolab.analysis.compare.matrices import build_matrix
    from echolab.analysis.compare.sources import catalog_source
    from echolab.analysis.compare.specs import FeatureSpec
    from echolab.analysis.compare.trials import Split, run_trial
    from echolab.db.catalog import Catalog
    from echolab.labdir import LabDir

    keep_freed_memory()  # as the comparison's workers run
    with Catalog.open(LabDir.open(lab)) as cat:
        src = catalog_source(cat).canonical()
    y = np.asarray(src.y)
    specs = load_grids()
    outcomes, seconds = {}, {m: 0.0 for m in models}
    with threadpool_limits(1):
        for name in SETS:
            X = build_matrix(src, FeatureSpec.parse(name)).X
            for trial in range(trials):
                train, test = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=100 + trial)
                split = Split(trial, np.sort(train), np.sort(test))
                for model in models:
                    start = time.process_time()
                    outcome = run_trial(X, y, split, specs[model], sorted(set(y)), seed=7)
                    seconds[model] += time.process_time() - start
                    outcomes[f"{name}/{model}/{trial}"] = {k: v for k, v in outcome.to_json().items() if k != "seconds"}
    return {"lab": str(lab), "trials": trials, "cpu_seconds": seconds, "total_cpu_seconds": sum(seconds.values()),
            "outcomes": outcomes}


def compare(old: dict, new: dict) -> None:
    """Each model both runs measured, their CPU seconds side by side; the cells both ran, outcome by outcome."""
    models = [m for m in old["cpu_seconds"] if m in new["cpu_seconds"]]
    if not models:
        raise SystemExit("the two runs share no model")
    for model in models:
        s, t = old["cpu_seconds"][model], new["cpu_seconds"][model]
        print(f"{model:>14}: {s:7.2f} against {t:7.2f} CPU-s  x{s / t:.3f}")
    s, t = (sum(run["cpu_seconds"][m] for m in models) for run in (old, new))
    print(f"{'all':>14}: {s:7.2f} against {t:7.2f} CPU-s  x{s / t:.3f}")
    cells = [k for k in old["outcomes"] if k in new["outcomes"]]
    differ = [k for k in cells if old["outcomes"][k] != new["outcomes"][k]]
    print(f"outcomes: {len(cells) - len(differ)} of {len(cells)} cells both ran identical"
          + (f"; differ: {', '.join(differ)}" if differ else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lab", type=Path)
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--out", type=Path)
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("OLD.json", "NEW.json"))
    args = ap.parse_args()
    if args.compare:
        compare(*(json.loads(p.read_text()) for p in args.compare))
        return
    if args.lab is None:
        ap.error("--lab is needed to measure")
    result = measure(args.lab, args.trials, args.models.split(","))
    print({m: round(s, 2) for m, s in result["cpu_seconds"].items()}, "total", round(result["total_cpu_seconds"], 2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
