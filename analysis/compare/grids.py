"""The classifiers compared and their grids, read from one TOML file.

The grids live in ``analysis/compare/grids.toml`` (a person edits them, and a run can
use another copy with ``--grids FILE``). This module turns one table of that
file into a :class:`ModelSpec`: an estimator factory plus its parameter grid,
with a canonical form that goes into the trial cache key, so editing one
model's grid re-runs that model only.

Besides the study's six (scikit-learn classes, run by default), the file holds
the sequence attacks' classifiers (k-FP's forest and leaf k-NN, CUMUL's SVM,
the deep sequence model): ``default = false`` keeps a model out of a run that
does not name it (``-m NAME``); ``scale = false`` hands it the features
unscaled; ``extra`` names the optional install (``echolab-toolkit[deep]``)
its estimator needs, checked when a run selects it. Estimators come from
:data:`ALLOWED_ESTIMATORS` and parameters are plain data named by the
estimator, both checked before anything is built: a grids file is data, and
reading one calls nothing it names.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from echolab.errors import EcholabError
from echolab.tomlfiles import read_toml

if TYPE_CHECKING:
    from sklearn.base import ClassifierMixin

DEFAULT_GRIDS = Path(__file__).with_name("grids.toml")

#: The study's order of models (its Table II columns).
STUDY_MODELS: tuple[str, ...] = ("decision_tree", "random_forest", "svm_linear", "svm_rbf", "mlp", "knn")

#: The float types a model may be trained in (``dtype`` in its table).
DTYPES = ("float64", "float32")

#: What trains a model's MLPs (``engine`` in its table): NumPy's lockstep trainer, or the same compiled by JAX
#: (the ``deep`` extra; on a GPU where jaxlib has one). Only scikit-learn's MLPClassifier takes ``jax``.
ENGINES = ("numpy", "jax")
MLP_ESTIMATOR = "sklearn.neural_network.MLPClassifier"

#: The revision of the lockstep trainer's single-precision arithmetic, in the key of every float32 MLP model of the
#: NumPy engine, so that a change of those numbers recomputes those models' trials and no other model's (on a
#: machine where the numbers did not change, or for fits the trainer hands to scikit-learn, the recomputation
#: is needless, never wrong). 2: logistic units take NumPy's ``exp`` instead of scipy's ``expit``
#: (``mlpbatch._logistic``); 1 (no entry): scipy's.
FLOAT32_MLP_NUMERICS = 2

#: Parameters whose TOML lists stand for tuples.
_TUPLE_PARAMS = frozenset({"hidden_layer_sizes"})


#: The classifiers a grids file may name: the study's six (scikit-learn), the sequence attacks'
#: (k-FP's leaf k-NN, the deep sequence model), and a few documented additions (docs/security.md).
#: Nothing else is imported or called from a grids file.
ALLOWED_ESTIMATORS: frozenset[str] = frozenset({
    "sklearn.tree.DecisionTreeClassifier",
    "sklearn.ensemble.RandomForestClassifier",
    "sklearn.svm.SVC",
    "sklearn.neural_network.MLPClassifier",
    "sklearn.neighbors.KNeighborsClassifier",
    "echolab.analysis.compare.leafknn.LeafKNNClassifier",
    "echolab.analysis.compare.deep.SequenceCNNClassifier",
    # documented additions
    "sklearn.ensemble.ExtraTreesClassifier",
    "sklearn.linear_model.LogisticRegression",
    "sklearn.naive_bayes.GaussianNB",
})


class GridError(EcholabError):
    """The grids file cannot be read or names something that cannot be built."""


@dataclass(frozen=True)
class ModelSpec:
    """One classifier of the comparison: what to build and which values to search."""

    name: str
    label: str
    short: str
    estimator: str
    params: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, list[Any]] = field(default_factory=dict)
    #: The float type the model is trained and scored in (the scaled features are float64).
    dtype: str = "float64"
    #: Whether a run without ``-m`` includes the model (the study's six do).
    default: bool = True
    #: Whether the trial standardizes the features first (the protocol does; a sequence model wants raw sizes).
    scale: bool = True
    #: The optional install the estimator needs (``pip install 'echolab-toolkit[EXTRA]'``), or None.
    extra: str | None = None
    #: What trains its MLPs (:data:`ENGINES`): ``jax`` gives results equal to NumPy's within rounding, not bit for bit.
    engine: str = "numpy"

    def build(self, random_state: int | None = None) -> ClassifierMixin:
        """A fresh, unfitted estimator with the fixed params (and the trial's seed)."""
        from sklearn.base import clone

        cls = _import_estimator(self.estimator, self.name)
        try:
            est = cls(**{k: _native(k, v) for k, v in self.params.items()})
        except TypeError as exc:  # a parameter the estimator does not take
            raise GridError(f"model {self.name!r}: {exc}") from exc
        if random_state is not None and "random_state" in est.get_params():
            est.set_params(random_state=random_state)
        return clone(est)

    def param_grid(self) -> dict[str, list[Any]]:
        """The grid in scikit-learn's form (lists of hidden layers become tuples)."""
        return {k: [_native(k, v) for v in values] for k, values in self.grid.items()}

    def n_candidates(self) -> int:
        n = 1
        for values in self.grid.values():
            n *= len(values)
        return n

    def canonical(self) -> dict[str, Any]:
        """What defines the model's results: goes into the trial cache key."""
        out = {"estimator": self.estimator, "params": dict(self.params), "grid": dict(self.grid)}
        if self.dtype != "float64":  # float64 keys stay as they were
            out["dtype"] = self.dtype
            if self.estimator == MLP_ESTIMATOR and self.engine == "numpy":
                out["float32_numerics"] = FLOAT32_MLP_NUMERICS
        if not self.scale:
            out["scale"] = False
        if self.engine != "numpy":  # JAX rounds differently: its trials are its own
            out["engine"] = self.engine
        return out

    def check_available(self) -> None:
        """Raise :class:`GridError` (one line naming the install) when the estimator's extra is missing."""
        if self.engine == "jax" and importlib.util.find_spec("jax") is None:
            raise GridError(f"model {self.name!r} trains with JAX (engine = \"jax\"), which is not installed: "
                            "pip install 'echolab-toolkit[deep]'")
        if self.extra is None:
            return
        cls = _import_estimator(self.estimator, self.name)
        missing = getattr(cls, "missing_requirements", lambda: [])()
        if missing:
            raise GridError(f"model {self.name!r} needs {', '.join(missing)}: "
                            f"pip install 'echolab-toolkit[{self.extra}]'")

    def digest(self) -> str:
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _native(key: str, value: Any) -> Any:
    if key in _TUPLE_PARAMS and isinstance(value, list):
        return tuple(value)
    return value


def check_allowed(path: str, model: str | None = None) -> None:
    """:class:`GridError` unless *path* is on :data:`ALLOWED_ESTIMATORS` (nothing is imported)."""
    if path not in ALLOWED_ESTIMATORS:
        which = f"model {model!r}: " if model else ""
        raise GridError(f"{which}estimator {path!r} is not one of the classifiers a grids file may name: "
                        f"{', '.join(sorted(ALLOWED_ESTIMATORS))} (docs/security.md)")


def estimator_class(path: str, model: str | None = None) -> type:
    """The classifier class *path* names, when it is on :data:`ALLOWED_ESTIMATORS`; else :class:`GridError`."""
    which = f"model {model!r}: " if model else ""
    check_allowed(path, model)
    module_name, _, cls_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise GridError(f"{which}cannot import estimator {path!r}: {exc}") from exc
    if not isinstance(cls, type):
        raise GridError(f"{which}{path!r} is not a class")
    return cls


_import_estimator = estimator_class


def check_values(path: str, model: str, values: Mapping[str, Any], where: str) -> None:
    """The estimator is on the allow-list and the parameters are plain data (text, numbers, booleans; lists of
    numbers for a tuple parameter), checked without importing anything."""
    check_allowed(path, model)
    for key, value in values.items():
        if not _plain_value(value, key in _TUPLE_PARAMS):
            raise GridError(f"{where}: model {model!r}: parameter {key!r} must be text, a number, a boolean"
                            f"{' or a list of numbers' if key in _TUPLE_PARAMS else ''}, not {value!r}")


def check_names(path: str, model: str, names: Iterable[str], where: str) -> None:
    """The parameters *names* are the class's, checked against its ``__init__`` signature (scikit-learn's
    ``_get_param_names``) before anything is built, so nothing runs for a file that is refused."""
    cls = estimator_class(path, model)
    known = set(cls._get_param_names()) if hasattr(cls, "_get_param_names") else set()
    unknown = sorted(set(names) - known)
    if unknown:
        raise GridError(f"{where}: model {model!r}: {path} has no parameter(s) {', '.join(unknown)}")


def _plain_value(value: Any, listy: bool) -> bool:
    if isinstance(value, (str, bool, int, float)):
        return True
    return listy and isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def load_grids(path: Path | str | None = None, *, check: bool = True) -> dict[str, ModelSpec]:
    """Every model of a grids file, in file order (default: analysis/compare/grids.toml).

    Raises :class:`GridError` for an unreadable file, a missing key, an
    estimator outside scikit-learn, or a grid value the estimator rejects.
    With ``check=False`` the estimators are not imported and their parameter
    names not checked (:func:`check_models` does it later, before anything is
    built): a rerun whose trials are all cached needs only the models'
    canonical form. The allow-list and the plain-data rule hold either way.
    """
    path = Path(path) if path is not None else DEFAULT_GRIDS
    doc = read_toml(path, "grids file", GridError)
    models = doc.get("models")
    if not isinstance(models, dict) or not models:
        raise GridError(f"grids file {path} has no [models.NAME] tables; see analysis/compare/grids.toml")
    specs: dict[str, ModelSpec] = {}
    for name, table in models.items():
        specs[name] = _spec(name, table, path)
    if check:
        check_models(specs.values(), path)
    return specs


def check_models(specs: Iterable[ModelSpec], path: Path | str | None = None) -> None:
    """Build each model once: :class:`GridError` for an estimator that cannot be imported or a
    parameter it does not have."""
    path = Path(path) if path is not None else DEFAULT_GRIDS
    for spec in specs:  # the values are plain data already (load_grids checks them without importing)
        check_names(spec.estimator, spec.name, set(spec.params) | set(spec.grid), f"grids file {path}")
        est = spec.build()
        _validate(est, f"grids file {path}: model {spec.name!r}: params")
        for key, values in spec.param_grid().items():
            for value in values:
                _validate(est, f"grids file {path}: model {spec.name!r}: grid {key} = {value!r}", **{key: value})


def _validate(est: Any, where: str, **params: Any) -> None:
    """scikit-learn's own check of the estimator's parameter values (a wrong one fails only at fit time)."""
    from sklearn.base import clone

    if getattr(est, "_validate_params", None) is None or getattr(type(est), "_parameter_constraints", None) is None:
        return  # an estimator without scikit-learn's declared constraints (echolab's own) checks itself
    try:
        trial = clone(est).set_params(**params) if params else est
        trial._validate_params()
    except (ValueError, TypeError) as exc:  # sklearn's InvalidParameterError is both
        raise GridError(f"{where}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def _spec(name: str, table: dict[str, Any], path: Path) -> ModelSpec:
    if not isinstance(table, dict) or "estimator" not in table:
        raise GridError(f"grids file {path}: model {name!r} has no 'estimator'")
    grid, params = table.get("grid", {}), table.get("params", {})
    for key, value in (("grid", grid), ("params", params)):
        if not isinstance(value, dict):
            raise GridError(f"grids file {path}: model {name!r}: '{key}' must be a table, not {value!r}")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise GridError(f"grids file {path}: model {name!r}: grid '{key}' must be a non-empty list")
    dtype = str(table.get("dtype", "float64"))
    if dtype not in DTYPES:
        raise GridError(f"grids file {path}: model {name!r}: dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    engine = str(table.get("engine", "numpy"))
    if engine not in ENGINES:
        raise GridError(f"grids file {path}: model {name!r}: engine must be one of {', '.join(ENGINES)}, "
                        f"not {engine!r}")
    if engine != "numpy" and str(table["estimator"]) != MLP_ESTIMATOR:
        raise GridError(f"grids file {path}: model {name!r}: engine = {engine!r} trains {MLP_ESTIMATOR} only")
    check_values(str(table["estimator"]), name, table.get("params", {}), f"grids file {path}")
    for key, values in grid.items():
        for value in values:
            check_values(str(table["estimator"]), name, {key: value}, f"grids file {path}")
    spec = ModelSpec(
        name=name,
        label=str(table.get("label", name)),
        short=str(table.get("short", name)),
        estimator=str(table["estimator"]),
        params=dict(params),
        grid=dict(grid),
        dtype=dtype,
        default=bool(table.get("default", True)),
        scale=bool(table.get("scale", True)),
        extra=str(table["extra"]) if table.get("extra") else None,
        engine=engine,
    )
    return spec


def select_models(specs: Mapping[str, ModelSpec], names: list[str] | tuple[str, ...] | None) -> list[ModelSpec]:
    """The named models (when *names* is empty: those not marked ``default = false``) in the grids file's order,
    checked, their optional installs included."""
    if not names:
        chosen = [spec for spec in specs.values() if spec.default]
    else:
        unknown = [n for n in names if n not in specs]
        if unknown:
            raise GridError(f"unknown model(s) {', '.join(unknown)}; the grids file defines {', '.join(specs)}")
        wanted = set(names)
        chosen = [spec for name, spec in specs.items() if name in wanted]
    for spec in chosen:
        spec.check_available()
    return chosen
