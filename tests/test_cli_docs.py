"""docs/cli.md cannot drift from the commands, and no command goes undocumented."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from typer.testing import CliRunner

from echolab.cli import app
from echolab.cli.clidoc import render, walk

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def test_cli_reference_is_up_to_date() -> None:
    assert DOC.read_text() == render(app), "docs/cli.md is stale: run `python -m echolab.cli.clidoc > docs/cli.md`"


def test_every_command_has_help_and_is_in_the_reference() -> None:
    text = DOC.read_text()
    runner = CliRunner()
    for path, cmd in walk(typer.main.get_command(app)):
        assert (cmd.help or "").strip(), f"`echolab {' '.join(path)}` has no help text"
        assert f"## `{' '.join(('echolab', *path))}`" in text
        if path:
            shown = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
            assert shown.exit_code == 0, shown.output
            for param in cmd.params:
                for opt in getattr(param, "opts", []):
                    if opt.startswith("--") and opt != "--help":
                        assert re.search(re.escape(opt) + r"\b", shown.output), f"{opt} missing from --help of {path}"
