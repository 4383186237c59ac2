#!/usr/bin/env bash
# The demo: sets up (idempotent), then annotates the sample video with NanoDet, headless, into runs/demo/.
# Extra args go to run.py (e.g. --backend cuda --precision fp16, or --source test://).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${JETCAM_VENV:-.venv}/bin/python" run.py --source sample --model nanodet --headless \
  --out runs/demo --record runs/demo/annotated.mp4 "$@"
