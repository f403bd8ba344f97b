"""Trial keys and the plan of a run: which trials it holds and the content hash naming each.

A trial's key hashes everything that determines its numbers: the data set
fingerprint, the feature set configuration, the model's estimator and grid, the
trial index, the seed and the protocol settings. Finished trials are stored in
the catalog under their key, so an unchanged trial is never computed twice.
"""

from __future__ import annotations

import hashlib
import json
from typing import NamedTuple

import sklearn

from echolab.analysis.compare.grids import ModelSpec
from echolab.analysis.compare.sources import DataSource
from echolab.analysis.compare.specs import FeatureSpec, RunSettings
from echolab.analysis.compare.trials import PROTOCOL_VERSION, Split, campaign_splits, random_splits


class PlannedTrial(NamedTuple):
    """One trial of one model on one feature set, and the key of its result."""

    key: str
    feature: FeatureSpec
    model: ModelSpec
    split: Split


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
        "sklearn": ".".join(sklearn.__version__.split(".")[:2]),
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


def plan_splits(src: DataSource, settings: RunSettings) -> tuple[list[Split], dict[int, str]]:
    """The run's splits, and per trial the token of its split mode that goes into the key."""
    if settings.split_by == "campaign":
        splits = campaign_splits(src.groups)
        token = src.groups_fingerprint()
        return splits, {s.trial: f"campaign:{token}:{s.test_group}" for s in splits}
    splits = random_splits(src.y, settings.trials, settings.seed, settings.test_size)
    return splits, {s.trial: "random" for s in splits}


def plan_trials(src: DataSource, settings: RunSettings, specs: list[ModelSpec], fingerprint: str) -> list[PlannedTrial]:
    """Every trial of the run, feature set by feature set, model by model, trial by trial."""
    splits, split_tokens = plan_splits(src, settings)
    plan: list[PlannedTrial] = []
    for feature in settings.features:
        for spec in specs:
            for split in splits:
                key = trial_key(
                    fingerprint=fingerprint, feature=feature, fit_features_on=settings.fit_features_on,
                    model=spec, trial=split.trial, settings=settings, split_token=split_tokens[split.trial],
                )
                plan.append(PlannedTrial(key, feature, spec, split))
    return plan
