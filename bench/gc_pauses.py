"""Benchmark: the garbage collector's pauses during a multi-source run, with the heap frozen (the app's default,
pipeline.frozen_heap) and without, in alternating rounds, each run in a fresh process.

The engine is the tests' index model (tests/multi/index_model.py), which costs next to nothing, so what is left is
the host: N 320x240 videos replayed paced like cameras, the scheduler, the emitter and the collector. A full
collection walks every object alive, torch's included, while holding the GIL; every thread waits for it. Without
the freeze the app's start-up (imports, the model) leaves the first one due early in the run. Only collections
during the run count (frozen_heap's own gc.collect() comes before the clock).
Usage: python bench/gc_pauses.py [--sources 16] [--frames 300] [--rounds 2] [--json out.json]
"""

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "multi")]

import jetcam_app.pipeline as pipeline_module  # noqa: E402
from conftest import write_index_video  # noqa: E402
from index_model import IndexAdapter  # noqa: E402
from jetcam_app.config import SourceConfig, load_config  # noqa: E402
from jetcam_app.sources.spec import create_source  # noqa: E402


def one_run(video: str, n: int, out: str, freeze: bool) -> dict:
    pauses, state = [], {"running": False}
    real = pipeline_module.frozen_heap

    @contextlib.contextmanager
    def watched():  # only the run's own collections count, not the one before it
        with (real if freeze else contextlib.suppress)():  # suppress(): nullcontext on 3.6
            state["running"] = True
            try:
                yield
            finally:
                state["running"] = False

    def timed(phase, info):
        if phase == "start":
            state["t"] = time.perf_counter()
        elif state["running"]:
            pauses.append((info["generation"], (time.perf_counter() - state["t"]) * 1000.0))

    config = load_config(overrides={"output.out_dir": out, "output.headless": True, "engine.threads": 1})
    sources = [("s%d" % i, create_source(SourceConfig(uri=video, pace=True))) for i in range(n)]
    pipeline_module.frozen_heap = watched
    gc.callbacks.append(timed)
    try:
        summary = pipeline_module.Pipeline(config, sources=sources, adapter=IndexAdapter()).run()
    finally:
        gc.callbacks.remove(timed)
        pipeline_module.frozen_heap = real
    sections = list(summary["sources"].values())
    full = [ms for generation, ms in pauses if generation == 2]
    return {"frozen": freeze, "collections": len(pauses), "full_collections": len(full),
            "longest_pause_ms": round(max([ms for _, ms in pauses] or [0.0]), 1),
            "dropped": sum(s["frames"]["dropped"] for s in sections),
            "p99_latency_ms_worst": max(s["stages_ms"]["latency_ms"]["p99"] for s in sections),
            "fps_min": min(s["fps"] for s in sections)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sources", type=int, default=16)
    p.add_argument("--frames", type=int, default=300, help="frames a source (30 fps: 10 s)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--json")
    p.add_argument("--one", choices=("plain", "frozen"), help=argparse.SUPPRESS)  # one run, in this process
    p.add_argument("--video", help=argparse.SUPPRESS)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="gc_pauses_")
    if args.one:
        print(json.dumps(one_run(args.video, args.sources, os.path.join(work, "out"), args.one == "frozen")))
        return
    video = write_index_video(os.path.join(work, "index.mp4"), n_frames=args.frames)
    rows = []
    for r in range(args.rounds):
        for mode in ("plain", "frozen"):  # each run in a fresh process, as the app runs
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", mode, "--video", video,
                                  "--sources", str(args.sources)], stdout=subprocess.PIPE, universal_newlines=True,
                                 check=True).stdout
            row = dict(json.loads(out.strip().splitlines()[-1]), round=r)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"sources": args.sources, "frames": args.frames, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
