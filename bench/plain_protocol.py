"""The study's protocol as a plain scikit-learn script, one job at a time: the benchmark's baseline.

Reads feature matrices from an .npz file (arrays ``y`` and ``X_<feature set>``,
as bench_analysis.py writes them) and the grids from analysis/compare/grids.toml, and
runs, for every feature set, model and trial, one after the other:
stratified 80/20 split, StandardScaler fit on the training part, GridSearchCV
with stratified 3-fold CV (n_jobs=1), refit, test accuracy. Trial t uses the
seed ``SeedSequence([seed, t])``, which is how the protocol defines its trials,
so its numbers can be compared one to one with ``echolab analyze run``.

It deliberately uses nothing of echolab: no cache, no parallelism, library
defaults for threads. Prints one JSON object: accuracies and seconds per cell.

    python bench/plain_protocol.py matrices.npz --trials 10 --seed 0 > plain.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
import warnings
from importlib import import_module
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, StratifiedShuffleSplit
from sklearn.preprocessing import StandardScaler

GRIDS = Path(__file__).resolve().parent.parent / "analysis" / "compare" / "grids.toml"


def models(grids_file: Path) -> dict[str, tuple[type, dict, dict]]:
    out = {}
    for name, table in tomllib.loads(grids_file.read_text())["models"].items():
        if not table.get("default", True):  # the sequence attacks' models: not the study's six
            continue
        module, _, cls = table["estimator"].rpartition(".")
        tuples = lambda k, v: tuple(v) if k == "hidden_layer_sizes" and isinstance(v, list) else v  # noqa: E731
        grid = {k: [tuples(k, v) for v in vs] for k, vs in table.get("grid", {}).items()}
        out[name] = (getattr(import_module(module), cls), dict(table.get("params", {})), grid)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("matrices", type=Path)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grids", type=Path, default=GRIDS)
    ap.add_argument("--models", nargs="*", default=None)
    args = ap.parse_args()
    data = np.load(args.matrices, allow_pickle=False)
    y = data["y"]
    feature_sets = [k[2:] for k in data.files if k.startswith("X_")]
    specs = models(args.grids)
    warnings.simplefilter("ignore", ConvergenceWarning)
    result: dict = {"trials": args.trials, "seed": args.seed, "cells": {}}
    start = time.perf_counter()
    for fs in feature_sets:
        X = data["X_" + fs]
        for name, (cls, params, grid) in specs.items():
            if args.models and name not in args.models:
                continue
            accs, t0 = [], time.perf_counter()
            for t in range(args.trials):
                rs = int(np.random.SeedSequence([args.seed, t]).generate_state(1)[0])
                split = StratifiedShuffleSplit(n_splits=1, test_size=0.2, random_state=rs)
                train, test = next(split.split(X, y))
                scaler = StandardScaler().fit(X[train])
                est = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})
                if "random_state" in est.get_params():
                    est.set_params(random_state=rs)
                search = GridSearchCV(est, grid, cv=StratifiedKFold(3), scoring="accuracy", n_jobs=1)
                search.fit(scaler.transform(X[train]), y[train])
                accs.append(float(accuracy_score(y[test], search.predict(scaler.transform(X[test])))))
            secs = time.perf_counter() - t0
            result["cells"].setdefault(fs, {})[name] = {"accuracies": accs, "seconds": secs}
            print(f"{fs:>10} {name:>14}: {100 * np.mean(accs):6.2f}%  {secs:7.1f} s", file=sys.stderr, flush=True)
    result["seconds"] = time.perf_counter() - start
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
