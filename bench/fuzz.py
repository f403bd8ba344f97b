#!/usr/bin/env python3
"""Coverage-guided fuzzing of echolab's readers with atheris (libFuzzer for Python).

Every file echolab reads from a stranger has a harness here: the pcap/pcapng
reader, the long-capture cut and its piece writer, the trace-CSV importer, the
import manifest, the lab's settings file, the model-file reader, the grids
file and the TLS record layer. A harness writes the fuzzer's bytes to a file, hands it to the library as
a user would, and accepts only two endings: success, or an error of echolab's
own family (:class:`echolab.errors.EcholabError`). Anything else is a crash.

Run from the repository root (atheris is in the ``fuzz`` extra)::

    nice -n 19 .venv/bin/python bench/fuzz.py pcap --minutes 10
    nice -n 19 .venv/bin/python bench/fuzz.py all --minutes 9     # every target in turn

The seed corpus is built from the test captures (``tests/pcaps.py``); the
corpus the fuzzer grows is kept in ``bench/fuzz_corpus/TARGET`` (not
committed), so a second run goes on from the first. A crash does not stop the
run: its input is saved once per distinct place (exception type, file and line)
in ``bench/fuzz_crashes/TARGET/``, so one run finds several. Each run adds its
figures (executions, coverage and features as libFuzzer counts them, corpus
size, crashes) to ``bench/results/fuzz.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
CORPUS = ROOT / "bench" / "fuzz_corpus"
CRASHES = ROOT / "bench" / "fuzz_crashes"
RESULTS = ROOT / "bench" / "results" / "fuzz.json"

# The cut each byte selects for the cut target (the first byte of its input).
CUTS = ("auto", "gap=0.5", "every=0.05", "gap=3")


class Harness:
    """One target: a work folder, the call into the library, its seeds."""

    def __init__(self, name: str, suffix: str) -> None:
        self.name = name
        self.work = Path(tempfile.mkdtemp(prefix=f"echolab-fuzz-{name}-", dir="/dev/shm" if Path("/dev/shm").is_dir()
                                          else None))
        self.file = self.work / f"input{suffix}"

    def write(self, data: bytes) -> Path:
        self.file.write_bytes(data)
        return self.file


# --------------------------------------------------------------------------- seeds


def _captures(folder: Path) -> list[Path]:
    """Small pcap and pcapng captures made with the test helpers."""
    from pcaps import synthetic_session, tcp_packet, write_pcap

    from echolab.captures.pieces import write_pieces
    from echolab.captures.timeline import Segment

    folder.mkdir(parents=True, exist_ok=True)
    out = [synthetic_session(folder / "plain.pcap"),
           synthetic_session(folder / "syn.pcap", syn=True, extra_server="52.94.1.11"),
           synthetic_session(folder / "v6.pcap", device="fd00::50", server="2600:1f18::10", sizes=(900, 300)),
           write_pcap(folder / "snap.pcap", [(1.5, tcp_packet("10.0.0.2", "10.0.0.1", 443, 5000, payload=1400))],
                      snaplen=60)]
    # two requests far apart, and their pcapng pieces written by the piece writer
    long = synthetic_session(folder / "long.pcap", sizes=(1448, 1448, 600, 1448, 1448, 300, 200), gap_s=0.4)
    pieces = write_pieces(long, [Segment(1_700_000_000_000_000, 1_700_000_001_000_000, 0, 0, 0),
                                 Segment(1_700_000_001_500_000, 1_700_000_009_000_000, 0, 0, 0)], folder / "pieces")
    return out + [long] + pieces


def _tls_captures(folder: Path) -> list[Path]:
    """TLS records of both directions cut into segments every which way: split over segments, several in one,
    a retransmitted segment, a capture that starts mid-record (as tests/test_records.py crafts them)."""
    import random

    from pcaps import tcp_packet, write_pcap

    rng = random.Random(28)
    dev, srv = "192.168.1.50", "52.94.1.10"

    def rec(n: int, ctype: int = 23) -> bytes:
        return bytes([ctype, 3, 3, n >> 8, n & 0xFF]) + rng.randbytes(n)

    folder.mkdir(parents=True, exist_ok=True)
    up = rec(40, 22) + rec(113) * 3 + rec(432) + rec(1, 21)
    down = rec(60, 22) + rec(4000) + rec(30)
    out = []
    for name, cuts, skip in (("split", 97, 0), ("merged", 1400, 0), ("mid", 300, 150)):
        frames, t = [], 1.0
        for payload, (src, dst, sp, dp) in ((up, (dev, srv, 50123, 443)), (down, (srv, dev, 443, 50123))):
            for off in range(skip, len(payload), cuts):
                chunk = payload[off:off + cuts]
                frames.append((t, tcp_packet(src, dst, sp, dp, seq=1000 + off, ack=1, flags="PA", payload=chunk)))
                if name == "split" and off == cuts:  # the same segment again: a retransmission
                    frames.append((t + 0.001, tcp_packet(src, dst, sp, dp, seq=1000 + off, ack=1, flags="PA",
                                                         payload=chunk)))
                t += 0.01
        out.append(write_pcap(folder / f"{name}.pcap", frames))
    return out


def seeds(target: str, folder: Path) -> list[bytes]:
    """The seed inputs of *target*, from the test captures and the shipped files."""
    from echolab.analysis.compare.grids import DEFAULT_GRIDS

    caps = _captures(folder / "caps")
    if target == "pcap":
        return [p.read_bytes() for p in caps]
    if target == "cut":
        return [bytes([i]) + p.read_bytes() for i, p in enumerate(caps)]
    if target == "trace":
        from echolab.captures.reader import read_packets
        from echolab.captures.trace import format_trace

        out = []
        for p in caps[:3]:
            pk = list(read_packets(p))
            t0 = pk[0].ts_us
            out.append(format_trace([q.ts_us - t0 for q in pk],
                                    [q.ip_len if i % 2 else -q.ip_len for i, q in enumerate(pk)]).encode())
        return out + [b"time,size,direction\n0.0,120,1\n0.25,-1448,-1\n1e3,5,1\n"]
    if target == "manifest":
        return [b"path,label\ncaps/plain.pcap,weather\n",
                b"path,label,status,campaign,device_ip,reason\ncaps/syn.pcap,joke,ok,c1,192.168.1.50,\n"
                b"caps/v6.pcap,time,failed,c1,,no answer\n,,,\n",
                b"id,label,status,campaign,path,sha256,size_bytes\n1,a,ok,x,caps/long.pcap,00,1\n"]
    if target == "settings":
        return [b'catalog_lock_timeout_s = 5\n', b'[collect]\nspeed = 2.0\n',
                b'catalog_url = "sqlite:///catalog.sqlite"\n', b"\n"]
    if target == "modelfile":
        return _model_seeds(folder)
    if target == "records":
        return [p.read_bytes() for p in _tls_captures(folder / "tls")] + [p.read_bytes() for p in caps[:2]]
    if target == "grids":
        text = DEFAULT_GRIDS.read_text()
        blocks = re.split(r"(?m)^(?=\[models\.)", text)
        return [text.encode()] + [b.encode() for b in blocks if b.startswith("[models.")][:4]
    raise SystemExit(f"unknown target {target}")


#: How the modelfile target reads its input's first byte (low two bits): the whole file as given, or a valid
#: model file with one member replaced by the rest of the input and zipped again with true checksums, so the
#: fuzzer reaches the header's and skops' parsing instead of stopping at the zip's CRCs.
MODEL_MODES = ("file", "header", "schema")


def trained_models(folder: Path) -> list[bytes]:
    """Two small real model files (a forest on histograms, k-NN on the flow set), trained on test captures once
    and kept in ``bench/fuzz_corpus/modelfile-bases/``."""
    from grids import write_grids
    from pcaps import SIM_DEVICE_IP, write_class_captures

    from echolab.analysis.compare.modelfile import campaign_source, save_model, train_model
    from echolab.db.catalog import Catalog
    from echolab.db.transfer import import_captures
    from echolab.labdir import LabDir

    cached = sorted(CORPUS.glob("modelfile-bases/*.echolab-model"))
    if cached:  # the same files every run: the corpus' repacked inputs name the parts of these
        return [p.read_bytes() for p in cached]
    lab = LabDir.open(folder / "modellab", create=True)
    write_class_captures(folder / "train", 3, start_ts=1_700_000_000.0)
    grids = write_grids(folder, {"random_forest": {"params": {"n_estimators": 3}, "grid": {"max_depth": [2]}},
                                 "knn": {"params": {}, "grid": {"n_neighbors": [1]}}}, labels=False)
    out: list[Path] = []
    with Catalog.open(lab) as cat:
        import_captures(cat, folder / "train", campaign="train", device_ip=SIM_DEVICE_IP)
        source = campaign_source(cat, ["train"], device_ip=SIM_DEVICE_IP)
        for feature, model in (("histogram:bins=6", "random_forest"), ("flow", "knn")):
            path = save_model(train_model(source, feature, model, grids_path=grids),
                              CORPUS / "modelfile-bases" / f"{model}.echolab-model")
            out.append(path)
    return [p.read_bytes() for p in sorted(out)]


def _members(blob: bytes) -> dict[str, bytes]:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _zipped(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def repack_model(bases: list[bytes], data: bytes) -> bytes:
    """The model file an input of the modelfile target stands for (see :data:`MODEL_MODES`)."""
    from echolab.analysis.compare.modelfile import HEADER_MEMBER, MODEL_MEMBER

    if not data:
        return b""
    mode, body = MODEL_MODES[data[0] % 4 % 3], data[1:]
    if mode == "file":
        return body
    outer = _members(bases[(data[0] >> 2) % len(bases)])
    if mode == "header":
        outer[HEADER_MEMBER] = body
    else:
        inner = _members(outer[MODEL_MEMBER])
        inner["schema.json"] = body
        outer[MODEL_MEMBER] = _zipped(inner)
    return _zipped(outer)


def _model_seeds(folder: Path) -> list[bytes]:
    """Real model files whole, their headers and skops schemas (to be repacked), and headers nearly valid."""
    import json

    from echolab.analysis.compare.modelfile import FORMAT, HEADER_MEMBER, MODEL_MEMBER
    from echolab.analysis.features.sets import EXTRACTOR_VERSION

    bases = trained_models(folder)
    out = [bytes([0]) + b for b in bases]
    for i, base in enumerate(bases):
        outer = _members(base)
        out.append(bytes([1 | i << 2]) + outer[HEADER_MEMBER])
        out.append(bytes([2 | i << 2]) + _members(outer[MODEL_MEMBER])["schema.json"])
    header = {"format": FORMAT, "extractor_version": EXTRACTOR_VERSION, "feature_set": "tcptrace",
              "feature_key": "tcptrace", "feature_options": {}, "versions": {"numpy": "0"}}
    for head in (header, {**header, "feature_set": "histogram"}, {"format": 0}):
        out.append(bytes([1]) + json.dumps(head).encode())
    return out


# --------------------------------------------------------------------------- harnesses


def make_harness(target: str) -> Callable[[bytes], None]:
    """The one-input call of *target*; imports echolab under atheris' instrumentation."""
    import atheris

    with atheris.instrument_imports(include=["echolab"]):
        from echolab.analysis.compare import grids, modelfile
        from echolab.captures import cut, device, pieces, reader, records, spec, trace
        from echolab.db import transfer
        from echolab.db.catalog import Catalog
        from echolab.labdir import LabDir

    if target == "pcap":
        h = Harness(target, ".pcap")

        def one(data: bytes) -> None:
            path = h.write(data)
            stats = reader.ReadStats()
            for _ in reader.iter_tcp(path, stats, want_udp=True):
                pass
            reader.summarize(path)
        return one
    if target == "cut":
        h = Harness(target, ".pcapng")
        specs = [spec.SplitSpec.parse(s) for s in CUTS]

        def one(data: bytes) -> None:
            if not data:
                return
            path = h.write(data[1:])
            result = cut.find_segments(device.load_timeline(path), specs[data[0] % len(specs)],
                                       expect=2 if data[0] & 4 else None)
            out = h.work / "pieces"
            shutil.rmtree(out, ignore_errors=True)
            segs = result.segments
            pieces.write_pieces(path, segs, out)
        return one
    if target == "trace":
        h = Harness(target, ".csv")

        def one(data: bytes) -> None:
            path = h.write(data)
            if trace.is_trace_file(path):
                trace.summarize_trace(path)
            trace.read_trace(path)
        return one
    if target == "manifest":
        h = Harness(target, ".csv")
        lab = LabDir.open(h.work / "lab", create=True)
        seeds("pcap", h.work)  # the captures the seed manifests name, under work/caps
        catalog = Catalog.open(lab)

        def one(data: bytes) -> None:
            path = h.write(data)
            transfer.import_captures(catalog, h.work, manifest=path)
        return one
    if target == "settings":
        h = Harness(target, ".toml")
        root = h.work / "lab"
        LabDir.open(root, create=True)
        Catalog.open(LabDir.open(root)).close()  # a catalog at the newest schema: opening it is quick

        def one(data: bytes) -> None:
            (root / "echolab.toml").write_bytes(data)
            lab = LabDir.open(root)
            url = lab.settings.get("catalog_url")
            if isinstance(url, str) and url:  # a URL elsewhere: only the default catalog is opened here
                return
            Catalog.open(lab).close()
        return one
    if target == "modelfile":
        import warnings

        h = Harness(target, ".echolab-model")
        bases = trained_models(h.work / "seeds")

        def one(data: bytes) -> None:
            path = h.write(repack_model(bases, data))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a header naming other library versions warns; that is not a crash
                model = modelfile.load_model(path)
            model.header()
        return one
    if target == "records":
        h = Harness(target, ".pcap")

        def one(data: bytes) -> None:
            path = h.write(data)
            stats = records.RecordStats()
            got = list(records.tls_records(path, "192.168.1.50", stats))
            records.record_rows(got)
        return one
    if target == "grids":
        h = Harness(target, ".toml")

        def one(data: bytes) -> None:
            path = h.write(data)
            specs = grids.load_grids(path)
            grids.select_models(specs, None)
        return one
    raise SystemExit(f"unknown target {target}")


