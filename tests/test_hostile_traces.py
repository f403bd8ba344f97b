"""Hostile packet traces and gzip captures: one ``Error:`` line, bounded memory and time, nothing half-made.

Traces whose times go back or leap ahead (k-FP's per-second counts, the defenses), traces of huge packets
(padding, size noise, CS-BuFLO), and a gzip bomb (a small ``.pcap.gz`` of zeros).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from echolab.analysis.defenses.registry import parse_defense
from echolab.analysis.defenses.trace import MAX_DEFENDED_SPAN_S, DefenseError
from echolab.analysis.features.kfp import KFP_FEATURE_NAMES, MAX_RATE_SECONDS, kfp_vector
from echolab.captures import compressed
from echolab.captures.reader import CaptureError
from echolab.db.catalog import Catalog
from echolab.db.transfer import import_captures
from echolab.labdir import LabDir
from cliout import one_error, run_cli



def _trace(path: Path, rows: list[tuple[float, int, int]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("time,size,direction\n" + "".join(f"{t!r},{s},{d}\n" for t, s, d in rows))
    return path


_cli = run_cli


# -- k-FP's packets per second ----------------------------------------------------------------------


BACKWARDS = [(5.0, 100, 1), (1.0, 200, -1)]
LEAP = [(0.0, 100, 1), (1e10, 200, -1)]


@pytest.mark.parametrize("rows", [BACKWARDS, LEAP], ids=["backwards", "leap"])
def test_kfp_counts_seconds_of_a_hostile_trace_in_bounded_memory(rows) -> None:
    times = np.asarray([r[0] for r in rows])
    sizes = np.asarray([r[1] * r[2] for r in rows])
    row = kfp_vector(times, sizes)
    assert row.shape == (len(KFP_FEATURE_NAMES),) and np.all(np.isfinite(row))
    rate = {n: v for n, v in zip(KFP_FEATURE_NAMES, row) if n.startswith("bi_rate_alt_")}
    assert sum(rate.values()) == 2  # every packet counted once
    if rows is LEAP:
        mean = row[KFP_FEATURE_NAMES.index("bi_rate_mean_pkts_per_s")]
        assert mean == pytest.approx(2 / (MAX_RATE_SECONDS + 1))


def test_kfp_rates_of_an_ordinary_sequence_are_unchanged() -> None:
    rng = np.random.default_rng(3)
    times = np.sort(rng.uniform(0.2, 12.0, 300))
    sizes = rng.choice([-1500, -600, 90, 400], 300)
    row = kfp_vector(times, sizes)
    rate = np.bincount(np.floor(times - times[0]).astype(int)).astype(float)
    names = ("mean", "std", "median", "min", "max")
    got = [row[KFP_FEATURE_NAMES.index(f"bi_rate_{s}_pkts_per_s")] for s in names]
    assert got == pytest.approx([rate.mean(), rate.std(), np.median(rate), rate.min(), rate.max()])


@pytest.mark.parametrize("rows", [BACKWARDS, LEAP], ids=["backwards", "leap"])
def test_features_inspect_of_a_hostile_trace_does_not_crash(tmp_path: Path, rows) -> None:
    path = _trace(tmp_path / "t.csv", rows)
    code, out = _cli(None, "features", "inspect", str(path), "--json")
    assert code == 0, out


# -- defenses ---------------------------------------------------------------------------------------


HUGE = [(i * 0.001, 2 ** 32, 1 if i % 2 else -1) for i in range(2000)]


def _lab_with(lab: LabDir, tmp_path: Path, traces: dict[str, list[tuple[float, int, int]]]) -> None:
    folder = tmp_path / "in"
    for name, rows in traces.items():
        _trace(folder / "weather" / name, rows)
    with Catalog.open(lab) as cat:
        import_captures(cat, folder, campaign="home")


def _state(lab: LabDir) -> tuple[list[str], set[str]]:
    with Catalog.open(lab) as cat:
        names = [c.name for c in cat.campaigns()]
    files = {str(p.relative_to(lab.root)) for p in lab.root.rglob("*") if p.is_file() and "catalog" not in p.name}
    return names, files


@pytest.mark.parametrize("spec,rows", [("buflo", LEAP), ("tamaraw", LEAP), ("csbuflo", LEAP),
                                       ("mtu", HUGE), ("buckets", HUGE), ("csbuflo", HUGE), ("dstar", HUGE)])
def test_defend_refuses_a_hostile_trace_in_one_line_and_makes_no_campaign(sqlite_lab: LabDir, tmp_path: Path,
                                                                          spec: str, rows) -> None:
    _lab_with(sqlite_lab, tmp_path, {"a.csv": [(0.0, 100, 1), (0.5, -900, -1)], "b.csv": rows})
    before = _state(sqlite_lab)
    code, out = _cli(sqlite_lab, "defend", "-d", spec, "-c", "home", "--no-progress")
    assert code != 0
    line = one_error(out)
    assert "b.csv" in line, line
    assert _state(sqlite_lab) == before


def test_a_defense_that_would_send_too_many_packets_leaves_no_half_made_campaign(sqlite_lab: LabDir,
                                                                                 tmp_path: Path) -> None:
    # within the span and byte limits, but padding to 1-byte packets would send 6 million of them
    _lab_with(sqlite_lab, tmp_path, {"a.csv": [(0.0, 100, 1), (0.5, -900, -1)],
                                     "b.csv": [(i * 0.1, 1_000_000, 1) for i in range(6)]})
    before = _state(sqlite_lab)
    code, out = _cli(sqlite_lab, "defend", "-d", "mtu:mtu=1", "-c", "home", "--no-progress")
    assert code != 0
    assert "packets" in one_error(out)
    assert _state(sqlite_lab) == before


@pytest.mark.parametrize("spec", ["anonsets", "wtfpad"])
def test_a_learning_defense_does_not_learn_from_a_hostile_trace(sqlite_lab: LabDir, tmp_path: Path,
                                                                 spec: str) -> None:
    # every capture claims a gap of centuries, so the history it learns from holds one (anonymity sets sized
    # their schedules by it: 149 GiB); refused in one line naming the capture, and nothing is made
    leap = [(0.0, 100, 1), (0.1, -300, -1), (0.2, 400, 1), (1e10, -200, -1)]
    _lab_with(sqlite_lab, tmp_path, {f"{k}.csv": leap for k in range(5)})
    before = _state(sqlite_lab)
    code, out = _cli(sqlite_lab, "defend", "-d", spec, "-c", "home", "--no-progress")
    assert code != 0
    line = one_error(out)
    assert "cannot learn from capture" in line and ".csv" in line and "lasts" in line, line
    assert _state(sqlite_lab) == before


def test_defense_apply_refuses_a_long_sequence() -> None:
    with pytest.raises(DefenseError, match="lasts"):
        parse_defense("buflo").apply([0.0, MAX_DEFENDED_SPAN_S + 1], [100, -100])
    out = parse_defense("buflo:tau=1").apply([0.0, 0.5], [100, -100])  # an ordinary one still works
    assert int(out.real.sum()) == 200


# -- gzip captures ----------------------------------------------------------------------------------


def _bomb(path: Path, mib: int = 96) -> Path:
    zeros = bytes(1 << 20)
    with gzip.open(path, "wb", compresslevel=9) as fh:
        for _ in range(mib):
            fh.write(zeros)
    return path


def test_a_gzip_bomb_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    bomb = _bomb(tmp_path / "bomb.pcap.gz")
    assert bomb.stat().st_size < 1 << 20
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(CaptureError, match="gzip bomb"):
        compressed.unpack_to(bomb, scratch)
    assert not list(scratch.iterdir())


def test_importing_a_gzip_bomb_is_one_line_and_leaves_the_lab_as_it_was(sqlite_lab: LabDir,
                                                                         tmp_path: Path) -> None:
    bomb = _bomb(tmp_path / "bomb.pcap.gz")
    before = _state(sqlite_lab)
    code, out = _cli(sqlite_lab, "catalog", "import", str(bomb), "--no-progress")
    rejected = [line for line in out.splitlines() if "gzip bomb" in line]
    assert len(rejected) == 1 and "bomb.pcap.gz" in rejected[0], out
    assert _state(sqlite_lab) == before


def test_an_ordinary_gzip_capture_still_unpacks(tmp_path: Path) -> None:
    data = np.random.default_rng(1).bytes(3 << 20)
    with gzip.open(tmp_path / "x.pcap.gz", "wb") as fh:
        fh.write(data)
    with open(tmp_path / "x.pcap.gz", "ab") as fh:  # a second member
        fh.write(gzip.compress(b"tail"))
    out = compressed.unpack_to(tmp_path / "x.pcap.gz", tmp_path)
    assert out.cut_short is None and out.path.read_bytes() == data + b"tail"
