"""The catalog on SQLite and on a real PostgreSQL server, through the CLI."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from echolab.db.catalog import Catalog, CatalogError
from echolab.db.checks import catalog_stats, verify
from echolab.db.files import sha256_file
from echolab.cli import app
from echolab.labdir import LabDir

runner = CliRunner()


def cli(lab: LabDir | Path, *args: str):
    root = lab.root if isinstance(lab, LabDir) else lab
    return runner.invoke(app, ["--lab", str(root), *args])


def test_import_then_stats_counts_per_class(lab: LabDir, class_folders: Path) -> None:
    result = cli(lab, "catalog", "import", str(class_folders))
    assert result.exit_code == 0, result.output
    assert "Imported 4 captures" in result.output
    stats = json.loads(cli(lab, "catalog", "stats", "--json").output)
    counts = {c["class"]: c["ok"] for c in stats["classes"]}
    assert counts == {"weather": 2, "music": 1, "unintelligible": 1}
    assert stats["balance"] == pytest.approx(0.5)
    # a second import skips every file as a duplicate
    again = cli(lab, "catalog", "import", str(class_folders))
    assert "Imported 0 captures; skipped 4 duplicates" in again.output


def test_ls_filters_and_formats(lab: LabDir, class_folders: Path) -> None:
    cli(lab, "catalog", "import", str(class_folders), "--campaign", "home")
    rows = json.loads(cli(lab, "catalog", "ls", "--json").output)
    assert len(rows) == 4
    assert {"id", "label", "status", "campaign", "path", "sha256"} <= set(rows[0])
    for row in rows:
        assert row["campaign"] == "home"
        assert sha256_file(lab.root / row["path"]) == row["sha256"]
        assert row["packet_count"] > 0
    weather = json.loads(cli(lab, "catalog", "ls", "--class", "weather", "--json").output)
    assert sorted(r["label"] for r in weather) == ["weather", "weather"]
    csv_out = cli(lab, "catalog", "ls", "--csv", "--class", "music").output.splitlines()
    assert csv_out[0].startswith("id,label,status,campaign,path,sha256")
    assert len(csv_out) == 2


def test_verify_catches_modified_deleted_and_unknown(lab: LabDir, class_folders: Path) -> None:
    cli(lab, "catalog", "import", str(class_folders))
    clean = cli(lab, "catalog", "verify")
    assert clean.exit_code == 0 and "4 files checked" in clean.output
    with Catalog.open(lab) as cat:
        a, b, *_ = cat.captures()
        modified, deleted = lab.root / a.path, lab.root / b.path
    with open(modified, "ab") as fh:
        fh.write(b"\0")
    deleted.unlink()
    stray = lab.captures_dir / "stray.pcap"
    stray.write_bytes(modified.read_bytes())
    result = cli(lab, "catalog", "verify")
    assert result.exit_code == 1
    assert f"modified  capture {a.id}" in result.output
    assert f"missing   capture {b.id}" in result.output
    assert "unknown   captures/stray.pcap" in result.output
    with Catalog.open(lab) as cat:
        report = verify(cat)
    assert (len(report.modified), len(report.missing), report.unknown) == (1, 1, ["captures/stray.pcap"])


def test_export_tar_round_trip(lab: LabDir, class_folders: Path, tmp_path: Path) -> None:
    cli(lab, "catalog", "import", str(class_folders), "--campaign", "home")
    tar = tmp_path / "out.tar.gz"
    assert cli(lab, "catalog", "export", str(tar)).exit_code == 0
    other = tmp_path / "other-lab"
    result = runner.invoke(app, ["--lab", str(other), "catalog", "import", str(tar), "--create"],
                           env={"ECHOLAB_CATALOG_URL": f"sqlite:///{tmp_path / 'other.sqlite'}"})
    assert result.exit_code == 0, result.output
    assert "Imported 4 captures" in result.output
    with Catalog.open(lab) as a, Catalog.open(LabDir.open(other), url=f"sqlite:///{tmp_path / 'other.sqlite'}") as b:
        assert {(c.label, c.sha256, c.campaign.name) for c in a.captures()} == {
            (c.label, c.sha256, c.campaign.name) for c in b.captures()
        }


def test_export_manifest_csv_and_json(lab: LabDir, class_folders: Path, tmp_path: Path) -> None:
    cli(lab, "catalog", "import", str(class_folders))
    cli(lab, "catalog", "export", str(tmp_path / "m.json"), "--class", "weather")
    rows = json.loads((tmp_path / "m.json").read_text())
    assert [r["label"] for r in rows] == ["weather", "weather"]
    cli(lab, "catalog", "export", str(tmp_path / "m.csv"))
    assert len((tmp_path / "m.csv").read_text().splitlines()) == 5


def test_discard_keeps_row_and_excludes_it(lab: LabDir, class_folders: Path) -> None:
    cli(lab, "catalog", "import", str(class_folders))
    with Catalog.open(lab) as cat:
        target = cat.captures(label="music")[0].id
    result = cli(lab, "catalog", "discard", str(target), "--reason", "speaker unplugged")
    assert result.exit_code == 0
    with Catalog.open(lab) as cat:
        assert target not in [c.id for c in cat.captures()]
        row = cat.get_capture(target)
        assert (row.status, row.reason) == ("discarded", "speaker unplugged")
        stats = {c.label: (c.ok, c.discarded) for c in catalog_stats(cat).classes}
    assert stats["music"] == (0, 1)


def test_show_prints_fields_and_packets(lab: LabDir, class_folders: Path) -> None:
    cli(lab, "catalog", "import", str(class_folders))
    result = cli(lab, "catalog", "show", "1", "--packets", "3")
    assert result.exit_code == 0, result.output
    assert "sha256" in result.output and "packet_count" in result.output
    assert "127.0.0.1" in result.output
    dissected = re.findall(r"^\s*(\d+)\s+\d+\.\d{6}\s+127\.0\.0\.1 -> 127\.0\.0\.1\s+TCP\s+\d+ ", result.output, re.M)
    assert dissected == ["1", "2", "3"], result.output  # tshark's summary of the first three packets


def test_manifest_import_labels_from_csv(lab: LabDir, class_folders: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "labels.csv"
    (tmp_path / "weather").mkdir()
    shutil.copy(class_folders / "weather" / "a.pcap", tmp_path / "weather" / "a.pcap")
    manifest.write_text("path,label\nweather/a.pcap,quotes\n")  # paths inside the manifest's folder
    result = cli(lab, "catalog", "import", str(manifest))
    assert result.exit_code == 0, result.output
    with Catalog.open(lab) as cat:
        assert [c.label for c in cat.captures()] == ["quotes"]


# -- bad input: one clear line, non-zero exit, nothing half-written ------------------


def test_missing_lab_directory(tmp_path: Path) -> None:
    result = cli(tmp_path / "nope", "catalog", "ls")
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: lab directory {tmp_path / 'nope'} does not exist")


def test_unknown_capture_id(lab: LabDir) -> None:
    result = cli(lab, "catalog", "show", "42")
    assert result.exit_code == 1
    assert "Error: no capture with id 42" in result.output


def test_not_a_capture_is_rejected_and_nothing_written(lab: LabDir, tmp_path: Path) -> None:
    src = tmp_path / "src" / "weather"
    src.mkdir(parents=True)
    (src / "notes.pcap").write_text("this is not a capture\n")
    (src / "cut.pcap").write_bytes(b"\xd4\xc3\xb2\xa1\x02\x00")  # a header cut short
    result = cli(lab, "catalog", "import", str(src.parent))
    assert result.exit_code == 1
    assert "notes.pcap is not a pcap or pcapng capture" in result.output
    assert "cut.pcap is empty or too short to be a capture" in result.output or "cut.pcap has a damaged" in result.output
    with Catalog.open(lab) as cat:
        assert cat.captures(status=None) == []
    assert [p for p in lab.captures_dir.rglob("*") if p.is_file()] == []


def test_newer_schema_is_refused(sqlite_lab: LabDir) -> None:
    Catalog.open(sqlite_lab).close()
    with sqlite3.connect(sqlite_lab.root / "catalog.sqlite") as db:
        db.execute("UPDATE alembic_version SET version_num = '9999'")
    result = cli(sqlite_lab, "catalog", "ls")
    assert result.exit_code == 1
    assert "Error: the catalog has schema revision 9999, newer than this echolab" in result.output


def test_damaged_catalog_file_is_refused(sqlite_lab: LabDir) -> None:
    (sqlite_lab.root / "catalog.sqlite").write_bytes(b"garbage" * 100)
    result = cli(sqlite_lab, "catalog", "ls")
    assert result.exit_code == 1
    assert "is not a SQLite catalog" in result.output


def test_migrations_match_models(lab: LabDir) -> None:
    """The Alembic migrations build exactly the schema db/records.py describes."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from echolab.db.records import Base

    with Catalog.open(lab) as cat, cat.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_schema_revision_is_the_migrations_head() -> None:
    """Catalogs at SCHEMA_REVISION open without Alembic, so it must be the newest migration."""
    from alembic.script import ScriptDirectory

    from echolab.db.catalog import MIGRATIONS
    from echolab.db.records import SCHEMA_REVISION

    assert ScriptDirectory(str(MIGRATIONS)).get_current_head() == SCHEMA_REVISION


