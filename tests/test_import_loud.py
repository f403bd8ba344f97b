"""Imports that say what they did not do: skipped files, compressed and cut-short captures, long captures
imported whole, a missing lab, progress, piped listings, and the public forms of packet traces."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from echolab import Lab
from echolab.captures.checks import CHECKS
from echolab.captures.trace import TraceError, is_trace_file, read_trace
from echolab.cli import app
from echolab.db.catalog import CatalogError
from echolab.labdir import LabDir
from echo_shapes import echo_long_capture
from pcaps import synthetic_session

runner = CliRunner()


def cli(lab: LabDir | Path, *args: str):
    root = lab.root if isinstance(lab, LabDir) else lab
    return runner.invoke(app, ["--lab", str(root), *args])


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """Class folders holding a pcap, a gzip-compressed pcap, a notes file and a CSV that is no trace."""
    root = tmp_path / "data"
    (root / "weather").mkdir(parents=True)
    (root / "music").mkdir()
    synthetic_session(root / "weather" / "a.pcap")
    plain = synthetic_session(tmp_path / "b.pcap", sizes=(1448, 900))
    with open(plain, "rb") as src, gzip.open(root / "music" / "b.pcap.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    (root / "README.txt").write_text("two homes\n")
    (root / "music" / "notes.csv").write_text("when,who\n1,2\n")
    return root


def test_skipped_files_are_listed_with_why_and_gzip_captures_are_read(sqlite_lab: LabDir, mixed_folder: Path) -> None:
    with Lab(sqlite_lab) as lab:
        report = lab.import_captures(mixed_folder, device_ip="192.168.1.50")
        assert len(report.imported) == 2 and not report.rejected
        assert sorted(Path(p).name for p, _ in report.skipped) == ["README.txt", "notes.csv"]
        why = dict((Path(p).name, w) for p, w in report.skipped)
        assert "not a capture" in why["README.txt"] and "time, size and direction" in why["notes.csv"]
        music = lab.captures(label="music")
        assert len(music) == 1 and music[0].packet_count > 0 and music[0].path.endswith(".pcap")
    result = cli(sqlite_lab, "catalog", "import", str(mixed_folder))
    assert result.exit_code == 0, result.output
    assert "2 files not captures" in result.output
    assert f"skipped: {mixed_folder / 'README.txt'}: not a capture" in result.output


def test_a_cut_short_file_is_imported_and_flagged(sqlite_lab: LabDir, tmp_path: Path) -> None:
    whole = synthetic_session(tmp_path / "whole.pcap")
    folder = tmp_path / "short" / "weather"
    folder.mkdir(parents=True)
    data = whole.read_bytes()
    (folder / "cut.pcap").write_bytes(data[:-30])  # the last record loses its end
    with gzip.open(folder / "gz.pcap.gz", "wb") as fh:
        fh.write(synthetic_session(tmp_path / "other.pcap", sizes=(1448, 700)).read_bytes())
    raw = (folder / "gz.pcap.gz").read_bytes()
    (folder / "gz.pcap.gz").write_bytes(raw[: len(raw) - 12])  # the gzip stream breaks off
    with Lab(sqlite_lab) as lab:
        report = lab.import_captures(folder.parent)
    flagged = dict((Path(p).name, how) for p, how in report.cut_short)
    assert set(flagged) == {"cut.pcap", "gz.pcap.gz"}
    assert "ends inside a packet record" in flagged["cut.pcap"] and "gzip stream ends early" in flagged["gz.pcap.gz"]
    assert len(report.imported) == 2


def test_a_long_capture_imported_whole_is_warned_about(sqlite_lab: LabDir, tmp_path: Path) -> None:
    folder = tmp_path / "long" / "weather"
    folder.mkdir(parents=True)
    echo_long_capture(folder / "w.pcap", np.random.default_rng(3), requests=3)
    synthetic_session(folder / "short.pcap")
    result = cli(sqlite_lab, "catalog", "import", str(folder.parent))
    assert result.exit_code == 0, result.output
    assert f"1 captures imported whole last over {CHECKS.long_capture_s:g} s" in result.output
    assert "long: " in result.output and "w.pcap" in result.output and "short.pcap (" not in result.output


def test_import_refuses_a_missing_lab_unless_asked_to_create_it(tmp_path: Path, mixed_folder: Path) -> None:
    missing = tmp_path / "typo-lab"
    refused = cli(missing, "catalog", "import", str(mixed_folder))
    assert refused.exit_code == 1 and "does not exist" in refused.output and not missing.exists()
    assert "Hint: or add --create to make a new lab there" in refused.output
    made = cli(missing, "catalog", "import", str(mixed_folder), "--create")
    assert made.exit_code == 0, made.output and missing.is_dir()


def test_import_reports_progress(sqlite_lab: LabDir, mixed_folder: Path) -> None:
    heard: list[tuple[str, int, int | None]] = []
    with Lab(sqlite_lab) as lab:
        lab.import_captures(mixed_folder, progress=lambda task, done, total: heard.append((task, done, total)))
    assert heard[0] == ("importing", 0, 2) and heard[-1] == ("importing", 2, 2)


def test_ls_piped_prints_every_column_whole(sqlite_lab: LabDir, mixed_folder: Path) -> None:
    assert cli(sqlite_lab, "catalog", "import", str(mixed_folder), "--campaign", "a-rather-long-campaign-name").exit_code == 0
    out = cli(sqlite_lab, "catalog", "ls").output
    with Lab(sqlite_lab) as lab:
        rows = lab.captures(status=None)
    for row in rows:  # whole cells: the sha256 and the path are not cut to fit 80 columns
        assert row.sha256 in out and row.path in out
    assert "…" not in out


def test_a_folder_with_nothing_to_import_says_why(sqlite_lab: LabDir, tmp_path: Path) -> None:
    folder = tmp_path / "wrong"
    folder.mkdir()
    (folder / "a.json").write_text("{}")
    (folder / "b.json").write_text("{}")
    with Lab(sqlite_lab) as lab, pytest.raises(CatalogError, match=r"holds 2 files \(2 \.json\) and none"):
        lab.import_captures(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli(sqlite_lab, "catalog", "import", str(empty))
    assert result.exit_code == 1 and "holds no file to import" in result.output


# --------------------------------------------------------------------------- the public forms of packet traces

PUBLIC_TRACE = ",time,size,direction\n0,0.0,1448.0,1.0\n1,0.012,1448.0,1.0\n2,0.051,600.0,-1.0\n3,0.2,66.0,-1.0\n"


def test_public_trace_forms_are_read(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(PUBLIC_TRACE)
    assert is_trace_file(path)
    times, sizes = read_trace(path)
    assert list(times) == [0, 12000, 51000, 200000] and list(sizes) == [1448, 1448, -600, -66]
    signed = tmp_path / "s.csv"
    signed.write_text("time,size,direction\n0,100,1\n0.5,-80,-1\n")
    assert list(read_trace(signed)[1]) == [100, -80]


@pytest.mark.parametrize("row, message", [
    ("4,0.3,12.5,1", "whole number"),
    ("4,0.3,100,0", "direction 1"),
    ("4,0.3,-100,1", "disagree"),
    ("4,0.3,abc,1", "numbers"),
])
def test_bad_trace_rows_name_their_line(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(PUBLIC_TRACE + row + "\n")
    with pytest.raises(TraceError, match=f"line 6: .*{message}"):
        read_trace(path)


def test_a_flat_folder_of_public_traces_imports_with_label_from(sqlite_lab: LabDir, tmp_path: Path) -> None:
    folder = tmp_path / "traces"
    folder.mkdir()
    for k, name in enumerate(("alexa_weather_1.csv", "alexa_weather_2.csv", "alexa_timer_1.csv")):
        (folder / name).write_text(PUBLIC_TRACE + f"4,0.3,{100 + k},1\n")
    flat = cli(sqlite_lab, "catalog", "import", str(folder))  # no class folders: each file says why
    assert flat.exit_code == 1 and "--label-from" in flat.output
    one = cli(sqlite_lab, "catalog", "import", str(folder / "alexa_timer_1.csv"))  # one trace, not a manifest
    assert one.exit_code == 0, one.output
    done = cli(sqlite_lab, "catalog", "import", str(folder), "--label-from", r"^alexa_(?P<label>[a-z]+)_\d+")
    assert done.exit_code == 0, done.output
    with Lab(sqlite_lab) as lab:
        # the timer trace came in first under its folder's name; the second import skips it as a duplicate
        assert sorted(c.label for c in lab.captures()) == ["traces", "weather", "weather"]
