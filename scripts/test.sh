#!/usr/bin/env bash
# Set up (system packages + .venv, see scripts/setup.sh) and run the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/test_catalog.py -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# -P: the checkout is not put on sys.path, so the tests import the installed echolab.
exec .venv/bin/python -P -m pytest -q -p no:cacheprovider "$@"
