"""Real captures for tests: real Linux TCP stacks, captured with tcpdump.

Every capture is made inside a network namespace this module creates (so the
host's loopback keeps its settings): ``lo`` gets MTU 1500 and its offloads are
turned off, so segments look like an Ethernet path's; the "cloud" server listens
on 127.0.0.1, the "device" client binds 127.0.0.2 (two addresses, because
tcptrace mixes up connections whose endpoints share one address). Optional
nftables rules drop packets *after* tcpdump saw them, so the capture holds the
lost segments and their retransmissions.

Use :func:`make_capture` (one scenario, one file) or :class:`Netns` directly.
The traffic itself runs in a child process started in the namespace with
``ip netns exec``: ``python tests/pcaps.py '<json scenario>'``.

Also :func:`write_pcap`, a writer of hand-made packets (no namespace needed)
for edge cases a real stack does not produce on demand.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from echolab.collector.sim.topology import Topology

SERVER_IP = "127.0.0.1"  # the "cloud"
DEVICE_IP = "127.0.0.2"  # the "device" (the Echo)
_counter = itertools.count()


def netns_available() -> bool:
    """True when this process may create network namespaces and has the tools."""
    return (os.geteuid() == 0 and all(shutil.which(t) for t in ("ip", "tcpdump"))
            and Path("/var/run/netns").parent.exists())


@dataclass
class Scenario:
    """What the traffic process does; every connection is device -> server request, server -> device reply."""

    port: int = 5001
    replies: list[int] = field(default_factory=lambda: [20000])  # one connection per entry, reply bytes
    request: int = 60  # request bytes the device sends first
    concurrent: bool = False  # run the connections at the same time
    chunk: int = 4096  # server write size
    server_pause_s: float = 0.0  # pause between server writes (idle time)
    rcvbuf: int = 0  # device SO_RCVBUF (small => small windows, zero windows with a slow reader)
    reader_stall_s: float = 0.0  # device stops reading this long after the first read
    reset: bool = False  # device closes with RST (SO_LINGER 0) after reading the reply
    client_port: int = 0  # fixed device port (re-used by every connection)
    midstream: bool = False  # wait for the capture to start after the first half of each reply
    upload: int = 0  # extra bytes the device sends after the reply (both directions carry data)


# --------------------------------------------------------------------------- the traffic (runs in the namespace)


def _recv_exact(sock: socket.socket, n: int) -> None:
    while n > 0:
        data = sock.recv(min(n, 65536))
        if not data:
            return
        n -= len(data)


def _serve(conn: socket.socket, sc: Scenario, phase: threading.Event | None) -> None:
    with conn:
        _recv_exact(conn, sc.request)
        total = next(_reply_sizes)
        sent = 0
        while sent < total:
            if phase is not None and sent >= total // 2 and not phase.is_set():
                phase.wait(10)
            n = min(sc.chunk, total - sent)
            conn.sendall(b"r" * n)
            sent += n
            if sc.server_pause_s:
                time.sleep(sc.server_pause_s)
        if sc.upload:
            _recv_exact(conn, sc.upload)
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(65536):
            pass


_reply_sizes: Iterator[int] = iter(())


def _device(sc: Scenario, total: int) -> None:
    sock = socket.socket()
    if sc.rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sc.rcvbuf)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((DEVICE_IP, sc.client_port))
    sock.connect((SERVER_IP, sc.port))
    sock.sendall(b"q" * sc.request)
    got, first = 0, True
    while got < total:
        data = sock.recv(65536)
        if not data:
            break
        got += len(data)
        if first and sc.reader_stall_s:
            time.sleep(sc.reader_stall_s)
        first = False
    if sc.upload:
        sock.sendall(b"u" * sc.upload)
    if sc.reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        return
    sock.shutdown(socket.SHUT_WR)
    while sock.recv(65536):
        pass
    sock.close()


def run_traffic(sc: Scenario) -> None:
    """Run the scenario (server and device) in this process; used inside the namespace."""
    global _reply_sizes
    _reply_sizes = iter(sc.replies)
    phase = threading.Event() if sc.midstream else None
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((SERVER_IP, sc.port))
    srv.listen(16)

    def server() -> None:
        threads = []
        for _ in sc.replies:
            conn, _addr = srv.accept()
            t = threading.Thread(target=_serve, args=(conn, sc, phase))
            t.start()
            threads.append(t)
            if not sc.concurrent:
                t.join()
        for t in threads:
            t.join()

    st = threading.Thread(target=server)
    st.start()
    if phase is not None:  # tell the parent the connections are up, wait until it captures
        clients = [threading.Thread(target=_device, args=(sc, n)) for n in sc.replies]
        for c in clients:
            c.start()
        time.sleep(0.3)
        print("READY", flush=True)
        sys.stdin.readline()
        phase.set()
        for c in clients:
            c.join()
    else:
        for n in sc.replies:
            c = threading.Thread(target=_device, args=(sc, n))
            c.start()
            if not sc.concurrent:
                c.join()
                if sc.client_port:
                    time.sleep(0.05)
            else:
                time.sleep(0.02)
        for c in threading.enumerate():
            if c is not threading.current_thread() and c is not st:
                c.join()
    st.join()
    srv.close()


# --------------------------------------------------------------------------- namespaces and tcpdump


class Netns:
    """A network namespace with lo (MTU 1500, offloads off); delete with :meth:`close`."""

    def __init__(self, *, sysctls: dict[str, str] | None = None, nft: str | None = None, mtu: int = 1500):
        self.name = f"echolab-t{os.getpid()}-{next(_counter)}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        try:
            self.run(["ip", "link", "set", "lo", "up", "mtu", str(mtu)])
            if shutil.which("ethtool"):
                self.run(["ethtool", "-K", "lo", "tso", "off", "gso", "off", "gro", "off"], check=False)
            for key, value in (sysctls or {}).items():
                self.run(["sysctl", "-q", "-w", f"{key}={value}"])
            if nft:
                subprocess.run(["ip", "netns", "exec", self.name, "nft", "-f", "-"], input=nft.encode(),
                               check=True, capture_output=True)
        except Exception:
            self.close()
            raise

    def run(self, cmd: Sequence[str], check: bool = True, **kw: Any) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *cmd], check=check, capture_output=True, **kw)

    def popen(self, cmd: Sequence[str], **kw: Any) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], **kw)

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)

    def __enter__(self) -> "Netns":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start_tcpdump(self, path: Path, bpf: str, *, snaplen: int = 0, nano: bool = False) -> subprocess.Popen:
        cmd = ["tcpdump", "-i", "lo", "-Z", "root", "--immediate-mode", "-U", "-s", str(snaplen), "-w", str(path)]
        if nano:
            cmd += ["--time-stamp-precision=nano"]
        proc = self.popen([*cmd, bpf], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = proc.stderr.readline().decode(errors="replace")
            if "listening on" in line:
                return proc
            if not line and proc.poll() is not None:
                break
        proc.kill()
        raise RuntimeError(f"tcpdump did not start in namespace {self.name}")

    @staticmethod
    def stop_tcpdump(proc: subprocess.Popen) -> None:
        time.sleep(0.2)  # let the last packets reach the file
        proc.terminate()
        proc.wait(10)


def loss_rules(port: int, every: int = 9, offset: int = 4, min_len: int = 300) -> str:
    """nftables rules dropping every *every*-th data segment from the server, after capture (input hook)."""
    return (f"table inet echolab_loss {{\n chain input {{\n  type filter hook input priority 0;\n"
            f"  tcp sport {port} tcp flags & (syn|fin|rst) == 0 meta length > {min_len} "
            f"numgen inc mod {every} == {offset} drop\n }}\n}}\n")


def make_capture(path: Path, scenario: Scenario, *, bpf: str | None = None, nft: str | None = None,
                 sysctls: dict[str, str] | None = None, snaplen: int = 0, nano: bool = False,
                 fmt: str = "pcap") -> Path:
    """Run *scenario* between real sockets in a fresh namespace and capture it to *path*.

    *bpf* defaults to both directions of the scenario's port. ``fmt="pcapng"``
    converts with editcap. Returns *path*.
    """
    path = Path(path)
    raw = path.with_suffix(".raw.pcap") if fmt == "pcapng" else path
    bpf = bpf or f"tcp port {scenario.port}"
    script = [sys.executable, str(Path(__file__).resolve()), json.dumps(asdict(scenario))]
    with Netns(sysctls=sysctls, nft=nft) as ns:
        if scenario.midstream:
            traffic = ns.popen(script, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            line = traffic.stdout.readline()
            if b"READY" not in line:
                traffic.kill()
                raise RuntimeError("traffic process did not get ready")
            dump = ns.start_tcpdump(raw, bpf, snaplen=snaplen, nano=nano)
            traffic.stdin.write(b"go\n")
            traffic.stdin.flush()
            rc = traffic.wait(60)
        else:
            dump = ns.start_tcpdump(raw, bpf, snaplen=snaplen, nano=nano)
            rc = subprocess.run(["ip", "netns", "exec", ns.name, *script], timeout=60).returncode
        ns.stop_tcpdump(dump)
    if rc != 0:
        raise RuntimeError(f"traffic scenario failed with exit code {rc}")
    if fmt == "pcapng":
        subprocess.run(["editcap", "-F", "pcapng", str(raw), str(path)], check=True, capture_output=True)
        raw.unlink()
    return path


def delete_frames(src: Path, dst: Path, frames: Sequence[int]) -> Path:
    """Copy *src* to *dst* without the given 1-based frame numbers (editcap), e.g. to hide the first
    transmission of a lost segment as if the capture point had missed it."""
    subprocess.run(["editcap", str(src), str(dst), *map(str, frames)], check=True, capture_output=True)
    return Path(dst)


def retransmitted_originals(path: Path, sport: int) -> list[int]:
    """1-based frame numbers of data segments from *sport* whose sequence number is sent again later."""
    from echolab.captures.reader import T_DATA_LEN, T_SEQ, T_SPORT, iter_tcp

    first_seen: dict[int, int] = {}
    originals: list[int] = []
    for number, pkt in enumerate(iter_tcp(path), start=1):
        if pkt[T_SPORT] != sport or pkt[T_DATA_LEN] <= 0:
            continue
        seq = pkt[T_SEQ]
        if seq in first_seen:
            if first_seen[seq] not in originals:
                originals.append(first_seen[seq])
        else:
            first_seen[seq] = number
    return originals


# --------------------------------------------------------------------------- hand-made packets


def tcp_packet(src: str, dst: str, sport: int, dport: int, *, seq: int = 1000, ack: int = 0, flags: str = "A",
               win: int = 1000, payload: int | bytes = 0, options: bytes = b"", ip_id: int = 1,
               urp: int = 0) -> bytes:
    """An Ethernet/IPv4 (or IPv6 when *src* has a colon) TCP frame, built with dpkt."""
    import dpkt

    bits = {"F": 1, "S": 2, "R": 4, "P": 8, "A": 16, "U": 32}
    data = payload if isinstance(payload, bytes) else b"d" * payload
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, win=win, urp=urp,
                       flags=sum(bits[c] for c in flags), opts=options, data=data)
    tcp.off = (20 + len(options)) // 4
    if ":" in src:
        ip = dpkt.ip6.IP6(src=socket.inet_pton(socket.AF_INET6, src), dst=socket.inet_pton(socket.AF_INET6, dst),
                          nxt=6, hlim=64, data=tcp, plen=len(bytes(tcp)))
        etype = dpkt.ethernet.ETH_TYPE_IP6
    else:
        ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=6, id=ip_id, ttl=64, data=tcp)
        ip.len = 20 + len(bytes(tcp))
        etype = dpkt.ethernet.ETH_TYPE_IP
    eth = dpkt.ethernet.Ethernet(src=b"\x02\x00\x00\x00\x00\x01", dst=b"\x02\x00\x00\x00\x00\x02", type=etype,
                                 data=ip)
    return bytes(eth)


def write_pcap(path: Path, frames: Sequence[tuple[float, bytes]], *, snaplen: int = 65535) -> Path:
    """Write (timestamp, frame) records as a classic Ethernet pcap (dpkt's writer)."""
    import dpkt

    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh, snaplen=snaplen, linktype=dpkt.pcap.DLT_EN10MB)
        for ts, frame in frames:
            writer.writepkt(frame[:snaplen], ts=ts)
    return Path(path)


