#!/usr/bin/env bash
# The GPU machine's session (run through the device tool from the repo root): CUDA tests, the pipeline-vs-loop
# benchmark, the memory soak and the bench reports; everything it prints goes to $OUT/log-STEP.txt.
# Usage: bash bench/gpu_session.sh [all|tests|speed|report|multi|multi-ab|multi-check|one-path]   (the multi steps: several
# sources, about 5, 8 and 6 minutes, not part of all; multi-ab, multi-check and one-path compare with the tree in
# $OLD, .prev)
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
if [ "$step" = multi ]; then
  # Several sources (carry media, models/nanodet and .whl with py-spy's wheel). Where one process's time goes, then
  # the bench's targets: N = 32 paced with OpenCV's decoder threads and with 1 and 2; N = 8 unpaced, side by side.
  [ -x /tmp/site/bin/py-spy ] || $py -m pip install -q --no-index --no-deps --target /tmp/site .whl/py_spy-*.whl
  m="--backend cuda --precision fp16"
  v8=""; for i in 1 2 3 4 5 6 7 8; do v8="$v8 --source /tmp/bbb720.mp4"; done
  echo "== whose Python holds the GIL: 8 sources unpaced, one process"
  rm -rf /tmp/gil8
  $py bench/gil_profile.py --top 10 -- run.py --headless --no-hud $m $v8 --max-frames 1500 --out /tmp/gil8
  echo "== the host side with an engine that costs nothing (720p)"
  $py bench/host_ceiling.py --sources 8 --size 1280x720 --frames 600
  for d in 0 1 2; do
    echo "== N = 32 paced at 30 fps, decode threads $d (0 = OpenCV's choice)"
    $py bench/multi_source.py $m --source /tmp/bbb720.mp4 --n 32 --parts paced --decode-threads $d \
      --json "$OUT/multi_paced_n32_dt$d.json"
  done
  echo "== N = 8 unpaced: one process against 8 processes"
  $py bench/multi_source.py $m --source /tmp/bbb720.mp4 --n 8 --parts unpaced --frames 600 \
    --json "$OUT/multi_unpaced_n8.json"
fi
if [ "$step" = multi-ab ]; then
  # Whether N decoders scale in one process as in N processes; where each thread's time goes; N = 32 paced, this tree
  # against $OLD alternating (the run folders' timing.csv kept); N = 8 unpaced. Carry .whl, media, models/nanodet, $OLD.
  OLD=${OLD:-.prev}
  [ -x /tmp/site/bin/py-spy ] || $py -m pip install -q --no-index --no-deps --target /tmp/site .whl/py_spy-*.whl
  mkdir -p "$OLD/models" && ln -sfn "$PWD/models/nanodet" "$OLD/models/nanodet" && ln -sfn "$PWD/media" "$OLD/media"
  m="--backend cuda --precision fp16"
  echo "== decoders: threads of one process against processes"
  $py bench/decode_ceiling.py /tmp/bbb720.mp4 --n 8 --frames 600 --decode-threads 0,1,2 --json "$OUT/decode_n8.json"
  $py bench/decode_ceiling.py /tmp/bbb720.mp4 --n 32 --frames 300 --decode-threads 1,2 --modes threads \
    --json "$OUT/decode_n32.json"
  v8=""; for i in 1 2 3 4 5 6 7 8; do v8="$v8 --source /tmp/bbb720.mp4"; done
  echo "== every thread's time: 8 sources unpaced, one process, decode threads 2"
  $py bench/gil_profile.py --wall --top 8 -- run.py --headless --no-hud $m $v8 --decode-threads 2 --max-frames 1500 \
    --out /tmp/wall8
  for round in 1 2; do
    for tree in new old; do
      dir=.; [ $tree = old ] && dir=$OLD && cp bench/multi_source.py "$OLD/bench/"  # the same bench drives both
      echo "== N = 32 paced at 30 fps, decode threads 2, $tree tree ($dir), round $round"
      (cd "$dir" && $py bench/multi_source.py $m --source /tmp/bbb720.mp4 --n 32 --parts paced --decode-threads 2 \
        --keep "/tmp/keep/${tree}_$round" --json "$OUT/paced_n32_${tree}_$round.json")
    done
  done
  echo "== N = 8 unpaced: one process against 8 processes, decode threads 2"
  $py bench/multi_source.py $m --source /tmp/bbb720.mp4 --n 8 --parts unpaced --frames 600 --decode-threads 2 \
    --keep /tmp/keep/unpaced --json "$OUT/unpaced_n8_dt2.json"
  tar -C /tmp -czf "$OUT/run_folders.tgz" keep  # one file: the device tool brings back only so many
