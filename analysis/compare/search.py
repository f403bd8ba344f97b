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
  probabilities, summed without a dispatch per tree), or, where numba is installed, growing
  and scoring each candidate's fold forests in one compiled call
  (:mod:`echolab.analysis.compare.forestfused`: the same trees, node for node);
* fitting and predicting an SVC's folds by libsvm with the very arguments ``SVC.fit`` and
  ``SVC.predict`` give it (:class:`fastfit.SVCFolds`: the same predictions, without the checks
  and conversions each fit repeats, the folds' matrices and classes prepared once per grid);
* counting each fold's accuracy without ``accuracy_score``'s target checks (:func:`accuracy`,
  the same float);
* training an MLP grid's candidates x folds in lockstep, as one batched computation
  (:mod:`echolab.analysis.compare.mlpbatch`: scikit-learn's fit step for step, equal up to
  floating-point rounding);
* growing a forest once for all its ``n_estimators`` candidates: the trees of a forest
  are seeded in order from its one random stream, so with the same ``random_state``
  the first k trees of a 400-tree forest are the k trees of a k-tree forest
  (:func:`forest_prefix`, checked tree by tree in ``tests/test_analysis_search.py``);
* searching a k-NN grid's neighbours once per fold for all its ``n_neighbors`` and
  ``weights``: the k nearest are the first k of the largest search wherever no two
  distances near the k-th are close enough for rounding to reorder them
  (:func:`_neighbour_scores`; anything closer is predicted by the candidate's own model);
* splitting the folds once per trial instead of once per candidate;
* skipping ``GridSearchCV``'s per-fit bookkeeping (timings, result tables,
  parameter re-validation, a parallel backend for one job).

``tests/test_analysis_search.py`` checks it against ``GridSearchCV`` itself.
"""

from __future__ import annotations

import copy
import json
import numbers
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn.base import ClassifierMixin, clone
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.model_selection import ParameterGrid
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier
from sklearn.utils.extmath import weighted_mode

from echolab.analysis.compare import fastfit, forestfused, mlpbatch, mlpfused, svcfused
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
    shared = _neighbour_scores(estimator, candidates, X, y, folds)
    if shared is not None:
        return _result(estimator, candidates, shared[0], X, y, shared[1], engine)
    scores = np.empty((len(candidates), len(folds)), dtype=np.float64)
    done: dict[tuple[tuple[str, str], ...], int] = {}
    grown: dict[tuple[Any, int], ClassifierMixin] = {}  # (the rest of the candidate, fold): its largest forest
    largest = _largest_forests(estimator, candidates)
    svc = fastfit.SVCFolds.prepare(estimator, X, y, folds)  # an SVC grid's folds, prepared once for libsvm
    forests = None if largest else forestfused.ForestFolds.prepare(estimator, X, y, folds)  # the compiled builder's
    n_fits = 0
    for i, params in enumerate(candidates):
        same = done.setdefault(model_identity(estimator, params, X.shape[1]), i)
        if same != i:
            scores[i] = scores[same]
            continue
        lean = None if svc is None else svc.predictions(_configured(estimator, params))
        if lean is None and forests is not None:  # a forest's folds grown by the compiled builder: the same trees
            lean = forests.predictions(_configured(estimator, params))
        if lean is not None:  # an SVC's folds fitted and predicted by libsvm as SVC calls it, or a forest's as above
            scores[i] = [accuracy(y[test], predicted) for (_, test), predicted in zip(folds, lean)]
            n_fits += len(folds)
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
            scores[i, j] = accuracy(y[test], fastfit.predict(model, X[test]))
    return _result(estimator, candidates, scores, X, y, n_fits, engine)


def build_compiled(estimator: ClassifierMixin, grid: Mapping[str, list[Any]], engine: str = "numpy") -> None:
    """Build (or load from numba's cache) the compiled loops a grid search of *estimator* will use.

    Each set of loops is built once per process, at its first use; a caller that records the search's warnings
    (a trial counts its ConvergenceWarnings) builds them first, so that numba unable to compile them says so.
    """
    if engine == "numpy" and mlpbatch.applies(estimator, grid):
        mlpfused.kernels()
    elif type(estimator) is RandomForestClassifier:
        forestfused.kernels()
    elif type(estimator) is SVC:
        svcfused.kernels()


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """``accuracy_score(y_true, y_pred)`` of a fold's labels and a model's predictions of them, without its checks.

    scikit-learn's scorer first works out what kind of target each side is (``type_of_target``, which reads
    every label), more than the comparison costs on a fold of 200 captures. Here both sides are labels of
    the same classes, one per row: the score is the float64 mean of ``y_true == y_pred``, as
    ``accuracy_score`` takes it; a count of at most 2**53 matches divided once by the rows, the same number.
    Anything else (a column of labels, unequal lengths, no rows, labels that are not text, integers or
    booleans of one kind) is scored by ``accuracy_score`` itself, with its errors.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if (y_true.ndim == 1 and y_true.shape == y_pred.shape and len(y_true) and y_true.dtype.kind in "USiub"
            and y_true.dtype.kind == y_pred.dtype.kind):
        matches = np.asarray(y_true == y_pred)
        if matches.shape == y_true.shape:
            return float(np.count_nonzero(matches) / len(y_true))
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(y_true, y_pred))


