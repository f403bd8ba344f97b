#!/usr/bin/env python3
"""Benchmark: the lockstep MLP grid with its element-by-element passes fused (numba) against NumPy's passes.

One trial's MLP grid search of the study (6 candidates x 3 folds, then the refit of
the best candidate on the whole training part) on each feature set of a lab (the
training part of an 80/20 split), float32 as the shipped grids train it, one BLAS
thread as the comparison's workers run. The two engines are the same trainer
(``echolab.analysis.compare.mlpbatch``): the named alternative is its NumPy passes
(what a core install runs, or ``ECHOLAB_MLP_FUSED=0``), the other its passes compiled
by numba (``mlpfused``, the ``fast`` extra). They alternate ``--repeat`` times in one
process, on the same data, timed in CPU seconds; the best of each is compared. Each
grid's choice and fold scores (which every cross-validation fit's predictions make),
and the refit network's weights, epochs and loss curve, are checked to be bit for bit
the same (tests/test_analysis_mlpbatch.py compares every fit on small data).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -P bench/bench_mlp_fused.py --lab /tmp/DEMO-780 \\
        --out bench/results/mlp_fused.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lab", type=Path, required=True)
    ap.add_argument("--sets", default="tcptrace,histogram,combined")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold, train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    from echolab.analysis.compare import mlpfused
    from echolab.analysis.compare.execute import keep_freed_memory
    from echolab.analysis.compare.grids import load_grids
    from echolab.analysis.compare.matrices import build_matrix
    from echolab.analysis.compare.search import grid_search
    from echolab.analysis.compare.sources import catalog_source
    from echolab.analysis.compare.specs import FeatureSpec
    from echolab.db.catalog import Catalog
    from echolab.labdir import LabDir

    keep_freed_memory()  # as the comparison's workers run
    spec = load_grids()["mlp"]
    with Catalog.open(LabDir.open(args.lab)) as cat:
        src = catalog_source(cat).canonical()
    data = []
    for name in args.sets.split(","):
        X = build_matrix(src, FeatureSpec.parse(name)).X
        train, _ = train_test_split(np.arange(len(src.y)), test_size=0.2, stratify=src.y, random_state=0)
        Xt = StandardScaler().fit_transform(X[train]).astype(np.float32)
        y = np.asarray(src.y)[train]
        data.append((name, Xt, y, list(StratifiedKFold(3).split(Xt, y))))
    kernels = mlpfused.kernels()
    if kernels is None:
        raise SystemExit("numba is not installed (pip install 'echolab-toolkit[fast]'), or ECHOLAB_MLP_FUSED=0")
    est = MLPClassifier(**{**spec.params, "random_state": 0})
    times: dict[str, dict[str, list[float]]] = {name: {"numpy": [], "fused": []} for name, *_ in data}
    results: dict[tuple[str, str], list] = {}

    def one(engine: str, name: str, X: np.ndarray, y: np.ndarray, folds: list) -> None:
        mlpfused._kernels = kernels if engine == "fused" else False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.process_time()
            found = grid_search(est, spec.param_grid(), X, y, folds)
            times[name][engine].append(time.process_time() - start)
        m = found.best_estimator
        results[(engine, name)] = [found.best_params, list(found.mean_scores), m.n_iter_, m.loss_curve_,
                                   [w.tobytes() for w in m.coefs_ + m.intercepts_]]

    one("fused", *data[0])  # loads (or compiles) the kernels once, untimed
    for name in times:
        times[name]["fused"].clear()
    for r in range(args.repeat):
        for name, X, y, folds in data:
            for engine in (("numpy", "fused") if r % 2 == 0 else ("fused", "numpy")):
                one(engine, name, X, y, folds)
    same = all(results[("numpy", n)] == results[("fused", n)] for n in times)
    out: dict = {"lab": str(args.lab), "captures": len(src.y), "repeat": args.repeat, "sets": {},
                 "identical": same, "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"), "load": os.getloadavg()}
    for name, t in times.items():
        best_n, best_f = min(t["numpy"]), min(t["fused"])
        out["sets"][name] = {"numpy_cpu_s": t["numpy"], "fused_cpu_s": t["fused"], "ratio": best_n / best_f}
        print(f"{name}: NumPy passes {best_n:.2f} CPU-s, fused {best_f:.2f} CPU-s: x{best_n / best_f:.2f} (best of "
              f"{args.repeat})", flush=True)
    total_n = sum(min(t["numpy"]) for t in times.values())
    total_f = sum(min(t["fused"]) for t in times.values())
    out.update(numpy_cpu_s=total_n, fused_cpu_s=total_f, ratio=total_n / total_f)
    print(f"one trial's MLP grids (CV and refit), all sets: {total_n:.2f} against {total_f:.2f} CPU-s: "
          f"x{total_n / total_f:.2f}; identical fits and choices: {same}")
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    if not same:
        raise SystemExit("the fused passes changed a fit")


if __name__ == "__main__":
    main()
