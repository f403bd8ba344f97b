#!/usr/bin/env python3
"""Speed of the sequence feature sets against the tcptrace set, and the deep model's training time.

Runs standalone (``.venv/bin/python bench/bench_sequence.py --captures LAB/captures --device-ip IP``)
on a folder of captures, each in a folder named for its class (a lab's
``captures/CAMPAIGN/CLASS/`` layout). In one run, in one process each, it times:

* the tcptrace set: one pass per capture with tcptrace's statistics
  (``extract_record``), then the tcptrace transformer;
* the sequence sets: one pass per capture collecting the device's packet
  sequence (``read_sequence``), then the kfp and cumul transformers;

each ``--repeat`` times (3), interleaved so that a change in the machine's load
hits both, and reports the best run of each and their ratio. Then it trains
the deep sequence model (``deep_cnn``'s parameters from ``analysis/compare/grids.toml``,
seed 0) once on every capture's ``sequence`` row and reports the time, the
epochs run and the device. ``--json FILE`` saves every number with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from echolab.analysis.compare.grids import load_grids
from echolab.analysis.features.sequence import read_sequence
from echolab.analysis.features.sets import extract_record, make_transformer, sequence_record


def tcptrace_set(paths: list[Path], device_ip: str) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    records = [extract_record(p, device_ip) for p in paths]
    X = make_transformer("tcptrace").fit_transform(records)
    return time.perf_counter() - start, X


def sequence_sets(paths: list[Path], device_ip: str) -> tuple[float, np.ndarray, list]:
    start = time.perf_counter()
    records = [sequence_record(*read_sequence(p, device_ip), device_ip) for p in paths]
    X = np.hstack([make_transformer(s).fit_transform(records) for s in ("kfp", "cumul")])
    return time.perf_counter() - start, X, records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captures", type=Path, required=True, help="folder of captures in class folders")
    ap.add_argument("--device-ip", required=True)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-deep", action="store_true", help="skip the deep model")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    paths = sorted(p for p in args.captures.rglob("*") if p.suffix in (".pcap", ".pcapng"))
    labels = np.asarray([p.parent.name for p in paths])
    packets = None
    runs: dict[str, list[float]] = {"tcptrace": [], "sequence": []}
    load_before = os.getloadavg()
    for _ in range(args.repeat):
        seconds, X_tcp = tcptrace_set(paths, args.device_ip)
        runs["tcptrace"].append(seconds)
        seconds, X_seq, records = sequence_sets(paths, args.device_ip)
        runs["sequence"].append(seconds)
        packets = sum(len(r.seq_sizes) for r in records)
    best = {k: min(v) for k, v in runs.items()}
    out: dict = {"captures": len(paths), "classes": sorted(set(labels.tolist())), "device_packets": packets,
                 "runs": runs, "best": best, "ratio_sequence_over_tcptrace": best["sequence"] / best["tcptrace"],
                 "columns": {"tcptrace": int(X_tcp.shape[1]), "kfp+cumul": int(X_seq.shape[1])},
                 "python": platform.python_version(), "cpus": os.cpu_count(), "load_before": load_before}
    print(f"{len(paths)} captures, {packets} device TCP packets, best of {args.repeat}:")
    print(f"  tcptrace set (extract_record + transformer):    {best['tcptrace']:.2f} s")
    print(f"  kfp + cumul (read_sequence + transformers):      {best['sequence']:.2f} s"
          f"  (ratio {out['ratio_sequence_over_tcptrace']:.2f})")
    if not args.no_deep:
        from echolab.analysis.compare.deep import SequenceCNNClassifier

        spec = load_grids()["deep_cnn"]
        model = spec.build(random_state=0)
        X = make_transformer("sequence").fit_transform(records).astype(np.float32)
        start = time.perf_counter()
        model.fit(X, labels)
        seconds = time.perf_counter() - start
        out["deep"] = {"seconds": seconds, "epochs": model.epochs_, "best_epoch": model.best_epoch_,
                       "device": model.device_, "params": spec.params, "input": list(X.shape),
                       "final": model.history_[-1]}
        print(f"  deep_cnn training on {X.shape[0]} x {X.shape[1]}: {seconds:.1f} s, {model.epochs_} epochs "
              f"(best {model.best_epoch_}), on {model.device_}; last epoch {model.history_[-1]}")
        assert isinstance(model, SequenceCNNClassifier)
    out["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
