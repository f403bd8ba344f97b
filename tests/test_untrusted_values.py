"""Values of the right syntax but the wrong type or range, in files a user receives: one ``Error:`` line each.

A model file's header, a simulation parameters file and a grids file are all
plain data, and each is checked for what it holds, not just its shape
(docs/security.md): a header whose classes are a number, parameters of ``inf``,
a grids file's ``criterion = "bogus"`` end in one line naming the file, never
in a traceback from deep inside numpy or scikit-learn.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import pytest

from echolab.db.catalog import Catalog
from echolab.db.transfer import import_captures
from echolab.labdir import LabDir

from cliout import one_error, run_cli
from grids import write_grids
from pcaps import SIM_DEVICE_IP, write_class_captures

T0 = 1_700_000_000.0


def _cli(*args: str) -> tuple[int, str]:
    return run_cli(None, *args, width=200)


# -- model file headers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A model file made by echolab itself, and a capture to classify with it."""
    from echolab.labdir import CATALOG_URL_ENV
    import os

    root = tmp_path_factory.mktemp("trained")
    saved = os.environ.pop(CATALOG_URL_ENV, None)
    try:
        lab = LabDir.open(root / "lab", create=True)
        write_class_captures(root / "train", 3, start_ts=T0)
        with Catalog.open(lab) as cat:
            import_captures(cat, root / "train", campaign="train", device_ip=SIM_DEVICE_IP)
        write_grids(root, {"decision_tree": {"grid": {"max_depth": [3]}}}, labels=False)
        model = root / "model.echolab-model"
        code, out = _cli("--lab", str(lab.root), "analyze", "train", "--campaign", "train", "--model",
                         "decision_tree", "--features", "histogram:bins=10", "--grids", str(root / "grids.toml"),
                         "--out", str(model))
        assert code == 0, out
    finally:
        if saved is not None:
            os.environ[CATALOG_URL_ENV] = saved
    capture = write_class_captures(root / "one", 1, seed=(9,), classes=["weather"], start_ts=T0)[0]
    return model, capture


def _edited(model: Path, out: Path, **changes: object) -> Path:
    with zipfile.ZipFile(model) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "header.json":
                data = json.dumps({**json.loads(data), **changes}).encode()
            dst.writestr(info, data)
    return out


def test_an_unedited_model_file_classifies(trained: tuple[Path, Path]) -> None:
    model, capture = trained
    code, out = _cli("classify", "--model", str(model), str(capture))
    assert code == 0, out


@pytest.mark.parametrize("changes, message", [
    ({"reject": "ab"}, "reject"),
    ({"reject": {"threshold": "x"}}, "threshold"),
    ({"reject": {"threshold": float("nan")}}, "threshold"),
    ({"reject": {"threshold": float("inf")}}, "threshold"),
    ({"dtype": "garbage"}, "dtype"),
    ({"classes": 5}, "classes"),
    ({"classes": ["a", 3]}, "classes"),
    ({"adapt": "magic"}, "adapt"),
    ({"feature_options": [1]}, "feature_options"),
    ({"best_params": "x"}, "best_params"),
    ({"cv_score": "high"}, "cv_score"),
    ({"n_captures": -1}, "n_captures"),
    ({"campaigns": {"a": 1}}, "campaigns"),
    ({"counts": {"a": "b"}}, "counts"),
    ({"feature_names": 7}, "feature_names"),
    ({"model_name": ["x"]}, "model_name"),
])
def test_a_model_header_of_the_wrong_types_is_one_line(trained: tuple[Path, Path], tmp_path: Path,
                                                         changes: dict, message: str) -> None:
    from echolab.analysis.compare.modelfile import ModelFileError, load_model

    model, capture = trained
    bad = _edited(model, tmp_path / "bad.echolab-model", **changes)
    with pytest.raises(ModelFileError, match=message):
        load_model(bad)
    code, out = _cli("classify", "--model", str(bad), str(capture))
    assert code != 0
    line = one_error(out)
    assert str(bad) in line and message in line


