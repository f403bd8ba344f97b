"""Under ``CI=1`` a skipped test is a failed test (a pytest plugin, loaded by conftest.py).

Tests that need a real component (root and network namespaces, tcptrace,
tshark, editcap, PostgreSQL, chromium, an optional library) skip on a
developer's machine that lacks it. On CI every one of them is installed
(``scripts/setup.sh``), so a skip there means a component is missing or
broken and the test did not run: it is reported as a failure with the reason
it gave, at run time and at collection time alike.
"""

from __future__ import annotations

import os
from typing import Any

import pytest


def ci() -> bool:
    return os.environ.get("CI", "") not in ("", "0", "false")


def _fail(report: Any) -> None:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    reason = reason.removeprefix("Skipped: ")
    report.outcome = "failed"
    report.longrepr = f"skipped under CI=1, where every real component must be present: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    outcome = yield
    report = outcome.get_result()
    if ci() and report.skipped and not hasattr(report, "wasxfail"):
        _fail(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    outcome = yield
    report = outcome.get_result()
    if ci() and report.skipped:
        _fail(report)
