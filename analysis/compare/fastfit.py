"""Fit scikit-learn estimators with less per-fit overhead and the same fitted model.

A 400-tree forest on the study's ~400-600 training captures spends more time
*preparing* its trees than building them (about 1 ms of Python per tree
against 0.5 ms in the compiled tree builder):

* for every tree, ``BaseEnsemble._make_estimator`` clones the template tree,
  sets its parameters and draws its seed through ``get_params``, which
  introspects the constructor signature each time (``inspect.signature``);
* every tree's ``_fit`` re-derives what is the same for all trees of the
  forest: the target's type (``type_of_target``), its classes (``np.unique``),
  the resolved settings;
* every tree turns its seed into a ``RandomState`` twice (for its bootstrap
  sample and for its splitter), and ``RandomState(seed)`` first seeds a new
  Mersenne Twister from the system's entropy, then reseeds it from the seed:
  0.12 ms each time.

A fourth cost is joblib's: ``BaseForest.fit`` hands every tree to scikit-learn's
``Parallel``, which wraps it to re-apply the caller's configuration and every
warning filter around the tree's build, even when the trees are built
one after another in the caller's thread (about 80 us a tree, 15% of the
study's forest grid). Where joblib would build them so (:func:`one_after_another`)
and the forest is silent, :func:`fit` lets the forest's ``Parallel`` call each
tree's build directly, in the same order, in the same thread (:class:`_InOrder`),
and its ``delayed`` hand over the call as it is (:func:`_task`).

:func:`fit` runs the forest's own ``fit`` with all four hoisted: the template is
configured once and copied per tree (seeds drawn from the same random stream
in the same order), a tree's seed is a :class:`_SeedState` that draws what
``RandomState(seed)`` draws from one generator shared by the forest, and each
tree is built by the same compiled builder,
splitter and criterion that ``DecisionTreeClassifier._fit`` constructs, with the
same arguments. Every tree -- hence every prediction and feature importance --
is the one ``forest.fit`` builds; ``tests/test_analysis_search.py`` checks it
against scikit-learn's own fit.

The hoists lean on scikit-learn's private code (``BaseEnsemble._make_estimator``,
``estimator_params``, the compiled tree classes), so :func:`fit` uses them only
on the scikit-learn releases whose every tree was compared with scikit-learn's
own fit (:data:`CHECKED_SKLEARN`, exact versions); on any other release it is
``model.fit(X, y)``, the same model, only slower. The lean tree build also needs
plain settings (dense data without missing values, no class weights, no pruning,
depth-first growth); other forests get the hoisted template only.

An SVC costs the same way on a fold of a few hundred captures: ``SVC.fit`` and
``SVC.predict`` wrap one call each of libsvm in checks and conversions that a
grid search repeats for every candidate and fold. :func:`svc_fold_predictions`
makes those two calls with the arguments ``fit`` and ``predict`` give them, on
the same checked releases.
"""

from __future__ import annotations

import contextlib
import numbers
import threading
import warnings
from typing import Any, Iterable, Iterator

import numpy as np
import sklearn
from joblib import Parallel
from sklearn.base import ClassifierMixin, clone
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier
from sklearn.utils import check_random_state

#: scikit-learn releases (exact versions) on which ``tests/test_analysis_search.py`` compared every tree,
#: prediction and importance of :func:`fit` with scikit-learn's own fit. Add a release only after that test
#: passed on it; on any other release :func:`fit` is the plain ``model.fit``.
CHECKED_SKLEARN = ("1.9.1",)

_FORESTS = (RandomForestClassifier, ExtraTreesClassifier)
_TREES = (DecisionTreeClassifier, ExtraTreeClassifier)
_MAX_INT = np.iinfo(np.int32).max

try:  # the compiled parts DecisionTreeClassifier._fit assembles
    from sklearn.tree._classes import CRITERIA_CLF, DENSE_SPLITTERS
    from sklearn.tree._tree import DepthFirstTreeBuilder, Tree
