#!/usr/bin/env bash
# The test command: sets up what the tests need (idempotent), then runs pytest. Extra args go to pytest.
# The GStreamer tests run in a pytest process of their own: once PyGObject has initialised GStreamer in a
# process, TensorRT-RTX's ONNX parser and matplotlib's FreeType can crash in it (seen here with GStreamer 1.22).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
py="${JETCAM_VENV:-.venv}/bin/python"
gst_tests="tests/sources/test_gstreamer.py tests/test_doctor.py"
if [ $# -gt 0 ]; then
  exec "$py" -m pytest -q -rs "$@"
fi
status=0
# shellcheck disable=SC2086
"$py" -m pytest -q -rs $(printf -- '--ignore=%s ' $gst_tests) tests || status=$?
# shellcheck disable=SC2086
"$py" -m pytest -q -rs $gst_tests || status=$?
exit $status
