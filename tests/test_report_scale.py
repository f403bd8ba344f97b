"""A report that scales with classes: per-class accuracy and top confusions instead of matrices above a size,
the study's numbers only beside the study's classes, a caveat on tests over few trials, and the leakage
verdict per feature set (tests/reports.py makes the stored runs; bench/bench_report_scale.py times them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from echolab.analysis.compare.matrices import FeatureMatrix
from echolab.analysis.compare.perclass import MATRIX_MAX_CLASSES, per_class, top_confusions
from echolab.analysis.compare.report import write_report
from echolab.analysis.compare.sources import DataSource
from echolab.analysis.compare.specs import FeatureSpec, RunSettings
from echolab.analysis.compare.summary import leakage_summary
from echolab.prompts.classes import STUDY_CLASSES

from reports import class_names, scaled_run


def test_per_class_accuracy_and_top_confusions_read_the_mean_matrix() -> None:
    classes = ["a", "b", "c"]
    cm = [[8, 2, 0],
          [5, 5, 0],
          [0, 1, 9]]
    rows = {r["class"]: r for r in per_class(cm, classes)}
    assert rows["a"]["accuracy"] == pytest.approx(80) and rows["a"]["confused_with"] == "b"
    assert rows["b"]["accuracy"] == pytest.approx(50) and rows["b"]["confused_pct"] == pytest.approx(50)
    assert rows["c"]["confused_with"] == "b" and rows["c"]["tested"] == 10
    top = top_confusions(cm, classes, top=5)
    assert [(t["true"], t["predicted"]) for t in top] == [("b", "a"), ("a", "b"), ("c", "b")]
    assert top[0]["pct_of_true"] == pytest.approx(50)


def test_many_classes_get_per_class_accuracy_and_no_study_numbers(tmp_path: Path) -> None:
    n = MATRIX_MAX_CLASSES + 25
    run = scaled_run(n, 8 * n, trials=3, name="many")
    out = write_report(run, tmp_path / "many").parent
    assert not list(out.glob("confusion-*.png")) and (out / "per-class.png").stat().st_size > 1000
    md = (out / "summary.md").read_text()
    assert f"{n} classes: no confusion matrices (drawn up to {MATRIX_MAX_CLASSES} classes)" in md
    assert "### combined: " in md and "Most frequent confusions:" in md and "Worst classes:" in md
    first = class_names(n)[0]
    assert f"| {first} | 4 | 4 | 8 |" in md  # the data table has a row a class (two campaigns, total)
    assert "*study*" not in md and f"shown only beside runs of its six classes; this run has {n} classes" in md
    assert "**Caveat:** These tests rest on 3 paired trials" in md
    html = (out / "index.html").read_text()
    assert "Per-class accuracy and the most frequent confusions" in html and "study, published" not in html
    assert "grey italic rows" not in html.lower()


def test_the_studys_classes_keep_matrices_and_study_rows_and_many_trials_no_caveat(tmp_path: Path) -> None:
    run = scaled_run(classes=STUDY_CLASSES, n_captures=120, trials=10, name="study")
    out = write_report(run, tmp_path / "study").parent
    assert {p.name for p in out.glob("confusion-*.png")} == {f"confusion-{k}.png" for k in
                                                            ("tcptrace", "histogram", "combined")}
    md = (out / "summary.md").read_text()
    assert "| *study* |" in md and "Caveat" not in md
    assert "Most frequent confusions:" in md  # the top confusions are listed at any size


def _leaky_and_clean(seed: int = 0) -> tuple[DataSource, dict[str, np.ndarray]]:
    """Three classes, four sessions each, six captures a session. "tcptrace" holds only a session signature
    (a random split learns sessions, an unseen session is a guess); "sequence" holds the class."""
    rng = np.random.default_rng(seed)
    y, sessions, leaky, clean = [], [], [], []
    for c, label in enumerate("abc"):
        for s in range(4):
            signature = rng.normal(0, 5, 6)
            for _ in range(6):
                y.append(label)
                sessions.append(f"{label}{s}")
                leaky.append(signature + rng.normal(0, 0.3, 6))
                clean.append(np.eye(3)[c].repeat(2) * 5 + rng.normal(0, 0.3, 6))
    n = len(y)
    src = DataSource(records=np.zeros((n, 1)), y=np.asarray(y), groups=np.asarray(["home"] * n),
                     sha256s=[f"{i:064x}" for i in range(n)], capture_ids=list(range(n)),
                     make_transformer=lambda *a, **k: None,
                     groupings={"session": np.asarray(sessions), "source": np.asarray([str(i) for i in range(n)])})
    return src, {"tcptrace": np.asarray(leaky), "sequence": np.asarray(clean)}


@pytest.mark.parametrize("order", [("tcptrace", "sequence"), ("sequence", "tcptrace")])
def test_the_leakage_verdict_is_per_feature_set_and_the_headline_the_gravest(order: tuple[str, str]) -> None:
    src, X = _leaky_and_clean()
    settings = RunSettings(features=tuple(FeatureSpec.of(k) for k in order))
    matrices = {k: FeatureMatrix(FeatureSpec.of(k), X[k], [f"{k}{i}" for i in range(6)]) for k in order}
    leak = leakage_summary(src, matrices, settings)
    assert {k: v["verdict"] for k, v in leak["by_feature"].items()} == {"tcptrace": "likely", "sequence": "unlikely"}
    assert list(leak["by_feature"]) == list(order)
    assert leak["verdict"] == "likely" and leak["feature"] == "tcptrace" and leak["grouping"] == "session"