except ImportError:  # pragma: no cover - another layout: the ordinary fit
    CRITERIA_CLF = DENSE_SPLITTERS = None  # type: ignore[assignment]
try:  # libsvm as SVC.fit and SVC.predict call it
    from sklearn.svm import SVC
    from sklearn.svm import _libsvm as libsvm
except ImportError:  # pragma: no cover - another layout: SVC's own fit
    libsvm = None  # type: ignore[assignment]
try:  # the module whose Parallel and delayed BaseForest.fit hands its trees to
    from sklearn.ensemble import _forest
except ImportError:  # pragma: no cover - another layout: joblib builds the trees
    _forest = None  # type: ignore[assignment]


def checked_release(version: str | None = None) -> bool:
    """Whether the installed scikit-learn (or *version*) is one the lean fit was checked on, tree by tree."""
    return (version or sklearn.__version__) in CHECKED_SKLEARN


def fit(model: ClassifierMixin, X: np.ndarray, y: np.ndarray, grower: Any = None) -> ClassifierMixin:
    """``model.fit(X, y)``; on a checked release, forests build the same trees with their set-up hoisted
    and, where joblib would build them one after another here, without its per-tree wrapping.

    *grower*, where given, is asked first to grow each lean tree's ``tree_`` (:func:`forestfused.fit`
    gives its compiled builder): called with the tree, the data, the encoded target, the bootstrap
    weights, the tree's random state and the settings ``_fit`` resolved, it returns the grown ``Tree``,
    or None to leave the tree to scikit-learn's builder.
    """
    if type(model) not in _FORESTS or not hasattr(model, "estimator_params") or not checked_release():
        return model.fit(X, y)
    model._make_estimator = _TreeMaker(model, grower)  # what BaseForest.fit calls once per tree
    try:
        if (model.verbose or not hasattr(_forest, "Parallel") or not hasattr(_forest, "delayed")
                or not one_after_another(model.n_jobs)):
            return model.fit(X, y)
        with _trees_in_order():
            return model.fit(X, y)
    finally:  # the fitted forest holds nothing of ours: it pickles and clones as scikit-learn's
        del model.__dict__["_make_estimator"]
        for tree in getattr(model, "estimators_", []):
            tree.__dict__.pop("_fit", None)
            if isinstance(tree.random_state, _SeedState):
                tree.random_state = tree.random_state.tree_seed


