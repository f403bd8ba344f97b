"""The lockstep MLP trainer compiled with JAX (the ``deep`` extra): whole fits as one XLA program.

The same networks, initial weights, epoch shuffles, mini-batches, Adam steps
and stopping rule as :mod:`echolab.analysis.compare.mlpbatch` (scikit-learn's
``MLPClassifier.fit``), but every epoch of every network of a stack runs inside
one compiled ``lax.scan``: no Python between mini-batches. Initial weights and
every epoch's sample order are drawn in NumPy from each fit's own
``RandomState``, exactly as scikit-learn draws them, before the compiled loop
starts.

Where it differs from scikit-learn: XLA's matrix products, exponentials and
sums round differently from NumPy's, so the weights differ from the first step
in the last bits, and the differences grow over the epochs of a non-convex
fit: predictions agree on most rows, not all, and a fit ending on the ``tol``
test can stop a few epochs apart. The comparison uses it only for a model
whose grids table says ``engine = "jax"`` (``mlp_jax`` in the shipped grids
file; :func:`echolab.analysis.compare.search.grid_search`'s *engine*);
``tests/test_analysis_mlpbatch.py`` measures the agreement,
``bench/bench_mlp_lockstep.py --jax`` the speed.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any, Mapping, Sequence

import numpy as np
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import LabelBinarizer

from echolab.analysis.compare import mlpbatch
from echolab.errors import require

_CODES = {a: i for i, a in enumerate(mlpbatch.ACTIVATIONS)}  # identity 0, logistic 1, tanh 2, relu 3


def available() -> bool:
    """Whether JAX is installed (``pip install 'echolab-toolkit[deep]'``)."""
    return importlib.util.find_spec("jax") is not None


def fit_many(estimator: MLPClassifier, candidates: Sequence[Mapping[str, Any]], X: np.ndarray, y: np.ndarray,
             row_sets: Sequence[np.ndarray]) -> list[list[MLPClassifier]]:
    """:func:`echolab.analysis.compare.mlpbatch.fit_many`, each stack compiled and run by JAX."""
    require("jax", "deep", "The JAX lockstep MLP trainer")
    base = estimator.get_params()
    jobs = [[mlpbatch.FitJob({**base, **dict(c)}, np.asarray(r)) for r in row_sets] for c in candidates]
    shapes: dict[tuple[int, ...], list[mlpbatch.FitJob]] = {}
    for job in (j for row in jobs for j in row):
        shapes.setdefault(tuple(mlpbatch._hidden(job.params)), []).append(job)
    for group in shapes.values():
        for same in mlpbatch._settings_groups(group):
            _train(same, np.ascontiguousarray(X), y)
    return [[job.model for job in row] for row in jobs]  # type: ignore[misc]


def _plan(jobs: list[mlpbatch.FitJob], y: np.ndarray, max_iter: int) -> tuple[Any, ...]:
    """Initial weights, and every epoch's mini-batches as (epoch, batch, network, row) indices, mask and targets."""
    binarizer = LabelBinarizer().fit(y)
    states = [np.random.RandomState(int(j.params["random_state"])) for j in jobs]
    n = np.array([len(j.rows) for j in jobs])
    p = jobs[0].params
    bs = np.minimum(200, n) if p["batch_size"] == "auto" else np.clip(int(p["batch_size"]), 1, n)
    nb = -(-n // bs)
    B, W = int(nb.max()), int(bs.max())
    gather = np.zeros((max_iter, B, len(jobs), W), dtype=np.int32)
    mask = np.zeros((max_iter, B, len(jobs), W), dtype=bool)
    return binarizer, states, n, bs, nb, gather, mask


def _train(jobs: list[mlpbatch.FitJob], X: np.ndarray, y: np.ndarray) -> None:
    import jax
    import jax.numpy as jnp

    p = jobs[0].params
    max_iter = int(p["max_iter"])
    binarizer, states, n, bs, nb, gather, mask = _plan(jobs, y, max_iter)
    hidden = mlpbatch._hidden(p)
    units = [X.shape[1], *hidden, len(binarizer.classes_) if binarizer.y_type_ == "multiclass" else 1]
    # draws first, as scikit-learn does
    coefs, intercepts = mlpbatch._coefs_and_intercepts(mlpbatch._init(jobs, states, units, X.dtype), units)
    Y = binarizer.transform(y).astype(X.dtype)
    for k, job in enumerate(jobs):
        order = np.arange(len(job.rows))
        for e in range(max_iter):
            if p["shuffle"]:
                order = mlpbatch._shuffled(order, states[k])
            for b in range(int(nb[k])):
                pick = order[b * bs[k]:(b + 1) * bs[k]]
                gather[e, b, k, :len(pick)] = job.rows[pick]
                mask[e, b, k, :len(pick)] = True
    codes = jnp.array([_CODES[j.params["activation"]] for j in jobs])
    run = _compiled(len(units) - 1, units[-1] == 1, float(p["alpha"]), float(p["learning_rate_init"]),
                    float(p["beta_1"]), float(p["beta_2"]), float(p["epsilon"]), float(p["tol"]),
                    int(p["n_iter_no_change"]))
    params = [jnp.asarray(c) for c in coefs] + [jnp.asarray(i) for i in intercepts]
    out = run(params, jnp.asarray(X), jnp.asarray(Y), jnp.asarray(gather), jnp.asarray(mask), codes,
              jnp.asarray(n, dtype=X.dtype))
    params, n_iter, curves, best, stall = jax.device_get(out)
    L = len(units) - 1
    for k, job in enumerate(jobs):
        it = int(n_iter[k])
        job.warned = it == max_iter and int(stall[k]) <= int(p["n_iter_no_change"])
        job.model = mlpbatch._fitted(job, [np.asarray(c[k]) for c in params[:L]],
                                     [np.asarray(i[k, 0]) for i in params[L:]], binarizer, units,
                                     "logistic" if units[-1] == 1 else "softmax", list(curves[:it, k]), it,
                                     best[k], int(stall[k]), int(n[k]))
    for job in jobs:
        if job.warned:
            import warnings

            from sklearn.exceptions import ConvergenceWarning

            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({max_iter}) reached and the optimization "
                          "hasn't converged yet.", ConvergenceWarning, stacklevel=3)


