"""A numba that cannot compile, for the tests of echolab's compiled loops (mlpfused, forestfused, svcfused)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest


def break_build(monkeypatch: pytest.MonkeyPatch, module: Any, switch: str) -> Any:
    """*module*'s kernels not built yet in this process, and building them fails as numba fails on a CPU it has no
    target for; its switch (*switch*) unset."""
    def broken() -> None:
        raise RuntimeError("LLVM ERROR: no target for this CPU")

    monkeypatch.delenv(switch, raising=False)
    monkeypatch.setattr(module, "_kernels", None)
    monkeypatch.setattr(module, "_build", broken)
    return module


def assert_given_up_once(module: Any, says: str) -> None:
    """The first use warns once (a RuntimeWarning saying *says*), then the kernels are None without a word."""
    with pytest.warns(RuntimeWarning, match=says):
        assert module.kernels() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert module.kernels() is None


def assert_compiled_like_the_c_library(function: Any, x: Any) -> None:
    """*function* (``math.log``, ``math.exp``) compiled by numba gives Python's values for *x*, bit for bit: both
    are the C library's, as scikit-learn's compiled code calls it."""
    import numba
    import numpy as np

    @numba.njit
    def compiled(values):
        out = np.empty_like(values)
        for i in range(values.shape[0]):
            out[i] = function(values[i])
        return out

    assert compiled(x).tobytes() == np.array([function(v) for v in x]).tobytes()
