"""One trial of the study's protocol (the splits that define trials are in :mod:`.splits`).

A trial (Jackson & Camp 2018): a stratified 80/20 split; a standard scaler fit
on the training part and applied to both parts; a grid search with stratified
3-fold cross validation on the (scaled) training part; a refit of the best
candidate on the whole training part; accuracy and macro F1 on the test part.

Everything random in a trial derives from ``(seed, trial index)`` through
:func:`trial_seed`, so a trial gives the same numbers wherever and whenever it
runs (one core, many, or a Dask cluster).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from echolab.analysis.compare.grids import ModelSpec
from echolab.errors import EcholabError

#: Bumped when a change here changes (or may change) trial results; part of every cache key.
#: 2: the grid search is echolab.analysis.compare.search.grid_search (GridSearchCV's results, less repeated work).
#: 3: outcomes say which candidates tied (``choice``), so ties are reported as ties.
#: 4: an MLP grid's candidates x folds are trained in lockstep (mlpbatch: scikit-learn's fit, up to rounding).
PROTOCOL_VERSION = 4


class ProtocolError(EcholabError):
    """The data cannot be split or fitted as the protocol asks."""


@dataclass(frozen=True)
class Split:
    """The rows of one trial: indices into the (canonically ordered) data set."""

    trial: int
    train: np.ndarray
    test: np.ndarray
    test_group: str | None = None  # the held-out group when one group is left out
    classes: tuple[str, ...] | None = None  # the classes evaluated when a grouped split holds fewer than all
    dropped: tuple[str, ...] = ()  # classes left out of this trial because one side does not hold them
    common: bool = False  # evaluated on the classes every group holds (one group out per trial)


@dataclass
class TrialOutcome:
    """What one trial of one model on one feature set produced."""

    accuracy: float
    f1_macro: float
    best_params: dict[str, Any]  # the candidate kept: the first best in grid order (GridSearchCV's rule)
    cv_best_score: float | None
    confusion: list[list[int]]
    importances: list[float] | None = None
    convergence_warnings: int = 0
    seconds: float = 0.0
    n_train: int = 0
    n_test: int = 0
    test_group: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: Each parameter's choice as text, ties shown as ties ("sqrt = log2 (same model)"); see search.describe_choice.
    choice: dict[str, str] = field(default_factory=dict)
    #: The columns of *importances* when this trial had a matrix of its own (features fit on its training part).
    feature_names: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def trial_seed(seed: int, trial: int) -> int:
    """The seed of trial *trial* of a run seeded *seed* (independent streams)."""
    return int(np.random.SeedSequence([int(seed), int(trial)]).generate_state(1)[0])


def run_trial(
    X: np.ndarray,
    y: np.ndarray,
    split: Split,
    spec: ModelSpec,
    classes: Sequence[str],
    *,
    seed: int,
    cv_folds: int = 3,
) -> TrialOutcome:
    """Scale, grid-search, refit and score one model on one split."""
    # scikit-learn is imported here, not with the module: a rerun whose trials are all cached needs none of it
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    from echolab.analysis.compare import fastfit
    from echolab.analysis.compare.search import build_compiled, grid_search

    start = time.perf_counter()
    rs = trial_seed(seed, split.trial)
    if spec.scale:
        scaler = StandardScaler().fit(X[split.train])
        x_train, x_test = scaler.transform(X[split.train]), scaler.transform(X[split.test])
    else:  # a sequence model reads the raw signed sizes
        x_train, x_test = X[split.train], X[split.test]
    y_train, y_test = y[split.train], y[split.test]
    _, counts = np.unique(y_train, return_counts=True)
    if counts.min() < cv_folds:
        raise ProtocolError(f"a class has fewer than {cv_folds} training captures; {cv_folds}-fold CV is impossible")
    folds = list(StratifiedKFold(n_splits=cv_folds).split(x_train, y_train))
    x_train, x_test = x_train.astype(spec.dtype, copy=False), x_test.astype(spec.dtype, copy=False)
    estimator = spec.build(random_state=rs)
    build_compiled(estimator, spec.param_grid(), spec.engine)  # before the record: a failed compile is said
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        search = grid_search(estimator, spec.param_grid(), x_train, y_train, folds, engine=spec.engine)
    n_conv = sum(1 for w in caught if issubclass(w.category, ConvergenceWarning))
    best = search.best_estimator
    pred = fastfit.predict(best, x_test)  # a forest's very predictions, without joblib's dispatch per tree
    importances = getattr(best, "feature_importances_", None)
    return TrialOutcome(
        accuracy=float(accuracy_score(y_test, pred)),
        f1_macro=float(f1_score(y_test, pred, labels=list(split.classes or classes), average="macro",
                                zero_division=0)),
        best_params={k: _jsonable(v) for k, v in search.best_params.items()},
        cv_best_score=search.best_score,
        confusion=confusion_matrix(y_test, pred, labels=list(classes)).tolist(),
        importances=None if importances is None else [float(v) for v in importances],
        convergence_warnings=n_conv,
        seconds=time.perf_counter() - start,
        n_train=int(len(split.train)),
        n_test=int(len(split.test)),
        test_group=split.test_group,
        extra={"fits": search.n_fits, **({"classes": list(split.classes)} if split.dropped else {})},
        choice=search.choice(),
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, np.generic):
        return value.item()
    return value