@functools.lru_cache(maxsize=32)  # one compiled program per stack shape and settings, per process
def _compiled(L: int, binary: bool, alpha: float, lr0: float, b1: float, b2: float, eps: float, tol: float,
              patience: int) -> Any:
    import jax
    import jax.numpy as jnp

    def act(z: Any, codes: Any) -> Any:
        c = codes[:, None, None]
        return jnp.where(c == 1, jax.nn.sigmoid(z), jnp.where(c == 2, jnp.tanh(z), jnp.where(c == 3, jnp.maximum(z, 0), z)))

    def dact(a: Any, d: Any, codes: Any) -> Any:
        c = codes[:, None, None]
        return jnp.where(c == 1, d * a * (1 - a), jnp.where(c == 2, d * (1 - a * a), jnp.where(c == 3, d * (a > 0), d)))

    def step(carry: Any, batch: Any) -> Any:
        params, ms, vs, t, active, X, Y, codes = carry
        gather, mask = batch
        count = mask.sum(axis=1)
        live = active & (count > 0)
        w = mask[..., None].astype(X.dtype)
        cnt = jnp.maximum(count, 1).astype(X.dtype)[:, None, None]
        coefs, inter = params[:L], params[L:]
        acts = [X[gather]]
        for i in range(L):
            z = acts[-1] @ coefs[i] + inter[i]
            acts.append(act(z, codes) if i + 1 < L else z)
        z = acts[-1]
        if binary:
            prob = jax.nn.sigmoid(z)
        else:
            prob = jax.nn.softmax(z, axis=2)
        Yb = Y[gather]
        e = jnp.finfo(prob.dtype).eps
        pc = jnp.clip(prob, e, 1 - e)
        terms = Yb * jnp.log(pc) + ((1 - Yb) * jnp.log(1 - pc) if binary else 0)
        loss = -(terms * w).sum(axis=(1, 2)) / cnt[:, 0, 0]
        loss = loss + 0.5 * alpha * sum((c * c).sum(axis=(1, 2)) for c in coefs) / cnt[:, 0, 0]
        delta = (prob - Yb) * w
        grads_c, grads_i = [None] * L, [None] * L
        for i in range(L - 1, -1, -1):
            grads_c[i] = (jnp.swapaxes(acts[i], 1, 2) @ delta + alpha * coefs[i]) / cnt
            grads_i[i] = delta.sum(axis=1, keepdims=True) / cnt
            if i:
                delta = dact(acts[i], delta @ jnp.swapaxes(coefs[i], 1, 2), codes)
        t = t + live
        tf = t.astype(jnp.float32)
        lr = lr0 * jnp.sqrt(1 - b2 ** tf) / (1 - b1 ** tf)
        sel = live[:, None, None]
        new_p, new_m, new_v = [], [], []
        for prm, m, v, g in zip(params, ms, vs, grads_c + grads_i):
            m2 = b1 * m + (1 - b1) * g
            v2 = b2 * v + (1 - b2) * g * g
            p2 = prm - (lr[:, None, None] * m2 / (jnp.sqrt(v2) + eps)).astype(prm.dtype)
            new_p.append(jnp.where(sel, p2, prm))
            new_m.append(jnp.where(sel, m2, m))
            new_v.append(jnp.where(sel, v2, v))
        return (new_p, new_m, new_v, t, active, X, Y, codes), loss * count

    def epoch(carry: Any, batches: Any) -> Any:
        params, ms, vs, t, active, best, stall, n_iter, X, Y, codes, n = carry
        (params, ms, vs, t, _, _, _, _), losses = jax.lax.scan(step, (params, ms, vs, t, active, X, Y, codes), batches)
        curve = losses.sum(axis=0) / n
        worse = curve > best - tol
        stall = jnp.where(active, jnp.where(worse, stall + 1, 0), stall)
        best = jnp.where(active, jnp.minimum(best, curve), best)
        n_iter = n_iter + active
        active = active & (stall <= patience)
        return (params, ms, vs, t, active, best, stall, n_iter, X, Y, codes, n), curve

    @jax.jit
    def run(params: Any, X: Any, Y: Any, gather: Any, mask: Any, codes: Any, n: Any) -> Any:
        K = codes.shape[0]
        zeros = [jnp.zeros_like(q) for q in params]
        carry = (params, zeros, list(zeros), jnp.zeros(K, jnp.int32), jnp.ones(K, bool), jnp.full(K, jnp.inf, X.dtype),
                 jnp.zeros(K, jnp.int32), jnp.zeros(K, jnp.int32), X, Y, codes, n)
        carry, curves = jax.lax.scan(epoch, carry, (gather, mask))
        params, _, _, _, _, best, stall, n_iter = carry[:8]
        return params, n_iter, curves, best, stall

    return run
