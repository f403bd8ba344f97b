"""Files of the catalog: hashing and the copy-then-point discipline.

A capture file enters the lab under its final name only when it is complete:
it is copied to ``NAME.part`` beside its final place, flushed to disk, and
renamed. A row points at it only after that, and a source the caller asked
to move is deleted only once the row is committed (see Catalog.add_capture).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Iterable

from echolab.errors import EcholabError

CHUNK = 1 << 20
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")
PART_SUFFIX = ".part"


class StorageError(EcholabError):
    """A capture file could not be written into the lab (disk full, permissions)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def place_file(src: Path, dest: Path) -> None:
    """Copy *src* to *dest* atomically: to a ``.part`` file, flushed, renamed, directory flushed.

    On any failure nothing is left at *dest* nor at the ``.part`` name, and
    *src* is untouched.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + PART_SUFFIX)
    renamed = False
    try:
        shutil.copyfile(src, part)
        with open(part, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(part, dest)
        renamed = True
        dir_fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a power loss
        finally:
            os.close(dir_fd)
    except OSError as exc:
        part.unlink(missing_ok=True)
        if renamed:
            dest.unlink(missing_ok=True)
        raise StorageError(f"cannot write {dest}: {exc.strerror or exc}") from exc


def is_capture_name(path: Path) -> bool:
    return path.suffix.lower() in CAPTURE_SUFFIXES


def capture_files(given: Iterable[Path | str]) -> list[Path]:
    """Each of *given* in order: a folder stands for its capture files (sorted, sub-folders too), a file for itself."""
    files: list[Path] = []
    for path in map(Path, given):
        files += sorted(p for p in path.rglob("*") if p.is_file() and is_capture_name(p)) if path.is_dir() \
            else [path]
    return files
