#!/usr/bin/env bash
# Make a minimal Triton server folder for the GPU machine from PyTriton's wheel: the tritonserver binary, the libraries
# it and the Python backend load, the backend and the stub for one Python version; no bundled libpython 3.13, no other
# stubs, no PyTriton Python code. The layout is the wheel's own, so jetcam_app.triton.local_server finds it
# (JETCAM_TRITON_VENV=OUT). Also fetches the tritonclient wheels the app needs there into .whl/.
# The folder is also packed as OUT.tar.xz: carry that (and .whl) to the GPU machine, where bench/triton_gpu.sh unpacks it.
# Usage: bench/pack_triton_for_device.sh [OUT=.triton-min] [PYVER=3.12]   (run from the repository root)
set -euo pipefail
out=${1:-.triton-min}
pyver=${2:-3.12}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps -d "$work" "nvidia-pytriton==0.7.0"
unzip -q "$work"/nvidia_pytriton-*.whl 'pytriton/tritonserver/*' 'nvidia_pytriton.libs/*' -d "$work/w"
home="$work/w/pytriton/tritonserver"
libs="$work/w/nvidia_pytriton.libs"
stub="$home/python_backend_stubs/$pyver/triton_python_backend_stub"
[ -x "$stub" ] || chmod +x "$stub"
site="$out/lib/python$pyver/site-packages"
rm -rf "$out"
mkdir -p "$site/pytriton/tritonserver/bin" "$site/pytriton/tritonserver/backends" \
         "$site/pytriton/tritonserver/python_backend_stubs/$pyver" "$site/nvidia_pytriton.libs"
cp "$home/bin/tritonserver" "$site/pytriton/tritonserver/bin/"
cp -r "$home/backends/python" "$site/pytriton/tritonserver/backends/"
rm -rf "$site/pytriton/tritonserver/backends/python/__pycache__"
cp "$stub" "$site/pytriton/tritonserver/python_backend_stubs/$pyver/"
chmod +x "$site/pytriton/tritonserver/bin/tritonserver" "$site/pytriton/tritonserver/python_backend_stubs/$pyver/"*
# The bundled libraries the three binaries load, found by name (the wheel's are renamed with a hash); the others
# (libpython 3.13 for the 3.13 stub, and what nothing here loads) stay behind.
needed=$( { for bin in "$home/bin/tritonserver" "$home/backends/python/libtriton_python.so" "$stub"; do
              LD_LIBRARY_PATH="$libs" ldd "$bin" | awk '/nvidia_pytriton.libs/ {print $3}'; done; } | sort -u)
for lib in $needed; do cp "$lib" "$site/nvidia_pytriton.libs/"; done
strip --strip-unneeded "$site/pytriton/tritonserver/bin/tritonserver" "$site/nvidia_pytriton.libs/"*.so* 2>/dev/null || true
tar -C "$out" -cf - . | xz -9 -T0 > "$out.tar.xz"
echo "packed $(du -sh "$out" | cut -f1) in $out ($(ls "$site/nvidia_pytriton.libs" | wc -l) libraries), $(du -sh "$out.tar.xz" | cut -f1) as $out.tar.xz"
# The client for the app there (its Python is $pyver): tritonclient with its gRPC needs, as wheels for `carry`.
mkdir -p .whl
rm -f .whl/tritonclient-* .whl/python_rapidjson-* .whl/protobuf-* .whl/grpcio-*
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  "tritonclient==2.73.0" "python-rapidjson==1.25" "protobuf==6.33.6" "grpcio==1.81.1"
echo "client wheels: $(du -ch .whl/tritonclient-* .whl/python_rapidjson-* .whl/protobuf-* .whl/grpcio-* | tail -1 | cut -f1) in .whl/"
# --triton-shm cuda: tritonclient's cuda_shared_memory imports cuda.bindings (CUDA 13 driver); without it the app
# notes the fallback and sends the tensors over the socket.
rm -f .whl/cuda_bindings-* .whl/cuda_pathfinder-*
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  cuda-bindings cuda-pathfinder || echo "cuda-bindings not fetched: --triton-shm cuda will fall back there"
