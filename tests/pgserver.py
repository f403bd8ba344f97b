"""A throw-away PostgreSQL server on loopback, for the catalog tests and the soak benchmark.

:func:`running` starts one (as the ``postgres`` user when run as root: the
server refuses root) and yields its base URL; :func:`restart` restarts it, as
a lab's shared catalog server may be restarted under a running campaign.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bindir() -> Path | None:
    """The PostgreSQL programs' folder (the newest version installed), None when it is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


#: The data folder of each server :func:`running` started in this process, by port.
_SERVERS: dict[str, Path] = {}


@contextmanager
def running() -> Iterator[str]:
    """A fresh server on 127.0.0.1 for the block; yields ``postgresql+psycopg://echolab@127.0.0.1:PORT``."""
    programs = bindir()
    if programs is None:
        raise RuntimeError("PostgreSQL is not installed (scripts/setup.sh installs it)")
    # Not under pytest's tmp folder: that one is private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="echolab-pg-"))
    data, port = root / "data", str(free_port())
    try:
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            os.chown(root, pg.pw_uid, pg.pw_gid)
        subprocess.run([*_as_postgres(), str(programs / "initdb"), "-D", str(data), "-A", "trust", "-U", "echolab"],
                       check=True, capture_output=True)
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        _SERVERS[port] = data
        subprocess.run([*_as_postgres(), str(programs / "pg_ctl"), "-D", str(data), "-o", opts, "-l",
                        str(root / "log"), "-w", "start"], check=True, capture_output=True)
        yield f"postgresql+psycopg://echolab@127.0.0.1:{port}"
    finally:
        if data.exists():
            subprocess.run([*_as_postgres(), str(programs / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True)
        _SERVERS.pop(port, None)
        shutil.rmtree(root, ignore_errors=True)


def restart(url: str) -> None:
    """Restart the server of :func:`running` that listens on *url*'s port (fast shutdown: sessions are cut)."""
    port = url.rsplit(":", 1)[1].split("/")[0]
    data = _SERVERS.get(port)
    if data is None:
        raise RuntimeError(f"no PostgreSQL server started by tests/pgserver.py on port {port}")
    subprocess.run([*_as_postgres(), f"{bindir()}/pg_ctl", "-D", str(data), "-m", "fast", "-w", "-l",
                    str(data.parent / "log"), "restart"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


def create_database(url: str, name: str) -> str:
    """A new, empty database *name* on the server at *url* (dropped first if it exists); its URL."""
    import psycopg

    with psycopg.connect(url.replace("+psycopg", "") + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{url}/{name}"
