"""Run the classifier comparison: plan trials, reuse cached ones, compute the rest in parallel.

The unit of work is one *trial* of one *model* on one *feature set*. Each has a
content key (:func:`trial_key`): a hash of the data set fingerprint, the
feature set configuration, the model's estimator and grid, the trial index, the
seed and the protocol settings. Finished trials are stored in the catalog
(``TrialResult``) under that key as they complete, so

* rerunning an unchanged analysis computes nothing;
* an interrupted run resumes where it stopped;
* adding a model (or a feature set) computes only that one.

Feature matrices are computed once per feature set configuration and shared by
every model and trial (by default what the transformers learn, such as
histogram bin edges, is learned over the whole data set, as in the study; with
``fit_features_on="train"`` it is learned on each trial's training part only).

Work runs on the local cores with joblib (processes, one BLAS thread each, one
grid search per task) or, given a scheduler address, on a Dask cluster.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import sklearn
from sklearn.base import BaseEstimator, TransformerMixin
from sqlalchemy import select

from echolab.analysis.compare import stats
from echolab.analysis.features.sets import FEATURE_SETS
from echolab.analysis.compare.grids import ModelSpec, load_grids, select_models
from echolab.analysis.compare.splits import SPLIT_MODES, plan_grouped, plural, random_splits
from echolab.analysis.compare.trials import PROTOCOL_VERSION, Split, TrialOutcome, run_trial
from echolab.db.models import AnalysisRun, TrialResult, utcnow
from echolab.errors import EcholabError
from echolab.prompts.classes import STUDY_CLASSES

FIT_SCOPES = ("all", "train")


class AnalysisError(EcholabError):
    """An analysis cannot be planned or run as asked."""


class AnalysisInterrupted(AnalysisError):
    """The run was stopped; finished trials are kept and a rerun resumes."""


# -- feature set configurations -------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSpec:
    """One feature set configuration: a set name and its options.

    Written ``histogram`` or ``histogram:bins=25,include_acks=true`` on the
    command line; :attr:`key` is the canonical form used in reports and keys.
    """

    set_name: str
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, set_name: str, **options: Any) -> "FeatureSpec":
        return cls(set_name, tuple(sorted(options.items())))

    @classmethod
    def parse(cls, text: str) -> "FeatureSpec":
        name, _, rest = text.strip().partition(":")
        if not name:
            raise AnalysisError(f"empty feature set in {text!r}; write e.g. histogram:bins=25")
        options: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = part.partition("=")
            if not eq:
                raise AnalysisError(f"feature option {part!r} in {text!r} is not KEY=VALUE")
            options[key.strip()] = _parse_value(value.strip())
        return cls.of(name, **options)

    @property
    def key(self) -> str:
        if not self.options:
            return self.set_name
        opts = ",".join(f"{k}={_format_value(v)}" for k, v in self.options)
        return f"{self.set_name}[{opts}]"

    @property
    def option_dict(self) -> dict[str, Any]:
        return dict(self.options)


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "+".join(str(v) for v in value)
    return str(value)


def study_features() -> tuple[FeatureSpec, ...]:
    """The study's three feature sets with their default options (Table II)."""
    return tuple(FeatureSpec.of(name) for name in FEATURE_SETS)


def bins_sweep(bins: Iterable[int] = (5, 10, 15, 25, 50, 100, 200), acks: Iterable[bool] = (True, False)) -> tuple[FeatureSpec, ...]:
    """The histogram set over bin counts, with and without ACKs (the study's Table I)."""
    return tuple(FeatureSpec.of("histogram", bins=int(b), include_acks=bool(a)) for b in bins for a in acks)


#: The study's feature-group ablations (random forest results in its text), by name.
#: The option names are those of ``echolab.analysis.features.make_transformer``.
ABLATIONS: dict[str, FeatureSpec] = {
    "window_advertisement": FeatureSpec.of("window"),
    "data_amount": FeatureSpec.of("data_amount"),
    "size_histogram": FeatureSpec.of("size_hist"),
    "interarrival_histogram": FeatureSpec.of("iat_hist"),
}


def ablation_features() -> tuple[FeatureSpec, ...]:
    """The feature-group ablations: window advertisement, data amount, each histogram alone."""
    return tuple(ABLATIONS.values())


# -- the data -------------------------------------------------------------------------------


TransformerFactory = Callable[..., Any]


