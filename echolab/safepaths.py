"""Names that become paths, and paths that must stay where they came from.

Labs share what they make (catalog exports, manifests, folders of captures,
settings), so a name or path read from one is data from someone else. Two
rules hold everywhere in echolab, and this module is the one place that
implements them:

* a name that becomes one path component (a campaign, a class label, an
  analysis run, a source file's stem) goes through :func:`safe_component`:
  characters outside ``A-Z a-z 0-9 . _ -`` become ``-``; a name that holds a
  path separator, is only dots (``.``, ``..``) or is longer than
  :data:`MAX_COMPONENT` is refused;
* a path read from a manifest, a folder or a setting goes through
  :func:`contained`: it is resolved (symbolic links followed) and must stay
  inside the folder it came with, so a link or a ``../`` cannot reach out.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from echolab.errors import EcholabError, clipped

#: The longest name kept as one path component (file systems allow 255 bytes; room is left for suffixes).
MAX_COMPONENT = 120

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class UnsafePathError(EcholabError):
    """A name or a path from a lab's data would leave the place it belongs to."""


def safe_component(text: str, what: str = "name") -> str:
    """*text* as one file-system-safe path component; :class:`UnsafePathError` when it cannot be one.

    ``what is the weather`` becomes ``what-is-the-weather``; ``..``, ``.``, an
    empty name and one over :data:`MAX_COMPONENT` characters are refused with
    one line naming *what* it is (``campaign``, ``label``, ``run``...).
    """
    shown = clipped(text)
    if len(text) > MAX_COMPONENT:
        raise UnsafePathError(f"{what} {shown!r} is {len(text)} characters long; the limit is {MAX_COMPONENT}")
    if any(c in text for c in "/\\\0"):
        raise UnsafePathError(f"{what} {shown!r} cannot be used: it holds a path separator, so it would name "
                              "a folder elsewhere")
    safe = _UNSAFE.sub("-", text).strip("-")
    if not safe:
        raise UnsafePathError(f"{what} {shown!r} has no letter or digit to name a folder or file by")
    if set(safe) == {"."}:
        raise UnsafePathError(f"{what} {shown!r} cannot be used: it would name a folder above or at its place")
    return safe


def check_component(text: str, what: str = "name") -> str:
    """*text* unchanged when :func:`safe_component` accepts it, else :class:`UnsafePathError`."""
    safe_component(text, what)
    return text


def is_inside(path: Path | str, root: Path | str) -> bool:
    """Whether *path*, resolved (links followed), is *root* or below it."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def contained(path: Path | str, root: Path | str, what: str = "path") -> Path:
    """*path* resolved, when it stays inside *root* (links followed); else :class:`UnsafePathError`.

    A relative *path* is taken relative to *root*.
    """
    base = Path(os.path.realpath(root))
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = base / candidate
    real = Path(os.path.realpath(candidate))
    if not is_inside(real, base):
        raise UnsafePathError(f"{what} {str(path)!r} leads outside {base} (to {real}); "
                              "only files inside it are read")
    return real


__all__ = ["MAX_COMPONENT", "UnsafePathError", "check_component", "contained", "is_inside", "safe_component"]