fi
if [ "$step" = multi-check ]; then
  # The targets of several sources: one source against $OLD (4 rounds, the order swapped every round), N = 8 unpaced
  # (one process against 8 processes running together), N = 32 paced. Carry media, models/nanodet and $OLD.
  OLD=${OLD:-.prev}
  mkdir -p "$OLD/models" && ln -sfn "$PWD/models/nanodet" "$OLD/models/nanodet" && ln -sfn "$PWD/media" "$OLD/media"
  # 8,000 frames a run: 8 processes started together take seconds to all be running, so shorter runs barely overlap.
  m="--backend cuda --precision fp16"
  for round in 1 2 3 4; do
    order="new old"; [ $((round % 2)) = 0 ] && order="old new"
    for tree in $order; do
      dir=.; [ $tree = old ] && dir=$OLD
      echo "== one source, $tree tree, round $round"
      (cd "$dir" && $py run.py --headless $m --source /tmp/bbb720long.mp4 --max-frames 8000 \
        --out "/tmp/one_${tree}_$round" 2>&1 | grep "^frames:")
    done
  done
  (cd /tmp && tar -czf "$OUT/one_source.tgz" one_*/summary.json)  # one file: the device tool brings back only so many
  [ -n "${ONE_ONLY:-}" ] && exit 0
  echo "== N = 8 unpaced: one process against 8 processes"
  $py bench/multi_source.py $m --source /tmp/bbb720.mp4 --n 8 --parts unpaced --frames 8000 \
    --json "$OUT/unpaced_n8.json"
  echo "== N = 32 paced at 30 fps"
  $py bench/multi_source.py $m --source /tmp/bbb720.mp4 --n 32 --parts paced --json "$OUT/paced_n32.json"
