#!/usr/bin/env python3
"""How close the lockstep MLP grid comes to this machine's arithmetic peak: the floor under its time.

One trial's MLP grid search of the study (6 candidates x 3 folds, lockstep,
float32, one BLAS thread as the comparison's workers run) on one feature set of
a lab (``--lab``; the training part of an 80/20 split), timed in CPU seconds.
Its arithmetic is counted from each fitted network's epochs: per row and
epoch, 6 floating-point operations per weight (2 forward, 4 backward). The
named alternative is the machine's own peak for the same kind of work: a
2000 x 2000 x 2000 float32 matrix product with the same BLAS, one thread. The
ratio achieved / peak says how much of the MLP's time is arithmetic and how
much is the rest (activations, Adam, losses: element by element); the
grid's operations at peak are the least time any engine on this CPU could
take for the study's MLP grid.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -P bench/bench_mlp_flops.py --lab /tmp/DEMO-780 \
        --out bench/results/mlp_flops.json
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
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import ParameterGrid, StratifiedKFold, train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    from echolab.analysis.compare import mlpbatch
    from echolab.analysis.compare.grids import load_grids
    from echolab.analysis.compare.matrices import build_matrix
    from echolab.analysis.compare.sources import catalog_source
    from echolab.analysis.compare.specs import FeatureSpec
    from echolab.db.catalog import Catalog
    from echolab.labdir import LabDir

    spec = load_grids()["mlp"]
    candidates = list(ParameterGrid(spec.param_grid()))
    with Catalog.open(LabDir.open(args.lab)) as cat:
        src = catalog_source(cat).canonical()
    out: dict = {"lab": str(args.lab), "captures": len(src.y), "sets": {}}
    for name in args.sets.split(","):
        X = build_matrix(src, FeatureSpec.parse(name)).X
        train, _ = train_test_split(np.arange(len(src.y)), test_size=0.2, stratify=src.y, random_state=0)
        Xt = StandardScaler().fit_transform(X[train]).astype(np.float32)
        y = np.asarray(src.y)[train]
        rows = [tr for tr, _ in StratifiedKFold(3).split(Xt, y)]
        est = MLPClassifier(**{**spec.params, "random_state": 0})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.process_time()
            models = mlpbatch.fit_many(est, candidates, Xt, y, rows)
            cpu = time.process_time() - start
        flop = 0
        for row in models:
            for r, m in zip(rows, row):
                units = [Xt.shape[1], *m.hidden_layer_sizes, len(m.classes_)]
                flop += 6 * sum(a * b for a, b in zip(units[:-1], units[1:])) * len(r) * m.n_iter_
        out["sets"][name] = {"columns": int(Xt.shape[1]), "networks": len(candidates) * len(rows),
                             "epochs": [m.n_iter_ for row in models for m in row], "gflop": flop / 1e9,
                             "cpu_s": cpu, "gflop_per_s": flop / 1e9 / cpu}
        print(f"{name}: {len(candidates) * len(rows)} networks, {flop / 1e9:.0f} GFLOP in {cpu:.2f} CPU-s "
              f"= {flop / 1e9 / cpu:.1f} GFLOP/s", flush=True)
    a = np.random.rand(2000, 2000).astype(np.float32)
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        a @ a
        best = max(best, 2 * 2000 ** 3 / (time.perf_counter() - start) / 1e9)
    total = sum(v["gflop"] for v in out["sets"].values())
    achieved = total / sum(v["cpu_s"] for v in out["sets"].values())
    out.update(peak_gflop_per_s=best, achieved_gflop_per_s=achieved, ratio=achieved / best,
               grid_gflop=total, floor_cpu_s=total / best, blas_threads=os.environ.get("OPENBLAS_NUM_THREADS"),
               load=os.getloadavg())
    print(f"peak (2000^3 float32 product): {best:.1f} GFLOP/s; the grids' {total:.0f} GFLOP ran at "
          f"{achieved:.1f} GFLOP/s ({100 * achieved / best:.0f}% of peak); at peak they would take "
          f"{total / best:.1f} CPU-s")
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
