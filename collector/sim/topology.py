"""The simulated lab's network: three namespaces joined by two veth pairs.

::

    PREFIX-echo            PREFIX-gw                          PREFIX-cloud
    echo0 10.77.0.2 <-> gw-echo 10.77.0.1 | gw-cloud 10.77.1.1 <-> cloud0 10.77.1.2 (voice)
                       (capture here)                               10.77.1.3 (music)

The gateway namespace routes between the two links, like the study's gateway
machine; captures run there on ``gw-echo``. Veths are created directly inside
their namespaces, so nothing ever appears in the host's namespace and deleting
the namespaces deletes every link. Offloads are off and the MTU is 1500, so
captured packets have their real sizes. IPv6 is off inside the namespaces so
captures hold only the lab's IPv4 traffic (and ARP).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass

from echolab.collector.sim.errors import NamespaceUnavailable, SimError

MTU = 1500
OFFLOADS = ("tso", "gso", "gro", "tx", "rx")


@dataclass(frozen=True)
class Topology:
    """Names and addresses of one simulated lab (one *prefix*)."""

    prefix: str = "echolab"
    echo_if: str = "echo0"
    gw_echo_if: str = "gw-echo"
    gw_cloud_if: str = "gw-cloud"
    cloud_if: str = "cloud0"
    echo_ip: str = "10.77.0.2"
    gw_echo_ip: str = "10.77.0.1"
    gw_cloud_ip: str = "10.77.1.1"
    voice_ip: str = "10.77.1.2"
    music_ip: str = "10.77.1.3"
    prefix_len: int = 24

    @property
    def echo_ns(self) -> str:
        return f"{self.prefix}-echo"

    @property
    def gw_ns(self) -> str:
        return f"{self.prefix}-gw"

    @property
    def cloud_ns(self) -> str:
        return f"{self.prefix}-cloud"

    @property
    def namespaces(self) -> tuple[str, str, str]:
        return (self.echo_ns, self.gw_ns, self.cloud_ns)

    @property
    def capture_interface(self) -> str:
        return self.gw_echo_if

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _run(args: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise SimError(f"'{' '.join(args)}' failed: {(proc.stderr or proc.stdout).strip()}")
    return proc


def check_privileges() -> None:
    """Raise :class:`NamespaceUnavailable` with what to do when namespaces cannot be made."""
    if shutil.which("ip") is None:
        raise NamespaceUnavailable(
            "the simulated lab needs iproute2's 'ip' command: install it (apt-get install iproute2), "
            "or use the synthetic backend, which needs no namespaces")
    if os.geteuid() != 0:
        raise NamespaceUnavailable(
            "the simulated lab needs root to create network namespaces: run 'sudo echolab sim up', "
            "or use the synthetic backend (echolab.collector.sim.synthetic), which needs no privileges")
    if shutil.which("ethtool") is None:
        raise NamespaceUnavailable("the simulated lab needs ethtool to turn offloads off: apt-get install ethtool")


def existing_namespaces() -> set[str]:
    proc = _run(["ip", "netns", "list"], check=False)
    return {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}


def netns_pids(ns: str) -> list[int]:
    """Pids of the processes living in namespace *ns*."""
    proc = _run(["ip", "netns", "pids", ns], check=False)
    return [int(tok) for tok in proc.stdout.split() if tok.isdigit()]


def _in_ns(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *args]


def _sysctl(ns: str, key: str, value: str) -> None:
    _run(_in_ns(ns, "sysctl", "-q", "-w", f"{key}={value}"))


def create(topo: Topology) -> None:
    """Make the namespaces and links of *topo* (which must not exist yet)."""
    for ns in topo.namespaces:
        proc = _run(["ip", "netns", "add", ns], check=False)
        if proc.returncode != 0:
            raise NamespaceUnavailable(
                f"cannot create network namespace {ns}: {proc.stderr.strip()}; the simulated lab needs "
                "root with CAP_SYS_ADMIN (a privileged container), or use the synthetic backend")
        for key in ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"):
            _sysctl(ns, key, "1")
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
    _run(["ip", "link", "add", topo.echo_if, "netns", topo.echo_ns, "type", "veth",
          "peer", "name", topo.gw_echo_if, "netns", topo.gw_ns])
    _run(["ip", "link", "add", topo.gw_cloud_if, "netns", topo.gw_ns, "type", "veth",
          "peer", "name", topo.cloud_if, "netns", topo.cloud_ns])
    n = topo.prefix_len
    addresses = [
        (topo.echo_ns, topo.echo_if, [topo.echo_ip]),
        (topo.gw_ns, topo.gw_echo_if, [topo.gw_echo_ip]),
        (topo.gw_ns, topo.gw_cloud_if, [topo.gw_cloud_ip]),
        (topo.cloud_ns, topo.cloud_if, [topo.voice_ip, topo.music_ip]),
    ]
    for ns, dev, ips in addresses:
        _run(_in_ns(ns, "ethtool", "-K", dev, *(w for o in OFFLOADS for w in (o, "off"))))
        _run(["ip", "-n", ns, "link", "set", dev, "mtu", str(MTU)])
        for ip in ips:
            _run(["ip", "-n", ns, "addr", "add", f"{ip}/{n}", "dev", dev])
        _run(["ip", "-n", ns, "link", "set", dev, "up"])
    _sysctl(topo.gw_ns, "net.ipv4.ip_forward", "1")
    _run(["ip", "-n", topo.echo_ns, "route", "add", "default", "via", topo.gw_echo_ip])
    _run(["ip", "-n", topo.cloud_ns, "route", "add", "default", "via", topo.gw_cloud_ip])


def delete(topo: Topology) -> list[str]:
    """Delete *topo*'s namespaces (and with them every link); returns what was deleted."""
    present = existing_namespaces()
    deleted = []
    for ns in topo.namespaces:
        if ns in present:
            _run(["ip", "netns", "del", ns])
            deleted.append(ns)
    return deleted
