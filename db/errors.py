"""The catalog's errors: one family under :class:`echolab.errors.EcholabError`."""

from __future__ import annotations

from echolab.errors import EcholabError


class CatalogError(EcholabError):
    """The catalog cannot be opened or a request to it cannot be met."""


class UnknownCaptureError(CatalogError):
    pass


class DuplicateCaptureError(CatalogError):
    """The catalog already holds a capture with this content (``add_capture(..., unique=True)``)."""


class CatalogBusyError(CatalogError):
    """Another process held the catalog's write lock for longer than the lock timeout."""



class UnknownRunError(CatalogError):
    """No analysis run has the name or id asked for."""



__all__ = ["CatalogBusyError", "CatalogError", "DuplicateCaptureError", "UnknownCaptureError", "UnknownRunError"]
