"""Generate docs/cli.md, the CLI reference, from the command tree itself.

``python -m echolab.cli.clidoc > docs/cli.md`` rewrites it; a test fails when the
committed page differs from what the code says, or when a command has no help.
"""

from __future__ import annotations

import sys
from typing import Any, Iterator

import typer

HEADER = """# CLI reference

Generated from the commands' own help by `python -m echolab.cli.clidoc > docs/cli.md`;
`tests/test_cli_docs.py` fails when this page and `echolab --help` disagree.
Every command accepts `--help`.
"""


def subcommands(command: Any) -> dict[str, Any]:
    """A group's commands by name, loading the groups the root loads on demand."""
    if not hasattr(command, "list_commands"):
        return {}
    ctx = typer.Context(command)
    return {name: command.get_command(ctx, name) for name in command.list_commands(ctx)}


def walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command of the tree, depth first, groups before their commands."""
    yield path, command
    subs = subcommands(command)
    for name in sorted(subs):
        if getattr(subs[name], "hidden", False):
            continue
        yield from walk(subs[name], (*path, name))


def _param_line(param: Any) -> str | None:
    if getattr(param, "hidden", False) or param.name in ("help", "install_completion", "show_completion"):
        return None
    if param.param_type_name == "argument":
        name = f"`{(param.metavar or param.name).upper()}`"
        kind = "argument, required" if param.required else "argument"
    else:
        name = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
        kind = "option"
        if getattr(param, "envvar", None):
            kind += f", env `{param.envvar}`"
    help_text = (getattr(param, "help", None) or "").strip()
    default = param.default
    if param.param_type_name == "option" and not getattr(param, "is_flag", False) and default not in (None, (), []):
        default = getattr(default, "value", default)
        help_text += f" Default: `{default}`."
    return f"- {name} ({kind}): {help_text}".rstrip()


def render(app: typer.Typer) -> str:
    root = typer.main.get_command(app)
    out = [HEADER]
    for path, cmd in walk(root):
        title = " ".join(("echolab", *path))
        out.append(f"\n## `{title}`\n")
        help_text = (cmd.help or "").strip()
        out.append((help_text.split("\n\n")[0] if help_text else "") + "\n")
        lines = [line for p in cmd.params if (line := _param_line(p))]
        if lines:
            out.append("\n" + "\n".join(lines) + "\n")
        subs = sorted(subcommands(cmd))
        if subs:
            out.append("\nCommands: " + ", ".join(f"`{s}`" for s in subs) + ".\n")
    return "".join(out)


def main() -> None:
    from echolab.cli import app

    sys.stdout.write(render(app))


if __name__ == "__main__":
    main()
