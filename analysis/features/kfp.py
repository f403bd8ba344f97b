"""k-FP's features (Hayes & Danezis, "k-fingerprinting: a robust scalable website fingerprinting
technique", USENIX Security 2016), computed from a capture's packet sequence.

k-FP describes a trace by about 175 timing, count and burst statistics and
classifies it with a random forest (closed world), or by k-NN on the forest's
leaf vectors (its "fingerprints"; ``echolab.analysis.compare.leafknn``). This
module follows the groups of the paper's Section 4.1 and its feature code, in
the order they list them; ``docs/features.md`` maps every group to the paper.
The device is the client: ``d2s`` is the paper's "outgoing", ``s2d`` its
"incoming". Because Tor cells all have one size, k-FP ignored sizes; TLS
packets do not, so a size group (totals, means and standard deviations per
direction, burst bytes) is added and named as such.

Every statistic of an empty list is 0 (a capture with packets in one
direction only still gives a full row).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from echolab.analysis.features.sets import as_record, bursts

#: Concentration chunks of this many packets (k-FP: 20).
CHUNK = 20
#: The alternative concentration and rate lists are cut into this many parts and summed (k-FP: 70, 20).
ALT_CONC_PARTS = 70
ALT_RATE_PARTS = 20
#: First and last packets counted by direction (k-FP: 30).
EDGE = 30
#: Seconds of a capture its packets-per-second list counts: a packet later than this after the first
#: (a request lasts seconds; a hostile trace may claim a gap of centuries) is counted in the last second,
#: and one stamped before the first (a clock stepped back) in the first; so the list never outgrows
#: MAX_RATE_SECONDS + 1 entries and still counts every packet once.
MAX_RATE_SECONDS = 3600
#: Burst length thresholds counted (k-FP: more than 5, 10, 20 packets).
BURST_OVER = (5, 10, 20)
_DIRS = ("bi", "s2d", "d2s")


def _names() -> list[str]:
    names = ["bi_total_pkts", "s2d_total_pkts", "d2s_total_pkts", "s2d_pkts_frac", "d2s_pkts_frac",
             "bi_total_bytes", "s2d_total_bytes", "d2s_total_bytes",
             "s2d_size_mean_bytes", "s2d_size_std_bytes", "d2s_size_mean_bytes", "d2s_size_std_bytes"]
    names += [f"{d}_iat_{s}_s" for d in _DIRS for s in ("max", "mean", "std", "q75")]
    names += [f"{d}_time_{q}_s" for d in _DIRS for q in ("q25", "q50", "q75", "q100")]
    names += ["d2s_order_mean_count", "d2s_order_std_count", "s2d_order_mean_count", "s2d_order_std_count"]
    names += [f"s2d_first{EDGE}_pkts", f"d2s_first{EDGE}_pkts", f"s2d_last{EDGE}_pkts", f"d2s_last{EDGE}_pkts"]
    names += [f"d2s_conc_{s}_pkts" for s in ("std", "mean", "median", "max")]
    names += [f"bi_rate_{s}_pkts_per_s" for s in ("mean", "std", "median", "min", "max")]
    for d in ("d2s", "s2d"):
        names += [f"{d}_burst_count", f"{d}_burst_max_pkts", f"{d}_burst_mean_pkts"]
        names += [f"{d}_burst_over{n}_count" for n in BURST_OVER]
        names += [f"{d}_burst_max_bytes", f"{d}_burst_mean_bytes"]
    names += [f"d2s_conc_alt_{i:02d}_pkts" for i in range(ALT_CONC_PARTS)]
    names += [f"bi_rate_alt_{i:02d}_pkts" for i in range(ALT_RATE_PARTS)]
    return names


#: Every k-FP column, in order.
KFP_FEATURE_NAMES: tuple[str, ...] = tuple(_names())


def _quantile(ordered: np.ndarray, q: float) -> float:
    """NumPy's default ("linear") percentile of an already sorted array, without its per-call overhead."""
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


def _stats(values: np.ndarray, which: Sequence[str]) -> list[float]:
    """The named statistics of *values* (0 for each when there are none); one sort serves every quantile."""
    if len(values) == 0:
        return [0.0] * len(which)
    ordered = np.sort(values)
    quantiles = {"min": 0.0, "q25": 0.25, "median": 0.5, "q50": 0.5, "q75": 0.75, "max": 1.0, "q100": 1.0}
    out = []
    for w in which:
        if w == "mean":
            out.append(float(ordered.mean()))
        elif w == "std":
            out.append(float(ordered.std()))
        else:
            out.append(_quantile(ordered, quantiles[w]))
    return out


