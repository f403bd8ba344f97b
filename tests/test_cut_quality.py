"""Cut quality: crafted long captures whose cut goes wrong without failing (another device, requests merged,
an upload taken for a request, a count that does not fit) are marked suspect, kept so in the catalog, listed
at the end of the import and shown by catalog segments before anything is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
from typer.testing import CliRunner

import echo_shapes
from echo_shapes import _burst, _Conn, _request, echo_long_capture
from pcaps import write_pcap

from echolab import Lab
from echolab.captures.checks import CHECKS
from echolab.captures.quality import check_cuts
from echolab.cli import app
from echolab.labdir import LabDir

runner = CliRunner()
T0 = 1_700_000_000.0


def cli(lab: LabDir, *args: str):
    return runner.invoke(app, ["--lab", str(lab.root), *args])


def crafted(path: Path, starts: Sequence[float], *, uploads: Sequence[float] = (), seed: int = 0) -> Path:
    """Requests starting at *starts* (seconds into the file), upload-only bursts at *uploads*, keep-alives."""
    rng = np.random.default_rng(seed)
    conn = _Conn(rng)
    for s in starts:
        _request(conn, rng, T0 + s)
    for u in uploads:
        _burst(conn, rng, T0 + u, up_bytes=15_000, packets=40, down_bytes=1200, span=0.4)
    busy = [(T0 + s - 1, T0 + s + 12) for s in starts] + [(T0 + u - 1, T0 + u + 2) for u in uploads]
    for k in np.arange(T0 + 1, T0 + max([*starts, *uploads]) + 20, 25.0):
        if not any(a <= k <= b for a, b in busy):
            conn.keepalive(float(k))
    conn.frames.sort(key=lambda f: f[0])
    return write_pcap(path, conn.frames)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five files of one home: three good, one whose requests come close together (merged by the cut), one
    with an upload of the Echo's own far from any answer; and a sixth from another device."""
    folder = tmp_path_factory.mktemp("home")
    crafted(folder / "weather_1.pcap", [10, 50, 90, 130], seed=1)
    crafted(folder / "weather_2.pcap", [10, 45, 85, 125], seed=2)
    crafted(folder / "timer_1.pcap", [12, 52, 95, 140], seed=3)
    crafted(folder / "merged_1.pcap", [10, 50, 90, 97, 104, 111, 118], seed=4)
    crafted(folder / "upload_1.pcap", [10, 50, 90], uploads=[135], seed=5)
    return folder


