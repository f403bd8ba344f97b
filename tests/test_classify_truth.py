"""classify cuts as import cuts (--expect, the keep-alive sizes, folders) and is scored against known labels
(--truth manifest or --label-from); its timeline shows dates over days and stays readable with many classes."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest
from typer.testing import CliRunner

from echolab import Lab
from echolab.analysis.compare.classify import TIMELINE_MAX_ROWS, Prediction, timeline_figure, timeline_rows
from echolab.analysis.compare.scoring import TruthError
from echolab.cli import app
from echolab.labdir import CATALOG_URL_ENV

from grids import write_grids
from homes import DEVICE_IP, LABEL_FROM, T0, write_homes


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_homes(tmp_path_factory.mktemp("homes"))


@pytest.fixture(scope="module")
def model(homes: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A random forest trained on home a's requests (cut on import)."""
    root = tmp_path_factory.mktemp("classify-lab")
    grids = write_grids(root, {"random_forest": {"params": {"n_estimators": 20}, "grid": {"criterion": ["gini"]}}})
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(CATALOG_URL_ENV, raising=False)
        with Lab(root / "lab", create=True) as lab:
            report = lab.import_captures(homes["home-a"], campaign="home-a", device_ip=DEVICE_IP,
                                         label_from=LABEL_FROM, cut="auto", expect=3)
            assert report.ok and len(report.imported) == 18
            yield lab.train(root / "model.joblib", features="tcptrace", grids=grids).path


def test_classify_takes_imports_cut_and_says_which_files_are_not_as_expected(homes: dict[str, Path],
                                                                           model: Path) -> None:
    done = Lab.classify([homes["home-b"]], model, "auto", device_ip=DEVICE_IP, expect=3)
    assert len(done.outcomes) == 6 and len(done.predictions) == 18 and done.not_as_expected == []
    four = Lab.classify([homes["home-b"] / "music_1.pcap"], model, Lab.cut_spec("gap=15"), device_ip=DEVICE_IP,
                        expect=4)
    assert [o.source.name for o in four.not_as_expected] == ["music_1.pcap"]
    # the cut's checks are import's: the files judged together, a count that does not fit --expect is suspect
    assert done.suspect == [] and {o.check for o in done.outcomes} == {"ok"}
    assert "0 of 6 files suspect" in done.checks_summary()
    assert [o.source.name for o in four.suspect] == ["music_1.pcap"] and "expect" in four.suspect[0].check
    big = Lab.cut_spec("gap=15", min_bytes=10**9)  # every burst is a keep-alive: the same sizes as import's
    assert Lab.classify([homes["home-b"] / "music_1.pcap"], model, big, device_ip=DEVICE_IP).predictions == []


def test_scored_against_file_names_and_a_manifest(homes: dict[str, Path], model: Path, tmp_path: Path) -> None:
    done = Lab.classify([homes["home-b"]], model, "auto", device_ip=DEVICE_IP, expect=3)
    by_names = done.score(label_from=LABEL_FROM)
    truth = {o.source.name: o.source.name.rsplit("_", 1)[0] for o in done.outcomes}
    right = sum(p.label == truth[Path(p.source).name] for p in done.predictions)
    assert by_names.scored == 18 and by_names.right == right
    assert by_names.accuracy == pytest.approx(100 * right / 18)
    assert sum(n for row in by_names.confusion.values() for n in row.values()) == 18
    assert Counter({t: sum(row.values()) for t, row in by_names.confusion.items()}) == {"weather": 6, "music": 6,
                                                                                        "quotes": 6}
    manifest = tmp_path / "truth.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label"])
        for name in sorted(truth)[:-1]:  # one file left out of the truth
            w.writerow([str(homes["home-b"] / name), truth[name]])
    by_manifest = done.score(truth=manifest)
    assert by_manifest.scored == 15 and [Path(f).name for f in by_manifest.unlabelled] == [sorted(truth)[-1]]
    with pytest.raises(TruthError, match="matches none of the 6 file names"):
        done.score(label_from=r"^nothing(\d+)$")
    with pytest.raises(TruthError, match="one of them"):
        done.score()


def test_cli_classify_with_expect_and_truth(homes: dict[str, Path], model: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["classify", "--model", str(model), "--device-ip", DEVICE_IP, "--expect", "3",
                                      "--label-from", LABEL_FROM, str(homes["home-b"])])
    assert result.exit_code == 0, result.output
    assert "18 requests: " in result.output and "cut checks: 0 of 6 files suspect" in result.output
    assert "Scored against file names by" in result.output and "of 18 requests)" in result.output
    assert "confusion (rows: true, columns: predicted):" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("name,class\nx.pcap,music\n")
    refused = CliRunner().invoke(app, ["classify", "--model", str(model), "--truth", str(bad),
                                       str(homes["home-b"] / "music_1.pcap")])
    assert refused.exit_code == 1
    assert "Error: the truth manifest" in refused.output and "needs 'file' (or 'path') and 'label'" in refused.output


def _day_predictions(classes: int, days: int) -> list[Prediction]:
    """Three requests of each of *classes* classes and five more of class_00, spread over *days* days."""
    labels = [f"class_{i % classes:02d}" for i in range(classes * 3)] + ["class_00"] * 5
    out = []
    for i, label in enumerate(labels):
        start = T0 + (i / len(labels)) * days * 86400
        out.append(Prediction("x.pcap", start, start + 20, label, 0.9))
    return out


def test_timeline_over_days_shows_dates_and_many_classes_share_a_row() -> None:
    predictions = _day_predictions(40, 3)
    rows, row_of = timeline_rows(predictions)
    assert len(rows) == TIMELINE_MAX_ROWS and rows[-1] == f"other ({40 - TIMELINE_MAX_ROWS + 1} classes)"
    assert row_of["class_00"] == "class_00"  # the most frequent keeps its row
    fig = timeline_figure(predictions)
    fig.canvas.draw()
    top, bottom = fig.axes[:2]
    labels = [t.get_text() for t in top.get_yticklabels()]
    assert len(labels) == TIMELINE_MAX_ROWS and labels[-1].startswith("other (21 classes) (")
    ticks = [t.get_text() for t in bottom.get_xticklabels() if t.get_text()]
    assert ticks and all("Nov" in t for t in ticks), ticks  # 2023-11-14 to 11-17: the date on every tick
    short = timeline_figure(_day_predictions(4, 0.2))
    short.canvas.draw()
    ticks = [t.get_text() for t in short.axes[1].get_xticklabels() if t.get_text()]
    assert ticks and all(":" in t and "Nov" not in t for t in ticks), ticks
