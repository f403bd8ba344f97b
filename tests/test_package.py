"""echolab as a package: one import namespace, installed; a library that imports nothing it
does not need; layers that only import downwards; a notebook that runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import echolab
from pcaps import SIM_DEVICE_IP, write_class_captures

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "notebook.ipynb"
BIN = Path(sys.executable).parent


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, cwd="/",
                          env={**os.environ, **env})


def test_one_top_level_package_installed_not_the_checkout() -> None:
    dist = metadata.distribution("echolab-toolkit")
    assert dist.read_text("top_level.txt").split() == ["echolab"]
    tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"echolab"}
    # the tests import the installed package, not the source folders of the checkout
    installed = Path(echolab.__file__).resolve().parent
    assert installed.parent.name == "site-packages"
    for part in ("db", "prompts", "collector", "analysis"):
        module = __import__(f"echolab.{part}", fromlist=["_"])
        assert Path(module.__file__).resolve().parent == installed / part


def test_import_echolab_and_lab_load_no_cli_and_no_heavy_library() -> None:
    proc = _python("import sys, echolab; echolab.Lab; "
                   "print(sorted(m for m in ('typer', 'rich', 'sklearn', 'scipy', 'matplotlib', 'pandas', 'sqlalchemy')"
                   " if m in sys.modules))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_importing_the_report_module_leaves_matplotlib_alone() -> None:
    # the raw rcParams value: matplotlib.get_backend() would itself import pyplot
    proc = _python("import matplotlib; raw = lambda: dict.__getitem__(matplotlib.rcParams, 'backend'); "
                   "before = raw(); import echolab.analysis.compare.report, sys; "
                   "print(before == raw(), 'matplotlib.pyplot' in sys.modules)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "False"]


def test_import_contracts_hold() -> None:
    proc = subprocess.run([str(BIN / "lint-imports"), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 3 kept, 0 broken" in proc.stdout


def test_import_contracts_catch_an_upward_import(tmp_path: Path) -> None:
    """The same contracts fail on a copy of echolab whose capture reader imports the catalog."""
    copy = tmp_path / "echolab"
    shutil.copytree(Path(echolab.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    reader = copy / "captures" / "reader.py"
    reader.write_text(reader.read_text() + "\nimport echolab.db.catalog  # an upward import\n")
    proc = subprocess.run([str(BIN / "lint-imports"), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 1, proc.stdout
    assert "Layers only import downwards BROKEN" in proc.stdout
    assert "echolab.captures.reader -> echolab.db.catalog" in proc.stdout


def test_a_missing_extra_is_one_line_naming_what_to_install() -> None:
    proc = _python("import sys; sys.modules['datasette'] = None\n"
                   "from echolab.errors import require, MissingExtra\n"
                   "try:\n    require('datasette', 'web', 'the web view')\n"
                   "except MissingExtra as e:\n    print(e)")
    assert proc.stdout.strip() == ("the web view needs the 'datasette' package, which is not installed: "
                                   "pip install 'echolab-toolkit[web]'")


def test_the_root_help_imports_no_command_group() -> None:
    proc = _python("import sys\nfrom typer.testing import CliRunner\nfrom echolab.cli import app, GROUPS\n"
                   "out = CliRunner().invoke(app, ['--help']).output\n"
                   "assert all(name in out for name in GROUPS), out\n"
                   "heavy = {module for module, _, _ in GROUPS.values()} | {'echolab.db', 'sqlalchemy', 'sklearn'}\n"
                   "print(sorted(m for m in heavy if m in sys.modules))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_group_list_matches_each_groups_own_help() -> None:
    from echolab.cli import GROUPS, load_group

    for name, (_, _, line) in GROUPS.items():
        assert (load_group(name).info.help or "").splitlines()[0] == line, name


def _run_notebook(path: Path) -> dict:
    """Run a notebook's code cells in order in one namespace, as Jupyter's 'Run all' does."""
    namespace: dict = {"__name__": "__main__"}
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{path.name}#{cell['id']}", "exec"), namespace)
    return namespace


@pytest.mark.timeout(300)
def test_the_notebook_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from echolab import Lab
    from echolab.labdir import CATALOG_URL_ENV
    from echolab.prompts.classes import STUDY_CLASSES

    monkeypatch.delenv(CATALOG_URL_ENV, raising=False)
    folder = tmp_path / "captures"
    write_class_captures(folder, 6)
    with Lab(tmp_path / "lab", create=True) as lab:
        lab.import_captures(folder, campaign="notebook", device_ip=SIM_DEVICE_IP)
    monkeypatch.setenv("ECHOLAB_LAB", str(lab.root))
    ns = _run_notebook(NOTEBOOK)
    assert ns["stats"].classes and all(c.ok == 6 for c in ns["stats"].classes)
    assert ns["X"].shape[0] == 6 * len(STUDY_CLASSES) and len(ns["names"]) == ns["X"].shape[1]
    assert list(ns["frame"].columns[:4]) == ["capture_id", "sha256", "campaign", "label"]
    summary = ns["result"].run.summary
    assert [f["key"] for f in summary["features"]] == ["tcptrace", "combined"]
    assert ns["page"].exists() and (ns["page"].parent / "summary.md").exists()
    assert ns["built"].failed == 0 and ns["built"].extracted + ns["built"].cached == 6 * len(STUDY_CLASSES)