if __name__ == "__main__":
    run_traffic(Scenario(**json.loads(sys.argv[1])))


def synthetic_session(path: Path, *, device: str = "192.168.1.50", server: str = "52.94.1.10",
                      sizes: Sequence[int] = (1448, 1448, 600), gap_s: float = 0.01, window: int = 8213,
                      start: float = 1_700_000_000.0, acks: bool = True, syn: bool = False,
                      extra_server: str | None = None) -> Path:
    """A hand-made Echo-like exchange: the device's request, then server segments of *sizes*.

    Mid-stream by default (no SYN, like the study's captures of a long-lived
    connection). *extra_server* adds a second connection from another server.
    """
    frames: list[tuple[float, bytes]] = []
    t = start
    servers = [server] + ([extra_server] if extra_server else [])
    for k, srv in enumerate(servers):
        dport, sport = 443, 50000 + k
        cseq, sseq = 1000 + k, 900_000 + 7 * k
        if syn:
            frames.append((t, tcp_packet(device, srv, sport, dport, seq=cseq - 1, flags="S", win=65535)))
            t += gap_s
            frames.append((t, tcp_packet(srv, device, dport, sport, seq=sseq - 1, ack=cseq, flags="SA",
                                         win=window)))
            t += gap_s
        frames.append((t, tcp_packet(device, srv, sport, dport, seq=cseq, ack=sseq, flags="PA", win=4000,
                                     payload=120)))
        cseq += 120
        for i, n in enumerate(sizes):
            t += gap_s * (1 + (i % 3))
            frames.append((t, tcp_packet(srv, device, dport, sport, seq=sseq, ack=cseq, flags="PA" if i % 2 else "A",
                                         win=window + 100 * (i % 2), payload=n, ip_id=100 + i)))
            sseq += n
            if acks and i % 2:
                t += gap_s / 10
                frames.append((t, tcp_packet(device, srv, sport, dport, seq=cseq, ack=sseq, flags="A",
                                             win=4000)))
        t += gap_s
        frames.append((t, tcp_packet(srv, device, dport, sport, seq=sseq, ack=cseq, flags="A", win=window)))
    return write_pcap(path, frames)


