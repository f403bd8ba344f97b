"""Running trials: on the local cores with joblib, or on a Dask cluster.

Each :class:`TrialTask` is self-contained (matrix, labels, split, model), so it
can run in another process or on another machine. Local work uses processes with
one BLAS thread each and one grid search per task; given a scheduler address (or
a ``distributed.Client``), tasks go to the cluster and each matrix is scattered
once. :func:`compute` runs a run's missing trials and stores each as it
completes.
"""

from __future__ import annotations

import ctypes
import os
import platform
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from echolab.analysis.compare.grids import ModelSpec
from echolab.analysis.compare.keys import PlannedTrial
from echolab.analysis.compare.matrices import FeatureMatrix, build_matrix
from echolab.analysis.compare.sources import DataSource
from echolab.analysis.compare.specs import AnalysisError, RunSettings
from echolab.analysis.compare.storage import ResultWriter
from echolab.analysis.compare.trials import Split, TrialOutcome, run_trial
from echolab.progress import ProgressCallback, notify


@dataclass
class TrialTask:
    """One unit of work, self-contained so it can run in another process or on a cluster."""

    key: str
    feature_key: str
    model: ModelSpec
    split: Split
    X: Any  # np.ndarray, or a Dask future of one
    y: Any
    classes: list[str]
    seed: int
    cv_folds: int
    names: list[str] | None = None  # the columns of a matrix built for this trial alone (features fit on train)
    monitored: tuple[str, ...] = ()  # an open-world trial's monitored classes (openeval.py)
    target: str = ""  # and what its threshold is chosen for


def execute(task: TrialTask) -> tuple[str, TrialOutcome]:
    """Run one task with one BLAS thread (the parallelism is across tasks)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        if task.monitored:
            from echolab.analysis.compare.openeval import run_open_trial

            outcome = run_open_trial(task.X, task.y, task.split, task.model, task.monitored, seed=task.seed,
                                     cv_folds=task.cv_folds, target=task.target)
        else:
            outcome = run_trial(task.X, task.y, task.split, task.model, task.classes, seed=task.seed,
                                cv_folds=task.cv_folds)
    if task.names is not None:  # importances are aligned by these names in the summary
        outcome.feature_names = list(task.names)
    return task.key, outcome


#: glibc's ``mallopt`` parameters (malloc.h): M_TRIM_THRESHOLD and M_MMAP_THRESHOLD.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_allocator: Any = None  # glibc, once this process has been told to keep freed memory; False: not glibc


def keep_freed_memory() -> bool:
    """Let this process's C allocator keep freed memory for reuse; True where it could (glibc).

    A grid search frees and allocates arrays of about a megabyte every mini-batch of the MLP. In a
    comparison's worker process glibc gave such blocks back to the system and took them anew, page by
    page: an MLP trial on the demo's combined set took 370,000 page faults and 1 s of system time in
    6.3 s, and a whole 100-trial protocol 102 million faults and 304 s of system time. Raised thresholds
    (blocks under 32 MiB, glibc's largest, come from the heap, and the heap keeps up to 256 MiB it no
    longer uses) take the faults away: the same trial took 5.7 s. Only :func:`execute_in_worker` calls
    it, in worker processes of a local run, and gives the memory back after each trial.
    """
    global _allocator
    if _allocator is None:
        _allocator = False
        if platform.libc_ver()[0] == "glibc":
            libc = ctypes.CDLL(None)  # the C library this process already runs on
            libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            mmap = libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
            trim = libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20)
            _allocator = libc if mmap == 1 and trim == 1 else False  # mallopt returns 1 on success
    return bool(_allocator)


def execute_in_worker(task: TrialTask, caller: int) -> tuple[str, TrialOutcome]:
    """:func:`execute` in a worker process of a local run, its allocator told to keep freed memory.

    *caller* is the process id of the run's own process: a joblib backend that runs the task there
    (threads, or one process) leaves its allocator alone. The memory kept during the trial is given
    back after it (``malloc_trim``), so a worker that joblib keeps for later work holds none.
    """
    if os.getpid() == caller or not keep_freed_memory():
        return execute(task)
    try:
        return execute(task)
    finally:
        _allocator.malloc_trim(0)


def _execute_args(key: str, feature_key: str, model: ModelSpec, split: Split, X: np.ndarray, y: np.ndarray,
                  classes: list[str], seed: int, cv_folds: int, names: list[str] | None = None,
                  monitored: tuple[str, ...] = (), target: str = "") -> tuple[str, TrialOutcome]:
    return execute(TrialTask(key, feature_key, model, split, X, y, classes, seed, cv_folds, names, monitored, target))


def default_jobs() -> int:
    return max(1, os.cpu_count() or 1)


#: Seconds one trial of each study model takes in one worker on the demo's 780 captures (mean over the three
#: feature sets, bench/results/bench_analysis_780_quiet.json): the schedule's estimate until a run has measured
#: its own.
PRIOR_SECONDS = {"mlp": 4.2, "random_forest": 3.6, "svm_rbf": 1.25, "knn": 0.35, "svm_linear": 0.36,
                 "decision_tree": 0.05}


def estimated_cost(plan: PlannedTrial, measured: Mapping[tuple[str, str], float] | None = None) -> float:
    """Seconds *plan* should take: what its feature set and model took in this run's stored trials, else the prior."""
    seen = (measured or {}).get((plan.feature.key, plan.model.name))
    return seen if seen is not None else PRIOR_SECONDS.get(plan.model.name, 1.0)


