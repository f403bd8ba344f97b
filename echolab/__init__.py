"""echolab: measure what encrypted smart-speaker traffic gives away.

Start from :class:`echolab.Lab` (``from echolab import Lab``): it opens a lab
directory and its catalog and offers the captures, feature tables, the
classifier comparison and its report. The parts below it are importable on their
own, each layer importing only the ones beneath (docs/architecture.md):
``echolab.errors`` and ``echolab.labdir``; ``echolab.captures`` (the pcap reader
and the long-capture splitter); ``echolab.db`` (the catalog);
``echolab.prompts`` and ``echolab.analysis.features``; ``echolab.collector`` and
``echolab.analysis.compare``; ``echolab.demo``; and the command line,
``echolab.cli``. Importing ``echolab`` loads nothing else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Lab", "__version__"]

if TYPE_CHECKING:
    from echolab.api import Lab


def __getattr__(name: str) -> Any:
    if name == "Lab":  # loaded on first use, so `import echolab` stays free of side effects
        return importlib.import_module("echolab.api").Lab
    raise AttributeError(f"module 'echolab' has no attribute {name!r}")
