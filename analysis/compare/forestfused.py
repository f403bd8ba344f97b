"""Forests grown by a compiled builder (numba, the ``fast`` extra): scikit-learn's trees, node for node.

A random forest's grid search grows, for each candidate and fold, 400 trees only to count how many of
the fold's held-out captures they classify right. :mod:`.fastfit` already strips the Python around
scikit-learn's compiled tree builder; what was left (5.6 of 6.0 CPU-s of a trial's forest grids on the
study's data) was the builder itself. Here a fold's whole forest -- every tree's bootstrap, growth and
vote on the held-out rows -- is one compiled call (:class:`ForestFolds`), and a refit's trees are grown
by the same loops into scikit-learn's ``Tree`` (:func:`fit`). They are the very trees
``RandomForestClassifier.fit`` grows:

* **The same random draws.** Each tree's seed, bootstrap sample (a ``RandomState`` made from the seed)
  and splitter seed are drawn with NumPy exactly as the forest draws them, once per fold size for all
  the grid's candidates (they share the trial's ``random_state``). The splitter's own generator
  (``rand_r``, a 32-bit xorshift) draws the features of each node in the same order, through the same
  partial Fisher-Yates shuffle that skips features found constant in an ancestor, node after node in
  the same depth-first order (left child first), so every node considers the same features.
* **The same arithmetic.** Class weights are bootstrap counts, so every sum of them is an exact whole
  number whatever the order it is added in. A candidate threshold's score is the criterion's own
  formula on those numbers, in the same order, without fused multiply-adds, with the C library's
  ``log`` for the entropy; ties between features or thresholds go to the first found; thresholds are
  the same midpoints of float32 values; values within 1e-7 (compared in float32) are one value.
* **The same vote.** Each held-out row walks each tree (``x <= threshold`` on float32 values, as
  ``tree_.predict``), the leaves' class fractions are added into a float64 sum in tree order, divided
  by the number of trees, and the first largest wins: :func:`fastfit.predict` to the last bit.

Where the builder is quicker (:mod:`.forestkernels`): no Python per tree; no sort: a node marks its
samples' positions in the fold's presorted order of a feature in a bitset, and the feature's scan reads
them back in order (a word of marks at a time; a summary bitset points to the words in use); a Gini
score is first compared with the best so far as an exact fraction of whole numbers and an entropy score
screened with running sums of ``k log2 k``, so that only a candidate that can be the best has its score
computed as the criterion computes it; and no branch per sample where the samples are partitioned.

``tests/test_analysis_forestfused.py`` compares every node of every tree (children, feature, threshold,
impurity, samples, weighted samples, values) with scikit-learn's fit on data made to exercise every rule,
and the folds' predictions with scikit-learn's forests'. A grid's folds are grown here for plain forests
(:func:`applies`: the scikit-learn releases of :data:`fastfit.CHECKED_SKLEARN`, bootstrap samples of the
whole fold, no class weights, depth-first growth, no pruning, integer settings and seed; finite data and
labels a forest accepts; bounded memory); a refit's trees where :mod:`.fastfit` prepares them itself (no
class weights, bootstrap samples, ``max_samples`` too), their weights are whole numbers and they are built one
after another. Anything else (class weights, unbootstrapped trees among them), a core install, or
``ECHOLAB_FOREST_FUSED=0`` grows the forests through :mod:`.fastfit` (the same trees, slower).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.ensemble import RandomForestClassifier

try:  # the tree's node layout, to hand the grown nodes to scikit-learn's Tree
    from sklearn.tree._tree import NODE_DTYPE, Tree
except ImportError:  # pragma: no cover - another layout: the builder is not used
    NODE_DTYPE = Tree = None

from echolab.analysis.compare import compiled, fastfit

#: None: not built yet in this process; False: not used here (numba missing, turned off, or unable to
#: compile); else the namespace of compiled kernels.
_kernels: Any = None

_CRITERIA = {"gini": 0, "entropy": 1, "log_loss": 1}
_MAX_INT = int(np.iinfo(np.int32).max)  # the forest draws each tree's seed below it
_RAND_R_MAX = 2147483647  # the splitter's seed is drawn below it
_LN2 = math.log(2.0)  # the criterion's log2(x) is ln(x) / ln(2.0)
_XLOGX: dict[int, np.ndarray] = {}
_NO_TABLE = np.zeros(1)
_MAX_DRAWS = 2**25  # the most bootstrap counts (trees x samples, 8 bytes each) a grid's folds keep (256 MB)
_BYTES_PER_CELL = 16  # a fold's training value as the builder holds it: float32 column, order, sorted value, rank
_MAX_PREPARED = 2**28  # the most bytes a grid's folds are prepared in (256 MB); past it, scikit-learn's builder


def kernels() -> Any:
    """The compiled builder (a namespace), or None: built and tried on first use in a process.

    Where numba imports but cannot compile it here, a ``RuntimeWarning`` says so once and the grid search
    grows its forests through :mod:`.fastfit` (the same predictions).
    """
    global _kernels
    if _kernels is None:
        _kernels = compiled.build_once("ECHOLAB_FOREST_FUSED", _build, _smoke, "the forest builder",
                                       "forests are grown by scikit-learn's builder: the same trees, slower")
    return _kernels or None


def applies(forest: ClassifierMixin) -> bool:
    """Whether :class:`ForestFolds` grows exactly *forest*'s trees (settings only; the data is checked apart)."""
    if type(forest) is not RandomForestClassifier or not fastfit.checked_release():
        return False
    p = forest.get_params()

    def integer(value: Any) -> bool:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)

    return (isinstance(p["criterion"], str) and p["criterion"] in _CRITERIA
            and p["bootstrap"] is True and p["max_samples"] is None and p["oob_score"] is False
            and p["class_weight"] is None and p["warm_start"] is False
            and integer(p["random_state"]) and integer(p["n_estimators"]) and p["n_estimators"] >= 1
            and (p["max_depth"] is None or (integer(p["max_depth"]) and p["max_depth"] >= 1))
            and integer(p["min_samples_split"]) and p["min_samples_split"] >= 2
            and integer(p["min_samples_leaf"]) and p["min_samples_leaf"] >= 1
            and p["min_weight_fraction_leaf"] == 0.0 and p["max_leaf_nodes"] is None
            and isinstance(p["min_impurity_decrease"], (int, float)) and p["min_impurity_decrease"] >= 0.0
            and p["ccp_alpha"] == 0.0 and p["monotonic_cst"] is None and not p["verbose"])


