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

``--live`` runs the other half instead, live against trace, on the simulated
lab (namespaces: run it as root, under ``flock /tmp/echolab-netns.lock``):

4. one small undefended campaign (``--live-per-class`` captures of each study
   class at ``--live-speed``) and one campaign per ``--live-defense`` with that
   defense applied live by the simulated Echo and cloud (``collect --defense``),
   every lab seeded alike so each campaign's cloud draws the same answers in
   the same order;
5. the trace simulation of each defense applied to the undefended campaign
   (``analyze defenses``' library call): its overheads and k-FP's and CUMUL's
   accuracy trained and tested on defended traffic;
6. the live campaign's overheads (its bytes each way over the undefended
   campaign's, the queueing delay of each exchange's last real byte from the
   lab's ``defense.jsonl`` over the undefended captures' durations) and the
   same attacks trained and tested on it, on the same trial protocol;
   the live figure over the trace one, and the trace figure again with the
   pure ACKs left as they are (what a live defense above TCP cannot pad).

    flock /tmp/echolab-netns.lock .venv/bin/python -P bench/bench_defenses.py --live

It replaces the ``live_vs_trace`` section of bench/results/defenses.json and
leaves the rest of it as it was.
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
    "anonsets", "anonsets:bin=2", "anonsets:q=0.9,bin=2", "anonsets:sets=3,bin=2",
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


LIVE_SETTINGS = ("mtu", "front:n=200,w=0.2-1", "buflo:rho=0.005,tau=1")
#: Pure ACKs: an IPv4 + TCP header with the timestamps option and no payload.
PURE_ACK = 52


def collect_live(root: Path, spec: str | None, per_class: int, speed: float, seed: int) -> dict:
    """One campaign on a simulated lab of its own (defended live with *spec*); its name, seconds and exchanges."""
    from echolab import Lab
    from echolab.collector.campaign import CollectSettings
    from echolab.collector.sim import SimLab, down
    from echolab.prompts.classes import STUDY_CLASSES

    prefix = f"elbd{os.getpid() % 10000}"
    name = f"live-{spec or 'none'}"
    kept = root / f"{name}.json"
    if kept.exists():  # --live-lab: collected by an earlier run
        return json.loads(kept.read_text())
    sim = SimLab.up(prefix=prefix, speed=speed, seed=seed, defense=spec)
    try:
        start = time.perf_counter()
        settings = CollectSettings(backend="sim", per_class=per_class, classes=list(STUDY_CLASSES), seed=seed,
                                   speed=speed, sim_prefix=prefix, defense=spec)
        result = Lab(root / "lab").collect(settings, new=True, name=name)
        secs = time.perf_counter() - start
        exchanges = sim.defense_log()
    finally:
        down(prefix)
    print(f"{name}: {sum(result.counts.values())} captures in {secs:.0f} s, failures {dict(result.failures) or 'none'}",
          flush=True)
    out = {"campaign": name, "collect_s": secs, "exchanges": exchanges, "failures": dict(result.failures)}
    kept.write_text(json.dumps(out))
    return out


def _bytes(seqs) -> dict[str, float]:
    out = {"out": 0, "in": 0, "packets": 0, "duration": 0.0}
    for t, s in seqs:
        out["out"] += int(s[s > 0].sum())
        out["in"] += int(-s[s < 0].sum())
        out["packets"] += len(s)
        out["duration"] += float(t[-1] - t[0]) if len(t) else 0.0
    return out


def _exchange_delays(exchanges: list[dict]) -> list[float]:
    """Per request (an Echo exchange and those inside it: the cloud's, the music stream's), how much later its
    last real byte went out than the last real byte was written: the live twin of the trace's delay."""
    delays = []
    for ex in (e for e in exchanges if e["side"] == "echo"):
        inside = [e for e in exchanges if ex["start"] - 0.5 <= e["start"] <= ex["end"] and e["last_write"]]
        sent = max(e["last_real_sent"] or e["last_write"] for e in inside)
        delays.append(max(0.0, sent - max(e["last_write"] for e in inside)))
    return delays


