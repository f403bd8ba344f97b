"""The lockstep MLP trainer (echolab.analysis.compare.mlpbatch) against scikit-learn's own MLPClassifier.fit.

Small crafted data, small networks: every fit of a stack is compared with the
same candidate fitted alone by scikit-learn, on the same rows and seed.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neural_network import MLPClassifier

from echolab.analysis.compare import mlpbatch
from echolab.analysis.compare.search import grid_search
from numbafail import assert_given_up_once, break_build


def data(n: int, d: int = 5, classes: int = 4, dtype: str = "float64", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    y = np.arange(n) % classes
    X = rng.randn(n, d) + 0.8 * y[:, None] * rng.randn(1, d)
    return X.astype(dtype), np.array([f"c{v}" for v in y])


def assert_same_fit(ours: MLPClassifier, ref: MLPClassifier, X: np.ndarray, atol: float) -> None:
    assert ours.n_iter_ == ref.n_iter_
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-5)
    assert (ours.predict(X) == ref.predict(X)).all()
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), rtol=0, atol=1e-5)


@pytest.mark.parametrize("dtype,atol", [("float64", 1e-10), ("float32", 1e-5)])
def test_each_fit_of_a_stack_is_scikit_learns(dtype: str, atol: float) -> None:
    # 91 rows: folds of 60/61 rows, and batch_size 16 leaves last mini-batches of 12 and 13 rows (padding)
    X, y = data(91, dtype=dtype)
    folds = [train for train, _ in StratifiedKFold(3).split(X, y)]
    est = MLPClassifier(max_iter=25, batch_size=16, random_state=11)
    candidates = [{"hidden_layer_sizes": h, "activation": a}
                  for h in [(7,), (6, 4)] for a in ["relu", "logistic", "tanh", "identity"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = mlpbatch.fit_many(est, candidates, X, y, folds)
        for i, c in enumerate(candidates):
            for j, rows in enumerate(folds):
                ref = clone(est).set_params(**c).fit(X[rows], y[rows])
                assert_same_fit(ours[i][j], ref, X, atol)


def test_logistic_units_are_expit_in_double_and_within_four_ulps_in_single() -> None:
    from scipy.special import expit

    x = np.concatenate([np.linspace(-120, 120, 20001), [-np.inf, np.inf, 0.0, -0.0, 88.7, -88.8, -103.9]])
    double = x.copy()
    mlpbatch._logistic(double)
    np.testing.assert_array_equal(double, expit(x))  # float64: scikit-learn's own numbers, bit for bit
    single = x.astype(np.float32)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")  # exp(120) overflows, exp(-120) underflows: reported as expit reports them,
        mlpbatch._logistic(single)      # not at all
    ref = expit(x.astype(np.float32))
    assert single.dtype == np.float32
    assert np.isfinite(single).all() and ((single >= 0) & (single <= 1)).all()
    ulps = np.abs(single.view(np.int32).astype(np.int64) - ref.view(np.int32).astype(np.int64))
    assert ulps.max() <= 4  # NumPy's vectorised exp (AVX2, AVX-512) rounds some values differently, never by more
    assert single[x == -np.inf] == 0.0 and single[x == np.inf] == 1.0 and set(single[x == 0.0].tolist()) == {0.5}


@pytest.mark.parametrize("classes", [2, 4])
def test_a_stacks_first_losses_are_scikit_learns_to_the_last_bit(classes: int) -> None:
    # the first epoch's loss (one mini-batch of the initial weights: log loss, then the L2 term of every layer
    # added in order) is scikit-learn's exactly in double precision, for every network of the stack
    X, y = data(60, d=5, classes=classes, seed=classes)
    rows = [np.arange(0, 40), np.arange(20, 60), np.r_[0:20, 40:60]]
    est = MLPClassifier(max_iter=1, random_state=5, alpha=2.5, batch_size=40)
    candidates = [{"hidden_layer_sizes": (30, 20, 10), "activation": a} for a in ("relu", "logistic")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        models = mlpbatch.fit_many(est, candidates, X, y, rows)
        for row, params in zip(models, candidates):
            for ours, r in zip(row, rows):
                assert ours.loss_curve_[0] == clone(est).set_params(**params).fit(X[r], y[r]).loss_curve_[0]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n_classes", [2, 3, 6, 7, 8, 11])
def test_a_stacks_softmax_and_log_losses_are_scikit_learns_to_the_last_bit(dtype: str, n_classes: int) -> None:
    from sklearn.neural_network._base import inplace_softmax, log_loss

    rng = np.random.RandomState(n_classes)
    logits = (rng.randn(4, 37, n_classes) * 6).astype(dtype)
    logits[1, 3] = 0.0  # a row of equal logits
    ours = logits.copy()
    mlpbatch._softmax(ours)
    for k in range(4):  # scikit-learn's softmax, one network's batch at a time
        ref = logits[k].copy()
        inplace_softmax(ref)
        np.testing.assert_array_equal(ours[k], ref)
    labels = rng.randint(n_classes, size=(4, 37))
    labels[2] = 0  # a network whose batch holds one class only
    targets = np.eye(n_classes, dtype=bool)[labels]
    counts = np.array([37, 30, 1, 36])  # networks 1 to 3 end in padding rows
    mask = np.arange(37)[None, :] < counts[:, None]
    targets &= mask[..., None]
    losses = mlpbatch._log_losses(targets, labels, ours, counts, mask)
    for k, c in enumerate(counts):
        assert losses[k] == log_loss(targets[k, :c], ours[k, :c])  # the same sums, in the same order


def _fits_with(fused: bool, monkeypatch: pytest.MonkeyPatch, *args):
    from echolab.analysis.compare import mlpfused

    monkeypatch.delenv("ECHOLAB_MLP_FUSED", raising=False)
    monkeypatch.setattr(mlpfused, "_kernels", None if fused else False)  # None: built (or loaded) anew
    assert mlpfused.available() is fused
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return mlpbatch.fit_many(*args)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("classes", [2, 4, 7, 9])  # a logistic output; softmax fused (2-7 classes) or NumPy's
def test_the_fused_passes_give_the_numpy_passes_fits_to_the_last_bit(dtype: str, classes: int,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("numba")  # the fast extra; installed for the test suite
    # unequal folds with padded last mini-batches, every activation, one and two hidden layers, and a tolerance
    # that stops the networks of a stack at different epochs (the steps of some of a stack's networks)
    X, y = data(91, classes=classes, dtype=dtype)
    X[5, 2] = 40.0  # an outlier: saturated logistic units, relu units at zero
    folds = [train for train, _ in StratifiedKFold(3).split(X, y)]
    est = MLPClassifier(max_iter=60, batch_size=16, tol=2e-3, n_iter_no_change=3, random_state=3)
    candidates = [{"hidden_layer_sizes": h, "activation": a}  # one-unit layers: NumPy sums one column pairwise
                  for h in [(9,), (7, 5), (1,), (3, 1)] for a in ["identity", "logistic", "tanh", "relu"]]
    numpy = _fits_with(False, monkeypatch, est, candidates, X, y, folds)
    fused = _fits_with(True, monkeypatch, est, candidates, X, y, folds)
    epochs = set()
    for row_n, row_f in zip(numpy, fused):
        for a, b in zip(row_n, row_f):
            epochs.add(a.n_iter_)
            assert a.n_iter_ == b.n_iter_ and a.loss_curve_ == b.loss_curve_
            for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
                assert u.dtype == v.dtype == np.dtype(dtype)
                assert u.tobytes() == v.tobytes()  # every bit: the signs of zeros and NaNs' payloads too
    assert len(epochs) > 3  # the stacks did lose networks along the way


@pytest.fixture
def kernels(monkeypatch: pytest.MonkeyPatch):
    """The compiled kernels, built in this process whatever ECHOLAB_MLP_FUSED says."""
    pytest.importorskip("numba")  # the fast extra; installed for the test suite
    from echolab.analysis.compare import mlpfused

    monkeypatch.delenv("ECHOLAB_MLP_FUSED", raising=False)
    monkeypatch.setattr(mlpfused, "_kernels", None)
    built = mlpfused.kernels()
    assert built is not None
    return built


def test_the_fused_activations_are_numpys_to_the_last_bit(kernels) -> None:
    rng = np.random.RandomState(7)
    for dtype in (np.float32, np.float64):
        Z = (rng.randn(4, 50, 9) * 30).astype(dtype)
        b = rng.randn(4, 1, 9).astype(dtype)
        Z[0, :3, 0], b[0, 0, 0] = [0.0, -0.0, np.nan], -0.0  # zeros of both signs, and a NaN
        Z[1, 4, 1] = np.inf
        ours = Z.copy()
        kernels.relu(ours, np.ascontiguousarray(b[:, 0]), 0, 4, dtype(0))
        with np.errstate(invalid="ignore"):
            assert ours.tobytes() == np.maximum(Z + b, 0).tobytes()
    Z32, b32 = Z.astype(np.float32), b.astype(np.float32)
    ref = Z32.copy()
    mlpbatch._activate(ref, b32, [("logistic", 0, 4)])
    ours = Z32.copy()
    kernels.logistic_inputs(ours, np.ascontiguousarray(b32[:, 0]), 0, 4)
    with np.errstate(over="ignore", under="ignore"):
        np.exp(ours, out=ours)
    kernels.logistic_outputs(ours, 0, 4, np.float32(1))
    assert ours.tobytes() == ref.tobytes()


def test_the_fused_column_sums_and_derivatives_are_numpys_to_the_last_bit(kernels) -> None:
    rng = np.random.RandomState(4)
    for dtype in (np.float32, np.float64):
        # magnitudes over ten orders, so that any other order of the additions would round differently
        delta = (rng.randn(4, 203, 33) * 10.0 ** rng.randint(-5, 5, (4, 203, 33))).astype(dtype)
        A = rng.rand(4, 203, 33).astype(dtype)
        A[3, ::3] = 0.0  # relu units at zero
        delta[1, 7, 4], delta[3, 9, 5] = np.inf, np.nan  # non-finite deltas stay so, as in NumPy
        codes = np.array([mlpbatch.ACTIVATIONS.index(a) for a in ("identity", "logistic", "tanh", "relu")])
        ref = delta.copy()
        with np.errstate(invalid="ignore"):
            mlpbatch._derivative(A, ref, mlpbatch._segments(["identity", "logistic", "tanh", "relu"]))
            sums = np.full((4, 1, 50), -1.0, dtype=dtype)[:, 0, 5:38]  # a strided view, as the gradients' is
            ours = delta.copy()
            kernels.hidden_backward(ours, A, codes, sums, dtype(1), dtype(0))
            np.testing.assert_array_equal(ours, ref)
            np.testing.assert_array_equal(sums, ref.sum(axis=1))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n_classes", [2, 3, 6, 7])
def test_the_fused_softmax_losses_and_deltas_are_numpys_to_the_last_bit(dtype: str, n_classes: int, kernels) -> None:
    rng = np.random.RandomState(n_classes)
    Z = (rng.randn(4, 37, n_classes) * 6).astype(dtype)
    Z[1, 3] = 0.0  # a row of equal logits
    Z[0, 5, 0] = 200.0  # a probability clipped to 1 - eps, and others to eps
    b = (rng.randn(4, 1, n_classes)).astype(dtype)
    labels = rng.randint(n_classes, size=(4, 37))
    labels[2] = 0  # a network whose batch holds one class only
    counts = np.array([37, 30, 1, 36])  # networks 1 to 3 end in padding rows
    # NumPy's passes, as _Step.backprop makes them
    ref = Z + b
    mlpbatch._softmax(ref)
    mask = np.arange(37)[None, :] < counts[:, None]
    targets = np.eye(n_classes, dtype=bool)[labels] & mask[..., None]
    ref_losses = mlpbatch._log_losses(targets, labels, ref, counts, mask)
    ref_delta = (ref - targets) * mask[..., None]
    # the fused passes
    ours = Z.copy()
    kernels.softmax_inputs(ours, np.ascontiguousarray(b[:, 0]))
    np.exp(ours, out=ours)
    sums = np.zeros((4, n_classes))
    columns = np.full((4, 1, n_classes + 3), -1.0, dtype=dtype)[:, 0, 1:n_classes + 1]  # strided, as the gradients
    kernels.softmax_outputs(ours, labels, counts, ours.dtype.type(np.finfo(ours.dtype).eps), ours.dtype.type(1),
                            ours.dtype.type(0), sums, columns)
    np.testing.assert_array_equal(-(sums / counts[:, None]).sum(axis=1), ref_losses)
    np.testing.assert_array_equal(ours, ref_delta)
    np.testing.assert_array_equal(columns, ref_delta.sum(axis=1))


def test_the_fused_passes_are_off_with_the_environment_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    from echolab.analysis.compare import mlpfused

    monkeypatch.setattr(mlpfused, "_kernels", None)
    monkeypatch.setenv("ECHOLAB_MLP_FUSED", "0")
    assert not mlpfused.available() and mlpfused.kernels() is None


@pytest.fixture
def uncompilable(monkeypatch: pytest.MonkeyPatch):
    """A numba that cannot compile here: the kernels are not built yet, and building them fails."""
    from echolab.analysis.compare import mlpfused

    return break_build(monkeypatch, mlpfused, "ECHOLAB_MLP_FUSED")


def test_kernels_numba_cannot_compile_leave_the_numpy_passes_with_a_warning(uncompilable) -> None:
    assert_given_up_once(uncompilable, "NumPy passes")  # said once; the trainer goes on with its NumPy passes
    X, y = data(30, classes=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = mlpbatch.fit_many(MLPClassifier(max_iter=3, random_state=0), [{}], X, y, [np.arange(30)])[0][0]
    assert model.n_iter_ == 3


def test_a_trial_says_when_numba_cannot_compile_the_fused_passes(uncompilable) -> None:
    # a trial records the warnings of its grid search (to count ConvergenceWarnings): this one is not swallowed
    from dataclasses import replace

    from echolab.analysis.compare.grids import load_grids
    from echolab.analysis.compare.trials import Split, run_trial

    X, y = data(40, classes=2)
    spec = replace(load_grids()["mlp"], params={"max_iter": 3}, grid={"hidden_layer_sizes": [[4]]})
    split = Split(0, np.arange(30), np.arange(30, 40))
    with pytest.warns(RuntimeWarning, match="NumPy passes"):
        outcome = run_trial(X, y, split, spec, ["c0", "c1"], seed=1)
    assert outcome.convergence_warnings == 4  # 3 folds and the refit, counted as ever


def test_stopping_rule_and_convergence_warnings_are_scikit_learns() -> None:
    X, y = data(60, classes=2)  # two classes: a logistic output unit, binary log loss
    est = MLPClassifier(hidden_layer_sizes=(5,), max_iter=40, tol=1e-3, n_iter_no_change=3, random_state=2)
    candidates = [{"learning_rate_init": r} for r in (0.001, 0.05)]  # the first stops on tol, the second at max_iter
    with warnings.catch_warnings(record=True) as ours_caught:
        warnings.simplefilter("always", ConvergenceWarning)
        ours = mlpbatch.fit_many(est, candidates, X, y, [np.arange(len(y))])
    with warnings.catch_warnings(record=True) as ref_caught:
        warnings.simplefilter("always", ConvergenceWarning)
        refs = [clone(est).set_params(**c).fit(X, y) for c in candidates]
    assert refs[0].n_iter_ < 40 and refs[1].n_iter_ == 40  # the data does what the test needs
    for (o,), r in zip(ours, refs):
        assert_same_fit(o, r, X, 1e-10)
    count = lambda caught: sum(issubclass(w.category, ConvergenceWarning) for w in caught)  # noqa: E731
    assert count(ours_caught) == count(ref_caught) == 1


def test_grid_search_chooses_what_gridsearchcv_chooses() -> None:
    X, y = data(120, d=6, classes=3)
    grid = {"hidden_layer_sizes": [(8,), (12,), (6, 6)], "activation": ["logistic", "relu"]}
    est = MLPClassifier(max_iter=30, random_state=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = GridSearchCV(est, grid, cv=StratifiedKFold(3), scoring="accuracy").fit(X, y)
        ours = grid_search(est, grid, X, y, list(StratifiedKFold(3).split(X, y)))
    assert ours.best_params == ref.best_params_
    np.testing.assert_allclose(ours.mean_scores, ref.cv_results_["mean_test_score"], rtol=0, atol=1e-12)
    assert_same_fit(ours.best_estimator, ref.best_estimator_, X, 1e-10)


def test_what_the_trainer_does_not_reproduce_goes_to_scikit_learn() -> None:
    assert mlpbatch.applies(MLPClassifier(random_state=0), {"activation": ["relu"]})
    assert not mlpbatch.applies(MLPClassifier(), None)  # no integer seed: nothing to reproduce
    assert not mlpbatch.applies(MLPClassifier(random_state=0, solver="sgd"))
    assert not mlpbatch.applies(MLPClassifier(random_state=0), {"early_stopping": [False, True]})
    X, y = data(40, classes=2)
    with pytest.raises(mlpbatch.NotLockstep):  # a fold without every class cannot share the stack's outputs
        mlpbatch.fit_many(MLPClassifier(random_state=0, max_iter=2), [{}], X, y, [np.arange(0, 40, 2), np.arange(40)])


JAX_CHECK = """
import sys, warnings
sys.path.insert(0, sys.argv[1])
import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier
from test_analysis_mlpbatch import data
from echolab.analysis.compare import mlpjax

