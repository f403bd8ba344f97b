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

Between the matrix products, a step's element-by-element passes (activations,
derivatives, column sums, the output layer's softmax and losses, Adam) are
compiled loops of :mod:`.mlpfused` where numba is installed (the ``fast``
extra), and NumPy's passes elsewhere: the same operations in the same order,
so the same fits to the last bit either way.
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

from echolab.analysis.compare import mlpfused
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
    # a boolean indicator matrix, as MLPClassifier._validate_input makes it (its log loss is then float64);
    # a job's rows of it are what its own binarizer makes of its labels, as its classes are the matrix's
    targets = binarizer.transform(y).astype(bool)
    classes = targets.argmax(axis=1)  # each row's class, the column of its target
    hidden = _hidden(p)
    states, idx = [], []
    for job in jobs:
        if not np.array_equal(LabelBinarizer().fit(y[job.rows]).classes_, binarizer.classes_):
            raise NotLockstep("a fit in a lockstep group lacks a class of the matrix")
        states.append(np.random.RandomState(int(job.params["random_state"])))
        idx.append(np.arange(len(job.rows), dtype=int))
    units = [X.shape[1], *hidden, targets.shape[1]]
    out_act = "softmax" if binarizer.y_type_ == "multiclass" else "logistic"
    stack = _Stack(jobs, units, _init(jobs, states, units, dtype))
    K = len(jobs)
    n = np.array([len(j.rows) for j in jobs])
    bs = np.minimum(200, n) if p["batch_size"] == "auto" else np.clip(int(p["batch_size"]), 1, n)
    alpha, lr0 = float(p["alpha"]), float(p["learning_rate_init"])
    b1, b2, eps, tol = float(p["beta_1"]), float(p["beta_2"]), float(p["epsilon"]), float(p["tol"])
    patience, max_iter = int(p["n_iter_no_change"]), int(p["max_iter"])
    acts = [j.params["activation"] for j in jobs]
    fused = mlpfused.kernels()
    whole = _Step(stack, np.arange(K), acts, alpha, fused)  # the step of the whole stack, its views and buffers kept
    t = np.zeros(K, dtype=np.int64)
    best: list[Any] = [np.inf] * K  # scalars of the fit's dtype, compared as scikit-learn compares them
    stall = np.zeros(K, dtype=np.int64)
    curves: list[list[Any]] = [[] for _ in jobs]
    active = np.arange(K)  # the still-training networks; finished ones keep their slots and are not stepped
    n_iter = np.zeros(K, dtype=np.int64)
    order = np.zeros((K, int(n.max())), dtype=np.intp)  # each network's rows of X in this epoch's order
    nb = -(-n // bs)
    for _ in range(max_iter):
        for k in active:
            if p["shuffle"]:
                idx[k] = _shuffled(idx[k], states[k])
            order[k, :n[k]] = jobs[k].rows[idx[k]]
        loss: list[Any] = [0.0] * K
        for b in range(int(nb[active].max())):
            sub = active[b < nb[active]]  # the networks that have a b-th mini-batch
            gather, counts = _minibatch(order, sub, b * bs[sub], np.minimum(n[sub] - b * bs[sub], bs[sub]))
            step = whole if len(sub) == K else _Step(stack, sub, acts, alpha, fused)
            batch_loss = step.backprop(X[gather], targets, gather, classes[gather], counts, out_act)
            for s, k in enumerate(sub):
                loss[k] = loss[k] + batch_loss[s] * int(counts[s])
            t[sub] += 1
            step.adam(t[sub], lr0, b1, b2, eps)
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


def _minibatch(order: np.ndarray, sub: np.ndarray, starts: np.ndarray, counts: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """The networks *sub*'s mini-batches as rows of the shared matrix, padded to the longest; their lengths.

    Network ``sub[s]`` takes ``counts[s]`` rows of its epoch order from ``starts[s]``. Where every network
    starts at the same place (the same batch size: always, but where a fold has fewer than 200 rows), the
    batch is one slice of the epoch's orders; a padding row is a row past a network's own, masked out.
    """
    width = int(counts.max())
    if (starts == starts[0]).all():
        columns = slice(int(starts[0]), int(starts[0]) + width)
        if len(sub) == len(order):
            return order[:, columns], counts
        return order[sub, columns], counts
    gather = np.zeros((len(sub), width), dtype=np.intp)
    for s, (k, at, c) in enumerate(zip(sub, starts, counts)):
        gather[s, :c] = order[k, at:at + c]
    return gather, counts


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


def _activate(Z: np.ndarray, intercepts: np.ndarray, segments: list[tuple[str, int, int]]) -> None:
    """A hidden layer's activation of ``Z + intercepts``, in place (*Z* holds the products)."""
    for act, lo, hi in segments:
        part = Z[lo:hi]
        if act == "logistic" and part.dtype == np.float32:
            # (-b) - Z is -(Z + b) to the last bit: the sum and the negation of _logistic's first step in one pass
            _logistic(np.subtract(-intercepts[lo:hi], part, out=part), negated=True)
            continue
        part += intercepts[lo:hi]
        if act == "logistic":
            _logistic(part)
        elif act == "tanh":
            np.tanh(part, out=part)
        elif act == "relu":
            np.maximum(part, 0, out=part)


def _logistic(a: np.ndarray, negated: bool = False) -> None:
    """The logistic function in place: scikit-learn's ``expit`` in double precision; in single, NumPy's ``exp``.

    scipy's float32 ``expit`` evaluates one value at a time; ``1 / (1 + exp(-a))`` with NumPy's ``exp``,
    vectorised on x86 with AVX2 or AVX-512, is four to six times faster there and rounds about 16% of values
    differently, by at most 4 units in the last place (elsewhere NumPy calls the C library's ``expf``, as
    scipy does, and the two agree). That is where a single-precision fit may differ from scikit-learn's
    float32 fit (docs/analysis.md); a double-precision fit stays scikit-learn's. *negated*: *a* holds the
    negated values already (float32 only).
    """
    if a.dtype != np.float32:
        expit(a, out=a)
        return
    # exp(-a) = inf for a < -88.7 gives 1 / inf = 0, expit's value there; exp and the reciprocal underflow to
    # subnormals or zero at the other end. expit reports neither, whatever NumPy's error settings are.
    with np.errstate(over="ignore", under="ignore"):
        if not negated:
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


class _Step:
    """``MLPClassifier._backprop`` and ``AdamOptimizer.update_params`` for the networks *sub* of a stack.

    The step of the whole stack is made once per fit and keeps its views of the stack's parameters and
    its buffers; a step of some of its networks (the others have stopped, or have no mini-batch left this
    epoch) works on a copy of their rows and writes them back.
    """

    def __init__(self, stack: _Stack, sub: np.ndarray, acts: list[str], alpha: float, fused: Any = None):
        self.stack, self.sub, self.alpha = stack, sub, alpha
        self.whole = len(sub) == len(stack.params)
        self.params = stack.params if self.whole else stack.params[sub]
        self.grads = np.empty_like(self.params)
        n_layers = len(stack.units) - 1
        views = stack.layers(self.params)
        self.coefs, self.intercepts = views[:n_layers], views[n_layers:]
        self.grad_views = stack.layers(self.grads)
        # each network's weights, layer by layer, as the flat vectors its L2 term is the dot product of
        self.flat = [[c[s].ravel() for c in self.coefs] for s in range(len(sub))]
        self.segments = _segments([acts[k] for k in sub])
        # the fused passes (mlpfused, numba) where they are built; else NumPy's, the same numbers
        self.fused = fused
        if fused is not None:
            dtype = self.params.dtype.type
            self.codes = np.array([ACTIVATIONS.index(acts[k]) for k in sub], dtype=np.int64)
            self.one, self.zero, self.eps = dtype(1), dtype(0), dtype(np.finfo(dtype).eps)
            self.n_weights = sum(a * b for a, b in zip(stack.units[:-1], stack.units[1:]))
            self.div = np.empty(len(sub), dtype=self.params.dtype)  # each network's rows in the batch
        else:
            self.buffer = np.empty_like(self.params)
            # scikit-learn's step size is float64, and so is the step it scales (-lr * m) in any precision
            self.step = self.grads if self.params.dtype == np.float64 else np.empty(self.params.shape)
            self.decay = [np.empty_like(c) for c in self.coefs]  # alpha * W, per layer

    def backprop(self, Xb: np.ndarray, targets: np.ndarray, gather: Any, labels: np.ndarray, counts: np.ndarray,
                 out_act: str) -> list[Any]:
        """Each network's batch loss; its gradients written to ``self.grads`` (laid out as its parameters).

        With the fused passes, ``self.grads`` holds the raw sums instead (the products and the deltas' column
        sums, before the weights' decay and the division by the batch's rows, which :meth:`adam` applies, with
        the rows this step writes to ``self.div``). *Xb* holds the networks' mini-batches (rows *gather* of
        the matrix), *labels* their rows' classes and *targets* the matrix's boolean target rows. Network s
        uses the first ``counts[s]`` rows of its batch; the rest are padding, masked out.
        """
        coefs, n_layers, fused = self.coefs, len(self.coefs), self.fused
        # the output layer's softmax, losses and deltas in two compiled passes around NumPy's exp
        fused_out = fused is not None and out_act == "softmax" and self.stack.units[-1] < _COLUMN_CHAIN
        activations = [Xb]
        for i in range(n_layers):
            Z = np.matmul(activations[-1], coefs[i])
            if i + 1 < n_layers:
                if fused is not None:
                    self._activate_fused(Z, self.intercepts[i])
                else:
                    _activate(Z, self.intercepts[i], self.segments)
            elif fused_out:
                fused.softmax_inputs(Z, np.ascontiguousarray(self.intercepts[i][:, 0]))
            else:
                Z += self.intercepts[i]
            activations.append(Z)
        out = activations[-1]
        if fused_out:
            np.exp(out, out=out)
            sums = np.zeros((len(out), out.shape[2]))
            fused.softmax_outputs(out, labels, counts, self.eps, self.one, self.zero, sums, self.grad_views[-1][:, 0])
            log_losses = -(sums / counts[:, None].astype(sums.dtype)).sum(axis=1)  # as _log_losses ends
        else:
            if out_act == "softmax":
                _softmax(out)
            else:
                _logistic(out)
            mask = None
            Yb = targets[gather]
            if counts.min() < Xb.shape[1]:
                mask = np.arange(Xb.shape[1])[None, :] < counts[:, None]
                Yb &= mask[..., None]
            log_losses = _log_losses(Yb, labels, out, counts, mask)
        loss = []
        for s, c in enumerate(counts):  # as scikit-learn: log loss, then the L2 term, in the fit's dtype
            values = 0
            for flat in self.flat[s]:
                values += np.dot(flat, flat)
            loss.append(log_losses[s] + (0.5 * self.alpha) * values / int(c))
        div = counts.astype(Xb.dtype)[:, None, None]
        if fused_out:  # out holds the deltas, and their column sums are written
            delta = out
        else:
            delta = np.subtract(out, Yb, out=out)
            if mask is not None:
                delta *= mask[..., None]
        if fused is not None:  # the decay and the division by the rows are left to adam()
            self.div[:] = div[:, 0, 0]
            if not fused_out:
                np.sum(delta, axis=1, keepdims=True, out=self.grad_views[-1])
        for i in range(n_layers - 1, -1, -1):
            g = self.grad_views[i]
            np.matmul(activations[i].transpose(0, 2, 1), delta, out=g)
            if fused is None:
                g += np.multiply(coefs[i], self.alpha, out=self.decay[i])
                g /= div
                np.divide(delta.sum(axis=1, keepdims=True), div, out=self.grad_views[n_layers + i])
            if i:
                delta = np.matmul(delta, coefs[i].transpose(0, 2, 1))
                if fused is None:
                    _derivative(activations[i], delta, self.segments)
                else:  # the derivative, and the column sums of the layer below's intercepts' gradient
                    sums = self.grad_views[n_layers + i - 1][:, 0]
                    fused.hidden_backward(delta, activations[i], self.codes, sums, self.one, self.zero)
                    if delta.shape[2] == 1:  # one column: NumPy sums it pairwise, as a contiguous axis
                        np.sum(delta, axis=1, out=sums)
        return loss

    def _activate_fused(self, Z: np.ndarray, intercepts: np.ndarray) -> None:
        """:func:`_activate` with the passes around NumPy's ``exp`` compiled (mlpfused)."""
        fused = self.fused
        rows = np.ascontiguousarray(intercepts[:, 0])  # (networks, units), so that the loops vectorise
        for act, lo, hi in self.segments:
            if act == "logistic" and Z.dtype == np.float32:
                fused.logistic_inputs(Z, rows, lo, hi)
                part = Z[lo:hi]
                with np.errstate(over="ignore", under="ignore"):
                    np.exp(part, out=part)
                fused.logistic_outputs(Z, lo, hi, self.one)
            elif act == "relu":
                fused.relu(Z, rows, lo, hi, self.zero)
            else:  # identity, tanh, a float64 logistic (scipy's expit): NumPy's passes
                _activate(Z, intercepts, [(act, lo, hi)])

    def adam(self, t: np.ndarray, lr0: float, b1: float, b2: float, eps: float) -> None:
        """Adam's update of these networks from ``self.grads`` (overwritten), each at its own step count *t*."""
        lr = (lr0 * np.sqrt(1 - b2 ** t.astype(np.float64)) / (1 - b1 ** t.astype(np.float64)))[:, None]
        stack, sub, g = self.stack, self.sub, self.grads
        m = stack.ms if self.whole else stack.ms[sub]
        v = stack.vs if self.whole else stack.vs[sub]
        if self.fused is not None:  # each value's decay, division, moments and step in one pass
            dtype = self.params.dtype.type  # the scalars as NumPy casts them into the arrays' dtype
            self.fused.adam(self.params, g, m, v, self.n_weights, self.div, -lr[:, 0], dtype(self.alpha), dtype(b1),
                            dtype(b2), dtype(eps), dtype(1 - b1), dtype(1 - b2))
        else:  # scikit-learn's b1 * m + (1 - b1) * g and b2 * v + (1 - b2) * g**2, each product rounded as there
            buffer = self.buffer
            m *= b1
            m += np.multiply(g, 1 - b1, out=buffer)
            v *= b2
            np.square(g, out=g)
            g *= 1 - b2
            v += g
            step = np.multiply(m, -lr, out=self.step)  # float64, as scikit-learn's step size is
            denom = np.sqrt(v, out=buffer)
            denom += eps
            step /= denom
            self.params += step
        if not self.whole:
            stack.ms[sub], stack.vs[sub], stack.params[sub] = m, v, self.params


#: NumPy adds fewer than this many numbers along a contiguous axis from left to right (more, pairwise).
_COLUMN_CHAIN = 8


def _softmax(out: np.ndarray) -> None:
    """scikit-learn's softmax of each row (the last axis), in place.

    Across a handful of classes, the row maxima and sums are taken a column at a time: NumPy's reduction
    along a short last axis costs far more per row than the arithmetic. The maxima are exact either way;
    NumPy sums fewer than 8 numbers from left to right, and so do the columns here, so the sums are the same.
    """
    n_classes = out.shape[-1]
    if not 2 <= n_classes < _COLUMN_CHAIN:
        out -= out.max(axis=-1, keepdims=True)
        np.exp(out, out=out)
        out /= out.sum(axis=-1, keepdims=True)
        return
    top = np.maximum(out[..., 0], out[..., 1])
    for c in range(2, n_classes):
        np.maximum(top, out[..., c], out=top)
    out -= top[..., None]
    np.exp(out, out=out)
    total = out[..., 0] + out[..., 1]
    for c in range(2, n_classes):
        total += out[..., c]
    out /= total[..., None]


def _log_losses(Yb: np.ndarray, labels: np.ndarray, out: np.ndarray, counts: np.ndarray,
                mask: np.ndarray | None) -> Any:
    """:func:`_log_loss` of every network's batch (padding rows past ``counts[s]``, false in *mask*, add nothing).

    *labels* are the rows' classes (column numbers of *Yb*). scikit-learn sums ``xlogy(Y, P)`` over the
    rows, column by column, in double precision (scipy's ``xlogy`` takes float32 as float64), then divides
    by the rows and adds the columns. A row adds nothing but in its own class's column (``xlogy(0, p)`` is
    exactly 0), so only that is computed; ``np.bincount`` adds each network's rows of each class in row
    order, in double precision: the same sums, without the other columns' zeros.
    """
    if out.shape[2] == 1:  # binary: a padding row's 1 - y would count; one network at a time
        return [_log_loss(Yb[s, :c], out[s, :c]) for s, c in enumerate(counts)]
    eps = np.finfo(out.dtype).eps
    n_nets, _, n_classes = out.shape
    own = np.take_along_axis(out, labels[..., None], axis=2)[..., 0]
    logs = xlogy(1.0, np.clip(own, eps, 1 - eps).astype(np.float64))
    cells = labels + n_classes * np.arange(n_nets)[:, None]  # (network, class), numbered
    if mask is not None:
        cells = np.where(mask, cells, n_nets * n_classes)  # padding rows into a cell of their own, dropped
    sums = np.bincount(cells.ravel(), logs.ravel(), n_nets * n_classes + 1)[:-1].reshape(n_nets, n_classes)
    return -(sums / counts[:, None].astype(sums.dtype)).sum(axis=1)


def _log_loss(Y: np.ndarray, P: np.ndarray) -> Any:
    """scikit-learn's ``log_loss`` (``binary_log_loss`` for one output) of one network's batch."""
    eps = np.finfo(P.dtype).eps
    P = np.clip(P, eps, 1 - eps)
    if P.shape[1] == 1:
        return -np.average(xlogy(Y, P) + xlogy(1 - Y, 1 - P), axis=0).sum()
    return -np.average(xlogy(Y, P), axis=0).sum()


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
