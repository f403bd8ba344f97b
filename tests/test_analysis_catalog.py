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


def test_an_unchanged_rerun_does_not_load_the_models_library(sqlite_lab: LabDir, tmp_path: Path) -> None:
    """The fast path of an unchanged ``analyze run``: nothing to fit, so scikit-learn (about 2 s of imports
    on the 2-core build machine) is never imported. A fresh process, as a user's second run is."""
    import json
    import subprocess
    import sys

    grids = write_grids(tmp_path, {"knn": {"grid": {"n_neighbors": [1, 3]}}}, labels=False)
    with Catalog.open(sqlite_lab) as cat:
        _import_campaign(cat, tmp_path / "c1", 1, 5)
    args = ["--lab", str(sqlite_lab.root), "analyze", "run", "-f", "tcptrace", "-m", "knn", "--trials", "2",
            "--grids", str(grids)]
    script = ("import json, sys\nfrom echolab.cli import app\n"
              "try:\n    app(sys.argv[1:], standalone_mode=False)\n"
              "finally:\n    print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn')[:3]))\n")
    runs = [subprocess.run([sys.executable, "-P", "-c", script, *args], capture_output=True, text=True, cwd=tmp_path)
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0 and "Error" not in run.stdout + run.stderr, (run.stdout + run.stderr)[-2000:]
    first, again = (json.loads(run.stdout.strip().splitlines()[-1]) for run in runs)
    assert first, "the first run fits models: scikit-learn is loaded"
    assert again == [], f"an unchanged rerun imported {again}"