def schedule(todo: Sequence[PlannedTrial], measured: Mapping[tuple[str, str], float] | None = None
             ) -> list[PlannedTrial]:
    """Longest first (by :func:`estimated_cost`), trial order among equals.

    Workers take the next task as each finishes, so with the longest tasks first
    the last ones to start are the shortest, and no core waits long at the end
    while another finishes a forest (Graham's LPT rule).
    """
    return sorted(todo, key=lambda p: (-estimated_cost(p, measured), p.split.trial))


def measured_costs(rows: Iterable[Any]) -> dict[tuple[str, str], float]:
    """Mean seconds per (feature set, model) of stored trial results (``TrialResult`` rows)."""
    sums: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        if row.seconds:
            sums.setdefault((row.feature_set, row.model), []).append(float(row.seconds))
    return {k: sum(v) / len(v) for k, v in sums.items()}


def trial_tasks(src: DataSource, settings: RunSettings, classes: list[str], todo: Sequence[PlannedTrial],
                matrices: dict[str, FeatureMatrix], measured: Mapping[tuple[str, str], float] | None = None,
                ) -> Iterator[TrialTask]:
    """Tasks longest first (:func:`schedule`); per-trial matrices are built lazily when features fit on train."""
    per_trial: dict[tuple[int, str], FeatureMatrix] = {}
    for key, feature, spec, split in schedule(todo, measured):
        names = None
        if settings.fit_features_on == "train":
            built = per_trial.get((split.trial, feature.key))
            if built is None:
                built = per_trial[(split.trial, feature.key)] = build_matrix(src, feature, fit_rows=split.train)
            X, names = built.X, built.names
        else:
            X = matrices[feature.key].X
        if settings.adapt != "none":
            from echolab.analysis.compare.adapt import adapt_matrix

            X = adapt_matrix(X, src.groupings.get(settings.adapt_by), settings.adapt, split.test)
        yield TrialTask(key, feature.key, spec, split, X, src.y, classes, settings.seed, settings.cv_folds, names,
                        tuple(settings.monitored), settings.threshold_target)


def compute(catalog: Any, src: DataSource, settings: RunSettings, classes: list[str], todo: Sequence[PlannedTrial],
            matrices: dict[str, FeatureMatrix], *, jobs: int | None, cluster: Any,
            progress: ProgressCallback | None, on_trial: Callable[[str, TrialOutcome], None] | None,
            commit_every: int, measured: Mapping[tuple[str, str], float] | None = None) -> int:
    """Run the trials of *todo*, longest first, store each in *catalog* as it completes; return how many ran.

    *measured*: seconds per (feature set, model) already measured (:func:`measured_costs`), for the schedule.
    """
    if not todo:
        return 0
    meta = {p.key: (p.feature.key, p.model.name, p.split.trial) for p in todo}
    tasks = trial_tasks(src, settings, classes, todo, matrices, measured)
    results = run_dask(tasks, cluster) if cluster is not None else run_local(tasks, jobs or default_jobs())
    writer = ResultWriter(catalog, commit_every)
    n = 0
    notify(progress, "trials", 0, len(todo))
    try:
        for key, outcome in results:
            feature_key, model_name, trial = meta[key]
            writer.add(key, feature_key, model_name, trial, outcome)
            n += 1
            notify(progress, "trials", n, len(todo))
            if on_trial is not None:
                on_trial(key, outcome)
    finally:
        writer.flush()
        close = getattr(results, "close", None)
        if close is not None:
            close()
    return n


def run_local(tasks: Iterator[TrialTask], jobs: int) -> Iterator[tuple[str, TrialOutcome]]:
    """Results as they complete, from *jobs* worker processes (1: in this process)."""
    if jobs == 1:
        return (execute(t) for t in tasks)
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=jobs, return_as="generator_unordered", pre_dispatch="2*n_jobs", batch_size=1)
    caller = os.getpid()
    return iter(parallel(delayed(execute_in_worker)(t, caller) for t in tasks))


def run_dask(tasks: Iterator[TrialTask], cluster: Any) -> Iterator[tuple[str, TrialOutcome]]:
    """Submit every task to a Dask cluster; each data matrix is scattered once."""
    try:
        from distributed import Client, as_completed
    except ImportError as exc:  # pragma: no cover - dask is a dependency
        raise AnalysisError("--cluster needs dask.distributed: pip install 'dask[distributed]'") from exc
    own = not hasattr(cluster, "submit")
    try:
        client = Client(cluster, timeout="20s") if own else cluster
    except (OSError, TimeoutError) as exc:
        raise AnalysisError(f"cannot reach the Dask scheduler at {cluster}: {exc}") from exc

    def generate() -> Iterator[tuple[str, TrialOutcome]]:
        scattered: dict[int, Any] = {}
        futures = []
        try:
            for t in tasks:
                for attr in ("X", "y"):
                    arr = getattr(t, attr)
                    if id(arr) not in scattered:
                        scattered[id(arr)] = (arr, client.scatter(arr, broadcast=True))
                    setattr(t, attr, scattered[id(arr)][1])
                futures.append(client.submit(
                    _execute_args, t.key, t.feature_key, t.model, t.split, t.X, t.y, t.classes, t.seed,
                    t.cv_folds, t.names, t.monitored, t.target, key=f"trial-{t.key}", pure=False,
                ))
            for future in as_completed(futures):
                yield future.result()
        finally:
            for f in futures:
                f.cancel()
            if own:
                client.close()

    return generate()
