"""The protocol's grid search gives what scikit-learn's GridSearchCV gives, with fewer fits."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from echolab.analysis.compare import fastfit
from echolab.analysis.compare.fastfit import feature_count
from echolab.analysis.compare.grids import GridError, load_grids
from echolab.analysis.compare.synthetic import synthetic_source
from echolab.analysis.compare.search import forest_prefix, grid_search, model_identity

CASES = [
    (DecisionTreeClassifier(random_state=5), {"criterion": ["gini", "entropy"]}),
    (RandomForestClassifier(n_estimators=15, random_state=5),
     {"criterion": ["gini", "entropy"], "max_features": ["sqrt", "log2"]}),
    (SVC(kernel="rbf", decision_function_shape="ovo"), {"C": [0.1, 1, 10], "gamma": ["auto", 0.01]}),
    (SVC(kernel="linear", decision_function_shape="ovo", random_state=4), {"C": [0.1, 5]}),
    (KNeighborsClassifier(), {"n_neighbors": [1, 3, 5], "weights": ["uniform", "distance"]}),
    (MLPClassifier(max_iter=30, random_state=5), {"hidden_layer_sizes": [(10,), (5, 5)], "activation": ["relu", "logistic"]}),
    (RandomForestClassifier(random_state=6), {"n_estimators": [12, 4, 20], "max_features": ["sqrt", None]}),
]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    src = synthetic_source(25, seed=3)
    X = StandardScaler().fit_transform(np.asarray(src.records)[:, :22])  # 22 columns: sqrt and log2 both give 4
    return X, src.y


@pytest.mark.parametrize("estimator,grid", CASES, ids=lambda v: type(v).__name__ if not isinstance(v, dict) else "")
def test_grid_search_equals_gridsearchcv(data, estimator, grid) -> None:
    X, y = data
    cv = StratifiedKFold(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = GridSearchCV(estimator, grid, cv=cv, scoring="accuracy", n_jobs=1).fit(X, y)
        ours = grid_search(estimator, grid, X, y, list(cv.split(X, y)))
    assert ours.best_index == ref.best_index_
    assert ours.best_params == ref.best_params_
    assert ours.best_score == ref.best_score_
    assert ours.mean_scores == ref.cv_results_["mean_test_score"].tolist()
    assert (ours.best_estimator.predict(X) == ref.predict(X)).all()
    if hasattr(ref.best_estimator_, "feature_importances_"):
        assert (ours.best_estimator.feature_importances_ == ref.best_estimator_.feature_importances_).all()


def test_forest_candidates_with_the_same_feature_count_are_fit_once(data) -> None:
    X, y = data
    estimator, grid = CASES[1]
    folds = list(StratifiedKFold(3).split(X, y))
    res = grid_search(estimator, grid, X, y, folds)
    assert res.n_fits == 2 * 3 + 1  # 22 columns: sqrt = log2 = 4 features, so 2 distinct models of 4
    wide = np.hstack([X, X[:, :8]])  # 30 columns: sqrt 5, log2 4
    assert grid_search(estimator, grid, wide, y, folds).n_fits == 4 * 3 + 1
    assert model_identity(estimator, {"max_features": "sqrt"}, 22) == model_identity(estimator, {"max_features": "log2"}, 22)
    assert model_identity(SVC(), {"gamma": "auto"}, 1) != model_identity(SVC(), {"gamma": 1.0}, 1)
    assert [feature_count(v, 52) for v in ("sqrt", "log2", None, 3, 0.5)] == [7, 5, 52, 3, 26]


@pytest.mark.parametrize("forest", [
    RandomForestClassifier(30, random_state=7),
    RandomForestClassifier(30, random_state=8, max_samples=0.5, criterion="entropy"),
    ExtraTreesClassifier(30, random_state=4, bootstrap=True),
], ids=["rf", "rf-subsample", "extra-trees"])
def test_the_first_trees_of_a_forest_are_the_smaller_forest(data, forest) -> None:
    X, y = data
    big = clone(forest).fit(X, y)
    for n in (1, 7, 30):
        small = clone(forest).set_params(n_estimators=n).fit(X, y)
        ours = forest_prefix(big, n)
        assert len(ours.estimators_) == n and ours.n_estimators == n and len(big.estimators_) == 30
        for a, b in zip(ours.estimators_, small.estimators_):
            assert a.random_state == b.random_state
            assert (a.tree_.feature == b.tree_.feature).all() and (a.tree_.threshold == b.tree_.threshold).all()
            assert (a.tree_.value == b.tree_.value).all()
        assert (ours.predict_proba(X) == small.predict_proba(X)).all()
        assert (ours.feature_importances_ == small.feature_importances_).all()
    # in a grid search: one forest per fold for all counts of the same other parameters
    res = grid_search(clone(forest), {"n_estimators": [5, 30, 12]}, X, y, list(StratifiedKFold(3).split(X, y)))
    assert res.n_fits == 3 + 1


@pytest.mark.parametrize("forest", [
    RandomForestClassifier(40, criterion="entropy", max_features="log2", random_state=9),
    RandomForestClassifier(40, random_state=2, min_samples_leaf=2, max_depth=6),
    ExtraTreesClassifier(30, random_state=4),
    RandomForestClassifier(20, random_state=3, class_weight="balanced"),  # not plain: the ordinary fit
    RandomForestClassifier(24, random_state=5, n_jobs=2),  # trees in threads: each seed its own generator
    RandomForestClassifier(20, random_state=6, bootstrap=False, max_leaf_nodes=12),  # the tree's own _fit
    RandomForestClassifier(20, random_state=7, max_samples=0.5),
], ids=["rf-entropy-log2", "rf-shallow", "extra-trees", "rf-class-weight", "rf-threads", "rf-leaf-nodes",
        "rf-max-samples"])
def test_fastfit_builds_the_forest_scikit_learn_builds(data, forest) -> None:
    X, y = data
    ref = clone(forest).fit(X, y)
    ours = fastfit.fit(clone(forest), X, y)
    assert len(ours.estimators_) == len(ref.estimators_)
    for a, b in zip(ours.estimators_, ref.estimators_):
        assert a.random_state == b.random_state and a.max_features_ == b.max_features_
        assert (a.tree_.feature == b.tree_.feature).all() and (a.tree_.threshold == b.tree_.threshold).all()
        assert (a.tree_.value == b.tree_.value).all() and (a.classes_ == b.classes_).all()
    assert (ours.predict_proba(X) == ref.predict_proba(X)).all()
    unseen = X[::-1] * 0.9 + 0.05  # rows between the training rows: trees disagree, votes split
    assert fastfit.predict(ours, unseen).tolist() == ref.predict(unseen).tolist()
    assert (ours.feature_importances_ == ref.feature_importances_).all()
    assert pickle.loads(pickle.dumps(ours)).predict(X).tolist() == ref.predict(X).tolist()
    # The private tree build runs only on a release checked tree by tree, and only for plain settings.
    lean = forest.class_weight is None and forest.max_leaf_nodes is None and fastfit.checked_release()
    assert fastfit.lean_build_applies(ours, ours.estimators_[0]) == lean
    assert not any(isinstance(tree.random_state, np.random.RandomState) for tree in ours.estimators_)


def test_a_trees_seed_draws_what_a_new_random_state_draws() -> None:
    """Seeds sharing one generator, used in turn, each draw what RandomState(seed) draws first; nothing else."""
    generator = np.random.MT19937(0)
    seeds = [fastfit._SeedState(s, generator) for s in (5, 2**31 - 2, 0)]
    for _ in range(2):  # interleaved, and again: every call starts from the seed
        for state in seeds:
            for args in ((0, 416, 416), (0, 2**31 - 1)):
                assert np.array_equal(state.randint(*args), np.random.RandomState(state.tree_seed).randint(*args))
    with pytest.raises(TypeError, match="only with randint, not choice"):
        seeds[0].choice(10, 5)
    with pytest.raises(TypeError, match="not random_sample"):
        seeds[0].random_sample()
    with pytest.raises(TypeError, match="not sent to another process"):
        pickle.dumps(seeds[0])


def test_trees_built_in_threads_or_processes_do_not_share_a_generator(data) -> None:
    """Threads could reseed a shared generator between each other's reseeding and draw; processes cannot share it."""
    from joblib import parallel_config

    assert fastfit._TreeMaker(RandomForestClassifier(n_jobs=1)).shared_seeds()
    assert not fastfit._TreeMaker(RandomForestClassifier(n_jobs=2)).shared_seeds()
    assert not fastfit._TreeMaker(RandomForestClassifier(class_weight="balanced")).shared_seeds()
    X, y = data
    forest = RandomForestClassifier(16, random_state=8)
    with parallel_config(backend="loky", n_jobs=2):  # the caller's config sends even n_jobs=None trees to processes
        assert not fastfit._TreeMaker(forest).shared_seeds()
        ours = fastfit.fit(clone(forest), X, y)
    ref = clone(forest).fit(X, y)
    assert all((a.tree_.threshold == b.tree_.threshold).all() for a, b in zip(ours.estimators_, ref.estimators_))


