"""The compiled forest builder grows scikit-learn's trees: node for node, the same predictions."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.model_selection import KFold, StratifiedKFold

from echolab.analysis.compare import fastfit, forestfused
from echolab.analysis.compare.search import grid_search
from numbafail import assert_compiled_like_the_c_library, assert_given_up_once, break_build

pytestmark = pytest.mark.skipif(forestfused.kernels() is None, reason="needs numba (the fast extra)")

FIELDS = ("left_child", "right_child", "feature", "threshold", "impurity", "n_node_samples",
          "weighted_n_node_samples")


def crafted(n: int = 150, features: int = 12, classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Data that exercises every rule of the splitter: ties, near-ties, constants, equal scores, clashing rows."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, features))
    X[:, 0] = np.round(X[:, 0] * 2)                        # many ties
    X[:, 1] = 3.0                                          # constant: found once, never drawn again below
    X[:, 2] = (rng.random(n) < 0.1) * 1.0                  # nearly constant
    X[:, 3] = X[:, 0]                                      # a duplicate column: equal scores, the first drawn wins
    X[:, 4] = rng.integers(0, 3, n) * 1e-9                 # distinct values within 1e-7: ties to the splitter
    X[:, 5] = np.where(rng.random(n) < 0.5, -0.0, 0.0)     # signed zeros: equal values
    X[:, 6] = np.round(X[:, 6], 1) + 1e-8                  # values that round to the same float32
    y = rng.integers(0, classes, n)
    X[:6] = X[6:12]                                        # identical rows, most of different classes
    return X, np.array([f"c{v}" for v in y])


def same_forest(ours: RandomForestClassifier, ref: RandomForestClassifier) -> None:
    assert len(ours.estimators_) == len(ref.estimators_)
    for a, b in zip(ours.estimators_, ref.estimators_):
        sa, sb = a.tree_.__getstate__(), b.tree_.__getstate__()
        assert (sa["max_depth"], sa["node_count"]) == (sb["max_depth"], sb["node_count"])
        for field in FIELDS:
            assert np.array_equal(sa["nodes"][field], sb["nodes"][field]), field
        inner = sb["nodes"]["left_child"] != -1  # a leaf's side for missing values is left unset by scikit-learn
        assert np.array_equal(sa["nodes"]["missing_go_to_left"][inner], sb["nodes"]["missing_go_to_left"][inner])
        assert sa["values"].tobytes() == sb["values"].tobytes()
        da = {k: v for k, v in a.__dict__.items() if k != "tree_"}
        db = {k: v for k, v in b.__dict__.items() if k != "tree_"}
        assert set(da) == set(db) and all(pickle.dumps(da[k]) == pickle.dumps(db[k]) for k in da)


SETTINGS = [
    {},
    {"criterion": "entropy"},
    {"criterion": "log_loss", "max_features": "log2"},
    {"max_features": None},
    {"criterion": "entropy", "max_features": 2},
    {"max_features": 0.5, "max_depth": 4},
    {"criterion": "entropy", "min_samples_leaf": 3, "min_samples_split": 7},
    {"min_impurity_decrease": 0.01},
    {"criterion": "entropy", "max_features": 1},
]


@pytest.mark.parametrize("classes", [2, 7])
@pytest.mark.parametrize("settings", SETTINGS, ids=str)
def test_a_forest_fit_is_scikit_learns_tree_for_tree(settings: dict, classes: int) -> None:
    X, y = crafted(classes=classes, seed=classes)
    ours = forestfused.fit(RandomForestClassifier(12, random_state=classes, **settings), X, y)
    ref = RandomForestClassifier(12, random_state=classes, **settings).fit(X, y)
    same_forest(ours, ref)
    assert ours.predict_proba(X).tobytes() == ref.predict_proba(X).tobytes()
    assert ours.feature_importances_.tobytes() == ref.feature_importances_.tobytes()
    assert pickle.loads(pickle.dumps(ours)).predict(X).tolist() == ref.predict(X).tolist()


@pytest.mark.parametrize("settings", SETTINGS, ids=str)
def test_fold_predictions_are_scikit_learns(settings: dict) -> None:
    X, y = crafted(seed=3)
    folds = list(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))
    forest = RandomForestClassifier(15, random_state=4, **settings)
    prepared = forestfused.ForestFolds.prepare(forest, X, y, folds)
    assert prepared is not None
    ours = prepared.predictions(forest)
    assert ours is not None
    for predicted, (train, test) in zip(ours, folds):
        ref = RandomForestClassifier(15, random_state=4, **settings).fit(X[train], y[train])
        assert predicted.tolist() == ref.predict(X[test]).tolist()
        assert predicted.tolist() == fastfit.predict(ref, X[test]).tolist()


def test_a_fold_that_lacks_a_class_predicts_the_classes_it_has() -> None:
    X, y = crafted(60, classes=3, seed=5)
    y = np.sort(y)  # unshuffled folds: the first fold's training rows lack the first class
    folds = list(KFold(3).split(X, y))
    forest = RandomForestClassifier(10, random_state=1)
    ours = forestfused.ForestFolds.prepare(forest, X, y, folds).predictions(forest)
    for predicted, (train, test) in zip(ours, folds):
        assert predicted.tolist() == RandomForestClassifier(10, random_state=1).fit(X[train], y[train]).predict(
            X[test]).tolist()


def test_bootstrap_totals_above_the_exact_fraction_range_are_scored_by_the_criterions_formula() -> None:
    # past 1024 bootstrap draws the Gini fractions are not compared exactly first: every candidate's proxy is computed
    X, y = crafted(1100, features=8, classes=3, seed=6)
    for criterion in ("gini", "entropy"):
        ours = forestfused.fit(RandomForestClassifier(3, random_state=2, criterion=criterion), X, y)
        same_forest(ours, RandomForestClassifier(3, random_state=2, criterion=criterion).fit(X, y))


def test_a_grid_search_over_forests_is_gridsearchcvs_choice() -> None:
    from sklearn.model_selection import GridSearchCV

    X, y = crafted(120, seed=7)
    grid = {"criterion": ["gini", "entropy"], "max_features": ["sqrt", 3]}
    cv = StratifiedKFold(3)
    ours = grid_search(RandomForestClassifier(20, random_state=3), grid, X, y, list(cv.split(X, y)))
    ref = GridSearchCV(RandomForestClassifier(20, random_state=3), grid, cv=cv, scoring="accuracy").fit(X, y)
    assert ours.best_params == ref.best_params_
    assert list(ours.mean_scores) == list(ref.cv_results_["mean_test_score"])
    same_forest(ours.best_estimator, ref.best_estimator_)


def test_what_the_builder_does_not_follow_is_left_to_scikit_learn(monkeypatch) -> None:
    X, y = crafted(80, seed=8)
    folds = list(StratifiedKFold(3).split(X, y))
    prepared = forestfused.ForestFolds.prepare(RandomForestClassifier(), X, y, folds)
    for forest in (RandomForestClassifier(5, class_weight="balanced", random_state=1),  # weights not whole numbers
                   RandomForestClassifier(5),                                          # a seed drawn anew each fit
                   RandomForestClassifier(5, random_state=1, max_leaf_nodes=6),        # best-first growth
                   RandomForestClassifier(5, random_state=1, bootstrap=False),
                   ExtraTreesClassifier(5, random_state=1)):
        assert prepared.predictions(forest) is None
    grown = []
    real = forestfused.grow_tree
    monkeypatch.setattr(forestfused, "grow_tree", lambda *a, **k: grown.append(1) or real(*a, **k))
    same_forest(forestfused.fit(RandomForestClassifier(3, random_state=1), X, y),
                RandomForestClassifier(3, random_state=1).fit(X, y))
    assert len(grown) == 3  # a plain refit's trees: the compiled builder's
    # a weighted forest, and unbootstrapped trees (no sample weights): scikit-learn's builder, the same trees
    ours = forestfused.fit(RandomForestClassifier(6, class_weight="balanced", random_state=1), X, y)
    same_forest(ours, RandomForestClassifier(6, class_weight="balanced", random_state=1).fit(X, y))
    ours = forestfused.fit(RandomForestClassifier(4, bootstrap=False, random_state=1), X, y)
    same_forest(ours, RandomForestClassifier(4, bootstrap=False, random_state=1).fit(X, y))
    assert len(grown) == 3
    # missing values take scikit-learn's own path for them
    Xn = X.copy()
    Xn[3, 0] = np.nan
    assert forestfused.ForestFolds.prepare(RandomForestClassifier(), Xn, y, folds) is None
    same_forest(forestfused.fit(RandomForestClassifier(4, random_state=1), Xn, y),
                RandomForestClassifier(4, random_state=1).fit(Xn, y))


def test_a_forest_too_large_to_draw_at_once_is_left_to_scikit_learn(monkeypatch) -> None:
    X, y = crafted(60, seed=10)
    folds = list(StratifiedKFold(3).split(X, y))
    prepared = forestfused.ForestFolds.prepare(RandomForestClassifier(), X, y, folds)
    monkeypatch.setattr(forestfused, "_MAX_DRAWS", 10 * 40)
    assert prepared.predictions(RandomForestClassifier(10, random_state=1)) is not None
    assert prepared.predictions(RandomForestClassifier(11, random_state=1)) is None


def test_folds_are_prepared_only_for_a_forest_grown_here_and_within_bounds(monkeypatch) -> None:
    X, y = crafted(60, seed=12)
    folds = list(StratifiedKFold(3).split(X, y))
    prepared = forestfused.ForestFolds.prepare(RandomForestClassifier(), X, y, folds)
    assert prepared.predictions(RandomForestClassifier(5)) is None  # a seed drawn anew: nothing prepared for it
    assert prepared._prepared is None
    assert prepared.predictions(RandomForestClassifier(5, random_state=0)) is not None
    assert prepared._prepared is not None
    # the draws kept for the other candidates stay within their bound
    monkeypatch.setattr(forestfused, "_MAX_DRAWS", 2 * 5 * 40)
    for seed in range(4):
        prepared.draws(seed, 5, 40)
        assert sum(c.size for c, _ in prepared._draws.values()) <= 2 * 5 * 40
    # folds too large to prepare: scikit-learn's builder
    monkeypatch.setattr(forestfused, "_MAX_PREPARED", 60 * 12 * 24 - 1)
    assert forestfused.ForestFolds.prepare(RandomForestClassifier(), X, y, folds) is None


def test_labels_a_forest_refuses_are_refused_by_the_forests_own_fit() -> None:
    X, _ = crafted(60, seed=13)
    folds = list(StratifiedKFold(3).split(X, np.arange(60) % 3))
    continuous = np.linspace(0.0, 1.0, 60)
    assert forestfused.ForestFolds.prepare(RandomForestClassifier(), X, continuous, folds) is None
    with pytest.raises(ValueError, match="Unknown label type"):
        grid_search(RandomForestClassifier(3, random_state=0), {"max_features": [1, 2]}, X, continuous, folds)


def test_trees_grown_in_threads_are_scikit_learns_own() -> None:
    X, y = crafted(80, seed=14)
    same_forest(forestfused.fit(RandomForestClassifier(6, random_state=2, n_jobs=2), X, y),
                RandomForestClassifier(6, random_state=2).fit(X, y))


def test_every_entry_point_is_compiled_when_the_builder_is_built() -> None:
    # so that a compile failure shows at the one place that falls back with a warning, not in a refit
    k = forestfused.kernels()
    assert k.grow_tree.signatures and k.grow_forest.signatures


def test_a_trial_says_when_numba_cannot_compile_the_forest_builder(monkeypatch) -> None:
    # a trial records its grid search's warnings (to count ConvergenceWarnings): this one is not swallowed
    from dataclasses import replace

    from echolab.analysis.compare.grids import load_grids
    from echolab.analysis.compare.trials import Split, run_trial

    break_build(monkeypatch, forestfused, "ECHOLAB_FOREST_FUSED")
    X, y = crafted(45, classes=2, seed=15)
    spec = replace(load_grids()["random_forest"], params={"n_estimators": 5}, grid={"max_features": [1, 2]})
    with pytest.warns(RuntimeWarning, match="scikit-learn's builder"):
        outcome = run_trial(X, y, Split(0, np.arange(36), np.arange(36, 45)), spec, ["c0", "c1"], seed=1)
    assert outcome.best_params


def test_the_builders_log_is_the_c_librarys() -> None:
    # entropy scores are the criterion's only if the compiled log is the C library's log, which libm gives
    # scikit-learn's criterion and Python's math.log alike
    x = np.concatenate([np.random.default_rng(0).random(20000), np.arange(1, 2000) / 2000.0])
    assert_compiled_like_the_c_library(math.log, x)


def test_feature_orders_rank_every_sample() -> None:
    rng = np.random.default_rng(1)
    for n in (1, 2, 17, 300):
        values = np.round(rng.normal(size=(2, n)), 1).astype(np.float32)
        values[0, : n // 3] = -0.0
        order, ordered, rank = forestfused.feature_orders(values)
        for f in range(2):
            assert sorted(order[f].tolist()) == list(range(n))
            assert np.all(np.diff(values[f, order[f]]) >= 0)
            assert ordered[f].tobytes() == values[f, order[f]].tobytes()
            assert np.array_equal(order[f][rank[f]], np.arange(n))  # each sample's position in the order


def test_folds_of_more_than_4096_rows_mark_through_several_summary_words() -> None:
    # a summary word covers 4,096 ranks: a larger fold's nodes read marks through several of them
    rng = np.random.default_rng(8)
    X = rng.normal(size=(9000, 3))
    X[:, 0] = np.round(X[:, 0], 1)
    y = np.array([f"c{v}" for v in (X[:, 1] + rng.normal(size=9000) > 0) + (X[:, 0] > 0.5)])
    folds = list(KFold(2).split(X, y))
    forest = RandomForestClassifier(3, random_state=5, max_depth=12)
    ours = forestfused.ForestFolds.prepare(forest, X, y, folds).predictions(forest)
    for predicted, (train, test) in zip(ours, folds):
        ref = RandomForestClassifier(3, random_state=5, max_depth=12).fit(X[train], y[train])
        assert predicted.tolist() == fastfit.predict(ref, X[test]).tolist()
    same_forest(forestfused.fit(RandomForestClassifier(2, random_state=5, max_depth=12), X, y),
                RandomForestClassifier(2, random_state=5, max_depth=12).fit(X, y))


def test_the_switch_turns_the_builder_off(monkeypatch) -> None:
    monkeypatch.setenv("ECHOLAB_FOREST_FUSED", "0")
    monkeypatch.setattr(forestfused, "_kernels", None)
    assert forestfused.kernels() is None
    X, y = crafted(60, seed=9)
    assert forestfused.ForestFolds.prepare(RandomForestClassifier(), X, y, [(np.arange(40), np.arange(40, 60))]) is None
    same_forest(forestfused.fit(RandomForestClassifier(3, random_state=0), X, y),
                RandomForestClassifier(3, random_state=0).fit(X, y))


def test_a_numba_that_cannot_compile_leaves_scikit_learns_builder_with_a_warning(monkeypatch) -> None:
    assert_given_up_once(break_build(monkeypatch, forestfused, "ECHOLAB_FOREST_FUSED"), "scikit-learn's builder")
    X, y = crafted(40, seed=11)
    same_forest(forestfused.fit(RandomForestClassifier(3, random_state=0), X, y),
                RandomForestClassifier(3, random_state=0).fit(X, y))