fi
if [ "$step" = one-path ]; then
  # One pipeline for 1..N sources against $OLD (two pipelines): one source, NanoDet (with and without the page, which
  # makes every frame drawn) and SSD300 fp16 at 720p; N = 8 unpaced in one process; N = 32 paced. The trees alternate,
  # the order swapped each round. Carry media, models/nanodet and $OLD. PARTS=one,multi picks (default both).
  OLD=${OLD:-.prev}
  mkdir -p "$OLD/models" && ln -sfn "$PWD/models/nanodet" "$OLD/models/nanodet" && ln -sfn "$PWD/media" "$OLD/media"
  m="--backend cuda --precision fp16"
  parts=${PARTS:-one,multi}
  if [[ $parts == *one* ]]; then
    for round in 1 2; do
      order="new old"; [ "$round" = 2 ] && order="old new"
      for variant in "nanodet" "nanodet --http 8765" "ssd300_vgg16 --random-weights"; do
        for tree in $order; do
          dir=.; [ $tree = old ] && dir=$OLD
          tag=$(echo "$variant" | tr -c 'a-z0-9\n' _)
          echo "== one source, $variant, $tree tree, round $round"
          (cd "$dir" && $py run.py --headless $m --model $variant --source /tmp/bbb720long.mp4 --max-frames ${FRAMES:-4000} \
            --out "/tmp/op/one_${tag}_${tree}_$round" 2>&1 | grep "^frames:")
        done
      done
    done
  fi
  if [[ $parts == *multi* ]]; then
    v8=""; for i in 1 2 3 4 5 6 7 8; do v8="$v8 --source /tmp/bbb720.mp4"; done
    for round in 1 2; do
      order="new old"; [ "$round" = 2 ] && order="old new"
      for tree in $order; do
        dir=.; [ $tree = old ] && dir=$OLD
        echo "== N = 8 unpaced, one process, $tree tree, round $round"
        (cd "$dir" && $py run.py --headless $m $v8 --max-frames 1500 --out "/tmp/op/n8_${tree}_$round" 2>&1 | grep "^frames:")
      done
    done
    for tree in new old; do
      dir=.; [ $tree = old ] && dir=$OLD
      echo "== N = 32 paced at 30 fps, $tree tree"
      (cd "$dir" && $py bench/multi_source.py $m --source /tmp/bbb720.mp4 --n 32 --parts paced \
        --json "$OUT/paced_n32_$tree.json" | tail -4)
    done
  fi
  (cd /tmp && tar -czf "$OUT/one_path.tgz" op/*/summary.json)  # one file: the device tool brings back only so many
fi
if [ "$step" = tracking-workers ]; then
  # N = 32 paced NanoDet sources with 4 lines and 2 zones each: the trackers in worker processes (automatic: 4 on
  # 16 cores) and in the app's process, and tracking off, one after the other (carry media, models/nanodet).
  m="--backend cuda --precision fp16"
  lz=(--app-arg="--line a:0.5,0,0.5,1" --app-arg="--line b:0,0.5,1,0.5" --app-arg="--line c:0.25,0,0.25,1"
      --app-arg="--line d:0.75,0,0.75,1" --app-arg="--zone z1:0.1,0.1,0.45,0.1,0.45,0.45,0.1,0.45"
      --app-arg="--zone z2:0.55,0.55,0.9,0.55,0.9,0.9,0.55,0.9")
  $py bench/tracking_workers.py --workers 0 2 4 | tail -7
  for w in -1 0 off; do
    echo "== N = 32 paced at 30 fps, tracker workers $w"
    args=("${lz[@]}" --app-arg="--tracker-workers $w"); [ $w = off ] && args=()
    # shellcheck disable=SC2086
    $py bench/multi_source.py $m --source /tmp/bikes5000.mp4 --n 32 --parts paced "${args[@]}" \
      --json "$OUT/tracking_workers_n32_$w.json" | tail -4
  done
fi
if [ "$step" = tracking ]; then
  # What tracking with 4 lines and 2 zones costs on the GPU machine, side by side with it off, the order swapped each
  # round: one source NanoDet fp16 unpaced (the bikes clip looped), and N = 32 paced at 30 fps (carry media, models/nanodet).
  m="--backend cuda --precision fp16"
  lz="--line a:0.5,0,0.5,1 --line b:0,0.5,1,0.5 --line c:0.25,0,0.25,1 --line d:0.75,0,0.75,1"
  lz="$lz --zone z1:0.1,0.1,0.45,0.1,0.45,0.45,0.1,0.45 --zone z2:0.55,0.55,0.9,0.55,0.9,0.9,0.55,0.9"
  $py bench/tracking_cost.py 2>&1 | tail -12
  for round in 1 2; do
    order="on off"; [ "$round" = 2 ] && order="off on"
    for variant in $order; do
      extra=""; [ $variant = on ] && extra="$lz"
      echo "== one source, nanodet, tracking $variant, round $round"
      # shellcheck disable=SC2086
      $py run.py --headless $m --model nanodet --source /tmp/bikes5000.mp4 --max-frames ${FRAMES:-3000} $extra \
        --out "/tmp/tr/one_${variant}_$round" 2>&1 | grep "^frames:"
    done
  done
  for variant in off on; do
    echo "== N = 32 paced at 30 fps, tracking $variant"
    app=(); [ $variant = on ] && for a in $lz; do [[ $a == --* ]] && flag=$a || app+=("--app-arg=$flag $a"); done
    $py bench/multi_source.py $m --source /tmp/bikes5000.mp4 --n 32 --parts paced "${app[@]}" \
      --json "$OUT/tracking_paced_n32_$variant.json" | tail -4
  done
  (cd /tmp && tar -czf "$OUT/tracking.tgz" tr/*/summary.json tr/*/events.jsonl 2>/dev/null)
fi
