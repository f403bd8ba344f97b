#!/usr/bin/env python3
"""Attacks that travel: leave-one-household-out accuracy of every feature set, beside random splits.

Runs standalone (``.venv/bin/python bench/bench_cross_household.py``). It writes
``--per-class`` synthetic captures of each class for every default simulated
household (``echolab.collector.sim.households.HOUSEHOLDS``: framing, network,
speaker and servers differ, the requests do not), reads each capture once
(``extract_record``, timed), and for every feature set, the study's, the
sequence sets and the framing-free ones, measures with one random forest
(``--trees`` trees, seed 0):

* random 80/20 stratified splits over all households (``--splits`` of them),
  the protocol of the study, where every home is seen in training;
* leave-one-household-out: train on all households but one, test on it, once
  per household, with no adaptation and with each unsupervised adaptation of
  ``echolab.analysis.compare.adapt`` (standardize, quantile, coral), which see
  the test home's features but never its labels.

The ratio it reports is the best framing-free set's leave-one-out accuracy
over the best packet-based set's, on the same captures in the same run.
``--json`` writes every number (default bench/results/cross_household.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from echolab.analysis.compare.adapt import ADAPTATIONS, adapt_matrix
from echolab.analysis.features.sets import FEATURE_SETS, FLOW_SETS, SEQUENCE_SETS, extract_record, make_transformer
from echolab.collector.sim.households import HOUSEHOLDS, write_household
from echolab.collector.sim.topology import Topology

CLASSES = ("information", "weather", "directions", "quotes", "unintelligible", "music")
SETS = (*FEATURE_SETS, "kfp", "cumul", *FLOW_SETS)
PACKET_SETS = (*FEATURE_SETS, *[s for s in SEQUENCE_SETS if s != "sequence"])


def forest(trees: int):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=trees, random_state=0, n_jobs=2)


def accuracy(X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, trees: int) -> tuple[float, float]:
    """(accuracy on *test*, seconds to fit) of a forest trained on *train* (standardised on it)."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X[train])
    start = time.perf_counter()
    model = forest(trees).fit(scaler.transform(X[train]), y[train])
    fit_s = time.perf_counter() - start
    return float((model.predict(scaler.transform(X[test])) == y[test]).mean()), fit_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "cross_household.json")
    args = ap.parse_args()
    from sklearn.model_selection import StratifiedShuffleSplit

    device = Topology().echo_ip
    with tempfile.TemporaryDirectory(prefix="echolab-households-") as tmp:
        start = time.perf_counter()
        paths, homes = [], []
        for h in HOUSEHOLDS:
            written = write_household(Path(tmp) / h.name, h, CLASSES, args.per_class, seed=args.seed)
            paths += written
            homes += [h.name] * len(written)
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        records = [extract_record(p, device) for p in paths]
        extract_s = time.perf_counter() - start
    y = np.asarray([p.parent.name for p in paths])
    homes_arr = np.asarray(homes)
    packets = {h.name: float(np.mean([len(r.seq_sizes) for r, g in zip(records, homes) if g == h.name]))
               for h in HOUSEHOLDS}
    print(f"{len(records)} captures ({len(HOUSEHOLDS)} households x {len(CLASSES)} classes x {args.per_class}); "
          f"written in {write_s:.1f} s, read in {extract_s:.1f} s ({1e3 * extract_s / len(records):.1f} ms each)")
    print("mean packets per capture: " + ", ".join(f"{k} {v:.0f}" for k, v in packets.items()))

    results: dict[str, dict] = {}
    splitter = StratifiedShuffleSplit(n_splits=args.splits, test_size=0.2, random_state=args.seed)
    for set_name in SETS:
        start = time.perf_counter()
        X = make_transformer(set_name).fit_transform(records)
        transform_s = time.perf_counter() - start
        rnd, fit_times = [], []
        for train, test in splitter.split(X, y):
            acc, fit_s = accuracy(X, y, train, test, args.trees)
            rnd.append(acc)
            fit_times.append(fit_s)
        loho: dict[str, dict[str, float]] = {}
        for method in ADAPTATIONS:
            per_home = {}
            for h in HOUSEHOLDS:
                test = np.flatnonzero(homes_arr == h.name)
                train = np.flatnonzero(homes_arr != h.name)
                Xa = adapt_matrix(X, homes_arr, method, test)
                per_home[h.name], _ = accuracy(Xa, y, train, test, args.trees)
            loho[method] = per_home
        results[set_name] = {
            "columns": int(X.shape[1]), "transform_s": transform_s, "fit_s": float(np.mean(fit_times)),
            "random_accuracy": float(np.mean(rnd)), "random_std": float(np.std(rnd)),
            "loho": {m: {"mean": float(np.mean(list(v.values()))), "per_home": v} for m, v in loho.items()},
        }
        r = results[set_name]
        print(f"{set_name:>10}: random {100 * r['random_accuracy']:5.1f}%  leave-one-household-out "
              + "  ".join(f"{m} {100 * r['loho'][m]['mean']:5.1f}%" for m in ADAPTATIONS)
              + f"  (fit {r['fit_s']:.2f} s, transform {1e3 * transform_s:.0f} ms)", flush=True)

    def best(sets: tuple[str, ...], method: str) -> tuple[str, float]:
        name = max(sets, key=lambda s: results[s]["loho"][method]["mean"])
        return name, results[name]["loho"][method]["mean"]

    ratios = {}
    for method in ADAPTATIONS:
        (fb, fa), (pb, pa) = best(FLOW_SETS, method), best(PACKET_SETS, method)
        ratios[method] = {"best_framing_free": fb, "accuracy": fa, "best_packet_based": pb, "packet_accuracy": pa,
                          "ratio": fa / pa if pa else None}
        print(f"adaptation {method}: best framing-free {fb} {100 * fa:.1f}% vs best packet-based {pb} "
              f"{100 * pa:.1f}%: {fa / pa if pa else float('nan'):.2f}x")
    out = {"households": [h.name for h in HOUSEHOLDS], "classes": list(CLASSES), "per_class": args.per_class,
           "trees": args.trees, "splits": args.splits, "seed": args.seed, "captures": len(records),
           "chance": 1 / len(CLASSES), "write_s": write_s, "extract_s": extract_s, "packets_per_capture": packets,
           "sets": results, "ratios": ratios, "cpus": os.cpu_count(), "load": os.getloadavg(),
           "python": sys.version.split()[0], "machine": platform.machine()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
