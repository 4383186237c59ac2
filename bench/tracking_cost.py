"""Host time per frame of tracking, alone and with 4 lines and 2 zones, at 10, 50 and 100 boxes a frame:

    python bench/tracking_cost.py [--boxes 10 50 100] [--frames 300] [--warmup 50]

The boxes move smoothly (and bounce off the frame's edges) so tracks persist, as a scene's do; a tenth of them score
in ByteTrack's low band, so its second match runs too. "tracker" is ByteTracker.update; "tracker + lines + zones" is
SourceAnalytics.process, the whole per-frame work the pipeline pays (trails and the snapshot included). It runs on
the emitter's thread, holding the GIL, so it is measured on the CPU it will share. Measured, never asserted.
"""

import argparse
import dataclasses
import os
import platform
import sys
import time
from typing import Callable, Dict, List

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jetcam_app.analytics import assignment, scene  # noqa: E402
from jetcam_app.analytics.bytetrack import ByteTracker  # noqa: E402
from jetcam_app.analytics.lines import LineCounter  # noqa: E402
from jetcam_app.analytics.scene import SourceAnalytics  # noqa: E402
from jetcam_app.analytics.zones import ZoneCounter  # noqa: E402
from jetcam_app.bench.environment import cpu_name  # noqa: E402
from jetcam_app.config import ModelConfig, TrackerConfig  # noqa: E402
from jetcam_app.regions import LineSpec, ZoneSpec  # noqa: E402
from jetcam_app.types import Detections  # noqa: E402

SIZE_WH = (1920, 1080)
FPS = 30.0
CLASS_NAMES = ["person", "car"]
LINES = (LineSpec("door", ((0.5, 0.05), (0.5, 0.95))), LineSpec("gate", ((0.05, 0.5), (0.95, 0.5))),
         LineSpec("left", ((0.25, 0.1), (0.2, 0.9)), count="once"), LineSpec("cars", ((0.75, 0.1), (0.8, 0.9)),
                                                                             classes=("car",)))
ZONES = (ZoneSpec("bay", ((0.1, 0.1), (0.4, 0.1), (0.45, 0.45), (0.1, 0.4))),
         ZoneSpec("yard", ((0.55, 0.55), (0.9, 0.6), (0.85, 0.9), (0.6, 0.95), (0.5, 0.75))))


def moving_boxes(n: int, frames: int, seed: int = 0, junk: int = 0) -> List[Detections]:
    """n objects drifting at 1-6 px a frame, bouncing off the edges, with a little box jitter; and `junk` boxes a
    frame at random places scoring 0.1-0.3, as a detector's boxes down to track_low_thresh are (NanoDet on a street
    clip: about 61 a frame at 0.1 against 6 at 0.35): those from 0.25 start probation tracks that die."""
    rng = np.random.default_rng(seed)
    wh = rng.uniform(30, 120, (n, 2))
    bounds = np.subtract(SIZE_WH, wh)
    corner = rng.uniform(0, 1, (n, 2)) * bounds
    velocity = rng.uniform(1, 6, (n, 2)) * rng.choice([-1, 1], (n, 2))
    labels = rng.integers(0, 2, n).astype(np.int64)
    out = []
    for _ in range(frames):
        low = rng.random(n) < 0.1
        corner = corner + velocity
        bounce = (corner < 0) | (corner > bounds)
        velocity = np.where(bounce, -velocity, velocity)
        corner = np.clip(corner, 0, bounds)
        boxes = np.concatenate([corner, corner + wh], 1) + rng.normal(0, 0.5, (n, 4))
        scores = np.where(low, rng.uniform(0.12, 0.24, n), rng.uniform(0.4, 0.95, n))
        frame_labels = labels
        if junk:
            corner_j = rng.uniform(0, 1, (junk, 2)) * np.subtract(SIZE_WH, 120)
            boxes = np.concatenate([boxes, np.concatenate([corner_j, corner_j + rng.uniform(20, 120, (junk, 2))], 1)])
            scores = np.concatenate([scores, rng.uniform(0.1, 0.3, junk)])
            frame_labels = np.concatenate([labels, rng.integers(0, 2, junk).astype(np.int64)])
        out.append(Detections(boxes.astype(np.float32), scores.astype(np.float32), frame_labels, CLASS_NAMES))
    return out


