"""Open-world metrics on crafted decisions and scores, each figure worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from echolab.analysis.compare.openworld import (
    UNKNOWN,
    OpenWorldError,
    ThresholdTarget,
    choose_threshold,
    counts_from_confusion,
    decide,
    monitored_scores,
    open_world_counts,
    pr_curve,
    pr_figure,
    r_precision,
)

MON = ("weather", "music")


def test_the_five_cells_by_hand():
    truth = ["weather", "weather", "weather", "music", "music", "jokes", "jokes", "timers", "timers", "timers"]
    decided = ["weather", "music", UNKNOWN, "music", "music", "weather", UNKNOWN, UNKNOWN, "music", UNKNOWN]
    c = open_world_counts(truth, decided, MON)
    # monitored: weather->weather TP, weather->music WP, weather->unknown FN, music->music TP x2
    # unmonitored: jokes->weather FP, jokes->unknown TN, timers: TN, FP, TN
    assert (c.tp, c.wp, c.fn, c.fp, c.tn) == (3, 1, 1, 2, 3)
    assert c.tpr == pytest.approx(3 / 5) and c.recall == c.tpr
    assert c.wpr == pytest.approx(1 / 5)
    assert c.fpr == pytest.approx(2 / 5)
    assert c.precision == pytest.approx(3 / (3 + 1 + 2))
    # r-precision = TPR / (TPR + WPR + r FPR): 0.6 / (0.6 + 0.2 + r 0.4)
    assert c.r_precision(1) == pytest.approx(0.6 / 1.2)
    assert c.r_precision(10) == pytest.approx(0.6 / 4.8)
    assert c.r_precision(100) == pytest.approx(0.6 / 40.8)
    j = c.to_json()
    assert j["r_precision"] == {"1:1": pytest.approx(0.5), "1:10": pytest.approx(0.125),
                                "1:100": pytest.approx(0.6 / 40.8)}


def test_a_monitored_request_in_another_monitored_class_is_not_a_true_positive():
    # Every monitored request is accepted, every one in the wrong monitored class:
    # counting "accepted as monitored" as a hit would give a perfect TPR.
    truth = ["weather", "weather", "music", "music", "jokes"]
    decided = ["music", "music", "weather", "weather", UNKNOWN]
    c = open_world_counts(truth, decided, MON)
    assert (c.tp, c.wp, c.fn, c.fp, c.tn) == (0, 4, 0, 0, 1)
    assert c.tpr == 0.0 and c.wpr == 1.0 and c.precision == 0.0
    assert c.r_precision(10) == 0.0


def test_confusion_matrix_with_the_unmonitored_row_first():
    # The published voice script took row 0 as the positive class while label 0
    # was the unmonitored one; here the labels are named, so the order cannot matter.
    labels = ["unmonitored", "weather", "music"]
    m = [[50, 3, 2],   # unmonitored: 50 rejected, 5 false positives
         [1, 8, 1],    # weather: 8 TP, 1 WP (as music), 1 rejected
         [4, 2, 4]]    # music: 4 TP, 2 WP (as weather), 4 rejected
    c = counts_from_confusion(m, labels, MON)
    assert (c.tp, c.wp, c.fn, c.fp, c.tn) == (12, 3, 5, 5, 50)
    assert c.tpr == pytest.approx(12 / 20)
    assert c.fpr == pytest.approx(5 / 55)
    # what the wrong script reported as "TPR": row 0's recall, i.e. the unmonitored class's
    assert m[0][0] / sum(m[0]) == pytest.approx(50 / 55) != pytest.approx(c.tpr)
    # the same matrix reordered gives the same cells
    order = [2, 0, 1]
    m2 = np.asarray(m)[np.ix_(order, order)]
    assert counts_from_confusion(m2, [labels[i] for i in order], MON) == c


def test_reserved_labels_and_shapes_are_refused():
    with pytest.raises(OpenWorldError, match="cannot be a monitored class"):
        open_world_counts(["a"], ["a"], ["a", UNKNOWN])
    with pytest.raises(OpenWorldError, match="at least one monitored"):
        open_world_counts(["a"], ["a"], [])
    with pytest.raises(OpenWorldError, match="must be 2x2"):
        counts_from_confusion([[1, 2, 3]], ["a", "b"], ["a"])
    with pytest.raises(OpenWorldError, match="2 true labels but 1"):
        open_world_counts(["a", "b"], ["a"], ["a"])


def test_r_precision_edges():
    assert r_precision(0.0, 0.0, 0.0, 10) == 1.0  # nothing accepted: no wrong claim
    assert math.isnan(r_precision(float("nan"), 0.0, 0.1, 1))
    with pytest.raises(OpenWorldError):
        r_precision(0.5, 0.1, 0.1, -1)


def test_monitored_scores_ignore_the_unmonitored_column():
    classes = ["music", "unmonitored", "weather"]
    proba = [[0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.45, 0.1, 0.45]]
    best, score = monitored_scores(proba, classes, MON)
    assert best.tolist() == ["music", "weather", "music"]  # ties go to the first monitored column
    assert score.tolist() == [0.2, 0.8, 0.45]
    assert decide(best, score, 0.45).tolist() == [UNKNOWN, "weather", "music"]


# Scores for the curve and the threshold, sorted by score:
#   0.95 weather/weather TP | 0.90 music/music TP | 0.80 jokes/weather FP | 0.70 weather/music WP
#   0.60 music/music TP | 0.40 timers/music FP | 0.30 jokes/weather FP | 0.20 weather/weather TP
TRUTH = ["weather", "music", "jokes", "weather", "music", "timers", "jokes", "weather"]
BEST = ["weather", "music", "weather", "music", "music", "music", "weather", "weather"]
SCORE = [0.95, 0.90, 0.80, 0.70, 0.60, 0.40, 0.30, 0.20]


def test_pr_curve_by_hand():
    curve = pr_curve(TRUTH, BEST, SCORE, MON)
    assert curve.n_monitored == 5 and curve.n_unmonitored == 3
    assert curve.thresholds.tolist() == SCORE
    assert curve.tp.tolist() == [1, 2, 2, 2, 3, 3, 3, 4]
    assert curve.wp.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    assert curve.fp.tolist() == [0, 0, 1, 1, 1, 2, 3, 3]
    assert curve.precision.tolist() == pytest.approx([1, 1, 2 / 3, 2 / 4, 3 / 5, 3 / 6, 3 / 7, 4 / 8])
    assert curve.recall.tolist() == pytest.approx([0.2, 0.4, 0.4, 0.4, 0.6, 0.6, 0.6, 0.8])
    # at 0.6: TP 3, WP 1, FP 1 -> same as counting the decisions
    at = curve.counts_at(0.6)
    assert at == open_world_counts(TRUTH, decide(BEST, SCORE, 0.6), MON)
    assert (at.tp, at.wp, at.fn, at.fp, at.tn) == (3, 1, 1, 1, 2)
    assert curve.counts_at(0.99).tp == 0 and curve.counts_at(0.99).tn == 3


def test_pr_curve_ties_make_one_point():
    curve = pr_curve(["weather", "jokes", "music"], ["weather", "music", "music"], [0.5, 0.5, 0.2], MON)
    assert curve.thresholds.tolist() == [0.5, 0.2]
    assert curve.tp.tolist() == [1, 2] and curve.fp.tolist() == [1, 1]


def test_threshold_for_a_precision_target():
    # precision >= 0.6 holds at 0.95, 0.90, 0.80 (2/3) and 0.60 (3/5); the lowest is 0.60 (most recall)
    choice = choose_threshold(TRUTH, BEST, SCORE, MON, "precision=0.6")
    assert choice.threshold == 0.60 and choice.reached
    assert choice.train["tp"] == 3 and choice.train["precision"] == pytest.approx(0.6)
    # 0.7 is only reached above the first false positive
    assert choose_threshold(TRUTH, BEST, SCORE, MON, "precision=0.7").threshold == 0.90


def test_threshold_for_a_false_positive_target():
    # FPR <= 1/3 holds down to 0.60 (one FP of three); 0 only above 0.80
    assert choose_threshold(TRUTH, BEST, SCORE, MON, "fpr=0.34").threshold == 0.60
    assert choose_threshold(TRUTH, BEST, SCORE, MON, ThresholdTarget("fpr", 0.0)).threshold == 0.90


def test_unreachable_target_keeps_the_best_and_says_so():
    truth, best, score = ["jokes", "weather"], ["weather", "weather"], [0.9, 0.5]
    choice = choose_threshold(truth, best, score, MON, "precision=0.9")
    assert not choice.reached and choice.threshold == 0.5  # best precision is 1/2, at the lowest threshold


def test_target_parsing_and_fpr_without_negatives():
    assert ThresholdTarget.parse("Precision=0.95") == ThresholdTarget("precision", 0.95)
    assert str(ThresholdTarget.parse("fpr=0.01")) == "fpr=0.01"
    for bad in ("recall=0.9", "precision", "precision=2", "fpr=x"):
        with pytest.raises(OpenWorldError, match="precision=P or fpr=F"):
            ThresholdTarget.parse(bad)
    with pytest.raises(OpenWorldError, match="needs unmonitored requests"):
        choose_threshold(["weather"], ["weather"], [0.9], MON, "fpr=0.1")


def test_pr_figure_draws_each_curve():
    curve = pr_curve(TRUTH, BEST, SCORE, MON).to_json()
    fig = pr_figure({"combined / RF": {**curve, "chosen": {"precision": 0.6, "recall": 0.6}}})
    ax = fig.axes[0]
    assert len(ax.lines) == 2  # the curve and the chosen point
    assert ax.lines[0].get_xdata().tolist() == pytest.approx(curve["recall"])


def test_the_docs_example_gives_what_its_comment_says():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "open-world.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    *body, last = code.strip().splitlines()
    expression, _, expected = last.partition("#")
    scope: dict = {}
    exec("\n".join(body), scope)
    assert eval(expression, scope) == pytest.approx(tuple(float(v) for v in expected.split(",")))
