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
from echolab.analysis.compare.sources import synthetic_source
from echolab.analysis.compare.search import grid_search, model_identity

CASES = [
    (DecisionTreeClassifier(random_state=5), {"criterion": ["gini", "entropy"]}),
    (RandomForestClassifier(n_estimators=15, random_state=5),
     {"criterion": ["gini", "entropy"], "max_features": ["sqrt", "log2"]}),
    (SVC(kernel="rbf", decision_function_shape="ovo"), {"C": [0.1, 1, 10], "gamma": ["auto", 0.01]}),
    (KNeighborsClassifier(), {"n_neighbors": [1, 3, 5], "weights": ["uniform", "distance"]}),
    (MLPClassifier(max_iter=30, random_state=5), {"hidden_layer_sizes": [(10,), (5, 5)], "activation": ["relu", "logistic"]}),
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
    RandomForestClassifier(40, criterion="entropy", max_features="log2", random_state=9),
    RandomForestClassifier(40, random_state=2, min_samples_leaf=2, max_depth=6),
    ExtraTreesClassifier(30, random_state=4),
    RandomForestClassifier(20, random_state=3, class_weight="balanced"),  # not plain: the ordinary fit
], ids=["rf-entropy-log2", "rf-shallow", "extra-trees", "rf-class-weight"])
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
    assert (ours.feature_importances_ == ref.feature_importances_).all()
    assert pickle.loads(pickle.dumps(ours)).predict(X).tolist() == ref.predict(X).tolist()
    assert fastfit.lean_build_applies(ours, ours.estimators_[0]) == (forest.class_weight is None)


def test_model_dtype_is_checked_and_keyed(tmp_path) -> None:
    specs = load_grids()
    assert specs["mlp"].dtype == "float32" and specs["mlp"].canonical()["dtype"] == "float32"
    assert specs["random_forest"].dtype == "float64" and "dtype" not in specs["random_forest"].canonical()
    bad = tmp_path / "g.toml"
    bad.write_text('[models.x]\nestimator = "sklearn.svm.SVC"\ndtype = "float16"\n')
    with pytest.raises(GridError, match="model 'x': dtype must be one of float64, float32, not 'float16'"):
        load_grids(bad)
