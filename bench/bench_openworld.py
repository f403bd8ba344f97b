"""Benchmark: the open world, requests no model was trained on, on simulated traffic.

Two parts, each through the CLI a user runs (``--part compare``, ``--part day`` or both):

**compare** (no namespaces): ``collect --backend synthetic`` captures of the study's six classes
(monitored) and of every kind of the unmonitored pool (``prompts/lists/unmonitored``, given to
the lab as class lists so a campaign collects them), then, on the same catalog and the same
splits seed, every feature set:

* ``analyze run --open-world --monitored <the six>``: unmonitored kinds held out by kind, the
  threshold chosen on each trial's training part for ``--target``; TPR, wrong-monitored rate,
  FPR, precision, r-precision at 1:1, 1:10, 1:100;
* beside it, the closed world on the monitored captures alone (``analyze run`` on a catalog of
  the six classes): accuracy, and the ratio of the two runs' trial seconds (the reject option's
  cost: out-of-fold fits for the threshold).

**day** (the simulated lab, under the shared namespace lock /tmp/echolab-netns.lock): a training
campaign of the six classes and of half the pool's kinds, ``analyze train --unmonitored <those
kinds> --reject <target>``, then ``sim day --unknown-share 0.7 --unknown-kinds <the other half>``
(kinds the model never saw) and ``classify`` of the day's one capture, twice: with the model's
threshold and with none (every request its best monitored class: the closed world). Requests found
and matched to the truth by time; monitored precision and recall at the threshold, beside the
closed-world accuracy of the monitored requests.

    .venv/bin/python -P bench/bench_openworld.py --part compare
    flock /tmp/echolab-netns.lock .venv/bin/python -P bench/bench_openworld.py --part day

Figures go to bench/results/openworld.json (each part updates its own key); the day's timeline to
docs/images/openworld-day.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ECHOLAB = [sys.executable, "-P", "-m", "echolab"]
FEATURES = ("tcptrace", "histogram", "combined", "sequence", "kfp", "cumul")


def cli(lab: Path, *args: str) -> str:
    print("$ echolab", " ".join(args), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run([*ECHOLAB, "--lab", str(lab), *args], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(args)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return proc.stdout


def pool_as_classes(lab: Path, kinds: list[str]) -> None:
    """Give the lab the pool's kinds as class lists, so that 'collect' can capture them."""
    from echolab.prompts.pool import pool_path

    (lab / "prompts").mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        shutil.copy(pool_path(kind), lab / "prompts" / f"{kind}.txt")


def last_json(text: str) -> dict:
    return json.loads(text[text.index("{"):])


# --------------------------------------------------------------------------- compare


