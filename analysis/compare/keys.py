"""Trial keys and the plan of a run: which trials it holds and the content hash naming each.

A trial's key hashes everything that determines its numbers: the data set
fingerprint, the feature set configuration, the model's estimator and grid, the
trial index, the seed and the protocol settings. Finished trials are stored in
the catalog under their key, so an unchanged trial is never computed twice.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib.metadata import version
from typing import NamedTuple

from echolab.analysis.compare.grids import ModelSpec
from echolab.analysis.compare.sources import DataSource
from echolab.analysis.compare.specs import FeatureSpec, RunSettings
from echolab.analysis.compare.trials import PROTOCOL_VERSION, Split, campaign_splits, random_splits


class PlannedTrial(NamedTuple):
    """One trial of one model on one feature set, and the key of its result."""

    key: str
    feature: FeatureSpec
    model: ModelSpec
    trial: int


def trial_key(
    *,
    fingerprint: str,
    feature: FeatureSpec,
    fit_features_on: str,
    model: ModelSpec,
    trial: int,
    settings: RunSettings,
    split_token: str,
) -> str:
    """The content hash that names one trial's result in the cache."""
    payload = {
        "protocol": PROTOCOL_VERSION,
        "sklearn": _sklearn_minor(),
        "data": fingerprint,
        "features": feature.key,
        "fit_features_on": fit_features_on,
        "model": model.canonical(),
        "trial": trial,
        "seed": settings.seed,
        "test_size": settings.test_size,
        "cv_folds": settings.cv_folds,
        "split": split_token,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@lru_cache(maxsize=1)
def _sklearn_minor() -> str:
    """scikit-learn's major.minor version, from its metadata (importing it takes a second)."""
    return ".".join(version("scikit-learn").split(".")[:2])


def split_tokens(src: DataSource, settings: RunSettings) -> dict[int, str]:
    """Each trial's index and the token of its split that goes into its key (no split is computed:
    a rerun finds its trials in the cache without drawing them)."""
    if settings.split_by == "campaign":
        token = src.groups_fingerprint()
        return {t: f"campaign:{token}:{name}" for t, name in enumerate(sorted(set(src.groups.tolist())))}
    return {t: "random" for t in range(settings.trials)}


def make_splits(src: DataSource, settings: RunSettings) -> dict[int, Split]:
    """The run's splits by trial index (checked: enough captures per class, or campaigns)."""
    if settings.split_by == "campaign":
        splits = campaign_splits(src.groups)
    else:
        splits = random_splits(src.y, settings.trials, settings.seed, settings.test_size)
    return {s.trial: s for s in splits}


def plan_trials(src: DataSource, settings: RunSettings, specs: list[ModelSpec], fingerprint: str) -> list[PlannedTrial]:
    """Every trial of the run, feature set by feature set, model by model, trial by trial."""
    tokens = split_tokens(src, settings)
    plan: list[PlannedTrial] = []
    for feature in settings.features:
        for spec in specs:
            for trial, token in tokens.items():
                key = trial_key(
                    fingerprint=fingerprint, feature=feature, fit_features_on=settings.fit_features_on,
                    model=spec, trial=trial, settings=settings, split_token=token,
                )
                plan.append(PlannedTrial(key, feature, spec, trial))
    return plan
