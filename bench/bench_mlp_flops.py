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
take for the study's MLP grid. The same products are then timed alone, at the
stacks' own shapes (:func:`_products_rates`): whether the products themselves
run near peak on these small matrices, and how much of the fit is the
element-by-element work between them. Last, the same stacks with one unit in
each hidden layer, trained for a few epochs (:func:`_step_overhead`), give the
cost of a mini-batch step that does not grow with the hidden layers (the
output layer's softmax and log loss, the batch's assembly, the Python around
them), charged at the grid's own number of steps.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -P bench/bench_mlp_flops.py --lab /tmp/DEMO-780 \
        --out bench/results/mlp_flops.json

The trainer runs as the comparison's workers run it: fused passes where numba is installed (the
``fast`` extra); ``ECHOLAB_MLP_FUSED=0`` in the environment measures its NumPy passes instead.
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

    from echolab.analysis.compare import mlpfused
    from echolab.analysis.compare.execute import keep_freed_memory

    keep_freed_memory()  # as the comparison's workers run (else page faults weigh on every temporary array)
    spec = load_grids()["mlp"]
    candidates = list(ParameterGrid(spec.param_grid()))
    with Catalog.open(LabDir.open(args.lab)) as cat:
        src = catalog_source(cat).canonical()
    out: dict = {"lab": str(args.lab), "captures": len(src.y), "sets": {}, "fused_passes": mlpfused.available()}
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
            fixed, steps = _step_overhead(est, candidates, Xt, y, rows, models)
        per_network = [6 * sum(a * b for a, b in zip(units[:-1], units[1:])) * len(r) * m.n_iter_
                       for row in models for r, m in zip(rows, row)
                       for units in [[Xt.shape[1], *m.hidden_layer_sizes, len(m.classes_)]]]
        flop = sum(per_network)
        out["sets"][name] = {"fixed_cpu_s": fixed, "steps": steps,
                             "columns": int(Xt.shape[1]), "networks": len(candidates) * len(rows),
                             "classes": int(len(np.unique(y))), "flop_of_network": per_network,
                             "candidate_of_network": [i for i in range(len(candidates)) for _ in rows],
                             "epochs": [m.n_iter_ for row in models for m in row], "gflop": flop / 1e9,
                             "cpu_s": cpu, "gflop_per_s": flop / 1e9 / cpu}
        print(f"{name}: {len(candidates) * len(rows)} networks, {flop / 1e9:.0f} GFLOP in {cpu:.2f} CPU-s "
              f"= {flop / 1e9 / cpu:.1f} GFLOP/s; {steps} mini-batch steps, their fixed cost {fixed:.2f} CPU-s",
              flush=True)
    products = _products_rates(out["sets"], candidates)
    a = np.random.rand(2000, 2000).astype(np.float32)
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        a @ a
        best = max(best, 2 * 2000 ** 3 / (time.perf_counter() - start) / 1e9)
    total = sum(v["gflop"] for v in out["sets"].values())
    cpu = sum(v["cpu_s"] for v in out["sets"].values())
    achieved = total / cpu
    fixed = sum(v["fixed_cpu_s"] for v in out["sets"].values())
    out.update(fixed_cpu_s=fixed, peak_gflop_per_s=best, achieved_gflop_per_s=achieved, ratio=achieved / best,
               grid_gflop=total, floor_cpu_s=total / best, products_cpu_s=products,
               blas_threads=os.environ.get("OPENBLAS_NUM_THREADS"), load=os.getloadavg())
    print(f"peak (2000^3 float32 product): {best:.1f} GFLOP/s; the grids' {total:.0f} GFLOP ran at "
          f"{achieved:.1f} GFLOP/s ({100 * achieved / best:.0f}% of peak); at peak they would take "
          f"{total / best:.1f} CPU-s")
    print(f"the same products alone, at the stacks' own shapes: {products:.1f} of the {cpu:.1f} CPU-s "
          f"({total / products:.1f} GFLOP/s); the other {cpu - products:.1f} CPU-s are the element-by-element work")
    print(f"of which the fixed cost of the grids' mini-batch steps: {fixed:.1f} CPU-s (one-unit hidden layers, "
          f"the grids' own number of steps)")
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")