class _InOrder:
    """``Parallel(...)(tasks)`` for a forest whose trees joblib would build one after another in this thread.

    scikit-learn's ``delayed`` wraps each task in a ``_FuncWrapper`` that re-applies the caller's configuration
    and warning filters around the call, for the threads or processes it may run in; in the caller's own
    thread both are already in force, so each task's function is called as it is, in order: the same trees,
    the same exceptions. What the wrapper added and this does not: a fresh copy of the warning filters per
    tree (a warning shown "once per place" is shown once per fit, not once per tree; no tree build warns
    today) and, when the caller has no warning filters at all, scikit-learn's own warning that its ``delayed``
    ran without its ``Parallel``, once per tree.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, tasks: Iterable[tuple[Any, tuple, dict]]) -> list[Any]:
        return [getattr(task, "function", task)(*args, **kwargs) for task, args, kwargs in tasks]


def _task(function: Any) -> Any:
    """``delayed(function)`` for :class:`_InOrder`: the call as a (function, args, kwargs) triple, unwrapped.

    scikit-learn's ``delayed`` copies the function's name and docstring onto a new wrapper for every tree
    (``functools.update_wrapper``), only for :class:`_InOrder` to unwrap it again.
    """
    def call(*args: Any, **kwargs: Any) -> tuple[Any, tuple, dict]:
        return function, args, kwargs

    return call


#: Held while the forest module's Parallel is swapped. Re-entrant: a forest fitted inside another's fit (an
#: ``oob_score`` callable that fits one, say) swaps again in the same thread and restores what it found.
_IN_ORDER = threading.RLock()


@contextlib.contextmanager
def _trees_in_order() -> Iterator[None]:
    """The forest module's ``Parallel`` is :class:`_InOrder`, its ``delayed`` :func:`_task`, for the duration
    (one such fit at a time per process).

    The swap is the module's, not the thread's: meanwhile, another thread's forest (its ``fit`` without
    :func:`fit`, ``predict_proba``, ``apply``, ``feature_importances_``) runs its tasks one after another too,
    with the same results, only not in parallel and without joblib's progress output; one that took the
    module's ``Parallel`` just before the swap and its ``delayed`` just after gets scikit-learn's warning
    that its ``delayed`` was not used, once per task, and runs them without the caller's configuration.
    echolab's comparison fits in worker processes of one thread each.
    """
    with _IN_ORDER:
        saved = _forest.Parallel, _forest.delayed
        _forest.Parallel, _forest.delayed = _InOrder, _task
        try:
            yield
        finally:
            _forest.Parallel, _forest.delayed = saved


def predict(model: ClassifierMixin, X: np.ndarray) -> np.ndarray:
    """``model.predict(X)``; on a checked release, a single-output forest sums its trees without joblib.

    ``ForestClassifier.predict_proba`` dispatches every tree through joblib and the tree's own checks
    (about 0.09 ms a tree on 200 rows, more than the tree takes to answer). Here each tree's leaf values
    are read by its compiled ``tree_.predict`` and added in the forest's order into the same float64 sum,
    then divided by the number of trees, as there: the same probabilities, bit for bit.
    """
    if (type(model) not in _FORESTS or not checked_release() or getattr(model, "n_outputs_", None) != 1
            or not hasattr(model, "estimators_")):
        return model.predict(X)
    X = model._validate_X_predict(X)
    n_classes = int(model.n_classes_)
    proba = np.zeros((X.shape[0], n_classes), dtype=np.float64)
    for tree in model.estimators_:
        proba += tree.tree_.predict(X)[:, :n_classes]
    proba /= len(model.estimators_)
    return model.classes_.take(np.argmax(proba, axis=1), axis=0)


class _SeedState(np.random.RandomState):
    """A tree's seed as ``check_random_state(seed)`` makes it, on a generator the forest's trees share.

    Each ``randint`` call first reseeds the shared generator from the seed, so it draws exactly what the
    first ``randint`` of a new ``RandomState(seed)`` draws (reseeding takes 2 us, a new generator 120 us).
    That is all a forest's fit without sample or class weights asks of a tree's seed: its bootstrap sample is one
    ``randint`` (``_generate_sample_indices``) and its splitter's seed another, each from a ``RandomState``
    made anew from the seed. Any other draw would read the shared stream, so every other way of drawing
    is refused. :func:`fit` gives the tree its plain integer seed back when the forest is fitted.
    """

    def __init__(self, tree_seed: int, generator: np.random.MT19937):
        super().__init__(generator)
        self.tree_seed = tree_seed

    def randint(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.seed(self.tree_seed)
        return super().randint(*args, **kwargs)

    def __reduce__(self) -> Any:  # a copy in another process would not share the generator: refuse
        raise TypeError("a tree's seed in echolab's forest fit is not sent to another process")


#: RandomState's ways of drawing other than randint, which :class:`_SeedState` refuses.
_DRAWS = frozenset(name for name in dir(np.random.RandomState)
                   if not name.startswith("_") and name not in ("randint", "seed", "get_state", "set_state"))


def _refused(name: str) -> property:
    def refuse(self: Any) -> Any:
        raise TypeError(f"a tree's seed in echolab's forest fit draws only with randint, not {name}")

    return property(refuse)


# Refused as attributes of the class, so that every other attribute is looked up at the ordinary speed.
for _name in _DRAWS:
    setattr(_SeedState, _name, _refused(_name))
del _name


class _TreeMaker:
    """``BaseEnsemble._make_estimator`` with the template configured once per fit.

    The original: ``clone(self.estimator_)``, ``set_params`` of the forest's
    ``estimator_params``, then ``_set_random_states``, which gives every
    parameter named ``random_state`` (a tree has exactly one) the next
    ``randint(int32 max)`` of the forest's random stream.
    """

    def __init__(self, forest: Any, grower: Any = None):
        self.forest = forest
        self.grower = grower
        self.template: Any = None
        # The generator the trees' seeds share (:class:`_SeedState`), where they may share one: trees built
        # one after another, unweighted. Trees built in parallel threads (``n_jobs``, or joblib's
        # ``parallel_config``) would reseed it between another tree's reseeding and its draw; a weighted
        # forest bootstraps with ``choice``, which :class:`_SeedState` refuses.
        shared = forest.class_weight is None and one_after_another(forest.n_jobs)
        self.generator = np.random.MT19937(0) if shared else None

    def shared_seeds(self) -> bool:
        """Whether the trees' seeds share one generator (see ``__init__``)."""
        return self.generator is not None

    def __call__(self, append: bool = True, random_state: Any = None) -> Any:
        if self.template is None:
            template = clone(self.forest.estimator_)
            template.set_params(**{p: getattr(self.forest, p) for p in self.forest.estimator_params})
            if [k for k in template.get_params(deep=True) if k.endswith("random_state")] != ["random_state"]:
                raise TypeError(f"unexpected tree template {template!r}")  # not a plain tree: refuse to guess
            self.template = template
            self.lean = _LeanTreeFit(self.grower) if lean_build_applies(self.forest, template) else None
        # copy.copy(template) without BaseEstimator's pickling protocol (its __setstate__ raises and catches an
        # AttributeError for every tree): the same class, a shallow copy of the same attributes
        tree = object.__new__(type(self.template))
        tree.__dict__.update(self.template.__dict__)
        if self.lean is not None:
            tree._fit = self.lean.bind(tree)
        if random_state is not None:
            seed = check_random_state(random_state).randint(_MAX_INT)
            if self.generator is not None:
                seed = _SeedState(seed, self.generator)
            tree.random_state = seed
        if append:
            self.forest.estimators_.append(tree)
        return tree


