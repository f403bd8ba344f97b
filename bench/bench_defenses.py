#!/usr/bin/env python3
"""Benchmark: every defense at two or three settings against the sequence attacks, both training modes.

On simulated captures (the simulated lab's traffic model written straight to
pcap, ``echolab.collector.sim.synthetic``: ``--per-class`` captures of each of
the study's classes, imported into a fresh lab), in one run:

1. reading the captures (the feature cache's one pass per pcap): the named
   alternative each defense's time is compared with;
2. each defense setting applied to every capture in memory: seconds, and its
   ratio to reading the captures; overheads (bandwidth each way and in total,
   extra packets, delay);
3. ``analyze defenses``' library call on every setting: k-FP's forest on kfp and
   CUMUL's SVM on cumul (the grids file's models, or ``--grids``), trained on
   undefended and on defended traffic, ``--trials`` random splits made once on
   the undefended captures; the accuracy ratio defended / undefended; the
   Pareto front and the best setting per overhead budget, with the goal's
   budget (100% bandwidth, 30% delay, within twice chance).

    .venv/bin/python -P bench/bench_defenses.py --per-class 30 --trials 3

Figures go to bench/results/defenses.json and the plot to docs/images/defenses-sim.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

SETTINGS = (
    "mtu", "buckets", "buckets:sizes=512+1500",
    "dstar", "dstar:eps=0.02",
    "buflo", "buflo:rho=0.005,tau=2", "buflo:d=1000,rho=0.002,tau=1", "buflo:tau=40", "buflo:rho=0.05,tau=40",
    "csbuflo", "csbuflo:rho_min=0.002",
    "tamaraw", "tamaraw:rho_out=0.01,rho_in=0.001,L=50",
    "regulator", "regulator:N=300", "regulator:R=1000,D=0.5,N=200",
    "wtfpad", "wtfpad:idle=0.2",
    "front", "front:n=300,w=0.5-3", "front:n=60,w=0.5-2",
)


def build_lab(root: Path, per_class: int, seed: int) -> tuple[float, int]:
    """A lab of synthetic captures; returns (seconds to read them all once, captures)."""
    from echolab.analysis.features.store import build_features
    from echolab.collector.sim import synthetic
    from echolab.db.catalog import Catalog
    from echolab.db.transfer import import_captures
    from echolab.labdir import LabDir
    from echolab.prompts.classes import STUDY_CLASSES

    lab = LabDir.open(root / "lab", create=True)
    folder = root / "captures"
    for label in STUDY_CLASSES:
        (folder / label).mkdir(parents=True)
        for i in range(per_class):
            rng = np.random.default_rng([seed, STUDY_CLASSES.index(label), i])
            synthetic.write_capture(folder / label / f"{i}.pcap", label, float(rng.uniform(1.5, 3.0)), rng)
    with Catalog.open(lab) as cat:
        import_captures(cat, folder, campaign="sim", device_ip="10.77.0.2")
        start = time.perf_counter()
        report = build_features(cat, n_jobs=1)
        return time.perf_counter() - start, len(report.records)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=30)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grids", type=Path, help="grids file (default: the lab's, analysis/compare/grids.toml)")
    ap.add_argument("--defense", action="append", help="settings to run (default: every one of SETTINGS)")
    ap.add_argument("--json", type=Path, default=ROOT / "bench/results/defenses.json")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs/images/defenses-sim.png")
    args = ap.parse_args()
    from echolab.analysis.compare.defenses import compare_defenses
    from echolab.analysis.compare.sources import catalog_source
    from echolab.analysis.defenses.dataset import defended_sequences, fitted_defense
    from echolab.analysis.defenses.overhead import total_overhead
    from echolab.db.catalog import Catalog
    from echolab.labdir import LabDir

    settings = tuple(args.defense or SETTINGS)
    with tempfile.TemporaryDirectory(prefix="bench-defenses-") as tmp:
        read_s, n = build_lab(Path(tmp), args.per_class, args.seed)
        print(f"{n} captures; reading them once: {read_s:.2f} s", flush=True)
        with Catalog.open(LabDir.open(Path(tmp) / "lab")) as cat:
            src = catalog_source(cat)
            seqs = {i: (np.asarray(r.seq_times_us) / 1e6, np.asarray(r.seq_sizes)) for i, r in enumerate(src.records)}
            per_setting = {}
            for spec in settings:
                start = time.perf_counter()
                defense = fitted_defense(spec, list(seqs.values()))
                _, cost = defended_sequences(defense, seqs, seed=args.seed)
                secs = time.perf_counter() - start
                tot = total_overhead(list(cost.values()))
                per_setting[defense.spec] = {"defend_s": secs, "defend_over_read": secs / read_s, "overhead": tot}
                print(f"{defense.spec:36s} defend {secs:6.2f} s ({secs / read_s:5.2f}x reading)  bandwidth "
                      f"{100 * tot['bandwidth']:8.1f}%  delay {100 * tot['delay']:7.1f}%", flush=True)
            start = time.perf_counter()
            res = compare_defenses(cat, settings, trials=args.trials, seed=args.seed,
                                   grids_path=str(args.grids) if args.grids else None,
                                   progress=lambda task, done, total: print(f"  {task} {done}/{total}", flush=True))
            attack_s = time.perf_counter() - start
    out = res.to_json()
    for spec in res.defenses:
        for attack, modes in res.accuracy[spec].items():
            base = float(np.mean(res.baseline[attack]))
            for mode, acc in modes.items():
                per_setting[spec].setdefault("accuracy", {}).setdefault(attack, {})[mode] = float(np.mean(acc))
                per_setting[spec].setdefault("accuracy_over_undefended", {}).setdefault(attack, {})[mode] = \
                    float(np.mean(acc)) / base if base else None
        per_setting[spec]["attack_s"] = res.seconds.get(spec)
    goal = res.best_within([(1.0, 0.3)])[0]
    out.update(per_setting=per_setting, read_s=read_s, attack_s=attack_s, goal_budget=goal,
               per_class=args.per_class, machine=platform.machine(), python=platform.python_version(),
               load_average=os.getloadavg())
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2, default=float) + "\n")
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    res.figure().savefig(args.plot, dpi=110)
    print(f"undefended: " + ", ".join(f"{a} {100 * np.mean(v):.1f}%" for a, v in res.baseline.items()))
    for row in res.rows():
        if row["defense"] != "none" and not row["published"]:
            print(f"{row['defense']:36s} {row['attack']:18s} trained undefended {100 * row['trained_undefended']:5.1f}%"
                  f"  trained defended {100 * row['trained_defended']:5.1f}%")
    print("Pareto front:", ", ".join(res.pareto()))
    print("best within 100% bandwidth and 30% delay:", goal)
    print(f"attacks took {attack_s:.0f} s; wrote {args.json} and {args.plot}")


if __name__ == "__main__":
    main()
