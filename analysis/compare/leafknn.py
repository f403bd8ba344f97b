"""k-FP's classifier: a random forest whose leaves fingerprint a trace, then k-NN on the fingerprints.

Hayes & Danezis (USENIX Security 2016) grow a random forest on the k-FP
features, describe each trace by the leaf it reaches in every tree (its
"fingerprint"), and classify by its k nearest training fingerprints under the
Hamming distance (the fraction of trees whose leaves differ). The forest alone
(``kfp_forest`` in ``grids.toml``) is their closed-world classifier; the leaf
k-NN (``kfp_knn``) is the one they use in the open world, here with a majority
vote of the k neighbours (closed world: every trace has a class).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils.validation import check_is_fitted


class LeafKNNClassifier(ClassifierMixin, BaseEstimator):
    """Random forest leaf vectors, classified by k-NN with the Hamming distance.

    Parameters: ``n_estimators`` (1000 in k-FP), ``max_features`` of the
    forest, ``n_neighbors`` (k-FP: 3), ``random_state``. Learned: ``forest_``,
    ``knn_`` (fitted on the training leaf vectors), ``classes_``.
    """

    def __init__(self, n_estimators: int = 1000, max_features: str | int | float = "sqrt", n_neighbors: int = 3,
                 random_state: int | None = None):
        self.n_estimators = n_estimators
        self.max_features = max_features
        self.n_neighbors = n_neighbors
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> "LeafKNNClassifier":
        X = np.asarray(X)
        y = np.asarray(y)
        self.forest_ = RandomForestClassifier(n_estimators=self.n_estimators, max_features=self.max_features,
                                              random_state=self.random_state).fit(X, y)
        self.classes_ = self.forest_.classes_
        k = min(int(self.n_neighbors), len(y))
        self.knn_ = KNeighborsClassifier(n_neighbors=k, metric="hamming", algorithm="brute").fit(
            self.forest_.apply(X), y)
        return self

    def leaves(self, X: Any) -> np.ndarray:
        """The fingerprint of each row: the index of the leaf it reaches in every tree."""
        check_is_fitted(self, "forest_")
        return self.forest_.apply(np.asarray(X))

    def predict(self, X: Any) -> np.ndarray:
        return self.knn_.predict(self.leaves(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.knn_.predict_proba(self.leaves(X))