def one_after_another(n_jobs: Any) -> bool:
    """Whether a forest's ``Parallel(n_jobs, prefer="threads")`` builds its trees in this thread, in order.

    joblib decides from *n_jobs* and the caller's ``parallel_config`` (which may even pick processes), so
    ask it the same question the forest asks it; anything unclear counts as parallel.
    """
    try:
        return Parallel(n_jobs=n_jobs, prefer="threads")._effective_n_jobs() == 1
    except Exception:  # noqa: BLE001 - a joblib without this answer: do not share
        return False


def feature_count(max_features: Any, n_features: int) -> Any:
    """``max_features`` as scikit-learn's trees resolve it (``BaseDecisionTree._fit``)."""
    if max_features == "sqrt":
        return max(1, int(np.sqrt(n_features)))
    if max_features == "log2":
        return max(1, int(np.log2(n_features)))
    if max_features is None:
        return n_features
    if isinstance(max_features, (int, np.integer)) and not isinstance(max_features, bool):
        return int(max_features)
    if isinstance(max_features, float):
        return max(1, int(max_features * n_features)) if max_features > 0.0 else 0
    return max_features  # anything else is left for the estimator to reject


def lean_build_applies(forest: Any, tree: Any) -> bool:
    """Whether :class:`_LeanTreeFit` builds exactly what ``tree._fit`` would for this forest."""
    return (
        CRITERIA_CLF is not None
        and checked_release()
        and type(tree) in _TREES
        and forest.class_weight is None
        and tree.class_weight is None
        and isinstance(tree.criterion, str) and tree.criterion in CRITERIA_CLF
        and isinstance(tree.splitter, str) and tree.splitter in DENSE_SPLITTERS
        and (tree.max_depth is None or isinstance(tree.max_depth, numbers.Integral))
        and isinstance(tree.min_samples_leaf, numbers.Integral)
        and isinstance(tree.min_samples_split, numbers.Integral)
        and tree.max_leaf_nodes is None
        and tree.ccp_alpha == 0.0
        and tree.monotonic_cst is None
    )


