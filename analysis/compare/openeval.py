"""Open-world evaluation in the comparison: splits that hold unmonitored classes out, the trial, the summary.

``analyze run --open-world --monitored A,B`` (``RunSettings.monitored``) turns
every trial into an open-world one:

* **splits**: the monitored classes' captures are split as in the closed world
  (random 80/20, or grouped by ``--split-by``); the unmonitored classes are
  split *by class*: each trial holds about ``test_size`` of them out (at least
  one), so every unmonitored request of the test part comes from a class the
  model never saw. The other unmonitored classes are trained on as one class,
  :data:`~echolab.analysis.compare.openworld.UNMONITORED`.
* **the trial**: as a closed-world trial (scaler, grid search by accuracy,
  refit), then each request's best monitored class and its probability
  (:func:`~echolab.analysis.compare.openworld.monitored_scores`); the threshold
  is chosen for the run's target on out-of-fold scores of the *training* part
  (folds that hold each unmonitored class out whole, as the test part does),
  never on the test part; the test part is scored
  at that threshold (the trial's accuracy: the share of test requests decided
  right, unmonitored ones as ``unknown``) and kept whole for the curve.
* **the summary**: per feature set and model, the rates at the chosen
  threshold (mean over trials), r-precision at 1:1, 1:10, 1:100, and one
  precision-recall curve over the threshold from every trial's test scores.

Metrics are those of :mod:`.openworld` (Wang, IEEE S&P 2020).
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any, Sequence

import numpy as np

from echolab.analysis.compare.grids import ModelSpec
from echolab.analysis.compare.openworld import (
    BASE_RATES,
    UNKNOWN,
    UNMONITORED,
    OpenWorldCounts,
    ThresholdTarget,
    choose_threshold,
    decide,
    monitored_scores,
    open_world_counts,
    pr_curve,
)
from echolab.analysis.compare.trials import ProtocolError, Split, TrialOutcome, trial_seed

#: The threshold target of a run that names none.
DEFAULT_TARGET = "precision=0.9"


def check_monitored(classes: Sequence[str], monitored: Sequence[str]) -> None:
    """Refuse a monitored set the data cannot evaluate, naming what is wrong."""
    missing = [m for m in monitored if m not in classes]
    if missing:
        raise ProtocolError(f"--monitored names {', '.join(missing)}, which the data does not hold "
                            f"(it holds {', '.join(classes)})")
    if UNKNOWN in classes or UNMONITORED in classes:
        raise ProtocolError(f"a class of the data is called {UNKNOWN!r} or {UNMONITORED!r}, which the open world "
                            "reserves for rejected requests; rename it")
    if len(set(monitored)) < 2:
        raise ProtocolError("the open world needs at least 2 monitored classes (--monitored A,B,...)")
    if not set(classes) - set(monitored):
        raise ProtocolError("every class of the data is monitored: an open world needs unmonitored classes too",
                            hint="collect or import other requests (the unmonitored prompt pool), or monitor fewer")


def open_world_classes(monitored: Sequence[str]) -> list[str]:
    """The labels an open-world trial's confusion matrix is over: the monitored classes, then ``unknown``."""
    return [*monitored, UNKNOWN]


def open_splits(y: np.ndarray, monitored: Sequence[str], monitored_splits: Any, *, trials_seed: int,
                test_size: float, target: str = DEFAULT_TARGET) -> list[Split]:
    """Add the unmonitored classes to each split of the monitored rows, held out by class.

    *monitored_splits* is a function of the monitored rows' labels (and their
    positions) returning closed-world splits of those rows; their indices are
    mapped back to *y*'s.
    """
    y = np.asarray(y).astype(str)
    check_monitored(sorted(set(y.tolist())), monitored)
    mon_rows = np.flatnonzero(np.isin(y, list(monitored)))
    other = sorted(set(y.tolist()) - set(monitored))
    n_out = max(1, min(len(other), round(test_size * len(other))))
    if ThresholdTarget.parse(target).kind == "fpr" and len(other) - n_out < 1:
        raise ProtocolError(f"a false-positive-rate target needs unmonitored classes to train on besides the "
                            f"{n_out} held out per trial; the data has {len(other)} ({', '.join(other)})",
                            hint="give a precision target, or add unmonitored classes")
    out = []
    for split in monitored_splits(mon_rows):
        rng = np.random.default_rng(trial_seed(trials_seed, split.trial))
        held = set(rng.permutation(other)[:n_out].tolist())
        un_test = np.flatnonzero(np.isin(y, sorted(held)))
        un_train = np.flatnonzero(np.isin(y, sorted(set(other) - held)))
        train = np.concatenate([mon_rows[split.train], un_train])
        test = np.concatenate([mon_rows[split.test], un_test])
        out.append(Split(split.trial, train, test, split.test_group,
                         tuple(sorted(held)), split.dropped))
    return out


