"""Inputs the coverage-guided fuzzer (bench/fuzz.py) found crashing echolab's readers, fed again.

Each file under tests/fuzz_inputs/TARGET/ is an input that once raised something
other than echolab's own error; fed to the same reader it must now end in an
:class:`EcholabError` or read cleanly. The named tests below pin the message of
each kind of crash with a small hand-made input of the same shape.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import tracemalloc
import zipfile
from pathlib import Path
from typing import Callable

import pytest

from echolab.analysis.compare import grids, modelfile
from echolab.captures import cut, device, pcapng, pieces, reader, spec, trace
from echolab.captures.timeline import Segment
from echolab.db import transfer
from echolab.db.catalog import Catalog, CatalogError
from echolab.errors import EcholabError, LabError
from echolab.labdir import LabDir
from pcaps import synthetic_session, tcp_packet, write_pcap

INPUTS = Path(__file__).parent / "fuzz_inputs"
CUTS = ("auto", "gap=0.5", "every=0.05", "gap=3")  # the cut the first byte selects, as in bench/fuzz.py


def _pcap(path: Path) -> None:
    for _ in reader.iter_tcp(path, reader.ReadStats(), want_udp=True):
        pass
    reader.summarize(path)


def _cut(path: Path) -> None:
    data = path.read_bytes()
    body = path.with_suffix(".pcapng")
    body.write_bytes(data[1:])
    result = cut.find_segments(device.load_timeline(body), spec.SplitSpec.parse(CUTS[data[0] % len(CUTS)]),
                               expect=2 if data[0] & 4 else None)
    pieces.write_pieces(body, result.segments, path.parent / "pieces")


def _trace(path: Path) -> None:
    csv = path.with_suffix(".csv")
    csv.write_bytes(path.read_bytes())
    trace.read_trace(csv)


def _manifest(path: Path) -> None:
    lab = LabDir.open(path.parent / "lab", create=True)
    with Catalog.open(lab) as catalog:
        transfer.import_captures(catalog, path.parent, manifest=path)


def _settings(path: Path) -> None:
    root = path.parent / "lab"
    root.mkdir()
    (root / "echolab.toml").write_bytes(path.read_bytes())
    lab = LabDir.open(root)
    if not (isinstance(lab.settings.get("catalog_url"), str) and lab.settings["catalog_url"]):
        Catalog.open(lab).close()


def _modelfile(path: Path) -> None:
    modelfile.check_header(modelfile.read_header(path), path)


def _grids(path: Path) -> None:
    grids.select_models(grids.load_grids(path), None)


FEED: dict[str, Callable[[Path], None]] = {"pcap": _pcap, "cut": _cut, "trace": _trace, "manifest": _manifest,
                                           "settings": _settings, "modelfile": _modelfile, "grids": _grids}
FOUND = sorted(p for p in INPUTS.glob("*/*.bin"))


def test_every_target_has_a_feeder() -> None:
    assert {p.parent.name for p in FOUND} <= set(FEED)


@pytest.mark.parametrize("found", FOUND, ids=[f"{p.parent.name}/{p.stem}" for p in FOUND])
def test_found_input_ends_in_an_echolab_error_or_reads(found: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ECHOLAB_CATALOG_URL", raising=False)
    data = tmp_path / found.name
    data.write_bytes(found.read_bytes())
    try:
        FEED[found.parent.name](data)
    except EcholabError as exc:
        assert str(exc)


# --------------------------------------------------------------------------- each kind, by hand


def test_manifest_that_is_not_text(tmp_path: Path, sqlite_lab: LabDir) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"path,label\n\xff\xfe.pcap,weather\n")
    with Catalog.open(sqlite_lab) as catalog, pytest.raises(CatalogError, match="is not UTF-8 text"):
        transfer.import_captures(catalog, tmp_path, manifest=manifest)


def test_settings_that_are_not_text(tmp_path: Path) -> None:
    (tmp_path / "echolab.toml").write_bytes(b'catalog_url = "\xde"\n')
    with pytest.raises(LabError, match="cannot read lab settings"):
        LabDir.open(tmp_path)


@pytest.mark.parametrize("row", [b"0,120,1\ninf,5,1", b"0,120,1\nnan,5,1", b"0,99999999999999999999,1",
                                 b"0,1,1\n1e300,1,1"])
def test_trace_values_out_of_range(tmp_path: Path, row: bytes) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"time,size,direction\n" + row + b"\n")
    refused = r"line \d+: (.*out of range|expected time,size,direction numbers|size \d+ is over|time .* is not a number)"
    with pytest.raises(trace.TraceError, match=refused):
        trace.read_trace(path)


def test_grids_that_are_not_text_or_name_a_foreign_parameter(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_bytes(b'[models.x]\nestimator = "\xff"\n')
    with pytest.raises(grids.GridError, match="not valid TOML|not UTF-8 text"):
        grids.load_grids(path)
    path.write_text('[models.svm]\nestimator = "sklearn.svm.SVC"\nparams = {n_estimators = 3}\n')
    with pytest.raises(grids.GridError, match="n_estimators"):
        grids.load_grids(path)


def _model_file(path: Path, header: object, payload: bytes = b"") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(modelfile.HEADER_MEMBER, json.dumps(header))
        zf.writestr(modelfile.MODEL_MEMBER, payload)
    return path


def test_model_header_without_feature_set_or_with_odd_versions(tmp_path: Path) -> None:
    header = {"format": modelfile.FORMAT, "extractor_version": _extractor()}
    path = _model_file(tmp_path / "m.echolab-model", header)
    with pytest.raises(modelfile.ModelFileError, match="cannot extract"):
        modelfile.check_header(modelfile.read_header(path), path)
    header = {**header, "feature_set": "tcptrace", "versions": [1, 2]}
    with pytest.raises(modelfile.ModelFileError, match="versions"):
        modelfile.check_header(header, path)


def _extractor() -> str:
    from echolab.analysis.features.sets import EXTRACTOR_VERSION

    return EXTRACTOR_VERSION


def test_model_file_declaring_gigabytes_allocates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "m.joblib"  # a protocol-4 pickle whose BYTEARRAY8 claims 6.8 GB, in 16 bytes
    path.write_bytes(b"\x80\x04\x96" + struct.pack("<Q", 0x0196_9297F9) + b"ader.")
    tracemalloc.start()
    try:
        with pytest.raises(modelfile.ModelFileError, match="older echolab.*not loaded"):
            modelfile.read_header(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 << 20


def test_every_window_count_is_bounded(tmp_path: Path) -> None:
    path = write_pcap(tmp_path / "years.pcap", [(1.0, tcp_packet("192.168.1.50", "52.94.1.10", 5000, 443)),
                                                (3e7, tcp_packet("52.94.1.10", "192.168.1.50", 443, 5000))])
    timeline = device.load_timeline(path, "192.168.1.50")
    with pytest.raises(spec.SplitError, match="more than 100000 windows"):
        cut.find_segments(timeline, spec.SplitSpec.parse("every=0.05"))


def test_every_windows_cover_records_out_of_time_order(tmp_path: Path) -> None:
    frames = [(1_700_000_010.0, tcp_packet("192.168.1.50", "52.94.1.10", 5000, 443, payload=300)),
              (1_700_000_000.0, tcp_packet("52.94.1.10", "192.168.1.50", 443, 5000, payload=900))]
    path = write_pcap(tmp_path / "backwards.pcap", frames)
    result = cut.find_segments(device.load_timeline(path, "192.168.1.50"), spec.SplitSpec.parse("every=4"))
    assert sum(s.packets for s in result.segments + result.ignored) == 2


def test_seed_session_reads_cleanly(tmp_path: Path) -> None:
    path = synthetic_session(tmp_path / "s.pcap")
    _pcap(path)


@pytest.mark.parametrize("btype", [6, 2])  # enhanced, obsolete packet block
def test_pcapng_packet_block_too_short_for_its_header(tmp_path: Path, btype: int) -> None:
    """A 12-byte packet block at the end of the file: counted malformed by the walker, skipped by the pieces."""
    shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
    idb = struct.pack("<IIHHI", 1, 20, 1, 0, 65535) + struct.pack("<I", 20)
    path = tmp_path / "short.pcapng"
    path.write_bytes(shb + idb + struct.pack("<III", btype, 12, 12))
    walker = pcapng.PcapngWalker(path)
    with open(path, "rb") as fh:
        assert list(walker.records(fh)) == []
    assert (walker.packets, walker.malformed) == (1, 1)
    stats = reader.ReadStats()
    assert list(reader.iter_tcp(path, stats)) == []
    assert stats.malformed == 1
    written = pieces.write_pieces(path, [Segment(0, 1 << 62, 0, 0, 0)], tmp_path / "pieces")
    with open(written[0], "rb") as fh:
        assert [b[0] for b in pcapng.PcapngWalker(written[0]).walk(fh)] == [pcapng.SHB, pcapng.IDB]
