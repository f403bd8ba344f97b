"""Replayed Echo requests: the collector decides from the traffic alone and never mixes two answers.

Twenty crafted recordings shaped like real Echo requests (tests/echo_recordings.py:
real TCP captured with tcpdump, 70-80 KB up streamed, 10-90 KB down, answers
pausing 2-3 s, post-answer uploads 8-12 s later, keep-alives) are replayed by
the simulated lab and collected with ``--backend sim``. Each capture is
checked against the lab's ground-truth log (which recording was replayed,
when it began, when its last packet left): it holds at least 99% of its own
request's bytes and none of any other's.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest
from typer.testing import CliRunner

from echolab.captures.reader import read_packets
from echolab.collector.campaign import CampaignPaused, CollectSettings
from echolab.collector.collect import collect, plain_display
from echolab.collector.sim import SimLab, down
from echolab.collector.sim.recordings import from_campaign, from_folder
from echolab.cli import app
from echolab.db.catalog import Catalog
from echolab.labdir import LabDir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from echo_recordings import make_recordings, plan  # noqa: E402

pytestmark = pytest.mark.netns
PREFIX = f"rep{os.getpid() % 10000}"
SLACK_S = 0.25  # the last write's packets leave the Echo a moment after the write returns


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("tcpdump") is None:
        pytest.skip("needs root for network namespaces, and tcpdump")
    out = make_recordings(tmp_path_factory.mktemp("recorded"), plan(seed=1, per_class=5))
    yield out
    down(PREFIX)


@pytest.fixture
def lab(sqlite_lab: LabDir) -> LabDir:
    """These tests' lab: conftest's lab with a SQLite catalog."""
    return sqlite_lab


def run(lab: LabDir, per_class: int, speed: float, out: io.StringIO | None = None,
        **overrides: Any) -> tuple[list[Any], list[dict[str, Any]]]:
    """Collect from the replaying lab; the good captures and the lab's log of this campaign's requests.

    With *out*, progress goes there as to a file that is not a terminal.
    """
    sim = SimLab.load(PREFIX)
    before = len(sim.replayed())
    settings = CollectSettings(backend="sim", sim_prefix=PREFIX, per_class=per_class, speed=speed, **overrides)
    collect(lab, settings, display=plain_display(out) if out is not None else None)
    with Catalog.open(lab) as cat:
        caps = [(c.label, lab.root / c.path) for c in cat.captures()]
    return caps, sim.replayed()[before:]


def check_no_mixing(caps: list[tuple[str, Path]], truth: list[dict[str, Any]], echo_ip: str,
                    min_share: float = 0.99) -> dict[str, list[int]]:
    """Each capture holds >= min_share of one request's recorded bytes and nothing of another's.

    Returns per class [recorded server->Echo bytes, captured server->Echo bytes] of the matched requests.
    """
    per_class: dict[str, list[int]] = {}
    used = set()
    for label, path in caps:
        packets = [p for p in read_packets(path) if p.payload_len]
        inside = {}
        for i, req in enumerate(truth):
            lo, hi = req["began"] - SLACK_S / 10, req["ended"] + SLACK_S
            inside[i] = [p for p in packets if lo <= p.ts <= hi]
        own = max(inside, key=lambda i: sum(p.payload_len for p in inside[i]))
        req = truth[own]
        assert req["label"] == label and own not in used, (path, req)
        used.add(own)
        got = sum(p.payload_len for p in inside[own])
        want = req["bytes_up"] + req["bytes_down"]
        assert got >= min_share * want, f"{req['recording']}: the capture holds {got} of {want} bytes"
        for i, other in inside.items():
            assert i == own or not other, f"{path} holds {sum(p.payload_len for p in other)} bytes of " \
                                          f"{truth[i]['recording']}"
        down_got = sum(p.payload_len for p in inside[own] if p.dst == echo_ip)
        totals = per_class.setdefault(label, [0, 0])
        totals[0] += req["bytes_down"]
        totals[1] += down_got
    assert len(used) == len(caps)
    return per_class


def test_twenty_replayed_requests_at_speed_10(recorded: Path, lab: LabDir) -> None:
    recordings = from_folder(recorded)
    assert len(recordings) == 20
    assert sum(1 for r in recordings if r.duration_s > 9) >= 10, "most recordings carry a post-answer upload"
    up = CliRunner().invoke(app, ["sim", "up", "--replay", str(recorded), "--prefix", PREFIX, "--speed", "10",
                                  "--seed", "1"])
    assert up.exit_code == 0 and "Replaying 20 recorded requests" in up.output, up.output
    sim = SimLab.load(PREFIX)
    out = io.StringIO()
    caps, truth = run(lab, per_class=5, speed=10, out=out)
    assert len(caps) == 20 and len(truth) == 20
    lines = out.getvalue().splitlines()  # not a terminal: a plain line every 5 captures, no live display
    assert len(lines) == 4, lines
    assert [line.split(": ")[1].split(" ")[0] for line in lines] == ["5/20", "10/20", "15/20", "20/20"], lines
    assert sorted(t["recording"] for t in truth) == sorted(r.id for r in recordings), "each replayed once"
    per_class = check_no_mixing(caps, truth, sim.echo_ip)
    for label, (want, got) in per_class.items():  # TLS overhead is taken out of each write: bytes match
        assert abs(got - want) <= 0.005 * want, (label, want, got)
    with Catalog.open(lab) as cat:  # the replayed captures make a campaign that can be replayed in turn
        again = from_campaign(cat, cat.campaigns()[0].name)
    assert {r.device_ip for r in again} == {sim.echo_ip}
    for label, (want, _) in per_class.items():
        got = sum(r.bytes_down for r in again if r.label == label)
        assert abs(got - want) <= 0.005 * want, (label, want, got)
    trail = next(lab.logs_dir.glob("*.log")).read_text()
    attempts = [line for line in trail.splitlines() if " attempt " in line]
    assert len(attempts) == 20, trail
    assert all(" ok, " in a and " B up, " in a and " B down, " in a and "answer " in a and "ended: " in a
               for a in attempts)
    # 16 recordings carry the upload; at speed 10 one that comes 0.8 s after its answer can end up read
    # as part of the answer (the capture file shows packets up to 0.4 s late), in its own capture still.
    uploads = sum("after the post-answer upload" in a for a in attempts)
    assert uploads >= 12 and uploads + sum("no post-answer upload" in a for a in attempts) == 20


def test_post_answer_upload_excluded(recorded: Path, lab: LabDir) -> None:
    chosen = [r for r in from_folder(recorded) if r.label == "news"][:2]  # news0 and news1 have the upload
    SimLab.up(prefix=PREFIX, speed=10, seed=1, replay=chosen)
    caps, truth = run(lab, per_class=2, speed=10, trailing="exclude")
    for (_, path), req in zip(caps, truth):
        packets = [p for p in read_packets(path) if p.payload_len > 100]
        rec = next(r for r in chosen if r.id == req["recording"])
        answer_end = req["began"] + max(t for t, d, _ in rec.events if d == "down" and t < rec.duration_s - 1) / 10
        assert packets and max(p.ts for p in packets) <= answer_end + 0.2, "the post-answer upload was cut out"


def test_replayed_requests_at_speed_1(recorded: Path, lab: LabDir) -> None:
    """Real time: an answer pausing 2-3 s stays whole, the upload 8-12 s later stays with it.

    Two requests (about 50 s); ECHOLAB_REPLAY_ALL=1 replays all twenty (about 8 minutes).
    """
    everything = bool(os.environ.get("ECHOLAB_REPLAY_ALL"))
    chosen = [r for r in from_folder(recorded) if everything or r.id in ("time/time0.pcap", "time/time2.pcap")]
    assert len(chosen) == (20 if everything else 2)
    sim = SimLab.up(prefix=PREFIX, speed=1, seed=1, replay=chosen)
    caps, truth = run(lab, per_class=5 if everything else 2, speed=1)
    assert len(caps) == len(chosen)
    per_class = check_no_mixing(caps, truth, sim.echo_ip)
    for label, (want, got) in per_class.items():
        assert abs(got - want) <= 0.005 * want, (label, want, got)


def test_unanswered_and_endless_requests(recorded: Path, lab: LabDir) -> None:
    rec = from_folder(recorded)[0]
    mute = replace(rec, id="mute/0", label="mute", events=[e for e in rec.events if e[1] == "up"])
    SimLab.up(prefix=PREFIX, speed=10, seed=1, replay=[mute, rec])
    with pytest.raises(CampaignPaused, match="'no-response' failures"):
        collect(lab, CollectSettings(backend="sim", sim_prefix=PREFIX, per_class=1, speed=10, classes=["mute"],
                                     max_consecutive_failures=2), display=None)
    with pytest.raises(CampaignPaused, match="'echo-busy' failures"):
        collect(lab, CollectSettings(backend="sim", sim_prefix=PREFIX, per_class=1, speed=10, classes=[rec.label],
                                     max_duration_s={"*": 1.0}, max_consecutive_failures=2),
                display=None, new=True)
    with Catalog.open(lab) as cat:
        reasons = [c.reason for c in cat.captures(status="failed")]
    assert sum(r.startswith("no-response") for r in reasons) == 2
    assert sum(r.startswith("echo-busy") for r in reasons) == 2
