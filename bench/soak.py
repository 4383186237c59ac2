"""Soak: N frames of a test:// source through the app; RSS and thread counts at the start, at frame 100 and at the end.

    python bench/soak.py --frames 10000 --model mobilenet_v2 --random-weights --json soak.json

Prints JSON. Not a test: figures go to docs/performance.md with the machine and the command.
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time

from common import add_app_arguments, app_overrides, machine, write_json  # also puts the repository on sys.path

import psutil  # noqa: E402

from jetcam_app.config import load_config  # noqa: E402
from jetcam_app.pipeline import Pipeline  # noqa: E402


def sample(label: str, frame: int) -> dict:
    process = psutil.Process()
    return {"at": label, "frame": frame, "rss_mb": round(process.memory_info().rss / 2 ** 20, 1),
            "os_threads": process.num_threads(), "python_threads": threading.active_count()}


class RowWatcher(threading.Thread):
    """Counts timing.csv's rows as they are written (reading only what is new) and samples at the marks."""

    def __init__(self, path: str, marks, samples: list, stop: threading.Event):
        super().__init__(name="soak-watcher", daemon=True)
        self.path, self.marks, self.samples, self.stop = path, sorted(marks), samples, stop
        self.rows = 0

    def run(self) -> None:
        offset = 0
        while not self.stop.wait(0.05):
            if not os.path.exists(self.path):
                continue
            with open(self.path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            offset += len(chunk)
            self.rows += chunk.count(b"\n")
            frames = max(0, self.rows - 1)  # the header
            while self.marks and frames >= self.marks[0]:
                self.samples.append(sample("frame %d" % self.marks.pop(0), frames))
                print("soak: %s" % json.dumps(self.samples[-1]), file=sys.stderr, flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_app_arguments(p, model="mobilenet_v2")
    p.add_argument("--frames", type=int, default=10000)
    p.add_argument("--size", default="320x240", help="test:// frame size WxH")
    p.add_argument("--max-seconds", type=float, default=0.0, help="stop earlier, after this long (0 = no limit)")
    p.add_argument("--json")
    args = p.parse_args()
    samples = [sample("start", 0)]
    stop = threading.Event()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        config = load_config(None, app_overrides(args, "test://%s@30" % args.size, **{
            "pipeline.max_frames": args.frames, "output.out_dir": out, "output.headless": True}))
        watcher = RowWatcher(os.path.join(out, "timing.csv"), [100, max(101, args.frames - 1)], samples, stop)
        watcher.start()
        pipeline = Pipeline(config)

        def time_is_up() -> None:
            samples.append(sample("stopped by --max-seconds", max(0, watcher.rows - 1)))
            pipeline.request_stop("--max-seconds %g" % args.max_seconds)

        timer = threading.Timer(args.max_seconds, time_is_up) if args.max_seconds > 0 else None
        if timer is not None:
            timer.start()
        try:
            summary = pipeline.run()
        finally:
            if timer is not None:
                timer.cancel()
            stop.set()
            watcher.join()
    samples.append(sample("after the run", summary["frames"]["processed"]))
    figures = {"command": "python bench/soak.py --frames %d --model %s --backend %s%s%s" % (
                   args.frames, args.model, args.backend, " --random-weights" if args.random_weights else "",
                   " --max-seconds %g" % args.max_seconds if args.max_seconds else ""),
               "stop_reason": summary["stop_reason"],
               "machine": machine(), "frames": summary["frames"], "wall_s": round(time.perf_counter() - started, 1),
               "samples": samples}
    print(json.dumps(figures, indent=2))
    write_json(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
