"""Benchmark: the collector's own overhead per capture on the simulated lab.

Overhead is everything the collector does that is not waiting for the Echo:
preparing the prompt and its audio, starting the capture engine until it is
really capturing, stopping it, checking the capture, moving it into the lab
and cataloguing it (``CaptureTiming.overhead``). The goal is a median under
0.5 s.

The named alternative, on the same lab in the same run: the same campaign
with ``tshark`` as the capture engine instead of ``dumpcap`` (tshark loads
every dissector before it captures). The ratio says what that choice buys.

    .venv/bin/python bench/bench_collect.py --per-class 5 --speed 30
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from echolab.collector.campaign import CollectSettings
from echolab.collector.collect import collect
from echolab.collector.sim import SimLab, down
from echolab.labdir import LabDir

PHASES = ("prepare", "start", "stop", "check", "store", "play", "response", "idle")


def run(tool: str, per_class: int, speed: float, prefix: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        lab = LabDir.open(Path(tmp) / "lab", create=True)
        settings = CollectSettings(backend="sim", per_class=per_class, speed=speed, seed=1, capture_tool=tool,
                                   sim_prefix=prefix)
        t0 = time.perf_counter()
        result = collect(lab, settings)
        wall = time.perf_counter() - t0
    timings = result.timings
    out = {f"{p}_median_s": statistics.median(getattr(t, p) for t in timings) for p in PHASES}
    overheads = sorted(t.overhead for t in timings)
    out.update(captures=len(timings), wall_s=wall, overhead_median_s=statistics.median(overheads),
               overhead_p90_s=overheads[int(0.9 * (len(overheads) - 1))])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=5)
    ap.add_argument("--speed", type=float, default=30.0)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    prefix = "benchcol"
    SimLab.up(prefix=prefix, speed=args.speed, seed=1)
    try:
        results = {tool: run(tool, args.per_class, args.speed, prefix) for tool in ("dumpcap", "tshark")}
    finally:
        down(prefix)
    d, t = results["dumpcap"], results["tshark"]
    print(f"{'':24}{'dumpcap':>12}{'tshark':>12}")
    for key in ("captures", "overhead_median_s", "overhead_p90_s", "start_median_s", "stop_median_s",
                "prepare_median_s", "check_median_s", "store_median_s", "wall_s"):
        print(f"{key:24}{d[key]:12.3f}{t[key]:12.3f}")
    ratio = t["overhead_median_s"] / d["overhead_median_s"]
    print(f"\nmedian overhead per capture: {d['overhead_median_s']:.3f} s with dumpcap, "
          f"{t['overhead_median_s']:.3f} s with tshark (ratio {ratio:.1f}x); goal < 0.5 s: "
          f"{'met' if d['overhead_median_s'] < 0.5 else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "ratio_tshark_over_dumpcap": ratio}, indent=2))


if __name__ == "__main__":
    main()
