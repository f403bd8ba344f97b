"""Feature matrices: a feature set's transformer fitted on a source and applied to every row.

Matrices are computed once per feature set configuration and shared by every
model and trial of a run (with ``fit_features_on="train"``, once per trial on its
training rows). What the transformer learned (dropped columns, histogram edges)
is kept beside the matrix so that the stored run can show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from echolab.analysis.compare.sources import DataSource, take
from echolab.analysis.compare.specs import AnalysisError, FeatureSpec


@dataclass
class FeatureMatrix:
    """A feature set's matrix over the whole (canonical) data set, and its column names."""

    spec: FeatureSpec
    X: np.ndarray
    names: list[str]
    info: dict[str, Any] = field(default_factory=dict)


def build_matrix(source: DataSource, spec: FeatureSpec, fit_rows: np.ndarray | None = None) -> FeatureMatrix:
    """Fit the feature set's transformer (on *fit_rows*, default all) and transform every row."""
    try:
        transformer = source.make_transformer(spec.set_name, **spec.option_dict)
    except TypeError as exc:
        raise AnalysisError(f"feature set {spec.key}: {exc}") from exc
    fit_records = source.records if fit_rows is None else take(source.records, fit_rows)
    fit_y = source.y if fit_rows is None else source.y[fit_rows]
    transformer.fit(fit_records, fit_y)
    X = np.asarray(transformer.transform(source.records), dtype=float)
    if X.ndim != 2 or X.shape[0] != len(source.y):
        raise AnalysisError(f"feature set {spec.key} produced a matrix of shape {X.shape}")
    try:
        names = [str(n) for n in transformer.get_feature_names_out()]
    except (AttributeError, TypeError, ValueError):
        names = [f"f{i}" for i in range(X.shape[1])]
    info = _learned(transformer)
    info["params"] = {k: _jsonable(v) for k, v in transformer.get_params(deep=False).items()}
    return FeatureMatrix(spec, X, names, info)


def normalize_features(source: DataSource, features: Sequence[FeatureSpec]) -> tuple[FeatureSpec, ...]:
    """Drop options equal to the transformer's defaults, then duplicates.

    ``histogram:bins=15,include_acks=false`` is the plain ``histogram`` set, so
    it shares its cache entries and is computed once.
    """
    out: list[FeatureSpec] = []
    for spec in features:
        try:
            defaults = source.make_transformer(spec.set_name).get_params()
        except Exception:  # an unknown set fails later with the transformer's own message
            defaults = {}
        kept = {k: v for k, v in spec.options if not (k in defaults and defaults[k] == v)}
        norm = FeatureSpec.of(spec.set_name, **kept)
        if norm not in out:
            out.append(norm)
    return tuple(out)


def _learned(transformer: Any) -> dict[str, Any]:
    """What the transformer learned that a reader should see: dropped columns, histogram edges."""
    info: dict[str, Any] = {}
    parts = [transformer] + [getattr(transformer, a) for a in ("tcptrace_", "histogram_") if hasattr(transformer, a)]
    for part in parts:
        for attr in ("dropped_features_", "size_edges_", "iat_edges_"):
            value = getattr(part, attr, None)
            if value is not None:
                info[attr.rstrip("_")] = _jsonable(value)
    return info


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
