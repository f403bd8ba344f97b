"""Many small ``MLPClassifier`` fits trained in lockstep, as one batched NumPy computation.

The MLP grid of the study (hidden layers (100), (300) or (100, 100); logistic or
relu) is 6 candidates x 3 folds of small networks on a few hundred rows, each
trained for up to 200 epochs of 2-3 mini-batches. Fitted one by one, each step
is a handful of tiny matrix products wrapped in a great deal of Python. Here
the networks that share a shape (the same hidden layers: both activations and
every fold) are stacked along a leading axis and trained together: one batched
matrix product per layer and step for all of them.

Each network follows ``MLPClassifier.fit`` with the solver ``adam`` step for
step (scikit-learn 1.x, ``sklearn/neural_network/_multilayer_perceptron.py``):

* the same initialisation: Glorot-uniform bounds (factor 2 for logistic, else
  6), weights then intercepts per layer, drawn from the fit's own
  ``RandomState(random_state)``;
* the same epochs: the sample order reshuffled as ``sklearn.utils.shuffle``
  reshuffles it, from that stream, mini-batches of ``min(200, n)`` rows in ``gen_batches``
  order;
* the same loss (log loss plus ``alpha/2 * ||W||^2 / batch``), the same
  gradients and the same Adam update (``learning_rate_init``, ``beta_1``,
  ``beta_2``, ``epsilon``, bias-corrected step size);
* the same stopping rule: the epoch's mean training loss must improve on the
  best by ``tol``; more than ``n_iter_no_change`` epochs without that ends the
  fit; ``max_iter`` epochs end it with a ``ConvergenceWarning``.

The result of each is a genuine, fitted ``MLPClassifier`` (its ``coefs_``,
``intercepts_``, ``loss_curve_``, ``n_iter_``...), so it predicts, pickles and
reports as one fitted by scikit-learn.

Where it may differ (docs/analysis.md, "The MLP, trained in lockstep"): only in
floating-point rounding. A stacked matrix product may group its sums
differently from scikit-learn's separate ones, and a network whose last
mini-batch is shorter than its neighbours' is padded with rows of weight zero.
Differences start at the last bit and can grow over 200 epochs of a
non-convex fit; where a fit ends on the tolerance test by a hair, it can
stop one epoch earlier or later. In single precision the logistic units use
NumPy's vectorised ``exp`` (:func:`_logistic`), within 4 units in the last place
of scipy's ``expit``. ``tests/test_analysis_mlpbatch.py`` compares
weights, predictions and chosen candidates with scikit-learn's own fits.

:func:`applies` says when this engine reproduces the estimator's ``fit``
(adam, no early stopping, no warm start, ...); anything else is fitted by
scikit-learn.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.special import expit, xlogy
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import LabelBinarizer

from echolab.errors import EcholabError

#: Hidden activations the lockstep trainer implements (all of scikit-learn's).
ACTIVATIONS = ("identity", "logistic", "tanh", "relu")


def applies(estimator: Any, grid: Mapping[str, Sequence[Any]] | None = None) -> bool:
    """Whether :func:`fit_many` reproduces ``estimator.fit`` for every candidate of *grid*."""
    if type(estimator) is not MLPClassifier:
        return False
    for params in _candidates(grid):
        p = {**estimator.get_params(), **params}
        if not (p["solver"] == "adam" and not p["early_stopping"] and not p["warm_start"]
                and p["activation"] in ACTIVATIONS and p.get("loss", "log_loss") == "log_loss"
                and isinstance(p["random_state"], (int, np.integer)) and not isinstance(p["random_state"], bool)
                and (p["batch_size"] == "auto" or isinstance(p["batch_size"], (int, np.integer)))
                and isinstance(p["max_iter"], (int, np.integer)) and p["max_iter"] > 0
                and not p["verbose"]):
            return False
    return True


def _candidates(grid: Mapping[str, Sequence[Any]] | None) -> list[dict[str, Any]]:
    if not grid:
        return [{}]
    from sklearn.model_selection import ParameterGrid

    return list(ParameterGrid(dict(grid)))


class NotLockstep(EcholabError, ValueError):
    """These fits cannot be trained together; fit them one by one with scikit-learn."""


@dataclass
class FitJob:
    """One network to train: its parameters and the rows of the shared matrix it trains on."""

    params: dict[str, Any]  # the estimator's full get_params(), candidate applied
    rows: np.ndarray  # indices into X / y
    model: MLPClassifier | None = None  # the fitted model, once trained
    warned: bool = False  # stopped at max_iter (scikit-learn warns ConvergenceWarning)


@dataclass
class _Stack:
    """Networks of one shape, trained together; row k of every array is network k.

    Each network's parameters are one row of ``params``: its layers' weights, then their intercepts, as
    scikit-learn lists them (``coefs_ + intercepts_``). Adam then updates every parameter of the stack in
    one pass per step instead of one per layer, and its moments ``ms``, ``vs`` have the same layout.
    """

    jobs: list[FitJob]
    units: list[int]  # layer widths, inputs to outputs
    params: np.ndarray  # (K, P)
    ms: np.ndarray = field(init=False)
    vs: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.ms = np.zeros_like(self.params)
        self.vs = np.zeros_like(self.params)

    def layers(self, flat: np.ndarray) -> list[np.ndarray]:
        """Views of *flat* (rows of this stack's layout): (K, fan_in, fan_out) weights, then (K, 1, fan_out)."""
        return _layer_views(flat, self.units)


def _layer_views(flat: np.ndarray, units: list[int]) -> list[np.ndarray]:
    shapes = [(a, b) for a, b in zip(units[:-1], units[1:])] + [(1, b) for b in units[1:]]
    views, at = [], 0
    for a, b in shapes:
        views.append(flat[:, at:at + a * b].reshape(len(flat), a, b))
        at += a * b
    return views


def _coefs_and_intercepts(flat: np.ndarray, units: list[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """:func:`_layer_views` of *flat*, split into the weights and the intercepts."""
    views = _layer_views(flat, units)
    return views[:len(units) - 1], views[len(units) - 1:]


def _parameter_count(units: list[int]) -> int:
    return sum(a * b + b for a, b in zip(units[:-1], units[1:]))


def fit_many(estimator: MLPClassifier, candidates: Sequence[Mapping[str, Any]], X: np.ndarray, y: np.ndarray,
             row_sets: Sequence[np.ndarray]) -> list[list[MLPClassifier]]:
    """Fit ``clone(estimator).set_params(**c).fit(X[r], y[r])`` for every candidate c and rows r, together.

    Returns ``models[i][j]``: candidate *i* fitted on ``row_sets[j]``. One
    ``ConvergenceWarning`` is issued per fit that stopped at ``max_iter``, as
    scikit-learn does.
    """
    base = estimator.get_params()
    jobs = [[FitJob({**base, **dict(c)}, np.asarray(r)) for r in row_sets] for c in candidates]
    flat = [job for row in jobs for job in row]
    shapes: dict[tuple[int, ...], list[FitJob]] = {}
    for job in flat:
        shapes.setdefault(tuple(_hidden(job.params)), []).append(job)
    X = np.ascontiguousarray(X)
    for group in shapes.values():
        for same in _settings_groups(group):
            _train(same, X, y)
    for job in flat:
        if job.warned:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({job.params['max_iter']}) reached and the "
                          "optimization hasn't converged yet.", ConvergenceWarning, stacklevel=2)
    return [[job.model for job in row] for row in jobs]  # type: ignore[misc]


def _hidden(params: Mapping[str, Any]) -> list[int]:
    sizes = params["hidden_layer_sizes"]
    return [int(s) for s in sizes] if hasattr(sizes, "__iter__") else [int(sizes)]


def _settings_groups(group: list[FitJob]) -> list[list[FitJob]]:
    """Split a shape's jobs by every optimiser setting that must be one number for the stack."""
    keys = ("alpha", "learning_rate_init", "beta_1", "beta_2", "epsilon", "tol", "n_iter_no_change", "max_iter",
            "batch_size", "shuffle")
    out: dict[tuple[Any, ...], list[FitJob]] = {}
    for job in group:
        out.setdefault(tuple(repr(job.params[k]) for k in keys), []).append(job)
    # activations contiguous: each is applied to one slice of the stack
    return [sorted(jobs, key=lambda j: ACTIVATIONS.index(j.params["activation"])) for jobs in out.values()]


def _train(jobs: list[FitJob], X: np.ndarray, y: np.ndarray) -> None:
    p = jobs[0].params
    dtype = X.dtype
    binarizer = LabelBinarizer().fit(y)  # classes of the whole matrix; each job's own are checked below
    hidden = _hidden(p)
    ys, states, idx = [], [], []
    for job in jobs:
        lb = LabelBinarizer().fit(y[job.rows])
        if not np.array_equal(lb.classes_, binarizer.classes_):
            raise NotLockstep("a fit in a lockstep group lacks a class of the matrix")
        # a boolean indicator matrix, as MLPClassifier._validate_input makes it (its log loss is then float64)
        ys.append(lb.transform(y[job.rows]).astype(bool))
        states.append(np.random.RandomState(int(job.params["random_state"])))
        idx.append(np.arange(len(job.rows), dtype=int))
    n_out = ys[0].shape[1]
    units = [X.shape[1], *hidden, n_out]
    out_act = "softmax" if binarizer.y_type_ == "multiclass" else "logistic"
    stack = _Stack(jobs, units, _init(jobs, states, units, dtype))
    K = len(jobs)
    grads = np.empty_like(stack.params)
    n = np.array([len(j.rows) for j in jobs])
    bs = np.minimum(200, n) if p["batch_size"] == "auto" else np.clip(int(p["batch_size"]), 1, n)
    alpha, lr0 = float(p["alpha"]), float(p["learning_rate_init"])
    b1, b2, eps, tol = float(p["beta_1"]), float(p["beta_2"]), float(p["epsilon"]), float(p["tol"])
    patience, max_iter = int(p["n_iter_no_change"]), int(p["max_iter"])
    acts = [j.params["activation"] for j in jobs]
    t = np.zeros(K, dtype=np.int64)
    best: list[Any] = [np.inf] * K  # scalars of the fit's dtype, compared as scikit-learn compares them
    stall = np.zeros(K, dtype=np.int64)
    curves: list[list[Any]] = [[] for _ in jobs]
    active = np.arange(K)  # the still-training networks; finished ones keep their slots and are not stepped
    n_iter = np.zeros(K, dtype=np.int64)
    for _ in range(max_iter):
        if p["shuffle"]:
            for k in active:
                idx[k] = _shuffled(idx[k], states[k])
        loss: list[Any] = [0.0] * K
        nb = -(-n // bs)
        for b in range(int(nb[active].max())):
            sub = active[b < nb[active]]  # the networks that have a b-th mini-batch
            picks = [idx[k][b * bs[k]:(b + 1) * bs[k]] for k in sub]
            gather, Yb, counts = _minibatch([jobs[k].rows for k in sub], picks, [ys[k] for k in sub])
            whole = len(sub) == K
            params = stack.params if whole else stack.params[sub]
            g = grads if whole else grads[:len(sub)]
            batch_loss = _backprop(X[gather], Yb, counts, stack.layers(params), [acts[k] for k in sub], out_act,
                                   alpha, stack.layers(g))
            for s, k in enumerate(sub):
                loss[k] = loss[k] + batch_loss[s] * int(counts[s])
            t[sub] += 1
            _adam(stack, sub, params, g, t[sub], lr0, b1, b2, eps)
        n_iter[active] += 1
        still = []
        for k in active:
            curve = loss[k] / int(n[k])
            curves[k].append(curve)
            stall[k] = stall[k] + 1 if curve > best[k] - tol else 0
            if curve < best[k]:
                best[k] = curve
            if stall[k] <= patience:  # else: scikit-learn's "did not improve more than tol" stop
                still.append(k)
                jobs[k].warned = bool(n_iter[k] == max_iter)
        active = np.array(still, dtype=int)
        if not len(active):
            break
    coefs, intercepts = _coefs_and_intercepts(stack.params, units)
    for k, job in enumerate(jobs):
        job.model = _fitted(job, [c[k] for c in coefs], [i[k, 0] for i in intercepts], binarizer,
                            units, out_act, curves[k], int(n_iter[k]), best[k], int(stall[k]), int(n[k]))


def _minibatch(rows: list[np.ndarray], picks: list[np.ndarray], ys: list[np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each network's mini-batch as rows of the shared matrix, padded to the longest; its targets; its length."""
    counts = np.array([len(r) for r in picks])
    width = int(counts.max())
    gather = np.zeros((len(picks), width), dtype=int)
    Yb = np.zeros((len(picks), width, ys[0].shape[1]), dtype=bool)
    for s, (own, r, Y) in enumerate(zip(rows, picks, ys)):
        gather[s, :len(r)] = own[r]
        Yb[s, :len(r)] = Y[r]
    return gather, Yb, counts


def _shuffled(idx: np.ndarray, state: np.random.RandomState) -> np.ndarray:
    """``sklearn.utils.shuffle(idx, random_state=state)``: the same draw, without its input checks."""
    order = np.arange(len(idx))
    state.shuffle(order)
    return idx[order]


def _init(jobs: list[FitJob], states: list[np.random.RandomState], units: list[int],
          dtype: np.dtype) -> np.ndarray:
    """``MLPClassifier._initialize``'s weights, network by network, from each fit's own stream (a stack's rows)."""
    params = np.empty((len(jobs), _parameter_count(units)), dtype=dtype)
    coefs, intercepts = _coefs_and_intercepts(params, units)
    for k, (job, rs) in enumerate(zip(jobs, states)):
        factor = 2.0 if job.params["activation"] == "logistic" else 6.0
        for i, (fan_in, fan_out) in enumerate(zip(units[:-1], units[1:])):
            bound = np.sqrt(factor / (fan_in + fan_out))
            coefs[i][k] = rs.uniform(-bound, bound, (fan_in, fan_out))
            intercepts[i][k, 0] = rs.uniform(-bound, bound, fan_out)
    return params


def _segments(acts: list[str]) -> list[tuple[str, int, int]]:
    """Contiguous runs of one activation in the (sorted) stack: (activation, start, stop)."""
    out: list[tuple[str, int, int]] = []
    for k, a in enumerate(acts):
        if out and out[-1][0] == a:
            out[-1] = (a, out[-1][1], k + 1)
        else:
            out.append((a, k, k + 1))
    return out


def _activate(Z: np.ndarray, segments: list[tuple[str, int, int]]) -> None:
    for act, lo, hi in segments:
        part = Z[lo:hi]
        if act == "logistic":
            _logistic(part)
        elif act == "tanh":
            np.tanh(part, out=part)
        elif act == "relu":
            np.maximum(part, 0, out=part)


def _logistic(a: np.ndarray) -> None:
    """The logistic function in place: scikit-learn's ``expit`` in double precision; in single, NumPy's ``exp``.

    scipy's float32 ``expit`` evaluates one value at a time; ``1 / (1 + exp(-a))`` with NumPy's ``exp``,
    vectorised on x86 with AVX2 or AVX-512, is four to six times faster there and rounds about 16% of values
    differently, by at most 4 units in the last place (elsewhere NumPy calls the C library's ``expf``, as
    scipy does, and the two agree). That is where a single-precision fit may differ from scikit-learn's
    float32 fit (docs/analysis.md); a double-precision fit stays scikit-learn's.
    """
    if a.dtype != np.float32:
        expit(a, out=a)
        return
    # exp(-a) = inf for a < -88.7 gives 1 / inf = 0, expit's value there; exp and the reciprocal underflow to
    # subnormals or zero at the other end. expit reports neither, whatever NumPy's error settings are.
    with np.errstate(over="ignore", under="ignore"):
        np.negative(a, out=a)
        np.exp(a, out=a)
        a += 1
        np.reciprocal(a, out=a)


def _derivative(A: np.ndarray, delta: np.ndarray, segments: list[tuple[str, int, int]]) -> None:
    for act, lo, hi in segments:
        a, d = A[lo:hi], delta[lo:hi]
        if act == "logistic":
            d *= a
            d *= 1 - a
        elif act == "tanh":
            d *= 1 - a**2
        elif act == "relu":  # scikit-learn's delta[Z == 0] = 0 (here -0.0 where delta < 0, and a non-finite
            # delta stays so; a fit that gets there ends with non-finite weights, refused as scikit-learn does)
            np.multiply(d, a > 0, out=d)


def _backprop(Xb: np.ndarray, Yb: np.ndarray, counts: np.ndarray, params: list[np.ndarray], acts: list[str],
              out_act: str, alpha: float, grads: list[np.ndarray]) -> list[Any]:
    """``MLPClassifier._backprop`` for a stack: each network's batch loss; its gradients written to *grads*.

    Network s uses the first ``counts[s]`` rows of its batch; the rest are padding, masked out.
    *grads* are views laid out as *params* (weights, then intercepts).
    """
    n_layers = len(params) // 2
    coefs, intercepts = params[:n_layers], params[n_layers:]
    segments = _segments(acts)
    activations = [Xb]
    for i in range(n_layers):
        Z = np.matmul(activations[-1], coefs[i])
        Z += intercepts[i]
        if i + 1 < n_layers:
            _activate(Z, segments)
        activations.append(Z)
    out = activations[-1]
    if out_act == "softmax":
        out -= out.max(axis=2, keepdims=True)
        np.exp(out, out=out)
        out /= out.sum(axis=2, keepdims=True)
    else:
        _logistic(out)
    mask = np.arange(Xb.shape[1])[None, :] < counts[:, None]
    log_losses = _log_losses(Yb, out, counts)
    loss = []
    for s, c in enumerate(counts):  # as scikit-learn: log loss, then the L2 term, in the fit's dtype
        values = 0
        for coef in coefs:
            flat = coef[s].ravel()
            values += np.dot(flat, flat)
        loss.append(log_losses[s] + (0.5 * alpha) * values / int(c))
    div = counts.astype(Xb.dtype)[:, None, None]
    delta = out - Yb
    if not mask.all():
        delta *= mask[..., None]
    for i in range(n_layers - 1, -1, -1):
        g = grads[i]
        np.matmul(activations[i].transpose(0, 2, 1), delta, out=g)
        g += alpha * coefs[i]
        g /= div
        np.divide(delta.sum(axis=1, keepdims=True), div, out=grads[n_layers + i])
        if i:
            delta = np.matmul(delta, coefs[i].transpose(0, 2, 1))
            _derivative(activations[i], delta, segments)
    return loss


def _log_losses(Yb: np.ndarray, out: np.ndarray, counts: np.ndarray) -> Any:
    """:func:`_log_loss` of every network's batch (padding rows past ``counts[s]`` add nothing)."""
    if out.shape[2] == 1:  # binary: a padding row's 1 - y would count; one network at a time
        return [_log_loss(Yb[s, :c], out[s, :c]) for s, c in enumerate(counts)]
    eps = np.finfo(out.dtype).eps
    # xlogy(False, p) is exactly 0, and each network's rows are summed in order, as np.average sums them
    sums = xlogy(Yb, np.clip(out, eps, 1 - eps)).sum(axis=1)
    return -(sums / counts[:, None].astype(sums.dtype)).sum(axis=1)


def _log_loss(Y: np.ndarray, P: np.ndarray) -> Any:
    """scikit-learn's ``log_loss`` (``binary_log_loss`` for one output) of one network's batch."""
    eps = np.finfo(P.dtype).eps
    P = np.clip(P, eps, 1 - eps)
    if P.shape[1] == 1:
        return -np.average(xlogy(Y, P) + xlogy(1 - Y, 1 - P), axis=0).sum()
    return -np.average(xlogy(Y, P), axis=0).sum()


def _adam(stack: _Stack, sub: np.ndarray, param: np.ndarray, g: np.ndarray, t: np.ndarray,
          lr0: float, b1: float, b2: float, eps: float) -> None:
    """``AdamOptimizer.update_params`` for the networks *sub* of the stack, each with its own step count.

    *param* and the gradients *g* are those networks' rows of the stack's parameters (``stack.params``
    itself when every network of the stack is stepped); *g* is overwritten.
    """
    lr = (lr0 * np.sqrt(1 - b2 ** t.astype(np.float64)) / (1 - b1 ** t.astype(np.float64)))[:, None]
    whole = len(sub) == stack.params.shape[0]
    # scikit-learn's b1 * m + (1 - b1) * g and b2 * v + (1 - b2) * g**2, each product rounded as there, in place
    m = stack.ms if whole else stack.ms[sub]
    m *= b1
    m += (1 - b1) * g
    v = stack.vs if whole else stack.vs[sub]
    v *= b2
    np.square(g, out=g)
    g *= 1 - b2
    v += g
    step = m * -lr  # float64, as scikit-learn's step size is
    denom = np.sqrt(v)
    denom += eps
    step /= denom
    param += step
    if not whole:
        stack.ms[sub], stack.vs[sub], stack.params[sub] = m, v, param


def _fitted(job: FitJob, coefs: list[np.ndarray], intercepts: list[np.ndarray], binarizer: LabelBinarizer,
            units: list[int], out_act: str, curve: list[Any], n_iter: int, best: Any, stall: int,
            n: int) -> MLPClassifier:
    """A fitted ``MLPClassifier`` holding what scikit-learn's own fit leaves on it.

    A fit whose weights are no longer finite is refused as ``MLPClassifier.fit`` refuses it.
    """
    if not all(np.isfinite(w).all() for w in [*coefs, *intercepts]):
        raise ValueError("Solver produced non-finite parameter weights. The input data may contain large values "
                         "and need to be preprocessed.")
    model = MLPClassifier(**job.params)
    model._label_binarizer = binarizer
    model.classes_ = binarizer.classes_
    model.n_features_in_ = units[0]
    model.n_outputs_ = units[-1]
    model.n_layers_ = len(units)
    model.out_activation_ = out_act
    model.coefs_ = [np.array(c) for c in coefs]
    model.intercepts_ = [np.array(i) for i in intercepts]
    model.loss_curve_ = [float(v) for v in curve]
    model.loss_ = float(curve[-1])
    model.best_loss_ = float(best)
    model.n_iter_ = n_iter
    model.t_ = n_iter * n
    model._no_improvement_count = stall
    model.validation_scores_ = None
    model.best_validation_score_ = None
    return model
