"""What the docs say about the data holds on data."""

from __future__ import annotations

from pathlib import Path

from echolab.analysis.features.sets import STUDY_DROPPED, extract_record, make_transformer
from pcaps import SIM_DEVICE_IP, write_class_captures

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_constant_tcptrace_columns_of_mid_stream_captures_are_not_the_studys(tmp_path: Path) -> None:
    records = [extract_record(path, SIM_DEVICE_IP) for path in write_class_captures(tmp_path, 5)]
    tcp = make_transformer("tcptrace").fit(records)
    kept_by_us = {"s2d_syn_pkts", "s2d_fin_pkts", "s2d_ttl_stream_length_bytes"}
    assert kept_by_us <= set(tcp.feature_names_) and kept_by_us <= set(STUDY_DROPPED)
    assert {"s2d_rexmt_data_pkts", "s2d_max_win_adv_bytes"} <= set(tcp.dropped_features_)
    assert len(tcp.feature_names_) == 20
    text = " ".join((DOCS / "features.md").read_text().split())
    assert "the same ones drop out" not in text
    assert "which leaves 20 columns" in text