# --------------------------------------------------------------------------- the child: one fuzzing run


def child(target: str, seconds: int, corpus: Path, crashes: Path, log: Path) -> None:
    import atheris

    from echolab.errors import EcholabError

    one = make_harness(target)
    crashes.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()

    def test(data: bytes) -> None:
        try:
            one(data)
        except EcholabError:
            pass
        except Exception as exc:  # noqa: BLE001 - anything else is a crash: record it, go on
            tb = traceback.extract_tb(exc.__traceback__)
            ours = [f for f in tb if "/echolab/" in f.filename] or tb
            where = f"{type(exc).__name__} at {Path(ours[-1].filename).name}:{ours[-1].lineno}"
            if where in seen:
                return
            seen.add(where)
            name = hashlib.sha1(data).hexdigest()[:16]
            (crashes / f"{name}.bin").write_bytes(data)
            with open(log, "a") as fh:
                fh.write(json.dumps({"where": where, "input": f"{name}.bin", "message": str(exc)[:300],
                                     "trace": "".join(traceback.format_exception(exc))[-3000:]}) + "\n")
            print(f"CRASH {where}: {str(exc)[:200]}", file=sys.stderr, flush=True)

    atheris.Setup([sys.argv[0], str(corpus), f"-max_total_time={seconds}", "-timeout=20", "-rss_limit_mb=2048",
                   "-max_len=65536", "-print_final_stats=1", "-close_fd_mask=1",
                   f"-artifact_prefix={crashes}/"], test)
    atheris.Fuzz()