def without(spec: str, base, live, base_labels, live_labels, exclude: str, seed: int) -> dict:
    """Bandwidth each way, live and trace, counting neither pure ACKs nor captures of class *exclude*."""
    from echolab.analysis.defenses.dataset import defended_sequences, fitted_defense

    def pick(seqs, labels):
        return [(t[np.abs(s) != PURE_ACK], s[np.abs(s) != PURE_ACK]) for (t, s), y in zip(seqs, labels)
                if y != exclude]

    b, lv = _bytes(pick(base, base_labels)), _bytes(pick(live, live_labels))
    data = {i: seq for i, seq in enumerate(pick(base, base_labels)) if len(seq[1]) >= 2}
    out, _ = defended_sequences(fitted_defense(spec, list(data.values())), data, seed=seed)
    tr = {"out": sum(int(d.sizes[d.sizes > 0].sum()) for d in out.values()),
          "in": sum(int(-d.sizes[d.sizes < 0].sum()) for d in out.values())}
    res = {}
    for name, w in (("live", lv), ("trace", tr)):
        res[name] = {"bandwidth_out": w["out"] / b["out"] - 1, "bandwidth_in": w["in"] / b["in"] - 1,
                     "bandwidth": (w["out"] + w["in"]) / (b["out"] + b["in"]) - 1}
    return res


def trace_acks_kept(spec: str, seqs, seed: int) -> dict[str, float]:
    """The trace defense applied to each capture's packets other than pure ACKs, the ACKs added back unchanged."""
    from echolab.analysis.defenses.dataset import defended_sequences, fitted_defense

    data, acks = {}, {"out": 0, "in": 0}
    for i, (t, s) in enumerate(seqs):
        keep = np.abs(s) != PURE_ACK
        if keep.sum() >= 2:
            data[i] = (t[keep], s[keep])
        acks["out"] += int(s[(~keep) & (s > 0)].sum())
        acks["in"] += int(-s[(~keep) & (s < 0)].sum())
    defense = fitted_defense(spec, list(data.values()))
    out, _ = defended_sequences(defense, data, seed=seed)
    wire = {"out": acks["out"] + sum(int(d.sizes[d.sizes > 0].sum()) for d in out.values()),
            "in": acks["in"] + sum(int(-d.sizes[d.sizes < 0].sum()) for d in out.values())}
    base = _bytes(seqs)
    return {"bandwidth_out": wire["out"] / base["out"] - 1, "bandwidth_in": wire["in"] / base["in"] - 1,
            "bandwidth": (wire["out"] + wire["in"]) / (base["out"] + base["in"]) - 1}