@dataclass
class DataSource:
    """What an analysis reads: per-capture records, labels, campaigns and identities.

    ``groupings`` holds each capture's group under every grouping of
    ``splits.GROUPINGS`` the source knows (``campaign`` at least, from
    ``groups``); ``provenance`` says where the data came from
    (:mod:`echolab.analysis.compare.provenance`); ``extraction`` names what
    turned captures into records (extractor version, device address per
    capture), part of every trial's cache key.

    ``records`` are whatever ``make_transformer(set_name, **options)``'s
    transformers take (the catalog's data set, or synthetic rows). The source is
    put in a canonical order (by capture hash) so that the same captures give the
    same trial splits however the catalog returned them.
    """

    records: Sequence[Any]
    y: np.ndarray
    groups: np.ndarray
    sha256s: list[str]
    capture_ids: list[int | None]
    make_transformer: TransformerFactory
    description: str = ""
    notes: list[str] = field(default_factory=list)
    groupings: dict[str, np.ndarray] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    extraction: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.y = np.asarray(self.y).astype(str)
        self.groups = np.asarray(self.groups).astype(str)
        self.groupings = {k: np.asarray(v).astype(str) for k, v in self.groupings.items()}
        self.groupings.setdefault("campaign", self.groups)
        if any(len(v) != len(self.y) for v in self.groupings.values()):
            raise AnalysisError("a grouping differs in length from the labels")
        n = len(self.y)
        if not (len(self.records) == len(self.groups) == len(self.sha256s) == len(self.capture_ids) == n):
            raise AnalysisError("records, labels, campaigns and hashes differ in length")

    def canonical(self) -> "DataSource":
        order = sorted(range(len(self.y)), key=lambda i: (self.sha256s[i], self.y[i]))
        idx = np.asarray(order, dtype=int)
        return replace(
            self,
            records=_take(self.records, idx),
            y=self.y[idx],
            groups=self.groups[idx],
            sha256s=[self.sha256s[i] for i in order],
            capture_ids=[self.capture_ids[i] for i in order],
            groupings={k: v[idx] for k, v in self.groupings.items()},
            extraction=[self.extraction[i] for i in order] if self.extraction else [],
        )

    def fingerprint(self) -> str:
        """A hash of the sorted (capture sha256, label) pairs: what the data set is."""
        h = hashlib.sha256()
        for sha, label in sorted(zip(self.sha256s, self.y.tolist())):
            h.update(f"{sha}\t{label}\n".encode())
        return h.hexdigest()

    def groups_fingerprint(self, grouping: str = "campaign") -> str:
        h = hashlib.sha256()
        for sha, group in sorted(zip(self.sha256s, self.groupings[grouping].tolist())):
            h.update(f"{sha}\t{group}\n".encode())
        return h.hexdigest()

    def extraction_fingerprint(self) -> str:
        """A hash of what made each record: (capture sha256, extractor version and device address) pairs."""
        h = hashlib.sha256()
        for sha, how in sorted(zip(self.sha256s, self.extraction or [""] * len(self.sha256s))):
            h.update(f"{sha}\t{how}\n".encode())
        return h.hexdigest()

    def classes(self) -> list[str]:
        present = set(self.y.tolist())
        ordered = [c for c in STUDY_CLASSES if c in present]
        return ordered + sorted(present - set(ordered))


def _take(records: Sequence[Any], idx: np.ndarray) -> Sequence[Any]:
    if isinstance(records, np.ndarray):
        return records[idx]
    return [records[int(i)] for i in idx]


def catalog_source(catalog: Any, *, device_ip: str | None = None, progress: bool = True) -> DataSource:
    """The catalog's good captures, through the feature extraction of ``echolab.analysis.features.sets``."""
    from echolab.analysis.compare import provenance
    from echolab.analysis.compare.splits import capture_groups
    from echolab.analysis.features import sets as features

    ds = features.load_dataset(catalog, device_ip=device_ip, progress=progress)
    if len(ds.y) == 0:
        raise AnalysisError("the catalog has no usable captures to analyse; collect or import some first")
    by_id = {c.id: c for c in catalog.captures()}
    used = [by_id[i] for i in ds.capture_ids]
    return DataSource(
        records=ds.records,
        y=np.asarray(ds.y),
        groups=np.asarray(ds.campaigns),
        sha256s=list(ds.sha256s),
        capture_ids=list(ds.capture_ids),
        make_transformer=features.make_transformer,
        description=f"catalog {getattr(catalog.lab, 'root', '')}",
        notes=_skipped_notes(getattr(ds, "skipped", [])),
        groupings={k: np.asarray(v) for k, v in capture_groups(used).items()},
        provenance=provenance.of_captures(used),
        extraction=[f"{r.version}@{r.device_ip}" for r in ds.records],
    )


