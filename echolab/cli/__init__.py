"""The ``echolab`` command: one root Typer app composed of each group's app.

This module is the only place that knows the list of groups (:data:`GROUPS`). Each
group is a module of this package (``echolab.cli.catalog``, ``echolab.cli.prompts``, ...)
that only parses options, calls one library function and prints; it is imported when
the group is used, so the command starts quickly.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from echolab import __version__
from echolab.cli.common import CliState
from echolab.errors import EcholabError
from echolab.labdir import DEFAULT_LAB, LAB_ENV


#: The command groups, in the order ``echolab --help`` lists them: name -> (module, Typer app
#: attribute, one-line help). The only list of groups. A group's module is imported only when
#: the group runs (or its help is shown), so ``echolab --help`` and each command start quickly;
#: a test checks that each line here is the first line of the group's own help.
GROUPS: dict[str, tuple[str, str, str]] = {
    "catalog": ("echolab.cli.catalog", "app", "Browse, check, import and export the lab's capture catalog."),
    "sim": ("echolab.cli.sim", "app", "The simulated lab: an Echo and an Alexa cloud in network namespaces."),
    "prompts": ("echolab.cli.prompts", "app", "List, check and synthesize the voice prompts of each class."),
    "analyze": ("echolab.cli.analyze", "app",
                "Compare classifiers on the catalog's captures (the study's six by default), report, "
                "and train model files."),
    "features": ("echolab.cli.features", "app", "Extract the feature sets: the study's (tcptrace, histogram, "
                 "combined), the packet sequence's (sequence, kfp, cumul) and the byte flow's, which do not depend "
                 "on framing (flow, volume, timing)."),
    "defend": ("echolab.cli.defend", "app", "Apply a defense (padding, BuFLO, Tamaraw, WTF-PAD, FRONT, ...) to "
               "captures: a defended campaign of packet traces."),
    "classify": ("echolab.cli.classify", "app",
                 "Classify each request of long captures, or live traffic, with a trained model file."),
    "collect": ("echolab.cli.collect", "collect_app",
                "Collect labelled captures unattended until every class reaches its target."),
    "doctor": ("echolab.cli.collect", "doctor_app",
               "Check a real lab before a long run: capture, Echo, audio, speech, disk."),
    "demo": ("echolab.cli.demo", "app",
             "Run the whole toolkit on the simulated lab: collect, features, comparison, report."),
}


def load_group(name: str) -> typer.Typer:
    """The Typer app of command group *name* (imports its module)."""
    module, attr, _ = GROUPS[name]
    return getattr(importlib.import_module(module), attr)


class EcholabGroup(TyperGroup):
    """The root command: loads each group on first use, and turns every expected failure
    into one ``Error: ...`` line (and its ``Hint: ...``), exit 1."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(g for g in GROUPS if g not in self.commands)]

    def get_command(self, ctx: Any, name: str) -> Any:
        if name not in self.commands and name in GROUPS:
            command = typer.main.get_command(load_group(name))
            command.name = name
            self.add_command(command, name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The groups with their one-line help, without importing any of them."""
        rows = [(name, GROUPS[name][2]) for name in GROUPS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except EcholabError as exc:
            typer.echo(f"Error: {exc}", err=True)
            if exc.hint:
                typer.echo(f"Hint: {exc.hint}", err=True)
            raise typer.Exit(1) from exc


app = typer.Typer(
    cls=EcholabGroup,
    no_args_is_help=True,
    rich_markup_mode=None,  # the root's help is click's plain text: no rich import at start-up
    help="echolab: measure what encrypted smart-speaker traffic gives away.",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"echolab {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    lab: Annotated[
        Path,
        typer.Option("--lab", envvar=LAB_ENV, help="Lab directory: catalog, captures, audio cache, reports."),
    ] = DEFAULT_LAB,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """echolab: measure what encrypted smart-speaker traffic gives away."""
    ctx.obj = CliState(lab_path=lab)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
