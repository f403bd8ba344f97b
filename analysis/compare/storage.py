"""What a run keeps in the catalog: its settings and library versions, and its trial results.

The catalog (``echolab.db.catalog.Catalog``) owns the queries; this module
decides what is stored: the run's settings as JSON (:func:`stored_settings`),
the versions of the libraries that computed it (:func:`library_versions`) and
each finished trial, written in batches as trials complete (:class:`ResultWriter`)
so that an interrupted run keeps what it finished.
"""

from __future__ import annotations

import platform
import time
from importlib.metadata import version
from typing import Any

from echolab.analysis.compare.grids import ModelSpec
from echolab.analysis.compare.sources import DataSource
from echolab.analysis.compare.specs import RunSettings
from echolab.analysis.compare.trials import TrialOutcome
from echolab.db.records import TrialResult


def stored_settings(settings: RunSettings, specs: list[ModelSpec], src: DataSource, cluster: Any) -> dict[str, Any]:
    """The run's settings as stored in ``AnalysisRun.settings`` (and shown by the report)."""
    return {
        "features": [{"key": f.key, "set": f.set_name, "options": f.option_dict} for f in settings.features],
        "models": [s.name for s in specs],
        "grids": {s.name: {"label": s.label, "short": s.short, **s.canonical()} for s in specs},
        "grids_path": settings.grids_path,
        "trials": settings.trials,
        "seed": settings.seed,
        "test_size": settings.test_size,
        "cv_folds": settings.cv_folds,
        "split_by": settings.split_by,
        # one-group-out trials on the classes every group holds (a grouped run stored before says nothing)
        **({"grouped_classes": "common"} if settings.split_by != "random" else {}),
        "fit_features_on": settings.fit_features_on,
        "adapt": settings.adapt,
        "adapt_by": settings.adapt_by,
        "data": src.description,
        "data_notes": src.notes,
        "provenance": src.provenance,
        "groupings": {k: len(set(v.tolist())) for k, v in src.groupings.items()},
        "cluster": None if cluster is None else str(getattr(cluster, "scheduler_address", None) or cluster),
        **({"open_world": {"monitored": list(settings.monitored), "target": settings.threshold_target}}
           if settings.monitored else {}),
    }


def library_versions(*, with_dask: bool = False) -> dict[str, str]:
    """The versions of Python and of the libraries behind a run's numbers (from the installed
    distributions' metadata, so none of them is imported)."""
    from echolab import __version__

    out = {"python": platform.python_version(), "echolab": __version__}
    libraries = ["scikit-learn", "numpy", "scipy", "joblib"] + (["dask", "distributed"] if with_dask else [])
    out.update({name: version(name) for name in libraries})
    return out


class ResultWriter:
    """Stores trial results in batches: one transaction per *every* results (or every 10 s)."""

    def __init__(self, catalog: Any, every: int):
        self.catalog = catalog
        self.every = max(1, every)
        self.pending: list[TrialResult] = []
        self.last = time.monotonic()

    def add(self, key: str, feature_key: str, model: str, trial: int, outcome: TrialOutcome) -> None:
        self.pending.append(TrialResult(
            key=key, feature_set=feature_key, model=model, trial=trial, accuracy=outcome.accuracy,
            f1_macro=outcome.f1_macro, best_params=outcome.best_params, result=outcome.to_json(),
            seconds=outcome.seconds,
        ))
        if len(self.pending) >= self.every or time.monotonic() - self.last > 10:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        self.catalog.add_trial_results(self.pending)
        self.pending = []
        self.last = time.monotonic()
