"""The feature cache in the catalog, the parallel build, load_dataset and the ``features`` commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from echolab.analysis.features.sets import EXTRACTOR_VERSION, FeatureError, load_dataset, make_transformer
from echolab.analysis.features.store import build_features
from echolab.db.catalog import Catalog
from echolab.db.records import FeatureRow
from echolab.cli import app
from echolab.labdir import LabDir
from pcaps import synthetic_session
from test_tcptrace_oracle import real_tcptrace

DEVICE = "192.168.1.50"
LABELS = ["weather", "music", "quotes"]


@pytest.fixture
def filled_lab(sqlite_lab: LabDir, tmp_path: Path) -> LabDir:
    """A catalog with 12 good captures (3 classes), one corrupt and one truncated capture."""
    src = tmp_path / "src"
    src.mkdir()
    with Catalog.open(sqlite_lab) as cat:
        dev = cat.device("echo", ip=DEVICE)
        camp = cat.create_campaign("c1", backend="synthetic", device=dev)
        for i in range(12):
            label = LABELS[i % 3]
            sizes = {"weather": (1448, 1448, 300 + i), "music": (200, 200 + i), "quotes": (900, 900, 900, 10 + i)}
            path = synthetic_session(src / f"{i}.pcap", sizes=sizes[label], gap_s=0.01 * (1 + i % 3),
                                     window=1000 * (1 + i % 3), start=1_700_000_000 + i)
            cat.add_capture(camp, label, path)
        good = synthetic_session(src / "cut.pcap", sizes=(1000, 1000, 1000), start=1_700_000_100)
        bad = cat.add_capture(camp, "weather", good)
        cut = cat.abspath(bad)
        cut.write_bytes(cut.read_bytes()[:-25])  # the file got cut after it was catalogued
        bad.sha256 = "f" * 64
        other = synthetic_session(src / "junk.pcap", sizes=(5,), start=1_700_000_200)
        junk = cat.add_capture(camp, "music", other)
        cat.abspath(junk).write_bytes(b"\x00" * 100)
        junk.sha256 = "e" * 64
        cat.session.commit()
    return sqlite_lab


def test_build_caches_records_and_errors_in_the_catalog(filled_lab: LabDir) -> None:
    with Catalog.open(filled_lab) as cat:
        report = build_features(cat, n_jobs=2)
        assert len(report.records) == 12 and report.extracted == 14 and report.cached == 0
        assert len(report.errors) == 2
        reasons = " | ".join(report.errors.values())
        assert "cut short" in reasons and "not a pcap" in reasons
        rows = list(cat.session.scalars(select(FeatureRow)))
        assert len(rows) == 14 and {r.extractor_version for r in rows} == {EXTRACTOR_VERSION}
        assert sum(r.error is not None for r in rows) == 2 and all(r.device_ip == DEVICE for r in rows)
        again = build_features(cat)
        assert again.extracted == 0 and again.cached == 14 and again.records.keys() == report.records.keys()
        assert [again.records[k].tcptrace for k in sorted(again.records)] == \
               [report.records[k].tcptrace for k in sorted(report.records)]
        other_ip = build_features(cat, device_ip="52.94.1.10", n_jobs=1)
        assert other_ip.extracted == 14  # another device IP is another cache key


def test_load_dataset_for_the_analysis(filled_lab: LabDir) -> None:
    with Catalog.open(filled_lab) as cat:
        data = load_dataset(cat)
        caps = {c.id: c for c in cat.captures()}
    assert len(data) == 12 and len(data.skipped) == 2
    assert data.y.dtype.kind == "U" and sorted(set(data.y)) == sorted(LABELS)
    assert [caps[i].label for i in data.capture_ids] == list(data.y)
    assert data.campaigns == ["c1"] * 12 and data.sha256s == [caps[i].sha256 for i in data.capture_ids]
    X = make_transformer("combined").fit_transform(data.records)
    assert X.shape[0] == 12 and np.isfinite(X).all()


def test_device_ip_is_required(sqlite_lab: LabDir, tmp_path: Path) -> None:
    with Catalog.open(sqlite_lab) as cat:
        camp = cat.create_campaign("nodev", backend="synthetic")
        cat.add_capture(camp, "weather", synthetic_session(tmp_path / "a.pcap"))
        with pytest.raises(FeatureError, match="no device IP; pass --device-ip"):
            build_features(cat)
        assert len(build_features(cat, device_ip=DEVICE).records) == 1


def test_cli_build_export_inspect(filled_lab: LabDir, tmp_path: Path) -> None:
    runner = CliRunner()
    lab = ["--lab", str(filled_lab.root)]
    result = runner.invoke(app, [*lab, "features", "build", "--set", "tcptrace"])
    assert result.exit_code == 0, result.output
    assert "12 captures usable" in result.output and "2 skipped" in result.output
    assert "dropped as constant" in result.output
    for fmt in ("csv", "parquet"):
        out = tmp_path / f"features.{fmt}"
        result = runner.invoke(app, [*lab, "features", "export", "--format", fmt, "-o", str(out), "--bins", "5"])
        assert result.exit_code == 0, result.output
        frame = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
        assert list(frame.columns[:4]) == ["capture_id", "sha256", "campaign", "label"]
        assert len(frame) == 12 and "s2d_size_hist_04_frac" in frame.columns
    capture = next((filled_lab.root / "captures").rglob("*.pcap"))
    result = runner.invoke(app, ["features", "inspect", str(capture), "--device-ip", DEVICE, "--json"])
    assert result.exit_code == 0, result.output
    values = json.loads(result.output)
    assert "s2d_max_win_adv_bytes" in values and "s2d_iat_hist_14_frac" in values
    result = runner.invoke(app, ["features", "inspect", str(capture), "--device-ip", "10.9.9.9"])
    assert result.exit_code == 1 and result.output.startswith("Error: no TCP packets from a server to the device")


@pytest.mark.skipif(shutil.which("tcptrace") is None, reason="tcptrace is not installed")
def test_cli_per_connection_matches_tcptrace_field_by_field(tmp_path: Path) -> None:
    path = synthetic_session(tmp_path / "two.pcap", syn=True, extra_server="52.94.7.7")
    result = CliRunner().invoke(app, ["features", "inspect", str(path), "--device-ip", DEVICE, "--per-connection",
                                      "--json"])
    assert result.exit_code == 0, result.output
    ours = json.loads(result.output)
    expected = real_tcptrace(path)
    assert len(ours) == len(expected) == 2
    for mine, theirs in zip(ours, expected):
        assert mine.pop("s2d") in ("a2b", "b2a")
        assert mine == {k: theirs[k] for k in mine}
    table = CliRunner().invoke(app, ["features", "inspect", str(path), "--device-ip", DEVICE, "--per-connection"])
    assert "max_win_adv_b2a" in table.output


def test_workers_are_not_forked_from_a_process_holding_jax(monkeypatch, tmp_path: Path) -> None:
    """JAX runs threads of its own: forking a process that imported it can deadlock, so workers are spawned
    (and read the captures as forked ones do)."""
    import multiprocessing
    import sys
    import types

    from echolab.analysis.features import store
    from pcaps import SIM_DEVICE_IP, write_class_captures

    paths = write_class_captures(tmp_path / "c", 2, classes=["weather", "quotes", "music", "directions"])
    jobs = [(str(p), SIM_DEVICE_IP) for p in paths]
    asked = []
    real = multiprocessing.get_context
    monkeypatch.setattr(store.multiprocessing, "get_context", lambda method=None: asked.append(method) or real(method))
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    forked = list(store._run(jobs, 2))
    monkeypatch.setitem(sys.modules, "jax", types.ModuleType("jax"))
    spawned = list(store._run(jobs, 2))
    assert asked == ["fork", "spawn"]
    assert len(spawned) == 8 and all(rec is not None for rec, _ in spawned) and spawned == forked