def test_trees_built_one_after_another_skip_joblibs_wrapping_and_the_forest_module_is_left_as_it_was(
        data, monkeypatch) -> None:
    """Trees joblib would build in this thread are built without scikit-learn's per-tree wrapper; threads and
    verbosity keep joblib; a build that fails, or a forest fitted inside another's fit, leaves the module as it was."""
    import threading

    from sklearn.ensemble import _forest
    from sklearn.utils import parallel

    X, y = data
    sklearns, sklearns_delayed = _forest.Parallel, _forest.delayed
    wrapped = []
    original = parallel._FuncWrapper.__call__

    def counted(self, *args, **kwargs):
        wrapped.append(self.function.__name__)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(parallel._FuncWrapper, "__call__", counted)
    fastfit.fit(RandomForestClassifier(12, random_state=1), X, y)
    assert wrapped == [] and _forest.Parallel is sklearns and _forest.delayed is sklearns_delayed
    fastfit.fit(RandomForestClassifier(12, random_state=1, n_jobs=2), X, y)  # threads: joblib's own
    assert wrapped.count("_parallel_build_trees") == 12
    fastfit.fit(RandomForestClassifier(12, random_state=1, verbose=1), X, y)  # joblib reports progress
    assert wrapped.count("_parallel_build_trees") == 24 and _forest.Parallel is sklearns

    built = []
    lean_fit = fastfit._LeanTreeFit.fit

    def fails_at_the_third_tree(self, tree, *args):
        built.append(tree)
        if len(built) == 3:
            raise MemoryError("the third tree")
        return lean_fit(self, tree, *args)

    monkeypatch.setattr(fastfit._LeanTreeFit, "fit", fails_at_the_third_tree)
    with pytest.raises(MemoryError, match="the third tree"):
        fastfit.fit(RandomForestClassifier(12, random_state=1), X, y)
    assert len(built) == 3 and _forest.Parallel is sklearns and _forest.delayed is sklearns_delayed
    monkeypatch.setattr(fastfit._LeanTreeFit, "fit", lean_fit)

    def score_by_fitting_another(y_true, y_pred):  # a forest fitted inside another's fit, in the same thread
        fastfit.fit(RandomForestClassifier(2, random_state=0), X, y)
        return 0.5

    done = []
    inner = threading.Thread(target=lambda: done.append(fastfit.fit(
        RandomForestClassifier(25, random_state=1, oob_score=score_by_fitting_another), X, y)), daemon=True)
    inner.start()
    inner.join(60)
    assert done and done[0].oob_score_ == 0.5 and _forest.Parallel is sklearns and _forest.delayed is sklearns_delayed


