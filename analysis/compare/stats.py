"""Summaries of trial results and paired significance tests.

Two models (or two feature sets) are compared on the *same* trial splits, so
their accuracies are paired: the test is on the per-trial differences. Three
p-values are given, because they answer slightly different questions:

* ``p_ttest``: the paired t-test, what the study reports;
* ``p_wilcoxon``: the Wilcoxon signed-rank test, which does not assume normal
  differences;
* ``p_corrected``: the corrected resampled t-test of Nadeau & Bengio (2003).
  Repeated random splits reuse the same captures, so the trials are not
  independent and the plain paired t-test is too confident; the correction
  inflates the variance by ``1/n + n_test/n_train``. Use it to judge
  "significant"; the plain test is there to compare with the study.

The 95% confidence interval is the plain paired t interval of the mean
difference (in percentage points), as the study reports it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class Description:
    """Accuracy over trials, in percent."""

    n: int
    mean: float
    std: float
    median: float
    min: float
    max: float


def describe(values: Sequence[float]) -> Description:
    """Mean, standard deviation (population, numpy's default), median, range, in %."""
    a = 100.0 * np.asarray(values, dtype=float)
    if a.size == 0:
        nan = float("nan")
        return Description(0, nan, nan, nan, nan, nan)
    return Description(int(a.size), float(a.mean()), float(a.std()), float(np.median(a)), float(a.min()), float(a.max()))


@dataclass(frozen=True)
class PairedTest:
    """A is compared with B over the same trials; differences are A - B in pp."""

    a: str
    b: str
    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    p_ttest: float
    p_wilcoxon: float
    p_corrected: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def paired_test(
    a: Sequence[float],
    b: Sequence[float],
    *,
    names: tuple[str, str] = ("A", "B"),
    test_fraction: float | None = None,
) -> PairedTest:
    """Paired comparison of two accuracy series over the same trials.

    *test_fraction* (n_test / n) enables the Nadeau-Bengio corrected p-value;
    leave it ``None`` for splits that do not resample (leave one campaign out).
    """
    x, y = 100.0 * np.asarray(a, dtype=float), 100.0 * np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError("paired series must have the same trials")
    d = x - y
    n = int(d.size)
    mean = float(d.mean()) if n else float("nan")
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    if n < 2:
        return PairedTest(names[0], names[1], n, mean, float("nan"), float("nan"), float("nan"), float("nan"), None)
    if sd == 0.0:
        p_t = 1.0 if mean == 0.0 else 0.0
        ci = (mean, mean)
    else:
        se = sd / math.sqrt(n)
        p_t = float(2 * sps.t.sf(abs(mean / se), n - 1))
        half = float(sps.t.ppf(0.975, n - 1)) * se
        ci = (mean - half, mean + half)
    p_w = _wilcoxon(d)
    p_c: float | None = None
    if test_fraction is not None and 0 < test_fraction < 1:
        if sd == 0.0:
            p_c = p_t
        else:
            ratio = test_fraction / (1 - test_fraction)
            t_c = mean / math.sqrt((1 / n + ratio) * sd * sd)
            p_c = float(2 * sps.t.sf(abs(t_c), n - 1))
    return PairedTest(names[0], names[1], n, mean, ci[0], ci[1], p_t, p_w, p_c)


def _wilcoxon(d: np.ndarray) -> float:
    if not np.any(d != 0):
        return 1.0
    try:
        return float(sps.wilcoxon(d, zero_method="wilcox").pvalue)
    except ValueError:
        return float("nan")


def all_pairs(
    series: dict[str, Sequence[float]],
    *,
    test_fraction: float | None = None,
) -> list[PairedTest]:
    """Every pair of *series* (in their order), A before B."""
    names = list(series)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            out.append(paired_test(series[a], series[b], names=(a, b), test_fraction=test_fraction))
    return out


def best_vs_rest(
    series: dict[str, Sequence[float]],
    *,
    test_fraction: float | None = None,
) -> list[PairedTest]:
    """The best series by mean against each other one (the study's "RF beats the second best")."""
    if not series:
        return []
    best = max(series, key=lambda k: float(np.mean(series[k])))
    return [
        paired_test(series[best], series[o], names=(best, o), test_fraction=test_fraction)
        for o in series
        if o != best
    ]


def format_p(p: float | None) -> str:
    """A p-value as the study writes it (< 0.0001 below that)."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    if p < 1e-4:
        return "< 0.0001"
    return f"{p:.4f}"
