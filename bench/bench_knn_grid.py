"""Benchmark: the study's k-NN grid search with one neighbour search per fold, against each candidate's own.

One trial's k-NN grid search (k in 1..11, uniform or distance weights, manhattan or
euclidean: 24 candidates, 3-fold stratified CV, refit) on each feature set of a lab, in
the same process, one thread, alternating ``--repeat`` times: echolab's ``grid_search``
as it runs (candidates alike but for k and weights share one neighbour search per
fold, ``search._neighbour_scores``) and the same search with that sharing turned off
(each candidate searches its own neighbours, as ``GridSearchCV`` does). Checks that both
give the same fold scores and choice.

    .venv/bin/python -P bench/bench_knn_grid.py --lab /tmp/DEMO-780 --out bench/results/knn_grid.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GRID = {"n_neighbors": [1, 3, 5, 7, 9, 11], "weights": ["uniform", "distance"], "metric": ["manhattan", "euclidean"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lab", type=Path, required=True)
    ap.add_argument("--sets", default="tcptrace,histogram,combined")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "knn_grid.json")
    args = ap.parse_args()

    from sklearn.model_selection import StratifiedKFold, train_test_split
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    from echolab.analysis.compare import search
    from echolab.analysis.compare.matrices import build_matrix
    from echolab.analysis.compare.sources import catalog_source
    from echolab.analysis.compare.specs import FeatureSpec
    from echolab.db.catalog import Catalog
    from echolab.labdir import LabDir

    with Catalog.open(LabDir.open(args.lab)) as cat:
        src = catalog_source(cat).canonical()
    shared = search._neighbour_scores
    result: dict[str, dict] = {}
    with threadpool_limits(limits=1):
        for name in args.sets.split(","):
            X_all, y_all = build_matrix(src, FeatureSpec.parse(name)).X, np.asarray(src.y)
            train, _ = train_test_split(np.arange(len(y_all)), test_size=0.2, stratify=y_all, random_state=args.seed)
            X, y = StandardScaler().fit_transform(X_all[train]), y_all[train]
            folds = list(StratifiedKFold(3).split(X, y))
            times: dict[str, list[float]] = {"shared": [], "own": []}
            found = {}
            for _ in range(args.repeat):
                for label, scorer in (("shared", shared), ("own", lambda *a: None)):
                    search._neighbour_scores = scorer
                    t0 = time.perf_counter()
                    found[label] = search.grid_search(KNeighborsClassifier(), GRID, X, y, folds)
                    times[label].append(time.perf_counter() - t0)
            search._neighbour_scores = shared
            best = {k: min(v) for k, v in times.items()}
            result[name] = {"rows": int(X.shape[0]), "columns": int(X.shape[1]), "seconds": times, "best_seconds": best,
                            "ratio_own_over_shared": best["own"] / best["shared"],
                            "same_scores": found["shared"].mean_scores == found["own"].mean_scores,
                            "same_choice": found["shared"].best_params == found["own"].best_params}
            print(f"{name} ({X.shape[0]} x {X.shape[1]}): own searches {best['own']:.3f} s, shared "
                  f"{best['shared']:.3f} s: x{result[name]['ratio_own_over_shared']:.2f}; same scores "
                  f"{result[name]['same_scores']}, same choice {result[name]['same_choice']}")
    out = {"lab": str(args.lab), "grid": GRID, "repeat": args.repeat, "load_1min": os.getloadavg()[0], "sets": result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
