"""The report folder: index.html and summary.md with the study-shaped tables and plots."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from echolab.analysis.compare.report import ReportError, study_results, write_report
from echolab.analysis.compare.runner import run_analysis
from echolab.analysis.compare.synthetic import synthetic_source
from echolab.analysis.compare.specs import FeatureSpec, RunSettings, study_features
from echolab.db.catalog import Catalog
from echolab.db.records import AnalysisRun
from echolab.labdir import LabDir

from grids import write_grids


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, AnalysisRun]:
    root = tmp_path_factory.mktemp("rep")
    grids = write_grids(root, {"decision_tree": {"grid": {"criterion": ["gini", "entropy"]}},
                               "random_forest": {"params": {"n_estimators": 6}, "grid": {"max_features": ["sqrt"]}}})
    # Two histogram configurations besides the study's sets make a (small) Table I.
    features = study_features() + (FeatureSpec.of("histogram", bins=5, include_acks=True),
                                   FeatureSpec.of("histogram", bins=5, include_acks=False))
    with Catalog.open(LabDir.open(root / "lab", create=True)) as cat:
        res = run_analysis(cat, synthetic_source(8, campaigns=2), RunSettings(features=features, trials=2,
                           grids_path=str(grids)), name="rep", jobs=1)
        out = write_report(res.run, cat.lab.reports_dir / "rep")
        return out.parent, res.run


def test_report_files_exist(report_dir) -> None:
    folder, _ = report_dir
    for name in ("index.html", "summary.md", "summary.json", "accuracy.png", "vs-study.png",
                 "confusion-tcptrace.png", "importance-combined.png"):
        assert (folder / name).stat().st_size > 200, name
    assert (folder / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_md_has_the_studys_tables_with_its_numbers_labelled(report_dir) -> None:
    folder, run = report_dir
    md = (folder / "summary.md").read_text()
    assert "## Accuracy (%), mean / std / median (Table II)" in md
    assert "| features | DT | RF |" in md
    study = study_results()
    rf = study["table2"]["tcptrace"]["random_forest"]
    assert f"| *study* | *{study['table2']['tcptrace']['decision_tree'][0]:.2f}/" in md
    assert f"*{rf[0]:.2f}/{rf[1]:.2f}/{rf[2]:.2f}*" in md
    cell = run.summary["cells"]["combined"]["random_forest"]
    # Ours: mean (bold when the best of its row) / std / median.
    assert re.search(rf"\| combined \|.*\*{{0,2}}{cell['mean']:.2f}\*{{0,2}}/{cell['std']:.2f}/{cell['median']:.2f} \|", md)
    assert "## Histogram bins, random forest, mean accuracy % (Table I)" in md
    assert "| 5 |" in md and "85.16" in md  # the study's 5-bin with-ACK number beside ours
    assert "| 15 | - |" in md and "93.21" in md  # plain "histogram" is 15 bins without ACKs
    assert "## Significance: between feature sets" in md and "tcptrace vs combined" in md
    assert "## Chosen hyper-parameters" in md and "max_features: sqrt (2)" in md


def test_index_html_embeds_plots_and_tables(report_dir) -> None:
    folder, run = report_dir
    html = (folder / "index.html").read_text()
    assert html.count("data:image/png;base64,") >= 5
    assert "the study&#39;s published numbers" in html or "the study's published numbers" in html
    assert run.fingerprint in html
    assert "Best model against each other model" in html
    assert "<th>information</th>" in html


def test_first_screen_says_where_the_data_came_from_and_the_leakage_verdict(report_dir) -> None:
    folder, _ = report_dir
    md = (folder / "summary.md").read_text()
    head = md.split("## Data")[0]
    assert "Where the data came from: 48 synthetic feature rows: random numbers shaped like features" in head
    assert "not a real Echo; the study's numbers below are the study's" in head
    assert "nothing here was tuned to match them" in head
    verdicts = [line for line in md.splitlines() if line.startswith("Leakage: ")]
    assert verdicts and verdicts[0] in ("Leakage: likely", "Leakage: unlikely", "Leakage: unknown")
    html = (folder / "index.html").read_text()
    assert html.index("Where the data came from") < html.index('id="table2"')


def test_report_refuses_a_run_without_results() -> None:
    with pytest.raises(ReportError, match="has no results yet"):
        write_report(AnalysisRun(name="x", status="running"), Path("/nonexistent"))


def test_report_is_written_again_only_when_something_changed(report_dir) -> None:
    folder, run = report_dir
    page = folder / "index.html"
    before = page.stat().st_mtime_ns
    assert write_report(run, folder) == page and page.stat().st_mtime_ns == before  # unchanged: left alone
    (folder / "accuracy.png").unlink()
    write_report(run, folder)  # a missing plot: written again
    assert (folder / "accuracy.png").is_file() and page.stat().st_mtime_ns > before
    again = page.stat().st_mtime_ns
    write_report(run, folder, force=True)
    assert page.stat().st_mtime_ns > again
    forced = page.stat().st_mtime_ns
    run.summary = {**run.summary, "n_captures": run.summary["n_captures"] + 1}  # the stored run changed
    write_report(run, folder)
    assert page.stat().st_mtime_ns > forced


def test_plots_leave_matplotlib_state_alone(report_dir, tmp_path: Path) -> None:
    """Writing a report neither imports pyplot nor switches the backend a notebook chose."""
    import os
    import subprocess
    import sys

    folder, _ = report_dir
    code = (
        "import json, sys\n"
        "import matplotlib\n"
        "from echolab.analysis.compare.report import write_report\n"
        "from echolab.db.records import AnalysisRun\n"
        f"d = json.load(open({str(folder / 'summary.json')!r}))\n"
        "run = AnalysisRun(name=d['name'], status='done', settings=d['settings'], versions=d['versions'],\n"
        "                  fingerprint=d['fingerprint'], summary=d['summary'])\n"
        f"write_report(run, {str(tmp_path / 'again')!r})\n"
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "MPLBACKEND": "svg"})
    assert out.stdout.split() == ["svg", "False"], out.stdout + out.stderr
    assert (tmp_path / "again" / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
