"""Trained models as files: fit one model on chosen campaigns, write it, read it back to classify.

The comparison (:mod:`echolab.analysis.compare.runner`) measures accuracy and throws
its fitted models away. A model file keeps one: ``echolab analyze train`` fits a
feature set's transformer, a standard scaler and one classifier of the grids
file on every chosen capture, choosing the classifier's parameters with the
comparison's own grid search (:func:`echolab.analysis.compare.search.grid_search`,
stratified k-fold on all the data, as a trial does on its training part), and
:func:`save_model` writes everything needed to use it later.

A file is a zip of two members, and reading it runs no code from it:

* ``header.json``: plain data only (format, feature set and options, extractor
  version, classes, the training data's fingerprint, library versions, the
  chosen parameters, what the transformer learned), readable alone
  (:func:`read_header`); a JSON object, so later versions can add keys;
* ``model.skops``: the fitted transformer, scaler and classifier in skops'
  format, rebuilt from data and a list of trusted types
  (:mod:`echolab.analysis.compare.modelsafe`), never unpickled.

:func:`load_model` reads the header first, so a model that the running
extractor cannot reproduce (another extractor version, a feature set this
echolab does not know) is refused with the reason before anything else is
read; a model written by other library versions loads with a
:class:`ModelVersionWarning`. Files of older echolab versions were joblib
pickles: they are refused with one line, and :func:`convert_model`
(``echolab analyze convert-model --trust``) rewrites one you trust.
"""

from __future__ import annotations

import io
import json
import math
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from echolab.analysis.compare.modelsafe import (ModelSafetyError, check_zip_directory, dump_objects, file_tail,
                                                load_objects)
from echolab.errors import EcholabError, shown
from echolab.progress import ProgressCallback

#: The file layout; bumped when the header or payload changes shape.
FORMAT = "echolab-model-2"
#: The members of the file (a zip) and the suffix ``convert-model`` gives.
HEADER_MEMBER, MODEL_MEMBER, MODEL_SUFFIX = "header.json", "model.skops", ".echolab-model"
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_MODEL_BYTES = 1024**3  # the model member as stored (skops' own zip); unpacked, modelsafe.MAX_UNPACKED_BYTES
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x04\x22\x4d\x18", b"ZF")  # joblib's compressors
DEFAULT_MODEL = "random_forest"


#: The adaptations a model file can apply to the requests it classifies (no target home at training time).
MODEL_ADAPTATIONS = ("none", "standardize", "quantile")
#: The fewest requests an adapted model classifies together (a home's statistics need several).
MIN_ADAPT_ROWS = 5


class ModelFileError(EcholabError):
    """A model file cannot be written, read or used (wrong format, other extractor, unknown set)."""


