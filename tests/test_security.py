"""Safe to share: nothing a lab receives may run code, reach outside the lab, or crash echolab.

Each test feeds one crafted input (built here, small) to the real command or
library function and checks three things: one ``Error:`` line (or a
rejection with its reason), no traceback, and that nothing outside the lab
changed: a marker file the attack would create or overwrite stays as it was.
docs/security.md says what echolab trusts and what it does not.
"""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from echolab.collector.sim import synthetic
from echolab.db.catalog import Catalog
from echolab.db.transfer import import_captures
from echolab.errors import LabError
from echolab.labdir import LabDir
from echolab.safepaths import UnsafePathError, contained, safe_component
from cliout import one_error, run_cli
from pcaps import SIM_DEVICE_IP, write_class_captures

DEVICE = SIM_DEVICE_IP
PRECIOUS = "precious: must stay as it was"


def _marker(folder: Path, name: str = "marker.txt") -> Path:
    path = folder / name
    path.write_text(PRECIOUS)
    return path


def _intact(marker: Path) -> bool:
    return marker.is_file() and not marker.is_symlink() and marker.read_text() == PRECIOUS


_cli = run_cli


def _capture(path: Path, label: str = "weather", i: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    synthetic.write_capture(path, label, 2.0, np.random.default_rng([i, 7]))
    return path


def _lab_files(lab: LabDir) -> set[str]:
    return {str(p.relative_to(lab.root)) for p in lab.root.rglob("*") if p.is_file() and "catalog" not in p.name}


# -- archives -------------------------------------------------------------------------------------


def _chain_tar(path: Path, target_len: int, levels_up: int, payload_name: str, payload: bytes) -> Path:
    """A tar whose symlink chain is longer than PATH_MAX once resolved (the CVE-2025-4517 family):
    os.path.realpath gives up inside it, so tarfile's "data" filter sees a path inside the target."""
    steps = "abcdefghijklmnop"
    comp = "d" * min(247, (4000 - target_len) // len(steps) - 1)
    with tarfile.open(path, "w") as tar:
        manifest = b"path,label,size_bytes\n"  # as an export starts
        info = tarfile.TarInfo("manifest.csv")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        prefix = ""
        for step in steps:
            folder = tarfile.TarInfo(os.path.join(prefix, comp))
            folder.type = tarfile.DIRTYPE
            tar.addfile(folder)
            link = tarfile.TarInfo(os.path.join(prefix, step))
            link.type, link.linkname = tarfile.SYMTYPE, comp
            tar.addfile(link)
            prefix = os.path.join(prefix, comp)
        long = os.path.join(*steps, "l" * 254)
        link = tarfile.TarInfo(long)
        link.type, link.linkname = tarfile.SYMTYPE, "../" * len(steps)
        tar.addfile(link)
        escape = tarfile.TarInfo("escape")
        escape.type, escape.linkname = tarfile.SYMTYPE, os.path.join(long, *([".."] * levels_up))
        tar.addfile(escape)
        member = tarfile.TarInfo(f"escape/{payload_name}")
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))
    return path


def test_a_tar_with_a_symlink_chain_past_the_path_limit_writes_nothing_outside(sqlite_lab: LabDir,
                                                                               tmp_path: Path) -> None:
    marker = _marker(tmp_path)  # the lab's parent: LAB/tmp/tmpXXXXXXXX/../../..
    evil = _chain_tar(tmp_path / "evil.tar", len(str(sqlite_lab.tmp_dir)) + 12, 3, marker.name, b"overwritten")
    code, out = _cli(sqlite_lab, "catalog", "import", str(evil))
    assert code == 1 and "holds a link" in one_error(out)
    assert _intact(marker)
    assert not list(sqlite_lab.tmp_dir.iterdir()) and not list(sqlite_lab.captures_dir.iterdir())


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "absolute", "dotdot", "device"])
def test_simple_tar_tricks_are_refused_whole(sqlite_lab: LabDir, tmp_path: Path, kind: str) -> None:
    marker = _marker(tmp_path)
    tar_path = tmp_path / "t.tar"
    with tarfile.open(tar_path, "w") as tar:
        manifest = b"path,label,size_bytes\nx.pcap,weather,5\n"
        info = tarfile.TarInfo("manifest.csv")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        bad = tarfile.TarInfo({"absolute": str(marker), "dotdot": f"../../../{marker.name}"}.get(kind, "x.pcap"))
        if kind == "symlink":
            bad.type, bad.linkname = tarfile.SYMTYPE, str(marker)
        elif kind == "hardlink":
            bad.type, bad.linkname = tarfile.LNKTYPE, str(marker)
        elif kind == "device":
            bad.type = tarfile.CHRTYPE
        if bad.type == tarfile.REGTYPE:
            bad.size = 5
            tar.addfile(bad, io.BytesIO(b"pwned"))
        else:
            tar.addfile(bad)
    code, out = _cli(sqlite_lab, "catalog", "import", str(tar_path))
    assert code == 1, out
    one_error(out)
    assert _intact(marker)
    assert not list(sqlite_lab.captures_dir.iterdir())