def compare(args: argparse.Namespace, tmp: Path) -> dict:
    from echolab.prompts.classes import STUDY_CLASSES
    from echolab.prompts.pool import pool_kinds

    kinds = pool_kinds()
    open_lab, closed_lab = tmp / "open-lab", tmp / "closed-lab"
    for lab in (open_lab, closed_lab):
        cli(lab, "catalog", "init")
    pool_as_classes(open_lab, kinds)
    common = ["--backend", "synthetic", "--no-progress", "--engine", "espeak"]
    t0 = time.perf_counter()
    cli(open_lab, "collect", *common, "--per-class", str(args.per_class), "--classes", ",".join(STUDY_CLASSES),
        "--name", "monitored", "--seed", "1")
    cli(open_lab, "collect", *common, "--per-class", str(args.per_kind), "--classes", ",".join(kinds),
        "--name", "pool", "--seed", "2", "--new")
    cli(closed_lab, "collect", *common, "--per-class", str(args.per_class), "--classes", ",".join(STUDY_CLASSES),
        "--name", "monitored", "--seed", "1")
    collect_s = time.perf_counter() - t0
    models = [m for m in args.models.split(",") if m]
    model_args = [x for m in models for x in ("-m", m)]
    rows = {}
    for feature in FEATURES:
        base = ["analyze", "run", "-f", feature, *model_args, "--trials", str(args.trials), "--seed", "7",
                "--no-report", "--json", "--jobs", str(args.jobs)]
        t0 = time.perf_counter()
        opened = last_json(cli(open_lab, *base, "--name", f"open-{feature}", "--open-world", "--monitored",
                               ",".join(STUDY_CLASSES), "--target", args.target))
        open_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        closed = last_json(cli(closed_lab, *base, "--name", f"closed-{feature}"))
        closed_s = time.perf_counter() - t0
        cells = opened["open_world"]["cells"][next(iter(opened["open_world"]["cells"]))]
        rows[feature] = {
            "seconds_open": round(open_s, 1), "seconds_closed": round(closed_s, 1),
            "open_over_closed_seconds": round(open_s / closed_s, 2),
            "models": {m: {"closed_accuracy_pct": round(closed["accuracy"][next(iter(closed["accuracy"]))][m]["mean"], 2),
                           **{k: _r(cells[m][k]) for k in ("tpr", "wpr", "fpr", "precision", "r_precision_1:1",
                                                           "r_precision_1:10", "r_precision_1:100", "threshold",
                                                           "target_reached")},
                           "pooled_over_trials": {k: _r(v) for k, v in cells[m]["pooled"].items()}}
                       for m in models},
        }
        print(json.dumps({feature: rows[feature]}, indent=1), flush=True)
    return {"settings": {"per_class": args.per_class, "per_kind": args.per_kind, "kinds": kinds,
                         "monitored": list(STUDY_CLASSES), "trials": args.trials, "models": models,
                         "target": args.target, "backend": "synthetic (collector.sim.synthetic, no namespaces)"},
            "collect_seconds": round(collect_s, 1), "features": rows}


def _r(v: object) -> object:
    return round(v, 4) if isinstance(v, float) else v


# --------------------------------------------------------------------------- day


def found_requests(lines: str) -> list[tuple[float, float, str, float]]:
    out = []
    for line in filter(str.strip, lines.splitlines()):
        if line.startswith("{"):
            row = json.loads(line)
            out.append((datetime.fromisoformat(row["start"]).timestamp(),
                        datetime.fromisoformat(row["end"]).timestamp(), row["label"], row["probability"]))
    return out


def score_day(truth_dir: Path, found: list[tuple[float, float, str, float]], monitored: list[str]) -> dict:
    """Requests found, then the open world's cells on the matched ones (a missed request is a rejection)."""
    from echolab.analysis.compare.openworld import UNKNOWN, open_world_counts
    from echolab.collector.sim.day import match, read_truth

    truth = read_truth(truth_dir)
    s, pairs = match(truth, [f[:3] for f in found])
    decided = {i: found[j][2] for i, j in pairs}
    labels = [t.label for t in truth]
    decisions = [decided.get(i, UNKNOWN) for i in range(len(truth))]
    counts = open_world_counts(labels, decisions, monitored)
    spurious = [found[j] for j in set(range(len(found))) - {j for _, j in pairs}]
    mon = [i for i, t in enumerate(truth) if t.label in monitored]
    return {"truth": s.truth, "truth_unmonitored": sum(t.unmonitored for t in truth), "found": s.found,
            "matched": s.matched, "found_precision": round(s.precision, 4), "found_recall": round(s.recall, 4),
            "spurious_claimed_monitored": sum(1 for f in spurious if f[2] in monitored),
            "open_world": {k: _r(v) for k, v in counts.to_json().items() if k != "r_precision"}
            | {"r_precision": {k: _r(v) for k, v in counts.to_json()["r_precision"].items()}},
            "monitored_matched_accuracy": round(sum(decided.get(i) == truth[i].label for i in mon)
                                                / max(1, sum(i in decided for i in mon)), 4)}


def set_threshold(model: Path, out: Path, threshold: float) -> None:
    from echolab.analysis.compare.modelfile import load_model, save_model

    trained = load_model(model)
    trained.reject = {**trained.reject, "threshold": threshold}
    save_model(trained, out)


