#!/usr/bin/env python3
"""Speed of extracting the three feature sets, against tcptrace and pyshark.

Runs standalone (``.venv/bin/python bench/bench_features.py``) from the
repository root. On a directory of captures (``--captures DIR``, e.g. a lab's
``captures/`` folder; default: a corpus of ``--count`` Echo-like captures
generated into a temporary folder) it measures, in one run:

* echolab: one streaming pass per file (tcptrace statistics + histogram
  inputs), on 1 and on ``--jobs`` worker processes, then fitting and applying
  the tcptrace, histogram and combined transformers; each set alone is the
  records' time plus its own transformer's (``per_set_s``, ``ratio_*``);
* (a) the tcptrace binary: ``tcptrace -l -n --csv`` per file, its CSV parsed,
  sequentially and ``--jobs`` at a time (still only tcptrace's statistics: no
  histogram inputs);
* (b) per-packet field extraction with pyshark on ``--pyshark-files`` files,
  extrapolated per packet to the whole corpus (stated as such);
* every method ``--repeat`` times (3), interleaved; the best of each is
  reported, all runs and the load average are saved with ``--json``;
* memory: peak RSS of a process streaming a large generated capture
  (``--big-mb``) through the reader and through the full extraction, next to a
  small one.

Prints a table with ratios; ``--json FILE`` also saves the numbers.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tests/pcaps.py; echolab itself is the installed package

from echolab.captures.reader import iter_tcp  # noqa: E402
from echolab.analysis.features.sets import FEATURE_SETS, make_transformer  # noqa: E402
from echolab.analysis.features.store import _run  # noqa: E402

DEVICE = "192.168.1.50"


# --------------------------------------------------------------------------- corpus


def make_corpus(folder: Path, count: int, seed: int = 7) -> list[Path]:
    """*count* Echo-like captures: a request, then 40-400 server segments, device ACKs, 1-2 servers."""
    from pcaps import synthetic_session

    rng = random.Random(seed)
    shapes = [  # (segments, typical size, gap s, window) - loosely one per study class
        (60, 1448, 0.004, 8213), (40, 900, 0.01, 12872), (120, 1448, 0.002, 20576),
        (90, 1200, 0.006, 1013), (400, 1448, 0.001, 4500), (30, 600, 0.02, 6000),
    ]
    paths = []
    for i in range(count):
        n, size, gap, window = shapes[i % len(shapes)]
        n = max(5, int(n * rng.uniform(0.6, 1.4)))
        sizes = [size if rng.random() < 0.8 else rng.randint(60, 1448) for _ in range(n)]
        paths.append(synthetic_session(folder / f"c{i:04d}.pcap", sizes=sizes, gap_s=gap * rng.uniform(0.5, 2),
                                       window=window + rng.randint(0, 300), start=1_700_000_000 + i * 10,
                                       syn=rng.random() < 0.3,
                                       extra_server="52.94.9.9" if rng.random() < 0.2 else None))
    return paths


def make_big(path: Path, megabytes: int) -> Path:
    """A large two-direction capture written record by record (bulk server data, device ACKs)."""
    from pcaps import tcp_packet

    import struct

    data = tcp_packet("52.94.1.10", DEVICE, 443, 50000, seq=0, ack=1, flags="A", payload=1448)
    ack = tcp_packet(DEVICE, "52.94.1.10", 50000, 443, seq=1, ack=0, flags="A")
    seq_off, ack_off = 14 + 20 + 4, 14 + 20 + 8
    target = megabytes * 1_000_000
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        written, seq, t = 24, 1000, 1_700_000_000_000_000
        while written < target:
            frame = bytearray(data)
            frame[seq_off:seq_off + 4] = seq.to_bytes(4, "big")
            fh.write(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame), len(frame)) + frame)
            seq = (seq + 1448) & 0xFFFFFFFF
            t += 100
            written += 16 + len(frame)
            if (seq // 1448) % 2 == 0:
                frame = bytearray(ack)
                frame[ack_off:ack_off + 4] = seq.to_bytes(4, "big")
                fh.write(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame), len(frame)) + frame)
                written += 16 + len(frame)
    return path


# --------------------------------------------------------------------------- the contenders


def run_echolab(paths: list[Path], jobs: int) -> tuple[float, list, dict[str, float]]:
    """(seconds for the records and all three sets, the records, seconds for the records and each one set)."""
    start = time.perf_counter()
    results = list(_run([(str(p), DEVICE) for p in paths], jobs))
    records = [values for values, error in results if values is not None]
    extracted = time.perf_counter()
    per_set = {}
    for name in FEATURE_SETS:
        began = time.perf_counter()
        make_transformer(name).fit_transform(records)
        per_set[name] = extracted - start + time.perf_counter() - began
    return time.perf_counter() - start, records, per_set


def tcptrace_one(path: Path) -> list[dict[str, str]]:
    out = subprocess.run(["tcptrace", "-l", "-n", "--csv", str(path)], capture_output=True, text=True).stdout
    lines = [line for line in out.splitlines() if line.strip() and not line.startswith("#")]
    rows = list(csv.reader(lines))
    header = [h.strip() for h in rows[0]] if rows else []
    return [dict(zip(header, (c.strip() for c in row))) for row in rows[1:]]


def run_tcptrace(paths: list[Path], jobs: int) -> float:
    start = time.perf_counter()
    if jobs == 1:
        for p in paths:
            tcptrace_one(p)
    else:
        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(tcptrace_one, paths))
    return time.perf_counter() - start


def pyshark_one(path: Path) -> int:
    import pyshark

    cap = pyshark.FileCapture(str(path), keep_packets=False, display_filter="tcp")
    n = 0
    try:
        for pkt in cap:
            ip = pkt.ip if hasattr(pkt, "ip") else pkt.ipv6
            tcp = pkt.tcp
            (float(pkt.sniff_timestamp), ip.src, ip.dst, int(tcp.srcport), int(tcp.dstport), int(tcp.flags, 16),
             int(tcp.seq_raw), int(tcp.ack_raw), int(tcp.window_size_value), int(tcp.len), int(pkt.length))
            n += 1
    finally:
        cap.close()
    return n


def peak_rss_mb(code: str) -> float:
    """Peak RSS (MB) of a fresh interpreter running *code* (after imports).

    Read from the kernel's high-water mark of the new process image (VmHWM):
    ``getrusage``'s ``ru_maxrss`` carries the parent's peak across fork and exec,
    so it would report this benchmark's own size.
    """
    script = ("from echolab.captures.reader import iter_tcp\n"
              "from echolab.analysis.features.sets import extract_record\n%s\n"
              "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))") % code
    out = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[0]) / 1024


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--captures", type=Path, help="directory of pcap/pcapng files (searched recursively)")
    ap.add_argument("--count", type=int, default=780, help="captures to generate when --captures is not given")
    ap.add_argument("--device-ip", default=None, help="device IP of the captures in --captures")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--pyshark-files", type=int, default=8)
    ap.add_argument("--big-mb", type=int, default=200, help="size of the generated large capture (0: skip)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of every method; the best of each is reported")
    ap.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device_ip or DEVICE
    tmp = Path(tempfile.mkdtemp(prefix="echolab-bench-"))
    try:
        if args.captures:
            paths = sorted(p for p in args.captures.rglob("*") if p.suffix in (".pcap", ".pcapng"))
        else:
            print(f"generating {args.count} captures in {tmp} ...", flush=True)
            paths = make_corpus(tmp, args.count)
        packets = sum(1 for p in paths for _ in iter_tcp(p))
        size_mb = sum(p.stat().st_size for p in paths) / 1e6
        print(f"corpus: {len(paths)} captures, {packets} TCP packets, {size_mb:.1f} MB; "
              f"{os.cpu_count()} CPUs, Python {platform.python_version()}", flush=True)
        results = {"captures": len(paths), "packets": packets, "megabytes": size_mb}

        run_echolab(paths[:20], 1)  # warm the page cache and imports
        run_tcptrace(paths[:20], 1)
        subset = paths[: args.pyshark_files]
        sub_packets = sum(1 for p in subset for _ in iter_tcp(p))
        times: dict[str, list[float]] = {"echolab_1": [], "echolab_n": [], "tcptrace_1": [], "tcptrace_n": [],
                                         "pyshark_subset_s": []}
        set_times: dict[str, list[float]] = {f"{name}_{n}": [] for name in FEATURE_SETS for n in ("1", "n")}
        load_before = os.getloadavg()
        for rep in range(args.repeat):  # interleaved, so a change in the machine's load hits every method
            ours1, records, sets1 = run_echolab(paths, 1)
            times["echolab_1"].append(ours1)
            oursN, _, setsN = run_echolab(paths, args.jobs)
            times["echolab_n"].append(oursN)
            for name in FEATURE_SETS:
                set_times[f"{name}_1"].append(sets1[name])
                set_times[f"{name}_n"].append(setsN[name])
            times["tcptrace_1"].append(run_tcptrace(paths, 1))
            times["tcptrace_n"].append(run_tcptrace(paths, args.jobs))
            start = time.perf_counter()
            shark_packets = sum(pyshark_one(p) for p in subset)
            times["pyshark_subset_s"].append(time.perf_counter() - start)
            assert shark_packets == sub_packets, (shark_packets, sub_packets)
            print(f"  run {rep + 1}/{args.repeat}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()),
                  flush=True)
        best = {k: min(v) for k, v in times.items()}
        ours1, oursN, tt1, ttN, shark = (best[k] for k in ("echolab_1", "echolab_n", "tcptrace_1", "tcptrace_n",
                                                           "pyshark_subset_s"))
        shark_per_packet = shark / max(shark_packets, 1)
        shark_all = shark_per_packet * packets
        results.update(best, usable=len(records), pyshark_subset_files=len(subset),
                       pyshark_subset_packets=shark_packets, pyshark_extrapolated_s=shark_all, repeat=args.repeat,
                       all_runs_s=times, load_before=load_before, load_after=os.getloadavg(),
                       per_set_s={k: min(v) for k, v in set_times.items()}, per_set_runs_s=set_times,
                       jobs=args.jobs)

        rows = [
            ("echolab, all 3 sets, 1 process", ours1, 1.0),
            (f"echolab, all 3 sets, {args.jobs} processes", oursN, oursN / ours1),
            ("(a) tcptrace binary + CSV parse, sequential", tt1, tt1 / ours1),
            (f"(a) tcptrace binary + CSV parse, {args.jobs} at a time", ttN, ttN / ours1),
            (f"(b) pyshark per-packet, extrapolated from {len(subset)} files / {shark_packets} pkts",
             shark_all, shark_all / ours1),
        ]
        print()
        print(f"best of {args.repeat} runs each; load average {load_before[0]:.2f} before, "
              f"{results['load_after'][0]:.2f} after")
        print(f"{'method':62s} {'seconds':>9s} {'us/pkt':>8s} {'x echolab(1)':>13s}")
        for name, secs, ratio in rows:
            print(f"{name:62s} {secs:9.2f} {secs / packets * 1e6:8.1f} {ratio:13.1f}")
        print()
        print(f"echolab ({args.jobs} proc) vs tcptrace ({args.jobs} at a time): {ttN / oursN:.2f}x faster; "
              f"sequential: {tt1 / ours1:.2f}x faster")
        print("each set alone (reading the captures, then fitting and applying that set's transformer):")
        for name in FEATURE_SETS:
            one, many = min(set_times[f"{name}_1"]), min(set_times[f"{name}_n"])
            results[f"ratio_{name}_1"], results[f"ratio_{name}_n"] = tt1 / one, ttN / many
            print(f"  {name:10s} 1 process {one:6.2f}s ({tt1 / one:.2f}x tcptrace sequential); "
                  f"{args.jobs} processes {many:6.2f}s ({ttN / many:.2f}x tcptrace {args.jobs} at a time)")
        results["ratio_all_1"], results["ratio_all_n"] = tt1 / ours1, ttN / oursN
        print(f"echolab (1 proc) vs pyshark (extrapolated): {shark_all / ours1:.0f}x faster; "
              f"({args.jobs} proc): {shark_all / oursN:.0f}x")

        if args.big_mb:
            big = make_big(tmp / "big.pcap", args.big_mb)
            small = paths[0]
            mem = {
                "reader_small_mb": peak_rss_mb(f"sum(1 for _ in iter_tcp({str(small)!r}))"),
                "reader_big_mb": peak_rss_mb(f"sum(1 for _ in iter_tcp({str(big)!r}))"),
                "extract_small_mb": peak_rss_mb(f"extract_record({str(small)!r}, {DEVICE!r})"),
                "extract_big_mb": peak_rss_mb(f"extract_record({str(big)!r}, {DEVICE!r})"),
            }
            big_packets = sum(1 for _ in iter_tcp(big))
            results.update(mem, big_file_mb=big.stat().st_size / 1e6, big_packets=big_packets)
            print()
            print(f"memory (peak RSS of a fresh process): {big.stat().st_size / 1e6:.0f} MB capture, "
                  f"{big_packets} packets")
            print(f"  reader only:     small {mem['reader_small_mb']:.0f} MB, big {mem['reader_big_mb']:.0f} MB")
            print(f"  full extraction: small {mem['extract_small_mb']:.0f} MB, big {mem['extract_big_mb']:.0f} MB "
                  "(the record keeps each server->device packet's size and time for the histograms)")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