assert mlpjax.available()  # the deep extra is part of the test install
X, y = data(91, dtype="float32")
folds = [train for train, _ in StratifiedKFold(3).split(X, y)]
est = MLPClassifier(max_iter=15, batch_size=16, random_state=11)
candidates = [{"hidden_layer_sizes": (7,), "activation": a} for a in ("relu", "logistic", "tanh")]
warnings.simplefilter("ignore", ConvergenceWarning)
ours = mlpjax.fit_many(est, candidates, X, y, folds)
for i, c in enumerate(candidates):
    for j, rows in enumerate(folds):
        ref = clone(est).set_params(**c).fit(X[rows], y[rows])
        assert ours[i][j].n_iter_ == ref.n_iter_ == 15
        for a, b in zip(ours[i][j].coefs_, ref.coefs_):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-3)  # XLA rounds differently; see mlpjax
        assert (ours[i][j].predict(X) == ref.predict(X)).mean() >= 0.95
# engine = "jax" in a grids file: the grid search and the trial train with it, within rounding of NumPy's
from echolab.analysis.compare.grids import load_grids
from echolab.analysis.compare.search import grid_search
from echolab.analysis.compare.trials import Split, run_trial
grid = {"hidden_layer_sizes": [(7,)], "activation": ["relu", "logistic"]}
cv = list(StratifiedKFold(3).split(X, y))
jx = grid_search(est, grid, X, y, cv, engine="jax")
np_ = grid_search(est, grid, X, y, cv, engine="numpy")
np.testing.assert_allclose(jx.mean_scores, np_.mean_scores, rtol=0, atol=0.05)
assert (jx.best_estimator.predict(X) == np_.best_estimator.predict(X)).mean() >= 0.9
spec = load_grids()["mlp_jax"]
assert spec.engine == "jax" and spec.canonical()["engine"] == "jax"
split = Split(0, np.flatnonzero(np.arange(91) % 4 != 0), np.flatnonzero(np.arange(91) % 4 == 0))
small = type(spec)(**{**spec.__dict__, "params": {"max_iter": 15}, "grid": {"hidden_layer_sizes": [[7]]}})
out = run_trial(X, y, split, small, sorted(set(y)), seed=3)
assert out.best_params == {"hidden_layer_sizes": [7]} and 0.0 <= out.accuracy <= 1.0 and out.n_test == 23
print("agree")
"""


def test_a_grids_engine_must_be_known_and_train_an_mlp(tmp_path) -> None:
    from echolab.analysis.compare.grids import FLOAT32_MLP_NUMERICS, GridError, load_grids

    specs = load_grids()
    assert specs["mlp"].engine == "numpy" and "engine" not in specs["mlp"].canonical()  # the keys stay as they were
    numpy_mlp = specs["mlp"].canonical()
    assert numpy_mlp.pop("float32_numerics") == FLOAT32_MLP_NUMERICS  # the lockstep trainer's float32 revision
    assert specs["mlp_jax"].canonical() == {**numpy_mlp, "engine": "jax"}
    bad = tmp_path / "g.toml"
    bad.write_text('[models.x]\nestimator = "sklearn.svm.SVC"\nengine = "jax"\n')
    with pytest.raises(GridError, match="engine = 'jax' trains sklearn.neural_network.MLPClassifier only"):
        load_grids(bad)
    bad.write_text('[models.x]\nestimator = "sklearn.neural_network.MLPClassifier"\nengine = "torch"\n')
    with pytest.raises(GridError, match="engine must be one of numpy, jax, not 'torch'"):
        load_grids(bad)


def test_the_jax_engine_without_jax_names_the_extra(monkeypatch) -> None:
    import importlib.util

    from echolab.analysis.compare.grids import GridError, load_grids, select_models

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jax" else real(name, *a))
    with pytest.raises(GridError, match=r"model 'mlp_jax' trains with JAX .*pip install 'echolab-toolkit\[deep\]'"):
        select_models(load_grids(), ["mlp_jax"])


def test_the_jax_engine_agrees_with_scikit_learn_within_rounding() -> None:
    # in a process of its own: JAX starts threads, and other tests fork workers (fork after threads can deadlock)
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.run([sys.executable, "-P", "-c", JAX_CHECK, str(Path(__file__).parent)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "agree", proc.stderr[-2000:]


@pytest.mark.parametrize("activation", ["relu", "identity"])
def test_a_diverged_fit_is_refused_as_scikit_learn_refuses_it(activation: str) -> None:
    X, y = data(60, classes=3)
    est = MLPClassifier(hidden_layer_sizes=(5,), activation=activation, max_iter=5, random_state=0,
                        learning_rate_init=1e300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="non-finite parameter weights") as ref:
            clone(est).fit(X, y)
        with pytest.raises(ValueError, match="non-finite parameter weights") as ours:
            mlpbatch.fit_many(est, [{}], X, y, [np.arange(len(y))])
    assert str(ours.value) == str(ref.value)
