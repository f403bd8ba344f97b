"""Feature records and the three transformers, checked against tcptrace and tshark where they apply."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from echolab.analysis.features.sets import (ABLATIONS, FEATURE_NAME_RE, FEATURE_SETS, STUDY_DROPPED, TCPTRACE_FEATURE_NAMES,
                               TCPTRACE_FEATURES, CaptureRecord, FeatureError, all_feature_names, extract_record,
                               make_transformer)
from echolab.analysis.features.tcptrace import CSV_DIRECTION_FIELDS
from pcaps import synthetic_session, tcp_packet, write_pcap
from test_tcptrace_oracle import real_tcptrace

DEVICE = "192.168.1.50"


@pytest.fixture
def sessions(tmp_path: Path) -> list[Path]:
    """Five hand-made captures that differ in sizes, timing, windows and connections."""
    specs = [
        dict(sizes=(1448, 1448, 1448, 300), gap_s=0.01, window=8213),
        dict(sizes=(900, 200), gap_s=0.05, window=12872),
        dict(sizes=(1448,) * 8 + (77,), gap_s=0.002, window=1013, syn=True),
        dict(sizes=(500, 500, 500), gap_s=0.02, window=20576, extra_server="52.94.7.7"),
        dict(sizes=(1448, 60), gap_s=0.3, window=4500, acks=False),
    ]
    return [synthetic_session(tmp_path / f"s{i}.pcap", **spec) for i, spec in enumerate(specs)]


@pytest.fixture
def records(sessions: list[Path]) -> list[CaptureRecord]:
    return [extract_record(p, DEVICE) for p in sessions]


def test_every_feature_name_follows_the_grammar(records: list[CaptureRecord]) -> None:
    names = all_feature_names(15) + all_feature_names(200)
    for set_name in [*FEATURE_SETS, *ABLATIONS]:
        names += list(make_transformer(set_name).fit(records).get_feature_names_out())
    bad = [n for n in names if not FEATURE_NAME_RE.match(n)]
    assert bad == []
    assert len(set(all_feature_names(15))) == len(all_feature_names(15)) == 36 + 30
    assert not FEATURE_NAME_RE.match("max_win_adv_bytes") and not FEATURE_NAME_RE.match("s2d_max_win_adv")


def test_tcptrace_set_is_the_35_always_printed_statistics() -> None:
    conditional = {"resets_sent", "req_1323_ws/ts", "adv_wind_scale", "req_sack", "sacks_sent", "hardware_dups"}
    always = [f for f in CSV_DIRECTION_FIELDS if f not in conditional]
    assert len(always) == 35
    sources = [src for _, src, _ in TCPTRACE_FEATURES]
    expanded = [s for f in always for s in (("syn_pkts_sent", "fin_pkts_sent") if f == "SYN/FIN_pkts_sent" else (f,))]
    assert sources == expanded
    assert set(STUDY_DROPPED) <= set(TCPTRACE_FEATURE_NAMES) and len(STUDY_DROPPED) == 14


def _num(text: str) -> float:
    return 0.0 if text == "NA" else float(text)


def test_single_connection_record_equals_tcptrace_server_column(sessions: list[Path]) -> None:
    for path in sessions:
        rows = real_tcptrace(path)
        if len(rows) != 1:
            continue
        row = rows[0]
        side = "b2a" if row["host_a"] == DEVICE else "a2b"
        record = extract_record(path, DEVICE)
        for name, src, _ in TCPTRACE_FEATURES:
            if src in ("syn_pkts_sent", "fin_pkts_sent"):
                syn, fin = row[f"SYN/FIN_pkts_sent_{side}"].split("/")
                expected = float(syn if src == "syn_pkts_sent" else fin)
                assert record.tcptrace[name] == expected, name
                continue
            text = row[f"{src}_{side}"]
            got = record.tcptrace[name]
            decimals = len(text.split(".")[1]) if "." in text else 0
            assert round(got, decimals) == pytest.approx(_num(text), abs=10 ** -decimals / 2), (path, name)


def test_connections_combine_by_the_documented_rule(sessions: list[Path]) -> None:
    path = sessions[3]  # two servers, two connections
    rows = real_tcptrace(path)
    assert len(rows) == 2
    sides = ["b2a" if r["host_a"] == DEVICE else "a2b" for r in rows]
    col = {src: [_num(r[f"{src}_{s}"]) for r, s in zip(rows, sides)]
           for _, src, _ in TCPTRACE_FEATURES if src not in ("syn_pkts_sent", "fin_pkts_sent")}
    record = extract_record(path, DEVICE)
    t = record.tcptrace
    assert record.connections == 2
    assert t["s2d_total_pkts"] == sum(col["total_packets"])
    assert t["s2d_unique_sent_bytes"] == sum(col["unique_bytes_sent"])
    assert t["s2d_max_win_adv_bytes"] == max(col["max_win_adv"])
    assert t["s2d_min_win_adv_bytes"] == min(v for v in col["min_win_adv"] if v > 0)
    assert t["s2d_max_segm_size_bytes"] == max(col["max_segm_size"])
    assert t["s2d_idletime_max_ms"] == pytest.approx(max(col["idletime_max"]), abs=0.05)
    data_bytes, data_pkts = sum(col["actual_data_bytes"]), sum(col["actual_data_pkts"])
    assert t["s2d_avg_segm_size_bytes"] == int(data_bytes / (data_pkts + 0.001))
    weights = [_num(r[f"total_packets_{s}"]) for r, s in zip(rows, sides)]
    weighted = sum(a * w for a, w in zip(col["avg_win_adv"], weights)) / sum(weights)
    assert abs(t["s2d_avg_win_adv_bytes"] - weighted) <= 1  # exact sums behind tcptrace's truncated averages


def _tshark(path: Path, fields: list[str], display_filter: str) -> list[list[str]]:
    cmd = ["tshark", "-r", str(path), "-Y", display_filter, "-T", "fields", *sum((["-e", f] for f in fields), [])]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("include_acks", [False, True])
def test_histogram_inputs_equal_tshark(sessions: list[Path], include_acks: bool) -> None:
    path = sessions[0]
    flt = f"ip.dst=={DEVICE} && tcp"
    if not include_acks:
        flt += " && !(tcp.len==0 && tcp.flags.ack==1 && tcp.flags.syn==0 && tcp.flags.fin==0 && tcp.flags.reset==0)"
    rows = _tshark(path, ["ip.len", "frame.time_epoch"], flt)
    sizes, iat = extract_record(path, DEVICE).histogram_values(include_acks)
    assert sizes.tolist() == [float(r[0]) for r in rows]
    times = np.array([float(r[1]) for r in rows])
    assert np.allclose(iat, np.diff(times), atol=2e-6)


def test_histogram_edges_learned_at_fit_and_rows_normalized(records: list[CaptureRecord]) -> None:
    hist = make_transformer("histogram", bins=15).fit(records)
    all_sizes = np.concatenate([r.histogram_values(False)[0] for r in records])
    all_iat = np.concatenate([r.histogram_values(False)[1] for r in records])
    assert hist.size_edges_[0] == all_sizes.min() and hist.size_edges_[-1] == all_sizes.max()
    assert hist.iat_edges_[0] == all_iat.min() and hist.iat_edges_[-1] == all_iat.max()
    X = hist.transform(records)
    assert X.shape == (len(records), 30)
    assert np.allclose(X[:, :15].sum(axis=1), 1) and np.allclose(X[:, 15:].sum(axis=1), 1)
    # fit on a "training split" only: edges come from it, other records are clipped into the edge bins
    train = make_transformer("histogram", bins=5).fit(records[:2])
    assert train.size_edges_[-1] == max(max(r.histogram_values(False)[0]) for r in records[:2])
    assert np.allclose(train.transform(records).sum(axis=1), 2)
    with_acks = make_transformer("histogram", include_acks=True).fit(records).transform(records)
    assert not np.allclose(with_acks, X)


def test_tcptrace_transformer_drops_constant_columns_learned_at_fit(records: list[CaptureRecord]) -> None:
    tt = make_transformer("tcptrace").fit(records)
    X = tt.transform(records)
    names = list(tt.get_feature_names_out())
    assert X.shape == (len(records), len(names))
    assert "s2d_urgent_data_pkts" in tt.dropped_features_ and "s2d_max_win_adv_bytes" in names
    assert set(names) | set(tt.dropped_features_) == set(TCPTRACE_FEATURE_NAMES)
    assert np.all(np.ptp(X, axis=0) > 0)
    full = make_transformer("tcptrace", drop_constant=False).fit(records)
    assert list(full.get_feature_names_out()) == list(TCPTRACE_FEATURE_NAMES)
    # a transform on other data keeps the fitted columns
    assert tt.transform(records[:1]).shape == (1, len(names))


def test_combined_is_tcptrace_then_histogram(records: list[CaptureRecord]) -> None:
    comb = make_transformer("combined", bins=10).fit(records)
    tt = make_transformer("tcptrace").fit(records)
    hist = make_transformer("histogram", bins=10).fit(records)
    assert list(comb.get_feature_names_out()) == [*tt.get_feature_names_out(), *hist.get_feature_names_out()]
    assert np.array_equal(comb.transform(records), np.hstack([tt.transform(records), hist.transform(records)]))


def test_ablation_groups(records: list[CaptureRecord]) -> None:
    window = make_transformer("window").fit(records)
    assert set(window.get_feature_names_out()) <= {"s2d_max_win_adv_bytes", "s2d_min_win_adv_bytes",
                                                   "s2d_avg_win_adv_bytes", "s2d_zero_win_adv_count"}
    amount = make_transformer("data_amount").fit(records)
    assert list(amount.get_feature_names_out()) == ["s2d_total_pkts", "s2d_unique_sent_bytes",
                                                    "s2d_actual_data_pkts", "s2d_actual_data_bytes"]
    assert all("size_hist" in n for n in make_transformer("size_hist").fit(records).get_feature_names_out())
    assert all("iat_hist" in n for n in make_transformer("iat_hist", bins=7).fit(records).get_feature_names_out())
    assert make_transformer("tcptrace", groups=["window", "data_amount"]).fit(records).transform(records).shape[1] == 7


def test_transformers_follow_the_sklearn_contract(records: list[CaptureRecord]) -> None:
    for set_name in FEATURE_SETS:
        est = make_transformer(set_name)
        with pytest.raises(NotFittedError):
            est.transform(records)
        assert clone(est).get_params() == est.get_params()
        pipe = make_pipeline(clone(est), StandardScaler()).fit(records)
        assert pipe.transform(records).shape[0] == len(records)
    json_rows = [r.to_json() for r in records]
    assert np.array_equal(make_transformer("combined").fit(json_rows).transform(json_rows),
                          make_transformer("combined").fit(records).transform(records))
    with pytest.raises(ValueError, match="bins must be a positive integer"):
        make_transformer("histogram", bins=0).fit(records)
    with pytest.raises(ValueError, match="unknown tcptrace group"):
        make_transformer("tcptrace", groups=["nope"]).fit(records)
    with pytest.raises(FeatureError, match="unknown feature set"):
        make_transformer("nope")


def test_unusable_captures_raise_feature_error_with_reason(tmp_path: Path, sessions: list[Path]) -> None:
    good = sessions[0].read_bytes()
    cases = {
        "empty.pcap": (b"", "empty"),
        "junk.pcap": (b"this is not a capture at all", "not a pcap"),
        "header.pcap": (good[:24], "no packets"),
        "cut.pcap": (good[: len(good) - 30], "cut short"),
    }
    for name, (data, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(FeatureError, match=reason):
            extract_record(path, DEVICE)
    import dpkt

    udp = dpkt.ethernet.Ethernet(type=0x0800, data=dpkt.ip.IP(p=17, src=b"\x01\x02\x03\x04", dst=b"\x05\x06\x07\x08",
                                                               data=dpkt.udp.UDP(sport=53, dport=53, data=b"x")))
    with pytest.raises(FeatureError, match="no TCP packets"):
        extract_record(write_pcap(tmp_path / "udp.pcap", [(1.0, bytes(udp))]), DEVICE)
    with pytest.raises(FeatureError, match="no TCP packets from a server to the device 10.1.1.1"):
        extract_record(sessions[0], "10.1.1.1")
    with pytest.raises(FeatureError, match="not an IP address"):
        extract_record(sessions[0], "device")
    one_way = write_pcap(tmp_path / "up.pcap", [(1.0, tcp_packet(DEVICE, "1.1.1.1", 5, 443, payload=10))])
    with pytest.raises(FeatureError, match="no TCP packets from a server"):
        extract_record(one_way, DEVICE)


def test_docs_list_every_tcptrace_feature_in_order() -> None:
    """docs/features.md's table cannot drift from TCPTRACE_FEATURES."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "features.md").read_text()
    documented = [line.split("`")[1] for line in text.splitlines() if line.startswith("| `s2d_")]
    assert documented == list(TCPTRACE_FEATURE_NAMES)
    for name in FEATURE_SETS:
        assert f"`{name}`" in text
    for name in ABLATIONS:
        assert f"`{name}`" in text
