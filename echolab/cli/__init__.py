"""The ``echolab`` command: one root Typer app composed of each group's app.

This module is the only place that knows the list of groups. Each group lives
with the library it drives (``echolab.cli.catalog``, ``echolab.cli.prompts``, ...) and only parses
options, calls one library function and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from echolab import __version__
from echolab.cli.common import CliState
from echolab.errors import EcholabError
from echolab.labdir import DEFAULT_LAB, LAB_ENV


class EcholabGroup(TyperGroup):
    """Turns every expected failure into one ``Error: ...`` line, exit 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except EcholabError as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(1) from exc


app = typer.Typer(
    cls=EcholabGroup,
    no_args_is_help=True,
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


def _compose() -> None:
    from echolab.cli.catalog import app as catalog_app

    app.add_typer(catalog_app, name="catalog")
    from echolab.cli.sim import app as sim_app

    app.add_typer(sim_app, name="sim")
    from echolab.cli.prompts import app as prompts_app

    app.add_typer(prompts_app, name="prompts")
    from echolab.cli.analyze import app as analyze_app

    app.add_typer(analyze_app, name="analyze")
    from echolab.cli.features import app as features_app

    app.add_typer(features_app, name="features")
    from echolab.cli.collect import collect_app, doctor_app

    app.add_typer(collect_app, name="collect")
    app.add_typer(doctor_app, name="doctor")
    from echolab.cli.demo import app as demo_app

    app.add_typer(demo_app, name="demo")


_compose()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
