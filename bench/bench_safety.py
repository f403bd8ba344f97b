#!/usr/bin/env python3
"""What the safety rules cost: unpacking a catalog export, and loading a model file.

* Unpacking: ``echolab.db.archive.extract_export`` (member by member, each
  checked against the manifest) against ``tarfile``'s own
  ``extractall(filter="data")``, on the same export of synthetic captures.
* Model files: ``load_model`` (JSON header + skops with a trusted-type list)
  against ``joblib.load`` of the same fitted parts (what echolab did before,
  and what runs any code in the file).

Runs standalone from the repository root::

    .venv/bin/python -P bench/bench_safety.py --captures 300 --repeats 5

Writes bench/results/safety.json (``--json FILE`` for another place).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_archive(work: Path, n: int, repeats: int) -> dict:
    from echolab.collector.sim import synthetic
    from echolab.db.archive import extract_export
    from echolab.db.catalog import Catalog
    from echolab.db.transfer import export_catalog, import_captures
    from echolab.labdir import LabDir

    folder = work / "in"
    labels = ["weather", "music", "quotes"]
    for i in range(n):
        path = folder / labels[i % 3] / f"{i}.pcap"
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic.write_capture(path, labels[i % 3], 2.0, np.random.default_rng([i, 1]))
    lab = LabDir.open(work / "lab", create=True)
    export = work / "export.tar.gz"
    with Catalog.open(lab) as cat:
        import_captures(cat, folder, campaign="bench", device_ip="10.77.0.2")
        export_catalog(cat, export, cat.captures())
    counter = iter(range(10_000))

    def ours() -> None:
        target = work / f"ours{next(counter)}"
        target.mkdir()
        extract_export(export, target)

    def stdlib() -> None:
        target = work / f"std{next(counter)}"
        target.mkdir()
        with tarfile.open(export) as tar:
            tar.extractall(target, filter="data")

    ours_s, std_s = _best(ours, repeats), _best(stdlib, repeats)
    return {"captures": n, "archive_bytes": export.stat().st_size, "echolab_extract_export_s": round(ours_s, 4),
            "tarfile_extractall_data_s": round(std_s, 4), "ratio_echolab_over_tarfile": round(ours_s / std_s, 3)}


def bench_model(work: Path, repeats: int) -> dict:
    import joblib
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.preprocessing import StandardScaler

    from echolab.analysis.compare.modelsafe import dump_objects, load_objects

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(600, 52)), np.array(["a", "b", "c"] * 200)
    objects = {"transformer": None, "scaler": StandardScaler().fit(X),
               "estimator": RandomForestClassifier(n_estimators=400, random_state=0).fit(X, y)}
    blob = dump_objects(objects)
    buf = io.BytesIO()
    joblib.dump(objects, buf, compress=3)
    pickled = buf.getvalue()
    ours_s = _best(lambda: load_objects(blob), repeats)
    pickle_s = _best(lambda: joblib.load(io.BytesIO(pickled)), repeats)
    loaded = load_objects(blob)["estimator"]
    assert (loaded.predict(X) == objects["estimator"].predict(X)).all()
    return {"model": "random forest, 400 trees, 52 features, 600 rows", "skops_bytes": len(blob),
            "joblib_bytes": len(pickled), "echolab_skops_load_s": round(ours_s, 4),
            "joblib_load_s": round(pickle_s, 4), "ratio_skops_over_joblib": round(ours_s / pickle_s, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captures", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "safety.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = {"archive": bench_archive(Path(tmp), args.captures, args.repeats),
                  "model_file": bench_model(Path(tmp), args.repeats),
                  "python": platform.python_version(), "repeats": args.repeats, "timing": "best of repeats"}
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
