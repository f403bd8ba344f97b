"""The protocol's grid search: what ``GridSearchCV`` computes, with less repeated work.

:func:`grid_search` gives the result of

    GridSearchCV(estimator, grid, cv=StratifiedKFold(k), scoring="accuracy", refit=True).fit(X, y)

-- the same candidates in the same order (``ParameterGrid``), the same folds,
the same fits (a fresh clone per candidate and fold, carrying the trial's
integer ``random_state``), the same mean-over-folds scores, the same tie rule
(the first best candidate in grid order) and the same refit -- and says which
candidates tied with the best (:attr:`SearchResult.tied`), so a report does not
present the first of equals as a winner -- while

* fitting candidates that build the same model once: ``max_features="sqrt"``
  and ``"log2"`` both mean 4 features on 22 columns, and a tree only ever sees
  that count, so the forest's 4 candidates are 2 distinct models there;
* fitting forests through :mod:`echolab.analysis.compare.fastfit` (the same trees, built
  with a fraction of the per-tree overhead), and scoring their folds through it (the same
  probabilities, summed without a dispatch per tree);
* training an MLP grid's candidates x folds in lockstep, as one batched computation
  (:mod:`echolab.analysis.compare.mlpbatch`: scikit-learn's fit step for step, equal up to
  floating-point rounding);
* growing a forest once for all its ``n_estimators`` candidates: the trees of a forest
  are seeded in order from its one random stream, so with the same ``random_state``
  the first k trees of a 400-tree forest are the k trees of a k-tree forest
  (:func:`forest_prefix`, checked tree by tree in ``tests/test_analysis_search.py``);
* splitting the folds once per trial instead of once per candidate;
* skipping ``GridSearchCV``'s per-fit bookkeeping (timings, result tables,
  parameter re-validation, a parallel backend for one job).

``tests/test_analysis_search.py`` checks it against ``GridSearchCV`` itself.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn.base import ClassifierMixin, clone
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import ParameterGrid
from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

from echolab.analysis.compare import fastfit, mlpbatch
from echolab.analysis.compare.fastfit import feature_count

#: Estimators whose trees resolve ``max_features`` to a feature count before building anything.
_TREE_MODELS = (DecisionTreeClassifier, ExtraTreeClassifier, RandomForestClassifier, ExtraTreesClassifier)

Folds = Sequence[tuple[np.ndarray, np.ndarray]]


@dataclass
class SearchResult:
    """What a grid search found: the refit best model and how it was chosen."""

    best_index: int
    best_params: dict[str, Any]
    best_score: float | None  # None: an empty grid, nothing cross-validated
    best_estimator: ClassifierMixin
    mean_scores: list[float]
    n_fits: int  # fits actually run, the refit included
    candidates: list[dict[str, Any]] = field(default_factory=list)
    tied: list[int] = field(default_factory=list)  # candidates with the best mean score, the best included
    same_model: list[int] = field(default_factory=list)  # candidates that build the best's very model

    def choice(self) -> dict[str, str]:
        """Each parameter's chosen value, as text; tied values joined by " = " (see :func:`describe_choice`)."""
        return describe_choice(self.candidates, self.best_index, self.tied, self.same_model)


def describe_choice(candidates: Sequence[Mapping[str, Any]], best: int, tied: Sequence[int],
                    same_model: Sequence[int]) -> dict[str, str]:
    """What a grid search chose, per parameter, without crowning the first of equals.

    A parameter whose value differs among the tied candidates reads
    ``"sqrt = log2 (same model)"`` when every tied candidate builds the best
    one's model (a tree's ``sqrt`` and ``log2`` on 16 to 24 columns), else
    ``"gini = entropy (tie)"``: the search kept the first in grid order, which
    says nothing about which value is better.
    """
    out: dict[str, str] = {}
    if not candidates:
        return out
    why = "same model" if set(tied) <= set(same_model) else "tie"
    for param, value in candidates[best].items():
        values = [_text(value)]
        for i in tied:
            text = _text(candidates[i][param])
            if text not in values:
                values.append(text)
        out[param] = values[0] if len(values) == 1 else " = ".join(values) + f" ({why})"
    return out


