"""Captures kept gzip-compressed (``NAME.pcap.gz``), as public data sets ship them.

The reader walks plain files in place, and the cut copies byte ranges out of
them, so a compressed capture is unpacked once into a scratch folder and read
from there: :func:`unpacked` gives the plain file for as long as it is needed.
A file cut short inside the gzip stream gives what it held up to the break,
and says so (``Unpacked.cut_short``), as a pcap cut short does.
"""

from __future__ import annotations

import tempfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from echolab.captures.reader import CaptureError

CHUNK = 1 << 20

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
    """Unpack the gzip file *path* into *folder* (a name not taken there); see :func:`unpacked`."""
    path = Path(path)
    out = folder / plain_name(path)
    k = 1
    while out.exists():
        k += 1
        out = folder / f"{k}-{plain_name(path)}"
    try:
        with open(path, "rb") as src, open(out, "wb") as dst:
            cut_short = _gunzip(src, dst, path)
    except OSError as exc:
        raise CaptureError(f"cannot unpack {path}: {exc.strerror or exc}") from exc
    return Unpacked(out, cut_short)


def _gunzip(src: BinaryIO, dst: BinaryIO, path: Path) -> str | None:
    """Unpack the gzip members of *src* to *dst* as far as they go; why they stop early, if they do.

    Streamed with zlib rather than :mod:`gzip`, which drops the last piece it
    unpacked when the stream breaks off after it.
    """
    unzip, fed, seen = zlib.decompressobj(wbits=31), False, False
    while chunk := src.read(CHUNK):
        while chunk:
            try:
                dst.write(unzip.decompress(chunk))
            except zlib.error as exc:
                if not seen:
                    raise CaptureError(f"{path} is named as a compressed capture but is not gzip data") from exc
                return f"its gzip stream is damaged ({exc}); what came before was read"
            fed = seen = True
            chunk = b""
            if unzip.eof:  # another member may follow
                chunk = unzip.unused_data
                unzip, fed = zlib.decompressobj(wbits=31), False
    if not seen:
        raise CaptureError(f"{path} is empty: it holds no gzip data")
    if fed and not unzip.eof:
        dst.write(unzip.flush())
        return "its gzip stream ends early (the file was cut short); what came before was read"
    return None


__all__ = ["GZIP_CAPTURE_SUFFIXES", "Unpacked", "is_gzip_capture", "plain_name", "unpack_to", "unpacked"]
