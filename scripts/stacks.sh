#!/usr/bin/env bash
# The old Jetson stacks, for the tests: a virtual environment per stack with that JetPack's Python, torch and
# NumPy from PyPI, and jetcam_app editable from this clone. Idempotent: built once per machine, then instant.
# Usage: scripts/stacks.sh NAME      NAME = py36 (JetPack 4.6) | py38 (JetPack 5)
# Prints the venv's path on stdout (progress goes to stderr); where the stack's Python is not on this machine it
# says so on stderr and prints nothing, with exit status 0.
# Cache: ${JETCAM_STACKS:-$HOME/.cache/jetcam-stacks}/NAME-<hash>, outside the clone so every clone (CI's fresh one
# too) reuses it; the hash covers the stack's pins and setup.cfg, so a change of either builds a new venv and the
# old one is removed. NAME-<hash>/.jetcam-stack-ok marks a finished build; a folder without it is a half-built one
# (a failure or a kill) and is removed before building again.
set -euo pipefail
cd "$(dirname "$0")/.."
clone=$(pwd -P)
name=${1:-}
recipe=1   # bump when the build steps below change in a way the pins do not show

# Per stack: the interpreter, the installers that still run on it, and the pins JetPack ships (torch, torchvision,
# NumPy as on the device). opencv-python (not -headless) because setup.cfg's install_requires names it: a headless
# copy beside it would be a second package over the same cv2. 4.6.0.66 is the last with a cp36 wheel.
case "$name" in
  py36)
    pyver=3.6.15
    boot="pip==21.3.1 setuptools==59.6.0 wheel==0.37.1"
    pins="torch==1.10.1 torchvision==0.11.2 numpy==1.19.5 opencv-python==4.6.0.66"
    ;;
  py38)
    pyver=3.8.18
    boot="pip==24.3.1 setuptools==75.3.0 wheel==0.45.1"
    pins="torch==2.1.2 torchvision==0.16.2 numpy==1.24.4 opencv-python==4.8.1.78"
    ;;
  *)
    echo "usage: scripts/stacks.sh py36|py38" >&2
    exit 2
    ;;
esac
# The same extras as the main stack's set-up with --test, so the suite meets the same packages where they exist.
extras="desktop,onnx,report,mqtt,video,test"

short=${pyver%.*}
py="$HOME/.pyenv/versions/$pyver/bin/python$short"
[ -x "$py" ] || py=$(command -v "python$short" 2>/dev/null || true)
if [ -z "$py" ] || ! "$py" -c 'import venv' >/dev/null 2>&1; then
  echo "stacks: $name skipped: no Python $short here (pyenv install $pyver, or python$short with venv on PATH)" >&2
  exit 0
fi

cache=${JETCAM_STACKS:-$HOME/.cache/jetcam-stacks}
mkdir -p "$cache"
key=$( { echo "$name $recipe $pyver $boot $pins $extras"; cat setup.cfg; } | sha256sum | cut -c1-12)
venv="$cache/$name-$key"
vpy="$venv/bin/python"
log="$cache/$name-build.log"
wheels="$cache/wheels/$name-$(echo "$pyver $pins" | sha256sum | cut -c1-12)"
say() { echo "stacks: $*" >&2; }

# One build at a time per stack (two clones testing at once wait here instead of racing).
exec 9>"$cache/.$name.lock"
flock 9

pip_q() { "$vpy" -m pip install --no-input "$@" >>"$log" 2>&1; }
# The end of the log without pip's warnings about absent local indexes, each line cut to a readable length.
log_tail() { grep -v "is ignored: it is neither" "$log" | tail -n 15 | cut -c1-400 >&2; }

