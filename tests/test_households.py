"""Simulated households and unsupervised adaptation: homes that frame the same requests differently."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from echolab.analysis.compare.adapt import ADAPTATIONS, AdaptationError, adapt_matrix, coral
from echolab.analysis.compare.classify import request_records
from echolab.analysis.features.sets import extract_record, make_transformer
from echolab.captures.records import RecordStats, tls_records
from echolab.cli import app
from echolab.collector.sim.households import HOUSEHOLDS, HouseholdError, household, household_params, write_household
from echolab.collector.sim.synthetic import TLS_OVERHEAD
from echolab.db.catalog import Catalog
from grids import write_grids
from pcaps import SIM_DEVICE_IP



def test_adaptations_by_hand() -> None:
    X = np.array([[1.0, 10], [3, 10], [5, 40], [100, 0], [300, 1]])
    homes = np.array(["a", "a", "a", "b", "b"])
    z = adapt_matrix(X, homes, "standardize")
    sd = np.std([1.0, 3, 5])
    assert z[:3, 0] == pytest.approx([-2 / sd, 0, 2 / sd]) and z[3:, 0] == pytest.approx([-1, 1])
    q = adapt_matrix(X, homes, "quantile")
    assert q[:, 0].tolist() == pytest.approx([1 / 6, 3 / 6, 5 / 6, 1 / 4, 3 / 4])
    assert q[:3, 1].tolist() == pytest.approx([1 / 3, 1 / 3, 2.5 / 3])  # a tie shares its mid-rank
    assert adapt_matrix(X, homes, "none") is X
    with pytest.raises(AdaptationError, match="--adapt must be one of"):
        adapt_matrix(X, homes, "magic")
    assert set(ADAPTATIONS) == {"none", "standardize", "quantile", "coral"}


def test_coral_gives_the_training_homes_the_test_homes_covariance() -> None:
    rng = np.random.default_rng(0)
    source = rng.normal(size=(400, 3)) @ np.array([[1, 0.8, 0], [0, 1, 0], [0, 0, 0.2]])
    target = rng.normal(size=(300, 3)) @ np.array([[1, -0.5, 0.3], [0, 2, 0], [0, 0, 1]])
    X = np.vstack([source, target])
    homes = np.array(["s"] * 400 + ["t"] * 300)
    Z = coral(X, homes, np.arange(400, 700), eps=1e-9)
    assert np.cov(Z[:400], rowvar=False) == pytest.approx(np.cov(Z[400:], rowvar=False), abs=1e-6)
    assert not np.allclose(np.cov(source, rowvar=False), np.cov(target, rowvar=False), atol=0.1)


def test_the_two_real_homes_framing(tmp_path: Path) -> None:
    """home-a and home-b frame the same upload as the two real homes do (REAL-ECHO-TRAFFIC.md), read back at the
    gateway by the record layer: usual upload record lengths and their shares, segments per upload, answer and
    control records, round trip."""
    out = {}
    for name in ("home-a", "home-b"):
        h = household(name)
        path = write_household(tmp_path / name, h, ["weather"], 1, seed=3)[0]
        stats = RecordStats()
        recs = list(tls_records(path, SIM_DEVICE_IP, stats))
        answer_from = min(r.ts_us for r in recs if r.direction == -1)
        upload = Counter(r.length for r in recs if r.direction == 1 and r.ts_us < answer_from)
        up, n = upload.most_common(1)[0]
        down = max(r.length for r in recs if r.direction == -1)
        control = ({r.length for r in recs if r.direction == 1} & set(h.control_record_bytes),
                   {r.length for r in recs if r.direction == -1} & set(h.control_record_bytes))
        record = extract_record(path, SIM_DEVICE_IP)
        flow = dict(zip(make_transformer("timing").fit([record]).feature_names_,
                        make_transformer("timing").fit([record]).transform([record])[0]))
        up_pkts = sum(1 for s in record.seq_sizes if s > 100)
        out[name] = (up, n / sum(upload.values()), down, control, up_pkts, flow["d2s_upload_bytes"], flow["bi_rtt_ms"])
        assert stats.holes == 0 and stats.partial <= 1
    (up_a, share_a, down_a, control_a, pkts_a, bytes_a, rtt_a) = out["home-a"]
    (up_b, share_b, down_b, control_b, pkts_b, bytes_b, rtt_b) = out["home-b"]
    assert (up_a, up_b) == (113, 432)  # the record lengths seen in the two real homes
    assert share_a == pytest.approx(0.72, abs=0.08) and share_b == pytest.approx(0.87, abs=0.08)  # of upload records
    assert (down_a, down_b) == (16408, 4128)
    assert control_a == ({33}, {87}) and control_b == ({32}, {40})
    assert 1.8 < pkts_a / pkts_b < 3.2  # the same kind of upload takes about 2.3 times the packets in home-a
    assert rtt_a == pytest.approx(25.0, abs=0.5) and rtt_b == pytest.approx(45.0, abs=1.5)
    assert 0.5 < bytes_a / bytes_b < 2


def test_the_report_after_the_answer_follows_most_of_home_as_requests_and_few_of_home_bs(tmp_path: Path) -> None:
    """The Echo's upload 8 to 15 s after an answer (about 14.5 KB in well under a second) follows 63% of one real
    home's requests and 10% of the other's."""
    shares = {}
    for name in ("home-a", "home-b"):
        paths = write_household(tmp_path / name, household(name), ["unintelligible"], 40, seed=5)
        reports = 0
        for path in paths:
            recs = list(tls_records(path, SIM_DEVICE_IP))
            answer_end = max(r.end_us for r in recs if r.direction == -1 and r.length > 2000)
            late = [r for r in recs if r.direction == 1 and r.ts_us > answer_end + 7_000_000]
            if late:
                assert 13_000 < sum(r.length for r in late) < 16_000
                assert (late[-1].end_us - late[0].ts_us) < 1_000_000
                reports += 1
        shares[name] = reports / len(paths)
    assert shares["home-a"] == pytest.approx(0.63, abs=0.2) and shares["home-b"] == pytest.approx(0.10, abs=0.12)


def test_household_params_and_bad_profiles() -> None:
    p = household_params(household("home-c"))
    assert p.synthetic["mss"] == 1360 and p.synthetic["capture_coalesce"] == 2
    assert p.speech["record_bytes"] == 8192 - (TLS_OVERHEAD - 5) - 5  # the audio a record of length 8192 carries
    with pytest.raises(HouseholdError, match="unknown household 'home-z'"):
        household("home-z")
    import dataclasses

    with pytest.raises(HouseholdError, match="mss"):
        household_params(dataclasses.replace(HOUSEHOLDS[0], mss=100))


def test_cli_collects_one_campaign_per_household_and_adapts(sqlite_lab, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["--lab", str(sqlite_lab.root), "sim", "households", str(tmp_path / "homes"),
                              "--household", "home-a", "--household", "home-b", "--classes", "weather,quotes",
                              "--per-class", "4"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "household-home-a: 8 captures imported" in res.output
    with Catalog.open(sqlite_lab) as cat:
        assert sorted(c.name for c in cat.campaigns()) == ["household-home-a", "household-home-b"]
    grids = write_grids(tmp_path, {"knn": {"grid": {"n_neighbors": [1]}}})
    res = runner.invoke(app, ["--lab", str(sqlite_lab.root), "analyze", "run", "-f", "timing", "-m", "knn",
                              "--grids", str(grids), "--split-by", "campaign", "--adapt", "quantile", "--jobs", "1",
                              "--name", "adapted"], terminal_width=200)
    assert res.exit_code == 0, res.output
    report = next((sqlite_lab.root / "reports" / "adapted").rglob("summary.md")).read_text()
    assert "unsupervised adaptation to each campaign: quantile" in report
    assert "the leakage check reads the features as extracted, without it" in " ".join(report.split())
    html = next((sqlite_lab.root / "reports" / "adapted").rglob("index.html")).read_text()
    assert "applies to the accuracy figures only" in " ".join(html.split())
    assert "leave-one-campaign-out (2 trials)" in report
    bad = runner.invoke(app, ["--lab", str(sqlite_lab.root), "analyze", "run", "-f", "timing", "--adapt", "magic"])
    assert bad.exit_code == 2
    model = tmp_path / "adapted.joblib"
    res = runner.invoke(app, ["--lab", str(sqlite_lab.root), "analyze", "train", "-o", str(model), "-f", "timing",
                              "-m", "knn", "--grids", str(grids), "--campaign", "household-home-a", "--adapt",
                              "quantile"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "adapts to each home by quantile" in " ".join(res.output.split())
    from echolab.analysis.compare.modelfile import ModelFileError, load_model, read_header

    assert read_header(model)["adapt"] == "quantile"
    trained = load_model(model)
    paths = sorted((tmp_path / "homes" / "home-b").rglob("*.pcap"))
    records = [extract_record(p, SIM_DEVICE_IP) for p in paths]
    labels, _ = trained.predict(records)
    assert len(labels) == 8 and set(labels) <= {"weather", "quotes"}
    with pytest.raises(ModelFileError, match="at least 5 requests at once, not 2"):
        trained.predict(records[:2])
    # classify: a home's folder of one-request captures is adapted together, as one home's requests
    res = runner.invoke(app, ["classify", "--model", str(model), "--split", "gap=4", "--device-ip", SIM_DEVICE_IP,
                              "--json", str(tmp_path / "homes" / "home-b")])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 8 and all(r["label"] in {"weather", "quotes"} for r in rows)
    from echolab.api import Lab as _Lab

    done = _Lab.classify(paths, trained, "gap=4", device_ip=SIM_DEVICE_IP)
    cut_records = [rec for o in done.outcomes
                   for rec, _why in request_records(o.source, o.result.segments, o.device_ip) if rec is not None]
    assert len(cut_records) == 8
    assert [p.label for p in done.predictions] == trained.predict(cut_records)[0]  # one call, not one per file
    res = runner.invoke(app, ["classify", "--model", str(model), "--split", "gap=4", "--device-ip", SIM_DEVICE_IP,
                              str(paths[0]), str(paths[1])])
    assert res.exit_code != 0 and "at least 5 requests at once, not 2" in " ".join(res.output.split())
    from echolab.analysis.compare.classify import ClassifyError
    from echolab.api import Lab

    with pytest.raises(ClassifyError, match="adapts to each home"):
        Lab.classify_live(model, interface="lo", device_ip=SIM_DEVICE_IP)
    live = runner.invoke(app, ["classify", "--model", str(model), "--interface", "lo", "--device-ip", SIM_DEVICE_IP])
    assert live.exit_code == 2 and "adapts to each home" in " ".join(live.output.split())
    # A third home that recorded music instead of nothing new: every trial is on the two classes all three hold.
    res = runner.invoke(app, ["--lab", str(sqlite_lab.root), "sim", "households", str(tmp_path / "homes"),
                              "--household", "home-c", "--classes", "weather,quotes,music", "--per-class", "4"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["--lab", str(sqlite_lab.root), "analyze", "run", "-f", "timing", "-m", "knn",
                              "--grids", str(grids), "--split-by", "campaign", "--jobs", "1", "--name", "three"],
                        terminal_width=200)
    assert res.exit_code == 0, res.output
    report = " ".join(next((sqlite_lab.root / "reports" / "three").rglob("summary.md")).read_text().split())
    assert "leave-one-campaign-out (3 trials)" in report
    assert "Every trial is evaluated on the classes every campaign holds; left out: music." in report
    html = " ".join(next((sqlite_lab.root / "reports" / "three").rglob("index.html")).read_text().split())
    assert "on the classes every campaign holds (left out: music)" in html
    assert "accuracy figures below used unsupervised adaptation" not in report


def test_cli_adaptation_choices_are_the_librarys() -> None:
    from echolab.cli.analyze import Adaptation

    assert tuple(m.value for m in Adaptation) == ADAPTATIONS


def test_a_lossy_household_resends_segments_that_the_flow_counts_once(tmp_path: Path) -> None:
    from echolab.captures.reader import T_DATA_LEN, T_DST, T_SRC, iter_tcp, parse_addr

    import dataclasses

    assert household("home-c").loss > 0
    h = dataclasses.replace(household("home-c"), loss=0.1)  # more than its 1%, so one capture surely holds some
    path = write_household(tmp_path / h.name, h, ["information"], 1, seed=1)[0]
    record = extract_record(path, SIM_DEVICE_IP)
    assert record.tcptrace["s2d_rexmt_data_pkts"] > 0
    stats = RecordStats()
    list(tls_records(path, SIM_DEVICE_IP, stats))
    assert stats.duplicate_bytes > 0 and stats.holes == 0
    echo = parse_addr(SIM_DEVICE_IP)
    payload = sum(p[T_DATA_LEN] for p in iter_tcp(path) if echo in (p[T_SRC], p[T_DST]))
    # The record layer's reassembly and the flow meter's byte ranges agree on the bytes sent once.
    assert sum(abs(b) for b in record.flow_bytes) == payload - stats.duplicate_bytes


def test_a_profile_measured_from_a_homes_captures_is_that_homes(tmp_path: Path) -> None:
    """measure_household reads a home's framing and network back from its captures; home-c's capture point
    merges segment pairs and loses 1% of them, home-b's Echo puts several upload records in a segment."""
    from echolab.collector.sim.households import household_toml, load_households, measure_household

    for h in HOUSEHOLDS:
        name = h.name
        paths = write_household(tmp_path / name, h, ["weather", "quotes"], 5, seed=2)
        measured = measure_household(paths, SIM_DEVICE_IP, name)
        got = measured.household
        assert measured.used == measured.captures == 10 and not measured.notes
        for field in ("upload_record_bytes", "upload_coalesce", "answer_record_bytes", "control_record_bytes",
                      "mss", "capture_coalesce", "voice_server"):
            assert getattr(got, field) == getattr(h, field), field
        assert got.rtt_s == pytest.approx(h.rtt_s, rel=0.1)
        assert got.upload_record_share == pytest.approx(h.upload_record_share, abs=0.08)
        assert got.voice_pace == 1.0  # not in the captures: the default
        (tmp_path / "p.toml").write_text(household_toml([got]))
        assert load_households(tmp_path / "p.toml") == (got,)
    with pytest.raises(HouseholdError, match="no capture of 10.99.0.1 held an upload and an answer"):
        measure_household(paths[:2], "10.99.0.1")
    broken = tmp_path / "broken.pcap"  # a file shared with the others that is no capture: skipped, named
    broken.write_bytes(b"\xd4\xc3\xb2\xa1" + bytes(range(40)))
    measured = measure_household([broken, *paths], SIM_DEVICE_IP, "home-c")
    assert measured.used == 10 and measured.captures == 11 and measured.notes[0].startswith("broken.pcap: ")


