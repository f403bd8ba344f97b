"""Progress of long library work, as an opt-in callback.

Library functions that take a while (building features, a comparison, synthesizing
speech, a collection campaign) accept ``progress=None``. When the caller passes a
callable, it is called as ``progress(task, done, total)``: *task* names the step
("features", "trials", ...), *done* counts finished units and *total* is the number
expected (``None`` when unknown). The library draws nothing itself: the CLI passes a
rich progress bar (``echolab.cli.common.rich_progress``), a notebook may pass
``print`` or nothing at all.
"""

from __future__ import annotations

from typing import Callable, Optional

#: ``progress(task, done, total)``; see the module docstring.
ProgressCallback = Callable[[str, int, Optional[int]], None]


def notify(progress: ProgressCallback | None, task: str, done: int, total: int | None) -> None:
    """Call *progress* if the caller gave one."""
    if progress is not None:
        progress(task, done, total)
