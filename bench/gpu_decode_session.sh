#!/usr/bin/env bash
# GPU decoding on the GPU machine (run through the device tool from the repo root; carry .whl with the PyNvVideoCodec
# wheel, media with bbb720p30.mp4 from bench/h264_clip.py, and models/nanodet). Both decoders side by side in each
# step; everything printed goes to $OUT/log-decode-STEP.txt.
# Usage: bash bench/gpu_decode_session.sh probe|tests|one|unpaced|paced|short   (NS=32,64 for paced's source counts;
# short: each of the others once, shortened, in about 8 minutes)
set -u
export PYTHONUNBUFFERED=1 JETCAM_OFFLINE=1
OUT=${OUT:-/tmp/jetcam-out}
mkdir -p "$OUT"
step=${1:-probe}
exec > >(tee "$OUT/log-decode-$step.txt") 2>&1
py=${PYTHON:-python3}
[ -d /tmp/site/PyNvVideoCodec ] || $py -m pip install -q --no-index --no-deps --target /tmp/site .whl/pynvvideocodec-*.whl
export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
video=media/bbb720p30.mp4  # H.264 1280x720, 30 fps, 5400 frames
m="--backend cuda --precision fp16"
case $step in
  probe)
    $py bench/decode_rates.py $video --threads 1,4,8,16 --max-frames 1800 --json "$OUT/decode_rates.json" ;;
  tests)
    $py -m pytest -q -rs -p no:cacheprovider -m needs_cuda tests/sources/test_gpu_decode.py \
      tests/multi/test_fused_batch_stages.py tests/inference/test_fused_stages.py ;;
  one)
    for round in 1 2; do
      for d in cpu gpu; do
        echo "== one source, --decode $d, round $round"
        $py run.py --headless --no-hud $m --source $video --decode $d --out "/tmp/one_${d}_$round" 2>&1 | grep "^frames:"
        cp "/tmp/one_${d}_$round/summary.json" "$OUT/one_${d}_$round.json"
      done
    done ;;
  unpaced)
    $py bench/multi_source.py $m --source $video --no-retime --n 8 --parts unpaced --frames 3000 --decode cpu,gpu \
      --json "$OUT/unpaced_n8.json" ;;
  short)
    timeout 100 $py bench/decode_rates.py $video --threads 1,8 --max-frames 1500 --compare-frames 200 \
      --json "$OUT/decode_rates.json"
    timeout 150 $py -m pytest -q -rs -p no:cacheprovider -m needs_cuda tests/sources/test_gpu_decode.py
    for d in cpu gpu; do
      echo "== one source, --decode $d"
      timeout 60 $py run.py --headless --no-hud $m --source $video --decode $d --out "/tmp/one_$d" 2>&1 | grep "^frames:"
      cp "/tmp/one_$d/summary.json" "$OUT/one_$d.json"
    done
    timeout 150 $py bench/multi_source.py $m --source $video --no-retime --n 64 --parts paced --decode cpu,gpu \
      --json "$OUT/paced_64.json"
    timeout 150 $py bench/multi_source.py $m --source $video --no-retime --n 8 --parts unpaced --frames 1500 \
      --decode cpu,gpu --json "$OUT/unpaced_n8.json" ;;
  paced)
    $py bench/multi_source.py $m --source $video --no-retime --n "${NS:-32,64,96,128}" --parts paced --decode cpu,gpu \
      --json "$OUT/paced_${NS:-all}.json" ;;
esac
