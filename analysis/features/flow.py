"""Feature sets that do not depend on framing: the ``flow``, ``volume`` and ``timing`` sets.

Every packet-based set (the study's, k-FP, CUMUL) counts packets or their
sizes, and how a device cuts its bytes into TLS records and records into TCP
segments belongs to the device and its network, not to the request: one
household's Echo sends the same upload in 2.3 times as many packets as
another's. These sets read the device's *byte flow* instead
(:class:`echolab.captures.flow.FlowMeter`: new TCP stream bytes per packet,
retransmissions removed, so the same bytes cut into other packets give the
same flow) and the connection's round trip, and keep a request's two halves
apart:

* the **upload** (``d2s``): the speaker's utterance, the device's bytes from
  its first one until the first silence longer than ``upload_gap_s`` (so the
  report an Echo uploads 8 to 15 s after the answer, which one household's Echo
  sends and another's does not, is not part of it);
* the **answer** (``s2d``): the cloud's reply, the servers' bytes from the
  first upload byte until the first silence longer than ``answer_gap_s``
  (answers pause for 2 to 3 s and go on, so the default is 4 s).

Time starts at the first upload byte (``t0``). The features, and why each
should travel from one household to another:

``volume`` (CUMUL's idea on the clock instead of the packet index; Panchenko
et al., NDSS 2016):
  ``d2s_volume_NN_bytes`` / ``s2d_volume_NN_bytes``: upload / answer bytes sent
  by ``t0 + NN * step_s`` (``points`` of each). The bytes are those of the
  speech and the answer's audio, whatever the framing.

``timing``:
  ``d2s_upload_bytes``, ``d2s_upload_duration_s``, ``d2s_upload_rate_bytes_per_s``:
  the utterance's size, length and the codec's byte rate (a property of the
  words and the speaker, not of the segments);
  ``s2d_answer_bytes``, ``s2d_answer_duration_s``, ``s2d_answer_rate_bytes_per_s``:
  the reply's size (its speech) and length;
  ``s2d_answer_start_s``: from the first upload byte to the first answer byte
  (how long the cloud listens and thinks);
  ``s2d_answer_pauses_count``, ``s2d_answer_pause_max_s``, ``s2d_answer_pause_total_s``:
  silences of at least ``pause_s`` inside the answer (a reply in parts, e.g.
  a fetched result after a first sentence);
  ``bi_rtt_ms``: the round trip itself (a property of the network, so a lab
  can see it beside the others; drop it with ``half``).

The times are *not* counted in round trips. An Echo's request is paced by the
speaker, the codec and the cloud's thinking (seconds), not by the network's
round trip (tens of milliseconds), so a duration divided by the round trip
reads the network: trained on one simulated household and tested on another
with the same speaker, ``timing`` with three such columns
(``*_rtts_count``) scored 91.7% and 97.9% without them (bench/README.md,
"Attacks that travel"). :func:`timing_values` still computes them, for model
files written before.

``flow`` is ``volume`` followed by ``timing``. ``half="upload"`` or
``"answer"`` keeps one half's columns only (``d2s_`` or ``s2d_``), so a lab can
see which half leaks.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from echolab.analysis.features.sets import as_record, require_headers

FLOW_PARTS = {"flow": ("volume", "timing"), "volume": ("volume",), "timing": ("timing",)}
HALVES = ("both", "upload", "answer")

TIMING_FEATURES = (
    "d2s_upload_bytes", "d2s_upload_duration_s", "d2s_upload_rate_bytes_per_s",
    "s2d_answer_bytes", "s2d_answer_duration_s", "s2d_answer_rate_bytes_per_s", "s2d_answer_start_s",
    "s2d_answer_pauses_count", "s2d_answer_pause_max_s", "s2d_answer_pause_total_s", "bi_rtt_ms",
)


def volume_feature_names(points: int) -> list[str]:
    """``d2s_volume_01_bytes`` ... then ``s2d_volume_01_bytes`` ... (position NN is the time NN * step_s)."""
    width = max(2, len(str(points)))
    return [f"{d}_volume_{i:0{width}d}_bytes" for d in ("d2s", "s2d") for i in range(1, points + 1)]


def flow_halves(times_us: np.ndarray, nbytes: np.ndarray, upload_gap_s: float,
                answer_gap_s: float) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(t0 in seconds, upload times, upload bytes, answer times, answer bytes); times in seconds from t0."""
    t = np.asarray(times_us, dtype=np.int64) / 1e6
    b = np.asarray(nbytes, dtype=np.int64)
    up = b > 0
    if not len(t):
        empty = np.zeros(0)
        return 0.0, empty, empty, empty, empty
    t0 = float(t[up][0]) if up.any() else float(t[0])
    ut, ub = _until_gap(t[up] - t0, b[up], upload_gap_s)
    down = ~up & (t >= t0)
    at, ab = _until_gap(t[down] - t0, -b[down], answer_gap_s)
    return t0, ut, ub.astype(float), at, ab.astype(float)