@pytest.mark.parametrize("body,message", [
    ("[households.x]\nupload_record_bytes = 113\nupload_coalesce = false\n", "household x: missing answer_record_bytes"),
    ("[households.x]\nupload_record_bytes = 113\nupload_coalesce = false\nanswer_record_bytes = 4128\nshell = 'rm'\n",
     r"household x: unknown field\(s\) shell"),
    ("[households.x]\nupload_record_bytes = '113'\nupload_coalesce = false\nanswer_record_bytes = 4128\n",
     "household x: upload_record_bytes must be a whole number, not '113'"),
    ("[households.x]\nupload_record_bytes = 113\nupload_coalesce = 1\nanswer_record_bytes = 4128\n",
     "household x: upload_coalesce must be true or false"),
    ("[households.x]\nupload_record_bytes = 113\nupload_coalesce = false\nanswer_record_bytes = 4128\n"
     "control_record_bytes = [33]\n", r"control_record_bytes must be a pair of whole numbers"),
    ("[households.x]\nupload_record_bytes = 113\nupload_coalesce = false\nanswer_record_bytes = 99999\n",
     "household x: record lengths must be"),
    ("[households.x]\nupload_record_bytes = 113\nupload_coalesce = false\nanswer_record_bytes = 4128\nmss = 100\n",
     "household x: mss must be 536 to 9000"),
    ('[households."../../escape"]\nupload_record_bytes = 113\nupload_coalesce = false\nanswer_record_bytes = 4128\n',
     "holds a path separator"),
    ('[households."my home"]\nupload_record_bytes = 113\nupload_coalesce = false\nanswer_record_bytes = 4128\n',
     "may hold only letters, digits"),
    ('[households.".."]\nupload_record_bytes = 113\nupload_coalesce = false\nanswer_record_bytes = 4128\n',
     "would name a folder above"),
    ("[households.x]\nupload_record_bytes = 113\nupload_coalesce = false\nanswer_record_bytes = 4128\nrtt_s = inf\n",
     "rtt_s must be a finite number"),
    ("[households.x]\nupload_record_bytes = 113\nupload_coalesce = false\nanswer_record_bytes = 4128\nloss = nan\n",
     "loss must be a finite number"),
    ("[households.x]\nupload_record_bytes = 113\nupload_coalesce = false\nanswer_record_bytes = 4128\n"
     "voice_server = '$(reboot)'\n", "voice_server must be an IPv4 address"),
    ("[households.x]\nupload_record_bytes = 113\nupload_coalesce = false\nanswer_record_bytes = 4128\n"
     "voice_pace = 20000.0\n", "voice_pace must be 0.25 to 4"),
    ("[households.x]\nupload_record_bytes = 113\nupload_coalesce = false\nanswer_record_bytes = 4128\n"
     "capture_coalesce = 1000\n", "capture_coalesce 1 to 64"),
    ("a = " + "[" * 2000 + "]" * 2000 + "\n", "is not valid TOML"),
    ("[households]\n", r"has no \[households.NAME\] tables"),
    ("households = [", "is not valid TOML"),
])
def test_a_profiles_file_is_data_checked_field_by_field(tmp_path: Path, body: str, message: str) -> None:
    from echolab.collector.sim.households import load_households

    path = tmp_path / "p.toml"
    path.write_text(body)
    with pytest.raises(HouseholdError, match=message):
        load_households(path)
    path.write_bytes(b"\xff\xfe[households.x]")
    with pytest.raises(HouseholdError, match="is not UTF-8 text"):
        load_households(path)