# --------------------------------------------------------------------------- the parent: seeds, run, figures


TARGETS = ("pcap", "cut", "trace", "manifest", "settings", "modelfile", "grids", "records")


def run(target: str, minutes: float) -> dict:
    corpus = CORPUS / target
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        with tempfile.TemporaryDirectory() as tmp:
            for data in seeds(target, Path(tmp)):
                (corpus / f"seed-{hashlib.sha1(data).hexdigest()[:12]}").write_bytes(data)
    crashes = CRASHES / target
    log = crashes / "crashes.jsonl"
    before = len(log.read_text().splitlines()) if log.exists() else 0
    seconds = max(1, round(minutes * 60))
    started = time.time()
    proc = subprocess.run([sys.executable, "-P", __file__, target, "--child", "--seconds", str(seconds)],
                          capture_output=True, text=True, errors="replace", cwd=ROOT)
    text = proc.stderr
    (CRASHES / f"{target}.log").parent.mkdir(parents=True, exist_ok=True)
    (CRASHES / f"{target}.log").write_text(text[-200_000:])
    lines = log.read_text().splitlines() if log.exists() else []
    found = [json.loads(x) for x in lines[before:]]
    status = [m for m in re.finditer(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/", text)]
    execs = re.search(r"stat::number_of_executed_units: (\d+)", text)
    last = status[-1] if status else None
    return {"target": target, "minutes": round((time.time() - started) / 60, 2),
            "executions": int(execs.group(1)) if execs else (int(last.group(1)) if last else 0),
            "coverage": int(last.group(2)) if last else 0, "features": int(last.group(3)) if last else 0,
            "corpus": int(last.group(4)) if last else 0, "exit": proc.returncode,
            "crashes": [{"where": c["where"], "input": c["input"], "message": c["message"]} for c in found],
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def record(row: dict) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": []}
    data["runs"].append(row)
    totals: dict[str, dict] = {}
    for r in data["runs"]:
        t = totals.setdefault(r["target"], {"minutes": 0.0, "executions": 0, "coverage": 0, "crashes_found": 0})
        t["minutes"] = round(t["minutes"] + r["minutes"], 2)
        t["executions"] += r["executions"]
        t["coverage"] = max(t["coverage"], r["coverage"])
        t["crashes_found"] += len(r["crashes"])
    data["totals"] = totals
    data["total_minutes"] = round(sum(t["minutes"] for t in totals.values()), 2)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", choices=TARGETS + ("all",))
    ap.add_argument("--minutes", type=float, default=5.0, help="how long to fuzz each target")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=int, default=60, help=argparse.SUPPRESS)
    args, _rest = ap.parse_known_args()
    if args.child:
        child(args.target, args.seconds, CORPUS / args.target, CRASHES / args.target,
              CRASHES / args.target / "crashes.jsonl")
        return
    for target in TARGETS if args.target == "all" else (args.target,):
        row = run(target, args.minutes)
        record(row)
        print(json.dumps({k: v for k, v in row.items() if k != "crashes"}), flush=True)
        for c in row["crashes"]:
            print(f"  crash {c['where']}: {c['message'][:160]}  (bench/fuzz_crashes/{target}/{c['input']})",
                  flush=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
