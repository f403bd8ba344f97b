"""The packet sequence, its bursts, the kfp and cumul sets (hand-computed values), and packet traces."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from echolab.analysis.compare.grids import GridError, load_grids, select_models
from echolab.analysis.features.cumul import CumulFeatures
from echolab.analysis.features.kfp import KFP_FEATURE_NAMES, KfpFeatures
from echolab.analysis.features.sequence import SequenceFeatures, read_sequence, sequence_rows
from echolab.analysis.features.sets import (ALL_SETS, FEATURE_NAME_RE, FeatureError, bursts, extract_record,
                                            load_dataset, make_transformer)
from echolab.analysis.features.store import export_features
from echolab.captures.trace import TraceError, format_trace, read_trace
from echolab.db.catalog import Catalog
from echolab.db.transfer import import_captures
from echolab.labdir import CATALOG_URL_ENV, LabDir
from pcaps import tcp_packet, write_pcap

DEVICE, SERVER = "192.168.1.50", "52.94.1.10"
# (time s, from the device?, TCP payload bytes): IP total length is payload + 40.
PACKETS = [(0.0, True, 160), (0.5, False, 1460), (0.7, False, 1460), (1.0, True, 0), (2.5, False, 260),
           (3.0, True, 60)]
SIZES = [200, -1500, -1500, 40, -300, 100]
TIMES = [0.0, 0.5, 0.7, 1.0, 2.5, 3.0]


def crafted(path: Path, packets: list[tuple[float, bool, int]] = PACKETS, start: float = 1_700_000_000.0) -> Path:
    """The device's six packets, and one packet between two other hosts (not the device's)."""
    frames = []
    for t, up, payload in packets:
        src, dst, sport, dport = (DEVICE, SERVER, 50000, 443) if up else (SERVER, DEVICE, 443, 50000)
        frames.append((start + t, tcp_packet(src, dst, sport, dport, flags="PA" if payload else "A", payload=payload)))
    frames.insert(4, (start + 1.2, tcp_packet("10.0.0.9", SERVER, 40000, 443, payload=100)))
    return write_pcap(path, frames)


@pytest.fixture
def record(tmp_path: Path):
    return extract_record(crafted(tmp_path / "c.pcap"), DEVICE)


def test_sequence_and_bursts_of_a_crafted_capture(record, tmp_path: Path) -> None:
    assert list(record.seq_sizes) == SIZES
    assert np.allclose(np.asarray(record.seq_times_us) / 1e6, TIMES)
    assert record.burst_pkts == [1, -2, 1, -1, 1] and record.burst_bytes == [200, -3000, 40, -300, 100]
    assert bursts([100, 50, -1500, -1500, -60, 80]) == ([2, -3, 1], [150, -3060, 80])
    times, sizes = read_sequence(tmp_path / "c.pcap", DEVICE)  # the sequence alone, without tcptrace
    assert list(sizes) == SIZES and list(times) == list(record.seq_times_us)
    assert sequence_rows(record)[1] == {"time": 0.5, "size": -1500, "direction": -1}
    assert SequenceFeatures(length=8).fit([record]).transform([record]).tolist() == [SIZES + [0, 0]]
    assert SequenceFeatures(length=4).fit([record]).transform([record]).tolist() == [SIZES[:4]]


def test_kfp_features_against_hand_computed_values(record) -> None:
    kfp = KfpFeatures().fit([record])
    row = dict(zip(kfp.get_feature_names_out(), kfp.transform([record])[0]))
    expected = {
        "bi_total_pkts": 6, "s2d_total_pkts": 3, "d2s_total_pkts": 3, "s2d_pkts_frac": 0.5, "d2s_pkts_frac": 0.5,
        "bi_total_bytes": 3640, "s2d_total_bytes": 3300, "d2s_total_bytes": 340,
        "s2d_size_mean_bytes": 1100, "s2d_size_std_bytes": np.sqrt(320000), "d2s_size_mean_bytes": 340 / 3,
        # inter-arrival times: all [0.5, 0.2, 0.3, 1.5, 0.5]; server [0.2, 1.8]; device [1.0, 2.0]
        "bi_iat_max_s": 1.5, "bi_iat_mean_s": 0.6, "bi_iat_q75_s": 0.5, "s2d_iat_max_s": 1.8, "s2d_iat_mean_s": 1.0,
        "d2s_iat_max_s": 2.0, "d2s_iat_mean_s": 1.5,
        "bi_time_q50_s": 0.85, "bi_time_q100_s": 3.0, "s2d_time_q25_s": 0.6, "d2s_time_q100_s": 3.0,
        # positions: device packets 0, 3, 5; server packets 1, 2, 4
        "d2s_order_mean_count": 8 / 3, "s2d_order_mean_count": 7 / 3, "s2d_order_std_count": np.std([1, 2, 4]),
        "s2d_first30_pkts": 3, "d2s_last30_pkts": 3,
        "d2s_conc_mean_pkts": 3, "d2s_conc_max_pkts": 3, "d2s_conc_std_pkts": 0,  # one chunk of 20 or fewer
        # packets per whole second since the first: [3, 1, 1, 1]
        "bi_rate_mean_pkts_per_s": 1.5, "bi_rate_max_pkts_per_s": 3, "bi_rate_min_pkts_per_s": 1,
        "bi_rate_median_pkts_per_s": 1,
        "d2s_burst_count": 3, "d2s_burst_max_pkts": 1, "d2s_burst_max_bytes": 200, "d2s_burst_mean_bytes": 340 / 3,
        "s2d_burst_count": 2, "s2d_burst_max_pkts": 2, "s2d_burst_mean_pkts": 1.5, "s2d_burst_over5_count": 0,
        "s2d_burst_max_bytes": 3000, "s2d_burst_mean_bytes": 1650,
        "d2s_conc_alt_00_pkts": 3, "d2s_conc_alt_01_pkts": 0,
        "bi_rate_alt_00_pkts": 3, "bi_rate_alt_01_pkts": 1, "bi_rate_alt_03_pkts": 1, "bi_rate_alt_04_pkts": 0,
    }
    for name, value in expected.items():
        assert row[name] == pytest.approx(value), name
    assert len(row) == len(KFP_FEATURE_NAMES) == 159


def test_cumul_features_against_hand_computed_values(record) -> None:
    cumul = CumulFeatures(points=4).fit([record])
    row = dict(zip(cumul.get_feature_names_out(), cumul.transform([record])[0]))
    # a (absolute) = 0 200 1700 3200 3240 3540 3640, c (signed) = 0 200 -1300 -2800 -2760 -3060 -2960;
    # sampled at a = 910, 1820, 2730, 3640.
    assert row == pytest.approx({"s2d_total_pkts": 3, "d2s_total_pkts": 3, "s2d_total_bytes": 3300,
                                 "d2s_total_bytes": 340, "bi_cumul_000_bytes": -510, "bi_cumul_001_bytes": -1420,
                                 "bi_cumul_002_bytes": -2330, "bi_cumul_003_bytes": -2960})
    assert CumulFeatures().fit([record]).transform([record]).shape == (1, 104)


def test_sequence_set_names_follow_the_grammar(record) -> None:
    for set_name in ALL_SETS:
        names = list(make_transformer(set_name).fit([record]).get_feature_names_out())
        assert [n for n in names if not FEATURE_NAME_RE.match(n)] == [], set_name
        assert len(set(names)) == len(names), set_name
    with pytest.raises(FeatureError, match=r"the cumul set has no option\(s\) length \(it takes points\)"):
        make_transformer("cumul", length=3)


def test_trace_files_read_back_and_bad_ones_say_why(record, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(format_trace(record.seq_times_us, record.seq_sizes))
    assert path.read_text().splitlines()[:3] == ["time,size,direction", "0.000000,200,1", "0.500000,-1500,-1"]
    times, sizes = read_trace(path)
    assert list(sizes) == SIZES and list(times) == list(record.seq_times_us)
    from rich.console import Console

    from echolab.cli.inspect import packet_summary

    console = Console(width=120, record=True)
    console.print(packet_summary(path))  # what 'catalog show' prints for a trace
    shown = console.export_text()
    assert "6 packets" in shown and "3.000 s" in shown and "server to device (-1) │ 3       │ 3300" in shown
    path.write_text("time,size,direction\n0.0,200,-1\n")  # an unsigned size: the direction gives its sign
    assert list(read_trace(path)[1]) == [-200]
    path.write_text("time,size,direction\n0.0,-200,1\n")
    with pytest.raises(TraceError, match=r"t.csv line 2: size -200 and direction 1 disagree"):
        read_trace(path)


def _lab(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> LabDir:
    monkeypatch.delenv(CATALOG_URL_ENV, raising=False)
    return LabDir.open(tmp_path / name, create=True)


def test_trace_round_trip_export_import_same_features(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    for label, shift in (("weather", 0), ("music", 1)):
        for i in range(2):
            packets = [(t * (1 + 0.1 * i), up, p + 20 * shift) for t, up, p in PACKETS]
            (src / label).mkdir(parents=True, exist_ok=True)
            crafted(src / label / f"{i}.pcap", packets)
    traces = tmp_path / "traces"
    with Catalog.open(_lab(tmp_path, "a", monkeypatch)) as cat:
        import_captures(cat, src, device_ip=DEVICE)
        assert export_features(cat, traces, set_name="sequence") == 4
        original = load_dataset(cat)
    assert sorted(p.parent.name for p in traces.rglob("*.csv")) == ["music", "music", "weather", "weather"]
    with Catalog.open(_lab(tmp_path, "b", monkeypatch)) as cat:
        report = import_captures(cat, traces)
        assert len(report.imported) == 4 and not report.rejected
        back = load_dataset(cat)
    assert all(r.kind == "trace" for r in back.records) and not back.skipped
    for set_name in ("kfp", "cumul", "sequence"):
        a = make_transformer(set_name).fit(original.records).transform(original.records)
        b = make_transformer(set_name).fit(back.records).transform(back.records)
        order_a = np.lexsort(a.T[::-1])
        order_b = np.lexsort(b.T[::-1])
        assert np.array_equal(a[order_a], b[order_b]), set_name
        assert list(original.y[order_a]) == list(back.y[order_b])
    for set_name in ("tcptrace", "histogram", "combined"):
        with pytest.raises(FeatureError, match=f"the {set_name if set_name != 'combined' else 'tcptrace'} set needs "
                                               "TCP headers, but 4 of the 4 captures are packet traces"):
            make_transformer(set_name).fit(back.records)


def test_inspect_sequence_on_the_command_line(tmp_path: Path) -> None:
    path = crafted(tmp_path / "c.pcap")
    env = {**os.environ, "COLUMNS": "200"}
    out = subprocess.run([sys.executable, "-P", "-m", "echolab", "features", "inspect", str(path), "--device-ip",
                          DEVICE, "--sequence", "--json"], capture_output=True, text=True, env=env, check=True)
    import json

    doc = json.loads(out.stdout)
    assert [r["size"] for r in doc["sequence"]] == SIZES
    assert [b["packets"] for b in doc["bursts"]] == [1, -2, 1, -1, 1]
    trace = tmp_path / "t.csv"
    trace.write_text(format_trace([round(t * 1e6) for t in TIMES], SIZES))
    out = subprocess.run([sys.executable, "-P", "-m", "echolab", "features", "inspect", str(trace), "--json"],
                         capture_output=True, text=True, env=env, check=True)
    values = json.loads(out.stdout)
    assert values["bi_total_pkts"] == 6 and "s2d_max_win_adv_bytes" not in values  # no tcptrace for a trace


def test_sequence_models_in_the_grids_file(monkeypatch: pytest.MonkeyPatch) -> None:
    specs = load_grids()
    assert specs["kfp_knn"].build().get_params()["n_estimators"] == 1000
    assert specs["deep_cnn"].scale is False and specs["deep_cnn"].canonical()["scale"] is False
    assert "scale" not in specs["svm_rbf"].canonical()  # the study's keys are unchanged
    from echolab.analysis.compare.deep import SequenceCNNClassifier

    monkeypatch.setattr(SequenceCNNClassifier, "missing_requirements", staticmethod(lambda: ["jax", "optax"]))
    with pytest.raises(GridError) as err:
        select_models(specs, ["deep_cnn"])
    assert str(err.value) == "model 'deep_cnn' needs jax, optax: pip install 'echolab-toolkit[deep]'"
    select_models(specs, None)  # the default run does not need the extra


def test_leaf_knn_and_the_deep_model_learn_and_are_reproducible() -> None:
    from echolab.analysis.compare.deep import SequenceCNNClassifier
    from echolab.analysis.compare.leafknn import LeafKNNClassifier

    rng = np.random.default_rng(0)
    n, length = 24, 32
    y = np.repeat(["up", "down"], n // 2)
    X = rng.integers(40, 1500, size=(n, length)) * np.where(rng.random((n, length)) < 0.5, 1, -1)
    X[y == "up", :4] = np.abs(X[y == "up", :4])  # "up" starts with four uploads, "down" with four downloads
    X[y == "down", :4] = -np.abs(X[y == "down", :4])
    knn = LeafKNNClassifier(n_estimators=20, random_state=0).fit(X, y)
    assert knn.leaves(X).shape == (n, 20) and (knn.predict(X) == y).mean() > 0.9
    if SequenceCNNClassifier.missing_requirements():
        pytest.skip("the deep extra is not installed: pip install 'echolab-toolkit[deep]'")
    kw = dict(filters=(4, 8), kernel_size=3, hidden=8, max_epochs=8, patience=3, batch_size=8, learning_rate=0.01,
              validation_fraction=0.25, random_state=3)
    a = SequenceCNNClassifier(**kw).fit(X.astype(np.float32), y)
    b = SequenceCNNClassifier(**kw).fit(X.astype(np.float32), y)
    assert a.history_ == b.history_ and np.array_equal(a.predict_proba(X), b.predict_proba(X))
    assert 1 <= a.best_epoch_ <= a.epochs_ <= 8 and a.device_ in ("cpu", "gpu", "cuda")
    assert set(a.predict(X)) <= {"up", "down"}