def test_a_tar_bomb_is_refused_before_it_is_written(sqlite_lab: LabDir, tmp_path: Path) -> None:
    """Without a manifest first, or announcing far more than the archive could hold, nothing is unpacked."""
    zeros = 32 * 1024 * 1024
    no_manifest = tmp_path / "bomb.tar.gz"
    with tarfile.open(no_manifest, "w:gz") as tar:
        info = tarfile.TarInfo("captures/x.pcap")
        info.size = zeros
        tar.addfile(info, io.BytesIO(bytes(zeros)))
    assert no_manifest.stat().st_size < 100_000
    code, out = _cli(sqlite_lab, "catalog", "import", str(no_manifest))
    assert code == 1 and "does not start with manifest.csv" in one_error(out)
    announced = tmp_path / "bomb2.tar.gz"
    with tarfile.open(announced, "w:gz") as tar:
        manifest = f"path,label,size_bytes\nx.pcap,weather,{zeros * 40}\n".encode()
        info = tarfile.TarInfo("manifest.csv")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    code, out = _cli(sqlite_lab, "catalog", "import", str(announced))
    assert code == 1 and "over 100 times its own size" in one_error(out)
    assert not list(sqlite_lab.tmp_dir.iterdir()) and not list(sqlite_lab.captures_dir.iterdir())


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar.xz"])
def test_a_truncated_export_is_one_line(sqlite_lab: LabDir, tmp_path: Path, suffix: str) -> None:
    folder = tmp_path / "in"
    write_class_captures(folder, 3, classes=["weather"])
    with Catalog.open(sqlite_lab) as cat:
        import_captures(cat, folder, campaign="home")
    plain = tmp_path / "export.tar"
    assert _cli(sqlite_lab, "catalog", "export", str(plain))[0] == 0
    data = plain.read_bytes()
    packed = tmp_path / f"export{suffix}"
    with tarfile.open(packed, "w:gz" if suffix == ".tar.gz" else "w:xz") as tar:
        with tarfile.open(plain) as src:
            for member in src:
                tar.addfile(member, src.extractfile(member))
    packed.write_bytes(packed.read_bytes()[: packed.stat().st_size * 2 // 3])
    other = LabDir.open(tmp_path / "lab2", create=True)
    code, out = _cli(other, "catalog", "import", str(packed))
    assert code == 1 and "damaged or truncated" in one_error(out), out
    assert not list(other.captures_dir.iterdir()) and not list(other.tmp_dir.iterdir())
    assert len(data) > 0


def test_an_echolab_export_still_imports(sqlite_lab: LabDir, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write_class_captures(folder, 2, classes=["music"])
    with Catalog.open(sqlite_lab) as cat:
        import_captures(cat, folder, campaign="home")
    out = tmp_path / "export.tar.gz"
    assert _cli(sqlite_lab, "catalog", "export", str(out))[0] == 0
    other = LabDir.open(tmp_path / "lab2", create=True)
    code, text = _cli(other, "catalog", "import", str(out))
    assert code == 0, text
    with Catalog.open(other) as cat:
        assert sorted(c.label for c in cat.captures()) == ["music", "music"]


def test_an_export_ships_no_file_from_outside_the_lab(sqlite_lab: LabDir, tmp_path: Path) -> None:
    """A catalog row (from another lab's catalog) whose path leads out of the lab is not exported."""
    secret = _marker(tmp_path, "secret.txt")
    _capture(tmp_path / "in" / "weather" / "a.pcap")
    with Catalog.open(sqlite_lab) as cat:
        import_captures(cat, tmp_path / "in", campaign="home")
        with cat.transaction():
            cat.captures()[0].path = "../secret.txt"
    out = tmp_path / "export.tar"
    code, text = _cli(sqlite_lab, "catalog", "export", str(out))
    assert code == 1 and "'../secret.txt' leads outside the lab; nothing was exported" in one_error(text)
    assert not out.exists() and not (tmp_path / "export.tar.part").exists() and _intact(secret)


# -- model files ----------------------------------------------------------------------------------


class _Payload:
    """An object whose unpickling runs a shell command (what a crafted joblib model file holds)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):  # noqa: ANN204 - pickle's protocol
        return (os.system, (self.command,))


def test_a_joblib_model_file_is_refused_without_running_it(tmp_path: Path) -> None:
    import joblib

    marker = _marker(tmp_path)
    evil = tmp_path / "model.joblib"
    joblib.dump({"header": {"format": "echolab-model-1"}, "payload": _Payload(f"echo pwned > {marker}")}, evil)
    capture = _capture(tmp_path / "one.pcap")
    code, out = _cli(None, "classify", "--model", str(evil), str(capture))
    assert code == 1
    assert "a joblib pickle" in one_error(out)
    assert f"echolab analyze convert-model --trust {evil}" in out
    assert _intact(marker)
    code, out = _cli(None, "analyze", "convert-model", str(evil))
    assert code == 1 and "pass --trust only for a file you made or trust" in one_error(out)
    assert _intact(marker)


def _model_zip(path: Path, objects: object) -> Path:
    import skops.io as sio

    from echolab.analysis.compare.modelfile import FORMAT
    from echolab.analysis.features.sets import EXTRACTOR_VERSION

    header = {"format": FORMAT, "extractor_version": EXTRACTOR_VERSION, "feature_set": "histogram",
              "feature_options": {"bins": 5}, "feature_key": "histogram[bins=5]", "versions": {}}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("header.json", json.dumps(header))
        zf.writestr("model.skops", sio.dumps(objects))
    return path


def test_a_model_file_with_an_untrusted_type_is_refused(tmp_path: Path) -> None:
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    from echolab.analysis.compare.modelfile import ModelFileError, load_model, read_header

    marker = _marker(tmp_path)
    evil = _model_zip(tmp_path / "m.echolab-model", {
        "transformer": FunctionTransformer(func=os.system), "scaler": StandardScaler(), "estimator": None})
    assert read_header(evil)["feature_set"] == "histogram"  # the header alone
    with pytest.raises(ModelFileError, match=r"holds .*system, which echolab does not load"):
        load_model(evil)
    assert _intact(marker)


def test_a_model_that_would_unpack_to_gigabytes_is_refused_before_it_is_inflated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deflate bomb inside the skops part: a small file whose members declare far more than the limit."""
    import io

    from sklearn.preprocessing import StandardScaler

    from echolab.analysis.compare import modelsafe
    from echolab.analysis.compare.modelfile import ModelFileError, load_model

    honest = _model_zip(tmp_path / "ok.echolab-model", {"transformer": None, "scaler": StandardScaler(),
                                                        "estimator": None})
    with zipfile.ZipFile(honest) as zf:
        header, blob = zf.read("header.json"), zf.read("model.skops")
    inner = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(blob)) as src, zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        dst.writestr("0.npy", b"\0" * (4 << 20))  # 4 MiB of zeros: a few KB deflated
    evil = tmp_path / "bomb.echolab-model"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("header.json", header)
        zf.writestr("model.skops", inner.getvalue())
    assert evil.stat().st_size < 64 << 10
    monkeypatch.setattr(modelsafe, "MAX_UNPACKED_BYTES", 1 << 20)
    with pytest.raises(ModelFileError, match=r"would unpack to 4,19\d,\d{3} bytes, over the limit of 1,048,576"):
        load_model(evil)
    monkeypatch.setattr(modelsafe, "MAX_UNPACKED_BYTES", 64 << 20)  # under the limit it is unpacked and read on
    with pytest.raises(ModelFileError) as err:
        load_model(evil)  # (a crafted header: refused for what it lacks, after unpacking)
    assert "would unpack" not in str(err.value)


def test_a_model_file_listing_too_many_members_is_refused_before_its_list_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python's zip reader makes an object of each listed member first: a list of millions would take gigabytes."""
    import io

    from sklearn.preprocessing import StandardScaler

    from echolab.analysis.compare import modelsafe
    from echolab.analysis.compare.modelfile import ModelFileError, load_model, read_header

    monkeypatch.setattr(modelsafe, "MAX_DIRECTORY_BYTES", 20_000)
    outer = tmp_path / "many.echolab-model"
    with zipfile.ZipFile(outer, "w") as zf:
        for i in range(500):
            zf.writestr(f"{i}", b"")
    with pytest.raises(ModelFileError, match=r"many.echolab-model lists 2\d,\d{3} bytes of members, over the limit"):
        read_header(outer)
    honest = _model_zip(tmp_path / "ok.echolab-model", {"transformer": None, "scaler": StandardScaler(),
                                                        "estimator": None})
    with zipfile.ZipFile(honest) as zf:
        header = zf.read("header.json")
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        for i in range(500):
            zf.writestr(f"{i}.npy", b"")
    crafted = tmp_path / "inner.echolab-model"
    with zipfile.ZipFile(crafted, "w") as zf:
        zf.writestr("header.json", header)
        zf.writestr("model.skops", inner.getvalue())
    with pytest.raises(ModelFileError, match=r"its model lists 2\d,\d{3} bytes of members, over the limit"):
        load_model(crafted)


# -- grids files ----------------------------------------------------------------------------------


def test_a_grids_file_cannot_call_what_it_names(sqlite_lab: LabDir, tmp_path: Path) -> None:
    from echolab.analysis.compare.grids import GridError, load_grids

    marker = tmp_path / "created-by-grids.txt"
    evil = tmp_path / "evil.toml"
    evil.write_text(f"""
[models.x]
estimator = "sklearn.utils._testing.check_output"
params = {{ args = ["sh", "-c", "echo pwned > {marker}"] }}
grid = {{}}
""")
    code, out = _cli(sqlite_lab, "analyze", "run", "--grids", str(evil), "--synthetic", "5")
    assert code == 1 and "is not one of the classifiers a grids file may name" in one_error(out)
    assert not marker.exists()
    with pytest.raises(GridError, match="not one of the classifiers"):
        load_grids(evil, check=False)
    assert not marker.exists()


@pytest.mark.parametrize("params, message", [
    ("{ evil = 1 }", "has no parameter(s) evil"),
    ('{ n_estimators = { nested = "table" } }', "parameter 'n_estimators' must be text, a number"),
    ("{ criterion = [1, 2] }", "parameter 'criterion' must be text, a number"),
])
def test_grids_parameters_are_plain_data_the_estimator_has(tmp_path: Path, params: str, message: str) -> None:
    from echolab.analysis.compare.grids import GridError, load_grids

    path = tmp_path / "g.toml"
    path.write_text(f'[models.rf]\nestimator = "sklearn.ensemble.RandomForestClassifier"\nparams = {params}\n')
    with pytest.raises(GridError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_grids(path)
    if "has no parameter" in message:  # names need the class: checked before a model is built
        from echolab.analysis.compare.grids import check_models

        with pytest.raises(GridError, match="has no parameter"):
            check_models(load_grids(path, check=False).values(), path)
    else:  # plain data is checked without importing anything
        with pytest.raises(GridError, match=message):
            load_grids(path, check=False)


# -- paths from manifests, folders and names -------------------------------------------------------


def test_manifest_rows_stay_inside_the_manifests_folder(sqlite_lab: LabDir, tmp_path: Path) -> None:
    outside = _capture(tmp_path / "elsewhere" / "private.pcap")
    data = tmp_path / "data"
    data.mkdir()
    _capture(data / "ok.pcap", "music", 3)
    manifest = data / "manifest.csv"
    manifest.write_text(f"path,label\n{outside},weather\n../elsewhere/private.pcap,weather\nok.pcap,music\n")
    with Catalog.open(sqlite_lab) as cat:
        report = import_captures(cat, manifest)
        assert len(report.imported) == 1 and [c.label for c in cat.captures()] == ["music"]
    assert all("leads outside" in why for _path, why in report.rejected) and len(report.rejected) == 2
    placed = [p for p in sqlite_lab.captures_dir.rglob("*") if p.is_file()]
    assert len(placed) == 1 and placed[0].read_bytes() != outside.read_bytes()


def test_a_folder_import_does_not_follow_links_out(sqlite_lab: LabDir, tmp_path: Path) -> None:
    outside = _capture(tmp_path / "elsewhere" / "private.pcap")
    folder = tmp_path / "folder"
    (folder / "weather").mkdir(parents=True)
    (folder / "weather" / "link.pcap").symlink_to(outside)
    with Catalog.open(sqlite_lab) as cat:
        report = import_captures(cat, folder)
        assert not report.imported and "is a link to a file outside" in report.rejected[0][1]
        assert not cat.captures(status=None)
    assert not [p for p in sqlite_lab.captures_dir.rglob("*") if p.is_file()]


def test_names_that_would_leave_their_folder_are_refused(sqlite_lab: LabDir, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    _capture(folder / "reports" / "a.pcap")
    code, out = _cli(sqlite_lab, "catalog", "import", str(folder), "--campaign", "..")
    assert "campaign '..' cannot be used" in out
    assert not [p for p in sqlite_lab.reports_dir.rglob("*")]
    long_label = "x" * 300
    _capture(tmp_path / "long" / long_label[:200] / "a.pcap")
    manifest = tmp_path / "long" / "manifest.csv"
    manifest.write_text(f"path,label\n{long_label[:200]}/a.pcap,{long_label}\n")
    code, out = _cli(sqlite_lab, "catalog", "import", str(manifest))
    assert "is 300 characters long; the limit is 120" in out
    with Catalog.open(sqlite_lab) as cat:
        assert not cat.campaigns()  # no empty campaign left behind
    with pytest.raises(UnsafePathError):
        sqlite_lab.report_dir("../../outside/x")
    assert safe_component("what is the weather?") == "what-is-the-weather"
    for bad in ("..", ".", "", "///"):
        with pytest.raises(UnsafePathError):
            safe_component(bad)
    with pytest.raises(UnsafePathError):
        contained("../x", tmp_path / "folder")


def test_a_stored_run_named_like_a_path_writes_no_report_outside(sqlite_lab: LabDir, tmp_path: Path) -> None:
    from echolab.db.records import AnalysisRun

    outside = tmp_path / "outside"
    with Catalog.open(sqlite_lab) as cat, cat.transaction() as s:
        s.add(AnalysisRun(name="../../outside/x", status="done", summary={"models": [], "features": []}))
    code, out = _cli(sqlite_lab, "analyze", "report", "../../outside/x")
    assert code == 1 and "run '../../outside/x' cannot be used: it holds a path separator" in one_error(out)
    assert not outside.exists()


# -- denial of service and tracebacks ---------------------------------------------------------------


def test_a_repeat_bomb_in_a_prompt_list_is_reported_not_expanded(sqlite_lab: LabDir) -> None:
    (sqlite_lab.prompts_dir / "weather.txt").write_text("# repeat: 100000000000\n{wake}, what is the weather\n")
    code, out = _cli(sqlite_lab, "prompts", "validate")
    assert code == 1 and "more than 10000 times" in out
    code, out = _cli(sqlite_lab, "prompts", "ls")
    assert code == 0, out


def test_manifests_that_are_not_utf8_or_have_huge_fields_are_one_line(sqlite_lab: LabDir, tmp_path: Path) -> None:
    latin = tmp_path / "latin.csv"
    latin.write_bytes("path,label\ncafé.pcap,weather\n".encode("latin-1"))
    code, out = _cli(sqlite_lab, "catalog", "import", str(latin))
    assert code == 1 and "is not UTF-8 text" in one_error(out)
    huge = tmp_path / "huge.csv"
    huge.write_text("path,label\n" + "a" * 200_000 + ".pcap,weather\n")
    code, out = _cli(sqlite_lab, "catalog", "import", str(huge))
    assert code == 1 and "is not a readable CSV" in one_error(out)
    with Catalog.open(sqlite_lab) as cat:
        assert not cat.campaigns()


@pytest.mark.parametrize("row", ["inf,100,1", "nan,100,1", "0.5,99999999999999999999999,1", "1e300,5,1"])
def test_trace_files_with_impossible_values_are_rejected(sqlite_lab: LabDir, tmp_path: Path, row: str) -> None:
    folder = tmp_path / "traces"
    (folder / "weather").mkdir(parents=True)
    (folder / "weather" / "t.csv").write_text(f"time,size,direction\n0.0,100,1\n{row}\n")
    with Catalog.open(sqlite_lab) as cat:
        report = import_captures(cat, folder)
    assert not report.imported and "line 3" in report.rejected[0][1]


def _far_future_pcapng(path: Path) -> Path:
    """A pcapng whose packets are stamped past year 9999 (pcapng's 64-bit microseconds allow it)."""
    import dpkt

    def block(btype: int, body: bytes) -> bytes:
        pad = body + b"\0" * (-len(body) % 4)
        return struct.pack("<II", btype, len(pad) + 12) + pad + struct.pack("<I", len(pad) + 12)

    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack("<HHI", 1, 0, 65535))
    for i in range(4):
        tcp = dpkt.tcp.TCP(sport=443, dport=50000, seq=i, flags=16, data=b"x" * 100)
        ip = dpkt.ip.IP(src=bytes([10, 0, 0, 1]), dst=bytes([10, 0, 0, 2]), p=6, data=tcp)
        ip.len = 20 + len(bytes(tcp))
        frame = bytes(dpkt.ethernet.Ethernet(src=b"\2" * 6, dst=b"\4" * 6, data=ip))
        ts = (400_000_000_000 + i) * 1_000_000
        out += block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame)) + frame)
    path.write_bytes(out)
    return path


