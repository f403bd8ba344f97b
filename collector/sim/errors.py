"""The named failures of the simulated lab, each with what to do next."""

from __future__ import annotations

from echolab.errors import EcholabError


class SimError(EcholabError):
    """The simulated lab could not do what was asked."""


class NamespaceUnavailable(SimError):
    """Network namespaces cannot be made here (not root, no iproute2, no CAP_SYS_ADMIN)."""


class SimNotRunning(SimError):
    """No simulated lab is up under this prefix."""


class EchoBusy(SimError):
    """The simulated Echo is still answering the previous request."""


class ParamsError(SimError):
    """The parameter file cannot be read or holds an invalid value."""