def _text(value: Any) -> str:
    return json.dumps(list(value)) if isinstance(value, (list, tuple)) else str(value)


def grid_search(
    estimator: ClassifierMixin, grid: Mapping[str, list[Any]], X: np.ndarray, y: np.ndarray, folds: Folds,
    *, engine: str = "numpy",
) -> SearchResult:
    """Score every candidate of *grid* by mean fold accuracy, then refit the best on all of *X*.

    An empty grid has nothing to choose: the model is fitted once on all of
    *X*, without cross-validation (``best_score`` is None). The sequence
    models use this: a deep model validates on its own held-out part.
    *engine* trains the MLPs the lockstep trainer reproduces: ``numpy``
    (:mod:`.mlpbatch`) or ``jax`` (:mod:`.mlpjax`, the ``deep`` extra: equal
    within rounding grown over the epochs, not step for step).
    """
    if not grid:
        return SearchResult(0, {}, None, _refit_one(estimator, {}, X, y, engine), [], 1)
    candidates = list(ParameterGrid(dict(grid)))
    if mlpbatch.applies(estimator, grid):
        try:
            return _lockstep_search(estimator, candidates, X, y, folds, engine)
        except mlpbatch.NotLockstep:
            pass
    scores = np.empty((len(candidates), len(folds)), dtype=np.float64)
    done: dict[tuple[tuple[str, str], ...], int] = {}
    grown: dict[tuple[Any, int], ClassifierMixin] = {}  # (the rest of the candidate, fold): its largest forest
    largest = _largest_forests(estimator, candidates)
    n_fits = 0
    for i, params in enumerate(candidates):
        same = done.setdefault(model_identity(estimator, params, X.shape[1]), i)
        if same != i:
            scores[i] = scores[same]
            continue
        for j, (train, test) in enumerate(folds):
            if i in largest:  # a smaller forest of an n_estimators grid: the first trees of the largest
                rest, n_max = largest[i]
                if (rest, j) not in grown:
                    grown[(rest, j)] = _fit(estimator, {**params, "n_estimators": n_max}, X[train], y[train])
                    n_fits += 1
                model = forest_prefix(grown[(rest, j)], params["n_estimators"])
            else:
                model = _fit(estimator, params, X[train], y[train])
                n_fits += 1
            scores[i, j] = accuracy_score(y[test], fastfit.predict(model, X[test]))
    return _result(estimator, candidates, scores, X, y, n_fits, engine)


def _lockstep_search(estimator: ClassifierMixin, candidates: list[dict[str, Any]], X: np.ndarray, y: np.ndarray,
                     folds: Folds, engine: str = "numpy") -> SearchResult:
    """The grid's candidates x folds trained together (mlpbatch or mlpjax), scored as GridSearchCV scores them."""
    models = _trainer(engine)(estimator, candidates, X, y, [train for train, _ in folds])
    scores = np.array([[accuracy_score(y[test], models[i][j].predict(X[test])) for j, (_, test) in enumerate(folds)]
                       for i in range(len(candidates))], dtype=np.float64)
    return _result(estimator, candidates, scores, X, y, len(candidates) * len(folds), engine)


def _result(estimator: ClassifierMixin, candidates: list[dict[str, Any]], scores: np.ndarray, X: np.ndarray,
            y: np.ndarray, n_fits: int, engine: str = "numpy") -> SearchResult:
    """GridSearchCV's choice from a (candidates x folds) score table, and the refit of the best."""
    means = np.average(scores, axis=1)  # as GridSearchCV: row means of a (candidates x folds) array
    best = int(rankdata(-means, method="min").argmin())
    best_params = candidates[best]
    identity = model_identity(estimator, best_params, X.shape[1])
    tied = [i for i in range(len(candidates)) if means[i] == means[best]]
    same = [i for i in range(len(candidates)) if model_identity(estimator, candidates[i], X.shape[1]) == identity]
    return SearchResult(best, best_params, float(means[best]), _refit_one(estimator, best_params, X, y, engine),
                        [float(m) for m in means], n_fits + 1, candidates, tied, same)


