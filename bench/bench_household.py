"""Benchmark: what a trained model says about a simulated household day, against the truth.

On one simulated lab (sped up ``--speed`` times), through the CLI a user runs:

1. ``collect`` a training campaign and a separate test campaign (one capture per request);
2. ``sim day``: a household's day of ``--requests`` requests of mixed classes as ONE capture,
   with its ground-truth log;
3. ``analyze train`` one model on the training campaign only;
4. the per-capture protocol: that model on every capture of the test campaign (accuracy);
5. ``classify`` the day's capture: requests found (matched to the truth by time: precision,
   recall, F1) and their classes (accuracy among the matched), next to the per-capture accuracy;
6. live: ``classify --sim-prefix`` watches the lab while a shorter day plays; the same
   scores, and the latency from each request's last packet to its printed prediction.

    .venv/bin/python -P bench/bench_household.py --requests 200 --speed 15

Figures go to bench/results/household.json; the day's timeline to docs/images/household-day.png.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ECHOLAB = [sys.executable, "-P", "-m", "echolab"]


def cli(lab: Path, *args: str, capture: bool = False) -> str:
    cmd = [*ECHOLAB, "--lab", str(lab), *args]
    print("$ echolab", " ".join(args), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(args)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    print(f"  ({time.perf_counter() - t0:.0f} s) {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}",
          flush=True)
    return proc.stdout


def found_requests(lines: str) -> list[tuple[float, float, str]]:
    out = []
    for line in filter(str.strip, lines.splitlines()):
        row = json.loads(line)
        out.append((datetime.fromisoformat(row["start"]).timestamp(), datetime.fromisoformat(row["end"]).timestamp(),
                    row["label"]))
    return out


def score(truth_dir: Path, found: list[tuple[float, float, str]]) -> dict[str, float]:
    from echolab.collector.sim.day import match, read_truth

    s, _ = match(read_truth(truth_dir), found)
    return {"truth": s.truth, "found": s.found, "matched": s.matched, "precision": round(s.precision, 4),
            "recall": round(s.recall, 4), "f1": round(s.f1, 4), "accuracy": round(s.accuracy, 4)}


def per_capture_accuracy(lab: Path, model_path: Path, campaign: str) -> dict[str, float]:
    from echolab.analysis.compare.modelfile import load_model
    from echolab.analysis.features.sets import load_dataset
    from echolab.db.catalog import Catalog
    from echolab.labdir import LabDir

    model = load_model(model_path)
    with Catalog.open(LabDir.open(lab)) as cat:
        ds = load_dataset(cat, campaign=cat.campaign(campaign).id)
    labels, _ = model.predict(ds.records)
    correct = sum(a == b for a, b in zip(labels, ds.y.tolist()))
    return {"captures": len(labels), "accuracy": round(correct / len(labels), 4)}


def live(lab: Path, model_path: Path, prefix: str, day_dir: Path, requests: int, gap: float, speed: float,
         seed: int) -> dict:
    cmd = [*ECHOLAB, "--lab", str(lab), "classify", "--model", str(model_path), "--sim-prefix", prefix,
           "--split", f"gap={gap:g}", "--speed", f"{speed:g}", "--json"]
    print("$ echolab", " ".join(cmd[4:]), "&", flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "Watching ..." once the capture runs
    if not line.startswith("Watching"):
        raise SystemExit(f"live classify did not start: {line}{proc.stderr.read()}")
    cli(lab, "sim", "day", str(day_dir), "--requests", str(requests), "--seed", str(seed), "--prefix", prefix,
        "--min-gap", "12", "--mean-gap", "25", "--idle-share", "0", "--no-progress")
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    rows = [json.loads(x) for x in out.splitlines() if x.strip()]
    lat = sorted(r["latency_s"] for r in rows)
    result = score(day_dir, found_requests(out))
    result.update({"latency_median_s": round(statistics.median(lat), 3),
                   "latency_p90_s": round(lat[int(0.9 * (len(lat) - 1))], 3), "latency_max_s": round(lat[-1], 3),
                   "within_2s": round(sum(x <= 2.0 for x in lat) / len(lat), 4), "summary": err.strip().splitlines()[-1]})
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--live-requests", type=int, default=30)
    ap.add_argument("--train-per-class", type=int, default=30)
    ap.add_argument("--test-per-class", type=int, default=20)
    ap.add_argument("--speed", type=float, default=15.0)
    ap.add_argument("--gap", type=float, default=6.0, help="the cut's quiet time, household seconds")
    ap.add_argument("--attach-trailing", type=float, default=16.0,
                    help="attach a short burst this many household seconds after a request (the files' cut)")
    ap.add_argument("--features", default="combined")
    ap.add_argument("--model", default="random_forest")
    ap.add_argument("--prefix", default=f"hhb{os.getpid() % 10000}")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "household.json")
    ap.add_argument("--timeline", type=Path, default=ROOT / "docs" / "images" / "household-day.png")
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it (lab, day, model)")
    args = ap.parse_args()
    from echolab.collector.sim import SimLab, down

    def shown(path: Path | None) -> str:  # paths in the project as the project names them
        return str(path.resolve().relative_to(ROOT)) if path and path.resolve().is_relative_to(ROOT) else str(path)

    results: dict = {"settings": vars(args) | {"out": shown(args.out), "timeline": shown(args.timeline),
                                               "keep": shown(args.keep)}}
    with tempfile.TemporaryDirectory(prefix="bench-household-") as scratch:
        tmp = args.keep or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        lab = tmp / "lab"
        SimLab.up(prefix=args.prefix, speed=args.speed, seed=11)
        try:
            common = ["--backend", "sim", "--speed", f"{args.speed:g}", "--no-progress", "--sim-prefix", args.prefix]
            cli(lab, "collect", *common, "--per-class", str(args.train_per_class), "--name", "train", "--seed", "1")
            cli(lab, "collect", *common, "--per-class", str(args.test_per_class), "--name", "test", "--seed", "2",
                "--new")
            t0 = time.perf_counter()
            cli(lab, "sim", "day", str(tmp / "day"), "--requests", str(args.requests), "--seed", "3",
                "--prefix", args.prefix, "--min-gap", "12", "--mean-gap", "25", "--idle-share", "0.05",
                "--no-progress")
            results["day_utterances"] = json.loads((tmp / "day" / "day.json").read_text()).get("utterances")
            results["day_seconds"] = round(time.perf_counter() - t0, 1)
            model = tmp / "model.echolab-model"
            cli(lab, "analyze", "train", "--campaign", "train", "--features", args.features, "--model", args.model,
                "--out", str(model))
            results["per_capture"] = per_capture_accuracy(lab, model, "test")
            t0 = time.perf_counter()
            out = cli(lab, "classify", str(tmp / "day" / "day.pcapng"), "--model", str(model), "--split",
                      f"gap={args.gap:g}", "--attach-trailing", f"{args.attach_trailing:g}", "--json", "--timeline",
                      str(args.timeline), "--speed", f"{args.speed:g}")
            results["classify_seconds"] = round(time.perf_counter() - t0, 1)
            results["day"] = score(tmp / "day", found_requests(out))
            results["day"]["accuracy_minus_per_capture_pp"] = round(
                100 * (results["day"]["accuracy"] - results["per_capture"]["accuracy"]), 2)
            results["live"] = live(lab, model, args.prefix, tmp / "live", args.live_requests, args.gap, args.speed, 4)
        finally:
            down(args.prefix)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
