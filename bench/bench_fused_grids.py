#!/usr/bin/env python3
"""Benchmark: the forest and RBF SVC grids with the compiled builder and shared kernel values, against without.

One trial's grid search of the study (the 3-fold cross-validation of every candidate, then the
refit of the best on the whole training part) for the random forest (2 criteria x 2 feature counts,
400 trees) and the RBF SVC (5 C x 5 gamma), on each feature set of a lab: the training part of an
80/20 split, standardized as the comparison's trials standardize it. The named alternative is the
previous release's engine, which a core install (or ``ECHOLAB_FOREST_FUSED=0`` and
``ECHOLAB_SVC_FUSED=0``) still runs: forests grown tree by tree by scikit-learn's builder
(:mod:`echolab.analysis.compare.fastfit`), and every libsvm fit computing its own kernel values.
The two alternate ``--repeat`` times in one process, on the same data, timed in CPU seconds; the
best of each is compared. Each grid's choice and fold scores, and the refit model (every tree's
nodes and values; the SVC's support, coefficients and intercepts) are checked to be the same.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -P bench/bench_fused_grids.py --lab /tmp/DEMO-780 \\
        --out bench/results/fused_grids.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def fingerprint(model) -> list:
    """What must be equal between the two engines' refits: every tree's state, or the SVC's solution."""
    if hasattr(model, "estimators_"):
        out = []
        for tree in model.estimators_:
            state = tree.tree_.__getstate__()
            nodes = state["nodes"]
            inner = nodes["left_child"] != -1
            out.append([state["max_depth"], state["values"].tobytes()]
                       + [nodes[f].tobytes() for f in ("left_child", "right_child", "feature", "threshold",
                                                       "impurity", "n_node_samples", "weighted_n_node_samples")]
                       + [nodes["missing_go_to_left"][inner].tobytes()])
        return out
    return [model.support_.tobytes(), model.dual_coef_.tobytes(), model.intercept_.tobytes()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lab", type=Path, required=True)
    ap.add_argument("--sets", default="tcptrace,histogram,combined")
    ap.add_argument("--models", default="random_forest,svm_rbf")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    from sklearn.model_selection import StratifiedKFold, train_test_split
    from sklearn.preprocessing import StandardScaler

    from echolab.analysis.compare import forestfused, svcfused
    from echolab.analysis.compare.execute import keep_freed_memory
    from echolab.analysis.compare.grids import load_grids
    from echolab.analysis.compare.matrices import build_matrix
    from echolab.analysis.compare.search import grid_search
    from echolab.analysis.compare.sources import catalog_source
    from echolab.analysis.compare.specs import FeatureSpec
    from echolab.db.catalog import Catalog
    from echolab.labdir import LabDir

    keep_freed_memory()  # as the comparison's workers run
    engines = {"forest": forestfused.kernels(), "svc": svcfused.kernels()}
    if None in engines.values():
        raise SystemExit("numba is not installed (pip install 'echolab-toolkit[fast]'), or the builder is turned off")
    grids = load_grids()
    with Catalog.open(LabDir.open(args.lab)) as cat:
        src = catalog_source(cat).canonical()
    data = []
    for name in args.sets.split(","):
        X = build_matrix(src, FeatureSpec.parse(name)).X
        train, _ = train_test_split(np.arange(len(src.y)), test_size=0.2, stratify=src.y, random_state=args.seed)
        Xt = StandardScaler().fit_transform(X[train])
        y = np.asarray(src.y)[train]
        data.append((name, Xt, y, list(StratifiedKFold(3).split(Xt, y))))

    def switch(fused: bool) -> None:
        forestfused._kernels = engines["forest"] if fused else False
        svcfused._kernels = engines["svc"] if fused else False

    times: dict[str, dict[str, list[float]]] = {}
    results: dict[tuple[str, str, str], list] = {}

    def one(engine: str, model: str, name: str, X: np.ndarray, y: np.ndarray, folds: list) -> None:
        switch(engine == "fused")
        spec = grids[model]
        start = time.process_time()
        found = grid_search(spec.build(random_state=args.seed), spec.param_grid(), X, y, folds)
        times.setdefault(f"{model}/{name}", {"fused": [], "scikit-learn": []})[engine].append(
            time.process_time() - start)
        results[(engine, model, name)] = [found.best_params, list(found.mean_scores), fingerprint(found.best_estimator)]

    models = args.models.split(",")
    for model in models:  # loads (or compiles) the kernels once, untimed
        one("fused", model, *data[0])
    times.clear()
    for r in range(args.repeat):
        for model in models:
            for name, X, y, folds in data:
                for engine in (("scikit-learn", "fused") if r % 2 == 0 else ("fused", "scikit-learn")):
                    one(engine, model, name, X, y, folds)
    switch(True)
    same = all(results[("fused", m, n)] == results[("scikit-learn", m, n)] for m in models for n, *_ in data)
    out: dict = {"lab": str(args.lab), "captures": len(src.y), "repeat": args.repeat, "seed": args.seed,
                 "identical": same, "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"), "load": os.getloadavg(),
                 "grids": {}}
    for key, t in times.items():
        best_s, best_f = min(t["scikit-learn"]), min(t["fused"])
        out["grids"][key] = {"scikit_learn_cpu_s": t["scikit-learn"], "fused_cpu_s": t["fused"],
                             "ratio": best_s / best_f}
        print(f"{key}: scikit-learn's builder/kernel {best_s:.2f} CPU-s, fused {best_f:.2f} CPU-s: "
              f"x{best_s / best_f:.2f} (best of {args.repeat})", flush=True)
    for model in models:
        total_s = sum(min(t["scikit-learn"]) for k, t in times.items() if k.startswith(model + "/"))
        total_f = sum(min(t["fused"]) for k, t in times.items() if k.startswith(model + "/"))
        out[model] = {"scikit_learn_cpu_s": total_s, "fused_cpu_s": total_f, "ratio": total_s / total_f}
        print(f"{model}, one trial's grids (CV and refit), all sets: {total_s:.2f} against {total_f:.2f} CPU-s: "
              f"x{total_s / total_f:.2f}")
    print(f"identical choices, fold scores and refits: {same}")
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    if not same:
        raise SystemExit("the fused engines changed a result")


if __name__ == "__main__":
    main()
