"""A reject option for model files: say ``unknown`` when no monitored class is likely enough.

``echolab analyze train --reject precision=0.95`` (or ``fpr=0.01``) chooses a
threshold on the training data and stores it in the model file's header
(:meth:`~echolab.analysis.compare.modelfile.TrainedModel.header`, key
``reject``): plain numbers and names, readable without loading the model. A
request whose best monitored class has a probability under the threshold is
``unknown`` (:data:`~echolab.analysis.compare.openworld.UNKNOWN`), and its score
is still reported, so ``classify`` and the timeline show what was rejected.

The threshold is chosen as an open-world trial chooses it
(:mod:`.openeval`): on out-of-fold probabilities of the training captures, with
each unmonitored class (``--unmonitored``, trained on as one class
``unmonitored``) held out whole, so the training data's unmonitored requests
are scored by models that never saw their class. A false-positive-rate target
needs such classes; a precision target works without them.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from echolab.analysis.compare.openworld import (
    UNKNOWN,
    UNMONITORED,
    ThresholdTarget,
    choose_threshold,
    decide,
    monitored_scores,
)

if TYPE_CHECKING:
    from echolab.analysis.compare.modelfile import TrainedModel


def trained_labels(y: np.ndarray, unmonitored: Sequence[str]) -> np.ndarray:
    """*y* with every class of *unmonitored* renamed :data:`UNMONITORED` (what the model learns)."""
    y = np.asarray(y).astype(str)
    return np.where(np.isin(y, list(unmonitored)), UNMONITORED, y)


def with_probabilities(estimator: Any, X: np.ndarray, y: np.ndarray) -> Any:
    """*estimator*, refit with probabilities when it has them only as an option (an SVM: Platt scaling)."""
    from echolab.analysis.compare.openeval import _with_probabilities

    return _with_probabilities(estimator, X, y)


def choose_reject(estimator: Any, X: np.ndarray, y: np.ndarray, unmonitored: Sequence[str], target: str, *,
                  cv_folds: int = 3) -> dict[str, Any]:
    """The ``reject`` header entry: the threshold chosen for *target* on out-of-fold training scores.

    *y* holds the original classes (the unmonitored ones by name, so that each
    is held out whole); *estimator* is the fitted model (its parameters are
    refit per fold).
    """
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_predict

    from echolab.analysis.compare.openeval import threshold_folds

    goal = ThresholdTarget.parse(target)
    y = np.asarray(y).astype(str)
    monitored = sorted(set(y.tolist()) - set(unmonitored))
    learned = trained_labels(y, unmonitored)
    folds = threshold_folds(y, monitored, cv_folds)
    oof = cross_val_predict(clone(estimator), X, learned, cv=folds, method="predict_proba")
    classes = sorted(set(learned.tolist()))  # cross_val_predict orders columns as the estimator's classes_
    best, score = monitored_scores(oof, classes, monitored)
    choice = choose_threshold(learned, best, score, monitored, goal)
    return {"threshold": choice.threshold, "target": choice.target, "reached": choice.reached,
            "monitored": monitored, "unmonitored": sorted(unmonitored), "train": choice.train}


def train_with_reject(source: Any, feature: str = "combined", model: str | None = None, *,
                      reject: str | None = None, unmonitored: Sequence[str] = (),
                      grids_path: str | Path | None = None, seed: int = 0, cv_folds: int = 3) -> "TrainedModel":
    """:func:`~echolab.analysis.compare.modelfile.train_model`, with *unmonitored* classes and a reject option.

    The *unmonitored* classes of *source* are learned as one class,
    :data:`UNMONITORED`; *reject* (``precision=P`` or ``fpr=F``) chooses a
    threshold (:func:`choose_reject`) under which a request is ``unknown``,
    kept in the model's ``reject`` entry and so in its file's header. A
    classifier without probabilities is calibrated to give them
    (:func:`with_probabilities`).
    """
    from sklearn.exceptions import ConvergenceWarning

    from echolab.analysis.compare.modelfile import DEFAULT_MODEL, train_model
    from echolab.analysis.compare.openworld import OpenWorldError
    from echolab.analysis.compare.specs import AnalysisError

    src = source.canonical()
    missing = sorted(set(unmonitored) - set(src.y.tolist()))
    if missing:
        raise AnalysisError(f"--unmonitored names {', '.join(missing)}, which the training data does not hold")
    learned = replace(src, y=trained_labels(src.y, unmonitored)) if unmonitored else src
    trained = train_model(learned, feature, model or DEFAULT_MODEL, grids_path=grids_path, seed=seed,
                          cv_folds=cv_folds)
    if not reject:
        return trained
    X = trained.matrix(learned.records)  # the training rows as the classifier was fitted on them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # as a trial: the MLP may stop at max_iter
        try:
            estimator = with_probabilities(trained.estimator, X, learned.y)
            rejecting = choose_reject(estimator, X, src.y, unmonitored, reject, cv_folds=cv_folds)
        except OpenWorldError as exc:
            raise AnalysisError(str(exc), hint=exc.hint) from exc
    return replace(trained, estimator=estimator, reject=rejecting)


def predict_with_reject(estimator: Any, X: np.ndarray, reject: dict[str, Any] | None) -> tuple[list[str], list[float | None]]:
    """Each row's class (or ``unknown``) and its score.

    With a ``reject`` entry: the best monitored class when its probability
    reaches the threshold, else ``unknown``, the score being that probability.
    Without one: the classifier's own answer, ``unmonitored`` shown as
    ``unknown``, with its probability.
    """
    if not hasattr(estimator, "predict_proba"):
        labels = [str(v) for v in estimator.predict(X)]
        return [UNKNOWN if lab == UNMONITORED else lab for lab in labels], [None] * len(labels)
    proba = estimator.predict_proba(X)
    classes = [str(c) for c in estimator.classes_]
    if reject:
        monitored = [c for c in classes if c != UNMONITORED]
        best, score = monitored_scores(proba, classes, monitored)
        labels = decide(best, score, float(reject["threshold"]))
        return [str(v) for v in labels], [float(v) for v in score]
    top = proba.argmax(axis=1)
    labels = [classes[i] for i in top]
    return ([UNKNOWN if lab == UNMONITORED else lab for lab in labels],
            [float(proba[r, i]) for r, i in enumerate(top)])


__all__ = ["choose_reject", "predict_with_reject", "train_with_reject", "trained_labels", "with_probabilities"]