def _until_gap(t: np.ndarray, b: np.ndarray, gap_s: float) -> tuple[np.ndarray, np.ndarray]:
    """The leading run of (t, b) whose successive times are at most *gap_s* apart."""
    if len(t) < 2:
        return t, b
    gaps = np.flatnonzero(np.diff(t) > gap_s)
    end = gaps[0] + 1 if len(gaps) else len(t)
    return t[:end], b[:end]


def timing_values(record: Any, *, pause_s: float = 0.5, upload_gap_s: float = 1.5,
                  answer_gap_s: float = 4.0) -> dict[str, float]:
    """The ``timing`` features of one record, by name (and the retired ``*_rtts_count`` ones, for old model files)."""
    record = as_record(record)
    _t0, ut, ub, at, ab = flow_halves(record.flow_times_us, record.flow_bytes, upload_gap_s, answer_gap_s)
    rtt = record.rtt_us / 1e6
    out: dict[str, float] = {}
    up_dur = float(ut[-1] - ut[0]) if len(ut) else 0.0
    out["d2s_upload_bytes"] = float(ub.sum())
    out["d2s_upload_duration_s"] = up_dur
    out["d2s_upload_rate_bytes_per_s"] = float(ub.sum()) / up_dur if up_dur > 0 else 0.0
    out["d2s_upload_duration_rtts_count"] = up_dur / rtt if rtt else 0.0
    ans_dur = float(at[-1] - at[0]) if len(at) else 0.0
    start = float(at[0]) if len(at) else 0.0
    pauses = np.diff(at) if len(at) > 1 else np.zeros(0)
    pauses = pauses[pauses >= pause_s]
    out["s2d_answer_bytes"] = float(ab.sum())
    out["s2d_answer_duration_s"] = ans_dur
    out["s2d_answer_rate_bytes_per_s"] = float(ab.sum()) / ans_dur if ans_dur > 0 else 0.0
    out["s2d_answer_start_s"] = start
    out["s2d_answer_pauses_count"] = float(len(pauses))
    out["s2d_answer_pause_max_s"] = float(pauses.max()) if len(pauses) else 0.0
    out["s2d_answer_pause_total_s"] = float(pauses.sum())
    out["s2d_answer_start_rtts_count"] = start / rtt if rtt else 0.0
    out["s2d_answer_duration_rtts_count"] = ans_dur / rtt if rtt else 0.0
    out["bi_rtt_ms"] = rtt * 1e3
    return out


def volume_values(record: Any, *, step_s: float = 0.25, points: int = 40, upload_gap_s: float = 1.5,
                  answer_gap_s: float = 4.0) -> np.ndarray:
    """Upload bytes by ``t0 + k * step_s`` for k = 1..points, then answer bytes at the same times."""
    record = as_record(record)
    _t0, ut, ub, at, ab = flow_halves(record.flow_times_us, record.flow_bytes, upload_gap_s, answer_gap_s)
    grid = step_s * np.arange(1, points + 1)
    # Bytes sent by time g: all packets with t <= g (searchsorted side="right").
    up = np.concatenate(([0.0], np.cumsum(ub)))[np.searchsorted(ut, grid + 1e-9, side="right")]
    ans = np.concatenate(([0.0], np.cumsum(ab)))[np.searchsorted(at, grid + 1e-9, side="right")]
    return np.concatenate((up, ans))


