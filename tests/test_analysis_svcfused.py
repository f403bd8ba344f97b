"""An RBF grid's kernel values computed once are libsvm's own: the same SVC fits and predictions, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.svm import SVC

from echolab.analysis.compare import fastfit, svcfused
from echolab.analysis.compare.search import grid_search
from numbafail import assert_compiled_like_the_c_library, assert_given_up_once, break_build

pytestmark = pytest.mark.skipif(svcfused.kernels() is None, reason="needs numba (the fast extra)")


def data(n: int = 90, features: int = 7, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, features))
    X[:, 0] = np.round(X[:, 0])  # ties, and duplicate rows below: kernel values of exactly 1
    X[:4] = X[4:8]
    return X, rng.integers(0, classes, n)


@pytest.mark.parametrize("features", [1, 7, 20, 33])
def test_precomputed_values_give_the_rbf_fit_bit_for_bit(features: int) -> None:
    # odd and even feature counts: BLAS's ddot takes its blocks and its tail from the row's length
    X, y = data(features=features, seed=features)
    train, test = np.arange(0, 60), np.arange(60, 90)
    values = svcfused.prepare(X)
    for gamma in (0.001, 1.0 / features, 0.5, 3.0):
        K, K_predict = values.kernel(gamma)
        for C in (0.1, 1.0, 10.0):
            ref = SVC(C=C, gamma=gamma).fit(X[train], y[train])
            ours = SVC(C=C, kernel="precomputed").fit(K[np.ix_(train, train)], y[train])
            assert ours.support_.tolist() == ref.support_.tolist()
            assert ours.dual_coef_.tobytes() == ref.dual_coef_.tobytes()
            assert ours.intercept_.tobytes() == ref.intercept_.tobytes()
            assert (ours.decision_function(K_predict[np.ix_(test, train)]).tobytes()
                    == ref.decision_function(X[test]).tobytes())


def test_an_rbf_grids_folds_are_predicted_as_svc_predicts_them() -> None:
    X, y = data(120, seed=3)
    folds = list(StratifiedKFold(3, shuffle=True, random_state=1).split(X, y))
    prepared = fastfit.SVCFolds.prepare(SVC(), X, y, folds)
    for params in ({"C": 1.0}, {"C": 5.0, "gamma": 0.1}, {"C": 0.5, "gamma": "auto"}, {"C": 2.0, "gamma": "scale"}):
        ours = prepared.predictions(SVC(**params))
        for predicted, (train, test) in zip(ours, folds):
            assert predicted.tolist() == SVC(**params).fit(X[train], y[train]).predict(X[test]).tolist()
    assert prepared.rbf_values() is not None  # the shared kernel values were used


def test_an_rbf_grid_search_is_gridsearchcvs() -> None:
    X, y = data(100, seed=4)
    grid = {"C": [0.1, 1, 10], "gamma": ["auto", 0.01, 1.0]}
    cv = StratifiedKFold(3)
    ours = grid_search(SVC(kernel="rbf"), grid, X, y, list(cv.split(X, y)))
    ref = GridSearchCV(SVC(kernel="rbf"), grid, cv=cv, scoring="accuracy").fit(X, y)
    assert ours.best_params == ref.best_params_
    assert list(ours.mean_scores) == list(ref.cv_results_["mean_test_score"])


def test_kernel_values_are_kept_within_their_memory_bound(monkeypatch) -> None:
    X, _ = data(50)
    values = svcfused.prepare(X)
    monkeypatch.setattr(svcfused, "KEEP_BYTES", 3 * 2 * 50 * 50 * 8)  # room for three gammas' matrices
    first = values.kernel(0.1)
    for gamma in (0.2, 0.3):
        values.kernel(gamma)
    assert values.kernel(0.1) is first
    values.kernel(0.4)  # a fourth: the oldest is dropped, and made again when asked for
    assert values.kernel(0.1) is not first and values.kernel(0.1)[0].tobytes() == first[0].tobytes()
    monkeypatch.setattr(svcfused, "MAX_ROWS", 40)
    assert svcfused.prepare(X) is None  # too many rows: each fit computes its own values


def test_the_compiled_exp_is_the_c_librarys() -> None:
    # libsvm's kernel values use the C library's exp, which Python's math.exp calls too
    x = -np.concatenate([np.random.default_rng(0).random(20000) * 50, np.arange(2000) / 7.0])
    assert_compiled_like_the_c_library(math.exp, x)


def test_the_switch_and_a_failed_compile_leave_libsvms_own_kernel(monkeypatch) -> None:
    monkeypatch.setenv("ECHOLAB_SVC_FUSED", "0")
    monkeypatch.setattr(svcfused, "_kernels", None)
    assert svcfused.kernels() is None
    X, y = data(60)
    folds = list(StratifiedKFold(3).split(X, y))
    prepared = fastfit.SVCFolds.prepare(SVC(), X, y, folds)
    ours = prepared.predictions(SVC(C=2.0))
    assert prepared.rbf_values() is None
    for predicted, (train, test) in zip(ours, folds):
        assert predicted.tolist() == SVC(C=2.0).fit(X[train], y[train]).predict(X[test]).tolist()

    assert_given_up_once(break_build(monkeypatch, svcfused, "ECHOLAB_SVC_FUSED"), "computes its own")
