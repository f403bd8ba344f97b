"""Labels a lab can fix: relabel (by id, label, match, map, file names), aliases at import, bulk discard and
restore, --replace that replaces labels, and a preview of the labels a pattern gives."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from echolab import Lab
from echolab.cli import app
from echolab.db.catalog import CatalogError
from echolab.labdir import LabDir
from echo_shapes import echo_long_capture
from pcaps import synthetic_session

runner = CliRunner()
DEVICE = "192.168.1.50"


def cli(lab: LabDir, *args: str):
    return runner.invoke(app, ["--lab", str(lab.root), *args])


def _homes(root: Path) -> Path:
    """Two homes' flat folders; home2 spells one command otherwise, and names carry a take number."""
    names = {"home1": ["days_until_christmas_1.pcap", "days_until_christmas_2.pcap", "weather_1.pcap"],
             "home2": ["days_untill_christmas_1.pcap", "weather_1.pcap", "weather_2.pcap"]}
    k = 0
    for home, files in names.items():
        (root / home).mkdir(parents=True)
        for name in files:
            k += 1
            synthetic_session(root / home / name, sizes=(1448, 300 + 37 * k))
    return root


LABEL_RX = r"^(?P<label>.+?)_\d+\.pcap"


@pytest.fixture
def homes(tmp_path: Path) -> Path:
    return _homes(tmp_path / "homes")


def _labels(lab: Lab, status: str | None = None, **kw) -> list[str]:
    return sorted(c.label for c in lab.captures(status=status, **kw))


def test_relabel_every_way(lab: LabDir, homes: Path, tmp_path: Path) -> None:  # SQLite and PostgreSQL
    with Lab(lab) as lab:
        for home in ("home1", "home2"):
            lab.import_captures(homes / home, campaign=home, label_from=r"_(\d+)\.pcap")  # a wrong pattern
        assert _labels(lab) == ["1", "1", "1", "1", "2", "2"]
        run = lab.catalog.start_analysis_run("r1", settings={}, fingerprint="f", versions={},
                                            capture_ids=[c.id for c in lab.captures()])
        # the file names again, with the right pattern
        dry = lab.relabel(label_from=LABEL_RX, dry_run=True)
        assert len(dry.changed) == 6 and _labels(lab) == ["1", "1", "1", "1", "2", "2"]
        done = lab.relabel(label_from=LABEL_RX)
        assert _labels(lab) == ["days_until_christmas", "days_until_christmas", "days_untill_christmas",
                                "weather", "weather", "weather"]
        assert done.stale_runs == ["r1"] and lab.catalog.analysis_run("r1").status == "stale"
        assert sorted(lab.catalog.campaign("home2").classes) == ["days_untill_christmas", "weather"]
        # a regular expression on the labels
        fixed = lab.relabel(match=r"untill", to="until")
        assert [(old, new) for _id, old, new in fixed.changed] == [("days_untill_christmas", "days_until_christmas")]
        # by label, and by id
        lab.relabel(labels=["weather"], campaign="home2", to="forecast")
        assert _labels(lab, campaign="home2") == ["days_until_christmas", "forecast", "forecast"]
        first = lab.captures(campaign="home1")[0]
        lab.relabel([first.id], to="christmas")
        assert lab.capture(first.id).label == "christmas"
        # a label map, one row for one campaign only
        mapping = tmp_path / "map.csv"
        mapping.write_text("from,to,campaign\nforecast,weather,home2\nweather,never,home2\n")
        lab.relabel(label_map=mapping)
        assert _labels(lab, campaign="home2") == ["days_until_christmas", "weather", "weather"]
        assert "never" not in _labels(lab)
        with pytest.raises(CatalogError, match="relabel one way"):
            lab.relabel(match="a", to="b", label_from=LABEL_RX)
        with pytest.raises(CatalogError, match="needs the captures"):
            lab.relabel(to="weather")


def test_relabel_on_the_command_line(sqlite_lab: LabDir, homes: Path) -> None:
    assert cli(sqlite_lab, "catalog", "import", str(homes / "home2"), "--label-from", LABEL_RX).exit_code == 0
    shown = cli(sqlite_lab, "catalog", "relabel", "--match", "untill", "--to", "until", "--dry-run")
    assert shown.exit_code == 0, shown.output
    assert "would relabel 1 captures: days_untill_christmas -> days_until_christmas" in shown.output
    done = cli(sqlite_lab, "catalog", "relabel", "--label", "weather", "--to", "forecast")
    assert done.exit_code == 0 and "relabelled 2 captures: weather -> forecast" in done.output
    refused = cli(sqlite_lab, "catalog", "relabel", "--to", "x")
    assert refused.exit_code == 1 and "Error:" in refused.output


def test_aliases_rename_labels_as_they_come_in(sqlite_lab: LabDir, homes: Path, tmp_path: Path) -> None:
    aliases = tmp_path / "aliases.csv"
    aliases.write_text("from,to\ndays_untill_christmas,days_until_christmas\n")
    result = cli(sqlite_lab, "catalog", "import", str(homes / "home2"), "--label-from", LABEL_RX,
                 "--aliases", str(aliases))
    assert result.exit_code == 0, result.output
    with Lab(sqlite_lab) as lab:
        assert _labels(lab) == ["days_until_christmas", "weather", "weather"]