def test_failed_insert_leaves_no_file(lab: LabDir, class_folders: Path) -> None:
    with Catalog.open(lab) as cat:
        camp = cat.create_campaign("c1", backend="sim")
        cat.add_capture(camp, "weather", class_folders / "weather" / "a.pcap")
        with pytest.raises(CatalogError):
            cat.create_campaign("c1", backend="sim")
        files = sorted(p for p in lab.captures_dir.rglob("*") if p.is_file())
    assert len(files) == 1 and not any(p.name.endswith(".part") for p in files)


def test_bad_manifest_rows_are_rejected_with_their_line(lab: LabDir, class_folders: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "labels.csv"
    good = tmp_path / "a.pcap"
    shutil.copy(class_folders / "weather" / "a.pcap", good)
    manifest.write_text(f"path,label,status\n{good},weather,ok\n{good},,ok\n{good},music,maybe\n")
    result = cli(lab, "catalog", "import", str(manifest))
    assert result.exit_code == 1
    assert "line 3 of labels.csv needs a path, a label and a status" in result.output
    assert "line 4 of labels.csv" in result.output
    with Catalog.open(lab) as cat:
        assert [c.label for c in cat.captures()] == ["weather"]


def test_since_and_until_filter_by_start_time(lab: LabDir, class_folders: Path) -> None:
    from datetime import datetime, timedelta, timezone

    with Catalog.open(lab) as cat:
        camp = cat.create_campaign("t", backend="sim")
        t0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
        for i, name in enumerate(["a.pcap", "b.pcapng"]):
            cat.add_capture(camp, "weather", class_folders / "weather" / name, started_at=t0 + timedelta(hours=i))
        assert len(cat.captures(since=t0 + timedelta(minutes=30))) == 1
        assert len(cat.captures(until=t0 + timedelta(minutes=30))) == 1
        assert len(cat.captures(since=t0, until=t0 + timedelta(hours=1))) == 2
    rows = json.loads(cli(lab, "catalog", "ls", "--json", "--since", "2026-01-01T12:30:00+00:00").output)
    assert len(rows) == 1


def test_stats_target_per_class_sums_the_campaigns_that_collect_it(lab: LabDir, class_folders: Path) -> None:
    with Catalog.open(lab) as cat:
        cat.create_campaign("a", backend="sim", target_per_class=5, classes=["weather", "music"])
        cat.create_campaign("b", backend="sim", target_per_class=3, classes=["weather"])
        targets = {c.label: c.target for c in catalog_stats(cat).classes}
        assert targets == {"weather": 8, "music": 5}
        assert {c.label: c.target for c in catalog_stats(cat, campaign="b").classes} == {"weather": 3}
        assert {c.label: c.target for c in catalog_stats(cat, target=130).classes} == {"weather": 130, "music": 130}


# -- nothing empty is ok -----------------------------------------------------------------


def test_empty_capture_or_one_without_the_device_is_kept_as_failed(lab: LabDir, class_folders: Path,
                                                                   tmp_path: Path) -> None:
    from pcaps import write_pcap

    folder = tmp_path / "data"
    (folder / "weather").mkdir(parents=True)
    write_pcap(folder / "weather" / "empty.pcap", [])
    result = cli(lab, "catalog", "import", str(folder))
    assert result.exit_code == 0, result.output
    assert "kept as failed: " in result.output and "empty: the capture holds no packets" in result.output
    other = cli(lab, "catalog", "import", str(class_folders / "music" / "c.pcap"), "--device-ip", "10.9.9.9",
                "--campaign", "m")
    assert other.exit_code == 0, other.output
    with Catalog.open(lab) as cat:
        rows = cat.captures(status=None)
        assert [(r.status, r.reason) for r in rows] == [
            ("failed", "empty: the capture holds no packets"),
            ("failed", "no device traffic: no TCP or UDP packet from or to 10.9.9.9"),
        ]
        assert cat.captures() == []
    cut = cli(lab, "catalog", "import", str(folder), "--split", "auto", "--expect", "5")
    assert cut.exit_code == 1 and "empty.pcap holds no packets" in cut.output


# -- writers share the lab ------------------------------------------------------------------

WRITER = """
import json, sys, time
from pathlib import Path
from echolab.captures.spec import SplitSpec
from echolab.db.catalog import Catalog
from echolab.db.transfer import import_captures
from echolab.labdir import LabDir

time.sleep(max(0.0, float(sys.argv[4]) - time.time()))  # all three start together
with Catalog.open(LabDir.open(sys.argv[1])) as cat:
    plain = import_captures(cat, Path(sys.argv[2]), campaign="shared")
    cut = import_captures(cat, Path(sys.argv[3]), campaign="shared", cut=SplitSpec.parse("auto"), expect=5,
                          label_from=r"^(\\w+?)_\\d")
print(json.dumps({"imported": len(plain.imported), "duplicates": len(plain.duplicates),
                  "pieces": len(cut.imported), "piece_duplicates": len(cut.duplicates),
                  "rejected": plain.rejected + cut.rejected}))
"""


def test_three_writers_at_once_all_finish_and_counts_add_up(lab: LabDir, class_folders: Path,
                                                            tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    import numpy as np

    from echo_shapes import echo_long_capture

    long_dir = tmp_path / "long"
    long_dir.mkdir()
    echo = echo_long_capture(long_dir / "weather_5_40s.pcap", np.random.default_rng(7))
    Catalog.open(lab).close()  # created (and migrated) before the race, as a lab is
    start = str(time.time() + 3)
    procs = [subprocess.Popen([sys.executable, "-P", "-c", WRITER, str(lab.root), str(class_folders), str(long_dir),
                               start], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ)
             for _ in range(3)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _o, err in outs]
    got = [json.loads(out) for out, _err in outs]
    assert all(g["rejected"] == [] for g in got)
    assert sum(g["imported"] for g in got) == 4 and sum(g["duplicates"] for g in got) == 8
    assert sum(g["pieces"] for g in got) == 5 and sum(g["piece_duplicates"] for g in got) == 10
    with Catalog.open(lab) as cat:
        rows = cat.captures()
        assert len(rows) == 9 and len({r.sha256 for r in rows}) == 9
        pieces = cat.source_pieces(sha256_file(echo.path))
        assert len(pieces) == 5 and all(a.source_end < b.source_start for a, b in zip(pieces, pieces[1:]))


def test_a_wait_that_runs_out_names_the_process_holding_the_lab(lab: LabDir) -> None:
    import os

    from echolab.db.catalog import CatalogBusyError

    impatient = LabDir(lab.root, {**lab.settings, "catalog_lock_timeout_s": 1})
    with Catalog.open(lab) as holder, Catalog.open(impatient) as waiter:
        with holder.transaction():
            holder.create_campaign("first", backend="sim")
            with pytest.raises(CatalogBusyError) as caught:
                waiter.create_campaign("second", backend="sim")
        assert f"pid {os.getpid()} on " in str(caught.value)
        assert "the catalog stayed locked for 1 s:" in str(caught.value)
        waiter.create_campaign("second", backend="sim")  # once the holder is done, the waiter goes on
        assert [c.name for c in waiter.campaigns()] == ["first", "second"]


def test_two_captures_of_the_same_content_each_keep_a_file(lab: LabDir, tmp_path: Path) -> None:
    from echolab.captures.trace import write_trace

    trace = write_trace(tmp_path / "same.csv", [0, 1000, 2000], [1500, -1500, -1500])
    with Catalog.open(lab) as cat:
        camp = cat.create_campaign("traces", backend="imported")
        first = cat.add_capture(camp, "weather", trace)
        second = cat.add_capture(camp, "weather", trace)  # two identical requests (a defense can make them so)
        assert first.sha256 == second.sha256 and first.path != second.path
        assert second.path.endswith("-2.csv")
        assert all((lab.root / c.path).exists() for c in (first, second))
        # two labels whose folder names are the same ("a b" and "a-b" both live in captures/traces/a-b/)
        spaced, dashed = cat.add_capture(camp, "a b", trace), cat.add_capture(camp, "a-b", trace)
        assert spaced.path != dashed.path and dashed.path.endswith("-2.csv")
        cat.remove_captures([first], "test")
        assert (lab.root / second.path).exists() and not (lab.root / first.path).exists()
        assert verify(cat).ok
