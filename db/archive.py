"""Unpacking a catalog export under echolab's own rules, whatever the Python version.

An export (``echolab catalog export FILE.tar.gz``) is a tar whose first
member is ``manifest.csv`` and whose other members are the capture files the
manifest lists, nothing else. A tar from elsewhere is data from someone else,
so :func:`extract_export` does not trust ``tarfile``'s own filters (links
chained past the path limit escaped ``filter="data"`` before Python 3.11.13,
CVE-2025-4517); it writes member by member:

* regular files and folders only: links of any kind, devices and fifos are refused;
* every name relative, without ``..``, and written inside the target through
  folders this function made itself, each file opened with ``O_EXCL|O_NOFOLLOW``;
* the manifest first and bounded (:data:`MAX_MANIFEST_BYTES`); every other
  file must be a row of it, with the size the manifest gives, so nothing the
  manifest does not announce is written and the total is known before the
  first capture is (and checked against the free space);
* counts and sizes bounded (:data:`MAX_MEMBERS`, :data:`MAX_MEMBER_BYTES`);
  a truncated or damaged archive is one line, not a traceback.

Anything refused raises :class:`ArchiveError` (one line naming the archive
and the problem); the caller unpacks into a temporary folder that goes away
with it, so a refused archive leaves the lab as it was.
"""

from __future__ import annotations

import csv
import io
import lzma
import os
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from echolab.db.catalog import CatalogError

MANIFEST_NAME = "manifest.csv"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024  # a manifest row is ~300 bytes: room for 200,000 captures
MAX_MEMBERS = 500_000
MAX_MEMBER_BYTES = 4 * 1024**3  # one capture file
MAX_FIELD_BYTES = 64 * 1024  # one manifest field
#: The most an archive may unpack to: 100 times its own size (captures compress 2-5 times), at least 64 MiB.
MAX_RATIO, MIN_ALLOWANCE = 100, 64 * 1024 * 1024
_CHUNK = 1024 * 1024
_DAMAGED = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError, ValueError)


class ArchiveError(CatalogError):
    """An archive that echolab will not unpack (not an export, damaged, links, too big)."""


def is_tar(path: Path) -> bool:
    """Whether *path* looks like a tar (plain, gzip, bzip2 or xz); a damaged one still counts."""
    import bz2
    import gzip

    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
        opener = {b"\x1f\x8b": gzip.open, b"BZ": bz2.open, b"\xfd7": lzma.open}.get(head[:2])
        with (opener or open)(path, "rb") as fh:
            block = fh.read(512)
    except (OSError, EOFError, lzma.LZMAError, zlib.error):
        return opener is not None and "tar" in Path(path).name.lower()  # damaged: its name says what it was
    return len(block) == 512 and (block[257:262] == b"ustar" or _checksum_ok(block))


