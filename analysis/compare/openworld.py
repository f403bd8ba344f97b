"""Open-world metrics: a monitored set of classes against requests the model never saw.

An eavesdropper cares about a few classes (the *monitored* set); a household asks
far more (the *unmonitored* requests). A classifier with a reject option says,
for each request, either one monitored class or "none of these" (:data:`UNKNOWN`),
by comparing its best monitored score with a threshold. Every request then
falls in one of five cells:

========================  ===========================  ==========================
truth \\ decision         its own monitored class      another monitored class     rejected
========================  ===========================  ==========================
monitored                 true positive (TP)           wrong monitored (WP)        false negative
unmonitored               -                            false positive (FP)         true negative
========================  ===========================  ==========================

A monitored request assigned to *another* monitored class is not a true
positive: it is counted apart, as the wrong-monitored rate WPR = WP / monitored
(Wang, "High Precision Open-World Website Fingerprinting", IEEE S&P 2020). The
rates: TPR = TP / monitored (the recall), FPR = FP / unmonitored, precision =
TP / (TP + WP + FP), and Wang's r-precision

    r-precision = TPR / (TPR + WPR + r * FPR)

the precision an attacker would see when unmonitored requests are *r* times as
frequent as monitored ones, whatever the test set's own mix (1:1, 1:10, 1:100
in :data:`BASE_RATES`).

:func:`pr_curve` computes every rate at every threshold at once (a request is
accepted when its score is at least the threshold); :func:`choose_threshold`
picks the threshold for a stated target (a precision to reach, or a
false-positive rate not to exceed) on training data only, and
:func:`pr_figure` draws the precision-recall curves on a matplotlib ``Figure``.
Everything here is NumPy; nothing is fitted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from echolab.errors import EcholabError

#: What a request the model rejects is called (``classify`` prints it).
UNKNOWN = "unknown"
#: The training label given to every unmonitored class a model learns from.
UNMONITORED = "unmonitored"
#: Unmonitored-to-monitored base rates r of the r-precision (1:1, 1:10, 1:100).
BASE_RATES: tuple[int, ...] = (1, 10, 100)
#: The kinds of threshold target: reach a precision, or stay at or under a false-positive rate.
TARGET_KINDS = ("precision", "fpr")


class OpenWorldError(EcholabError):
    """Open-world metrics or a threshold cannot be computed as asked."""


# --------------------------------------------------------------------------- counts and rates


@dataclass(frozen=True)
class OpenWorldCounts:
    """The five cells of an open-world decision, and the rates made of them."""

    tp: int  # monitored, assigned to its own class
    wp: int  # monitored, assigned to another monitored class
    fn: int  # monitored, rejected
    fp: int  # unmonitored, assigned to a monitored class
    tn: int  # unmonitored, rejected

    @property
    def n_monitored(self) -> int:
        return self.tp + self.wp + self.fn

    @property
    def n_unmonitored(self) -> int:
        return self.fp + self.tn

    @property
    def tpr(self) -> float:
        return _ratio(self.tp, self.n_monitored)

    recall = tpr

    @property
    def wpr(self) -> float:
        return _ratio(self.wp, self.n_monitored)

    @property
    def fpr(self) -> float:
        return _ratio(self.fp, self.n_unmonitored)

    @property
    def precision(self) -> float:
        """TP among every request assigned to a monitored class (1 when none is: no wrong claim made)."""
        accepted = self.tp + self.wp + self.fp
        return self.tp / accepted if accepted else 1.0

    def r_precision(self, r: float) -> float:
        """Wang's r-precision: the precision at an unmonitored-to-monitored base rate of *r*."""
        return r_precision(self.tpr, self.wpr, self.fpr, r)

    def to_json(self, base_rates: Sequence[float] = BASE_RATES) -> dict[str, Any]:
        return {**asdict(self), "n_monitored": self.n_monitored, "n_unmonitored": self.n_unmonitored,
                "tpr": self.tpr, "wpr": self.wpr, "fpr": self.fpr, "precision": self.precision,
                "recall": self.recall,
                "r_precision": {f"1:{r:g}": self.r_precision(r) for r in base_rates}}