def _lockstep_search(estimator: ClassifierMixin, candidates: list[dict[str, Any]], X: np.ndarray, y: np.ndarray,
                     folds: Folds, engine: str = "numpy") -> SearchResult:
    """The grid's candidates x folds trained together (mlpbatch or mlpjax), scored as GridSearchCV scores them."""
    models = _trainer(engine)(estimator, candidates, X, y, [train for train, _ in folds])
    scores = np.array([[accuracy(y[test], models[i][j].predict(X[test])) for j, (_, test) in enumerate(folds)]
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


#: How far apart, relative to the scale of the distances' arithmetic, two neighbours' distances must be for every
#: way scikit-learn computes them to order them alike (its rounding error is about 1e-14 of that scale).
_NEIGHBOUR_GAP = 1e-8


def _neighbour_scores(estimator: ClassifierMixin, candidates: list[dict[str, Any]], X: np.ndarray, y: np.ndarray,
                      folds: Folds) -> tuple[np.ndarray, int] | None:
    """A k-NN grid's fold scores with one neighbour search per fold for candidates that differ in k and weights.

    ``KNeighborsClassifier.predict`` finds each test row's k nearest training rows, then takes the
    most frequent class among them ("uniform") or the class of the largest sum of inverse distances
    ("distance"). For candidates alike but for ``n_neighbors`` and ``weights``, one search for the
    largest k plus one gives every smaller k's neighbours, their first k, and the predictions follow
    as ``predict`` makes them (:func:`_vote`). Where two distances at a cut (the k-th against the
    next) are closer than rounding could tell apart, scikit-learn's own search (its uniform path
    counts classes in a search of its own) might keep the other one: that candidate's fold is
    predicted by its own model instead. Each candidate is still fitted per fold as ``GridSearchCV``
    fits it, which for brute-force search only stores the rows; a grid whose search is not brute
    force, or whose metric is neither euclidean nor manhattan, is searched the ordinary way (None).
    """
    if (type(estimator) is not KNeighborsClassifier or not isinstance(X, np.ndarray) or X.dtype != np.float64
            or np.ndim(y) != 1):
        return None  # the gap below is sized for double precision; one label per row
    base = estimator.get_params()
    groups: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for i, params in enumerate(candidates):
        p = {**base, **params}
        k = p["n_neighbors"]
        if (not isinstance(k, numbers.Integral) or isinstance(k, bool) or p["weights"] not in ("uniform", "distance")
                or _norm_order(p) is None):
            return None
        groups.setdefault(tuple(sorted((n, repr(v)) for n, v in params.items()
                                       if n not in ("n_neighbors", "weights"))), []).append(i)
    scores = np.empty((len(candidates), len(folds)), dtype=np.float64)
    n_fits = 0
    # equal rows sit at equal distances, where scikit-learn's own search decides which it keeps
    repeats = [len(np.unique(X[train], axis=0)) < len(train) for train, _ in folds]
    for members in groups.values():
        ks = {i: int({**base, **candidates[i]}["n_neighbors"]) for i in members}
        order = _norm_order({**base, **candidates[members[0]]})
        for j, (train, test) in enumerate(folds):
            own = {i: _fit(estimator, candidates[i], X[train], y[train]) for i in members}
            n_fits += len(members)
            if any(getattr(m, "_fit_method", None) != "brute" or m.outputs_2d_ for m in own.values()):
                return None  # a tree search (as scikit-learn chose it), or several outputs: the ordinary way
            neighbours = None if repeats[j] else _shared_search(own[members[0]], max(ks.values()), X[train],
                                                                X[test], order)
            for i in members:
                k, model = ks[i], own[i]
                rows = model.n_samples_fit_
                if (neighbours is not None and (k == rows or (k < rows and neighbours[2][k]))
                        and (model.weights == "uniform" or not _tied_within(neighbours[0], k))):
                    predicted = _vote(model, y[train], neighbours[0][:, :k], neighbours[1][:, :k])
                else:  # a near-tie at this k's cut, a tie among distance-weighted neighbours, rows repeated, or
                    predicted = model.predict(X[test])  # k above the rows: the candidate's own search
                scores[i, j] = accuracy(y[test], predicted)
    return scores, n_fits


def _shared_search(model: KNeighborsClassifier, widest: int, train: np.ndarray, test: np.ndarray, order: int
                   ) -> tuple[np.ndarray, np.ndarray, dict[int, bool]]:
    """The test rows' ``widest + 1`` nearest neighbours (distances, indices) and, per k, whether the cut after
    the k-th is clear of rounding for every row (*train* holds no row twice)."""
    search = min(widest + 1, model.n_samples_fit_)  # one more than the largest k: its own cut is checked too
    dist, ind = model.kneighbors(test, n_neighbors=search)
    scale = _distance_scale(test, train, order)
    clear = {k: bool(np.all(_gap(dist, k, order) > _NEIGHBOUR_GAP * scale)) for k in range(1, search)}
    return dist, ind, clear


def _tied_within(dist: np.ndarray, k: int) -> bool:
    """Whether any row's first k distances hold two equal ones.

    Equal distances may come back in either order from searches of different sizes. A uniform vote only
    counts them, but ``weighted_mode`` sums each class's weights with ``np.sum`` over all k positions
    (zeros where another class sits), which from 8 positions on adds in a pattern of positions: swapping
    two equal weights of different classes can move a sum by its last bit and turn an exact tie.
    """
    return bool(np.any(dist[:, 1:k] == dist[:, :k - 1]))


def _norm_order(params: Mapping[str, Any]) -> int | None:
    """1 for a manhattan, 2 for a euclidean k-NN (however named); None for any other distance."""
    metric, p = params["metric"], params.get("p", 2)
    if params.get("metric_params"):
        return None
    if metric in ("manhattan", "cityblock", "l1") or (metric == "minkowski" and p == 1):
        return 1
    if metric in ("euclidean", "l2") or (metric == "minkowski" and p == 2):
        return 2
    return None


def _distance_scale(queries: np.ndarray, rows: np.ndarray, order: int) -> np.ndarray:
    """Per query, the size of the numbers its distances are computed from (squared, for euclidean)."""
    if order == 1:
        return np.abs(queries).sum(axis=1) + np.abs(rows).sum(axis=1).max(initial=0.0)
    return np.square(queries).sum(axis=1) + np.square(rows).sum(axis=1).max(initial=0.0)


def _gap(dist: np.ndarray, k: int, order: int) -> np.ndarray:
    """Per query, how far the (k+1)-th neighbour is beyond the k-th (in squared distance for euclidean)."""
    if order == 1:
        return dist[:, k] - dist[:, k - 1]
    return np.square(dist[:, k]) - np.square(dist[:, k - 1])


def _vote(model: KNeighborsClassifier, y_train: np.ndarray, dist: np.ndarray, ind: np.ndarray) -> np.ndarray:
    """``model.predict`` from its neighbours: the first most frequent class, or of the largest inverse distance.

    Class ties go to the first class, as there (``argmax``; ``weighted_mode`` keeps the smallest).
    """
    labels = np.searchsorted(model.classes_, y_train)[ind]  # the neighbours' classes, as indices into classes_
    if model.weights == "uniform":
        counts = (labels[:, :, None] == np.arange(len(model.classes_))).sum(axis=1)
        return model.classes_[np.argmax(counts, axis=1)]
    with np.errstate(divide="ignore"):  # as scikit-learn weighs them: 1 / distance; a zero distance outweighs all
        inverse = 1.0 / dist
    exact = np.isinf(inverse)
    rows = exact.any(axis=1)
    inverse[rows] = exact[rows]
    mode, _ = weighted_mode(labels, inverse, axis=1)
    return model.classes_.take(np.asarray(mode.ravel(), dtype=np.intp))


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
    return forestfused.fit(_configured(estimator, params), X, y)


def _configured(estimator: ClassifierMixin, params: Mapping[str, Any]) -> ClassifierMixin:
    """A fresh clone of *estimator* with *params* set, as ``GridSearchCV`` makes each fit's model."""
    model = clone(estimator)
    model.set_params(**clone(dict(params), safe=False))
    return model
