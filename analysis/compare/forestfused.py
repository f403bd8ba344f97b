"""A grid's cross-validation forests grown by a compiled builder (numba, the ``fast`` extra): scikit-learn's trees.

A random forest's grid search grows, for each candidate and fold, 400 trees only to count how many of
the fold's held-out captures they classify right. :mod:`.fastfit` already strips the Python around
scikit-learn's compiled tree builder; what is left (5.6 of 6.0 CPU-s of a trial's forest grids on the
study's data) is the builder itself. Here the whole forest -- every tree's bootstrap, growth and vote
on the held-out rows -- is one compiled call, and it grows the very trees ``RandomForestClassifier.fit``
grows, for three reasons that make the same search cheaper:

* **The same random draws.** Each tree's seed, bootstrap sample (a ``RandomState`` made from the seed)
  and splitter seed are drawn with NumPy exactly as the forest draws them, once per fold size for all
  the grid's candidates (they share the trial's ``random_state``). The splitter's own generator
  (``rand_r``, a 32-bit xorshift) draws the features of each node in the same order, through the same
  partial Fisher-Yates shuffle that skips features found constant in an ancestor, node after node in
  the same depth-first order (left child first), so every node considers the same features.
* **The same arithmetic.** A split's score is computed from the same numbers by the same formula in
  the same order: class weights are bootstrap counts, so every sum of them is an exact integer
  whatever the order it is added in, and the Gini score (``-w_r (1 - s_r / w_r^2) - w_l (1 - s_l /
  w_l^2)``) is formed from those integers as the criterion forms it, without fused multiply-adds. The
  entropy score reads ``p log2 p`` for ``p = k / w`` from a table computed once with the C library's
  ``log``, as the criterion computes it, instead of computing it at every candidate threshold: the
  table holds the same doubles. Ties between features or thresholds go to the first found, as there;
  thresholds are the same midpoints of float32 values, ties within 1e-7 (float32) skipped as there.
* **The same vote.** Each held-out row walks each tree (``x <= threshold`` on float32 values, as
  ``tree_.predict``), the leaves' class fractions are added into a float64 sum in tree order, divided
  by the number of trees, and the first largest wins: :func:`fastfit.predict` to the last bit.

Where the builder is quicker: no per-tree Python, one sort routine on the node's values without
scikit-learn's generic checks, Gini scores updated from two running integer sums of squares instead
of a loop over the classes at every threshold, and entropy from the table instead of a dozen logs.

``tests/test_analysis_forestfused.py`` compares every node of every tree (feature, threshold,
children, values) with scikit-learn's on crafted data (ties, constant and near-constant features,
duplicate rows of different classes, 2 to 7 classes, both criteria, every ``max_features`` kind),
and the predictions with scikit-learn's forest. Only plain forests qualify (:func:`applies`): the
scikit-learn releases of :data:`fastfit.CHECKED_SKLEARN`, bootstrap samples of the whole fold, no
weights, no pruning, depth-first growth, integer settings and seed, finite data; anything else, a
core install, or ``ECHOLAB_FOREST_FUSED=0`` grows the forests through :mod:`.fastfit` (the same
predictions, slower). The refit of the chosen candidate is always scikit-learn's own forest object.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from typing import Any, Iterable

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.ensemble import RandomForestClassifier

try:  # the tree's node layout, to hand the grown nodes to scikit-learn's Tree
    from sklearn.tree._tree import NODE_DTYPE, Tree
except ImportError:  # pragma: no cover - another layout: the builder is not used
    NODE_DTYPE = Tree = None

from echolab.analysis.compare import fastfit

#: None: not built yet in this process; False: not used here (numba missing, turned off, or unable to
#: compile); else the namespace of compiled kernels.
_kernels: Any = None

_CRITERIA = {"gini": 0, "entropy": 1, "log_loss": 1}
_MAX_INT = int(np.iinfo(np.int32).max)  # the forest draws each tree's seed below it
_RAND_R_MAX = 2147483647  # the splitter's seed is drawn below it
_LN2 = math.log(2.0)  # the criterion's log2(x) is ln(x) / ln(2.0)
_XLOGX: dict[int, np.ndarray] = {}


def kernels() -> Any:
    """The compiled builder (a namespace), or None: built and tried on first use in a process.

    Where numba imports but cannot compile it here, a ``RuntimeWarning`` says so once and the grid search
    grows its forests through :mod:`.fastfit` (the same predictions).
    """
    global _kernels
    if _kernels is None:
        built: Any = False
        if os.environ.get("ECHOLAB_FOREST_FUSED", "1") != "0" and Tree is not None and fastfit.checked_release():
            try:
                built = _build()
                if built:
                    _smoke(built)
            except Exception as exc:  # numba's compiler failed here: scikit-learn's builder does the same work
                built = False
                warnings.warn(f"numba could not compile the forest builder ({type(exc).__name__}: {exc}); "
                              "forests are grown by scikit-learn's builder: the same trees, slower",
                              RuntimeWarning, stacklevel=2)
        _kernels = built
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
    """A grid's folds prepared once for the compiled builder: each fold's training columns (float32, one row per
    feature), held-out rows, classes and class codes; and each fold size's random draws, shared by the candidates."""

    def __init__(self, k: Any, X: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]):
        self.k = k
        X32 = X.astype(np.float32)  # what the forest's validation makes of a float64 matrix
        self.folds = []
        for train, test in folds:
            classes, codes = np.unique(y[train], return_inverse=True)
            XT = np.ascontiguousarray(X32[train].T)
            self.folds.append((XT, *sorting_keys(XT), np.ascontiguousarray(X32[test].T), classes,
                               np.ascontiguousarray(codes, dtype=np.int64)))
        self._draws: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def prepare(cls, estimator: ClassifierMixin, X: np.ndarray, y: np.ndarray,
                folds: Iterable[tuple[np.ndarray, np.ndarray]]) -> ForestFolds | None:
        """The folds of *X* and *y*, or None where a forest of *estimator*'s kind is not grown here on them."""
        folds = list(folds)
        if (type(estimator) is not RandomForestClassifier or type(X) is not np.ndarray or X.ndim != 2
                or not X.shape[1] or X.dtype.kind != "f" or np.ndim(y) != 1 or len(y) != len(X)
                or not all(len(train) and len(test) for train, test in folds)):
            return None
        if not np.isfinite(X).all() or not np.isfinite(X.astype(np.float32)).all():
            return None  # missing values take the builder's other path; scikit-learn's error for infinities
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
        out = []
        for XT, keyed, order, ordered_values, XtT, classes, codes in self.folds:
            n_features, n = XT.shape
            counts, splitter_seeds = self.draws(int(p["random_state"]), int(p["n_estimators"]), n)
            max_features = fastfit.feature_count(p["max_features"], n_features)
            if not (isinstance(max_features, int) and 0 < max_features <= n_features):
                return None  # scikit-learn's own error for it
            min_leaf = int(p["min_samples_leaf"])
            proba = np.zeros((XtT.shape[1], len(classes)), dtype=np.float64)
            self.k.grow_forest(XT, keyed, order, ordered_values, codes, len(classes), counts, splitter_seeds, max_features,
                               _MAX_INT if p["max_depth"] is None else int(p["max_depth"]),
                               max(int(p["min_samples_split"]), 2 * min_leaf), min_leaf,
                               float(p["min_impurity_decrease"]), _CRITERIA[p["criterion"]], _LN2, xlogx(n),
                               XtT, proba)
            proba /= len(counts)
            out.append(classes.take(np.argmax(proba, axis=1), axis=0))
        return out

    def draws(self, seed: int, n_estimators: int, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
        """Each tree's bootstrap counts and splitter seed, drawn as a forest seeded with *seed* draws them."""
        key = (seed, n_estimators, n_samples)
        if key not in self._draws:
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
    k = kernels()
    if k is None or type(model) is not RandomForestClassifier:
        return fastfit.fit(model, X, y)
    return fastfit.fit(model, X, y, grower=_Grower(k))


class _Grower:
    """Grows one forest fit's trees by the compiled builder, for :func:`fastfit.fit` (its ``grower``)."""

    def __init__(self, k: Any):
        self.k = k
        self._X: Any = None
        self._prepared: tuple[np.ndarray, ...] | None = None
        self._codes: tuple[Any, np.ndarray] | None = None

    def __call__(self, tree: Any, X: np.ndarray, y_encoded: np.ndarray, sample_weight: np.ndarray, random_state: Any,
                 n_classes: int, max_features: int, max_depth: int, min_samples_split: int, min_samples_leaf: int,
                 min_weight_leaf: float) -> Any:
        """``tree``'s ``tree_`` grown on *X* with the settings ``_fit`` resolved; None where the builder does not apply."""
        if (not isinstance(tree.criterion, str) or tree.criterion not in _CRITERIA or tree.splitter != "best"
                or min_weight_leaf != 0.0 or not isinstance(max_features, int) or not 0 < max_features <= X.shape[1]
                or y_encoded.shape[1] != 1 or not isinstance(tree.min_impurity_decrease, (int, float))):
            return None
        weight = sample_weight.astype(np.int64)
        if not (weight >= 0).all() or not np.array_equal(weight, sample_weight) or weight.sum() > 2**40:
            return None
        if self._X is not X:
            if X.dtype != np.float32 or X.ndim != 2 or not np.isfinite(X).all():
                return None
            XT = np.ascontiguousarray(X.T)
            self._X, self._prepared = X, (XT, *sorting_keys(XT))
        if self._codes is None or self._codes[0] is not y_encoded:
            self._codes = (y_encoded, np.ascontiguousarray(y_encoded[:, 0], dtype=np.int64))
        assert self._prepared is not None
        XT, keyed, order, ordered_values = self._prepared
        codes = self._codes[1]
        n_features, n = XT.shape
        splitter_seed = random_state.randint(0, _RAND_R_MAX)  # the splitter's draw (Splitter.init)
        cap = 2 * n + 1
        left_of, right_of = np.empty(cap, dtype=np.int64), np.empty(cap, dtype=np.int64)
        feature_of, threshold_of = np.empty(cap, dtype=np.int64), np.empty(cap)
        value_of, impurity_of = np.empty((cap, n_classes)), np.empty(cap)
        count_of, weighted_of = np.empty(cap, dtype=np.int64), np.empty(cap)
        missing_of = np.empty(cap, dtype=np.uint8)
        n_nodes, depth = self.k.grow_tree(
            XT, keyed, order, ordered_values, codes, n_classes, weight, splitter_seed, max_features, max_depth, min_samples_split,
            min_samples_leaf, float(tree.min_impurity_decrease), _CRITERIA[tree.criterion], _LN2,
            xlogx(int(weight.sum())), np.empty(n + 1, dtype=np.int64), np.empty(n + 1, dtype=np.float32),
            np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64), np.empty(n_features, dtype=np.int64),
            np.empty(n_features, dtype=np.int64), np.empty((64, 2), dtype=np.int64), left_of, right_of, feature_of,
            threshold_of, value_of, impurity_of, count_of, weighted_of, missing_of,
            np.empty(n_classes, dtype=np.int64), np.empty(n_classes, dtype=np.int64), np.empty(n_classes),
            np.empty(n_classes), np.empty(n), np.empty(7), np.empty((n + 2, 6), dtype=np.int64), np.empty(n + 2))
        nodes = np.zeros(n_nodes, dtype=NODE_DTYPE)
        for field, values in (("left_child", left_of), ("right_child", right_of), ("feature", feature_of),
                              ("threshold", threshold_of), ("impurity", impurity_of), ("n_node_samples", count_of),
                              ("weighted_n_node_samples", weighted_of), ("missing_go_to_left", missing_of)):
            nodes[field] = values[:n_nodes]
        grown = Tree(n_features, np.array([n_classes], dtype=np.intp), 1)
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