def _ratio(a: int, b: int) -> float:
    return a / b if b else float("nan")


def r_precision(tpr: float, wpr: float, fpr: float, r: float) -> float:
    """TPR / (TPR + WPR + r x FPR) (Wang, S&P 2020); 1 when nothing is ever accepted (no wrong claim)."""
    if r < 0:
        raise OpenWorldError(f"a base rate cannot be negative (got {r})")
    if any(math.isnan(v) for v in (tpr, wpr, fpr)):
        return float("nan")
    denominator = tpr + wpr + r * fpr
    return tpr / denominator if denominator > 0 else 1.0


def open_world_counts(truth: Sequence[str], predicted: Sequence[str], monitored: Sequence[str]) -> OpenWorldCounts:
    """Count the five cells; *predicted* is a monitored class, or anything else (rejected)."""
    truth_a, pred_a = np.asarray(truth, dtype=str), np.asarray(predicted, dtype=str)
    if truth_a.shape != pred_a.shape:
        raise OpenWorldError(f"{len(truth_a)} true labels but {len(pred_a)} decisions")
    mon = _monitored(monitored)
    is_mon, accepted = np.isin(truth_a, mon), np.isin(pred_a, mon)
    same = truth_a == pred_a
    return OpenWorldCounts(
        tp=int((is_mon & accepted & same).sum()), wp=int((is_mon & accepted & ~same).sum()),
        fn=int((is_mon & ~accepted).sum()), fp=int((~is_mon & accepted).sum()), tn=int((~is_mon & ~accepted).sum()))


def counts_from_confusion(matrix: Any, labels: Sequence[str], monitored: Sequence[str]) -> OpenWorldCounts:
    """The five cells from a confusion matrix (rows: truth, columns: decision, both in *labels*' order).

    The monitored classes are named, never taken by position: a label that is
    not monitored (``unmonitored``, ``unknown``, or an unmonitored class) is a
    rejection in a column and an unmonitored request in a row, wherever it is.
    """
    m = np.asarray(matrix, dtype=np.int64)
    if m.shape != (len(labels), len(labels)):
        raise OpenWorldError(f"a confusion matrix over {len(labels)} labels must be {len(labels)}x{len(labels)}, "
                             f"not {'x'.join(map(str, m.shape))}")
    mon = set(_monitored(monitored))
    is_mon = np.array([str(label) in mon for label in labels])
    diagonal = np.diag(m)
    tp = int(diagonal[is_mon].sum())
    accepted_mon = int(m[np.ix_(is_mon, is_mon)].sum())
    return OpenWorldCounts(tp=tp, wp=accepted_mon - tp, fn=int(m[np.ix_(is_mon, ~is_mon)].sum()),
                           fp=int(m[np.ix_(~is_mon, is_mon)].sum()), tn=int(m[np.ix_(~is_mon, ~is_mon)].sum()))


def _monitored(monitored: Sequence[str]) -> list[str]:
    mon = [str(m) for m in monitored]
    if not mon:
        raise OpenWorldError("the open world needs at least one monitored class")
    for reserved in (UNKNOWN, UNMONITORED):
        if reserved in mon:
            raise OpenWorldError(f"{reserved!r} cannot be a monitored class: it is what rejected requests are called")
    return mon


# --------------------------------------------------------------------------- scores and decisions


