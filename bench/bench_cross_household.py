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

* the two real-shaped households alone (``home-a`` and ``home-b``, shaped like
  the two real homes of REAL-ECHO-TRAFFIC.md): train on one, test on the
  other, both ways, with each adaptation; the protocol of the real-homes
  measurement, where training sees a single home.

Two diagnostics beside the sets: ``timing+rtts`` is the ``timing`` set with
the three ``*_rtts_count`` columns it had before (durations in round trips),
and ``--same-speaker`` gives every household a speaker of pace 1 (the framing,
network, report and servers still differ), to tell what the speaker costs
from what the framing and the network do (write it to another file with
``--json``).

``--commands N`` replaces the six study classes by N fixed commands, each one
utterance and one answer asked again and again
(``echolab.collector.sim.households.command_params``): the design of the
real-homes measurement (52 commands recorded in both homes, chance 1.9%),
where a class is one command, not a kind of prompt.

The ratio it reports is the best framing-free set's leave-one-out accuracy
over the best packet-based set's, on the same captures in the same run, for
both protocols.
``--json`` writes every number (default bench/results/cross_household.json).
"""

from __future__ import annotations

import argparse
import dataclasses
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
from echolab.collector.sim.households import HOUSEHOLDS, command_labels, command_params, write_household
from echolab.collector.sim.topology import Topology

CLASSES = ("information", "weather", "directions", "quotes", "unintelligible", "music")
SETS = (*FEATURE_SETS, "kfp", "cumul", *FLOW_SETS, "timing+rtts")
RETIRED = ("d2s_upload_duration_rtts_count", "s2d_answer_start_rtts_count", "s2d_answer_duration_rtts_count")
REAL_SHAPED = ("home-a", "home-b")
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


def gateway_profile(paths: list[Path], device: str, voice: str) -> dict[str, float]:
    """What the gateway shows of one household: the profile ``sim measure-household`` reads from its captures
    (:func:`echolab.collector.sim.households.measure_household`), plus the upload's bytes and data packets (the
    Echo's records and segments before the first answer record on the voice connection)."""
    from echolab.captures.reader import T_DATA_LEN, T_SRC, T_TS, iter_tcp, parse_addr
    from echolab.captures.records import tls_records
    from echolab.collector.sim.households import measure_household

    measured = measure_household(paths, device).household
    echo = parse_addr(device)
    upload_packets, upload_bytes = [], []
    for path in paths:
        recs = [r for r in tls_records(path, device) if r.content_type == 23 and voice in (r.src, r.dst)]
        answer_from = min(r.ts_us for r in recs if r.direction == -1)
        upload_bytes.append(sum(r.length + 5 for r in recs if r.direction == 1 and r.ts_us < answer_from))
        upload_packets.append(sum(1 for p in iter_tcp(path) if p[T_SRC] == echo and p[T_DATA_LEN] > 0
                                  and p[T_TS] < answer_from))
    return {"upload_record_length": measured.upload_record_bytes, "upload_record_share": measured.upload_record_share,
            "upload_bytes": float(np.mean(upload_bytes)), "upload_data_packets": float(np.mean(upload_packets)),
            "answer_record_max": measured.answer_record_bytes, "report_share": measured.report_prob,
            "rtt_ms": measured.rtt_s * 1e3}


