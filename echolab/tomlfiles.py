"""Reading a TOML file that may come from someone else: one place, one-line errors, never a traceback.

Grids files, household profiles, simulation parameters and lab settings are
TOML that labs share. :func:`read_toml` turns everything that can go wrong
reading one into the caller's error class with one line naming the file: a
file too large to be one (:data:`MAX_TOML_BYTES`), one that cannot be read,
text that is not UTF-8, invalid TOML, and nesting deep enough to exhaust
Python's recursion limit in :mod:`tomllib` (a few thousand ``[`` are enough).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from echolab.errors import EcholabError

#: The largest TOML file read (the shipped grids file is about 6 KB).
MAX_TOML_BYTES = 4 << 20


def read_toml(path: Path | str, what: str, error: type[EcholabError] = EcholabError) -> dict[str, Any]:
    """The TOML document at *path*; *error* with one line starting with *what* and the path when it is not one."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_TOML_BYTES:
            raise error(f"{what} {path} is {size // 1024} KB, over the {MAX_TOML_BYTES >> 20} MB a TOML file "
                        "of settings may be")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"cannot read {what} {path}: it is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise error(f"{what} {path} is not valid TOML: it nests too deep") from None
