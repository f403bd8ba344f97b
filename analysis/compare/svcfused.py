"""An RBF SVC grid's kernel values computed once per grid (numba, the ``fast`` extra), the very values libsvm computes.

An RBF grid search fits libsvm 25 times per fold (5 C values x 5 gammas), and each fit evaluates
the kernel ``exp(-gamma (|x_i|^2 + |x_j|^2 - 2 x_i.x_j))`` between the fold's captures anew, then
each prediction ``exp(-gamma |x - s|^2)`` between the held-out captures and the support vectors:
on the study's folds, more than half of each fit and most of each prediction. The products do not
depend on gamma, C or the fold: every fold's rows are rows of the grid's one matrix. Here they are
computed once per grid, by the very function libsvm calls for them (scikit-learn's libsvm calls
BLAS's ``ddot`` from SciPy's ``cython_blas``; this module calls the same function, on the same
values, in the same layout: one row's features against another's, and the difference of two rows
against itself for a prediction), and each gamma's kernel values once, with the C library's
``exp``, as libsvm's ``kernel_rbf`` and ``k_function`` form them. libsvm is then handed each fold's
values as a precomputed kernel: its solver reads the same numbers it would have computed, so its
support vectors, coefficients, intercepts and predictions are the RBF fit's own, bit for bit
(``tests/test_analysis_svcfused.py`` compares them with ``SVC``'s).

Used by :class:`fastfit.SVCFolds` where numba imports and SciPy exports ``ddot``; without them, or
with ``ECHOLAB_SVC_FUSED=0``, every fit computes its own kernel values (the same predictions).
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

import numpy as np

from echolab.analysis.compare import compiled

#: None: not built yet in this process; False: not used here; else the namespace of compiled kernels.
_kernels: Any = None

#: The most rows a grid's kernel values are computed for (its two product matrices then take 64 MB).
MAX_ROWS = 2000
#: The most memory the kernel matrices of the grid's gammas are kept in; past it, the oldest gamma's are dropped.
KEEP_BYTES = 128 * 2**20


def kernels() -> Any:
    """The compiled kernels (a namespace), or None: built and tried on first use in a process."""
    global _kernels
    if _kernels is None:
        _kernels = compiled.build_once("ECHOLAB_SVC_FUSED", _build, _smoke, "the SVC's kernel values",
                                       "each SVC fit computes its own: the same predictions, slower")
    return _kernels or None


class RBFValues:
    """The products of every pair of rows of *X* (float64, C order) that RBF kernel values are made of.

    ``dots[i, j]`` is ``ddot(x_i, x_j)``, ``squares[i, j]`` is ``ddot(x_i - x_j, x_i - x_j)``: what libsvm
    computes for a training pair and for a held-out row against a support vector. Each gamma's kernel
    matrices are computed when first asked for and kept while they fit in :data:`KEEP_BYTES` (a few
    megabytes each on the study's training part).
    """

    def __init__(self, k: Any, X: np.ndarray):
        self.k = k
        n, d = X.shape
        self.dots = np.empty((n, n))
        self.squares = np.empty((n, n))
        k.pair_products(k.ddot, np.ascontiguousarray(X, dtype=np.float64), self.dots, self.squares, np.empty(d))
        self.norms = np.ascontiguousarray(np.diagonal(self.dots))
        self._by_gamma: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    def kernel(self, gamma: float) -> tuple[np.ndarray, np.ndarray]:
        """(training kernel, prediction kernel) between every two rows, for *gamma*.

        A grid's candidates take its gammas in turn for each C (``ParameterGrid``'s order), so every gamma's
        matrices are kept while they fit in :data:`KEEP_BYTES`.
        """
        key = float(gamma)
        if key not in self._by_gamma:
            train = np.empty_like(self.dots)
            predict = np.empty_like(self.squares)
            self.k.rbf(self.dots, self.norms, self.squares, key, train, predict)
            while self._by_gamma and (len(self._by_gamma) + 1) * 2 * train.nbytes > KEEP_BYTES:
                del self._by_gamma[next(iter(self._by_gamma))]
            self._by_gamma[key] = (train, predict)
        return self._by_gamma[key]


def prepare(X: np.ndarray) -> RBFValues | None:
    """:class:`RBFValues` of *X*, or None where the kernels are not used here (or *X* has too many rows)."""
    k = kernels()
    return None if k is None or not 0 < len(X) <= MAX_ROWS else RBFValues(k, X)


def _ddot_address() -> int:
    """The address of SciPy's ``cython_blas.ddot``: the function scikit-learn's libsvm computes its products with."""
    from scipy.linalg import cython_blas

    capsule = cython_blas.__pyx_capi__["ddot"]
    name = ctypes.pythonapi.PyCapsule_GetName
    name.restype, name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    pointer = ctypes.pythonapi.PyCapsule_GetPointer
    pointer.restype, pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    address = pointer(capsule, name(capsule))
    if not address:
        raise RuntimeError("SciPy's cython_blas exports no ddot")
    return int(address)


def _smoke(k: Any) -> None:
    """The kernels once on a tiny matrix, so that any compile happens (or fails) here."""
    values = RBFValues(k, np.arange(6.0).reshape(3, 2))
    values.kernel(0.5)


def _build() -> Any:
    if compiled.numba_module() is None:
        return False
    from types import SimpleNamespace

    # double ddot(int *n, double *x, int *incx, double *y, int *incy), as BLAS declares it; an argument of the
    # kernels, not a constant in them, so that numba's cache keeps them (its address is the process's)
    ddot = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                            ctypes.c_void_p)(_ddot_address())
    jit = compiled.jit

    @jit
    def pair_products(ddot, X, dots, squares, diff):  # pragma: no cover - compiled
        # dots[i, j] = ddot(x_i, x_j) as libsvm's Kernel::dot; squares[i, j] = ddot(d, d) for d = x_i - x_j as
        # libsvm's k_function (RBF) forms it. Both are symmetric to the last bit (products commute), so each pair
        # is computed once.
        n, d = X.shape
        ints = np.empty(2, dtype=np.int32)
        ints[0] = d
        ints[1] = 1
        size = ints[0:1].ctypes
        step = ints[1:2].ctypes
        for i in range(n):
            xi = X[i]
            for j in range(i, n):
                xj = X[j]
                value = ddot(size, xi.ctypes, step, xj.ctypes, step)
                dots[i, j] = value
                dots[j, i] = value
                for f in range(d):
                    diff[f] = xi[f] - xj[f]
                value = ddot(size, diff.ctypes, step, diff.ctypes, step)
                squares[i, j] = value
                squares[j, i] = value

    @jit
    def rbf(dots, norms, squares, gamma, train, predict):  # pragma: no cover - compiled
        # kernel_rbf: exp(-gamma * (x_square[i] + x_square[j] - 2 * dot)); k_function: exp(-gamma * sum)
        n = dots.shape[0]
        for i in range(n):
            for j in range(n):
                train[i, j] = math.exp(-gamma * (norms[i] + norms[j] - 2.0 * dots[i, j]))
                predict[i, j] = math.exp(-gamma * squares[i, j])

    return SimpleNamespace(ddot=ddot, pair_products=pair_products, rbf=rbf)
