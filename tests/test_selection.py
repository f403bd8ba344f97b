"""Choosing a job's captures: one Selection for the comparison, training, export and feature tables,
on a small lab of two homes' synthetic captures and a packet trace, through Lab and the CLI."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from typer.testing import CliRunner

from echolab import Lab
from echolab.analysis.compare.specs import RunSettings
from echolab.analysis.compare.splits import grouped_splits, plan_grouped
from echolab.analysis.compare.summary import split_summary
from echolab.analysis.compare.trials import ProtocolError
from echolab.captures.trace import write_trace
from echolab.cli import app
from echolab.cli.selecting import Kind
from echolab.db.errors import CatalogError
from echolab.db.selection import KINDS, Selection, SelectionError
from echolab.labdir import CATALOG_URL_ENV

from grids import write_grids
from pcaps import SIM_DEVICE_IP, write_class_captures

HOME_A = ["music", "weather", "quotes"]
HOME_B = ["music", "weather", "directions"]
PER_CLASS = 5


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Home a: music, weather, quotes (5 each); home b: music, weather (5 each), directions (3);
    a campaign of one packet trace labelled music."""
    root = tmp_path_factory.mktemp("select")
    write_class_captures(root / "a", PER_CLASS, classes=HOME_A)
    write_class_captures(root / "b", PER_CLASS, seed=[1], classes=HOME_B[:2])
    write_class_captures(root / "b", 3, seed=[2], classes=HOME_B[2:])
    (root / "t" / "music").mkdir(parents=True)
    write_trace(root / "t" / "music" / "0.csv", [0, 1000, 250_000], [120, -1400, 80])
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(CATALOG_URL_ENV, raising=False)
        with Lab(root / "lab", create=True) as opened:
            for name in ("a", "b"):
                assert opened.import_captures(root / name, campaign=f"home-{name}", device_ip=SIM_DEVICE_IP).ok
            assert opened.import_captures(root / "t", campaign="traces").ok
            yield opened


