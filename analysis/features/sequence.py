"""The device's packet sequence: reading it, showing it, and the ``sequence`` feature set.

Every TCP packet between the device and a server, in capture order, as (time,
signed size, direction): the size is the IP total length, positive from the
device to a server (direction ``1``), negative from a server to the device
(``-1``), the convention of the website-fingerprinting literature (the device
is the client). Bursts are runs of packets in one direction. The sequence is
kept in every :class:`~echolab.analysis.features.sets.CaptureRecord` (so it is
cached with the other features) and is what the sequence sets read:

* ``sequence`` - :class:`SequenceFeatures`: the first ``length`` signed sizes,
  zero-padded (the input of the deep model, ``echolab.analysis.compare.deep``);
* ``kfp`` - :class:`~echolab.analysis.features.kfp.KfpFeatures` (k-FP);
* ``cumul`` - :class:`~echolab.analysis.features.cumul.CumulFeatures` (CUMUL).

:func:`read_sequence` reads only the sequence from a capture (one pass with
the capture reader, no tcptrace state): what a sequence set costs on its own.
"""

from __future__ import annotations

from array import array
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from echolab.analysis.features.sets import SEQUENCE_SETS, CaptureRecord, FeatureError, as_record
from echolab.captures.reader import T_DST, T_IP_LEN, T_SRC, T_TS, CaptureError, ReadStats, iter_tcp, parse_addr


def sequence_of(record: Any) -> tuple[np.ndarray, np.ndarray]:
    """(times in seconds since the first packet, signed sizes in bytes) of a record's packet sequence."""
    record = as_record(record)
    return (np.asarray(record.seq_times_us, dtype=np.int64) / 1e6, np.asarray(record.seq_sizes, dtype=np.int64))


def sequence_rows(record: Any) -> list[dict[str, Any]]:
    """The sequence as ``time,size,direction`` rows (time in seconds, rounded to the microsecond)."""
    record = as_record(record)
    return [{"time": round(t / 1e6, 6), "size": int(s), "direction": 1 if s > 0 else -1}
            for t, s in zip(record.seq_times_us, record.seq_sizes)]


def read_sequence(path: Path | str, device_ip: str) -> tuple[array, array]:
    """(times in microseconds since the first packet, signed sizes) of the device's TCP packets in *path*.

    Raises :class:`FeatureError` for a capture that cannot be read or has no
    TCP packet of *device_ip*.
    """
    try:
        device = parse_addr(device_ip)
    except ValueError as exc:
        raise FeatureError(f"device IP {device_ip!r} is not an IP address") from exc
    times, sizes = array("q"), array("l")
    add_time, add_size = times.append, sizes.append
    stats = ReadStats()
    try:
        for pkt in iter_tcp(path, stats):
            src, dst = pkt[T_SRC], pkt[T_DST]
            if dst == device and src != device:
                add_time(pkt[T_TS])
                add_size(-pkt[T_IP_LEN])
            elif src == device and dst != device:
                add_time(pkt[T_TS])
                add_size(pkt[T_IP_LEN])
    except CaptureError as exc:
        raise FeatureError(str(exc)) from exc
    if stats.truncated_file:
        raise FeatureError(f"capture is damaged or cut short after {stats.records} records")
    if not sizes:
        raise FeatureError(f"no TCP packets of the device {device_ip} in the capture")
    t0 = times[0]
    return array("q", (t - t0 for t in times)), sizes


def sequence_feature_names(length: int) -> list[str]:
    """``bi_seq_0000_bytes`` ...: the signed size of each position (at least four digits)."""
    width = max(4, len(str(length - 1)))
    return [f"bi_seq_{i:0{width}d}_bytes" for i in range(length)]


def _check_positive(name: str, value: Any) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class SequenceFeatures(TransformerMixin, BaseEstimator):
    """The first ``length`` signed packet sizes of each capture (bytes; 0 past its end).

    Parameters: ``length`` (500 packets: an Echo request and its answer are
    about 150 to 300; Deep Fingerprinting used 5,000 Tor cells). Nothing is
    learned from the data; ``fit`` checks the parameter and sets ``feature_names_``.
    """

    def __init__(self, length: int = 500):
        self.length = length

    def fit(self, X: Sequence[Any], y: Any = None) -> "SequenceFeatures":
        _check_positive("length", self.length)
        self.feature_names_ = sequence_feature_names(self.length)
        return self

    def transform(self, X: Sequence[Any]) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        out = np.zeros((len(X), self.length), dtype=float)
        for i, x in enumerate(X):
            sizes = as_record(x).seq_sizes[: self.length]
            out[i, : len(sizes)] = sizes
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        return np.asarray(self.feature_names_, dtype=object)


def make_sequence_transformer(set_name: str, **options: Any) -> BaseEstimator:
    """An unfitted transformer of a sequence set: "sequence" (``length``), "kfp" (none), "cumul" (``points``)."""
    from echolab.analysis.features.cumul import CumulFeatures
    from echolab.analysis.features.kfp import KfpFeatures

    classes = {"sequence": SequenceFeatures, "kfp": KfpFeatures, "cumul": CumulFeatures}
    if set_name not in classes:
        raise FeatureError(f"unknown sequence set {set_name!r}; choose from {', '.join(SEQUENCE_SETS)}")
    cls = classes[set_name]
    known = set(cls().get_params())
    unknown = sorted(set(options) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "no options"
        raise FeatureError(f"the {set_name} set has no option(s) {', '.join(unknown)} (it takes {takes})")
    return cls(**options)


def describe_sequence(record: CaptureRecord) -> dict[str, float]:
    """Every kfp and cumul feature of one record by name."""
    out: dict[str, float] = {}
    for set_name in ("kfp", "cumul"):
        transformer = make_sequence_transformer(set_name).fit([record])
        out.update(zip(transformer.feature_names_, transformer.transform([record])[0].tolist()))
    return out