# --------------------------------------------------------------------------- synthetic captures of the simulated lab

#: The simulated Echo's address, as the simulated lab's topology (and every synthetic capture) has it.
SIM_DEVICE_IP = Topology().echo_ip


def write_class_captures(folder: Path, per_class: int, *, seed: Sequence[int] = (), classes: Sequence[str] | None = None,
                         start_ts: float = 1_700_000_000.0) -> list[Path]:
    """``FOLDER/LABEL/I.pcap``: *per_class* synthetic captures of each class, as the simulated lab makes them.

    Capture I of a class is drawn from ``default_rng([*seed, index of the class, I])`` with a
    prompt of 1.5 to 3 s, so the same arguments give the same files.
    """
    import numpy as np

    from echolab.collector.sim import synthetic
    from echolab.prompts.classes import STUDY_CLASSES

    paths = []
    for label in classes or STUDY_CLASSES:
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rng = np.random.default_rng([*seed, STUDY_CLASSES.index(label), i])
            path = folder / label / f"{i}.pcap"
            synthetic.write_capture(path, label, float(rng.uniform(1.5, 3.0)), rng, start_ts=start_ts)
            paths.append(path)
    return paths


def sim_capture(lab: Any, path: Path, label: str, duration_s: float = 2.5, settle_s: float = 0.3) -> Path:
    """One request of class *label* on the simulated lab *lab* (a SimLab), captured by tshark in its gateway namespace."""
    import signal

    from echolab.collector.audio import DurationClip

    proc = subprocess.Popen(lab.capture_command(path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # tshark says so on stderr once the capture runs
        line = proc.stderr.readline()
        if "Capturing on" in line or proc.poll() is not None:
            break
    assert proc.poll() is None, f"tshark did not start: {proc.stderr.read()}"
    try:
        lab.sink().play(DurationClip(duration_s), label=label, prompt_text=f"a {label} prompt")
        assert lab.wait_idle(60), "the Echo stayed busy"
        time.sleep(settle_s)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    return path