def run_open_trial(X: np.ndarray, y: np.ndarray, split: Split, spec: ModelSpec, monitored: Sequence[str], *,
                   seed: int, cv_folds: int = 3, target: str = DEFAULT_TARGET) -> TrialOutcome:
    """One open-world trial (see the module's docstring); the outcome's ``extra["open_world"]`` holds its rates."""
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import confusion_matrix, f1_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.preprocessing import StandardScaler

    from echolab.analysis.compare.search import grid_search

    start = time.perf_counter()
    goal = ThresholdTarget.parse(target)
    rs = trial_seed(seed, split.trial)
    y = np.asarray(y).astype(str)
    mon = list(monitored)
    as_trained = np.where(np.isin(y, mon), y, UNMONITORED)
    x_train, x_test = X[split.train], X[split.test]
    if spec.scale:
        scaler = StandardScaler().fit(x_train)
        x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    x_train, x_test = x_train.astype(spec.dtype, copy=False), x_test.astype(spec.dtype, copy=False)
    y_train, y_test = as_trained[split.train], y[split.test]
    _, counts = np.unique(y_train, return_counts=True)
    if counts.min() < cv_folds:
        raise ProtocolError(f"a class has fewer than {cv_folds} training captures; {cv_folds}-fold CV is impossible")
    folds = list(StratifiedKFold(n_splits=cv_folds).split(x_train, y_train))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        search = grid_search(spec.build(random_state=rs), spec.param_grid(), x_train, y_train, folds,
                             engine=spec.engine)
        model = _with_probabilities(search.best_estimator, x_train, y_train)
        oof = cross_val_predict(clone(model), x_train, y_train, cv=threshold_folds(y[split.train], mon, cv_folds),
                                method="predict_proba")
    classes = [str(c) for c in model.classes_]
    train_best, train_score = monitored_scores(oof, classes, mon)
    choice = choose_threshold(y_train, train_best, train_score, mon, goal)
    best, score = monitored_scores(model.predict_proba(x_test), classes, mon)
    decided = decide(best, score, choice.threshold)
    counts_at = open_world_counts(y_test, decided, mon)
    truth_open = np.where(np.isin(y_test, mon), y_test, UNKNOWN)
    labels = open_world_classes(mon)
    is_mon = np.isin(y_test, mon)
    closed = float((best[is_mon] == y_test[is_mon]).mean()) if is_mon.any() else float("nan")
    kind = np.where(is_mon, np.where(best == y_test, 0, 1), 2)  # 0: right class, 1: other monitored, 2: unmonitored
    return TrialOutcome(
        accuracy=float((decided == truth_open).mean()),
        f1_macro=float(f1_score(truth_open, decided, labels=labels, average="macro", zero_division=0)),
        best_params={k: _plain(v) for k, v in search.best_params.items()},
        cv_best_score=search.best_score,
        confusion=confusion_matrix(truth_open, decided, labels=labels).tolist(),
        importances=None,
        convergence_warnings=sum(1 for w in caught if issubclass(w.category, ConvergenceWarning)),
        seconds=time.perf_counter() - start,
        n_train=int(len(split.train)), n_test=int(len(split.test)), test_group=split.test_group,
        extra={"fits": search.n_fits + cv_folds, "open_world": {
            "monitored": mon, "unmonitored_test": list(split.classes or ()),
            "unmonitored_train": sorted(set(y[split.train].tolist()) - set(mon)),
            "threshold": choice.to_json(), "counts": counts_at.to_json(), "closed_accuracy": closed,
            "scores": [round(float(s), 6) for s in score], "kinds": kind.astype(int).tolist()}},
        choice=search.choice(),
    )


