"""Trial keys and the plan of a run: which trials it holds and the content hash naming each.

A trial's key hashes everything that determines its numbers: the data set
fingerprint, how its records were extracted (extractor version, device address),
the feature set configuration with every transformer option (defaults included),
the model's estimator and grid, the split, the trial index, the seed, the
protocol settings and the versions of the numeric libraries. Finished trials are stored in
the catalog under their key, so an unchanged trial is never computed twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any, Mapping, NamedTuple

from echolab.analysis.compare.grids import ModelSpec
from echolab.analysis.compare.sources import DataSource, take
from echolab.analysis.compare.specs import AnalysisError, FeatureSpec, RunSettings
from echolab.analysis.compare.splits import plan_grouped, plural, random_splits
from echolab.analysis.compare.trials import PROTOCOL_VERSION, Split


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
    extraction: str = "",
    feature_params: Mapping[str, Any] | None = None,
) -> str:
    """The content hash that names one trial's result in the cache.

    *extraction* names how the records were made (:meth:`DataSource.extraction_fingerprint`);
    *feature_params* are all the options of the feature set's transformer, defaults
    included, so a changed default is a changed key.
    """
    payload = {
        "protocol": PROTOCOL_VERSION,
        "libraries": numeric_versions(),
        "data": fingerprint,
        "extraction": extraction,
        "features": feature.key,
        "feature_params": dict(feature_params or {}),
        "fit_features_on": fit_features_on,
        "model": model.canonical(),
        "trial": trial,
        "seed": settings.seed,
        "test_size": settings.test_size,
        "cv_folds": settings.cv_folds,
        "split": split_token,
        # Only an adapted run adds its adaptation, so the keys of every earlier run stay valid.
        **({"adapt": settings.adapt, "adapt_by": settings.adapt_by} if settings.adapt != "none" else {}),
    }
    if settings.monitored:  # closed-world keys stay as they were
        payload["open_world"] = {"monitored": sorted(settings.monitored), "target": settings.threshold_target}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def numeric_versions() -> dict[str, str]:
    """The versions of the libraries a trial's numbers depend on (in every key). Read from the installed
    distributions' metadata: importing scikit-learn to ask takes a second."""
    from importlib.metadata import version

    return {name: version(name) for name in ("scikit-learn", "numpy", "scipy")}


def plan_splits(src: DataSource, settings: RunSettings) -> tuple[list[Split], dict[int, str]]:
    """The run's splits, and per trial the token of its split mode that goes into the key."""
    if settings.monitored:
        from echolab.analysis.compare.openeval import open_splits

        closed = replace(settings, monitored=())
        rows: dict[int, str] = {}

        def monitored_splits(mon_rows: Any) -> list[Split]:  # the closed world's splits of the monitored rows
            sub = replace(src, records=take(src.records, mon_rows), y=src.y[mon_rows], groups=src.groups[mon_rows],
                          sha256s=[src.sha256s[i] for i in mon_rows],
                          capture_ids=[src.capture_ids[i] for i in mon_rows],
                          groupings={k: v[mon_rows] for k, v in src.groupings.items()},
                          extraction=[src.extraction[i] for i in mon_rows] if src.extraction else [])
            splits, tokens = plan_splits(sub, closed)
            rows.update(tokens)
            return splits

        splits = open_splits(src.y, settings.monitored, monitored_splits, trials_seed=settings.seed,
                             test_size=settings.test_size, target=settings.threshold_target)
        return splits, {s.trial: f"open:{rows[s.trial]}:held {'+'.join(s.classes or ())}" for s in splits}
    by = settings.split_by
    if by != "random":
        if by not in src.groupings:
            raise AnalysisError(f"--split-by {by}: this data does not record {plural(by)} "
                                f"(it has {', '.join(sorted(src.groupings))})")
        splits = plan_grouped(src.y, src.groupings[by], by, trials=settings.trials, seed=settings.seed,
                              test_size=settings.test_size, cv_folds=settings.cv_folds)
        token = src.groups_fingerprint(by)
        # A trial evaluated on fewer classes than the data holds names them: the same held-out group on
        # another set of classes is another task (and a result cached before the rule changed is not reused).
        return splits, {s.trial: f"{by}:{token}:{s.test_group or f'shuffled {settings.test_size}'}"
                        + (f":on {'+'.join(s.classes or ())}" if s.dropped else "") for s in splits}
    splits = random_splits(src.y, settings.trials, settings.seed, settings.test_size, settings.cv_folds)
    return splits, {s.trial: "random" for s in splits}


def plan_trials(src: DataSource, settings: RunSettings, specs: list[ModelSpec], fingerprint: str,
                feature_params: Mapping[str, Mapping[str, Any]] | None = None,
                splits: tuple[list[Split], dict[int, str]] | None = None) -> list[PlannedTrial]:
    """Every trial of the run, feature set by feature set, model by model, trial by trial.

    *feature_params*: per feature set key, all options of its fitted transformer.
    """
    splits, split_tokens = splits or plan_splits(src, settings)
    extraction = src.extraction_fingerprint()
    plan: list[PlannedTrial] = []
    for feature in settings.features:
        for spec in specs:
            for split in splits:
                key = trial_key(
                    fingerprint=fingerprint, feature=feature, fit_features_on=settings.fit_features_on,
                    model=spec, trial=split.trial, settings=settings, split_token=split_tokens[split.trial],
                    extraction=extraction, feature_params=(feature_params or {}).get(feature.key),
                )
                plan.append(PlannedTrial(key, feature, spec, split))
    return plan