def _rename_member(data: bytes, old: bytes, new: bytes) -> bytes:
    """*data* (a zip) with member name *old* replaced by *new* (same length) and the UTF-8 flag set."""
    assert len(old) == len(new)
    out = bytearray(data.replace(old, new))
    for sig, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (i := out.find(sig, start)) >= 0:
            name_len = struct.unpack_from("<H", out, i + (26 if sig == b"PK\x03\x04" else 28))[0]
            name_at = i + (30 if sig == b"PK\x03\x04" else 46)
            if bytes(out[name_at:name_at + name_len]) == new:
                flags = struct.unpack_from("<H", out, i + flag_at)[0]
                struct.pack_into("<H", out, i + flag_at, flags | 0x800)
            start = i + 4
    return bytes(out)


def test_a_model_file_with_a_member_name_that_is_not_utf8_is_one_line(trained: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    from echolab.analysis.compare.modelfile import ModelFileError, load_model

    model, capture = trained
    extra = tmp_path / "extra.echolab-model"
    extra.write_bytes(model.read_bytes())
    with zipfile.ZipFile(extra, "a") as zf:
        zf.writestr("zzzz", b"x")
    bad = tmp_path / "bad.echolab-model"
    bad.write_bytes(_rename_member(extra.read_bytes(), b"zzzz", b"\xff\xfe\xfd\xfc"))
    with pytest.raises(ModelFileError, match="bad.echolab-model"):
        load_model(bad)
    code, out = _cli("classify", "--model", str(bad), str(capture))
    assert code != 0 and str(bad) in one_error(out)


# -- simulation parameters -------------------------------------------------------------------------


def _params_with(tmp_path: Path, section: str, key: str, value: str) -> Path:
    """The packaged parameters file with ``key = value`` in [section] (replacing its own value)."""
    from echolab.collector.sim.params import DEFAULT_PARAMS

    lines, current, done = [], None, False
    for line in DEFAULT_PARAMS.read_text().splitlines():
        if line.startswith("["):
            current = line.strip()
        if current == f"[{section}]" and line.split("=")[0].strip() == key:
            line, done = f"{key} = {value}", True
        lines.append(line)
    assert done, (section, key)
    path = tmp_path / "params.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("section, key, value", [
    ("upload", "header_bytes", "inf"),
    ("upload", "bytes_per_s", "inf"),
    ("synthetic", "rtt_s", "inf"),
    ("synthetic", "mss", "0"),
    ("synthetic", "mss", "1460.5"),
    ("upload", "header_bytes", "1e15"),
    ("speech", "record_bytes", "1e-300"),
    ("upload", "chunk_s", "1e-300"),
    ("keepalive", "interval_s", "nan"),
    ("classes.weather", "speech_s", "{ dist = \"normal\", mean = inf, sd = 1 }"),
    ("classes.weather", "speech_s", "{ dist = \"normal\", mean = 1e300, sd = 1 }"),
    ("classes.weather", "think_s", "{ dist = \"lognormal\", median = 1, sigma = 1e6 }"),
])
def test_simulation_parameters_out_of_range_are_one_line(tmp_path: Path, section: str, key: str, value: str) -> None:
    params = _params_with(tmp_path, section, key, value)
    code, out = _cli("sim", "synth", str(tmp_path / "out"), "--class", "weather", "--params", str(params))
    assert code != 0
    line = one_error(out)
    assert str(params) in line and key in line


def test_the_packaged_parameters_still_load() -> None:
    from echolab.collector.sim.params import load_params

    assert load_params().synthetic["mss"] == 1460


# -- grids file values -----------------------------------------------------------------------------


@pytest.mark.parametrize("table, param", [
    ('params = { criterion = "bogus" }', "criterion"),
    ("params = { max_depth = -5 }", "max_depth"),
    ('grid = { criterion = ["gini", "bogus"] }', "criterion"),
    ("grid = { min_samples_split = [2, 0] }", "min_samples_split"),
])
def test_grids_values_the_estimator_refuses_are_one_line(sqlite_lab: LabDir, tmp_path: Path, table: str,
                                                         param: str) -> None:
    grids = tmp_path / "g.toml"
    grids.write_text(f'[models.dt]\nestimator = "sklearn.tree.DecisionTreeClassifier"\n{table}\n')
    code, out = _cli("--lab", str(sqlite_lab.root), "analyze", "run", "--grids", str(grids), "--synthetic", "5")
    assert code != 0
    line = one_error(out)
    assert str(grids) in line and "'dt'" in line and param in line