def test_bulk_discard_and_restore(lab: LabDir, homes: Path) -> None:  # SQLite and PostgreSQL
    sqlite_lab = lab
    with Lab(lab) as lab:
        for home in ("home1", "home2"):
            lab.import_captures(homes / home, campaign=home, label_from=LABEL_RX)
        done = lab.discard_many("second home's Echo was moved", campaign="home2")
        assert len(done.changed) == 3 and len(lab.captures()) == 3
        again = lab.discard_many("twice", campaign="home2")
        assert not again.changed and len(again.unchanged) == 3
        lab.discard_many("weather only", labels=["weather"], campaign="home1")
        assert _labels(lab, status="ok") == ["days_until_christmas", "days_until_christmas"]
        back = lab.restore(source="*home2/weather_*")
        assert len(back.changed) == 2 and _labels(lab, status="ok") == ["days_until_christmas",
                                                                          "days_until_christmas", "weather", "weather"]
        with pytest.raises(CatalogError, match="name the captures"):
            lab.discard_many("everything")
    out = cli(sqlite_lab, "catalog", "discard", "--status", "discarded", "--reason", "x")
    assert out.exit_code == 0 and "Discarded 0 captures (2 already discarded)" in out.output
    out = cli(sqlite_lab, "catalog", "restore", "--label", "days_untill_christmas", "--label", "weather")
    assert out.exit_code == 0 and "Restored 2 captures" in out.output, out.output
    one = cli(sqlite_lab, "catalog", "discard", "1", "--reason", "noise")
    assert one.exit_code == 0 and "Capture 1 discarded: noise" in one.output


def test_replace_really_replaces_labels(sqlite_lab: LabDir, homes: Path) -> None:
    wrong = cli(sqlite_lab, "catalog", "import", str(homes / "home1"), "--label-from", r"_(\d+)\.pcap")
    assert wrong.exit_code == 0 and "labels: 2 labels are numbers (1, 2)" in wrong.output
    kept = cli(sqlite_lab, "catalog", "import", str(homes / "home1"), "--label-from", LABEL_RX)
    assert "kept label:" in kept.output and "--replace relabels it" in kept.output
    with Lab(sqlite_lab) as lab:
        assert _labels(lab) == ["1", "1", "2"]
    swapped = cli(sqlite_lab, "catalog", "import", str(homes / "home1"), "--label-from", LABEL_RX, "--replace")
    assert swapped.exit_code == 0, swapped.output
    assert "relabelled 1 captures from 1 to weather (--replace)" in swapped.output
    with Lab(sqlite_lab) as lab:
        assert _labels(lab) == ["days_until_christmas", "days_until_christmas", "weather"]


def test_replace_relabels_the_pieces_of_a_cut(sqlite_lab: LabDir, tmp_path: Path) -> None:
    import numpy as np

    folder = tmp_path / "long"
    folder.mkdir()
    echo_long_capture(folder / "timer_1.pcap", np.random.default_rng(5), requests=2, trailing=0, stray=0)
    args = ("catalog", "import", str(folder), "--split", "auto", "--expect", "2")
    assert cli(sqlite_lab, *args, "--label-from", r"_(\d)").exit_code == 0
    redone = cli(sqlite_lab, *args, "--label-from", r"^([a-z]+)_", "--replace")
    assert redone.exit_code == 0, redone.output
    with Lab(sqlite_lab) as lab:
        assert _labels(lab) == ["timer", "timer"]


def test_segments_previews_labels_and_warns_when_they_collapse(homes: Path, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for home in ("home1", "home2"):
        for f in (homes / home).iterdir():
            (flat / f"{home}_{f.name}").write_bytes(f.read_bytes())
    good = Lab.preview_labels(flat, r"^home\d_(?P<label>.+?)_\d+\.pcap")
    assert sorted(good.labels) == ["days_until_christmas", "days_untill_christmas", "weather"] and not good.warning()
    numbers = Lab.preview_labels(flat, r"_(\d+)\.pcap")
    assert "labels are numbers" in (numbers.warning() or "")
    strict = Lab.preview_labels(flat, r"^home1_(?P<label>.+?)_\d+\.pcap")
    assert "3 of 6 files are not matched" in (strict.warning() or "")
    shown = runner.invoke(app, ["catalog", "segments", str(flat), "--split", "gap=2", "--label-from", r"_(\d+)\.pcap"])
    assert shown.exit_code == 0, shown.output
    assert "home2_weather_2.pcap: label 2" in shown.output and "labels are numbers" in shown.output


def test_the_docs_label_pattern_reads_the_names_real_data_sets_use() -> None:
    import re

    from echolab.db.transfer import label_from_name

    doc = (Path(__file__).resolve().parent.parent / "docs" / "long-captures.md").read_text()
    pattern = re.search(r"--label-from '([^']+)' --campaign", doc).group(1)
    names = {"what_is_the_weather_5_30s.pcap": "what_is_the_weather", "days_untill_christmas_2.pcap":
             "days_untill_christmas", "set_a_timer.pcapng": "set_a_timer", "tell_me_a_joke_3.pcap": "tell_me_a_joke",
             "play-music_12_40s.cap": "play-music"}
    assert {n: label_from_name(pattern, n) for n in names} == names
    preview = Lab.preview_labels([Path("days_until_christmas_1.pcap.gz")], pattern)
    assert list(preview.labels) == ["days_until_christmas"]
