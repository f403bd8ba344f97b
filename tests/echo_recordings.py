"""Crafted Echo-like recordings for the replay tests: real TCP, captured with tcpdump.

Each recording is one request shaped like REAL-ECHO-TRAFFIC.md describes a real
Echo's: on a long-lived connection that the capture joins mid-stream, a
keep-alive, then the utterance streamed up (70 to 80 KB in full-size
segments) while the answer comes down (10 to 90 KB, by class), some answers
pausing 2 to 3 s before they go on, in 5 to 9 s in all; then, for most, the
post-answer upload (~14.5 KB up, ~1.2 KB down, well under a second) 8 to 15 s
after the answer; then another keep-alive. All recordings run at the same
time (real time, one connection each) in a namespace of tests/pcaps.py, and
one tcpdump captures them; each is then cut out by its port into
``OUT/CLASS/NAME.pcap``. About 30 s for any number of recordings.

Run in the namespace as ``python tests/echo_recordings.py '<json scripts>'``.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

SERVER = ("127.0.0.1", 443)
DEVICE_IP = "127.0.0.2"
BASE_PORT = 41000
#: class -> answer bytes range (down), like spoken answers of different lengths
CLASSES = {"time": (10_000, 20_000), "news": (30_000, 50_000), "weather": (40_000, 60_000), "joke": (60_000, 90_000)}


def script(rng: random.Random, label: str, *, pause: bool, trailing: bool) -> list[tuple[float, str, int]]:
    """(offset_s, "up" | "down", bytes) writes of one recording, offsets from the start of the capture."""
    ev: list[tuple[float, str, int]] = [(0.3, "up", 41), (0.32, "down", 39)]  # a keep-alive and its reply
    start = 1.0
    up_total, up_s = rng.randint(70_000, 80_000), rng.uniform(2.5, 3.5)
    chunks = -(-up_total // 1448)
    for i in range(chunks):
        ev.append((start + i * up_s / chunks, "up", min(1448, up_total - i * 1448)))
    answer_at = start + rng.uniform(1.2, 2.0)
    down_total = rng.randint(*CLASSES[label])
    n = -(-down_total // 4096)
    pause_at = n // 2 if pause else -1
    t = answer_at
    for i in range(n):
        if i == pause_at:
            t += rng.uniform(2.0, 3.0)
        ev.append((t, "down", min(4096, down_total - i * 4096)))
        t += rng.uniform(0.03, 0.12)
    end = max(t, start + up_s)
    ev.append((end + 0.05, "up", 350))  # the Echo's "answer received" event
    end += 0.05
    if trailing:
        at = end + rng.uniform(8.0, 12.0)
        for i in range(10):
            ev.append((at + i * 0.03, "up", 1448 if i < 9 else 1468))
        ev.append((at + 0.32, "down", 1200))
        end = at + 0.32
    ev.append((end + 0.6, "up", 41))
    ev.append((end + 0.62, "down", 39))
    return sorted(ev)


def plan(seed: int = 1, per_class: int = 5) -> list[dict[str, Any]]:
    """Varied shapes: every class has answers with and without a pause, with and without the upload."""
    rng = random.Random(seed)
    out = []
    for label in CLASSES:
        for k in range(per_class):
            pause, trailing = k % 2 == 0, k % 3 != 2
            out.append({"label": label, "name": f"{label}{k}", "port": BASE_PORT + len(out),
                        "pause": pause, "trailing": trailing,
                        "events": script(rng, label, pause=pause, trailing=trailing)})
    return out


# --------------------------------------------------------------------------- the traffic (in the namespace)


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def _play(sock: socket.socket, events: list, direction: str, t0: float) -> None:
    for offset, d, n in events:
        if d == direction:
            delay = t0 + offset - time.time()
            if delay > 0:
                time.sleep(delay)
            sock.sendall(b"\x17" * n)


def run_traffic(plans: list[dict[str, Any]]) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(SERVER)
    srv.listen(64)
    pairs = []
    for p in plans:
        dev = socket.socket()
        dev.bind((DEVICE_IP, p["port"]))
        dev.connect(SERVER)
        conn, _ = srv.accept()
        for s in (dev, conn):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pairs.append((p, dev, conn))
    print("READY", flush=True)
    sys.stdin.readline()
    t0 = time.time() + 0.2
    threads = []
    for p, dev, conn in pairs:
        for target, args in ((_drain, (dev,)), (_drain, (conn,))):
            threading.Thread(target=target, args=args, daemon=True).start()
        threads += [threading.Thread(target=_play, args=(dev, p["events"], "up", t0)),
                    threading.Thread(target=_play, args=(conn, p["events"], "down", t0))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(0.5)
    print("DONE", flush=True)
    sys.stdin.readline()  # killed here: the connections never close inside the capture


def make_recordings(out: Path, plans: list[dict[str, Any]]) -> Path:
    """Run *plans* in a fresh namespace, capture, and write OUT/CLASS/NAME.pcap for each."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from pcaps import Netns

    raw = out / "all.pcap"
    out.mkdir(parents=True, exist_ok=True)
    with Netns() as ns:
        traffic = ns.popen([sys.executable, str(Path(__file__).resolve()), json.dumps(plans)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert b"READY" in traffic.stdout.readline(), "the traffic process did not connect"
            dump = ns.start_tcpdump(raw, f"tcp and host {DEVICE_IP}")
            traffic.stdin.write(b"go\n")
            traffic.stdin.flush()
            assert b"DONE" in traffic.stdout.readline(), "the traffic process failed"
            ns.stop_tcpdump(dump)
        finally:
            traffic.kill()
            traffic.wait()
    for p in plans:
        (out / p["label"]).mkdir(exist_ok=True)
        subprocess.run(["tcpdump", "-r", str(raw), "-w", str(out / p["label"] / f"{p['name']}.pcap"),
                        f"tcp port {p['port']}"], check=True, capture_output=True)
    raw.unlink()
    return out


if __name__ == "__main__":
    run_traffic(json.loads(sys.argv[1]))
