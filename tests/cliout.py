"""Running a command as a user would and reading its answer: no traceback, at most one ``Error:`` line."""

from __future__ import annotations

from typer.testing import CliRunner

from echolab.cli import app
from echolab.labdir import LabDir

runner = CliRunner()


def run_cli(lab: LabDir | None, *args: str, width: int | None = None) -> tuple[int, str]:
    """(exit code, output) of ``echolab [--lab LAB] ARGS``; fails the test on a traceback or an uncaught exception."""
    res = runner.invoke(app, [*(["--lab", str(lab.root)] if lab else []), *args], terminal_width=width)
    assert "Traceback" not in res.output and "Aborted" not in res.output, res.output
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), repr(res.exception)
    return res.exit_code, res.output


def one_error(output: str) -> str:
    """The one ``Error: ...`` line of *output* (fails the test when there is not exactly one)."""
    lines = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, output
    return lines[0]