def monitored_scores(proba: Any, classes: Sequence[str], monitored: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the best monitored class and its score (its column of *proba*).

    *classes* name *proba*'s columns; columns of other classes (the trained
    ``unmonitored`` class) take probability away from the monitored ones but
    are never a monitored answer.
    """
    p = np.atleast_2d(np.asarray(proba, dtype=float))
    mon = _monitored(monitored)
    cols = [i for i, c in enumerate(classes) if str(c) in set(mon)]
    if not cols:
        raise OpenWorldError(f"none of the monitored classes {', '.join(mon)} is among the model's classes "
                             f"{', '.join(map(str, classes))}")
    sub = p[:, cols]
    best = sub.argmax(axis=1)
    labels = np.asarray([str(classes[c]) for c in cols], dtype=object)[best]
    return labels.astype(str), sub[np.arange(len(sub)), best]


def decide(best: Sequence[str], scores: Sequence[float], threshold: float) -> np.ndarray:
    """Each row's decision: its best monitored class when its score reaches *threshold*, else :data:`UNKNOWN`."""
    best_a, s = np.asarray(best, dtype=str), np.asarray(scores, dtype=float)
    return np.where(s >= threshold, best_a, UNKNOWN)


@dataclass(frozen=True)
class PRCurve:
    """Every rate at every distinct threshold, thresholds descending (so recall rises)."""

    thresholds: np.ndarray
    tp: np.ndarray
    wp: np.ndarray
    fp: np.ndarray
    n_monitored: int
    n_unmonitored: int

    @property
    def tpr(self) -> np.ndarray:
        return self.tp / self.n_monitored if self.n_monitored else np.full(len(self.tp), np.nan)

    recall = tpr

    @property
    def wpr(self) -> np.ndarray:
        return self.wp / self.n_monitored if self.n_monitored else np.full(len(self.wp), np.nan)

    @property
    def fpr(self) -> np.ndarray:
        return self.fp / self.n_unmonitored if self.n_unmonitored else np.full(len(self.fp), np.nan)

    @property
    def precision(self) -> np.ndarray:
        accepted = self.tp + self.wp + self.fp
        return np.where(accepted > 0, self.tp / np.maximum(accepted, 1), 1.0)

    def r_precision(self, r: float) -> np.ndarray:
        return np.array([r_precision(a, b, c, r) for a, b, c in zip(self.tpr, self.wpr, self.fpr)])

    def counts_at(self, threshold: float) -> OpenWorldCounts:
        """The cells when every score at or above *threshold* is accepted."""
        i = np.flatnonzero(self.thresholds >= threshold)
        tp, wp, fp = (int(a[i[-1]]) if len(i) else 0 for a in (self.tp, self.wp, self.fp))
        return OpenWorldCounts(tp, wp, self.n_monitored - tp - wp, fp, self.n_unmonitored - fp)

    def to_json(self, points: int = 101) -> dict[str, Any]:
        """The curve thinned to at most *points* thresholds (JSON for the stored summary)."""
        keep = np.unique(np.linspace(0, len(self.thresholds) - 1, min(points, len(self.thresholds))).round()
                         .astype(int)) if len(self.thresholds) else np.array([], dtype=int)
        return {"thresholds": self.thresholds[keep].tolist(), "precision": self.precision[keep].tolist(),
                "recall": self.recall[keep].tolist(), "fpr": self.fpr[keep].tolist(),
                "n_monitored": self.n_monitored, "n_unmonitored": self.n_unmonitored}


def pr_curve(truth: Sequence[str], best: Sequence[str], scores: Sequence[float],
             monitored: Sequence[str]) -> PRCurve:
    """TP, WP and FP at every distinct score used as threshold (accept when score >= threshold)."""
    truth_a, best_a = np.asarray(truth, dtype=str), np.asarray(best, dtype=str)
    s = np.asarray(scores, dtype=float)
    if not len(truth_a) == len(best_a) == len(s):
        raise OpenWorldError("truth, best classes and scores must have one entry per request")
    is_mon = np.isin(truth_a, _monitored(monitored))
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    tp = np.cumsum((is_mon & (truth_a == best_a))[order])
    wp = np.cumsum((is_mon & (truth_a != best_a))[order])
    fp = np.cumsum((~is_mon)[order])
    # one point per distinct score: the last row of each run of equal scores
    last = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True]) if len(s) else np.array([], dtype=int)
    return PRCurve(s_sorted[last], tp[last], wp[last], fp[last], int(is_mon.sum()), int((~is_mon).sum()))