def live_vs_trace(args: argparse.Namespace) -> dict:
    """Steps 4 to 6 of the module's docstring."""
    from echolab.analysis.compare.defenses import attack_accuracy, compare_defenses
    from echolab.analysis.compare.sources import catalog_source
    from echolab.db.catalog import Catalog
    from echolab.labdir import LabDir

    specs = tuple(args.live_defense or LIVE_SETTINGS)
    out: dict = {"per_class": args.live_per_class, "speed": args.live_speed, "trials": args.trials,
                 "seed": args.seed, "defenses": {}}
    with tempfile.TemporaryDirectory(prefix="bench-defenses-live-") as tmp:
        root = args.live_lab or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        LabDir.open(root / "lab", create=True)
        campaigns = {None: collect_live(root, None, args.live_per_class, args.live_speed, args.seed)}
        for spec in specs:
            campaigns[spec] = collect_live(root, spec, args.live_per_class, args.live_speed, args.seed)
        with Catalog.open(LabDir.open(root / "lab")) as cat:
            def seqs_of(name: str):
                src = catalog_source(cat, campaigns=[name]).canonical()
                return src, [(np.asarray(r.seq_times_us) / 1e6, np.asarray(r.seq_sizes)) for r in src.records]

            base_src, base_seqs = seqs_of(campaigns[None]["campaign"])
            base = _bytes(base_seqs)
            out["undefended"] = {"captures": len(base_seqs), "collect_s": campaigns[None]["collect_s"], **base,
                                 "captures_with_times_out_of_order": sum(1 for t, _ in base_seqs
                                                                         if np.any(np.diff(t) < 0))}
            start = time.perf_counter()
            trace = compare_defenses(cat, specs, campaigns=[campaigns[None]["campaign"]], trials=args.trials,
                                     seed=args.seed, grids_path=str(args.grids) if args.grids else None)
            out["undefended"]["accuracy"] = {a: float(np.mean(v)) for a, v in trace.baseline.items()}
            out["trace_attack_s"] = time.perf_counter() - start
            for spec, parsed in zip(specs, trace.defenses):
                live_src, live_seqs = seqs_of(campaigns[spec]["campaign"])
                lb = _bytes(live_seqs)
                delays = _exchange_delays(campaigns[spec]["exchanges"])
                live = {"captures": len(live_seqs), "collect_s": campaigns[spec]["collect_s"],
                        "bandwidth_out": lb["out"] / base["out"] - 1, "bandwidth_in": lb["in"] / base["in"] - 1,
                        "bandwidth": (lb["out"] + lb["in"]) / (base["out"] + base["in"]) - 1,
                        "extra_packets": lb["packets"] / base["packets"] - 1,
                        "delay": sum(delays) / base["duration"] if base["duration"] else 0.0,
                        "duration_ratio": lb["duration"] / base["duration"] if base["duration"] else None,
                        "exchanges": len(delays),
                        "dummies": sum(e["dummies"] for e in campaigns[spec]["exchanges"])}
                # The same attacks on the same protocol, trained and tested on the live captures.
                acc = attack_accuracy(cat, campaigns=[campaigns[spec]["campaign"]], trials=args.trials,
                                      seed=args.seed, grids_path=str(args.grids) if args.grids else None)
                live["accuracy"] = {a: float(np.mean(v)) for a, v in acc.items()}
                live["captures_with_times_out_of_order"] = sum(1 for t, _ in live_seqs if np.any(np.diff(t) < 0))
                tr = dict(trace.overheads[parsed])
                tr["accuracy"] = {a: float(np.mean(m["trained_defended"])) for a, m in trace.accuracy[parsed].items()}
                tr["acks_kept"] = trace_acks_kept(spec, base_seqs, args.seed)
                no_music = without(spec, base_seqs, live_seqs, base_src.y.tolist(), live_src.y.tolist(), "music",
                                   args.seed)
                out["defenses"][parsed] = {"live": live, "trace": tr, "live_over_trace": _ratios(live, tr),
                                           "within_10pct": _within(live, tr),
                                           "no_music_no_pure_acks": no_music}
                print(f"{parsed:28s} live bw {100 * live['bandwidth']:7.1f}% (out {100 * live['bandwidth_out']:7.1f}%,"
                      f" in {100 * live['bandwidth_in']:7.1f}%) delay {100 * live['delay']:5.1f}% | trace bw "
                      f"{100 * tr['bandwidth']:7.1f}% (out {100 * tr['bandwidth_out']:7.1f}%, in "
                      f"{100 * tr['bandwidth_in']:7.1f}%) delay {100 * tr['delay']:5.1f}% | acc live "
                      + ", ".join(f"{a} {100 * v:.0f}%" for a, v in live["accuracy"].items()) + " trace "
                      + ", ".join(f"{a} {100 * v:.0f}%" for a, v in tr["accuracy"].items()), flush=True)
    out["chance"] = 1 / 6
    return out


FIGURES = ("bandwidth_out", "bandwidth_in", "bandwidth", "delay")