class _LeanTreeFit:
    """``BaseDecisionTree._fit(X, y, sample_weight, check_input=False)`` for a forest's plain trees.

    The same steps in the same order, minus the checks a forest has already
    made, with the target's classes computed once per forest (every tree of a
    forest sees the whole, already encoded target; its bootstrap is only the
    sample weights).
    """

    def __init__(self, grower: Any = None) -> None:
        self.grower = grower
        self._y: Any = None
        self._encoded: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._features: dict[tuple[str, int], Any] = {}  # (repr of max_features, columns): the count

    def bind(self, tree: Any) -> Any:
        original = tree._fit

        def _fit(X: Any, y: Any, sample_weight: Any = None, check_input: bool = True,
                 missing_values_in_feature_mask: Any = None) -> Any:
            if (check_input or missing_values_in_feature_mask is not None or not isinstance(X, np.ndarray)
                    or np.ndim(y) != 2 or y.shape[1] != 1 or sample_weight is None):
                return original(X, y, sample_weight=sample_weight, check_input=check_input,
                                missing_values_in_feature_mask=missing_values_in_feature_mask)
            return self.fit(tree, X, y, sample_weight)

        return _fit

    def classes(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The classes of *y*, *y* encoded as the builder takes it, and the class count as the tree takes it."""
        if self._y is not y:
            classes, encoded = np.unique(y[:, 0], return_inverse=True)
            self._y = y
            self._encoded = (classes, np.ascontiguousarray(encoded.reshape(-1, 1), dtype=np.float64),
                             np.array([classes.shape[0]], dtype=np.intp))
        assert self._encoded is not None
        return self._encoded

    def feature_count(self, max_features: Any, n_features: int) -> Any:
        key = (repr(max_features), n_features)
        if key not in self._features:
            self._features[key] = feature_count(max_features, n_features)
        return self._features[key]

    def fit(self, tree: Any, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray) -> Any:
        random_state = check_random_state(tree.random_state)
        n_samples, tree.n_features_in_ = X.shape
        tree.n_outputs_ = 1
        classes, y_encoded, n_classes = self.classes(y)  # the builder and the tree copy n_classes
        max_depth = _MAX_INT if tree.max_depth is None else tree.max_depth
        min_samples_leaf = tree.min_samples_leaf
        min_samples_split = max(tree.min_samples_split, 2 * min_samples_leaf)
        tree.max_features_ = self.feature_count(tree.max_features, tree.n_features_in_)
        sample_weight = np.asarray(sample_weight, dtype=np.float64, order="C")
        if sample_weight.shape != (n_samples,):
            raise ValueError(f"sample_weight has shape {sample_weight.shape}, expected ({n_samples},)")
        min_weight_leaf = tree.min_weight_fraction_leaf * sample_weight.sum()  # np.sum's very reduction
        grown = None if self.grower is None else self.grower(
            tree, X, y_encoded, sample_weight, random_state, int(n_classes[0]), tree.max_features_, max_depth,
            min_samples_split, min_samples_leaf, min_weight_leaf)
        if grown is not None:
            tree.tree_ = grown
            tree.n_classes_ = n_classes[0]
            tree.classes_ = classes
            return tree
        criterion = CRITERIA_CLF[tree.criterion](1, n_classes)
        splitter = DENSE_SPLITTERS[tree.splitter](criterion, tree.max_features_, min_samples_leaf, min_weight_leaf,
                                                  random_state, None)
        tree.tree_ = Tree(tree.n_features_in_, n_classes, 1)
        builder = DepthFirstTreeBuilder(splitter, min_samples_split, min_samples_leaf, min_weight_leaf, max_depth,
                                        tree.min_impurity_decrease)
        builder.build(tree.tree_, X, y_encoded, sample_weight, None)
        tree.n_classes_ = n_classes[0]
        tree.classes_ = classes
        return tree


#: The kernels :func:`svc_fold_predictions` hands to libsvm as ``SVC`` does (a callable kernel is SVC's own business).
_SVC_KERNELS = ("linear", "poly", "rbf", "sigmoid")


def svc_fold_predictions(model: ClassifierMixin, X: np.ndarray, y: np.ndarray,
                         folds: Iterable[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray] | None:
    """Each fold's predictions by *model* (an unfitted ``SVC``) fitted on its training rows; None where not lean.

    ``SVC.fit`` and ``SVC.predict`` wrap one call of libsvm's ``fit`` and one of its ``predict`` in
    checks and conversions that a grid search repeats for every candidate and fold: the data's and the
    labels' validation, the classes (``np.unique``), a new ``RandomState`` for one seed, the parameters'
    introspection. On a fold of a few hundred captures they cost about a third of the fit. Here the
    parameters are validated once, the classes and seed found once per fold as ``fit`` finds them, and
    libsvm is called with exactly the arguments ``fit`` and ``predict`` give it, so the predictions are
    SVC's own. What ``fit`` does besides is done too: its ``ConvergenceWarning`` when
    libsvm stops at ``max_iter``, its error for non-finite coefficients, its error for a single class.

    Only on a release checked against ``SVC`` itself (:data:`CHECKED_SKLEARN`), for a string kernel, no
    class weights, no probabilities (the default), a silent model, an integer or no ``random_state``,
    and a dense float64 matrix; anything else is None, for the caller to fit the ordinary way. A grid
    search prepares its folds once for all its candidates: :meth:`SVCFolds.prepare`.
    """
    prepared = SVCFolds.prepare(model, X, y, folds)
    return None if prepared is None else prepared.predictions(model)


class SVCFolds:
    """A grid's folds as :func:`svc_fold_predictions` hands them to libsvm, prepared once for every candidate:
    each fold's training and test rows as contiguous float64 matrices, its classes and its labels' codes."""

    def __init__(self, X: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]):
        self.X, self.y, self.folds = X, y, folds
        self._rbf: Any = None  # the grid's RBF kernel values (svcfused), made at its first RBF candidate
        self.rows = [(np.ascontiguousarray(X[train]), np.ascontiguousarray(X[test])) for train, test in folds]
        # each fold's classes and its labels' codes, found at the first candidate whose parameters pass, after
        # check_classification_targets: the order in which fit checks a model, then its labels
        self.labels: list[tuple[np.ndarray, np.ndarray]] | None = None

    @classmethod
    def prepare(cls, estimator: ClassifierMixin, X: np.ndarray, y: np.ndarray,
                folds: Iterable[tuple[np.ndarray, np.ndarray]]) -> SVCFolds | None:
        """The folds of *X* and *y*, or None where an SVC of *estimator*'s kind is not fitted lean on them."""
        folds = list(folds)
        if (libsvm is None or type(estimator) is not SVC or not checked_release() or type(X) is not np.ndarray
                or X.dtype != np.float64 or X.ndim != 2 or not X.shape[1] or np.ndim(y) != 1
                or not np.isfinite(X).all() or not all(len(train) and len(test) for train, test in folds)
                or sklearn.get_config()["skip_parameter_validation"]):
            return None  # SVC's own checks say what is wrong with such data (or are skipped, as configured)
        return cls(X, y, folds)

    def predictions(self, model: ClassifierMixin) -> list[np.ndarray] | None:
        """Each fold's predictions by *model* (an unfitted SVC) fitted on its training rows; None where not lean."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.utils.multiclass import check_classification_targets

        if type(model) is not SVC:
            return None
        model._validate_params()  # as fit does first: the same errors for a bad C, gamma, kernel...
        p = model.get_params()
        seed_from = p["random_state"]
        if (not isinstance(p["kernel"], str) or p["kernel"] not in _SVC_KERNELS or p["class_weight"] is not None
                or not (isinstance(p["probability"], str) and p["probability"] == "deprecated") or p["verbose"]
                or p["break_ties"] or not (seed_from is None or isinstance(seed_from, numbers.Integral))):
            return None
        if self.labels is None:
            check_classification_targets(self.y)
            self.labels = []
            for train, _ in self.folds:
                classes, codes = np.unique(self.y[train], return_inverse=True)
                self.labels.append((classes, np.asarray(codes, dtype=np.float64, order="C")))
        predictions, seed = [], None
        for (X_train, X_test), (classes, codes), (train, test) in zip(self.rows, self.labels, self.folds):
            if len(classes) < 2:
                raise ValueError(f"The number of classes has to be greater than one; got {len(classes)} class")
            libsvm.set_verbosity_wrap(0)  # libsvm's printing is global: fit silences it for each silent model
            if isinstance(p["gamma"], str):  # SVC.fit's _gamma
                if p["gamma"] == "scale":
                    variance = X_train.var()
                    gamma = 1.0 / (X_train.shape[1] * variance) if variance != 0 else 1.0
                else:
                    gamma = 1.0 / X_train.shape[1]
            else:
                gamma = p["gamma"]
            if seed is None or seed_from is None:  # fit draws its seed anew each time: from the global stream,
                seed = check_random_state(seed_from).randint(np.iinfo("i").max)  # or again from RandomState(int)
            kernel = p["kernel"]
            shared = self.rbf_values() if kernel == "rbf" else None
            if shared is not None:  # the kernel values libsvm would compute, computed once for the grid
                K, K_predict = shared.kernel(gamma)
                X_train, X_test = K[np.ix_(train, train)], K_predict[np.ix_(test, train)]
                kernel = "precomputed"
            support, vectors, n_support, dual_coef, intercept, prob_a, prob_b, status, _ = libsvm.fit(
                X_train, codes, svm_type=0, sample_weight=np.empty(0), class_weight=np.ones(len(classes)),
                kernel=kernel, C=p["C"], nu=model.nu, probability=False, degree=p["degree"],
                shrinking=p["shrinking"], tol=p["tol"], cache_size=p["cache_size"], coef0=p["coef0"], gamma=gamma,
                epsilon=model.epsilon, max_iter=p["max_iter"], random_seed=seed)
            if status == 1:
                warnings.warn(f"Solver terminated early (max_iter={p['max_iter']:d}).  Consider pre-processing "
                              "your data with StandardScaler or MinMaxScaler.", ConvergenceWarning, stacklevel=2)
            if not (np.isfinite(intercept).all() and np.isfinite(dual_coef).all()):
                raise ValueError("The dual coefficients or intercepts are not finite. The input data may contain "
                                 "large values and need to be preprocessed.")
            predicted = libsvm.predict(X_test, support, vectors, n_support, dual_coef, intercept, prob_a, prob_b,
                                       svm_type=0, kernel=kernel, degree=p["degree"], coef0=p["coef0"],
                                       gamma=gamma, cache_size=p["cache_size"])
            predictions.append(classes.take(np.asarray(predicted, dtype=np.intp)))
        return predictions

    def rbf_values(self) -> Any:
        """The grid's RBF kernel values (:mod:`.svcfused`, the ``fast`` extra), or None where they are not used."""
        if self._rbf is None:
            from echolab.analysis.compare import svcfused

            self._rbf = svcfused.prepare(self.X) or False
        return self._rbf or None
