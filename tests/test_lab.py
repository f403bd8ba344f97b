"""``echolab.Lab``, the library's front door, used directly: import, cut, features, compare, report,
train, classify and export on a small lab of synthetic captures."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from echolab import Lab
from echolab.analysis.compare.classify import ClassifyError
from echolab.collector.sim import synthetic
from echolab.db.catalog import UnknownRunError
from echolab.labdir import CATALOG_URL_ENV
from echolab.prompts.classes import STUDY_CLASSES

from grids import write_grids
from pcaps import SIM_DEVICE_IP, write_class_captures

DEVICE = SIM_DEVICE_IP
PER_CLASS = 5  # the fewest per class whose 20% test part holds every class
T0 = 1_700_000_000.0


def _capture(path: Path, label: str, i: int, start_ts: float = T0) -> Path:
    rng = np.random.default_rng([STUDY_CLASSES.index(label), i])
    synthetic.write_capture(path, label, float(rng.uniform(1.5, 3.0)), rng, start_ts=start_ts)
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A lab made by Lab, holding PER_CLASS synthetic captures of each class imported by Lab."""
    root = tmp_path_factory.mktemp("front")
    folder = root / "captures"
    write_class_captures(folder, PER_CLASS)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(CATALOG_URL_ENV, raising=False)
        with Lab(root / "lab", create=True) as opened:
            report = opened.import_captures(folder, campaign="train", device_ip=DEVICE)
            assert len(report.imported) == PER_CLASS * len(STUDY_CLASSES) and report.ok
            yield opened


