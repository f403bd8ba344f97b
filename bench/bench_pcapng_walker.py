#!/usr/bin/env python3
"""Speed of reading a pcapng with the one block walker, against dpkt's pcapng reader.

Runs standalone (``.venv/bin/python -P bench/bench_pcapng_walker.py``). Writes a
pcapng of ``--packets`` synthetic Echo packets (the simulated lab's synthetic
captures, converted by editcap), then reads it ``--repeat`` times, interleaved:

* echolab: :func:`echolab.captures.reader.iter_tcp` (the walker plus the TCP
  decode every feature set uses);
* echolab, blocks only: :meth:`echolab.captures.pcapng.PcapngWalker.walk` and
  :meth:`~echolab.captures.pcapng.PcapngWalker.packet` (time and interface of each
  packet block, no decode);
* the growing-file mode: the same file walked as a live reader does, in polls
  of 64 KiB appended at a time;
* (alternative) dpkt: ``dpkt.pcapng.Reader`` yielding ``(ts, buf)`` per packet.

Best of the runs per method, packets per second, and the ratio to dpkt; ``--json``
saves them (bench/results/pcapng_walker.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from echolab.captures.pcapng import EPB, OPB, PcapngWalker
from echolab.captures.reader import ReadStats, iter_tcp
from echolab.collector.sim import synthetic
from echolab.prompts.classes import STUDY_CLASSES


def make_capture(folder: Path, packets: int) -> Path:
    parts, total, i = [], 0, 0
    while total < packets:
        label = STUDY_CLASSES[i % len(STUDY_CLASSES)]
        rng = np.random.default_rng([7, i])
        info = synthetic.write_capture(folder / f"{i}.pcap", label, 2.0, rng, start_ts=1_700_000_000.0 + 60 * i)
        parts.append(str(info.path))
        total += sum(1 for _ in iter_tcp(info.path))
        i += 1
    merged = folder / "merged.pcap"
    subprocess.run(["mergecap", "-F", "pcap", "-w", str(merged), *parts], check=True)
    out = folder / "long.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(merged), str(out)], check=True)
    return out


def read_echolab(path: Path) -> int:
    return sum(1 for _ in iter_tcp(path, ReadStats()))


def walk_blocks(path: Path) -> int:
    walker, n = PcapngWalker(path), 0
    with open(path, "rb") as fh:
        for btype, buf, pos, blen in walker.walk(fh):
            if (btype == EPB or btype == OPB) and walker.packet(btype, buf, pos, blen) is not None:
                n += 1
    return n


def walk_growing(path: Path, step: int = 1 << 16) -> int:
    data = path.read_bytes()
    walker, n = PcapngWalker(path, growing=True), 0
    with tempfile.NamedTemporaryFile(suffix=".pcapng") as tmp:
        for end in range(step, len(data) + step, step):
            tmp.seek(0, 2)
            tmp.write(data[end - step:end])
            tmp.flush()
            with open(tmp.name, "rb") as fh:
                for btype, buf, pos, blen in walker.walk(fh):
                    if (btype == EPB or btype == OPB) and walker.packet(btype, buf, pos, blen) is not None:
                        n += 1
    return n


def read_dpkt(path: Path) -> int:
    import dpkt

    with open(path, "rb") as fh:
        return sum(1 for _ in dpkt.pcapng.Reader(fh))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not (shutil.which("editcap") and shutil.which("mergecap")):
        sys.exit("needs editcap and mergecap (Wireshark's tools)")
    methods = {"echolab iter_tcp": read_echolab, "walker blocks": walk_blocks, "walker growing": walk_growing,
               "dpkt pcapng.Reader": read_dpkt}
    runs: dict[str, list[float]] = {name: [] for name in methods}
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="echolab-bench-walker-") as tmp:
        path = make_capture(Path(tmp), args.packets)
        size = path.stat().st_size
        for _ in range(args.repeat):
            for name, fn in methods.items():
                t0 = time.perf_counter()
                counts[name] = fn(path)
                runs[name].append(time.perf_counter() - t0)
    base = min(runs["dpkt pcapng.Reader"])
    rows = []
    print(f"{size / 1e6:.1f} MB pcapng, {counts['dpkt pcapng.Reader']} packets, best of {args.repeat}")
    for name in methods:
        best = min(runs[name])
        rows.append({"method": name, "best_s": best, "packets": counts[name], "packets_per_s": counts[name] / best,
                     "ratio_to_dpkt": base / best, "runs_s": runs[name]})
        print(f"{name:22s} {best:7.3f} s  {counts[name] / best / 1e6:6.2f} M packets/s  x{base / best:.2f} vs dpkt")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"file_bytes": size, "python": platform.python_version(),
                                         "machine": platform.machine(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