@pytest.mark.parametrize("params", [
    {"kernel": "rbf", "gamma": "scale"}, {"kernel": "rbf", "gamma": "auto", "C": 10},
    {"kernel": "linear", "C": 0.5, "random_state": 3}, {"kernel": "poly", "degree": 2, "gamma": 0.1, "coef0": 1.0},
    {"kernel": "sigmoid", "gamma": 0.01, "shrinking": False, "tol": 1e-4},
])
def test_an_svcs_folds_are_predicted_by_libsvm_as_svc_predicts_them(data, params) -> None:
    X, y = data
    folds = list(StratifiedKFold(3).split(X, y))
    two = np.isin(y, np.unique(y)[:2])  # and a binary problem, where SVC flips its public coefficients
    binary = list(StratifiedKFold(3).split(X[two], y[two]))
    for rows, labels, splits in ((X, y, folds), (X[two], y[two], binary)):
        ours = fastfit.svc_fold_predictions(SVC(**params), rows, labels, splits)
        assert ours is not None and len(ours) == len(splits)
        for (train, test), predicted in zip(splits, ours):
            ref = SVC(**params).fit(rows[train], labels[train])
            assert predicted.tolist() == ref.predict(rows[test]).tolist()


def test_what_the_lean_svc_fit_does_not_reproduce_is_left_to_svc(data) -> None:
    from sklearn.utils._param_validation import InvalidParameterError

    X, y = data
    folds = list(StratifiedKFold(3).split(X, y))
    for model in (SVC(class_weight="balanced"), SVC(kernel=lambda a, b: a @ b.T), SVC(verbose=True),
                  SVC(random_state=np.random.RandomState(0))):
        assert fastfit.svc_fold_predictions(model, X, y, folds) is None
    assert fastfit.svc_fold_predictions(SVC(), X.astype(np.float32), y, folds) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # NumPy's word on np.matrix itself
        matrix = np.asmatrix(X)
    assert fastfit.svc_fold_predictions(SVC(), matrix, y, folds) is None  # SVC refuses np.matrix
    assert fastfit.svc_fold_predictions(SVC(), X[:, :0], y, folds) is None  # no columns: SVC's own error
    assert fastfit.svc_fold_predictions(SVC(), X, y, [(folds[0][0], folds[0][1][:0])]) is None  # no test rows
    import sklearn

    with sklearn.config_context(skip_parameter_validation=True):  # fit would not check: neither is checked here
        assert fastfit.svc_fold_predictions(SVC(), X, y, folds) is None
    nan = X.copy()
    nan[0, 0] = np.nan
    assert fastfit.svc_fold_predictions(SVC(), nan, y, folds) is None  # SVC.fit says what is wrong
    with pytest.raises(InvalidParameterError):  # the parameters are checked as fit checks them
        fastfit.svc_fold_predictions(SVC(C=-1.0), X, y, folds)
    with pytest.warns(ConvergenceWarning, match="terminated early"):  # fit's warning, once per fold
        fastfit.svc_fold_predictions(SVC(max_iter=1), X, y, folds)
    one = y == y[0]
    with pytest.raises(ValueError, match="greater than one"):
        fastfit.svc_fold_predictions(SVC(), X[one], y[one], [(np.arange(5), np.arange(5, 8))])


