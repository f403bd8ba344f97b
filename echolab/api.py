"""``echolab.Lab``: the one object a notebook starts from.

A :class:`Lab` opens a lab directory and its catalog once and offers what a lab
user works with: the captures, feature tables (NumPy arrays or a pandas
DataFrame), the classifier comparison and its report. It draws nothing and
prints nothing: long work reports through an optional ``progress`` callback
(:mod:`echolab.progress`). Nothing here imports typer or rich, and importing
this module loads no heavy library; scikit-learn, matplotlib and pandas load
when a method needs them.

::

    from echolab import Lab

    with Lab("lab") as lab:
        print(lab.stats())
        X, y, names = lab.features("combined")
        result = lab.compare(features=["combined"], models=["random_forest"], trials=5)
        print(lab.report(result))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from echolab.labdir import LabDir
from echolab.progress import ProgressCallback

if TYPE_CHECKING:  # imported for type checkers only; the real imports happen where they are used
    import numpy as np
    import pandas as pd

    from echolab.analysis.compare.runner import RunResult
    from echolab.db.catalog import Catalog
    from echolab.db.checks import CatalogStats
    from echolab.db.models import AnalysisRun, Capture


@dataclass
class FeatureTable:
    """One feature set's table: a row per usable capture, the fitted transformer's columns."""

    X: "np.ndarray"
    y: "np.ndarray"
    names: list[str]
    capture_ids: list[int]
    campaigns: list[str]
    skipped: list[tuple[int, str]]

    def __iter__(self):  # ``X, y, names = lab.features(...)``
        return iter((self.X, self.y, self.names))


class Lab:
    """A lab directory with its catalog, opened once.

    ``Lab(path)`` opens an existing lab; ``Lab(path, create=True)`` makes one.
    Use it as a context manager, or call :meth:`close`, to release the catalog.
    """

    def __init__(self, root: Path | str = "lab", *, create: bool = False, catalog_url: str | None = None) -> None:
        self.dir: LabDir = LabDir.open(root, create=create)
        self._catalog_url = catalog_url
        self._catalog: Catalog | None = None

    # -- the lab and its catalog -----------------------------------------------------------

    @property
    def root(self) -> Path:
        return self.dir.root

    @property
    def catalog(self) -> "Catalog":
        """The open catalog (opened on first use, migrations applied)."""
        if self._catalog is None:
            from echolab.db.catalog import Catalog

            self._catalog = Catalog.open(self.dir, self._catalog_url)
        return self._catalog

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Lab({str(self.root)!r})"

    # -- captures --------------------------------------------------------------------------

    def captures(self, *, label: str | None = None, campaign: str | int | None = None,
                 status: str | None = "ok") -> list["Capture"]:
        """Catalogued captures matching every given filter, oldest first (default: the good ones)."""
        return self.catalog.captures(label=label, campaign=campaign, status=status)

    def capture_path(self, capture: "Capture") -> Path | None:
        """Where a capture's file lies (``None`` if the catalog points at no file)."""
        return self.catalog.abspath(capture)

    def stats(self) -> "CatalogStats":
        """Counts per class and status, and per campaign (what ``catalog stats`` shows)."""
        from echolab.db.checks import catalog_stats

        return catalog_stats(self.catalog)

    def import_captures(self, source: Path | str, **options: Any) -> Any:
        """Import captures (class folders, a manifest, an export, long captures with ``split=``);
        see :func:`echolab.db.transfer.import_captures` for the options."""
        from echolab.db.transfer import import_captures

        return import_captures(self.catalog, Path(source), **options)

    # -- features --------------------------------------------------------------------------

    def build_features(self, *, device_ip: str | None = None, progress: ProgressCallback | None = None) -> Any:
        """Extract and cache every capture's features that are not cached yet; returns the build report."""
        from echolab.analysis.features.store import build_features

        return build_features(self.catalog, device_ip=device_ip, progress=progress)

    def features(self, set_name: str = "combined", *, device_ip: str | None = None,
                 progress: ProgressCallback | None = None, **options: Any) -> FeatureTable:
        """One feature set as arrays: ``X, y, names = lab.features("tcptrace")``.

        The set's transformer (histogram edges, constant columns) is fitted on
        every usable capture, as the study does; *options* go to it (``bins``,
        ``include_acks``, ``drop_constant``).
        """
        from echolab.analysis.features.sets import load_dataset, make_transformer

        data = load_dataset(self.catalog, device_ip=device_ip, progress=progress)
        if not len(data):
            from echolab.analysis.features.sets import FeatureError

            raise FeatureError("no usable captures in the catalog: collect or import some, then build features")
        transformer = make_transformer(set_name, **options).fit(data.records)
        return FeatureTable(X=transformer.transform(data.records), y=data.y,
                            names=list(transformer.get_feature_names_out()), capture_ids=list(data.capture_ids),
                            campaigns=list(data.campaigns), skipped=list(data.skipped))

    def feature_frame(self, set_name: str = "combined", *, device_ip: str | None = None,
                      progress: ProgressCallback | None = None, **options: Any) -> "pd.DataFrame":
        """One feature set as a pandas DataFrame (capture_id, sha256, campaign, label, features).

        Needs pandas (the ``parquet`` extra)."""
        from echolab.errors import require

        require("pandas", "parquet", "feature tables as DataFrames")
        from echolab.analysis.features.store import feature_table

        return feature_table(self.catalog, set_name=set_name, device_ip=device_ip, progress=progress, **options)

    # -- the comparison and its report -------------------------------------------------------

    def compare(self, *, features: Sequence[str] | None = None, models: Sequence[str] = (), trials: int = 100,
                seed: int = 0, split_by: str = "random", name: str | None = None, device_ip: str | None = None,
                jobs: int | None = None, progress: ProgressCallback | None = None,
                **settings: Any) -> "RunResult":
        """Run (or resume) the classifier comparison on the catalog's captures.

        *features* are feature-spec strings as ``analyze run -f`` takes them
        (default: the study's three sets); *models* names from the grids file
        (default: all six). Finished trials are cached in the catalog, so a
        rerun costs only what changed. Returns the stored run and its counts.
        """
        from echolab.analysis.compare.runner import run_analysis
        from echolab.analysis.compare.sources import catalog_source
        from echolab.analysis.compare.specs import FeatureSpec, RunSettings, study_features

        specs = tuple(FeatureSpec.parse(f) for f in features) if features else study_features()
        run_settings = RunSettings(features=specs, models=tuple(models), trials=trials, seed=seed,
                                   split_by=split_by, **settings)
        source = catalog_source(self.catalog, device_ip=device_ip, progress=progress)
        return run_analysis(self.catalog, source, run_settings, name=name, jobs=jobs, progress=progress)

    def runs(self) -> list["AnalysisRun"]:
        """Stored analysis runs, newest first."""
        return self.catalog.analysis_runs()

    def run(self, name_or_id: str | int) -> "AnalysisRun":
        """One stored analysis run by name or id."""
        return self.catalog.analysis_run(name_or_id)

    def report(self, run: "RunResult | AnalysisRun | str | int", out: Path | str | None = None) -> Path:
        """Write a run's report (index.html, summary.md, plots); returns the HTML page's path.

        *out* defaults to ``LAB/reports/RUN``, which the catalog then records.
        """
        from echolab.analysis.compare.report import write_report

        stored = getattr(run, "run", run)
        if isinstance(stored, (str, int)):
            stored = self.run(stored)
        path = write_report(stored, Path(out) if out else self.dir.reports_dir / stored.name)
        if out is None:
            self.catalog.set_report_dir(stored, path.parent)
        return path
