"""The command line in a core install: `pip install echolab-toolkit`, no extras.

scripts/setup-core.sh keeps a second virtual environment, .venv-core, with echolab
and its core dependencies only (made once, then only checked). One script runs in
it: every command's --help, then the commands a lab uses on real (synthetic)
captures. Each works, or ends in one ``Error:`` line naming the extra to install;
none ends in a traceback. The rest of the suite runs the same commands with every
extra installed.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / ".venv-core" / "bin" / "python"
EXTRAS = ("pandas", "pyarrow", "datasette", "distributed", "psycopg", "jax", "numba")

SCRIPT = r'''
import importlib.util, json, sys
from pathlib import Path

import typer
from typer.testing import CliRunner

from echolab.cli import GROUPS, app, load_group

sys.path.insert(0, sys.argv[3])  # the tests' folder: their synthetic captures need echolab's core only
from pcaps import SIM_DEVICE_IP, write_class_captures

runner = CliRunner()
work = Path(sys.argv[1])
out = {"missing": [m for m in sys.argv[2].split(",") if importlib.util.find_spec(m) is None], "runs": []}

def run(*args):
    res = runner.invoke(app, list(args))
    text = res.output + ("" if res.exception is None or isinstance(res.exception, SystemExit)
                         else f"\nUNCAUGHT {type(res.exception).__name__}: {res.exception}")
    out["runs"].append({"args": list(args), "code": res.exit_code, "output": text})

run("--help")
for group in GROUPS:
    run(group, "--help")
    for name in getattr(typer.main.get_command(load_group(group)), "commands", {}):
        run(group, name, "--help")

lab = str(work / "lab")
write_class_captures(work / "in", 3, classes=["weather", "music"])
run("--lab", lab, "catalog", "init")
run("--lab", lab, "catalog", "import", str(work / "in"), "--device-ip", SIM_DEVICE_IP, "--campaign", "home")
run("--lab", lab, "catalog", "stats")
run("--lab", lab, "features", "export", "-o", str(work / "f.csv"), "--set", "kfp")
run("--lab", lab, "features", "export", "-o", str(work / "f.parquet"), "--format", "parquet")
run("--lab", lab, "catalog", "export", str(work / "x.tar.gz"))
run("--lab", lab, "catalog", "serve", "--no-open")
run("--lab", lab, "analyze", "run", "--synthetic", "5", "-m", "deep_cnn", "-f", "sequence")
run("--lab", lab, "analyze", "run", "--synthetic", "5", "-m", "mlp_jax")
run("--lab", lab, "analyze", "run", "--synthetic", "5", "-f", "tcptrace", "--trials", "2", "-m", "mlp")
run("--lab", lab, "analyze", "run", "--synthetic", "5", "-f", "tcptrace", "--trials", "2", "-m", "random_forest",
    "-m", "svm_rbf")
run("sim", "measure-household", str(work / "in"), "--device-ip", SIM_DEVICE_IP)
run("--lab", lab, "analyze", "run", "--synthetic", "5", "--cluster", "tcp://127.0.0.1:1", "-m", "knn")
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def core_runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    setup = subprocess.run(["bash", str(ROOT / "scripts" / "setup-core.sh")], capture_output=True, text=True,
                           timeout=1200)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    work = tmp_path_factory.mktemp("core")
    proc = subprocess.run([str(CORE), "-P", "-c", SCRIPT, str(work), ",".join(EXTRAS), str(ROOT / "tests")],
                          capture_output=True, text=True, timeout=600, cwd=work,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(work)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run(core_runs: dict, *args: str) -> dict:
    return next(r for r in core_runs["runs"] if r["args"][-len(args):] == list(args) or r["args"][2:] == list(args))


def test_a_home_is_measured_in_a_core_install(core_runs: dict) -> None:
    r = next(r for r in core_runs["runs"]
             if r["args"][:2] == ["sim", "measure-household"] and "--help" not in r["args"])
    assert r["code"] == 0 and "measured on 6 of 6 captures" in r["output"], r


def test_the_core_install_has_no_extra(core_runs: dict) -> None:
    assert core_runs["missing"] == list(EXTRAS)


def test_the_mlp_trains_without_the_fast_extra(core_runs: dict) -> None:
    # the lockstep trainer's NumPy passes, where numba (the fast extra) is not installed
    r = next(r for r in core_runs["runs"] if r["args"][-2:] == ["-m", "mlp"])
    assert r["code"] == 0 and "2 trials computed" in r["output"], r


def test_forests_and_rbf_svms_are_fitted_without_the_fast_extra(core_runs: dict) -> None:
    # scikit-learn's own tree builder and libsvm's own kernel values, where numba is not installed
    r = next(r for r in core_runs["runs"] if r["args"][-2:] == ["-m", "svm_rbf"])
    assert r["code"] == 0 and "4 trials computed" in r["output"], r  # 2 trials of each model


def test_every_command_answers_help_without_a_traceback(core_runs: dict) -> None:
    helps = [r for r in core_runs["runs"] if r["args"][-1] == "--help"]
    assert len(helps) > 30
    for r in helps:
        assert r["code"] == 0 and "Traceback" not in r["output"] and "UNCAUGHT" not in r["output"], r


def test_commands_work_or_name_their_extra_in_one_line(core_runs: dict) -> None:
    for r in core_runs["runs"]:
        assert "Traceback" not in r["output"] and "UNCAUGHT" not in r["output"], r
        if r["code"] != 0:
            errors = [line for line in r["output"].splitlines() if line.startswith("Error: ")]
            assert len(errors) == 1, r
    by_args = {" ".join(r["args"][2:]): r for r in core_runs["runs"] if r["args"][:1] == ["--lab"]}
    for ok in ("catalog init", "catalog stats"):
        assert by_args[ok]["code"] == 0, by_args[ok]
    assert next(r for k, r in by_args.items() if k.startswith("catalog import"))["code"] == 0
    csv_export = next(r for k, r in by_args.items() if "--set kfp" in k)
    assert csv_export["code"] == 0 and "wrote 6 rows" in csv_export["output"], csv_export
    for needle, extra in (("parquet", "parquet"), ("catalog serve", "web"), ("deep_cnn", "deep"),
                          ("mlp_jax", "deep"), ("--cluster", "cluster")):
        r = next(r for k, r in by_args.items() if needle in k)
        assert r["code"] == 1 and f"echolab-toolkit[{extra}]" in r["output"], r
