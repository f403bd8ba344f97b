"""The reject option of model files: a threshold in the header, ``unknown`` in classify and on the timeline."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from echolab.analysis.compare.modelfile import load_model, read_header, save_model
from echolab.analysis.compare.openworld import UNKNOWN, UNMONITORED
from echolab.analysis.compare.reject import train_with_reject
from echolab.analysis.compare.specs import AnalysisError
from echolab.analysis.compare.synthetic import synthetic_source
from echolab import Lab
from echolab.cli import app
from echolab.db.catalog import Catalog
from echolab.db.transfer import import_captures
from echolab.labdir import LabDir

from grids import write_grids
from pcaps import SIM_DEVICE_IP, write_class_captures

T0 = 1_700_000_000.0
runner = CliRunner()


@pytest.fixture
def lab(sqlite_lab: LabDir, tmp_path: Path) -> LabDir:
    folder = tmp_path / "train"
    write_class_captures(folder, 4, start_ts=T0)
    with Catalog.open(sqlite_lab) as cat:
        import_captures(cat, folder, campaign="train", device_ip=SIM_DEVICE_IP)
    write_grids(tmp_path, {"random_forest": {"params": {"n_estimators": 20}, "grid": {"criterion": ["gini"]}},
                           "svm_rbf": {"params": {"kernel": "rbf"}, "grid": {"C": [1]}}}, labels=False)
    return sqlite_lab


def _train(lab: LabDir, out: Path, *extra: str) -> object:
    return runner.invoke(app, ["--lab", str(lab.root), "analyze", "train", "--campaign", "train", "--features",
                               "histogram:bins=10", "--grids", str(out.parent / "grids.toml"), "--out", str(out),
                               *extra], terminal_width=200)


def _set_threshold(path: Path, threshold: float) -> None:
    model = load_model(path)
    model.reject = {**model.reject, "threshold": threshold}
    save_model(model, path)


def test_a_threshold_in_the_header_turns_doubtful_requests_into_unknown(lab: LabDir, tmp_path: Path) -> None:
    model = tmp_path / "model.echolab-model"
    res = _train(lab, model, "--unmonitored", "quotes,unintelligible", "--reject", "fpr=0.25")
    assert res.exit_code == 0, res.output
    assert "24 captures of 5 classes" in res.output and "Reject option: unknown under" in res.output
    header = read_header(model)
    reject = header["reject"]
    assert reject["target"] == "fpr=0.25" and 0 < reject["threshold"] <= 1
    assert reject["monitored"] == ["directions", "information", "music", "weather"]
    assert reject["unmonitored"] == ["quotes", "unintelligible"] and UNMONITORED in header["classes"]
    assert reject["train"]["n_unmonitored"] == 8 and reject["train"]["n_monitored"] == 16
    assert reject["train"]["fpr"] <= 0.25 or not reject["reached"]

    # a long capture of five requests, each classified
    pieces = [write_class_captures(tmp_path / f"r{i}", 1, seed=(20 + i,), classes=[label], start_ts=T0 + 120 * i)[0]
              for i, label in enumerate(["music", "weather", "unintelligible", "quotes", "directions"])]
    if shutil.which("mergecap") is None:
        pytest.fail("mergecap (Wireshark) is not installed; scripts/setup.sh installs tshark with it")
    day = tmp_path / "day.pcapng"
    subprocess.run(["mergecap", "-w", str(day), *map(str, pieces)], check=True)

    def classify(*extra: str) -> list[dict]:
        out = runner.invoke(app, ["classify", "--model", str(model), "--split", "gap=15", "--json", *extra, str(day)])
        assert out.exit_code == 0, out.output
        return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]

    rows = classify()
    assert len(rows) == 5
    assert all(r["label"] != UNMONITORED for r in rows)
    # what the header's threshold says: unknown exactly when the score is under it
    assert all((r["label"] == UNKNOWN) == (r["probability"] < reject["threshold"]) for r in rows)
    scores = [r["probability"] for r in rows]
    _set_threshold(model, 1.01)  # nothing is likely enough
    every = classify("--timeline", str(tmp_path / "day.html"))
    assert [r["label"] for r in every] == [UNKNOWN] * 5
    assert [r["probability"] for r in every] == scores  # the score is still printed
    html = (tmp_path / "day.html").read_text()
    assert f"<th>{UNKNOWN}</th>" in html and f"<td>{UNKNOWN}</td>" in html
    _set_threshold(model, 0.0)  # everything is accepted: the best monitored class
    accepted = classify()
    assert all(r["label"] in {"music", "weather", "directions", "information"} for r in accepted)
    plain = runner.invoke(app, ["classify", "--model", str(model), "--split", "gap=15", str(day)])
    assert plain.exit_code == 0 and "5 requests: " in plain.output


def test_without_unmonitored_classes_a_precision_target_works_and_an_fpr_target_says_why_not(
        lab: LabDir, tmp_path: Path) -> None:
    model = tmp_path / "m.echolab-model"
    bad = _train(lab, model, "--reject", "fpr=0.1")
    assert bad.exit_code == 1
    assert "Error: a false-positive-rate target needs unmonitored requests in the training data" in bad.output
    assert "Hint: train with unmonitored classes too, or give a precision target" in bad.output
    res = _train(lab, model, "--reject", "precision=0.5", "--model", "svm_rbf")
    assert res.exit_code == 0, res.output
    loaded = load_model(model)
    assert loaded.reject["target"] == "precision=0.5" and loaded.reject["unmonitored"] == []
    assert hasattr(loaded.estimator, "predict_proba")  # the SVM was refit with probabilities to be able to reject
    plain = _train(lab, tmp_path / "plain.echolab-model")
    assert plain.exit_code == 0 and read_header(tmp_path / "plain.echolab-model")["reject"] is None


def test_training_checks_its_unmonitored_classes() -> None:
    src = synthetic_source(8, seed=2)
    with pytest.raises(AnalysisError, match="--unmonitored names jokes"):
        train_with_reject(src, "combined", "knn", unmonitored=("jokes",))
    trained = train_with_reject(src, "combined", "knn", unmonitored=("quotes", "music"), reject="precision=0.8")
    labels, scores = trained.predict(src.records)
    assert set(labels) <= {*trained.reject["monitored"], UNKNOWN}
    assert all((lab == UNKNOWN) == (s < trained.reject["threshold"]) for lab, s in zip(labels, scores))


def test_lab_trains_a_model_file_with_a_reject_option(lab: LabDir, tmp_path: Path) -> None:
    with Lab(lab) as opened:
        written = opened.train(tmp_path / "lab.echolab-model", features="histogram:bins=10", campaigns=["train"],
                               grids=tmp_path / "grids.toml", unmonitored=["quotes", "music"], reject="precision=0.5")
    header = read_header(written.path)
    assert header["reject"] == written.model.reject and header["reject"]["unmonitored"] == ["music", "quotes"]
    assert UNMONITORED in header["classes"] and "quotes" not in header["classes"]