#: Header keys computed from the others (not fields of :class:`TrainedModel`).
_DERIVED = frozenset({"format", "feature_key"})


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
    #: Unsupervised adaptation to each home (:mod:`.adapt`): "none", "standardize" or "quantile". An adapted
    #: model standardises (or maps to quantiles) its training campaigns' features each within its campaign, and
    #: the requests it classifies together within themselves, as one home.
    adapt: str = "none"
    #: Header keys this echolab does not read, kept so a file read and written again loses nothing.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_key(self) -> str:
        from echolab.analysis.compare.specs import FeatureSpec

        return FeatureSpec.of(self.feature_set, **self.feature_options).key

    def matrix(self, records: Sequence[Any]) -> np.ndarray:
        """The scaled feature matrix of *records* (``CaptureRecord`` objects), as the classifier takes it."""
        X = np.asarray(self.transformer.transform(list(records)), dtype=float)
        if self.adapt != "none":
            from echolab.analysis.compare.adapt import adapt_matrix

            if len(X) < MIN_ADAPT_ROWS:
                raise ModelFileError(
                    f"this model adapts to each home ({self.adapt}), so it classifies a home's requests together: "
                    f"give it at least {MIN_ADAPT_ROWS} requests at once, not {len(X)}")
            X = adapt_matrix(X, np.zeros(len(X), dtype=int), self.adapt)
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

    @classmethod
    def from_header(cls, header: dict[str, Any], *, transformer: Any, scaler: Any, estimator: Any) -> "TrainedModel":
        """The model whose plain-data *header* and fitted parts are given (keys it does not know kept in ``extra``)."""
        known = {f for f in cls.__dataclass_fields__ if f not in ("transformer", "scaler", "estimator", "extra")}
        try:
            values = {k: header[k] for k in known if k in header}
            values["reject"] = dict(values.get("reject") or {})  # a header without a reject option says null
            return cls(**values, transformer=transformer, scaler=scaler, estimator=estimator,
                       extra={k: v for k, v in header.items() if k not in known and k not in _DERIVED})
        except TypeError as exc:
            raise ModelFileError(f"a model file's header lacks what a model needs ({exc})") from None

    def header(self) -> dict[str, Any]:
        """The plain-data description written in front of the model (JSON; new keys may be added)."""
        return {**getattr(self, "extra", {}),
            "format": FORMAT, "feature_set": self.feature_set, "feature_options": dict(self.feature_options),
            "feature_key": self.feature_key, "extractor_version": self.extractor_version,
            "model_name": self.model_name, "model": self.model, "best_params": self.best_params,
            "cv_score": self.cv_score, "classes": list(self.classes), "fingerprint": self.fingerprint,
            "n_captures": self.n_captures, "campaigns": list(self.campaigns), "counts": dict(self.counts),
            "versions": dict(self.versions), "feature_names": list(self.feature_names), "learned": self.learned,
            "created_at": self.created_at, "dtype": self.dtype, "adapt": self.adapt,
            "reject": dict(self.reject) or None,
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
                grids_path: str | Path | None = None, seed: int = 0, cv_folds: int = 3,
                adapt: str = "none") -> TrainedModel:
    """Fit *feature* (e.g. ``histogram:bins=25``) and the grids file's *model* on all of *source*.

    As one trial of the comparison, but on every row: the transformer and the
    scaler learn on all rows, the grid search scores each candidate by
    stratified *cv_folds*-fold accuracy and refits the best on all rows.
    *adapt* ("standardize" or "quantile") first adapts each campaign's rows
    within that campaign (:mod:`.adapt`; CORAL needs the target home's rows,
    so it is the comparison's only).
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
    if adapt not in MODEL_ADAPTATIONS:
        raise AnalysisError(f"a model file adapts by {' or '.join(MODEL_ADAPTATIONS)}, not {adapt!r}")
    from echolab.analysis.compare.adapt import adapt_matrix

    X_home = adapt_matrix(fm.X, src.groups, adapt)
    scaler = StandardScaler().fit(X_home)
    X = scaler.transform(X_home).astype(spec.dtype, copy=False)
    folds = list(StratifiedKFold(n_splits=cv_folds).split(X, src.y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # as a trial: the MLP may stop at max_iter
        search = grid_search(spec.build(random_state=seed), spec.param_grid(), X, src.y, folds, engine=spec.engine)
    return TrainedModel(
        feature_set=fspec.set_name, feature_options=fspec.option_dict, extractor_version=EXTRACTOR_VERSION,
        model_name=spec.name, model=spec.canonical(),
        best_params={k: list(v) if isinstance(v, tuple) else v for k, v in search.best_params.items()},
        cv_score=float(search.best_score), classes=classes, transformer=transformer, scaler=scaler,
        estimator=search.best_estimator, fingerprint=src.fingerprint(), n_captures=len(src.y),
        campaigns=sorted(set(src.groups.tolist())), counts=counts, versions=library_versions(),
        feature_names=fm.names, learned=fm.info, created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        dtype=spec.dtype, adapt=adapt,
    )


# --------------------------------------------------------------------------- the file


def save_model(model: TrainedModel, path: Path | str) -> Path:
    """Write *model* to *path* (a zip of a JSON header and a skops model; see the module docstring)."""
    path = Path(path)
    header = json.dumps(model.header(), indent=1, sort_keys=True, default=_plain).encode()
    blob = dump_objects({"transformer": model.transformer, "scaler": model.scaler, "estimator": model.estimator})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        with zipfile.ZipFile(tmp, "w") as zf:
            zf.writestr(HEADER_MEMBER, header, compress_type=zipfile.ZIP_DEFLATED)
            zf.writestr(MODEL_MEMBER, blob, compress_type=zipfile.ZIP_STORED)  # skops' own zip, compressed
        tmp.replace(path)
    except OSError as exc:
        raise ModelFileError(f"cannot write the model file {path}: {exc.strerror or exc}") from exc
    return path


def read_header(path: Path | str) -> dict[str, Any]:
    """The plain-data header of a model file: JSON, read alone (nothing of the model is loaded)."""
    path = Path(path)
    with _open_zip(path) as zf:
        raw = _member(zf, path, HEADER_MEMBER, MAX_HEADER_BYTES)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelFileError(f"{path}: its header is not JSON ({exc})") from None
    except RecursionError:  # a few hundred thousand '[' exhaust the JSON decoder's recursion
        raise ModelFileError(f"{path}: its header is not JSON (it nests too deep)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: its header is not a JSON object")
    return header


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        check_zip_directory(file_tail(path), str(path))
    except ModelSafetyError as exc:
        raise ModelFileError(str(exc)) from None
    except OSError:
        pass  # the zip reader below says what is wrong with the file
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError as exc:
        raise ModelFileError(f"no model file {path}; write one with 'echolab analyze train'") from exc
    except IsADirectoryError:
        raise ModelFileError(f"{path} is a folder, not a model file") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read the model file {path}: {exc.strerror or exc}") from exc
    except zipfile.BadZipFile:
        pass
    except (ValueError, EOFError, zlib.error, RuntimeError, NotImplementedError, OverflowError, struct.error) as exc:
        # a zip whose directory holds names that are not UTF-8 or fields out of range (UnicodeDecodeError is one)
        raise ModelFileError(f"{path} is damaged: its list of members cannot be read ({type(exc).__name__})") from None
    if is_legacy_model(path):
        raise ModelFileError(
            f"{path} is a model file of an older echolab (a joblib pickle, which runs whatever code it holds when "
            "it is read), so it is not loaded",
            hint=f"if you made it or trust who did, convert it once: echolab analyze convert-model --trust {path}")
    raise ModelFileError(f"{path} is not an echolab model file (write one with 'echolab analyze train')")


def _member(zf: zipfile.ZipFile, path: Path, name: str, limit: int) -> bytes:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise ModelFileError(f"{path} is not an echolab model file (it has no {name}); "
                             "write one with 'echolab analyze train'") from None
    if info.file_size > limit:
        raise ModelFileError(f"{path}: its {name} is {info.file_size} bytes, over the limit of {limit}")
    try:
        data = zf.read(info)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, RuntimeError, NotImplementedError, ValueError,
            OverflowError, struct.error) as exc:
        raise ModelFileError(f"{path} is damaged: cannot read its {name} ({exc})") from None
    if len(data) > limit:
        raise ModelFileError(f"{path}: its {name} is over the limit of {limit} bytes")
    return data


def is_legacy_model(path: Path | str) -> bool:
    """Whether *path* looks like a joblib/pickle file (an ``echolab-model-1`` file or any other pickle)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return head[:1] == b"\x80" or head.startswith(_COMPRESSED_MAGIC) or (
        head[:1] == b"x" and head[1:2] in (b"\x01", b"^", b"\x9c", b"\xda"))


