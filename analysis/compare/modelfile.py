"""Trained models as files: fit one model on chosen campaigns, write it, read it back to classify.

The comparison (:mod:`echolab.analysis.compare.runner`) measures accuracy and throws
its fitted models away. A model file keeps one: ``echolab analyze train`` fits a
feature set's transformer, a standard scaler and one classifier of the grids
file on every chosen capture, choosing the classifier's parameters with the
comparison's own grid search (:func:`echolab.analysis.compare.search.grid_search`,
stratified k-fold on all the data, as a trial does on its training part), and
:func:`save_model` writes everything needed to use it later.

A file is a joblib dump of a dict with two parts:

* ``header``: plain data only (format, feature set and options, extractor
  version, classes, the training data's fingerprint, library versions, the
  chosen parameters, what the transformer learned), readable without
  unpickling any echolab or scikit-learn class;
* ``payload``: the :class:`TrainedModel` itself (fitted transformer, scaler
  and classifier), a joblib dump in bytes.

:func:`load_model` reads the header first, so a model that the running
extractor cannot reproduce (another extractor version, a feature set this
echolab does not know) is refused with the reason before anything else is
unpickled; a model written by other library versions loads with a
:class:`ModelVersionWarning`.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from echolab.errors import EcholabError
from echolab.progress import ProgressCallback

#: The file layout; bumped when the header or payload changes shape.
FORMAT = "echolab-model-1"
DEFAULT_MODEL = "random_forest"


class ModelFileError(EcholabError):
    """A model file cannot be written, read or used (wrong format, other extractor, unknown set)."""


class ModelVersionWarning(UserWarning):
    """The model file was written by other library versions; predictions may differ slightly."""


@dataclass
class TrainedModel:
    """One fitted model with its feature pipeline: records -> transformer -> scaler -> classifier."""

    feature_set: str
    feature_options: dict[str, Any]
    extractor_version: str
    model_name: str
    model: dict[str, Any]  # the grids file's canonical table of the model
    best_params: dict[str, Any]
    cv_score: float
    classes: list[str]
    transformer: Any
    scaler: Any
    estimator: Any
    fingerprint: str
    n_captures: int
    campaigns: list[str]
    counts: dict[str, int]
    versions: dict[str, str]
    feature_names: list[str] = field(default_factory=list)
    learned: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    dtype: str = "float64"
    #: The reject option (:mod:`.reject`): threshold, target, monitored classes; empty for none. The header's copy rules.
    reject: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_key(self) -> str:
        from echolab.analysis.compare.specs import FeatureSpec

        return FeatureSpec.of(self.feature_set, **self.feature_options).key

    def matrix(self, records: Sequence[Any]) -> np.ndarray:
        """The scaled feature matrix of *records* (``CaptureRecord`` objects), as the classifier takes it."""
        X = np.asarray(self.transformer.transform(list(records)), dtype=float)
        return self.scaler.transform(X).astype(self.dtype, copy=False)

    def predict(self, records: Sequence[Any]) -> tuple[list[str], list[float | None]]:
        """Predicted class and its probability per record (None for a classifier without probabilities)."""
        if not len(records):
            return [], []
        X = self.matrix(records)
        if self.reject or "unmonitored" in self.classes:  # openworld.UNMONITORED: rejected requests are "unknown"
            from echolab.analysis.compare.reject import predict_with_reject

            return predict_with_reject(self.estimator, X, self.reject)
        labels = [str(v) for v in self.estimator.predict(X)]
        if not hasattr(self.estimator, "predict_proba"):
            return labels, [None] * len(labels)
        proba = self.estimator.predict_proba(X)
        index = {str(c): i for i, c in enumerate(self.estimator.classes_)}
        return labels, [float(proba[r, index[lab]]) for r, lab in enumerate(labels)]

    def header(self) -> dict[str, Any]:
        """The plain-data description written in front of the pickled model."""
        return {
            "format": FORMAT, "feature_set": self.feature_set, "feature_options": dict(self.feature_options),
            "feature_key": self.feature_key, "extractor_version": self.extractor_version,
            "model_name": self.model_name, "model": self.model, "best_params": self.best_params,
            "cv_score": self.cv_score, "classes": list(self.classes), "fingerprint": self.fingerprint,
            "n_captures": self.n_captures, "campaigns": list(self.campaigns), "counts": dict(self.counts),
            "versions": dict(self.versions), "feature_names": list(self.feature_names), "learned": self.learned,
            "created_at": self.created_at, "dtype": self.dtype, "reject": dict(self.reject) or None,
        }


# --------------------------------------------------------------------------- training


def campaign_source(catalog: Any, campaigns: Sequence[str | int] = (), *, device_ip: str | None = None,
                    progress: ProgressCallback | None = None) -> Any:
    """The good captures of the named campaigns (all when none) as a comparison ``DataSource``.

    *progress* is called as captures not yet in the feature cache are read (``echolab.progress``).
    """
    from echolab.analysis.compare.sources import DataSource, catalog_source
    from echolab.analysis.compare.specs import AnalysisError
    from echolab.analysis.features import sets as features

    if not campaigns:
        return catalog_source(catalog, device_ip=device_ip, progress=progress)
    records: list[Any] = []
    y: list[str] = []
    groups: list[str] = []
    shas: list[str] = []
    ids: list[int | None] = []
    for name in campaigns:
        camp = catalog.campaign(name)
        ds = features.load_dataset(catalog, device_ip=device_ip, progress=progress, campaign=camp.id)
        records += ds.records
        y += ds.y.tolist()
        groups += [camp.name] * len(ds)
        shas += ds.sha256s
        ids += ds.capture_ids
    if not y:
        raise AnalysisError(f"campaign(s) {', '.join(map(str, campaigns))} hold no usable captures to train on")
    return DataSource(records=records, y=np.asarray(y), groups=np.asarray(groups), sha256s=shas, capture_ids=ids,
                      make_transformer=features.make_transformer,
                      description=f"campaigns {', '.join(sorted(set(groups)))}")


def train_model(source: Any, feature: str = "combined", model: str = DEFAULT_MODEL, *,
                grids_path: str | Path | None = None, seed: int = 0, cv_folds: int = 3) -> TrainedModel:
    """Fit *feature* (e.g. ``histogram:bins=25``) and the grids file's *model* on all of *source*.

    As one trial of the comparison, but on every row: the transformer and the
    scaler learn on all rows, the grid search scores each candidate by
    stratified *cv_folds*-fold accuracy and refits the best on all rows.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    from echolab.analysis.compare.grids import load_grids, select_models
    from echolab.analysis.compare.matrices import build_matrix, normalize_features
    from echolab.analysis.compare.specs import AnalysisError, FeatureSpec
    from echolab.analysis.compare.storage import library_versions
    from echolab.analysis.compare.search import grid_search
    from echolab.analysis.features.sets import EXTRACTOR_VERSION, FeatureError

    spec = select_models(load_grids(grids_path), [model])[0]
    src = source.canonical()
    try:
        fspec = normalize_features(src, [FeatureSpec.parse(feature)])[0]
        fm = build_matrix(src, fspec)
    except FeatureError as exc:
        raise AnalysisError(f"feature set {feature!r}: {exc}") from exc
    classes = src.classes()
    counts = {c: int((src.y == c).sum()) for c in classes}
    if len(classes) < 2:
        raise AnalysisError(f"training needs at least 2 classes; the data has {', '.join(classes) or 'none'}")
    if min(counts.values()) < cv_folds:
        few = ", ".join(f"{c} {n}" for c, n in counts.items() if n < cv_folds)
        raise AnalysisError(f"every class needs at least {cv_folds} captures for {cv_folds}-fold CV ({few})")
    transformer = src.make_transformer(fspec.set_name, **fspec.option_dict).fit(src.records, src.y)
    scaler = StandardScaler().fit(fm.X)
    X = scaler.transform(fm.X).astype(spec.dtype, copy=False)
    folds = list(StratifiedKFold(n_splits=cv_folds).split(X, src.y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # as a trial: the MLP may stop at max_iter
        search = grid_search(spec.build(random_state=seed), spec.param_grid(), X, src.y, folds)
    return TrainedModel(
        feature_set=fspec.set_name, feature_options=fspec.option_dict, extractor_version=EXTRACTOR_VERSION,
        model_name=spec.name, model=spec.canonical(),
        best_params={k: list(v) if isinstance(v, tuple) else v for k, v in search.best_params.items()},
        cv_score=float(search.best_score), classes=classes, transformer=transformer, scaler=scaler,
        estimator=search.best_estimator, fingerprint=src.fingerprint(), n_captures=len(src.y),
        campaigns=sorted(set(src.groups.tolist())), counts=counts, versions=library_versions(),
        feature_names=fm.names, learned=fm.info, created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        dtype=spec.dtype,
    )


# --------------------------------------------------------------------------- the file


def save_model(model: TrainedModel, path: Path | str) -> Path:
    """Write *model* to *path* (joblib; see the module docstring for the layout)."""
    import joblib

    path = Path(path)
    buf = io.BytesIO()
    joblib.dump(model, buf, compress=3)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        joblib.dump({"header": model.header(), "payload": buf.getvalue()}, tmp)
        tmp.replace(path)
    except OSError as exc:
        raise ModelFileError(f"cannot write the model file {path}: {exc.strerror or exc}") from exc
    return path


def read_header(path: Path | str) -> dict[str, Any]:
    """The plain-data header of a model file (nothing of the model is unpickled)."""
    return _read(Path(path))["header"]


def _read(path: Path) -> dict[str, Any]:
    import joblib

    try:
        data = joblib.load(path)
    except FileNotFoundError as exc:
        raise ModelFileError(f"no model file {path}; write one with 'echolab analyze train'") from exc
    except Exception as exc:  # joblib/pickle raise many kinds for a file that is not theirs
        raise ModelFileError(f"{path} is not an echolab model file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("header"), dict) or "payload" not in data:
        raise ModelFileError(f"{path} is not an echolab model file (write one with 'echolab analyze train')")
    return data


def check_header(header: dict[str, Any], path: Path | str = "model") -> list[str]:
    """Refuse a model the running extractor cannot reproduce; return the version differences (for a warning)."""
    from echolab.analysis.compare.storage import library_versions
    from echolab.analysis.features.sets import EXTRACTOR_VERSION, FeatureError, make_transformer

    if header.get("format") != FORMAT:
        raise ModelFileError(f"{path} is a model file of format {header.get('format')!r}; this echolab reads "
                             f"{FORMAT!r}: train the model again with 'echolab analyze train'")
    if header.get("extractor_version") != EXTRACTOR_VERSION:
        raise ModelFileError(
            f"{path} was trained on features of extractor {header.get('extractor_version')!r}; this echolab "
            f"extracts {EXTRACTOR_VERSION!r}, so its features would not match: train the model again")
    try:
        make_transformer(header["feature_set"], **header.get("feature_options", {}))
    except (FeatureError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path} uses feature set {header.get('feature_key')!r}, which this echolab "
                             f"cannot extract ({exc}): train the model again") from exc
    now = library_versions()
    return [f"{name} {was} (now {now.get(name, 'absent')})"
            for name, was in sorted(header.get("versions", {}).items()) if now.get(name) != was]


def load_model(path: Path | str) -> TrainedModel:
    """Read a model file written by :func:`save_model`, checking it can be used here.

    Raises :class:`ModelFileError` for a file that is not a model, or whose
    features this echolab cannot reproduce; warns (:class:`ModelVersionWarning`)
    when it was written by other library versions.
    """
    import joblib

    path = Path(path)
    data = _read(path)
    differences = check_header(data["header"], path)
    if differences:
        warnings.warn(f"{path} was written with other library versions: {', '.join(differences)}; "
                      "predictions may differ slightly (train it again to be sure)", ModelVersionWarning,
                      stacklevel=2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scikit-learn's own version warning: ours above says it once
            model = joblib.load(io.BytesIO(data["payload"]))
    except Exception as exc:
        raise ModelFileError(f"cannot load the model in {path} ({type(exc).__name__}: {exc}): "
                             "train it again with this echolab") from exc
    if not isinstance(model, TrainedModel):
        raise ModelFileError(f"{path} holds a {type(model).__name__}, not a trained echolab model")
    model.reject = dict(data["header"].get("reject") or {})  # the header's plain threshold is the one used
    return model


__all__ = ["DEFAULT_MODEL", "FORMAT", "ModelFileError", "ModelVersionWarning", "TrainedModel", "campaign_source",
           "check_header", "load_model", "read_header", "save_model", "train_model"]
