#!/usr/bin/env bash
# Set up (system packages + .venv, see scripts/setup.sh) and run echolab's main job
# on the simulated lab. Extra arguments go to `echolab demo`, e.g. `--per-class 20`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/echolab --lab "${ECHOLAB_LAB:-lab}" demo "$@"
