"""The framing-free sets (flow, volume, timing): hand-computed values, and the same numbers whatever the segments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from echolab.analysis.features.flow import TIMING_FEATURES, volume_feature_names
from echolab.analysis.features.sets import FEATURE_NAME_RE, FLOW_SETS, FeatureError, extract_record, make_transformer, \
    sequence_record
from echolab.captures.flow import ByteRanges
from grids import write_grids
from pcaps import SIM_DEVICE_IP, tcp_packet, write_pcap

DEVICE, SERVER = "192.168.1.50", "52.94.1.10"
CPORT, SPORT = 50123, 443
RTT = 0.02


class Conn:
    """Frames of one mid-stream connection: device data acked after RTT, server data carrying acks."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, bytes]] = []
        self.up, self.down = 10_000, 90_000  # next sequence numbers

    def upload(self, ts: float, n: int, seg: int = 1448, *, again: bool = False) -> None:
        """*n* device bytes at *ts* in segments of *seg*; *again* sends the last *n* bytes a second time."""
        start = self.up - n if again else self.up
        for off in range(0, n, seg):
            size = min(seg, n - off)
            self.frames.append((ts, tcp_packet(DEVICE, SERVER, CPORT, SPORT, seq=start + off, ack=self.down,
                                               flags="PA", payload=size)))
        if not again:
            self.up += n
        self.frames.append((ts + RTT, tcp_packet(SERVER, DEVICE, SPORT, CPORT, seq=self.down, ack=self.up, flags="A")))

    def answer(self, ts: float, n: int, seg: int = 1448) -> None:
        for off in range(0, n, seg):
            size = min(seg, n - off)
            self.frames.append((ts, tcp_packet(SERVER, DEVICE, SPORT, CPORT, seq=self.down + off, ack=self.up,
                                               flags="A", payload=size)))
        self.down += n
        self.frames.append((ts + 0.001, tcp_packet(DEVICE, SERVER, CPORT, SPORT, seq=self.up, ack=self.down,
                                                   flags="A")))

    def write(self, path: Path) -> Path:
        return write_pcap(path, sorted(self.frames, key=lambda f: f[0]))


def hand_made(path: Path) -> Path:
    c = Conn()
    c.upload(1.0, 1000)
    c.upload(1.1, 1000)
    c.upload(1.3, 500)
    c.upload(1.35, 1000, again=True)  # a retransmission: no new bytes
    c.answer(1.55, 2000)
    c.answer(1.65, 1000)
    c.answer(2.65, 1500)  # after a 1 s pause
    c.upload(12.0, 3000)  # the report after the answer: not part of the upload
    return c.write(path)


def flow_row(path: Path, set_name: str = "flow", **options) -> dict[str, float]:
    record = extract_record(path, DEVICE)
    t = make_transformer(set_name, **options).fit([record])
    return dict(zip(t.get_feature_names_out(), t.transform([record])[0]))


def test_byte_ranges_count_only_new_bytes() -> None:
    r = ByteRanges()
    assert r.add(0, 100) == 100 and r.add(0, 100) == 0 and r.add(50, 150) == 50
    assert r.add(300, 400) == 100 and r.add(100, 350) == 150 and r.add(0, 400) == 0
    assert (r.starts, r.ends) == ([0], [400])


def test_timing_against_hand_computed_values(tmp_path: Path) -> None:
    row = flow_row(hand_made(tmp_path / "hand.pcap"), "timing")
    expected = {
        "d2s_upload_bytes": 2500, "d2s_upload_duration_s": 0.3, "d2s_upload_rate_bytes_per_s": 2500 / 0.3,
        "s2d_answer_bytes": 4500, "s2d_answer_duration_s": 1.1, "s2d_answer_rate_bytes_per_s": 4500 / 1.1,
        "s2d_answer_start_s": 0.55, "s2d_answer_pauses_count": 1, "s2d_answer_pause_max_s": 1.0,
        "s2d_answer_pause_total_s": 1.0, "bi_rtt_ms": RTT * 1e3,
    }
    assert list(row) == list(TIMING_FEATURES)
    for name, value in expected.items():
        assert row[name] == pytest.approx(value, rel=1e-4), name


def test_a_timing_transformer_fitted_with_the_retired_round_trip_columns_still_transforms(tmp_path: Path) -> None:
    """Model files written before the ``*_rtts_count`` columns left the set keep working."""
    record = extract_record(hand_made(tmp_path / "hand.pcap"), DEVICE)
    t = make_transformer("timing").fit([record])
    assert not any("rtts" in n for n in t.feature_names_)
    t.feature_names_ = [*t.feature_names_, "d2s_upload_duration_rtts_count"]  # as an older fit stored them
    assert t.transform([record])[0][-1] == pytest.approx(0.3 / RTT, rel=1e-4)


def test_volume_against_hand_computed_values(tmp_path: Path) -> None:
    row = flow_row(hand_made(tmp_path / "hand.pcap"), "volume", points=8)
    up = [row[f"d2s_volume_{i:02d}_bytes"] for i in range(1, 9)]
    down = [row[f"s2d_volume_{i:02d}_bytes"] for i in range(1, 9)]
    assert up == [2000, 2500, 2500, 2500, 2500, 2500, 2500, 2500]  # at 0.25, 0.5, ... 2.0 s after the first byte
    assert down == [0, 0, 3000, 3000, 3000, 3000, 4500, 4500]


