"""CI runs every test that needs a real component: under CI=1 a skip fails."""

from __future__ import annotations

from pathlib import Path

import pytest

INNER = """
import pytest

missing = pytest.importorskip("a_module_that_is_not_installed")
"""
RUNTIME = """
import pytest

def test_needs_tcptrace():
    pytest.skip("tcptrace is not installed")

@pytest.mark.skipif(True, reason="needs root for network namespaces")
def test_needs_root():
    pass

@pytest.mark.xfail(reason="a known bug", strict=False)
def test_known_bug():
    assert False
"""


@pytest.mark.parametrize("ci", ["1", ""])
def test_skips_fail_under_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    # names no module of the suite has: the inner runs share this process's imported modules
    pytester.makepyfile(test_guard_runtime=RUNTIME, test_guard_collect=INNER)
    runtime = pytester.runpytest("-p", "ci_guard", "test_guard_runtime.py")
    collect = pytester.runpytest("-p", "ci_guard", "test_guard_collect.py")
    if ci:
        runtime.assert_outcomes(failed=1, errors=1, xfailed=1)  # a skipif marker fails at set-up
        runtime.stdout.fnmatch_lines(["*skipped under CI=1*tcptrace is not installed*"])
        collect.assert_outcomes(errors=1)
        collect.stdout.fnmatch_lines(["*skipped under CI=1*a_module_that_is_not_installed*"])
    else:
        runtime.assert_outcomes(skipped=2, xfailed=1)
        collect.assert_outcomes(skipped=1)


def test_ci_script_sets_ci() -> None:
    script = Path(__file__).resolve().parents[1] / ".ci" / "run"
    assert "export CI=1" in script.read_text().splitlines()