if [ ! -f "$venv/.jetcam-stack-ok" ]; then
  started=$(date +%s)
  [ -d "$venv" ] && { say "$name: removing the half-built $venv"; rm -rf "$venv"; }
  : >"$log"
  trap 'rm -rf "$venv"; say "$name: build failed, removed the half-built venv; the end of $log:"; log_tail' EXIT
  seed="$cache/$name-prebuild"
  seeded=0
  if [ -x "$seed/bin/python" ] && grep -q "^version = $pyver\$" "$seed/pyvenv.cfg" 2>/dev/null; then
    # A venv made beforehand with the same interpreter and pins saves the torch download: it is adopted by
    # renaming it (no copy), then the paths written in its scripts are pointed at the new place.
    # Adopted only if every pinned package it has is at the pinned version (the missing ones are installed below).
    have=$("$seed/bin/python" -m pip list --format=freeze 2>/dev/null | tr 'A-Z_' 'a-z-' || true)
    ok=1
    for p in $pins; do
      n=$(echo "${p%%==*}" | tr 'A-Z_' 'a-z-')
      if echo "$have" | grep -q "^$n==" && ! echo "$have" | grep -qx "$n==${p#*==}"; then ok=0; fi
    done
    if [ "$ok" = 1 ]; then
      say "$name: adopting $seed as $venv"
      mv "$seed" "$venv"
      grep -rlI --exclude-dir=__pycache__ "$seed" "$venv/bin" 2>/dev/null | while read -r f; do
        sed -i "s#$seed#$venv#g; s#${seed##*/}#${venv##*/}#g" "$f"
      done
      # Compiled modules keep the old path for tracebacks: Python writes them again on first import.
      find "$venv" -name __pycache__ -type d -prune -exec rm -rf {} +
      seeded=1
    fi
  fi
  if [ "$seeded" = 0 ]; then
    say "$name: creating $venv with Python $pyver ($py)"
    "$py" -m venv "$venv"
  fi
  # Pins and installers as constraints: installing the project and its extras may add packages, never move these.
  printf '%s\n' $boot $pins >"$venv/.jetcam-pins.txt"
  say "$name: installers ($boot)"
  pip_q -q --upgrade $boot
  # The pinned wheels (torch and its CUDA libraries: 1-3 GB) are kept in a wheelhouse beside the venvs, so a
  # rebuild for a new setup.cfg installs them from disk: this registry's answers are not kept in pip's own cache.
  say "$name: the JetPack pins ($pins; 1-3 GB to download the first time, then from $wheels)"
  mkdir -p "$wheels"
  # shellcheck disable=SC2086
  "$vpy" -m pip download -q --no-input -d "$wheels" -c "$venv/.jetcam-pins.txt" $pins >>"$log" 2>&1
  # shellcheck disable=SC2086
  pip_q -q --no-index --find-links "$wheels" -c "$venv/.jetcam-pins.txt" $pins
  say "$name: jetcam_app's requirements and extras [$extras]"
  pip_q -q -c "$venv/.jetcam-pins.txt" -e ".[$extras]"
  "$vpy" -c "import torch, torchvision, numpy, cv2" >>"$log" 2>&1
  echo "$clone" >"$venv/.jetcam-clone"
  echo "$key" >"$venv/.jetcam-stack-ok"
  trap - EXIT
  say "$name: built in $(( $(date +%s) - started )) s"
  # Earlier builds of this stack (older pins or setup.cfg) and wheelhouses of older pins are not used again.
  for old in "$cache/$name"-* "$cache/wheels/$name"-*; do
    base=${old##*/}
    if [ -d "$old" ] && [ "$old" != "$venv" ] && [ "$old" != "$wheels" ] && [[ "$base" =~ ^$name-[0-9a-f]{12}$ ]]; then
      say "$name: removing the earlier build $old"
      rm -rf "$old"
    fi
  done
fi

# The venv is shared by every clone on the machine, so the editable install is pointed at the clone being tested
# whenever it points elsewhere: `--no-deps -e .` takes a few seconds (the requirements are in already), and unlike
# PYTHONPATH it also moves the `jetcam` entry point and the metadata, which subprocesses started from another
# folder see. Two clones testing at once on one stack would take turns owning it.
if [ "$(cat "$venv/.jetcam-clone" 2>/dev/null)" != "$clone" ]; then
  say "$name: pointing the editable jetcam_app at $clone"
  "$vpy" -m pip install -q --no-input --no-deps --no-build-isolation -e . >>"$log" 2>&1 || {
    say "$name: editable install failed; the end of $log:"; log_tail; exit 1; }
  echo "$clone" >"$venv/.jetcam-clone"
fi
echo "$venv"
