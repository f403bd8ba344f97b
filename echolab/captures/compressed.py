"""Captures kept gzip-compressed (``NAME.pcap.gz``), as public data sets ship them.

The reader walks plain files in place, and the cut copies byte ranges out of
them, so a compressed capture is unpacked once into a scratch folder and read
from there: :func:`unpacked` gives the plain file for as long as it is needed.
A file cut short inside the gzip stream gives what it held up to the break,
and says so (``Unpacked.cut_short``), as a pcap cut short does.
"""

from __future__ import annotations

import shutil
import tempfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from echolab.captures.reader import CaptureError

CHUNK = 1 << 20

#: A capture unpacks to at most this many times its compressed size (encrypted traffic barely compresses;
#: a gzip bomb of zeros inflates about a thousand times) ...
MAX_INFLATION = 100
#: ... but always to at least this many bytes (a small capture of mostly headers compresses well) ...
MIN_UNPACKED_LIMIT = 64 << 20
#: ... and never to more than this many bytes, nor to more than the scratch folder's free space.
MAX_UNPACKED_BYTES = 4 << 30

#: The capture names that are read through gzip.
GZIP_CAPTURE_SUFFIXES = (".pcap.gz", ".pcapng.gz", ".cap.gz")


def is_gzip_capture(path: Path | str) -> bool:
    """Whether *path* is named as a gzip-compressed capture (``.pcap.gz``, ``.pcapng.gz``, ``.cap.gz``)."""
    return Path(path).name.lower().endswith(GZIP_CAPTURE_SUFFIXES)


def plain_name(path: Path | str) -> str:
    """The name of the capture inside: ``a.pcap.gz`` -> ``a.pcap``."""
    name = Path(path).name
    return name[:-3] if name.lower().endswith(".gz") else name


@dataclass
class Unpacked:
    """A compressed capture unpacked: the plain file, and whether the gzip stream broke off."""

    path: Path
    cut_short: str | None = None


@contextmanager
def unpacked(path: Path | str, scratch: Path | str | None = None) -> Iterator[Unpacked]:
    """The plain capture inside the gzip file *path*, in a scratch folder removed afterwards.

    Raises :class:`CaptureError` when *path* is not gzip data at all. A stream
    that ends early (a download cut short) keeps what was unpacked and says so.
    """
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        yield unpack_to(path, Path(tmp))


def unpack_to(path: Path | str, folder: Path) -> Unpacked:
    """Unpack the gzip file *path* into *folder* (a name not taken there); see :func:`unpacked`.

    Refuses (:class:`CaptureError`, nothing left behind) a file that would unpack to more than
    :func:`unpack_limit` bytes.
    """
    path = Path(path)
    out = folder / plain_name(path)
    k = 1
    while out.exists():
        k += 1
        out = folder / f"{k}-{plain_name(path)}"
    try:
        limit, why = unpack_limit(path, folder)
        with open(path, "rb") as src, open(out, "wb") as dst:
            cut_short = _gunzip(src, dst, path, limit, why)
    except OSError as exc:
        out.unlink(missing_ok=True)
        raise CaptureError(f"cannot unpack {path}: {exc.strerror or exc}") from exc
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return Unpacked(out, cut_short)


def unpack_limit(path: Path, folder: Path) -> tuple[int, str]:
    """The most bytes the gzip file *path* may unpack to in *folder*, and what sets it.

    :data:`MAX_INFLATION` times its size (at least :data:`MIN_UNPACKED_LIMIT`), at most
    :data:`MAX_UNPACKED_BYTES` and the free space of *folder*.
    """
    size = path.stat().st_size
    limits = [(max(MAX_INFLATION * size, MIN_UNPACKED_LIMIT), f"{MAX_INFLATION} times its compressed size"),
              (MAX_UNPACKED_BYTES, "the largest capture echolab unpacks")]
    try:
        limits.append((shutil.disk_usage(folder).free, f"the free space in {folder}"))
    except OSError:
        pass
    return min(limits)


def _gunzip(src: BinaryIO, dst: BinaryIO, path: Path, limit: int = MAX_UNPACKED_BYTES,
            why: str = "the largest capture echolab unpacks") -> str | None:
    """Unpack the gzip members of *src* to *dst* as far as they go; why they stop early, if they do.

    Streamed with zlib rather than :mod:`gzip`, which drops the last piece it
    unpacked when the stream breaks off after it. At most :data:`CHUNK` bytes
    are inflated at a time, and more than *limit* in all (*why* says what set it)
    raises :class:`CaptureError`.
    """
    unzip, fed, seen = zlib.decompressobj(wbits=31), False, False
    written = 0

    def put(data: bytes) -> None:
        nonlocal written
        written += len(data)
        if written > limit:
            raise CaptureError(f"{path} unpacks to more than {limit:,} bytes ({why}); "
                               "it is refused as a likely gzip bomb")
        dst.write(data)

    while chunk := src.read(CHUNK):
        while True:
            try:
                data = unzip.decompress(chunk, CHUNK)
            except zlib.error as exc:
                if not seen:
                    raise CaptureError(f"{path} is named as a compressed capture but is not gzip data") from exc
                return f"its gzip stream is damaged ({exc}); what came before was read"
            put(data)
            fed = fed or bool(chunk)
            seen = seen or bool(chunk)
            if unzip.eof:  # another member may follow
                chunk = unzip.unused_data
                unzip, fed = zlib.decompressobj(wbits=31), False
                if not chunk:
                    break
                continue
            chunk = unzip.unconsumed_tail
            if not chunk and len(data) < CHUNK:
                break
    if not seen:
        raise CaptureError(f"{path} is empty: it holds no gzip data")
    if fed and not unzip.eof:
        put(unzip.flush())
        return "its gzip stream ends early (the file was cut short); what came before was read"
    return None


__all__ = ["GZIP_CAPTURE_SUFFIXES", "MAX_INFLATION", "MAX_UNPACKED_BYTES", "MIN_UNPACKED_LIMIT", "Unpacked",
           "is_gzip_capture", "plain_name", "unpack_limit", "unpack_to", "unpacked"]