# the parts of SourceAnalytics.process timed on their own, to show where its time goes beyond the tracker's (the
# tracker wrapped under the name scene.py calls it by)
PARTS = ((SourceAnalytics, "process", "whole"), (scene, "update_many", "tracker"),
         (LineCounter, "update", "4 lines"), (ZoneCounter, "update", "2 zones"), (SourceAnalytics, "_trail", "trails"),
         (SourceAnalytics, "_snapshot", "snapshot"))


def _timed(call: Callable, totals: Dict[str, float], key: str) -> Callable:
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - start
    return wrapper


def per_frame_ms(step: Callable[[int, Detections], object], frames: List[Detections], warmup: int) -> np.ndarray:
    times = []
    for i, det in enumerate(frames):
        start = time.perf_counter()
        step(i, det)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return np.array(times) * 1e3


def tracking_cost(boxes: int, frames: int, warmup: int, junk: int = 0) -> Dict[str, np.ndarray]:
    config = dataclasses.replace(TrackerConfig(), enabled=True)
    detections = moving_boxes(boxes, warmup + frames, junk=junk)
    tracker = ByteTracker(config, FPS)
    alone = per_frame_ms(lambda i, d: tracker.update(d.boxes, d.scores, d.labels, i, i / FPS), detections, warmup)
    events = []
    analytics = SourceAnalytics("bench", config, LINES, ZONES, FPS, ModelConfig().score_threshold, on_event=events.append)
    whole = per_frame_ms(lambda i, d: analytics.process(i, i / FPS, SIZE_WH, d), detections, warmup)
    # a second run with the parts wrapped, so the wrappers' own cost stays out of the figures above
    totals = dict.fromkeys([name for _, _, name in PARTS], 0.0)
    originals = [(cls, attr, cls.__dict__[attr]) for cls, attr, _ in PARTS]
    try:
        for (cls, attr, name), (_, _, call) in zip(PARTS, originals):
            setattr(cls, attr, _timed(call, totals, name))
        parted = SourceAnalytics("bench", config, LINES, ZONES, FPS, ModelConfig().score_threshold, on_event=lambda event: None)
        for i, det in enumerate(detections):
            if i == warmup:
                totals = dict.fromkeys(totals, 0.0)
                for (cls, attr, name), (_, _, call) in zip(PARTS, originals):
                    setattr(cls, attr, _timed(call, totals, name))
            parted.process(i, i / FPS, SIZE_WH, det)
    finally:
        for cls, attr, call in originals:
            setattr(cls, attr, call)
    parts = {name: 1e3 * total / frames for name, total in totals.items()}
    parts["rest (detections out, anchors, names)"] = 2 * parts["whole"] - sum(parts.values())
    return {"tracker": alone, "tracker + 4 lines + 2 zones": whole, "tracks": np.array(len(tracker.active)),
            "ids": np.array(tracker.confirmed_total), "events": np.array(len(events)), "parts": parts}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--boxes", type=int, nargs="+", default=[10, 50, 100])
    p.add_argument("--frames", type=int, default=300, help="measured frames, after the warm-up")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--junk", type=int, nargs="+", default=[0],
                   help="boxes a frame scoring 0.1-0.3 besides the objects (a detector's low band), one run each")
    args = p.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print("machine: %s, %s CPU cores; Python %s, numpy %s, assignment: %s" % (
        cpu_name(), cores, platform.python_version(), np.__version__, assignment.SOLVER_NAME))
    print("%d measured frames of %dx%d after %d warm-up frames; ms per frame" % (args.frames, SIZE_WH[0], SIZE_WH[1],
                                                                                args.warmup))
    print("%6s %5s  %-28s %8s %8s %8s   %s" % ("boxes", "junk", "work", "mean", "p95", "max",
                                             "tracks alive / IDs given"))
    for junk in args.junk:
        for n in args.boxes:
            cost = tracking_cost(n, args.frames, args.warmup, junk)
            for name in ("tracker", "tracker + 4 lines + 2 zones"):
                ms = cost[name]
                print("%6d %5d  %-28s %8.3f %8.3f %8.3f   %s" % (
                    n, junk, name, ms.mean(), np.percentile(ms, 95), ms.max(),
                    "%d / %d" % (cost["tracks"], cost["ids"]) if name == "tracker" else "%d events" % cost["events"]))
            print("%12s  parts (a run of their own): %s" % ("", ", ".join("%s %.3f" % kv
                                                                          for kv in cost["parts"].items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