@pytest.fixture(scope="module")
def grids(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_grids(tmp_path_factory.mktemp("grids"),
                       {"random_forest": {"params": {"n_estimators": 10}, "grid": {"criterion": ["gini"]}},
                        "knn": {"grid": {"n_neighbors": [1, 3]}}})


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """Three synthetic requests two minutes apart merged into one long pcapng (and the pieces)."""
    if shutil.which("mergecap") is None:
        pytest.fail("mergecap (Wireshark) is not installed; scripts/setup.sh installs tshark with it")
    folder = tmp_path_factory.mktemp("day")
    labels = ["music", "weather", "quotes"]
    pieces = [_capture(folder / f"r{i}.pcap", label, 20 + i, start_ts=T0 + 120 * i) for i, label in enumerate(labels)]
    long_capture = folder / "day.pcapng"
    subprocess.run(["mergecap", "-w", str(long_capture), *map(str, pieces)], check=True)
    return long_capture, pieces


def test_import_is_counted_and_a_second_import_finds_only_duplicates(lab: Lab, tmp_path: Path) -> None:
    stats = lab.stats()
    assert {c.label: c.ok for c in stats.classes} == {label: PER_CLASS for label in STUDY_CLASSES}
    assert [c.name for c in lab.campaigns()] == ["train"]
    first = lab.captures(label="weather")[0]
    assert lab.capture_path(first).exists()
    again = lab.import_captures(lab.root.parent / "captures", campaign="again", device_ip=DEVICE)
    assert again.imported == [] and len(again.duplicates) == PER_CLASS * len(STUDY_CLASSES)


def test_features_are_built_once_and_read_as_a_table(lab: Lab) -> None:
    built = lab.build_features()
    assert len(built.records) == PER_CLASS * len(STUDY_CLASSES) and built.failed == 0
    assert lab.build_features().extracted == 0  # now all from the feature cache
    X, y, names = lab.features("histogram:bins=5")
    assert X.shape == (PER_CLASS * len(STUDY_CLASSES), len(names)) and sorted(set(y)) == sorted(STUDY_CLASSES)
    columns, _dropped = lab.feature_columns("histogram:bins=5", built)
    assert columns == names
    assert lab.features("histogram:bins=10").X.shape[1] > X.shape[1]  # the option reaches the transformer


def test_compare_caches_trials_and_report_records_where_it_went(lab: Lab, grids: Path) -> None:
    result = lab.compare(features=["tcptrace"], models=["knn"], trials=2, grids=grids, name="front", jobs=1)
    assert (result.computed, result.cached) == (2, 0)
    again = lab.compare(features=["tcptrace"], models=["knn"], trials=2, grids=grids, name="front", jobs=1)
    assert (again.computed, again.cached) == (0, 2)
    assert [r.name for r in lab.runs()] == ["front"] and lab.run("front").id == result.run.id
    page = lab.report("front")
    assert page.name == "index.html" and (page.parent / "summary.md").exists()
    assert lab.run("front").report_dir and Path(lab.run("front").report_dir).name == "front"
    with pytest.raises(UnknownRunError) as missing:
        lab.run("no-such-run")
    assert missing.value.hint == "'echolab analyze ls' lists the runs"


def test_a_trained_model_classifies_each_request_of_a_long_capture(lab: Lab, grids: Path, tmp_path: Path,
                                                                   day: tuple[Path, list[Path]]) -> None:
    written = lab.train(tmp_path / "model.echolab-model", features="histogram:bins=10", model="random_forest",
                        campaigns=["train"], grids=grids)
    assert written.path.exists() and written.model.n_captures == PER_CLASS * len(STUDY_CLASSES)
    long_capture, pieces = day
    seen: list[Path] = []
    done = Lab.classify([long_capture], written.path, "gap=15", device_ip=DEVICE,
                        on_capture=lambda outcome: seen.append(outcome.source))
    assert seen == [long_capture] and len(done.predictions) == 3
    assert [round(p.start - T0) // 120 for p in done.predictions] == [0, 1, 2]
    alone = Lab.classify(pieces, written.model, "gap=15", device_ip=DEVICE)
    assert [p.label for p in done.predictions] == [p.label for p in alone.predictions]  # same as piece by piece
    assert sum(done.counts().values()) == 3
    assert done.timeline(tmp_path / "day.png").read_bytes()[:4] == b"\x89PNG"


def test_live_classification_refuses_what_it_cannot_watch(lab: Lab, grids: Path, tmp_path: Path) -> None:
    written = lab.train(tmp_path / "model.echolab-model", features="tcptrace", model="knn", grids=grids)
    with pytest.raises(ClassifyError, match="needs --device-ip"):
        Lab.classify_live(written.model, interface="lo")
    with pytest.raises(ClassifyError, match="cuts by quiet time"):
        Lab.classify_live(written.model, interface="lo", device_ip=DEVICE, cut="every=30")


def test_a_cut_is_previewed_without_importing(lab: Lab, day: tuple[Path, list[Path]]) -> None:
    long_capture, _ = day
    preview = Lab.preview_cut(long_capture, "gap=15", device_ip=DEVICE, expect=3)
    assert len(preview.segments) == 3 and preview.timeline.device.ip == DEVICE
    folder = Lab.preview_cut_folder(long_capture.parent, Lab.cut_spec("gap=15"), device_ip=DEVICE, expect=3)
    by_file = {r["file"]: r["requests"] for r in folder.rows}
    assert by_file["day.pcapng"] == 3 and by_file["r0.pcap"] == 1
    assert folder.as_expected == 1
    assert len(lab.captures()) == PER_CLASS * len(STUDY_CLASSES)  # nothing imported


def test_export_writes_the_manifest_and_the_feature_table(lab: Lab, tmp_path: Path) -> None:
    assert lab.export(tmp_path / "manifest.csv", label="weather") == PER_CLASS
    with open(tmp_path / "manifest.csv") as fh:
        assert {row["label"] for row in csv.DictReader(fh)} == {"weather"}
    rows = lab.export_features(tmp_path / "features.csv", "tcptrace")
    assert rows == PER_CLASS * len(STUDY_CLASSES)
    with open(tmp_path / "features.csv") as fh:
        assert next(csv.reader(fh))[:4] == ["capture_id", "sha256", "campaign", "label"]
