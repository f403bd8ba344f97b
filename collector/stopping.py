"""Stopping a campaign politely: the first Ctrl-C finishes the capture in progress, the second aborts it."""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

log = logging.getLogger("echolab.collect")


class StopRequest:
    """First Ctrl-C or SIGTERM: finish the current capture, then stop. Second Ctrl-C: abort it.

    Inside :meth:`critical` (a capture being catalogued) the abort waits until
    the block ends, so a capture is either fully recorded or not at all.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}
        self._critical = 0
        self._abort_pending = False

    def _handler(self, signum: int, _frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            if self._critical:
                self._abort_pending = True
                return
            raise KeyboardInterrupt
        self.requested = True
        log.warning("stop requested: finishing the current capture (Ctrl-C again aborts it)")

    @contextmanager
    def critical(self) -> Iterator[None]:
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
        if not self._critical and self._abort_pending:
            self._abort_pending = False
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator["StopRequest"]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handler)
        try:
            yield self
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)


__all__ = ["StopRequest"]