@pytest.fixture(scope="module")
def other_device(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("other")
    patch = pytest.MonkeyPatch()
    patch.setattr(echo_shapes, "ECHO_IP", "192.168.1.77")
    try:
        crafted(folder / "joke_1.pcap", [10, 50, 90, 130], seed=6)
    finally:
        patch.undo()
    return folder / "joke_1.pcap"


def _verdicts(folder: Path, cut: str = "gap=4") -> dict[str, str]:
    preview = Lab.preview_cut_folder(folder, cut)
    return {str(r["file"]): str(r["check"]) for r in preview.rows}


def test_each_check_names_what_it_found(campaign: Path, other_device: Path, tmp_path: Path) -> None:
    folder = tmp_path / "all"
    folder.mkdir()
    for f in [*campaign.iterdir(), other_device]:
        (folder / f.name).write_bytes(f.read_bytes())
    verdicts = _verdicts(folder)
    assert verdicts["weather_1.pcap"] == verdicts["weather_2.pcap"] == verdicts["timer_1.pcap"] == "ok"
    assert verdicts["merged_1.pcap"].startswith("suspect: request 3 lasts")
    assert "times the file's median" in verdicts["merged_1.pcap"]
    assert "request 4 is upload only (15.0 kB up, 1.2 kB down)" in verdicts["upload_1.pcap"]
    assert "device 192.168.1.77" in verdicts["joke_1.pcap"] and "not the campaign's 192.168.1.50 (5 of 6 files)" \
        in verdicts["joke_1.pcap"]


def test_expect_never_forces_a_file_that_does_not_fit(tmp_path: Path) -> None:
    three = echo_long_capture(tmp_path / "three.pcap", np.random.default_rng(11), requests=3, trailing=0, stray=0)
    result = Lab.preview_cut(three.path, "auto", expect=5)
    assert not result.fits and len(result.segments) == 3  # the cut auto takes without --expect, not one forced to 5
    verdict = Lab.check_cut(result)
    assert "no cut gives the 5 requests expected well apart; not forced" in verdict.text
    assert "holds 3 requests, expected 5" in verdict.text
    fits = Lab.preview_cut(three.path, "auto", expect=3)
    assert fits.fits and Lab.check_cut(fits).ok


def test_a_file_of_six_cut_into_the_five_expected_is_suspect(tmp_path: Path) -> None:
    """Two requests joined by the keep-alives between them make five: their piece sends two utterances, and the
    cut holds for a narrow range of gaps only."""
    six = echo_long_capture(tmp_path / "six.pcap", np.random.default_rng(11), requests=6, trailing=0, stray=0)
    result = Lab.preview_cut(six.path, "auto", expect=5)
    assert len(result.segments) == 5 and result.fits
    assert Lab.check_cut(result).reasons == ["request 4 sends 154 kB, 1.9 times the file's median (82 kB): two requests?",
                                             "the cut holds only for gaps from 16.45 to 19.49 s"]
    assert Lab.check_cut(Lab.preview_cut(six.path, "auto", expect=6)).ok


def test_a_narrow_range_of_gaps_is_suspect(campaign: Path) -> None:
    result = Lab.preview_cut(campaign / "weather_1.pcap", "auto")
    lo, hi = result.gap_range_s
    assert hi / lo >= CHECKS.narrow_gap_ratio and Lab.check_cut(result).ok
    result.gap_range_s = (2.0, 2.0 * CHECKS.narrow_gap_ratio * 0.9)  # as a file whose quiet times crowd together
    assert "the cut holds only for gaps from 2.00 to 2.34 s" in Lab.check_cut(result).text


def test_trailing_bursts_are_counted(tmp_path: Path) -> None:
    cap = echo_long_capture(tmp_path / "t.pcap", np.random.default_rng(7), requests=5, trailing=1.0, stray=0)
    checked = check_cuts([Lab.preview_cut(cap.path, "auto", expect=5)])
    assert checked.attached_share() == (5, 5)
    assert "trailing bursts attached to 5 of 5 requests (100%)" in checked.summary()


def test_import_keeps_the_verdicts_and_lists_suspect_files(sqlite_lab: LabDir, campaign: Path) -> None:
    preview = runner.invoke(app, ["catalog", "segments", str(campaign), "--split", "gap=4"])
    assert preview.exit_code == 0, preview.output
    assert "cut checks: 2 of 5 files suspect" in preview.output and "  check: suspect: request 4 is upload" \
        in preview.output
    done = cli(sqlite_lab, "catalog", "import", str(campaign), "--split", "gap=4", "--label-from", r"^([a-z]+)_")
    assert done.exit_code == 0, done.output
    assert "cut checks: 2 of 5 files suspect" in done.output
    assert f"suspect: {campaign / 'merged_1.pcap'}: request 3 lasts" in done.output
    with Lab(sqlite_lab) as lab:
        checks = {(c.label, (c.cut_check or "").split(":")[0]) for c in lab.captures()}
        assert checks == {("weather", "ok"), ("timer", "ok"), ("merged", "suspect"), ("upload", "suspect")}
    listed = cli(sqlite_lab, "catalog", "ls", "--check", "suspect")
    lines = listed.output.splitlines()[3:]  # title, header, rule
    assert listed.exit_code == 0 and len(lines) == 7 and all(line.endswith("  suspect") for line in lines)
    as_json = json.loads(cli(sqlite_lab, "catalog", "ls", "--check", "suspect", "--json").output)
    assert {row["label"] for row in as_json} == {"merged", "upload"}
    assert all(row["check"].startswith("suspect: request ") for row in as_json)
    with Lab(sqlite_lab) as lab:
        set_aside = lab.discard_many("cut looks wrong", check="suspect")
        assert len(set_aside.changed) == 3 + 4  # merged: 2 requests and 5 merged into one; upload: 3 and the upload
        assert {c.label for c in lab.captures()} == {"weather", "timer"}


def test_a_file_cut_later_is_judged_against_the_campaign_in_the_catalog(sqlite_lab: LabDir, campaign: Path,
                                                                         other_device: Path) -> None:
    for name in ("weather_1.pcap", "weather_2.pcap", "timer_1.pcap"):
        assert cli(sqlite_lab, "catalog", "import", str(campaign / name), "--split", "gap=4",
                   "--campaign", "home").exit_code == 0
    late = cli(sqlite_lab, "catalog", "import", str(other_device), "--split", "gap=4", "--campaign", "home")
    assert late.exit_code == 0 and "device 192.168.1.77" in late.output and "(3 of 4 files)" in late.output


def test_a_cut_import_reports_progress_for_each_step(sqlite_lab: LabDir, campaign: Path) -> None:
    heard: dict[str, list[tuple[int, int | None]]] = {}
    with Lab(sqlite_lab) as lab:
        lab.import_captures(campaign, cut="gap=4", label_from=r"^([a-z]+)_",
                            progress=lambda task, done, total: heard.setdefault(task, []).append((done, total)))
    assert list(heard) == ["reading", "cutting", "importing"]
    assert all(steps[0] == (0, 5) and steps[-1] == (5, 5) for steps in heard.values())