def _largest_forests(estimator: ClassifierMixin, candidates: list[dict[str, Any]]) -> dict[int, tuple[Any, int]]:
    """Candidates whose forest is a prefix of a larger candidate's: index -> (the other parameters, largest count)."""
    if not (isinstance(estimator, (RandomForestClassifier, ExtraTreesClassifier)) and prefix_applies(estimator)):
        return {}
    groups: dict[Any, list[int]] = {}
    for i, params in enumerate(candidates):
        n = params.get("n_estimators")
        if (not isinstance(n, (int, np.integer)) or isinstance(n, bool)
                or "oob_score" in params or "warm_start" in params):
            return {}
        rest = tuple(sorted((k, repr(v)) for k, v in params.items() if k != "n_estimators"))
        groups.setdefault(rest, []).append(i)
    out: dict[int, tuple[Any, int]] = {}
    for rest, members in groups.items():
        if len(members) > 1:
            n_max = max(int(candidates[i]["n_estimators"]) for i in members)
            out.update({i: (rest, n_max) for i in members})
    return out


def prefix_applies(forest: ClassifierMixin) -> bool:
    """Whether :func:`forest_prefix` of this forest is the smaller forest its fit would grow (integer seed, no OOB)."""
    rs = forest.get_params()["random_state"]
    return (isinstance(rs, (int, np.integer)) and not isinstance(rs, bool) and not forest.oob_score
            and not forest.warm_start)


def forest_prefix(forest: ClassifierMixin, n: int) -> ClassifierMixin:
    """The fitted forest of *n* trees grown under the same seed: the first *n* trees of *forest*.

    ``BaseForest.fit`` draws each tree's seed in turn from the forest's one
    random stream (``_make_estimator``), and a tree's bootstrap and splits
    depend only on its own seed, so the first *n* trees are the same whatever
    the total. Predictions average the trees in order, so they are equal too.
    """
    smaller = copy.copy(forest)
    smaller.n_estimators = int(n)
    smaller.estimators_ = list(forest.estimators_[:n])
    return smaller


def model_identity(estimator: ClassifierMixin, params: Mapping[str, Any], n_features: int) -> tuple[tuple[str, str], ...]:
    """What a candidate builds on data with *n_features* columns; equal identities fit equal models."""
    resolved = dict(params)
    if isinstance(estimator, _TREE_MODELS) and "max_features" in resolved:
        resolved["max_features"] = feature_count(resolved["max_features"], n_features)
    return tuple(sorted((k, repr(v)) for k, v in resolved.items()))


def _refit_one(estimator: ClassifierMixin, params: Mapping[str, Any], X: np.ndarray, y: np.ndarray,
               engine: str = "numpy") -> ClassifierMixin:
    """The fit on all of *X*: by the lockstep trainer where it applies (one network), else :func:`_fit`."""
    if mlpbatch.applies(estimator, {k: [v] for k, v in params.items()}):
        return _trainer(engine)(estimator, [params], X, y, [np.arange(len(y))])[0][0]
    return _fit(estimator, params, X, y)


def _trainer(engine: str) -> Any:
    """The lockstep trainer of *engine*: ``fit_many`` of :mod:`.mlpbatch` (numpy) or :mod:`.mlpjax` (jax)."""
    if engine == "jax":
        from echolab.analysis.compare import mlpjax

        return mlpjax.fit_many
    if engine != "numpy":
        raise ValueError(f"unknown MLP engine {engine!r}")
    return mlpbatch.fit_many


def _fit(estimator: ClassifierMixin, params: Mapping[str, Any], X: np.ndarray, y: np.ndarray) -> ClassifierMixin:
    """A fresh clone with *params*, fitted (what ``GridSearchCV`` does per fold and for the refit)."""
    model = clone(estimator)
    model.set_params(**clone(dict(params), safe=False))
    return fastfit.fit(model, X, y)
