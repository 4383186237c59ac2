"""Host time the emitter spends on one frame, by part, for frames with many or few boxes:

    python bench/emitter_cost.py --boxes 100 --size 1280x720

The emitter's work (labels, HUD, timing.csv and predictions.jsonl rows) is Python that holds the GIL, which the
inference and capture threads need too; this puts a number on it for this machine's CPU. The frame's outlines are
taken as drawn already (as when the fused CUDA graph draws them) unless --host-outlines. The sink throws the drawn
frames away (the emitter draws only for a sink). Measured, never asserted.
"""

import argparse
import tempfile
import time
from typing import Dict

import numpy as np
from common import machine, timed  # also puts the repository on sys.path

import jetcam_app.output.emitter as emitter_module  # noqa: E402
from jetcam_app.inference.adapters.labels import COCO_91  # noqa: E402
from jetcam_app.config import load_config  # noqa: E402
from jetcam_app.output.overlay import Overlay  # noqa: E402
from jetcam_app.config import SourceConfig  # noqa: E402
from jetcam_app.output.sinks.base import Sink  # noqa: E402
from jetcam_app.sources.lanes import Doorbell, SourceLane  # noqa: E402
from jetcam_app.sources.spec import create_source  # noqa: E402
from jetcam_app.inference.stages import Processed  # noqa: E402
from jetcam_app.stats import StatsPoller  # noqa: E402
from jetcam_app.output.logs import TimingLog  # noqa: E402
from jetcam_app.types import Detections, Frame, FrameTiming  # noqa: E402

PARTS = ((Overlay, "_detections", "boxes and label places"), (Overlay, "_paste_hud", "HUD"),
         (emitter_module.FrameEmitter, "_hud", "HUD figures"), (TimingLog, "write", "timing.csv row"),
         (emitter_module.PredictionLog, "write", "predictions.jsonl row"))


class _RandomWeights:
    random_weights = True


class _Discard(Sink):
    """A sink that is there (so the emitter draws) and keeps nothing."""

    def write(self, image_bgr, frame_index: int) -> None:
        pass


def random_detections(rng: np.random.Generator, boxes: int, width: int, height: int) -> Detections:
    corner = rng.uniform(0, 1, (boxes, 2)) * (width * 0.9, height * 0.9)
    size = rng.uniform(0.02, 0.2, (boxes, 2)) * (width, height)
    return Detections(np.concatenate([corner, corner + size], 1).astype(np.float32),
                      np.sort(rng.uniform(0.35, 1.0, boxes))[::-1].astype(np.float32),
                      rng.integers(1, 91, boxes).astype(np.int64), list(COCO_91))


def emitter_cost(boxes: int, width: int, height: int, frames: int, outlined: bool = True) -> Dict[str, float]:
    """Microseconds per frame: the emitter's whole work ("total") and the parts of it named in PARTS."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    results = [random_detections(rng, boxes, width, height) for _ in range(50)]
    totals = dict.fromkeys([name for _, _, name in PARTS], 0.0)

    stats = StatsPoller(1.0, "cpu").start()
    originals = [(cls, attr, cls.__dict__[attr]) for cls, attr, _ in PARTS]
    try:
        for (cls, attr, name), (_, _, call) in zip(PARTS, originals):
            setattr(cls, attr, timed(call, totals, name))
        with tempfile.TemporaryDirectory() as out:
            source = create_source(SourceConfig(uri="test://%dx%d@30" % (width, height)))
            lane = SourceLane("bench", source, Doorbell(), 8, 30.0, sink=_Discard())
            emitter = emitter_module.FrameEmitter(load_config(), out, _RandomWeights(), stats, [lane], threaded=False,
                                                  gpu_outlines=outlined)
            start = time.perf_counter()
            for i in range(frames):
                frame = Frame(image, i, i / 30.0, time.perf_counter())
                emitter.emit([(lane, Processed(frame, results[i % len(results)], FrameTiming(), outlined))])
            elapsed = time.perf_counter() - start
            emitter.close()
    finally:
        for cls, attr, call in originals:
            setattr(cls, attr, call)
        stats.stop()
    cost = {"total": elapsed / frames * 1e6}
    cost.update({name: value / frames * 1e6 for name, value in totals.items()})
    return cost


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--boxes", type=int, nargs="+", default=[100, 2])
    p.add_argument("--size", default="1280x720")
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--host-outlines", action="store_true", help="the emitter also draws the box outlines")
    args = p.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    print("machine: %s; %s frames, outlines %s" % (machine(), args.size, "drawn here" if args.host_outlines
                                                  else "already drawn (GPU)"))
    for boxes in args.boxes:
        cost = emitter_cost(boxes, width, height, args.frames, outlined=not args.host_outlines)
        print("  %3d boxes: %s" % (boxes, ", ".join("%s %.0f us" % kv for kv in cost.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