def _part_sums(values: np.ndarray, parts: int) -> list[float]:
    """*values* cut into *parts* nearly equal consecutive parts (as ``numpy.array_split``), each summed."""
    n = len(values)
    q, r = divmod(n, parts)
    idx = np.arange(parts + 1)
    bounds = idx * q + np.minimum(idx, r)
    cumulative = np.concatenate(([0.0], np.cumsum(values, dtype=float)))
    return (cumulative[bounds[1:]] - cumulative[bounds[:-1]]).tolist()


def per_second(times: np.ndarray) -> np.ndarray:
    """Packets in each whole second since the first packet (k-FP's packets-per-second list).

    Seconds are clamped to 0..:data:`MAX_RATE_SECONDS` (times that go
    backwards or leap far ahead are a hostile or broken trace's, never a request's).
    """
    if not len(times):
        return np.zeros(0)
    rel = np.nan_to_num(times - times[0], nan=0.0, posinf=MAX_RATE_SECONDS, neginf=0.0)
    return np.bincount(np.floor(np.clip(rel, 0, MAX_RATE_SECONDS)).astype(np.int64))


def kfp_vector(times: np.ndarray, sizes: np.ndarray, burst_pkts: Sequence[int] | None = None,
               burst_bytes: Sequence[int] | None = None) -> np.ndarray:
    """The k-FP row of one sequence: *times* in seconds (non-decreasing), *sizes* signed bytes.

    The bursts are computed from *sizes* unless given (a record caches them).
    """
    times = np.asarray(times, dtype=float)
    sizes = np.asarray(sizes, dtype=float)
    out_mask = sizes > 0
    n = len(sizes)
    n_out = int(out_mask.sum())
    n_in = n - n_out
    row: list[float] = [n, n_in, n_out, n_in / n if n else 0.0, n_out / n if n else 0.0]
    absz = np.abs(sizes)
    row += [absz.sum(), absz[~out_mask].sum(), absz[out_mask].sum()]
    row += _stats(absz[~out_mask], ("mean", "std")) + _stats(absz[out_mask], ("mean", "std"))
    by_dir = {"bi": times, "s2d": times[~out_mask], "d2s": times[out_mask]}
    for d in _DIRS:
        row += _stats(np.diff(by_dir[d]), ("max", "mean", "std", "q75"))
    for d in _DIRS:
        row += _stats(by_dir[d], ("q25", "q50", "q75", "q100"))
    positions = np.arange(n, dtype=float)
    row += _stats(positions[out_mask], ("mean", "std")) + _stats(positions[~out_mask], ("mean", "std"))
    row += [float((~out_mask[:EDGE]).sum()), float(out_mask[:EDGE].sum()),
            float((~out_mask[-EDGE:]).sum()) if n else 0.0, float(out_mask[-EDGE:].sum()) if n else 0.0]
    conc = np.add.reduceat(out_mask.astype(float), np.arange(0, n, CHUNK)) if n else np.zeros(0)
    row += _stats(conc, ("std", "mean", "median", "max"))
    rate = per_second(times)
    row += _stats(rate.astype(float), ("mean", "std", "median", "min", "max"))
    if burst_pkts is None or burst_bytes is None:
        burst_pkts, burst_bytes = bursts(sizes.astype(int).tolist())
    bp, bb = np.asarray(burst_pkts, dtype=float), np.asarray(burst_bytes, dtype=float)
    for sign in (1, -1):
        pk, by = np.abs(bp[np.sign(bp) == sign]), np.abs(bb[np.sign(bb) == sign])
        row += [float(len(pk))] + _stats(pk, ("max", "mean"))
        row += [float((pk > k).sum()) for k in BURST_OVER]
        row += _stats(by, ("max", "mean"))
    row += _part_sums(conc, ALT_CONC_PARTS)
    row += _part_sums(rate, ALT_RATE_PARTS)
    return np.asarray(row, dtype=float)


class KfpFeatures(TransformerMixin, BaseEstimator):
    """k-FP's statistics of each capture's packet sequence (:data:`KFP_FEATURE_NAMES`).

    No parameters; nothing is learned from the data (``fit`` sets
    ``feature_names_``). Applies to packet traces as well as captures.
    """

    def fit(self, X: Sequence[Any], y: Any = None) -> "KfpFeatures":
        self.feature_names_ = list(KFP_FEATURE_NAMES)
        return self

    def transform(self, X: Sequence[Any]) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        rows = []
        for x in X:
            r = as_record(x)
            rows.append(kfp_vector(np.asarray(r.seq_times_us, dtype=np.int64) / 1e6, np.asarray(r.seq_sizes),
                                   r.burst_pkts, r.burst_bytes))
        return np.asarray(rows, dtype=float).reshape(len(rows), len(KFP_FEATURE_NAMES))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        return np.asarray(self.feature_names_, dtype=object)