def features(set_name: str, records: list) -> np.ndarray:
    """The set's matrix; ``timing+rtts`` is ``timing`` with its retired round-trip columns."""
    if set_name != "timing+rtts":
        return make_transformer(set_name).fit_transform(records)
    from echolab.analysis.features.flow import timing_values

    timing = make_transformer("timing").fit_transform(records)
    return np.hstack([timing, [[timing_values(r)[n] for n in RETIRED] for r in records]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--same-speaker", action="store_true", help="every household's speaker of pace 1")
    ap.add_argument("--commands", type=int, help="N fixed commands instead of the six study classes")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "cross_household.json")
    args = ap.parse_args()
    from sklearn.model_selection import StratifiedShuffleSplit

    device = Topology().echo_ip
    households = [dataclasses.replace(h, voice_pace=1.0) if args.same_speaker else h for h in HOUSEHOLDS]
    labels = tuple(command_labels(args.commands)) if args.commands else CLASSES
    base = command_params(labels) if args.commands else None
    with tempfile.TemporaryDirectory(prefix="echolab-households-") as tmp:
        start = time.perf_counter()
        paths, homes = [], []
        for h in households:
            written = write_household(Path(tmp) / h.name, h, labels, args.per_class, seed=args.seed, base=base)
            paths += written
            homes += [h.name] * len(written)
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        records = [extract_record(p, device) for p in paths]
        extract_s = time.perf_counter() - start
        gateway = {h.name: gateway_profile([p for p, g in zip(paths, homes) if g == h.name], device, h.voice_server)
                   for h in households}
    y = np.asarray([p.parent.name for p in paths])
    homes_arr = np.asarray(homes)
    packets = {h.name: float(np.mean([len(r.seq_sizes) for r, g in zip(records, homes) if g == h.name]))
               for h in HOUSEHOLDS}
    print(f"{len(records)} captures ({len(HOUSEHOLDS)} households x {len(labels)} classes x {args.per_class}); "
          f"written in {write_s:.1f} s, read in {extract_s:.1f} s ({1e3 * extract_s / len(records):.1f} ms each)")
    print("mean packets per capture: " + ", ".join(f"{k} {v:.0f}" for k, v in packets.items()))
    for name, g in gateway.items():
        print(f"{name}: upload records {g['upload_record_length']} bytes ({100 * g['upload_record_share']:.0f}%), "
              f"{g['upload_bytes'] / 1e3:.1f} KB in {g['upload_data_packets']:.0f} data packets; answer records up to "
              f"{g['answer_record_max']}; report after {100 * g['report_share']:.0f}%; round trip {g['rtt_ms']:.1f} ms")

    results: dict[str, dict] = {}
    splitter = StratifiedShuffleSplit(n_splits=args.splits, test_size=0.2, random_state=args.seed)
    for set_name in SETS:
        start = time.perf_counter()
        X = features(set_name, records)
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
        pair: dict[str, dict[str, float]] = {}
        for method in ADAPTATIONS:
            per_home = {}
            for test_home, train_home in zip(REAL_SHAPED, reversed(REAL_SHAPED)):
                test = np.flatnonzero(homes_arr == test_home)
                train = np.flatnonzero(homes_arr == train_home)
                keep = np.concatenate((train, test))
                Xa = adapt_matrix(X[keep], homes_arr[keep], method, np.arange(len(train), len(keep)))
                per_home[test_home], _ = accuracy(Xa, y[keep], np.arange(len(train)),
                                                  np.arange(len(train), len(keep)), args.trees)
            pair[method] = per_home
        results[set_name] = {
            "columns": int(X.shape[1]), "transform_s": transform_s, "fit_s": float(np.mean(fit_times)),
            "random_accuracy": float(np.mean(rnd)), "random_std": float(np.std(rnd)),
            "loho": {m: {"mean": float(np.mean(list(v.values()))), "per_home": v} for m, v in loho.items()},
            "pair": {m: {"mean": float(np.mean(list(v.values()))), "per_home": v} for m, v in pair.items()},
        }
        r = results[set_name]
        print(f"{set_name:>10}: random {100 * r['random_accuracy']:5.1f}%  leave-one-household-out "
              + "  ".join(f"{m} {100 * r['loho'][m]['mean']:5.1f}%" for m in ADAPTATIONS)
              + f"  | home-a<->home-b " + "  ".join(f"{m} {100 * r['pair'][m]['mean']:5.1f}%" for m in ADAPTATIONS)
              + f"  (fit {r['fit_s']:.2f} s, transform {1e3 * transform_s:.0f} ms)", flush=True)

    def best(sets: tuple[str, ...], protocol: str, method: str) -> tuple[str, float]:
        name = max(sets, key=lambda s: results[s][protocol][method]["mean"])
        return name, results[name][protocol][method]["mean"]

    ratios: dict[str, dict] = {"loho": {}, "pair": {}}
    for protocol, title in (("loho", "leave one household out"), ("pair", "home-a <-> home-b")):
        for method in ADAPTATIONS:
            (fb, fa), (pb, pa) = best(FLOW_SETS, protocol, method), best(PACKET_SETS, protocol, method)
            ratios[protocol][method] = {"best_framing_free": fb, "accuracy": fa, "best_packet_based": pb,
                                        "packet_accuracy": pa, "ratio": fa / pa if pa else None}
            print(f"{title}, adaptation {method}: best framing-free {fb} {100 * fa:.1f}% vs best packet-based "
                  f"{pb} {100 * pa:.1f}%: {fa / pa if pa else float('nan'):.2f}x")
    out = {"households": [h.name for h in HOUSEHOLDS], "classes": list(labels), "per_class": args.per_class,
           "commands": args.commands,
           "same_speaker": args.same_speaker, "trees": args.trees, "splits": args.splits, "seed": args.seed,
           "captures": len(records),
           "chance": 1 / len(labels), "write_s": write_s, "extract_s": extract_s, "packets_per_capture": packets,
           "gateway": gateway,
           "sets": results, "ratios": ratios, "cpus": os.cpu_count(), "load": os.getloadavg(),
           "python": sys.version.split()[0], "machine": platform.machine()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