# --------------------------------------------------------------------------- choosing the threshold


@dataclass(frozen=True)
class ThresholdTarget:
    """What the threshold is chosen for: ``precision=0.9`` (reach it) or ``fpr=0.01`` (stay at or under it)."""

    kind: str
    value: float

    @classmethod
    def parse(cls, text: "str | ThresholdTarget") -> "ThresholdTarget":
        if isinstance(text, ThresholdTarget):
            return text
        kind, eq, value = str(text).strip().partition("=")
        kind = kind.strip().lower()
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not eq or kind not in TARGET_KINDS or not 0 <= number <= 1:
            raise OpenWorldError(f"a threshold target is precision=P or fpr=F with a number from 0 to 1, "
                                 f"not {text!r}")
        return cls(kind, number)

    def __str__(self) -> str:
        return f"{self.kind}={self.value:g}"


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold, what it was chosen for, and what it gave on the data it was chosen on."""

    threshold: float
    target: str
    reached: bool
    train: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "target": self.target, "reached": self.reached, "train": self.train}


def choose_threshold(truth: Sequence[str], best: Sequence[str], scores: Sequence[float], monitored: Sequence[str],
                     target: "str | ThresholdTarget") -> ThresholdChoice:
    """The lowest threshold (the most recall) that meets *target* on these (training) scores.

    ``precision=P``: precision at least P. ``fpr=F``: false-positive rate at
    most F, which needs unmonitored requests among the scores. When no
    threshold meets the target, the one with the best precision (or the lowest
    FPR) is kept and :attr:`ThresholdChoice.reached` is False.
    """
    goal = ThresholdTarget.parse(target)
    curve = pr_curve(truth, best, scores, monitored)
    if not len(curve.thresholds):
        raise OpenWorldError("no scores to choose a threshold on")
    if goal.kind == "fpr":
        if not curve.n_unmonitored:
            raise OpenWorldError("a false-positive-rate target needs unmonitored requests in the training data",
                                 hint="train with unmonitored classes too, or give a precision target")
        rate = curve.fpr
        ok = rate <= goal.value + 1e-12
        fallback = int(np.argmin(rate))
    else:
        rate = curve.precision
        ok = rate >= goal.value - 1e-12
        fallback = int(np.argmax(rate))
    reached = bool(ok.any())
    i = int(np.flatnonzero(ok)[-1]) if reached else fallback
    threshold = float(curve.thresholds[i])
    counts = curve.counts_at(threshold)
    return ThresholdChoice(threshold, str(goal), reached, counts.to_json())


# --------------------------------------------------------------------------- the figure


def pr_figure(curves: Mapping[str, Mapping[str, Any]], *, title: str = "") -> Any:
    """Precision against recall over the threshold, one line per entry (a ``PRCurve.to_json`` each).

    A matplotlib ``Figure`` (no pyplot); a dot marks each entry's chosen
    threshold when the entry holds ``chosen: {"precision": .., "recall": ..}``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, (name, curve) in enumerate(curves.items()):
        color = f"C{i % 10}"
        ax.plot(curve["recall"], curve["precision"], color=color, label=name, lw=1.4)
        chosen = curve.get("chosen")
        if chosen:
            ax.plot([chosen["recall"]], [chosen["precision"]], "o", color=color, ms=5)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (true-positive rate of monitored requests)")
    ax.set_ylabel("precision")
    ax.set_title(title or "open world: precision and recall over the threshold", fontsize=10)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


__all__ = ["BASE_RATES", "OpenWorldCounts", "OpenWorldError", "PRCurve", "TARGET_KINDS", "ThresholdChoice",
           "ThresholdTarget", "UNKNOWN", "UNMONITORED", "choose_threshold", "counts_from_confusion", "decide",
           "monitored_scores", "open_world_counts", "pr_curve", "pr_figure", "r_precision"]
