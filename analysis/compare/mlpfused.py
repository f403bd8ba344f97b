"""The lockstep MLP's element-by-element passes fused into compiled loops (numba, the ``fast`` extra).

Between its matrix products, a step of :mod:`mlpbatch` is a chain of NumPy passes over the
stack's activations and parameters: the hidden layers' activation, their derivative, the
intercepts' gradients (column sums), the weight decay, the division by the batch size, and
Adam's moments and step in mixed single and double precision (about a dozen passes over every
parameter, several with a conversion between float32 and float64). Each pass streams arrays of
a megabyte or more through the cache, and on the study's shapes they cost more than the products.

Here each chain is one compiled loop that reads and writes each value once, and performs the
very same floating-point operations, in the same order and precision, as the NumPy passes it
replaces: every product and sum rounded to the array's dtype where NumPy rounds it, the Adam
step in double precision, the column sums added row after row as NumPy's reduction adds them,
no fused multiply-add (numba compiles without fast-math, and LLVM then contracts nothing). The
fits are therefore the NumPy trainer's to the last bit (``tests/test_analysis_mlpbatch.py``
compares the two), and their cached trials are shared. NumPy's vectorised ``exp`` stays NumPy's:
a compiled ``exp`` would round differently.

Used only where numba imports (``pip install 'echolab-toolkit[fast]'``); without it, or with
``ECHOLAB_MLP_FUSED=0`` in the environment, the trainer takes its NumPy passes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from echolab.analysis.compare import compiled

#: None: not built yet in this process; False: not used here (numba missing, turned off, or unable to
#: compile); else the namespace of compiled kernels.
_kernels: Any = None


def available() -> bool:
    """Whether the fused passes can be used here (numba imports, and ``ECHOLAB_MLP_FUSED`` is not 0)."""
    return kernels() is not None


def kernels() -> Any:
    """The compiled kernels (a namespace), or None: built and tried on first use in a process.

    Where numba imports but cannot compile them here, a ``RuntimeWarning`` says so once and the trainer
    keeps its NumPy passes (the same fits).
    """
    global _kernels
    if _kernels is None:  # set once built: another thread meanwhile builds its own, the same
        _kernels = compiled.build_once("ECHOLAB_MLP_FUSED", _build, _smoke, "the MLP's fused passes",
                                       "the MLP is trained by its NumPy passes: the same fits, slower")
    return _kernels or None


def _smoke(k: Any) -> None:
    """Each kernel once on tiny arrays laid out as the trainer's, so that any compile happens (or fails) here.

    Both dtypes, and stacks of several networks (the gradients' intercept rows are strided views) and of
    one (a refit: those views are contiguous); from the second process on, loaded from numba's cache.
    """
    for f in (np.float32, np.float64):
        for nets in (2, 1):
            Z = np.zeros((nets, 3, 4), dtype=f)
            b = np.zeros((nets, 4), dtype=f)
            view = np.zeros((nets, 1, 6), dtype=f)[:, 0, 1:5]
            k.logistic_inputs(Z, b, 0, nets)
            k.logistic_outputs(Z, 0, nets, f(1))
            k.relu(Z, b, 0, nets, f(0))
            k.hidden_backward(Z, Z.copy(), np.zeros(nets, dtype=np.int64), view, f(1), f(0))
            k.softmax_inputs(Z, b)
            k.softmax_outputs(np.ones_like(Z), np.zeros((nets, 3), dtype=np.intp), np.full(nets, 3), f(1e-7), f(1),
                              f(0), np.zeros((nets, 4)), view)
            params = np.zeros((nets, 5), dtype=f)
            k.adam(params, params.copy(), params.copy(), params.copy(), 3, np.ones(nets, dtype=f),
                   np.full(nets, -1e-3), f(1e-4), f(0.9), f(0.999), f(1e-8), f(0.1), f(0.001))


def _build() -> Any:
    if compiled.numba_module() is None:  # not installed, or NUMBA_DISABLE_JIT: the NumPy passes are faster
        return False
    from types import SimpleNamespace

    jit = compiled.jit

    @jit
    def adam(params, grads, ms, vs, n_weights, div, neg_lr, alpha, b1, b2, eps, c1, c2):  # pragma: no cover - compiled
        # One row per network: its weights (the first n_weights values), then its intercepts. grads holds the
        # raw products (A^T delta) and column sums; the weights' decay and the division by the batch's rows
        # come first, as MLPClassifier._compute_loss_grad adds them, then AdamOptimizer's update: the moments
        # in the parameters' dtype, the step (-lr * m / (sqrt(v) + eps)) in double precision.
        n_nets, n_params = params.shape
        for k in range(n_nets):
            d = div[k]
            lr = neg_lr[k]
            p, g_row, m_row, v_row = params[k], grads[k], ms[k], vs[k]
            for j in range(n_weights):
                g_row[j] = g_row[j] + p[j] * alpha
            for j in range(n_params):
                g = g_row[j] / d
                m = m_row[j] * b1 + g * c1
                v = v_row[j] * b2 + (g * g) * c2
                m_row[j] = m
                v_row[j] = v
                p[j] = np.float64(p[j]) + np.float64(m) * lr / np.float64(np.sqrt(v) + eps)

    @jit
    def logistic_inputs(Z, b, lo, hi):  # pragma: no cover - compiled
        # (-b) - Z, which is -(Z + b) to the last bit: the logistic function's argument, negated, in place
        for k in range(lo, hi):
            for r in range(Z.shape[1]):
                for h in range(Z.shape[2]):
                    Z[k, r, h] = (-b[k, h]) - Z[k, r, h]

    @jit
    def logistic_outputs(Z, lo, hi, one):  # pragma: no cover - compiled
        # 1 / (1 + exp(-a)) from exp(-a), in place (one: 1 in Z's dtype)
        for k in range(lo, hi):
            for r in range(Z.shape[1]):
                for h in range(Z.shape[2]):
                    Z[k, r, h] = one / (Z[k, r, h] + one)

    @jit
    def relu(Z, b, lo, hi, zero):  # pragma: no cover - compiled
        for k in range(lo, hi):
            for r in range(Z.shape[1]):
                for h in range(Z.shape[2]):
                    z = Z[k, r, h] + b[k, h]
                    Z[k, r, h] = z if (z > zero or z != z) else zero  # np.maximum(z, 0): NaN stays, -0.0 becomes 0.0

    @jit
    def hidden_backward(delta, A, codes, sums, one, zero):  # pragma: no cover - compiled
        # Each network's delta times its activation's derivative (in place), and its column sums (the
        # intercepts' raw gradient), added row after row as NumPy's sum over that axis adds them for two
        # columns or more (one column is contiguous, and NumPy sums it pairwise: the caller sums it then).
        # codes[k]: network k's activation, its position in mlpbatch.ACTIVATIONS (identity, logistic, tanh, relu).
        n_rows, width = delta.shape[1], delta.shape[2]
        s = np.empty(width, delta.dtype)  # contiguous, so that the loops vectorise; copied into sums[k]
        for k in range(delta.shape[0]):
            code = codes[k]
            for r in range(n_rows):
                d, a = delta[k, r], A[k, r]
                if code == 1:
                    for h in range(width):
                        d[h] = (d[h] * a[h]) * (one - a[h])
                elif code == 2:
                    for h in range(width):
                        d[h] = d[h] * (one - a[h] * a[h])
                elif code == 3:
                    for h in range(width):
                        d[h] = d[h] * (one if a[h] > zero else zero)
                if r == 0:
                    for h in range(width):
                        s[h] = d[h]
                else:
                    for h in range(width):
                        s[h] = s[h] + d[h]
            for h in range(width):
                sums[k, h] = s[h]

    @jit
    def softmax_inputs(Z, b):  # pragma: no cover - compiled
        # the output layer's Z + b, less each row's largest value (mlpbatch._softmax's maxima, a column at a
        # time as np.maximum takes them: a NaN stays), in place; np.exp follows
        n_classes = Z.shape[2]
        for k in range(Z.shape[0]):
            bk = b[k]
            for r in range(Z.shape[1]):
                z = Z[k, r]
                for c in range(n_classes):
                    z[c] = z[c] + bk[c]
                top = z[0]
                for c in range(1, n_classes):
                    v = z[c]
                    top = top if (top >= v or top != top) else v
                for c in range(n_classes):
                    z[c] = z[c] - top

    @jit
    def softmax_outputs(P, labels, counts, eps, one, zero, sums, columns):  # pragma: no cover - compiled
        # From exp(Z - max): the softmax (each row divided by its sum, added left to right as mlpbatch._softmax
        # adds it); each network's log losses per class, log(clip(p, eps, 1 - eps)) of its rows' own classes in
        # double precision, added per class in row order (mlpbatch._log_losses: np.bincount's sums; scipy's xlogy
        # and this log are the C library's); the output deltas P - Y in place (a padding row's, past counts[k],
        # is (p - 0) * 0, as the mask makes it); and their column sums, row after row, into *columns*.
        n_rows, n_classes = P.shape[1], P.shape[2]
        high = one - eps
        for k in range(P.shape[0]):
            used = counts[k]
            for r in range(n_rows):
                p = P[k, r]
                total = p[0] + p[1]
                for c in range(2, n_classes):
                    total = total + p[c]
                for c in range(n_classes):
                    p[c] = p[c] / total
                if r < used:
                    own = labels[k, r]
                    q = p[own]
                    q = eps if q < eps else (high if q > high else q)  # np.clip: a NaN stays NaN
                    sums[k, own] += np.log(np.float64(q))
                    for c in range(n_classes):
                        p[c] = p[c] - (one if c == own else zero)
                else:
                    for c in range(n_classes):
                        p[c] = (p[c] - zero) * zero
                for c in range(n_classes):
                    if r == 0:
                        columns[k, c] = p[c]
                    else:
                        columns[k, c] = columns[k, c] + p[c]

    return SimpleNamespace(adam=adam, logistic_inputs=logistic_inputs, logistic_outputs=logistic_outputs,
                           relu=relu, hidden_backward=hidden_backward,
                           softmax_inputs=softmax_inputs, softmax_outputs=softmax_outputs)