def _skipped_notes(skipped: Sequence[tuple[int, str]]) -> list[str]:
    if not skipped:
        return []
    shown = "; ".join(f"capture {cid}: {why}" for cid, why in list(skipped)[:10])
    more = f" (and {len(skipped) - 10} more)" if len(skipped) > 10 else ""
    return [f"{len(skipped)} unusable captures left out: {shown}{more}"]


# Synthetic data: stands in for real features while developing, and in tests and benches.

_SYNTH_BLOCKS = {"tcptrace": (0, 22), "histogram": (22, 52), "combined": (0, 52),
                 # stand-ins for the ablations: a few tcptrace columns, one histogram each
                 "window": (0, 3), "data_amount": (3, 7), "size_hist": (22, 37), "iat_hist": (37, 52)}


class SyntheticColumns(BaseEstimator, TransformerMixin):
    """Selects a synthetic feature set's columns out of a 52-column record."""

    def __init__(self, set_name: str = "combined"):
        self.set_name = set_name

    def fit(self, X: Any, y: Any = None) -> "SyntheticColumns":
        if self.set_name not in _SYNTH_BLOCKS:
            raise AnalysisError(f"unknown feature set {self.set_name!r}; choose one of {', '.join(_SYNTH_BLOCKS)}")
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        lo, hi = _SYNTH_BLOCKS[self.set_name]
        return np.asarray(X, dtype=float)[:, lo:hi]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        lo, hi = _SYNTH_BLOCKS[self.set_name]
        return np.asarray([("tcp_" if i < 22 else "hist_") + f"{i:02d}" for i in range(lo, hi)], dtype=object)


def synthetic_transformer(set_name: str, **options: Any) -> SyntheticColumns:
    """``make_transformer`` of the synthetic source (options such as bins are ignored)."""
    return SyntheticColumns(set_name)


def synthetic_source(
    n_per_class: int = 130,
    *,
    classes: Sequence[str] = STUDY_CLASSES,
    campaigns: int = 1,
    seed: int = 0,
    separation: float = 1.0,
    session_effect: float = 0.0,
) -> DataSource:
    """Synthetic feature rows to try the toolkit on: 52 columns (22 "tcptrace" + 30 "histogram"), no captures.

    Each block has a few informative directions in which every class has a
    random centre (spread *separation*, in units of the noise), correlated
    copies of them and noise columns, in arbitrary units. Both blocks get the
    same separation, and nothing is tuned toward any published accuracy: what
    the classifiers score here says how they handle this geometry, nothing
    about Echo traffic.

    Captures go to *campaigns* round robin, and each campaign records each
    class in a session of its own (groupings ``campaign`` and ``session``), as
    a lab that collects one class at a time does. *session_effect* > 0 gives
    every session a random offset of that spread in every column, a signature
    its rows share: the confound under which random splits overstate accuracy.
    """
    rng = np.random.default_rng(seed)
    k = len(classes)
    y = np.repeat(np.asarray(classes), n_per_class)
    labels = np.repeat(np.arange(k), n_per_class)
    campaign_of = np.arange(len(y)) % campaigns
    session_of = campaign_of * k + labels
    blocks = []
    for width, n_inf in ((22, 6), (30, 8)):
        centers = rng.normal(0.0, separation, size=(k, n_inf))
        inf = centers[labels] + rng.normal(0.0, 1.0, size=(len(y), n_inf))
        mix = rng.normal(0.0, 1.0, size=(n_inf, width - n_inf)) / np.sqrt(n_inf)
        rest = inf @ mix + rng.normal(0.0, 0.7, size=(len(y), width - n_inf))
        block = np.hstack([inf, rest])
        if session_effect > 0:
            block = block + rng.normal(0.0, session_effect, size=(campaigns * k, width))[session_of]
        blocks.append(block * rng.uniform(0.5, 50.0, size=width) + rng.uniform(-5, 5, size=width))
    X = np.hstack(blocks)
    groups = np.asarray([f"synthetic-{c + 1}" for c in campaign_of])
    sessions = np.asarray([f"synthetic-{c + 1} {label}" for c, label in zip(campaign_of, y)])
    shas = [hashlib.sha256(row.tobytes() + str(i).encode()).hexdigest() for i, row in enumerate(X)]
    from echolab.analysis.compare import provenance

    return DataSource(
        records=X,
        y=y,
        groups=groups,
        sha256s=shas,
        capture_ids=[None] * len(y),
        make_transformer=synthetic_transformer,
        description=f"synthetic ({len(y)} rows x 52 columns, seed {seed}, separation {separation:g}"
                    + (f", session effect {session_effect:g})" if session_effect else ")"),
        notes=["synthetic data: feature options (bins, ACKs, ablations) do not apply"],
        groupings={"campaign": groups, "session": sessions},
        provenance=provenance.synthetic_rows(len(y), seed),
    )


