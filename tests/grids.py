"""Small grids files for the tests: the models they use, each with the few settings a test needs.

A grids file (analysis/compare/grids.toml) names each model's estimator, its fixed
parameters and its search grid; the study's file searches wide grids, which the tests
cannot wait for. :func:`grids_toml` writes a file with only the models asked for, and
:func:`write_grids` puts it in a folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The models the tests train: estimator, label and short name (as the study's grids file has them).
MODELS: dict[str, tuple[str, str, str]] = {
    "decision_tree": ("sklearn.tree.DecisionTreeClassifier", "Decision tree", "DT"),
    "random_forest": ("sklearn.ensemble.RandomForestClassifier", "Random forest", "RF"),
    "knn": ("sklearn.neighbors.KNeighborsClassifier", "k-nearest neighbours", "KNN"),
    "mlp": ("sklearn.neural_network.MLPClassifier", "MLP", "MLP"),
    "svm_linear": ("sklearn.svm.SVC", "SVM (linear kernel)", "SVM lin"),
    "svm_rbf": ("sklearn.svm.SVC", "SVM (RBF kernel)", "SVM RBF"),
}


def _inline(table: dict[str, Any]) -> str:
    return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in table.items()) + " }" if table else "{}"


def grids_toml(models: dict[str, dict[str, dict[str, Any]]], *, labels: bool = True) -> str:
    """A grids file holding *models*: name -> {"params": {...}, "grid": {...}} (either may be left out).

    With *labels*, each model has its label and short name; without, the report names it by its key."""
    blocks = []
    for name, spec in models.items():
        estimator, label, short = MODELS[name]
        lines = [f"[models.{name}]"]
        if labels:
            lines += [f"label = {json.dumps(label)}", f"short = {json.dumps(short)}"]
        lines.append(f"estimator = {json.dumps(estimator)}")
        if "params" in spec:
            lines.append(f"params = {_inline(spec['params'])}")
        lines.append(f"grid = {_inline(spec.get('grid', {}))}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def write_grids(folder: Path, models: dict[str, dict[str, dict[str, Any]]], *, labels: bool = True) -> Path:
    """:func:`grids_toml` written to FOLDER/grids.toml; returns its path."""
    path = Path(folder) / "grids.toml"
    path.write_text(grids_toml(models, labels=labels))
    return path


#: Four quick models with small grids (the study's four classical families).
TINY = {
    "decision_tree": {"params": {}, "grid": {"criterion": ["gini", "entropy"]}},
    "random_forest": {"params": {"n_estimators": 8}, "grid": {"max_features": ["sqrt", "log2"]}},
    "knn": {"params": {}, "grid": {"n_neighbors": [1, 3], "metric": ["manhattan", "euclidean"]}},
    "mlp": {"params": {"max_iter": 5}, "grid": {"hidden_layer_sizes": [[8], [4, 4]]}},
}