def day(args: argparse.Namespace, tmp: Path) -> dict:
    from echolab.collector.sim import SimLab, down
    from echolab.prompts.classes import STUDY_CLASSES
    from echolab.prompts.pool import pool_kinds

    kinds = pool_kinds()
    trained_kinds, day_kinds = kinds[::2], kinds[1::2]  # the day speaks only kinds the model never saw
    lab, day_lab = tmp / "lab", tmp / "day-lab"
    cli(lab, "catalog", "init")
    cli(day_lab, "catalog", "init")
    pool_as_classes(lab, trained_kinds)
    results: dict = {"settings": {"requests": args.requests, "unknown_share": 0.7, "speed": args.speed,
                                  "train_per_class": args.train_per_class, "train_per_kind": args.per_kind,
                                  "trained_kinds": trained_kinds, "day_kinds": day_kinds, "target": args.target,
                                  "features": args.features, "model": args.model, "gap": args.gap}}
    SimLab.up(prefix=args.prefix, speed=args.speed, seed=11)
    try:
        common = ["--backend", "sim", "--speed", f"{args.speed:g}", "--no-progress", "--sim-prefix", args.prefix]
        t0 = time.perf_counter()
        cli(lab, "collect", *common, "--per-class", str(args.train_per_class), "--classes", ",".join(STUDY_CLASSES),
            "--name", "train", "--seed", "1")
        cli(lab, "collect", *common, "--per-class", str(args.per_kind), "--classes", ",".join(trained_kinds),
            "--name", "pool", "--seed", "2", "--new")
        results["collect_seconds"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        cli(day_lab, "sim", "day", str(tmp / "day"), "--requests", str(args.requests), "--seed", "3",
            "--prefix", args.prefix, "--min-gap", "12", "--mean-gap", "25", "--idle-share", "0.05",
            "--unknown-share", "0.7", "--unknown-kinds", ",".join(day_kinds), "--no-progress")
        results["day_seconds"] = round(time.perf_counter() - t0, 1)
    finally:
        down(args.prefix)
    model = tmp / "model.echolab-model"
    out = cli(lab, "analyze", "train", "--campaign", "train", "--campaign", "pool", "--features", args.features,
              "--model", args.model, "--unmonitored", ",".join(trained_kinds), "--reject", args.target,
              "--out", str(model))
    print(out)
    from echolab.analysis.compare.modelfile import read_header

    results["reject"] = read_header(model)["reject"]
    closed = tmp / "closed.echolab-model"
    set_threshold(model, closed, 0.0)
    split = ["--split", f"gap={args.gap:g}", "--attach-trailing", "16", "--speed", f"{args.speed:g}", "--json"]
    monitored = list(STUDY_CLASSES)
    found = found_requests(cli(lab, "classify", str(tmp / "day" / "day.pcapng"), "--model", str(model), *split,
                               "--timeline", str(args.timeline)))
    results["day"] = score_day(tmp / "day", found, monitored)
    everything = found_requests(cli(lab, "classify", str(tmp / "day" / "day.pcapng"), "--model", str(closed), *split))
    results["day_no_threshold"] = score_day(tmp / "day", everything, monitored)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("compare", "day", "both"), default="both")
    ap.add_argument("--per-class", type=int, default=30, help="compare: captures per monitored class")
    ap.add_argument("--per-kind", type=int, default=10, help="captures per unmonitored kind")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--models", default="random_forest,knn,svm_rbf")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--target", default="precision=0.9")
    ap.add_argument("--requests", type=int, default=80, help="day: requests of the day")
    ap.add_argument("--train-per-class", type=int, default=20, help="day: training captures per class")
    ap.add_argument("--speed", type=float, default=15.0)
    ap.add_argument("--gap", type=float, default=6.0)
    ap.add_argument("--features", default="combined", help="day: the model's feature set")
    ap.add_argument("--model", default="random_forest", help="day: the model")
    ap.add_argument("--prefix", default=f"owb{os.getpid() % 10000}")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "openworld.json")
    ap.add_argument("--timeline", type=Path, default=ROOT / "docs" / "images" / "openworld-day.png")
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = ap.parse_args()
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="bench-openworld-") as scratch:
        tmp = args.keep or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        if args.part in ("compare", "both"):
            results["compare"] = compare(args, tmp / "compare")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")
        if args.part in ("day", "both"):
            results["day"] = day(args, tmp / "day")
            args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
