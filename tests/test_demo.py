"""`echolab demo` end to end on the simulated lab, small, and its resume."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from echolab.db.catalog import Catalog
from echolab.cli import app
from echolab.labdir import CATALOG_URL_ENV, LabDir

pytestmark = pytest.mark.netns


def test_demo_small_then_rerun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    monkeypatch.delenv(CATALOG_URL_ENV, raising=False)
    root = tmp_path / "demo-lab"
    args = ["--lab", str(root), "demo", "--per-class", "5", "--trials", "1", "--jobs", "1"]
    first = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    report = root / "reports" / "demo-5x1-seed0" / "index.html"
    assert report.is_file() and (report.parent / "summary.md").is_file()
    assert "Report: " in first.output and "DT" in first.output and "RF" in first.output
    html = report.read_text()
    assert "tcptrace" in html and "histogram" in html and "combined" in html
    with Catalog.open(LabDir.open(root)) as cat:
        caps = cat.captures()
        assert len(caps) == 30 and {c.label for c in caps} == {
            "information", "quotes", "weather", "directions", "music", "unintelligible"}
        (camp,) = cat.campaigns()
        assert (camp.name, camp.status) == ("demo-sim-5-seed0", "done")
    assert not any(p.startswith("echolab-demo") for p in os.popen("ip netns list").read().split())
    # a rerun resumes: nothing new is collected, the trials come from the cache
    second = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert second.exit_code == 0, second.output
    assert "0 trials computed" in second.output
    with Catalog.open(LabDir.open(root)) as cat:
        assert len(cat.captures()) == 30 and len(cat.campaigns()) == 1


def test_two_demos_take_separate_simulated_labs(tmp_path: Path) -> None:
    """A second demo on the machine gets its own prefix; a prefix frees when its demo ends or dies."""
    import signal
    import subprocess
    import sys

    from echolab.demo import DEMO_SIM_PREFIX, demo_sim_prefix

    with demo_sim_prefix(tmp_path) as first, demo_sim_prefix(tmp_path) as second:
        assert (first, second) == (DEMO_SIM_PREFIX, f"{DEMO_SIM_PREFIX}2")
    with demo_sim_prefix(tmp_path) as again:
        assert again == DEMO_SIM_PREFIX
    holder = subprocess.Popen(  # another demo, killed while it holds the first prefix
        [sys.executable, "-P", "-c", "import sys, time; from echolab.demo import demo_sim_prefix\n"
         f"with demo_sim_prefix({str(tmp_path)!r}) as p:\n print(p, flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == DEMO_SIM_PREFIX
        with demo_sim_prefix(tmp_path) as taken:
            assert taken == f"{DEMO_SIM_PREFIX}2"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with demo_sim_prefix(tmp_path) as freed:
        assert freed == DEMO_SIM_PREFIX
