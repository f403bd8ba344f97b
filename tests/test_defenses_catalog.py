"""Defended campaigns in the catalog and the defense comparison, on simulated captures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from echolab.analysis.compare.defenses import compare_defenses
from echolab.analysis.compare.sources import catalog_source
from echolab.analysis.compare.specs import AnalysisError
from echolab.analysis.compare.splits import capture_groups, grouped_splits
from echolab.analysis.defenses.dataset import capture_seed, defend_campaign
from echolab.analysis.defenses.registry import parse_defense
from echolab.analysis.defenses.trace import DefenseError
from echolab.analysis.features.sets import FeatureError, make_transformer
from echolab.cli import app
from echolab.collector.sim import synthetic
from echolab.db.catalog import Catalog
from echolab.db.transfer import import_captures
from echolab.labdir import LabDir

CLASSES = ("weather", "joke", "time")
GRIDS = """
[models.kfp_forest]
estimator = "sklearn.ensemble.RandomForestClassifier"
params = { n_estimators = 15 }
grid = {}

[models.cumul_svm]
estimator = "sklearn.svm.SVC"
params = { kernel = "rbf" }
grid = { C = [1024] }
"""


def _campaign(cat: Catalog, folder: Path, per_class: int = 6) -> None:
    for label in CLASSES:
        (folder / label).mkdir(parents=True)
        for i in range(per_class):
            rng = np.random.default_rng([7, CLASSES.index(label), i])
            synthetic.write_capture(folder / label / f"{i}.pcap", label, float(rng.uniform(1.5, 3.0)), rng)
    import_captures(cat, folder, campaign="sim", device_ip="10.77.0.2")


@pytest.fixture
def lab(sqlite_lab: LabDir, tmp_path: Path) -> LabDir:
    with Catalog.open(sqlite_lab) as cat:
        _campaign(cat, tmp_path / "sim")
    return sqlite_lab


def _swap_two_times(path: Path) -> None:
    """Rewrite the pcap at *path* with its 5th and 6th packets' times swapped (the file's order kept)."""
    import dpkt

    with open(path, "rb") as fh:
        frames = list(dpkt.pcap.Reader(fh))
    (t4, b4), (t5, b5) = frames[4], frames[5]
    frames[4], frames[5] = (t5, b4), (t4, b5)
    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh)
        for ts, buf in frames:
            writer.writepkt(buf, ts=ts)


def test_a_capture_whose_times_go_back_is_defended_in_time_order(sqlite_lab: LabDir, tmp_path: Path) -> None:
    folder = tmp_path / "sim"
    with Catalog.open(sqlite_lab) as cat:
        (folder / "weather").mkdir(parents=True)
        rng = np.random.default_rng(5)
        synthetic.write_capture(folder / "weather" / "0.pcap", "weather", 2.0, rng)
        _swap_two_times(folder / "weather" / "0.pcap")
        import_captures(cat, folder, campaign="sim", device_ip="10.77.0.2")
        report = defend_campaign(cat, "mtu", campaign="sim", seed=1)
        assert report.written == 1 and not report.skipped
        cost = next(iter(report.overheads.values()))
        assert cost.defended_last_real_s == cost.last_real_s and cost.wire_bytes_out > cost.real_bytes_out


def test_defend_writes_trace_captures_linked_to_their_originals(lab: LabDir) -> None:
    with Catalog.open(lab) as cat:
        report = defend_campaign(cat, "buflo:tau=1", campaign="sim", seed=3)
        assert report.campaign == "sim+buflo:tau=1" and report.written == 18 and not report.skipped
        camp = cat.campaign("sim+buflo:tau=1")
        assert camp.backend == "defended" and camp.settings["defense"] == "buflo:tau=1"
        assert camp.settings["overhead"]["bandwidth"] > 0
        defended = cat.captures(campaign="sim+buflo:tau=1")
        originals = {c.id: c for c in cat.captures(campaign="sim")}
        assert sorted(c.defended_from for c in defended) == sorted(originals)
        for c in defended:
            assert c.label == originals[c.defended_from].label and c.defense == "buflo:tau=1"
            assert c.path.endswith(".csv") and c.started_at == originals[c.defended_from].started_at
        # the analysis reads the undefended captures unless a defended campaign is named
        assert sorted(catalog_source(cat).capture_ids) == sorted(originals)
        src = catalog_source(cat, campaigns=["sim+buflo:tau=1"])
        assert len(src.y) == 18 and all(r.kind == "trace" for r in src.records)
        assert src.provenance["kinds"][0]["kind"] == "defended" and not src.provenance["real"]
        assert src.provenance["campaigns"]["sim+buflo:tau=1"]["defense"] == "buflo:tau=1"
        # each stored trace is the defense of its original's sequence under its seed
        by_id = dict(zip(src.capture_ids, src.records))
        base = dict(zip(catalog_source(cat).capture_ids, catalog_source(cat).records))
        first = defended[0]
        orig = base[first.defended_from]
        again = parse_defense("buflo:tau=1").apply(np.asarray(orig.seq_times_us) / 1e6, orig.seq_sizes,
                                                   seed=capture_seed(3, first.defended_from))
        assert list(by_id[first.id].seq_sizes) == again.sizes.tolist()
        assert set(np.abs(by_id[first.id].seq_sizes).tolist()) == {1500}
        # sets that need TCP headers refuse in one line
        with pytest.raises(FeatureError, match="the tcptrace set needs TCP headers") as err:
            make_transformer("tcptrace").fit(src.records)
        assert "\n" not in str(err.value)
        with pytest.raises(DefenseError, match="already exists"):
            defend_campaign(cat, "buflo:tau=1", campaign="sim")


def test_defended_twins_share_source_and_session_so_splits_keep_them_together(lab: LabDir) -> None:
    with Catalog.open(lab) as cat:
        defend_campaign(cat, "mtu", campaign="sim")
        caps = cat.captures()
        groups = capture_groups(caps)
        index = {c.id: i for i, c in enumerate(caps)}
        twins = [(index[c.defended_from], index[c.id]) for c in caps if c.defended_from]
        assert len(twins) == 18
        for g in ("source", "session", "day"):
            assert all(groups[g][a] == groups[g][b] for a, b in twins)
        assert all(groups["campaign"][a] == "sim" and groups["campaign"][b] == "sim+mtu" for a, b in twins)
        y = np.asarray([c.label for c in caps])
        for split in grouped_splits(y, np.asarray(groups["source"]), "source", trials=3, seed=1):
            train, test = set(split.train.tolist()), set(split.test.tolist())
            assert not any((a in train and b in test) or (a in test and b in train) for a, b in twins)


def test_random_trials_of_a_defended_campaign_hold_its_originals_requests(lab: LabDir) -> None:
    from echolab.analysis.compare.splits import random_splits

    with Catalog.open(lab) as cat:
        defend_campaign(cat, "front:n=30", campaign="sim")
        plain = catalog_source(cat, campaigns=["sim"]).canonical()
        defended = catalog_source(cat, campaigns=["sim+front:n=30"]).canonical()
        origin = {c.id: c.defended_from for c in cat.captures(campaign="sim+front:n=30")}
    assert [origin[i] for i in defended.capture_ids] == plain.capture_ids
    assert defended.fingerprint() != plain.fingerprint()  # distinct data: distinct cached trials
    for a, b in zip(random_splits(plain.y, 3, 0), random_splits(defended.y, 3, 0)):
        assert a.train.tolist() == b.train.tolist() and a.test.tolist() == b.test.tolist()


def test_defense_comparison_both_modes_on_the_same_splits(lab: LabDir, tmp_path: Path) -> None:
    grids = tmp_path / "grids.toml"
    grids.write_text(GRIDS)
    with Catalog.open(lab) as cat:
        # dstar with a huge epsilon adds (almost) no noise: its defended twins are the originals
        res = compare_defenses(cat, ["dstar:eps=1000000000", "buflo:tau=1"], features=["cumul"], trials=2,
                               grids_path=str(grids))
        assert cat.captures(campaign=None) and len(cat.campaigns()) == 1  # nothing written
    assert res.attacks == ["cumul/cumul_svm"] and res.captures == 18 and res.chance == pytest.approx(1 / 3)
    same = res.accuracy["dstar:eps=1e+09"]["cumul/cumul_svm"]
    assert same["trained_undefended"] == res.baseline["cumul/cumul_svm"] == same["trained_defended"]
    assert res.overheads["dstar:eps=1e+09"]["bandwidth"] == 0 and res.overheads["buflo:tau=1"]["bandwidth"] > 1
    assert res.overheads["buflo:tau=1"]["delay"] >= 0
    rows = res.rows()
    assert [r["defense"] for r in rows[:3]] == ["none", "dstar:eps=1e+09", "buflo:tau=1"]
    assert any(r["published"] and "Kennedy" in r["defense"] and r["trained_defended"] == 0.147 for r in rows)
    assert set(res.pareto()) <= set(res.defenses)
    assert res.best_within([(0.01, 0.0)])[0]["defense"] == "dstar:eps=1e+09"
    fig = res.figure()
    assert len(fig.axes) == 2
    from echolab.analysis.compare.defenses import DefenseComparison

    back = DefenseComparison.from_json(res.to_json())
    assert back.rows() == rows and back.pareto() == res.pareto()
    with pytest.raises(AnalysisError, match="the tcptrace set needs TCP headers"):
        compare_defenses(cat, ["mtu"], features=["tcptrace"])


def test_cli_defend_list_and_bad_spec(lab: LabDir) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["--lab", str(lab.root), "defend", "--list"])
    assert out.exit_code == 0 and "front  n=1700, w=1-14, size=1500" in out.output
    bad = runner.invoke(app, ["--lab", str(lab.root), "defend", "--defense", "front:q=2"])
    assert bad.exit_code == 1
    assert bad.output.strip().splitlines()[0] == "Error: the front defense has no parameter 'q' (it takes n, w, size)"
    ok = runner.invoke(app, ["--lab", str(lab.root), "defend", "-d", "mtu", "-c", "sim", "--no-progress"])
    assert ok.exit_code == 0, ok.output
    assert "18 defended captures in campaign 'sim+mtu' (mtu)" in ok.output and "delay 0.0%" in ok.output


def test_lab_defends_from_a_notebook(lab: LabDir) -> None:
    from echolab import Lab

    with Lab(lab.root) as notebook:
        report = notebook.defend("front:n=50,w=0.5-2", campaign="sim", seed=1)
        assert report.written == 18 and report.totals()["bandwidth"] > 0 and report.totals()["delay"] == 0
        assert len(notebook.captures(campaign="sim+front:n=50,w=0.5-2")) == 18


def test_cli_analyze_defenses_json_and_plot(lab: LabDir, tmp_path: Path) -> None:
    import json

    grids = tmp_path / "grids.toml"
    grids.write_text(GRIDS)
    plot = tmp_path / "pareto.png"
    out = CliRunner().invoke(app, ["--lab", str(lab.root), "analyze", "defenses", "-d", "mtu", "-d", "front:n=40",
                                   "-f", "kfp", "--trials", "2", "--grids", str(grids), "--plot", str(plot),
                                   "--json"])
    assert out.exit_code == 0, out.output
    data, _ = json.JSONDecoder().raw_decode(out.stdout)  # after it, stderr may hold the interpreter's warnings
    assert data["defenses"] == ["mtu", "front:n=40"] and data["attacks"] == ["kfp/kfp_forest"]
    assert data["overheads"]["mtu"]["delay"] == 0 and data["overheads"]["mtu"]["bandwidth"] > 0
    assert all(len(v) == 2 for v in data["accuracy"]["mtu"]["kfp/kfp_forest"].values())
    assert [b["bandwidth_budget"] for b in data["best_within"]] == [0.1, 0.5, 1.0, 6.0]
    assert plot.stat().st_size > 10_000 and data["plot"] == str(plot)
    bad = CliRunner().invoke(app, ["--lab", str(lab.root), "analyze", "defenses", "-d", "mtu", "-f", "histogram"])
    assert bad.exit_code == 1 and bad.output.strip().splitlines()[0].startswith(
        "Error: the histogram set needs TCP headers, which a defended packet trace does not have")


def test_a_learning_defense_learns_from_a_history_the_attacks_leave_out(lab: LabDir, tmp_path: Path,
                                                                               monkeypatch) -> None:
    from echolab.analysis.defenses.anonymity import AnonymitySets

    learned_from: list[int] = []
    fit = AnonymitySets.fit

    def spy(self, sequences, labels=None):
        learned_from.append(len(sequences))
        return fit(self, sequences, labels)

    monkeypatch.setattr(AnonymitySets, "fit", spy)
    grids = tmp_path / "grids.toml"
    grids.write_text(GRIDS)
    with Catalog.open(lab) as cat:
        res = compare_defenses(cat, ["anonsets:sets=1"], features=["cumul"], trials=2, grids_path=str(grids))
    assert learned_from == [3]  # once, from a history of one capture of each class
    modes = res.accuracy["anonsets:sets=1"]["cumul/cumul_svm"]
    assert len(modes["trained_defended"]) == len(modes["trained_undefended"]) == 2
    # the overhead is that of the 15 captures new to the defense, which alone the trials train and test on
    assert res.overheads["anonsets:sets=1"]["bandwidth"] > 0 and res.overheads["anonsets:sets=1"]["captures"] == 15
    # Written to the catalog, a labelled defense reads each capture's label.
    out = CliRunner().invoke(app, ["--lab", str(lab.root), "defend", "-d", "anonsets", "-c", "sim", "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "15 defended captures in campaign 'sim+anonsets' (anonsets)" in out.output
    assert "the defense learned from 3 other captures, which it does not defend" in out.output
    # Requests of one set are alike (some the very same trace): each keeps a file in the lab, and in an export.
    from echolab.analysis.features.store import export_features

    with Catalog.open(lab) as cat:
        defended = cat.captures(campaign="sim+anonsets")
        assert len({c.sha256 for c in defended}) < 15  # the same trace more than once
        assert len({c.path for c in defended}) == 15 and all((lab.root / c.path).exists() for c in defended)
        folder = tmp_path / "traces"
        assert export_features(cat, folder, set_name="sequence", captures=defended) == 15
    assert len(list(folder.rglob("*.csv"))) == 15
