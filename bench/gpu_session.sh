#!/usr/bin/env bash
# The GPU machine's session (run through the device tool from the repo root): CUDA tests, the pipeline-vs-loop
# benchmark, the memory soak and the bench reports; everything it prints goes to $OUT/log.txt.
set -u
export PYTHONUNBUFFERED=1 JETCAM_OFFLINE=1
OUT=${OUT:-/tmp/jetcam-out}
mkdir -p "$OUT"
step=${1:-all}
exec > >(tee "$OUT/log-$step.txt") 2>&1
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
$py -c "import torch, torchvision, cv2; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cv2', cv2.__version__)"
$py bench/loop_video.py media/bigbuckbunny.mp4 /tmp/bbb720.mp4 --times 16
$py bench/loop_video.py media/bikes.mp4 /tmp/bikes5000.mp4 --times 21
if [ "$step" = all ] || [ "$step" = tests ]; then
  echo "== CUDA tests"
  $py -m pytest -q -rs -p no:cacheprovider -m needs_cuda tests/ -k "not vermin"
fi
if [ "$step" = all ] || [ "$step" = speed ]; then
  echo "== pipeline vs lab loop (720p)"
  $py bench/pipeline_vs_loop.py --model ssd300_vgg16 --random-weights --backend cuda --precision fp16 --cuda-graph \
    --source /tmp/bbb720.mp4 --frames 2000 --ab-depth --main-thread-split --json "$OUT/pvl_ssd300_fp16_graph.json"
  $py bench/pipeline_vs_loop.py --model nanodet --backend cuda --precision fp16 --cuda-graph \
    --source /tmp/bbb720.mp4 --frames 2000 --ab-pinned-decode --ab-depth --json "$OUT/pvl_nanodet_fp16_graph.json"
  $py bench/pipeline_vs_loop.py --model ssd300_vgg16 --random-weights --backend cuda --precision fp32 --no-cuda-graph \
    --source /tmp/bbb720.mp4 --frames 300
  echo "== the emitter's host time per frame (labels, HUD, log rows; all of it holds the GIL)"
  $py bench/emitter_cost.py --boxes 100 2
  echo "== memory soak (5000 frames)"
  $py bench/memory_soak.py --model nanodet --backend cuda --precision fp16 --cuda-graph --source /tmp/bikes5000.mp4 \
    --frames 5000 --json "$OUT/soak_nanodet_cuda.json"
fi
if [ "$step" = all ] || [ "$step" = report ]; then
  echo "== bench reports"
  for m in nanodet ssd300_vgg16; do
    extra=""; [ "$m" = ssd300_vgg16 ] && extra="--random-weights"
    $py run.py bench --model $m $extra --backends cpu,cuda,onnxruntime --precision fp32,fp16 --source media/bikes.mp4 \
      --frames 60 --target-fps 30 --out /tmp/bench-$m
    tar -C /tmp -czf "$OUT/bench-$m.tar.gz" bench-$m
  done
fi
