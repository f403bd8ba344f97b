"""The one exception family of echolab.

Library code raises a subclass of :class:`EcholabError` for every *expected*
failure (a missing lab directory, a corrupt capture, an unknown capture id...).
The CLI catches it once, at the edge, and prints ``Error: <message>`` with exit
code 1, so a user never sees a traceback for something that is not a bug.
Messages say what went wrong and what to do next.
"""


class EcholabError(Exception):
    """Base class of every expected failure; its text is shown to the user."""


class LabError(EcholabError):
    """The lab directory is missing, unreadable or not a lab."""