def test_pcapng_times_past_year_9999_are_counted_not_fatal(sqlite_lab: LabDir, tmp_path: Path) -> None:
    from echolab.captures.reader import summarize

    far = _far_future_pcapng(tmp_path / "far.pcapng")
    code, out = _cli(None, "catalog", "segments", str(far), "--device-ip", "10.0.0.2")
    assert "Traceback" not in out
    assert summarize(far).packets == 0
    from echolab.captures.pcapng import PcapngWalker
    from echolab.captures.reader import ReadStats
    from echolab.collector.live import walked_packets

    stats = ReadStats()  # the live readers' walk of a growing file skips and counts them the same way
    with open(far, "rb") as fh:
        walked = [pkt for _btype, _block, pkt in walked_packets(PcapngWalker(far, growing=True), fh, stats)]
    assert walked == [None, None, None, None, None, None] and stats.malformed == 4
    code, out = _cli(sqlite_lab, "catalog", "import", str(far), "--split", "gap=5", "--label-from", "(far)")
    assert "Traceback" not in out


def test_labels_that_look_like_matplotlib_math_are_drawn_as_text(tmp_path: Path) -> None:
    from echolab.analysis.compare.classify import Prediction, timeline_figure

    preds = [Prediction("c.pcap", 1_700_000_000.0 + 60 * i, 1_700_000_005.0 + 60 * i, label, 0.9)
             for i, label in enumerate([r"$\undefinedmacro$", "weather", r"$x^$"])]
    fig = timeline_figure(preds)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"


