"""The same run on a Dask cluster gives the same numbers as on the local cores."""

from __future__ import annotations

from pathlib import Path

import pytest

from echolab.analysis.compare.runner import run_analysis
from echolab.analysis.compare.synthetic import synthetic_source
from echolab.analysis.compare.specs import RunSettings
from echolab.db.catalog import Catalog
from echolab.labdir import LabDir

from grids import write_grids


distributed = pytest.importorskip("distributed")


def test_dask_cluster_run_matches_local_run(sqlite_lab: LabDir, tmp_path: Path) -> None:
    grids = write_grids(tmp_path, {"decision_tree": {"grid": {"criterion": ["gini", "entropy"]}},
                                   "knn": {"grid": {"n_neighbors": [1, 3]}}}, labels=False)
    source = synthetic_source(10, seed=2)
    settings = RunSettings(trials=3, seed=5, grids_path=str(grids))
    with Catalog.open(sqlite_lab) as cat:
        local = run_analysis(cat, source, settings, name="local", jobs=1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as lc:
        with Catalog.open(LabDir.open(tmp_path / "lab2", create=True)) as cat2:
            remote = run_analysis(cat2, source, settings, name="dask", cluster=lc.scheduler_address)
            assert remote.computed == 18
            assert remote.run.settings["cluster"] == lc.scheduler_address
            assert "distributed" in remote.run.versions
            for fkey, by_model in local.run.summary["cells"].items():
                for model, cell in by_model.items():
                    assert remote.run.summary["cells"][fkey][model]["accuracies"] == cell["accuracies"]
            # A Client object works too, and the cache still applies.
            with distributed.Client(lc) as client:
                again = run_analysis(cat2, source, settings, name="dask", cluster=client)
                assert again.computed == 0
