"""The one exception family of echolab.

Library code raises a subclass of :class:`EcholabError` for every *expected*
failure (a missing lab directory, a corrupt capture, an unknown capture id...).
The message describes the problem in the library's own terms, so it reads the
same in a notebook and at a terminal. An error may carry a ``hint``: what to do
next, which the CLI prints after the message (``Error: ...`` then ``Hint: ...``,
exit code 1), so a user never sees a traceback for something that is not a bug.
"""

from __future__ import annotations

import importlib

#: The distribution that installs the ``echolab`` package (``echolab`` on PyPI is another project).
DISTRIBUTION = "echolab-toolkit"


def clipped(text: str, limit: int = 60) -> str:
    """*text* cut to *limit* characters (its end shown as ``...``), so a value from a file fits an error line."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def shown(value: object) -> str:
    """``repr(value)`` clipped (:func:`clipped`): how an error line quotes a value read from a file."""
    return clipped(repr(value))


class EcholabError(Exception):
    """Base class of every expected failure; its text is shown to the user."""

    def __init__(self, message: str = "", *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class LabError(EcholabError):
    """The lab directory is missing, unreadable or not a lab."""


class MissingExtra(EcholabError):
    """An optional part of echolab is used without the packages it needs."""


def require(module: str, extra: str, what: str) -> None:
    """Raise :class:`MissingExtra` naming the extra to install when *module* cannot be imported."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{what} needs the '{module}' package, which is not installed: "
                           f"pip install '{DISTRIBUTION}[{extra}]'") from None