def _ratios(live: dict, trace: dict) -> dict:
    out = {k: (live[k] / trace[k] if trace[k] else None) for k in FIGURES}
    out.update({f"accuracy {a}": live["accuracy"][a] / trace["accuracy"][a] if trace["accuracy"][a] else None
                for a in trace["accuracy"]})
    return out


def _within(live: dict, trace: dict, tol: float = 0.10) -> dict:
    """Per figure: live within 10% of the trace figure (within 1 point where the trace figure is under 10%)."""
    def close(a: float, b: float) -> bool:
        return abs(a - b) <= tol * max(abs(b), 0.1)

    out = {k: close(live[k], trace[k]) for k in FIGURES}
    out.update({f"accuracy {a}": close(live["accuracy"][a], trace["accuracy"][a]) for a in trace["accuracy"]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=30)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grids", type=Path, help="grids file (default: the lab's, analysis/compare/grids.toml)")
    ap.add_argument("--defense", action="append", help="settings to run (default: every one of SETTINGS)")
    ap.add_argument("--json", type=Path, default=ROOT / "bench/results/defenses.json")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs/images/defenses-sim.png")
    ap.add_argument("--live", action="store_true", help="run live against trace on the simulated lab instead")
    ap.add_argument("--live-defense", action="append", help="live settings (default: every one of LIVE_SETTINGS)")
    ap.add_argument("--live-per-class", type=int, default=8)
    ap.add_argument("--live-speed", type=float, default=8.0)
    ap.add_argument("--live-lab", type=Path, help="keep the live campaigns in this folder (a rerun reuses them)")
    args = ap.parse_args()
    if args.live:
        start = time.perf_counter()
        section = live_vs_trace(args)
        section["seconds"] = time.perf_counter() - start
        section.update(machine=platform.machine(), load_average=os.getloadavg())
        doc = json.loads(args.json.read_text()) if args.json.exists() else {}
        doc["live_vs_trace"] = section
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2, default=float) + "\n")
        print(f"live against trace took {section['seconds']:.0f} s; wrote {args.json}")
        return
    from echolab.analysis.compare.defenses import compare_defenses
    from echolab.analysis.compare.sources import catalog_source
    from echolab.analysis.defenses.dataset import defended_sequences, learned_defense
    from echolab.analysis.defenses.overhead import total_overhead
    from echolab.db.catalog import Catalog
    from echolab.labdir import LabDir

    settings = tuple(args.defense or SETTINGS)
    with tempfile.TemporaryDirectory(prefix="bench-defenses-") as tmp:
        read_s, n = build_lab(Path(tmp), args.per_class, args.seed)
        print(f"{n} captures; reading them once: {read_s:.2f} s", flush=True)
        with Catalog.open(LabDir.open(Path(tmp) / "lab")) as cat:
            src = catalog_source(cat).canonical()  # the order compare_defenses reads them in: the same history
            seqs = {i: (np.asarray(r.seq_times_us) / 1e6, np.asarray(r.seq_sizes)) for i, r in enumerate(src.records)}
            labels = {i: str(label) for i, label in enumerate(src.y)}  # what anonymity sets read
            per_setting = {}
            for spec in settings:
                start = time.perf_counter()
                learned = learned_defense(spec, seqs, seed=args.seed, labels=labels)
                new = {cid: seq for cid, seq in seqs.items() if cid not in set(learned.history)}
                _, cost = defended_sequences(learned.defense, new, seed=args.seed, labels=labels)
                secs = time.perf_counter() - start
                tot = total_overhead(list(cost.values()))
                defense = learned.defense
                per_setting[defense.spec] = {"defend_s": secs, "defend_over_read": secs / read_s, "overhead": tot,
                                             "history": len(learned.history)}
                if hasattr(defense, "groups_"):  # the anonymity sets it learned
                    per_setting[defense.spec]["sets"] = defense.groups_
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
    if args.json.exists() and "live_vs_trace" in (old := json.loads(args.json.read_text())):
        out["live_vs_trace"] = old["live_vs_trace"]  # written by --live; this run leaves it as it was
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