class ForestFolds:
    """A grid's folds prepared once for the compiled builder, at the first candidate it grows: each fold's training
    columns (float32, one row per feature) with their orders and ranks, held-out rows, classes and class codes;
    and each fold size's random draws, shared by the candidates."""

    def __init__(self, k: Any, X: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]):
        self.k, self.X, self.y, self.folds = k, X, y, folds
        self._prepared: list[tuple[Any, ...]] | None = None
        self._draws: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def prepare(cls, estimator: ClassifierMixin, X: np.ndarray, y: np.ndarray,
                folds: Iterable[tuple[np.ndarray, np.ndarray]]) -> ForestFolds | None:
        """The folds of *X* and *y*, or None where a forest of *estimator*'s kind is not grown here on them (the
        forest's own fit then says what is wrong with such data)."""
        from sklearn.utils.multiclass import check_classification_targets

        folds = list(folds)
        if (type(estimator) is not RandomForestClassifier or type(X) is not np.ndarray or X.ndim != 2
                or not X.shape[1] or X.dtype.kind != "f" or np.ndim(y) != 1 or len(y) != len(X)
                or not all(len(train) and len(test) for train, test in folds)
                or sum(len(train) for train, _ in folds) * X.shape[1] * _BYTES_PER_CELL > _MAX_PREPARED):
            return None
        if not np.isfinite(X).all() or not np.isfinite(X.astype(np.float32)).all():
            return None  # missing values take the builder's other path; scikit-learn's error for infinities
        try:
            check_classification_targets(y)  # continuous or missing labels: the forest's own error
        except ValueError:
            return None
        k = kernels()
        if k is None:
            return None
        return cls(k, X, y, folds)

    def predictions(self, model: ClassifierMixin) -> list[np.ndarray] | None:
        """Each fold's predictions by *model* (an unfitted forest) grown on its training rows; None where not grown
        here (the caller then fits it the ordinary way)."""
        if not applies(model):
            return None
        model._validate_params()  # as fit does first: the same errors for a bad setting
        p = model.get_params()
        if int(p["n_estimators"]) * max(len(train) for train, _ in self.folds) > _MAX_DRAWS:
            return None  # the bootstrap counts would take too much memory at once: grown tree by tree instead
        out = []
        for XT, order, ordered_values, rank, XtT, classes, codes in self.prepared():
            n_features, n = XT.shape
            counts, splitter_seeds = self.draws(int(p["random_state"]), int(p["n_estimators"]), n)
            max_features = fastfit.feature_count(p["max_features"], n_features)
            if not (isinstance(max_features, int) and 0 < max_features <= n_features):
                return None  # scikit-learn's own error for it
            min_leaf = int(p["min_samples_leaf"])
            criterion = _CRITERIA[p["criterion"]]
            proba = np.zeros((XtT.shape[1], len(classes)), dtype=np.float64)
            self.k.grow_forest(XT, order, ordered_values, rank, codes, len(classes), counts, splitter_seeds,
                               max_features, _MAX_INT if p["max_depth"] is None else int(p["max_depth"]),
                               max(int(p["min_samples_split"]), 2 * min_leaf), min_leaf,
                               float(p["min_impurity_decrease"]), criterion, _LN2, _screening(criterion, n), XtT,
                               proba)
            proba /= len(counts)
            out.append(classes.take(np.argmax(proba, axis=1), axis=0))
        return out

    def prepared(self) -> list[tuple[Any, ...]]:
        """Each fold's arrays for the builder, made at the first candidate grown here."""
        if self._prepared is None:
            X32 = self.X.astype(np.float32)  # what the forest's validation makes of a float64 matrix
            self._prepared = []
            for train, test in self.folds:
                classes, codes = np.unique(self.y[train], return_inverse=True)
                XT = np.ascontiguousarray(X32[train].T)
                self._prepared.append((XT, *feature_orders(XT), np.ascontiguousarray(X32[test].T), classes,
                                       np.ascontiguousarray(codes, dtype=np.int64)))
        return self._prepared

    def draws(self, seed: int, n_estimators: int, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
        """Each tree's bootstrap counts and splitter seed, drawn as a forest seeded with *seed* draws them; the
        draws kept for the grid's other candidates while they stay within :data:`_MAX_DRAWS`."""
        key = (seed, n_estimators, n_samples)
        if key not in self._draws:
            if sum(c.size for c, _ in self._draws.values()) + n_estimators * n_samples > _MAX_DRAWS:
                self._draws.clear()
            self._draws[key] = tree_draws(seed, n_estimators, n_samples)
        return self._draws[key]


def fit(model: ClassifierMixin, X: np.ndarray, y: np.ndarray) -> ClassifierMixin:
    """``model.fit(X, y)`` as :func:`fastfit.fit` runs it, every plain tree grown by the compiled builder.

    The forest's own ``fit`` draws the seeds and bootstrap weights and :func:`fastfit.fit` prepares each
    tree as ``DecisionTreeClassifier._fit`` does; only the tree's growth is the compiled builder's,
    into a ``Tree`` of the very nodes and values scikit-learn's builder makes (its pickled state is the
    same). A tree whose weights are not whole numbers (class weights), or any setting the builder does
    not follow, is grown by scikit-learn's builder.
    """
    if type(model) is not RandomForestClassifier:
        return fastfit.fit(model, X, y)
    k = kernels()
    if k is None or not fastfit.one_after_another(model.n_jobs):  # trees in threads: scikit-learn's builder
        return fastfit.fit(model, X, y)
    return fastfit.fit(model, X, y, grower=_Grower(k))


class _Grower:
    """Grows one forest fit's trees by the compiled builder, for :func:`fastfit.fit` (its ``grower``)."""

    def __init__(self, k: Any):
        self.k = k
        self._X: Any = None
        self._prepared: tuple[np.ndarray, ...] | None = None
        self._codes: tuple[Any, np.ndarray] | None = None
        self._work: tuple[np.ndarray, ...] | None = None  # the compiled builder's scratch for this X

    def __call__(self, tree: Any, X: np.ndarray, y_encoded: np.ndarray, sample_weight: np.ndarray, random_state: Any,
                 n_classes: int, max_features: int, max_depth: int, min_samples_split: int, min_samples_leaf: int,
                 min_weight_leaf: float) -> Any:
        """``tree``'s ``tree_`` grown on *X* with the settings ``_fit`` resolved; None where the builder does not apply."""
        if (not isinstance(tree.criterion, str) or tree.criterion not in _CRITERIA or tree.splitter != "best"
                or min_weight_leaf != 0.0 or not isinstance(max_features, int) or not 0 < max_features <= X.shape[1]
                or y_encoded.shape[1] != 1 or not isinstance(tree.min_impurity_decrease, (int, float))):
            return None
        if not (sample_weight >= 0).all() or sample_weight.sum() > 2**24:
            return None  # negative, or too large a total for the builder's tables
        weight = sample_weight.astype(np.int64)
        if not np.array_equal(weight, sample_weight):
            return None  # not whole numbers (class weights): scikit-learn's builder
        if self._X is not X:
            if X.dtype != np.float32 or X.ndim != 2 or not np.isfinite(X).all():
                return None
            XT = np.ascontiguousarray(X.T)
            self._X, self._prepared, self._work = X, (XT, *feature_orders(XT)), None
        if self._codes is None or self._codes[0] is not y_encoded:
            self._codes = (y_encoded, np.ascontiguousarray(y_encoded[:, 0], dtype=np.int64))
        assert self._prepared is not None
        XT, order, ordered_values, rank = self._prepared
        codes = self._codes[1]
        if self._work is None or self._work[10].shape[1] != n_classes:  # the forest's trees share one scratch
            self._work = self.k.scratch(XT.shape[1], XT.shape[0], n_classes)
        splitter_seed = random_state.randint(0, _RAND_R_MAX)  # the splitter's draw (Splitter.init)
        return grow_tree(self.k, XT, order, ordered_values, rank, codes, n_classes, weight, splitter_seed,
                         max_features, max_depth, min_samples_split, min_samples_leaf,
                         float(tree.min_impurity_decrease), _CRITERIA[tree.criterion], self._work)


def grow_tree(k: Any, XT: np.ndarray, order: np.ndarray, ordered_values: np.ndarray, rank: np.ndarray,
              codes: np.ndarray, n_classes: int, weight: np.ndarray, splitter_seed: int, max_features: int,
              max_depth: int, min_split: int, min_leaf: int, min_decrease: float, criterion: int,
              work: tuple[np.ndarray, ...] | None = None) -> Any:
    """One tree grown by the compiled builder (*k*) on a fold's columns *XT* with their :func:`feature_orders`, the
    samples' class *codes* and whole-number *weight*: scikit-learn's ``Tree`` of the same nodes and values.

    *work* is the builder's scratch (``k.scratch``), reused from tree to tree: the ``Tree`` copies what it keeps.
    """
    if work is None:
        work = k.scratch(XT.shape[1], XT.shape[0], n_classes)
    n_nodes, depth = k.grow_tree(XT, order, ordered_values, rank, codes, n_classes, weight, splitter_seed, max_features,
                                 max_depth, min_split, min_leaf, min_decrease, criterion, _LN2,
                                 _screening(criterion, int(weight.sum())), *work)
    left_of, right_of, feature_of, threshold_of, value_of, impurity_of, count_of, weighted_of, missing_of = (
        work[k.NODE_ARRAYS])
    nodes = np.zeros(n_nodes, dtype=NODE_DTYPE)
    for field, values in (("left_child", left_of), ("right_child", right_of), ("feature", feature_of),
                          ("threshold", threshold_of), ("impurity", impurity_of), ("n_node_samples", count_of),
                          ("weighted_n_node_samples", weighted_of), ("missing_go_to_left", missing_of)):
        nodes[field] = values[:n_nodes]
    grown = Tree(XT.shape[0], np.array([n_classes], dtype=np.intp), 1)
    grown.__setstate__({"max_depth": depth, "node_count": n_nodes, "nodes": nodes,
                        "values": np.ascontiguousarray(value_of[:n_nodes].reshape(n_nodes, 1, n_classes))})
    return grown


def tree_draws(seed: int, n_estimators: int, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """The bootstrap counts (trees x samples, int64) and splitter seeds of a forest seeded with *seed*.

    ``BaseForest.fit`` draws each tree's seed with ``randint(MAX_INT)`` from ``RandomState(seed)``; the
    tree's bootstrap is ``randint(0, n, n)`` of a ``RandomState`` made from its seed, its splitter's seed
    ``randint(0, RAND_R_MAX)`` of another one made from it. Reseeding one generator draws the same.
    """
    forest = np.random.RandomState(seed)
    tree_seeds = [forest.randint(_MAX_INT) for _ in range(n_estimators)]
    tree = np.random.RandomState(0)
    counts = np.empty((n_estimators, n_samples), dtype=np.int64)
    splitter_seeds = np.empty(n_estimators, dtype=np.int64)
    for i, s in enumerate(tree_seeds):
        tree.seed(s)
        counts[i] = np.bincount(tree.randint(0, n_samples, n_samples).astype(np.int32), minlength=n_samples)
        tree.seed(s)
        splitter_seeds[i] = tree.randint(0, _RAND_R_MAX)
    return counts, splitter_seeds


def feature_orders(XT: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fold's training columns (features x samples, float32) as the builder reads them in order.

    ``order[f]`` is the samples in ascending order of feature *f*, ``ordered_values[f]`` their values, and
    ``rank[f, i]`` sample *i*'s position in ``order[f]``: a node marks its samples' ranks and reads them back
    sorted, values and all.
    """
    order = np.argsort(XT, axis=1, kind="stable").astype(np.int32)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(XT.shape[1], dtype=np.int32), XT.shape), axis=1)
    return order, np.ascontiguousarray(np.take_along_axis(XT, order, axis=1)), rank


def xlogx(n: int) -> np.ndarray:
    """``k log2 k`` for k = 0..n (0 for 0): the running sums that screen entropy scores (the small ones kept)."""
    out = _XLOGX.get(n)
    if out is None:
        k = np.arange(1, n + 1, dtype=np.float64)
        out = np.concatenate([[0.0], k * np.log2(k)])
        if n <= 2**16:
            _XLOGX[n] = out
    return out


def _screening(criterion: int, total_weight: int) -> np.ndarray:
    """What the builder screens a criterion's candidates with: the ``k log2 k`` table for entropy, none for Gini."""
    return xlogx(total_weight) if criterion == 1 else _NO_TABLE


def _smoke(k: Any) -> None:
    """The builder once on a tiny forest and a tiny tree, so that any compile happens (or fails) here."""
    XT = np.array([[0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 0.0, 0.0]], dtype=np.float32)
    codes = np.array([0, 0, 1, 1], dtype=np.int64)
    for criterion in (0, 1):
        k.grow_forest(XT, *feature_orders(XT), codes, 2, np.ones((2, 4), dtype=np.int64), np.array([1, 2], dtype=np.int64),
                      1, _MAX_INT, 2, 1, 0.0, criterion, _LN2, _screening(criterion, 4), XT, np.zeros((4, 2)))
        grow_tree(k, XT, *feature_orders(XT), codes, 2, np.ones(4, dtype=np.int64), 1, 1, _MAX_INT, 2, 1, 0.0, criterion)


def _build() -> Any:
    if compiled.numba_module() is None or Tree is None or not fastfit.checked_release():
        return False
    from echolab.analysis.compare import forestkernels

    return forestkernels