def sorting_keys(XT: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fold's training columns (features x samples, float32) as the builder sorts them.

    ``keyed[f, i]`` packs sample *i*'s value of feature *f* (its float32 bits, mapped so that integer order is
    the values' order) above the sample's index: sorting a small node's keys sorts its samples by value, one
    integer array instead of two. ``order[f]`` is the samples in ascending order of feature *f*, and
    ``ordered_values[f]`` their values, from which a large node picks its own, already sorted.
    """
    bits = XT.view(np.uint32).astype(np.int64)
    ordered = np.where(bits >> 31, ~bits & 0xFFFFFFFF, bits | 0x80000000)
    keyed = (ordered << 31) | np.arange(XT.shape[1], dtype=np.int64)
    order = np.argsort(XT, axis=1, kind="stable")
    return (np.ascontiguousarray(keyed), np.ascontiguousarray(order, dtype=np.int64),
            np.ascontiguousarray(np.take_along_axis(XT, order, axis=1)))


def xlogx(n: int) -> np.ndarray:
    """``k log2 k`` for k = 0..n (0 for 0): the running sums that screen entropy scores (kept per size)."""
    out = _XLOGX.get(n)
    if out is None:
        k = np.arange(1, n + 1, dtype=np.float64)
        out = np.concatenate([[0.0], k * np.log2(k)])
        _XLOGX[n] = out
    return out


def _smoke(k: Any) -> None:
    """The builder once on a tiny forest, so that any compile happens (or fails) here."""
    XT = np.array([[0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 0.0, 0.0]], dtype=np.float32)
    proba = np.zeros((4, 2))
    for criterion in (0, 1):
        k.grow_forest(XT, *sorting_keys(XT), np.array([0, 0, 1, 1], dtype=np.int64), 2,
                      np.ones((2, 4), dtype=np.int64), np.array([1, 2], dtype=np.int64), 1, _MAX_INT, 2, 1, 0.0,
                      criterion, _LN2, xlogx(4), XT, proba)


def _build() -> Any:
    try:
        import numba
    except ImportError:
        return False
    if numba.config.DISABLE_JIT:  # NUMBA_DISABLE_JIT: the loops would run as Python, far slower
        return False
    from types import SimpleNamespace

    # no fast-math: every operation rounded as written, nothing contracted into a fused multiply-add
    options = dict(nogil=True, fastmath=False, boundscheck=False, error_model="numpy")

    def jit(fn: Any) -> Any:
        try:  # compiled once per machine, then loaded from numba's cache
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError:  # no writable place for the cache: compiled once per process
            return numba.njit(cache=False, **options)(fn)

    @jit
    def sort_keys(a, lo, hi, stack):  # pragma: no cover - compiled
        # a[lo:hi] ascending, for distinct keys (a sample's value and its index packed in one integer): a quicksort
        # (Hoare's partition around the median of three) with insertion sort for short runs; the larger side is
        # stacked and the smaller sorted first, so the stack (64 slots) never overflows.
        top = 0
        while True:
            if hi - lo <= 16:
                for i in range(lo + 1, hi):
                    key = a[i]
                    j = i - 1
                    while j >= lo and a[j] > key:
                        a[j + 1] = a[j]
                        j -= 1
                    a[j + 1] = key
                if top == 0:
                    return
                top -= 1
                lo = stack[top, 0]
                hi = stack[top, 1]
                continue
            x, y, z = a[lo], a[(lo + hi) >> 1], a[hi - 1]
            if x < y:
                pivot = y if y < z else (z if x < z else x)
            else:
                pivot = x if x < z else (z if y < z else y)
            i = lo - 1
            j = hi
            while True:
                i += 1
                while a[i] < pivot:
                    i += 1
                j -= 1
                while a[j] > pivot:
                    j -= 1
                if i >= j:
                    break
                t = a[i]
                a[i] = a[j]
                a[j] = t
            # [lo, j] <= pivot <= [j + 1, hi), both sides non-empty (the pivot is neither the least nor the
            # greatest of three distinct keys)
            if j + 1 - lo < hi - j - 1:
                stack[top, 0] = j + 1
                stack[top, 1] = hi
                hi = j + 1
            else:
                stack[top, 0] = lo
                stack[top, 1] = j + 1
                lo = j + 1
            top += 1

    @jit
    def rand_int(state, low, high):  # pragma: no cover - compiled
        # scikit-learn's rand_int(low, high, &seed): its 32-bit xorshift (our_rand_r), then a modulo
        s = state[0]
        if s == 0:
            s = 1
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        state[0] = s
        return low + (s % 2147483648) % (high - low)

    @jit
    def scores(criterion, wl, wr, sq_l, sq_r, left, total, ln2):  # pragma: no cover - compiled
        # the children's impurities from their class weights, as the criterion computes them: Gini from the sums of
        # squared weights; entropy as -sum p log2 p, p = k / w, log2 x = ln x / ln 2 (the C library's log)
        if criterion == 0:
            il = 1.0 - np.float64(sq_l) / (np.float64(wl) * np.float64(wl))
            ir = 1.0 - np.float64(sq_r) / (np.float64(wr) * np.float64(wr))
            return il, ir
        el = 0.0
        er = 0.0
        for c in range(left.shape[0]):
            kl = left[c]
            kr = total[c] - kl
            if kl > 0:
                pl = np.float64(kl) / np.float64(wl)
                el -= pl * (math.log(pl) / ln2)
            if kr > 0:
                pr = np.float64(kr) / np.float64(wr)
                er -= pr * (math.log(pr) / ln2)
        return el, er

    @jit
    def node_impurity(criterion, total, w, ln2):  # pragma: no cover - compiled
        if criterion == 0:
            sq = 0
            for c in range(total.shape[0]):
                sq += total[c] * total[c]
            return 1.0 - np.float64(sq) / (np.float64(w) * np.float64(w))
        e = 0.0
        for c in range(total.shape[0]):
            if total[c] > 0:
                pc = np.float64(total[c]) / np.float64(w)
                e -= pc * (math.log(pc) / ln2)
        return e

    @jit
    def scan_gini(fv, samples, y, weight, weight_f, total, total_f, left, start, end, wn, min_leaf, f, exact, best):  # pragma: no cover
        # Every position p of a sorted feature (samples[start:p] to the left) in turn, for the Gini criterion: the
        # best split so far in best (proxy, fraction's numerator and denominator, -, position, feature, threshold).
        # Class weights are whole numbers held in doubles, every sum and product of them below 2**53: exact. The
        # proxy is -wn + (sq_l / wl + sq_r / wr); with exact set that fraction is compared exactly first, and only
        # a candidate as good as the best has its proxy computed as the criterion computes it. Positions inside a
        # run of ties, or leaving a child too small, are no split; they and the candidates that cannot beat the
        # best are passed over by one rarely taken branch.
        T = np.float32(1e-7)
        for c in range(left.shape[0]):
            left[c] = 0
        wl = 0.0
        sq_l = 0.0
        sq_r = 0.0
        for c in range(total.shape[0]):
            sq_r += np.float64(total[c] * total[c])
        best_proxy = best[0]
        best_num = best[1]
        best_den = best[2]
        for q in range(start, end - 1):
            i = samples[q]
            c = y[i]
            k = left[c]
            left[c] = k + weight[i]  # an integer count: the next sample of the class waits least for it
            w = weight_f[i]
            kl = np.float64(k)
            kr = total_f[c] - kl
            wl += w
            wr = wn - wl
            sq_l += (2.0 * kl + w) * w
            sq_r -= (2.0 * kr - w) * w
            p = q + 1
            split = (fv[p] > fv[q] + T) & (p - start >= min_leaf) & (end - p >= min_leaf)
            if exact:
                a = (sq_l * wr + sq_r * wl) * best_den
                b = best_num * (wl * wr)
                if not (split & (a >= b)):
                    continue
                if a > b:
                    best_proxy = -np.inf  # strictly better: its double is larger too
            elif not split:
                continue
            il = 1.0 - sq_l / (wl * wl)
            ir = 1.0 - sq_r / (wr * wr)
            proxy = -wr * ir - wl * il
            if proxy > best_proxy:
                best_proxy = proxy
                best_num = sq_l * wr + sq_r * wl
                best_den = wl * wr
                best[4] = p
                best[5] = f
                best[6] = np.float64(fv[q]) / 2.0 + np.float64(fv[p]) / 2.0
        best[0] = best_proxy
        best[1] = best_num
        best[2] = best_den

    @jit
    def scan_entropy(fv, samples, y, weight, total, left, start, end, wn, min_leaf, f, ln2, xlogx, margin,
                     best):  # pragma: no cover - compiled
        # scan_gini for the entropy criterion: a candidate's proxy is computed as the criterion computes it (from the
        # table of its terms) only where the running sums of k log2 k put it within margin of the best so far.
        T = np.float32(1e-7)
        for c in range(left.shape[0]):
            left[c] = 0
        wl = 0
        sum_l = 0.0
        sum_r = 0.0
        for c in range(total.shape[0]):
            sum_r += xlogx[total[c]]
        best_proxy = best[0]
        best_sum = best[3]
        for q in range(start, end - 1):
            i = samples[q]
            c = y[i]
            w = weight[i]
            kl = left[c]
            kr = total[c] - kl
            left[c] = kl + w
            wl += w
            wr = wn - wl
            sum_l += xlogx[kl + w] - xlogx[kl]
            sum_r += xlogx[kr - w] - xlogx[kr]
            candidate = (sum_l - xlogx[wl]) + (sum_r - xlogx[wr])
            p = q + 1
            split = (fv[p] > fv[q] + T) & (p - start >= min_leaf) & (end - p >= min_leaf)
            if not (split & (candidate >= best_sum - margin)):
                continue
            il, ir = scores(1, wl, wr, 0, 0, left, total, ln2)
            proxy = -np.float64(wr) * ir - np.float64(wl) * il
            if proxy > best_proxy:
                best_proxy = proxy
                best_sum = candidate
                best[4] = p
                best[5] = f
                best[6] = np.float64(fv[q]) / 2.0 + np.float64(fv[p]) / 2.0
        best[0] = best_proxy
        best[3] = best_sum

    @jit
    def grow_tree(XT, keyed, order, ordered_values, y, n_classes, weight, splitter_seed, max_features, max_depth, min_split,
                  min_leaf, min_decrease, criterion, ln2, xlogx, samples, fv, keys, stamp, features, constants,
                  sort_stack, left_of, right_of, feature_of, threshold_of, value_of, impurity_of, count_of,
                  weighted_of, missing_of, total, left, total_f, left_f, weight_f, best, st_int,
                  st_imp):  # pragma: no cover - compiled
        # One tree as DepthFirstTreeBuilder grows it with BestSplitter; returns its node count and depth. Node arrays
        # as the tree's nodes hold them: children (-1 for a leaf), feature and threshold (-2 for a leaf), class
        # fractions, impurity, samples, weighted samples, and the side unseen values take (the larger child's; 0 for
        # a leaf). st_int/st_imp: the builder's stack of (start, end, depth, parent, is_left, constants known) and
        # the node's impurity.
        n_features, n = XT.shape
        T = np.float32(1e-7)  # FEATURE_THRESHOLD, a float32: values within it are ties, compared in float32 as there
        eps = np.finfo(np.float64).eps
        low = (1 << 31) - 1
        m = 0
        w_all = 0
        for i in range(n):
            stamp[i] = -1
            weight_f[i] = weight[i]
            if weight[i] != 0:
                samples[m] = i
                m += 1
            w_all += weight[i]
        w_all_d = np.float64(w_all)
        # Gini scores are compared first as exact fractions of integers; below this total weight two different
        # fractions are further apart than the rounding of the criterion's formula, so they order its doubles alike
        exact_gini = w_all <= 1024
        # entropy scores are screened with running sums of k log2 k; a candidate this far below the best cannot be
        # above it in the criterion's doubles (the sums' rounding is many orders of magnitude smaller)
        margin = 1e-6 * max(1.0, w_all_d * w_all_d / 1e6)
        for f in range(n_features):
            features[f] = f
        state = np.empty(1, dtype=np.int64)
        state[0] = splitter_seed
        n_nodes = 0
        depth_seen = -1
        top = 1
        st_int[0, 0] = 0
        st_int[0, 1] = m
        st_int[0, 2] = 0
        st_int[0, 3] = -1
        st_int[0, 4] = 0
        st_int[0, 5] = 0
        st_imp[0] = np.inf
        first = True
        while top > 0:
            top -= 1
            start = st_int[top, 0]
            end = st_int[top, 1]
            depth = st_int[top, 2]
            parent = st_int[top, 3]
            is_left = st_int[top, 4]
            n_known = st_int[top, 5]
            impurity = st_imp[top]
            # node_reset: the node's class weights
            for c in range(n_classes):
                total[c] = 0
            wn = 0
            for p in range(start, end):
                i = samples[p]
                total[y[i]] += weight[i]
                wn += weight[i]
            n_node = end - start
            is_leaf = depth >= max_depth or n_node < min_split or n_node < 2 * min_leaf
            if first:
                impurity = node_impurity(criterion, total, wn, ln2)
                first = False
            is_leaf = is_leaf or impurity <= eps
            best_pos = end
            best_feature = -1
            best_threshold = 0.0
            imp_left = 0.0
            imp_right = 0.0
            n_total = n_known
            if not is_leaf:
                # node_split_best. A large node takes each feature's values in order from the fold's presorted
                # order (its samples stamped), a small one sorts them.
                presorted = n_node * 16 >= n
                if presorted:
                    for p in range(start, end):
                        stamp[samples[p]] = n_nodes
                # the best split so far: proxy, its fraction (Gini: numerator, denominator) or running sum (entropy),
                # position, feature, threshold
                best[0] = -np.inf
                best[1] = 0.0
                best[2] = 0.0
                best[3] = -np.inf
                best[4] = end
                best[5] = -1
                best[6] = 0.0
                for c in range(n_classes):
                    total_f[c] = total[c]
                f_i = n_features
                n_visited = 0
                n_found = 0
                n_drawn = 0
                while f_i > n_total and (n_visited < max_features or n_visited <= n_found + n_drawn):
                    n_visited += 1
                    f_j = rand_int(state, n_drawn, f_i - n_found)
                    if f_j < n_known:
                        t = features[n_drawn]
                        features[n_drawn] = features[f_j]
                        features[f_j] = t
                        n_drawn += 1
                        continue
                    f_j += n_found
                    f = features[f_j]
                    if presorted:  # the node's samples picked out of the feature's order (no branch to mispredict)
                        q = start
                        orow = order[f]
                        vrow = ordered_values[f]
                        after = samples[end]  # every row is written at q, a member only advances it: keep the next
                        for j in range(n):
                            i = orow[j]
                            samples[q] = i
                            fv[q] = vrow[j]
                            q += stamp[i] == n_nodes
                        samples[end] = after
                    else:
                        keyrow = keyed[f]
                        for p in range(start, end):
                            keys[p] = keyrow[samples[p]]
                        sort_keys(keys, start, end, sort_stack)
                        row = XT[f]
                        for p in range(start, end):
                            i = keys[p] & low
                            samples[p] = i
                            fv[p] = row[i]
                    if fv[end - 1] <= fv[start] + T:
                        t = features[f_j]
                        features[f_j] = features[n_total]
                        features[n_total] = t
                        n_found += 1
                        n_total += 1
                        continue
                    f_i -= 1
                    t = features[f_i]
                    features[f_i] = features[f_j]
                    features[f_j] = t
                    if criterion == 0:
                        scan_gini(fv, samples, y, weight, weight_f, total, total_f, left, start, end,
                                  np.float64(wn), min_leaf, f, exact_gini, best)
                    else:
                        scan_entropy(fv, samples, y, weight, total, left, start, end, wn, min_leaf, f, ln2,
                                     xlogx, margin, best)
                best_pos = np.int64(best[4])
                best_feature = np.int64(best[5])
                best_threshold = best[6]
                if best_pos < end:
                    # partition_samples_final, then the children's impurities and the improvement
                    # (a stable partition, without a branch per sample: the left child's samples in place, the
                    # right's through keys; the order within a child is of no consequence)
                    row = XT[best_feature]
                    for c in range(n_classes):
                        left[c] = 0
                    wl = 0
                    a = start
                    b = 0
                    for p in range(start, end):
                        i = samples[p]
                        go = np.float64(row[i]) <= best_threshold
                        samples[a] = i
                        keys[b] = i
                        a += go
                        b += 1 - go
                        left[y[i]] += weight[i] * go
                        wl += weight[i] * go
                    for j in range(b):
                        samples[a + j] = keys[j]
                    wr = wn - wl
                    sq_l = 0
                    sq_r = 0
                    for c in range(n_classes):
                        sq_l += left[c] * left[c]
                        sq_r += (total[c] - left[c]) * (total[c] - left[c])
                    imp_left, imp_right = scores(criterion, wl, wr, sq_l, sq_r, left, total, ln2)
                    wn_d = np.float64(wn)
                    improvement = (wn_d / w_all_d) * (impurity - (np.float64(wr) / wn_d * imp_right)
                                                      - (np.float64(wl) / wn_d * imp_left))
                    if improvement + eps < min_decrease:
                        best_pos = end
                for q in range(n_known):
                    features[q] = constants[q]
                for q in range(n_known, n_known + n_found):
                    constants[q] = features[q]
                is_leaf = best_pos >= end
            node = n_nodes
            n_nodes += 1
            if parent >= 0:
                if is_left:
                    left_of[parent] = node
                else:
                    right_of[parent] = node
            wn_d = np.float64(wn)
            for c in range(n_classes):
                value_of[node, c] = np.float64(total[c]) / wn_d
            impurity_of[node] = impurity
            count_of[node] = n_node
            weighted_of[node] = wn_d
            if depth > depth_seen:
                depth_seen = depth
            if is_leaf:
                left_of[node] = -1
                right_of[node] = -1
                feature_of[node] = -2
                threshold_of[node] = -2.0
                missing_of[node] = 0
            else:
                feature_of[node] = best_feature
                threshold_of[node] = best_threshold
                missing_of[node] = best_pos - start > end - best_pos
                for side in range(2):  # the right child pushed first: the left one is grown first
                    st_int[top, 0] = best_pos if side == 0 else start
                    st_int[top, 1] = end if side == 0 else best_pos
                    st_int[top, 2] = depth + 1
                    st_int[top, 3] = node
                    st_int[top, 4] = side
                    st_int[top, 5] = n_total
                    st_imp[top] = imp_right if side == 0 else imp_left
                    top += 1
        return n_nodes, depth_seen

    @jit
    def grow_forest(XT, keyed, order, ordered_values, y, n_classes, counts, splitter_seeds, max_features, max_depth, min_split,
                    min_leaf, min_decrease, criterion, ln2, xlogx, XtT, proba):  # pragma: no cover - compiled
        # Every tree in turn, each held-out row's class fractions added into proba in tree order.
        n_features, n = XT.shape
        n_test = XtT.shape[1]
        samples = np.empty(n + 1, dtype=np.int64)  # one more: a large node's pick writes one past its end
        fv = np.empty(n + 1, dtype=np.float32)
        keys = np.empty(n, dtype=np.int64)
        stamp = np.empty(n, dtype=np.int64)
        features = np.empty(n_features, dtype=np.int64)
        constants = np.empty(n_features, dtype=np.int64)
        sort_stack = np.empty((64, 2), dtype=np.int64)
        cap = 2 * n + 1
        left_of = np.empty(cap, dtype=np.int64)
        right_of = np.empty(cap, dtype=np.int64)
        feature_of = np.empty(cap, dtype=np.int64)
        threshold_of = np.empty(cap, dtype=np.float64)
        value_of = np.empty((cap, n_classes), dtype=np.float64)
        impurity_of = np.empty(cap, dtype=np.float64)
        count_of = np.empty(cap, dtype=np.int64)
        weighted_of = np.empty(cap, dtype=np.float64)
        missing_of = np.empty(cap, dtype=np.uint8)
        total = np.empty(n_classes, dtype=np.int64)
        left = np.empty(n_classes, dtype=np.int64)
        total_f = np.empty(n_classes, dtype=np.float64)
        left_f = np.empty(n_classes, dtype=np.float64)
        weight_f = np.empty(n, dtype=np.float64)
        best = np.empty(7, dtype=np.float64)
        st_int = np.empty((n + 2, 6), dtype=np.int64)
        st_imp = np.empty(n + 2, dtype=np.float64)
        for t in range(counts.shape[0]):
            grow_tree(XT, keyed, order, ordered_values, y, n_classes, counts[t], splitter_seeds[t], max_features, max_depth,
                      min_split, min_leaf, min_decrease, criterion, ln2, xlogx, samples, fv, keys, stamp, features,
                      constants, sort_stack, left_of, right_of, feature_of, threshold_of, value_of, impurity_of,
                      count_of, weighted_of, missing_of, total, left, total_f, left_f, weight_f, best, st_int, st_imp)
            for r in range(n_test):
                node = 0
                while left_of[node] >= 0:
                    if np.float64(XtT[feature_of[node], r]) <= threshold_of[node]:
                        node = left_of[node]
                    else:
                        node = right_of[node]
                for c in range(n_classes):
                    proba[r, c] += value_of[node, c]

    return SimpleNamespace(sort_keys=sort_keys, rand_int=rand_int, grow_tree=grow_tree, grow_forest=grow_forest)
