"""What every command group shares: the lab from the global options, output.

Groups import from here, never from ``echolab.cli`` (which imports them).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import typer
from rich.console import Console
from rich.table import Table

from echolab.labdir import LabDir, default_lab_path
from echolab.progress import ProgressCallback

if TYPE_CHECKING:
    from echolab.api import Lab

console = Console()
err_console = Console(stderr=True)


@dataclass
class CliState:
    """What the root callback parsed: the ``--lab`` path."""

    lab_path: Path


class EngineName(str, Enum):
    """The speech engines a command can name (echolab.prompts.synth)."""

    espeak = "espeak"
    gtts = "gtts"
    recorded = "recorded"


def get_lab(ctx: typer.Context, *, create: bool = False) -> LabDir:
    """The lab named by ``--lab`` / ``ECHOLAB_LAB`` (see echolab.labdir)."""
    state = ctx.find_object(CliState)
    return LabDir.open(state.lab_path if state else default_lab_path(), create=create)


def open_lab(ctx: typer.Context, *, create: bool = False) -> "Lab":
    """The library's :class:`~echolab.Lab` on the lab of ``--lab`` (a context manager: it closes the catalog).

    Imported here, not at the top: the root command imports this module, and ``echolab --help`` loads no
    more than it needs."""
    from echolab.api import Lab

    return Lab(get_lab(ctx, create=create))


def emit_rows(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    *,
    fmt: str = "table",
    title: str | None = None,
    whole_when_piped: bool = False,
) -> None:
    """Print *rows* as a rich table, JSON (a list of objects) or CSV.

    With *whole_when_piped*, a table printed to a pipe or a file is written as
    plain aligned columns, whole: rich would fit it to 80 columns and cut its
    cells short."""
    if fmt == "json":
        sys.stdout.write(json.dumps([{c: r.get(c) for c in columns} for r in rows], indent=2, default=str) + "\n")
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        sys.stdout.write(buf.getvalue())
    elif len(rows) > RICH_TABLE_MAX_ROWS or (whole_when_piped and not console.is_terminal):
        _plain_table(rows, columns, title)
    else:
        table = Table(title=title)
        for col in columns:
            table.add_column(col)
        for row in rows:
            table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
        console.print(table)


#: Longer listings are printed as plain aligned columns: rich lays a table out at about
#: 3 ms a row, so `catalog ls` of a 780-capture lab took over 2 s to print.
RICH_TABLE_MAX_ROWS = 100


def _plain_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None) -> None:
    cells = [["" if row.get(c) is None else str(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(col), *(len(r[i]) for r in cells)]) for i, col in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()

    out = [title] if title else []
    out += [line(columns), line(["-" * w for w in widths]), *(line(r) for r in cells)]
    sys.stdout.write("\n".join(out) + "\n")


def key_value_table(pairs: Iterable[tuple[str, Any]], title: str | None = None) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in pairs:
        table.add_row(key, "" if value is None else str(value))
    return table


@contextmanager
def rich_progress(*, enabled: bool = True, transient: bool = False,
                  stop_when_done: bool = False) -> Iterator[ProgressCallback | None]:
    """A rich progress bar per task, as the library's ``progress`` callback.

    Yields ``None`` when *enabled* is false (``--no-progress``), so the library
    reports nothing. With *stop_when_done*, each task's bar is shown only from
    its first report until it completes, so that other output (such as the
    collector's own live view) can come between tasks.
    """
    if not enabled:
        yield None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    def bars() -> Progress:
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=err_console, transient=transient)

    if stop_when_done:
        running: dict[str, tuple[Progress, Any]] = {}

        def update_one(task: str, done: int, total: int | None) -> None:
            if task not in running:
                one = bars()
                running[task] = (one, one.add_task(task, total=total))
                one.start()
            one, task_id = running[task]
            one.update(task_id, completed=done, total=total)
            if total is not None and done >= total:
                one.stop()
                del running[task]

        try:
            yield update_one
        finally:
            for one, _ in running.values():
                one.stop()
        return

    shared = bars()
    tasks: dict[str, Any] = {}

    def update(task: str, done: int, total: int | None) -> None:
        if task not in tasks:
            tasks[task] = shared.add_task(task, total=total)
        shared.update(tasks[task], completed=done, total=total)

    with shared:
        yield update