# -- settings and keys ----------------------------------------------------------------------


@dataclass(frozen=True)
class RunSettings:
    """Everything that defines an analysis run's numbers (besides the data)."""

    features: tuple[FeatureSpec, ...] = field(default_factory=study_features)
    models: tuple[str, ...] = ()  # empty: every model of the grids file
    trials: int = 100
    seed: int = 0
    test_size: float = 0.2
    cv_folds: int = 3
    split_by: str = "random"  # or a grouping of splits.GROUPINGS
    fit_features_on: str = "all"
    grids_path: str | None = None
    leakage_check: bool = True

    def check(self) -> None:
        if self.split_by not in SPLIT_MODES:
            raise AnalysisError(f"--split-by must be one of {', '.join(SPLIT_MODES)}, not {self.split_by!r}")
        if self.fit_features_on not in FIT_SCOPES:
            raise AnalysisError(f"fit_features_on must be one of {', '.join(FIT_SCOPES)}")
        if not self.features:
            raise AnalysisError("no feature sets to analyse")
        if self.trials < 1:
            raise AnalysisError("--trials must be at least 1")
        if not 0 < self.test_size < 1:
            raise AnalysisError("test_size must be between 0 and 1")
        if self.cv_folds < 2:
            raise AnalysisError("cv_folds must be at least 2")


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
    feature_params: dict[str, Any] | None = None,
) -> str:
    """The content hash that names one trial's result in the cache.

    It holds everything that changes a result: the data (captures and labels),
    how the records were extracted (*extraction*: the extractor version and the
    device address of every capture), the feature set with every option of its
    transformer, defaults included (*feature_params*), the model and its grid,
    the split, the protocol version and the versions of the numeric libraries.
    """
    payload = {
        "protocol": PROTOCOL_VERSION,
        "libraries": numeric_versions(),
        "data": fingerprint,
        "extraction": extraction,
        "features": feature.key,
        "feature_params": feature_params or {},
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


# -- the work -------------------------------------------------------------------------------


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


def execute(task: TrialTask) -> tuple[str, TrialOutcome]:
    """Run one task with one BLAS thread (the parallelism is across tasks)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        outcome = run_trial(task.X, task.y, task.split, task.model, task.classes, seed=task.seed, cv_folds=task.cv_folds)
    if task.names is not None:
        outcome.feature_names = list(task.names)
    return task.key, outcome


def _execute_args(key: str, feature_key: str, model: ModelSpec, split: Split, X: np.ndarray, y: np.ndarray,
                  classes: list[str], seed: int, cv_folds: int, names: list[str] | None = None,
                  ) -> tuple[str, TrialOutcome]:
    return execute(TrialTask(key, feature_key, model, split, X, y, classes, seed, cv_folds, names))


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
    fit_records = source.records if fit_rows is None else _take(source.records, fit_rows)
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


@dataclass
class RunResult:
    """What :func:`run_analysis` did: the stored run and how much it computed."""

    run: AnalysisRun
    computed: int
    cached: int
    seconds: float

    @property
    def name(self) -> str:
        return self.run.name


def default_jobs() -> int:
    return max(1, os.cpu_count() or 1)


def run_analysis(
    catalog: Any,
    source: DataSource,
    settings: RunSettings | None = None,
    *,
    name: str | None = None,
    jobs: int | None = None,
    cluster: Any = None,
    progress: bool = True,
    on_trial: Callable[[str, TrialOutcome], None] | None = None,
    commit_every: int = 20,
) -> RunResult:
    """Run (or resume) an analysis and store it in *catalog* as an ``AnalysisRun``.

    *catalog* is an open ``echolab.db.catalog.Catalog``. *jobs* local worker processes
    (default: every core; 1 runs in this process), or *cluster*: a Dask
    scheduler address or ``distributed.Client``. *on_trial* is called after
    each newly computed trial (after it is queued for storage). Ctrl-C (or an
    exception from *on_trial*) keeps the finished trials, marks the run
    ``interrupted`` and raises :class:`AnalysisInterrupted`.
    """
    settings = settings or RunSettings()
    settings.check()
    started = time.perf_counter()
    specs = select_models(load_grids(settings.grids_path), list(settings.models))
    settings = replace(settings, features=normalize_features(source, settings.features))
    src = source.canonical()
    classes = src.classes()
    fingerprint = src.fingerprint()
    splits, split_tokens = _plan_splits(src, settings)
    # Corrected resampled t-tests where trials resample (random or grouped 80/20), not when one group is left out.
    test_fraction = settings.test_size if all(s.test_group is None for s in splits) else None

    # Whole-data matrices come first: a bad feature option fails before a run is recorded, and
    # the summary needs their column names even when every trial is cached.
    matrices = {feature.key: build_matrix(src, feature) for feature in settings.features}
    run = _open_run(catalog, name, settings, specs, src, fingerprint, cluster)
    extraction = src.extraction_fingerprint()
    plan: list[tuple[str, FeatureSpec, ModelSpec, Split]] = []
    for feature in settings.features:
        for spec in specs:
            for split in splits:
                key = trial_key(
                    fingerprint=fingerprint, feature=feature, fit_features_on=settings.fit_features_on,
                    model=spec, trial=split.trial, settings=settings, split_token=split_tokens[split.trial],
                    extraction=extraction, feature_params=matrices[feature.key].info.get("params", {}),
                )
                plan.append((key, feature, spec, split))
    done = _cached_keys(catalog, [p[0] for p in plan])
    todo = [p for p in plan if p[0] not in done]

    computed = 0
    try:
        computed = _compute(catalog, src, settings, classes, todo, matrices, jobs, cluster, progress, on_trial,
                            commit_every)
    except KeyboardInterrupt as exc:
        with catalog.transaction():
            run.status = "interrupted"
        n_done = len(done) + _count_cached(catalog, [p[0] for p in todo])
        raise AnalysisInterrupted(
            f"run {run.name!r} interrupted after {n_done} of {len(plan)} trials; "
            f"finished trials are kept: rerun the same command to resume"
        ) from exc
    except BaseException:
        with catalog.transaction():
            run.status = "failed"
        raise

    rows = _rows_by_key(catalog, [p[0] for p in plan])
    summary = summarize(plan, rows, src, classes, matrices, specs, settings, test_fraction)
    summary["split"] = _split_summary(splits, settings)
    if settings.leakage_check:
        summary["leakage"] = leakage_summary(src, matrices, settings)
    summary["timing"] = {"computed": computed, "cached": len(plan) - computed,
                         "wall_seconds": time.perf_counter() - started}
    with catalog.transaction():
        run.summary = summary
        run.status = "done"
        run.finished_at = utcnow()
    return RunResult(run, computed, len(plan) - computed, time.perf_counter() - started)


def leakage_summary(src: DataSource, matrices: dict[str, FeatureMatrix], settings: RunSettings) -> dict[str, Any]:
    """The leakage check (:mod:`.leakage`) on the combined set (else the first), for the report."""
    from echolab.analysis.compare import leakage

    key = "combined" if "combined" in matrices else next(iter(matrices))
    result = leakage.check(matrices[key].X, src.y, src.groupings, feature=key, seed=settings.seed,
                           test_size=settings.test_size, cv_folds=settings.cv_folds)
    return {**result.to_json(), "line": result.line(), "figures": result.figures()}


def _split_summary(splits: Sequence[Split], settings: RunSettings) -> dict[str, Any]:
    """How the trials split the data, and the classes grouped trials were evaluated on."""
    out: dict[str, Any] = {"by": settings.split_by, "trials": len(splits),
                           "leave_one_out": any(s.test_group is not None for s in splits)}
    dropped = sorted({c for s in splits for c in s.dropped})
    if dropped:
        out["dropped"] = dropped
        out["per_trial"] = [{"trial": s.trial, "test_group": s.test_group, "classes": list(s.classes or ()),
                             "dropped": list(s.dropped)} for s in splits]
    return out


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


def _plan_splits(src: DataSource, settings: RunSettings) -> tuple[list[Split], dict[int, str]]:
    by = settings.split_by
    if by != "random":
        if by not in src.groupings:
            raise AnalysisError(f"--split-by {by}: this data does not record {plural(by)} "
                                f"(it has {', '.join(sorted(src.groupings))})")
        splits = plan_grouped(src.y, src.groupings[by], by, trials=settings.trials, seed=settings.seed,
                              test_size=settings.test_size, cv_folds=settings.cv_folds)
        token = src.groups_fingerprint(by)
        return splits, {s.trial: f"{by}:{token}:{s.test_group or f'shuffled {settings.test_size}'}" for s in splits}
    splits = random_splits(src.y, settings.trials, settings.seed, settings.test_size, settings.cv_folds)
    return splits, {s.trial: "random" for s in splits}


def _open_run(catalog: Any, name: str | None, settings: RunSettings, specs: list[ModelSpec], src: DataSource,
              fingerprint: str, cluster: Any) -> AnalysisRun:
    name = name or datetime.now().strftime("run-%Y%m%d-%H%M%S")
    stored_settings = {
        "features": [{"key": f.key, "set": f.set_name, "options": f.option_dict} for f in settings.features],
        "models": [s.name for s in specs],
        "grids": {s.name: {"label": s.label, "short": s.short, **s.canonical()} for s in specs},
        "grids_path": settings.grids_path,
        "trials": settings.trials,
        "seed": settings.seed,
        "test_size": settings.test_size,
        "cv_folds": settings.cv_folds,
        "split_by": settings.split_by,
        "fit_features_on": settings.fit_features_on,
        "data": src.description,
        "data_notes": src.notes,
        "provenance": src.provenance,
        "groupings": {k: len(set(v.tolist())) for k, v in src.groupings.items()},
        "cluster": None if cluster is None else str(getattr(cluster, "scheduler_address", None) or cluster),
    }
    with catalog.transaction() as s:
        run = s.scalar(select(AnalysisRun).where(AnalysisRun.name == name))
        if run is None:
            run = AnalysisRun(name=name)
            s.add(run)
        run.settings = stored_settings
        run.fingerprint = fingerprint
        run.capture_ids = [c for c in src.capture_ids if c is not None]
        run.versions = library_versions(with_dask=cluster is not None)
        run.status = "running"
        run.finished_at = None
    return run


def numeric_versions() -> dict[str, str]:
    """The versions of the libraries a trial's numbers depend on (in every cache key)."""
    import scipy

    return {"scikit-learn": sklearn.__version__, "numpy": np.__version__, "scipy": scipy.__version__}


def library_versions(*, with_dask: bool = False) -> dict[str, str]:
    import joblib
    import scipy

    from echolab import __version__

    out = {
        "python": platform.python_version(),
        "echolab": __version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "joblib": joblib.__version__,
    }
    if with_dask:
        import dask
        import distributed

        out["dask"] = dask.__version__
        out["distributed"] = distributed.__version__
    return out


def _chunks(items: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _cached_keys(catalog: Any, keys: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(keys):
        found.update(catalog.session.scalars(select(TrialResult.key).where(TrialResult.key.in_(chunk))))
    return found


def _count_cached(catalog: Any, keys: Sequence[str]) -> int:
    return len(_cached_keys(catalog, keys))


def _rows_by_key(catalog: Any, keys: Sequence[str]) -> dict[str, TrialResult]:
    rows: dict[str, TrialResult] = {}
    for chunk in _chunks(keys):
        for row in catalog.session.scalars(select(TrialResult).where(TrialResult.key.in_(chunk))):
            rows[row.key] = row
    return rows


def _tasks(src: DataSource, settings: RunSettings, classes: list[str],
           todo: list[tuple[str, FeatureSpec, ModelSpec, Split]],
           matrices: dict[str, FeatureMatrix]) -> Iterator[TrialTask]:
    """Tasks in trial-major order; per-trial matrices are built lazily when features fit on train."""
    per_trial: dict[str, FeatureMatrix] = {}
    current = -1
    for key, feature, spec, split in sorted(todo, key=lambda p: (p[3].trial, _cost_rank(p[2]))):
        names = None
        if settings.fit_features_on == "train":
            if split.trial != current:
                per_trial, current = {}, split.trial
            if feature.key not in per_trial:
                per_trial[feature.key] = build_matrix(src, feature, fit_rows=split.train)
            X, names = per_trial[feature.key].X, per_trial[feature.key].names
        else:
            X = matrices[feature.key].X
        yield TrialTask(key, feature.key, spec, split, X, src.y, classes, settings.seed, settings.cv_folds, names)


def _cost_rank(spec: ModelSpec) -> int:
    """Slow models first within a trial, so the last tasks of a run are short ones."""
    order = {"random_forest": 0, "mlp": 1, "svm_rbf": 2, "svm_linear": 3}
    return order.get(spec.name, 4)


def _compute(catalog: Any, src: DataSource, settings: RunSettings, classes: list[str],
             todo: list[tuple[str, FeatureSpec, ModelSpec, Split]], matrices: dict[str, FeatureMatrix],
             jobs: int | None, cluster: Any, progress: bool,
             on_trial: Callable[[str, TrialOutcome], None] | None, commit_every: int) -> int:
    if not todo:
        return 0
    meta = {p[0]: (p[1].key, p[2].name, p[3].trial) for p in todo}
    tasks = _tasks(src, settings, classes, todo, matrices)
    if cluster is not None:
        results = _run_dask(tasks, cluster)
    else:
        results = _run_local(tasks, jobs or default_jobs())
    writer = _BatchWriter(catalog, commit_every)
    bar = _progress(progress, len(todo))
    n = 0
    try:
        for key, outcome in results:
            feature_key, model_name, trial = meta[key]
            writer.add(key, feature_key, model_name, trial, outcome)
            n += 1
            if bar is not None:
                bar[0].update(bar[1], advance=1, description=f"{feature_key} {model_name} #{trial}")
            if on_trial is not None:
                on_trial(key, outcome)
    finally:
        writer.flush()
        if bar is not None:
            bar[0].stop()
        close = getattr(results, "close", None)
        if close is not None:
            close()
    return n


def _run_local(tasks: Iterator[TrialTask], jobs: int) -> Iterator[tuple[str, TrialOutcome]]:
    if jobs == 1:
        return (execute(t) for t in tasks)
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=jobs, return_as="generator_unordered", pre_dispatch="2*n_jobs", batch_size=1)
    return iter(parallel(delayed(execute)(t) for t in tasks))


def _run_dask(tasks: Iterator[TrialTask], cluster: Any) -> Iterator[tuple[str, TrialOutcome]]:
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
                    t.cv_folds, t.names, key=f"trial-{t.key}", pure=False,
                ))
            for future in as_completed(futures):
                yield future.result()
        finally:
            for f in futures:
                f.cancel()
            if own:
                client.close()

    return generate()