def _products_rates(sets: dict, candidates: list) -> float:
    """CPU seconds the grids' matrix products alone take at the lockstep stacks' own shapes.

    Per set and hidden-layer shape: a stack of all its networks (both activations x 3 folds) on full
    200-row mini-batches (an epoch's shorter last batch is charged at their rate), the step's products as the trainer makes them (forward, weight gradients, the
    deltas passed back), timed over 50 steps; the shape's share of the grid's operations is then
    charged at that rate. What the fit took beyond this is the work between the products.
    """
    total = 0.0
    rng = np.random.default_rng(0)
    for info in sets.values():
        shapes: dict[tuple[int, ...], float] = {}
        n_classes = info["classes"]
        for c, flop in zip(info["candidate_of_network"], info["flop_of_network"]):
            hidden = tuple(candidates[c]["hidden_layer_sizes"])
            shapes[hidden] = shapes.get(hidden, 0.0) + flop
        for hidden, flop in shapes.items():
            units = [info["columns"], *hidden, n_classes]
            k = sum(1 for c in info["candidate_of_network"] if tuple(candidates[c]["hidden_layer_sizes"]) == hidden)
            ws = [rng.standard_normal((k, a, b)).astype(np.float32) for a, b in zip(units[:-1], units[1:])]
            acts = [rng.standard_normal((k, 200, u)).astype(np.float32) for u in units]
            steps = 50
            start = time.process_time()
            for _ in range(steps):
                for i, w in enumerate(ws):
                    np.matmul(acts[i], w)
                for i in range(len(ws) - 1, -1, -1):
                    np.matmul(acts[i].transpose(0, 2, 1), acts[i + 1])
                    if i:
                        np.matmul(acts[i + 1], ws[i].transpose(0, 2, 1))
            seconds = time.process_time() - start
            # counted as the grid's operations are (6 per weight and row), so the shape's share converts at
            # this rate into the products' time (the trainer passes no delta back to the inputs)
            step_flop = 6 * 200 * k * sum(a * b for a, b in zip(units[:-1], units[1:]))
            total += flop / (step_flop * steps / seconds)
    return total


def _step_overhead(est, candidates: list, X: np.ndarray, y: np.ndarray, rows: list, models: list
                   ) -> tuple[float, int]:
    """CPU seconds of the grid's mini-batch steps that do not grow with the hidden layers, and their number.

    Per hidden-layer shape, the shape's candidates with one unit in each hidden layer (the same depth, the
    same stack of networks) are trained for 20 epochs, best of 3, with no stopping: their time per step is
    the step's fixed cost. The real stack took as many steps as its longest-training network's epochs
    times the mini-batches of an epoch; the two multiplied, summed over the shapes.
    """
    from sklearn.base import clone

    from echolab.analysis.compare import mlpbatch

    epochs = 20
    batches = -(-max(len(r) for r in rows) // 200)
    fixed, steps = 0.0, 0
    for hidden in dict.fromkeys(tuple(c["hidden_layer_sizes"]) for c in candidates):
        mine = [i for i, c in enumerate(candidates) if tuple(c["hidden_layer_sizes"]) == hidden]
        tiny = [{**candidates[i], "hidden_layer_sizes": tuple(1 for _ in hidden)} for i in mine]
        probe = clone(est).set_params(max_iter=epochs, n_iter_no_change=10 * epochs)
        best = np.inf
        for _ in range(3):
            start = time.process_time()
            mlpbatch.fit_many(probe, tiny, X, y, rows)
            best = min(best, time.process_time() - start)
        real = max(m.n_iter_ for i in mine for m in models[i]) * batches
        fixed += best / (epochs * batches) * real
        steps += real
    return fixed, steps


if __name__ == "__main__":
    main()