@pytest.fixture(scope="module")
def grids(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_grids(tmp_path_factory.mktemp("grids"),
                       {"random_forest": {"params": {"n_estimators": 5}, "grid": {"criterion": ["gini"]}}})


def _labels(lab: Lab, selection: Selection) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in lab.select(selection).captures:
        out[c.label] = out.get(c.label, 0) + 1
    return out


def test_each_filter_narrows_the_captures(lab: Lab) -> None:
    assert _labels(lab, Lab.selection()) == {"music": 11, "weather": 10, "quotes": 5, "directions": 3}
    assert _labels(lab, Lab.selection(campaigns="home-a")) == {c: PER_CLASS for c in HOME_A}
    assert _labels(lab, Lab.selection(campaigns=["home-a", "traces"], labels="music")) == {"music": 6}
    assert _labels(lab, Lab.selection(exclude_labels=["music", "weather"])) == {"quotes": 5, "directions": 3}
    assert _labels(lab, Lab.selection(kind="trace")) == {"music": 1}
    assert sum(_labels(lab, Lab.selection(kind="capture")).values()) == 28
    chosen = lab.select(Lab.selection(min_per_class=4, campaigns="home-b"))
    assert {c.label for c in chosen.captures} == {"music", "weather"} and chosen.small == {"directions": 3}
    assert chosen.notes() == ["selection: campaign home-b; classes with 4+ captures",
                              "1 classes with fewer than 4 captures left out: directions (3)"]


def test_a_selection_that_names_nothing_known_or_leaves_nothing_says_so(lab: Lab) -> None:
    with pytest.raises(SelectionError, match="no captures labelled musci"):
        lab.select(Lab.selection(labels="musci"))
    with pytest.raises(CatalogError, match="no campaign 'home-c'"):
        lab.select(Lab.selection(campaigns="home-c"))
    with pytest.raises(SelectionError, match=r"no captures left to work on \(campaign traces; classes with 2\+"):
        lab.select(Lab.selection(campaigns="traces", min_per_class=2))
    with pytest.raises(SelectionError, match="--kind must be one of capture, trace"):
        Lab.selection(kind="pcap")
    with pytest.raises(SelectionError, match="both chosen"):
        Lab.selection(labels="music", exclude_labels="music")


def test_the_cli_kinds_are_the_selections() -> None:
    assert tuple(k.value for k in Kind) == KINDS


def test_export_and_feature_tables_take_the_selection(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "b.csv"
    assert lab.export(out, selection=Lab.selection(campaigns="home-b", exclude_labels="directions")) == 10
    with open(out, newline="") as fh:
        assert {r["label"] for r in csv.DictReader(fh)} == {"music", "weather"}
    table = lab.features("tcptrace", selection=Lab.selection(labels=["quotes", "directions"], kind="capture"))
    assert sorted(set(table.y.tolist())) == ["directions", "quotes"] and len(table.y) == 8


def test_compare_reads_the_selection_and_its_notes_say_what_was_left_out(lab: Lab, grids: Path) -> None:
    result = lab.compare(features=["tcptrace"], models=["random_forest"], trials=2, grids=grids, jobs=1,
                         name="home-a-b", selection=Lab.selection(kind="capture", min_per_class=4))
    summary, notes = result.run.summary, result.run.settings["data_notes"]
    assert summary["classes"] == ["quotes", "weather", "music"] and summary["n_captures"] == 25
    assert notes[:2] == ["selection: captures only; classes with 4+ captures",
                         "1 classes with fewer than 4 captures left out: directions (3)"]


def test_grouped_splits_drop_classes_of_one_group_only_when_asked(lab: Lab, grids: Path) -> None:
    chosen = Lab.selection(kind="capture")
    result = lab.compare(features=["tcptrace"], models=["random_forest"], grids=grids, jobs=1, name="by-home",
                         split_by="campaign", selection=chosen, drop_unsplittable=True)
    assert result.run.summary["classes"] == ["weather", "music"]
    assert ("2 classes in only one campaign left out (--split-by campaign cannot test them on unseen campaigns): "
            "directions, quotes") in result.run.settings["data_notes"]
    with pytest.raises(ProtocolError, match="--trials does not apply to --split-by campaign"):
        lab.compare(features=["tcptrace"], grids=grids, split_by="campaign", trials=5, selection=chosen)


def test_grouped_split_failure_names_the_option_that_leaves_classes_out() -> None:
    y = np.array(["a"] * 6 + ["b"] * 6)
    groups = np.array(["s1", "s2", "s3", "s4", "s5", "s6"] + ["s7"] * 6)
    with pytest.raises(ProtocolError, match=r"too few: b \(1 source\)") as caught:
        grouped_splits(y, groups, "source", trials=2, seed=0)
    assert caught.value.hint == "--drop-unsplittable leaves such classes out (and says which)"


def test_train_takes_the_selection(lab: Lab, grids: Path, tmp_path: Path) -> None:
    written = lab.train(tmp_path / "m.joblib", features="tcptrace", grids=grids,
                        selection=Lab.selection(labels=["music", "quotes"], kind="capture"))
    assert sorted(written.model.classes) == ["music", "quotes"] and written.model.n_captures == 15


def test_cli_filters_and_the_options_that_do_not_apply(lab: Lab, grids: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["--lab", str(lab.root), "analyze"]
    refused = runner.invoke(app, [*base, "run", "-f", "tcptrace", "--grids", str(grids), "--split-by", "campaign",
                                  "--trials", "3"])
    assert refused.exit_code == 1 and "Error: --trials does not apply to --split-by campaign" in refused.output
    wrong = runner.invoke(app, [*base, "run", "--drop-unsplittable", "--grids", str(grids)])
    assert wrong.exit_code == 2 and "--drop-unsplittable applies to grouped splits" in wrong.output
    ran = runner.invoke(app, [*base, "run", "-f", "tcptrace", "-m", "random_forest", "--grids", str(grids),
                              "--trials", "2", "--jobs", "1", "--campaign", "home-a", "--exclude-label", "quotes",
                              "--no-report", "--name", "cli-a"])
    assert ran.exit_code == 0, ran.output
    assert "Note: selection: campaign home-a; without quotes" in ran.output
    with Lab(lab.root) as fresh:
        assert fresh.run("cli-a").summary["classes"] == ["weather", "music"]
    out = tmp_path / "m.joblib"
    trained = runner.invoke(app, [*base, "train", "-o", str(out), "-f", "tcptrace", "--grids", str(grids),
                                  "--label", "music", "--label", "weather", "--kind", "capture"])
    assert trained.exit_code == 0, trained.output
    assert "20 captures of 2 classes" in trained.output
    exported = runner.invoke(app, ["--lab", str(lab.root), "catalog", "export", str(tmp_path / "t.csv"),
                                   "--kind", "trace"])
    assert exported.exit_code == 0 and "Exported 1 captures" in exported.output


def test_too_few_sources_for_repeated_splits_says_trials_were_not_used() -> None:
    y = np.array(["a", "b"] * 8)
    sources = np.array(["s1"] * 8 + ["s2"] * 8)
    splits = plan_grouped(y, sources, "source", trials=3, seed=0)
    split = split_summary(splits, RunSettings(split_by="source", trials=3))
    assert split["leave_one_out"] and split["trials"] == 2
    assert split["note"] == ("too few sources for repeated grouped splits: one left out per trial (2 trials, not "
                             "--trials 3)")
    assert "note" not in split_summary(plan_grouped(y, sources, "campaign", trials=1, seed=0),
                                       RunSettings(split_by="campaign"))


def test_feature_export_takes_the_selection(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "f.csv"
    result = CliRunner().invoke(app, ["--lab", str(lab.root), "features", "export", "-o", str(out), "--set", "tcptrace",
                                      "--campaign", "home-b", "--label", "directions"])
    assert result.exit_code == 0, result.output
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and {r["label"] for r in rows} == {"directions"} and {r["campaign"] for r in rows} == {"home-b"}
    traces = tmp_path / "traces"
    assert lab.export_features(traces, "sequence", selection=Lab.selection(kind="trace")) == 1