def test_lab_settings_that_cannot_be_used_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from echolab.labdir import CATALOG_URL_ENV

    monkeypatch.delenv(CATALOG_URL_ENV, raising=False)
    lab = LabDir.open(tmp_path / "lab", create=True)
    elsewhere = tmp_path / "elsewhere.sqlite"
    (lab.root / "echolab.toml").write_text(f'catalog_url = "sqlite:///{elsewhere}"\n')
    code, out = _cli(lab, "catalog", "init")
    assert code == 1 and "names a SQLite file outside the lab" in one_error(out)
    assert not elsewhere.exists()
    (lab.root / "echolab.toml").write_text("audio = 5\n")
    code, out = _cli(lab, "prompts", "synth")
    assert code == 1 and "[audio] in echolab.toml must be a table" in one_error(out)
    (lab.root / "echolab.toml").write_text("catalog_lock_timeout_s = inf\n")
    code, out = _cli(lab, "catalog", "stats")
    assert code == 1 and "catalog_lock_timeout_s in" in one_error(out)
    (lab.root / "echolab.toml").write_bytes("wake_word = 'Échø'\n".encode("latin-1"))
    code, out = _cli(lab, "catalog", "stats")
    assert code == 1 and "is not UTF-8 text" in one_error(out)
    (lab.root / "echolab.toml").write_text('speech = "espeak"\n')
    from echolab.prompts.errors import SpeechError
    from echolab.prompts.synth import engine_for_lab

    with pytest.raises(SpeechError, match="speech in .* must be a table"):
        engine_for_lab(LabDir.open(lab.root))
    (lab.root / "echolab.toml").write_text('[speech.recorded]\nfolder = "../../etc"\n')
    with pytest.raises(SpeechError, match="leads outside"):
        engine_for_lab(LabDir.open(lab.root), "recorded")


