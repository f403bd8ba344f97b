"""Results are what they say: the review findings of the analysis, one test each.

* a trial's cache key holds everything that changes its result;
* importances of trials with different columns are aligned by column name;
* synthetic rows are not tuned toward any published accuracy;
* the report says where its data came from.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_selection import f_classif
from sqlalchemy import select

from echolab.analysis.compare import keys, provenance
from echolab.analysis.compare.runner import run_analysis
from echolab.analysis.compare.sources import DataSource
from echolab.analysis.compare.synthetic import synthetic_source
from echolab.analysis.compare.specs import FeatureSpec, RunSettings
from echolab.db.catalog import Catalog
from echolab.db.records import TrialResult
from echolab.labdir import LabDir

from grids import write_grids


class Scaled(BaseEstimator, TransformerMixin):
    """Columns times *factor*, constant columns (over the fitted rows) dropped, as the tcptrace set does."""

    default_factor = 1.0

    def __init__(self, set_name: str = "combined", factor: float | None = None):
        self.set_name = set_name
        self.factor = factor

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=float)
        self.keep_ = np.flatnonzero(np.ptp(X, axis=0) > 0)
        return self

    def transform(self, X):
        return np.asarray(X, dtype=float)[:, self.keep_] * (self.factor or 1.0)

    def get_feature_names_out(self, input_features=None):
        return np.asarray([f"c{i:02d}" for i in self.keep_], dtype=object)


def _source(factor_default: float = 1.0, extraction: str = "v1@10.0.0.2") -> DataSource:
    base = synthetic_source(8, classes=("a", "b", "c"), seed=4)
    X = np.asarray(base.records)[:, :6].copy()
    X[:, 5] = 0.0
    X[0, 5] = 1.0  # one capture alone makes column c05 vary: trials without it in training drop it

    def make(set_name: str, **options):
        return Scaled(set_name, factor=options.get("factor", factor_default))

    return DataSource(X, base.y, base.groups, base.sha256s, base.capture_ids, make,
                      extraction=[extraction] * len(base.y))


@pytest.fixture
def cat(sqlite_lab: LabDir):
    with Catalog.open(sqlite_lab) as catalog:
        yield catalog


def _settings(tmp_path: Path, **kw) -> RunSettings:
    grids = write_grids(tmp_path, {"random_forest": {"params": {"n_estimators": 5}, "grid": {"max_features": ["sqrt"]}}})
    return RunSettings(features=(FeatureSpec.of("combined"),), trials=3, grids_path=str(grids),
                       leakage_check=False, **kw)


def test_cache_key_holds_extraction_defaults_and_library_versions(cat: Catalog, tmp_path: Path, monkeypatch) -> None:
    first = run_analysis(cat, _source(), _settings(tmp_path), name="a", jobs=1)
    assert first.computed == 3
    assert run_analysis(cat, _source(), _settings(tmp_path), name="b", jobs=1).computed == 0
    # Another device address (or extractor version): other records, so no cached trial applies.
    assert run_analysis(cat, _source(extraction="v1@10.0.0.9"), _settings(tmp_path), name="c", jobs=1).computed == 3
    # A changed default of a feature option changes the features even though the spec reads the same.
    assert run_analysis(cat, _source(factor_default=2.0), _settings(tmp_path), name="d", jobs=1).computed == 3
    # Another release of a numeric library may change the numbers.
    import importlib.metadata

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: real(name) + (".post1" if name == "scikit-learn" else ""))
    assert run_analysis(cat, _source(), _settings(tmp_path), name="e", jobs=1).computed == 3
    assert set(keys.numeric_versions()) == {"scikit-learn", "numpy", "scipy"}


def test_importances_are_aligned_by_column_name_when_features_fit_per_trial(cat: Catalog, tmp_path: Path) -> None:
    settings = replace(_settings(tmp_path, fit_features_on="train"), trials=8)
    res = run_analysis(cat, _source(), settings, name="t", jobs=1)
    widths = {len(r.result["feature_names"]) for r in cat.session.scalars(select(TrialResult))}
    assert widths == {5, 6}  # some trials dropped c05 as constant in their training part, some did not
    s = res.run.summary
    names = s["features"][0]["names"]
    assert names == ["c00", "c01", "c02", "c03", "c04", "c05"]
    cell = s["cells"]["combined"]["random_forest"]
    assert len(cell["importances_mean"]) == 6
    # Trials whose training part lacks capture 0 dropped c05: it counts 0 there, the others keep their places.
    assert np.isclose(sum(cell["importances_mean"]), 1.0)
    assert cell["importances_mean"][5] < max(cell["importances_mean"][:5])


def test_synthetic_rows_give_both_blocks_the_same_class_signal() -> None:
    src = synthetic_source(150, seed=2, separation=1.0)
    X = np.asarray(src.records)
    f_tcp = np.sort(f_classif(X[:, :22], src.y)[0])[-6:].mean()  # the 6 informative columns of each block
    f_hist = np.sort(f_classif(X[:, 22:], src.y)[0])[-6:].mean()
    assert 0.5 < f_tcp / f_hist < 2.0, (f_tcp, f_hist)
    doc = synthetic_source.__doc__ or ""
    assert "study's accuracies" not in doc and "nothing is tuned toward any published accuracy" in " ".join(doc.split())
    flat = synthetic_source(40, seed=2, separation=0.0)
    assert "separation 0" in flat.description


def test_provenance_names_simulation_speed_synthetic_imported_and_real() -> None:
    def cap(backend, speed=None, synthetic=False, name="c"):
        camp = SimpleNamespace(name=name, backend=backend, settings={"speed": speed} if speed else {}, location=None)
        return SimpleNamespace(campaign=camp, synthetic=synthetic)

    sim = provenance.of_captures([cap("sim", 60.0, True)] * 3)
    assert sim["headline"].startswith("3 simulated: the simulated lab") and "time compressed x60" in sim["headline"]
    assert sim["simulated"] and not sim["real"]
    mixed = provenance.of_captures([cap("echo", name="home")] * 2 + [cap("imported", name="pub")])
    assert mixed["headline"] == ("2 real collection: a real Echo, prompted through a speaker; 1 imported: captures "
                                 "made elsewhere and imported into the catalog")
    assert not mixed["simulated"] and not mixed["real"]
    assert provenance.of_captures([cap("synthetic", 1.0, True)])["kinds"][0]["kind"] == "synthetic"
    rows = provenance.synthetic_rows(60, 3)
    assert rows["simulated"] and "synthetic feature rows" in rows["headline"]
