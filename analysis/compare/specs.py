"""What an analysis run is asked to do: feature set configurations and the run's settings.

A :class:`FeatureSpec` names one feature set and its options (``histogram:bins=25``
on the command line); :class:`RunSettings` holds everything besides the data that
defines a run's numbers. Both are plain values: they go into trial keys and into
the stored run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from echolab.analysis.compare.splits import SPLIT_MODES
from echolab.analysis.features.sets import FEATURE_SETS
from echolab.errors import EcholabError

FIT_SCOPES = ("all", "train")


class AnalysisError(EcholabError):
    """An analysis cannot be planned or run as asked."""


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
#: The option names are those of ``echolab.analysis.features.sets.make_transformer``.
ABLATIONS: dict[str, FeatureSpec] = {
    "window_advertisement": FeatureSpec.of("window"),
    "data_amount": FeatureSpec.of("data_amount"),
    "size_histogram": FeatureSpec.of("size_hist"),
    "interarrival_histogram": FeatureSpec.of("iat_hist"),
}


def ablation_features() -> tuple[FeatureSpec, ...]:
    """The feature-group ablations: window advertisement, data amount, each histogram alone."""
    return tuple(ABLATIONS.values())


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
    drop_unsplittable: bool = False  # grouped splits: leave out classes in only one group (the notes say which)
    leakage_check: bool = True  # the report's leakage check (leakage.py); off only to keep tests of other things fast
    adapt: str = "none"  # unsupervised adaptation to each home (adapt.py): none, standardize, quantile, coral
    adapt_by: str = "campaign"  # the grouping that says which home a capture is from
    monitored: tuple[str, ...] = ()  # the open world's monitored classes (openeval.py); empty: the closed world
    threshold_target: str = "precision=0.9"  # what an open-world trial's threshold is chosen for, on training data

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
        from echolab.analysis.compare.adapt import ADAPTATIONS
        from echolab.analysis.compare.splits import GROUPINGS

        if self.adapt not in ADAPTATIONS:
            raise AnalysisError(f"--adapt must be one of {', '.join(ADAPTATIONS)}, not {self.adapt!r}")
        if self.adapt_by not in GROUPINGS:
            raise AnalysisError(f"--adapt-by must be one of {', '.join(GROUPINGS)}, not {self.adapt_by!r}")
        if self.monitored:
            from echolab.analysis.compare.openworld import OpenWorldError, ThresholdTarget

            try:
                ThresholdTarget.parse(self.threshold_target)
            except OpenWorldError as exc:
                raise AnalysisError(str(exc)) from exc
