"""Live defenses in the simulated lab: the Echo and cloud shape their real TLS connections.

The shaper is tested on a real local TCP connection (fast, no namespaces);
then the simulated lab (namespaces, real TLS, tshark at the gateway) captures
one defended request per defense, read back through echolab's TLS record layer.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from echolab.analysis.defenses.trace import DefenseError
from echolab.captures.records import tls_records
from echolab.cli import app
from echolab.collector.sim import SimLab, down
from echolab.collector.sim import protocol as p
from echolab.collector.sim.shaping import PACKET_HEADERS, Shaper, cells_reader, live_defense, wire_bytes
from pcaps import sim_capture

needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="needs root and iproute2 (network namespaces)")


def test_only_live_defenses_are_taken_and_a_bad_spec_is_one_line() -> None:
    assert live_defense("front:n=300,w=0.5-3").spec == "front:n=300,w=0.5-3"
    with pytest.raises(DefenseError, match=r"^the simulated lab cannot apply wtfpad live \(it can: mtu, buckets, "
                                           r"buflo, tamaraw, front\); 'echolab defend --defense wtfpad' applies it"):
        live_defense("wtfpad")
    with pytest.raises(DefenseError, match="no parameter 'q'"):
        live_defense("front:q=1")
    with pytest.raises(DefenseError, match="a live packet must be at least 79 bytes"):
        live_defense("buckets:sizes=64+1500")
    for spec in ("mtu:mtu=70000", "buckets:sizes=128+9000", "buflo:d=1501", "front:size=70000"):
        with pytest.raises(DefenseError, match=r"a live packet can be at most 1500 bytes \(the simulated lab's MTU\)"):
            live_defense(spec)


def test_collect_refuses_a_defense_on_a_real_echo_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--lab", str(tmp_path / "lab"), "collect", "--backend", "echo", "--defense",
                                      "mtu", "--device-ip", "10.0.0.9", "--interface", "eth0"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: a real Echo cannot be made to pad or shape its traffic: --defense works on the simulated lab "
        "(--backend sim); 'echolab defend' defends the captures of a real Echo"]
    result = CliRunner().invoke(app, ["--lab", str(tmp_path / "lab"), "collect", "--defense", "dstar"])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "cannot apply dstar live" in result.output


async def _shaped_exchange(spec: str, writes: list[bytes | float | None], *, hold_s: float = 0.0,
                           cut: bool = False) -> tuple[list[tuple[int, int]], bytes]:
    """Write *writes* through a Shaper over a local TCP connection; (cells as (real, pad), real bytes received).

    *cut*: the exchange is cut short after *hold_s* (its schedule cancelled, as when the connection closes).
    """
    cells: list[tuple[int, int]] = []
    received = bytearray()
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks: set[asyncio.Task] = set()
        tap = asyncio.StreamReader()
        plain = cells_reader(tap, spec, tasks)

        async def pump() -> None:  # every cell header, and what the receiver makes of them
            while True:
                try:
                    real, pad = p.CELL.unpack(await reader.readexactly(p.CELL.size))
                    body = await reader.readexactly(real + pad)
                except asyncio.IncompleteReadError:
                    tap.feed_eof()
                    return
                cells.append((real, pad))
                tap.feed_data(p.CELL.pack(real, pad) + body)

        asyncio.create_task(pump())
        received.extend(await plain.read())
        done.set()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, raw = await asyncio.open_connection("127.0.0.1", port)
    shaper = Shaper(raw, live_defense(spec), sign=1, side="test", rng=np.random.default_rng(1))
    shaper.begin()
    for data in writes:
        if data is None:  # this request's exchange ends, the next one begins
            shaper.end()
            shaper.begin()
            continue
        if isinstance(data, float):  # a pause in the writes
            await asyncio.sleep(data)
            continue
        shaper.write(data)
        await shaper.drain()
    await asyncio.sleep(hold_s)
    if cut:
        shaper.stop()
        await asyncio.gather(shaper.task, return_exceptions=True)
    await shaper.finish()
    raw.close()
    await asyncio.wait_for(done.wait(), 10)
    server.close()
    return cells, bytes(received)


def test_padding_cells_fill_their_bucket_and_the_data_arrives_unchanged() -> None:
    writes = [os.urandom(n) for n in (10, 300, 1500, 5000)]
    cells, received = asyncio.run(_shaped_exchange("buckets", writes))
    assert received == b"".join(writes)
    assert {wire_bytes(real, pad) for real, pad in cells} <= {128, 256, 512, 1024, 1500}
    assert wire_bytes(*cells[0]) == 128  # 10 real bytes: the smallest bucket


def test_front_adds_dummy_cells_and_buflo_sends_at_a_constant_rate() -> None:
    cells, received = asyncio.run(_shaped_exchange("front:n=40,w=0.05-0.1", [b"hello"], hold_s=0.5))
    assert received == b"hello"
    dummies = [c for c in cells if c[0] == 0]
    assert dummies and all(wire_bytes(*c) == 1500 for c in dummies)
    start = time.monotonic()
    cells, received = asyncio.run(_shaped_exchange("buflo:rho=0.01,tau=0.3", [os.urandom(4000)]))
    assert received and len(received) == 4000
    assert all(wire_bytes(*c) == 1500 for c in cells)
    assert 30 <= len(cells) <= 33 and time.monotonic() - start >= 0.3  # a cell every 10 ms for tau
    cells, received = asyncio.run(_shaped_exchange("tamaraw:rho_out=0.005,L=20", [os.urandom(3000)]))
    assert len(received) == 3000 and len(cells) % 20 == 0  # the Echo's cell count: a multiple of L
    assert all(wire_bytes(*c) == 750 for c in cells)


def test_a_constant_rate_exchange_cut_short_sends_its_whole_queue() -> None:
    """More queued than one cell can hold (65,535 bytes) goes out in several cells, nothing lost."""
    data = os.urandom(200_000)
    cells, received = asyncio.run(_shaped_exchange("buflo:rho=0.05,tau=0", [data], hold_s=0.2, cut=True))
    assert received == data
    assert len(cells) < 20 and max(real for real, _pad in cells) > 1500  # a few paced cells, then the rest at once


def test_a_request_begun_in_the_last_ones_constant_rate_tail_is_shaped_too() -> None:
    first, second, third = os.urandom(3000), os.urandom(3000), os.urandom(3000)
    cells, received = asyncio.run(_shaped_exchange("buflo:rho=0.002,tau=0.05", [first, None, second, 0.2, third]))
    assert received == first + second + third
    assert all(wire_bytes(*c) == 1500 for c in cells)  # the second request's bytes, after the first one's tail
    # would have ended (0.05 s), went out in the same fixed cells


# --- the simulated lab, end to end -------------------------------------------------------------
@pytest.mark.netns
@needs_root
@pytest.mark.parametrize("spec", ["buckets", "front:n=100,w=0.1-0.3"])
def test_a_live_defended_capture_has_the_defenses_shape(spec: str, tmp_path: Path) -> None:
    prefix = f"eld{os.getpid() % 10000}"
    root = tmp_path / "run"
    lab = SimLab.up(prefix=prefix, speed=8.0, seed=5, root=root, defense=spec)
    try:
        assert lab.defense == spec
        path = sim_capture(lab, tmp_path / "defended.pcapng", "weather", duration_s=1.5, settle_s=0.5)
        status = lab.echo_status()
        assert status["requests_done"] == 1 and status["last_error"] is None  # the answer arrived, played, acked
        log = lab.defense_log()
    finally:
        down(prefix, root)
    records = [r for r in tls_records(path, lab.echo_ip) if r.content_type == 23]
    assert {r.direction for r in records} == {1, -1}
    packets = Counter(r.length + 5 + PACKET_HEADERS for r in records)  # the packet each record fills
    if spec == "buckets":
        assert set(packets) <= {128, 256, 512, 1024, 1500}, packets
        assert packets[1500] > 10
    else:
        assert {e["side"] for e in log} >= {"echo", "cloud"}
        assert all(e["dummies"] > 0 for e in log if e["side"] in ("echo", "cloud")), log
        for sign in (1, -1):  # dummy records of FRONT's size both ways, besides the real ones
            assert sum(1 for r in records if r.direction == sign and r.length + 5 + PACKET_HEADERS == 1500) > 0
    cloud = next(e for e in log if e["side"] == "cloud")
    assert cloud["real_bytes"] > 20000  # the spoken answer went through the shaper whole


def test_live_defended_captures_stay_out_of_the_undefended_data(sqlite_lab, tmp_path: Path) -> None:
    """A capture collected under a live defense (its ``defense`` column set, no ``defended_from``)."""
    from echolab.analysis.defenses.dataset import undefended_captures
    from echolab.collector.sim import synthetic
    from echolab.db.catalog import Catalog

    with Catalog.open(sqlite_lab) as cat:
        plain = cat.create_campaign("plain", backend="sim", classes=["weather"])
        shaped = cat.create_campaign("shaped", backend="sim", classes=["weather"], settings={"defense": "mtu"})
        for i, (camp, source) in enumerate([(plain, None), (shaped, {"defense": "mtu"})]):
            path = tmp_path / f"{i}.pcap"
            synthetic.write_capture(path, "weather", 2.0, np.random.default_rng(i))
            cat.add_capture(camp, "weather", path, move=True, device_ip="10.77.0.2", source=source)
        assert [c.campaign.name for c in undefended_captures(cat)] == ["plain"]
        assert [c.defense for c in cat.captures(campaign="shaped")] == ["mtu"]