def test_fold_accuracy_is_scikit_learns_accuracy_score() -> None:
    from sklearn.metrics import accuracy_score

    from echolab.analysis.compare.search import accuracy

    rng = np.random.RandomState(3)
    for n in (1, 7, 208, 1000):
        for labels in (np.array(["weather", "music", "quotes"]), np.arange(4)):
            y_true, y_pred = rng.choice(labels, n), rng.choice(labels, n)
            for pred in (y_pred, y_true.copy()):
                assert accuracy(y_true, pred) == accuracy_score(y_true, pred)  # the same float, to the last bit
    column = np.array([["a"], ["b"], ["b"]])  # what the fast path does not take is accuracy_score's
    assert accuracy(column, np.array(["a", "b", "a"])) == accuracy_score(column, np.array(["a", "b", "a"]))
    with pytest.raises(ValueError):  # continuous "labels": accuracy_score's error, not a score
        accuracy(np.array([0.5, 1.5]), np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        accuracy(np.array(["a", "b"]), np.array(["a"]))


def test_fastfit_is_the_plain_fit_on_a_release_not_checked(data, monkeypatch) -> None:
    """On a scikit-learn release nobody compared tree by tree, no private code of it is touched."""
    import sklearn

    X, y = data
    forest = RandomForestClassifier(12, random_state=1)
    ref = clone(forest).fit(X, y)

    def private_code_used(*args, **kwargs):
        raise AssertionError("fastfit used scikit-learn's private code on an unchecked release")

    monkeypatch.setattr(sklearn, "__version__", "1.8.0")
    monkeypatch.setattr(fastfit, "_TreeMaker", private_code_used)
    monkeypatch.setattr(fastfit, "_LeanTreeFit", private_code_used)
    assert not fastfit.checked_release()
    ours = fastfit.fit(clone(forest), X, y)
    assert (ours.predict_proba(X) == ref.predict_proba(X)).all()
    assert "_make_estimator" not in ours.__dict__
    assert fastfit.checked_release("1.9.1") and not fastfit.checked_release("1.9.2")


def test_ties_are_reported_as_ties(data) -> None:
    """On 22 columns sqrt and log2 grow the same forest: the search must not report sqrt as the winner."""
    X, y = data
    folds = list(StratifiedKFold(3).split(X, y))
    forest = RandomForestClassifier(n_estimators=5, random_state=1)
    res = grid_search(forest, {"max_features": ["sqrt", "log2"]}, X, y, folds)
    assert res.best_params == {"max_features": "sqrt"}  # GridSearchCV's pick: the first of equals
    assert res.tied == [0, 1] and res.same_model == [0, 1]
    assert res.choice() == {"max_features": "sqrt = log2 (same model)"}
    # A tie between different models says "tie"; a clear winner is named alone.
    knn = grid_search(KNeighborsClassifier(1), {"weights": ["uniform", "distance"]}, X, y, folds)
    assert knn.choice() == {"weights": "uniform = distance (tie)"}  # with one neighbour the weights cannot matter
    wide = np.hstack([X, X[:, :8]])
    alone = grid_search(forest, {"max_features": [1, None]}, wide, y, folds)
    assert len(alone.tied) == 1 and alone.choice()["max_features"] in ("1", "None")


def test_model_dtype_is_checked_and_keyed(tmp_path) -> None:
    specs = load_grids()
    assert specs["mlp"].dtype == "float32" and specs["mlp"].canonical()["dtype"] == "float32"
    assert specs["random_forest"].dtype == "float64" and "dtype" not in specs["random_forest"].canonical()
    bad = tmp_path / "g.toml"
    bad.write_text('[models.x]\nestimator = "sklearn.svm.SVC"\ndtype = "float16"\n')
    with pytest.raises(GridError, match="model 'x': dtype must be one of float64, float32, not 'float16'"):
        load_grids(bad)


KNN_GRID = {"n_neighbors": [1, 4, 9], "weights": ["uniform", "distance"], "metric": ["manhattan", "euclidean"]}


def _knn_search_against_gridsearchcv(X: np.ndarray, y: np.ndarray, grid: dict, monkeypatch) -> int:
    """grid_search against GridSearchCV on a k-NN grid; returns how often a candidate ran its own search."""
    from echolab.analysis.compare import search

    cv = StratifiedKFold(3)
    ref = GridSearchCV(KNeighborsClassifier(), grid, cv=cv, scoring="accuracy", n_jobs=1).fit(X, y)
    own = []
    plain_predict = KNeighborsClassifier.predict
    monkeypatch.setattr(KNeighborsClassifier, "predict", lambda self, rows: own.append(1) or plain_predict(self, rows))
    ours = search.grid_search(KNeighborsClassifier(), grid, X, y, list(cv.split(X, y)))
    monkeypatch.undo()
    assert ours.mean_scores == ref.cv_results_["mean_test_score"].tolist()
    assert ours.best_params == ref.best_params_ and ours.best_index == ref.best_index_
    assert (ours.best_estimator.predict(X) == ref.predict(X)).all()
    return len(own)


def test_knn_candidates_share_one_neighbour_search_per_fold(monkeypatch) -> None:
    rng = np.random.RandomState(4)
    y = np.arange(150) % 3
    X = rng.randn(150, 20) + 0.6 * y[:, None] * rng.randn(1, 20)  # 20 columns: scikit-learn searches by brute force
    assert _knn_search_against_gridsearchcv(X, y, KNN_GRID, monkeypatch) == 0  # no candidate searched on its own
    # repeated rows of small integers: exact ties at the cuts, so each candidate searches on its own, same scores
    Xi = np.rint(rng.rand(150, 20) * 2 + 0.5 * y[:, None]).astype(np.float64)
    Xi[1::7] = Xi[::7][:len(Xi[1::7])]
    assert _knn_search_against_gridsearchcv(Xi, y, KNN_GRID, monkeypatch) > 0
    # a distance the shared path does not handle: the ordinary search, still GridSearchCV's choice
    assert _knn_search_against_gridsearchcv(X, y, {"n_neighbors": [1, 3], "metric": ["chebyshev"]},
                                            monkeypatch) == 6


def test_equal_distances_inside_a_distance_weighted_vote_are_left_to_the_candidates_own_search(monkeypatch) -> None:
    # 12 distinct training rows; from the test row (all zeros) pairs of them of different classes sit at equal
    # distances, and the two classes' inverse-distance sums are equal on paper: their last bit depends on the
    # order the search returns the equal pair in, which differs between a search for 9 and one for 12
    dists, labels = [1, 2, 2, 3, 3, 7, 7, 8, 8, 20, 21, 22], [0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
    X = np.zeros((13, 16))
    for j, d in enumerate(dists):
        X[j, j % 16] = d
    folds = [(np.arange(12), np.array([12]))]
    for last in (0, 1):
        y = np.array(labels + [last])
        for metric in ("manhattan", "euclidean"):
            grid = {"n_neighbors": [9, 11], "weights": ["distance"], "metric": [metric]}
            ref = GridSearchCV(KNeighborsClassifier(), grid, cv=folds, scoring="accuracy").fit(X, y)
            assert grid_search(KNeighborsClassifier(), grid, X, y, folds).mean_scores == \
                ref.cv_results_["mean_test_score"].tolist()
    # one label per row as a column: the ordinary search, as before
    Xc = np.random.RandomState(1).randn(60, 20)
    yc = (np.arange(60) % 3)[:, None]
    cv = list(StratifiedKFold(3).split(Xc, yc[:, 0]))
    grid = {"n_neighbors": [1, 5], "weights": ["uniform", "distance"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's column-vector y warning
        ref = GridSearchCV(KNeighborsClassifier(), grid, cv=cv, scoring="accuracy").fit(Xc, yc)
        assert grid_search(KNeighborsClassifier(), grid, Xc, yc, cv).mean_scores == \
            ref.cv_results_["mean_test_score"].tolist()


def test_a_near_tie_at_a_cut_is_left_to_the_candidates_own_search() -> None:
    from echolab.analysis.compare.search import _shared_search

    train = np.zeros((4, 16))
    train[0, 0], train[1, 0], train[2, 0], train[3, 0] = 1.0, 1.0 + 1e-13, 3.0, 7.0  # 1 and 1 + 1e-13 from 0
    model = KNeighborsClassifier(n_neighbors=1, algorithm="brute").fit(train, [0, 1, 0, 1])
    for order, metric in ((2, "euclidean"), (1, "manhattan")):
        model.set_params(metric=metric).fit(train, [0, 1, 0, 1])
        dist, ind, clear = _shared_search(model, 3, train, np.zeros((1, 16)), order)
        assert ind[0].tolist() == [0, 1, 2, 3] and dist.shape == (1, 4)
        assert clear == {1: False, 2: True, 3: True}  # rounding could swap the first two, not the rest