def test_cli_measures_a_home_and_simulates_homes_like_it(sqlite_lab, tmp_path: Path) -> None:
    paths = write_household(tmp_path / "real", household("home-b"), ["weather", "quotes"], 3, seed=5)
    del paths
    runner = CliRunner()
    profile = tmp_path / "mine.toml"
    res = runner.invoke(app, ["sim", "measure-household", str(tmp_path / "real"), "--device-ip", SIM_DEVICE_IP,
                              "--name", "my-home", "-o", str(profile)], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "measured on 6 of 6 captures" in res.output and profile.exists()
    listed = runner.invoke(app, ["sim", "households", str(tmp_path / "x"), "--profiles", str(profile), "--list"],
                           terminal_width=200)
    assert listed.exit_code == 0 and "my-home" in listed.output and "home-a" in listed.output
    res = runner.invoke(app, ["--lab", str(sqlite_lab.root), "sim", "households", str(tmp_path / "sim"),
                              "--profiles", str(profile), "--household", "my-home", "--household", "home-a",
                              "--classes", "weather", "--per-class", "2"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "household-my-home: 2 captures imported" in res.output and "household-home-a: 2" in res.output
    again = measure_household_of(sorted((tmp_path / "sim" / "my-home").rglob("*.pcap")))
    assert again.upload_record_bytes == 432 and again.answer_record_bytes == 4128
    bad = runner.invoke(app, ["sim", "measure-household", str(tmp_path / "nothing-here"), "--device-ip", "10.0.0.1"])
    assert bad.exit_code == 2 and "does not exist" in bad.output
    bad = runner.invoke(app, ["sim", "measure-household", str(tmp_path / "real"), "--device-ip", "not-an-ip"])
    assert bad.exit_code == 2 and "is not an IP address" in bad.output
    bad = runner.invoke(app, ["sim", "measure-household", str(tmp_path / "real"), "--device-ip", SIM_DEVICE_IP,
                              "-o", str(tmp_path / "no-such-folder" / "p.toml")])
    assert bad.exit_code == 2 and "cannot write" in bad.output
    (tmp_path / "bad.toml").write_text("[households.x]\nupload_record_bytes = 113\n")
    bad = runner.invoke(app, ["sim", "households", str(tmp_path / "y"), "--profiles", str(tmp_path / "bad.toml")])
    assert bad.exit_code == 2 and "missing" in bad.output


def measure_household_of(paths: list[Path]):
    from echolab.collector.sim.households import measure_household

    return measure_household(paths, SIM_DEVICE_IP).household


def test_fixed_commands_give_one_answer_each_asked_again_and_again(sqlite_lab, tmp_path: Path) -> None:
    from echolab.collector.sim.households import command_labels, command_params
    from echolab.collector.sim.model import draw_plan

    labels = command_labels(4)
    assert labels == ["command-01", "command-02", "command-03", "command-04"] and len(command_labels(120)[0]) == 11
    with pytest.raises(HouseholdError, match="at least 2"):
        command_labels(1)
    params = command_params(labels)
    rng = np.random.default_rng(0)
    answers = {c: [draw_plan(c, params, rng).speech_s for _ in range(30)] for c in labels}
    for c, drawn in answers.items():  # one command: one answer, 5% spread
        assert np.std(drawn) / np.mean(drawn) == pytest.approx(0.05, abs=0.025) and 2.0 <= np.mean(drawn) <= 14.5
    means = sorted(np.mean(v) for v in answers.values())
    assert min(np.diff(means)) > 0.3  # four commands, four answers, further apart than a request's spread
    assert command_params(labels).classes["command-02"] == params.classes["command-02"]  # the same in every run
    runner = CliRunner()
    res = runner.invoke(app, ["--lab", str(sqlite_lab.root), "sim", "households", str(tmp_path / "homes"),
                              "--household", "home-a", "--commands", "3", "--per-class", "2"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert sorted(p.parent.name for p in (tmp_path / "homes" / "home-a").rglob("*.pcap")) == \
        ["command-01"] * 2 + ["command-02"] * 2 + ["command-03"] * 2
    bad = runner.invoke(app, ["--lab", str(sqlite_lab.root), "sim", "households", str(tmp_path / "x"),
                              "--commands", "3", "--classes", "weather,quotes"])
    assert bad.exit_code == 2 and "not both" in bad.output
