"""Benchmark: the study's MLP grid search, lockstep (mlpbatch) against scikit-learn's GridSearchCV.

One trial's grid search of the study's MLP (hidden layers (100), (300), (100, 100);
logistic or relu; 3-fold stratified CV, refit), on the same matrix, in the same
process, with one BLAS thread (as the comparison's workers run), alternating the two
``--repeat`` times: ``GridSearchCV(MLPClassifier(...))`` and echolab's
``grid_search``, which trains the 18 candidate x fold networks in lockstep
(echolab.analysis.compare.mlpbatch). Also checks that both chose the same candidate
with the same fold scores and that their refit models predict the same, and compares
each of the 18 cross-validation fits with ``MLPClassifier.fit`` alone on its fold: the
largest weight difference per activation, the predictions' agreement, the epochs.

Data: with ``--lab DIR``, the training part (80%) of that lab's combined feature set;
else a synthetic matrix of the same shape (624 x 55). ``--dtype`` float32 is what the
shipped grids train in.

    .venv/bin/python -P bench/bench_mlp_lockstep.py --lab /tmp/DEMO-780 --out bench/results/mlp_lockstep.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GRID = {"hidden_layer_sizes": [(100,), (300,), (100, 100)], "activation": ["logistic", "relu"]}


def matrix(lab: Path | None, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if lab is None:
        rng = np.random.RandomState(seed)
        y = np.arange(780) % 6
        X = rng.randn(780, 55) + 0.3 * y[:, None] * rng.randn(1, 55)
        what = "synthetic 780 x 55"
    else:
        from echolab.analysis.compare.matrices import build_matrix
        from echolab.analysis.compare.sources import catalog_source
        from echolab.analysis.compare.specs import FeatureSpec
        from echolab.db.catalog import Catalog
        from echolab.labdir import LabDir

        with Catalog.open(LabDir.open(lab)) as cat:
            src = catalog_source(cat).canonical()
        X, y = build_matrix(src, FeatureSpec.parse("combined")).X, src.y
        what = f"combined features of {lab} ({X.shape[0]} x {X.shape[1]})"
    train, _ = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=seed)
    return StandardScaler().fit_transform(X[train]), np.asarray(y)[train], what


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lab", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--jax", action="store_true",
                    help="Also time the 18 CV fits with the JAX engine (mlpjax; first call compiles) against NumPy's.")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mlp_lockstep.json")
    args = ap.parse_args()

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, ParameterGrid, StratifiedKFold
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    from echolab.analysis.compare.search import grid_search

    X, y, what = matrix(args.lab, args.seed)
    X = X.astype(args.dtype)
    est = MLPClassifier(max_iter=200, random_state=args.seed)
    folds = list(StratifiedKFold(3).split(X, y))
    times: dict[str, list[float]] = {"GridSearchCV": [], "lockstep": []}
    load = [os.getloadavg()[0]]
    warnings.simplefilter("ignore", ConvergenceWarning)
    with threadpool_limits(limits=1):
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            ref = GridSearchCV(est, GRID, cv=StratifiedKFold(3), scoring="accuracy", n_jobs=1).fit(X, y)
            times["GridSearchCV"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ours = grid_search(est, GRID, X, y, folds)
            times["lockstep"].append(time.perf_counter() - t0)
    load.append(os.getloadavg()[0])
    same = {
        "best_params": ours.best_params == ref.best_params_,
        "mean_scores": ours.mean_scores == ref.cv_results_["mean_test_score"].tolist(),
        "predictions": bool((ours.best_estimator.predict(X) == ref.predict(X)).all()),
        "max_weight_diff": max(float(np.abs(a - b).max()) for a, b in
                               zip(ours.best_estimator.coefs_, ref.best_estimator_.coefs_)),
    }
    # Every cross-validation fit, not only the refit best model: lockstep against MLPClassifier.fit one by one.
    from sklearn.base import clone

    from echolab.analysis.compare import mlpbatch

    grid_fits = mlpbatch.fit_many(est, list(ParameterGrid(GRID)), X, y, [train for train, _ in folds])
    diffs: dict[str, float] = {}
    agree, epochs = [], []
    for cand, row in zip(ParameterGrid(GRID), grid_fits):
        for (train, _), fitted in zip(folds, row):
            ref_fit = clone(est).set_params(**cand).fit(X[train], y[train])
            gap = max(float(np.abs(a - b).max()) for a, b in zip(fitted.coefs_ + fitted.intercepts_,
                                                                 ref_fit.coefs_ + ref_fit.intercepts_))
            diffs[cand["activation"]] = max(diffs.get(cand["activation"], 0.0), gap)
            agree.append(float((fitted.predict(X) == ref_fit.predict(X)).mean()))
            epochs.append(fitted.n_iter_ == ref_fit.n_iter_)
    same["cv_fits_max_weight_diff_by_activation"] = diffs
    same["cv_fits_prediction_agreement"] = float(np.mean(agree))
    same["cv_fits_same_epochs"] = bool(all(epochs))
    if args.jax:
        from echolab.analysis.compare import mlpjax

        cands = list(ParameterGrid(GRID))
        rows = [train for train, _ in folds]
        with threadpool_limits(limits=1):
            for label, engine in (("cv_fits_numpy", mlpbatch), ("cv_fits_jax_with_compile", mlpjax),
                                  ("cv_fits_jax", mlpjax)):
                t0 = time.perf_counter()
                fitted = engine.fit_many(est, cands, X, y, rows)
                times[label] = [time.perf_counter() - t0]
                if label == "cv_fits_numpy":
                    ref_pred = [[m.predict(X) for m in row] for row in fitted]
        same["jax_prediction_agreement"] = float(np.mean([(m.predict(X) == p).mean() for row, prow in
                                                          zip(fitted, ref_pred) for m, p in zip(row, prow)]))
    best = {k: min(v) for k, v in times.items()}
    result = {"data": what, "dtype": args.dtype, "fits": 19, "repeat": args.repeat, "seconds": times,
              "best_seconds": best, "ratio_gridsearchcv_over_lockstep": best["GridSearchCV"] / best["lockstep"],
              "load_1min_before_after": load, "cpus": os.cpu_count(), "same": same}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{what}, {args.dtype}, one BLAS thread, best of {args.repeat}: GridSearchCV {best['GridSearchCV']:.1f} s, "
          f"lockstep {best['lockstep']:.1f} s: x{result['ratio_gridsearchcv_over_lockstep']:.2f}; "
          + (f"CV fits: NumPy {best['cv_fits_numpy']:.1f} s, JAX {best['cv_fits_jax']:.1f} s "
             f"(+ compile: {best['cv_fits_jax_with_compile']:.1f} s); " if args.jax else "") +
          f"load {load}; same: {same}")


if __name__ == "__main__":
    main()