def _plain(value: Any) -> Any:
    """JSON for the numpy values a header may hold (arrays of bin edges, numpy scalars)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} cannot go into a model file's header")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


#: What each header key must hold (when present): a test, and the words for the error.
_HEADER_TYPES: dict[str, tuple[Any, str]] = {
    "feature_set": (lambda v: isinstance(v, str), "text"),
    "feature_options": (lambda v: isinstance(v, dict), "a table"),
    "model_name": (lambda v: isinstance(v, str), "text"),
    "model": (lambda v: isinstance(v, dict), "a table"),
    "best_params": (lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v), "a table"),
    "cv_score": (_is_number, "a finite number"),
    "classes": (lambda v: _str_list(v) and len(v) > 0, "a list of class names (text)"),
    "fingerprint": (lambda v: isinstance(v, str), "text"),
    "n_captures": (lambda v: _is_int(v) and v >= 0, "a whole number, 0 or more"),
    "campaigns": (_str_list, "a list of campaign names (text)"),
    "counts": (lambda v: isinstance(v, dict) and all(_is_int(n) and n >= 0 for n in v.values()),
               "a table of whole numbers, 0 or more"),
    "versions": (lambda v: isinstance(v, dict), "a table"),
    "feature_names": (_str_list, "a list of names (text)"),
    "learned": (lambda v: isinstance(v, dict), "a table"),
    "created_at": (lambda v: isinstance(v, str), "text"),
}


def _check_types(header: dict[str, Any], path: Path | str) -> None:
    """Refuse a header whose values are not of the types and ranges echolab writes (one line, naming *path*)."""
    from echolab.analysis.compare.grids import DTYPES

    def bad(what: str) -> ModelFileError:
        return ModelFileError(f"{path} is not a usable echolab model file: its header's {what}")

    for key, (ok, words) in _HEADER_TYPES.items():
        if key in header and not ok(header[key]):
            raise bad(f"{key} must be {words}, not {shown(header[key])}")
    if "dtype" in header and header["dtype"] not in DTYPES:
        raise bad(f"dtype must be one of {', '.join(DTYPES)}, not {shown(header['dtype'])}")
    if "adapt" in header and header["adapt"] not in MODEL_ADAPTATIONS:
        raise bad(f"adapt must be one of {', '.join(MODEL_ADAPTATIONS)}, not {shown(header['adapt'])}")
    reject = header.get("reject")
    if reject is None or reject == {}:
        return
    if not isinstance(reject, dict):
        raise bad(f"reject must be a table or null, not {shown(reject)}")
    threshold = reject.get("threshold")
    if not _is_number(threshold):  # over 1 rejects everything, as a user may choose (tests do)
        raise bad(f"reject threshold must be a finite number, not {shown(threshold)}")
    for key in ("monitored", "unmonitored"):
        if key in reject and not _str_list(reject[key]):
            raise bad(f"reject {key} must be a list of class names (text), not {shown(reject[key])}")
    if "target" in reject and not isinstance(reject["target"], str):
        raise bad(f"reject target must be text, not {shown(reject['target'])}")
    if "reached" in reject and not isinstance(reject["reached"], bool):
        raise bad(f"reject reached must be true or false, not {shown(reject['reached'])}")
    if "train" in reject and not isinstance(reject["train"], (dict, type(None))):
        raise bad(f"reject train must be a table, not {shown(reject['train'])}")


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
    _check_types(header, path)
    try:
        make_transformer(header.get("feature_set"), **header.get("feature_options", {}))
    except (FeatureError, TypeError, ValueError, KeyError) as exc:
        raise ModelFileError(f"{path} uses feature set {header.get('feature_key')!r}, which this echolab "
                             f"cannot extract ({exc}): train the model again") from exc
    now = library_versions()
    if not isinstance(header.get("versions", {}), dict):
        raise ModelFileError(f"{path} is not an echolab model file (its header's versions are not a table)")
    return [f"{name} {was} (now {now.get(name, 'absent')})"
            for name, was in sorted(header.get("versions", {}).items()) if now.get(name) != was]


def load_model(path: Path | str) -> TrainedModel:
    """Read a model file written by :func:`save_model`, checking it can be used here.

    Loading runs no code from the file: the header is JSON and the model is
    rebuilt by skops from a list of trusted types (:mod:`echolab.analysis.compare.modelsafe`).
    Raises :class:`ModelFileError` for a file that is not a model, an old
    joblib model (convert it with ``echolab analyze convert-model --trust``),
    or one whose features this echolab cannot reproduce; warns
    (:class:`ModelVersionWarning`) when it was written by other library versions.
    """
    path = Path(path)
    header = read_header(path)
    differences = check_header(header, path)
    if differences:
        warnings.warn(f"{path} was written with other library versions: {', '.join(differences)}; "
                      "predictions may differ slightly (train it again to be sure)", ModelVersionWarning,
                      stacklevel=2)
    with _open_zip(path) as zf:
        blob = _member(zf, path, MODEL_MEMBER, MAX_MODEL_BYTES)
    try:
        objects = load_objects(blob, str(path))
    except ModelSafetyError as exc:
        raise ModelFileError(str(exc)) from None
    return TrainedModel.from_header(header, **objects)


def convert_model(source: Path | str, out: Path | str | None = None, *, trust: bool = False) -> Path:
    """Rewrite an old joblib model file (``echolab-model-1``) in today's format; returns the file written.

    Reading the old file unpickles it, which runs any code it holds: *trust*
    must say that the file comes from someone you trust (you, most often).
    *out* defaults to *source* with the suffix ``.echolab-model``.
    """
    import joblib

    source = Path(source)
    if not trust:
        raise ModelFileError(f"converting {source} unpickles it, which runs any code it holds; pass --trust only "
                             "for a file you made or trust")
    try:
        data = joblib.load(source)
        model = joblib.load(io.BytesIO(data["payload"]))
    except FileNotFoundError:
        raise ModelFileError(f"no model file {source}") from None
    except Exception as exc:  # joblib/pickle raise many kinds for a file that is not theirs
        raise ModelFileError(f"{source} is not an old echolab model file ({type(exc).__name__}: {exc})") from None
    if not isinstance(model, TrainedModel):
        raise ModelFileError(f"{source} holds a {type(model).__name__}, not a trained echolab model")
    target = Path(out) if out is not None else source.with_suffix(MODEL_SUFFIX)
    return save_model(model, target)


__all__ = ["DEFAULT_MODEL", "FORMAT", "ModelFileError", "ModelVersionWarning", "TrainedModel", "campaign_source",
           "check_header", "convert_model", "is_legacy_model", "load_model", "read_header", "save_model", "train_model"]