def threshold_folds(y_train: np.ndarray, monitored: Sequence[str], cv_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds of the training part for the threshold's out-of-fold scores, unmonitored classes held out by class.

    As on the test part, each unmonitored request is scored by a model that
    never saw its class; monitored captures are spread over the folds by class.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    y_train = np.asarray(y_train).astype(str)
    is_mon = np.isin(y_train, list(monitored))
    groups = np.where(is_mon, np.char.add("capture ", np.arange(len(y_train)).astype(str)), y_train)
    labels = np.where(is_mon, y_train, UNMONITORED)
    return list(StratifiedGroupKFold(n_splits=cv_folds).split(np.zeros(len(labels)), labels, groups))


def _with_probabilities(estimator: Any, X: np.ndarray, y: np.ndarray) -> Any:
    """*estimator*, or one that gives probabilities for it: an SVM's decision values calibrated by Platt's
    sigmoid (scikit-learn's ``CalibratedClassifierCV``, one model fit on all of *X*, calibrated out of fold)."""
    if hasattr(estimator, "predict_proba"):
        return estimator
    if not hasattr(estimator, "decision_function"):
        raise ProtocolError(f"{type(estimator).__name__} gives neither probabilities nor decision values, so it "
                            "cannot reject requests")
    from sklearn.base import clone
    from sklearn.calibration import CalibratedClassifierCV

    _, counts = np.unique(y, return_counts=True)
    folds = int(max(2, min(3, counts.min() * 2 // 3)))  # it is refit on out-of-fold parts (2/3) for the threshold
    return CalibratedClassifierCV(clone(estimator), method="sigmoid", cv=folds, ensemble=False).fit(X, y)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------- the summary


def pooled_curve(outcomes: Sequence[dict[str, Any]], monitored: Sequence[str]) -> Any:
    """One PR curve from every trial's test scores (each trial's requests counted once)."""
    scores = np.concatenate([np.asarray(o["scores"], dtype=float) for o in outcomes]) if outcomes else np.array([])
    kinds = np.concatenate([np.asarray(o["kinds"], dtype=int) for o in outcomes]) if outcomes else np.array([])
    mon = list(monitored)
    # rebuild labels the curve understands: kind 0 right class, 1 another monitored class, 2 unmonitored
    truth = np.where(kinds == 2, UNMONITORED, mon[0])
    other = mon[1] if len(mon) > 1 else UNKNOWN
    best = np.where(kinds == 1, other, mon[0])
    return pr_curve(truth, best, scores, mon)


def open_world_cell(results: Sequence[dict[str, Any]], monitored: Sequence[str]) -> dict[str, Any]:
    """Mean rates at each trial's chosen threshold, the thresholds, and the pooled curve of a cell."""
    ows = [r["extra"]["open_world"] for r in results if "open_world" in r.get("extra", {})]
    if not ows:
        return {"n": 0}
    keys = ("tpr", "wpr", "fpr", "precision", "recall")
    cell: dict[str, Any] = {"n": len(ows)}
    for k in keys:
        cell[k] = _mean([o["counts"][k] for o in ows])
    for r in BASE_RATES:
        cell[f"r_precision_1:{r}"] = _mean([o["counts"]["r_precision"][f"1:{r}"] for o in ows])
    cell["closed_accuracy"] = _mean([o["closed_accuracy"] for o in ows])
    cell["threshold"] = _mean([o["threshold"]["threshold"] for o in ows])
    cell["target_reached"] = sum(bool(o["threshold"]["reached"]) for o in ows)
    curve = pooled_curve(ows, monitored)
    cell["curve"] = {**curve.to_json(), "chosen": {"precision": cell["precision"], "recall": cell["recall"]}}
    summed = OpenWorldCounts(*(sum(o["counts"][k] for o in ows) for k in ("tp", "wp", "fn", "fp", "tn")))
    cell["pooled"] = summed.to_json()
    return cell


def _mean(values: Sequence[float]) -> float:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(vals)) if vals else float("nan")


def open_world_summary(plan: Sequence[Any], rows: dict[str, Any], monitored: Sequence[str], target: str,
                       classes: Sequence[str]) -> dict[str, Any]:
    """The run's ``summary["open_world"]``: the setting and a cell per feature set and model."""
    by_cell: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for key, feature, spec, _split in plan:
        if key in rows:
            by_cell.setdefault((feature.key, spec.name), []).append(rows[key].result)
    cells: dict[str, dict[str, Any]] = {}
    for (fkey, model), results in by_cell.items():
        cells.setdefault(fkey, {})[model] = open_world_cell(results, monitored)
    return {"monitored": list(monitored), "unmonitored": sorted(set(classes) - set(monitored)),
            "target": str(ThresholdTarget.parse(target)), "base_rates": list(BASE_RATES), "cells": cells}


def curves_figure(summary: dict[str, Any]) -> Any:
    """The PR curves of every cell of ``summary["open_world"]`` on one matplotlib ``Figure``."""
    from echolab.analysis.compare.openworld import pr_figure

    curves = {f"{fkey} / {model}": cell["curve"] for fkey, by_model in summary["cells"].items()
              for model, cell in by_model.items() if cell.get("n")}
    return pr_figure(curves, title=f"open world: {len(summary['monitored'])} monitored classes, "
                                   f"threshold for {summary['target']} (dots)")


__all__ = ["DEFAULT_TARGET", "check_monitored", "curves_figure", "open_splits", "open_world_cell",
           "open_world_classes", "open_world_summary", "pooled_curve", "run_open_trial"]
