"""The open world in the comparison: splits that hold unmonitored classes out, trials, summary, report, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from echolab.analysis.compare.keys import plan_splits
from echolab.analysis.compare.openeval import open_splits, threshold_folds
from echolab.analysis.compare.openworld import UNKNOWN, UNMONITORED, counts_from_confusion
from echolab.analysis.compare.report import write_report
from echolab.analysis.compare.runner import run_analysis
from echolab.analysis.compare.specs import AnalysisError, FeatureSpec, RunSettings
from echolab.analysis.compare.splits import random_splits
from echolab.analysis.compare.synthetic import synthetic_source
from echolab.analysis.compare.trials import ProtocolError
from echolab.cli import app
from echolab.db.catalog import Catalog
from echolab.labdir import LabDir
from grids import write_grids

MON = ("weather", "music", "directions")


@pytest.fixture
def grids(tmp_path: Path) -> Path:
    return write_grids(tmp_path, {"random_forest": {"params": {"n_estimators": 16}, "grid": {"max_features": ["sqrt"]}},
                                  "svm_linear": {"params": {"kernel": "linear"}, "grid": {"C": [1]}}})


@pytest.fixture(scope="module")
def source():
    return synthetic_source(12, campaigns=2, seed=3).canonical()


def _settings(grids: Path, **kw) -> RunSettings:
    base = dict(features=(FeatureSpec.of("combined"),), models=("random_forest",), trials=3, seed=5, grids_path=str(grids), leakage_check=False,
                monitored=MON)
    base.update(kw)
    return RunSettings(**base)


def test_unmonitored_classes_are_held_out_by_class(source, grids: Path) -> None:
    splits, tokens = plan_splits(source, _settings(grids))
    y = source.y
    unmonitored = set(y.tolist()) - set(MON)
    held_sets = set()
    for s in splits:
        train, test = set(y[s.train].tolist()), set(y[s.test].tolist())
        held = set(s.classes)
        assert held and held <= unmonitored
        held_sets.add(tuple(sorted(held)))
        assert not held & train  # never seen in training
        assert held <= test and (test - set(MON)) == held  # every held-out capture is tested, nothing else unmonitored
        assert (train - set(MON)) == unmonitored - held  # the others are trained on
        assert set(MON) <= train and set(MON) <= test
        assert not set(s.train.tolist()) & set(s.test.tolist())
        assert tokens[s.trial].startswith("open:random:held ")
    assert len(held_sets) > 1  # the held-out classes change from trial to trial


def test_grouped_open_splits_keep_monitored_groups_apart(source, grids: Path) -> None:
    splits, _ = plan_splits(source, _settings(grids, split_by="campaign"))
    groups = source.groupings["campaign"]
    mon = np.isin(source.y, MON)
    for s in splits:
        tr = set(groups[s.train][mon[s.train]].tolist())
        te = set(groups[s.test][mon[s.test]].tolist())
        assert s.test_group in te and not tr & te


def test_threshold_folds_hold_each_unmonitored_class_out_whole() -> None:
    y = np.array(["weather"] * 6 + ["music"] * 6 + ["jokes"] * 5 + ["timers"] * 4 + ["news"] * 3)
    for train, test in threshold_folds(y, ("weather", "music"), 3):
        for c in ("jokes", "timers", "news"):
            assert not (c in set(y[train].tolist()) and c in set(y[test].tolist()))


def test_open_world_needs_unmonitored_classes_and_known_monitored_ones(source, grids: Path) -> None:
    y = source.y
    with pytest.raises(ProtocolError, match="every class of the data is monitored"):
        open_splits(y, sorted(set(y.tolist())), lambda rows: [], trials_seed=0, test_size=0.2)
    with pytest.raises(ProtocolError, match="names nothing, which the data does not hold"):
        open_splits(y, ("weather", "nothing"), lambda rows: [], trials_seed=0, test_size=0.2)
    only_one = np.where(np.isin(y, MON), y, "other")
    with pytest.raises(ProtocolError, match="false-positive-rate target needs unmonitored classes to train on"):
        open_splits(only_one, MON, lambda rows: random_splits(only_one[rows], 1, 0), trials_seed=0, test_size=0.2,
                    target="fpr=0.05")
    with pytest.raises(AnalysisError, match="precision=P or fpr=F"):
        _settings(grids, threshold_target="recall=0.5").check()


def test_open_run_summary_report_and_cache(source, grids: Path, sqlite_lab: LabDir) -> None:
    with Catalog.open(sqlite_lab) as cat:
        closed = run_analysis(cat, source, _settings(grids, monitored=()), name="closed", jobs=1)
        result = run_analysis(cat, source, _settings(grids, models=("random_forest", "svm_linear")), name="open",
                              jobs=1)
        assert result.computed == 6  # closed-world trials are not reused for open ones
        s = result.run.summary
        assert s["classes"] == [*MON, UNKNOWN]
        assert s["class_counts"][UNKNOWN] == 36  # three unmonitored classes of 12
        ow = s["open_world"]
        assert ow["monitored"] == list(MON) and ow["target"] == "precision=0.9"
        assert ow["unmonitored"] == sorted(set(source.y.tolist()) - set(MON))
        for model in ("random_forest", "svm_linear"):
            cell = ow["cells"]["combined"][model]
            assert cell["n"] == 3
            # the pooled cells and the summed confusion matrices agree
            conf = np.asarray(s["cells"]["combined"][model]["confusion_mean"]) * 3
            counts = counts_from_confusion(np.rint(conf).astype(int), s["classes"], MON)
            pooled = cell["pooled"]
            assert (counts.tp, counts.wp, counts.fn, counts.fp, counts.tn) == tuple(
                pooled[k] for k in ("tp", "wp", "fn", "fp", "tn"))
            assert pooled["n_monitored"] == 3 * 8  # 3 trials x a 20% test part of the 36 monitored captures
            assert 0 <= cell["fpr"] <= 1 and 0 <= cell["precision"] <= 1
            assert cell["r_precision_1:1"] >= cell["r_precision_1:10"] >= cell["r_precision_1:100"]
            curve = cell["curve"]
            assert len(curve["precision"]) == len(curve["recall"]) >= 2
            assert curve["recall"] == sorted(curve["recall"])  # thresholds descend, recall rises
        again = run_analysis(cat, source, _settings(grids), name="open2", jobs=1)
        assert again.computed == 0  # the random forest's open trials are cached under their own keys
        page = write_report(result.run, sqlite_lab.reports_dir / "open")
        html = page.read_text()
        assert 'id="open-world"' in html and "r-precision 1:100" in html
        assert (page.parent / "open-world.png").stat().st_size > 1000
        assert "## Open world (3 monitored classes" in (page.parent / "summary.md").read_text()
        assert "open_world" not in closed.run.summary
        assert 'id="open-world"' not in write_report(closed.run, sqlite_lab.reports_dir / "closed").read_text()


def test_cli_open_world_json_and_errors(sqlite_lab: LabDir, grids: Path) -> None:
    cli = CliRunner()
    base = ["--lab", str(sqlite_lab.root), "analyze", "run", "--synthetic", "8", "--trials", "2", "-m",
            "random_forest", "-f", "combined", "--grids", str(grids), "--jobs", "1", "--no-report"]
    out = cli.invoke(app, [*base, "--open-world", "--monitored", "weather,music", "--json", "--name", "ow"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout[out.stdout.index("{"):])
    assert data["run"] == "ow" and data["classes"] == ["weather", "music", UNKNOWN]
    cell = data["open_world"]["cells"]["combined"]["random_forest"]
    assert set(cell) >= {"tpr", "wpr", "fpr", "precision", "r_precision_1:1", "r_precision_1:10",
                         "r_precision_1:100", "curve", "threshold"}
    table = cli.invoke(app, [*base, "--open-world", "--monitored", "weather,music", "--name", "ow"],
                       terminal_width=220)
    assert table.exit_code == 0 and "open world %: 2 monitored (weather, music)" in table.output
    alone = cli.invoke(app, [*base, "--monitored", "weather,music"])
    assert alone.exit_code == 2 and "--open-world and --monitored A,B,... go together" in alone.output
    missing = cli.invoke(app, [*base, "--open-world", "--monitored", "weather,nothing"])
    assert missing.exit_code == 1 and "Error: --monitored names nothing" in missing.output
    reserved = cli.invoke(app, [*base, "--open-world", "--monitored", f"weather,{UNMONITORED}"])
    assert reserved.exit_code == 1 and "Error:" in reserved.output
