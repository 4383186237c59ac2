"""The emitter's frames per second with N tracked sources (4 lines and 2 zones each), unpaced, the trackers in the
app's process and in worker processes, side by side; no model, so it is the host's ceiling for tracking:

    python bench/tracking_workers.py [--sources 32] [--boxes 50] [--frames 150] [--workers 0 2 4]

Each source's detections are bench/tracking_cost.py's drifting boxes (a tenth in ByteTrack's low band). The
emitter runs as in a headless run (its own thread, batches of all sources); the main thread here only feeds it,
as the inference thread would. Measured, never asserted.
"""

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tracking_cost import LINES, SIZE_WH, ZONES, moving_boxes  # noqa: E402

from jetcam_app.analytics.wiring import sources_analytics  # noqa: E402
from jetcam_app.bench.environment import cpu_name  # noqa: E402
from jetcam_app.config import SourceConfig, load_config  # noqa: E402
from jetcam_app.inference.stages import Processed  # noqa: E402
from jetcam_app.output.emitter import FrameEmitter  # noqa: E402
from jetcam_app.sources.lanes import Doorbell, SourceLane  # noqa: E402
from jetcam_app.sources.spec import create_source  # noqa: E402
from jetcam_app.stats import StatsPoller  # noqa: E402
from jetcam_app.types import Frame, FrameTiming  # noqa: E402


class _Adapter:
    random_weights = False


def emitter_fps(sources: int, detections, workers: int, warmup: int) -> float:
    config = load_config(None, {"tracker.enabled": True, "tracker.workers": workers})
    source = SourceConfig(uri="test://%dx%d@30" % SIZE_WH, lines=LINES, zones=ZONES)
    folder = tempfile.mkdtemp(prefix="tracking_workers_")
    lanes = [SourceLane("s%d" % k, create_source(SourceConfig(uri="test://640x480@30")), Doorbell(), 8, 30.0)
             for k in range(sources)]
    analytics = sources_analytics(config, [(lane.name, source, 30.0) for lane in lanes], None, os.cpu_count() or 1)
    for lane in lanes:
        lane.analytics = analytics[lane.name]
    stats = StatsPoller(1.0, "cpu").start()
    emitter = FrameEmitter(config, folder, _Adapter(), stats, lanes, threaded=True)
    image = np.zeros((SIZE_WH[1], SIZE_WH[0], 3), np.uint8)
    start = None
    for i, frame_dets in enumerate(detections):
        if i == warmup:
            while lanes[-1].processed < warmup:
                time.sleep(0.0005)
            start = time.perf_counter()
        emitter.emit([(lane, Processed(Frame(image, i, i / 30.0, time.perf_counter()), frame_dets[k], FrameTiming()))
                      for k, lane in enumerate(lanes)])
    while lanes[-1].processed < len(detections):
        time.sleep(0.0005)
    fps = sources * (len(detections) - warmup) / (time.perf_counter() - start)
    emitter.close()
    stats.stop()
    return fps


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sources", type=int, default=32)
    p.add_argument("--boxes", type=int, default=50)
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4])
    p.add_argument("--junk", type=int, default=0, help="boxes a frame scoring 0.1-0.3 besides the objects")
    args = p.parse_args()
    print("machine: %s, %d CPU cores; Python %s" % (cpu_name(), os.cpu_count() or 0, platform.python_version()))
    per_source = [moving_boxes(args.boxes, args.warmup + args.frames, seed=k, junk=args.junk)
                  for k in range(args.sources)]
    detections = [[per_source[k][i] for k in range(args.sources)] for i in range(args.warmup + args.frames)]
    print("%d sources x %d boxes + %d junk, 4 lines and 2 zones each, %d frames each after %d warm-up; frames/s of all sources"
          % (args.sources, args.boxes, args.junk, args.frames, args.warmup))
    for rnd in range(2):
        for workers in (args.workers if rnd == 0 else args.workers[::-1]):
            fps = emitter_fps(args.sources, detections, workers, args.warmup)
            print("  round %d, workers %d: %8.1f frames/s (%.3f ms a frame; %.1f fps a source)"
                  % (rnd + 1, workers, fps, 1e3 / fps, fps / args.sources))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
