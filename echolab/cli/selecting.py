"""The options that choose a job's captures, shared by ``analyze run``, ``analyze train`` and ``catalog export``.

Each becomes a field of one ``echolab.db.selection.Selection`` (:func:`selection`),
which the library's jobs take; the choices of ``--kind`` are the selection's ``KINDS``.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from echolab.db.selection import Selection


class Kind(str, Enum):  # echolab.db.selection.KINDS (a test keeps them equal)
    capture = "capture"
    trace = "trace"


Campaigns = Annotated[Optional[list[str]], typer.Option(
    "--campaign", "-c", help="Only captures of this campaign (name or id), repeatable. Default: every campaign.")]
Labels = Annotated[Optional[list[str]], typer.Option(
    "--label", "--class", help="Only captures of this class, repeatable.")]
ExcludeLabels = Annotated[Optional[list[str]], typer.Option(
    "--exclude-label", help="Leave out this class, repeatable.")]
MinPerClass = Annotated[Optional[int], typer.Option(
    help="Leave out classes with fewer captures than this (the run's notes name them).", min=1)]
Kinds = Annotated[Optional[Kind], typer.Option(
    "--kind", help="Only pcap/pcapng captures (capture) or only packet traces (trace).")]


def selection(campaigns: Optional[list[str]] = None, labels: Optional[list[str]] = None,
              exclude_labels: Optional[list[str]] = None, min_per_class: Optional[int] = None,
              kind: Optional[Kind] = None, status: Optional[str] = "ok") -> "Selection":
    """The library's selection for these options."""
    from echolab.api import Lab

    return Lab.selection(campaigns=campaigns or (), labels=labels or (), exclude_labels=exclude_labels or (),
                         min_per_class=min_per_class, kind=kind.value if kind else None, status=status)