def _checksum_ok(block: bytes) -> bool:
    """Whether *block* is a tar header by its checksum (an old v7 tar has no ``ustar`` magic)."""
    try:
        stored = int(block[148:156].split(b"\0")[0].strip() or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(block[:148]) + 8 * 32 + sum(block[156:])


def member_name(name: str, source: Path) -> PurePosixPath:
    """A member's name as a relative path inside the target; :class:`ArchiveError` otherwise."""
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or "\\" in name or "\x00" in name or any(p in ("..", "") for p in pure.parts):
        raise ArchiveError(f"{source} holds a member named {name[:200]!r}, outside the folder it unpacks to; "
                           "an echolab export never does")
    parts = [p for p in pure.parts if p != "."]
    if not parts:
        raise ArchiveError(f"{source} holds a member named {name[:200]!r}, which names no file")
    return PurePosixPath(*parts)


def extract_export(source: Path, target: Path) -> Path:
    """Unpack the catalog export *source* into the empty folder *target*; return its manifest's path."""
    try:
        with tarfile.open(source, mode="r:*") as tar:
            return _extract(tar, source, target)
    except ArchiveError:
        raise
    except _DAMAGED as exc:
        raise ArchiveError(f"cannot unpack {source}: it is damaged or truncated "
                           f"({type(exc).__name__}: {str(exc)[:200] or 'unexpected end'})") from None


def _extract(tar: tarfile.TarFile, source: Path, target: Path) -> Path:
    target = Path(target)
    members = 0
    expected: dict[PurePosixPath, int] | None = None
    manifest = target / MANIFEST_NAME
    for info in tar:  # streamed: one member at a time, never the whole index first
        members += 1
        if members > MAX_MEMBERS:
            raise ArchiveError(f"{source} holds more than {MAX_MEMBERS} members; an echolab export holds one per "
                               "capture plus its manifest")
        name = member_name(info.name, source)
        if not (info.isreg() or info.isdir()):
            kind = "link" if info.issym() or info.islnk() else "device or special file"
            raise ArchiveError(f"{source} holds a {kind} ({info.name[:200]!r}); an echolab export holds regular "
                               "files only, so nothing was imported")
        if expected is None:
            if name != PurePosixPath(MANIFEST_NAME) or not info.isreg():
                raise ArchiveError(f"{source} does not start with {MANIFEST_NAME}: it is not an export of an "
                                   "echolab catalog ('echolab catalog export FILE.tar.gz' writes one)")
            if info.size > MAX_MANIFEST_BYTES:
                raise ArchiveError(f"{source}: its {MANIFEST_NAME} is {info.size} bytes, over the limit of "
                                   f"{MAX_MANIFEST_BYTES}")
            data = _read_member(tar, info, source)
            expected = _announced(data, source)
            _room(sum(expected.values()), target, source)
            _write(target, name, io.BytesIO(data), len(data), source)
            continue
        if info.isdir():
            continue  # folders are made as the files in them are written
        size = expected.pop(name, None)
        if size is None:
            raise ArchiveError(f"{source} holds {info.name[:200]!r}, which its {MANIFEST_NAME} does not list "
                               "(twice, or not at all); nothing was imported")
        if info.size != size or info.size > MAX_MEMBER_BYTES:
            raise ArchiveError(f"{source}: {info.name[:200]!r} is {info.size} bytes; its {MANIFEST_NAME} says "
                               f"{size}")
        fh = tar.extractfile(info)
        if fh is None:
            raise ArchiveError(f"cannot read {info.name[:200]!r} in {source}")
        _write(target, name, fh, info.size, source)
    if expected is None:
        raise ArchiveError(f"{source} has no {MANIFEST_NAME}: it is not an export of an echolab catalog "
                           "('echolab catalog export FILE.tar.gz' writes one)")
    return manifest


def _read_member(tar: tarfile.TarFile, info: tarfile.TarInfo, source: Path) -> bytes:
    fh = tar.extractfile(info)
    if fh is None:
        raise ArchiveError(f"cannot read {info.name!r} in {source}")
    data = fh.read(MAX_MANIFEST_BYTES + 1)
    if len(data) != info.size:
        raise ArchiveError(f"cannot unpack {source}: it is truncated inside {info.name!r}")
    return data


def _announced(data: bytes, source: Path) -> dict[PurePosixPath, int]:
    """The files the manifest lists and their sizes (an export's ``path`` and ``size_bytes`` columns)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArchiveError(f"{source}: its {MANIFEST_NAME} is not UTF-8 text (byte {exc.start})") from None
    out: dict[PurePosixPath, int] = {}
    old_limit = csv.field_size_limit()
    csv.field_size_limit(MAX_FIELD_BYTES)
    try:
        for line, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2):
            path = (row.get("path") or "").strip()
            if not path:
                continue
            try:
                size = int(row.get("size_bytes") or "")
            except ValueError:
                raise ArchiveError(f"{source}: line {line} of its {MANIFEST_NAME} gives no size_bytes for "
                                   f"{path[:200]!r}") from None
            if not 0 <= size <= MAX_MEMBER_BYTES:
                raise ArchiveError(f"{source}: line {line} of its {MANIFEST_NAME} gives {path[:200]!r} a size of "
                                   f"{size} bytes (at most {MAX_MEMBER_BYTES})")
            out[member_name(path, source)] = size
    except csv.Error as exc:
        raise ArchiveError(f"{source}: its {MANIFEST_NAME} is not a readable CSV ({exc})") from None
    finally:
        csv.field_size_limit(old_limit)
    return out


def _room(total: int, target: Path, source: Path) -> None:
    allowed = max(MIN_ALLOWANCE, MAX_RATIO * source.stat().st_size)
    if total > allowed:
        raise ArchiveError(f"{source} would unpack to {total} bytes, over {MAX_RATIO} times its own size; "
                           "an echolab export of captures does not compress that well, so nothing was imported")
    free = shutil.disk_usage(target).free
    if total > free:
        raise ArchiveError(f"{source} would unpack to {total} bytes; {target} has {free} free")


def _write(target: Path, name: PurePosixPath, data: io.IOBase, size: int, source: Path) -> None:
    """Write one member below *target*, through folders made here, never through a link."""
    folder = target
    for part in name.parts[:-1]:
        folder = folder / part
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise ArchiveError(f"{source}: {name} would be written through {part!r}, which is not a folder")
        folder.mkdir(exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(folder / name.name, flags, 0o644)
    except FileExistsError:
        raise ArchiveError(f"{source} holds {name} twice; an echolab export holds each file once") from None
    written = 0
    with os.fdopen(fd, "wb") as out:
        while written < size:
            chunk = data.read(min(_CHUNK, size - written))
            if not chunk:
                raise ArchiveError(f"cannot unpack {source}: it is truncated inside {name}")
            out.write(chunk)
            written += len(chunk)


__all__ = ["ArchiveError", "MANIFEST_NAME", "extract_export", "is_tar", "member_name"]
