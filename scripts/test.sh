#!/usr/bin/env bash
# The test command: sets up what the tests need (idempotent), then runs pytest. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
exec "${JETCAM_VENV:-.venv}/bin/python" -m pytest -q -rs "$@"
