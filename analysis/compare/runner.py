"""Run the classifier comparison: plan trials, reuse cached ones, compute the rest in parallel.

The unit of work is one *trial* of one *model* on one *feature set*, named by a
content key (:mod:`~echolab.analysis.compare.keys`). Finished trials are stored in
the catalog under that key as they complete, so

* rerunning an unchanged analysis computes nothing;
* an interrupted run resumes where it stopped;
* adding a model (or a feature set) computes only that one.

:func:`run_analysis` only orchestrates; each concern has its module:
``specs`` (what is asked: feature sets, settings), ``sources`` (the data: catalog
or synthetic), ``matrices`` (feature matrices, computed once per feature set
configuration and shared by every model and trial), ``keys`` (trial keys and the
plan), ``execute`` (local cores with joblib, or a Dask cluster), ``storage`` (what
the catalog keeps) and ``summary`` (what the report shows).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable

import numpy as np

from echolab.analysis.compare.grids import check_models, load_grids, select_models
from echolab.errors import require
from echolab.analysis.compare.keys import plan_splits, plan_trials
from echolab.analysis.compare.matrices import build_matrix, normalize_features
from echolab.analysis.compare.sources import DataSource
from echolab.analysis.compare.specs import AnalysisError, RunSettings
from echolab.analysis.compare.storage import library_versions, stored_settings
from echolab.analysis.compare.trials import TrialOutcome
from echolab.db.records import AnalysisRun
from echolab.progress import ProgressCallback


class AnalysisInterrupted(AnalysisError):
    """The run was stopped; finished trials are kept and a rerun resumes."""


@dataclass
class RunResult:
    """What :func:`run_analysis` did: the stored run and how much it computed."""

    run: AnalysisRun
    computed: int
    cached: int
    seconds: float
    #: True when a stored run had exactly these settings, data and library versions and was returned as it is.
    unchanged: bool = False

    @property
    def name(self) -> str:
        return self.run.name


def run_analysis(
    catalog: Any,
    source: DataSource,
    settings: RunSettings | None = None,
    *,
    name: str | None = None,
    jobs: int | None = None,
    cluster: Any = None,
    progress: ProgressCallback | None = None,
    on_trial: Callable[[str, TrialOutcome], None] | None = None,
    commit_every: int = 20,
) -> RunResult:
    """Run (or resume) an analysis and store it in *catalog* as an ``AnalysisRun``.

    *catalog* is an open ``echolab.db.catalog.Catalog``. *jobs* local worker processes
    (default: every core; 1 runs in this process), or *cluster*: a Dask
    scheduler address or ``distributed.Client``. *progress* is called as trials
    complete (``echolab.progress``). *on_trial* is called after each newly
    computed trial (after it is queued for storage). Ctrl-C (or an exception
    from *on_trial*) keeps the finished trials, marks the run ``interrupted``
    and raises :class:`AnalysisInterrupted`.
    """
    settings = settings or RunSettings()
    settings.check()
    started = time.perf_counter()
    if cluster is not None:
        require("distributed", "cluster", "running trials on a Dask cluster (--cluster)")
    grids = load_grids(settings.grids_path, check=False)  # checked below, unless nothing is to be done
    specs = select_models(grids, list(settings.models))
    settings = replace(settings, features=normalize_features(source, settings.features))
    if settings.drop_unsplittable and settings.split_by != "random":
        from echolab.analysis.compare.splits import drop_unsplittable

        source = drop_unsplittable(source, settings.split_by)
    src = source.canonical()
    classes = src.classes()
    if settings.monitored:  # an open-world trial decides between the monitored classes and "unknown"
        from echolab.analysis.compare.openeval import check_monitored, open_world_classes

        check_monitored(classes, settings.monitored)
        all_classes, classes = classes, open_world_classes(settings.monitored)
    fingerprint = src.fingerprint()
    record = {"settings": {**stored_settings(settings, specs, src, cluster), "extraction": src.extraction_fingerprint()},
              "fingerprint": fingerprint, "capture_ids": [c for c in src.capture_ids if c is not None],
              "versions": library_versions(with_dask=cluster is not None)}
    stored = _same_run(catalog, name, record)
    if stored is not None:
        # The stored run finished with exactly these settings, data, extraction and library
        # versions, so every trial key it holds is the one this run would compute: it stays
        # as it is (summary, leakage check, finishing time), and its report need not be redrawn.
        # Without a name, the newest such run is the answer: an unchanged rerun is the same run.
        timing = stored.summary.get("timing", {})
        return RunResult(stored, 0, timing.get("computed", 0) + timing.get("cached", 0),
                         time.perf_counter() - started, unchanged=True)
    check_models(grids.values(), settings.grids_path)
    splits = plan_splits(src, settings)
    # Corrected resampled t-tests where trials resample (random or grouped 80/20), not when one group is left out.
    test_fraction = settings.test_size if all(s.test_group is None for s in splits[0]) else None

    # Whole-data matrices come first: a bad feature option fails before a run is recorded, and
    # the summary needs their column names even when every trial is cached. Every option of
    # their transformers (defaults included) goes into the trial keys.
    matrices = {feature.key: build_matrix(src, feature) for feature in settings.features}
    plan = plan_trials(src, settings, specs, fingerprint,
                       feature_params={k: m.info.get("params", {}) for k, m in matrices.items()}, splits=splits)
    run = catalog.start_analysis_run(name or _fresh_name(catalog), **record)
    done = catalog.stored_trial_keys([p.key for p in plan])
    todo = [p for p in plan if p.key not in done]

    computed = 0
    try:
        if todo:
            from echolab.analysis.compare.execute import compute, measured_costs

            # a resumed run schedules by what its finished trials took
            measured = measured_costs(catalog.trial_results(list(done)).values()) if done else None
            computed = compute(catalog, src, settings, classes, todo, matrices, jobs=jobs, cluster=cluster,
                               progress=progress, on_trial=on_trial, commit_every=commit_every, measured=measured)
    except KeyboardInterrupt as exc:
        catalog.finish_analysis_run(run, "interrupted")
        n_done = len(done) + len(catalog.stored_trial_keys([p.key for p in todo]))
        raise AnalysisInterrupted(
            f"run {run.name!r} interrupted after {n_done} of {len(plan)} trials; "
            f"finished trials are kept: rerun the same command to resume"
        ) from exc
    except BaseException:
        catalog.finish_analysis_run(run, "failed")
        raise

    from echolab.analysis.compare.summary import leakage_summary, split_summary, summarize

    rows = catalog.trial_results([p.key for p in plan])
    summarized = src
    if settings.monitored:  # the data table counts the unmonitored captures as what they should be called
        summarized = replace(src, y=np.where(np.isin(src.y, settings.monitored), src.y, classes[-1]))
    summary = summarize(plan, rows, summarized, classes, matrices, specs, settings, test_fraction)
    summary["split"] = split_summary(splits[0], settings)
    if settings.monitored:
        from echolab.analysis.compare.openeval import open_world_summary

        summary["open_world"] = open_world_summary(plan, rows, settings.monitored, settings.threshold_target,
                                                   all_classes)
    if settings.leakage_check:
        summary["leakage"] = leakage_summary(src, matrices, settings)
    summary["timing"] = {"computed": computed, "cached": len(plan) - computed,
                         "wall_seconds": time.perf_counter() - started}
    catalog.finish_analysis_run(run, "done", summary)
    return RunResult(run, computed, len(plan) - computed, time.perf_counter() - started)


def _fresh_name(catalog: Any) -> str:
    """run-DATE-TIME, with a suffix when a run of that second already holds the name."""
    base = datetime.now().strftime("run-%Y%m%d-%H%M%S")
    name, n = base, 1
    while catalog.analysis_run(name, missing_ok=True) is not None:
        n += 1
        name = f"{base}-{n}"
    return name


def _same_run(catalog: Any, name: str | None, record: dict[str, Any]) -> AnalysisRun | None:
    """The stored run this one would repeat: the one called *name*, or without a name the newest such run."""
    if name is not None:
        stored = catalog.analysis_run(name, missing_ok=True)
        return stored if stored is not None and _unchanged(stored, record) else None
    for run in catalog.analysis_runs():  # newest first
        if run.fingerprint == record["fingerprint"] and _unchanged(run, record):
            return run
    return None


def _unchanged(run: AnalysisRun, record: dict[str, Any]) -> bool:
    """Whether the stored *run* finished with exactly these settings, data and library versions."""
    if run.status != "done" or not run.summary:
        return False
    stored = {"settings": run.settings, "fingerprint": run.fingerprint, "capture_ids": run.capture_ids,
              "versions": run.versions}
    return _json(stored) == _json(record)


def _json(value: Any) -> str:
    """*value* as the catalog's JSON columns hold it (tuples become lists), for comparison."""
    return json.dumps(value, sort_keys=True, default=str)
