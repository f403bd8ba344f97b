"""End to end from the catalog: simulated captures -> real features -> a stored, cached analysis."""

from __future__ import annotations

from pathlib import Path

from echolab.analysis.compare.runner import run_analysis
from echolab.analysis.compare.sources import catalog_source
from echolab.analysis.compare.specs import FeatureSpec, RunSettings
from echolab.db.catalog import Catalog
from echolab.db.transfer import import_captures
from echolab.labdir import LabDir

from pcaps import SIM_DEVICE_IP, write_class_captures

from grids import write_grids


def _import_campaign(cat: Catalog, folder: Path, campaign: int, per_class: int) -> None:
    write_class_captures(folder, per_class, seed=[campaign])
    import_captures(cat, folder, campaign=f"sim-{campaign}", device_ip=SIM_DEVICE_IP)


def test_analysis_of_catalog_captures(sqlite_lab: LabDir, tmp_path: Path) -> None:
    grids = write_grids(tmp_path, {"random_forest": {"params": {"n_estimators": 10}, "grid": {"criterion": ["gini"]}},
                                   "knn": {"grid": {"n_neighbors": [1, 3]}}}, labels=False)
    with Catalog.open(sqlite_lab) as cat:
        for c in (1, 2):
            _import_campaign(cat, tmp_path / f"c{c}", c, 3)
        source = catalog_source(cat)
        assert len(source.y) == 36 and sorted(set(source.groups)) == ["sim-1", "sim-2"]
        features = (FeatureSpec.of("tcptrace"), FeatureSpec.of("histogram", bins=15, include_acks=False),
                    FeatureSpec.of("histogram", bins=5, include_acks=True), FeatureSpec.of("size_hist"))
        settings = RunSettings(features=features, trials=2, grids_path=str(grids))
        res = run_analysis(cat, source, settings, name="real", jobs=1)
        s = res.run.summary
        # histogram:bins=15,include_acks=false is the plain histogram set: one feature set, not two.
        assert [f["key"] for f in s["features"]] == ["tcptrace", "histogram", "histogram[bins=5,include_acks=true]",
                                                    "size_hist"]
        assert res.computed == 4 * 2 * 2
        hist = s["features"][1]
        assert hist["n_features"] == 30 and len(hist["info"]["size_edges"]) == 16
        assert s["features"][3]["n_features"] == 15
        assert sorted(res.run.capture_ids) == sorted(c.id for c in cat.captures())
        by_campaign = run_analysis(cat, source, RunSettings(features=features[:1], split_by="campaign",
                                   grids_path=str(grids)), name="loco", jobs=1)
        assert by_campaign.run.summary["cells"]["tcptrace"]["knn"]["test_groups"] == ["sim-1", "sim-2"]
