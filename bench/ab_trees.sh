#!/usr/bin/env bash
# Two source trees side by side on one machine (the GPU session's before/after check): the pipeline-vs-loop
# benchmark for SSD300 and NanoDet (fp16, fused graph, 720p), alternating trees for ROUNDS rounds, then each tree's
# `run.py --backend cuda` with no graph flag (what a user's first CUDA run gets). Run from the repository root:
#   bash bench/ab_trees.sh OLD_TREE [ROUNDS] [FRAMES]    (SKIP_DEFAULTS=1: the rounds only)
# OLD_TREE holds an older checkout's jetcam_app/, bench/ and run.py; media/ and models/ are linked into it.
set -u
export PYTHONUNBUFFERED=1 JETCAM_OFFLINE=1
old=${1:?usage: bench/ab_trees.sh OLD_TREE [ROUNDS] [FRAMES]}
rounds=${2:-2}
frames=${3:-2000}
OUT=${OUT:-/tmp/jetcam-ab}
mkdir -p "$OUT" "$old/models"
here=$(pwd)
ln -sfn "$here/media" "$old/media"
[ -e "$old/models/nanodet" ] || ln -sfn "$here/models/nanodet" "$old/models/nanodet"
py=${PYTHON:-python3}
[ -f /tmp/bbb720.mp4 ] || $py bench/loop_video.py media/bigbuckbunny.mp4 /tmp/bbb720.mp4 --times 16
models="ssd300_vgg16 nanodet"
for round in $(seq 1 "$rounds"); do
  for model in $models; do
    extra=""; [ "$model" = ssd300_vgg16 ] && extra="--random-weights"
    for side in before after; do
      dir=$here; [ "$side" = before ] && dir=$old
      echo "== round $round, $model, $side"
      (cd "$dir" && $py bench/pipeline_vs_loop.py --model $model $extra --backend cuda --precision fp16 --cuda-graph \
        --source /tmp/bbb720.mp4 --frames "$frames" --loop-frames 30 --json "$OUT/pvl_${model}_${side}_$round.json")
    done
  done
done
[ "${SKIP_DEFAULTS:-0}" = 1 ] && exit 0  # the pipeline-vs-loop rounds only
for model in $models; do
  extra=""; [ "$model" = ssd300_vgg16 ] && extra="--random-weights"
  for precision in fp32 fp16; do
    for side in before after; do
      dir=$here; [ "$side" = before ] && dir=$old
      echo "== default --backend cuda, $model $precision, $side"
      (cd "$dir" && $py run.py --backend cuda --precision $precision --model $model $extra --source /tmp/bbb720.mp4 \
        --headless --max-frames 1000 --out "/tmp/ab-$model-$precision-$side" 2>&1 | grep -E "captured in one|^frames:|real-time")
    done
  done
done
