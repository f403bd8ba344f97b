"""A stored comparison run of any size, for tests and benches of the report: real summary code, made-up trials.

:func:`scaled_run` makes an ``AnalysisRun`` (not added to any catalog) whose
summary comes from the comparison's own :func:`~echolab.analysis.compare.summary.summarize`
over made-up trial results: per trial, a test part drawn from the classes'
counts, each capture predicted right with the trial's accuracy and otherwise
as a random other class. The report reads nothing else, so a 150-class,
1,000-capture run costs a second to make instead of hours of training.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Sequence

import numpy as np

from echolab.analysis.compare.grids import load_grids, select_models
from echolab.analysis.compare.keys import PlannedTrial
from echolab.analysis.compare.matrices import FeatureMatrix
from echolab.analysis.compare.sources import DataSource
from echolab.analysis.compare.specs import FeatureSpec, RunSettings
from echolab.analysis.compare.storage import library_versions, stored_settings
from echolab.analysis.compare.summary import split_summary, summarize
from echolab.analysis.compare.trials import Split
from echolab.db.records import AnalysisRun, TrialResult


def class_names(n: int) -> list[str]:
    """*n* command-like class names (``command_000_until_christmas`` ...)."""
    return [f"command_{i:03d}_until_christmas" for i in range(n)]


def scaled_run(n_classes: int = 150, n_captures: int = 1000, *, trials: int = 5, classes: Sequence[str] | None = None,
               features: Sequence[str] = ("tcptrace", "histogram", "combined"), campaigns: int = 2,
               seed: int = 0, name: str = "scaled") -> AnalysisRun:
    """A finished run of the default models on *features* over *n_captures* of *n_classes* classes."""
    rng = np.random.default_rng(seed)
    names = list(classes) if classes is not None else class_names(n_classes)
    y = np.asarray([names[i % len(names)] for i in range(n_captures)])
    groups = np.asarray([f"home-{(i // len(names)) % campaigns}" for i in range(n_captures)])
    src = DataSource(records=np.zeros((n_captures, 1)), y=y, groups=groups,
                     sha256s=[f"{i:064x}" for i in range(n_captures)], capture_ids=list(range(1, n_captures + 1)),
                     make_transformer=lambda *a, **k: None, description="made-up trials (tests/reports.py)")
    specs = select_models(load_grids(check=False), [])
    settings = RunSettings(features=tuple(FeatureSpec.parse(f) for f in features), trials=trials, seed=seed)
    n_cols = {"tcptrace": 29, "histogram": 30, "combined": 59}
    matrices = {f.key: FeatureMatrix(f, np.zeros((1, n_cols.get(f.set_name, 20))),
                                     [f"{f.set_name}_col{i}" for i in range(n_cols.get(f.set_name, 20))])
                for f in settings.features}
    plan: list[PlannedTrial] = []
    rows: dict[str, TrialResult] = {}
    n_test = max(len(names), n_captures // 5)
    for feature in settings.features:
        for m, spec in enumerate(specs):
            skill = 0.45 + 0.08 * m
            for t in range(trials):
                key = f"{feature.key}/{spec.name}/{t}"
                split = Split(t, np.arange(n_captures - n_test), np.arange(n_captures - n_test, n_captures))
                plan.append(PlannedTrial(key, feature, spec, split))
                truth = rng.integers(0, len(names), n_test)
                right = rng.random(n_test) < skill
                guess = np.where(right, truth, rng.integers(0, len(names), n_test))
                confusion = np.zeros((len(names), len(names)), dtype=int)
                np.add.at(confusion, (truth, guess), 1)
                result: dict[str, Any] = {"confusion": confusion.tolist(), "choice": {"C": str(10 ** (t % 3))}}
                if spec.name == "random_forest":
                    result["importances"] = rng.dirichlet(np.ones(matrices[feature.key].X.shape[1])).tolist()
                rows[key] = TrialResult(key=key, feature_set=feature.key, model=spec.name, trial=t,
                                        accuracy=float(right.mean()), f1_macro=float(right.mean()) * 0.95,
                                        best_params={"C": 10 ** (t % 3)}, result=result, seconds=0.5)
    summary = summarize(plan, rows, src, names, matrices, specs, settings, settings.test_size)
    summary["split"] = split_summary([p.split for p in plan[:trials]], settings)
    summary["timing"] = {"computed": len(plan), "cached": 0, "wall_seconds": 1.0}
    now = datetime.now(timezone.utc)
    return AnalysisRun(name=name, status="done", created_at=now, finished_at=now,
                       settings=stored_settings(settings, specs, src, None), fingerprint="0" * 64,
                       capture_ids=list(range(1, n_captures + 1)), versions=library_versions(), summary=summary)
