#!/usr/bin/env bash
# Triton on the GPU machine: a server from the minimal folder bench/pack_triton_for_device.sh made (carried as
# .triton-min.tar.xz, with the client wheels in .whl), the core of ssd300_vgg16 (random weights: no weight files)
# on CUDA through the Python backend's torch (export-triton --variant python --torchscript), then the bench's
# triton row against cuda, the server alone (bench/triton_raw.py), and 1 and 8 app processes against the server and against --backend cuda locally.
# The bench row and the server alone use ssd300_vgg16 (float in, raw out); bench/triton_clients.py runs every wire
# format of VARIANTS (each exported as ssd300_vgg16_<variant>) with each client mode of SHM, and prints the table.
# Prints JSON; the server log, the bench report and the JSON go to $OUT when it is set.
# Usage (repository root, carry .triton-min.tar.xz and .whl): bash bench/triton_gpu.sh [FRAMES=300]
# Knobs: CLIENTS=1,8  VARIANTS=float-raw,uint8-raw,uint8-detections  SHM=none,system,cuda  CLIENT_ARGS="--threads 2
# --no-local" (more triton_clients.py options)  RAW=0 (skip the server alone)  RAW_CONCURRENCY=1,4,8  RAW_BATCHES=1,4
# BENCH=0 (skip run.py bench)  PROFILE=1
set -euo pipefail
frames=${1:-300}
out=${OUT:-/tmp/triton-gpu-out}
mkdir -p "$out" /tmp/triton-min
tar -C /tmp/triton-min -xJf .triton-min.tar.xz
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/tritonclient-*.whl .whl/python_rapidjson-*.whl .whl/protobuf-*.whl .whl/grpcio-*.whl \
  $(ls .whl/cuda_bindings-*.whl .whl/cuda_pathfinder-*.whl 2>/dev/null)
export PYTHONPATH="/tmp/site:$PWD"
export JETCAM_TRITON_VENV=/tmp/triton-min JETCAM_OFFLINE=1
# The Python-backend stub embeds the system libpython and takes its packages (torch) from the first python3 on PATH.
stub=$(ls /tmp/triton-min/lib/python3.*/site-packages/pytriton/tritonserver/python_backend_stubs/*/triton_python_backend_stub)
echo "python3: $(python3 --version) at $(command -v python3); stub links: $(ldd "$stub" | grep -E 'python|not found' | tr -s ' \t' ' ')"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
python3 run.py export-triton --model ssd300_vgg16 --random-weights --variant python --torchscript \
  --instance-kind gpu --max-batch-size 8 --input float --output raw --out /tmp/triton-repo --cache-dir /tmp/triton-cache
export VARIANTS=${VARIANTS:-float-raw,uint8-raw,uint8-detections} SHM=${SHM:-none,system,cuda}
python3 bench/triton_clients.py --model ssd300_vgg16 --random-weights --variants "$VARIANTS" --print-exports \
    --export-out /tmp/triton-repo --export-args "--torchscript --instance-kind gpu --cache-dir /tmp/triton-cache" |
  while read -r cmd; do ${cmd/#python /python3 } >/dev/null; done
python3 bench/triton_core_check.py --repository /tmp/triton-repo --model ssd300_vgg16 --random-weights 2>&1 | grep -v -i warn || true
export CLIENTS=${CLIENTS:-1,8} CLIENT_ARGS=${CLIENT_ARGS:-} RAW=${RAW:-1} BENCH=${BENCH:-1}
export RAW_CONCURRENCY=${RAW_CONCURRENCY:-1,4,8} RAW_BATCHES=${RAW_BATCHES:-1,4}
python3 - "$frames" "$out" <<'PY'
import json, os, shlex, subprocess, sys
from jetcam_app.triton.local_server import LocalTritonServer

frames, out = sys.argv[1], sys.argv[2]
source = "test://1280x720@30?frames=100000"
with LocalTritonServer("/tmp/triton-repo", log_path=os.path.join(out, "tritonserver.log")) as server:
    print("server ready:", server.grpc_url, flush=True)
    if os.environ["BENCH"] == "1":  # the bench's triton row against cuda, with the numeric diff
        subprocess.run([sys.executable, "run.py", "bench", "--model", "ssd300_vgg16", "--random-weights", "--backends",
                        "cuda,triton", "--source", source, "--frames", "100", "--triton-url", server.grpc_url,
                        "--out", "/tmp/triton-bench"], check=False)
    for name in ("report.md", "results.json"):
        if os.path.exists(os.path.join("/tmp/triton-bench", name)):
            subprocess.run(["cp", os.path.join("/tmp/triton-bench", name), os.path.join(out, "bench_" + name)])
    if os.environ.get("PROFILE") == "1":  # the app's main thread against the server, by function
        subprocess.run([sys.executable, "bench/profile_app.py", "--model", "ssd300_vgg16", "--random-weights",
                        "--backend", "triton", "--triton-url", server.grpc_url, "--source", source, "--frames", "300",
                        "--top", "25"], check=False)
    # the server alone, no app: what the wire and the server allow
    for batch in os.environ["RAW_BATCHES"].split(",") if os.environ["RAW"] == "1" else ():
        subprocess.run([sys.executable, "bench/triton_raw.py", "--url", server.grpc_url, "--model", "ssd300_vgg16",
                        "--concurrency", os.environ["RAW_CONCURRENCY"], "--seconds", "5", "--batch", batch,
                        "--json", os.path.join(out, "triton_raw_b%s.json" % batch)], check=False)
    subprocess.run([sys.executable, "bench/triton_clients.py", "--url", server.grpc_url, "--model", "ssd300_vgg16",
                    "--random-weights", "--clients", os.environ["CLIENTS"], "--frames", frames, "--source", source,
                    "--variants", os.environ["VARIANTS"], "--shm", os.environ["SHM"], "--local-backend", "cuda",
                    "--json", os.path.join(out, "triton_gpu.json")] + shlex.split(os.environ["CLIENT_ARGS"]),
                   check=True)
PY