def test_halves_keep_one_direction(tmp_path: Path) -> None:
    path = hand_made(tmp_path / "hand.pcap")
    upload = flow_row(path, "flow", half="upload", points=4)
    answer = flow_row(path, "flow", half="answer", points=4)
    assert upload and all(n.startswith("d2s_") for n in upload)
    assert answer and all(n.startswith("s2d_") for n in answer)
    assert "bi_rtt_ms" in flow_row(path, "flow", points=4)


def test_flow_feature_names_follow_the_grammar() -> None:
    names = [*volume_feature_names(40), *TIMING_FEATURES]
    assert [n for n in names if not FEATURE_NAME_RE.match(n)] == []
    assert set(FLOW_SETS) == {"flow", "volume", "timing"}


def _request(seg: int, *, duplicates: bool) -> Conn:
    """One Echo-like request (70 KB up while an answer comes back, a pause, more answer) cut in *seg*-byte segments."""
    c = Conn()
    t = 5.0
    for i in range(25):  # the utterance: 2,800 bytes every 0.12 s
        c.upload(t + 0.12 * i, 2800, seg)
        if duplicates and i % 7 == 3:
            c.upload(t + 0.12 * i + 0.3, 2800, seg, again=True)
    for i in range(12):
        c.answer(t + 1.7 + 0.05 * i, 4128, seg)
    for i in range(6):
        c.answer(t + 5.0 + 0.05 * i, 4128, seg)
    return c


def test_new_sets_are_identical_when_the_same_bytes_are_resegmented(tmp_path: Path) -> None:
    a = extract_record(_request(1448, duplicates=False).write(tmp_path / "a.pcap"), DEVICE)
    b = extract_record(_request(536, duplicates=True).write(tmp_path / "b.pcap"), DEVICE)
    assert len(b.seq_sizes) > 2 * len(a.seq_sizes)
    for set_name in FLOW_SETS:
        t = make_transformer(set_name).fit([a, b])
        xa, xb = t.transform([a, b])
        assert np.array_equal(xa, xb), set_name
    for set_name in ("tcptrace", "cumul", "kfp"):  # the packet-based sets see the cut
        t = make_transformer(set_name, **({"drop_constant": False} if set_name == "tcptrace" else {})).fit([a, b])
        xa, xb = t.transform([a, b])
        assert not np.allclose(xa, xb), set_name


def test_flow_sets_refuse_packet_traces() -> None:
    trace = sequence_record([0, 10], [100, -200], "trace")
    with pytest.raises(FeatureError, match="needs TCP headers"):
        make_transformer("flow").fit([trace])


def test_bad_options_fail_at_fit_or_make(tmp_path: Path) -> None:
    with pytest.raises(FeatureError, match="no option"):
        make_transformer("volume", length=3)
    record = extract_record(hand_made(tmp_path / "hand.pcap"), DEVICE)
    for bad in ({"half": "left"}, {"points": 0}, {"step_s": -1.0}):
        with pytest.raises(ValueError):
            make_transformer("flow", **bad).fit([record])


def test_cli_exports_and_compares_the_flow_sets(sqlite_lab, tmp_path: Path) -> None:
    """`features export --set volume` and `analyze run -f flow` take the new sets like the others."""
    import csv

    from typer.testing import CliRunner

    from echolab.cli import app
    from echolab.collector.sim import synthetic
    from echolab.db.catalog import Catalog
    from echolab.db.transfer import import_captures

    with Catalog.open(sqlite_lab) as cat:
        for campaign in ("north", "south"):
            folder = tmp_path / campaign
            for k, label in enumerate(("weather", "quotes")):
                (folder / label).mkdir(parents=True)
                for i in range(4):
                    rng = np.random.default_rng([ord(campaign[0]), k, i])
                    synthetic.write_capture(folder / label / f"{i}.pcap", label, 1.5 + k, rng)
            import_captures(cat, folder, campaign=campaign, device_ip=SIM_DEVICE_IP)
    grids = write_grids(tmp_path, {"knn": {"grid": {"n_neighbors": [1]}}})
    runner = CliRunner()
    out = tmp_path / "volume.csv"
    res = runner.invoke(app, ["--lab", str(sqlite_lab.root), "features", "export", "--set", "volume", "-o", str(out)])
    assert res.exit_code == 0, res.output
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 16 and "d2s_volume_40_bytes" in rows[0] and "s2d_volume_01_bytes" in rows[0]
    assert all(float(r["d2s_volume_40_bytes"]) > 10_000 for r in rows)
    res = runner.invoke(app, ["--lab", str(sqlite_lab.root), "analyze", "run", "-f", "flow", "-f", "timing:half=upload",
                              "-m", "knn", "--grids", str(grids), "--split-by", "campaign", "--jobs", "1",
                              "--name", "flow", "--no-report"], terminal_width=200)
    assert res.exit_code == 0, res.output


def test_docs_list_every_flow_feature() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "features.md").read_text()
    for name in (*TIMING_FEATURES, "d2s_volume_NN_bytes", "s2d_volume_NN_bytes", *FLOW_SETS):
        assert f"`{name}`" in text, name