class _BatchWriter:
    """Stores trial results in batches (one transaction per *every* results)."""

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
        known = _cached_keys(self.catalog, [r.key for r in self.pending])
        with self.catalog.transaction() as s:
            s.add_all([r for r in self.pending if r.key not in known])
        self.pending = []
        self.last = time.monotonic()


def _progress(enabled: bool, total: int) -> tuple[Any, Any] | None:
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn("[bold]trials[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), TextColumn("{task.description}"))
    bar.start()
    return bar, bar.add_task("", total=total)


# -- the summary ----------------------------------------------------------------------------


def summarize(plan: list[tuple[str, FeatureSpec, ModelSpec, Split]], rows: dict[str, TrialResult],
              src: DataSource, classes: list[str], matrices: dict[str, FeatureMatrix], specs: list[ModelSpec],
              settings: RunSettings, test_fraction: float | None) -> dict[str, Any]:
    """Everything the report needs, as JSON (stored in ``AnalysisRun.summary``)."""
    cells: dict[str, dict[str, Any]] = {}
    by_cell: dict[tuple[str, str], list[TrialResult]] = {}
    for key, feature, spec, _split in plan:
        if key in rows:
            by_cell.setdefault((feature.key, spec.name), []).append(rows[key])
    for feature in settings.features:
        cells[feature.key] = {}
        for spec in specs:
            trial_rows = sorted(by_cell.get((feature.key, spec.name), []), key=lambda r: r.trial)
            cells[feature.key][spec.name] = _cell(trial_rows, classes, matrices[feature.key].names)
    tests = _tests(cells, settings, specs, test_fraction)
    counts = Counter(src.y.tolist())
    return {
        "classes": classes,
        "class_counts": {c: counts[c] for c in classes},
        "campaigns": dict(sorted(Counter(src.groups.tolist()).items())),
        "class_by_campaign": _crosstab(src),
        "n_captures": int(len(src.y)),
        "features": [
            {"key": f.key, "set": f.set_name, "options": f.option_dict, "n_features": int(matrices[f.key].X.shape[1]),
             "names": matrices[f.key].names, "info": matrices[f.key].info}
            for f in settings.features
        ],
        "models": [{"name": s.name, "label": s.label, "short": s.short, "n_candidates": s.n_candidates()}
                   for s in specs],
        "cells": cells,
        "tests": tests,
    }


def _crosstab(src: DataSource) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for g, label in zip(src.groups.tolist(), src.y.tolist()):
        out.setdefault(g, {}).setdefault(label, 0)
        out[g][label] += 1
    return dict(sorted(out.items()))


def _cell(rows: list[TrialResult], classes: list[str], names: Sequence[str] = ()) -> dict[str, Any]:
    acc = [r.accuracy for r in rows]
    f1 = [r.f1_macro or 0.0 for r in rows]
    d = stats.describe(acc)
    cell: dict[str, Any] = {
        "n": d.n, "mean": d.mean, "std": d.std, "median": d.median, "min": d.min, "max": d.max,
        "f1_mean": stats.describe(f1).mean, "f1_std": stats.describe(f1).std,
        "accuracies": acc, "f1": f1, "trials": [r.trial for r in rows],
        "seconds": float(sum(r.seconds or 0.0 for r in rows)),
        "convergence_warnings": int(sum(int(r.result.get("convergence_warnings", 0)) for r in rows)),
    }
    if rows:
        conf = np.asarray([r.result["confusion"] for r in rows], dtype=float)
        cell["confusion_mean"] = conf.mean(axis=0).tolist()
        chosen: dict[str, Counter[str]] = {}
        for r in rows:  # ties counted as ties ("sqrt = log2 (same model)"), not as the first of them
            choice = r.result.get("choice") or {p: json.dumps(v) if isinstance(v, list) else str(v)
                                                for p, v in r.best_params.items()}
            for p, v in choice.items():
                chosen.setdefault(p, Counter())[v] += 1
        cell["params_chosen"] = {p: dict(c.most_common()) for p, c in chosen.items()}
        arr = aligned_importances(rows, names)
        if arr is not None:
            cell["importances_mean"] = arr.mean(axis=0).tolist()
            cell["importances_std"] = arr.std(axis=0).tolist()
        groups = [r.result.get("test_group") for r in rows]
        if any(groups):
            cell["test_groups"] = groups
    return cell


def aligned_importances(rows: Sequence[TrialResult], names: Sequence[str]) -> np.ndarray | None:
    """Trials x columns of *names*: each trial's importances placed by column name.

    With features fit on each trial's training part, trials drop different
    constant columns, so their importance vectors differ in length and order;
    a column a trial dropped had no part in its model and counts 0 there.
    Without per-trial names, a trial's importances are in *names*' order.
    """
    index = {n: i for i, n in enumerate(names)}
    out = []
    for r in rows:
        imp = r.result.get("importances")
        if not imp:
            continue
        cols = r.result.get("feature_names") or list(names)
        if len(cols) != len(imp):
            raise AnalysisError(f"trial {r.trial} of {r.feature_set} {r.model}: {len(imp)} importances for "
                                f"{len(cols)} columns")
        row = np.zeros(len(names))
        for name, value in zip(cols, imp):
            if name not in index:
                raise AnalysisError(f"trial {r.trial} of {r.feature_set} {r.model} has a column {name!r} that the "
                                    f"whole data set does not")
            row[index[name]] = value
        out.append(row)
    return np.asarray(out) if out else None


def _tests(cells: dict[str, dict[str, Any]], settings: RunSettings, specs: list[ModelSpec],
           test_fraction: float | None) -> dict[str, Any]:
    between_models = {}
    best_models = {}
    for fkey, by_model in cells.items():
        series = {m: c["accuracies"] for m, c in by_model.items() if c["n"] and len(c["accuracies"]) == _n(by_model)}
        between_models[fkey] = [t.to_json() for t in stats.all_pairs(series, test_fraction=test_fraction)]
        best_models[fkey] = [t.to_json() for t in stats.best_vs_rest(series, test_fraction=test_fraction)]
    between_features = {}
    for spec in specs:
        series = {f: cells[f][spec.name]["accuracies"] for f in cells if cells[f][spec.name]["n"]}
        lengths = {len(v) for v in series.values()}
        if len(lengths) == 1:
            between_features[spec.name] = [t.to_json() for t in stats.all_pairs(series, test_fraction=test_fraction)]
    return {"between_models": between_models, "best_model": best_models, "between_features": between_features,
            "test_fraction": test_fraction}


def _n(by_model: dict[str, Any]) -> int:
    return max((c["n"] for c in by_model.values()), default=0)


# -- reading runs back ----------------------------------------------------------------------


def list_runs(catalog: Any) -> list[AnalysisRun]:
    """Every stored analysis run, newest first."""
    return list(catalog.session.scalars(select(AnalysisRun).order_by(AnalysisRun.created_at.desc(), AnalysisRun.id.desc())))


def get_run(catalog: Any, name_or_id: str | int) -> AnalysisRun:
    """A stored run by name or id; :class:`AnalysisError` says how to list them when absent."""
    s = catalog.session
    run = s.scalar(select(AnalysisRun).where(AnalysisRun.name == str(name_or_id)))
    if run is None and str(name_or_id).isdigit():
        run = s.get(AnalysisRun, int(name_or_id))
    if run is None:
        raise AnalysisError(f"no analysis run {name_or_id!r}; 'echolab analyze ls' lists them")
    return run
