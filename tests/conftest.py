"""Shared fixtures: lab directories, catalogs on SQLite and on a real PostgreSQL
server (started here on loopback), and real captures made with tcpdump."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from echolab.labdir import CATALOG_URL_ENV, LabDir

# Under CI=1 every skip is a failure: see ci_guard.py.
pytest_plugins = ("ci_guard", "pytester")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throw-away PostgreSQL server on 127.0.0.1 (tests/pgserver.py); yields its base URL."""
    import pgserver

    if pgserver.bindir() is None:
        pytest.skip("PostgreSQL is not installed (scripts/setup.sh installs it)")
    with pgserver.running() as url:
        yield url


_db_counter = iter(range(1_000_000))


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty catalog URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.sqlite'}"
        return
    import pgserver

    yield pgserver.create_database(request.getfixturevalue("postgres_server"), f"t{os.getpid()}_{next(_db_counter)}")


@pytest.fixture
def lab(tmp_path: Path, catalog_url: str, monkeypatch: pytest.MonkeyPatch) -> LabDir:
    """A fresh lab directory whose catalog lives at ``catalog_url``."""
    monkeypatch.setenv(CATALOG_URL_ENV, catalog_url)
    return LabDir.open(tmp_path / "lab", create=True)


@pytest.fixture
def sqlite_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LabDir:
    monkeypatch.delenv(CATALOG_URL_ENV, raising=False)
    return LabDir.open(tmp_path / "lab", create=True)


def make_loopback_capture(path: Path, *, payloads: list[int], reply: int = 0, fmt: str = "pcap") -> Path:
    """Capture one real TCP exchange on loopback with tcpdump.

    The client sends one message per entry of *payloads* (that many bytes),
    the server answers each with *reply* bytes. ``fmt`` is "pcap" or "pcapng".
    """
    if shutil.which("tcpdump") is None:
        pytest.fail("tcpdump is not installed; scripts/setup.sh installs it")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    raw = path.with_suffix(".raw.pcap") if fmt == "pcapng" else path
    # --immediate-mode: without it packets wait in the kernel's ring buffer for
    # up to a second and are lost when tcpdump is stopped.
    cmd = ["tcpdump", "-i", "lo", "--immediate-mode", "-U", "-B", "16384", "-w", str(raw), "-s", "9000", f"tcp port {port}"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    _wait_listening(proc)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            for n in payloads:
                got = 0
                while got < n:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    got += len(chunk)
                if reply:
                    conn.sendall(b"r" * reply)

    t = threading.Thread(target=serve)
    t.start()
    with socket.create_connection(("127.0.0.1", port)) as c:
        for n in payloads:
            c.sendall(b"q" * n)
            if reply:
                got = 0
                while got < reply:
                    got += len(c.recv(65536))
    t.join()
    server.close()
    time.sleep(0.3)
    proc.terminate()
    proc.wait(timeout=10)
    if fmt == "pcapng":  # tcpdump writes pcap only; editcap (from tshark's package) converts
        subprocess.run(["editcap", "-F", "pcapng", str(raw), str(path)], check=True, capture_output=True)
        raw.unlink()
    return path


def _wait_listening(proc: subprocess.Popen) -> None:
    """Return once tcpdump says it is listening (it prints that on stderr)."""
    assert proc.stderr is not None
    deadline = time.time() + 10
    while time.time() < deadline:
        line = proc.stderr.readline().decode(errors="replace")
        if "listening on" in line:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"tcpdump exited: {line}")
    raise RuntimeError("tcpdump did not start listening within 10 s")


@pytest.fixture
def capture_factory(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(10_000))

    def make(name: str | None = None, **kwargs) -> Path:
        fmt = kwargs.get("fmt", "pcap")
        path = tmp_path / (name or f"cap{next(counter)}.{fmt}")
        path.parent.mkdir(parents=True, exist_ok=True)
        return make_loopback_capture(path, **kwargs)

    return make


@pytest.fixture(scope="session")
def class_folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of real captures labelled by folder: weather x2, music x1, unintelligible x1."""
    root = tmp_path_factory.mktemp("dataset")
    layout = [("weather", "a.pcap", "pcap"), ("weather", "b.pcapng", "pcapng"), ("music", "c.pcap", "pcap"),
              ("unintelligible", "d.pcap", "pcap")]
    for i, (label, name, fmt) in enumerate(layout):
        (root / label).mkdir(exist_ok=True)
        make_loopback_capture(root / label / name, payloads=[200 + i, 300], reply=1000 * (i + 1), fmt=fmt)
    return root