@pytest.mark.parametrize("url", ["sqlite+pysqlite:////{out}/outside1.sqlite", "sqlite:///file:/{out}/outside2.sqlite?uri=true",
                                 "sqlite:///file:outside3.sqlite?mode=rwc&uri=true", "sqlite:///{out}/x.sqlite?uri=1",
                                 "sqlite+pysqlite:///../outside4.sqlite", "mysql://u@localhost/x", "not a url"])
def test_a_catalog_url_in_lab_settings_cannot_put_the_catalog_outside_the_lab(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    from echolab.labdir import CATALOG_URL_ENV

    monkeypatch.delenv(CATALOG_URL_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "outside"
    out.mkdir()
    lab = LabDir.open(tmp_path / "lab", create=True)
    (lab.root / "echolab.toml").write_text(f"catalog_url = {json.dumps(url.format(out=str(out).lstrip('/')))}\n")
    code, out_text = _cli(lab, "catalog", "ls")
    assert code == 1 and f"catalog_url in {lab.root / 'echolab.toml'}" in one_error(out_text)
    assert not list(out.iterdir()) and not list(tmp_path.glob("*.sqlite")) and not list(tmp_path.glob("file*"))


@pytest.mark.parametrize("url", ["sqlite+pysqlite:///{lab}/inside.sqlite", "sqlite:///inside.sqlite"])
def test_a_catalog_url_in_lab_settings_may_name_a_file_inside_the_lab(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    from echolab.labdir import CATALOG_URL_ENV

    monkeypatch.delenv(CATALOG_URL_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # a relative file is the lab's, not the working directory's
    lab = LabDir.open(tmp_path / "lab", create=True)
    (lab.root / "echolab.toml").write_text(f"catalog_url = {json.dumps(url.format(lab=lab.root))}\n")
    code, out = _cli(lab, "catalog", "ls")
    assert code == 0, out
    assert (lab.root / "inside.sqlite").is_file() and not (tmp_path / "inside.sqlite").exists()
    (lab.root / "echolab.toml").write_text('catalog_url = "postgresql+psycopg://echolab@dbhost/echolab"\n')
    assert LabDir.open(lab.root).catalog_url == "postgresql+psycopg://echolab@dbhost/echolab"


@pytest.mark.parametrize("query", ["sslkeylogfile={out}/keys.log", "passfile={out}/pgpass", "service=lab",
                                   "sslmode=require&sslrootcert={out}/ca.pem", "options=-c%20statement_timeout%3D0",
                                   "host=/var/run/postgresql", "host=dbhost,/tmp", "host=C:\\pg"])
def test_a_postgres_catalog_url_in_lab_settings_cannot_name_files_or_server_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, query: str) -> None:
    from echolab.labdir import CATALOG_URL_ENV

    monkeypatch.delenv(CATALOG_URL_ENV, raising=False)
    lab = LabDir.open(tmp_path / "lab", create=True)
    url = f"postgresql+psycopg://echolab@127.0.0.1:9/echolab?{query.format(out=tmp_path)}"
    (lab.root / "echolab.toml").write_text(f"catalog_url = {json.dumps(url)}\n")
    why = "names no network host" if query.startswith("host=") else "options that name files"
    with pytest.raises(LabError, match=why):
        LabDir.open(lab.root).catalog_url
    code, out = _cli(lab, "catalog", "ls")
    assert code == 1 and "set ECHOLAB_CATALOG_URL" in one_error(out)
    assert not (tmp_path / "keys.log").exists()
    # the lab's own choice stays the lab's: the environment may name any option
    monkeypatch.setenv(CATALOG_URL_ENV, url)
    assert LabDir.open(lab.root).catalog_url == url
    monkeypatch.delenv(CATALOG_URL_ENV)
    for ok in ("postgresql+psycopg://echolab@dbhost:5433/echolab?sslmode=verify-full&connect_timeout=5&application_name=x",
               "postgresql+psycopg://echolab@/echolab?host=db1,db2&target_session_attrs=read-write",
               "postgresql+psycopg://echolab@/echolab?hostaddr=10.0.0.5"):
        (lab.root / "echolab.toml").write_text(f"catalog_url = {json.dumps(ok)}\n")
        assert LabDir.open(lab.root).catalog_url == ok
    (lab.root / "echolab.toml").write_text('catalog_url = "postgresql+psycopg://echolab@/echolab"\n')  # a socket
    with pytest.raises(LabError, match="names no network host"):
        LabDir.open(lab.root).catalog_url


@pytest.mark.parametrize("file", ["../../../outside_secret.wav", "{abs}"])
def test_a_recordings_manifest_cannot_name_audio_outside_its_folder(
        sqlite_lab: LabDir, tmp_path: Path, file: str) -> None:
    import soundfile as sf

    secret = tmp_path / "outside_secret.wav"
    sf.write(secret, np.sin(np.arange(8000) / 5.0).astype(np.float32) * 0.1, 16000)
    recordings = sqlite_lab.prompts_dir / "recordings"
    recordings.mkdir(parents=True)
    from echolab.prompts.lists import read_list

    texts = {p.text for p in read_list("weather", sqlite_lab).prompts()}
    rows = "".join(f"{json.dumps(t)},{file.format(abs=secret)}\n" for t in sorted(texts))
    (recordings / "manifest.csv").write_text("text,file\n" + rows)
    code, out = _cli(sqlite_lab, "prompts", "synth", "--class", "weather", "--engine", "recorded")
    line = one_error(out)
    assert code == 1 and "manifest.csv line 2: file" in line and "leads outside" in line, out
    assert not [p for p in sqlite_lab.audio_dir.rglob("*") if p.is_file()]


@pytest.mark.parametrize("settings, problem", [
    ("[audio]\nlead_in_s = inf\n", "lead_in_s inf must be a number from 0 to 10 s"),
    ("[audio]\nlead_in_s = 1e12\n", "lead_in_s 1000000000000.0 must be a number from 0 to 10 s"),
    ("[audio]\ntail_s = nan\n", "tail_s nan must be a number"),
    ("[audio]\ntarget_dbfs = -inf\n", "target_dbfs -inf must be a number"),
    ("[audio]\nsample_rate = 16000.5\n", "sample_rate 16000.5 must be a whole number"),
    ("[audio]\nlead_in_s = \"x\"\n", "lead_in_s 'x' must be a number"),
    ("[speech.espeak]\nspeed = \"x\"\n", "espeak-ng speed must be a number from 80 to 450"),
    ("[speech.espeak]\npitch = inf\n", "espeak-ng pitch must be a number from 0 to 99"),
    ("[speech.espeak]\nvoice = 5\n", "espeak-ng voice 5 is not a voice name"),
    ("[speech.espeak]\ntimeout = 1e300\n", "espeak-ng timeout must be a number"),
    ("[speech]\nengine = \"gtts\"\n[speech.gtts]\ntld = []\n", "gTTS tld [] is not a top-level domain"),
    ("[speech]\nengine = \"recorded\"\n[speech.recorded]\nfolder = 5\n", "folder in"),
])
def test_lab_settings_of_the_wrong_type_or_size_are_one_line(
        sqlite_lab: LabDir, settings: str, problem: str) -> None:
    (sqlite_lab.root / "echolab.toml").write_text(settings)
    code, out = _cli(sqlite_lab, "prompts", "synth", "--class", "weather")
    line = one_error(out)
    assert code == 1 and problem in line and "echolab.toml" in line, out


@pytest.mark.parametrize("repeat", ["\u00b2", "9" * 5000, "\u0663", "1\u00b9"])
def test_a_repeat_that_is_not_ascii_digits_or_far_too_long_is_a_validation_error(
        sqlite_lab: LabDir, repeat: str) -> None:
    (sqlite_lab.prompts_dir / "weather.txt").write_text(f"# repeat: {repeat}\n{{wake}}, what is the weather\n")
    code, out = _cli(sqlite_lab, "prompts", "validate")
    assert code == 1 and ("needs a whole number from 1 to 10000" in out or "more than 10000 times" in out), out


def test_a_huge_template_is_a_validation_error_not_a_memory_error(sqlite_lab: LabDir) -> None:
    from echolab.prompts.lists import MAX_TEMPLATE_CHARS, parse_list

    path = sqlite_lab.prompts_dir / "weather.txt"
    path.write_text("# template: {wake}, {item}" + "x" * 500_000 + "\n" + "ab\n" * 120_000)
    parsed = parse_list(path)
    assert any(f"the limit is {MAX_TEMPLATE_CHARS}" in p.message for p in parsed.problems)
    code, out = _cli(sqlite_lab, "prompts", "validate")
    assert code == 1 and f"the limit is {MAX_TEMPLATE_CHARS}" in out


def test_the_web_home_page_escapes_the_lab_path(tmp_path: Path) -> None:
    from echolab.db.serve import metadata

    lab = LabDir.open(tmp_path / "<img src=x onerror=alert(1)>", create=True)
    html = metadata(lab)["description_html"]
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_feature_csv_export_is_the_same_with_and_without_pandas(sqlite_lab: LabDir, tmp_path: Path) -> None:
    from echolab.analysis.features.store import export_features, feature_table

    folder = tmp_path / "in"
    write_class_captures(folder, 2, classes=["weather", "music"])
    with Catalog.open(sqlite_lab) as cat:
        import_captures(cat, folder, campaign="home", device_ip=DEVICE)
        n = export_features(cat, tmp_path / "f.csv", set_name="kfp")
        frame = feature_table(cat, set_name="kfp")
    assert n == 4
    with open(tmp_path / "f.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == list(frame.columns)
    assert [[float(v) for v in r[4:]] for r in rows[1:]] == frame.iloc[:, 4:].to_numpy().tolist()


@pytest.mark.parametrize("what", ["grids", "settings", "params", "profiles"])
def test_a_toml_file_nested_too_deep_or_too_large_is_refused_in_one_line(tmp_path: Path, what: str) -> None:
    """A few thousand '[' exhaust tomllib's recursion: every shared TOML file says so in one line, no traceback."""
    from echolab.analysis.compare.grids import GridError, load_grids
    from echolab.collector.sim.errors import ParamsError
    from echolab.collector.sim.households import HouseholdError, load_households
    from echolab.collector.sim.params import load_params
    from echolab.errors import LabError
    from echolab.labdir import SETTINGS_FILE, LabDir
    from echolab.tomlfiles import MAX_TOML_BYTES

    deep = "a = " + "[" * 5000 + "]" * 5000 + "\n"
    lab = tmp_path / "lab"
    LabDir.open(lab, create=True)
    target = lab / SETTINGS_FILE if what == "settings" else tmp_path / f"{what}.toml"
    load = {"grids": (load_grids, GridError), "params": (load_params, ParamsError),
            "profiles": (load_households, HouseholdError),
            "settings": (lambda _p: LabDir.open(lab), LabError)}[what]
    target.write_text(deep)
    with pytest.raises(load[1], match="is not valid TOML: it nests too deep"):
        load[0](target)
    with open(target, "wb") as f:
        f.truncate(MAX_TOML_BYTES + 1)
    with pytest.raises(load[1], match="over the 4 MB"):
        load[0](target)


def test_a_model_file_whose_header_nests_too_deep_is_refused_in_one_line(tmp_path: Path) -> None:
    from echolab.analysis.compare.modelfile import HEADER_MEMBER, MODEL_MEMBER, ModelFileError, load_model
    from echolab.cli import app
    from typer.testing import CliRunner

    model = tmp_path / "deep.echolab-model"
    with zipfile.ZipFile(model, "w") as z:
        z.writestr(HEADER_MEMBER, "[" * 200_000 + "]" * 200_000)
        z.writestr(MODEL_MEMBER, b"x")
    with pytest.raises(ModelFileError, match="its header is not JSON \\(it nests too deep\\)"):
        load_model(model)
    capture = tmp_path / "c.pcap"
    capture.write_bytes(b"")
    res = CliRunner().invoke(app, ["classify", "--model", str(model), str(capture)])
    assert res.exit_code != 0 and "nests too deep" in " ".join(res.output.split()), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
