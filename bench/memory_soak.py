"""Memory soak: replay N frames through the app and report RSS growth after warm-up (from timing.csv).

    python bench/memory_soak.py --model nanodet --backend cuda --precision fp16 --frames 5000
    python bench/memory_soak.py --model nanodet --backend cuda --precision fp16 --frames 5000 --sources 8

With --sources N the video is N sources of one process (their frames batched), --frames and --warmup per source.

Memory is sampled every 0.05 s here (the app's default is 1 s): at a GPU's frame rates a 1 s sampler could still
show, at the end of the warm-up, a figure taken before the first frame, and the growth "after warm-up" would be
the warm-up itself.
Not a test: it prints the figures (and writes them with --json); docs/performance.md records them with the machine.
"""

import argparse
import csv
import json
import os
import tempfile

from common import add_app_arguments, app_overrides, write_json  # also puts the repository on sys.path

from jetcam_app.config import load_config  # noqa: E402
from jetcam_app.pipeline import Pipeline  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_app_arguments(p)
    p.add_argument("--source", required=True, help="a video with at least --frames frames (bench/loop_video.py)")
    p.add_argument("--frames", type=int, default=5000)
    p.add_argument("--sources", type=int, default=1, help="N copies of the video as N sources of one process")
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--stats-interval", type=float, default=0.05, help="seconds between memory samples")
    p.add_argument("--json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as out:
        extra = {"pipeline.max_frames": args.frames, "output.out_dir": out, "output.headless": True,
                 "stats.interval_s": args.stats_interval}
        if args.sources > 1:
            extra["sources"] = [args.source] * args.sources
        config = load_config(None, app_overrides(args, args.source, **extra))
        summary = Pipeline(config).run()
        with open(os.path.join(out, "timing.csv")) as f:
            rows = list(csv.DictReader(f))
    rss = [float(r["rss_mb"]) for r in rows if r["rss_mb"]]
    gpu = [float(r["gpu_mb"]) for r in rows if r["gpu_mb"]]
    after = rss[args.warmup * args.sources:]  # rows of every source, in the order they were processed
    figures = {
        "model": args.model, "backend": args.backend, "precision": args.precision, "cuda_graph": args.cuda_graph,
        "sources": args.sources, "frames": len(rows), "fps": summary.get("fps"),
        "rss_after_warmup_mb": after[0] if after else None, "rss_end_mb": after[-1] if after else None,
        "rss_peak_mb": max(rss) if rss else None,
        "rss_growth_after_warmup_mb": (max(after) - after[0]) if after else None,
        "rss_at_frame_mb": {str(i): rss[i] for i in range(0, len(rss), max(1, len(rss) // 10))},
        "stats_interval_s": args.stats_interval,
        "gpu_peak_mb": max(gpu) if gpu else None,
    }
    print(json.dumps(figures, indent=2))
    write_json(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
