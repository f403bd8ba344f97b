#!/usr/bin/env bash
# A second virtual environment, .venv-core: echolab with its core dependencies only (no extras),
# as `pip install echolab-toolkit` gives. tests/test_core_install.py runs the command line in it, so
# every command is tried in both installs. Idempotent: a second run only checks (seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
PY=${PYTHON:-python3}
stamp=.venv-core/.echolab-installed
if [ ! -x .venv-core/bin/python ]; then
  echo "echolab setup-core: creating .venv-core (echolab without extras)"
  "$PY" -m venv .venv-core
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "echolab setup-core: installing echolab's core dependencies into .venv-core"
  .venv/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
    > .venv-core/requirements.txt
  .venv-core/bin/pip install -q -r .venv-core/requirements.txt 2> >(grep -v "^WARNING: Location" >&2)
  rm -f "$stamp"
fi
if [ ! -f "$stamp" ] || [ -n "$(find echolab db prompts collector analysis -newer "$stamp" -print -quit)" ]; then
  wheels=$(mktemp -d)
  rm -rf build
  .venv/bin/pip wheel -q --no-deps -w "$wheels" .
  rm -rf build
  .venv-core/bin/pip install -q --no-deps --force-reinstall "$wheels"/*.whl
  rm -rf "$wheels"
  touch "$stamp"
fi
