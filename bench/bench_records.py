#!/usr/bin/env python3
"""Speed of the TLS record layer against tshark's TLS dissector, on the same captures.

Runs standalone (``.venv/bin/python bench/bench_records.py``). It writes
``--per-class`` synthetic captures of each of three classes for each simulated
household (``echolab.collector.sim.households``), then, ``--repeat`` times and
interleaved, reads every TLS record of the device's connections with
``echolab.captures.records.tls_records`` and with ``tshark -T fields -e
tls.record.length`` (TCP reassembly on, port 443 decoded as TLS), checks that
both find the same number of records per capture, and reports the best time of
each and their ratio. ``--json`` writes the numbers (default
bench/results/records.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from echolab.captures.records import tls_records
from echolab.collector.sim.households import HOUSEHOLDS, write_household
from echolab.collector.sim.topology import Topology


def ours(paths: list[Path], device: str) -> tuple[float, list[int]]:
    start = time.perf_counter()
    counts = [sum(1 for _ in tls_records(p, device)) for p in paths]
    return time.perf_counter() - start, counts


def tshark(paths: list[Path]) -> tuple[float, list[int]]:
    start = time.perf_counter()
    counts = []
    for p in paths:
        out = subprocess.run(["tshark", "-r", str(p), "-o", "tcp.desegment_tcp_streams:TRUE", "-d", "tcp.port==443,tls",
                              "-T", "fields", "-e", "tls.record.length", "-Y", "tls"],
                             capture_output=True, text=True, check=True).stdout
        counts.append(sum(1 for line in out.split() for n in line.split(",") if n))
    return time.perf_counter() - start, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "records.json")
    args = ap.parse_args()
    device = Topology().echo_ip
    with tempfile.TemporaryDirectory(prefix="echolab-records-") as tmp:
        paths: list[Path] = []
        for h in HOUSEHOLDS:
            paths += write_household(Path(tmp) / h.name, h, ["weather", "quotes", "music"], args.per_class)
        mine, theirs = [], []
        for _ in range(args.repeat):
            t, ours_counts = ours(paths, device)
            mine.append(t)
            t, tshark_counts = tshark(paths)
            theirs.append(t)
        agree = sum(a == b for a, b in zip(ours_counts, tshark_counts))
        size = sum(p.stat().st_size for p in paths)
    out = {"captures": len(paths), "bytes": size, "records": sum(ours_counts), "tshark_records": sum(tshark_counts),
           "captures_agreeing": agree, "echolab_s": min(mine), "tshark_s": min(theirs),
           "speedup": min(theirs) / min(mine), "repeat": args.repeat, "load": os.getloadavg()}
    print(f"{len(paths)} captures ({size / 1e6:.1f} MB): echolab {out['echolab_s']:.2f} s, tshark {out['tshark_s']:.2f} s "
          f"({out['speedup']:.1f}x); records {out['records']} vs {out['tshark_records']}, "
          f"same count in {agree} of {len(paths)} captures")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
