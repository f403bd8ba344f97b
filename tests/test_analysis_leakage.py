"""The leakage check: random splits against unseen groups, in every run and every report."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from echolab.analysis.compare import leakage
from echolab.analysis.compare.report import write_report
from echolab.analysis.compare.runner import run_analysis
from echolab.analysis.compare.sources import catalog_source
from echolab.analysis.compare.synthetic import synthetic_source
from echolab.analysis.compare.specs import FeatureSpec, RunSettings
from echolab.cli import app
from echolab.collector.sim import synthetic
from echolab.collector.sim.params import load_params
from echolab.db.catalog import Catalog
from echolab.db.transfer import import_captures
from echolab.labdir import LabDir
from pcaps import SIM_DEVICE_IP

from grids import write_grids


def _matrix(session_effect: float, campaigns: int):
    src = synthetic_source(20, campaigns=campaigns, seed=1, separation=0.7, session_effect=session_effect)
    return np.asarray(src.records), src


def test_sessions_that_confound_the_label_make_leakage_likely() -> None:
    X, src = _matrix(3.0, 2)
    c = leakage.check(X, src.y, src.groupings, feature="combined", seed=0, trials=3)
    assert c.verdict == "likely" and c.grouping == "campaign"
    assert c.random_accuracy > 90 and c.unseen_accuracy < c.random_accuracy - 30
    assert c.group_accuracy > 90 and c.group_chance == 50.0
    assert c.line() == "Leakage: likely"
    assert "random splits overstate what an eavesdropper on a new network would get" in c.reason
    assert re.match(r"random splits \d+\.\d% \(chance 16\.7%\) vs unseen campaigns \d+\.\d%", c.figures())
    assert c.cross["campaigns"] == ["synthetic-1", "synthetic-2"] and c.cross["classes"][0][1] == 6


def test_without_a_session_signature_leakage_is_unlikely_and_with_one_campaign_unknown() -> None:
    X, src = _matrix(0.0, 2)
    assert leakage.check(X, src.y, src.groupings, seed=0, trials=3).verdict == "unlikely"
    X, src = _matrix(3.0, 1)
    one = leakage.check(X, src.y, src.groupings, seed=0, trials=3)
    assert one.verdict == "unknown" and one.unseen_accuracy is None and one.cross is None
    assert "every session holds a single class, so session and class cannot be told apart" in one.reason
    alone = leakage.check(X, src.y, {"source": [str(i) for i in range(len(src.y))], "campaign": ["c"] * len(src.y)},
                          seed=0, trials=2)
    assert alone.verdict == "unknown" and "(120 sources, 1 campaign)." in alone.reason  # no claim about lone captures


def _two_campaigns_with_confounded_sessions(cat: Catalog, root: Path) -> None:
    """Two campaigns; each records each class in a session of its own, with its own server window.

    Every capture is drawn from the same answer model (one kind of request), so
    the only thing that tells the classes apart is the session's window: a
    random split learns the session, and on the other campaign it is chance.
    """
    params = load_params()
    rng = np.random.default_rng(5)
    for campaign in ("north", "south"):
        folder = root / campaign
        for label in ("weather", "quotes", "information"):
            window = int(rng.integers(4000, 60000))
            session = dataclasses.replace(params, synthetic={**params.synthetic, "voice_server_window": window})
            (folder / label).mkdir(parents=True)
            for i in range(6):
                r = np.random.default_rng([len(campaign), len(label), i])
                synthetic.write_capture(folder / label / f"{i}.pcap", "weather", 2.0, r, session)
        import_captures(cat, folder, campaign=campaign, device_ip=SIM_DEVICE_IP)


def test_report_on_confounded_catalog_warns_and_grouped_splits_run(sqlite_lab: LabDir, tmp_path: Path) -> None:
    grids = write_grids(tmp_path, {"knn": {"grid": {"n_neighbors": [1, 3]}}})
    with Catalog.open(sqlite_lab) as cat:
        _two_campaigns_with_confounded_sessions(cat, tmp_path / "caps")
        source = catalog_source(cat)
        assert set(source.groupings) == {"source", "session", "day", "campaign", "device", "location"}
        assert source.provenance["kinds"][0]["kind"] == "imported"
        res = run_analysis(cat, source, RunSettings(features=(FeatureSpec.of("tcptrace"),), trials=2,
                                                    grids_path=str(grids)), name="random", jobs=1)
        leak = res.run.summary["leakage"]
        assert leak["verdict"] == "likely" and leak["grouping"] == "campaign"
        assert leak["random_accuracy"] >= 80 and leak["unseen_accuracy"] <= leak["random_accuracy"] - 30, leak
        out = write_report(res.run, tmp_path / "report").parent
        md = (out / "summary.md").read_text()
        lines = md.splitlines()
        at = lines.index("Leakage: likely")
        assert lines[at + 1].startswith("random splits ") and "vs unseen campaigns" in lines[at + 1]
        assert "Where the data came from: 36 imported" in md
        assert (out / "cross-campaign.png").stat().st_size > 1000
        html = (out / "index.html").read_text()
        assert html.index("Where the data came from") < html.index("Accuracy (%)")
        assert "Leakage check: random splits against unseen groups" in html
        for by in ("campaign", "source"):
            grouped = run_analysis(cat, source, RunSettings(features=(FeatureSpec.of("tcptrace"),), trials=2,
                                                            split_by=by, grids_path=str(grids), leakage_check=False),
                                   name=by, jobs=1)
            cell = grouped.run.summary["cells"]["tcptrace"]["knn"]
            assert cell["n"] == 2
            # Two campaigns: one left out per trial; 36 sources: grouped 80/20 splits, not one source out.
            assert cell.get("test_groups") == (["north", "south"] if by == "campaign" else None)
    cli = CliRunner().invoke(app, ["--lab", str(sqlite_lab.root), "analyze", "run", "-f", "tcptrace", "-m", "knn",
                                   "--grids", str(grids), "--split-by", "location", "--jobs", "1",
                                   "--name", "loc", "--no-report"], terminal_width=200)
    assert cli.exit_code == 1
    assert "Error: --split-by location needs captures from at least 2 locations; the data has 1" in cli.output
    campaign = CliRunner().invoke(app, ["--lab", str(sqlite_lab.root), "analyze", "run", "-f", "tcptrace", "-m",
                                        "knn", "--grids", str(grids), "--split-by", "campaign", "--jobs", "1",
                                        "--name", "camp", "--no-report"], terminal_width=200)
    assert campaign.exit_code == 0, campaign.output
    assert "Leakage: likely" in campaign.output


def test_cli_split_choices_are_the_librarys() -> None:
    from echolab.analysis.compare.splits import SPLIT_MODES
    from echolab.cli.analyze import SplitBy

    assert tuple(m.value for m in SplitBy) == SPLIT_MODES