class FlowFeatures(TransformerMixin, BaseEstimator):
    """The framing-free sets (``flow``, ``volume``, ``timing``; see the module's docstring).

    Parameters: ``parts`` (which of "volume" and "timing"), ``half`` ("both",
    "upload", "answer"), ``step_s`` and ``points`` (the volume grid: 40 points
    0.25 s apart cover a 10 s request), ``pause_s`` (the shortest silence
    counted as a pause in the answer), ``upload_gap_s`` and ``answer_gap_s``
    (the silences that end each half). Nothing is learned from the data.
    """

    def __init__(self, parts: Sequence[str] = ("volume", "timing"), half: str = "both", step_s: float = 0.25,
                 points: int = 40, pause_s: float = 0.5, upload_gap_s: float = 1.5, answer_gap_s: float = 4.0):
        self.parts = parts
        self.half = half
        self.step_s = step_s
        self.points = points
        self.pause_s = pause_s
        self.upload_gap_s = upload_gap_s
        self.answer_gap_s = answer_gap_s

    def _names(self) -> list[str]:
        names: list[str] = []
        if "volume" in self.parts:
            names += volume_feature_names(self.points)
        if "timing" in self.parts:
            names += list(TIMING_FEATURES)
        if self.half == "upload":
            names = [n for n in names if n.startswith("d2s_")]
        elif self.half == "answer":
            names = [n for n in names if n.startswith("s2d_")]
        return names

    def fit(self, X: Sequence[Any], y: Any = None) -> "FlowFeatures":
        if self.half not in HALVES:
            raise ValueError(f"half must be one of {', '.join(HALVES)}, got {self.half!r}")
        if not self.parts or set(self.parts) - {"volume", "timing"}:
            raise ValueError(f"parts must be 'volume' and/or 'timing', got {self.parts!r}")
        if not isinstance(self.points, (int, np.integer)) or isinstance(self.points, bool) or self.points < 1:
            raise ValueError(f"points must be a positive integer, got {self.points!r}")
        for name in ("step_s", "pause_s", "upload_gap_s", "answer_gap_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        require_headers([as_record(x) for x in X], "flow")
        self.feature_names_ = self._names()
        return self

    def transform(self, X: Sequence[Any]) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        records = [as_record(x) for x in X]
        require_headers(records, "flow")
        rows = []
        for record in records:
            values: dict[str, float] = {}
            if "volume" in self.parts:
                vol = volume_values(record, step_s=self.step_s, points=self.points, upload_gap_s=self.upload_gap_s,
                                    answer_gap_s=self.answer_gap_s)
                values.update(zip(volume_feature_names(self.points), vol.tolist()))
            if "timing" in self.parts:
                values.update(timing_values(record, pause_s=self.pause_s, upload_gap_s=self.upload_gap_s,
                                            answer_gap_s=self.answer_gap_s))
            rows.append([values[n] for n in self.feature_names_])
        return np.asarray(rows, dtype=float).reshape(len(rows), len(self.feature_names_))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        return np.asarray(self.feature_names_, dtype=object)


def make_flow_transformer(set_name: str, **options: Any) -> FlowFeatures:
    """An unfitted transformer of a flow set: "flow", "volume" or "timing" (options: see :class:`FlowFeatures`)."""
    from echolab.analysis.features.sets import FeatureError

    known = set(FlowFeatures().get_params()) - {"parts"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise FeatureError(f"the {set_name} set has no option(s) {', '.join(unknown)} "
                           f"(it takes {', '.join(sorted(known))})")
    return FlowFeatures(parts=FLOW_PARTS[set_name], **options)


def describe_flow(record: Any) -> dict[str, float]:
    """Every ``flow`` feature of one record, by name."""
    transformer = make_flow_transformer("flow").fit([record])
    return dict(zip(transformer.feature_names_, transformer.transform([record])[0].tolist()))
