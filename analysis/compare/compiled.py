"""What echolab's compiled loops share (numba, the ``fast`` extra): how they are compiled, built once, and given up.

:mod:`.mlpfused`, :mod:`.forestfused` and :mod:`.svcfused` each compile loops that compute exactly what
the code they replace computes, only faster. They are compiled the same way (:func:`jit`: no fast-math,
so every operation is rounded as written and nothing is contracted into a fused multiply-add; cached
on disk where possible), built once per process on first use (:func:`build_once`), and given up
without harm: where numba is missing, ``NUMBA_DISABLE_JIT`` is set, the module's switch is 0, or
numba cannot compile here, the module's callers take the plain path (the same results).
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Callable

#: error_model "numpy": a division by zero gives inf or NaN as NumPy does, with no check that keeps LLVM from
#: vectorising the loops; no fast-math: every operation rounded as written, nothing contracted
OPTIONS = dict(nogil=True, fastmath=False, boundscheck=False, error_model="numpy")


def numba_module() -> Any:
    """numba, or None where it is not installed, its JIT is turned off (the loops would run as Python), or it
    would vectorise ``exp`` and ``log`` with Intel's SVML (not the C library's: values that may differ in the
    last bit from what the replaced code computes)."""
    try:
        import numba
    except ImportError:
        return None
    if numba.config.DISABLE_JIT or getattr(numba.config, "USING_SVML", False):
        return None
    return numba


def jit(fn: Callable | None = None, *, inline: bool = False) -> Any:
    """*fn* compiled with :data:`OPTIONS`: once per machine, then loaded from numba's cache; where no place
    for the cache is writable, once per process. A function that calls another compiled function must be
    a module-level one (a closure over another compiled function defeats the cache). ``jit(inline=True)``
    inlines the function into its compiled callers (what it allocates is then visibly theirs to LLVM)."""
    import numba

    if fn is None:
        return lambda f: jit(f, inline=inline)
    options = dict(OPTIONS, inline="always") if inline else OPTIONS
    try:
        return numba.njit(cache=True, **options)(fn)
    except RuntimeError:
        return numba.njit(cache=False, **options)(fn)


def build_once(switch: str, build: Callable[[], Any], smoke: Callable[[Any], None], what: str,
               instead: str) -> Any:
    """``build()`` tried with ``smoke()`` (so that any compile happens here), or False.

    False where the environment variable *switch* is 0 or ``build`` gives nothing (numba missing); where
    numba fails, one ``RuntimeWarning`` names *what* could not be compiled and says what is done *instead*.
    The caller keeps the result for its process.
    """
    if os.environ.get(switch, "1") == "0":
        return False
    try:
        built = build()
        if built:
            smoke(built)
        return built
    except Exception as exc:  # numba's compiler failed here: the plain path does the same work
        warnings.warn(f"numba could not compile {what} ({type(exc).__name__}: {exc}); {instead}", RuntimeWarning,
                      stacklevel=3)
        return False
