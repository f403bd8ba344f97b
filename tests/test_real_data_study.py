"""docs/real-data-study.md runs: every command of its console blocks, in order, on crafted long captures of
two homes (tests/homes.py), with a small grids file and two trials for the comparison's commands."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from echolab.cli import app
from echolab.labdir import CATALOG_URL_ENV

from grids import write_grids
from homes import DEVICE_IP, write_homes

DOC = Path(__file__).resolve().parents[1] / "docs" / "real-data-study.md"


def doc_commands() -> list[list[str]]:
    """The ``echolab`` lines of the doc's console blocks, split as a shell would."""
    blocks = re.findall(r"```console\n(.*?)```", DOC.read_text(), flags=re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines() if line.strip()]
    assert lines and all(line.startswith("echolab ") for line in lines), lines
    return [shlex.split(line)[1:] for line in lines]


def quick(args: list[str], grids: Path) -> list[str]:
    """The comparison's commands with the test's grids file, one model and two trials; the rest as written."""
    if args[2:4] == ["analyze", "run"]:
        args = [("2" if prev == "--trials" else a) for prev, a in zip([""] + args, args)]
        return [*args, "--grids", str(grids), "-m", "random_forest", "--jobs", "1"]
    if args[2:4] == ["analyze", "train"]:
        return [*args, "--grids", str(grids)]
    return args


def test_the_walkthrough_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CATALOG_URL_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    write_homes(tmp_path, only_b=["directions"])  # a command recorded in one home only
    grids = write_grids(tmp_path, {"random_forest": {"params": {"n_estimators": 10}, "grid": {"criterion": ["gini"]}}})
    assert DEVICE_IP in DOC.read_text()
    out: dict[str, str] = {}
    for args in doc_commands():
        result = CliRunner().invoke(app, quick(args, grids))
        assert result.exit_code == 0, f"echolab {shlex.join(args)}\n{result.output}"
        out[shlex.join(args)] = result.output
    text = "\n".join(out.values())
    assert "Imported 18 captures" in text and "Imported 24 captures" in text
    assert "Note: selection: captures only; classes with 6+ captures" in text
    assert ("Note: 1 classes in only one campaign left out (--split-by campaign cannot test them on unseen "
            "campaigns): directions") in text
    assert "Leakage per feature set: tcptrace " in text
    md = (tmp_path / "by-home-report" / "summary.md").read_text()
    assert "| feature set | verdict | figures |" in md and "**Caveat:** These tests rest on 2 paired trials" in md
    assert "*study*" not in md
    assert "Scored against file names by" in text and "of 24 requests)" in text
    assert (tmp_path / "home-b.png").read_bytes()[:4] == b"\x89PNG"
